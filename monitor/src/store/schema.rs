//! Numbered migrations. `PRAGMA user_version` holds the number of the last one applied;
//! `schema_migrations` records when each was applied. Append new migrations to
//! [`MIGRATIONS`]; never edit one that has shipped.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior};

use super::{now_ns, StoreError};
use crate::model::Kind;

pub(crate) struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
    /// Run after `sql`, in the same transaction: for a step whose SQL depends on what
    /// the database holds (version 16 names the ids of words in an index's condition).
    pub then: Option<fn(&Transaction<'_>) -> rusqlite::Result<()>>,
}

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "initial schema",
        sql: V1,
        then: None,
    },
    Migration {
        name: "auth: password, api keys, sessions",
        sql: V2,
        then: None,
    },
    Migration {
        name: "federation: identity, settings, outbox, report log",
        sql: super::federation::MIGRATION,
        then: None,
    },
    Migration {
        name: "settings: retention set from the dashboard",
        sql: super::settings::MIGRATION,
        then: None,
    },
    Migration {
        name: "invoice figures per UTC day, kept by triggers",
        sql: V5,
        then: None,
    },
    Migration {
        name: "container events: inferred from the inspected state; by container",
        sql: V6,
        then: None,
    },
    Migration {
        name: "log retention counts from when an entry was stored",
        sql: V7,
        then: None,
    },
    Migration {
        name: "figures of new tasks and invoices added once per transaction by the writer",
        sql: V8,
        then: None,
    },
    Migration {
        name: "alerts: outbox and delivery results",
        sql: super::alerts::MIGRATION,
        then: None,
    },
    Migration {
        name: "alerts: rule states and incidents",
        sql: super::alerts::MIGRATION_RULES,
        then: None,
    },
    Migration {
        name: "entries: kind, level and version as ids of words",
        sql: V11,
        then: None,
    },
    Migration {
        name: "tasks: failure reason",
        sql: V12,
        then: None,
    },
    Migration {
        name: "alerts: channels defined in the dashboard",
        sql: super::alerts::MIGRATION_CHANNELS,
        then: None,
    },
    Migration {
        name: "containers: the restart count last inspected",
        sql: super::containers::MIGRATION,
        then: None,
    },
    Migration {
        name: "tasks by task id only while open; invoices reach their task by row id",
        sql: V15,
        then: None,
    },
    Migration {
        name: "entries: the kind index leaves out the kinds printed for every task",
        sql: V16,
        then: Some(v16_kind_index),
    },
    Migration {
        name: "invoice items: an index of the penalties",
        sql: V17,
        then: None,
    },
];

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
        if let Some(then) = migration.then {
            then(&tx).map_err(fail)?;
        }
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
-- source. `task_row` is the row id in `tasks` of the entry's execution id, when that task
-- is known. Few indexes, partial where the column is mostly uninteresting.
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
    task_row      INTEGER,
    message       TEXT NOT NULL
);
CREATE INDEX entries_time ON entries (time_ns);
-- An entry's task by row id, not by execution id: execution ids are random, so an index
-- on them takes a write on a random page per entry; task rows grow with time.
CREATE INDEX entries_task ON entries (task_row, time_ns) WHERE task_row IS NOT NULL;
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

/// The end of an upsert into a figures table keyed by `$key` and status: a row that is
/// there already gets the new row's counts and sums added.
macro_rules! figures_add {
    ($key:literal) => {
        concat!(
            "ON CONFLICT (", $key, ", status) DO UPDATE SET n = n + excluded.n,
               cached = cached + excluded.cached, cache_known = cache_known + excluded.cache_known,
               elapsed_n = elapsed_n + excluded.elapsed_n, elapsed_sum = elapsed_sum + excluded.elapsed_sum,
               gas_n = gas_n + excluded.gas_n, gas_sum = gas_sum + excluded.gas_sum,
               e0 = e0 + excluded.e0, e1 = e1 + excluded.e1, e2 = e2 + excluded.e2,
               e3 = e3 + excluded.e3, e4 = e4 + excluded.e4, e5 = e5 + excluded.e5,
               e6 = e6 + excluded.e6, e7 = e7 + excluded.e7, g0 = g0 + excluded.g0,
               g1 = g1 + excluded.g1, g2 = g2 + excluded.g2, g3 = g3 + excluded.g3,
               g4 = g4 + excluded.g4"
        )
    };
}

/// The values of a figures row after its key and status, from one task's `k` (key), `e`
/// (execution time in ms), `g` (gas used), `c` (cache flag) counted `s` times, each
/// wrapped in `$o … $c` (nothing for one row, `sum(` `)` for a group). Bucket edges are
/// those of `truebit_protocol::bucket`.
macro_rules! figure_values {
    ($o:literal, $c:literal) => {
        concat!(
            $o,
            "s",
            $c,
            ", ",
            $o,
            "s * (c IS 1)",
            $c,
            ", ",
            $o,
            "s * (c IS NOT NULL)",
            $c,
            ", ",
            $o,
            "s * (e IS NOT NULL)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e, 0)",
            $c,
            ", ",
            $o,
            "s * (g IS NOT NULL)",
            $c,
            ", ",
            $o,
            "s * IFNULL(g, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e < 100, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 100 AND e < 500, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 500 AND e < 1000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 1000 AND e < 5000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 5000 AND e < 10000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 10000 AND e < 30000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 30000 AND e < 60000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(e >= 60000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(g < 100000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(g >= 100000 AND g < 1000000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(g >= 1000000 AND g < 10000000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(g >= 10000000 AND g < 100000000, 0)",
            $c,
            ", ",
            $o,
            "s * IFNULL(g >= 100000000, 0)",
            $c
        )
    };
}

