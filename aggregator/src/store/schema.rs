//! The SQLite schema. Rows hold only what reports contain; nodes are referred to by a
//! local integer (`nodes.idx`), their id appears once, in `nodes`.

use rusqlite::Connection;

use super::StoreError;

/// Schema version in `PRAGMA user_version`.
pub(super) const VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    idx          INTEGER PRIMARY KEY,
    id           BLOB NOT NULL UNIQUE,
    first_window INTEGER NOT NULL,
    last_window  INTEGER NOT NULL,
    continent    TEXT
);
CREATE INDEX IF NOT EXISTS nodes_last_window ON nodes(last_window);

-- One row per accepted report: the (window, node) key is the duplicate check.
CREATE TABLE IF NOT EXISTS reports (
    window    INTEGER NOT NULL,
    node      INTEGER NOT NULL,
    level     TEXT NOT NULL,
    state     TEXT NOT NULL,
    active    TEXT NOT NULL,
    total     TEXT NOT NULL,
    received  INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    PRIMARY KEY (window, node)
) WITHOUT ROWID;
-- One node's windows over a period and their state (uptime proofs), read from the
-- index alone (covering: half the time of an index on (node, window) that looks each
-- row up). Version 4 added it; IF NOT EXISTS makes the migration from 3 this statement.
CREATE INDEX IF NOT EXISTS reports_node_window ON reports(node, window, state);

CREATE TABLE IF NOT EXISTS task_items (
    window   INTEGER NOT NULL,
    node     INTEGER NOT NULL,
    chain    INTEGER,
    outcome  TEXT NOT NULL,
    duration TEXT NOT NULL,
    gas      TEXT NOT NULL,
    memory   TEXT NOT NULL,
    cached   INTEGER
);
CREATE INDEX IF NOT EXISTS task_items_window ON task_items(window);

CREATE TABLE IF NOT EXISTS invoice_items (
    window INTEGER NOT NULL,
    node   INTEGER NOT NULL,
    op     TEXT NOT NULL,
    steps  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invoice_items_window ON invoice_items(window);

-- Per node and UTC hour: kept by the writer in the report's transaction, so statistics
-- read at most 24 x nodes rows instead of every report.
CREATE TABLE IF NOT EXISTS node_hours (
    hour      INTEGER NOT NULL,
    node      INTEGER NOT NULL,
    received  INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    PRIMARY KEY (hour, node)
) WITHOUT ROWID;

-- Distribution cells per node and hour (dim: see store::Dim).
CREATE TABLE IF NOT EXISTS cell_hours (
    hour  INTEGER NOT NULL,
    dim   INTEGER NOT NULL,
    label TEXT NOT NULL,
    node  INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, dim, label, node)
) WITHOUT ROWID;

-- Figures released once per period (hour or UTC day) with their noise: later
-- publications reuse them, so a period's figure never changes (docs/PRIVACY.md).
CREATE TABLE IF NOT EXISTS released (
    period INTEGER NOT NULL,
    figure TEXT NOT NULL,
    value  INTEGER NOT NULL,
    PRIMARY KEY (period, figure)
) WITHOUT ROWID;

-- Published statistics (wire bytes), the newest per window.
CREATE TABLE IF NOT EXISTS stats (
    window INTEGER PRIMARY KEY,
    wire   BLOB NOT NULL
);
";

pub(super) fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -16_384)?; // 16 MiB
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            known: VERSION,
        });
    }
    if version == 1 {
        // Version 1 reports carried a hashed id per item; reports no longer do, and the
        // ids already stored go too.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE task_items DROP COLUMN id;
             ALTER TABLE invoice_items DROP COLUMN id;
             PRAGMA user_version = 2;
             COMMIT;
             VACUUM;",
        )?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", VERSION)?;
    Ok(())
}
