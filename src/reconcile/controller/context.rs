//! The boundaries a reconcile reads from and writes through, and nothing else: Docker,
//! the store, the manifests directory's declarations, the instance and its templates.
//!
//! Kept apart from the caches the loops share ([`super::Controller`]) so that each stage
//! of a reconcile takes only what it touches, and so that readers (the API) get handles
//! to the parts they read ([`super::Readers`]) rather than the reconciler.

use super::decide::FileView;
use crate::desired::render::{Instance, Templates};
use crate::desired::{Desired, Identity, Pipeline};
use crate::reconcile::problem::Problem;
use crate::sources::files::{Declaration, FileDeclarations};
use crate::sources::store::Store;
use crate::swarm::Swarm;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// What a reconcile works against.
pub(super) struct Context {
    /// Docker (counting its calls).
    pub swarm: Arc<dyn Swarm>,
    /// The history store.
    pub store: Store,
    /// The manifests directory's declarations.
    pub declarations: Arc<Declarations>,
    /// This instance's name, environment and network.
    pub instance: Instance,
    /// The compiled templates.
    pub templates: Arc<Templates>,
    /// When images are pinned to digests, and whether tags are followed.
    pub images: super::ImagePolicy,
    /// The registry's recent answers, shared by the workers.
    pub digests: super::images::Digests,
}

impl Context {
    /// The offline pipeline with this instance and its templates.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            instance: &self.instance,
            templates: &self.templates,
        }
    }

    /// Builds a record's stack; its errors stay typed until the status words them.
    ///
    /// The stack is what a reconcile converges to; the record comes back without its
    /// rendered template, which the stored entry already has (the memo keeps every
    /// model's build, and the text is most of a record: about 4 kB with the default
    /// template).
    pub fn build(
        &self,
        entry: &crate::desired::record::HistoryEntry,
    ) -> Result<Arc<Desired>, Problem> {
        let identity = Identity {
            deployment_id: entry.record.deployment_id.clone(),
            deployment_time: entry.record.deployment_time,
            image_digest: entry.record.image_digest.clone(),
        };
        self.pipeline()
            .build(entry.record.spec.clone(), identity, &entry.source)
            .map(|mut desired| {
                desired.record.rendered_template = String::new();
                Arc::new(desired)
            })
            .map_err(|errors| Problem::Invalid {
                source: entry.source.clone(),
                errors,
            })
    }
}

/// The manifests directory's current declarations, kept fresh by the watcher, and the
/// directory itself once known: while it is missing (an unmounted volume, a checkout in
/// progress) the models its files declared are held as they run instead of pruned.
pub struct Declarations {
    files: watch::Receiver<Arc<FileDeclarations>>,
    dir: OnceLock<PathBuf>,
}

impl Declarations {
    pub(super) fn new(files: watch::Receiver<Arc<FileDeclarations>>) -> Self {
        Self {
            files,
            dir: OnceLock::new(),
        }
    }

    pub(super) fn set_dir(&self, dir: PathBuf) {
        let _ = self.dir.set(dir);
    }

    /// The declarations as last scanned.
    pub fn current(&self) -> Arc<FileDeclarations> {
        self.files.borrow().clone()
    }

    /// What the manifests say about `name`, in the terms [`super::decide()`] takes.
    pub fn view(&self, name: &str) -> FileView {
        match file_view(&self.current(), name) {
            FileView::Undeclared => match self.dir.get() {
                Some(dir) if !dir.is_dir() => FileView::DirectoryMissing {
                    dir: dir.display().to_string(),
                },
                _ => FileView::Undeclared,
            },
            view => view,
        }
    }

    /// The manifest that declares `name`, if a file does (such models are not the API's
    /// to change).
    pub fn owner(&self, name: &str) -> Option<String> {
        match file_view(&self.current(), name) {
            FileView::Undeclared | FileView::DirectoryMissing { .. } => None,
            FileView::Declared { origin, .. } | FileView::Invalid { origin, .. } => Some(origin),
            FileView::Conflict { origins } => Some(origins.join(" and ")),
        }
    }
}

/// What `files` says about `name`.
fn file_view(files: &FileDeclarations, name: &str) -> FileView {
    let Some(found) = files.models.get(name) else {
        return FileView::Undeclared;
    };
    match &found.declaration {
        Declaration::Spec { origin, spec } => FileView::Declared {
            origin: origin.to_string(),
            path: origin.path.display().to_string(),
            spec: spec.clone(),
            stale: found.stale.clone(),
        },
        Declaration::Invalid { origin, errors } => FileView::Invalid {
            origin: origin.to_string(),
            errors: errors.clone(),
        },
        Declaration::Conflict { origins } => FileView::Conflict {
            origins: origins.iter().map(ToString::to_string).collect(),
        },
    }
}
