//! `/api/export/...`: downloads of tasks, invoices with their line items, daily earnings
//! (CSV or JSON lines) and the log of a time range (plain text, one line per entry as the
//! node printed it), for any filter the lists take.
//!
//! Streamed: the body is produced a page of [`EXPORT_PAGE`] rows at a time, each page read
//! only when the client has taken the previous one, so memory stays bounded whatever the
//! range. The same authentication and scopes as the lists apply: task input and output are
//! never in a task export (lists do not carry them), and log entries that carry them are
//! hidden from read-only keys exactly as in `GET /api/logs`.
//!
//! CSV: a header row, then one row per task, per invoice line item (the invoice's columns
//! repeated) or per day and operation. A text cell that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream;
use serde_json::Value;

use super::earnings::{day, Day};
use super::{summary_range, ApiResult};
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::figures::NS_PER_DAY;
use crate::http::filters::{
    optional_range, task_filter, P_CHAIN, P_EXECUTION, P_FROM, P_STATUS, P_TO,
};
use crate::http::params::{ParamKind, ParamSpec, Params};
use crate::http::redact::Access;
use crate::http::AppState;
use crate::store::query::{InvoiceFilter, Page, PageKey};
use crate::store::{Store, StoreError, StoredEntry, StoredInvoice, Task};

/// Rows read from the store per piece of the body.
pub const EXPORT_PAGE: usize = 500;

const P_FORMAT: ParamSpec = ParamSpec::new(
    "format",
    ParamKind::Enum(&["csv", "jsonl"]),
    "`csv` (default): a header row, then one row per record; `jsonl`: one JSON object per line.",
);

pub const TASKS_EXPORT_QUERY: &[ParamSpec] = &[P_STATUS, P_CHAIN, P_FROM, P_TO, P_FORMAT];
pub const INVOICES_EXPORT_QUERY: &[ParamSpec] = &[P_EXECUTION, P_FROM, P_TO, P_FORMAT];
pub const EARNINGS_EXPORT_QUERY: &[ParamSpec] = &[P_FROM, P_TO, P_FORMAT];
pub const LOG_EXPORT_QUERY: &[ParamSpec] = &[
    ParamSpec::new(
        "from",
        ParamKind::Time,
        "Start of the range (inclusive); default: 24 hours before `to`.",
    ),
    ParamSpec::new(
        "to",
        ParamKind::Time,
        "End of the range (exclusive); default: now.",
    ),
];

/// The columns of the task CSV, in order: every field of a task in the lists.
pub const TASK_CSV_COLUMNS: &[&str] = &[
    "execution_id",
    "status",
    "task_id",
    "chain_id",
    "block_number",
    "block_hash",
    "requester",
    "reward",
    "created_ms",
    "received_ms",
    "received_ns",
    "downloaded_ms",
    "started_ms",
    "started_ns",
    "completed_ms",
    "completed_ns",
    "exit_code",
    "error",
    "elapsed_ns",
    "elapsed_ms",
    "gas_used",
    "gas_limit",
    "metered_gas_limit",
    "memory_peak",
    "memory_limit",
    "metered_memory_limit",
    "call_limit",
    "call_peak",
    "frame_limit",
    "frame_peak",
    "execution_timeout_ms",
    "required_solutions",
    "total_solutions",
    "wasm_size",
    "wasm_hash",
    "cached",
];

/// The invoice columns of the invoice CSV (then those of the line item).
pub const INVOICE_CSV_COLUMNS: &[&str] = &[
    "id",
    "invoice_id",
    "execution_id",
    "task_id",
    "task_created_ts",
    "step_gas_price",
    "byte_gas_price",
    "time_ns",
    "node_time",
    "received_ns",
];

/// The line item columns of the invoice CSV.
pub const LINE_ITEM_CSV_COLUMNS: &[&str] = &[
    "operation",
    "account",
    "steps",
    "steps_text",
    "memory",
    "memory_text",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
}

impl Format {
    fn of(p: &Params) -> Format {
        if p.str("format") == Some("jsonl") {
            Format::Jsonl
        } else {
            Format::Csv
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// A download: its type, file name and the streamed body.
fn download(content_type: &'static str, file: String, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// The file name: `truebit-WHAT-YYYYMMDDTHHMMSSZ.EXT` (the time of the download).
fn file_name(what: &str, now_ns: i64, extension: &str) -> String {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now_ns.div_euclid(1_000_000_000))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .ok()
        })
        .unwrap_or_default();
    format!("truebit-{what}-{stamp}.{extension}")
}

/// A text cell as a spreadsheet should show it (see the module's documentation).
fn cell_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// The CSV cell of a JSON value: empty for null, numbers and booleans as written.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => cell_text(s),
        Some(other) => other.to_string(),
    }
}

