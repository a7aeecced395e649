use super::*;
use crate::swarm::fake::FakeSwarm;

const DURATION: Duration = Duration::from_secs(15);

fn record(holder: &str, version: u64) -> Record {
    Record {
        id: "lease".into(),
        version,
        holder: holder.into(),
        address: format!("http://{holder}:8080"),
        term: 3,
        renewals: 0,
        turns: Vec::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_is_created_renewed_or_taken_over_only_after_a_whole_unchanged_duration() {
    let mut memory = Memory::default();
    let now = Instant::now();
    assert_eq!(step(None, "a", &mut memory, now, DURATION), Step::Create);
    let ours = record("a", 7);
    assert!(matches!(
        step(Some(&ours), "a", &mut memory, now, DURATION),
        Step::Renew { .. }
    ));
    // Another's lease: wait while it changes, and while it has not been still a duration.
    let theirs = record("b", 7);
    let waited = step(Some(&theirs), "a", &mut memory, now, DURATION);
    assert!(
        matches!(waited, Step::Wait { expires_in, .. } if expires_in == DURATION),
        "{waited:?}"
    );
    let later = now + Duration::from_secs(10);
    assert!(matches!(
        step(Some(&theirs), "a", &mut memory, later, DURATION),
        Step::Wait { expires_in, .. } if expires_in == Duration::from_secs(5)
    ));
    // Renewed meanwhile (a new version): the count starts again.
    let renewed = record("b", 8);
    let later = now + Duration::from_secs(20);
    assert!(matches!(
        step(Some(&renewed), "a", &mut memory, later, DURATION),
        Step::Wait { expires_in, .. } if expires_in == DURATION
    ));
    let expired = later + DURATION;
    assert!(matches!(
        step(Some(&renewed), "a", &mut memory, expired, DURATION),
        Step::TakeOver { .. }
    ));
    // A released lease (no holder) is taken at once.
    let mut fresh = Memory::default();
    assert!(matches!(
        step(Some(&record("", 9)), "a", &mut fresh, now, DURATION),
        Step::TakeOver { .. }
    ));
}

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig::new(
        "mlmodel",
        identity.to_string(),
        format!("http://{identity}:8080"),
        DURATION,
    )
}

#[tokio::test(start_paused = true)]
async fn of_two_copies_one_acts_and_the_other_takes_over_only_once_the_first_stops_renewing() {
    let swarm = FakeSwarm::new();
    let (a, b) = (config("a"), config("b"));
    let (gate_a, gate_b) = (LeaseGate::leased(), LeaseGate::leased());
    let (mut mem_a, mut mem_b) = (Memory::default(), Memory::default());
    assert!(
        !gate_a.may_write() && !gate_b.may_write(),
        "standby until acquired"
    );

    assert!(round(&swarm, &a, &gate_a, &mut mem_a).await.unwrap());
    assert!(!round(&swarm, &b, &gate_b, &mut mem_b).await.unwrap());
    assert!(gate_a.may_write());
    assert!(!gate_b.may_write());
    assert_eq!(
        gate_b.standby().unwrap(),
        "this mlmodel is a standby: the active one is a, at http://a:8080"
    );
    assert_eq!(gate_a.term(), Some(1));

    // a renews every third of the duration; b never takes over meanwhile.
    for _ in 0..6 {
        tokio::time::advance(DURATION / 3).await;
        assert!(!round(&swarm, &a, &gate_a, &mut mem_a).await.unwrap());
        assert!(!round(&swarm, &b, &gate_b, &mut mem_b).await.unwrap());
        assert!(gate_a.may_write() && !gate_b.may_write());
    }

    // a stops renewing (cut off): it stops writing once its lease runs out, and only
    // then does b take over, in the next term.
    let mut b_took_over_at = None;
    for tick in 1..=8 {
        tokio::time::advance(DURATION / 3).await;
        if round(&swarm, &b, &gate_b, &mut mem_b).await.unwrap() {
            b_took_over_at = Some(tick);
            break;
        }
        assert!(!gate_b.may_write());
    }
    assert!(!gate_a.may_write(), "a's lease has run out");
    assert!(b_took_over_at.is_some_and(|t| t >= 3), "{b_took_over_at:?}");
    assert_eq!(gate_b.term(), Some(2));
    // a comes back: it sees b's lease and stays a standby.
    assert!(!round(&swarm, &a, &gate_a, &mut mem_a).await.unwrap());
    assert!(!gate_a.may_write());
    assert!(gate_a.standby().unwrap().contains("the active one is b"));

    // b releases at shutdown: a takes over at its next round.
    release(&swarm, &b, &gate_b).await;
    assert!(!gate_b.may_write());
    assert!(round(&swarm, &a, &gate_a, &mut mem_a).await.unwrap());
    assert_eq!(
        gate_a.term(),
        Some(3),
        "each change of holder adds one to the term"
    );
}

#[tokio::test(start_paused = true)]
async fn two_copies_taking_over_at_once_cannot_both_win() {
    let swarm = FakeSwarm::new();
    let (a, b, c) = (config("a"), config("b"), config("c"));
    let (gate_a, gate_b, gate_c) = (
        LeaseGate::leased(),
        LeaseGate::leased(),
        LeaseGate::leased(),
    );
    let (mut mem_a, mut mem_b, mut mem_c) =
        (Memory::default(), Memory::default(), Memory::default());
    assert!(round(&swarm, &a, &gate_a, &mut mem_a).await.unwrap());
    // b and c both read the same, unchanged lease for a whole duration.
    let read = |swarm: &FakeSwarm| Record::of(&swarm.service("mlmodel-lease").unwrap()).unwrap();
    let now = Instant::now();
    let seen = read(&swarm);
    assert!(matches!(
        step(Some(&seen), "b", &mut mem_b, now, DURATION),
        Step::Wait { .. }
    ));
    assert!(matches!(
        step(Some(&seen), "c", &mut mem_c, now, DURATION),
        Step::Wait { .. }
    ));
    tokio::time::advance(DURATION).await;
    // Both write with the version they read: the second is out of sequence.
    let first = swarm
        .update_service(&seen.id, seen.version, &spec(&b, seen.term + 1, 0, &[]))
        .await;
    let second = swarm
        .update_service(&seen.id, seen.version, &spec(&c, seen.term + 1, 0, &[]))
        .await;
    assert!(first.is_ok());
    assert!(
        matches!(second, Err(SwarmError::OutOfSequence { .. })),
        "{second:?}"
    );
    assert_eq!(read(&swarm).holder, "b");
    let _ = (gate_b, gate_c);
}
