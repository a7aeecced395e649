//! The container-level keys of a service beyond the basics: host name and hosts, DNS,
//! kernel settings, capabilities, limits, logging, the credential spec, and the legacy
//! `restart`.
//!
//! Values are kept as written; the converter applies Docker's normalisations (capability
//! names, `host:ip` turned around, sorting) where Docker applies them.

use super::read_labels;
use super::reader::{Reader, child, item};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// A `ulimits` entry: `nofile: 1024` sets both limits alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// The `logging` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logging {
    /// Log driver; the engine's default when absent.
    pub driver: Option<String>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
}

/// The `credential_spec` section (Windows gMSA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSpec {
    /// The key of a top-level config holding the spec (3.8).
    pub config: Option<String>,
    /// A credential spec file on the node.
    pub file: Option<String>,
    /// A registry value holding the spec.
    pub registry: Option<String>,
}

/// `extra_hosts`: a list of `host:ip`, or a mapping read as that list sorted.
pub fn read_extra_hosts(r: &mut Reader, path: &str, value: &Value) -> Vec<String> {
    let hosts: Vec<String> = match value {
        Value::Mapping(_) => {
            let mut pairs: Vec<String> = r
                .mapping(path, value)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, ip)| !ip.is_null())
                .filter_map(|(host, ip)| {
                    let ip = r.scalar_text(&child(path, &host), ip)?;
                    Some(format!("{host}:{ip}"))
                })
                .collect();
            pairs.sort();
            pairs
        }
        _ => r.string_list(path, value).unwrap_or_default(),
    };
    for (i, host) in hosts.iter().enumerate() {
        if !host.contains(':') {
            r.warn(
                &item(path, i),
                format!("{host:?} is dropped, as docker stack deploy drops it: expected host:ip"),
            );
        }
    }
    hosts
}

/// `dns` or `dns_search`: a string or a list of strings.
pub fn read_string_or_list(r: &mut Reader, path: &str, value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(_) => r.string(path, value).map(|s| vec![s]),
        _ => r.string_list(path, value),
    }
}

/// `sysctls`: a list of `key=value` or a mapping.
pub fn read_sysctls(r: &mut Reader, path: &str, value: &Value) -> BTreeMap<String, String> {
    read_labels(r, path, value)
}

/// `ulimits`: each name to a number, or to a mapping with `soft` and `hard`.
pub fn read_ulimits(r: &mut Reader, path: &str, value: &Value) -> BTreeMap<String, Ulimit> {
    let mut limits = BTreeMap::new();
    for (name, v) in r.mapping(path, value).unwrap_or_default() {
        let p = child(path, &name);
        let limit = match v {
            Value::Mapping(_) => {
                let (mut soft, mut hard) = (None, None);
                for (key, lv) in r.mapping(&p, v).unwrap_or_default() {
                    let lp = child(&p, &key);
                    match key.as_str() {
                        "soft" => soft = integer(r, &lp, lv),
                        "hard" => hard = integer(r, &lp, lv),
                        _ => r.error(&lp, "not supported"),
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) => Some(Ulimit { soft, hard }),
                    _ => {
                        r.error(&p, "expected both soft and hard");
                        None
                    }
                }
            }
            _ => integer(r, &p, v).map(|n| Ulimit { soft: n, hard: n }),
        };
        if let Some(limit) = limit {
            limits.insert(name, limit);
        }
    }
    limits
}

/// A whole number, negative allowed (`-1` is "unlimited" for some limits).
fn integer(r: &mut Reader, path: &str, value: &Value) -> Option<i64> {
    match value.as_i64() {
        Some(n) => Some(n),
        None => {
            r.expected(path, "a whole number", value);
            None
        }
    }
}

/// `logging`: `driver` and `options`.
pub fn read_logging(r: &mut Reader, path: &str, value: &Value) -> Option<Logging> {
    let mut logging = Logging::default();
    for (key, v) in r.mapping_or_null(path, value)? {
        let p = child(path, &key);
        match key.as_str() {
            "driver" => logging.driver = r.string(&p, v),
            "options" => {
                if !v.is_null() {
                    logging.options = read_labels(r, &p, v);
                }
            }
            _ => r.error(&p, "not supported"),
        }
    }
    Some(logging)
}

/// `isolation`: the values the engine knows.
pub fn read_isolation(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.string(path, value)?;
    match text.as_str() {
        "" | "default" | "process" | "hyperv" => Some(text),
        _ => {
            r.error(
                path,
                format!("expected default, process or hyperv, found {text:?}"),
            );
            None
        }
    }
}

/// `credential_spec`: at most one of `config` (3.8), `file` and `registry`.
pub fn read_credential_spec(
    r: &mut Reader,
    config_allowed: bool,
    path: &str,
    value: &Value,
) -> Option<CredentialSpec> {
    let mut spec = CredentialSpec::default();
    for (key, v) in r.mapping(path, value)? {
        let p = child(path, &key);
        match key.as_str() {
            "config" if config_allowed => spec.config = r.string(&p, v),
            "config" => r.error(
                &p,
                "requires compose file version 3.8 or later; this file declares an earlier one",
            ),
            "file" => spec.file = r.string(&p, v),
            "registry" => spec.registry = r.string(&p, v),
            _ => r.error(&p, "not supported"),
        }
    }
    // Docker's words, which name the fields as the API spells them.
    let given: Vec<&str> = [
        (spec.config.is_some(), "\"Config\""),
        (spec.file.is_some(), "\"File\""),
        (spec.registry.is_some(), "\"Registry\""),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    match given.as_slice() {
        [a, b] => r.error(
            path,
            format!("invalid credential spec: cannot specify both {a} and {b}"),
        ),
        [a, b, c] => r.error(
            path,
            format!("invalid credential spec: cannot specify both {a}, {b}, and {c}"),
        ),
        _ => {}
    }
    Some(spec)
}

/// The legacy `restart` key, as Docker reads it when `deploy.restart_policy` is absent:
/// the condition and, for `on-failure:N`, the attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// `no` or empty: no policy (Swarm's default, restart always, applies).
    No,
    /// `always` or `unless-stopped`.
    Any,
    /// `on-failure[:N]`; N is 0 when absent.
    OnFailure(u64),
}

/// Reads `restart`.
pub fn read_restart(r: &mut Reader, path: &str, value: &Value) -> Option<Restart> {
    let text = r.string(path, value)?;
    let parts: Vec<&str> = text.split(':').collect();
    let (name, count) = match parts.as_slice() {
        [name] => (*name, 0),
        [name, count] => match count.parse::<u64>() {
            Ok(n) => (*name, n),
            Err(_) => {
                r.error(path, "maximum retry count must be an integer");
                return None;
            }
        },
        _ => {
            r.error(path, "invalid restart policy format");
            return None;
        }
    };
    let restart = match name {
        "" | "no" => Restart::No,
        "always" | "unless-stopped" => Restart::Any,
        "on-failure" => Restart::OnFailure(count),
        _ => {
            r.error(path, format!("unknown restart policy: {name}"));
            return None;
        }
    };
    Some(restart)
}
