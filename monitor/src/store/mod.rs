//! SQLite store: the only module that names rusqlite. Callers see [`Store`] and plain
//! Rust types, never SQL.
//!
//! - One writer thread owns the write connection. Producers [`Store::submit`] batches into
//!   a bounded queue (backpressure); the writer merges queued batches into one transaction
//!   (up to `batch_max_entries`) and commits each source's cursor with the entries it
//!   covers. A failed commit (disk full, database locked) is logged once, reported by
//!   [`Store::write_health`] and retried with capped backoff until it succeeds: the
//!   batches stay in memory and the full queue makes producers wait, so nothing is lost.
//! - Inserts are built for bulk import: entries go in multi-row statements; the task
//!   events of a transaction are merged into one write per task (same outcome as applying
//!   them one by one); entries link to their task by row id rather than through an index
//!   on random execution ids; the write-ahead log is checkpointed, and committed batches
//!   are freed, on a thread of its own (`checkpoint.rs`).
//! - Reads run on a small pool of read-only connections (WAL: readers never wait for the
//!   writer). The methods block; async code runs them through [`Store::call`], on
//!   tokio's blocking pool.
//! - Schema changes are numbered migrations (`schema.rs`), applied at open.
//! - Old log entries are pruned in small chunks between ingest transactions, at open
//!   and every few minutes.

pub mod alerts;
pub mod auth;
mod checkpoint;
mod containers;
mod error;
pub(crate) mod federation;
pub mod feed;
pub mod query;
mod read;
mod schema;
pub mod settings;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags};

pub use error::StoreError;
pub use feed::{Change, Commit, NewRows, TaskChange};
pub use read::{
    AppliedMigration, NodeStatus, StoredEntry, StoredInvoice, StoredLineItem, Summary, Task,
};
pub use schema::SCHEMA_VERSION;

use crate::model::{ContainerEvent, Entry, Pos, UnixNanos};
use read::ReadPool;
use writer::{Command, Writer};

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database lives and how the store behaves.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The database file. Its directory must exist; the file is created if missing.
    pub path: PathBuf,
    /// Log entries older than this are pruned. `None` keeps them forever.
    pub log_retention_days: Option<u32>,
    /// Tasks, invoices and container events older than this are pruned. `None` (the
    /// default) keeps them forever.
    pub task_retention_days: Option<u32>,
    /// Commands waiting for the writer; when full, `submit` waits. Kept short: with
    /// batches of at most [`crate::ingest::BATCH_MAX_BYTES`] of text, a writer that cannot
    /// keep up (a starved CPU, a full disk) holds a few MiB back, not a growing pile; the
    /// writer merges whatever is queued into one transaction, so a short queue costs no
    /// throughput.
    pub queue_capacity: usize,
    /// The writer merges queued batches into one transaction up to this many entries.
    pub batch_max_entries: usize,
    /// Read-only connections in the read pool.
    pub read_connections: usize,
    /// Page cache of the write connection, MiB. Pages not in it are read from the
    /// operating system's file cache (a `pread`, not a disk access, once warm), so a
    /// small cache costs the writer little and bounds the monitor's resident memory.
    pub writer_cache_mib: u32,
    /// Page cache of each read connection, MiB.
    pub reader_cache_mib: u32,
    /// Test knob: `PRAGMA max_page_count` for the writer, to simulate a full disk.
    #[doc(hidden)]
    pub max_page_count: Option<u64>,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            log_retention_days: Some(30),
            task_retention_days: None,
            queue_capacity: 4,
            batch_max_entries: 20_000,
            read_connections: 4,
            // Writer 8 + 4 readers x 2: at most 16 MiB of SQLite page cache, so that a
            // long-running monitor stays well under 64 MiB resident (docs/PERFORMANCE.md).
            writer_cache_mib: 8,
            reader_cache_mib: 2,
            max_page_count: None,
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        let invalid = |detail: &str| {
            Err(StoreError::InvalidConfig {
                detail: detail.to_owned(),
            })
        };
        if self.queue_capacity == 0 {
            return invalid("queue_capacity must be at least 1");
        }
        if self.batch_max_entries == 0 {
            return invalid("batch_max_entries must be at least 1");
        }
        if self.read_connections == 0 {
            return invalid("read_connections must be at least 1");
        }
        Ok(())
    }
}

/// Everything one source produced since its previous batch. Applied in one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Stable name of the source (for example `docker:runner-node` or a file path).
    pub source: String,
    /// Entries in source order. Entries at or before the source's committed cursor are
    /// ignored, so re-reading lines is harmless.
    pub entries: Vec<Entry>,
    /// Where the source stands after these entries; committed with them.
    pub cursor: Option<Cursor>,
    /// Stored once per `(container_id, time_ns, action)`.
    pub container_events: Vec<ContainerEvent>,
}

