//! The plan: what to do to make one model's live services match its desired stack.
//!
//! [`plan`] is a pure function of the desired stack and what was observed. It never sends
//! a write for a converged model: a service is updated only when its spec-hash label says
//! mlmodel sent a different spec, or when something mlmodel owns (replicas, image,
//! resources, environment, labels, networks) was changed by hand.

use crate::desired::stack::{NetworkSpec, ObjectKind, ObjectSpec, StackSpec, labels, object_refs};
use crate::swarm::ObservedService;
use bollard::models::ServiceSpec;
use std::collections::{BTreeSet, HashMap};

/// What should exist for a model.
#[derive(Debug, Clone, Copy)]
pub enum Intent<'a> {
    /// Converge to this stack.
    Apply(&'a StackSpec),
    /// Remove every service the model has (deleted, or manifest removed).
    Absent,
    /// Leave whatever runs alone (declaration in conflict, or unreadable for now).
    Hold,
}

/// What was observed for a model.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Live services owned by this instance and labelled with this model.
    pub owned: &'a [&'a ObservedService],
    /// Live services that carry a desired service's name but are not ours.
    pub foreign: &'a [&'a ObservedService],
    /// Known networks, name to id (live service specs name networks by id).
    pub network_ids: &'a HashMap<String, String>,
    /// Services an earlier plan found in sync ([`Plan::in_sync`]): compared again only
    /// once the service, the desired spec or the network ids change.
    pub in_sync: &'a [InSync],
}

/// That a live service, at one version index, matched one desired spec under one set of
/// network ids: a hash of those, so that a resync need not compare a converged service
/// again (Docker bumps the version index on every change to a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InSync(u64);

impl InSync {
    fn of(
        live: &ObservedService,
        desired: &ServiceSpec,
        network_ids: &HashMap<String, String>,
    ) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        live.id.hash(&mut hasher);
        live.version.hash(&mut hasher);
        desired
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::SPEC_HASH))
            .hash(&mut hasher);
        for target in network_targets(desired) {
            network_ids.get(target).hash(&mut hasher);
        }
        Self(hasher.finish())
    }
}

/// The network names (or ids) a spec attaches to.
fn network_targets(spec: &ServiceSpec) -> impl Iterator<Item = &str> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.networks.as_ref())
        .or(spec.networks.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| n.target.as_deref())
}

/// One write to Docker.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a network the stack declares.
    CreateNetwork {
        /// The network.
        network: NetworkSpec,
    },
    /// Create a secret or config the stack's services need (or, for an external one,
    /// look it up), and learn its id.
    EnsureObject {
        /// The object.
        object: ObjectSpec,
    },
    /// Create a missing service.
    CreateService {
        /// The spec to send.
        spec: ServiceSpec,
    },
    /// Replace a live service's spec.
    UpdateService {
        /// Service id.
        id: String,
        /// Version index read with it.
        version: u64,
        /// The spec to send.
        spec: ServiceSpec,
        /// Why, in words for the log.
        reason: String,
    },
    /// Remove a service.
    RemoveService {
        /// Service id.
        id: String,
        /// Service name, for the log.
        name: String,
        /// Why, in words for the log.
        reason: String,
    },
}

impl Action {
    /// The service or network the action is about.
    pub fn target(&self) -> &str {
        match self {
            Self::CreateNetwork { network } => &network.name,
            Self::EnsureObject { object } => &object.name,
            Self::CreateService { spec } | Self::UpdateService { spec, .. } => {
                spec.name.as_deref().unwrap_or_default()
            }
            Self::RemoveService { name, .. } => name,
        }
    }
}

/// The actions for one model and the services it could not touch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Writes, in the order to perform them (networks and objects first).
    pub actions: Vec<Action>,
    /// The desired services whose names are taken by services mlmodel does not own.
    pub conflicts: Vec<NameTaken>,
    /// The live services found in sync, to pass to the next plan.
    pub in_sync: Vec<InSync>,
}

