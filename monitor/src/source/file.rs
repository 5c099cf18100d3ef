//! Tails a plain log file (for nodes whose logs are shipped to files), following
//! rotation (a new file under the same path) and truncation.
//!
//! Positions are `(generation, byte offset after the line)`; the generation goes up each
//! time the file is replaced or truncated, and is saved with the cursor together with the
//! file's identity, so a restart resumes at the exact byte.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::decode::{JsonFileRecord, LineAssembler, LineBuf};
use super::Connection;
use crate::ingest::{Handoff, Ingest, SourceContext};
use crate::model::{LineMeta, Pos};

/// How often the file is checked for new bytes, rotation and truncation.
pub const POLL: Duration = Duration::from_millis(100);
const CHUNK: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    generation: i64,
}

#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    cx: SourceContext,
}

/// An open file being read, with what has been read of it.
#[derive(Debug)]
struct Open {
    file: std::fs::File,
    id: FileIdentity,
    /// Bytes read, the partial line included.
    offset: u64,
    /// The line read so far (bounded; its end is not in the file yet).
    line: LineBuf,
    asm: LineAssembler,
}

impl FileSource {
    pub fn new(path: PathBuf, cx: SourceContext) -> Self {
        Self { path, cx }
    }

    pub fn source_key(&self) -> String {
        format!("file:{}", self.path.display())
    }

