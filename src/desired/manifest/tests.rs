use super::*;

fn parse(name: &str, text: &str) -> Vec<ManifestDoc> {
    parse_manifest(Path::new(name), text).expect("valid YAML")
}

fn errors(doc: &ManifestDoc) -> Vec<String> {
    doc.spec
        .as_ref()
        .err()
        .map(|e| e.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

const MINIMAL: &str = "domain: carls-model.com\nimage: qarlm/server\nbuild_id: b1\nrun_id: r1\n";

#[test]
fn a_minimal_manifest_gets_the_original_defaults_and_its_file_stem_as_name() {
    let docs = parse("models/carls_model.yml", MINIMAL);
    let spec = docs[0].spec.as_ref().unwrap();
    assert_eq!(spec.name, "carls_model");
    assert_eq!(spec.port, 80);
    assert_eq!(spec.scale, 2);
    assert_eq!(
        (spec.cpu_limit.as_str(), spec.cpu_reservation.as_str()),
        ("1", "0.1")
    );
    assert_eq!(
        (spec.mem_limit.as_str(), spec.mem_reservation.as_str()),
        ("2G", "1G")
    );
    assert_eq!(
        (
            spec.deploy_delay.as_str(),
            spec.deploy_monitor_period.as_str()
        ),
        ("5s", "30s")
    );
    assert_eq!(spec.template_file, "default.template.yml");
    assert!(spec.extra_template_attributes.is_empty());
    assert_eq!(docs[0].origin.to_string(), "models/carls_model.yml");
}

#[test]
fn model_type_and_template_file_fill_each_other_and_must_agree() {
    let spec = |extra: &str| {
        let docs = parse("m.yml", &format!("{MINIMAL}{extra}"));
        docs[0].spec.clone()
    };
    let default = spec("").unwrap();
    assert_eq!(default.model_type.as_deref(), Some("default"));
    let gpu = spec("model_type: gpu\n").unwrap();
    assert_eq!(gpu.template_file, "gpu.template.yml");
    let custom = spec("template_file: custom.yml\n").unwrap();
    assert_eq!(custom.model_type, None);
    let both = spec("model_type: default\ntemplate_file: default.template.yml\n").unwrap();
    assert_eq!(both.model_type.as_deref(), Some("default"));
    let errors = spec("model_type: gpu\ntemplate_file: default.template.yml\n").unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "model_type");
    assert!(
        errors[0]
            .message
            .contains("template_file is \"default.template.yml\"")
    );
}

#[test]
fn a_domain_format_fills_only_a_missing_domain() {
    let fill = Fill {
        domain_format: Some(DomainFormat::parse("{model_name}_localhost").unwrap()),
    };
    let text = "image: i\nbuild_id: b\nrun_id: r\n";
    let docs = parse_manifest_with(Path::new("carls_model.yml"), text, &fill).unwrap();
    assert_eq!(
        docs[0].spec.as_ref().unwrap().domain,
        "carls_model_localhost"
    );
    let docs = parse_manifest_with(Path::new("m.yml"), MINIMAL, &fill).unwrap();
    assert_eq!(docs[0].spec.as_ref().unwrap().domain, "carls-model.com");
    let docs = parse_manifest(Path::new("m.yml"), text).unwrap();
    let errors = docs[0].spec.as_ref().unwrap_err();
    assert_eq!(errors[0].to_string(), "domain: is required");
}

#[test]
fn a_typo_is_an_error_with_a_suggestion() {
    let docs = parse("m.yml", &format!("{MINIMAL}scael: 3\n"));
    assert_eq!(
        errors(&docs[0]),
        ["scael: unknown field: did you mean scale?"]
    );
}

#[test]
fn server_assigned_fields_cannot_be_declared() {
    let docs = parse("m.yml", &format!("{MINIMAL}deployment_id: abc\n"));
    assert_eq!(
        errors(&docs[0]),
        ["deployment_id: is assigned by the server and cannot be set"]
    );
}

#[test]
fn missing_required_fields_and_bad_types_are_all_reported() {
    let docs = parse(
        "m.yml",
        "image: [a]\nport: eighty\nscale: -1\nextra_template_attributes: 3\n",
    );
    let found = errors(&docs[0]);
    for expected in [
        "domain: is required",
        "image: expected a string, found a list",
        "port: expected a whole number from 1 to 65535, found \"eighty\"",
        "build_id: is required",
        "run_id: is required",
        "scale: expected a whole number of at least 0, found -1",
        "extra_template_attributes: expected a mapping of template variables, found a number",
    ] {
        assert!(
            found.iter().any(|e| e == expected),
            "{expected:?} not in {found:?}"
        );
    }
    assert_eq!(found.len(), 7, "{found:?}");
}

#[test]
fn several_documents_need_their_own_names_and_are_numbered() {
    let text = format!("name: a\n{MINIMAL}---\n{MINIMAL}---\n");
    let docs = parse("team.yml", &text);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].spec.as_ref().unwrap().name, "a");
    assert_eq!(docs[1].origin.to_string(), "team.yml#2");
    assert_eq!(errors(&docs[1]), ["name: is required"]);
}

