//! What the API reports per model: the status cache and how a status is derived.
//!
//! [`derive()`] is a pure function of what the reconciler decided for a model and what it
//! observed in the swarm. [`StatusCache`] holds the latest status of every model for the
//! API; reads never call Docker.

use crate::desired::compose::ComposeWarning;
use crate::desired::naming;
use crate::desired::stack::labels;
use crate::reconcile::network::NetworkReport;
use crate::reconcile::observe::Observed;
use crate::reconcile::problem::Problem;
use crate::swarm::{ObservedNode, ObservedService, ObservedTask, TaskState, UpdateState};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// Where a model's lifecycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Declared; its services are not there yet.
    Pending,
    /// A rollout or scale-up is under way.
    Progressing,
    /// Every desired replica runs the desired spec.
    Available,
    /// Fewer replicas run than desired and tasks are failing.
    Degraded,
    /// The declaration or the rollout failed; the message says why.
    Failed,
    /// Not declared (deleted or manifest removed) and its services are gone.
    Removed,
}

impl Phase {
    /// The phase's name as the API and CLI print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Progressing => "Progressing",
            Self::Available => "Available",
            Self::Degraded => "Degraded",
            Self::Failed => "Failed",
            Self::Removed => "Removed",
        }
    }
}

/// One live service of a model, as the original API showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// The model name, as the original showed it (`carls_model`); a template's other
    /// services add their key (`carls_model_worker`).
    pub name: String,
    /// The Docker service name (`mlmodel_carls_model_mlmodel`).
    pub service: String,
    /// Image of its spec, as Docker shows it (`name:tag`, `:latest` when untagged).
    pub image: String,
    /// "running/desired".
    pub replicas: String,
}

/// One task (container) of a model's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    /// `<service>.<slot>` (or `<service>.<node id>` for global services).
    pub name: String,
    /// Image of the task's container spec.
    pub image: String,
    /// Host name of the node it is on ("" if not scheduled).
    pub node: String,
    /// Desired state, capitalised like Docker's CLI ("Running").
    pub desired_state: String,
    /// Current state, capitalised ("Running", "Pending", "Rejected").
    pub state: String,
    /// When it entered the current state (RFC 3339), for "Running 6 minutes ago".
    pub since: Option<String>,
    /// Swarm's error, e.g. "no suitable node (insufficient resources on 1 node)".
    pub error: String,
}

/// Everything the API says about one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStatus {
    /// Model name.
    pub name: String,
    /// A record (valid declaration) exists for it.
    pub valid: bool,
    /// Its services exist in the swarm.
    pub active: bool,
    /// Lifecycle phase.
    pub phase: Phase,
    /// The last problem in words a user can act on ("" when there is none).
    pub message: String,
    /// Tasks running, over all its services.
    pub replicas_running: u64,
    /// Tasks desired, over all its services.
    pub replicas_desired: u64,
    /// Live services match the desired stack.
    pub synced: bool,
    /// Where the declaration comes from: a manifest path, "api" or "adopted".
    pub source: Option<String>,
    /// Deployment id of the applied record.
    pub deployment_id: Option<String>,
    /// When the applied record was deployed (unix seconds).
    pub deployment_time: Option<f64>,
    /// Image of the first service, for listings.
    pub image: Option<String>,
    /// The digest that image is pinned to (`sha256:...`), if it is.
    pub image_digest: Option<String>,
    /// Live services.
    pub services: Vec<ServiceStatus>,
    /// Tasks of the live services.
    pub tasks: Vec<TaskStatus>,
    /// Swarm's rolling update of the model's first service that has one, if any.
    pub rollout: Option<RolloutStatus>,
    /// Nodes that run (or ran) the model's tasks and are down now, by host name.
    pub nodes_down: Vec<String>,
    /// What the model's stack has that is accepted but not deployed as written
    /// (`services.mlmodel.build: Ignoring unsupported option ...`).
    pub warnings: Vec<String>,
    /// When the swarm was last observed for this status (unix seconds).
    pub observed_at: f64,
}

