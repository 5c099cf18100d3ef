//! `/`: the node at a glance.

use axum::extract::State;
use truebit_web::chart::{BarChart, Segment, Series, Timeline};
use truebit_web::format::{self, NONE};
use truebit_web::page::{Card, ChartView, FailureGroup, OverviewPage, Period, TaskRow};

use super::view::{gas_value, task_row};
use super::{layout, render, Operator, PageResult};
use crate::http::figures::{
    compute_uptime, earned, Counts, Uptime, ELAPSED_BUCKETS, NS_PER_DAY, NS_PER_HOUR,
};
use crate::http::AppState;
use crate::model::{ContainerAction, TaskStatus};
use crate::source::{Connection, ContainerState, SourceStatus};
use crate::store::query::{EarningsDay, FailureReason, IngestState, TaskFilter, TaskStats};
use crate::store::{NodeStatus, Task};

/// A log line older than this makes the "last log line" card a warning.
const QUIET_NS: i64 = 10 * 60 * 1_000_000_000;
const RECENT_TASKS: usize = 10;
/// The "Recent failures" panel: failed tasks of the last 24 hours, this many reasons.
const FAILURE_WINDOW_MS: i64 = 24 * 3_600_000;
const FAILURE_REASONS: usize = 8;
/// The execution-time buckets' labels, short enough for a half-width chart.
const SHORT_ELAPSED: [&str; 8] = [
    "<0.1s", "0.1-0.5s", "0.5-1s", "1-5s", "5-10s", "10-30s", "30s-1m", ">1m",
];

struct Data {
    node: NodeStatus,
    ingest: IngestState,
    today: TaskStats,
    week: TaskStats,
    hourly: TaskStats,
    earnings: Vec<EarningsDay>,
    uptime: Uptime,
    last_up_ns: Option<i64>,
    recent: Vec<Task>,
    failures: Vec<FailureReason>,
}

/// `GET /`
pub async fn page(State(s): State<AppState>, op: Operator) -> PageResult {
    let now = s.clock.now_ns();
    let now_hour = now.div_euclid(NS_PER_HOUR);
    let today_hour = now.div_euclid(NS_PER_DAY) * 24;
    let week_hour = week_start_hour(now);
    let from_7d = now - 7 * NS_PER_DAY;
    let data = s
        .store
        .call(move |store| {
            let events = store.container_events(from_7d, now)?;
            let before = store.container_event_before(from_7d)?;
            let last_up_ns = events
                .iter()
                .chain(before.iter())
                .filter(|e| {
                    matches!(
                        e.action,
                        ContainerAction::Started
                            | ContainerAction::Restarted
                            | ContainerAction::Unpaused
                    )
                })
                .map(|e| e.time_ns)
                .max();
            Ok(Data {
                node: store.node_status()?,
                ingest: store.ingest_state()?,
                today: store.task_stats(today_hour, now_hour + 1, today_hour, 24)?,
                week: store.task_stats(week_hour, now_hour + 1, week_hour, 24 * 7)?,
                hourly: store.task_stats(now_hour - 23, now_hour + 1, now_hour - 23, 1)?,
                earnings: store.earnings_by_day(week_hour * NS_PER_HOUR, now)?,
                uptime: compute_uptime(before.as_ref(), &events, from_7d, now),
                last_up_ns,
                recent: store
                    .tasks_page(&TaskFilter::default(), None, RECENT_TASKS)?
                    .items,
                failures: store.failure_reasons(
                    now / 1_000_000 - FAILURE_WINDOW_MS,
                    i64::MAX,
                    FAILURE_REASONS,
                )?,
            })
        })
        .await?;
    let status = s.status.borrow().clone();
    let today_day = now.div_euclid(NS_PER_DAY);
    let period =
        |name: &str, span: &str, key: &'static str, stats: &TaskStats, days: &[&EarningsDay]| {
            let c = Counts::of(stats);
            let earned_total: f64 = days.iter().map(|d| earned(d)).sum();
            let invoices: u64 = days.iter().map(|d| d.invoices).sum();
            Period {
                name: name.to_owned(),
                span: span.to_owned(),
                key,
                completed: format::thousands(c.completed),
                failed: format::thousands(c.failed),
                executing: format::thousands(c.executing),
                received: format::thousands(c.received),
                success_rate: format::percent(c.success_rate()),
                // Gas units, not tokens: the unit is part of the figure.
                earned: format!("{} gas", format::compact(earned_total)),
                earned_exact: gas_value(earned_total),
                invoices: format::thousands(i64::try_from(invoices).unwrap_or(i64::MAX)),
            }
        };
    let today_days: Vec<&EarningsDay> = data
        .earnings
        .iter()
        .filter(|d| d.day == today_day)
        .collect();
    let week_days: Vec<&EarningsDay> = data.earnings.iter().collect();
    let mut layout = layout(&s, "Overview", "overview", &op);
    layout.live = true;
    let page = OverviewPage {
        layout,
        health: health(&status, &data, now, s.started_ns),
        periods: vec![
            period(
                "Today",
                "since 00:00 UTC",
                "today",
                &data.today,
                &today_days,
            ),
            period(
                "This week",
                "since Monday 00:00 UTC",
                "week",
                &data.week,
                &week_days,
            ),
        ],
        hourly: hourly_chart(&data.hourly, now_hour - 23),
        exec_time: exec_time_chart(&data.hourly),
        availability: availability_chart(&data.uptime),
        recent: data
            .recent
            .into_iter()
            .map(|t| task_row(&op.access().task(t)))
            .collect(),
        failures_total: format::thousands(
            i64::try_from(data.failures.iter().map(|f| f.tasks).sum::<u64>()).unwrap_or(0),
        ),
        failures: failure_groups(data.failures, op.access()),
        no_data: data
            .ingest
            .last_entry_ns
            .is_none()
            .then(|| no_data_note(&status)),
        now_ns: now,
        last_line_ns: data.ingest.last_entry_ns.unwrap_or(0),
    };
    render(&page)
}

