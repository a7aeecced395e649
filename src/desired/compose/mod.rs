//! A typed model of the compose-file subset mlmodel deploys, and its parser.
//!
//! [`parse_compose`] reads a rendered stack file (compose format, version 3) into a
//! [`ComposeFile`]. It accepts what `docker stack deploy` accepts for the supported keys,
//! with the same value grammars and defaults left unapplied, and reports every key
//! outside the subset as `not supported` rather than ignoring it. Every problem in the
//! file is reported at once, each with its path (`services.web.deploy.replicas`).
//!
//! Strings go through compose interpolation without an environment: `$$` is a literal
//! `$`, and `$VAR` is an error. `docker stack deploy` would fill `$VAR` from the shell it
//! runs in; mlmodel has no such environment on purpose (the controller's own variables
//! must not leak into workloads), so it honours only the escape, and a rendered file
//! means the same to mlmodel and to the CLI. Like Docker, only values are interpolated,
//! never mapping keys.

mod container;
mod deploy;
mod ignored;
mod objects;
mod ports;
mod reader;
pub mod shlex;
mod volumes;

pub use container::{CredentialSpec, Logging, Restart, Ulimit};
pub use deploy::{
    Deploy, DeployMode, EndpointMode, FailureAction, Limits, Placement, Reservations, Resources,
    RestartCondition, RestartPolicy, UpdateConfig, UpdateOrder,
};
pub use objects::{FileObject, FileReference, ObjectKind};
pub use ports::{Port, Protocol, PublishMode};
pub use reader::go_float_text;
pub use volumes::{MountKind, ServiceVolume, Volume};

use reader::{Reader, child, item};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// A problem in a compose file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ComposeError {
    /// Dotted path of the offending value, such as `services.web.deploy.replicas`;
    /// list items are indexed (`services.web.ports[1]`).
    pub path: String,
    /// What is wrong and, where it helps, what was expected.
    pub message: String,
}

/// Something in a compose file that is accepted but not deployed as written, as
/// `docker stack deploy` warns about it: an option it ignores, a host address it drops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ComposeWarning {
    /// Dotted path of the value, as for [`ComposeError`].
    pub path: String,
    /// What happens to it instead.
    pub message: String,
}

/// Path used for errors about the document as a whole.
pub const DOCUMENT: &str = "compose file";

/// A parsed compose file: the services and networks of one stack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComposeFile {
    /// The `version` key as written, if present.
    pub version: Option<String>,
    /// Services by key.
    pub services: BTreeMap<String, Service>,
    /// Top-level networks by key.
    pub networks: BTreeMap<String, Network>,
    /// Top-level named volumes by key.
    pub volumes: BTreeMap<String, Volume>,
    /// Top-level secrets by key.
    pub secrets: BTreeMap<String, FileObject>,
    /// Top-level configs by key.
    pub configs: BTreeMap<String, FileObject>,
    /// What is accepted but not deployed as written, in document order.
    pub warnings: Vec<ComposeWarning>,
}

