//! [`FakeSwarm`]: an in-memory swarm for fast, deterministic tests.
//!
//! It keeps the parts of Docker's behaviour the reconciler depends on: unique service names
//! (409), one version index shared by every write and checked on update ("update out of
//! sequence"), removal of a missing service being harmless, network attachment targets
//! stored as ids even when given as names, and events for every service write. Where
//! Docker 20.10 answers oddly it answers the same: inspect carries no replica counts, a
//! missing network is a 500, renaming a service is a 501.
//!
//! Tests steer it with knobs: inject the next error of a kind of call ([`FakeSwarm::fail_next`]),
//! take Docker away ([`FakeSwarm::set_unreachable`]), make tasks fail to run
//! ([`FakeSwarm::set_running`], [`FakeSwarm::set_task_error`]), keep tasks on the old
//! template after an update ([`FakeSwarm::hold_rollout`]), act like a human at the CLI
//! (`*_by_hand`), and count calls by kind ([`FakeSwarm::calls`]) to assert, for example, that
//! a resync of a converged swarm writes nothing.
//!
//! What it does not do: fill in Docker's defaults, run rolling updates, or schedule.

use super::{
    ListedNetwork, ListedObject, ListedService, ListedTask, LogChunk, LogQuery, NetworkRequest,
    ObjectKind, ObjectRequest, ObservedNode, ObservedService, Swarm, SwarmError, SwarmEvent,
    SwarmInfo, TaskState, UpdateState,
};
use async_trait::async_trait;
use bollard::models::{ServiceSpec, ServiceSpecMode};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use state::{FakeService, State};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::broadcast;

/// Id of the fake swarm's only node.
pub const FAKE_NODE_ID: &str = "fake-node-id";
/// Host name of the fake swarm's only node.
pub const FAKE_NODE_HOSTNAME: &str = "fake-node";

/// The fake swarm's first node: a ready, active manager with 2 CPUs and 4 GiB.
pub fn fake_node() -> ObservedNode {
    ObservedNode {
        id: FAKE_NODE_ID.to_string(),
        hostname: FAKE_NODE_HOSTNAME.to_string(),
        role: "manager".to_string(),
        availability: "active".to_string(),
        state: "ready".to_string(),
        addr: "127.0.0.1".to_string(),
        nano_cpus: 2_000_000_000,
        memory_bytes: 4 << 30,
        os: "linux".to_string(),
        arch: "x86_64".to_string(),
        ..ObservedNode::default()
    }
}

/// How many events a slow subscriber may fall behind before its stream fails.
const EVENT_BUFFER: usize = 1024;

/// A kind of call through the [`Swarm`] trait, to count calls and inject failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Swarm::info`].
    Info,
    /// [`Swarm::list_services`].
    ListServices,
    /// [`Swarm::inspect_service`].
    InspectService,
    /// [`Swarm::create_service`].
    CreateService,
    /// [`Swarm::update_service`].
    UpdateService,
    /// [`Swarm::remove_service`].
    RemoveService,
    /// [`Swarm::list_tasks`].
    ListTasks,
    /// [`Swarm::list_nodes`].
    ListNodes,
    /// [`Swarm::network_id`].
    NetworkId,
    /// [`Swarm::create_network`].
    CreateNetwork,
    /// [`Swarm::list_networks`].
    ListNetworks,
    /// [`Swarm::events`].
    Events,
    /// [`Swarm::object_id`].
    ObjectId,
    /// [`Swarm::create_object`].
    CreateObject,
    /// [`Swarm::list_objects`].
    ListObjects,
    /// [`Swarm::remove_object`].
    RemoveObject,
    /// [`Swarm::image_digest`].
    ImageDigest,
    /// [`Swarm::task_logs`].
    TaskLogs,
}

impl Op {
    /// The trait method's name, as used in [`FakeSwarm::calls`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::ListServices => "list_services",
            Self::InspectService => "inspect_service",
            Self::CreateService => "create_service",
            Self::UpdateService => "update_service",
            Self::RemoveService => "remove_service",
            Self::ListTasks => "list_tasks",
            Self::ListNodes => "list_nodes",
            Self::NetworkId => "network_id",
            Self::CreateNetwork => "create_network",
            Self::ListNetworks => "list_networks",
            Self::Events => "events",
            Self::ObjectId => "object_id",
            Self::CreateObject => "create_object",
            Self::ListObjects => "list_objects",
            Self::RemoveObject => "remove_object",
            Self::ImageDigest => "image_digest",
            Self::TaskLogs => "task_logs",
        }
    }

    /// Whether the call changes the swarm.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::CreateService
                | Self::UpdateService
                | Self::RemoveService
                | Self::CreateNetwork
                | Self::CreateObject
                | Self::RemoveObject
        )
    }
}

