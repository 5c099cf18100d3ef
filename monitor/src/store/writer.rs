//! The writer thread: owns the write connection, merges queued batches into transactions,
//! applies events to tasks, invoices and the node status, and prunes old rows in chunks.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{
    params, Connection, OptionalExtension, Statement, Transaction, TransactionBehavior,
};

use super::checkpoint::{checkpoint, Checkpointer, WAL_MAX_BYTES};
use super::WriteHealth;
use super::{lock, now_ns, set_page_limit, Batch, PruneReport, Shared, StoreConfig, StoreError};
use crate::model::{Entry, Event, Invoice, Kind, Level, Metrics, Pos, TaskCreated, TaskStatus};

/// First and longest wait between attempts at a failing commit.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the writer starts a pruning pass (also once at open).
const PRUNE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Rows deleted per pruning transaction, so that pruning never holds up ingest for long.
const PRUNE_CHUNK: i64 = 5_000;
const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;
const NS_PER_HOUR: i64 = 3_600 * 1_000_000_000;

/// Records that the entries up to the newest id were stored by the hour of `now_ns`
/// (log retention counts from there; see schema version 6).
fn mark_stored(tx: &Transaction<'_>, now_ns: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO entry_marks (hour, last_id) SELECT ?1, max(id) FROM entries WHERE true
         ON CONFLICT (hour) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
    )?
    .execute([now_ns.div_euclid(NS_PER_HOUR)])?;
    Ok(())
}

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
    node: NodeState,
}

