//! The manifests directory as a source of declarations.
//!
//! [`scan`] reads the whole directory and says, per model name, what the files declare:
//! one valid spec, an invalid one, or a conflict between several documents. The
//! [`ManifestWatcher`] runs it again whenever the directory changes.
//!
//! A file that cannot be read or is not YAML does not withdraw its models: a typo must not
//! prune a running model. Its last readable content is kept and the models it declared are
//! marked stale, with the error, until the file is fixed or deleted.

mod watcher;

pub use watcher::{
    ChangesReceiver, DeclarationsReceiver, HealthReport, ManifestWatcher, WatchConfig, WatchError,
    WatcherHealth,
};

use crate::desired::manifest::{self, Fill, ManifestError, Origin};
use crate::desired::record::ModelSpec;
use crate::desired::validate::FieldError;
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the manifests directory declares, per model name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileDeclarations {
    /// Per model name, what the files declare about it.
    pub models: BTreeMap<String, FileDeclaration>,
    /// Files and directories that could not be read, or files that are not YAML, with the
    /// error (which names the path).
    pub broken: BTreeMap<PathBuf, String>,
    /// Per manifest file, its documents as last read successfully; kept so that a file
    /// that breaks still declares what it declared before.
    files: BTreeMap<PathBuf, Vec<Document>>,
}

/// What the files declare about one model.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDeclaration {
    /// The declaration.
    pub declaration: Declaration,
    /// Set when a file behind this declaration is broken now and its last readable content
    /// is used instead: the error that broke it.
    pub stale: Option<String>,
}

/// What the files declare about one model name.
// Almost every declaration is a `Spec`: boxing it would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    /// Exactly one document declares the model, and it parsed.
    Spec {
        /// The document.
        origin: Origin,
        /// The declared spec (shared: every reconcile of the model reads it).
        spec: Arc<ModelSpec>,
    },
    /// Exactly one document declares the model, and it did not parse as a spec.
    Invalid {
        /// The document.
        origin: Origin,
        /// Every problem found in it.
        errors: Vec<FieldError>,
    },
    /// Several documents declare the same model: none of them is applied.
    Conflict {
        /// The documents, sorted.
        origins: Vec<Origin>,
    },
}

/// One document as last read: the model it names and what it declares.
#[derive(Debug, Clone, PartialEq)]
struct Document {
    name: String,
    origin: Origin,
    spec: Result<ModelSpec, Vec<FieldError>>,
}

impl FileDeclarations {
    /// The manifest files the declarations were read from, including broken files whose
    /// last readable content is still in use.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }
}

impl FileDeclaration {
    /// The spec to apply, when exactly one valid document declares the model.
    pub fn spec(&self) -> Option<&ModelSpec> {
        match &self.declaration {
            Declaration::Spec { spec, .. } => Some(spec),
            _ => None,
        }
    }

    /// The files the declaration comes from, sorted and without repeats.
    pub fn files(&self) -> Vec<&Path> {
        let mut files: Vec<&Path> = match &self.declaration {
            Declaration::Spec { origin, .. } | Declaration::Invalid { origin, .. } => {
                vec![origin.path.as_path()]
            }
            Declaration::Conflict { origins } => {
                origins.iter().map(|origin| origin.path.as_path()).collect()
            }
        };
        files.sort();
        files.dedup();
        files
    }

    /// What a user should fix, one message per problem; empty when nothing is wrong.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.declaration {
            Declaration::Spec { .. } => {}
            Declaration::Invalid { origin, errors } => {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                problems.push(format!("{origin}: {}", errors.join("; ")));
            }
            Declaration::Conflict { origins } => {
                let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
                problems.push(format!(
                    "declared more than once, in {}: none of them is applied until only one declares the model",
                    origins.join(" and ")
                ));
            }
        }
        if let Some(error) = &self.stale {
            problems.push(format!("{error}: using the file's last readable content"));
        }
        problems
    }
}