    /// Runs until shutdown on the calling thread (file reads block: spawn it with
    /// `tokio::task::spawn_blocking` or on a thread of its own).
    pub fn run_blocking(self) {
        let Ok(mut ingest) = self.cx.ingest_blocking(&self.source_key()) else {
            return;
        };
        let mut saved: Option<FileIdentity> =
            serde_json::from_value(ingest.source_state().clone()).ok();
        let resume_offset = ingest.resume_after().map(|p| (p.major, p.minor));
        let mut open: Option<Open> = None;
        let mut warned_missing = false;
        loop {
            if self.cx.shutdown.is_cancelled() {
                break;
            }
            // (Re)open when needed.
            if open.is_none() {
                match self.open(saved, resume_offset) {
                    Ok(o) => {
                        tracing::info!(file = %self.path.display(), offset = o.offset, "tailing log file");
                        self.cx.status.send_modify(|s| {
                            s.connection = Connection::Connected {
                                version: "file".into(),
                            };
                            s.last_error = None;
                        });
                        warned_missing = false;
                        saved = Some(o.id);
                        ingest.set_source_state(serde_json::to_value(o.id).unwrap_or_default());
                        open = Some(o);
                    }
                    Err(error) => {
                        if !warned_missing {
                            tracing::warn!(file = %self.path.display(), %error, "cannot open log file; waiting for it");
                            warned_missing = true;
                        }
                        let reason = format!("cannot open {}: {error}", self.path.display());
                        self.cx.status.send_modify(|s| {
                            s.connection = Connection::Unreachable {
                                reason: reason.clone(),
                            };
                            s.last_error = Some(reason);
                        });
                    }
                }
            }
            let mut read_any = false;
            if let Some(o) = open.as_mut() {
                match read_available(o, &mut ingest) {
                    Ok(n) => read_any = n > 0,
                    Err(error) => {
                        tracing::warn!(file = %self.path.display(), %error, "read failed; reopening");
                        open = None;
                    }
                }
                commit(&mut ingest, Handoff::Due);
            }
            if read_any {
                continue;
            }
            // Quiet: flush what waits, then look for rotation or truncation.
            commit(&mut ingest, Handoff::Idle(Instant::now()));
            if let Some(o) = open.as_mut() {
                match std::fs::metadata(&self.path) {
                    Ok(m) if m.ino() != o.id.ino || m.dev() != o.id.dev => {
                        // Rotated: the old file was read to its end above.
                        finish_file(o, &mut ingest);
                        commit(&mut ingest, Handoff::Ready);
                        tracing::info!(file = %self.path.display(), "log file rotated");
                        saved = Some(FileIdentity {
                            generation: o.id.generation + 1,
                            ..o.id
                        });
                        open = None;
                        continue;
                    }
                    Ok(m) if m.len() < o.offset => {
                        tracing::info!(file = %self.path.display(), "log file truncated; reading from its start");
                        finish_file(o, &mut ingest);
                        o.id.generation += 1;
                        o.offset = 0;
                        o.line.clear();
                        if o.file.seek(SeekFrom::Start(0)).is_err() {
                            open = None;
                        } else {
                            ingest.set_source_state(serde_json::to_value(o.id).unwrap_or_default());
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            std::thread::sleep(POLL);
        }
        if let Some(o) = open.as_mut() {
            finish_file(o, &mut ingest);
        }
        commit(&mut ingest, Handoff::Finish);
    }

    /// Opens the file, resuming inside it when it is the one the cursor was saved for.
    fn open(
        &self,
        saved: Option<FileIdentity>,
        resume: Option<(i64, i64)>,
    ) -> std::io::Result<Open> {
        let mut file = std::fs::File::open(&self.path)?;
        let m = file.metadata()?;
        let mut id = FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            generation: 0,
        };
        let mut offset = 0u64;
        match saved {
            Some(s) if s.dev == id.dev && s.ino == id.ino => {
                id.generation = s.generation;
                if let Some((generation, off)) = resume {
                    let off = u64::try_from(off).unwrap_or(0);
                    if generation == s.generation && off <= m.len() {
                        offset = off;
                    } else if generation == s.generation {
                        // Truncated while we were away.
                        id.generation += 1;
                    }
                }
            }
            // A different file than last time (or the rotation we noticed): next generation.
            Some(s) => id.generation = s.generation + 1,
            None => {}
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok(Open {
            file,
            id,
            offset,
            line: LineBuf::default(),
            asm: LineAssembler::default(),
        })
    }
}

/// Commits on this thread; a failure (the store is closed) was logged by ingest, and the
/// source stops at the next shutdown check.
fn commit(ingest: &mut Ingest, handoff: Handoff) {
    let _ = ingest.commit_blocking(handoff);
}

/// Reads what is there now and feeds complete lines; returns the bytes read.
fn read_available(o: &mut Open, ingest: &mut Ingest) -> std::io::Result<usize> {
    let mut total = 0;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = o.file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        total += n;
        let base = o.offset;
        let generation = o.id.generation;
        let (asm, line) = (&mut o.asm, &mut o.line);
        let used = crate::ingest::split_lines(&chunk[..n], |piece, end| {
            line.push(piece);
            line.take(|l| {
                let pos = Pos::new(generation, (base + end as u64) as i64);
                feed_line(asm, ingest, l, pos);
            });
        });
        // The start of the next line: kept up to the line bound, the rest only counted.
        o.line.push(&chunk[used..n]);
        o.offset += n as u64;
        if total >= 4 * CHUNK {
            break;
        }
    }
    Ok(total)
}

/// Emits a last line without `\n` at rotation, truncation or shutdown.
fn finish_file(o: &mut Open, ingest: &mut Ingest) {
    let generation = o.id.generation;
    if !o.line.is_empty() {
        let pos = Pos::new(generation, o.offset as i64);
        let asm = &mut o.asm;
        o.line.take(|l| feed_line(asm, ingest, l, pos));
    }
    let pos = Pos::new(generation, o.offset as i64);
    o.asm.finish(|l, m| {
        ingest.push(l, LineMeta { pos, ..m });
    });
}

/// One line of a file: Docker json-file records are decoded (and partial records joined),
/// anything else goes to the parser as is.
pub(crate) fn feed_line(asm: &mut LineAssembler, ingest: &mut Ingest, line: &[u8], pos: Pos) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rec) = JsonFileRecord::parse(line) {
        let frame = rec.to_frame();
        asm.push_frame(rec.stream(), &frame, |l, m| {
            ingest.push(
                l,
                LineMeta {
                    received_ns: m.received_ns,
                    pos,
                },
            );
        });
    } else {
        ingest.push(
            line,
            LineMeta {
                received_ns: None,
                pos,
            },
        );
    }
}
