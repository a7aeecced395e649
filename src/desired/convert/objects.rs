//! Which secrets and configs a stack uses, and each service's references to them.
//!
//! Names follow `docker stack deploy` (`<stack>_<key>`, or the object's `name:`; an
//! external object by its name or key), with a content hash appended to every object the
//! stack creates (see [`ObjectSpec`]). A reference's target defaults to its key, its
//! owner to `0:0` and its mode to `0444`, as the CLI fills them; references are sorted by
//! name, as the CLI sorts them, so that their order in the file does not restart tasks.
//!
//! File content is read through [`Files`], so conversion itself touches no disk: a
//! server reads relative to its templates directory, a test from memory.

use super::scope;
use crate::desired::compose::{
    ComposeError, ComposeFile, ComposeWarning, FileObject, FileReference, ObjectKind,
};
use crate::desired::stack::{FileStamp, OBJECT_HASH_LEN, ObjectSpec, labels};
use bollard::models::{
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets,
};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

/// Where `file:` paths are read from.
pub trait Files {
    /// The content of `file` and, for a file on disk, its stamp; the error says why not.
    fn read(&self, file: &str) -> Result<(Vec<u8>, Option<FileStamp>), String>;
}

/// No files at all: the built-in templates have no directory to read from.
pub struct NoFiles;

impl Files for NoFiles {
    fn read(&self, file: &str) -> Result<(Vec<u8>, Option<FileStamp>), String> {
        Err(format!(
            "cannot read {file:?}: file: is read relative to the templates directory, and the built-in templates have none; pass --templates"
        ))
    }
}

/// Files inside one directory; a path that leaves it is refused.
pub struct FilesIn(pub PathBuf);

impl Files for FilesIn {
    fn read(&self, file: &str) -> Result<(Vec<u8>, Option<FileStamp>), String> {
        let relative = Path::new(file);
        let escapes = relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes || file.is_empty() {
            return Err(format!(
                "expected a path inside the templates directory, such as secrets/token.txt, found {file:?}"
            ));
        }
        let path = self.0.join(relative);
        let inside = match (path.canonicalize(), self.0.canonicalize()) {
            (Ok(real), Ok(dir)) => real.starts_with(dir),
            (Err(e), _) | (_, Err(e)) => {
                return Err(format!("cannot read {}: {e}", path.display()));
            }
        };
        if !inside {
            return Err(format!(
                "{} leads outside the templates directory (through a symbolic link)",
                path.display()
            ));
        }
        let stamp = FileStamp::of(path.clone())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let data =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok((data, Some(stamp)))
    }
}

/// Files held in memory, by path (for tests and offline checks).
impl Files for BTreeMap<String, Vec<u8>> {
    fn read(&self, file: &str) -> Result<(Vec<u8>, Option<FileStamp>), String> {
        self.get(file)
            .map(|data| (data.clone(), None))
            .ok_or_else(|| format!("cannot read {file:?}: no such file"))
    }
}

/// Swarm's limits on an object's content, in bytes.
fn max_size(kind: ObjectKind) -> usize {
    match kind {
        ObjectKind::Secret => 500 * 1024,
        ObjectKind::Config => 1000 * 1024,
    }
}

/// Swarm's grammar for object names (at most 64 characters).
static OBJECT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?$").expect("a valid pattern")
});
const MAX_OBJECT_NAME: usize = 64;

/// The objects the services use, each resolved once, by kind and key.
#[derive(Debug, Default)]
pub struct ObjectPlan {
    names: BTreeMap<(ObjectKind, String), String>,
    /// The objects, sorted by kind and name.
    pub objects: Vec<ObjectSpec>,
}

