//! The multi-node test cluster of `scripts/cluster-up.sh`, as the cluster tests use it.
//!
//! `MLMODEL_CLUSTER_HOST` names the first manager's DOCKER_HOST (the last line
//! `cluster-up.sh` prints). Without it the tests skip, or fail under
//! `MLMODEL_REQUIRE_SWARM=1`.

#![allow(dead_code)]

use super::server::Server;
use super::{skip_or_fail, unique_name};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const CLUSTER_HOST: &str = "MLMODEL_CLUSTER_HOST";

/// The test cluster, as its first manager's `DOCKER_HOST` sees it.
pub struct Cluster {
    /// The first manager's DOCKER_HOST.
    pub host: String,
}

/// A node of the cluster as `docker node ls` shows it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its host name.
    pub hostname: String,
    /// A manager.
    pub manager: bool,
    /// Ready.
    pub ready: bool,
}

impl Cluster {
    /// The cluster, with every node ready and active; `None` (skip) without one.
    pub fn get() -> Option<Cluster> {
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

    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .output()
            .expect("the docker CLI runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn host_of(&self, node: &str) -> String {
        let first = self.nodes().first().map(|n| n.hostname.clone()).unwrap();
        self.host.replace(&first, node)
    }

    pub fn nodes(&self) -> Vec<Node> {
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

    /// The managers' host names, in node order.
    pub fn managers(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| n.manager)
            .map(|n| n.hostname)
            .collect()
    }

    pub fn workers(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| !n.manager)
            .map(|n| n.hostname)
            .collect()
    }

    pub fn wait_ready(&self, timeout: Duration) {
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
    pub fn node_script(&self, action: &str, node: &str) {
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
    pub fn serve(&self, prefix: &str, extra: &[&str]) -> Server {
        Server::start_with_env(
            &unique_name(prefix),
            extra,
            &[("DOCKER_HOST", self.host.as_str())],
        )
    }

    /// The running tasks of a service: task id to node host name.
    pub fn running(&self, service: &str) -> BTreeMap<String, String> {
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
    pub fn containers_on(&self, node: &str, service: &str) -> usize {
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
pub struct Stopped<'a> {
    cluster: &'a Cluster,
    node: String,
}

impl<'a> Stopped<'a> {
    pub fn stop(cluster: &'a Cluster, node: &str) -> Self {
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
