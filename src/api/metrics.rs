//! `GET /metrics`: Prometheus text exposition, from the caches only.

use super::ApiState;
use crate::desired::record::HistoryEntry;
use crate::reconcile::status::ModelStatus;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// Renders every metric.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let readers = &state.readers;
    let snapshot = readers.status.snapshot();
    let models: Vec<(&ModelStatus, String)> = snapshot
        .models
        .values()
        .map(|status| {
            let record = readers.store.latest(&status.name).ok().flatten();
            (status.as_ref(), model_labels(status, record.as_deref()))
        })
        .collect();
    let mut out = String::new();
    write_model_gauges(&mut out, &models);
    write_task_states(&mut out, &models);
    write_reconciler(&mut out, readers);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Per model: active, valid, weird (the original's three) and its replica counts, under
/// the original's names and this project's older ones.
fn write_model_gauges(out: &mut String, models: &[(&ModelStatus, String)]) {
    type Gauge = fn(&ModelStatus) -> u64;
    let per_model: [(&str, &str, Gauge); 7] = [
        (
            "mlmodel_manager_active",
            "1 if the model's services exist in the swarm",
            |s| u64::from(s.active),
        ),
        (
            "mlmodel_manager_valid",
            "1 if the model has a deployment record",
            |s| u64::from(s.valid),
        ),
        (
            "mlmodel_manager_weird",
            "1 if the model is active but has no valid record",
            |s| u64::from(s.active && !s.valid),
        ),
        (
            "mlmodel_manager_model_running_replicas",
            "tasks running",
            |s| s.replicas_running,
        ),
        (
            "mlmodel_manager_model_request_replicas",
            "tasks desired",
            |s| s.replicas_desired,
        ),
        (
            "mlmodel_manager_replicas_running",
            "tasks running (same as mlmodel_manager_model_running_replicas)",
            |s| s.replicas_running,
        ),
        (
            "mlmodel_manager_replicas_requested",
            "tasks desired (same as mlmodel_manager_model_request_replicas)",
            |s| s.replicas_desired,
        ),
    ];
    for (name, help, value) in per_model {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (status, labels) in models {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(status));
        }
    }
}

/// The reconciler's own series: counters, queue depth, last resync, Docker calls.
fn write_reconciler(out: &mut String, readers: &crate::reconcile::controller::Readers) {
    let m = &readers.metrics;
    let seconds = m.reconcile_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let last = f64::from_bits(m.last_resync.load(Ordering::Relaxed));
    let events = &readers.events;
    let series: [(&str, &str, &str, String); 8] = [
        (
            "mlmodel_reconciles_total",
            "counter",
            "reconciles run",
            m.reconciles.load(Ordering::Relaxed).to_string(),
        ),
        (
            "mlmodel_reconcile_errors_total",
            "counter",
            "reconciles that failed and will be retried",
            m.reconcile_errors.load(Ordering::Relaxed).to_string(),
        ),
        (
            "mlmodel_docker_writes_total",
            "counter",
            "service creates, updates and removes sent",
            m.writes.load(Ordering::Relaxed).to_string(),
        ),
        (
            "mlmodel_reconcile_duration_seconds_total",
            "counter",
            "time spent reconciling",
            seconds.to_string(),
        ),
        (
            "mlmodel_queue_depth",
            "gauge",
            "models waiting to be reconciled",
            readers.queue.depth().to_string(),
        ),
        (
            "mlmodel_events_total",
            "counter",
            "model events recorded, repeats included",
            events.recorded.load(Ordering::Relaxed).to_string(),
        ),
        (
            "mlmodel_event_write_errors_total",
            "counter",
            "model events the store could not take (kept in memory)",
            events.write_errors.load(Ordering::Relaxed).to_string(),
        ),
        (
            "mlmodel_last_resync_timestamp_seconds",
            "gauge",
            "when the swarm was last listed in full",
            last.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    write_notifications(out, readers.notifier.as_deref());
    let _ = writeln!(
        out,
        "# HELP mlmodel_docker_api_calls_total Docker API calls by kind\n# TYPE mlmodel_docker_api_calls_total counter"
    );
    for (kind, count) in readers.docker.calls() {
        let _ = writeln!(
            out,
            "mlmodel_docker_api_calls_total{{kind=\"{kind}\"}} {count}"
        );
    }
}

/// The original service's labels of a model's series: its name and, from the newest
/// record, `domain` (as `http://{domain}:{port}`), `build_id`, `run_id`, `image`,
/// `model_type` and `deployment_time` (empty for a model without a record).
fn model_labels(status: &ModelStatus, entry: Option<&HistoryEntry>) -> String {
    let spec = entry.map(|e| &e.record.spec);
    let text =
        |f: fn(&crate::desired::record::ModelSpec) -> String| spec.map(f).unwrap_or_default();
    let pairs = [
        ("name", status.name.clone()),
        (
            "domain",
            text(|s| format!("http://{}:{}", s.domain, s.port)),
        ),
        ("build_id", text(|s| s.build_id.clone())),
        ("run_id", text(|s| s.run_id.clone())),
        ("image", text(|s| s.image.clone())),
        (
            "model_type",
            text(|s| s.shown_model_type().unwrap_or_default().to_string()),
        ),
        (
            "deployment_time",
            entry
                .map(|e| e.record.deployment_time.to_string())
                .unwrap_or_default(),
        ),
    ];
    pairs
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `mlmodel_manager_model_<desired state>`: each model's current tasks by the state Swarm
/// wants them in, as the original counted them; `running` always, other states when some
/// model has a task in them.
fn write_task_states(out: &mut String, models: &[(&ModelStatus, String)]) {
    let mut states: BTreeSet<String> = BTreeSet::from(["running".to_string()]);
    for (status, _) in models {
        states.extend(
            status
                .tasks
                .iter()
                .map(|t| t.desired_state.to_ascii_lowercase()),
        );
    }
    for state in states {
        let name = format!("mlmodel_manager_model_{state}");
        let _ = writeln!(
            out,
            "# HELP {name} the model's tasks whose desired state is {state}\n# TYPE {name} gauge"
        );
        for (status, labels) in models {
            let count = status
                .tasks
                .iter()
                .filter(|t| t.desired_state.eq_ignore_ascii_case(&state))
                .count();
            let _ = writeln!(out, "{name}{{{labels}}} {count}");
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per `--notify-url` (by position, and its scheme and host only: webhook URLs carry
/// their secret in the path): notifications sent, failed and dropped.
fn write_notifications(out: &mut String, notifier: Option<&crate::reconcile::notify::Notifier>) {
    let Some(notifier) = notifier else {
        return;
    };
    type Count = fn(&crate::reconcile::notify::Target) -> u64;
    let counters: [(&str, &str, Count); 3] = [
        ("sent", "notifications delivered (answered 2xx)", |t| {
            t.sent.load(Ordering::Relaxed)
        }),
        ("failed", "notifications given up after every try", |t| {
            t.failed.load(Ordering::Relaxed)
        }),
        (
            "dropped",
            "notifications not queued: the URL's queue was full",
            |t| t.dropped.load(Ordering::Relaxed),
        ),
    ];
    for (what, help, count) in counters {
        let name = format!("mlmodel_notifications_{what}_total");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (index, target) in notifier.targets.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{target=\"{index}\",host=\"{}\"}} {}",
                target.shown(),
                count(target)
            );
        }
    }
}