/// A desired service whose name a service this instance does not own already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTaken {
    /// The service name.
    pub service: String,
    /// The mlmodel instance that owns the live service, if any does.
    pub owner: Option<String>,
}

impl std::fmt::Display for NameTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let service = &self.service;
        match &self.owner {
            Some(owner) => write!(
                f,
                "service {service} already exists and is owned by mlmodel instance {owner:?}, not this one: remove or rename it, or rename the model"
            ),
            None => write!(
                f,
                "service {service} already exists and is owned by no mlmodel instance, not this one: remove or rename it, or rename the model"
            ),
        }
    }
}

/// Decides what to do for one model.
pub fn plan(intent: Intent, observed: Observation) -> Plan {
    let mut result = Plan::default();
    let stack = match intent {
        Intent::Hold => return result,
        Intent::Absent => {
            for service in observed.owned {
                result
                    .actions
                    .push(remove(service, "the model is no longer declared"));
            }
            return result;
        }
        Intent::Apply(stack) => stack,
    };
    for network in &stack.networks {
        if !observed.network_ids.contains_key(&network.name) {
            result.actions.push(Action::CreateNetwork {
                network: network.clone(),
            });
        }
    }
    let desired_names: BTreeSet<&str> = stack
        .services
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    for spec in &stack.services {
        let name = spec.name.as_deref().unwrap_or_default();
        if let Some(foreign) = observed.foreign.iter().find(|s| s.name() == name) {
            result.conflicts.push(NameTaken {
                service: name.to_string(),
                owner: foreign.label(labels::MANAGED_BY).map(str::to_string),
            });
            continue;
        }
        match observed.owned.iter().find(|s| s.name() == name) {
            None => result
                .actions
                .push(Action::CreateService { spec: spec.clone() }),
            Some(live) => {
                let checked = InSync::of(live, spec, observed.network_ids);
                if observed.in_sync.contains(&checked) {
                    result.in_sync.push(checked);
                } else if let Some(reason) = drift(live, spec, observed.network_ids) {
                    result.actions.push(Action::UpdateService {
                        id: live.id.clone(),
                        version: live.version,
                        spec: spec.clone(),
                        reason,
                    });
                } else {
                    result.in_sync.push(checked);
                }
            }
        }
    }
    ensure_objects_first(stack, &mut result.actions);
    for live in observed.owned {
        if !desired_names.contains(live.name()) {
            result
                .actions
                .push(remove(live, "the model's template no longer declares it"));
        }
    }
    result
}

/// Puts an [`Action::EnsureObject`] for each of the stack's secrets and configs after
/// the network creates, if a service is created or updated: the services reference the
/// objects by id. Ids are learnt anew for every write, so an object removed by hand is
/// recreated rather than referenced.
fn ensure_objects_first(stack: &StackSpec, actions: &mut Vec<Action>) {
    let writes_services = actions.iter().any(|a| {
        matches!(
            a,
            Action::CreateService { .. } | Action::UpdateService { .. }
        )
    });
    if !writes_services {
        return;
    }
    let at = actions
        .iter()
        .take_while(|a| matches!(a, Action::CreateNetwork { .. }))
        .count();
    let ensure = stack.objects.iter().map(|object| Action::EnsureObject {
        object: object.clone(),
    });
    actions.splice(at..at, ensure);
}

fn remove(service: &ObservedService, reason: &str) -> Action {
    Action::RemoveService {
        id: service.id.clone(),
        name: service.name().to_string(),
        reason: reason.to_string(),
    }
}

/// Why a live service differs from the desired spec on what mlmodel owns; `None` if not.
pub fn drift(
    live: &ObservedService,
    desired: &ServiceSpec,
    network_ids: &HashMap<String, String>,
) -> Option<String> {
    let desired_hash = desired
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::SPEC_HASH));
    if live.label(labels::SPEC_HASH) != desired_hash.map(String::as_str) {
        let deployment = desired
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::DEPLOYMENT_ID))
            .map_or("", String::as_str);
        return Some(format!("its spec changed (deployment {deployment})"));
    }
    let want = Fingerprint::of(desired, Some(network_ids));
    let have = Fingerprint::of(&live.spec, None);
    want.differences(&have)
        .map(|what| format!("{what} changed by hand"))
}

