use super::*;
use crate::desired::record::Source;
use crate::desired::validate::FieldError;
use bollard::models::ServiceSpec;

fn service(running: u64, desired: u64, update_state: Option<&str>) -> ObservedService {
    ObservedService {
        id: "s1".into(),
        version: 1,
        spec: ServiceSpec {
            name: Some("mlmodel_m_mlmodel".into()),
            ..Default::default()
        },
        running_tasks: running,
        desired_tasks: desired,
        update_state: update_state.map(UpdateState::parse),
        update_message: Some("update rolled back due to failure".into()),
        updated_at: None,
    }
}

fn task(slot: i64, state: &str, error: &str) -> ObservedTask {
    ObservedTask {
        id: format!("t{slot}"),
        service_id: "s1".into(),
        slot: Some(slot),
        node_id: Some("n1".into()),
        image: "img:1".into(),
        desired_state: TaskState::Running,
        state: TaskState::parse(state),
        state_since: None,
        message: String::new(),
        error: error.into(),
        up_to_date: true,
    }
}

/// A ready, active node with 2 CPUs and 4 GiB.
fn node(id: &str, hostname: &str) -> ObservedNode {
    ObservedNode {
        id: id.into(),
        hostname: hostname.into(),
        role: "worker".into(),
        availability: "active".into(),
        state: "ready".into(),
        nano_cpus: 2_000_000_000,
        memory_bytes: 4 << 30,
        os: "linux".into(),
        arch: "x86_64".into(),
        ..ObservedNode::default()
    }
}

fn observed_with_nodes(nodes: Vec<ObservedNode>) -> Observed {
    let mut observed = Observed::default();
    observed.nodes = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
    observed
}

fn verdict() -> Verdict {
    Verdict {
        valid: true,
        wanted: true,
        synced: true,
        problem: None,
        applied: Some(Applied {
            source: "api".into(),
            deployment_id: "d1".into(),
            deployment_time: 1.0,
        }),
        warnings: Vec::new(),
    }
}

fn phase_of(
    verdict: &Verdict,
    services: &[ObservedService],
    tasks: &[ObservedTask],
) -> (Phase, String) {
    let services: Vec<&ObservedService> = services.iter().collect();
    let tasks: Vec<&ObservedTask> = tasks.iter().collect();
    let observed = observed_with_nodes(vec![node("n1", "node-1")]);
    let status = derive("m", verdict, &services, &tasks, &Scene::of(&observed, None));
    (status.phase, status.message)
}

