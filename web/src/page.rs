//! The monitor's dashboard pages: one view model per page, each an askama template.
//! The monitor fills them from its store; every figure arrives formatted (see
//! [`crate::format`]), so templates only place text.

use askama::Template;

use crate::asset;
use crate::chart::{LegendItem, Svg};
use crate::format;

/// Which navigation entry is the current page.
pub const NAV: &[(&str, &str, &str)] = &[
    ("overview", "/", "Overview"),
    ("tasks", "/tasks", "Tasks"),
    ("invoices", "/invoices", "Invoices"),
    ("logs", "/logs", "Logs"),
    ("federation", "/federation", "Federation"),
    ("alerts", "/alerts", "Alerts"),
    ("settings", "/settings", "Settings"),
];

/// What every page shares: title, navigation, the session's CSRF token (logout and
/// forms), notices about the node's state, the assets.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub title: String,
    /// The current navigation entry (`overview`, `tasks`, …); empty on the login page.
    pub active: &'static str,
    /// The session's CSRF token; empty when logged out.
    pub csrf: String,
    /// Page-wide notices (Docker unreachable, database not writable, …).
    pub notices: Vec<Notice>,
    /// Load the live-page script.
    pub live: bool,
    /// The monitor's version, for the footer.
    pub version: String,
    /// The name in the header, the title and the footer.
    pub product: &'static str,
}

impl Layout {
    pub fn new(title: impl Into<String>, active: &'static str, csrf: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            active,
            csrf: csrf.into(),
            notices: Vec::new(),
            live: false,
            version: String::new(),
            product: "TrueBit Node Monitor",
        }
    }

    pub fn nav(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        NAV
    }

    pub fn css(&self) -> String {
        asset::url("app.css")
    }

    pub fn theme_js(&self) -> String {
        asset::url("theme.js")
    }

    pub fn live_js(&self) -> String {
        asset::url("live.js")
    }

    pub fn icon(&self) -> String {
        asset::url("icon.svg")
    }
}

/// A message across the top of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `info`, `ok`, `warn` or `error`.
    pub level: &'static str,
    pub text: String,
}

impl Notice {
    pub fn new(level: &'static str, text: impl Into<String>) -> Notice {
        Notice {
            level,
            text: text.into(),
        }
    }
}

/// A point in time: machine-readable (scripts show it in local time) and as UTC text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    pub iso: String,
    pub text: String,
}

impl Stamp {
    pub fn of_ns(ns: i64) -> Stamp {
        Stamp {
            iso: format::iso(ns),
            text: format::utc(ns),
        }
    }

    pub fn of_ms(ms: i64) -> Stamp {
        Stamp::of_ns(ms.saturating_mul(1_000_000))
    }
}

/// A chart with its legend.
#[derive(Clone, Debug, Default)]
pub struct ChartView {
    pub svg: Svg,
    pub legend: Vec<LegendItem>,
    /// One line under the chart (totals, what is counted).
    pub caption: String,
}

// ---- login, error --------------------------------------------------------------------

#[derive(Template, Debug)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub error: Option<String>,
    /// Where to go after logging in.
    pub next: String,
}

#[derive(Template, Debug)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

// ---- overview ------------------------------------------------------------------------

/// A small figure with a label and a state colour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    pub label: String,
    pub value: String,
    pub detail: String,
    /// `ok`, `bad`, `warn`, `info` or empty.
    pub state: &'static str,
    /// A stable name for tests and scripts (`data-figure`).
    pub key: &'static str,
}

/// Task figures of one period (today, this week).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub name: String,
    /// What the period spans, e.g. `since 00:00 UTC`.
    pub span: String,
    pub key: &'static str,
    pub completed: String,
    pub failed: String,
    pub executing: String,
    pub received: String,
    pub success_rate: String,
    /// Short form (`12.3B`); the exact figure is in `earned_exact`.
    pub earned: String,
    pub earned_exact: String,
    pub invoices: String,
}

#[derive(Template, Debug)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub layout: Layout,
    pub health: Vec<Card>,
    pub periods: Vec<Period>,
    pub hourly: ChartView,
    pub exec_time: ChartView,
    pub availability: ChartView,
    pub recent: Vec<TaskRow>,
    /// Failed tasks of the last 24 hours by reason, most frequent first.
    pub failures: Vec<FailureGroup>,
    /// All failed tasks of the last 24 hours.
    pub failures_total: String,
    /// Nothing ingested yet: how data arrives, naming the followed container or file.
    pub no_data: Option<String>,
    /// The server's time and the newest log line's (0: none), for the live health cards.
    pub now_ns: i64,
    pub last_line_ns: i64,
}

