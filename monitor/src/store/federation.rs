//! Federation tables: the installation's identity, the operator's settings, the
//! window schedule and counters, the outbox and the transparency log. Only
//! `monitor::federation` calls these.
//!
//! - `federation_identity`: the node key and the HMAC salt (one row). When it exists the
//!   database file and its WAL/SHM files are made private (mode 0600).
//! - `federation_settings`: on/off, level, continent (one row, absent until the operator
//!   first changes them: then the configuration's defaults apply).
//! - `federation_state`: the next window to report, totals (one row).
//! - `federation_outbox`: signed reports waiting for delivery, one per window; written in
//!   the same transaction that advances the schedule, deleted when the server has them.
//! - `federation_reports`: the transparency log, the exact bytes of every report queued,
//!   sent, blocked or dropped, kept [`LOG_RETENTION_MS`].

use std::path::Path;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use truebit_protocol::report::{Continent, Level};
use truebit_protocol::window::{WindowStart, WINDOW_SECS};

use super::{Store, StoreError};
use crate::model::ContainerAction;

/// Reports (queued or logged) are kept this long: 7 days.
pub const LOG_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// Migration "federation: identity, settings, outbox, report log".
pub(super) const MIGRATION: &str = r#"
CREATE TABLE federation_identity (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    secret_key  BLOB NOT NULL CHECK (length(secret_key) = 32),
    salt        BLOB NOT NULL CHECK (length(salt) = 32),
    created_ns  INTEGER NOT NULL
);

CREATE TABLE federation_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    enabled     INTEGER NOT NULL,
    level       TEXT NOT NULL,
    continent   TEXT,
    updated_ns  INTEGER NOT NULL
);

-- `next_window` is NULL while federation is off: windows of a disabled period are never
-- reported.
CREATE TABLE federation_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    next_window       INTEGER,
    sent_total        INTEGER NOT NULL DEFAULT 0,
    blocked_total     INTEGER NOT NULL DEFAULT 0,
    dropped_total     INTEGER NOT NULL DEFAULT 0,
    last_sent_window  INTEGER,
    last_sent_ns      INTEGER
);
INSERT INTO federation_state (id) VALUES (1);

-- outcome: queued | sent | blocked | dropped. `bytes`: the wire bytes (queued, sent,
-- dropped) or the bytes the validator blocked.
CREATE TABLE federation_reports (
    id            INTEGER PRIMARY KEY,
    window_start  INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    code          TEXT,
    reason        TEXT,
    cover         INTEGER,
    task_items    INTEGER,
    bytes         BLOB NOT NULL,
    delay_ms      INTEGER,
    created_ns    INTEGER NOT NULL,
    sent_ns       INTEGER
);
CREATE INDEX federation_reports_created ON federation_reports (created_ns);

CREATE TABLE federation_outbox (
    window_start  INTEGER PRIMARY KEY,
    report_id     INTEGER NOT NULL,
    wire          BLOB NOT NULL,
    send_at_ms    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_ns    INTEGER NOT NULL
);
"#;

/// The operator's federation choices as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoredSettings {
    pub enabled: bool,
    pub level: Level,
    pub continent: Option<Continent>,
}

/// Schedule position and totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FederationState {
    pub next_window: Option<u64>,
    pub sent_total: u64,
    pub blocked_total: u64,
    pub dropped_total: u64,
    pub last_sent_window: Option<u64>,
    pub last_sent_ns: Option<i64>,
    pub outbox_len: u64,
}

/// What the store knows about one window (local values; never sent as such).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowData {
    /// The node container's last state change before the window's end, if any was seen.
    pub last_container_action: Option<ContainerAction>,
    /// Whether the node printed anything during the window.
    pub active_in_window: bool,
    /// Slots in use, as the node last reported.
    pub slots_used: Option<u32>,
    /// Tasks the monitor recorded up to the window's end.
    pub total_tasks: u64,
    /// Tasks received during the window.
    pub received: u64,
    /// Tasks that completed or failed during the window.
    pub finished: Vec<FinishedTask>,
    /// Invoice lines recorded during the window.
    pub invoice_lines: Vec<InvoiceLine>,
}

