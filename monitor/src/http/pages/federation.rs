//! `/federation`: what would be shared and what never is, the operator's switch, the
//! connection, the transparency log (every report's exact bytes) and the network
//! statistics the hub sent back.

use axum::extract::{Request, State};
use axum::http::Uri;
use serde::Deserialize;
use truebit_protocol::report::{Continent, Level};
use truebit_protocol::stats::NetworkStats;
use truebit_web::format::{self, NONE};
use truebit_web::page::{
    Card, Choice, Distribution, FederationPage, Metric, NetworkView, Notice, ProofForm, ReportView,
    Stamp,
};

use super::view::form_pairs;
use super::{form, layout, redirect, render, CsrfForm, HasCsrf, Operator, PageError, PageResult};
use crate::federation::{FederationHandle, FederationStatus, LinkState, SettingsUpdate};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::federation::{ReportOutcome, ReportRecord};

const REPORTS: usize = 50;

/// What a window report may contain, in plain words (docs/PRIVACY.md).
const SHARED: &[&str] = &[
    "A pseudonymous node id and public key, made from a random key of this installation (not your wallet, host or address).",
    "The five-minute window the report covers (…:00, …:05 UTC), never a finer time; it is sent at a random moment after the window closes.",
    "The node's state, and its slots in use and total tasks in buckets.",
    "Per finished task: the chain id, completed or failed, cache hit, and execution time, gas and peak memory in buckets, never exact values. No identifier of the task.",
    "Per invoice line: the operation (pay, charge, penalty) and the steps in a bucket. No identifier of the invoice.",
    "With the full level, the continent you chose, if any (never guessed from your address). The strict level sends only the node's status and the window's counts.",
];

/// What never leaves the machine.
const NEVER: &[&str] = &[
    "Wallet or contract addresses, requester or worker addresses.",
    "Task, execution or invoice ids, block numbers or hashes.",
    "Task inputs and outputs, log lines.",
    "Exact times, your IP address or host name as data, container ids, the node's version string.",
    "Your password, API keys, the pseudonym salt and the node's private key.",
];

fn handle(s: &AppState) -> Result<&FederationHandle, PageError> {
    s.federation
        .as_ref()
        .ok_or(PageError::Api(ApiError::Unavailable))
}

/// `GET /federation`
pub async fn page(State(s): State<AppState>, op: Operator, uri: Uri) -> PageResult {
    let message = form_pairs(&uri)
        .into_iter()
        .find(|(k, _)| k == "m")
        .and_then(|(_, v)| match v.as_str() {
            "enabled" => Some(Notice::new("ok", "Federation is on. The first report goes out after the current five-minute window closes.")),
            "disabled" => Some(Notice::new("ok", "Federation is off. Reports still waiting were discarded; nothing more is sent.")),
            "saved" => Some(Notice::new("ok", "Settings saved; they apply from the next window.")),
            _ => None,
        });
    let Some(h) = s.federation.clone() else {
        return render(&FederationPage {
            layout: layout(&s, "Federation", "federation", &op),
            available: false,
            enabled: false,
            configured: false,
            level: String::new(),
            continent: String::new(),
            status: vec![],
            shared: SHARED.iter().map(|s| (*s).to_owned()).collect(),
            never: NEVER.iter().map(|s| (*s).to_owned()).collect(),
            blocked_reasons: vec![],
            reports: vec![],
            network: None,
            message,
            continents: vec![],
            levels: vec![],
            proof: None,
        });
    };
    let status = h.status().await.map_err(ApiError::from)?;
    let reports = h.reports(REPORTS).await.map_err(ApiError::from)?;
    let network = h.network_stats().await;
    render(&view(&s, &op, &status, &reports, network, message))
}

/// The uptime proof form: the last 29 whole days by default.
fn proof_form(now: u64, st: &FederationStatus) -> ProofForm {
    use crate::federation::proof::{format_day, ProofPeriod};
    let period = ProofPeriod::parse(None, None, now).ok();
    let today = now - now % 86_400;
    ProofForm {
        from: period.map(|p| p.first_day()).unwrap_or_default(),
        to: period.map(|p| p.last_day()).unwrap_or_default(),
        last: format_day(today.saturating_sub(86_400)),
        pinned: st.aggregator_key.is_some(),
    }
}

