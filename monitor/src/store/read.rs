//! Reads: a small pool of read-only connections and the queries behind `Store`'s read
//! methods. In WAL mode a reader sees the last committed state and never waits for the
//! writer.

use std::path::Path;
use std::sync::{Condvar, Mutex};

use rusqlite::types::FromSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde::Serialize;

use super::{lock, Cursor, Store, StoreError, BUSY_TIMEOUT};
use crate::model::{ContainerAction, ContainerEvent, Kind, Level, Pos, TaskStatus, UnixNanos};

pub(crate) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ReadPool {
    pub(crate) fn open(path: &Path, size: usize, cache_mib: u32) -> Result<ReadPool, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            let conn = Connection::open_with_flags(path, flags)
                .and_then(|conn| {
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    super::bound_memory(&conn, cache_mib)?;
                    conn.set_prepared_statement_cache_capacity(32);
                    Ok(conn)
                })
                .map_err(|e| StoreError::at_open(path, e))?;
            idle.push(conn);
        }
        Ok(ReadPool {
            idle: Mutex::new(idle),
            returned: Condvar::new(),
        })
    }

    /// Runs `read` on an idle connection, waiting for one if all are busy.
    fn with<T>(
        &self,
        path: &Path,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let lease = Lease {
            pool: self,
            conn: Some(self.take()),
        };
        let conn = lease
            .conn
            .as_ref()
            .expect("a lease holds its connection until dropped");
        read(conn).map_err(|e| StoreError::query(path, e))
    }

    /// Closes the idle connections (all of them once no read runs).
    pub(crate) fn close(&self) {
        lock(&self.idle).clear();
    }

    fn take(&self) -> Connection {
        let mut idle = lock(&self.idle);
        loop {
            if let Some(conn) = idle.pop() {
                return conn;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Gives the connection back to the pool, also when the read panics.
struct Lease<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(&self.pool.idle).push(conn);
            self.pool.returned.notify_one();
        }
    }
}

/// Counts for the dashboard. Entry counts come from counters the writer maintains, so
/// this never scans the entries table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub entries: u64,
    pub raw_entries: u64,
    /// Every kind, in [`Kind::ALL`] order, 0 when none.
    pub entries_by_kind: Vec<(Kind, u64)>,
    /// Every status, in [`TaskStatus::ALL`] order, 0 when none.
    pub tasks_by_status: Vec<(TaskStatus, u64)>,
    pub invoices: u64,
    pub invoice_items: u64,
    pub container_events: u64,
    /// The database file plus its write-ahead log, on disk.
    pub db_size_bytes: u64,
}

