//! The HTTP client of the mlmodel API: one method per endpoint, typed answers, typed errors.

use super::exit;
use super::wire::{Event, Record, Status};
use crate::desired::record::ModelSpec;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use std::time::Duration;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take: a server on the same network answers far sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the API did not produce the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection could be made: nothing listens there, or the host is unknown.
    #[error(
        "cannot connect to mlmodel at {server}: is the server running? Start it with: mlmodel serve"
    )]
    Connect {
        /// The server's base URL.
        server: String,
        /// What the connection attempt reported.
        #[source]
        source: reqwest::Error,
    },
    /// The server did not answer within the request timeout.
    #[error("mlmodel at {server} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The server's base URL.
        server: String,
        /// The timeout as reported by the HTTP stack.
        #[source]
        source: reqwest::Error,
    },
    /// The connection broke while the request or the answer was under way.
    #[error("the connection to mlmodel at {server} failed")]
    Transport {
        /// The server's base URL.
        server: String,
        /// What broke.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status; `detail` is its explanation, verbatim.
    #[error("{detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's `detail`, or the body when it sent none.
        detail: String,
    },
    /// The server answered 2xx with a body that is not what the API describes.
    #[error("unexpected answer from mlmodel at {server} for {what}: {message}")]
    Unexpected {
        /// The server's base URL.
        server: String,
        /// The request, e.g. `GET /carls_model`.
        what: String,
        /// What was wrong with the body.
        message: String,
    },
}

impl ApiError {
    /// The process exit code this error ends a command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. } => {
                exit::UNREACHABLE
            }
            Self::Refused { .. } | Self::Unexpected { .. } => exit::FAILED,
        }
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server said the model or deployment does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// What `DELETE /{name}` answers: the model's newest record as it was, with its live
/// containers, as the original service answered.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Deleted {
    /// The newest deployment record (one, even when the whole history was cleared).
    #[serde(default)]
    pub deployments: Vec<Record>,
}

/// A client of one mlmodel server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    /// Sent as `Authorization: Bearer`; kept out of `Debug` by [`Token`].
    token: Option<Token>,
    http: reqwest::Client,
}

