//! The watch stream: `GET /events` (and `GET /?watch=true`) as Server-Sent Events.
//!
//! A watcher first gets every model's status (`event: status`, one per model) and a
//! `synced` marker, then each change as the reconciler makes it: a model's new status
//! (`status`), a model gone from the listing (`removed`), and the models' events as they
//! are recorded (`event`). `?name=NAME` narrows the stream to one model;
//! `?backlog=true` first sends the events kept so far, oldest first. A watcher that
//! falls too far behind is sent every status again, then `synced`, as at the start.
//! Comments keep idle connections open through proxies; the stream ends at shutdown.
//!
//! Reads only the caches: a watcher costs no Docker call.

use super::handlers::flag;
use super::{ApiError, ApiState};
use crate::reconcile::events::ModelEvent;
use crate::reconcile::status::{Change, ModelStatus};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Watchers at once; another gets 429.
pub const MAX_WATCHES: usize = 64;

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /events?name=NAME`: the watch stream.
pub async fn events(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    stream_for(&state, &params)
}

/// The stream for `GET /?watch=true`, when the flag is set.
pub fn watch_flag(
    state: &ApiState,
    params: &HashMap<String, String>,
) -> Result<Option<Response>, ApiError> {
    if flag(params, "watch")? != Some(true) {
        return Ok(None);
    }
    stream_for(state, params).map(Some)
}

fn stream_for(state: &ApiState, params: &HashMap<String, String>) -> Result<Response, ApiError> {
    let name = params.get("name").cloned();
    let backlog = flag(params, "backlog")?.unwrap_or(false);
    let permit = state.watches.clone().try_acquire_owned().map_err(|_| {
        ApiError::TooManyRequests(format!(
            "{MAX_WATCHES} watch streams are open already: close one or retry later"
        ))
    })?;
    let watcher = Watcher {
        // Subscribed before the snapshot is taken: no change falls between them.
        statuses: state.readers.status.subscribe(),
        events: state.readers.events.subscribe(),
        state: state.clone(),
        name,
        queue: VecDeque::new(),
        _permit: permit,
    };
    let stream = watcher.into_stream(backlog);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

struct Watcher {
    statuses: broadcast::Receiver<Change>,
    events: broadcast::Receiver<Arc<ModelEvent>>,
    state: ApiState,
    name: Option<String>,
    /// Frames ready to send.
    queue: VecDeque<Event>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Watcher {
    fn into_stream(mut self, backlog: bool) -> impl Stream<Item = Result<Event, Infallible>> {
        if backlog {
            self.backlog();
        }
        self.snapshot();
        stream::unfold(self, |mut watcher| async move {
            let frame = watcher.next().await?;
            Some((Ok(frame), watcher))
        })
    }

    /// Every status (of the model asked for), then `synced`.
    fn snapshot(&mut self) {
        let snapshot = self.state.readers.status.snapshot();
        let mut models = 0;
        for status in snapshot.models.values() {
            if self.wants(&status.name) {
                models += 1;
                self.queue.push_back(status_frame(status));
            }
        }
        self.queue.push_back(
            Event::default()
                .event("synced")
                .data(serde_json::json!({"models": models}).to_string()),
        );
    }

    /// The events kept of every model with a status or records (or of the one asked
    /// for), oldest first. Read after subscribing: an event recorded meanwhile may come twice (the
    /// same `time` and `count`), never not at all.
    fn backlog(&mut self) {
        // Every model with a status, and every model with records: a deployment just
        // recorded has its `Recorded` event before its first status.
        let names: BTreeSet<String> = match &self.name {
            Some(name) => BTreeSet::from([name.clone()]),
            None => {
                let readers = &self.state.readers;
                let mut names: BTreeSet<String> =
                    readers.status.snapshot().models.into_keys().collect();
                names.extend(readers.store.names().unwrap_or_default());
                names
            }
        };
        let mut kept: Vec<ModelEvent> = names
            .into_iter()
            .flat_map(|model| {
                let events = self.state.readers.events.list(&model).unwrap_or_default();
                events.into_iter().map(move |event| ModelEvent {
                    model: model.clone(),
                    event,
                })
            })
            .collect();
        kept.sort_by(|a, b| a.event.time.total_cmp(&b.event.time));
        for event in kept {
            let data = serde_json::to_string(&event).unwrap_or_default();
            self.queue
                .push_back(Event::default().event("event").data(data));
        }
    }

    fn wants(&self, model: &str) -> bool {
        self.name.as_deref().is_none_or(|name| name == model)
    }

    /// The next frame; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(frame) = self.queue.pop_front() {
                return Some(frame);
            }
            tokio::select! {
                () = self.state.shutdown.cancelled() => return None,
                change = self.statuses.recv() => match change {
                    Ok(Change::Status(status)) if self.wants(&status.name) => {
                        self.queue.push_back(status_frame(&status));
                    }
                    Ok(Change::Removed(name)) if self.wants(&name) => {
                        self.queue.push_back(
                            Event::default()
                                .event("removed")
                                .data(serde_json::json!({"name": name}).to_string()),
                        );
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.snapshot(),
                    Err(RecvError::Closed) => return None,
                },
                event = self.events.recv() => match event {
                    Ok(event) if self.wants(&event.model) => {
                        let data = serde_json::to_string(&*event).unwrap_or_default();
                        self.queue.push_back(Event::default().event("event").data(data));
                    }
                    // Missed events are in each model's list.
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn status_frame(status: &ModelStatus) -> Event {
    let data = serde_json::to_string(status).unwrap_or_default();
    Event::default().event("status").data(data)
}
