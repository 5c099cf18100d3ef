//! Entry counts per kind, the hours entries were stored in, and what the figures of new
//! rows start from.

use std::collections::BTreeMap;

use rusqlite::Transaction;

use crate::model::{Kind, TaskStatus};
use crate::store::schema::TASK_FIGURES_ADD;

/// The columns of a task row that its figures count (`tasks.time_ms` is the first time
/// present of received, started, completed).
pub(super) struct NewTask {
    pub(super) time_ms: Option<i64>,
    pub(super) status: TaskStatus,
    pub(super) elapsed_ms: Option<i64>,
    pub(super) gas_used: Option<i64>,
    pub(super) cached: Option<bool>,
}

/// Lower edges of the execution-time buckets e1..e7 (ms) and of the gas buckets g1..g4, as
/// in `figure_values!` (schema.rs) and `truebit_protocol::bucket`.
const ELAPSED_EDGES: [i64; 7] = [100, 500, 1_000, 5_000, 10_000, 30_000, 60_000];
const GAS_EDGES: [i64; 4] = [100_000, 1_000_000, 10_000_000, 100_000_000];

/// n, cached, cache_known, elapsed_n, elapsed_sum, gas_n, gas_sum, e0..e7, g0..g4: the
/// columns of a figures row after its key and status.
type Sums = [i64; 20];

