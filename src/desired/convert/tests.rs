use super::*;
use crate::desired::stack::{NetworkSpec, ObjectKind, labels};
use bollard::models::*;
use std::collections::{BTreeMap, HashMap};

/// The files the tests' stacks read.
fn test_files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("token.txt".to_string(), b"s3cr3t".to_vec()),
        ("app.conf".to_string(), b"threads = 4\n".to_vec()),
    ])
}

fn stack(yaml: &str) -> StackSpec {
    match convert_yaml("s", yaml, &test_files()) {
        Ok(stack) => stack,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn errors(stack_name: &str, yaml: &str) -> Vec<String> {
    match convert_yaml(stack_name, yaml, &test_files()) {
        Ok(stack) => panic!("expected errors, converted {stack:#?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Converts a one-service file whose service body is `body` and returns that service.
fn web(body: &str) -> ServiceSpec {
    let mut stack = stack(&format!("services:\n  web:\n    image: nginx:1\n{body}"));
    assert_eq!(stack.services.len(), 1);
    stack.services.remove(0)
}

fn container(spec: &ServiceSpec) -> &TaskSpecContainerSpec {
    spec.task_template
        .as_ref()
        .unwrap()
        .container_spec
        .as_ref()
        .unwrap()
}

fn task(spec: &ServiceSpec) -> &TaskSpec {
    spec.task_template.as_ref().unwrap()
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(ToString::to_string).collect())
}

#[test]
fn a_minimal_service_converts_like_docker_stack_deploy() {
    let spec = web("");
    let expected = ServiceSpec {
        name: Some("s_web".into()),
        labels: Some(map(&[
            (labels::STACK_NAMESPACE, "s"),
            (labels::STACK_IMAGE, "nginx:1"),
        ])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some("nginx:1".into()),
                labels: Some(map(&[(labels::STACK_NAMESPACE, "s")])),
                privileges: Some(TaskSpecContainerSpecPrivileges::default()),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources::default()),
            placement: Some(TaskSpecPlacement::default()),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some("s_default".into()),
                aliases: strings(&["web"]),
                driver_opts: None,
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: None }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec::default()),
        ..Default::default()
    };
    assert_eq!(spec, expected);
}

#[test]
fn services_are_sorted_and_the_default_network_is_created() {
    let stack = stack("services:\n  zeta:\n    image: nginx\n  alpha:\n    image: nginx\n");
    let names: Vec<_> = stack
        .services
        .iter()
        .map(|s| s.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["s_alpha", "s_zeta"]);
    assert_eq!(
        stack.networks,
        [NetworkSpec {
            name: "s_default".into(),
            driver: "overlay".into(),
            attachable: false,
            labels: [(labels::STACK_NAMESPACE.to_string(), "s".to_string())].into(),
        }]
    );
}

#[test]
fn labels_go_where_docker_puts_them() {
    let spec = web(
        "    labels:\n      team: ml\n      com.docker.stack.namespace: spoofed\n    deploy:\n      labels: [tier=gold]\n",
    );
    assert_eq!(
        spec.labels,
        Some(map(&[
            ("tier", "gold"),
            (labels::STACK_NAMESPACE, "s"),
            (labels::STACK_IMAGE, "nginx:1")
        ]))
    );
    assert_eq!(
        container(&spec).labels,
        Some(map(&[("team", "ml"), (labels::STACK_NAMESPACE, "s")]))
    );
}

#[test]
fn command_entrypoint_user_and_working_dir_reach_the_container() {
    let spec = web(
        "    entrypoint: /server\n    command: [\"--port\", \"8080\"]\n    user: \"1000:1000\"\n    working_dir: /srv\n    stop_grace_period: 30s\n    stop_signal: SIGWINCH\n",
    );
    let c = container(&spec);
    assert_eq!(c.command, strings(&["/server"]));
    assert_eq!(c.args, strings(&["--port", "8080"]));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.dir.as_deref(), Some("/srv"));
    assert_eq!(c.stop_grace_period, Some(30_000_000_000));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGWINCH"));
}

#[test]
fn empty_commands_and_strings_are_left_out_as_docker_omits_them() {
    let spec = web(
        "    command: []\n    entrypoint: \"\"\n    user: \"\"\n    working_dir: \"\"\n    environment: {}\n",
    );
    let c = container(&spec);
    assert_eq!(
        (c.command.clone(), c.args.clone(), c.env.clone()),
        (None, None, None)
    );
    assert_eq!((c.user.clone(), c.dir.clone()), (None, None));
}

#[test]
fn environment_is_sorted_as_whole_strings() {
    let spec = web(
        "    environment:\n      A: \"1\"\n      A-B: \"2\"\n      UNSET:\n      EMPTY: \"\"\n",
    );
    // "A-B=2" sorts before "A=1" because '-' < '='.
    assert_eq!(
        container(&spec).env,
        strings(&["A-B=2", "A=1", "EMPTY=", "UNSET"])
    );
}

#[test]
fn healthchecks_convert_with_zero_durations_left_out() {
    let spec = web(
        "    healthcheck:\n      test: [\"CMD\", \"/server\", \"--probe\"]\n      interval: 5s\n      timeout: 0s\n      retries: 3\n      start_period: 10s\n",
    );
    assert_eq!(
        container(&spec).health_check,
        Some(HealthConfig {
            test: strings(&["CMD", "/server", "--probe"]),
            interval: Some(5_000_000_000),
            timeout: None,
            retries: Some(3),
            start_period: Some(10_000_000_000),
            start_interval: None,
        })
    );
    let disabled = web("    healthcheck:\n      disable: true\n      interval: 5s\n");
    assert_eq!(
        container(&disabled).health_check,
        Some(HealthConfig {
            test: strings(&["NONE"]),
            ..Default::default()
        })
    );
}

#[test]
fn ports_are_sorted_by_published_port_keeping_ties_in_order() {
    let spec = web(
        "    ports:\n      - \"9090:90\"\n      - \"81\"\n      - target: 80\n        published: 8080\n        mode: host\n      - \"53:53/udp\"\n      - target: 82\n",
    );
    let port = |target: i64, published: Option<i64>, protocol, mode| EndpointPortConfig {
        name: None,
        protocol,
        target_port: Some(target),
        published_port: published,
        publish_mode: mode,
    };
    use EndpointPortConfigProtocolEnum::{TCP, UDP};
    use EndpointPortConfigPublishModeEnum::{HOST, INGRESS};
    assert_eq!(
        spec.endpoint_spec,
        Some(EndpointSpec {
            mode: None,
            ports: Some(vec![
                port(81, None, Some(TCP), Some(INGRESS)),
                port(82, None, None, None),
                port(53, Some(53), Some(UDP), Some(INGRESS)),
                port(80, Some(8080), None, Some(HOST)),
                port(90, Some(9090), Some(TCP), Some(INGRESS)),
            ]),
        })
    );
}

#[test]
fn endpoint_mode_is_converted_and_dnsrr_refuses_ingress_ports() {
    let spec = web(
        "    deploy:\n      endpoint_mode: dnsrr\n    ports:\n      - target: 80\n        published: 80\n        mode: host\n",
    );
    assert_eq!(
        spec.endpoint_spec.unwrap().mode,
        Some(EndpointSpecModeEnum::DNSRR)
    );
    let vip = web("    deploy:\n      endpoint_mode: vip\n");
    assert_eq!(
        vip.endpoint_spec.unwrap().mode,
        Some(EndpointSpecModeEnum::VIP)
    );
    assert_eq!(
        errors(
            "s",
            "services:\n  web:\n    image: nginx\n    ports: [\"80:80\"]\n    deploy:\n      endpoint_mode: dnsrr\n"
        ),
        [
            "services.web.deploy.endpoint_mode: dnsrr cannot be used with ports published in ingress mode; publish every port with mode: host"
        ]
    );
}

#[test]
fn modes_convert_to_replicated_or_global() {
    let replicated = web("    deploy:\n      replicas: 3\n");
    assert_eq!(
        replicated.mode.unwrap().replicated,
        Some(ServiceSpecModeReplicated { replicas: Some(3) })
    );
    let zero = web("    deploy:\n      replicas: 0\n");
    assert_eq!(zero.mode.unwrap().replicated.unwrap().replicas, Some(0));
    let global = web("    deploy:\n      mode: global\n");
    assert_eq!(
        global.mode,
        Some(ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        })
    );
}

