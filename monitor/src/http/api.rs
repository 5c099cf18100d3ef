//! The JSON routes under `/api`. Each handler validates its parameters (declared once in
//! the `*_QUERY` / `*_PATH` specs, which also feed the OpenAPI document), reads through
//! the store's typed methods off the runtime, and shapes the answer.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{body_kind, decode_body, new_api_key, BodyKind, Principal};
use super::error::ApiError;
use super::params::{format_cursor, path_param, ParamKind, ParamSpec, Params, MAX_PAGE};
use super::redact::Access;
use super::AppState;
use crate::federation::{FederationHandle, SettingsUpdate};
use crate::model::{ContainerEvent, Kind, Level, TaskStatus, UnixNanos};
use crate::store::auth::{ApiKeyInfo, ApiKeyScope, KeyRef, NewApiKey};
use crate::store::query::{EarningsDay, InvoiceFilter, LogFilter, Page, TaskFilter, TaskStats};
use crate::store::{Store, StoredEntry, StoredInvoice, Task, WriteHealth};
use truebit_protocol::report::{Continent, Level as FederationLevel};

const NS_PER_SEC: i64 = 1_000_000_000;
pub(crate) const NS_PER_HOUR: i64 = 3_600 * NS_PER_SEC;
pub(crate) const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;
/// Longest range of the summary routes (stats, uptime, earnings).
const MAX_RANGE_DAYS: i64 = 366;
/// Log entries shown with one task at most.
const TASK_ENTRIES: usize = 1000;

pub(crate) const STATUSES: &[&str] = &["received", "executing", "completed", "failed"];
pub(crate) const LEVELS: &[&str] = &["error", "warn", "info", "debug"];
pub(crate) const KINDS: &[&str] = &[
    "raw",
    "log",
    "node_registered",
    "slot_taken",
    "slot_released",
    "task_received",
    "task_downloaded",
    "execution_started",
    "execution_metrics",
    "execution_stderr",
    "execution_completed",
    "outcome_published",
    "invoice",
];

const P_LIMIT: ParamSpec = ParamSpec::new(
    "limit",
    ParamKind::Int {
        min: 1,
        max: MAX_PAGE,
    },
    "Rows per page (default 50).",
);
const P_CURSOR: ParamSpec = ParamSpec::new(
    "cursor",
    ParamKind::Cursor,
    "`next_cursor` of the previous page.",
);
const P_FROM: ParamSpec =
    ParamSpec::new("from", ParamKind::Time, "Start of the range (inclusive).");
const P_TO: ParamSpec = ParamSpec::new("to", ParamKind::Time, "End of the range (exclusive).");
const P_EXECUTION: ParamSpec = ParamSpec::new(
    "execution_id",
    ParamKind::Id,
    "Only rows of this execution.",
);

pub const NO_PARAMS: &[ParamSpec] = &[];
pub const TASKS_QUERY: &[ParamSpec] = &[
    ParamSpec::new(
        "status",
        ParamKind::Enum(STATUSES),
        "Only tasks in this state.",
    ),
    ParamSpec::new(
        "chain",
        ParamKind::Text { max_len: 80 },
        "Only tasks of this chain id.",
    ),
    P_FROM,
    P_TO,
    P_LIMIT,
    P_CURSOR,
];
pub const TASK_PATH: &[ParamSpec] = &[ParamSpec::new(
    "execution_id",
    ParamKind::Id,
    "The task's execution id.",
)];
pub const INVOICES_QUERY: &[ParamSpec] = &[P_EXECUTION, P_FROM, P_TO, P_LIMIT, P_CURSOR];
pub const INVOICE_PATH: &[ParamSpec] = &[ParamSpec::new(
    "id",
    ParamKind::Int {
        min: 1,
        max: i64::MAX,
    },
    "The invoice's id (its `id` in lists).",
)];
pub const RANGE_QUERY: &[ParamSpec] = &[P_FROM, P_TO];
pub const LOGS_QUERY: &[ParamSpec] = &[
    ParamSpec::new(
        "level",
        ParamKind::Enum(LEVELS),
        "Only entries of this level.",
    ),
    ParamSpec::new("kind", ParamKind::Enum(KINDS), "Only entries of this kind."),
    ParamSpec::new(
        "q",
        ParamKind::Text { max_len: 200 },
        "Text the message contains (case-insensitive for ASCII). Searches examine at most \
         50,000 entries per page: a page may be short and still have a next_cursor.",
    ),
    P_EXECUTION,
    P_FROM,
    P_TO,
    P_LIMIT,
    P_CURSOR,
];
pub const FEDERATION_REPORTS_QUERY: &[ParamSpec] = &[ParamSpec::new(
    "limit",
    ParamKind::Int {
        min: 1,
        max: MAX_PAGE,
    },
    "Records to return, newest first (default 50).",
)];
pub const KEY_PATH: &[ParamSpec] = &[ParamSpec::new(
    "id",
    ParamKind::Int {
        min: 1,
        max: i64::MAX,
    },
    "The key's id.",
)];

