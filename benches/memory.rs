//! Target: resident memory with 1000 models under 64 MB.
//!
//! Builds, in this process, what `mlmodel serve` holds with 1000 converged models over the
//! fake swarm: scanned manifests, the store, the controller with its caches, its loops
//! running (workers, event follower, a 1 s resync) and the HTTP API serving on loopback.
//! Resident memory (VmRSS) is read after a few resyncs and listings. The baseline is the
//! same process's resident memory before any of it was built.
//!
//! The fake swarm lives in the same process and holds its own copy of every service, which
//! a real deployment keeps in Docker, not in mlmodel. Its share is measured by building a
//! second copy of it and reported, so the figure without it can be read off.

mod common;

use common::fake_rig::{FakeRig, model_name};
use common::{Row, Target, print_table, proc_status_kb, rss_mb};
use mlmodel::api::{self, ApiState, HealthProbe};
use mlmodel::reconcile::controller::RunConfig;
use mlmodel::swarm::Swarm;
use mlmodel::swarm::fake::FakeSwarm;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: common::heap::Counting = common::heap::Counting;

fn heap_mb() -> f64 {
    common::heap::live_mb()
}

fn main() {
    if !common::bench_mode("memory") {
        return;
    }
    let models = common::env_count("BENCH_MODELS", 1000);
    // As `mlmodel serve` runs: its allocator setting, tokio's default runtime.
    mlmodel::cli::serve::limit_malloc_arenas();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let baseline = Reading::now();
    let readings = runtime.block_on(run(models));
    let running = &readings.running;
    let without_fake = running.rss - readings.fake_heap;
    print_table(
        &format!("resident memory with {models} converged models (fake swarm, in process)"),
        &[
            Row::new(
                "VmRSS, controller running",
                running.rss,
                Some(baseline.rss),
                "MB",
                Target::Below(64.0),
            ),
            Row::new(
                "VmRSS minus the fake's heap",
                without_fake,
                Some(baseline.rss),
                "MB",
                Target::Below(64.0),
            ),
            Row::new(
                "VmRSS after malloc_trim(0)",
                readings.trimmed,
                Some(baseline.rss),
                "MB",
                Target::None,
            ),
            Row::new("live heap, controller running", running.heap, None, "MB", Target::None),
            Row::new(
                "live heap of the fake swarm",
                readings.fake_heap,
                None,
                "MB",
                Target::None,
            ),
            Row::new(
                "VmRSS after scan + store + controller",
                readings.built.rss,
                Some(baseline.rss),
                "MB",
                Target::None,
            ),
            Row::new("live heap after scan + store + controller", readings.built.heap, None, "MB", Target::None),
            Row::new(
                "VmRSS after converging",
                readings.converged.rss,
                Some(baseline.rss),
                "MB",
                Target::None,
            ),
            Row::new("live heap after converging", readings.converged.heap, None, "MB", Target::None),
            Row::new("VmHWM (peak)", readings.peak, None, "MB", Target::None),
        ],
        &[
            "baseline: this process with its async runtime started, before anything else was built".to_string(),
            "running: the controller's loops ran with a 1 s resync for 3 s and the API answered GET /, GET /?detail=true and a status".to_string(),
            "the fake's heap: live bytes the fake swarm holds for its copy of the services, which a real deployment keeps in Docker".to_string(),
            format!(
                "live heap: bytes allocated and not freed (a counting allocator); it counts the ~28 MB the store's database allocates zeroed when it opens and never touches (not resident); the store holds {:.1} MB on disk",
                readings.store_disk
            ),
            "MB = 10^6 bytes".to_string(),
        ],
    );
}

/// Resident memory and live heap at one moment, in MB.
struct Reading {
    rss: f64,
    heap: f64,
}

impl Reading {
    fn now() -> Self {
        Self {
            rss: rss_mb(),
            heap: heap_mb(),
        }
    }
}

struct Readings {
    built: Reading,
    converged: Reading,
    running: Reading,
    trimmed: f64,
    peak: f64,
    fake_heap: f64,
    store_disk: f64,
}

struct NoWatcher;

impl HealthProbe for NoWatcher {
    fn watcher(&self) -> (bool, String) {
        (true, "benchmark: no watcher".to_string())
    }
}

async fn run(models: usize) -> Readings {
    let rig = FakeRig::new(models).await;
    let built = Reading::now();
    rig.converge().await;
    let converged = Reading::now();

    let shutdown = CancellationToken::new();
    let (_changes_tx, changes) = tokio::sync::mpsc::unbounded_channel();
    let config = RunConfig {
        resync: Duration::from_secs(1),
        ..RunConfig::default()
    };
    let running = tokio::spawn(
        rig.controller
            .clone()
            .run(config, changes, shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let state = ApiState::new(rig.controller.readers(), None, Arc::new(NoWatcher));
    let api_shutdown = shutdown.clone();
    let api = tokio::spawn(async move {
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
            .await
    });
    let client = reqwest::Client::new();
    let one = format!("/{}/status", model_name(0, models));
    for path in ["/", "/?detail=true", one.as_str()] {
        let response = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("the API answers");
        assert!(response.status().is_success(), "GET {path}");
        response.bytes().await.expect("body");
    }
    drop(client);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running_reading = Reading::now();
    let peak = proc_status_kb("VmHWM") as f64 * 1024.0 / 1e6;
    // What of it is memory the allocator holds free: glibc keeps freed chunks in
    // per-thread arenas until asked to give them back.
    let trimmed = common::heap::trimmed_rss_mb();

    // The fake's share: the live bytes of a second fake holding the same services.
    let listed: Vec<_> = (rig.fake.list_services().await.expect("list").into_iter())
        .map(|s| s.decode().expect("the fake's specs are values"))
        .collect();
    let before = heap_mb();
    let copy = FakeSwarm::new();
    copy.add_network_by_hand(&rig.controller.instance().network);
    for service in &listed {
        copy.create_by_hand(&service.spec).expect("copy a service");
    }
    let fake_heap = heap_mb() - before;
    drop(copy);
    drop(listed);
    let store_disk = dir_size(rig.data.path()) as f64 / 1e6;

    shutdown.cancel();
    let _ = running.await;
    let _ = api.await;
    Readings {
        built,
        converged,
        running: running_reading,
        trimmed,
        peak,
        fake_heap,
        store_disk,
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
