//! Private registries on the real swarm: a registry with htpasswd auth on this machine
//! (scripts/registry-up.sh), an image pushed there under a private name, its local tag
//! removed so that the node must pull it.
//!
//! With the credentials of `docker login` (in `DOCKER_CONFIG`), mlmodel sends them on
//! every create and update, as `docker stack deploy --with-registry-auth` does, and the
//! model runs. Without them, the model's status says that the node could not pull the
//! image and what to do about it.

mod common;

use common::server::{Server, inspect_service};
use common::{skip_or_fail, unique_name};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where scripts/registry-up.sh keeps the registry's password.
fn registry_state() -> PathBuf {
    PathBuf::from(
        std::env::var("MLMODEL_REGISTRY_STATE")
            .unwrap_or_else(|_| "/var/tmp/mlmodel-registry".to_string()),
    )
}

fn registry_address() -> String {
    let port = std::env::var("MLMODEL_REGISTRY_PORT").unwrap_or_else(|_| "5000".to_string());
    format!("127.0.0.1:{port}")
}

/// Runs the docker CLI with its config in `config`; panics with its output on failure.
fn docker_with(config: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the docker CLI runs");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        input.write_all(text.as_bytes()).expect("stdin");
    }
    let output = child.wait_with_output().expect("docker finishes");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Pushes the test image as `<registry>/private/<name>:1` and removes the local tag.
fn push_private(config: &Path, registry: &str, name: &str) -> String {
    let image = format!("{registry}/private/{name}:1");
    docker_with(config, &["tag", "mlmodel-test/static-http:1", &image], None);
    docker_with(config, &["push", &image], None);
    docker_with(config, &["rmi", &image], None);
    image
}

/// Builds another image under `image`'s name: the test image with one more label, so its
/// bits (and digest) differ. The legacy builder needs no buildx plugin.
fn retrain(config: &Path, image: &str) {
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(["build", "-q", "-t", image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the docker CLI runs");
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        input
            .write_all(b"FROM mlmodel-test/static-http:1\nLABEL mlmodel.test.retrained=\"2\"\n")
            .expect("stdin");
    }
    let output = child.wait_with_output().expect("docker finishes");
    assert!(
        output.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The digest the registry serves for `image`'s tag (its `Docker-Content-Digest`).
fn registry_digest(registry: &str, password: &str, image: &str) -> String {
    let (repository, tag) = image
        .strip_prefix(&format!("{registry}/"))
        .and_then(|rest| rest.rsplit_once(':'))
        .expect("an image of the test registry");
    let output = Command::new("curl")
        .args([
            "-sfI",
            "-u",
            &format!("mlmodel:{password}"),
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{registry}/v2/{repository}/manifests/{tag}"),
        ])
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "the registry answers for {image}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("docker-content-digest")
                .then(|| value.trim().to_string())
        })
        .expect("the registry names the digest")
}

/// The test registry's address and password, and a docker config directory logged in
/// to it; `None` (after failing under MLMODEL_REQUIRE_SWARM) without a swarm or registry.
fn logged_in() -> Option<(String, String, tempfile::TempDir)> {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::swarm())?;
    let registry = registry_address();
    let Ok(password) = std::fs::read_to_string(registry_state().join("password")) else {
        skip_or_fail("no test registry: scripts/registry-up.sh starts one");
        return None;
    };
    if std::net::TcpStream::connect(&registry).is_err() {
        skip_or_fail(&format!(
            "the test registry at {registry} does not answer: scripts/registry-up.sh starts it"
        ));
        return None;
    }
    let password = password.trim().to_string();
    let config = tempfile::tempdir().expect("temp dir");
    docker_with(
        config.path(),
        &["login", &registry, "-u", "mlmodel", "--password-stdin"],
        Some(&password),
    );
    Some((registry, password, config))
}

fn manifest(image: &str) -> String {
    format!(
        "domain: private.example.com\nimage: {image}\nbuild_id: b1\nrun_id: r1\nscale: 1\ncpu_reservation: \"0.01\"\nmem_reservation: 8M\nmem_limit: 64M\n"
    )
}

