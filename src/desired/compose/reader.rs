//! Reads typed values out of a YAML tree, collecting every error with its path.
//!
//! Each reader returns `None` after recording an error, so a caller can keep walking the
//! document and report every problem in one pass. Strings are un-escaped the way
//! `docker stack deploy` interpolates them, minus the environment: `$$` becomes `$`, and
//! any other `$` is an error (see [`Reader::string`]).

use super::{ComposeError, ComposeWarning};
use serde_yaml::{Mapping, Value};

/// Error message for a `$` that is not part of `$$`.
pub const SUBSTITUTION_UNSUPPORTED: &str =
    "variable substitution is not supported; write $$ for a literal $";

/// Collects errors while typed values are read from a YAML tree.
#[derive(Debug, Default)]
pub struct Reader {
    errors: Vec<ComposeError>,
    warnings: Vec<ComposeWarning>,
}

/// Joins a parent path and a mapping key: `services` + `web` = `services.web`.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a parent path and a list index: `services.web.ports` + 1 = `services.web.ports[1]`.
pub fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Describes a YAML value for an error message: strings quoted, collections by kind.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

impl Reader {
    /// Records an error at `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ComposeError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Records a type error: what was expected and what was found.
    pub fn expected(&mut self, path: &str, what: &str, found: &Value) {
        self.error(path, format!("expected {what}, found {}", describe(found)));
    }

    /// Records a warning at `path`: the value is accepted, but not as written.
    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(ComposeWarning {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The errors collected so far, in the order they were found.
    pub fn into_errors(self) -> Vec<ComposeError> {
        self.errors
    }

    /// The warnings collected so far, in the order they were found.
    pub fn take_warnings(&mut self) -> Vec<ComposeWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Reads a mapping whose keys are all strings, in document order.
    pub fn mapping<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
    ) -> Option<Vec<(String, &'v Value)>> {
        let Value::Mapping(mapping) = value else {
            self.expected(path, "a mapping", value);
            return None;
        };
        Some(self.entries(path, mapping))
    }

    /// Like [`Reader::mapping`], but `null` reads as an empty mapping.
    pub fn mapping_or_null<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
    ) -> Option<Vec<(String, &'v Value)>> {
        match value {
            Value::Null => Some(Vec::new()),
            _ => self.mapping(path, value),
        }
    }

    fn entries<'v>(&mut self, path: &str, mapping: &'v Mapping) -> Vec<(String, &'v Value)> {
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            match key {
                Value::String(key) => entries.push((key.clone(), value)),
                other => self.error(
                    path,
                    format!("expected string keys, found the key {}", describe(other)),
                ),
            }
        }
        entries
    }

    /// Reads a list.
    pub fn list<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v [Value]> {
        match value {
            Value::Sequence(items) => Some(items),
            _ => {
                self.expected(path, "a list", value);
                None
            }
        }
    }

    /// Reads a string and applies compose interpolation without an environment.
    ///
    /// `docker stack deploy` replaces `$VAR`, `${VAR}` and `${VAR:-default}` from the
    /// shell that runs it and turns `$$` into `$`. mlmodel has no such environment on
    /// purpose (the controller's own variables must not leak into workloads), so only the
    /// escape is honoured: a file then means the same to mlmodel and to the CLI.
    pub fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => self.unescape(path, s),
            _ => {
                self.expected(path, "a string", value);
                None
            }
        }
    }

    /// Un-escapes `$$` in a string that came from the document.
    pub fn unescape(&mut self, path: &str, raw: &str) -> Option<String> {
        match unescape_dollars(raw) {
            Some(s) => Some(s),
            None => {
                self.error(path, SUBSTITUTION_UNSUPPORTED);
                None
            }
        }
    }

    /// Reads a list of strings.
    pub fn string_list(&mut self, path: &str, value: &Value) -> Option<Vec<String>> {
        let items = self.list(path, value)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, entry) in items.iter().enumerate() {
            match self.string(&item(path, i), entry) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Reads a YAML boolean (`true`/`false`; YAML 1.1 spellings like `yes` are strings).
    pub fn bool(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.expected(path, "true or false", value);
                None
            }
        }
    }

    /// Reads a non-negative integer that fits the API's signed 64-bit fields.
    pub fn u64(&mut self, path: &str, value: &Value) -> Option<u64> {
        match value {
            Value::Number(n) => match n.as_u64() {
                Some(v) if v <= i64::MAX as u64 => Some(v),
                Some(v) => {
                    self.error(path, format!("expected at most {}, found {v}", i64::MAX));
                    None
                }
                None => {
                    self.expected(path, "a non-negative integer", value);
                    None
                }
            },
            _ => {
                self.expected(path, "a non-negative integer", value);
                None
            }
        }
    }

    /// Reads a non-negative integer no larger than `max`.
    pub fn u64_at_most(&mut self, path: &str, value: &Value, max: u64) -> Option<u64> {
        let n = self.u64(path, value)?;
        if n > max {
            self.error(path, format!("expected at most {max}, found {n}"));
            return None;
        }
        Some(n)
    }

    /// Reads a number, integer or decimal.
    pub fn number(&mut self, path: &str, value: &Value) -> Option<f64> {
        match value {
            Value::Number(n) => n.as_f64(),
            _ => {
                self.expected(path, "a number", value);
                None
            }
        }
    }

    /// Reads a Go duration string (`10s`, `1m30s`) into nanoseconds; negative is refused.
    pub fn duration(&mut self, path: &str, value: &Value) -> Option<i64> {
        let Value::String(_) = value else {
            self.expected(
                path,
                "a duration string such as \"10s\" or \"1m30s\"",
                value,
            );
            return None;
        };
        let text = self.string(path, value)?;
        match crate::desired::units::parse_duration(&text) {
            // parse_duration only succeeds for values that fit Go's int64 nanoseconds.
            Ok(d) => Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// Reads a string or a number as text, the way compose reads mapping values.
    ///
    /// Numbers are printed as Go's `fmt.Sprint` prints them, because that is how
    /// `docker stack deploy` turns `PORT: 8080` into `PORT=8080`. Booleans are refused,
    /// as Docker's schema refuses them.
    pub fn scalar_text(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(_) => self.string(path, value),
            Value::Number(n) => Some(go_number_text(n)),
            Value::Bool(b) => {
                self.error(
                    path,
                    format!("expected a string or a number, found {b}; quote it as \"{b}\""),
                );
                None
            }
            _ => {
                self.expected(path, "a string or a number", value);
                None
            }
        }
    }
}