type ApiResult = Result<Response, ApiError>;

/// `a / b` rounded up (`b > 0`).
fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

fn ok<T: Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

/// Validates the single path parameter of a route.
fn path_value(
    path: Result<Path<String>, PathRejection>,
    spec: &[ParamSpec],
) -> Result<String, ApiError> {
    let Some(spec) = spec.first() else {
        return Err(ApiError::Internal {
            cause: "route without a path parameter spec".into(),
        });
    };
    let Path(value) = path.map_err(|_| {
        ApiError::bad_parameter(
            spec.name,
            format!("{} must be {}", spec.name, spec.allowed()),
        )
    })?;
    path_param(spec, &value)?;
    Ok(value)
}

#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn page_body<T, U>(page: Page<T>, f: impl FnMut(T) -> U) -> PageBody<U> {
    PageBody {
        items: page.items.into_iter().map(f).collect(),
        next_cursor: page.next.map(format_cursor),
    }
}

/// An optional `from`/`to` pair for lists, in ns; `from` must be before `to`.
fn optional_range(p: &Params) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let (from, to) = (p.time_ns("from"), p.time_ns("to"));
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_parameter("from", "from must be before to"));
        }
    }
    Ok((from, to))
}

/// `from`/`to` with defaults (`to` = now, `from` = `to` − `default_span`), at most
/// [`MAX_RANGE_DAYS`] apart.
fn summary_range(p: &Params, now: i64, default_span: i64) -> Result<(i64, i64), ApiError> {
    let to = p.time_ns("to").unwrap_or(now);
    let from = p
        .time_ns("from")
        .unwrap_or(to.saturating_sub(default_span).max(0));
    if from >= to {
        return Err(ApiError::bad_parameter("from", "from must be before to"));
    }
    if to - from > MAX_RANGE_DAYS * NS_PER_DAY {
        return Err(ApiError::bad_parameter(
            "from",
            format!("the range from..to may span at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

// ---- status ------------------------------------------------------------------------

#[derive(Serialize)]
struct WriteHealthJson {
    ok: bool,
    error: Option<String>,
}

/// `GET /api/status`
pub async fn status(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let (node, ingest, size) = s
        .store
        .call(|store| {
            Ok((
                store.node_status()?,
                store.ingest_state()?,
                store.db_size_bytes(),
            ))
        })
        .await?;
    let now = s.clock.now_ns();
    let source = s.status.borrow().clone();
    let lag_ms = match (ingest.last_commit_ns, ingest.last_received_ns) {
        (Some(commit), Some(received)) => Some((commit - received).max(0) / 1_000_000),
        _ => None,
    };
    let health = match s.store.write_health() {
        WriteHealth::Ok => WriteHealthJson {
            ok: true,
            error: None,
        },
        WriteHealth::Failing { error, .. } => WriteHealthJson {
            ok: false,
            error: Some(error),
        },
    };
    ok(json!({
        "monitor": {
            "version": env!("CARGO_PKG_VERSION"),
            "started_ns": s.started_ns,
            "now_ns": now,
        },
        "source": source,
        "node": {
            "version": node.version,
            "address": node.address,
            "registered_ns": node.registered_ns.or(node.registered_ms.map(|ms| ms * 1_000_000)),
            "slots_used": node.slots_used,
            "slots_total": node.slots_total,
            "last_node_time": node.last_node_time,
        },
        "ingest": {
            "last_log_ns": ingest.last_entry_ns,
            "last_received_ns": ingest.last_received_ns,
            "last_commit_ns": ingest.last_commit_ns,
            "lag_ms": lag_ms,
            "write": health,
        },
        "database": {
            "path": s.store.path().display().to_string(),
            "size_bytes": size,
        },
    }))
}

// ---- tasks -------------------------------------------------------------------------

/// `GET /api/tasks`
pub async fn tasks(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, TASKS_QUERY)?;
    let filter = task_filter(&p)?;
    let page = s
        .store
        .call(move |st| st.tasks_page(&filter, p.cursor(), p.limit()))
        .await?;
    // The hot route: written straight to text rather than through `serde_json::Value`.
    let mut out = String::with_capacity(page.items.len() * 1200 + 64);
    out.push_str("{\"items\":[");
    for (i, task) in page.items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&list_task_json(task));
    }
    out.push_str("],\"next_cursor\":");
    out.push_str(&serde_json::to_string(&page.next.map(format_cursor)).unwrap_or_default());
    out.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// The task list's filter from its parameters ([`TASKS_QUERY`]); the route and the page.
pub(crate) fn task_filter(p: &Params) -> Result<TaskFilter, ApiError> {
    let (from, to) = optional_range(p)?;
    Ok(TaskFilter {
        status: p.str("status").and_then(TaskStatus::parse),
        chain_id: p.string("chain"),
        from_ms: from.map(|ns| ns.div_euclid(1_000_000)),
        to_ms: to.map(|ns| ceil_div(ns, 1_000_000)),
    })
}

/// A task of a list as JSON text, without the `input` and `output` keys (lists never
/// read them).
fn list_task_json(task: Task) -> String {
    const NO_DATA: &str = ",\"input\":null,\"output\":null}";
    if task.input.is_none() && task.output.is_none() {
        if let Ok(text) = serde_json::to_string(&task) {
            if let Some(head) = text.strip_suffix(NO_DATA) {
                return format!("{head}}}");
            }
        }
    }
    Access::Hidden.task_json(task).to_string()
}

/// One task with its first log entries and its invoices: the task route and page.
pub(crate) struct TaskDetail {
    pub task: Task,
    pub entries: Vec<StoredEntry>,
    /// More than [`TASK_ENTRIES`] entries: only the first are here.
    pub truncated: bool,
    pub invoices: Vec<StoredInvoice>,
}

/// Reads [`TaskDetail`] off the runtime; `NotFound` for an unknown task.
pub(crate) async fn task_detail(store: &Store, id: String) -> Result<TaskDetail, ApiError> {
    let found = store
        .call(move |store| {
            let Some(task) = store.task(&id)? else {
                return Ok(None);
            };
            let mut entries = store.task_entries(&id, TASK_ENTRIES + 1)?;
            let truncated = entries.len() > TASK_ENTRIES;
            entries.truncate(TASK_ENTRIES);
            let invoices = store.invoices_of(&id)?;
            Ok(Some(TaskDetail {
                task,
                entries,
                truncated,
                invoices,
            }))
        })
        .await?;
    found.ok_or(ApiError::NotFound { what: "task" })
}

/// `GET /api/tasks/{execution_id}`
pub async fn task(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let id = path_value(path, TASK_PATH)?;
    let access = Access::of(&principal);
    let TaskDetail {
        task,
        entries,
        truncated,
        invoices,
    } = task_detail(&s.store, id).await?;
    ok(json!({
        "task": access.task_json(task),
        "data_access": if access.visible() { "visible" } else { "hidden: log in with the password or use an admin key to see input and output" },
        "entries": access.entries(entries),
        "entries_truncated": truncated,
        "invoices": invoices,
    }))
}

// ---- invoices ----------------------------------------------------------------------

/// `GET /api/invoices`
pub async fn invoices(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, INVOICES_QUERY)?;
    let (from_ns, to_ns) = optional_range(&p)?;
    let filter = InvoiceFilter {
        execution_id: p.string("execution_id"),
        from_ns,
        to_ns,
    };
    let page = s
        .store
        .call(move |st| st.invoices_page(&filter, p.cursor(), p.limit()))
        .await?;
    ok(page_body(page, |i| i))
}

/// `GET /api/invoices/{id}`
pub async fn invoice(
    State(s): State<AppState>,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let id: i64 = path_value(path, INVOICE_PATH)?
        .parse()
        .map_err(|_| ApiError::bad_parameter("id", "id must be a positive integer"))?;
    match s.store.call(move |store| store.invoice(id)).await? {
        Some(invoice) => ok(invoice),
        None => Err(ApiError::NotFound { what: "invoice" }),
    }
}

/// `GET /api/earnings`: invoices and line-item totals per UTC day (default: 30 days).
pub async fn earnings(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let (from, to) = summary_range(&p, s.clock.now_ns(), 30 * NS_PER_DAY)?;
    let days = s.store.call(move |st| st.earnings_by_day(from, to)).await?;
    let days: Vec<Value> = days
        .into_iter()
        .map(|d| {
            let earned = earned(&d);
            let operations: serde_json::Map<String, Value> = d
                .operations
                .into_iter()
                .map(|o| {
                    (
                        o.operation,
                        json!({ "items": o.items, "steps": o.steps, "memory": o.memory, "value": o.value }),
                    )
                })
                .collect();
            json!({
                "date": day_string(d.day),
                "invoices": d.invoices,
                "earned": earned,
                "operations": operations,
            })
        })
        .collect();
    ok(json!({ "from_ns": from, "to_ns": to, "days": days }))
}

/// What the node earned on a day: the value of its `pay` line items.
pub(crate) fn earned(day: &EarningsDay) -> f64 {
    day.operations
        .iter()
        .filter(|o| o.operation == "pay")
        .map(|o| o.value)
        .sum()
}

fn day_string(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

// ---- logs --------------------------------------------------------------------------

/// `GET /api/logs`
pub async fn logs(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    let p = Params::parse(&uri, LOGS_QUERY)?;
    let access = Access::of(&principal);
    let filter = log_filter(&p, access)?;
    let page = s
        .store
        .call(move |st| st.logs_page(&filter, p.cursor(), p.limit()))
        .await?;
    ok(page_body(page, |e| access.entry(e)))
}

/// The log list's filter from its parameters ([`LOGS_QUERY`]) for a caller with
/// `access`; the route and the page.
pub(crate) fn log_filter(p: &Params, access: Access) -> Result<LogFilter, ApiError> {
    let (from_ns, to_ns) = optional_range(p)?;
    Ok(LogFilter {
        level: p.str("level").map(Level::from_word),
        kind: p.str("kind").and_then(Kind::parse),
        text: p.string("q"),
        text_skips_kinds: access.unsearchable_kinds(),
        execution_id: p.string("execution_id"),
        from_ns,
        to_ns,
    })
}

// ---- stats -------------------------------------------------------------------------

/// Labels of the execution-time and gas buckets (those of the federation protocol).
pub const ELAPSED_BUCKETS: [&str; 8] = [
    "<100ms",
    "100-500ms",
    "500ms-1s",
    "1-5s",
    "5-10s",
    "10-30s",
    "30s-1m",
    ">1m",
];
pub const GAS_BUCKETS: [&str; 5] = ["<100K", "100K-1M", "1M-10M", "10M-100M", ">100M"];

/// Tasks by status; the API's `tasks` object and the dashboard's figures.
#[derive(Default, Serialize)]
pub(crate) struct Counts {
    pub total: i64,
    pub received: i64,
    pub executing: i64,
    pub completed: i64,
    pub failed: i64,
}

impl Counts {
    /// The counts of a range's per-status totals.
    pub(crate) fn of(stats: &TaskStats) -> Counts {
        let mut counts = Counts::default();
        for r in &stats.totals {
            counts.add(r.status, r.tasks);
        }
        counts
    }

    pub(crate) fn add(&mut self, status: Option<TaskStatus>, n: i64) {
        self.total += n;
        match status {
            Some(TaskStatus::Received) => self.received += n,
            Some(TaskStatus::Executing) => self.executing += n,
            Some(TaskStatus::Completed) => self.completed += n,
            Some(TaskStatus::Failed) => self.failed += n,
            None => {}
        }
    }

    pub(crate) fn success_rate(&self) -> Option<f64> {
        let done = self.completed + self.failed;
        (done > 0).then(|| self.completed as f64 / done as f64)
    }
}

/// `GET /api/stats`: task counts, success rate, tasks per hour (per day beyond 7 days),
/// execution-time and gas distributions, cache hit rate; default: the last 24 hours.
/// Figures come from whole UTC hours: `from` is rounded down and `to` up to the hour.
pub async fn stats(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let (from, to) = summary_range(&p, s.clock.now_ns(), 24 * NS_PER_HOUR)?;
    let (from_hour, to_hour) = (from.div_euclid(NS_PER_HOUR), ceil_div(to, NS_PER_HOUR));
    let (first, step) = series_steps(from_hour, to_hour);
    let stats = s
        .store
        .call(move |st| st.task_stats(from_hour, to_hour, first, step))
        .await?;
    ok(stats_json(&stats, from_hour, to_hour))
}

/// The series' first hour and step: hourly up to 7 days, else per UTC day.
fn series_steps(from_hour: i64, to_hour: i64) -> (i64, i64) {
    if to_hour - from_hour <= 7 * 24 {
        (from_hour, 1)
    } else {
        (from_hour.div_euclid(24) * 24, 24)
    }
}

fn stats_json(stats: &TaskStats, from_hour: i64, to_hour: i64) -> Value {
    let (first, step) = series_steps(from_hour, to_hour);
    let hourly = step == 1;
    let points = usize::try_from((to_hour - first + step - 1) / step).unwrap_or(0);
    let mut series: Vec<Counts> = (0..points).map(|_| Counts::default()).collect();
    for (hour, status, n) in &stats.series {
        if let Some(slot) = usize::try_from((hour - first) / step)
            .ok()
            .and_then(|i| series.get_mut(i))
        {
            slot.add(*status, *n);
        }
    }
    let mut counts = Counts::default();
    let (mut elapsed, mut gas) = ([0_i64; 8], [0_i64; 5]);
    let (mut elapsed_n, mut elapsed_sum, mut gas_n, mut gas_sum) = (0, 0, 0, 0);
    let (mut cached, mut cache_known) = (0, 0);
    for r in &stats.totals {
        counts.add(r.status, r.tasks);
        for (a, b) in elapsed.iter_mut().zip(r.elapsed) {
            *a += b;
        }
        for (a, b) in gas.iter_mut().zip(r.gas) {
            *a += b;
        }
        elapsed_n += r.elapsed_n;
        elapsed_sum += r.elapsed_ms_sum;
        gas_n += r.gas_n;
        gas_sum += r.gas_sum;
        cached += r.cached;
        cache_known += r.cache_known;
    }
    let mean = |sum: i64, n: i64| (n > 0).then(|| sum as f64 / n as f64);
    let buckets = |labels: &[&str], counts: &[i64]| -> Vec<Value> {
        labels
            .iter()
            .zip(counts)
            .map(|(l, n)| json!({ "bucket": l, "count": n }))
            .collect()
    };
    let unit_ns = step * NS_PER_HOUR;
    let series: Vec<Value> = series
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "start_ns": (first + i as i64 * step) * NS_PER_HOUR,
                "total": c.total,
                "completed": c.completed,
                "failed": c.failed,
            })
        })
        .collect();
    json!({
        "from_ns": from_hour * NS_PER_HOUR,
        "to_ns": to_hour * NS_PER_HOUR,
        "success_rate": counts.success_rate(),
        "tasks": counts,
        "interval": if hourly { "hour" } else { "day" },
        "interval_ns": unit_ns,
        "series": series,
        "execution_time_ms": {
            "count": elapsed_n,
            "mean": mean(elapsed_sum, elapsed_n),
            "buckets": buckets(&ELAPSED_BUCKETS, &elapsed),
        },
        "gas_used": {
            "count": gas_n,
            "mean": mean(gas_sum, gas_n),
            "buckets": buckets(&GAS_BUCKETS, &gas),
        },
        "cache": {
            "hits": cached,
            "known": cache_known,
            "hit_rate": (cache_known > 0).then(|| cached as f64 / cache_known as f64),
        },
    })
}

