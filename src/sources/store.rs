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

use crate::desired::record::{DeploymentRecord, HistoryEntry};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

mod mirror;
pub use mirror::{Mirror, MirrorError, ModelCopy};

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
    /// A damaged store could not be moved aside (`--recover-store`).
    #[error(
        "cannot move the damaged store {dir} aside to {aside}: move or remove it yourself, then start again"
    )]
    MoveAside {
        /// The store's directory.
        dir: String,
        /// Where it was to go.
        aside: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
    /// The mirror (the copy other mlmodels read) refused or failed the write, so the
    /// store did not make it.
    #[error(
        "cannot keep the write of model {name} where other copies of mlmodel read it: {message}"
    )]
    Mirror {
        /// The model.
        name: String,
        /// The mirror's words.
        message: String,
    },
    /// A model name the key layout cannot hold.
    #[error("model name {name:?} contains a NUL character")]
    InvalidName {
        /// The name.
        name: String,
    },
}

impl StoreError {
    /// The I/O error underneath, if the database met one.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Self::CreateDir { source, .. } | Self::MoveAside { source, .. } => Some(source),
            Self::Open { source, .. }
            | Self::Read { source, .. }
            | Self::Write { source, .. }
            | Self::Flush { source, .. } => match source {
                sled::Error::Io(io) => Some(io),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the disk (or the quota) holding the store is full.
    pub fn is_disk_full(&self) -> bool {
        self.io_error().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        })
    }

    /// Whether it is an I/O error of the database (the disk, not the data).
    pub fn is_io(&self) -> bool {
        self.io_error().is_some()
    }
}

/// Per-model metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ModelMeta {
    /// Stopped through the API: the model keeps its history but runs nothing.
    #[serde(default)]
    stopped: bool,
}

/// sled's page cache, at most. Its default (1 GiB) lets it keep every record it ever
/// wrote in memory; the store keeps each model's latest entry itself (`LatestCache`), and
/// older history and events are read rarely (the API's history and events answers).
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The deployment histories, shared by every task: cloning is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// The open database; `None` after an I/O error closed it, until it opens again.
    handles: RwLock<Option<Arc<Handles>>>,
    /// Serialises writers. Writes are rare (one per deploy or stop), and a single writer
    /// makes choosing the next sequence number and clearing a model race-free without
    /// retry loops. It is held across the mirror's write, so an async mutex.
    writer: tokio::sync::Mutex<()>,
    /// Where writes are copied before they are made here, if anywhere.
    mirror: OnceLock<Arc<dyn Mirror>>,
    /// The newest entry of each model, decoded: every reconcile reads it, and decoding
    /// the record (its rendered template included) each time cost more than the rest
    /// of a converged model's reconcile. Kept without the rendered template, which no
    /// reconcile reads and which is most of an entry (see [`Store::latest`]).
    latest: Mutex<LatestCache>,
}

/// Decoded newest entries and stopped flags (every reconcile reads both), the names of
/// every model (every resync reads them), and a generation that every write bumps: a
/// reader that decoded a value while a write happened must not cache what it read.
#[derive(Debug, Default)]
struct LatestCache {
    generation: u64,
    entries: foldhash::HashMap<String, Arc<HistoryEntry>>,
    stopped: foldhash::HashMap<String, bool>,
    names: Option<Arc<[String]>>,
}

/// The open database and its two trees.
#[derive(Debug)]
pub(crate) struct Handles {
    db: sled::Db,
    history: sled::Tree,
    models: sled::Tree,
    /// Each model's events (see `crate::reconcile::events`): kept here, not mirrored.
    events: sled::Tree,
}

