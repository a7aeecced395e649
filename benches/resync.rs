//! Target: a resync of 1000 converged models costs at most 3 Docker API calls and under
//! 20 ms of CPU.
//!
//! Runs over the fake swarm, in process, on a single-threaded runtime so that the thread's
//! CPU clock holds all of the resync's work. A resync is what the controller's periodic
//! tick does: relist services and tasks, then reconcile every model. The baseline is the
//! CPU time of parsing the JSON Docker would answer to the one list-services call for the
//! same 1000 services: the least a resync against the real engine must spend anyway.

mod common;

use bollard::models::{ObjectVersion, Service, ServiceServiceStatus};
use common::fake_rig::FakeRig;
use common::{CpuClock, Row, Samples, Target, print_table};
use mlmodel::sources::files::scan;
use mlmodel::swarm::Swarm;
use std::time::{Duration, Instant};

fn main() {
    if !common::bench_mode("resync") {
        return;
    }
    let models = common::env_count("BENCH_MODELS", 1000);
    let rounds = common::env_count("BENCH_ROUNDS", 20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(models, rounds));
}

/// CPU (this thread), CPU (whole process) and wall time of one run of `work`.
struct Cost {
    thread: Duration,
    process: Duration,
    wall: Duration,
}

async fn measure<F: Future<Output = ()>>(work: F) -> Cost {
    let (thread, process, wall) = (
        CpuClock::Thread.now(),
        CpuClock::Process.now(),
        Instant::now(),
    );
    work.await;
    Cost {
        thread: CpuClock::Thread.now() - thread,
        process: CpuClock::Process.now() - process,
        wall: wall.elapsed(),
    }
}

async fn run(models: usize, rounds: usize) {
    eprintln!("resync: building {models} models over the fake swarm...");
    let rig = FakeRig::new(models).await;
    let first = CpuClock::Thread.now();
    rig.converge().await;
    let first = CpuClock::Thread.now() - first;
    rig.resync().await;
    rig.resync().await;

    let mut costs = Vec::new();
    let mut calls = Vec::new();
    let mut writes = 0;
    for _ in 0..rounds {
        rig.fake.reset_calls();
        costs.push(measure(rig.resync()).await);
        calls.push(rig.fake.calls().values().sum::<u64>() as f64);
        writes += rig.fake.writes();
    }
    let listing = rig.controller.observed.get();

    // Baseline: parse the list-services answer Docker would send for these services.
    let answer = docker_list_answer(&rig).await;
    let mut parse = Vec::new();
    for _ in 0..rounds {
        let before = CpuClock::Thread.now();
        let parsed: Vec<Service> = serde_json::from_slice(&answer).expect("parse");
        parse.push(CpuClock::Thread.now() - before);
        assert_eq!(parsed.len(), listing.services().len());
    }

    // Context: the relist alone, and the manifests rescan the watcher also runs each period.
    let mut relist = Vec::new();
    for _ in 0..rounds {
        relist.push(
            measure(async {
                rig.controller.relist().await.expect("relist");
            })
            .await
            .thread,
        );
    }
    let mut rescan = Vec::new();
    let previous = rig.files();
    for _ in 0..5 {
        let before = CpuClock::Thread.now();
        let scanned = scan(rig.manifests.path(), &previous, &Default::default());
        rescan.push(CpuClock::Thread.now() - before);
        assert_eq!(scanned.models.len(), models);
    }

    let thread = Samples::millis(&costs.iter().map(|c| c.thread).collect::<Vec<_>>());
    let process = Samples::millis(&costs.iter().map(|c| c.process).collect::<Vec<_>>());
    let wall = Samples::millis(&costs.iter().map(|c| c.wall).collect::<Vec<_>>());
    let parse = Samples::millis(&parse);
    let calls = Samples::new(calls);
    let rows = [
        Row::new(
            "Docker API calls per resync",
            calls.max(),
            None,
            "calls",
            Target::AtMost(3.0),
        ),
        Row::new(
            "Docker writes in all resyncs",
            writes as f64,
            None,
            "calls",
            Target::AtMost(0.0),
        ),
        Row::new(
            "resync CPU, thread (median)",
            thread.median(),
            Some(parse.median()),
            "ms",
            Target::Below(20.0),
        ),
        Row::new(
            "resync CPU, thread (p90)",
            thread.percentile(90.0),
            Some(parse.median()),
            "ms",
            Target::Below(20.0),
        ),
        Row::new(
            "resync CPU, process (median)",
            process.median(),
            Some(parse.median()),
            "ms",
            Target::Below(20.0),
        ),
        Row::new(
            "resync wall time (median)",
            wall.median(),
            None,
            "ms",
            Target::None,
        ),
        Row::new(
            "relist alone, CPU (median)",
            Samples::millis(&relist).median(),
            None,
            "ms",
            Target::None,
        ),
        Row::new(
            "start-up: create all and settle, CPU",
            first.as_secs_f64() * 1e3,
            None,
            "ms",
            Target::None,
        ),
        Row::new(
            "manifests rescan, CPU (median)",
            Samples::millis(&rescan).median(),
            None,
            "ms",
            Target::None,
        ),
    ];
    print_table(
        &format!("resync of {models} converged models (fake swarm, {rounds} rounds)"),
        &rows,
        &[
            format!(
                "baseline: CPU time to parse the JSON of Docker's list-services answer for these {} services ({:.1} MB), median of {rounds}",
                listing.services().len(),
                answer.len() as f64 / 1e6
            ),
            "a resync = relist (list services, list tasks) + reconcile of every model, as the periodic tick does; the fake hands back values, so the real engine adds reading its answers (measured by swarm_resync)".to_string(),
            "start-up: two rounds of reconciling every model from nothing (creates, store appends, then a settled round), thread CPU".to_string(),
            "manifests rescan: the watcher's periodic full scan of the directory (same period as the resync); not part of the resync target".to_string(),
        ],
    );
}

/// The JSON body of `GET /services?status=true` for the fake's services, as Docker sends it.
async fn docker_list_answer(rig: &FakeRig) -> Vec<u8> {
    let listed = rig.fake.list_services().await.expect("list");
    let services: Vec<Service> = listed
        .into_iter()
        .map(|s| s.decode().expect("the fake's specs are values"))
        .map(|s| Service {
            id: Some(s.id),
            version: Some(ObjectVersion {
                index: Some(s.version),
            }),
            spec: Some(s.spec),
            service_status: Some(ServiceServiceStatus {
                running_tasks: Some(s.running_tasks),
                desired_tasks: Some(s.desired_tasks),
                completed_tasks: None,
            }),
            ..Default::default()
        })
        .collect();
    serde_json::to_vec(&services).expect("serialise")
}
