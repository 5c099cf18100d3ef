//! The HTTP API's reads: filtered, cursor-paginated lists, per-hour task figures, the
//! state before a range for uptime, figures for status and metrics, and the tail of new
//! rows for the live stream. Every list is ordered by an indexed `(time, id)` key, so a
//! deep page costs what the first one does.

use std::borrow::Cow;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, Row};

use super::read::{
    entry_from_row, invoice_from_row, line_items, task_from_row, to_limit, StoredEntry,
    StoredInvoice, Task, ENTRY_COLUMNS, ENTRY_FROM, INVOICE_COLUMNS, TASK_COLUMNS,
};
use super::{Store, StoreError};
use crate::model::{ContainerEvent, Kind, Level, TaskStatus, UnixNanos};

/// Where a page ends: the `(time, id)` of its last row. The next page holds the rows
/// strictly before it in `time DESC, id DESC` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageKey {
    pub time: i64,
    pub id: i64,
}

/// A page of rows, newest first, and the key to ask for the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub chain_id: Option<String>,
    /// `time_ms >= from_ms` (received, else started, else completed time).
    pub from_ms: Option<i64>,
    /// `time_ms < to_ms`.
    pub to_ms: Option<i64>,
}

/// Failed tasks that share a failure reason ([`Store::failure_reasons`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureReason {
    /// The reason; `None` for failures without one (no stderr attributed).
    pub reason: Option<String>,
    pub tasks: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub level: Option<Level>,
    pub kind: Option<Kind>,
    /// Case-insensitive (ASCII) substring of the message.
    pub text: Option<String>,
    /// Kinds whose message `text` does not look into (hidden from the caller).
    pub text_skips_kinds: Vec<Kind>,
    pub execution_id: Option<String>,
    pub from_ns: Option<UnixNanos>,
    pub to_ns: Option<UnixNanos>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub execution_id: Option<String>,
    pub from_ns: Option<UnixNanos>,
    pub to_ns: Option<UnixNanos>,
}

/// Task figures of one status in one UTC hour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HourStats {
    /// Hours since the epoch (`time_ms / 3_600_000`).
    pub hour: i64,
    pub status: Option<TaskStatus>,
    pub tasks: i64,
    /// Tasks whose module came from the cache, and tasks for which it is known.
    pub cached: i64,
    pub cache_known: i64,
    pub elapsed_n: i64,
    pub elapsed_ms_sum: i64,
    pub gas_n: i64,
    pub gas_sum: i64,
    /// Counts per execution-time bucket (`<100ms` … `>1m`).
    pub elapsed: [i64; 8],
    /// Counts per gas-used bucket (`<100K` … `>100M`).
    pub gas: [i64; 5],
}

const FIGURES: &str = "status, n, cached, cache_known, elapsed_n, elapsed_sum, gas_n, gas_sum,
    e0, e1, e2, e3, e4, e5, e6, e7, g0, g1, g2, g3, g4";

/// The [`FIGURES`] columns from column 1 on (`hour` is filled in by the caller).
fn figures_from_row(row: &Row<'_>) -> rusqlite::Result<HourStats> {
    let mut s = HourStats {
        hour: 0,
        status: TaskStatus::parse(&row.get::<_, String>(1)?),
        tasks: row.get(2)?,
        cached: row.get(3)?,
        cache_known: row.get(4)?,
        elapsed_n: row.get(5)?,
        elapsed_ms_sum: row.get(6)?,
        gas_n: row.get(7)?,
        gas_sum: row.get(8)?,
        ..HourStats::default()
    };
    for (i, slot) in s.elapsed.iter_mut().enumerate() {
        *slot = row.get(9 + i)?;
    }
    for (i, slot) in s.gas.iter_mut().enumerate() {
        *slot = row.get(17 + i)?;
    }
    Ok(s)
}

