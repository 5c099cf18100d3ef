//! The public network page and the static files it links: published statistics and
//! their history, rendered with truebit-web's network template. Only published
//! (k-anonymous) figures reach the view model, so no node id can reach the page.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use truebit_protocol::bucket::{
    ExecTimeBucket, GasBucket, Label, MemoryBucket, StepsBucket, TotalTasksBucket,
};
use truebit_protocol::sign::SignedStats;
use truebit_protocol::stats::{Cells, OTHER, UNKNOWN};
use truebit_web::network::{NetworkFigures, NetworkPage};
use truebit_web::page::{ErrorPage, Layout};
use truebit_web::Template as _;

use super::{ApiError, AppState};

/// Windows in the page's history charts (24 hours).
const HISTORY_WINDOWS: u32 = 288;

/// Cells in display order: the bucket order of `L`, then `unknown`, then `other`.
fn ordered<L: Label>(cells: &Cells) -> Vec<(String, u64)> {
    let rank = |label: &str| match L::from_label(label) {
        Some(l) => L::ALL.iter().position(|x| *x == l).unwrap_or(0),
        None if label == UNKNOWN => usize::MAX - 1,
        None => usize::MAX,
    };
    let mut out: Vec<(String, u64)> = cells.iter().map(|(l, c)| (l.clone(), *c)).collect();
    out.sort_by_key(|(l, _)| rank(l));
    out
}

/// Chains and continents: largest first, `unknown` and `other` last.
fn by_count(cells: &Cells) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = cells.iter().map(|(l, c)| (l.clone(), *c)).collect();
    out.sort_by_key(|(l, c)| (l == UNKNOWN || l == OTHER, std::cmp::Reverse(*c)));
    out
}

/// `/`: the public network page; an HTML error page when it cannot be built.
pub(super) async fn network_page(State(state): State<AppState>) -> Response {
    match network_html(&state).await {
        Ok(html) => Html(html).into_response(),
        Err(_) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let mut layout = Layout::new("Not available", "", "");
            layout.product = "TrueBit network";
            let page = ErrorPage {
                layout,
                status: status.as_u16(),
                heading: "Not available right now".into(),
                message: "The statistics cannot be read at the moment; try again in a minute."
                    .into(),
            };
            match page.render() {
                Ok(html) => (status, Html(html)).into_response(),
                Err(_) => status.into_response(),
            }
        }
    }
}

async fn network_html(state: &AppState) -> Result<String, ApiError> {
    let published = state
        .latest
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let figures = match published {
        None => None,
        Some(p) => {
            let s = p.signed.stats();
            let to = s.window.as_secs();
            let from = to.saturating_sub(u64::from(HISTORY_WINDOWS - 1) * 300);
            let history = state
                .store
                .stats_history(from, to, HISTORY_WINDOWS)
                .await?
                .iter()
                .filter_map(|w| SignedStats::from_wire(w).ok())
                .map(|h| {
                    let h = h.stats();
                    (h.window.as_secs(), h.active_nodes, h.success_rate_bp)
                })
                .collect();
            let d = &s.distributions;
            let c = crate::publisher::lock(&state.certifier).status();
            let certification = if c.replicas > 1 {
                format!(
                    "Replica of a hub of {}: these figures are {} by {} of the {} replica keys monitors pin ({} required): {}.",
                    c.replicas,
                    if c.certified { "certified" } else { "not yet certified, signed" },
                    c.signers.len(),
                    c.replicas,
                    c.threshold,
                    c.signers
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ) + &if c.silent.is_empty() {
                    String::new()
                } else {
                    format!(
                        " No signature yet from: {}.",
                        c.silent
                            .iter()
                            .map(|r| if r.name.is_empty() { r.key.as_str() } else { r.name.as_str() })
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            } else {
                String::new()
            };
            Some(NetworkFigures {
                certification,
                disagreeing: c
                    .disagreeing
                    .iter()
                    .map(|r| format!("{} ({})", r.name, r.key))
                    .collect(),
                window: to,
                k: s.k,
                public_key: state.public_key.to_string(),
                active_nodes: s.active_nodes,
                nodes_24h: s.nodes_24h,
                nodes_30d: s.nodes_30d,
                received_24h: s.tasks_24h.received,
                completed_24h: s.tasks_24h.completed,
                failed_24h: s.tasks_24h.failed,
                success_rate_bp: s.success_rate_bp,
                cache_hit_rate_bp: s.cache_hit_rate_bp,
                history,
                hourly_tasks: p
                    .hourly
                    .iter()
                    .map(|h| (h.hour, h.completed, h.failed))
                    .collect(),
                availability: s.availability.iter().map(|a| (a.hour, a.rate_bp)).collect(),
                distributions: vec![
                    (
                        "Execution time".into(),
                        ordered::<ExecTimeBucket>(&d.duration),
                    ),
                    ("Gas used".into(), ordered::<GasBucket>(&d.gas)),
                    ("Peak memory".into(), ordered::<MemoryBucket>(&d.memory)),
                    ("Steps (invoices)".into(), ordered::<StepsBucket>(&d.steps)),
                    ("Chain".into(), by_count(&d.chain)),
                    ("Continent (nodes)".into(), by_count(&d.continent)),
                    (
                        "Nodes by tasks received in 24 h".into(),
                        ordered::<TotalTasksBucket>(&d.activity),
                    ),
                ],
            })
        }
    };
    NetworkPage::new(figures.as_ref()).render().map_err(|e| {
        tracing::error!(error = %e, "cannot render the network page");
        ApiError::Internal
    })
}

/// `/static/NAME`: the CSS and icon the page links (a year for the versioned URLs).
pub(super) async fn asset(Path(name): Path<String>, uri: Uri) -> Response {
    match truebit_web::asset::get(&name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, a.cache_control(uri.query())),
            ],
            a.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