// ---- tasks ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRow {
    pub execution_id: String,
    pub short_id: String,
    pub status: String,
    /// Badge class for the status.
    pub status_class: &'static str,
    /// The chain id cut to [`TaskRow::CHAIN_CHARS`]; the full one is `chain_full`
    /// (the cell's title, and the task's page).
    pub chain: String,
    pub chain_full: String,
    pub received: Option<Stamp>,
    pub duration: String,
    pub gas: String,
    pub memory: String,
    pub cached: String,
    /// Why the task failed, cut to [`TaskRow::REASON_CHARS`] (empty: none); the full
    /// reason is `reason_full` (the cell's title, and the task's page).
    pub reason: String,
    pub reason_full: String,
}

impl TaskRow {
    /// Characters of a chain id shown in a list.
    pub const CHAIN_CHARS: usize = 24;
    /// Characters of a failure reason shown in a list.
    pub const REASON_CHARS: usize = 60;
}

/// Failed tasks with one reason, for the overview's "Recent failures".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureGroup {
    /// The reason, cut to [`TaskRow::REASON_CHARS`]; empty for failures without one.
    pub reason: String,
    pub reason_full: String,
    pub count: String,
    /// The tasks list filtered to failed tasks.
    pub href: String,
}

/// An `<option>` of a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Choice {
    /// `values` as options, with "All" (empty value) first; `current` is selected.
    pub fn list(values: &[&str], current: &str) -> Vec<Choice> {
        std::iter::once("")
            .chain(values.iter().copied())
            .map(|v| Choice {
                value: v.to_owned(),
                label: if v.is_empty() {
                    "All".to_owned()
                } else {
                    v.replace('_', " ")
                },
                selected: v == current,
            })
            .collect()
    }
}

/// Links to move through a list (cursor pages are newest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pager {
    /// The first page, when this is not it.
    pub first: Option<String>,
    /// The next (older) page, if there is one.
    pub next: Option<String>,
}

#[derive(Template, Debug)]
#[template(path = "tasks.html")]
pub struct TasksPage {
    pub layout: Layout,
    pub statuses: Vec<Choice>,
    pub chain: String,
    pub from: String,
    pub to: String,
    pub rows: Vec<TaskRow>,
    pub pager: Pager,
    pub filtered: bool,
    /// A filter value that was not valid, in one line.
    pub error: Option<String>,
    /// The filters as the query of the download links (`/api/export/tasks?…`).
    pub export: String,
}

/// One step of a task's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub label: String,
    pub at: Option<Stamp>,
    /// Time since the task was received, e.g. `+1.25 s`.
    pub offset: String,
    /// `done`, `failed` or empty (not reached).
    pub state: &'static str,
}

/// A figure with its unit or note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub label: String,
    pub value: String,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub id: i64,
    pub at: Stamp,
    pub level: String,
    pub level_class: &'static str,
    pub kind: String,
    pub execution_id: Option<String>,
    pub short_id: String,
    pub message: String,
    /// The start of a long message (the table shows it; the rest opens on demand).
    pub head: Option<String>,
}

/// Characters of a message shown before "more" in log tables.
pub const MESSAGE_HEAD: usize = 240;

