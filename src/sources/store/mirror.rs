//! A second copy of the store, written before the store acknowledges a write.
//!
//! The store lives on one node's disk. A [`Mirror`] keeps the same histories where
//! other copies of mlmodel can read them (mlmodel keeps them in Swarm's raft store, see
//! `crate::reconcile::journal`): every write goes to the mirror first, and is made
//! locally only once the mirror holds it, so nothing acknowledged is missing from it.
//! A local write that then fails is taken back from the mirror.

use async_trait::async_trait;
use std::collections::BTreeMap;

/// Why the mirror refused or failed a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MirrorError {
    /// What went wrong, in words naming where the mirror is.
    pub message: String,
}

/// Where the store's writes are copied before they are acknowledged.
#[async_trait]
pub trait Mirror: Send + Sync + std::fmt::Debug {
    /// Holds entry `sequence` of model `name` (its encoded form), and clears the
    /// model's stopped flag.
    async fn put(&self, name: &str, sequence: u64, entry: &[u8]) -> Result<(), MirrorError>;
    /// Takes back an entry whose local write failed after [`Mirror::put`] (best effort:
    /// the next sync settles what is left).
    async fn take_back(&self, name: &str, sequence: u64);
    /// Sets or clears the model's stopped flag.
    async fn set_stopped(&self, name: &str, stopped: bool) -> Result<(), MirrorError>;
    /// Forgets the model's history, leaving it stopped if `stop`.
    async fn clear(&self, name: &str, stop: bool) -> Result<(), MirrorError>;
}

/// One model's data as a whole, to compare and copy between the store and a mirror.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCopy {
    /// The history entries, encoded, by sequence number.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Whether the model is stopped.
    pub stopped: bool,
}

impl ModelCopy {
    /// Whether there is nothing to keep: no history and not stopped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && !self.stopped
    }
}
