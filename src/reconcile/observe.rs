//! The observed side: a cache of live services, tasks, nodes and networks, and the loop
//! that keeps it fresh from Docker's event stream and periodic relists.
//!
//! The loop is an explicit state machine ([`WatchState`] and [`step`]): connect to the
//! event stream, relist everything (so nothing that happened while disconnected is
//! missed), then follow events; when the stream drops, back off and start over.

use crate::desired::stack::{ObjectKind, labels};
use crate::swarm::{
    ListedService, ListedTask, ObservedNode, ObservedService, ObservedTask, Swarm, SwarmError,
    SwarmEvent, image_of, runs_template,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything known about the live swarm, as of the last list or event.
///
/// Published as shared snapshots (see [`ObservedCache`]). Its services and tasks are
/// persistent maps: a copy shares every entry with its original, so publishing the
/// change one Docker event makes costs a few map nodes, not a copy of every service
/// (which, once per event, made the events of N new services cost N² at start).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Services by id; changed through [`Observed::put_service`] and
    /// [`Observed::remove_service`], which keep the index in step.
    services: Services,
    /// Current tasks (desired running, or ready to restart) by service id.
    pub tasks: Tasks,
    /// Nodes by id: cleared by a node event, listed again at the next relist.
    pub nodes: HashMap<String, ObservedNode>,
    /// Tasks that left a service's current tasks at a recent relist (moved, replaced,
    /// scaled away), by service id, newest last; see [`Departed`].
    pub departed: HashMap<String, Vec<Departed>>,
    /// Nodes that could not pull a service's image, by service id; see [`Unfit`].
    pub unfit: HashMap<String, Unfit>,
    /// Network ids by name.
    pub networks: HashMap<String, String>,
    /// Secret and config ids by kind and name, as learnt when ensuring them.
    pub objects: HashMap<(ObjectKind, String), String>,
    /// When services and tasks were last listed (unix seconds); 0 before the first list.
    pub listed_at: f64,
    /// Services by owner and by name.
    index: Index,
}
/// A task that left its service's current tasks, and where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Departed {
    /// Its slot (replicated services).
    pub slot: Option<i64>,
    /// The node it ran on.
    pub node_id: String,
    /// Why that node takes no new tasks when the task left ("down", "drained"), if so.
    pub node_unavailable: Option<String>,
    /// Swarm's error for the task when it was last seen ("" if none): why a rolled-back
    /// update failed, once its tasks are gone.
    pub error: String,
    /// When it was seen gone (unix seconds).
    pub at: f64,
}

/// How long a departed task is remembered.
pub const DEPARTED_MEMORY_SECS: f64 = 600.0;
/// How many departed tasks are remembered per service.
const DEPARTED_PER_SERVICE: usize = 32;

/// The nodes where a service's tasks were rejected because the image could not be had,
/// for the image its template runs now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unfit {
    /// The image.
    pub image: String,
    /// Node ids, with Swarm's error.
    pub nodes: std::collections::BTreeMap<String, String>,
}

/// Services by owner and by name, so that reconciling one model reads its own services
/// instead of scanning every live one (a resync of N models would otherwise cost N²).
/// It holds the services themselves (shared with [`Observed::services`]), not their ids,
/// so a lookup is one map walk. Kept in step with the services one change at a time.
#[derive(Debug, Clone, Default)]
struct Index {
    /// Instance, then model, to the services so labelled, sorted by name (then id).
    owned: PersistentMap<String, PersistentMap<String, Vec<Arc<ObservedService>>>>,
    /// Service name to services (more than one only while a replacement is half seen).
    named: PersistentMap<String, Vec<Arc<ObservedService>>>,
}

impl Index {
    fn build(services: &Services) -> Self {
        let mut index = Index::default();
        for service in services.values() {
            index.add(service);
        }
        index
    }

    fn add(&mut self, service: &Arc<ObservedService>) {
        self.named
            .entry(service.name().to_string())
            .or_default()
            .push(service.clone());
        if let Some((instance, model)) = owner(service) {
            let owned = self
                .owned
                .entry(instance.to_string())
                .or_default()
                .entry(model.to_string())
                .or_default();
            let key = (service.name(), service.id.as_str());
            let at = owned.partition_point(|s| (s.name(), s.id.as_str()) <= key);
            owned.insert(at, service.clone());
        }
    }

