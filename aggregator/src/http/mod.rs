//! The read-only HTTP server: statistics API, health, metrics, the public network page.
//! Nothing here shows a node id: handlers only see published statistics and counters.

mod page;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use truebit_protocol::identity::PublicKey;
use truebit_protocol::sign::SignedStats;
use truebit_protocol::stats::NetworkStats;

use crate::metrics::Metrics;
use crate::publisher::Latest;
use crate::store::Store;

/// Most statistics one history request returns (a week of windows), oldest first.
pub const HISTORY_LIMIT: u32 = 2_016;

/// Shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub latest: Latest,
    /// Co-signing: who signed the latest statistics, who disagrees.
    pub certifier: crate::publisher::SharedCertifier,
    pub public_key: PublicKey,
    pub k: u32,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::network_page))
        .route("/static/{name}", get(page::asset))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(latest_stats))
        .route("/api/stats/history", get(history))
        .route("/api/availability", get(availability))
        .route("/api/ingest", get(ingest))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The one error type at the HTTP edge.
#[derive(Debug)]
pub enum ApiError {
    NotFound(&'static str),
    NoStats,
    BadRequest(String),
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, what.to_owned()),
            ApiError::NoStats => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no statistics yet: the first are published within one interval of the start"
                    .to_owned(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store read failed");
        ApiError::Internal
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such page")
}

/// `ok`, or `degraded` while NATS is unreachable or no report feed is being read
/// (always 200: the process is alive and keeps serving the latest figures).
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let has_stats = state
        .latest
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .is_some();
    let s = state.metrics.snapshot();
    let ok = s.nats_connected && s.consuming;
    Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "nats": if s.nats_connected { "connected" } else { "disconnected" },
        "feed": if s.consuming { s.delivery.unwrap_or("none") } else { "none" },
        "stats": has_stats,
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.store.size_bytes()),
    )
        .into_response()
}

fn latest(state: &AppState) -> Option<SignedStats> {
    state
        .latest
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|p| p.signed.clone())
}

async fn latest_stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let signed = latest(&state).ok_or(ApiError::NoStats)?;
    let certification = crate::publisher::lock(&state.certifier).status();
    Ok(Json(json!({
        "stats": signed.stats(),
        "sig": hex::encode(signed.signature().to_bytes()),
        "key": state.public_key.to_string(),
        "certification": certification,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<u64>,
    to: Option<u64>,
}

async fn history(
    State(state): State<AppState>,
    query: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(range) = query.map_err(|_| {
        ApiError::BadRequest("from and to are Unix seconds: ?from=1717200000&to=1717243200".into())
    })?;
    // Defaults: up to the latest statistics, the 24 hours before `to`.
    let to = range
        .to
        .unwrap_or_else(|| latest(&state).map_or(u64::MAX / 2, |s| s.stats().window.as_secs()));
    let from = range.from.unwrap_or(to.saturating_sub(86_400));
    if from > to {
        return Err(ApiError::BadRequest("from is after to".into()));
    }
    let wires = state.store.stats_history(from, to, HISTORY_LIMIT).await?;
    let items: Vec<NetworkStats> = wires
        .iter()
        .filter_map(|w| SignedStats::from_wire(w).ok())
        .map(SignedStats::into_stats)
        .collect();
    Ok(Json(json!({ "items": items, "limit": HISTORY_LIMIT })))
}

async fn availability(State(state): State<AppState>) -> Result<Response, ApiError> {
    let signed = latest(&state).ok_or(ApiError::NoStats)?;
    let s = signed.stats();
    Ok(
        Json(json!({ "window": s.window, "k": s.k, "availability": s.availability }))
            .into_response(),
    )
}

async fn ingest(State(state): State<AppState>) -> Json<crate::metrics::IngestSnapshot> {
    Json(state.metrics.snapshot())
}
