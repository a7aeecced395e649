//! For the benchmarks that need the real Docker swarm on this machine: the connection
//! check, `mlmodel serve` as a child process, Docker's own event timestamps, the raw-API
//! floor and clean-up.
//!
//! Everything a benchmark creates belongs to an instance named `mlmodelbench-...`, and is
//! removed when the benchmark ends (a leftover from an interrupted run is removed by
//! `MLMODEL_TEST_PREFIX=mlmodelbench scripts/swarm-down.sh`).

use bollard::Docker;
use bollard::models::{LocalNodeState, ServiceSpec};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, ListServicesOptions};
use futures_util::StreamExt;
use mlmodel::desired::manifest::parse_manifest;
use mlmodel::desired::record;
use mlmodel::desired::render::{Instance, Templates};
use mlmodel::desired::{Identity, Pipeline};
use mlmodel::swarm::Swarm;
use mlmodel::swarm::docker::DockerSwarm;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// The image every benchmark model runs: a static HTTP server that stops at once on SIGTERM.
pub const TEST_IMAGE: &str = "mlmodel-test/static-http:1";

/// The Docker engine, checked to be an active swarm manager with the test image.
pub struct RealSwarm {
    /// The raw client, for events and clean-up.
    pub docker: Docker,
    /// mlmodel's adapter over it.
    pub swarm: DockerSwarm,
}

/// Connects to the swarm, or ends the process with status 2 saying what is missing:
/// these benchmarks measure the real engine and have nothing to fall back on.
pub async fn require_swarm(bench: &str) -> RealSwarm {
    match connect().await {
        Ok(real) => real,
        Err(why) => {
            eprintln!(
                "{bench}: needs a Docker swarm manager with the image {TEST_IMAGE}, but {why}; run scripts/swarm-up.sh first"
            );
            std::process::exit(2);
        }
    }
}

async fn connect() -> Result<RealSwarm, String> {
    let swarm = DockerSwarm::connect()
        .await
        .map_err(|e| format!("Docker is unreachable ({e})"))?;
    let docker = swarm.docker().clone();
    let info = docker
        .info()
        .await
        .map_err(|e| format!("docker info failed ({e})"))?;
    let state = info.swarm.unwrap_or_default();
    if state.local_node_state != Some(LocalNodeState::ACTIVE) {
        return Err("the engine is not in an active swarm".to_string());
    }
    if state.control_available != Some(true) {
        return Err("the engine is a swarm worker, not a manager".to_string());
    }
    docker
        .inspect_image(TEST_IMAGE)
        .await
        .map_err(|_| format!("the image {TEST_IMAGE} is missing"))?;
    Ok(RealSwarm { docker, swarm })
}

/// A fresh instance name for one benchmark run: `mlmodelbench-<tag>-<hex>`.
pub fn unique_instance(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "mlmodelbench-{tag}-{:x}",
        (std::process::id() << 12) ^ (nanos >> 10)
    )
}

/// A benchmark model's manifest: the test image, small reservations.
pub fn manifest(scale: u64) -> String {
    format!(
        "domain: bench.example.com\nimage: {TEST_IMAGE}\nbuild_id: build-1\nrun_id: run-1\nscale: {scale}\ncpu_limit: \"0.5\"\ncpu_reservation: \"0.001\"\nmem_limit: 64M\nmem_reservation: 8M\n"
    )
}

/// The service specs mlmodel would send for `models` under `instance`, each `scale`
/// replicas, built by the same pipeline the reconciler uses.
pub fn specs(instance: &str, models: &[String], scale: u64) -> Vec<ServiceSpec> {
    let instance = Instance {
        name: instance.to_string(),
        ..Instance::default()
    };
    let templates = Templates::builtin().expect("built-in templates");
    let pipeline = Pipeline {
        instance: &instance,
        templates: &templates,
    };
    models
        .iter()
        .flat_map(|model| {
            let text = format!("name: {model}\n{}", manifest(scale));
            let doc = parse_manifest(Path::new("bench.yml"), &text)
                .expect("parse")
                .remove(0);
            let spec = doc.spec.expect("a valid manifest");
            let identity = Identity {
                deployment_id: record::new_deployment_id(),
                deployment_time: record::now_unix_seconds(),
                image_digest: None,
            };
            let desired = pipeline
                .build(spec, identity, &mlmodel::desired::record::Source::Api)
                .expect("the pipeline builds the benchmark manifest");
            desired.stack.services
        })
        .collect()
}

