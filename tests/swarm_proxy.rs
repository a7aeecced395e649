//! The model served on its domain, through the Traefik mlmodel ships: deployed by
//! scripts/proxy-up.sh on the real swarm, in front of `mlmodel serve`, as the README's
//! run command does; and the API on the same port for `localhost`, as the original
//! answered its README's requests on port 80.

mod common;

use common::server::{Server, free_port, http_with_headers};
use common::{StackGuard, swarm, unique_name};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// The original README's request body, verbatim: a domain with `_`.
const ORIGINAL_BODY: &str = r#"{"domain": "carls_model.com", "build_id": "some_build_id", "run_id": "some_run_id", "image": "qarlm/static-http-response-server", "port": 80}"#;

/// Deploys the shipped proxy as `stack` on `port` with scripts/proxy-up.sh, its front
/// passing `localhost` to the API at `listen`.
fn proxy_up(stack: &str, port: u16, listen: &str) {
    let output = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/proxy-up.sh"))
        .env("MLMODEL_PROXY_STACK", stack)
        .env("MLMODEL_PROXY_PORT", port.to_string())
        .env("MLMODEL_PROXY_INNER_PORT", free_port().to_string())
        .env("MLMODEL_PROXY_FRONT_HEALTH_PORT", free_port().to_string())
        .env("MLMODEL_LISTEN", listen)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "scripts/proxy-up.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// GET / through the proxy with `Host: domain`, until it answers 200 or the time is up.
fn routed(port: u16, domain: &str, timeout: Duration) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + timeout;
    loop {
        let answer = http_with_headers("GET", &url, None, &[("host", domain)]);
        if answer.0 == 200 || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_example_is_served_on_its_domain_through_the_shipped_traefik() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start_with(
        &unique_name("routed"),
        &["--domain-format", "{model_name}_localhost"],
    );
    let proxy = StackGuard::new(unique_name("proxy"));
    let port = free_port();
    proxy_up(proxy.name(), port, server.url.trim_start_matches("http://"));
    let front = format!("http://127.0.0.1:{port}");
    // A domain nobody declared: Traefik itself answers 404.
    let (code, _) = http_with_headers(
        "GET",
        &format!("http://127.0.0.1:{port}/"),
        None,
        &[("host", "nobody.invalid")],
    );
    assert_eq!(code, 404, "the proxy answers for unknown domains");

    // $ http localhost/  and  $ http post localhost/carls_model <<< '{...}': the API.
    let localhost = [("host", "localhost")];
    assert_eq!(
        http_with_headers("GET", &format!("{front}/"), None, &localhost),
        (200, json!([]))
    );
    let (code, posted) = http_with_headers(
        "POST",
        &format!("{front}/carls_model"),
        Some(ORIGINAL_BODY),
        &localhost,
    );
    assert_eq!(code, 200, "{posted}");
    assert_eq!(posted["domain"], "carls_model.com");
    // A model that leaves its domain to --domain-format.
    let (code, other) = server.request(
        "POST",
        "/other_model",
        Some(r#"{"build_id": "b", "run_id": "r", "image": "qarlm/static-http-response-server:2", "scale": 1}"#),
    );
    assert_eq!(code, 200, "{other}");
    assert_eq!(other["domain"], "other_model_localhost");

    // $ curl -H 'Host: carls_model.com' localhost/
    let answer = routed(port, "carls_model.com", Duration::from_secs(90));
    assert_eq!(
        answer,
        (200, json!({"status": "ok"})),
        "carls_model.com through Traefik"
    );
    let answer = routed(port, "other_model_localhost", Duration::from_secs(90));
    assert_eq!(
        answer,
        (200, json!({"status": "ok"})),
        "other_model_localhost through Traefik"
    );
    let (code, records) =
        http_with_headers("GET", &format!("{front}/carls_model"), None, &localhost);
    assert_eq!(code, 200, "{records}");
    assert_eq!(records[0]["swarm_services"][0]["name"], "carls_model");

    // Logs written to a file carry no colour codes.
    let log = server.log_text();
    assert!(log.contains("API listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in the log file:\n{log}"
    );
}