/// The first hour of the current UTC week (Monday 00:00).
fn week_start_hour(now_ns: i64) -> i64 {
    let day = now_ns.div_euclid(NS_PER_DAY);
    // 1970-01-01 was a Thursday: Monday is day 4 of the epoch's week.
    let since_monday = (day + 3).rem_euclid(7);
    (day - since_monday) * 24
}

fn card(
    key: &'static str,
    label: &str,
    value: String,
    detail: String,
    state: &'static str,
) -> Card {
    Card {
        label: label.to_owned(),
        value,
        detail,
        state,
        key,
    }
}

/// What an empty overview says: where the lines come from, by name.
fn no_data_note(status: &SourceStatus) -> String {
    let container = match &status.container {
        ContainerState::Missing { name }
        | ContainerState::Running { name, .. }
        | ContainerState::Created { name, .. }
        | ContainerState::Stopped { name, .. } => Some(name.as_str()),
        ContainerState::Unknown => None,
    };
    match (status.kind, container) {
        ("docker", Some(name)) => format!(
            "No log lines from the node yet. The monitor reads the output of the container \"{name}\" (CONTAINER_NAME) as soon as Docker shows it; figures appear here with the first task. Check the Docker and container cards below if nothing arrives."
        ),
        ("file", _) => "No log lines from the node yet. The monitor reads the log file (LOG_FILE) as it grows; figures appear here with the first task.".to_owned(),
        _ => "No log lines from the node yet. Figures appear here with the first task; check the Docker card below if nothing arrives.".to_owned(),
    }
}