type SeriesKey = (i64, Option<&'static str>);

/// Sums figures rows into per-status totals and a per-step series.
struct StatsAcc {
    first: i64,
    step: i64,
    totals: Vec<HourStats>,
    /// `(step start, status name)` -> `(status, tasks)`.
    series: std::collections::BTreeMap<SeriesKey, (Option<TaskStatus>, i64)>,
}

impl StatsAcc {
    fn new(first: i64, step: i64) -> StatsAcc {
        StatsAcc {
            first,
            step,
            totals: Vec::new(),
            series: std::collections::BTreeMap::new(),
        }
    }

    fn add(&mut self, hour: i64, r: HourStats) {
        let start = self.first + (hour - self.first).div_euclid(self.step) * self.step;
        let slot = self
            .series
            .entry((start, r.status.map(TaskStatus::as_str)))
            .or_insert((r.status, 0));
        slot.1 += r.tasks;
        let total = match self.totals.iter_mut().find(|t| t.status == r.status) {
            Some(t) => t,
            None => {
                self.totals.push(HourStats {
                    status: r.status,
                    ..HourStats::default()
                });
                self.totals.last_mut().expect("just pushed")
            }
        };
        total.tasks += r.tasks;
        total.cached += r.cached;
        total.cache_known += r.cache_known;
        total.elapsed_n += r.elapsed_n;
        total.elapsed_ms_sum += r.elapsed_ms_sum;
        total.gas_n += r.gas_n;
        total.gas_sum += r.gas_sum;
        for (a, b) in total.elapsed.iter_mut().zip(r.elapsed) {
            *a += b;
        }
        for (a, b) in total.gas.iter_mut().zip(r.gas) {
            *a += b;
        }
    }

    fn done(mut self, from_hour: i64) -> TaskStats {
        for t in &mut self.totals {
            t.hour = from_hour;
        }
        TaskStats {
            totals: self.totals,
            series: self
                .series
                .into_iter()
                .map(|((start, _), (status, n))| (start, status, n))
                .collect(),
        }
    }
}

/// Task figures over a range: per status, and counts per status and step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// One row per status, summed over the range.
    pub totals: Vec<HourStats>,
    /// `(first hour of the step, status, tasks)`.
    pub series: Vec<(i64, Option<TaskStatus>, i64)>,
}

/// What the status route shows about ingest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestState {
    /// When a source last committed a batch.
    pub last_commit_ns: Option<UnixNanos>,
    /// Time of the newest entry (Docker receive time, else the node's clock).
    pub last_entry_ns: Option<UnixNanos>,
    /// Docker receive time of the newest entry that had one.
    pub last_received_ns: Option<UnixNanos>,
}

/// Totals for the metrics route, read without scanning the big tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub entries_by_kind: Vec<(Kind, u64)>,
    pub tasks_by_status: Vec<(TaskStatus, u64)>,
    pub invoices: u64,
}

/// Line items of one operation (`pay`, `charge`, `penalty`, …) on one day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationTotals {
    pub operation: String,
    pub items: u64,
    /// Sum of the items' steps and memory that were integers (units as reported).
    pub steps: i64,
    pub memory: i64,
    /// Σ steps × step gas price + memory × byte gas price, where both are numbers.
    pub value: f64,
}

/// Penalty line items charged to one account ([`Store::penalties_by_account`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountTotals {
    /// The account as printed (`None`: the item named none).
    pub account: Option<String>,
    pub items: u64,
    /// Gas units.
    pub value: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EarningsDay {
    /// Days since the epoch (UTC).
    pub day: i64,
    pub invoices: u64,
    pub operations: Vec<OperationTotals>,
}

/// Rows a text or non-indexed level search examines per page at most; a page that found
/// fewer matches in that window still returns a cursor to go on from.
pub const SCAN_WINDOW: i64 = 50_000;

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

impl Store {
    /// Tasks matching `filter`, newest first, after `after`; without input and output.
    pub fn tasks_page(
        &self,
        filter: &TaskFilter,
        after: Option<PageKey>,
        limit: usize,
    ) -> Result<Page<Task>, StoreError> {
        let mut q = Where::default();
        if let Some(status) = filter.status {
            q.add("t.status = ?", [status.as_str().to_owned().into()]);
        }
        if let Some(chain) = &filter.chain_id {
            q.add("t.chain_id = ?", [chain.clone().into()]);
        }
        if let Some(from) = filter.from_ms {
            q.add("t.time_ms >= ?", [from.into()]);
        }
        if let Some(to) = filter.to_ms {
            q.add("t.time_ms < ?", [to.into()]);
        }
        if let Some(k) = after {
            q.add("(t.time_ms, t.id) < (?, ?)", [k.time.into(), k.id.into()]);
        }
        let sql = format!(
            "SELECT t.id, t.time_ms, {TASK_COLUMNS} FROM tasks t{} ORDER BY t.time_ms DESC, t.id DESC LIMIT ?",
            q.sql()
        );
        self.read(|conn| {
            let rows = q.query(conn, &sql, limit, |row| {
                let key = PageKey {
                    time: row.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    id: row.get(0)?,
                };
                Ok((key, task_from_row(row, 2)?))
            })?;
            Ok(paginate(rows, limit))
        })
    }

