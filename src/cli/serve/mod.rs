//! `mlmodel serve`: wires the sources, the reconciler and the API together and runs them
//! until SIGINT or SIGTERM. Its flags are in [`flags`](ServeArgs).

mod flags;

pub use flags::ServeArgs;
pub(crate) use flags::run;

use crate::api::{self, ApiState, HealthProbe};
use crate::desired::render::{Instance, Templates};
use crate::reconcile::controller::{Controller, ImagePolicy, Parts, RunConfig};
use crate::reconcile::journal::Journal;
use crate::reconcile::lease::{self, LeaseConfig, LeaseGate};
use crate::reconcile::network::SubnetChoice;
use crate::reconcile::notify::Notifier;
use crate::sources::files::{ManifestWatcher, WatchConfig, WatcherHealth};
use crate::sources::store::Store;
use crate::swarm::docker::DockerSwarm;
use crate::swarm::{Swarm, SwarmError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Everything `mlmodel serve` needs, from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Directory of manifests to watch.
    pub manifests: PathBuf,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Move a store that does not open aside and start with an empty one.
    pub recover_store: bool,
    /// Directory of templates overriding the built-in ones.
    pub templates: Option<PathBuf>,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Instance name, environment and shared network.
    pub instance: Instance,
    /// Full resync period.
    pub resync: Duration,
    /// Models reconciled at once.
    pub concurrency: usize,
    /// Bearer token required for API writes.
    pub token: Option<String>,
    /// When images are pinned to digests, and whether tags are followed.
    pub images: ImagePolicy,
    /// The subnet the shared network is created with, if mlmodel creates it.
    pub network_subnet: SubnetChoice,
    /// Hold a lease in the swarm to act, for this long without renewal (`None`: always
    /// act, the only copy).
    pub lease: Option<Duration>,
    /// Keep the store's records also in Swarm (see [`crate::reconcile::journal`]).
    pub swarm_history: bool,
    /// Where phase changes are POSTed (see [`crate::reconcile::notify`]).
    pub notify_urls: Vec<reqwest::Url>,
}

/// Opens the store, moving a damaged one aside with `--recover-store`; a damaged store
/// without it is an error that says the way out.
fn open_store(config: &ServeConfig) -> Result<Store, ServeError> {
    use crate::sources::store::StoreError;
    match Store::open_or_recover(&config.data_dir, config.recover_store) {
        Ok((store, None)) => Ok(store),
        Ok((store, Some(aside))) => {
            warn!(
                data_dir = %config.data_dir.display(),
                moved_to = %aside.display(),
                "the store did not open: moved it aside (kept as it was) and started with an empty one; every model running in the swarm is adopted from its services' labels"
            );
            Ok(store)
        }
        Err(e @ StoreError::Open { .. }) => {
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            Err(ServeError::Store(format!(
                "{e} ({cause}). If it is damaged, start with --recover-store: the store is moved aside to {}.damaged-<time> (kept, never deleted), an empty one takes its place, and every model running in the swarm is adopted from its services' mlmodel.record labels without a restart; the older history stays in the moved store",
                config.data_dir.display()
            )))
        }
        Err(e) => Err(ServeError::Store(e.to_string())),
    }
}

/// Why `mlmodel serve` could not start; each message says what fixes it.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Docker did not answer.
    #[error(
        "cannot reach Docker ({0}): start the Docker engine (on a development machine, scripts/swarm-up.sh does it) or point DOCKER_HOST at one"
    )]
    DockerUnreachable(String),
    /// The engine is not a swarm manager.
    #[error("{0}")]
    NotManager(String),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(String),
    /// The history kept in Swarm could not be synced.
    #[error("{0}")]
    History(String),
    /// The templates could not be loaded.
    #[error(transparent)]
    Templates(#[from] crate::desired::render::RenderError),
    /// The notifications' HTTP client could not be made.
    #[error("cannot set up notifications: {0}")]
    Notify(String),
    /// The manifests directory could not be watched.
    #[error("cannot watch the manifests directory: {0}")]
    Watch(String),
    /// The shared network could not be created.
    #[error("cannot create the shared network {network}: {error}")]
    Network {
        /// The network.
        network: String,
        /// Docker's error.
        error: SwarmError,
    },
    /// The API could not bind its address.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: std::io::Error,
    },
}