fn view(
    s: &AppState,
    op: &Operator,
    st: &FederationStatus,
    reports: &[ReportRecord],
    network: Option<crate::federation::NetworkStatsSnapshot>,
    message: Option<Notice>,
) -> FederationPage {
    let level = st.settings.level.label();
    let continent = st.settings.continent.map(Continent::label).unwrap_or("");
    let card =
        |key: &'static str, label: &str, value: String, detail: String, state: &'static str| Card {
            label: label.to_owned(),
            value,
            detail,
            state,
            key,
        };
    let link = match st.connection {
        LinkState::Off => "off",
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Disconnected => "disconnected",
    }
    .to_owned();
    let link_state = match (st.settings.enabled, link.as_str()) {
        (false, _) => "",
        (true, "connected") => "ok",
        (true, _) => "warn",
    };
    let n = |v: u64| format::thousands(i64::try_from(v).unwrap_or(i64::MAX));
    let status = vec![
        card(
            "connection",
            "Connection",
            if st.settings.enabled {
                link
            } else {
                "not connected (off)".to_owned()
            },
            st.last_error
                .clone()
                .unwrap_or_else(|| st.servers.join(", ")),
            link_state,
        ),
        card(
            "sent",
            "Reports sent",
            n(st.sent_total),
            st.last_sent_ms
                .map(|ms| format!("last {} UTC", format::utc(ms as i64 * 1_000_000)))
                .unwrap_or_default(),
            "",
        ),
        card(
            "blocked",
            "Reports blocked",
            n(st.blocked_total),
            "stopped by the privacy validator".to_owned(),
            if st.blocked_total > 0 { "warn" } else { "" },
        ),
        card(
            "queued",
            "Waiting",
            n(st.queued),
            "in the outbox".to_owned(),
            "",
        ),
        card(
            "dropped",
            "Never sent",
            n(st.dropped_total),
            "expired or discarded".to_owned(),
            "",
        ),
        card(
            "node_id",
            "Node id on the wire",
            st.node_id
                .as_deref()
                .map(format::short_id)
                .unwrap_or_else(|| NONE.to_owned()),
            "pseudonymous".to_owned(),
            "",
        ),
    ];
    FederationPage {
        layout: layout(s, "Federation", "federation", op),
        available: true,
        enabled: st.settings.enabled,
        configured: st.configured,
        level: level.to_owned(),
        continent: continent.to_owned(),
        status,
        shared: SHARED.iter().map(|s| (*s).to_owned()).collect(),
        never: NEVER.iter().map(|s| (*s).to_owned()).collect(),
        blocked_reasons: st
            .blocked_reasons
            .iter()
            .map(|r| (r.code.clone(), n(r.count)))
            .collect(),
        reports: reports.iter().map(report_view).collect(),
        network: network.map(|n| {
            let mut view = network_view(&n.stats, n.received_ms);
            view.signed_by = format!(
                "{} of the pinned aggregator keys ({} required): {}",
                n.signers.len(),
                n.threshold,
                n.signers
                    .iter()
                    .map(|k| format!("{}…", &k[..k.len().min(12)]))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            view
        }),
        message,
        levels: Choice::list(&["full", "strict"], level)
            .into_iter()
            .filter(|c| !c.value.is_empty())
            .collect(),
        continents: {
            let codes: Vec<&str> = Continent::ALL.iter().map(|c| c.label()).collect();
            let mut list = Choice::list(&codes, continent);
            if let Some(first) = list.first_mut() {
                first.label = "none".to_owned();
            }
            list
        },
        proof: st
            .settings
            .enabled
            .then(|| proof_form(s.clock.now_secs(), st)),
    }
}

fn report_view(r: &ReportRecord) -> ReportView {
    let (outcome, class) = match r.outcome {
        ReportOutcome::Sent => ("sent", "ok"),
        ReportOutcome::Queued => ("queued", "info"),
        ReportOutcome::Blocked => ("blocked", "bad"),
        ReportOutcome::Dropped => ("dropped", "warn"),
    };
    let text = serde_json::from_str::<serde_json::Value>(&r.text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| r.text.clone());
    ReportView {
        window: Stamp::of_ns(
            i64::try_from(r.window)
                .unwrap_or(0)
                .saturating_mul(1_000_000_000),
        ),
        outcome: outcome.to_owned(),
        outcome_class: class,
        reason: match (&r.code, &r.reason) {
            (Some(c), Some(why)) => format!("{c}: {why}"),
            (Some(c), None) => c.clone(),
            (None, Some(why)) => why.clone(),
            (None, None) => String::new(),
        },
        cover: r.cover.unwrap_or(false),
        task_items: r
            .task_items
            .map_or_else(|| NONE.to_owned(), |n| n.to_string()),
        sent: r
            .sent_ms
            .map(|ms| Stamp::of_ms(i64::try_from(ms).unwrap_or(0))),
        text,
    }
}

fn network_view(st: &NetworkStats, received_ms: u64) -> NetworkView {
    let opt = |v: Option<u64>| {
        v.map_or_else(
            || NONE.to_owned(),
            |n| format::thousands(i64::try_from(n).unwrap_or(i64::MAX)),
        )
    };
    let bp = |v: Option<u32>| format::percent(v.map(|b| f64::from(b) / 10_000.0));
    let m = |label: &str, value: String| Metric {
        label: label.to_owned(),
        value,
        note: String::new(),
    };
    let dist = |name: &str, cells: &std::collections::BTreeMap<String, u64>| Distribution {
        name: name.to_owned(),
        cells: cells
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    format::thousands(i64::try_from(*v).unwrap_or(i64::MAX)),
                )
            })
            .collect(),
    };
    let d = &st.distributions;
    NetworkView {
        signed_by: String::new(),
        received: Some(Stamp::of_ms(i64::try_from(received_ms).unwrap_or(0))),
        window: Some(Stamp::of_ns(
            i64::try_from(st.window.as_secs())
                .unwrap_or(0)
                .saturating_mul(1_000_000_000),
        )),
        figures: vec![
            m("Active nodes", opt(st.active_nodes)),
            m("Nodes, 24 h", opt(st.nodes_24h)),
            m("Nodes, 30 days", opt(st.nodes_30d)),
            m("Tasks completed, 24 h", opt(st.tasks_24h.completed)),
            m("Tasks failed, 24 h", opt(st.tasks_24h.failed)),
            m("Success rate", bp(st.success_rate_bp)),
            m("Cache hit rate", bp(st.cache_hit_rate_bp)),
        ],
        distributions: vec![
            dist("Execution time", &d.duration),
            dist("Gas", &d.gas),
            dist("Chain", &d.chain),
            dist("Continent", &d.continent),
        ],
        k: st.k.to_string(),
    }
}

