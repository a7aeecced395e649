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
mod tests {
    use super::*;
    use std::fs;

    const MINIMAL: &str = "domain: carls-model.com\nimage: qarlm/server\nrun_id: r1\n";

    fn manifest(build_id: &str) -> String {
        format!("{MINIMAL}build_id: {build_id}\n")
    }

    fn write(dir: &Path, relative: &str, text: &str) -> PathBuf {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn build_id(declarations: &FileDeclarations, name: &str) -> String {
        declarations.models[name].spec().unwrap().build_id.clone()
    }

    fn names(declarations: &FileDeclarations) -> Vec<&str> {
        declarations.models.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_valid_manifest_declares_its_model_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "carls_model.yml", &manifest("b1"));
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        assert_eq!(names(&found), ["carls_model"]);
        let model = &found.models["carls_model"];
        assert_eq!(build_id(&found, "carls_model"), "b1");
        assert_eq!(model.files(), [path.as_path()]);
        assert_eq!(model.stale, None);
        assert!(model.problems().is_empty());
        assert!(found.broken.is_empty());
    }

    #[test]
    fn an_invalid_manifest_is_reported_under_its_name_or_file_stem() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "typo.yml",
            &format!("{}scael: 3\n", manifest("b1")),
        );
        write(dir.path(), "named.yml", "name: real_name\nport: eighty\n");
        write(dir.path(), "listed.yml", "name: [a, b]\n");
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        assert_eq!(names(&found), ["listed", "real_name", "typo"]);
        let Declaration::Invalid { origin, errors } = &found.models["typo"].declaration else {
            panic!("{:?}", found.models["typo"]);
        };
        assert_eq!(origin.path, dir.path().join("typo.yml"));
        assert_eq!(
            errors[0].to_string(),
            "scael: unknown field: did you mean scale?"
        );
        let problem = &found.models["typo"].problems()[0];
        assert!(
            problem.ends_with("typo.yml: scael: unknown field: did you mean scale?"),
            "{problem}"
        );
        assert!(matches!(
            found.models["real_name"].declaration,
            Declaration::Invalid { .. }
        ));
    }

    #[test]
    fn unnamed_invalid_documents_of_a_multi_document_file_are_each_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "team.yml",
            &format!(
                "{}---\n{}---\nname: a\n{}",
                manifest("x"),
                manifest("y"),
                manifest("z")
            ),
        );
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        assert_eq!(names(&found), ["a", "team#1", "team#2"]);
        assert!(found.models["a"].spec().is_some());
        assert!(matches!(
            found.models["team#2"].declaration,
            Declaration::Invalid { .. }
        ));
    }

    #[test]
    fn two_documents_of_one_file_declaring_one_name_conflict() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "team.yml",
            &format!(
                "name: m\n{}---\nname: m\n{}",
                manifest("b1"),
                manifest("b2")
            ),
        );
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        let Declaration::Conflict { origins } = &found.models["m"].declaration else {
            panic!("{:?}", found.models["m"]);
        };
        assert_eq!(
            origins.iter().map(|o| o.doc).collect::<Vec<_>>(),
            [Some(1), Some(2)]
        );
        assert_eq!(found.models["m"].spec(), None);
        let problem = &found.models["m"].problems()[0];
        assert!(problem.contains("team.yml#1 and "), "{problem}");
        assert!(
            problem.contains("team.yml#2: none of them is applied"),
            "{problem}"
        );
    }

    #[test]
    fn two_files_declaring_one_name_conflict_and_each_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a/m.yml", &manifest("b1"));
        let other = write(
            dir.path(),
            "b/copy.yml",
            &format!("name: m\n{}", manifest("b2")),
        );
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        let model = &found.models["m"];
        assert!(matches!(model.declaration, Declaration::Conflict { .. }));
        assert_eq!(model.files(), [dir.path().join("a/m.yml"), other.clone()]);
        let problem = &model.problems()[0];
        assert!(
            problem.contains(&format!("{}", dir.path().join("a/m.yml").display())),
            "{problem}"
        );
        assert!(
            problem.contains(&format!("{}", other.display())),
            "{problem}"
        );

        fs::remove_file(&other).unwrap();
        let resolved = scan(dir.path(), &found, &Fill::default());
        assert_eq!(build_id(&resolved, "m"), "b1");
        assert_eq!(
            changed_names(&found, &resolved),
            BTreeSet::from(["m".to_string()])
        );
    }

    #[test]
    fn a_file_that_breaks_keeps_declaring_its_last_good_content_as_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "team.yml",
            &format!(
                "name: a\n{}---\nname: b\n{}",
                manifest("a1"),
                manifest("b1")
            ),
        );
        write(dir.path(), "c.yml", &manifest("c1"));
        let good = scan(dir.path(), &FileDeclarations::default(), &Fill::default());

        fs::write(&path, "name: a\ndomain: [unclosed\n").unwrap();
        let broken = scan(dir.path(), &good, &Fill::default());
        assert_eq!(names(&broken), ["a", "b", "c"]);
        assert_eq!(build_id(&broken, "a"), "a1");
        let error = &broken.broken[&path];
        assert!(
            error.starts_with(&format!("{}: not valid YAML: ", path.display())),
            "{error}"
        );
        assert_eq!(broken.models["a"].stale.as_ref(), Some(error));
        assert_eq!(broken.models["b"].stale.as_ref(), Some(error));
        assert_eq!(broken.models["c"].stale, None);
        assert!(
            broken.models["a"].problems()[0].ends_with("using the file's last readable content")
        );
        assert_eq!(
            changed_names(&good, &broken),
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );

        let still_broken = scan(dir.path(), &broken, &Fill::default());
        assert_eq!(
            still_broken, broken,
            "the last good content is carried from scan to scan"
        );

        fs::write(&path, format!("name: a\n{}", manifest("a2"))).unwrap();
        let fixed = scan(dir.path(), &still_broken, &Fill::default());
        assert_eq!(names(&fixed), ["a", "c"]);
        assert_eq!(build_id(&fixed, "a"), "a2");
        assert_eq!(fixed.models["a"].stale, None);
        assert!(fixed.broken.is_empty());
    }

    #[test]
    fn a_broken_file_keeps_a_conflict_it_was_part_of() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "m.yml", &manifest("b1"));
        write(
            dir.path(),
            "other.yml",
            &format!("name: m\n{}", manifest("b2")),
        );
        let conflict = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        fs::write(&first, "{").unwrap();
        let broken = scan(dir.path(), &conflict, &Fill::default());
        assert!(matches!(
            broken.models["m"].declaration,
            Declaration::Conflict { .. }
        ));
        assert!(broken.models["m"].stale.is_some());
    }

    #[test]
    fn a_broken_file_with_no_previous_content_declares_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "m.yml", "a: [\n");
        let big = write(dir.path(), "big.yml", &"#".repeat(1024 * 1024 + 1));
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        assert!(found.models.is_empty());
        assert_eq!(found.broken.keys().collect::<Vec<_>>(), [&big, &path]);
        assert!(
            found.broken[&big].contains("limited to 1 MiB"),
            "{}",
            found.broken[&big]
        );
    }

    #[test]
    fn deleting_a_broken_file_withdraws_its_stale_declarations() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "m.yml", &manifest("b1"));
        let good = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        fs::write(&path, "[").unwrap();
        let broken = scan(dir.path(), &good, &Fill::default());
        fs::remove_file(&path).unwrap();
        let gone = scan(dir.path(), &broken, &Fill::default());
        assert!(gone.models.is_empty());
        assert!(gone.broken.is_empty());
        assert_eq!(gone.files().count(), 0);
    }

    #[test]
    fn hidden_temporary_and_swap_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".m.yml",
            ".m.yml.swp",
            "m.yml~",
            "4913",
            "m.yml.tmp",
            "#m.yml#",
            ".hidden/x.yml",
            "notes.txt",
        ] {
            write(dir.path(), name, "not: [yaml\n");
        }
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        assert!(found.models.is_empty(), "{:?}", found.models);
        assert!(found.broken.is_empty(), "{:?}", found.broken);
    }

    #[test]
    fn nested_directories_are_read_and_yaml_extensions_both_count() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "top.yml", &manifest("t"));
        write(dir.path(), "team/a/deep.yaml", &manifest("d"));
        write(dir.path(), "team/b/other.yml", &manifest("o"));
        let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        assert_eq!(names(&found), ["deep", "other", "top"]);
        assert_eq!(found.files().count(), 3);
    }

    #[test]
    fn a_missing_directory_declares_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let found = scan(
            &dir.path().join("absent"),
            &FileDeclarations::default(),
            &Fill::default(),
        );
        assert_eq!(found, FileDeclarations::default());
    }

    #[test]
    fn a_deleted_subdirectory_withdraws_its_models() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "keep.yml", &manifest("k"));
        write(dir.path(), "sub/gone.yml", &manifest("g"));
        let before = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        fs::remove_dir_all(dir.path().join("sub")).unwrap();
        let after = scan(dir.path(), &before, &Fill::default());
        assert_eq!(names(&after), ["keep"]);
        assert_eq!(
            changed_names(&before, &after),
            BTreeSet::from(["gone".to_string()])
        );
    }

    #[test]
    fn changed_names_lists_every_kind_of_change_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "same.yml", &manifest("s"));
        write(dir.path(), "edited.yml", &manifest("e1"));
        write(dir.path(), "removed.yml", &manifest("r"));
        write(dir.path(), "breaks.yml", &manifest("b"));
        write(dir.path(), "moves.yml", &manifest("m"));
        let old = scan(dir.path(), &FileDeclarations::default(), &Fill::default());

        write(dir.path(), "edited.yml", &manifest("e2"));
        fs::remove_file(dir.path().join("removed.yml")).unwrap();
        write(dir.path(), "added.yml", &manifest("a"));
        write(
            dir.path(),
            "breaks.yml",
            &format!("{}port: x\n", manifest("b")),
        );
        fs::remove_file(dir.path().join("moves.yml")).unwrap();
        write(
            dir.path(),
            "sub/moved.yml",
            &format!("name: moves\n{}", manifest("m")),
        );
        let new = scan(dir.path(), &old, &Fill::default());

        let expected: BTreeSet<String> = ["added", "breaks", "edited", "moves", "removed"]
            .map(String::from)
            .into();
        assert_eq!(changed_names(&old, &new), expected);
        assert!(changed_names(&new, &new).is_empty());
    }

    #[test]
    fn a_directory_that_cannot_be_listed_keeps_its_files_declared_as_stale() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("manifests");
        write(&dir, "m.yml", &manifest("b1"));
        let good = scan(&dir, &FileDeclarations::default(), &Fill::default());
        // A file where the directory was cannot be listed (and, unlike permissions, this
        // holds for every user).
        fs::remove_dir_all(&dir).unwrap();
        fs::write(&dir, "").unwrap();
        let unlistable = scan(&dir, &good, &Fill::default());
        assert_eq!(build_id(&unlistable, "m"), "b1");
        let error = unlistable.models["m"].stale.clone().unwrap();
        assert!(error.contains("cannot list directory"), "{error}");
        assert_eq!(unlistable.broken[&dir], error);
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_file_keeps_its_models_declared_as_stale() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "m.yml", &manifest("b1"));
        let good = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(&path).is_ok() {
            // Running with privileges that ignore permissions: nothing to observe.
            return;
        }
        let unreadable = scan(dir.path(), &good, &Fill::default());
        assert_eq!(build_id(&unreadable, "m"), "b1");
        assert!(
            unreadable.broken[&path].contains("cannot read"),
            "{:?}",
            unreadable.broken
        );
    }
}
