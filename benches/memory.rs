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

use common::fake_rig::FakeRig;
use common::{Row, Target, print_table, proc_status_kb, rss_mb};
use mlmodel::api::{self, ApiState, HealthProbe};
use mlmodel::controller::RunConfig;
use mlmodel::swarm::Swarm;
use mlmodel::swarm::fake::FakeSwarm;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn main() {
    if !common::bench_mode("memory") {
        return;
    }
    let models = common::env_count("BENCH_MODELS", 1000);
    // As `mlmodel serve` runs: tokio's default multi-threaded runtime.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let baseline = rss_mb();
    let (with_rig, fake_share, peak) = runtime.block_on(run(models));
    print_table(
        &format!("resident memory with {models} converged models (fake swarm, in process)"),
        &[
            Row::new(
                "VmRSS, controller running",
                with_rig,
                Some(baseline),
                "MB",
                Target::Below(64.0),
            ),
            Row::new(
                "VmRSS, minus the fake's own copy",
                with_rig - fake_share,
                Some(baseline),
                "MB",
                Target::Below(64.0),
            ),
            Row::new(
                "the fake swarm's copy of the services",
                fake_share,
                None,
                "MB",
                Target::None,
            ),
            Row::new("VmHWM (peak)", peak, None, "MB", Target::None),
        ],
        &[
            "baseline: VmRSS of this process with its async runtime started, before anything else was built".to_string(),
            "the controller ran its loops with a 1 s resync for 3 s and the API served GET / and GET /?detail=true before the reading".to_string(),
            "the fake's share: VmRSS growth from building a second fake swarm holding the same services".to_string(),
            "MB = 10^6 bytes; the peak includes the start-up burst (1000 creates and store appends)".to_string(),
        ],
    );
}

struct NoWatcher;

impl HealthProbe for NoWatcher {
    fn watcher(&self) -> (bool, String) {
        (true, "benchmark: no watcher".to_string())
    }
}

async fn run(models: usize) -> (f64, f64, f64) {
    let rig = FakeRig::new(models).await;
    rig.converge().await;

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
    let state = ApiState::new(rig.controller.clone(), None, Arc::new(NoWatcher));
    let api_shutdown = shutdown.clone();
    let api = tokio::spawn(async move {
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
            .await
    });
    let client = reqwest::Client::new();
    for path in ["/", "/?detail=true", "/m0001/status"] {
        let response = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("the API answers");
        assert!(response.status().is_success(), "GET {path}");
        response.bytes().await.expect("body");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_rig = rss_mb();
    let peak = proc_status_kb("VmHWM") as f64 * 1024.0 / 1e6;

    // The fake's share: a second fake with the same services.
    let listed = rig.fake.list_services().await.expect("list");
    let before = rss_mb();
    let copy = FakeSwarm::new();
    copy.add_network_by_hand(&rig.controller.instance().network);
    for service in &listed {
        copy.create_by_hand(&service.spec).expect("copy a service");
    }
    let fake_share = rss_mb() - before;
    drop(copy);

    shutdown.cancel();
    let _ = running.await;
    let _ = api.await;
    (with_rig, fake_share, peak)
}
