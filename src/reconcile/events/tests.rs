use super::*;
use crate::reconcile::status::{RolloutStatus, TaskStatus};

fn status(phase: Phase, running: u64, desired: u64) -> ModelStatus {
    ModelStatus {
        replicas_running: running,
        replicas_desired: desired,
        ..ModelStatus::example(phase)
    }
}

fn task(name: &str, error: &str) -> TaskStatus {
    TaskStatus {
        name: name.into(),
        image: "img:1".into(),
        node: "node-1".into(),
        desired_state: "Ready".into(),
        state: "Failed".into(),
        since: None,
        error: error.into(),
    }
}

fn reasons(notes: &[Note]) -> Vec<(EventType, &str)> {
    notes.iter().map(|n| (n.kind, n.reason)).collect()
}

#[test]
fn repeats_collapse_into_one_event_with_a_count_and_the_last_time() {
    let mut events = Vec::new();
    let failed = || Note::warning("TaskFailed", "task m.1 is failed: exit 1");
    merge(&mut events, failed(), Some("d1"), 10.0);
    merge(
        &mut events,
        Note::normal("Created", "created service s"),
        None,
        11.0,
    );
    let again = merge(&mut events, failed(), Some("d2"), 12.0);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], again, "the repeat moves to the end");
    assert_eq!((again.count, again.first_time, again.time), (2, 10.0, 12.0));
    assert_eq!(again.deployment_id.as_deref(), Some("d2"));
    // Another message is another event.
    merge(
        &mut events,
        Note::warning("TaskFailed", "task m.2 is failed: exit 1"),
        None,
        13.0,
    );
    assert_eq!(events.len(), 3);
}

#[test]
fn a_model_keeps_its_newest_events_only() {
    let mut events = Vec::new();
    for i in 0..MAX_PER_MODEL + 7 {
        merge(
            &mut events,
            Note::normal("Updated", format!("update {i}")),
            None,
            i as f64,
        );
    }
    assert_eq!(events.len(), MAX_PER_MODEL);
    assert_eq!(events[0].message, "update 7");
    assert_eq!(
        events.last().unwrap().message,
        format!("update {}", MAX_PER_MODEL + 6)
    );
}

#[test]
fn a_phase_change_is_an_event_warning_when_failed_or_degraded() {
    let old = status(Phase::Progressing, 1, 2);
    let notes = of_change(&old, &status(Phase::Available, 2, 2));
    assert_eq!(reasons(&notes), [(EventType::Normal, "Available")]);
    assert_eq!(notes[0].message, "2/2 replicas run deployment d1");
    let mut failed = status(Phase::Failed, 2, 2);
    failed.message = "deployment d1 was rolled back by Swarm".into();
    let notes = of_change(&old, &failed);
    assert_eq!(reasons(&notes), [(EventType::Warning, "Failed")]);
    assert_eq!(notes[0].message, failed.message);
    assert!(of_change(&old, &old).is_empty(), "no change, no event");
}

#[test]
fn swarms_rollout_states_are_events() {
    let old = status(Phase::Available, 2, 2);
    let mut new = status(Phase::Available, 2, 2);
    for (state, reason, kind) in [
        ("updating", "RolloutStarted", EventType::Normal),
        ("paused", "RolloutPaused", EventType::Warning),
        ("rollback_started", "RollbackStarted", EventType::Warning),
        ("rollback_completed", "RolledBack", EventType::Warning),
    ] {
        new.rollout = Some(RolloutStatus {
            service: "mlmodel_m_mlmodel".into(),
            state: state.into(),
            message: "update rolled back due to failure".into(),
        });
        let notes = of_change(&old, &new);
        assert_eq!(reasons(&notes), [(kind, reason)], "{state}");
        assert!(notes[0].message.contains("mlmodel_m_mlmodel"), "{notes:?}");
        assert!(
            notes[0]
                .message
                .ends_with(": update rolled back due to failure")
        );
        assert!(
            of_change(&new, &new).is_empty(),
            "a state seen again is no event"
        );
    }
}

#[test]
fn a_task_error_not_seen_before_is_a_warning() {
    let mut old = status(Phase::Progressing, 1, 2);
    old.tasks = vec![task("s.1", "task: non-zero exit (1)")];
    let mut new = old.clone();
    new.tasks.push(task("s.2", "task: non-zero exit (2)"));
    let notes = of_change(&old, &new);
    assert_eq!(reasons(&notes), [(EventType::Warning, "TaskFailed")]);
    assert_eq!(
        notes[0].message,
        "task s.2 on node-1 is failed: task: non-zero exit (2)"
    );
}

