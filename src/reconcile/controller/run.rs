//! The controller's loops: workers over the queue, the event follower, resyncs.

use super::Controller;
use super::RunConfig;
use crate::desired::record;
use crate::reconcile::observe::{self, WatchOutput, WatchState};
use crate::swarm::SwarmError;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

impl Controller {
    /// Runs the reconciler until `shutdown`: workers, the event follower, the resync
    /// and the manifest-change listener. Returns once in-flight work has finished.
    pub async fn run(
        self: Arc<Self>,
        config: RunConfig,
        mut file_changes: mpsc::UnboundedReceiver<BTreeSet<String>>,
        shutdown: CancellationToken,
    ) {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..config.concurrency.max(1) {
            let this = self.clone();
            workers.spawn(async move {
                while let Some(key) = this.queue.next().await {
                    let outcome = this.reconcile(&key).await;
                    this.queue.done(&key, outcome);
                }
            });
        }
        for name in self.all_models() {
            self.queue.add(&name);
        }
        let follower = tokio::spawn(self.clone().follow_events(shutdown.clone()));
        let mut resync = tokio::time::interval(config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        let mut progress = tokio::time::interval(config.progress_interval);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(names) = file_changes.recv() => {
                    for name in names {
                        self.queue.add(&name);
                    }
                }
                _ = resync.tick() => self.resync().await,
                _ = progress.tick() => {
                    if self.anything_in_progress() {
                        self.resync().await;
                    }
                }
            }
        }
        info!("stopping: finishing in-flight work");
        self.queue.close();
        follower.abort();
        while workers.join_next().await.is_some() {}
        if let Err(e) = self.cx.store.flush().await {
            warn!(error = %e, "could not flush the store at shutdown");
        }
    }

    /// Whether any model is still moving: rolling out, scaling, failing tasks, or with
    /// replaced tasks still being counted (running above desired after a start-first
    /// update). Such models are followed with a relist every `progress_interval`.
    fn anything_in_progress(&self) -> bool {
        use crate::reconcile::status::Phase;
        self.status.any(|s| {
            matches!(
                s.phase,
                Phase::Pending | Phase::Progressing | Phase::Degraded
            ) || s.replicas_running != s.replicas_desired
        })
    }

    /// Lists the swarm's services, tasks (and nodes when needed) into the cache.
    pub async fn relist(&self) -> Result<(), SwarmError> {
        let listed = observe::relist(self.cx.swarm.as_ref(), &self.observed).await;
        self.docker
            .set_relist_error(listed.as_ref().err().map(ToString::to_string));
        listed?;
        self.report_network();
        self.metrics
            .last_resync
            .store(record::now_unix_seconds().to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Relists the swarm and queues every model (resync triggers respect backoffs).
    async fn resync(&self) {
        if let Err(e) = self.relist().await {
            warn!(error = %e, "relist failed");
        } else if self.lease.may_write() {
            self.collect_objects().await;
        }
        for name in self.all_models() {
            self.queue.add_resync(&name);
        }
    }

    /// Follows Docker's events, relisting after every (re)connection.
    async fn follow_events(self: Arc<Self>, shutdown: CancellationToken) {
        let mut state = WatchState::Connecting { attempt: 0 };
        loop {
            let (next, output) = tokio::select! {
                () = shutdown.cancelled() => return,
                stepped = observe::step(state, self.cx.swarm.as_ref(), &self.observed) => stepped,
            };
            state = next;
            match output {
                WatchOutput::Idle => {}
                // A node went down, came back, or was drained: its tasks move, and the
                // statuses say so only after a relist.
                WatchOutput::NodesChanged => self.resync().await,
                WatchOutput::Relisted => {
                    self.docker.set_relist_error(None);
                    self.report_network();
                    info!("watching docker events");
                    self.docker
                        .set(true, "connected, following events".to_string());
                    for name in self.all_models() {
                        self.queue.add(&name);
                    }
                }
                WatchOutput::ServiceChanged { id } => match self.refresh(&id).await {
                    Ok(Some(model)) => self.queue.add(&model),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(service = %id, error = %e, "cannot inspect service after event")
                    }
                },
                WatchOutput::Disconnected { error, retry_in } => {
                    self.docker
                        .set(false, format!("event stream lost: {error}"));
                    warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "lost docker's event stream; reconnecting");
                }
            }
        }
    }
}
