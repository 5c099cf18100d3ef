//! Alerts: telling the operator when the node needs them (docs/ALERTS.md).
//!
//! - [`rules`]: what each rule watches and the one state machine they share (pure);
//!   [`engine`]: the task that evaluates them (every second, on the source's status, on
//!   the store's feed of commits) and writes each state change together with its
//!   outbox rows, and the dead-man heartbeat; [`handle`]: the service as the monitor
//!   starts it, and the control the API, the pages and /metrics use.
//! - [`Notification`]: the one thing a rule produces (rule id, firing/resolved, since
//!   when, a short detail); [`message`] renders a group of them into one short text per
//!   channel (what, since when, what to check, a link to the dashboard).
//! - [`channel`]: the destinations (webhook with an optional HMAC signature, Telegram,
//!   Discord, Slack-compatible webhooks, ntfy, e-mail over SMTP), each with an
//!   overridable base URL, and [`config`] to define and validate them.
//! - [`outbox`]: notifications are queued in SQLite, one row per channel; each channel has
//!   its own task that groups what arrived within a few seconds into one message,
//!   retries with capped backoff, sends a summary instead of a flood after a long outage,
//!   and records its results for the dashboard and /metrics. A slow or dead channel
//!   delays no other channel and never touches ingest.
//! - [`cli`]: `truebit-monitor alert test CHANNEL`.

pub mod channel;
pub mod cli;
pub mod config;
pub mod engine;
pub mod handle;
pub mod message;
pub mod outbox;
pub mod rules;

use serde::Serialize;

use crate::model::UnixNanos;

pub use crate::store::alerts::Incident;
pub use channel::{Channel, Kind, SendError, Sender};
pub use config::{AlertConfig, AlertSettings, ChannelSpec, Delivery};
pub use handle::{AlertService, AlertsHandle};
pub use message::Message;
pub use outbox::{AlertError, Alerts, ChannelStats};

/// The built-in rules (docs/ALERTS.md), by the ids used in messages, the API and the
/// webhook body; `test` is the "send test message" action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ContainerDown,
    RestartLoop,
    Silence,
    NoTasks,
    FailureRate,
    DockerUnreachable,
    DbWrite,
    Federation,
    Test,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::ContainerDown,
        Rule::RestartLoop,
        Rule::Silence,
        Rule::NoTasks,
        Rule::FailureRate,
        Rule::DockerUnreachable,
        Rule::DbWrite,
        Rule::Federation,
        Rule::Test,
    ];

    /// The rules the engine evaluates (all but `test`).
    pub const RULES: [Rule; 8] = [
        Rule::ContainerDown,
        Rule::RestartLoop,
        Rule::Silence,
        Rule::NoTasks,
        Rule::FailureRate,
        Rule::DockerUnreachable,
        Rule::DbWrite,
        Rule::Federation,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::ContainerDown => "container_down",
            Rule::RestartLoop => "restart_loop",
            Rule::Silence => "silence",
            Rule::NoTasks => "no_tasks",
            Rule::FailureRate => "failure_rate",
            Rule::DockerUnreachable => "docker_unreachable",
            Rule::DbWrite => "db_write",
            Rule::Federation => "federation",
            Rule::Test => "test",
        }
    }

    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// What is wrong, in a few words (the message's headline).
    pub fn title(self) -> &'static str {
        match self {
            Rule::ContainerDown => "Node container not running",
            Rule::RestartLoop => "Node container restarting in a loop",
            Rule::Silence => "Node silent: no log line",
            Rule::NoTasks => "No tasks received",
            Rule::FailureRate => "Many tasks failing",
            Rule::DockerUnreachable => "Docker API unreachable",
            Rule::DbWrite => "Database writes failing",
            Rule::Federation => "Federation reports not delivered",
            Rule::Test => "Test message",
        }
    }

    /// What the operator should look at first.
    pub fn check(self) -> &'static str {
        match self {
            Rule::ContainerDown => "`docker ps -a` and the container's last log lines",
            Rule::RestartLoop => "the container's exit codes and last log lines",
            Rule::Silence => "that the node process runs and reaches its network",
            Rule::NoTasks => "the node's registration and network connection",
            Rule::FailureRate => "the failed tasks on the dashboard",
            Rule::DockerUnreachable => "the Docker daemon and the monitor's access to its socket",
            Rule::DbWrite => "free disk space and the database file's permissions",
            Rule::Federation => "the federation page of the dashboard",
            Rule::Test => "nothing: this channel works",
        }
    }
}

/// Whether a rule's condition holds (`firing`) or stopped holding (`resolved`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// One change of a rule's state, as a rule hands it to [`Alerts::notify`].
///
/// `details` is one short line from the rule (an exit code, a count, a percentage). It
/// goes to every channel as written, so a rule never puts secrets, task input or output,
/// the wallet address or addresses in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub rule: Rule,
    pub state: AlertState,
    /// When the condition started (firing) or stopped (resolved).
    pub since_ns: UnixNanos,
    pub details: String,
}
