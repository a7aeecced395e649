//! Which networks a stack creates and what each service attaches to.

use super::scope;
use crate::desired::compose::{ComposeError, ComposeFile, Network};
use crate::desired::stack::{NetworkSpec, labels};
use std::collections::{BTreeMap, BTreeSet};

/// The key of the network a service without `networks` joins.
pub const DEFAULT_NETWORK: &str = "default";

/// The driver Docker uses for stack networks that name none.
const DEFAULT_DRIVER: &str = "overlay";

/// The stack's networks: Docker names by key, and the ones to create.
#[derive(Debug, Default)]
pub struct NetworkPlan {
    /// The Docker network name each usable key resolves to.
    pub targets: BTreeMap<String, String>,
    /// Networks the stack creates, sorted by name.
    pub to_create: Vec<NetworkSpec>,
}

/// Resolves every network key the services use; unknown keys are reported.
///
/// Like `docker stack deploy`, only networks some service uses are created, and the
/// `default` network needs no declaration (a declared one, e.g. external, is honoured).
pub fn plan(
    stack_name: &str,
    compose: &ComposeFile,
    errors: &mut Vec<ComposeError>,
) -> NetworkPlan {
    let mut used = BTreeSet::new();
    for (service_key, service) in &compose.services {
        if service.networks.is_empty() {
            used.insert(DEFAULT_NETWORK);
        }
        for key in service.networks.keys() {
            if key != DEFAULT_NETWORK && !compose.networks.contains_key(key) {
                errors.push(ComposeError {
                    path: format!("services.{service_key}.networks.{key}"),
                    message: "undefined network: declare it under the top-level networks"
                        .to_string(),
                });
                continue;
            }
            used.insert(key.as_str());
        }
    }
    let mut plan = NetworkPlan::default();
    let no_config = Network::default();
    for key in used {
        let config = compose.networks.get(key).unwrap_or(&no_config);
        let name = match (&config.name, config.external) {
            (Some(name), _) => name.clone(),
            (None, true) => key.to_string(),
            (None, false) => scope(stack_name, key),
        };
        plan.targets.insert(key.to_string(), name.clone());
        if config.external {
            continue;
        }
        let mut network_labels = config.labels.clone();
        network_labels.insert(labels::STACK_NAMESPACE.to_string(), stack_name.to_string());
        plan.to_create.push(NetworkSpec {
            name,
            driver: config
                .driver
                .clone()
                .unwrap_or_else(|| DEFAULT_DRIVER.to_string()),
            attachable: config.attachable,
            labels: network_labels,
        });
    }
    plan.to_create.sort_by(|a, b| a.name.cmp(&b.name));
    plan
}

/// Whether Docker treats a network name as user-defined (and so supports aliases).
pub fn is_user_defined(name: &str) -> bool {
    !matches!(name, "default" | "bridge" | "host" | "none") && !name.starts_with("container:")
}
