//! Keeps the manifests directory's declarations current while files change.
//!
//! Filesystem notifications only say *that* something changed: after each burst of them
//! the whole directory is scanned again (scans are cheap, and a full scan cannot miss what
//! an event described badly). A periodic rescan backs the notifications up, since they can
//! be lost, and re-establishes them when they failed or the directory was replaced.

use super::{FileDeclarations, changed_names, scan};
use crate::desired::manifest::Fill;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How quickly the watcher reacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Quiet time after the last filesystem event before the directory is scanned.
    pub debounce: Duration,
    /// Time between scans when nothing is heard, in case events were lost.
    pub rescan: Duration,
    /// What manifests may leave out that the server fills in (`--domain-format`).
    pub fill: Fill,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            rescan: Duration::from_secs(30),
            fill: Fill::default(),
        }
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The directory's path could not be made absolute.
    #[error("cannot resolve the manifests directory {dir}")]
    Resolve {
        /// The directory as given.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// There is no tokio runtime to run the watcher on.
    #[error("the manifests watcher must be started from within a tokio runtime")]
    NoRuntime,
}

/// The watcher's state, as the health endpoint shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthReport {
    /// The watch loop is running.
    pub alive: bool,
    /// Filesystem notifications are established; without them, changes are only found by
    /// the periodic rescan.
    pub watching: bool,
    /// The manifests directory exists.
    pub dir_present: bool,
    /// When the directory was last scanned.
    pub last_scan: Option<SystemTime>,
    /// How many scans were made.
    pub scans: u64,
    /// The last problem the watcher met, if any.
    pub last_error: Option<String>,
}

impl HealthReport {
    /// Running, and notified of changes unless there is no directory to watch.
    pub fn is_healthy(&self) -> bool {
        self.alive && (self.watching || !self.dir_present)
    }
}

/// A handle on the watcher's health; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WatcherHealth {
    // A std mutex: it guards a small value for a moment and is never held across an await.
    report: Arc<Mutex<HealthReport>>,
}

impl WatcherHealth {
    /// The current state.
    pub fn report(&self) -> HealthReport {
        self.lock().clone()
    }