impl LogRow {
    /// The head of `message` if it is longer than [`MESSAGE_HEAD`] characters.
    pub fn head_of(message: &str) -> Option<String> {
        (message.chars().count() > MESSAGE_HEAD)
            .then(|| message.chars().take(MESSAGE_HEAD).collect::<String>() + "…")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineItemView {
    pub operation: String,
    pub class: &'static str,
    pub account: String,
    pub account_short: String,
    pub steps: String,
    pub memory: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceView {
    pub id: i64,
    pub invoice_id: String,
    pub execution_id: Option<String>,
    pub short_id: String,
    pub at: Stamp,
    pub step_gas_price: String,
    pub byte_gas_price: String,
    pub items: Vec<LineItemView>,
    /// What this node earned with it (its `pay` items' value).
    pub earned: String,
}

#[derive(Template, Debug)]
#[template(path = "task.html")]
pub struct TaskPage {
    pub layout: Layout,
    pub execution_id: String,
    pub status: String,
    pub status_class: &'static str,
    pub steps: Vec<Step>,
    pub facts: Vec<Metric>,
    pub metrics: Vec<Metric>,
    pub invoices: Vec<InvoiceView>,
    pub entries: Vec<LogRow>,
    pub entries_truncated: bool,
    pub input: Option<String>,
    pub output: Option<String>,
    /// Why the task failed: the first line of its stderr (failed tasks only).
    pub error: Option<String>,
}

// ---- invoices ------------------------------------------------------------------------

#[derive(Template, Debug)]
#[template(path = "invoices.html")]
pub struct InvoicesPage {
    pub layout: Layout,
    pub chart: ChartView,
    pub totals: Vec<Card>,
    /// Penalty line items of the 30 days per account, the node's own marked.
    pub penalties: Vec<PenaltyRow>,
    pub rows: Vec<InvoiceView>,
    pub pager: Pager,
}

/// Penalty line items charged to one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PenaltyRow {
    pub account: String,
    pub account_short: String,
    /// Charged to this node's own address.
    pub own: bool,
    pub items: String,
    /// Gas units.
    pub value: String,
}

// ---- logs ----------------------------------------------------------------------------

#[derive(Template, Debug)]
#[template(path = "logs.html")]
pub struct LogsPage {
    pub layout: Layout,
    pub levels: Vec<Choice>,
    pub kinds: Vec<Choice>,
    pub level: String,
    pub kind: String,
    pub q: String,
    pub execution_id: String,
    pub rows: Vec<LogRow>,
    pub pager: Pager,
    /// The first page: new lines are added live.
    pub live: bool,
    pub error: Option<String>,
}

// ---- federation ----------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportView {
    pub window: Stamp,
    pub outcome: String,
    pub outcome_class: &'static str,
    pub reason: String,
    pub cover: bool,
    pub task_items: String,
    pub sent: Option<Stamp>,
    /// The exact bytes sent (or stopped), pretty-printed.
    pub text: String,
}

/// A distribution from the aggregator: `(label, value)` rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    pub name: String,
    pub cells: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkView {
    /// Who certified the figures: how many pinned aggregator keys signed, of how many
    /// required, and which (shortened).
    pub signed_by: String,
    pub received: Option<Stamp>,
    pub window: Option<Stamp>,
    pub figures: Vec<Metric>,
    pub distributions: Vec<Distribution>,
    pub k: String,
}

#[derive(Template, Debug)]
#[template(path = "federation.html")]
pub struct FederationPage {
    pub layout: Layout,
    /// Federation controls exist in this process (else the page only explains).
    pub available: bool,
    pub enabled: bool,
    /// A server is configured (FEDERATION_NATS_URL).
    pub configured: bool,
    pub level: String,
    pub continent: String,
    pub status: Vec<Card>,
    pub shared: Vec<String>,
    pub never: Vec<String>,
    pub blocked_reasons: Vec<(String, String)>,
    pub reports: Vec<ReportView>,
    pub network: Option<NetworkView>,
    pub message: Option<Notice>,
    /// The continent choices for the settings form.
    pub continents: Vec<Choice>,
    pub levels: Vec<Choice>,
    /// The uptime proof download form (federation on), with its default days.
    pub proof: Option<ProofForm>,
}

/// The uptime proof form's days (`YYYY-MM-DD`, UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofForm {
    pub from: String,
    pub to: String,
    /// The last day a proof can cover (yesterday).
    pub last: String,
    /// Hub keys are pinned (without them no proof can be checked).
    pub pinned: bool,
}

// ---- alerts --------------------------------------------------------------------------

/// One alert rule as the Alerts page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRuleView {
    pub id: String,
    pub title: String,
    /// `ok`, `pending`, `firing`, or `off`.
    pub state: String,
    /// The card/badge class: `ok`, `warn`, `error` or empty.
    pub class: &'static str,
    pub since: Option<Stamp>,
    pub details: String,
    /// The thresholds in words, e.g. "after 10m".
    pub settings: String,
    /// `config` or `dashboard`.
    pub source: String,
    /// The form that changes the rule: on/off and its settings, as they are now.
    pub enabled: bool,
    pub fields: Vec<RuleField>,
}

