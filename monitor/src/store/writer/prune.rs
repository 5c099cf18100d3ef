//! Retention: pruning passes, one table after the other, one chunk per transaction.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::figures::{add_counts, NS_PER_HOUR};
use super::Writer;
use crate::model::Kind;
use crate::store::{PruneReport, StoreError};

/// How often the writer starts a pruning pass (also once at open).
const PRUNE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Rows deleted per pruning transaction, so that pruning never holds up ingest for long.
const PRUNE_CHUNK: i64 = 5_000;
const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

impl Writer {
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

    pub(super) fn start_prune(&mut self, now_ns: i64) {
        self.next_prune = Instant::now() + PRUNE_INTERVAL;
        let (log, task) = self.retention_ns();
        if log.is_none() && task.is_none() {
            return;
        }
        self.prune = Some(PruneRun::new(now_ns, log, task));
    }

    /// One chunk of the running pruning pass.
    pub(super) fn prune_step(&mut self) {
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

    pub(super) fn prune_all(&mut self, now_ns: i64) -> Result<PruneReport, StoreError> {
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

/// A pruning pass: one table after the other, one chunk per transaction.
pub(super) struct PruneRun {
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
                 RETURNING kind_id",
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
        let mut kinds: HashMap<i64, Option<Kind>> = HashMap::new();
        {
            let mut delete = tx.prepare_cached(sql)?;
            let mut rows = delete.query((cutoff, PRUNE_CHUNK))?;
            while let Some(row) = rows.next()? {
                deleted += 1;
                if self.phase == 0 {
                    let id: i64 = row.get(0)?;
                    let kind = match kinds.get(&id) {
                        Some(kind) => *kind,
                        None => {
                            let word: Option<String> = tx
                                .prepare_cached("SELECT word FROM words WHERE id = ?1")?
                                .query_row([id], |row| row.get(0))
                                .optional()?;
                            let kind = word.as_deref().and_then(Kind::parse);
                            kinds.insert(id, kind);
                            kind
                        }
                    };
                    if let Some(kind) = kind {
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