/// Checks that Docker answers and that this node can manage services.
pub async fn check_swarm(swarm: &dyn Swarm) -> Result<(), ServeError> {
    let info = swarm
        .info()
        .await
        .map_err(|e| ServeError::DockerUnreachable(e.to_string()))?;
    if info.local_node_state != "active" {
        return Err(ServeError::NotManager(format!(
            "this Docker engine (version {}) is not part of a swarm (state: {}): run `docker swarm init --advertise-addr 127.0.0.1` to make it a single-node swarm",
            info.server_version,
            if info.local_node_state.is_empty() {
                "inactive"
            } else {
                &info.local_node_state
            }
        )));
    }
    if !info.is_manager {
        return Err(ServeError::NotManager(
            "this Docker engine is a swarm worker, and only managers can manage services: run mlmodel on a manager node, or promote this one with `docker node promote <node>` from a manager".to_string(),
        ));
    }
    Ok(())
}

/// Runs the reconciler (and the API) until `shutdown` is cancelled.
pub async fn serve(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let swarm: Arc<dyn Swarm> = Arc::new(
        DockerSwarm::connect()
            .await
            .map_err(|e| ServeError::DockerUnreachable(e.to_string()))?,
    );
    check_swarm(swarm.as_ref()).await?;
    let store = open_store(&config)?;
    let templates = Arc::new(Templates::load(config.templates.as_deref())?);
    let listener = bind(&config).await?;
    let (files, file_changes, health) = ManifestWatcher::spawn(
        config.manifests.clone(),
        WatchConfig {
            // The rescan backs up lost filesystem events: never rarer than the default,
            // whatever the swarm resync period.
            rescan: config.resync.min(WatchConfig::default().rescan),
            fill: config.instance.fill.clone(),
            ..WatchConfig::default()
        },
        shutdown.clone(),
    )
    .map_err(|e| ServeError::Watch(e.to_string()))?;
    let lease = config.lease.map(|duration| {
        let identity = copy_identity(&config);
        let address = format!("http://{}:{}", hostname(), config.listen.port());
        let gate = if config.swarm_history {
            LeaseGate::leased_after_prepare()
        } else {
            LeaseGate::leased()
        };
        (
            LeaseConfig::new(&config.instance.name, identity, address, duration),
            gate,
        )
    });
    let journal = config.swarm_history.then(|| {
        Arc::new(Journal::new(
            swarm.clone(),
            &config.instance.name,
            &copy_identity(&config),
            lease.as_ref().map(|(_, gate)| gate.clone()),
        ))
    });
    if let Some((lease_config, gate)) = &lease {
        // One round before anything else: the only copy is active at once.
        let mut memory = lease::Memory::default();
        if let Err(e) = lease::round(swarm.as_ref(), lease_config, gate, &mut memory).await {
            warn!(error = %e, "cannot read or take the lease yet");
        }
    }
    if let Some(journal) = &journal {
        let held = lease.as_ref().map(|(_, gate)| gate.held_term());
        // Without a lease this is the only copy; with one, only the holder fills the
        // journal, and a standby takes in what it holds.
        let may_write = held.is_none_or(|term| term.is_some());
        let synced = sync_history(journal, &store, may_write).await;
        if !synced && lease.is_none() {
            return Err(ServeError::History(
                "cannot read or write the history kept in Swarm (see the log); start again once Docker answers, or without --swarm-history".to_string(),
            ));
        }
        if let (Some((_, gate)), Some(Some(term))) = (&lease, held)
            && synced
        {
            gate.mark_ready(term);
        }
        store
            .set_mirror(journal.clone())
            .expect("the store gets its mirror once");
    }
    if let Some((_, gate)) = &lease
        && let Some(why) = gate.standby()
    {
        info!("{why}");
    }
    let controller = Controller::new(Parts {
        swarm,
        store,
        files,
        instance: config.instance.clone(),
        templates,
        images: config.images,
        network_subnet: config.network_subnet.clone(),
        lease: lease.as_ref().map(|(_, gate)| gate.clone()),
    });
    controller.set_manifests_dir(config.manifests.clone());
    if !config.notify_urls.is_empty() {
        let notifier =
            Notifier::start(&config.notify_urls).map_err(|e| ServeError::Notify(e.to_string()))?;
        let shown: Vec<String> = notifier.targets.iter().map(|t| t.shown()).collect();
        info!(targets = %shown.join(", "), "notifying phase changes");
        controller.set_notifier(notifier);
    }
    if !config.manifests.is_dir() {
        warn!(
            manifests = %config.manifests.display(),
            "the manifests directory does not exist: models recorded from manifests are held as they run until it appears"
        );
    }
    controller
        .ensure_network()
        .await
        .map_err(|error| ServeError::Network {
            network: config.instance.network.clone(),
            error,
        })?;
    info!(
        manifests = %config.manifests.display(),
        data_dir = %config.data_dir.display(),
        instance = %config.instance.name,
        "mlmodel is reconciling"
    );
    let state = ApiState::new(
        controller.readers(),
        config.token.clone(),
        Arc::new(WatcherProbe(health)),
    )
    .with_shutdown(shutdown.clone());
    let api = spawn_api(listener, state, shutdown.clone());
    let events_flusher = tokio::spawn(
        controller
            .events
            .clone()
            .flush_every(Duration::from_secs(2), shutdown.clone()),
    );
    info!(listen = %config.listen, "API listening");
    let run_config = RunConfig {
        concurrency: config.concurrency,
        resync: config.resync,
        ..RunConfig::default()
    };
    // The lease is released only once the reconciler's in-flight writes are done.
    let lease_stop = CancellationToken::new();
    let lease_loop = lease.map(|(lease_config, gate)| {
        let swarm = controller.swarm();
        let on_acquired = controller.clone();
        let (journal, store) = (journal.clone(), controller.store().clone());
        tokio::spawn(lease::run(
            swarm,
            lease_config,
            gate,
            move || {
                let (journal, store) = (journal.clone(), store.clone());
                Box::pin(async move {
                    match journal {
                        Some(journal) => sync_history(&journal, &store, true).await,
                        None => true,
                    }
                })
            },
            move || {
                let controller = on_acquired.clone();
                tokio::spawn(async move {
                    if let Err(e) = controller.ensure_network().await {
                        warn!(error = %e, "cannot create the shared network");
                    }
                    controller.queue_all();
                });
            },
            lease_stop.clone(),
        ))
    });
    controller.run(run_config, file_changes, shutdown).await;
    let _ = events_flusher.await;
    lease_stop.cancel();
    if let Some(lease_loop) = lease_loop {
        let _ = lease_loop.await;
    }
    match api.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "the API server stopped with an error"),
        Err(e) => warn!(error = %e, "the API server task failed"),
    }
    info!("stopped");
    Ok(())
}