    /// Tasks by execution id (those that exist), without input and output.
    /// Failed tasks with `from_ms <= time_ms < to_ms` grouped by failure reason (`None`:
    /// failures without one), most frequent first (then by reason), at most `limit`
    /// groups. Reads the `(status, time_ms)` index.
    pub fn failure_reasons(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<FailureReason>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT error, count(*) FROM tasks
                 WHERE status = 'failed' AND time_ms >= ?1 AND time_ms < ?2
                 GROUP BY error ORDER BY count(*) DESC, error LIMIT ?3",
            )?;
            let rows = stmt.query_map((from_ms, to_ms, to_limit(limit)), |row| {
                Ok(FailureReason {
                    reason: row.get(0)?,
                    tasks: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                })
            })?;
            rows.collect()
        })
    }

    pub fn tasks_by_execution(&self, ids: &[String]) -> Result<Vec<Task>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT t.id, t.time_ms, {TASK_COLUMNS} FROM tasks t WHERE t.execution_id = ?1"
            ))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(task) = stmt
                    .query_row([id], |row| task_from_row(row, 2))
                    .optional()?
                {
                    out.push(task);
                }
            }
            Ok(out)
        })
    }

    /// Log entries that name `execution_id`, oldest first, at most `limit`.
    pub fn task_entries(
        &self,
        execution_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} {ENTRY_FROM}
                 WHERE e.task_row = (SELECT id FROM tasks WHERE execution_id = ?1)
                   AND e.execution_id = ?1
                 ORDER BY e.time_ns, e.id LIMIT ?2"
            ))?;
            let rows = stmt.query_map((execution_id, to_limit(limit)), entry_from_row)?;
            rows.collect()
        })
    }

    /// Log entries matching `filter`, newest first, after `after`.
    ///
    /// Filters without an index (text, levels other than error/warn, kind `log` and the
    /// kinds printed for every task, [`Kind::EVERY_TASK`]) examine at most [`SCAN_WINDOW`]
    /// rows per call: such a page may hold fewer than `limit` entries and still have a
    /// next cursor.
    pub fn logs_page(
        &self,
        filter: &LogFilter,
        after: Option<PageKey>,
        limit: usize,
    ) -> Result<Page<StoredEntry>, StoreError> {
        // The range and cursor: they bound every query, the window's too.
        let mut range = Where::default();
        if let Some(from) = filter.from_ns {
            range.add("e.time_ns >= ?", [from.into()]);
        }
        if let Some(to) = filter.to_ns {
            range.add("e.time_ns < ?", [to.into()]);
        }
        if let Some(k) = after {
            range.add("(e.time_ns, e.id) < (?, ?)", [k.time.into(), k.id.into()]);
        }
        let mut q = range.clone();
        let mut indexed = false;
        if let Some(id) = &filter.execution_id {
            // Entries reach their task through `task_row` (indexed), not the execution id.
            q.add(
                "e.task_row = (SELECT id FROM tasks WHERE execution_id = ?) AND e.execution_id = ?",
                [id.clone().into(), id.clone().into()],
            );
            indexed = true;
        }
        if let Some(level) = &filter.level {
            q.add(
                "e.level_id = (SELECT id FROM words WHERE word = ?)",
                [level.as_str().to_owned().into()],
            );
            if matches!(level, Level::Error | Level::Warn) {
                // Repeats the partial index's condition so that the planner can use it.
                // The ids of 'error' and 'warn' (schema version 11).
                q.add("e.level_id IN (2, 3)", []);
                indexed = true;
            }
        }
        if let Some(kind) = filter.kind {
            q.add(
                "e.kind_id = (SELECT id FROM words WHERE word = ?)",
                [kind.as_str().to_owned().into()],
            );
            let index = self.kind_index();
            if index.holds(kind) {
                // Repeats the partial index's condition (schema version 16).
                q.add(index.condition_on("e.kind_id"), []);
                indexed = true;
            }
        }
        if let Some(text) = &filter.text {
            q.add("e.message LIKE ? ESCAPE '\\'", [like_pattern(text).into()]);
            for kind in &filter.text_skips_kinds {
                q.add(
                    "e.kind_id IS NOT (SELECT id FROM words WHERE word = ?)",
                    [kind.as_str().to_owned().into()],
                );
            }
        }
        let windowed =
            !indexed && (filter.text.is_some() || filter.level.is_some() || filter.kind.is_some());
        self.read(|conn| {
            let mut window_end = None;
            if windowed {
                let sql = format!(
                    "SELECT e.time_ns, e.id FROM entries e{} ORDER BY e.time_ns DESC, e.id DESC LIMIT 1 OFFSET ?",
                    range.sql()
                );
                let mut params = range.params.clone();
                params.push((SCAN_WINDOW - 1).into());
                window_end = conn
                    .prepare_cached(&sql)?
                    .query_row(rusqlite::params_from_iter(params), |row| {
                        Ok(PageKey {
                            time: row.get(0)?,
                            id: row.get(1)?,
                        })
                    })
                    .optional()?;
                if let Some(end) = window_end {
                    q.add("(e.time_ns, e.id) >= (?, ?)", [end.time.into(), end.id.into()]);
                }
            }
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} {ENTRY_FROM}{} ORDER BY e.time_ns DESC, e.id DESC LIMIT ?",
                q.sql()
            );
            let rows = q.query(conn, &sql, limit, |row| {
                let entry = entry_from_row(row)?;
                Ok((
                    PageKey {
                        time: entry.time_ns,
                        id: entry.id,
                    },
                    entry,
                ))
            })?;
            let mut page = paginate(rows, limit);
            if page.next.is_none() {
                // The window ran out before the page filled: go on below it.
                page.next = window_end;
            }
            Ok(page)
        })
    }

    /// Log entries with `from_ns <= time_ns < to_ns`, oldest first, after `after` (the
    /// last entry of the previous call), at most `limit`: a log download reads the range in
    /// such pieces, in the order the node printed it.
    pub fn entries_in_order(
        &self,
        from_ns: UnixNanos,
        to_ns: UnixNanos,
        after: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let (after_time, after_id) = after.map_or((i64::MIN, i64::MIN), |k| (k.time, k.id));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} {ENTRY_FROM}
                 WHERE e.time_ns >= ?1 AND e.time_ns < ?2 AND (e.time_ns, e.id) > (?3, ?4)
                 ORDER BY e.time_ns, e.id LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                rusqlite::params![
                    from_ns,
                    to_ns,
                    after_time,
                    after_id,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                entry_from_row,
            )?;
            rows.collect()
        })
    }

    /// Invoices matching `filter`, newest first, after `after`, with their line items.
    pub fn invoices_page(
        &self,
        filter: &InvoiceFilter,
        after: Option<PageKey>,
        limit: usize,
    ) -> Result<Page<StoredInvoice>, StoreError> {
        let mut q = Where::default();
        if let Some(id) = &filter.execution_id {
            // Through the task's row, or, for an invoice without one, its execution id
            // (schema version 15: `task_row` is NULL or the row of this execution's task).
            q.add(
                "i.execution_id = ? AND (i.task_row = (SELECT id FROM tasks WHERE execution_id = ?)
                   OR i.task_row IS NULL AND i.execution_id = ?)",
                [id.clone().into(), id.clone().into(), id.clone().into()],
            );
        }
        if let Some(from) = filter.from_ns {
            q.add("i.time_ns >= ?", [from.into()]);
        }
        if let Some(to) = filter.to_ns {
            q.add("i.time_ns < ?", [to.into()]);
        }
        if let Some(k) = after {
            q.add("(i.time_ns, i.id) < (?, ?)", [k.time.into(), k.id.into()]);
        }
        let sql = format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices i{} ORDER BY i.time_ns DESC, i.id DESC LIMIT ?",
            q.sql()
        );
        self.read(|conn| {
            let rows = q.query(conn, &sql, limit, |row| {
                let invoice = invoice_from_row(row)?;
                Ok((
                    PageKey {
                        time: invoice.time_ns,
                        id: invoice.id,
                    },
                    invoice,
                ))
            })?;
            let mut page = paginate(rows, limit);
            for invoice in &mut page.items {
                invoice.line_items = line_items(conn, invoice.id)?;
            }
            Ok(page)
        })
    }

    /// One invoice by its row id, with its line items.
    pub fn invoice(&self, id: i64) -> Result<Option<StoredInvoice>, StoreError> {
        self.read(|conn| {
            let invoice = conn
                .prepare_cached(&format!(
                    "SELECT {INVOICE_COLUMNS} FROM invoices i WHERE i.id = ?1"
                ))?
                .query_row([id], invoice_from_row)
                .optional()?;
            let Some(mut invoice) = invoice else {
                return Ok(None);
            };
            invoice.line_items = line_items(conn, invoice.id)?;
            Ok(Some(invoice))
        })
    }

    /// Invoices with `execution_id` (usually one), with their line items.
    pub fn invoices_of(&self, execution_id: &str) -> Result<Vec<StoredInvoice>, StoreError> {
        let filter = InvoiceFilter {
            execution_id: Some(execution_id.to_owned()),
            ..InvoiceFilter::default()
        };
        Ok(self.invoices_page(&filter, None, 100)?.items)
    }

    /// Invoices and line-item totals per UTC day, for the whole UTC days that
    /// `from_ns..to_ns` touches, oldest day first (read from the day figures the
    /// triggers keep, not from the invoices).
    pub fn earnings_by_day(
        &self,
        from_ns: UnixNanos,
        to_ns: UnixNanos,
    ) -> Result<Vec<EarningsDay>, StoreError> {
        self.read(|conn| {
            let mut days: Vec<EarningsDay> = Vec::new();
            // Whole UTC days from the day figures (kept by triggers, see schema V5).
            let (from_day, to_day) = (
                from_ns.div_euclid(NS_PER_DAY),
                to_ns.div_euclid(NS_PER_DAY) + i64::from(to_ns.rem_euclid(NS_PER_DAY) != 0),
            );
            let mut per_day = conn.prepare_cached(
                "SELECT day, invoices FROM invoice_day_counts
                 WHERE day >= ?1 AND day < ?2 AND invoices > 0 ORDER BY day",
            )?;
            let mut rows = per_day.query((from_day, to_day))?;
            while let Some(row) = rows.next()? {
                days.push(EarningsDay {
                    day: row.get(0)?,
                    invoices: to_u64(row.get(1)?),
                    operations: Vec::new(),
                });
            }
            let mut per_op = conn.prepare_cached(
                "SELECT day, operation, items, steps, memory, value FROM invoice_days
                 WHERE day >= ?1 AND day < ?2 AND items > 0 ORDER BY day, operation",
            )?;
            let mut rows = per_op.query((from_day, to_day))?;
            while let Some(row) = rows.next()? {
                let day: i64 = row.get(0)?;
                let totals = OperationTotals {
                    operation: row.get(1)?,
                    items: to_u64(row.get(2)?),
                    steps: row.get(3)?,
                    memory: row.get(4)?,
                    value: row.get(5)?,
                };
                if let Some(d) = days.iter_mut().find(|d| d.day == day) {
                    d.operations.push(totals);
                }
            }
            Ok(days)
        })
    }

    /// The penalty line items of the invoices of the same whole UTC days as
    /// [`Store::earnings_by_day`], per account, the largest value first.
    pub fn penalties_by_account(
        &self,
        from_ns: UnixNanos,
        to_ns: UnixNanos,
    ) -> Result<Vec<AccountTotals>, StoreError> {
        let (from, to) = (
            from_ns.div_euclid(NS_PER_DAY) * NS_PER_DAY,
            (to_ns.div_euclid(NS_PER_DAY) + i64::from(to_ns.rem_euclid(NS_PER_DAY) != 0))
                .saturating_mul(NS_PER_DAY),
        );
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(super::schema::PENALTIES_BY_ACCOUNT)?;
            let rows = stmt.query_map((from, to), |row| {
                Ok(AccountTotals {
                    account: row.get(0)?,
                    items: to_u64(row.get(1)?),
                    value: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Task figures for hours `from_hour <= hour < to_hour`: per status over the whole
    /// range, and task counts per status in steps of `step_hours` (1 or 24) counted from
    /// `first_hour` (a day start when the step is 24). Whole days are read from
    /// `task_days`, the hours at the edges from `task_hours`: a year is under a thousand
    /// rows.
    pub fn task_stats(
        &self,
        from_hour: i64,
        to_hour: i64,
        first_hour: i64,
        step_hours: i64,
    ) -> Result<TaskStats, StoreError> {
        let step = step_hours.max(1);
        let (day_from, day_to) = if step == 24 {
            (
                from_hour.div_euclid(24) + i64::from(from_hour.rem_euclid(24) != 0),
                to_hour.div_euclid(24),
            )
        } else {
            (0, 0)
        };
        // Hour ranges outside the whole days, and the day range.
        let (hours, days) = if day_from < day_to {
            (
                vec![(from_hour, day_from * 24), (day_to * 24, to_hour)],
                Some((day_from, day_to)),
            )
        } else {
            (vec![(from_hour, to_hour)], None)
        };
        self.read(|conn| {
            let mut acc = StatsAcc::new(first_hour, step);
            let mut by_hour = conn.prepare_cached(&format!(
                "SELECT hour, {FIGURES} FROM task_hours WHERE hour >= ?1 AND hour < ?2 AND n <> 0"
            ))?;
            for (a, b) in hours.into_iter().filter(|(a, b)| a < b) {
                let mut rows = by_hour.query((a, b))?;
                while let Some(row) = rows.next()? {
                    acc.add(row.get(0)?, figures_from_row(row)?);
                }
            }
            if let Some((a, b)) = days {
                let mut by_day = conn.prepare_cached(&format!(
                    "SELECT day, {FIGURES} FROM task_days WHERE day >= ?1 AND day < ?2 AND n <> 0"
                ))?;
                let mut rows = by_day.query((a, b))?;
                while let Some(row) = rows.next()? {
                    acc.add(row.get::<_, i64>(0)? * 24, figures_from_row(row)?);
                }
            }
            Ok(acc.done(from_hour))
        })
    }

    /// The last container event before `ns`: the container's state when a range starts.
    pub fn container_event_before(
        &self,
        ns: UnixNanos,
    ) -> Result<Option<ContainerEvent>, StoreError> {
        self.read(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT container_id, container_name, time_ns, action, exit_code, inferred
                     FROM container_events WHERE time_ns < ?1 ORDER BY time_ns DESC, id DESC LIMIT 1",
                )?
                .query_row([ns], super::read::container_event_row)
                .optional()?;
            Ok(row.flatten())
        })
    }

    pub fn ingest_state(&self) -> Result<IngestState, StoreError> {
        self.read(|conn| {
            let last_commit_ns: Option<i64> = conn
                .prepare_cached("SELECT max(last_batch_ns) FROM sources")?
                .query_row([], |row| row.get(0))?;
            let (last_entry_ns, last_received_ns) = conn
                .prepare_cached(
                    "SELECT last_time_ns, last_received_ns FROM node_status WHERE id = 1",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?
                .unwrap_or((None, None));
            Ok(IngestState {
                last_commit_ns,
                last_entry_ns,
                last_received_ns,
            })
        })
    }

    /// Entry counts (kept by the writer), task counts and the number of invoices (from
    /// the per-day figures).
    pub fn totals(&self) -> Result<Totals, StoreError> {
        self.read(|conn| {
            let mut entries: Vec<(Kind, u64)> = Kind::ALL.iter().map(|k| (*k, 0)).collect();
            let mut stmt = conn.prepare_cached("SELECT kind, n FROM entry_counts")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                if let Some(kind) = Kind::parse(&row.get::<_, String>(0)?) {
                    if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == kind) {
                        slot.1 = to_u64(row.get(1)?);
                    }
                }
            }
            let mut tasks: Vec<(TaskStatus, u64)> =
                TaskStatus::ALL.iter().map(|s| (*s, 0)).collect();
            // The day figures, not the rows or the hour figures: a year of a busy node is a
            // million invoices (count(*) read 7 ms of index) and 35,000 hour rows (3 ms);
            // the writer and the delete triggers keep the day figures equal to a recount.
            let mut stmt =
                conn.prepare_cached("SELECT status, sum(n) FROM task_days GROUP BY status")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                if let Some(status) = TaskStatus::parse(&row.get::<_, String>(0)?) {
                    if let Some(slot) = tasks.iter_mut().find(|(s, _)| *s == status) {
                        slot.1 = to_u64(row.get(1)?);
                    }
                }
            }
            let invoices: i64 = conn
                .prepare_cached("SELECT IFNULL(sum(invoices), 0) FROM invoice_day_counts")?
                .query_row([], |row| row.get(0))?;
            Ok(Totals {
                entries_by_kind: entries,
                tasks_by_status: tasks,
                invoices: to_u64(invoices),
            })
        })
    }

    /// Entries with `id > after_id`, in commit order, at most `limit`.
    pub fn entries_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} {ENTRY_FROM} WHERE e.id > ?1 ORDER BY e.id LIMIT ?2"
            ))?;
            let rows = stmt.query_map((after_id, to_limit(limit)), entry_from_row)?;
            rows.collect()
        })
    }

    /// Invoices with `id > after_id`, in commit order, at most `limit`, with line items.
    pub fn invoices_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredInvoice>, StoreError> {
        self.read(|conn| {
            let mut invoices: Vec<StoredInvoice> = conn
                .prepare_cached(&format!(
                    "SELECT {INVOICE_COLUMNS} FROM invoices i WHERE i.id > ?1 ORDER BY i.id LIMIT ?2"
                ))?
                .query_map((after_id, to_limit(limit)), invoice_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            for invoice in &mut invoices {
                invoice.line_items = line_items(conn, invoice.id)?;
            }
            Ok(invoices)
        })
    }

    /// The query plan SQLite picks for the list queries (for tests and the benchmark notes).
    #[doc(hidden)]
    pub fn explain_task_page(
        &self,
        filter: &TaskFilter,
        after: Option<PageKey>,
    ) -> Result<Vec<String>, StoreError> {
        let mut q = Where::default();
        if let Some(status) = filter.status {
            q.add("t.status = ?", [status.as_str().to_owned().into()]);
        }
        if let Some(chain) = &filter.chain_id {
            q.add("t.chain_id = ?", [chain.clone().into()]);
        }
        if let Some(k) = after {
            q.add("(t.time_ms, t.id) < (?, ?)", [k.time.into(), k.id.into()]);
        }
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT t.id FROM tasks t{} ORDER BY t.time_ms DESC, t.id DESC LIMIT 50",
            q.sql()
        );
        self.read(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(q.params.clone()), |row| {
                row.get::<_, String>(3)
            })?;
            rows.collect()
        })
    }
}