/// The parts of a spec that can be edited by hand and that mlmodel restores, borrowed
/// from the spec: a resync projects every live service, so copying its labels (one holds
/// the whole record) would cost more than the comparison.
#[derive(Debug, PartialEq)]
struct Fingerprint<'a> {
    replicas: Option<i64>,
    image: &'a str,
    resources: [Option<i64>; 5],
    env: Vec<&'a str>,
    service_labels: Labels<'a>,
    container_labels: Labels<'a>,
    networks: BTreeSet<&'a str>,
    objects: BTreeSet<(ObjectKind, &'a str, &'a str)>,
}

/// A spec's labels, compared by content; no map and an empty one are alike.
#[derive(Debug)]
struct Labels<'a>(Option<&'a HashMap<String, String>>);

impl PartialEq for Labels<'_> {
    fn eq(&self, other: &Self) -> bool {
        let present = |labels: &Self| labels.0.filter(|map| !map.is_empty());
        present(self) == present(other)
    }
}

impl<'a> Fingerprint<'a> {
    /// Projects a spec; with `network_ids`, network names are translated to ids the way
    /// Docker stores them.
    fn of(spec: &'a ServiceSpec, network_ids: Option<&'a HashMap<String, String>>) -> Self {
        let task = spec.task_template.as_ref();
        let container = task.and_then(|t| t.container_spec.as_ref());
        let resources = task.and_then(|t| t.resources.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        let reservations = resources.and_then(|r| r.reservations.as_ref());
        let networks = network_targets(spec)
            .map(|target| {
                network_ids
                    .and_then(|ids| ids.get(target))
                    .map_or(target, String::as_str)
            })
            .collect();
        let mut env: Vec<&str> = container
            .and_then(|c| c.env.as_ref())
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        env.sort_unstable();
        Self {
            replicas: spec
                .mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .map(|r| r.replicas.unwrap_or(1)),
            image: container
                .and_then(|c| c.image.as_deref())
                .unwrap_or_default(),
            resources: [
                limits.and_then(|l| l.nano_cpus),
                limits.and_then(|l| l.memory_bytes),
                limits.and_then(|l| l.pids).filter(|p| *p != 0),
                reservations.and_then(|r| r.nano_cpus),
                reservations.and_then(|r| r.memory_bytes),
            ]
            .map(|v| v.filter(|n| *n != 0)),
            env,
            service_labels: Labels(spec.labels.as_ref()),
            container_labels: Labels(container.and_then(|c| c.labels.as_ref())),
            networks,
            objects: object_refs(spec)
                .map(|r| (r.kind, r.name, r.target))
                .collect(),
        }
    }

    /// Names the first kind of difference between the desired (`self`) and live prints.
    fn differences(&self, live: &Self) -> Option<&'static str> {
        if self.replicas != live.replicas {
            return Some("replicas");
        }
        if !same_image(self.image, live.image) {
            return Some("image");
        }
        if self.resources != live.resources {
            return Some("resources");
        }
        if self.env != live.env {
            return Some("environment");
        }
        if self.service_labels != live.service_labels {
            return Some("service labels");
        }
        if self.container_labels != live.container_labels {
            return Some("container labels");
        }
        if self.networks != live.networks {
            return Some("networks");
        }
        if self.objects != live.objects {
            return Some("secrets or configs");
        }
        None
    }
}

/// Images match when equal, or when the live one is the desired one pinned to a digest
/// (an untagged one as `:latest`, as pinning writes it).
fn same_image(desired: &str, live: &str) -> bool {
    desired == live
        || (!desired.contains('@')
            && live.split_once('@').is_some_and(|(running, _)| {
                running == desired || running == crate::desired::naming::with_tag(desired)
            }))
}

#[cfg(test)]
mod tests;
