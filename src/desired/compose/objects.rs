//! Compose `secrets` and `configs`: the stack's top-level file objects and a service's
//! references to them.
//!
//! Both kinds read alike (Docker's loader treats them as one `FileObjectConfig`); they
//! differ in the version that introduced them (secrets 3.1, configs 3.3) and in that only
//! a secret may come from a `driver` (3.8). An external object must exist already and is
//! referenced by its name, or its key; any other needs a `file` (or, for a secret, a
//! driver).

use super::reader::{Reader, child, item};
use super::{Version, read_labels, requires};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// Which kind of Swarm file object a section declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A secret, mounted under `/run/secrets/` by default.
    #[default]
    Secret,
    /// A config, mounted at `/<key>` by default.
    Config,
}

impl ObjectKind {
    /// The section's name: `secrets` or `configs`.
    pub fn section(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Config => "configs",
        }
    }

    /// The word for one: `secret` or `config`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }

    /// The compose version that introduced the section.
    fn since(self) -> u8 {
        match self {
            Self::Secret => 1,
            Self::Config => 3,
        }
    }
}

/// A top-level secret or config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileObject {
    /// `name:`, or an external object's name (its key when none is given).
    pub name: Option<String>,
    /// The file holding the content, as written (relative to the templates directory).
    pub file: Option<String>,
    /// The object exists already and is not the stack's to create.
    pub external: bool,
    /// Labels of the object.
    pub labels: BTreeMap<String, String>,
    /// A secret driver that supplies the content instead of a file (3.8).
    pub driver: Option<String>,
    /// The driver's options.
    pub driver_opts: BTreeMap<String, String>,
    /// A templating driver for the content (3.8).
    pub template_driver: Option<String>,
}

/// One entry of a service's `secrets` or `configs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReference {
    /// The key of the top-level object.
    pub source: String,
    /// The file name in the container; the source when absent.
    pub target: Option<String>,
    /// Owner user id of the file (`"0"` when absent).
    pub uid: Option<String>,
    /// Owner group id of the file (`"0"` when absent).
    pub gid: Option<String>,
    /// File mode (`0444` when absent).
    pub mode: Option<u32>,
}

/// Reads the top-level `secrets` or `configs` section.
pub fn read_objects(
    r: &mut Reader,
    version: Version,
    kind: ObjectKind,
    value: &Value,
) -> BTreeMap<String, FileObject> {
    let section = kind.section();
    let mut objects = BTreeMap::new();
    if !requires(r, version, section, kind.since()) {
        return objects;
    }
    for (key, v) in r.mapping_or_null(section, value).unwrap_or_default() {
        let path = child(section, &key);
        if let Some(object) = read_object(r, version, kind, &key, &path, v) {
            objects.insert(key, object);
        }
    }
    objects
}

fn read_object(
    r: &mut Reader,
    version: Version,
    kind: ObjectKind,
    key: &str,
    path: &str,
    value: &Value,
) -> Option<FileObject> {
    let mut object = FileObject::default();
    let mut legacy_name = None;
    for (field, v) in r.mapping_or_null(path, value)? {
        let p = child(path, &field);
        match field.as_str() {
            "name" => {
                if requires(r, version, &p, 5) {
                    object.name = r.string(&p, v);
                }
            }
            "file" => object.file = r.string(&p, v),
            "labels" => object.labels = read_labels(r, &p, v),
            "external" => (object.external, legacy_name) = super::read_external(r, &p, v),
            "template_driver" => {
                if requires(r, version, &p, 8) {
                    object.template_driver = r.string(&p, v);
                }
            }
            "driver" if kind == ObjectKind::Secret => {
                if requires(r, version, &p, 8) {
                    object.driver = r.string(&p, v);
                }
            }
            "driver_opts" if kind == ObjectKind::Secret => {
                if requires(r, version, &p, 8) {
                    object.driver_opts = read_labels(r, &p, v);
                }
            }
            _ if field.starts_with("x-") => {
                requires(r, version, &p, 7);
            }
            _ => r.error(&p, "not supported"),
        }
    }
    let word = kind.word();
    if let Some((name, name_path)) = legacy_name {
        if object.name.is_some() {
            r.error(
                &name_path,
                format!("{word} {key}: {word}.external.name and {word}.name conflict; only use {word}.name"),
            );
        } else {
            object.name = Some(name);
        }
    }
    if object.external {
        object.name.get_or_insert_with(|| key.to_string());
        if object.file.is_some() || object.driver.is_some() {
            r.warn(
                &child(path, "external"),
                format!("file and driver are ignored: an external {word} exists already and is not created by the stack"),
            );
        }
    } else if object.driver.is_some() && object.file.is_some() {
        r.error(
            &child(path, "driver"),
            format!("{word} {key}: {word}.driver and {word}.file conflict; only use {word}.driver"),
        );
    } else if object.driver.is_none() && object.file.as_deref().is_none_or(str::is_empty) {
        let what = match kind {
            ObjectKind::Secret => "file (or driver)",
            ObjectKind::Config => "file",
        };
        r.error(
            &child(path, "file"),
            format!("required: the {word}'s content comes from a {what} unless it is external"),
        );
    }
    Some(object)
}

/// Reads a service's `secrets` or `configs` list: keys, or mappings with `source`.
pub fn read_references(
    r: &mut Reader,
    version: Version,
    kind: ObjectKind,
    path: &str,
    value: &Value,
) -> Vec<FileReference> {
    if !requires(r, version, path, kind.since()) {
        return Vec::new();
    }
    let Some(items) = r.list(path, value) else {
        return Vec::new();
    };
    let mut references = Vec::new();
    for (i, entry) in items.iter().enumerate() {
        let p = item(path, i);
        let reference = match entry {
            Value::String(_) => r.string(&p, entry).map(|source| FileReference {
                source,
                ..FileReference::default()
            }),
            Value::Mapping(_) => read_long_reference(r, &p, entry),
            _ => {
                r.expected(&p, "a key of the top-level section, or a mapping", entry);
                None
            }
        };
        references.extend(reference);
    }
    references
}

fn read_long_reference(r: &mut Reader, path: &str, value: &Value) -> Option<FileReference> {
    let mut reference = FileReference::default();
    let mut saw_source = false;
    for (field, v) in r.mapping(path, value)? {
        let p = child(path, &field);
        match field.as_str() {
            "source" => {
                saw_source = true;
                reference.source = r.string(&p, v).unwrap_or_default();
            }
            "target" => reference.target = r.string(&p, v),
            "uid" => reference.uid = r.string(&p, v),
            "gid" => reference.gid = r.string(&p, v),
            "mode" => reference.mode = read_mode(r, &p, v),
            _ => r.error(&p, "not supported"),
        }
    }
    if !saw_source {
        r.error(&child(path, "source"), "required: the key of the object");
    }
    Some(reference)
}

/// Reads a file mode. Docker's YAML reads a leading zero as octal (`0440` is 288), as
/// YAML 1.1 did; `0o440` and decimal numbers mean what they say.
fn read_mode(r: &mut Reader, path: &str, value: &Value) -> Option<u32> {
    let mode = match value {
        Value::Number(n) => n.as_u64(),
        // serde_yaml keeps a number with a leading zero as a string.
        Value::String(text) => text
            .strip_prefix('0')
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| u64::from_str_radix(digits, 8).ok()),
        _ => None,
    };
    match mode.and_then(|m| u32::try_from(m).ok()) {
        Some(mode) => Some(mode),
        None => {
            r.expected(path, "a file mode such as 0440", value);
            None
        }
    }
}
