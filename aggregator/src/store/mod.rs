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
use truebit_protocol::identity::NodeId;
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

/// What statistics are computed from: the released figures (values with their noise)
/// and, for k-anonymity, the hourly rollups of the 24-hour period. Node ids are local
/// integers, never the node ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsInput {
    /// (hour, node, received, completed, failed), one row per node and hour (negative
    /// counts of strict nodes read as 0).
    pub node_hours: Vec<(u64, i64, u64, u64, u64)>,
    /// (period, figure, value): released figures of the period's hours and days.
    pub released: Vec<(u64, String, i64)>,
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
    SaveReleased {
        rows: Vec<(u64, String, i64)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What one UTC day's released figures are computed from (node ids are local integers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayInput {
    /// (dim, label, node, count) summed over the day.
    pub cells: Vec<(u8, String, i64, u64)>,
    /// Nodes that reported during the day: (node, continent, tasks received that day).
    pub nodes: Vec<(i64, Option<String>, i64)>,
    /// Distinct nodes that reported in the 30 days ending with the day.
    pub nodes_30d: Vec<i64>,
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
                        Command::SaveReleased { rows, reply } => {
                            let _ = reply.send(writer.save_released(&rows));
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

    /// Keeps released figures (period, figure, value with its noise); a figure already
    /// released for its period is never replaced.
    pub async fn save_released(&self, rows: Vec<(u64, String, i64)>) -> Result<(), StoreError> {
        self.call(|reply| Command::SaveReleased { rows, reply })
            .await
    }

    /// Released figures of the periods from `from` on.
    pub async fn released(&self, from: u64) -> Result<Vec<(u64, String, i64)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT period, figure, value FROM released WHERE period >= ?1 ORDER BY period, figure",
            )?;
            let rows = stmt.query_map([to_i64(from)], |r| {
                Ok((from_i64(r.get(0)?), r.get(1)?, r.get(2)?))
            })?;
            rows.collect()
        })
        .await
    }

    /// The rollups of one hour: (node, received, completed, failed); strict reports'
    /// counts may make them negative.
    pub async fn hour_rows(&self, hour: u64) -> Result<Vec<(i64, i64, i64, i64)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT node, received, completed, failed FROM node_hours WHERE hour = ?1 ORDER BY node",
            )?;
            let rows = stmt.query_map([to_i64(hour)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
        .await
    }

    /// The inputs of the figures of the UTC day starting at `day`.
    pub async fn day_input(&self, day: u64) -> Result<DayInput, StoreError> {
        self.read(move |conn| {
            let (from, to) = (to_i64(day), to_i64(day + 86_400));
            let mut stmt = conn.prepare_cached(
                "SELECT dim, label, node, SUM(count) FROM cell_hours
                 WHERE hour >= ?1 AND hour < ?2 GROUP BY dim, label, node ORDER BY dim, label, node",
            )?;
            let cells = stmt
                .query_map([from, to], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, from_i64(r.get(3)?)))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT h.node, n.continent, SUM(h.received) FROM node_hours h
                 JOIN nodes n ON n.idx = h.node
                 WHERE h.hour >= ?1 AND h.hour < ?2 GROUP BY h.node ORDER BY h.node",
            )?;
            let nodes = stmt
                .query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT node FROM node_hours WHERE hour >= ?1 AND hour < ?2 ORDER BY node",
            )?;
            let nodes_30d = stmt
                .query_map([to - 30 * 86_400, to], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(DayInput {
                cells,
                nodes,
                nodes_30d,
            })
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

    /// The inputs of the statistics: figures released for periods from `released_from`
    /// on, and the rollups from `period_start_hour` on.
    pub async fn stats_input(
        &self,
        released_from: u64,
        period_start_hour: u64,
    ) -> Result<StatsInput, StoreError> {
        self.read(move |conn| stats_input(conn, released_from, period_start_hour))
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

    /// The windows of `[from, to)` in which `node` reported, ascending, each with
    /// whether its report said the node was `up` (what an uptime proof certifies).
    pub async fn node_windows(
        &self,
        node: NodeId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, bool)>, StoreError> {
        self.read(move |conn| {
            let idx: Option<i64> = conn
                .prepare_cached("SELECT idx FROM nodes WHERE id = ?1")?
                .query_row([&node.as_bytes()[..]], |r| r.get(0))
                .optional()?;
            let Some(idx) = idx else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(
                "SELECT window, state = 'up' FROM reports
                 WHERE node = ?1 AND window >= ?2 AND window < ?3 ORDER BY window",
            )?;
            let rows = stmt.query_map(params![idx, to_i64(from), to_i64(to)], |r| {
                Ok((from_i64(r.get(0)?), r.get(1)?))
            })?;
            rows.collect()
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
    released_from: u64,
    period_start_hour: u64,
) -> Result<StatsInput, rusqlite::Error> {
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
    let mut stmt = conn.prepare_cached(
        "SELECT period, figure, value FROM released WHERE period >= ?1 ORDER BY period, figure",
    )?;
    let released = stmt
        .query_map([to_i64(released_from)], |r| {
            Ok((from_i64(r.get(0)?), r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StatsInput {
        node_hours,
        released,
    })
}

/// SQLite integers are i64; windows and counts fit (windows end in year 9999).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