#[test]
fn phases_follow_the_declaration_and_the_swarm() {
    let no_space = "no suitable node (insufficient resources on 1 node)";
    let invalid = Verdict {
        problem: Some(Problem::Invalid {
            source: Source::Api,
            errors: vec![FieldError::new("domain", "bad")],
        }),
        valid: false,
        ..verdict()
    };
    let absent = Verdict {
        wanted: false,
        ..verdict()
    };
    let unsynced = Verdict {
        synced: false,
        ..verdict()
    };
    type Case<'a> = (
        &'a str,
        Verdict,
        Vec<ObservedService>,
        Vec<ObservedTask>,
        Phase,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "declared, nothing live",
            verdict(),
            vec![],
            vec![],
            Phase::Pending,
            "",
        ),
        (
            "all running",
            verdict(),
            vec![service(2, 2, None)],
            vec![task(1, "running", ""), task(2, "running", "")],
            Phase::Available,
            "",
        ),
        (
            "a new template taken, the old tasks still running and not yet replaced",
            verdict(),
            vec![service(2, 2, None)],
            vec![
                ObservedTask {
                    up_to_date: false,
                    ..task(1, "running", "")
                },
                task(2, "running", ""),
            ],
            Phase::Progressing,
            "",
        ),
        (
            "starting",
            verdict(),
            vec![service(1, 2, None)],
            vec![task(2, "starting", "")],
            Phase::Progressing,
            "",
        ),
        (
            "no room",
            verdict(),
            vec![service(0, 2, None)],
            vec![task(1, "pending", no_space)],
            Phase::Degraded,
            no_space,
        ),
        (
            "rolling",
            verdict(),
            vec![service(2, 2, Some("updating"))],
            vec![],
            Phase::Progressing,
            "",
        ),
        (
            "rolling out an image that is missing, the old task still serving",
            verdict(),
            vec![service(1, 1, Some("updating"))],
            vec![
                task(1, "running", ""),
                task(1, "rejected", "No such image: img:2"),
            ],
            Phase::Progressing,
            "No such image: img:2",
        ),
        (
            "unsynced",
            unsynced,
            vec![service(2, 2, None)],
            vec![],
            Phase::Progressing,
            "",
        ),
        (
            "rolled back",
            verdict(),
            vec![service(2, 2, Some("rollback_completed"))],
            vec![],
            Phase::Failed,
            "rollout rollback completed: update rolled back due to failure",
        ),
        (
            "invalid",
            invalid,
            vec![service(2, 2, None)],
            vec![],
            Phase::Failed,
            "domain: bad",
        ),
        (
            "removing",
            absent.clone(),
            vec![service(2, 2, None)],
            vec![],
            Phase::Progressing,
            "removing services",
        ),
        ("removed", absent, vec![], vec![], Phase::Removed, ""),
    ];
    for (what, verdict, services, tasks, phase, message) in cases {
        let (got_phase, got_message) = phase_of(&verdict, &services, &tasks);
        assert_eq!(got_phase, phase, "{what}");
        // Swarm's words first; a hint may follow them (see the next test).
        if message.is_empty() {
            assert_eq!(got_message, "", "{what}");
        } else {
            assert!(got_message.starts_with(message), "{what}: {got_message}");
        }
    }
}

#[test]
fn an_image_a_node_cannot_pull_says_what_to_do() {
    let services = [service(0, 1, None)];
    for (image, login) in [
        (
            "127.0.0.1:5000/private/m:1",
            "`docker login 127.0.0.1:5000`",
        ),
        ("team/m:1", "`docker login`"),
    ] {
        let error = format!("No such image: {image}");
        let tasks = [task(1, "rejected", &error)];
        let (phase, message) = phase_of(&verdict(), &services, &tasks);
        assert_eq!(phase, Phase::Degraded);
        assert!(message.starts_with(&error), "{message}");
        assert!(message.contains(login), "{message}");
    }
}

#[test]
fn tasks_are_named_like_docker_and_show_node_names() {
    let services = [service(1, 1, None)];
    let tasks = [task(1, "running", "")];
    let observed = observed_with_nodes(vec![node("n1", "node-1")]);
    let scene = Scene::of(&observed, None);
    let status = derive("m", &verdict(), &[&services[0]], &[&tasks[0]], &scene);
    assert_eq!(status.tasks[0].name, "mlmodel_m_mlmodel.1");
    assert_eq!(status.tasks[0].node, "node-1");
    assert_eq!(status.tasks[0].state, "Running");
    assert_eq!(status.services[0].replicas, "1/1");
    assert!(status.active && status.valid);
}

#[test]
fn the_cache_bumps_its_generation_only_on_real_changes() {
    let cache = StatusCache::new();
    let mut observed = Observed::default();
    observed.listed_at = 1.0;
    let status = derive("m", &verdict(), &[], &[], &Scene::of(&observed, None));
    assert!(cache.set(status.clone()));
    let generation = cache.generation();
    assert!(!cache.set(ModelStatus {
        observed_at: 2.0,
        ..status.clone()
    }));
    assert_eq!(cache.generation(), generation);
    assert!(cache.set(ModelStatus {
        message: "x".into(),
        ..status
    }));
    assert_eq!(cache.generation(), generation + 1);
    cache.remove("m");
    assert!(cache.get("m").is_none());
}

