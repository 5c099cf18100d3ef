//! The aggregator's public network page: k-anonymous network statistics as cards and
//! server-rendered SVG charts. The aggregator hands over published figures only (plain
//! numbers, already k-anonymous); nothing here knows a node, and no node id can reach
//! the page.

use askama::Template;

use crate::chart::{BarChart, LineChart, Series};
use crate::format;
use crate::page::{Card, ChartView, Layout};

/// What the page shows, as the aggregator published it. `None` is a suppressed figure
/// (fewer than k nodes contributed) and reads as an em dash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkFigures {
    /// Start of the latest closed window the figures include (Unix seconds).
    pub window: u64,
    pub k: u32,
    /// The aggregator's public key (what monitors pin), 64 hex digits.
    pub public_key: String,
    /// Who co-signed the figures, in one sentence (a replicated hub), or empty.
    pub certification: String,
    /// Replicas whose figures for the window differ (name and key), or empty.
    pub disagreeing: Vec<String>,
    pub active_nodes: Option<u64>,
    pub nodes_24h: Option<u64>,
    pub nodes_30d: Option<u64>,
    pub received_24h: Option<u64>,
    pub completed_24h: Option<u64>,
    pub failed_24h: Option<u64>,
    pub success_rate_bp: Option<u32>,
    pub cache_hit_rate_bp: Option<u32>,
    /// Earlier statistics, oldest first: (window, active nodes, success rate).
    pub history: Vec<(u64, Option<u64>, Option<u32>)>,
    /// Per hour, oldest first: (hour, completed, failed).
    pub hourly_tasks: Vec<(u64, Option<u64>, Option<u64>)>,
    /// Per hour, oldest first: (hour, share of known nodes reporting).
    pub availability: Vec<(u64, Option<u32>)>,
    /// (title, cells) in display order; cells as published (`other` included).
    pub distributions: Vec<(String, Vec<(String, u64)>)>,
}

/// One distribution chart with its heading.
#[derive(Clone, Debug, Default)]
pub struct DistributionView {
    pub title: String,
    pub chart: ChartView,
}

#[derive(Template, Debug)]
#[template(path = "network.html")]
pub struct NetworkPage {
    pub layout: Layout,
    pub has_stats: bool,
    pub updated: String,
    pub k: String,
    pub public_key: String,
    pub certification: String,
    pub disagreeing: Vec<String>,
    pub cards: Vec<Card>,
    pub active: ChartView,
    pub tasks: ChartView,
    pub success: ChartView,
    pub availability: ChartView,
    pub distributions: Vec<DistributionView>,
}

fn ns(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000
}

