//! The client commands of the real `mlmodel` binary against a stub API server.
//!
//! The stub serves canned answers shaped like the API contract and records every request,
//! so each test checks what a user sees (stdout, stderr, exit code) and what was sent.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "s3cret-token";

/// One request the stub received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: Option<Json>,
}

/// A model the stub knows: its status and its records, newest first.
#[derive(Debug, Clone)]
struct Model {
    status: Json,
    records: Vec<Json>,
}

#[derive(Debug, Default)]
struct StubState {
    /// The token writes need, if any.
    token: Option<String>,
    models: BTreeMap<String, Model>,
    /// Model name -> manifest file that owns it.
    file_owned: BTreeMap<String, String>,
    /// Phase and message a model gets after an apply (default: Available).
    after_apply: Option<(String, String)>,
    requests: Vec<Seen>,
    next_id: u64,
}

/// The stub server, running on its own thread until the test ends.
struct Stub {
    addr: SocketAddr,
    state: Arc<Mutex<StubState>>,
}

impl Stub {
    fn start(state: StubState) -> Self {
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let state = shared.clone();
                        async move { handle(&state, method, uri, headers, body) }
                    },
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Runs `mlmodel ARGS` against this stub, without a token unless `token` is given.
    fn run(&self, args: &[&str], token: Option<&str>) -> Output {
        mlmodel(args, &self.url(), token)
    }
}

fn mlmodel(args: &[&str], server: &str, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlmodel"));
    command
        .args(args)
        .env("MLMODEL_SERVER", server)
        .env("TZ", "UTC")
        .env_remove("MLMODEL_TOKEN");
    if let Some(token) = token {
        command.env("MLMODEL_TOKEN", token);
    }
    command.output().unwrap()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "detail": text }))).into_response()
}

