//! `GET /api/status`: node, container, source and database state.

use serde::Serialize;
use serde_json::json;

use axum::extract::State;
use axum::http::Uri;

use super::{ok, ApiResult};
use crate::http::filters::NO_PARAMS;
use crate::http::params::Params;
use crate::http::AppState;
use crate::store::WriteHealth;

#[derive(Serialize)]
struct WriteHealthJson {
    ok: bool,
    error: Option<String>,
}

/// `GET /api/status`
pub async fn status(State(s): State<AppState>, uri: Uri) -> ApiResult {
    Params::parse(&uri, NO_PARAMS)?;
    let (node, ingest, size) = s
        .store
        .call(|store| {
            Ok((
                store.node_status()?,
                store.ingest_state()?,
                store.db_size_bytes(),
            ))
        })
        .await?;
    let now = s.clock.now_ns();
    let source = s.status.borrow().clone();
    let lag_ms = match (ingest.last_commit_ns, ingest.last_received_ns) {
        (Some(commit), Some(received)) => Some((commit - received).max(0) / 1_000_000),
        _ => None,
    };
    let health = match s.store.write_health() {
        WriteHealth::Ok => WriteHealthJson {
            ok: true,
            error: None,
        },
        WriteHealth::Failing { error, .. } => WriteHealthJson {
            ok: false,
            error: Some(error),
        },
    };
    ok(json!({
        "monitor": {
            "version": env!("CARGO_PKG_VERSION"),
            "started_ns": s.started_ns,
            "now_ns": now,
        },
        "source": source,
        "node": {
            "version": node.version,
            "address": node.address,
            "registered_ns": node.registered_ns.or(node.registered_ms.map(|ms| ms * 1_000_000)),
            "slots_used": node.slots_used,
            "slots_total": node.slots_total,
            "last_node_time": node.last_node_time,
        },
        "ingest": {
            "last_log_ns": ingest.last_entry_ns,
            "last_received_ns": ingest.last_received_ns,
            "last_commit_ns": ingest.last_commit_ns,
            "lag_ms": lag_ms,
            "write": health,
        },
        "database": {
            "path": s.store.path().display().to_string(),
            "size_bytes": size,
        },
    }))
}
