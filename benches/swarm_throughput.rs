//! Target, on the real swarm: 100 new manifests (one replica of the test image each)
//! reach "all tasks running" within 1.2 times the raw Docker API's floor; the same for 1000
//! (`BENCH_MODELS=1000`, the scale target: all on the default shared network, a /16).
//!
//! NEEDS A DOCKER SWARM MANAGER (scripts/swarm-up.sh); refuses to run without one.
//!
//! Two kinds of phase, measured the same way, with everything removed (and its containers
//! gone) between phases, run in the order raw, mlmodel, mlmodel, raw (`BENCH_ROUNDS`, 2 by
//! default) so that load that comes and goes weighs on both alike:
//! 1. raw floor: the same service specs mlmodel would send, created one after another
//!    through the API adapter as fast as Docker answers;
//! 2. mlmodel: `mlmodel serve` with its default flags, and the 100 manifests written into
//!    its directory one after another.
//!
//! Each phase's time runs from its first call (or file write) until every one of the 100
//! services has a running task, polled every 500 ms with one list call (services with
//! their task counts), so that measuring weighs little on the engine. Between phases the
//! services are removed in batches and their containers waited out, then the engine is
//! left alone for a few seconds. The mlmodel phase also prints the Docker calls mlmodel
//! made, by kind, from its `/metrics`.

mod common;

use common::swarm::{
    self, RealSwarm, ServeProcess, manifest, remove_and_wait, services_running, unique_instance,
};
use common::{Row, Target, print_table};
use mlmodel::swarm::Swarm;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
/// Quiet time after a phase's clean-up, before the next phase starts.
const SETTLE: Duration = Duration::from_secs(5);
/// How long a phase may take: 10 minutes, or 1.5 s per service beyond 400 (containers
/// start at about 3 per second on one node).
fn timeout(count: usize) -> Duration {
    Duration::from_secs(600.max(count as u64 * 3 / 2))
}

fn main() {
    if !common::bench_mode("swarm_throughput") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

/// How long a phase took to get its writes out, its services created and its tasks running.
#[derive(Debug, Clone, Copy)]
struct Phase {
    writes: Duration,
    services: Duration,
    running: Duration,
}

impl Phase {
    /// The mean of each time over several phases.
    fn mean(phases: &[Phase]) -> Phase {
        let mean = |time: fn(&Phase) -> Duration| {
            phases.iter().map(time).sum::<Duration>() / phases.len().max(1) as u32
        };
        Phase {
            writes: mean(|p| p.writes),
            services: mean(|p| p.services),
            running: mean(|p| p.running),
        }
    }
}

async fn run() {
    let real = swarm::require_swarm("swarm_throughput").await;
    let models = common::env_count("BENCH_MODELS", 100);
    let rounds = common::env_count("BENCH_ROUNDS", 2);
    let names: Vec<String> = (0..models).map(|i| format!("m{i:03}")).collect();

    // Raw, mlmodel, mlmodel, raw, ...: whatever drifts during the run (other load, the
    // engine's own clean-up) weighs on both sides alike.
    let (mut raw, mut controlled) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            raw.push(raw_phase(&real, &names).await);
            controlled.push(mlmodel_phase(&real, &names).await);
        } else {
            controlled.push(mlmodel_phase(&real, &names).await);
            raw.push(raw_phase(&real, &names).await);
        }
    }
    let each = |phases: &[Phase]| {
        phases
            .iter()
            .map(|p| format!("{:.1}", p.running.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let runs_note = format!(
        "all tasks running, each run in order: mlmodel {} s; raw {} s",
        each(&controlled),
        each(&raw)
    );
    let (raw, controlled) = (Phase::mean(&raw), Phase::mean(&controlled));

    let secs = |d: Duration| d.as_secs_f64();
    let rows = [
        Row::new(
            format!("{models} manifests -> all tasks running"),
            secs(controlled.running),
            Some(secs(raw.running)),
            "s",
            Target::RatioAtMost(1.2),
        ),
        Row::new(
            format!("{models} manifests -> all services exist"),
            secs(controlled.services),
            Some(secs(raw.services)),
            "s",
            Target::None,
        ),
        Row::new(
            "time to issue the writes",
            controlled.writes.as_secs_f64() * 1e3,
            Some(raw.writes.as_secs_f64() * 1e3),
            "ms",
            Target::None,
        ),
    ];
    print_table(
        &format!("{models} new models on the real swarm, one replica each (mean of {rounds} runs each)"),
        &rows,
        &[
            "value: mlmodel serve (default flags) picking up manifests written one after another".to_string(),
            "baseline: the same specs created one after another through the raw API, measured the same way in the same run".to_string(),
            "writes: manifest files written (mlmodel) or create calls answered (raw); times polled every 500 ms".to_string(),
            runs_note,
        ],
    );
}

async fn raw_phase(real: &RealSwarm, names: &[String]) -> Phase {
    let instance = unique_instance("rawtp");
    let prefix = format!("{instance}_");
    let specs = swarm::specs(&instance, names, 1);
    eprintln!("swarm_throughput: raw API, {} services...", specs.len());
    let started = Instant::now();
    for spec in &specs {
        real.swarm.create_service(spec).await.expect("raw create");
    }
    let writes = started.elapsed();
    let (services, running) = wait_all_running(real, &prefix, names.len(), started).await;
    eprintln!("swarm_throughput: removing the raw services...");
    remove_and_wait(real, &prefix).await;
    tokio::time::sleep(SETTLE).await;
    Phase {
        writes,
        services,
        running,
    }
}

async fn mlmodel_phase(real: &RealSwarm, names: &[String]) -> Phase {
    let instance = unique_instance("tp");
    let prefix = format!("{instance}_");
    let mut server = ServeProcess::start(&instance, &[]).await;
    eprintln!(
        "swarm_throughput: mlmodel serve as {instance}, {} manifests...",
        names.len()
    );
    let started = Instant::now();
    for name in names {
        server.write_manifest(&format!("{name}.yml"), &manifest(1));
    }
    let writes = started.elapsed();
    let (services, running) = wait_all_running(real, &prefix, names.len(), started).await;
    eprintln!(
        "swarm_throughput: mlmodel's Docker calls: {}",
        server.docker_calls().await
    );
    // Stopped first, then its services removed in batches: dropping the server removes
    // whatever is left at once, which is what leaves dockerd stuck at 1000.
    server.stop();
    eprintln!("swarm_throughput: removing mlmodel's services...");
    remove_and_wait(real, &prefix).await;
    drop(server);
    tokio::time::sleep(SETTLE).await;
    Phase {
        writes,
        services,
        running,
    }
}

/// Waits until `count` services named `prefix...` exist and each has a running task;
/// returns both times since `started`.
async fn wait_all_running(
    real: &RealSwarm,
    prefix: &str,
    count: usize,
    started: Instant,
) -> (Duration, Duration) {
    let mut services_at = None;
    loop {
        let (services, running) = services_running(&real.docker, prefix).await;
        if services_at.is_none() && services >= count {
            services_at = Some(started.elapsed());
        }
        if running >= count {
            let running_at = started.elapsed();
            return (services_at.unwrap_or(running_at), running_at);
        }
        if started.elapsed() > timeout(count) {
            remove_and_wait(real, prefix).await;
            panic!(
                "only {running} of {count} tasks running after {:?}",
                timeout(count)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