/// The figures of the task rows a transaction inserted, summed per (hour, status) and
/// (day, status) as the rows are written, added to `task_hours` and `task_days` at the end.
#[derive(Default)]
pub(super) struct TaskFigures {
    hours: BTreeMap<(i64, &'static str), Sums>,
    days: BTreeMap<(i64, &'static str), Sums>,
}

impl TaskFigures {
    pub(super) fn add(&mut self, task: &NewTask) {
        let mut row: Sums = [0; 20];
        row[0] = 1;
        row[1] = i64::from(task.cached == Some(true));
        row[2] = i64::from(task.cached.is_some());
        if let Some(e) = task.elapsed_ms {
            row[3] = 1;
            row[4] = e;
            row[7 + ELAPSED_EDGES.iter().filter(|&&edge| e >= edge).count()] = 1;
        }
        if let Some(g) = task.gas_used {
            row[5] = 1;
            row[6] = g;
            row[15 + GAS_EDGES.iter().filter(|&&edge| g >= edge).count()] = 1;
        }
        let time_ms = task.time_ms.unwrap_or(0);
        for (groups, unit_ms) in [(&mut self.hours, 3_600_000), (&mut self.days, 86_400_000)] {
            let sums = groups
                .entry((time_ms / unit_ms, task.status.as_str()))
                .or_default();
            for (sum, value) in sums.iter_mut().zip(row) {
                *sum = sum.saturating_add(value);
            }
        }
    }

    /// Adds the sums to the figures tables, one upsert per group.
    pub(super) fn write(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        for (groups, sql) in [
            (&self.hours, TASK_FIGURES_ADD[0]),
            (&self.days, TASK_FIGURES_ADD[1]),
        ] {
            if groups.is_empty() {
                continue;
            }
            let mut upsert = tx.prepare_cached(sql)?;
            for ((key, status), sums) in groups {
                upsert.raw_bind_parameter(1, key)?;
                upsert.raw_bind_parameter(2, *status)?;
                for (n, sum) in sums.iter().enumerate() {
                    upsert.raw_bind_parameter(n + 3, sum)?;
                }
                upsert.raw_execute()?;
            }
        }
        Ok(())
    }
}

pub(super) const NS_PER_HOUR: i64 = 3_600 * 1_000_000_000;

/// Records that the entries up to the newest id were stored by the hour of `now_ns`
/// (log retention counts from there; see schema version 7).
pub(super) fn mark_stored(tx: &Transaction<'_>, now_ns: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO entry_marks (hour, last_id) SELECT ?1, max(id) FROM entries WHERE true
         ON CONFLICT (hour) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
    )?
    .execute([now_ns.div_euclid(NS_PER_HOUR)])?;
    Ok(())
}

/// The largest row id of `table` (0 when empty): the rows inserted after this have
/// larger ones (`INTEGER PRIMARY KEY` takes the largest plus one).
pub(super) fn max_id(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached(&format!("SELECT IFNULL(max(id), 0) FROM {table}"))?
        .query_row([], |row| row.get(0))
}

pub(super) fn add_counts(
    tx: &Transaction<'_>,
    counts: &[i64; Kind::ALL.len()],
    sign: i64,
) -> rusqlite::Result<()> {
    for (kind, n) in Kind::ALL.iter().zip(counts) {
        if *n != 0 {
            tx.prepare_cached(
                "INSERT INTO entry_counts (kind, n) VALUES (?1, ?2)
                 ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n",
            )?
            .execute((kind.as_str(), sign * n))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::demo::fixture;
    use crate::ingest::Ingest;
    use crate::model::{LineMeta, Pos};
    use crate::parser::ParserConfig;
    use crate::store::{Store, StoreConfig};

    /// The figures tables as they are (rows with something in them), and as counted again
    /// from the task, invoice and line-item rows.
    fn figures_and_recount(conn: &Connection) -> Vec<(String, String)> {
        let task = |key: &str, unit: i64, table: &str| {
            (
                format!(
                    "SELECT {key}, status, n, cached, cache_known, elapsed_n, elapsed_sum, gas_n,
                       gas_sum, e0, e1, e2, e3, e4, e5, e6, e7, g0, g1, g2, g3, g4
                     FROM {table} WHERE n <> 0 ORDER BY 1, 2"
                ),
                format!(
                    "SELECT COALESCE(time_ms, 0) / {unit}, status, count(*), count(*) FILTER (WHERE cached IS 1),
                       count(cached), count(elapsed_ms), IFNULL(sum(elapsed_ms), 0), count(gas_used),
                       IFNULL(sum(gas_used), 0),
                       count(*) FILTER (WHERE elapsed_ms < 100),
                       count(*) FILTER (WHERE elapsed_ms >= 100 AND elapsed_ms < 500),
                       count(*) FILTER (WHERE elapsed_ms >= 500 AND elapsed_ms < 1000),
                       count(*) FILTER (WHERE elapsed_ms >= 1000 AND elapsed_ms < 5000),
                       count(*) FILTER (WHERE elapsed_ms >= 5000 AND elapsed_ms < 10000),
                       count(*) FILTER (WHERE elapsed_ms >= 10000 AND elapsed_ms < 30000),
                       count(*) FILTER (WHERE elapsed_ms >= 30000 AND elapsed_ms < 60000),
                       count(*) FILTER (WHERE elapsed_ms >= 60000),
                       count(*) FILTER (WHERE gas_used < 100000),
                       count(*) FILTER (WHERE gas_used >= 100000 AND gas_used < 1000000),
                       count(*) FILTER (WHERE gas_used >= 1000000 AND gas_used < 10000000),
                       count(*) FILTER (WHERE gas_used >= 10000000 AND gas_used < 100000000),
                       count(*) FILTER (WHERE gas_used >= 100000000)
                     FROM tasks GROUP BY 1, 2 ORDER BY 1, 2"
                ),
            )
        };
        let queries = [
            task("hour", 3_600_000, "task_hours"),
            task("day", 86_400_000, "task_days"),
            (
                "SELECT day, invoices FROM invoice_day_counts WHERE invoices <> 0 ORDER BY 1"
                    .into(),
                "SELECT time_ns / 86400000000000, count(*) FROM invoices GROUP BY 1 ORDER BY 1"
                    .into(),
            ),
            (
                "SELECT day, operation, items, steps, memory, value FROM invoice_days
                 WHERE items <> 0 ORDER BY 1, 2"
                    .into(),
                "SELECT i.time_ns / 86400000000000, li.operation, count(*),
                   IFNULL(sum(li.steps_value), 0), IFNULL(sum(li.memory_value), 0),
                   total(IFNULL(li.steps_value * CAST(i.step_gas_price AS REAL)
                     + IFNULL(li.memory_value * CAST(i.byte_gas_price AS REAL), 0), 0))
                 FROM invoices i JOIN invoice_items li ON li.invoice_row = i.id
                 GROUP BY 1, 2 ORDER BY 1, 2"
                    .into(),
            ),
        ];
        let dump = |sql: &str| -> String {
            let mut statement = conn.prepare(sql).expect("prepare");
            let columns = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    (0..columns)
                        .map(|i| {
                            row.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|cells| cells.join(" "))
                })
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            rows.join("\n")
        };
        queries
            .iter()
            .map(|(kept, recount)| (dump(kept), dump(recount)))
            .collect()
    }

    /// The writer adds the figures of the rows a transaction inserts once at its end; the
    /// triggers move them when a stored task changes. Many small transactions (tasks
    /// received in one, completed in a later one) must give what counting the rows gives.
    #[test]
    fn figures_tables_match_a_recount_of_the_rows_across_many_small_transactions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("figures.db");
        let store = Store::open(StoreConfig::new(&path)).expect("open");
        let (text, expected) = fixture(41, 120);
        let mut ingest =
            Ingest::resume(&store, "file:figures.log", ParserConfig::default()).expect("ingest");
        for (n, line) in text.lines().enumerate() {
            let meta = LineMeta {
                received_ns: None,
                pos: Pos::new(0, n as i64 + 1),
            };
            ingest.push(line.as_bytes(), meta);
            // 1 to 13 entries per transaction: every task spans several.
            if ingest.ready() > n % 13 {
                store
                    .submit(ingest.take_batch().expect("batch"))
                    .expect("submit");
                store.flush().expect("flush");
            }
        }
        ingest.flush_parser();
        if let Some(batch) = ingest.take_batch() {
            store.submit(batch).expect("submit");
        }
        store.flush().expect("flush");
        // The totals the settings page and /metrics show come from the day figures.
        let totals = store.totals().expect("totals");
        store.close().expect("close");

        let conn = Connection::open(&path).expect("reopen");
        let tasks: i64 = conn
            .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
            .expect("tasks");
        let invoices: i64 = conn
            .query_row("SELECT count(*) FROM invoices", [], |r| r.get(0))
            .expect("invoices");
        assert_eq!(
            (tasks as u64, invoices as u64),
            (expected.tasks_created, expected.invoices)
        );
        assert_eq!(
            (
                totals.tasks_by_status.iter().map(|(_, n)| n).sum::<u64>(),
                totals.invoices
            ),
            (tasks as u64, invoices as u64)
        );
        for (kept, recount) in figures_and_recount(&conn) {
            assert!(!kept.is_empty());
            assert_eq!(kept, recount);
        }
    }
}
