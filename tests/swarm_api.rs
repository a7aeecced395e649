//! The API's additions to the original, against `mlmodel serve` on the real swarm:
//! status, rollback, manifest ownership, the write token, health, metrics and OpenAPI.

mod common;

use common::server::{Server, inspect_service, manifest};
use common::{swarm, unique_name};
use serde_json::{Value, json};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(90);

/// A deployment body for the test image at `tag`, one small replica.
fn body(tag: &str) -> String {
    json!({
        "domain": "model.example.com",
        "image": format!("mlmodel-test/static-http:{tag}"),
        "build_id": format!("build-{tag}"),
        "run_id": "run-1",
        "scale": 1,
        "cpu_limit": "0.5",
        "cpu_reservation": "0.01",
        "mem_limit": "64M",
        "mem_reservation": "8M",
        "deploy_delay": "1s",
        "deploy_monitor_period": "1s",
    })
    .to_string()
}

/// Posts a deployment and returns its id.
fn deploy(server: &Server, model: &str, tag: &str) -> String {
    let (code, record) = server.request("POST", &format!("/{model}"), Some(&body(tag)));
    assert_eq!(code, 200, "{record}");
    record["deployment_id"]
        .as_str()
        .expect("deployment_id")
        .to_string()
}

/// Waits until the model's status shows deployment `id` Available.
fn wait_available(server: &Server, model: &str, id: &str) -> Value {
    let mut last = Value::Null;
    server.wait_for(&format!("{model} Available with {id}"), CONVERGE, || {
        last = server.status(model).unwrap_or_default();
        last["phase"] == "Available" && last["deployment_id"] == id
    });
    last
}

