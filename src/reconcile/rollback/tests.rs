use super::*;
use crate::reconcile::observe::Departed;
use bollard::models::ServiceSpec;
use std::collections::HashMap;

/// 2026-12-01T10:00:00Z, as unix seconds.
const ROLLED_BACK_AT: f64 = 1_796_119_200.0;

fn record(id: &str, time: f64) -> DeploymentRecord {
    DeploymentRecord {
        spec: crate::desired::validate::tests::good_spec(),
        deployment_id: id.into(),
        deployment_time: time,
        rendered_template: String::new(),
        image_digest: None,
    }
}

fn service(state: Option<&str>, running: &str) -> ObservedService {
    ObservedService {
        id: "s1".into(),
        version: 7,
        spec: ServiceSpec {
            name: Some("mlmodel_m_mlmodel".into()),
            labels: Some(HashMap::from([(
                labels::DEPLOYMENT_ID.to_string(),
                running.to_string(),
            )])),
            ..Default::default()
        },
        running_tasks: 1,
        desired_tasks: 1,
        update_state: state.map(UpdateState::parse),
        update_message: Some("rollback completed".into()),
        updated_at: Some("2026-12-01T10:00:00.123456789Z".into()),
    }
}

fn departed(error: &str) -> Departed {
    Departed {
        slot: Some(1),
        node_id: "n1".into(),
        node_unavailable: None,
        error: error.into(),
        at: ROLLED_BACK_AT,
    }
}

#[test]
fn a_deployment_swarm_rolled_back_is_named_with_the_task_error() {
    let live = service(Some("rollback_completed"), "old");
    let mut observed = Observed::default();
    observed.departed.insert(
        "s1".into(),
        vec![departed("task: non-zero exit (1)"), departed("")],
    );
    let found = rolled_back(&record("new", ROLLED_BACK_AT - 30.0), &[&live], &observed)
        .expect("rolled back");
    assert_eq!(found.deployment_id, "new");
    assert_eq!(found.running.as_deref(), Some("old"));
    assert_eq!(found.service, "mlmodel_m_mlmodel");
    let words = found.to_string();
    assert!(
        words.starts_with("deployment new was rolled back by Swarm on service mlmodel_m_mlmodel: its new tasks failed (task: non-zero exit (1)); it runs deployment old again."),
        "{words}"
    );
    assert!(
        words.contains(&format!("mlmodel rollback {}", found.model)),
        "{words}"
    );
}

#[test]
fn without_a_task_error_swarms_message_is_the_reason() {
    let live = service(Some("rollback_started"), "old");
    let found = rolled_back(
        &record("new", ROLLED_BACK_AT - 30.0),
        &[&live],
        &Observed::default(),
    )
    .expect("rolled back");
    assert_eq!(found.state, UpdateState::RollbackStarted);
    assert!(
        found
            .to_string()
            .contains("was being rolled back by Swarm on service mlmodel_m_mlmodel: its new tasks failed (Swarm: rollback completed)"),
        "{found}"
    );
}

#[test]
fn a_record_made_after_the_rollback_is_a_new_deployment_to_send() {
    let live = service(Some("rollback_completed"), "old");
    let observed = Observed::default();
    assert_eq!(
        rolled_back(&record("newer", ROLLED_BACK_AT + 5.0), &[&live], &observed),
        None
    );
}

#[test]
fn services_that_run_the_record_or_are_not_rolled_back_are_not_held() {
    let observed = Observed::default();
    let old = record("old", ROLLED_BACK_AT - 300.0);
    // The rolled-back-to deployment itself (a rollback asked of the old record).
    let live = service(Some("rollback_completed"), "old");
    assert_eq!(rolled_back(&old, &[&live], &observed), None);
    let new = record("new", ROLLED_BACK_AT - 30.0);
    for state in [None, Some("updating"), Some("completed"), Some("paused")] {
        let live = service(state, "old");
        assert_eq!(rolled_back(&new, &[&live], &observed), None, "{state:?}");
    }
    // A service without a time of change is not judged.
    let mut live = service(Some("rollback_completed"), "old");
    live.updated_at = None;
    assert_eq!(rolled_back(&new, &[&live], &observed), None);
}
