//! Entry rows: linked to their task's row, inserted many rows per statement.

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{OptionalExtension, Statement, Transaction};

use crate::model::{Entry, EntryRef, Kind, Level, Replaced};

/// Finds the task row an entry's execution id belongs to: written in this transaction,
/// written recently, or looked up (and remembered for the transaction).
pub(super) struct TaskRows<'t, 'a> {
    pub(super) flushed: &'t HashMap<&'a str, i64>,
    pub(super) recent: &'t HashMap<String, i64>,
    pub(super) probed: HashMap<&'a str, Option<i64>>,
}

impl<'a> TaskRows<'_, 'a> {
    pub(super) fn get(
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

/// The `words` ids of an entry's level, version and kind (schema version 11).
#[derive(Clone, Copy, Debug)]
pub(super) struct EntryWords {
    pub(super) level: Option<i64>,
    pub(super) version: Option<i64>,
    pub(super) kind: i64,
}

/// The ids of the `words` rows met so far: kinds and the node's levels by their index,
/// other words (versions, other levels) by their text, the last version apart (it rarely
/// changes from one entry to the next).
#[derive(Clone, Debug, Default)]
pub(super) struct Words {
    kinds: [Option<i64>; Kind::ALL.len()],
    levels: [Option<i64>; Level::WORDS.len()],
    last_version: Option<(String, i64)>,
    ids: HashMap<String, i64>,
}

impl Words {
    /// The ids of `entry`'s level, version and kind, added to `words` when new.
    pub(super) fn of(
        &mut self,
        tx: &Transaction<'_>,
        entry: &Entry,
    ) -> rusqlite::Result<EntryWords> {
        let kind = match self.kinds[entry.kind as usize] {
            Some(id) => id,
            None => {
                let id = self.id(tx, entry.kind.as_str())?;
                self.kinds[entry.kind as usize] = Some(id);
                id
            }
        };
        let level = match &entry.level {
            None => None,
            Some(Level::Other(word)) => Some(self.id(tx, word)?),
            Some(level) => {
                let slot = match level {
                    Level::Error => 0,
                    Level::Warn => 1,
                    Level::Info => 2,
                    _ => 3,
                };
                match self.levels[slot] {
                    Some(id) => Some(id),
                    None => {
                        let id = self.id(tx, level.as_str())?;
                        self.levels[slot] = Some(id);
                        Some(id)
                    }
                }
            }
        };
        let version = match entry.version.as_deref() {
            None => None,
            Some(version) => match &self.last_version {
                Some((last, id)) if last == version => Some(*id),
                _ => {
                    let id = self.id(tx, version)?;
                    self.last_version = Some((version.to_owned(), id));
                    Some(id)
                }
            },
        };
        Ok(EntryWords {
            level,
            version,
            kind,
        })
    }

    fn id(&mut self, tx: &Transaction<'_>, word: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.ids.get(word) {
            return Ok(*id);
        }
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO words (word) VALUES (?1)
                 ON CONFLICT (word) DO UPDATE SET word = excluded.word RETURNING id",
            )?
            .query_row([word], |row| row.get(0))?;
        self.ids.insert(word.to_owned(), id);
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
        "INSERT OR FAIL INTO entries (source_id, pos_major, pos_minor, time_ns, received_ns, node_time, level_id, logger_id, version_id, kind_id, execution_id, task_row, message) VALUES {}",
        vec![one; rows].join(", ")
    )
}

static INSERT_ONE: LazyLock<String> = LazyLock::new(|| insert_entries_sql(1));
static INSERT_MANY: LazyLock<String> = LazyLock::new(|| insert_entries_sql(ROWS_PER_INSERT));

pub(super) struct EntryRow<'a> {
    pub(super) source_id: i64,
    pub(super) time_ns: i64,
    pub(super) logger_id: Option<i64>,
    pub(super) words: EntryWords,
    pub(super) task_row: Option<i64>,
    pub(super) entry: &'a Entry,
    /// The entry's execution id: the one it names, or the one of the completion that
    /// took it (a stderr block).
    pub(super) execution_id: Option<&'a str>,
}

/// An entry emitted earlier that a completion took (its stderr block): it gets the
/// completion's execution id.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attribution<'a> {
    pub(super) source_id: i64,
    pub(super) entry: EntryRef,
    pub(super) execution_id: &'a str,
}

/// The entry rows of a transaction, inserted once its tasks are written.
#[derive(Default)]
pub(super) struct EntryRows<'a> {
    rows: Vec<EntryRow<'a>>,
    attributions: Vec<Attribution<'a>>,
    /// Versions of entries that longer ones among the rows replace: (source id, version).
    replaced: Vec<(i64, Replaced)>,
}

