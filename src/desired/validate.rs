//! Field-level validation of a [`ModelSpec`], collecting every error.
//!
//! Each rule follows the grammar Docker applies to the same value (see [`crate::desired::units`] and
//! [`crate::desired::naming`]), so a spec that passes here renders into a stack Docker accepts.

use crate::desired::naming;
use crate::desired::record::{self, MAX_SCALE, ModelSpec};
use crate::desired::units;
use std::fmt;

/// One problem with one field of a declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, dotted for nested values (`extra_template_attributes.team`).
    pub field: String,
    /// What was wrong and what is expected.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Smallest memory limit Docker lets a container start with (6 MiB).
pub const MIN_MEMORY_LIMIT: i64 = 6 * 1024 * 1024;

/// What validation needs to know beyond the spec itself.
pub struct Rules<'a> {
    /// Prefix of every stack name (`<instance>_`), counted against Docker's name limit.
    pub stack_prefix: &'a str,
    /// Whether a template of that name exists.
    pub template_exists: &'a dyn Fn(&str) -> bool,
    /// Names the template context defines itself; extra attributes may not shadow them.
    pub reserved_names: &'a [&'a str],
}

/// Checks every field of `spec`; an empty result means it is valid.
pub fn validate_spec(spec: &ModelSpec, rules: &Rules) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut check = |field: &str, result: Result<(), String>| {
        if let Err(message) = result {
            errors.push(FieldError::new(field, message));
        }
    };
    let text = |r: Result<(), naming::NameError>| r.map_err(|e| e.to_string());
    check(
        "name",
        text(
            naming::validate_model_name(&spec.name, rules.stack_prefix, "")
                .and_then(|()| naming::check_not_reserved(&spec.name)),
        ),
    );
    check("domain", text(naming::validate_hostname(&spec.domain)));
    check("image", text(naming::validate_image(&spec.image)));
    check(
        "port",
        if spec.port == 0 {
            Err("0 is not a port: expected 1 to 65535".to_string())
        } else {
            Ok(())
        },
    );
    check(
        "scale",
        if spec.scale > MAX_SCALE {
            Err(format!(
                "{} is too many replicas: expected 0 to {MAX_SCALE}",
                spec.scale
            ))
        } else {
            Ok(())
        },
    );
    check_resources(spec, &mut errors);
    if let Err(message) = check_template_file(&spec.template_file, rules.template_exists) {
        // A template chosen by model_type is reported there: that is what the user wrote.
        let field = match &spec.model_type {
            Some(model_type)
                if record::template_for_model_type(model_type) == spec.template_file =>
            {
                "model_type"
            }
            _ => "template_file",
        };
        errors.push(FieldError::new(field, message));
    }
    errors.extend(check_generic_resources(spec));
    errors.extend(check_extra_attributes(spec, rules.reserved_names));
    errors
}

/// The limits and reservations (each grammar, reservation not above limit, Docker's
/// minimum memory) and the rollout durations.
fn check_resources(spec: &ModelSpec, errors: &mut Vec<FieldError>) {
    check_pair(
        errors,
        ("cpu_limit", &spec.cpu_limit),
        ("cpu_reservation", &spec.cpu_reservation),
        units::parse_cpus,
    );
    check_pair(
        errors,
        ("mem_limit", &spec.mem_limit),
        ("mem_reservation", &spec.mem_reservation),
        units::parse_memory,
    );
    if units::parse_memory(&spec.mem_limit).is_ok_and(|limit| limit < MIN_MEMORY_LIMIT) {
        errors.push(FieldError::new(
            "mem_limit",
            format!(
                "{:?} is below Docker's minimum memory limit: expected at least 6M",
                spec.mem_limit
            ),
        ));
    }
    for (field, value) in [
        ("deploy_delay", &spec.deploy_delay),
        ("deploy_monitor_period", &spec.deploy_monitor_period),
    ] {
        if let Err(e) = units::parse_duration(value) {
            errors.push(FieldError::new(field, e.to_string()));
        }
    }
}

/// Parses a limit and its reservation and checks the reservation is not above the limit.
fn check_pair(
    errors: &mut Vec<FieldError>,
    (limit_field, limit): (&str, &str),
    (reservation_field, reservation): (&str, &str),
    parse: fn(&str) -> Result<i64, units::UnitError>,
) {
    let limit_value = parse(limit).map_err(|e| FieldError::new(limit_field, e.to_string()));
    let reservation_value =
        parse(reservation).map_err(|e| FieldError::new(reservation_field, e.to_string()));
    match (limit_value, reservation_value) {
        (Ok(l), Ok(r)) if r > l => errors.push(FieldError::new(
            reservation_field,
            format!("{reservation:?} is above {limit_field} {limit:?}: a reservation cannot exceed its limit"),
        )),
        (l, r) => errors.extend(l.err().into_iter().chain(r.err())),
    }
}

/// A template file must be a bare file name that the templates directory holds.
fn check_template_file(name: &str, exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let bare = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if !bare {
        return Err(format!(
            "{name:?} is not a bare file name: expected a template file name such as default.template.yml, without '/' or '..'"
        ));
    }
    if !exists(name) {
        return Err(format!(
            "{name:?} is not in the templates directory: expected the name of a template file there"
        ));
    }
    Ok(())
}

