//! A stack as Docker receives it: service specs and the networks to create.
//!
//! [`StackSpec`] is what the converter produces from a compose file and what the
//! planner compares with the swarm. [`StackSpec::stamp`] marks every object as
//! mlmodel's and records a hash of each service spec, so a later pass can tell whether
//! a running service still matches its manifest without comparing every field the
//! daemon may have filled in.

use bollard::models::{ConfigSpec, Driver, NetworkCreateRequest, SecretSpec, ServiceSpec};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::SystemTime;

pub use crate::desired::compose::ObjectKind;

/// Label keys mlmodel and Docker's stack tooling put on services and networks.
pub mod labels {
    /// Which mlmodel instance manages the object.
    pub const MANAGED_BY: &str = "mlmodel.managed-by";
    /// The model the object serves.
    pub const NAME: &str = "mlmodel.name";
    /// The deployment that created or last updated the object.
    pub const DEPLOYMENT_ID: &str = "mlmodel.deployment-id";
    /// Hash of the service spec as mlmodel sent it (see [`super::spec_hash`]).
    pub const SPEC_HASH: &str = "mlmodel.spec-hash";
    /// The stack an object belongs to; `docker stack ls/services/ps/rm` select on it.
    pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";
    /// The image as the compose file wrote it, before any digest was pinned.
    pub const STACK_IMAGE: &str = "com.docker.stack.image";
    /// The deployment record (without its rendered template) as JSON, so a lost store
    /// can be rebuilt from the swarm.
    pub const RECORD: &str = "mlmodel.record";
}

/// Everything one stack deploys: services, and the stack's own networks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackSpec {
    /// The stack (namespace) name.
    pub name: String,
    /// Service specs, sorted by service name.
    pub services: Vec<ServiceSpec>,
    /// Networks the stack creates (external ones are not listed), sorted by name.
    pub networks: Vec<NetworkSpec>,
    /// Secrets and configs the services use, sorted by kind and name: the ones the stack
    /// creates and the external ones it only references.
    pub objects: Vec<ObjectSpec>,
    /// What the compose file has that is accepted but not deployed as written.
    pub warnings: Vec<crate::desired::compose::ComposeWarning>,
}

/// A network the stack creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Docker network name (`<stack>_<key>` unless the file names it).
    pub name: String,
    /// Driver, `overlay` unless the file says otherwise.
    pub driver: String,
    /// Whether standalone containers may attach.
    pub attachable: bool,
    /// Labels, including the stack namespace label.
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    /// The request that creates this network, as `docker stack deploy` sends it.
    ///
    /// The CLI leaves scope, IPAM and options to the daemon (an overlay network is
    /// swarm-scoped). It also asks older daemons to refuse a duplicate name; the API
    /// model here cannot, so check that the name is free before creating.
    pub fn create_request(&self) -> NetworkCreateRequest {
        NetworkCreateRequest {
            name: self.name.clone(),
            driver: Some(self.driver.clone()),
            attachable: Some(self.attachable),
            labels: Some(
                self.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        }
    }
}

/// A secret or config a stack's services use.
///
/// Swarm cannot change an object's content once a service uses it, so mlmodel names
/// each one it creates after its content: Docker's name (`<stack>_<key>`, or `name:`),
/// a `-` and [`OBJECT_HASH_LEN`] hex characters of a hash of the content, labels and
/// drivers. New content is a new object; the services move to it and the old one is
/// removed once none uses it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ObjectSpec {
    /// Secret or config.
    pub kind: ObjectKind,
    /// The compose key.
    pub key: String,
    /// The name mlmodel creates and references it under (an external one's own name).
    pub name: String,
    /// The name `docker stack deploy` gives it (no content hash).
    pub docker_name: String,
    /// It exists already; mlmodel only looks it up.
    pub external: bool,
    /// The content (empty for an external object, or a secret from a driver).
    pub data: Vec<u8>,
    /// Labels, including the stack namespace label.
    pub labels: BTreeMap<String, String>,
    /// The secret driver and its options, if the content comes from one.
    pub driver: Option<(String, BTreeMap<String, String>)>,
    /// The templating driver, if any.
    pub templating: Option<String>,
    /// The file the content was read from, to notice when it changes.
    pub read_from: Option<FileStamp>,
}

/// Debug output leaves the content out (a secret's bytes must never reach a log).
impl std::fmt::Debug for ObjectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSpec")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("name", &self.name)
            .field("docker_name", &self.docker_name)
            .field("external", &self.external)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("labels", &self.labels)
            .field("driver", &self.driver)
            .field("templating", &self.templating)
            .field("read_from", &self.read_from)
            .finish()
    }
}

/// Hex characters of the content hash in the name of an object mlmodel creates.
pub const OBJECT_HASH_LEN: usize = 10;

