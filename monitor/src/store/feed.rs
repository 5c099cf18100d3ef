//! The feed of committed changes: after each transaction that committed, the writer
//! publishes what it stored, once, as a small typed [`Change`] on a tokio `broadcast`
//! channel; it also publishes each change of its write health. Nothing is published
//! for a transaction that failed (it is retried, and published when it commits).
//!
//! Readers ([`crate::store::Store::subscribe`]) get every change from the moment they
//! subscribe. Sending never waits: a reader that falls more than [`FEED_CAPACITY`]
//! changes behind loses the oldest ones (`RecvError::Lagged`) and may read the rows
//! from the store; the writer's speed never depends on its readers. With nobody
//! subscribed the writer only notes the newest row ids.
//!
//! The values are small: new log entries and invoices as the row ids a transaction
//! added (read them with `entries_after` / `invoices_after`), the tasks it wrote with
//! their status, the container events it recorded for the first time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::broadcast;

use super::{lock, Batch, WriteHealth};
use crate::model::{ContainerEvent, TaskStatus};

/// Changes a reader may be behind before it loses the oldest.
pub const FEED_CAPACITY: usize = 1024;

/// One published change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// What one transaction stored; published after it committed.
    Committed(Arc<Commit>),
    /// Commits started failing (the writer keeps the data and retries), or succeed again.
    WriteHealth(WriteHealth),
}

/// What one committed transaction stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// The log entries it added, in commit order.
    pub entries: NewRows,
    /// The invoices it added.
    pub invoices: NewRows,
    /// The tasks it created or changed, with their status after it.
    pub tasks: Vec<TaskChange>,
    /// The container state changes it recorded (an event recorded before, as a replay
    /// from Docker brings, is not repeated).
    pub container_events: Vec<ContainerEvent>,
    /// Log entries stored before that it deleted: a longer version of each (the node
    /// went on printing it after a pause) is among `entries`.
    pub removed_entries: Vec<i64>,
}

/// Rows a transaction added to a table: ids `after + 1 ..= last` (none when equal).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewRows {
    pub after: i64,
    pub last: i64,
}

impl NewRows {
    pub fn count(&self) -> u64 {
        u64::try_from(self.last - self.after).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

/// A task a transaction wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskChange {
    pub execution_id: String,
    pub status: TaskStatus,
}

/// The publishing side, shared by the store's handles (subscribe) and its writer thread
/// (publish).
pub(crate) struct Feed {
    sender: broadcast::Sender<Change>,
    /// The largest row ids of entries, invoices and container events as of the last
    /// commit: the next commit's new rows are above them.
    marks: Mutex<Marks>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    entries: i64,
    invoices: i64,
    container_events: i64,
}

impl Feed {
    /// A feed whose first commit's new rows are those above the database's rows now.
    pub(crate) fn new(conn: &Connection) -> rusqlite::Result<Feed> {
        Ok(Feed {
            sender: broadcast::channel(FEED_CAPACITY).0,
            marks: Mutex::new(marks(conn)?),
        })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Publishes a change of the write health.
    pub(crate) fn health(&self, health: &WriteHealth) {
        let _ = self.sender.send(Change::WriteHealth(health.clone()));
    }

    /// Publishes what the transaction that just committed stored: `batches` as handed to
    /// it, `tasks` the row ids of the tasks it wrote. Called by the writer thread after a
    /// successful commit only. A failed read here is logged and the commit published
    /// without that part (the rows are stored; readers can find them).
    pub(crate) fn committed<'a>(
        &self,
        conn: &Connection,
        batches: &[Batch],
        tasks: impl Iterator<Item = (&'a str, i64)>,
        removed_entries: Vec<i64>,
    ) {
        let now = match marks(conn) {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "feed: cannot read the newest row ids");
                return;
            }
        };
        let before = std::mem::replace(&mut *lock(&self.marks), now).below(now);
        if self.sender.receiver_count() == 0 {
            return;
        }
        let mut commit = Commit {
            entries: NewRows {
                after: before.entries,
                last: now.entries,
            },
            invoices: NewRows {
                after: before.invoices,
                last: now.invoices,
            },
            removed_entries,
            ..Commit::default()
        };
        let details = || -> rusqlite::Result<()> {
            let mut status = conn.prepare_cached("SELECT status FROM tasks WHERE id = ?1")?;
            for (execution_id, row) in tasks {
                let text: Option<String> = status.query_row([row], |r| r.get(0)).optional()?;
                if let Some(status) = text.as_deref().and_then(TaskStatus::parse) {
                    commit.tasks.push(TaskChange {
                        execution_id: execution_id.to_owned(),
                        status,
                    });
                }
            }
            let mut id_of = conn.prepare_cached(
                "SELECT id FROM container_events WHERE container_id = ?1 AND time_ns = ?2 AND action = ?3",
            )?;
            let mut seen: HashSet<(&str, i64, &str)> = HashSet::new();
            for event in batches.iter().flat_map(|b| &b.container_events) {
                let key = (
                    event.container_id.as_str(),
                    event.time_ns,
                    event.action.as_str(),
                );
                if !seen.insert(key) {
                    continue;
                }
                let id: Option<i64> = id_of.query_row(key, |r| r.get(0)).optional()?;
                if id.is_some_and(|id| id > before.container_events) {
                    commit.container_events.push(event.clone());
                }
            }
            Ok(())
        };
        if let Err(error) = details() {
            tracing::warn!(%error, "feed: cannot read the committed tasks and container events");
        }
        let _ = self.sender.send(Change::Committed(Arc::new(commit)));
    }
}

impl Marks {
    /// These marks as the start of the rows up to `now`. A table's largest id only goes
    /// down when it was emptied (everything pruned): its new rows then start at 1.
    fn below(self, now: Marks) -> Marks {
        let start = |before: i64, now: i64| if now < before { 0 } else { before };
        Marks {
            entries: start(self.entries, now.entries),
            invoices: start(self.invoices, now.invoices),
            container_events: start(self.container_events, now.container_events),
        }
    }
}

fn marks(conn: &Connection) -> rusqlite::Result<Marks> {
    let max = |table: &str| -> rusqlite::Result<i64> {
        conn.prepare_cached(&format!("SELECT coalesce(max(id), 0) FROM {table}"))?
            .query_row([], |r| r.get(0))
    };
    Ok(Marks {
        entries: max("entries")?,
        invoices: max("invoices")?,
        container_events: max("container_events")?,
    })
}
