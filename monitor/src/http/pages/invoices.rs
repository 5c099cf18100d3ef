//! `/invoices`: what the node earned, per day and per invoice.

use axum::extract::State;
use axum::http::Uri;
use truebit_web::chart::{BarChart, Series};
use truebit_web::format;
use truebit_web::format::NONE;
use truebit_web::page::{Card, ChartView, InvoicesPage, PenaltyRow};

use super::view::{form_pairs, gas_value, invoice_view, pager, uri_of};
use super::{layout, render, Operator, PageResult};
use crate::http::figures::{earned, Penalties, NS_PER_DAY};
use crate::http::params::{format_cursor, ParamKind, ParamSpec, Params};
use crate::http::AppState;
use crate::store::query::InvoiceFilter;

const PAGE: usize = 50;
const DAYS: i64 = 30;
const QUERY: &[ParamSpec] = &[ParamSpec::new("cursor", ParamKind::Cursor, "")];

/// `GET /invoices`
pub async fn page(State(s): State<AppState>, op: Operator, uri: Uri) -> PageResult {
    let pairs = form_pairs(&uri);
    let cursor = Params::parse(&uri_of("/invoices", &pairs), QUERY)
        .ok()
        .and_then(|p| p.cursor());
    let now = s.clock.now_ns();
    let first_day = now.div_euclid(NS_PER_DAY) - (DAYS - 1);
    let (days, penalties) = s
        .store
        .call(move |st| {
            let from = first_day * NS_PER_DAY;
            let penalties = Penalties::of(
                st.penalties_by_account(from, now)?,
                st.node_status()?.address,
            );
            Ok((st.earnings_by_day(from, now)?, penalties))
        })
        .await?;
    let list = s
        .store
        .call(move |st| st.invoices_page(&InvoiceFilter::default(), cursor, PAGE))
        .await?;
    let mut pay = vec![0.0; DAYS as usize];
    let mut charge = vec![0.0; DAYS as usize];
    let (mut total_earned, mut total_invoices) = (0.0, 0_u64);
    for d in &days {
        let Some(i) = usize::try_from(d.day - first_day)
            .ok()
            .filter(|i| *i < pay.len())
        else {
            continue;
        };
        pay[i] = earned(d);
        total_earned += pay[i];
        total_invoices += d.invoices;
        for o in &d.operations {
            if o.operation == "charge" {
                charge[i] += o.value;
            }
        }
    }
    let day_ns: Vec<i64> = (0..DAYS).map(|i| (first_day + i) * NS_PER_DAY).collect();
    let chart = BarChart {
        title: "Earnings per UTC day over the last 30 days".into(),
        unit: "gas units".into(),
        labels: day_ns.iter().map(|t| format::day_label(*t)).collect(),
        hover_labels: vec![],
        series: vec![Series {
            name: "earned (pay)".into(),
            class: "s-pay",
            values: pay,
        }],
        label_every: 5,
        empty: "No invoices in the last 30 days".into(),
        width: 0.0,
    };
    let card = |key: &'static str, label: &str, value: String, detail: &str| Card {
        label: label.to_owned(),
        value,
        detail: detail.to_owned(),
        state: "",
        key,
    };
    // Gas-unit totals are long: short on the card, exact underneath.
    let gas_card = |key: &'static str, label: &str, v: f64, what: &str| {
        card(
            key,
            label,
            format!("{} gas", format::compact(v)),
            &format!("{} gas units {what}", gas_value(v)),
        )
    };
    let view = InvoicesPage {
        layout: layout(&s, "Invoices", "invoices", &op),
        chart: ChartView {
            legend: chart.legend(),
            svg: chart.render(),
            caption: "Value = steps × step gas price + memory × byte gas price of the line items, in gas units as the node reports them.".into(),
        },
        totals: vec![
            gas_card("earned_30d", "Earned, 30 days", total_earned, "(pay items)"),
            card(
                "invoices_30d",
                "Invoices, 30 days",
                format::thousands(i64::try_from(total_invoices).unwrap_or(i64::MAX)),
                "",
            ),
            // Whose penalties: the node's own (charged to its address) apart from those
            // charged to other accounts (other nodes of the same task).
            gas_card(
                "penalties_own_30d",
                "Penalties on this node, 30 days",
                penalties.own.value,
                &match &penalties.node_address {
                    Some(_) => format!("({} penalty items charged to this node's address)", penalties.own.items),
                    None => "(the node has not printed its address yet)".to_owned(),
                },
            ),
            gas_card(
                "penalties_others_30d",
                "Penalties on other accounts, 30 days",
                penalties.others.value,
                &format!("({} penalty items charged to other nodes)", penalties.others.items),
            ),
            gas_card(
                "charged_30d",
                "Charged to requesters, 30 days",
                charge_total(&days),
                "(charge items)",
            ),
        ],
        penalties: penalties
            .by_account
            .iter()
            .map(|p| PenaltyRow {
                account: p.account.clone().unwrap_or_default(),
                account_short: p
                    .account
                    .as_deref()
                    .map_or_else(|| NONE.to_owned(), format::short_address),
                own: p.own,
                items: format::thousands(i64::try_from(p.items).unwrap_or(i64::MAX)),
                value: gas_value(p.value),
            })
            .collect(),
        rows: list.items.iter().map(invoice_view).collect(),
        pager: pager("/invoices", &pairs, list.next.map(format_cursor)),
    };
    render(&view)
}

fn charge_total(days: &[crate::store::query::EarningsDay]) -> f64 {
    days.iter()
        .flat_map(|d| &d.operations)
        .filter(|o| o.operation == "charge")
        .map(|o| o.value)
        .sum()
}
