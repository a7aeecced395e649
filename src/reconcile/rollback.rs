//! Swarm's own rollbacks, told honestly.
//!
//! The default template rolls a failed update back (`failure_action: rollback`). Swarm
//! then puts the previous spec back and forgets the failed one (`PreviousSpec` is
//! cleared). Left alone, the reconciler would see the old spec as drift and send the
//! failed deployment again, and Swarm would roll it back again, for ever; or, worse, the
//! model would show `Available` on the old spec as if the deployment had worked.
//!
//! [`rolled_back`] is the rule, a pure function of the record being converged to and the
//! live services: a service that Swarm rolled back after that record was made, and that
//! does not run it, was rolled back from it. The model is then held as it runs and is
//! `Failed` with a message that says so and why, until a new deployment (a new record,
//! `mlmodel rollback` included) is made. Nothing needs remembering, so the rule holds
//! across restarts and failovers.

use crate::desired::record::DeploymentRecord;
use crate::desired::stack::labels;
use crate::reconcile::observe::Observed;
use crate::swarm::{ObservedService, UpdateState};
use std::fmt;

/// A deployment Swarm rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct RolledBack {
    /// The model.
    pub model: String,
    /// The deployment that was rolled back.
    pub deployment_id: String,
    /// The deployment the services run again, if they carry one.
    pub running: Option<String>,
    /// The service Swarm rolled back.
    pub service: String,
    /// Where the rollback stands.
    pub state: UpdateState,
    /// Why, as far as Swarm told: the last error of a task that left the service, or
    /// Swarm's own message.
    pub why: String,
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            model,
            deployment_id,
            running,
            service,
            state,
            why,
        } = self;
        let doing = match state {
            UpdateState::RollbackCompleted => "rolled back",
            UpdateState::RollbackPaused => "rolled back (the rollback paused)",
            _ => "being rolled back",
        };
        write!(
            f,
            "deployment {deployment_id} was {doing} by Swarm on service {service}: {why}; "
        )?;
        match running {
            Some(running) => write!(f, "it runs deployment {running} again")?,
            None => f.write_str("it runs its previous spec again")?,
        }
        write!(
            f,
            ". Deploy a fixed version, or run `mlmodel rollback {model}`, to go on"
        )
    }
}

/// Whether Swarm rolled `record` back on one of the model's `owned` services: the
/// service is in a rollback state, does not run `record`, and was last changed after
/// `record` was made (so the rollback came after it). `observed` gives the errors of the
/// tasks that left the service.
pub fn rolled_back(
    record: &DeploymentRecord,
    owned: &[&ObservedService],
    observed: &Observed,
) -> Option<RolledBack> {
    owned.iter().find_map(|service| {
        let state = service.update_state.clone().filter(|state| {
            matches!(
                state,
                UpdateState::RollbackStarted
                    | UpdateState::RollbackPaused
                    | UpdateState::RollbackCompleted
            )
        })?;
        let running = service.label(labels::DEPLOYMENT_ID);
        if running == Some(record.deployment_id.as_str()) {
            return None;
        }
        let changed = service
            .updated_at
            .as_deref()
            .and_then(crate::api::timefmt::parse_rfc3339)?;
        if record.deployment_time >= changed {
            // Recorded after the rollback: a new deployment to send.
            return None;
        }
        Some(RolledBack {
            model: record.spec.name.clone(),
            deployment_id: record.deployment_id.clone(),
            running: running.map(str::to_string),
            service: service.name().to_string(),
            state,
            why: why(service, observed),
        })
    })
}

/// The newest error of a task that left `service`, else Swarm's message.
fn why(service: &ObservedService, observed: &Observed) -> String {
    let task_error = observed
        .departed
        .get(&service.id)
        .into_iter()
        .flatten()
        .rev()
        .find(|departed| !departed.error.is_empty())
        .map(|departed| format!("its new tasks failed ({})", departed.error));
    task_error.unwrap_or_else(|| {
        let message = service
            .update_message
            .as_deref()
            .unwrap_or("no message from Swarm");
        format!("its new tasks failed (Swarm: {message})")
    })
}

#[cfg(test)]
mod tests;