#[test]
fn resources_keep_present_blocks_even_when_empty() {
    let spec = web(
        "    deploy:\n      resources:\n        limits:\n          cpus: \"0.5\"\n          memory: 64M\n          pids: 100\n        reservations: {}\n",
    );
    assert_eq!(
        task(&spec).resources,
        Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(500_000_000),
                memory_bytes: Some(64 << 20),
                pids: Some(100),
            }),
            reservations: Some(ResourceObject::default()),
            ..Default::default()
        })
    );
}

#[test]
fn update_config_gets_docker_defaults_only_when_present() {
    assert_eq!(web("").update_config, None);
    let spec = web("    deploy:\n      update_config: {}\n");
    assert_eq!(
        spec.update_config,
        Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            max_failure_ratio: Some(0.0),
            ..Default::default()
        })
    );
    let spec = web(
        "    deploy:\n      update_config:\n        parallelism: 0\n        delay: 10s\n        monitor: 1m\n        failure_action: rollback\n        max_failure_ratio: 0.1\n        order: start-first\n",
    );
    assert_eq!(
        spec.update_config,
        Some(ServiceSpecUpdateConfig {
            parallelism: Some(0),
            delay: Some(10_000_000_000),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(60_000_000_000),
            // Docker carries the ratio as a 32-bit float and prints it as 0.1.
            max_failure_ratio: Some(0.1),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        })
    );
}

