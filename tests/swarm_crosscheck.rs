//! Cross-checks the converter against the real `docker stack deploy` on this swarm.
//!
//! For every compose file in `tests/fixtures/compose/`:
//!
//! 1. `docker stack deploy` deploys it; every service the CLI created is inspected and
//!    compared with `convert_yaml` for the same stack name. The comparison is exact on
//!    every field, after filling in on both sides the defaults the daemon adds by itself
//!    (10s stop grace period, vip mode, tcp/ingress ports, ...) and mapping network IDs
//!    back to names. The networks the CLI created are compared with ours too, and so are
//!    its secrets and configs: mlmodel's carry a content hash in their names, which the
//!    comparison maps back to Docker's names (ids are left out, being allocated).
//! 2. The stack is removed and recreated from mlmodel's specs through the API. What the
//!    daemon then stores must equal, raw and field for field, what it stored for the
//!    CLI's deployment: proof that the two requests mean the same to Docker. The CLI's
//!    `docker stack services` must see the stack, and services expected to run must
//!    reach a running task.

mod common;

use bollard::Docker;
use common::{
    StackGuard, docker_cli, docker_lines, docker_ok, remove_stack, skip_or_fail, stack_network_ids,
    stack_networks, stack_services, unique_name,
};
use mlmodel::desired::convert::{FilesIn, convert_yaml};
use mlmodel::desired::stack::{ObjectKind, StackSpec, labels, with_object_ids};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/compose");

/// Deploy label with which a fixture marks a service whose tasks exit by design.
const EXPECT_RUNNING: &str = "mlmodeltest.expect-running";

