//! Target, on the real swarm: a resync of 1000 converged models costs at most 3 Docker API
//! calls and under 20 ms of CPU, HTTP and JSON included. At any count (`BENCH_MODELS=10000`
//! for the scale target): at most 3 calls, CPU no more than bollard's typed decoding of
//! the same two lists, and resident memory under 256 MB.
//!
//! NEEDS A DOCKER SWARM MANAGER (scripts/swarm-up.sh); refuses to run without one.
//!
//! The `resync` benchmark measures the same over the fake swarm, which hands back values;
//! here the controller talks to the engine through bollard, on a single-threaded runtime,
//! so the thread's CPU clock holds the requests, the parsing of both list answers and the
//! reconcile of every model. Models are deployed with 0 replicas: no container starts,
//! and 1000 services fit on one node.
//!
//! Baseline, in the same run: the CPU of the same two list calls (services with status,
//! current tasks) through bollard's typed calls, which decode every spec: what a resync
//! would spend on listing alone without the adapter's deferred reading of specs.

mod common;

use bollard::models::{Service, Task};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};
use common::fake_rig::model_name;
use common::swarm::{manifest, remove_and_wait, require_swarm, unique_instance};
use common::{CpuClock, Row, Samples, Target, print_table, rss_mb};
use mlmodel::desired::render::{Instance, Templates};
use mlmodel::reconcile::controller::{Controller, Parts};
use mlmodel::reconcile::queue::Outcome;
use mlmodel::sources::files::{FileDeclarations, scan};
use mlmodel::sources::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[global_allocator]
static ALLOCATOR: common::heap::Counting = common::heap::Counting;

fn main() {
    if !common::bench_mode("swarm_resync") {
        return;
    }
    let models = common::env_count("BENCH_MODELS", 1000);
    let rounds = common::env_count("BENCH_ROUNDS", 10);
    // As `mlmodel serve` runs: its allocator settings.
    mlmodel::cli::serve::limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(models, rounds));
}