impl Handles {
    fn open(dir: &Path) -> Result<Handles, StoreError> {
        let shown = dir.display().to_string();
        if let Some(why) = damaged_files(dir) {
            return Err(StoreError::Open {
                dir: shown,
                source: sled::Error::Unsupported(why),
            });
        }
        // No background flusher: every write flushes before it returns, and without the
        // flusher thread (which holds the database) dropping the store releases its lock
        // at once, so it can be opened again in the same process.
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| {
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
        let events = open_tree("events")?;
        Ok(Handles {
            db,
            history,
            models,
            events,
        })
    }
}

/// Separates a model's name from the sequence number in history keys.
const KEY_SEPARATOR: u8 = 0;

/// The key (in the default tree) set by a write made without a mirror: the mirror may
/// lack what this store holds until the next sync.
const UNMIRRORED: &[u8] = b"unmirrored";

impl Store {
    /// Opens the store in `dir`; with `recover`, a store that does not open as a
    /// database (damaged, or not a store) is first moved aside to a sibling directory
    /// `<dir>.damaged-<unix seconds>`, kept as it was, and an empty store is opened in
    /// its place. Returns where the damaged one went, if it was moved.
    pub fn open_or_recover(
        dir: &Path,
        recover: bool,
    ) -> Result<(Store, Option<PathBuf>), StoreError> {
        match Store::open(dir) {
            Err(StoreError::Open { .. }) if recover => {
                let stamp = crate::desired::record::now_unix_seconds() as u64;
                let mut aside = dir.as_os_str().to_owned();
                aside.push(format!(".damaged-{stamp}"));
                let aside = PathBuf::from(aside);
                std::fs::rename(dir, &aside).map_err(|source| StoreError::MoveAside {
                    dir: dir.display().to_string(),
                    aside: aside.display().to_string(),
                    source,
                })?;
                Ok((Store::open(dir)?, Some(aside)))
            }
            opened => opened.map(|store| (store, None)),
        }
    }

