//! `GET /api/earnings`: invoices and line-item totals per UTC day.

use axum::extract::State;
use axum::http::Uri;
use serde_json::{json, Value};

use super::{ok, summary_range, ApiResult, RANGE_QUERY};
use crate::http::figures::{earned, NS_PER_DAY};
use crate::http::params::Params;
use crate::http::AppState;

/// `GET /api/earnings`: invoices and line-item totals per UTC day (default: 30 days).
pub async fn earnings(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let (from, to) = summary_range(&p, s.clock.now_ns(), 30 * NS_PER_DAY)?;
    let days = s.store.call(move |st| st.earnings_by_day(from, to)).await?;
    let days: Vec<Value> = days
        .into_iter()
        .map(|d| {
            let earned = earned(&d);
            let operations: serde_json::Map<String, Value> = d
                .operations
                .into_iter()
                .map(|o| {
                    (
                        o.operation,
                        json!({ "items": o.items, "steps": o.steps, "memory": o.memory, "value": o.value }),
                    )
                })
                .collect();
            json!({
                "date": day_string(d.day),
                "invoices": d.invoices,
                "earned": earned,
                "operations": operations,
            })
        })
        .collect();
    ok(json!({ "from_ns": from, "to_ns": to, "days": days }))
}

fn day_string(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}