#[derive(Clone, Copy, Debug)]
struct SourceState {
    id: i64,
    cursor: Option<Pos>,
    /// Time of the source's last entry, for entries that carry none.
    last_time_ns: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NodeState {
    version: Option<String>,
    address: Option<String>,
    registered_ms: Option<i64>,
    registered_ns: Option<i64>,
    slots_used: Option<i64>,
    slots_total: Option<i64>,
    last_time_ns: Option<i64>,
    last_received_ns: Option<i64>,
    last_node_time: Option<i64>,
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
                Ok(Applied { state, task_rows }) => {
                    self.state = state;
                    self.remember_task_rows(&task_rows);
                    self.after_commit();
                    if failing {
                        tracing::info!(db.path = %self.shared.path.display(), "database writes recovered; the kept batches are committed");
                        *lock(&self.shared.health) = WriteHealth::Ok;
                    }
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
                        *lock(&self.shared.health) = WriteHealth::Failing {
                            error: detail.clone(),
                            since: SystemTime::now(),
                        };
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

    /// Applies batches in one transaction. Returns the in-memory state as of the commit;
    /// on error nothing is committed and `self.state` is untouched.
    ///
    /// Entries are read first (events become task changes and invoices); then tasks are
    /// written, so that entries can be stored with their task's row id.
    fn apply<'a>(&mut self, batches: &'a [Batch]) -> rusqlite::Result<Applied<'a>> {
        let mut state = self.state.clone();
        let now = now_ns();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counts = [0_i64; Kind::ALL.len()];
        let mut rows = EntryRows::default();
        let mut tasks = TaskDeltas::default();
        let mut invoices: Vec<InvoiceRow<'a>> = Vec::new();
        let mut last_logger: Option<(&str, i64)> = None;
        for batch in batches {
            let mut source = source_state(&tx, &mut state.sources, &batch.source, now)?;
            for entry in &batch.entries {
                if source.cursor.is_some_and(|cursor| entry.pos <= cursor) {
                    continue;
                }
                let time_ns = entry
                    .received_ns
                    .or_else(|| entry.node_time.map(|s| s.saturating_mul(1_000_000_000)))
                    .or(source.last_time_ns)
                    .unwrap_or(now);
                source.last_time_ns = Some(time_ns);
                let logger_id = match (&entry.logger, last_logger) {
                    (None, _) => None,
                    (Some(name), Some((last, id))) if name.as_str() == last => Some(id),
                    (Some(name), _) => {
                        let id = logger_id(&tx, &mut state.loggers, name)?;
                        last_logger = Some((name.as_str(), id));
                        Some(id)
                    }
                };
                rows.push(EntryRow {
                    source_id: source.id,
                    time_ns,
                    logger_id,
                    task_row: None,
                    entry,
                });
                counts[entry.kind as usize] += 1;
                let newer = state.node.observe(entry, time_ns);
                if let Some(event) = &entry.event {
                    let at = EventTime {
                        ms: event_ms(entry, time_ns),
                        ns: entry.received_ns,
                    };
                    match event {
                        Event::Invoice(invoice) => invoices.push(InvoiceRow {
                            entry,
                            invoice,
                            time_ns,
                        }),
                        _ => apply_event(&mut state.node, &mut tasks, newer, entry, event, at),
                    }
                }
            }
            for event in &batch.container_events {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO container_events (container_id, container_name, time_ns, action, exit_code)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    event.container_id,
                    event.container_name,
                    event.time_ns,
                    event.action.as_str(),
                    event.exit_code,
                ])?;
            }
            if let Some(cursor) = &batch.cursor {
                if source.cursor.is_none_or(|old| cursor.pos >= old) {
                    tx.prepare_cached(
                        "INSERT INTO source_cursors (source_id, pos_major, pos_minor, parser_state, updated_ns)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (source_id) DO UPDATE SET pos_major = excluded.pos_major,
                           pos_minor = excluded.pos_minor, parser_state = excluded.parser_state,
                           updated_ns = excluded.updated_ns",
                    )?
                    .execute(params![
                        source.id,
                        cursor.pos.major,
                        cursor.pos.minor,
                        cursor.parser_state,
                        now
                    ])?;
                    source.cursor = Some(cursor.pos);
                }
            }
            tx.prepare_cached("UPDATE sources SET last_batch_ns = ?2 WHERE id = ?1")?
                .execute((source.id, now))?;
            state.sources.insert(batch.source.clone(), source);
        }
        let task_rows = tasks.flush(&tx)?;
        for invoice in &invoices {
            insert_invoice(&tx, invoice)?;
        }
        let mut rows_of = TaskRows {
            flushed: &task_rows,
            recent: &self.task_rows,
            probed: HashMap::new(),
        };
        rows.finish(&tx, &mut rows_of)?;
        add_counts(&tx, &counts, 1)?;
        if counts.iter().any(|&n| n > 0) {
            mark_stored(&tx, now)?;
        }
        if state.node != self.state.node {
            save_node(&tx, &state.node)?;
        }
        tx.commit()?;
        Ok(Applied { state, task_rows })
    }

    /// The retention in effect, in ns (`None`: keep forever).
    fn retention_ns(&self) -> (Option<i64>, Option<i64>) {
        let r = *self
            .shared
            .retention
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let days = |d: Option<u32>| d.map(|d| i64::from(d) * NS_PER_DAY);
        (days(r.log_days), days(r.task_days))
    }

    fn start_prune(&mut self, now_ns: i64) {
        self.next_prune = Instant::now() + PRUNE_INTERVAL;
        let (log, task) = self.retention_ns();
        if log.is_none() && task.is_none() {
            return;
        }
        self.prune = Some(PruneRun::new(now_ns, log, task));
    }

    /// One chunk of the running pruning pass.
    fn prune_step(&mut self) {
        let Some(run) = self.prune.as_mut() else {
            return;
        };
        let stepped = run.step(&mut self.conn);
        if run.report.tasks > 0 {
            // Deleted tasks must not be linked to.
            self.task_rows.clear();
        }
        match stepped {
            Ok(false) => {}
            Ok(true) => {
                let report = run.report;
                self.prune = None;
                if report != PruneReport::default() {
                    tracing::info!(
                        pruned.entries = report.entries,
                        pruned.tasks = report.tasks,
                        pruned.invoices = report.invoices,
                        pruned.container_events = report.container_events,
                        "pruned old rows"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, "pruning failed; trying again at the next pass");
                self.prune = None;
            }
        }
    }

    fn prune_all(&mut self, now_ns: i64) -> Result<PruneReport, StoreError> {
        let (log, task) = self.retention_ns();
        let mut run = PruneRun::new(now_ns, log, task);
        let result = loop {
            match run.step(&mut self.conn) {
                Ok(false) => {}
                Ok(true) => break Ok(run.report),
                Err(e) => break Err(StoreError::query(&self.shared.path, e)),
            }
        };
        if run.report.tasks > 0 {
            self.task_rows.clear();
        }
        result
    }
}

/// What a committed transaction leaves for the writer's in-memory view.
struct Applied<'a> {
    state: State,
    /// Row ids of the tasks written, by execution id.
    task_rows: HashMap<&'a str, i64>,
}

/// Recently written tasks remembered for linking entries (beyond, the map starts over).
const RECENT_TASK_ROWS: usize = 10_000;

/// Finds the task row an entry's execution id belongs to: written in this transaction,
/// written recently, or looked up (and remembered for the transaction).
struct TaskRows<'t, 'a> {
    flushed: &'t HashMap<&'a str, i64>,
    recent: &'t HashMap<String, i64>,
    probed: HashMap<&'a str, Option<i64>>,
}

