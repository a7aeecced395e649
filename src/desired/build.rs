//! From a declared spec to the exact stack mlmodel wants running.
//!
//! `build` is the whole offline pipeline for one model: validate the spec, render its
//! template, convert the compose stack into Swarm service specs and stamp them with
//! mlmodel's ownership labels. `mlmodel validate`, `mlmodel render`, the API and the
//! reconciler all go through it, so they agree on what a spec means.

use crate::desired::convert;
use crate::desired::naming;
use crate::desired::record::Source;
use crate::desired::record::{DeploymentRecord, ModelSpec, SPEC_FIELDS};
use crate::desired::render::{CONTEXT_NAMES, Instance, Templates};
use crate::desired::stack::{Ownership, StackSpec, labels};
use crate::desired::validate::{self, FieldError, Rules};
use sha2::{Digest, Sha256};

/// A model's record and the stack it renders to.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The history entry, with `rendered_template` filled in.
    pub record: DeploymentRecord,
    /// The services and networks to converge, stamped with ownership labels.
    pub stack: StackSpec,
}

/// What the pipeline needs besides the spec.
pub struct Pipeline<'a> {
    /// The instance's name, environment and network.
    pub instance: &'a Instance,
    /// The compiled templates.
    pub templates: &'a Templates,
}

/// The id and time a deployment is recorded under.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// 32 lowercase hex characters.
    pub deployment_id: String,
    /// Unix seconds with fraction.
    pub deployment_time: f64,
    /// The digest the image's tag had moved to, for a deployment that follows it.
    pub image_digest: Option<String>,
}

impl Pipeline<'_> {
    /// Checks a spec's fields without rendering it.
    pub fn validate(&self, spec: &ModelSpec) -> Vec<FieldError> {
        let exists = |name: &str| self.templates.contains(name);
        let reserved: Vec<&str> = SPEC_FIELDS.iter().chain(CONTEXT_NAMES).copied().collect();
        let prefix = format!("{}_", self.instance.name);
        let rules = Rules {
            stack_prefix: &prefix,
            template_exists: &exists,
            reserved_names: &reserved,
        };
        validate::validate_spec(spec, &rules)
    }

    /// Validation errors of a partly read spec (see [`crate::desired::manifest::read_spec`]), on
    /// the fields that did read, so one pass reports every problem.
    pub fn validate_draft(&self, draft: &ModelSpec, read_errors: &[FieldError]) -> Vec<FieldError> {
        let failed: Vec<&str> = read_errors.iter().map(|e| e.field.as_str()).collect();
        self.validate(draft)
            .into_iter()
            .filter(|e| !failed.contains(&e.field.as_str()))
            .collect()
    }

    /// Validates, renders, converts and stamps one model's spec.
    ///
    /// Every service carries the record (without its rendered template) in a label, so a
    /// lost store can be rebuilt from the swarm. The source is not carried: adopting a
    /// service must not change its spec.
    pub fn build(
        &self,
        spec: ModelSpec,
        identity: Identity,
        _source: &Source,
    ) -> Result<Desired, Vec<FieldError>> {
        let errors = self.validate(&spec);
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut record = DeploymentRecord {
            spec,
            deployment_id: identity.deployment_id,
            deployment_time: identity.deployment_time,
            rendered_template: String::new(),
            image_digest: identity.image_digest,
        };
        let template = record.spec.template_file.clone();
        record.rendered_template = self
            .templates
            .render(&record, self.instance)
            .map_err(|e| vec![FieldError::new("template_file", e.to_string())])?;
        let stack_name = self.instance.stack_name(&record.spec.name);
        check_service_name_lengths(&record.spec.name, &stack_name, &record.rendered_template)?;
        let mut stack = convert::convert_yaml(
            &stack_name,
            &record.rendered_template,
            &*self.templates.files(),
        )
        .map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    FieldError::new(
                        "template_file",
                        format!("template {template} rendered an invalid stack: {e}"),
                    )
                })
                .collect::<Vec<_>>()
        })?;
        let carried = DeploymentRecord {
            rendered_template: String::new(),
            ..record.clone()
        };
        let carried = serde_json::to_string(&carried).unwrap_or_default();
        for service in &mut stack.services {
            let service_labels = service.labels.get_or_insert_with(Default::default);
            service_labels.insert(labels::RECORD.to_string(), carried.clone());
            if let Some(digest) = &record.image_digest {
                pin_image(service, &record.spec.image, digest);
            }
        }
        stack.stamp(&Ownership {
            instance: &self.instance.name,
            model: &record.spec.name,
            deployment_id: &record.deployment_id,
        });
        Ok(Desired { record, stack })
    }
}

/// Reports a model name too long for the full service names its template produces.
fn check_service_name_lengths(
    model: &str,
    stack_name: &str,
    rendered: &str,
) -> Result<(), Vec<FieldError>> {
    let Ok(serde_yaml::Value::Mapping(root)) = serde_yaml::from_str::<serde_yaml::Value>(rendered)
    else {
        // Not a mapping: conversion reports it with a better message.
        return Ok(());
    };
    let Some(serde_yaml::Value::Mapping(services)) = root.get("services") else {
        return Ok(());
    };
    let longest = services
        .keys()
        .filter_map(|k| k.as_str())
        .max_by_key(|k| k.len());
    let Some(longest) = longest else {
        return Ok(());
    };
    let prefix = &stack_name[..stack_name.len() - model.len()];
    naming::validate_model_name(model, prefix, &format!("_{longest}"))
        .map_err(|e| vec![FieldError::new("name", e.to_string())])
}

/// Pins the model's image in `service` to `digest` (a deployment that followed its tag
/// to that digest); a service of the template that runs another image is left alone.
fn pin_image(service: &mut bollard::models::ServiceSpec, image: &str, digest: &str) {
    let container = service
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut());
    if let Some(container) = container
        && container.image.as_deref() == Some(image)
        && !image.contains('@')
    {
        container.image = Some(format!("{}@{digest}", naming::with_tag(image)));
    }
}

/// A deterministic stand-in identity for offline renders: the same spec always renders
/// the same way. The server assigns a random id to each real deployment.
pub fn offline_identity(spec: &ModelSpec) -> Identity {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let digest = Sha256::digest(&json);
    let deployment_id = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Identity {
        deployment_id,
        deployment_time: 0.0,
        image_digest: None,
    }
}
