//! Docker's name grammars: image references, service names and host names.
//!
//! These decide whether a manifest's strings can reach Docker at all. Each check follows
//! the grammar Docker itself enforces (distribution's reference grammar, swarmkit's
//! service-name rule, the domains a proxy routes on) so that `mlmodel validate` rejects exactly what
//! a deploy would later fail on, with a message that says what is expected.

use regex::Regex;
use std::sync::LazyLock;

/// Why a name was rejected; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not an image reference.
    #[error(
        "{0:?} is not an image reference: expected [registry[:port]/]repository[:tag][@digest] with a lowercase repository, such as registry.example.com/team/model:1.2"
    )]
    Image(String),
    /// An image repository name longer than Docker's 255 characters.
    #[error("{0:?} is too long: image repository names are limited to 255 characters")]
    ImageTooLong(String),
    /// Not a service-name-safe identifier.
    #[error(
        "{0:?} is not a valid name: expected letters, digits, '-' and '_', starting and ending with a letter or digit, such as carls_model"
    )]
    ServiceName(String),
    /// A name whose full Docker service name would pass Docker's 63 characters.
    #[error(
        "{name:?} is too long: the service name {full:?} has {len} characters and Docker allows 63; use at most {max} characters"
    )]
    ServiceNameTooLong {
        /// The name as given.
        name: String,
        /// The full service name it would produce.
        full: String,
        /// Length of `full`.
        len: usize,
        /// The longest name that would fit.
        max: usize,
    },
    /// Not a domain a proxy can route on.
    #[error(
        "{0:?} is not a domain: expected dot-separated labels of letters, digits, '-' and '_', each 1 to 63 characters and not starting or ending with '-', at most 253 characters in all, such as model.example.com or carls_model.com"
    )]
    Hostname(String),
    /// A model name the API keeps for its own endpoints.
    #[error(
        "{0:?} is reserved for the API's own endpoint /{0}: choose another name (reserved: healthz, health, ping, metrics, version, ui, events)"
    )]
    Reserved(String),
    /// A `--domain-format` without the `{model_name}` placeholder.
    #[error(
        "{0:?} has no {{model_name}} placeholder: expected a domain with {{model_name}} where the model's name goes, such as {{model_name}}.models.example.com or {{model_name}}_localhost"
    )]
    DomainFormatPlaceholder(String),
    /// A `--domain-format` that does not make a domain.
    #[error("{format:?} does not make a valid domain: {reason}")]
    DomainFormat {
        /// The format as given.
        format: String,
        /// Why the domain it makes is refused.
        reason: Box<NameError>,
    },
}

/// An image reference with its tag: `:latest` added when it has none (what the tag
/// resolves to), as `docker stack deploy` writes a reference it pins.
pub fn with_tag(image: &str) -> String {
    let last_part = image.rsplit('/').next().unwrap_or(image);
    if last_part.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// An image reference as Docker's CLI shows it in `docker service ls` and `docker service
/// ps`: a tagged reference without its digest, an untagged one with `:latest` (what the
/// tag resolves to), and Docker Hub's `docker.io/` and `library/` prefixes left out.
pub fn display_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_part = name.rsplit('/').next().unwrap_or(name);
    let tagged = last_part.contains(':');
    let familiar = name.strip_prefix("docker.io/").unwrap_or(name);
    let familiar = match familiar.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest,
        _ => familiar,
    };
    match (tagged, digest) {
        (true, _) => familiar.to_string(),
        (false, None) if !familiar.is_empty() => format!("{familiar}:latest"),
        (false, None) => String::new(),
        (false, Some(digest)) => format!("{familiar}@{digest}"),
    }
}

/// Model names the API keeps for its own endpoints (`GET /ping` must not be a model).
pub const RESERVED_MODEL_NAMES: &[&str] = &[
    "healthz", "health", "ping", "metrics", "version", "ui", "events",
];

