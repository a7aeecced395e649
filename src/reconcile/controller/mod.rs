//! The reconciler: keeps every declared model's services converged, unattended.
//!
//! Keys are model names. A key is queued by a manifest change, an API write, a Docker
//! service event, or the periodic resync; [`Controller::reconcile`] then takes one
//! snapshot of the observed state, re-reads the desired state (manifests, store), decides
//! ([`mod@decide`]), plans ([`crate::reconcile::plan`]) and carries the plan out, one
//! model per worker at a time (see [`crate::reconcile::queue`]). Reconciles are
//! level-triggered and idempotent.
//!
//! - `context`: the boundaries a reconcile works through (Docker, store, declarations,
//!   instance, templates), and nothing else.
//! - `pass`: one reconcile as stages over one snapshot.
//! - `memo`: what a reconcile remembers of the last one of the same model (built stacks,
//!   services found in sync), so that a resync of converged models does no work twice.
//! - `execute`: one Docker write per action; `run`: the workers, events and resyncs.
//! - [`Readers`]: the handles the API reads through.

mod context;
pub mod decide;
mod execute;
mod images;
mod memo;
mod objects;
mod pass;
mod run;

use crate::desired::Pipeline;
use crate::desired::render::{Instance, Templates};
use crate::desired::stack::labels;
use crate::reconcile::events::EventLog;
use crate::reconcile::lease::LeaseGate;
use crate::reconcile::network::{self, NetworkReport, SubnetChoice};
use crate::reconcile::notify::Notifier;
use crate::reconcile::observe::ObservedCache;
use crate::reconcile::queue::{Outcome, WorkQueue};
use crate::reconcile::status::StatusCache;
use crate::sources::files::FileDeclarations;
use crate::sources::store::Store;
use crate::swarm::counting::CountingSwarm;
use crate::swarm::{NetworkRequest, Swarm, SwarmError};
use context::Context;
pub use context::Declarations;
pub use decide::{Decision, FileView, decide};
pub use images::{DIGEST_TTL, DigestTtl, ImagePolicy, ResolveImage, image_digest_of};
use memo::Memo;
use std::collections::{BTreeMap, HashMap};
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
    /// When images are pinned to digests, and whether tags are followed.
    pub images: ImagePolicy,
    /// The subnet the shared network is created with, if mlmodel creates it.
    pub network_subnet: SubnetChoice,
    /// The lease this copy must hold to write (`None`: always writes).
    pub lease: Option<Arc<LeaseGate>>,
}

/// The shared network as last found: its id and subnets, and the report of its addresses
/// after the last relist (`None` until the network was ensured and listed).
#[derive(Default)]
pub struct SharedNetwork {
    found: Mutex<Option<(String, Vec<String>)>>,
    report: Mutex<Option<Arc<NetworkReport>>>,
}

impl SharedNetwork {
    /// The report of the last relist.
    pub fn report(&self) -> Option<Arc<NetworkReport>> {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn found(&self) -> Option<(String, Vec<String>)> {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_found(&self, id: String, subnets: Vec<String>) {
        *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, subnets));
    }

    /// Stores a new report; returns the previous one.
    fn set_report(&self, report: NetworkReport) -> Option<Arc<NetworkReport>> {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(report))
    }
}

/// Docker as the reconciler last found it: whether the event stream is connected, and
/// the calls made so far.
pub struct DockerLink {
    calls: Arc<CountingSwarm>,
    health: Mutex<(bool, String)>,
    /// Why the last relist failed, until one succeeds (a manager without quorum answers
    /// events but no lists).
    relist_error: Mutex<Option<String>>,
}

impl DockerLink {
    /// Whether Docker's event stream is connected and the last relist worked, with a
    /// detail line.
    pub fn health(&self) -> (bool, String) {
        if let Some(error) = self
            .relist_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return (false, format!("cannot list the swarm: {error}"));
        }
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_relist_error(&self, error: Option<String>) {
        *self.relist_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// Docker API calls made so far, by kind.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.calls()
    }

    fn set(&self, ok: bool, detail: String) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = (ok, detail);
    }
}

/// What readers (the API) may see of the reconciler: handles to the caches and sources
/// it keeps, each cheap to clone, none of which calls Docker.
#[derive(Clone)]
pub struct Readers {
    /// Every model's status.
    pub status: Arc<StatusCache>,
    /// The history store (the API writes new records to it).
    pub store: Store,
    /// The work queue, to ask for a reconcile after a write.
    pub queue: Arc<WorkQueue>,
    /// The reconciler's counters.
    pub metrics: Arc<Metrics>,
    /// Docker's event stream and the calls made.
    pub docker: Arc<DockerLink>,
    /// The manifests directory's declarations.
    pub declarations: Arc<Declarations>,
    /// This instance.
    pub instance: Instance,
    /// The templates.
    pub templates: Arc<Templates>,
    /// The shared network's addresses.
    pub network: Arc<SharedNetwork>,
    /// Whether this copy may write (holds the lease).
    pub lease: Arc<LeaseGate>,
    /// What the reconciler last saw of the swarm (services, tasks, nodes).
    pub observed: Arc<ObservedCache>,
    /// Docker, for reads the API makes itself (logs), counted like the reconciler's.
    pub swarm: Arc<dyn Swarm>,
    /// Each model's events.
    pub events: Arc<EventLog>,
    /// Where phase changes are POSTed, if anywhere.
    pub notifier: Option<Arc<Notifier>>,
}

