//! `/tasks` (filterable list) and `/tasks/{execution_id}` (one task, everything known).

use axum::extract::{Path, State};
use axum::http::Uri;
use truebit_web::format::{self, NONE};
use truebit_web::page::{Choice, Metric, Stamp, Step, TaskPage, TasksPage};

use super::view::{
    elapsed_ms, export_query, field, form_pairs, invoice_view, log_row, pager, status_class,
    task_row, task_time_ns, uri_of,
};
use super::{layout, render, Operator, PageError, PageResult};
use crate::http::error::ApiError;
use crate::http::filters::{task_detail, task_filter, TaskDetail, STATUSES, TASKS_QUERY};
use crate::http::params::{format_cursor, is_id, Params};
use crate::http::AppState;
use crate::model::TaskStatus;
use crate::store::query::TaskFilter;
use crate::store::Task;

const PAGE: usize = 50;

/// `GET /tasks`
pub async fn list(State(s): State<AppState>, op: Operator, uri: Uri) -> PageResult {
    let pairs = form_pairs(&uri);
    // An invalid filter is explained above the unfiltered list.
    let parsed = Params::parse(&uri_of("/tasks", &pairs), TASKS_QUERY)
        .and_then(|p| Ok((task_filter(&p)?, p.cursor())));
    let (filter, cursor, pairs, error) = match parsed {
        Ok((filter, cursor)) => (filter, cursor, pairs, None),
        Err(e) => (
            TaskFilter::default(),
            None,
            Vec::new(),
            Some(format!("{e}. Showing all tasks.")),
        ),
    };
    let filtered = filter != TaskFilter::default();
    let page = s
        .store
        .call(move |st| st.tasks_page(&filter, cursor, PAGE))
        .await?;
    let view = TasksPage {
        layout: layout(&s, "Tasks", "tasks", &op),
        statuses: Choice::list(STATUSES, &field(&pairs, "status")),
        chain: field(&pairs, "chain"),
        from: field(&pairs, "from"),
        to: field(&pairs, "to"),
        rows: page.items.iter().map(task_row).collect(),
        pager: pager("/tasks", &pairs, page.next.map(format_cursor)),
        filtered,
        error,
        export: export_query(&pairs, &["status", "chain", "from", "to"]),
    };
    render(&view)
}

/// `GET /tasks/{execution_id}`
pub async fn one(State(s): State<AppState>, op: Operator, Path(id): Path<String>) -> PageResult {
    if !is_id(&id) {
        return Err(PageError::Api(ApiError::NotFound { what: "task" }));
    }
    let TaskDetail {
        task,
        entries,
        truncated,
        invoices,
    } = task_detail(&s.store, id).await?;
    let access = op.access();
    let short = format::short_id(&task.execution_id);
    let view = TaskPage {
        layout: layout(&s, &format!("Task {short}"), "tasks", &op),
        execution_id: task.execution_id.clone(),
        status: task.status.as_str().to_owned(),
        status_class: status_class(task.status),
        steps: steps(&task),
        facts: facts(&task),
        metrics: metrics(&task),
        invoices: invoices.iter().map(invoice_view).collect(),
        entries: access.entries(entries).iter().map(log_row).collect(),
        entries_truncated: truncated,
        input: task.input.clone().filter(|_| access.visible()),
        output: task.output.clone().filter(|_| access.visible()),
        error: task.error.clone().filter(|_| access.visible()),
    };
    render(&view)
}

fn steps(t: &Task) -> Vec<Step> {
    let start = task_time_ns(t.received_ns, t.received_ms);
    let step = |label: &str, at: Option<i64>, state: &'static str| Step {
        label: label.to_owned(),
        at: at.map(Stamp::of_ns),
        offset: match (at, start) {
            (Some(a), Some(s)) if a > s => format!(
                "+{}",
                format::duration_ms(u64::try_from((a - s) / 1_000_000).unwrap_or(0))
            ),
            _ => String::new(),
        },
        state: if at.is_some() { state } else { "" },
    };
    let finished = task_time_ns(t.completed_ns, t.completed_ms);
    vec![
        step("Received", start, "done"),
        step("Downloaded", task_time_ns(None, t.downloaded_ms), "done"),
        step("Started", task_time_ns(t.started_ns, t.started_ms), "done"),
        match t.status {
            TaskStatus::Failed => step("Failed", finished, "failed"),
            _ => step("Completed", finished, "done"),
        },
    ]
}

