//! `mlmodel diff`: what applying a spec would change in the model's current record.

use super::wire::Record;
use crate::desired::record::{ModelSpec, SPEC_FIELDS};
use serde_json::{Map, Value as Json};

/// One field that differs. `None` on a side means the field is absent there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The field, dotted inside `extra_template_attributes`.
    pub field: String,
    /// Its value in the current record.
    pub old: Option<String>,
    /// Its value in the spec.
    pub new: Option<String>,
}

/// How one model's spec compares with what the server has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelDiff {
    /// The server has no record of the model.
    NotDeployed {
        /// Model name.
        name: String,
    },
    /// The server has a record; these fields would change (none: up to date).
    Changes {
        /// Model name.
        name: String,
        /// The differing fields, in manifest field order.
        changes: Vec<Change>,
    },
}

impl ModelDiff {
    /// Whether applying the spec would change anything.
    pub fn has_differences(&self) -> bool {
        match self {
            Self::NotDeployed { .. } => true,
            Self::Changes { changes, .. } => !changes.is_empty(),
        }
    }

    /// The diff as lines: `NAME:` then `- field: old` / `+ field: new` per change.
    pub fn render(&self) -> String {
        match self {
            Self::NotDeployed { name } => format!("{name}: not deployed yet\n"),
            Self::Changes { name, changes } if changes.is_empty() => {
                format!("{name}: no changes\n")
            }
            Self::Changes { name, changes } => {
                let mut out = format!("{name}:\n");
                for change in changes {
                    if let Some(old) = &change.old {
                        out.push_str(&format!("- {}: {old}\n", change.field));
                    }
                    if let Some(new) = &change.new {
                        out.push_str(&format!("+ {}: {new}\n", change.field));
                    }
                }
                out
            }
        }
    }
}

/// Compares `spec` with the model's current record (`None`: the server has none).
///
/// Only the fields a manifest declares are compared; server-assigned ones (id, time,
/// rendered template, live containers) always differ and say nothing about the spec.
pub fn diff_spec(spec: &ModelSpec, current: Option<&Record>) -> ModelDiff {
    let Some(current) = current else {
        return ModelDiff::NotDeployed {
            name: spec.name.clone(),
        };
    };
    let wanted = match serde_json::to_value(spec) {
        Ok(Json::Object(map)) => map,
        // A ModelSpec is plain fields with string keys: it always serialises to an object.
        _ => Map::new(),
    };
    let mut changes = Vec::new();
    // model_type is derived from template_file (servers before it existed leave it out),
    // so template_file alone says whether the template changes.
    for field in SPEC_FIELDS
        .iter()
        .filter(|f| !matches!(**f, "name" | "model_type"))
    {
        let old = current.0.get(*field);
        let new = wanted.get(*field);
        match (old, new) {
            (Some(Json::Object(old)), Some(Json::Object(new))) => {
                changes.extend(diff_maps(field, old, new));
            }
            (None, Some(Json::Object(new))) => {
                changes.extend(diff_maps(field, &Map::new(), new));
            }
            _ if same(old, new) => {}
            _ => changes.push(Change {
                field: field.to_string(),
                old: old.map(show),
                new: new.map(show),
            }),
        }
    }
    ModelDiff::Changes {
        name: spec.name.clone(),
        changes,
    }
}

/// Per-key changes between two maps, keys sorted, named `prefix.key`.
fn diff_maps(prefix: &str, old: &Map<String, Json>, new: &Map<String, Json>) -> Vec<Change> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| !same(old.get(*key), new.get(*key)))
        .map(|key| Change {
            field: format!("{prefix}.{key}"),
            old: old.get(key).map(show),
            new: new.get(key).map(show),
        })
        .collect()
}

/// Whether two values would print the same: `80` and `"80"` are not a change worth
/// showing, and neither are `2` and `2.0`.
fn same(a: Option<&Json>, b: Option<&Json>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Json::Number(x)), Some(Json::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y || show(x) == show(y),
        _ => false,
    }
}

/// A value on one line: strings bare unless that would hide something, else JSON.
fn show(value: &Json) -> String {
    match value {
        Json::String(s) if !s.is_empty() && s.trim() == s && !s.contains('\n') => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn spec() -> ModelSpec {
        ModelSpec {
            image: "team/model:2".into(),
            build_id: "b2".into(),
            run_id: "r1".into(),
            generic_resources: Default::default(),
            follow_tag: None,
            extra_template_attributes: BTreeMap::from([("team".into(), json!("search"))]),
            ..crate::desired::validate::tests::good_spec()
        }
    }

    /// The record the server would return for `spec`, with server-assigned fields.
    fn record_of(spec: &ModelSpec) -> Record {
        let mut value = serde_json::to_value(spec).unwrap();
        let map = value.as_object_mut().unwrap();
        map.insert(
            "deployment_id".into(),
            json!("839e2353728e476d9a6da2f5f781e908"),
        );
        map.insert("deployment_time".into(), json!(1586932393.25));
        map.insert("rendered_template".into(), json!("services: {}"));
        map.insert("containers".into(), json!([]));
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_unchanged_spec_has_no_differences() {
        let diff = diff_spec(&spec(), Some(&record_of(&spec())));
        assert!(!diff.has_differences());
        assert_eq!(diff.render(), "carls_model: no changes\n");
    }

    #[test]
    fn changed_fields_show_old_and_new_values_in_field_order() {
        let mut current = spec();
        current.image = "team/model:1".into();
        current.build_id = "b1".into();
        current.scale = 3;
        let diff = diff_spec(&spec(), Some(&record_of(&current)));
        assert!(diff.has_differences());
        assert_eq!(
            diff.render(),
            "carls_model:\n\
             - image: team/model:1\n\
             + image: team/model:2\n\
             - build_id: b1\n\
             + build_id: b2\n\
             - scale: 3\n\
             + scale: 2\n"
        );
    }

    #[test]
    fn extra_attributes_differ_key_by_key() {
        let mut current = spec();
        current.extra_template_attributes =
            BTreeMap::from([("team".into(), json!("ads")), ("gpu".into(), json!(true))]);
        let diff = diff_spec(&spec(), Some(&record_of(&current)));
        assert_eq!(
            diff.render(),
            "carls_model:\n\
             - extra_template_attributes.gpu: true\n\
             - extra_template_attributes.team: ads\n\
             + extra_template_attributes.team: search\n"
        );
    }

    #[test]
    fn an_unknown_model_is_not_deployed_yet() {
        let diff = diff_spec(&spec(), None);
        assert!(diff.has_differences());
        assert_eq!(diff.render(), "carls_model: not deployed yet\n");
    }

    #[test]
    fn a_field_missing_from_an_old_record_shows_only_its_new_value() {
        let mut record = record_of(&spec());
        record.0.remove("deploy_monitor_period");
        record.0.insert("port".into(), json!("80"));
        let diff = diff_spec(&spec(), Some(&record));
        assert_eq!(
            diff.render(),
            "carls_model:\n+ deploy_monitor_period: 30s\n"
        );
    }

    #[test]
    fn empty_and_padded_strings_are_quoted() {
        assert_eq!(show(&json!("")), "\"\"");
        assert_eq!(show(&json!(" x")), "\" x\"");
        assert_eq!(show(&json!("x")), "x");
        assert_eq!(show(&json!({"a": 1})), "{\"a\":1}");
    }
}
