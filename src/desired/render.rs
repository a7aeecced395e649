//! Rendering a model's spec through its minijinja template into a compose-format stack.
//!
//! Every value printed by a template is written as a YAML scalar or flow collection with
//! all quoting done here: strings become double-quoted scalars with every character that
//! could end the scalar or the line escaped, and `$` doubled so compose interpolation
//! leaves it alone. A value from a manifest therefore can never add, remove or change the
//! structure of the rendered stack; it can only be the value it is.

use crate::desired::manifest::Fill;
use crate::desired::record::{DeploymentRecord, ModelSpec};
use minijinja::value::{Serde, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The templates built into the binary, by file name.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[(
    "default.template.yml",
    include_str!("../../templates/default.template.yml"),
)];

/// Template variables mlmodel defines besides the record's fields.
pub const CONTEXT_NAMES: &[&str] = &[
    "deployment_id",
    "deployment_time",
    "stack_name",
    "team",
    "environment",
    "network",
];

/// Why templates could not be loaded or a stack could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The templates directory could not be read.
    #[error("cannot read templates directory {dir}: {source}")]
    ReadDir {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A template file has a syntax error.
    #[error("template {template} is invalid: {message}")]
    Syntax {
        /// The template's file name.
        template: String,
        /// minijinja's message, with the line.
        message: String,
    },
    /// The template failed while rendering (an undefined variable, a bad filter call).
    #[error("template {template} failed to render: {message}")]
    Render {
        /// The template's file name.
        template: String,
        /// minijinja's message, with the line.
        message: String,
    },
}

/// Instance-wide settings: the values every template sees, and what the instance fills
/// in for fields a declaration leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Owner label value and team name; also the stack name prefix.
    pub name: String,
    /// Deployment environment (the original's ENVIRONMENT).
    pub environment: String,
    /// Shared overlay network the models attach to.
    pub network: String,
    /// Fields a manifest or request may leave out (`--domain-format`).
    pub fill: Fill,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            name: "mlmodel".into(),
            environment: "production".into(),
            network: "mlmodel".into(),
            fill: Fill::default(),
        }
    }
}

impl Instance {
    /// The Docker stack a model is deployed as: `<instance>_<model>`.
    pub fn stack_name(&self, model: &str) -> String {
        format!("{}_{model}", self.name)
    }
}

/// A set of compiled templates: the built-in ones, overridden by a directory's files.
pub struct Templates {
    env: Environment<'static>,
    names: Vec<String>,
    /// The directory the templates were loaded from, which `file:` paths in the stacks
    /// they render are relative to.
    dir: Option<std::path::PathBuf>,
}

impl Templates {
    /// The built-in templates only.
    pub fn builtin() -> Result<Self, RenderError> {
        Self::from_sources(
            BUILTIN_TEMPLATES
                .iter()
                .map(|(name, source)| (name.to_string(), source.to_string())),
        )
    }

    /// The built-in templates, overridden and extended by the files in `dir` if given.
    pub fn load(dir: Option<&Path>) -> Result<Self, RenderError> {
        let mut sources: BTreeMap<String, String> = BUILTIN_TEMPLATES
            .iter()
            .map(|(name, source)| (name.to_string(), source.to_string()))
            .collect();
        if let Some(dir) = dir {
            let read_error = |source| RenderError::ReadDir {
                dir: dir.display().to_string(),
                source,
            };
            for entry in std::fs::read_dir(dir).map_err(read_error)? {
                let entry = entry.map_err(read_error)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !entry.path().is_file() {
                    continue;
                }
                let source = std::fs::read_to_string(entry.path()).map_err(read_error)?;
                sources.insert(name, source);
            }
        }
        let mut templates = Self::from_sources(sources)?;
        templates.dir = dir.map(Path::to_path_buf);
        Ok(templates)
    }

    /// Whether the templates came with a directory (and `file:` can be read).
    pub fn has_dir(&self) -> bool {
        self.dir.is_some()
    }

    /// Where the stacks these templates render read `file:` from: the templates
    /// directory, or nothing for the built-in templates.
    pub fn files(&self) -> Box<dyn crate::desired::convert::Files + Send + Sync> {
        match &self.dir {
            Some(dir) => Box::new(crate::desired::convert::FilesIn(dir.clone())),
            None => Box::new(crate::desired::convert::NoFiles),
        }
    }

