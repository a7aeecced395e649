//! The shared network's size on the real swarm: mlmodel creates it as a free /16, and a
//! network too small for what is declared is reported by name, at start, on `/healthz`
//! and on each model whose tasks get no address.

mod common;

use common::server::Server;
use common::{docker_cli, docker_ok, swarm, unique_name};
use mlmodel::reconcile::network::{pick_subnet, taken_subnets};
use mlmodel::swarm::Swarm;
use mlmodel::swarm::docker::DockerSwarm;
use std::time::Duration;

/// Removes the network when dropped (after the server using it is gone).
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        // Its tasks' endpoints go a moment after their services.
        for _ in 0..30 {
            if docker_cli(&["network", "rm", &self.0]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The subnets of a network, waiting up to 30 s for it: the server listens before it
/// has ensured its network.
fn subnets_of(network: &str) -> String {
    let args = [
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        network,
    ];
    for _ in 0..150 {
        if docker_cli(&args).status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    docker_ok(&args).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shared_network_is_created_as_a_free_16_or_as_asked() {
    if swarm().await.is_none() {
        return;
    }
    let network = unique_name("net16");
    let _net = NetworkGuard(network.clone());
    let server = Server::start_with(&unique_name("net16"), &["--network", &network]);
    let subnet = subnets_of(&network);
    assert!(subnet.ends_with("/16"), "created as a /16: {subnet}");
    drop(server);

    // A subnet given by hand is used as given.
    let docker = DockerSwarm::connect().await.unwrap();
    let networks = docker.list_networks().await.unwrap();
    let free = pick_subnet(
        &docker.info().await.unwrap().address_pools,
        &taken_subnets(&networks, &[]),
    )
    .unwrap();
    let asked = free.to_string().replace("/16", "/20");
    let network = unique_name("net20");
    let _net20 = NetworkGuard(network.clone());
    let server = Server::start_with(
        &unique_name("net20"),
        &["--network", &network, "--network-subnet", &asked],
    );
    assert_eq!(subnets_of(&network), asked);
    drop(server);

    // A subnet that is not one is refused before anything starts.
    let output = Server::start_with(&unique_name("netbad"), &[])
        .command()
        .args(["--network-subnet", "10.0.0.0/40"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--network-subnet") && stderr.contains("CIDR"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_too_small_for_the_models_is_named_at_start_on_healthz_and_per_model() {
    if swarm().await.is_none() {
        return;
    }
    // A /28 (13 addresses) of a free range: 8 one-replica models need 8 task addresses,
    // 8 VIPs and one for the node.
    let docker = DockerSwarm::connect().await.unwrap();
    let networks = docker.list_networks().await.unwrap();
    let pools = docker.info().await.unwrap().address_pools;
    let free = pick_subnet(&pools, &taken_subnets(&networks, &[])).unwrap();
    let small = free.to_string().replace("/16", "/28");
    let network = unique_name("net28");
    docker_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "--subnet",
        &small,
        &network,
    ]);
    let _net = NetworkGuard(network.clone());
    let server = Server::start_with(&unique_name("net28"), &["--network", &network]);
    let models: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for model in &models {
        server.write_manifest(&format!("{model}.yml"), &common::server::manifest(1, "1"));
    }
    let timeout = Duration::from_secs(120);
    let named = format!("no free IP address on network {network} ({small}, 13 addresses)");
    server.wait_for("a model stuck without an address says so", timeout, || {
        models.iter().any(|m| {
            server
                .status(m)
                .and_then(|s| s["message"].as_str().map(|m| m.contains(&named)))
                .unwrap_or(false)
        })
    });
    let stuck: Vec<&String> = models
        .iter()
        .filter(|m| server.phase(m).as_deref() != Some("Available"))
        .collect();
    assert!(!stuck.is_empty(), "some models cannot run on 13 addresses");

    let (code, health) = server.get("/healthz");
    assert_eq!(
        code, 200,
        "a small network degrades, it does not fail: {health}"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["network"]["ok"], false, "{health}");
    let detail = health["checks"]["network"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "network {network} ({small}, 13 addresses) is too small"
        )),
        "{detail}"
    );
    assert!(
        server.log_text().contains("is too small"),
        "said in the log too:\n{}",
        server.log_text()
    );
}
