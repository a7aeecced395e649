//! [`DockerSwarm`]: the [`Swarm`] trait over the Docker Engine API (bollard).
//!
//! A thin adapter: one Docker call per trait method, values mapped into mlmodel's types,
//! errors mapped by status code. No retries and no caching: deciding what to do about a
//! failure is the reconciler's job. The two list calls of a relist skip bollard's
//! decoding of every spec, and a service create or update with registry credentials
//! sends its own `X-Registry-Auth` (bollard's encoding is not the engine's), see `lists`.

mod lists;

use super::registry::Credentials;
use super::{
    ListedNetwork, ListedObject, ListedService, ListedTask, LogChunk, LogQuery, NetworkRequest,
    ObjectKind, ObjectRequest, ObservedNode, ObservedService, Swarm, SwarmError, SwarmEvent,
    SwarmInfo, states,
};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    EventMessage, EventMessageTypeEnum, Ipam, IpamConfig, NetworkCreateRequest, Node, Service,
    ServiceSpec,
};
use bollard::query_parameters::{
    EventsOptions, ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions,
    LogsOptions, UpdateServiceOptions,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::collections::HashMap;

/// The real swarm, reached through the Docker Engine API.
#[derive(Debug, Clone)]
pub struct DockerSwarm {
    docker: Docker,
    lists: lists::Lister,
    credentials: Credentials,
}

impl DockerSwarm {
    /// Connects the standard way (`DOCKER_HOST`, else the local socket) and negotiates the
    /// API version.
    ///
    /// bollard's default API version is newer than older engines accept (Docker 20.10 stops
    /// at 1.41 and answers 400 to a path versioned newer), so the client is downgraded to
    /// the server's version before anything else. bollard 0.21.1 happens to drop the
    /// version from request paths, which the engine then serves at its own newest version;
    /// negotiating keeps this working if that changes. It makes one request, so an absent
    /// daemon shows up here as [`SwarmError::Unreachable`].
    pub async fn connect() -> Result<Self, SwarmError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|err| map_error(err, "connect to", "docker"))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|err| map_error(err, "negotiate the API version with", "docker"))?;
        let lists = lists::Lister::from_env(&docker.client_version())?;
        Ok(Self {
            docker,
            lists,
            credentials: Credentials::from_env(),
        })
    }

    /// The `X-Registry-Auth` header for the image `spec` runs, when there are credentials
    /// for its registry. As with the docker CLI, credentials that cannot be read are left
    /// out (with a warning) rather than failing the deploy: a public image still pulls.
    fn registry_auth(&self, spec: &ServiceSpec) -> Option<String> {
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.as_deref())?;
        self.auth_for(image)
    }

    /// The `X-Registry-Auth` header for `image`'s registry, if there are credentials.
    fn auth_for(&self, image: &str) -> Option<String> {
        match self.credentials.for_image(image) {
            Ok(found) => found.map(|auth| auth.header()),
            Err(error) => {
                tracing::warn!(image, error = %error, "registry credentials left out");
                None
            }
        }
    }

    /// The underlying client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

