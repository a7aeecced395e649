//! `DockerSwarm` against the Docker engine on this machine.
//!
//! Needs a single-node swarm with the `mlmodel` overlay network and the local test image
//! `mlmodel-test/static-http:1`. Without a reachable swarm the tests skip, unless
//! `MLMODEL_REQUIRE_SWARM=1`, in which case they fail.
//!
//! Every test names its objects `mlmodeltest-...` uniquely and removes them on drop, even
//! when it fails.

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use futures_util::StreamExt;
use mlmodel::swarm::docker::DockerSwarm;
use mlmodel::swarm::{
    ListedNetwork, NetworkRequest, ObservedService, Swarm, SwarmError, SwarmEvent, TaskState,
    image_of, runs_template,
};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

const IMAGE: &str = "mlmodel-test/static-http:1";
const NETWORK: &str = "mlmodel";

/// Connects to the swarm, or decides that the test cannot run: it panics when
/// `MLMODEL_REQUIRE_SWARM=1` (so a missing swarm fails the run) and otherwise says it skips.
async fn swarm_or_skip() -> Option<DockerSwarm> {
    let reason = match DockerSwarm::connect().await {
        Ok(swarm) => match swarm.info().await {
            Ok(info) if info.local_node_state == "active" && info.is_manager => {
                return Some(swarm);
            }
            Ok(info) => format!(
                "swarm state is {:?}, manager: {}",
                info.local_node_state, info.is_manager
            ),
            Err(err) => err.to_string(),
        },
        Err(err) => err.to_string(),
    };
    if std::env::var("MLMODEL_REQUIRE_SWARM").as_deref() == Ok("1") {
        panic!("no swarm reachable ({reason}); run scripts/swarm-up.sh");
    }
    eprintln!("skipping: no swarm reachable ({reason})");
    None
}

/// A name no other test or run uses, starting with `mlmodeltest`.
fn unique_name(purpose: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("mlmodeltest-{purpose}-{}-{nanos:x}-{n}", std::process::id())
}

/// Removes a Docker object with the CLI when dropped, so a failing test cleans up too.
struct Cleanup {
    kind: &'static str,
    name: String,
}

impl Cleanup {
    fn service(name: &str) -> Self {
        Self {
            kind: "service",
            name: name.to_string(),
        }
    }

