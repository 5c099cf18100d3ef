//! The alerts' vocabulary, shared by the rules (`crate::alerts`) and the rows the store
//! keeps of them (`store::alerts`): rule ids, states, a notification, a rule's settings.

use std::time::Duration;

use serde::Serialize;

use super::UnixNanos;

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

    /// The rules the engine evaluates (all but `test`, the last of [`Rule::ALL`]).
    pub const RULES: &'static [Rule] = Rule::ALL.split_at(Rule::ALL.len() - 1).0;

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

/// A rule's state as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    #[default]
    Ok,
    /// The condition holds, not yet for the rule's duration.
    Pending,
    Firing,
}

impl RuleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Ok => "ok",
            RuleState::Pending => "pending",
            RuleState::Firing => "firing",
        }
    }

    pub fn parse(s: &str) -> Option<RuleState> {
        match s {
            "ok" => Some(RuleState::Ok),
            "pending" => Some(RuleState::Pending),
            "firing" => Some(RuleState::Firing),
            _ => None,
        }
    }
}

/// A rule's state with since when, as stored in `alert_rules`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleStatus {
    pub state: RuleState,
    /// When the condition started (pending, firing).
    pub since_ns: Option<UnixNanos>,
    /// When it fired.
    pub fired_ns: Option<UnixNanos>,
    /// When a notification of it was last queued (firing or reminder).
    pub notified_ns: Option<UnixNanos>,
    /// The condition's detail line when it last changed.
    pub details: String,
}

/// One rule's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RuleConfig {
    pub enabled: bool,
    /// How long the condition must hold (container_down, silence, no_tasks,
    /// docker_unreachable, db_write).
    #[serde(with = "secs")]
    pub after: Duration,
    /// restart_loop: starts; failure_rate: the fewest finished tasks; federation: windows
    /// not delivered.
    pub count: u32,
    /// restart_loop, failure_rate: the window counted over.
    #[serde(with = "secs")]
    pub window: Duration,
    /// failure_rate: the share of failed tasks, in percent.
    pub percent: u8,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

impl RuleConfig {
    /// The built-in defaults (docs/ALERTS.md).
    pub fn default_for(rule: Rule) -> RuleConfig {
        let base = RuleConfig {
            enabled: true,
            after: Duration::ZERO,
            count: 0,
            window: Duration::ZERO,
            percent: 0,
        };
        let secs = Duration::from_secs;
        match rule {
            Rule::ContainerDown => RuleConfig {
                after: secs(MIN),
                ..base
            },
            Rule::RestartLoop => RuleConfig {
                count: 3,
                window: secs(10 * MIN),
                ..base
            },
            Rule::Silence => RuleConfig {
                after: secs(10 * MIN),
                ..base
            },
            Rule::NoTasks => RuleConfig {
                enabled: false,
                after: secs(6 * HOUR),
                ..base
            },
            Rule::FailureRate => RuleConfig {
                count: 10,
                window: secs(HOUR),
                percent: 50,
                ..base
            },
            Rule::DockerUnreachable => RuleConfig {
                after: secs(2 * MIN),
                ..base
            },
            Rule::DbWrite => RuleConfig {
                after: secs(MIN),
                ..base
            },
            Rule::Federation => RuleConfig { count: 3, ..base },
            Rule::Test => RuleConfig {
                enabled: false,
                ..base
            },
        }
    }
}

/// A duration as the settings write it: `300` -> `5m`, `86400` -> `24h`, `90` -> `90s`.
pub fn human(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