/// An in-memory [`Swarm`]; cheap to create, safe to share behind an `Arc`.
#[derive(Debug)]
pub struct FakeSwarm {
    state: Mutex<State>,
    signals: broadcast::Sender<Signal>,
}

/// What open event streams receive.
#[derive(Debug, Clone)]
enum Signal {
    Event(SwarmEvent),
    /// Docker went away: streams end.
    Disconnect,
}

impl Default for FakeSwarm {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSwarm {
    /// An empty, reachable swarm of one manager node, with no services and no networks.
    pub fn new() -> Self {
        let (signals, _) = broadcast::channel(EVENT_BUFFER);
        let state = State {
            index: 1,
            next_id: 1,
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            subnets: BTreeMap::new(),
            nodes: vec![fake_node()],
            objects: BTreeMap::new(),
            digests: HashMap::new(),
            info: SwarmInfo {
                server_version: "fake".to_string(),
                local_node_state: "active".to_string(),
                is_manager: true,
                node_id: FAKE_NODE_ID.to_string(),
                address_pools: vec!["10.0.0.0/8".to_string()],
            },
            unreachable: false,
            failures: HashMap::new(),
            calls: BTreeMap::new(),
            logs: HashMap::new(),
        };
        Self {
            state: Mutex::new(state),
            signals,
        }
    }

    /// Makes the next call of kind `op` fail with `error`; queued errors fire in order.
    pub fn fail_next(&self, op: Op, error: SwarmError) {
        self.lock().failures.entry(op).or_default().push_back(error);
    }

    /// Takes Docker away (every call fails [`SwarmError::Unreachable`] and open event
    /// streams end) or brings it back.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
        if unreachable {
            self.signal(Signal::Disconnect);
        }
    }

    /// Replaces what [`Swarm::info`] reports, e.g. to pretend swarm mode is inactive.
    pub fn set_info(&self, info: SwarmInfo) {
        self.lock().info = info;
    }

