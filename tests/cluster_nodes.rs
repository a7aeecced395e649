//! mlmodel on a real multi-node swarm: the test cluster of `scripts/cluster-up.sh`, one
//! real dockerd per node, each in its own network namespace.
//!
//! `MLMODEL_CLUSTER_HOST` names the first manager's DOCKER_HOST (the last line
//! `cluster-up.sh` prints); `.ci/run` brings the cluster up with three managers and two
//! workers. Without it the tests skip, or fail under `MLMODEL_REQUIRE_SWARM=1`. The tests
//! stop and start nodes, so they run one at a time (nextest's `cluster` group); every
//! node a test stops is started again when the test ends, pass or fail.

mod common;

use common::server::Server;
use common::{skip_or_fail, unique_name};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

const CLUSTER_HOST: &str = "MLMODEL_CLUSTER_HOST";

/// The test cluster, as its first manager's `DOCKER_HOST` sees it.
struct Cluster {
    host: String,
}

/// A node of the cluster as `docker node ls` shows it.
#[derive(Debug, Clone)]
struct Node {
    hostname: String,
    manager: bool,
    ready: bool,
}

impl Cluster {
    /// The cluster, with every node ready and active; `None` (skip) without one.
    fn get() -> Option<Cluster> {
        let Ok(host) = std::env::var(CLUSTER_HOST) else {
            skip_or_fail(&format!(
                "{CLUSTER_HOST} is not set (scripts/cluster-up.sh prints its value)"
            ));
            return None;
        };
        // Every docker call of the shared helpers (a server's clean-up among them) goes
        // to the cluster. SAFETY: nextest runs each test in a process of its own, and
        // this is its first step, before any other thread of the test starts.
        unsafe { std::env::set_var("DOCKER_HOST", &host) };
        let cluster = Cluster { host };
        let output = cluster.docker(&["node", "ls", "--format", "{{.Hostname}}"]);
        if !output.status.success() {
            skip_or_fail(&format!(
                "the test cluster at {} does not answer: {}",
                cluster.host,
                String::from_utf8_lossy(&output.stderr)
            ));
            return None;
        }
        // A test that failed half-way may have left a node stopped or drained.
        for node in cluster.nodes() {
            cluster.node_script("start", &node.hostname);
            cluster.ok(&["node", "update", "--availability", "active", &node.hostname]);
        }
        cluster.wait_ready(Duration::from_secs(60));
        Some(cluster)
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .output()
            .expect("the docker CLI runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.docker(args);
        assert!(
            output.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The socket of a node, by the cluster's layout (the first manager's, renamed).
    fn host_of(&self, node: &str) -> String {
        let first = self.nodes().first().map(|n| n.hostname.clone()).unwrap();
        self.host.replace(&first, node)
    }

    fn nodes(&self) -> Vec<Node> {
        let mut nodes: Vec<Node> = self
            .ok(&[
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
            ])
            .lines()
            .map(|line| {
                let mut words = line.split_whitespace();
                Node {
                    hostname: words.next().unwrap_or_default().to_string(),
                    ready: words.next() == Some("Ready"),
                    manager: words.next().is_some(),
                }
            })
            .collect();
        nodes.sort_by_key(|n| {
            n.hostname
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
        nodes
    }

    fn workers(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| !n.manager)
            .map(|n| n.hostname)
            .collect()
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let nodes = self.nodes();
            if nodes.iter().all(|n| n.ready) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cluster nodes not ready after {timeout:?}: {nodes:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `scripts/cluster-node.sh ACTION NODE`.
    fn node_script(&self, action: &str, node: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster-node.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(action)
            .arg(node)
            .status()
            .expect("bash runs");
        assert!(status.success(), "cluster-node.sh {action} {node} failed");
    }

    /// `mlmodel serve` against the cluster's first manager.
    fn serve(&self, prefix: &str, extra: &[&str]) -> Server {
        Server::start_with_env(
            &unique_name(prefix),
            extra,
            &[("DOCKER_HOST", self.host.as_str())],
        )
    }

    /// The running tasks of a service: task id to node host name.
    fn running(&self, service: &str) -> BTreeMap<String, String> {
        let output = self.docker(&[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.Node}} {{.CurrentState}}",
        ]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (id, node, state) = (words.next()?, words.next()?, words.next()?);
                (state == "Running").then(|| (id.to_string(), node.to_string()))
            })
            .collect()
    }

    /// Containers of `service` running on `node`, asked of that node's own dockerd.
    fn containers_on(&self, node: &str, service: &str) -> usize {
        let output = Command::new("docker")
            .arg("-H")
            .arg(self.host_of(node))
            .args(["ps", "-q", "--filter"])
            .arg(format!("label=com.docker.swarm.service.name={service}"))
            .output()
            .expect("docker runs");
        String::from_utf8_lossy(&output.stdout).lines().count()
    }
}

/// Starts the node again when dropped, so a failing test leaves the cluster whole.
struct Stopped<'a> {
    cluster: &'a Cluster,
    node: String,
}

impl<'a> Stopped<'a> {
    fn stop(cluster: &'a Cluster, node: &str) -> Self {
        cluster.node_script("stop", node);
        Self {
            cluster,
            node: node.to_string(),
        }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.cluster.node_script("start", &self.node);
    }
}

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
    let managers: Vec<String> = cluster
        .nodes()
        .into_iter()
        .filter(|n| n.manager)
        .map(|n| n.hostname)
        .collect();
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
    assert!(available(&server, "before", 1));
    let (code, health) = server.get("/healthz");
    assert_eq!(code, 200, "{health}");
}
