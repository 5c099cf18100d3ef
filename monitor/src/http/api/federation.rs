//! `/api/federation/...`: settings, status, the transparency log, network statistics.

use axum::extract::{Request, State};
use axum::http::{header, Uri};
use axum::response::IntoResponse as _;

use serde_json::Value;

use super::{ok, ApiResult, Items};
use crate::federation::{FederationHandle, SettingsUpdate};
use crate::http::auth::{body_kind, BodyKind};
use crate::http::error::ApiError;
use crate::http::filters::NO_PARAMS;
use crate::http::params::{ParamKind, ParamSpec, Params, MAX_PAGE};
use crate::http::AppState;
use truebit_protocol::report::{Continent, Level as FederationLevel};

pub const FEDERATION_REPORTS_QUERY: &[ParamSpec] = &[ParamSpec::new(
    "limit",
    ParamKind::Int {
        min: 1,
        max: MAX_PAGE,
    },
    "Records to return, newest first (default 50).",
)];

/// `GET /api/federation/uptime-proof` parameters.
pub const UPTIME_PROOF_QUERY: &[ParamSpec] = &[
    ParamSpec::new(
        "from",
        ParamKind::Date,
        "First UTC day of the proof (default: 30 days before `to`).",
    ),
    ParamSpec::new(
        "to",
        ParamKind::Date,
        "Last UTC day of the proof, inclusive (default: yesterday); at most 31 days after `from`.",
    ),
];

/// The federation controls, or 503 when the server runs without them.
fn federation(s: &AppState) -> Result<&FederationHandle, ApiError> {
    s.federation.as_ref().ok_or(ApiError::Unavailable)
}

/// Fields of `PUT /api/federation/settings`.
const SETTINGS_FIELDS: &[&str] = &["enabled", "level", "continent"];

/// Decodes a settings change, naming the field that is unknown or invalid.
fn settings_update(body: &[u8]) -> Result<SettingsUpdate, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
        message: e.to_string(),
    })?;
    let Value::Object(map) = &value else {
        return Err(ApiError::BadBody {
            message: "send a JSON object with enabled, level and/or continent".into(),
        });
    };
    for (name, field) in map {
        let message = match name.as_str() {
            "enabled" => (!field.is_boolean()).then_some("enabled must be true or false"),
            "level" => serde_json::from_value::<FederationLevel>(field.clone())
                .is_err()
                .then_some("level must be one of full, strict"),
            "continent" => serde_json::from_value::<Option<Continent>>(field.clone())
                .is_err()
                .then_some("continent must be null or one of AF, AN, AS, EU, NA, OC, SA"),
            other => {
                return Err(ApiError::bad_parameter(
                    other.chars().take(64).collect::<String>(),
                    format!(
                        "unknown field; the body takes {}",
                        SETTINGS_FIELDS.join(", ")
                    ),
                ))
            }
        };
        if let Some(message) = message {
            return Err(ApiError::bad_parameter(name.as_str(), message));
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::BadBody {
        message: e.to_string(),
    })
}

/// `GET /api/federation/status`
pub async fn federation_status(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.status().await?)
}

/// `GET /api/federation/settings`
pub async fn federation_settings(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.settings().await?)
}

/// `PUT /api/federation/settings` with `{"enabled"?, "level"?, "continent"?}`.
pub async fn put_federation_settings(State(s): State<AppState>, req: Request) -> ApiResult {
    Params::parse(req.uri(), NO_PARAMS)?;
    if body_kind(req.headers()) != Some(BodyKind::Json) {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let body = crate::http::read_body(req).await?;
    let update = settings_update(&body)?;
    ok(federation(&s)?.put_settings(update).await?)
}

/// `POST /api/federation/enable` (any body is ignored): the status after the change.
pub async fn federation_enable(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.enable().await?)
}

/// `POST /api/federation/disable` (any body is ignored): the connection is closed and
/// unsent reports discarded before this answers.
pub async fn federation_disable(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.disable().await?)
}

/// `GET /api/federation/reports?limit=`: the transparency log, newest first.
pub async fn federation_reports(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, FEDERATION_REPORTS_QUERY)?;
    let items = federation(&s)?.reports(p.limit()).await?;
    ok(Items { items })
}

/// `GET /api/federation/network-stats`: the newest verified statistics, or `null`.
pub async fn federation_network_stats(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    ok(federation(&s)?.network_stats().await)
}

/// `GET /api/federation/uptime-proof?from=&to=`: this node's uptime proof from the hub,
/// verified against the pinned keys, as a download (`uptime-proof-FROM-TO.json`).
pub async fn federation_uptime_proof(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, UPTIME_PROOF_QUERY)?;
    let (period, proof) = federation(&s)?
        .uptime_proof(p.str("from"), p.str("to"))
        .await?;
    let mut json = proof.to_json_pretty();
    json.push(b'\n');
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", period.file_name()),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        json,
    )
        .into_response())
}