/// `POST /federation/enable`
pub async fn enable(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let _: CsrfForm = form(&s, &op, req).await?;
    handle(&s)?.enable().await.map_err(ApiError::from)?;
    Ok(redirect("/federation?m=enabled"))
}

/// `POST /federation/disable`
pub async fn disable(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let _: CsrfForm = form(&s, &op, req).await?;
    handle(&s)?.disable().await.map_err(ApiError::from)?;
    Ok(redirect("/federation?m=disabled"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsForm {
    csrf_token: String,
    level: String,
    #[serde(default)]
    continent: String,
}

impl HasCsrf for SettingsForm {
    fn csrf(&self) -> &str {
        &self.csrf_token
    }
}

/// `POST /federation/settings`: level and continent.
pub async fn settings(State(s): State<AppState>, op: Operator, req: Request) -> PageResult {
    let f: SettingsForm = form(&s, &op, req).await?;
    let level = Level::from_label(&f.level)
        .ok_or_else(|| ApiError::bad_parameter("level", "level must be full or strict"))?;
    let continent = if f.continent.is_empty() {
        None
    } else {
        Some(Continent::parse(&f.continent).ok_or_else(|| {
            ApiError::bad_parameter("continent", "continent must be one of AF AN AS EU NA OC SA")
        })?)
    };
    handle(&s)?
        .put_settings(SettingsUpdate {
            enabled: None,
            level: Some(level),
            continent: Some(continent),
        })
        .await
        .map_err(ApiError::from)?;
    Ok(redirect("/federation?m=saved"))
}
