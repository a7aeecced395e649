//! The store's copy in Swarm: every deployment record, kept as a Swarm config, where
//! every manager sees it.
//!
//! The store lives on one node's disk; when mlmodel's node is lost, the copy Swarm
//! starts elsewhere begins with an empty (or an old) store. So with `--swarm-history`
//! (on with `--lease`) the store mirrors each write into Swarm's raft store before it
//! acknowledges it (see [`crate::sources::store::Mirror`]):
//!
//! - each history entry is a config `<instance>-history-<model>-<sequence>` holding the
//!   entry as the store encodes it, labelled with the instance, the model, the sequence,
//!   and the writer and lease term that wrote it;
//! - a stopped model has a config `<instance>-stopped-<model>`;
//! - the config `<instance>-history` marks the journal as complete: from then on it is
//!   the authority, and a store that disagrees takes its copy.
//!
//! A copy syncs at start and each time it takes the lease, before it writes anything:
//! [`read`] and [`plan`] decide from what was listed, as values; [`Journal::sync`]
//! carries it out. A journal not yet marked complete (the first start with it, on a
//! store that has history) is filled from the store first.

use crate::reconcile::lease::LeaseGate;
use crate::sources::store::{Mirror, MirrorError, ModelCopy, Store, StoreError};
use crate::swarm::{ListedObject, ObjectKind, ObjectRequest, Swarm, SwarmError};
use async_trait::async_trait;
use base64::Engine;
use bollard::models::ConfigSpec;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tracing::{info, warn};

/// The label naming the instance a journal config belongs to.
pub const HISTORY: &str = "mlmodel.history";
/// The label `<instance>/<model>` of a model's configs (to list one model's).
pub const OF: &str = "mlmodel.history.of";
/// The label with the model's name.
pub const MODEL: &str = "mlmodel.history.model";
/// The label with an entry's sequence number.
pub const SEQUENCE: &str = "mlmodel.history.sequence";
/// The label marking a model as stopped.
pub const STOPPED: &str = "mlmodel.history.stopped";
/// The label marking the journal complete.
pub const COMPLETE: &str = "mlmodel.history.complete";
/// The label with the lease term an entry was written in (0 without a lease).
pub const TERM: &str = "mlmodel.history.term";
/// The label with the identity of the copy that wrote an entry.
pub const WRITER: &str = "mlmodel.history.writer";
/// Swarm's limit on a config's content.
pub const MAX_ENTRY_BYTES: usize = 500 * 1024;
/// Swarm's limit on a config's name.
const MAX_NAME: usize = 64;

/// Why the journal could not be read or synced.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Swarm refused or failed a call.
    #[error("the history kept in Swarm: {0}")]
    Swarm(#[from] SwarmError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the journal holds, as read from one list of its configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// Whether the journal is marked complete.
    pub complete: bool,
    /// Every model's data.
    pub models: BTreeMap<String, ModelCopy>,
    /// Configs of the journal that could not be read (name, why).
    pub unreadable: Vec<(String, String)>,
}

/// Reads the configs listed under the journal's label.
pub fn read(listed: &[ListedObject]) -> Remote {
    let mut remote = Remote::default();
    for object in listed {
        let label = |key: &str| object.labels.get(key).map(String::as_str);
        if label(COMPLETE).is_some() {
            remote.complete = true;
            continue;
        }
        let Some(model) = label(MODEL).filter(|m| !m.is_empty()) else {
            remote
                .unreadable
                .push((object.name.clone(), format!("no {MODEL} label")));
            continue;
        };
        if label(STOPPED).is_some() {
            remote.models.entry(model.to_string()).or_default().stopped = true;
            continue;
        }
        let Some(sequence) = label(SEQUENCE).and_then(|s| s.parse::<u64>().ok()) else {
            remote.unreadable.push((
                object.name.clone(),
                format!("no number in its {SEQUENCE} label"),
            ));
            continue;
        };
        let Some(data) = &object.data else {
            remote
                .unreadable
                .push((object.name.clone(), "no content".to_string()));
            continue;
        };
        remote
            .models
            .entry(model.to_string())
            .or_default()
            .entries
            .insert(sequence, data.to_vec());
    }
    remote
}

/// What a sync does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Models whose local data is replaced by this copy (empty: forgotten).
    pub take: Vec<(String, ModelCopy)>,
    /// Entries to write into the journal: model, sequence, content.
    pub push: Vec<(String, u64, Vec<u8>)>,
    /// Models to mark stopped in the journal.
    pub push_stopped: Vec<String>,
    /// Whether to mark the journal complete.
    pub complete: bool,
}

