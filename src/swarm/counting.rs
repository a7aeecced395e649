//! A [`Swarm`] decorator that counts calls by kind, for the metrics endpoint.

use super::{
    ListedNetwork, ListedObject, ListedService, ListedTask, LogChunk, LogQuery, NetworkRequest,
    ObjectKind, ObjectRequest, ObservedNode, ObservedService, Swarm, SwarmError, SwarmEvent,
    SwarmInfo,
};
use async_trait::async_trait;
use bollard::models::ServiceSpec;
use futures_util::stream::BoxStream;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kinds of call, in the order metrics list them.
pub const KINDS: [&str; 18] = [
    "info",
    "list_services",
    "inspect_service",
    "create_service",
    "update_service",
    "remove_service",
    "list_tasks",
    "list_nodes",
    "network_id",
    "create_network",
    "events",
    "object_id",
    "create_object",
    "list_objects",
    "remove_object",
    "image_digest",
    "list_networks",
    "task_logs",
];

/// Wraps a swarm and counts every call made through it.
pub struct CountingSwarm {
    inner: Arc<dyn Swarm>,
    counts: [AtomicU64; KINDS.len()],
}

impl CountingSwarm {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Swarm>) -> Self {
        Self {
            inner,
            counts: Default::default(),
        }
    }

    fn count(&self, kind: usize) {
        self.counts[kind].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls so far by kind.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        KINDS
            .iter()
            .zip(&self.counts)
            .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
            .collect()
    }
}

#[async_trait]
impl Swarm for CountingSwarm {
    async fn info(&self) -> Result<SwarmInfo, SwarmError> {
        self.count(0);
        self.inner.info().await
    }
    async fn list_services(&self) -> Result<Vec<ListedService>, SwarmError> {
        self.count(1);
        self.inner.list_services().await
    }
    async fn inspect_service(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ObservedService>, SwarmError> {
        self.count(2);
        self.inner.inspect_service(id_or_name).await
    }
    async fn create_service(&self, spec: &ServiceSpec) -> Result<String, SwarmError> {
        self.count(3);
        self.inner.create_service(spec).await
    }
    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<(), SwarmError> {
        self.count(4);
        self.inner.update_service(id, version, spec).await
    }
    async fn remove_service(&self, id: &str) -> Result<(), SwarmError> {
        self.count(5);
        self.inner.remove_service(id).await
    }
    async fn list_tasks(&self) -> Result<Vec<ListedTask>, SwarmError> {
        self.count(6);
        self.inner.list_tasks().await
    }
    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, SwarmError> {
        self.count(7);
        self.inner.list_nodes().await
    }
    async fn network_id(&self, name: &str) -> Result<Option<String>, SwarmError> {
        self.count(8);
        self.inner.network_id(name).await
    }
    async fn list_networks(&self) -> Result<Vec<ListedNetwork>, SwarmError> {
        self.count(16);
        self.inner.list_networks().await
    }
    async fn create_network(&self, network: &NetworkRequest) -> Result<String, SwarmError> {
        self.count(9);
        self.inner.create_network(network).await
    }
    fn events(&self) -> BoxStream<'static, Result<SwarmEvent, SwarmError>> {
        self.count(10);
        self.inner.events()
    }
    fn task_logs(
        &self,
        task_id: &str,
        query: &LogQuery,
    ) -> BoxStream<'static, Result<LogChunk, SwarmError>> {
        self.count(17);
        self.inner.task_logs(task_id, query)
    }
    async fn image_digest(&self, image: &str) -> Result<String, SwarmError> {
        self.count(15);
        self.inner.image_digest(image).await
    }
    async fn object_id(&self, kind: ObjectKind, name: &str) -> Result<Option<String>, SwarmError> {
        self.count(11);
        self.inner.object_id(kind, name).await
    }
    async fn create_object(&self, object: &ObjectRequest) -> Result<String, SwarmError> {
        self.count(12);
        self.inner.create_object(object).await
    }
    async fn list_objects(
        &self,
        kind: ObjectKind,
        label: (&str, &str),
    ) -> Result<Vec<ListedObject>, SwarmError> {
        self.count(13);
        self.inner.list_objects(kind, label).await
    }
    async fn remove_object(&self, kind: ObjectKind, id: &str) -> Result<(), SwarmError> {
        self.count(14);
        self.inner.remove_object(kind, id).await
    }
}
