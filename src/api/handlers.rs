//! The endpoints.

use super::timefmt;
use super::{ApiError, ApiState, MAX_BODY_BYTES};
use crate::desired::Identity;
use crate::desired::manifest::read_spec;
use crate::desired::record::{self, DeploymentRecord};
use crate::desired::record::{HistoryEntry, Source};
use crate::reconcile::events::Note;
use crate::reconcile::status::ModelStatus;
use crate::sources::store::StoreError;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

type Params = Query<HashMap<String, String>>;

/// `GET /`: every model's name, valid and active; `?verbose=true` (or `detail=true`):
/// full statuses; `?live_only=true`: only the models active in the swarm.
pub async fn list(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let detailed = flag(&params, "verbose")?
        .or(flag(&params, "detail")?)
        .unwrap_or(false);
    if let Some(stream) = super::watch::watch_flag(&state, &params)? {
        return Ok(stream);
    }
    let live_only = flag(&params, "live_only")?.unwrap_or(false);
    let generation = state.readers.status.generation();
    let mut cache = state.listing.lock().unwrap_or_else(|p| p.into_inner());
    if cache.generation != Some(generation) {
        // Only the answers asked for are kept: at 10,000 models, each detailed one is
        // megabytes.
        cache.bodies = Default::default();
        cache.generation = Some(generation);
    }
    let slot = &mut cache.bodies[usize::from(live_only)][usize::from(detailed)];
    let body = match slot {
        Some(body) => body.clone(),
        None => {
            let snapshot = state.readers.status.snapshot();
            let models = snapshot
                .models
                .values()
                .filter(|s| s.active || !live_only)
                .map(|s| s.as_ref());
            let encoded = if detailed {
                serde_json::to_vec(&models.collect::<Vec<&ModelStatus>>())
            } else {
                serde_json::to_vec(&models.map(Brief::of).collect::<Vec<Brief>>())
            };
            // Exactly as long as the answer: a body grown by doubling keeps its slack
            // for as long as it is cached.
            let body = Bytes::from(encoded.unwrap_or_default().into_boxed_slice());
            *slot = Some(body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A model in the brief `GET /` answer (keys in the original's order).
#[derive(serde::Serialize)]
struct Brief<'a> {
    active: bool,
    name: &'a str,
    valid: bool,
}

impl<'a> Brief<'a> {
    fn of(status: &'a ModelStatus) -> Self {
        Self {
            active: status.active,
            name: &status.name,
            valid: status.valid,
        }
    }
}

/// `POST /{name}` and `PUT /{name}`: records and applies a deployment.
pub async fn deploy(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    refuse_standby(&state)?;
    let body = read_json(&headers, body).await?;
    let Value::Object(fields) = &body else {
        return Err(ApiError::Invalid(format!(
            "request body: expected a JSON object of deployment fields, found {}",
            json_kind(&body)
        )));
    };
    if let Some(body_name) = fields
        .get("name")
        .filter(|n| n.as_str() != Some(name.as_str()))
    {
        return Err(ApiError::Invalid(format!(
            "name: {body_name} does not match the name in the path ({name:?}); leave it out or make them equal"
        )));
    }
    refuse_file_owned(&state, &name)?;
    let yaml = serde_yaml::to_value(&body)
        .map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
    let fill = &state.readers.instance.fill;
    let spec = read_spec(&yaml, Some(&name), fill).map_err(|(mut errors, draft)| {
        if let Some(draft) = draft {
            let more = state.readers.pipeline().validate_draft(&draft, &errors);
            errors.extend(more);
        }
        invalid(&errors)
    })?;
    let entry = record_deployment(&state, spec).await?;
    let record = &entry.record;
    let id = record.deployment_id.as_str();
    let note = Note::recorded(id, &record.spec.image, "api");
    state.readers.events.record(&name, vec![note], Some(id));
    Ok(Json(record_json(record, None)))
}

/// `GET /{name}?n=N`: the newest N records, newest first, the newest with its live
/// containers and services. The original's `verbose` is accepted (the records are always
/// whole), and checked like every flag.
pub async fn get_model(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    flag(&params, "verbose")?;
    let n = match params.get("n") {
        None => 1,
        Some(text) => whole_number(text).filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "n: expected a whole number of at least 1, found {text:?}"
            ))
        })?,
    };
    let history = history(&state, &name, n)?;
    let status = state.readers.status.get(&name);
    let records: Vec<Value> = history
        .iter()
        .enumerate()
        .map(|(i, entry)| record_json(&entry.record, status.as_deref().filter(|_| i == 0)))
        .collect();
    Ok(Json(Value::Array(records)))
}