/// Decides a sync from the local store's data and the journal's, as a value.
///
/// A complete journal is the authority: every model whose local data differs takes
/// the journal's (a model it does not hold was deleted by the copy that wrote it).
/// An incomplete journal, or a store `unmirrored` (written to without the journal
/// since its last sync, so that the journal may lack acknowledged writes), is merged
/// instead: the journal is filled from the store, the journal winning where both hold
/// the same entry, and nothing local is forgotten. Only a copy that `may_write` fills
/// the journal and marks it complete.
pub fn plan(
    local: &BTreeMap<String, ModelCopy>,
    remote: &Remote,
    unmirrored: bool,
    may_write: bool,
) -> SyncPlan {
    let mut decided = SyncPlan::default();
    let names: std::collections::BTreeSet<&String> =
        local.keys().chain(remote.models.keys()).collect();
    let empty = ModelCopy::default();
    for name in names {
        let mine = local.get(name).unwrap_or(&empty);
        let theirs = remote.models.get(name).unwrap_or(&empty);
        if remote.complete && !unmirrored {
            if mine != theirs {
                decided.take.push((name.clone(), theirs.clone()));
            }
            continue;
        }
        let mut merged = theirs.clone();
        for (sequence, entry) in &mine.entries {
            if !theirs.entries.contains_key(sequence) {
                merged.entries.insert(*sequence, entry.clone());
                decided.push.push((name.clone(), *sequence, entry.clone()));
            }
        }
        merged.stopped = mine.stopped || theirs.stopped;
        if mine.stopped && !theirs.stopped {
            decided.push_stopped.push(name.clone());
        }
        if merged != *mine {
            decided.take.push((name.clone(), merged));
        }
    }
    if !may_write {
        decided.push.clear();
        decided.push_stopped.clear();
    } else {
        decided.complete = !remote.complete;
    }
    decided
}

