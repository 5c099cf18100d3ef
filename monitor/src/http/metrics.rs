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
use crate::model::TaskStatus;
use crate::source::{Connection, ContainerState};
use crate::store::WriteHealth;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// Upper bounds of the execution-time buckets the store counts (`<100ms` … `>1m`).
const EXECUTION_BUCKETS: [&str; 8] = ["0.1", "0.5", "1", "5", "10", "30", "60", "+Inf"];

/// `GET /metrics`
pub async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let now = s.clock.now_ns();
    // Every hour up to two days ahead (a node's clock may run early): all the figures.
    let to_hour = now.div_euclid(NS_PER_HOUR) + 48;
    let (totals, ingest, node, tasks, earnings) = s
        .store
        .call(move |st| {
            Ok((
                st.totals()?,
                st.ingest_state()?,
                st.node_status()?,
                st.task_stats(0, to_hour, 0, 24)?,
                st.earnings_by_day(0, to_hour * NS_PER_HOUR)?,
            ))
        })
        .await?;
    let status = s.status.borrow().clone();
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
        "truebit_earned_gas_units_total",
        "counter",
        "What the node earned, in gas units (steps x step gas price + memory x byte gas price of its pay line items), over the invoices in the database.",
        &[(
            String::new(),
            earnings.iter().map(super::figures::earned).sum::<f64>(),
        )],
    );
    let slots = |v: Option<u32>| (String::new(), v.map_or(f64::NAN, f64::from));
    family(
        "truebit_slots_used",
        "gauge",
        "Task slots in use, as the node last printed (NaN until it has).",
        &[slots(node.slots_used)],
    );
    family(
        "truebit_slots_capacity",
        "gauge",
        "Task slots the node has, as it last printed (NaN until it has).",
        &[slots(node.slots_total)],
    );
    // Execution times of finished tasks, from the figures the writer keeps per bucket.
    let finished = tasks
        .totals
        .iter()
        .filter(|t| t.status.is_some_and(TaskStatus::is_final));
    let (mut buckets, mut count, mut sum_ms) = ([0i64; 8], 0i64, 0i64);
    for t in finished {
        for (b, n) in buckets.iter_mut().zip(t.elapsed) {
            *b += n;
        }
        count += t.elapsed_n;
        sum_ms += t.elapsed_ms_sum;
    }
    // A histogram's samples carry their suffix where the others carry labels.
    let mut cumulative = 0i64;
    let mut samples: Vec<(String, f64)> = EXECUTION_BUCKETS
        .iter()
        .zip(buckets)
        .map(|(le, n)| {
            cumulative += n;
            (format!("_bucket{{le=\"{le}\"}}"), cumulative as f64)
        })
        .collect();
    samples.push(("_sum".to_owned(), sum_ms as f64 / 1e3));
    samples.push(("_count".to_owned(), count as f64));
    family(
        "truebit_execution_seconds",
        "histogram",
        "Execution time of finished tasks (start to completion line).",
        &samples,
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
