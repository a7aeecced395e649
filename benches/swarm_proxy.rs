//! Targets, on the real swarm and through the real Traefik mlmodel ships: a model of
//! scale 2 under the default template loses no request while its image is updated, or it
//! is scaled 2 -> 1 and 1 -> 2, behind the shipped proxy (swarm provider polling every
//! 1 s) and behind a stock one (Traefik's default, 15 s); and a new model answers through
//! the shipped proxy within 3 s of its task running, at the median.
//!
//! NEEDS A DOCKER SWARM MANAGER (scripts/swarm-up.sh) and the proxy image, which
//! scripts/proxy-up.sh builds; refuses to run without the swarm.
//!
//! Two proxies are deployed with scripts/proxy-up.sh on free ports, as the stacks
//! `mlmodelbench-proxy-<hex>-shipped` (MLMODEL_PROXY_REFRESH=1, MLMODEL_PROXY_THROTTLE=200ms,
//! as shipped) and `...-stock` (15 and 2s, Traefik's defaults), in
//! front of `mlmodel serve --templates DIR`, where DIR holds `nodrain.template.yml`: the
//! repo's default template with its stop_signal/stop_grace_period lines taken out, made
//! from templates/default.template.yml at run time (the template as it was before those
//! lines: a replica marked for shutdown stops at once on SIGTERM).
//!
//! Two models of scale 2 (qarlm/static-http-response-server:1) are deployed through the
//! API: `drain` with the default template (the value) and `nodrain` with the copy (the
//! baseline). For each model in turn, three phases run one after the other, each under
//! `BENCH_RATE` requests/s (50) through each proxy with the model's Host header: an
//! image update :1 -> :2, then scale 2 -> 1, then scale 1 -> 2. A phase runs from 2 s
//! before the change until Swarm has converged (status Available, the replica count
//! reached on the new image, no replica marked for shutdown still running) plus
//! `BENCH_SETTLE` seconds (35: the 30 s stop grace and a stock poll). A request fails
//! on anything but a 200 with its body within 5 s.
//!
//! First routing: `BENCH_SAMPLES` (3) new models of scale 1, one at a time: seconds from
//! the moment Docker says the task is running (its Status.Timestamp) to the first 200
//! through each proxy, polled every 50 ms. Shipped is the value, stock the baseline.
//!
//! `BENCH_PHASES` picks what runs: a comma-separated subset of update,down,up,first
//! (default all of them). Everything is removed at the end: the models (DELETE
//! ?clear_all_records=true, then their services), both stacks and the temp dirs.

mod common;

use bollard::Docker;
use bollard::models::{Task, TaskState};
use bollard::query_parameters::ListTasksOptions;
use common::swarm::{self, RealSwarm, ServeProcess, remove_and_wait, unique_instance};
use common::{Row, Samples, Target, print_table};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The image the models run, at tags :1 and :2 (the same server).
const IMAGE: &str = "qarlm/static-http-response-server";
/// The baseline template's model_type: the default template without the drain lines.
const NODRAIN: &str = "nodrain";
/// How long one request may take, answer and body, before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Load sent before each change, so a phase starts from a model that serves.
const LEAD: Duration = Duration::from_secs(2);
/// A stock poll (15 s) plus Traefik's 2 s throttle: both proxies know every replica.
const ROUTED_SETTLE: Duration = Duration::from_secs(17);
/// How long a rollout, a scale or a first route may take before the run gives up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(240);
const ROUTE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a new model's domain is tried through each proxy.
const ROUTE_POLL: Duration = Duration::from_millis(50);

fn main() {
    if !common::bench_mode("swarm_proxy") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let code = runtime.block_on(run());
    drop(runtime);
    std::process::exit(code);
}

/// One measured change of a model under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Update,
    Down,
    Up,
}

impl Step {
    fn key(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Down => "down",
            Self::Up => "up",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Update => "image update :1 -> :2",
            Self::Down => "scale 2 -> 1",
            Self::Up => "scale 1 -> 2",
        }
    }
}

