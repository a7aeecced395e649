use super::*;
use crate::desired::stack::Ownership;
use bollard::models::{
    Limit, NetworkAttachmentConfig, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecResources,
};

const NET_ID: &str = "netid123";

fn desired_service(name: &str, replicas: i64, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([("team".to_string(), "a".to_string())])),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                env: Some(vec!["A=1".to_string()]),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some(1_000_000_000),
                    memory_bytes: Some(1 << 30),
                    pids: None,
                }),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some("mlmodel".to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stack(services: Vec<ServiceSpec>) -> StackSpec {
    let mut stack = StackSpec {
        name: "mlmodel_m".into(),
        services,
        ..Default::default()
    };
    stack.stamp(&Ownership {
        instance: "mlmodel",
        model: "m",
        deployment_id: "d1",
    });
    stack
}

/// What Docker would hold after creating `spec`: network targets as ids.
fn live(id: &str, version: u64, spec: &ServiceSpec) -> ObservedService {
    let mut spec = spec.clone();
    if let Some(networks) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.networks.as_mut())
    {
        for n in networks {
            n.target = Some(NET_ID.to_string());
        }
    }
    ObservedService {
        id: id.to_string(),
        version,
        spec,
        running_tasks: 2,
        desired_tasks: 2,
        update_state: None,
        update_message: None,
        updated_at: None,
    }
}

fn networks() -> HashMap<String, String> {
    HashMap::from([("mlmodel".to_string(), NET_ID.to_string())])
}

fn run(intent: Intent, owned: &[ObservedService], foreign: &[ObservedService]) -> Plan {
    run_after(intent, owned, foreign, &[])
}

/// Plans with what an earlier plan found in sync.
fn run_after(
    intent: Intent,
    owned: &[ObservedService],
    foreign: &[ObservedService],
    in_sync: &[InSync],
) -> Plan {
    let ids = networks();
    let owned: Vec<&ObservedService> = owned.iter().collect();
    let foreign: Vec<&ObservedService> = foreign.iter().collect();
    plan(
        intent,
        Observation {
            owned: &owned,
            foreign: &foreign,
            network_ids: &ids,
            in_sync,
        },
    )
}

/// A plan with no writes and no conflicts that found `n` services in sync.
fn assert_converged(plan: &Plan, n: usize) {
    assert!(plan.actions.is_empty(), "{plan:#?}");
    assert!(plan.conflicts.is_empty(), "{plan:#?}");
    assert_eq!(plan.in_sync.len(), n, "{plan:#?}");
}

fn kinds(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::CreateNetwork { network } => format!("create-network {}", network.name),
            Action::EnsureObject { object } => format!("ensure {}", object.name),
            Action::CreateService { spec } => {
                format!("create {}", spec.name.clone().unwrap_or_default())
            }
            Action::UpdateService { id, reason, .. } => format!("update {id}: {reason}"),
            Action::RemoveService { id, .. } => format!("remove {id}"),
        })
        .collect()
}

#[test]
fn plan_creates_missing_services() {
    let desired = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    assert_eq!(
        kinds(&run(Intent::Apply(&desired), &[], &[])),
        ["create mlmodel_m_mlmodel"]
    );
}

#[test]
fn plan_sends_nothing_for_a_converged_model() {
    let desired = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    let observed = [live("s1", 10, &desired.services[0])];
    assert_converged(&run(Intent::Apply(&desired), &observed, &[]), 1);
}

