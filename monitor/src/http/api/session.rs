//! `GET /api/session`: who the caller is.

use axum::http::Uri;
use axum::Extension;
use serde::Serialize;

use super::{ok, ApiResult};
use crate::http::auth::Principal;
use crate::http::filters::NO_PARAMS;
use crate::http::params::Params;
use crate::store::auth::ApiKeyScope;

/// The answer of `GET /api/session` (schema `Session`): how the caller authenticated.
#[derive(Default, Serialize)]
struct Session {
    auth: &'static str,
    scope: &'static str,
    task_data: bool,
    /// A named key's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    /// A key's name (`API_KEY` for the configured one).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// A login session's CSRF token and expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_ns: Option<i64>,
}

/// `GET /api/session`: who the caller is.
pub async fn session(Extension(principal): Extension<Principal>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let body = match principal {
        Principal::Session {
            csrf_token,
            expires_ns,
            ..
        } => Session {
            auth: "session",
            scope: ApiKeyScope::Admin.as_str(),
            task_data: true,
            csrf_token: Some(csrf_token),
            expires_ns: Some(expires_ns),
            ..Session::default()
        },
        Principal::ConfigKey => Session {
            auth: "api_key",
            scope: ApiKeyScope::Admin.as_str(),
            task_data: true,
            name: Some("API_KEY".into()),
            ..Session::default()
        },
        Principal::Key { name, scope, id } => Session {
            auth: "api_key",
            scope: scope.as_str(),
            task_data: scope == ApiKeyScope::Admin,
            id: Some(id),
            name: Some(name),
            ..Session::default()
        },
    };
    ok(body)
}
