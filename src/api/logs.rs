//! `GET /{name}/logs`: a model's output, read through the Docker API task by task, each
//! line prefixed with its task the way `docker service logs` prefixes it.
//!
//! Reading logs is a Docker call per task, so it is bounded: at most [`MAX_TAIL`] lines
//! per task, at most [`MAX_FOLLOWS`] followed streams at once (another answers 429), and
//! every stream ends at shutdown. The reconciler's own calls never wait for these.

use super::ApiState;
use super::errors::ApiError;
use crate::desired::units::parse_duration;
use crate::reconcile::observe::Observed;
use crate::swarm::{LogChunk, LogQuery, SwarmError};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use std::collections::HashMap;

/// The most lines read per task, and what `tail` is when not given.
pub const MAX_TAIL: u64 = 10_000;
/// The most log streams followed at once.
pub const MAX_FOLLOWS: usize = 16;
/// How often a followed stream checks that its model still has services.
const GONE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the request's parameters: `tail` (lines per task, capped), `since` (a Go
/// duration back from `now`, or an RFC 3339 time), `follow` and `timestamps`.
pub fn query(params: &HashMap<String, String>, now_unix: i64) -> Result<LogQuery, ApiError> {
    let flag = |key: &str| Ok::<_, ApiError>(super::handlers::flag(params, key)?.unwrap_or(false));
    let tail = match params.get("tail").map(String::as_str) {
        None | Some("all") | Some("-1") => MAX_TAIL,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "tail: expected a number of lines (or all), found {text:?}"
                ))
            })?
            .min(MAX_TAIL),
    };
    let since = match params.get("since").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(since(text, now_unix)?),
    };
    Ok(LogQuery {
        follow: flag("follow")?,
        tail: Some(tail),
        since,
        timestamps: flag("timestamps")?,
    })
}

/// `since`: a duration back from now (`10m`, `1h30m`) or an RFC 3339 time.
fn since(text: &str, now_unix: i64) -> Result<i64, ApiError> {
    if let Ok(back) = parse_duration(text) {
        return Ok(now_unix.saturating_sub(back.as_secs() as i64));
    }
    text.parse::<jiff::Timestamp>()
        .map(|time| time.as_second())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "since: expected a duration (10m, 1h30m) or an RFC 3339 time, found {text:?}"
            ))
        })
}

/// The tasks of `model` to read, with the prefix of their lines:
/// `service.slot.task@node` (`service.node.task@node` for a global service), the task id
/// cut to 12 characters as `docker service logs` cuts it.
pub fn sources(observed: &Observed, instance: &str, model: &str) -> Vec<(String, String)> {
    let mut sources = Vec::new();
    for service in observed.owned_by(instance, model) {
        let Some(tasks) = observed.tasks.get(&service.id) else {
            continue;
        };
        let mut tasks: Vec<_> = tasks.iter().collect();
        tasks.sort_by_key(|t| (t.slot, t.id.clone()));
        for task in tasks {
            let node_id = task.node_id.clone().unwrap_or_default();
            let node = observed
                .nodes
                .get(&node_id)
                .map_or(node_id.clone(), |n| n.hostname.clone());
            let slot = task.slot.map_or(node_id.clone(), |s| s.to_string());
            let short: String = task.id.chars().take(12).collect();
            let prefix = format!("{}.{slot}.{short}@{node}", service.name());
            sources.push((task.id.clone(), prefix));
        }
    }
    sources
}

/// Turns a task's chunks into whole lines, each prefixed: `prefix    | line`.
#[derive(Debug)]
pub struct Lines {
    prefix: String,
    pending: Vec<u8>,
}

impl Lines {
    /// Lines of the task shown as `prefix`.
    pub fn new(prefix: String) -> Self {
        Self {
            prefix,
            pending: Vec::new(),
        }
    }

