//! The ingest path shared by every source, and the one door to the store: lines ->
//! parser -> batches -> store.
//!
//! Sources only produce positioned lines (and the docker source its container events);
//! they get a [`SourceContext`] and never hand anything to the store themselves.
//! An [`Ingest`] owns one parser per source and commits what it parsed. It skips lines at or before the source's
//! committed cursor (Docker's `since` is second-granular and inclusive, files are re-read
//! after a restart), groups finished entries into batches, and attaches to each batch the
//! cursor that covers it: the position of the batch's last entry plus the parser's state
//! (pending metrics blocks). The store commits entries and cursor in one transaction, so a
//! restart resumes at exactly the next line: nothing lost, nothing duplicated.

mod context;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use context::SourceContext;

use crate::model::{Entry, LineMeta, Pos};
use crate::parser::{Completion, Parser, ParserConfig, ParserState};
use crate::store::{Batch, Cursor, Store, StoreError};

/// Most entries in one batch.
pub const BATCH_MAX_ENTRIES: usize = 2048;
/// Most log text in one batch: a batch is handed to the store after this many bytes of
/// lines or [`BATCH_MAX_ENTRIES`] entries, whichever comes first, for every source. With
/// the store's short queue this bounds what waits for a writer that cannot keep up (a
/// starved CPU, a full disk) to a few MiB whatever the entries' sizes; the source then
/// waits, and Docker or the file keeps the rest.
pub const BATCH_MAX_BYTES: usize = 512 * 1024;
/// Longest a finished entry waits before its batch is handed to the store (live sources).
pub const BATCH_MAX_AGE: Duration = Duration::from_millis(20);
/// How long a source may be quiet before a pending entry that looks finished is emitted:
/// an entry is only certainly complete when the next one starts, so a quiet node would
/// otherwise hold its last line back. Emitted is not closed: a continuation line that
/// comes later still joins it (the parser reopens it and the store replaces the version
/// emitted, see [`crate::model::Entry::replaces`]), so the pause splits nothing.
pub const IDLE_FLUSH: Duration = Duration::from_millis(50);
/// How long a pending entry that clearly goes on (an open JSON block, see
/// [`crate::parser::Completion`]) waits for its next line: a node that pauses up to 5 s
/// inside an entry (a slow writer, a loaded host) never has it split, with a second of
/// margin for the way to the monitor.
pub const OPEN_ENTRY_WAIT: Duration = Duration::from_secs(6);

/// What is saved with the cursor: the parser's state and whatever the source needs
/// (a file source keeps the file identity there).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CursorState {
    pub parser: ParserState,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub source: serde_json::Value,
}

/// Counters of one ingest run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounts {
    /// Lines read from the source.
    pub lines: u64,
    /// Lines skipped because they were already committed before.
    pub skipped_lines: u64,
    /// Entries handed to the store.
    pub entries: u64,
}

/// What to hand to the store now (see [`Ingest::commit`]).
#[derive(Clone, Copy, Debug)]
pub enum Handoff {
    /// The finished entries, if a batch is due (full, or its first entry waited long enough).
    Due,
    /// A live source with no new line at this moment: the pending entry too when its wait
    /// is over ([`Ingest::deadline`]).
    Idle(Instant),
    /// Every finished entry, due or not (the stream broke; the pending entry is re-read).
    Ready,
    /// Everything, the pending entry included (end of the stream, shutdown).
    Finish,
}

#[derive(Debug)]
pub struct Ingest {
    store: Store,
    source: String,
    parser: Parser,
    out: Vec<Entry>,
    /// Bytes of the lines pushed since the last batch was taken.
    out_bytes: usize,
    resume_after: Option<Pos>,
    source_state: serde_json::Value,
    first_pending_at: Option<Instant>,
    last_line_at: Option<Instant>,
    counts: IngestCounts,
}

