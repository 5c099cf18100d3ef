//! Domain types that flow along the ingest path: source -> parser -> store.
//!
//! The parser produces [`Entry`] values; the store persists them and applies their
//! [`Event`]s to tasks, invoices and the node status. Nothing here does I/O.

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch (UTC).
pub type UnixNanos = i64;

/// Position of a line inside its source, totally ordered.
///
/// Docker sources use `(docker timestamp in ns, n)` where `n` counts the lines that
/// carried that exact timestamp so far (ties are real: Docker's clock is coarse on some
/// hosts). File sources use `(0, byte offset after the line)`. The store keeps the
/// position of the last committed line per source (the cursor) in the same transaction
/// as the entries it covers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Pos {
    pub major: i64,
    pub minor: i64,
}

impl Pos {
    pub const fn new(major: i64, minor: i64) -> Self {
        Self { major, minor }
    }
}

/// What the source knows about a line besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineMeta {
    /// Docker receive time, when the source knows it (Docker API). When `None`, the parser
    /// takes it from a leading RFC 3339 timestamp in the line, if there is one.
    pub received_ns: Option<UnixNanos>,
    /// Position of this line in its source.
    pub pos: Pos,
}

/// Log level as printed by the node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    /// Any other word in the level position, lower-cased.
    #[serde(untagged)]
    Other(String),
}

impl Level {
    pub fn as_str(&self) -> &str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Other(s) => s,
        }
    }

    pub fn from_word(word: &str) -> Level {
        match word {
            "error" | "ERROR" | "Error" => Level::Error,
            "warn" | "WARN" | "Warn" | "warning" | "WARNING" => Level::Warn,
            "info" | "INFO" | "Info" => Level::Info,
            "debug" | "DEBUG" | "Debug" => Level::Debug,
            other => Level::Other(other.to_ascii_lowercase()),
        }
    }
}

/// What kind of message an entry is. `Raw` means the line did not have the entry shape
/// (kept verbatim); `Log` means a well-formed entry whose message has no special meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Raw,
    Log,
    NodeRegistered,
    SlotTaken,
    SlotReleased,
    TaskReceived,
    TaskDownloaded,
    ExecutionStarted,
    ExecutionMetrics,
    ExecutionStderr,
    ExecutionCompleted,
    OutcomePublished,
    Invoice,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Raw,
        Kind::Log,
        Kind::NodeRegistered,
        Kind::SlotTaken,
        Kind::SlotReleased,
        Kind::TaskReceived,
        Kind::TaskDownloaded,
        Kind::ExecutionStarted,
        Kind::ExecutionMetrics,
        Kind::ExecutionStderr,
        Kind::ExecutionCompleted,
        Kind::OutcomePublished,
        Kind::Invoice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Log => "log",
            Kind::NodeRegistered => "node_registered",
            Kind::SlotTaken => "slot_taken",
            Kind::SlotReleased => "slot_released",
            Kind::TaskReceived => "task_received",
            Kind::TaskDownloaded => "task_downloaded",
            Kind::ExecutionStarted => "execution_started",
            Kind::ExecutionMetrics => "execution_metrics",
            Kind::ExecutionStderr => "execution_stderr",
            Kind::ExecutionCompleted => "execution_completed",
            Kind::OutcomePublished => "outcome_published",
            Kind::Invoice => "invoice",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One log entry: a header line plus its continuation lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position of the entry's last line (what the cursor advances to).
    pub pos: Pos,
    /// Docker receive time of the entry's first line.
    pub received_ns: Option<UnixNanos>,
    /// The node's own wall-clock time (second resolution), as Unix seconds.
    pub node_time: Option<i64>,
    pub level: Option<Level>,
    /// `@truebit/worker-runner-node`, possibly with `-0x<wallet>`.
    pub logger: Option<String>,
    pub version: Option<String>,
    /// The message, with continuation lines appended after `\n`. For raw entries, the
    /// whole line (ANSI codes removed, invalid UTF-8 replaced).
    pub message: String,
    pub kind: Kind,
    /// Execution id this entry concerns, when the line names one.
    pub execution_id: Option<String>,
    pub event: Option<Event>,
}

/// What an entry means for tasks, invoices and the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    NodeRegistered {
        address: String,
    },
    SlotTaken {
        slot: u32,
        total: u32,
    },
    SlotReleased {
        active: u32,
        total: u32,
    },
    TaskReceived(Box<TaskCreated>),
    TaskDownloaded {
        task_id: String,
    },
    ExecutionStarted {
        execution_id: String,
    },
    /// Metrics as printed; attribution to a task happens on the completion line.
    ExecutionMetrics(Box<Metrics>),
    ExecutionStderr {
        text: String,
    },
    /// `metrics` is the pending metrics block attributed to this completion, or `None`
    /// when there was none or the attribution was ambiguous.
    ExecutionCompleted {
        execution_id: String,
        metrics: Option<Box<Metrics>>,
    },
    OutcomePublished,
    Invoice(Box<Invoice>),
}

