//! Docker's value grammars: Go durations, memory sizes and CPU counts.
//!
//! Manifests and compose files carry these as strings ("5s", "2G", "0.5"). Each parser
//! accepts exactly what Docker accepts for the same field, so a value that passes here is
//! never rejected later by `docker stack deploy` or the Swarm API, and says what it
//! expected when it rejects.

use std::time::Duration;

/// Why a duration, size or CPU value was rejected; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a Go duration (`300ms`, `1.5h`, `2h45m`).
    #[error(
        "{0:?} is not a duration: expected a number with a unit (ns, us, ms, s, m, h), such as 5s, 1m30s or 500ms"
    )]
    Duration(String),
    /// A negative duration where only zero or more makes sense.
    #[error("{0:?} is negative: expected a duration of zero or more")]
    NegativeDuration(String),
    /// A duration longer than Go's `time.Duration` holds (about 292 years).
    #[error("{0:?} is too long: durations are limited to about 292 years")]
    DurationOverflow(String),
    /// Not a Docker memory size (`512m`, `2G`, `2GiB`).
    #[error(
        "{0:?} is not a memory size: expected a number with an optional binary unit (b, k, m, g, t, p; kb/kib alike), such as 512M or 2G"
    )]
    Size(String),
    /// A size larger than 2^63-1 bytes.
    #[error("{0:?} is too large: sizes are limited to 8 EiB")]
    SizeOverflow(String),
    /// Not a positive decimal CPU count.
    #[error(
        "{0:?} is not a CPU count: expected a decimal number of CPUs greater than 0, such as 0.5 or 2"
    )]
    Cpus(String),
    /// A CPU count finer than one nano-CPU (1e-9).
    #[error(
        "{0:?} is too precise: CPU counts are whole numbers of nano-CPUs (at most 9 decimal places)"
    )]
    CpusPrecision(String),
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Parses a Go duration (`time.ParseDuration`) into signed nanoseconds.
///
/// Grammar: an optional sign, then one or more `number unit` pairs where the number may
/// have a decimal fraction (`1.5h`, `.5s`, `5.s`) and unit is ns, us (or µs/μs), ms, s, m
/// or h; a bare `0` is also accepted.
pub fn parse_go_duration(input: &str) -> Result<i64, UnitError> {
    let bad = || UnitError::Duration(input.to_string());
    let (negative, rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(after_dot) => {
                let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(len)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3600 * NANOS_PER_SECOND,
            _ => return Err(bad()),
        };
        let overflow = || UnitError::DurationOverflow(input.to_string());
        let int_value: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        // Keep 18 fraction digits at most: finer than a nanosecond for every unit.
        let kept = &frac_digits[..frac_digits.len().min(18)];
        let frac_value: u128 = if kept.is_empty() {
            0
        } else {
            kept.parse().map_err(|_| bad())?
        };
        let frac_nanos = frac_value * unit_nanos / 10u128.pow(kept.len() as u32);
        total = int_value
            .checked_mul(unit_nanos)
            .and_then(|v| v.checked_add(frac_nanos))
            .and_then(|v| v.checked_add(total))
            .ok_or_else(overflow)?;
        if total > i64::MAX as u128 + u128::from(negative) {
            return Err(overflow());
        }
        rest = after;
    }
    // The bound check above keeps `total` within i64 (or exactly i64::MIN when negative).
    let magnitude = total as i128;
    Ok(if negative { -magnitude } else { magnitude } as i64)
}

