//! Events and the watch stream, in-process over the fake swarm.

use super::*;
use futures_util::StreamExt;

/// Reads SSE frames from `body` until one of type `kind` whose data satisfies `want`;
/// returns it and every frame type seen on the way.
async fn read_until(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    kind: &str,
    want: impl Fn(&Value) -> bool,
) -> (Value, Vec<String>) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_string)
                };
                let (Some(event), Some(data)) = (field("event: "), field("data: ")) else {
                    continue;
                };
                let data: Value = serde_json::from_str(&data).unwrap();
                seen.push(event.clone());
                if event == kind && want(&data) {
                    return data;
                }
            }
            let chunk = body.next().await.expect("the stream ended").unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} frame in 10 s; saw {seen:?} and {buffer:?}"));
    (found, seen)
}

async fn open(api: &Api, uri: &str) -> axum::body::BodyDataStream {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    response.into_body().into_data_stream()
}

#[tokio::test]
async fn a_models_events_say_what_was_recorded_and_done() {
    let api = api().await;
    assert_eq!(
        api.get("/carls_model/events").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.post("/carls_model", BODY).await.0, StatusCode::OK);
    api.controller.reconcile("carls_model").await;
    let (status, events) = api.get("/carls_model/events").await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let reasons: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons[..2], ["Recorded", "Created"], "{events:#}");
    let created = &events[1];
    assert_eq!(created["type"], "Normal");
    assert_eq!(created["count"], 1);
    assert_eq!(
        created["message"],
        "created service mlmodel_carls_model_mlmodel"
    );
    assert!(created["time"].as_f64().unwrap() >= events[0]["time"].as_f64().unwrap());
    let (_, last) = api.get("/carls_model/events?limit=1").await;
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0], *events.as_array().unwrap().last().unwrap());
    let (status, error) = api.get("/carls_model/events?limit=none").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.to_string().contains("limit"), "{error}");
    // A stop is an event too.
    assert_eq!(
        api.call("DELETE", "/carls_model", None, &[]).await.0,
        StatusCode::OK
    );
    let (_, events) = api.get("/carls_model/events").await;
    let stopped = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "Stopped");
    assert!(stopped.is_some(), "{events:#}");
}

#[tokio::test]
async fn the_watch_stream_sends_every_status_then_each_change_and_event() {
    let api = api().await;
    assert_eq!(
        api.post("/a", BODY.replace("carls-model", "a").as_str())
            .await
            .0,
        StatusCode::OK
    );
    api.controller.reconcile("a").await;
    let mut body = open(&api, "/events").await;
    let mut buffer = String::new();
    let (synced, seen) = read_until(&mut body, &mut buffer, "synced", |_| true).await;
    assert_eq!(synced["models"], 1);
    assert_eq!(seen, ["status", "synced"]);
    // A new model: its event and its status come as they happen.
    assert_eq!(
        api.post("/b", BODY.replace("carls-model", "b").as_str())
            .await
            .0,
        StatusCode::OK
    );
    let (recorded, _) = read_until(&mut body, &mut buffer, "event", |e| e["model"] == "b").await;
    assert_eq!(recorded["reason"], "Recorded");
    api.controller.reconcile("b").await;
    let (status, _) = read_until(&mut body, &mut buffer, "status", |s| s["name"] == "b").await;
    assert_eq!(status["active"], true, "{status}");
    // `?watch=true` on the listing is the same stream, here narrowed to one model.
    let mut one = open(&api, "/?watch=true&name=b").await;
    let mut one_buffer = String::new();
    let (synced, seen) = read_until(&mut one, &mut one_buffer, "synced", |_| true).await;
    assert_eq!((synced["models"].as_u64(), seen.len()), (Some(1), 2));
    // With its backlog, the events kept so far come first, oldest first.
    let mut kept = open(&api, "/events?name=a&backlog=true").await;
    let mut kept_buffer = String::new();
    let (_, seen) = read_until(&mut kept, &mut kept_buffer, "synced", |_| true).await;
    let events = api.get("/a/events").await.1.as_array().unwrap().len();
    assert!(events >= 2, "Recorded and Created");
    let mut expected = vec!["event"; events];
    expected.extend(["status", "synced"]);
    assert_eq!(seen, expected);
    // A model that leaves the cache is `removed`.
    api.controller.status.remove("a");
    let (removed, _) = read_until(&mut body, &mut buffer, "removed", |_| true).await;
    assert_eq!(removed["name"], "a");
    assert_eq!(api.get("/?watch=maybe").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_backlog_of_every_model_has_a_deployment_recorded_before_its_first_status() {
    let api = api().await;
    assert_eq!(
        api.post("/c", BODY.replace("carls-model", "c").as_str())
            .await
            .0,
        StatusCode::OK
    );
    // Not reconciled yet: `c` has its Recorded event and no status.
    assert!(api.controller.status.get("c").is_none());
    let mut body = open(&api, "/events?backlog=true").await;
    let mut buffer = String::new();
    let (recorded, seen) = read_until(&mut body, &mut buffer, "event", |e| e["model"] == "c").await;
    assert_eq!(recorded["reason"], "Recorded");
    assert!(!seen.contains(&"synced".to_string()), "{seen:?}");
}
