//! The deployment record: what one model declares, and the history entry mlmodel keeps.
//!
//! [`ModelSpec`] holds the fields a user writes (in a manifest or an API body) with the
//! original service's defaults filled in. [`DeploymentRecord`] is one entry of a model's
//! history: the spec plus the server-assigned id, time and rendered stack.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Default values, as the original service had them.
pub mod defaults {
    /// Port the model's container listens on.
    pub const PORT: u16 = 80;
    /// Number of replicas.
    pub const SCALE: u64 = 2;
    /// CPU limit per replica.
    pub const CPU_LIMIT: &str = "1";
    /// CPU reservation per replica.
    pub const CPU_RESERVATION: &str = "0.1";
    /// Memory limit per replica.
    pub const MEM_LIMIT: &str = "2G";
    /// Memory reservation per replica.
    pub const MEM_RESERVATION: &str = "1G";
    /// Delay between updating batches of tasks during a rollout.
    pub const DEPLOY_DELAY: &str = "5s";
    /// How long each updated task is watched for failure.
    pub const DEPLOY_MONITOR_PERIOD: &str = "30s";
    /// Template used to render the stack.
    pub const TEMPLATE_FILE: &str = "default.template.yml";
}

/// Largest `scale` accepted: far above what one model needs, low enough to catch typos.
pub const MAX_SCALE: u64 = 1000;

/// What a user declares for one model, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Model name; also the key everything else is indexed by.
    pub name: String,
    /// Host name the proxy routes to the model.
    pub domain: String,
    /// Docker image reference of the model server.
    pub image: String,
    /// Port the model's container listens on.
    pub port: u16,
    /// Build that produced the image.
    pub build_id: String,
    /// Training run that produced the model.
    pub run_id: String,
    /// Number of replicas.
    pub scale: u64,
    /// CPU limit per replica, in CPUs.
    pub cpu_limit: String,
    /// CPU reservation per replica, in CPUs.
    pub cpu_reservation: String,
    /// Memory limit per replica, Docker size grammar.
    pub mem_limit: String,
    /// Memory reservation per replica, Docker size grammar.
    pub mem_reservation: String,
    /// Delay between rollout batches, Go duration.
    pub deploy_delay: String,
    /// Failure watch after each updated task, Go duration.
    pub deploy_monitor_period: String,
    /// Template file name in the templates directory.
    pub template_file: String,
    /// The original service's name for the template: `X` selects `X.template.yml`.
    ///
    /// Filled from `template_file` when that has the form `X.template.yml`, so every
    /// record answers it; `None` for templates named otherwise. Records stored before
    /// the field existed read as `None`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Node resources each replica reserves, by kind: `{"NVIDIA-GPU": 1}`. Swarm places a
    /// replica only on a node that advertises that many of the kind (dockerd's
    /// `node-generic-resources`); the default template turns it into
    /// `deploy.resources.reservations.generic_resources`. Left out of the record when
    /// empty, so records and spec hashes from before the field are unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generic_resources: BTreeMap<String, u64>,
    /// Whether a resync that finds the image's tag moved to a new digest rolls the
    /// model out to it, as a new deployment; `None` follows the server's
    /// `--follow-tags`. Left out of the record when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_tag: Option<bool>,
    /// Extra variables for the template, merged at its top level.
    pub extra_template_attributes: BTreeMap<String, Json>,
}

/// The fields of [`ModelSpec`], in the order errors and docs list them.
pub const SPEC_FIELDS: &[&str] = &[
    "name",
    "domain",
    "image",
    "port",
    "build_id",
    "run_id",
    "scale",
    "cpu_limit",
    "cpu_reservation",
    "mem_limit",
    "mem_reservation",
    "deploy_delay",
    "deploy_monitor_period",
    "template_file",
    "model_type",
    "generic_resources",
    "follow_tag",
    "extra_template_attributes",
];

impl ModelSpec {
    /// The `model_type` to answer: the stored one, or for a record stored before the field
    /// existed, the one its `template_file` stands for.
    pub fn shown_model_type(&self) -> Option<&str> {
        self.model_type
            .as_deref()
            .or_else(|| model_type_of_template(&self.template_file))
    }
}

/// The suffix that turns a `model_type` into its template file name.
pub const MODEL_TYPE_SUFFIX: &str = ".template.yml";

/// The template a `model_type` selects, as the original service chose it.
pub fn template_for_model_type(model_type: &str) -> String {
    format!("{model_type}{MODEL_TYPE_SUFFIX}")
}

