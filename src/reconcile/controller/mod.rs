//! The reconciler: keeps every declared model's services converged, unattended.
//!
//! Keys are model names. A key is queued by a manifest change, an API write, a Docker
//! service event, or the periodic resync; [`Controller::reconcile`] then re-reads the
//! desired state (manifests, store) and the observed state (the cache), decides
//! ([`mod@decide`]), plans ([`crate::reconcile::plan`]) and carries the plan out, one model per worker at
//! a time (see [`crate::reconcile::queue`]). Reconciles are level-triggered and idempotent.

pub mod decide;
mod execute;
mod run;

use crate::desired::record::{self, DeploymentRecord};
use crate::desired::record::{HistoryEntry, Source};
use crate::desired::render::{Instance, Templates};
use crate::desired::stack::labels;
use crate::desired::{Desired, Identity, Pipeline};
use crate::reconcile::observe::ObservedCache;
use crate::reconcile::plan::{self, InSync, Intent, Observation};
use crate::reconcile::queue::{Outcome, WorkQueue};
use crate::reconcile::status::{self, StatusCache, Verdict};
use crate::sources::files::{Declaration, FileDeclarations};
use crate::sources::store::Store;
use crate::swarm::counting::CountingSwarm;
use crate::swarm::{NetworkRequest, Swarm, SwarmError};
pub use decide::{Decision, FileView, decide};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Models reconciled at once.
    pub concurrency: usize,
    /// Full relist and reconcile of every model this often.
    pub resync: Duration,
    /// While any model is rolling out, relist this often to follow its tasks.
    pub progress_interval: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            resync: Duration::from_secs(30),
            progress_interval: Duration::from_secs(2),
        }
    }
}

/// Counters the metrics endpoint exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: AtomicU64,
    /// Reconciles that failed and will be retried.
    pub reconcile_errors: AtomicU64,
    /// Total reconcile time, microseconds.
    pub reconcile_micros: AtomicU64,
    /// Docker writes sent (creates, updates, removes).
    pub writes: AtomicU64,
    /// Unix time of the last full relist, as f64 bits.
    pub last_resync: AtomicU64,
}

/// What the controller is built from.
pub struct Parts {
    /// Docker.
    pub swarm: Arc<dyn Swarm>,
    /// The history store.
    pub store: Store,
    /// The manifests directory's declarations, kept fresh by the watcher.
    pub files: watch::Receiver<Arc<FileDeclarations>>,
    /// This instance's name, environment and network.
    pub instance: Instance,
    /// The compiled templates.
    pub templates: Arc<Templates>,
}

/// A model's desired stack, built once per deployment (records are immutable).
struct Built {
    deployment_id: String,
    source: Source,
    result: Result<Arc<Desired>, String>,
}

/// The reconciler.
pub struct Controller {
    swarm: Arc<dyn Swarm>,
    store: Store,
    files: watch::Receiver<Arc<FileDeclarations>>,
    instance: Instance,
    templates: Arc<Templates>,
    /// What is live, as last listed.
    pub observed: Arc<ObservedCache>,
    /// Every model's status, for the API.
    pub status: Arc<StatusCache>,
    /// Models waiting to be reconciled.
    pub queue: Arc<WorkQueue>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    built: Mutex<HashMap<String, Built>>,
    /// Per model, the services its last plan found in sync.
    in_sync: Mutex<HashMap<String, Vec<InSync>>>,
    calls: Arc<CountingSwarm>,
    docker: Mutex<(bool, String)>,
    manifests_dir: std::sync::OnceLock<std::path::PathBuf>,
}

impl Controller {
    /// A controller over `parts`; nothing runs until [`Controller::run`].
    pub fn new(parts: Parts) -> Arc<Self> {
        let calls = Arc::new(CountingSwarm::new(parts.swarm));
        Arc::new(Self {
            swarm: calls.clone(),
            calls,
            docker: Mutex::new((false, "not connected yet".to_string())),
            manifests_dir: std::sync::OnceLock::new(),
            store: parts.store,
            files: parts.files,
            instance: parts.instance,
            templates: parts.templates,
            observed: Arc::new(ObservedCache::default()),
            status: Arc::new(StatusCache::new()),
            queue: Arc::new(WorkQueue::new()),
            metrics: Arc::new(Metrics::default()),
            built: Mutex::new(HashMap::new()),
            in_sync: Mutex::new(HashMap::new()),
        })
    }

