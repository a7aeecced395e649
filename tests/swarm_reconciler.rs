//! `mlmodel serve` against the real swarm: what a user sees with `docker service inspect`.

mod common;

use common::server::{Server, inspect_service, manifest, replicas, running_tasks};
use common::{swarm, unique_name};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_manifest_runs_with_its_scale_labels_and_resources() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("drop"));
    server.write_manifest("m.yml", &manifest(2, "1"));
    let service = server.service_name("m");
    server.wait_for("2 running tasks", CONVERGE, || running_tasks(&service) == 2);
    let spec = inspect_service(&service).expect("service exists")["Spec"].clone();
    let labels = &spec["Labels"];
    assert_eq!(labels["mlmodel.managed-by"], server.instance.as_str());
    assert_eq!(labels["mlmodel.name"], "m");
    assert_eq!(labels["mlmodel.build-id"], "build-1");
    assert_eq!(
        labels["com.docker.stack.namespace"],
        format!("{}_m", server.instance)
    );
    assert_eq!(
        labels["mlmodel.deployment-id"].as_str().map(str::len),
        Some(32)
    );
    assert!(labels["mlmodel.spec-hash"].is_string());
    let resources = &spec["TaskTemplate"]["Resources"];
    assert_eq!(resources["Limits"]["NanoCPUs"], 500_000_000);
    assert_eq!(resources["Limits"]["MemoryBytes"], 64 * 1024 * 1024);
    assert_eq!(resources["Reservations"]["MemoryBytes"], 8 * 1024 * 1024);
    assert_eq!(spec["UpdateConfig"]["Order"], "start-first");
    assert_eq!(spec["UpdateConfig"]["FailureAction"], "rollback");
    assert_eq!(replicas(&service), Some(2));
    let stack = common::stack_services(&format!("{}_m", server.instance));
    assert_eq!(
        stack,
        vec![service.clone()],
        "visible to docker stack services"
    );
    server.wait_for("phase Available", CONVERGE, || {
        server
            .status("m")
            .is_some_and(|s| s["phase"] == "Available")
    });
}