#[async_trait]
impl Swarm for DockerSwarm {
    async fn info(&self) -> Result<SwarmInfo, SwarmError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|err| map_error(err, "read info of", "docker"))?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(SwarmInfo {
            server_version: info.server_version.unwrap_or_default(),
            local_node_state: swarm
                .local_node_state
                .map(|state| state.to_string())
                .unwrap_or_default(),
            is_manager: swarm.control_available.unwrap_or(false),
            node_id: swarm.node_id.unwrap_or_default(),
            address_pools: swarm
                .cluster
                .and_then(|cluster| cluster.default_addr_pool)
                .unwrap_or_default(),
        })
    }

    async fn list_services(&self) -> Result<Vec<ListedService>, SwarmError> {
        self.lists.services().await
    }

    async fn inspect_service(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedService>, SwarmError> {
        match self.docker.inspect_service(id_or_name, None).await {
            Ok(service) => Ok(Some(observed_service(service))),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(map_error(err, "inspect", &format!("service {id_or_name}"))),
        }
    }

    async fn create_service(&self, spec: &ServiceSpec) -> Result<String, SwarmError> {
        let what = format!("service {}", spec.name.as_deref().unwrap_or_default());
        let created = match self.registry_auth(spec) {
            None => self
                .docker
                .create_service(spec.clone(), None)
                .await
                .map_err(|err| map_error(err, "create", &what))?,
            Some(auth) => {
                let answer = self
                    .lists
                    .post_with_auth("/services/create", spec, &auth, "create", &what)
                    .await?;
                serde_json::from_slice(&answer)
                    .map_err(|err| super::undecodable(format!("create {what}"), &err))?
            }
        };
        log_warnings(&what, created.warnings.as_deref());
        created.id.ok_or_else(|| SwarmError::Api {
            operation: format!("create {what}"),
            status: 0,
            message: "docker answered without the new service's id".to_string(),
        })
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<(), SwarmError> {
        let what = format!("service {id}");
        // bollard carries the index as i32 while Docker's is a u64 raft index; it would take
        // two billion writes to the swarm to overflow, but refuse rather than wrap.
        let version = i32::try_from(version).map_err(|_| SwarmError::Api {
            operation: format!("update {what}"),
            status: 0,
            message: format!("version index {version} is too large for the client to send"),
        })?;
        let options = UpdateServiceOptions {
            version,
            ..Default::default()
        };
        let updated: bollard::models::ServiceUpdateResponse = match self.registry_auth(spec) {
            None => self
                .docker
                .update_service(id, spec.clone(), options, None)
                .await
                .map_err(|err| map_error(err, "update", &what))?,
            Some(auth) => {
                let path = format!("/services/{id}/update?version={version}");
                let answer = self
                    .lists
                    .post_with_auth(&path, spec, &auth, "update", &what)
                    .await?;
                serde_json::from_slice(&answer)
                    .map_err(|err| super::undecodable(format!("update {what}"), &err))?
            }
        };
        log_warnings(&what, updated.warnings.as_deref());
        Ok(())
    }

    async fn remove_service(&self, id: &str) -> Result<(), SwarmError> {
        match self.docker.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(err) => Err(map_error(err, "remove", &format!("service {id}"))),
        }
    }

    async fn list_tasks(&self) -> Result<Vec<ListedTask>, SwarmError> {
        // Desired "ready" as well as "running": a task that was rejected (missing image)
        // or failed waits out its restart delay with desired state Ready, and it is the
        // only current task that carries Swarm's error. Older attempts are desired
        // Shutdown.
        self.lists.tasks().await
    }

    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, SwarmError> {
        let nodes = self
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|err| map_error(err, "list", "nodes"))?;
        Ok(nodes.into_iter().map(observed_node).collect())
    }

    async fn network_id(&self, name: &str) -> Result<Option<String>, SwarmError> {
        // Docker's name filter matches substrings ("mlmodel" finds "mlmodel-test" too), so
        // the exact name is checked here.
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let options = ListNetworksOptions {
            filters: Some(filters),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|err| map_error(err, "look up", &format!("network {name}")))?;
        Ok(networks
            .into_iter()
            .find(|network| network.name.as_deref() == Some(name))
            .and_then(|network| network.id))
    }

    async fn list_networks(&self) -> Result<Vec<ListedNetwork>, SwarmError> {
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|err| map_error(err, "list", "networks"))?;
        Ok(networks
            .into_iter()
            .map(|network| ListedNetwork {
                id: network.id.unwrap_or_default(),
                name: network.name.unwrap_or_default(),
                driver: network.driver.unwrap_or_default(),
                scope: network.scope.unwrap_or_default(),
                subnets: network
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|config| config.subnet)
                    .collect(),
            })
            .collect())
    }

    async fn create_network(&self, network: &NetworkRequest) -> Result<String, SwarmError> {
        let what = format!("network {}", network.name);
        let request = NetworkCreateRequest {
            name: network.name.clone(),
            driver: Some(network.driver.clone()),
            attachable: Some(network.attachable),
            labels: Some(network.labels.clone()),
            ipam: network.subnet.as_ref().map(|subnet| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_network(request)
            .await
            .map_err(|err| map_error(err, "create", &what))?;
        if !created.warning.is_empty() {
            tracing::warn!(network = %network.name, warning = %created.warning, "docker warned");
        }
        Ok(created.id)
    }

    async fn image_digest(&self, image: &str) -> Result<String, SwarmError> {
        #[derive(serde::Deserialize)]
        struct Inspect {
            #[serde(rename = "Descriptor")]
            descriptor: Descriptor,
        }
        #[derive(serde::Deserialize)]
        struct Descriptor {
            digest: String,
        }
        let auth = self.auth_for(image);
        let what = format!("image {image}");
        let answer = self
            .lists
            .get_with_auth(
                &format!("/distribution/{image}/json"),
                auth.as_deref(),
                "resolve the digest of",
                &what,
            )
            .await?;
        serde_json::from_slice::<Inspect>(&answer)
            .map(|inspect| inspect.descriptor.digest)
            .map_err(|err| super::undecodable(format!("resolve the digest of {what}"), &err))
    }

    async fn object_id(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, SwarmError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let found = self.objects(kind, filters).await?;
        // Exact names only, whatever the filter matches.
        Ok(found.into_iter().find(|o| o.name == name).map(|o| o.id))
    }

    async fn create_object(&self, object: &ObjectRequest) -> Result<String, SwarmError> {
        let what = format!("{} {}", object.kind().word(), object.name());
        let created = match object {
            ObjectRequest::Secret(spec) => self.docker.create_secret(spec.clone()).await,
            ObjectRequest::Config(spec) => self.docker.create_config(spec.clone()).await,
        };
        created
            .map(|response| response.id)
            .map_err(|err| map_error(err, "create", &what))
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        label: (&str, &str),
    ) -> Result<Vec<ListedObject>, SwarmError> {
        let (key, value) = label;
        let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
        self.objects(kind, filters).await
    }

    async fn remove_object(&self, kind: ObjectKind, id: &str) -> Result<(), SwarmError> {
        let removed = match kind {
            ObjectKind::Secret => self.docker.delete_secret(id).await,
            ObjectKind::Config => self.docker.delete_config(id).await,
        };
        match removed {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(err) => Err(map_error(err, "remove", &format!("{} {id}", kind.word()))),
        }
    }

    fn task_logs(
        &self,
        task_id: &str,
        query: &LogQuery,
    ) -> BoxStream<'static, Result<LogChunk, SwarmError>> {
        let options = LogsOptions {
            follow: query.follow,
            stdout: true,
            stderr: true,
            since: query
                .since
                .map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
            until: 0,
            timestamps: query.timestamps,
            tail: query
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
        };
        let what = format!("the logs of task {task_id}");
        self.docker
            .task_logs(task_id, Some(options))
            .filter_map(move |output| {
                let what = what.clone();
                async move {
                    match output {
                        Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk {
                            stderr: true,
                            text: message,
                        })),
                        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                            Some(Ok(LogChunk {
                                stderr: false,
                                text: message,
                            }))
                        }
                        Ok(LogOutput::StdIn { .. }) => None,
                        Err(err) => Some(Err(map_error(err, "read", &what))),
                    }
                }
            })
            .boxed()
    }

    fn events(&self) -> BoxStream<'static, Result<SwarmEvent, SwarmError>> {
        let filters = HashMap::from([(
            "type".to_string(),
            vec!["service".to_string(), "node".to_string()],
        )]);
        let options = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .events(Some(options))
            .filter_map(|message| async move {
                match message {
                    Ok(message) => swarm_event(message).map(Ok),
                    Err(err) => Some(Err(map_error(err, "follow", "events"))),
                }
            })
            .boxed()
    }
}

