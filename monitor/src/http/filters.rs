//! The list filters the JSON API and the dashboard pages share: their parameters (which
//! also feed the OpenAPI document), the filters built from them, and one task's detail.

use super::error::ApiError;
use super::params::{ParamKind, ParamSpec, Params, MAX_PAGE};
use super::redact::Access;
use crate::model::{Kind, Level, TaskStatus};
use crate::store::query::{LogFilter, TaskFilter};
use crate::store::{Store, StoredEntry, StoredInvoice, Task};

/// Log entries shown with one task at most.
const TASK_ENTRIES: usize = 1000;

/// The words of the `status`, `level` and `kind` filters: those of the enums.
pub(crate) const STATUSES: &[&str] = &TaskStatus::WORDS;
pub(crate) const LEVELS: &[&str] = &Level::WORDS;
pub(crate) const KINDS: &[&str] = &Kind::WORDS;

pub(crate) const P_LIMIT: ParamSpec = ParamSpec::new(
    "limit",
    ParamKind::Int {
        min: 1,
        max: MAX_PAGE,
    },
    "Rows per page (default 50).",
);
pub(crate) const P_CURSOR: ParamSpec = ParamSpec::new(
    "cursor",
    ParamKind::Cursor,
    "`next_cursor` of the previous page.",
);
pub(crate) const P_FROM: ParamSpec =
    ParamSpec::new("from", ParamKind::Time, "Start of the range (inclusive).");
pub(crate) const P_TO: ParamSpec =
    ParamSpec::new("to", ParamKind::Time, "End of the range (exclusive).");
pub(crate) const P_EXECUTION: ParamSpec = ParamSpec::new(
    "execution_id",
    ParamKind::Id,
    "Only rows of this execution.",
);

pub const NO_PARAMS: &[ParamSpec] = &[];
pub(crate) const P_STATUS: ParamSpec = ParamSpec::new(
    "status",
    ParamKind::Enum(STATUSES),
    "Only tasks in this state.",
);
pub(crate) const P_CHAIN: ParamSpec = ParamSpec::new(
    "chain",
    ParamKind::Text { max_len: 80 },
    "Only tasks of this chain id.",
);
pub const TASKS_QUERY: &[ParamSpec] = &[P_STATUS, P_CHAIN, P_FROM, P_TO, P_LIMIT, P_CURSOR];
pub const LOGS_QUERY: &[ParamSpec] = &[
    ParamSpec::new(
        "level",
        ParamKind::Enum(LEVELS),
        "Only entries of this level.",
    ),
    ParamSpec::new(
        "kind",
        ParamKind::Enum(KINDS),
        "Only entries of this kind. `log` and the kinds printed for every task (slot_taken, \
         slot_released, task_received, task_downloaded, execution_started, \
         execution_metrics, execution_completed, outcome_published, invoice) examine at most \
         50,000 entries per page: a page may be short and still have a next_cursor.",
    ),
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

/// `a / b` rounded up (`b > 0`).
pub(crate) fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

/// An optional `from`/`to` pair for lists, in ns; `from` must be before `to`.
pub(crate) fn optional_range(p: &Params) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let (from, to) = (p.time_ns("from"), p.time_ns("to"));
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::bad_parameter("from", "from must be before to"));
        }
    }
    Ok((from, to))
}

/// The value of the enum parameter `name`: `None` when it is absent, a 400 for a word the
/// enum does not know (never "no filter").
fn word<T>(
    p: &Params,
    name: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    p.str(name)
        .map(|w| parse(w).ok_or_else(|| ApiError::bad_parameter(name, format!("unknown {name}"))))
        .transpose()
}

/// The task list's filter from its parameters ([`TASKS_QUERY`]); the route and the page.
pub(crate) fn task_filter(p: &Params) -> Result<TaskFilter, ApiError> {
    let (from, to) = optional_range(p)?;
    Ok(TaskFilter {
        status: word(p, "status", TaskStatus::parse)?,
        chain_id: p.string("chain"),
        from_ms: from.map(|ns| ns.div_euclid(1_000_000)),
        to_ms: to.map(|ns| ceil_div(ns, 1_000_000)),
    })
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

/// The log list's filter from its parameters ([`LOGS_QUERY`]) for a caller with
/// `access`; the route and the page.
pub(crate) fn log_filter(p: &Params, access: Access) -> Result<LogFilter, ApiError> {
    let (from_ns, to_ns) = optional_range(p)?;
    Ok(LogFilter {
        level: word(p, "level", |w| {
            Some(Level::from_word(w)).filter(|l| !matches!(l, Level::Other(_)))
        })?,
        kind: word(p, "kind", Kind::parse)?,
        text: p.string("q"),
        text_skips_kinds: access.unsearchable_kinds(),
        execution_id: p.string("execution_id"),
        from_ns,
        to_ns,
    })
}
