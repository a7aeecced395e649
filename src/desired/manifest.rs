//! Manifests: deployment records written as YAML, one or more documents per file.
//!
//! Turning a document (or an API request body) into a [`ModelSpec`] checks types and field
//! names and fills the original service's defaults; the grammar of each value is checked by
//! [`crate::desired::validate`]. Every problem is collected, so one run shows them all.

use crate::desired::naming::DomainFormat;
use crate::desired::record::{self, ModelSpec, SERVER_FIELDS, SPEC_FIELDS, defaults};
use crate::desired::validate::FieldError;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest manifest file read; a bigger one is almost surely not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// What the server fills in for fields a declaration leaves out, beyond the fixed defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fill {
    /// `--domain-format`: when set, `domain` may be left out and is made from the name.
    pub domain_format: Option<DomainFormat>,
}

/// The variable `--domain-format` is read from.
pub const DOMAIN_FORMAT_ENV: &str = "MLMODEL_DOMAIN_FORMAT";
/// The original service's name for the same variable, read when [`DOMAIN_FORMAT_ENV`] is unset.
pub const ORIGINAL_DOMAIN_FORMAT_ENV: &str = "MLMODEL_ENDPOINT_DOMAIN_FORMAT";

impl Fill {
    /// The domain format the environment sets: [`DOMAIN_FORMAT_ENV`], else
    /// [`ORIGINAL_DOMAIN_FORMAT_ENV`]; an error names the variable.
    pub fn domain_format_from_env() -> Result<Option<DomainFormat>, String> {
        for variable in [DOMAIN_FORMAT_ENV, ORIGINAL_DOMAIN_FORMAT_ENV] {
            if let Ok(text) = std::env::var(variable)
                && !text.is_empty()
            {
                return DomainFormat::parse(&text)
                    .map(Some)
                    .map_err(|e| format!("{variable}: {e}"));
            }
        }
        Ok(None)
    }
}

/// Where a declaration came from: a file, and which document in it when there are several.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The manifest file.
    pub path: PathBuf,
    /// 1-based document number, when the file holds more than one.
    pub doc: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.doc {
            Some(doc) => write!(f, "{}#{doc}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// One document of a manifest file, parsed or not.
#[derive(Debug, Clone)]
pub struct ManifestDoc {
    /// Where it came from.
    pub origin: Origin,
    /// The model name the document declares (its `name`, or the file stem for a
    /// single-document file), known even when `spec` failed; `None` when `name` is missing
    /// from a multi-document file or is not text.
    pub name: Option<String>,
    /// The declared spec, or every problem found in it.
    pub spec: Result<ModelSpec, Vec<FieldError>>,
    /// When `spec` is an error: the spec as far as it could be read, with defaults in the
    /// fields that failed, so the other fields can still be checked and reported.
    pub draft: Option<Box<ModelSpec>>,
}

/// Why a manifest file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_MANIFEST_BYTES`].
    #[error("{path}: file is {size} bytes: manifests are limited to 1 MiB")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The file is not YAML.
    #[error("{path}: not valid YAML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// Whether a file name looks like a manifest: `*.yml` / `*.yaml`, not hidden, not an
/// editor's temp, swap or backup file.
pub fn is_manifest_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    yaml && !name.starts_with('.') && !name.starts_with('#') && !name.starts_with('~')
}

/// Lists the manifest files under `path` (itself if it is a file), sorted, recursively.
pub fn find_manifest_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let entry_path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let file_type = entry.file_type()?;
            if file_type.is_dir() && !hidden {
                pending.push(entry_path);
            } else if !file_type.is_dir() && is_manifest_file(&entry_path) && entry_path.is_file() {
                files.push(entry_path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every manifest document under `paths` (files, or directories searched recursively),
/// and one line per path or file that could not be read at all.
pub fn load_paths(paths: &[PathBuf], fill: &Fill) -> (Vec<ManifestDoc>, Vec<String>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = match find_manifest_files(path) {
            Ok(files) => files,
            Err(e) => {
                errors.push(format!("{}: cannot read: {e}", path.display()));
                continue;
            }
        };
        if files.is_empty() {
            errors.push(format!(
                "{}: no manifest files (*.yml, *.yaml) found",
                path.display()
            ));
        }
        for file in files {
            match read_manifest(&file, fill) {
                Ok(file_docs) => docs.extend(file_docs),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    (docs, errors)
}

/// One error per declaration of a model name that more than one document declares.
pub fn duplicate_names<'a>(
    declared: impl IntoIterator<Item = (&'a str, &'a Origin)>,
) -> Vec<String> {
    let mut by_name: BTreeMap<&str, Vec<&Origin>> = BTreeMap::new();
    for (name, origin) in declared {
        by_name.entry(name).or_default().push(origin);
    }
    let mut errors = Vec::new();
    for (name, origins) in by_name.iter().filter(|(_, o)| o.len() > 1) {
        for origin in origins {
            let others: Vec<String> = origins
                .iter()
                .filter(|o| *o != origin)
                .map(|o| o.to_string())
                .collect();
            errors.push(format!(
                "{origin}: name: {name:?} is also declared by {}: each model must be declared once",
                others.join(", ")
            ));
        }
    }
    errors
}

/// Reads and parses one manifest file.
pub fn read_manifest(path: &Path, fill: &Fill) -> Result<Vec<ManifestDoc>, ManifestError> {
    let shown = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { path: shown, size });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_manifest_with(path, &text, fill)
}

/// Parses the text of a manifest file; `path` names the origin and gives the default name.
pub fn parse_manifest(path: &Path, text: &str) -> Result<Vec<ManifestDoc>, ManifestError> {
    parse_manifest_with(path, text, &Fill::default())
}

/// [`parse_manifest`], filling left-out fields as `fill` says.
pub fn parse_manifest_with(
    path: &Path,
    text: &str,
    fill: &Fill,
) -> Result<Vec<ManifestDoc>, ManifestError> {
    let mut values = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            serde::Deserialize::deserialize(document).map_err(|e| ManifestError::Syntax {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        if !matches!(value, Yaml::Null) {
            values.push(value);
        }
    }
    let several = values.len() > 1;
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".yaml").trim_end_matches(".yml"));
    Ok(values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let default_name = if several { None } else { stem };
            let (spec, draft) = match read_spec(value, default_name, fill) {
                Ok(spec) => (Ok(spec), None),
                Err((errors, draft)) => (Err(errors), draft),
            };
            ManifestDoc {
                origin: Origin {
                    path: path.to_path_buf(),
                    doc: several.then_some(index + 1),
                },
                name: declared_name(value, default_name),
                spec,
                draft,
            }
        })
        .collect())
}