#[test]
fn a_service_found_in_sync_is_compared_again_only_once_something_changed() {
    let desired = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    let observed = live("s1", 10, &desired.services[0]);
    let first = run(
        Intent::Apply(&desired),
        std::slice::from_ref(&observed),
        &[],
    );
    assert_converged(&first, 1);
    let again = run_after(
        Intent::Apply(&desired),
        std::slice::from_ref(&observed),
        &[],
        &first.in_sync,
    );
    assert_eq!(again.in_sync, first.in_sync);
    // Trusted, not compared: the same version index with different content (which
    // Docker never shows) passes as in sync.
    let mut same_version = observed.clone();
    same_version.spec.mode = desired_service("x", 5, "img:1").mode;
    assert_converged(
        &run_after(
            Intent::Apply(&desired),
            &[same_version],
            &[],
            &first.in_sync,
        ),
        1,
    );

    // A hand edit bumps the version index: compared again, and reverted.
    let mut edited = live("s1", 11, &desired.services[0]);
    edited.spec.mode = desired_service("x", 5, "img:1").mode;
    assert_eq!(
        kinds(&run_after(
            Intent::Apply(&desired),
            &[edited],
            &[],
            &first.in_sync
        )),
        ["update s1: replicas changed by hand"]
    );
    // A new desired spec: compared again, and sent.
    let newer = stack(vec![desired_service("mlmodel_m_mlmodel", 3, "img:1")]);
    let plan = run_after(
        Intent::Apply(&newer),
        std::slice::from_ref(&observed),
        &[],
        &first.in_sync,
    );
    assert_eq!(plan.actions.len(), 1, "{plan:#?}");
    assert!(plan.in_sync.is_empty());
}

#[test]
fn plan_tolerates_what_docker_fills_in() {
    let desired = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    let mut observed = live("s1", 10, &desired.services[0]);
    let container = observed
        .spec
        .task_template
        .as_mut()
        .unwrap()
        .container_spec
        .as_mut()
        .unwrap();
    container.image = Some("img:1@sha256:0123456789abcdef0123456789abcdef".into());
    container.isolation = Some(bollard::models::TaskSpecContainerSpecIsolationEnum::DEFAULT);
    observed.spec.task_template.as_mut().unwrap().force_update = Some(0);
    assert_converged(&run(Intent::Apply(&desired), &[observed], &[]), 1);
}

