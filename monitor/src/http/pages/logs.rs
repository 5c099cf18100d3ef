//! `/logs`: the node's log entries, filterable; the first page follows new lines live
//! (`live.js` over `/api/events`).

use axum::extract::State;
use axum::http::Uri;
use truebit_web::page::{Choice, LogsPage};

use super::view::{field, form_pairs, log_row, pager, uri_of};
use super::{layout, render, Operator, PageResult};
use crate::http::filters::{log_filter, KINDS, LEVELS, LOGS_QUERY};
use crate::http::params::{format_cursor, Params};
use crate::http::AppState;
use crate::store::query::LogFilter;

const PAGE: usize = 100;

/// `GET /logs`
pub async fn page(State(s): State<AppState>, op: Operator, uri: Uri) -> PageResult {
    let pairs = form_pairs(&uri);
    // An invalid filter is explained above the unfiltered list.
    let parsed = Params::parse(&uri_of("/logs", &pairs), LOGS_QUERY)
        .and_then(|p| Ok((log_filter(&p, op.access())?, p.cursor())));
    let (filter, cursor, pairs, error) = match parsed {
        Ok((filter, cursor)) => (filter, cursor, pairs, None),
        Err(e) => (
            LogFilter::default(),
            None,
            Vec::new(),
            Some(format!("{e}. Showing all entries.")),
        ),
    };
    let live = cursor.is_none() && filter.from_ns.is_none() && filter.to_ns.is_none();
    let page = s
        .store
        .call(move |st| st.logs_page(&filter, cursor, PAGE))
        .await?;
    let mut layout = layout(&s, "Logs", "logs", &op);
    layout.live = live;
    let view = LogsPage {
        layout,
        levels: Choice::list(LEVELS, &field(&pairs, "level")),
        kinds: Choice::list(KINDS, &field(&pairs, "kind")),
        level: field(&pairs, "level"),
        kind: field(&pairs, "kind"),
        q: field(&pairs, "q"),
        execution_id: field(&pairs, "execution_id"),
        rows: op
            .access()
            .entries(page.items)
            .iter()
            .map(log_row)
            .collect(),
        pager: pager("/logs", &pairs, page.next.map(format_cursor)),
        live,
        error,
    };
    render(&view)
}
