//! Why replicas do not run where they should, in words: tasks stuck before a node runs
//! them, nodes gone down or drained, nodes that cannot pull the image.
//!
//! Swarm says little about the first: a task the allocator cannot give an address stays
//! in `New` with no error at all, and the scheduler's error counts nodes without naming
//! them or what they lack. So the cause is computed here from what was listed: the shared
//! network's addresses, the nodes' resources less what their tasks reserve, the placement
//! constraints evaluated against the nodes.

use super::Scene;
use crate::reconcile::network::REMEDY;
use crate::reconcile::observe::Departed;
use crate::swarm::{ObservedNode, ObservedService, ObservedTask, TaskState};
use std::collections::{BTreeMap, BTreeSet};

/// How long a task may wait in `New`, `Allocated` or `Pending` before the status says why.
pub const GRACE_SECS: f64 = 10.0;

/// Why some of the model's tasks wait before any node runs them, once they have waited
/// past [`GRACE_SECS`]; `None` if none has.
pub(super) fn stuck(
    services: &[&ObservedService],
    tasks: &[&ObservedTask],
    scene: &Scene<'_>,
) -> Option<String> {
    let waiting: Vec<&ObservedTask> = tasks
        .iter()
        .copied()
        .filter(|t| t.state.is_waiting() && age(t, scene.observed_at) >= GRACE_SECS)
        .collect();
    let first = waiting.first()?;
    let service = services.iter().find(|s| s.id == first.service_id)?;
    let cause = match first.state {
        TaskState::New => unallocated(scene),
        _ if first.error.contains("insufficient resources") => {
            format!("{}: {}", first.error, resources(service, scene))
        }
        _ if first.error.contains("constraint") => {
            format!("{}: {}", first.error, constraints(service, scene))
        }
        _ if first.error.contains("not available for new tasks") => {
            format!("{}: {}", first.error, unavailable_nodes(scene))
        }
        _ if !first.error.is_empty() => first.error.clone(),
        _ => format!(
            "waiting for a node to be assigned ({})",
            unavailable_nodes(scene)
        ),
    };
    let count = waiting.len();
    let noun = if count == 1 { "task" } else { "tasks" };
    Some(format!(
        "{count} {noun} waiting for {}s: {cause}",
        age(first, scene.observed_at) as u64
    ))
}

/// Seconds since the task entered its state (0 if unknown).
fn age(task: &ObservedTask, now: f64) -> f64 {
    task.state_since
        .as_deref()
        .and_then(crate::api::timefmt::parse_rfc3339)
        .map_or(0.0, |since| (now - since).max(0.0))
}

/// A task left in `New`: the allocator could not give it an address.
fn unallocated(scene: &Scene<'_>) -> String {
    match scene.network {
        Some(network) if network.is_full() || network.is_short() => format!(
            "no free IP address on {}: {} in use ({}), {} needed once every replica runs; {REMEDY}",
            network.named(),
            network.used.total(),
            network.used,
            network.needed.total(),
        ),
        Some(network) => format!(
            "Swarm has not allocated its network addresses yet ({} has {} in use); a network of its stack may be out of addresses (see dockerd's log: \"could not find an available IP\")",
            network.named(),
            network.used.total(),
        ),
        None => "Swarm has not allocated its network addresses yet (see dockerd's log: \"could not find an available IP\")".to_string(),
    }
}

/// What one replica reserves against what each ready node has free.
fn resources(service: &ObservedService, scene: &Scene<'_>) -> String {
    let (cpus, memory, generic) = reservations(service);
    let mut wants = Vec::new();
    if cpus > 0 {
        wants.push(format!("{} CPUs", cpus_words(cpus)));
    }
    if memory > 0 {
        wants.push(format!("{} of memory", bytes_words(memory)));
    }
    wants.extend(generic.iter().map(|(kind, n)| format!("{n} {kind}")));
    let reserved = reserved_by_node(scene);
    let mut free: Vec<(i64, i64, &ObservedNode)> = scene
        .nodes()
        .filter(|n| n.takes_tasks())
        .map(|n| {
            let (c, m) = reserved.get(n.id.as_str()).copied().unwrap_or_default();
            (n.nano_cpus - c, n.memory_bytes - m, n)
        })
        .collect();
    free.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let nodes: Vec<String> = free
        .iter()
        .take(5)
        .map(|(c, m, n)| {
            format!(
                "{} {} CPUs and {}",
                n.hostname,
                cpus_words((*c).max(0)),
                bytes_words((*m).max(0))
            )
        })
        .collect();
    let wants = if wants.is_empty() {
        "each replica reserves nothing Swarm counts".to_string()
    } else {
        format!("each replica reserves {}", wants.join(" and "))
    };
    if nodes.is_empty() {
        format!("{wants}; no node is ready and active")
    } else {
        format!("{wants}; free on the ready nodes: {}", nodes.join(", "))
    }
}

/// CPUs and memory reserved by the tasks that hold a place on each node.
fn reserved_by_node<'a>(scene: &Scene<'a>) -> BTreeMap<&'a str, (i64, i64)> {
    let mut reserved: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (service_id, tasks) in &scene.observed.tasks {
        let Some(service) = scene.observed.services().get(service_id) else {
            continue;
        };
        let (cpus, memory, _) = reservations(service);
        for task in tasks.iter() {
            if let (Some(node), true) = (task.node_id.as_deref(), holds_place(&task.state)) {
                let entry = reserved.entry(node).or_default();
                entry.0 += cpus;
                entry.1 += memory;
            }
        }
    }
    reserved
}

