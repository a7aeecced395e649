//! `env_file`: environment variables read from files, as `docker stack deploy` reads them.
//!
//! Each file holds `KEY=value` lines; blank lines and lines starting with `#` are
//! skipped, leading whitespace is dropped and the rest of the line kept as written (no
//! quotes are removed). A line with a name and no `=` takes its value from the deploying
//! shell in Docker and is left out when the shell has none; mlmodel has no shell
//! environment, so it is always left out. Later files override earlier ones, and
//! `environment` overrides them all. Files are read relative to the templates directory.

use super::objects::Files;
use crate::desired::compose::{ComposeError, Service};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// `service` with its `env_file` entries merged under its `environment`.
pub fn merged<'a>(
    key: &str,
    service: &'a Service,
    files: &dyn Files,
    errors: &mut Vec<ComposeError>,
) -> Cow<'a, Service> {
    if service.env_file.is_empty() {
        return Cow::Borrowed(service);
    }
    let mut environment = BTreeMap::new();
    for (i, file) in service.env_file.iter().enumerate() {
        let path = format!("services.{key}.env_file[{i}]");
        let parsed = files.read(file).and_then(|(data, _)| {
            parse(&data).map_err(|e| format!("invalid env file {file:?}: {e}"))
        });
        match parsed {
            Ok(vars) => environment.extend(vars.into_iter().map(|(k, v)| (k, Some(v)))),
            Err(message) => errors.push(ComposeError { path, message }),
        }
    }
    environment.extend(service.environment.clone());
    Cow::Owned(Service {
        environment,
        ..service.clone()
    })
}

/// The `KEY=value` pairs of an env file, in order.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("invalid UTF-8: {e}"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        if name.is_empty() {
            return Err(format!("no variable name on line {}: {line:?}", n + 1));
        }
        if name.contains([' ', '\t']) {
            return Err(format!(
                "variable {name:?} contains whitespaces (line {})",
                n + 1
            ));
        }
        if let Some(value) = value {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_docker_reads_them() {
        let vars = parse(
            "\u{feff}# comment\n\n  A=1\nB= spaced value  \nC=x=y\nBARE\nA=2\nD=\n".as_bytes(),
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("A", "1"),
                ("B", " spaced value  "),
                ("C", "x=y"),
                ("A", "2"),
                ("D", "")
            ]
        );
        assert!(
            parse(b"=1\n")
                .unwrap_err()
                .contains("no variable name on line 1")
        );
        assert!(parse(b"A B=1\n").unwrap_err().contains("whitespaces"));
        assert!(parse(&[0xff, b'\n']).unwrap_err().contains("UTF-8"));
    }
}
