//! The `mlmodel` command line against a real `mlmodel serve` on the real swarm: what a
//! user types, what they see, the exit codes, and what Docker then runs.

mod common;

use common::server::{Server, inspect_service, manifest, running_tasks};
use common::{swarm, unique_name};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(90);

/// Runs `mlmodel ARGS --server URL`.
fn mlmodel(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(args)
        .arg("--server")
        .arg(server)
        .env("TZ", "UTC")
        .env_remove("MLMODEL_SERVER")
        .env_remove("MLMODEL_TOKEN")
        .output()
        .expect("mlmodel runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it is not the expected one.
fn assert_exit(output: &Output, expected: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "{what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout(output),
        stderr(output)
    );
}

/// The image `docker service inspect` shows in a service's spec.
fn service_image(service: &str) -> String {
    let spec = inspect_service(service).expect("the service exists");
    spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The table row of `model` in `get` output, split into columns.
fn row<'a>(table: &'a str, model: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|columns| columns.first() == Some(&model))
        .unwrap_or_else(|| panic!("no row for {model} in:\n{table}"))
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write manifest");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_applies_inspects_diffs_rolls_back_and_deletes_a_model() {
    if swarm().await.is_none() {
        return;
    }
    let mut server = Server::start(&unique_name("cli"));
    let url = server.url.clone();
    let model = "clim";
    let service = server.service_name(model);
    // The user's manifests live outside the server's watched directory, so the model is
    // the API's to change.
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("a UTF-8 temp path");
    write(dir.path(), "clim.yml", &manifest(1, "1"));

    let applied = mlmodel(&url, &["apply", "-f", dir_arg, "--wait", "--timeout", "2m"]);
    assert_exit(&applied, 0, "apply --wait");
    let out = stdout(&applied);
    assert!(out.contains("clim configured (deployment "), "{out}");
    assert!(out.contains("clim is available (deployment "), "{out}");
    assert_eq!(service_image(&service), "mlmodel-test/static-http:1");
    let first = server.status(model).expect("a status")["deployment_id"]
        .as_str()
        .expect("a deployment id")
        .to_string();
    assert!(out.contains(&first), "{out}");

    let got = mlmodel(&url, &["get"]);
    assert_exit(&got, 0, "get");
    let table = stdout(&got);
    let header = row(&table, "NAME");
    let columns = row(&table, model);
    let column = |name: &str| {
        let at = header.iter().position(|h| *h == name);
        at.and_then(|i| columns.get(i).copied())
            .unwrap_or_else(|| panic!("no {name} column in:\n{table}"))
    };
    assert_eq!(column("PHASE"), "Available", "{table}");
    assert_eq!(column("READY"), "1/1", "{table}");

    let json = mlmodel(&url, &["get", "-o", "json"]);
    assert_exit(&json, 0, "get -o json");
    let listed: Value = serde_json::from_str(&stdout(&json)).expect("get -o json prints JSON");
    let status = listed
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == model))
        .unwrap_or_else(|| panic!("{model} not listed: {listed}"));
    assert_eq!(status["phase"], "Available");
    assert_eq!(status["deployment_id"], first.as_str());
    let one = mlmodel(&url, &["get", model, "-o", "json"]);
    assert_exit(&one, 0, "get NAME -o json");
    let one: Value = serde_json::from_str(&stdout(&one)).expect("JSON");
    assert_eq!(one["name"], model);
    assert_eq!(one["replicas_running"], 1);

    let described = mlmodel(&url, &["describe", model]);
    assert_exit(&described, 0, "describe");
    let text = stdout(&described);
    for expected in [
        "Available",
        "mlmodel-test/static-http:1",
        &format!("{service}.1"),
        &first,
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }

    let history = mlmodel(&url, &["history", model]);
    assert_exit(&history, 0, "history");
    assert!(stdout(&history).contains(&first), "{}", stdout(&history));

    let unchanged = mlmodel(&url, &["diff", "-f", dir_arg]);
    assert_exit(&unchanged, 0, "diff of the applied manifest");
    assert!(stdout(&unchanged).contains("no changes"));
    write(dir.path(), "clim.yml", &manifest(1, "2"));
    let changed = mlmodel(&url, &["diff", "-f", dir_arg]);
    assert_exit(&changed, 1, "diff of an edited manifest");
    let text = stdout(&changed);
    assert!(
        text.contains("- image: mlmodel-test/static-http:1")
            && text.contains("+ image: mlmodel-test/static-http:2"),
        "{text}"
    );

    let updated = mlmodel(&url, &["apply", "-f", dir_arg, "--wait", "--timeout", "2m"]);
    assert_exit(&updated, 0, "apply --wait of the edit");
    assert_eq!(service_image(&service), "mlmodel-test/static-http:2");

    let rolled = mlmodel(&url, &["rollback", model]);
    assert_exit(&rolled, 0, "rollback");
    assert!(
        stdout(&rolled).contains("image mlmodel-test/static-http:1"),
        "{}",
        stdout(&rolled)
    );
    server.wait_for("the service back on image :1", CONVERGE, || {
        service_image(&service) == "mlmodel-test/static-http:1"
    });
    let history = stdout(&mlmodel(&url, &["history", model]));
    let deployments = history.lines().skip(1).filter(|l| !l.is_empty()).count();
    assert_eq!(deployments, 3, "{history}");

    let deleted = mlmodel(&url, &["delete", model]);
    assert_exit(&deleted, 0, "delete");
    assert!(stdout(&deleted).contains("clim deleted"));
    server.wait_for("the service removed", CONVERGE, || {
        inspect_service(&service).is_none()
    });
    server.wait_for("get NAME to show Removed", CONVERGE, || {
        let got = mlmodel(&url, &["get", model]);
        got.status.code() == Some(0) && row(&stdout(&got), model).contains(&"Removed")
    });

    let cleared = mlmodel(&url, &["delete", model, "--clear-all-records"]);
    assert_exit(&cleared, 0, "delete --clear-all-records");
    assert_eq!(
        stdout(&cleared),
        "clim deleted, its deployment history cleared\n"
    );
    let history = mlmodel(&url, &["history", model]);
    assert_exit(&history, 1, "history of a cleared model");
    server.wait_for("get NAME to say the model is unknown", CONVERGE, || {
        mlmodel(&url, &["get", model]).status.code() == Some(1)
    });

    // Invalid manifests: every problem as FILE: field: message, and nothing sent.
    let bad = tempfile::tempdir().expect("temp dir");
    write(
        bad.path(),
        "broken.yml",
        "domain: not a host\nimage: mlmodel-test/static-http:1\nbuild_id: b\nrun_id: r\nmem_limit: 64M\nmem_reservation: 1G\n",
    );
    write(
        bad.path(),
        "mistyped.yml",
        "domain: ok.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: b\nrun_id: r\nscale: lots\n",
    );
    let refused = mlmodel(&url, &["apply", "-f", bad.path().to_str().unwrap()]);
    assert_exit(&refused, 1, "apply of invalid manifests");
    let errors = stderr(&refused);
    let broken = bad.path().join("broken.yml").display().to_string();
    let mistyped = bad.path().join("mistyped.yml").display().to_string();
    for expected in [
        format!("{broken}: domain: "),
        format!("{broken}: mem_reservation: "),
        format!("{mistyped}: scale: "),
    ] {
        assert!(errors.contains(&expected), "{expected} not in:\n{errors}");
    }
    assert!(errors.contains("nothing was sent"), "{errors}");
    assert!(stdout(&refused).is_empty(), "{}", stdout(&refused));
    assert_eq!(server.get("/broken").0, 404, "the invalid model was sent");
    assert_eq!(server.get("/mistyped").0, 404, "the invalid model was sent");

    // The server stops: every command says how to start it, and exits 3.
    server.stop();
    let unreachable = mlmodel(&url, &["get"]);
    assert_exit(&unreachable, 3, "get with the server stopped");
    let errors = stderr(&unreachable);
    assert!(
        errors.contains(&format!("cannot connect to mlmodel at {url}")),
        "{errors}"
    );
    assert!(errors.contains("Start it with: mlmodel serve"), "{errors}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_wait_of_a_missing_image_says_why_it_does_not_become_available() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("clibad"));
    let url = server.url.clone();
    let service = server.service_name("stuck");
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("a UTF-8 temp path");
    write(dir.path(), "stuck.yml", &manifest(1, "1"));
    let applied = mlmodel(&url, &["apply", "-f", dir_arg, "--wait", "--timeout", "2m"]);
    assert_exit(&applied, 0, "apply --wait of a good image");

    // Swarm rejects the new task (no such image) and, as the template says
    // (`failure_action: rollback`), rolls the update back; mlmodel says so, and --wait
    // ends there instead of waiting out its timeout.
    write(dir.path(), "stuck.yml", &manifest(1, "no-such-tag"));
    let stuck = mlmodel(&url, &["apply", "-f", dir_arg, "--wait", "--timeout", "2m"]);
    assert_exit(&stuck, 1, "apply --wait of a missing image");
    let errors = stderr(&stuck);
    let failed = errors
        .lines()
        .find(|l| l.starts_with("error: stuck: deployment "))
        .unwrap_or_else(|| panic!("{errors}"));
    assert!(
        failed.contains(&format!(
            " rolled back by Swarm on service {service}: its new tasks failed ("
        )),
        "{failed}"
    );
    assert!(failed.contains("mlmodel rollback stuck"), "{failed}");
    assert_eq!(running_tasks(&service), 1, "the old task still serves");
}
