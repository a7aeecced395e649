//! The two list calls of every relist (services, tasks), read without decoding what the
//! observed cache already holds.
//!
//! bollard decodes an answer whole. Listing 1000 services is 2.5 MB of JSON: bollard
//! turns every spec into owned maps and strings (about 7 ms of CPU here) that the relist
//! drops again (3 ms more) when the service is unchanged, as nearly all are in a resync.
//! So these two calls are plain GETs on the connection bollard uses: each entry's header
//! is decoded (id, version index, replica counts, rollout state; a task's state), and its
//! spec is kept as a slice of the answer ([`Deferred::Json`]), decoded only for a
//! version the cache does not hold. Every other call goes through bollard.

use crate::swarm::states::{self, TaskState};
use crate::swarm::{Deferred, ListedService, ListedTask, ObservedTask, SwarmError, undecodable};
use bollard::ClientVersion;
use bollard::errors::Error as DockerError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;

/// Where Docker is when `DOCKER_HOST` is not set (as for bollard and the docker CLI).
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// bollard's request timeout, kept the same for these calls.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Plain HTTP to the endpoint bollard connects to: the list GETs, whose answers are read
/// lazily, and the service writes that carry registry credentials (see
/// [`Lister::post_with_auth`]).
#[derive(Debug, Clone)]
pub(crate) struct Lister {
    client: reqwest::Client,
    /// `http://host[:port]/vX.Y`: every path is appended to it.
    base: String,
}

impl Lister {
    /// A lister for `DOCKER_HOST` (or the local socket) at the negotiated API version.
    pub(crate) fn from_env(version: &ClientVersion) -> Result<Self, SwarmError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_string());
        Self::for_host(&host, version)
    }

    /// A lister for `host`, read the way bollard reads `DOCKER_HOST`: `unix://PATH`, or
    /// `tcp://` / `http://` followed by an address.
    pub(crate) fn for_host(host: &str, version: &ClientVersion) -> Result<Self, SwarmError> {
        let unsupported = |why: &str| SwarmError::Unreachable {
            message: format!("DOCKER_HOST={host}: {why}"),
        };
        // No proxy: the engine's socket or address is reached directly, as bollard does.
        let builder = reqwest::Client::builder().no_proxy().timeout(TIMEOUT);
        let (builder, address) = if let Some(path) = host.strip_prefix("unix://") {
            (builder.unix_socket(path), "docker")
        } else if let Some(address) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            (builder, address)
        } else {
            return Err(unsupported(
                "expected unix://PATH, tcp://HOST:PORT or http://HOST:PORT",
            ));
        };
        let client = builder
            .build()
            .map_err(|err| unsupported(&format!("cannot build an HTTP client: {err}")))?;
        let (major, minor) = (version.major_version, version.minor_version);
        Ok(Self {
            client,
            base: format!("http://{}/v{major}.{minor}", address.trim_end_matches('/')),
        })
    }

    /// `GET /services?status=true`: every service, with its replica counts.
    pub(crate) async fn services(&self) -> Result<Vec<ListedService>, SwarmError> {
        let body = self.get("/services?status=true", "services").await?;
        parse_services(body).map_err(|err| undecodable("list services".into(), &err))
    }

    /// `GET /tasks` with desired state running or ready.
    pub(crate) async fn tasks(&self) -> Result<Vec<ListedTask>, SwarmError> {
        // {"desired-state":["running","ready"]}, percent-encoded.
        let path = "/tasks?filters=%7B%22desired-state%22%3A%5B%22running%22%2C%22ready%22%5D%7D";
        let body = self.get(path, "tasks").await?;
        parse_tasks(body).map_err(|err| undecodable("list tasks".into(), &err))
    }

    /// `POST` of `body` as JSON with an `X-Registry-Auth` header: a service create or
    /// update that carries registry credentials, in the URL-safe base64 the engine decodes
    /// (bollard's own header uses the standard alphabet).
    pub(crate) async fn post_with_auth(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        registry_auth: &str,
        operation: &str,
        what: &str,
    ) -> Result<Bytes, SwarmError> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-Registry-Auth", registry_auth)
            .json(body);
        send(request, operation, what).await
    }

    /// `GET` with an optional `X-Registry-Auth` header (see [`Lister::post_with_auth`]).
    pub(crate) async fn get_with_auth(
        &self,
        path: &str,
        registry_auth: Option<&str>,
        operation: &str,
        what: &str,
    ) -> Result<Bytes, SwarmError> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(auth) = registry_auth {
            request = request.header("X-Registry-Auth", auth);
        }
        send(request, operation, what).await
    }

    async fn get(&self, path: &str, what: &str) -> Result<Bytes, SwarmError> {
        let request = self.client.get(format!("{}{path}", self.base));
        send(request, "list", what).await
    }
}

