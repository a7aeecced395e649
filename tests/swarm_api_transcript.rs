//! The original service's README transcript, replayed verbatim against `mlmodel serve` on
//! the real swarm: the same requests with the same bodies, the same answers, checked as
//! its author would have; then the behaviours its own API test suite checked.
//!
//! The image `qarlm/static-http-response-server` is the local test image under the
//! original's name (scripts/build-test-image.sh tags it), as no registry can be reached.

mod common;

use common::server::{Server, inspect_service};
use common::{swarm, unique_name};
use serde_json::{Value, json};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(90);

/// The transcript's request body, verbatim.
const BODY: &str = r#"{"domain": "carls_model.com", "build_id": "some_build_id", "run_id": "some_run_id", "image": "qarlm/static-http-response-server", "port": 80}"#;

/// The image as the transcript's answers showed it on containers and services.
const SHOWN_IMAGE: &str = "qarlm/static-http-response-server:latest";

/// Every field the transcript's POST answered with that the request does not set, at
/// the value it had there.
fn transcript_defaults() -> Value {
    json!({
        "name": "carls_model",
        "domain": "carls_model.com",
        "build_id": "some_build_id",
        "run_id": "some_run_id",
        "image": "qarlm/static-http-response-server",
        "port": 80,
        "scale": 2,
        "cpu_limit": "1",
        "cpu_reservation": "0.1",
        "mem_limit": "2G",
        "mem_reservation": "1G",
        "deploy_delay": "5s",
        "deploy_monitor_period": "30s",
        "template_file": "default.template.yml",
        "extra_template_attributes": {},
    })
}

/// The transcript's record fields: all of the above plus the server-assigned ones.
const RECORD_FIELDS: [&str; 19] = [
    "build_id",
    "containers",
    "cpu_limit",
    "cpu_reservation",
    "deploy_delay",
    "deploy_monitor_period",
    "deployment_id",
    "deployment_time",
    "domain",
    "extra_template_attributes",
    "image",
    "mem_limit",
    "mem_reservation",
    "name",
    "port",
    "rendered_template",
    "run_id",
    "scale",
    "swarm_services",
];

fn assert_record_fields(record: &Value) {
    let object = record.as_object().expect("a record is an object");
    for field in RECORD_FIELDS.iter().chain(&["template_file"]) {
        assert!(object.contains_key(*field), "{field} missing from {record}");
    }
    for (field, value) in transcript_defaults().as_object().unwrap() {
        assert_eq!(&record[field], value, "{field} in {record}");
    }
    let id = record["deployment_id"].as_str().expect("deployment_id");
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "deployment_id {id:?} is not 32 hex digits"
    );
    assert!(
        record["rendered_template"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "rendered_template is empty in {record}"
    );
}

/// The two live containers the transcript's GET showed, as mlmodel names them.
fn assert_running_containers(record: &Value, instance: &str) {
    let containers = record["containers"].as_array().expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            format!("{instance}_carls_model_mlmodel.1"),
            format!("{instance}_carls_model_mlmodel.2")
        ],
        "{record}"
    );
    for container in containers {
        let state = container["current_state"].as_str().unwrap_or_default();
        assert!(state.starts_with("Running"), "{container}");
        assert_eq!(container["desired_state"], "Running", "{container}");
        assert_eq!(container["error"], "", "{container}");
        assert!(
            container["node"].as_str().is_some_and(|n| !n.is_empty()),
            "{container}"
        );
        assert_eq!(container["image"], SHOWN_IMAGE, "{container}");
    }
    let services = record["swarm_services"].as_array().expect("swarm_services");
    assert_eq!(services.len(), 1, "{record}");
    assert_eq!(services[0]["replicas"], "2/2", "{record}");
    assert_eq!(services[0]["name"], "carls_model", "{record}");
    assert_eq!(services[0]["image"], SHOWN_IMAGE, "{record}");
    assert_eq!(
        services[0]["service"],
        format!("{instance}_carls_model_mlmodel")
    );
}