/// One service of the stack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    /// Image reference, as written.
    pub image: String,
    /// Arguments (`command`); a string is split shell-style.
    pub command: Option<Vec<String>>,
    /// Entrypoint; a string is split shell-style.
    pub entrypoint: Option<Vec<String>>,
    /// Environment; `None` is a name without a value (`- FOO`, `FOO: null`).
    pub environment: BTreeMap<String, Option<String>>,
    /// Files of `KEY=value` lines read before `environment`, which overrides them; paths
    /// as written (relative to the templates directory).
    pub env_file: Vec<String>,
    /// Container labels (service-level `labels`).
    pub labels: BTreeMap<String, String>,
    /// User to run as.
    pub user: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Health check.
    pub healthcheck: Option<Healthcheck>,
    /// Time to wait after the stop signal, in nanoseconds.
    pub stop_grace_period: Option<i64>,
    /// Signal that stops the container (`SIGTERM` when absent).
    pub stop_signal: Option<String>,
    /// Published ports, short syntax expanded, in document order.
    pub ports: Vec<Port>,
    /// Networks by key; empty means the stack's `default` network.
    pub networks: BTreeMap<String, ServiceNetwork>,
    /// The `deploy` section.
    pub deploy: Deploy,
    /// Mounts, in file order.
    pub volumes: Vec<ServiceVolume>,
    /// The container's host name.
    pub hostname: Option<String>,
    /// `extra_hosts` as `host:ip` entries, in order (a mapping's sorted).
    pub extra_hosts: Vec<String>,
    /// DNS servers.
    pub dns: Option<Vec<String>>,
    /// DNS search domains.
    pub dns_search: Option<Vec<String>>,
    /// Namespaced kernel parameters.
    pub sysctls: BTreeMap<String, String>,
    /// Capabilities added, as written.
    pub cap_add: Vec<String>,
    /// Capabilities dropped, as written.
    pub cap_drop: Vec<String>,
    /// Resource limits by name.
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Run an init process as PID 1.
    pub init: Option<bool>,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open.
    pub stdin_open: bool,
    /// Isolation technology (Windows).
    pub isolation: Option<String>,
    /// Log driver and options.
    pub logging: Option<Logging>,
    /// Credential spec (Windows).
    pub credential_spec: Option<CredentialSpec>,
    /// The legacy `restart`, used when `deploy.restart_policy` is absent.
    pub restart: Option<Restart>,
    /// Secrets mounted into the container, in file order.
    pub secrets: Vec<FileReference>,
    /// Configs mounted into the container, in file order.
    pub configs: Vec<FileReference>,
}

/// A service's health check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// The test; a string `s` reads as `["CMD-SHELL", s]`.
    pub test: Option<Vec<String>>,
    /// Time between checks, in nanoseconds.
    pub interval: Option<i64>,
    /// Time a check may take, in nanoseconds.
    pub timeout: Option<i64>,
    /// Failures in a row before the task is unhealthy.
    pub retries: Option<u64>,
    /// Grace period after start, in nanoseconds.
    pub start_period: Option<i64>,
    /// Turns off the image's health check.
    pub disable: bool,
}

/// How a service joins one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceNetwork {
    /// Extra DNS names on this network (the service key is always added).
    pub aliases: Vec<String>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Explicit Docker name; for an external network written as `external: {name: x}`
    /// this holds `x`.
    pub name: Option<String>,
    /// Driver; Docker uses overlay when absent.
    pub driver: Option<String>,
    /// Whether standalone containers may attach.
    pub attachable: bool,
    /// Whether the network exists already and is not the stack's to create.
    pub external: bool,
    /// Labels on the network.
    pub labels: BTreeMap<String, String>,
}

/// The compose format's minor version, which gates some keys.
///
/// A file without `version`, or with `version: "3"`, is read as Docker's newest 3.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    minor: u8,
}

/// The newest 3.x format `docker stack deploy` knows, and the one it assumes for a file
/// without `version` or with `version: "3"`.
const NEWEST_MINOR: u8 = 13;

impl Version {
    const NEWEST: Version = Version {
        minor: NEWEST_MINOR,
    };
}

/// Checks that the file's version allows a key introduced in `3.<minor>`.
fn requires(r: &mut Reader, version: Version, path: &str, minor: u8) -> bool {
    if version.minor >= minor {
        return true;
    }
    r.error(
        path,
        format!(
            "requires compose file version 3.{minor} or later; this file declares version 3.{}",
            version.minor
        ),
    );
    false
}

/// Parses a compose file, reporting every problem found.
pub fn parse_compose(yaml: &str) -> Result<ComposeFile, Vec<ComposeError>> {
    let mut document: Value = serde_yaml::from_str(yaml).map_err(|e| vec![yaml_error(&e)])?;
    document.apply_merge().map_err(|e| vec![yaml_error(&e)])?;
    let mut r = Reader::default();
    let file = read_file(&mut r, &document);
    if r.has_errors() {
        Err(r.into_errors())
    } else {
        Ok(file)
    }
}

