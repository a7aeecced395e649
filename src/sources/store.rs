//! The embedded store: every model's deployment history, and whether it was stopped.
//!
//! The store is the API's source of desired state and the memory of what each model ran
//! before (for rollbacks). It lives in a sled database with two trees:
//!
//! - `history`: one entry per deployment, keyed `name 0x00 sequence` with the sequence as a
//!   big-endian `u64`, so a model's entries are contiguous and sorted oldest first, and an
//!   append writes one key instead of rewriting the whole history;
//! - `models`: per-model metadata (the stopped flag), keyed by name. Every model with
//!   history has metadata, because both are written in one transaction.
//!
//! Every write is flushed to disk before it returns: a caller that acknowledged a deploy
//! must not lose it to a crash.

use crate::desired::record::DeploymentRecord;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One entry of a model's history: the record and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The deployment record.
    pub record: DeploymentRecord,
    /// Who declared it.
    pub source: Source,
}

/// Where a deployment record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A file in the manifests directory.
    File {
        /// The manifest file, as shown to users.
        path: String,
    },
    /// A request to the HTTP API.
    Api,
    /// A service found running in the swarm and taken over.
    Adopted,
}

impl std::fmt::Display for Source {
    /// The manifest path, `api` or `adopted`: how the status and labels show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path } => f.write_str(path),
            Self::Api => f.write_str("api"),
            Self::Adopted => f.write_str("adopted"),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's directory could not be created.
    #[error("failed to create the store directory {dir}")]
    CreateDir {
        /// The directory.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the store open.
    #[error(
        "the store in {dir} is locked by another process: is another mlmodel running with the same data directory?"
    )]
    Locked {
        /// The directory.
        dir: String,
    },
    /// The database could not be opened (unreadable, or not a store).
    #[error("failed to open the store in {dir}")]
    Open {
        /// The directory.
        dir: String,
        /// The database's error.
        #[source]
        source: sled::Error,
    },
    /// Reading a model's entries failed.
    #[error("failed to read the store entries of model {name}")]
    Read {
        /// The model.
        name: String,
        /// The database's error.
        #[source]
        source: sled::Error,
    },
    /// Writing a model's entries failed.
    #[error("failed to write the store entries of model {name}")]
    Write {
        /// The model.
        name: String,
        /// The database's error.
        #[source]
        source: sled::Error,
    },
    /// Flushing writes to disk failed.
    #[error("failed to flush the store in {dir} to disk")]
    Flush {
        /// The directory.
        dir: String,
        /// The database's error.
        #[source]
        source: sled::Error,
    },
    /// A stored value could not be decoded.
    #[error("undecodable value for model {name} under key {key}: {message}")]
    Corrupt {
        /// The model.
        name: String,
        /// The key, readable (`history/<name>/<sequence>` or `models/<name>`).
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// A value could not be encoded.
    #[error("cannot store a record of model {name}: {message}")]
    Encode {
        /// The model.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A model name the key layout cannot hold.
    #[error("model name {name:?} contains a NUL character")]
    InvalidName {
        /// The name.
        name: String,
    },
}

/// Per-model metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ModelMeta {
    /// Stopped through the API: the model keeps its history but runs nothing.
    #[serde(default)]
    stopped: bool,
}

/// The deployment histories, shared by every task: cloning is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    db: sled::Db,
    history: sled::Tree,
    models: sled::Tree,
    /// Serialises writers. Writes are rare (one per deploy or stop), and a single writer
    /// makes choosing the next sequence number and clearing a model race-free without
    /// retry loops. A std mutex suffices: it is never held across an await.
    writer: Mutex<()>,
    /// The newest entry of each model, decoded: every reconcile reads it, and decoding
    /// the record (its rendered template included) each time cost more than the rest
    /// of a converged model's reconcile.
    latest: Mutex<LatestCache>,
}

/// Decoded newest entries and stopped flags (every reconcile reads both), and a
/// generation that every write bumps: a reader that decoded a value while a write
/// happened must not cache what it read.
#[derive(Debug, Default)]
struct LatestCache {
    generation: u64,
    entries: HashMap<String, Arc<HistoryEntry>>,
    stopped: HashMap<String, bool>,
}

