//! What the client prints: tables and descriptions built from API answers, as text.
//!
//! Every function takes the current time (and, where wall-clock times show, the time
//! zone) as an argument, so the output is a pure function of its inputs.

use super::table::{NONE, Table, age, age_since, parse_rfc3339, when};
use super::wire::{Event, Record, Status};
use jiff::tz::TimeZone;

/// Columns of `mlmodel get`.
const STATUS_COLUMNS: &[&str] = &[
    "NAME", "VALID", "ACTIVE", "READY", "SYNCED", "PHASE", "IMAGE", "AGE",
];
/// Columns `-o wide` adds.
const WIDE_COLUMNS: &[&str] = &["SOURCE", "MESSAGE"];
/// Position of AGE in a status row: it changes by itself, so watching ignores it.
pub const AGE_COLUMN: usize = 7;

/// How many records `describe` shows in its history section.
pub const DESCRIBE_HISTORY: u32 = 5;

/// An empty table with the columns of `mlmodel get`.
pub fn status_table_header(wide: bool) -> Table {
    let mut columns = STATUS_COLUMNS.to_vec();
    if wide {
        columns.extend_from_slice(WIDE_COLUMNS);
    }
    Table::new(&columns)
}

/// One model's row in `mlmodel get`.
pub fn status_row(status: &Status, wide: bool, now: f64) -> Vec<String> {
    let mut row = vec![
        status.name.clone(),
        status.valid.to_string(),
        status.active.to_string(),
        format!("{}/{}", status.replicas_running, status.replicas_desired),
        status.synced.to_string(),
        or_none(&status.phase),
        or_none(status.image.as_deref().unwrap_or_default()),
        age_since(status.deployment_time, now),
    ];
    if wide {
        row.push(or_none(status.source.as_deref().unwrap_or_default()));
        row.push(or_none(&status.message));
    }
    row
}

/// The `mlmodel get` table of these models, in the order given.
pub fn status_table(statuses: &[Status], wide: bool, now: f64) -> Table {
    let mut table = status_table_header(wide);
    for status in statuses {
        table.push(status_row(status, wide, now));
    }
    table
}

/// The `mlmodel history` table, newest first as the server lists them.
pub fn history_table(records: &[Record], now: f64, tz: &TimeZone) -> Table {
    let mut table = Table::new(&["DEPLOYMENT ID", "TIME", "IMAGE", "SCALE", "BUILD", "RUN"]);
    for record in records {
        table.push(vec![
            or_none(&record.deployment_id()),
            when(record.deployment_time(), now, tz),
            or_none(&record.text("image")),
            or_none(&record.text("scale")),
            or_none(&record.text("build_id")),
            or_none(&record.text("run_id")),
        ]);
    }
    table
}