    /// Calls made so far, by trait method name (`{"list_services": 3, ...}`); failed
    /// calls count too, methods never called are absent.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.lock()
            .calls
            .iter()
            .map(|(op, count)| (op.name(), *count))
            .collect()
    }

    /// How many calls of kind `op` were made.
    pub fn calls_of(&self, op: Op) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or_default()
    }

    /// How many calls changed (or tried to change) the swarm.
    pub fn writes(&self) -> u64 {
        self.lock()
            .calls
            .iter()
            .filter(|(op, _)| op.is_write())
            .map(|(_, count)| count)
            .sum()
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }

    /// Makes at most `running` of the service's tasks run, until set again; the others
    /// show as "pending" (see [`FakeSwarm::set_task_error`]).
    pub fn set_running(&self, name: &str, running: u64) -> Result<(), SwarmError> {
        let mut state = self.lock();
        let service = state.service_named_mut(name)?;
        service.running = Some(running);
        Ok(())
    }

    /// Sets the state and error shown by the tasks that do not run, e.g. ("pending",
    /// "no suitable node (insufficient resources on 1 node)"). As in Docker, a task that
    /// is "rejected" or "failed" is desired "ready" (waiting to restart), not "running".
    pub fn set_task_error(&self, name: &str, state: &str, error: &str) -> Result<(), SwarmError> {
        let mut swarm = self.lock();
        let service = swarm.service_named_mut(name)?;
        service.stuck = (TaskState::parse(state), error.to_string());
        Ok(())
    }

    /// Sets the rolling-update state and message of a service, e.g. ("paused",
    /// "update paused due to failure or early termination of task ...").
    pub fn set_update_status(
        &self,
        name: &str,
        state: &str,
        message: &str,
    ) -> Result<(), SwarmError> {
        let mut swarm = self.lock();
        let service = swarm.service_named_mut(name)?;
        service.update_status = Some((UpdateState::parse(state), message.to_string()));
        Ok(())
    }

    /// Rolls a service's last update back as Swarm's `failure_action: rollback` does: the
    /// previous spec returns and is forgotten, and the update state says so.
    pub fn roll_back(&self, name: &str, message: &str) -> Result<(), SwarmError> {
        let mut state = self.lock();
        let index = state.index + 1;
        let service = state.service_named_mut(name)?;
        let previous = service.previous.take().ok_or_else(|| SwarmError::Api {
            operation: format!("roll back service {name}"),
            status: 400,
            message: "service has no previous spec".to_string(),
        })?;
        service.task_spec = Arc::new(previous.task_template.clone().unwrap_or_default());
        service.spec = previous;
        service.update_status = Some((UpdateState::RollbackCompleted, message.to_string()));
        service.version = index;
        service.updated_at = state::now_rfc3339();
        let event = state::service_event("update", &service.id, name);
        state.index = index;
        drop(state);
        self.signal(Signal::Event(event));
        Ok(())
    }

    /// Holds the service's rollouts: until [`FakeSwarm::release_rollout`], its tasks keep
    /// the template they run now, as in the moments before Swarm starts an update.
    pub fn hold_rollout(&self, name: &str) -> Result<(), SwarmError> {
        let mut swarm = self.lock();
        swarm.service_named_mut(name)?.held = true;
        Ok(())
    }

    /// Ends [`FakeSwarm::hold_rollout`]: the tasks run the current template at once.
    pub fn release_rollout(&self, name: &str) -> Result<(), SwarmError> {
        let mut swarm = self.lock();
        let service = swarm.service_named_mut(name)?;
        service.held = false;
        service.task_spec = Arc::new(service.spec.task_template.clone().unwrap_or_default());
        Ok(())
    }

    /// A service by id or name, as listed, without counting a call.
    pub fn service(&self, id_or_name: &str) -> Option<ObservedService> {
        let state = self.lock();
        state.find(id_or_name).map(FakeService::observe)
    }

    /// Creates a service as `docker service create` would, emitting its event.
    pub fn create_by_hand(&self, spec: &ServiceSpec) -> Result<String, SwarmError> {
        self.create(spec)
    }

    /// Sets a service's replicas as `docker service scale` would.
    pub fn scale_by_hand(&self, name: &str, replicas: u64) -> Result<(), SwarmError> {
        self.edit_by_hand(name, |spec| {
            spec.mode = Some(ServiceSpecMode {
                replicated: Some(bollard::models::ServiceSpecModeReplicated {
                    replicas: Some(i64::try_from(replicas).unwrap_or(i64::MAX)),
                }),
                ..Default::default()
            });
        })
    }

    /// Sets a service label as `docker service update --label-add` would.
    pub fn set_label_by_hand(&self, name: &str, key: &str, value: &str) -> Result<(), SwarmError> {
        self.edit_by_hand(name, |spec| {
            spec.labels
                .get_or_insert_default()
                .insert(key.to_string(), value.to_string());
        })
    }

    /// Removes a service as `docker service rm` would.
    pub fn remove_by_hand(&self, name: &str) -> Result<(), SwarmError> {
        let mut state = self.lock();
        let id = state.service_named_mut(name)?.id.clone();
        if let Some(event) = state.remove(&id) {
            self.signal(Signal::Event(event));
        }
        Ok(())
    }

    /// Makes the fake registry hold `image` (`name:tag`) at `digest`, as a push would;
    /// an image it holds nothing for cannot be resolved.
    pub fn push_image(&self, image: &str, digest: &str) {
        self.lock()
            .digests
            .insert(image.to_string(), digest.to_string());
    }

    /// Every secret and config, sorted by id, without counting a call.
    pub fn objects(&self) -> Vec<ListedObject> {
        self.lock().objects.values().cloned().collect()
    }

    /// Removes a secret or config as `docker secret rm` would, in use or not (a test's
    /// way to lose one under a running service).
    pub fn remove_object_by_hand(&self, name: &str) {
        self.lock().objects.retain(|_, o| o.name != name);
    }

    /// Creates a network as `docker network create` would, returning its id.
    pub fn add_network_by_hand(&self, name: &str) -> String {
        self.lock().add_network(name)
    }

    /// Creates a network with the given subnet, as `docker network create --subnet`.
    pub fn add_network_with_subnet(&self, name: &str, subnet: &str) -> String {
        let mut state = self.lock();
        state
            .subnets
            .insert(name.to_string(), vec![subnet.to_string()]);
        state.add_network(name)
    }

    /// The subnets a network was created with.
    pub fn network_subnets(&self, name: &str) -> Vec<String> {
        self.lock().subnets.get(name).cloned().unwrap_or_default()
    }

    /// Replaces the swarm's nodes (one ready manager to begin with).
    /// Sets the output of every current task of service `name`, one chunk per line
    /// (a line starting with `!` goes to standard error).
    pub fn set_logs(&self, name: &str, lines: &[&str]) {
        let mut state = self.lock();
        let chunks: Vec<LogChunk> = lines
            .iter()
            .map(|line| {
                let (stderr, text) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, *line),
                };
                LogChunk {
                    stderr,
                    text: bytes::Bytes::from(format!("{text}\n")),
                }
            })
            .collect();
        let ids: Vec<String> = state
            .services
            .values()
            .filter(|s| s.spec.name.as_deref() == Some(name))
            .flat_map(|s| s.tasks().into_iter().map(|t| t.task.id))
            .collect();
        for id in ids {
            state.logs.insert(id, chunks.clone());
        }
    }

    pub fn set_nodes(&self, nodes: Vec<ObservedNode>) {
        self.lock().nodes = nodes;
    }

    fn edit_by_hand(
        &self,
        name: &str,
        edit: impl FnOnce(&mut ServiceSpec),
    ) -> Result<(), SwarmError> {
        let mut state = self.lock();
        let service = state.service_named_mut(name)?;
        let (id, version) = (service.id.clone(), service.version);
        let mut spec = ServiceSpec::clone(&service.spec);
        edit(&mut spec);
        let event = state.update(&id, version, spec)?;
        self.signal(Signal::Event(event));
        Ok(())
    }

    fn create(&self, spec: &ServiceSpec) -> Result<String, SwarmError> {
        let mut state = self.lock();
        let (id, event) = state.create(spec)?;
        self.signal(Signal::Event(event));
        Ok(id)
    }

    /// Locks the state. A test that panicked while holding the lock left nothing half
    /// written that later assertions could trip on (every write is one assignment at the
    /// end), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a call and decides whether it fails before doing anything.
    fn begin(&self, op: Op) -> Result<MutexGuard<'_, State>, SwarmError> {
        let mut state = self.lock();
        *state.calls.entry(op).or_default() += 1;
        if state.unreachable {
            return Err(SwarmError::Unreachable {
                message: "the fake swarm is set unreachable".to_string(),
            });
        }
        if let Some(error) = state.failures.get_mut(&op).and_then(VecDeque::pop_front) {
            return Err(error);
        }
        Ok(state)
    }

    /// Tells open event streams. Writers call it while still holding the lock, so
    /// subscribers see events in the order the writes happened.
    fn signal(&self, signal: Signal) {
        // Nobody listening is fine: events are only for those who subscribed.
        let _ = self.signals.send(signal);
    }
}

