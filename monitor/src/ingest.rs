//! The ingest path shared by every source: lines -> parser -> batches for the store.
//!
//! An [`Ingest`] owns one parser per source. It skips lines at or before the source's
//! committed cursor (Docker's `since` is second-granular and inclusive, files are re-read
//! after a restart), groups finished entries into batches, and attaches to each batch the
//! cursor that covers it: the position of the batch's last entry plus the parser's state
//! (pending metrics blocks). The store commits entries and cursor in one transaction, so a
//! restart resumes at exactly the next line: nothing lost, nothing duplicated.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::{Entry, LineMeta, Pos};
use crate::parser::{Parser, ParserConfig, ParserState};
use crate::store::{Batch, Cursor, Store, StoreError};

/// Most entries in one batch.
pub const BATCH_MAX_ENTRIES: usize = 2048;
/// Longest a finished entry waits before its batch is handed to the store (live sources).
pub const BATCH_MAX_AGE: Duration = Duration::from_millis(20);
/// How long a source may be quiet before the parser's pending entry is emitted: an entry
/// is only complete when the next one starts, so a quiet node would otherwise hold its last
/// line back.
pub const IDLE_FLUSH: Duration = Duration::from_millis(50);

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

#[derive(Debug)]
pub struct Ingest {
    source: String,
    parser: Parser,
    out: Vec<Entry>,
    resume_after: Option<Pos>,
    source_state: serde_json::Value,
    first_pending_at: Option<Instant>,
    counts: IngestCounts,
}

impl Ingest {
    /// Starts ingesting `source`, resuming after its committed cursor if there is one.
    pub fn resume(store: &Store, source: &str, config: ParserConfig) -> Result<Self, StoreError> {
        let mut parser = Parser::new(config);
        let mut resume_after = None;
        let mut source_state = serde_json::Value::Null;
        if let Some(cursor) = store.cursor(source)? {
            resume_after = Some(cursor.pos);
            match serde_json::from_str::<CursorState>(&cursor.parser_state) {
                Ok(state) => {
                    parser.restore(state.parser);
                    source_state = state.source;
                }
                Err(err) => {
                    tracing::warn!(source, error = %err, "saved parser state unreadable; resuming without pending metrics");
                }
            }
        }
        Ok(Self {
            source: source.to_owned(),
            parser,
            out: Vec::with_capacity(BATCH_MAX_ENTRIES),
            resume_after,
            source_state,
            first_pending_at: None,
            counts: IngestCounts::default(),
        })
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

    /// Forgets the resume position (a file source that found a new file restarts at 0).
    pub fn clear_resume(&mut self) {
        self.resume_after = None;
    }

    pub fn counts(&self) -> IngestCounts {
        self.counts
    }

    /// Feeds one line (without its `\n`). Returns false when the line was already
    /// committed earlier and is skipped.
    pub fn push(&mut self, line: &[u8], meta: LineMeta) -> bool {
        self.counts.lines += 1;
        if self.resume_after.is_some_and(|after| meta.pos <= after) {
            self.counts.skipped_lines += 1;
            return false;
        }
        let before = self.out.len();
        self.parser.push_line(line, meta, &mut self.out);
        if self.first_pending_at.is_none() && (self.out.len() > before || self.parser.has_pending())
        {
            self.first_pending_at = Some(Instant::now());
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

    /// True when there is anything not yet handed to the store (finished or pending).
    pub fn has_work(&self) -> bool {
        !self.out.is_empty() || self.parser.has_pending()
    }

    /// When a live source should flush and commit even if no new line arrives.
    pub fn deadline(&self, last_line_at: Instant) -> Option<Instant> {
        if !self.has_work() {
            return None;
        }
        let idle = last_line_at + IDLE_FLUSH;
        Some(match self.first_pending_at {
            Some(first) if !self.out.is_empty() => idle.min(first + BATCH_MAX_AGE),
            _ => idle,
        })
    }

    /// True when the finished entries should be committed now.
    pub fn batch_due(&self) -> bool {
        self.out.len() >= BATCH_MAX_ENTRIES
            || (!self.out.is_empty()
                && self
                    .first_pending_at
                    .is_some_and(|t| t.elapsed() >= BATCH_MAX_AGE))
    }

    /// The finished entries as a batch with the cursor that covers them.
    pub fn take_batch(&mut self) -> Option<Batch> {
        let last = self.out.last()?.pos;
        let state = CursorState {
            parser: self.parser.state(),
            source: self.source_state.clone(),
        };
        let parser_state = serde_json::to_string(&state).unwrap_or_default();
        let entries = std::mem::replace(&mut self.out, Vec::with_capacity(BATCH_MAX_ENTRIES));
        self.counts.entries += entries.len() as u64;
        self.first_pending_at = if self.parser.has_pending() {
            Some(Instant::now())
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
    pub fn finish(&mut self) -> Option<Batch> {
        self.flush_parser();
        self.take_batch()
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

    #[test]
    fn split_lines_keeps_the_partial_tail() {
        let mut seen = Vec::new();
        let used = split_lines(b"a\nbc\npartial", |l, end| seen.push((l.to_vec(), end)));
        assert_eq!(seen, vec![(b"a".to_vec(), 2), (b"bc".to_vec(), 5)]);
        assert_eq!(used, 5);
    }
}