impl Summary {
    pub fn entries_of(&self, kind: Kind) -> u64 {
        self.entries_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    pub fn tasks_in(&self, status: TaskStatus) -> u64 {
        self.tasks_by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// A task with every figure the store keeps. Times: `*_ms` from the node's clock (second
/// resolution), `*_ns` from Docker's receive time, both Unix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Task {
    pub execution_id: String,
    pub status: TaskStatus,
    pub task_id: Option<String>,
    pub chain_id: Option<String>,
    pub block_number: Option<u64>,
    pub block_hash: Option<String>,
    pub requester: Option<String>,
    pub reward: Option<String>,
    /// `timestamp` of the task_created message.
    pub created_ms: Option<i64>,
    pub received_ms: Option<i64>,
    pub received_ns: Option<i64>,
    pub downloaded_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub started_ns: Option<i64>,
    pub completed_ms: Option<i64>,
    pub completed_ns: Option<i64>,
    pub exit_code: Option<i64>,
    pub elapsed_ns: Option<u64>,
    pub elapsed_ms: Option<u64>,
    /// Gas used = metered steps.
    pub gas_used: Option<u64>,
    /// Gas limit of the task (task_created).
    pub gas_limit: Option<u64>,
    /// Gas limit the metering reported.
    pub metered_gas_limit: Option<u64>,
    pub memory_peak: Option<u64>,
    pub memory_limit: Option<u64>,
    pub metered_memory_limit: Option<u64>,
    pub call_limit: Option<u64>,
    pub call_peak: Option<u64>,
    pub frame_limit: Option<u64>,
    pub frame_peak: Option<u64>,
    pub execution_timeout_ms: Option<u64>,
    pub required_solutions: Option<u64>,
    pub total_solutions: Option<u64>,
    pub wasm_size: Option<u64>,
    pub wasm_hash: Option<String>,
    pub cached: Option<bool>,
    /// Why the task failed: the first line of its execution's stderr (failed tasks only;
    /// task data, hidden from read-only keys like input and output).
    pub error: Option<String>,
    /// Only filled by [`Store::task`].
    pub input: Option<String>,
    /// Only filled by [`Store::task`].
    pub output: Option<String>,
}

/// A log entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredEntry {
    pub id: i64,
    pub source: String,
    pub pos: Pos,
    /// Docker receive time, else the node's clock, else the previous entry's time.
    pub time_ns: UnixNanos,
    pub received_ns: Option<UnixNanos>,
    pub node_time: Option<i64>,
    pub level: Option<Level>,
    pub logger: Option<String>,
    pub version: Option<String>,
    pub kind: Kind,
    pub execution_id: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredInvoice {
    pub id: i64,
    pub invoice_id: Option<i64>,
    pub execution_id: Option<String>,
    pub task_id: Option<String>,
    pub task_created_ts: Option<i64>,
    pub step_gas_price: Option<String>,
    pub byte_gas_price: Option<String>,
    /// Time of the log entry that carried the invoice.
    pub time_ns: UnixNanos,
    pub node_time: Option<i64>,
    pub received_ns: Option<UnixNanos>,
    pub line_items: Vec<StoredLineItem>,
}

/// A line item: figures as printed, and parsed when they are integers (units as reported).
/// Serialized with the figures as numbers (`steps`, `memory`, as in the API's earnings) and
/// the printed text beside them (`steps_text`, `memory_text`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredLineItem {
    pub operation: String,
    pub account: Option<String>,
    #[serde(rename = "steps_text")]
    pub steps: Option<String>,
    #[serde(rename = "steps")]
    pub steps_value: Option<i64>,
    #[serde(rename = "memory_text")]
    pub memory: Option<String>,
    #[serde(rename = "memory")]
    pub memory_value: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub version: Option<String>,
    pub address: Option<String>,
    pub registered_ms: Option<i64>,
    pub registered_ns: Option<UnixNanos>,
    pub slots_used: Option<u32>,
    pub slots_total: Option<u32>,
    /// Newest Docker receive time seen.
    pub last_received_ns: Option<UnixNanos>,
    /// Newest node clock time seen (Unix seconds).
    pub last_node_time: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    pub applied_ns: UnixNanos,
}

impl Store {
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.inner.readers.with(self.path(), read)
    }

    /// Bytes on disk of the database file and its write-ahead log.
    pub fn db_size_bytes(&self) -> u64 {
        db_size_bytes(self.path())
    }