/// A service's rolling update, as Swarm reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutStatus {
    /// The Docker service.
    pub service: String,
    /// Docker's word for the state: `updating`, `completed`, `paused`,
    /// `rollback_started`, `rollback_paused`, `rollback_completed`.
    pub state: String,
    /// Swarm's message ("" if none).
    pub message: String,
}

/// What the reconciler concluded about a model's declaration.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// A valid record exists.
    pub valid: bool,
    /// The model should have services (false: absent or unknown).
    pub wanted: bool,
    /// Live services match the desired stack (no pending writes, no conflicts).
    pub synced: bool,
    /// What stands in the way: a declaration that cannot be applied, a name conflict, the
    /// store, or the last failed Docker write.
    pub problem: Option<Problem>,
    /// The record being converged to.
    pub applied: Option<Applied>,
    /// The built stack's warnings.
    pub warnings: Vec<ComposeWarning>,
}

/// The record a model is converged to, as its status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Where the declaration comes from: a manifest path, "api" or "adopted".
    pub source: String,
    /// Its deployment id.
    pub deployment_id: String,
    /// When it was recorded (unix seconds).
    pub deployment_time: f64,
}

/// What surrounds a model's services when its status is derived: the whole observed
/// swarm (nodes, other services' tasks, departed tasks) and the shared network.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    /// What was listed.
    pub observed: &'a Observed,
    /// The shared network's addresses, if known.
    pub network: Option<&'a NetworkReport>,
    /// When it was observed (unix seconds).
    pub observed_at: f64,
}

impl<'a> Scene<'a> {
    /// The scene of `observed`, as of its last list.
    pub fn of(observed: &'a Observed, network: Option<&'a NetworkReport>) -> Self {
        Self {
            observed,
            network,
            observed_at: observed.listed_at,
        }
    }

    fn nodes(&self) -> impl Iterator<Item = &'a crate::swarm::ObservedNode> {
        let mut nodes: Vec<_> = self.observed.nodes.values().collect();
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        nodes.into_iter()
    }

    /// A node's host name, or its id when it is not known.
    fn hostname(&self, id: &str) -> String {
        self.observed
            .nodes
            .get(id)
            .map_or_else(|| id.to_string(), |n| n.hostname.clone())
    }
}

/// Derives a model's status from the verdict and its observed services and tasks.
pub fn derive(
    name: &str,
    verdict: &Verdict,
    services: &[&ObservedService],
    tasks: &[&ObservedTask],
    scene: &Scene<'_>,
) -> ModelStatus {
    let replicas = Replicas::of(services, tasks);
    let (phase, mut message) = phase(verdict, services, tasks, &replicas);
    if matches!(phase, Phase::Progressing | Phase::Degraded | Phase::Pending)
        && let Some(stuck) = why::stuck(services, tasks, scene)
    {
        message = stuck;
    }
    if phase != Phase::Removed
        && let Some(nodes) = why::nodes(services, tasks, scene)
    {
        message = if message.is_empty() {
            nodes
        } else {
            format!("{message}; {nodes}")
        };
    }
    let (nodes, observed_at) = (&scene.observed.nodes, scene.observed_at);
    let applied = verdict.applied.as_ref();
    ModelStatus {
        name: name.to_string(),
        valid: verdict.valid,
        active: !services.is_empty(),
        phase,
        message,
        replicas_running: replicas.running,
        replicas_desired: replicas.desired,
        synced: verdict.synced,
        source: applied.map(|a| a.source.clone()),
        deployment_id: applied.map(|a| a.deployment_id.clone()),
        deployment_time: applied.map(|a| a.deployment_time),
        image: services.first().map(|s| service_image(s)),
        image_digest: services.first().and_then(|s| {
            crate::reconcile::controller::image_digest_of(&s.spec).map(str::to_string)
        }),
        services: services
            .iter()
            .map(|s| ServiceStatus {
                name: shown_service_name(name, s),
                service: s.name().to_string(),
                image: service_image(s),
                replicas: format!("{}/{}", s.running_tasks, s.desired_tasks),
            })
            .collect(),
        tasks: task_statuses(services, tasks, nodes),
        rollout: services.iter().find_map(|s| {
            Some(RolloutStatus {
                service: s.name().to_string(),
                state: s.update_state.as_ref()?.as_str().to_string(),
                message: s.update_message.clone().unwrap_or_default(),
            })
        }),
        nodes_down: nodes_down(tasks, nodes),
        warnings: verdict.warnings.iter().map(ToString::to_string).collect(),
        observed_at,
    }
}