    /// Compiles the given `(file name, source)` pairs.
    pub fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| AutoEscape::Custom("yaml".into()));
        env.set_formatter(yaml_formatter);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .map_err(|e| RenderError::Syntax {
                    template: "(syntax config)".into(),
                    message: e.to_string(),
                })?,
        );
        let mut names = Vec::new();
        for (name, source) in sources {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| RenderError::Syntax {
                    template: name.clone(),
                    message: describe(&e),
                })?;
            names.push(name);
        }
        names.sort();
        Ok(Self {
            env,
            names,
            dir: None,
        })
    }

    /// Whether a template of that file name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The template file names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Renders `record`'s template with the full context (see [`context`]).
    pub fn render(
        &self,
        record: &DeploymentRecord,
        instance: &Instance,
    ) -> Result<String, RenderError> {
        let template_name = &record.spec.template_file;
        let render_error = |e: minijinja::Error| RenderError::Render {
            template: template_name.clone(),
            message: describe(&e),
        };
        let template = self.env.get_template(template_name).map_err(render_error)?;
        template
            .render(Value::from(Serde(context(record, instance))))
            .map_err(render_error)
    }
}

/// The variables a template sees: every record field, the instance's values, and the
/// extra attributes at the top level (validation keeps them from shadowing anything).
pub fn context(record: &DeploymentRecord, instance: &Instance) -> BTreeMap<String, Json> {
    let spec: &ModelSpec = &record.spec;
    let mut ctx = match serde_json::to_value(spec) {
        Ok(Json::Object(map)) => map.into_iter().collect::<BTreeMap<_, _>>(),
        // A ModelSpec always serialises to an object: plain fields, string keys.
        _ => BTreeMap::new(),
    };
    for (key, value) in &spec.extra_template_attributes {
        ctx.entry(key.clone()).or_insert_with(|| value.clone());
    }
    ctx.insert(
        "deployment_id".into(),
        Json::from(record.deployment_id.clone()),
    );
    ctx.insert("deployment_time".into(), Json::from(record.deployment_time));
    ctx.insert(
        "stack_name".into(),
        Json::from(instance.stack_name(&spec.name)),
    );
    ctx.insert("team".into(), Json::from(instance.name.clone()));
    ctx.insert(
        "environment".into(),
        Json::from(instance.environment.clone()),
    );
    ctx.insert("network".into(), Json::from(instance.network.clone()));
    ctx
}

/// minijinja's message with the template line it points at.
fn describe(error: &minijinja::Error) -> String {
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        let _ = write!(message, ": {detail}");
    }
    if let Some(line) = error.line() {
        let _ = write!(message, " (line {line})");
    }
    message
}

/// Writes every printed value as YAML that cannot escape its position.
fn yaml_formatter(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_safe() {
        return out
            .write_str(value.as_str().unwrap_or_default())
            .map_err(write_error);
    }
    let mut text = String::new();
    write_yaml(&mut text, value, 0)?;
    out.write_str(&text).map_err(write_error)
}

fn write_error(_: std::fmt::Error) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::WriteFailure, "could not write rendered output")
}

/// Deepest nesting written; deeper values are refused rather than overflowing the stack.
const MAX_DEPTH: usize = 64;

/// Appends `value` as a YAML flow value: quoted strings, plain numbers, `[..]`, `{..}`.
pub fn write_yaml(out: &mut String, value: &Value, depth: usize) -> Result<(), minijinja::Error> {
    if depth > MAX_DEPTH {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "value is nested too deeply to render",
        ));
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&value.to_string()),
        ValueKind::String => quote_into(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_yaml(out, &item, depth + 1)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quote_into(out, &key.to_string());
                out.push_str(": ");
                write_yaml(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        ValueKind::Invalid => {
            return Err(minijinja::Error::new(
                ErrorKind::BadSerialization,
                "value could not be represented",
            ));
        }
        _ => quote_into(out, &value.to_string()),
    }
    Ok(())
}

