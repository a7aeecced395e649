//! Reading manifests for `apply` and `diff`, checked locally before anything is sent.

use crate::desired::manifest::{self, Fill, Origin};
use crate::desired::record::{ModelSpec, SPEC_FIELDS};
use crate::desired::render::{CONTEXT_NAMES, Instance};
use crate::desired::validate::{self, FieldError, Rules};
use std::path::PathBuf;

/// One model declared in a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSpec {
    /// The file (and document) it came from.
    pub origin: Origin,
    /// The declaration, defaults filled in.
    pub spec: ModelSpec,
}

/// Checks a spec's fields the way the server will.
///
/// Two things only the server knows are left to it: which templates it has (its
/// templates directory may add to the built-in ones), and its instance name, which
/// counts against Docker's service-name limit; the default instance is assumed here.
pub fn check_locally(spec: &ModelSpec) -> Vec<FieldError> {
    let prefix = format!("{}_", Instance::default().name);
    let reserved: Vec<&str> = SPEC_FIELDS.iter().chain(CONTEXT_NAMES).copied().collect();
    let rules = Rules {
        stack_prefix: &prefix,
        template_exists: &|_| true,
        reserved_names: &reserved,
    };
    validate::validate_spec(spec, &rules)
}

/// Reads every manifest under `paths` (files, or directories searched recursively) and
/// checks each model.
///
/// Returns the models in file order, or every problem found, one line each:
/// `FILE[#DOC]: FIELD: message`.
///
/// A model without `domain` gets one from `MLMODEL_DOMAIN_FORMAT` (or the original's
/// `MLMODEL_ENDPOINT_DOMAIN_FORMAT`) when set, as the server does.
pub fn load(paths: &[PathBuf]) -> Result<Vec<LocalSpec>, Vec<String>> {
    let fill = Fill {
        domain_format: Fill::domain_format_from_env().map_err(|e| vec![e])?,
    };
    let (docs, mut errors) = manifest::load_paths(paths, &fill);
    let mut specs = Vec::new();
    for doc in docs {
        let field_errors = match &doc.spec {
            Ok(spec) => check_locally(spec),
            Err(field_errors) => field_errors.clone(),
        };
        errors.extend(field_errors.iter().map(|e| format!("{}: {e}", doc.origin)));
        if let (Ok(spec), true) = (doc.spec, field_errors.is_empty()) {
            specs.push(LocalSpec {
                origin: doc.origin,
                spec,
            });
        }
    }
    errors.extend(manifest::duplicate_names(
        specs
            .iter()
            .map(|local| (local.spec.name.as_str(), &local.origin)),
    ));
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a manifest; every document gets the required build and run ids.
    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        let ids = "build_id: b1\nrun_id: r1\n";
        let text: Vec<String> = text
            .split("---\n")
            .map(|doc| format!("{ids}{doc}"))
            .collect();
        std::fs::write(&path, text.join("---\n")).unwrap();
        path
    }

    #[test]
    fn valid_manifests_load_in_file_order_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "b.yml",
            "domain: b.example.com\nimage: team/b:1\n",
        );
        write(
            dir.path(),
            "a.yaml",
            "domain: a.example.com\nimage: team/a:1\nscale: 3\n",
        );
        let specs = load(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(specs[0].spec.scale, 3);
        assert_eq!(specs[1].spec.port, 80);
    }

    #[test]
    fn every_problem_is_reported_with_file_document_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "models.yml",
            "name: one\ndomain: one.example.com\nimage: team/one:1\nscale: lots\n---\n\
             name: two\ndomain: -bad-\nimage: team/two:1\nmem_limit: 1G\nmem_reservation: 2G\n",
        );
        let errors = load(std::slice::from_ref(&file)).unwrap_err();
        let shown = file.display().to_string();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with(&format!("{shown}#1: scale: ")),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with(&format!("{shown}#2: domain: ")),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with(&format!("{shown}#2: mem_reservation: ")),
            "{errors:#?}"
        );
    }

    #[test]
    fn templates_are_left_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "m.yml",
            "domain: m.example.com\nimage: team/m:1\ntemplate_file: gpu.template.yml\n",
        );
        assert!(load(&[file]).is_ok());
    }

    #[test]
    fn a_name_declared_twice_is_an_error_on_both_declarations() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yml",
            "name: same\ndomain: a.example.com\nimage: team/a:1\n",
        );
        write(
            dir.path(),
            "b.yml",
            "name: same\ndomain: b.example.com\nimage: team/b:1\n",
        );
        let errors = load(&[dir.path().to_path_buf()]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].contains("a.yml: name: \"same\" is also declared by"),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_empty_directory_and_a_missing_path_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yml");
        let errors = load(&[dir.path().to_path_buf(), missing]).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].ends_with("no manifest files (*.yml, *.yaml) found"));
        assert!(
            errors[1].contains("missing.yml: cannot read"),
            "{errors:#?}"
        );
    }
}