/// A model's replica counts over all its services.
struct Replicas {
    /// Running, as Swarm counts them (old tasks of a rollout included).
    running: u64,
    /// Desired.
    desired: u64,
    /// Running the current template: the old tasks of a rollout Swarm has not begun yet
    /// run too, and `running` includes them.
    current: u64,
}

impl Replicas {
    fn of(services: &[&ObservedService], tasks: &[&ObservedTask]) -> Self {
        Self {
            running: services.iter().map(|s| s.running_tasks).sum(),
            desired: services.iter().map(|s| s.desired_tasks).sum(),
            current: tasks
                .iter()
                .filter(|t| t.up_to_date && t.state == TaskState::Running)
                .count() as u64,
        }
    }
}

/// The phase and its message: a fatal problem first, then a failed rollout, then how far
/// the live services are from the desired ones.
fn phase(
    verdict: &Verdict,
    services: &[&ObservedService],
    tasks: &[&ObservedTask],
    replicas: &Replicas,
) -> (Phase, String) {
    let problem = verdict.problem.as_ref();
    if let Some(fatal) = problem.filter(|p| p.is_fatal()) {
        return (Phase::Failed, fatal.to_string());
    }
    if let Some(failure) = rollout_failure(services) {
        return (Phase::Failed, failure);
    }
    let transient = || problem.map(ToString::to_string).unwrap_or_default();
    if !verdict.wanted {
        return if services.is_empty() {
            (Phase::Removed, String::new())
        } else {
            (Phase::Progressing, "removing services".to_string())
        };
    }
    if services.is_empty() {
        return (Phase::Pending, transient());
    }
    let updating = services
        .iter()
        .any(|s| s.update_state == Some(UpdateState::Updating));
    let Replicas {
        running,
        desired,
        current,
    } = *replicas;
    let task_error = tasks
        .iter()
        .find(|t| !t.error.is_empty())
        .map(|t| explained(&t.error));
    if running >= desired && current >= desired && verdict.synced && !updating {
        (Phase::Available, transient())
    } else if let Some(error) = task_error.clone().filter(|_| running < desired) {
        (Phase::Degraded, error)
    } else if problem.is_none() {
        // A rollout whose new tasks fail while the old ones still serve: Swarm keeps
        // retrying them and says "update in progress", so their error is the only clue.
        (Phase::Progressing, task_error.unwrap_or_default())
    } else {
        (Phase::Progressing, transient())
    }
}

/// Swarm's task error, with what to do about it where Swarm's words do not say.
///
/// A node that cannot pull an image (a wrong name, or a private registry that refused
/// it) reports only `No such image: <image>`: the registry's refusal stays in that node's
/// daemon log.
fn explained(error: &str) -> String {
    let Some(image) = error.strip_prefix("No such image: ") else {
        return error.to_string();
    };
    let image = image.trim();
    let login = match crate::swarm::registry::registry_key(image).as_str() {
        crate::swarm::registry::DOCKER_HUB => "docker login".to_string(),
        registry => format!("docker login {registry}"),
    };
    format!(
        "{error}: the node could not pull it; check the image name and tag, and if its registry needs credentials, run `{login}` as the user mlmodel runs as (mlmodel sends them with every deploy) or check that they are still valid"
    )
}

