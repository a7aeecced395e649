//! The original service's requests, answered as it answered them.

use super::*;
use crate::desired::manifest::Fill;
use crate::desired::naming::DomainFormat;

/// The original README's request body, verbatim.
const ORIGINAL_BODY: &str = r#"{"domain": "carls_model.com", "build_id": "some_build_id", "run_id": "some_run_id", "image": "qarlm/static-http-response-server", "port": 80}"#;

/// The body the original's own test suite sent: `model_type` included.
const SUITE_BODY: &str = r#"{"domain": "carls_model.com", "build_id": "b", "run_id": "r", "image": "qarlm/static-http-response-server:1", "port": 80, "model_type": "default"}"#;

#[tokio::test]
async fn the_original_readme_body_is_accepted_as_written() {
    let api = api().await;
    let (status, record) = api.post("/carls_model", ORIGINAL_BODY).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["domain"], "carls_model.com");
    assert_eq!(record["template_file"], "default.template.yml");
    assert_eq!(record["model_type"], "default");
    assert!(
        record["rendered_template"]
            .as_str()
            .unwrap()
            .contains("Host(`carls_model.com`)"),
        "{record}"
    );
}

#[tokio::test]
async fn model_type_selects_the_template_and_is_answered_in_every_record() {
    let api = api().await;
    let (status, posted) = api.post("/m", SUITE_BODY).await;
    assert_eq!(status, StatusCode::OK, "{posted}");
    assert_eq!(posted["model_type"], "default");
    assert_eq!(posted["template_file"], "default.template.yml");
    let (_, records) = api.get("/m?n=1&verbose=true").await;
    assert_eq!(records[0]["model_type"], "default", "{records}");

    let unknown = SUITE_BODY.replace(r#""model_type": "default""#, r#""model_type": "gpu""#);
    let (status, error) = api.post("/m", &unknown).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("model_type: \"gpu.template.yml\" is not in the templates directory"),
        "{detail}"
    );
}

#[tokio::test]
async fn model_type_and_template_file_that_disagree_are_refused_naming_both() {
    let api = api().await;
    let body = SUITE_BODY.replace(
        r#""model_type": "default""#,
        r#""model_type": "default", "template_file": "gpu.template.yml""#,
    );
    let (status, error) = api.post("/m", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = error["detail"].as_str().unwrap();
    assert!(detail.contains("model_type: \"default\" selects the template \"default.template.yml\", but template_file is \"gpu.template.yml\""), "{detail}");
}

#[tokio::test]
async fn a_domain_format_fills_a_left_out_domain_and_keeps_a_given_one() {
    let instance = Instance {
        fill: Fill {
            domain_format: Some(DomainFormat::parse("{model_name}_localhost").unwrap()),
        },
        ..Instance::default()
    };
    let with_format = api_with(None, instance).await;
    let body = r#"{"build_id": "b", "run_id": "r", "image": "qarlm/static-http-response-server"}"#;
    let (status, record) = with_format.post("/carls_model", body).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["domain"], "carls_model_localhost");
    let (_, record) = with_format.post("/other", ORIGINAL_BODY).await;
    assert_eq!(record["domain"], "carls_model.com");

    let without = api().await;
    let (status, error) = without.post("/carls_model", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("domain: is required"),
        "{error}"
    );
}