fn yaml_error(error: &serde_yaml::Error) -> ComposeError {
    let path = match error.location() {
        Some(at) => format!("line {} column {}", at.line(), at.column()),
        None => DOCUMENT.to_string(),
    };
    // serde_yaml appends the location to its message; it is in the path already.
    let message = error.to_string();
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    ComposeError { path, message }
}

fn read_file(r: &mut Reader, document: &Value) -> ComposeFile {
    let mut file = ComposeFile::default();
    let Some(entries) = r.mapping(DOCUMENT, document) else {
        return file;
    };
    let version =
        entries
            .iter()
            .find(|(key, _)| key == "version")
            .map_or(Version::NEWEST, |(_, v)| {
                file.version = match v {
                    // Docker's schema wants a string: `version: 3.9` fails the CLI too.
                    Value::Number(n) => {
                        r.error(
                            "version",
                            format!("expected a string, found {n}; quote it as \"{n}\""),
                        );
                        None
                    }
                    _ => r.string("version", v),
                };
                read_version(r, file.version.as_deref())
            });
    let mut saw_services = false;
    for (key, value) in &entries {
        match key.as_str() {
            "version" => {}
            "services" => {
                saw_services = true;
                file.services = read_services(r, version, value);
            }
            "networks" => file.networks = read_networks(r, version, value),
            "volumes" => file.volumes = volumes::read_volumes(r, version, value),
            "secrets" => {
                file.secrets = objects::read_objects(r, version, ObjectKind::Secret, value)
            }
            "configs" => {
                file.configs = objects::read_objects(r, version, ObjectKind::Config, value)
            }
            _ if key.starts_with("x-") => {
                requires(r, version, key, 4);
            }
            _ => r.error(key, "not supported"),
        }
    }
    if !saw_services {
        r.error("services", "required: the stack's services");
    }
    file.warnings = r.take_warnings();
    file
}

fn read_version(r: &mut Reader, text: Option<&str>) -> Version {
    let Some(text) = text else {
        return Version::NEWEST;
    };
    if text == "3" {
        return Version::NEWEST;
    }
    let minor = text
        .strip_prefix("3.")
        .filter(|m| m.len() <= 2 && !m.starts_with('0') || *m == "0")
        .and_then(|m| m.parse::<u8>().ok())
        .filter(|m| *m <= NEWEST_MINOR);
    match minor {
        Some(minor) => Version { minor },
        None => {
            r.error(
                "version",
                format!(
                    "expected a 3.x version from \"3\" to \"3.{NEWEST_MINOR}\", found {text:?}"
                ),
            );
            Version::NEWEST
        }
    }
}

fn read_services(r: &mut Reader, version: Version, value: &Value) -> BTreeMap<String, Service> {
    let mut services = BTreeMap::new();
    let Some(entries) = r.mapping("services", value) else {
        return services;
    };
    for (key, v) in entries {
        let path = child("services", &key);
        if let Some(service) = read_service(r, version, &path, v) {
            services.insert(key, service);
        }
    }
    services
}