/// Syncs the store with the history kept in Swarm; whether that worked (the failure
/// is logged).
async fn sync_history(journal: &Journal, store: &Store, may_write: bool) -> bool {
    match journal.sync(store, may_write).await {
        Ok(report) => {
            info!(
                entries = report.entries,
                taken = report.taken,
                pushed = report.pushed,
                "the store agrees with the history kept in Swarm"
            );
            true
        }
        Err(e) => {
            warn!(error = %e, "cannot sync the store with the history kept in Swarm");
            false
        }
    }
}

/// This copy's identity: `host:port/pid`.
fn copy_identity(config: &ServeConfig) -> String {
    format!(
        "{}:{}/{}",
        hostname(),
        config.listen.port(),
        std::process::id()
    )
}

/// This machine's host name (a container's id in a container), for the lease holder.
fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname writes at most
    // that many bytes.
    let written = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match (written, std::str::from_utf8(&buffer[..end])) {
        (0, Ok(name)) if !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Binds the API's address, warning when it is reachable beyond this machine unguarded.
async fn bind(config: &ServeConfig) -> Result<tokio::net::TcpListener, ServeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| ServeError::Listen {
            addr: config.listen,
            error,
        })?;
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        warn!(
            listen = %config.listen,
            "the API listens beyond this machine without a token: anyone who can reach it can deploy and delete models; set --token or MLMODEL_TOKEN"
        );
    }
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown`, letting requests in flight finish.
fn spawn_api(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    })
}

/// Tunes the C allocator for a long-running controller; call before the async runtime
/// starts its threads.
///
/// - Two arenas. glibc gives a thread that finds the arenas busy a new one, up to eight
///   per core, and each keeps what is freed in it for reuse. Every relist allocates a
///   copy of every live service and frees the previous one on whichever worker runs it,
///   so with 1000 models the arenas of the workers and of the blocking pool each ended up
///   holding megabytes nobody used (benches/memory.rs: ~62-65 MB resident by default,
///   ~50-58 MB with two arenas). Two arenas match the runtime's two workers on a
///   two-core host.
/// - A fixed mmap threshold of 256 KiB. By default glibc raises the threshold to the size
///   of the largest block freed (up to 32 MiB), and the trim threshold to twice that: a
///   relist's answer (about 2.5 kB per service, 25 MB for 10,000) is then taken from the
///   heap the next time, and as much free memory is kept at its top for good. Fixed, a
///   block that large is mapped and unmapped on its own and the heap is trimmed past
///   128 KiB free (benches/swarm_resync.rs, 10,000 models: see the README).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; it allocates nothing and is
    // called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Reports the manifests watcher's health to `/healthz`.
struct WatcherProbe(WatcherHealth);

impl HealthProbe for WatcherProbe {
    fn watcher(&self) -> (bool, String) {
        let report = self.0.report();
        let detail = match (&report.last_error, report.watching) {
            (Some(error), _) => error.clone(),
            (None, true) => "watching".to_string(),
            (None, false) => "not watching: rescanning periodically".to_string(),
        };
        (report.is_healthy(), detail)
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::SwarmInfo;
    use crate::swarm::fake::FakeSwarm;

    fn info(state: &str, manager: bool) -> SwarmInfo {
        SwarmInfo {
            server_version: "20.10.24".into(),
            local_node_state: state.into(),
            is_manager: manager,
            node_id: "n1".into(),
            address_pools: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_swarm_manager_passes_the_start_check() {
        let fake = FakeSwarm::new();
        fake.set_info(info("active", true));
        assert!(check_swarm(&fake).await.is_ok());
    }

    #[tokio::test]
    async fn an_engine_outside_a_swarm_is_told_how_to_init_one() {
        let fake = FakeSwarm::new();
        fake.set_info(info("inactive", false));
        let message = check_swarm(&fake).await.unwrap_err().to_string();
        assert!(
            message.contains("docker swarm init --advertise-addr"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_worker_node_is_told_to_use_a_manager() {
        let fake = FakeSwarm::new();
        fake.set_info(info("active", false));
        let message = check_swarm(&fake).await.unwrap_err().to_string();
        assert!(message.contains("docker node promote"), "{message}");
    }

    #[tokio::test]
    async fn an_unreachable_docker_is_reported_with_the_fix() {
        let fake = FakeSwarm::new();
        fake.set_unreachable(true);
        let message = check_swarm(&fake).await.unwrap_err().to_string();
        assert!(message.starts_with("cannot reach Docker"), "{message}");
        assert!(message.contains("DOCKER_HOST"), "{message}");
    }
}
