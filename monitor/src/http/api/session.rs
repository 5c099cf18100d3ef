//! `GET /api/session`: who the caller is.

use axum::http::Uri;
use axum::Extension;
use serde_json::json;

use super::{ok, ApiResult};
use crate::http::auth::Principal;
use crate::http::filters::NO_PARAMS;
use crate::http::params::Params;
use crate::store::auth::ApiKeyScope;

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