    fn update(&self, change: impl FnOnce(&mut HealthReport)) {
        change(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthReport> {
        // A panic mid-update leaves at worst a stale field in a report: keep serving it.
        self.report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// When the next scan is due: after a burst of events has been quiet for `debounce` (or
/// has lasted long enough), or when the periodic rescan comes round.
#[derive(Debug, Clone)]
struct Schedule {
    debounce: Duration,
    rescan: Duration,
    /// Longest a continuous stream of events can postpone a scan.
    max_delay: Duration,
    burst_started: Option<Instant>,
    quiet_until: Option<Instant>,
    next_rescan: Instant,
}

impl Schedule {
    fn new(config: &WatchConfig, now: Instant) -> Self {
        Self {
            debounce: config.debounce,
            rescan: config.rescan,
            max_delay: config.debounce.saturating_mul(20),
            burst_started: None,
            quiet_until: None,
            next_rescan: now + config.rescan,
        }
    }

    /// Something changed at `now`.
    fn event(&mut self, now: Instant) {
        self.burst_started.get_or_insert(now);
        self.quiet_until = Some(now + self.debounce);
    }

    /// When to scan next.
    fn next_scan(&self) -> Instant {
        let burst = self
            .burst_started
            .zip(self.quiet_until)
            .map(|(started, quiet)| quiet.min(started + self.max_delay));
        burst.map_or(self.next_rescan, |burst| burst.min(self.next_rescan))
    }

    /// A scan started at `now`: every event so far is accounted for.
    fn scanned(&mut self, now: Instant) {
        self.burst_started = None;
        self.quiet_until = None;
        self.next_rescan = now + self.rescan;
    }
}

/// Whether a notification can mean a manifest changed. Opening and reading files (which
/// every scan does) cannot; finishing a write can. The parent directory is watched too, to
/// see the manifests directory come and go: its other entries are ignored.
fn is_relevant(dir: &Path, event: &Event) -> bool {
    if event.need_rescan() {
        return true;
    }
    let reads = matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write));
    let inside = event.paths.is_empty() || event.paths.iter().any(|path| path.starts_with(dir));
    !reads && inside
}

/// The identity of a directory: it changes when the directory is replaced, which leaves an
/// established watch looking at the old one.
#[cfg(unix)]
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(dir).ok()?;
    metadata.is_dir().then(|| (metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    dir.is_dir().then_some((0, 0))
}

/// The notifications for the manifests directory itself.
struct DirWatch {
    _watcher: RecommendedWatcher,
    identity: (u64, u64),
    /// It reported an error: events may have been lost, replace it at the next scan.
    failed: bool,
}

type NotifyEvents = mpsc::UnboundedSender<notify::Result<Event>>;

/// The receiving end of the manifests directory's declarations.
pub type DeclarationsReceiver = watch::Receiver<Arc<FileDeclarations>>;

/// The receiving end of the names each change touched.
pub type ChangesReceiver = mpsc::UnboundedReceiver<BTreeSet<String>>;

/// Watches the manifests directory and publishes what it declares.
pub struct ManifestWatcher {
    dir: PathBuf,
    fill: Arc<Fill>,
    schedule: Schedule,
    events_tx: NotifyEvents,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
    dir_watch: Option<DirWatch>,
    parent_watch: Option<RecommendedWatcher>,
    current: Arc<FileDeclarations>,
    declarations: watch::Sender<Arc<FileDeclarations>>,
    changes: mpsc::UnboundedSender<BTreeSet<String>>,
    health: WatcherHealth,
    shutdown: CancellationToken,
}

impl ManifestWatcher {
    /// Scans `dir` once, then keeps watching it on a task of the current tokio runtime
    /// until `shutdown` is cancelled.
    ///
    /// Returns the declarations (the first scan's until something changes), the names
    /// each later change touched (the first scan's names are not sent: read the
    /// declarations at start), and the watcher's health. A missing `dir` declares nothing
    /// and is watched for once it appears.
    pub fn spawn(
        dir: PathBuf,
        config: WatchConfig,
        shutdown: CancellationToken,
    ) -> Result<(DeclarationsReceiver, ChangesReceiver, WatcherHealth), WatchError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
        let dir = std::path::absolute(&dir).map_err(|source| WatchError::Resolve {
            dir: dir.display().to_string(),
            source,
        })?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (declarations, mut declarations_rx) = watch::channel(Arc::default());
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let health = WatcherHealth::default();
        health.update(|report| report.alive = true);
        let mut watcher = ManifestWatcher {
            dir,
            fill: Arc::new(config.fill.clone()),
            schedule: Schedule::new(&config, Instant::now()),
            events_tx,
            events,
            dir_watch: None,
            parent_watch: None,
            current: Arc::default(),
            declarations,
            changes,
            health: health.clone(),
            shutdown,
        };
        // Watch first, then scan: a change made in between is then seen twice, not never.
        watcher.ensure_watching();
        let first = scan(&watcher.dir, &FileDeclarations::default(), &watcher.fill);
        watcher.log_new_problems(&first);
        watcher.current = Arc::new(first);
        watcher.declarations.send_replace(watcher.current.clone());
        // The first scan is the starting point, not a change.
        declarations_rx.mark_unchanged();
        watcher.scanned();
        runtime.spawn(watcher.run());
        Ok((declarations_rx, changes_rx, health))
    }

    async fn run(mut self) {
        loop {
            if self.declarations.is_closed() && self.changes.is_closed() {
                tracing::debug!("nobody reads the manifests any more: stopping the watcher");
                break;
            }
            let next_scan = self.schedule.next_scan();
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                Some(event) = self.events.recv() => self.on_notification(event),
                () = tokio::time::sleep_until(next_scan) => self.rescan().await,
            }
        }
        self.health.update(|report| {
            report.alive = false;
            report.watching = false;
        });
    }

    fn on_notification(&mut self, event: notify::Result<Event>) {
        match event {
            Ok(event) if is_relevant(&self.dir, &event) => self.schedule.event(Instant::now()),
            Ok(_) => {}
            Err(error) => {
                let message = format!(
                    "watching {} failed: {error}: relying on rescans until it is re-established",
                    self.dir.display()
                );
                tracing::warn!("{message}");
                if let Some(dir_watch) = &mut self.dir_watch {
                    dir_watch.failed = true;
                }
                self.health.update(|report| {
                    report.watching = false;
                    report.last_error = Some(message);
                });
                // Whatever the failed watch missed, a scan finds.
                self.schedule.event(Instant::now());
            }
        }
    }

    async fn rescan(&mut self) {
        self.ensure_watching();
        let dir = self.dir.clone();
        let previous = self.current.clone();
        let fill = self.fill.clone();
        match tokio::task::spawn_blocking(move || scan(&dir, &previous, &fill)).await {
            Ok(next) => self.publish(next),
            Err(error) => {
                let message = format!("scanning {} failed: {error}", self.dir.display());
                tracing::error!("{message}");
                self.health
                    .update(|report| report.last_error = Some(message));
            }
        }
        self.scanned();
    }

    fn scanned(&mut self) {
        self.schedule.scanned(Instant::now());
        self.health.update(|report| {
            report.last_scan = Some(SystemTime::now());
            report.scans += 1;
        });
    }

    fn publish(&mut self, next: FileDeclarations) {
        if *self.current == next {
            return;
        }
        self.log_new_problems(&next);
        let changed = changed_names(&self.current, &next);
        self.current = Arc::new(next);
        self.declarations.send_replace(self.current.clone());
        if !changed.is_empty() {
            tracing::info!(models = ?changed, "manifests changed");
            // Nobody listening is not an error: the declarations are still published.
            let _ = self.changes.send(changed);
        }
    }

    fn log_new_problems(&self, next: &FileDeclarations) {
        for (path, error) in &next.broken {
            if self.current.broken.get(path) != Some(error) {
                tracing::warn!("{error}");
            }
        }
    }

    /// Establishes the notifications that are missing: on the directory (again, if it was
    /// replaced or its watch failed) and on its parent (to see it created or deleted).
    fn ensure_watching(&mut self) {
        if self.parent_watch.is_none() {
            self.parent_watch = self.watch_parent();
        }
        let Some(identity) = dir_identity(&self.dir) else {
            let was_present = self.health.report().dir_present || self.dir_watch.is_some();
            if was_present || self.health.report().scans == 0 {
                tracing::warn!(
                    "manifests directory {} does not exist: it declares nothing until it is created",
                    self.dir.display()
                );
            }
            self.dir_watch = None;
            self.health.update(|report| {
                report.dir_present = false;
                report.watching = false;
            });
            return;
        };
        let current = self
            .dir_watch
            .as_ref()
            .is_some_and(|watch| watch.identity == identity && !watch.failed);
        if !current {
            // Drop the old watch before creating its replacement.
            self.dir_watch = None;
            match self.watch_dir(identity) {
                Ok(dir_watch) => self.dir_watch = Some(dir_watch),
                Err(error) => {
                    let message = format!(
                        "cannot watch {}: {error}: relying on rescans",
                        self.dir.display()
                    );
                    tracing::warn!("{message}");
                    self.health
                        .update(|report| report.last_error = Some(message));
                }
            }
        }
        let watching = self.dir_watch.is_some();
        self.health.update(|report| {
            report.dir_present = true;
            report.watching = watching;
        });
    }

    fn watch_dir(&self, identity: (u64, u64)) -> notify::Result<DirWatch> {
        let mut watcher = self.new_notifier()?;
        watcher.watch(&self.dir, RecursiveMode::Recursive)?;
        Ok(DirWatch {
            _watcher: watcher,
            identity,
            failed: false,
        })
    }

    fn watch_parent(&self) -> Option<RecommendedWatcher> {
        let parent = self.dir.parent()?;
        let watched = self.new_notifier().and_then(|mut watcher| {
            watcher.watch(parent, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watched {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::debug!(
                    parent = %parent.display(),
                    %error,
                    "cannot watch the manifests directory's parent: its creation is seen at the next rescan"
                );
                None
            }
        }
    }

    /// A notifier whose callback (on notify's own thread) forwards into the watch loop.
    fn new_notifier(&self) -> notify::Result<RecommendedWatcher> {
        let events = self.events_tx.clone();
        notify::recommended_watcher(move |event: notify::Result<Event>| {
            // The loop has stopped when the channel is closed: nothing left to tell.
            let _ = events.send(event);
        })
    }
}

#[cfg(test)]
mod tests;
