//! Times as Docker's CLI words them ("Running 6 minutes ago") and as ages ("12m").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses Docker's RFC 3339 timestamps into unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let time: jiff::Timestamp = text.parse().ok()?;
    Some(time.as_nanosecond() as f64 / 1e9)
}

/// Docker's human duration (go-units `HumanDuration`): "Less than a second",
/// "About a minute", "6 minutes", "3 hours", "2 days", ...
pub fn human_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let minutes = seconds / 60;
    let hours = (elapsed.as_secs_f64() / 3600.0 + 0.5) as u64;
    match () {
        () if seconds < 1 => "Less than a second".to_string(),
        () if seconds == 1 => "1 second".to_string(),
        () if seconds < 60 => format!("{seconds} seconds"),
        () if minutes == 1 => "About a minute".to_string(),
        () if minutes < 60 => format!("{minutes} minutes"),
        () if hours == 1 => "About an hour".to_string(),
        () if hours < 48 => format!("{hours} hours"),
        () if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        () if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        () if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        () => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// A task's current state in Docker's words: "Running 6 minutes ago".
pub fn current_state(state: &str, since: Option<&str>, now: SystemTime) -> String {
    let Some(since) = since.and_then(parse_rfc3339) else {
        return state.to_string();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let elapsed = Duration::from_secs_f64((now - since).max(0.0));
    format!("{state} {} ago", human_duration(elapsed).to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (45, "45 seconds"),
            (90, "About a minute"),
            (360, "6 minutes"),
            (3600, "About an hour"),
            (3 * 3600, "3 hours"),
            (3 * 86400, "3 days"),
            (20 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (seconds, words) in cases {
            assert_eq!(
                human_duration(Duration::from_secs(seconds)),
                words,
                "{seconds}"
            );
        }
    }

    #[test]
    fn task_states_read_like_docker_ps() {
        let since = "2020-04-15T06:33:13.123456789Z";
        let now = UNIX_EPOCH + Duration::from_secs_f64(parse_rfc3339(since).unwrap() + 360.0);
        assert_eq!(
            current_state("Running", Some(since), now),
            "Running 6 minutes ago"
        );
        assert_eq!(current_state("Pending", None, now), "Pending");
        assert_eq!(parse_rfc3339("2020-04-15T06:33:13Z"), Some(1586932393.0));
    }
}
