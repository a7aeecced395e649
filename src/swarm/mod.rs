//! The narrow view of Docker Swarm the reconciler needs, behind a trait.
//!
//! [`Swarm`] is the only way mlmodel talks to Docker: list and write services, list tasks
//! and nodes, ensure networks, follow events. The real implementation wraps bollard
//! ([`docker::DockerSwarm`]); tests use `fake::FakeSwarm`, an in-memory swarm with the
//! same observable behaviour (version indexes, 404/409, out-of-sequence updates, events).
//!
//! The fake is compiled only for this crate's unit tests and with the `fake` feature,
//! which the tests and benchmarks turn on through a dev-dependency on this package: the
//! product build (`cargo build`, `mlmodel serve`) does not contain it.

pub mod counting;
pub mod docker;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod registry;
pub mod states;

use async_trait::async_trait;
use bollard::models::{ConfigSpec, SecretSpec, ServiceSpec, TaskSpec};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;

pub use crate::desired::stack::ObjectKind;
pub use states::{TaskState, UpdateState};

/// Why a Swarm call failed, by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmError {
    /// The object does not exist (HTTP 404).
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// The object already exists, e.g. a service name taken (HTTP 409).
    #[error("{what} already exists: {message}")]
    Conflict {
        /// What was created.
        what: String,
        /// Docker's message.
        message: String,
    },
    /// An update carried a stale version index ("update out of sequence").
    #[error("update of {what} out of sequence: the service changed since it was read")]
    OutOfSequence {
        /// The service updated.
        what: String,
    },
    /// Docker could not be reached (connection refused, socket missing, timeout).
    #[error("docker is unreachable: {message}")]
    Unreachable {
        /// The transport's message.
        message: String,
    },
    /// Docker answered with an error; `message` is Docker's own words.
    #[error("docker refused {operation}: {message}")]
    Api {
        /// The call, e.g. "create service mlmodel_a_mlmodel".
        operation: String,
        /// HTTP status code.
        status: u16,
        /// Docker's message.
        message: String,
    },
}

impl SwarmError {
    /// Whether retrying later may succeed without anything else changing.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::OutOfSequence { .. })
            || matches!(self, Self::Api { status, .. } if *status >= 500)
    }
}

/// What `docker info` says about this node's place in the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmInfo {
    /// Docker Engine version.
    pub server_version: String,
    /// Swarm state: "active", "inactive", "pending", "error", "locked".
    pub local_node_state: String,
    /// Whether this node is a swarm manager (required to manage services).
    pub is_manager: bool,
    /// This node's id.
    pub node_id: String,
    /// The swarm's default address pools (CIDR), where overlay subnets come from.
    pub address_pools: Vec<String>,
}

/// A live service as listed: identity, version index, spec and replica counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedService {
    /// Service id.
    pub id: String,
    /// Version index; an update must carry the one last read.
    pub version: u64,
    /// The spec as Docker holds it (defaults filled in, network targets as ids).
    pub spec: ServiceSpec,
    /// Tasks running, from the list's service status.
    pub running_tasks: u64,
    /// Tasks desired, from the list's service status.
    pub desired_tasks: u64,
    /// Rolling-update state, if any.
    pub update_state: Option<UpdateState>,
    /// Swarm's message about the rolling update, if any.
    pub update_message: Option<String>,
    /// When the service was last updated (RFC 3339), if known.
    pub updated_at: Option<String>,
}

impl ObservedService {
    /// The service's name ("" if Docker sent none).
    pub fn name(&self) -> &str {
        self.spec.name.as_deref().unwrap_or_default()
    }

    /// A label of the service spec.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.spec.labels.as_ref()?.get(key).map(String::as_str)
    }
}

/// A current task of a service: desired to run, or failed and waiting to be restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTask {
    /// Task id.
    pub id: String,
    /// The service it belongs to.
    pub service_id: String,
    /// Replica slot (replicated services).
    pub slot: Option<i64>,
    /// Node it is assigned to, if scheduled.
    pub node_id: Option<String>,
    /// Image of its container spec. Set by the observed cache from the listed task's
    /// spec (see [`ListedTask`]).
    pub image: String,
    /// Desired state: running, or ready while a failed task waits to restart.
    pub desired_state: TaskState,
    /// Current state, e.g. running, pending, rejected.
    pub state: TaskState,
    /// When it entered the current state (RFC 3339).
    pub state_since: Option<String>,
    /// Swarm's message about the state, e.g. "started".
    pub message: String,
    /// The error, e.g. "no suitable node (insufficient resources on 1 node)".
    pub error: String,
    /// Whether the task runs its service's current task template, what Swarm calls up
    /// to date: only such tasks make a rollout complete. Set by the observed cache, which
    /// compares the listed task's spec with its service's.
    pub up_to_date: bool,
}

