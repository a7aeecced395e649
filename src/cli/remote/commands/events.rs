//! `mlmodel events [NAME] [-w]`: what happened to the models and why.

use super::report;
use crate::cli::remote::api::{ApiClient, ApiError};
use crate::cli::remote::exit;
use crate::cli::remote::table::{format_row, grow_widths};
use crate::cli::remote::views::{event_row, events_table};
use crate::cli::remote::wire::Event;
use crate::desired::record::now_unix_seconds;
use std::collections::HashSet;
use std::time::Duration;

/// How long a dropped watch waits before it connects again.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Prints the events of the model named (or of every model, oldest first), then with
/// `watch` each new one until Ctrl-C.
pub async fn events(client: &ApiClient, name: Option<&str>, watch: bool) -> u8 {
    let with_model = name.is_none();
    if watch {
        return watch_events(client, name, with_model).await;
    }
    let listed = match list(client, name).await {
        Ok(events) => events,
        Err(error) => return report(client, &error),
    };
    if listed.is_empty() {
        eprintln!("No events found.");
        return exit::OK;
    }
    print!(
        "{}",
        events_table(&listed, with_model, now_unix_seconds()).render()
    );
    exit::OK
}

/// The header, then the events kept so far and each new one, from the watch stream
/// (asked with its backlog, so that nothing recorded before it connected is missed;
/// what a reconnect sends again is not printed twice).
async fn watch_events(client: &ApiClient, name: Option<&str>, with_model: bool) -> u8 {
    let header = events_table(&[], with_model, 0.0);
    let mut widths = header.widths();
    print!("{}", header.render());
    let mut printed: HashSet<(String, u64, String, String, u64)> = HashSet::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut print = |kind: &str, data: &str| {
        if kind != "event" {
            return true;
        }
        let Ok(event) = serde_json::from_str::<Event>(data) else {
            return true;
        };
        let key = (
            event.model.clone().unwrap_or_default(),
            event.time.to_bits(),
            event.reason.clone(),
            event.message.clone(),
            event.count,
        );
        if printed.insert(key) {
            let row = event_row(&event, with_model, now_unix_seconds());
            grow_widths(&mut widths, &row);
            println!("{}", format_row(&row, &widths));
        }
        true
    };
    match watch_stream(client, name, true, &mut ctrl_c, &mut print).await {
        Ok(code) => code,
        Err(NoWatchStream) => {
            eprintln!(
                "error: this server has no watch stream (GET /events): it is an older mlmodel"
            );
            exit::FAILED
        }
    }
}

/// The events of `name`, or of every model merged by time.
async fn list(client: &ApiClient, name: Option<&str>) -> Result<Vec<Event>, ApiError> {
    if let Some(name) = name {
        return client.events(name).await;
    }
    let mut all = Vec::new();
    for status in client.statuses().await? {
        match client.events(&status.name).await {
            Ok(events) => all.extend(events.into_iter().map(|event| Event {
                model: Some(status.name.clone()),
                ..event
            })),
            // Gone between the two calls.
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    all.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(all)
}

/// The server answered 404 for the watch stream: an mlmodel from before it.
#[derive(Debug)]
pub struct NoWatchStream;

/// Follows the watch stream with `frame` until Ctrl-C, connecting again whenever it
/// drops (a server restart does not end the watch); each trouble is said once on stderr.
/// A server without the stream is [`NoWatchStream`] when first asked.
pub async fn watch_stream<C>(
    client: &ApiClient,
    name: Option<&str>,
    backlog: bool,
    ctrl_c: &mut std::pin::Pin<&mut C>,
    frame: &mut dyn FnMut(&str, &str) -> bool,
) -> Result<u8, NoWatchStream>
where
    C: std::future::Future,
{
    let mut trouble: Option<String> = None;
    let mut connected = false;
    loop {
        let watched = tokio::select! {
            _ = ctrl_c.as_mut() => return Ok(exit::OK),
            watched = client.watch(name, backlog, &mut *frame) => watched,
        };
        let text = match watched {
            Ok(true) => return Ok(exit::OK),
            Ok(false) => "the server ended the watch stream".to_string(),
            Err(error) if error.is_not_found() && !connected => return Err(NoWatchStream),
            Err(error) => error.to_string(),
        };
        connected = true;
        if trouble.as_ref() != Some(&text) {
            eprintln!("warning: {text} (reconnecting)");
            trouble = Some(text);
        }
        tokio::select! {
            _ = ctrl_c.as_mut() => return Ok(exit::OK),
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}