/// `mlmodel describe`: status, current record, services, tasks and recent history.
///
/// `status` is `None` when the server has records but no status for the model (it was
/// deleted with its history kept); `records` are newest first.
pub fn describe(
    status: Option<&Status>,
    records: &[Record],
    events: &[Event],
    now: f64,
    tz: &TimeZone,
) -> String {
    let mut out = String::new();
    let name = status
        .map(|s| s.name.clone())
        .or_else(|| records.first().map(Record::name))
        .unwrap_or_default();
    let mut summary = vec![("Name", name)];
    if let Some(status) = status {
        summary.extend([
            ("Phase", or_none(&status.phase)),
            (
                "Ready",
                format!("{}/{}", status.replicas_running, status.replicas_desired),
            ),
            ("Synced", status.synced.to_string()),
            ("Valid", status.valid.to_string()),
            ("Active", status.active.to_string()),
            (
                "Source",
                or_none(status.source.as_deref().unwrap_or_default()),
            ),
            ("Message", or_none(&status.message)),
            (
                "Image",
                or_none(status.image.as_deref().unwrap_or_default()),
            ),
            (
                "Digest",
                status
                    .image_digest
                    .clone()
                    .unwrap_or_else(|| "(not pinned)".to_string()),
            ),
        ]);
    } else {
        summary.push(("Phase", "no status: the model is not declared".to_string()));
    }
    push_fields(&mut out, "", &summary);
    if let Some(status) = status.filter(|s| !s.warnings.is_empty()) {
        out.push_str("\nWarnings:\n");
        for warning in &status.warnings {
            out.push_str(&format!("  {warning}\n"));
        }
    }
    if let Some(record) = records.first() {
        out.push_str("\nDeployment:\n");
        push_fields(&mut out, "  ", &record_fields(record, now, tz));
    }
    out.push_str(&services_section(status, records));
    out.push_str(&tasks_section(status, records, now));
    out.push_str(&format!("\nHistory (last {DESCRIBE_HISTORY}):\n"));
    let recent = &records[..records.len().min(DESCRIBE_HISTORY as usize)];
    if recent.is_empty() {
        out.push_str(&format!("  {NONE}\n"));
    } else {
        let mut table = Table::new(&["DEPLOYMENT ID", "TIME", "IMAGE", "SCALE"]);
        for record in recent {
            table.push(vec![
                or_none(&record.deployment_id()),
                when(record.deployment_time(), now, tz),
                or_none(&record.text("image")),
                or_none(&record.text("scale")),
            ]);
        }
        out.push_str(&indent(&table.render()));
    }
    out.push_str(&format!("\nEvents (last {DESCRIBE_EVENTS}):\n"));
    let recent = &events[events.len().saturating_sub(DESCRIBE_EVENTS)..];
    if recent.is_empty() {
        out.push_str(&format!("  {NONE}\n"));
    } else {
        out.push_str(&indent(&events_table(recent, false, now).render()));
    }
    out
}

/// Events `describe` shows.
pub const DESCRIBE_EVENTS: usize = 10;

/// Events as `kubectl get events` lists them: LAST SEEN, TYPE, REASON, (MODEL,) COUNT,
/// MESSAGE, in the order given.
pub fn events_table(events: &[Event], with_model: bool, now: f64) -> Table {
    let mut header = vec!["LAST SEEN", "TYPE", "REASON"];
    if with_model {
        header.push("MODEL");
    }
    header.extend(["COUNT", "MESSAGE"]);
    let mut table = Table::new(&header);
    for event in events {
        table.push(event_row(event, with_model, now));
    }
    table
}

/// One row of [`events_table`].
pub fn event_row(event: &Event, with_model: bool, now: f64) -> Vec<String> {
    let mut row = vec![
        age(now - event.time),
        or_none(&event.kind),
        or_none(&event.reason),
    ];
    if with_model {
        row.push(or_none(event.model.as_deref().unwrap_or_default()));
    }
    row.extend([event.count.to_string(), or_none(&event.message)]);
    row
}

/// The key fields of a deployment record, as label/value pairs.
fn record_fields(record: &Record, now: f64, tz: &TimeZone) -> Vec<(&'static str, String)> {
    let pair = |reservation: &str, limit: &str| {
        format!(
            "{} reserved, {} limit",
            or_none(&record.text(reservation)),
            or_none(&record.text(limit))
        )
    };
    let extra = match record.0.get("extra_template_attributes") {
        Some(serde_json::Value::Object(map)) if !map.is_empty() => {
            serde_json::Value::Object(map.clone()).to_string()
        }
        _ => NONE.to_string(),
    };
    vec![
        ("ID", or_none(&record.deployment_id())),
        ("Deployed", when(record.deployment_time(), now, tz)),
        ("Image", or_none(&record.text("image"))),
        ("Domain", or_none(&record.text("domain"))),
        ("Port", or_none(&record.text("port"))),
        ("Scale", or_none(&record.text("scale"))),
        ("CPU", pair("cpu_reservation", "cpu_limit")),
        ("Memory", pair("mem_reservation", "mem_limit")),
        (
            "Rollout",
            format!(
                "{} between batches, {} monitor",
                or_none(&record.text("deploy_delay")),
                or_none(&record.text("deploy_monitor_period"))
            ),
        ),
        ("Build", or_none(&record.text("build_id"))),
        ("Run", or_none(&record.text("run_id"))),
        ("Template", or_none(&record.text("template_file"))),
        ("Extra attributes", extra),
    ]
}

