use super::*;
use crate::reconcile::status::RolloutStatus;

fn status(phase: Phase, message: &str) -> ModelStatus {
    ModelStatus {
        message: message.into(),
        ..ModelStatus::example(phase)
    }
}

#[test]
fn a_phase_change_is_notified_with_a_chat_line() {
    let old = status(Phase::Progressing, "");
    let new = status(Phase::Available, "");
    let sent = of_change(&old, &new, "2026-12-02T10:00:00Z".into()).unwrap();
    assert_eq!(
        serde_json::to_value(&sent).unwrap(),
        serde_json::json!({
            "model": "m", "previous_phase": "Progressing", "phase": "Available",
            "message": "", "deployment_id": "d1", "image": "img:1", "rolled_back": false,
            "time": "2026-12-02T10:00:00Z", "text": "mlmodel: m is Available (was Progressing)",
        })
    );
    assert_eq!(
        of_change(&new, &new, String::new()),
        None,
        "no change, no notification"
    );
}

#[test]
fn a_rollback_by_swarm_is_notified_even_without_a_phase_change() {
    let old = status(Phase::Progressing, "");
    let mut new = status(Phase::Progressing, "");
    new.rollout = Some(RolloutStatus {
        service: "s".into(),
        state: "rollback_started".into(),
        message: "update rolled back due to failure".into(),
    });
    let sent = of_change(&old, &new, String::new()).unwrap();
    assert!(sent.rolled_back);
    assert_eq!(
        sent.text,
        "mlmodel: m is Progressing (was Progressing), rolled back by Swarm"
    );
    // Failed once held: the phase change says so, and the message why.
    let mut failed = new.clone();
    failed.phase = Phase::Failed;
    failed.message = "deployment d1 was rolled back by Swarm on service s: ...".into();
    let sent = of_change(&new, &failed, String::new()).unwrap();
    assert!(sent.rolled_back, "{sent:?}");
    assert!(
        sent.text
            .ends_with(": deployment d1 was rolled back by Swarm on service s: ...")
    );
}
