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
    let nodes = HashMap::from([("n1".to_string(), "node-1".to_string())]);
    let status = derive("m", verdict, &services, &tasks, &nodes, 0.0);
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
    let nodes = HashMap::from([("n1".to_string(), "node-1".to_string())]);
    let status = derive("m", &verdict(), &[&services[0]], &[&tasks[0]], &nodes, 0.0);
    assert_eq!(status.tasks[0].name, "mlmodel_m_mlmodel.1");
    assert_eq!(status.tasks[0].node, "node-1");
    assert_eq!(status.tasks[0].state, "Running");
    assert_eq!(status.services[0].replicas, "1/1");
    assert!(status.active && status.valid);
}

#[test]
fn the_cache_bumps_its_generation_only_on_real_changes() {
    let cache = StatusCache::new();
    let status = derive("m", &verdict(), &[], &[], &HashMap::new(), 1.0);
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
