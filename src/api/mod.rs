//! The HTTP API: the original service's endpoints, plus status, rollback, health,
//! metrics, an OpenAPI description and the dashboard (`/ui`).
//!
//! [`router`] builds the whole API from an [`ApiState`], so tests call it without a
//! socket. Reads are served from the reconciler's caches and the store; no request makes
//! a Docker call. Writes are on disk (flushed) before they are answered.

mod errors;
mod handlers;
pub mod logs;
mod metrics;
pub mod timefmt;
mod ui;
pub mod watch;

pub use errors::ApiError;

use crate::reconcile::controller::Readers;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::{Arc, Mutex};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Health of the parts the API cannot see from the status cache.
pub trait HealthProbe: Send + Sync {
    /// Whether the manifests watcher is alive, with a detail line.
    fn watcher(&self) -> (bool, String);
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// What the API reads of the reconciler: status, store, queue, declarations,
    /// counters. Never the reconciler itself.
    pub readers: Readers,
    /// Bearer token writes must carry, if any.
    pub token: Option<Arc<str>>,
    /// Watcher health.
    pub probe: Arc<dyn HealthProbe>,
    /// `GET /` bodies, cached per status generation.
    listing: Arc<Mutex<ListingCache>>,
    /// The OpenAPI description, with this server's templates in it.
    openapi: axum::body::Bytes,
    /// Followed log streams: at most [`logs::MAX_FOLLOWS`] at once.
    pub log_follows: Arc<tokio::sync::Semaphore>,
    /// Watch streams: at most [`watch::MAX_WATCHES`] at once.
    pub watches: Arc<tokio::sync::Semaphore>,
    /// Cancelled at shutdown: streamed answers end then.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// `GET /` bodies of one status generation, each made when first asked for: indexed by
/// `live_only`, then by `verbose`.
#[derive(Default)]
struct ListingCache {
    generation: Option<u64>,
    bodies: [[Option<axum::body::Bytes>; 2]; 2],
}

impl ApiState {
    /// State for a router over the reconciler's `readers`.
    pub fn new(readers: Readers, token: Option<String>, probe: Arc<dyn HealthProbe>) -> Self {
        let openapi = openapi_for(readers.templates.names(), &readers.instance.name);
        Self {
            readers,
            token: token.map(Arc::from),
            probe,
            listing: Arc::new(Mutex::new(ListingCache::default())),
            openapi,
            log_follows: Arc::new(tokio::sync::Semaphore::new(logs::MAX_FOLLOWS)),
            watches: Arc::new(tokio::sync::Semaphore::new(watch::MAX_WATCHES)),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Ends streamed answers (followed logs) when `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: tokio_util::sync::CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// [`OPENAPI`] with the templates this server has as the only values of `template_file`
/// and `model_type`, and the longest model name this instance can deploy with the
/// default template, so a client (or a fuzzer) generating requests from it sends ones
/// that can be accepted.
fn openapi_for(templates: &[String], instance: &str) -> axum::body::Bytes {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        // The description is a file compiled in; a test checks that it parses.
        return axum::body::Bytes::from_static(OPENAPI.as_bytes());
    };
    let model_types: Vec<&str> = templates
        .iter()
        .filter_map(|t| crate::desired::record::model_type_of_template(t))
        .collect();
    let properties = &mut doc["components"]["schemas"]["Spec"]["properties"];
    properties["template_file"]["enum"] = serde_json::json!(templates);
    properties["model_type"]["enum"] = serde_json::json!(model_types);
    // `<instance>_<name>_mlmodel` must fit Docker's 63 characters.
    let longest =
        crate::desired::naming::MAX_SERVICE_NAME.saturating_sub(instance.len() + "__mlmodel".len());
    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in paths
            .values_mut()
            .filter_map(|p| p.as_object_mut())
            .flat_map(|p| p.values_mut())
        {
            let parameters = operation
                .get_mut("parameters")
                .and_then(|p| p.as_array_mut());
            for parameter in parameters.into_iter().flatten() {
                if parameter["in"] == "path" && parameter["name"] == "name" {
                    parameter["schema"]["maxLength"] = serde_json::json!(longest);
                }
            }
        }
    }
    axum::body::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
}

/// Builds the API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(handlers::list))
        .route("/healthz", get(handlers::healthz))
        .route("/health", get(handlers::health))
        .route("/health/check", get(handlers::health))
        .route("/health/test", get(handlers::health))
        .route("/ping", get(handlers::ping))
        .route("/health/ping", get(handlers::ping))
        .route("/version", get(handlers::version))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .route("/events", get(watch::events))
        .route("/ui", get(ui::page))
        .route(
            "/{name}",
            get(handlers::get_model)
                .post(handlers::deploy)
                .put(handlers::deploy)
                .delete(handlers::delete_model),
        )
        .route("/{name}/status", get(handlers::model_status))
        .route("/{name}/rollback", post(handlers::rollback))
        .route("/{name}/logs", get(logs::logs))
        .route("/{name}/events", get(handlers::model_events))
        .fallback(|| async { ApiError::NotFound("no such endpoint: see /openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed(
                "method not allowed on this endpoint: see /openapi.json".into(),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Writes need the bearer token when one is configured; reads never do.
async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if let (true, Some(token)) = (write, state.token.as_deref()) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            return ApiError::Unauthorized(
                "this server requires Authorization: Bearer <token> for writes".into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