/// Whether a task spec is the service template `template`, i.e. the task is up to date.
///
/// Docker reads a service's template back with `Runtime: "container"` and a task's spec
/// without it, so the runtime is left out; every other field must be equal (the
/// destructuring names them all, so a field bollard adds cannot be skipped silently).
pub fn runs_template(task: &TaskSpec, template: &TaskSpec) -> bool {
    let TaskSpec {
        plugin_spec,
        container_spec,
        network_attachment_spec,
        resources,
        restart_policy,
        placement,
        force_update,
        runtime: _,
        networks,
        log_driver,
    } = task;
    *container_spec == template.container_spec
        && *resources == template.resources
        && *networks == template.networks
        && *force_update == template.force_update
        && *restart_policy == template.restart_policy
        && *placement == template.placement
        && *log_driver == template.log_driver
        && *plugin_spec == template.plugin_spec
        && *network_attachment_spec == template.network_attachment_spec
}

/// A value Docker sent, read only when it is needed.
///
/// A list answer carries every service's whole spec (about 2.5 kB of JSON each), yet a
/// resync needs only the specs that changed since the last list: the rest are already
/// decoded in the observed cache. So an adapter may hand a spec over as the JSON text it
/// came in, a slice of the answer, and the cache decodes it only for a new version.
#[derive(Debug, Clone)]
pub enum Deferred<T> {
    /// Already a value (the fake swarm hands these over).
    Ready(Arc<T>),
    /// The value's JSON text, as Docker sent it.
    Json(Bytes),
}

impl<T: DeserializeOwned> Deferred<T> {
    /// The value, decoding the JSON text if need be; `what` names it in the error.
    pub fn decode(self, what: &str) -> Result<Arc<T>, SwarmError> {
        match self {
            Self::Ready(value) => Ok(value),
            Self::Json(text) => serde_json::from_slice(&text)
                .map(Arc::new)
                .map_err(|err| undecodable(format!("read {what}"), &err)),
        }
    }
}

/// The error for an answer of Docker's that does not decode: it failed in the client,
/// so there is no HTTP status (0).
pub(crate) fn undecodable(operation: String, err: &serde_json::Error) -> SwarmError {
    SwarmError::Api {
        operation,
        status: 0,
        message: format!("Docker's answer does not decode: {err}"),
    }
}

/// A service as listed: what may change without a new version index (replica counts)
/// and the version itself, read at once; the spec deferred (see [`Deferred`]).
#[derive(Debug, Clone)]
pub struct ListedService {
    /// Service id.
    pub id: String,
    /// Version index: Docker bumps it on every change of the spec or the rollout state.
    pub version: u64,
    /// Tasks running, from the list's service status.
    pub running_tasks: u64,
    /// Tasks desired, from the list's service status.
    pub desired_tasks: u64,
    /// Rolling-update state, if any (see [`ObservedService::update_state`]).
    pub update_state: Option<UpdateState>,
    /// Swarm's message about the rolling update, if any.
    pub update_message: Option<String>,
    /// When the service was last updated (RFC 3339), if known.
    pub updated_at: Option<String>,
    /// The spec as Docker holds it.
    pub spec: Deferred<ServiceSpec>,
}

impl ListedService {
    /// Whether this is `cached` unchanged: the same version index, replica counts and
    /// rollout state. Its spec is then the cached one and need not be read.
    pub fn is_unchanged(&self, cached: &ObservedService) -> bool {
        self.id == cached.id
            && self.version == cached.version
            && self.running_tasks == cached.running_tasks
            && self.desired_tasks == cached.desired_tasks
            && self.update_state == cached.update_state
            && self.update_message == cached.update_message
    }

    /// The service with its spec decoded.
    pub fn decode(self) -> Result<ObservedService, SwarmError> {
        let spec = self
            .spec
            .decode(&format!("the listed spec of service {}", self.id))?;
        Ok(ObservedService {
            id: self.id,
            version: self.version,
            spec: Arc::unwrap_or_clone(spec),
            running_tasks: self.running_tasks,
            desired_tasks: self.desired_tasks,
            update_state: self.update_state,
            update_message: self.update_message,
            updated_at: self.updated_at,
        })
    }
}

