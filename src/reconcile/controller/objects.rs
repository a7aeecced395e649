//! Secrets and configs: ensuring the ones a write needs, and collecting the ones nothing
//! uses any more.
//!
//! A stack's objects are named after their content (see
//! [`crate::desired::stack::ObjectSpec`]), so an object mlmodel created never changes:
//! new content is a new object, and the old one is garbage once no service references
//! it. Collection runs after writes have moved services off objects (and once at
//! start), never in a resync that wrote nothing, so a converged swarm costs no calls.

use super::Controller;
use crate::desired::stack::{ObjectKind, ObjectSpec, labels, object_names, with_object_ids};
use crate::swarm::{ObjectRequest, SwarmError, UpdateState};
use bollard::models::ServiceSpec;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tracing::{debug, info, warn};

impl Controller {
    /// Creates `object` (an existing one of the same name is the same content), or looks
    /// up an external one, and keeps its id for the service writes that follow.
    pub(super) async fn ensure_object(
        &self,
        model: &str,
        object: &ObjectSpec,
    ) -> Result<(), SwarmError> {
        let swarm = &self.cx.swarm;
        let (kind, name) = (object.kind, object.name.as_str());
        let missing = |what: String| SwarmError::NotFound { what };
        let id = if object.external {
            swarm
                .object_id(kind, name)
                .await?
                .ok_or_else(|| missing(format!("external {} {name}", kind.word())))?
        } else {
            let request = match kind {
                ObjectKind::Secret => ObjectRequest::Secret(object.secret_spec()),
                ObjectKind::Config => ObjectRequest::Config(object.config_spec()),
            };
            match swarm.create_object(&request).await {
                Ok(id) => {
                    self.metrics.writes.fetch_add(1, Ordering::Relaxed);
                    info!(
                        model,
                        object = name,
                        "created {} {name} of model {model}",
                        kind.word()
                    );
                    id
                }
                Err(SwarmError::Conflict { .. }) => swarm
                    .object_id(kind, name)
                    .await?
                    .ok_or_else(|| missing(format!("{} {name}", kind.word())))?,
                Err(e) => return Err(e),
            }
        };
        self.observed.update(|o| {
            o.objects.insert((kind, name.to_string()), id);
        });
        Ok(())
    }

    /// `spec` with the ids of its secrets and configs, as ensured before it.
    pub(super) fn with_object_ids<'a>(
        &self,
        spec: &'a ServiceSpec,
    ) -> Result<Cow<'a, ServiceSpec>, SwarmError> {
        if object_names(spec).next().is_none() {
            return Ok(Cow::Borrowed(spec));
        }
        let observed = self.observed.get();
        with_object_ids(spec, |kind, name| {
            observed.objects.get(&(kind, name.to_string())).cloned()
        })
        .map(Cow::Owned)
        .map_err(|(kind, name)| SwarmError::NotFound {
            what: format!("{} {name}", kind.word()),
        })
    }

    /// Removes the secrets and configs this instance created that no service references,
    /// if a write since the last collection may have freed some; what cannot go yet is
    /// left for the next call.
    pub(super) async fn collect_objects(&self) {
        if !self.objects.take_collection() {
            return;
        }
        match self.collect_unused().await {
            Ok(true) => {}
            Ok(false) => self.objects.want_collection(),
            Err(e) => {
                warn!(error = %e, "could not collect unused secrets and configs; will retry");
                self.objects.want_collection();
            }
        }
    }

    /// One collection; `Ok(false)` if some object had to be left for later.
    async fn collect_unused(&self) -> Result<bool, SwarmError> {
        let observed = self.observed.get();
        if !observed.is_listed() {
            return Ok(false);
        }
        let instance = self.cx.instance.name.as_str();
        // A rollout in flight, or one that may roll back, can need its previous spec's
        // objects, which the listed specs do not show.
        let rolling = observed.services().values().any(|s| {
            s.label(labels::MANAGED_BY) == Some(instance)
                && matches!(
                    s.update_state,
                    Some(
                        UpdateState::Updating
                            | UpdateState::Paused
                            | UpdateState::RollbackStarted
                            | UpdateState::RollbackPaused
                    )
                )
        });
        if rolling {
            return Ok(false);
        }
        let used: HashSet<(ObjectKind, &str)> = observed
            .services()
            .values()
            .flat_map(|s| object_names(&s.spec))
            .collect();
        let mut done = true;
        for kind in [ObjectKind::Secret, ObjectKind::Config] {
            let owned = self
                .cx
                .swarm
                .list_objects(kind, (labels::MANAGED_BY, instance))
                .await?;
            for object in owned {
                if used.contains(&(kind, object.name.as_str())) {
                    continue;
                }
                if self.objects.is_held(kind, &object.name) {
                    done = false;
                    continue;
                }
                match self.cx.swarm.remove_object(kind, &object.id).await {
                    Ok(()) => {
                        self.metrics.writes.fetch_add(1, Ordering::Relaxed);
                        info!(object = %object.name, "removed {} {} because no service uses it", kind.word(), object.name);
                    }
                    // In use by a service created meanwhile, or by someone else's.
                    Err(SwarmError::Api {
                        status: 400,
                        message,
                        ..
                    }) => {
                        debug!(object = %object.name, %message, "left in place");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(done)
    }
}

/// The objects a plan being carried out needs, and whether a collection is due.
#[derive(Debug)]
pub(super) struct ObjectMemo {
    in_flight: Mutex<HashMap<(ObjectKind, String), usize>>,
    due: AtomicBool,
}

impl Default for ObjectMemo {
    /// A collection is due at start: a previous run may have left garbage.
    fn default() -> Self {
        Self {
            in_flight: Mutex::default(),
            due: AtomicBool::new(true),
        }
    }
}

impl ObjectMemo {
    /// Each change is one insert or remove: a poisoned map is consistent.
    fn lock(&self) -> MutexGuard<'_, HashMap<(ObjectKind, String), usize>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `objects` from collection until [`ObjectMemo::release`]: a plan that
    /// creates them is about to reference them.
    pub fn hold<'a>(&self, objects: impl Iterator<Item = (ObjectKind, &'a str)>) {
        let mut in_flight = self.lock();
        for (kind, name) in objects {
            *in_flight.entry((kind, name.to_string())).or_default() += 1;
        }
    }

    /// Ends a [`ObjectMemo::hold`] of the same objects.
    pub fn release<'a>(&self, objects: impl Iterator<Item = (ObjectKind, &'a str)>) {
        let mut in_flight = self.lock();
        for (kind, name) in objects {
            let key = (kind, name.to_string());
            if let Some(count) = in_flight.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    in_flight.remove(&key);
                }
            }
        }
    }

    /// Whether a plan being carried out needs the object.
    pub fn is_held(&self, kind: ObjectKind, name: &str) -> bool {
        self.lock().contains_key(&(kind, name.to_string()))
    }

    /// Asks for a collection at the next chance.
    pub fn want_collection(&self) {
        self.due.store(true, Ordering::Relaxed);
    }

    /// Whether a collection is due, clearing the request.
    pub fn take_collection(&self) -> bool {
        self.due.swap(false, Ordering::Relaxed)
    }
}
