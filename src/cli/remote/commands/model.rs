//! `describe`, `delete`, `history` and `rollback`: commands about one model.

use super::report;
use crate::cli::remote::api::ApiClient;
use crate::cli::remote::exit;
use crate::cli::remote::views::{self, DESCRIBE_HISTORY};
use crate::desired::record::now_unix_seconds;
use jiff::tz::TimeZone;

/// Prints the model's status, current record, services, tasks and recent history.
pub async fn describe(client: &ApiClient, name: &str) -> u8 {
    let (status, history, events) = tokio::join!(
        client.status(name),
        client.history(name, DESCRIBE_HISTORY),
        client.events(name)
    );
    // A server older than events answers 404: describe without them.
    let events = events.unwrap_or_default();
    // A model deleted with its history kept has records but no status; one adopted from
    // the swarm may have a status before any record. Either half is worth showing.
    let (status, records) = match (status, history) {
        (Ok(status), Ok(records)) => (Some(status), records),
        (Err(e), Ok(records)) if e.is_not_found() && !records.is_empty() => (None, records),
        (Ok(status), Err(e)) if e.is_not_found() => (Some(status), Vec::new()),
        (Err(e), Err(other)) if e.is_not_found() => return report(client, &other),
        (Err(e), _) | (_, Err(e)) => return report(client, &e),
    };
    print!(
        "{}",
        views::describe(
            status.as_ref(),
            &records,
            &events,
            now_unix_seconds(),
            &TimeZone::system()
        )
    );
    exit::OK
}

/// Stops serving the model; with `clear_all_records` its history goes too.
pub async fn delete(client: &ApiClient, name: &str, clear_all_records: bool) -> u8 {
    match client.delete(name, clear_all_records).await {
        // The answer holds the newest record only, whatever was cleared: don't count it.
        Ok(_) if clear_all_records => {
            println!("{name} deleted, its deployment history cleared");
            exit::OK
        }
        Ok(_) => {
            println!("{name} deleted");
            exit::OK
        }
        Err(error) => report(client, &error),
    }
}

/// Prints the model's last `n` deployments, newest first.
pub async fn history(client: &ApiClient, name: &str, n: u32) -> u8 {
    match client.history(name, n).await {
        Ok(records) if records.is_empty() => {
            eprintln!("No deployments of {name}.");
            exit::OK
        }
        Ok(records) => {
            let table = views::history_table(&records, now_unix_seconds(), &TimeZone::system());
            print!("{}", table.render());
            exit::OK
        }
        Err(error) => report(client, &error),
    }
}

/// Prints the model's log lines as they come.
pub async fn logs(client: &ApiClient, name: &str, query: &[(&str, String)], follow: bool) -> u8 {
    let mut out = std::io::stdout();
    match client.logs(name, query, follow, &mut out).await {
        Ok(()) => exit::OK,
        Err(error) => report(client, &error),
    }
}

/// Redeploys an earlier record: `to`, or the one before the current.
pub async fn rollback(client: &ApiClient, name: &str, to: Option<&str>) -> u8 {
    match client.rollback(name, to).await {
        Ok(record) => {
            let target = to.map(|id| format!(" to {id}")).unwrap_or_default();
            println!(
                "{name} rolled back{target} (deployment {}, image {})",
                record.deployment_id(),
                record.text("image")
            );
            exit::OK
        }
        Err(error) => report(client, &error),
    }
}