impl Batch {
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }
}

/// Where a source resumes: the position of its last committed line and the parser's
/// opaque state (JSON) at that point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub pos: Pos,
    pub parser_state: String,
}

/// What the writer is going through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteHealth {
    Ok,
    /// Commits fail (disk full, database locked, ...); the writer keeps the data and retries.
    Failing {
        error: String,
        since: SystemTime,
    },
}

impl WriteHealth {
    pub fn is_ok(&self) -> bool {
        matches!(self, WriteHealth::Ok)
    }
}

/// What a pruning pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub entries: u64,
    pub tasks: u64,
    pub invoices: u64,
    pub container_events: u64,
}

/// Handle to the store. Cheap to clone; the writer stops when [`Store::close`] is called
/// or the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.shared.path)
            .finish_non_exhaustive()
    }
}

/// State shared between the handles and the writer thread.
pub(crate) struct Shared {
    pub path: PathBuf,
    pub health: Mutex<WriteHealth>,
    /// Set by `close`: the writer makes one last attempt at a failing commit, then gives up.
    pub closing: AtomicBool,
    /// A requested `max_page_count` (0: none pending), applied before the next commit.
    pub page_limit: AtomicU64,
    /// The retention in effect (configuration, or what the operator stored).
    pub retention: Mutex<settings::Retention>,
    /// Set when the retention changed: the writer starts a pruning pass.
    pub prune_soon: AtomicBool,
    /// What the writer committed, for whoever subscribed.
    pub feed: feed::Feed,
    /// The kind index's condition and the kinds it holds (schema version 16).
    pub kind_index: schema::KindIndex,
}

struct Inner {
    shared: Arc<Shared>,
    sender: Mutex<Option<SyncSender<Command>>>,
    writer: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
    writer_thread: Thread,
    readers: ReadPool,
}

