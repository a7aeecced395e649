//! Per-model events: what happened to a model and why, as Kubernetes events tell it.
//!
//! An event has a time, a type (Normal or Warning), a reason (one CamelCase word) and a
//! message. Repeats (the same type, reason and message) are collapsed into one event with
//! a count and the time of the last. A model keeps its newest [`MAX_PER_MODEL`].
//!
//! Two kinds of source, both pure functions here:
//! - what mlmodel did ([`of_action`], [`of_write_failure`], and the notes the reconciler
//!   and the API make when they record a deployment);
//! - what the swarm did that matters, read from the change between two statuses of a
//!   model ([`of_change`]): its phase, Swarm's rollout state, tasks failing with their
//!   error, replicas lost, nodes gone down.
//!
//! [`EventLog`] keeps them in the store (they survive restarts) and feeds them to
//! watchers. Recording never waits on the disk: the store is flushed every few seconds
//! by [`EventLog::flush_every`], so a crash loses at most those seconds of events.

use crate::reconcile::plan::Action;
use crate::reconcile::status::{ModelStatus, Phase};
use crate::sources::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::warn;

/// Events kept per model; the oldest go first.
pub const MAX_PER_MODEL: usize = 100;

/// Whether an event is routine or needs a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Routine: created, updated, available.
    Normal,
    /// Needs a look: failing tasks, a rollback, lost replicas.
    Warning,
}

/// An event before it is stamped and collapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub kind: EventType,
    /// One CamelCase word: `Created`, `TaskFailed`, `RolledBack`.
    pub reason: &'static str,
    /// What happened, in words.
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: EventType::Warning,
            reason,
            message: message.into(),
        }
    }

    /// A deployment recorded in the store.
    pub fn recorded(deployment_id: &str, image: &str, source: &str) -> Self {
        Self::normal(
            "Recorded",
            format!("recorded deployment {deployment_id} of {image} (from {source})"),
        )
    }

    /// Live services taken over with a record rebuilt from their labels.
    pub fn adopted(deployment_id: &str) -> Self {
        Self::normal(
            "Adopted",
            format!(
                "adopted live services the store had no record of, as deployment {deployment_id}"
            ),
        )
    }

    /// A rollback asked through the API.
    pub fn rollback_requested(to: &str, deployment_id: &str) -> Self {
        Self::normal(
            "RollbackRequested",
            format!(
                "rolled back to the spec of deployment {to}, as new deployment {deployment_id}"
            ),
        )
    }

    /// A stop (and maybe a wipe of the history) asked through the API.
    pub fn stopped(cleared: bool) -> Self {
        let what = if cleared {
            "stopped and its history cleared by request"
        } else {
            "stopped by request"
        };
        Self::normal("Stopped", what)
    }
}

/// A stamped event, as kept and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it last happened (unix seconds).
    pub time: f64,
    /// When it first happened (unix seconds).
    pub first_time: f64,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// One CamelCase word.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// How many times it happened.
    pub count: u64,
    /// The deployment the model was converging to then, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

/// An event with its model, as watchers get it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEvent {
    /// The model.
    pub model: String,
    /// The event, as it stands after this occurrence.
    #[serde(flatten)]
    pub event: Event,
}

/// Adds `note` to `events`: a repeat of an event kept (same type, reason and message)
/// counts one more and moves to the end; anything else is appended. The oldest go beyond
/// [`MAX_PER_MODEL`]. Returns the event as it now stands.
pub fn merge(events: &mut Vec<Event>, note: Note, deployment_id: Option<&str>, now: f64) -> Event {
    add(
        events,
        Event {
            time: now,
            first_time: now,
            kind: note.kind,
            reason: note.reason.to_string(),
            message: note.message,
            count: 1,
            deployment_id: deployment_id.map(str::to_string),
        },
    )
}

/// Adds `event` to `events` as [`merge`] adds a note: a repeat of one kept adds its
/// count to it, takes its time (and its deployment, if it has one) and moves to the end.
fn add(events: &mut Vec<Event>, event: Event) -> Event {
    let repeat = events.iter().position(|e| {
        e.kind == event.kind && e.reason == event.reason && e.message == event.message
    });
    let event = match repeat {
        Some(at) => {
            let kept = events.remove(at);
            Event {
                count: kept.count + event.count,
                first_time: kept.first_time.min(event.first_time),
                deployment_id: event.deployment_id.or(kept.deployment_id),
                ..event
            }
        }
        None => event,
    };
    events.push(event.clone());
    if events.len() > MAX_PER_MODEL {
        let excess = events.len() - MAX_PER_MODEL;
        events.drain(..excess);
    }
    event
}

