//! Store rows -> the view models' rows, and the query-string handling the list pages
//! share (forms send empty fields; `datetime-local` sends times without a zone).

use axum::http::Uri;
use truebit_web::format::{self, NONE};
use truebit_web::page::{InvoiceView, LineItemView, LogRow, Pager, Stamp, TaskRow};

use crate::model::{Level, TaskStatus};
use crate::store::{StoredEntry, StoredInvoice, Task};

pub fn status_class(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Completed => "ok",
        TaskStatus::Failed => "bad",
        TaskStatus::Executing => "warn",
        TaskStatus::Received => "info",
    }
}

pub fn level_class(level: Option<&Level>) -> &'static str {
    match level {
        Some(Level::Error) => "bad",
        Some(Level::Warn) => "warn",
        Some(Level::Info) => "info",
        _ => "",
    }
}

/// A task's moment on one clock for every page: the node's own clock (what it printed,
/// whole seconds), else Docker's receive time. Docker's times bunch up when lines arrive
/// in a burst (a catch-up after a restart, an import), the node's do not; task lists are
/// ordered by the node's clock too.
pub fn task_time_ns(ns: Option<i64>, ms: Option<i64>) -> Option<i64> {
    ms.map(|ms| ms.saturating_mul(1_000_000)).or(ns)
}

/// When the task was received.
pub fn received(task: &Task) -> Option<Stamp> {
    task_time_ns(task.received_ns, task.received_ms).map(Stamp::of_ns)
}

pub fn elapsed_ms(task: &Task) -> Option<u64> {
    task.elapsed_ms.or(task.elapsed_ns.map(|ns| ns / 1_000_000))
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or_else(
        || NONE.to_owned(),
        |n| format::thousands(i64::try_from(n).unwrap_or(i64::MAX)),
    )
}

pub fn task_row(task: &Task) -> TaskRow {
    TaskRow {
        execution_id: task.execution_id.clone(),
        short_id: format::short_id(&task.execution_id),
        status: task.status.as_str().to_owned(),
        status_class: status_class(task.status),
        chain: format::clip(
            &task
                .chain_id
                .as_deref()
                .map_or_else(|| NONE.to_owned(), format::chain),
            TaskRow::CHAIN_CHARS,
        ),
        chain_full: task.chain_id.clone().unwrap_or_else(|| NONE.to_owned()),
        received: received(task),
        duration: format::opt_duration_ms(elapsed_ms(task)),
        gas: opt_u64(task.gas_used),
        memory: opt_u64(task.memory_peak),
        cached: match task.cached {
            Some(true) => "hit".to_owned(),
            Some(false) => "miss".to_owned(),
            None => NONE.to_owned(),
        },
        reason: task
            .error
            .as_deref()
            .map_or_else(String::new, |e| format::clip(e, TaskRow::REASON_CHARS)),
        reason_full: task.error.clone().unwrap_or_default(),
    }
}

pub fn log_row(e: &StoredEntry) -> LogRow {
    LogRow {
        id: e.id,
        at: Stamp::of_ns(e.time_ns),
        level: e
            .level
            .as_ref()
            .map_or_else(|| "none".to_owned(), |l| l.as_str().to_owned()),
        level_class: level_class(e.level.as_ref()),
        kind: e.kind.as_str().to_owned(),
        execution_id: e.execution_id.clone(),
        short_id: e
            .execution_id
            .as_deref()
            .map(format::short_id)
            .unwrap_or_default(),
        message: e.message.clone(),
        head: LogRow::head_of(&e.message),
    }
}

fn price(p: Option<&str>) -> Option<f64> {
    p.and_then(|p| p.trim().parse::<f64>().ok())
}

/// The value of one invoice's `pay` items, the way the earnings figures count it
/// (steps × step gas price + memory × byte gas price, where both are numbers).
pub fn invoice_earned(inv: &StoredInvoice) -> Option<f64> {
    let (step, byte) = (
        price(inv.step_gas_price.as_deref()),
        price(inv.byte_gas_price.as_deref()),
    );
    let mut total = None;
    for li in inv.line_items.iter().filter(|li| li.operation == "pay") {
        let steps = li.steps_value.zip(step).map(|(s, p)| s as f64 * p);
        let memory = li.memory_value.zip(byte).map(|(m, p)| m as f64 * p);
        if steps.is_some() || memory.is_some() {
            *total.get_or_insert(0.0) += steps.unwrap_or(0.0) + memory.unwrap_or(0.0);
        }
    }
    total
}

/// Earnings as shown on pages: whole gas units with separators.
pub fn gas_value(v: f64) -> String {
    format::thousands(v.round() as i64)
}