/// The image every fixture uses; built by scripts/build-test-image.sh.
const TEST_IMAGE: &str = "mlmodel-test/static-http:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_specs_match_what_docker_stack_deploy_creates() {
    let Some(docker) = common::swarm().await else {
        return;
    };
    if !docker_cli(&["version"]).status.success() {
        skip_or_fail("the docker CLI cannot talk to the engine");
        return;
    }
    if !docker_cli(&["image", "inspect", TEST_IMAGE])
        .status
        .success()
    {
        skip_or_fail(&format!(
            "the test image {TEST_IMAGE} is missing (scripts/build-test-image.sh builds it)"
        ));
        return;
    }
    let fixtures = fixture_files();
    assert!(!fixtures.is_empty(), "no fixtures in {FIXTURES}");
    let handle = Handle::current();
    // A few fixtures at a time: the engine is shared with other tests on two cores.
    let slots = Arc::new(Semaphore::new(4));
    let mut checks = Vec::new();
    for fixture in fixtures {
        let (docker, handle, slots) = (docker.clone(), handle.clone(), slots.clone());
        let path = fixture.clone();
        let check = tokio::spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            tokio::task::spawn_blocking(move || check_fixture(&handle, &docker, &path)).await
        });
        checks.push((fixture, check));
    }
    let mut failures = Vec::new();
    for (fixture, check) in checks {
        let name = fixture
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match check.await.and_then(|blocking| blocking) {
            Ok(Ok(())) => eprintln!("{name}: docker and mlmodel agree"),
            Ok(Err(report)) => failures.push(format!("{name}:\n{report}")),
            Err(panic) => failures.push(format!("{name}: the check panicked: {panic}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap_or_else(|e| panic!("cannot read {FIXTURES}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    files
}

/// Runs both phases for one fixture; returns a readable report of every mismatch.
fn check_fixture(handle: &Handle, docker: &Docker, fixture: &Path) -> Result<(), String> {
    let yaml = std::fs::read_to_string(fixture).map_err(|e| e.to_string())?;
    let files = FilesIn(PathBuf::from(FIXTURES));
    let guard = StackGuard::new(unique_name("xc"));
    let stack = guard.name();
    let ours = convert_yaml(stack, &yaml, &files)
        .map_err(|errors| format!("mlmodel refused the file: {errors:#?}"))?;
    let path = fixture.to_string_lossy();
    docker_ok(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "--detach=true",
        "-c",
        &path,
        stack,
    ]);

    let mut report = Vec::new();
    let names: Vec<String> = ours
        .services
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    let created = stack_services(stack);
    if created != names {
        report.push(format!(
            "docker created services {created:?}, mlmodel converted {names:?}"
        ));
    }
    let by_docker: BTreeMap<String, Value> = inspect_services(&created)
        .into_iter()
        .map(|(name, spec)| (name, docker_object_names(spec, &HashMap::new())))
        .collect();
    let our_names = object_names(&ours);
    for spec in &ours.services {
        let name = spec.name.clone().unwrap_or_default();
        let Some(theirs) = by_docker.get(&name) else {
            continue;
        };
        let ours_json = with_daemon_defaults(docker_object_names(service_json(spec), &our_names));
        for line in diff(&with_daemon_defaults(theirs.clone()), &ours_json) {
            report.push(format!("{name} (docker vs mlmodel): {line}"));
        }
    }
    report.extend(compare_networks_with_ours(stack, &ours));
    report.extend(compare_objects_with_ours(&ours));
    let docker_networks = inspect_networks(&stack_network_ids(stack));

    // Phase 2: the same stack from mlmodel's own specs, through the API, under a second
    // name and compared with that name mapped back to the first: Docker 20.10 can leave
    // a removed stack network behind on the node (held by its load-balancer endpoint),
    // and a network recreated under the same name would then be ambiguous.
    remove_stack(stack);
    let again = StackGuard::new(format!("{stack}-again"));
    let ours_again = convert_yaml(again.name(), &yaml, &files)
        .map_err(|errors| format!("mlmodel refused the file: {errors:#?}"))?;
    let again_names = object_names(&ours_again);
    let as_first = |value: Value| renamed(value, again.name(), stack);
    let our_network_ids = handle.block_on(create_stack(docker, &ours_again))?;
    let by_mlmodel: BTreeMap<String, Value> = inspect_services(&stack_services(again.name()))
        .into_values()
        .map(|spec| docker_object_names(spec, &again_names))
        .map(as_first)
        .map(|spec| (spec["Name"].as_str().unwrap_or_default().to_string(), spec))
        .collect();
    for (name, theirs) in &by_docker {
        match by_mlmodel.get(name) {
            None => report.push(format!("{name}: missing after creating mlmodel's specs")),
            Some(mine) => report.extend(
                diff(theirs, mine)
                    .into_iter()
                    .map(|line| format!("{name} (stored from docker vs from mlmodel): {line}")),
            ),
        }
    }
    let our_networks = as_first(Value::Object(inspect_networks(&our_network_ids)));
    for line in diff(&Value::Object(docker_networks), &our_networks) {
        report.push(format!(
            "networks (created by docker vs by mlmodel): {line}"
        ));
    }
    let listed: Vec<String> =
        docker_lines(&["stack", "services", again.name(), "--format", "{{.Name}}"])
            .into_iter()
            .map(|name| name.replace(again.name(), stack))
            .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    if listed_sorted != names {
        report.push(format!(
            "docker stack services lists {listed:?} (named after the first stack), expected \
             {names:?}"
        ));
    }
    report.extend(wait_for_running_tasks(&ours_again));
    drop(again);
    drop(guard);
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.join("\n"))
    }
}

/// `value` with every occurrence of the stack name `from` in its strings replaced by `to`.
fn renamed(value: Value, from: &str, to: &str) -> Value {
    let text = serde_json::to_string(&value).expect("JSON values serialise");
    serde_json::from_str(&text.replace(from, to)).expect("a renamed stack is still JSON")
}

/// Creates the stack's networks, secrets, configs and services from mlmodel's specs;
/// returns the ids of the networks.
async fn create_stack(docker: &Docker, stack: &StackSpec) -> Result<Vec<String>, String> {
    let mut network_ids = Vec::new();
    for network in &stack.networks {
        let created = docker
            .create_network(network.create_request())
            .await
            .map_err(|e| format!("creating network {}: {e}", network.name))?;
        network_ids.push(created.id);
    }
    let mut object_ids = HashMap::new();
    for object in stack.objects.iter().filter(|o| !o.external) {
        let created = match object.kind {
            ObjectKind::Secret => docker.create_secret(object.secret_spec()).await,
            ObjectKind::Config => docker.create_config(object.config_spec()).await,
        }
        .map_err(|e| format!("creating {} {}: {e}", object.kind.word(), object.name))?;
        object_ids.insert((object.kind, object.name.clone()), created.id);
    }
    for service in &stack.services {
        let service = with_object_ids(service, |kind, name| {
            object_ids.get(&(kind, name.to_string())).cloned()
        })
        .map_err(|(kind, name)| format!("no {} {name} was created", kind.word()))?;
        docker
            .create_service(service.clone(), None)
            .await
            .map_err(|e| format!("creating service {:?}: {e}", service.name))?;
    }
    Ok(network_ids)
}