/// A task that finished in the window, with the figures the report may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinishedTask {
    pub failed: bool,
    /// As the node printed it (decimal or 0x hex).
    pub chain_id: Option<String>,
    pub elapsed_ns: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub gas_used: Option<u64>,
    pub memory_peak: Option<u64>,
    pub cached: Option<bool>,
}

/// One line of an invoice recorded in the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvoiceLine {
    pub operation: String,
    /// Steps computed, when the node printed an integer.
    pub steps: Option<i64>,
}

/// The node's federation key and HMAC salt as stored (federation makes its `Identity`
/// of them). `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct IdentityRow {
    pub secret_key: [u8; 32],
    pub salt: [u8; 32],
}

impl std::fmt::Debug for IdentityRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityRow([REDACTED])")
    }
}

/// A report the privacy validator stopped: what the log keeps of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockedReport {
    /// Stable reason code (`pattern.ipv4`, `unknown_field`, ...).
    pub code: &'static str,
    pub reason: String,
    pub bytes: Vec<u8>,
}

/// A report for the outbox (the signed wire bytes the gate made publishable), with the
/// blocked original if the gate stopped it.
#[derive(Debug)]
pub(crate) struct QueuedReport {
    pub window: u64,
    pub wire: Vec<u8>,
    pub cover: bool,
    pub task_items: usize,
    pub blocked: Option<BlockedReport>,
    pub delay_ms: u64,
    pub send_at_ms: u64,
    pub now_ms: u64,
}

/// A queued report as read back from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    pub window: u64,
    pub report_id: i64,
    pub wire: Vec<u8>,
    pub send_at_ms: u64,
}

/// What happened to a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// In the outbox, waiting for the server.
    Queued,
    /// The server has it.
    Sent,
    /// The privacy validator stopped it; it was never sent (a cover report went instead).
    Blocked,
    /// Never sent: older than 7 days in the outbox, or discarded when federation was
    /// disabled.
    Dropped,
}

impl ReportOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Blocked => "blocked",
            Self::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Sent, Self::Blocked, Self::Dropped]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One entry of the transparency log: what the monitor sent (or blocked), byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportRecord {
    pub id: i64,
    /// The window start (Unix seconds).
    pub window: u64,
    pub outcome: ReportOutcome,
    /// Reason code when blocked or dropped (`pattern.ipv4`, `disabled`, `expired`, ...).
    pub code: Option<String>,
    /// One-line reason when blocked or dropped.
    pub reason: Option<String>,
    pub cover: Option<bool>,
    pub task_items: Option<u64>,
    /// The random send delay drawn for this window (ms after the window closed).
    pub delay_ms: Option<u64>,
    /// When the report was built (Unix ms).
    pub created_ms: u64,
    /// When the server confirmed it (Unix ms).
    pub sent_ms: Option<u64>,
    /// The exact bytes, as text (reports are ASCII JSON).
    pub text: String,
    /// The exact bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Blocked reports in the log, by reason code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub code: String,
    pub count: u64,
}