#[async_trait]
impl Swarm for FakeSwarm {
    async fn info(&self) -> Result<SwarmInfo, SwarmError> {
        Ok(self.begin(Op::Info)?.info.clone())
    }

    async fn list_services(&self) -> Result<Vec<ListedService>, SwarmError> {
        let state = self.begin(Op::ListServices)?;
        Ok(state.services.values().map(FakeService::listed).collect())
    }

    async fn inspect_service(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedService>, SwarmError> {
        let state = self.begin(Op::InspectService)?;
        // Like Docker, which reports replica counts only when listing.
        Ok(state.find(id_or_name).map(|service| ObservedService {
            running_tasks: 0,
            desired_tasks: 0,
            ..service.observe()
        }))
    }

    async fn create_service(&self, spec: &ServiceSpec) -> Result<String, SwarmError> {
        drop(self.begin(Op::CreateService)?);
        self.create(spec)
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<(), SwarmError> {
        let mut state = self.begin(Op::UpdateService)?;
        let event = state.update(id, version, spec.clone())?;
        self.signal(Signal::Event(event));
        Ok(())
    }

    async fn remove_service(&self, id: &str) -> Result<(), SwarmError> {
        let mut state = self.begin(Op::RemoveService)?;
        if let Some(event) = state.remove(id) {
            self.signal(Signal::Event(event));
        }
        Ok(())
    }

    async fn list_tasks(&self) -> Result<Vec<ListedTask>, SwarmError> {
        Ok(self.begin(Op::ListTasks)?.tasks())
    }

    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, SwarmError> {
        Ok(self.begin(Op::ListNodes)?.nodes.clone())
    }

    async fn list_networks(&self) -> Result<Vec<ListedNetwork>, SwarmError> {
        let state = self.begin(Op::ListNetworks)?;
        Ok(state
            .networks
            .iter()
            .map(|(name, id)| ListedNetwork {
                id: id.clone(),
                name: name.clone(),
                driver: "overlay".to_string(),
                scope: "swarm".to_string(),
                subnets: state.subnets.get(name).cloned().unwrap_or_default(),
            })
            .collect())
    }

    async fn network_id(&self, name: &str) -> Result<Option<String>, SwarmError> {
        Ok(self.begin(Op::NetworkId)?.networks.get(name).cloned())
    }

    async fn create_network(&self, network: &NetworkRequest) -> Result<String, SwarmError> {
        let mut state = self.begin(Op::CreateNetwork)?;
        if state.networks.contains_key(&network.name) {
            return Err(SwarmError::Conflict {
                what: format!("network {}", network.name),
                message: format!("network with name {} already exists", network.name),
            });
        }
        let id = state.add_network(&network.name);
        let subnet = match &network.subnet {
            Some(subnet) => subnet.clone(),
            // As Docker's default pool hands out /24s.
            None => format!("10.0.{}.0/24", state.subnets.len() + 1),
        };
        state.subnets.insert(network.name.clone(), vec![subnet]);
        Ok(id)
    }

    async fn image_digest(&self, image: &str) -> Result<String, SwarmError> {
        let state = self.begin(Op::ImageDigest)?;
        state
            .digests
            .get(image)
            .cloned()
            .ok_or_else(|| SwarmError::Api {
                operation: format!("resolve the digest of image {image}"),
                status: 500,
                message: format!("manifest for {image} not found: manifest unknown"),
            })
    }

    async fn object_id(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, SwarmError> {
        let state = self.begin(Op::ObjectId)?;
        Ok(state
            .objects
            .values()
            .find(|o| o.kind == kind && o.name == name)
            .map(|o| o.id.clone()))
    }

    async fn create_object(&self, object: &ObjectRequest) -> Result<String, SwarmError> {
        let mut state = self.begin(Op::CreateObject)?;
        state.create_object(object.kind(), object.name(), object.labels(), object.data())
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        label: (&str, &str),
    ) -> Result<Vec<ListedObject>, SwarmError> {
        let state = self.begin(Op::ListObjects)?;
        let (key, value) = label;
        Ok(state
            .objects
            .values()
            .filter(|o| o.kind == kind && o.labels.get(key).map(String::as_str) == Some(value))
            .cloned()
            .collect())
    }

    async fn remove_object(&self, kind: ObjectKind, id: &str) -> Result<(), SwarmError> {
        self.begin(Op::RemoveObject)?.remove_object(kind, id)
    }

    fn task_logs(
        &self,
        task_id: &str,
        query: &LogQuery,
    ) -> BoxStream<'static, Result<LogChunk, SwarmError>> {
        let chunks: Vec<LogChunk> = match self.begin(Op::TaskLogs) {
            Ok(state) => state.logs.get(task_id).cloned().unwrap_or_default(),
            Err(error) => return stream::once(async { Err(error) }).boxed(),
        };
        let skip = match query.tail {
            Some(tail) => chunks.len().saturating_sub(tail as usize),
            None => 0,
        };
        stream::iter(chunks.into_iter().skip(skip).map(Ok)).boxed()
    }

    fn events(&self) -> BoxStream<'static, Result<SwarmEvent, SwarmError>> {
        // Subscribe before releasing the lock so no write slips between the check and
        // the subscription.
        let receiver = match self.begin(Op::Events) {
            Ok(_state) => self.signals.subscribe(),
            Err(error) => return stream::once(async { Err(error) }).boxed(),
        };
        stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(Signal::Event(event)) => Some((Ok(event), Some(receiver))),
                Ok(Signal::Disconnect) | Err(broadcast::error::RecvError::Closed) => None,
                // A subscriber that fell behind has lost events, as if the connection had
                // dropped: fail so the caller relists.
                Err(broadcast::error::RecvError::Lagged(missed)) => Some((
                    Err(SwarmError::Unreachable {
                        message: format!("event stream fell {missed} events behind"),
                    }),
                    None,
                )),
            }
        })
        .boxed()
    }
}

mod state;

#[cfg(test)]
mod tests;