/// A paused or rolled-back rollout of any of the services, in words.
fn rollout_failure(services: &[&ObservedService]) -> Option<String> {
    services.iter().find_map(|s| {
        let state = s.update_state.as_ref().filter(|state| state.is_failure())?;
        Some(format!(
            "rollout {}: {}",
            state.words(),
            s.update_message
                .as_deref()
                .unwrap_or("no message from swarm")
        ))
    })
}

/// The tasks as the API lists them, sorted by name.
fn task_statuses(
    services: &[&ObservedService],
    tasks: &[&ObservedTask],
    nodes: &HashMap<String, ObservedNode>,
) -> Vec<TaskStatus> {
    let names: HashMap<&str, &str> = services.iter().map(|s| (s.id.as_str(), s.name())).collect();
    let mut statuses: Vec<TaskStatus> = tasks
        .iter()
        .map(|t| {
            let service = names.get(t.service_id.as_str()).copied();
            task_status(t, service.unwrap_or_default(), nodes)
        })
        .collect();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    statuses
}

/// The host names of the nodes the tasks are on that are not ready, sorted.
fn nodes_down(tasks: &[&ObservedTask], nodes: &HashMap<String, ObservedNode>) -> Vec<String> {
    let down: std::collections::BTreeSet<&str> = tasks
        .iter()
        .filter_map(|t| nodes.get(t.node_id.as_deref()?))
        .filter(|n| n.state != "ready")
        .map(|n| n.hostname.as_str())
        .collect();
    down.into_iter().map(str::to_string).collect()
}

fn service_image(service: &ObservedService) -> String {
    let image = service
        .spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default();
    naming::display_image(image)
}

/// A service's name as the original API showed it: the model name for the template's
/// `mlmodel` service, `<model>_<key>` for its others.
fn shown_service_name(model: &str, service: &ObservedService) -> String {
    let key = service
        .label(labels::STACK_NAMESPACE)
        .and_then(|stack| service.name().strip_prefix(stack))
        .and_then(|rest| rest.strip_prefix('_'));
    match key {
        Some(MAIN_SERVICE) => model.to_string(),
        Some(key) => format!("{model}_{key}"),
        None => service.name().to_string(),
    }
}

/// The service key the default template gives a model's one service.
const MAIN_SERVICE: &str = "mlmodel";

fn task_status(
    task: &ObservedTask,
    service_name: &str,
    nodes: &HashMap<String, ObservedNode>,
) -> TaskStatus {
    let suffix = match (task.slot, &task.node_id) {
        (Some(slot), _) => slot.to_string(),
        (None, Some(node)) => node.clone(),
        (None, None) => task.id.clone(),
    };
    TaskStatus {
        name: format!("{service_name}.{suffix}"),
        image: naming::display_image(&task.image),
        node: task
            .node_id
            .as_ref()
            .and_then(|id| nodes.get(id).map(|n| n.hostname.clone()))
            .unwrap_or_default(),
        desired_state: capitalise(task.desired_state.as_str()),
        state: capitalise(task.state.as_str()),
        since: task.state_since.clone(),
        error: task.error.clone(),
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The latest status of every model, shared between the reconciler (one writer at a time
/// per model) and the API (many readers). Readers get cheap snapshots, and watchers each
/// change as it happens ([`StatusCache::subscribe`]).
pub struct StatusCache {
    inner: RwLock<Snapshot>,
    changes: broadcast::Sender<Change>,
}

impl Default for StatusCache {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            changes: broadcast::channel(CHANGES_BUFFERED).0,
        }
    }
}

/// Changes a slow watcher may fall behind by before it is sent a whole snapshot again.
const CHANGES_BUFFERED: usize = 4096;

/// One change of the cache, as watchers get it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A model's new status.
    Status(Arc<ModelStatus>),
    /// A model left the cache (no record and nothing live).
    Removed(String),
}

/// A consistent view of every model's status.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Status by model name.
    pub models: BTreeMap<String, Arc<ModelStatus>>,
    /// Bumped on every change, so readers can cache what they derive from a snapshot.
    pub generation: u64,
}

