//! One compose service to one Swarm `ServiceSpec`, as `docker stack deploy` builds it.

use super::container;
use super::networks::{NetworkPlan, is_user_defined};
use super::objects::{self, ObjectPlan};
use super::scope;
use crate::desired::compose::{
    ComposeError, Deploy, DeployMode, EndpointMode, FailureAction, Healthcheck, Placement, Port,
    Protocol, PublishMode, Resources, Restart, RestartCondition, RestartPolicy, Service,
    UpdateConfig, UpdateOrder, Volume,
};
use crate::desired::stack::labels;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, GenericResourcesInner,
    GenericResourcesInnerDiscreteResourceSpec, HealthConfig, Limit, NetworkAttachmentConfig,
    ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecModeReplicatedJob, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecPrivileges, TaskSpecContainerSpecPrivilegesCredentialSpec,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use std::collections::{BTreeMap, HashMap};

/// Converts the service `key`; problems are added to `errors`.
pub fn convert(
    stack_name: &str,
    key: &str,
    service: &Service,
    networks: &NetworkPlan,
    files: &ObjectPlan,
    volumes: &BTreeMap<String, Volume>,
    errors: &mut Vec<ComposeError>,
) -> Option<ServiceSpec> {
    let path = format!("services.{key}");
    let before = errors.len();
    if let Err(e) = crate::desired::naming::validate_model_name(key, &format!("{stack_name}_"), "")
    {
        errors.push(ComposeError {
            path: path.clone(),
            message: e.to_string(),
        });
    }
    let dnsrr = service.deploy.endpoint_mode == Some(EndpointMode::Dnsrr);
    if dnsrr
        && service
            .ports
            .iter()
            .any(|p| p.mode != Some(PublishMode::Host))
    {
        errors.push(ComposeError {
            path: format!("{path}.deploy.endpoint_mode"),
            message: "dnsrr cannot be used with ports published in ingress mode; publish every port with mode: host".to_string(),
        });
    }
    let attachments = attachments(key, service, networks);
    let mounts = container::mounts(stack_name, key, service, volumes, errors);
    let secrets = objects::secrets(key, &service.secrets, files, errors);
    let credential = service
        .credential_spec
        .as_ref()
        .and_then(|c| c.config.as_deref());
    let configs = objects::configs(key, &service.configs, credential, files, errors);
    let credential_config = configs
        .iter()
        .flatten()
        .find(|r| r.runtime.is_some())
        .and_then(|r| r.config_name.clone());
    if errors.len() > before {
        return None;
    }
    let deploy = &service.deploy;
    let mut service_labels = to_hash_map(&deploy.labels);
    service_labels.insert(labels::STACK_NAMESPACE.to_string(), stack_name.to_string());
    service_labels.insert(labels::STACK_IMAGE.to_string(), service.image.clone());
    Some(ServiceSpec {
        name: Some(scope(stack_name, key)),
        labels: Some(service_labels),
        task_template: Some(TaskSpec {
            container_spec: Some(with_credential_config(
                TaskSpecContainerSpec {
                    mounts,
                    secrets,
                    configs,
                    ..container_spec(stack_name, service)
                },
                credential_config,
            )),
            resources: Some(resources(&deploy.resources)),
            restart_policy: match &deploy.restart_policy {
                Some(policy) => Some(restart_policy(policy)),
                None => service.restart.and_then(legacy_restart),
            },
            log_driver: container::log_driver(service.logging.as_ref()),
            placement: Some(placement(&deploy.placement)),
            networks: Some(attachments),
            ..Default::default()
        }),
        mode: Some(mode(deploy)),
        update_config: deploy.update_config.as_ref().map(update_config),
        rollback_config: deploy.rollback_config.as_ref().map(rollback_config),
        networks: None,
        endpoint_spec: Some(endpoint_spec(deploy, &service.ports)),
    })
}

/// `container` with its credential spec reading the config `name` (its id is filled in
/// at write time, with the references').
fn with_credential_config(
    mut container: TaskSpecContainerSpec,
    name: Option<String>,
) -> TaskSpecContainerSpec {
    if let (Some(name), Some(privileges)) = (name, container.privileges.as_mut()) {
        privileges
            .credential_spec
            .get_or_insert_with(Default::default)
            .config = Some(name);
    }
    container
}

