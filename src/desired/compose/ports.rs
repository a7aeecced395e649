//! Compose `ports`: the short syntax (`"8080:80/udp"`) and the long one (a mapping).
//!
//! The short syntax is expanded exactly as `docker stack deploy` expands it, including
//! its less obvious corners: a range of container ports yields one port per container
//! port, ordered by the text `"<port>/<proto>"` (so `8-10` gives 10, 8, 9); a host range
//! in front of a single container port (`"8000-8002:80"`) publishes that one port on
//! every host port of the range.

use super::reader::{Reader, child, item};
use super::{Version, requires};
use serde_yaml::Value;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP, Docker's default.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    fn parse(text: &str) -> Option<Protocol> {
        match text {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// How a port is published: through the routing mesh or on the task's node only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PublishMode {
    /// Every node of the swarm accepts the port (the routing mesh), Docker's default.
    Ingress,
    /// Only the node running the task accepts the port.
    Host,
}

/// One published port, as Docker's `PortConfig` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port inside the container.
    pub target: u32,
    /// The port on the swarm; 0 lets Swarm choose one.
    pub published: u32,
    /// The protocol; `None` leaves the daemon's default (tcp).
    pub protocol: Option<Protocol>,
    /// The publish mode; `None` leaves the daemon's default (ingress).
    pub mode: Option<PublishMode>,
}

/// Reads a service's `ports` list; entries are strings, integers or mappings.
pub fn read_ports(r: &mut Reader, version: Version, path: &str, value: &Value) -> Vec<Port> {
    let Some(items) = r.list(path, value) else {
        return Vec::new();
    };
    let mut ports = Vec::new();
    for (i, entry) in items.iter().enumerate() {
        let entry_path = item(path, i);
        match entry {
            Value::String(_) => {
                let Some(spec) = r.string(&entry_path, entry) else {
                    continue;
                };
                let parsed =
                    split_host_ip(&spec).and_then(|(ip, rest)| Ok((ip, parse_short(rest)?)));
                match parsed {
                    Ok((ip, expanded)) => {
                        warn_host_ip(r, &entry_path, ip.as_deref(), &expanded);
                        ports.extend(expanded);
                    }
                    Err(message) => r.error(&entry_path, message),
                }
            }
            Value::Number(n) => match n.as_u64() {
                Some(number) => match parse_short(&number.to_string()) {
                    Ok(expanded) => ports.extend(expanded),
                    Err(message) => r.error(&entry_path, message),
                },
                None => r.expected(&entry_path, "a port number", entry),
            },
            Value::Mapping(_) => {
                if requires(r, version, &entry_path, 2)
                    && let Some(port) = read_long(r, &entry_path, entry)
                {
                    ports.push(port);
                }
            }
            _ => r.expected(
                &entry_path,
                "a port such as \"8080:80\" or a mapping with target and published",
                entry,
            ),
        }
    }
    ports
}

fn read_long(r: &mut Reader, path: &str, value: &Value) -> Option<Port> {
    let entries = r.mapping(path, value)?;
    let mut target = None;
    let mut port = Port {
        target: 0,
        published: 0,
        protocol: None,
        mode: None,
    };
    for (key, v) in entries {
        let p = child(path, &key);
        match key.as_str() {
            "target" => target = r.u64_at_most(&p, v, 65535),
            "published" => {
                if let Some(n) = r.u64_at_most(&p, v, 65535) {
                    port.published = n as u32;
                }
            }
            "protocol" => {
                if let Some(text) = r.string(&p, v) {
                    port.protocol = Protocol::parse(&text);
                    if port.protocol.is_none() {
                        r.error(&p, format!("expected tcp, udp or sctp, found {text:?}"));
                    }
                }
            }
            "mode" => {
                if let Some(text) = r.string(&p, v) {
                    port.mode = match text.as_str() {
                        "ingress" => Some(PublishMode::Ingress),
                        "host" => Some(PublishMode::Host),
                        _ => {
                            r.error(&p, format!("expected ingress or host, found {text:?}"));
                            None
                        }
                    };
                }
            }
            _ => r.error(&p, "not supported"),
        }
    }
    match target {
        Some(t) => {
            port.target = t as u32;
            Some(port)
        }
        None => {
            if !value.as_mapping().is_some_and(|m| m.contains_key("target")) {
                r.error(
                    &child(path, "target"),
                    "required: the port inside the container",
                );
            }
            None
        }
    }
}

/// Parses a port number or range (`80`, `8000-8010`) into its first and last port.
fn parse_range(text: &str) -> Option<(u32, u32)> {
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u16>().ok().map(u32::from)
    };
    match text.split_once('-') {
        None => number(text).map(|p| (p, p)),
        Some((start, end)) => {
            let (start, end) = (number(start)?, number(end)?);
            (start <= end).then_some((start, end))
        }
    }
}

/// Splits a host address off a short-syntax port (`127.0.0.1:8080:80`, `[::1]:8080:80`).
pub fn split_host_ip(spec: &str) -> Result<(Option<String>, &str), String> {
    if let Some(bracketed) = spec.strip_prefix('[') {
        let Some((ip, rest)) = bracketed.split_once("]:") else {
            return Err(format!("Invalid ip address: {spec}"));
        };
        return match ip.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok((Some(ip.to_string()), rest)),
            Err(_) => Err(format!("Invalid ip address: {ip}")),
        };
    }
    if spec.matches(':').count() < 2 {
        return Ok((None, spec));
    }
    let (ip, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(_) => Ok((Some(ip.to_string()), rest)),
        Err(_) => Err(format!(
            "Invalid ip address: {ip} (an IPv6 address goes in brackets: [::1]:8080:80)"
        )),
    }
}