/// What a successful write did, for the model's events (`None`: not worth one).
pub fn of_action(action: &Action) -> Option<Note> {
    match action {
        Action::CreateNetwork { network } => Some(Note::normal(
            "NetworkCreated",
            format!("created network {}", network.name),
        )),
        Action::EnsureObject { .. } => None,
        Action::CreateService { spec } => Some(Note::normal(
            "Created",
            format!(
                "created service {}",
                spec.name.as_deref().unwrap_or_default()
            ),
        )),
        Action::UpdateService { spec, reason, .. } => Some(Note::normal(
            "Updated",
            format!(
                "updated service {}: {reason}",
                spec.name.as_deref().unwrap_or_default()
            ),
        )),
        Action::RemoveService { name, reason, .. } => Some(Note::normal(
            "Removed",
            format!("removed service {name}: {reason}"),
        )),
    }
}

/// A write that failed (it is retried with backoff).
pub fn of_write_failure(action: &Action, error: &dyn std::fmt::Display) -> Note {
    Note::warning(
        "WriteFailed",
        format!("cannot write {}: {error}", action.target()),
    )
}

/// What changed between two statuses of a model that is worth an event.
pub fn of_change(old: &ModelStatus, new: &ModelStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    rollout_change(old, new, &mut notes);
    failing_tasks(old, new, &mut notes);
    let gone: Vec<&String> = new
        .nodes_down
        .iter()
        .filter(|node| !old.nodes_down.contains(node))
        .collect();
    for node in gone {
        notes.push(Note::warning(
            "NodeDown",
            format!("node {node} is down: its replicas will be rescheduled"),
        ));
    }
    // Fewer than desired, from at least as many: an old replica that goes once a
    // rollout's new one runs (3/2 to 2/2) is no loss.
    if new.replicas_running < old.replicas_running
        && new.replicas_running < new.replicas_desired
        && new.replicas_desired == old.replicas_desired
        && old.replicas_running >= old.replicas_desired
        && new.phase != Phase::Removed
    {
        notes.push(Note::warning(
            "ReplicasLost",
            format!(
                "{}/{} replicas run (were {}/{})",
                new.replicas_running,
                new.replicas_desired,
                old.replicas_running,
                old.replicas_desired
            ),
        ));
    }
    if new.phase != old.phase {
        notes.push(phase_note(new));
    }
    notes
}

/// The event of reaching `new`'s phase.
fn phase_note(new: &ModelStatus) -> Note {
    let deployment = new.deployment_id.as_deref().unwrap_or("(none)");
    let message = if new.message.is_empty() {
        match new.phase {
            Phase::Available => format!(
                "{}/{} replicas run deployment {deployment}",
                new.replicas_running, new.replicas_desired
            ),
            Phase::Progressing => format!("rolling out deployment {deployment}"),
            Phase::Pending => "waiting for its services".to_string(),
            Phase::Removed => "its services are gone".to_string(),
            Phase::Degraded | Phase::Failed => "no message".to_string(),
        }
    } else {
        new.message.clone()
    };
    match new.phase {
        Phase::Degraded | Phase::Failed => Note::warning(new.phase.as_str(), message),
        _ => Note::normal(new.phase.as_str(), message),
    }
}

/// Swarm's rollout state changing: started, completed, paused, rolled back.
fn rollout_change(old: &ModelStatus, new: &ModelStatus, notes: &mut Vec<Note>) {
    let state = |status: &ModelStatus| status.rollout.as_ref().map(|r| r.state.clone());
    let Some(rollout) = new.rollout.as_ref().filter(|_| state(old) != state(new)) else {
        return;
    };
    let said = if rollout.message.is_empty() {
        String::new()
    } else {
        format!(": {}", rollout.message)
    };
    let service = &rollout.service;
    notes.push(match rollout.state.as_str() {
        "updating" => Note::normal(
            "RolloutStarted",
            format!("Swarm started rolling out service {service}{said}"),
        ),
        "completed" => Note::normal(
            "RolloutCompleted",
            format!("Swarm completed the rollout of service {service}{said}"),
        ),
        "paused" => Note::warning(
            "RolloutPaused",
            format!("Swarm paused the rollout of service {service}{said}"),
        ),
        "rollback_started" => Note::warning(
            "RollbackStarted",
            format!("Swarm is rolling service {service} back{said}"),
        ),
        "rollback_paused" => Note::warning(
            "RollbackPaused",
            format!("Swarm paused rolling service {service} back{said}"),
        ),
        "rollback_completed" => Note::warning(
            "RolledBack",
            format!("Swarm rolled service {service} back to its previous spec{said}"),
        ),
        other => Note::normal(
            "Rollout",
            format!("service {service}'s rollout is {other}{said}"),
        ),
    });
}