/// Turns `$$` into `$`; `None` if any other `$` appears.
pub fn unescape_dollars(raw: &str) -> Option<String> {
    if !raw.contains('$') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '$' && chars.next() != Some('$') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Prints a YAML number as Go's `fmt.Sprint` prints the value yaml.v3 decodes it to.
fn go_number_text(n: &serde_yaml::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    go_float_text(n.as_f64().unwrap_or(f64::NAN))
}

/// Formats a float like Go's `%v`: shortest digits, exponent form below 1e-4 or from 1e6.
///
/// Go's `%v` is `strconv.FormatFloat(f, 'g', -1, 64)`: with the shortest digits it
/// switches to exponent form when the decimal exponent is below -4 or at least 6, and
/// writes the exponent with a sign and at least two digits (`1e+06`, `1e-05`).
pub fn go_float_text(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e3".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}{rest}e{esign}{:02}", exp.abs());
    }
    let point_at = exp + 1; // digits before the decimal point
    let text = if point_at <= 0 {
        format!("0.{}{digits}", "0".repeat(point_at.unsigned_abs() as usize))
    } else {
        let point_at = point_at as usize;
        if digits.len() <= point_at {
            format!("{digits}{}", "0".repeat(point_at - digits.len()))
        } else {
            format!("{}.{}", &digits[..point_at], &digits[point_at..])
        }
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_dollars_become_single_and_lone_dollars_are_refused() {
        assert_eq!(unescape_dollars("plain").as_deref(), Some("plain"));
        assert_eq!(unescape_dollars("a$$b").as_deref(), Some("a$b"));
        assert_eq!(unescape_dollars("$$$$").as_deref(), Some("$$"));
        assert_eq!(unescape_dollars("$HOME"), None);
        assert_eq!(unescape_dollars("${HOME}"), None);
        assert_eq!(unescape_dollars("cost: 5$"), None);
        assert_eq!(unescape_dollars("$$$"), None);
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (1.0, "1"),
            (0.1, "0.1"),
            (100000.0, "100000"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1e21, "1e+21"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1.25e-7, "1.25e-07"),
        ];
        for (f, text) in cases {
            assert_eq!(go_float_text(*f), *text, "{f}");
        }
    }

    #[test]
    fn values_are_described_for_messages() {
        assert_eq!(describe(&Value::String("two".into())), "\"two\"");
        assert_eq!(describe(&Value::Null), "null");
        assert_eq!(describe(&Value::Sequence(vec![])), "a list");
    }
}