/// The live services: from the status, else from the newest record.
fn services_section(status: Option<&Status>, records: &[Record]) -> String {
    let services = match status {
        Some(status) => status.services.clone(),
        None => records.first().map(Record::services).unwrap_or_default(),
    };
    let mut out = String::from("\nServices:\n");
    if services.is_empty() {
        out.push_str(&format!("  {NONE}\n"));
        return out;
    }
    let mut table = Table::new(&["NAME", "IMAGE", "REPLICAS"]);
    for service in services {
        table.push(vec![service.name, service.image, service.replicas]);
    }
    out.push_str(&indent(&table.render()));
    out
}

/// The tasks with their states and errors: from the status, else from the newest record.
fn tasks_section(status: Option<&Status>, records: &[Record], now: f64) -> String {
    let mut table = Table::new(&["NAME", "NODE", "DESIRED", "STATE", "ERROR"]);
    match status {
        Some(status) => {
            for task in &status.tasks {
                let since = task.since.as_deref().and_then(parse_rfc3339);
                let state = match since {
                    Some(t) => format!("{} {} ago", task.state, age(now - t)),
                    None => task.state.clone(),
                };
                table.push(vec![
                    task.name.clone(),
                    or_none(&task.node),
                    task.desired_state.clone(),
                    state,
                    task.error.clone(),
                ]);
            }
        }
        None => {
            for container in records.first().map(Record::containers).unwrap_or_default() {
                table.push(vec![
                    container.name,
                    or_none(&container.node),
                    container.desired_state,
                    container.current_state,
                    container.error,
                ]);
            }
        }
    }
    let mut out = String::from("\nTasks:\n");
    if table.is_empty() {
        out.push_str(&format!("  {NONE}\n"));
    } else {
        out.push_str(&indent(&table.render()));
    }
    out
}