/// Reads every manifest file under `dir` and says what each model name is declared as.
///
/// `previous` is the last scan: a file that cannot be read or parsed as YAML keeps
/// declaring what it declared there. A missing `dir` declares nothing.
pub fn scan(dir: &Path, previous: &FileDeclarations, fill: &Fill) -> FileDeclarations {
    let listing = list_manifest_files(dir);
    let mut files = BTreeMap::new();
    let mut broken = BTreeMap::new();
    // Files whose last readable content stands in for what cannot be read now.
    let mut stale = BTreeMap::new();
    for path in listing.files {
        match manifest::read_manifest(&path, fill) {
            Ok(docs) => {
                files.insert(path, docs.into_iter().map(Document::from).collect());
            }
            // Deleted between listing and reading: it is gone, not broken.
            Err(ManifestError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(error) => {
                let error = error.to_string();
                if let Some(docs) = previous.files.get(&path) {
                    files.insert(path.clone(), docs.clone());
                    stale.insert(path.clone(), error.clone());
                }
                broken.insert(path, error);
            }
        }
    }
    for (unreadable, error) in listing.unreadable_dirs {
        for (path, docs) in &previous.files {
            if path.starts_with(&unreadable) && !files.contains_key(path) {
                files.insert(path.clone(), docs.clone());
                stale.insert(path.clone(), error.clone());
            }
        }
        broken.insert(unreadable, error);
    }
    let models = declarations(&files, &stale);
    FileDeclarations {
        models,
        broken,
        files,
    }
}

/// Names whose declaration differs between `old` and `new`: changed spec, validity,
/// conflict, origin or staleness, and names that appeared or disappeared.
pub fn changed_names(old: &FileDeclarations, new: &FileDeclarations) -> BTreeSet<String> {
    old.models
        .keys()
        .chain(new.models.keys())
        .filter(|name| old.models.get(*name) != new.models.get(*name))
        .cloned()
        .collect()
}

impl From<manifest::ManifestDoc> for Document {
    fn from(doc: manifest::ManifestDoc) -> Self {
        let name = match (&doc.spec, doc.name) {
            (Ok(spec), _) => spec.name.clone(),
            (Err(_), Some(name)) => name,
            (Err(_), None) => unnamed_document_key(&doc.origin),
        };
        Document {
            name,
            origin: doc.origin,
            spec: doc.spec,
        }
    }
}

/// The key an invalid document without a usable name is reported under: its file's stem,
/// and its number when the file holds several documents (so that two unnamed documents are
/// two errors rather than a conflict, and a real model of the stem's name is not shadowed).
fn unnamed_document_key(origin: &Origin) -> String {
    let file = origin
        .path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file.trim_end_matches(".yaml").trim_end_matches(".yml");
    match origin.doc {
        Some(doc) => format!("{stem}#{doc}"),
        None => stem.to_string(),
    }
}

/// Groups every document by model name; `stale` holds the files read from an earlier scan,
/// with the error that prevents reading them now.
fn declarations(
    files: &BTreeMap<PathBuf, Vec<Document>>,
    stale: &BTreeMap<PathBuf, String>,
) -> BTreeMap<String, FileDeclaration> {
    let mut by_name: BTreeMap<&str, Vec<(&Document, Option<String>)>> = BTreeMap::new();
    for (path, docs) in files {
        let stale = stale.get(path).cloned();
        for doc in docs {
            by_name
                .entry(doc.name.as_str())
                .or_default()
                .push((doc, stale.clone()));
        }
    }
    by_name
        .into_iter()
        .map(|(name, docs)| {
            let mut reasons: Vec<String> = docs.iter().filter_map(|(_, s)| s.clone()).collect();
            reasons.sort();
            reasons.dedup();
            let stale = (!reasons.is_empty()).then(|| reasons.join("; "));
            let declaration = match docs.as_slice() {
                [(doc, _)] => match &doc.spec {
                    Ok(spec) => Declaration::Spec {
                        origin: doc.origin.clone(),
                        spec: Arc::new(spec.clone()),
                    },
                    Err(errors) => Declaration::Invalid {
                        origin: doc.origin.clone(),
                        errors: errors.clone(),
                    },
                },
                several => {
                    let mut origins: Vec<Origin> =
                        several.iter().map(|(doc, _)| doc.origin.clone()).collect();
                    origins.sort();
                    Declaration::Conflict { origins }
                }
            };
            (name.to_string(), FileDeclaration { declaration, stale })
        })
        .collect()
}

/// The manifest files under a directory, and the directories that could not be listed.
#[derive(Debug, Default)]
struct Listing {
    files: Vec<PathBuf>,
    unreadable_dirs: Vec<(PathBuf, String)>,
}

/// Lists manifest files under `dir` recursively, the way [`manifest::find_manifest_files`]
/// does (hidden directories skipped, symlinked files followed), but a directory that cannot
/// be listed is reported instead of failing the whole walk: its files stay declared.
/// Directories that vanish during the walk, `dir` included, simply hold nothing.
fn list_manifest_files(dir: &Path) -> Listing {
    let mut listing = Listing::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                let error = format!("{}: cannot list directory: {e}", current.display());
                listing.unreadable_dirs.push((current, error));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let error = format!("{}: cannot list directory: {e}", current.display());
                    listing.unreadable_dirs.push((current.clone(), error));
                    break;
                }
            };
            // The type comes from the directory listing (no symlink following); an entry
            // whose type cannot be read vanished meanwhile.
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if file_type.is_dir() {
                if !hidden {
                    pending.push(path);
                }
            } else if manifest::is_manifest_file(&path) && path.is_file() {
                listing.files.push(path);
            }
        }
    }
    listing.files.sort();
    listing
}

#[cfg(test)]
mod tests;