    fn forget(&mut self, service: &ObservedService) {
        if let Some(named) = self.named.get_mut(service.name()) {
            named.retain(|s| s.id != service.id);
            if named.is_empty() {
                self.named.remove(service.name());
            }
        }
        if let Some((instance, model)) = owner(service)
            && let Some(models) = self.owned.get_mut(instance)
        {
            if let Some(owned) = models.get_mut(model) {
                owned.retain(|s| s.id != service.id);
                if owned.is_empty() {
                    models.remove(model);
                }
            }
            if models.is_empty() {
                self.owned.remove(instance);
            }
        }
    }
}

/// The instance and model a service is labelled with, if both.
fn owner(service: &ObservedService) -> Option<(&str, &str)> {
    Some((
        service.label(labels::MANAGED_BY)?,
        service.label(labels::NAME)?,
    ))
}

impl Observed {
    /// Whether the swarm was listed at least once (before that, nothing is known).
    pub fn is_listed(&self) -> bool {
        self.listed_at > 0.0
    }

    /// Services by id.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Adds a service, or replaces the one with its id.
    pub fn put_service(&mut self, service: Arc<ObservedService>) {
        if let Some(old) = self.services.insert(service.id.clone(), service.clone()) {
            self.index.forget(&old);
        }
        self.index.add(&service);
    }

    /// Forgets a service and its tasks.
    pub fn remove_service(&mut self, id: &str) {
        if let Some(old) = self.services.remove(id) {
            self.index.forget(&old);
        }
        self.tasks.remove(id);
    }

    /// Services owned by `instance` and labelled with `model`, sorted by name (then id).
    pub fn owned_by<'a>(&'a self, instance: &str, model: &str) -> Vec<&'a ObservedService> {
        let owned = self.index.owned.get(instance).and_then(|m| m.get(model));
        owned.into_iter().flatten().map(Arc::as_ref).collect()
    }

    /// The services named in `names` other than `owned` (a model's own services, from
    /// [`Observed::owned_by`]): those a model's services would collide with. Owned
    /// services are left out by pointer, without reading labels.
    pub fn named_other_than<'a>(
        &'a self,
        owned: &[&ObservedService],
        names: &[&str],
    ) -> Vec<&'a ObservedService> {
        self.named_where(names, |s| !owned.iter().any(|o| std::ptr::eq(*o, s)))
    }

    /// The services named in `names` that pass `keep`.
    fn named_where<'a>(
        &'a self,
        names: &[&str],
        keep: impl Fn(&ObservedService) -> bool,
    ) -> Vec<&'a ObservedService> {
        names
            .iter()
            .filter_map(|name| self.index.named.get(*name))
            .flatten()
            .map(Arc::as_ref)
            .filter(|s| keep(s))
            .collect()
    }

    /// Every model name this instance owns services of, in no particular order.
    pub fn models<'a>(&'a self, instance: &str) -> Vec<&'a str> {
        self.index
            .owned
            .get(instance)
            .map(|models| models.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The model a service belongs to, if it is this instance's.
    pub fn model_of(&self, instance: &str, service_id: &str) -> Option<String> {
        let service = self.services.get(service_id)?;
        (service.label(labels::MANAGED_BY) == Some(instance))
            .then(|| service.label(labels::NAME).map(String::from))
            .flatten()
    }

    /// Tasks of the given services.
    pub fn tasks_of<'a>(&'a self, services: &[&ObservedService]) -> Vec<&'a ObservedTask> {
        services
            .iter()
            .filter_map(|s| self.tasks.get(&s.id))
            .flat_map(|tasks| tasks.iter())
            .collect()
    }
}

/// The shared observed cache: one writer at a time, cheap cloned reads.
#[derive(Default)]
pub struct ObservedCache {
    inner: RwLock<Arc<Observed>>,
}

impl ObservedCache {
    /// A snapshot of what is known now.
    pub fn get(&self) -> Arc<Observed> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `change` to a copy and publishes it.
    pub fn update(&self, change: impl FnOnce(&mut Observed)) {
        self.replace(|current| {
            let mut next = current.clone();
            change(&mut next);
            next
        });
    }

    /// Publishes what `build` makes of the current snapshot; cheaper than
    /// [`ObservedCache::update`] when most of the snapshot is replaced anyway.
    pub fn replace(&self, build: impl FnOnce(&Observed) -> Observed) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let next = build(&guard);
        *guard = Arc::new(next);
    }
}