/// `DELETE /{name}?clear_all_records=BOOL`: stops the model, optionally wiping history.
pub async fn delete_model(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let clear = flag(&params, "clear_all_records")?.unwrap_or(false);
    refuse_standby(&state)?;
    refuse_file_owned(&state, &name)?;
    let newest = history(&state, &name, 1)?;
    let status = state.readers.status.get(&name);
    let answer = json!({"deployments": newest.iter().map(|e| record_json(&e.record, status.as_deref())).collect::<Vec<_>>()});
    let store = state.readers.store;
    // One write either way: a reconcile must never see the records gone but the model
    // not yet stopped, or it adopts the live services back.
    let stopped = if clear {
        store.clear_and_stop(&name).await
    } else {
        store.set_stopped(&name, true).await
    };
    stopped.map_err(store_error(&store))?;
    let deployment = newest.first().map(|e| e.record.deployment_id.as_str());
    let note = Note::stopped(clear);
    state.readers.events.record(&name, vec![note], deployment);
    state.readers.queue.add(&name);
    Ok(Json(answer))
}

/// `GET /{name}/events?limit=N`: the model's newest N events (default all kept),
/// oldest first.
pub async fn model_events(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let limit = match params.get("limit") {
        None => usize::MAX,
        Some(text) => whole_number(text).filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit: expected a whole number of at least 1, found {text:?}"
            ))
        })?,
    };
    let events = state
        .readers
        .events
        .list(&name)
        .map_err(store_error(&state.readers.store))?;
    if events.is_empty() && state.readers.status.get(&name).is_none() {
        return Err(ApiError::NotFound(format!("model {name:?} is not known")));
    }
    let skip = events.len().saturating_sub(limit);
    let value =
        serde_json::to_value(&events[skip..]).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(value))
}

/// `GET /{name}/status`: phase, replicas, tasks, message, source.
pub async fn model_status(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let status = state
        .readers
        .status
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("model {name:?} is not known")))?;
    let value =
        serde_json::to_value(status.as_ref()).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(value))
}

/// `POST /{name}/rollback?to=ID`: records a copy of an earlier deployment's spec.
pub async fn rollback(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    refuse_standby(&state)?;
    refuse_file_owned(&state, &name)?;
    let history = history(&state, &name, usize::MAX)?;
    let target = match params.get("to") {
        Some(id) => history
            .iter()
            .find(|e| &e.record.deployment_id == id)
            .ok_or_else(|| {
                ApiError::NotFound(format!("model {name:?} has no deployment {id:?}"))
            })?,
        None => history.get(1).ok_or_else(|| {
            ApiError::Conflict(format!(
                "model {name:?} has only one deployment: there is nothing to roll back to"
            ))
        })?,
    };
    let entry = record_deployment(&state, target.record.spec.clone()).await?;
    let id = entry.record.deployment_id.as_str();
    let note = Note::rollback_requested(&target.record.deployment_id, id);
    state.readers.events.record(&name, vec![note], Some(id));
    Ok(Json(record_json(&entry.record, None)))
}

/// The checks `/healthz` and `/health` report: Docker, store, watcher (each failing makes
/// mlmodel unhealthy) and the shared network's addresses (too few makes it degraded:
/// mlmodel works, and a restart would not help).
async fn health_checks(state: &ApiState) -> (Health, Value) {
    let (docker_ok, docker_detail) = state.readers.docker.health();
    let (store_ok, store_detail) = match state.readers.store.flush().await {
        Ok(()) => (true, "writable".to_string()),
        Err(e) => match e.io_error() {
            Some(_) if e.is_disk_full() => (
                false,
                format!(
                    "the disk holding the store {} is full (no space left on device)",
                    state.readers.store.dir().display()
                ),
            ),
            Some(io) => (false, format!("{e}: {io}")),
            None => (false, e.to_string()),
        },
    };
    let (watcher_ok, watcher_detail) = state.probe.watcher();
    let (network_ok, network_detail) = match state.readers.network.report() {
        Some(report) => (!report.is_short(), report.detail()),
        None => (true, "not listed yet".to_string()),
    };
    let lease_detail = match (state.readers.lease.standby(), state.readers.lease.term()) {
        (Some(why), _) => why,
        (None, Some(term)) => format!("active: this mlmodel holds the lease (term {term})"),
        (None, None) => "not used: this mlmodel always acts (no --lease)".to_string(),
    };
    let checks = json!({
        "docker": {"ok": docker_ok, "detail": docker_detail},
        "store": {"ok": store_ok, "detail": store_detail},
        "watcher": {"ok": watcher_ok, "detail": watcher_detail},
        "network": {"ok": network_ok, "detail": network_detail},
        // A standby is healthy: it is ready to take over.
        "lease": {"ok": true, "detail": lease_detail},
    });
    let health = if !(docker_ok && store_ok && watcher_ok) {
        Health::Unhealthy
    } else if !network_ok {
        Health::Degraded
    } else {
        Health::Ok
    };
    (health, checks)
}

