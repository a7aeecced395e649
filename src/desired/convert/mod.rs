//! Turns a parsed compose file into the service specs `docker stack deploy` would send.
//!
//! The conversion follows the Docker CLI's (`cli/compose/convert`) field by field, so a
//! stack mlmodel deploys is indistinguishable from one deployed with the CLI:
//! `docker stack ls/services/ps/rm` work on it, and deploying the same file with the CLI
//! afterwards changes nothing. Where the CLI omits a zero value from its JSON, the spec
//! here leaves the field `None`; where it sends an empty object, so does this.
//!
//! Names: service `<stack>_<key>`; stack networks `<stack>_<key>` unless named;
//! external networks by their name (or key). A service without networks joins the
//! stack's `default` network, which is then created like any stack network.

mod container;
mod env_file;
mod networks;
pub mod objects;
mod service;

pub use objects::{Files, FilesIn, NoFiles};

use crate::desired::compose::{ComposeError, ComposeFile, parse_compose};
use crate::desired::stack::StackSpec;

/// Path used for errors about the stack name itself.
pub const STACK_PATH: &str = "stack";

/// Converts a parsed compose file into the stack named `stack_name`.
pub fn convert_stack(
    stack_name: &str,
    compose: &ComposeFile,
    files: &dyn Files,
) -> Result<StackSpec, Vec<ComposeError>> {
    let mut errors = Vec::new();
    if let Err(e) = crate::desired::naming::validate_identifier(stack_name) {
        errors.push(ComposeError {
            path: STACK_PATH.to_string(),
            message: e.to_string(),
        });
    }
    let plan = networks::plan(stack_name, compose, &mut errors);
    let mut warnings = compose.warnings.clone();
    let objects = objects::plan(stack_name, compose, files, &mut errors, &mut warnings);
    let mut services = Vec::with_capacity(compose.services.len());
    for (key, service) in &compose.services {
        let service = env_file::merged(key, service, files, &mut errors);
        if let Some(spec) = service::convert(
            stack_name,
            key,
            &service,
            &plan,
            &objects,
            &compose.volumes,
            &mut errors,
        ) {
            services.push(spec);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(StackSpec {
        name: stack_name.to_string(),
        services,
        networks: plan.to_create,
        objects: objects.objects,
        warnings,
    })
}

/// Parses `yaml` and converts it into the stack named `stack_name`, reading `file:`
/// through `files`.
pub fn convert_yaml(
    stack_name: &str,
    yaml: &str,
    files: &dyn Files,
) -> Result<StackSpec, Vec<ComposeError>> {
    let compose = parse_compose(yaml)?;
    convert_stack(stack_name, &compose, files)
}

/// Docker's name for a stack-scoped object: `<stack>_<name>`.
fn scope(stack_name: &str, name: &str) -> String {
    format!("{stack_name}_{name}")
}

#[cfg(test)]
mod tests;