impl<'a> TaskRows<'_, 'a> {
    fn get(
        &mut self,
        tx: &Transaction<'_>,
        execution_id: &'a str,
    ) -> rusqlite::Result<Option<i64>> {
        if let Some(id) = self
            .flushed
            .get(execution_id)
            .or_else(|| self.recent.get(execution_id))
        {
            return Ok(Some(*id));
        }
        if let Some(id) = self.probed.get(execution_id) {
            return Ok(*id);
        }
        let id = tx
            .prepare_cached("SELECT id FROM tasks WHERE execution_id = ?1")?
            .query_row([execution_id], |row| row.get(0))
            .optional()?;
        self.probed.insert(execution_id, id);
        Ok(id)
    }
}

/// Columns of an entry row, in insert order.
const ENTRY_COLUMNS: usize = 13;
/// Entries per multi-row insert: one statement execution per this many rows saves most of
/// SQLite's per-statement work (cursor set-up on the table and its indexes, reset).
const ROWS_PER_INSERT: usize = 64;

fn insert_entries_sql(rows: usize) -> String {
    let one = format!("({})", ["?"; ENTRY_COLUMNS].join(", "));
    format!(
        "INSERT OR FAIL INTO entries (source_id, pos_major, pos_minor, time_ns, received_ns, node_time, level, logger_id, version, kind, execution_id, task_row, message) VALUES {}",
        vec![one; rows].join(", ")
    )
}

static INSERT_ONE: LazyLock<String> = LazyLock::new(|| insert_entries_sql(1));
static INSERT_MANY: LazyLock<String> = LazyLock::new(|| insert_entries_sql(ROWS_PER_INSERT));

struct EntryRow<'a> {
    source_id: i64,
    time_ns: i64,
    logger_id: Option<i64>,
    task_row: Option<i64>,
    entry: &'a Entry,
}

/// The entry rows of a transaction, inserted once its tasks are written.
#[derive(Default)]
struct EntryRows<'a> {
    rows: Vec<EntryRow<'a>>,
}

impl<'a> EntryRows<'a> {
    fn push(&mut self, row: EntryRow<'a>) {
        self.rows.push(row);
    }

    /// Inserts the rows, linked to their tasks, `ROWS_PER_INSERT` at a time.
    fn finish(
        &mut self,
        tx: &Transaction<'_>,
        tasks: &mut TaskRows<'_, 'a>,
    ) -> rusqlite::Result<()> {
        for row in &mut self.rows {
            if let Some(execution_id) = row.entry.execution_id.as_deref() {
                row.task_row = tasks.get(tx, execution_id)?;
            }
        }
        let mut chunks = self.rows.chunks_exact(ROWS_PER_INSERT);
        if chunks.len() > 0 {
            let mut insert = tx.prepare_cached(&INSERT_MANY)?;
            for chunk in chunks.by_ref() {
                bind_and_insert(&mut insert, chunk)?;
            }
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut insert = tx.prepare_cached(&INSERT_ONE)?;
            for row in rest {
                bind_and_insert(&mut insert, std::slice::from_ref(row))?;
            }
        }
        Ok(())
    }
}

fn bind_and_insert(insert: &mut Statement<'_>, rows: &[EntryRow<'_>]) -> rusqlite::Result<()> {
    for (n, row) in rows.iter().enumerate() {
        let e = row.entry;
        let at = n * ENTRY_COLUMNS;
        insert.raw_bind_parameter(at + 1, row.source_id)?;
        insert.raw_bind_parameter(at + 2, e.pos.major)?;
        insert.raw_bind_parameter(at + 3, e.pos.minor)?;
        insert.raw_bind_parameter(at + 4, row.time_ns)?;
        insert.raw_bind_parameter(at + 5, e.received_ns)?;
        insert.raw_bind_parameter(at + 6, e.node_time)?;
        insert.raw_bind_parameter(at + 7, e.level.as_ref().map(Level::as_str))?;
        insert.raw_bind_parameter(at + 8, row.logger_id)?;
        insert.raw_bind_parameter(at + 9, &e.version)?;
        insert.raw_bind_parameter(at + 10, e.kind.as_str())?;
        insert.raw_bind_parameter(at + 11, &e.execution_id)?;
        insert.raw_bind_parameter(at + 12, row.task_row)?;
        insert.raw_bind_parameter(at + 13, &e.message)?;
    }
    insert.raw_execute()?;
    Ok(())
}

/// The state of a source, from the cache or the database (created if new).
fn source_state(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, SourceState>,
    name: &str,
    now: i64,
) -> rusqlite::Result<SourceState> {
    if let Some(source) = cache.get(name) {
        return Ok(*source);
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO sources (name, created_ns) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        )?
        .query_row((name, now), |row| row.get(0))?;
    let cursor = tx
        .prepare_cached("SELECT pos_major, pos_minor FROM source_cursors WHERE source_id = ?1")?
        .query_row([id], |row| Ok(Pos::new(row.get(0)?, row.get(1)?)))
        .optional()?;
    let source = SourceState {
        id,
        cursor,
        last_time_ns: None,
    };
    cache.insert(name.to_owned(), source);
    Ok(source)
}

