//! Service keys that `docker stack deploy` reads without deploying, and those it refuses.
//!
//! Docker's compose loader (`cli/compose/types`) sorts service keys outside Swarm's reach
//! into three lists: unsupported (ignored with "Ignoring unsupported options"),
//! deprecated (ignored with "Ignoring deprecated options" and a reason) and forbidden
//! (the deploy fails, with a hint). A few more it drops without a word (`depends_on`,
//! the service-level `tmpfs`); mlmodel warns about those too, since a user who wrote them
//! expects them to do something. Everything here is accepted, so a stack that Docker
//! deploys deploys here, and the warnings reach `validate`, `render` and the status.

/// What happens to a service key that is not converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Accepted and ignored; the message says so.
    Ignored(&'static str),
    /// Refused; the message says what to write instead.
    Forbidden(&'static str),
}

/// Docker's `UnsupportedProperties`, less `restart` (see [`RESTART_WARNING`]).
const UNSUPPORTED: [&str; 15] = [
    "build",
    "cgroup_parent",
    "cgroupns_mode",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "security_opt",
    "shm_size",
    "userns_mode",
];

/// The warning for an unsupported option, as `docker stack deploy` prints it for the key.
const UNSUPPORTED_WARNING: &str = "Ignoring unsupported option: a swarm service cannot have it, so docker stack deploy ignores it too";

/// `restart` is on Docker's unsupported list, yet Docker still reads it when
/// `deploy.restart_policy` is absent.
pub const RESTART_WARNING: &str = "Ignoring unsupported option, except that, as in docker stack deploy, it sets the restart policy when deploy.restart_policy is absent";

/// How `key` of a service is handled when it is not converted; `None` for a key Docker
/// does not know (an error) or one that is converted.
pub fn service_key(key: &str) -> Option<Handling> {
    if UNSUPPORTED.contains(&key) {
        return Some(Handling::Ignored(UNSUPPORTED_WARNING));
    }
    let handling = match key {
        "container_name" => Handling::Ignored(
            "Ignoring deprecated option: Setting the container name is not supported.",
        ),
        "expose" => Handling::Ignored(
            "Ignoring deprecated option: Exposing ports is unnecessary - services on the same network can access each other's containers on any port.",
        ),
        "depends_on" => Handling::Ignored(
            "ignored, as docker stack deploy ignores it: a stack's services start in no particular order, so each must wait for what it needs",
        ),
        "tmpfs" => Handling::Ignored(
            "ignored, as docker stack deploy ignores it: mount a tmpfs with a volumes entry of type: tmpfs instead",
        ),
        "extends" => Handling::Forbidden("Support for `extends` is not implemented yet."),
        "volume_driver" => Handling::Forbidden(
            "Instead of setting the volume driver on the service, define a volume using the top-level `volumes` option and specify the driver there.",
        ),
        "volumes_from" => Handling::Forbidden(
            "To share a volume between services, define it using the top-level `volumes` option and reference it from each service that shares it using the service-level `volumes` option.",
        ),
        "cpu_quota" | "cpu_shares" | "cpuset" | "mem_limit" | "memswap_limit" => {
            Handling::Forbidden("Set resource limits using deploy.resources")
        }
        _ => return None,
    };
    Some(handling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_lists_are_sorted_into_ignored_and_forbidden() {
        for key in UNSUPPORTED
            .iter()
            .chain(&["container_name", "expose", "depends_on"])
        {
            assert!(
                matches!(service_key(key), Some(Handling::Ignored(_))),
                "{key}"
            );
        }
        for key in ["extends", "mem_limit", "volumes_from", "cpuset"] {
            assert!(
                matches!(service_key(key), Some(Handling::Forbidden(_))),
                "{key}"
            );
        }
        assert_eq!(service_key("image"), None);
        assert_eq!(service_key("restart"), None, "read, with its own warning");
    }
}