/// Sends `request` for `{operation} {what}`: the answer's body, or the error mapped as
/// bollard's are (a transport failure is [`SwarmError::Unreachable`]).
async fn send(
    request: reqwest::RequestBuilder,
    operation: &str,
    what: &str,
) -> Result<Bytes, SwarmError> {
    let failed = |err: reqwest::Error| SwarmError::Unreachable {
        message: format!("failed to {operation} {what}: {}", super::error_chain(&err)),
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status();
    let answer = response.bytes().await.map_err(failed)?;
    if status.is_success() {
        Ok(answer)
    } else {
        Err(refused_to(status.as_u16(), &answer, operation, what))
    }
}

/// The error for `operation` on `what` answered with `status` and `body`.
fn refused_to(status: u16, body: &[u8], operation: &str, what: &str) -> SwarmError {
    // Docker's errors are {"message": "..."}; anything else is passed on as text.
    #[derive(Deserialize)]
    struct Refusal {
        message: String,
    }
    let message = serde_json::from_slice::<Refusal>(body)
        .map(|refusal| refusal.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    let refused = DockerError::DockerResponseServerError {
        status_code: status,
        message,
    };
    super::map_error(refused, operation, what)
}

/// The parts of a listed service read at once (Docker's field names).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceEntry<'a> {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    version: VersionEntry,
    #[serde(borrow)]
    spec: Option<&'a RawValue>,
    #[serde(default)]
    service_status: StatusEntry,
    #[serde(default)]
    update_status: UpdateEntry,
    updated_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct VersionEntry {
    #[serde(default)]
    index: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StatusEntry {
    #[serde(default)]
    running_tasks: u64,
    #[serde(default)]
    desired_tasks: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct UpdateEntry {
    state: Option<String>,
    message: Option<String>,
}

/// The parts of a listed task read at once (Docker's field names).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskEntry<'a> {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    slot: Option<i64>,
    #[serde(rename = "NodeID")]
    node_id: Option<String>,
    #[serde(default)]
    desired_state: String,
    #[serde(default)]
    status: TaskStatusEntry,
    #[serde(borrow)]
    spec: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TaskStatusEntry {
    #[serde(default)]
    state: String,
    timestamp: Option<String>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    err: String,
}

/// The spec's JSON text as a slice of the answer, or `{}` where Docker sent none (the
/// empty spec bollard would have defaulted to).
fn deferred<T>(body: &Bytes, spec: Option<&RawValue>) -> Deferred<T> {
    Deferred::Json(spec.map_or_else(
        || Bytes::from_static(b"{}"),
        |raw| body.slice_ref(raw.get().as_bytes()),
    ))
}

/// Reads a list-services answer.
pub(crate) fn parse_services(body: Bytes) -> Result<Vec<ListedService>, serde_json::Error> {
    let entries: Vec<ServiceEntry> = serde_json::from_slice(&body)?;
    Ok(entries
        .into_iter()
        .map(|entry| ListedService {
            id: entry.id,
            version: entry.version.index,
            running_tasks: entry.service_status.running_tasks,
            desired_tasks: entry.service_status.desired_tasks,
            update_state: states::update_state(entry.update_status.state.as_deref()),
            update_message: entry.update_status.message.filter(|m| !m.is_empty()),
            updated_at: entry.updated_at,
            spec: deferred(&body, entry.spec),
        })
        .collect())
}

/// Reads a list-tasks answer; `image` and `up_to_date` are left for the caller.
pub(crate) fn parse_tasks(body: Bytes) -> Result<Vec<ListedTask>, serde_json::Error> {
    let entries: Vec<TaskEntry> = serde_json::from_slice(&body)?;
    Ok(entries
        .into_iter()
        .map(|entry| ListedTask {
            task: ObservedTask {
                id: entry.id,
                service_id: entry.service_id,
                slot: entry.slot,
                node_id: entry.node_id.filter(|node| !node.is_empty()),
                image: String::new(),
                desired_state: TaskState::parse(&entry.desired_state),
                state: TaskState::parse(&entry.status.state),
                state_since: entry.status.timestamp,
                message: entry.status.message,
                error: entry.status.err,
                up_to_date: false,
            },
            spec: deferred(&body, entry.spec),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::ObservedService;
    use crate::swarm::UpdateState;
    use bollard::models::{Service, Task};
    use serde_json::{Value, json};

    fn answer(entries: Value) -> Bytes {
        Bytes::from(serde_json::to_vec(&entries).unwrap())
    }

    /// The services of a list answer as read here, specs decoded.
    fn read_here(entries: &Value) -> Vec<ObservedService> {
        parse_services(answer(entries.clone()))
            .unwrap()
            .into_iter()
            .map(|listed| listed.decode().unwrap())
            .collect()
    }

    /// The same answer as bollard decodes it: the reference.
    fn read_by_bollard(entries: &Value) -> Vec<ObservedService> {
        let services: Vec<Service> = serde_json::from_value(entries.clone()).unwrap();
        services
            .into_iter()
            .map(super::super::observed_service)
            .collect()
    }

    #[test]
    fn a_listed_service_reads_as_bollard_reads_it_with_counts_version_and_rollout() {
        let entries = json!([{
            "ID": "abc",
            "Version": {"Index": 42},
            "CreatedAt": "2024-05-01T09:00:00Z",
            "UpdatedAt": "2024-05-01T10:00:00.123Z",
            "Spec": {
                "Name": "m_a",
                "Labels": {"k": "v", "quoted": "say \"hi\" \u{e9}\n"},
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "img:1", "Env": ["A=1"]},
                    "Resources": {"Limits": {"NanoCPUs": 500000000, "MemoryBytes": 1048576}},
                    "Runtime": "container"
                },
                "Mode": {"Replicated": {"Replicas": 2}},
                "EndpointSpec": {"Mode": "dnsrr"}
            },
            "PreviousSpec": {"Name": "m_a"},
            "Endpoint": {"Spec": {"Mode": "dnsrr"}},
            "UpdateStatus": {"State": "rollback_completed", "Message": "rollback completed"},
            "ServiceStatus": {"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}
        }]);
        let services = read_here(&entries);
        assert_eq!(services, read_by_bollard(&entries));
        let service = &services[0];
        assert_eq!(service.id, "abc");
        assert_eq!(service.version, 42);
        assert_eq!(service.name(), "m_a");
        assert_eq!(service.label("quoted"), Some("say \"hi\" \u{e9}\n"));
        assert_eq!((service.running_tasks, service.desired_tasks), (1, 2));
        assert_eq!(
            service.update_state.as_ref().map(UpdateState::as_str),
            Some("rollback_completed")
        );
        assert_eq!(
            service.update_message.as_deref(),
            Some("rollback completed")
        );
        assert_eq!(
            service.updated_at.as_deref(),
            Some("2024-05-01T10:00:00.123Z")
        );
    }

    #[test]
    fn a_service_never_updated_has_no_rollout_state_and_no_counts() {
        let entries = json!([
            {"ID": "abc", "Spec": {"Name": "m_a"}},
            {"ID": "def", "UpdateStatus": {"State": "", "Message": ""}}
        ]);
        let services = read_here(&entries);
        assert_eq!(services, read_by_bollard(&entries));
        assert_eq!(services[0].update_state, None);
        assert_eq!(
            (services[0].running_tasks, services[0].desired_tasks),
            (0, 0)
        );
        assert_eq!(
            (
                services[1].update_state.as_ref().map(UpdateState::as_str),
                services[1].name()
            ),
            (None, "")
        );
    }

    #[test]
    fn a_spec_is_not_read_until_asked_for_and_a_bad_one_is_an_error_naming_the_service() {
        // The header reads; the spec is only a slice of the answer until decoded.
        let body = answer(json!([{"ID": "abc", "Version": {"Index": 3}, "Spec": {"Name": 7}}]));
        let listed = parse_services(body).unwrap().remove(0);
        assert_eq!((listed.id.as_str(), listed.version), ("abc", 3));
        let Deferred::Json(text) = &listed.spec else {
            panic!("spec decoded early: {:?}", listed.spec)
        };
        assert_eq!(&text[..], br#"{"Name":7}"#);
        let err = listed.decode().unwrap_err();
        assert!(
            matches!(&err, SwarmError::Api { operation, status: 0, message }
                if operation == "read the listed spec of service abc"
                    && message.starts_with("Docker's answer does not decode")),
            "{err:?}"
        );
    }

    #[test]
    fn an_answer_that_is_not_a_list_of_services_does_not_parse() {
        for body in [&b"{}"[..], b"[{\"Version\": {}}]", b"[", b"not json"] {
            assert!(parse_services(Bytes::copy_from_slice(body)).is_err());
            assert!(parse_tasks(Bytes::copy_from_slice(body)).is_err());
        }
    }

    #[test]
    fn a_pending_task_has_no_node_keeps_its_error_and_its_spec_reads_as_bollards() {
        let entry = json!({
            "ID": "t1",
            "Version": {"Index": 9},
            "ServiceID": "abc",
            "Slot": 1,
            "NodeID": "",
            "Spec": {"ContainerSpec": {"Image": "img:1"}, "ForceUpdate": 0},
            "DesiredState": "running",
            "Status": {
                "Timestamp": "2024-05-01T10:00:00Z",
                "State": "pending",
                "Message": "pending task scheduling",
                "Err": "no suitable node (insufficient resources on 1 node)"
            }
        });
        let listed = parse_tasks(answer(json!([entry.clone()])))
            .unwrap()
            .remove(0);
        let by_bollard: Task = serde_json::from_value(entry).unwrap();
        let spec = listed.spec.decode("the task").unwrap();
        assert_eq!(Some(&*spec), by_bollard.spec.as_ref());
        assert_eq!(crate::swarm::image_of(&spec), "img:1");
        let task = listed.task;
        assert_eq!(task.id, "t1");
        assert_eq!(task.service_id, "abc");
        assert_eq!(task.node_id, None);
        assert_eq!(task.slot, Some(1));
        assert_eq!(task.image, "", "left for the caller");
        assert_eq!(task.state.as_str(), "pending");
        assert_eq!(task.desired_state.as_str(), "running");
        assert_eq!(task.state_since.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(task.message, "pending task scheduling");
        assert_eq!(
            task.error,
            "no suitable node (insufficient resources on 1 node)"
        );
    }

    #[test]
    fn a_task_without_a_spec_reads_as_an_empty_spec() {
        let listed = parse_tasks(answer(json!([{"ID": "t1", "NodeID": "n1"}]))).unwrap();
        let spec = listed[0].spec.clone().decode("the task").unwrap();
        assert_eq!(*spec, bollard::models::TaskSpec::default());
        assert_eq!(listed[0].task.node_id.as_deref(), Some("n1"));
    }

    #[test]
    fn a_refusal_maps_like_bollards_errors_with_dockers_words() {
        let err = refused_to(
            500,
            br#"{"message":"this node is not a swarm manager"}"#,
            "list",
            "services",
        );
        assert_eq!(
            err,
            SwarmError::Api {
                operation: "list services".to_string(),
                status: 500,
                message: "this node is not a swarm manager".to_string(),
            }
        );
        let err = refused_to(502, b"Bad Gateway\n", "list", "tasks");
        assert!(
            matches!(&err, SwarmError::Api { status: 502, message, .. } if message == "Bad Gateway"),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn docker_host_is_read_as_bollard_reads_it() {
        let version = ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        let base = |host: &str| Lister::for_host(host, &version).map(|lister| lister.base);
        assert_eq!(
            base("unix:///var/run/docker.sock").unwrap(),
            "http://docker/v1.41"
        );
        assert_eq!(
            base("tcp://10.0.0.5:2375").unwrap(),
            "http://10.0.0.5:2375/v1.41"
        );
        assert_eq!(
            base("http://engine:2375/").unwrap(),
            "http://engine:2375/v1.41"
        );
        let err = base("ssh://me@engine").unwrap_err();
        assert!(
            matches!(&err, SwarmError::Unreachable { message }
                if message.starts_with("DOCKER_HOST=ssh://me@engine: expected unix://PATH")),
            "{err:?}"
        );
    }
}