    fn network(name: &str) -> Self {
        Self {
            kind: "network",
            name: name.to_string(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Already gone is the usual case; nothing to report either way.
        let _ = Command::new("docker")
            .args([self.kind, "rm", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn test_spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([(
            "mlmodeltest".to_string(),
            "1".to_string(),
        )])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(IMAGE.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn listed(swarm: &DockerSwarm, name: &str) -> Option<ObservedService> {
    let services = swarm.list_services().await.unwrap();
    services
        .into_iter()
        .map(|service| service.decode().unwrap())
        .find(|service| service.name() == name)
}

/// Polls the service list until `done` holds for the named service, for up to 30 s.
async fn wait_for(
    swarm: &DockerSwarm,
    name: &str,
    what: &str,
    done: impl Fn(&ObservedService) -> bool,
) -> ObservedService {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let service = listed(swarm, name).await;
        match service {
            Some(service) if done(&service) => return service,
            _ if Instant::now() > deadline => {
                panic!("service {name}: gave up waiting for {what}; last seen {service:#?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[tokio::test]
async fn info_reports_an_active_manager() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let info = swarm.info().await.unwrap();
    assert_eq!(info.local_node_state, "active");
    assert!(info.is_manager);
    assert!(!info.node_id.is_empty());
    assert!(!info.server_version.is_empty());
}

#[tokio::test]
async fn list_nodes_shows_this_node_with_its_host_name() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let info = swarm.info().await.unwrap();
    let nodes = swarm.list_nodes().await.unwrap();
    let this = nodes.iter().find(|node| node.id == info.node_id).unwrap();
    assert!(!this.hostname.is_empty());
}

#[tokio::test]
async fn a_created_service_is_listed_and_its_task_comes_up_running_in_slot_one() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("run");
    let _cleanup = Cleanup::service(&name);
    let id = swarm.create_service(&test_spec(&name)).await.unwrap();

    let service = listed(&swarm, &name).await.unwrap();
    assert_eq!(service.id, id);
    assert!(service.version > 0);
    assert_eq!(service.desired_tasks, 1);
    assert_eq!(service.label("mlmodeltest"), Some("1"));

    wait_for(&swarm, &name, "one running task", |s| s.running_tasks == 1).await;
    let node_id = swarm.info().await.unwrap().node_id;
    let tasks = swarm.list_tasks().await.unwrap();
    let ours: Vec<_> = tasks
        .iter()
        .filter(|listed| listed.task.service_id == id)
        .collect();
    assert_eq!(ours.len(), 1, "{tasks:#?}");
    // The task's spec reads back as the service's template, and as no other: what
    // tells a task of the current template from one a rollout has yet to replace.
    let current = swarm.inspect_service(&id).await.unwrap().unwrap();
    let template = current.spec.task_template.clone().unwrap();
    let spec = ours[0].spec.clone().decode("the task").unwrap();
    assert!(
        runs_template(&spec, &template),
        "task spec {spec:#?}\nservice template {template:#?}"
    );
    let mut other = template.clone();
    other.container_spec.as_mut().unwrap().image = Some("mlmodel-test/static-http:2".into());
    assert!(!runs_template(&spec, &other));
    assert_eq!(image_of(&spec), IMAGE);
    let task = &ours[0].task;
    assert_eq!(task.slot, Some(1));
    assert_eq!(task.node_id.as_deref(), Some(node_id.as_str()));
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.desired_state, TaskState::Running);
    assert!(task.error.is_empty(), "{task:#?}");
}

/// The adapter reads list answers itself (specs decoded only on demand); what it reads
/// must be what bollard's typed calls read from the same engine.
#[tokio::test]
async fn listed_services_and_tasks_read_as_bollards_typed_lists_read_them() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("lists");
    let _cleanup = Cleanup::service(&name);
    let mut spec = test_spec(&name);
    let labels = spec.labels.get_or_insert_default();
    labels.insert("quoted".into(), "say \"hi\" \u{e9}\n<&>".into());
    labels.insert("record".into(), r#"{"name":"a","scale":2}"#.into());
    let network_id = swarm.network_id(NETWORK).await.unwrap().unwrap();
    let template = spec.task_template.as_mut().unwrap();
    template.networks = Some(vec![NetworkAttachmentConfig {
        target: Some(NETWORK.to_string()),
        ..Default::default()
    }]);
    template.container_spec.as_mut().unwrap().env = Some(vec!["MODEL=a b".into()]);
    let id = swarm.create_service(&spec).await.unwrap();
    wait_for(&swarm, &name, "one running task", |s| s.running_tasks == 1).await;

    let ours = swarm.list_services().await.unwrap();
    let ours = ours
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
        .decode()
        .unwrap();
    let options = bollard::query_parameters::ListServicesOptions {
        filters: None,
        status: Some(true),
    };
    let theirs = swarm.docker().list_services(Some(options)).await.unwrap();
    let theirs = theirs
        .into_iter()
        .find(|s| s.id.as_deref() == Some(&id))
        .unwrap();
    assert_eq!(Some(&ours.spec), theirs.spec.as_ref());
    assert_eq!(ours.label("quoted"), Some("say \"hi\" \u{e9}\n<&>"));
    let networks = ours.spec.task_template.as_ref().unwrap().networks.as_ref();
    assert_eq!(
        networks.unwrap()[0].target.as_deref(),
        Some(network_id.as_str())
    );
    assert_eq!(Some(ours.version), theirs.version.and_then(|v| v.index));
    let status = theirs.service_status.unwrap();
    assert_eq!(Some(ours.running_tasks), status.running_tasks);
    assert_eq!(Some(ours.desired_tasks), status.desired_tasks);
    assert_eq!(ours.updated_at, theirs.updated_at);

    let listed = swarm.list_tasks().await.unwrap();
    let ours: Vec<_> = listed
        .into_iter()
        .filter(|t| t.task.service_id == id)
        .collect();
    let filters = HashMap::from([("service".to_string(), vec![id.clone()])]);
    let options = bollard::query_parameters::ListTasksOptions {
        filters: Some(filters),
    };
    let theirs = swarm.docker().list_tasks(Some(options)).await.unwrap();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let task = &ours[0].task;
    let same = theirs
        .iter()
        .find(|t| t.id.as_deref() == Some(&task.id))
        .unwrap();
    let spec = ours[0].spec.clone().decode("the task").unwrap();
    assert_eq!(Some(&*spec), same.spec.as_ref());
    let status = same.status.as_ref().unwrap();
    assert_eq!(
        Some(task.state.to_string()),
        status.state.map(|s| s.to_string())
    );
    assert_eq!(task.state_since, status.timestamp);
    assert_eq!(Some(&task.message), status.message.as_ref());
    assert_eq!(task.slot, same.slot);
    assert_eq!(task.node_id, same.node_id);
    assert_eq!(
        Some(task.desired_state.to_string()),
        same.desired_state.map(|s| s.to_string())
    );
}

#[tokio::test]
async fn an_update_needs_the_current_version_and_a_stale_one_is_out_of_sequence() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("upd");
    let _cleanup = Cleanup::service(&name);
    let id = swarm.create_service(&test_spec(&name)).await.unwrap();
    let before = swarm.inspect_service(&id).await.unwrap().unwrap();

    let mut spec = before.spec.clone();
    spec.labels
        .get_or_insert_default()
        .insert("color".to_string(), "blue".to_string());
    swarm
        .update_service(&id, before.version, &spec)
        .await
        .unwrap();

    let after = swarm.inspect_service(&name).await.unwrap().unwrap();
    assert_eq!(after.label("color"), Some("blue"));
    assert!(after.version > before.version);
    // A label changes in place: no rolling update, so no update status.
    assert_eq!(after.update_state, None);

    spec.labels
        .get_or_insert_default()
        .insert("color".to_string(), "red".to_string());
    let err = swarm
        .update_service(&id, before.version, &spec)
        .await
        .unwrap_err();
    assert!(matches!(err, SwarmError::OutOfSequence { .. }), "{err:?}");
}

#[tokio::test]
async fn replica_counts_come_from_the_list_and_not_from_inspect() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("cnt");
    let _cleanup = Cleanup::service(&name);
    let id = swarm.create_service(&test_spec(&name)).await.unwrap();
    let listed = listed(&swarm, &name).await.unwrap();
    assert_eq!(listed.desired_tasks, 1);
    let inspected = swarm.inspect_service(&id).await.unwrap().unwrap();
    assert_eq!((inspected.running_tasks, inspected.desired_tasks), (0, 0));
}

#[tokio::test]
async fn removing_a_service_twice_is_fine_and_it_is_gone_afterwards() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("rm");
    let _cleanup = Cleanup::service(&name);
    let id = swarm.create_service(&test_spec(&name)).await.unwrap();
    swarm.remove_service(&id).await.unwrap();
    swarm.remove_service(&id).await.unwrap();
    assert_eq!(swarm.inspect_service(&id).await.unwrap(), None);
    assert!(listed(&swarm, &name).await.is_none());
}

#[tokio::test]
async fn inspecting_a_missing_service_is_none() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let missing = swarm.inspect_service(&unique_name("missing")).await;
    assert_eq!(missing.unwrap(), None);
}

#[tokio::test]
async fn creating_a_service_whose_name_is_taken_is_a_conflict() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("dup");
    let _cleanup = Cleanup::service(&name);
    swarm.create_service(&test_spec(&name)).await.unwrap();
    let err = swarm.create_service(&test_spec(&name)).await.unwrap_err();
    assert!(matches!(err, SwarmError::Conflict { .. }), "{err:?}");
}

#[tokio::test]
async fn a_network_target_given_by_name_comes_back_as_the_network_id() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let network_id = swarm.network_id(NETWORK).await.unwrap().unwrap();
    let name = unique_name("net");
    let _cleanup = Cleanup::service(&name);
    let mut spec = test_spec(&name);
    if let Some(template) = spec.task_template.as_mut() {
        template.networks = Some(vec![NetworkAttachmentConfig {
            target: Some(NETWORK.to_string()),
            aliases: Some(vec![name.clone()]),
            ..Default::default()
        }]);
    }
    let id = swarm.create_service(&spec).await.unwrap();
    let service = swarm.inspect_service(&id).await.unwrap().unwrap();
    let networks = service.spec.task_template.unwrap().networks.unwrap();
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0].target.as_deref(), Some(network_id.as_str()));
    assert_eq!(networks[0].aliases, Some(vec![name.clone()]));
}

