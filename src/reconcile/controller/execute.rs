//! Carrying out a plan's actions through the Swarm trait, one logged line per write.

use super::Controller;
use crate::reconcile::plan::{Action, drift};
use crate::swarm::{NetworkRequest, SwarmError};
use std::sync::atomic::Ordering;
use tracing::info;

/// How many times an update is re-read and retried after "update out of sequence".
const OUT_OF_SEQUENCE_RETRIES: usize = 3;

impl Controller {
    /// Performs one action, then refreshes the observed cache for what it touched.
    pub(super) async fn execute(&self, model: &str, action: &Action) -> Result<(), SwarmError> {
        match action {
            Action::CreateNetwork { network } => {
                let request = NetworkRequest {
                    name: network.name.clone(),
                    driver: network.driver.clone(),
                    attachable: network.attachable,
                    labels: network.labels.clone().into_iter().collect(),
                    subnet: None,
                };
                let id = match self.cx.swarm.create_network(&request).await {
                    Ok(id) => id,
                    Err(SwarmError::Conflict { .. }) => self
                        .cx
                        .swarm
                        .network_id(&network.name)
                        .await?
                        .unwrap_or_default(),
                    Err(e) => return Err(e),
                };
                info!(model, network = %network.name, "created network");
                self.observed.update(|o| {
                    o.networks.insert(network.name.clone(), id);
                });
            }
            Action::EnsureObject { object } => self.ensure_object(model, object).await?,
            Action::CreateService { spec } => {
                let name = spec.name.as_deref().unwrap_or_default();
                let spec = self.pinned(model, self.with_object_ids(spec)?, None).await;
                match self.cx.swarm.create_service(&spec).await {
                    Ok(id) => {
                        self.metrics.writes.fetch_add(1, Ordering::Relaxed);
                        info!(
                            model,
                            service = name,
                            action = "created",
                            reason = "it was missing",
                            "created service {name} of model {model} because it was missing"
                        );
                        self.refresh(&id).await?;
                    }
                    Err(SwarmError::Conflict { .. }) => {
                        // The cache was behind: the name exists. Look again and reconcile anew.
                        self.refresh(name).await?;
                        self.queue.add(model);
                    }
                    Err(e) => return Err(e),
                }
            }
            Action::UpdateService {
                id,
                version,
                spec,
                reason,
            } => {
                self.update_with_retries(model, id, *version, spec, reason)
                    .await?
            }
            Action::RemoveService { id, name, reason } => {
                self.cx.swarm.remove_service(id).await?;
                self.metrics.writes.fetch_add(1, Ordering::Relaxed);
                info!(model, service = %name, action = "removed", reason = %reason, "removed service {name} of model {model} because {reason}");
                self.observed.update(|o| o.remove_service(id));
            }
        }
        Ok(())
    }

    /// Sends an update; on "out of sequence" re-reads the service and, if it still
    /// differs, retries with the fresh version index.
    async fn update_with_retries(
        &self,
        model: &str,
        id: &str,
        version: u64,
        spec: &bollard::models::ServiceSpec,
        reason: &str,
    ) -> Result<(), SwarmError> {
        let name = spec.name.as_deref().unwrap_or_default();
        let live = self.observed.get().services().get(id).cloned();
        let sent = self
            .pinned(model, self.with_object_ids(spec)?, live.as_deref())
            .await;
        let mut version = version;
        let mut attempt = 0;
        loop {
            match self.cx.swarm.update_service(id, version, &sent).await {
                Ok(()) => {
                    self.metrics.writes.fetch_add(1, Ordering::Relaxed);
                    info!(
                        model,
                        service = name,
                        action = "updated",
                        reason,
                        "updated service {name} of model {model} because {reason}"
                    );
                    self.refresh(id).await?;
                    return Ok(());
                }
                Err(SwarmError::OutOfSequence { .. }) if attempt < OUT_OF_SEQUENCE_RETRIES => {
                    attempt += 1;
                    self.refresh(id).await?;
                    let observed = self.observed.get();
                    let Some(live) = observed.services().get(id) else {
                        // Removed meanwhile: the next reconcile recreates it.
                        self.queue.add(model);
                        return Ok(());
                    };
                    if drift(live, spec, &observed.networks).is_none() {
                        return Ok(());
                    }
                    version = live.version;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