fn query_err(source: rusqlite::Error) -> StoreError {
    StoreError::Query { source }
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

fn ns_to_ms(ns: i64) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// The stored identity, if federation was ever enabled.
    pub(crate) fn federation_identity(&self) -> Result<Option<IdentityRow>, StoreError> {
        self.read(read_identity)
    }

    /// The stored identity; `fresh` is stored and returned if there is none yet. The
    /// caller makes the files private ([`Store::federation_protect_files`]).
    pub(crate) fn federation_ensure_identity(
        &self,
        fresh: IdentityRow,
    ) -> Result<IdentityRow, StoreError> {
        self.write(|tx| {
            if let Some(existing) = read_identity(tx).map_err(query_err)? {
                return Ok(existing);
            }
            tx.execute(
                "INSERT INTO federation_identity (id, secret_key, salt, created_ns)
                 VALUES (1, ?1, ?2, ?3)",
                params![
                    fresh.secret_key.as_slice(),
                    fresh.salt.as_slice(),
                    super::now_ns()
                ],
            )
            .map_err(query_err)?;
            Ok(fresh)
        })
    }

    /// Makes the database file and its WAL/SHM files readable by the owner only (mode
    /// 0600): they hold the federation key and salt.
    pub(crate) fn federation_protect_files(&self) -> std::io::Result<()> {
        protect_files(self.path())
    }

    pub(crate) fn federation_settings(&self) -> Result<Option<StoredSettings>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT enabled, level, continent FROM federation_settings WHERE id = 1",
                [],
                |row| {
                    let level: String = row.get(1)?;
                    let continent: Option<String> = row.get(2)?;
                    Ok(StoredSettings {
                        enabled: row.get(0)?,
                        level: Level::from_label(&level).unwrap_or(Level::Strict),
                        continent: continent.as_deref().and_then(Continent::from_label),
                    })
                },
            )
            .optional()
        })
    }

    /// Saves the operator's choice. Turning federation on starts the schedule at
    /// `start_window`; turning it off clears the schedule and drops what is still queued
    /// (nothing produced for a period the operator then opted out of is sent later).
    pub(crate) fn federation_save_settings(
        &self,
        settings: StoredSettings,
        start_window: Option<u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO federation_settings (id, enabled, level, continent, updated_ns)
                 VALUES (1, ?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled,
                   level = excluded.level, continent = excluded.continent,
                   updated_ns = excluded.updated_ns",
                params![
                    settings.enabled,
                    settings.level.label(),
                    settings.continent.map(Continent::label),
                    ms_to_ns(now_ms)
                ],
            )
            .map_err(query_err)?;
            schedule(tx, settings.enabled, start_window).map_err(query_err)
        })
    }

    /// Starts (at `start_window`, unless already running) or stops the schedule without
    /// touching the stored settings (used when the configuration's default decides).
    pub(crate) fn federation_schedule(
        &self,
        enabled: bool,
        start_window: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| schedule(tx, enabled, start_window).map_err(query_err))
    }

    pub(crate) fn federation_state(&self) -> Result<FederationState, StoreError> {
        self.read(|conn| {
            let mut state = conn.query_row(
                "SELECT next_window, sent_total, blocked_total, dropped_total, last_sent_window,
                   last_sent_ns
                 FROM federation_state WHERE id = 1",
                [],
                |row| {
                    Ok(FederationState {
                        next_window: row.get::<_, Option<i64>>(0)?.map(to_u64),
                        sent_total: to_u64(row.get(1)?),
                        blocked_total: to_u64(row.get(2)?),
                        dropped_total: to_u64(row.get(3)?),
                        last_sent_window: row.get::<_, Option<i64>>(4)?.map(to_u64),
                        last_sent_ns: row.get(5)?,
                        outbox_len: 0,
                    })
                },
            )?;
            state.outbox_len = to_u64(conn.query_row(
                "SELECT count(*) FROM federation_outbox",
                [],
                |row| row.get(0),
            )?);
            Ok(state)
        })
    }

    /// Skips windows that are too old to report (the schedule fell more than 7 days
    /// behind, e.g. the monitor was stopped); they count as dropped.
    pub(crate) fn federation_skip_to(&self, from: u64, to: u64) -> Result<(), StoreError> {
        self.write(move |tx| {
            let skipped = to.saturating_sub(from) / WINDOW_SECS;
            tx.execute(
                "UPDATE federation_state SET next_window = ?2, dropped_total = dropped_total + ?3
                 WHERE id = 1 AND next_window = ?1",
                params![to_i64(from), to_i64(to), to_i64(skipped)],
            )
            .map_err(query_err)?;
            Ok(())
        })
    }

    /// What the store knows about `window`, for the anonymizer.
    pub(crate) fn federation_window_data(
        &self,
        window: WindowStart,
    ) -> Result<WindowData, StoreError> {
        self.read(|conn| window_data(conn, window))
    }

    /// In one transaction: logs the blocked original (if any), logs and queues the
    /// report, and advances the schedule past its window. Returns `false` (and changes
    /// nothing) if the window is not the scheduled one (built twice).
    pub(crate) fn federation_queue(&self, queued: QueuedReport) -> Result<bool, StoreError> {
        self.write(move |tx| queue(tx, &queued).map_err(query_err))
    }

    /// The oldest queued reports.
    pub(crate) fn federation_outbox(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT window_start, report_id, wire, send_at_ms FROM federation_outbox
                 ORDER BY window_start LIMIT ?1",
            )?;
            let rows = stmt.query_map([to_i64(limit as u64)], |row| {
                Ok(OutboxRow {
                    window: to_u64(row.get(0)?),
                    report_id: row.get(1)?,
                    wire: row.get(2)?,
                    send_at_ms: to_u64(row.get(3)?),
                })
            })?;
            rows.collect()
        })
    }

    /// The server has the report: removes it from the outbox and logs it as sent.
    pub(crate) fn federation_sent(&self, row: &OutboxRow, sent_ms: u64) -> Result<(), StoreError> {
        let (window, report_id) = (row.window, row.report_id);
        self.write(move |tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM federation_outbox WHERE window_start = ?1",
                    [to_i64(window)],
                )
                .map_err(query_err)?;
            if deleted == 0 {
                return Ok(());
            }
            tx.execute(
                "UPDATE federation_reports SET outcome = 'sent', sent_ns = ?2 WHERE id = ?1",
                params![report_id, ms_to_ns(sent_ms)],
            )
            .map_err(query_err)?;
            tx.execute(
                "UPDATE federation_state SET sent_total = sent_total + 1,
                   last_sent_window = max(COALESCE(last_sent_window, 0), ?1), last_sent_ns = ?2
                 WHERE id = 1",
                params![to_i64(window), ms_to_ns(sent_ms)],
            )
            .map_err(query_err)?;
            Ok(())
        })
    }

    /// A failed delivery attempt.
    pub(crate) fn federation_attempted(&self, window: u64) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE federation_outbox SET attempts = attempts + 1 WHERE window_start = ?1",
                [to_i64(window)],
            )
            .map_err(query_err)?;
            Ok(())
        })
    }

    /// Removes a queued report that no longer passes the gate (edited database): it is
    /// logged as blocked and never sent.
    pub(crate) fn federation_unqueue_blocked(
        &self,
        row: &OutboxRow,
        blocked: BlockedReport,
    ) -> Result<(), StoreError> {
        let (window, report_id) = (row.window, row.report_id);
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM federation_outbox WHERE window_start = ?1",
                [to_i64(window)],
            )
            .map_err(query_err)?;
            tx.execute(
                "UPDATE federation_reports SET outcome = 'blocked', code = ?2, reason = ?3,
                   bytes = ?4 WHERE id = ?1",
                params![report_id, blocked.code, blocked.reason, blocked.bytes],
            )
            .map_err(query_err)?;
            tx.execute(
                "UPDATE federation_state SET blocked_total = blocked_total + 1 WHERE id = 1",
                [],
            )
            .map_err(query_err)?;
            Ok(())
        })
    }

    /// Drops queued reports older than 7 days and log entries older than 7 days, as of
    /// `now_ms`. Returns how many queued reports were dropped.
    pub(crate) fn federation_prune(&self, now_ms: u64) -> Result<u64, StoreError> {
        self.write(move |tx| prune(tx, now_ms).map_err(query_err))
    }

    /// The transparency log, newest first.
    pub(crate) fn federation_reports(&self, limit: usize) -> Result<Vec<ReportRecord>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, window_start, outcome, code, reason, cover, task_items, bytes,
                   delay_ms, created_ns, sent_ns
                 FROM federation_reports ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([to_i64(limit as u64)], |row| {
                let bytes: Vec<u8> = row.get(7)?;
                Ok(ReportRecord {
                    id: row.get(0)?,
                    window: to_u64(row.get(1)?),
                    outcome: ReportOutcome::parse(&row.get::<_, String>(2)?)
                        .unwrap_or(ReportOutcome::Dropped),
                    code: row.get(3)?,
                    reason: row.get(4)?,
                    cover: row.get(5)?,
                    task_items: row.get::<_, Option<i64>>(6)?.map(to_u64),
                    delay_ms: row.get::<_, Option<i64>>(8)?.map(to_u64),
                    created_ms: ns_to_ms(row.get(9)?),
                    sent_ms: row.get::<_, Option<i64>>(10)?.map(ns_to_ms),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    bytes,
                })
            })?;
            rows.collect()
        })
    }

    /// Blocked reports still in the log (7 days), by reason code.
    pub(crate) fn federation_blocked_reasons(&self) -> Result<Vec<ReasonCount>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT COALESCE(code, 'unknown'), count(*) FROM federation_reports
                 WHERE outcome = 'blocked' GROUP BY 1 ORDER BY 2 DESC, 1",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(ReasonCount {
                    code: row.get(0)?,
                    count: to_u64(row.get(1)?),
                })
            })?;
            rows.collect()
        })
    }
}