/// Appends `s` as a double-quoted YAML scalar that reads back as exactly `s` after
/// compose's `$$` -> `$` unescaping.
pub fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '$' => out.push_str("$$"),
            // Control characters, C1 controls, YAML 1.1's extra line breaks (NEL, LS, PS),
            // the byte-order mark and the non-characters YAML refuses.
            c if c < ' '
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::record::DeploymentRecord;

    pub(crate) fn record() -> DeploymentRecord {
        DeploymentRecord {
            spec: crate::desired::validate::tests::good_spec(),
            deployment_id: "0123456789abcdef0123456789abcdef".into(),
            deployment_time: 1586932393.268678,
            rendered_template: String::new(),
            image_digest: None,
        }
    }

    fn render_source(source: &str, record: &DeploymentRecord) -> Result<String, RenderError> {
        let templates =
            Templates::from_sources([(record.spec.template_file.clone(), source.to_string())])?;
        templates.render(record, &Instance::default())
    }

    #[test]
    fn the_default_template_renders_the_record_as_a_compose_stack() {
        let templates = Templates::builtin().unwrap();
        let text = templates.render(&record(), &Instance::default()).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let service = &yaml["services"]["mlmodel"];
        assert_eq!(service["image"], "mlmodel-test/static-http:1");
        assert_eq!(service["deploy"]["replicas"], 2);
        assert_eq!(service["deploy"]["resources"]["limits"]["cpus"], "1");
        assert_eq!(
            service["deploy"]["resources"]["reservations"]["memory"],
            "1G"
        );
        assert_eq!(service["deploy"]["update_config"]["delay"], "5s");
        assert_eq!(service["deploy"]["update_config"]["monitor"], "30s");
        assert_eq!(service["deploy"]["update_config"]["order"], "start-first");
        assert_eq!(
            service["deploy"]["update_config"]["failure_action"],
            "rollback"
        );
        let labels = &service["deploy"]["labels"];
        assert_eq!(labels["mlmodel.build-id"], "some_build_id");
        assert_eq!(
            labels["traefik.http.routers.mlmodel_carls_model.rule"],
            "Host(`carls-model.com`)"
        );
        assert_eq!(
            labels["traefik.http.services.mlmodel_carls_model.loadbalancer.server.port"],
            "80"
        );
        assert_eq!(yaml["networks"]["shared"]["name"], "mlmodel");
        assert_eq!(yaml["networks"]["shared"]["external"], true);
    }

    #[test]
    fn extra_attributes_are_top_level_variables_and_render_as_flow_yaml() {
        let mut record = record();
        record.spec.extra_template_attributes.insert(
            "env".into(),
            serde_json::json!({"MODEL_PATH": "/models/a: b", "THREADS": 4, "FLAGS": ["x", null, true]}),
        );
        let text = render_source("env: {{ env }}\nteam: {{ team }}\n", &record).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(yaml["env"]["MODEL_PATH"], "/models/a: b");
        assert_eq!(yaml["env"]["THREADS"], 4);
        assert_eq!(yaml["env"]["FLAGS"][2], true);
        assert_eq!(yaml["team"], "mlmodel");
    }

    #[test]
    fn hostile_strings_stay_one_quoted_scalar() {
        let mut record = record();
        record.spec.build_id =
            "x\"\n  injected: true\n#: ${HOME} \u{85}\u{2028}`{a: [b]}` &anchor *alias !!tag"
                .into();
        let text = render_source("a: {{ build_id }}\nb: 1\n", &record).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let yaml: serde_yaml::Mapping = serde_yaml::from_str(&text).unwrap();
        assert_eq!(yaml.len(), 2);
        let rendered = yaml["a"].as_str().unwrap().replace("$$", "$");
        assert_eq!(rendered, record.spec.build_id);
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_the_template_and_line() {
        let err = render_source("a: 1\nb: {{ nope }}\n", &record()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("template default.template.yml failed to render: "),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn a_syntax_error_names_the_template() {
        let err = Templates::from_sources([("t.yml".to_string(), "{% if %}".to_string())])
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("template t.yml is invalid: "),
            "{err}"
        );
    }

    #[test]
    fn a_directory_overrides_and_extends_the_builtin_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.template.yml"),
            "image: {{ image }}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("gpu.yml"), "x: 1\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yml"), "{% broken").unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(templates.names(), ["default.template.yml", "gpu.yml"]);
        let text = templates.render(&record(), &Instance::default()).unwrap();
        assert_eq!(text, "image: \"mlmodel-test/static-http:1\"\n");
    }
}