#[tokio::test]
async fn the_original_health_routes_answer() {
    let api = api().await;
    api.post("/m", SUITE_BODY).await;
    api.controller.reconcile("m").await;
    for route in ["/ping", "/health/ping"] {
        assert_eq!(
            api.get(route).await,
            (StatusCode::OK, json!(["pong"])),
            "{route}"
        );
    }
    let (healthz_status, healthz) = api.get("/healthz").await;
    for route in ["/health", "/health/check", "/health/test"] {
        let (status, health) = api.get(route).await;
        // The fake's event stream never connects: Docker counts as down, as on /healthz.
        assert_eq!(status, healthz_status, "{route}: {health}");
        assert_eq!(health["status"], "unhealthy");
        assert_eq!(health["checks"], healthz["checks"], "{health}");
        assert_eq!(health["models"]["total"], 1, "{health}");
        assert_eq!(health["models"]["valid"], 1, "{health}");
        assert_eq!(health["models"]["active"], 1, "{health}");
    }
    let (status, version) = api.get("/version").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn health_route_names_cannot_be_models() {
    let api = api().await;
    let (status, _) = api.post("/ping", SUITE_BODY).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    api.declare_file(
        "health.yml",
        "domain: h.com\nimage: i\nbuild_id: b\nrun_id: r\n",
    );
    api.controller.reconcile("health").await;
    let status = api.controller.status.get("health").expect("a status");
    assert!(
        status.message.contains("\"health\" is reserved"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn live_only_keeps_the_active_models_and_verbose_gives_their_statuses() {
    let api = api().await;
    api.post("/live", SUITE_BODY).await;
    api.controller.reconcile("live").await;
    api.post("/stopped", SUITE_BODY).await;
    api.controller.reconcile("stopped").await;
    api.call("DELETE", "/stopped", None, &[]).await;
    api.controller.reconcile("stopped").await;
    let (_, all) = api.get("/").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let (_, live) = api.get("/?live_only=true").await;
    assert_eq!(
        live,
        json!([{"name": "live", "valid": true, "active": true}])
    );
    let (_, verbose) = api.get("/?live_only=true&verbose=true").await;
    assert_eq!(verbose[0]["name"], "live");
    assert!(verbose[0]["phase"].is_string(), "{verbose}");
    assert_eq!(verbose.as_array().unwrap().len(), 1);
    let (status, _) = api.get("/?live_only=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn swarm_services_are_named_by_model_and_images_shown_as_docker_shows_them() {
    let api = api().await;
    api.post("/carls_model", ORIGINAL_BODY).await;
    api.controller.reconcile("carls_model").await;
    api.controller.relist().await.unwrap();
    api.controller.reconcile("carls_model").await;
    let (_, records) = api.get("/carls_model").await;
    let service = &records[0]["swarm_services"][0];
    assert_eq!(service["name"], "carls_model", "{records}");
    assert_eq!(service["service"], "mlmodel_carls_model_mlmodel");
    assert_eq!(service["image"], "qarlm/static-http-response-server:latest");
    let container = &records[0]["containers"][0];
    assert_eq!(container["name"], "mlmodel_carls_model_mlmodel.1");
    assert_eq!(
        container["image"], "qarlm/static-http-response-server:latest",
        "{records}"
    );
    assert_eq!(records[0]["image"], "qarlm/static-http-response-server");
}

#[tokio::test]
async fn the_openapi_description_offers_only_the_templates_this_server_has() {
    let api = api().await;
    let (_, doc) = api.get("/openapi.json").await;
    let properties = &doc["components"]["schemas"]["Spec"]["properties"];
    assert_eq!(
        properties["template_file"]["enum"],
        json!(["default.template.yml"])
    );
    assert_eq!(properties["model_type"]["enum"], json!(["default"]));
    let name = &doc["paths"]["/{name}"]["get"]["parameters"][0];
    assert_eq!(name["name"], "name");
    // mlmodel_<name>_mlmodel within 63 characters.
    assert_eq!(
        name["schema"]["maxLength"],
        63 - "mlmodel_".len() - "_mlmodel".len()
    );
}

#[tokio::test]
async fn a_json_body_sent_with_curls_default_content_type_is_read_as_json() {
    let api = api().await;
    // `curl -d '{...}'` says application/x-www-form-urlencoded; the original read JSON.
    let (status, record) = api
        .call(
            "POST",
            "/carls_model",
            Some(ORIGINAL_BODY),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["domain"], "carls_model.com");
}

#[tokio::test]
async fn a_huge_n_answers_every_record() {
    let api = api().await;
    api.post("/m", SUITE_BODY).await;
    let (status, records) = api.get("/m?n=183932466948889968640").await;
    assert_eq!(status, StatusCode::OK, "{records}");
    assert_eq!(records.as_array().unwrap().len(), 1);
    let (status, _) = api.get("/m?n=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/m?n=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
