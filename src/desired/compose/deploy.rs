//! The `deploy` section of a service: mode, replicas, resources, update and restart
//! policies, placement.
//!
//! Values are kept as the file states them (`None` when absent); the defaults Docker
//! applies are applied by the converter, where Docker applies them.

use super::reader::{Reader, child, item};
use super::{Version, read_labels, requires};
use crate::desired::units;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// How many tasks a service runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeployMode {
    /// A fixed number of tasks (`replicas`), the default.
    #[default]
    Replicated,
    /// One task on every node.
    Global,
    /// A job: `replicas` tasks run to completion, `replicas` at a time (as the docker
    /// CLI converts it since version 23; the engine's API 1.41 runs it).
    ReplicatedJob,
    /// A job: one task on every node, run to completion.
    GlobalJob,
}

/// How other services reach this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMode {
    /// A virtual IP that balances over the tasks (Docker's default).
    Vip,
    /// DNS round-robin over the tasks' addresses.
    Dnsrr,
}

/// What an update (or rollback) does when tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Carry on with the update.
    Continue,
    /// Stop updating (Docker's default).
    Pause,
    /// Roll back to the previous spec.
    Rollback,
}

/// Whether a replaced task stops before or after its replacement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOrder {
    /// Stop the old task first (Docker's default).
    StopFirst,
    /// Start the new task first.
    StartFirst,
}

/// `deploy.update_config` or `deploy.rollback_config` as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateConfig {
    /// Tasks updated at once; Docker uses 1 when the block is present without it.
    pub parallelism: Option<u64>,
    /// Pause between batches, in nanoseconds.
    pub delay: Option<i64>,
    /// What to do when the update fails.
    pub failure_action: Option<FailureAction>,
    /// How long each task is watched for failure, in nanoseconds.
    pub monitor: Option<i64>,
    /// Fraction of tasks that may fail; Docker carries it as a 32-bit float.
    pub max_failure_ratio: Option<f32>,
    /// Stop-first or start-first.
    pub order: Option<UpdateOrder>,
}

/// When Swarm restarts a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCondition {
    /// Never.
    None,
    /// When the task exits with a non-zero code.
    OnFailure,
    /// Whenever the task stops (Docker's default).
    Any,
}

/// `deploy.restart_policy` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When to restart.
    pub condition: Option<RestartCondition>,
    /// Wait between restarts, in nanoseconds.
    pub delay: Option<i64>,
    /// Restarts before giving up.
    pub max_attempts: Option<u64>,
    /// Window used to evaluate the policy, in nanoseconds.
    pub window: Option<i64>,
}

/// `deploy.resources.limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU limit in nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// Process-count limit.
    pub pids: Option<i64>,
}

/// `deploy.resources.reservations`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    /// CPUs reserved, in nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// Memory reserved, in bytes.
    pub memory_bytes: Option<i64>,
    /// Node resources reserved by kind (`NVIDIA-GPU: 1`), in file order; an entry
    /// without a `discrete_resource_spec` is `None`, as Docker sends an empty one.
    pub generic_resources: Vec<Option<(String, i64)>>,
}

/// Reads `generic_resources`: a list of `{discrete_resource_spec: {kind, value}}`.
fn read_generic_resources(r: &mut Reader, path: &str, value: &Value) -> Vec<Option<(String, i64)>> {
    let mut resources = Vec::new();
    for (i, entry) in r.list(path, value).unwrap_or_default().iter().enumerate() {
        let ip = item(path, i);
        let mut discrete = None;
        for (key, v) in r.mapping(&ip, entry).unwrap_or_default() {
            let kp = child(&ip, &key);
            if key != "discrete_resource_spec" {
                r.error(&kp, "not supported");
                continue;
            }
            let (mut kind, mut count) = (None, None);
            for (field, fv) in r.mapping(&kp, v).unwrap_or_default() {
                let fp = child(&kp, &field);
                match field.as_str() {
                    "kind" => kind = r.string(&fp, fv),
                    "value" => count = r.u64(&fp, fv).map(|n| n as i64),
                    _ => r.error(&fp, "not supported"),
                }
            }
            discrete = Some((kind.unwrap_or_default(), count.unwrap_or_default()));
        }
        resources.push(discrete);
    }
    resources
}