impl<'a> EntryRows<'a> {
    pub(super) fn push(&mut self, row: EntryRow<'a>) {
        self.rows.push(row);
    }

    pub(super) fn attribute(&mut self, attribution: Attribution<'a>) {
        self.attributions.push(attribution);
    }

    /// An entry among the rows replaces the version stored at `replaced` (model::Entry).
    pub(super) fn replace(&mut self, source_id: i64, replaced: Replaced) {
        self.replaced.push((source_id, replaced));
    }

    /// Inserts the rows, linked to their tasks, `ROWS_PER_INSERT` at a time; then gives
    /// the attributed entries stored by an earlier transaction their execution id (those
    /// of this transaction get it before they are inserted), and removes the versions
    /// that longer ones replace: one among this transaction's rows is not inserted, one
    /// stored earlier is deleted (the longer one is a new row with a larger id, which the
    /// feed announces). Returns the kinds of the versions removed (one already pruned is
    /// not there) and the row ids of those that were stored (the feed tells live views
    /// to drop them).
    pub(super) fn finish(
        &mut self,
        tx: &Transaction<'_>,
        tasks: &mut TaskRows<'_, 'a>,
    ) -> rusqlite::Result<(Vec<Kind>, Vec<i64>)> {
        // A replaced version among this transaction's rows is not inserted at all (no
        // row id is used and freed inside the range the feed announces).
        let mut deleted = Vec::new();
        if !self.replaced.is_empty() {
            let mut here: HashMap<(i64, EntryRef), Kind> = HashMap::new();
            for (source_id, r) in &self.replaced {
                here.insert((*source_id, r.entry), r.kind);
            }
            self.rows.retain(|row| {
                let at = EntryRef {
                    pos: row.entry.pos,
                    time_ns: row.time_ns,
                };
                match here.remove(&(row.source_id, at)) {
                    Some(kind) => {
                        deleted.push(kind);
                        false
                    }
                    None => true,
                }
            });
            self.replaced
                .retain(|(source_id, r)| here.contains_key(&(*source_id, r.entry)));
        }
        let mut earlier = Vec::new();
        if !self.attributions.is_empty() {
            let mut here: HashMap<(i64, EntryRef), usize> = HashMap::new();
            for (index, row) in self.rows.iter().enumerate() {
                if row.entry.execution_id.is_none() && row.entry.kind == Kind::ExecutionStderr {
                    let at = EntryRef {
                        pos: row.entry.pos,
                        time_ns: row.time_ns,
                    };
                    here.insert((row.source_id, at), index);
                }
            }
            for a in &self.attributions {
                match here.get(&(a.source_id, a.entry)) {
                    Some(&index) => self.rows[index].execution_id = Some(a.execution_id),
                    None => earlier.push(*a),
                }
            }
        }
        for row in &mut self.rows {
            if let Some(execution_id) = row.execution_id {
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
        for a in earlier {
            let task_row = tasks.get(tx, a.execution_id)?;
            // Found through the time index; an entry already pruned is simply not there.
            tx.prepare_cached(
                "UPDATE entries SET execution_id = ?1, task_row = ?2
                 WHERE time_ns = ?3 AND source_id = ?4 AND pos_major = ?5 AND pos_minor = ?6
                   AND execution_id IS NULL",
            )?
            .execute(rusqlite::params![
                a.execution_id,
                task_row,
                a.entry.time_ns,
                a.source_id,
                a.entry.pos.major,
                a.entry.pos.minor,
            ])?;
        }
        let mut removed_ids = Vec::new();
        for (source_id, r) in &self.replaced {
            let mut delete = tx.prepare_cached(
                "DELETE FROM entries
                 WHERE time_ns = ?1 AND source_id = ?2 AND pos_major = ?3 AND pos_minor = ?4
                 RETURNING id",
            )?;
            let ids = delete.query_map(
                rusqlite::params![
                    r.entry.time_ns,
                    source_id,
                    r.entry.pos.major,
                    r.entry.pos.minor,
                ],
                |row| row.get::<_, i64>(0),
            )?;
            for id in ids {
                removed_ids.push(id?);
                deleted.push(r.kind);
            }
        }
        Ok((deleted, removed_ids))
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
        insert.raw_bind_parameter(at + 7, row.words.level)?;
        insert.raw_bind_parameter(at + 8, row.logger_id)?;
        insert.raw_bind_parameter(at + 9, row.words.version)?;
        insert.raw_bind_parameter(at + 10, row.words.kind)?;
        insert.raw_bind_parameter(at + 11, row.execution_id)?;
        insert.raw_bind_parameter(at + 12, row.task_row)?;
        insert.raw_bind_parameter(at + 13, &e.message)?;
    }
    insert.raw_execute()?;
    Ok(())
}