fn logger_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, i64>,
    name: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(name) {
        return Ok(*id);
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO loggers (name) VALUES (?1)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        )?
        .query_row([name], |row| row.get(0))?;
    cache.insert(name.to_owned(), id);
    Ok(id)
}

fn add_counts(
    tx: &Transaction<'_>,
    counts: &[i64; Kind::ALL.len()],
    sign: i64,
) -> rusqlite::Result<()> {
    for (kind, n) in Kind::ALL.iter().zip(counts) {
        if *n != 0 {
            tx.prepare_cached(
                "INSERT INTO entry_counts (kind, n) VALUES (?1, ?2)
                 ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n",
            )?
            .execute((kind.as_str(), sign * n))?;
        }
    }
    Ok(())
}

impl NodeState {
    /// Takes an entry's version and times into account. Returns whether the entry is at
    /// least as new as everything seen so far (only those may overwrite node fields).
    fn observe(&mut self, entry: &Entry, time_ns: i64) -> bool {
        let newer = self.last_time_ns.is_none_or(|last| time_ns >= last);
        if let Some(version) = &entry.version {
            if (newer || self.version.is_none())
                && self.version.as_deref() != Some(version.as_str())
            {
                self.version = Some(version.clone());
            }
        }
        self.last_time_ns = self.last_time_ns.max(Some(time_ns));
        if entry.received_ns.is_some() {
            self.last_received_ns = self.last_received_ns.max(entry.received_ns);
        }
        if entry.node_time.is_some() {
            self.last_node_time = self.last_node_time.max(entry.node_time);
        }
        newer
    }
}

