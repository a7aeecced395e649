//! `mlmodel validate` and `mlmodel render`: the offline pipeline, no Docker needed.

use super::{InstanceArgs, RenderFormat};
use crate::desired::manifest::{self, ManifestDoc};
use crate::desired::record::Source;
use crate::desired::render::Templates;
use crate::desired::validate::FieldError;
use crate::desired::{Identity, Pipeline, offline_identity};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) fn validate(paths: &[PathBuf], args: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let templates = Templates::load(args.templates.as_deref())?;
    let instance = args.instance()?;
    let pipeline = Pipeline {
        instance: &instance,
        templates: &templates,
    };
    let (docs, mut errors) = manifest::load_paths(paths, &instance.fill);
    let mut valid: Vec<(String, &manifest::Origin)> = Vec::new();
    for doc in &docs {
        let result = doc.spec.clone().and_then(|spec| {
            let source = Source::File {
                path: doc.origin.path.display().to_string(),
            };
            pipeline.build(spec.clone(), offline_identity(&spec), &source)
        });
        match result {
            Ok(desired) => {
                print_warnings(&doc.origin.to_string(), &desired);
                valid.push((desired.record.spec.name, &doc.origin));
            }
            Err(mut field_errors) => {
                if let Some(draft) = doc.draft.as_deref() {
                    field_errors.extend(pipeline.validate_draft(draft, &field_errors));
                }
                errors.extend(field_errors.iter().map(|e| format!("{}: {e}", doc.origin)));
            }
        }
    }
    errors.extend(manifest::duplicate_names(
        valid.iter().map(|(name, origin)| (name.as_str(), *origin)),
    ));
    for line in &errors {
        println!("{line}");
    }
    if errors.is_empty() {
        eprintln!("{} model(s) valid", valid.len());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} error(s)", errors.len());
        Ok(ExitCode::FAILURE)
    }
}

pub(super) fn render(
    path: &Path,
    name: Option<&str>,
    format: RenderFormat,
    deployment_id: Option<String>,
    args: &InstanceArgs,
) -> anyhow::Result<ExitCode> {
    let templates = Templates::load(args.templates.as_deref())?;
    let instance = args.instance()?;
    let pipeline = Pipeline {
        instance: &instance,
        templates: &templates,
    };
    let (docs, errors) = manifest::load_paths(&[path.to_path_buf()], &instance.fill);
    if let Some(first) = errors.first() {
        bail!("{first}");
    }
    let named = |doc: &&ManifestDoc| match (name, &doc.spec) {
        (None, _) => true,
        (Some(wanted), Ok(spec)) => spec.name == wanted,
        (Some(_), Err(_)) => false,
    };
    let chosen: Vec<&ManifestDoc> = docs.iter().filter(named).collect();
    let doc = match chosen.as_slice() {
        [doc] => *doc,
        [] => bail!(
            "{}: no model{} found",
            path.display(),
            name.map(|n| format!(" named {n:?}")).unwrap_or_default()
        ),
        several => bail!(
            "{}: holds {} models ({}): choose one with --name",
            path.display(),
            several.len(),
            several
                .iter()
                .map(|d| d.origin.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let spec = doc
        .spec
        .clone()
        .map_err(|errors| describe_errors(&doc.origin.to_string(), &errors))?;
    let mut identity = offline_identity(&spec);
    if let Some(id) = deployment_id {
        identity = Identity {
            deployment_id: id,
            ..identity
        };
    }
    let desired = pipeline
        .build(
            spec,
            identity,
            &Source::File {
                path: doc.origin.path.display().to_string(),
            },
        )
        .map_err(|errors| describe_errors(&doc.origin.to_string(), &errors))?;
    print_warnings(&doc.origin.to_string(), &desired);
    match format {
        RenderFormat::Compose => print!("{}", desired.record.rendered_template),
        RenderFormat::Services => {
            // Keys sorted at every level, so the output is stable from run to run.
            let value = serde_json::to_value(&desired.stack.services)
                .context("cannot print service specs")?;
            let json = serde_json::to_string_pretty(&sorted_keys(value))
                .context("cannot print service specs")?;
            println!("{json}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints, on stderr, what the model's stack has that is accepted but not deployed as
/// written (as `docker stack deploy` warns about it).
fn print_warnings(origin: &str, desired: &crate::desired::Desired) {
    let template = &desired.record.spec.template_file;
    for warning in &desired.stack.warnings {
        eprintln!("{origin}: warning: template {template} rendered {warning}");
    }
}

/// `value` with every object's keys in sorted order.
fn sorted_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

fn describe_errors(origin: &str, errors: &[FieldError]) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| format!("{origin}: {e}")).collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}
