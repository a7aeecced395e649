//! `mlmodel serve` against the real swarm: what a user sees with `docker service inspect`,
//! `docker service ls` and the API.
//!
//! Each test runs its own server (its own instance name, so it owns only its own
//! services) and waits for what it checks with generous timeouts: two cores start
//! containers slowly, and other tests may be sharing the engine.

mod common;

use common::server::{
    Server, inspect_service, manifest, replicas, running_tasks, service_id, version_index,
};
use common::{docker_cli, docker_lines, docker_ok, swarm, unique_name};
use serde_json::Value;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

/// Waits until the server reports `model` in `phase`.
fn wait_phase(server: &Server, model: &str, phase: &str) {
    server.wait_for(&format!("{model} in phase {phase}"), CONVERGE, || {
        server.phase(model).as_deref() == Some(phase)
    });
}

/// `Spec.TaskTemplate.ContainerSpec.Image` of a service, without a pinned digest.
fn image(service: &str) -> Option<String> {
    let spec = inspect_service(service)?;
    let image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].as_str()?;
    image.split('@').next().map(String::from)
}

/// `Spec.TaskTemplate.Resources.Limits.MemoryBytes` of a service.
fn memory_limit(service: &str) -> Option<u64> {
    inspect_service(service)?["Spec"]["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"].as_u64()
}

/// How many times the server's log says `text`.
fn log_count(server: &Server, text: &str) -> usize {
    server.log_text().matches(text).count()
}

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

#[tokio::test(flavor = "multi_thread")]
async fn each_manifest_edit_updates_the_service_and_removing_it_keeps_the_history() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("edit"));
    let service = server.service_name("m");
    server.write_manifest("m.yml", &manifest(2, "1"));
    server.wait_for("2 running tasks", CONVERGE, || running_tasks(&service) == 2);
    wait_phase(&server, "m", "Available");
    assert_eq!(server.history_len("m"), 1);

    server.write_manifest("m.yml", &manifest(3, "1"));
    server.wait_for("replicas 3", CONVERGE, || replicas(&service) == Some(3));
    server.wait_for("3 running tasks", CONVERGE, || running_tasks(&service) == 3);
    wait_phase(&server, "m", "Available");
    assert_eq!(server.history_len("m"), 2);

    server.write_manifest("m.yml", &manifest(3, "2"));
    server.wait_for("image tag 2", CONVERGE, || {
        image(&service).as_deref() == Some("mlmodel-test/static-http:2")
    });
    // Swarm rolls the tasks over one by one ("updating", then "completed"); the model is
    // Available again once every task runs the new image.
    server.wait_for("Available with every task on tag 2", CONVERGE, || {
        server.status("m").is_some_and(|s| {
            let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
            s["phase"] == "Available"
                && tasks.len() == 3
                && tasks
                    .iter()
                    .all(|t| t["image"] == "mlmodel-test/static-http:2")
        })
    });
    assert_eq!(server.history_len("m"), 3);

    server.write_manifest(
        "m.yml",
        &manifest(3, "2").replace("mem_limit: 64M", "mem_limit: 96M"),
    );
    server.wait_for("a 96 MiB memory limit", CONVERGE, || {
        memory_limit(&service) == Some(96 * 1024 * 1024)
    });
    wait_phase(&server, "m", "Available");
    assert_eq!(server.history_len("m"), 4);
    assert_eq!(replicas(&service), Some(3));
    assert_eq!(
        image(&service).as_deref(),
        Some("mlmodel-test/static-http:2")
    );

    server.remove_manifest("m.yml");
    server.wait_for("the service removed", CONVERGE, || {
        inspect_service(&service).is_none()
    });
    wait_phase(&server, "m", "Removed");
    let (code, history) = server.get("/m?n=10");
    assert_eq!(code, 200, "{history}");
    assert_eq!(history.as_array().map(Vec::len), Some(4), "{history}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_scaling_is_reverted_and_hand_removal_recreated_through_events_alone() {
    if swarm().await.is_none() {
        return;
    }
    // No resync within the test: only Docker's events can explain a repair.
    let server = Server::start_with(&unique_name("hand"), &["--resync", "1h"]);
    let service = server.service_name("m");
    server.write_manifest("m.yml", &manifest(1, "1"));
    server.wait_for("1 running task", CONVERGE, || running_tasks(&service) == 1);
    wait_phase(&server, "m", "Available");

    let before = version_index(&service).expect("service exists");
    docker_ok(&["service", "scale", "--detach", &format!("{service}=5")]);
    server.wait_for("the hand scale reverted to 1", CONVERGE, || {
        replicas(&service) == Some(1) && version_index(&service).is_some_and(|v| v > before)
    });
    assert_eq!(log_count(&server, "because replicas changed by hand"), 1);
    wait_phase(&server, "m", "Available");

    let id = service_id(&service).expect("service exists");
    docker_ok(&["service", "rm", &service]);
    server.wait_for("the service recreated", CONVERGE, || {
        service_id(&service).is_some_and(|new| new != id)
    });
    assert_eq!(replicas(&service), Some(1));
    server.wait_for("1 running task", CONVERGE, || running_tasks(&service) == 1);
    wait_phase(&server, "m", "Available");
    assert_eq!(server.history_len("m"), 1, "a repair is not a deployment");
}