/// What the environment asks for.
struct Config {
    rate: usize,
    settle: Duration,
    samples: usize,
    steps: Vec<Step>,
    first: bool,
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let wanted =
            std::env::var("BENCH_PHASES").unwrap_or_else(|_| "update,down,up,first".into());
        let mut steps = Vec::new();
        let mut first = false;
        for part in wanted.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "first" => first = true,
                key => match [Step::Update, Step::Down, Step::Up]
                    .into_iter()
                    .find(|s| s.key() == key)
                {
                    Some(step) if !steps.contains(&step) => steps.push(step),
                    Some(_) => {}
                    None => {
                        return Err(format!(
                            "BENCH_PHASES: {key:?} is not a phase; expected a comma-separated subset of update,down,up,first"
                        ));
                    }
                },
            }
        }
        // Always in the order update, down, up, whatever order they were listed in.
        steps.sort_by_key(|s| *s as u8);
        Ok(Self {
            rate: common::env_count("BENCH_RATE", 50),
            settle: Duration::from_secs(common::env_count("BENCH_SETTLE", 35) as u64),
            samples: common::env_count("BENCH_SAMPLES", 3),
            steps,
            first,
        })
    }
}

/// One of the two Traefik stacks.
#[derive(Debug, Clone)]
struct Proxy {
    /// "shipped" or "stock".
    label: &'static str,
    stack: String,
    port: u16,
    /// The swarm provider's poll period, seconds.
    refresh: u64,
    /// Traefik's minimum time between two configuration changes.
    throttle: &'static str,
}

/// The proxy stacks deployed so far; removed (and waited for) when dropped, even after a
/// failed step.
struct Stacks(Vec<String>);

impl Drop for Stacks {
    fn drop(&mut self) {
        remove_stacks(&self.0);
    }
}

/// A model as the benchmark declares it.
#[derive(Debug, Clone)]
struct Model {
    name: String,
    /// "drain" (the default template) or "nodrain" (the baseline).
    label: &'static str,
    model_type: &'static str,
    domain: String,
    service: String,
    tag: u32,
    scale: u64,
}

impl Model {
    fn new(instance: &str, name: &str, label: &'static str, model_type: &'static str) -> Self {
        Self {
            name: name.to_string(),
            label,
            model_type,
            domain: format!("bench_{name}.localhost"),
            service: swarm::service_name(instance, name),
            tag: 1,
            scale: 2,
        }
    }

    fn image(&self) -> String {
        format!("{IMAGE}:{}", self.tag)
    }

    fn body(&self) -> Value {
        json!({
            "domain": self.domain,
            "image": self.image(),
            "port": 80,
            "build_id": "bench",
            "run_id": "bench",
            "scale": self.scale,
            "cpu_limit": "0.5",
            "cpu_reservation": "0.01",
            "mem_limit": "64M",
            "mem_reservation": "8M",
            "model_type": self.model_type,
        })
    }
}

/// What the phases share: the swarm, the API, the proxies and the load settings.
struct Ctx {
    docker: Docker,
    /// The mlmodel instance the models belong to.
    instance: String,
    api: reqwest::Client,
    load: reqwest::Client,
    url: String,
    proxies: Vec<Proxy>,
    rate: usize,
    settle: Duration,
}

/// Requests sent and failed through one proxy during one phase.
#[derive(Debug, Clone, Default)]
struct Tally {
    sent: u64,
    failed: u64,
    /// Failures by kind ("HTTP 502", "timeout", ...).
    kinds: BTreeMap<String, u64>,
    /// Send times of the first and last failed request.
    first_failed: Option<Instant>,
    last_failed: Option<Instant>,
}

impl Tally {
    fn add(&mut self, sent_at: Instant, outcome: Result<(), String>) {
        let Err(kind) = outcome else { return };
        self.failed += 1;
        *self.kinds.entry(kind).or_default() += 1;
        self.first_failed = Some(self.first_failed.map_or(sent_at, |t| t.min(sent_at)));
        self.last_failed = Some(self.last_failed.map_or(sent_at, |t| t.max(sent_at)));
    }

