//! The API in-process: router, controller and the fake swarm; no sockets.

mod compat;
mod watch;

use super::*;
use crate::desired::render::{Instance, Templates};
use crate::reconcile::controller::{Controller, Parts};
use crate::sources::files::{FileDeclarations, scan};
use crate::sources::store::Store;
use crate::swarm::fake::FakeSwarm;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    router: Router,
    swarm: Arc<FakeSwarm>,
    controller: Arc<Controller>,
    manifests: tempfile::TempDir,
    files_tx: tokio::sync::watch::Sender<Arc<FileDeclarations>>,
    _data: tempfile::TempDir,
}

struct AlwaysAlive;

impl HealthProbe for AlwaysAlive {
    fn watcher(&self) -> (bool, String) {
        (true, "watching".into())
    }
}

async fn api_with_token(token: Option<&str>) -> Api {
    api_with(token, Instance::default()).await
}

/// The controller's parts over `swarm`, with a fresh store in `data` and the built-in
/// templates.
fn parts(
    swarm: Arc<FakeSwarm>,
    data: &std::path::Path,
    files: tokio::sync::watch::Receiver<Arc<FileDeclarations>>,
    instance: Instance,
) -> Parts {
    Parts {
        swarm,
        store: Store::open(data).unwrap(),
        files,
        instance,
        templates: Arc::new(Templates::builtin().unwrap()),
        images: Default::default(),
        network_subnet: Default::default(),
        lease: None,
    }
}

async fn api_with(token: Option<&str>, instance: Instance) -> Api {
    let manifests = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (files_tx, files) = tokio::sync::watch::channel(Arc::new(FileDeclarations::default()));
    let swarm = Arc::new(FakeSwarm::new());
    let controller = Controller::new(parts(swarm.clone(), data.path(), files, instance));
    controller.ensure_network().await.unwrap();
    // As `mlmodel serve` does before reconciling anything.
    controller.relist().await.unwrap();
    let state = ApiState::new(
        controller.readers(),
        token.map(String::from),
        Arc::new(AlwaysAlive),
    );
    Api {
        router: router(state),
        swarm,
        controller,
        manifests,
        files_tx,
        _data: data,
    }
}

async fn api() -> Api {
    api_with_token(None).await
}

const BODY: &str = r#"{"domain": "carls-model.com", "build_id": "some_build_id", "run_id": "some_run_id", "image": "mlmodel-test/static-http:1", "port": 80}"#;

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        let typed = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            request = request.header("content-type", "application/json");
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None, &[]).await
    }

    async fn post(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        self.call("POST", uri, Some(body), &[]).await
    }

    fn declare_file(&self, file: &str, text: &str) {
        std::fs::write(self.manifests.path().join(file), text).unwrap();
        let previous = self.files_tx.borrow().clone();
        self.files_tx
            .send(Arc::new(scan(
                self.manifests.path(),
                &previous,
                &Default::default(),
            )))
            .unwrap();
    }
}

