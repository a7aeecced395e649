//! `GET /metrics`: Prometheus text exposition, from the caches only.

use super::ApiState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// Renders every metric.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let controller = &state.controller;
    let snapshot = controller.status.snapshot();
    let mut out = String::new();
    type Gauge = fn(&crate::status::ModelStatus) -> u64;
    let per_model: [(&str, &str, Gauge); 5] = [
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
        ("mlmodel_manager_replicas_running", "tasks running", |s| {
            s.replicas_running
        }),
        ("mlmodel_manager_replicas_requested", "tasks desired", |s| {
            s.replicas_desired
        }),
    ];
    for (name, help, value) in per_model {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for status in snapshot.models.values() {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\"}} {}",
                escape(&status.name),
                value(status)
            );
        }
    }
    let m = &controller.metrics;
    let counters = [
        (
            "mlmodel_reconciles_total",
            "reconciles run",
            m.reconciles.load(Ordering::Relaxed),
        ),
        (
            "mlmodel_reconcile_errors_total",
            "reconciles that failed and will be retried",
            m.reconcile_errors.load(Ordering::Relaxed),
        ),
        (
            "mlmodel_docker_writes_total",
            "service creates, updates and removes sent",
            m.writes.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let seconds = m.reconcile_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "# HELP mlmodel_reconcile_duration_seconds_total time spent reconciling\n# TYPE mlmodel_reconcile_duration_seconds_total counter\nmlmodel_reconcile_duration_seconds_total {seconds}"
    );
    let _ = writeln!(
        out,
        "# HELP mlmodel_queue_depth models waiting to be reconciled\n# TYPE mlmodel_queue_depth gauge\nmlmodel_queue_depth {}",
        controller.queue.depth()
    );
    let last = f64::from_bits(m.last_resync.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP mlmodel_last_resync_timestamp_seconds when the swarm was last listed in full\n# TYPE mlmodel_last_resync_timestamp_seconds gauge\nmlmodel_last_resync_timestamp_seconds {last}"
    );
    let _ = writeln!(
        out,
        "# HELP mlmodel_docker_api_calls_total Docker API calls by kind\n# TYPE mlmodel_docker_api_calls_total counter"
    );
    for (kind, count) in controller.docker_calls() {
        let _ = writeln!(
            out,
            "mlmodel_docker_api_calls_total{{kind=\"{kind}\"}} {count}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
