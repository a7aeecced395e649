use super::*;
use crate::reconcile::lease::LeaseGate;
use crate::sources::store::tests::{build_ids, entry};
use crate::swarm::fake::{FakeSwarm, Op};

fn copy(entries: &[(u64, &str)], stopped: bool) -> ModelCopy {
    ModelCopy {
        entries: entries
            .iter()
            .map(|(sequence, text)| (*sequence, text.as_bytes().to_vec()))
            .collect(),
        stopped,
    }
}

fn models(list: &[(&str, ModelCopy)]) -> BTreeMap<String, ModelCopy> {
    list.iter()
        .map(|(name, copy)| (name.to_string(), copy.clone()))
        .collect()
}

#[test]
fn a_complete_journal_is_the_authority_and_a_model_it_lacks_is_forgotten() {
    let local = models(&[
        ("a", copy(&[(0, "a0")], false)),
        ("b", copy(&[(0, "b0"), (1, "b1")], false)),
        ("gone", copy(&[(0, "g0")], false)),
    ]);
    let remote = Remote {
        complete: true,
        models: models(&[
            ("a", copy(&[(0, "a0")], false)),
            ("b", copy(&[(0, "b0"), (1, "b1"), (2, "b2")], true)),
            ("new", copy(&[(0, "n0")], false)),
        ]),
        unreadable: Vec::new(),
    };
    let decided = plan(&local, &remote, false, true);
    assert_eq!(
        decided.take,
        vec![
            (
                "b".to_string(),
                copy(&[(0, "b0"), (1, "b1"), (2, "b2")], true)
            ),
            ("gone".to_string(), ModelCopy::default()),
            ("new".to_string(), copy(&[(0, "n0")], false)),
        ]
    );
    assert!(decided.push.is_empty() && decided.push_stopped.is_empty());
    assert!(!decided.complete, "already complete");

    // Written to without the journal since: merged, nothing local forgotten.
    let merged = plan(&local, &remote, true, true);
    assert!(
        merged.take.iter().all(|(name, _)| name != "gone"),
        "{merged:?}"
    );
    assert_eq!(merged.push, vec![("gone".to_string(), 0, b"g0".to_vec())]);
}

#[test]
fn an_incomplete_journal_is_filled_from_the_store_only_by_a_copy_that_may_write() {
    let local = models(&[
        ("a", copy(&[(0, "a0"), (1, "a1")], true)),
        ("b", copy(&[(0, "mine")], false)),
    ]);
    let remote = Remote {
        complete: false,
        models: models(&[
            ("a", copy(&[(0, "a0")], false)),
            ("b", copy(&[(0, "theirs")], false)),
        ]),
        unreadable: Vec::new(),
    };
    let decided = plan(&local, &remote, false, true);
    assert_eq!(decided.push, vec![("a".to_string(), 1, b"a1".to_vec())]);
    assert_eq!(decided.push_stopped, vec!["a".to_string()]);
    assert_eq!(
        decided.take,
        vec![("b".to_string(), copy(&[(0, "theirs")], false))],
        "the journal wins where both hold an entry"
    );
    assert!(decided.complete);

    let standby = plan(&local, &remote, false, false);
    assert!(standby.push.is_empty() && standby.push_stopped.is_empty());
    assert!(!standby.complete);
    assert_eq!(standby.take, decided.take);
}

#[test]
fn config_names_fit_swarms_limit_and_differ_per_model_and_entry() {
    let short = object_name("mlmodel", "history", "iris", Some(3));
    assert_eq!(short, "mlmodel-history-iris-3");
    let long_model = "m".repeat(60);
    let names: Vec<String> = [(long_model.as_str(), 1), (long_model.as_str(), 2), ("x", 1)]
        .iter()
        .map(|(model, seq)| object_name(&"i".repeat(40), "history", model, Some(*seq)))
        .collect();
    for name in &names {
        assert!(name.len() <= 64, "{name} is {} characters", name.len());
    }
    assert_ne!(names[0], names[1]);
    assert_ne!(names[0], names[2]);
    assert_eq!(
        names[0],
        object_name(&"i".repeat(40), "history", &long_model, Some(1)),
        "stable"
    );
}

fn journal(swarm: &Arc<FakeSwarm>, gate: Option<Arc<LeaseGate>>) -> Arc<Journal> {
    Arc::new(Journal::new(
        swarm.clone(),
        "mlmodel",
        "host-a:8080/1",
        gate,
    ))
}

fn mirrored(swarm: &Arc<FakeSwarm>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.set_mirror(journal(swarm, None)).unwrap();
    (dir, store)
}