/// A bearer token that never shows in `Debug` output.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl ApiClient {
    /// A client of the server at `base` (http://host:port, optionally with a path prefix).
    pub fn new(base: Url, token: Option<String>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("mlmodel/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.is_empty()).map(Token),
            http,
        })
    }

    /// The server's base URL as the user would write it.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Whether requests carry a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET /?detail=true`: the status of every model.
    pub async fn statuses(&self) -> Result<Vec<Status>, ApiError> {
        self.call(Method::GET, &[], &[("detail", "true".into())], None)
            .await
    }

    /// `GET /{name}/status`: one model's status.
    pub async fn status(&self, name: &str) -> Result<Status, ApiError> {
        self.call(Method::GET, &[name, "status"], &[], None).await
    }

    /// `GET /{name}?n=N`: the model's last `n` deployment records, newest first.
    pub async fn history(&self, name: &str, n: u32) -> Result<Vec<Record>, ApiError> {
        self.call(Method::GET, &[name], &[("n", n.to_string())], None)
            .await
    }

    /// `POST /{name}`: records `spec` as the model's new deployment.
    pub async fn apply(&self, spec: &ModelSpec) -> Result<Record, ApiError> {
        let body = serde_json::to_value(spec).map_err(|e| self.unexpected("POST", e))?;
        self.call(Method::POST, &[&spec.name], &[], Some(&body))
            .await
    }

    /// `DELETE /{name}`: stops serving the model, optionally wiping its history.
    pub async fn delete(&self, name: &str, clear_all_records: bool) -> Result<Deleted, ApiError> {
        let query = [("clear_all_records", clear_all_records.to_string())];
        self.call(Method::DELETE, &[name], &query, None).await
    }

    /// `POST /{name}/rollback`: redeploys an earlier record (the previous one by default).
    pub async fn rollback(&self, name: &str, to: Option<&str>) -> Result<Record, ApiError> {
        let query: Vec<(&str, String)> = to.map(|id| ("to", id.to_string())).into_iter().collect();
        self.call(Method::POST, &[name, "rollback"], &query, None)
            .await
    }

    /// `GET /{name}/events`: the model's events, oldest first.
    pub async fn events(&self, name: &str) -> Result<Vec<Event>, ApiError> {
        self.call(Method::GET, &[name, "events"], &[], None).await
    }

    /// `GET /events`: the watch stream (of one model, with `name`). Calls `frame` with
    /// `("open", "")` once connected (with `backlog`, the events kept so far come first),
    /// then with each frame's type and data until it
    /// returns false (`Ok(true)`) or the stream
    /// ends (`Ok(false)`: the server went away or shut down).
    pub async fn watch(
        &self,
        name: Option<&str>,
        backlog: bool,
        mut frame: impl FnMut(&str, &str) -> bool,
    ) -> Result<bool, ApiError> {
        let mut query: Vec<(&str, String)> =
            name.map(|n| ("name", n.to_string())).into_iter().collect();
        if backlog {
            query.push(("backlog", "true".to_string()));
        }
        let request = self
            .http
            .get(self.url(&["events"], &query))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let mut response = self.open_stream(request, true).await?;
        // Before the stream's own frames: a new connection starts over with every status.
        if !frame("open", "") {
            return Ok(true);
        }
        let mut frames = SseFrames::default();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            for (kind, data) in frames.push(&chunk) {
                if !frame(&kind, &data) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `GET /{name}/logs`: writes the lines to `out` as they come; with `follow` no
    /// time limit applies, and it returns when the server ends the stream.
    pub async fn logs(
        &self,
        name: &str,
        query: &[(&str, String)],
        follow: bool,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), ApiError> {
        let request = self.http.get(self.url(&[name, "logs"], query));
        let mut response = self.open_stream(request, follow).await?;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            // A closed pipe (`| head`) ends the command quietly.
            if out.write_all(&chunk).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Sends a GET whose answer is read as it streams (with `endless`, without a time
    /// limit: it is open until one side ends it); the server's refusal is an error.
    async fn open_stream(
        &self,
        request: reqwest::RequestBuilder,
        endless: bool,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = request;
        if endless {
            request = request.timeout(Duration::from_secs(100 * 365 * 24 * 3600));
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(&token.0);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.map_err(|e| self.transport(e))?;
            return Err(ApiError::Refused {
                status: status.as_u16(),
                detail: detail_from_body(status, &text),
            });
        }
        Ok(response)
    }

    /// Sends one request and reads the answer as `T`, or the server's refusal.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Json>,
    ) -> Result<T, ApiError> {
        let url = self.url(segments, query);
        let what = format!("{method} {}", url.path());
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(&token.0);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(ApiError::Refused {
                status: status.as_u16(),
                detail: detail_from_body(status, &text),
            });
        }
        serde_json::from_str(&text).map_err(|e| self.unexpected(&what, e))
    }

    /// The URL of an endpoint: the base, then each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        // `base` was checked to be an http URL, which always has a path to extend.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    fn transport(&self, source: reqwest::Error) -> ApiError {
        let server = self.server().to_string();
        // A connection that timed out is a connection failure, not a slow answer.
        if source.is_connect() {
            ApiError::Connect { server, source }
        } else if source.is_timeout() {
            ApiError::Timeout { server, source }
        } else {
            ApiError::Transport { server, source }
        }
    }

    fn unexpected(&self, what: &str, error: serde_json::Error) -> ApiError {
        ApiError::Unexpected {
            server: self.server().to_string(),
            what: what.to_string(),
            message: error.to_string(),
        }
    }
}

/// The explanation in an error answer: `detail` when the body has one, else the body,
/// else the status line.
///
/// `detail` is normally a string; a list (one entry per problem) is shown one per line.
pub fn detail_from_body(status: StatusCode, body: &str) -> String {
    let from_json = serde_json::from_str::<Json>(body)
        .ok()
        .and_then(|json| json.get("detail").cloned())
        .map(|detail| match detail {
            Json::String(text) => text,
            Json::Array(items) => items.iter().map(detail_item).collect::<Vec<_>>().join("\n"),
            other => other.to_string(),
        });
    match from_json {
        Some(detail) if !detail.is_empty() => detail,
        _ if !body.trim().is_empty() => body.trim().to_string(),
        _ => format!(
            "the server answered {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("without a reason")
        ),
    }
}