    /// The failures by kind and when they were sent, in seconds after `origin`.
    fn failures_text(&self, origin: Instant) -> String {
        let (Some(first), Some(last)) = (self.first_failed, self.last_failed) else {
            return "none".to_string();
        };
        let at = |t: Instant| {
            let secs = t.saturating_duration_since(origin).as_secs_f64()
                - origin.saturating_duration_since(t).as_secs_f64();
            format!("{secs:+.1}")
        };
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        format!(
            "{} (sent {}..{} s after the change)",
            kinds.join(", "),
            at(first),
            at(last)
        )
    }
}

/// One phase of one model: a tally per proxy, in the order of `Ctx::proxies`.
#[derive(Debug, Clone)]
struct PhaseResult {
    step: Step,
    model: &'static str,
    tallies: Vec<Tally>,
    /// From the change to Swarm converged.
    converged: Duration,
    changed_at: Instant,
}

/// One new model: when it was posted, when its task ran, when each proxy first routed it.
#[derive(Debug, Clone)]
struct FirstSample {
    posted: SystemTime,
    running: SystemTime,
    routed: Vec<SystemTime>,
}

/// Everything measured so far, printed even when a later step fails.
#[derive(Default)]
struct Results {
    phases: Vec<PhaseResult>,
    first: Vec<FirstSample>,
    notes: Vec<String>,
}

async fn run() -> i32 {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(why) => {
            eprintln!("swarm_proxy: {why}");
            return 2;
        }
    };
    let real = swarm::require_swarm("swarm_proxy").await;
    for tag in [1, 2] {
        if real
            .docker
            .inspect_image(&format!("{IMAGE}:{tag}"))
            .await
            .is_err()
        {
            eprintln!("swarm_proxy: needs the image {IMAGE}:{tag}; run scripts/swarm-up.sh first");
            return 2;
        }
    }
    let started = Instant::now();
    let instance = unique_instance("proxy");
    let prefix = format!("{instance}_");
    let mut results = Results::default();

    // Dropped last: the proxies go after the models.
    let mut stacks = Stacks(Vec::new());
    let templates = tempfile::tempdir().expect("temp dir");
    let outcome = measure(
        &config,
        &real,
        &instance,
        &mut stacks,
        &templates,
        &mut results,
    )
    .await;

    eprintln!("swarm_proxy: removing the models' services and the proxy stacks...");
    remove_and_wait(&real, &prefix).await;
    drop(stacks);
    drop(templates);
    let elapsed = started.elapsed();

    print_results(&config, &results, elapsed);
    match outcome {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("swarm_proxy: the run stopped early: {why}");
            1
        }
    }
}

/// Deploys the proxies, mlmodel and the models, runs the phases and the first-routing
/// samples, and removes the models through the API. The caller removes what is left.
async fn measure(
    config: &Config,
    real: &RealSwarm,
    instance: &str,
    stacks: &mut Stacks,
    templates: &tempfile::TempDir,
    results: &mut Results,
) -> Result<(), String> {
    // 1. The proxies, on two free ports.
    let ports = free_ports(2);
    let mut proxies = Vec::new();
    // Stock: Traefik's own defaults, 15 s polls and 2 s between configuration changes.
    let kinds = [("shipped", 1, "200ms"), ("stock", 15, "2s")];
    for ((label, refresh, throttle), port) in kinds.into_iter().zip(ports) {
        let proxy = Proxy {
            label,
            stack: format!("{instance}-{label}"),
            port,
            refresh,
            throttle,
        };
        eprintln!(
            "swarm_proxy: deploying the {label} proxy {} on 127.0.0.1:{port} (polls every {refresh} s)",
            proxy.stack
        );
        stacks.0.push(proxy.stack.clone());
        proxy_up(&proxy).await?;
        proxies.push(proxy);
    }

    // 2. mlmodel serve, with the baseline template next to the built-in ones.
    let default_template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/default.template.yml"
    ))
    .map_err(|e| format!("reading templates/default.template.yml: {e}"))?;
    let nodrain = without_drain(&default_template)?;
    std::fs::write(
        templates.path().join(format!("{NODRAIN}.template.yml")),
        nodrain,
    )
    .map_err(|e| format!("writing the nodrain template: {e}"))?;
    let templates_dir = templates.path().to_string_lossy().into_owned();
    eprintln!("swarm_proxy: starting mlmodel serve as {instance}");
    let server = ServeProcess::start(instance, &["--templates", &templates_dir]).await;
    let ctx = Ctx {
        docker: real.docker.clone(),
        instance: instance.to_string(),
        api: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?,
        load: reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?,
        url: server.url.clone(),
        proxies,
        rate: config.rate,
        settle: config.settle,
    };
    let mut models = vec![
        Model::new(instance, "drain", "drain", "default"),
        Model::new(instance, "nodrain", "nodrain", NODRAIN),
    ];
    let outcome = phases_and_first(config, &ctx, &mut models, results).await;
    if let Err(why) = &outcome {
        eprintln!(
            "swarm_proxy: failed: {why}\nmlmodel serve's log:\n{}",
            tail(&server.log_text(), 40)
        );
    }
    // 7. The models, through the API, then the server (which removes what is left).
    for model in &models {
        let _ = ctx.delete(&model.name).await;
    }
    drop(server);
    outcome
}

