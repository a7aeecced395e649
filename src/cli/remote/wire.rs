//! The JSON the API answers with, read leniently.
//!
//! Missing fields and `null`s take empty values and unknown fields are kept, so a client
//! and a server of different versions still work together, and `-o json` prints
//! everything the server said. Times may arrive as numbers or, as the original service
//! sent them in histories, as strings of a number.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value as Json};

/// What `GET /{name}/status` says about one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Model name.
    pub name: String,
    /// A valid record exists for it.
    #[serde(default, deserialize_with = "or_default")]
    pub valid: bool,
    /// Its services exist in the swarm.
    #[serde(default, deserialize_with = "or_default")]
    pub active: bool,
    /// Lifecycle phase: Pending, Progressing, Available, Degraded, Failed or Removed.
    #[serde(default, deserialize_with = "or_default")]
    pub phase: String,
    /// The last problem, in words a user can act on.
    #[serde(default, deserialize_with = "or_default")]
    pub message: String,
    /// Tasks running.
    #[serde(default, deserialize_with = "or_default")]
    pub replicas_running: u64,
    /// Tasks desired.
    #[serde(default, deserialize_with = "or_default")]
    pub replicas_desired: u64,
    /// The live services match the desired stack.
    #[serde(default, deserialize_with = "or_default")]
    pub synced: bool,
    /// A manifest path, "api" or "adopted".
    #[serde(default)]
    pub source: Option<String>,
    /// The applied deployment.
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// When the applied deployment was recorded, unix seconds.
    #[serde(default, deserialize_with = "unix_time")]
    pub deployment_time: Option<f64>,
    /// Image of the first service.
    #[serde(default)]
    pub image: Option<String>,
    /// The digest that image is pinned to.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Live services.
    #[serde(default, deserialize_with = "or_default")]
    pub services: Vec<Service>,
    /// Tasks of the live services.
    #[serde(default, deserialize_with = "or_default")]
    pub tasks: Vec<Task>,
    /// When the swarm was last observed, unix seconds.
    #[serde(default, deserialize_with = "unix_time")]
    pub observed_at: Option<f64>,
    /// What the stack has that is accepted but not deployed as written.
    #[serde(default, deserialize_with = "or_default")]
    pub warnings: Vec<String>,
    /// Fields this client does not know, kept for `-o json`.
    #[serde(flatten)]
    pub other: Map<String, Json>,
}

/// One event of a model, as `GET /{name}/events` and the watch stream send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The model (in the watch stream; a model's own list leaves it out).
    #[serde(default)]
    pub model: Option<String>,
    /// When it last happened, unix seconds.
    #[serde(default, deserialize_with = "or_default")]
    pub time: f64,
    /// Normal or Warning.
    #[serde(rename = "type", default, deserialize_with = "or_default")]
    pub kind: String,
    /// One CamelCase word.
    #[serde(default, deserialize_with = "or_default")]
    pub reason: String,
    /// What happened.
    #[serde(default, deserialize_with = "or_default")]
    pub message: String,
    /// How many times.
    #[serde(default, deserialize_with = "or_default")]
    pub count: u64,
    /// Fields this client does not know, kept for `-o json`.
    #[serde(flatten)]
    pub other: Map<String, Json>,
}

/// One live service of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Service name.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// Image of its spec.
    #[serde(default, deserialize_with = "or_default")]
    pub image: String,
    /// "running/desired".
    #[serde(default, deserialize_with = "or_default")]
    pub replicas: String,
}

/// One task of a model's services, as the status reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// `<service>.<slot>`.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// Image of the task.
    #[serde(default, deserialize_with = "or_default")]
    pub image: String,
    /// Node it runs on.
    #[serde(default, deserialize_with = "or_default")]
    pub node: String,
    /// Desired state ("Running", "Shutdown").
    #[serde(default, deserialize_with = "or_default")]
    pub desired_state: String,
    /// Current state ("Running", "Rejected").
    #[serde(default, deserialize_with = "or_default")]
    pub state: String,
    /// When it entered the current state, RFC 3339.
    #[serde(default)]
    pub since: Option<String>,
    /// Swarm's error for the task.
    #[serde(default, deserialize_with = "or_default")]
    pub error: String,
}

/// One container of a deployment record, as the original API listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Container {
    /// `<service>.<slot>`.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// Image of the task.
    #[serde(default, deserialize_with = "or_default")]
    pub image: String,
    /// Node it runs on.
    #[serde(default, deserialize_with = "or_default")]
    pub node: String,
    /// Desired state.
    #[serde(default, deserialize_with = "or_default")]
    pub desired_state: String,
    /// Current state with its age, e.g. "Running 6 minutes ago".
    #[serde(default, deserialize_with = "or_default")]
    pub current_state: String,
    /// Swarm's error for the task.
    #[serde(default, deserialize_with = "or_default")]
    pub error: String,
}

/// A deployment record exactly as the server sent it, with typed accessors.
///
/// Kept as a JSON object so `diff` compares every field the server has and old records
/// missing newer fields still show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Record(pub Map<String, Json>);

impl Record {
    /// A field as a one-line text: strings bare, numbers as written, absent or null as "".
    pub fn text(&self, field: &str) -> String {
        match self.0.get(field) {
            None | Some(Json::Null) => String::new(),
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// Model name.
    pub fn name(&self) -> String {
        self.text("name")
    }

    /// The deployment's id.
    pub fn deployment_id(&self) -> String {
        self.text("deployment_id")
    }

    /// When the deployment was recorded, unix seconds.
    pub fn deployment_time(&self) -> Option<f64> {
        self.0.get("deployment_time").and_then(time_value)
    }

    /// The containers the server listed with the record.
    pub fn containers(&self) -> Vec<Container> {
        self.list("containers")
    }

    /// The swarm services the server listed with the record.
    pub fn services(&self) -> Vec<Service> {
        self.list("swarm_services")
    }

    fn list<T: serde::de::DeserializeOwned>(&self, field: &str) -> Vec<T> {
        self.0
            .get(field)
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_default()
    }
}

/// A number of seconds given as a number or as a string of one.
pub fn time_value(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unix_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    Ok(time_value(&Json::deserialize(deserializer)?))
}

fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_reads_nulls_and_missing_fields_as_empty_and_keeps_unknown_ones() {
        let status: Status = serde_json::from_value(json!({
            "name": "carls_model",
            "phase": "Pending",
            "message": null,
            "deployment_time": "1586932393.5",
            "future_field": 7
        }))
        .unwrap();
        assert_eq!(status.name, "carls_model");
        assert_eq!(status.message, "");
        assert_eq!(status.deployment_time, Some(1586932393.5));
        assert!(status.tasks.is_empty());
        assert_eq!(status.other.get("future_field"), Some(&json!(7)));
        let back = serde_json::to_value(&status).unwrap();
        assert_eq!(back["future_field"], json!(7));
    }

    #[test]
    fn record_accessors_read_numbers_strings_and_lists() {
        let record: Record = serde_json::from_value(json!({
            "name": "carls_model",
            "scale": 2,
            "deployment_time": 1586932393.25,
            "containers": [{"name": "c.1", "current_state": "Running 6 minutes ago", "error": ""}],
            "swarm_services": [{"name": "s", "image": "i", "replicas": "2/2"}]
        }))
        .unwrap();
        assert_eq!(record.text("scale"), "2");
        assert_eq!(record.text("missing"), "");
        assert_eq!(record.deployment_time(), Some(1586932393.25));
        assert_eq!(
            record.containers()[0].current_state,
            "Running 6 minutes ago"
        );
        assert_eq!(record.services()[0].replicas, "2/2");
    }
}
