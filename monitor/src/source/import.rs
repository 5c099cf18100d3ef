//! `truebit-monitor import FILE...`: plain or gzipped logs, Docker json-file logs,
//! `docker logs -t` output and `docker compose logs` output, streamed (never held whole
//! in memory, a line at most [`super::decode::MAX_LINE_BYTES`]) through the same ingest
//! path as the live sources.
//!
//! Each file is a source of its own, keyed by a hash of its first bytes, with byte offsets
//! as positions: importing the same file again skips what was already committed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::decode::{LineAssembler, LineBuf};
use super::file::feed_line;
use crate::ingest::{Handoff, Ingest};
use crate::model::{Entry, Event, Kind, Pos};
use crate::parser::ParserConfig;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one import run read (this run only; see [`crate::store::Summary`] for totals).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub files: u64,
    /// Bytes of log text (after decompression).
    pub bytes: u64,
    pub lines: u64,
    /// Lines skipped because an earlier import of the same file committed them.
    pub skipped_lines: u64,
    pub entries: u64,
    pub raw_entries: u64,
    pub entries_by_kind: BTreeMap<&'static str, u64>,
    /// Executions seen received / completed (exit code 0 or unknown) / failed.
    pub tasks_received: u64,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub invoices: u64,
}

impl ImportCounts {
    fn count(&mut self, entries: &[Entry]) {
        for e in entries {
            self.entries += 1;
            *self.entries_by_kind.entry(e.kind.as_str()).or_default() += 1;
            if e.kind == Kind::Raw {
                self.raw_entries += 1;
            }
            match &e.event {
                Some(Event::TaskReceived(_)) => self.tasks_received += 1,
                Some(Event::ExecutionCompleted { metrics, .. }) => {
                    match metrics.as_ref().and_then(|m| m.exit_code) {
                        Some(code) if code != 0 => self.tasks_failed += 1,
                        _ => self.tasks_completed += 1,
                    }
                }
                Some(Event::Invoice(_)) => self.invoices += 1,
                _ => {}
            }
        }
    }
}

/// Reports progress in bytes of the files as stored (compressed or not).
pub trait Progress {
    fn advance(&self, bytes: u64);
}

impl Progress for () {
    fn advance(&self, _: u64) {}
}

impl Progress for indicatif::ProgressBar {
    fn advance(&self, bytes: u64) {
        self.inc(bytes);
    }
}

/// Imports `paths` into `store`, one after the other; returns this run's counts.
pub fn import_files(
    store: &Store,
    paths: &[PathBuf],
    parser: ParserConfig,
    progress: &dyn Progress,
) -> Result<ImportCounts, ImportError> {
    let mut counts = ImportCounts::default();
    for path in paths {
        import_one(store, path, parser, progress, &mut counts)?;
        counts.files += 1;
    }
    store.flush()?;
    Ok(counts)
}

/// Counts bytes read from the underlying file for the progress bar.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn open_text<'a>(
    path: &Path,
    progress: &'a dyn Progress,
) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    drop(file);
    let raw = Counting {
        inner: File::open(path)?,
        progress,
    };
    const BUF: usize = 256 * 1024;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            BUF,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUF, raw)),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(BUF, raw)))
    }
}

fn import_one(
    store: &Store,
    path: &Path,
    parser: ParserConfig,
    progress: &dyn Progress,
    counts: &mut ImportCounts,
) -> Result<(), ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = open_text(path, progress).map_err(read_err)?;
    // The source key is a hash of the first bytes, so the same file imported under another
    // name or compressed is still recognised.
    let head = reader.fill_buf().map_err(read_err)?;
    let head = &head[..head.len().min(4096)];
    let key = format!("import:{}", hex::encode(&Sha256::digest(head)[..16]));
    let mut ingest = Ingest::resume(store, &key, parser)?;
    let mut asm = LineAssembler::default();
    // Lines are assembled in a bounded buffer straight from the reader's: the part of a
    // line past the bound is skipped as it is read, whatever the file holds.
    let mut line = LineBuf::default();
    let mut offset: u64 = 0;
    loop {
        let buf = reader.fill_buf().map_err(read_err)?;
        if buf.is_empty() {
            break;
        }
        let (used, complete) = match memchr::memchr(b'\n', buf) {
            Some(nl) => (nl + 1, true),
            None => (buf.len(), false),
        };
        line.push(&buf[..used - usize::from(complete)]);
        reader.consume(used);
        offset += used as u64;
        if complete {
            line.take(|text| feed_line(&mut asm, &mut ingest, text, Pos::new(0, offset as i64)));
            // Batches end where every source's do (`Ingest::full`): the few waiting
            // for the writer hold about the same memory whatever the entries' sizes.
            if ingest.full() {
                submit(&mut ingest, counts)?;
            }
        }
    }
    if !line.is_empty() {
        line.take(|text| feed_line(&mut asm, &mut ingest, text, Pos::new(0, offset as i64)));
    }
    asm.finish(|l, m| {
        ingest.push(
            l,
            crate::model::LineMeta {
                pos: Pos::new(0, offset as i64),
                ..m
            },
        );
    });
    ingest.flush_parser();
    submit(&mut ingest, counts)?;
    let c = ingest.counts();
    counts.bytes += offset;
    counts.lines += c.lines;
    counts.skipped_lines += c.skipped_lines;
    Ok(())
}

fn submit(ingest: &mut Ingest, counts: &mut ImportCounts) -> Result<(), StoreError> {
    counts.count(ingest.ready_entries());
    ingest.commit_blocking(Handoff::Ready)
}