    /// Where `source` resumes, if it ever committed a batch with a cursor.
    pub fn cursor(&self, source: &str) -> Result<Option<Cursor>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT c.pos_major, c.pos_minor, c.parser_state
                 FROM source_cursors c JOIN sources s ON s.id = c.source_id
                 WHERE s.name = ?1",
            )?
            .query_row([source], |row| {
                Ok(Cursor {
                    pos: Pos::new(row.get(0)?, row.get(1)?),
                    parser_state: row.get(2)?,
                })
            })
            .optional()
        })
    }

    pub fn summary(&self) -> Result<Summary, StoreError> {
        let mut summary = self.read(|conn| {
            let mut by_kind = Vec::with_capacity(Kind::ALL.len());
            let mut count = conn.prepare_cached("SELECT n FROM entry_counts WHERE kind = ?1")?;
            for kind in Kind::ALL {
                let n: Option<i64> = count
                    .query_row([kind.as_str()], |row| row.get(0))
                    .optional()?;
                by_kind.push((kind, to_u64(n)));
            }
            let mut by_status: Vec<(TaskStatus, u64)> =
                TaskStatus::ALL.iter().map(|s| (*s, 0)).collect();
            let mut statuses =
                conn.prepare_cached("SELECT status, count(*) FROM tasks GROUP BY status")?;
            let mut rows = statuses.query([])?;
            while let Some(row) = rows.next()? {
                let status: String = row.get(0)?;
                let n: i64 = row.get(1)?;
                if let Some(slot) = by_status.iter_mut().find(|(s, _)| s.as_str() == status) {
                    slot.1 = to_u64(Some(n));
                }
            }
            let count_of = |sql: &str| -> rusqlite::Result<u64> {
                conn.prepare_cached(sql)?
                    .query_row([], |row| row.get::<_, i64>(0))
                    .map(|n| to_u64(Some(n)))
            };
            Ok(Summary {
                entries: by_kind.iter().map(|(_, n)| n).sum(),
                raw_entries: by_kind[Kind::Raw as usize].1,
                entries_by_kind: by_kind,
                tasks_by_status: by_status,
                invoices: count_of("SELECT count(*) FROM invoices")?,
                invoice_items: count_of("SELECT count(*) FROM invoice_items")?,
                container_events: count_of("SELECT count(*) FROM container_events")?,
                db_size_bytes: 0,
            })
        })?;
        summary.db_size_bytes = self.db_size_bytes();
        Ok(summary)
    }

    /// One task with its input and output.
    pub fn task(&self, execution_id: &str) -> Result<Option<Task>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, d.input, d.output
                 FROM tasks t LEFT JOIN task_data d ON d.task_id = t.id
                 WHERE t.execution_id = ?1"
            ))?
            .query_row([execution_id], |row| {
                let mut task = task_from_row(row, 0)?;
                task.input = row.get(TASK_COLUMN_COUNT)?;
                task.output = row.get(TASK_COLUMN_COUNT + 1)?;
                Ok(task)
            })
            .optional()
        })
    }

    /// The newest tasks (by received, else started, else completed time), without input
    /// and output.
    pub fn tasks(&self, limit: usize) -> Result<Vec<Task>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks t ORDER BY t.time_ms DESC, t.id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([to_limit(limit)], |row| task_from_row(row, 0))?;
            rows.collect()
        })
    }

    /// The newest invoices with their line items.
    pub fn invoices(&self, limit: usize) -> Result<Vec<StoredInvoice>, StoreError> {
        self.read(|conn| {
            let mut invoices: Vec<StoredInvoice> = conn
                .prepare_cached(&format!(
                    "SELECT {INVOICE_COLUMNS} FROM invoices i ORDER BY i.time_ns DESC, i.id DESC LIMIT ?1"
                ))?
                .query_map([to_limit(limit)], invoice_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            for invoice in &mut invoices {
                invoice.line_items = line_items(conn, invoice.id)?;
            }
            Ok(invoices)
        })
    }

    /// The newest log entries.
    pub fn entries(&self, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} {ENTRY_FROM} ORDER BY e.time_ns DESC, e.id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([to_limit(limit)], entry_from_row)?;
            rows.collect()
        })
    }

    /// Container events with `from_ns <= time_ns < to_ns`, oldest first.
    pub fn container_events(
        &self,
        from_ns: UnixNanos,
        to_ns: UnixNanos,
    ) -> Result<Vec<ContainerEvent>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT container_id, container_name, time_ns, action, exit_code, inferred
                 FROM container_events WHERE time_ns >= ?1 AND time_ns < ?2
                 ORDER BY time_ns, id",
            )?;
            let rows = stmt.query_map((from_ns, to_ns), container_event_row)?;
            rows.filter_map(Result::transpose).collect()
        })
    }

    /// The events of one container, oldest first.
    pub fn container_events_of(
        &self,
        container_id: &str,
    ) -> Result<Vec<ContainerEvent>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT container_id, container_name, time_ns, action, exit_code, inferred
                 FROM container_events WHERE container_id = ?1 ORDER BY time_ns, id",
            )?;
            let rows = stmt.query_map([container_id], container_event_row)?;
            rows.filter_map(Result::transpose).collect()
        })
    }

    pub fn node_status(&self) -> Result<NodeStatus, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT version, address, registered_ms, registered_ns, slots_used, slots_total,
                   last_received_ns, last_node_time
                 FROM node_status WHERE id = 1",
            )?
            .query_row([], |row| {
                Ok(NodeStatus {
                    version: row.get(0)?,
                    address: row.get(1)?,
                    registered_ms: row.get(2)?,
                    registered_ns: row.get(3)?,
                    slots_used: row
                        .get::<_, Option<i64>>(4)?
                        .and_then(|n| u32::try_from(n).ok()),
                    slots_total: row
                        .get::<_, Option<i64>>(5)?
                        .and_then(|n| u32::try_from(n).ok()),
                    last_received_ns: row.get(6)?,
                    last_node_time: row.get(7)?,
                })
            })
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    /// The schema version of the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|conn| conn.pragma_query_value(None, "user_version", |row| row.get(0)))
    }

    /// Every migration applied to this database, oldest first.
    pub fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, name, applied_ns FROM schema_migrations ORDER BY version",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(AppliedMigration {
                    version: row.get(0)?,
                    name: row.get(1)?,
                    applied_ns: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }
}

