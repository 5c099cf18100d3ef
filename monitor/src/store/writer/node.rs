//! The node status row: version, address, slots and the newest times seen.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::model::Entry;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeState {
    pub(super) version: Option<String>,
    pub(super) address: Option<String>,
    pub(super) registered_ms: Option<i64>,
    pub(super) registered_ns: Option<i64>,
    pub(super) slots_used: Option<i64>,
    pub(super) slots_total: Option<i64>,
    pub(super) last_time_ns: Option<i64>,
    pub(super) last_received_ns: Option<i64>,
    pub(super) last_node_time: Option<i64>,
}

impl NodeState {
    /// Takes an entry's version and times into account. Returns whether the entry is at
    /// least as new as everything seen so far (only those may overwrite node fields).
    pub(super) fn observe(&mut self, entry: &Entry, time_ns: i64) -> bool {
        let newer = self.last_time_ns.is_none_or(|last| time_ns >= last);
        if let Some(version) = &entry.version {
            if (newer || self.version.is_none())
                && self.version.as_deref() != Some(version.as_str())
            {
                self.version = Some(version.clone());
            }
        }
        self.last_time_ns = self.last_time_ns.max(Some(time_ns));
        if entry.received_ns.is_some() {
            self.last_received_ns = self.last_received_ns.max(entry.received_ns);
        }
        if entry.node_time.is_some() {
            self.last_node_time = self.last_node_time.max(entry.node_time);
        }
        newer
    }
}

pub(super) fn load_node(conn: &Connection) -> rusqlite::Result<NodeState> {
    conn.query_row(
        "SELECT version, address, registered_ms, registered_ns, slots_used, slots_total,
                last_time_ns, last_received_ns, last_node_time
         FROM node_status WHERE id = 1",
        [],
        |row| {
            Ok(NodeState {
                version: row.get(0)?,
                address: row.get(1)?,
                registered_ms: row.get(2)?,
                registered_ns: row.get(3)?,
                slots_used: row.get(4)?,
                slots_total: row.get(5)?,
                last_time_ns: row.get(6)?,
                last_received_ns: row.get(7)?,
                last_node_time: row.get(8)?,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

pub(super) fn save_node(tx: &Transaction<'_>, node: &NodeState) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE node_status SET version = ?1, address = ?2, registered_ms = ?3, registered_ns = ?4,
           slots_used = ?5, slots_total = ?6, last_time_ns = ?7, last_received_ns = ?8,
           last_node_time = ?9
         WHERE id = 1",
    )?
    .execute(params![
        node.version,
        node.address,
        node.registered_ms,
        node.registered_ns,
        node.slots_used,
        node.slots_total,
        node.last_time_ns,
        node.last_received_ns,
        node.last_node_time,
    ])?;
    Ok(())
}
