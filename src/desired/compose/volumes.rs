//! Compose `volumes`: a service's mounts (short syntax `source:target:options` and the
//! long mapping) and the stack's top-level named volumes.
//!
//! The short syntax is split the way Docker's `ParseVolume` splits it: a colon
//! separates fields unless what precedes it is a single letter (a Windows drive); one
//! field is an anonymous volume's target; the options are `ro`, `rw`, `nocopy` and a
//! bind propagation, anything else being ignored as Docker ignores it. A source that
//! starts with `.`, `/` or `~` is a bind mount, any other a named volume.
//!
//! Bind sources must be absolute here: `docker stack deploy` resolves a relative one
//! against the compose file's directory, and a rendered stack has none.

use super::reader::{Reader, child};
use super::{Version, read_labels, requires};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// What a mount is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MountKind {
    /// A named or anonymous volume.
    #[default]
    Volume,
    /// A path of the node.
    Bind,
    /// A tmpfs in memory.
    Tmpfs,
    /// A Windows named pipe.
    Npipe,
}

/// One entry of a service's `volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceVolume {
    /// The mount type.
    pub kind: MountKind,
    /// The volume key, the node path, or empty (anonymous volume, tmpfs).
    pub source: String,
    /// The path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// `consistency` (macOS only; passed through as Docker passes it).
    pub consistency: Option<String>,
    /// `bind.propagation`, if a bind section (or a short-syntax propagation) was given.
    pub bind: Option<Option<String>>,
    /// `volume.nocopy`, if a volume section (or the short `nocopy`) was given.
    pub volume: Option<Option<bool>>,
    /// `tmpfs.size` in bytes, if a tmpfs section was given.
    pub tmpfs: Option<Option<i64>>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    /// The Docker name (`name:`, or an external volume's name); `<stack>_<key>` if none.
    pub name: Option<String>,
    /// Volume driver.
    pub driver: Option<String>,
    /// Driver options; `Some` when the key is present, even empty.
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// The volume exists already; it is neither named after the stack nor labelled.
    pub external: bool,
    /// Labels of the volume.
    pub labels: BTreeMap<String, String>,
}