#[test]
fn rollback_config_converts_like_update_config() {
    let spec = web(
        "    deploy:\n      rollback_config:\n        delay: 1s\n        failure_action: continue\n        order: stop-first\n",
    );
    assert_eq!(
        spec.rollback_config,
        Some(ServiceSpecRollbackConfig {
            parallelism: Some(1),
            delay: Some(1_000_000_000),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::CONTINUE),
            monitor: None,
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST),
        })
    );
}

#[test]
fn restart_policy_converts_as_written() {
    assert_eq!(task(&web("")).restart_policy, None);
    let spec = web(
        "    deploy:\n      restart_policy:\n        condition: on-failure\n        delay: 0s\n        max_attempts: 3\n        window: 2m\n",
    );
    assert_eq!(
        task(&spec).restart_policy,
        Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
            // A zero delay is sent: Docker keeps it as a pointer.
            delay: Some(0),
            max_attempts: Some(3),
            window: Some(120_000_000_000),
        })
    );
}

#[test]
fn placement_converts_constraints_spread_and_max_replicas() {
    let spec = web(
        "    deploy:\n      placement:\n        constraints: [node.role==manager]\n        preferences:\n          - spread: node.labels.zone\n        max_replicas_per_node: 2\n",
    );
    assert_eq!(
        task(&spec).placement,
        Some(TaskSpecPlacement {
            constraints: strings(&["node.role==manager"]),
            preferences: Some(vec![TaskSpecPlacementPreferences {
                spread: Some(TaskSpecPlacementSpread {
                    spread_descriptor: Some("node.labels.zone".into()),
                }),
            }]),
            max_replicas: Some(2),
            platforms: None,
        })
    );
}

#[test]
fn networks_resolve_to_docker_names_with_aliases_sorted_by_target() {
    let stack = stack(
        "services:\n  api:\n    image: nginx\n    networks:\n      zz_local:\n        aliases: [v1]\n      mlmodel:\n      legacy:\n      named:\nnetworks:\n  zz_local:\n    attachable: true\n    labels:\n      team: ml\n  mlmodel:\n    external: true\n  legacy:\n    external:\n      name: host\n  named:\n    name: custom-net\n    driver: overlay\n",
    );
    let attach = |target: &str, aliases: &[&str]| NetworkAttachmentConfig {
        target: Some(target.into()),
        aliases: strings(aliases).filter(|a| !a.is_empty()),
        driver_opts: None,
    };
    assert_eq!(
        task(&stack.services[0]).networks,
        Some(vec![
            attach("custom-net", &["api"]),
            // Docker adds no alias on its built-in networks.
            attach("host", &[]),
            attach("mlmodel", &["api"]),
            attach("s_zz_local", &["v1", "api"]),
        ])
    );
    let ns = || (labels::STACK_NAMESPACE.to_string(), "s".to_string());
    assert_eq!(
        stack.networks,
        [
            NetworkSpec {
                name: "custom-net".into(),
                driver: "overlay".into(),
                attachable: false,
                labels: [ns()].into(),
            },
            NetworkSpec {
                name: "s_zz_local".into(),
                driver: "overlay".into(),
                attachable: true,
                labels: BTreeMap::from([("team".to_string(), "ml".to_string()), ns()]),
            },
        ]
    );
}

