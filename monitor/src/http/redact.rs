//! Task input and output, and who may see them: one rule for every representation.
//!
//! Input and output reach clients in two shapes: the task's `input`/`output` fields (and
//! `error`, the first line of what the program printed on stderr), and
//! the raw text of the log entries that carried them (`task_received`: the task_created
//! JSON with the input; `execution_metrics`: the stdout block with the output;
//! `execution_stderr`: what the program printed on stderr). A continuation line stored on
//! its own after its entry (a node that paused, see `parser`) has its entry's kind, so the
//! same kinds cover it. Every route that sends a task
//! or a log entry — task JSON, `/api/logs`, a task's `entries`, the live stream's `entry`
//! and `task` events — passes it through [`Access`] here, so a caller without data access
//! sees neither shape, and the log search cannot be used to probe the hidden text.

use serde_json::Value;

use super::auth::Principal;
use crate::model::Kind;
use crate::store::{StoredEntry, Task};

/// Kinds of log entries whose message text carries task input or output.
pub const DATA_KINDS: [Kind; 3] = [
    Kind::TaskReceived,
    Kind::ExecutionMetrics,
    Kind::ExecutionStderr,
];

/// Longest message text sent to a client for one log entry (64 KiB). A line is bounded
/// when it is read (1 MiB) and an entry's continuation lines at 4 MiB, but a page of 500
/// such entries would still be 2 GB: what is longer is cut here, on a character boundary,
/// and says how much was left out. A task's input and output are whole on the task.
pub const MAX_SENT_MESSAGE_BYTES: usize = 64 << 10;

/// What a hidden message becomes.
pub const HIDDEN_MESSAGE: &str =
    "[hidden: this line carries task input or output; log in with the password or use an admin key]";

/// Whether a caller may see task input and output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A login session or an admin key.
    Visible,
    /// A read-only key.
    Hidden,
}

impl Access {
    pub fn of(principal: &Principal) -> Access {
        if principal.is_admin() {
            Access::Visible
        } else {
            Access::Hidden
        }
    }

    pub fn visible(self) -> bool {
        self == Access::Visible
    }

    /// The entry as this caller may see it: the message of a [`DATA_KINDS`] entry is
    /// replaced by [`HIDDEN_MESSAGE`], and any message is cut at
    /// [`MAX_SENT_MESSAGE_BYTES`].
    pub fn entry(self, mut entry: StoredEntry) -> StoredEntry {
        if !self.visible() && carries_data(entry.kind) {
            entry.message = HIDDEN_MESSAGE.to_owned();
        }
        cut_message(&mut entry.message);
        entry
    }

    pub fn entries(self, entries: Vec<StoredEntry>) -> Vec<StoredEntry> {
        entries.into_iter().map(|e| self.entry(e)).collect()
    }

    /// A task as JSON: `input` and `output` only when visible (lists and the live stream
    /// never read them and remove them); `error` (the failure reason, a line of stderr)
    /// is `null` when hidden.
    pub fn task_json(self, task: Task) -> Value {
        let mut v = serde_json::to_value(self.task(task)).unwrap_or(Value::Null);
        if !self.visible() {
            if let Some(map) = v.as_object_mut() {
                map.remove("input");
                map.remove("output");
            }
        }
        v
    }

    /// The task as this caller may see it: without input, output and failure reason
    /// when hidden (the pages and [`Access::task_json`] go through here).
    pub fn task(self, mut task: Task) -> Task {
        if !self.visible() {
            task.input = None;
            task.output = None;
            task.error = None;
        }
        task
    }

    /// The kinds whose message a text search must not look into for this caller
    /// (matching hidden text would reveal it a guess at a time).
    pub fn unsearchable_kinds(self) -> Vec<Kind> {
        if self.visible() {
            Vec::new()
        } else {
            DATA_KINDS.to_vec()
        }
    }
}

/// Cuts `message` at [`MAX_SENT_MESSAGE_BYTES`] (on a character boundary) and says how
/// many bytes were left out.
fn cut_message(message: &mut String) {
    if message.len() <= MAX_SENT_MESSAGE_BYTES {
        return;
    }
    let mut end = MAX_SENT_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let left_out = message.len() - end;
    message.truncate(end);
    message.push_str(&format!(" …[{left_out} more bytes not sent]"));
}

/// Whether entries of `kind` carry task input or output in their text.
pub fn carries_data(kind: Kind) -> bool {
    DATA_KINDS.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pos;

    fn entry(kind: Kind, message: &str) -> StoredEntry {
        StoredEntry {
            id: 1,
            source: "demo".into(),
            pos: Pos::default(),
            time_ns: 0,
            received_ns: None,
            node_time: None,
            level: None,
            logger: None,
            version: None,
            kind,
            execution_id: Some("e".into()),
            message: message.into(),
        }
    }

    #[test]
    fn hidden_access_replaces_the_text_of_every_kind_that_carries_data() {
        for kind in Kind::ALL {
            let e = Access::Hidden.entry(entry(kind, "SECRET"));
            assert_eq!(
                e.message == HIDDEN_MESSAGE,
                carries_data(kind),
                "{kind:?}: {}",
                e.message
            );
            let v = Access::Visible.entry(entry(kind, "SECRET"));
            assert_eq!(v.message, "SECRET", "{kind:?}");
        }
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary_and_says_how_much_is_left_out() {
        // 'é' is two bytes: the cut point falls inside one.
        let long = format!("a{}", "é".repeat(MAX_SENT_MESSAGE_BYTES));
        let sent = Access::Visible.entry(entry(Kind::Log, &long));
        let kept = sent.message.split(" …[").next().unwrap_or_default();
        assert_eq!(kept.len(), MAX_SENT_MESSAGE_BYTES - 1);
        assert_eq!(
            sent.message.strip_prefix(kept),
            Some(format!(" …[{} more bytes not sent]", long.len() - kept.len()).as_str())
        );
        let short = Access::Visible.entry(entry(Kind::Log, "short"));
        assert_eq!(short.message, "short");
    }
}
