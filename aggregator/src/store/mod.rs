//! The aggregator's SQLite store: the only module that names rusqlite.
//!
//! One writer thread owns the write connection and commits each ingest batch in one
//! transaction; the duplicate check (`(window, node)` primary key), the window,
//! rate and new-node checks ([`crate::gate::Gate`]) run there, so the verdict of a
//! report and its rows are decided together. Reads use their own connection, off the
//! async runtime (`spawn_blocking`).

mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;
use truebit_protocol::report::Report;

use crate::gate::{Gate, Limits, Reason};

pub use writer::Dim;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create or protect {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("the database has schema version {found}, newer than this aggregator's {known}: upgrade the aggregator")]
    NewerSchema { found: i64, known: i64 },
    #[error("the store's writer thread has stopped")]
    Stopped,
    #[error("a store task panicked")]
    Panicked,
}

/// What statistics are computed from: figures of the nodes table and the hourly
/// rollups of the 24-hour period. Node ids are local integers, never the node ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsInput {
    pub active_nodes: u64,
    pub nodes_30d: u64,
    /// Nodes seen in the period: (first window, continent label or `None`).
    pub period_nodes: Vec<(i64, u64, Option<String>)>,
    /// (hour, node, received, completed, failed), one row per node and hour.
    pub node_hours: Vec<(u64, i64, u64, u64, u64)>,
    /// (dim, label, node, count) summed over the period.
    pub cells: Vec<(u8, String, i64, u64)>,
}

/// Row counts, for tests and the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub nodes: u64,
    pub reports: u64,
    pub task_items: u64,
    pub invoice_items: u64,
}

pub type Verdicts = Vec<Result<(), Reason>>;