    /// The whole lines `chunk` completes, prefixed; a partial line waits for the next.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Bytes::new();
        };
        let rest = self.pending.split_off(last + 1);
        let whole = std::mem::replace(&mut self.pending, rest);
        let mut out = Vec::with_capacity(whole.len() + 16);
        for line in whole.split_inclusive(|b| *b == b'\n') {
            self.prefixed(&mut out, line);
        }
        Bytes::from(out)
    }

    /// What is left of a last line without its newline, ended.
    pub fn finish(&mut self) -> Bytes {
        if self.pending.is_empty() {
            return Bytes::new();
        }
        let mut line = std::mem::take(&mut self.pending);
        line.push(b'\n');
        let mut out = Vec::new();
        self.prefixed(&mut out, &line);
        Bytes::from(out)
    }

    fn prefixed(&self, out: &mut Vec<u8>, line: &[u8]) {
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(b"    | ");
        out.extend_from_slice(line);
    }
}

/// One task's output as prefixed lines; a read error becomes a last line saying so.
fn task_lines(
    chunks: BoxStream<'static, Result<LogChunk, SwarmError>>,
    prefix: String,
) -> BoxStream<'static, Bytes> {
    let lines = Lines::new(prefix);
    stream::unfold(Some((chunks, lines)), |state| async move {
        let (mut chunks, mut lines) = state?;
        loop {
            match chunks.next().await {
                Some(Ok(chunk)) => {
                    let out = lines.feed(&chunk.text);
                    if !out.is_empty() {
                        return Some((out, Some((chunks, lines))));
                    }
                }
                Some(Err(error)) => {
                    let mut out = lines.finish().to_vec();
                    out.extend_from_slice(
                        &lines.feed(format!("(its logs could not be read: {error})\n").as_bytes()),
                    );
                    return Some((Bytes::from(out), None));
                }
                None => {
                    let out = lines.finish();
                    return (!out.is_empty()).then_some((out, None));
                }
            }
        }
    })
    .boxed()
}

/// `GET /{name}/logs?tail=N&since=DURATION&follow=BOOL&timestamps=BOOL`.
pub async fn logs(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if state.readers.status.get(&name).is_none() {
        return Err(ApiError::NotFound(format!("model {name:?} is not known")));
    }
    let now = crate::desired::record::now_unix_seconds() as i64;
    let query = query(&params, now)?;
    let permit = if query.follow {
        Some(
            state
                .log_follows
                .clone()
                .try_acquire_owned()
                .map_err(|_| {
                    ApiError::TooManyRequests(format!(
                        "{MAX_FOLLOWS} log streams are followed already, the most at once: close one, or read without follow"
                    ))
                })?,
        )
    } else {
        None
    };
    let observed = state.readers.observed.get();
    let instance = state.readers.instance.name.clone();
    let swarm = state.readers.swarm.clone();
    let mut known = std::collections::HashSet::new();
    let mut all = stream::SelectAll::new();
    for (task, prefix) in sources(&observed, &instance, &name) {
        all.push(task_lines(swarm.task_logs(&task, &query), prefix));
        known.insert(task);
    }
    let shutdown = state.shutdown.clone();
    let body: BoxStream<'static, Bytes> = match permit {
        None => all.take_until(shutdown.cancelled_owned()).boxed(),
        Some(permit) => {
            // Followed: a producer merges the tasks' lines, and every GONE_CHECK adds the
            // tasks that appeared since (a new replica, a rollout) and ends once the model
            // has no services left (followed logs of removed tasks do not always end by
            // themselves). It stops when the client goes away or at shutdown, and the
            // permit goes with it.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
            let cache = state.readers.observed.clone();
            let since_now = LogQuery {
                tail: None,
                ..query.clone()
            };
            tokio::spawn(async move {
                let _permit = permit;
                let mut tick = tokio::time::interval(GONE_CHECK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tx.closed() => break,
                        Some(bytes) = all.next(), if !all.is_empty() => {
                            if tx.send(bytes).await.is_err() {
                                break;
                            }
                        }
                        _ = tick.tick() => {
                            let observed = cache.get();
                            if observed.owned_by(&instance, &name).is_empty() {
                                break;
                            }
                            for (task, prefix) in sources(&observed, &instance, &name) {
                                if known.insert(task.clone()) {
                                    all.push(task_lines(swarm.task_logs(&task, &since_now), prefix));
                                }
                            }
                        }
                    }
                }
            });
            stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body.map(Ok::<_, std::convert::Infallible>)),
    )
        .into_response())
}

#[cfg(test)]
mod tests;