/// One editable setting of an alert rule (`after`, `window`: durations like `10m`;
/// `count`, `percent`: whole numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleField {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
}

/// One alert channel with its last delivery results (never its address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertChannelView {
    pub name: String,
    pub kind: String,
    /// Where its settings come from, in words.
    pub source: String,
    /// Which settings are set (never their values), e.g. "url, secret".
    pub set: String,
    pub delivered: String,
    pub failures: String,
    pub queued: String,
    pub last_success: Option<Stamp>,
    pub last_failure: Option<Stamp>,
    pub last_error: String,
}

/// One incident of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentView {
    pub rule: String,
    pub details: String,
    pub fired: Stamp,
    pub resolved: Option<Stamp>,
    pub duration: String,
    pub channels: String,
    pub failures: String,
}

#[derive(Template, Debug)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    pub layout: Layout,
    /// The alerts run in this process (else the page only explains).
    pub available: bool,
    pub rules: Vec<AlertRuleView>,
    pub channels: Vec<AlertChannelView>,
    /// The kinds a channel can be, for the form that adds one.
    pub kinds: Vec<&'static str>,
    pub incidents: Vec<IncidentView>,
    pub heartbeat: bool,
    pub message: Option<Notice>,
}

// ---- settings ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scope: String,
    pub created: Stamp,
    pub last_used: Option<Stamp>,
    pub revoked: Option<Stamp>,
}

/// A key just created: shown once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub scope: String,
    pub key: String,
}