/// mlmodel's name of each secret and config the stack creates, to Docker's.
fn object_names(stack: &StackSpec) -> HashMap<String, String> {
    stack
        .objects
        .iter()
        .map(|o| (o.name.clone(), o.docker_name.clone()))
        .collect()
}

/// A service spec with its secret and config references named as Docker names them
/// (through `names`) and without ids, which every deployment allocates anew; references
/// to one object are put in the order of their file names.
///
/// `docker stack deploy` sorts the references by object name with Go's `sort.Slice`,
/// which is not stable: one secret mounted twice (`secrets_and_configs.yml`) comes in
/// either order from one deploy to the next (seen in CI), and the order of two mounts of
/// one object means nothing to the engine. mlmodel keeps the file's order.
fn docker_object_names(mut spec: Value, names: &HashMap<String, String>) -> Value {
    // A credential spec read from a config names it by id (Docker's side) or by
    // mlmodel's name (ours, until the write): both become Docker's name.
    let by_id: HashMap<String, String> = spec
        .pointer("/TaskTemplate/ContainerSpec/Configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["ConfigID"].as_str()?.to_string(),
                r["ConfigName"].as_str()?.to_string(),
            ))
        })
        .collect();
    if let Some(config) =
        spec.pointer_mut("/TaskTemplate/ContainerSpec/Privileges/CredentialSpec/Config")
        && let Some(current) = config.as_str().map(str::to_string)
    {
        let name = by_id.get(&current).cloned().unwrap_or(current);
        *config = json!(names.get(&name).cloned().unwrap_or(name));
    }
    for (list, name_key, id_key) in [
        ("Secrets", "SecretName", "SecretID"),
        ("Configs", "ConfigName", "ConfigID"),
    ] {
        let Some(references) = spec
            .pointer_mut(&format!("/TaskTemplate/ContainerSpec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for reference in references {
            let Some(reference) = reference.as_object_mut() else {
                continue;
            };
            reference.remove(id_key);
            let name = reference[name_key].as_str().unwrap_or_default().to_string();
            if let Some(docker_name) = names.get(&name) {
                reference.insert(name_key.to_string(), json!(docker_name));
            }
        }
        let Some(references) = spec
            .pointer_mut(&format!("/TaskTemplate/ContainerSpec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        // Only neighbours that reference the same object change places: the order
        // across objects is still compared.
        let object = |r: &Value| r[name_key].as_str().unwrap_or_default().to_string();
        let file = |r: &Value| r["File"]["Name"].as_str().unwrap_or_default().to_string();
        for same in references.chunk_by_mut(|a, b| object(a) == object(b)) {
            same.sort_by_key(file);
        }
    }
    spec
}

/// Compares the secrets and configs `docker stack deploy` created with mlmodel's, under
/// Docker's names. A secret's data is never answered; a config's is.
fn compare_objects_with_ours(ours: &StackSpec) -> Vec<String> {
    let mut report = Vec::new();
    for object in ours.objects.iter().filter(|o| !o.external) {
        let word = object.kind.word();
        let inspected = docker_cli(&[word, "inspect", &object.docker_name]);
        if !inspected.status.success() {
            report.push(format!(
                "docker created no {word} {}: {}",
                object.docker_name,
                String::from_utf8_lossy(&inspected.stderr).trim()
            ));
            continue;
        }
        let theirs: Vec<Value> = serde_json::from_slice(&inspected.stdout)
            .unwrap_or_else(|e| panic!("docker {word} inspect printed no JSON: {e}"));
        let mut mine = match object.kind {
            ObjectKind::Secret => {
                let mut spec = serde_json::to_value(object.secret_spec()).unwrap();
                spec.as_object_mut().unwrap().remove("Data");
                spec
            }
            ObjectKind::Config => serde_json::to_value(object.config_spec()).unwrap(),
        };
        mine["Name"] = json!(object.docker_name);
        for line in diff(&theirs[0]["Spec"], &mine) {
            report.push(format!(
                "{word} {} (docker vs mlmodel): {line}",
                object.docker_name
            ));
        }
    }
    report
}

/// Maps full network IDs to names, for the targets of network attachments.
fn network_names_by_id() -> HashMap<String, String> {
    docker_lines(&[
        "network",
        "ls",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Name}}",
    ])
    .into_iter()
    .filter_map(|line| {
        line.split_once(' ')
            .map(|(id, name)| (id.to_string(), name.to_string()))
    })
    .collect()
}

