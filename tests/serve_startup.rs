//! `mlmodel serve` refuses to start, with a message that says what fixes it, when it
//! cannot do its job.

use std::process::Command;

fn serve(extra_env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .envs(extra_env.iter().copied())
        .output()
        .expect("mlmodel runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_docker_stops_serve_with_the_fix() {
    let (code, stderr) = serve(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach Docker"), "{stderr}");
    assert!(stderr.contains("scripts/swarm-up.sh"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    let (code, stderr) = serve(&[], &["--resync", "soon"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--resync"), "{stderr}");
    let (code, stderr) = serve(&[], &["--listen", "not-an-address"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
}
