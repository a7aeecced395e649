//! Runs `mlmodel serve` as a user would, for the real-swarm tests.
//!
//! Each [`Server`] has its own instance name (so it owns only its own services), its own
//! manifests and data directories and a free loopback port. Dropping it stops the
//! process with SIGTERM and removes every service its instance owns.

#![allow(dead_code)]

use super::{docker_cli, docker_lines};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mlmodel serve`.
pub struct Server {
    /// The owner label value of everything it deploys.
    pub instance: String,
    /// Its manifests directory.
    pub manifests: tempfile::TempDir,
    /// Its data directory (the store).
    pub data: tempfile::TempDir,
    /// Its API address, `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with a fresh instance name, empty manifests and store.
    pub fn start(instance: &str) -> Server {
        Self::start_with(instance, &[])
    }

    /// Starts a server with extra `mlmodel serve` arguments.
    pub fn start_with(instance: &str, extra_args: &[&str]) -> Server {
        Self::start_with_env(instance, extra_args, &[])
    }

    /// Starts a server with extra arguments and environment variables.
    pub fn start_with_env(instance: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let manifests = tempfile::tempdir().expect("temp dir");
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // Per port, not just per instance: a test may run two servers of one instance.
        let log = std::env::temp_dir().join(format!("{instance}-{port}.log"));
        let mut server = Server {
            instance: instance.to_string(),
            manifests,
            data,
            url: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
            log,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        server.spawn();
        server
    }

    /// Adds `mlmodel serve` arguments for the next [`Server::spawn`].
    pub fn add_args(&mut self, args: &[&str]) {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
    }

    /// The `mlmodel serve` command line this server runs, to start it by hand.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlmodel"));
        command
            .arg("serve")
            .arg("--manifests")
            .arg(self.manifests.path())
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--instance")
            .arg(&self.instance)
            .args(&self.extra_args)
            .env_remove("MLMODEL_TOKEN")
            .env_remove("MLMODEL_TEMPLATES")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Starts the process (again, after [`Server::stop`]), and waits for the API.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mlmodel serve starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mlmodel serve exited with {status}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mlmodel serve did not listen within 30 s:\n{}",
            self.log_text()
        );
    }

    /// Stops the process with SIGTERM and waits for it; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok().and_then(|s| s.code())
    }

    /// Kills the process with SIGKILL, as a crash or `kill -9` would, and reaps it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes a manifest file into the watched directory.
    pub fn write_manifest(&self, file: &str, text: &str) {
        let path = self.manifests.path().join(file);
        // Write then rename, as editors and git checkouts do.
        let temp = self.manifests.path().join(format!(".{file}.tmp"));
        std::fs::write(&temp, text).expect("write manifest");
        std::fs::rename(&temp, &path).expect("rename manifest");
    }

    /// Deletes a manifest file.
    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests.path().join(file)).expect("remove manifest");
    }

    /// The full Docker service name of `model`'s default-template service.
    pub fn service_name(&self, model: &str) -> String {
        format!("{}_{model}_mlmodel", self.instance)
    }

    /// An HTTP request to the API; returns the status code and the JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        http(method, &format!("{}{path}", self.url), body)
    }

    /// An HTTP request with extra headers, such as `Authorization`.
    pub fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        http_with_headers(method, &format!("{}{path}", self.url), body, headers)
    }

    /// `GET path` on the API.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None)
    }

    /// A model's status, if the server knows it.
    pub fn status(&self, model: &str) -> Option<Value> {
        let (code, body) = self.get(&format!("/{model}/status"));
        (code == 200).then_some(body)
    }

    /// Waits until `check` holds, polling every 200 ms; panics with `what` and the
    /// server's log after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n--- mlmodel serve log ---\n{}",
            self.log_text()
        );
    }

    /// A model's phase ("Available", "Failed", ...), if the server knows the model.
    pub fn phase(&self, model: &str) -> Option<String> {
        self.status(model)?["phase"].as_str().map(String::from)
    }

    /// How many deployment records `GET /{model}?n=100` returns (0 if none).
    pub fn history_len(&self, model: &str) -> usize {
        match self.get(&format!("/{model}?n=100")) {
            (200, Value::Array(records)) => records.len(),
            _ => 0,
        }
    }

    /// The directory holding the manifests.
    pub fn manifests_dir(&self) -> &Path {
        self.manifests.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        remove_instance_services(&self.instance);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Removes every service labelled as owned by `instance`.
pub fn remove_instance_services(instance: &str) {
    let filter = format!("label=mlmodel.managed-by={instance}");
    let listed = docker_cli(&["service", "ls", "-q", "--filter", &filter]);
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let mut args = vec!["service", "rm"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker_cli(&args);
    }
    // Then the secrets and configs the instance created, which the services used, and
    // the history it kept in Swarm.
    let history = format!("label=mlmodel.history={instance}");
    for (kind, filter) in [
        ("secret", &filter),
        ("config", &filter),
        ("config", &history),
    ] {
        for id in docker_lines(&[kind, "ls", "-q", "--filter", filter]) {
            let _ = docker_cli(&[kind, "rm", &id]);
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A blocking HTTP request with a JSON body; answers (status, JSON or the text as a string).
///
/// Runs on its own thread and runtime, so async tests can call it too.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    http_with_headers(method, url, body, &[])
}

/// Like [`http`], with extra request headers.
pub fn http_with_headers(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let (method, url, body) = (method.to_string(), url.to_string(), body.map(String::from));
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::thread::spawn(move || http_blocking(&method, &url, body.as_deref(), &headers))
        .join()
        .expect("the request thread")
}

fn http_blocking(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(String, String)],
) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client.request(method, url).timeout(Duration::from_secs(10));
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    })
}

/// `docker service inspect NAME` as JSON, or `None` if there is no such service.
pub fn inspect_service(name: &str) -> Option<Value> {
    let output = docker_cli(&["service", "inspect", name]);
    if !output.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&output.stdout).ok()?;
    list.get(0).cloned()
}

/// A service's id, per `docker service inspect`.
pub fn service_id(name: &str) -> Option<String> {
    inspect_service(name)?["ID"].as_str().map(String::from)
}

/// A service's `Version.Index`: Swarm raises it on every update of the service.
pub fn version_index(name: &str) -> Option<u64> {
    inspect_service(name)?["Version"]["Index"].as_u64()
}

/// Replicas a replicated service is set to, per `docker service inspect`.
pub fn replicas(name: &str) -> Option<u64> {
    inspect_service(name)?["Spec"]["Mode"]["Replicated"]["Replicas"].as_u64()
}

/// Running tasks of a service, per `docker service ps`.
pub fn running_tasks(name: &str) -> usize {
    let output = docker_cli(&[
        "service",
        "ps",
        name,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.CurrentState}}",
    ]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("Running"))
        .count()
}

/// A manifest for the local test image with small reservations.
pub fn manifest(scale: u64, tag: &str) -> String {
    format!(
        "domain: model.example.com\nimage: mlmodel-test/static-http:{tag}\nbuild_id: build-1\nrun_id: run-1\nscale: {scale}\ncpu_limit: \"0.5\"\ncpu_reservation: \"0.01\"\nmem_limit: 64M\nmem_reservation: 8M\ndeploy_delay: 1s\ndeploy_monitor_period: 1s\n"
    )
}