fn read_identity(conn: &rusqlite::Connection) -> rusqlite::Result<Option<IdentityRow>> {
    conn.query_row(
        "SELECT secret_key, salt FROM federation_identity WHERE id = 1",
        [],
        |row| {
            let key: Vec<u8> = row.get(0)?;
            let salt: Vec<u8> = row.get(1)?;
            Ok((key, salt))
        },
    )
    .optional()
    .map(|found| {
        found.and_then(|(key, salt)| {
            Some(IdentityRow {
                secret_key: key.try_into().ok()?,
                salt: salt.try_into().ok()?,
            })
        })
    })
}

fn schedule(
    tx: &Transaction<'_>,
    enabled: bool,
    start_window: Option<u64>,
) -> rusqlite::Result<()> {
    if enabled {
        tx.execute(
            "UPDATE federation_state SET next_window = COALESCE(next_window, ?1) WHERE id = 1",
            [start_window.map(to_i64)],
        )?;
    } else {
        tx.execute(
            "UPDATE federation_state SET next_window = NULL WHERE id = 1",
            [],
        )?;
        drop_outbox(
            tx,
            None,
            "disabled",
            "federation was disabled before it was sent",
        )?;
    }
    Ok(())
}

/// Drops queued reports (all, or those whose window started before `before`), logging
/// them as dropped with `code`/`reason` and counting them.
fn drop_outbox(
    tx: &Transaction<'_>,
    before: Option<u64>,
    code: &str,
    reason: &str,
) -> rusqlite::Result<u64> {
    let limit = before.map_or(i64::MAX, to_i64);
    tx.execute(
        "UPDATE federation_reports SET outcome = 'dropped', code = ?2, reason = ?3
         WHERE id IN (SELECT report_id FROM federation_outbox WHERE window_start < ?1)",
        params![limit, code, reason],
    )?;
    let dropped = tx.execute(
        "DELETE FROM federation_outbox WHERE window_start < ?1",
        [limit],
    )? as u64;
    if dropped > 0 {
        tx.execute(
            "UPDATE federation_state SET dropped_total = dropped_total + ?1 WHERE id = 1",
            [to_i64(dropped)],
        )?;
    }
    Ok(dropped)
}