impl Ingest {
    /// Starts ingesting `source`, resuming after its committed cursor if there is one.
    pub fn resume(store: &Store, source: &str, config: ParserConfig) -> Result<Self, StoreError> {
        let mut ingest = Self::new(store.clone(), source, config);
        if let Some(cursor) = store.cursor(source)? {
            ingest.resume_after = Some(cursor.pos);
            match serde_json::from_str::<CursorState>(&cursor.parser_state) {
                Ok(state) => {
                    ingest.parser.restore(state.parser);
                    ingest.source_state = state.source;
                }
                Err(error) => {
                    tracing::warn!(source, %error, "saved parser state unreadable; resuming without pending metrics");
                }
            }
        }
        Ok(ingest)
    }

    /// Starts ingesting `source` from its beginning.
    fn new(store: Store, source: &str, config: ParserConfig) -> Self {
        Self {
            store,
            source: source.to_owned(),
            parser: Parser::new(config),
            out: Vec::with_capacity(BATCH_MAX_ENTRIES),
            out_bytes: 0,
            resume_after: None,
            source_state: serde_json::Value::Null,
            first_pending_at: None,
            last_line_at: None,
            counts: IngestCounts::default(),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Position of the last committed line when this ingest started, if any.
    pub fn resume_after(&self) -> Option<Pos> {
        self.resume_after
    }

    /// Source-specific state saved with the last cursor.
    pub fn source_state(&self) -> &serde_json::Value {
        &self.source_state
    }

    /// Sets the source-specific state saved with the next cursor.
    pub fn set_source_state(&mut self, state: serde_json::Value) {
        self.source_state = state;
    }

    pub fn counts(&self) -> IngestCounts {
        self.counts
    }

    /// Feeds one line (without its `\n`). Returns false when the line was already
    /// committed earlier and is skipped.
    pub fn push(&mut self, line: &[u8], meta: LineMeta) -> bool {
        self.push_at(line, meta, Instant::now())
    }

    fn push_at(&mut self, line: &[u8], meta: LineMeta, now: Instant) -> bool {
        self.counts.lines += 1;
        if self.resume_after.is_some_and(|after| meta.pos <= after) {
            self.counts.skipped_lines += 1;
            return false;
        }
        let before = self.out.len();
        self.out_bytes += line.len() + 1;
        self.parser.push_line(line, meta, &mut self.out);
        self.last_line_at = Some(now);
        if self.first_pending_at.is_none() && (self.out.len() > before || self.parser.has_pending())
        {
            self.first_pending_at = Some(now);
        }
        true
    }

    /// Emits the parser's pending entry (end of input, idle source, rotation).
    pub fn flush_parser(&mut self) {
        self.parser.flush(&mut self.out);
    }

    /// Finished entries waiting for the store.
    pub fn ready(&self) -> usize {
        self.out.len()
    }

    /// When the pending entry is to be emitted if no further line arrives: after
    /// [`IDLE_FLUSH`] when it looks finished, after [`OPEN_ENTRY_WAIT`] when it clearly
    /// goes on. The one rule every live source follows (through [`Ingest::deadline`] and
    /// [`Ingest::idle`]).
    fn flush_at(&self) -> Option<Instant> {
        let wait = match self.parser.pending() {
            Completion::Nothing => return None,
            Completion::Complete => IDLE_FLUSH,
            Completion::Open => OPEN_ENTRY_WAIT,
        };
        Some(self.last_line_at? + wait)
    }

    /// When a live source must call [`Ingest::idle`] even if no new line arrives.
    pub fn deadline(&self) -> Option<Instant> {
        let batch = self
            .first_pending_at
            .filter(|_| !self.out.is_empty())
            .map(|first| first + BATCH_MAX_AGE);
        match (self.flush_at(), batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A live source with no new line at `now`: emits the pending entry when its wait is
    /// over and returns the finished entries as a batch, if any.
    fn idle(&mut self, now: Instant) -> Option<Batch> {
        if self.flush_at().is_some_and(|at| at <= now) {
            self.flush_parser();
        }
        self.take_batch_at(now)
    }

    /// True when the finished entries make a full batch ([`BATCH_MAX_ENTRIES`] entries or
    /// [`BATCH_MAX_BYTES`] of text).
    pub fn full(&self) -> bool {
        self.out.len() >= BATCH_MAX_ENTRIES
            || (!self.out.is_empty() && self.out_bytes >= BATCH_MAX_BYTES)
    }

    /// True when the finished entries should be committed now: a full batch, or one whose
    /// first entry waited long enough.
    fn batch_due(&self) -> bool {
        self.full()
            || (!self.out.is_empty()
                && self
                    .first_pending_at
                    .is_some_and(|t| t.elapsed() >= BATCH_MAX_AGE))
    }

    /// The finished entries as a batch with the cursor that covers them.
    pub fn take_batch(&mut self) -> Option<Batch> {
        self.take_batch_at(Instant::now())
    }

    fn take_batch_at(&mut self, now: Instant) -> Option<Batch> {
        let last = self.out.last()?.pos;
        let state = CursorState {
            parser: self.parser.state(),
            source: self.source_state.clone(),
        };
        let parser_state = serde_json::to_string(&state).unwrap_or_default();
        let entries = std::mem::replace(&mut self.out, Vec::with_capacity(BATCH_MAX_ENTRIES));
        self.out_bytes = 0;
        self.counts.entries += entries.len() as u64;
        self.first_pending_at = if self.parser.has_pending() {
            Some(now)
        } else {
            None
        };
        Some(Batch {
            source: self.source.clone(),
            entries,
            cursor: Some(Cursor {
                pos: last,
                parser_state,
            }),
            container_events: Vec::new(),
        })
    }

    /// Flushes the parser and returns everything left as a batch (end of a stream).
    fn finish(&mut self) -> Option<Batch> {
        self.flush_parser();
        self.take_batch()
    }

    /// The finished entries not yet handed to the store.
    pub fn ready_entries(&self) -> &[Entry] {
        &self.out
    }

    /// The batch `handoff` asks for, if there is one.
    fn batch_for(&mut self, handoff: Handoff) -> Option<Batch> {
        match handoff {
            Handoff::Due => self.batch_due().then(|| self.take_batch()).flatten(),
            Handoff::Idle(now) => self.idle(now),
            Handoff::Ready => self.take_batch(),
            Handoff::Finish => self.finish(),
        }
    }

    /// Hands what `handoff` asks for to the store, with the cursor that covers it; while
    /// the store's queue is full, waits on the blocking pool, not on the runtime. A failure
    /// (the store is closed: shutdown) is logged here, once for every source.
    pub async fn commit(&mut self, handoff: Handoff) {
        if let Some(batch) = self.batch_for(handoff) {
            if let Err(error) = self.store.submit_async(batch).await {
                self.log_commit_error(&error);
            }
        }
    }

    /// As [`Ingest::commit`], for sources that run on a thread of their own (a file being
    /// tailed, an import): waits for room in the store's queue on the calling thread.
    pub fn commit_blocking(&mut self, handoff: Handoff) -> Result<(), StoreError> {
        match self.batch_for(handoff) {
            Some(batch) => self.store.submit(batch).inspect_err(|error| {
                self.log_commit_error(error);
            }),
            None => Ok(()),
        }
    }

    fn log_commit_error(&self, error: &StoreError) {
        tracing::error!(%error, source = %self.source, "cannot hand log entries to the store");
    }
}

/// Splits `buf` into complete lines, calling `f` with each line (without `\n`) and the
/// offset just after it; returns how many bytes were consumed (the rest is a partial line).
pub fn split_lines(buf: &[u8], mut f: impl FnMut(&[u8], usize)) -> usize {
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        f(&buf[start..nl], nl + 1);
        start = nl + 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, Kind};

    const HEADER: &str = "2025-11-24 13:55:34 debug: @truebit/worker-runner-node:2.4.1";

    /// Pushes `line` as if it arrived at `at`.
    fn push(ingest: &mut Ingest, line: &str, at: Instant, n: i64) {
        let meta = LineMeta {
            received_ns: None,
            pos: Pos::new(0, n),
        };
        assert!(ingest.push_at(line.as_bytes(), meta, at));
    }

    /// An ingest of source `test` into a fresh store (kept open while the ingest lives).
    fn ingest() -> (tempfile::TempDir, Ingest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(crate::store::StoreConfig::new(dir.path().join("t.db"))).expect("store");
        (dir, Ingest::new(store, "test", ParserConfig::default()))
    }

    fn kinds(batch: Option<Batch>) -> Vec<Kind> {
        batch.map_or_else(Vec::new, |b| b.entries.iter().map(|e| e.kind).collect())
    }

    #[test]
    fn a_one_line_entry_is_emitted_after_the_short_idle_time() {
        let t0 = Instant::now();
        let (_dir, mut ingest) = ingest();
        assert_eq!(ingest.deadline(), None);
        push(&mut ingest, &format!("{HEADER} Listening for tasks"), t0, 1);
        assert_eq!(ingest.deadline(), Some(t0 + IDLE_FLUSH));
        assert!(ingest
            .idle(t0 + IDLE_FLUSH - Duration::from_millis(1))
            .is_none());
        assert_eq!(kinds(ingest.idle(t0 + IDLE_FLUSH)), vec![Kind::Log]);
        assert_eq!(ingest.deadline(), None);
    }

    #[test]
    fn pauses_inside_an_open_json_block_never_split_the_entry() {
        let t0 = Instant::now();
        let (_dir, mut ingest) = ingest();
        let lines = [
            format!("{HEADER} Command execution stdout: {{"),
            r#"  "elapsed": "1000","#.to_owned(),
            r#"  "wasi": {"#.to_owned(),
            r#"    "exitCode": 3"#.to_owned(),
            "  }".to_owned(),
            "}".to_owned(),
        ];
        // A pause of 20 ms, 200 ms, 2 s and 5 s before each following line.
        let pauses = [0, 20, 200, 2_000, 5_000, 20];
        let mut at = t0;
        for (n, (line, pause)) in lines.iter().zip(pauses).enumerate() {
            let next = at + Duration::from_millis(pause);
            // Nothing is emitted while the node pauses.
            assert!(
                ingest.idle(next - Duration::from_millis(1)).is_none(),
                "line {n}"
            );
            at = next;
            push(&mut ingest, line, at, n as i64 + 1);
            let wait = if n + 1 < lines.len() {
                OPEN_ENTRY_WAIT
            } else {
                IDLE_FLUSH
            };
            assert_eq!(ingest.deadline(), Some(at + wait), "line {n}");
        }
        let batch = ingest.idle(at + IDLE_FLUSH).expect("the whole block");
        assert_eq!(batch.entries.len(), 1);
        match &batch.entries[0].event {
            Some(Event::ExecutionMetrics(m)) => assert_eq!(m.exit_code, Some(3)),
            other => panic!("not a metrics entry: {other:?}"),
        }
    }

    /// An entry that looks finished is handed over after the short idle time (a one-line
    /// entry stays live); a continuation line after a pause of any length still joins it:
    /// the store keeps one entry, the whole of it, once, attributed to its completion.
    #[test]
    fn a_pause_inside_an_entry_that_looks_finished_does_not_split_it_in_the_store() {
        let t0 = Instant::now();
        let (_dir, mut ingest) = ingest();
        let store = ingest.store.clone();
        let id = "3f0c7a52-9a4e-4c1e-8a57-1b2f0e9d4c11";
        let lines = [
            format!("{HEADER} Starting task execution executionId: {id}"),
            format!("{HEADER} Command execution stderr: Error: boom"),
            "    at main (task.js:1:1)".to_owned(),
            "    at run (task.js:2:2)".to_owned(),
            format!(
                r#"{HEADER} Command execution stdout: {{"elapsed":"1000","wasi":{{"exitCode":1}}}}"#
            ),
            format!("{HEADER} Execution {id} completed"),
        ];
        // Before each line: 20 ms, 200 ms and 2 s inside the stderr block.
        let pauses = [0, 0, 20, 200, 2_000, 0];
        let mut at = t0;
        for (n, (line, pause)) in lines.iter().zip(pauses).enumerate() {
            // What a live source does while the node is quiet: commit what is due.
            let until = at + Duration::from_millis(pause);
            while let Some(deadline) = ingest.deadline().filter(|d| *d < until) {
                if let Some(batch) = ingest.idle(deadline) {
                    store.submit(batch).expect("submit");
                }
            }
            at = until;
            push(&mut ingest, line, at, n as i64 + 1);
        }
        let batch = ingest.finish().expect("the rest");
        store.submit(batch).expect("submit");
        store.flush().expect("flush");
        let stored = store.entries_after(0, 100).expect("entries");
        let got: Vec<_> = stored
            .iter()
            .map(|e| (e.kind, e.message.as_str(), e.execution_id.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Kind::ExecutionStarted,
                    &format!("Starting task execution executionId: {id}")[..],
                    Some(id)
                ),
                (
                    Kind::ExecutionStderr,
                    "Command execution stderr: Error: boom\n    at main (task.js:1:1)\n    at run (task.js:2:2)",
                    Some(id)
                ),
                (
                    Kind::ExecutionMetrics,
                    r#"Command execution stdout: {"elapsed":"1000","wasi":{"exitCode":1}}"#,
                    None
                ),
                (Kind::ExecutionCompleted, &format!("Execution {id} completed")[..], Some(id)),
            ]
        );
        let summary = store.summary().expect("summary");
        assert_eq!(summary.entries, 4, "{summary:?}");
        let task = store.task(id).expect("read").expect("task");
        assert_eq!(task.error.as_deref(), Some("Error: boom"));
    }

    #[test]
    fn an_open_entry_is_emitted_after_the_long_wait() {
        let t0 = Instant::now();
        let (_dir, mut ingest) = ingest();
        push(
            &mut ingest,
            &format!("{HEADER} Command execution stdout: {{"),
            t0,
            1,
        );
        assert!(ingest
            .idle(t0 + OPEN_ENTRY_WAIT - Duration::from_millis(1))
            .is_none());
        assert_eq!(
            kinds(ingest.idle(t0 + OPEN_ENTRY_WAIT)),
            vec![Kind::ExecutionMetrics]
        );
    }

    #[test]
    fn finished_entries_wait_at_most_the_batch_age() {
        let t0 = Instant::now();
        let (_dir, mut ingest) = ingest();
        push(&mut ingest, &format!("{HEADER} one"), t0, 1);
        push(
            &mut ingest,
            &format!("{HEADER} Command execution stdout: {{"),
            t0,
            2,
        );
        // "one" is finished by the next header; the open block keeps waiting.
        assert_eq!(ingest.deadline(), Some(t0 + BATCH_MAX_AGE));
        assert_eq!(kinds(ingest.idle(t0 + BATCH_MAX_AGE)), vec![Kind::Log]);
        assert_eq!(ingest.deadline(), Some(t0 + OPEN_ENTRY_WAIT));
    }

    #[test]
    fn a_batch_is_full_at_its_byte_bound_before_its_entry_bound() {
        let t0 = Instant::now();
        let (_dir, mut ingest) = ingest();
        let filler = "y".repeat(4000);
        let mut n = 0;
        while !ingest.full() {
            n += 1;
            push(&mut ingest, &format!("{HEADER} {n:03} {filler}"), t0, n);
            assert!(n < 1000, "never full");
        }
        // Header, space, three digits, space, filler, and the line's end.
        let line = HEADER.len() + filler.len() + 6;
        // Full once the lines pushed reach BATCH_MAX_BYTES, long before 2,048 entries.
        assert_eq!(n as usize, BATCH_MAX_BYTES.div_ceil(line));
        let batch = ingest.batch_for(Handoff::Due).expect("a full batch is due");
        assert_eq!(
            batch.entries.len(),
            n as usize - 1,
            "the last entry is pending"
        );
        assert!(!ingest.full(), "the count starts again with the next batch");
    }

    #[test]
    fn split_lines_keeps_the_partial_tail() {
        let mut seen = Vec::new();
        let used = split_lines(b"a\nbc\npartial", |l, end| seen.push((l.to_vec(), end)));
        assert_eq!(seen, vec![(b"a".to_vec(), 2), (b"bc".to_vec(), 5)]);
        assert_eq!(used, 5);
    }
}
