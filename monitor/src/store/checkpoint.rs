//! Background checkpoints: copying the write-ahead log into the database file runs on a
//! thread of its own, so that the writer spends its time on inserts.
//!
//! The writer turns SQLite's automatic checkpoints off and nudges this thread after each
//! commit. If the log still grows past [`WAL_MAX_BYTES`] (the checkpointer fell behind, or
//! a reader held an old snapshot), the writer checkpoints by itself, waiting if need be,
//! so that the log starts over from its beginning.
//!
//! A second thread frees the batches the writer has committed: dropping hundreds of
//! thousands of strings is work the writer need not wait for. It is not the checkpoint
//! thread, so that batches do not wait for a checkpoint to end (their memory is part of
//! an import's peak).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use super::{Batch, StoreError, BUSY_TIMEOUT};

/// Size of the write-ahead log above which the writer checkpoints by itself.
pub(crate) const WAL_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Committed batches waiting to be freed, at most; beyond, the writer frees them itself.
/// Each is a whole transaction's entries (up to 8,192 during an import, a few MiB of
/// long entries), so this bound is part of the import's peak memory (four, freed by the
/// checkpoint thread between checkpoints, took 1 GiB of long entries to 65.8 MiB under
/// load, over the 64 MiB bound; docs/PERFORMANCE.md, import memory).
const FREE_QUEUE: usize = 2;

pub(crate) struct Checkpointer {
    /// Wakes the checkpoint thread to look at `wanted`.
    wake: Option<SyncSender<()>>,
    frees: Option<SyncSender<Vec<Batch>>>,
    wanted: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    wal_path: PathBuf,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .and_then(|conn| conn.busy_timeout(BUSY_TIMEOUT).map(|()| conn))
            .map_err(|e| StoreError::at_open(path, e))?;
        let (wake, woken) = mpsc::sync_channel(1);
        let (frees, to_free) = mpsc::sync_channel::<Vec<Batch>>(FREE_QUEUE);
        let wanted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&wanted);
        let checkpoints = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &woken, &flag))
            .map_err(|source| StoreError::WriterThread { source })?;
        let freer = std::thread::Builder::new()
            .name("store-free".into())
            .spawn(move || to_free.iter().for_each(drop))
            .map_err(|source| StoreError::WriterThread { source })?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        Ok(Checkpointer {
            wake: Some(wake),
            frees: Some(frees),
            wanted,
            threads: vec![checkpoints, freer],
            wal_path: wal_path.into(),
        })
    }

    /// Asks for a checkpoint soon; requests coalesce while one runs.
    pub(crate) fn nudge(&self) {
        self.wanted.store(true, Ordering::SeqCst);
        if let Some(wake) = &self.wake {
            // A full queue means the thread is awake and sees the flag anyway.
            let _ = wake.try_send(());
        }
    }

    /// Frees committed batches on the freeing thread, or here if it is behind.
    pub(crate) fn free(&self, batches: Vec<Batch>) {
        if let Some(frees) = &self.frees {
            if let Err(TrySendError::Full(batches) | TrySendError::Disconnected(batches)) =
                frees.try_send(batches)
            {
                drop(batches);
            }
        }
    }

    /// Whether the log has grown so much that the writer should checkpoint by itself.
    pub(crate) fn wal_too_big(&self) -> bool {
        std::fs::metadata(&self.wal_path).is_ok_and(|m| m.len() > WAL_MAX_BYTES)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        self.frees = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, wanted: &AtomicBool) {
    while let Ok(()) = woken.recv() {
        if wanted.swap(false, Ordering::SeqCst) {
            if let Err(error) = checkpoint(conn, "PASSIVE") {
                tracing::debug!(%error, "background checkpoint failed; the next commit retries");
            }
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