/// The figures of a `task_created` message that the monitor keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub execution_id: String,
    pub task_id: Option<String>,
    pub chain_id: Option<String>,
    pub block_number: Option<u64>,
    pub block_hash: Option<String>,
    pub requester: Option<String>,
    /// `timestamp` of the message, Unix milliseconds.
    pub created_ms: Option<i64>,
    pub gas_limit: Option<u64>,
    pub memory_limit: Option<u64>,
    pub call_limit: Option<u64>,
    pub frame_limit: Option<u64>,
    pub reward: Option<String>,
    pub execution_timeout_ms: Option<u64>,
    pub required_solutions: Option<u64>,
    pub total_solutions: Option<u64>,
    /// The task input as JSON text (a string input is kept as is, an object is serialized).
    pub input: Option<String>,
}

/// An execution metrics block (`Command execution stdout: {json}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub elapsed_ns: Option<u64>,
    pub exit_code: Option<i64>,
    /// Gas used = `metering.last.steps`.
    pub steps: Option<u64>,
    pub gas_limit: Option<u64>,
    pub memory_limit: Option<u64>,
    pub memory_peak: Option<u64>,
    pub call_peak: Option<u64>,
    pub frame_peak: Option<u64>,
    pub wasm_size: Option<u64>,
    pub wasm_hash: Option<String>,
    pub cached: Option<bool>,
    /// Task output, if the block carries one (field `output`).
    pub output: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub invoice_id: Option<i64>,
    pub execution_id: Option<String>,
    pub task_id: Option<String>,
    /// `taskCreated_timeStamp`, Unix seconds.
    pub task_created_ts: Option<i64>,
    pub step_gas_price: Option<String>,
    pub byte_gas_price: Option<String>,
    pub line_items: Vec<LineItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// `charge`, `pay`, `penalty` or whatever else the node printed.
    pub operation: String,
    pub account: Option<String>,
    /// `total_steps_computed`, as reported (kept as text, parsed where numeric).
    pub steps: Option<String>,
    /// `peak_memory_used`, units as reported.
    pub memory: Option<String>,
}

/// Task life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Received,
    Executing,
    Completed,
    Failed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 4] = [
        TaskStatus::Received,
        TaskStatus::Executing,
        TaskStatus::Completed,
        TaskStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Received => "received",
            TaskStatus::Executing => "executing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

/// A change of the node container's state, from the Docker events stream or inspect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEvent {
    pub container_id: String,
    pub container_name: String,
    pub time_ns: UnixNanos,
    pub action: ContainerAction,
    pub exit_code: Option<i64>,
    /// Not seen as a Docker event: inferred from the container's inspected state
    /// (`State.StartedAt`/`FinishedAt`), e.g. a stop while the monitor or the daemon was
    /// down (Docker forgets its events when it restarts).
    #[serde(default)]
    pub inferred: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerAction {
    Created,
    Started,
    Restarted,
    /// The main process exited (`die`); `exit_code` tells how.
    Died,
    Oom,
    Stopped,
    Paused,
    Unpaused,
    Destroyed,
}

impl ContainerAction {
    pub const ALL: [ContainerAction; 9] = [
        ContainerAction::Created,
        ContainerAction::Started,
        ContainerAction::Restarted,
        ContainerAction::Died,
        ContainerAction::Oom,
        ContainerAction::Stopped,
        ContainerAction::Paused,
        ContainerAction::Unpaused,
        ContainerAction::Destroyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerAction::Created => "created",
            ContainerAction::Started => "started",
            ContainerAction::Restarted => "restarted",
            ContainerAction::Died => "died",
            ContainerAction::Oom => "oom",
            ContainerAction::Stopped => "stopped",
            ContainerAction::Paused => "paused",
            ContainerAction::Unpaused => "unpaused",
            ContainerAction::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<ContainerAction> {
        ContainerAction::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the container is up after this event (`Some(true)`), down, or the event
    /// does not change it (`None`: an OOM kill is followed by its `died`).
    pub fn up_after(self) -> Option<bool> {
        match self {
            ContainerAction::Started | ContainerAction::Restarted | ContainerAction::Unpaused => {
                Some(true)
            }
            ContainerAction::Died
            | ContainerAction::Stopped
            | ContainerAction::Paused
            | ContainerAction::Destroyed
            | ContainerAction::Created => Some(false),
            ContainerAction::Oom => None,
        }
    }

    /// Maps a Docker event action (`start`, `die`, `oom`, ...) to ours.
    pub fn from_docker(action: &str) -> Option<ContainerAction> {
        Some(match action {
            "create" => ContainerAction::Created,
            "start" => ContainerAction::Started,
            "restart" => ContainerAction::Restarted,
            "die" => ContainerAction::Died,
            "oom" => ContainerAction::Oom,
            "stop" => ContainerAction::Stopped,
            "pause" => ContainerAction::Paused,
            "unpause" => ContainerAction::Unpaused,
            "destroy" => ContainerAction::Destroyed,
            _ => return None,
        })
    }
}
