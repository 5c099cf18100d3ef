//! Numbered migrations. `PRAGMA user_version` holds the number of the last one applied;
//! `schema_migrations` records when each was applied. Append new migrations to
//! [`MIGRATIONS`]; never edit one that has shipped.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{now_ns, StoreError};

pub(crate) struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    name: "initial schema",
    sql: V1,
}];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration newer than the database's `user_version`, each in its own
/// transaction together with the new version number.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| StoreError::at_open(path, e))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::at_open(path, e))?;
        let fail = |source: rusqlite::Error| match StoreError::at_open(path, source) {
            StoreError::Open { source, .. } => StoreError::Migration {
                version,
                name: migration.name,
                source,
            },
            other => other,
        };
        tx.execute_batch(migration.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ns) VALUES (?1, ?2, ?3)",
            (version, migration.name, now_ns()),
        )
        .map_err(fail)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(
            db.schema_version = version,
            migration = migration.name,
            "applied database migration"
        );
    }
    Ok(())
}

/// Version 1. Times: `*_ns` are Unix nanoseconds, `*_ms` Unix milliseconds, `node_time`
/// Unix seconds of the node's own clock. Enum values are stored as their `as_str()` text.
const V1: &str = r#"
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_ns  INTEGER NOT NULL
);

CREATE TABLE sources (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    created_ns     INTEGER NOT NULL,
    last_batch_ns  INTEGER
);

-- Position of the last committed line per source, written in the same transaction as
-- the entries it covers.
CREATE TABLE source_cursors (
    source_id     INTEGER PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    pos_major     INTEGER NOT NULL,
    pos_minor     INTEGER NOT NULL,
    parser_state  TEXT NOT NULL,
    updated_ns    INTEGER NOT NULL
);

-- Logger names repeat on every line (`@truebit/worker-runner-node-0x<wallet>`): interned.
CREATE TABLE loggers (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);

-- The hot table. `time_ns` is the entry's time for ordering and retention: the Docker
-- receive time, else the node's clock, else the time of the previous entry of the
-- source. Few indexes, partial where the column is mostly uninteresting.
CREATE TABLE entries (
    id            INTEGER PRIMARY KEY,
    source_id     INTEGER NOT NULL,
    pos_major     INTEGER NOT NULL,
    pos_minor     INTEGER NOT NULL,
    time_ns       INTEGER NOT NULL,
    received_ns   INTEGER,
    node_time     INTEGER,
    level         TEXT,
    logger_id     INTEGER,
    version       TEXT,
    kind          TEXT NOT NULL,
    execution_id  TEXT,
    message       TEXT NOT NULL
);
CREATE INDEX entries_time ON entries (time_ns);
CREATE INDEX entries_execution ON entries (execution_id, time_ns) WHERE execution_id IS NOT NULL;
CREATE INDEX entries_kind ON entries (kind, time_ns) WHERE kind <> 'log';
CREATE INDEX entries_level ON entries (level, time_ns) WHERE level IN ('error', 'warn');

-- Entry counts per kind, maintained by the writer (inserts and pruning), so that the
-- summary never scans the entries table.
CREATE TABLE entry_counts (
    kind  TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tasks (
    id                    INTEGER PRIMARY KEY,
    execution_id          TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL,
    task_id               TEXT,
    chain_id              TEXT,
    block_number          INTEGER,
    block_hash            TEXT,
    requester             TEXT,
    reward                TEXT,
    created_ms            INTEGER,
    received_ms           INTEGER,
    received_ns           INTEGER,
    downloaded_ms         INTEGER,
    started_ms            INTEGER,
    started_ns            INTEGER,
    completed_ms          INTEGER,
    completed_ns          INTEGER,
    time_ms               INTEGER GENERATED ALWAYS AS (COALESCE(received_ms, started_ms, completed_ms)) STORED,
    exit_code             INTEGER,
    elapsed_ns            INTEGER,
    elapsed_ms            INTEGER,
    gas_used              INTEGER,
    gas_limit             INTEGER,
    metered_gas_limit     INTEGER,
    memory_peak           INTEGER,
    memory_limit          INTEGER,
    metered_memory_limit  INTEGER,
    call_limit            INTEGER,
    call_peak             INTEGER,
    frame_limit           INTEGER,
    frame_peak            INTEGER,
    execution_timeout_ms  INTEGER,
    required_solutions    INTEGER,
    total_solutions       INTEGER,
    wasm_size             INTEGER,
    wasm_hash             TEXT,
    cached                INTEGER
);
CREATE INDEX tasks_time ON tasks (time_ms);
CREATE INDEX tasks_status ON tasks (status, time_ms);
CREATE INDEX tasks_chain ON tasks (chain_id, time_ms);
CREATE INDEX tasks_task_id ON tasks (task_id) WHERE task_id IS NOT NULL;

-- Task input and output can be large: kept apart so that task lists never read them.
CREATE TABLE task_data (
    task_id  INTEGER PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    input    TEXT,
    output   TEXT
);

CREATE TABLE invoices (
    id               INTEGER PRIMARY KEY,
    invoice_id       INTEGER,
    execution_id     TEXT,
    task_id          TEXT,
    task_created_ts  INTEGER,
    step_gas_price   TEXT,
    byte_gas_price   TEXT,
    time_ns          INTEGER NOT NULL,
    node_time        INTEGER,
    received_ns      INTEGER,
    UNIQUE (invoice_id, execution_id)
);
CREATE INDEX invoices_time ON invoices (time_ns);
CREATE INDEX invoices_execution ON invoices (execution_id) WHERE execution_id IS NOT NULL;

CREATE TABLE invoice_items (
    id            INTEGER PRIMARY KEY,
    invoice_row   INTEGER NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    operation     TEXT NOT NULL,
    account       TEXT,
    steps         TEXT,
    steps_value   INTEGER,
    memory        TEXT,
    memory_value  INTEGER
);
CREATE INDEX invoice_items_invoice ON invoice_items (invoice_row);

CREATE TABLE container_events (
    id              INTEGER PRIMARY KEY,
    container_id    TEXT NOT NULL,
    container_name  TEXT NOT NULL,
    time_ns         INTEGER NOT NULL,
    action          TEXT NOT NULL,
    exit_code       INTEGER,
    UNIQUE (container_id, time_ns, action)
);
CREATE INDEX container_events_time ON container_events (time_ns);

-- One row. `last_time_ns` is the newest entry time seen: older entries (an import of
-- old files) do not overwrite fields that newer ones set.
CREATE TABLE node_status (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    version           TEXT,
    address           TEXT,
    registered_ms     INTEGER,
    registered_ns     INTEGER,
    slots_used        INTEGER,
    slots_total       INTEGER,
    last_time_ns      INTEGER,
    last_received_ns  INTEGER,
    last_node_time    INTEGER
);
INSERT INTO node_status (id) VALUES (1);
"#;
