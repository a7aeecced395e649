//! Injection safety: no value a user supplies can change the structure of a rendered stack.
//!
//! For every string field of a spec and for nested extra attributes, arbitrary values are
//! either rejected by validation with an error on that field, or the rendered stack has
//! exactly the structure it has with a benign value and the value reads back unchanged,
//! both from the compose YAML and from the Swarm service spec it converts to.

use mlmodel::desired::record::ModelSpec;
use mlmodel::desired::record::Source;
use mlmodel::desired::render::{Instance, Templates};
use mlmodel::desired::{Identity, Pipeline};
use proptest::prelude::*;
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;

/// Benign values, each distinctive enough to be found and replaced in the rendered tree.
fn benign_spec() -> ModelSpec {
    ModelSpec {
        name: "benignname".into(),
        domain: "benign.example".into(),
        image: "benign/image:1".into(),
        port: 8123,
        build_id: "benignbuild".into(),
        run_id: "benignrun".into(),
        scale: 2,
        cpu_limit: "1.75".into(),
        cpu_reservation: "0.33".into(),
        mem_limit: "777M".into(),
        mem_reservation: "333M".into(),
        deploy_delay: "7s".into(),
        deploy_monitor_period: "41s".into(),
        template_file: "default.template.yml".into(),
        model_type: Some("default".into()),
        generic_resources: Default::default(),
        follow_tag: None,
        extra_template_attributes: BTreeMap::new(),
    }
}

const FIELDS: &[&str] = &[
    "name",
    "domain",
    "image",
    "build_id",
    "run_id",
    "cpu_limit",
    "cpu_reservation",
    "mem_limit",
    "mem_reservation",
    "deploy_delay",
    "deploy_monitor_period",
    "template_file",
];

fn field_mut<'a>(spec: &'a mut ModelSpec, field: &str) -> &'a mut String {
    match field {
        "name" => &mut spec.name,
        "domain" => &mut spec.domain,
        "image" => &mut spec.image,
        "build_id" => &mut spec.build_id,
        "run_id" => &mut spec.run_id,
        "cpu_limit" => &mut spec.cpu_limit,
        "cpu_reservation" => &mut spec.cpu_reservation,
        "mem_limit" => &mut spec.mem_limit,
        "mem_reservation" => &mut spec.mem_reservation,
        "deploy_delay" => &mut spec.deploy_delay,
        "deploy_monitor_period" => &mut spec.deploy_monitor_period,
        "template_file" => &mut spec.template_file,
        other => panic!("no string field {other}"),
    }
}

fn identity() -> Identity {
    Identity {
        deployment_id: "0123456789abcdef0123456789abcdef".into(),
        deployment_time: 1.5,
        image_digest: None,
    }
}

/// Strings built from the characters that matter to YAML, JSON, compose and shells.
fn hostile_string() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "Z", "0", "9", ".", "-", "_", "/", ":", " ", "\"", "'", "\\", "\n", "\r", "\t", "#",
        "{", "}", "[", "]", ",", "&", "*", "!", "|", ">", "%", "@", "`", "$", "$$", "${HOME}",
        "---", "...", "? ", ": ", "- ", "\u{85}", "\u{2028}", "\u{2029}", "\u{feff}", "\u{0}",
        "\u{7f}", "\u{9b}", "é", "😀", "true", "null", "~", "0x1F", "1e3", "!!str", "&a", "*a",
        "<<",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat()),
        any::<String>(),
    ]
}

/// Applies compose's `$$` -> `$` unescaping to every string in a tree.
fn unescape(value: &Yaml) -> Yaml {
    map_strings(value, &|s| s.replace("$$", "$"))
}