/// One entry of a `detail` list: a string, or an object with `loc` and `msg`.
fn detail_item(item: &Json) -> String {
    match item {
        Json::String(text) => text.clone(),
        Json::Object(fields) => match (fields.get("loc"), fields.get("msg")) {
            (Some(Json::Array(loc)), Some(Json::String(msg))) => {
                let path: Vec<String> = loc
                    .iter()
                    .map(|part| match part {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                format!("{}: {msg}", path.join("."))
            }
            (_, Some(Json::String(msg))) => msg.clone(),
            _ => item.to_string(),
        },
        other => other.to_string(),
    }
}

/// The innermost cause of an error: for a refused connection, the operating system's
/// words ("Connection refused (os error 111)") rather than the HTTP stack's wrappers.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Server-Sent Events frames read from chunks as they come: `event:` and `data:` lines
/// up to a blank line. Comments (keep-alives) and frames without data are skipped.
#[derive(Default)]
pub struct SseFrames {
    buffer: String,
}

impl SseFrames {
    /// Adds a chunk; returns the frames it completed, as (type, data).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let frame: String = self.buffer.drain(..end + 2).collect();
            let mut kind = "message".to_string();
            let mut data: Vec<&str> = Vec::new();
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    kind = value.trim_start().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if !data.is_empty() {
                frames.push((kind, data.join("\n")));
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sse_frames_are_read_across_chunks_and_comments_skipped() {
        let mut frames = super::SseFrames::default();
        assert!(
            frames
                .push(b": keep-alive\n\nevent: status\ndata: {\"na")
                .is_empty()
        );
        let read = frames.push(b"me\": \"m\"}\n\nevent: synced\ndata: {}\n\ndata: x\ndata: y\n\n");
        assert_eq!(
            read,
            [
                ("status".to_string(), r#"{"name": "m"}"#.to_string()),
                ("synced".to_string(), "{}".to_string()),
                ("message".to_string(), "x\ny".to_string()),
            ]
        );
    }

    use super::*;

    fn client(base: &str) -> ApiClient {
        ApiClient::new(Url::parse(base).unwrap(), Some("s3cret".into())).unwrap()
    }

    #[test]
    fn detail_string_is_shown_verbatim() {
        let body = r#"{"detail": "carls_model is declared by manifests/carls_model.yml: edit that file instead"}"#;
        assert_eq!(
            detail_from_body(StatusCode::CONFLICT, body),
            "carls_model is declared by manifests/carls_model.yml: edit that file instead"
        );
    }

    #[test]
    fn detail_list_is_shown_one_problem_per_line() {
        let body = r#"{"detail": ["scale: expected a whole number", {"loc": ["body", "port"], "msg": "too big"}]}"#;
        assert_eq!(
            detail_from_body(StatusCode::UNPROCESSABLE_ENTITY, body),
            "scale: expected a whole number\nbody.port: too big"
        );
    }

    #[test]
    fn body_without_detail_is_shown_as_is_or_as_the_status() {
        assert_eq!(
            detail_from_body(StatusCode::BAD_GATEWAY, "  upstream down \n"),
            "upstream down"
        );
        assert_eq!(
            detail_from_body(StatusCode::SERVICE_UNAVAILABLE, ""),
            "the server answered 503 Service Unavailable"
        );
    }

    #[test]
    fn refusals_exit_1_and_unreachable_servers_exit_3() {
        let refused = ApiError::Refused {
            status: 409,
            detail: "owned by a file".into(),
        };
        assert_eq!(refused.exit_code(), exit::FAILED);
        assert_eq!(refused.to_string(), "owned by a file");
        let unexpected = ApiError::Unexpected {
            server: "http://x".into(),
            what: "GET /".into(),
            message: "expected a list".into(),
        };
        assert_eq!(unexpected.exit_code(), exit::FAILED);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_and_names_the_server() {
        // Port 1 on loopback: nothing listens there on a test machine.
        let api = client("http://127.0.0.1:1");
        let error = api.statuses().await.unwrap_err();
        assert_eq!(error.exit_code(), exit::UNREACHABLE);
        assert_eq!(
            error.to_string(),
            "cannot connect to mlmodel at http://127.0.0.1:1: is the server running? Start it with: mlmodel serve"
        );
    }

    #[test]
    fn endpoint_urls_encode_names_and_keep_a_path_prefix() {
        let api = client("http://example.test:8080/mlmodel/");
        assert_eq!(
            api.url(&["a b", "status"], &[]).as_str(),
            "http://example.test:8080/mlmodel/a%20b/status"
        );
        let root = client("http://example.test:8080");
        assert_eq!(
            root.url(&[], &[("detail", "true".into())]).as_str(),
            "http://example.test:8080/?detail=true"
        );
        assert_eq!(root.server(), "http://example.test:8080");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let api = client("http://example.test");
        assert!(!format!("{api:?}").contains("s3cret"));
    }
}