/// Lists services, tasks and (when unknown) nodes: the three calls of a full relist.
pub async fn relist(swarm: &dyn Swarm, cache: &ObservedCache) -> Result<(), SwarmError> {
    let listed = swarm.list_services().await?;
    let tasks = swarm.list_tasks().await?;
    let unknown_node = {
        let known = cache.get();
        known.nodes.is_empty()
            || tasks
                .iter()
                .filter_map(|t| t.task.node_id.as_ref())
                .any(|n| !known.nodes.contains_key(n))
    };
    let nodes: Option<Vec<ObservedNode>> = if unknown_node {
        Some(swarm.list_nodes().await?)
    } else {
        None
    };
    let now = crate::desired::record::now_unix_seconds();
    let old = cache.get();
    let nodes: HashMap<String, ObservedNode> = match nodes {
        Some(nodes) => nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
        None => old.nodes.clone(),
    };
    let (services, unchanged) = merge_services(&old, listed)?;
    let by_service = merge_tasks(&old, &services, &unchanged, tasks)?;
    let departed = departed(&old, &services, &by_service, &nodes, now);
    let unfit = unfit(&old, &services, &by_service);
    let index = match unchanged {
        Unchanged::All => old.index.clone(),
        Unchanged::Some(_) => Index::build(&services),
    };
    drop(unchanged);
    drop(old);
    let tasks = by_service
        .into_iter()
        .map(|(id, tasks)| (id, Arc::from(tasks)))
        .collect();
    // Replaced, not updated: copying the old services only to drop them costs as much
    // as the list itself.
    cache.replace(|current| Observed {
        services,
        tasks,
        nodes,
        departed,
        unfit,
        networks: current.networks.clone(),
        objects: current.objects.clone(),
        listed_at: now,
        index,
    });
    Ok(())
}

/// Services by id (see [`Observed::services`]).
pub type Services = PersistentMap<String, Arc<ObservedService>>;

/// Current tasks by service id (see [`Observed::tasks`]).
pub type Tasks = PersistentMap<String, Arc<[ObservedTask]>>;

/// A hash map whose copies share their entries (a hash array mapped trie): copying one
/// is constant time, and changing a copy copies only the path to the changed entry.
pub type PersistentMap<K, V> =
    imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

/// The maps a resync looks every model up in: keyed by ids and names mlmodel and Docker
/// made, hashed with foldhash rather than SipHash (a fifth of a resync's hashing time;
/// foldhash's seed is random per process, so keys cannot be chosen to collide).
pub type FastMap<K, V> = foldhash::HashMap<K, V>;

/// The services a relist found as they were cached.
enum Unchanged<'a> {
    /// Every one, and no other service: the cached map is kept as it is.
    All,
    /// These ids.
    Some(foldhash::HashSet<&'a str>),
}

impl Unchanged<'_> {
    fn contains(&self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Some(ids) => ids.contains(id),
        }
    }
}

/// The listed services, each reusing its cached entry when unchanged; and which were
/// unchanged.
///
/// A service listed at the version index it had is unchanged (Docker bumps the index on
/// every change): the old entry is kept, and with it what was derived from it. Only the
/// specs of new versions are read. When every service is unchanged (a converged swarm,
/// the usual resync), the old map is kept whole rather than built again.
fn merge_services(
    old: &Observed,
    listed: Vec<ListedService>,
) -> Result<(Services, Unchanged<'_>), SwarmError> {
    let as_cached = listed.len() == old.services.len()
        && listed.iter().all(|service| {
            old.services
                .get(&service.id)
                .is_some_and(|cached| service.is_unchanged(cached))
        });
    if as_cached {
        return Ok((old.services.clone(), Unchanged::All));
    }
    let mut unchanged = foldhash::HashSet::default();
    let mut services = Services::default();
    for service in listed {
        let entry = match old.services.get(&service.id) {
            Some(cached) if service.is_unchanged(cached) => {
                unchanged.insert(cached.id.as_str());
                cached.clone()
            }
            _ => Arc::new(service.decode()?),
        };
        services.insert(entry.id.clone(), entry);
    }
    Ok((services, Unchanged::Some(unchanged)))
}