enum Command {
    Ingest {
        reports: Arc<Vec<Report>>,
        now: u64,
        reply: oneshot::Sender<Result<Verdicts, StoreError>>,
    },
    SaveStats {
        window: u64,
        wire: Vec<u8>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Retention {
        cutoff_window: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// A cheap handle (`Clone`) to the store.
#[derive(Clone, Debug)]
pub struct Store {
    tx: mpsc::SyncSender<Command>,
    read: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating it if needed) the database at `path` and starts the writer.
    pub fn open(path: &Path, limits: Limits) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // Pseudonymous node data: owner only. Set before WAL mode creates the -wal and
        // -shm files, which SQLite gives the database file's mode.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::Folder {
                    path: path.display().to_string(),
                    source,
                },
            )?;
        }
        schema::configure(&conn)?;
        schema::migrate(&conn)?;
        let mut writer = writer::Writer::new(conn, Gate::new(limits))?;
        let read = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        read.busy_timeout(std::time::Duration::from_secs(5))?;
        let (tx, rx) = mpsc::sync_channel::<Command>(16);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Ok(command) = rx.recv() {
                    match command {
                        Command::Ingest {
                            reports,
                            now,
                            reply,
                        } => {
                            let _ = reply.send(writer.ingest(&reports, now));
                        }
                        Command::SaveStats {
                            window,
                            wire,
                            reply,
                        } => {
                            let _ = reply.send(writer.save_stats(window, &wire));
                        }
                        Command::Retention {
                            cutoff_window,
                            reply,
                        } => {
                            let _ = reply.send(writer.retention(cutoff_window));
                        }
                    }
                }
            })
            .map_err(|source| StoreError::Folder {
                path: "store-writer thread".into(),
                source,
            })?;
        Ok(Store {
            tx,
            read: Arc::new(Mutex::new(read)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        let command = make(reply);
        // The channel is bounded: a full writer queue must block a thread, not the runtime.
        tokio::task::spawn_blocking(move || tx.send(command))
            .await
            .map_err(|_| StoreError::Panicked)?
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Commits verified reports in one transaction, after the window, rate, new-node
    /// and duplicate checks (at time `now`, Unix seconds). One verdict per report.
    pub async fn ingest(
        &self,
        reports: Arc<Vec<Report>>,
        now: u64,
    ) -> Result<Verdicts, StoreError> {
        self.call(|reply| Command::Ingest {
            reports,
            now,
            reply,
        })
        .await
    }

    /// Keeps published statistics (the newest per window).
    pub async fn save_stats(&self, window: u64, wire: Vec<u8>) -> Result<(), StoreError> {
        self.call(|reply| Command::SaveStats {
            window,
            wire,
            reply,
        })
        .await
    }

    /// Deletes everything about windows before `cutoff_window`; returns the reports deleted.
    pub async fn retention(&self, cutoff_window: u64) -> Result<u64, StoreError> {
        self.call(|reply| Command::Retention {
            cutoff_window,
            reply,
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let read = Arc::clone(&self.read);
        tokio::task::spawn_blocking(move || {
            let conn = read.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }

    /// The inputs of the statistics for closed window `window`: active nodes (the last
    /// two windows), nodes in 30 days, and the rollups from `period_start_hour` on.
    pub async fn stats_input(
        &self,
        window: u64,
        period_start_hour: u64,
    ) -> Result<StatsInput, StoreError> {
        self.read(move |conn| stats_input(conn, window, period_start_hour))
            .await
    }

    /// Published statistics with `from <= window <= to`, oldest first, at most `limit`.
    pub async fn stats_history(
        &self,
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT wire FROM stats WHERE window >= ?1 AND window <= ?2 ORDER BY window LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![to_i64(from), to_i64(to), limit], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// The newest published statistics.
    pub async fn latest_stats(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT wire FROM stats ORDER BY window DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    /// Row counts.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        self.read(|conn| {
            let count = |table: &str| -> Result<u64, rusqlite::Error> {
                conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(from_i64)
            };
            Ok(Totals {
                nodes: count("nodes")?,
                reports: count("reports")?,
                task_items: count("task_items")?,
                invoice_items: count("invoice_items")?,
            })
        })
        .await
    }

    /// Sum of the window counts of every stored report (received, completed, failed).
    pub async fn count_sums(&self) -> Result<(u64, u64, u64), StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(received),0), COALESCE(SUM(completed),0), COALESCE(SUM(failed),0) FROM reports",
                [],
                |r| Ok((from_i64(r.get(0)?), from_i64(r.get(1)?), from_i64(r.get(2)?))),
            )
        })
        .await
    }

    /// Database size in bytes (main file and WAL).
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn stats_input(
    conn: &Connection,
    window: u64,
    period_start_hour: u64,
) -> Result<StatsInput, rusqlite::Error> {
    let count_since = |since: u64| -> Result<u64, rusqlite::Error> {
        conn.query_row(
            "SELECT COUNT(*) FROM nodes WHERE last_window >= ?1",
            [to_i64(since)],
            |r| r.get::<_, i64>(0),
        )
        .map(from_i64)
    };
    let window_secs = truebit_protocol::window::WINDOW_SECS;
    let active_nodes = count_since(window.saturating_sub(window_secs))?;
    let nodes_30d = count_since(window.saturating_sub(30 * 86_400 - window_secs))?;
    let mut stmt = conn.prepare_cached(
        "SELECT idx, first_window, continent FROM nodes WHERE last_window >= ?1 ORDER BY idx",
    )?;
    let period_nodes = stmt
        .query_map([to_i64(period_start_hour)], |r| {
            Ok((r.get(0)?, from_i64(r.get(1)?), r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT hour, node, received, completed, failed FROM node_hours WHERE hour >= ?1",
    )?;
    let node_hours = stmt
        .query_map([to_i64(period_start_hour)], |r| {
            Ok((
                from_i64(r.get(0)?),
                r.get(1)?,
                from_i64(r.get(2)?),
                from_i64(r.get(3)?),
                from_i64(r.get(4)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // Summed here, per (cell, node), while reading: a GROUP BY sorts all rows in
    // SQLite (slower), and keeping the rows would hold every node-hour in memory.
    let mut stmt =
        conn.prepare_cached("SELECT dim, label, node, count FROM cell_hours WHERE hour >= ?1")?;
    let mut labels: Vec<(u8, String)> = Vec::new();
    let mut sums: std::collections::HashMap<(usize, i64), u64> = std::collections::HashMap::new();
    let mut rows = stmt.query([to_i64(period_start_hour)])?;
    while let Some(row) = rows.next()? {
        let dim: u8 = row.get(0)?;
        let label = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        let cell = match labels.iter().position(|(d, l)| *d == dim && l == label) {
            Some(i) => i,
            None => {
                labels.push((dim, label.to_owned()));
                labels.len() - 1
            }
        };
        *sums.entry((cell, row.get(2)?)).or_default() += from_i64(row.get(3)?);
    }
    let mut cells: Vec<(u8, String, i64, u64)> = sums
        .into_iter()
        .map(|((cell, node), count)| (labels[cell].0, labels[cell].1.clone(), node, count))
        .collect();
    cells.sort_unstable();
    Ok(StatsInput {
        active_nodes,
        nodes_30d,
        period_nodes,
        node_hours,
        cells,
    })
}

/// SQLite integers are i64; windows and counts fit (windows end in year 9999).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
