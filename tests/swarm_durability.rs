//! A 200 to any write means the record is on disk: `kill -9` right after loses nothing.

mod common;

use common::server::Server;
use common::{swarm, unique_name};

const BODY: &str = r#"{"domain": "durable.example.com", "build_id": "b1", "run_id": "r1", "image": "mlmodel-test/static-http:1", "scale": 1, "cpu_reservation": "0.01", "mem_limit": "64M", "mem_reservation": "8M"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_minus_nine() {
    if swarm().await.is_none() {
        return;
    }
    let mut server = Server::start(&unique_name("durable"));
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let body = BODY.replace("\"b1\"", &format!("\"b{i}\""));
        let (code, record) = server.request("POST", "/m", Some(&body));
        assert_eq!(code, 200, "{record}");
        acknowledged.push(record["deployment_id"].as_str().unwrap().to_string());
    }
    let (code, _) = server.request("DELETE", "/stopped_model", None);
    assert_eq!(code, 404);
    server.kill_hard();
    server.spawn();
    let (code, history) = server.get("/m?n=10");
    assert_eq!(code, 200, "{history}");
    let ids: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deployment_id"].as_str().unwrap().to_string())
        .collect();
    acknowledged.reverse();
    assert_eq!(
        ids, acknowledged,
        "every acknowledged deployment, newest first"
    );
}