fn count(v: Option<u64>) -> String {
    format::opt_thousands(v.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
}

fn rate(bp: Option<u32>) -> String {
    format::percent(bp.map(|b| f64::from(b) / 10_000.0))
}

fn card(key: &'static str, label: &str, value: String, detail: &str) -> Card {
    Card {
        label: label.to_owned(),
        value,
        detail: detail.to_owned(),
        state: "",
        key,
    }
}

fn every(n: usize, shown: usize) -> usize {
    n.div_ceil(shown.max(1)).max(1)
}

impl NetworkPage {
    /// The page for `f`; without statistics yet (`None`), an explanation instead.
    pub fn new(f: Option<&NetworkFigures>) -> NetworkPage {
        let mut layout = Layout::new("Network statistics", "", "");
        layout.product = "TrueBit network";
        let Some(f) = f else {
            return NetworkPage {
                layout,
                has_stats: false,
                updated: String::new(),
                k: String::new(),
                public_key: String::new(),
                certification: String::new(),
                disagreeing: Vec::new(),
                cards: Vec::new(),
                active: ChartView::default(),
                tasks: ChartView::default(),
                success: ChartView::default(),
                availability: ChartView::default(),
                distributions: Vec::new(),
            };
        };
        let cards = vec![
            card(
                "active_nodes",
                "Active nodes",
                count(f.active_nodes),
                "reported in the latest complete hour",
            ),
            card(
                "nodes_24h",
                "Nodes, 24 h",
                count(f.nodes_24h),
                "the latest complete UTC day",
            ),
            card(
                "nodes_30d",
                "Nodes, 30 days",
                count(f.nodes_30d),
                "up to that day",
            ),
            card(
                "received_24h",
                "Tasks received, 24 h",
                count(f.received_24h),
                "the 24 latest complete hours",
            ),
            card(
                "completed_24h",
                "Tasks completed, 24 h",
                count(f.completed_24h),
                "",
            ),
            card("failed_24h", "Tasks failed, 24 h", count(f.failed_24h), ""),
            card(
                "success_rate",
                "Success rate, 24 h",
                rate(f.success_rate_bp),
                "completed / finished",
            ),
            card(
                "cache_hit_rate",
                "Cache hit rate, 24 h",
                rate(f.cache_hit_rate_bp),
                "",
            ),
        ];

        let hist_labels: Vec<String> = f
            .history
            .iter()
            .map(|(w, _, _)| format::hour_label(ns(*w)))
            .collect();
        let hist_hover: Vec<String> = f
            .history
            .iter()
            .map(|(w, _, _)| format::utc(ns(*w)))
            .collect();
        let active_chart = LineChart {
            title: "Active nodes over time".into(),
            unit: "nodes".into(),
            labels: hist_labels.clone(),
            hover_labels: hist_hover.clone(),
            series: vec![(
                "Active nodes".into(),
                "s-info",
                f.history
                    .iter()
                    .map(|(_, a, _)| a.map(|v| v as f64))
                    .collect(),
            )],
            label_every: every(f.history.len(), 8),
            max: None,
            empty: "No published figures yet.".into(),
            width: 0.0,
        };
        let success_chart = LineChart {
            title: "Success rate over time".into(),
            unit: "%".into(),
            labels: hist_labels,
            hover_labels: hist_hover,
            series: vec![(
                "Success rate".into(),
                "s-ok",
                f.history
                    .iter()
                    .map(|(_, _, s)| s.map(|b| f64::from(b) / 100.0))
                    .collect(),
            )],
            label_every: every(f.history.len(), 8),
            max: Some(100.0),
            empty: "No published figures yet.".into(),
            width: 0.0,
        };
        let hour_labels: Vec<String> = f
            .hourly_tasks
            .iter()
            .map(|(h, _, _)| format::hour_label(ns(*h)))
            .collect();
        let tasks_chart = BarChart {
            title: "Tasks per hour".into(),
            unit: "tasks".into(),
            labels: hour_labels.clone(),
            hover_labels: f
                .hourly_tasks
                .iter()
                .map(|(h, _, _)| format!("{} UTC", format::utc(ns(*h))))
                .collect(),
            series: vec![
                Series {
                    name: "Completed".into(),
                    class: "s-ok",
                    values: f
                        .hourly_tasks
                        .iter()
                        .map(|(_, c, _)| c.unwrap_or(0) as f64)
                        .collect(),
                },
                Series {
                    name: "Failed".into(),
                    class: "s-fail",
                    values: f
                        .hourly_tasks
                        .iter()
                        .map(|(_, _, x)| x.unwrap_or(0) as f64)
                        .collect(),
                },
            ],
            label_every: 3,
            empty: "No tasks in the last 24 hours (or fewer than k nodes ran any).".into(),
            width: 0.0,
        };
        let availability_chart = LineChart {
            title: "Network availability".into(),
            unit: "%".into(),
            labels: f
                .availability
                .iter()
                .map(|(h, _)| format::hour_label(ns(*h)))
                .collect(),
            hover_labels: f
                .availability
                .iter()
                .map(|(h, _)| format::utc(ns(*h)))
                .collect(),
            series: vec![(
                "Nodes reporting".into(),
                "s-ok",
                f.availability
                    .iter()
                    .map(|(_, r)| r.map(|b| f64::from(b) / 100.0))
                    .collect(),
            )],
            label_every: 3,
            max: Some(100.0),
            empty: "Not enough nodes yet.".into(),
            width: 0.0,
        };
        let distributions = f
            .distributions
            .iter()
            .map(|(title, cells)| {
                let chart = BarChart {
                    title: title.clone(),
                    unit: String::new(),
                    labels: cells.iter().map(|(l, _)| l.clone()).collect(),
                    hover_labels: Vec::new(),
                    series: vec![Series {
                        name: title.clone(),
                        class: "s-info",
                        values: cells.iter().map(|(_, c)| *c as f64).collect(),
                    }],
                    label_every: 1,
                    empty: format!("Fewer than {} nodes contributed.", f.k),
                    width: 520.0,
                };
                let total: u64 = cells.iter().map(|(_, c)| c).sum();
                DistributionView {
                    title: title.clone(),
                    chart: ChartView {
                        svg: chart.render(),
                        legend: Vec::new(),
                        caption: if cells.is_empty() {
                            String::new()
                        } else {
                            format!("{} in total", count(Some(total)))
                        },
                    },
                }
            })
            .collect();
        NetworkPage {
            layout,
            has_stats: true,
            updated: format!("{} UTC", format::utc(ns(f.window + 300))),
            k: f.k.to_string(),
            public_key: f.public_key.clone(),
            certification: f.certification.clone(),
            disagreeing: f.disagreeing.clone(),
            cards,
            active: ChartView {
                svg: active_chart.render(),
                legend: Vec::new(),
                caption: "one point per published window".into(),
            },
            tasks: ChartView {
                legend: tasks_chart.legend(),
                svg: tasks_chart.render(),
                caption: "hours in which fewer than k nodes ran tasks show nothing".into(),
            },
            success: ChartView {
                svg: success_chart.render(),
                legend: Vec::new(),
                caption: String::new(),
            },
            availability: ChartView {
                svg: availability_chart.render(),
                legend: Vec::new(),
                caption: "share of the nodes known by then that reported in the hour".into(),
            },
            distributions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> NetworkFigures {
        NetworkFigures {
            window: 1_717_243_200,
            k: 5,
            public_key: "ab".repeat(32),
            certification: String::new(),
            disagreeing: Vec::new(),
            active_nodes: Some(1_234),
            nodes_24h: Some(1_300),
            nodes_30d: None,
            received_24h: Some(10_000),
            completed_24h: Some(9_000),
            failed_24h: Some(500),
            success_rate_bp: Some(9_474),
            cache_hit_rate_bp: None,
            history: vec![
                (1_717_242_900, Some(1_200), Some(9_400)),
                (1_717_243_200, Some(1_234), Some(9_474)),
            ],
            hourly_tasks: vec![
                (1_717_239_600, Some(300), None),
                (1_717_243_200, Some(310), Some(12)),
            ],
            availability: vec![(1_717_239_600, Some(9_000)), (1_717_243_200, None)],
            distributions: vec![(
                "Execution time".into(),
                vec![("1-5s".into(), 800), ("other".into(), 60)],
            )],
        }
    }

    #[test]
    fn the_page_shows_figures_charts_and_suppressed_values_as_a_dash() {
        let html = NetworkPage::new(Some(&figures()))
            .render()
            .expect("renders");
        assert!(html.contains(">1,234<"), "active nodes");
        assert!(html.contains(">94.7 %<"), "success rate");
        assert!(html.contains("data-figure=\"nodes_30d\">—<"), "suppressed");
        assert!(html.contains("<svg"));
        assert!(html.contains("Execution time"));
        assert!(html.contains(&"ab".repeat(32)), "the aggregator key to pin");
        assert!(!html.contains("<script"), "no script on the public page");
        assert!(!html.contains("style="), "no inline style (CSP)");
    }

    #[test]
    fn without_statistics_the_page_says_so() {
        let html = NetworkPage::new(None).render().expect("renders");
        assert!(html.contains("No statistics have been published yet"));
        assert!(!html.contains("<svg"));
    }
}