/// CSV records as text (quoted where needed).
fn csv_rows(rows: impl IntoIterator<Item = Vec<String>>) -> Bytes {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to memory fails only on a record of another length, which these
        // functions never build.
        let _ = writer.write_record(&row);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

fn header_row(columns: &[&[&str]]) -> Bytes {
    csv_rows([columns
        .iter()
        .flat_map(|c| c.iter().map(|s| (*s).to_owned()))
        .collect()])
}

/// JSON lines.
fn json_lines(values: impl IntoIterator<Item = Value>) -> Bytes {
    let mut out = Vec::new();
    for v in values {
        if serde_json::to_writer(&mut out, &v).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// The body that reads `fetch` page after page (each after the client took the last),
/// renders each page with `render`, and starts with `head`. A failing read ends the body
/// early (the client sees a cut transfer, not a complete-looking file); it is logged.
fn paged_body<T, F, R>(head: Option<Bytes>, fetch: F, render: R) -> Body
where
    T: Send + 'static,
    F: Fn(Option<PageKey>) -> Result<Page<T>, StoreError> + Send + Sync + Clone + 'static,
    R: Fn(Vec<T>) -> Bytes + Send + Sync + 'static,
{
    type State<F, R> = (Option<Bytes>, Option<Option<PageKey>>, F, R);
    let start: State<F, R> = (head, Some(None), fetch, render);
    Body::from_stream(stream::unfold(
        start,
        |(head, next, fetch, render)| async move {
            if let Some(head) = head {
                return Some((
                    Ok::<Bytes, std::io::Error>(head),
                    (None, next, fetch, render),
                ));
            }
            let cursor = next?;
            let f = fetch.clone();
            let page = match tokio::task::spawn_blocking(move || f(cursor)).await {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "export cut short: the store could not be read");
                    return Some((
                        Err(std::io::Error::other(error.to_string())),
                        (None, None, fetch, render),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "export cut short");
                    return Some((
                        Err(std::io::Error::other(error.to_string())),
                        (None, None, fetch, render),
                    ));
                }
            };
            let after = page.next.map(Some);
            let chunk = render(page.items);
            Some((Ok(chunk), (None, after, fetch, render)))
        },
    ))
}

/// `GET /api/export/tasks?status&chain&from&to&format`: newest first, as in the list.
pub async fn tasks(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    let p = Params::parse(&uri, TASKS_EXPORT_QUERY)?;
    let filter = task_filter(&p)?;
    let format = Format::of(&p);
    let access = Access::of(&principal);
    let store = s.store.clone();
    let fetch = move |after| store.tasks_page(&filter, after, EXPORT_PAGE);
    let json = move |task: Task| {
        let mut v = access.task_json(task);
        if let Some(map) = v.as_object_mut() {
            // As in the lists: a task's data is only on its own page.
            map.remove("input");
            map.remove("output");
        }
        v
    };
    let body = match format {
        Format::Jsonl => paged_body(None, fetch, move |tasks: Vec<Task>| {
            json_lines(tasks.into_iter().map(&json))
        }),
        Format::Csv => paged_body(
            Some(header_row(&[TASK_CSV_COLUMNS])),
            fetch,
            move |tasks: Vec<Task>| {
                csv_rows(tasks.into_iter().map(|t| {
                    let v = json(t);
                    TASK_CSV_COLUMNS.iter().map(|c| cell(v.get(*c))).collect()
                }))
            },
        ),
    };
    let file = file_name("tasks", s.clock.now_ns(), format.extension());
    Ok(download(format.content_type(), file, body))
}

/// `GET /api/export/invoices?execution_id&from&to&format`: newest first; CSV has one row
/// per line item.
pub async fn invoices(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, INVOICES_EXPORT_QUERY)?;
    let (from_ns, to_ns) = optional_range(&p)?;
    let filter = InvoiceFilter {
        execution_id: p.string("execution_id"),
        from_ns,
        to_ns,
    };
    let format = Format::of(&p);
    let store = s.store.clone();
    let fetch = move |after| store.invoices_page(&filter, after, EXPORT_PAGE);
    let body = match format {
        Format::Jsonl => paged_body(None, fetch, |invoices: Vec<StoredInvoice>| {
            json_lines(
                invoices
                    .into_iter()
                    .map(|i| serde_json::to_value(i).unwrap_or(Value::Null)),
            )
        }),
        Format::Csv => paged_body(
            Some(header_row(&[INVOICE_CSV_COLUMNS, LINE_ITEM_CSV_COLUMNS])),
            fetch,
            |invoices: Vec<StoredInvoice>| {
                csv_rows(invoices.into_iter().flat_map(|i| {
                    let v = serde_json::to_value(i).unwrap_or(Value::Null);
                    let head: Vec<String> = INVOICE_CSV_COLUMNS
                        .iter()
                        .map(|c| cell(v.get(*c)))
                        .collect();
                    let items = v
                        .get("line_items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let blank = || vec![String::new(); LINE_ITEM_CSV_COLUMNS.len()];
                    let rows: Vec<Vec<String>> = if items.is_empty() {
                        vec![[head.clone(), blank()].concat()]
                    } else {
                        items
                            .iter()
                            .map(|item| {
                                let tail = LINE_ITEM_CSV_COLUMNS.iter().map(|c| cell(item.get(*c)));
                                head.iter().cloned().chain(tail).collect()
                            })
                            .collect()
                    };
                    rows
                }))
            },
        ),
    };
    let file = file_name("invoices", s.clock.now_ns(), format.extension());
    Ok(download(format.content_type(), file, body))
}

/// The columns of the earnings CSV: one row per day and operation.
pub const EARNINGS_CSV_COLUMNS: &[&str] = &[
    "date",
    "invoices",
    "earned_gas_units",
    "operation",
    "items",
    "steps",
    "memory",
    "value_gas_units",
];

fn earnings_rows(d: &Day) -> Vec<Vec<String>> {
    let head = [d.date.clone(), d.invoices.to_string(), d.earned.to_string()];
    if d.operations.is_empty() {
        return vec![head
            .into_iter()
            .chain(std::iter::repeat_n(String::new(), 5))
            .collect()];
    }
    d.operations
        .iter()
        .map(|(name, o)| {
            head.iter()
                .cloned()
                .chain([
                    cell_text(name),
                    o.items.to_string(),
                    o.steps.to_string(),
                    o.memory.to_string(),
                    o.value.to_string(),
                ])
                .collect()
        })
        .collect()
}

/// `GET /api/export/earnings?from&to&format`: per UTC day, oldest first (default: 30
/// days; at most 366).
pub async fn earnings(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, EARNINGS_EXPORT_QUERY)?;
    let (from, to) = summary_range(&p, s.clock.now_ns(), 30 * NS_PER_DAY)?;
    let format = Format::of(&p);
    // At most 367 days: one read.
    let days: Vec<Day> = s
        .store
        .call(move |st| st.earnings_by_day(from, to))
        .await?
        .into_iter()
        .map(day)
        .collect();
    let body = match format {
        Format::Jsonl => json_lines(
            days.iter()
                .map(|d| serde_json::to_value(d).unwrap_or(Value::Null)),
        ),
        Format::Csv => {
            let mut out = header_row(&[EARNINGS_CSV_COLUMNS]).to_vec();
            out.extend_from_slice(&csv_rows(days.iter().flat_map(earnings_rows)));
            Bytes::from(out)
        }
    };
    let file = file_name("earnings", s.clock.now_ns(), format.extension());
    Ok(download(format.content_type(), file, Body::from(body)))
}

/// An entry as one console line: `YYYY-MM-DD HH:MM:SS level: logger:version message`
/// when the node's parts are known (the line format of docs/LOGFORMAT.md), else the
/// message as received. A message of several lines keeps them.
pub fn printed_line(e: &StoredEntry) -> String {
    let when = e.node_time.and_then(|t| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()?
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
    });
    match (when, e.level.as_ref(), e.logger.as_deref()) {
        (Some(when), Some(level), Some(logger)) => {
            let version = e
                .version
                .as_deref()
                .map(|v| format!(":{v}"))
                .unwrap_or_default();
            format!("{when} {}: {logger}{version} {}", level.as_str(), e.message)
        }
        _ => e.message.clone(),
    }
}