/// `INSERT INTO $table ($key, status, …sums)`: a task figures table's columns, in the
/// order of `figure_values!`.
macro_rules! task_figures_into {
    ($table:literal, $key:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (",
            $key,
            ", status, n, cached, cache_known, elapsed_n,
               elapsed_sum, gas_n, gas_sum, e0, e1, e2, e3, e4, e5, e6, e7, g0, g1, g2, g3, g4)"
        )
    };
}

/// The head of an upsert into the figures table `$table` keyed by `$key`: its columns, then
/// `SELECT k, st, ` (key and status), followed by `figure_values!` and `figures_add!`.
macro_rules! figures_insert {
    ($table:literal, $key:literal) => {
        concat!(
            task_figures_into!($table, $key),
            "\n             SELECT k, st, "
        )
    };
}

/// Adds the task row `$row` (`NEW` or `OLD`), counted `$sign` times (`1` or `-1`), to the
/// figures table `$table`, whose key column `$key` is `time_ms / $unit_ms`.
macro_rules! task_figures_delta {
    ($table:literal, $key:literal, $unit_ms:literal, $row:literal, $sign:literal) => {
        concat!(
            figures_insert!($table, $key),
            figure_values!("", ""),
            "
             FROM (SELECT COALESCE(",
            $row,
            ".time_ms, 0) / ",
            $unit_ms,
            " AS k, ",
            $row,
            ".status AS st, ",
            $row,
            ".elapsed_ms AS e, ",
            $row,
            ".gas_used AS g, ",
            $row,
            ".cached AS c, ",
            $sign,
            " AS s)
             WHERE true

             ",
            figures_add!($key),
            ";"
        )
    };
}

/// Both figures tables for one task row.
macro_rules! task_figures {
    ($row:literal, $sign:literal) => {
        concat!(
            task_figures_delta!("task_hours", "hour", "3600000", $row, $sign),
            task_figures_delta!("task_days", "day", "86400000", $row, $sign)
        )
    };
}

/// The columns of a figures table after its key (see `task_figures_delta`).
macro_rules! task_figures_columns {
    () => {
        "status       TEXT NOT NULL,
    n            INTEGER NOT NULL DEFAULT 0,
    cached       INTEGER NOT NULL DEFAULT 0,
    cache_known  INTEGER NOT NULL DEFAULT 0,
    elapsed_n    INTEGER NOT NULL DEFAULT 0,
    elapsed_sum  INTEGER NOT NULL DEFAULT 0,
    gas_n        INTEGER NOT NULL DEFAULT 0,
    gas_sum      INTEGER NOT NULL DEFAULT 0,
    e0 INTEGER NOT NULL DEFAULT 0, e1 INTEGER NOT NULL DEFAULT 0, e2 INTEGER NOT NULL DEFAULT 0,
    e3 INTEGER NOT NULL DEFAULT 0, e4 INTEGER NOT NULL DEFAULT 0, e5 INTEGER NOT NULL DEFAULT 0,
    e6 INTEGER NOT NULL DEFAULT 0, e7 INTEGER NOT NULL DEFAULT 0,
    g0 INTEGER NOT NULL DEFAULT 0, g1 INTEGER NOT NULL DEFAULT 0, g2 INTEGER NOT NULL DEFAULT 0,
    g3 INTEGER NOT NULL DEFAULT 0, g4 INTEGER NOT NULL DEFAULT 0,"
    };
}

/// Fills a figures table from the tasks already stored.
macro_rules! task_figures_backfill {
    ($table:literal, $key:literal, $unit_ms:literal) => {
        concat!(
            "INSERT INTO ", $table, " (", $key, ", status, n, cached, cache_known, elapsed_n,
  elapsed_sum, gas_n, gas_sum, e0, e1, e2, e3, e4, e5, e6, e7, g0, g1, g2, g3, g4)
SELECT COALESCE(time_ms, 0) / ", $unit_ms, ", status, count(*), total(cached IS 1),
  total(cached IS NOT NULL), count(elapsed_ms), IFNULL(sum(elapsed_ms), 0), count(gas_used),
  IFNULL(sum(gas_used), 0),
  total(elapsed_ms < 100), total(elapsed_ms >= 100 AND elapsed_ms < 500),
  total(elapsed_ms >= 500 AND elapsed_ms < 1000), total(elapsed_ms >= 1000 AND elapsed_ms < 5000),
  total(elapsed_ms >= 5000 AND elapsed_ms < 10000), total(elapsed_ms >= 10000 AND elapsed_ms < 30000),
  total(elapsed_ms >= 30000 AND elapsed_ms < 60000), total(elapsed_ms >= 60000),
  total(gas_used < 100000), total(gas_used >= 100000 AND gas_used < 1000000),
  total(gas_used >= 1000000 AND gas_used < 10000000),
  total(gas_used >= 10000000 AND gas_used < 100000000), total(gas_used >= 100000000)
FROM tasks GROUP BY 1, 2;
"
        )
    };
}

/// Version 2, for the HTTP API: the operator password (argon2 hash), API keys (SHA-256 of
/// the secret: keys are 256-bit random, so a slow hash adds nothing), login sessions, and
/// per-hour and per-day task figures (`task_hours`, `task_days`) kept current by triggers
/// on `tasks` (whoever writes the tasks), so that statistics over any range read a few
/// hundred small rows instead of scanning a million tasks. Plus an index for the API's
/// task lists.
const V2: &str = concat!(
    r#"
CREATE TABLE auth_password (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    hash    TEXT NOT NULL,
    set_ns  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL UNIQUE,
    secret_sha256  BLOB NOT NULL,
    scope          TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
    created_ns     INTEGER NOT NULL,
    last_used_ns   INTEGER,
    revoked_ns     INTEGER
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_ns IS NULL;

CREATE TABLE sessions (
    token_sha256  BLOB PRIMARY KEY,
    csrf_token    TEXT NOT NULL,
    created_ns    INTEGER NOT NULL,
    expires_ns    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions (expires_ns);

-- Task figures per UTC hour (hour = tasks.time_ms / 3600000) and per UTC day
-- (day = time_ms / 86400000). e0..e7: execution-time buckets, g0..g4: gas-used buckets.
CREATE TABLE task_hours (
    hour         INTEGER NOT NULL,
    "#,
    task_figures_columns!(),
    r#"
    PRIMARY KEY (hour, status)
) WITHOUT ROWID;
CREATE TABLE task_days (
    day          INTEGER NOT NULL,
    "#,
    task_figures_columns!(),
    r#"
    PRIMARY KEY (day, status)
) WITHOUT ROWID;

CREATE TRIGGER task_figures_insert AFTER INSERT ON tasks BEGIN
"#,
    task_figures!("NEW", "1"),
    r#"
END;

CREATE TRIGGER task_figures_update
AFTER UPDATE OF status, received_ms, started_ms, completed_ms, elapsed_ms, gas_used, cached ON tasks
WHEN OLD.status IS NOT NEW.status OR OLD.time_ms IS NOT NEW.time_ms
  OR OLD.elapsed_ms IS NOT NEW.elapsed_ms OR OLD.gas_used IS NOT NEW.gas_used
  OR OLD.cached IS NOT NEW.cached
BEGIN
"#,
    task_figures!("OLD", "-1"),
    task_figures!("NEW", "1"),
    r#"
END;

CREATE TRIGGER task_figures_delete AFTER DELETE ON tasks BEGIN
"#,
    task_figures!("OLD", "-1"),
    r#"
END;

"#,
    task_figures_backfill!("task_hours", "hour", "3600000"),
    task_figures_backfill!("task_days", "day", "86400000"),
    r#"
-- Task lists filtered by chain and status together.
CREATE INDEX tasks_chain_status ON tasks (chain_id, status, time_ms);
"#
);

/// Version 5: invoices and line-item totals per UTC day (`invoice_days`, by operation;
/// `invoice_day_counts`), kept current by triggers like the task figures, so that
/// earnings over a month read a few dozen rows instead of every invoice of the month.
/// Line items are only ever removed with their invoice (pruning deletes invoices; the
/// items go by `ON DELETE CASCADE`), so the invoice's delete trigger takes its items'
/// figures back while the invoice row still exists.
/// The value of one line item, as the earnings count it: steps × step gas price + memory ×
/// byte gas price (each part 0 when not a number).
macro_rules! item_value {
    ($item:literal, $invoice:literal) => {
        concat!(
            "IFNULL(",
            $item,
            ".steps_value * CAST(",
            $invoice,
            ".step_gas_price AS REAL) + IFNULL(",
            $item,
            ".memory_value * CAST(",
            $invoice,
            ".byte_gas_price AS REAL), 0), 0)"
        )
    };
}

const V5: &str = concat!(
    r#"
CREATE TABLE invoice_day_counts (
    day       INTEGER PRIMARY KEY,
    invoices  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE invoice_days (
    day        INTEGER NOT NULL,
    operation  TEXT NOT NULL,
    items      INTEGER NOT NULL DEFAULT 0,
    steps      INTEGER NOT NULL DEFAULT 0,
    memory     INTEGER NOT NULL DEFAULT 0,
    value      REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, operation)
) WITHOUT ROWID;

CREATE TRIGGER invoice_figures_insert AFTER INSERT ON invoices BEGIN
  INSERT INTO invoice_day_counts (day, invoices) VALUES (NEW.time_ns / 86400000000000, 1)
    ON CONFLICT (day) DO UPDATE SET invoices = invoices + 1;
END;

CREATE TRIGGER invoice_item_figures_insert AFTER INSERT ON invoice_items BEGIN
  INSERT INTO invoice_days (day, operation, items, steps, memory, value)
    SELECT i.time_ns / 86400000000000, NEW.operation, 1, IFNULL(NEW.steps_value, 0),
      IFNULL(NEW.memory_value, 0), "#,
    item_value!("NEW", "i"),
    r#"
    FROM invoices i WHERE i.id = NEW.invoice_row
    ON CONFLICT (day, operation) DO UPDATE SET items = items + excluded.items,
      steps = steps + excluded.steps, memory = memory + excluded.memory,
      value = value + excluded.value;
END;

CREATE TRIGGER invoice_figures_delete BEFORE DELETE ON invoices BEGIN
  UPDATE invoice_day_counts SET invoices = invoices - 1
    WHERE day = OLD.time_ns / 86400000000000;
  UPDATE invoice_days SET
      items = items - (SELECT count(*) FROM invoice_items li
        WHERE li.invoice_row = OLD.id AND li.operation = invoice_days.operation),
      steps = steps - (SELECT IFNULL(sum(li.steps_value), 0) FROM invoice_items li
        WHERE li.invoice_row = OLD.id AND li.operation = invoice_days.operation),
      memory = memory - (SELECT IFNULL(sum(li.memory_value), 0) FROM invoice_items li
        WHERE li.invoice_row = OLD.id AND li.operation = invoice_days.operation),
      value = value - (SELECT total("#,
    item_value!("li", "OLD"),
    r#") FROM invoice_items li
        WHERE li.invoice_row = OLD.id AND li.operation = invoice_days.operation)
    WHERE day = OLD.time_ns / 86400000000000
      AND operation IN (SELECT operation FROM invoice_items WHERE invoice_row = OLD.id);
  DELETE FROM invoice_day_counts WHERE day = OLD.time_ns / 86400000000000 AND invoices <= 0;
END;

INSERT INTO invoice_day_counts (day, invoices)
  SELECT time_ns / 86400000000000, count(*) FROM invoices GROUP BY 1;
INSERT INTO invoice_days (day, operation, items, steps, memory, value)
  SELECT i.time_ns / 86400000000000, li.operation, count(*), IFNULL(sum(li.steps_value), 0),
    IFNULL(sum(li.memory_value), 0), total("#,
    item_value!("li", "i"),
    r#")
  FROM invoices i JOIN invoice_items li ON li.invoice_row = i.id GROUP BY 1, 2;
"#
);

/// Version 6: a container event the source inferred from `docker inspect` (a stop or
/// start that no Docker event showed) is marked; the source looks events up by container.
const V6: &str = r#"
ALTER TABLE container_events ADD COLUMN inferred INTEGER NOT NULL DEFAULT 0;
CREATE INDEX container_events_container ON container_events (container_id, time_ns);
"#;

/// Version 7: log retention counts from when an entry was stored, not from the time it
/// carries, so that an imported old log is kept as long as a live one. `entry_marks`
/// holds the last entry id stored in each hour of the monitor's clock (ids only grow);
/// pruning deletes the ids up to the mark of the last hour past the retention. Entries
/// stored before this version count as stored when it was applied.
const V7: &str = r#"
CREATE TABLE entry_marks (
    hour     INTEGER PRIMARY KEY,
    last_id  INTEGER NOT NULL
) STRICT;
INSERT INTO entry_marks (hour, last_id)
  SELECT unixepoch() / 3600, (SELECT max(id) FROM entries)
  WHERE EXISTS (SELECT 1 FROM entries);
"#;

/// Version 8: the figures of *new* tasks, invoices and line items are added by the writer
/// once per transaction, for all the rows the transaction inserted (`FIGURES_OF_NEW_ROWS`),
/// instead of by a trigger per row: an import inserts tens of thousands of tasks and
/// invoices, and the per-row triggers were a quarter of the writer's time. Updates and
/// deletes keep their triggers (they need the old row). The writer is the only code that
/// inserts these rows.
const V8: &str = "
DROP TRIGGER task_figures_insert;
DROP TRIGGER invoice_figures_insert;
DROP TRIGGER invoice_item_figures_insert;
";

/// Version 11: an entry's kind, level and version are the ids of their `words` row instead
/// of their text on every row: the writer binds three integers instead of three strings
/// per entry (SQLite copies every bound string), rows are smaller, and the partial indexes
/// compare integers. `log`, `error` and `warn` have fixed ids, which the partial indexes
/// name. The entries are copied into the new table (the ids stay).
const V11: &str = r#"
CREATE TABLE words (
    id    INTEGER PRIMARY KEY,
    word  TEXT NOT NULL UNIQUE
);
INSERT INTO words (id, word) VALUES (1, 'log'), (2, 'error'), (3, 'warn');
INSERT OR IGNORE INTO words (word) SELECT DISTINCT kind FROM entries;
INSERT OR IGNORE INTO words (word) SELECT DISTINCT level FROM entries WHERE level IS NOT NULL;
INSERT OR IGNORE INTO words (word)
  SELECT DISTINCT version FROM entries WHERE version IS NOT NULL;

CREATE TABLE entries_v9 (
    id            INTEGER PRIMARY KEY,
    source_id     INTEGER NOT NULL,
    pos_major     INTEGER NOT NULL,
    pos_minor     INTEGER NOT NULL,
    time_ns       INTEGER NOT NULL,
    received_ns   INTEGER,
    node_time     INTEGER,
    level_id      INTEGER,
    logger_id     INTEGER,
    version_id    INTEGER,
    kind_id       INTEGER NOT NULL,
    execution_id  TEXT,
    task_row      INTEGER,
    message       TEXT NOT NULL
);
INSERT INTO entries_v9 (id, source_id, pos_major, pos_minor, time_ns, received_ns, node_time,
    level_id, logger_id, version_id, kind_id, execution_id, task_row, message)
  SELECT e.id, e.source_id, e.pos_major, e.pos_minor, e.time_ns, e.received_ns, e.node_time,
    (SELECT w.id FROM words w WHERE w.word = e.level), e.logger_id,
    (SELECT w.id FROM words w WHERE w.word = e.version),
    (SELECT w.id FROM words w WHERE w.word = e.kind), e.execution_id, e.task_row, e.message
  FROM entries e ORDER BY e.id;
DROP TABLE entries;
ALTER TABLE entries_v9 RENAME TO entries;
CREATE INDEX entries_time ON entries (time_ns);
CREATE INDEX entries_task ON entries (task_row, time_ns) WHERE task_row IS NOT NULL;
-- 1 is 'log'; 2 and 3 are 'error' and 'warn'.
CREATE INDEX entries_kind ON entries (kind_id, time_ns) WHERE kind_id <> 1;
CREATE INDEX entries_level ON entries (level_id, time_ns) WHERE level_id IN (2, 3);
"#;

/// The penalty line items of the invoices with `?1 <= time_ns < ?2`, per account (as
/// printed): account, items, value in gas units (the day figures' value). It reads the
/// penalties' own index (schema version 17), which its condition names.
pub(crate) const PENALTIES_BY_ACCOUNT: &str = concat!(
    "SELECT li.account, count(*), total(",
    item_value!("li", "i"),
    ") FROM invoice_items li JOIN invoices i ON i.id = li.invoice_row
     WHERE li.operation = 'penalty' AND i.time_ns >= ?1 AND i.time_ns < ?2
     GROUP BY li.account ORDER BY 3 DESC, 1"
);

/// Version 12: a failed task's reason, the first line of the stderr its completion took
/// (docs/LOGFORMAT.md). Tasks stored before have none: their stderr entries were not
/// attributed, and the parser state that could attribute them is gone.
const V12: &str = "ALTER TABLE tasks ADD COLUMN error TEXT;";

/// Version 15: two indexes on random keys, written for every task and every invoice,
/// give way to smaller ones (docs/PERFORMANCE.md, import):
///
/// - `tasks_task_id` served one statement, the writer's download line, which changes
///   only tasks still received or executing: the index now holds those tasks only
///   (`tasks_open_task_id`), so a task stored final never enters it.
/// - `invoices_execution` served the invoices of one execution id. An invoice now holds
///   the row id of its task (`task_row`, set by the writer when the task is stored, as
///   for entries), indexed in the order tasks are stored; one stored before its task, or
///   whose task is gone, is found by its execution id in a partial index of those only.
///   Invariant: `task_row` is NULL or the row of the task with the invoice's execution
///   id (the trigger clears it when that task is deleted, before its row id can be
///   reused).
const V15: &str = "
DROP INDEX tasks_task_id;
CREATE INDEX tasks_open_task_id ON tasks (task_id)
  WHERE task_id IS NOT NULL AND status IN ('received', 'executing');

ALTER TABLE invoices ADD COLUMN task_row INTEGER;
UPDATE invoices SET task_row = (SELECT t.id FROM tasks t WHERE t.execution_id = invoices.execution_id)
  WHERE execution_id IS NOT NULL;
DROP INDEX invoices_execution;
CREATE INDEX invoices_task ON invoices (task_row) WHERE task_row IS NOT NULL;
CREATE INDEX invoices_unlinked ON invoices (execution_id)
  WHERE task_row IS NULL AND execution_id IS NOT NULL;
CREATE TRIGGER tasks_unlink_invoices AFTER DELETE ON tasks BEGIN
  UPDATE invoices SET task_row = NULL WHERE task_row = OLD.id;
END;
";

/// Version 16: the kind index (`entries_kind`) leaves out the entries of the kinds a node
/// prints for every task ([`Kind::EVERY_TASK`]), two entries in five of a working node's
/// log: inserting them into a second time-ordered index was a tenth of the writer's work
/// (docs/PERFORMANCE.md, import). A filter by one of those kinds reads the time index,
/// where about one entry in twenty matches. Every kind gets its `words` row here, so that
/// the condition can name the ids of those kinds; [`KindIndex::read`] reads them back
/// from the index itself.
const V16: &str = "";

fn v16_kind_index(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let mut add = tx.prepare("INSERT OR IGNORE INTO words (word) VALUES (?1)")?;
    for kind in Kind::ALL {
        add.execute([kind.as_str()])?;
    }
    let mut left_out = vec![1];
    let mut find = tx.prepare("SELECT id FROM words WHERE word = ?1")?;
    for kind in Kind::EVERY_TASK {
        left_out.push(find.query_row([kind.as_str()], |row| row.get(0))?);
    }
    left_out.sort_unstable();
    tx.execute_batch(&format!(
        "DROP INDEX entries_kind;
         CREATE INDEX entries_kind ON entries (kind_id, time_ns) WHERE {};",
        KindIndex::condition(&left_out, "kind_id")
    ))
}

/// Version 17: the penalty line items get an index of their own. The invoices page and
/// `GET /api/earnings` total the penalties of the last 30 days by account: on a year of a
/// busy node (a million invoices) that read every invoice of the 30 days and its items,
/// 45–51 ms per page (docs/PERFORMANCE.md), to find penalties a node seldom has.
const V17: &str = "
CREATE INDEX invoice_items_penalty ON invoice_items (invoice_row) WHERE operation = 'penalty';
";

/// The kind index as this database has it (schema version 16): the `words` ids its
/// condition leaves out, read from the index's own SQL, so that a query repeats exactly
/// that condition whatever [`Kind::EVERY_TASK`] says in a later build (changing which
/// kinds the index holds takes a migration that rebuilds it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KindIndex {
    /// The ids its condition names, in its order.
    left_out: Vec<i64>,
    /// Per kind, in [`Kind::ALL`] order: whether the index holds its entries.
    holds: [bool; Kind::ALL.len()],
}

impl KindIndex {
    /// `column <> id AND …` for every id. Inequalities, not `NOT IN`: SQLite builds a
    /// temporary b-tree of an `IN` list each time an insert evaluates the condition (it
    /// took the writer's instructions up by 45 %).
    fn condition(ids: &[i64], column: &str) -> String {
        let terms: Vec<String> = ids.iter().map(|id| format!("{column} <> {id}")).collect();
        terms.join(" AND ")
    }

    /// The index's condition on `column`: a query repeats it, term for term, for the
    /// planner to use the index.
    pub(crate) fn condition_on(&self, column: &str) -> String {
        Self::condition(&self.left_out, column)
    }

    /// Whether the index holds the entries of `kind` (a kind without a `words` row yet
    /// gets an id the condition does not name).
    pub(crate) fn holds(&self, kind: Kind) -> bool {
        self.holds[kind as usize]
    }

    pub(crate) fn read(conn: &Connection) -> rusqlite::Result<KindIndex> {
        let sql: String = conn.query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'entries_kind'",
            [],
            |row| row.get(0),
        )?;
        let left_out: Vec<i64> = sql
            .split_once(" WHERE ")
            .map_or("", |(_, condition)| condition)
            .split(" AND ")
            .filter_map(|term| term.trim().strip_prefix("kind_id <> "))
            .filter_map(|id| id.trim().parse().ok())
            .collect();
        let mut holds = [true; Kind::ALL.len()];
        let mut find = conn.prepare("SELECT id FROM words WHERE word = ?1")?;
        for kind in Kind::ALL {
            let id: Option<i64> = find
                .query_row([kind.as_str()], |row| row.get(0))
                .optional()?;
            holds[kind as usize] = !id.is_some_and(|id| left_out.contains(&id));
        }
        Ok(KindIndex { left_out, holds })
    }
}

/// Adds one (key, status) group of new task rows, summed by the writer, to the figures
/// table `$table`: the key, the status, then the sums in the order of `figure_values!`.
macro_rules! task_figures_add {
    ($table:literal, $key:literal) => {
        concat!(
            task_figures_into!($table, $key),
            "
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
               ?17, ?18, ?19, ?20, ?21, ?22)
             ",
            figures_add!($key)
        )
    };
}

/// The figures of the tasks a transaction inserted, summed by the writer per (hour,
/// status) and per (day, status) (`writer/figures.rs`, `TaskFigures`): one upsert per
/// group, per hour and per day, instead of a query that computes the sums over the new
/// rows (it was a tenth of the writer's work during an import).
pub(crate) const TASK_FIGURES_ADD: [&str; 2] = [
    task_figures_add!("task_hours", "hour"),
    task_figures_add!("task_days", "day"),
];

/// What the writer runs at the end of each transaction (schema version 8 on), each with
/// the largest row id its table had when the transaction began: the figures of the new
/// invoices and of their new line items. (Those of the new tasks: `TASK_FIGURES_ADD`.)
pub(crate) const FIGURES_OF_NEW_ROWS: [(&str, &str); 2] = [
    (
        "invoices",
        "INSERT INTO invoice_day_counts (day, invoices)
           SELECT time_ns / 86400000000000, count(*) FROM invoices WHERE id > ?1 GROUP BY 1
           ON CONFLICT (day) DO UPDATE SET invoices = invoices + excluded.invoices",
    ),
    (
        "invoice_items",
        concat!(
            "INSERT INTO invoice_days (day, operation, items, steps, memory, value)
               SELECT i.time_ns / 86400000000000, li.operation, count(*),
                 sum(IFNULL(li.steps_value, 0)), sum(IFNULL(li.memory_value, 0)), total(",
            item_value!("li", "i"),
            r#")
               FROM invoice_items li JOIN invoices i ON i.id = li.invoice_row
               WHERE li.id > ?1 GROUP BY 1, 2
               ON CONFLICT (day, operation) DO UPDATE SET items = items + excluded.items,
                 steps = steps + excluded.steps, memory = memory + excluded.memory,
                 value = value + excluded.value"#
        ),
    ),
];

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{KindIndex, MIGRATIONS, SCHEMA_VERSION};
    use crate::model::{Kind, Level};
    use crate::store::query::LogFilter;
    use crate::store::{Store, StoreConfig};

    /// Version 15 links stored invoices to their tasks: each execution's invoices are found
    /// as before (linked, without a task, or whose task is deleted later, also when a new
    /// task takes the deleted one's row id), and download lines still reach open tasks.
    #[test]
    fn version_15_finds_the_invoices_of_an_execution_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v14.db");
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..14] {
                conn.execute_batch(migration.sql).expect(migration.name);
            }
            conn.pragma_update(None, "user_version", 14)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO tasks (id, execution_id, status, task_id, received_ms)
                 VALUES (1, 'exec-1', 'completed', 'task-1', 1000),
                        (2, 'exec-2', 'received', 'task-2', 2000);
                 INSERT INTO invoices (id, invoice_id, execution_id, time_ns)
                 VALUES (1, 1, 'exec-1', 1000), (2, 2, 'exec-2', 2000),
                        (3, 3, 'exec-3', 3000), (4, 4, NULL, 4000), (5, 5, 'exec-1', 5000);",
            )
            .expect("rows of version 14");
        }
        let store = Store::open(StoreConfig::new(&path)).expect("open and migrate");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let invoices_of = |id: &str| -> Vec<i64> {
            let invoices = store.invoices_of(id).expect("invoices");
            invoices.iter().map(|i| i.id).collect()
        };
        assert_eq!(invoices_of("exec-1"), vec![5, 1]);
        assert_eq!(invoices_of("exec-2"), vec![2]);
        assert_eq!(invoices_of("exec-3"), vec![3]);
        assert_eq!(invoices_of("exec-4"), Vec::<i64>::new());
        let conn = Connection::open(&path).expect("second connection");
        let links = |conn: &Connection| -> Vec<(i64, Option<i64>)> {
            let mut stmt = conn
                .prepare("SELECT id, task_row FROM invoices ORDER BY id")
                .expect("prepare");
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("query");
            rows.map(|r| r.expect("row")).collect()
        };
        assert_eq!(
            links(&conn),
            vec![
                (1, Some(1)),
                (2, Some(2)),
                (3, None),
                (4, None),
                (5, Some(1))
            ]
        );
        // Only open tasks are in the task id index; the download line's update uses it.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN UPDATE tasks SET downloaded_ms = 1
                 WHERE task_id = 'task-2' AND status IN ('received', 'executing')",
                [],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("tasks_open_task_id"), "{plan}");
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM tasks INDEXED BY tasks_open_task_id
                 WHERE task_id IS NOT NULL AND status IN ('received', 'executing')",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(indexed, 1);
        // The task with the largest row id goes; a new task takes its row id.
        conn.execute_batch(
            "DELETE FROM tasks WHERE execution_id = 'exec-2';
             INSERT INTO tasks (execution_id, status, received_ms) VALUES ('exec-9', 'received', 9000);",
        )
        .expect("delete and insert");
        let reused: i64 = conn
            .query_row(
                "SELECT id FROM tasks WHERE execution_id = 'exec-9'",
                [],
                |r| r.get(0),
            )
            .expect("new task");
        assert_eq!(reused, 2);
        assert_eq!(invoices_of("exec-2"), vec![2]);
        assert_eq!(invoices_of("exec-9"), Vec::<i64>::new());
        assert_eq!(links(&conn)[1], (2, None));
    }

    /// Version 12 adds the failure reason: a task stored before reads back without one,
    /// and a new failed task's reason is kept.
    #[test]
    fn version_12_gives_stored_tasks_no_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v11.db");
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..11] {
                conn.execute_batch(migration.sql).expect(migration.name);
            }
            conn.pragma_update(None, "user_version", 11)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO tasks (execution_id, status, received_ms, exit_code)
                 VALUES ('exec-1', 'failed', 1000, 101);",
            )
            .expect("a task of version 11");
        }
        let store = Store::open(StoreConfig::new(&path)).expect("open and migrate");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let task = store.task("exec-1").expect("read").expect("task");
        assert_eq!(
            (task.status.as_str(), task.exit_code, task.error),
            ("failed", Some(101), None)
        );
    }

    /// Version 11 moves the kind, level and version of stored entries into `words`: the
    /// entries read back with the same ids and words, and the filters by kind and level
    /// (indexed or not) find the same rows.
    #[test]
    fn version_11_keeps_the_words_and_ids_of_stored_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v10.db");
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..10] {
                conn.execute_batch(migration.sql).expect(migration.name);
            }
            conn.pragma_update(None, "user_version", 10)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO sources (id, name, created_ns) VALUES (1, 'file:old.log', 0);
                 INSERT INTO loggers (id, name) VALUES (1, '@truebit/worker-runner-node');
                 INSERT INTO entries (id, source_id, pos_major, pos_minor, time_ns, received_ns,
                   node_time, level, logger_id, version, kind, execution_id, task_row, message)
                 VALUES
                   (5, 1, 0, 1, 1000, NULL, 1, 'info', 1, '2.4.0', 'log', NULL, NULL, 'hello'),
                   (6, 1, 0, 2, 2000, 2000, 2, 'error', 1, '2.4.0', 'task_received', 'exec-1',
                     NULL, 'received'),
                   (9, 1, 0, 3, 3000, NULL, 3, 'notice', 1, '2.5.0', 'log', NULL, NULL, 'odd'),
                   (10, 1, 0, 4, 4000, NULL, NULL, NULL, NULL, NULL, 'raw', NULL, NULL, 'raw');
                 INSERT INTO entry_counts (kind, n) VALUES ('log', 2), ('task_received', 1),
                   ('raw', 1);",
            )
            .expect("rows of version 10");
        }
        let store = Store::open(StoreConfig::new(&path)).expect("open and migrate");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let words = |entries: Vec<crate::store::StoredEntry>| {
            entries
                .into_iter()
                .map(|e| {
                    (
                        e.id,
                        e.level.map(|l| l.as_str().to_owned()),
                        e.version,
                        e.kind,
                        e.logger,
                        e.execution_id,
                        e.message,
                    )
                })
                .collect::<Vec<_>>()
        };
        let logger = || Some("@truebit/worker-runner-node".to_owned());
        assert_eq!(
            words(store.entries(10).expect("entries")),
            vec![
                (10, None, None, Kind::Raw, None, None, "raw".into()),
                (
                    9,
                    Some("notice".into()),
                    Some("2.5.0".into()),
                    Kind::Log,
                    logger(),
                    None,
                    "odd".into()
                ),
                (
                    6,
                    Some("error".into()),
                    Some("2.4.0".into()),
                    Kind::TaskReceived,
                    logger(),
                    Some("exec-1".into()),
                    "received".into()
                ),
                (
                    5,
                    Some("info".into()),
                    Some("2.4.0".into()),
                    Kind::Log,
                    logger(),
                    None,
                    "hello".into()
                ),
            ]
        );
        let ids = |filter: LogFilter| -> Vec<i64> {
            let page = store.logs_page(&filter, None, 10).expect("page");
            page.items.iter().map(|e| e.id).collect()
        };
        let kind = |kind| LogFilter {
            kind: Some(kind),
            ..LogFilter::default()
        };
        let level = |level| LogFilter {
            level: Some(level),
            ..LogFilter::default()
        };
        assert_eq!(ids(kind(Kind::TaskReceived)), vec![6]);
        assert_eq!(ids(kind(Kind::Log)), vec![9, 5]);
        assert_eq!(ids(kind(Kind::Invoice)), Vec::<i64>::new());
        assert_eq!(ids(level(Level::Error)), vec![6]);
        assert_eq!(ids(level(Level::Info)), vec![5]);
        assert_eq!(ids(level(Level::Other("notice".into()))), vec![9]);
        let text = LogFilter {
            text: Some("e".into()),
            text_skips_kinds: vec![Kind::TaskReceived, Kind::Invoice],
            ..LogFilter::default()
        };
        assert_eq!(ids(text), vec![5]);
        assert_eq!(store.summary().expect("summary").entries_of(Kind::Log), 2);
        store.close().expect("close");
    }

    /// Version 16 leaves the kinds printed for every task out of the kind index: every
    /// kind still filters to exactly its entries, newest first, page after page, and the
    /// index holds the other kinds' entries only (the planner uses it for them).
    #[test]
    fn version_16_filters_every_kind_as_before_with_a_smaller_kind_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v15.db");
        // log (1), raw, task_received, invoice, node_registered: ids as a version 15
        // database gave them, in the order the node printed them.
        let cycle = [1, 4, 5, 6, 7, 5, 6, 1];
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..15] {
                conn.execute_batch(migration.sql).expect(migration.name);
            }
            conn.pragma_update(None, "user_version", 15)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO sources (id, name, created_ns) VALUES (1, 'file:old.log', 0);
                 INSERT INTO words (id, word) VALUES (4, 'raw'), (5, 'task_received'),
                   (6, 'invoice'), (7, 'node_registered'), (8, '2.4.0');",
            )
            .expect("words of version 15");
            let mut insert = conn
                .prepare(
                    "INSERT INTO entries (id, source_id, pos_major, pos_minor, time_ns, kind_id,
                       version_id, message) VALUES (?1, 1, 0, ?1, ?2, ?3, 8, 'm')",
                )
                .expect("prepare");
            for n in 0..40_i64 {
                // Two entries share a time now and then: the order falls back on the id.
                let time = 1_000 * (n - n % 3 / 2);
                insert
                    .execute((n + 1, time, cycle[n as usize % cycle.len()]))
                    .expect("entry");
            }
        }
        let store = Store::open(StoreConfig::new(&path)).expect("open and migrate");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let conn = Connection::open(&path).expect("second connection");
        // The ids a version 15 database gave stay; every kind has one now.
        let id_of = |word: &str| -> i64 {
            conn.query_row("SELECT id FROM words WHERE word = ?1", [word], |r| r.get(0))
                .expect(word)
        };
        assert_eq!(
            [
                id_of("raw"),
                id_of("task_received"),
                id_of("invoice"),
                id_of("2.4.0")
            ],
            [4, 5, 6, 8]
        );
        for kind in Kind::ALL {
            id_of(kind.as_str());
        }
        let expected = |kind: Kind| -> Vec<i64> {
            let mut stmt = conn
                .prepare(
                    "SELECT e.id FROM entries e JOIN words w ON w.id = e.kind_id
                     WHERE w.word = ?1 ORDER BY e.time_ns DESC, e.id DESC",
                )
                .expect("prepare");
            let rows = stmt
                .query_map([kind.as_str()], |r| r.get(0))
                .expect("query");
            rows.map(|r| r.expect("row")).collect()
        };
        for kind in Kind::ALL {
            let filter = LogFilter {
                kind: Some(kind),
                ..LogFilter::default()
            };
            // Three at a time, to the end.
            let mut found = Vec::new();
            let mut after = None;
            loop {
                let page = store.logs_page(&filter, after, 3).expect("page");
                found.extend(page.items.iter().map(|e| e.id));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(found, expected(kind), "{kind:?}");
        }
        assert_eq!(expected(Kind::TaskReceived).len(), 10);
        // The index holds raw and node_registered entries only.
        let in_index: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM entries INDEXED BY entries_kind WHERE {}",
                    KindIndex::read(&conn)
                        .expect("index")
                        .condition_on("kind_id")
                ),
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(in_index, 10);
        let plan = |kind: Kind| -> String {
            conn.query_row(
                &format!(
                    "EXPLAIN QUERY PLAN SELECT e.id FROM entries e
                     WHERE e.kind_id = {} AND {} ORDER BY e.time_ns DESC, e.id DESC LIMIT 3",
                    id_of(kind.as_str()),
                    KindIndex::read(&conn)
                        .expect("index")
                        .condition_on("e.kind_id")
                ),
                [],
                |r| r.get(3),
            )
            .expect("plan")
        };
        assert!(
            plan(Kind::Raw).contains("entries_kind"),
            "{}",
            plan(Kind::Raw)
        );
        let index = KindIndex::read(&conn).expect("index");
        let held: Vec<Kind> = Kind::ALL.into_iter().filter(|k| index.holds(*k)).collect();
        assert_eq!(
            held,
            [Kind::Raw, Kind::NodeRegistered, Kind::ExecutionStderr]
        );
        store.close().expect("close");
    }

    /// Version 17: the penalties by account come from the penalties' own index, with the
    /// same totals as a read of every invoice of the range and its items.
    #[test]
    fn version_17_totals_the_penalties_through_their_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v17.db");
        let store = Store::open(StoreConfig::new(&path)).expect("open");
        let conn = Connection::open(&path).expect("second connection");
        const DAY: i64 = 86_400_000_000_000;
        let mut invoice = conn
            .prepare(
                "INSERT INTO invoices (id, invoice_id, step_gas_price, byte_gas_price, time_ns)
                 VALUES (?1, ?1, '2', '0.5', ?2)",
            )
            .expect("prepare");
        let mut item = conn
            .prepare(
                "INSERT INTO invoice_items (invoice_row, position, operation, account,
                   steps_value, memory_value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .expect("prepare");
        for n in 1..=60_i64 {
            invoice.execute((n, n * DAY / 4)).expect("invoice");
            item.execute((n, 0, "charge", "0xnode", 100, 10))
                .expect("item");
            if n % 4 == 0 {
                let account = if n % 8 == 0 { "0xnode" } else { "0xother" };
                item.execute((n, 1, "penalty", account, n, 2))
                    .expect("penalty");
            }
        }
        let expected: Vec<(Option<String>, i64, f64)> = {
            let mut stmt = conn
                .prepare(concat!(
                    "SELECT li.account, count(*), total(",
                    item_value!("li", "i"),
                    ") FROM invoices i NOT INDEXED JOIN invoice_items li ON li.invoice_row = i.id
                     WHERE i.time_ns >= ?1 AND i.time_ns < ?2 AND li.operation = 'penalty'
                     GROUP BY li.account ORDER BY 3 DESC, 1"
                ))
                .expect("prepare");
            let rows = stmt
                .query_map((2 * DAY, 12 * DAY), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .expect("query");
            rows.map(|r| r.expect("row")).collect()
        };
        assert_eq!(expected.len(), 2);
        let found: Vec<(Option<String>, i64, f64)> = store
            .penalties_by_account(2 * DAY, 12 * DAY)
            .expect("penalties")
            .into_iter()
            .map(|t| (t.account, t.items as i64, t.value))
            .collect();
        assert_eq!(found, expected);
        let plan: Vec<String> = {
            let mut stmt = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN {}",
                    super::PENALTIES_BY_ACCOUNT
                ))
                .expect("prepare");
            let rows = stmt.query_map((0, 1), |r| r.get(3)).expect("query");
            rows.map(|r| r.expect("row")).collect()
        };
        assert!(
            plan.iter()
                .any(|step| step.contains("invoice_items_penalty")),
            "{plan:?}"
        );
        store.close().expect("close");
    }
}
