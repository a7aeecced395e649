//! Events, honest rollbacks and the watch stream on the real swarm.
//!
//! A model's second deployment cannot start (its server refuses its PORT), so Swarm's
//! `failure_action: rollback` puts the first one back. mlmodel must then say so (Failed,
//! naming the deployment that was rolled back) instead of Available on the old spec, and
//! must not send the failed deployment again; its events and `mlmodel get -w` (on the
//! watch stream) show what happened; `mlmodel rollback` goes on from there.

mod common;

use common::server::{Server, inspect_service};
use common::{running_task_ids, swarm, unique_name};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn body(env: &str) -> String {
    format!(
        r#"{{"domain": "events.example.com", "build_id": "b1", "run_id": "r1", "image": "mlmodel-test/static-http:1", "scale": 1, "cpu_reservation": "0.01", "mem_limit": "64M", "mem_reservation": "8M", "deploy_delay": "1s", "deploy_monitor_period": "5s", "extra_template_attributes": {{"env": {env}}}}}"#
    )
}

fn reasons(server: &Server, model: &str) -> Vec<String> {
    let (code, events) = server.get(&format!("/{model}/events"));
    assert_eq!(code, 200, "{events}");
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_swarm_rolls_back_is_failed_with_why_and_not_sent_again() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start_with(&unique_name("rollback"), &["--resync", "3s"]);
    let timeout = Duration::from_secs(150);
    // `mlmodel get -w -o json`, from the watch stream, for the whole test.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["get", "-w", "-o", "json", "--server", &server.url])
        .env_remove("MLMODEL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let watched = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (stdout, watched) = (watch.stdout.take().unwrap(), watched.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut text = watched.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        })
    };

    let (code, first) = server.request("POST", "/rb", Some(&body(r#"{"PORT": "80"}"#)));
    assert_eq!(code, 200, "{first}");
    let first = first["deployment_id"].as_str().unwrap().to_string();
    server.wait_for("rb Available", timeout, || {
        server.phase("rb").as_deref() == Some("Available")
    });
    let service = server.service_name("rb");
    let serving = running_task_ids(&service);

    let (code, second) = server.request("POST", "/rb", Some(&body(r#"{"PORT": "not-a-port"}"#)));
    assert_eq!(code, 200, "{second}");
    let second = second["deployment_id"].as_str().unwrap().to_string();
    let mut status = serde_json::Value::Null;
    server.wait_for("rb Failed as rolled back", timeout, || {
        status = server.status("rb").unwrap_or_default();
        status["phase"] == "Failed"
            && status["message"]
                .as_str()
                .unwrap_or_default()
                .contains("was rolled back by Swarm")
    });
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "deployment {second} was rolled back by Swarm on service {service}: its new tasks failed ("
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("it runs deployment {first} again")),
        "{message}"
    );
    assert!(message.contains("mlmodel rollback rb"), "{message}");
    assert_eq!(status["rollout"]["state"], "rollback_completed", "{status}");
    // As many replicas serve as before. Usually the very same one: the new task exits
    // at once and the old one is never stopped. But with `order: start-first`, a new
    // task Swarm sees running for an instant before it exits lets the old one stop, and
    // the rollback then starts a fresh task of the old spec (seen once in CI).
    server.wait_for("rb serving again", timeout, || {
        running_task_ids(&service).len() == serving.len()
    });

    // Not sent again: resyncs every 3 s leave the rolled-back service as it is.
    let version = |svc: &serde_json::Value| svc["Version"]["Index"].as_u64().unwrap();
    let before = inspect_service(&service).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let after = inspect_service(&service).unwrap();
    assert_eq!(version(&after), version(&before), "{after}");
    assert_eq!(after["UpdateStatus"]["State"], "rollback_completed");
    assert_eq!(server.phase("rb").as_deref(), Some("Failed"));

    let seen = reasons(&server, "rb");
    for reason in [
        "Recorded",
        "Created",
        "Available",
        "Updated",
        "RolledBack",
        "Failed",
    ] {
        assert!(seen.iter().any(|r| r == reason), "{reason} in {seen:?}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["events", "rb", "--server", &server.url])
        .env_remove("MLMODEL_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("LAST SEEN"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.contains("Warning") && l.contains("RolledBack")),
        "{printed}"
    );

    // `mlmodel rollback` to the first deployment is a new one: it converges.
    let (code, third) = server.request("POST", &format!("/rb/rollback?to={first}"), None);
    assert_eq!(code, 200, "{third}");
    server.wait_for("rb Available again", timeout, || {
        let status = server.status("rb").unwrap_or_default();
        status["phase"] == "Available" && status["deployment_id"] == third["deployment_id"]
    });
    assert!(
        reasons(&server, "rb")
            .iter()
            .any(|r| r == "RollbackRequested")
    );

    // The watch printed each phase as it came, the rollback included.
    let text = watched.lock().unwrap().clone();
    for phase in [
        "\"phase\": \"Available\"",
        "\"phase\": \"Failed\"",
        "was rolled back by Swarm",
    ] {
        assert!(text.contains(phase), "{phase} in the watch output:\n{text}");
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    reader.join().unwrap();
    let (code, deleted) = server.request("DELETE", "/rb", None);
    assert_eq!(code, 200, "{deleted}");
}

/// A webhook receiver on a free local port: answers each POST with `status` (or, with
/// `None`, never answers), keeping the bodies.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn receiver(status: Option<u16>) -> Receiver {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/hooks/secret-path",
        listener.local_addr().unwrap()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(status) = status else {
                held.push(stream);
                continue;
            };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&request).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if stream.read_exact(&mut body).is_ok()
                && let Ok(value) = serde_json::from_slice(&body)
            {
                kept.lock().unwrap().push(value);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver { url, bodies }
}

/// `mlmodel_notifications_<what>_total` of the URL at `index`, from /metrics.
fn notifications(server: &Server, what: &str, index: usize) -> u64 {
    let (_, metrics) = server.get("/metrics");
    let prefix = format!("mlmodel_notifications_{what}_total{{target=\"{index}\",");
    metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} in /metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn phase_changes_are_posted_to_every_url_and_a_bad_url_holds_up_nothing() {
    if swarm().await.is_none() {
        return;
    }
    let (good, failing, silent) = (receiver(Some(200)), receiver(Some(500)), receiver(None));
    let server = Server::start_with(
        &unique_name("notify"),
        &[
            "--notify-url",
            &failing.url,
            "--notify-url",
            &silent.url,
            "--notify-url",
            &good.url,
        ],
    );
    let timeout = Duration::from_secs(90);
    // `mlmodel events -w` prints the new model's events as they come.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["events", "-w", "--server", &server.url])
        .env_remove("MLMODEL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, reader) = {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = watch.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (rx, reader)
    };
    let (code, record) = server.request("POST", "/nm", Some(&body(r#"{"PORT": "80"}"#)));
    assert_eq!(code, 200, "{record}");
    server.wait_for("nm Available", timeout, || {
        server.phase("nm").as_deref() == Some("Available")
    });
    let mut available = serde_json::Value::Null;
    server.wait_for("the Available notification", timeout, || {
        let bodies = good.bodies.lock().unwrap();
        if let Some(found) = bodies.iter().find(|b| b["phase"] == "Available") {
            available = found.clone();
        }
        !available.is_null()
    });
    assert_eq!(available["model"], "nm");
    assert_eq!(available["deployment_id"], record["deployment_id"]);
    assert_eq!(available["image"], "mlmodel-test/static-http:1");
    assert_eq!(available["rolled_back"], false);
    assert!(
        available["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let previous = available["previous_phase"].as_str().unwrap().to_string();
    assert_ne!(previous, "Available");
    assert_eq!(
        available["text"],
        format!("mlmodel: nm is Available (was {previous})")
    );
    // The URL answering 500 is tried again and given up on; the silent one times out.
    server.wait_for("the 500 URL given up on", timeout, || {
        notifications(&server, "failed", 0) >= 1
    });
    server.wait_for("the silent URL given up on", timeout, || {
        notifications(&server, "failed", 1) >= 1
    });
    assert!(failing.bodies.lock().unwrap().len() >= 2, "retried");
    assert!(notifications(&server, "sent", 2) >= 1);
    assert_eq!(notifications(&server, "sent", 0), 0);
    assert_eq!(notifications(&server, "dropped", 2), 0);
    let (_, metrics) = server.get("/metrics");
    assert!(
        !metrics.as_str().unwrap().contains("secret-path"),
        "a webhook URL's path stays out of /metrics"
    );
    // The watch printed the model's events as rows naming it.
    let mut printed = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        let done = line.contains(" Available ");
        printed.push(line);
        if done {
            break;
        }
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    reader.join().unwrap();
    assert!(printed[0].starts_with("LAST SEEN"), "{printed:#?}");
    for reason in ["Recorded", "Created", "Available"] {
        assert!(
            printed
                .iter()
                .any(|l| l.contains(&format!(" {reason} ")) && l.contains(" nm ")),
            "{reason} in {printed:#?}"
        );
    }
    // Without a name, every model's events, with the model named.
    let output = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .args(["events", "--server", &server.url])
        .env_remove("MLMODEL_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let listed = String::from_utf8_lossy(&output.stdout);
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "LAST", "SEEN", "TYPE", "REASON", "MODEL", "COUNT", "MESSAGE"
        ],
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains(" Created ") && l.contains(" nm ")),
        "{listed}"
    );
    let (code, _) = server.request("DELETE", "/nm", None);
    assert_eq!(code, 200);
}
