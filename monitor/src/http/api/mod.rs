//! The JSON routes under `/api`, one module per resource. Each handler validates its
//! parameters (declared once in the `*_QUERY` / `*_PATH` specs, which also feed the
//! OpenAPI document), reads through the store's typed methods off the runtime, and
//! shapes the answer. Whether a route needs admin rights is the route table's to say
//! ([`super::routes`]); the router enforces it.

pub mod alerts;
pub mod earnings;
pub mod export;
pub mod federation;
pub mod invoices;
pub mod keys;
pub mod logs;
pub mod session;
pub mod stats;
pub mod status;
pub mod tasks;
pub mod uptime;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::figures::NS_PER_DAY;
use super::filters::{P_FROM, P_TO};
use super::params::{format_cursor, path_param, ParamSpec, Params};
use crate::store::query::Page;

/// Longest range of the summary routes (stats, uptime, earnings).
const MAX_RANGE_DAYS: i64 = 366;

pub const RANGE_QUERY: &[ParamSpec] = &[P_FROM, P_TO];

type ApiResult = Result<Response, ApiError>;

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

/// A whole list (`{"items": [...]}`, schemas `ApiKeyList`, `FederationReportList`).
#[derive(Debug, Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
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

/// `from`/`to` with defaults (`to` = now, `from` = `to` − `default_span`), at most
/// [`MAX_RANGE_DAYS`] apart.
pub(crate) fn summary_range(
    p: &Params,
    now: i64,
    default_span: i64,
) -> Result<(i64, i64), ApiError> {
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
