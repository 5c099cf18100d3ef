//! Alert tables: the outbox and each channel's delivery results. Only `monitor::alerts`
//! calls these.
//!
//! - `alert_outbox`: one row per notification and channel, written when a rule hands a
//!   notification over, deleted once the channel has it (in the message that carried it,
//!   or in a summary). Rows are read oldest first; a channel keeps at most
//!   [`OUTBOX_CAP`] (the oldest beyond it are dropped and counted).
//! - `alert_channels`: per channel, totals and the last success and failure, for the
//!   dashboard and /metrics.
//! - `alert_rules`: each rule's state (ok, pending, firing) with since when, so that a
//!   restart neither repeats nor forgets an alert. A state change, its incident row and
//!   its outbox rows are written in one transaction ([`Store::alert_step`]).
//! - `alert_rule_settings`: a rule's settings as the operator changed them; they win over
//!   the configuration.
//! - `alert_incidents`: one row per firing (fired, resolved, the channels that got it,
//!   failed delivery attempts), for the dashboard and the API.
//! - `alert_channel_settings`: channels the operator defined or changed in the dashboard
//!   or the API (secrets included: this database is the operator's alone), and channels
//!   of the configuration they deleted (`deleted`); a row wins over the configuration's
//!   channel of the same name.

use rusqlite::{params, OptionalExtension as _, Transaction};

use super::{Store, StoreError};
use crate::model::alert::{AlertState, Notification, Rule, RuleConfig, RuleState, RuleStatus};
use crate::model::{ContainerAction, UnixNanos};

/// Notifications kept per channel while it cannot be reached.
pub const OUTBOX_CAP: usize = 1000;

/// Migration "alerts: outbox and delivery results".
pub(super) const MIGRATION: &str = r#"
CREATE TABLE alert_outbox (
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL,
    rule        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    since_ns    INTEGER NOT NULL,
    details     TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_outbox_channel ON alert_outbox (channel, id);

CREATE TABLE alert_channels (
    channel          TEXT PRIMARY KEY,
    messages_total   INTEGER NOT NULL DEFAULT 0,
    delivered_total  INTEGER NOT NULL DEFAULT 0,
    failures_total   INTEGER NOT NULL DEFAULT 0,
    dropped_total    INTEGER NOT NULL DEFAULT 0,
    last_success_ns  INTEGER,
    last_failure_ns  INTEGER,
    last_error       TEXT
);
"#;

/// Migration "alerts: rule states and incidents".
pub(super) const MIGRATION_RULES: &str = r#"
CREATE TABLE alert_rules (
    rule         TEXT PRIMARY KEY,
    state        TEXT NOT NULL CHECK (state IN ('ok', 'pending', 'firing')),
    since_ns     INTEGER,
    fired_ns     INTEGER,
    notified_ns  INTEGER,
    details      TEXT NOT NULL DEFAULT '',
    incident_id  INTEGER,
    updated_ns   INTEGER NOT NULL
);

CREATE TABLE alert_incidents (
    id                 INTEGER PRIMARY KEY,
    rule               TEXT NOT NULL,
    details            TEXT NOT NULL,
    since_ns           INTEGER NOT NULL,
    fired_ns           INTEGER NOT NULL,
    resolved_ns        INTEGER,
    channels_told      TEXT NOT NULL DEFAULT '',
    delivery_failures  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alert_incidents_fired ON alert_incidents (fired_ns);

ALTER TABLE alert_outbox ADD COLUMN incident_id INTEGER;

-- A rule's settings as the operator changed them (API); they win over the configuration.
CREATE TABLE alert_rule_settings (
    rule            TEXT PRIMARY KEY,
    enabled         INTEGER NOT NULL,
    after_seconds   INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    window_seconds  INTEGER NOT NULL,
    percent         INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL
);
"#;

/// Migration "alerts: channels defined in the dashboard".
pub(super) const MIGRATION_CHANNELS: &str = r#"
CREATE TABLE alert_channel_settings (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    url         TEXT,
    secret      TEXT,
    chat_id     TEXT,
    email_to    TEXT,
    email_from  TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    updated_ns  INTEGER NOT NULL
);
"#;

/// A channel as the operator stored it (the fields of `alerts::ChannelSpec`), or the
/// mark that they deleted the channel of that name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelRow {
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub chat_id: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub deleted: bool,
}

impl std::fmt::Debug for ChannelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs and secrets may carry credentials: never printed.
        f.debug_struct("ChannelRow")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

/// Incidents kept (the oldest beyond this are deleted when a new one opens).
pub const INCIDENTS_KEPT: i64 = 1000;

/// What a rule's state change writes, with its state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Only the state changes (ok <-> pending): nothing is sent.
    Quiet,
    /// The rule fires: an incident opens and the notification is queued.
    Fire(Notification),
    /// Still firing: the notification is queued again for the open incident.
    Remind(Notification),
    /// The rule resolved: its incident closes and the notification is queued.
    Resolve(Notification),
}