/// The image `docker service inspect` shows in a service's spec.
fn service_image(service: &str) -> String {
    let spec = inspect_service(service).expect("the service exists");
    spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_health_metrics_and_openapi_describe_a_running_model() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("status"));
    let (code, posted) = server.request("POST", "/probe", Some(&body("1")));
    assert_eq!(code, 200, "{posted}");
    let status = wait_available(&server, "probe", posted["deployment_id"].as_str().unwrap());

    let service = server.service_name("probe");
    assert_eq!(status["name"], "probe");
    assert_eq!(status["valid"], true);
    assert_eq!(status["active"], true);
    assert_eq!(status["message"], "");
    assert_eq!(status["replicas_running"], 1);
    assert_eq!(status["replicas_desired"], 1);
    assert_eq!(status["synced"], true);
    assert_eq!(status["source"], "api");
    assert_eq!(status["deployment_time"], posted["deployment_time"]);
    assert_eq!(status["image"], "mlmodel-test/static-http:1");
    assert!(status["observed_at"].is_number(), "{status}");
    assert_eq!(
        status["services"],
        json!([{"name": "probe", "service": service, "image": "mlmodel-test/static-http:1", "replicas": "1/1"}])
    );
    let tasks = status["tasks"].as_array().expect("tasks");
    let running: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "Running").collect();
    assert_eq!(running.len(), 1, "{status}");
    let task = running[0];
    assert_eq!(task["name"], format!("{service}.1"));
    assert_eq!(task["image"], "mlmodel-test/static-http:1");
    assert_eq!(task["desired_state"], "Running");
    assert_eq!(task["error"], "");
    assert!(
        task["node"].as_str().is_some_and(|n| !n.is_empty()),
        "{task}"
    );
    assert!(task["since"].is_string(), "{task}");

    assert_eq!(server.get("/nothing_here/status").0, 404);

    server.wait_for("healthz 200", CONVERGE, || server.get("/healthz").0 == 200);
    let (_, health) = server.get("/healthz");
    assert_eq!(health["status"], "ok", "{health}");
    for check in ["docker", "store", "watcher"] {
        assert_eq!(health["checks"][check]["ok"], true, "{health}");
    }

    let (code, metrics) = server.get("/metrics");
    assert_eq!(code, 200);
    let metrics = metrics.as_str().expect("metrics are text");
    let active = metrics
        .lines()
        .find(|l| l.starts_with("mlmodel_manager_active{name=\"probe\","))
        .unwrap_or_else(|| panic!("no mlmodel_manager_active series for probe in\n{metrics}"));
    assert!(active.ends_with("} 1"), "{active}");
    assert!(
        active.contains("image=\"mlmodel-test/static-http:1\""),
        "{active}"
    );
    let running = metrics
        .lines()
        .find(|l| l.starts_with("mlmodel_manager_model_running{name=\"probe\","))
        .unwrap_or_else(|| panic!("no task-state series for probe in\n{metrics}"));
    assert!(running.ends_with("} 1"), "{running}");

    let (code, health) = server.get("/health");
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["models"]["active"], 1, "{health}");
    assert_eq!(server.get("/ping"), (200, json!(["pong"])));
    assert_eq!(server.get("/health/ping"), (200, json!(["pong"])));

    let (code, openapi) = server.get("/openapi.json");
    assert_eq!(code, 200);
    assert!(openapi["openapi"].is_string(), "{openapi}");
    for path in ["/", "/{name}", "/{name}/status", "/{name}/rollback"] {
        assert!(openapi["paths"][path].is_object(), "{path} not in OpenAPI");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_runs_the_previous_image_again() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("rollback"));
    let service = server.service_name("rolled");

    let first = deploy(&server, "rolled", "1");
    wait_available(&server, "rolled", &first);
    assert_eq!(service_image(&service), "mlmodel-test/static-http:1");

    let second = deploy(&server, "rolled", "2");
    wait_available(&server, "rolled", &second);
    assert_eq!(service_image(&service), "mlmodel-test/static-http:2");

    let (code, rolled) = server.request("POST", "/rolled/rollback", None);
    assert_eq!(code, 200, "{rolled}");
    assert_eq!(rolled["image"], "mlmodel-test/static-http:1");
    assert_eq!(rolled["build_id"], "build-1");
    let third = rolled["deployment_id"].as_str().expect("deployment_id");
    assert_ne!(third, first, "a rollback is a new deployment");
    wait_available(&server, "rolled", third);
    assert_eq!(service_image(&service), "mlmodel-test/static-http:1");

    let (code, history) = server.get("/rolled?n=10");
    assert_eq!(code, 200);
    let ids: Vec<&str> = history
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["deployment_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, [third, second.as_str(), first.as_str()]);
    let (code, to_second) = server.request("POST", &format!("/rolled/rollback?to={second}"), None);
    assert_eq!(code, 200, "{to_second}");
    assert_eq!(to_second["image"], "mlmodel-test/static-http:2");
    let (code, missing) = server.request("POST", "/rolled/rollback?to=0123", None);
    assert_eq!(code, 404, "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_declared_by_a_manifest_refuses_api_writes_naming_the_file() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("owned"));
    server.write_manifest("owned.yml", &manifest(1, "1"));
    server.wait_for("the manifest's model Available", CONVERGE, || {
        server
            .status("owned")
            .is_some_and(|s| s["phase"] == "Available")
    });
    let status = server.status("owned").unwrap();
    assert!(
        status["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("owned.yml")),
        "{status}"
    );
    let writes = [
        ("POST", "/owned", Some(body("2"))),
        ("PUT", "/owned", Some(body("2"))),
        ("DELETE", "/owned", None),
        ("DELETE", "/owned?clear_all_records=true", None),
        ("POST", "/owned/rollback", None),
    ];
    for (method, path, body) in writes {
        let (code, refused) = server.request(method, path, body.as_deref());
        assert_eq!(code, 409, "{method} {path}: {refused}");
        let detail = refused["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("owned.yml"), "{method} {path}: {refused}");
    }
    let service = server.service_name("owned");
    assert_eq!(service_image(&service), "mlmodel-test/static-http:1");
    let (_, history) = server.get("/owned?n=10");
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_writes_need_it_and_the_log_never_shows_it() {
    if swarm().await.is_none() {
        return;
    }
    const TOKEN: &str = "s3cret-token-value";
    let server = Server::start_with(&unique_name("token"), &["--token", TOKEN]);
    let bearer = format!("Bearer {TOKEN}");
    let good = [("authorization", bearer.as_str())];
    let wrong = [("authorization", "Bearer nope")];

    let (code, refused) = server.request("POST", "/guarded", Some(&body("1")));
    assert_eq!(code, 401, "{refused}");
    assert!(refused["detail"].is_string(), "{refused}");
    let (code, _) = server.request_with_headers("POST", "/guarded", Some(&body("1")), &wrong);
    assert_eq!(code, 401);
    assert_eq!(
        server.get("/guarded").0,
        404,
        "the refused writes recorded nothing"
    );

    let (code, posted) = server.request_with_headers("POST", "/guarded", Some(&body("1")), &good);
    assert_eq!(code, 200, "{posted}");
    assert_eq!(server.get("/").0, 200, "reads need no token");
    assert_eq!(server.get("/guarded").0, 200);
    wait_available(
        &server,
        "guarded",
        posted["deployment_id"].as_str().unwrap(),
    );

    assert_eq!(server.request("DELETE", "/guarded", None).0, 401);
    assert_eq!(server.request("POST", "/guarded/rollback", None).0, 401);
    let (code, deleted) = server.request_with_headers("DELETE", "/guarded", None, &good);
    assert_eq!(code, 200, "{deleted}");
    server.wait_for("the service removed", CONVERGE, || {
        inspect_service(&server.service_name("guarded")).is_none()
    });

    let log = server.log_text();
    assert!(!log.is_empty(), "the server logged nothing");
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_the_records_mid_rollout_removes_the_model_for_good() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("clear"));
    let service = server.service_name("cleared");
    let first = deploy(&server, "cleared", "1");
    wait_available(&server, "cleared", &first);
    // A second deployment keeps the reconciler busy with Docker's update events while
    // the records are cleared.
    let second = deploy(&server, "cleared", "2");
    server.wait_for("the update sent", CONVERGE, || {
        server
            .status("cleared")
            .is_some_and(|s| s["deployment_id"] == second.as_str())
    });
    let (code, cleared) = server.request("DELETE", "/cleared?clear_all_records=true", None);
    assert_eq!(code, 200, "{cleared}");
    server.wait_for("the service removed", CONVERGE, || {
        inspect_service(&service).is_none()
    });
    server.wait_for("the model forgotten", CONVERGE, || {
        server.get("/") == (200, json!([]))
    });
    assert_eq!(server.get("/cleared").0, 404);
    let log = server.log_text();
    assert!(
        !log.contains("adopting live services"),
        "the cleared model was adopted back:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_shows_as_degraded_with_swarms_error() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("noimage"));
    let (code, posted) = server.request("POST", "/ghost", Some(&body("no-such-tag")));
    assert_eq!(code, 200, "{posted}");
    // Swarm rejects each task and restarts it after the template's 5 s delay; between
    // attempts the rejected task waits with desired state Ready, not Running.
    let mut status = Value::Null;
    server.wait_for("phase Degraded", Duration::from_secs(45), || {
        status = server.status("ghost").unwrap_or_default();
        status["phase"] == "Degraded"
    });
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("No such image"), "{status}");
    assert_eq!(status["replicas_running"], 0, "{status}");
    let tasks = status["tasks"].as_array().expect("tasks");
    assert!(
        tasks.iter().any(|t| t["state"] == "Rejected"
            && t["error"]
                .as_str()
                .is_some_and(|e| e.contains("No such image"))),
        "{status}"
    );
    let (_, records) = server.get("/ghost");
    let containers = records[0]["containers"].as_array().expect("containers");
    assert!(
        containers.iter().any(|c| c["current_state"]
            .as_str()
            .is_some_and(|s| s.starts_with("Rejected"))),
        "{records}"
    );
}
