//! Alert tables: the outbox and each channel's delivery results. Only `monitor::alerts`
//! calls these.
//!
//! - `alert_outbox`: one row per notification and channel, written when a rule hands a
//!   notification over, deleted once the channel has it (in the message that carried it,
//!   or in a summary). Rows are read oldest first; a channel keeps at most
//!   [`OUTBOX_CAP`] (the oldest beyond it are dropped and counted).
//! - `alert_channels`: per channel, totals and the last success and failure, for the
//!   dashboard and /metrics.

use rusqlite::{params, Transaction};

use super::{Store, StoreError};
use crate::alerts::{AlertState, Notification, Rule};
use crate::model::UnixNanos;

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
        self.write(move |tx| {
            for channel in &channels {
                ensure_channel(tx, channel).map_err(query_err)?;
                tx.execute(
                    "INSERT INTO alert_outbox (channel, rule, state, since_ns, details, created_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        channel,
                        notification.rule.id(),
                        notification.state.as_str(),
                        notification.since_ns,
                        notification.details,
                        now_ns
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
}