impl Step {
    /// What the change sends, if anything.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Step::Quiet => None,
            Step::Fire(n) | Step::Remind(n) | Step::Resolve(n) => Some(n),
        }
    }
}

/// One incident: a rule that fired, and when it resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    pub id: i64,
    pub rule: Rule,
    pub details: String,
    /// When the condition started.
    pub since_ns: UnixNanos,
    pub fired_ns: UnixNanos,
    pub resolved_ns: Option<UnixNanos>,
    /// Channels that accepted the firing notification (or a later one of this incident).
    pub channels_told: Vec<String>,
    /// Failed delivery attempts of this incident's notifications.
    pub delivery_failures: u64,
}

/// What the time-based rules read from the store (see `monitor::alerts::rules`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertFigures {
    /// Newest log entry time (Docker's receive time or the line's own).
    pub last_entry_ns: Option<UnixNanos>,
    /// Newest task (received, started or completed).
    pub last_task_ns: Option<UnixNanos>,
    /// Container starts since the restart window's start, and the first of them.
    pub starts: u32,
    pub first_start_ns: Option<UnixNanos>,
    /// The newest start, and the newest stop (died, OOM, stopped, removed).
    pub last_start_ns: Option<UnixNanos>,
    pub last_stop: Option<(ContainerAction, Option<i64>, UnixNanos)>,
    /// Tasks finished in the failure window, and how many of them failed.
    pub finished: u64,
    pub failed: u64,
    /// Federation as stored by the operator (`None`: never set, the configuration holds).
    pub federation_enabled: Option<bool>,
    /// The newest report that was not queued was blocked by the privacy gate: when.
    pub federation_blocked_ns: Option<UnixNanos>,
    /// Reports due but not delivered, and the oldest one's due time.
    pub federation_undelivered: u64,
    pub federation_oldest_due_ns: Option<UnixNanos>,
}

/// A queued notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub notification: Notification,
    pub created_ns: UnixNanos,
    pub attempts: u32,
}

/// One channel's delivery results.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStats {
    pub channel: String,
    /// Notifications waiting in the outbox.
    pub queued: u64,
    /// Messages the channel accepted (a message may carry several notifications).
    pub messages_total: u64,
    /// Notifications delivered (in a message or a summary).
    pub delivered_total: u64,
    /// Attempts that failed.
    pub failures_total: u64,
    /// Notifications dropped because the outbox was full.
    pub dropped_total: u64,
    pub last_success_ns: Option<UnixNanos>,
    pub last_failure_ns: Option<UnixNanos>,
    pub last_error: Option<String>,
}

fn query_err(source: rusqlite::Error) -> StoreError {
    StoreError::Query { source }
}

/// Queues `notification` for each of `channels` (the oldest beyond [`OUTBOX_CAP`] are
/// dropped and counted).
fn enqueue(
    tx: &Transaction<'_>,
    channels: &[String],
    notification: &Notification,
    incident: Option<i64>,
    now_ns: UnixNanos,
) -> Result<(), StoreError> {
    for channel in channels {
        ensure_channel(tx, channel).map_err(query_err)?;
        tx.execute(
            "INSERT INTO alert_outbox
               (channel, rule, state, since_ns, details, created_ns, incident_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                channel,
                notification.rule.id(),
                notification.state.as_str(),
                notification.since_ns,
                notification.details,
                now_ns,
                incident
            ],
        )
        .map_err(query_err)?;
        let dropped = tx
            .execute(
                "DELETE FROM alert_outbox WHERE channel = ?1 AND id <= (
                   SELECT id FROM alert_outbox WHERE channel = ?1
                   ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![channel, OUTBOX_CAP as i64],
            )
            .map_err(query_err)?;
        if dropped > 0 {
            tx.execute(
                "UPDATE alert_channels SET dropped_total = dropped_total + ?2
                 WHERE channel = ?1",
                params![channel, dropped as i64],
            )
            .map_err(query_err)?;
        }
    }
    Ok(())
}