/// A task that entered `state` at unix time 1000 (2001-09-09T01:46:40Z).
fn waiting(slot: i64, state: &str, error: &str) -> ObservedTask {
    ObservedTask {
        state_since: Some("1970-01-01T00:16:40Z".into()),
        node_id: None,
        ..task(slot, state, error)
    }
}

fn scene_at(observed: &mut Observed, at: f64) {
    observed.listed_at = at;
}

#[test]
fn a_task_left_new_on_a_full_network_says_no_free_ip_after_the_grace_period() {
    use crate::reconcile::network::{NetworkReport, Usage};
    let services = [service(0, 1, None)];
    let tasks = [waiting(1, "new", "")];
    let network = NetworkReport {
        name: "mlmodel".into(),
        subnets: vec!["10.0.1.0/24".into()],
        capacity: Some(253),
        used: Usage {
            tasks: 240,
            vips: 12,
            nodes: 1,
        },
        needed: Usage {
            tasks: 270,
            vips: 30,
            nodes: 1,
        },
    };
    let mut observed = observed_with_nodes(vec![node("n1", "node-1")]);
    let derive_at = |observed: &Observed| {
        derive(
            "m",
            &verdict(),
            &[&services[0]],
            &[&tasks[0]],
            &Scene::of(observed, Some(&network)),
        )
    };
    scene_at(&mut observed, 1005.0);
    let early = derive_at(&observed);
    assert_eq!(early.phase, Phase::Progressing);
    assert_eq!(
        early.message, "",
        "within the grace period nothing is said yet"
    );
    scene_at(&mut observed, 1030.0);
    let late = derive_at(&observed);
    assert_eq!(late.phase, Phase::Progressing);
    assert!(
        late.message.starts_with(
            "1 task waiting for 30s: no free IP address on network mlmodel (10.0.1.0/24, 253 addresses): 253 in use"
        ),
        "{}",
        late.message
    );
    assert!(late.message.contains("301 needed"), "{}", late.message);
}