/// A service created with the Docker CLI, removed when dropped.
struct HandMadeService {
    name: String,
}

impl HandMadeService {
    fn create(name: &str, args: &[&str]) -> HandMadeService {
        let mut command = vec![
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            name,
        ];
        command.extend_from_slice(args);
        docker_ok(&command);
        HandMadeService {
            name: name.to_string(),
        }
    }
}

impl Drop for HandMadeService {
    fn drop(&mut self) {
        let _ = docker_cli(&["service", "rm", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_service_with_a_colliding_name_is_untouched_and_reported() {
    if swarm().await.is_none() {
        return;
    }
    let instance = unique_name("foreign");
    let name = format!("{instance}_m_mlmodel");
    let _foreign = HandMadeService::create(
        &name,
        &[
            "--label",
            "owner=someone-else",
            "--replicas",
            "0",
            "mlmodel-test/static-http:1",
        ],
    );
    let before = inspect_service(&name).expect("the foreign service exists");
    let server = Server::start(&instance);
    assert_eq!(server.service_name("m"), name);
    server.write_manifest("m.yml", &manifest(1, "1"));
    wait_phase(&server, "m", "Failed");
    let status = server.status("m").expect("a status");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&name) && message.contains("already exists"),
        "{status}"
    );
    let after = inspect_service(&name).expect("the foreign service is still there");
    assert_eq!(after["ID"], before["ID"]);
    assert_eq!(after["Version"]["Index"], before["Version"]["Index"]);
    assert_eq!(after["Spec"]["Labels"], before["Spec"]["Labels"]);
    assert_eq!(replicas(&name), Some(0));
    let owned = format!("label=mlmodel.managed-by={instance}");
    assert!(
        docker_lines(&["service", "ls", "-q", "--filter", &owned]).is_empty(),
        "the server created nothing of its own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_a_converged_swarm_changes_nothing() {
    if swarm().await.is_none() {
        return;
    }
    let mut server = Server::start(&unique_name("restart"));
    let service = server.service_name("m");
    server.write_manifest("m.yml", &manifest(1, "1"));
    server.wait_for("1 running task", CONVERGE, || running_tasks(&service) == 1);
    wait_phase(&server, "m", "Available");
    let id = service_id(&service).expect("service exists");
    let version = version_index(&service).expect("service exists");

    assert_eq!(server.stop(), Some(0), "SIGTERM is a clean exit");
    server.spawn();
    wait_phase(&server, "m", "Available");

    let by_name = "label=mlmodel.name=m".to_string();
    let by_owner = format!("label=mlmodel.managed-by={}", server.instance);
    let services = docker_lines(&[
        "service",
        "ls",
        "--filter",
        &by_name,
        "--filter",
        &by_owner,
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(services, [service.as_str()], "exactly one service");
    assert_eq!(service_id(&service), Some(id), "the same one");
    assert_eq!(version_index(&service), Some(version), "no update sent");
    assert_eq!(server.history_len("m"), 1);
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default();
    for kind in ["create_service", "update_service", "remove_service"] {
        let line = format!("mlmodel_docker_api_calls_total{{kind=\"{kind}\"}} 0");
        assert!(
            metrics.lines().any(|l| l == line),
            "no {kind} attempted after the restart:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_manifest_among_good_ones_fails_alone() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("broken"));
    server.write_manifest("good1.yml", &manifest(1, "1"));
    server.write_manifest("good2.yml", &manifest(1, "1"));
    server.write_manifest(
        "typo.yml",
        &manifest(1, "1").replace("scale: 1", "scael: 3"),
    );
    server.write_manifest(
        "badimage.yml",
        &manifest(1, "1").replace("mlmodel-test/static-http:1", "mlmodel-test/Static HTTP"),
    );
    for good in ["good1", "good2"] {
        let service = server.service_name(good);
        server.wait_for(&format!("{good} running"), CONVERGE, || {
            running_tasks(&service) == 1
        });
        wait_phase(&server, good, "Available");
    }
    wait_phase(&server, "typo", "Failed");
    wait_phase(&server, "badimage", "Failed");
    let typo = server.status("typo").expect("a status");
    assert!(
        typo["message"]
            .as_str()
            .is_some_and(|m| m.contains("typo.yml") && m.contains("scael: unknown field")),
        "{typo}"
    );
    let badimage = server.status("badimage").expect("a status");
    assert!(
        badimage["message"]
            .as_str()
            .is_some_and(|m| m.contains("badimage.yml") && m.contains("image:")),
        "{badimage}"
    );
    for bad in ["typo", "badimage"] {
        assert!(inspect_service(&server.service_name(bad)).is_none());
    }
    let (code, listing) = server.get("/");
    assert_eq!(code, 200);
    let mut names: Vec<&str> = listing
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["badimage", "good1", "good2", "typo"], "{listing}");
    let valid = |name: &str| {
        listing
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == name)
            .map(|m| m["valid"].clone())
    };
    assert_eq!(valid("good1"), Some(Value::Bool(true)));
    assert_eq!(valid("typo"), Some(Value::Bool(false)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_store_adopts_the_running_services_instead_of_deleting_them() {
    if swarm().await.is_none() {
        return;
    }
    let instance = unique_name("adopt");
    let mut first = Server::start(&instance);
    let service = first.service_name("m");
    first.write_manifest("m.yml", &manifest(1, "1"));
    first.wait_for("1 running task", CONVERGE, || running_tasks(&service) == 1);
    wait_phase(&first, "m", "Available");
    let id = service_id(&service).expect("service exists");
    let version = version_index(&service).expect("service exists");
    assert_eq!(first.stop(), Some(0));
    first.remove_manifest("m.yml");

    // The same instance with nothing: no manifests, an empty store.
    let second = Server::start(&instance);
    second.wait_for("m adopted and Available", CONVERGE, || {
        second
            .status("m")
            .is_some_and(|s| s["phase"] == "Available" && s["source"] == "adopted")
    });
    let status = second.status("m").expect("a status");
    assert_eq!(status["valid"], true, "{status}");
    assert_eq!(status["active"], true, "{status}");
    assert_eq!(service_id(&service), Some(id), "not deleted and recreated");
    assert_eq!(version_index(&service), Some(version), "not updated");
    assert_eq!(second.history_len("m"), 1);
}
