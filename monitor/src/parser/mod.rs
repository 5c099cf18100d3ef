//! Pure, never-failing parser for runner-node console output (docs/LOGFORMAT.md).
//!
//! ```
//! use truebit_monitor::model::{LineMeta, Pos};
//! use truebit_monitor::parser::{Parser, ParserConfig};
//!
//! let mut p = Parser::new(ParserConfig::default());
//! let mut out = Vec::new();
//! let meta = LineMeta { received_ns: None, pos: Pos::new(0, 1) };
//! p.push_line(b"2025-11-24 13:55:34 info: @truebit/worker-runner-node:2.4.1 hello", meta, &mut out);
//! assert!(out.is_empty() && p.has_pending()); // the next line may continue this entry
//! p.flush(&mut out);
//! assert_eq!(out[0].message, "hello");
//! ```
//!
//! # How a line is read
//!
//! 1. A trailing `\r` and all ANSI escape sequences are removed; then at most one Docker
//!    timestamp and one compose prefix (`runner-node  | `), in either order. These are
//!    transport, never part of a message (also not of a raw entry's message). When the
//!    line's [`LineMeta::received_ns`] is `None`, the Docker timestamp is used instead.
//! 2. A line starting with the header `YYYY-MM-DD HH:MM:SS LEVEL:` starts a new entry and
//!    finishes the pending one. Logger and version are `None` when not printed.
//! 3. Any other line continues the pending entry (appended after `\n`, blank lines
//!    included, since they can be part of pretty-printed JSON). With no pending entry it
//!    is a *stray continuation*, emitted at once as a one-line entry of its own: it still
//!    continues the last entry emitted (which a live source had to hand over when the
//!    node paused, see below), so it takes that entry's kind, without level, execution id
//!    or event. Before the source's first entry it is a [`Kind::Raw`] entry. Only a line
//!    that is empty after step 1 is skipped then (it carries nothing). Keeping the kind
//!    keeps what the entry carries: the tail of a task's input or output is hidden
//!    wherever its entry is (`http::redact`).
//! 4. A message never grows past [`MAX_MESSAGE_BYTES`] through continuation lines: the
//!    line that would cross it finishes the entry and becomes a stray continuation itself
//!    (as do the following continuation lines). A single line is never cut; the source
//!    bounds line length.
//! 5. Invalid UTF-8 is replaced with U+FFFD.
//!
//! An entry's `pos` is that of its last line, its `received_ns` that of its first line.
//! It is classified when it is emitted (next header or [`Parser::flush`]), so multi-line
//! JSON is complete. See [`Entry`] for the rest.
//!
//! # When the pending entry is finished
//!
//! An entry is certainly finished when the next header line arrives. A live source that
//! goes quiet has to decide earlier, and asks [`Parser::pending`]; this is the one place
//! that knows the shape of the node's output:
//!
//! - [`Completion::Open`]: the entry clearly goes on. A JSON block (`{` or `[`, counted
//!   outside JSON strings) is still open, or its last line ends with `:` (a block is
//!   announced: `Command execution stdout:` before pretty-printed JSON, a panic message).
//! - [`Completion::Complete`]: nothing in it announces more lines (a one-line entry, a
//!   closed JSON block).
//!
//! The ingest path waits much longer for an open entry than for a complete-looking one
//! (`ingest::OPEN_ENTRY_WAIT`, `ingest::IDLE_FLUSH`).
//!
//! Either way the guess costs nothing when it is wrong: an entry emitted by
//! [`Parser::flush`] stays *reopenable* until the next header line. A continuation line
//! that comes after it (a stack trace under a one-line stderr message, a node that stalls
//! for seconds) makes it pending again, with the waiting metrics and stderr blocks as they
//! were before it was emitted; the longer version is emitted later with
//! [`Entry::replaces`] naming where the emitted one is stored, and the store replaces it.
//! What emitting the first version did is done again for the longer one (a completion
//! takes the same blocks), so nothing is counted twice. The reopenable entry is not part
//! of [`Parser::state`]: after a restart (or a new parser for a reconnected stream), such
//! a line is a stray continuation (step 3).
//!
//! # What the store can rely on
//!
//! - `execution_id` is set on task_received, execution_started, execution_completed and
//!   invoice entries whenever the line names one (also when their JSON is unusable but
//!   still contains `"executionId":"..."`). Execution ids are lower-cased everywhere
//!   (task JSON, start, completion, invoice), so they match across lines.
//! - `event: None` on a recognised kind means the line had the kind's shape but its data
//!   was unusable (JSON that does not parse, a task without execution id, a stdout block
//!   that is not a metrics object, a malformed address or slot numbers). Treat it like a
//!   log line. `Log` and `Raw` entries never carry an event.
//! - Metrics attribution (`ExecutionCompleted { metrics }`): a metrics block waits in the
//!   parser state; a completion takes it only when it is the single block waiting and was
//!   printed at most [`METRICS_WINDOW_NS`] before (Docker receive time when both entries
//!   have one, counted from the block's last line, else node time, with 1 s of tolerance
//!   backwards). More than one waiting
//!   block is ambiguous: the completion gets `None` and all of them are dropped. Blocks
//!   older than the window are dropped. The metrics entry itself is always emitted.
//! - Stderr attribution (`ExecutionCompleted { stderr }`): a `Command execution stderr:`
//!   block waits beside the metrics blocks and a completion takes it by the same rule
//!   (the single block waiting, within the window; otherwise none, and the waiting ones
//!   are dropped), whatever the order of the two blocks. It carries where its entry is
//!   stored ([`EntryRef`]), so that the store gives that entry the completion's execution
//!   id; the entry itself was emitted without one.
//! - [`Parser::state`] after a `push_line`/`flush` matches the entries emitted so far
//!   (the waiting blocks, and the kind of the last entry for stray continuations):
//!   persist it with the cursor of the last emitted entry and [`Parser::restore`] it on
//!   restart. The pending (unemitted) entry is not part of it: its lines are after the
//!   cursor and will be read again.