fn load_node(conn: &Connection) -> rusqlite::Result<NodeState> {
    conn.query_row(
        "SELECT version, address, registered_ms, registered_ns, slots_used, slots_total,
                last_time_ns, last_received_ns, last_node_time
         FROM node_status WHERE id = 1",
        [],
        |row| {
            Ok(NodeState {
                version: row.get(0)?,
                address: row.get(1)?,
                registered_ms: row.get(2)?,
                registered_ns: row.get(3)?,
                slots_used: row.get(4)?,
                slots_total: row.get(5)?,
                last_time_ns: row.get(6)?,
                last_received_ns: row.get(7)?,
                last_node_time: row.get(8)?,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

fn save_node(tx: &Transaction<'_>, node: &NodeState) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE node_status SET version = ?1, address = ?2, registered_ms = ?3, registered_ns = ?4,
           slots_used = ?5, slots_total = ?6, last_time_ns = ?7, last_received_ns = ?8,
           last_node_time = ?9
         WHERE id = 1",
    )?
    .execute(params![
        node.version,
        node.address,
        node.registered_ms,
        node.registered_ns,
        node.slots_used,
        node.slots_total,
        node.last_time_ns,
        node.last_received_ns,
        node.last_node_time,
    ])?;
    Ok(())
}

/// Unix ms of an event: the node's clock, else the entry time.
fn event_ms(entry: &Entry, time_ns: i64) -> i64 {
    entry
        .node_time
        .map_or(time_ns / 1_000_000, |s| s.saturating_mul(1_000))
}

/// SQLite integers are signed; a figure beyond `i64::MAX` is stored as unknown.
fn int(value: Option<u64>) -> Option<i64> {
    value.and_then(|v| i64::try_from(v).ok())
}

/// Parses a figure printed as text (`"19373422"`), if it is an integer.
fn parse_int(text: Option<&String>) -> Option<i64> {
    text.and_then(|t| t.trim().parse().ok())
}

#[allow(clippy::too_many_arguments)]
fn apply_event<'a>(
    node: &mut NodeState,
    tasks: &mut TaskDeltas<'a>,
    newer: bool,
    entry: &'a Entry,
    event: &'a Event,
    at: EventTime,
) {
    match event {
        Event::NodeRegistered { address } => {
            if newer || node.address.is_none() {
                node.address = Some(address.clone());
                node.registered_ms = Some(at.ms);
                node.registered_ns = at.ns;
            }
        }
        Event::SlotTaken { slot, total } => {
            if newer || node.slots_used.is_none() {
                node.slots_used = Some(i64::from(*slot));
                node.slots_total = Some(i64::from(*total));
            }
        }
        Event::SlotReleased { active, total } => {
            if newer || node.slots_used.is_none() {
                node.slots_used = Some(i64::from(*active));
                node.slots_total = Some(i64::from(*total));
            }
        }
        Event::TaskReceived(created) => {
            let execution_id = match (created.execution_id.as_str(), entry.execution_id.as_deref())
            {
                ("", Some(id)) => id,
                ("", None) => return,
                (id, _) => id,
            };
            tasks.received(execution_id, created, at);
        }
        Event::TaskDownloaded { task_id } => tasks.downloaded(task_id, at.ms),
        Event::ExecutionStarted { execution_id } => tasks.started(execution_id, at),
        Event::ExecutionCompleted {
            execution_id,
            metrics,
        } => {
            tasks.completed(execution_id, metrics.as_deref(), at);
        }
        Event::Invoice(_)
        | Event::ExecutionMetrics(_)
        | Event::ExecutionStderr { .. }
        | Event::OutcomePublished => {}
    }
}

/// When an event happened: the node's clock in ms (else the entry time), Docker's in ns.
#[derive(Clone, Copy, Debug)]
struct EventTime {
    ms: i64,
    ns: Option<i64>,
}

/// Life-cycle rank: a task only moves up, and a final one never changes.
const RECEIVED: u8 = 0;
const EXECUTING: u8 = 1;
const FINAL: u8 = 2;

/// What one transaction's events did to one task. Applied to its row in one statement at
/// the end of the transaction (a task's lines usually all fall into one transaction
/// during an import): the statement merges with the stored row by the same rules the
/// events follow one by one, so the outcome does not depend on where transactions cut.
struct TaskDelta<'a> {
    execution_id: &'a str,
    rank: u8,
    /// Every task_created seen, in order: the first figure present wins.
    created: Vec<&'a TaskCreated>,
    received: Option<EventTime>,
    downloaded_ms: Option<i64>,
    started: Option<EventTime>,
    completion: Option<Completion<'a>>,
}

#[derive(Clone, Copy)]
struct Completion<'a> {
    status: TaskStatus,
    at: EventTime,
    metrics: Option<&'a Metrics>,
}

impl<'a> TaskDelta<'a> {
    fn status(&self) -> TaskStatus {
        match (&self.completion, self.rank) {
            (Some(completion), _) => completion.status,
            (None, RECEIVED) => TaskStatus::Received,
            (None, _) => TaskStatus::Executing,
        }
    }

    fn created<T>(&self, figure: impl Fn(&'a TaskCreated) -> Option<T>) -> Option<T> {
        self.created.iter().find_map(|c| figure(c))
    }

    fn metric<T>(&self, figure: impl Fn(&'a Metrics) -> Option<T>) -> Option<T> {
        self.completion.and_then(|c| c.metrics).and_then(figure)
    }
}

/// The task changes of one transaction, in the order tasks were first seen.
#[derive(Default)]
struct TaskDeltas<'a> {
    deltas: Vec<TaskDelta<'a>>,
    by_execution: HashMap<&'a str, usize>,
    by_task_id: HashMap<&'a str, Vec<usize>>,
    /// `TaskDownloaded` lines, applied to the tasks stored before this transaction.
    downloads: Vec<(&'a str, i64)>,
}

impl<'a> TaskDeltas<'a> {
    fn delta(&mut self, execution_id: &'a str) -> (usize, &mut TaskDelta<'a>) {
        let index = *self.by_execution.entry(execution_id).or_insert_with(|| {
            self.deltas.push(TaskDelta {
                execution_id,
                rank: RECEIVED,
                created: Vec::new(),
                received: None,
                downloaded_ms: None,
                started: None,
                completion: None,
            });
            self.deltas.len() - 1
        });
        (index, &mut self.deltas[index])
    }

    fn received(&mut self, execution_id: &'a str, created: &'a TaskCreated, at: EventTime) {
        let (index, delta) = self.delta(execution_id);
        delta.created.push(created);
        delta.received = delta.received.or(Some(at));
        if let Some(task_id) = created.task_id.as_deref() {
            let tasks = self.by_task_id.entry(task_id).or_default();
            if !tasks.contains(&index) {
                tasks.push(index);
            }
        }
    }

    fn downloaded(&mut self, task_id: &'a str, ms: i64) {
        self.downloads.push((task_id, ms));
        for &index in self.by_task_id.get(task_id).into_iter().flatten() {
            let delta = &mut self.deltas[index];
            if delta.rank < FINAL {
                delta.rank = EXECUTING;
                delta.downloaded_ms = delta.downloaded_ms.or(Some(ms));
            }
        }
    }

    fn started(&mut self, execution_id: &'a str, at: EventTime) {
        let (_, delta) = self.delta(execution_id);
        if delta.rank < FINAL {
            delta.rank = EXECUTING;
            delta.started = delta.started.or(Some(at));
        }
    }

    fn completed(&mut self, execution_id: &'a str, metrics: Option<&'a Metrics>, at: EventTime) {
        let (_, delta) = self.delta(execution_id);
        if delta.rank < FINAL {
            delta.rank = FINAL;
            let status = match metrics.and_then(|m| m.exit_code) {
                Some(code) if code != 0 => TaskStatus::Failed,
                _ => TaskStatus::Completed,
            };
            delta.completion = Some(Completion {
                status,
                at,
                metrics,
            });
        }
    }

    /// Writes the changes: downloads of tasks stored earlier first (they happened before
    /// anything this transaction adds), then one upsert per task.
    fn flush(&self, tx: &Transaction<'_>) -> rusqlite::Result<HashMap<&'a str, i64>> {
        if !self.downloads.is_empty() {
            let mut download = tx.prepare_cached(
                "UPDATE tasks SET status = CASE status WHEN 'received' THEN 'executing' ELSE status END,
                   downloaded_ms = COALESCE(downloaded_ms, ?2)
                 WHERE task_id = ?1 AND status IN ('received', 'executing')",
            )?;
            for (task_id, ms) in &self.downloads {
                download.execute((task_id, ms))?;
            }
        }
        let mut ids = HashMap::with_capacity(self.deltas.len());
        if self.deltas.is_empty() {
            return Ok(ids);
        }
        let mut upsert = tx.prepare_cached(UPSERT_TASK)?;
        let mut stored = tx
            .prepare_cached("SELECT id, status, completed_ms FROM tasks WHERE execution_id = ?1")?;
        let mut data = tx.prepare_cached(
            "INSERT INTO task_data (task_id, input, output) VALUES (?1, ?2, ?3)
             ON CONFLICT (task_id) DO UPDATE SET input = COALESCE(input, excluded.input),
               output = COALESCE(excluded.output, output)",
        )?;
        for d in &self.deltas {
            let status = d.status();
            let completed = d.completion.map(|c| c.at);
            let before = tx.last_insert_rowid();
            upsert.execute(params![
                d.execution_id,
                status.as_str(),
                d.created(|c| c.task_id.as_deref()),
                d.created(|c| c.chain_id.as_deref()),
                int(d.created(|c| c.block_number)),
                d.created(|c| c.block_hash.as_deref()),
                d.created(|c| c.requester.as_deref()),
                d.created(|c| c.reward.as_deref()),
                d.created(|c| c.created_ms),
                d.received.map(|at| at.ms),
                d.received.and_then(|at| at.ns),
                int(d.created(|c| c.gas_limit)),
                int(d.created(|c| c.memory_limit)),
                int(d.created(|c| c.call_limit)),
                int(d.created(|c| c.frame_limit)),
                int(d.created(|c| c.execution_timeout_ms)),
                int(d.created(|c| c.required_solutions)),
                int(d.created(|c| c.total_solutions)),
                d.downloaded_ms,
                d.started.map(|at| at.ms),
                d.started.and_then(|at| at.ns),
                completed.map(|at| at.ms),
                completed.and_then(|at| at.ns),
                d.metric(|m| m.exit_code),
                int(d.metric(|m| m.elapsed_ns)),
                int(d.metric(|m| m.elapsed_ns.map(|ns| ns / 1_000_000))),
                int(d.metric(|m| m.steps)),
                int(d.metric(|m| m.gas_limit)),
                int(d.metric(|m| m.memory_peak)),
                int(d.metric(|m| m.memory_limit)),
                int(d.metric(|m| m.call_peak)),
                int(d.metric(|m| m.frame_peak)),
                int(d.metric(|m| m.wasm_size)),
                d.metric(|m| m.wasm_hash.as_deref()),
                d.metric(|m| m.cached),
            ])?;
            // A new row moves the last insert rowid (an update leaves it alone, and so do
            // the triggers' inserts); otherwise read back what the row now holds.
            let inserted = tx.last_insert_rowid();
            let (id, stored_status, stored_completed_ms): (i64, String, Option<i64>) =
                if inserted != before {
                    (
                        inserted,
                        status.as_str().to_owned(),
                        completed.map(|at| at.ms),
                    )
                } else {
                    stored.query_row([d.execution_id], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?
                };
            ids.insert(d.execution_id, id);
            let input = d.created(|c| c.input.as_deref());
            // The output belongs to the completion only if this completion is the one
            // the row now carries (a task already final keeps its own).
            let output = d.metric(|m| m.output.as_deref()).filter(|_| {
                stored_status == status.as_str() && stored_completed_ms == completed.map(|at| at.ms)
            });
            if input.is_some() || output.is_some() {
                data.execute(params![id, input, output])?;
            }
        }
        Ok(ids)
    }
}

/// Merges a task's changes into its row. `status` on the right-hand side is the stored
/// one: a final task only takes task_created figures it lacks; otherwise the status moves
/// up, first times are kept, and a completion brings its figures.
const UPSERT_TASK: &str = "INSERT INTO tasks (execution_id, status, task_id, chain_id, block_number,
   block_hash, requester, reward, created_ms, received_ms, received_ns, gas_limit, memory_limit,
   call_limit, frame_limit, execution_timeout_ms, required_solutions, total_solutions,
   downloaded_ms, started_ms, started_ns, completed_ms, completed_ns, exit_code, elapsed_ns,
   elapsed_ms, gas_used, metered_gas_limit, memory_peak, metered_memory_limit, call_peak,
   frame_peak, wasm_size, wasm_hash, cached)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
   ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35)
 ON CONFLICT (execution_id) DO UPDATE SET
   task_id = COALESCE(task_id, excluded.task_id),
   chain_id = COALESCE(chain_id, excluded.chain_id),
   block_number = COALESCE(block_number, excluded.block_number),
   block_hash = COALESCE(block_hash, excluded.block_hash),
   requester = COALESCE(requester, excluded.requester),
   reward = COALESCE(reward, excluded.reward),
   created_ms = COALESCE(created_ms, excluded.created_ms),
   received_ms = COALESCE(received_ms, excluded.received_ms),
   received_ns = COALESCE(received_ns, excluded.received_ns),
   gas_limit = COALESCE(gas_limit, excluded.gas_limit),
   memory_limit = COALESCE(memory_limit, excluded.memory_limit),
   call_limit = COALESCE(call_limit, excluded.call_limit),
   frame_limit = COALESCE(frame_limit, excluded.frame_limit),
   execution_timeout_ms = COALESCE(execution_timeout_ms, excluded.execution_timeout_ms),
   required_solutions = COALESCE(required_solutions, excluded.required_solutions),
   total_solutions = COALESCE(total_solutions, excluded.total_solutions),
   status = CASE
     WHEN status IN ('completed', 'failed') THEN status
     WHEN excluded.status IN ('completed', 'failed', 'executing') THEN excluded.status
     ELSE status END,
   downloaded_ms = IIF(status IN ('completed', 'failed'), downloaded_ms, COALESCE(downloaded_ms, excluded.downloaded_ms)),
   started_ms = IIF(status IN ('completed', 'failed'), started_ms, COALESCE(started_ms, excluded.started_ms)),
   started_ns = IIF(status IN ('completed', 'failed'), started_ns, COALESCE(started_ns, excluded.started_ns)),
   completed_ms = IIF(status IN ('completed', 'failed'), completed_ms, COALESCE(excluded.completed_ms, completed_ms)),
   completed_ns = IIF(status IN ('completed', 'failed'), completed_ns, COALESCE(excluded.completed_ns, completed_ns)),
   exit_code = IIF(status IN ('completed', 'failed'), exit_code, COALESCE(excluded.exit_code, exit_code)),
   elapsed_ns = IIF(status IN ('completed', 'failed'), elapsed_ns, COALESCE(excluded.elapsed_ns, elapsed_ns)),
   elapsed_ms = IIF(status IN ('completed', 'failed'), elapsed_ms, COALESCE(excluded.elapsed_ms, elapsed_ms)),
   gas_used = IIF(status IN ('completed', 'failed'), gas_used, COALESCE(excluded.gas_used, gas_used)),
   metered_gas_limit = IIF(status IN ('completed', 'failed'), metered_gas_limit, COALESCE(excluded.metered_gas_limit, metered_gas_limit)),
   memory_peak = IIF(status IN ('completed', 'failed'), memory_peak, COALESCE(excluded.memory_peak, memory_peak)),
   metered_memory_limit = IIF(status IN ('completed', 'failed'), metered_memory_limit, COALESCE(excluded.metered_memory_limit, metered_memory_limit)),
   call_peak = IIF(status IN ('completed', 'failed'), call_peak, COALESCE(excluded.call_peak, call_peak)),
   frame_peak = IIF(status IN ('completed', 'failed'), frame_peak, COALESCE(excluded.frame_peak, frame_peak)),
   wasm_size = IIF(status IN ('completed', 'failed'), wasm_size, COALESCE(excluded.wasm_size, wasm_size)),
   wasm_hash = IIF(status IN ('completed', 'failed'), wasm_hash, COALESCE(excluded.wasm_hash, wasm_hash)),
   cached = IIF(status IN ('completed', 'failed'), cached, COALESCE(excluded.cached, cached))
";

/// An invoice line, stored after the transaction's tasks.
struct InvoiceRow<'a> {
    entry: &'a Entry,
    invoice: &'a Invoice,
    time_ns: i64,
}

fn insert_invoice(tx: &Transaction<'_>, row: &InvoiceRow<'_>) -> rusqlite::Result<()> {
    let InvoiceRow {
        entry,
        invoice,
        time_ns,
    } = row;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO invoices (invoice_id, execution_id, task_id, task_created_ts,
               step_gas_price, byte_gas_price, time_ns, node_time, received_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (invoice_id, execution_id) DO NOTHING",
        )?
        .execute(params![
            invoice.invoice_id,
            invoice
                .execution_id
                .as_ref()
                .or(entry.execution_id.as_ref()),
            invoice.task_id,
            invoice.task_created_ts,
            invoice.step_gas_price,
            invoice.byte_gas_price,
            time_ns,
            entry.node_time,
            entry.received_ns,
        ])?;
    if inserted == 0 {
        return Ok(());
    }
    let id = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached(
        "INSERT INTO invoice_items (invoice_row, position, operation, account, steps,
           steps_value, memory, memory_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (position, item) in invoice.line_items.iter().enumerate() {
        insert.execute(params![
            id,
            position as i64,
            item.operation,
            item.account,
            item.steps,
            parse_int(item.steps.as_ref()),
            item.memory,
            parse_int(item.memory.as_ref()),
        ])?;
    }
    Ok(())
}

/// A pruning pass: one table after the other, one chunk per transaction.
struct PruneRun {
    phase: usize,
    log_cutoff_ns: Option<i64>,
    task_cutoff_ns: Option<i64>,
    report: PruneReport,
}

impl PruneRun {
    fn new(now_ns: i64, log_retention_ns: Option<i64>, task_retention_ns: Option<i64>) -> Self {
        PruneRun {
            phase: 0,
            log_cutoff_ns: log_retention_ns.map(|r| now_ns.saturating_sub(r)),
            task_cutoff_ns: task_retention_ns.map(|r| now_ns.saturating_sub(r)),
            report: PruneReport::default(),
        }
    }

    /// Deletes one chunk. Returns whether the pass is over.
    ///
    /// Log entries go by when they were stored: every id up to the mark of the last hour
    /// that ended before the cutoff (a range of row ids, oldest first).
    fn step(&mut self, conn: &mut Connection) -> rusqlite::Result<bool> {
        let (cutoff, sql) = match self.phase {
            0 => (
                match self.log_cutoff_ns {
                    Some(ns) => conn.query_row(
                        "SELECT max(last_id) FROM entry_marks WHERE hour < ?1",
                        [ns.div_euclid(NS_PER_HOUR)],
                        |row| row.get::<_, Option<i64>>(0),
                    )?,
                    None => None,
                },
                "DELETE FROM entries WHERE id IN
                   (SELECT id FROM entries WHERE id <= ?1 ORDER BY id LIMIT ?2)
                 RETURNING kind",
            ),
            1 => (
                self.task_cutoff_ns.map(|ns| ns / 1_000_000),
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE time_ms < ?1 LIMIT ?2)
                 RETURNING NULL",
            ),
            2 => (
                self.task_cutoff_ns,
                "DELETE FROM invoices WHERE id IN
                   (SELECT id FROM invoices WHERE time_ns < ?1 LIMIT ?2)
                 RETURNING NULL",
            ),
            3 => (
                self.task_cutoff_ns,
                "DELETE FROM container_events WHERE id IN
                   (SELECT id FROM container_events WHERE time_ns < ?1 LIMIT ?2)
                 RETURNING NULL",
            ),
            _ => return Ok(true),
        };
        let Some(cutoff) = cutoff else {
            self.phase += 1;
            return Ok(false);
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0_u64;
        let mut counts = [0_i64; Kind::ALL.len()];
        {
            let mut delete = tx.prepare_cached(sql)?;
            let mut rows = delete.query((cutoff, PRUNE_CHUNK))?;
            while let Some(row) = rows.next()? {
                deleted += 1;
                if self.phase == 0 {
                    let kind: String = row.get(0)?;
                    if let Some(kind) = Kind::parse(&kind) {
                        counts[kind as usize] += 1;
                    }
                }
            }
        }
        add_counts(&tx, &counts, -1)?;
        tx.commit()?;
        match self.phase {
            0 => self.report.entries += deleted,
            1 => self.report.tasks += deleted,
            2 => self.report.invoices += deleted,
            _ => self.report.container_events += deleted,
        }
        if deleted < PRUNE_CHUNK as u64 {
            if let (0, Some(ns)) = (self.phase, self.log_cutoff_ns) {
                // Their entries are gone.
                conn.execute(
                    "DELETE FROM entry_marks WHERE hour < ?1",
                    [ns.div_euclid(NS_PER_HOUR)],
                )?;
            }
            self.phase += 1;
        }
        Ok(false)
    }
}
