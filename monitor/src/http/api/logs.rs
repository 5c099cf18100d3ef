//! `GET /api/logs`: log entries, newest first.

use axum::extract::State;
use axum::http::Uri;
use axum::Extension;

use super::{ok, page_body, ApiResult};
use crate::http::auth::Principal;
use crate::http::filters::{log_filter, LOGS_QUERY};
use crate::http::params::Params;
use crate::http::redact::Access;
use crate::http::AppState;

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
