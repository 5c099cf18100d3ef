//! `GET /api/status`: node, container, source and database state.

use axum::extract::State;
use axum::http::Uri;
use serde::Serialize;

use super::{ok, ApiResult};
use crate::http::filters::NO_PARAMS;
use crate::http::params::Params;
use crate::http::AppState;
use crate::source::SourceStatus;
use crate::store::WriteHealth;

/// The answer of `GET /api/status` (schema `Status`).
#[derive(Serialize)]
struct Status {
    monitor: Monitor,
    source: SourceStatus,
    node: Node,
    ingest: Ingest,
    database: Database,
}

#[derive(Serialize)]
struct Monitor {
    version: &'static str,
    started_ns: i64,
    now_ns: i64,
}

#[derive(Serialize)]
struct Node {
    version: Option<String>,
    address: Option<String>,
    registered_ns: Option<i64>,
    slots_used: Option<u32>,
    slots_total: Option<u32>,
    last_node_time: Option<i64>,
}

#[derive(Serialize)]
struct Ingest {
    last_log_ns: Option<i64>,
    last_received_ns: Option<i64>,
    last_commit_ns: Option<i64>,
    lag_ms: Option<i64>,
    write: WriteHealthJson,
}

#[derive(Serialize)]
struct Database {
    path: String,
    size_bytes: u64,
}

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
    ok(Status {
        monitor: Monitor {
            version: env!("CARGO_PKG_VERSION"),
            started_ns: s.started_ns,
            now_ns: now,
        },
        source,
        node: Node {
            registered_ns: node
                .registered_ns
                .or(node.registered_ms.map(|ms| ms * 1_000_000)),
            version: node.version,
            address: node.address,
            slots_used: node.slots_used,
            slots_total: node.slots_total,
            last_node_time: node.last_node_time,
        },
        ingest: Ingest {
            last_log_ns: ingest.last_entry_ns,
            last_received_ns: ingest.last_received_ns,
            last_commit_ns: ingest.last_commit_ns,
            lag_ms,
            write: health,
        },
        database: Database {
            path: s.store.path().display().to_string(),
            size_bytes: size,
        },
    })
}