fn read_service(r: &mut Reader, version: Version, path: &str, value: &Value) -> Option<Service> {
    let entries = r.mapping(path, value)?;
    let mut service = Service::default();
    let mut saw_image = false;
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "image" => {
                saw_image = true;
                if let Some(image) = r.string(&p, v) {
                    if let Err(e) = crate::desired::naming::validate_image(&image) {
                        r.error(&p, e.to_string());
                    }
                    service.image = image;
                }
            }
            "command" => service.command = read_command(r, &p, v),
            "entrypoint" => service.entrypoint = read_command(r, &p, v),
            "environment" => service.environment = read_environment(r, &p, v),
            "labels" => service.labels = read_labels(r, &p, v),
            "user" => service.user = r.string(&p, v),
            "working_dir" => service.working_dir = r.string(&p, v),
            "healthcheck" => service.healthcheck = read_healthcheck(r, version, &p, v),
            "stop_grace_period" => service.stop_grace_period = r.duration(&p, v),
            "stop_signal" => service.stop_signal = r.string(&p, v),
            "ports" => service.ports = ports::read_ports(r, version, &p, v),
            "networks" => service.networks = read_service_networks(r, &p, v),
            "deploy" => service.deploy = deploy::read_deploy(r, version, &p, v),
            "volumes" => service.volumes = volumes::read_service_volumes(r, version, &p, v),
            "hostname" => service.hostname = r.string(&p, v),
            "extra_hosts" => service.extra_hosts = container::read_extra_hosts(r, &p, v),
            "dns" => service.dns = container::read_string_or_list(r, &p, v),
            "dns_search" => service.dns_search = container::read_string_or_list(r, &p, v),
            "sysctls" => service.sysctls = container::read_sysctls(r, &p, v),
            "cap_add" => service.cap_add = r.string_list(&p, v).unwrap_or_default(),
            "cap_drop" => service.cap_drop = r.string_list(&p, v).unwrap_or_default(),
            "ulimits" => service.ulimits = container::read_ulimits(r, &p, v),
            "init" => {
                if requires(r, version, &p, 7) {
                    service.init = r.bool(&p, v);
                }
            }
            "read_only" => service.read_only = r.bool(&p, v).unwrap_or(false),
            "tty" => service.tty = r.bool(&p, v).unwrap_or(false),
            "stdin_open" => service.stdin_open = r.bool(&p, v).unwrap_or(false),
            "isolation" => service.isolation = container::read_isolation(r, &p, v),
            "logging" => service.logging = container::read_logging(r, &p, v),
            _ => read_other_key(r, version, &mut service, &key, &p, v),
        }
    }
    if !saw_image {
        r.error(
            &child(path, "image"),
            "required: the image the service runs",
        );
    }
    Some(service)
}

/// Reads the service keys beyond the common ones: the credential spec, secrets and
/// configs, env files, the legacy restart, extension fields, and the keys Docker ignores
/// or refuses.
fn read_other_key(
    r: &mut Reader,
    version: Version,
    service: &mut Service,
    key: &str,
    p: &str,
    v: &Value,
) {
    match key {
        "env_file" => {
            service.env_file = container::read_string_or_list(r, p, v).unwrap_or_default()
        }
        "oom_score_adj" => {
            if requires(r, version, p, 13) && r.number(p, v).is_some() {
                r.warn(
                    p,
                    "ignored: services on this engine's API (1.41) have no OOM score adjustment (the API has it from 1.46)",
                );
            }
        }
        "credential_spec" => {
            if requires(r, version, p, 3) {
                service.credential_spec =
                    container::read_credential_spec(r, version.minor >= 8, p, v);
            }
        }
        "secrets" => {
            service.secrets = objects::read_references(r, version, ObjectKind::Secret, p, v)
        }
        "configs" => {
            service.configs = objects::read_references(r, version, ObjectKind::Config, p, v)
        }
        "restart" => {
            service.restart = container::read_restart(r, p, v);
            r.warn(p, ignored::RESTART_WARNING);
        }
        _ if key.starts_with("x-") => {
            requires(r, version, p, 7);
        }
        _ => match ignored::service_key(key) {
            Some(ignored::Handling::Ignored(message)) => r.warn(p, message),
            Some(ignored::Handling::Forbidden(message)) => r.error(p, message),
            None => r.error(p, "not supported"),
        },
    }
}

/// Reads `command` or `entrypoint`: a list of strings, or a string split shell-style.
fn read_command(r: &mut Reader, path: &str, value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(_) => {
            let text = r.string(path, value)?;
            match shlex::split(&text) {
                Ok(words) => Some(words),
                Err(e) => {
                    r.error(path, format!("cannot split {text:?} into words: {e}"));
                    None
                }
            }
        }
        Value::Sequence(_) => r.string_list(path, value),
        _ => {
            r.expected(path, "a string or a list of strings", value);
            None
        }
    }
}