#[test]
fn a_declared_default_network_is_honoured() {
    let stack = stack(
        "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    external: true\n    name: mlmodel\n",
    );
    assert!(stack.networks.is_empty());
    assert_eq!(
        task(&stack.services[0]).networks.as_ref().unwrap()[0]
            .target
            .as_deref(),
        Some("mlmodel")
    );
}

#[test]
fn unused_networks_are_not_created() {
    let stack =
        stack("services:\n  web:\n    image: nginx\n    networks: [a]\nnetworks:\n  a:\n  b:\n");
    let names: Vec<_> = stack.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["s_a"]);
}

#[test]
fn undefined_networks_are_reported() {
    assert_eq!(
        errors(
            "s",
            "services:\n  web:\n    image: nginx\n    networks: [missing]\n"
        ),
        [
            "services.web.networks.missing: undefined network: declare it under the top-level networks"
        ]
    );
}

#[test]
fn service_and_stack_names_are_checked() {
    let found = errors("bad name", "services:\n  web.v1:\n    image: nginx\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("stack: \"bad name\" is not a valid name"));
    assert!(found[1].starts_with("services.web.v1: \"web.v1\" is not a valid name"));
    let long_key = "k".repeat(60);
    let found = errors(
        "stack",
        &format!("services:\n  {long_key}:\n    image: nginx\n"),
    );
    assert!(
        found[0].starts_with(&format!("services.{long_key}: ")),
        "{found:?}"
    );
    assert!(found[0].contains("Docker allows 63"), "{found:?}");
}

#[test]
fn parse_errors_come_back_from_convert_yaml() {
    assert_eq!(
        errors(
            "s",
            "services:\n  web:\n    image: nginx\n    pull_policy: always\n"
        ),
        ["services.web.pull_policy: not supported"]
    );
}