/// Resolves every secret and config some service references; problems go to `errors`,
/// declared objects no service uses to `warnings`.
pub fn plan(
    stack_name: &str,
    compose: &ComposeFile,
    files: &dyn Files,
    errors: &mut Vec<ComposeError>,
    warnings: &mut Vec<ComposeWarning>,
) -> ObjectPlan {
    let mut used: BTreeSet<(ObjectKind, &str)> = BTreeSet::new();
    for service in compose.services.values() {
        used.extend(
            service
                .secrets
                .iter()
                .map(|r| (ObjectKind::Secret, r.source.as_str())),
        );
        used.extend(
            service
                .configs
                .iter()
                .map(|r| (ObjectKind::Config, r.source.as_str())),
        );
        let credential = service
            .credential_spec
            .as_ref()
            .and_then(|c| c.config.as_deref());
        used.extend(credential.map(|key| (ObjectKind::Config, key)));
    }
    let mut plan = ObjectPlan::default();
    for kind in [ObjectKind::Secret, ObjectKind::Config] {
        let declared = match kind {
            ObjectKind::Secret => &compose.secrets,
            ObjectKind::Config => &compose.configs,
        };
        for (key, object) in declared {
            let path = format!("{}.{key}", kind.section());
            if !used.contains(&(kind, key.as_str())) {
                warnings.push(ComposeWarning {
                    path,
                    message: format!("not created: no service uses this {}", kind.word()),
                });
                continue;
            }
            if let Some(spec) = object_spec(stack_name, kind, key, object, files, &path, errors) {
                plan.names.insert((kind, key.clone()), spec.name.clone());
                plan.objects.push(spec);
            }
        }
    }
    plan.objects
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    plan
}

fn object_spec(
    stack_name: &str,
    kind: ObjectKind,
    key: &str,
    object: &FileObject,
    files: &dyn Files,
    path: &str,
    errors: &mut Vec<ComposeError>,
) -> Option<ObjectSpec> {
    let docker_name = object
        .name
        .clone()
        .unwrap_or_else(|| scope(stack_name, key));
    let mut error = |at: String, message: String| {
        errors.push(ComposeError { path: at, message });
        None
    };
    if object.external {
        return Some(ObjectSpec {
            kind,
            key: key.to_string(),
            name: docker_name.clone(),
            docker_name,
            external: true,
            ..ObjectSpec::default()
        });
    }
    let (data, read_from) = match &object.file {
        Some(file) if object.driver.is_none() => match files.read(file) {
            Ok(read) => read,
            Err(message) => return error(format!("{path}.file"), message),
        },
        _ => (Vec::new(), None),
    };
    if data.len() > max_size(kind) {
        return error(
            format!("{path}.file"),
            format!(
                "the file has {} bytes; a swarm {} holds at most {} bytes",
                data.len(),
                kind.word(),
                max_size(kind)
            ),
        );
    }
    let mut object_labels = object.labels.clone();
    object_labels.insert(labels::STACK_NAMESPACE.to_string(), stack_name.to_string());
    let mut spec = ObjectSpec {
        kind,
        key: key.to_string(),
        name: String::new(),
        docker_name: docker_name.clone(),
        external: false,
        data,
        labels: object_labels,
        driver: object
            .driver
            .clone()
            .map(|driver| (driver, object.driver_opts.clone())),
        templating: object.template_driver.clone(),
        read_from,
    };
    spec.name = spec.hashed_name(&docker_name);
    if !OBJECT_NAME.is_match(&spec.name) || spec.name.len() > MAX_OBJECT_NAME {
        let room = MAX_OBJECT_NAME.saturating_sub(OBJECT_HASH_LEN + 1);
        return error(
            path.to_string(),
            format!(
                "{word} name {docker_name:?} cannot be used: mlmodel names the {word} {:?} and Swarm allows at most {MAX_OBJECT_NAME} letters, digits, '-', '_' and '.', starting and ending with a letter or digit; keep {docker_name:?} to {room} such characters (shorten the key or set a shorter name)",
                spec.name,
                word = kind.word(),
            ),
        );
    }
    Some(spec)
}

/// The secret references of the service `key`, sorted as Docker sorts them.
pub fn secrets(
    key: &str,
    references: &[FileReference],
    plan: &ObjectPlan,
    errors: &mut Vec<ComposeError>,
) -> Option<Vec<TaskSpecContainerSpecSecrets>> {
    let resolved = resolve(key, ObjectKind::Secret, references, plan, errors);
    let refs: Vec<_> = resolved
        .into_iter()
        .map(|(name, file)| TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(file.name),
                uid: Some(file.uid),
                gid: Some(file.gid),
                mode: Some(file.mode),
            }),
            secret_id: None,
            secret_name: Some(name),
        })
        .collect();
    (!refs.is_empty()).then_some(refs)
}