#[tokio::test]
async fn the_list_starts_empty() {
    let api = api().await;
    assert_eq!(api.get("/").await, (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn a_post_answers_the_whole_record_as_the_original_did() {
    let api = api().await;
    let (status, record) = api.post("/carls_model", BODY).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let expected_defaults = json!({
        "name": "carls_model", "port": 80, "scale": 2, "cpu_limit": "1", "cpu_reservation": "0.1",
        "mem_limit": "2G", "mem_reservation": "1G", "deploy_delay": "5s", "deploy_monitor_period": "30s",
        "template_file": "default.template.yml", "extra_template_attributes": {}, "containers": [], "swarm_services": [],
        "build_id": "some_build_id", "run_id": "some_run_id", "domain": "carls-model.com",
    });
    for (key, value) in expected_defaults.as_object().unwrap() {
        assert_eq!(&record[key], value, "{key}");
    }
    assert_eq!(record["deployment_id"].as_str().unwrap().len(), 32);
    assert!(record["deployment_time"].is_f64());
    assert!(
        record["rendered_template"]
            .as_str()
            .unwrap()
            .contains("mlmodel-test/static-http:1")
    );
    let stored = api
        .controller
        .store()
        .history("carls_model", 5)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(stored.len(), 1, "on disk before the answer");
    assert_eq!(api.controller.queue.depth(), 1, "a reconcile was triggered");
    let (_, put) = api.call("PUT", "/carls_model", Some(BODY), &[]).await;
    assert_ne!(put["deployment_id"], record["deployment_id"]);
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let api = api().await;
    let cases: Vec<(&str, Option<&str>, StatusCode, &str)> = vec![
        ("{not json", None, StatusCode::BAD_REQUEST, "not valid JSON"),
        (
            "domain=carls-model.com&image=x",
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "[1, 2]",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a JSON object",
        ),
        (
            r#"{"domain": "a.com", "image": "x", "build_id": "b", "run_id": "r", "scael": 3}"#,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "scael: unknown field: did you mean scale?",
        ),
        (
            r#"{"domain": "a`b.com", "image": "x", "build_id": "b", "run_id": "r"}"#,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "domain: \"a`b.com\" is not a domain",
        ),
        (
            r#"{"domain": "a.com", "image": "x", "build_id": "b", "run_id": "r", "port": 0}"#,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "port: ",
        ),
        (
            r#"{"name": "other", "domain": "a.com", "image": "x", "build_id": "b", "run_id": "r"}"#,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not match the name in the path",
        ),
        (
            r#"{"domain": "a.com"}"#,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "image: is required",
        ),
    ];
    for (body, content_type, expected, detail) in cases {
        let mut request = Request::builder().method("POST").uri("/m");
        request = request.header("content-type", content_type.unwrap_or("application/json"));
        let response = api
            .router
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&bytes).expect("errors are JSON");
        assert_eq!(status, expected, "{body}: {value}");
        assert!(
            value["detail"].as_str().unwrap().contains(detail),
            "{body}: {value}"
        );
    }
    let huge = format!(
        r#"{{"domain": "a.com", "image": "x", "build_id": "{}", "run_id": "r"}}"#,
        "b".repeat(70_000)
    );
    let (status, value) = api.post("/m", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{value}");
    assert!(
        api.controller.store().names().unwrap().is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn get_answers_the_newest_records_first_and_404s_unknown_models() {
    let api = api().await;
    assert_eq!(api.get("/nobody").await.0, StatusCode::NOT_FOUND);
    let (_, first) = api.post("/m", BODY).await;
    let (_, second) = api.post("/m", &BODY.replace("some_run_id", "run2")).await;
    let (status, records) = api.get("/m?n=5").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["deployment_id"])
        .collect();
    assert_eq!(ids, [&second["deployment_id"], &first["deployment_id"]]);
    assert_eq!(
        api.get("/m").await.1.as_array().unwrap().len(),
        1,
        "n defaults to 1"
    );
    assert_eq!(api.get("/m?n=zero").await.0, StatusCode::BAD_REQUEST);
    assert!(records[0]["deployment_time"].is_number());
}

#[tokio::test]
async fn delete_stops_the_model_and_clear_all_records_forgets_it() {
    let api = api().await;
    api.post("/m", BODY).await;
    let (status, answer) = api.call("DELETE", "/m", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["deployments"].as_array().unwrap().len(), 1);
    assert!(api.controller.store().is_stopped("m").unwrap());
    assert_eq!(api.get("/m").await.0, StatusCode::OK, "history stays");
    let (status, _) = api
        .call("DELETE", "/m?clear_all_records=true", None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/m").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call("DELETE", "/m", None, &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn rollback_copies_an_earlier_spec_into_a_new_record() {
    let api = api().await;
    let (_, first) = api.post("/m", BODY).await;
    assert_eq!(
        api.call("POST", "/m/rollback", None, &[]).await.0,
        StatusCode::CONFLICT,
        "nothing to roll back to"
    );
    api.post("/m", &BODY.replace("\"port\": 80", "\"port\": 8080"))
        .await;
    let (status, rolled) = api.call("POST", "/m/rollback", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["port"], 80);
    assert_ne!(rolled["deployment_id"], first["deployment_id"]);
    let to = format!(
        "/m/rollback?to={}",
        first["deployment_id"].as_str().unwrap()
    );
    assert_eq!(api.call("POST", &to, None, &[]).await.0, StatusCode::OK);
    assert_eq!(
        api.call("POST", "/m/rollback?to=nope", None, &[]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.controller
            .store()
            .history("m", 10)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn models_owned_by_a_manifest_refuse_api_writes_naming_the_file() {
    let api = api().await;
    api.declare_file("m.yml", "domain: a.com\nimage: x\nbuild_id: b\nrun_id: r\n");
    for (method, uri) in [
        ("POST", "/m"),
        ("PUT", "/m"),
        ("DELETE", "/m"),
        ("POST", "/m/rollback"),
    ] {
        let body = (method != "DELETE").then_some(BODY);
        let (status, value) = api.call(method, uri, body, &[]).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {uri}: {value}");
        assert!(
            value["detail"].as_str().unwrap().contains("m.yml"),
            "{value}"
        );
    }
}

#[tokio::test]
async fn writes_need_the_token_when_one_is_set_and_reads_never_do() {
    let api = api_with_token(Some("s3cret")).await;
    let (status, value) = api.post("/m", BODY).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    let (status, _) = api
        .call(
            "POST",
            "/m",
            Some(BODY),
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            "POST",
            "/m",
            Some(BODY),
            &[("authorization", "Bearer s3cret")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/").await.0, StatusCode::OK);
    assert_eq!(api.get("/m").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_listing_asked_again_follows_the_statuses() {
    let api = api().await;
    api.post("/m", BODY).await;
    api.controller.reconcile("m").await;
    assert_eq!(api.get("/").await.1.as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("/?live_only=true&verbose=true").await.1[0]["name"],
        "m"
    );
    api.post("/n", BODY).await;
    api.controller.reconcile("n").await;
    let names = |listing: serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = listing
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(api.get("/").await.1), ["m", "n"]);
    assert_eq!(
        names(api.get("/?live_only=true&verbose=true").await.1),
        ["m", "n"]
    );
    assert_eq!(names(api.get("/?verbose=true").await.1), ["m", "n"]);
}

#[tokio::test]
async fn status_and_listing_come_from_the_reconciler() {
    let api = api().await;
    api.post("/m", BODY).await;
    assert_eq!(
        api.get("/m/status").await.0,
        StatusCode::NOT_FOUND,
        "not reconciled yet"
    );
    api.controller.reconcile("m").await;
    let (status, body) = api.get("/m/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["source"], "api");
    assert!(body["deployment_time"].is_number());
    assert_eq!(
        api.get("/").await.1,
        json!([{"name": "m", "valid": true, "active": true}])
    );
    let (_, detailed) = api.get("/?detail=true").await;
    assert_eq!(detailed[0]["name"], "m");
    assert!(detailed[0]["phase"].is_string());
    api.controller.relist().await.unwrap();
    api.controller.reconcile("m").await;
    let (_, records) = api.get("/m").await;
    assert_eq!(
        records[0]["swarm_services"][0]["replicas"], "2/2",
        "{records}"
    );
    assert_eq!(
        records[0]["containers"].as_array().unwrap().len(),
        2,
        "{records}"
    );
    assert!(
        records[0]["containers"][0]["current_state"]
            .as_str()
            .unwrap()
            .starts_with("Running"),
        "{records}"
    );
}

#[tokio::test]
async fn metrics_expose_per_model_gauges_and_controller_counters() {
    let api = api().await;
    api.post("/m", BODY).await;
    api.controller.reconcile("m").await;
    api.controller.relist().await.unwrap();
    api.controller.reconcile("m").await;
    let (status, body) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    let deployment_time = api
        .controller
        .store()
        .latest("m")
        .unwrap()
        .unwrap()
        .record
        .deployment_time;
    let labels = format!(
        "name=\"m\",domain=\"http://carls-model.com:80\",build_id=\"some_build_id\",run_id=\"some_run_id\",image=\"mlmodel-test/static-http:1\",model_type=\"default\",deployment_time=\"{deployment_time}\""
    );
    for line in [
        format!("mlmodel_manager_active{{{labels}}} 1"),
        format!("mlmodel_manager_valid{{{labels}}} 1"),
        format!("mlmodel_manager_weird{{{labels}}} 0"),
        format!("mlmodel_manager_model_request_replicas{{{labels}}} 2"),
        format!("mlmodel_manager_replicas_requested{{{labels}}} 2"),
        format!("mlmodel_manager_model_running{{{labels}}} 2"),
        "# TYPE mlmodel_manager_model_running gauge".to_string(),
        "# HELP mlmodel_manager_active 1 if the model's services exist in the swarm".to_string(),
        "mlmodel_reconciles_total 2".to_string(),
        "mlmodel_docker_api_calls_total{kind=\"create_service\"} 1".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn health_reports_each_check() {
    let api = api().await;
    let (status, body) = api.get("/healthz").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "docker not connected yet: {body}"
    );
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["watcher"]["ok"], true);
    assert_eq!(body["checks"]["docker"]["ok"], false);
    // The shared network was created as the first free /16 after 10.0.0.0/16.
    assert_eq!(body["checks"]["network"]["ok"], true);
    assert_eq!(
        body["checks"]["network"]["detail"],
        "network mlmodel (10.1.0.0/16, 65533 addresses): 0 in use, 0 needed once every replica runs"
    );
}

#[tokio::test]
async fn a_shared_network_too_small_degrades_health_and_a_new_one_avoids_taken_subnets() {
    let manifests = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (_files_tx, files) = tokio::sync::watch::channel(Arc::new(FileDeclarations::default()));
    let swarm = Arc::new(FakeSwarm::new());
    // Someone made the shared network by hand, with 5 addresses.
    swarm.add_network_with_subnet("mlmodel", "10.1.0.0/29");
    let controller = Controller::new(parts(
        swarm.clone(),
        data.path(),
        files,
        Instance::default(),
    ));
    controller.ensure_network().await.unwrap();
    controller.relist().await.unwrap();
    let router = router(ApiState::new(
        controller.readers(),
        None,
        Arc::new(AlwaysAlive),
    ));
    let api = Api {
        router,
        swarm: swarm.clone(),
        controller: controller.clone(),
        manifests,
        files_tx: _files_tx,
        _data: data,
    };
    // Three models of the default scale, 2.
    for name in ["a", "b", "c"] {
        let (status, _) = api.call("POST", &format!("/{name}"), Some(BODY), &[]).await;
        assert_eq!(status, StatusCode::OK);
        controller.reconcile(name).await;
    }
    controller.relist().await.unwrap();
    let (status, body) = api.get("/healthz").await;
    // Docker's event stream is not followed here (unhealthy), so the network's verdict
    // shows in its check.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["network"]["ok"], false, "{body}");
    let detail = body["checks"]["network"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("network mlmodel (10.1.0.0/29, 5 addresses) is too small: the services on it need 10 addresses once every replica runs (6 for tasks, 3 for service VIPs, 1 for nodes), 5 more than it has;"),
        "{detail}"
    );

    // A second instance's network is created clear of it.
    let (_tx, files) = tokio::sync::watch::channel(Arc::new(FileDeclarations::default()));
    let data = tempfile::tempdir().unwrap();
    let other = Controller::new(parts(
        swarm.clone(),
        data.path(),
        files,
        Instance {
            network: "other".into(),
            ..Instance::default()
        },
    ));
    other.ensure_network().await.unwrap();
    assert_eq!(
        swarm.network_subnets("other"),
        vec!["10.2.0.0/16".to_string()]
    );
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_json() {
    let api = api().await;
    let (status, body) = api.get("/a/b/c").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());
    let (status, body) = api.call("PATCH", "/m", None, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["detail"].is_string());
}

/// Every route the router serves, as (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/health"),
    ("get", "/health/check"),
    ("get", "/health/test"),
    ("get", "/ping"),
    ("get", "/health/ping"),
    ("get", "/version"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/{name}"),
    ("post", "/{name}"),
    ("put", "/{name}"),
    ("delete", "/{name}"),
    ("get", "/{name}/status"),
    ("post", "/{name}/rollback"),
    ("get", "/{name}/logs"),
    ("get", "/{name}/events"),
    ("get", "/events"),
    ("get", "/ui"),
];

#[tokio::test]
async fn the_openapi_description_matches_the_routes() {
    let api = api().await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes, "openapi.json and the router disagree");
    // The watch stream never ends by itself: `watch` tests it.
    for (method, path) in ROUTES.iter().filter(|(_, path)| *path != "/events") {
        let uri = path.replace("{name}", "probe");
        let (status, body) = api.call(&method.to_uppercase(), &uri, None, &[]).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert!(
            status != StatusCode::NOT_FOUND
                || !body["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("no such endpoint"),
            "{method} {path} is not routed"
        );
    }
}

#[tokio::test]
async fn logs_prefix_every_line_with_its_task_and_check_their_parameters() {
    let api = api().await;
    let (status, _) = api.get("/nobody/logs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.post("/carls_model", BODY).await;
    assert_eq!(status, StatusCode::OK);
    api.controller.reconcile("carls_model").await;
    api.controller.relist().await.unwrap();
    let service = "mlmodel_carls_model_mlmodel";
    api.swarm
        .set_logs(service, &["listening on :80", "!a warning", "served /"]);
    api.controller.relist().await.unwrap();
    let (status, text) = api.get("/carls_model/logs?tail=2").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    // The default scale is 2: two tasks, the last two lines of each, in order.
    for slot in [1, 2] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{service}.{slot}.")))
            .collect();
        let host = crate::swarm::fake::FAKE_NODE_HOSTNAME;
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(&format!("@{host}    | a warning")),
            "{text}"
        );
        assert!(
            lines[1].ends_with(&format!("@{host}    | served /")),
            "{text}"
        );
    }
    assert_eq!(text.lines().count(), 4, "{text}");
    for bad in ["tail=x", "since=yesterday", "follow=maybe"] {
        let (status, body) = api.get(&format!("/carls_model/logs?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let calls = api.swarm.calls_of(crate::swarm::fake::Op::TaskLogs);
    assert_eq!(calls, 2, "one call per task, and none for refused requests");
}