#[test]
fn mounts_convert_like_docker_stack_deploy() {
    let stack = stack(
        "services:\n  web:\n    image: nginx:1\n    volumes:\n      - data:/data:ro,nocopy\n      - /cache\n      - /srv:/srv:rslave\n      - outside:/outside\n      - type: tmpfs\n        target: /run\n        tmpfs: {size: 1024}\n      - type: bind\n        source: /tmp\n        target: /plain\nvolumes:\n  data:\n    driver: local\n    driver_opts: {type: tmpfs}\n    labels: {team: ml}\n  outside:\n    external: true\n",
    );
    let mounts = container(&stack.services[0]).mounts.clone().unwrap();
    assert_eq!(
        mounts[0],
        Mount {
            typ: Some(MountType::VOLUME),
            source: Some("s_data".into()),
            target: Some("/data".into()),
            read_only: Some(true),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                labels: Some(map(&[("team", "ml"), (labels::STACK_NAMESPACE, "s")])),
                driver_config: Some(MountVolumeOptionsDriverConfig {
                    name: Some("local".into()),
                    options: Some(map(&[("type", "tmpfs")])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    );
    assert_eq!(
        mounts[1],
        Mount {
            typ: Some(MountType::VOLUME),
            target: Some("/cache".into()),
            ..Default::default()
        },
        "an anonymous volume has no options"
    );
    assert_eq!(
        mounts[2].bind_options,
        Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RSLAVE),
            ..Default::default()
        })
    );
    assert_eq!(mounts[3].source.as_deref(), Some("outside"));
    assert_eq!(
        mounts[3].volume_options,
        Some(MountVolumeOptions::default()),
        "an external volume is neither named after the stack nor labelled"
    );
    assert_eq!(
        mounts[4].tmpfs_options,
        Some(MountTmpfsOptions {
            size_bytes: Some(1024),
            ..Default::default()
        })
    );
    assert_eq!(mounts[5].bind_options, None);
}

#[test]
fn an_undefined_volume_is_an_error_naming_it() {
    let found = errors(
        "s",
        "services:\n  web:\n    image: nginx:1\n    volumes:\n      - data:/data\n",
    );
    assert_eq!(
        found,
        [
            "services.web.volumes[0]: undefined volume \"data\": declare it under the top-level volumes"
        ]
    );
}

#[test]
fn container_keys_convert_like_docker_stack_deploy() {
    let spec = web(
        "    hostname: h\n    extra_hosts: [\"db:10.0.0.2\"]\n    dns: 10.0.0.53\n    sysctls: [net.core.somaxconn=1024]\n    cap_add: [net_admin]\n    cap_drop: [mknod]\n    ulimits: {nofile: {soft: 10, hard: 20}}\n    init: true\n    read_only: true\n    tty: true\n    stdin_open: false\n    logging: {driver: json-file, options: {max-size: 10m}}\n    restart: always\n",
    );
    let c = container(&spec);
    assert_eq!(c.hostname.as_deref(), Some("h"));
    assert_eq!(c.hosts, strings(&["10.0.0.2 db"]));
    assert_eq!(
        c.dns_config,
        Some(TaskSpecContainerSpecDnsConfig {
            nameservers: strings(&["10.0.0.53"]),
            search: None,
            options: None,
        })
    );
    assert_eq!(c.sysctls, Some(map(&[("net.core.somaxconn", "1024")])));
    assert_eq!(c.capability_add, strings(&["CAP_NET_ADMIN"]));
    assert_eq!(c.capability_drop, strings(&["CAP_MKNOD"]));
    assert_eq!(
        c.ulimits,
        Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(10),
            hard: Some(20),
        }])
    );
    assert_eq!(
        (c.init, c.read_only, c.tty, c.open_stdin),
        (Some(true), Some(true), Some(true), None)
    );
    assert_eq!(
        task(&spec).log_driver,
        Some(TaskSpecLogDriver {
            name: Some("json-file".into()),
            options: Some(map(&[("max-size", "10m")])),
        })
    );
    assert_eq!(
        task(&spec).restart_policy,
        Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            ..Default::default()
        }),
        "restart is the fallback restart policy, as in docker stack deploy"
    );
}

#[test]
fn generic_resources_and_jobs_convert() {
    let spec = web(
        "    deploy:\n      mode: replicated-job\n      replicas: 3\n      resources:\n        reservations:\n          generic_resources:\n            - discrete_resource_spec: {kind: NVIDIA-GPU, value: 1}\n",
    );
    assert_eq!(
        spec.mode,
        Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(3),
                total_completions: Some(3),
            }),
            ..Default::default()
        })
    );
    let reservations = task(&spec)
        .resources
        .as_ref()
        .unwrap()
        .reservations
        .clone()
        .unwrap();
    assert_eq!(
        reservations.generic_resources,
        Some(vec![GenericResourcesInner {
            named_resource_spec: None,
            discrete_resource_spec: Some(GenericResourcesInnerDiscreteResourceSpec {
                kind: Some("NVIDIA-GPU".into()),
                value: Some(1),
            }),
        }])
    );
    let global = web("    deploy:\n      mode: global-job\n");
    assert_eq!(global.mode.unwrap().global_job, Some(HashMap::new()));
}

const WITH_OBJECTS: &str = "version: \"3.8\"\nservices:\n  web:\n    image: nginx:1\n    secrets:\n      - token\n      - source: token\n        target: again\n        uid: \"7\"\n        mode: 0400\n    configs:\n      - source: app\n        target: /etc/app.conf\n  other:\n    image: nginx:1\n    secrets: [shared]\nsecrets:\n  token:\n    file: token.txt\n    labels: [team=ml]\n  shared:\n    external: true\n  unused:\n    file: missing.txt\nconfigs:\n  app:\n    file: app.conf\n    template_driver: golang\n";