// ---- uptime ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownInterval {
    pub start_ns: UnixNanos,
    pub end_ns: UnixNanos,
    /// The event that took the container down (`died`, `stopped`, …).
    pub cause: Option<&'static str>,
    /// Still down at the end of the range.
    pub ongoing: bool,
    /// Its start or end was inferred from the container's inspected state, not seen as
    /// a Docker event (the monitor or the daemon was down then).
    pub inferred: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Uptime {
    pub from_ns: UnixNanos,
    pub to_ns: UnixNanos,
    pub downtime_seconds: f64,
    pub uptime_seconds: f64,
    /// Time before the first recorded event, when the state is not known.
    pub unknown_seconds: f64,
    /// The part of `downtime_seconds` in intervals marked `inferred`.
    pub inferred_downtime_seconds: f64,
    pub down_intervals: Vec<DownInterval>,
}

/// Downtime in `[from, to)` from the last event before the range and the events in it
/// (oldest first).
pub fn compute_uptime(
    before: Option<&ContainerEvent>,
    events: &[ContainerEvent],
    from: UnixNanos,
    to: UnixNanos,
) -> Uptime {
    // None: unknown; Some(true): up; Some(false): down since `down_since`.
    let mut state = before.and_then(|e| e.action.up_after());
    let mut cause = before
        .filter(|e| e.action.up_after() == Some(false))
        .map(|e| e.action.as_str());
    // Whether the event that started the current state was inferred.
    let mut since_inferred = before.is_some_and(|e| e.inferred);
    let mut since = from;
    let (mut down, mut up, mut unknown, mut inferred_down) = (0_i64, 0_i64, 0_i64, 0_i64);
    let mut intervals = Vec::new();
    let mut close = |state: Option<bool>,
                     start: i64,
                     end: i64,
                     cause: Option<&'static str>,
                     ongoing: bool,
                     inferred: bool| {
        if end <= start {
            return;
        }
        match state {
            None => unknown += end - start,
            Some(true) => up += end - start,
            Some(false) => {
                down += end - start;
                if inferred {
                    inferred_down += end - start;
                }
                intervals.push(DownInterval {
                    start_ns: start,
                    end_ns: end,
                    cause,
                    ongoing,
                    inferred,
                });
            }
        }
    };
    for e in events
        .iter()
        .filter(|e| e.time_ns >= from && e.time_ns < to)
    {
        let Some(next) = e.action.up_after() else {
            continue;
        };
        if Some(next) == state {
            continue;
        }
        close(
            state,
            since,
            e.time_ns,
            cause,
            false,
            since_inferred || e.inferred,
        );
        state = Some(next);
        since = e.time_ns;
        since_inferred = e.inferred;
        cause = (!next).then(|| e.action.as_str());
    }
    close(state, since, to, cause, true, since_inferred);
    let secs = |ns: i64| ns as f64 / 1e9;
    Uptime {
        from_ns: from,
        to_ns: to,
        downtime_seconds: secs(down),
        uptime_seconds: secs(up),
        unknown_seconds: secs(unknown),
        inferred_downtime_seconds: secs(inferred_down),
        down_intervals: intervals,
    }
}

