//! mlmodel deployed from `deploy/mlmodel.stack.yml` on the test cluster (three managers),
//! reconciling 10 models; the node that runs it is stopped. Swarm reschedules mlmodel on
//! another manager, which takes the lease over once it runs out and reconciles again:
//! no model task is restarted, every model keeps its whole history (kept in Swarm), and
//! the lease's history shows one holder after the other, each journal entry written by
//! the holder of the term it names.
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
/// Models deployed through the API, twice each, so that they have a history.
const API_MODELS: [&str; 2] = ["fa0", "fa1"];

fn api_body(build_id: &str) -> String {
    serde_json::json!({
        "domain": "fa.example.com",
        "image": "mlmodel-test/static-http:1",
        "build_id": build_id,
        "run_id": "r1",
        "port": 8080,
        "scale": 1,
        "cpu_reservation": "0.01",
        "mem_limit": "64M",
        "mem_reservation": "8M",
        "extra_template_attributes": {"constraints": ["node.role==worker"]}
    })
    .to_string()
}

/// `POST url body`: the status code.
fn post(url: &str, body: &str) -> u16 {
    let output = Command::new("curl")
        .args(["-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Every model's deployment ids, newest first, as `GET /{name}` answers them.
fn histories(url: &str, models: &[String]) -> BTreeMap<String, Vec<String>> {
    models
        .iter()
        .map(|m| {
            let (code, records) = get(&format!("{url}/{m}?n=100")).unwrap();
            assert_eq!(code, 200, "{m}: {records}");
            let ids = records
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["deployment_id"].as_str().unwrap().to_string())
                .collect();
            (m.clone(), ids)
        })
        .collect()
}

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
        let filter = format!("label=mlmodel.history={}", self.instance);
        let configs = self
            .cluster
            .ok(&["config", "ls", "-q", "--filter", &filter]);
        for id in configs.split_whitespace() {
            let _ = self.cluster.docker(&["config", "rm", id]);
        }
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
        available == MODELS + API_MODELS.len()
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
    wait("the API answering", timeout, || {
        get(&format!("{url}/healthz")).is_some()
    });
    for build in ["b1", "b2"] {
        for model in API_MODELS {
            let code = post(&format!("{url}/{model}"), &api_body(build));
            assert_eq!(code, 200, "POST /{model} with build {build}");
        }
    }
    wait("12 models Available", timeout, || all_available(&url));
    let mut models = models;
    models.extend(API_MODELS.iter().map(|m| m.to_string()));
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
    let before = histories(&url, &models);
    for model in API_MODELS {
        assert_eq!(before[model].len(), 2, "{model}: {:?}", before[model]);
    }
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

    // Nothing restarted; the new copy's store was empty (its volume is its node's), yet
    // every model has its whole history, the same deployments under the same ids.
    for m in &models {
        let service = format!("{instance}_{m}_mlmodel");
        assert_eq!(
            watcher.running(&service),
            tasks[m],
            "{m}'s task is unchanged"
        );
    }
    assert_eq!(histories(&url, &models), before);

    // One more lease term, taken from the first copy; and every entry of the journal
    // was written by the copy that held the lease in the term it names.
    let term = lease_term(&watcher, &instance);
    assert_eq!(term, term_before + 1);
    let turns = lease_turns(&watcher, &instance);
    let holders: BTreeMap<u64, String> = turns
        .iter()
        .map(|t| {
            (
                t["term"].as_u64().unwrap(),
                t["holder"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let terms: Vec<u64> = holders.keys().copied().collect();
    assert_eq!(
        terms,
        (1..=term).collect::<Vec<_>>(),
        "one turn per term: {turns:?}"
    );
    let last = turns.last().unwrap();
    assert_eq!(last["from"], turns[turns.len() - 2]["holder"], "{turns:?}");
    assert_ne!(last["holder"], last["from"], "{turns:?}");
    let entries = journal_entries(&watcher, &instance);
    assert_eq!(
        entries.len(),
        before.values().map(Vec::len).sum::<usize>(),
        "one journal entry per deployment"
    );
    for (name, term, writer) in &entries {
        assert_eq!(
            holders.get(term),
            Some(writer),
            "{name} was written in term {term} by {writer}, which did not hold it"
        );
    }
    drop(stopped);
}

/// The lease's history of terms (its `mlmodel.lease.history` label).
fn lease_turns(cluster: &Cluster, instance: &str) -> Vec<Value> {
    let text = cluster.ok(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"mlmodel.lease.history\"}}",
        &format!("{instance}-lease"),
    ]);
    serde_json::from_str(text.trim()).unwrap_or_default()
}

/// The journal's entries: config name, term and writer.
fn journal_entries(cluster: &Cluster, instance: &str) -> Vec<(String, u64, String)> {
    let filter = format!("label=mlmodel.history={instance}");
    let ids = cluster.ok(&["config", "ls", "-q", "--filter", &filter]);
    ids.split_whitespace()
        .filter_map(|id| {
            let text = cluster.ok(&["config", "inspect", id]);
            let config: Value = serde_json::from_str(&text).unwrap();
            let spec = &config[0]["Spec"];
            let labels = &spec["Labels"];
            labels.get("mlmodel.history.sequence")?;
            Some((
                spec["Name"].as_str().unwrap().to_string(),
                labels["mlmodel.history.term"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
                labels["mlmodel.history.writer"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ))
        })
        .collect()
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