/// Swarm publishes on every address: a host address is dropped, with Docker's warning.
fn warn_host_ip(r: &mut Reader, path: &str, ip: Option<&str>, ports: &[Port]) {
    let Some(ip) = ip.filter(|ip| !ip.is_empty() && *ip != "0.0.0.0") else {
        return;
    };
    for port in ports {
        let proto = match port.protocol {
            Some(Protocol::Udp) => "udp",
            Some(Protocol::Sctp) => "sctp",
            _ => "tcp",
        };
        let published = if port.published == 0 {
            String::new()
        } else {
            port.published.to_string()
        };
        r.warn(
            path,
            format!(
                "ignoring IP-address ({ip}:{published}:{}/{proto}) service will listen on '0.0.0.0'",
                port.target
            ),
        );
    }
}

/// Expands one short-syntax port spec (`[host[-end]:]container[-end][/proto]`).
pub fn parse_short(spec: &str) -> Result<Vec<Port>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [container] => ("", *container),
        [host, container] => (*host, *container),
        _ => {
            return Err(format!(
                "{spec:?} has too many parts: expected [ip:][published:]target[/protocol]"
            ));
        }
    };
    let (container, proto) = match container.split_once('/') {
        None => (container, "tcp"),
        Some((port, "")) => (port, "tcp"),
        Some((port, proto)) => (port, proto),
    };
    if container.is_empty() {
        return Err(format!("{spec:?} has no container port"));
    }
    let protocol = Protocol::parse(&proto.to_ascii_lowercase()).ok_or_else(|| {
        format!("{spec:?} has an unknown protocol {proto:?}: expected tcp, udp or sctp")
    })?;
    let bad_port = |what: &str, text: &str| {
        format!(
            "{spec:?} has an invalid {what} port {text:?}: expected a number from 0 to 65535 or a range such as 8000-8010"
        )
    };
    let (start, end) = parse_range(container).ok_or_else(|| bad_port("container", container))?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(parse_range(host).ok_or_else(|| bad_port("published", host))?)
    };
    if let Some((host_start, host_end)) = host_range
        && end - start != host_end - host_start
        && start != end
    {
        return Err(format!(
            "{spec:?} maps a range of {} container ports to {} published ports: the ranges must be the same size",
            end - start + 1,
            host_end - host_start + 1
        ));
    }
    // Docker orders the container ports by the text "<port>/<proto>".
    let mut targets: Vec<u32> = (start..=end).collect();
    targets.sort_by_key(|t| t.to_string());
    let mut ports = Vec::new();
    for target in targets {
        let published: Vec<u32> = match host_range {
            None => vec![0],
            Some((host_start, host_end)) if start == end => (host_start..=host_end).collect(),
            Some((host_start, _)) => vec![host_start + (target - start)],
        };
        for published in published {
            ports.push(Port {
                target,
                published,
                protocol: Some(protocol),
                mode: Some(PublishMode::Ingress),
            });
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(target: u32, published: u32, protocol: Protocol) -> Port {
        Port {
            target,
            published,
            protocol: Some(protocol),
            mode: Some(PublishMode::Ingress),
        }
    }

    #[test]
    fn short_ports_expand_like_docker() {
        assert_eq!(parse_short("80"), Ok(vec![ingress(80, 0, Protocol::Tcp)]));
        assert_eq!(
            parse_short("8080:80"),
            Ok(vec![ingress(80, 8080, Protocol::Tcp)])
        );
        assert_eq!(
            parse_short("53:53/UDP"),
            Ok(vec![ingress(53, 53, Protocol::Udp)])
        );
        assert_eq!(parse_short("80/"), Ok(vec![ingress(80, 0, Protocol::Tcp)]));
        // An empty published part means "let Swarm choose", as in Docker.
        assert_eq!(parse_short(":80"), Ok(vec![ingress(80, 0, Protocol::Tcp)]));
        assert_eq!(
            parse_short("9000-9001:8000-8001/sctp"),
            Ok(vec![
                ingress(8000, 9000, Protocol::Sctp),
                ingress(8001, 9001, Protocol::Sctp)
            ])
        );
    }

    #[test]
    fn container_ranges_are_ordered_as_text() {
        let targets: Vec<u32> = parse_short("8-10")
            .unwrap()
            .iter()
            .map(|p| p.target)
            .collect();
        assert_eq!(targets, [10, 8, 9]);
    }

    #[test]
    fn a_host_range_publishes_a_single_port_many_times() {
        assert_eq!(
            parse_short("8000-8002:80"),
            Ok(vec![
                ingress(80, 8000, Protocol::Tcp),
                ingress(80, 8001, Protocol::Tcp),
                ingress(80, 8002, Protocol::Tcp)
            ])
        );
    }

    #[test]
    fn a_host_address_is_split_off_and_checked() {
        assert_eq!(
            split_host_ip("127.0.0.1:8080:80"),
            Ok((Some("127.0.0.1".to_string()), "8080:80"))
        );
        assert_eq!(
            split_host_ip("[::1]:8080:80/udp"),
            Ok((Some("::1".to_string()), "8080:80/udp"))
        );
        assert_eq!(split_host_ip("8080:80"), Ok((None, "8080:80")));
        assert!(split_host_ip("999.1.1.1:80:80").is_err());
        assert!(split_host_ip("::1:80:80").is_err());
    }

    #[test]
    fn malformed_short_ports_are_refused() {
        for spec in [
            "",
            "80:",
            "x",
            "80/icmp",
            "70000",
            "9-8",
            "1-2:3-5",
            "-80",
            "8000-8001-8002",
        ] {
            assert!(parse_short(spec).is_err(), "{spec:?} should be refused");
        }
    }
}
