//! `apply` (with `--wait`) and `diff`: manifests checked locally, then sent or compared.

use super::{report, report_about, show_duration};
use crate::cli::remote::api::{ApiClient, ApiError};
use crate::cli::remote::diff::diff_spec;
use crate::cli::remote::exit;
use crate::cli::remote::manifests::{self, LocalSpec};
use crate::cli::remote::wire::Status;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How often `apply --wait` asks for the models' status.
const WAIT_PERIOD: Duration = Duration::from_secs(1);

/// Reads and checks the manifests, printing every problem; `None` if there was any.
fn load_checked(paths: &[PathBuf]) -> Option<Vec<LocalSpec>> {
    match manifests::load(paths) {
        Ok(specs) => Some(specs),
        Err(errors) => {
            for line in &errors {
                eprintln!("{line}");
            }
            eprintln!(
                "error: {} problem(s) in the manifests; nothing was sent",
                errors.len()
            );
            None
        }
    }
}

/// Sends every model declared under `paths`, after checking them all locally; with
/// `wait`, then follows each rollout until it is Available, fails or the time is up.
pub async fn apply(client: &ApiClient, paths: &[PathBuf], wait: Option<Duration>) -> u8 {
    let Some(specs) = load_checked(paths) else {
        return exit::FAILED;
    };
    let several = specs.len() > 1;
    let mut applied = Vec::new();
    let mut code = exit::OK;
    for LocalSpec { spec, .. } in &specs {
        match client.apply(spec).await {
            Ok(record) => {
                let id = record.deployment_id();
                println!("{} configured (deployment {id})", spec.name);
                applied.push((spec.name.clone(), id));
            }
            Err(error) => {
                let model = several.then_some(spec.name.as_str());
                code = report_about(client, model, &error);
                // Unreachable or unauthorised: every other model would fail the same way.
                if code == exit::UNREACHABLE || error.status() == Some(401) {
                    return code;
                }
            }
        }
    }
    if let Some(timeout) = wait {
        let waited = wait_for_rollouts(client, applied, timeout).await;
        if code == exit::OK {
            code = waited;
        }
    }
    code
}

/// What one status says about a rollout being waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// The deployment runs, every replica ready.
    Available,
    /// The deployment failed; the server's message says why.
    Failed(String),
    /// Not there yet: still rolling out, or the server has not picked it up.
    Waiting,
}

/// Whether `status` shows deployment `id` available, failed or still under way.
///
/// A status about another deployment (the previous one, before the server picks the
/// new one up) is never final, whatever its phase.
pub fn rollout(status: &Status, id: &str) -> Rollout {
    if status.deployment_id.as_deref() != Some(id) {
        return Rollout::Waiting;
    }
    match status.phase.as_str() {
        "Available" => Rollout::Available,
        "Failed" => Rollout::Failed(if status.message.is_empty() {
            "the server gave no reason".to_string()
        } else {
            status.message.clone()
        }),
        _ => Rollout::Waiting,
    }
}

/// A progress line: `NAME: PHASE, R/D ready[: message]`, or what is awaited.
pub fn progress_line(name: &str, status: Option<&Status>, id: &str) -> String {
    let Some(status) = status else {
        return format!("{name}: waiting for the server to list the model");
    };
    if status.deployment_id.as_deref() != Some(id) {
        return format!("{name}: waiting for the server to pick up deployment {id}");
    }
    let mut line = format!(
        "{name}: {}, {}/{} ready",
        status.phase, status.replicas_running, status.replicas_desired
    );
    if !status.message.is_empty() {
        line.push_str(": ");
        line.push_str(&status.message);
    }
    line
}