/// The name a document declares, read the way [`spec_from_value`] reads it, so a document
/// that fails to parse can still be reported under its model's name.
fn declared_name(value: &Yaml, default_name: Option<&str>) -> Option<String> {
    let Yaml::Mapping(mapping) = value else {
        return default_name.map(str::to_string);
    };
    match mapping.get("name") {
        None | Some(Yaml::Null) => default_name.map(str::to_string),
        Some(Yaml::String(s)) => Some(s.clone()),
        Some(Yaml::Number(n)) => Some(n.to_string()),
        Some(_) => None,
    }
}

/// Builds a spec from a YAML mapping (a manifest document or a converted JSON body).
///
/// `default_name` is used when the mapping has no `name` (a manifest's file stem, or the
/// API path's name). Unknown and server-assigned fields are errors.
pub fn spec_from_value(
    value: &Yaml,
    default_name: Option<&str>,
    fill: &Fill,
) -> Result<ModelSpec, Vec<FieldError>> {
    match read_spec(value, default_name, fill) {
        Ok(spec) => Ok(spec),
        Err((errors, _)) => Err(errors),
    }
}

/// Like [`spec_from_value`], but a failure also carries the spec as far as it could be
/// read (defaults in the fields that failed), so the other fields can still be checked.
pub fn read_spec(
    value: &Yaml,
    default_name: Option<&str>,
    fill: &Fill,
) -> Result<ModelSpec, (Vec<FieldError>, Option<Box<ModelSpec>>)> {
    let Yaml::Mapping(mapping) = value else {
        return Err((
            vec![FieldError::new(
                "(document)",
                format!(
                    "expected a mapping of deployment fields, found {}",
                    kind(value)
                ),
            )],
            None,
        ));
    };
    let mut fields = Fields {
        map: BTreeMap::new(),
        errors: Vec::new(),
    };
    for (key, value) in mapping {
        let Some(key) = key.as_str() else {
            fields.errors.push(FieldError::new(
                yaml_inline(key),
                "field names must be strings",
            ));
            continue;
        };
        if SPEC_FIELDS.contains(&key) {
            fields.map.insert(key.to_string(), value.clone());
        } else if SERVER_FIELDS.contains(&key) {
            fields.errors.push(FieldError::new(
                key,
                "is assigned by the server and cannot be set",
            ));
        } else {
            fields
                .errors
                .push(FieldError::new(shown_key(key), unknown_field_message(key)));
        }
    }
    let name = match (fields.map.contains_key("name"), default_name) {
        (false, Some(default)) => default.to_string(),
        _ => fields.required_text("name"),
    };
    let domain = match &fill.domain_format {
        Some(format) if fields.is_missing("domain") => format.domain_for(&name),
        _ => fields.required_text("domain"),
    };
    let (template_file, model_type) = fields.template();
    let spec = ModelSpec {
        name,
        domain,
        image: fields.required_text("image"),
        port: fields.integer("port", u64::from(defaults::PORT), 1, u64::from(u16::MAX)) as u16,
        build_id: fields.required_text("build_id"),
        run_id: fields.required_text("run_id"),
        scale: fields.integer("scale", defaults::SCALE, 0, u64::MAX),
        cpu_limit: fields.text("cpu_limit", defaults::CPU_LIMIT),
        cpu_reservation: fields.text("cpu_reservation", defaults::CPU_RESERVATION),
        mem_limit: fields.text("mem_limit", defaults::MEM_LIMIT),
        mem_reservation: fields.text("mem_reservation", defaults::MEM_RESERVATION),
        deploy_delay: fields.text("deploy_delay", defaults::DEPLOY_DELAY),
        deploy_monitor_period: fields
            .text("deploy_monitor_period", defaults::DEPLOY_MONITOR_PERIOD),
        template_file,
        model_type,
        generic_resources: fields.counts("generic_resources"),
        follow_tag: fields.flag("follow_tag"),
        extra_template_attributes: fields.attributes("extra_template_attributes"),
    };
    if fields.errors.is_empty() {
        Ok(spec)
    } else {
        Err((fields.errors, Some(Box::new(spec))))
    }
}