/// A task as listed, with the spec it was created from (deferred, see [`Deferred`]).
#[derive(Debug, Clone)]
pub struct ListedTask {
    /// The task. Its `image` and `up_to_date` follow from `spec` and are left for the
    /// caller to fill in: a task's spec never changes, so a task already known needs
    /// neither read again.
    pub task: ObservedTask,
    /// The task spec Swarm created it from: its service's template at the time.
    pub spec: Deferred<TaskSpec>,
}

/// The image a task spec runs ("" if none).
pub fn image_of(spec: &TaskSpec) -> String {
    spec.container_spec
        .as_ref()
        .and_then(|container| container.image.clone())
        .unwrap_or_default()
}

/// A swarm node: where tasks run, whether it can take them, and what it offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedNode {
    /// Node id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// "manager" or "worker".
    pub role: String,
    /// What the node's spec allows: "active", "pause" or "drain".
    pub availability: String,
    /// What the managers see: "ready", "down", "disconnected" or "unknown".
    pub state: String,
    /// Swarm's message about the state ("heartbeat failure"), if any.
    pub message: String,
    /// The node's address as the managers see it.
    pub addr: String,
    /// CPUs the node offers, in billionths.
    pub nano_cpus: i64,
    /// Memory the node offers, in bytes.
    pub memory_bytes: i64,
    /// Node labels (`node.labels.*` in constraints).
    pub labels: HashMap<String, String>,
    /// Engine labels (`engine.labels.*`).
    pub engine_labels: HashMap<String, String>,
    /// Platform, for `node.platform.os` and `node.platform.arch`.
    pub os: String,
    /// Architecture as Docker reports it (`x86_64`).
    pub arch: String,
}

impl ObservedNode {
    /// Whether Swarm may schedule new tasks here: ready and active.
    pub fn takes_tasks(&self) -> bool {
        self.state == "ready" && self.availability == "active"
    }

    /// Why the node takes no new tasks, in words ("down", "drained"), if it takes none.
    pub fn unavailable(&self) -> Option<String> {
        if self.state != "ready" {
            return Some(if self.message.is_empty() || self.message == self.state {
                self.state.clone()
            } else {
                format!("{} ({})", self.state, self.message)
            });
        }
        match self.availability.as_str() {
            "drain" => Some("drained".to_string()),
            "pause" => Some("paused".to_string()),
            _ => None,
        }
    }
}

/// A network as listed: id, name, and the subnets its IPAM holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedNetwork {
    /// Network id.
    pub id: String,
    /// Network name.
    pub name: String,
    /// Driver ("overlay", "bridge").
    pub driver: String,
    /// "swarm" or "local".
    pub scope: String,
    /// Its subnets in CIDR form, as its IPAM configuration gives them.
    pub subnets: Vec<String>,
}

/// A network to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    /// Network name.
    pub name: String,
    /// Driver, "overlay" for swarm services.
    pub driver: String,
    /// Whether standalone containers may attach (useful for debugging with `docker run`).
    pub attachable: bool,
    /// Labels (ownership, stack namespace).
    pub labels: HashMap<String, String>,
    /// The subnet to give it (CIDR); `None` lets Docker pick from the swarm's pool.
    pub subnet: Option<String>,
}

/// A secret or config to create.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectRequest {
    /// A secret.
    Secret(SecretSpec),
    /// A config.
    Config(ConfigSpec),
}

impl ObjectRequest {
    /// Secret or config.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Secret(_) => ObjectKind::Secret,
            Self::Config(_) => ObjectKind::Config,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Secret(spec) => spec.name.as_deref(),
            Self::Config(spec) => spec.name.as_deref(),
        }
        .unwrap_or_default()
    }

    /// A config's content, decoded from the spec's base64 (`None` for a secret, or
    /// when it does not decode).
    pub fn data(&self) -> Option<Bytes> {
        match self {
            Self::Secret(_) => None,
            Self::Config(spec) => config_data(spec.data.as_deref()?),
        }
    }

    /// The object's labels.
    pub fn labels(&self) -> HashMap<String, String> {
        match self {
            Self::Secret(spec) => spec.labels.clone(),
            Self::Config(spec) => spec.labels.clone(),
        }
        .unwrap_or_default()
    }
}

/// A config's content from the base64 its spec carries (`None` if it does not decode).
pub(crate) fn config_data(base64_text: &str) -> Option<Bytes> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(base64_text)
        .ok()
        .map(Bytes::from)
}

