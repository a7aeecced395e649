//! The container-level fields beyond the basics, as `docker stack deploy` fills them:
//! mounts, hosts, DNS, kernel settings, capabilities, limits, log driver.
//!
//! Every field follows the CLI's JSON: what the CLI leaves out (a `false`, an empty
//! list) is `None` here, so the spec compares equal to what Docker stores for a stack the
//! CLI deployed.

use super::scope;
use crate::desired::compose::{
    ComposeError, Logging, MountKind, Service, ServiceVolume, Ulimit, Volume,
};
use crate::desired::stack::labels;
use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig, ResourcesUlimits,
    TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecIsolationEnum, TaskSpecLogDriver,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The service's mounts, in file order; an undefined named volume is an error.
pub fn mounts(
    stack_name: &str,
    key: &str,
    service: &Service,
    volumes: &BTreeMap<String, Volume>,
    errors: &mut Vec<ComposeError>,
) -> Option<Vec<Mount>> {
    let mounts: Vec<Mount> = service
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, volume)| {
            let named = (volume.kind == MountKind::Volume && !volume.source.is_empty())
                .then(|| volumes.get(&volume.source));
            if let Some(None) = named {
                errors.push(ComposeError {
                    path: format!("services.{key}.volumes[{i}]"),
                    message: format!(
                        "undefined volume {:?}: declare it under the top-level volumes",
                        volume.source
                    ),
                });
                return None;
            }
            Some(mount(stack_name, volume, named.flatten()))
        })
        .collect();
    (!mounts.is_empty()).then_some(mounts)
}

fn mount(stack_name: &str, volume: &ServiceVolume, named: Option<&Volume>) -> Mount {
    let mut mount = Mount {
        typ: Some(match volume.kind {
            MountKind::Volume => MountType::VOLUME,
            MountKind::Bind => MountType::BIND,
            MountKind::Tmpfs => MountType::TMPFS,
            MountKind::Npipe => MountType::NPIPE,
        }),
        source: Some(volume.source.clone()).filter(|s| !s.is_empty()),
        target: Some(volume.target.clone()),
        read_only: volume.read_only.then_some(true),
        consistency: volume.consistency.clone().filter(|c| !c.is_empty()),
        ..Default::default()
    };
    match volume.kind {
        MountKind::Volume => {
            if let Some(named) = named {
                mount.source = Some(
                    named
                        .name
                        .clone()
                        .unwrap_or_else(|| scope(stack_name, &volume.source)),
                );
                mount.volume_options = Some(volume_options(stack_name, volume, named));
            }
        }
        MountKind::Bind | MountKind::Npipe => {
            mount.bind_options = volume.bind.as_ref().map(|propagation| MountBindOptions {
                propagation: propagation.as_deref().and_then(propagation_enum),
                ..Default::default()
            });
        }
        MountKind::Tmpfs => {
            mount.tmpfs_options = volume.tmpfs.map(|size| MountTmpfsOptions {
                size_bytes: size.filter(|s| *s != 0),
                ..Default::default()
            });
        }
    }
    mount
}

/// A named volume's options: `nocopy`, and for one the stack owns its labels (with the
/// stack's) and driver, with which the engine creates it on the node.
fn volume_options(stack_name: &str, volume: &ServiceVolume, named: &Volume) -> MountVolumeOptions {
    let no_copy = volume.volume.flatten().filter(|n| *n);
    if named.external {
        return MountVolumeOptions {
            no_copy,
            ..Default::default()
        };
    }
    let mut volume_labels: HashMap<String, String> = named
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    volume_labels.insert(labels::STACK_NAMESPACE.to_string(), stack_name.to_string());
    let driver_config = (named.driver.as_deref().is_some_and(|d| !d.is_empty())
        || named.driver_opts.is_some())
    .then(|| MountVolumeOptionsDriverConfig {
        name: named.driver.clone().filter(|d| !d.is_empty()),
        options: named
            .driver_opts
            .as_ref()
            .filter(|o| !o.is_empty())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    });
    MountVolumeOptions {
        no_copy,
        labels: Some(volume_labels),
        driver_config,
        ..Default::default()
    }
}

fn propagation_enum(text: &str) -> Option<MountBindOptionsPropagationEnum> {
    Some(match text {
        "private" => MountBindOptionsPropagationEnum::PRIVATE,
        "rprivate" => MountBindOptionsPropagationEnum::RPRIVATE,
        "shared" => MountBindOptionsPropagationEnum::SHARED,
        "rshared" => MountBindOptionsPropagationEnum::RSHARED,
        "slave" => MountBindOptionsPropagationEnum::SLAVE,
        "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
        _ => return None,
    })
}

