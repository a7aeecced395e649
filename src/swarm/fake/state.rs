//! The fake swarm's state and the rules of Docker's it keeps: one version index for every
//! write, unique names, network targets stored as ids, tasks derived from each service's
//! replicas and template. [`super::FakeSwarm`] wraps it in a lock and counts the calls.

use super::{FAKE_NODE_ID, Op};
use crate::desired::stack::{object_names, object_refs};
use crate::swarm::{
    Deferred, ListedObject, ListedService, ListedTask, ObjectKind, ObservedNode, ObservedService,
    ObservedTask, SwarmError, SwarmEvent, SwarmInfo, TaskState, UpdateState,
};
use bollard::models::{NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, TaskSpec};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Everything the fake swarm holds.
#[derive(Debug)]
pub(super) struct State {
    /// The swarm-wide version index, bumped by every write.
    pub(super) index: u64,
    /// Counter for ids of new objects.
    pub(super) next_id: u64,
    /// Services by id.
    pub(super) services: BTreeMap<String, FakeService>,
    /// Network ids by name.
    pub(super) networks: BTreeMap<String, String>,
    /// Network subnets by name.
    pub(super) subnets: BTreeMap<String, Vec<String>>,
    /// The swarm's nodes.
    pub(super) nodes: Vec<ObservedNode>,
    /// Secrets and configs by id.
    pub(super) objects: BTreeMap<String, ListedObject>,
    /// What the fake registry holds: image (`name:tag`) to digest.
    pub(super) digests: HashMap<String, String>,
    pub(super) info: SwarmInfo,
    pub(super) unreachable: bool,
    pub(super) failures: HashMap<Op, VecDeque<SwarmError>>,
    pub(super) calls: BTreeMap<Op, u64>,
    /// Each task's output, by task id.
    pub(super) logs: HashMap<String, Vec<crate::swarm::LogChunk>>,
}

/// One service, with what steers its tasks.
#[derive(Debug, Clone)]
pub(super) struct FakeService {
    pub(super) id: String,
    pub(super) version: u64,
    /// Shared with what lists hand out, as Docker's answers are read lazily.
    pub(super) spec: Arc<ServiceSpec>,
    /// The spec before the last update, as Swarm keeps it for a rollback.
    pub(super) previous: Option<Arc<ServiceSpec>>,
    pub(super) updated_at: String,
    pub(super) update_status: Option<(UpdateState, String)>,
    /// How many of the desired tasks run, if not all.
    pub(super) running: Option<u64>,
    /// State and error shown by the tasks that do not run.
    pub(super) stuck: (TaskState, String),
    /// The task template its tasks were created from.
    pub(super) task_spec: Arc<TaskSpec>,
    /// Whether updates leave the tasks on their old template (a rollout not yet begun).
    pub(super) held: bool,
}

impl State {
    pub(super) fn fresh_id(&mut self, kind: &str) -> String {
        let id = format!("fake{kind}{:06}", self.next_id);
        self.next_id += 1;
        id
    }

    /// A service by id or, like Docker, by name.
    pub(super) fn find(&self, id_or_name: &str) -> Option<&FakeService> {
        self.services.get(id_or_name).or_else(|| {
            self.services
                .values()
                .find(|service| service.spec.name.as_deref() == Some(id_or_name))
        })
    }

    pub(super) fn service_named_mut(
        &mut self,
        id_or_name: &str,
    ) -> Result<&mut FakeService, SwarmError> {
        let not_found = || SwarmError::NotFound {
            what: format!("service {id_or_name}"),
        };
        let id = self.find(id_or_name).ok_or_else(not_found)?.id.clone();
        self.services.get_mut(&id).ok_or_else(not_found)
    }

    pub(super) fn add_network(&mut self, name: &str) -> String {
        if let Some(id) = self.networks.get(name) {
            return id.clone();
        }
        let id = self.fresh_id("net");
        self.networks.insert(name.to_string(), id.clone());
        self.index += 1;
        id
    }