/// What the checks add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ok,
    Degraded,
    Unhealthy,
}

fn health_code(health: Health) -> StatusCode {
    match health {
        Health::Ok | Health::Degraded => StatusCode::OK,
        Health::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn health_word(health: Health) -> &'static str {
    match health {
        Health::Ok => "ok",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
    }
}

/// `GET /healthz`: Docker reachable, store writable, watcher alive.
pub async fn healthz(State(state): State<ApiState>) -> Response {
    let (healthy, checks) = health_checks(&state).await;
    let body = json!({"status": health_word(healthy), "checks": checks});
    (health_code(healthy), Json(body)).into_response()
}

/// `GET /health` (and the original's `/health/check`, `/health/test`): the checks of
/// `/healthz`, the version and how many models are valid, active and in each phase.
pub async fn health(State(state): State<ApiState>) -> Response {
    let (healthy, checks) = health_checks(&state).await;
    let snapshot = state.readers.status.snapshot();
    let mut phases: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let (mut valid, mut active) = (0u64, 0u64);
    for status in snapshot.models.values() {
        valid += u64::from(status.valid);
        active += u64::from(status.active);
        *phases.entry(status.phase.as_str()).or_default() += 1;
    }
    let body = json!({
        "status": health_word(healthy),
        "version": env!("CARGO_PKG_VERSION"),
        "instance": state.readers.instance.name,
        "checks": checks,
        "models": {
            "total": snapshot.models.len(),
            "valid": valid,
            "active": active,
            "phases": phases,
        },
    });
    (health_code(healthy), Json(body)).into_response()
}

/// `GET /ping` and `GET /health/ping`: `["pong"]`, as the original answered.
pub async fn ping() -> Json<Value> {
    Json(json!(["pong"]))
}

/// `GET /version`: mlmodel's version and this instance's name.
pub async fn version(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "instance": state.readers.instance.name,
    }))
}

/// `GET /openapi.json`: the description, with this server's templates.
pub async fn openapi(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response()
}

/// Validates, renders, stores (flushed) and queues a new deployment of `spec`.
async fn record_deployment(
    state: &ApiState,
    spec: crate::desired::record::ModelSpec,
) -> Result<HistoryEntry, ApiError> {
    let identity = Identity {
        deployment_id: record::new_deployment_id(),
        deployment_time: record::now_unix_seconds(),
        image_digest: None,
    };
    let desired = state
        .readers
        .pipeline()
        .build(spec, identity, &Source::Api)
        .map_err(|errors| invalid(&errors))?;
    let entry = Arc::new(HistoryEntry {
        record: desired.record,
        source: Source::Api,
    });
    state
        .readers
        .store
        .append(entry.clone())
        .await
        .map_err(store_error(&state.readers.store))?;
    state.readers.queue.add(&entry.record.spec.name);
    Ok(Arc::unwrap_or_clone(entry))
}

fn history(state: &ApiState, name: &str, n: usize) -> Result<Vec<HistoryEntry>, ApiError> {
    let mut unreadable = None;
    let history: Vec<HistoryEntry> = state
        .readers
        .store
        .history(name, n)
        .into_iter()
        .filter_map(|entry| {
            entry
                .inspect_err(|e| tracing::warn!(model = name, error = %e, "skipping an unreadable history entry"))
                .map_err(|e| {
                    unreadable.get_or_insert(e);
                })
                .ok()
        })
        .collect();
    if history.is_empty()
        && let Some(error) = unreadable.filter(StoreError::is_io)
    {
        let dir = state.readers.store.dir().display();
        let why = if error.is_disk_full() {
            "its disk is full".to_string()
        } else {
            format!("of an I/O error ({error})")
        };
        return Err(ApiError::Unavailable(format!(
            "the store in {dir} cannot be read now because {why}: every model keeps running as last declared, and its status is still served (GET /{name}/status); try again once the disk works"
        )));
    }
    if history.is_empty() {
        return Err(ApiError::NotFound(format!(
            "model {name:?} has no deployment record"
        )));
    }
    Ok(history)
}

