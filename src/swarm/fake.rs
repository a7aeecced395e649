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
    Deferred, ListedService, ListedTask, NetworkRequest, ObservedNode, ObservedService,
    ObservedTask, Swarm, SwarmError, SwarmEvent, SwarmInfo,
};
use async_trait::async_trait;
use bollard::models::{NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, TaskSpec};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Id of the fake swarm's only node.
pub const FAKE_NODE_ID: &str = "fake-node-id";
/// Host name of the fake swarm's only node.
pub const FAKE_NODE_HOSTNAME: &str = "fake-node";

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
    /// [`Swarm::events`].
    Events,
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
            Self::Events => "events",
        }
    }

    /// Whether the call changes the swarm.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::CreateService | Self::UpdateService | Self::RemoveService | Self::CreateNetwork
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

#[derive(Debug)]
struct State {
    /// The swarm-wide version index, bumped by every write.
    index: u64,
    /// Counter for ids of new objects.
    next_id: u64,
    /// Services by id.
    services: BTreeMap<String, FakeService>,
    /// Network ids by name.
    networks: BTreeMap<String, String>,
    info: SwarmInfo,
    unreachable: bool,
    failures: HashMap<Op, VecDeque<SwarmError>>,
    calls: BTreeMap<Op, u64>,
}

#[derive(Debug, Clone)]
struct FakeService {
    id: String,
    version: u64,
    /// Shared with what lists hand out, as Docker's answers are read lazily.
    spec: Arc<ServiceSpec>,
    updated_at: String,
    update_status: Option<(String, String)>,
    /// How many of the desired tasks run, if not all.
    running: Option<u64>,
    /// State and error shown by the tasks that do not run.
    stuck: (String, String),
    /// The task template its tasks were created from.
    task_spec: Arc<TaskSpec>,
    /// Whether updates leave the tasks on their old template (a rollout not yet begun).
    held: bool,
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
            info: SwarmInfo {
                server_version: "fake".to_string(),
                local_node_state: "active".to_string(),
                is_manager: true,
                node_id: FAKE_NODE_ID.to_string(),
            },
            unreachable: false,
            failures: HashMap::new(),
            calls: BTreeMap::new(),
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
        service.stuck = (state.to_string(), error.to_string());
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
        service.update_status = Some((state.to_string(), message.to_string()));
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