const PROPAGATIONS: [&str; 6] = [
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

/// Reads a service's `volumes` list.
pub fn read_service_volumes(
    r: &mut Reader,
    version: Version,
    path: &str,
    value: &Value,
) -> Vec<ServiceVolume> {
    let Some(items) = r.list(path, value) else {
        return Vec::new();
    };
    let mut volumes = Vec::new();
    for (i, entry) in items.iter().enumerate() {
        let p = super::reader::item(path, i);
        let volume = match entry {
            Value::String(_) => r
                .string(&p, entry)
                .and_then(|spec| match parse_short(&spec) {
                    Ok(volume) => check_options(r, &p, &volume).then_some(volume),
                    Err(message) => {
                        r.error(&p, format!("invalid spec: {spec}: {message}"));
                        None
                    }
                }),
            Value::Mapping(_) if requires(r, version, &p, 2) => read_long(r, &p, entry),
            Value::Mapping(_) => None,
            _ => {
                r.expected(&p, "a string such as \"data:/data\" or a mapping", entry);
                None
            }
        };
        if let Some(volume) = volume {
            check_bind_source(r, &p, &volume);
            volumes.push(volume);
        }
    }
    volumes
}

/// A bind mount's source must be a whole path of the node.
fn check_bind_source(r: &mut Reader, path: &str, volume: &ServiceVolume) {
    if volume.kind != MountKind::Bind || volume.source.starts_with('/') {
        return;
    }
    if volume.source.is_empty() {
        r.error(
            path,
            "invalid mount config for type \"bind\": field Source must not be empty",
        );
    } else {
        r.error(
            path,
            format!(
                "bind source {:?} is not an absolute path: docker stack deploy would resolve it against the compose file's directory, which a rendered stack does not have; write the path on the node",
                volume.source
            ),
        );
    }
}

/// Splits a short-syntax volume as Docker's `ParseVolume` does.
pub fn parse_short(spec: &str) -> Result<ServiceVolume, String> {
    if spec.is_empty() {
        return Err("invalid empty volume spec".to_string());
    }
    let mut volume = ServiceVolume::default();
    if spec.chars().count() <= 2 {
        volume.target = spec.to_string();
        return Ok(volume);
    }
    let mut fields: Vec<String> = Vec::new();
    let mut buffer = String::new();
    for c in spec.chars() {
        let single_letter = buffer.len() == 1 && buffer.chars().all(|b| b.is_ascii_alphabetic());
        if c == ':' && !single_letter {
            if buffer.is_empty() {
                return Err("empty section between colons".to_string());
            }
            fields.push(std::mem::take(&mut buffer));
        } else {
            buffer.push(c);
        }
    }
    if buffer.is_empty() {
        return Err("empty section between colons".to_string());
    }
    fields.push(buffer);
    match fields.as_slice() {
        [target] => volume.target = target.clone(),
        [source, target] => {
            volume.source = source.clone();
            volume.target = target.clone();
        }
        [source, target, options] => {
            volume.source = source.clone();
            volume.target = target.clone();
            for option in options.split(',') {
                match option {
                    "ro" => volume.read_only = true,
                    "rw" => volume.read_only = false,
                    "nocopy" => volume.volume = Some(Some(true)),
                    p if PROPAGATIONS.contains(&p) => volume.bind = Some(Some(p.to_string())),
                    // Docker ignores the rest (z, Z, cached, delegated, ...).
                    _ => {}
                }
            }
        }
        _ => return Err("too many colons".to_string()),
    }
    volume.kind = if volume.source.is_empty() {
        MountKind::Volume
    } else if is_file_path(&volume.source) {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    Ok(volume)
}

/// Docker's `isFilePath`: relative or absolute paths, home, UNC and drive paths.
fn is_file_path(source: &str) -> bool {
    let bytes = source.as_bytes();
    matches!(bytes.first(), Some(b'.' | b'/' | b'~'))
        || source.starts_with("\\\\")
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
}

fn read_long(r: &mut Reader, path: &str, value: &Value) -> Option<ServiceVolume> {
    let mut volume = ServiceVolume::default();
    let mut kind = None;
    for (key, v) in r.mapping(path, value)? {
        let p = child(path, &key);
        match key.as_str() {
            "type" => {
                kind = r.string(&p, v).and_then(|t| match t.as_str() {
                    "volume" => Some(MountKind::Volume),
                    "bind" => Some(MountKind::Bind),
                    "tmpfs" => Some(MountKind::Tmpfs),
                    "npipe" => Some(MountKind::Npipe),
                    _ => {
                        r.error(&p, "volume type must be volume, bind, tmpfs or npipe");
                        None
                    }
                })
            }
            "source" => volume.source = r.string(&p, v).unwrap_or_default(),
            "target" => volume.target = r.string(&p, v).unwrap_or_default(),
            "read_only" => volume.read_only = r.bool(&p, v).unwrap_or(false),
            "consistency" => volume.consistency = r.string(&p, v),
            "bind" => volume.bind = Some(read_section(r, &p, v, "propagation", read_propagation)),
            "volume" => {
                volume.volume = Some(read_section(r, &p, v, "nocopy", |r, p, v| r.bool(p, v)))
            }
            "tmpfs" => {
                volume.tmpfs = Some(read_section(r, &p, v, "size", |r, p, v| {
                    r.u64(p, v).map(|n| n as i64)
                }))
            }
            _ => r.error(&p, "not supported"),
        }
    }
    match kind {
        Some(kind) => volume.kind = kind,
        None => {
            if !value.as_mapping().is_some_and(|m| m.contains_key("type")) {
                r.error(
                    &child(path, "type"),
                    "required: volume, bind, tmpfs or npipe",
                );
            }
            return None;
        }
    }
    check_options(r, path, &volume).then_some(volume)
}

/// Reads a section holding one optional field.
fn read_section<T>(
    r: &mut Reader,
    path: &str,
    value: &Value,
    field: &str,
    read: impl Fn(&mut Reader, &str, &Value) -> Option<T>,
) -> Option<T> {
    let mut found = None;
    for (key, v) in r.mapping_or_null(path, value).unwrap_or_default() {
        let p = child(path, &key);
        if key == field {
            found = read(r, &p, v);
        } else {
            r.error(&p, "not supported");
        }
    }
    found
}

fn read_propagation(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.string(path, value)?;
    if PROPAGATIONS.contains(&text.as_str()) {
        Some(text)
    } else {
        r.error(
            path,
            format!(
                "expected one of {}, found {text:?}",
                PROPAGATIONS.join(", ")
            ),
        );
        None
    }
}

/// Docker's rules of which option sections go with which mount type.
fn check_options(r: &mut Reader, path: &str, volume: &ServiceVolume) -> bool {
    let kind = match volume.kind {
        MountKind::Volume => "volume",
        MountKind::Bind => "bind",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Npipe => "npipe",
    };
    let mut ok = true;
    let mut refuse = |section: &str| {
        r.error(
            path,
            format!("{section} options are incompatible with type {kind}"),
        );
        ok = false;
    };
    let (bind, vol, tmpfs) = (
        volume.bind.is_some(),
        volume.volume.is_some(),
        volume.tmpfs.is_some(),
    );
    match volume.kind {
        MountKind::Volume => {
            if tmpfs {
                refuse("tmpfs");
            }
            if bind {
                refuse("bind");
            }
        }
        MountKind::Bind | MountKind::Npipe => {
            if vol {
                refuse("volume");
            }
            if tmpfs {
                refuse("tmpfs");
            }
        }
        MountKind::Tmpfs => {
            if bind {
                refuse("bind");
            }
            if vol {
                refuse("volume");
            }
        }
    }
    if volume.kind == MountKind::Tmpfs && !volume.source.is_empty() {
        r.error(path, "invalid tmpfs source, source must be empty");
        ok = false;
    }
    if volume.kind == MountKind::Npipe && volume.source.is_empty() {
        r.error(path, "invalid npipe source, source cannot be empty");
        ok = false;
    }
    if volume.target.is_empty() {
        r.error(
            &child(path, "target"),
            "required: the path in the container",
        );
        ok = false;
    }
    ok
}

/// Reads the top-level `volumes`.
pub fn read_volumes(r: &mut Reader, version: Version, value: &Value) -> BTreeMap<String, Volume> {
    let mut volumes = BTreeMap::new();
    for (key, v) in r.mapping_or_null("volumes", value).unwrap_or_default() {
        let path = child("volumes", &key);
        if let Some(volume) = read_volume(r, version, &path, v) {
            volumes.insert(key, volume);
        }
    }
    volumes
}

fn read_volume(r: &mut Reader, version: Version, path: &str, value: &Value) -> Option<Volume> {
    let mut volume = Volume::default();
    let mut legacy_name = None;
    for (key, v) in r.mapping_or_null(path, value)? {
        let p = child(path, &key);
        match key.as_str() {
            "name" => {
                if requires(r, version, &p, 4) {
                    volume.name = r.string(&p, v);
                }
            }
            "driver" => volume.driver = r.string(&p, v),
            "driver_opts" => volume.driver_opts = Some(read_labels(r, &p, v)),
            "labels" => volume.labels = read_labels(r, &p, v),
            "external" => (volume.external, legacy_name) = super::read_external(r, &p, v),
            _ if key.starts_with("x-") => {
                requires(r, version, &p, 7);
            }
            _ => r.error(&p, "not supported"),
        }
    }
    if let Some((name, name_path)) = legacy_name {
        if volume.name.is_some() {
            let key = path.trim_start_matches("volumes.");
            r.error(
                &name_path,
                format!("volume {key}: volume.external.name and volume.name conflict; only use volume.name"),
            );
        } else {
            volume.name = Some(name);
        }
    }
    if volume.external {
        let key = path.trim_start_matches("volumes.");
        for (set, what) in [
            (volume.driver.is_some(), "driver"),
            (volume.driver_opts.is_some(), "driver_opts"),
            (!volume.labels.is_empty(), "labels"),
        ] {
            if set {
                r.error(
                    &child(path, "external"),
                    format!("conflicting parameters \"external\" and \"{what}\" specified for volume \"{key}\""),
                );
            }
        }
        volume.name.get_or_insert_with(|| key.to_string());
    }
    Some(volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(spec: &str) -> ServiceVolume {
        parse_short(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn short_syntax_is_split_as_docker_splits_it() {
        let named = short("data:/var/lib/data:ro,nocopy");
        assert_eq!(
            (named.kind, named.source.as_str(), named.target.as_str()),
            (MountKind::Volume, "data", "/var/lib/data")
        );
        assert!(named.read_only);
        assert_eq!(named.volume, Some(Some(true)));
        let bind = short("/srv/models:/models:rshared");
        assert_eq!(bind.kind, MountKind::Bind);
        assert_eq!(bind.bind, Some(Some("rshared".into())));
        let anonymous = short("/cache");
        assert_eq!(
            (anonymous.kind, anonymous.source.as_str()),
            (MountKind::Volume, "")
        );
        assert_eq!(short("c:\\data:/data").source, "c:\\data");
        assert_eq!(short("./rel:/x").kind, MountKind::Bind);
        assert!(!short("ab:/b:z").read_only, "unknown options are ignored");
    }

    #[test]
    fn malformed_short_volumes_are_refused_with_dockers_words() {
        assert_eq!(parse_short("").unwrap_err(), "invalid empty volume spec");
        assert_eq!(
            parse_short("ab::/b").unwrap_err(),
            "empty section between colons"
        );
        assert_eq!(parse_short("ab:/b:ro:x").unwrap_err(), "too many colons");
    }
}