fn map_strings(value: &Yaml, f: &dyn Fn(&str) -> String) -> Yaml {
    match value {
        Yaml::String(s) => Yaml::String(f(s)),
        Yaml::Sequence(items) => Yaml::Sequence(items.iter().map(|v| map_strings(v, f)).collect()),
        Yaml::Mapping(m) => Yaml::Mapping(
            m.iter()
                .map(|(k, v)| (map_strings(k, f), map_strings(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn pipeline_check(field: &str, value: &str) -> Result<(), TestCaseError> {
    let templates = Templates::builtin().expect("built-in templates compile");
    let instance = Instance::default();
    let pipeline = Pipeline {
        instance: &instance,
        templates: &templates,
    };
    let benign = benign_spec();
    let benign_value = field_mut(&mut benign.clone(), field).clone();
    let mut spec = benign.clone();
    *field_mut(&mut spec, field) = value.to_string();
    match pipeline.build(spec, identity(), &Source::Api) {
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for error in &errors {
                prop_assert!(
                    error.field == field
                        || (field.starts_with("cpu_") && error.field.starts_with("cpu_"))
                        || (field.starts_with("mem_") && error.field.starts_with("mem_")),
                    "value {value:?} for {field} was rejected on another field: {error}"
                );
                prop_assert!(!error.message.is_empty());
            }
        }
        Ok(desired) => {
            let reference = pipeline
                .build(benign, identity(), &Source::Api)
                .expect("benign spec is valid");
            let expected: Yaml = serde_yaml::from_str(&reference.record.rendered_template).unwrap();
            let expected = map_strings(&expected, &|s| s.replace(&benign_value, value));
            let actual: Yaml =
                serde_yaml::from_str(&desired.record.rendered_template).map_err(|e| {
                    TestCaseError::fail(format!("rendered stack is not YAML for {value:?}: {e}"))
                })?;
            prop_assert_eq!(
                unescape(&actual),
                expected,
                "structure changed for {} = {:?}",
                field,
                value
            );
            let service = &desired.stack.services[0];
            let labels = service.labels.clone().unwrap_or_default();
            match field {
                "build_id" => prop_assert_eq!(
                    labels.get("mlmodel.build-id").map(String::as_str),
                    Some(value)
                ),
                "run_id" => prop_assert_eq!(
                    labels.get("mlmodel.run-id").map(String::as_str),
                    Some(value)
                ),
                "image" => {
                    let image = service
                        .task_template
                        .as_ref()
                        .and_then(|t| t.container_spec.as_ref())
                        .and_then(|c| c.image.clone());
                    prop_assert_eq!(image.as_deref(), Some(value));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Arbitrary JSON values: scalars with hostile strings, nested lists and maps.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        hostile_string().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(hostile_string(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_to_yaml_unescaped(value: &serde_json::Value) -> Yaml {
    serde_yaml::to_value(value).expect("JSON converts to YAML")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn string_fields_cannot_change_the_stack_structure(field in prop::sample::select(FIELDS), value in hostile_string()) {
        pipeline_check(field, &value)?;
    }

    #[test]
    fn environment_values_round_trip_into_the_service_spec(env in prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", hostile_string(), 0..5)) {
        let templates = Templates::builtin().unwrap();
        let instance = Instance::default();
        let pipeline = Pipeline { instance: &instance, templates: &templates };
        let mut spec = benign_spec();
        spec.extra_template_attributes.insert("env".into(), serde_json::json!(env));
        let desired = pipeline.build(spec, identity(), &Source::Api);
        let desired = desired.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let container = desired.stack.services[0].task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
        let mut expected: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        expected.sort();
        prop_assert_eq!(container.env.clone().unwrap_or_default(), expected);
    }

    #[test]
    fn nested_attributes_render_as_exactly_themselves(value in json_value()) {
        let templates = Templates::from_sources([(
            "echo.yml".to_string(),
            "before: 1\nvalue: {{ attr }}\nlist:\n  - {{ attr }}\nafter: 2\n".to_string(),
        )]).unwrap();
        let mut spec = benign_spec();
        spec.template_file = "echo.yml".into();
        spec.extra_template_attributes.insert("attr".into(), value.clone());
        let record = mlmodel::desired::record::DeploymentRecord {
            spec,
            deployment_id: identity().deployment_id,
            deployment_time: 1.5,
            rendered_template: String::new(),
            image_digest: None,
        };
        let text = templates.render(&record, &Instance::default()).unwrap();
        let rendered: Yaml = serde_yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let rendered = unescape(&rendered);
        let Yaml::Mapping(root) = &rendered else { return Err(TestCaseError::fail("not a mapping")) };
        let keys: Vec<&str> = root.keys().filter_map(Yaml::as_str).collect();
        prop_assert_eq!(keys, ["before", "value", "list", "after"]);
        let expected = json_to_yaml_unescaped(&value);
        prop_assert_eq!(&rendered["value"], &expected);
        prop_assert_eq!(&rendered["list"][0], &expected);
        prop_assert_eq!(rendered["list"].as_sequence().map(Vec::len), Some(1));
    }
}