impl DockerSwarm {
    /// Lists secrets or configs matching `filters`.
    async fn objects(
        &self,
        kind: ObjectKind,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<ListedObject>, SwarmError> {
        let what = kind.section();
        let listed = |id: Option<String>, created_at, name: Option<String>, labels| ListedObject {
            kind,
            id: id.unwrap_or_default(),
            name: name.unwrap_or_default(),
            labels: Option::unwrap_or_default(labels),
            created_at,
            data: None,
        };
        Ok(match kind {
            ObjectKind::Secret => self
                .docker
                .list_secrets(Some(ListSecretsOptions {
                    filters: Some(filters),
                }))
                .await
                .map_err(|err| map_error(err, "list", what))?
                .into_iter()
                .map(|s| {
                    let spec = s.spec.unwrap_or_default();
                    listed(s.id, s.created_at, spec.name, spec.labels)
                })
                .collect(),
            ObjectKind::Config => self
                .docker
                .list_configs(Some(ListConfigsOptions {
                    filters: Some(filters),
                }))
                .await
                .map_err(|err| map_error(err, "list", what))?
                .into_iter()
                .map(|c| {
                    let spec = c.spec.unwrap_or_default();
                    let data = spec.data.as_deref().and_then(super::config_data);
                    ListedObject {
                        data,
                        ..listed(c.id, c.created_at, spec.name, spec.labels)
                    }
                })
                .collect(),
        })
    }
}

/// Maps a bollard error from `{verb} {what}` (e.g. "update", "service abc") by what the
/// caller should do about it: 404, 409 and Swarm's out-of-sequence 500 get their own
/// variants, transport failures are [`SwarmError::Unreachable`], the rest keep Docker's
/// status and words.
pub(crate) fn map_error(err: DockerError, verb: &str, what: &str) -> SwarmError {
    match err {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => SwarmError::NotFound {
                what: what.to_string(),
            },
            409 => SwarmError::Conflict {
                what: what.to_string(),
                message,
            },
            // Swarm reports a stale version index as a plain 500; its words are the only
            // way to tell it from a real server failure.
            500 if message.contains("update out of sequence") => SwarmError::OutOfSequence {
                what: what.to_string(),
            },
            status => SwarmError::Api {
                operation: format!("{verb} {what}"),
                status,
                message,
            },
        },
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::RequestTimeoutError
        | DockerError::SocketNotFoundError(_) => SwarmError::Unreachable {
            message: format!("failed to {verb} {what}: {}", error_chain(&err)),
        },
        // Everything else failed in the client (decoding, building the request): there is
        // no HTTP status, hence 0.
        other => SwarmError::Api {
            operation: format!("{verb} {what}"),
            status: 0,
            message: error_chain(&other),
        },
    }
}

