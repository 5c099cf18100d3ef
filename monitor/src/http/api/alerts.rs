//! `/api/alerts/...`: the rules with their states, the channels (never their addresses or
//! secrets) with their delivery results, the incident history, a rule's settings, a
//! channel's test message, and channels defined, changed and deleted (secrets
//! write-only).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse as _;
use axum::Json;
use serde_json::Value;

use super::{ok, path_value, ApiResult, Items};
use crate::alerts::handle::{ChannelChangeError, ChannelPatch, RuleUpdate, UpdateError};
use crate::alerts::{AlertError, AlertsHandle, ChannelSpec};
use crate::http::auth::{body_kind, BodyKind};
use crate::http::error::ApiError;
use crate::http::filters::NO_PARAMS;
use crate::http::params::{ParamKind, ParamSpec, Params, MAX_PAGE};
use crate::http::AppState;

const RULE_IDS: &[&str] = &[
    "container_down",
    "restart_loop",
    "silence",
    "no_tasks",
    "failure_rate",
    "docker_unreachable",
    "db_write",
    "federation",
];

pub const RULE_PATH: &[ParamSpec] = &[ParamSpec::new(
    "rule",
    ParamKind::Enum(RULE_IDS),
    "The rule's id.",
)];

pub const CHANNEL_PATH: &[ParamSpec] = &[ParamSpec::new(
    "channel",
    ParamKind::Id,
    "The channel's name (a configured channel is named after its kind: webhook, telegram, discord, slack, ntfy, email).",
)];

pub const INCIDENTS_QUERY: &[ParamSpec] = &[ParamSpec::new(
    "limit",
    ParamKind::Int {
        min: 1,
        max: MAX_PAGE,
    },
    "Incidents to return, newest first (default 50).",
)];

/// The alerts, or 503 when the server runs without them.
fn alerts(s: &AppState) -> Result<&AlertsHandle, ApiError> {
    s.alerts.as_ref().ok_or(ApiError::Unavailable)
}

/// `GET /api/alerts`
pub async fn overview(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(alerts(&s)?.overview().await?)
}

/// `GET /api/alerts/incidents?limit=`
pub async fn incidents(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, INCIDENTS_QUERY)?;
    let limit = u32::try_from(p.limit()).unwrap_or(u32::MAX);
    let items = alerts(&s)?.incidents(limit).await?;
    ok(Items { items })
}

/// Fields of `PUT /api/alerts/rules/{rule}`.
const RULE_FIELDS: &[&str] = &[
    "enabled",
    "after_seconds",
    "count",
    "window_seconds",
    "percent",
];

/// Decodes a rule change, naming the field that is unknown or of the wrong type.
fn rule_update(body: &[u8]) -> Result<RuleUpdate, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
        message: e.to_string(),
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::BadBody {
            message: format!("send a JSON object with {}", RULE_FIELDS.join(", ")),
        });
    };
    let mut update = RuleUpdate::default();
    for (name, field) in &map {
        let number = || {
            field.as_u64().ok_or_else(|| {
                ApiError::bad_parameter(name.as_str(), format!("{name} must be a whole number"))
            })
        };
        match name.as_str() {
            "enabled" => {
                update.enabled = Some(field.as_bool().ok_or_else(|| {
                    ApiError::bad_parameter("enabled", "enabled must be true or false")
                })?);
            }
            "after_seconds" => update.after_seconds = Some(number()?),
            "count" => update.count = Some(number()?),
            "window_seconds" => update.window_seconds = Some(number()?),
            "percent" => update.percent = Some(number()?),
            other => {
                return Err(ApiError::bad_parameter(
                    other.chars().take(64).collect::<String>(),
                    format!("unknown field; the body takes {}", RULE_FIELDS.join(", ")),
                ))
            }
        }
    }
    Ok(update)
}