#[tokio::test]
async fn every_write_is_kept_in_swarm_and_a_new_store_gets_the_whole_history_back() {
    let swarm = Arc::new(FakeSwarm::new());
    let (_dir, store) = mirrored(&swarm);
    journal(&swarm, None).sync(&store, true).await.unwrap();
    for build in ["b1", "b2", "b3"] {
        store.append(entry("iris", build)).await.unwrap();
    }
    store.append(entry("wine", "w1")).await.unwrap();
    store.set_stopped("wine", true).await.unwrap();
    store.append(entry("gone", "g1")).await.unwrap();
    store.clear("gone").await.unwrap();

    let entries: Vec<_> = swarm
        .objects()
        .into_iter()
        .filter(|o| o.labels.contains_key(SEQUENCE))
        .collect();
    assert_eq!(entries.len(), 4, "three of iris, one of wine: {entries:?}");
    let first = entries
        .iter()
        .find(|o| o.name == "mlmodel-history-iris-0")
        .expect("iris's first entry");
    assert_eq!(first.labels[MODEL], "iris");
    assert_eq!(first.labels[WRITER], "host-a:8080/1");
    assert_eq!(first.labels[TERM], "0");

    // Another node: an empty store, synced from the journal.
    let (_other_dir, other) = {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    };
    let report = journal(&swarm, None).sync(&other, true).await.unwrap();
    assert_eq!(report.taken, 2, "{report:?}");
    assert_eq!(report.pushed, 0);
    assert_eq!(build_ids(&other, "iris", 10), ["b3", "b2", "b1"]);
    assert_eq!(
        other.latest("iris").unwrap().unwrap().record,
        store.latest("iris").unwrap().unwrap().record,
        "the record comes back exactly"
    );
    assert!(other.is_stopped("wine").unwrap());
    assert!(other.latest("gone").unwrap().is_none());
    assert_eq!(other.copies().unwrap(), store.copies().unwrap());
}

#[tokio::test]
async fn a_store_with_history_fills_a_new_journal_once_and_marks_it_complete() {
    let swarm = Arc::new(FakeSwarm::new());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(entry("iris", "b1")).await.unwrap();
    store.append(entry("iris", "b2")).await.unwrap();
    store.set_stopped("iris", true).await.unwrap();
    let journal = journal(&swarm, None);
    let first = journal.sync(&store, true).await.unwrap();
    assert_eq!((first.pushed, first.taken), (2, 0));
    let remote = journal.remote().await.unwrap();
    assert!(remote.complete);
    assert_eq!(remote.models, store.copies().unwrap());
    swarm.reset_calls();
    let again = journal.sync(&store, true).await.unwrap();
    assert_eq!((again.pushed, again.taken), (0, 0));
    assert_eq!(swarm.writes(), 0, "nothing left to write");
}

#[tokio::test]
async fn a_write_swarm_does_not_take_is_not_made_and_answers_a_mirror_error() {
    let swarm = Arc::new(FakeSwarm::new());
    let (_dir, store) = mirrored(&swarm);
    store.append(entry("iris", "b1")).await.unwrap();
    swarm.fail_next(
        Op::CreateObject,
        SwarmError::Unreachable {
            message: "connection refused".into(),
        },
    );
    let refused = store.append(entry("iris", "b2")).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Mirror { name, message } if name == "iris" && message.contains("connection refused")),
        "{refused:?}"
    );
    assert_eq!(build_ids(&store, "iris", 10), ["b1"]);
    store.append(entry("iris", "b3")).await.unwrap();
    assert_eq!(build_ids(&store, "iris", 10), ["b3", "b1"]);
    let remote = journal(&swarm, None).remote().await.unwrap();
    assert_eq!(remote.models["iris"], store.copies().unwrap()["iris"]);
}

#[tokio::test]
async fn a_copy_that_does_not_hold_the_lease_writes_nothing_to_the_journal() {
    let swarm = Arc::new(FakeSwarm::new());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .set_mirror(journal(&swarm, Some(LeaseGate::leased())))
        .unwrap();
    let refused = store.append(entry("iris", "b1")).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Mirror { message, .. } if message.contains("standby")),
        "{refused:?}"
    );
    assert!(store.latest("iris").unwrap().is_none());
    assert!(swarm.objects().is_empty());
}

#[test]
fn configs_that_cannot_be_read_are_set_aside_by_name() {
    let object = |name: &str, labels: &[(&str, &str)], data: Option<&str>| ListedObject {
        kind: ObjectKind::Config,
        id: name.to_string(),
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created_at: None,
        data: data.map(|d| bytes::Bytes::from(d.to_string())),
    };
    let remote = read(&[
        object("ok", &[(MODEL, "iris"), (SEQUENCE, "0")], Some("e0")),
        object("no-seq", &[(MODEL, "iris"), (SEQUENCE, "x")], Some("e")),
        object("no-model", &[(SEQUENCE, "1")], Some("e")),
        object(
            "stop",
            &[(MODEL, "wine"), (STOPPED, "true")],
            Some("stopped"),
        ),
        object("done", &[(COMPLETE, "true")], Some("complete")),
    ]);
    assert!(remote.complete);
    assert_eq!(remote.models["iris"], copy(&[(0, "e0")], false));
    assert_eq!(remote.models["wine"], copy(&[], true));
    let names: Vec<&str> = remote.unreadable.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["no-seq", "no-model"]);
}