/// Makes the database file readable and writable by its owner only (0600): it holds the
/// password hash, API key hashes, the federation identity and alert channel secrets.
/// SQLite gives its `-wal` and `-shm` files the same mode. A file it cannot change (not
/// its owner, a read-only mount) gets a warning, not an error.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {
                tracing::info!(db.path = %path.display(), from = format!("{mode:o}"), "database file made private (mode 600): it holds secrets")
            }
            Err(error) => {
                tracing::warn!(db.path = %path.display(), %error, "cannot make the database file private (mode 600); other users of this machine may read it")
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the database, applies pending migrations and starts the writer.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let path = config.path.clone();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::MissingDirectory { path });
        }

        let mut conn = open_writer_connection(&path, config.writer_cache_mib)?;
        schema::migrate(&mut conn, &path)?;
        make_private(&path);
        if let Some(pages) = config.max_page_count {
            set_page_limit(&conn, pages).map_err(|e| StoreError::at_open(&path, e))?;
        }
        let readers = ReadPool::open(&path, config.read_connections, config.reader_cache_mib)?;
        let retention = match settings::load(&conn).map_err(|e| StoreError::at_open(&path, e))? {
            Some((log_days, task_days)) => settings::Retention {
                log_days,
                task_days,
                source: settings::SettingSource::Database,
            },
            None => settings::Retention {
                log_days: config.log_retention_days,
                task_days: config.task_retention_days,
                source: settings::SettingSource::Config,
            },
        };

        let feed = feed::Feed::new(&conn).map_err(|e| StoreError::at_open(&path, e))?;
        let kind_index =
            schema::KindIndex::read(&conn).map_err(|e| StoreError::at_open(&path, e))?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            health: Mutex::new(WriteHealth::Ok),
            closing: AtomicBool::new(false),
            page_limit: AtomicU64::new(0),
            retention: Mutex::new(retention),
            prune_soon: AtomicBool::new(false),
            feed,
            kind_index,
        });
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity);
        let writer = Writer::new(conn, receiver, Arc::clone(&shared), &config)?;
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::WriterThread { source })?;
        tracing::info!(db.path = %path.display(), db.schema_version = SCHEMA_VERSION, "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                sender: Mutex::new(Some(sender)),
                writer_thread: handle.thread().clone(),
                writer: Mutex::new(Some(handle)),
                readers,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    pub(crate) fn kind_index(&self) -> &schema::KindIndex {
        &self.inner.shared.kind_index
    }

    /// Queues a batch for the writer; waits while the queue is full.
    pub fn submit(&self, batch: Batch) -> Result<(), StoreError> {
        self.send(Command::Batch(batch))
    }

    /// Queues a batch; while the queue is full, waits on the blocking pool, not on the
    /// async runtime.
    pub async fn submit_async(&self, batch: Batch) -> Result<(), StoreError> {
        let sender = self.sender()?;
        match sender.try_send(Command::Batch(batch)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
            Err(TrySendError::Full(command)) => {
                self.call(move |_| sender.send(command).map_err(|_| StoreError::Closed))
                    .await
            }
        }
    }

    /// Waits until everything submitted before this call is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::channel();
        self.send(Command::Flush(reply))?;
        done.recv().map_err(|_| StoreError::Closed)
    }

    /// Commits everything submitted so far, stops the writer and waits for it. Calling it
    /// again (from any handle) returns `Ok`. Reads keep working afterwards.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.shutdown()
    }

    /// The feed of what the writer commits from now on (see [`feed`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner.shared.feed.subscribe()
    }

    /// Whether the writer's commits currently succeed.
    pub fn write_health(&self) -> WriteHealth {
        lock(&self.inner.shared.health).clone()
    }

    /// Deletes what is older than the retention settings as of `now_ns`, in chunks, and
    /// waits for it. The writer also does this by itself every few minutes.
    pub fn prune_now(&self, now_ns: UnixNanos) -> Result<PruneReport, StoreError> {
        let (reply, done) = mpsc::channel();
        self.send(Command::Prune { now_ns, reply })?;
        done.recv().map_err(|_| StoreError::Closed)?
    }

    /// Test knob: changes the writer's `PRAGMA max_page_count` before its next commit.
    #[doc(hidden)]
    pub fn set_max_page_count(&self, pages: u64) {
        self.inner
            .shared
            .page_limit
            .store(pages.max(1), Ordering::SeqCst);
        self.inner.writer_thread.unpark();
    }

    fn sender(&self) -> Result<SyncSender<Command>, StoreError> {
        lock(&self.inner.sender).clone().ok_or(StoreError::Closed)
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.sender()?.send(command).map_err(|_| StoreError::Closed)
    }

    /// Wakes the writer (it may wait minutes for its next pruning pass) with an empty
    /// job; a full queue means it is awake anyway.
    fn wake_writer(&self) -> Result<(), StoreError> {
        let _ = self.sender()?.try_send(Command::Exec(Box::new(|_| {})));
        Ok(())
    }

    /// The one way to run a store call from async code: `call` runs on tokio's blocking
    /// pool (never on the runtime's workers), inside the caller's tracing span, and a
    /// panicking call comes back as [`StoreError::Blocking`].
    pub async fn call<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| call(&store)))
            .await
            .map_err(|e| StoreError::Blocking {
                detail: e.to_string(),
            })?
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), StoreError> {
        let mut writer = lock(&self.writer);
        let Some(handle) = writer.take() else {
            return Ok(());
        };
        self.shared.closing.store(true, Ordering::SeqCst);
        self.writer_thread.unpark();
        if let Some(sender) = lock(&self.sender).take() {
            // Fails only if the writer already gave up; the join below reports why.
            let _ = sender.send(Command::Close);
        }
        let result = handle.join().unwrap_or_else(|_| {
            Err(StoreError::Uncommitted {
                batches: 0,
                detail: "the writer thread panicked".into(),
            })
        });
        tracing::info!(db.path = %self.shared.path.display(), ok = result.is_ok(), "store closed");
        result
    }
}

impl Drop for Inner {
    /// The last handle is gone: stop the writer (if `close` did not), close the readers,
    /// then let one read-write connection be the last to close. SQLite's last connection
    /// checkpoints the write-ahead log into the database and removes `-wal` and `-shm`
    /// (read-only connections cannot), so a stopped monitor leaves one whole file.
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "store dropped without a clean close");
        }
        self.readers.close();
        if let Err(error) = close_last(&self.shared.path) {
            tracing::warn!(db.path = %self.shared.path.display(), %error, "cannot checkpoint the write-ahead log at close; the database is whole, its -wal file stays");
        }
    }
}

/// Opens a read-write connection, checkpoints and closes it; when no other connection is
/// open (in this process or another), closing it removes the `-wal` and `-shm` files.
fn close_last(path: &Path) -> rusqlite::Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Opens the log (without waiting for anyone: when another process has the database
    // open, it is that process's last connection that removes the files).
    checkpoint::checkpoint(&conn, "PASSIVE")?;
    conn.close().map_err(|(_, error)| error)
}

/// Page size of a new database, bytes. Against SQLite's 4,096: a quarter of the page
/// writes, write-ahead log frames and checkpoint copies for the same rows, which an
/// import's system time is mostly made of (docs/PERFORMANCE.md, page size). The caches
/// are sized in bytes, so memory does not change.
pub(crate) const PAGE_SIZE: u32 = 16 * 1024;