pub(super) const TASK_COLUMNS: &str =
    "t.execution_id, t.status, t.task_id, t.chain_id, t.block_number,
    t.block_hash, t.requester, t.reward, t.created_ms, t.received_ms, t.received_ns,
    t.downloaded_ms, t.started_ms, t.started_ns, t.completed_ms, t.completed_ns, t.exit_code,
    t.elapsed_ns, t.elapsed_ms, t.gas_used, t.gas_limit, t.metered_gas_limit, t.memory_peak,
    t.memory_limit, t.metered_memory_limit, t.call_limit, t.call_peak, t.frame_limit,
    t.frame_peak, t.execution_timeout_ms, t.required_solutions, t.total_solutions, t.wasm_size,
    t.wasm_hash, t.cached, t.error";
const TASK_COLUMN_COUNT: usize = 36;

/// Reads the columns of a row in order.
struct Columns<'r, 's> {
    row: &'r Row<'s>,
    next: usize,
}

impl Columns<'_, '_> {
    fn get<T: FromSql>(&mut self) -> rusqlite::Result<T> {
        self.next += 1;
        self.row.get(self.next - 1)
    }

    /// An integer column that holds an unsigned figure.
    fn unsigned(&mut self) -> rusqlite::Result<Option<u64>> {
        Ok(self
            .get::<Option<i64>>()?
            .and_then(|n| u64::try_from(n).ok()))
    }
}

/// A task from the columns of [`TASK_COLUMNS`], in that order, starting at column `first`.
pub(super) fn task_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Task> {
    let mut c = Columns { row, next: first };
    Ok(Task {
        execution_id: c.get()?,
        status: TaskStatus::parse(&c.get::<String>()?).unwrap_or(TaskStatus::Received),
        task_id: c.get()?,
        chain_id: c.get()?,
        block_number: c.unsigned()?,
        block_hash: c.get()?,
        requester: c.get()?,
        reward: c.get()?,
        created_ms: c.get()?,
        received_ms: c.get()?,
        received_ns: c.get()?,
        downloaded_ms: c.get()?,
        started_ms: c.get()?,
        started_ns: c.get()?,
        completed_ms: c.get()?,
        completed_ns: c.get()?,
        exit_code: c.get()?,
        elapsed_ns: c.unsigned()?,
        elapsed_ms: c.unsigned()?,
        gas_used: c.unsigned()?,
        gas_limit: c.unsigned()?,
        metered_gas_limit: c.unsigned()?,
        memory_peak: c.unsigned()?,
        memory_limit: c.unsigned()?,
        metered_memory_limit: c.unsigned()?,
        call_limit: c.unsigned()?,
        call_peak: c.unsigned()?,
        frame_limit: c.unsigned()?,
        frame_peak: c.unsigned()?,
        execution_timeout_ms: c.unsigned()?,
        required_solutions: c.unsigned()?,
        total_solutions: c.unsigned()?,
        wasm_size: c.unsigned()?,
        wasm_hash: c.get()?,
        cached: c.get()?,
        error: c.get()?,
        input: None,
        output: None,
    })
}

