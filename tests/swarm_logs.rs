//! `GET /{name}/logs` and `mlmodel logs` on the real swarm: a model's output through the
//! Docker API, each line prefixed with its task as `docker service logs` prints it; a
//! followed stream shows a new replica's first line as it comes and ends once the model
//! is removed.

mod common;

use common::server::Server;
use common::{docker_ok, running_task_ids, swarm, unique_name};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn body(scale: u32) -> String {
    format!(
        r#"{{"domain": "logs.example.com", "build_id": "b1", "run_id": "r1", "image": "mlmodel-test/static-http:1", "scale": {scale}, "cpu_reservation": "0.01", "mem_limit": "64M", "mem_reservation": "8M"}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_prefixed_by_task_and_a_followed_stream_shows_new_replicas_and_ends() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("logs"));
    let timeout = Duration::from_secs(90);
    let (code, answer) = server.request("POST", "/lm", Some(&body(1)));
    assert_eq!(code, 200, "{answer}");
    server.wait_for("lm Available", timeout, || {
        server.phase("lm").as_deref() == Some("Available")
    });
    let service = server.service_name("lm");
    let task = running_task_ids(&service).remove(0);
    let hostname = docker_ok(&["info", "--format", "{{.Name}}"])
        .trim()
        .to_string();
    let prefix = format!("{service}.1.{}@{hostname}    | ", &task[..12]);

    // The container's first line, once it is written.
    let mut text = String::new();
    server.wait_for("the first line in the logs", timeout, || {
        let (code, value) = server.get("/lm/logs?tail=5");
        text = value.as_str().unwrap_or_default().to_string();
        code == 200 && text.contains("listening on")
    });
    assert!(
        text.lines()
            .any(|l| l.starts_with(&prefix) && l.contains("static-http-server: listening on")),
        "{prefix:?} in {text}"
    );
    let (_, stamped) = server.get("/lm/logs?tail=1&timestamps=true");
    let line = stamped
        .as_str()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let time = line
        .strip_prefix(&prefix)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{line}");
    let (code, refused) = server.get("/lm/logs?since=soon");
    assert_eq!(code, 400, "{refused}");

    // The CLI prints the same lines.
    let output = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["logs", "lm", "--tail", "1", "--server", &server.url])
        .env_remove("MLMODEL_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with(&prefix), "{printed}");

    // Followed: a second replica's first line comes on the open stream; removing the
    // model ends it.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["logs", "lm", "-f", "--tail", "0", "--server", &server.url])
        .env_remove("MLMODEL_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    std::thread::sleep(Duration::from_secs(2));
    let (code, answer) = server.request("POST", "/lm", Some(&body(2)));
    assert_eq!(code, 200, "{answer}");
    server.wait_for("two replicas", timeout, || {
        server
            .status("lm")
            .is_some_and(|s| s["replicas_running"] == 2)
    });
    std::thread::sleep(Duration::from_secs(3));
    let (code, answer) = server.request("DELETE", "/lm", None);
    assert_eq!(code, 200, "{answer}");
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = follow.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let followed = reader.join().unwrap();
    assert!(
        exited.is_some_and(|s| s.success()),
        "the followed stream ends once the model is removed: {followed}"
    );
    assert!(
        followed
            .lines()
            .any(|l| l.starts_with(&format!("{service}.2.")) && l.contains("listening on")),
        "the new replica's first line: {followed}"
    );
}