/// `GET /api/uptime`: the container's downtime in the range (default: the last 24 hours;
/// the range ends at the latest now).
pub async fn uptime(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let now = s.clock.now_ns();
    let (from, to) = summary_range(&p, now, 24 * NS_PER_HOUR)?;
    let to = to.min(now).max(from);
    let (before, events) = s
        .store
        .call(move |store| {
            Ok((
                store.container_event_before(from)?,
                store.container_events(from, to)?,
            ))
        })
        .await?;
    ok(compute_uptime(before.as_ref(), &events, from, to))
}

// ---- session and keys --------------------------------------------------------------

/// `GET /api/session`: who the caller is.
pub async fn session(Extension(principal): Extension<Principal>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let body = match principal {
        Principal::Session {
            csrf_token,
            expires_ns,
            ..
        } => json!({
            "auth": "session", "scope": "admin", "task_data": true,
            "csrf_token": csrf_token, "expires_ns": expires_ns,
        }),
        Principal::ConfigKey => {
            json!({ "auth": "api_key", "name": "API_KEY", "scope": "admin", "task_data": true })
        }
        Principal::Key { name, scope, id } => json!({
            "auth": "api_key", "id": id, "name": name, "scope": scope,
            "task_data": scope == ApiKeyScope::Admin,
        }),
    };
    ok(body)
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            reason: "API keys are managed with the password or an admin key",
        })
    }
}

