use super::*;

fn parse(yaml: &str) -> ComposeFile {
    match parse_compose(yaml) {
        Ok(file) => file,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match parse_compose(yaml) {
        Ok(file) => panic!("expected errors, parsed {file:#?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn web(yaml_body: &str) -> Service {
    let yaml = format!("services:\n  web:\n    image: nginx\n{yaml_body}");
    parse(&yaml).services.remove("web").unwrap()
}

fn web_errors(yaml_body: &str) -> Vec<String> {
    errors(&format!("services:\n  web:\n    image: nginx\n{yaml_body}"))
}

#[test]
fn a_minimal_file_parses() {
    let file = parse("version: \"3.9\"\nservices:\n  web:\n    image: nginx:1.25\n");
    assert_eq!(file.version.as_deref(), Some("3.9"));
    assert_eq!(file.services["web"].image, "nginx:1.25");
    assert!(file.networks.is_empty());
}

#[test]
fn unsupported_keys_are_reported_with_their_path() {
    let found = errors(
        "version: \"3.9\"\ninclude: []\nservices:\n  mlmodel:\n    image: nginx\n    pull_policy: always\n    deploy:\n      resources:\n        reservations:\n          devices: []\n      bogus: 1\n    ports:\n      - target: 80\n        name: web\n    networks:\n      backend:\n        priority: 2\nnetworks:\n  backend:\n    internal: true\n",
    );
    assert_eq!(
        found,
        [
            "include: not supported",
            "services.mlmodel.pull_policy: not supported",
            "services.mlmodel.deploy.resources.reservations.devices: not supported",
            "services.mlmodel.deploy.bogus: not supported",
            "services.mlmodel.ports[0].name: not supported",
            "services.mlmodel.networks.backend.priority: not supported",
            "networks.backend.internal: not supported",
        ]
    );
}

#[test]
fn keys_docker_ignores_are_accepted_with_its_warning() {
    let file = parse(
        "services:\n  web:\n    image: nginx\n    build: .\n    container_name: web\n    depends_on: [db]\n    restart: on-failure:3\n    ports:\n      - \"127.0.0.1:8080:80\"\n    networks:\n      default:\n        ipv4_address: 10.0.0.2\n",
    );
    let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
    assert!(warnings[0].starts_with("services.web.build: Ignoring unsupported option"));
    assert_eq!(
        warnings[1],
        "services.web.container_name: Ignoring deprecated option: Setting the container name is not supported."
    );
    assert!(warnings[2].starts_with("services.web.depends_on: ignored"));
    assert!(warnings[3].starts_with("services.web.restart: Ignoring unsupported option, except"));
    assert_eq!(
        warnings[4],
        "services.web.ports[0]: ignoring IP-address (127.0.0.1:8080:80/tcp) service will listen on '0.0.0.0'"
    );
    assert!(warnings[5].starts_with("services.web.networks.default.ipv4_address: ignored"));
    let web = &file.services["web"];
    assert_eq!(web.restart, Some(Restart::OnFailure(3)));
    assert_eq!(web.ports[0].published, 8080);
}

#[test]
fn keys_docker_forbids_are_refused_with_its_hint() {
    let found = web_errors("    mem_limit: 1g\n    extends: base\n");
    assert_eq!(
        found,
        [
            "services.web.mem_limit: Set resource limits using deploy.resources",
            "services.web.extends: Support for `extends` is not implemented yet.",
        ]
    );
}

#[test]
fn container_keys_and_volumes_are_read() {
    let file = parse(
        "services:\n  web:\n    image: nginx\n    hostname: h\n    extra_hosts: {b: 10.0.0.2, a: 10.0.0.1}\n    dns: 10.0.0.53\n    dns_search: [x.internal]\n    sysctls: {net.core.somaxconn: 1024}\n    cap_add: [net_admin]\n    ulimits:\n      nproc: 100\n      nofile: {soft: 10, hard: 20}\n    init: true\n    read_only: true\n    logging:\n      driver: json-file\n      options: {max-file: 3}\n    volumes:\n      - data:/data:ro\n      - type: tmpfs\n        target: /run\n        tmpfs: {size: 1024}\nvolumes:\n  data:\n    driver: local\n    labels: [team=ml]\n",
    );
    let web = &file.services["web"];
    assert_eq!(web.hostname.as_deref(), Some("h"));
    assert_eq!(web.extra_hosts, ["a:10.0.0.1", "b:10.0.0.2"]);
    assert_eq!(web.dns.as_deref(), Some(&["10.0.0.53".to_string()][..]));
    assert_eq!(web.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(web.ulimits["nofile"], Ulimit { soft: 10, hard: 20 });
    assert_eq!(
        web.ulimits["nproc"],
        Ulimit {
            soft: 100,
            hard: 100
        }
    );
    assert_eq!(web.init, Some(true));
    assert!(web.read_only && !web.tty);
    assert_eq!(web.logging.as_ref().unwrap().options["max-file"], "3");
    assert_eq!(web.volumes.len(), 2);
    assert_eq!(web.volumes[0].kind, MountKind::Volume);
    assert!(web.volumes[0].read_only);
    assert_eq!(web.volumes[1].tmpfs, Some(Some(1024)));
    assert_eq!(file.volumes["data"].labels["team"], "ml");
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
}

#[test]
fn volume_mistakes_are_refused_with_dockers_words() {
    let found = errors(
        "services:\n  web:\n    image: nginx\n    volumes:\n      - ./data:/data\n      - data:/x:rshared\n      - type: tmpfs\n        source: x\n        target: /t\n      - type: disk\n        target: /d\n      - \"ab::b\"\nvolumes:\n  data:\n    external: true\n    driver: local\n",
    );
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(found[0].contains("is not an absolute path"), "{}", found[0]);
    assert_eq!(
        found[1],
        "services.web.volumes[1]: bind options are incompatible with type volume"
    );
    assert_eq!(
        found[2],
        "services.web.volumes[2]: invalid tmpfs source, source must be empty"
    );
    assert_eq!(
        found[3],
        "services.web.volumes[3].type: volume type must be volume, bind, tmpfs or npipe"
    );
    assert_eq!(
        found[4],
        "services.web.volumes[4]: invalid spec: ab::b: empty section between colons"
    );
    assert_eq!(
        found[5],
        "volumes.data.external: conflicting parameters \"external\" and \"driver\" specified for volume \"data\""
    );
}

#[test]
fn every_error_is_collected_not_just_the_first() {
    let found = web_errors(
        "    deploy:\n      replicas: two\n      resources:\n        limits:\n          cpus: \"lots\"\n          memory: 12X\n    stop_grace_period: 10\n",
    );
    assert_eq!(found.len(), 4, "{found:#?}");
    assert_eq!(
        found[0],
        "services.web.deploy.replicas: expected a non-negative integer, found \"two\""
    );
    assert!(
        found[1]
            .starts_with("services.web.deploy.resources.limits.cpus: \"lots\" is not a CPU count")
    );
    assert!(
        found[2].starts_with(
            "services.web.deploy.resources.limits.memory: \"12X\" is not a memory size"
        )
    );
    assert!(found[3].starts_with("services.web.stop_grace_period: expected a duration string"));
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let found = errors("services:\n  web:\n    image: [unclosed\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("line "), "{found:?}");
}

#[test]
fn the_document_must_be_a_mapping_with_services() {
    assert_eq!(
        errors("- a\n- b\n"),
        ["compose file: expected a mapping, found a list"]
    );
    assert_eq!(
        errors("version: \"3\"\n"),
        ["services: required: the stack's services"]
    );
    assert_eq!(
        errors("services: []\n"),
        ["services: expected a mapping, found a list"]
    );
}

#[test]
fn versions_from_three_to_three_thirteen_are_accepted() {
    for version in ["3", "3.0", "3.2", "3.9", "3.10", "3.13"] {
        parse(&format!("version: \"{version}\"\nservices: {{}}\n"));
    }
    for version in ["2", "2.4", "3.14", "3.09", "4", "latest"] {
        let found = errors(&format!("version: \"{version}\"\nservices: {{}}\n"));
        assert!(
            found[0].starts_with("version: expected a 3.x version"),
            "{found:?}"
        );
    }
    assert_eq!(
        errors("version: 3.9\nservices: {}\n"),
        ["version: expected a string, found 3.9; quote it as \"3.9\""]
    );
}

#[test]
fn keys_newer_than_the_declared_version_are_refused() {
    let found = errors(
        "version: \"3.1\"\nservices:\n  web:\n    image: nginx\n    deploy:\n      endpoint_mode: dnsrr\n      rollback_config: {}\n      update_config:\n        order: start-first\n      resources:\n        limits:\n          pids: 5\n      placement:\n        max_replicas_per_node: 1\n        preferences: []\n    healthcheck:\n      start_period: 5s\n    ports:\n      - target: 80\nnetworks:\n  n:\n    name: x\n    attachable: true\n",
    );
    let expect = |path: &str, minor: u8| {
        format!(
            "{path}: requires compose file version 3.{minor} or later; this file declares version 3.1"
        )
    };
    assert_eq!(
        found,
        [
            expect("services.web.deploy.endpoint_mode", 2),
            expect("services.web.deploy.rollback_config", 7),
            expect("services.web.deploy.update_config.order", 4),
            expect("services.web.deploy.resources.limits.pids", 9),
            expect("services.web.deploy.placement.max_replicas_per_node", 8),
            expect("services.web.deploy.placement.preferences", 3),
            expect("services.web.healthcheck.start_period", 4),
            expect("services.web.ports[0]", 2),
            expect("networks.n.name", 5),
            expect("networks.n.attachable", 2),
        ]
    );
}

#[test]
fn extension_keys_are_ignored_where_docker_allows_them() {
    let file = parse(
        "version: \"3.9\"\nx-defaults: &defaults\n  image: nginx\nservices:\n  web:\n    <<: *defaults\n    x-note: hi\nnetworks:\n  n:\n    x-owner: me\n",
    );
    assert_eq!(file.services["web"].image, "nginx");
    assert_eq!(
        errors("version: \"3.3\"\nx-a: 1\nservices: {}\n"),
        ["x-a: requires compose file version 3.4 or later; this file declares version 3.3"]
    );
}

#[test]
fn double_dollars_are_literal_and_variables_are_refused() {
    let service = web(
        "    command: echo $$HOME\n    environment:\n      - PRICE=5$$\n    labels:\n      a$$b: c$$d\n",
    );
    assert_eq!(
        service.command,
        Some(vec!["echo".to_string(), "$HOME".to_string()])
    );
    assert_eq!(service.environment["PRICE"].as_deref(), Some("5$"));
    // Keys are not interpolated, as in Docker.
    assert_eq!(service.labels["a$$b"], "c$d");
    assert_eq!(
        web_errors("    user: $USER\n    working_dir: ${HOME}/x\n"),
        [
            "services.web.user: variable substitution is not supported; write $$ for a literal $",
            "services.web.working_dir: variable substitution is not supported; write $$ for a literal $",
        ]
    );
}

#[test]
fn image_is_required_and_must_be_a_reference() {
    assert_eq!(
        errors("services:\n  web:\n    user: root\n"),
        ["services.web.image: required: the image the service runs"]
    );
    let found = errors("services:\n  web:\n    image: Not/Valid\n");
    assert!(found[0].starts_with("services.web.image: \"Not/Valid\" is not an image reference"));
}

#[test]
fn command_and_entrypoint_take_strings_or_lists() {
    let service =
        web("    command: sh -c 'echo hi; sleep 1'\n    entrypoint: [\"/server\", \"--probe\"]\n");
    assert_eq!(
        service.command,
        Some(vec!["sh".into(), "-c".into(), "echo hi; sleep 1".into()])
    );
    assert_eq!(
        service.entrypoint,
        Some(vec!["/server".into(), "--probe".into()])
    );
    assert_eq!(
        web_errors("    command: \"echo 'oops\"\n    entrypoint: [1]\n"),
        [
            "services.web.command: cannot split \"echo 'oops\" into words: unterminated quote",
            "services.web.entrypoint[0]: expected a string, found 1",
        ]
    );
}

#[test]
fn environment_reads_lists_and_maps() {
    let listed = web("    environment:\n      - A=1\n      - B=\n      - C\n      - D=x=y\n");
    assert_eq!(listed.environment["A"].as_deref(), Some("1"));
    assert_eq!(listed.environment["B"].as_deref(), Some(""));
    assert_eq!(listed.environment["C"], None);
    assert_eq!(listed.environment["D"].as_deref(), Some("x=y"));
    let mapped = web(
        "    environment:\n      A: one\n      B: 8080\n      C: 1.5\n      D:\n      E: \"\"\n",
    );
    assert_eq!(mapped.environment["A"].as_deref(), Some("one"));
    assert_eq!(mapped.environment["B"].as_deref(), Some("8080"));
    assert_eq!(mapped.environment["C"].as_deref(), Some("1.5"));
    assert_eq!(mapped.environment["D"], None);
    assert_eq!(mapped.environment["E"].as_deref(), Some(""));
}

#[test]
fn environment_refuses_booleans_and_empty_names() {
    assert_eq!(
        web_errors("    environment:\n      DEBUG: true\n"),
        [
            "services.web.environment.DEBUG: expected a string or a number, found true; quote it as \"true\""
        ]
    );
    assert_eq!(
        web_errors("    environment:\n      - =x\n"),
        ["services.web.environment[0]: expected KEY=value, found \"=x\""]
    );
    assert_eq!(
        web_errors("    environment: FOO=1\n"),
        [
            "services.web.environment: expected a list of KEY=value strings or a mapping, found \"FOO=1\""
        ]
    );
}

#[test]
fn labels_without_values_are_empty() {
    let service = web("    labels:\n      - a=1\n      - b\n");
    assert_eq!(service.labels["a"], "1");
    assert_eq!(service.labels["b"], "");
    let service = web("    labels:\n      a:\n      b: 2\n");
    assert_eq!(service.labels["a"], "");
    assert_eq!(service.labels["b"], "2");
}

#[test]
fn healthchecks_read_every_field() {
    let service = web(
        "    healthcheck:\n      test: [\"CMD\", \"/server\", \"--probe\"]\n      interval: 5s\n      timeout: 2s\n      retries: 3\n      start_period: 1m\n",
    );
    assert_eq!(
        service.healthcheck,
        Some(Healthcheck {
            test: Some(vec!["CMD".into(), "/server".into(), "--probe".into()]),
            interval: Some(5_000_000_000),
            timeout: Some(2_000_000_000),
            retries: Some(3),
            start_period: Some(60_000_000_000),
            disable: false,
        })
    );
    let shell = web("    healthcheck:\n      test: /server --probe\n");
    assert_eq!(
        shell.healthcheck.unwrap().test,
        Some(vec!["CMD-SHELL".into(), "/server --probe".into()])
    );
    assert!(
        web("    healthcheck:\n      disable: true\n")
            .healthcheck
            .unwrap()
            .disable
    );
}

#[test]
fn healthcheck_mistakes_are_refused() {
    assert_eq!(
        web_errors("    healthcheck:\n      test: [\"/server\"]\n      disable: true\n"),
        ["services.web.healthcheck.test: expected a list starting with CMD, CMD-SHELL or NONE",]
    );
    assert_eq!(
        web_errors(
            "    healthcheck:\n      test: [\"CMD\", \"true\"]\n      disable: true\n      retries: 2.5\n"
        ),
        [
            "services.web.healthcheck.retries: expected a non-negative integer, found 2.5",
            "services.web.healthcheck.disable: test and disable can't be set at the same time",
        ]
    );
}

#[test]
fn durations_must_be_go_duration_strings() {
    assert_eq!(
        web("    stop_grace_period: 1m30s\n").stop_grace_period,
        Some(90_000_000_000)
    );
    let found = web_errors("    stop_grace_period: 10 seconds\n");
    assert!(
        found[0].starts_with("services.web.stop_grace_period: \"10 seconds\" is not a duration")
    );
    let found = web_errors("    stop_grace_period: -1s\n");
    assert!(found[0].contains("is negative"), "{found:?}");
}

#[test]
fn ports_read_short_and_long_syntax() {
    let service = web(
        "    ports:\n      - 80\n      - \"8080:81/udp\"\n      - target: 82\n        published: 8082\n        protocol: tcp\n        mode: host\n      - target: 83\n",
    );
    assert_eq!(
        service.ports,
        [
            Port {
                target: 80,
                published: 0,
                protocol: Some(Protocol::Tcp),
                mode: Some(PublishMode::Ingress)
            },
            Port {
                target: 81,
                published: 8080,
                protocol: Some(Protocol::Udp),
                mode: Some(PublishMode::Ingress)
            },
            Port {
                target: 82,
                published: 8082,
                protocol: Some(Protocol::Tcp),
                mode: Some(PublishMode::Host)
            },
            Port {
                target: 83,
                published: 0,
                protocol: None,
                mode: None
            },
        ]
    );
}

#[test]
fn port_mistakes_are_refused() {
    let found = web_errors(
        "    ports:\n      - \"80:80:80\"\n      - target: 70000\n      - published: 80\n      - target: 80\n        protocol: TCP\n        mode: bridge\n      - 1.5\n      - true\n",
    );
    assert_eq!(found.len(), 7, "{found:#?}");
    assert!(
        found[0].starts_with("services.web.ports[0]: Invalid ip address: 80"),
        "{}",
        found[0]
    );
    assert_eq!(
        found[1],
        "services.web.ports[1].target: expected at most 65535, found 70000"
    );
    assert_eq!(
        found[2],
        "services.web.ports[2].target: required: the port inside the container"
    );
    assert_eq!(
        found[3],
        "services.web.ports[3].protocol: expected tcp, udp or sctp, found \"TCP\""
    );
    assert_eq!(
        found[4],
        "services.web.ports[3].mode: expected ingress or host, found \"bridge\""
    );
    assert_eq!(
        found[5],
        "services.web.ports[4]: expected a port number, found 1.5"
    );
    assert!(found[6].starts_with("services.web.ports[5]: expected a port such as"));
}

#[test]
fn service_networks_take_lists_or_maps_with_aliases() {
    let yaml = "services:\n  a:\n    image: nginx\n    networks: [front, back]\n  b:\n    image: nginx\n    networks:\n      front:\n      back:\n        aliases: [api, v1]\nnetworks:\n  front:\n  back:\n";
    let file = parse(yaml);
    assert_eq!(
        file.services["a"].networks.keys().collect::<Vec<_>>(),
        ["back", "front"]
    );
    assert_eq!(file.services["b"].networks["back"].aliases, ["api", "v1"]);
    assert!(file.services["b"].networks["front"].aliases.is_empty());
}

#[test]
fn service_networks_of_the_wrong_shape_are_refused() {
    assert_eq!(
        web_errors("    networks: backend\n"),
        ["services.web.networks: expected a list of network names or a mapping, found \"backend\""]
    );
    assert_eq!(
        web_errors("    networks:\n      backend:\n        aliases: api\n"),
        ["services.web.networks.backend.aliases: expected a list, found \"api\""]
    );
}

#[test]
fn top_level_networks_read_every_supported_field() {
    let file = parse(
        "version: \"3.9\"\nservices: {}\nnetworks:\n  plain:\n  local:\n    driver: overlay\n    attachable: true\n    labels: [team=ml]\n    name: custom\n  shared:\n    external: true\n  legacy:\n    external:\n      name: mlmodel\n  renamed:\n    external: true\n    name: elsewhere\n",
    );
    assert_eq!(file.networks["plain"], Network::default());
    assert_eq!(
        file.networks["local"],
        Network {
            name: Some("custom".into()),
            driver: Some("overlay".into()),
            attachable: true,
            external: false,
            labels: [("team".to_string(), "ml".to_string())].into(),
        }
    );
    assert!(file.networks["shared"].external && file.networks["shared"].name.is_none());
    assert_eq!(file.networks["legacy"].name.as_deref(), Some("mlmodel"));
    assert_eq!(file.networks["renamed"].name.as_deref(), Some("elsewhere"));
}

#[test]
fn external_network_mistakes_are_refused() {
    let found = errors(
        "services: {}\nnetworks:\n  a:\n    external:\n      name: x\n    name: y\n  b:\n    external: true\n    driver: overlay\n  c:\n    external: yes\n",
    );
    assert_eq!(
        found,
        [
            "networks.a.external.name: external.name and name conflict; only use name",
            "networks.b.external: an external network is not created by the stack, so driver, attachable and labels cannot be set",
            "networks.c.external: expected true, false or a mapping with name, found \"yes\"",
        ]
    );
}

#[test]
fn deploy_reads_every_supported_field() {
    let service = web(
        "    deploy:\n      mode: replicated\n      replicas: 3\n      endpoint_mode: DNSRR\n      labels:\n        a: b\n      resources:\n        limits:\n          cpus: \"1.5\"\n          memory: 512M\n          pids: 100\n        reservations:\n          cpus: \"0.25\"\n          memory: \"1G\"\n      update_config:\n        parallelism: 2\n        delay: 10s\n        failure_action: rollback\n        monitor: 30s\n        max_failure_ratio: 0.1\n        order: start-first\n      rollback_config:\n        parallelism: 0\n        failure_action: continue\n        order: stop-first\n      restart_policy:\n        condition: on-failure\n        delay: 5s\n        max_attempts: 3\n        window: 2m\n      placement:\n        constraints: [node.role==manager, \"node.labels.gpu != false\"]\n        preferences:\n          - spread: node.labels.zone\n        max_replicas_per_node: 2\n",
    );
    let deploy = service.deploy;
    assert_eq!(deploy.mode, DeployMode::Replicated);
    assert_eq!(deploy.replicas, Some(3));
    assert_eq!(deploy.endpoint_mode, Some(EndpointMode::Dnsrr));
    assert_eq!(deploy.labels["a"], "b");
    assert_eq!(
        deploy.resources,
        Resources {
            limits: Some(Limits {
                nano_cpus: Some(1_500_000_000),
                memory_bytes: Some(512 << 20),
                pids: Some(100),
            }),
            reservations: Some(Reservations {
                nano_cpus: Some(250_000_000),
                memory_bytes: Some(1 << 30),
                generic_resources: Vec::new(),
            }),
        }
    );
    assert_eq!(
        deploy.update_config,
        Some(UpdateConfig {
            parallelism: Some(2),
            delay: Some(10_000_000_000),
            failure_action: Some(FailureAction::Rollback),
            monitor: Some(30_000_000_000),
            max_failure_ratio: Some(0.1),
            order: Some(UpdateOrder::StartFirst),
        })
    );
    assert_eq!(
        deploy.rollback_config,
        Some(UpdateConfig {
            parallelism: Some(0),
            failure_action: Some(FailureAction::Continue),
            order: Some(UpdateOrder::StopFirst),
            ..Default::default()
        })
    );
    assert_eq!(
        deploy.restart_policy,
        Some(RestartPolicy {
            condition: Some(RestartCondition::OnFailure),
            delay: Some(5_000_000_000),
            max_attempts: Some(3),
            window: Some(120_000_000_000),
        })
    );
    assert_eq!(
        deploy.placement,
        Placement {
            constraints: vec![
                "node.role==manager".into(),
                "node.labels.gpu != false".into()
            ],
            spread: vec!["node.labels.zone".into()],
            max_replicas_per_node: 2,
        }
    );
}

#[test]
fn deploy_mistakes_are_refused() {
    let found = web_errors(
        "    deploy:\n      mode: global\n      replicas: 2\n      endpoint_mode: round-robin\n      update_config:\n        failure_action: explode\n        max_failure_ratio: 2\n        order: sideways\n      rollback_config:\n        failure_action: rollback\n      restart_policy:\n        condition: always\n      placement:\n        constraints: [gpu]\n        preferences:\n          - {}\n",
    );
    assert_eq!(
        found,
        [
            "services.web.deploy.endpoint_mode: expected vip or dnsrr, found \"round-robin\"",
            "services.web.deploy.update_config.failure_action: expected continue, pause or rollback, found \"explode\"",
            "services.web.deploy.update_config.max_failure_ratio: expected a fraction from 0 to 1, found 2",
            "services.web.deploy.update_config.order: expected stop-first or start-first, found \"sideways\"",
            "services.web.deploy.rollback_config.failure_action: expected continue or pause, found \"rollback\"",
            "services.web.deploy.restart_policy.condition: expected none, on-failure or any, found \"always\"",
            "services.web.deploy.placement.constraints[0]: expected a constraint such as node.role==manager, found \"gpu\"",
            "services.web.deploy.placement.preferences[0].spread: required: a label such as node.labels.zone",
            "services.web.deploy.replicas: replicas can only be used with replicated or replicated-job mode",
        ]
    );
}

#[test]
fn cpus_and_memory_must_be_quoted_as_docker_requires() {
    assert_eq!(
        web_errors(
            "    deploy:\n      resources:\n        limits:\n          cpus: 0.5\n          memory: 1024\n"
        ),
        [
            "services.web.deploy.resources.limits.cpus: expected a string such as \"0.5\", found 0.5; quote it as \"0.5\"",
            "services.web.deploy.resources.limits.memory: expected a string such as \"512M\", found 1024; quote it as \"1024\"",
        ]
    );
}

#[test]
fn non_string_keys_and_duplicate_keys_are_refused() {
    let found = errors("services:\n  1: {image: nginx}\n");
    assert_eq!(found, ["services: expected string keys, found the key 1"]);
    let found = errors("services:\n  web: {image: nginx}\n  web: {image: nginx}\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("duplicate"), "{found:?}");
}

mod fuzz {
    use super::super::parse_compose;
    use proptest::prelude::*;
    use serde_yaml::{Mapping, Number, Value};

    /// Every key the parser knows, so generated trees reach deep into it.
    const KEYS: &[&str] = &[
        "version",
        "services",
        "networks",
        "web",
        "image",
        "command",
        "entrypoint",
        "environment",
        "labels",
        "user",
        "working_dir",
        "healthcheck",
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "disable",
        "stop_grace_period",
        "stop_signal",
        "ports",
        "target",
        "published",
        "protocol",
        "mode",
        "aliases",
        "deploy",
        "replicas",
        "endpoint_mode",
        "update_config",
        "rollback_config",
        "parallelism",
        "delay",
        "failure_action",
        "monitor",
        "max_failure_ratio",
        "order",
        "resources",
        "limits",
        "reservations",
        "cpus",
        "memory",
        "pids",
        "restart_policy",
        "condition",
        "max_attempts",
        "window",
        "placement",
        "constraints",
        "preferences",
        "spread",
        "max_replicas_per_node",
        "name",
        "driver",
        "attachable",
        "external",
        "x-a",
        "<<",
        "build",
        "",
    ];

    /// Scalars that mean something to the parser, plus arbitrary ones.
    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<u64>().prop_map(|n| Value::Number(n.into())),
            any::<f64>().prop_map(|f| Value::Number(Number::from(f))),
            prop::sample::select(vec![
                "3",
                "3.9",
                "3.1",
                "nginx",
                "80",
                "8080:80/udp",
                "1-3:4-6",
                "0.5",
                "512M",
                "10s",
                "-1s",
                "$$",
                "$",
                "${X}",
                "vip",
                "DNSRR",
                "global",
                "rollback",
                "start-first",
                "on-failure",
                "node.role==manager",
                "CMD",
                "A=1",
                "'",
                "\"",
                "\\",
                "#",
                "=",
            ])
            .prop_map(|s| Value::String(s.to_string())),
            ".{0,12}".prop_map(Value::String),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Sequence),
                prop::collection::vec(
                    (
                        prop_oneof![
                            4 => prop::sample::select(KEYS.to_vec()).prop_map(|k| Value::String(k.to_string())),
                            1 => scalar(),
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|entries| Value::Mapping(entries.into_iter().collect::<Mapping>())),
            ]
        })
    }

    /// Text built from YAML and compose fragments, often almost valid.
    fn yamlish() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "services:",
            "\n",
            "  ",
            "    ",
            "- ",
            "web:",
            "image: nginx",
            "ports:",
            "[",
            "]",
            "{",
            "}",
            ": ",
            ",",
            "&a ",
            "*a",
            "<<: ",
            "!!str ",
            "!custom ",
            "\"",
            "'",
            "$$",
            "$",
            "#",
            "---",
            "...",
            "|",
            ">",
            "deploy:",
            "replicas: ",
            "2",
            "networks:",
            "external: true",
            "version: \"3.9\"",
            "\t",
            "?",
            "\u{feff}",
            "\u{1F600}",
        ]);
        prop::collection::vec(pieces, 0..40).prop_map(|parts| parts.concat())
    }

    fn check(yaml: &str) {
        match parse_compose(yaml) {
            Ok(file) => {
                let _ = crate::desired::convert::convert_stack(
                    "s",
                    &file,
                    &crate::desired::convert::NoFiles,
                );
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                assert!(errors.iter().all(|e| !e.message.is_empty()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_compose_never_panics_on_arbitrary_text(text in ".{0,300}") {
            check(&text);
        }

        #[test]
        fn parse_compose_never_panics_on_yaml_fragments(text in yamlish()) {
            check(&text);
        }

        #[test]
        fn parse_compose_never_panics_on_arbitrary_value_trees(value in tree()) {
            if let Ok(text) = serde_yaml::to_string(&value) {
                check(&text);
            }
            let wrapped = Value::Mapping(
                [(Value::String("services".into()), Value::Mapping(
                    [(Value::String("web".into()), value)].into_iter().collect(),
                ))]
                .into_iter()
                .collect(),
            );
            if let Ok(text) = serde_yaml::to_string(&wrapped) {
                check(&text);
            }
        }
    }
}

#[test]
fn secrets_and_configs_read_as_docker_reads_them() {
    let file = parse(
        "version: \"3.8\"\nservices:\n  web:\n    image: nginx\n    secrets:\n      - a\n      - source: b\n        target: t\n        uid: \"1\"\n        gid: \"2\"\n        mode: 0440\n    configs:\n      - source: c\n        mode: 0o640\n      - source: c\n        target: /d\n        mode: 420\nsecrets:\n  a:\n    file: a.txt\n  b:\n    external:\n      name: shared_b\n  v:\n    driver: vault\n    driver_opts:\n      path: kv/x\nconfigs:\n  c:\n    name: named_c\n    file: c.conf\n    labels:\n      k: v\n",
    );
    let web = &file.services["web"];
    assert_eq!(web.secrets[0].source, "a");
    assert_eq!(web.secrets[1].target.as_deref(), Some("t"));
    assert_eq!(web.secrets[1].uid.as_deref(), Some("1"));
    assert_eq!(
        web.secrets[1].mode,
        Some(0o440),
        "a leading zero is octal, as in Docker"
    );
    assert_eq!(web.configs[0].mode, Some(0o640));
    assert_eq!(web.configs[1].mode, Some(420));
    assert_eq!(file.secrets["b"].name.as_deref(), Some("shared_b"));
    assert!(file.secrets["b"].external);
    assert_eq!(file.secrets["v"].driver.as_deref(), Some("vault"));
    assert_eq!(file.secrets["v"].driver_opts["path"], "kv/x");
    assert_eq!(file.configs["c"].name.as_deref(), Some("named_c"));
    assert_eq!(file.configs["c"].labels["k"], "v");
}

#[test]
fn secret_and_config_problems_name_their_path() {
    let found = errors(
        "version: \"3.2\"\nservices:\n  web:\n    image: nginx\n    configs: [c]\n    secrets:\n      - source: a\n        mode: rw\n      - target: x\nsecrets:\n  a:\n    file: a.txt\n    driver: vault\n  b: {}\n  c:\n    file: c\n    bogus: 1\nconfigs:\n  c:\n    file: c.conf\n",
    );
    assert_eq!(
        found,
        [
            "services.web.configs: requires compose file version 3.3 or later; this file declares version 3.2",
            "services.web.secrets[0].mode: expected a file mode such as 0440, found \"rw\"",
            "services.web.secrets[1].source: required: the key of the object",
            "secrets.a.driver: requires compose file version 3.8 or later; this file declares version 3.2",
            "secrets.b.file: required: the secret's content comes from a file (or driver) unless it is external",
            "secrets.c.bogus: not supported",
            "configs: requires compose file version 3.3 or later; this file declares version 3.2",
        ]
    );
    let found = errors(
        "version: \"3.8\"\nservices:\n  web:\n    image: nginx\nsecrets:\n  a:\n    file: a.txt\n    driver: vault\n",
    );
    assert_eq!(
        found,
        [
            "secrets.a.driver: secret a: secret.driver and secret.file conflict; only use secret.driver"
        ]
    );
}

#[test]
fn oom_score_adj_is_accepted_with_a_warning_from_version_3_13() {
    let file =
        parse("version: \"3.13\"\nservices:\n  web:\n    image: nginx\n    oom_score_adj: -100\n");
    assert_eq!(file.warnings.len(), 1);
    assert_eq!(file.warnings[0].path, "services.web.oom_score_adj");
    let found =
        errors("version: \"3.12\"\nservices:\n  web:\n    image: nginx\n    oom_score_adj: 1\n");
    assert_eq!(
        found,
        [
            "services.web.oom_score_adj: requires compose file version 3.13 or later; this file declares version 3.12"
        ]
    );
}