#[test]
fn secrets_and_configs_are_named_after_their_content_and_referenced_as_docker_does() {
    let stack = stack(WITH_OBJECTS);
    let names: Vec<(ObjectKind, &str, &str, bool)> = stack
        .objects
        .iter()
        .map(|o| (o.kind, o.docker_name.as_str(), o.key.as_str(), o.external))
        .collect();
    assert_eq!(
        names,
        [
            (ObjectKind::Secret, "s_token", "token", false),
            (ObjectKind::Secret, "shared", "shared", true),
            (ObjectKind::Config, "s_app", "app", false),
        ]
    );
    let token = &stack.objects[0];
    assert_eq!(token.data, b"s3cr3t");
    assert_eq!(token.labels["team"], "ml");
    assert_eq!(token.labels[labels::STACK_NAMESPACE], "s");
    let (base, hash) = token.name.rsplit_once('-').unwrap();
    assert_eq!(base, "s_token");
    assert_eq!(hash.len(), crate::desired::stack::OBJECT_HASH_LEN);
    assert_eq!(
        stack.objects[1].name, "shared",
        "an external object keeps its name"
    );
    assert_eq!(stack.objects[2].templating.as_deref(), Some("golang"));
    // An unused declaration is not read (its file is missing) and is reported.
    assert!(
        stack
            .warnings
            .iter()
            .any(|w| w.path == "secrets.unused" && w.message.contains("no service uses")),
        "{:?}",
        stack.warnings
    );
    let web = stack
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some("s_web"))
        .unwrap();
    let container = task(web).container_spec.as_ref().unwrap();
    let secrets = container.secrets.as_ref().unwrap();
    let files: Vec<(&str, &str, &str, u32)> = secrets
        .iter()
        .map(|s| {
            let f = s.file.as_ref().unwrap();
            (
                f.name.as_deref().unwrap(),
                f.uid.as_deref().unwrap(),
                f.gid.as_deref().unwrap(),
                f.mode.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [("again", "7", "0", 0o400), ("token", "0", "0", 0o444)]
    );
    assert!(
        secrets
            .iter()
            .all(|s| s.secret_name.as_deref() == Some(token.name.as_str()))
    );
    assert!(
        secrets.iter().all(|s| s.secret_id.is_none()),
        "ids are filled in at write time"
    );
    let config = &container.configs.as_ref().unwrap()[0];
    assert_eq!(
        config.config_name.as_deref(),
        Some(stack.objects[2].name.as_str())
    );
    assert_eq!(
        config.file.as_ref().unwrap().name.as_deref(),
        Some("/etc/app.conf")
    );
}

#[test]
fn new_content_or_labels_give_a_new_name_and_the_same_content_the_same_one() {
    let first = stack(WITH_OBJECTS);
    let again = stack(WITH_OBJECTS);
    assert_eq!(first.objects, again.objects);
    let changed_files = BTreeMap::from([
        ("token.txt".to_string(), b"rotated".to_vec()),
        ("app.conf".to_string(), b"threads = 4\n".to_vec()),
    ]);
    let rotated = convert_yaml("s", WITH_OBJECTS, &changed_files).unwrap();
    assert_ne!(rotated.objects[0].name, first.objects[0].name);
    assert_eq!(
        rotated.objects[2].name, first.objects[2].name,
        "the config did not change"
    );
    let relabelled = stack(&WITH_OBJECTS.replace("team=ml", "team=ops"));
    assert_ne!(relabelled.objects[0].name, first.objects[0].name);
}

#[test]
fn object_problems_name_their_path() {
    let found = errors(
        "s",
        "services:\n  web:\n    image: nginx:1\n    secrets:\n      - nope\n      - token\n      - source: token\n        target: token\n    configs: [broken]\nsecrets:\n  token:\n    file: token.txt\nconfigs:\n  broken:\n    file: ../outside.conf\n",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(
        found[0],
        "configs.broken.file: cannot read \"../outside.conf\": no such file"
    );
    assert_eq!(
        found[1],
        "services.web.secrets[0]: undefined secret \"nope\": declare it under the top-level secrets"
    );
    assert!(
        found[2].starts_with("services.web.secrets[2]: duplicate secret target for s_token-")
            && found[2].ends_with("not allowed: two references mount \"token\""),
        "{}",
        found[2]
    );
    let long = format!(
        "services:\n  web:\n    image: nginx:1\n    secrets: [k]\nsecrets:\n  k:\n    name: {}\n    file: token.txt\n",
        "n".repeat(60)
    );
    let found = errors("s", &long);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("secrets.k: secret name"), "{found:?}");
    assert!(found[0].contains("keep \"nnnn"), "{found:?}");
}

#[test]
fn files_in_a_directory_stay_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/token"), "abc").unwrap();
    let files = FilesIn(dir.path().to_path_buf());
    let (data, stamp) = files.read("secrets/token").unwrap();
    assert_eq!(data, b"abc");
    assert_eq!(stamp.unwrap().len, 3);
    assert!(files.read("./secrets/token").is_ok());
    for outside in ["/etc/hostname", "../x", "secrets/../../x", ""] {
        let error = files.read(outside).unwrap_err();
        assert!(
            error.contains("inside the templates directory"),
            "{outside}: {error}"
        );
    }
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
    assert!(files.read("link").unwrap_err().contains("symbolic link"));
    assert!(NoFiles.read("x").unwrap_err().contains("--templates"));
}