/// A file as it was when read: its path, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    /// The file's path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
    /// Its modification time, where the file system keeps one.
    pub modified: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: PathBuf) -> std::io::Result<Self> {
        let meta = std::fs::metadata(&path)?;
        Ok(Self {
            path,
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    /// Whether the file is no longer as stamped (changed, or unreadable).
    pub fn is_stale(&self) -> bool {
        Self::of(self.path.clone()).map_or(true, |now| now != *self)
    }
}

impl ObjectSpec {
    /// The name for this content: `base`, `-` and the content hash.
    pub fn hashed_name(&self, base: &str) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(&self.data);
        for (key, value) in &self.labels {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        if let Some((driver, options)) = &self.driver {
            field(driver.as_bytes());
            for (key, value) in options {
                field(key.as_bytes());
                field(value.as_bytes());
            }
        }
        field(self.templating.as_deref().unwrap_or_default().as_bytes());
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("{base}-{}", &hex[..OBJECT_HASH_LEN])
    }

    fn labels_map(&self) -> Option<HashMap<String, String>> {
        Some(
            self.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// The request that creates this object as a secret.
    pub fn secret_spec(&self) -> SecretSpec {
        use base64::Engine;
        SecretSpec {
            name: Some(self.name.clone()),
            labels: self.labels_map(),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&self.data)),
            driver: self.driver.as_ref().map(|(name, options)| Driver {
                name: name.clone(),
                options: Some(options.clone().into_iter().collect()),
            }),
            templating: self.templating_driver(),
        }
    }

    /// The request that creates this object as a config.
    pub fn config_spec(&self) -> ConfigSpec {
        use base64::Engine;
        ConfigSpec {
            name: Some(self.name.clone()),
            labels: self.labels_map(),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&self.data)),
            templating: self.templating_driver(),
        }
    }

    fn templating_driver(&self) -> Option<Driver> {
        self.templating.as_ref().map(|name| Driver {
            name: name.clone(),
            options: None,
        })
    }
}

/// One reference of a service spec to a secret or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    /// Secret or config.
    pub kind: ObjectKind,
    /// The object's name ("" if none).
    pub name: &'a str,
    /// The object's id, once known.
    pub id: Option<&'a str>,
    /// The file in the container ("" for a config's runtime target).
    pub target: &'a str,
}

/// Every secret and config reference of a service spec, secrets first.
pub fn object_refs(spec: &ServiceSpec) -> impl Iterator<Item = ObjectRef<'_>> {
    let container = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref());
    let secrets = container
        .and_then(|c| c.secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|s| ObjectRef {
            kind: ObjectKind::Secret,
            name: s.secret_name.as_deref().unwrap_or_default(),
            id: s.secret_id.as_deref(),
            target: s
                .file
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .unwrap_or_default(),
        });
    let configs = container
        .and_then(|c| c.configs.as_ref())
        .into_iter()
        .flatten()
        .map(|c| ObjectRef {
            kind: ObjectKind::Config,
            name: c.config_name.as_deref().unwrap_or_default(),
            id: c.config_id.as_deref(),
            target: c
                .file
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .unwrap_or_default(),
        });
    secrets.chain(configs)
}

/// The names of the secrets and configs a service spec references, by kind.
pub fn object_names(spec: &ServiceSpec) -> impl Iterator<Item = (ObjectKind, &str)> {
    object_refs(spec).map(|r| (r.kind, r.name))
}

/// `spec` with the id of every secret and config it references filled in from `id_of`;
/// the first name without an id is the error.
pub fn with_object_ids(
    spec: &ServiceSpec,
    id_of: impl Fn(ObjectKind, &str) -> Option<String>,
) -> Result<ServiceSpec, (ObjectKind, String)> {
    let mut spec = spec.clone();
    let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(spec);
    };
    for secret in container.secrets.iter_mut().flatten() {
        let name = secret.secret_name.clone().unwrap_or_default();
        secret.secret_id =
            Some(id_of(ObjectKind::Secret, &name).ok_or((ObjectKind::Secret, name))?);
    }
    for config in container.configs.iter_mut().flatten() {
        let name = config.config_name.clone().unwrap_or_default();
        config.config_id =
            Some(id_of(ObjectKind::Config, &name).ok_or((ObjectKind::Config, name))?);
    }
    // A credential spec read from a config names it by id, like the references.
    let credential = container
        .privileges
        .as_mut()
        .and_then(|p| p.credential_spec.as_mut());
    if let Some(credential) = credential
        && let Some(name) = credential.config.clone().filter(|name| !name.is_empty())
    {
        credential.config =
            Some(id_of(ObjectKind::Config, &name).ok_or((ObjectKind::Config, name))?);
    }
    Ok(spec)
}

/// Who owns a stack: the mlmodel instance, the model and the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership<'a> {
    /// The managing mlmodel instance.
    pub instance: &'a str,
    /// The model's name.
    pub model: &'a str,
    /// The deployment's id.
    pub deployment_id: &'a str,
}