    /// Tells the controller which directory the manifests come from, so that while it is
    /// missing (an unmounted volume, a checkout in progress) models declared by its files
    /// are held as they run instead of pruned.
    pub fn set_manifests_dir(&self, dir: std::path::PathBuf) {
        let _ = self.manifests_dir.set(dir);
    }

    /// The instance this controller manages for.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The templates it renders with.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// The history store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The manifests directory's current declarations.
    pub fn files(&self) -> Arc<FileDeclarations> {
        self.files.borrow().clone()
    }

    /// Every model worth a look: declared, recorded, live or with a status.
    pub fn all_models(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = file_names(&self.files());
        names.extend(self.store.names().unwrap_or_default());
        names.extend(self.observed.get().models(&self.instance.name));
        names.extend(self.status.snapshot().models.keys().cloned());
        names
    }

    /// Creates the shared overlay network if it is missing.
    pub async fn ensure_network(&self) -> Result<(), SwarmError> {
        let name = &self.instance.network;
        if let Some(id) = self.swarm.network_id(name).await? {
            self.observed.update(|o| {
                o.networks.insert(name.clone(), id);
            });
            return Ok(());
        }
        let request = NetworkRequest {
            name: name.clone(),
            driver: "overlay".into(),
            attachable: true,
            labels: HashMap::from([(labels::MANAGED_BY.to_string(), self.instance.name.clone())]),
        };
        let id = match self.swarm.create_network(&request).await {
            Ok(id) => id,
            Err(SwarmError::Conflict { .. }) => {
                self.swarm.network_id(name).await?.unwrap_or_default()
            }
            Err(e) => return Err(e),
        };
        info!(network = %name, "created the shared overlay network");
        self.observed.update(|o| {
            o.networks.insert(name.clone(), id);
        });
        Ok(())
    }