/// An error and its sources on one line ("a: b: c"), since transport errors often say
/// little at the top ("client error (Connect)") and the reason sits underneath.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn log_warnings(what: &str, warnings: Option<&[String]>) {
    for warning in warnings.unwrap_or_default() {
        tracing::warn!(%what, %warning, "docker warned");
    }
}

/// A listed or inspected service as mlmodel sees it.
fn observed_service(service: Service) -> ObservedService {
    let status = service.service_status.unwrap_or_default();
    let update = service.update_status.unwrap_or_default();
    ObservedService {
        id: service.id.unwrap_or_default(),
        version: service
            .version
            .and_then(|version| version.index)
            .unwrap_or_default(),
        spec: service.spec.unwrap_or_default(),
        running_tasks: status.running_tasks.unwrap_or_default(),
        desired_tasks: status.desired_tasks.unwrap_or_default(),
        update_state: states::update_state(update.state.map(|state| state.to_string()).as_deref()),
        update_message: update.message.filter(|message| !message.is_empty()),
        updated_at: service.updated_at,
    }
}

fn observed_node(node: Node) -> ObservedNode {
    let spec = node.spec.unwrap_or_default();
    let description = node.description.unwrap_or_default();
    let status = node.status.unwrap_or_default();
    let resources = description.resources.unwrap_or_default();
    let platform = description.platform.unwrap_or_default();
    let words = |value: Option<String>| value.unwrap_or_default().to_lowercase();
    ObservedNode {
        id: node.id.unwrap_or_default(),
        hostname: description.hostname.unwrap_or_default(),
        role: words(spec.role.map(|role| role.to_string())),
        availability: words(spec.availability.map(|a| a.to_string())),
        state: words(status.state.map(|state| state.to_string())),
        message: status.message.unwrap_or_default(),
        addr: status.addr.unwrap_or_default(),
        nano_cpus: resources.nano_cpus.unwrap_or_default(),
        memory_bytes: resources.memory_bytes.unwrap_or_default(),
        labels: spec.labels.unwrap_or_default(),
        engine_labels: description
            .engine
            .and_then(|engine| engine.labels)
            .unwrap_or_default(),
        os: platform.os.unwrap_or_default(),
        arch: platform.architecture.unwrap_or_default(),
    }
}