fn health(status: &SourceStatus, d: &Data, now: i64, started_ns: i64) -> Vec<Card> {
    let mut out = Vec::new();
    let demo = status.kind == "demo";
    let (value, detail, state) = match &status.container {
        ContainerState::Running { name, .. } => ("Running".to_owned(), name.clone(), "ok"),
        ContainerState::Stopped {
            name, exit_code, ..
        } => (
            "Stopped".to_owned(),
            match exit_code {
                Some(c) => format!("{name}, exit code {c}"),
                None => name.clone(),
            },
            "bad",
        ),
        ContainerState::Created { name, .. } => (
            "Not started".to_owned(),
            format!("{name}, created but never started"),
            "bad",
        ),
        ContainerState::Missing { name } => (
            "Not found".to_owned(),
            format!("no container named {name}"),
            "bad",
        ),
        ContainerState::Unknown if demo => ("Simulated".to_owned(), "demo node".to_owned(), "info"),
        ContainerState::Unknown if status.kind == "file" => (
            "Log file".to_owned(),
            "reading a file, not Docker".to_owned(),
            "info",
        ),
        ContainerState::Unknown => (
            "Unknown".to_owned(),
            "waiting for Docker".to_owned(),
            "warn",
        ),
    };
    out.push(card("container", "Container", value, detail, state));
    let (value, detail, state) = match (&status.connection, status.kind) {
        (_, "demo") => ("Demo".to_owned(), "no Docker needed".to_owned(), "info"),
        (_, "file") => ("Not used".to_owned(), "file source".to_owned(), "info"),
        (Connection::Connected { version }, _) => {
            ("Connected".to_owned(), format!("Docker {version}"), "ok")
        }
        (Connection::Connecting, _) => ("Connecting".to_owned(), String::new(), "warn"),
        (Connection::Unreachable { reason }, _) => {
            ("Unreachable".to_owned(), reason.clone(), "bad")
        }
    };
    out.push(card("docker", "Docker", value, detail, state));
    out.push(card(
        "version",
        "Node version",
        d.node.version.clone().unwrap_or_else(|| NONE.to_owned()),
        d.node
            .registered_ns
            .or(d.node.registered_ms.map(|ms| ms * 1_000_000))
            .map(|t| format!("registered {}", format::age(t, now)))
            .unwrap_or_default(),
        "",
    ));
    let running = matches!(status.container, ContainerState::Running { .. }) || demo;
    let (value, detail) = match d.last_up_ns {
        Some(t) if running => (
            format::duration_ms(u64::try_from((now - t) / 1_000_000).unwrap_or(0)),
            "since the container started".to_owned(),
        ),
        _ => (
            format::duration_ms(u64::try_from((now - started_ns) / 1_000_000).unwrap_or(0)),
            "monitor uptime (no container start seen)".to_owned(),
        ),
    };
    out.push(card("uptime", "Uptime", value, detail, ""));
    let slots = match (d.node.slots_used, d.node.slots_total) {
        (Some(u), Some(t)) => format!("{u}/{t}"),
        (Some(u), None) => format!("{u}/4"),
        _ => NONE.to_owned(),
    };
    out.push(card(
        "slots",
        "Slots in use",
        slots,
        "tasks running at once".to_owned(),
        "",
    ));
    let (value, state) = match d.ingest.last_entry_ns {
        Some(t) => (
            format::age(t, now),
            if now - t > QUIET_NS { "warn" } else { "ok" },
        ),
        None => ("none yet".to_owned(), "warn"),
    };
    out.push(card(
        "last_line",
        "Last log line",
        value,
        d.ingest
            .last_entry_ns
            .map(format::utc)
            .map(|t| format!("{t} UTC"))
            .unwrap_or_default(),
        state,
    ));
    out
}

fn hourly_chart(stats: &TaskStats, first_hour: i64) -> ChartView {
    let mut completed = vec![0.0; 24];
    let mut failed = vec![0.0; 24];
    let mut open = vec![0.0; 24];
    for (hour, status, n) in &stats.series {
        let Some(i) = usize::try_from(hour - first_hour).ok().filter(|i| *i < 24) else {
            continue;
        };
        let slot = match status {
            Some(TaskStatus::Completed) => &mut completed,
            Some(TaskStatus::Failed) => &mut failed,
            _ => &mut open,
        };
        slot[i] += *n as f64;
    }
    let hours: Vec<i64> = (0..24).map(|i| (first_hour + i) * NS_PER_HOUR).collect();
    let total: f64 = completed.iter().chain(&failed).chain(&open).sum();
    let chart = BarChart {
        title: "Tasks per hour over the last 24 hours, by outcome".into(),
        unit: "tasks".into(),
        labels: hours.iter().map(|t| format::hour_label(*t)).collect(),
        hover_labels: hours
            .iter()
            .map(|t| {
                format!(
                    "{}–{} UTC",
                    format::hour_label(*t),
                    format::hour_label(t + NS_PER_HOUR)
                )
            })
            .collect(),
        series: vec![
            Series {
                name: "completed".into(),
                class: "s-ok",
                values: completed,
            },
            Series {
                name: "failed".into(),
                class: "s-fail",
                values: failed,
            },
            Series {
                name: "in progress".into(),
                class: "s-run",
                values: open,
            },
        ],
        label_every: 3,
        empty: "No tasks in the last 24 hours".into(),
        width: 0.0,
    };
    ChartView {
        legend: chart.legend(),
        svg: chart.render(),
        caption: format!(
            "{} tasks received in the last 24 hours (hours in UTC).",
            format::thousands(total as i64)
        ),
    }
}