fn queue(tx: &Transaction<'_>, q: &QueuedReport) -> rusqlite::Result<bool> {
    let window = q.window;
    let scheduled: Option<i64> = tx.query_row(
        "SELECT next_window FROM federation_state WHERE id = 1",
        [],
        |row| row.get(0),
    )?;
    if scheduled != Some(to_i64(window)) {
        return Ok(false);
    }
    let now_ns = ms_to_ns(q.now_ms);
    if let Some(blocked) = &q.blocked {
        tx.execute(
            "INSERT INTO federation_reports (window_start, outcome, code, reason, bytes,
               delay_ms, created_ns)
             VALUES (?1, 'blocked', ?2, ?3, ?4, ?5, ?6)",
            params![
                to_i64(window),
                blocked.code,
                blocked.reason,
                blocked.bytes,
                to_i64(q.delay_ms),
                now_ns
            ],
        )?;
        tx.execute(
            "UPDATE federation_state SET blocked_total = blocked_total + 1 WHERE id = 1",
            [],
        )?;
    }
    let report_id: i64 = tx.query_row(
        "INSERT INTO federation_reports (window_start, outcome, cover, task_items, bytes,
           delay_ms, created_ns)
         VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            to_i64(window),
            q.cover,
            to_i64(q.task_items as u64),
            q.wire,
            to_i64(q.delay_ms),
            now_ns
        ],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO federation_outbox (window_start, report_id, wire, send_at_ms,
           created_ns)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            to_i64(window),
            report_id,
            q.wire,
            to_i64(q.send_at_ms),
            now_ns
        ],
    )?;
    tx.execute(
        "UPDATE federation_state SET next_window = ?1 WHERE id = 1",
        [to_i64(window + WINDOW_SECS)],
    )?;
    Ok(true)
}