#[derive(Template, Debug)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub layout: Layout,
    pub keys: Vec<KeyView>,
    pub new_key: Option<NewKey>,
    pub message: Option<Notice>,
    pub log_retention_days: String,
    pub task_retention_days: String,
    /// Where the retention in effect comes from (config or dashboard).
    pub retention_source: String,
    pub database: Vec<Metric>,
    pub session_expires: Option<Stamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let mut l = Layout::new("Logs", "logs", "csrf123");
        l.notices.push(Notice::new("warn", "Docker is <down>"));
        l
    }

    fn row(message: &str) -> LogRow {
        LogRow {
            id: 7,
            at: Stamp::of_ns(1_763_719_503_000_000_000),
            level: "error".into(),
            level_class: "bad",
            kind: "log".into(),
            execution_id: Some("0b5e5cf1-2a3b".into()),
            short_id: "0b5e5cf1…".into(),
            message: message.into(),
            head: LogRow::head_of(message),
        }
    }

    fn logs(rows: Vec<LogRow>, live: bool) -> String {
        LogsPage {
            layout: Layout { live, ..layout() },
            levels: Choice::list(&["error", "warn"], "error"),
            kinds: Choice::list(&["log", "raw"], ""),
            level: "error".into(),
            kind: String::new(),
            q: "\"><x".into(),
            execution_id: String::new(),
            rows,
            pager: Pager::default(),
            live,
            error: None,
        }
        .render()
        .unwrap_or_else(|e| panic!("render: {e}"))
    }

    #[test]
    fn node_text_is_escaped_everywhere() {
        let html = logs(vec![row("<script>alert(1)</script>")], true);
        assert!(!html.contains("<script>alert"));
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        assert!(html.contains("Docker is &#60;down&#62;"));
        assert!(html.contains(r#"data-q="&#34;&#62;&#60;x""#));
    }

    #[test]
    fn direction_controls_in_node_text_are_neutralised_on_every_page() {
        // A right-to-left override in a log line would reverse the cell (and, unclosed,
        // what follows it).
        let html = logs(vec![row("paid \u{202e}0001 TRU\u{2066}x\u{200f}")], true);
        for c in ['\u{202e}', '\u{2066}', '\u{200f}'] {
            assert!(!html.contains(c), "{c:?} reached the page");
        }
        assert!(
            html.contains("paid \u{fffd}0001 TRU\u{fffd}x\u{fffd}"),
            "{html}"
        );
    }

    #[test]
    fn a_failure_reason_is_cut_in_the_task_list_isolated_and_whole_on_hover() {
        let reason = format!("\u{202e}panic: {}", "x".repeat(200));
        let row = TaskRow {
            execution_id: "e1".into(),
            short_id: "e1".into(),
            status: "failed".into(),
            status_class: "bad",
            chain: "43113".into(),
            chain_full: "43113".into(),
            received: None,
            duration: "1 s".into(),
            gas: "1".into(),
            memory: "1".into(),
            cached: "hit".into(),
            reason: crate::format::clip(&reason, TaskRow::REASON_CHARS),
            reason_full: reason.clone(),
        };
        let html = TasksPage {
            layout: layout(),
            statuses: Vec::new(),
            chain: String::new(),
            from: String::new(),
            to: String::new(),
            rows: vec![row],
            pager: Pager::default(),
            filtered: false,
            error: None,
            export: String::new(),
        }
        .render()
        .unwrap_or_else(|e| panic!("render: {e}"));
        // The direction override never reaches the page; the cell is node text (its
        // class isolates it) with the whole reason as its title.
        assert!(!html.contains('\u{202e}'));
        let shown = format!(
            "<td class=\"node reason\" title=\"\u{fffd}panic: {}\">\u{fffd}panic: {}…</td>",
            "x".repeat(200),
            "x".repeat(TaskRow::REASON_CHARS - 9)
        );
        assert!(html.contains(&shown), "{html}");
    }

    #[test]
    fn a_long_chain_id_is_cut_in_the_task_list_with_the_full_value_on_hover() {
        let chain = format!("\u{202e}{}", "9".repeat(5_000));
        let row = TaskRow {
            execution_id: "e1".into(),
            short_id: "e1".into(),
            status: "completed".into(),
            status_class: "ok",
            chain: crate::format::clip(&chain, TaskRow::CHAIN_CHARS),
            chain_full: chain.clone(),
            received: None,
            duration: "1 s".into(),
            gas: "1".into(),
            memory: "1".into(),
            cached: "hit".into(),
            reason: String::new(),
            reason_full: String::new(),
        };
        let html = TasksPage {
            layout: layout(),
            statuses: Vec::new(),
            chain: String::new(),
            from: String::new(),
            to: String::new(),
            rows: vec![row],
            pager: Pager::default(),
            filtered: false,
            error: None,
            export: String::new(),
        }
        .render()
        .unwrap_or_else(|e| panic!("render: {e}"));
        let shown = format!(">\u{fffd}{}…</td>", "9".repeat(TaskRow::CHAIN_CHARS - 2));
        assert!(html.contains(&shown), "the cell shows a cut value");
        let title = format!("title=\"\u{fffd}{}\"", "9".repeat(5_000));
        assert!(html.contains(&title), "the full value is the cell's title");
        assert_eq!(
            html.matches(&"9".repeat(5_000)).count(),
            1,
            "once, in the title"
        );
        assert!(!html.contains('\u{202e}'));
    }

    #[test]
    fn the_layout_marks_the_current_page_and_carries_the_csrf_token() {
        let html = logs(vec![], true);
        assert!(html.contains(r#"<a href="/logs" aria-current="page">Logs</a>"#));
        assert_eq!(html.matches("aria-current").count(), 1);
        assert!(html.contains(r#"name="csrf_token" value="csrf123""#));
        assert!(html.contains(&asset::url("live.js")));
        assert!(html.contains(r#"<option value="error" selected>error</option>"#));
        assert!(html.contains("No matching entries yet"));
        // Only the first page loads the live script.
        assert!(!logs(vec![], false).contains("live.js"));
    }

    #[test]
    fn long_messages_fold_after_their_head() {
        let long = "x".repeat(MESSAGE_HEAD + 10);
        let html = logs(vec![row(&long)], true);
        let head = format!("<summary>{}…</summary>", "x".repeat(MESSAGE_HEAD));
        assert!(html.contains(&head));
        assert!(html.contains(&long));
        assert!(logs(vec![row("short")], true).contains(">short</td>"));
    }

    #[test]
    fn the_login_page_has_no_navigation_and_shows_its_error() {
        let html = LoginPage {
            layout: Layout::new("Log in", "", ""),
            error: Some("Wrong password.".into()),
            next: "/tasks".into(),
        }
        .render()
        .unwrap_or_else(|e| panic!("render: {e}"));
        assert!(!html.contains("aria-label=\"Main\""));
        assert!(!html.contains("Log out"));
        assert!(html.contains(
            r#"<div class="notice error" role="alert" id="login-error">Wrong password.</div>"#
        ));
        assert!(html.contains(r#"name="next" value="/tasks""#));
    }
}