fn m(label: &str, value: impl Into<String>, note: impl Into<String>) -> Metric {
    Metric {
        label: label.to_owned(),
        value: value.into(),
        note: note.into(),
    }
}

fn num(v: Option<u64>) -> String {
    v.map_or_else(
        || NONE.to_owned(),
        |n| format::thousands(i64::try_from(n).unwrap_or(i64::MAX)),
    )
}

fn of_limit(limit: Option<u64>) -> String {
    limit.map_or_else(String::new, |l| format!("of {}", num(Some(l))))
}

fn facts(t: &Task) -> Vec<Metric> {
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| NONE.to_owned());
    vec![
        m("Execution id", t.execution_id.clone(), ""),
        m("Task id", text(&t.task_id), ""),
        m(
            "Chain id",
            t.chain_id
                .as_deref()
                .map_or_else(|| NONE.to_owned(), format::chain),
            "",
        ),
        m(
            "Block",
            t.block_number
                .map_or_else(|| NONE.to_owned(), |b| b.to_string()),
            t.block_hash.clone().unwrap_or_default(),
        ),
        m("Requester", text(&t.requester), ""),
        m("Reward", text(&t.reward), ""),
        m(
            "Created",
            t.created_ms
                .map_or_else(|| NONE.to_owned(), |ms| format::utc(ms * 1_000_000)),
            if t.created_ms.is_some() { "UTC" } else { "" },
        ),
        m(
            "Execution timeout",
            t.execution_timeout_ms
                .map_or_else(|| NONE.to_owned(), format::duration_ms),
            "",
        ),
        m(
            "Solutions",
            match (t.required_solutions, t.total_solutions) {
                (Some(r), Some(n)) => format!("{r} required of {n}"),
                _ => NONE.to_owned(),
            },
            "",
        ),
        m("Gas limit", num(t.gas_limit), ""),
        m(
            "WebAssembly module",
            t.wasm_size.map_or_else(|| NONE.to_owned(), format::bytes),
            t.wasm_hash.clone().unwrap_or_default(),
        ),
    ]
}

fn metrics(t: &Task) -> Vec<Metric> {
    let mut out = Vec::new();
    if let Some(ms) = elapsed_ms(t) {
        let exact = t
            .elapsed_ns
            .map(|ns| {
                format!(
                    "{} ns",
                    format::thousands(i64::try_from(ns).unwrap_or(i64::MAX))
                )
            })
            .unwrap_or_default();
        out.push(m("Execution time", format::duration_ms(ms), exact));
    }
    if let Some(code) = t.exit_code {
        out.push(m(
            "Exit code",
            code.to_string(),
            if code == 0 { "success" } else { "failure" },
        ));
    }
    if t.gas_used.is_some() {
        out.push(m(
            "Gas used (steps)",
            num(t.gas_used),
            of_limit(t.metered_gas_limit.or(t.gas_limit)),
        ));
    }
    if t.memory_peak.is_some() {
        let limit = of_limit(t.metered_memory_limit.or(t.memory_limit));
        out.push(m(
            "Peak memory",
            num(t.memory_peak),
            format!("{limit} (units as reported)").trim().to_owned(),
        ));
    }
    if t.call_peak.is_some() {
        out.push(m(
            "Peak call depth",
            num(t.call_peak),
            of_limit(t.call_limit),
        ));
    }
    if t.frame_peak.is_some() {
        out.push(m(
            "Peak frame size",
            num(t.frame_peak),
            of_limit(t.frame_limit),
        ));
    }
    if let Some(c) = t.cached {
        out.push(m(
            "Module cache",
            if c { "hit" } else { "miss" },
            "whether the compiled module came from the cache",
        ));
    }
    out
}