/// `GET /api/keys`
pub async fn keys(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    require_admin(&principal)?;
    let keys: Vec<ApiKeyInfo> = s.store.call(|st| st.api_keys()).await?;
    ok(json!({ "items": keys }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    #[serde(default)]
    scope: Option<String>,
}

pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        && !name.trim().is_empty()
}

/// A new named key: the secret (shown once) and the row that keeps its hash; for the
/// API, the dashboard and the CLI alike.
pub fn new_named_key(name: String, scope: ApiKeyScope) -> Result<(String, NewApiKey), ApiError> {
    if !valid_key_name(&name) {
        return Err(ApiError::bad_parameter(
            "name",
            "name must be 1 to 64 of the characters A-Z a-z 0-9 space - _ .",
        ));
    }
    let (key, prefix, hash) = new_api_key();
    let new = NewApiKey {
        name,
        prefix,
        secret_sha256: hash.to_vec(),
        scope,
    };
    Ok((key, new))
}

/// What a second active key of the same name gets.
pub fn key_name_taken(name: &str) -> ApiError {
    ApiError::Conflict {
        message: format!(
            "an active key is already named {name:?}; revoke it or choose another name"
        ),
    }
}

/// Creates a named key and returns it with the one-time secret.
pub async fn create_key(
    store: &Store,
    name: String,
    scope: ApiKeyScope,
    now: UnixNanos,
) -> Result<(String, ApiKeyInfo), ApiError> {
    let (key, new) = new_named_key(name.clone(), scope)?;
    match store.call(move |st| st.create_api_key(new, now)).await? {
        Some(info) => Ok((key, info)),
        None => Err(key_name_taken(&name)),
    }
}

/// `POST /api/keys` with `{"name": …, "scope": "read" | "admin"}`: the key is in the
/// answer, once.
pub async fn post_key(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> ApiResult {
    Params::parse(req.uri(), NO_PARAMS)?;
    require_admin(&principal)?;
    let kind = body_kind(req.headers()).ok_or(ApiError::UnsupportedMediaType {
        expected: "application/json",
    })?;
    if kind != BodyKind::Json {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let body = super::read_body(req).await?;
    let new: NewKeyBody = decode_body(kind, &body)?;
    let scope = match new.scope.as_deref() {
        None => ApiKeyScope::Read,
        Some(s) => ApiKeyScope::parse(s)
            .ok_or_else(|| ApiError::bad_parameter("scope", "scope must be one of read, admin"))?,
    };
    let (key, info) = create_key(&s.store, new.name, scope, s.clock.now_ns()).await?;
    let mut body = serde_json::to_value(info).unwrap_or(Value::Null);
    if let Some(map) = body.as_object_mut() {
        map.insert("key".into(), Value::String(key));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/keys/{id}`
pub async fn delete_key(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    require_admin(&principal)?;
    let id: i64 = path_value(path, KEY_PATH)?
        .parse()
        .map_err(|_| ApiError::bad_parameter("id", "id must be a positive integer"))?;
    match s
        .store
        .call({
            let now = s.clock.now_ns();
            move |st| st.revoke_api_key(KeyRef::Id(id), now)
        })
        .await?
    {
        Some(info) => ok(info),
        None => Err(ApiError::NotFound {
            what: "active API key",
        }),
    }
}

// ---- federation --------------------------------------------------------------------

/// The federation controls, or 503 when the server runs without them.
fn federation(s: &AppState) -> Result<&FederationHandle, ApiError> {
    s.federation.as_ref().ok_or(ApiError::Unavailable)
}

/// Fields of `PUT /api/federation/settings`.
const SETTINGS_FIELDS: &[&str] = &["enabled", "level", "continent"];

/// Decodes a settings change, naming the field that is unknown or invalid.
fn settings_update(body: &[u8]) -> Result<SettingsUpdate, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
        message: e.to_string(),
    })?;
    let Value::Object(map) = &value else {
        return Err(ApiError::BadBody {
            message: "send a JSON object with enabled, level and/or continent".into(),
        });
    };
    for (name, field) in map {
        let message = match name.as_str() {
            "enabled" => (!field.is_boolean()).then_some("enabled must be true or false"),
            "level" => serde_json::from_value::<FederationLevel>(field.clone())
                .is_err()
                .then_some("level must be one of full, strict"),
            "continent" => serde_json::from_value::<Option<Continent>>(field.clone())
                .is_err()
                .then_some("continent must be null or one of AF, AN, AS, EU, NA, OC, SA"),
            other => {
                return Err(ApiError::bad_parameter(
                    other.chars().take(64).collect::<String>(),
                    format!(
                        "unknown field; the body takes {}",
                        SETTINGS_FIELDS.join(", ")
                    ),
                ))
            }
        };
        if let Some(message) = message {
            return Err(ApiError::bad_parameter(name.as_str(), message));
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::BadBody {
        message: e.to_string(),
    })
}

/// `GET /api/federation/status`
pub async fn federation_status(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.status().await?)
}

/// `GET /api/federation/settings`
pub async fn federation_settings(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.settings().await?)
}

/// `PUT /api/federation/settings` with `{"enabled"?, "level"?, "continent"?}`.
pub async fn put_federation_settings(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> ApiResult {
    Params::parse(req.uri(), NO_PARAMS)?;
    require_admin(&principal)?;
    if body_kind(req.headers()) != Some(BodyKind::Json) {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let body = super::read_body(req).await?;
    let update = settings_update(&body)?;
    ok(federation(&s)?.put_settings(update).await?)
}

/// `POST /api/federation/enable` (any body is ignored): the status after the change.
pub async fn federation_enable(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    require_admin(&principal)?;
    ok(federation(&s)?.enable().await?)
}

/// `POST /api/federation/disable` (any body is ignored): the connection is closed and
/// unsent reports discarded before this answers.
pub async fn federation_disable(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    require_admin(&principal)?;
    ok(federation(&s)?.disable().await?)
}

/// `GET /api/federation/reports?limit=`: the transparency log, newest first.
pub async fn federation_reports(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, FEDERATION_REPORTS_QUERY)?;
    let items = federation(&s)?.reports(p.limit()).await?;
    ok(json!({ "items": items }))
}

/// `GET /api/federation/network-stats`: the newest verified statistics, or `null`.
pub async fn federation_network_stats(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.network_stats().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerAction;
    use crate::store::query::HourStats;

    fn ev(t: i64, action: ContainerAction) -> ContainerEvent {
        ContainerEvent {
            container_id: "c".into(),
            container_name: "runner-node".into(),
            time_ns: t,
            action,
            exit_code: None,
            inferred: false,
        }
    }

    #[test]
    fn downtime_is_the_time_between_a_death_and_the_next_start() {
        let before = ev(0, ContainerAction::Started);
        let events = [
            ev(100, ContainerAction::Died),
            ev(150, ContainerAction::Oom),
            ev(400, ContainerAction::Started),
            ev(900, ContainerAction::Stopped),
        ];
        let u = compute_uptime(Some(&before), &events, 50, 1_000);
        assert_eq!(
            u.down_intervals,
            vec![
                DownInterval {
                    start_ns: 100,
                    end_ns: 400,
                    cause: Some("died"),
                    ongoing: false,
                    inferred: false,
                },
                DownInterval {
                    start_ns: 900,
                    end_ns: 1_000,
                    cause: Some("stopped"),
                    ongoing: true,
                    inferred: false,
                },
            ]
        );
        assert_eq!(u.downtime_seconds, 400e-9);
        assert_eq!(u.uptime_seconds, 550e-9);
        assert_eq!(u.unknown_seconds, 0.0);
    }

    #[test]
    fn a_gap_with_an_inferred_end_is_inferred_downtime() {
        let inferred = |t, action| ContainerEvent {
            inferred: true,
            ..ev(t, action)
        };
        let events = [
            ev(0, ContainerAction::Started),
            // Seen: died at 100; the start at 300 was inferred.
            ev(100, ContainerAction::Died),
            inferred(300, ContainerAction::Started),
            // Both ends inferred, then an inferred stop still going on.
            inferred(500, ContainerAction::Died),
            inferred(600, ContainerAction::Started),
            ev(700, ContainerAction::Died),
            ev(800, ContainerAction::Started),
            inferred(900, ContainerAction::Died),
        ];
        let u = compute_uptime(None, &events, 0, 1_000);
        let got: Vec<(i64, i64, bool)> = u
            .down_intervals
            .iter()
            .map(|d| (d.start_ns, d.end_ns, d.inferred))
            .collect();
        assert_eq!(
            got,
            vec![
                (100, 300, true),
                (500, 600, true),
                (700, 800, false),
                (900, 1_000, true)
            ]
        );
        assert_eq!(u.downtime_seconds, 500e-9);
        assert_eq!(u.inferred_downtime_seconds, 400e-9);
    }

    #[test]
    fn time_before_the_first_event_is_unknown_not_down() {
        let u = compute_uptime(None, &[ev(300, ContainerAction::Started)], 0, 1_000);
        assert_eq!(u.unknown_seconds, 300e-9);
        assert_eq!(u.uptime_seconds, 700e-9);
        assert!(u.down_intervals.is_empty());
    }

    #[test]
    fn a_container_down_before_the_range_is_down_from_its_start() {
        let u = compute_uptime(Some(&ev(0, ContainerAction::Died)), &[], 500, 1_000);
        assert_eq!(u.down_intervals.len(), 1);
        assert_eq!(u.down_intervals[0].start_ns, 500);
        assert_eq!(u.downtime_seconds, 500e-9);
    }

    #[test]
    fn stats_sum_hours_into_counts_rates_and_buckets() {
        let row = |hour, status, tasks, e0, g4| HourStats {
            hour,
            status: Some(status),
            tasks,
            elapsed_n: tasks,
            elapsed_ms_sum: tasks * 50,
            elapsed: [e0, 0, 0, 0, 0, 0, 0, 0],
            gas: [0, 0, 0, 0, g4],
            cached: 1,
            cache_known: 2,
            ..HourStats::default()
        };
        let stats = TaskStats {
            totals: vec![
                row(10, TaskStatus::Completed, 3, 3, 3),
                row(10, TaskStatus::Failed, 1, 1, 0),
            ],
            series: vec![
                (10, Some(TaskStatus::Completed), 3),
                (11, Some(TaskStatus::Failed), 1),
            ],
        };
        let v = stats_json(&stats, 10, 12);
        assert_eq!(v["tasks"]["total"], 4);
        assert_eq!(v["success_rate"], 0.75);
        assert_eq!(v["series"][0]["completed"], 3);
        assert_eq!(v["series"][1]["failed"], 1);
        assert_eq!(v["execution_time_ms"]["buckets"][0]["count"], 4);
        assert_eq!(v["execution_time_ms"]["mean"], 50.0);
        assert_eq!(v["gas_used"]["buckets"][4]["count"], 3);
        assert_eq!(v["cache"]["hit_rate"], 0.5);
    }

    #[test]
    fn bucket_edges_and_labels_match_the_federation_protocol() {
        use truebit_protocol::bucket::{ExecTimeBucket, GasBucket};
        // The lower edges the task_hours triggers use (schema.rs).
        let elapsed_edges = [0, 100, 500, 1_000, 5_000, 10_000, 30_000, 60_000];
        for (i, edge) in elapsed_edges.into_iter().enumerate() {
            assert_eq!(
                ExecTimeBucket::from_value(Some(edge)).label(),
                ELAPSED_BUCKETS[i]
            );
            if edge > 0 {
                assert_eq!(
                    ExecTimeBucket::from_value(Some(edge - 1)).label(),
                    ELAPSED_BUCKETS[i - 1]
                );
            }
        }
        let gas_edges = [0, 100_000, 1_000_000, 10_000_000, 100_000_000];
        for (i, edge) in gas_edges.into_iter().enumerate() {
            assert_eq!(GasBucket::from_value(Some(edge)).label(), GAS_BUCKETS[i]);
        }
    }
}