/// Generic resource kinds as Swarm and dockerd's `node-generic-resources` name them.
fn check_generic_resources(spec: &ModelSpec) -> Vec<FieldError> {
    spec.generic_resources
        .keys()
        .filter(|kind| {
            kind.is_empty()
                || kind.len() > 128
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .map(|kind| {
            FieldError::new(
                format!("generic_resources.{kind}"),
                format!("{kind:?} is not a resource kind: expected letters, digits, '-', '_' and '.', as in NVIDIA-GPU"),
            )
        })
        .collect()
}

/// Extra attributes become template variables: names must be identifiers that shadow nothing.
fn check_extra_attributes(spec: &ModelSpec, reserved: &[&str]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in spec.extra_template_attributes.keys() {
        let field = format!("extra_template_attributes.{key}");
        let identifier = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            errors.push(FieldError::new(
                field,
                format!("{key:?} is not a template variable name: expected letters, digits and '_', not starting with a digit"),
            ));
        } else if reserved.contains(&key.as_str()) {
            errors.push(FieldError::new(
                field,
                format!("{key:?} would shadow the template variable of the same name: choose another name"),
            ));
        }
    }
    errors
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::desired::record::defaults;
    use std::collections::BTreeMap;

    pub(crate) fn good_spec() -> ModelSpec {
        ModelSpec {
            name: "carls_model".into(),
            domain: "carls-model.com".into(),
            image: "mlmodel-test/static-http:1".into(),
            port: defaults::PORT,
            build_id: "some_build_id".into(),
            run_id: "some_run_id".into(),
            scale: defaults::SCALE,
            cpu_limit: defaults::CPU_LIMIT.into(),
            cpu_reservation: defaults::CPU_RESERVATION.into(),
            mem_limit: defaults::MEM_LIMIT.into(),
            mem_reservation: defaults::MEM_RESERVATION.into(),
            deploy_delay: defaults::DEPLOY_DELAY.into(),
            deploy_monitor_period: defaults::DEPLOY_MONITOR_PERIOD.into(),
            template_file: defaults::TEMPLATE_FILE.into(),
            model_type: Some("default".into()),
            generic_resources: Default::default(),
            follow_tag: None,
            extra_template_attributes: BTreeMap::new(),
        }
    }

    fn errors_of(spec: &ModelSpec) -> Vec<String> {
        let exists = |name: &str| name == defaults::TEMPLATE_FILE;
        let rules = Rules {
            stack_prefix: "mlmodel_",
            template_exists: &exists,
            reserved_names: &["name", "stack_name"],
        };
        validate_spec(spec, &rules)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_default_spec_is_valid() {
        assert_eq!(errors_of(&good_spec()), Vec::<String>::new());
    }

    #[test]
    fn every_rule_reports_its_field() {
        type Mutation = fn(&mut ModelSpec);
        let cases: Vec<(Mutation, &str)> = vec![
            (|s| s.name = "bad name".into(), "name: "),
            (|s| s.name = "x".repeat(60), "name: "),
            (|s| s.name = "ping".into(), "name: \"ping\" is reserved"),
            (
                |s| {
                    s.model_type = Some("gpu".into());
                    s.template_file = "gpu.template.yml".into()
                },
                "model_type: \"gpu.template.yml\" is not in the templates directory",
            ),
            (|s| s.domain = "carls model.com".into(), "domain: "),
            (|s| s.image = "Bad Image".into(), "image: "),
            (|s| s.port = 0, "port: 0 is not a port"),
            (|s| s.scale = 1001, "scale: 1001 is too many"),
            (|s| s.cpu_limit = "lots".into(), "cpu_limit: "),
            (
                |s| s.cpu_reservation = "0.0000000001".into(),
                "cpu_reservation: ",
            ),
            (
                |s| s.cpu_reservation = "2".into(),
                "cpu_reservation: \"2\" is above cpu_limit",
            ),
            (|s| s.mem_limit = "2 gigs".into(), "mem_limit: "),
            (
                |s| {
                    s.mem_limit = "1M".into();
                    s.mem_reservation = "0".into()
                },
                "mem_limit: \"1M\" is below",
            ),
            (
                |s| s.mem_reservation = "3G".into(),
                "mem_reservation: \"3G\" is above mem_limit",
            ),
            (|s| s.deploy_delay = "5".into(), "deploy_delay: "),
            (
                |s| s.deploy_monitor_period = "-1s".into(),
                "deploy_monitor_period: ",
            ),
            (
                |s| s.template_file = "../etc/passwd".into(),
                "template_file: ",
            ),
            (
                |s| s.template_file = "missing.yml".into(),
                "template_file: \"missing.yml\" is not in",
            ),
        ];
        for (mutate, expected) in cases {
            let mut spec = good_spec();
            mutate(&mut spec);
            let errors = errors_of(&spec);
            assert_eq!(errors.len(), 1, "{expected}: {errors:?}");
            assert!(
                errors[0].starts_with(expected),
                "{errors:?} should start with {expected}"
            );
        }
    }

    #[test]
    fn all_errors_are_collected_not_just_the_first() {
        let mut spec = good_spec();
        spec.image = "UP/Per".into();
        spec.port = 0;
        spec.deploy_delay = "soon".into();
        let fields: Vec<String> = errors_of(&spec)
            .iter()
            .map(|e| e.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(fields, ["image", "port", "deploy_delay"]);
    }

    #[test]
    fn extra_attributes_must_be_identifiers_that_shadow_nothing() {
        let mut spec = good_spec();
        for key in ["team_name", "stack_name", "1st", "has-dash"] {
            spec.extra_template_attributes
                .insert(key.into(), serde_json::json!("x"));
        }
        let errors = errors_of(&spec);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("extra_template_attributes.stack_name: "))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("extra_template_attributes.1st: "))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("extra_template_attributes.has-dash: "))
        );
    }
}