#[test]
fn numbers_are_accepted_where_ids_and_quantities_are_text() {
    let docs = parse(
        "m.yml",
        "domain: d.com\nimage: i\nbuild_id: 123\nrun_id: 4.5\ncpu_limit: 2\nport: \"8080\"\n",
    );
    let spec = docs[0].spec.as_ref().unwrap();
    assert_eq!(
        (
            spec.build_id.as_str(),
            spec.run_id.as_str(),
            spec.cpu_limit.as_str()
        ),
        ("123", "4.5", "2")
    );
    assert_eq!(spec.port, 8080);
}

#[test]
fn extra_attributes_keep_nested_values_and_refuse_tags() {
    let text = format!(
        "{MINIMAL}extra_template_attributes:\n  env: {{A: '1', B: [x, 2]}}\n  t: !custom x\n"
    );
    let docs = parse("m.yml", &text);
    assert_eq!(
        errors(&docs[0]),
        ["extra_template_attributes.t: YAML tags (!custom) are not supported: write a plain value"]
    );
    let docs = parse(
        "m.yml",
        &format!("{MINIMAL}extra_template_attributes:\n  env: {{A: '1', B: [x, 2]}}\n"),
    );
    let spec = docs[0].spec.as_ref().unwrap();
    assert_eq!(
        spec.extra_template_attributes["env"],
        serde_json::json!({"A": "1", "B": ["x", 2]})
    );
}

#[test]
fn syntax_errors_name_the_file() {
    let err = parse_manifest(Path::new("bad.yml"), "a: [\n").unwrap_err();
    assert!(
        err.to_string().starts_with("bad.yml: not valid YAML: "),
        "{err}"
    );
}

#[test]
fn a_document_that_fails_to_parse_still_tells_its_name() {
    let text = "name: a\nscale: many\n---\nport: x\n---\nname: [b]\n";
    let names: Vec<Option<String>> = parse("team.yml", text)
        .into_iter()
        .map(|doc| doc.name)
        .collect();
    assert_eq!(names, [Some("a".to_string()), None, None]);
    let docs = parse("models/solo.yml", "port: x\n");
    assert_eq!(docs[0].name.as_deref(), Some("solo"));
    assert!(docs[0].spec.is_err());
}

#[test]
fn a_document_that_is_not_a_mapping_is_reported() {
    let docs = parse("m.yml", "- a\n- b\n");
    assert_eq!(
        errors(&docs[0]),
        ["(document): expected a mapping of deployment fields, found a list"]
    );
}

#[test]
fn editor_and_hidden_files_are_not_manifests() {
    for name in ["a.yml", "dir/b.yaml"] {
        assert!(is_manifest_file(Path::new(name)), "{name}");
    }
    for name in [
        ".a.yml",
        "a.yml.swp",
        "a.yml~",
        "#a.yml#",
        "a.txt",
        "a.yml.tmp",
        "4913",
        ".#a.yml",
    ] {
        assert!(!is_manifest_file(Path::new(name)), "{name}");
    }
}
