//! Registry credentials, found the way the docker CLI finds them, and the
//! `X-Registry-Auth` header they make (what `docker stack deploy --with-registry-auth`
//! sends, so that every node can pull a private image).
//!
//! Credentials live in `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`):
//! `auths` entries (`auth` is base64 of `user:password`), a `credsStore` for every
//! registry, or `credHelpers` per registry, both run as `docker-credential-<helper> get`.
//! The file is read on every write to Docker, so a `docker login` takes effect without a
//! restart. Credentials stay inside the adapter: they are never logged, stored or
//! answered by the API.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The key Docker Hub's credentials are stored under, as the CLI stores them.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read; the registry's name, never a secret, is in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The config file exists but does not read.
    #[error("cannot read the registry credentials in {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A credential helper failed.
    #[error("the credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry asked for.
        registry: String,
        /// What it said (its stderr, or why it did not run).
        message: String,
    },
}

/// What is sent to the engine for one registry (Docker's `AuthConfig`).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// User name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Password or token.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// The registry, as the credentials are stored under it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    /// An identity token (a helper's `<token>` user).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// The `X-Registry-Auth` value: JSON in URL-safe base64, as the engine decodes it.
    pub fn header(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }
}

/// The key an image's credentials are stored under: Docker Hub's URL for an image
/// without a registry (or on `docker.io`), else the registry's host and port.
pub fn registry_key(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            if first == "docker.io" || first == "index.docker.io" {
                DOCKER_HUB.to_string()
            } else {
                first.to_string()
            }
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// The credentials store of the docker CLI's config file.
#[derive(Debug, Clone)]
pub struct Credentials {
    config: PathBuf,
}

/// The parts of `config.json` that hold credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

impl Credentials {
    /// The store the docker CLI would use: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        Self::at(dir.join("config.json"))
    }

    /// The store in the config file `config`.
    pub fn at(config: PathBuf) -> Self {
        Self { config }
    }

    /// The credentials for `image`'s registry, if there are any.
    pub fn for_image(&self, image: &str) -> Result<Option<AuthConfig>, CredentialsError> {
        let key = registry_key(image);
        let file = self.read()?;
        if let Some(helper) = file.cred_helpers.get(&key).or(file.creds_store.as_ref()) {
            return run_helper(helper, &key);
        }
        let entry = file.auths.get(&key).or_else(|| {
            // As the CLI: an entry written as a URL (`https://host/v2/`) matches its host.
            file.auths
                .iter()
                .find(|(k, _)| hostname_of(k) == key)
                .map(|(_, v)| v)
        });
        entry.map(|e| self.decode(&key, e)).transpose()
    }

    fn read(&self) -> Result<ConfigFile, CredentialsError> {
        let text = match std::fs::read_to_string(&self.config) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
            Err(e) => return Err(self.config_error(e.to_string())),
        };
        serde_json::from_str(&text).map_err(|e| self.config_error(e.to_string()))
    }

    fn decode(&self, key: &str, entry: &AuthEntry) -> Result<AuthConfig, CredentialsError> {
        let mut config = AuthConfig {
            username: entry.username.clone().unwrap_or_default(),
            password: entry.password.clone().unwrap_or_default(),
            serveraddress: key.to_string(),
            identitytoken: entry.identitytoken.clone().unwrap_or_default(),
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| {
                    text.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                });
            let Some((username, password)) = decoded else {
                return Err(
                    self.config_error(format!("the auth of {key} is not base64 of user:password"))
                );
            };
            config.username = username;
            config.password = password;
        }
        Ok(config)
    }

    fn config_error(&self, message: String) -> CredentialsError {
        CredentialsError::Config {
            path: self.config.display().to_string(),
            message,
        }
    }
}

/// `https://host:5000/v2/` → `host:5000`, as the CLI's `ConvertToHostname`.
fn hostname_of(url: &str) -> &str {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// Runs `docker-credential-<helper> get` for `registry`; no credentials is `None`.
fn run_helper(helper: &str, registry: &str) -> Result<Option<AuthConfig>, CredentialsError> {
    let failed = |message: String| CredentialsError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // Helpers answer "credentials not found in native keychain" for an unknown server.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(failed(if stderr.is_empty() { said } else { stderr }));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|e| failed(e.to_string()))?;
    let mut config = AuthConfig {
        serveraddress: registry.to_string(),
        ..Default::default()
    };
    if answer.username == "<token>" {
        config.identitytoken = answer.secret;
    } else {
        config.username = answer.username;
        config.password = answer.secret;
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_read_from_the_image_as_docker_reads_it() {
        assert_eq!(registry_key("nginx"), DOCKER_HUB);
        assert_eq!(registry_key("team/model:1"), DOCKER_HUB);
        assert_eq!(registry_key("docker.io/team/model:1"), DOCKER_HUB);
        assert_eq!(
            registry_key("127.0.0.1:5000/private/model:1"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_key("localhost/model"), "localhost");
        assert_eq!(registry_key("ghcr.io/org/model@sha256:abc"), "ghcr.io");
    }

    #[test]
    fn auths_entries_are_decoded_and_matched_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("ml:s3cr?t>");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"https://reg.example:5000/v2/": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        let store = Credentials::at(path);
        let found = store.for_image("reg.example:5000/m:1").unwrap().unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("ml", "s3cr?t>")
        );
        assert_eq!(store.for_image("other.example/m:1").unwrap(), None);
        let header = found.header();
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(header)
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["password"], "s3cr?t>");
        assert_eq!(value["serveraddress"], "reg.example:5000");
        assert!(
            !format!("{found:?}").contains("s3cr"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn a_missing_file_means_no_credentials_and_a_broken_one_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Credentials::at(dir.path().join("config.json"));
        assert_eq!(missing.for_image("reg.example/m").unwrap(), None);
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let error = missing.for_image("reg.example/m").unwrap_err().to_string();
        assert!(error.contains("config.json"), "{error}");
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credHelpers": {"reg.example": "mlmodel-absent"}}"#,
        )
        .unwrap();
        let error = Credentials::at(path)
            .for_image("reg.example/m")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("docker-credential-mlmodel-absent"),
            "{error}"
        );
    }
}
