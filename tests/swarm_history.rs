//! The history kept in Swarm (`mlmodel serve --swarm-history`), on the real swarm: every
//! deployment is a config in Swarm's raft store, so a store damaged on disk (recovered
//! with `--recover-store`) and a new, empty store (another node's volume) both start
//! with the whole history, under the same deployment ids, restarting nothing.

mod common;

use common::server::Server;
use common::{docker_lines, docker_ok, running_task_ids, swarm, unique_name};
use serde_json::Value;
use std::time::Duration;

fn body(build_id: &str) -> String {
    format!(
        r#"{{"domain": "history.example.com", "build_id": "{build_id}", "run_id": "r1", "image": "mlmodel-test/static-http:1", "scale": 1, "cpu_reservation": "0.01", "mem_limit": "64M", "mem_reservation": "8M"}}"#
    )
}

/// The model's deployment ids, newest first.
fn history(server: &Server, model: &str) -> Vec<String> {
    match server.get(&format!("/{model}?n=100")) {
        (200, Value::Array(records)) => records
            .iter()
            .map(|r| r["deployment_id"].as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// The journal's configs of `instance`: name and labels.
fn journal(instance: &str) -> Vec<(String, Value)> {
    let filter = format!("label=mlmodel.history={instance}");
    docker_lines(&["config", "ls", "-q", "--filter", &filter])
        .iter()
        .map(|id| {
            let config: Value =
                serde_json::from_str(&docker_ok(&["config", "inspect", id])).unwrap();
            let spec = &config[0]["Spec"];
            (
                spec["Name"].as_str().unwrap().to_string(),
                spec["Labels"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_empty_store_takes_the_whole_history_back_from_swarm() {
    if swarm().await.is_none() {
        return;
    }
    let instance = unique_name("hist");
    let args = ["--swarm-history", "--resync", "2s"];
    let mut first = Server::start_with(&instance, &args);
    let timeout = Duration::from_secs(90);
    for build in ["b1", "b2", "b3"] {
        let (code, answer) = first.request("POST", "/kept", Some(&body(build)));
        assert_eq!(code, 200, "POST build {build}: {answer}");
    }
    let (code, answer) = first.request("POST", "/stopped", Some(&body("s1")));
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = first.request("DELETE", "/stopped", None);
    assert_eq!(code, 200, "{answer}");
    first.wait_for("kept Available", timeout, || {
        first.phase("kept").as_deref() == Some("Available")
    });
    let kept = history(&first, "kept");
    assert_eq!(kept.len(), 3, "{kept:?}");
    let stopped = history(&first, "stopped");
    assert_eq!(stopped.len(), 1, "{stopped:?}");

    // In Swarm: one config per deployment, the stop, and the mark of a complete copy.
    let configs = journal(&instance);
    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        format!("{instance}-history-kept-0"),
        format!("{instance}-history-kept-2"),
        format!("{instance}-history-stopped-0"),
        format!("{instance}-stopped-stopped"),
        format!("{instance}-history"),
    ] {
        assert!(
            names.contains(&expected.as_str()),
            "{expected} in {names:?}"
        );
    }
    let (_, labels) = configs
        .iter()
        .find(|(n, _)| n.ends_with("-history-kept-2"))
        .unwrap();
    assert_eq!(labels["mlmodel.history.model"], "kept");
    assert_eq!(labels["mlmodel.history.sequence"], "2");
    let service = first.service_name("kept");
    let tasks = running_task_ids(&service);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(first.stop(), Some(0));

    // The store damaged on disk: recovered, it gets every entry back.
    let data = first.data.path().to_path_buf();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"\x00not a store\xff".repeat(128)).unwrap();
        }
    }
    first.add_args(&["--recover-store"]);
    first.spawn();
    first.wait_for("the recovered copy answering", timeout, || {
        first.get("/healthz").0 == 200
    });
    assert_eq!(history(&first, "kept"), kept, "the whole history, same ids");
    assert_eq!(history(&first, "stopped"), stopped);
    first.wait_for("stopped still stopped (Removed)", timeout, || {
        first.phase("stopped").as_deref() == Some("Removed")
    });
    assert!(
        common::server::service_id(&first.service_name("stopped")).is_none(),
        "a stopped model is not deployed again"
    );
    assert!(
        first
            .log_text()
            .contains("took the model's history from the copy kept in Swarm")
    );
    assert_eq!(first.stop(), Some(0));
    let parent = data.parent().unwrap();
    let prefix = format!("{}.damaged-", data.file_name().unwrap().to_string_lossy());
    for entry in std::fs::read_dir(parent).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        {
            let _ = std::fs::remove_dir_all(path);
        }
    }

    // Another store, empty (another node's volume): the same history, nothing restarted.
    let second = Server::start_with(&instance, &args);
    second.wait_for("the new copy answering", timeout, || {
        second.get("/healthz").0 == 200
    });
    assert_eq!(history(&second, "kept"), kept);
    second.wait_for("kept Available", timeout, || {
        second.phase("kept").as_deref() == Some("Available")
    });
    assert_eq!(running_task_ids(&service), tasks, "nothing was restarted");
    // A new deployment goes to Swarm too, next in sequence.
    let (code, answer) = second.request("POST", "/kept", Some(&body("b4")));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(history(&second, "kept").len(), 4);
    assert!(
        journal(&instance)
            .iter()
            .any(|(n, _)| *n == format!("{instance}-history-kept-3"))
    );
}