/// The fields of one document, taken one by one with their errors collected.
struct Fields {
    map: BTreeMap<String, Yaml>,
    errors: Vec<FieldError>,
}

impl Fields {
    /// A string field (numbers are taken as their text, as YAML writes ids unquoted).
    fn text(&mut self, field: &str, default: &str) -> String {
        match self.map.get(field) {
            None | Some(Yaml::Null) => default.to_string(),
            Some(Yaml::String(s)) => s.clone(),
            Some(Yaml::Number(n)) => n.to_string(),
            Some(other) => {
                let message = format!("expected a string, found {}", kind(other));
                self.errors.push(FieldError::new(field, message));
                String::new()
            }
        }
    }

    /// An optional boolean: `true` or `false`.
    fn flag(&mut self, field: &str) -> Option<bool> {
        match self.map.get(field) {
            None | Some(Yaml::Null) => None,
            Some(Yaml::Bool(b)) => Some(*b),
            Some(other) => {
                let message = format!("expected true or false, found {}", yaml_inline(other));
                self.errors.push(FieldError::new(field, message));
                None
            }
        }
    }

    fn is_missing(&self, field: &str) -> bool {
        matches!(self.map.get(field), None | Some(Yaml::Null))
    }

    fn required_text(&mut self, field: &str) -> String {
        if self.is_missing(field) {
            self.errors.push(FieldError::new(field, "is required"));
            return String::new();
        }
        self.text(field, "")
    }

    /// `template_file` and `model_type`, two names for the template: `model_type` X
    /// selects `X.template.yml`, as the original service chose it. Either fills the other;
    /// given both, they must agree.
    fn template(&mut self) -> (String, Option<String>) {
        let model_type = (!self.is_missing("model_type")).then(|| self.text("model_type", ""));
        let given_file = (!self.is_missing("template_file"))
            .then(|| self.text("template_file", defaults::TEMPLATE_FILE));
        match (model_type, given_file) {
            (Some(model_type), Some(file)) => {
                if file != record::template_for_model_type(&model_type) {
                    self.errors.push(FieldError::new(
                        "model_type",
                        format!(
                            "{model_type:?} selects the template {:?}, but template_file is {file:?}: give one of model_type and template_file, or make them agree",
                            record::template_for_model_type(&model_type)
                        ),
                    ));
                }
                (file, Some(model_type))
            }
            (Some(model_type), None) => (
                record::template_for_model_type(&model_type),
                Some(model_type),
            ),
            (None, file) => {
                let file = file.unwrap_or_else(|| defaults::TEMPLATE_FILE.to_string());
                let model_type = record::model_type_of_template(&file).map(str::to_string);
                (file, model_type)
            }
        }
    }

