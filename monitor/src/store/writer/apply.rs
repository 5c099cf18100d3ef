//! One transaction: the batches' entries, task changes, invoices, container events,
//! cursors and node status, committed together.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::entries::{Attribution, EntryRow, EntryRows, TaskRows};
use super::figures::{add_counts, mark_stored, max_id, TaskFigures};
use super::invoices::{insert_invoices, InvoiceRow};
use super::node::save_node;
use super::tasks::{apply_event, event_ms, EventTime, TaskDeltas};
use super::{Applied, SourceState, Writer};
use crate::model::{Event, Kind, Pos};
use crate::store::schema::FIGURES_OF_NEW_ROWS;
use crate::store::{now_ns, Batch};

impl Writer {
    /// Applies batches in one transaction. Returns the in-memory state as of the commit;
    /// on error nothing is committed and `self.state` is untouched.
    ///
    /// Entries are read first (events become task changes and invoices); then tasks are
    /// written, so that entries can be stored with their task's row id.
    pub(super) fn apply<'a>(&mut self, batches: &'a [Batch]) -> rusqlite::Result<Applied<'a>> {
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
                let words = state.words.of(&tx, entry)?;
                rows.push(EntryRow {
                    source_id: source.id,
                    time_ns,
                    logger_id,
                    words,
                    task_row: None,
                    entry,
                    execution_id: entry.execution_id.as_deref(),
                });
                counts[entry.kind as usize] += 1;
                if let Some(replaced) = entry.replaces {
                    rows.replace(source.id, replaced);
                }
                let newer = state.node.observe(entry, time_ns);
                if let Some(event) = &entry.event {
                    let at = EventTime {
                        ms: event_ms(entry, time_ns),
                        ns: entry.received_ns,
                    };
                    if let Event::ExecutionCompleted {
                        execution_id,
                        stderr: Some(stderr),
                        ..
                    } = event
                    {
                        rows.attribute(Attribution {
                            source_id: source.id,
                            entry: stderr.entry,
                            execution_id,
                        });
                    }
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
                    "INSERT OR IGNORE INTO container_events (container_id, container_name, time_ns, action, exit_code, inferred)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    event.container_id,
                    event.container_name,
                    event.time_ns,
                    event.action.as_str(),
                    event.exit_code,
                    event.inferred,
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
        // The invoices and line items this transaction inserts are those above the largest
        // ids now; their figures are added once, below (schema.rs, version 8). Those of the
        // new tasks are summed as the tasks are written.
        let mut last_ids = [None; FIGURES_OF_NEW_ROWS.len()];
        if !invoices.is_empty() {
            for ((table, _), last) in FIGURES_OF_NEW_ROWS.iter().zip(&mut last_ids) {
                *last = Some(max_id(&tx, table)?);
            }
        }
        let mut task_figures = TaskFigures::default();
        let task_rows = tasks.flush(&tx, &mut task_figures)?;
        task_figures.write(&tx)?;
        let mut rows_of = TaskRows {
            flushed: &task_rows,
            recent: &self.task_rows,
            probed: HashMap::new(),
        };
        insert_invoices(&tx, &invoices, &mut rows_of)?;
        let (removed_kinds, removed_entries) = rows.finish(&tx, &mut rows_of)?;
        for kind in removed_kinds {
            counts[kind as usize] -= 1;
        }
        for ((_, sql), last) in FIGURES_OF_NEW_ROWS.iter().zip(last_ids) {
            if let Some(last) = last {
                tx.prepare_cached(sql)?.execute([last])?;
            }
        }
        add_counts(&tx, &counts, 1)?;
        if counts.iter().any(|&n| n > 0) {
            mark_stored(&tx, now)?;
        }
        if state.node != self.state.node {
            save_node(&tx, &state.node)?;
        }
        tx.commit()?;
        Ok(Applied {
            state,
            task_rows,
            removed_entries,
        })
    }
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