/// `WHERE` terms with their parameters, in order.
#[derive(Clone, Debug, Default)]
struct Where {
    terms: Vec<Cow<'static, str>>,
    params: Vec<Value>,
}

impl Where {
    fn add<const N: usize>(&mut self, term: impl Into<Cow<'static, str>>, params: [Value; N]) {
        self.terms.push(term.into());
        self.params.extend(params);
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        }
    }

    /// Runs `sql` (this `WHERE` plus a final `LIMIT ?`) for `limit + 1` rows.
    fn query<T>(
        &self,
        conn: &Connection,
        sql: &str,
        limit: usize,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<(PageKey, T)>,
    ) -> rusqlite::Result<Vec<(PageKey, T)>> {
        let mut params = self.params.clone();
        params.push(to_limit(limit.saturating_add(1)).into());
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), map)?;
        rows.collect()
    }
}

/// Cuts `limit + 1` rows to a page; the extra row only says that there is a next page.
fn paginate<T>(mut rows: Vec<(PageKey, T)>, limit: usize) -> Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(k, _)| *k)
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next,
    }
}

/// `%text%` with LIKE's wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_the_search_text_are_literal() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn a_page_has_a_next_key_only_when_a_row_is_left() {
        let k = |id| PageKey { time: 10, id };
        let rows = vec![(k(3), 'a'), (k(2), 'b'), (k(1), 'c')];
        let page = paginate(rows.clone(), 2);
        assert_eq!(page.items, vec!['a', 'b']);
        assert_eq!(page.next, Some(k(2)));
        let page = paginate(rows, 3);
        assert_eq!(page.next, None);
    }
}
