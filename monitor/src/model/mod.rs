//! Domain types that flow along the ingest path: source -> parser -> store.
//!
//! The parser produces [`Entry`] values; the store persists them and applies their
//! [`Event`]s to tasks, invoices and the node status. Nothing here does I/O.

pub mod alert;

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
    /// The words of the levels the node prints (not [`Level::Other`]), most severe first.
    pub const WORDS: [&'static str; 4] = ["error", "warn", "info", "debug"];

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

/// Defines a `Copy` enum of unit variants from one list of `Variant => "word"`: the
/// enum (the word is its serde form), `ALL` (every value, in order), `WORDS` (their
/// words, in the same order), `as_str` and `parse`. What lists the values (the API's
/// filter words, the OpenAPI enums, the dashboard's choices) derives from these, so no
/// list can miss a value or drift from the enum.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($word),+].len()] = [$($name::$variant),+];
            /// The words of [`Self::ALL`], in the same order.
            pub const WORDS: [&'static str; [$($word),+].len()] = [$($word),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// The value whose word is exactly `s`.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($word => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

word_enum! {
    /// What kind of message an entry is. `Raw` means the line did not have the entry
    /// shape (kept verbatim); `Log` means a well-formed entry whose message has no special
    /// meaning. Adding a kind: see ARCHITECTURE.md ("Where to add...").
    pub enum Kind {
        Raw => "raw",
        Log => "log",
        NodeRegistered => "node_registered",
        SlotTaken => "slot_taken",
        SlotReleased => "slot_released",
        TaskReceived => "task_received",
        TaskDownloaded => "task_downloaded",
        ExecutionStarted => "execution_started",
        ExecutionMetrics => "execution_metrics",
        ExecutionStderr => "execution_stderr",
        ExecutionCompleted => "execution_completed",
        OutcomePublished => "outcome_published",
        Invoice => "invoice",
    }
}

impl Kind {
    /// The kinds a node prints once or twice for every task (a slot taken and released,
    /// received, downloaded, started, its metrics, completed, its outcome, its invoice):
    /// together about two entries in five of a working node's log, each kind about one
    /// in twenty. The store's kind index leaves them out (schema version 16): a filter by
    /// one of them finds its entries by time, where one in twenty matches; the index serves
    /// the kinds that can be thousands of entries apart (a registration, a failure's
    /// stderr, a raw line).
    pub const EVERY_TASK: [Kind; 9] = [
        Kind::SlotTaken,
        Kind::SlotReleased,
        Kind::TaskReceived,
        Kind::TaskDownloaded,
        Kind::ExecutionStarted,
        Kind::ExecutionMetrics,
        Kind::ExecutionCompleted,
        Kind::OutcomePublished,
        Kind::Invoice,
    ];
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
    /// Set when this entry is a longer version of one emitted before: a live source handed
    /// the entry over when the node paused, and a continuation line came after (see
    /// `parser`). The store replaces that version with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Replaced>,
}

/// The version of an entry that a longer one replaces: where it is stored, and its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub entry: EntryRef,
    pub kind: Kind,
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
    /// when there was none or the attribution was ambiguous; `stderr` the same for the
    /// pending stderr block (same rule, docs/LOGFORMAT.md).
    ExecutionCompleted {
        execution_id: String,
        metrics: Option<Box<Metrics>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stderr: Option<Box<Stderr>>,
    },
    OutcomePublished,
    Invoice(Box<Invoice>),
}

/// A `Command execution stderr:` block that a completion took (the attribution rule is
/// the metrics blocks' one: docs/LOGFORMAT.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stderr {
    /// What the execution printed: the message after `Command execution stderr: `.
    pub text: String,
    /// The stderr entry, which takes the completion's execution id.
    pub entry: EntryRef,
}

/// The longest failure reason kept, in characters (a longer first line is cut, with `…`).
pub const MAX_REASON_CHARS: usize = 500;

impl Stderr {
    /// The failure reason: the first line that is not blank, trimmed, at most
    /// [`MAX_REASON_CHARS`] characters (a longer one is cut and ends with `…`).
    pub fn reason(&self) -> Option<String> {
        let line = self.text.lines().map(str::trim).find(|l| !l.is_empty())?;
        match line.char_indices().nth(MAX_REASON_CHARS - 1) {
            Some((cut, _)) if line.chars().count() > MAX_REASON_CHARS => {
                Some(format!("{}…", line.get(..cut).unwrap_or(line)))
            }
            _ => Some(line.to_owned()),
        }
    }
}

/// Where an entry emitted earlier is stored: its source position and its stored time
/// (Docker receive time of its first line, else the node's clock), which the store's
/// time index finds it by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryRef {
    pub pos: Pos,
    pub time_ns: UnixNanos,
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

word_enum! {
    /// Task life-cycle state.
    pub enum TaskStatus {
        Received => "received",
        Executing => "executing",
        Completed => "completed",
        Failed => "failed",
    }
}

impl TaskStatus {
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

/// Docker's count of the restarts its restart policy made (`RestartCount`), as of the
/// container's start at `started_ns` (`State.StartedAt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartObservation {
    pub restart_count: i64,
    pub started_ns: UnixNanos,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reason_is_the_first_line_that_is_not_blank_cut_at_500_characters() {
        let stderr = |text: &str| Stderr {
            text: text.to_owned(),
            entry: EntryRef::default(),
        };
        assert_eq!(
            stderr("\n   \n  Error: x  \nmore").reason().as_deref(),
            Some("Error: x")
        );
        assert_eq!(stderr(" \n\t").reason(), None);
        let long = "é".repeat(MAX_REASON_CHARS + 1);
        let cut = stderr(&long).reason().unwrap_or_default();
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert_eq!(cut, format!("{}…", "é".repeat(MAX_REASON_CHARS - 1)));
        let exact = "a".repeat(MAX_REASON_CHARS);
        assert_eq!(stderr(&exact).reason(), Some(exact));
    }

    #[test]
    fn the_level_words_are_exactly_the_levels_the_node_prints() {
        for word in Level::WORDS {
            let level = Level::from_word(word);
            assert!(!matches!(level, Level::Other(_)), "{word}");
            assert_eq!(level.as_str(), word);
        }
        for spelling in ["ERROR", "Warn", "warning", "INFO", "Debug"] {
            let level = Level::from_word(spelling);
            assert!(Level::WORDS.contains(&level.as_str()), "{spelling}");
        }
        assert_eq!(Level::from_word("trace"), Level::Other("trace".into()));
    }

    #[test]
    fn a_word_enum_serializes_as_its_word_and_parses_back() {
        for kind in Kind::ALL {
            assert_eq!(serde_json::to_value(kind).ok(), Some(kind.as_str().into()));
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::WORDS.len(), Kind::ALL.len());
        for status in TaskStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(status.as_str().into())
            );
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(Kind::parse("Raw"), None);
    }

    #[test]
    fn the_log_format_document_lists_every_kind() {
        let doc = include_str!("../../../docs/LOGFORMAT.md");
        for word in Kind::WORDS {
            let row = format!("| `{word}` |");
            assert!(
                doc.contains(&row),
                "docs/LOGFORMAT.md has no row for {word}"
            );
        }
    }
}
