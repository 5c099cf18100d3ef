//! `GET /api/tasks` and `GET /api/tasks/{execution_id}`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::IntoResponse;
use axum::Extension;
use serde::Serialize;
use serde_json::Value;

use super::{ok, path_value, ApiResult};
use crate::http::auth::Principal;
use crate::http::filters::{task_detail, task_filter, NO_PARAMS, TASKS_QUERY};
use crate::http::params::{format_cursor, ParamKind, ParamSpec, Params};
use crate::http::redact::Access;
use crate::http::AppState;
use crate::store::{StoredEntry, StoredInvoice, Task};

pub const TASK_PATH: &[ParamSpec] = &[ParamSpec::new(
    "execution_id",
    ParamKind::Id,
    "The task's execution id.",
)];

/// `GET /api/tasks`
pub async fn tasks(
    State(s): State<AppState>,
    Extension(principal): Extension<Principal>,
    uri: Uri,
) -> ApiResult {
    let access = Access::of(&principal);
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
        out.push_str(&list_task_json(access.task(task)));
    }
    out.push_str("],\"next_cursor\":");
    out.push_str(&serde_json::to_string(&page.next.map(format_cursor)).unwrap_or_default());
    out.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// A task of a list as JSON text, without the `input` and `output` keys (lists never
/// read them); the caller has applied its access to the task (`error`).
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

/// The answer of `GET /api/tasks/{execution_id}` (schema `TaskDetail`).
#[derive(Serialize)]
struct Detail {
    /// The task, its input and output `null` unless the caller may see them.
    task: Value,
    data_access: &'static str,
    entries: Vec<StoredEntry>,
    entries_truncated: bool,
    invoices: Vec<StoredInvoice>,
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
    let detail = task_detail(&s.store, id).await?;
    let data_access = if access.visible() {
        "visible"
    } else {
        "hidden: log in with the password or use an admin key to see input and output"
    };
    ok(Detail {
        task: access.task_json(detail.task),
        data_access,
        entries: access.entries(detail.entries),
        entries_truncated: detail.truncated,
        invoices: detail.invoices,
    })
}