/// A standby (a copy that does not hold the lease) writes nothing: 503, naming the
/// active copy.
fn refuse_standby(state: &ApiState) -> Result<(), ApiError> {
    match state.readers.lease.standby() {
        Some(why) => Err(ApiError::Unavailable(format!(
            "{why}: send writes there (reads are answered here)"
        ))),
        None => Ok(()),
    }
}

fn refuse_file_owned(state: &ApiState, name: &str) -> Result<(), ApiError> {
    match state.readers.declarations.owner(name) {
        Some(origin) => Err(ApiError::Conflict(format!(
            "model {name:?} is declared by the manifest {origin}: change or delete that file instead"
        ))),
        None => Ok(()),
    }
}

/// A record as the original API showed it, with live containers and services when given.
fn record_json(record: &DeploymentRecord, live: Option<&ModelStatus>) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    value["model_type"] = json!(record.spec.shown_model_type());
    let now = SystemTime::now();
    let containers: Vec<Value> = live
        .map(|s| {
            s.tasks
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "image": t.image,
                        "node": t.node,
                        "desired_state": t.desired_state,
                        "current_state": timefmt::current_state(&t.state, t.since.as_deref(), now),
                        "error": t.error,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let services: Vec<Value> = live
        .map(|s| s.services.iter().map(|svc| json!(svc)).collect())
        .unwrap_or_default();
    value["containers"] = Value::Array(containers);
    value["swarm_services"] = Value::Array(services);
    value
}

/// The request body as JSON.
///
/// A body whose content type is not JSON is still read as JSON when it parses, as the
/// original service read it (`curl -d '{...}'` sends `application/x-www-form-urlencoded`);
/// one that does not parse is refused for its content type.
async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).map(|content_type| {
        content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::TooLarge(format!(
                "request body is larger than {} KiB",
                MAX_BODY_BYTES / 1024
            ))
        })?;
    let parsed = serde_json::from_slice(&bytes);
    match declared {
        Some(essence)
            if essence != "application/json"
                && !(essence.starts_with("application/") && essence.ends_with("+json")) =>
        {
            parsed.map_err(|_| {
                ApiError::UnsupportedMediaType(format!(
                    "content type {essence:?} is not supported: send the deployment as application/json"
                ))
            })
        }
        _ => parsed
            .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}"))),
    }
}

/// A whole number; one too large for the machine is taken as the largest there is (`n`
/// asks for at most that many records).
fn whole_number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<usize>().unwrap_or(usize::MAX))
}

pub(super) fn flag(params: &HashMap<String, String>, key: &str) -> Result<Option<bool>, ApiError> {
    match params.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(Some(true)),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(Some(false)),
        Some(v) => Err(ApiError::BadRequest(format!(
            "{key}: expected true or false, found {v:?}"
        ))),
    }
}

fn invalid(errors: &[crate::desired::validate::FieldError]) -> ApiError {
    ApiError::Invalid(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// A store write that failed, by what the caller can do: a full disk is 507 and an I/O
/// error 503 (nothing was recorded, the model runs as last declared, and the store opens
/// again by itself once the disk works), anything else 500.
fn store_error(store: &crate::sources::store::Store) -> impl Fn(StoreError) -> ApiError + '_ {
    move |error| {
        let dir = store.dir().display();
        let io = error
            .io_error()
            .map(ToString::to_string)
            .unwrap_or_default();
        if error.is_disk_full() {
            ApiError::InsufficientStorage(format!(
                "the disk holding the store {dir} is full (no space left on device): nothing was recorded, and every model keeps running as last declared; free space there and try again (no restart needed)"
            ))
        } else if let StoreError::Mirror { message, .. } = &error {
            ApiError::Unavailable(format!(
                "the write could not be kept in Swarm, where every copy of mlmodel reads the history ({message}): nothing was recorded, and every model keeps running as last declared; try again once Docker answers"
            ))
        } else if error.is_io() {
            ApiError::Unavailable(format!(
                "the store in {dir} met an I/O error ({io}): nothing was recorded, and every model keeps running as last declared; try again once the disk works (no restart needed)"
            ))
        } else {
            ApiError::Internal(format!("the store failed: {error}"))
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