pub fn invoice_view(inv: &StoredInvoice) -> InvoiceView {
    InvoiceView {
        id: inv.id,
        invoice_id: inv
            .invoice_id
            .map_or_else(|| NONE.to_owned(), |n| n.to_string()),
        execution_id: inv.execution_id.clone(),
        short_id: inv
            .execution_id
            .as_deref()
            .map(format::short_id)
            .unwrap_or_default(),
        at: Stamp::of_ns(inv.time_ns),
        step_gas_price: inv
            .step_gas_price
            .clone()
            .unwrap_or_else(|| NONE.to_owned()),
        byte_gas_price: inv
            .byte_gas_price
            .clone()
            .unwrap_or_else(|| NONE.to_owned()),
        items: inv
            .line_items
            .iter()
            .map(|li| LineItemView {
                operation: li.operation.clone(),
                class: match li.operation.as_str() {
                    "pay" => "ok",
                    "penalty" => "bad",
                    "charge" => "info",
                    _ => "",
                },
                account: li.account.clone().unwrap_or_default(),
                account_short: li
                    .account
                    .as_deref()
                    .map_or_else(|| NONE.to_owned(), format::short_address),
                steps: li
                    .steps_value
                    .map(format::thousands)
                    .or(li.steps.clone())
                    .unwrap_or_else(|| NONE.to_owned()),
                memory: li
                    .memory_value
                    .map(format::thousands)
                    .or(li.memory.clone())
                    .unwrap_or_else(|| NONE.to_owned()),
            })
            .collect(),
        earned: invoice_earned(inv).map_or_else(|| NONE.to_owned(), gas_value),
    }
}

/// The query pairs of a list page as the form sent them, without empty fields, with
/// `datetime-local` values (`2026-11-21T10:05`) read as UTC.
pub fn form_pairs(uri: &Uri) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    pairs
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| {
            let v = v.trim().to_owned();
            let v = if (k == "from" || k == "to") && is_local_datetime(&v) {
                if v.len() == 16 {
                    format!("{v}:00Z")
                } else {
                    format!("{v}Z")
                }
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

fn is_local_datetime(v: &str) -> bool {
    let b = v.as_bytes();
    (b.len() == 16 || b.len() == 19)
        && b[4] == b'-'
        && b[10] == b'T'
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'T' | b':'))
}

/// A URI with these pairs as its query, for [`crate::http::params::Params::parse`].
pub fn uri_of(path: &str, pairs: &[(String, String)]) -> Uri {
    let q = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let s = if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    };
    s.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

/// The query of a download link with the page's filters `keep` (no cursor): the same
/// words the list took, which the export routes take too.
pub fn export_query(pairs: &[(String, String)], keep: &[&str]) -> String {
    let kept: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// The value of `name` for a form field (`from`/`to` back in `datetime-local` form).
pub fn field(pairs: &[(String, String)], name: &str) -> String {
    let v = pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if (name == "from" || name == "to") && v.ends_with('Z') && v.len() == 20 {
        v[..19].to_owned()
    } else {
        v
    }
}

/// Links to the newest page and the next one, keeping the filters.
pub fn pager(path: &str, pairs: &[(String, String)], next: Option<String>) -> Pager {
    let filters: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "cursor")
        .cloned()
        .collect();
    let on_later_page = pairs.iter().any(|(k, _)| k == "cursor");
    let link = |extra: Option<(String, String)>| {
        let mut p = filters.clone();
        p.extend(extra);
        uri_of(path, &p).to_string()
    };
    Pager {
        first: on_later_page.then(|| link(None)),
        next: next.map(|c| link(Some(("cursor".to_owned(), c)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_form_fields_are_dropped_and_local_times_read_as_utc() {
        let uri: Uri = "/tasks?status=&chain=43113&from=2026-11-21T10%3A05&to="
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let pairs = form_pairs(&uri);
        assert_eq!(
            pairs,
            vec![
                ("chain".to_owned(), "43113".to_owned()),
                ("from".to_owned(), "2026-11-21T10:05:00Z".to_owned())
            ]
        );
        assert_eq!(field(&pairs, "from"), "2026-11-21T10:05:00");
        assert_eq!(field(&pairs, "status"), "");
    }

    #[test]
    fn pager_keeps_filters_and_replaces_the_cursor() {
        let pairs = vec![
            ("status".to_owned(), "failed".to_owned()),
            ("cursor".to_owned(), "5.1".to_owned()),
        ];
        let p = pager("/tasks", &pairs, Some("3.9".to_owned()));
        assert_eq!(p.first.as_deref(), Some("/tasks?status=failed"));
        assert_eq!(p.next.as_deref(), Some("/tasks?status=failed&cursor=3.9"));
        let p = pager("/tasks", &[], None);
        assert_eq!(p, Pager::default());
    }
}