/// `deploy.resources`: each block is `Some` when present, even if empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Hard limits.
    pub limits: Option<Limits>,
    /// Reservations the scheduler must satisfy.
    pub reservations: Option<Reservations>,
}

/// `deploy.placement`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Constraints such as `node.role==manager`.
    pub constraints: Vec<String>,
    /// Spread descriptors such as `node.labels.zone`, in order.
    pub spread: Vec<String>,
    /// At most this many tasks per node; 0 means no limit.
    pub max_replicas_per_node: u64,
}

/// A service's `deploy` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploy {
    /// Replicated or global.
    pub mode: DeployMode,
    /// Task count of a replicated service; Swarm runs 1 when absent.
    pub replicas: Option<u64>,
    /// VIP or DNS round-robin.
    pub endpoint_mode: Option<EndpointMode>,
    /// Labels on the service itself.
    pub labels: BTreeMap<String, String>,
    /// Rolling-update policy.
    pub update_config: Option<UpdateConfig>,
    /// Rollback policy.
    pub rollback_config: Option<UpdateConfig>,
    /// Limits and reservations.
    pub resources: Resources,
    /// Restart policy.
    pub restart_policy: Option<RestartPolicy>,
    /// Placement rules.
    pub placement: Placement,
}

/// Reads `services.<key>.deploy`; `null` is an empty section.
pub fn read_deploy(r: &mut Reader, version: Version, path: &str, value: &Value) -> Deploy {
    let mut deploy = Deploy::default();
    let Some(entries) = r.mapping_or_null(path, value) else {
        return deploy;
    };
    let mut replicas_path = None;
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "mode" => {
                if let Some(mode) = r.string(&p, v) {
                    match mode.as_str() {
                        "replicated" => deploy.mode = DeployMode::Replicated,
                        "global" => deploy.mode = DeployMode::Global,
                        "replicated-job" => deploy.mode = DeployMode::ReplicatedJob,
                        "global-job" => deploy.mode = DeployMode::GlobalJob,
                        _ => r.error(
                            &p,
                            format!(
                                "expected replicated, global, replicated-job or global-job, found {mode:?}"
                            ),
                        ),
                    }
                }
            }
            "replicas" => {
                deploy.replicas = r.u64(&p, v);
                replicas_path = Some(p);
            }
            "endpoint_mode" => {
                if requires(r, version, &p, 2) {
                    deploy.endpoint_mode = read_endpoint_mode(r, &p, v);
                }
            }
            "labels" => deploy.labels = read_labels(r, &p, v),
            "update_config" => {
                deploy.update_config = read_update_config(r, version, &p, v, UpdateKind::Update);
            }
            "rollback_config" => {
                if requires(r, version, &p, 7) {
                    deploy.rollback_config =
                        read_update_config(r, version, &p, v, UpdateKind::Rollback);
                }
            }
            "resources" => deploy.resources = read_resources(r, version, &p, v),
            "restart_policy" => deploy.restart_policy = read_restart_policy(r, &p, v),
            "placement" => deploy.placement = read_placement(r, version, &p, v),
            _ => r.error(&p, "not supported"),
        }
    }
    if let (DeployMode::Global | DeployMode::GlobalJob, Some(p)) = (deploy.mode, replicas_path) {
        r.error(
            &p,
            "replicas can only be used with replicated or replicated-job mode",
        );
    }
    deploy
}

fn read_endpoint_mode(r: &mut Reader, path: &str, value: &Value) -> Option<EndpointMode> {
    let text = r.string(path, value)?;
    // Docker lower-cases the mode before sending it.
    match text.to_ascii_lowercase().as_str() {
        "vip" => Some(EndpointMode::Vip),
        "dnsrr" => Some(EndpointMode::Dnsrr),
        _ => {
            r.error(path, format!("expected vip or dnsrr, found {text:?}"));
            None
        }
    }
}