#[test]
fn env_files_are_merged_under_the_environment_and_their_problems_named() {
    let files = BTreeMap::from([
        ("base.env".to_string(), b"A=1\nB=2\nBARE\n".to_vec()),
        ("more.env".to_string(), b"B=3\nC=4\n".to_vec()),
        ("bad.env".to_string(), b"no name\n".to_vec()),
    ]);
    let yaml = "services:\n  web:\n    image: nginx:1\n    env_file: [base.env, more.env]\n    environment:\n      C: 5\n      D: null\n";
    let stack = convert_yaml("s", yaml, &files).unwrap();
    let env = task(&stack.services[0])
        .container_spec
        .as_ref()
        .unwrap()
        .env
        .clone()
        .unwrap();
    assert_eq!(env, ["A=1", "B=3", "C=5", "D"]);
    let broken = "services:\n  web:\n    image: nginx:1\n    env_file:\n      - bad.env\n      - missing.env\n";
    let found: Vec<String> = convert_yaml("s", broken, &files)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("services.web.env_file[0]: invalid env file \"bad.env\": variable \"no name\" contains whitespaces"), "{found:?}");
    assert!(
        found[1].starts_with("services.web.env_file[1]: cannot read \"missing.env\""),
        "{found:?}"
    );
}

#[test]
fn a_credential_spec_from_a_config_references_it_at_runtime() {
    let files = BTreeMap::from([("gmsa.json".to_string(), b"{}".to_vec())]);
    let yaml = "version: \"3.8\"\nservices:\n  web:\n    image: nginx:1\n    credential_spec:\n      config: gmsa\nconfigs:\n  gmsa:\n    file: gmsa.json\n";
    let stack = convert_yaml("s", yaml, &files).unwrap();
    let name = stack.objects[0].name.clone();
    assert!(name.starts_with("s_gmsa-"), "{name}");
    let container = task(&stack.services[0]).container_spec.clone().unwrap();
    let configs = container.configs.unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].runtime, Some(HashMap::new()));
    assert_eq!(configs[0].file, None);
    assert_eq!(configs[0].config_name.as_deref(), Some(name.as_str()));
    let credential = container.privileges.unwrap().credential_spec.unwrap();
    assert_eq!(credential.config.as_deref(), Some(name.as_str()));
    // At write time the name becomes the config's id, in the spec and the reference.
    let sent = crate::desired::stack::with_object_ids(&stack.services[0], |_, _| {
        Some("cfgid".to_string())
    })
    .unwrap();
    let sent = task(&sent).container_spec.clone().unwrap();
    assert_eq!(sent.configs.unwrap()[0].config_id.as_deref(), Some("cfgid"));
    assert_eq!(
        sent.privileges
            .unwrap()
            .credential_spec
            .unwrap()
            .config
            .as_deref(),
        Some("cfgid")
    );
    let undeclared = "version: \"3.8\"\nservices:\n  web:\n    image: nginx:1\n    credential_spec:\n      config: nope\n";
    assert_eq!(
        errors("s", undeclared),
        [
            "services.web.credential_spec.config: undefined config \"nope\": declare it under the top-level configs"
        ]
    );
    let both = "version: \"3.8\"\nservices:\n  web:\n    image: nginx:1\n    credential_spec:\n      config: gmsa\n      file: x.json\nconfigs:\n  gmsa:\n    file: gmsa.json\n";
    let found: Vec<String> = convert_yaml("s", both, &files)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "services.web.credential_spec: invalid credential spec: cannot specify both \"Config\" and \"File\""
        ]
    );
}