/// Checks that `name` is not one the API's own endpoints use.
pub fn check_not_reserved(name: &str) -> Result<(), NameError> {
    if RESERVED_MODEL_NAMES.contains(&name) {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(())
}

/// The placeholder a domain format replaces with the model's name.
pub const MODEL_NAME_PLACEHOLDER: &str = "{model_name}";

/// A checked `--domain-format`: the domain a model gets when it declares none, such as
/// `{model_name}.models.example.com` (the original service's `MLMODEL_ENDPOINT_DOMAIN_FORMAT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFormat(String);

impl DomainFormat {
    /// Checks that `format` has the placeholder and makes a valid domain for a short name.
    pub fn parse(format: &str) -> Result<Self, NameError> {
        if !format.contains(MODEL_NAME_PLACEHOLDER) {
            return Err(NameError::DomainFormatPlaceholder(format.to_string()));
        }
        let format = Self(format.to_string());
        validate_hostname(&format.domain_for("m")).map_err(|reason| NameError::DomainFormat {
            format: format.0.clone(),
            reason: Box::new(reason),
        })?;
        Ok(format)
    }

    /// The domain of model `name`.
    pub fn domain_for(&self, name: &str) -> String {
        self.0.replace(MODEL_NAME_PLACEHOLDER, name)
    }

    /// The format as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Docker's limit on a service name: a DNS label.
pub const MAX_SERVICE_NAME: usize = 63;

static IMAGE_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let alnum = "[a-zA-Z0-9]";
    let domain_component = format!("(?:{alnum}|{alnum}[a-zA-Z0-9-]*{alnum})");
    let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
    let host = format!("(?:{domain_component}(?:\\.{domain_component})*|{ipv6})");
    let domain = format!("{host}(?::[0-9]+)?");
    let path_component = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
    let path = format!("{path_component}(?:/{path_component})*");
    // Docker's grammar writes `[\w][\w.-]{0,127}` with Go's ASCII-only `\w`. Spelled out:
    // a Unicode `\w` would also accept tags Docker refuses, and its 127 repeats compile
    // to megabytes of automaton that every process would keep resident.
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    // The regex is assembled from fixed pieces above, so it always compiles.
    Regex::new(&format!(
        "^(?P<name>(?:{domain}/)?{path})(?::{tag})?(?:@{digest})?$"
    ))
    .expect("image reference grammar is a valid regex")
});

static SERVICE_NAME: LazyLock<Regex> = LazyLock::new(|| {
    // swarmkit's rule for service names; fixed pattern, always compiles.
    Regex::new("^[a-zA-Z0-9](?:[-_]*[a-zA-Z0-9]+)*$")
        .expect("service name grammar is a valid regex")
});

/// Checks an image reference (`[registry[:port]/]path[:tag][@digest]`).
pub fn validate_image(image: &str) -> Result<(), NameError> {
    let captures = IMAGE_REFERENCE
        .captures(image)
        .ok_or_else(|| NameError::Image(image.to_string()))?;
    if captures.name("name").map_or(0, |m| m.as_str().len()) > 255 {
        return Err(NameError::ImageTooLong(image.to_string()));
    }
    Ok(())
}

/// Checks that `name` is a service-name-safe identifier (no length check).
pub fn validate_identifier(name: &str) -> Result<(), NameError> {
    if SERVICE_NAME.is_match(name) {
        Ok(())
    } else {
        Err(NameError::ServiceName(name.to_string()))
    }
}

/// Checks a model name: an identifier whose full service name fits Docker's limit.
///
/// `prefix` and `suffix` are what stands around the name in the full service name, e.g.
/// `mlmodel_` and `_mlmodel` for `mlmodel_<name>_mlmodel`.
pub fn validate_model_name(name: &str, prefix: &str, suffix: &str) -> Result<(), NameError> {
    validate_identifier(name)?;
    let full = format!("{prefix}{name}{suffix}");
    if full.len() > MAX_SERVICE_NAME {
        return Err(NameError::ServiceNameTooLong {
            name: name.to_string(),
            len: full.len(),
            full,
            max: MAX_SERVICE_NAME.saturating_sub(prefix.len() + suffix.len()),
        });
    }
    Ok(())
}