/// Appends `label: value` lines with the values aligned.
fn push_fields(out: &mut String, prefix: &str, fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, value) in fields {
        let label = format!("{label}:");
        out.push_str(&format!("{prefix}{label:<width$}  {value}\n"));
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        NONE.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: f64 = 1_700_000_000.0;

    fn status() -> Status {
        serde_json::from_value(json!({
            "name": "carls_model", "valid": true, "active": true, "phase": "Available",
            "message": "", "replicas_running": 2, "replicas_desired": 2, "synced": true,
            "source": "api", "deployment_id": "839e2353728e476d9a6da2f5f781e908",
            "deployment_time": NOW - 720.0, "image": "team/model:1",
            "services": [{"name": "mlmodel_carls_model_mlmodel", "image": "team/model:1", "replicas": "2/2"}],
            "tasks": [
                {"name": "mlmodel_carls_model_mlmodel.1", "image": "team/model:1", "node": "node-1",
                 "desired_state": "Running", "state": "Running", "since": "2023-11-14T22:07:20Z", "error": ""},
                {"name": "mlmodel_carls_model_mlmodel.2", "image": "team/model:1", "node": "",
                 "desired_state": "Running", "state": "Pending", "since": null,
                 "error": "no suitable node (insufficient resources on 1 node)"}
            ],
            "observed_at": NOW
        }))
        .unwrap()
    }

    fn record(id: &str, time: f64, image: &str, scale: u64) -> Record {
        serde_json::from_value(json!({
            "name": "carls_model", "deployment_id": id, "deployment_time": time,
            "image": image, "scale": scale, "build_id": "b1", "run_id": "r1",
            "domain": "carls-model.com", "port": 80, "cpu_limit": "1", "cpu_reservation": "0.1",
            "mem_limit": "2G", "mem_reservation": "1G", "deploy_delay": "5s",
            "deploy_monitor_period": "30s", "template_file": "default.template.yml",
            "extra_template_attributes": {"team": "search"}, "containers": [], "swarm_services": []
        }))
        .unwrap()
    }

    #[test]
    fn get_rows_show_readiness_phase_image_and_age() {
        let mut pending = status();
        pending.name = "new_model".into();
        pending.phase = "Pending".into();
        pending.replicas_running = 0;
        pending.image = None;
        pending.deployment_time = None;
        pending.synced = false;
        let table = status_table(&[status(), pending], false, NOW);
        assert_eq!(
            table.render(),
            "NAME          VALID   ACTIVE   READY   SYNCED   PHASE       IMAGE          AGE\n\
             carls_model   true    true     2/2     true     Available   team/model:1   12m\n\
             new_model     true    true     0/2     false    Pending     <none>         <none>\n"
        );
    }

    #[test]
    fn wide_rows_add_source_and_message() {
        let mut failed = status();
        failed.phase = "Failed".into();
        failed.message = "image not found".into();
        let row = status_row(&failed, true, NOW);
        assert_eq!(row[8..], ["api".to_string(), "image not found".to_string()]);
        assert_eq!(row[AGE_COLUMN], "12m");
    }

    #[test]
    fn history_lists_id_time_image_scale_build_and_run() {
        let records = [
            record("bbbb", NOW - 60.0, "team/model:2", 3),
            record("aaaa", NOW - 3.0 * 86_400.0, "team/model:1", 2),
        ];
        let text = history_table(&records, NOW, &TimeZone::UTC).render();
        assert_eq!(
            text,
            "DEPLOYMENT ID   TIME                           IMAGE          SCALE   BUILD   RUN\n\
             bbbb            2023-11-14 22:12:20 (1m ago)   team/model:2   3       b1      r1\n\
             aaaa            2023-11-11 22:13:20 (3d ago)   team/model:1   2       b1      r1\n"
        );
    }

    #[test]
    fn describe_shows_status_record_services_tasks_with_errors_and_history() {
        let records: Vec<Record> = (0..7)
            .map(|i| {
                record(
                    &format!("id{i}"),
                    NOW - 720.0 - f64::from(i) * 3600.0,
                    "team/model:1",
                    2,
                )
            })
            .collect();
        let events = [Event {
            time: NOW - 90.0,
            kind: "Warning".into(),
            reason: "TaskFailed".into(),
            message: "task m.1 on n1 is failed: task: non-zero exit (1)".into(),
            count: 3,
            ..Event::default()
        }];
        let text = describe(Some(&status()), &records, &events, NOW, &TimeZone::UTC);
        assert!(
            text.ends_with("\nEvents (last 10):\n  LAST SEEN   TYPE      REASON       COUNT   MESSAGE\n  1m          Warning   TaskFailed   3       task m.1 on n1 is failed: task: non-zero exit (1)\n"),
            "{text}"
        );
        assert!(
            text.starts_with("Name:     carls_model\nPhase:    Available\nReady:    2/2\n"),
            "{text}"
        );
        assert!(
            text.contains("\nDeployment:\n  ID:                id0\n"),
            "{text}"
        );
        assert!(
            text.contains("  CPU:               0.1 reserved, 1 limit\n"),
            "{text}"
        );
        assert!(
            text.contains("  Extra attributes:  {\"team\":\"search\"}\n"),
            "{text}"
        );
        assert!(
            text.contains("\nServices:\n  NAME                          IMAGE          REPLICAS\n"),
            "{text}"
        );
        assert!(
            text.contains("mlmodel_carls_model_mlmodel.1   node-1   Running   Running 6m ago\n"),
            "{text}"
        );
        assert!(text.contains("<none>   Running   Pending          no suitable node (insufficient resources on 1 node)\n"), "{text}");
        assert!(text.contains("History (last 5):"), "{text}");
        assert!(text.contains("id4 "), "{text}");
        assert!(!text.contains("id5 "), "{text}");
    }

    #[test]
    fn describe_without_status_falls_back_to_the_record() {
        let mut newest = record("id0", NOW - 60.0, "team/model:1", 2);
        newest.0.insert(
            "containers".into(),
            json!([{"name": "c.1", "node": "n", "desired_state": "Shutdown",
                    "current_state": "Shutdown 1 minute ago", "error": ""}]),
        );
        let text = describe(None, &[newest], &[], NOW, &TimeZone::UTC);
        assert!(text.ends_with("\nEvents (last 10):\n  <none>\n"), "{text}");
        assert!(
            text.contains("Phase:  no status: the model is not declared"),
            "{text}"
        );
        assert!(text.contains("c.1    n      Shutdown  "), "{text}");
        assert!(text.contains("\nServices:\n  <none>\n"), "{text}");
    }
}