/// Whether a record lists two running containers and a 2/2 service.
fn runs_two_replicas(record: &Value) -> bool {
    let running = record["containers"].as_array().is_some_and(|cs| {
        cs.len() == 2
            && cs.iter().all(|c| {
                c["current_state"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
            })
    });
    running
        && record["swarm_services"]
            .as_array()
            .is_some_and(|ss| ss.len() == 1 && ss[0]["replicas"] == "2/2")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_transcript_replays_on_the_real_swarm() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("readme"));
    let service = server.service_name("carls_model");

    // $ http localhost/
    assert_eq!(server.get("/"), (200, json!([])));

    // $ http post localhost/carls_model <<< '{...}'
    let (code, posted) = server.request("POST", "/carls_model", Some(BODY));
    assert_eq!(code, 200, "{posted}");
    assert_record_fields(&posted);
    assert_eq!(posted["containers"], json!([]));
    assert_eq!(posted["swarm_services"], json!([]));
    assert!(posted["deployment_time"].is_f64(), "{posted}");
    let deployment_id = posted["deployment_id"].clone();

    // $ http localhost/  (once the service is up)
    server.wait_for("carls_model listed as active", CONVERGE, || {
        server.get("/").1 == json!([{"name": "carls_model", "valid": true, "active": true}])
    });

    // $ http localhost/carls_model  (once both replicas run)
    server.wait_for("two running containers", CONVERGE, || {
        let (code, records) = server.get("/carls_model");
        code == 200 && runs_two_replicas(&records[0])
    });
    let (_, records) = server.get("/carls_model");
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{records}");
    let current = &records[0];
    assert_record_fields(current);
    assert_eq!(current["deployment_id"], deployment_id);
    assert_running_containers(current, &server.instance);

    // $ http delete localhost/carls_model
    let (code, deleted) = server.request("DELETE", "/carls_model", None);
    assert_eq!(code, 200, "{deleted}");
    let deployments = deleted["deployments"].as_array().expect("deployments");
    assert_eq!(deployments.len(), 1, "{deleted}");
    assert_record_fields(&deployments[0]);
    assert_eq!(deployments[0]["deployment_id"], deployment_id);
    assert_running_containers(&deployments[0], &server.instance);

    // $ http localhost/carls_model  (once it has stopped)
    server.wait_for("no containers and no services", CONVERGE, || {
        let (code, records) = server.get("/carls_model");
        code == 200
            && records[0]["containers"] == json!([])
            && records[0]["swarm_services"] == json!([])
    });
    let (_, records) = server.get("/carls_model");
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{records}");
    assert_record_fields(&records[0]);
    assert_eq!(records[0]["deployment_id"], deployment_id);
    assert!(
        inspect_service(&service).is_none(),
        "{service} still exists"
    );
    assert_eq!(
        server.get("/"),
        (
            200,
            json!([{"name": "carls_model", "valid": true, "active": false}])
        )
    );

    // $ http delete 'localhost/carls_model?clear_all_records=true'
    let (code, cleared) = server.request("DELETE", "/carls_model?clear_all_records=true", None);
    assert_eq!(code, 200, "{cleared}");
    assert_eq!(cleared["deployments"][0]["deployment_id"], deployment_id);
    assert_eq!(server.get("/carls_model").0, 404);
    server.wait_for("the model forgotten", CONVERGE, || {
        server.get("/") == (200, json!([]))
    });
}

/// A body as the original's own API test suite sent it: `model_type` included.
fn suite_body(tag: u32) -> String {
    format!(
        r#"{{"domain": "suite_model.localhost", "build_id": "build_{tag}", "run_id": "run_{tag}", "image": "qarlm/static-http-response-server:{tag}", "port": 80, "model_type": "default", "scale": 1}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_test_suite_behaviours_hold_on_the_real_swarm() {
    if swarm().await.is_none() {
        return;
    }
    let server = Server::start(&unique_name("suite"));

    // model_type is stored and answered back.
    let (code, first) = server.request("POST", "/suite_model", Some(&suite_body(1)));
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["model_type"], "default", "{first}");
    assert_eq!(first["template_file"], "default.template.yml");

    // Ten deployments to one name, then ?n=10 answers all ten, newest first.
    for tag in 2..=10 {
        let (code, posted) = server.request("POST", "/suite_model", Some(&suite_body(tag)));
        assert_eq!(code, 200, "{posted}");
    }
    let (code, records) = server.get("/suite_model?n=10&verbose=true");
    assert_eq!(code, 200, "{records}");
    let builds: Vec<&str> = records
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["build_id"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<String> = (1..=10).rev().map(|t| format!("build_{t}")).collect();
    assert_eq!(builds, expected, "{records}");
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["model_type"] == "default"),
        "{records}"
    );

    // live_only: listed once its service runs.
    server.wait_for("suite_model active", CONVERGE, || {
        server.get("/?live_only=true").1
            == json!([{"name": "suite_model", "valid": true, "active": true}])
    });
    let (_, verbose) = server.get("/?live_only=true&verbose=true");
    assert_eq!(verbose[0]["name"], "suite_model", "{verbose}");
    assert!(verbose[0]["phase"].is_string(), "{verbose}");
    server.wait_for("the newest image running", CONVERGE, || {
        let (_, records) = server.get("/suite_model");
        records[0]["containers"].as_array().is_some_and(|cs| {
            cs.len() == 1
                && cs[0]["image"] == "qarlm/static-http-response-server:10"
                && cs[0]["current_state"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
        })
    });

    // Delete with clear_all_records, then the model is a 4xx.
    let (code, deleted) = server.request("DELETE", "/suite_model?clear_all_records=true", None);
    assert_eq!(code, 200, "{deleted}");
    let (code, gone) = server.get("/suite_model");
    assert!((400..500).contains(&code), "{code}: {gone}");
    server.wait_for("no live model left", CONVERGE, || {
        server.get("/?live_only=true").1 == json!([])
    });
}
