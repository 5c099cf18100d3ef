//! `GET /api/invoices` and `GET /api/invoices/{id}`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;

use super::{ok, page_body, path_value, ApiResult};
use crate::http::error::ApiError;
use crate::http::filters::{
    optional_range, NO_PARAMS, P_CURSOR, P_EXECUTION, P_FROM, P_LIMIT, P_TO,
};
use crate::http::params::{ParamKind, ParamSpec, Params};
use crate::http::AppState;
use crate::store::query::InvoiceFilter;

pub const INVOICES_QUERY: &[ParamSpec] = &[P_EXECUTION, P_FROM, P_TO, P_LIMIT, P_CURSOR];
pub const INVOICE_PATH: &[ParamSpec] = &[ParamSpec::new(
    "id",
    ParamKind::Int {
        min: 1,
        max: i64::MAX,
    },
    "The invoice's id (its `id` in lists).",
)];

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