fn prune(tx: &Transaction<'_>, now_ms: u64) -> rusqlite::Result<u64> {
    let cutoff_ms = now_ms.saturating_sub(LOG_RETENTION_MS);
    // A queued report expires when its window closed more than 7 days ago.
    let expired_before = (cutoff_ms / 1000).saturating_sub(WINDOW_SECS);
    let dropped = drop_outbox(
        tx,
        Some(expired_before + 1),
        "expired",
        "not delivered within 7 days",
    )?;
    tx.execute(
        "DELETE FROM federation_reports WHERE created_ns < ?1
           AND id NOT IN (SELECT report_id FROM federation_outbox)",
        [ms_to_ns(cutoff_ms)],
    )?;
    Ok(dropped)
}

fn window_data(conn: &rusqlite::Connection, window: WindowStart) -> rusqlite::Result<WindowData> {
    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 24 * HOUR_MS;
    let start_ms = to_i64(window.as_secs()).saturating_mul(1000);
    let end_ms = to_i64(window.closes_at()).saturating_mul(1000);
    let (start_ns, end_ns) = (start_ms * 1_000_000, end_ms * 1_000_000);

    // Times: Docker's receive time when known, else the node's clock. `time_ms` (the
    // indexed column) bounds the scan generously: a task finishes within a day of
    // arriving, and the two clocks are not an hour apart.
    let mut finished = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT status, chain_id, elapsed_ns, elapsed_ms, gas_used, memory_peak, cached
         FROM tasks
         WHERE time_ms >= ?1 AND time_ms < ?2 AND status IN ('completed', 'failed')
           AND COALESCE(completed_ns, completed_ms * 1000000) >= ?3
           AND COALESCE(completed_ns, completed_ms * 1000000) < ?4",
    )?;
    let mut rows = stmt.query(params![
        start_ms - DAY_MS,
        end_ms + HOUR_MS,
        start_ns,
        end_ns
    ])?;
    let unsigned = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    while let Some(row) = rows.next()? {
        finished.push(FinishedTask {
            failed: row.get::<_, String>(0)? == "failed",
            chain_id: row.get(1)?,
            elapsed_ns: unsigned(row.get(2)?),
            elapsed_ms: unsigned(row.get(3)?),
            gas_used: unsigned(row.get(4)?),
            memory_peak: unsigned(row.get(5)?),
            cached: row.get(6)?,
        });
    }
    let received: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM tasks
             WHERE time_ms >= ?1 AND time_ms < ?2
               AND COALESCE(received_ns, received_ms * 1000000) >= ?3
               AND COALESCE(received_ns, received_ms * 1000000) < ?4",
        )?
        .query_row(
            params![start_ms - HOUR_MS, end_ms + HOUR_MS, start_ns, end_ns],
            |row| row.get(0),
        )?;
    let mut invoice_lines = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT it.operation, it.steps_value
         FROM invoices i JOIN invoice_items it ON it.invoice_row = i.id
         WHERE i.time_ns >= ?1 AND i.time_ns < ?2
         ORDER BY i.id, it.position",
    )?;
    let mut rows = stmt.query(params![start_ns, end_ns])?;
    while let Some(row) = rows.next()? {
        invoice_lines.push(InvoiceLine {
            operation: row.get(0)?,
            steps: row.get(1)?,
        });
    }
    let total_tasks: i64 = conn
        .prepare_cached("SELECT count(*) FROM tasks WHERE time_ms < ?1")?
        .query_row([end_ms], |row| row.get(0))?;
    let last_container_action = conn
        .prepare_cached(
            "SELECT action FROM container_events WHERE time_ns < ?1
             ORDER BY time_ns DESC, id DESC LIMIT 1",
        )?
        .query_row([end_ns], |row| row.get::<_, String>(0))
        .optional()?
        .and_then(|a| ContainerAction::parse(&a));
    let active_in_window: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE time_ns >= ?1 AND time_ns < ?2)",
        )?
        .query_row([start_ns, end_ns], |row| row.get(0))?;
    let slots_used = conn
        .prepare_cached("SELECT slots_used FROM node_status WHERE id = 1")?
        .query_row([], |row| row.get::<_, Option<i64>>(0))
        .optional()?
        .flatten()
        .and_then(|n| u32::try_from(n).ok());
    Ok(WindowData {
        last_container_action,
        active_in_window,
        slots_used,
        total_tasks: to_u64(total_tasks),
        received: to_u64(received),
        finished,
        invoice_lines,
    })
}

