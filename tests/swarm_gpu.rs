//! GPUs the way Swarm reserves them: node generic resources. The swarm node advertises
//! one `NVIDIA-GPU` (scripts/swarm-up.sh starts dockerd with
//! `--node-generic-resource NVIDIA-GPU=GPU-mlmodel-test-0`; Swarm needs no GPU to
//! schedule by it). A model that reserves one runs; a second one finds none left, stays
//! pending, and its status says why.

mod common;

use common::server::{Server, inspect_service};
use common::{docker_ok, skip_or_fail, unique_name};
use std::time::Duration;

fn manifest(name: &str) -> String {
    let domain = name.replace('_', "-");
    format!(
        "name: {name}\ndomain: {domain}.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: b1\nrun_id: r1\nscale: 1\ncpu_reservation: \"0.01\"\nmem_reservation: 8M\nmem_limit: 64M\ngeneric_resources:\n  NVIDIA-GPU: 1\n"
    )
}

#[test]
fn a_model_reserving_the_only_gpu_runs_and_a_second_one_waits_saying_why() {
    if tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::swarm())
        .is_none()
    {
        return;
    }
    let advertised = docker_ok(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{json .Description.Resources.GenericResources}}",
    ]);
    let gpus = advertised.matches("\"NVIDIA-GPU\"").count();
    if gpus != 1 {
        skip_or_fail(&format!(
            "this node should advertise exactly one NVIDIA-GPU generic resource (scripts/swarm-up.sh starts dockerd so), found {advertised}"
        ));
        return;
    }
    let server = Server::start(&unique_name("gpu"));
    server.write_manifest("first.yml", &manifest("gpu_first"));
    server.wait_for(
        "the first GPU model to run",
        Duration::from_secs(90),
        || server.phase("gpu_first").as_deref() == Some("Available"),
    );
    let spec = inspect_service(&server.service_name("gpu_first")).expect("the service exists");
    let reserved = &spec["Spec"]["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"];
    assert_eq!(
        reserved,
        &serde_json::json!([{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]),
        "{spec}"
    );

    server.write_manifest("second.yml", &manifest("gpu_second"));
    let mut last = None;
    server.wait_for(
        "the second GPU model's status to say that no node has room",
        Duration::from_secs(60),
        || {
            last = server.status("gpu_second");
            last.as_ref()
                .and_then(|s| s["message"].as_str())
                .is_some_and(|m| m.contains("insufficient resources"))
        },
    );
    let status = last.expect("a status");
    assert_ne!(status["phase"], "Available", "{status}");
    assert_eq!(status["replicas_running"], 0, "{status}");
    assert_eq!(
        server.phase("gpu_first").as_deref(),
        Some("Available"),
        "the first keeps its GPU"
    );
}