    /// Creates a network as `docker network create` would, returning its id.
    pub fn add_network_by_hand(&self, name: &str) -> String {
        self.lock().add_network(name)
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

impl State {
    fn fresh_id(&mut self, kind: &str) -> String {
        let id = format!("fake{kind}{:06}", self.next_id);
        self.next_id += 1;
        id
    }

    /// A service by id or, like Docker, by name.
    fn find(&self, id_or_name: &str) -> Option<&FakeService> {
        self.services.get(id_or_name).or_else(|| {
            self.services
                .values()
                .find(|service| service.spec.name.as_deref() == Some(id_or_name))
        })
    }

    fn service_named_mut(&mut self, id_or_name: &str) -> Result<&mut FakeService, SwarmError> {
        let not_found = || SwarmError::NotFound {
            what: format!("service {id_or_name}"),
        };
        let id = self.find(id_or_name).ok_or_else(not_found)?.id.clone();
        self.services.get_mut(&id).ok_or_else(not_found)
    }

    fn add_network(&mut self, name: &str) -> String {
        if let Some(id) = self.networks.get(name) {
            return id.clone();
        }
        let id = self.fresh_id("net");
        self.networks.insert(name.to_string(), id.clone());
        self.index += 1;
        id
    }

    /// Rewrites network attachment targets given by name to ids, as Docker stores them.
    /// An unknown network fails the write with a 500, as Docker 20.10 answers.
    fn resolve_networks(&self, spec: &mut ServiceSpec) -> Result<(), SwarmError> {
        let name = spec.name.clone().unwrap_or_default();
        let template = spec
            .task_template
            .as_mut()
            .and_then(|t| t.networks.as_mut());
        let top_level = spec.networks.as_mut();
        for attachment in template.into_iter().chain(top_level).flatten() {
            let NetworkAttachmentConfig {
                target: Some(target),
                ..
            } = attachment
            else {
                continue;
            };
            if self.networks.values().any(|id| id == target) {
                continue;
            }
            let Some(id) = self.networks.get(target.as_str()) else {
                return Err(SwarmError::Api {
                    operation: format!("write service {name}"),
                    status: 500,
                    message: format!("network {target} not found"),
                });
            };
            *target = id.clone();
        }
        Ok(())
    }

    fn create(&mut self, spec: &ServiceSpec) -> Result<(String, SwarmEvent), SwarmError> {
        let id = self.fresh_id("svc");
        let mut spec = spec.clone();
        let name = spec.name.get_or_insert_with(|| id.clone()).clone();
        if self.find(&name).is_some() {
            return Err(SwarmError::Conflict {
                what: format!("service {name}"),
                message: format!(
                    "rpc error: code = AlreadyExists desc = name conflicts with an existing \
                     object: service {name} already exists"
                ),
            });
        }
        self.resolve_networks(&mut spec)?;
        self.index += 1;
        let service = FakeService {
            id: id.clone(),
            version: self.index,
            task_spec: Arc::new(spec.task_template.clone().unwrap_or_default()),
            held: false,
            spec: Arc::new(spec),
            updated_at: now_rfc3339(),
            update_status: None,
            running: None,
            stuck: ("pending".to_string(), String::new()),
        };
        self.services.insert(id.clone(), service);
        Ok((id.clone(), service_event("create", &id, &name)))
    }

    fn update(
        &mut self,
        id_or_name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<SwarmEvent, SwarmError> {
        let mut spec = spec;
        self.resolve_networks(&mut spec)?;
        let index = self.index + 1;
        let service = self.service_named_mut(id_or_name)?;
        if version != service.version {
            return Err(SwarmError::OutOfSequence {
                what: format!("service {id_or_name}"),
            });
        }
        if spec.name != service.spec.name {
            return Err(SwarmError::Api {
                operation: format!("update service {id_or_name}"),
                status: 501,
                message: "rpc error: code = Unimplemented desc = renaming services is not \
                          supported"
                    .to_string(),
            });
        }
        // Docker rolls tasks (and reports an update status) only when the task template
        // changes; labels and replicas change in place. The fake's roll ends at once.
        if spec.task_template != service.spec.task_template {
            if service.held {
                service.update_status = None;
            } else {
                service.update_status =
                    Some(("completed".to_string(), "update completed".to_string()));
                service.task_spec = Arc::new(spec.task_template.clone().unwrap_or_default());
            }
        }
        service.spec = Arc::new(spec);
        service.version = index;
        service.updated_at = now_rfc3339();
        let name = service.spec.name.clone().unwrap_or_default();
        let event = service_event("update", &service.id, &name);
        self.index = index;
        Ok(event)
    }

    fn remove(&mut self, id_or_name: &str) -> Option<SwarmEvent> {
        let id = self.find(id_or_name)?.id.clone();
        let service = self.services.remove(&id)?;
        self.index += 1;
        Some(service_event(
            "remove",
            &id,
            service.spec.name.as_deref().unwrap_or_default(),
        ))
    }

    fn tasks(&self) -> Vec<ListedTask> {
        self.services
            .values()
            .flat_map(FakeService::tasks)
            .collect()
    }
}

impl FakeService {
    fn desired(&self) -> u64 {
        match &self.spec.mode {
            Some(ServiceSpecMode {
                global: Some(_), ..
            }) => 1,
            Some(ServiceSpecMode {
                replicated: Some(replicated),
                ..
            }) => replicated
                .replicas
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(1),
            _ => 1,
        }
    }

    fn running(&self) -> u64 {
        let desired = self.desired();
        self.running.map_or(desired, |running| running.min(desired))
    }

    fn observe(&self) -> ObservedService {
        self.listed()
            .decode()
            .expect("the fake lists its specs as values, which always decode")
    }

    /// As listed: the spec shared rather than copied.
    fn listed(&self) -> ListedService {
        let (update_state, update_message) = self.update_status.clone().unzip();
        ListedService {
            id: self.id.clone(),
            version: self.version,
            running_tasks: self.running(),
            desired_tasks: self.desired(),
            update_state,
            update_message,
            updated_at: Some(self.updated_at.clone()),
            spec: Deferred::Ready(self.spec.clone()),
        }
    }

    fn tasks(&self) -> Vec<ListedTask> {
        let global = matches!(&self.spec.mode, Some(mode) if mode.global.is_some());
        let image = self
            .task_spec
            .container_spec
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let running = self.running();
        (1..=self.desired())
            .map(|slot| {
                let runs = slot <= running;
                let (state, error) = if runs {
                    ("running".to_string(), String::new())
                } else {
                    self.stuck.clone()
                };
                let task = ObservedTask {
                    id: format!("{}task{slot}", self.id),
                    service_id: self.id.clone(),
                    slot: (!global).then_some(slot as i64),
                    node_id: runs.then(|| FAKE_NODE_ID.to_string()),
                    image: image.clone(),
                    desired_state: if matches!(state.as_str(), "rejected" | "failed") {
                        "ready"
                    } else {
                        "running"
                    }
                    .to_string(),
                    message: if runs {
                        "started"
                    } else {
                        "pending task scheduling"
                    }
                    .to_string(),
                    state,
                    state_since: Some(self.updated_at.clone()),
                    error,
                    up_to_date: false,
                };
                ListedTask {
                    task,
                    spec: Deferred::Ready(self.task_spec.clone()),
                }
            })
            .collect()
    }
}

fn service_event(action: &str, id: &str, name: &str) -> SwarmEvent {
    SwarmEvent::Service {
        action: action.to_string(),
        id: id.to_string(),
        name: Some(name.to_string()),
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
        drop(self.begin(Op::ListNodes)?);
        Ok(vec![ObservedNode {
            id: FAKE_NODE_ID.to_string(),
            hostname: FAKE_NODE_HOSTNAME.to_string(),
        }])
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
        Ok(state.add_network(&network.name))
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

/// The current time in RFC 3339 (UTC, seconds), like Docker's timestamps.
fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    rfc3339(seconds)
}

/// Formats seconds since the Unix epoch as RFC 3339, using the civil-from-days
/// algorithm (proleptic Gregorian calendar).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec};

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
            assert_eq!(task.state, "running");
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
        assert_eq!(tasks[0].state, "rejected");
        assert_eq!(tasks[0].desired_state, "ready");
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
            .filter(|task| task.state == "pending")
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
        assert_eq!(updated.update_state.as_deref(), Some("completed"));
        assert_eq!(updated.update_message.as_deref(), Some("update completed"));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }
}
