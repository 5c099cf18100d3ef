//! The writer thread's side: one connection, one transaction per batch.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection};
use truebit_protocol::identity::NodeId;
use truebit_protocol::noise::strict_estimate;
use truebit_protocol::report::{Level, Report};
use truebit_protocol::stats::chain_label;

use super::{to_i64, StoreError, Verdicts};
use crate::gate::{Gate, Reason};

/// The distributions kept per node and hour in `cell_hours`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Dim {
    Duration = 0,
    Gas = 1,
    Memory = 2,
    Steps = 3,
    Chain = 4,
    /// Task items' cache flag: `true` / `false` (unknown flags are not counted).
    Cached = 5,
}

impl Dim {
    /// Every dimension, in the order of their numbers.
    pub const ALL: [Dim; 6] = [
        Dim::Duration,
        Dim::Gas,
        Dim::Memory,
        Dim::Steps,
        Dim::Chain,
        Dim::Cached,
    ];

    pub fn from_u8(v: u8) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| *d as u8 == v)
    }
}

pub(super) struct Writer {
    conn: Connection,
    gate: Gate,
    /// node id -> nodes.idx
    nodes: HashMap<NodeId, i64>,
}

impl Writer {
    pub(super) fn new(conn: Connection, gate: Gate) -> Result<Writer, StoreError> {
        let nodes = load_nodes(&conn)?;
        Ok(Writer { conn, gate, nodes })
    }

    pub(super) fn ingest(&mut self, reports: &[Report], now: u64) -> Result<Verdicts, StoreError> {
        match self.ingest_tx(reports, now) {
            Ok(v) => Ok(v),
            Err(e) => {
                // Nothing was committed: forget the nodes of this batch. (Its rate counts
                // stay: a failed commit errs on the side of limiting.)
                self.nodes = load_nodes(&self.conn)?;
                Err(e)
            }
        }
    }