#[test]
fn lost_replicas_and_nodes_going_down_are_warnings() {
    let old = status(Phase::Available, 3, 3);
    let mut new = status(Phase::Degraded, 2, 3);
    new.nodes_down = vec!["node-2".into()];
    new.message = "node node-2 is down".into();
    let notes = of_change(&old, &new);
    assert_eq!(
        reasons(&notes),
        [
            (EventType::Warning, "NodeDown"),
            (EventType::Warning, "ReplicasLost"),
            (EventType::Warning, "Degraded"),
        ]
    );
    assert_eq!(notes[1].message, "2/3 replicas run (were 3/3)");
    // Scaling down is not losing replicas.
    let scaled = status(Phase::Available, 2, 2);
    assert!(of_change(&old, &scaled).is_empty());
    // Nor is a rollout's old replica going once its new one runs.
    let rolled = status(Phase::Available, 2, 2);
    assert!(of_change(&status(Phase::Available, 3, 2), &rolled).is_empty());
}

#[tokio::test]
async fn the_log_keeps_events_in_the_store_across_a_reopen_and_feeds_watchers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let log = EventLog::new(store.clone());
        let mut feed = log.subscribe();
        log.record("m", vec![Note::recorded("d1", "img:1", "api")], Some("d1"));
        log.record("m", vec![Note::stopped(false)], Some("d1"));
        let fed = feed.recv().await.unwrap();
        assert_eq!(
            (fed.model.as_str(), fed.event.reason.as_str()),
            ("m", "Recorded")
        );
        log.flush().await;
        // Events are not models: the store lists no model for them.
        assert!(store.names().unwrap().is_empty());
    }
    // sled may hold the dropped store's lock a moment longer (its writer threads).
    let mut reopened = Store::open(dir.path());
    for _ in 0..100 {
        if !matches!(reopened, Err(StoreError::Locked { .. })) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        reopened = Store::open(dir.path());
    }
    let log = EventLog::new(reopened.unwrap());
    let events = log.list("m").unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Recorded", "Stopped"]);
    assert_eq!(
        events[0].message,
        "recorded deployment d1 of img:1 (from api)"
    );
    assert!(log.list("other").unwrap().is_empty());
}

#[test]
fn events_the_store_refuses_are_served_from_memory_and_added_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = EventLog::new(store.clone());
    // The store takes no key with its separator in it: every write of this one fails.
    let refused = "bad\0name";
    log.record(
        refused,
        vec![Note::recorded("d1", "img:1", "api")],
        Some("d1"),
    );
    log.record(refused, vec![Note::stopped(false)], Some("d1"));
    assert_eq!(log.write_errors.load(Ordering::Relaxed), 2);
    let reasons: Vec<String> = log
        .list(refused)
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["Recorded", "Stopped"]);
    // A model the store takes is read back from it, not held.
    log.record("m", vec![Note::stopped(false)], Some("d1"));
    assert!(store.events("m").unwrap().is_some());
    assert_eq!(log.list("m").unwrap().len(), 1);
}

#[tokio::test]
async fn events_recorded_while_the_store_cannot_be_read_never_replace_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = EventLog::new(store.clone());
    log.record("m", vec![Note::recorded("d1", "img:1", "api")], Some("d1"));
    let unreadable = store.detach_for_test();
    assert!(store.events("m").is_err(), "the store must not answer");
    log.record("m", vec![Note::stopped(false)], Some("d1"));
    assert_eq!(log.write_errors.load(Ordering::Relaxed), 1);
    let reasons = |events: Vec<Event>| -> Vec<(String, u64)> {
        events.into_iter().map(|e| (e.reason, e.count)).collect()
    };
    assert_eq!(reasons(log.list("m").unwrap()), [("Stopped".into(), 1)]);
    drop(unreadable);
    // sled lets go of its lock a moment after the last handle drops.
    for _ in 0..100 {
        if store.events("m").is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        reasons(log.list("m").unwrap()),
        [("Recorded".into(), 1), ("Stopped".into(), 1)],
        "the store's own, then those it has not taken"
    );
    log.record("m", vec![Note::stopped(false)], Some("d1"));
    let stored: Vec<Event> = serde_json::from_slice(&store.events("m").unwrap().unwrap()).unwrap();
    assert_eq!(
        reasons(stored),
        [("Recorded".into(), 1), ("Stopped".into(), 2)],
        "the write keeps what the store had"
    );
}

#[test]
fn an_event_added_again_sums_its_counts_and_keeps_its_first_time() {
    let event = |reason: &str, time: f64, count: u64| Event {
        time,
        first_time: time,
        kind: EventType::Normal,
        reason: reason.into(),
        message: String::new(),
        count,
        deployment_id: None,
    };
    let mut events = vec![event("A", 1.0, 2), event("B", 2.0, 1)];
    add(&mut events, event("A", 5.0, 3));
    let got: Vec<(&str, f64, f64, u64)> = events
        .iter()
        .map(|e| (e.reason.as_str(), e.first_time, e.time, e.count))
        .collect();
    assert_eq!(got, [("B", 2.0, 2.0, 1), ("A", 1.0, 5.0, 5)]);
}