/// Which of the two policies an update-config block is; a rollback cannot roll back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UpdateKind {
    Update,
    Rollback,
}

fn read_update_config(
    r: &mut Reader,
    version: Version,
    path: &str,
    value: &Value,
    kind: UpdateKind,
) -> Option<UpdateConfig> {
    let entries = r.mapping(path, value)?;
    let mut config = UpdateConfig::default();
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "parallelism" => config.parallelism = r.u64(&p, v),
            "delay" => config.delay = r.duration(&p, v),
            "monitor" => config.monitor = r.duration(&p, v),
            "failure_action" => {
                config.failure_action = r.string(&p, v).and_then(|text| match text.as_str() {
                    "continue" => Some(FailureAction::Continue),
                    "pause" => Some(FailureAction::Pause),
                    "rollback" if kind == UpdateKind::Update => Some(FailureAction::Rollback),
                    // Docker's API knows only these two for a rollback (the CLI passes
                    // `rollback` through, but the API has no meaning for it).
                    _ if kind == UpdateKind::Rollback => {
                        r.error(&p, format!("expected continue or pause, found {text:?}"));
                        None
                    }
                    _ => {
                        r.error(
                            &p,
                            format!("expected continue, pause or rollback, found {text:?}"),
                        );
                        None
                    }
                });
            }
            "max_failure_ratio" => {
                config.max_failure_ratio = r.number(&p, v).and_then(|ratio| {
                    if (0.0..=1.0).contains(&ratio) {
                        Some(ratio as f32)
                    } else {
                        r.error(
                            &p,
                            format!("expected a fraction from 0 to 1, found {ratio}"),
                        );
                        None
                    }
                });
            }
            "order" => {
                if requires(r, version, &p, 4) {
                    config.order = r.string(&p, v).and_then(|text| match text.as_str() {
                        "stop-first" => Some(UpdateOrder::StopFirst),
                        "start-first" => Some(UpdateOrder::StartFirst),
                        _ => {
                            r.error(
                                &p,
                                format!("expected stop-first or start-first, found {text:?}"),
                            );
                            None
                        }
                    });
                }
            }
            _ => r.error(&p, "not supported"),
        }
    }
    Some(config)
}

fn read_restart_policy(r: &mut Reader, path: &str, value: &Value) -> Option<RestartPolicy> {
    let entries = r.mapping(path, value)?;
    let mut policy = RestartPolicy::default();
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "condition" => {
                policy.condition = r.string(&p, v).and_then(|text| match text.as_str() {
                    "none" => Some(RestartCondition::None),
                    "on-failure" => Some(RestartCondition::OnFailure),
                    "any" => Some(RestartCondition::Any),
                    _ => {
                        r.error(
                            &p,
                            format!("expected none, on-failure or any, found {text:?}"),
                        );
                        None
                    }
                });
            }
            "delay" => policy.delay = r.duration(&p, v),
            "max_attempts" => policy.max_attempts = r.u64(&p, v),
            "window" => policy.window = r.duration(&p, v),
            _ => r.error(&p, "not supported"),
        }
    }
    Some(policy)
}

fn read_resources(r: &mut Reader, version: Version, path: &str, value: &Value) -> Resources {
    let mut resources = Resources::default();
    let Some(entries) = r.mapping(path, value) else {
        return resources;
    };
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "limits" => {
                let Some(entries) = r.mapping(&p, v) else {
                    continue;
                };
                let mut limits = Limits::default();
                for (key, v) in entries {
                    let lp = child(&p, &key);
                    match key.as_str() {
                        "cpus" => limits.nano_cpus = read_cpus(r, &lp, v),
                        "memory" => limits.memory_bytes = read_memory(r, &lp, v),
                        "pids" => {
                            if requires(r, version, &lp, 9) {
                                limits.pids =
                                    r.u64_at_most(&lp, v, i64::MAX as u64).map(|n| n as i64);
                            }
                        }
                        _ => r.error(&lp, "not supported"),
                    }
                }
                resources.limits = Some(limits);
            }
            "reservations" => {
                let Some(entries) = r.mapping(&p, v) else {
                    continue;
                };
                let mut reservations = Reservations::default();
                for (key, v) in entries {
                    let rp = child(&p, &key);
                    match key.as_str() {
                        "cpus" => reservations.nano_cpus = read_cpus(r, &rp, v),
                        "memory" => reservations.memory_bytes = read_memory(r, &rp, v),
                        "generic_resources" => {
                            if requires(r, version, &rp, 5) {
                                reservations.generic_resources = read_generic_resources(r, &rp, v);
                            }
                        }
                        _ => r.error(&rp, "not supported"),
                    }
                }
                resources.reservations = Some(reservations);
            }
            _ => r.error(&p, "not supported"),
        }
    }
    resources
}