#[tokio::test]
async fn a_service_on_a_missing_network_is_refused_with_a_500() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("nonet");
    let _cleanup = Cleanup::service(&name);
    let mut spec = test_spec(&name);
    if let Some(template) = spec.task_template.as_mut() {
        template.networks = Some(vec![NetworkAttachmentConfig {
            target: Some(unique_name("nowhere")),
            ..Default::default()
        }]);
    }
    let err = swarm.create_service(&spec).await.unwrap_err();
    assert!(
        matches!(err, SwarmError::Api { status: 500, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn network_id_matches_the_exact_name_only() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    assert!(swarm.network_id(NETWORK).await.unwrap().is_some());
    // Docker's name filter would match these as substrings of "mlmodel".
    assert_eq!(swarm.network_id("mlmode").await.unwrap(), None);
    assert_eq!(swarm.network_id("model").await.unwrap(), None);
    let missing = swarm.network_id(&unique_name("missing")).await.unwrap();
    assert_eq!(missing, None);
}

#[tokio::test]
async fn create_network_makes_an_attachable_labelled_overlay_once() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("mknet");
    let _cleanup = Cleanup::network(&name);
    let request = NetworkRequest {
        name: name.clone(),
        driver: "overlay".to_string(),
        attachable: true,
        labels: HashMap::from([("mlmodeltest".to_string(), "1".to_string())]),
        subnet: None,
    };
    let id = swarm.create_network(&request).await.unwrap();
    assert_eq!(swarm.network_id(&name).await.unwrap(), Some(id.clone()));
    let ours = listed_once_allocated(&swarm, &id).await;
    assert_eq!(
        (ours.name.as_str(), ours.driver.as_str()),
        (name.as_str(), "overlay")
    );
    assert_eq!(
        ours.subnets.len(),
        1,
        "Docker's pool gave it one subnet: {ours:?}"
    );

    let network = swarm
        .docker()
        .inspect_network(
            &id,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(network.driver.as_deref(), Some("overlay"));
    assert_eq!(network.scope.as_deref(), Some("swarm"));
    assert_eq!(network.attachable, Some(true));
    assert_eq!(
        network.labels.unwrap_or_default().get("mlmodeltest"),
        Some(&"1".to_string())
    );

    let again = swarm.create_network(&request).await.unwrap_err();
    assert!(matches!(again, SwarmError::Conflict { .. }), "{again:?}");
}

/// Waits up to 5 s for `wanted`, skipping other events (other tests run alongside).
async fn expect_event(
    received: &mut UnboundedReceiver<Result<SwarmEvent, SwarmError>>,
    wanted: SwarmEvent,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some(Ok(event))) if event == wanted => return,
            Ok(Some(Ok(_other))) => continue,
            Ok(Some(Err(err))) => panic!("event stream failed: {err}"),
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("no {wanted:?} within 5 s"),
        }
    }
}