/// The config references of the service `key`, sorted as Docker sorts them, with the
/// runtime reference of a credential spec read from the config `credential` (its key).
pub fn configs(
    key: &str,
    references: &[FileReference],
    credential: Option<&str>,
    plan: &ObjectPlan,
    errors: &mut Vec<ComposeError>,
) -> Option<Vec<TaskSpecContainerSpecConfigs>> {
    let resolved = resolve(key, ObjectKind::Config, references, plan, errors);
    let mut refs: Vec<_> = resolved
        .into_iter()
        .map(|(name, file)| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(file.name),
                uid: Some(file.uid),
                gid: Some(file.gid),
                mode: Some(file.mode),
            }),
            runtime: None,
            config_id: None,
            config_name: Some(name),
        })
        .collect();
    if let Some(name) = credential.and_then(|c| credential_config(key, c, plan, errors)) {
        // After the file references of the same name, as the CLI lists them.
        refs.push(TaskSpecContainerSpecConfigs {
            file: None,
            runtime: Some(Default::default()),
            config_id: None,
            config_name: Some(name),
        });
        refs.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    }
    (!refs.is_empty()).then_some(refs)
}

/// The name of the config a credential spec reads (`credential_spec.config`, a key); the
/// spec itself holds the name until the config's id is known at write time.
pub fn credential_config(
    key: &str,
    credential: &str,
    plan: &ObjectPlan,
    errors: &mut Vec<ComposeError>,
) -> Option<String> {
    let name = plan
        .names
        .get(&(ObjectKind::Config, credential.to_string()))
        .cloned();
    if name.is_none() {
        let declared = errors
            .iter()
            .any(|e| e.path.starts_with(&format!("configs.{credential}")));
        if !declared {
            errors.push(ComposeError {
                path: format!("services.{key}.credential_spec.config"),
                message: format!(
                    "undefined config {credential:?}: declare it under the top-level configs"
                ),
            });
        }
    }
    name
}

/// A reference's file in the container, defaults filled in.
struct Target {
    name: String,
    uid: String,
    gid: String,
    mode: u32,
}

/// Each reference's object name and file, sorted by name then target; a reference to an
/// undeclared object, or two to one target, is an error.
fn resolve(
    key: &str,
    kind: ObjectKind,
    references: &[FileReference],
    plan: &ObjectPlan,
    errors: &mut Vec<ComposeError>,
) -> Vec<(String, Target)> {
    let section = kind.section();
    let mut targets = BTreeSet::new();
    let mut resolved = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let path = format!("services.{key}.{section}[{i}]");
        let Some(name) = plan.names.get(&(kind, reference.source.clone())) else {
            // An object that failed to read is reported at its declaration already.
            let declared = errors.iter().any(|e| {
                e.path
                    .starts_with(&format!("{section}.{}", reference.source))
            });
            if !declared {
                errors.push(ComposeError {
                    path,
                    message: format!(
                        "undefined {} {:?}: declare it under the top-level {section}",
                        kind.word(),
                        reference.source
                    ),
                });
            }
            continue;
        };
        let target = reference
            .target
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| reference.source.clone());
        if !targets.insert(target.clone()) {
            errors.push(ComposeError {
                path,
                message: format!(
                    "duplicate {} target for {name} not allowed: two references mount {target:?}",
                    kind.word()
                ),
            });
            continue;
        }
        resolved.push((
            name.clone(),
            Target {
                name: target,
                uid: or_root(reference.uid.as_deref()),
                gid: or_root(reference.gid.as_deref()),
                mode: reference.mode.unwrap_or(0o444),
            },
        ));
    }
    resolved.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    resolved
}

/// An owner id, `0` when absent or empty, as the CLI fills it.
fn or_root(id: Option<&str>) -> String {
    id.filter(|id| !id.is_empty()).unwrap_or("0").to_string()
}