mod json;
mod line;
mod message;

use serde::{Deserialize, Serialize};

use crate::model::{
    Entry, EntryRef, Event, Kind, Level, LineMeta, Metrics, Pos, Replaced, Stderr, UnixNanos,
};

use line::DayCache;

/// Continuation lines stop being appended past this message size (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// A metrics block is attributed only to a completion printed at most this long after it.
pub const METRICS_WINDOW_NS: i64 = 5_000_000_000;
/// How far a completion may appear to precede its metrics block (clock jitter).
const METRICS_SKEW_NS: i64 = 1_000_000_000;
/// At most this many metrics blocks (and as many stderr blocks) wait for a completion
/// (oldest dropped first).
const MAX_PENDING_METRICS: usize = 16;
/// The line scratch buffer is shrunk back when a huge line made it grow past this.
const SCRATCH_KEEP_BYTES: usize = 1 << 20;

/// Whether the pending entry is finished, as far as its text tells (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// No entry is pending.
    Nothing,
    /// Nothing in the pending entry announces more lines.
    Complete,
    /// The pending entry clearly goes on: an open JSON block or a last line ending in `:`.
    Open,
}

/// Parser settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserConfig {
    /// The node's wall clock is UTC plus this many seconds (0: the node logs in UTC).
    pub node_utc_offset_secs: i32,
}

/// A metrics block waiting for its completion line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMetrics {
    pub metrics: Metrics,
    /// Receive time of the metrics entry's last line, if known.
    pub received_ns: Option<UnixNanos>,
    /// Node time of the metrics entry (Unix seconds).
    pub node_time: Option<i64>,
}

/// A stderr block waiting for its completion line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStderr {
    pub stderr: Stderr,
    /// Receive time of the stderr entry's last line, if known.
    pub received_ns: Option<UnixNanos>,
    /// Node time of the stderr entry (Unix seconds).
    pub node_time: Option<i64>,
}

/// What must survive a restart: the metrics and stderr blocks still waiting for a
/// completion, and the kind of the last entry emitted (what a stray continuation line
/// after the restart takes). (A state saved before stderr blocks waited reads as none
/// waiting; one saved before the last kind was kept, as none emitted.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParserState {
    pub pending_metrics: Vec<PendingMetrics>,
    #[serde(default)]
    pub pending_stderr: Vec<PendingStderr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_kind: Option<Kind>,
}

/// Turns physical lines into [`Entry`] values. See the module documentation.
#[derive(Debug)]
pub struct Parser {
    config: ParserConfig,
    pending: Option<Pending>,
    metrics: Vec<PendingMetrics>,
    stderr: Vec<PendingStderr>,
    /// Kind of the last entry emitted (a stray continuation line takes it).
    last_kind: Option<Kind>,
    /// The entry the last [`Parser::flush`] emitted, until the next header line.
    reopenable: Option<Reopenable>,
    /// Reused buffer for lines that contain escape sequences.
    scratch: Vec<u8>,
    docker_days: DayCache,
    node_days: DayCache,
}