/// Reads a list (`KEY=value`) or mapping of key/value strings.
///
/// `allow_missing` keeps a key without a value (`- KEY`, `KEY: null`) as `None`, as the
/// environment does; labels read it as an empty string, as Docker does.
fn read_key_values(
    r: &mut Reader,
    path: &str,
    value: &Value,
    allow_missing: bool,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    match value {
        Value::Sequence(items) => {
            for (i, entry) in items.iter().enumerate() {
                let ip = item(path, i);
                // The whole entry is interpolated (it is a list item), then split.
                let Some(text) = r.string(&ip, entry) else {
                    continue;
                };
                let (key, val) = match text.split_once('=') {
                    Some((key, val)) => (key.to_string(), Some(val.to_string())),
                    None if allow_missing => (text, None),
                    None => (text, Some(String::new())),
                };
                if key.is_empty() {
                    r.error(
                        &ip,
                        format!("expected KEY=value, found {:?}", entry_text(entry)),
                    );
                    continue;
                }
                out.insert(key, val);
            }
        }
        Value::Mapping(_) => {
            for (key, v) in r.mapping(path, value).unwrap_or_default() {
                let kp = child(path, &key);
                if key.is_empty() {
                    r.error(&kp, "expected a non-empty key");
                    continue;
                }
                // Keys are not interpolated by Docker; only values are.
                let val = match v {
                    Value::Null if allow_missing => None,
                    Value::Null => Some(String::new()),
                    _ => match r.scalar_text(&kp, v) {
                        Some(text) => Some(text),
                        None => continue,
                    },
                };
                out.insert(key, val);
            }
        }
        _ => r.expected(path, "a list of KEY=value strings or a mapping", value),
    }
    out
}

fn entry_text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Reads `environment`.
///
/// A name without a value (`- FOO` or `FOO: null`) is kept as the bare name `FOO`.
/// `docker stack deploy` would fill it from the shell it runs in and sends the bare name
/// when that shell lacks it; mlmodel has no shell environment to draw from, so it always
/// sends what Docker sends in the unset case. Likewise `FOO=` stays empty, where Docker
/// would replace an empty value by the deploying shell's `FOO` if set.
fn read_environment(r: &mut Reader, path: &str, value: &Value) -> BTreeMap<String, Option<String>> {
    read_key_values(r, path, value, true)
}

/// Reads `labels` or `deploy.labels`; a key without a value is an empty label.
fn read_labels(r: &mut Reader, path: &str, value: &Value) -> BTreeMap<String, String> {
    read_key_values(r, path, value, false)
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect()
}

fn read_healthcheck(
    r: &mut Reader,
    version: Version,
    path: &str,
    value: &Value,
) -> Option<Healthcheck> {
    let entries = r.mapping(path, value)?;
    let mut check = Healthcheck::default();
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "test" => {
                check.test = match v {
                    Value::String(_) => r
                        .string(&p, v)
                        .map(|command| vec!["CMD-SHELL".to_string(), command]),
                    Value::Sequence(_) => r.string_list(&p, v).filter(|test| {
                        let ok = test.first().is_none_or(|kind| {
                            ["NONE", "CMD", "CMD-SHELL"].contains(&kind.as_str())
                        });
                        if !ok {
                            r.error(&p, "expected a list starting with CMD, CMD-SHELL or NONE");
                        }
                        ok
                    }),
                    _ => {
                        r.expected(&p, "a string or a list of strings", v);
                        None
                    }
                };
            }
            "interval" => check.interval = r.duration(&p, v),
            "timeout" => check.timeout = r.duration(&p, v),
            "start_period" => {
                if requires(r, version, &p, 4) {
                    check.start_period = r.duration(&p, v);
                }
            }
            "retries" => check.retries = r.u64(&p, v),
            "disable" => check.disable = r.bool(&p, v).unwrap_or(false),
            _ => r.error(&p, "not supported"),
        }
    }
    if check.disable && check.test.as_ref().is_some_and(|t| !t.is_empty()) {
        r.error(
            &child(path, "disable"),
            "test and disable can't be set at the same time",
        );
    }
    Some(check)
}