/// The listed tasks by service id, each with its image and whether it is up to date.
///
/// A task's spec never changes: under an unchanged service, a task found up to date
/// still is, and keeps its image without its spec being read. (Not so for "not up to
/// date": a re-read service may have marked its tasks so without comparing, see
/// `outdate_tasks`.) Otherwise its spec is read, for its image and to compare with its
/// service's template.
fn merge_tasks(
    old: &Observed,
    services: &Services,
    unchanged: &Unchanged<'_>,
    tasks: Vec<ListedTask>,
) -> Result<HashMap<String, Vec<ObservedTask>>, SwarmError> {
    let mut by_service: HashMap<String, Vec<ObservedTask>> = HashMap::new();
    for ListedTask { mut task, spec } in tasks {
        let known = old
            .tasks
            .get(&task.service_id)
            .and_then(|listed| listed.iter().find(|t| t.id == task.id));
        match known {
            Some(known) if unchanged.contains(&task.service_id) && known.up_to_date => {
                task.image = known.image.clone();
                task.up_to_date = true;
            }
            _ => {
                let spec = spec.decode(&format!("the listed spec of task {}", task.id))?;
                task.image = image_of(&spec);
                task.up_to_date = services
                    .get(&task.service_id)
                    .and_then(|service| service.spec.task_template.as_ref())
                    .is_some_and(|template| runs_template(&spec, template));
            }
        }
        by_service
            .entry(task.service_id.clone())
            .or_default()
            .push(task);
    }
    Ok(by_service)
}

/// The departed tasks to remember after a relist: those remembered and still recent,
/// and each task of a listed service that was current before and is not now.
fn departed(
    old: &Observed,
    services: &Services,
    now_tasks: &HashMap<String, Vec<ObservedTask>>,
    nodes: &HashMap<String, ObservedNode>,
    now: f64,
) -> HashMap<String, Vec<Departed>> {
    let mut departed: HashMap<String, Vec<Departed>> = HashMap::new();
    for (service, gone) in &old.departed {
        if !services.contains_key(service) {
            continue;
        }
        let recent: Vec<Departed> = gone
            .iter()
            .filter(|d| now - d.at < DEPARTED_MEMORY_SECS)
            .cloned()
            .collect();
        if !recent.is_empty() {
            departed.insert(service.clone(), recent);
        }
    }
    for (service, before) in &old.tasks {
        if !services.contains_key(service) {
            continue;
        }
        // A service has a task or two: a scan, not a set built per service per relist.
        let current = now_tasks.get(service).map_or(&[][..], Vec::as_slice);
        for task in before
            .iter()
            .filter(|t| !current.iter().any(|c| c.id == t.id))
        {
            let Some(node_id) = task.node_id.clone() else {
                continue;
            };
            let gone = departed.entry(service.clone()).or_default();
            gone.push(Departed {
                slot: task.slot,
                node_unavailable: nodes.get(&node_id).and_then(ObservedNode::unavailable),
                node_id,
                error: task.error.clone(),
                at: now,
            });
            if gone.len() > DEPARTED_PER_SERVICE {
                gone.remove(0);
            }
        }
    }
    departed
}

/// The nodes where each service's current image could not be had: remembered across
/// relists while the image stays, and added to from rejected tasks.
fn unfit(
    old: &Observed,
    services: &Services,
    now_tasks: &HashMap<String, Vec<ObservedTask>>,
) -> HashMap<String, Unfit> {
    let refused =
        |task: &ObservedTask| task.state.is_failure() && task.error.starts_with("No such image");
    // Only services remembered, or with a task refused now: a relist of converged
    // models reads no image.
    let candidates: HashSet<&String> = old
        .unfit
        .keys()
        .chain(
            now_tasks
                .iter()
                .filter(|(_, tasks)| tasks.iter().any(refused))
                .map(|(id, _)| id),
        )
        .collect();
    let mut unfit = HashMap::new();
    for id in candidates {
        let Some(service) = services.get(id) else {
            continue;
        };
        let image = service
            .spec
            .task_template
            .as_ref()
            .map(image_of)
            .unwrap_or_default();
        let mut entry = old
            .unfit
            .get(id)
            .filter(|u| u.image == image)
            .cloned()
            .unwrap_or_else(|| Unfit {
                image: image.clone(),
                nodes: Default::default(),
            });
        for task in now_tasks.get(id).into_iter().flatten() {
            if refused(task)
                && task.image == image
                && let Some(node) = &task.node_id
            {
                entry.nodes.insert(node.clone(), task.error.clone());
            }
        }
        if !entry.nodes.is_empty() {
            unfit.insert(id.clone(), entry);
        }
    }
    unfit
}