fn open_writer_connection(path: &Path, cache_mib: u32) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| StoreError::at_open(path, e))?;
    // SQLite opens a file it may not write read-only, and every commit would fail: say so
    // now (the directory's case fails below, when the write-ahead log cannot be made).
    if conn
        .is_readonly(rusqlite::DatabaseName::Main)
        .map_err(|e| StoreError::at_open(path, e))?
    {
        return Err(StoreError::ReadOnly {
            path: path.to_owned(),
        });
    }
    let setup = || -> rusqlite::Result<String> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Only a new database takes it, and only before it is in WAL mode; an existing
        // one keeps the page size it was made with.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // Reading the journal mode reads the header: garbage fails here with NOTADB.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        bound_memory(&conn, cache_mib)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(mode)
    };
    let mode = setup().map_err(|e| StoreError::at_open(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(db.path = %path.display(), journal_mode = %mode, "database is not in WAL mode; reads may wait for writes");
    }
    Ok(conn)
}

/// Bounds what a connection keeps in memory: its page cache (negative: KiB), and no
/// memory-mapped I/O (mapped database pages would count as resident memory on top).
pub(crate) fn bound_memory(conn: &Connection, cache_mib: u32) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -i64::from(cache_mib) * 1024)?;
    conn.pragma_update(None, "mmap_size", 0)
}

fn set_page_limit(conn: &Connection, pages: u64) -> rusqlite::Result<()> {
    let pages = i64::try_from(pages).unwrap_or(i64::MAX);
    conn.pragma_update(None, "max_page_count", pages)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) use truebit_clock::now_ns;

impl Store {
    /// Runs `write` on the writer thread in an immediate transaction, committed when it
    /// returns `Ok`; for the store's own submodules (auth, federation…), so that every
    /// write still goes through the one writer connection.
    pub(crate) fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = std::sync::mpsc::channel();
        let path = self.path().to_owned();
        self.send(writer::Command::Exec(Box::new(move |conn| {
            let out = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|source| StoreError::query(&path, source))
                .and_then(|tx| {
                    let value = write(&tx)?;
                    tx.commit()
                        .map_err(|source| StoreError::query(&path, source))?;
                    Ok(value)
                });
            let _ = reply.send(out);
        })))?;
        result.recv().map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    /// A new database and one another user could read are both left readable by their
    /// owner only.
    #[cfg(unix)]
    #[test]
    fn the_database_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        let new = dir.path().join("new.db");
        let store = super::Store::open(super::StoreConfig::new(new.clone())).expect("open");
        store.close().expect("close");
        assert_eq!(mode(&new), 0o600);
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").expect("empty file");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let store = super::Store::open(super::StoreConfig::new(old.clone())).expect("open");
        store.close().expect("close");
        assert_eq!(mode(&old), 0o600);
    }

    /// A new database (no file, or an empty one) gets `PAGE_SIZE` pages; one made with
    /// SQLite's default keeps its 4 KiB pages and opens as before.
    #[test]
    fn new_databases_get_the_larger_page_and_old_ones_keep_theirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let page_size = |p: &std::path::Path| -> (i64, String) {
            let conn = rusqlite::Connection::open(p).expect("open");
            let size = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .expect("page_size");
            let check = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("integrity_check");
            (size, check)
        };
        let new = dir.path().join("new.db");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").expect("empty file");
        for path in [&new, &empty] {
            let store = super::Store::open(super::StoreConfig::new(path.clone())).expect("open");
            store.close().expect("close");
            assert_eq!(page_size(path), (16_384, "ok".to_owned()), "{path:?}");
        }
        let old = dir.path().join("old.db");
        let conn = rusqlite::Connection::open(&old).expect("create");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute("CREATE TABLE before (x)", []).expect("table");
        drop(conn);
        assert_eq!(page_size(&old).0, 4_096);
        let store = super::Store::open(super::StoreConfig::new(old.clone())).expect("open old");
        assert_eq!(store.summary().expect("summary").entries, 0);
        store.close().expect("close");
        assert_eq!(page_size(&old), (4_096, "ok".to_owned()));
    }

    /// The bundled SQLite is built with the options of `.cargo/config.toml`: without
    /// memory statistics (a global mutex on every allocation of the writer) and without
    /// the shared-cache mode.
    #[test]
    fn bundled_sqlite_is_built_without_memory_statistics_or_shared_cache() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let mut statement = conn.prepare("PRAGMA compile_options").expect("prepare");
        let options = statement
            .query_map([], |row| row.get::<_, String>(0))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "OMIT_SHARED_CACHE"),
            "{options:?}"
        );
    }
}