/// Polls each applied model until its deployment is Available or Failed, printing a
/// line whenever its progress changes; exit 1 if any failed or the timeout passed.
async fn wait_for_rollouts(
    client: &ApiClient,
    applied: Vec<(String, String)>,
    timeout: Duration,
) -> u8 {
    let deadline = Instant::now() + timeout;
    // name -> (deployment id, last line printed)
    let mut pending: BTreeMap<String, (String, String)> = applied
        .into_iter()
        .map(|(name, id)| (name, (id, String::new())))
        .collect();
    let mut code = exit::OK;
    loop {
        let mut done = Vec::new();
        for (name, (id, last_line)) in pending.iter_mut() {
            let status = match client.status(name).await {
                Ok(status) => Some(status),
                Err(error) if error.is_not_found() => None,
                Err(error) => return report(client, &error),
            };
            let line = progress_line(name, status.as_ref(), id);
            if line != *last_line {
                println!("{line}");
                *last_line = line;
            }
            match status.as_ref().map(|s| rollout(s, id)) {
                Some(Rollout::Available) => {
                    println!("{name} is available (deployment {id})");
                    done.push(name.clone());
                }
                Some(Rollout::Failed(message)) => {
                    eprintln!("error: {name}: deployment {id} failed: {message}");
                    code = exit::FAILED;
                    done.push(name.clone());
                }
                Some(Rollout::Waiting) | None => {}
            }
        }
        for name in done {
            pending.remove(&name);
        }
        if pending.is_empty() {
            return code;
        }
        let now = Instant::now();
        if now >= deadline {
            for (name, (id, last_line)) in &pending {
                eprintln!(
                    "error: timed out after {} waiting for {name} to become Available with deployment {id} (last seen: {last_line})",
                    show_duration(timeout)
                );
            }
            return exit::FAILED;
        }
        tokio::time::sleep(WAIT_PERIOD.min(deadline - now)).await;
    }
}

/// Prints, per model under `paths`, what applying it would change; exit 0 when nothing
/// would, 1 when something would, 2 on any error (3 when the server is unreachable).
pub async fn diff(client: &ApiClient, paths: &[PathBuf]) -> u8 {
    let Some(specs) = load_checked(paths) else {
        return exit::DIFF_ERROR;
    };
    let mut code = exit::OK;
    for LocalSpec { spec, .. } in &specs {
        let current = match client.history(&spec.name, 1).await {
            Ok(records) => records.into_iter().next(),
            Err(error) if error.is_not_found() => None,
            Err(error) => return diff_error(client, &error),
        };
        let diff = diff_spec(spec, current.as_ref());
        print!("{}", diff.render());
        if diff.has_differences() {
            code = exit::DIFF_FOUND;
        }
    }
    code
}

fn diff_error(client: &ApiClient, error: &ApiError) -> u8 {
    match report(client, error) {
        exit::UNREACHABLE => exit::UNREACHABLE,
        _ => exit::DIFF_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, phase: &str, running: u64, message: &str) -> Status {
        Status {
            name: "carls_model".into(),
            phase: phase.into(),
            replicas_running: running,
            replicas_desired: 2,
            deployment_id: Some(id.into()),
            message: message.into(),
            ..Status::default()
        }
    }

    #[test]
    fn a_rollout_is_done_only_when_its_own_deployment_is_available() {
        assert_eq!(
            rollout(&status("new", "Available", 2, ""), "new"),
            Rollout::Available
        );
        assert_eq!(
            rollout(&status("old", "Available", 2, ""), "new"),
            Rollout::Waiting
        );
        assert_eq!(
            rollout(&status("new", "Progressing", 1, ""), "new"),
            Rollout::Waiting
        );
        assert_eq!(
            rollout(&status("new", "Degraded", 1, "x"), "new"),
            Rollout::Waiting
        );
    }

    #[test]
    fn a_rollout_fails_with_the_servers_message_only_for_its_own_deployment() {
        assert_eq!(
            rollout(&status("new", "Failed", 0, "image not found"), "new"),
            Rollout::Failed("image not found".into())
        );
        assert_eq!(
            rollout(&status("old", "Failed", 0, "x"), "new"),
            Rollout::Waiting
        );
    }

    #[test]
    fn progress_lines_say_phase_readiness_and_what_is_awaited() {
        assert_eq!(
            progress_line(
                "carls_model",
                Some(&status("new", "Progressing", 1, "")),
                "new"
            ),
            "carls_model: Progressing, 1/2 ready"
        );
        assert_eq!(
            progress_line(
                "carls_model",
                Some(&status("new", "Degraded", 1, "task failed: exit 1")),
                "new"
            ),
            "carls_model: Degraded, 1/2 ready: task failed: exit 1"
        );
        assert_eq!(
            progress_line(
                "carls_model",
                Some(&status("old", "Available", 2, "")),
                "new"
            ),
            "carls_model: waiting for the server to pick up deployment new"
        );
        assert_eq!(
            progress_line("carls_model", None, "new"),
            "carls_model: waiting for the server to list the model"
        );
    }
}