/// Refreshes one service after an event about it; returns the model it belongs to.
pub async fn refresh_service(
    swarm: &dyn Swarm,
    cache: &ObservedCache,
    instance: &str,
    id: &str,
) -> Result<Option<String>, SwarmError> {
    let before = cache.get().model_of(instance, id);
    let inspected = swarm.inspect_service(id).await?;
    let after = inspected.as_ref().and_then(|s| {
        (s.label(labels::MANAGED_BY) == Some(instance))
            .then(|| s.label(labels::NAME).map(String::from))
            .flatten()
    });
    cache.update(|observed| match inspected {
        Some(mut service) => {
            // Inspect carries no replica status: keep the last listed running count, and
            // take the desired count from the spec until the next list says otherwise.
            let old = observed.services.get(&service.id);
            service.running_tasks = old.map_or(0, |o| o.running_tasks);
            service.desired_tasks = replicas(&service)
                .or(old.map(|o| o.desired_tasks))
                .unwrap_or(0);
            // A new template leaves the listed tasks behind until the next list shows
            // which ones Swarm has replaced.
            if old.is_some_and(|o| o.spec.task_template != service.spec.task_template) {
                outdate_tasks(&mut observed.tasks, &service.id);
            }
            observed.put_service(Arc::new(service));
        }
        None => observed.remove_service(id),
    });
    Ok(after.or(before))
}

/// Marks every cached task of a service as not up to date.
fn outdate_tasks(tasks: &mut Tasks, service_id: &str) {
    if let Some(listed) = tasks.get_mut(service_id) {
        let outdated: Vec<ObservedTask> = listed
            .iter()
            .map(|task| ObservedTask {
                up_to_date: false,
                ..task.clone()
            })
            .collect();
        *listed = Arc::from(outdated);
    }
}

/// The replica count a replicated service's spec asks for.
fn replicas(service: &ObservedService) -> Option<u64> {
    let replicated = service.spec.mode.as_ref()?.replicated.as_ref()?;
    Some(replicated.replicas.unwrap_or(1).max(0) as u64)
}

/// Where the event-following loop stands.
pub enum WatchState {
    /// About to open the event stream (after `attempt` consecutive failures).
    Connecting {
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Stream open: relist everything before trusting events.
    Relisting {
        /// The open stream.
        stream: BoxStream<'static, Result<SwarmEvent, SwarmError>>,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Following events.
    Watching {
        /// The open stream.
        stream: BoxStream<'static, Result<SwarmEvent, SwarmError>>,
    },
    /// Waiting before reconnecting.
    Backoff {
        /// Consecutive failures so far.
        attempt: u32,
    },
}

/// What one step of the loop produced, for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutput {
    /// Nothing to report.
    Idle,
    /// A full relist finished: reconcile every model.
    Relisted,
    /// A service event: refresh it and reconcile its model.
    ServiceChanged {
        /// Service id.
        id: String,
    },
    /// Nodes changed: refresh the node names at the next relist.
    NodesChanged,
    /// Lost the connection; reconnecting after the given delay.
    Disconnected {
        /// Why.
        error: String,
        /// How long until the next try.
        retry_in: Duration,
    },
}

/// Delay before reconnecting after `attempt` consecutive failures: 0.5 s doubling to 30 s.
pub fn reconnect_delay(attempt: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
        .min(Duration::from_secs(30))
}

/// Advances the event loop by one state.
pub async fn step(
    state: WatchState,
    swarm: &dyn Swarm,
    cache: &ObservedCache,
) -> (WatchState, WatchOutput) {
    match state {
        WatchState::Connecting { attempt } => {
            let stream = swarm.events();
            (WatchState::Relisting { stream, attempt }, WatchOutput::Idle)
        }
        WatchState::Relisting { stream, attempt } => match relist(swarm, cache).await {
            Ok(()) => (WatchState::Watching { stream }, WatchOutput::Relisted),
            Err(error) => disconnected(attempt + 1, error.to_string()),
        },
        WatchState::Watching { mut stream } => match stream.next().await {
            Some(Ok(SwarmEvent::Service { id, .. })) => (
                WatchState::Watching { stream },
                WatchOutput::ServiceChanged { id },
            ),
            Some(Ok(SwarmEvent::Node { .. })) => {
                cache.update(|o| o.nodes.clear());
                (WatchState::Watching { stream }, WatchOutput::NodesChanged)
            }
            Some(Err(error)) => disconnected(1, error.to_string()),
            None => disconnected(1, "the event stream ended".to_string()),
        },
        WatchState::Backoff { attempt } => {
            tokio::time::sleep(reconnect_delay(attempt)).await;
            (WatchState::Connecting { attempt }, WatchOutput::Idle)
        }
    }
}

fn disconnected(attempt: u32, error: String) -> (WatchState, WatchOutput) {
    (
        WatchState::Backoff { attempt },
        WatchOutput::Disconnected {
            error,
            retry_in: reconnect_delay(attempt),
        },
    )
}

#[cfg(test)]
mod tests;
