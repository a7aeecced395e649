//! What a reconcile remembers from the last one of the same model, so that a resync of
//! converged models does no work twice: the stack each deployment built to (records never
//! change, so a deployment renders once), and the services the last plan found in sync.
//!
//! Both are caches: dropping them changes how much work a reconcile does, never what it
//! decides.

use super::context::Context;
use crate::desired::Desired;
use crate::desired::record::{HistoryEntry, Source};
use crate::reconcile::observe::FastMap;
use crate::reconcile::plan::InSync;
use crate::reconcile::problem::Problem;
use std::sync::{Arc, Mutex, MutexGuard};

/// A model's desired stack, built once per deployment.
struct Built {
    deployment_id: String,
    source: Source,
    result: Result<Arc<Desired>, Problem>,
}

impl Built {
    /// Whether the build must be done again because of files it reads: a secret's or
    /// config's file changed since, or the build failed and the templates directory may
    /// have the missing file by now (a checkout writes files one by one).
    fn reads_files_anew(&self, cx: &Context) -> bool {
        match &self.result {
            Ok(desired) => desired.stack.objects.iter().any(|object| {
                let stale = object.read_from.as_ref().is_some_and(|f| f.is_stale());
                if stale {
                    tracing::info!(model = %desired.record.spec.name, object = %object.key, "the {} file changed; building the stack again", object.kind.word());
                }
                stale
            }),
            Err(_) => cx.templates.has_dir(),
        }
    }
}

/// Per model: the last deployment's build and the last plan's in-sync services.
#[derive(Default)]
pub(super) struct Memo {
    built: Mutex<FastMap<String, Built>>,
    in_sync: Mutex<FastMap<String, Arc<[InSync]>>>,
}

/// Each change to either map is one insert or remove: a poisoned map is consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memo {
    /// The stack a stored record renders to, built at most once per deployment.
    pub fn desired_for(&self, cx: &Context, entry: &HistoryEntry) -> Result<Arc<Desired>, Problem> {
        let name = &entry.record.spec.name;
        let mut built = lock(&self.built);
        if let Some(b) = built.get(name).filter(|b| {
            b.deployment_id == entry.record.deployment_id
                && b.source == entry.source
                && !b.reads_files_anew(cx)
        }) {
            return b.result.clone();
        }
        let result = cx.build(entry);
        built.insert(
            name.clone(),
            Built {
                deployment_id: entry.record.deployment_id.clone(),
                source: entry.source.clone(),
                result: result.clone(),
            },
        );
        result
    }

    /// What the last plan of `name` found in sync (empty if nothing).
    pub fn in_sync(&self, name: &str) -> Arc<[InSync]> {
        lock(&self.in_sync)
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new([]))
    }

    /// Keeps what a plan of `name` found in sync for the next one. A converged model's
    /// plan finds what the last one did, and the entry is left as it is.
    pub fn keep_in_sync(&self, name: &str, in_sync: &[InSync]) {
        let mut memo = lock(&self.in_sync);
        match memo.get_mut(name) {
            Some(kept) if **kept == *in_sync => {}
            Some(kept) if !in_sync.is_empty() => *kept = Arc::from(in_sync),
            Some(_) => {
                memo.remove(name);
            }
            None if !in_sync.is_empty() => {
                memo.insert(name.to_string(), Arc::from(in_sync));
            }
            None => {}
        }
    }
}
