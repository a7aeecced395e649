//! At most one mlmodel of an instance acts at a time: a lease held in Swarm itself, like
//! a Kubernetes Lease.
//!
//! The lease is a service of no replicas, `<instance>-lease`, whose labels name the
//! holder, its API address and a term. Every change to a service bumps its version
//! index, and an update must carry the index last read, so an update is a
//! compare-and-swap: of two copies racing, one gets "update out of sequence".
//!
//! - The holder renews every third of the lease duration (an update, bumping the index).
//!   It acts only until one duration after the start of its last successful renewal, so
//!   a copy cut off from the managers stops writing before anyone may take over.
//! - Another copy takes over only after it has seen the same index for a whole duration
//!   on its own monotonic clock (clocks of different nodes are never compared), then
//!   writes itself in with a new term, by compare-and-swap.
//! - A copy that does not hold the lease is a standby: it observes and reports, refuses
//!   API writes with 503 naming the active copy, and makes no Docker or store writes.
//!
//! [`step`] decides from what was read, as a value; [`run`] carries it out in a loop.

use crate::swarm::{ObservedService, Swarm, SwarmError};
use bollard::models::TaskSpecContainerSpec;
use bollard::models::{ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The label naming the instance a lease service is for.
pub const LEASE: &str = "mlmodel.lease";
/// The label naming the holder.
pub const HOLDER: &str = "mlmodel.lease.holder";
/// The label with the holder's API address.
pub const ADDRESS: &str = "mlmodel.lease.address";
/// The label with the term: one more at each change of holder.
pub const TERM: &str = "mlmodel.lease.term";
/// The label counting renewals within a term.
pub const RENEWALS: &str = "mlmodel.lease.renewals";
/// The label with the lease's recent terms: a JSON list of [`Turn`]s, oldest first.
pub const TURNS: &str = "mlmodel.lease.history";
/// How many terms [`TURNS`] keeps.
pub const TURNS_KEPT: usize = 20;

/// One term of the lease: who took it, when (by the taker's clock), and from whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    /// The term.
    pub term: u64,
    /// Who took the lease.
    pub holder: String,
    /// When, in RFC 3339 by the taker's clock.
    pub at: String,
    /// The holder it was taken from ("" if it was free or new).
    #[serde(default)]
    pub from: String,
}

/// The lease's recent terms as its label holds them (an unreadable label reads as none).
pub fn turns_of(service: &ObservedService) -> Vec<Turn> {
    service
        .label(TURNS)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// Who this copy is, and the lease it competes for.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The lease service's name.
    pub service: String,
    /// The instance it is for.
    pub instance: String,
    /// This copy's identity (`host:port/pid`).
    pub identity: String,
    /// This copy's API address, shown by standbys.
    pub address: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    /// The lease of `instance` for a copy with this identity and address.
    pub fn new(instance: &str, identity: String, address: String, duration: Duration) -> Self {
        Self {
            service: format!("{instance}-lease"),
            instance: instance.to_string(),
            identity,
            address,
            duration,
        }
    }
}

/// The lease as read from Swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The service's id.
    pub id: String,
    /// Its version index.
    pub version: u64,
    /// The holder's identity.
    pub holder: String,
    /// The holder's API address.
    pub address: String,
    /// The term.
    pub term: u64,
    /// Renewals in this term.
    pub renewals: u64,
    /// The recent terms.
    pub turns: Vec<Turn>,
}

impl Record {
    /// Reads a lease service; `None` if it is not one.
    pub fn of(service: &ObservedService) -> Option<Record> {
        service.label(LEASE)?;
        let number = |key| service.label(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(Record {
            id: service.id.clone(),
            version: service.version,
            holder: service.label(HOLDER).unwrap_or_default().to_string(),
            address: service.label(ADDRESS).unwrap_or_default().to_string(),
            term: number(TERM),
            renewals: number(RENEWALS),
            turns: turns_of(service),
        })
    }
}

/// What a copy remembers between two reads of the lease.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// The version index last read, and when this copy first read it.
    pub seen: Option<(u64, Instant)>,
}

/// What to do after reading the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, holding it in term 1.
    Create,
    /// It is ours: renew it (same term).
    Renew {
        /// The record read.
        record: Record,
    },
    /// Another's lease has not changed for a whole duration: take it over (next term).
    TakeOver {
        /// The record read.
        record: Record,
    },
    /// Another holds it: wait.
    Wait {
        /// The record read.
        record: Record,
        /// Time left before it may be taken over, as this copy counts.
        expires_in: Duration,
    },
}

