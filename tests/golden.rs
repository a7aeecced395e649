//! Golden files: what `mlmodel render` prints for every example manifest, compose and
//! service specs, compared with the files checked in under tests/golden/.
//!
//! After an intended change, regenerate them with `UPDATE_GOLDEN=1 cargo nextest run
//! --test golden` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (manifest file, model name) for every model the examples declare.
const MODELS: &[(&str, &str)] = &[
    ("demo_model.yml", "demo_model"),
    ("sentiment.yml", "sentiment"),
    ("ranking-models.yml", "ranking-a"),
    ("ranking-models.yml", "ranking-b"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(manifest: &str, model: &str, format: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .current_dir(repo())
        .args([
            "render",
            &format!("manifests/{manifest}"),
            "--name",
            model,
            "--format",
            format,
        ])
        .env_remove("MLMODEL_INSTANCE")
        .env_remove("MLMODEL_ENVIRONMENT")
        .env_remove("MLMODEL_NETWORK")
        .env_remove("MLMODEL_TEMPLATES")
        .output()
        .expect("mlmodel runs");
    assert!(
        output.status.success(),
        "mlmodel render {manifest} --name {model} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn check(golden: &Path, actual: &str) {
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(golden, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            golden.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from what mlmodel renders now (UPDATE_GOLDEN=1 regenerates it):\n--- expected\n{expected}\n--- actual\n{actual}",
        golden.display()
    );
}

#[test]
fn every_example_renders_to_its_golden_compose_file() {
    for (manifest, model) in MODELS {
        let golden = repo()
            .join("tests/golden")
            .join(format!("{model}.compose.yml"));
        check(&golden, &render(manifest, model, "compose"));
    }
}

#[test]
fn every_example_converts_to_its_golden_service_specs() {
    for (manifest, model) in MODELS {
        let golden = repo()
            .join("tests/golden")
            .join(format!("{model}.services.json"));
        check(&golden, &render(manifest, model, "services"));
    }
}

#[test]
fn renders_are_repeatable() {
    let first = render("sentiment.yml", "sentiment", "services");
    let second = render("sentiment.yml", "sentiment", "services");
    assert_eq!(first, second);
}

#[test]
fn the_examples_validate() {
    let output = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .current_dir(repo())
        .args(["validate", "manifests/"])
        .output()
        .expect("mlmodel runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("4 model(s) valid"));
}