/// Each service's stored spec, by name, with network IDs replaced by names.
fn inspect_services(names: &[String]) -> BTreeMap<String, Value> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    let ids = network_names_by_id();
    let mut args = vec!["service", "inspect"];
    args.extend(names.iter().map(String::as_str));
    let inspected: Vec<Value> =
        serde_json::from_str(&docker_ok(&args)).expect("docker service inspect prints JSON");
    inspected
        .into_iter()
        .map(|service| {
            let mut spec = service["Spec"].clone();
            if let Some(attachments) = spec
                .pointer_mut("/TaskTemplate/Networks")
                .and_then(Value::as_array_mut)
            {
                for attachment in attachments {
                    let name = attachment["Target"]
                        .as_str()
                        .and_then(|id| ids.get(id))
                        .cloned();
                    if let Some(name) = name {
                        attachment["Target"] = json!(name);
                    }
                }
            }
            (spec["Name"].as_str().unwrap_or_default().to_string(), spec)
        })
        .collect()
}

/// The fields of each network that a stack decides, by name.
///
/// Looked up by id, not by name: the overlay network a stack removal has just deleted can
/// linger on the node under the same name until its endpoints are torn down, and Docker
/// then refuses to inspect that name as ambiguous.
fn inspect_networks(ids: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for id in ids {
        let inspected: Vec<Value> = serde_json::from_str(&docker_ok(&["network", "inspect", id]))
            .expect("docker network inspect prints JSON");
        let n = &inspected[0];
        let name = n["Name"].as_str().unwrap_or_default().to_string();
        let mut options = n["Options"].as_object().cloned().unwrap_or_default();
        // The VXLAN id is allocated per network; everything else must match.
        options.remove("com.docker.network.driver.overlay.vxlanid_list");
        out.insert(
            name,
            json!({
                "Driver": n["Driver"], "Scope": n["Scope"], "Attachable": n["Attachable"],
                "Internal": n["Internal"], "Ingress": n["Ingress"], "EnableIPv6": n["EnableIPv6"],
                "ConfigOnly": n["ConfigOnly"], "Labels": n["Labels"], "Options": options,
                "IPAMDriver": n["IPAM"]["Driver"], "IPAMOptions": n["IPAM"]["Options"],
            }),
        );
    }
    out
}

/// Compares the networks `docker stack deploy` created with mlmodel's list.
fn compare_networks_with_ours(stack: &str, ours: &StackSpec) -> Vec<String> {
    let mut report = Vec::new();
    let created = stack_networks(stack);
    let expected: Vec<String> = ours.networks.iter().map(|n| n.name.clone()).collect();
    if created != expected {
        report.push(format!(
            "docker created networks {created:?}, mlmodel would create {expected:?}"
        ));
    }
    let inspected = inspect_networks(&stack_network_ids(stack));
    for network in &ours.networks {
        let Some(theirs) = inspected.get(&network.name) else {
            continue;
        };
        let mine = json!({
            "Driver": network.driver, "Scope": "swarm", "Attachable": network.attachable,
            "Labels": network.labels,
        });
        let theirs = json!({
            "Driver": theirs["Driver"], "Scope": theirs["Scope"], "Attachable": theirs["Attachable"],
            "Labels": theirs["Labels"],
        });
        for line in diff(&theirs, &mine) {
            report.push(format!(
                "network {} (docker vs mlmodel): {line}",
                network.name
            ));
        }
    }
    report
}

/// A spec as JSON, with bollard's `HealthCheck` spelled as the API spells it.
///
/// bollard serializes the field as `HealthCheck`; the daemon decodes JSON field names
/// case-insensitively, so it accepts that, but it answers with `Healthcheck`.
fn service_json(spec: &bollard::models::ServiceSpec) -> Value {
    let mut value = serde_json::to_value(spec).expect("a service spec serializes");
    if let Some(container) = value
        .pointer_mut("/TaskTemplate/ContainerSpec")
        .and_then(Value::as_object_mut)
        && let Some(check) = container.remove("HealthCheck")
    {
        container.insert("Healthcheck".to_string(), check);
    }
    value
}