    fn integer(&mut self, field: &str, default: u64, min: u64, max: u64) -> u64 {
        let value = match self.map.get(field) {
            None | Some(Yaml::Null) => return default,
            Some(Yaml::Number(n)) => n.as_u64(),
            Some(Yaml::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match value {
            Some(v) if (min..=max).contains(&v) => v,
            _ => {
                let found = self.map.get(field).map_or_else(String::new, yaml_inline);
                let message = if max == u64::MAX {
                    format!("expected a whole number of at least {min}, found {found}")
                } else {
                    format!("expected a whole number from {min} to {max}, found {found}")
                };
                self.errors.push(FieldError::new(field, message));
                default
            }
        }
    }

    /// A mapping of names to whole numbers of at least 1 (`generic_resources`).
    fn counts(&mut self, field: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        match self.map.get(field) {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Mapping(mapping)) => {
                for (key, value) in mapping {
                    let Some(key) = key.as_str() else {
                        let message = format!("names must be strings, found {}", yaml_inline(key));
                        self.errors.push(FieldError::new(field, message));
                        continue;
                    };
                    match value.as_u64().filter(|n| *n >= 1 && *n <= i64::MAX as u64) {
                        Some(count) => {
                            out.insert(key.to_string(), count);
                        }
                        None => self.errors.push(FieldError::new(
                            format!("{field}.{key}"),
                            format!(
                                "expected a whole number of at least 1, found {}",
                                yaml_inline(value)
                            ),
                        )),
                    }
                }
            }
            Some(other) => {
                let message = format!(
                    "expected a mapping of resource kinds to counts, such as {{NVIDIA-GPU: 1}}, found {}",
                    kind(other)
                );
                self.errors.push(FieldError::new(field, message));
            }
        }
        out
    }

    fn attributes(&mut self, field: &str) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        match self.map.get(field) {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Mapping(mapping)) => {
                for (key, value) in mapping {
                    let Some(key) = key.as_str() else {
                        let message = format!(
                            "attribute names must be strings, found {}",
                            yaml_inline(key)
                        );
                        self.errors.push(FieldError::new(field, message));
                        continue;
                    };
                    let path = format!("{field}.{key}");
                    match yaml_to_json(value, &path) {
                        Ok(json) => {
                            out.insert(key.to_string(), json);
                        }
                        Err(e) => self.errors.push(e),
                    }
                }
            }
            Some(other) => {
                let message = format!(
                    "expected a mapping of template variables, found {}",
                    kind(other)
                );
                self.errors.push(FieldError::new(field, message));
            }
        }
        out
    }
}

/// Converts a YAML value to JSON, refusing what JSON cannot hold (non-string keys, NaN).
pub fn yaml_to_json(value: &Yaml, path: &str) -> Result<Json, FieldError> {
    Ok(match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Json::Number)
                    .ok_or_else(|| FieldError::new(path, format!("{n} is not a finite number")))?
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut object = serde_json::Map::new();
            for (key, item) in mapping {
                let key = key.as_str().ok_or_else(|| {
                    FieldError::new(
                        path,
                        format!("map keys must be strings, found {}", yaml_inline(key)),
                    )
                })?;
                object.insert(
                    key.to_string(),
                    yaml_to_json(item, &format!("{path}.{key}"))?,
                );
            }
            Json::Object(object)
        }
        Yaml::Tagged(tagged) => {
            return Err(FieldError::new(
                path,
                format!(
                    "YAML tags ({}) are not supported: write a plain value",
                    tagged.tag
                ),
            ));
        }
    })
}

/// A field name as errors show it: quoted when it is empty or not a plain word.
fn shown_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if plain {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn unknown_field_message(key: &str) -> String {
    let closest = SPEC_FIELDS
        .iter()
        .map(|field| (edit_distance(key, field), *field))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    match closest {
        Some((_, field)) => format!("unknown field: did you mean {field}?"),
        None => format!("unknown field: expected one of {}", SPEC_FIELDS.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn kind(value: &Yaml) -> &'static str {
    match value {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// A short one-line rendering of a value for error messages.
fn yaml_inline(value: &Yaml) -> String {
    let text = match value {
        Yaml::String(s) => format!("{s:?}"),
        other => serde_json::to_string(other).unwrap_or_else(|_| kind(other).to_string()),
    };
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