/// A config name Swarm accepts (at most 64 characters): `<instance>-<kind>-<model>`
/// with `-<sequence>`, or with the model's name hashed when that is too long.
pub fn object_name(instance: &str, kind: &str, model: &str, sequence: Option<u64>) -> String {
    let tail = sequence.map(|s| format!("-{s}")).unwrap_or_default();
    let plain = format!("{instance}-{kind}-{model}{tail}");
    if plain.len() <= MAX_NAME {
        return plain;
    }
    let digest = Sha256::digest(format!("{instance}\0{model}").as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let keep = MAX_NAME.saturating_sub(kind.len() + hash.len() + tail.len() + 3);
    let instance: String = instance.chars().take(keep).collect();
    format!("{instance}-{kind}-{hash}{tail}")
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Models whose local data was taken from the journal.
    pub taken: usize,
    /// Entries written into the journal.
    pub pushed: usize,
    /// Entries the journal holds in all.
    pub entries: usize,
}

/// The journal of one instance, and the store's [`Mirror`].
pub struct Journal {
    swarm: Arc<dyn Swarm>,
    instance: String,
    writer: String,
    gate: Option<Arc<LeaseGate>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("instance", &self.instance)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// The journal of `instance`, written by the copy `writer`; under a lease, writes
    /// are refused while `gate` does not hold it.
    pub fn new(
        swarm: Arc<dyn Swarm>,
        instance: &str,
        writer: &str,
        gate: Option<Arc<LeaseGate>>,
    ) -> Self {
        Self {
            swarm,
            instance: instance.to_string(),
            writer: writer.to_string(),
            gate,
        }
    }

    fn labels(&self, model: &str) -> HashMap<String, String> {
        HashMap::from([
            (HISTORY.to_string(), self.instance.clone()),
            (OF.to_string(), format!("{}/{model}", self.instance)),
            (MODEL.to_string(), model.to_string()),
            (WRITER.to_string(), self.writer.clone()),
            (
                TERM.to_string(),
                self.gate
                    .as_ref()
                    .and_then(|gate| gate.held_term())
                    .unwrap_or(0)
                    .to_string(),
            ),
        ])
    }

    fn config(name: String, labels: HashMap<String, String>, data: &[u8]) -> ObjectRequest {
        ObjectRequest::Config(ConfigSpec {
            name: Some(name),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        })
    }

    /// Creates a config; one of that name already there is replaced (a write that was
    /// not acknowledged, and could not be taken back).
    async fn create(&self, object: &ObjectRequest) -> Result<(), SwarmError> {
        match self.swarm.create_object(object).await {
            Err(SwarmError::Conflict { .. }) => {
                self.swarm
                    .remove_object(ObjectKind::Config, object.name())
                    .await?;
                self.swarm.create_object(object).await.map(drop)
            }
            created => created.map(drop),
        }
    }

    async fn create_entry(
        &self,
        model: &str,
        sequence: u64,
        entry: &[u8],
    ) -> Result<(), SwarmError> {
        let mut labels = self.labels(model);
        labels.insert(SEQUENCE.to_string(), sequence.to_string());
        let name = object_name(&self.instance, "history", model, Some(sequence));
        self.create(&Self::config(name, labels, entry)).await
    }

    async fn create_stopped(&self, model: &str) -> Result<(), SwarmError> {
        let mut labels = self.labels(model);
        labels.insert(STOPPED.to_string(), "true".to_string());
        let name = object_name(&self.instance, "stopped", model, None);
        self.create(&Self::config(name, labels, b"stopped")).await
    }

    async fn remove_stopped(&self, model: &str) -> Result<(), SwarmError> {
        let name = object_name(&self.instance, "stopped", model, None);
        self.swarm.remove_object(ObjectKind::Config, &name).await
    }

    fn refuse_standby(&self) -> Result<(), MirrorError> {
        match self.gate.as_ref().and_then(|gate| gate.standby()) {
            Some(why) => Err(MirrorError { message: why }),
            None => Ok(()),
        }
    }

    fn failed(error: SwarmError) -> MirrorError {
        MirrorError {
            message: format!("Swarm did not take it: {error}"),
        }
    }

    /// Lists and reads the journal: one API call.
    pub async fn remote(&self) -> Result<Remote, SwarmError> {
        let listed = self
            .swarm
            .list_objects(ObjectKind::Config, (HISTORY, &self.instance))
            .await?;
        Ok(read(&listed))
    }

    /// Brings the store and the journal into agreement (see [`plan`]); a copy that may
    /// not write only takes the journal's data into its store.
    pub async fn sync(&self, store: &Store, may_write: bool) -> Result<SyncReport, JournalError> {
        let remote = self.remote().await?;
        for (name, why) in &remote.unreadable {
            warn!(config = %name, why = %why, "a config of the history kept in Swarm cannot be read; left as it is");
        }
        let local = store.copies()?;
        let unmirrored = store.unmirrored()?;
        let decided = plan(&local, &remote, unmirrored, may_write);
        for (model, sequence, entry) in &decided.push {
            self.create_entry(model, *sequence, entry).await?;
        }
        for model in &decided.push_stopped {
            self.create_stopped(model).await?;
        }
        for (model, copy) in &decided.take {
            let had = local.get(model).map_or(0, |c| c.entries.len());
            info!(model = %model, entries = copy.entries.len(), had, "took the model's history from the copy kept in Swarm");
            store.replace(model, copy).await?;
        }
        if decided.complete {
            let labels = HashMap::from([
                (HISTORY.to_string(), self.instance.clone()),
                (COMPLETE.to_string(), "true".to_string()),
                (WRITER.to_string(), self.writer.clone()),
            ]);
            let name = format!("{}-history", self.instance);
            self.create(&Self::config(name, labels, b"complete"))
                .await?;
        }
        if may_write && unmirrored {
            store.mark_mirrored().await?;
        }
        let entries = remote
            .models
            .values()
            .map(|c| c.entries.len())
            .sum::<usize>()
            + decided.push.len();
        Ok(SyncReport {
            taken: decided.take.len(),
            pushed: decided.push.len(),
            entries,
        })
    }
}

#[async_trait]
impl Mirror for Journal {
    async fn put(&self, name: &str, sequence: u64, entry: &[u8]) -> Result<(), MirrorError> {
        self.refuse_standby()?;
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(MirrorError {
                message: format!(
                    "the record is {} bytes, more than the {MAX_ENTRY_BYTES} bytes a Swarm config holds (a smaller template or fewer extra attributes)",
                    entry.len()
                ),
            });
        }
        self.create_entry(name, sequence, entry)
            .await
            .map_err(Self::failed)?;
        self.remove_stopped(name).await.map_err(Self::failed)
    }

    async fn take_back(&self, name: &str, sequence: u64) {
        let config = object_name(&self.instance, "history", name, Some(sequence));
        if let Err(e) = self.swarm.remove_object(ObjectKind::Config, &config).await {
            warn!(model = name, config = %config, error = %e, "cannot take back an entry the store did not acknowledge; the next sync settles it");
        }
    }

    async fn set_stopped(&self, name: &str, stopped: bool) -> Result<(), MirrorError> {
        self.refuse_standby()?;
        if stopped {
            self.create_stopped(name).await
        } else {
            self.remove_stopped(name).await
        }
        .map_err(Self::failed)
    }

    async fn clear(&self, name: &str, stop: bool) -> Result<(), MirrorError> {
        self.refuse_standby()?;
        let of = format!("{}/{name}", self.instance);
        let listed = self
            .swarm
            .list_objects(ObjectKind::Config, (OF, &of))
            .await
            .map_err(Self::failed)?;
        for object in listed.iter().filter(|o| o.labels.contains_key(SEQUENCE)) {
            self.swarm
                .remove_object(ObjectKind::Config, &object.id)
                .await
                .map_err(Self::failed)?;
        }
        if stop {
            self.create_stopped(name).await
        } else {
            self.remove_stopped(name).await
        }
        .map_err(Self::failed)
    }
}

#[cfg(test)]
mod tests;
