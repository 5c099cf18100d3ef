//! The writer thread: owns the write connection, merges queued batches into transactions
//! and retries a failing commit (write health). One transaction is built in `apply`:
//! `entries` (log rows linked to their tasks), `tasks` (events become task changes),
//! `invoices`, `node` (the node status), `figures` (counts and figures of new rows);
//! `prune` deletes old rows in chunks.

mod apply;
mod entries;
mod figures;
mod invoices;
mod node;
mod prune;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

use super::checkpoint::{checkpoint, Checkpointer, WAL_MAX_BYTES};
use super::WriteHealth;
use super::{lock, now_ns, set_page_limit, Batch, PruneReport, Shared, StoreConfig, StoreError};
use crate::model::Pos;
use node::{load_node, NodeState};
use prune::PruneRun;

/// First and longest wait between attempts at a failing commit.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(crate) enum Command {
    Batch(Batch),
    Flush(mpsc::Sender<()>),
    Prune {
        now_ns: i64,
        reply: mpsc::Sender<Result<PruneReport, StoreError>>,
    },
    /// A write of another store module (auth, federation…), run on this thread with the
    /// write connection; the job opens its own transaction and sends its own reply.
    Exec(Box<dyn FnOnce(&mut Connection) + Send>),
    Close,
}

pub(crate) struct Writer {
    conn: Connection,
    /// Row ids of recently written tasks, to link later entries to them.
    task_rows: HashMap<String, i64>,
    checkpointer: Checkpointer,
    receiver: Receiver<Command>,
    shared: Arc<Shared>,
    batch_max_entries: usize,
    /// In-memory view of what is committed (caches and node status).
    state: State,
    prune: Option<PruneRun>,
    next_prune: Instant,
    /// A command met while gathering batches, handled next.
    next: Option<Command>,
}

#[derive(Clone, Debug, Default)]
struct State {
    sources: HashMap<String, SourceState>,
    loggers: HashMap<String, i64>,
    words: entries::Words,
    node: NodeState,
}