    fn ingest_tx(&mut self, reports: &[Report], now: u64) -> Result<Verdicts, StoreError> {
        let tx = self.conn.transaction()?;
        let mut verdicts = Vec::with_capacity(reports.len());
        {
            let mut insert_node = tx.prepare_cached(
                "INSERT INTO nodes (id, first_window, last_window, continent) VALUES (?1, ?2, ?2, ?3)",
            )?;
            let mut update_node = tx.prepare_cached(
                "UPDATE nodes SET
                    continent = CASE WHEN ?2 >= last_window THEN ?3 ELSE continent END,
                    last_window = MAX(last_window, ?2),
                    first_window = MIN(first_window, ?2)
                 WHERE idx = ?1",
            )?;
            let mut insert_report = tx.prepare_cached(
                "INSERT OR IGNORE INTO reports
                    (window, node, level, state, active, total, received, completed, failed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut insert_task = tx.prepare_cached(
                "INSERT INTO task_items (window, node, chain, outcome, duration, gas, memory, cached)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut insert_invoice = tx.prepare_cached(
                "INSERT INTO invoice_items (window, node, op, steps) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut node_hour = tx.prepare_cached(
                "INSERT INTO node_hours (hour, node, received, completed, failed) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (hour, node) DO UPDATE SET
                    received = received + excluded.received,
                    completed = completed + excluded.completed,
                    failed = failed + excluded.failed",
            )?;
            let mut cell_hour = tx.prepare_cached(
                "INSERT INTO cell_hours (hour, dim, label, node, count) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (hour, dim, label, node) DO UPDATE SET count = count + excluded.count",
            )?;
            for report in reports {
                let window = report.window.as_secs();
                if let Err(reason) = self.gate.admit(window, now) {
                    verdicts.push(Err(reason));
                    continue;
                }
                let continent = report.continent.map(|c| c.label());
                let w = to_i64(window);
                let idx = match self.nodes.get(&report.node) {
                    Some(&idx) => {
                        if let Err(reason) = self.gate.node(idx, now) {
                            verdicts.push(Err(reason));
                            continue;
                        }
                        idx
                    }
                    None => {
                        if let Err(reason) = self.gate.new_node(now) {
                            verdicts.push(Err(reason));
                            continue;
                        }
                        insert_node.execute(params![&report.node.as_bytes()[..], w, continent])?;
                        let idx = tx.last_insert_rowid();
                        self.nodes.insert(report.node, idx);
                        let _ = self.gate.node(idx, now);
                        idx
                    }
                };
                let s = &report.status;
                let c = &report.counts;
                let inserted = insert_report.execute(params![
                    w,
                    idx,
                    report.level.label(),
                    s.state.label(),
                    s.active.label(),
                    s.total.label(),
                    to_i64(c.received),
                    to_i64(c.completed),
                    to_i64(c.failed),
                ])?;
                if inserted == 0 {
                    verdicts.push(Err(Reason::Duplicate));
                    continue;
                }
                update_node.execute(params![idx, w, continent])?;
                let hour = to_i64(window - window % 3_600);
                // A strict monitor noised its counts and shifted them by a constant; the
                // rollups take them back by the shift (they may go below zero).
                let count = |sent: u64| match report.level {
                    Level::Full => to_i64(sent),
                    Level::Strict => strict_estimate(sent),
                };
                node_hour.execute(params![
                    hour,
                    idx,
                    count(c.received),
                    count(c.completed),
                    count(c.failed)
                ])?;
                let mut cells: BTreeMap<(Dim, String), i64> = BTreeMap::new();
                for t in &report.tasks {
                    insert_task.execute(params![
                        w,
                        idx,
                        t.chain.map(|c| to_i64(c.get())),
                        t.outcome.label(),
                        t.duration.label(),
                        t.gas.label(),
                        t.memory.label(),
                        t.cached,
                    ])?;
                    for (dim, label) in [
                        (Dim::Duration, t.duration.label().to_owned()),
                        (Dim::Gas, t.gas.label().to_owned()),
                        (Dim::Memory, t.memory.label().to_owned()),
                        (Dim::Chain, chain_label(t.chain)),
                    ] {
                        *cells.entry((dim, label)).or_default() += 1;
                    }
                    if let Some(cached) = t.cached {
                        *cells.entry((Dim::Cached, cached.to_string())).or_default() += 1;
                    }
                }
                for i in &report.invoices {
                    insert_invoice.execute(params![w, idx, i.op.label(), i.steps.label()])?;
                    *cells
                        .entry((Dim::Steps, i.steps.label().to_owned()))
                        .or_default() += 1;
                }
                for ((dim, label), count) in cells {
                    cell_hour.execute(params![hour, dim as u8, label, idx, count])?;
                }
                verdicts.push(Ok(()));
            }
        }
        tx.commit()?;
        Ok(verdicts)
    }

    pub(super) fn save_stats(&mut self, window: u64, wire: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO stats (window, wire) VALUES (?1, ?2)",
            params![to_i64(window), wire],
        )?;
        Ok(())
    }

    /// Keeps released figures; a figure already released for its period stays as it was.
    pub(super) fn save_released(&mut self, rows: &[(u64, String, i64)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO released (period, figure, value) VALUES (?1, ?2, ?3)",
            )?;
            for (period, figure, value) in rows {
                insert.execute(params![to_i64(*period), figure, value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn retention(&mut self, cutoff_window: u64) -> Result<u64, StoreError> {
        let cutoff = to_i64(cutoff_window);
        let cutoff_hour = to_i64(cutoff_window - cutoff_window % 3_600);
        let tx = self.conn.transaction()?;
        let reports = tx.execute("DELETE FROM reports WHERE window < ?1", [cutoff])?;
        tx.execute("DELETE FROM task_items WHERE window < ?1", [cutoff])?;
        tx.execute("DELETE FROM invoice_items WHERE window < ?1", [cutoff])?;
        tx.execute("DELETE FROM node_hours WHERE hour < ?1", [cutoff_hour])?;
        tx.execute("DELETE FROM cell_hours WHERE hour < ?1", [cutoff_hour])?;
        tx.execute("DELETE FROM stats WHERE window < ?1", [cutoff])?;
        // Daily figures are kept one day longer than the hours they cover.
        tx.execute(
            "DELETE FROM released WHERE period < ?1 - 86400",
            [cutoff_hour],
        )?;
        let nodes = tx.execute("DELETE FROM nodes WHERE last_window < ?1", [cutoff])?;
        tx.commit()?;
        if nodes > 0 {
            self.nodes = load_nodes(&self.conn)?;
        }
        Ok(reports as u64)
    }
}

fn load_nodes(conn: &Connection) -> Result<HashMap<NodeId, i64>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, idx FROM nodes")?;
    let rows = stmt.query_map([], |r| {
        let id: Vec<u8> = r.get(0)?;
        Ok((id, r.get::<_, i64>(1)?))
    })?;
    let mut nodes = HashMap::new();
    for row in rows {
        let (id, idx) = row?;
        if let Ok(bytes) = <[u8; 16]>::try_from(id.as_slice()) {
            nodes.insert(NodeId::from_bytes(bytes), idx);
        }
    }
    Ok(nodes)
}