/// `PUT /api/alerts/rules/{rule}` with `{"enabled"?, "after_seconds"?, "count"?,
/// "window_seconds"?, "percent"?}`: the rule after the change.
pub async fn put_rule(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> ApiResult {
    let id = path_value(path, RULE_PATH)?;
    Params::parse(req.uri(), NO_PARAMS)?;
    if body_kind(req.headers()) != Some(BodyKind::Json) {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let body = crate::http::read_body(req).await?;
    let update = rule_update(&body)?;
    match alerts(&s)?.update_rule(&id, update).await {
        Ok(rule) => ok(rule),
        Err(UpdateError::UnknownRule(_)) => Err(ApiError::NotFound { what: "alert rule" }),
        Err(UpdateError::Invalid { field, message }) => Err(ApiError::bad_parameter(
            field,
            format!("{field}: {message}"),
        )),
        Err(UpdateError::Store(e)) => Err(e.into()),
    }
}

/// The longest value of a channel's field (the schema's `maxLength`).
const MAX_FIELD_CHARS: usize = 2048;

/// The settings a channel's body may carry, besides `name` (only in a creation).
const CHANNEL_FIELDS: &[&str] = &["kind", "url", "secret", "chat_id", "to", "from"];

/// Decodes a channel's body: an object of strings (or `null`, which unsets the field), naming
/// the field that is unknown or not a string.
fn channel_body(
    req_body: &[u8],
    with_name: bool,
) -> Result<(Option<String>, ChannelPatch), ApiError> {
    let value: Value = serde_json::from_slice(req_body).map_err(|e| ApiError::BadBody {
        message: e.to_string(),
    })?;
    let fields = if with_name {
        format!("name, {}", CHANNEL_FIELDS.join(", "))
    } else {
        CHANNEL_FIELDS.join(", ")
    };
    let Value::Object(map) = value else {
        return Err(ApiError::BadBody {
            message: format!("send a JSON object with {fields}"),
        });
    };
    let mut name = None;
    let mut patch = ChannelPatch::default();
    for (key, field) in map {
        let text = match field {
            Value::String(t) => t,
            Value::Null => String::new(),
            _ => {
                return Err(ApiError::bad_parameter(
                    key.chars().take(64).collect::<String>(),
                    format!(
                        "{} must be a string",
                        key.chars().take(64).collect::<String>()
                    ),
                ))
            }
        };
        if text.chars().count() > MAX_FIELD_CHARS {
            return Err(ApiError::bad_parameter(
                key.chars().take(64).collect::<String>(),
                format!(
                    "{} is longer than {MAX_FIELD_CHARS} characters",
                    key.chars().take(64).collect::<String>()
                ),
            ));
        }
        let slot = match key.as_str() {
            "name" if with_name => &mut name,
            "kind" => &mut patch.kind,
            "url" => &mut patch.url,
            "secret" => &mut patch.secret,
            "chat_id" => &mut patch.chat_id,
            "to" => &mut patch.to,
            "from" => &mut patch.from,
            other => {
                return Err(ApiError::bad_parameter(
                    other.chars().take(64).collect::<String>(),
                    format!("unknown field; the body takes {fields}"),
                ))
            }
        };
        *slot = Some(text);
    }
    Ok((name, patch))
}

/// A refused channel change as the API answers it.
pub(crate) fn channel_change_error(e: ChannelChangeError) -> ApiError {
    match e {
        ChannelChangeError::Unknown(_) => ApiError::NotFound {
            what: "alert channel",
        },
        ChannelChangeError::Exists(_) => ApiError::Conflict {
            message: e.to_string(),
        },
        ChannelChangeError::Invalid(e) => ApiError::bad_parameter(e.field.as_str(), e.to_string()),
        ChannelChangeError::Store(e) => e.into(),
    }
}

/// A JSON body, or 415.
async fn json_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    Params::parse(req.uri(), NO_PARAMS)?;
    if body_kind(req.headers()) != Some(BodyKind::Json) {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    crate::http::read_body(req).await
}

/// `POST /api/alerts/channels` with `{"name", "kind", "url"?, "secret"?, "chat_id"?,
/// "to"?, "from"?}`: 201 with the channel (never its settings' values).
pub async fn post_channel(State(s): State<AppState>, req: Request) -> ApiResult {
    let body = json_body(req).await?;
    let (name, patch) = channel_body(&body, true)?;
    let name = name.ok_or_else(|| ApiError::bad_parameter("name", "name: missing"))?;
    let kind = patch
        .kind
        .clone()
        .ok_or_else(|| ApiError::bad_parameter("kind", "kind: missing"))?;
    let spec = ChannelSpec {
        name,
        kind,
        url: patch.url,
        secret: patch.secret,
        chat_id: patch.chat_id,
        to: patch.to,
        from: patch.from,
    };
    let channel = alerts(&s)?
        .create_channel(spec)
        .await
        .map_err(channel_change_error)?;
    Ok((StatusCode::CREATED, Json(channel)).into_response())
}

/// `PUT /api/alerts/channels/{channel}` with any of `{"kind", "url", "secret", "chat_id",
/// "to", "from"}`: absent fields stay, `null` or `""` unsets one.
pub async fn put_channel(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> ApiResult {
    let name = path_value(path, CHANNEL_PATH)?;
    let body = json_body(req).await?;
    let (_, patch) = channel_body(&body, false)?;
    ok(alerts(&s)?
        .update_channel(&name, patch)
        .await
        .map_err(channel_change_error)?)
}

/// `DELETE /api/alerts/channels/{channel}`: the channel as it was (its last delivery
/// figures); what was queued for it is dropped.
pub async fn delete_channel(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> ApiResult {
    let name = path_value(path, CHANNEL_PATH)?;
    Params::parse(&uri, NO_PARAMS)?;
    ok(alerts(&s)?
        .delete_channel(&name)
        .await
        .map_err(channel_change_error)?)
}

/// `POST /api/alerts/channels/{channel}/test` (any body is ignored): sends a test message
/// now; `sent` says whether the channel took it, `error` why not.
pub async fn test_channel(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> ApiResult {
    let name = path_value(path, CHANNEL_PATH)?;
    Params::parse(&uri, NO_PARAMS)?;
    match alerts(&s)?.test_channel(&name).await {
        Ok(result) => ok(result),
        Err(AlertError::UnknownChannel { .. }) => Err(ApiError::NotFound {
            what: "alert channel",
        }),
        Err(AlertError::Store(e)) => Err(e.into()),
        Err(AlertError::Send { error, .. }) => Err(ApiError::Internal {
            cause: error.to_string(),
        }),
    }
}

/// The rule ids this module documents are the engine's.
#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_rule_ids_are_the_engines() {
        let ids: Vec<&str> = crate::alerts::Rule::RULES.iter().map(|r| r.id()).collect();
        assert_eq!(ids, super::RULE_IDS);
    }
}
