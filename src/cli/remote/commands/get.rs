//! `mlmodel get`: the models as a table, JSON or YAML, once or watched.

use super::events::{NoWatchStream, watch_stream};
use super::report;
use crate::cli::remote::api::{ApiClient, ApiError};
use crate::cli::remote::exit;
use crate::cli::remote::table::{format_row, grow_widths};
use crate::cli::remote::views::{AGE_COLUMN, status_row, status_table, status_table_header};
use crate::cli::remote::wire::Status;
use crate::desired::record::now_unix_seconds;
use std::collections::BTreeMap;

/// How `mlmodel get` prints the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// The table.
    #[default]
    Table,
    /// The table with SOURCE and MESSAGE.
    Wide,
    /// The status objects as JSON.
    Json,
    /// The status objects as YAML.
    Yaml,
}

impl Output {
    fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

/// Prints every model (or the one named), then with `watch` each change until Ctrl-C.
pub async fn get(client: &ApiClient, name: Option<&str>, output: Output, watch: bool) -> u8 {
    let statuses = match fetch(client, name).await {
        Ok(statuses) => statuses,
        Err(error) => return report(client, &error),
    };
    if watch {
        return watch_models(client, name, output, statuses).await;
    }
    match output {
        Output::Table | Output::Wide => {
            if statuses.is_empty() {
                eprintln!("No models found.");
            } else {
                let table = status_table(&statuses, output == Output::Wide, now_unix_seconds());
                print!("{}", table.render());
            }
        }
        Output::Json | Output::Yaml => {
            let printed = match (name, statuses.as_slice()) {
                (Some(_), [one]) => serialize(one, output),
                _ => serialize(&statuses, output),
            };
            print!("{printed}");
        }
    }
    exit::OK
}

/// The named model's status, or every model's, sorted by name.
async fn fetch(client: &ApiClient, name: Option<&str>) -> Result<Vec<Status>, ApiError> {
    let mut statuses = match name {
        Some(name) => vec![client.status(name).await?],
        None => client.statuses().await?,
    };
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(statuses)
}

/// JSON (pretty) or YAML text of `value`, ending with a newline.
fn serialize<T: serde::Serialize>(value: &T, output: Output) -> String {
    let text = match output {
        Output::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
        _ => serde_json::to_string_pretty(value)
            .map(|json| json + "\n")
            .map_err(|e| e.to_string()),
    };
    // Status holds only strings, numbers, booleans and JSON values: both always succeed.
    text.unwrap_or_else(|e| format!("# cannot print: {e}\n"))
}

/// Prints the first listing, then follows the server's watch stream (`GET /events`)
/// and prints each model whose row changed, until Ctrl-C.
///
/// A dropped stream is reported once on stderr and opened again; the statuses it sends
/// first are compared with what was printed, so a server restart does not end the watch
/// and nothing that changed meanwhile is missed.
async fn watch_models(
    client: &ApiClient,
    name: Option<&str>,
    output: Output,
    first: Vec<Status>,
) -> u8 {
    let mut changes = Changes::new(output);
    let initial = changes.update(first);
    let mut widths = Vec::new();
    if output.is_table() {
        let mut table = status_table_header(output == Output::Wide);
        let now = now_unix_seconds();
        for status in &initial {
            table.push(status_row(status, output == Output::Wide, now));
        }
        widths = table.widths();
        print!("{}", table.render());
    } else {
        print_changes(&initial, output, &mut widths);
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // The statuses a (re)connected stream sends before `synced`: a whole listing.
    let mut listing: Option<Vec<Status>> = Some(Vec::new());
    let mut frame = |kind: &str, data: &str| {
        let changed = match kind {
            "open" => {
                listing = Some(Vec::new());
                Vec::new()
            }
            "status" => match serde_json::from_str::<Status>(data) {
                Ok(status) => match listing.as_mut() {
                    Some(listing) => {
                        listing.push(status);
                        Vec::new()
                    }
                    None => changes.one(status).into_iter().collect(),
                },
                Err(_) => Vec::new(),
            },
            "synced" => {
                let mut listed = listing.take().unwrap_or_default();
                listed.sort_by(|a, b| a.name.cmp(&b.name));
                changes.update(listed)
            }
            "removed" => serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| changes.removed(v["name"].as_str()?))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        print_changes(&changed, output, &mut widths);
        true
    };
    let watched = watch_stream(client, name, false, &mut ctrl_c, &mut frame).await;
    match watched {
        Ok(code) => code,
        // An older server: ask it every second instead.
        Err(NoWatchStream) => poll_models(client, name, output, changes, widths, ctrl_c).await,
    }
}

/// How often `get --watch` asks a server without the watch stream.
const POLL_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Polls and prints what changed until Ctrl-C. A failed poll is reported once on stderr
/// and polling goes on, so a server restart does not end the watch.
async fn poll_models<C: std::future::Future>(
    client: &ApiClient,
    name: Option<&str>,
    output: Output,
    mut changes: Changes,
    mut widths: Vec<usize>,
    mut ctrl_c: std::pin::Pin<&mut C>,
) -> u8 {
    let mut last_error: Option<String> = None;
    loop {
        let polled = async {
            tokio::time::sleep(POLL_PERIOD).await;
            fetch(client, name).await
        };
        // Ctrl-C ends the watch at once, even in the middle of a slow request.
        let result = tokio::select! {
            _ = ctrl_c.as_mut() => return exit::OK,
            result = polled => result,
        };
        let statuses = match result {
            Ok(statuses) => statuses,
            Err(error) if error.is_not_found() && name.is_some() => Vec::new(),
            Err(error) => {
                let text = error.to_string();
                if last_error.as_ref() != Some(&text) {
                    eprintln!("warning: {text} (still watching)");
                    last_error = Some(text);
                }
                continue;
            }
        };
        if last_error.take().is_some() {
            eprintln!("warning: the server answers again");
        }
        print_changes(&changes.update(statuses), output, &mut widths);
    }
}

fn print_changes(statuses: &[Status], output: Output, widths: &mut Vec<usize>) {
    let now = now_unix_seconds();
    for status in statuses {
        match output {
            Output::Table | Output::Wide => {
                let row = status_row(status, output == Output::Wide, now);
                grow_widths(widths, &row);
                println!("{}", format_row(&row, widths));
            }
            Output::Json => print!("{}", serialize(status, output)),
            Output::Yaml => print!("---\n{}", serialize(status, output)),
        }
    }
}

/// Which models changed between two listings, as `get --watch` shows them.
///
/// What counts as a change is what the output shows: for a table, the row without its
/// AGE (which moves by itself); for JSON and YAML, the object without `observed_at`.
struct Changes {
    output: Output,
    /// Each model's last fingerprint and status.
    seen: BTreeMap<String, (String, Status)>,
}

impl Changes {
    fn new(output: Output) -> Self {
        Self {
            output,
            seen: BTreeMap::new(),
        }
    }

    /// The statuses that differ from the last listing, then the models that left it
    /// (shown as Removed), all sorted by name.
    fn update(&mut self, statuses: Vec<Status>) -> Vec<Status> {
        let mut changed = Vec::new();
        let mut listed = BTreeMap::new();
        for status in statuses {
            let print = self.fingerprint(&status);
            if self.seen.get(&status.name).map(|(p, _)| p) != Some(&print) {
                changed.push(status.clone());
            }
            listed.insert(status.name.clone(), (print, status));
        }
        for (name, (_, last)) in &self.seen {
            if !listed.contains_key(name) {
                changed.push(gone(last));
            }
        }
        changed.sort_by(|a, b| a.name.cmp(&b.name));
        self.seen = listed;
        changed
    }

    /// One model's new status, if its row changed.
    fn one(&mut self, status: Status) -> Option<Status> {
        let print = self.fingerprint(&status);
        let changed = self.seen.get(&status.name).map(|(p, _)| p) != Some(&print);
        self.seen
            .insert(status.name.clone(), (print, status.clone()));
        changed.then_some(status)
    }

    /// A model the server no longer lists, shown once as Removed.
    fn removed(&mut self, name: &str) -> Option<Status> {
        self.seen.remove(name).map(|(_, last)| gone(&last))
    }

    fn fingerprint(&self, status: &Status) -> String {
        if self.output.is_table() {
            let mut row = status_row(status, self.output == Output::Wide, 0.0);
            row.remove(AGE_COLUMN);
            row.join("\t")
        } else {
            let mut value = serde_json::to_value(status).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.remove("observed_at");
            }
            value.to_string()
        }
    }
}

/// The last status of a model the server no longer lists.
fn gone(last: &Status) -> Status {
    Status {
        active: false,
        phase: "Removed".into(),
        message: "no longer listed by the server".into(),
        replicas_running: 0,
        replicas_desired: 0,
        services: Vec::new(),
        tasks: Vec::new(),
        ..last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, phase: &str, running: u64) -> Status {
        Status {
            name: name.into(),
            valid: true,
            active: true,
            phase: phase.into(),
            replicas_running: running,
            replicas_desired: 2,
            deployment_time: Some(100.0),
            observed_at: Some(1.0),
            ..Status::default()
        }
    }

    fn names(statuses: &[Status]) -> Vec<(&str, &str)> {
        statuses
            .iter()
            .map(|s| (s.name.as_str(), s.phase.as_str()))
            .collect()
    }

    #[test]
    fn the_first_listing_shows_every_model() {
        let mut changes = Changes::new(Output::Table);
        let first = changes.update(vec![status("b", "Available", 2), status("a", "Pending", 0)]);
        assert_eq!(names(&first), [("a", "Pending"), ("b", "Available")]);
    }

    #[test]
    fn only_models_whose_row_changed_are_shown_again() {
        let mut changes = Changes::new(Output::Table);
        changes.update(vec![
            status("a", "Progressing", 1),
            status("b", "Available", 2),
        ]);
        let mut b_later = status("b", "Available", 2);
        b_later.observed_at = Some(2.0);
        b_later.deployment_time = Some(50.0);
        let next = changes.update(vec![status("a", "Available", 2), b_later]);
        assert_eq!(names(&next), [("a", "Available")]);
    }

    #[test]
    fn json_output_counts_changes_the_table_does_not_show() {
        let mut changes = Changes::new(Output::Json);
        changes.update(vec![status("a", "Available", 2)]);
        let mut observed_later = status("a", "Available", 2);
        observed_later.observed_at = Some(5.0);
        assert!(changes.update(vec![observed_later.clone()]).is_empty());
        observed_later.source = Some("api".into());
        assert_eq!(changes.update(vec![observed_later]).len(), 1);
    }

    #[test]
    fn a_model_that_leaves_the_listing_is_shown_once_as_removed() {
        let mut changes = Changes::new(Output::Table);
        changes.update(vec![
            status("a", "Available", 2),
            status("b", "Available", 2),
        ]);
        let next = changes.update(vec![status("a", "Available", 2)]);
        assert_eq!(names(&next), [("b", "Removed")]);
        assert_eq!(next[0].replicas_running, 0);
        assert!(changes.update(vec![status("a", "Available", 2)]).is_empty());
    }
}
