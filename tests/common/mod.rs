//! Shared helpers for the tests that run against the real Swarm on this machine.
//!
//! Every resource a test creates has a name from [`unique_name`] (starting with
//! `mlmodeltest`), so parallel tests and repeated runs never collide, and a
//! [`StackGuard`] removes the stack when the test ends, pass or fail.
//!
//! Without a reachable swarm manager the tests skip, unless `MLMODEL_REQUIRE_SWARM=1`
//! (as in CI), where a missing swarm is a failure.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use bollard::Docker;
use bollard::models::LocalNodeState;
use std::hash::{BuildHasher, RandomState};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable that turns a missing swarm from a skip into a failure.
pub const REQUIRE_SWARM: &str = "MLMODEL_REQUIRE_SWARM";

/// Label Docker's stack commands select on.
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

/// Connects to the local Docker engine and checks it is an active swarm manager.
///
/// Honours `DOCKER_HOST`. Returns `None` (after saying so on stderr) when there is no
/// swarm to test against, or panics if `MLMODEL_REQUIRE_SWARM=1`.
pub async fn swarm() -> Option<Docker> {
    match connect().await {
        Ok(docker) => Some(docker),
        Err(why) => {
            skip_or_fail(&why);
            None
        }
    }
}

/// Reports a missing prerequisite: a panic under `MLMODEL_REQUIRE_SWARM=1`, else a skip.
pub fn skip_or_fail(why: &str) {
    if std::env::var(REQUIRE_SWARM).as_deref() == Ok("1") {
        panic!("{REQUIRE_SWARM}=1 but {why}; run scripts/swarm-up.sh to start a single-node swarm");
    }
    eprintln!("skipping: no swarm ({why}); set {REQUIRE_SWARM}=1 to make this a failure");
}

async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let info = docker
        .info()
        .await
        .map_err(|e| format!("docker info failed: {e}"))?;
    let swarm = info.swarm.ok_or("docker info reports no swarm")?;
    if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
        return Err(format!(
            "the engine is not in an active swarm (state {:?})",
            swarm.local_node_state
        ));
    }
    if swarm.control_available != Some(true) {
        return Err("the engine is a swarm worker, not a manager".to_string());
    }
    Ok(docker)
}

/// A name unique to this test and this run: `mlmodeltest-<prefix>-<pid>-<n>-<random>`.
///
/// Short enough that `<name>_<service>` stays within Docker's 63 characters for
/// service keys of up to about 25 characters.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // RandomState is seeded randomly per process; mixing in the clock varies it per call.
    let random = RandomState::new().hash_one((nanos, n)) & 0xffff;
    format!(
        "mlmodeltest-{prefix}-{:x}-{n}-{random:04x}",
        std::process::id()
    )
}

/// Runs the Docker CLI with a minimal environment and returns its output.
///
/// The environment is cleared (except what the CLI needs to find the engine) so that
/// compose interpolation in `docker stack deploy` cannot pick up the test's variables.
/// While the engine does not answer (it may be restarting under another test), the
/// command is retried for up to a minute and a half.
pub fn docker_cli(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let output = docker_cli_once(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let unreachable =
            !output.status.success() && stderr.contains("Cannot connect to the Docker daemon");
        if !unreachable || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn docker_cli_once(args: &[&str]) -> Output {
    let mut command = Command::new("docker");
    command.args(args).env_clear();
    for key in [
        "PATH",
        "HOME",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "XDG_RUNTIME_DIR",
    ] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    match command.output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run the docker CLI ({e}); is it installed and on PATH?"),
    }
}

/// Runs the Docker CLI and returns its stdout, panicking with stderr on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let output = docker_cli(args);
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Lines of `docker <args>` output, trimmed, without empty ones.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    docker_ok(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Names of the services labelled as belonging to `stack`.
pub fn stack_services(stack: &str) -> Vec<String> {
    let filter = format!("label={STACK_NAMESPACE}={stack}");
    let mut names = docker_lines(&[
        "service",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]);
    names.sort();
    names
}

/// Names of the networks labelled as belonging to `stack`.
pub fn stack_networks(stack: &str) -> Vec<String> {
    let mut names = network_names(&format!("label={STACK_NAMESPACE}={stack}"));
    names.sort();
    names
}

/// `docker network ls --filter FILTER`, names only.
fn network_names(filter: &str) -> Vec<String> {
    docker_lines(&["network", "ls", "--filter", filter, "--format", "{{.Name}}"])
}

/// Removes a stack's services and networks and waits until they are gone.
///
/// Uses `docker stack rm`, which selects by the namespace label, so it also removes
/// objects a test created through the API with that label. Panics if anything is left
/// after a minute. A network the swarm no longer knows but the node still lists (Docker
/// 20.10 can leak one, held by its load-balancer endpoint, when a stack is removed while
/// its tasks start) counts as gone: nothing can remove it, and names are never reused.
pub fn remove_stack(stack: &str) {
    let _ = docker_cli(&["stack", "rm", stack]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let services = stack_services(stack);
        let networks: Vec<String> = if services.is_empty() {
            // Networks can linger while their tasks' endpoints are torn down: retry.
            stack_network_ids(stack)
                .into_iter()
                .filter(|id| !removed_or_unknown(id))
                .collect()
        } else {
            Vec::new()
        };
        if services.is_empty() && networks.is_empty() {
            remove_stack_volumes(stack);
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "stack {stack} still has services {services:?} and networks {networks:?} after 60s"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Removes the volumes the engine created for `stack`'s mounts (labelled with its
/// namespace), waiting up to 30 s for the containers that used them to go. Best effort:
/// a volume that stays is removed by scripts/swarm-down.sh.
fn remove_stack_volumes(stack: &str) {
    let filter = format!("label={STACK_NAMESPACE}={stack}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let volumes = docker_lines(&["volume", "ls", "-q", "--filter", &filter]);
        let left: Vec<&String> = volumes
            .iter()
            .filter(|v| !docker_cli(&["volume", "rm", v.as_str()]).status.success())
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Full ids of the networks labelled as belonging to `stack`.
pub fn stack_network_ids(stack: &str) -> Vec<String> {
    let filter = format!("label={STACK_NAMESPACE}={stack}");
    docker_lines(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.ID}}",
    ])
}

/// Removes a network by id; true if it is gone or the swarm does not know it.
fn removed_or_unknown(id: &str) -> bool {
    let removal = docker_cli(&["network", "rm", id]);
    removal.status.success() || String::from_utf8_lossy(&removal.stderr).contains("not found")
}

/// Removes its stack when dropped, so a failing test still cleans up.
#[derive(Debug)]
pub struct StackGuard {
    name: String,
}

impl StackGuard {
    /// Guards a stack name (usually from [`unique_name`]).
    pub fn new(name: impl Into<String>) -> StackGuard {
        StackGuard { name: name.into() }
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Clean up, but never panic again while unwinding.
            let _ = std::panic::catch_unwind(|| remove_stack(&self.name));
        } else {
            remove_stack(&self.name);
        }
    }
}
pub mod browser;
pub mod cluster;
pub mod server;

/// The ids of a service's tasks desired running, sorted.
pub fn running_task_ids(service: &str) -> Vec<String> {
    let mut ids = docker_lines(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ]);
    ids.sort();
    ids
}
