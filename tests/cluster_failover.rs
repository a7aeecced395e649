//! mlmodel deployed from `deploy/mlmodel.stack.yml` on the test cluster (three managers),
//! reconciling 10 models; the node that runs it is stopped. Swarm reschedules mlmodel on
//! another manager, which takes the lease over once it runs out and reconciles again:
//! no model task is restarted, every model is recorded with the same spec, and the
//! lease's term shows one holder after the other.
//!
//! Needs `scripts/build-mlmodel-image.sh` to have built `mlmodel/mlmodel` before
//! `scripts/cluster-up.sh` (which loads it on every node), as `.ci/run` does.

mod common;

use common::cluster::{Cluster, Stopped};
use common::unique_name;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const MODELS: usize = 10;

fn manifest(name: &str) -> String {
    format!(
        "name: {name}\ndomain: {name}.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: b1\nrun_id: r1\nscale: 1\ncpu_reservation: \"0.01\"\nmem_limit: 64M\nmem_reservation: 8M\nextra_template_attributes:\n  constraints: [\"node.role==worker\"]\n"
    )
}

/// `GET url`, as JSON; `None` while nothing answers.
fn get(url: &str) -> Option<(u16, Value)> {
    let output = Command::new("curl")
        .args(["-s", "-m", "3", "-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Waits for `check`, polling every 500 ms; panics after `timeout` saying `what`.
fn wait(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Removes the stack, the models' services and the lease when the test ends.
struct Cleanup<'a> {
    cluster: &'a Cluster,
    stack: String,
    instance: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.docker(&["stack", "rm", &self.stack]);
        let filter = format!("label=mlmodel.managed-by={}", self.instance);
        let ids = self
            .cluster
            .ok(&["service", "ls", "-q", "--filter", &filter]);
        for id in ids.split_whitespace() {
            let _ = self.cluster.docker(&["service", "rm", id]);
        }
        let _ = self
            .cluster
            .docker(&["service", "rm", &format!("{}-lease", self.instance)]);
    }
}

#[test]
fn mlmodel_as_a_swarm_service_fails_over_to_another_manager_and_restarts_nothing() {
    let Some(cluster) = Cluster::get() else {
        return;
    };
    let managers = cluster.managers();
    assert!(
        managers.len() >= 3 && !cluster.workers().is_empty(),
        "the failover test needs three managers and a worker (scripts/cluster-up.sh --managers 3 --workers 2)"
    );
    let image = cluster.docker(&["image", "inspect", "mlmodel/mlmodel:latest"]);
    assert!(
        image.status.success(),
        "the first manager lacks mlmodel/mlmodel:latest: run scripts/build-mlmodel-image.sh, then scripts/cluster-up.sh"
    );

    let instance = unique_name("failover");
    let stack = format!("{instance}-manager");
    // The host's directories are the nodes' too (they share its file system).
    let manifests = tempfile::tempdir().unwrap();
    let models: Vec<String> = (0..MODELS).map(|i| format!("fo{i}")).collect();
    for model in &models {
        std::fs::write(
            manifests.path().join(format!("{model}.yml")),
            manifest(model),
        )
        .unwrap();
    }
    let port = common::server::free_port();
    let deployed = Command::new("docker")
        .arg("-H")
        .arg(&cluster.host)
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/mlmodel.stack.yml"
        ))
        .arg(&stack)
        .env("MLMODEL_MANIFESTS_DIR", manifests.path())
        .env("MLMODEL_PORT", port.to_string())
        .env("MLMODEL_INSTANCE", &instance)
        .env("MLMODEL_LEASE_DURATION", "6s")
        .env(
            "MLMODEL_DOCKER_SOCKET",
            "/var/lib/mlmodel-node-socket/docker.sock",
        )
        .output()
        .unwrap();
    assert!(
        deployed.status.success(),
        "docker stack deploy failed: {}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let service = format!("{stack}_mlmodel");
    let url_of = |node: &str| -> String {
        let index: u32 = node.rsplit('-').next().unwrap().parse().unwrap();
        format!("http://192.168.213.{}:{port}", 10 + index)
    };
    let runs_on = |via: &Cluster| -> Option<String> { via.running(&service).into_values().next() };
    let all_available = |url: &str| -> bool {
        let Some((200, Value::Array(models))) = get(&format!("{url}/?verbose=true")) else {
            return false;
        };
        let available = models.iter().filter(|m| m["phase"] == "Available").count();
        available == MODELS
    };

    let timeout = Duration::from_secs(180);
    wait("mlmodel running on a manager", timeout, || {
        runs_on(&cluster).is_some()
    });
    let first = runs_on(&cluster).unwrap();
    assert!(managers.contains(&first), "{first} is a manager");
    // From here the test asks a manager that stays up (mlmodel may run on the first
    // one, which MLMODEL_CLUSTER_HOST names).
    let watcher = Cluster {
        host: cluster.host_of(managers.iter().find(|m| **m != first).unwrap()),
    };
    let _cleanup = Cleanup {
        cluster: &watcher,
        stack: stack.clone(),
        instance: instance.clone(),
    };
    let url = url_of(&first);
    wait("10 models Available", timeout, || all_available(&url));
    let (_, health) = get(&format!("{url}/healthz")).unwrap();
    assert!(
        health["checks"]["lease"]["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("active"),
        "{health}"
    );
    let snapshot = || -> BTreeMap<String, BTreeMap<String, String>> {
        models
            .iter()
            .map(|m| {
                let service = format!("{instance}_{m}_mlmodel");
                (m.clone(), watcher.running(&service))
            })
            .collect()
    };
    // The tasks as they settle: unchanged over 3 s, one per model (a task replaced just
    // after the first rollout must not count against the failover).
    let mut tasks = snapshot();
    wait("the models' tasks settled", timeout, || {
        std::thread::sleep(Duration::from_secs(3));
        let now = snapshot();
        let settled = now == tasks && now.values().all(|t| t.len() == 1);
        tasks = now;
        settled
    });
    let deployments: BTreeMap<String, Value> = models
        .iter()
        .map(|m| {
            let (_, record) = get(&format!("{url}/{m}")).unwrap();
            (m.clone(), record[0].clone())
        })
        .collect();
    let term_before = lease_term(&watcher, &instance);

    // The node running mlmodel goes down.
    // The bound: mlmodel reconciles again within 60 s of the node stopping.
    let stopped = Stopped::stop(&cluster, &first);
    let started = Instant::now();
    let bound = Duration::from_secs(60);
    wait("mlmodel rescheduled on another manager", bound, || {
        runs_on(&watcher).is_some_and(|n| n != first)
    });
    let second = runs_on(&watcher).unwrap();
    assert!(managers.contains(&second), "{second} is a manager");
    let url = url_of(&second);
    let left = bound.saturating_sub(started.elapsed());
    wait(
        "the new copy active and every model Available",
        left,
        || {
            all_available(&url)
                && get(&format!("{url}/healthz")).is_some_and(|(_, h)| {
                    h["checks"]["lease"]["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("active")
                })
        },
    );
    eprintln!(
        "failover: reconciling again {:?} after the node stopped",
        started.elapsed()
    );

    // Nothing restarted, every model kept its deployment, one more lease term.
    for m in &models {
        let service = format!("{instance}_{m}_mlmodel");
        assert_eq!(
            watcher.running(&service),
            tasks[m],
            "{m}'s task is unchanged"
        );
        let (code, record) = get(&format!("{url}/{m}")).unwrap();
        assert_eq!(code, 200, "{m}: {record}");
        // The new copy's store is empty (its volume is its node's): it records each
        // manifest anew, with the same spec. Earlier history does not follow it yet.
        for field in ["image", "build_id", "run_id", "scale", "domain"] {
            assert_eq!(record[0][field], deployments[m][field], "{m}: {field}");
        }
    }
    assert_eq!(lease_term(&watcher, &instance), term_before + 1);
    drop(stopped);
}

fn lease_term(cluster: &Cluster, instance: &str) -> u64 {
    cluster
        .ok(&[
            "service",
            "inspect",
            "--format",
            "{{index .Spec.Labels \"mlmodel.lease.term\"}}",
            &format!("{instance}-lease"),
        ])
        .trim()
        .parse()
        .unwrap_or(0)
}