/// The entry being assembled (a header line plus continuation lines so far).
#[derive(Clone, Debug)]
struct Pending {
    received_ns: Option<UnixNanos>,
    pos: Pos,
    node_time: i64,
    level: Level,
    logger: Option<String>,
    version: Option<String>,
    message: String,
    /// Receive time of the entry's last line (a metrics block counts from its end).
    last_received_ns: Option<UnixNanos>,
    /// JSON brackets seen so far, for [`Parser::pending`].
    block: BlockScan,
    /// The last line ends with `:` (after trailing blanks).
    announces: bool,
    /// Where the version emitted before is stored, when a continuation line reopened it.
    replaces: Option<Replaced>,
}

/// An entry emitted by [`Parser::flush`] (no next header yet), kept so that a
/// continuation line can still join it: the entry as it was pending, and the waiting
/// blocks as they were before it was emitted, so that emitting the longer version does
/// exactly what emitting the first one did.
#[derive(Debug)]
struct Reopenable {
    pending: Pending,
    metrics: Vec<PendingMetrics>,
    stderr: Vec<PendingStderr>,
    /// Where the emitted version is stored, and its kind.
    stored: Replaced,
}

/// Counts JSON brackets in a message as it grows: depth of `{`/`[` blocks, with brackets
/// inside JSON strings ignored. Outside any block, quotes are plain text.
#[derive(Clone, Copy, Debug, Default)]
struct BlockScan {
    depth: u32,
    in_string: bool,
}

impl BlockScan {
    fn scan(&mut self, text: &[u8]) {
        let mut i = 0;
        while i < text.len() {
            let rest = text.get(i..).unwrap_or_default();
            if self.in_string {
                let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
                    return;
                };
                if rest.get(at) == Some(&b'"') {
                    self.in_string = false;
                    i += at + 1;
                } else {
                    i += at + 2; // an escaped character
                }
            } else if self.depth == 0 {
                let Some(at) = memchr::memchr2(b'{', b'[', rest) else {
                    return;
                };
                self.depth = 1;
                i += at + 1;
            } else {
                for &b in rest {
                    i += 1;
                    match b {
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => self.depth -= 1,
                        b'"' => self.in_string = true,
                        _ => continue,
                    }
                    if self.in_string || self.depth == 0 {
                        break;
                    }
                }
            }
        }
    }

    fn open(&self) -> bool {
        self.depth > 0 || self.in_string
    }
}

fn announces_more(text: &[u8]) -> bool {
    text.trim_ascii_end().last() == Some(&b':')
}

impl Parser {
    pub fn new(config: ParserConfig) -> Self {
        Parser {
            config,
            pending: None,
            metrics: Vec::new(),
            stderr: Vec::new(),
            last_kind: None,
            reopenable: None,
            scratch: Vec::new(),
            docker_days: DayCache::default(),
            node_days: DayCache::default(),
        }
    }

    /// One physical line WITHOUT its trailing `\n` (a trailing `\r` is removed too). May
    /// emit finished entries into `out`.
    pub fn push_line(&mut self, line: &[u8], meta: LineMeta, out: &mut Vec<Entry>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line::has_escape(line) {
            let mut scratch = std::mem::take(&mut self.scratch);
            line::strip_ansi_into(line, &mut scratch);
            self.push_clean(&scratch, meta, out);
            if scratch.capacity() > SCRATCH_KEEP_BYTES {
                scratch = Vec::new();
            }
            self.scratch = scratch;
        } else {
            self.push_clean(line, meta, out);
        }
    }

