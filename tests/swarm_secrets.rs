//! Secrets and configs on the real swarm, through `mlmodel serve`: a model's template
//! mounts a secret and a config read from the templates directory; the task sees the
//! secret's content; new content in the file rotates the secret (a new content-named
//! secret, the service moved to it, the old one removed); removing the model removes
//! what it created.

mod common;

use common::server::{Server, inspect_service};
use common::{docker_lines, unique_name};
use std::path::Path;
use std::time::Duration;

const TEMPLATE: &str = "services:\n  mlmodel:\n    image: {{ image }}\n    secrets:\n      - source: token\n        mode: 0400\n    configs:\n      - source: settings\n        target: /etc/model/settings.ini\nsecrets:\n  token:\n    file: files/token.txt\nconfigs:\n  settings:\n    file: files/settings.ini\n";

fn manifest(name: &str) -> String {
    let domain = name.replace('_', "-");
    format!(
        "name: {name}\ndomain: {domain}.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: b1\nrun_id: r1\nscale: 1\nmem_reservation: 16M\nmem_limit: 64M\ntemplate_file: secrets.yml\n"
    )
}

/// The names of the `kind` objects (secret, config) the instance owns.
fn owned(kind: &str, instance: &str) -> Vec<String> {
    let filter = format!("label=mlmodel.managed-by={instance}");
    docker_lines(&[kind, "ls", "--filter", &filter, "--format", "{{.Name}}"])
}

/// The content of `secret` as the service's running container on this node sees it:
/// Docker keeps a container's secrets under its directory, by secret id.
fn secret_in_container(service: &str, secret_name: &str) -> Option<String> {
    let ids = docker_lines(&["secret", "inspect", secret_name, "--format", "{{.ID}}"]);
    let containers = docker_lines(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    let (id, container) = (ids.first()?, containers.first()?);
    let path = Path::new("/var/lib/docker/containers")
        .join(container)
        .join("mounts/secrets")
        .join(id);
    std::fs::read_to_string(path).ok()
}

fn referenced(service: &str, list: &str, name_key: &str) -> Vec<String> {
    let spec = inspect_service(service).expect("the service exists");
    spec["Spec"]["TaskTemplate"]["ContainerSpec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[name_key].as_str().map(String::from))
        .collect()
}

#[test]
fn a_secret_reaches_the_task_rotates_with_its_file_and_goes_with_its_model() {
    if tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::swarm())
        .is_none()
    {
        return;
    }
    let templates = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(templates.path().join("files")).unwrap();
    std::fs::write(templates.path().join("secrets.yml"), TEMPLATE).unwrap();
    std::fs::write(templates.path().join("files/token.txt"), "first-token").unwrap();
    std::fs::write(
        templates.path().join("files/settings.ini"),
        "[model]\nthreads = 2\n",
    )
    .unwrap();
    let instance = unique_name("sec");
    let dir = templates.path().to_string_lossy().into_owned();
    let server = Server::start_with(&instance, &["--templates", &dir, "--resync", "2s"]);
    let model = "sec_model";
    let service = server.service_name(model);
    server.write_manifest("model.yml", &manifest(model));
    server.wait_for("the model to run", Duration::from_secs(90), || {
        server.phase(model).as_deref() == Some("Available")
    });
    let secrets = owned("secret", &instance);
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert!(
        secrets[0].starts_with(&format!("{instance}_{model}_token-")),
        "{secrets:?}"
    );
    let configs = owned("config", &instance);
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert_eq!(referenced(&service, "Secrets", "SecretName"), secrets);
    assert_eq!(referenced(&service, "Configs", "ConfigName"), configs);
    assert_eq!(
        secret_in_container(&service, &secrets[0]).as_deref(),
        Some("first-token")
    );

    std::fs::write(templates.path().join("files/token.txt"), "second-token").unwrap();
    let mut now = Vec::new();
    server.wait_for(
        "the service to move to the rotated secret and the old one to go",
        Duration::from_secs(120),
        || {
            now = owned("secret", &instance);
            now.len() == 1 && now != secrets && referenced(&service, "Secrets", "SecretName") == now
        },
    );
    server.wait_for(
        "the new task to see the new content",
        Duration::from_secs(90),
        || secret_in_container(&service, &now[0]).as_deref() == Some("second-token"),
    );
    assert_eq!(
        owned("config", &instance),
        configs,
        "the config did not change"
    );
    assert_eq!(server.phase(model).as_deref(), Some("Available"));

    server.remove_manifest("model.yml");
    server.wait_for(
        "the model's service, secret and config to go",
        Duration::from_secs(90),
        || {
            inspect_service(&service).is_none()
                && owned("secret", &instance).is_empty()
                && owned("config", &instance).is_empty()
        },
    );
}
