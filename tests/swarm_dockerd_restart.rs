//! `mlmodel serve` while the Docker daemon restarts under it.
//!
//! This test stops the engine every other real-swarm test uses, so it has a binary of
//! its own (real-swarm binaries run one at a time) and brings the engine back with
//! `scripts/swarm-up.sh`, whether it passes or fails.

mod common;

use common::server::{Server, manifest, replicas, running_tasks, service_id};
use common::{docker_cli, swarm, unique_name};
use std::process::Command;
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(60);

/// The host Docker daemon's pid, from its pidfile (the multi-node test cluster's own
/// dockerd processes run beside it and must not be touched).
fn dockerd_pid() -> Option<u32> {
    ["/var/run/docker.pid", "/run/docker.pid"]
        .iter()
        .filter_map(|path| {
            std::fs::read_to_string(path)
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "dockerd")
        })
}

/// Stops the daemon with SIGTERM and waits until its process is gone.
fn stop_dockerd() {
    let pid = dockerd_pid().expect("dockerd runs on this machine");
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(killed.success(), "cannot signal dockerd (pid {pid})");
    let deadline = Instant::now() + CONVERGE;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "dockerd (pid {pid}) still runs 60 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the daemon again (and checks the swarm, network and image) as CI does.
fn start_dockerd() {
    let status = Command::new("bash")
        .arg("scripts/swarm-up.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("bash runs");
    assert!(status.success(), "scripts/swarm-up.sh failed: {status}");
}

/// Brings the daemon back if the test ends (passing or failing) while it is down.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if dockerd_pid().is_none() {
            let _ = std::panic::catch_unwind(start_dockerd);
        }
    }
}

/// What `/healthz` says about Docker: `Some(true)` once the event stream is followed.
fn docker_check(server: &Server) -> Option<bool> {
    server.get("/healthz").1["checks"]["docker"]["ok"].as_bool()
}

#[tokio::test(flavor = "multi_thread")]
async fn mlmodel_rides_out_a_dockerd_restart_and_converges_after_it() {
    if swarm().await.is_none() {
        return;
    }
    let mut server = Server::start(&unique_name("dockerd"));
    let service = server.service_name("m");
    server.write_manifest("m.yml", &manifest(1, "1"));
    server.wait_for("1 running task", CONVERGE, || running_tasks(&service) == 1);
    server.wait_for("m Available", CONVERGE, || {
        server.phase("m").as_deref() == Some("Available")
    });
    assert_eq!(docker_check(&server), Some(true));
    let id = service_id(&service).expect("service exists");
    let watching = "watching docker events";
    assert_eq!(server.log_text().matches(watching).count(), 1);

    let _restart = RestartGuard;
    stop_dockerd();
    server.wait_for("/healthz to report docker down", CONVERGE, || {
        docker_check(&server) == Some(false)
    });
    // An edit while Docker is away is recorded now and applied once it is back.
    server.write_manifest("m.yml", &manifest(2, "1"));
    server.wait_for("the edit recorded", CONVERGE, || {
        server.history_len("m") == 2
    });
    assert!(server.is_running(), "mlmodel survives losing Docker");

    start_dockerd();
    // Right away, while mlmodel may still be reconnecting: remove the service by hand.
    // The swarm manager can take a moment to answer after the daemon does.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let removed = docker_cli(&["service", "rm", &service]);
        if removed.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "docker service rm {service} kept failing: {}",
            String::from_utf8_lossy(&removed.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    assert!(server.is_running(), "mlmodel survives the restart");
    server.wait_for("mlmodel watching docker events again", CONVERGE, || {
        server.log_text().matches(watching).count() >= 2
    });
    server.wait_for("/healthz to report docker ok", CONVERGE, || {
        docker_check(&server) == Some(true)
    });
    server.wait_for("the service recreated", CONVERGE, || {
        service_id(&service).is_some_and(|new| new != id)
    });
    server.wait_for("the edit applied: replicas 2", CONVERGE, || {
        replicas(&service) == Some(2)
    });
    server.wait_for("2 running tasks", CONVERGE, || running_tasks(&service) == 2);
    server.wait_for("m Available", CONVERGE, || {
        server.phase("m").as_deref() == Some("Available")
    });
    assert_eq!(server.history_len("m"), 2, "repairs are not deployments");
}
