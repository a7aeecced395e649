//! What the API reports per model: the status cache and how a status is derived.
//!
//! [`derive()`] is a pure function of what the reconciler decided for a model and what it
//! observed in the swarm. [`StatusCache`] holds the latest status of every model for the
//! API; reads never call Docker.

use crate::desired::naming;
use crate::desired::stack::labels;
use crate::swarm::{ObservedService, ObservedTask};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

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
    /// Live services.
    pub services: Vec<ServiceStatus>,
    /// Tasks of the live services.
    pub tasks: Vec<TaskStatus>,
    /// When the swarm was last observed for this status (unix seconds).
    pub observed_at: f64,
}

/// What the reconciler concluded about a model's declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// A valid record exists.
    pub valid: bool,
    /// The model should have services (false: absent or unknown).
    pub wanted: bool,
    /// Live services match the desired stack (no pending writes, no conflicts).
    pub synced: bool,
    /// A reason the declaration cannot be applied (invalid, conflict, render error) or
    /// the last failed Docker write; empty if none.
    pub problem: String,
    /// Whether `problem` makes the model Failed (declaration errors, conflicts) rather
    /// than a transient write error.
    pub fatal: bool,
    /// Where the declaration comes from.
    pub source: Option<String>,
    /// Deployment id being applied.
    pub deployment_id: Option<String>,
    /// When that deployment was recorded.
    pub deployment_time: Option<f64>,
}

/// Derives a model's status from the verdict and its observed services and tasks.
pub fn derive(
    name: &str,
    verdict: &Verdict,
    services: &[&ObservedService],
    tasks: &[&ObservedTask],
    nodes: &HashMap<String, String>,
    observed_at: f64,
) -> ModelStatus {
    let running: u64 = services.iter().map(|s| s.running_tasks).sum();
    let desired: u64 = services.iter().map(|s| s.desired_tasks).sum();
    let names: HashMap<&str, &str> = services.iter().map(|s| (s.id.as_str(), s.name())).collect();
    let mut task_statuses: Vec<TaskStatus> = tasks
        .iter()
        .map(|t| {
            task_status(
                t,
                names
                    .get(t.service_id.as_str())
                    .copied()
                    .unwrap_or_default(),
                nodes,
            )
        })
        .collect();
    task_statuses.sort_by(|a, b| a.name.cmp(&b.name));
    let task_error = tasks
        .iter()
        .find(|t| !t.error.is_empty())
        .map(|t| t.error.clone());
    let rollout_failure = services
        .iter()
        .find_map(|s| match s.update_state.as_deref() {
            Some(
                state @ ("rollback_completed" | "rollback_started" | "paused" | "rollback_paused"),
            ) => Some(format!(
                "rollout {}: {}",
                state.replace('_', " "),
                s.update_message
                    .as_deref()
                    .unwrap_or("no message from swarm")
            )),
            _ => None,
        });
    let updating = services
        .iter()
        .any(|s| s.update_state.as_deref() == Some("updating"));
    // Running the current template: the old tasks of a rollout Swarm has not begun yet
    // run too, and the replica counts include them.
    let current = tasks
        .iter()
        .filter(|t| t.up_to_date && t.state == "running")
        .count() as u64;
    let (phase, message) = if !verdict.problem.is_empty() && verdict.fatal {
        (Phase::Failed, verdict.problem.clone())
    } else if let Some(failure) = rollout_failure {
        (Phase::Failed, failure)
    } else if !verdict.wanted {
        if services.is_empty() {
            (Phase::Removed, String::new())
        } else {
            (Phase::Progressing, "removing services".to_string())
        }
    } else if services.is_empty() {
        (Phase::Pending, verdict.problem.clone())
    } else if running >= desired && current >= desired && verdict.synced && !updating {
        (Phase::Available, verdict.problem.clone())
    } else if let Some(error) = task_error.clone().filter(|_| running < desired) {
        (Phase::Degraded, error)
    } else if verdict.problem.is_empty() {
        // A rollout whose new tasks fail while the old ones still serve: Swarm keeps
        // retrying them and says "update in progress", so their error is the only clue.
        (Phase::Progressing, task_error.unwrap_or_default())
    } else {
        (Phase::Progressing, verdict.problem.clone())
    };
    ModelStatus {
        name: name.to_string(),
        valid: verdict.valid,
        active: !services.is_empty(),
        phase,
        message,
        replicas_running: running,
        replicas_desired: desired,
        synced: verdict.synced,
        source: verdict.source.clone(),
        deployment_id: verdict.deployment_id.clone(),
        deployment_time: verdict.deployment_time,
        image: services.first().map(|s| service_image(s)),
        services: services
            .iter()
            .map(|s| ServiceStatus {
                name: shown_service_name(name, s),
                service: s.name().to_string(),
                image: service_image(s),
                replicas: format!("{}/{}", s.running_tasks, s.desired_tasks),
            })
            .collect(),
        tasks: task_statuses,
        observed_at,
    }
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
    nodes: &HashMap<String, String>,
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
            .and_then(|id| nodes.get(id).cloned())
            .unwrap_or_default(),
        desired_state: capitalise(&task.desired_state),
        state: capitalise(&task.state),
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
/// per model) and the API (many readers). Readers get cheap snapshots.
#[derive(Default)]
pub struct StatusCache {
    inner: RwLock<Snapshot>,
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
        let unchanged = inner
            .models
            .get(&status.name)
            .is_some_and(|old| same_except_time(old, &status));
        inner.models.insert(status.name.clone(), Arc::new(status));
        if !unchanged {
            inner.generation += 1;
        }
        !unchanged
    }

    /// Forgets a model (no record and nothing live).
    pub fn remove(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.models.remove(name).is_some() {
            inner.generation += 1;
        }
    }

    /// One model's status.
    pub fn get(&self, name: &str) -> Option<Arc<ModelStatus>> {
        self.read().models.get(name).cloned()
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
        services,
        tasks,
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
        && *services == b.services
        && *tasks == b.tasks
}

#[cfg(test)]
mod tests;