/// Fills in what the daemon (and the CLI's re-encoding of its answer) adds by itself.
fn with_daemon_defaults(mut spec: Value) -> Value {
    let update_defaults = json!({
        "Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000i64,
        "MaxFailureRatio": 0, "Order": "stop-first",
    });
    fill(
        &mut spec,
        &json!({
            "TaskTemplate": {
                "ContainerSpec": {
                    "Privileges": {"CredentialSpec": null, "SELinuxContext": null, "NoNewPrivileges": false},
                    "StopGracePeriod": 10_000_000_000i64,
                    "DNSConfig": {},
                    "Isolation": "default",
                },
                "Resources": {},
                "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000i64, "MaxAttempts": 0},
                "Placement": {},
                "ForceUpdate": 0,
                "Runtime": "container",
            },
            "UpdateConfig": update_defaults,
            "RollbackConfig": update_defaults,
            "EndpointSpec": {"Mode": "vip"},
        }),
    );
    if let Some(replicated) = spec.pointer_mut("/Mode/Replicated") {
        fill(replicated, &json!({"Replicas": 1}));
    }
    if let Some(ports) = spec
        .pointer_mut("/EndpointSpec/Ports")
        .and_then(Value::as_array_mut)
    {
        for port in ports {
            fill(port, &json!({"Protocol": "tcp", "PublishMode": "ingress"}));
        }
    }
    spec
}

/// Adds every key of `defaults` that `target` lacks, recursing into objects both have.
fn fill(target: &mut Value, defaults: &Value) {
    let (Some(target), Some(defaults)) = (target.as_object_mut(), defaults.as_object()) else {
        return;
    };
    for (key, default) in defaults {
        match target.get_mut(key) {
            None => {
                target.insert(key.clone(), default.clone());
            }
            Some(existing) => fill(existing, default),
        }
    }
}

/// Lists every difference between two JSON values as `path: docker X, mlmodel Y`.
fn diff(theirs: &Value, ours: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("", theirs, ours, &mut out);
    out
}

fn diff_at(path: &str, theirs: &Value, ours: &Value, out: &mut Vec<String>) {
    match (theirs, ours) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let missing = Value::String("<absent>".to_string());
                diff_at(
                    &format!("{path}.{key}"),
                    a.get(key).unwrap_or(&missing),
                    b.get(key).unwrap_or(&missing),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_at(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if theirs == ours => {}
        _ => out.push(format!("{path}: docker {theirs}, mlmodel {ours}")),
    }
}

/// Waits until every service expected to run has a running task; reports the others.
fn wait_for_running_tasks(stack: &StackSpec) -> Vec<String> {
    let expected: Vec<String> = stack
        .services
        .iter()
        .filter(|s| {
            let exits = s
                .labels
                .as_ref()
                .and_then(|l| l.get(EXPECT_RUNNING))
                .is_some_and(|v| v == "false");
            let replicas = s
                .mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas);
            !exits && replicas != Some(0)
        })
        .filter_map(|s| s.name.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut waiting = expected;
    loop {
        waiting.retain(|name| {
            let states = docker_lines(&["service", "ps", name, "--format", "{{.CurrentState}}"]);
            !states.iter().any(|s| s.starts_with("Running"))
        });
        if waiting.is_empty() {
            return Vec::new();
        }
        if Instant::now() > deadline {
            return waiting
                .iter()
                .map(|name| {
                    let tasks = docker_lines(&[
                        "service",
                        "ps",
                        name,
                        "--no-trunc",
                        "--format",
                        "{{.CurrentState}} {{.Error}}",
                    ]);
                    format!("{name}: no task reached Running within 90s: {tasks:?}")
                })
                .collect();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Keeps the `labels` import meaningful: fixtures are converted with the stack label.
#[test]
fn fixtures_convert_without_errors() {
    for fixture in fixture_files() {
        let yaml = std::fs::read_to_string(&fixture).unwrap();
        let stack = convert_yaml("mlmodeltest", &yaml, &FilesIn(PathBuf::from(FIXTURES)))
            .unwrap_or_else(|errors| panic!("{}: {errors:#?}", fixture.display()));
        for service in &stack.services {
            let service_labels = service.labels.as_ref().unwrap();
            assert_eq!(service_labels[labels::STACK_NAMESPACE], "mlmodeltest");
            assert_eq!(service_labels[labels::STACK_IMAGE], TEST_IMAGE);
        }
    }
}