/// Decides from the lease read (`None`: no lease service) and what this copy saw before.
pub fn step(
    read: Option<&Record>,
    identity: &str,
    memory: &mut Memory,
    now: Instant,
    duration: Duration,
) -> Step {
    let Some(record) = read else {
        memory.seen = None;
        return Step::Create;
    };
    if record.holder == identity {
        memory.seen = None;
        return Step::Renew {
            record: record.clone(),
        };
    }
    let since = match memory.seen {
        Some((version, since)) if version == record.version => since,
        _ => {
            memory.seen = Some((record.version, now));
            now
        }
    };
    let unchanged = now.saturating_duration_since(since);
    if unchanged >= duration || record.holder.is_empty() {
        Step::TakeOver {
            record: record.clone(),
        }
    } else {
        Step::Wait {
            record: record.clone(),
            expires_in: duration - unchanged,
        }
    }
}

/// Whether this copy may write now, shared by the reconciler and the API.
#[derive(Debug)]
pub struct LeaseGate {
    enabled: bool,
    /// Whether a copy that takes the lease must first be made ready (its store synced
    /// from the history kept in Swarm) before it writes.
    needs_ready: bool,
    state: Mutex<GateState>,
}

#[derive(Debug, Default, Clone)]
struct GateState {
    /// The lease is held until then.
    until: Option<Instant>,
    /// The term held, if any.
    term: u64,
    /// Whether this copy is ready to write in the term held.
    ready: bool,
    /// The active copy as last read, when it is another.
    active: Option<(String, String)>,
}

impl LeaseGate {
    /// A gate that is always open: no lease (a single `mlmodel serve`).
    pub fn open() -> Arc<Self> {
        Arc::new(Self {
            enabled: false,
            needs_ready: false,
            state: Mutex::default(),
        })
    }

    /// A gate closed until the lease is acquired.
    pub fn leased() -> Arc<Self> {
        Arc::new(Self {
            enabled: true,
            needs_ready: false,
            state: Mutex::default(),
        })
    }

