//! Target: `GET /` with 1000 models at 20,000 requests/s or more, p99 under 5 ms, on two
//! cores.
//!
//! Serves the real API router on 127.0.0.1 in process (controller over the fake swarm,
//! 1000 converged models) and drives it with a keep-alive HTTP/1.1 load generator in this
//! same process: a fixed number of connections, each sending its next request as soon as
//! the previous answer is read, for a fixed time. The baseline is an axum route answering
//! a constant two-byte `[]` on another port, under the same load generator in the same run.
//!
//! Server and load generator share the machine's cores, so both figures are lower than a
//! server alone would reach; the ratio is what carries over.

mod common;

use axum::Router;
use axum::routing::get;
use common::fake_rig::FakeRig;
use common::{Row, Samples, Target, print_table};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mlmodel::api::{self, ApiState, HealthProbe};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

fn main() {
    if !common::bench_mode("api_list") {
        return;
    }
    let models = common::env_count("BENCH_MODELS", 1000);
    let connections = common::env_count("BENCH_CONNECTIONS", 64);
    let seconds = common::env_count("BENCH_SECONDS", 5).min(10) as u64;
    let client_threads = common::env_count("BENCH_CLIENT_THREADS", 1);

    // The server runs as `mlmodel serve` does: its allocator setting, tokio's default
    // runtime with one worker per core.
    mlmodel::cli::serve::limit_malloc_arenas();
    let server = tokio::runtime::Runtime::new().expect("server runtime");
    let (api_addr, baseline_addr, _rig) = server.block_on(start_servers(models));
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .expect("client runtime");

    let load = Load {
        connections,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(seconds),
    };
    let body = client.block_on(fetch_once(api_addr));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("GET / is JSON");
    assert_eq!(listed.len(), models, "GET / lists every model");
    assert_eq!(client.block_on(fetch_once(baseline_addr)).as_ref(), b"[]");

    eprintln!("api_list: {connections} connections, {seconds} s each: constant route...");
    let baseline = client.block_on(load.run(baseline_addr, 2));
    eprintln!("api_list: GET / with {models} models...");
    let listing = client.block_on(load.run(api_addr, body.len()));

    let rows = [
        Row::new(
            format!("GET / ({models} models), requests/s"),
            listing.rps(),
            Some(baseline.rps()),
            "req/s",
            Target::AtLeast(20_000.0),
        ),
        Row::new(
            "GET / latency p50",
            listing.latency.median(),
            Some(baseline.latency.median()),
            "ms",
            Target::None,
        ),
        Row::new(
            "GET / latency p99",
            listing.latency.percentile(99.0),
            Some(baseline.latency.percentile(99.0)),
            "ms",
            Target::Below(5.0),
        ),
        Row::new(
            "GET / latency max",
            listing.latency.max(),
            Some(baseline.latency.max()),
            "ms",
            Target::None,
        ),
        Row::new(
            "GET / response body",
            body.len() as f64 / 1e3,
            None,
            "kB",
            Target::None,
        ),
    ];
    print_table(
        &format!("GET / with {models} models, {connections} keep-alive connections, {seconds} s"),
        &rows,
        &[
            "baseline: an axum route answering the constant 2-byte body [] (application/json), same load generator, same run".to_string(),
            format!(
                "server: tokio default runtime ({} workers); load generator: {client_threads} thread(s) in the same process, on the same cores",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
            format!(
                "requests: {} to GET / and {} to the baseline, each answered 200 with the whole body; the first {} s of each run were not counted",
                listing.requests,
                baseline.requests,
                load.warmup.as_secs()
            ),
        ],
    );
}

struct NoWatcher;

impl HealthProbe for NoWatcher {
    fn watcher(&self) -> (bool, String) {
        (true, "benchmark: no watcher".to_string())
    }
}

/// Starts the API over `models` converged models and the constant baseline route.
async fn start_servers(models: usize) -> (SocketAddr, SocketAddr, FakeRig) {
    eprintln!("api_list: building {models} models over the fake swarm...");
    let rig = FakeRig::new(models).await;
    rig.converge().await;
    let state = ApiState::new(rig.controller.readers(), None, Arc::new(NoWatcher));
    let api_addr = serve(api::router(state)).await;
    let constant = Router::new().route(
        "/",
        get(|| async { ([("content-type", "application/json")], "[]") }),
    );
    let baseline_addr = serve(constant).await;
    (api_addr, baseline_addr, rig)
}

/// Serves `router` on a free loopback port until the process ends.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// `GET /` once; the body.
async fn fetch_once(addr: SocketAddr) -> Bytes {
    let mut sender = connect(addr).await;
    get_root(&mut sender, addr).await
}

async fn get_root(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
) -> Bytes {
    let request = hyper::Request::get("/")
        .header("host", addr.to_string())
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200, "GET / answered");
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

/// A closed-loop load: `connections` clients, each sending back to back.
struct Load {
    connections: usize,
    warmup: Duration,
    duration: Duration,
}

/// What a load run measured.
struct Outcome {
    requests: usize,
    elapsed: Duration,
    latency: Samples,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

impl Load {
    /// Runs the load against `addr`; every answer must be 200 with a body of `body_len` bytes.
    async fn run(&self, addr: SocketAddr, body_len: usize) -> Outcome {
        let start = Instant::now();
        let counted_from = start + self.warmup;
        let end = counted_from + self.duration;
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..self.connections {
            clients.spawn(async move {
                let mut sender = connect(addr).await;
                let mut latencies = Vec::new();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let body = get_root(&mut sender, addr).await;
                    assert_eq!(body.len(), body_len, "a whole answer");
                    if sent >= counted_from {
                        latencies.push(sent.elapsed());
                    }
                }
                latencies
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = clients.join_next().await {
            latencies.extend(done.expect("a client task"));
        }
        Outcome {
            requests: latencies.len(),
            elapsed: self.duration,
            latency: Samples::millis(&latencies),
        }
    }
}