#[tokio::test]
async fn events_report_a_service_created_and_removed_within_seconds() {
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut events = swarm.events();
    let follower = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if sender.send(event).is_err() {
                break;
            }
        }
    });
    // The stream connects on its first poll; give the subscription a moment to be in
    // place before the write it must see.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let name = unique_name("evt");
    let _cleanup = Cleanup::service(&name);
    let id = swarm.create_service(&test_spec(&name)).await.unwrap();
    let wanted = |action: &str| SwarmEvent::Service {
        action: action.to_string(),
        id: id.clone(),
        name: Some(name.clone()),
    };
    expect_event(&mut received, wanted("create")).await;
    swarm.remove_service(&id).await.unwrap();
    expect_event(&mut received, wanted("remove")).await;
    follower.abort();
}

#[tokio::test]
async fn create_network_with_a_subnet_picked_free_of_every_network_and_node() {
    use mlmodel::reconcile::network::{pick_subnet, taken_subnets};
    let Some(swarm) = swarm_or_skip().await else {
        return;
    };
    let name = unique_name("subnet");
    let _cleanup = Cleanup::network(&name);
    let networks = swarm.list_networks().await.unwrap();
    let ingress = networks
        .iter()
        .find(|n| n.name == "ingress")
        .expect("ingress");
    assert!(
        !ingress.subnets.is_empty(),
        "the list shows subnets: {ingress:?}"
    );
    // Empty unless the swarm was initialised with --default-addr-pool: then 10.0.0.0/8.
    let pools = swarm.info().await.unwrap().address_pools;
    let addrs: Vec<String> = swarm
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.addr)
        .collect();
    let subnet = pick_subnet(&pools, &taken_subnets(&networks, &addrs)).expect("a free /16");
    let request = NetworkRequest {
        name: name.clone(),
        driver: "overlay".to_string(),
        attachable: true,
        labels: HashMap::new(),
        subnet: Some(subnet.to_string()),
    };
    let id = swarm.create_network(&request).await.unwrap();
    let ours = listed_once_allocated(&swarm, &id).await;
    assert_eq!(ours.subnets, vec![subnet.to_string()]);
}

/// The network `id` as listed once Swarm's allocator has given it its driver and subnet
/// (10 s at most): a list right after the create may show it without them, as seen in
/// CI while the engine was busy.
async fn listed_once_allocated(swarm: &DockerSwarm, id: &str) -> ListedNetwork {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = swarm.list_networks().await.unwrap();
        let ours = listed.into_iter().find(|n| n.id == id).expect("listed");
        if (!ours.driver.is_empty() && !ours.subnets.is_empty()) || Instant::now() > deadline {
            return ours;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