/// `GET /api/export/logs?from&to`: the entries of the range, oldest first, as plain text.
pub async fn logs(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    let p = Params::parse(&uri, LOG_EXPORT_QUERY)?;
    let to = p.time_ns("to").unwrap_or_else(|| s.clock.now_ns());
    let from = p.time_ns("from").unwrap_or(to.saturating_sub(NS_PER_DAY));
    if from >= to {
        return Err(ApiError::bad_parameter("from", "from must be before to"));
    }
    let access = Access::of(&principal);
    let store: Store = s.store.clone();
    let fetch = move |after: Option<PageKey>| {
        let entries = store.entries_in_order(from, to, after, EXPORT_PAGE)?;
        let next = (entries.len() == EXPORT_PAGE)
            .then(|| {
                entries.last().map(|e| PageKey {
                    time: e.time_ns,
                    id: e.id,
                })
            })
            .flatten();
        Ok(Page {
            items: entries,
            next,
        })
    };
    let body = paged_body(None, fetch, move |entries: Vec<StoredEntry>| {
        let mut out = String::new();
        for e in entries {
            out.push_str(&printed_line(&access.entry(e)));
            out.push('\n');
        }
        Bytes::from(out)
    });
    let file = file_name("log", s.clock.now_ns(), "log");
    Ok(download("text/plain; charset=utf-8", file, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_cell_a_spreadsheet_would_run_is_quoted_and_numbers_are_kept() {
        for (text, shown) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("43113", "43113"),
            ("pay", "pay"),
        ] {
            assert_eq!(cell_text(text), shown, "{text:?}");
        }
        assert_eq!(cell(Some(&serde_json::json!(-5))), "-5");
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(None), "");
        let rows = csv_rows([vec![
            "a,b".to_owned(),
            "say \"hi\"".to_owned(),
            "x\ny".to_owned(),
        ]]);
        assert_eq!(&rows[..], b"\"a,b\",\"say \"\"hi\"\"\",\"x\ny\"\n");
    }
}