    /// Opens the store in `dir`, creating the directory and the database if needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.display().to_string(),
            source,
        })?;
        let handles = Handles::open(dir)?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                handles: RwLock::new(Some(Arc::new(handles))),
                writer: tokio::sync::Mutex::new(()),
                mirror: OnceLock::new(),
                latest: Mutex::new(LatestCache::default()),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Copies every later write to `mirror` before making it (once; a second mirror is
    /// refused and returned).
    pub fn set_mirror(&self, mirror: Arc<dyn Mirror>) -> Result<(), Arc<dyn Mirror>> {
        self.inner.mirror.set(mirror)
    }

    fn mirror(&self) -> Option<&Arc<dyn Mirror>> {
        self.inner.mirror.get()
    }

    /// Whether a write was made without a mirror since [`Store::mark_mirrored`].
    pub fn unmirrored(&self) -> Result<bool, StoreError> {
        self.handles()?
            .db
            .contains_key(UNMIRRORED)
            .map_err(|source| StoreError::Read {
                name: "(the store)".to_string(),
                source,
            })
    }

    /// Records that the mirror holds everything this store does (after a sync).
    pub async fn mark_mirrored(&self) -> Result<(), StoreError> {
        let handles = self.handles()?;
        handles
            .db
            .remove(UNMIRRORED)
            .map_err(|source| StoreError::Write {
                name: "(the store)".to_string(),
                source,
            })?;
        self.flush().await
    }

    /// Before a write: without a mirror, marks the store as holding what a mirror may
    /// lack (set before the write, so a failed write leaves it set, which is safe).
    fn note_unmirrored(&self, handles: &Handles, name: &str) -> Result<(), StoreError> {
        if self.mirror().is_some() {
            return Ok(());
        }
        handles
            .db
            .insert(UNMIRRORED, b"1".as_slice())
            .map(drop)
            .map_err(|source| StoreError::Write {
                name: name.to_string(),
                source,
            })
    }

    fn mirror_error(name: &str, error: MirrorError) -> StoreError {
        StoreError::Mirror {
            name: name.to_string(),
            message: error.message,
        }
    }

    /// The open database, opening it again if an I/O error closed it.
    fn handles(&self) -> Result<Arc<Handles>, StoreError> {
        if let Some(handles) = self.read_handles().as_ref() {
            return Ok(handles.clone());
        }
        let mut slot = self
            .inner
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(handles) = slot.as_ref() {
            return Ok(handles.clone());
        }
        let handles = Arc::new(Handles::open(&self.inner.dir)?);
        *slot = Some(handles.clone());
        tracing::info!(dir = %self.inner.dir.display(), "the store is open again after an I/O error");
        Ok(handles)
    }

    /// Takes the open database out of the store and hands it over: while the caller
    /// holds it, every call fails (opening again finds it locked), as after an I/O error
    /// on a disk that is not back yet; once dropped, the next call opens it again.
    #[cfg(test)]
    pub(crate) fn detach_for_test(&self) -> Option<Arc<Handles>> {
        self.inner
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn read_handles(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<Handles>>> {
        self.inner.handles.read().unwrap_or_else(|p| p.into_inner())
    }

    /// After an I/O error: sled keeps the first I/O error and fails every later call
    /// with it, and what it holds in memory may include the write that failed (never
    /// acknowledged). So the database is closed and opened again from what is on disk,
    /// now or at the next call (on a full disk it does not open until space returns).
    /// The decoded cache holds only acknowledged values (a failed write forgets its
    /// model's), so reconciles of the other models go on from it meanwhile.
    fn reopen_after(&self, error: &StoreError) {
        if !error.is_io() {
            return;
        }
        let closed = self
            .inner
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(closed);
        {
            // What is on disk is what counts now.
            let mut cache = self.lock_latest();
            cache.generation += 1;
            cache.names = None;
        }
        tracing::warn!(dir = %self.inner.dir.display(), error = %error, "the store hit an I/O error: closed it, to open it again from disk");
        // A reader may still hold the old database for a moment; then the next call
        // opens it.
        let _ = self.handles();
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
        let _writer = self.inner.writer.lock().await;
        let sequence = self.next_sequence(&name)?;
        let key = history_key(&name, sequence);
        let meta = self.updated_meta(&name, |meta| meta.stopped = false)?;
        let handles = self.handles()?;
        self.note_unmirrored(&handles, &name)?;
        if let Some(mirror) = self.mirror() {
            mirror
                .put(&name, sequence, &value)
                .await
                .map_err(|e| Self::mirror_error(&name, e))?;
        }
        let written = self
            .commit(
                &name,
                || {
                    let written: sled::transaction::TransactionResult<(), ()> =
                        (&handles.history, &handles.models).transaction(|(history, models)| {
                            history.insert(key.as_slice(), value.as_slice())?;
                            models.insert(name.as_bytes(), meta.as_slice())?;
                            Ok(())
                        });
                    written.map_err(|e| write_error(&name, e))
                },
                |cache| {
                    cache.entries.insert(name.clone(), without_rendered(&entry));
                    cache.stopped.insert(name.clone(), false);
                },
            )
            .map(drop);
        let written = match written {
            Ok(()) => self.flush_for(&name).await,
            Err(e) => Err(e),
        };
        if written.is_err()
            && let Some(mirror) = self.mirror()
        {
            mirror.take_back(&name, sequence).await;
        }
        written
    }

    /// The model's last `n` history entries, newest first.
    ///
    /// An entry that cannot be decoded is returned as an error in its place, so one bad
    /// record neither hides the others nor shifts them.
    pub fn history(&self, name: &str, n: usize) -> Vec<Result<HistoryEntry, StoreError>> {
        let Ok(prefix) = history_prefix(name) else {
            return Vec::new();
        };
        let handles = match self.handles() {
            Ok(handles) => handles,
            Err(e) => return vec![Err(e)],
        };
        let mut entries = Vec::new();
        for item in handles.history.scan_prefix(prefix).rev().take(n) {
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

    /// Every model's data as it is on disk: entries encoded, and the stopped flag.
    pub fn copies(&self) -> Result<BTreeMap<String, ModelCopy>, StoreError> {
        let handles = self.handles()?;
        let read = |source| StoreError::Read {
            name: "(every model)".to_string(),
            source,
        };
        let mut copies: BTreeMap<String, ModelCopy> = BTreeMap::new();
        for item in handles.history.iter() {
            let (key, value) = item.map_err(read)?;
            let Some(at) = key.iter().position(|b| *b == KEY_SEPARATOR) else {
                continue;
            };
            let name = String::from_utf8_lossy(&key[..at]).into_owned();
            let Some(sequence) = sequence_of(&key, at + 1) else {
                continue;
            };
            copies
                .entry(name)
                .or_default()
                .entries
                .insert(sequence, value.to_vec());
        }
        for item in handles.models.iter() {
            let (key, _) = item.map_err(read)?;
            let name = String::from_utf8_lossy(&key).into_owned();
            let stopped = matches!(self.meta(&name), Ok(Some(meta)) if meta.stopped);
            copies.entry(name).or_default().stopped = stopped;
        }
        Ok(copies)
    }

    /// Replaces model `name`'s data with `copy` in one transaction (an empty copy
    /// forgets the model), and flushes to disk. Nothing is mirrored: this is how a
    /// mirror's copy is taken in.
    pub async fn replace(&self, name: &str, copy: &ModelCopy) -> Result<(), StoreError> {
        let prefix = history_prefix(name)?;
        let meta = serde_json::to_vec(&ModelMeta {
            stopped: copy.stopped,
        })
        .map_err(|e| StoreError::Encode {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        {
            let _writer = self.inner.writer.lock().await;
            let handles = self.handles()?;
            let mut batch = sled::Batch::default();
            for key in handles.history.scan_prefix(prefix).keys() {
                let key = key.map_err(|source| StoreError::Read {
                    name: name.to_string(),
                    source,
                })?;
                batch.remove(key);
            }
            for (sequence, value) in &copy.entries {
                batch.insert(history_key(name, *sequence), value.as_slice());
            }
            let write = || {
                let written: sled::transaction::TransactionResult<(), ()> =
                    (&handles.history, &handles.models).transaction(|(history, models)| {
                        history.apply_batch(&batch)?;
                        if copy.is_empty() {
                            models.remove(name.as_bytes())?;
                        } else {
                            models.insert(name.as_bytes(), meta.as_slice())?;
                        }
                        Ok(())
                    });
                written.map_err(|e| write_error(name, e))
            };
            self.commit(name, write, |_| {})?;
        }
        self.flush_for(name).await
    }

    /// The model's newest history entry, without its rendered template (`history` and
    /// `find` read it whole); an error if that entry cannot be decoded (falling back to an
    /// older one would silently deploy an older version).
    ///
    /// Every reconcile reads it, so it is kept decoded for every model; the rendered
    /// template is left out because it is most of an entry and nothing that reads the
    /// newest entry needs it.
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
        let entry = match self.handles()?.history.scan_prefix(prefix).next_back() {
            None => return Ok(None),
            Some(Ok((key, value))) => {
                let mut entry = decode_entry(name, &key, &value)?;
                entry.record.rendered_template = String::new();
                Arc::new(entry)
            }
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

    /// The model's newest entry (see [`Store::latest`]) and its stopped flag (see
    /// [`Store::is_stopped`]): what every reconcile reads, in one look at the cache when
    /// both are there.
    pub fn latest_and_stopped(
        &self,
        name: &str,
    ) -> Result<(Option<Arc<HistoryEntry>>, bool), StoreError> {
        {
            let cache = self.lock_latest();
            if let (Some(entry), Some(stopped)) = (cache.entries.get(name), cache.stopped.get(name))
            {
                return Ok((Some(entry.clone()), *stopped));
            }
        }
        Ok((self.latest(name)?, self.is_stopped(name)?))
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
        cache.names = None;
        if written.is_ok() {
            known(&mut cache);
        }
        drop(cache);
        if let Err(error) = &written {
            self.reopen_after(error);
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
        self.shared_names().map(|names| names.to_vec())
    }

    /// The names of every model with history or metadata, sorted, as kept between writes
    /// (reading them from the database took a resync of 10,000 models 5% of its time).
    pub fn shared_names(&self) -> Result<Arc<[String]>, StoreError> {
        let generation = {
            let cache = self.lock_latest();
            if let Some(names) = &cache.names {
                return Ok(names.clone());
            }
            cache.generation
        };
        let names: Arc<[String]> = self.read_names()?.into();
        let mut cache = self.lock_latest();
        if cache.generation == generation {
            cache.names = Some(names.clone());
        }
        Ok(names)
    }

    fn read_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for key in self.handles()?.models.iter().keys() {
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

    /// A model's events as last put (opaque to the store), if any.
    pub fn events(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .handles()?
            .events
            .get(name.as_bytes())
            .map_err(|source| StoreError::Read {
                name: name.to_string(),
                source,
            })?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Replaces a model's events. Not flushed and not mirrored: events are not history,
    /// and [`Store::flush`] (or the next history write) makes them durable.
    pub fn put_events(&self, name: &str, events: &[u8]) -> Result<(), StoreError> {
        check_name(name)?;
        self.handles()?
            .events
            .insert(name.as_bytes(), events)
            .map(drop)
            .map_err(|source| StoreError::Write {
                name: name.to_string(),
                source,
            })
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
            let _writer = self.inner.writer.lock().await;
            let meta = self.updated_meta(name, |meta| meta.stopped = stopped)?;
            self.note_unmirrored(&*self.handles()?, name)?;
            if let Some(mirror) = self.mirror() {
                mirror
                    .set_stopped(name, stopped)
                    .await
                    .map_err(|e| Self::mirror_error(name, e))?;
            }
            let handles = self.handles()?;
            self.commit(
                name,
                || {
                    handles
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
        self.flush_for(name).await
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
            let _writer = self.inner.writer.lock().await;
            let handles = self.handles()?;
            self.note_unmirrored(&handles, name)?;
            if let Some(mirror) = self.mirror() {
                mirror
                    .clear(name, meta.is_some())
                    .await
                    .map_err(|e| Self::mirror_error(name, e))?;
            }
            let mut removals = sled::Batch::default();
            for key in handles.history.scan_prefix(prefix).keys() {
                let key = key.map_err(|source| StoreError::Read {
                    name: name.to_string(),
                    source,
                })?;
                removals.remove(key);
            }
            let clear = || {
                let cleared: sled::transaction::TransactionResult<(), ()> =
                    (&handles.history, &handles.models).transaction(|(history, models)| {
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
        self.flush_for(name).await
    }

    /// Flushes a write of `name`'s data; if that fails, the model's cached values (set by
    /// the write, which is not acknowledged) are forgotten.
    async fn flush_for(&self, name: &str) -> Result<(), StoreError> {
        let flushed = self.flush().await;
        if flushed.is_err() {
            let mut cache = self.lock_latest();
            cache.generation += 1;
            cache.entries.remove(name);
            cache.stopped.remove(name);
            cache.names = None;
        }
        flushed
    }

    /// Writes everything buffered to disk.
    ///
    /// sled's `flush_async` was seen to hang when several tasks flushed at once; a
    /// blocking flush on tokio's blocking pool has no such problem and costs the same.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let handles = self.handles()?;
        let flushed = tokio::task::spawn_blocking(move || handles.db.flush()).await;
        let dir = || self.inner.dir.display().to_string();
        let result = match flushed {
            Ok(result) => result
                .map(drop)
                .map_err(|source| StoreError::Flush { dir: dir(), source }),
            Err(join) => Err(StoreError::Flush {
                dir: dir(),
                source: sled::Error::ReportableBug(format!("the flush task failed: {join}")),
            }),
        };
        if let Err(error) = &result {
            self.reopen_after(error);
        }
        result
    }

    /// The sequence number after the model's newest entry. Callers hold the writer lock.
    fn next_sequence(&self, name: &str) -> Result<u64, StoreError> {
        let prefix = history_prefix(name)?;
        match self
            .handles()?
            .history
            .scan_prefix(&prefix)
            .keys()
            .next_back()
        {
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
            .handles()?
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

/// Why the files in `dir` are not a store sled would open as it was, if they are not.
///
/// sled takes a configuration file of 8 bytes or fewer for none, and then reads a data
/// file of garbage as an empty store: every model would be silently forgotten. So a
/// store whose `conf` is cut short or not sled's, or whose `db` has no `conf` beside it,
/// is refused as damaged before sled sees it.
fn damaged_files(dir: &Path) -> Option<String> {
    let conf = dir.join("conf");
    let db_len = std::fs::metadata(dir.join("db")).map_or(0, |m| m.len());
    match std::fs::read(&conf) {
        Ok(text) if text.len() <= 8 => Some(format!(
            "its configuration file {} is cut short ({} bytes)",
            conf.display(),
            text.len()
        )),
        Ok(text) if !text.starts_with(b"segment_size: ") => Some(format!(
            "its configuration file {} is not one sled wrote",
            conf.display()
        )),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && db_len > 0 => Some(format!(
            "its data file holds {db_len} bytes but its configuration file {} is missing",
            conf.display()
        )),
        Err(_) => None,
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

/// The entry as the newest-entry cache keeps it: without its rendered template.
fn without_rendered(entry: &HistoryEntry) -> Arc<HistoryEntry> {
    Arc::new(HistoryEntry {
        record: DeploymentRecord {
            spec: entry.record.spec.clone(),
            deployment_id: entry.record.deployment_id.clone(),
            deployment_time: entry.record.deployment_time,
            rendered_template: String::new(),
            image_digest: entry.record.image_digest.clone(),
        },
        source: entry.source.clone(),
    })
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
pub(crate) mod tests;