    /// Checks that every secret and config a spec references exists under the id given,
    /// as Swarm does (a 400 otherwise).
    pub(super) fn check_objects(&self, spec: &ServiceSpec) -> Result<(), SwarmError> {
        for reference in object_refs(spec) {
            let known = reference
                .id
                .and_then(|id| self.objects.get(id))
                .is_some_and(|object| object.kind == reference.kind);
            if !known {
                return Err(SwarmError::Api {
                    operation: format!(
                        "write service {}",
                        spec.name.as_deref().unwrap_or_default()
                    ),
                    status: 400,
                    message: format!(
                        "rpc error: code = InvalidArgument desc = {} not found: {}",
                        reference.kind.word(),
                        reference.id.unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Creates a secret or config; a name taken is a 409.
    pub(super) fn create_object(
        &mut self,
        kind: ObjectKind,
        name: &str,
        labels: HashMap<String, String>,
        data: Option<bytes::Bytes>,
    ) -> Result<String, SwarmError> {
        if self
            .objects
            .values()
            .any(|o| o.kind == kind && o.name == name)
        {
            return Err(SwarmError::Conflict {
                what: format!("{} {name}", kind.word()),
                message: format!(
                    "rpc error: code = AlreadyExists desc = {} {name} already exists",
                    kind.word()
                ),
            });
        }
        let id = self.fresh_id(kind.word());
        self.objects.insert(
            id.clone(),
            ListedObject {
                kind,
                id: id.clone(),
                name: name.to_string(),
                labels,
                created_at: Some(now_rfc3339()),
                data,
            },
        );
        self.index += 1;
        Ok(id)
    }

    /// Removes a secret or config unless a service references it (a 400, as in Swarm).
    /// Docker takes an id or a name, and so does the fake.
    pub(super) fn remove_object(&mut self, kind: ObjectKind, id: &str) -> Result<(), SwarmError> {
        let Some(object) = self
            .objects
            .get(id)
            .or_else(|| self.objects.values().find(|o| o.name == id))
            .filter(|o| o.kind == kind)
        else {
            return Ok(());
        };
        let id = object.id.clone();
        let id = id.as_str();
        let users: Vec<&str> = self
            .services
            .values()
            .filter(|service| {
                object_names(&service.spec).any(|(k, name)| k == kind && name == object.name)
            })
            .filter_map(|service| service.spec.name.as_deref())
            .collect();
        if !users.is_empty() {
            return Err(SwarmError::Api {
                operation: format!("remove {} {id}", kind.word()),
                status: 400,
                message: format!(
                    "rpc error: code = InvalidArgument desc = {} '{}' is in use by the following service: {}",
                    kind.word(),
                    object.name,
                    users.join(", ")
                ),
            });
        }
        self.objects.remove(id);
        self.index += 1;
        Ok(())
    }

    /// Rewrites network attachment targets given by name to ids, as Docker stores them.
    /// An unknown network fails the write with a 500, as Docker 20.10 answers.
    pub(super) fn resolve_networks(&self, spec: &mut ServiceSpec) -> Result<(), SwarmError> {
        let name = spec.name.clone().unwrap_or_default();
        let template = spec
            .task_template
            .as_mut()
            .and_then(|t| t.networks.as_mut());
        let top_level = spec.networks.as_mut();
        for attachment in template.into_iter().chain(top_level).flatten() {
            let NetworkAttachmentConfig {
                target: Some(target),
                ..
            } = attachment
            else {
                continue;
            };
            if self.networks.values().any(|id| id == target) {
                continue;
            }
            let Some(id) = self.networks.get(target.as_str()) else {
                return Err(SwarmError::Api {
                    operation: format!("write service {name}"),
                    status: 500,
                    message: format!("network {target} not found"),
                });
            };
            *target = id.clone();
        }
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        spec: &ServiceSpec,
    ) -> Result<(String, SwarmEvent), SwarmError> {
        let id = self.fresh_id("svc");
        let mut spec = spec.clone();
        let name = spec.name.get_or_insert_with(|| id.clone()).clone();
        if self.find(&name).is_some() {
            return Err(SwarmError::Conflict {
                what: format!("service {name}"),
                message: format!(
                    "rpc error: code = AlreadyExists desc = name conflicts with an existing \
                     object: service {name} already exists"
                ),
            });
        }
        self.resolve_networks(&mut spec)?;
        self.check_objects(&spec)?;
        self.index += 1;
        let service = FakeService {
            id: id.clone(),
            version: self.index,
            task_spec: Arc::new(spec.task_template.clone().unwrap_or_default()),
            held: false,
            spec: Arc::new(spec),
            previous: None,
            updated_at: now_rfc3339(),
            update_status: None,
            running: None,
            stuck: (TaskState::Pending, String::new()),
        };
        self.services.insert(id.clone(), service);
        Ok((id.clone(), service_event("create", &id, &name)))
    }

    pub(super) fn update(
        &mut self,
        id_or_name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<SwarmEvent, SwarmError> {
        let mut spec = spec;
        self.resolve_networks(&mut spec)?;
        self.check_objects(&spec)?;
        let index = self.index + 1;
        let service = self.service_named_mut(id_or_name)?;
        if version != service.version {
            return Err(SwarmError::OutOfSequence {
                what: format!("service {id_or_name}"),
            });
        }
        if spec.name != service.spec.name {
            return Err(SwarmError::Api {
                operation: format!("update service {id_or_name}"),
                status: 501,
                message: "rpc error: code = Unimplemented desc = renaming services is not \
                          supported"
                    .to_string(),
            });
        }
        // Docker rolls tasks (and reports an update status) only when the task template
        // changes; labels and replicas change in place. The fake's roll ends at once.
        if spec.task_template != service.spec.task_template {
            if service.held {
                service.update_status = None;
            } else {
                service.update_status =
                    Some((UpdateState::Completed, "update completed".to_string()));
                service.task_spec = Arc::new(spec.task_template.clone().unwrap_or_default());
            }
        }
        service.previous = Some(std::mem::replace(&mut service.spec, Arc::new(spec)));
        service.version = index;
        service.updated_at = now_rfc3339();
        let name = service.spec.name.clone().unwrap_or_default();
        let event = service_event("update", &service.id, &name);
        self.index = index;
        Ok(event)
    }

    pub(super) fn remove(&mut self, id_or_name: &str) -> Option<SwarmEvent> {
        let id = self.find(id_or_name)?.id.clone();
        let service = self.services.remove(&id)?;
        self.index += 1;
        Some(service_event(
            "remove",
            &id,
            service.spec.name.as_deref().unwrap_or_default(),
        ))
    }

    pub(super) fn tasks(&self) -> Vec<ListedTask> {
        self.services
            .values()
            .flat_map(FakeService::tasks)
            .collect()
    }
}

impl FakeService {
    pub(super) fn desired(&self) -> u64 {
        match &self.spec.mode {
            Some(ServiceSpecMode {
                global: Some(_), ..
            }) => 1,
            Some(ServiceSpecMode {
                replicated: Some(replicated),
                ..
            }) => replicated
                .replicas
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(1),
            _ => 1,
        }
    }

    pub(super) fn running(&self) -> u64 {
        let desired = self.desired();
        self.running.map_or(desired, |running| running.min(desired))
    }

    pub(super) fn observe(&self) -> ObservedService {
        self.listed()
            .decode()
            .expect("the fake lists its specs as values, which always decode")
    }

    /// As listed: the spec shared rather than copied.
    pub(super) fn listed(&self) -> ListedService {
        let (update_state, update_message) = self.update_status.clone().unzip();
        ListedService {
            id: self.id.clone(),
            version: self.version,
            running_tasks: self.running(),
            desired_tasks: self.desired(),
            update_state,
            update_message,
            updated_at: Some(self.updated_at.clone()),
            spec: Deferred::Ready(self.spec.clone()),
        }
    }

    pub(super) fn tasks(&self) -> Vec<ListedTask> {
        let global = matches!(&self.spec.mode, Some(mode) if mode.global.is_some());
        let image = self
            .task_spec
            .container_spec
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let running = self.running();
        (1..=self.desired())
            .map(|slot| {
                let runs = slot <= running;
                let (state, error) = if runs {
                    (TaskState::Running, String::new())
                } else {
                    self.stuck.clone()
                };
                let task = ObservedTask {
                    id: format!("{}task{slot}", self.id),
                    service_id: self.id.clone(),
                    slot: (!global).then_some(slot as i64),
                    node_id: runs.then(|| FAKE_NODE_ID.to_string()),
                    image: image.clone(),
                    desired_state: if state.is_failure() {
                        TaskState::Ready
                    } else {
                        TaskState::Running
                    },
                    message: if runs {
                        "started"
                    } else {
                        "pending task scheduling"
                    }
                    .to_string(),
                    state,
                    state_since: Some(self.updated_at.clone()),
                    error,
                    up_to_date: false,
                };
                ListedTask {
                    task,
                    spec: Deferred::Ready(self.task_spec.clone()),
                }
            })
            .collect()
    }
}

pub(super) fn service_event(action: &str, id: &str, name: &str) -> SwarmEvent {
    SwarmEvent::Service {
        action: action.to_string(),
        id: id.to_string(),
        name: Some(name.to_string()),
    }
}

/// Now in RFC 3339, to the nanosecond as Docker writes its times.
pub(super) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}
