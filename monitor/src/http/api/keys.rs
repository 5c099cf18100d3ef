//! `/api/keys`: list, create and revoke named API keys (admin only, enforced by the
//! router).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ok, path_value, ApiResult, Items};
use crate::http::auth::{body_kind, decode_body, new_api_key, BodyKind};
use crate::http::error::ApiError;
use crate::http::filters::NO_PARAMS;
use crate::http::params::{ParamKind, ParamSpec, Params};
use crate::http::AppState;
use crate::model::UnixNanos;
use crate::store::auth::{ApiKeyInfo, ApiKeyScope, KeyRef, NewApiKey};
use crate::store::Store;

pub const KEY_PATH: &[ParamSpec] = &[ParamSpec::new(
    "id",
    ParamKind::Int {
        min: 1,
        max: i64::MAX,
    },
    "The key's id.",
)];

/// `GET /api/keys`
pub async fn keys(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let keys: Vec<ApiKeyInfo> = s.store.call(|st| st.api_keys()).await?;
    ok(Items { items: keys })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    /// Absent: `read`. Present, it must be one of the words (`null` is not one).
    #[serde(default, deserialize_with = "present")]
    scope: Option<Value>,
}

/// A field that is there, `null` included (an absent one is the `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The answer of `POST /api/keys`: the key's record and, this once, the key.
#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    info: ApiKeyInfo,
    key: String,
}

pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        && !name.trim().is_empty()
}

/// A new named key: the secret (shown once) and the row that keeps its hash; for the
/// API, the dashboard and the CLI alike.
pub fn new_named_key(name: String, scope: ApiKeyScope) -> Result<(String, NewApiKey), ApiError> {
    if !valid_key_name(&name) {
        return Err(ApiError::bad_parameter(
            "name",
            "name must be 1 to 64 of the characters A-Z a-z 0-9 space - _ .",
        ));
    }
    let (key, prefix, hash) = new_api_key();
    let new = NewApiKey {
        name,
        prefix,
        secret_sha256: hash.to_vec(),
        scope,
    };
    Ok((key, new))
}

/// What a second active key of the same name gets.
pub fn key_name_taken(name: &str) -> ApiError {
    ApiError::Conflict {
        message: format!(
            "an active key is already named {name:?}; revoke it or choose another name"
        ),
    }
}

/// Creates a named key and returns it with the one-time secret.
pub async fn create_key(
    store: &Store,
    name: String,
    scope: ApiKeyScope,
    now: UnixNanos,
) -> Result<(String, ApiKeyInfo), ApiError> {
    let (key, new) = new_named_key(name.clone(), scope)?;
    match store.call(move |st| st.create_api_key(new, now)).await? {
        Some(info) => Ok((key, info)),
        None => Err(key_name_taken(&name)),
    }
}

/// `POST /api/keys` with `{"name": …, "scope": "read" | "admin"}`: the key is in the
/// answer, once.
pub async fn post_key(State(s): State<AppState>, req: Request) -> ApiResult {
    Params::parse(req.uri(), NO_PARAMS)?;
    let kind = body_kind(req.headers()).ok_or(ApiError::UnsupportedMediaType {
        expected: "application/json",
    })?;
    if kind != BodyKind::Json {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let body = crate::http::read_body(req).await?;
    let new: NewKeyBody = decode_body(kind, &body)?;
    let scope = match &new.scope {
        None => ApiKeyScope::Read,
        Some(word) => word
            .as_str()
            .and_then(ApiKeyScope::parse)
            .ok_or_else(|| ApiError::bad_parameter("scope", "scope must be one of read, admin"))?,
    };
    let (key, info) = create_key(&s.store, new.name, scope, s.clock.now_ns()).await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { info, key })).into_response())
}

/// `DELETE /api/keys/{id}`
pub async fn delete_key(
    State(s): State<AppState>,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let id: i64 = path_value(path, KEY_PATH)?
        .parse()
        .map_err(|_| ApiError::bad_parameter("id", "id must be a positive integer"))?;
    match revoke_key(&s, id).await? {
        Some(info) => ok(info),
        None => Err(ApiError::NotFound {
            what: "active API key",
        }),
    }
}

/// Revokes the active key `id` now (the route and the settings page); `None` when there is
/// no such active key.
pub(crate) async fn revoke_key(s: &AppState, id: i64) -> Result<Option<ApiKeyInfo>, ApiError> {
    let now = s.clock.now_ns();
    Ok(s.store
        .call(move |st| st.revoke_api_key(KeyRef::Id(id), now))
        .await?)
}
