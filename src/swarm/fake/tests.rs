use super::state::now_rfc3339;
use super::*;
use crate::swarm::ObservedTask;
use bollard::models::{
    NetworkAttachmentConfig, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};

fn spec(name: &str, replicas: i64) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_string()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some("img:1".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attached_to(name: &str, network: &str) -> ServiceSpec {
    let mut spec = spec(name, 1);
    if let Some(template) = spec.task_template.as_mut() {
        template.networks = Some(vec![NetworkAttachmentConfig {
            target: Some(network.to_string()),
            aliases: Some(vec!["alias".to_string()]),
            ..Default::default()
        }]);
    }
    spec
}

#[test]
fn the_fake_can_stand_in_for_docker_behind_the_trait() {
    let swarm: std::sync::Arc<dyn Swarm> = std::sync::Arc::new(FakeSwarm::new());
    drop(swarm);
}

#[tokio::test]
async fn creating_a_taken_name_is_a_conflict() {
    let swarm = FakeSwarm::new();
    swarm.create_service(&spec("a", 1)).await.unwrap();
    let err = swarm.create_service(&spec("a", 2)).await.unwrap_err();
    assert!(matches!(err, SwarmError::Conflict { .. }), "{err:?}");
    assert_eq!(swarm.list_services().await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_write_bumps_the_swarm_wide_version_index() {
    let swarm = FakeSwarm::new();
    let a = swarm.create_service(&spec("a", 1)).await.unwrap();
    let b = swarm.create_service(&spec("b", 1)).await.unwrap();
    let version_a = swarm.service(&a).unwrap().version;
    let version_b = swarm.service(&b).unwrap().version;
    assert!(version_b > version_a);
    swarm
        .update_service(&a, version_a, &spec("a", 2))
        .await
        .unwrap();
    assert!(swarm.service(&a).unwrap().version > version_b);
}

#[tokio::test]
async fn an_update_with_a_stale_version_is_out_of_sequence() {
    let swarm = FakeSwarm::new();
    let id = swarm.create_service(&spec("a", 1)).await.unwrap();
    let version = swarm.service(&id).unwrap().version;
    swarm.scale_by_hand("a", 3).unwrap();
    let err = swarm
        .update_service(&id, version, &spec("a", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, SwarmError::OutOfSequence { .. }), "{err:?}");
    assert_eq!(swarm.service("a").unwrap().desired_tasks, 3);
}

#[tokio::test]
async fn renaming_through_an_update_is_refused_like_docker_does() {
    let swarm = FakeSwarm::new();
    let id = swarm.create_service(&spec("a", 1)).await.unwrap();
    let version = swarm.service(&id).unwrap().version;
    let err = swarm
        .update_service(&id, version, &spec("b", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SwarmError::Api { status: 501, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn removing_an_unknown_service_succeeds() {
    let swarm = FakeSwarm::new();
    swarm.remove_service("nope").await.unwrap();
    let id = swarm.create_service(&spec("a", 1)).await.unwrap();
    swarm.remove_service(&id).await.unwrap();
    swarm.remove_service(&id).await.unwrap();
    assert_eq!(swarm.inspect_service("a").await.unwrap(), None);
}

/// The tasks the fake lists, without their specs.
async fn listed_tasks(swarm: &FakeSwarm) -> Vec<ObservedTask> {
    let listed = swarm.list_tasks().await.unwrap();
    listed.into_iter().map(|listed| listed.task).collect()
}

#[tokio::test]
async fn a_converged_service_reports_all_replicas_running_with_one_task_per_slot() {
    let swarm = FakeSwarm::new();
    let id = swarm.create_service(&spec("a", 2)).await.unwrap();
    let service = swarm.list_services().await.unwrap().remove(0);
    assert_eq!((service.running_tasks, service.desired_tasks), (2, 2));
    let tasks = listed_tasks(&swarm).await;
    let slots: Vec<_> = tasks.iter().map(|task| task.slot).collect();
    assert_eq!(slots, [Some(1), Some(2)]);
    for task in tasks {
        assert_eq!(task.service_id, id);
        assert_eq!(task.image, "img:1");
        assert_eq!(task.state.as_str(), "running");
        assert_eq!(task.node_id.as_deref(), Some(FAKE_NODE_ID));
    }
}

#[tokio::test]
async fn rejected_tasks_wait_to_restart_with_desired_state_ready() {
    let swarm = FakeSwarm::new();
    swarm.create_service(&spec("a", 1)).await.unwrap();
    swarm.set_running("a", 0).unwrap();
    swarm
        .set_task_error("a", "rejected", "No such image: img:1")
        .unwrap();
    let tasks = listed_tasks(&swarm).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state.as_str(), "rejected");
    assert_eq!(tasks[0].desired_state.as_str(), "ready");
}

#[tokio::test]
async fn tasks_that_cannot_run_show_their_error() {
    let swarm = FakeSwarm::new();
    swarm.create_service(&spec("a", 3)).await.unwrap();
    swarm.set_running("a", 1).unwrap();
    let insufficient = "no suitable node (insufficient resources on 1 node)";
    swarm.set_task_error("a", "pending", insufficient).unwrap();
    let service = swarm.list_services().await.unwrap().remove(0);
    assert_eq!((service.running_tasks, service.desired_tasks), (1, 3));
    let tasks = listed_tasks(&swarm).await;
    let stuck: Vec<_> = tasks
        .iter()
        .filter(|task| task.state.as_str() == "pending")
        .collect();
    assert_eq!(stuck.len(), 2);
    assert!(
        stuck
            .iter()
            .all(|task| task.error == insufficient && task.node_id.is_none())
    );
}

#[tokio::test]
async fn network_targets_given_by_name_are_stored_as_ids() {
    let swarm = FakeSwarm::new();
    let request = NetworkRequest {
        name: "mlmodel".to_string(),
        driver: "overlay".to_string(),
        attachable: true,
        labels: HashMap::new(),
        subnet: None,
    };
    let net = swarm.create_network(&request).await.unwrap();
    assert_eq!(
        swarm.network_id("mlmodel").await.unwrap(),
        Some(net.clone())
    );
    assert_eq!(swarm.network_id("mlmode").await.unwrap(), None);
    swarm
        .create_service(&attached_to("a", "mlmodel"))
        .await
        .unwrap();
    let stored = swarm
        .service("a")
        .unwrap()
        .spec
        .task_template
        .unwrap()
        .networks
        .unwrap();
    assert_eq!(stored[0].target.as_deref(), Some(net.as_str()));
    assert_eq!(stored[0].aliases, Some(vec!["alias".to_string()]));
    let err = swarm.create_network(&request).await.unwrap_err();
    assert!(matches!(err, SwarmError::Conflict { .. }), "{err:?}");
}

#[tokio::test]
async fn attaching_to_a_missing_network_fails_like_docker_with_a_500() {
    let swarm = FakeSwarm::new();
    let err = swarm
        .create_service(&attached_to("a", "nowhere"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SwarmError::Api { status: 500, .. }),
        "{err:?}"
    );
    assert!(swarm.service("a").is_none());
}

#[tokio::test]
async fn an_injected_failure_hits_only_the_next_call_of_its_kind() {
    let swarm = FakeSwarm::new();
    let injected = SwarmError::Api {
        operation: "list services".to_string(),
        status: 503,
        message: "busy".to_string(),
    };
    swarm.fail_next(Op::ListServices, injected.clone());
    swarm.list_tasks().await.unwrap();
    assert_eq!(swarm.list_services().await.unwrap_err(), injected);
    swarm.list_services().await.unwrap();
}

#[tokio::test]
async fn calls_are_counted_by_kind_and_writes_apart() {
    let swarm = FakeSwarm::new();
    swarm.list_services().await.unwrap();
    swarm.list_services().await.unwrap();
    swarm.create_service(&spec("a", 1)).await.unwrap();
    swarm.scale_by_hand("a", 2).unwrap();
    let expected = BTreeMap::from([("create_service", 1), ("list_services", 2)]);
    assert_eq!(swarm.calls(), expected);
    assert_eq!(swarm.writes(), 1);
    swarm.reset_calls();
    assert_eq!(swarm.writes(), 0);
}

#[tokio::test]
async fn an_unreachable_swarm_fails_every_call_and_ends_event_streams() {
    let swarm = FakeSwarm::new();
    let mut events = swarm.events();
    swarm.set_unreachable(true);
    assert!(events.next().await.is_none());
    let err = swarm.list_services().await.unwrap_err();
    assert!(matches!(err, SwarmError::Unreachable { .. }), "{err:?}");
    let mut late = swarm.events();
    assert!(matches!(
        late.next().await,
        Some(Err(SwarmError::Unreachable { .. }))
    ));
    assert!(late.next().await.is_none());
    swarm.set_unreachable(false);
    swarm.list_services().await.unwrap();
}

#[tokio::test]
async fn every_subscriber_sees_writes_and_hand_edits_in_order() {
    let swarm = FakeSwarm::new();
    let mut first = swarm.events();
    let mut second = swarm.events();
    let id = swarm.create_service(&spec("a", 1)).await.unwrap();
    swarm.set_label_by_hand("a", "k", "v").unwrap();
    swarm.remove_by_hand("a").unwrap();
    for events in [&mut first, &mut second] {
        let mut actions = Vec::new();
        for _ in 0..3 {
            match events.next().await {
                Some(Ok(SwarmEvent::Service {
                    action,
                    id: got,
                    name,
                })) => {
                    assert_eq!((got.as_str(), name.as_deref()), (id.as_str(), Some("a")));
                    actions.push(action);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(actions, ["create", "update", "remove"]);
    }
    assert_eq!(swarm.service("a"), None);
}

#[tokio::test]
async fn hand_edits_change_what_the_next_list_shows() {
    let swarm = FakeSwarm::new();
    swarm.create_service(&spec("a", 1)).await.unwrap();
    swarm.set_label_by_hand("a", "owner", "someone").unwrap();
    swarm.scale_by_hand("a", 4).unwrap();
    let listed = swarm
        .list_services()
        .await
        .unwrap()
        .remove(0)
        .decode()
        .unwrap();
    assert_eq!(listed.label("owner"), Some("someone"));
    assert_eq!(listed.desired_tasks, 4);
    assert!(swarm.scale_by_hand("missing", 1).is_err());
}

#[tokio::test]
async fn inspect_like_docker_reports_no_replica_counts() {
    let swarm = FakeSwarm::new();
    swarm.create_service(&spec("a", 2)).await.unwrap();
    let service = swarm.inspect_service("a").await.unwrap().unwrap();
    assert_eq!((service.running_tasks, service.desired_tasks), (0, 0));
}

#[tokio::test]
async fn only_a_new_task_template_reports_a_rolling_update() {
    let swarm = FakeSwarm::new();
    let id = swarm.create_service(&spec("a", 1)).await.unwrap();
    swarm.scale_by_hand("a", 2).unwrap();
    assert_eq!(swarm.service("a").unwrap().update_state, None);
    let current = swarm.service("a").unwrap();
    let mut new_image = spec("a", 2);
    if let Some(container) = new_image
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        container.image = Some("img:2".to_string());
    }
    swarm
        .update_service(&id, current.version, &new_image)
        .await
        .unwrap();
    let updated = swarm.service("a").unwrap();
    assert_eq!(
        updated.update_state.as_ref().map(UpdateState::as_str),
        Some("completed")
    );
    assert_eq!(updated.update_message.as_deref(), Some("update completed"));
}

#[test]
fn timestamps_are_rfc3339_to_the_nanosecond() {
    let now = now_rfc3339();
    let parsed: jiff::Timestamp = now.parse().expect(&now);
    assert!(now.ends_with('Z'), "{now}");
    assert!(
        jiff::Timestamp::now()
            .duration_since(parsed)
            .as_secs()
            .abs()
            < 5,
        "{now}"
    );
}