fn exec_time_chart(stats: &TaskStats) -> ChartView {
    let mut buckets = [0_i64; 8];
    let (mut n, mut sum) = (0_i64, 0_i64);
    for r in &stats.totals {
        for (a, b) in buckets.iter_mut().zip(r.elapsed) {
            *a += b;
        }
        n += r.elapsed_n;
        sum += r.elapsed_ms_sum;
    }
    let chart = BarChart {
        title: "Execution time of the last 24 hours' tasks".into(),
        unit: "tasks".into(),
        labels: SHORT_ELAPSED.iter().map(|s| (*s).to_owned()).collect(),
        hover_labels: ELAPSED_BUCKETS.iter().map(|s| (*s).to_owned()).collect(),
        series: vec![Series {
            name: "tasks".into(),
            class: "s-info",
            values: buckets.iter().map(|v| *v as f64).collect(),
        }],
        label_every: 1,
        empty: "No measured executions in the last 24 hours".into(),
        width: 520.0,
    };
    let caption = if n > 0 {
        format!(
            "{} executions measured, mean {}.",
            format::thousands(n),
            format::duration_ms(u64::try_from(sum / n).unwrap_or(0))
        )
    } else {
        String::new()
    };
    ChartView {
        legend: vec![],
        svg: chart.render(),
        caption,
    }
}

fn availability_chart(u: &Uptime) -> ChartView {
    let span = (u.to_ns - u.from_ns).max(1) as f64;
    let frac = |t: i64| (t - u.from_ns) as f64 / span;
    let known_from = u.from_ns + (u.unknown_seconds * 1e9) as i64;
    let mut segments = Vec::new();
    if u.uptime_seconds > 0.0 || !u.down_intervals.is_empty() {
        segments.push(Segment {
            start: frac(known_from),
            end: 1.0,
            class: "s-up",
            title: "running".into(),
        });
    }
    for d in &u.down_intervals {
        segments.push(Segment {
            start: frac(d.start_ns),
            end: frac(d.end_ns),
            class: "s-down",
            title: format!(
                "down {} from {} UTC ({}){}{}",
                format::duration_ms(
                    u64::try_from((d.end_ns - d.start_ns) / 1_000_000).unwrap_or(0)
                ),
                format::utc(d.start_ns),
                d.cause.unwrap_or("stopped"),
                if d.ongoing { ", still down" } else { "" },
                if d.inferred {
                    "; inferred from the container's state, no Docker event was seen"
                } else {
                    ""
                }
            ),
        });
    }
    let first_day = u.from_ns.div_euclid(NS_PER_DAY) + 1;
    let ticks = (first_day..)
        .map(|d| d * NS_PER_DAY)
        .take_while(|t| *t < u.to_ns)
        .map(|t| (frac(t), format::day_label(t)))
        .collect();
    let timeline = Timeline {
        title: "Container up (green), down (red) or unknown (grey) over the last 7 days".into(),
        segments,
        ticks,
        width: 440.0,
    };
    let known = u.uptime_seconds + u.downtime_seconds;
    let caption = if known > 0.0 {
        format!(
            "Up {} of the time the state is known; {} down in {} outage{}.",
            format::percent(Some(u.uptime_seconds / known)),
            format::duration_ms((u.downtime_seconds * 1000.0) as u64),
            u.down_intervals.len(),
            if u.down_intervals.len() == 1 { "" } else { "s" }
        )
    } else {
        "No container start or stop recorded in the last 7 days.".to_owned()
    };
    ChartView {
        svg: timeline.render(),
        legend: vec![
            truebit_web::chart::LegendItem {
                name: "up".into(),
                class: "s-up",
            },
            truebit_web::chart::LegendItem {
                name: "down".into(),
                class: "s-down",
            },
            truebit_web::chart::LegendItem {
                name: "unknown".into(),
                class: "s-unknown",
            },
        ],
        caption,
    }
}

/// The "Recent failures" rows (reasons are task data: hidden without access to it, which
/// folds them into one row without reason).
fn failure_groups(
    failures: Vec<FailureReason>,
    access: crate::http::redact::Access,
) -> Vec<FailureGroup> {
    let mut groups: Vec<(Option<String>, u64)> = Vec::new();
    for f in failures {
        let reason = f.reason.filter(|_| access.visible());
        match groups.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += f.tasks,
            None => groups.push((reason, f.tasks)),
        }
    }
    groups
        .into_iter()
        .map(|(reason, n)| FailureGroup {
            reason: reason
                .as_deref()
                .map_or_else(String::new, |r| format::clip(r, TaskRow::REASON_CHARS)),
            reason_full: reason.unwrap_or_default(),
            count: format::thousands(i64::try_from(n).unwrap_or(i64::MAX)),
            href: "/tasks?status=failed".to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-21 is a Saturday; its week began on Monday 2026-11-16.
        let sat = 1_795_255_200_i64 * 1_000_000_000; // 2026-11-21 10:00 UTC
        let monday = 1_794_787_200_i64; // 2026-11-16 00:00 UTC
        assert_eq!(week_start_hour(sat) * 3_600, monday);
        // On a Monday the week starts that day.
        assert_eq!(week_start_hour(monday * 1_000_000_000 + 5) * 3_600, monday);
    }
}
