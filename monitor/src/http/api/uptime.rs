//! `GET /api/uptime`: the container's downtime in a range.

use axum::extract::State;
use axum::http::Uri;

use super::{ok, summary_range, ApiResult, RANGE_QUERY};
use crate::http::figures::{compute_uptime, NS_PER_HOUR};
use crate::http::params::Params;
use crate::http::AppState;

/// `GET /api/uptime`: the container's downtime in the range (default: the last 24 hours;
/// the range ends at the latest now).
pub async fn uptime(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let now = s.clock.now_ns();
    let (from, to) = summary_range(&p, now, 24 * NS_PER_HOUR)?;
    let to = to.min(now).max(from);
    let (before, events) = s
        .store
        .call(move |store| {
            Ok((
                store.container_event_before(from)?,
                store.container_events(from, to)?,
            ))
        })
        .await?;
    ok(compute_uptime(before.as_ref(), &events, from, to))
}