/// Routes one request by hand so every request, matched or not, is recorded.
fn handle(
    state: &Mutex<StubState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    let query = uri.query().unwrap_or_default().to_string();
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: query.clone(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        body: serde_json::from_slice(&body).ok(),
    };
    state.requests.push(seen.clone());
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let write = method != Method::GET;
    if write && state.token.is_some() {
        let expected = format!("Bearer {}", state.token.as_deref().unwrap());
        if seen.authorization.as_deref() != Some(expected.as_str()) {
            return detail(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        }
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", [""]) if params.get("detail").map(String::as_str) == Some("true") => {
            let all: Vec<Json> = state.models.values().map(|m| m.status.clone()).collect();
            axum::Json(all).into_response()
        }
        ("GET", [name]) => match state.models.get(*name) {
            Some(model) => {
                let n: usize = params.get("n").map_or(1, |n| n.parse().unwrap());
                let records: Vec<Json> = model.records.iter().take(n).cloned().collect();
                axum::Json(records).into_response()
            }
            None => detail(StatusCode::NOT_FOUND, &format!("no model named {name}")),
        },
        ("GET", [name, "status"]) => match state.models.get(*name) {
            Some(model) => axum::Json(model.status.clone()).into_response(),
            None => detail(StatusCode::NOT_FOUND, &format!("no model named {name}")),
        },
        ("POST" | "PUT", [name]) => {
            let name = name.to_string();
            if let Some(file) = state.file_owned.get(&name) {
                let text = format!("{name} is declared by {file}: edit that file instead");
                return detail(StatusCode::CONFLICT, &text);
            }
            let Some(Json::Object(fields)) = seen.body else {
                return detail(StatusCode::UNPROCESSABLE_ENTITY, "body: expected an object");
            };
            let record = state.record(&name, fields);
            axum::Json(record).into_response()
        }
        ("DELETE", [name]) => {
            let name = name.to_string();
            if let Some(file) = state.file_owned.get(&name) {
                let text = format!("{name} is declared by {file}: remove that file instead");
                return detail(StatusCode::CONFLICT, &text);
            }
            let clear = params.get("clear_all_records").map(String::as_str) == Some("true");
            let Some(model) = state.models.get(&name).cloned() else {
                return detail(StatusCode::NOT_FOUND, &format!("no model named {name}"));
            };
            if clear {
                state.models.remove(&name);
            }
            // Like the real API: the newest record only, whether or not history is cleared.
            let newest: Vec<Json> = model.records.into_iter().take(1).collect();
            axum::Json(json!({ "deployments": newest })).into_response()
        }
        ("POST", [name, "rollback"]) => {
            let name = name.to_string();
            let Some(model) = state.models.get(&name).cloned() else {
                return detail(StatusCode::NOT_FOUND, &format!("no model named {name}"));
            };
            let target = match params.get("to") {
                Some(id) => model.records.iter().find(|r| r["deployment_id"] == **id),
                None => model.records.get(1),
            };
            let Some(Json::Object(fields)) = target.cloned() else {
                return detail(StatusCode::NOT_FOUND, "no such deployment of this model");
            };
            axum::Json(state.record(&name, fields)).into_response()
        }
        _ => detail(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

impl StubState {
    /// Records a new deployment of `name` from `fields` and updates its status.
    fn record(&mut self, name: &str, mut fields: serde_json::Map<String, Json>) -> Json {
        self.next_id += 1;
        let id = format!("{:032x}", 0xd000 + self.next_id);
        fields.insert("name".into(), json!(name));
        fields.insert("deployment_id".into(), json!(id));
        fields.insert("deployment_time".into(), json!(now()));
        fields.insert("rendered_template".into(), json!("services: {}\n"));
        fields.insert("containers".into(), json!([]));
        fields.insert("swarm_services".into(), json!([]));
        let record = Json::Object(fields);
        let (phase, message) = self
            .after_apply
            .clone()
            .unwrap_or(("Available".into(), String::new()));
        let scale = record["scale"].as_u64().unwrap_or(2);
        let running = if phase == "Available" { scale } else { 0 };
        let status = status_json(name, &phase, running, scale, &id, now(), &message);
        let model = self.models.entry(name.to_string()).or_insert(Model {
            status: Json::Null,
            records: Vec::new(),
        });
        model.records.insert(0, record.clone());
        model.status = status;
        record
    }
}

fn status_json(
    name: &str,
    phase: &str,
    running: u64,
    desired: u64,
    id: &str,
    time: f64,
    message: &str,
) -> Json {
    json!({
        "name": name, "valid": true, "active": running > 0, "phase": phase,
        "message": message, "replicas_running": running, "replicas_desired": desired,
        "synced": phase == "Available", "source": "api", "deployment_id": id,
        "deployment_time": time, "image": format!("team/{name}:1"),
        "services": [{"name": format!("mlmodel_{name}_mlmodel"), "image": format!("team/{name}:1"),
                      "replicas": format!("{running}/{desired}")}],
        "tasks": [
            {"name": format!("mlmodel_{name}_mlmodel.1"), "image": format!("team/{name}:1"),
             "node": "node-1", "desired_state": "Running", "state": "Running",
             "since": "2024-05-01T10:00:00Z", "error": ""},
            {"name": format!("mlmodel_{name}_mlmodel.2"), "image": format!("team/{name}:1"),
             "node": "", "desired_state": "Running", "state": "Pending", "since": null,
             "error": "no suitable node (insufficient resources on 1 node)"}
        ],
        "observed_at": now()
    })
}

fn record_json(name: &str, id: &str, time: f64, image: &str, scale: u64) -> Json {
    json!({
        "build_id": "build-7", "containers": [], "cpu_limit": "1", "cpu_reservation": "0.1",
        "deploy_delay": "5s", "deploy_monitor_period": "30s", "deployment_id": id,
        "deployment_time": time, "domain": format!("{}.example.com", name.replace('_', "-")),
        "extra_template_attributes": {}, "image": image, "mem_limit": "2G",
        "mem_reservation": "1G", "name": name, "port": 80, "rendered_template": "services: {}\n",
        "run_id": "run-3", "scale": scale, "swarm_services": [],
        "template_file": "default.template.yml"
    })
}

const OLD_ID: &str = "0123456789abcdef0123456789abcdef";
const CURRENT_ID: &str = "839e2353728e476d9a6da2f5f781e908";

/// A stub with `carls_model` (two deployments, Available) and `fraud_model` (Pending).
fn stub_with_models(token: Option<&str>) -> Stub {
    let t = now();
    let mut models = BTreeMap::new();
    models.insert(
        "carls_model".to_string(),
        Model {
            status: status_json("carls_model", "Available", 2, 2, CURRENT_ID, t - 720.0, ""),
            records: vec![
                record_json(
                    "carls_model",
                    CURRENT_ID,
                    t - 720.0,
                    "team/carls_model:1",
                    2,
                ),
                record_json(
                    "carls_model",
                    OLD_ID,
                    t - 3.0 * 86_400.0,
                    "team/carls_model:0",
                    3,
                ),
            ],
        },
    );
    let mut pending = status_json(
        "fraud_model",
        "Pending",
        0,
        3,
        "feed",
        t - 30.0,
        "pulling image",
    );
    pending["image"] = json!("team/fraud_model:2");
    models.insert(
        "fraud_model".to_string(),
        Model {
            status: pending,
            records: vec![record_json(
                "fraud_model",
                "feed",
                t - 30.0,
                "team/fraud_model:2",
                3,
            )],
        },
    );
    let mut file_owned = BTreeMap::new();
    file_owned.insert(
        "owned_model".to_string(),
        "manifests/owned_model.yml".to_string(),
    );
    Stub::start(StubState {
        token: token.map(str::to_string),
        models,
        file_owned,
        ..StubState::default()
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

fn write_manifest(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const CARLS_MANIFEST: &str = "\
name: carls_model
domain: carls-model.example.com
image: team/carls_model:1
build_id: build-7
run_id: run-3
";

#[test]
fn get_prints_a_table_from_one_request() {
    let stub = stub_with_models(None);
    let output = stub.run(&["get"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAME          VALID   ACTIVE   READY   SYNCED   PHASE       IMAGE                AGE"
    );
    assert_eq!(
        lines[1],
        "carls_model   true    true     2/2     true     Available   team/carls_model:1   12m"
    );
    assert!(
        lines[2].starts_with(
            "fraud_model   true    false    0/3     false    Pending     team/fraud_model:2   3"
        ),
        "{text}"
    );
    assert_eq!(lines.len(), 3);
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].path.as_str(), requests[0].query.as_str()),
        ("/", "detail=true")
    );
}

#[test]
fn get_wide_adds_source_and_message() {
    let stub = stub_with_models(None);
    let output = stub.run(&["get", "fraud_model", "-o", "wide"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("AGE   SOURCE   MESSAGE"),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .ends_with("api      pulling image"),
        "{text}"
    );
    assert_eq!(stub.requests()[0].path, "/fraud_model/status");
}

#[test]
fn get_json_prints_the_status_objects() {
    let stub = stub_with_models(None);
    let output = stub.run(&["get", "-o", "json"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let all: Vec<Json> = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["name"], "carls_model");
    assert_eq!(all[0]["deployment_id"], CURRENT_ID);
    assert_eq!(
        all[0]["tasks"][1]["error"],
        "no suitable node (insufficient resources on 1 node)"
    );

    let one = stub.run(&["get", "carls_model", "-o", "yaml"], None);
    let value: serde_yaml::Value = serde_yaml::from_str(&stdout(&one)).unwrap();
    assert_eq!(value["phase"].as_str(), Some("Available"));
}

#[test]
fn get_of_an_unknown_model_prints_the_servers_detail_and_exits_1() {
    let stub = stub_with_models(None);
    let output = stub.run(&["get", "nobody"], None);
    assert_eq!(code(&output), 1);
    assert_eq!(stderr(&output), "error: no model named nobody\n");
    assert_eq!(stdout(&output), "");
}

#[test]
fn get_watch_prints_the_table_then_a_row_per_change() {
    let stub = stub_with_models(None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["get", "-w"])
        .env("MLMODEL_SERVER", stub.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(next().starts_with("NAME "));
    assert!(next().starts_with("carls_model "));
    assert!(next().starts_with("fraud_model "));
    {
        let mut state = stub.state.lock().unwrap();
        let status = &mut state.models.get_mut("fraud_model").unwrap().status;
        status["phase"] = json!("Available");
        status["replicas_running"] = json!(3);
    }
    let changed = next();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        changed.starts_with("fraud_model   true    false    3/3     false    Available "),
        "{changed}"
    );
    // Unchanged models were not printed again before the change arrived.
    assert!(
        rx.try_recv()
            .map_or(true, |line| !line.starts_with("carls_model"))
    );
}

#[test]
fn describe_shows_deployment_services_tasks_with_errors_and_history() {
    let stub = stub_with_models(None);
    let output = stub.run(&["describe", "carls_model"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "Name:     carls_model\n",
        "Phase:    Available\n",
        "Ready:    2/2\n",
        "\nDeployment:\n",
        &format!("  ID:                {CURRENT_ID}\n"),
        "  Image:             team/carls_model:1\n",
        "\nServices:\n",
        "mlmodel_carls_model_mlmodel   team/carls_model:1   2/2\n",
        "\nTasks:\n",
        "no suitable node (insufficient resources on 1 node)\n",
        "\nHistory (last 5):\n",
        OLD_ID,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let paths: Vec<(String, String)> = stub
        .requests()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    assert!(paths.contains(&("/carls_model/status".into(), String::new())));
    assert!(paths.contains(&("/carls_model".into(), "n=5".into())));
}

#[test]
fn apply_with_an_invalid_manifest_prints_every_error_and_sends_nothing() {
    let stub = stub_with_models(None);
    let dir = tempfile::tempdir().unwrap();
    let bad = write_manifest(
        dir.path(),
        "bad.yml",
        "name: bad_model\ndomain: -nope-\nimage: team/bad:1\nbuild_id: b\nrun_id: r\nscale: 5000\n",
    );
    write_manifest(dir.path(), "good.yml", CARLS_MANIFEST);
    let output = stub.run(&["apply", "-f", dir.path().to_str().unwrap()], Some(TOKEN));
    assert_eq!(code(&output), 1);
    let errors = stderr(&output);
    assert!(errors.contains(&format!("{bad}: domain: ")), "{errors}");
    assert!(errors.contains(&format!("{bad}: scale: ")), "{errors}");
    assert!(errors.contains("nothing was sent"), "{errors}");
    assert!(stub.requests().is_empty(), "{:?}", stub.requests());
}

#[test]
fn apply_posts_the_spec_with_the_bearer_token() {
    let stub = stub_with_models(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "carls_model.yml", CARLS_MANIFEST);
    let output = stub.run(&["apply", "-f", &file], Some(TOKEN));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let post = &requests[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/carls_model")
    );
    assert_eq!(
        post.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let body = post.body.as_ref().unwrap();
    assert_eq!(body["name"], "carls_model");
    assert_eq!(body["image"], "team/carls_model:1");
    assert_eq!(body["domain"], "carls-model.example.com");
    assert_eq!(body["scale"], 2);
    assert_eq!(body["port"], 80);
    assert!(body.get("deployment_id").is_none());
    let id = stub.state.lock().unwrap().models["carls_model"].records[0]["deployment_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        stdout(&output),
        format!("carls_model configured (deployment {id})\n")
    );
    assert!(!stdout(&output).contains(TOKEN) && !stderr(&output).contains(TOKEN));
}

#[test]
fn apply_without_the_token_is_refused_with_a_hint() {
    let stub = stub_with_models(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "carls_model.yml", CARLS_MANIFEST);
    let output = stub.run(&["apply", "-f", &file], None);
    assert_eq!(code(&output), 1);
    let errors = stderr(&output);
    assert!(
        errors.starts_with("error: missing or invalid bearer token\n"),
        "{errors}"
    );
    assert!(errors.contains("MLMODEL_TOKEN"), "{errors}");
    let wrong = stub.run(&["apply", "-f", &file], Some("wrong-token"));
    assert_eq!(code(&wrong), 1);
    assert!(!stderr(&wrong).contains("wrong-token"));
}

#[test]
fn apply_of_a_file_owned_model_prints_the_conflict_verbatim() {
    let stub = stub_with_models(None);
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(
        dir.path(),
        "owned_model.yml",
        &CARLS_MANIFEST.replace("carls_model", "owned_model"),
    );
    let output = stub.run(&["apply", "-f", &file], None);
    assert_eq!(code(&output), 1);
    assert_eq!(
        stderr(&output),
        "error: owned_model is declared by manifests/owned_model.yml: edit that file instead\n"
    );
}

#[test]
fn apply_wait_follows_the_rollout_until_available() {
    let stub = stub_with_models(None);
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "carls_model.yml", CARLS_MANIFEST);
    let output = stub.run(&["apply", "-f", &file, "--wait"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("carls_model: Available, 2/2 ready\n"),
        "{text}"
    );
    assert!(
        text.contains("carls_model is available (deployment "),
        "{text}"
    );
}

#[test]
fn apply_wait_exits_1_with_the_servers_message_when_the_rollout_fails() {
    let stub = stub_with_models(None);
    stub.state.lock().unwrap().after_apply =
        Some(("Failed".into(), "image team/carls_model:1 not found".into()));
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "carls_model.yml", CARLS_MANIFEST);
    let output = stub.run(&["apply", "-f", &file, "--wait"], None);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("failed: image team/carls_model:1 not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn apply_wait_exits_1_saying_what_it_waited_for_when_time_runs_out() {
    let stub = stub_with_models(None);
    stub.state.lock().unwrap().after_apply = Some(("Progressing".into(), String::new()));
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "carls_model.yml", CARLS_MANIFEST);
    let output = stub.run(&["apply", "-f", &file, "--wait", "--timeout", "1s"], None);
    assert_eq!(code(&output), 1);
    let errors = stderr(&output);
    assert!(
        errors.contains(
            "error: timed out after 1s waiting for carls_model to become Available with deployment "
        ),
        "{errors}"
    );
    assert!(
        errors.contains("last seen: carls_model: Progressing, 0/2 ready"),
        "{errors}"
    );
}

#[test]
fn delete_keeps_or_clears_the_history_as_asked() {
    let stub = stub_with_models(Some(TOKEN));
    let output = stub.run(&["delete", "fraud_model"], Some(TOKEN));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(stdout(&output), "fraud_model deleted\n");
    let output = stub.run(
        &["delete", "carls_model", "--clear-all-records"],
        Some(TOKEN),
    );
    assert_eq!(
        stdout(&output),
        "carls_model deleted, its deployment history cleared\n"
    );
    let queries: Vec<String> = stub.requests().into_iter().map(|r| r.query).collect();
    assert_eq!(
        queries,
        ["clear_all_records=false", "clear_all_records=true"]
    );
    let owned = stub.run(&["delete", "owned_model"], Some(TOKEN));
    assert_eq!(code(&owned), 1);
    assert!(
        stderr(&owned).starts_with("error: owned_model is declared by manifests/owned_model.yml")
    );
}

#[test]
fn history_lists_deployments_newest_first() {
    let stub = stub_with_models(None);
    let output = stub.run(&["history", "carls_model"], None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("DEPLOYMENT ID                      TIME "),
        "{text}"
    );
    assert!(
        lines[0].ends_with("IMAGE                SCALE   BUILD     RUN"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(CURRENT_ID) && lines[1].contains("(12m ago)"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(OLD_ID)
            && lines[2].contains("(3d ago)")
            && lines[2].contains("team/carls_model:0   3   "),
        "{text}"
    );
    assert_eq!(stub.requests()[0].query, "n=10");
    stub.run(&["history", "carls_model", "-n", "1"], None);
    assert_eq!(stub.requests()[1].query, "n=1");
}

#[test]
fn rollback_redeploys_the_chosen_deployment() {
    let stub = stub_with_models(Some(TOKEN));
    let output = stub.run(&["rollback", "carls_model", "--to", OLD_ID], Some(TOKEN));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("carls_model rolled back to {OLD_ID} (deployment ")),
        "{text}"
    );
    assert!(text.ends_with(", image team/carls_model:0)\n"), "{text}");
    let request = &stub.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/carls_model/rollback")
    );
    assert_eq!(request.query, format!("to={OLD_ID}"));
    let unknown = stub.run(&["rollback", "carls_model", "--to", "ffff"], Some(TOKEN));
    assert_eq!(code(&unknown), 1);
    assert_eq!(
        stderr(&unknown),
        "error: no such deployment of this model\n"
    );
}

#[test]
fn diff_exits_0_when_nothing_would_change_and_1_when_something_would() {
    let stub = stub_with_models(None);
    let dir = tempfile::tempdir().unwrap();
    let same = write_manifest(dir.path(), "same.yml", CARLS_MANIFEST);
    let output = stub.run(&["diff", "-f", &same], None);
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    assert_eq!(stdout(&output), "carls_model: no changes\n");

    let changed = write_manifest(
        dir.path(),
        "changed.yml",
        &format!(
            "{}scale: 4\n",
            CARLS_MANIFEST.replace("carls_model:1", "carls_model:2")
        ),
    );
    let output = stub.run(&["diff", "-f", &changed], None);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "carls_model:\n\
         - image: team/carls_model:1\n\
         + image: team/carls_model:2\n\
         - scale: 2\n\
         + scale: 4\n"
    );

    let new = write_manifest(
        dir.path(),
        "new.yml",
        &CARLS_MANIFEST.replace("carls_model", "new_model"),
    );
    let output = stub.run(&["diff", "-f", &new], None);
    assert_eq!(code(&output), 1);
    assert_eq!(stdout(&output), "new_model: not deployed yet\n");
    assert!(stub.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn diff_of_an_invalid_manifest_exits_2() {
    let stub = stub_with_models(None);
    let dir = tempfile::tempdir().unwrap();
    let bad = write_manifest(dir.path(), "bad.yml", &format!("{CARLS_MANIFEST}port: 0\n"));
    let output = stub.run(&["diff", "-f", &bad], None);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains(&format!("{bad}: port: ")),
        "{}",
        stderr(&output)
    );
    assert!(stub.requests().is_empty());
}

#[test]
fn an_unreachable_server_exits_3_with_a_hint() {
    // Bind a port, then free it: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "carls_model.yml", CARLS_MANIFEST);
    for args in [
        &["get"][..],
        &["describe", "m"],
        &["apply", "-f", &file],
        &["diff", "-f", &file],
    ] {
        let output = mlmodel(args, &server, Some(TOKEN));
        assert_eq!(code(&output), 3, "{args:?}");
        let errors = stderr(&output);
        assert!(
            errors.starts_with(&format!(
                "error: cannot connect to mlmodel at {server}: is the server running? Start it with: mlmodel serve\n"
            )),
            "{errors}"
        );
        assert!(errors.contains("cause: "), "{errors}");
        assert!(!errors.contains(TOKEN));
    }
}

#[test]
fn usage_errors_exit_2() {
    let output = mlmodel(&["get", "-o", "xml"], "http://127.0.0.1:1", None);
    assert_eq!(code(&output), 2);
    let output = mlmodel(&["apply"], "http://127.0.0.1:1", None);
    assert_eq!(code(&output), 2);
}

#[test]
fn completion_prints_a_script_for_the_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = mlmodel(&["completion", shell], "http://127.0.0.1:1", None);
        assert_eq!(code(&output), 0);
        assert!(stdout(&output).contains("rollback"), "{shell}");
    }
}
