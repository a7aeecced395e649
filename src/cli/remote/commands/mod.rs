//! Each client subcommand carried out: call the API, print, return the exit code.
//!
//! Commands print their own errors (`error: ` then the server's detail) and return the
//! exit code documented in [`crate::cli::remote`], so the caller only has to exit with it.

mod apply;
mod events;
mod get;
mod model;

pub use apply::{apply, diff};
pub use events::events;
pub use get::{Output, get};
pub use model::{delete, describe, history, logs, rollback};

use super::api::{ApiClient, ApiError, root_cause};
use std::time::Duration;

/// Prints `error: ...` for a failed call, with the cause or a hint where one helps, and
/// returns the exit code it ends the command with.
pub fn report(client: &ApiClient, error: &ApiError) -> u8 {
    report_about(client, None, error)
}

/// Like [`report`], naming the model the call was about: `error: NAME: detail`.
fn report_about(client: &ApiClient, model: Option<&str>, error: &ApiError) -> u8 {
    match model {
        Some(model) => eprintln!("error: {model}: {error}"),
        None => eprintln!("error: {error}"),
    }
    match error {
        ApiError::Connect { source, .. }
        | ApiError::Timeout { source, .. }
        | ApiError::Transport { source, .. } => eprintln!("cause: {}", root_cause(source)),
        ApiError::Refused { status: 401, .. } if client.has_token() => {
            eprintln!(
                "hint: the server did not accept the token given by --token or MLMODEL_TOKEN"
            );
        }
        ApiError::Refused { status: 401, .. } => {
            eprintln!("hint: this server requires a token: pass --token or set MLMODEL_TOKEN");
        }
        _ => {}
    }
    error.exit_code()
}

/// A duration the way a user would write it back: `5m`, `90s`, `1h`, `500ms`.
pub fn show_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs, duration.subsec_millis()) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{:.1}s", duration.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_their_largest_whole_unit() {
        assert_eq!(show_duration(Duration::from_secs(300)), "5m");
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5s");
    }
}