/// Tasks showing an error they did not show before.
fn failing_tasks(old: &ModelStatus, new: &ModelStatus, notes: &mut Vec<Note>) {
    let before: BTreeSet<(&str, &str)> = old
        .tasks
        .iter()
        .filter(|t| !t.error.is_empty())
        .map(|t| (t.name.as_str(), t.error.as_str()))
        .collect();
    for task in new.tasks.iter().filter(|t| !t.error.is_empty()) {
        if before.contains(&(task.name.as_str(), task.error.as_str())) {
            continue;
        }
        let on = if task.node.is_empty() {
            String::new()
        } else {
            format!(" on {}", task.node)
        };
        notes.push(Note::warning(
            "TaskFailed",
            format!(
                "task {}{on} is {}: {}",
                task.name,
                task.state.to_lowercase(),
                task.error
            ),
        ));
    }
}

/// Events the store has not taken.
struct Unsaved {
    events: Vec<Event>,
    /// Whether the store's own events of the model are in `events` (its write failed);
    /// if not (it could not be read), they are added before anything is written, so that
    /// a write never replaces them.
    whole: bool,
}

/// The store key events of every model are kept under is the model's name; the value
/// is their JSON array, oldest first.
pub struct EventLog {
    store: Store,
    /// The events of models the store could not take: served, and added to, until a
    /// write succeeds. (Written events are read back from the store; kept here too, they
    /// would hold every model's events in memory.)
    unsaved: Mutex<HashMap<String, Unsaved>>,
    feed: broadcast::Sender<Arc<ModelEvent>>,
    /// Written since the last flush.
    dirty: AtomicBool,
    /// Events recorded (repeats included).
    pub recorded: AtomicU64,
    /// Events that could not be written to the store (they are still served and fed
    /// until the process ends).
    pub write_errors: AtomicU64,
}

impl EventLog {
    /// A log kept in `store`.
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            unsaved: Mutex::new(HashMap::new()),
            feed: broadcast::channel(1024).0,
            dirty: AtomicBool::new(false),
            recorded: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        })
    }

    /// Records `notes` about `model`, converging to `deployment_id`. Never waits on the
    /// disk and never fails: a store that cannot take them is counted and logged.
    pub fn record(&self, model: &str, notes: Vec<Note>, deployment_id: Option<&str>) {
        if notes.is_empty() {
            return;
        }
        let now = crate::desired::record::now_unix_seconds();
        // Held while reading, merging and writing: records of one model never interleave.
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = unsaved.remove(model);
        let base = match held.take_if(|h| h.whole) {
            Some(whole) => Ok(whole.events),
            None => self.read(model).map(|mut stored| {
                for event in held.take().into_iter().flat_map(|h| h.events) {
                    add(&mut stored, event);
                }
                stored
            }),
        };
        let (mut events, unreadable) = match base {
            Ok(events) => (events, None),
            Err(error) => (held.map(|h| h.events).unwrap_or_default(), Some(error)),
        };
        let mut fed = Vec::with_capacity(notes.len());
        for note in notes {
            let event = merge(&mut events, note, deployment_id, now);
            self.recorded.fetch_add(1, Ordering::Relaxed);
            fed.push(event);
        }
        let whole = unreadable.is_none();
        let written = match unreadable {
            None => self
                .store
                .put_events(model, &serde_json::to_vec(&events).unwrap_or_default()),
            Some(error) => Err(error),
        };
        if let Err(error) = written {
            self.failed_write(model, &error);
            unsaved.insert(model.to_string(), Unsaved { events, whole });
        } else {
            self.dirty.store(true, Ordering::Relaxed);
        }
        drop(unsaved);
        for event in fed {
            let _ = self.feed.send(Arc::new(ModelEvent {
                model: model.to_string(),
                event,
            }));
        }
    }

    fn failed_write(&self, model: &str, error: &StoreError) {
        if self.write_errors.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!(model, %error, "cannot keep events in the store; they are served from memory until the store takes writes again");
        }
    }

    /// A model's events, oldest first.
    pub fn list(&self, model: &str) -> Result<Vec<Event>, StoreError> {
        let held = self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .map(|h| (h.events.clone(), h.whole));
        match held {
            Some((events, true)) => Ok(events),
            Some((events, false)) => {
                // The store's own, if it can be read now, then those it has not taken.
                let mut all = self.read(model).unwrap_or_default();
                for event in events {
                    add(&mut all, event);
                }
                Ok(all)
            }
            None => self.read(model),
        }
    }

    fn read(&self, model: &str) -> Result<Vec<Event>, StoreError> {
        let Some(bytes) = self.store.events(model)? else {
            return Ok(Vec::new());
        };
        // A value this version cannot read (written by another) starts the list anew.
        Ok(serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// New events as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ModelEvent>> {
        self.feed.subscribe()
    }

    /// Flushes what was recorded since the last flush.
    pub async fn flush(&self) {
        if self.dirty.swap(false, Ordering::Relaxed)
            && let Err(error) = self.store.flush().await
        {
            self.dirty.store(true, Ordering::Relaxed);
            self.failed_write("(all)", &error);
        }
    }

    /// Flushes every `period` until `shutdown`, and once more then.
    pub async fn flush_every(
        self: Arc<Self>,
        period: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => self.flush().await,
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests;