/// The swarm event an event message reports, if it is about a service or a node.
fn swarm_event(message: EventMessage) -> Option<SwarmEvent> {
    let actor = message.actor.unwrap_or_default();
    let id = actor.id.unwrap_or_default();
    match message.typ? {
        EventMessageTypeEnum::SERVICE => Some(SwarmEvent::Service {
            action: message.action.unwrap_or_default(),
            id,
            name: actor
                .attributes
                .and_then(|mut attributes| attributes.remove("name")),
        }),
        EventMessageTypeEnum::NODE => Some(SwarmEvent::Node { id }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(status_code: u16, message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        }
    }

    #[test]
    fn docker_swarm_can_be_held_behind_the_trait() {
        fn held_as_dyn_swarm<T: Swarm + 'static>() {}
        held_as_dyn_swarm::<DockerSwarm>();
    }

    #[test]
    fn a_404_maps_to_not_found_naming_the_object() {
        let err = map_error(
            server_error(404, "service x not found"),
            "inspect",
            "service x",
        );
        assert_eq!(
            err,
            SwarmError::NotFound {
                what: "service x".to_string()
            }
        );
    }

    #[test]
    fn a_409_maps_to_conflict_keeping_dockers_words() {
        let message =
            "rpc error: code = AlreadyExists desc = name conflicts with an existing object";
        let err = map_error(server_error(409, message), "create", "service x");
        assert_eq!(
            err,
            SwarmError::Conflict {
                what: "service x".to_string(),
                message: message.to_string()
            }
        );
    }

    #[test]
    fn a_500_saying_update_out_of_sequence_maps_to_out_of_sequence() {
        let message = "rpc error: code = Unknown desc = update out of sequence";
        let err = map_error(server_error(500, message), "update", "service x");
        assert_eq!(
            err,
            SwarmError::OutOfSequence {
                what: "service x".to_string()
            }
        );
        assert!(err.is_transient());
    }

    #[test]
    fn any_other_500_stays_an_api_error_with_its_status() {
        let err = map_error(server_error(500, "raft is down"), "update", "service x");
        assert_eq!(
            err,
            SwarmError::Api {
                operation: "update service x".to_string(),
                status: 500,
                message: "raft is down".to_string()
            }
        );
    }

    #[test]
    fn a_400_is_an_api_error_that_retrying_will_not_fix() {
        let err = map_error(server_error(400, "invalid mount"), "create", "service x");
        assert!(matches!(err, SwarmError::Api { status: 400, .. }));
        assert!(!err.is_transient());
    }

    #[test]
    fn io_errors_timeouts_and_missing_sockets_map_to_unreachable() {
        let refused = DockerError::IOError {
            err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        for err in [
            refused,
            DockerError::RequestTimeoutError,
            DockerError::SocketNotFoundError("/nowhere.sock".to_string()),
        ] {
            let mapped = map_error(err, "list", "services");
            assert!(
                matches!(mapped, SwarmError::Unreachable { .. }),
                "{mapped:?}"
            );
        }
    }

    #[test]
    fn unreachable_message_says_what_failed() {
        let err = map_error(DockerError::RequestTimeoutError, "list", "services");
        assert_eq!(
            err.to_string(),
            "docker is unreachable: failed to list services: Timeout error"
        );
    }

    #[test]
    fn a_service_event_takes_its_name_from_the_actor_attributes() {
        let json = serde_json::json!({
            "Type": "service",
            "Action": "update",
            "Actor": {"ID": "abc", "Attributes": {"name": "m_a", "replicas.new": "2"}},
            "scope": "swarm",
            "time": 1,
            "timeNano": 1
        });
        let message: EventMessage = serde_json::from_value(json).unwrap();
        assert_eq!(
            swarm_event(message),
            Some(SwarmEvent::Service {
                action: "update".to_string(),
                id: "abc".to_string(),
                name: Some("m_a".to_string())
            })
        );
    }

    #[test]
    fn node_events_map_and_other_events_are_dropped() {
        let node: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "node", "Action": "update", "Actor": {"ID": "n1"}
        }))
        .unwrap();
        assert_eq!(
            swarm_event(node),
            Some(SwarmEvent::Node {
                id: "n1".to_string()
            })
        );
        let container: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "start", "Actor": {"ID": "c1"}
        }))
        .unwrap();
        assert_eq!(swarm_event(container), None);
    }
}