#[test]
fn a_pending_task_names_what_the_nodes_lack_or_the_constraint_no_node_meets() {
    use bollard::models::{ResourceObject, TaskSpec, TaskSpecPlacement, TaskSpecResources};
    let mut services = [service(0, 1, None)];
    services[0].spec.task_template = Some(TaskSpec {
        resources: Some(TaskSpecResources {
            reservations: Some(ResourceObject {
                nano_cpus: Some(4_000_000_000),
                memory_bytes: Some(1 << 30),
                ..Default::default()
            }),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement {
            constraints: Some(vec![
                "node.role==worker".into(),
                "node.labels.gpu==yes".into(),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut busy = node("n2", "node-2");
    busy.availability = "drain".into();
    let mut observed = observed_with_nodes(vec![node("n1", "node-1"), busy]);
    // Another service's running task on node-1 reserves half a CPU of it.
    let other = ObservedService {
        id: "s2".into(),
        spec: ServiceSpec {
            task_template: Some(TaskSpec {
                resources: Some(TaskSpecResources {
                    reservations: Some(ResourceObject {
                        nano_cpus: Some(500_000_000),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..service(1, 1, None)
    };
    observed.put_service(std::sync::Arc::new(other));
    observed.tasks.insert(
        "s2".into(),
        std::sync::Arc::from(vec![ObservedTask {
            service_id: "s2".into(),
            ..task(1, "running", "")
        }]),
    );
    scene_at(&mut observed, 1030.0);
    let status_with = |error: &str| {
        let tasks = [waiting(1, "pending", error)];
        derive(
            "m",
            &verdict(),
            &[&services[0]],
            &[&tasks[0]],
            &Scene::of(&observed, None),
        )
        .message
    };
    let resources = status_with("no suitable node (insufficient resources on 2 nodes)");
    assert_eq!(
        resources,
        "1 task waiting for 30s: no suitable node (insufficient resources on 2 nodes): each replica reserves 4 CPUs and 1 GiB of memory; free on the ready nodes: node-1 1.5 CPUs and 4 GiB"
    );
    let constraint =
        status_with("no suitable node (scheduling constraints not satisfied on 2 nodes)");
    assert!(
        constraint.ends_with(
            "no ready, active node meets the placement constraint `node.labels.gpu==yes` (candidates: node-1)"
        ),
        "{constraint}"
    );
    let drained = status_with("no suitable node (1 node not available for new tasks)");
    assert!(
        drained.ends_with("not taking tasks: node-2 drained"),
        "{drained}"
    );
}

#[test]
fn constraints_are_evaluated_as_swarm_does() {
    let mut n = node("id1", "Host-A");
    n.labels.insert("zone".into(), "eu".into());
    n.engine_labels.insert("disk".into(), "ssd".into());
    for (constraint, met) in [
        ("node.hostname==host-a", Some(true)),
        ("node.hostname!=host-a", Some(false)),
        ("node.id == id1", Some(true)),
        ("node.role==manager", Some(false)),
        ("node.labels.zone==eu", Some(true)),
        ("node.labels.rack==1", Some(false)),
        ("node.labels.rack!=1", Some(true)),
        ("engine.labels.disk==ssd", Some(true)),
        ("node.platform.os==linux", Some(true)),
        ("node.platform.arch==x86_64", Some(true)),
        ("node.ip==10.0.0.1", None),
        ("nonsense", None),
    ] {
        assert_eq!(super::why::meets(&n, constraint), met, "{constraint}");
    }
}

#[test]
fn replicas_moved_off_a_node_that_went_down_and_nodes_that_lack_the_image_are_named() {
    use crate::reconcile::observe::{Departed, Unfit};
    let services = [service(1, 2, None)];
    let mut down = node("n2", "node-2");
    down.state = "down".into();
    down.message = "heartbeat failure".into();
    let mut observed = observed_with_nodes(vec![node("n1", "node-1"), down]);
    observed.departed.insert(
        "s1".into(),
        vec![Departed {
            slot: Some(2),
            node_id: "n2".into(),
            node_unavailable: Some("down (heartbeat failure)".into()),
            error: String::new(),
            at: 1000.0,
        }],
    );
    scene_at(&mut observed, 1003.0);
    let tasks = [task(1, "running", ""), waiting(2, "preparing", "")];
    let status = derive(
        "m",
        &verdict(),
        &[&services[0]],
        &[&tasks[0], &tasks[1]],
        &Scene::of(&observed, None),
    );
    assert_eq!(status.phase, Phase::Progressing);
    assert_eq!(
        status.message,
        "1 replica moved off node node-2 (down (heartbeat failure))"
    );
    // A task still listed on the node that is down now is named too.
    let on_down = ObservedTask {
        node_id: Some("n2".into()),
        ..task(2, "running", "")
    };
    let status = derive(
        "m",
        &verdict(),
        &[&services[0]],
        &[&tasks[0], &on_down],
        &Scene::of(&observed, None),
    );
    assert!(
        status
            .message
            .starts_with("node node-2 is down (heartbeat failure): its tasks will be rescheduled"),
        "{}",
        status.message
    );
    // Nodes that could not pull the image, once the model runs elsewhere.
    observed.departed.clear();
    observed.unfit.insert(
        "s1".into(),
        Unfit {
            image: "img:1".into(),
            nodes: [("n2".to_string(), "No such image: img:1".to_string())].into(),
        },
    );
    let services = [service(2, 2, None)];
    let running = [task(1, "running", ""), task(2, "running", "")];
    let status = derive(
        "m",
        &verdict(),
        &[&services[0]],
        &[&running[0], &running[1]],
        &Scene::of(&observed, None),
    );
    assert_eq!(status.phase, Phase::Available);
    assert_eq!(
        status.message,
        "the image cannot be had on node node-2 (No such image: img:1): its tasks run only on the other nodes"
    );
}
