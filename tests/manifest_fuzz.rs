//! No panics: the manifest parser and the validator over arbitrary input.
//!
//! Every input either parses into a spec or yields errors that each name a field and say
//! what was wrong; nothing panics, whatever the bytes.

use mlmodel::desired::Pipeline;
use mlmodel::desired::manifest::{parse_manifest, read_spec};
use mlmodel::desired::render::{Instance, Templates};
use proptest::prelude::*;
use serde_yaml::Value as Yaml;
use std::path::Path;

/// Field names a document may use, plus a server-assigned one, a typo and an empty one.
fn field_names() -> Vec<&'static str> {
    let mut names = mlmodel::desired::record::SPEC_FIELDS.to_vec();
    names.extend(["deployment_id", "scael", ""]);
    names
}

fn scalar() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        Just(Yaml::Null),
        any::<bool>().prop_map(Yaml::Bool),
        any::<i64>().prop_map(|n| Yaml::Number(n.into())),
        any::<f64>().prop_map(|f| Yaml::Number(f.into())),
        ".{0,12}".prop_map(Yaml::String),
        prop::sample::select(vec![
            "1",
            "0.1",
            "2G",
            "5s",
            "-1",
            "0",
            "1e9",
            "a.com",
            "img:1",
            "../x",
            "default.template.yml"
        ])
        .prop_map(|s| Yaml::String(s.to_string())),
    ]
}

fn value() -> impl Strategy<Value = Yaml> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Yaml::Sequence),
            prop::collection::vec((scalar(), inner), 0..4)
                .prop_map(|pairs| Yaml::Mapping(pairs.into_iter().collect())),
        ]
    })
}

/// Documents shaped like manifests: known field names (and near misses) with any values.
fn document() -> impl Strategy<Value = Yaml> {
    prop::collection::vec((prop::sample::select(field_names()), value()), 0..12).prop_map(|pairs| {
        Yaml::Mapping(
            pairs
                .into_iter()
                .map(|(k, v)| (Yaml::String(k.to_string()), v))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn any_text_parses_or_fails_cleanly(text in ".{0,200}") {
        if let Ok(docs) = parse_manifest(Path::new("fuzz.yml"), &text) {
            for doc in docs {
                if let Err(errors) = doc.spec {
                    prop_assert!(!errors.is_empty());
                }
            }
        }
    }

    #[test]
    fn any_document_is_read_and_validated_without_panicking(doc in prop_oneof![document(), value()]) {
        let templates = Templates::builtin().unwrap();
        let instance = Instance::default();
        let pipeline = Pipeline { instance: &instance, templates: &templates };
        match read_spec(&doc, Some("fuzz"), &Default::default()) {
            Ok(spec) => {
                for error in pipeline.validate(&spec) {
                    prop_assert!(!error.field.is_empty() && !error.message.is_empty());
                }
            }
            Err((errors, draft)) => {
                prop_assert!(!errors.is_empty());
                for error in &errors {
                    prop_assert!(!error.field.is_empty() && !error.message.is_empty(), "{error:?}");
                }
                if let Some(draft) = draft {
                    pipeline.validate_draft(&draft, &errors);
                }
            }
        }
    }
}