fn container_spec(stack_name: &str, service: &Service) -> TaskSpecContainerSpec {
    let mut container_labels = to_hash_map(&service.labels);
    container_labels.insert(labels::STACK_NAMESPACE.to_string(), stack_name.to_string());
    let (capability_add, capability_drop) =
        container::capabilities(&service.cap_add, &service.cap_drop);
    TaskSpecContainerSpec {
        hostname: service.hostname.clone().filter(|h| !h.is_empty()),
        hosts: container::hosts(&service.extra_hosts),
        dns_config: container::dns_config(service),
        sysctls: container::sysctls(&service.sysctls),
        capability_add,
        capability_drop,
        ulimits: container::ulimits(&service.ulimits),
        init: service.init,
        read_only: service.read_only.then_some(true),
        tty: service.tty.then_some(true),
        open_stdin: service.stdin_open.then_some(true),
        isolation: container::isolation(service.isolation.as_deref()),
        image: Some(service.image.clone()),
        labels: Some(container_labels),
        command: non_empty(service.entrypoint.clone().unwrap_or_default()),
        args: non_empty(service.command.clone().unwrap_or_default()),
        env: non_empty(environment(&service.environment)),
        dir: service.working_dir.clone().filter(|d| !d.is_empty()),
        user: service.user.clone().filter(|u| !u.is_empty()),
        // The CLI always sends a privileges object.
        privileges: Some(TaskSpecContainerSpecPrivileges {
            // The CLI sends all three fields, the unused ones empty.
            credential_spec: service.credential_spec.as_ref().map(|spec| {
                TaskSpecContainerSpecPrivilegesCredentialSpec {
                    config: Some(String::new()),
                    file: Some(spec.file.clone().unwrap_or_default()),
                    registry: Some(spec.registry.clone().unwrap_or_default()),
                }
            }),
            ..Default::default()
        }),
        stop_grace_period: service.stop_grace_period,
        stop_signal: service.stop_signal.clone().filter(|s| !s.is_empty()),
        health_check: service.healthcheck.as_ref().map(health_check),
        ..Default::default()
    }
}

/// `KEY=value` strings (`KEY` alone when unset), sorted as whole strings like Docker.
fn environment(environment: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut env: Vec<String> = environment
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => key.clone(),
        })
        .collect();
    env.sort();
    env
}

fn health_check(check: &Healthcheck) -> HealthConfig {
    if check.disable {
        return HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        };
    }
    HealthConfig {
        test: check.test.clone().and_then(non_empty),
        interval: non_zero(check.interval),
        timeout: non_zero(check.timeout),
        retries: check.retries.filter(|r| *r != 0).map(to_i64),
        start_period: non_zero(check.start_period),
        start_interval: None,
    }
}

fn resources(resources: &Resources) -> TaskSpecResources {
    TaskSpecResources {
        limits: resources.limits.as_ref().map(|l| Limit {
            nano_cpus: non_zero(l.nano_cpus),
            memory_bytes: non_zero(l.memory_bytes),
            pids: non_zero(l.pids),
        }),
        reservations: resources.reservations.as_ref().map(|r| ResourceObject {
            nano_cpus: non_zero(r.nano_cpus),
            memory_bytes: non_zero(r.memory_bytes),
            generic_resources: non_empty(
                r.generic_resources
                    .iter()
                    .map(|discrete| GenericResourcesInner {
                        named_resource_spec: None,
                        discrete_resource_spec: discrete.as_ref().map(|(kind, value)| {
                            GenericResourcesInnerDiscreteResourceSpec {
                                kind: Some(kind.clone()).filter(|k| !k.is_empty()),
                                value: Some(*value).filter(|v| *v != 0),
                            }
                        }),
                    })
                    .collect(),
            ),
        }),
        ..Default::default()
    }
}

fn restart_policy(policy: &RestartPolicy) -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: policy.condition.map(|c| match c {
            RestartCondition::None => TaskSpecRestartPolicyConditionEnum::NONE,
            RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartCondition::Any => TaskSpecRestartPolicyConditionEnum::ANY,
        }),
        delay: policy.delay,
        max_attempts: policy.max_attempts.map(to_i64),
        window: policy.window,
    }
}

fn placement(placement: &Placement) -> TaskSpecPlacement {
    let preferences = placement
        .spread
        .iter()
        .map(|descriptor| TaskSpecPlacementPreferences {
            spread: Some(TaskSpecPlacementSpread {
                spread_descriptor: Some(descriptor.clone()),
            }),
        })
        .collect();
    TaskSpecPlacement {
        constraints: non_empty(placement.constraints.clone()),
        preferences: non_empty(preferences),
        max_replicas: Some(to_i64(placement.max_replicas_per_node)).filter(|m| *m != 0),
        platforms: None,
    }
}

fn mode(deploy: &Deploy) -> ServiceSpecMode {
    match deploy.mode {
        DeployMode::Replicated => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: deploy.replicas.map(to_i64),
            }),
            ..Default::default()
        },
        DeployMode::Global => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        DeployMode::ReplicatedJob => ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: deploy.replicas.map(to_i64),
                total_completions: deploy.replicas.map(to_i64),
            }),
            ..Default::default()
        },
        DeployMode::GlobalJob => ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
    }
}

/// The restart policy Docker derives from the legacy `restart` key.
fn legacy_restart(restart: Restart) -> Option<TaskSpecRestartPolicy> {
    match restart {
        Restart::No => None,
        Restart::Any => Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            ..Default::default()
        }),
        Restart::OnFailure(attempts) => Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
            max_attempts: Some(to_i64(attempts)),
            ..Default::default()
        }),
    }
}