/// A secret or config as listed: a config with its content, a secret never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Secret or config.
    pub kind: ObjectKind,
    /// Object id.
    pub id: String,
    /// Object name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// When it was created (RFC 3339), if known.
    pub created_at: Option<String>,
    /// A config's content (Docker lists it with the config); `None` for a secret.
    pub data: Option<Bytes>,
}

/// What to read of a task's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Keep the stream open and send new output as it comes.
    pub follow: bool,
    /// Only the last this many lines (`None`: all).
    pub tail: Option<u64>,
    /// Only output since then (unix seconds).
    pub since: Option<i64>,
    /// Each line starts with its RFC 3339 time.
    pub timestamps: bool,
}

/// A piece of a task's output, as Docker sends it (not always whole lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// From standard error (else standard output).
    pub stderr: bool,
    /// The bytes.
    pub text: Bytes,
}

/// A change reported by Docker's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A service was created, updated or removed.
    Service {
        /// "create", "update" or "remove".
        action: String,
        /// Service id.
        id: String,
        /// Service name, when Docker includes it.
        name: Option<String>,
    },
    /// A node changed (joined, left, became unavailable).
    Node {
        /// Node id.
        id: String,
    },
}

/// Docker Swarm, as far as mlmodel needs it.
#[async_trait]
pub trait Swarm: Send + Sync {
    /// Reports the engine version and this node's swarm role.
    async fn info(&self) -> Result<SwarmInfo, SwarmError>;
    /// Lists every service with its replica status: one API call.
    async fn list_services(&self) -> Result<Vec<ListedService>, SwarmError>;
    /// Inspects one service by id or name; `None` if it does not exist. Its replica counts
    /// are 0: Docker (API 1.41) reports them only when listing.
    async fn inspect_service(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedService>, SwarmError>;
    /// Creates a service, returning its id.
    async fn create_service(&self, spec: &ServiceSpec) -> Result<String, SwarmError>;
    /// Replaces a service's spec; `version` must be the index last read.
    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<(), SwarmError>;
    /// Removes a service; one that is already gone counts as removed.
    async fn remove_service(&self, id: &str) -> Result<(), SwarmError>;
    /// Lists the tasks whose desired state is running or ready (a rejected or failed
    /// task waiting out its restart delay, with Swarm's error): one API call.
    async fn list_tasks(&self) -> Result<Vec<ListedTask>, SwarmError>;
    /// Lists the swarm's nodes.
    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, SwarmError>;
    /// Looks a network up by name, returning its id; `None` if missing.
    async fn network_id(&self, name: &str) -> Result<Option<String>, SwarmError>;
    /// Lists the networks this node sees (every swarm network on a manager), with their
    /// subnets: one API call.
    async fn list_networks(&self) -> Result<Vec<ListedNetwork>, SwarmError>;
    /// Creates a network, returning its id.
    async fn create_network(&self, network: &NetworkRequest) -> Result<String, SwarmError>;
    /// The digest (`sha256:...`) the registry holds for `image`'s tag, asked through
    /// the engine's distribution endpoint with the image's registry credentials, as
    /// `docker stack deploy --resolve-image` asks it.
    async fn image_digest(&self, image: &str) -> Result<String, SwarmError>;
    /// Looks a secret or config up by its exact name, returning its id; `None` if missing.
    async fn object_id(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, SwarmError>;
    /// Creates a secret or config, returning its id; a name taken is
    /// [`SwarmError::Conflict`].
    async fn create_object(&self, object: &ObjectRequest) -> Result<String, SwarmError>;
    /// Lists the secrets or configs that carry the label `key=value`.
    async fn list_objects(
        &self,
        kind: ObjectKind,
        label: (&str, &str),
    ) -> Result<Vec<ListedObject>, SwarmError>;
    /// Removes a secret or config by id or name; one already gone counts as removed, one a service
    /// uses is refused (HTTP 400).
    async fn remove_object(&self, kind: ObjectKind, id: &str) -> Result<(), SwarmError>;
    /// A task's output (standard output and error), as `docker service logs` reads it:
    /// one API call, streamed; with `follow` it ends when the task's container stops or
    /// the connection drops.
    fn task_logs(
        &self,
        task_id: &str,
        query: &LogQuery,
    ) -> BoxStream<'static, Result<LogChunk, SwarmError>>;
    /// Follows service and node events from now on. The stream ends or errors when the
    /// connection drops; the caller reconnects (see [`crate::reconcile::observe`]).
    fn events(&self) -> BoxStream<'static, Result<SwarmEvent, SwarmError>>;
}