    /// Reconciles one model: decide, plan, act, report. Never panics on bad input.
    pub async fn reconcile(&self, name: &str) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = self.reconcile_inner(name).await;
        self.metrics.reconciles.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .reconcile_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if outcome == Outcome::Retry {
            self.metrics
                .reconcile_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn reconcile_inner(&self, name: &str) -> Outcome {
        if !self.observed.get().is_listed() {
            // An empty cache is not an empty swarm: planning now would create services
            // that already run (Docker refuses with 409) and miss ones to remove or adopt.
            // The first list queues every model (see `follow_events`).
            return Outcome::Done;
        }
        let mut file = file_view(&self.files(), name);
        if let (FileView::Undeclared, Some(dir)) = (&file, self.manifests_dir.get())
            && !dir.is_dir()
        {
            file = FileView::DirectoryMissing {
                dir: dir.display().to_string(),
            };
        }
        let (latest, stopped) = match (self.store.latest(name), self.store.is_stopped(name)) {
            (Ok(latest), Ok(stopped)) => (latest, stopped),
            (Err(e), _) | (_, Err(e)) => {
                warn!(model = name, error = %e, "cannot read the store");
                self.report(
                    name,
                    Verdict::problem(format!("cannot read the store: {e}"), false),
                );
                return Outcome::Retry;
            }
        };
        let observed = self.observed.get();
        let owned = observed.owned_by(&self.instance.name, name);
        let decision = decide(&file, latest.as_ref(), stopped, &owned);
        let (entry, verdict) = match self.resolve(name, decision).await {
            Resolved::Apply(entry) => {
                let verdict = Verdict::applying(&entry);
                (Some(entry), verdict)
            }
            Resolved::Absent => (None, Verdict::absent(latest.is_some())),
            Resolved::Hold { problem, valid } => {
                self.report(name, Verdict::problem(problem, valid));
                return Outcome::Done;
            }
            Resolved::Forget => {
                self.status.remove(name);
                return Outcome::Done;
            }
            Resolved::Retry(problem) => {
                self.report(name, Verdict::problem(problem, false).transient());
                return Outcome::Retry;
            }
        };
        let desired = match &entry {
            Some(entry) => match self.desired_for(entry) {
                Ok(desired) => Some(desired),
                Err(problem) => {
                    self.report(name, Verdict::problem(problem, false));
                    return Outcome::Done;
                }
            },
            None => None,
        };
        let intent = match &desired {
            Some(d) => Intent::Apply(&d.stack),
            None => Intent::Absent,
        };
        let names: BTreeSet<&str> = desired
            .as_ref()
            .map(|d| {
                d.stack
                    .services
                    .iter()
                    .filter_map(|s| s.name.as_deref())
                    .collect()
            })
            .unwrap_or_default();
        let foreign = observed.foreign(&self.instance.name, name, &names);
        let in_sync = self.lock_in_sync().remove(name).unwrap_or_default();
        let plan = plan::plan(
            intent,
            Observation {
                owned: &owned,
                foreign: &foreign,
                network_ids: &observed.networks,
                in_sync: &in_sync,
            },
        );
        if !plan.in_sync.is_empty() {
            self.lock_in_sync()
                .insert(name.to_string(), plan.in_sync.clone());
        }
        drop(owned);
        let mut verdict = verdict;
        if !plan.conflicts.is_empty() {
            verdict = verdict.with_problem(plan.conflicts.join("; "), true);
        }
        let mut outcome = Outcome::Done;
        for action in &plan.actions {
            if let Err(error) = self.execute(name, action).await {
                warn!(model = name, target = action.target(), error = %error, "docker write failed");
                verdict = verdict.with_problem(error.to_string(), false);
                outcome = Outcome::Retry;
                break;
            }
        }
        verdict.synced = plan.conflicts.is_empty() && outcome == Outcome::Done;
        self.report(name, verdict);
        let removed = plan
            .actions
            .iter()
            .any(|a| matches!(a, plan::Action::RemoveService { .. }));
        if removed && outcome == Outcome::Done {
            // With its services gone, a model without records has nothing left to keep.
            // Docker's remove event arrives after the cache has dropped the service, so it
            // queues nothing: look again now, and the model leaves the listings at once
            // rather than at the next resync.
            self.queue.add(name);
        }
        outcome
    }

    /// Turns a decision into a record to apply, storing new records first.
    async fn resolve(&self, name: &str, decision: Decision) -> Resolved {
        match decision {
            Decision::Apply { entry } => Resolved::Apply(entry),
            Decision::Absent => Resolved::Absent,
            Decision::Forget => {
                if self
                    .observed
                    .get()
                    .owned_by(&self.instance.name, name)
                    .is_empty()
                {
                    Resolved::Forget
                } else {
                    Resolved::Absent
                }
            }
            Decision::Hold { problem, valid } => Resolved::Hold { problem, valid },
            Decision::Record { spec, source } => {
                let identity = Identity {
                    deployment_id: record::new_deployment_id(),
                    deployment_time: record::now_unix_seconds(),
                };
                let pipeline = self.pipeline();
                match pipeline.build(spec, identity, &source) {
                    Ok(desired) => self.append(desired.record, source).await,
                    Err(errors) => Resolved::Hold {
                        problem: join_errors(&source, &errors),
                        valid: false,
                    },
                }
            }
            Decision::Adopt { record } => {
                info!(model = name, deployment = %record.deployment_id, "adopting live services that the store has no record of");
                self.append(record, Source::Adopted).await
            }
        }
    }

    async fn append(&self, record: DeploymentRecord, source: Source) -> Resolved {
        let entry = Arc::new(HistoryEntry { record, source });
        match self.store.append(entry.clone()).await {
            Ok(()) => {
                info!(model = %entry.record.spec.name, deployment = %entry.record.deployment_id, source = %entry.source, "recorded a new deployment");
                Resolved::Apply(entry)
            }
            Err(e) => Resolved::Retry(format!("cannot write the store: {e}")),
        }
    }

    /// Re-reads one service into the observed cache (after a write or an event); returns
    /// the model it belongs to, if it is this instance's.
    async fn refresh(&self, id_or_name: &str) -> Result<Option<String>, SwarmError> {
        crate::reconcile::observe::refresh_service(
            self.swarm.as_ref(),
            &self.observed,
            &self.instance.name,
            id_or_name,
        )
        .await
    }

    /// Docker API calls made so far, by kind.
    pub fn docker_calls(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.calls.calls()
    }

    /// Whether Docker's event stream is connected, with a detail line.
    pub fn docker_health(&self) -> (bool, String) {
        self.docker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_docker_health(&self, ok: bool, detail: String) {
        *self.docker.lock().unwrap_or_else(|p| p.into_inner()) = (ok, detail);
    }

    /// The manifest that declares `name`, if a file does (such models are not the API's
    /// to change).
    pub fn file_owner(&self, name: &str) -> Option<String> {
        match file_view(&self.files(), name) {
            FileView::Undeclared | FileView::DirectoryMissing { .. } => None,
            FileView::Declared { origin, .. } | FileView::Invalid { origin, .. } => Some(origin),
            FileView::Conflict { origins } => Some(origins.join(" and ")),
        }
    }

    fn lock_in_sync(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<InSync>>> {
        // Each change is one insert or remove: a poisoned map is consistent.
        self.in_sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The offline pipeline with this controller's instance and templates.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            instance: &self.instance,
            templates: &self.templates,
        }
    }

    /// The stack a stored record renders to, built once per deployment.
    fn desired_for(&self, entry: &HistoryEntry) -> Result<Arc<Desired>, String> {
        let name = &entry.record.spec.name;
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = built
            .get(name)
            .filter(|b| b.deployment_id == entry.record.deployment_id && b.source == entry.source)
        {
            return b.result.clone();
        }
        let identity = Identity {
            deployment_id: entry.record.deployment_id.clone(),
            deployment_time: entry.record.deployment_time,
        };
        let result = self
            .pipeline()
            .build(entry.record.spec.clone(), identity, &entry.source)
            .map(Arc::new)
            .map_err(|errors| join_errors(&entry.source, &errors));
        built.insert(
            name.clone(),
            Built {
                deployment_id: entry.record.deployment_id.clone(),
                source: entry.source.clone(),
                result: result.clone(),
            },
        );
        result
    }

    /// Derives and stores a model's status from the verdict and the observed cache.
    fn report(&self, name: &str, verdict: Verdict) {
        let observed = self.observed.get();
        let services = observed.owned_by(&self.instance.name, name);
        let tasks = observed.tasks_of(&services);
        let status = status::derive(
            name,
            &verdict,
            &services,
            &tasks,
            &observed.nodes,
            observed.listed_at,
        );
        self.status.set(status);
    }
}

/// What a decision resolved to once new records are stored.
enum Resolved {
    Apply(Arc<HistoryEntry>),
    Absent,
    Hold { problem: String, valid: bool },
    Forget,
    Retry(String),
}

fn join_errors(source: &Source, errors: &[crate::desired::validate::FieldError]) -> String {
    let origin = match source {
        Source::File { path } => format!("{path}: "),
        _ => String::new(),
    };
    errors
        .iter()
        .map(|e| format!("{origin}{e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Verdict {
    fn applying(entry: &HistoryEntry) -> Self {
        Self {
            valid: true,
            wanted: true,
            synced: false,
            problem: String::new(),
            fatal: false,
            source: Some(entry.source.to_string()),
            deployment_id: Some(entry.record.deployment_id.clone()),
            deployment_time: Some(entry.record.deployment_time),
        }
    }

    fn absent(recorded: bool) -> Self {
        Self {
            valid: recorded,
            wanted: false,
            synced: false,
            problem: String::new(),
            fatal: false,
            source: None,
            deployment_id: None,
            deployment_time: None,
        }
    }

    fn problem(problem: String, valid: bool) -> Self {
        Self {
            valid,
            wanted: true,
            synced: false,
            problem,
            fatal: true,
            source: None,
            deployment_id: None,
            deployment_time: None,
        }
    }

    fn transient(self) -> Self {
        Self {
            fatal: false,
            ..self
        }
    }

    fn with_problem(self, problem: String, fatal: bool) -> Self {
        Self {
            problem,
            fatal,
            ..self
        }
    }
}

/// Every model name the manifests directory mentions.
fn file_names(files: &FileDeclarations) -> BTreeSet<String> {
    files.models.keys().cloned().collect()
}

/// What the manifests directory says about `name`, in the terms [`decide`] takes.
fn file_view(files: &FileDeclarations, name: &str) -> FileView {
    let Some(found) = files.models.get(name) else {
        return FileView::Undeclared;
    };
    match &found.declaration {
        Declaration::Spec { origin, spec } => FileView::Declared {
            origin: origin.to_string(),
            path: origin.path.display().to_string(),
            spec: spec.clone(),
            stale: found.stale.clone(),
        },
        Declaration::Invalid { origin, errors } => FileView::Invalid {
            origin: origin.to_string(),
            errors: errors.iter().map(ToString::to_string).collect(),
        },
        Declaration::Conflict { origins } => FileView::Conflict {
            origins: origins.iter().map(ToString::to_string).collect(),
        },
    }
}

#[cfg(test)]
mod tests;