fn ensure_channel(tx: &Transaction<'_>, channel: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO alert_channels (channel) VALUES (?1)",
        [channel],
    )
    .map(drop)
}

impl Store {
    /// Queues `notification` for each of `channels`, in one transaction.
    pub(crate) fn alert_enqueue(
        &self,
        channels: Vec<String>,
        notification: Notification,
        now_ns: UnixNanos,
    ) -> Result<(), StoreError> {
        self.write(move |tx| enqueue(tx, &channels, &notification, None, now_ns))
    }

    /// The rule settings the operator changed.
    pub(crate) fn alert_rule_settings(&self) -> Result<Vec<(Rule, RuleConfig)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT rule, enabled, after_seconds, count, window_seconds, percent
                 FROM alert_rule_settings",
            )?;
            let rows = stmt.query_map([], |row| {
                let secs = |i: usize| -> rusqlite::Result<std::time::Duration> {
                    Ok(std::time::Duration::from_secs(
                        u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0),
                    ))
                };
                Ok((
                    row.get::<_, String>(0)?,
                    RuleConfig {
                        enabled: row.get(1)?,
                        after: secs(2)?,
                        count: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                        window: secs(4)?,
                        percent: u8::try_from(row.get::<_, i64>(5)?).unwrap_or(100),
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (rule, config) = row?;
                if let Some(rule) = Rule::from_id(&rule) {
                    out.push((rule, config));
                }
            }
            Ok(out)
        })
    }

    /// Stores `rule`'s settings as the operator changed them.
    pub(crate) fn alert_set_rule(
        &self,
        rule: Rule,
        config: RuleConfig,
        now_ns: UnixNanos,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO alert_rule_settings
                   (rule, enabled, after_seconds, count, window_seconds, percent, updated_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (rule) DO UPDATE SET enabled = excluded.enabled,
                   after_seconds = excluded.after_seconds, count = excluded.count,
                   window_seconds = excluded.window_seconds, percent = excluded.percent,
                   updated_ns = excluded.updated_ns",
                params![
                    rule.id(),
                    config.enabled,
                    i64::try_from(config.after.as_secs()).unwrap_or(i64::MAX),
                    config.count,
                    i64::try_from(config.window.as_secs()).unwrap_or(i64::MAX),
                    config.percent,
                    now_ns
                ],
            )
            .map_err(query_err)?;
            Ok(())
        })
    }

    /// Every rule's stored state.
    pub(crate) fn alert_rule_states(&self) -> Result<Vec<(Rule, RuleStatus)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT rule, state, since_ns, fired_ns, notified_ns, details FROM alert_rules",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    RuleStatus {
                        state: RuleState::Ok,
                        since_ns: row.get(2)?,
                        fired_ns: row.get(3)?,
                        notified_ns: row.get(4)?,
                        details: row.get(5)?,
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (rule, state, mut status) = row?;
                let (Some(rule), Some(state)) = (Rule::from_id(&rule), RuleState::parse(&state))
                else {
                    continue;
                };
                status.state = state;
                out.push((rule, status));
            }
            Ok(out)
        })
    }

    /// Writes `rule`'s new state and what the change sends, in one transaction: the
    /// incident it opens or closes and the outbox rows for `channels`. Returns the
    /// incident's id (none for a quiet change).
    pub(crate) fn alert_step(
        &self,
        rule: Rule,
        status: RuleStatus,
        step: Step,
        channels: Vec<String>,
        now_ns: UnixNanos,
    ) -> Result<Option<i64>, StoreError> {
        self.write(move |tx| {
            let open: Option<i64> = tx
                .query_row(
                    "SELECT incident_id FROM alert_rules WHERE rule = ?1",
                    [rule.id()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(query_err)?
                .flatten();
            let (incident, keep_open, note) = match &step {
                Step::Quiet => (None, open, None),
                Step::Fire(note) => {
                    tx.execute(
                        "INSERT INTO alert_incidents (rule, details, since_ns, fired_ns)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![rule.id(), note.details, note.since_ns, now_ns],
                    )
                    .map_err(query_err)?;
                    let id = tx.last_insert_rowid();
                    tx.execute(
                        "DELETE FROM alert_incidents WHERE id <= ?1 - ?2",
                        params![id, INCIDENTS_KEPT],
                    )
                    .map_err(query_err)?;
                    (Some(id), Some(id), Some(note))
                }
                Step::Remind(note) => (open, open, Some(note)),
                Step::Resolve(note) => {
                    if let Some(id) = open {
                        tx.execute(
                            "UPDATE alert_incidents SET resolved_ns = ?2 WHERE id = ?1",
                            params![id, note.since_ns],
                        )
                        .map_err(query_err)?;
                    }
                    (open, None, Some(note))
                }
            };
            tx.execute(
                "INSERT INTO alert_rules
                   (rule, state, since_ns, fired_ns, notified_ns, details, incident_id, updated_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (rule) DO UPDATE SET state = excluded.state,
                   since_ns = excluded.since_ns, fired_ns = excluded.fired_ns,
                   notified_ns = excluded.notified_ns, details = excluded.details,
                   incident_id = excluded.incident_id, updated_ns = excluded.updated_ns",
                params![
                    rule.id(),
                    status.state.as_str(),
                    status.since_ns,
                    status.fired_ns,
                    status.notified_ns,
                    status.details,
                    keep_open,
                    now_ns
                ],
            )
            .map_err(query_err)?;
            if let Some(note) = note {
                enqueue(tx, &channels, note, incident, now_ns)?;
            }
            Ok(incident)
        })
    }

    /// The newest incidents first, at most `limit`.
    pub fn alert_incidents(&self, limit: u32) -> Result<Vec<Incident>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, rule, details, since_ns, fired_ns, resolved_ns, channels_told,
                   delivery_failures
                 FROM alert_incidents ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |row| {
                Ok((
                    row.get::<_, String>(1)?,
                    Incident {
                        id: row.get(0)?,
                        rule: Rule::Test,
                        details: row.get(2)?,
                        since_ns: row.get(3)?,
                        fired_ns: row.get(4)?,
                        resolved_ns: row.get(5)?,
                        channels_told: row
                            .get::<_, String>(6)?
                            .split(',')
                            .filter(|c| !c.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        delivery_failures: u64::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (rule, mut incident) = row?;
                if let Some(rule) = Rule::from_id(&rule) {
                    incident.rule = rule;
                    out.push(incident);
                }
            }
            Ok(out)
        })
    }

    /// The figures the time-based rules need as of `now_ns`: container starts since
    /// `restart_since_ns`, tasks finished since `failure_since_ns`.
    pub(crate) fn alert_figures(
        &self,
        now_ns: UnixNanos,
        restart_since_ns: UnixNanos,
        failure_since_ns: UnixNanos,
    ) -> Result<AlertFigures, StoreError> {
        const MS: i64 = 1_000_000;
        self.read(|conn| {
            let mut f = AlertFigures::default();
            (f.last_entry_ns, f.last_task_ns) = conn
                .prepare_cached(
                    "SELECT coalesce(last_received_ns, last_time_ns),
                       (SELECT max(time_ms) FROM tasks)
                     FROM node_status WHERE id = 1",
                )?
                .query_row([], |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, Option<i64>>(1)?.map(|ms| ms.saturating_mul(MS)),
                    ))
                })
                .optional()?
                .unwrap_or_default();
            (f.starts, f.first_start_ns) = conn
                .prepare_cached(
                    "SELECT count(*), min(time_ns) FROM container_events
                     WHERE time_ns >= ?1 AND action IN ('started', 'restarted')",
                )?
                .query_row([restart_since_ns], |r| {
                    Ok((
                        u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                        r.get(1)?,
                    ))
                })?;
            f.last_start_ns = conn
                .prepare_cached(
                    "SELECT max(time_ns) FROM container_events
                     WHERE action IN ('started', 'restarted')",
                )?
                .query_row([], |r| r.get(0))?;
            f.last_stop = conn
                .prepare_cached(
                    "SELECT action, exit_code, time_ns FROM container_events
                     WHERE action IN ('died', 'oom', 'stopped', 'destroyed')
                     ORDER BY time_ns DESC, id DESC LIMIT 1",
                )?
                .query_row([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get(2)?,
                    ))
                })
                .optional()?
                .and_then(|(action, code, time)| {
                    ContainerAction::parse(&action).map(|a| (a, code, time))
                });
            (f.finished, f.failed) = conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(status = 'failed'), 0) FROM tasks
                     WHERE status IN ('completed', 'failed') AND time_ms >= ?1 - 86400000
                       AND coalesce(completed_ns, time_ms * 1000000) >= ?2",
                )?
                .query_row(params![failure_since_ns / MS, failure_since_ns], |r| {
                    Ok((
                        u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    ))
                })?;
            f.federation_enabled = conn
                .prepare_cached("SELECT enabled FROM federation_settings WHERE id = 1")?
                .query_row([], |r| r.get::<_, bool>(0))
                .optional()?;
            f.federation_blocked_ns = conn
                .prepare_cached(
                    "SELECT outcome, created_ns FROM federation_reports
                     WHERE outcome <> 'queued' ORDER BY id DESC LIMIT 1",
                )?
                .query_row([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
                .filter(|(outcome, _)| outcome == "blocked")
                .map(|(_, at)| at);
            (f.federation_undelivered, f.federation_oldest_due_ns) = conn
                .prepare_cached(
                    "SELECT count(*), min(send_at_ms) FROM federation_outbox
                     WHERE send_at_ms <= ?1",
                )?
                .query_row([now_ns / MS], |r| {
                    Ok((
                        u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        r.get::<_, Option<i64>>(1)?.map(|ms| ms.saturating_mul(MS)),
                    ))
                })?;
            Ok(f)
        })
    }

    /// What waits for `channel`, oldest first (at most [`OUTBOX_CAP`] rows).
    pub(crate) fn alert_pending(&self, channel: &str) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, rule, state, since_ns, details, created_ns, attempts
                 FROM alert_outbox WHERE channel = ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![channel, OUTBOX_CAP as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, rule, state, since_ns, details, created_ns, attempts) = row?;
                // A rule this build does not know (written by a newer one) is skipped.
                let (Some(rule), Some(state)) = (Rule::from_id(&rule), AlertState::parse(&state))
                else {
                    continue;
                };
                out.push(OutboxRow {
                    id,
                    notification: Notification {
                        rule,
                        state,
                        since_ns,
                        details,
                    },
                    created_ns,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
            Ok(out)
        })
    }

    /// The outcome of one attempt at `channel`: accepted, carrying `Ok(n)` notifications
    /// (the rows up to `up_to_id` leave the outbox), or failed with `Err(reason)` (they
    /// stay, counting the attempt). `None`: a test message, no rows. The reason is shown
    /// on the dashboard: it never holds a secret.
    pub(crate) fn alert_attempted(
        &self,
        channel: String,
        up_to_id: Option<i64>,
        outcome: Result<u64, String>,
        now_ns: UnixNanos,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            ensure_channel(tx, &channel).map_err(query_err)?;
            if let Some(id) = up_to_id {
                let incidents = match outcome {
                    Ok(_) => {
                        "UPDATE alert_incidents SET channels_told = CASE
                           WHEN instr(',' || channels_told || ',', ',' || ?1 || ',') > 0
                             THEN channels_told
                           WHEN channels_told = '' THEN ?1
                           ELSE channels_told || ',' || ?1 END
                         WHERE id IN (SELECT incident_id FROM alert_outbox
                                      WHERE channel = ?1 AND id <= ?2)"
                    }
                    Err(_) => {
                        "UPDATE alert_incidents SET delivery_failures = delivery_failures + 1
                         WHERE id IN (SELECT incident_id FROM alert_outbox
                                      WHERE channel = ?1 AND id <= ?2)"
                    }
                };
                tx.execute(incidents, params![channel, id])
                    .map_err(query_err)?;
                let rows = match outcome {
                    Ok(_) => "DELETE FROM alert_outbox WHERE channel = ?1 AND id <= ?2",
                    Err(_) => {
                        "UPDATE alert_outbox SET attempts = attempts + 1
                         WHERE channel = ?1 AND id <= ?2"
                    }
                };
                tx.execute(rows, params![channel, id]).map_err(query_err)?;
            }
            match outcome {
                Ok(delivered) => tx.execute(
                    "UPDATE alert_channels SET messages_total = messages_total + 1,
                       delivered_total = delivered_total + ?2, last_success_ns = ?3
                     WHERE channel = ?1",
                    params![channel, delivered as i64, now_ns],
                ),
                Err(error) => tx.execute(
                    "UPDATE alert_channels SET failures_total = failures_total + 1,
                       last_failure_ns = ?2, last_error = ?3
                     WHERE channel = ?1",
                    params![channel, now_ns, error],
                ),
            }
            .map_err(query_err)?;
            Ok(())
        })
    }

    /// The channels the operator stored (and deleted), by name.
    pub(crate) fn alert_channel_rows(&self) -> Result<Vec<ChannelRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, kind, url, secret, chat_id, email_to, email_from, deleted
                 FROM alert_channel_settings ORDER BY name",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(ChannelRow {
                    name: row.get(0)?,
                    kind: row.get(1)?,
                    url: row.get(2)?,
                    secret: row.get(3)?,
                    chat_id: row.get(4)?,
                    to: row.get(5)?,
                    from: row.get(6)?,
                    deleted: row.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Stores `row` (a channel defined or changed, or deleted) in place of any row of
    /// its name. A deleted channel's queued notifications and delivery results go with
    /// it, in the same transaction.
    pub(crate) fn alert_put_channel(
        &self,
        row: ChannelRow,
        now_ns: UnixNanos,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO alert_channel_settings
                   (name, kind, url, secret, chat_id, email_to, email_from, deleted, updated_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, url = excluded.url,
                   secret = excluded.secret, chat_id = excluded.chat_id,
                   email_to = excluded.email_to, email_from = excluded.email_from,
                   deleted = excluded.deleted, updated_ns = excluded.updated_ns",
                params![
                    row.name,
                    row.kind,
                    row.url,
                    row.secret,
                    row.chat_id,
                    row.to,
                    row.from,
                    row.deleted,
                    now_ns
                ],
            )
            .map_err(query_err)?;
            if row.deleted {
                tx.execute("DELETE FROM alert_outbox WHERE channel = ?1", [&row.name])
                    .map_err(query_err)?;
                tx.execute("DELETE FROM alert_channels WHERE channel = ?1", [&row.name])
                    .map_err(query_err)?;
            }
            Ok(())
        })
    }

    /// Delivery results of every channel that ever had something queued or sent.
    pub(crate) fn alert_channel_stats(&self) -> Result<Vec<ChannelStats>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.channel, (SELECT count(*) FROM alert_outbox o WHERE o.channel = c.channel),
                   messages_total, delivered_total, failures_total, dropped_total,
                   last_success_ns, last_failure_ns, last_error
                 FROM alert_channels c ORDER BY c.channel",
            )?;
            let count = |v: i64| u64::try_from(v).unwrap_or(0);
            let rows = stmt.query_map([], |row| {
                Ok(ChannelStats {
                    channel: row.get(0)?,
                    queued: count(row.get(1)?),
                    messages_total: count(row.get(2)?),
                    delivered_total: count(row.get(3)?),
                    failures_total: count(row.get(4)?),
                    dropped_total: count(row.get(5)?),
                    last_success_ns: row.get(6)?,
                    last_failure_ns: row.get(7)?,
                    last_error: row.get(8)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(StoreConfig::new(dir.path().join("a.db"))).expect("open")
    }

    fn note(rule: Rule, since_ns: i64) -> Notification {
        Notification {
            rule,
            state: AlertState::Firing,
            since_ns,
            details: format!("d{since_ns}"),
        }
    }

    #[test]
    fn rows_are_kept_per_channel_oldest_first_until_delivered() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let both = vec!["a".to_owned(), "b".to_owned()];
        store
            .alert_enqueue(both.clone(), note(Rule::Silence, 1), 10)
            .expect("enqueue");
        store
            .alert_enqueue(both, note(Rule::DbWrite, 2), 20)
            .expect("enqueue");
        let a = store.alert_pending("a").expect("pending");
        assert_eq!(
            a.iter()
                .map(|r| (r.notification.rule, r.created_ns))
                .collect::<Vec<_>>(),
            vec![(Rule::Silence, 10), (Rule::DbWrite, 20)]
        );
        store
            .alert_attempted("a".into(), Some(a[1].id), Err("cannot connect".into()), 30)
            .expect("failed");
        store
            .alert_attempted("a".into(), Some(a[0].id), Ok(1), 40)
            .expect("delivered");
        let left = store.alert_pending("a").expect("pending");
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].notification.rule, left[0].attempts),
            (Rule::DbWrite, 1)
        );
        assert_eq!(store.alert_pending("b").expect("pending").len(), 2);
        let stats = store.alert_channel_stats().expect("stats");
        assert_eq!(
            stats[0],
            ChannelStats {
                channel: "a".into(),
                queued: 1,
                messages_total: 1,
                delivered_total: 1,
                failures_total: 1,
                dropped_total: 0,
                last_success_ns: Some(40),
                last_failure_ns: Some(30),
                last_error: Some("cannot connect".into()),
            }
        );
        assert_eq!(stats[1].queued, 2);
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_and_counts_them() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        for i in 0..(OUTBOX_CAP as i64 + 5) {
            store
                .alert_enqueue(vec!["a".into()], note(Rule::Silence, i), i)
                .expect("enqueue");
        }
        let rows = store.alert_pending("a").expect("pending");
        assert_eq!(rows.len(), OUTBOX_CAP);
        assert_eq!(rows[0].notification.since_ns, 5);
        let stats = store.alert_channel_stats().expect("stats");
        assert_eq!(
            (stats[0].queued, stats[0].dropped_total),
            (OUTBOX_CAP as u64, 5)
        );
    }

    #[test]
    fn a_rule_step_writes_its_state_incident_and_outbox_rows_together() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let firing = RuleStatus {
            state: RuleState::Firing,
            since_ns: Some(100),
            fired_ns: Some(160),
            notified_ns: Some(160),
            details: "container runner-node stopped with exit code 137".into(),
        };
        let fire = Notification {
            rule: Rule::ContainerDown,
            state: AlertState::Firing,
            since_ns: 100,
            details: firing.details.clone(),
        };
        let both = vec!["a".to_owned(), "b".to_owned()];
        let id = store
            .alert_step(
                Rule::ContainerDown,
                firing.clone(),
                Step::Fire(fire),
                both.clone(),
                160,
            )
            .expect("fire")
            .expect("an incident");
        assert_eq!(
            store.alert_rule_states().expect("states"),
            vec![(Rule::ContainerDown, firing)]
        );
        let queued = store.alert_pending("a").expect("pending");
        assert_eq!(queued.len(), 1);
        assert_eq!(store.alert_pending("b").expect("pending").len(), 1);
        // a takes it, b fails once.
        store
            .alert_attempted("a".into(), Some(queued[0].id), Ok(1), 161)
            .expect("a");
        let b = store.alert_pending("b").expect("pending");
        store
            .alert_attempted("b".into(), Some(b[0].id), Err("HTTP 500".into()), 162)
            .expect("b");
        let resolve = Notification {
            rule: Rule::ContainerDown,
            state: AlertState::Resolved,
            since_ns: 900,
            details: "container runner-node stopped with exit code 137".into(),
        };
        assert_eq!(
            store
                .alert_step(
                    Rule::ContainerDown,
                    RuleStatus::default(),
                    Step::Resolve(resolve),
                    both,
                    900,
                )
                .expect("resolve"),
            Some(id)
        );
        assert_eq!(
            store.alert_incidents(10).expect("incidents"),
            vec![Incident {
                id,
                rule: Rule::ContainerDown,
                details: "container runner-node stopped with exit code 137".into(),
                since_ns: 100,
                fired_ns: 160,
                resolved_ns: Some(900),
                channels_told: vec!["a".into()],
                delivery_failures: 1,
            }]
        );
        assert_eq!(
            store
                .alert_pending("b")
                .expect("pending")
                .iter()
                .map(|r| r.notification.state)
                .collect::<Vec<_>>(),
            vec![AlertState::Firing, AlertState::Resolved]
        );
        assert_eq!(
            store.alert_rule_states().expect("states")[0].1.state,
            RuleState::Ok
        );
    }
}