/// chmod 600 on the database and its WAL/SHM files (those that exist).
#[cfg(unix)]
fn protect_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn protect_files(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    const W0: u64 = 1_763_992_500;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(StoreConfig::new(dir.path().join("fed.db"))).expect("opens")
    }

    fn identity(n: u8) -> IdentityRow {
        IdentityRow {
            secret_key: [n; 32],
            salt: [n + 1; 32],
        }
    }

    fn queue_at(store: &Store, window: u64, now_ms: u64) -> bool {
        store
            .federation_queue(QueuedReport {
                window,
                wire: format!("the signed report of {window}").into_bytes(),
                cover: true,
                task_items: 0,
                blocked: None,
                delay_ms: 5,
                send_at_ms: (window + WINDOW_SECS) * 1000 + 5,
                now_ms,
            })
            .expect("queue")
    }

    #[test]
    fn identity_is_created_once_and_the_file_becomes_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        assert!(store.federation_identity().expect("read").is_none());
        let a = store
            .federation_ensure_identity(identity(1))
            .expect("created");
        let b = store.federation_ensure_identity(identity(7)).expect("kept");
        assert_eq!((&a, &b), (&identity(1), &identity(1)));
        store.federation_protect_files().expect("chmod");
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.close().expect("close");
        let store = open(&dir);
        let c = store.federation_identity().expect("read").expect("stored");
        assert_eq!(c, a);
    }

    #[test]
    fn queueing_advances_the_schedule_once_per_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        store.federation_schedule(true, Some(W0)).expect("schedule");
        assert!(queue_at(&store, W0, W0 * 1000 + 400_000));
        assert!(
            !queue_at(&store, W0, W0 * 1000 + 400_000),
            "the same window is not queued twice"
        );
        let state = store.federation_state().expect("state");
        assert_eq!(state.next_window, Some(W0 + 300));
        assert_eq!(state.outbox_len, 1);
        let rows = store.federation_outbox(10).expect("outbox");
        assert_eq!(rows.len(), 1);
        store
            .federation_sent(&rows[0], W0 * 1000 + 401_000)
            .expect("sent");
        let state = store.federation_state().expect("state");
        assert_eq!((state.outbox_len, state.sent_total), (0, 1));
        assert_eq!(state.last_sent_window, Some(W0));
        let log = store.federation_reports(10).expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, ReportOutcome::Sent);
        assert_eq!(log[0].bytes, rows[0].wire);
        assert_eq!(log[0].sent_ms, Some(W0 * 1000 + 401_000));
    }

    #[test]
    fn outbox_keeps_seven_days_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        store.federation_schedule(true, Some(W0)).expect("schedule");
        // Built late (say after an outage): all logged after the third window closed.
        let built_ms = (W0 + 4 * WINDOW_SECS) * 1000;
        for i in 0..10 {
            assert!(queue_at(&store, W0 + i * WINDOW_SECS, built_ms));
        }
        // 7 days after the third window closed: the first three have expired.
        let now_ms = (W0 + 3 * WINDOW_SECS) * 1000 + LOG_RETENTION_MS;
        let dropped = store.federation_prune(now_ms).expect("prune");
        assert_eq!(dropped, 3);
        let state = store.federation_state().expect("state");
        assert_eq!(state.outbox_len, 7);
        assert_eq!(state.dropped_total, 3);
        let oldest = store.federation_outbox(1).expect("outbox");
        assert_eq!(oldest[0].window, W0 + 3 * WINDOW_SECS);
        let log = store.federation_reports(100).expect("log");
        let dropped_log: Vec<_> = log
            .iter()
            .filter(|r| r.outcome == ReportOutcome::Dropped)
            .collect();
        assert_eq!(dropped_log.len(), 3);
        assert!(dropped_log
            .iter()
            .all(|r| r.code.as_deref() == Some("expired")));
        // Much later the log itself is pruned too, except what is still queued.
        store
            .federation_prune(now_ms + 30 * LOG_RETENTION_MS)
            .expect("prune");
        assert!(store.federation_reports(100).expect("log").is_empty());
        assert_eq!(store.federation_state().expect("state").dropped_total, 10);
    }

    #[test]
    fn disabling_clears_the_schedule_and_drops_the_outbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let on = StoredSettings {
            enabled: true,
            level: Level::Strict,
            continent: Some(Continent::Asia),
        };
        store
            .federation_save_settings(on, Some(W0), W0 * 1000)
            .expect("save");
        assert!(queue_at(&store, W0, (W0 + 400) * 1000));
        assert_eq!(store.federation_settings().expect("read"), Some(on));
        let off = StoredSettings {
            enabled: false,
            ..on
        };
        store
            .federation_save_settings(off, None, (W0 + 500) * 1000)
            .expect("save");
        let state = store.federation_state().expect("state");
        assert_eq!(state.next_window, None);
        assert_eq!(state.outbox_len, 0);
        assert_eq!(state.dropped_total, 1);
        assert_eq!(store.federation_settings().expect("read"), Some(off));
        // Enabling again starts at the new window, not where it stopped.
        store
            .federation_save_settings(on, Some(W0 + 3000), (W0 + 3000) * 1000)
            .expect("save");
        assert_eq!(
            store.federation_state().expect("state").next_window,
            Some(W0 + 3000)
        );
    }
}