    /// Emits the pending (possibly multi-line) entry, if any. Until the next header line,
    /// a continuation line reopens it: the longer version is emitted later with
    /// [`Entry::replaces`] naming this one (see "When the pending entry is finished").
    pub fn flush(&mut self, out: &mut Vec<Entry>) {
        let Some(p) = &self.pending else { return };
        let pending = p.clone();
        let (metrics, stderr) = (self.metrics.clone(), self.stderr.clone());
        self.emit_pending(out);
        if let Some(e) = out.last() {
            self.reopenable = Some(Reopenable {
                stored: Replaced {
                    entry: EntryRef {
                        pos: e.pos,
                        time_ns: stored_time_ns(e.received_ns, pending.node_time),
                    },
                    kind: e.kind,
                },
                pending,
                metrics,
                stderr,
            });
        }
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the pending entry looks finished (see "When the pending entry is finished").
    pub fn pending(&self) -> Completion {
        match &self.pending {
            None => Completion::Nothing,
            Some(p) if p.block.open() || p.announces => Completion::Open,
            Some(_) => Completion::Complete,
        }
    }

    /// State to persist with the cursor of the last emitted entry.
    pub fn state(&self) -> ParserState {
        ParserState {
            pending_metrics: self.metrics.clone(),
            pending_stderr: self.stderr.clone(),
            last_kind: self.last_kind,
        }
    }

    /// Resumes from a persisted state (replaces the waiting metrics and stderr blocks and
    /// the last entry's kind).
    pub fn restore(&mut self, state: ParserState) {
        self.metrics = state.pending_metrics;
        self.stderr = state.pending_stderr;
        self.last_kind = state.last_kind;
    }

    fn push_clean(&mut self, line: &[u8], meta: LineMeta, out: &mut Vec<Entry>) {
        let (rest, docker_ns) = line::strip_transport(line, &mut self.docker_days);
        let received_ns = meta.received_ns.or(docker_ns);
        if let Some(h) = line::parse_header(rest, &mut self.node_days) {
            self.reopenable = None;
            self.emit_pending(out);
            let offset = i64::from(self.config.node_utc_offset_secs);
            let mut block = BlockScan::default();
            block.scan(h.message);
            self.pending = Some(Pending {
                received_ns,
                pos: meta.pos,
                node_time: h.local_secs - offset,
                level: Level::from_word(h.level),
                logger: h.logger.map(str::to_owned),
                version: h.version.map(str::to_owned),
                message: lossy(h.message),
                last_received_ns: received_ns,
                block,
                announces: announces_more(h.message),
                replaces: None,
            });
            return;
        }
        if let Some(r) = self.reopenable.take() {
            if r.pending.message.len() + 1 + rest.len() <= MAX_MESSAGE_BYTES {
                // The entry goes on after all: it is pending again, and the waiting blocks
                // are as they were before it was emitted.
                self.metrics = r.metrics;
                self.stderr = r.stderr;
                self.pending = Some(Pending {
                    replaces: Some(r.stored),
                    ..r.pending
                });
            }
        }
        if let Some(p) = &mut self.pending {
            if p.message.len() + 1 + rest.len() <= MAX_MESSAGE_BYTES {
                p.message.push('\n');
                push_lossy(&mut p.message, rest);
                p.pos = meta.pos;
                p.last_received_ns = received_ns.or(p.last_received_ns);
                p.block.scan(rest);
                p.announces = announces_more(rest);
                return;
            }
            self.emit_pending(out);
        }
        if rest.is_empty() {
            return;
        }
        // A stray continuation: the entry it continues was emitted already.
        out.push(Entry {
            pos: meta.pos,
            received_ns,
            node_time: None,
            level: None,
            logger: None,
            version: None,
            message: lossy(rest),
            kind: self.last_kind.unwrap_or(Kind::Raw),
            execution_id: None,
            event: None,
            replaces: None,
        });
    }

    fn emit_pending(&mut self, out: &mut Vec<Entry>) {
        let Some(p) = self.pending.take() else { return };
        let c = message::classify(&p.message);
        let event = match c.event {
            Some(Event::ExecutionMetrics(m)) => {
                // Counted from the block's end: a node that pauses inside the block does
                // not push it out of its completion's window.
                remember(
                    &mut self.metrics,
                    PendingMetrics {
                        metrics: (*m).clone(),
                        received_ns: p.last_received_ns,
                        node_time: Some(p.node_time),
                    },
                    |m| (m.received_ns, m.node_time),
                    p.last_received_ns,
                    p.node_time,
                );
                Some(Event::ExecutionMetrics(m))
            }
            Some(Event::ExecutionStderr { text }) => {
                let entry = EntryRef {
                    pos: p.pos,
                    time_ns: stored_time_ns(p.received_ns, p.node_time),
                };
                let stderr = Stderr {
                    text: text.clone(),
                    entry,
                };
                remember(
                    &mut self.stderr,
                    PendingStderr {
                        stderr,
                        received_ns: p.last_received_ns,
                        node_time: Some(p.node_time),
                    },
                    |s| (s.received_ns, s.node_time),
                    p.last_received_ns,
                    p.node_time,
                );
                Some(Event::ExecutionStderr { text })
            }
            Some(Event::ExecutionCompleted { execution_id, .. }) => {
                let metrics = take_single(
                    &mut self.metrics,
                    |m| (m.received_ns, m.node_time),
                    p.received_ns,
                    p.node_time,
                )
                .map(|m| Box::new(m.metrics));
                let stderr = take_single(
                    &mut self.stderr,
                    |s| (s.received_ns, s.node_time),
                    p.received_ns,
                    p.node_time,
                )
                .map(|s| Box::new(s.stderr));
                Some(Event::ExecutionCompleted {
                    execution_id,
                    metrics,
                    stderr,
                })
            }
            other => other,
        };
        self.last_kind = Some(c.kind);
        out.push(Entry {
            pos: p.pos,
            received_ns: p.received_ns,
            node_time: Some(p.node_time),
            level: Some(p.level),
            logger: p.logger,
            version: p.version,
            message: p.message,
            kind: c.kind,
            execution_id: c.execution_id,
            event,
            replaces: p.replaces,
        });
    }
}

/// The time the store gives an entry with a header (store/writer/apply.rs).
fn stored_time_ns(received_ns: Option<UnixNanos>, node_time: i64) -> UnixNanos {
    received_ns.unwrap_or_else(|| node_time.saturating_mul(1_000_000_000))
}

/// Keeps a block waiting for its completion: the stale ones are dropped first, then the
/// oldest while [`MAX_PENDING_METRICS`] are waiting.
fn remember<T>(
    waiting: &mut Vec<T>,
    block: T,
    stamp: impl Fn(&T) -> (Option<UnixNanos>, Option<i64>),
    received_ns: Option<UnixNanos>,
    node_time: i64,
) {
    waiting.retain(|w| is_recent(stamp(w), received_ns, node_time));
    if waiting.len() >= MAX_PENDING_METRICS {
        waiting.remove(0);
    }
    waiting.push(block);
}

/// The block for a completion printed at the given time, if unambiguous: the stale ones
/// are dropped; then the single one left is taken, or, with more than one, none and all
/// of them are dropped.
fn take_single<T>(
    waiting: &mut Vec<T>,
    stamp: impl Fn(&T) -> (Option<UnixNanos>, Option<i64>),
    received_ns: Option<UnixNanos>,
    node_time: i64,
) -> Option<T> {
    waiting.retain(|w| is_recent(stamp(w), received_ns, node_time));
    if waiting.len() == 1 {
        waiting.pop()
    } else {
        waiting.clear();
        None
    }
}

/// Whether a waiting block printed at `then` (receive time, node time) may belong to a
/// line printed now.
fn is_recent(
    then: (Option<UnixNanos>, Option<i64>),
    received_ns: Option<UnixNanos>,
    node_time: i64,
) -> bool {
    let within = |elapsed: i64, window: i64, skew: i64| (-skew..=window).contains(&elapsed);
    match (then.0, received_ns, then.1) {
        (Some(then), Some(now), _) => {
            within(now.saturating_sub(then), METRICS_WINDOW_NS, METRICS_SKEW_NS)
        }
        (_, _, Some(then)) => within(
            node_time.saturating_sub(then),
            METRICS_WINDOW_NS / 1_000_000_000,
            METRICS_SKEW_NS / 1_000_000_000,
        ),
        _ => false,
    }
}

fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    push_lossy(&mut out, bytes);
    out
}