/// The Docker service name of a model of `instance` under the default template.
pub fn service_name(instance: &str, model: &str) -> String {
    format!("{instance}_{model}_mlmodel")
}

/// A service event as Docker reported it.
#[derive(Debug, Clone)]
pub struct ServiceEvent {
    /// "create", "update", "remove".
    pub action: String,
    /// The service's name.
    pub name: String,
    /// When the engine says it happened.
    pub at: SystemTime,
    /// When this process read it.
    pub received: SystemTime,
}

/// Docker's service events from the moment it was started, read in the background.
pub struct EventLog {
    events: mpsc::UnboundedReceiver<ServiceEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Follows service events whose service name starts with `prefix`. Events from the
    /// moment of this call on are delivered even if the stream connects later.
    pub fn start(docker: &Docker, prefix: &str) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let options = EventsOptions {
            since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["service".to_string()],
            )])),
            ..Default::default()
        };
        let mut stream = docker.events(Some(options));
        let (tx, events) = mpsc::unbounded_channel();
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                let received = SystemTime::now();
                let Ok(message) = message else {
                    eprintln!("the Docker event stream failed: {message:?}");
                    return;
                };
                let name = message
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|mut a| a.remove("name"))
                    .unwrap_or_default();
                if !name.starts_with(&prefix) {
                    continue;
                }
                let nanos = message.time_nano.unwrap_or_default().max(0) as u64;
                let event = ServiceEvent {
                    action: message.action.unwrap_or_default(),
                    name,
                    at: UNIX_EPOCH + Duration::from_nanos(nanos),
                    received,
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Self { events, task }
    }

    /// The next `action` event about service `name`, skipping others; `None` after `timeout`.
    pub async fn wait_for(
        &mut self,
        action: &str,
        name: &str,
        timeout: Duration,
    ) -> Option<ServiceEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            if event.action == action && event.name == name {
                return Some(event);
            }
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `mlmodel serve` running as a child process, with its own manifests and data
/// directories. Dropping it stops the process and removes the instance's services.
pub struct ServeProcess {
    /// The instance it manages for.
    pub instance: String,
    /// Base URL of its HTTP API, `http://127.0.0.1:<port>`.
    pub url: String,
    manifests: tempfile::TempDir,
    _data: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl ServeProcess {
    /// Starts `mlmodel serve` with extra flags and waits until `/healthz` says Docker's
    /// events are followed and the manifests are watched.
    pub async fn start(instance: &str, extra_args: &[&str]) -> Self {
        let manifests = tempfile::tempdir().expect("temp dir");
        let data = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::env::temp_dir().join(format!("{instance}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
            .arg("serve")
            .arg("--manifests")
            .arg(manifests.path())
            .arg("--data-dir")
            .arg(data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--instance")
            .arg(instance)
            .args(extra_args)
            .env_remove("MLMODEL_TOKEN")
            .env_remove("MLMODEL_TEMPLATES")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("mlmodel serve starts");
        let mut server = Self {
            instance: instance.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            manifests,
            _data: data,
            child: Some(child),
            log,
        };
        let url = format!("http://127.0.0.1:{port}/healthz");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let healthy = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return server;
            }
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "mlmodel serve did not become healthy ({exited:?}):\n{}",
                    server.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a manifest into the watched directory as editors do (write, then rename),
    /// and returns the time the rename landed.
    pub fn write_manifest(&self, file: &str, text: &str) -> SystemTime {
        let temp = self.manifests.path().join(format!(".{file}.tmp"));
        std::fs::write(&temp, text).expect("write a manifest");
        std::fs::rename(&temp, self.manifests.path().join(file)).expect("rename a manifest");
        SystemTime::now()
    }

    /// The Docker calls the server made so far, by kind, from its `/metrics`:
    /// `create_service 1000, inspect_service 2512, ...` (kinds never called left out).
    pub async fn docker_calls(&self) -> String {
        let metrics = match reqwest::get(format!("{}/metrics", self.url)).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => return format!("(no /metrics: {e})"),
        };
        metrics
            .lines()
            .filter_map(|line| line.strip_prefix("mlmodel_docker_api_calls_total{kind=\""))
            .filter_map(|rest| rest.split_once("\"} "))
            .filter(|(_, count)| *count != "0")
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process with SIGTERM (SIGKILL after 20 s) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.stop();
        remove_services_now(&format!("{}_", self.instance));
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Removes, without waiting for their containers, every service whose name starts with
/// `prefix`; for `Drop`, where nothing can be awaited.
pub fn remove_services_now(prefix: &str) {
    let listed = Command::new("docker")
        .args(["service", "ls", "--format", "{{.Name}}"])
        .output();
    let Ok(listed) = listed else { return };
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect();
    if !names.is_empty() {
        let _ = Command::new("docker")
            .arg("service")
            .arg("rm")
            .args(&names)
            .stdout(Stdio::null())
            .status();
    }
}

/// Names of the services whose name starts with `prefix`.
pub async fn services_named(docker: &Docker, prefix: &str) -> Vec<(String, String)> {
    let options = ListServicesOptions {
        filters: Some(HashMap::from([(
            "name".to_string(),
            vec![prefix.to_string()],
        )])),
        status: None,
    };
    docker
        .list_services(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let name = s.spec?.name?;
            name.starts_with(prefix).then_some((s.id?, name))
        })
        .collect()
}

/// Services named `prefix...`, and how many of them have a running task, from one list
/// call with Swarm's task counts (`GET /services?status=true`): a cheap poll.
pub async fn services_running(docker: &Docker, prefix: &str) -> (usize, usize) {
    let options = ListServicesOptions {
        filters: Some(HashMap::from([(
            "name".to_string(),
            vec![prefix.to_string()],
        )])),
        status: Some(true),
    };
    let services: Vec<_> = docker
        .list_services(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|spec| spec.name.as_deref())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .collect();
    let running = services
        .iter()
        .filter(|s| {
            s.service_status
                .as_ref()
                .and_then(|status| status.running_tasks)
                .is_some_and(|n| n > 0)
        })
        .count();
    (services.len(), running)
}

/// Services removed at once by [`remove_and_wait`].
const REMOVE_BATCH: usize = 100;

/// Removes every service named `prefix...` and waits until they and their task
/// containers are gone (two minutes, and a second more per five containers: one node
/// stops about eight a second, so 1000 take minutes, and a phase measured meanwhile
/// would measure the removal).
pub async fn remove_and_wait(real: &RealSwarm, prefix: &str) {
    let before = task_containers(&real.docker, prefix).await;
    // In batches, each waited out: 1000 services removed at once left this machine's
    // dockerd (20.10) stuck with most of their containers for good.
    let services = services_named(&real.docker, prefix).await;
    let mut left = services.len();
    for batch in services.chunks(REMOVE_BATCH) {
        for (id, _) in batch {
            let _ = real.swarm.remove_service(id).await;
        }
        left -= batch.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while task_containers(&real.docker, prefix).await > left && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let allowed = Duration::from_secs(120 + before as u64 / 5);
    let deadline = Instant::now() + allowed;
    loop {
        let services = services_named(&real.docker, prefix).await.len();
        let containers = task_containers(&real.docker, prefix).await;
        if services == 0 && containers == 0 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "warning: {services} services and {containers} containers named {prefix}... still there after {}s",
                allowed.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Containers (running or not) of swarm tasks whose service is named `prefix...`.
async fn task_containers(docker: &Docker, prefix: &str) -> usize {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec!["com.docker.swarm.service.name".to_string()],
        )])),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("com.docker.swarm.service.name"))
                .is_some_and(|n| n.starts_with(prefix))
        })
        .count()
}