#[test]
fn plan_detects_every_kind_of_hand_edit() {
    type Edit = fn(&mut ServiceSpec);
    let cases: Vec<(&str, Edit)> = vec![
        ("replicas", |s| {
            s.mode
                .as_mut()
                .unwrap()
                .replicated
                .as_mut()
                .unwrap()
                .replicas = Some(5)
        }),
        ("image", |s| {
            s.task_template
                .as_mut()
                .unwrap()
                .container_spec
                .as_mut()
                .unwrap()
                .image = Some("img:2".into())
        }),
        ("resources", |s| {
            s.task_template
                .as_mut()
                .unwrap()
                .resources
                .as_mut()
                .unwrap()
                .limits
                .as_mut()
                .unwrap()
                .memory_bytes = Some(1)
        }),
        ("environment", |s| {
            s.task_template
                .as_mut()
                .unwrap()
                .container_spec
                .as_mut()
                .unwrap()
                .env = Some(vec!["A=2".into()])
        }),
        ("service labels", |s| {
            s.labels
                .as_mut()
                .unwrap()
                .insert("extra".into(), "x".into());
        }),
        ("container labels", |s| {
            s.task_template
                .as_mut()
                .unwrap()
                .container_spec
                .as_mut()
                .unwrap()
                .labels = Some(HashMap::from([("x".into(), "y".into())]))
        }),
        ("networks", |s| {
            s.task_template.as_mut().unwrap().networks.as_mut().unwrap()[0].target =
                Some("other".into())
        }),
    ];
    let desired = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    for (what, edit) in cases {
        let mut observed = live("s1", 10, &desired.services[0]);
        edit(&mut observed.spec);
        let plan = run(Intent::Apply(&desired), &[observed], &[]);
        assert_eq!(
            kinds(&plan),
            [format!("update s1: {what} changed by hand")],
            "{what}"
        );
        match &plan.actions[0] {
            Action::UpdateService { version, spec, .. } => {
                assert_eq!(*version, 10, "update carries the version just read");
                assert_eq!(spec, &desired.services[0]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn plan_updates_when_the_spec_hash_changed() {
    let old = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    let new = stack(vec![desired_service("mlmodel_m_mlmodel", 3, "img:1")]);
    let observed = [live("s1", 4, &old.services[0])];
    assert_eq!(
        kinds(&run(Intent::Apply(&new), &observed, &[])),
        ["update s1: its spec changed (deployment d1)"]
    );
}

#[test]
fn plan_recreates_service_removed_by_hand() {
    let desired = stack(vec![
        desired_service("mlmodel_m_a", 1, "img:1"),
        desired_service("mlmodel_m_b", 1, "img:1"),
    ]);
    let observed = [live("s1", 4, &desired.services[0])];
    assert_eq!(
        kinds(&run(Intent::Apply(&desired), &observed, &[])),
        ["create mlmodel_m_b"]
    );
}

#[test]
fn plan_removes_services_the_template_no_longer_declares() {
    let old = stack(vec![desired_service("mlmodel_m_old", 1, "img:1")]);
    let new = stack(vec![desired_service("mlmodel_m_new", 1, "img:1")]);
    let observed = [live("s1", 4, &old.services[0])];
    assert_eq!(
        kinds(&run(Intent::Apply(&new), &observed, &[])),
        ["create mlmodel_m_new", "remove s1"]
    );
}

#[test]
fn plan_removes_everything_for_an_absent_model() {
    let desired = stack(vec![
        desired_service("mlmodel_m_a", 1, "img:1"),
        desired_service("mlmodel_m_b", 1, "img:1"),
    ]);
    let observed = [
        live("s1", 4, &desired.services[0]),
        live("s2", 5, &desired.services[1]),
    ];
    assert_eq!(
        kinds(&run(Intent::Absent, &observed, &[])),
        ["remove s1", "remove s2"]
    );
}

#[test]
fn plan_holds_a_model_whose_declaration_is_in_doubt() {
    let desired = stack(vec![desired_service("mlmodel_m_a", 1, "img:1")]);
    let mut observed = live("s1", 4, &desired.services[0]);
    observed
        .spec
        .mode
        .as_mut()
        .unwrap()
        .replicated
        .as_mut()
        .unwrap()
        .replicas = Some(9);
    assert_eq!(run(Intent::Hold, &[observed], &[]), Plan::default());
}

#[test]
fn plan_never_touches_a_foreign_service_with_a_colliding_name() {
    let desired = stack(vec![desired_service("mlmodel_m_mlmodel", 2, "img:1")]);
    let mut foreign = live("f1", 3, &desired_service("mlmodel_m_mlmodel", 1, "nginx"));
    foreign.spec.labels = Some(HashMap::from([(
        labels::MANAGED_BY.to_string(),
        "other-team".to_string(),
    )]));
    let plan = run(Intent::Apply(&desired), &[], &[foreign]);
    assert!(plan.actions.is_empty(), "{plan:?}");
    assert_eq!(plan.conflicts.len(), 1);
    assert!(
        plan.conflicts[0]
            .to_string()
            .contains("mlmodel instance \"other-team\""),
        "{}",
        plan.conflicts[0]
    );
}

#[test]
fn plan_creates_the_stacks_own_networks_first() {
    let mut desired = stack(vec![desired_service("mlmodel_m_mlmodel", 1, "img:1")]);
    desired.networks.push(NetworkSpec {
        name: "mlmodel_m_backend".into(),
        driver: "overlay".into(),
        attachable: false,
        labels: Default::default(),
    });
    assert_eq!(
        kinds(&run(Intent::Apply(&desired), &[], &[])),
        [
            "create-network mlmodel_m_backend",
            "create mlmodel_m_mlmodel"
        ]
    );
}

#[test]
fn secrets_and_configs_are_ensured_after_networks_and_before_service_writes_only() {
    use crate::desired::stack::{ObjectKind, ObjectSpec};
    let mut desired = stack(vec![desired_service("mlmodel_m_mlmodel", 1, "img:1")]);
    desired.networks = vec![NetworkSpec {
        name: "mlmodel_m_default".into(),
        driver: "overlay".into(),
        ..Default::default()
    }];
    desired.objects = vec![ObjectSpec {
        kind: ObjectKind::Secret,
        name: "mlmodel_m_token-0123456789".into(),
        ..Default::default()
    }];
    let plan = run(Intent::Apply(&desired), &[], &[]);
    assert_eq!(
        kinds(&plan),
        [
            "create-network mlmodel_m_default",
            "ensure mlmodel_m_token-0123456789",
            "create mlmodel_m_mlmodel",
        ]
    );
    // Converged: no service write, so nothing is ensured either.
    desired.networks.clear();
    let running = live("s1", 3, &desired.services[0]);
    assert_converged(&run(Intent::Apply(&desired), &[running], &[]), 1);
}