/// `extra_hosts` as the engine's `Hosts`: `"ip host"`, entries without a `:` dropped.
pub fn hosts(extra_hosts: &[String]) -> Option<Vec<String>> {
    let hosts: Vec<String> = extra_hosts
        .iter()
        .filter_map(|entry| entry.split_once(':'))
        .map(|(host, ip)| format!("{ip} {host}"))
        .collect();
    (!hosts.is_empty()).then_some(hosts)
}

/// The DNS config, present when `dns` or `dns_search` is.
pub fn dns_config(service: &Service) -> Option<TaskSpecContainerSpecDnsConfig> {
    if service.dns.is_none() && service.dns_search.is_none() {
        return None;
    }
    let list = |l: &Option<Vec<String>>| l.clone().filter(|l| !l.is_empty());
    Some(TaskSpecContainerSpecDnsConfig {
        nameservers: list(&service.dns),
        search: list(&service.dns_search),
        options: None,
    })
}

/// Docker's effective capability lists: names upper-cased with `CAP_` in front, `ALL`
/// trumping the rest of its list, an added capability taken out of the dropped ones,
/// `RESET` left out; both sorted.
pub fn capabilities(add: &[String], drop: &[String]) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let normalise = |caps: &[String]| -> BTreeSet<String> {
        let set: BTreeSet<String> = caps
            .iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty() && c != "RESET")
            .map(|c| {
                if c == "ALL" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        if set.contains("ALL") {
            BTreeSet::from(["ALL".to_string()])
        } else {
            set
        }
    };
    let added = normalise(add);
    let dropped: BTreeSet<String> = normalise(drop)
        .into_iter()
        .filter(|c| !added.contains(c))
        .collect();
    let list = |set: BTreeSet<String>| (!set.is_empty()).then(|| set.into_iter().collect());
    (list(added), list(dropped))
}

/// The ulimits, sorted by name.
pub fn ulimits(ulimits: &BTreeMap<String, Ulimit>) -> Option<Vec<ResourcesUlimits>> {
    let limits: Vec<ResourcesUlimits> = ulimits
        .iter()
        .map(|(name, limit)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(limit.soft),
            hard: Some(limit.hard),
        })
        .collect();
    (!limits.is_empty()).then_some(limits)
}

/// The sysctls, if any.
pub fn sysctls(sysctls: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!sysctls.is_empty()).then(|| {
        sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// The isolation, unless empty.
pub fn isolation(isolation: Option<&str>) -> Option<TaskSpecContainerSpecIsolationEnum> {
    match isolation? {
        "default" => Some(TaskSpecContainerSpecIsolationEnum::DEFAULT),
        "process" => Some(TaskSpecContainerSpecIsolationEnum::PROCESS),
        "hyperv" => Some(TaskSpecContainerSpecIsolationEnum::HYPERV),
        _ => None,
    }
}

/// The task's log driver, when `logging` is present.
pub fn log_driver(logging: Option<&Logging>) -> Option<TaskSpecLogDriver> {
    let logging = logging?;
    Some(TaskSpecLogDriver {
        name: logging.driver.clone().filter(|d| !d.is_empty()),
        options: (!logging.options.is_empty()).then(|| {
            logging
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_normalised_as_docker_normalises_them() {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (add, drop) = capabilities(
            &strings(&["net_admin", " sys_time", "CAP_CHOWN", "RESET"]),
            &strings(&["chown", "mknod"]),
        );
        assert_eq!(
            add,
            Some(strings(&["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_TIME"]))
        );
        assert_eq!(drop, Some(strings(&["CAP_MKNOD"])));
        let (add, drop) = capabilities(&strings(&["all", "net_admin"]), &strings(&["ALL"]));
        assert_eq!(add, Some(strings(&["ALL"])));
        assert_eq!(drop, None);
    }

    #[test]
    fn extra_hosts_are_turned_around() {
        let hosts = hosts(&[
            "db:10.0.0.2".to_string(),
            "v6:::1".to_string(),
            "bare".to_string(),
        ]);
        assert_eq!(
            hosts,
            Some(vec!["10.0.0.2 db".to_string(), "::1 v6".to_string()])
        );
    }
}