/// Checks a domain the proxy routes on: dot-separated labels (no trailing dot, at most 253
/// characters).
///
/// `_` is allowed, as DNS and Traefik allow it and as the original service's own example
/// (`carls_model.com`) and default format (`{model_name}_localhost`) use it. What would
/// break a `Host(...)` router rule or the rendered YAML (spaces, quotes, backticks, `/`,
/// `:`) and empty labels are refused.
pub fn validate_hostname(host: &str) -> Result<(), NameError> {
    let bad = || NameError::Hostname(host.to_string());
    if host.is_empty() || host.len() > 253 {
        return Err(bad());
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_docker_accepts_pass() {
        for image in [
            "busybox",
            "qarlm/static-http-response-server",
            "qarlm/static-http-response-server:latest",
            "mlmodel-test/static-http:1",
            "registry.example.com/team/model:1.2.3",
            "localhost:5000/model",
            "Registry.Example.com:443/a/b_c__d--e.f:v1_2-3.4",
            "[::1]:5000/model:tag",
            "model@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "model:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(validate_image(image), Ok(()), "{image}");
        }
    }

    #[test]
    fn image_references_docker_refuses_fail() {
        for image in [
            "",
            "team/Model",
            "model:",
            "model:-tag",
            ":tag",
            "model@sha256:short",
            "a//b",
            "-model",
            "model-",
            "model name",
            "model\nname",
            "model:tag:tag",
            "model:t\u{e4}g",
            "/model",
            "model/",
            "https://registry/model",
        ] {
            assert!(
                matches!(validate_image(image), Err(NameError::Image(_))),
                "{image:?} should be rejected"
            );
        }
        let long = format!("a/{}", "b".repeat(254));
        assert!(matches!(
            validate_image(&long),
            Err(NameError::ImageTooLong(_))
        ));
    }

    #[test]
    fn model_names_are_swarm_service_names() {
        for name in ["carls_model", "a", "model-1", "A9", "a__b--c"] {
            assert_eq!(
                validate_model_name(name, "mlmodel_", "_mlmodel"),
                Ok(()),
                "{name}"
            );
        }
        for name in ["", "_a", "a_", "-a", "a.b", "a b", "ümlaut", "a/b", "../x"] {
            assert!(
                matches!(
                    validate_model_name(name, "", ""),
                    Err(NameError::ServiceName(_))
                ),
                "{name:?} should be rejected"
            );
        }
    }

    #[test]
    fn model_names_must_leave_room_for_the_full_service_name() {
        let fits = "a".repeat(63 - "mlmodel_".len() - "_mlmodel".len());
        assert_eq!(validate_model_name(&fits, "mlmodel_", "_mlmodel"), Ok(()));
        let too_long = format!("{fits}b");
        let err = validate_model_name(&too_long, "mlmodel_", "_mlmodel").unwrap_err();
        assert!(matches!(
            err,
            NameError::ServiceNameTooLong {
                len: 64,
                max: 47,
                ..
            }
        ));
        assert!(err.to_string().contains("at most 47 characters"), "{err}");
    }

    #[test]
    fn images_are_shown_as_docker_shows_them() {
        for (image, shown) in [
            (
                "qarlm/static-http-response-server",
                "qarlm/static-http-response-server:latest",
            ),
            (
                "qarlm/static-http-response-server:1",
                "qarlm/static-http-response-server:1",
            ),
            ("docker.io/library/busybox:1.36", "busybox:1.36"),
            ("localhost:5000/model", "localhost:5000/model:latest"),
            ("localhost:5000/model:2", "localhost:5000/model:2"),
            ("model:2@sha256:abc", "model:2"),
            ("model@sha256:abc", "model@sha256:abc"),
            ("", ""),
        ] {
            assert_eq!(display_image(image), shown, "{image}");
        }
    }

    #[test]
    fn a_domain_format_fills_in_the_model_name() {
        let format = DomainFormat::parse("{model_name}_localhost").unwrap();
        assert_eq!(format.domain_for("carls_model"), "carls_model_localhost");
        let format = DomainFormat::parse("{model_name}.models.example.com").unwrap();
        assert_eq!(format.domain_for("a"), "a.models.example.com");
    }

    #[test]
    fn a_domain_format_without_placeholder_or_making_no_domain_is_refused() {
        assert_eq!(
            DomainFormat::parse("models.example.com"),
            Err(NameError::DomainFormatPlaceholder(
                "models.example.com".into()
            ))
        );
        let err = DomainFormat::parse("{model_name} .com").unwrap_err();
        assert!(
            err.to_string().contains("does not make a valid domain"),
            "{err}"
        );
    }

    #[test]
    fn domains_are_labels_of_letters_digits_dashes_and_underscores() {
        for host in [
            "carls-model.com",
            "carls_model.com",
            "carls_model_localhost",
            "_dmarc.example.com",
            "a",
            "1.example",
            "x.y.z.example.org",
            "UPPER.example",
        ] {
            assert_eq!(validate_hostname(host), Ok(()), "{host}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = vec!["abcdefghi"; 26].join(".");
        for host in [
            "",
            "-a.com",
            "a`b.com",
            "a\"b.com",
            "a'b.com",
            "a-.com",
            "a..com",
            "a.com.",
            ".a.com",
            "a com",
            "a.com/path",
            "a.com:80",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                validate_hostname(host).is_err(),
                "{host:?} should be rejected"
            );
        }
    }
}
