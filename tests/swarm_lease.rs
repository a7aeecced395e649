//! Two copies of `mlmodel serve --lease` for one instance on the real swarm: one acts,
//! the other is a standby that answers reads and refuses writes naming the active one;
//! when the active one stops (SIGTERM: it releases the lease) or dies (`kill -9`: the
//! lease runs out), the standby takes over and reconciles, one term later.

mod common;

use common::server::Server;
use common::{docker_cli, docker_ok, running_task_ids, swarm, unique_name};
use std::time::Duration;

const BODY: &str = r#"{"domain": "lease.example.com", "build_id": "b1", "run_id": "r1", "image": "mlmodel-test/static-http:1", "scale": 1, "cpu_reservation": "0.01", "mem_limit": "64M", "mem_reservation": "8M"}"#;

/// The lease service's labels: holder and term.
fn lease(instance: &str) -> (String, u64) {
    let text = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"mlmodel.lease.holder\"}} {{index .Spec.Labels \"mlmodel.lease.term\"}}",
        &format!("{instance}-lease"),
    ]);
    let mut words = text.split_whitespace();
    let holder = words.next().unwrap_or_default().to_string();
    let term = words.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    (holder, term)
}

/// Removes the lease service when the test ends.
struct LeaseCleanup(String);

impl Drop for LeaseCleanup {
    fn drop(&mut self) {
        let _ = docker_cli(&["service", "rm", &format!("{}-lease", self.0)]);
    }
}

fn lease_check(server: &Server) -> String {
    server.get("/healthz").1["checks"]["lease"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_copy_acts_the_standby_refuses_writes_and_takes_over_when_the_active_one_goes() {
    if swarm().await.is_none() {
        return;
    }
    let instance = unique_name("lease");
    let _cleanup = LeaseCleanup(instance.clone());
    let args = ["--lease", "--lease-duration", "3s", "--resync", "2s"];
    let mut first = Server::start_with(&instance, &args);
    let timeout = Duration::from_secs(60);
    first.wait_for("the first copy active", timeout, || {
        lease_check(&first).starts_with("active")
    });
    let second = Server::start_with(&instance, &args);
    second.wait_for("the second copy a standby", timeout, || {
        lease_check(&second).contains("standby")
    });
    let (first_holder, term) = lease(&instance);
    assert_eq!(term, 1, "term 1 for the first holder");

    // Writes: the active one takes them, the standby refuses naming the active one.
    let (code, answer) = second.request("POST", "/m", Some(BODY));
    assert_eq!(code, 503, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.contains("standby") && detail.contains(&first_holder),
        "{detail}"
    );
    let (code, answer) = first.request("POST", "/m", Some(BODY));
    assert_eq!(code, 200, "{answer}");
    first.wait_for("m Available", timeout, || {
        first.phase("m").as_deref() == Some("Available")
    });
    // The standby reads: its status of the model comes from the swarm and the store.
    let service = first.service_name("m");
    let task_before = running_task_ids(&service);

    // The active copy stops (SIGTERM): it releases the lease, the standby takes over at
    // its next round and reconciles; nothing is restarted.
    assert_eq!(first.stop(), Some(0));
    second.wait_for("the standby active", Duration::from_secs(10), || {
        lease_check(&second).starts_with("active")
    });
    let (holder, term) = lease(&instance);
    assert_ne!(holder, first_holder);
    assert_eq!(term, 2);
    let (code, answer) = second.request("POST", "/m2", Some(BODY));
    assert_eq!(code, 200, "{answer}");
    second.wait_for("m2 Available on the new active copy", timeout, || {
        second.phase("m2").as_deref() == Some("Available")
    });
    assert_eq!(
        running_task_ids(&service),
        task_before,
        "the takeover restarted nothing"
    );

    // Now the first copy comes back as a standby, and the active one is killed: the
    // lease runs out (3 s) and the standby takes over, one term later.
    let mut second = second;
    first.spawn();
    first.wait_for("the first copy a standby again", timeout, || {
        lease_check(&first).contains("standby")
    });
    second.kill_hard();
    first.wait_for(
        "the first copy active after the lease ran out",
        Duration::from_secs(20),
        || lease_check(&first).starts_with("active"),
    );
    assert_eq!(lease(&instance).1, 3);
    let log = first.log_text();
    assert!(log.contains("acquired the lease"), "{log}");
}