fn to_u64(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

pub(super) fn to_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn line_items(
    conn: &Connection,
    invoice_row: i64,
) -> rusqlite::Result<Vec<StoredLineItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT operation, account, steps, steps_value, memory, memory_value
         FROM invoice_items WHERE invoice_row = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([invoice_row], |row| {
        Ok(StoredLineItem {
            operation: row.get(0)?,
            account: row.get(1)?,
            steps: row.get(2)?,
            steps_value: row.get(3)?,
            memory: row.get(4)?,
            memory_value: row.get(5)?,
        })
    })?;
    rows.collect()
}

pub(super) const INVOICE_COLUMNS: &str =
    "i.id, i.invoice_id, i.execution_id, i.task_id, i.task_created_ts,
    i.step_gas_price, i.byte_gas_price, i.time_ns, i.node_time, i.received_ns";

pub(super) fn invoice_from_row(row: &Row<'_>) -> rusqlite::Result<StoredInvoice> {
    Ok(StoredInvoice {
        id: row.get(0)?,
        invoice_id: row.get(1)?,
        execution_id: row.get(2)?,
        task_id: row.get(3)?,
        task_created_ts: row.get(4)?,
        step_gas_price: row.get(5)?,
        byte_gas_price: row.get(6)?,
        time_ns: row.get(7)?,
        node_time: row.get(8)?,
        received_ns: row.get(9)?,
        line_items: Vec::new(),
    })
}

pub(super) const ENTRY_COLUMNS: &str =
    "e.id, s.name, e.pos_major, e.pos_minor, e.time_ns, e.received_ns,
    e.node_time, (SELECT word FROM words WHERE id = e.level_id), l.name,
    (SELECT word FROM words WHERE id = e.version_id),
    (SELECT word FROM words WHERE id = e.kind_id), e.execution_id, e.message";
pub(super) const ENTRY_FROM: &str = "FROM entries e
    JOIN sources s ON s.id = e.source_id
    LEFT JOIN loggers l ON l.id = e.logger_id";

pub(super) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        id: row.get(0)?,
        source: row.get(1)?,
        pos: Pos::new(row.get(2)?, row.get(3)?),
        time_ns: row.get(4)?,
        received_ns: row.get(5)?,
        node_time: row.get(6)?,
        level: row
            .get::<_, Option<String>>(7)?
            .map(|l| Level::from_word(&l)),
        logger: row.get(8)?,
        version: row.get(9)?,
        kind: Kind::parse(&row.get::<_, String>(10)?).unwrap_or(Kind::Raw),
        execution_id: row.get(11)?,
        message: row.get(12)?,
    })
}

fn db_size_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.as_os_str(), wal.as_os_str()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// A `container_events` row (`container_id, container_name, time_ns, action, exit_code,
/// inferred`); `None` for an action this build does not know (written by a newer one).
pub(crate) fn container_event_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Option<ContainerEvent>> {
    let Some(action) = ContainerAction::parse(&row.get::<_, String>(3)?) else {
        return Ok(None);
    };
    Ok(Some(ContainerEvent {
        container_id: row.get(0)?,
        container_name: row.get(1)?,
        time_ns: row.get(2)?,
        action,
        exit_code: row.get(4)?,
        inferred: row.get(5)?,
    }))
}