impl StatusCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        // Writers only swap whole entries; a poisoned lock still holds a usable map.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a model's status; returns whether it changed beyond its observation time
    /// (only such changes bump the generation).
    pub fn set(&self, status: ModelStatus) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let status = Arc::new(status);
        // One walk of the map: most statuses are set again unchanged, under their name.
        let unchanged = match inner.models.get_mut(&status.name) {
            Some(old) => {
                let unchanged = same_except_time(old, &status);
                *old = status.clone();
                unchanged
            }
            None => {
                inner.models.insert(status.name.clone(), status.clone());
                false
            }
        };
        if !unchanged {
            inner.generation += 1;
            // Sent under the lock, so that watchers get changes in the cache's order.
            let _ = self.changes.send(Change::Status(status));
        }
        !unchanged
    }

    /// Forgets a model (no record and nothing live).
    pub fn remove(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.models.remove(name).is_some() {
            inner.generation += 1;
            let _ = self.changes.send(Change::Removed(name.to_string()));
        }
    }

    /// Every change from now on. Subscribe before taking the snapshot to start from, so
    /// that no change falls between them (one may come twice).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// One model's status.
    pub fn get(&self, name: &str) -> Option<Arc<ModelStatus>> {
        self.read().models.get(name).cloned()
    }

    /// Whether any model's status meets `test`; cheaper than a [`StatusCache::snapshot`],
    /// which copies every entry.
    pub fn any(&self, test: impl Fn(&ModelStatus) -> bool) -> bool {
        self.read().models.values().any(|s| test(s))
    }

    /// Calls `each` with every model's name, in order, under the cache's read lock.
    pub fn for_each_name(&self, mut each: impl FnMut(&str)) {
        for name in self.read().models.keys() {
            each(name);
        }
    }

    /// Every model's status.
    pub fn snapshot(&self) -> Snapshot {
        self.read().clone()
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }
}

/// Field by field, without copying either status (a resync compares every model's).
/// Destructured so that a new field cannot be left out of the comparison.
fn same_except_time(a: &ModelStatus, b: &ModelStatus) -> bool {
    let ModelStatus {
        name,
        valid,
        active,
        phase,
        message,
        replicas_running,
        replicas_desired,
        synced,
        source,
        deployment_id,
        deployment_time,
        image,
        image_digest,
        services,
        tasks,
        rollout,
        nodes_down,
        warnings,
        observed_at: _,
    } = a;
    *name == b.name
        && *valid == b.valid
        && *active == b.active
        && *phase == b.phase
        && *message == b.message
        && *replicas_running == b.replicas_running
        && *replicas_desired == b.replicas_desired
        && *synced == b.synced
        && *source == b.source
        && *deployment_id == b.deployment_id
        && *deployment_time == b.deployment_time
        && *image == b.image
        && *image_digest == b.image_digest
        && *services == b.services
        && *tasks == b.tasks
        && *rollout == b.rollout
        && *nodes_down == b.nodes_down
        && *warnings == b.warnings
}

#[cfg(test)]
impl ModelStatus {
    /// A status for the tests of rules over statuses: model `m`, one replica of
    /// deployment `d1` running `img:1`, in `phase`, with no message.
    pub(crate) fn example(phase: Phase) -> Self {
        Self {
            name: "m".into(),
            valid: true,
            active: true,
            phase,
            message: String::new(),
            replicas_running: 1,
            replicas_desired: 1,
            synced: true,
            source: Some("api".into()),
            deployment_id: Some("d1".into()),
            deployment_time: Some(1.0),
            image: Some("img:1".into()),
            image_digest: None,
            services: Vec::new(),
            tasks: Vec::new(),
            rollout: None,
            nodes_down: Vec::new(),
            warnings: Vec::new(),
            observed_at: 1.0,
        }
    }
}

mod why;

#[cfg(test)]
mod tests;
