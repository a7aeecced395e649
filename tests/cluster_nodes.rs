//! mlmodel on a real multi-node swarm: the test cluster of `scripts/cluster-up.sh`, one
//! real dockerd per node, each in its own network namespace.
//!
//! `MLMODEL_CLUSTER_HOST` names the first manager's DOCKER_HOST (the last line
//! `cluster-up.sh` prints); `.ci/run` brings the cluster up with three managers and two
//! workers. Without it the tests skip, or fail under `MLMODEL_REQUIRE_SWARM=1`. The tests
//! stop and start nodes, so they run one at a time (nextest's `cluster` group); every
//! node a test stops is started again when the test ends, pass or fail.

mod common;

use common::cluster::{Cluster, Stopped};
use common::server::Server;
use common::unique_name;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

/// A manifest of the test image with `scale` replicas and extra template attributes.
fn manifest(scale: u64, image: &str, extra: &str) -> String {
    format!(
        "domain: model.example.com\nimage: {image}\nbuild_id: b1\nrun_id: r1\nscale: {scale}\ncpu_limit: \"0.5\"\ncpu_reservation: \"0.01\"\nmem_limit: 64M\nmem_reservation: 8M\ndeploy_delay: 1s\ndeploy_monitor_period: 1s\n{extra}"
    )
}

const IMAGE: &str = "mlmodel-test/static-http:1";

fn message(server: &Server, model: &str) -> String {
    server
        .status(model)
        .and_then(|s| s["message"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Available with `replicas` running. Swarm's running count (the status's
/// `replicas_running`) still counts a task on a node that is down until the node returns,
/// so it may be above; the tests count the running tasks themselves.
fn available(server: &Server, model: &str, replicas: u64) -> bool {
    server.status(model).is_some_and(|s: Value| {
        s["phase"] == "Available" && s["replicas_running"].as_u64() >= Some(replicas)
    })
}

#[test]
fn replicas_spread_across_nodes_and_a_constraint_pins_a_model_to_one_node() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let server = cluster.serve("spread", &[]);
    let target = cluster.nodes()[1].hostname.clone();
    server.write_manifest("spread.yml", &manifest(3, IMAGE, ""));
    server.write_manifest(
        "pinned.yml",
        &manifest(
            2,
            IMAGE,
            &format!("extra_template_attributes:\n  constraints: [\"node.hostname=={target}\"]\n"),
        ),
    );
    server.write_manifest(
        "nowhere.yml",
        &manifest(
            1,
            IMAGE,
            "extra_template_attributes:\n  constraints: [\"node.hostname==no-such-node\"]\n",
        ),
    );
    let timeout = Duration::from_secs(90);
    server.wait_for("spread Available", timeout, || {
        available(&server, "spread", 3)
    });
    server.wait_for("pinned Available", timeout, || {
        available(&server, "pinned", 2)
    });
    let spread = cluster.running(&server.service_name("spread"));
    let nodes: BTreeSet<&String> = spread.values().collect();
    assert_eq!(nodes.len(), 3, "one replica per node: {spread:?}");
    let pinned = cluster.running(&server.service_name("pinned"));
    assert_eq!(pinned.len(), 2, "{pinned:?}");
    assert!(pinned.values().all(|n| n == &target), "{pinned:?}");
    // The status names the node of each task, as the swarm does.
    let status = server.status("spread").unwrap();
    let shown: BTreeSet<&str> = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["node"].as_str())
        .collect();
    assert_eq!(shown.len(), 3, "{status}");

    // A constraint no node meets: named in the status once the grace period is over.
    server.wait_for("the unmet constraint named", timeout, || {
        message(&server, "nowhere").contains("`node.hostname==no-such-node`")
    });
    let status = server.status("nowhere").unwrap();
    assert_ne!(status["phase"], "Available", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("scheduling constraints not satisfied"),
        "Swarm's own words come first: {message}"
    );
}

#[test]
fn a_drained_node_moves_its_tasks_and_the_status_says_why() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let server = cluster.serve("drain", &[]);
    let nodes = cluster.nodes();
    server.write_manifest("m.yml", &manifest(nodes.len() as u64, IMAGE, ""));
    let timeout = Duration::from_secs(90);
    server.wait_for("Available on every node", timeout, || {
        available(&server, "m", nodes.len() as u64)
    });
    let service = server.service_name("m");
    let drained = nodes.last().unwrap().hostname.clone();
    assert!(
        cluster.running(&service).values().any(|n| n == &drained),
        "a replica runs on {drained} first"
    );
    cluster.ok(&["node", "update", "--availability", "drain", &drained]);
    let expected = format!("moved off node {drained} (drained)");
    server.wait_for("the move explained", timeout, || {
        message(&server, "m").contains(&expected)
    });
    server.wait_for("Available again", timeout, || {
        available(&server, "m", nodes.len() as u64)
    });
    let running = cluster.running(&service);
    assert_eq!(running.len(), nodes.len(), "{running:?}");
    assert!(running.values().all(|n| n != &drained), "{running:?}");
    cluster.ok(&["node", "update", "--availability", "active", &drained]);
}

