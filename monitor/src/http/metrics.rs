//! `/metrics` in the Prometheus text format (version 0.0.4), written by hand. On the main
//! port it needs a key or a session like `/api`; with `METRICS_BIND` it is also served
//! without authentication on that separate address.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::source::{Connection, ContainerState};
use crate::store::WriteHealth;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`
pub async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let (totals, ingest) = s
        .store
        .call(|st| Ok((st.totals()?, st.ingest_state()?)))
        .await?;
    let status = s.status.borrow().clone();
    let now = s.clock.now_ns();
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let label = |k: &str, v: &str| format!("{{{k}=\"{v}\"}}");
    family(
        "truebit_tasks",
        "gauge",
        "Tasks in the database by status.",
        &totals
            .tasks_by_status
            .iter()
            .map(|(st, n)| (label("status", st.as_str()), *n as f64))
            .collect::<Vec<_>>(),
    );
    let finished: Vec<(String, f64)> = totals
        .tasks_by_status
        .iter()
        .filter(|(st, _)| st.is_final())
        .map(|(st, n)| (label("result", st.as_str()), *n as f64))
        .collect();
    family(
        "truebit_executions",
        "gauge",
        "Finished executions in the database by result.",
        &finished,
    );
    family(
        "truebit_invoices",
        "gauge",
        "Invoices in the database.",
        &[(String::new(), totals.invoices as f64)],
    );
    family(
        "truebit_ingest_entries",
        "gauge",
        "Log entries in the database by kind (one entry per log line plus its continuation lines).",
        &totals
            .entries_by_kind
            .iter()
            .map(|(k, n)| (label("kind", k.as_str()), *n as f64))
            .collect::<Vec<_>>(),
    );
    let lag = match (ingest.last_commit_ns, ingest.last_received_ns) {
        (Some(c), Some(r)) => (c - r).max(0) as f64 / 1e9,
        _ => 0.0,
    };
    family(
        "truebit_ingest_lag_seconds",
        "gauge",
        "Time from Docker receiving the newest line to its commit in the database.",
        &[(String::new(), lag)],
    );
    family(
        "truebit_ingest_last_entry_age_seconds",
        "gauge",
        "Age of the newest log entry (NaN when there is none).",
        &[(
            String::new(),
            ingest
                .last_entry_ns
                .map_or(f64::NAN, |t| (now - t).max(0) as f64 / 1e9),
        )],
    );
    let up = matches!(status.container, ContainerState::Running { .. });
    family(
        "truebit_container_up",
        "gauge",
        "1 when the node container is running.",
        &[(String::new(), f64::from(u8::from(up)))],
    );
    let connected = matches!(status.connection, Connection::Connected { .. });
    family(
        "truebit_source_connected",
        "gauge",
        "1 when the log source (Docker, file or demo) is connected.",
        &[(String::new(), f64::from(u8::from(connected)))],
    );
    let writes_ok = matches!(s.store.write_health(), WriteHealth::Ok);
    family(
        "truebit_store_writes_ok",
        "gauge",
        "1 when database commits succeed.",
        &[(String::new(), f64::from(u8::from(writes_ok)))],
    );
    family(
        "truebit_live_streams",
        "gauge",
        "Live event streams open.",
        &[(String::new(), s.streams.open() as f64)],
    );
    family(
        "truebit_auth_failures_total",
        "counter",
        "Failed logins and bad API keys since the monitor started.",
        &[(
            String::new(),
            s.auth.failures.load(Ordering::Relaxed) as f64,
        )],
    );
    if let Some(federation) = &s.federation {
        // A federation error (database) leaves these out; the rest of the page stands.
        match federation.status().await {
            Ok(fed) => {
                family(
                    "truebit_federation_reports_sent_total",
                    "counter",
                    "Federation reports the server confirmed.",
                    &[(String::new(), fed.sent_total as f64)],
                );
                family(
                    "truebit_federation_reports_blocked_total",
                    "counter",
                    "Federation reports the privacy validator stopped (never sent).",
                    &[(String::new(), fed.blocked_total as f64)],
                );
                family(
                    "truebit_federation_reports_dropped_total",
                    "counter",
                    "Federation reports never sent (expired in the outbox or discarded on disable).",
                    &[(String::new(), fed.dropped_total as f64)],
                );
                family(
                    "truebit_federation_reports_queued",
                    "gauge",
                    "Federation reports waiting in the outbox.",
                    &[(String::new(), fed.queued as f64)],
                );
                family(
                    "truebit_federation_enabled",
                    "gauge",
                    "1 when federation is on.",
                    &[(String::new(), f64::from(u8::from(fed.settings.enabled)))],
                );
            }
            Err(error) => tracing::warn!(%error, "metrics: federation status unavailable"),
        }
    }
    if let Some(alerts) = &s.alerts {
        family(
            "truebit_alert_firing",
            "gauge",
            "1 while the alert rule fires.",
            &alerts
                .firing()
                .iter()
                .map(|(rule, on)| (label("rule", rule.id()), f64::from(u8::from(*on))))
                .collect::<Vec<_>>(),
        );
        // A database error leaves the channels out; the rest of the page stands.
        match alerts.channels().await {
            Ok(channels) => {
                let per = |f: fn(&crate::alerts::handle::ChannelView) -> u64| {
                    channels
                        .iter()
                        .map(|c| (label("channel", &c.name), f(c) as f64))
                        .collect::<Vec<_>>()
                };
                family(
                    "truebit_alert_messages_total",
                    "counter",
                    "Alert messages a channel accepted.",
                    &per(|c| c.messages_total),
                );
                family(
                    "truebit_alert_notifications_delivered_total",
                    "counter",
                    "Alert notifications delivered to a channel (a message may carry several).",
                    &per(|c| c.delivered_total),
                );
                family(
                    "truebit_alert_delivery_failures_total",
                    "counter",
                    "Failed delivery attempts at a channel.",
                    &per(|c| c.failures_total),
                );
                family(
                    "truebit_alert_notifications_dropped_total",
                    "counter",
                    "Alert notifications dropped because a channel's outbox was full.",
                    &per(|c| c.dropped_total),
                );
                family(
                    "truebit_alert_notifications_queued",
                    "gauge",
                    "Alert notifications waiting for a channel.",
                    &per(|c| c.queued),
                );
            }
            Err(error) => tracing::warn!(%error, "metrics: alert channels unavailable"),
        }
    }
    let mut response = out.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
