//! Targets, on the real swarm: a written manifest reaches Docker (the service exists)
//! within 300 ms at the median; a service removed by hand is recreated within 1 s at the
//! median, driven by Docker's events rather than the periodic resync.
//!
//! NEEDS A DOCKER SWARM MANAGER (scripts/swarm-up.sh); refuses to run without one.
//!
//! Runs `mlmodel serve --resync 1h` as a child process, so neither the resync nor the
//! watcher's periodic rescan (same period) can explain a fast reaction. Times come from
//! Docker's own event timestamps (`timeNano`), on the same clock as this process:
//! - manifest -> create: from the moment the manifest's rename landed to the service's
//!   "create" event;
//! - removed -> recreated: from the "remove" event of a service removed through the API to
//!   the "create" event of its replacement.
//!
//! Baselines, measured in the same run through the raw API: the wall time of one service
//! create call, and a remove followed at once by a create of the same spec (event to
//! event). Models are deployed with 0 replicas: no container starts, so the samples
//! measure mlmodel and the engine's control plane, not container start-up (that is what
//! `swarm_throughput` measures).

mod common;

use common::swarm::{
    self, EventLog, RealSwarm, ServeProcess, manifest, remove_and_wait, service_name,
    unique_instance,
};
use common::{Row, Samples, Target, print_table};
use mlmodel::swarm::Swarm;
use std::time::{Duration, Instant, SystemTime};

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

fn main() {
    if !common::bench_mode("swarm_latency") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

async fn run() {
    let real = swarm::require_swarm("swarm_latency").await;
    let samples = common::env_count("BENCH_SAMPLES", 20);
    let recreates = common::env_count("BENCH_RECREATE_SAMPLES", 10).min(samples);

    let (raw_create, raw_recreate) = raw_floor(&real, 10).await;

    let instance = unique_instance("lat");
    eprintln!("swarm_latency: starting mlmodel serve --resync 1h as {instance}");
    let server = ServeProcess::start(&instance, &["--resync", "1h"]).await;
    let prefix = format!("{instance}_");
    let mut events = EventLog::start(&real.docker, &prefix);

    let mut to_create = Vec::new();
    let mut to_create_seen = Vec::new();
    for i in 0..samples {
        let model = format!("m{i:02}");
        let written = server.write_manifest(&format!("{model}.yml"), &manifest(0));
        let name = service_name(&instance, &model);
        let Some(created) = events.wait_for("create", &name, EVENT_TIMEOUT).await else {
            panic!(
                "{name} was not created within {EVENT_TIMEOUT:?}:\n{}",
                server.log_text()
            );
        };
        to_create.push(since(created.at, written));
        to_create_seen.push(since(created.received, written));
        // Let the controller finish with the model (status, relists) before the next one.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut recreate = Vec::new();
    for i in 0..recreates {
        let name = service_name(&instance, &format!("m{i:02}"));
        real.swarm.remove_service(&name).await.expect("remove");
        let removed = events
            .wait_for("remove", &name, EVENT_TIMEOUT)
            .await
            .expect("the remove event");
        let Some(created) = events.wait_for("create", &name, EVENT_TIMEOUT).await else {
            panic!(
                "{name} was not recreated within {EVENT_TIMEOUT:?}:\n{}",
                server.log_text()
            );
        };
        recreate.push(since(created.at, removed.at));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(events);
    drop(server);
    remove_and_wait(&real, &prefix).await;

    let to_create = Samples::millis(&to_create);
    let to_create_seen = Samples::millis(&to_create_seen);
    let recreate = Samples::millis(&recreate);
    let rows = [
        Row::new(
            "manifest -> service created, median",
            to_create.median(),
            Some(raw_create.median()),
            "ms",
            Target::Below(300.0),
        ),
        Row::new(
            "manifest -> service created, p90",
            to_create.percentile(90.0),
            Some(raw_create.percentile(90.0)),
            "ms",
            Target::None,
        ),
        Row::new(
            "manifest -> create event read, median",
            to_create_seen.median(),
            None,
            "ms",
            Target::None,
        ),
        Row::new(
            "removed by hand -> recreated, median",
            recreate.median(),
            Some(raw_recreate.median()),
            "ms",
            Target::Below(1000.0),
        ),
        Row::new(
            "removed by hand -> recreated, p90",
            recreate.percentile(90.0),
            Some(raw_recreate.percentile(90.0)),
            "ms",
            Target::None,
        ),
    ];
    print_table(
        "reaction latency on the real swarm (mlmodel serve --resync 1h)",
        &rows,
        &[
            format!(
                "samples: {} manifests written one at a time, {} services removed through the API; 0 replicas each",
                to_create.len(),
                recreate.len()
            ),
            format!(
                "baseline, creates: wall time of one raw create-service call of the same spec ({} calls)",
                raw_create.len()
            ),
            format!(
                "baseline, recreates: a raw remove then create of the same spec, remove event to create event ({} pairs)",
                raw_recreate.len()
            ),
            format!(
                "range: creates {:.1}..{:.1} ms, recreates {:.1}..{:.1} ms",
                to_create.min(),
                to_create.max(),
                recreate.min(),
                recreate.max()
            ),
        ],
    );
}

/// Docker's own floor: `count` raw create calls (wall time each), then a remove followed
/// at once by a create of each service (remove event to create event).
async fn raw_floor(real: &RealSwarm, count: usize) -> (Samples, Samples) {
    let instance = unique_instance("raw");
    let prefix = format!("{instance}_");
    let models: Vec<String> = (0..count).map(|i| format!("m{i:02}")).collect();
    let specs = swarm::specs(&instance, &models, 0);
    let mut events = EventLog::start(&real.docker, &prefix);
    let mut creates = Vec::new();
    for spec in &specs {
        let started = Instant::now();
        real.swarm.create_service(spec).await.expect("raw create");
        creates.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut recreates = Vec::new();
    for spec in &specs {
        let name = spec.name.clone().unwrap_or_default();
        real.swarm.remove_service(&name).await.expect("raw remove");
        real.swarm.create_service(spec).await.expect("raw create");
        let removed = events.wait_for("remove", &name, EVENT_TIMEOUT).await;
        let created = events.wait_for("create", &name, EVENT_TIMEOUT).await;
        if let (Some(removed), Some(created)) = (removed, created) {
            recreates.push(since(created.at, removed.at));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(events);
    remove_and_wait(real, &prefix).await;
    (Samples::millis(&creates), Samples::millis(&recreates))
}