/// Parses a Go duration that must not be negative.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let nanos = parse_go_duration(input)?;
    if nanos < 0 {
        return Err(UnitError::NegativeDuration(input.to_string()));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Parses a Docker memory size (go-units `RAMInBytes`) into bytes.
///
/// Units are binary whatever their spelling: `2G` = `2GB` = `2GiB` = `2g` = 2147483648.
/// A number without a unit is bytes; decimals are allowed (`1.5G`) and truncated to whole
/// bytes as Docker does.
pub fn parse_memory(input: &str) -> Result<i64, UnitError> {
    let bad = || UnitError::Size(input.to_string());
    let num_len = input
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = input.split_at(num_len);
    let valid_number = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.matches('.').count() <= 1;
    if !valid_number {
        return Err(bad());
    }
    let suffix = suffix
        .strip_prefix(' ')
        .unwrap_or(suffix)
        .to_ascii_lowercase();
    let mut chars = suffix.chars().peekable();
    let power = match chars.peek() {
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        Some('p') => 5,
        _ => 0,
    };
    if power > 0 {
        chars.next();
        if chars.peek() == Some(&'i') {
            chars.next();
        }
    }
    if chars.peek() == Some(&'b') {
        chars.next();
    }
    if chars.next().is_some() {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * 1024f64.powi(power);
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(UnitError::SizeOverflow(input.to_string()));
    }
    Ok(bytes as i64)
}

/// Parses a CPU count (`0.5`, `2`) into nano-CPUs, as `docker service create --limit-cpu`.
///
/// The value must be greater than zero and a whole number of nano-CPUs: `0.000000001` is
/// the smallest; `0.0000000001` is rejected rather than rounded to nothing.
pub fn parse_cpus(input: &str) -> Result<i64, UnitError> {
    let bad = || UnitError::Cpus(input.to_string());
    let (int_digits, frac_digits) = input.split_once('.').unwrap_or((input, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_digits.is_empty() || !all_digits(int_digits) || !all_digits(frac_digits) {
        return Err(bad());
    }
    if input.ends_with('.') {
        return Err(bad());
    }
    let significant = frac_digits.trim_end_matches('0');
    if significant.len() > 9 {
        return Err(UnitError::CpusPrecision(input.to_string()));
    }
    let int_value: i64 = int_digits.parse().map_err(|_| bad())?;
    let frac_value: i64 = format!("{significant:0<9}").parse().map_err(|_| bad())?;
    let nanos = int_value
        .checked_mul(NANOS_PER_SECOND as i64)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(bad)?;
    if nanos == 0 {
        return Err(bad());
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5_000_000_000),
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("2h45m", 9_900_000_000_000),
            ("500ms", 500_000_000),
            ("10us", 10_000),
            ("10\u{b5}s", 10_000),
            ("10\u{3bc}s", 10_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("-1.5m", -90_000_000_000),
            ("+2s", 2_000_000_000),
            ("1.000000001s", 1_000_000_001),
            ("2562047h47m16.854775807s", i64::MAX),
        ];
        for (input, nanos) in cases {
            assert_eq!(parse_go_duration(input), Ok(*nanos), "{input}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for input in [
            "", "5", "s", ".s", "5 s", "5sec", "1d", "-", "5s ", "1..5s", "0s5",
        ] {
            assert!(
                matches!(parse_go_duration(input), Err(UnitError::Duration(_))),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn durations_past_go_limit_overflow() {
        assert!(matches!(
            parse_go_duration("2562047h47m16.854775808s"),
            Err(UnitError::DurationOverflow(_))
        ));
        assert!(matches!(
            parse_go_duration("99999999999999999999999h"),
            Err(UnitError::DurationOverflow(_))
        ));
    }

    #[test]
    fn negative_durations_are_refused_where_they_make_no_sense() {
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(matches!(
            parse_duration("-1s"),
            Err(UnitError::NegativeDuration(_))
        ));
    }

    #[test]
    fn memory_units_are_binary_whatever_the_spelling() {
        let gib = 2_147_483_648;
        for input in ["2G", "2GB", "2GiB", "2g", "2gb", "2gib", "2 G"] {
            assert_eq!(parse_memory(input), Ok(gib), "{input}");
        }
        let cases: &[(&str, i64)] = &[
            ("1024", 1024),
            ("1024b", 1024),
            ("1k", 1024),
            ("512m", 536_870_912),
            ("1.5G", 1_610_612_736),
            ("1T", 1_099_511_627_776),
            ("1p", 1_125_899_906_842_624),
            ("0", 0),
        ];
        for (input, bytes) in cases {
            assert_eq!(parse_memory(input), Ok(*bytes), "{input}");
        }
    }

    #[test]
    fn malformed_sizes_are_rejected() {
        for input in [
            "", "G", "2X", "2GG", "-1G", "1.2.3G", ".5G", "5.G", "2  G", "2Gi B", "2iB", "1e3",
        ] {
            assert!(
                matches!(parse_memory(input), Err(UnitError::Size(_))),
                "{input:?} should be rejected"
            );
        }
        assert!(matches!(
            parse_memory("9000000p"),
            Err(UnitError::SizeOverflow(_))
        ));
    }

    #[test]
    fn cpus_are_whole_nano_cpus() {
        let cases: &[(&str, i64)] = &[
            ("1", 1_000_000_000),
            ("0.1", 100_000_000),
            ("2.5", 2_500_000_000),
            ("0.000000001", 1),
            ("0.5000000000", 500_000_000),
            ("16", 16_000_000_000),
        ];
        for (input, nanos) in cases {
            assert_eq!(parse_cpus(input), Ok(*nanos), "{input}");
        }
    }

    #[test]
    fn cpus_must_be_positive_plain_decimals() {
        for input in [
            "0",
            "0.0",
            "",
            ".5",
            "5.",
            "-1",
            "1/2",
            "1e-1",
            "one",
            " 1",
            "99999999999",
        ] {
            assert!(
                matches!(parse_cpus(input), Err(UnitError::Cpus(_))),
                "{input:?} should be rejected"
            );
        }
        assert!(matches!(
            parse_cpus("0.0000000001"),
            Err(UnitError::CpusPrecision(_))
        ));
    }
}