/// The fields of an update or rollback config, with Docker's defaults applied.
///
/// Docker sets parallelism to 1 when the block is present without it, and always sends
/// the max failure ratio (a 32-bit float, carried here as the f64 with the same decimal).
struct UpdateFields {
    parallelism: i64,
    delay: Option<i64>,
    monitor: Option<i64>,
    max_failure_ratio: f64,
}

fn update_fields(config: &UpdateConfig) -> UpdateFields {
    let ratio = config.max_failure_ratio.unwrap_or(0.0);
    UpdateFields {
        parallelism: to_i64(config.parallelism.unwrap_or(1)),
        delay: non_zero(config.delay),
        monitor: non_zero(config.monitor),
        max_failure_ratio: ratio.to_string().parse().unwrap_or(f64::from(ratio)),
    }
}

fn update_config(config: &UpdateConfig) -> ServiceSpecUpdateConfig {
    let fields = update_fields(config);
    ServiceSpecUpdateConfig {
        parallelism: Some(fields.parallelism),
        delay: fields.delay,
        failure_action: config.failure_action.map(|a| match a {
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: fields.monitor,
        max_failure_ratio: Some(fields.max_failure_ratio),
        order: config.order.map(|o| match o {
            UpdateOrder::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

fn rollback_config(config: &UpdateConfig) -> ServiceSpecRollbackConfig {
    let fields = update_fields(config);
    ServiceSpecRollbackConfig {
        parallelism: Some(fields.parallelism),
        delay: fields.delay,
        // The parser refuses `rollback` as a rollback's failure action.
        failure_action: config.failure_action.and_then(|a| match a {
            FailureAction::Continue => Some(ServiceSpecRollbackConfigFailureActionEnum::CONTINUE),
            FailureAction::Pause => Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            FailureAction::Rollback => None,
        }),
        monitor: fields.monitor,
        max_failure_ratio: Some(fields.max_failure_ratio),
        order: config.order.map(|o| match o {
            UpdateOrder::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
    }
}

/// The endpoint spec; ports are sorted by published port, ties kept in file order.
///
/// Docker sorts with Go's `sort.Slice`, which is not stable in general but is for up to
/// 12 ports (it falls back to insertion sort); past that, ties among equal published
/// ports may come out in another order than Docker's.
fn endpoint_spec(deploy: &Deploy, ports: &[Port]) -> EndpointSpec {
    let mut ports = ports.to_vec();
    ports.sort_by_key(|p| p.published);
    let ports = ports
        .iter()
        .map(|p| EndpointPortConfig {
            name: None,
            protocol: p.protocol.map(|proto| match proto {
                Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                Protocol::Sctp => EndpointPortConfigProtocolEnum::SCTP,
            }),
            target_port: Some(i64::from(p.target)).filter(|t| *t != 0),
            published_port: Some(i64::from(p.published)).filter(|t| *t != 0),
            publish_mode: p.mode.map(|mode| match mode {
                PublishMode::Ingress => EndpointPortConfigPublishModeEnum::INGRESS,
                PublishMode::Host => EndpointPortConfigPublishModeEnum::HOST,
            }),
        })
        .collect();
    EndpointSpec {
        mode: deploy.endpoint_mode.map(|mode| match mode {
            EndpointMode::Vip => EndpointSpecModeEnum::VIP,
            EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
        }),
        ports: non_empty(ports),
    }
}

/// The service's network attachments, sorted by target as Docker sorts them.
///
/// Each attachment carries the declared aliases plus the service key, which Docker adds
/// on every user-defined network so other services reach this one by its key.
fn attachments(
    key: &str,
    service: &Service,
    networks: &NetworkPlan,
) -> Vec<NetworkAttachmentConfig> {
    let default_only = [(
        super::networks::DEFAULT_NETWORK.to_string(),
        Default::default(),
    )];
    let declared: Vec<(String, crate::desired::compose::ServiceNetwork)> =
        if service.networks.is_empty() {
            default_only.to_vec()
        } else {
            service
                .networks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
    let mut attachments: Vec<NetworkAttachmentConfig> = declared
        .into_iter()
        .filter_map(|(network_key, network)| {
            let target = networks.targets.get(&network_key)?.clone();
            let mut aliases = network.aliases;
            if is_user_defined(&target) {
                aliases.push(key.to_string());
            }
            Some(NetworkAttachmentConfig {
                target: Some(target),
                aliases: non_empty(aliases),
                driver_opts: None,
            })
        })
        .collect();
    attachments.sort_by(|a, b| a.target.cmp(&b.target));
    attachments
}

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_zero(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v != 0)
}

/// Counts are read as at most `i64::MAX` by the parser, so this never saturates there.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