#[derive(Clone, Copy, Debug)]
struct SourceState {
    id: i64,
    cursor: Option<Pos>,
    /// Time of the source's last entry, for entries that carry none.
    last_time_ns: Option<i64>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        receiver: Receiver<Command>,
        shared: Arc<Shared>,
        config: &StoreConfig,
    ) -> Result<Writer, StoreError> {
        let path = &shared.path;
        let setup = || -> rusqlite::Result<NodeState> {
            // Checkpoints run on the checkpointer's thread; after a burst the log file is
            // cut back to this size.
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            conn.pragma_update(None, "journal_size_limit", WAL_MAX_BYTES as i64)?;
            load_node(&conn)
        };
        let node = setup().map_err(|e| StoreError::at_open(path, e))?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(Writer {
            conn,
            task_rows: HashMap::new(),
            checkpointer,
            receiver,
            shared,
            batch_max_entries: config.batch_max_entries,
            state: State {
                node,
                ..State::default()
            },
            prune: None,
            next_prune: Instant::now(),
            next: None,
        })
    }

    /// Serves commands until `Close` or until every handle is gone. Fails only when the
    /// store is closing while commits still fail.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        loop {
            if self
                .shared
                .prune_soon
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                self.next_prune = Instant::now();
            }
            if self.prune.is_none() && Instant::now() >= self.next_prune {
                self.start_prune(now_ns());
            }
            let command = match self.next.take() {
                Some(command) => Some(command),
                None => match self.receive() {
                    Ok(command) => command,
                    Err(()) => break,
                },
            };
            match command {
                None => {}
                Some(Command::Batch(first)) => {
                    let batches = self.gather(first);
                    let committed = self.commit_with_retry(&batches);
                    self.checkpointer.free(batches);
                    if let Err(error) = committed {
                        let queued = self
                            .receiver
                            .try_iter()
                            .filter(|c| matches!(c, Command::Batch(_)))
                            .count();
                        return Err(match error {
                            StoreError::Uncommitted { batches, detail } => {
                                StoreError::Uncommitted {
                                    batches: batches + queued,
                                    detail,
                                }
                            }
                            other => other,
                        });
                    }
                }
                Some(Command::Flush(reply)) => {
                    let _ = reply.send(());
                }
                Some(Command::Prune { now_ns, reply }) => {
                    let _ = reply.send(self.prune_all(now_ns));
                }
                Some(Command::Exec(job)) => self.exec(job),
                Some(Command::Close) => break,
            }
            if self.prune.is_some() {
                self.prune_step();
            }
        }
        Ok(())
    }

    /// Runs one `Exec` job with the write connection.
    fn exec(&mut self, job: Box<dyn FnOnce(&mut Connection) + Send>) {
        job(&mut self.conn);
    }

    /// The next command; `Ok(None)` when it is time for a pruning step; `Err` when every
    /// handle is gone.
    fn receive(&self) -> Result<Option<Command>, ()> {
        if self.prune.is_some() {
            return match self.receiver.try_recv() {
                Ok(command) => Ok(Some(command)),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Disconnected) => Err(()),
            };
        }
        let wait = self.next_prune.saturating_duration_since(Instant::now());
        match self.receiver.recv_timeout(wait) {
            Ok(command) => Ok(Some(command)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    /// Takes more queued batches, up to `batch_max_entries` entries in all.
    fn gather(&mut self, first: Batch) -> Vec<Batch> {
        let mut total = first.entries.len();
        let mut batches = vec![first];
        while total < self.batch_max_entries {
            match self.receiver.try_recv() {
                Ok(Command::Batch(batch)) => {
                    total += batch.entries.len();
                    batches.push(batch);
                }
                Ok(other) => {
                    self.next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        batches
    }

    fn commit_with_retry(&mut self, batches: &[Batch]) -> Result<(), StoreError> {
        let mut backoff = RETRY_MIN;
        let mut failing = false;
        let mut last_try = false;
        loop {
            let pages = self.shared.page_limit.swap(0, Ordering::SeqCst);
            if pages > 0 {
                if let Err(error) = set_page_limit(&self.conn, pages) {
                    tracing::warn!(%error, "cannot change max_page_count");
                }
            }
            let started = Instant::now();
            match self.apply(batches) {
                Ok(Applied {
                    state,
                    task_rows,
                    removed_entries,
                }) => {
                    self.state = state;
                    self.remember_task_rows(&task_rows);
                    self.after_commit();
                    if failing {
                        tracing::info!(db.path = %self.shared.path.display(), "database writes recovered; the kept batches are committed");
                        *lock(&self.shared.health) = WriteHealth::Ok;
                        self.shared.feed.health(&WriteHealth::Ok);
                    }
                    let tasks = task_rows.iter().map(|(id, row)| (*id, *row));
                    self.shared
                        .feed
                        .committed(&self.conn, batches, tasks, removed_entries);
                    tracing::trace!(
                        batch.len = batches.len(),
                        duration_ms = started.elapsed().as_millis() as u64,
                        "committed"
                    );
                    return Ok(());
                }
                Err(source) => {
                    let detail = StoreError::describe_write(&self.shared.path, &source);
                    if !failing {
                        failing = true;
                        let entries: usize = batches.iter().map(|b| b.entries.len()).sum();
                        tracing::warn!(
                            error = %detail,
                            batch.len = entries,
                            "database commit failed; keeping the entries in memory and retrying"
                        );
                        let health = WriteHealth::Failing {
                            error: detail.clone(),
                            since: SystemTime::now(),
                        };
                        self.shared.feed.health(&health);
                        *lock(&self.shared.health) = health;
                    } else if let WriteHealth::Failing { error, .. } =
                        &mut *lock(&self.shared.health)
                    {
                        if *error != detail {
                            *error = detail.clone();
                        }
                    }
                    if self.shared.closing.load(Ordering::SeqCst) {
                        if last_try {
                            return Err(StoreError::Uncommitted {
                                batches: batches.len(),
                                detail,
                            });
                        }
                        last_try = true;
                        continue;
                    }
                    std::thread::park_timeout(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn remember_task_rows(&mut self, rows: &HashMap<&str, i64>) {
        if self.task_rows.len() + rows.len() > RECENT_TASK_ROWS {
            self.task_rows.clear();
        }
        for (execution_id, id) in rows {
            if !self.task_rows.contains_key(*execution_id) {
                self.task_rows.insert((*execution_id).to_owned(), *id);
            }
        }
    }

    /// Hands the new log frames to the checkpointer; checkpoints here, waiting for
    /// readers, when the log grew too big anyway.
    fn after_commit(&mut self) {
        if self.checkpointer.wal_too_big() {
            let started = Instant::now();
            match checkpoint(&self.conn, "RESTART") {
                Ok(busy) => tracing::debug!(
                    busy,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "write-ahead log too big; checkpointed by the writer"
                ),
                Err(error) => tracing::debug!(%error, "writer checkpoint failed"),
            }
        } else {
            self.checkpointer.nudge();
        }
    }
}

/// What a committed transaction leaves for the writer's in-memory view.
struct Applied<'a> {
    state: State,
    /// Row ids of the tasks written, by execution id.
    task_rows: HashMap<&'a str, i64>,
    /// Stored entries that longer versions replaced (deleted in this transaction).
    removed_entries: Vec<i64>,
}

/// Recently written tasks remembered for linking entries (beyond, the map starts over;
/// a task's lines come within minutes of it, and a miss costs one index lookup). About
/// 1 MiB; 50,000 took 5 MiB of the long-running monitor's memory.
const RECENT_TASK_ROWS: usize = 10_000;