/// Reads a CPU count. Docker's compose schema takes only strings here (`cpus: 0.5`
/// fails `docker stack deploy`), so a number is refused with a hint to quote it.
fn read_cpus(r: &mut Reader, path: &str, value: &Value) -> Option<i64> {
    if let Value::Number(n) = value {
        r.error(
            path,
            format!("expected a string such as \"0.5\", found {n}; quote it as \"{n}\""),
        );
        return None;
    }
    let text = r.string(path, value)?;
    units::parse_cpus(&text)
        .map_err(|e| r.error(path, e.to_string()))
        .ok()
}

/// Reads a memory size. Docker's compose schema takes only strings here
/// (`memory: 1024` fails `docker stack deploy`), so a number is refused with a hint.
fn read_memory(r: &mut Reader, path: &str, value: &Value) -> Option<i64> {
    if let Value::Number(n) = value {
        r.error(
            path,
            format!("expected a string such as \"512M\", found {n}; quote it as \"{n}\""),
        );
        return None;
    }
    let text = r.string(path, value)?;
    units::parse_memory(&text)
        .map_err(|e| r.error(path, e.to_string()))
        .ok()
}

fn read_placement(r: &mut Reader, version: Version, path: &str, value: &Value) -> Placement {
    let mut placement = Placement::default();
    let Some(entries) = r.mapping(path, value) else {
        return placement;
    };
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "constraints" => {
                let Some(constraints) = r.string_list(&p, v) else {
                    continue;
                };
                for (i, constraint) in constraints.iter().enumerate() {
                    if !constraint.contains("==") && !constraint.contains("!=") {
                        r.error(
                            &item(&p, i),
                            format!("expected a constraint such as node.role==manager, found {constraint:?}"),
                        );
                    }
                }
                placement.constraints = constraints;
            }
            "preferences" => {
                if requires(r, version, &p, 3) {
                    placement.spread = read_preferences(r, &p, v);
                }
            }
            "max_replicas_per_node" => {
                if requires(r, version, &p, 8) {
                    placement.max_replicas_per_node = r.u64(&p, v).unwrap_or(0);
                }
            }
            _ => r.error(&p, "not supported"),
        }
    }
    placement
}

fn read_preferences(r: &mut Reader, path: &str, value: &Value) -> Vec<String> {
    let mut spread = Vec::new();
    let Some(items) = r.list(path, value) else {
        return spread;
    };
    for (i, entry) in items.iter().enumerate() {
        let ip = item(path, i);
        let Some(entries) = r.mapping(&ip, entry) else {
            continue;
        };
        let mut descriptor = None;
        for (key, v) in entries {
            let kp = child(&ip, &key);
            match key.as_str() {
                "spread" => descriptor = r.string(&kp, v),
                _ => r.error(&kp, "not supported"),
            }
        }
        match descriptor {
            Some(d) if !d.is_empty() => spread.push(d),
            Some(_) => r.error(
                &child(&ip, "spread"),
                "expected a label such as node.labels.zone",
            ),
            None if entry
                .as_mapping()
                .is_some_and(|m| !m.contains_key("spread")) =>
            {
                r.error(
                    &child(&ip, "spread"),
                    "required: a label such as node.labels.zone",
                );
            }
            None => {}
        }
    }
    spread
}