impl StackSpec {
    /// Labels every service and network with `owner`, then each service with its hash.
    pub fn stamp(&mut self, owner: &Ownership) {
        let ownership = [
            (labels::MANAGED_BY, owner.instance),
            (labels::NAME, owner.model),
            (labels::DEPLOYMENT_ID, owner.deployment_id),
        ];
        for service in &mut self.services {
            let service_labels = service.labels.get_or_insert_with(Default::default);
            for (key, value) in ownership {
                service_labels.insert(key.to_string(), value.to_string());
            }
            let hash = spec_hash(service);
            service
                .labels
                .get_or_insert_with(Default::default)
                .insert(labels::SPEC_HASH.to_string(), hash);
        }
        for network in &mut self.networks {
            for (key, value) in ownership {
                network.labels.insert(key.to_string(), value.to_string());
            }
        }
        // The content hash in an object's name leaves these labels out, so a new
        // deployment with the same content reuses the object.
        for object in self.objects.iter_mut().filter(|o| !o.external) {
            for (key, value) in ownership {
                object.labels.insert(key.to_string(), value.to_string());
            }
        }
    }
}

/// A stable hex SHA-256 of a service spec, ignoring its own spec-hash label.
///
/// The spec is hashed as canonical JSON (object keys sorted at every level), so the
/// result depends on the spec's content only, never on `HashMap` iteration order.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let mut spec = spec.clone();
    if let Some(service_labels) = spec.labels.as_mut() {
        service_labels.remove(labels::SPEC_HASH);
    }
    // Serializing a ServiceSpec cannot fail: every map key is a string and serde_json
    // writes non-finite floats as null.
    let value = serde_json::to_value(&spec).expect("a service spec always serializes to JSON");
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes `value` as JSON with object keys sorted, whatever serde_json's map order.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{TaskSpec, TaskSpecContainerSpec};
    use std::collections::HashMap;

    fn service(name: &str, label_pairs: &[(&str, &str)]) -> ServiceSpec {
        ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(
                label_pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("mlmodel-test/static-http:1".to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn owner() -> Ownership<'static> {
        Ownership {
            instance: "prod",
            model: "carls_model",
            deployment_id: "d-1",
        }
    }

    #[test]
    fn spec_hash_ignores_label_insertion_order() {
        let pairs: Vec<(String, String)> = (0..50)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let forward: HashMap<String, String> = pairs.iter().cloned().collect();
        let mut backward = HashMap::with_capacity(1);
        for (k, v) in pairs.iter().rev() {
            backward.insert(k.clone(), v.clone());
        }
        let mut a = service("s_web", &[]);
        let mut b = service("s_web", &[]);
        a.labels = Some(forward);
        b.labels = Some(backward);
        assert_eq!(spec_hash(&a), spec_hash(&b));
        assert_eq!(spec_hash(&a).len(), 64);
    }

    #[test]
    fn spec_hash_ignores_its_own_label_but_not_others() {
        let plain = service("s_web", &[("a", "1")]);
        let hashed = service("s_web", &[("a", "1"), (labels::SPEC_HASH, "whatever")]);
        let changed = service("s_web", &[("a", "2")]);
        assert_eq!(spec_hash(&plain), spec_hash(&hashed));
        assert_ne!(spec_hash(&plain), spec_hash(&changed));
    }

    #[test]
    fn stamp_labels_services_and_networks_with_their_owner() {
        let mut stack = StackSpec {
            name: "s".to_string(),
            services: vec![service("s_web", &[(labels::STACK_NAMESPACE, "s")])],
            networks: vec![NetworkSpec {
                name: "s_default".to_string(),
                driver: "overlay".to_string(),
                ..Default::default()
            }],
            ..Default::default()
        };
        stack.stamp(&owner());
        let service_labels = stack.services[0].labels.as_ref().unwrap();
        assert_eq!(service_labels[labels::MANAGED_BY], "prod");
        assert_eq!(service_labels[labels::NAME], "carls_model");
        assert_eq!(service_labels[labels::DEPLOYMENT_ID], "d-1");
        assert_eq!(
            service_labels[labels::SPEC_HASH],
            spec_hash(&stack.services[0])
        );
        assert_eq!(stack.networks[0].labels[labels::MANAGED_BY], "prod");
        assert!(!stack.networks[0].labels.contains_key(labels::SPEC_HASH));
    }

    #[test]
    fn an_objects_debug_output_leaves_its_content_out() {
        let object = ObjectSpec {
            name: "s_token-0123456789".into(),
            data: b"hunter2".to_vec(),
            ..Default::default()
        };
        let shown = format!("{object:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<7 bytes>"), "{shown}");
    }

    #[test]
    fn stamping_twice_gives_the_same_hash() {
        let mut stack = StackSpec {
            name: "s".to_string(),
            services: vec![service("s_web", &[])],
            ..Default::default()
        };
        stack.stamp(&owner());
        let first = stack.services[0].labels.clone();
        stack.stamp(&owner());
        assert_eq!(stack.services[0].labels, first);
    }
}