async fn phases_and_first(
    config: &Config,
    ctx: &Ctx,
    models: &mut [Model],
    results: &mut Results,
) -> Result<(), String> {
    if !config.steps.is_empty() {
        // 3. Both models, scale 2, Available and routed through both proxies.
        for model in models.iter() {
            ctx.deploy(model).await?;
        }
        for model in models.iter() {
            let took = wait_converged(ctx, model).await?;
            eprintln!(
                "swarm_proxy: {} is Available ({:.1} s)",
                model.name,
                took.as_secs_f64()
            );
            for proxy in &ctx.proxies {
                first_ok(&ctx.load, proxy.port, &model.domain, ROUTE_TIMEOUT)
                    .await
                    .ok_or_else(|| {
                        format!(
                            "{} is not routed through the {} proxy after {ROUTE_TIMEOUT:?}",
                            model.name, proxy.label
                        )
                    })?;
            }
        }
        results.notes.push(stop_settings(ctx, models).await?);
        tokio::time::sleep(ROUTED_SETTLE).await;

        // 4. Each model's phases, one model after the other.
        for model in models.iter_mut() {
            for &step in &config.steps {
                prepare(ctx, model, step).await?;
                eprintln!(
                    "swarm_proxy: {} under {} req/s per proxy: {}...",
                    model.name,
                    ctx.rate,
                    step.title()
                );
                let result = phase(ctx, model, step).await?;
                eprintln!(
                    "swarm_proxy:   converged in {:.1} s; failed {}",
                    result.converged.as_secs_f64(),
                    ctx.proxies
                        .iter()
                        .zip(&result.tallies)
                        .map(|(p, t)| format!("{} {}/{}", p.label, t.failed, t.sent))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                results.phases.push(result);
            }
        }
    }

    // 5. First routing of new models.
    if config.first {
        for i in 0..config.samples {
            let sample = first_routing(ctx, i).await?;
            eprintln!(
                "swarm_proxy: first routing sample {}: {}",
                i + 1,
                ctx.proxies
                    .iter()
                    .zip(&sample.routed)
                    .map(|(p, at)| format!(
                        "{} {:.2} s",
                        p.label,
                        secs_between(*at, sample.running)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            results.first.push(sample);
        }
    }
    Ok(())
}

/// Brings a model to the state `step` starts from (scale 2 for update and down, 1 for
/// up), unmeasured, when an earlier phase was left out.
async fn prepare(ctx: &Ctx, model: &mut Model, step: Step) -> Result<(), String> {
    let from = if step == Step::Up { 1 } else { 2 };
    if model.scale != from {
        eprintln!(
            "swarm_proxy: {} to scale {from} first (not measured)",
            model.name
        );
        model.scale = from;
        ctx.deploy(model).await?;
        wait_converged(ctx, model).await?;
        tokio::time::sleep(ctx.settle).await;
    }
    Ok(())
}

/// One measured change under load through every proxy.
async fn phase(ctx: &Ctx, model: &mut Model, step: Step) -> Result<PhaseResult, String> {
    let loads: Vec<Load> = ctx
        .proxies
        .iter()
        .map(|p| Load::start(&ctx.load, p.port, &model.domain, ctx.rate))
        .collect();
    tokio::time::sleep(LEAD).await;
    match step {
        Step::Update => model.tag = if model.tag == 1 { 2 } else { 1 },
        Step::Down => model.scale = 1,
        Step::Up => model.scale = 2,
    }
    let changed_at = Instant::now();
    let converged = match ctx.deploy(model).await {
        Ok(()) => wait_converged(ctx, model).await,
        Err(why) => Err(why),
    };
    if converged.is_ok() {
        tokio::time::sleep(ctx.settle).await;
    }
    let tallies = join_all(loads.into_iter().map(Load::finish)).await;
    Ok(PhaseResult {
        step,
        model: model.label,
        tallies,
        converged: converged?,
        changed_at,
    })
}

/// One new model of scale 1: from its task running to the first 200 through each proxy.
async fn first_routing(ctx: &Ctx, i: usize) -> Result<FirstSample, String> {
    let mut model = Model::new(&ctx.instance, &format!("first{i}"), "first", "default");
    model.scale = 1;
    let posted = SystemTime::now();
    ctx.deploy(&model).await?;
    let routed = join_all(
        ctx.proxies
            .iter()
            .map(|p| first_ok(&ctx.load, p.port, &model.domain, ROUTE_TIMEOUT)),
    )
    .await;
    let running = running_since(&ctx.docker, &model.service).await;
    // Removed in the background: its replica keeps its 30 s stop grace, and the final
    // clean-up waits for it.
    let _ = ctx.delete(&model.name).await;
    let running = running.ok_or_else(|| format!("{} has no running task", model.name))?;
    let routed = routed
        .into_iter()
        .zip(&ctx.proxies)
        .map(|(at, p)| {
            at.ok_or_else(|| {
                format!(
                    "{} not routed through the {} proxy within {ROUTE_TIMEOUT:?}",
                    model.name, p.label
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FirstSample {
        posted,
        running,
        routed,
    })
}

impl Ctx {
    async fn deploy(&self, model: &Model) -> Result<(), String> {
        let response = self
            .api
            .post(format!("{}/{}", self.url, model.name))
            .json(&model.body())
            .send()
            .await
            .map_err(|e| format!("POST /{}: {e}", model.name))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST /{} answered {status}: {text}", model.name))
        }
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        let response = self
            .api
            .delete(format!("{}/{name}?clear_all_records=true", self.url))
            .send()
            .await
            .map_err(|e| format!("DELETE /{name}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("DELETE /{name} answered {}", response.status()))
        }
    }

    async fn status(&self, name: &str) -> Value {
        let response = self
            .api
            .get(format!("{}/{name}/status", self.url))
            .send()
            .await;
        match response {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }
}

/// Waits until the model is Available at its scale in mlmodel's status, Swarm runs
/// exactly `scale` tasks of its image, and no task marked for shutdown still runs.
async fn wait_converged(ctx: &Ctx, model: &Model) -> Result<Duration, String> {
    let started = Instant::now();
    let image = model.image();
    let scale = model.scale;
    loop {
        let status = ctx.status(&model.name).await;
        let tasks = tasks_of(&ctx.docker, &model.service).await;
        let (mut current, mut stale, mut lingering) = (0u64, 0u64, 0u64);
        for task in &tasks {
            let desired = task
                .desired_state
                .map(|s| s.to_string())
                .unwrap_or_default();
            let state = task_state(task);
            if desired == "running" {
                if task_image(task) != image {
                    stale += 1;
                } else if state == "running" {
                    current += 1;
                }
            } else if !is_terminal(&state) {
                lingering += 1;
            }
        }
        let available = status["phase"] == "Available"
            && status["replicas_running"] == json!(scale)
            && status["replicas_desired"] == json!(scale);
        if available && current == scale && stale == 0 && lingering == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > CONVERGE_TIMEOUT {
            return Err(format!(
                "{} did not converge to {scale} x {image} within {CONVERGE_TIMEOUT:?}: phase {}, {} of {} running, {current} current, {stale} stale and {lingering} lingering tasks; message {}",
                model.name,
                status["phase"],
                status["replicas_running"],
                status["replicas_desired"],
                status["message"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn tasks_of(docker: &Docker, service: &str) -> Vec<Task> {
    let options = ListTasksOptions {
        filters: Some(HashMap::from([(
            "service".to_string(),
            vec![service.to_string()],
        )])),
    };
    docker.list_tasks(Some(options)).await.unwrap_or_default()
}

fn task_state(task: &Task) -> String {
    task.status
        .as_ref()
        .and_then(|s| s.state)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The task's image without a pinned digest.
fn task_image(task: &Task) -> String {
    let image = task
        .spec
        .as_ref()
        .and_then(|s| s.container_spec.as_ref())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default();
    image.split('@').next().unwrap_or_default().to_string()
}

fn is_terminal(state: &str) -> bool {
    [
        TaskState::COMPLETE,
        TaskState::SHUTDOWN,
        TaskState::FAILED,
        TaskState::REJECTED,
        TaskState::REMOVE,
        TaskState::ORPHANED,
    ]
    .iter()
    .any(|s| s.to_string() == state)
}

/// When the service's (earliest) running task entered the running state, as Docker
/// recorded it.
async fn running_since(docker: &Docker, service: &str) -> Option<SystemTime> {
    tasks_of(docker, service)
        .await
        .iter()
        .filter(|t| task_state(t) == "running")
        .filter_map(|t| t.status.as_ref()?.timestamp.as_deref()?.parse().ok())
        .filter_map(|t: jiff::Timestamp| SystemTime::try_from(t).ok())
        .min()
}

/// GET / through the proxy on `port` with `Host: domain` every 50 ms until it answers
/// 200; the moment that answer came back, or `None` after `timeout`.
async fn first_ok(
    client: &reqwest::Client,
    port: u16,
    domain: &str,
    timeout: Duration,
) -> Option<SystemTime> {
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + timeout;
    loop {
        let answer = client
            .get(&url)
            .header(reqwest::header::HOST, domain)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            return Some(SystemTime::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(ROUTE_POLL).await;
    }
}

/// Requests at a steady rate through one proxy, each in its own task, until finished.
struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Tally>,
}

impl Load {
    fn start(client: &reqwest::Client, port: u16, domain: &str, rate: usize) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let client = client.clone();
        let url = format!("http://127.0.0.1:{port}/");
        let domain = domain.to_string();
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut inflight = JoinSet::new();
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.changed() => break,
                    _ = ticks.tick() => {}
                }
                tally.sent += 1;
                let request = client
                    .get(&url)
                    .header(reqwest::header::HOST, &domain)
                    .timeout(REQUEST_TIMEOUT);
                let sent_at = Instant::now();
                inflight.spawn(async move { (sent_at, outcome(request).await) });
                while let Some(done) = inflight.try_join_next() {
                    if let Ok((sent_at, outcome)) = done {
                        tally.add(sent_at, outcome);
                    }
                }
            }
            while let Some(done) = inflight.join_next().await {
                if let Ok((sent_at, outcome)) = done {
                    tally.add(sent_at, outcome);
                }
            }
            tally
        });
        Self { stop, task }
    }

    /// Stops sending, waits for the requests in flight and returns the tally.
    async fn finish(self) -> Tally {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// A request's outcome: a 200 with its whole body, or the kind of failure.
async fn outcome(request: reqwest::RequestBuilder) -> Result<(), String> {
    let kind = |e: &reqwest::Error| {
        if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect error"
        } else {
            "error"
        }
    };
    let response = request.send().await.map_err(|e| kind(&e).to_string())?;
    let status = response.status();
    let body = response.bytes().await;
    match (status.as_u16(), body) {
        (200, Ok(_)) => Ok(()),
        (200, Err(e)) => Err(format!("body {}", kind(&e))),
        (code, _) => Err(format!("HTTP {code}")),
    }
}

/// The drain lines' effect as Docker holds it, for each model; refuses a baseline that
/// still has them.
async fn stop_settings(ctx: &Ctx, models: &[Model]) -> Result<String, String> {
    let mut parts = Vec::new();
    for model in models {
        let service = ctx
            .docker
            .inspect_service(&model.service, None)
            .await
            .map_err(|e| format!("inspecting {}: {e}", model.service))?;
        let container = service
            .spec
            .and_then(|s| s.task_template)
            .and_then(|t| t.container_spec)
            .unwrap_or_default();
        if model.model_type == NODRAIN
            && (container.stop_signal.is_some() || container.stop_grace_period.is_some())
        {
            return Err(format!(
                "the baseline service {} still has a stop signal or grace period: {:?} {:?}",
                model.service, container.stop_signal, container.stop_grace_period
            ));
        }
        parts.push(format!(
            "{} stop signal {}, grace {}",
            model.label,
            container
                .stop_signal
                .as_deref()
                .unwrap_or("(image default)"),
            container
                .stop_grace_period
                .map_or("(Docker's 10 s)".to_string(), |ns| format!(
                    "{} s",
                    ns / 1_000_000_000
                ))
        ));
    }
    Ok(format!(
        "services as Docker holds them: {}",
        parts.join("; ")
    ))
}

/// The default template without what makes a replica drain: every `{% if %}` block that
/// mentions stop_signal or stop_grace_period, and every other line that does.
fn without_drain(template: &str) -> Result<String, String> {
    let mentions = |line: &str| line.contains("stop_signal") || line.contains("stop_grace_period");
    let tag = |line: &str| -> Option<String> {
        let rest = line.trim().strip_prefix("{%")?;
        Some(rest.trim_start_matches(['-', '+']).trim_start().to_string())
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    for line in template.lines() {
        let tag = tag(line);
        let opens = tag.as_deref().is_some_and(|t| t.starts_with("if "));
        let closes = tag.as_deref().is_some_and(|t| t.starts_with("endif"));
        if depth > 0 {
            depth = depth + usize::from(opens) - usize::from(closes);
            continue;
        }
        if opens && mentions(line) {
            depth = 1;
            continue;
        }
        if mentions(line) {
            if tag.is_some() || line.contains("{#") || line.contains("#}") {
                return Err(format!(
                    "templates/default.template.yml: cannot take this line out safely: {line:?}"
                ));
            }
            continue;
        }
        out.push(line);
    }
    let text = out.join("\n") + "\n";
    if depth != 0 || mentions(&text) || text == template {
        return Err(
            "templates/default.template.yml: its stop_signal/stop_grace_period lines could not be taken out"
                .to_string(),
        );
    }
    Ok(text)
}

/// Deploys one proxy stack with scripts/proxy-up.sh and waits for it to answer.
async fn proxy_up(proxy: &Proxy) -> Result<(), String> {
    let output = tokio::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/proxy-up.sh"))
        .env("MLMODEL_PROXY_STACK", &proxy.stack)
        .env("MLMODEL_PROXY_PORT", proxy.port.to_string())
        // The swarm-routing Traefik alone: the front (the API on the port) is not measured.
        .env("MLMODEL_PROXY_FRONT", "0")
        .env("MLMODEL_PROXY_REFRESH", proxy.refresh.to_string())
        .env("MLMODEL_PROXY_THROTTLE", proxy.throttle)
        .output()
        .await
        .map_err(|e| format!("running scripts/proxy-up.sh: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/proxy-up.sh for {} failed:\n{}",
            proxy.stack,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `docker stack rm` of each stack, then waits (up to 90 s) until their services and
/// containers are gone.
fn remove_stacks(stacks: &[String]) {
    for stack in stacks {
        let _ = Command::new("docker")
            .args(["stack", "rm", stack])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for stack in stacks {
        let filter = format!("label=com.docker.stack.namespace={stack}");
        loop {
            let listed = |args: &[&str]| {
                Command::new("docker")
                    .args(args)
                    .output()
                    .map(|o| !String::from_utf8_lossy(&o.stdout).trim().is_empty())
                    .unwrap_or(false)
            };
            let services = listed(&["service", "ls", "-q", "--filter", &filter]);
            let containers = listed(&["ps", "-aq", "--filter", &filter]);
            if !services && !containers {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("warning: the stack {stack} is still there after 90 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// `count` distinct free TCP ports on this host.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("0.0.0.0:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `later - earlier` in seconds, negative if `later` came first.
fn secs_between(later: SystemTime, earlier: SystemTime) -> f64 {
    unix_secs(later) - unix_secs(earlier)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn print_results(config: &Config, results: &Results, elapsed: Duration) {
    let proxies = [("shipped", 1), ("stock", 15)];
    for &step in &config.steps {
        let find = |model: &str| {
            results
                .phases
                .iter()
                .find(|p| p.step == step && p.model == model)
        };
        let (Some(drain), Some(nodrain)) = (find("drain"), find(NODRAIN)) else {
            continue;
        };
        let mut rows = Vec::new();
        let mut notes = vec![
            "value: the default template (stop_signal SIGWINCH, stop_grace_period 30s); baseline: the same template without those lines (nodrain)".to_string(),
            format!(
                "load: {} req/s through each proxy, GET / with the model's Host header, {} s timeout; from {} s before the change until converged + {} s",
                config.rate,
                REQUEST_TIMEOUT.as_secs(),
                LEAD.as_secs(),
                config.settle.as_secs()
            ),
        ];
        for (i, (label, refresh)) in proxies.iter().enumerate() {
            let (d, n) = (&drain.tallies[i], &nodrain.tallies[i]);
            rows.push(Row::new(
                format!("{label} proxy (polls every {refresh} s): failed requests"),
                d.failed as f64,
                Some(n.failed as f64),
                "req",
                Target::AtMost(0.0),
            ));
            rows.push(Row::new(
                format!("{label} proxy: requests sent"),
                d.sent as f64,
                Some(n.sent as f64),
                "req",
                Target::None,
            ));
            notes.push(format!(
                "{label}: failures drain {}; nodrain {}",
                d.failures_text(drain.changed_at),
                n.failures_text(nodrain.changed_at)
            ));
        }
        rows.push(Row::new(
            "change -> converged in Swarm",
            drain.converged.as_secs_f64(),
            Some(nodrain.converged.as_secs_f64()),
            "s",
            Target::None,
        ));
        notes.push(
            "Swarm signals a replica 2 s after marking it for shutdown (moby's defaultGossipConvergeDelay): a proxy that polls again within that loses nothing even without the drain lines".to_string(),
        );
        print_table(
            &format!(
                "{} of a scale-2 model through Traefik, {} req/s per proxy",
                step.title(),
                config.rate
            ),
            &rows,
            &notes,
        );
    }

    if !results.first.is_empty() {
        let to_route = |i: usize| {
            Samples::new(
                results
                    .first
                    .iter()
                    .map(|s| secs_between(s.routed[i], s.running))
                    .collect(),
            )
        };
        let (shipped, stock) = (to_route(0), to_route(1));
        let post_to_running = Samples::new(
            results
                .first
                .iter()
                .map(|s| secs_between(s.running, s.posted))
                .collect(),
        );
        let each = |samples: &[FirstSample], i: usize| {
            samples
                .iter()
                .map(|s| format!("{:.2}", secs_between(s.routed[i], s.running)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rows = [
            Row::new(
                "task running -> first 200 via shipped proxy, median",
                shipped.median(),
                Some(stock.median()),
                "s",
                Target::Below(3.0),
            ),
            Row::new(
                "task running -> first 200 via shipped proxy, max",
                shipped.max(),
                Some(stock.max()),
                "s",
                Target::None,
            ),
            Row::new(
                "POST -> task running, median",
                post_to_running.median(),
                None,
                "s",
                Target::None,
            ),
        ];
        print_table(
            &format!(
                "first routing of a new model (scale 1), median of {} samples",
                shipped.len()
            ),
            &rows,
            &[
                "value: the shipped proxy (MLMODEL_PROXY_REFRESH=1); baseline: a stock one (15 s, Traefik's default)".to_string(),
                format!(
                    "running: the task's Status.Timestamp from Docker; first 200: GET / with the model's Host through each proxy every {} ms",
                    ROUTE_POLL.as_millis()
                ),
                format!(
                    "samples in order: shipped {} s; stock {} s",
                    each(&results.first, 0),
                    each(&results.first, 1)
                ),
            ],
        );
    }
    for note in &results.notes {
        println!("  * {note}");
    }
    println!("  * whole run: {:.0} s", elapsed.as_secs_f64());
}