impl Readers {
    /// The offline pipeline the reconciler renders with, to validate requests alike.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            instance: &self.instance,
            templates: &self.templates,
        }
    }
}

/// The reconciler: the boundaries it works through (`context`), the caches its loops
/// share with readers, and what it remembers between reconciles of a model (`memo`).
pub struct Controller {
    cx: Context,
    /// What is live, as last listed.
    pub observed: Arc<ObservedCache>,
    /// Every model's status, for the API.
    pub status: Arc<StatusCache>,
    /// Models waiting to be reconciled.
    pub queue: Arc<WorkQueue>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    docker: Arc<DockerLink>,
    memo: Memo,
    objects: objects::ObjectMemo,
    network: Arc<SharedNetwork>,
    network_subnet: SubnetChoice,
    /// Whether this copy may write.
    pub lease: Arc<LeaseGate>,
    /// Each model's events.
    pub events: Arc<EventLog>,
    /// Where phase changes are POSTed, once set.
    notifier: std::sync::OnceLock<Arc<Notifier>>,
}

impl Controller {
    /// A controller over `parts`; nothing runs until [`Controller::run`].
    pub fn new(parts: Parts) -> Arc<Self> {
        let calls = Arc::new(CountingSwarm::new(parts.swarm));
        let events = EventLog::new(parts.store.clone());
        Arc::new(Self {
            cx: Context {
                swarm: calls.clone(),
                store: parts.store,
                declarations: Arc::new(Declarations::new(parts.files)),
                instance: parts.instance,
                templates: parts.templates,
                images: parts.images,
                digests: Default::default(),
            },
            observed: Arc::new(ObservedCache::default()),
            status: Arc::new(StatusCache::new()),
            queue: Arc::new(WorkQueue::new()),
            metrics: Arc::new(Metrics::default()),
            docker: Arc::new(DockerLink {
                calls,
                health: Mutex::new((false, "not connected yet".to_string())),
                relist_error: Mutex::new(None),
            }),
            memo: Memo::default(),
            objects: objects::ObjectMemo::default(),
            network: Arc::default(),
            network_subnet: parts.network_subnet,
            lease: parts.lease.unwrap_or_else(LeaseGate::open),
            events,
            notifier: std::sync::OnceLock::new(),
        })
    }

    /// Tells the controller which directory the manifests come from, so that while it is
    /// missing (an unmounted volume, a checkout in progress) models declared by its files
    /// are held as they run instead of pruned.
    pub fn set_manifests_dir(&self, dir: std::path::PathBuf) {
        self.cx.declarations.set_dir(dir);
    }

    /// Handles for readers: the API serves from these.
    pub fn readers(&self) -> Readers {
        Readers {
            status: self.status.clone(),
            store: self.cx.store.clone(),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            docker: self.docker.clone(),
            declarations: self.cx.declarations.clone(),
            instance: self.cx.instance.clone(),
            templates: self.cx.templates.clone(),
            network: self.network.clone(),
            lease: self.lease.clone(),
            observed: self.observed.clone(),
            swarm: self.cx.swarm.clone(),
            events: self.events.clone(),
            notifier: self.notifier.get().cloned(),
        }
    }

    /// POSTs each model's phase changes through `notifier` from now on (while this copy
    /// is the active one). Set once, before [`Controller::readers`]; later calls are
    /// ignored.
    pub fn set_notifier(&self, notifier: Arc<Notifier>) {
        let _ = self.notifier.set(notifier);
    }

    fn notifier(&self) -> Option<&Arc<Notifier>> {
        self.notifier.get()
    }

    /// Docker, as this controller reaches it (its calls counted).
    pub fn swarm(&self) -> Arc<dyn Swarm> {
        self.cx.swarm.clone()
    }

    /// Queues every model worth a look (after this copy became the active one).
    pub fn queue_all(&self) {
        for name in self.all_models() {
            self.queue.add(&name);
        }
    }

    /// The instance this controller manages for.
    pub fn instance(&self) -> &Instance {
        &self.cx.instance
    }

    /// The history store.
    pub fn store(&self) -> &Store {
        &self.cx.store
    }

    /// The manifests directory's current declarations.
    pub fn files(&self) -> Arc<FileDeclarations> {
        self.cx.declarations.current()
    }