async fn run(models: usize, rounds: usize) {
    let real = require_swarm("swarm_resync").await;
    let rss_before = rss_mb();
    let instance = unique_instance("resync");
    let manifests = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("temp dir");
    for i in 0..models {
        let name = model_name(i, models);
        std::fs::write(manifests.path().join(format!("{name}.yml")), manifest(0))
            .expect("write a manifest");
    }
    let declarations = scan(
        manifests.path(),
        &FileDeclarations::default(),
        &Default::default(),
    );
    assert_eq!(declarations.models.len(), models, "every manifest scanned");
    let (_files_tx, files) = watch::channel(Arc::new(declarations));
    let controller = Controller::new(Parts {
        swarm: Arc::new(real.swarm.clone()),
        store: Store::open(data.path()).expect("open the store"),
        files,
        instance: Instance {
            name: instance.clone(),
            ..Instance::default()
        },
        templates: Arc::new(Templates::builtin().expect("built-in templates")),
        images: Default::default(),
        network_subnet: Default::default(),
        lease: None,
    });
    controller.ensure_network().await.expect("network");

    eprintln!("swarm_resync: creating {models} services of 0 replicas as {instance}_...");
    let started = Instant::now();
    for _ in 0..3 {
        resync(&controller).await;
    }
    let owned = controller.observed.get().models(&instance).len();
    eprintln!(
        "swarm_resync: {owned} models live after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(owned, models, "one live service per model");

    let writes_before = controller.metrics.writes.load(Ordering::Relaxed);
    let mut thread = Vec::new();
    let mut wall = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..rounds {
        let before: HashMap<&str, u64> = controller.docker_calls().into_iter().collect();
        let (cpu, clock) = (CpuClock::Thread.now(), Instant::now());
        resync(&controller).await;
        thread.push(CpuClock::Thread.now() - cpu);
        wall.push(clock.elapsed());
        let after = controller.docker_calls();
        let made: u64 = after
            .iter()
            .map(|(kind, n)| n - before.get(kind).copied().unwrap_or(0))
            .sum();
        calls.push(made as f64);
    }
    let writes = controller.metrics.writes.load(Ordering::Relaxed) - writes_before;
    // Everything a running mlmodel holds for these models is in this process now: the
    // scanned manifests, the store, the observed cache, the memo and the statuses.
    let rss_after = rss_mb();
    let heap_after = common::heap::live_mb();
    let trimmed_after = common::heap::trimmed_rss_mb();

    // The baseline: the same two lists through bollard's typed calls, which decode
    // every spec (the adapter reads only the headers and defers the specs).
    let mut raw = Vec::new();
    for _ in 0..rounds {
        let cpu = CpuClock::Thread.now();
        let (services, tasks) = typed_lists(&real.docker).await;
        raw.push(CpuClock::Thread.now() - cpu);
        assert!(services.len() >= models);
        drop(tasks);
    }

    eprintln!("swarm_resync: removing the services...");
    drop(controller);
    remove_and_wait(&real, &format!("{instance}_")).await;

    let thread = Samples::millis(&thread);
    let raw = Samples::millis(&raw);
    let calls = Samples::new(calls);
    // 20 ms is the target for 1000 models; beyond, the target is the baseline itself.
    let absolute = |ms: f64| {
        if models <= 1000 {
            Target::Below(ms)
        } else {
            Target::None
        }
    };
    print_table(
        &format!("resync of {models} converged models (real swarm, {rounds} rounds)"),
        &[
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
                Some(raw.median()),
                "ms",
                absolute(20.0),
            ),
            Row::new(
                "resync CPU, thread (max)",
                thread.max(),
                Some(raw.median()),
                "ms",
                absolute(20.0),
            ),
            Row::new(
                "resync CPU against bollard's typed lists (median)",
                thread.median(),
                Some(raw.median()),
                "ms",
                Target::RatioAtMost(1.0),
            ),
            Row::new(
                "resident memory after the resyncs",
                rss_after,
                Some(rss_before),
                "MB",
                Target::Below(256.0),
            ),
            Row::new(
                "resident memory after malloc_trim(0)",
                trimmed_after,
                Some(rss_before),
                "MB",
                Target::None,
            ),
            Row::new(
                "live heap after the resyncs",
                heap_after,
                None,
                "MB",
                Target::None,
            ),
            Row::new(
                "resync wall time (median)",
                Samples::millis(&wall).median(),
                None,
                "ms",
                Target::None,
            ),
        ],
        &[
            "baseline: CPU of the same two list calls through bollard's typed calls (HTTP and the decoding of every spec included), median".to_string(),
            "a resync = relist (list services, list tasks) + reconcile of every model, as the periodic tick does, on one thread".to_string(),
            "resident memory: this process's VmRSS, which holds what mlmodel serve holds for the models (manifests, store, caches, statuses); baseline: before any of it was built".to_string(),
            "live heap: bytes allocated and not freed (a counting allocator), including the ~28 MB the store's database allocates zeroed and never touches (not resident); after malloc_trim(0): VmRSS once glibc has given its free memory back".to_string(),
        ],
    );
    // Let the engine finish tearing down before another benchmark starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Lists services (with status) and current tasks the way bollard's typed calls do.
async fn typed_lists(docker: &bollard::Docker) -> (Vec<Service>, Vec<Task>) {
    let options = ListServicesOptions {
        filters: None,
        status: Some(true),
    };
    let services = docker
        .list_services(Some(options))
        .await
        .expect("list services");
    let states = vec!["running".to_string(), "ready".to_string()];
    let options = ListTasksOptions {
        filters: Some(HashMap::from([("desired-state".to_string(), states)])),
    };
    let tasks = docker.list_tasks(Some(options)).await.expect("list tasks");
    (services, tasks)
}

/// Relists, then reconciles every model, checking none fails.
async fn resync(controller: &Controller) {
    controller.relist().await.expect("relist");
    for name in controller.all_models() {
        let outcome = controller.reconcile(&name).await;
        assert_eq!(outcome, Outcome::Done, "reconcile of {name}");
    }
}
