//! `GET /api/earnings`: invoices and line-item totals per UTC day.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Uri;
use serde::Serialize;

use super::{ok, summary_range, ApiResult, RANGE_QUERY};
use crate::http::figures::{earned, Penalties, NS_PER_DAY};
use crate::http::params::Params;
use crate::http::AppState;

/// The answer of `GET /api/earnings` (schema `Earnings`).
#[derive(Serialize)]
struct Earnings {
    from_ns: i64,
    to_ns: i64,
    days: Vec<Day>,
    /// The range's penalty line items: the node's own and other accounts'.
    penalties: Penalties,
}

/// One UTC day's earnings (also a line of the earnings export).
#[derive(Serialize)]
pub(crate) struct Day {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    pub invoices: u64,
    /// Gas units: the `value` of the `pay` line items.
    pub earned: f64,
    pub operations: BTreeMap<String, Operation>,
}

/// Line-item totals of one operation on one day.
#[derive(Serialize)]
pub(crate) struct Operation {
    pub items: u64,
    pub steps: i64,
    pub memory: i64,
    /// Gas units.
    pub value: f64,
}

/// `GET /api/earnings`: invoices and line-item totals per UTC day (default: 30 days).
pub async fn earnings(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let (from, to) = summary_range(&p, s.clock.now_ns(), 30 * NS_PER_DAY)?;
    let (days, penalties) = s
        .store
        .call(move |st| {
            let penalties = Penalties::of(
                st.penalties_by_account(from, to)?,
                st.node_status()?.address,
            );
            Ok((st.earnings_by_day(from, to)?, penalties))
        })
        .await?;
    let days = days.into_iter().map(day).collect();
    ok(Earnings {
        from_ns: from,
        to_ns: to,
        days,
        penalties,
    })
}

/// A day of the store's figures as the API shows it.
pub(crate) fn day(d: crate::store::query::EarningsDay) -> Day {
    Day {
        date: day_string(d.day),
        invoices: d.invoices,
        earned: earned(&d),
        operations: d
            .operations
            .into_iter()
            .map(|o| {
                let totals = Operation {
                    items: o.items,
                    steps: o.steps,
                    memory: o.memory,
                    value: o.value,
                };
                (o.operation, totals)
            })
            .collect(),
    }
}

fn day_string(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}
