//! Background checkpoints: copying the write-ahead log into the database file runs on a
//! thread of its own, so that the writer spends its time on inserts.
//!
//! The writer turns SQLite's automatic checkpoints off and nudges this thread after each
//! commit. If the log still grows past [`WAL_MAX_BYTES`] (the checkpointer fell behind, or
//! a reader held an old snapshot), the writer checkpoints by itself, waiting if need be,
//! so that the log starts over from its beginning.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, BUSY_TIMEOUT};

/// Size of the write-ahead log above which the writer checkpoints by itself.
pub(crate) const WAL_MAX_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    wal_path: PathBuf,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .and_then(|conn| conn.busy_timeout(BUSY_TIMEOUT).map(|()| conn))
            .map_err(|e| StoreError::at_open(path, e))?;
        let (nudge, nudges) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &nudges))
            .map_err(|source| StoreError::WriterThread { source })?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
            wal_path: wal_path.into(),
        })
    }

    /// Asks for a checkpoint soon; nudges coalesce while one runs.
    pub(crate) fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }

    /// Whether the log has grown so much that the writer should checkpoint by itself.
    pub(crate) fn wal_too_big(&self) -> bool {
        std::fs::metadata(&self.wal_path).is_ok_and(|m| m.len() > WAL_MAX_BYTES)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, nudges: &Receiver<()>) {
    while nudges.recv().is_ok() {
        if let Err(error) = checkpoint(conn, "PASSIVE") {
            tracing::debug!(%error, "background checkpoint failed; the next commit retries");
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(mode)`. Returns whether it was blocked by another
/// checkpoint or by readers.
pub(crate) fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<bool> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|busy| busy != 0)
}