    /// The offline pipeline with this controller's instance and templates.
    pub fn pipeline(&self) -> Pipeline<'_> {
        self.cx.pipeline()
    }

    /// Docker API calls made so far, by kind.
    pub fn docker_calls(&self) -> BTreeMap<&'static str, u64> {
        self.docker.calls()
    }

    /// Every model worth a look: declared, recorded, live or with a status; sorted.
    ///
    /// Every resync asks, so the four sources' names are gathered by reference and copied
    /// once each (most models are in all four).
    pub fn all_models(&self) -> Vec<String> {
        let declared = self.cx.declarations.current();
        let stored = self
            .cx
            .store
            .shared_names()
            .unwrap_or_else(|_| Arc::new([]));
        let observed = self.observed.get();
        let live = observed.models(&self.cx.instance.name);
        let mut names: foldhash::HashSet<&str> = foldhash::HashSet::with_capacity_and_hasher(
            stored.len().max(live.len()),
            Default::default(),
        );
        names.extend(declared.models.keys().map(String::as_str));
        names.extend(stored.iter().map(String::as_str));
        names.extend(live.iter().copied());
        let mut all: Vec<String> = Vec::with_capacity(names.len());
        self.status.for_each_name(|name| {
            if !names.contains(name) {
                all.push(name.to_string());
            }
        });
        all.extend(names.into_iter().map(str::to_string));
        all.sort_unstable();
        all
    }

    /// Creates the shared overlay network if it is missing: with the subnet asked for,
    /// or a free /16 of the swarm's address pools (see [`crate::reconcile::network`]).
    pub async fn ensure_network(&self) -> Result<(), SwarmError> {
        let name = &self.cx.instance.network;
        let swarm = &self.cx.swarm;
        let networks = swarm.list_networks().await?;
        if let Some(found) = networks.iter().find(|n| &n.name == name) {
            if let SubnetChoice::Fixed(asked) = &self.network_subnet
                && !found.subnets.iter().any(|s| s == &asked.to_string())
            {
                warn!(network = %name, subnets = %found.subnets.join(", "), asked = %asked, "the shared network exists with other subnets; --network-subnet applies only when mlmodel creates it");
            }
            self.found_network(found.id.clone(), found.subnets.clone());
            return Ok(());
        }
        if !self.lease.may_write() {
            warn!(network = %name, "the shared network is missing; the active copy creates it (this one is a standby)");
            return Ok(());
        }
        let subnet = match &self.network_subnet {
            SubnetChoice::Fixed(subnet) => Some(*subnet),
            SubnetChoice::Auto => {
                let pools = swarm.info().await?.address_pools;
                let addrs: Vec<String> = swarm
                    .list_nodes()
                    .await?
                    .into_iter()
                    .map(|n| n.addr)
                    .collect();
                let picked =
                    network::pick_subnet(&pools, &network::taken_subnets(&networks, &addrs));
                if picked.is_none() {
                    warn!(network = %name, pools = %pools.join(", "), "no free /16 in the swarm's address pools: Docker picks the subnet (a /24 holds about 120 one-replica models); pass --network-subnet");
                }
                picked
            }
        };
        let request = NetworkRequest {
            name: name.clone(),
            driver: "overlay".into(),
            attachable: true,
            labels: HashMap::from([(
                labels::MANAGED_BY.to_string(),
                self.cx.instance.name.clone(),
            )]),
            subnet: subnet.map(|s| s.to_string()),
        };
        match swarm.create_network(&request).await {
            Ok(id) => {
                let subnets: Vec<String> = request.subnet.into_iter().collect();
                info!(network = %name, subnet = %subnets.join(", "), "created the shared overlay network");
                self.found_network(id, subnets);
                Ok(())
            }
            // Created meanwhile by someone else: take it as it is.
            Err(SwarmError::Conflict { .. }) => {
                let listed = swarm.list_networks().await?;
                let found = listed.into_iter().find(|n| &n.name == name);
                let (id, subnets) = found.map(|n| (n.id, n.subnets)).unwrap_or_default();
                self.found_network(id, subnets);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn found_network(&self, id: String, subnets: Vec<String>) {
        let name = self.cx.instance.network.clone();
        self.observed.update(|o| {
            o.networks.insert(name, id.clone());
        });
        self.network.set_found(id, subnets);
    }

    /// Counts the shared network's addresses over the last relist, and says so when they
    /// turn out too few (and when they suffice again).
    fn report_network(&self) {
        let Some((id, subnets)) = self.network.found() else {
            return;
        };
        let observed = self.observed.get();
        let report = NetworkReport::of(&self.cx.instance.network, &id, subnets, &observed);
        let shortage = report.shortage();
        let was_short = self
            .network
            .set_report(report)
            .is_some_and(|previous| previous.is_short());
        match shortage {
            Some(shortage) if !was_short => warn!("{shortage}"),
            None if was_short => {
                info!(network = %self.cx.instance.network, "the shared network has enough addresses again")
            }
            _ => {}
        }
    }

    /// Reconciles one model: decide, plan, act, report. Never panics on bad input.
    pub async fn reconcile(&self, name: &str) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = self.reconcile_once(name).await;
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

    /// Re-reads one service into the observed cache (after a write or an event); returns
    /// the model it belongs to, if it is this instance's.
    async fn refresh(&self, id_or_name: &str) -> Result<Option<String>, SwarmError> {
        crate::reconcile::observe::refresh_service(
            self.cx.swarm.as_ref(),
            &self.observed,
            &self.cx.instance.name,
            id_or_name,
        )
        .await
    }
}

#[cfg(test)]
mod tests;