#[test]
fn a_stopped_worker_is_named_its_tasks_rescheduled_and_nothing_duplicated_when_it_returns() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let Some(worker) = cluster.workers().last().cloned() else {
        panic!("the test cluster has no worker (scripts/cluster-up.sh --workers 2)");
    };
    let server = cluster.serve("nodedown", &[]);
    let nodes = cluster.nodes().len() as u64;
    server.write_manifest("m.yml", &manifest(nodes, IMAGE, ""));
    let timeout = Duration::from_secs(120);
    server.wait_for("Available on every node", timeout, || {
        available(&server, "m", nodes)
    });
    let service = server.service_name("m");
    let before = cluster.running(&service);
    assert!(before.values().any(|n| n == &worker), "{before:?}");

    let stopped = Stopped::stop(&cluster, &worker);
    // While it is not Available, the status names the node that went down (and keeps
    // saying why the replica moved once it is).
    let mut seen_unavailable = None;
    server.wait_for("the node named as down", timeout, || {
        let status = server.status("m").unwrap_or_default();
        let message = status["message"].as_str().unwrap_or_default().to_string();
        if status["phase"] != "Available" && message.contains(&worker) {
            seen_unavailable = Some(message.clone());
        }
        message.contains(&format!("moved off node {worker} (down"))
            || (status["phase"] != "Available" && message.contains(&format!("{worker} is down")))
    });
    server.wait_for("Available on the remaining nodes", timeout, || {
        available(&server, "m", nodes)
    });
    let during = cluster.running(&service);
    assert_eq!(during.len() as u64, nodes, "{during:?}");
    assert!(during.values().all(|n| n != &worker), "{during:?}");
    // The replicas that ran on other nodes were not touched.
    for (id, node) in before.iter().filter(|(_, n)| *n != &worker) {
        assert_eq!(during.get(id), Some(node), "task {id} kept its place");
    }
    eprintln!("while not Available: {seen_unavailable:?}");

    drop(stopped);
    cluster.wait_ready(Duration::from_secs(60));
    // Give the returned node time to report its old task and Swarm to shut it down.
    std::thread::sleep(Duration::from_secs(8));
    let after = cluster.running(&service);
    assert_eq!(after.len() as u64, nodes, "nothing duplicated: {after:?}");
    assert_eq!(
        cluster.containers_on(&worker, &service),
        after.values().filter(|n| *n == &worker).count(),
        "the returned node runs no stray container of the model"
    );
    assert!(available(&server, "m", nodes));
}

#[test]
fn an_image_on_some_nodes_only_names_the_nodes_that_cannot_run_it() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let nodes = cluster.nodes();
    let holder = nodes[0].hostname.clone();
    let image = format!(
        "mlmodel-test/only-{}:1",
        unique_name("img").replace('_', "-")
    );
    let tag = Command::new("docker")
        .arg("-H")
        .arg(cluster.host_of(&holder))
        .args(["tag", IMAGE, &image])
        .status()
        .expect("docker runs");
    assert!(tag.success());
    let server = cluster.serve("someimage", &[]);
    server.write_manifest("m.yml", &manifest(nodes.len() as u64, &image, ""));
    let others: Vec<String> = nodes[1..].iter().map(|n| n.hostname.clone()).collect();
    let timeout = Duration::from_secs(120);
    server.wait_for("every node without the image named", timeout, || {
        let message = message(&server, "m");
        message.contains("the image cannot be had on node")
            && others.iter().all(|n| message.contains(n.as_str()))
    });
    let message = message(&server, "m");
    assert!(!message.contains(&format!("node {holder},")), "{message}");
    assert!(message.contains("No such image"), "{message}");
    let _ = Command::new("docker")
        .arg("-H")
        .arg(cluster.host_of(&holder))
        .args(["rmi", &image])
        .status();
}

#[test]
fn a_worker_endpoint_is_refused_and_a_lost_quorum_is_reported_then_converged() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    // mlmodel pointed at a worker: a clear refusal at start.
    let worker = cluster
        .workers()
        .first()
        .cloned()
        .expect("the test cluster has a worker");
    let mut on_worker = Command::new(env!("CARGO_BIN_EXE_mlmodel"));
    let data = tempfile::tempdir().unwrap();
    let output = on_worker
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("DOCKER_HOST", cluster.host_of(&worker))
        .output()
        .expect("mlmodel runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("swarm worker") && stderr.contains("run mlmodel on a manager node"),
        "{stderr}"
    );

    // Two of three managers stopped: the first has no quorum.
    let managers = cluster.managers();
    assert!(
        managers.len() >= 3,
        "the quorum test needs three managers (scripts/cluster-up.sh --managers 3): {managers:?}"
    );
    let server = cluster.serve("quorum", &["--resync", "2s"]);
    server.write_manifest("before.yml", &manifest(1, IMAGE, ""));
    let timeout = Duration::from_secs(120);
    server.wait_for("before Available", timeout, || {
        available(&server, "before", 1)
    });
    let stopped: Vec<Stopped> = managers[1..3]
        .iter()
        .map(|m| Stopped::stop(&cluster, m))
        .collect();
    server.write_manifest("during.yml", &manifest(1, IMAGE, ""));
    server.wait_for("the lost quorum reported", timeout, || {
        let (_, health) = server.get("/healthz");
        let text = health.to_string();
        text.contains("leader") || text.contains("quorum")
    });
    let (code, health) = server.get("/healthz");
    assert_eq!(code, 503, "{health}");
    eprintln!("healthz without quorum: {health}");
    let during = server.status("during").unwrap_or_default();
    assert_ne!(during["phase"], "Available", "{during}");

    drop(stopped);
    cluster.wait_ready(Duration::from_secs(90));
    server.wait_for("during converged once quorum returned", timeout, || {
        available(&server, "during", 1)
    });
    // Its replica may be between tasks while the managers settle: Available again.
    server.wait_for("before Available once quorum returned", timeout, || {
        available(&server, "before", 1)
    });
    let (code, health) = server.get("/healthz");
    assert_eq!(code, 200, "{health}");
}