fn read_service_networks(
    r: &mut Reader,
    path: &str,
    value: &Value,
) -> BTreeMap<String, ServiceNetwork> {
    let mut networks = BTreeMap::new();
    match value {
        Value::Sequence(_) => {
            for name in r.string_list(path, value).unwrap_or_default() {
                networks.insert(name, ServiceNetwork::default());
            }
        }
        Value::Mapping(_) => {
            for (key, v) in r.mapping(path, value).unwrap_or_default() {
                let p = child(path, &key);
                let mut network = ServiceNetwork::default();
                for (field, fv) in r.mapping_or_null(&p, v).unwrap_or_default() {
                    let fp = child(&p, &field);
                    match field.as_str() {
                        "aliases" => network.aliases = r.string_list(&fp, fv).unwrap_or_default(),
                        "ipv4_address" | "ipv6_address" => r.warn(
                            &fp,
                            "ignored, as docker stack deploy ignores it: a swarm allocates task addresses itself",
                        ),
                        _ => r.error(&fp, "not supported"),
                    }
                }
                networks.insert(key, network);
            }
        }
        _ => r.expected(path, "a list of network names or a mapping", value),
    }
    networks
}

fn read_networks(r: &mut Reader, version: Version, value: &Value) -> BTreeMap<String, Network> {
    let mut networks = BTreeMap::new();
    let Some(entries) = r.mapping("networks", value) else {
        return networks;
    };
    for (key, v) in entries {
        let path = child("networks", &key);
        if let Some(network) = read_network(r, version, &path, v) {
            networks.insert(key, network);
        }
    }
    networks
}

/// Reads `external` of a top-level network or volume: a boolean, or the legacy form
/// `external: {name: x}`, whose name comes back with its path.
fn read_external(r: &mut Reader, path: &str, value: &Value) -> (bool, Option<(String, String)>) {
    match value {
        Value::Bool(external) => (*external, None),
        Value::Mapping(_) => {
            let mut legacy_name = None;
            for (field, fv) in r.mapping(path, value).unwrap_or_default() {
                let fp = child(path, &field);
                match field.as_str() {
                    "name" => legacy_name = r.string(&fp, fv).map(|n| (n, fp)),
                    _ => r.error(&fp, "not supported"),
                }
            }
            (true, legacy_name)
        }
        _ => {
            r.expected(path, "true, false or a mapping with name", value);
            (false, None)
        }
    }
}

fn read_network(r: &mut Reader, version: Version, path: &str, value: &Value) -> Option<Network> {
    let entries = r.mapping_or_null(path, value)?;
    let mut network = Network::default();
    let mut legacy_name = None;
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "name" => {
                if requires(r, version, &p, 5) {
                    network.name = r.string(&p, v);
                }
            }
            "driver" => network.driver = r.string(&p, v),
            "attachable" => {
                if requires(r, version, &p, 2) {
                    network.attachable = r.bool(&p, v).unwrap_or(false);
                }
            }
            "labels" => network.labels = read_labels(r, &p, v),
            "external" => (network.external, legacy_name) = read_external(r, &p, v),
            _ if key.starts_with("x-") => {
                requires(r, version, &p, 7);
            }
            _ => r.error(&p, "not supported"),
        }
    }
    if let Some((name, name_path)) = legacy_name {
        if network.name.is_some() {
            r.error(&name_path, "external.name and name conflict; only use name");
        } else {
            network.name = Some(name);
        }
    }
    if network.external
        && (network.driver.is_some() || network.attachable || !network.labels.is_empty())
    {
        r.error(
            &child(path, "external"),
            "an external network is not created by the stack, so driver, attachable and labels cannot be set",
        );
    }
    Some(network)
}

#[cfg(test)]
mod tests;
