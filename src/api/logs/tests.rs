use super::*;

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn parameters_are_read_capped_and_refused_by_name() {
    let now = 1_800_000_000;
    let read = query(&params(&[]), now).unwrap();
    assert_eq!(
        read,
        LogQuery {
            follow: false,
            tail: Some(MAX_TAIL),
            since: None,
            timestamps: false
        }
    );
    let read = query(
        &params(&[
            ("tail", "25"),
            ("since", "10m"),
            ("follow", "true"),
            ("timestamps", "1"),
        ]),
        now,
    )
    .unwrap();
    assert_eq!(read.tail, Some(25));
    assert_eq!(read.since, Some(now - 600));
    assert!(read.follow && read.timestamps);
    assert_eq!(
        query(&params(&[("tail", "1000000")]), now).unwrap().tail,
        Some(MAX_TAIL)
    );
    assert_eq!(
        query(&params(&[("since", "2027-01-15T08:00:00Z")]), now)
            .unwrap()
            .since,
        Some(1800000000)
    );
    for (key, value) in [("tail", "ten"), ("since", "soon"), ("follow", "maybe")] {
        let refused = query(&params(&[(key, value)]), now)
            .unwrap_err()
            .to_string();
        assert!(refused.starts_with(key), "{refused}");
        assert!(refused.contains(value), "{refused}");
    }
}

#[test]
fn chunks_become_whole_prefixed_lines() {
    let mut lines = Lines::new("svc.1.abc@node".to_string());
    assert_eq!(
        lines.feed(b"first li"),
        Bytes::new(),
        "a partial line waits"
    );
    assert_eq!(
        lines.feed(b"ne\nsecond\nthi"),
        Bytes::from_static(b"svc.1.abc@node    | first line\nsvc.1.abc@node    | second\n")
    );
    assert_eq!(
        lines.finish(),
        Bytes::from_static(b"svc.1.abc@node    | thi\n")
    );
    assert_eq!(lines.finish(), Bytes::new());
}