#[test]
fn a_private_image_runs_with_the_login_of_mlmodels_host_and_without_it_the_status_says_why() {
    let Some((registry, password, logged_in)) = logged_in() else {
        return;
    };
    let with_login = push_private(logged_in.path(), &registry, &unique_name("reg"));
    let without_login = push_private(logged_in.path(), &registry, &unique_name("reg"));

    let config = logged_in.path().to_string_lossy().into_owned();
    let server = Server::start_with_env(
        &unique_name("reg"),
        &[],
        &[("DOCKER_CONFIG", config.as_str())],
    );
    server.write_manifest("private.yml", &manifest(&with_login));
    server.wait_for(
        "the private image to run with the host's credentials",
        Duration::from_secs(120),
        || server.phase("private").as_deref() == Some("Available"),
    );
    let log = server.log_text();
    assert!(
        !log.contains(password.trim()),
        "the password must never be logged"
    );
    let (_, record) = server.get("/private");
    assert!(
        !record.to_string().contains(password.trim()),
        "the API must never answer the password"
    );
    // Pinned as --resolve-image pins: the digest the registry holds for the tag, asked
    // with the same credentials, shown in the status beside the tag.
    let digest = registry_digest(&registry, password.trim(), &with_login);
    let status = server.status("private").expect("a status");
    assert_eq!(status["image_digest"], digest.as_str(), "{status}");
    assert_eq!(status["image"], with_login.as_str(), "{status}");
    let spec = inspect_service(&server.service_name("private")).expect("the service exists");
    assert_eq!(
        spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{with_login}@{digest}").as_str()
    );

    let nobody = tempfile::tempdir().expect("temp dir");
    let anonymous = nobody.path().to_string_lossy().into_owned();
    let refused = Server::start_with_env(
        &unique_name("reg"),
        &[],
        &[("DOCKER_CONFIG", anonymous.as_str())],
    );
    refused.write_manifest("private.yml", &manifest(&without_login));
    let mut last = None;
    refused.wait_for(
        "the status to say the node could not pull the image",
        Duration::from_secs(90),
        || {
            last = refused.status("private");
            last.as_ref()
                .and_then(|s| s["message"].as_str())
                .is_some_and(|m| m.contains(&format!("docker login {registry}")))
        },
    );
    let status = last.expect("a status");
    assert_ne!(status["phase"], "Available", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("No such image: {without_login}"))),
        "{status}"
    );
}

#[test]
fn a_model_following_its_tag_is_redeployed_when_the_tag_is_pushed_again() {
    let Some((registry, password, login)) = logged_in() else {
        return;
    };
    let image = push_private(login.path(), &registry, &unique_name("follow"));
    let first = registry_digest(&registry, password.trim(), &image);
    let config = login.path().to_string_lossy().into_owned();
    let server = Server::start_with_env(
        &unique_name("follow"),
        &["--resync", "2s"],
        &[("DOCKER_CONFIG", config.as_str())],
    );
    server.write_manifest(
        "private.yml",
        &format!("{}follow_tag: true\n", manifest(&image)),
    );
    server.wait_for("the model to run pinned", Duration::from_secs(120), || {
        server
            .status("private")
            .is_some_and(|s| s["phase"] == "Available" && s["image_digest"] == first.as_str())
    });
    assert_eq!(server.history_len("private"), 1);

    // Retrained: another image pushed under the same tag.
    retrain(login.path(), &image);
    docker_with(login.path(), &["push", &image], None);
    docker_with(login.path(), &["rmi", &image], None);
    let second = registry_digest(&registry, password.trim(), &image);
    assert_ne!(first, second, "the retrained image has other bits");
    server.wait_for(
        "the model to be redeployed at the new digest",
        Duration::from_secs(120),
        || {
            server
                .status("private")
                .is_some_and(|s| s["phase"] == "Available" && s["image_digest"] == second.as_str())
        },
    );
    assert_eq!(server.history_len("private"), 2, "the move is recorded");
    let (_, records) = server.get("/private");
    let latest = &records[0];
    assert_eq!(latest["image_digest"], second.as_str(), "{latest}");
    assert_eq!(
        latest["image"],
        image.as_str(),
        "the declared tag is kept: {latest}"
    );
}