/// Separates a model's name from the sequence number in history keys.
const KEY_SEPARATOR: u8 = 0;

impl Store {
    /// Opens the store in `dir`, creating the directory and the database if needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let shown = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: shown.clone(),
            source,
        })?;
        let db = sled::Config::new().path(dir).open().map_err(|source| {
            if is_locked_by_another(dir) {
                StoreError::Locked { dir: shown.clone() }
            } else {
                StoreError::Open {
                    dir: shown.clone(),
                    source,
                }
            }
        })?;
        let open_tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Open {
                dir: shown.clone(),
                source,
            })
        };
        let history = open_tree("history")?;
        let models = open_tree("models")?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db,
                history,
                models,
                writer: Mutex::new(()),
                latest: Mutex::new(LatestCache::default()),
            }),
        })
    }

    /// Appends `entry` to its model's history, clears the model's stopped flag, and
    /// flushes to disk before returning.
    pub async fn append(&self, entry: impl Into<Arc<HistoryEntry>>) -> Result<(), StoreError> {
        let entry: Arc<HistoryEntry> = entry.into();
        let name = entry.record.spec.name.clone();
        check_name(&name)?;
        if !entry.record.deployment_time.is_finite() {
            return Err(StoreError::Encode {
                name,
                message: format!(
                    "deployment_time {} is not a finite number",
                    entry.record.deployment_time
                ),
            });
        }
        let value = serde_json::to_vec(entry.as_ref()).map_err(|e| StoreError::Encode {
            name: name.clone(),
            message: e.to_string(),
        })?;
        {
            let _writer = self.lock_writer();
            let sequence = self.next_sequence(&name)?;
            let key = history_key(&name, sequence);
            let meta = self.updated_meta(&name, |meta| meta.stopped = false)?;
            self.commit(
                &name,
                || {
                    let written: sled::transaction::TransactionResult<(), ()> =
                        (&self.inner.history, &self.inner.models).transaction(
                            |(history, models)| {
                                history.insert(key.as_slice(), value.as_slice())?;
                                models.insert(name.as_bytes(), meta.as_slice())?;
                                Ok(())
                            },
                        );
                    written.map_err(|e| write_error(&name, e))
                },
                |cache| {
                    cache.entries.insert(name.clone(), entry);
                    cache.stopped.insert(name.clone(), false);
                },
            )?;
        }
        self.flush().await
    }

    /// The model's last `n` history entries, newest first.
    ///
    /// An entry that cannot be decoded is returned as an error in its place, so one bad
    /// record neither hides the others nor shifts them.
    pub fn history(&self, name: &str, n: usize) -> Vec<Result<HistoryEntry, StoreError>> {
        let Ok(prefix) = history_prefix(name) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for item in self.inner.history.scan_prefix(prefix).rev().take(n) {
            match item {
                Ok((key, value)) => entries.push(decode_entry(name, &key, &value)),
                Err(source) => {
                    // The iterator cannot be trusted past a read error.
                    entries.push(Err(StoreError::Read {
                        name: name.to_string(),
                        source,
                    }));
                    break;
                }
            }
        }
        entries
    }

    /// The model's newest history entry; an error if that entry cannot be decoded (falling
    /// back to an older one would silently deploy an older version).
    pub fn latest(&self, name: &str) -> Result<Option<Arc<HistoryEntry>>, StoreError> {
        let Ok(prefix) = history_prefix(name) else {
            return Ok(None);
        };
        let generation = {
            let cache = self.lock_latest();
            if let Some(entry) = cache.entries.get(name) {
                return Ok(Some(entry.clone()));
            }
            cache.generation
        };
        let entry = match self.inner.history.scan_prefix(prefix).next_back() {
            None => return Ok(None),
            Some(Ok((key, value))) => Arc::new(decode_entry(name, &key, &value)?),
            Some(Err(source)) => {
                return Err(StoreError::Read {
                    name: name.to_string(),
                    source,
                });
            }
        };
        let mut cache = self.lock_latest();
        if cache.generation == generation {
            cache.entries.insert(name.to_string(), entry.clone());
        }
        Ok(Some(entry))
    }

    /// Makes a write of the model's data through `write` while holding the cache, so
    /// that no reader sees the database and the cache disagree: the model's cached values
    /// are forgotten, and after a successful write `known` records what the write set.
    /// (A reconcile reads the newest entry, then the stopped flag: were the flag cached
    /// from before a `clear_and_stop` while the entry is read after it, the model would
    /// look like live services without a record, and be adopted back.)
    fn commit<T>(
        &self,
        name: &str,
        write: impl FnOnce() -> Result<T, StoreError>,
        known: impl FnOnce(&mut LatestCache),
    ) -> Result<T, StoreError> {
        let mut cache = self.lock_latest();
        let written = write();
        cache.generation += 1;
        cache.entries.remove(name);
        cache.stopped.remove(name);
        if written.is_ok() {
            known(&mut cache);
        }
        written
    }

    fn lock_latest(&self) -> MutexGuard<'_, LatestCache> {
        // Every change is one assignment under the lock: a poisoned cache is consistent.
        self.inner
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The model's history entry with `deployment_id`.
    ///
    /// When it is not found and some entry could not be decoded, that entry's error is
    /// returned: the entry sought may be the unreadable one.
    pub fn find(
        &self,
        name: &str,
        deployment_id: &str,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        let mut first_error = None;
        for entry in self.history(name, usize::MAX) {
            match entry {
                Ok(entry) if entry.record.deployment_id == deployment_id => return Ok(Some(entry)),
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(None), Err)
    }

    /// The names of every model with history or metadata, sorted.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for key in self.inner.models.iter().keys() {
            let key = key.map_err(|source| StoreError::Read {
                name: "(all models)".to_string(),
                source,
            })?;
            match std::str::from_utf8(&key) {
                Ok(name) => names.push(name.to_string()),
                Err(_) => tracing::warn!(
                    key = %String::from_utf8_lossy(&key),
                    "skipping a model whose stored name is not UTF-8"
                ),
            }
        }
        Ok(names)
    }

    /// Whether the model was stopped through the API (and not deployed since).
    pub fn is_stopped(&self, name: &str) -> Result<bool, StoreError> {
        let generation = {
            let cache = self.lock_latest();
            if let Some(stopped) = cache.stopped.get(name) {
                return Ok(*stopped);
            }
            cache.generation
        };
        let Some(meta) = self.meta(name)? else {
            // Not cached: a name with no metadata may be anything a caller asked about.
            return Ok(false);
        };
        let mut cache = self.lock_latest();
        if cache.generation == generation {
            cache.stopped.insert(name.to_string(), meta.stopped);
        }
        Ok(meta.stopped)
    }

    /// Sets or clears the model's stopped flag, and flushes to disk.
    pub async fn set_stopped(&self, name: &str, stopped: bool) -> Result<(), StoreError> {
        check_name(name)?;
        {
            let _writer = self.lock_writer();
            let meta = self.updated_meta(name, |meta| meta.stopped = stopped)?;
            self.commit(
                name,
                || {
                    self.inner
                        .models
                        .insert(name.as_bytes(), meta)
                        .map_err(|source| StoreError::Write {
                            name: name.to_string(),
                            source,
                        })
                },
                |cache| {
                    cache.stopped.insert(name.to_string(), stopped);
                },
            )?;
        }
        self.flush().await
    }

    /// Forgets the model entirely: its history and its metadata. Flushes to disk.
    pub async fn clear(&self, name: &str) -> Result<(), StoreError> {
        self.remove_history(name, None).await
    }

    /// Forgets the model's history and marks it stopped, in one transaction. Flushes to
    /// disk.
    ///
    /// A reconcile that read the store between a [`Store::clear`] and a
    /// [`Store::set_stopped`] would find live services with neither a record nor a stop,
    /// and adopt them back; done together, no reader sees that state.
    pub async fn clear_and_stop(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let stopped = ModelMeta { stopped: true };
        let meta = serde_json::to_vec(&stopped).map_err(|e| StoreError::Encode {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        self.remove_history(name, Some(meta)).await
    }

    /// Removes the model's history and replaces its metadata with `meta` (`None`: none).
    async fn remove_history(&self, name: &str, meta: Option<Vec<u8>>) -> Result<(), StoreError> {
        let prefix = history_prefix(name)?;
        {
            let _writer = self.lock_writer();
            let mut removals = sled::Batch::default();
            for key in self.inner.history.scan_prefix(prefix).keys() {
                let key = key.map_err(|source| StoreError::Read {
                    name: name.to_string(),
                    source,
                })?;
                removals.remove(key);
            }
            let clear = || {
                let cleared: sled::transaction::TransactionResult<(), ()> =
                    (&self.inner.history, &self.inner.models).transaction(|(history, models)| {
                        history.apply_batch(&removals)?;
                        match &meta {
                            Some(meta) => models.insert(name.as_bytes(), meta.as_slice())?,
                            None => models.remove(name.as_bytes())?,
                        };
                        Ok(())
                    });
                cleared.map_err(|e| write_error(name, e))
            };
            self.commit(name, clear, |_| {})?;
        }
        self.flush().await
    }

    /// Writes everything buffered to disk.
    ///
    /// sled's `flush_async` was seen to hang when several tasks flushed at once; a
    /// blocking flush on tokio's blocking pool has no such problem and costs the same.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let flushed = tokio::task::spawn_blocking(move || inner.db.flush()).await;
        let dir = || self.inner.dir.display().to_string();
        match flushed {
            Ok(result) => result
                .map(drop)
                .map_err(|source| StoreError::Flush { dir: dir(), source }),
            Err(join) => Err(StoreError::Flush {
                dir: dir(),
                source: sled::Error::ReportableBug(format!("the flush task failed: {join}")),
            }),
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a panic while holding the lock cannot leave it
        // inconsistent, so a poisoned lock is as good as a clean one.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The sequence number after the model's newest entry. Callers hold the writer lock.
    fn next_sequence(&self, name: &str) -> Result<u64, StoreError> {
        let prefix = history_prefix(name)?;
        match self.inner.history.scan_prefix(&prefix).keys().next_back() {
            None => Ok(0),
            Some(Ok(key)) => sequence_of(&key, prefix.len())
                .map(|last| last.saturating_add(1))
                .ok_or_else(|| StoreError::Corrupt {
                    name: name.to_string(),
                    key: shown_key(name, &key),
                    message: "history key does not end in an 8-byte sequence number".to_string(),
                }),
            Some(Err(source)) => Err(StoreError::Read {
                name: name.to_string(),
                source,
            }),
        }
    }

    fn meta(&self, name: &str) -> Result<Option<ModelMeta>, StoreError> {
        let value = self
            .inner
            .models
            .get(name.as_bytes())
            .map_err(|source| StoreError::Read {
                name: name.to_string(),
                source,
            })?;
        value
            .map(|value| {
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    name: name.to_string(),
                    key: format!("models/{name}"),
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    /// The model's metadata with `change` applied, encoded. Undecodable metadata is
    /// replaced (and logged): the write being made is the newest truth about the model.
    fn updated_meta(
        &self,
        name: &str,
        change: impl FnOnce(&mut ModelMeta),
    ) -> Result<Vec<u8>, StoreError> {
        let mut meta = match self.meta(name) {
            Ok(meta) => meta.unwrap_or_default(),
            Err(StoreError::Corrupt { key, message, .. }) => {
                tracing::warn!(
                    model = name,
                    key,
                    message,
                    "replacing undecodable model metadata"
                );
                ModelMeta::default()
            }
            Err(e) => return Err(e),
        };
        change(&mut meta);
        serde_json::to_vec(&meta).map_err(|e| StoreError::Encode {
            name: name.to_string(),
            message: e.to_string(),
        })
    }
}

/// Whether the database in `dir` is locked by another process: sled reports a held lock
/// only as an I/O error with a message, so the lock is probed the way sled takes it.
fn is_locked_by_another(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.as_bytes().contains(&KEY_SEPARATOR) {
        return Err(StoreError::InvalidName {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn history_prefix(name: &str) -> Result<Vec<u8>, StoreError> {
    check_name(name)?;
    let mut prefix = Vec::with_capacity(name.len() + 1);
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(KEY_SEPARATOR);
    Ok(prefix)
}

/// `name 0x00 sequence`; the name is known to hold no NUL.
fn history_key(name: &str, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(KEY_SEPARATOR);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn sequence_of(key: &[u8], prefix_len: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(prefix_len..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// A history key as users read it: `history/<name>/<sequence>`.
fn shown_key(name: &str, key: &[u8]) -> String {
    match sequence_of(key, name.len() + 1) {
        Some(sequence) => format!("history/{name}/{sequence}"),
        None => format!(
            "history/{name}/{:02x?}",
            key.get(name.len() + 1..).unwrap_or_default()
        ),
    }
}

fn decode_entry(name: &str, key: &[u8], value: &[u8]) -> Result<HistoryEntry, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        name: name.to_string(),
        key: shown_key(name, key),
        message: e.to_string(),
    })
}

fn write_error(name: &str, error: sled::transaction::TransactionError<()>) -> StoreError {
    let source = match error {
        sled::transaction::TransactionError::Storage(source) => source,
        // Nothing in these transactions aborts; keep the type total all the same.
        sled::transaction::TransactionError::Abort(()) => {
            sled::Error::Unsupported("transaction aborted".to_string())
        }
    };
    StoreError::Write {
        name: name.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::record::{ModelSpec, new_deployment_id};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn record(name: &str, build_id: &str) -> DeploymentRecord {
        DeploymentRecord {
            spec: ModelSpec {
                name: name.into(),
                domain: format!("{}.example.com", name.replace('_', "-")),
                image: "registry.example.com/team/server:1.2".into(),
                port: 8080,
                build_id: build_id.into(),
                run_id: "run-7".into(),
                scale: 3,
                cpu_limit: "1.5".into(),
                cpu_reservation: "0.25".into(),
                mem_limit: "2G".into(),
                mem_reservation: "512M".into(),
                deploy_delay: "5s".into(),
                deploy_monitor_period: "1m30s".into(),
                template_file: "default.template.yml".into(),
                model_type: Some("default".into()),
                extra_template_attributes: BTreeMap::from([
                    (
                        "env".to_string(),
                        json!({"A": "1", "B": [1, 2.5, null, {"c": true}]}),
                    ),
                    ("team".to_string(), json!("ranking")),
                ]),
            },
            deployment_id: new_deployment_id(),
            deployment_time: 1586932393.268678,
            rendered_template: "version: \"3.7\"\nservices:\n  app:\n    image: x\n".into(),
        }
    }

    fn entry(name: &str, build_id: &str) -> HistoryEntry {
        HistoryEntry {
            record: record(name, build_id),
            source: Source::Api,
        }
    }

    fn build_ids(store: &Store, name: &str, n: usize) -> Vec<String> {
        store
            .history(name, n)
            .into_iter()
            .map(|e| e.unwrap().record.spec.build_id)
            .collect()
    }

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn history_is_newest_first_and_limited_to_n() {
        let (_dir, store) = open_temp();
        for build in ["b1", "b2", "b3"] {
            store.append(entry("m", build)).await.unwrap();
        }
        assert_eq!(build_ids(&store, "m", 10), ["b3", "b2", "b1"]);
        assert_eq!(build_ids(&store, "m", 2), ["b3", "b2"]);
        assert_eq!(build_ids(&store, "m", 0), Vec::<String>::new());
        assert_eq!(
            store.latest("m").unwrap().unwrap().record.spec.build_id,
            "b3"
        );
        assert!(store.latest("other").unwrap().is_none());
        assert!(store.history("other", 5).is_empty());
    }

    /// Opens the store again once the previous handle's background threads have let go
    /// of its file lock (sled releases it shortly after the last handle drops).
    async fn reopen(dir: &Path) -> Store {
        for _ in 0..100 {
            match Store::open(dir) {
                Err(StoreError::Locked { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                other => return other.unwrap(),
            }
        }
        panic!(
            "the store in {} stayed locked after its handle was dropped",
            dir.display()
        );
    }

    #[tokio::test]
    async fn history_survives_closing_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let first = entry("m", "b1");
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(first.clone()).await.unwrap();
            store.append(entry("m", "b2")).await.unwrap();
            store.set_stopped("m", true).await.unwrap();
        }
        let store = reopen(dir.path()).await;
        assert_eq!(build_ids(&store, "m", 10), ["b2", "b1"]);
        assert!(store.is_stopped("m").unwrap());
        assert_eq!(
            store.find("m", &first.record.deployment_id).unwrap(),
            Some(first)
        );
        store.append(entry("m", "b3")).await.unwrap();
        assert_eq!(build_ids(&store, "m", 10), ["b3", "b2", "b1"]);
    }

    #[tokio::test]
    async fn a_record_with_every_field_round_trips_exactly() {
        let (_dir, store) = open_temp();
        let mut original = entry("carls_model", "b1");
        original.record.deployment_time = 1712345678.123_456_7;
        original.source = Source::File {
            path: "manifests/team/carls_model.yml".into(),
        };
        store.append(original.clone()).await.unwrap();
        // Decoded from the database, not the newest-entry cache.
        let back = store.history("carls_model", 1).remove(0).unwrap();
        assert_eq!(back, original);
        assert_eq!(*store.latest("carls_model").unwrap().unwrap(), original);
        assert_eq!(
            back.record.deployment_time.to_bits(),
            original.record.deployment_time.to_bits()
        );
        for source in [Source::Api, Source::Adopted] {
            let mut other = entry("carls_model", "b2");
            other.source = source.clone();
            store.append(other).await.unwrap();
            assert_eq!(store.latest("carls_model").unwrap().unwrap().source, source);
        }
    }

    #[tokio::test]
    async fn the_source_is_shown_with_a_kind() {
        let shown = serde_json::to_value(Source::File {
            path: "a.yml".into(),
        })
        .unwrap();
        assert_eq!(shown, json!({"kind": "file", "path": "a.yml"}));
        assert_eq!(
            serde_json::to_value(Source::Adopted).unwrap(),
            json!({"kind": "adopted"})
        );
    }

    #[tokio::test]
    async fn appending_clears_the_stopped_flag() {
        let (_dir, store) = open_temp();
        assert!(!store.is_stopped("m").unwrap());
        store.append(entry("m", "b1")).await.unwrap();
        store.set_stopped("m", true).await.unwrap();
        assert!(store.is_stopped("m").unwrap());
        assert_eq!(build_ids(&store, "m", 10), ["b1"], "stopping keeps history");
        store.append(entry("m", "b2")).await.unwrap();
        assert!(!store.is_stopped("m").unwrap());
        store.set_stopped("m", true).await.unwrap();
        store.set_stopped("m", false).await.unwrap();
        assert!(!store.is_stopped("m").unwrap());
    }

    #[tokio::test]
    async fn the_cached_stopped_flag_follows_every_write_as_the_database_holds_it() {
        let (_dir, store) = open_temp();
        let in_database =
            |store: &Store, name: &str| store.meta(name).unwrap().is_some_and(|m| m.stopped);
        let check = |store: &Store, step: &str| {
            for name in ["a", "b"] {
                // Twice: the first read may fill the cache, the second is served from it.
                for _ in 0..2 {
                    let cached = store.is_stopped(name).unwrap();
                    assert_eq!(cached, in_database(store, name), "{name} after {step}");
                }
            }
        };
        check(&store, "nothing");
        store.append(entry("a", "a1")).await.unwrap();
        check(&store, "append a");
        store.set_stopped("a", true).await.unwrap();
        check(&store, "stop a");
        assert!(store.is_stopped("a").unwrap());
        store.set_stopped("b", true).await.unwrap();
        check(&store, "stop b, which has no history");
        store.append(entry("a", "a2")).await.unwrap();
        check(&store, "append a again");
        assert!(!store.is_stopped("a").unwrap());
        store.clear_and_stop("a").await.unwrap();
        check(&store, "clear and stop a");
        assert!(store.is_stopped("a").unwrap());
        store.clear("a").await.unwrap();
        check(&store, "clear a");
        store.set_stopped("b", false).await.unwrap();
        check(&store, "start b");
        assert!(!store.is_stopped("b").unwrap());
    }

    /// A reconcile reads the newest entry, then the stopped flag. While a model is being
    /// cleared and stopped, it may see the record and either flag, or no record and
    /// stopped; never no record and not stopped, which would adopt the live services
    /// back. A reader on another thread reads the model being written, again and again,
    /// with the newest entry dropped from the cache before each read (as when a read
    /// raced a write to another model), while its stopped flag stays cached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_racing_clear_and_stop_never_sees_no_record_and_not_stopped() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (_dir, store) = open_temp();
        let names: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        for name in &names {
            store.append(entry(name, "b1")).await.unwrap();
        }
        let current = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, names) = (store.clone(), names.clone());
            let (current, done) = (current.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let name = &names[current.load(Ordering::Relaxed)];
                    store.lock_latest().entries.remove(name);
                    let latest = store.latest(name).unwrap();
                    let stopped = store.is_stopped(name).unwrap();
                    assert!(
                        latest.is_some() || stopped,
                        "{name}: no record and not stopped, after {reads} reads"
                    );
                    reads += 1;
                }
                reads
            })
        };
        for (i, name) in names.iter().enumerate() {
            current.store(i, Ordering::Relaxed);
            // Let the reader cache the flag before the write.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            store.clear_and_stop(name).await.unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("the reader saw no forbidden state");
        assert!(reads > 0);
        for name in &names {
            assert!(store.latest(name).unwrap().is_none());
            assert!(store.is_stopped(name).unwrap());
        }
    }

    #[tokio::test]
    async fn clearing_forgets_history_and_metadata_of_that_model_only() {
        let (_dir, store) = open_temp();
        store.append(entry("a", "a1")).await.unwrap();
        store.append(entry("a", "a2")).await.unwrap();
        store.append(entry("ab", "ab1")).await.unwrap();
        store.set_stopped("a", true).await.unwrap();
        store.clear("a").await.unwrap();
        assert!(store.history("a", 10).is_empty());
        assert!(!store.is_stopped("a").unwrap());
        assert_eq!(store.names().unwrap(), ["ab"]);
        assert_eq!(build_ids(&store, "ab", 10), ["ab1"]);
        store.append(entry("a", "a3")).await.unwrap();
        assert_eq!(build_ids(&store, "a", 10), ["a3"]);
    }

    #[tokio::test]
    async fn clearing_and_stopping_leaves_a_stopped_model_without_history() {
        let (_dir, store) = open_temp();
        store.append(entry("a", "a1")).await.unwrap();
        store.append(entry("a", "a2")).await.unwrap();
        store.append(entry("ab", "ab1")).await.unwrap();
        store.clear_and_stop("a").await.unwrap();
        assert!(store.history("a", 10).is_empty());
        assert!(store.latest("a").unwrap().is_none());
        assert!(store.is_stopped("a").unwrap());
        assert_eq!(store.names().unwrap(), ["a", "ab"]);
        assert_eq!(build_ids(&store, "ab", 10), ["ab1"]);
        assert!(!store.is_stopped("ab").unwrap());
        store.append(entry("a", "a3")).await.unwrap();
        assert_eq!(build_ids(&store, "a", 10), ["a3"]);
        assert!(!store.is_stopped("a").unwrap());
    }

    #[tokio::test]
    async fn two_models_do_not_interfere_even_when_one_name_prefixes_the_other() {
        let (_dir, store) = open_temp();
        store.append(entry("m", "m1")).await.unwrap();
        store.append(entry("m_2", "x1")).await.unwrap();
        store.append(entry("m", "m2")).await.unwrap();
        store.set_stopped("m_2", true).await.unwrap();
        assert_eq!(build_ids(&store, "m", 10), ["m2", "m1"]);
        assert_eq!(build_ids(&store, "m_2", 10), ["x1"]);
        assert!(!store.is_stopped("m").unwrap());
        assert_eq!(store.names().unwrap(), ["m", "m_2"]);
    }

    #[tokio::test]
    async fn stopping_a_model_without_history_lists_it() {
        let (_dir, store) = open_temp();
        store.set_stopped("quiet", true).await.unwrap();
        assert_eq!(store.names().unwrap(), ["quiet"]);
        assert!(store.latest("quiet").unwrap().is_none());
    }

    #[tokio::test]
    async fn find_looks_a_deployment_up_by_id() {
        let (_dir, store) = open_temp();
        let old = entry("m", "b1");
        store.append(old.clone()).await.unwrap();
        store.append(entry("m", "b2")).await.unwrap();
        assert_eq!(
            store.find("m", &old.record.deployment_id).unwrap(),
            Some(old.clone())
        );
        assert_eq!(store.find("m", "0".repeat(32).as_str()).unwrap(), None);
        assert_eq!(
            store.find("other", &old.record.deployment_id).unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_naming_it_and_hides_nothing_else() {
        let (dir, store) = open_temp();
        let good = entry("m", "b1");
        store.append(good.clone()).await.unwrap();
        store
            .inner
            .history
            .insert(history_key("m", 1), &b"{not json"[..])
            .unwrap();
        store.append(entry("m", "b3")).await.unwrap();

        let history = store.history("m", 10);
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].as_ref().unwrap().record.spec.build_id, "b3");
        let error = history[1].as_ref().unwrap_err().to_string();
        assert!(
            error.starts_with("undecodable value for model m under key history/m/1: "),
            "{error}"
        );
        assert_eq!(history[2].as_ref().unwrap(), &good);
        assert_eq!(
            store.find("m", &good.record.deployment_id).unwrap(),
            Some(good)
        );
        assert!(
            store.find("m", "missing").is_err(),
            "the missing one may be the corrupt one"
        );

        store
            .inner
            .history
            .insert(history_key("m", 3), &b"[]"[..])
            .unwrap();
        // Reopened, so that the newest entry is read from the database again.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(store.latest("m"), Err(StoreError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn corrupt_metadata_is_an_error_and_the_next_write_repairs_it() {
        let (_dir, store) = open_temp();
        store.inner.models.insert("m", &b"\xff"[..]).unwrap();
        let error = store.is_stopped("m").unwrap_err().to_string();
        assert!(error.contains("model m under key models/m"), "{error}");
        store.append(entry("m", "b1")).await.unwrap();
        assert!(!store.is_stopped("m").unwrap());
    }

    #[tokio::test]
    async fn names_with_a_nul_are_refused() {
        let (_dir, store) = open_temp();
        let bad = entry("a\0b", "b1");
        assert!(matches!(
            store.append(bad).await,
            Err(StoreError::InvalidName { .. })
        ));
        assert!(store.history("a\0b", 1).is_empty());
    }

    #[tokio::test]
    async fn a_non_finite_time_is_refused_rather_than_stored_unreadable() {
        let (_dir, store) = open_temp();
        let mut bad = entry("m", "b1");
        bad.record.deployment_time = f64::NAN;
        let error = store.append(bad).await.unwrap_err().to_string();
        assert!(error.contains("deployment_time NaN"), "{error}");
        assert!(store.names().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_and_readers_neither_lose_entries_nor_deadlock() {
        let (_dir, store) = open_temp();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            let name = format!("m{}", i % 4);
            tasks.push(tokio::spawn(async move {
                store.append(entry(&name, &format!("b{i}"))).await.unwrap();
                if i % 8 == 0 {
                    store.set_stopped(&name, true).await.unwrap();
                }
                assert!(!store.history(&name, 100).is_empty());
                store.flush().await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut builds: Vec<String> = (0..4)
            .flat_map(|m| build_ids(&store, &format!("m{m}"), 100))
            .collect();
        assert_eq!(builds.len(), 40);
        builds.sort();
        builds.dedup();
        assert_eq!(builds.len(), 40);
    }

    #[test]
    fn opening_a_store_that_is_already_open_fails_naming_the_directory() {
        let (dir, _store) = open_temp();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("locked by another process"), "{message}");
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").unwrap();
        let error = Store::open(&file.join("store")).unwrap_err().to_string();
        assert!(
            error.starts_with("failed to create the store directory "),
            "{error}"
        );
        assert!(error.contains("plain-file"), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn any_finite_deployment_time_round_trips_bit_for_bit(time in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL) {
            let mut original = entry("m", "b");
            original.record.deployment_time = time;
            let bytes = serde_json::to_vec(&original).unwrap();
            let back = decode_entry("m", &history_key("m", 0), &bytes).unwrap();
            proptest::prop_assert_eq!(back.record.deployment_time.to_bits(), time.to_bits());
        }
    }
}