/// Appends `bytes`, invalid UTF-8 replaced by U+FFFD. Checks the whole slice first:
/// `str::from_utf8` reads ASCII a word at a time, while `String::from_utf8_lossy` walks it
/// byte by byte (13 % of an import's parse time, nearly all text being valid).
fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Parses a whole text: lines split on `\n`, `pos = Pos::new(0, byte offset just after
/// the line)`, no receive times from the caller. Flushes at the end.
pub fn parse_all(text: &[u8]) -> Vec<Entry> {
    let mut parser = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    let mut start = 0;
    let push = |parser: &mut Parser, out: &mut Vec<Entry>, line: &[u8], end: usize| {
        let meta = LineMeta {
            received_ns: None,
            pos: Pos::new(0, i64::try_from(end).unwrap_or(i64::MAX)),
        };
        parser.push_line(line, meta, out);
    };
    for nl in memchr::memchr_iter(b'\n', text) {
        push(
            &mut parser,
            &mut out,
            text.get(start..nl).unwrap_or_default(),
            nl + 1,
        );
        start = nl + 1;
    }
    if start < text.len() {
        push(
            &mut parser,
            &mut out,
            text.get(start..).unwrap_or_default(),
            text.len(),
        );
    }
    parser.flush(&mut out);
    out
}

#[cfg(test)]
mod tests;