/// The `model_type` a template file name stands for, if it is named `X.template.yml`.
pub fn model_type_of_template(template_file: &str) -> Option<&str> {
    template_file
        .strip_suffix(MODEL_TYPE_SUFFIX)
        .filter(|stem| !stem.is_empty())
}

/// Fields the server assigns; a manifest or request may not set them.
pub const SERVER_FIELDS: &[&str] = &[
    "deployment_id",
    "deployment_time",
    "rendered_template",
    "containers",
    "swarm_services",
];

/// One entry of a model's deployment history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// What was declared.
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// 32 lowercase hex characters, unique per deployment.
    pub deployment_id: String,
    /// When the deployment was recorded, unix seconds with fraction.
    pub deployment_time: f64,
    /// The compose stack the template rendered for this deployment.
    #[serde(default)]
    pub rendered_template: String,
    /// The digest the image's tag had moved to when a resync followed it (see
    /// `follow_tag`): the deployment runs `image@digest`. Left out when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

/// A fresh deployment id: a random UUID as 32 lowercase hex characters.
pub fn new_deployment_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The current time as unix seconds with fraction.
pub fn now_unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One entry of a model's history: the record and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The deployment record.
    pub record: DeploymentRecord,
    /// Who declared it.
    pub source: Source,
}

/// Where a deployment record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A file in the manifests directory.
    File {
        /// The manifest file, as shown to users.
        path: String,
    },
    /// A request to the HTTP API.
    Api,
    /// A service found running in the swarm and taken over.
    Adopted,
}

impl std::fmt::Display for Source {
    /// The manifest path, `api` or `adopted`: how the status and labels show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path } => f.write_str(path),
            Self::Api => f.write_str("api"),
            Self::Adopted => f.write_str("adopted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_are_32_lowercase_hex_and_unique() {
        let a = new_deployment_id();
        let b = new_deployment_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn a_record_without_model_type_shows_the_one_its_template_stands_for() {
        let mut spec = crate::desired::validate::tests::good_spec();
        spec.model_type = None;
        assert_eq!(spec.shown_model_type(), Some("default"));
        spec.template_file = "custom.yml".into();
        assert_eq!(spec.shown_model_type(), None);
        spec.model_type = Some("gpu".into());
        assert_eq!(spec.shown_model_type(), Some("gpu"));
    }

    #[test]
    fn record_serialises_flat_with_the_original_field_names() {
        let record = DeploymentRecord {
            spec: ModelSpec {
                name: "carls_model".into(),
                domain: "carls-model.com".into(),
                image: "qarlm/static-http-response-server".into(),
                port: 80,
                build_id: "b".into(),
                run_id: "r".into(),
                scale: 2,
                cpu_limit: "1".into(),
                cpu_reservation: "0.1".into(),
                mem_limit: "2G".into(),
                mem_reservation: "1G".into(),
                deploy_delay: "5s".into(),
                deploy_monitor_period: "30s".into(),
                template_file: "default.template.yml".into(),
                model_type: Some("default".into()),
                generic_resources: Default::default(),
                follow_tag: None,
                extra_template_attributes: BTreeMap::new(),
            },
            deployment_id: new_deployment_id(),
            deployment_time: 1586932393.268678,
            rendered_template: String::new(),
            image_digest: None,
        };
        let json = serde_json::to_value(&record).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        // generic_resources, follow_tag and image_digest are written only when set, so
        // that records (and the spec hashes of services) from before them are unchanged.
        let only_when_set = ["generic_resources", "follow_tag", "image_digest"];
        for field in SPEC_FIELDS
            .iter()
            .chain(&SERVER_FIELDS[..3])
            .filter(|f| !only_when_set.contains(f))
        {
            assert!(keys.contains(field), "missing {field} in {keys:?}");
        }
        for field in only_when_set {
            assert!(!keys.contains(&field), "{field} written while unset");
        }
        let mut with_gpu = record.clone();
        with_gpu
            .spec
            .generic_resources
            .insert("NVIDIA-GPU".into(), 1);
        assert_eq!(
            serde_json::to_value(&with_gpu).unwrap()["generic_resources"],
            serde_json::json!({"NVIDIA-GPU": 1})
        );
        assert_eq!(
            json["deployment_time"],
            serde_json::json!(1586932393.268678)
        );
        let back: DeploymentRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