/// Whether a task counts against its node's resources: assigned and not ended.
fn holds_place(state: &TaskState) -> bool {
    state.has_address()
        && !matches!(
            state,
            TaskState::New | TaskState::Allocated | TaskState::Pending
        )
}

/// A replica's reserved CPUs (billionths), memory (bytes) and generic resources.
fn reservations(service: &ObservedService) -> (i64, i64, BTreeMap<String, i64>) {
    let Some(reservations) = service
        .spec
        .task_template
        .as_ref()
        .and_then(|t| t.resources.as_ref())
        .and_then(|r| r.reservations.as_ref())
    else {
        return (0, 0, BTreeMap::new());
    };
    let generic = reservations
        .generic_resources
        .iter()
        .flatten()
        .filter_map(|g| g.discrete_resource_spec.as_ref())
        .filter_map(|d| Some((d.kind.clone()?, d.value.unwrap_or(0))))
        .collect();
    (
        reservations.nano_cpus.unwrap_or(0),
        reservations.memory_bytes.unwrap_or(0),
        generic,
    )
}

fn cpus_words(nano: i64) -> String {
    let cpus = nano as f64 / 1e9;
    let text = format!("{cpus:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn bytes_words(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

/// The placement constraints no ready, active node meets.
fn constraints(service: &ObservedService, scene: &Scene<'_>) -> String {
    let constraints: Vec<&str> = service
        .spec
        .task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let candidates: Vec<&ObservedNode> = scene.nodes().filter(|n| n.takes_tasks()).collect();
    let unmet: Vec<String> = constraints
        .iter()
        .filter(|c| !candidates.iter().any(|node| meets(node, c).unwrap_or(true)))
        .map(|c| format!("`{c}`"))
        .collect();
    let names: Vec<&str> = candidates.iter().map(|n| n.hostname.as_str()).collect();
    if unmet.is_empty() {
        format!(
            "no ready, active node meets all of the placement constraints {} together (candidates: {})",
            constraints.join(", "),
            names.join(", ")
        )
    } else {
        format!(
            "no ready, active node meets the placement constraint {} (candidates: {})",
            unmet.join(" or "),
            names.join(", ")
        )
    }
}

/// Whether `node` meets one constraint (`key==value` or `key!=value`); `None` when the
/// key is not one this evaluates.
pub(super) fn meets(node: &ObservedNode, constraint: &str) -> Option<bool> {
    let (key, equal, value) = if let Some((k, v)) = constraint.split_once("==") {
        (k, true, v)
    } else {
        let (k, v) = constraint.split_once("!=")?;
        (k, false, v)
    };
    let (key, value) = (key.trim(), value.trim());
    let actual: Option<&str> = match key {
        "node.id" => Some(&node.id),
        "node.hostname" => Some(&node.hostname),
        "node.role" => Some(&node.role),
        "node.platform.os" => Some(&node.os),
        "node.platform.arch" => Some(&node.arch),
        _ => {
            if let Some(label) = key.strip_prefix("node.labels.") {
                node.labels.get(label).map(String::as_str).or(Some(""))
            } else if let Some(label) = key.strip_prefix("engine.labels.") {
                node.engine_labels
                    .get(label)
                    .map(String::as_str)
                    .or(Some(""))
            } else {
                None
            }
        }
    };
    let matched = actual?.eq_ignore_ascii_case(value);
    Some(matched == equal)
}

/// The nodes that take no new tasks, with why.
fn unavailable_nodes(scene: &Scene<'_>) -> String {
    let unavailable: Vec<String> = scene
        .nodes()
        .filter_map(|n| Some(format!("{} {}", n.hostname, n.unavailable()?)))
        .collect();
    if unavailable.is_empty() {
        "every node is ready and active".to_string()
    } else {
        format!("not taking tasks: {}", unavailable.join(", "))
    }
}

/// What happened to the model's nodes: tasks moved off nodes that went down or were
/// drained (remembered for a while), tasks on a node that is down now, and nodes that
/// cannot pull the image. `None` if nothing did.
pub(super) fn nodes(
    services: &[&ObservedService],
    tasks: &[&ObservedTask],
    scene: &Scene<'_>,
) -> Option<String> {
    let mut notes = Vec::new();
    let on_down: BTreeSet<String> = tasks
        .iter()
        .filter_map(|t| {
            let node = scene.observed.nodes.get(t.node_id.as_deref()?)?;
            let why = node.unavailable().filter(|_| node.state != "ready")?;
            Some(format!("{} is {why}", node.hostname))
        })
        .collect();
    if !on_down.is_empty() {
        notes.push(format!(
            "node {}: its tasks will be rescheduled",
            on_down.into_iter().collect::<Vec<_>>().join(", node ")
        ));
    }
    let mut moved: BTreeMap<(String, String), usize> = BTreeMap::new();
    for service in services {
        for departed in scene
            .observed
            .departed
            .get(&service.id)
            .into_iter()
            .flatten()
        {
            if let Departed {
                node_unavailable: Some(why),
                node_id,
                ..
            } = departed
            {
                *moved
                    .entry((scene.hostname(node_id), why.clone()))
                    .or_default() += 1;
            }
        }
    }
    for ((node, why), count) in moved {
        let noun = if count == 1 { "replica" } else { "replicas" };
        notes.push(format!("{count} {noun} moved off node {node} ({why})"));
    }
    for service in services {
        if let Some(unfit) = scene.observed.unfit.get(&service.id) {
            let names: Vec<String> = unfit.nodes.keys().map(|id| scene.hostname(id)).collect();
            let error = unfit.nodes.values().next().cloned().unwrap_or_default();
            notes.push(format!(
                "the image cannot be had on node {} ({error}): its tasks run only on the other nodes",
                names.join(", node ")
            ));
        }
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}