    /// A gate closed until the lease is acquired and then [`LeaseGate::mark_ready`]
    /// says this copy is ready for the term (see [`run`]'s `prepare`).
    pub fn leased_after_prepare() -> Arc<Self> {
        Arc::new(Self {
            enabled: true,
            needs_ready: true,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether writes are allowed now.
    pub fn may_write(&self) -> bool {
        if !self.enabled {
            return true;
        }
        let state = self.lock();
        state.ready && state.until.is_some_and(|until| Instant::now() < until)
    }

    /// The term, while this copy holds the lease (ready or not).
    pub fn held_term(&self) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let state = self.lock();
        state
            .until
            .is_some_and(|until| Instant::now() < until)
            .then_some(state.term)
    }

    /// This copy is ready to write in `term` (if it still holds that term).
    pub fn mark_ready(&self, term: u64) {
        let mut state = self.lock();
        if state.term == term {
            state.ready = true;
        }
    }

    /// Why not, in words naming the active copy, when writes are not allowed.
    pub fn standby(&self) -> Option<String> {
        if self.may_write() {
            return None;
        }
        if self.held_term().is_some() {
            return Some(
                "this mlmodel holds the lease and is still reading the history kept in Swarm: it writes once that is done".to_string(),
            );
        }
        let state = self.lock().clone();
        Some(match state.active {
            Some((holder, address)) if !address.is_empty() => {
                format!("this mlmodel is a standby: the active one is {holder}, at {address}")
            }
            Some((holder, _)) => format!("this mlmodel is a standby: the active one is {holder}"),
            None => "this mlmodel is a standby: it does not hold the lease (yet)".to_string(),
        })
    }

    /// The term held, if writes are allowed under a lease.
    pub fn term(&self) -> Option<u64> {
        (self.enabled && self.may_write()).then(|| self.lock().term)
    }

    fn hold(&self, term: u64, until: Instant) -> bool {
        let mut state = self.lock();
        let was = state.until.is_some_and(|u| Instant::now() < u);
        let acquired = !was || state.term != term;
        // A new term needs preparing again; the same term, taken back, keeps its state.
        if state.term != term {
            state.ready = !self.needs_ready;
        }
        state.until = Some(until);
        state.term = term;
        state.active = None;
        acquired
    }

    fn wait(&self, record: &Record) {
        let mut state = self.lock();
        state.until = None;
        state.active = Some((record.holder.clone(), record.address.clone()));
    }
}

/// The lease service's spec: no replicas, an image that is never pulled, the labels.
fn spec(config: &LeaseConfig, term: u64, renewals: u64, turns: &[Turn]) -> ServiceSpec {
    let labels = HashMap::from([
        (LEASE.to_string(), config.instance.clone()),
        (HOLDER.to_string(), config.identity.clone()),
        (ADDRESS.to_string(), config.address.clone()),
        (TERM.to_string(), term.to_string()),
        (RENEWALS.to_string(), renewals.to_string()),
        (
            TURNS.to_string(),
            serde_json::to_string(turns).unwrap_or_else(|_| "[]".to_string()),
        ),
    ]);
    ServiceSpec {
        name: Some(config.service.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some("mlmodel-lease:never-run".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `turns` with this copy's taking of `term` from `from` added, the oldest dropped
/// beyond [`TURNS_KEPT`].
fn next_turns(turns: &[Turn], config: &LeaseConfig, term: u64, from: &str) -> Vec<Turn> {
    let mut next: Vec<Turn> = turns.to_vec();
    next.push(Turn {
        term,
        holder: config.identity.clone(),
        at: jiff::Timestamp::now().to_string(),
        from: from.to_string(),
    });
    let excess = next.len().saturating_sub(TURNS_KEPT);
    next.drain(..excess);
    next
}

/// Reads the lease service; `None` if there is none.
async fn read(swarm: &dyn Swarm, config: &LeaseConfig) -> Result<Option<Record>, SwarmError> {
    Ok(swarm
        .inspect_service(&config.service)
        .await?
        .as_ref()
        .and_then(Record::of))
}

/// One round: read, decide, write; updates the gate. Returns whether this copy just
/// became the active one.
pub async fn round(
    swarm: &dyn Swarm,
    config: &LeaseConfig,
    gate: &LeaseGate,
    memory: &mut Memory,
) -> Result<bool, SwarmError> {
    let started = Instant::now();
    let read = read(swarm, config).await?;
    let decided = step(
        read.as_ref(),
        &config.identity,
        memory,
        Instant::now(),
        config.duration,
    );
    let until = started + config.duration;
    let written = match &decided {
        Step::Create => swarm
            .create_service(&spec(config, 1, 0, &next_turns(&[], config, 1, "")))
            .await
            .map(|_| 1),
        Step::Renew { record } => swarm
            .update_service(
                &record.id,
                record.version,
                &spec(config, record.term, record.renewals + 1, &record.turns),
            )
            .await
            .map(|()| record.term),
        Step::TakeOver { record } => {
            let turns = next_turns(&record.turns, config, record.term + 1, &record.holder);
            swarm
                .update_service(
                    &record.id,
                    record.version,
                    &spec(config, record.term + 1, 0, &turns),
                )
                .await
                .map(|()| record.term + 1)
        }
        Step::Wait { record, .. } => {
            gate.wait(record);
            return Ok(false);
        }
    };
    match written {
        Ok(term) => {
            let acquired = gate.hold(term, until);
            if acquired {
                info!(identity = %config.identity, term, lease = %config.service, "acquired the lease: this mlmodel is the active one");
            }
            Ok(acquired)
        }
        // Another copy wrote first: read again at the next round.
        Err(SwarmError::OutOfSequence { .. } | SwarmError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs rounds every third of the lease duration until `shutdown`. When this copy
/// holds the lease but is not ready yet (see [`LeaseGate::leased_after_prepare`]),
/// `prepare` runs, and its success makes it ready; `acquired` is called each time this
/// copy becomes the active one. A round that fails leaves the gate to expire at its own
/// time.
pub async fn run<P, A>(
    swarm: Arc<dyn Swarm>,
    config: LeaseConfig,
    gate: Arc<LeaseGate>,
    prepare: P,
    acquired: A,
    shutdown: CancellationToken,
) where
    P: Fn() -> futures_util::future::BoxFuture<'static, bool> + Send,
    A: Fn() + Send,
{
    let mut memory = Memory::default();
    let period = config.duration / 3;
    let mut was_active = false;
    loop {
        if let Err(e) = round(swarm.as_ref(), &config, &gate, &mut memory).await {
            warn!(error = %e, lease = %config.service, "cannot renew or read the lease");
        }
        if let Some(term) = gate.held_term().filter(|_| !gate.may_write())
            && prepare().await
        {
            gate.mark_ready(term);
        }
        let active = gate.may_write();
        if !was_active && active {
            acquired();
        }
        if was_active && !active {
            warn!(identity = %config.identity, lease = %config.service, "lost the lease: this mlmodel stops writing and is a standby");
        }
        was_active = active;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(period) => {}
        }
    }
    if gate.held_term().is_some() {
        release(swarm.as_ref(), &config, &gate).await;
    }
}

/// Gives the lease up at shutdown (holder emptied, same term), so that a standby takes
/// over at its next round instead of a whole duration later.
pub async fn release(swarm: &dyn Swarm, config: &LeaseConfig, gate: &LeaseGate) {
    let Ok(Some(record)) = read(swarm, config).await else {
        return;
    };
    if record.holder != config.identity {
        return;
    }
    gate.lock().until = None;
    let mut released = spec(config, record.term, record.renewals, &record.turns);
    if let Some(labels) = released.labels.as_mut() {
        labels.insert(HOLDER.to_string(), String::new());
        labels.insert(ADDRESS.to_string(), String::new());
    }
    match swarm
        .update_service(&record.id, record.version, &released)
        .await
    {
        Ok(()) => info!(lease = %config.service, "released the lease"),
        Err(e) => {
            warn!(error = %e, lease = %config.service, "could not release the lease; a standby takes over once it expires")
        }
    }
}

#[cfg(test)]
mod tests;
