//! Settings the operator changes at run time (today: retention). A stored value wins
//! over the configuration's from then on; the writer thread reads the value in effect
//! from [`super::Shared`] each time it prunes.

use serde::Serialize;

use super::{Store, StoreError};
use crate::model::UnixNanos;

pub(crate) const MIGRATION: &str = "
CREATE TABLE settings (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL,
    set_ns INTEGER NOT NULL
) STRICT;
";

const LOG_DAYS: &str = "retention.log_days";
const TASK_DAYS: &str = "retention.task_days";
/// Longest retention that can be set (ten years); 0 keeps data forever.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// How long data is kept: `None` keeps it forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub log_days: Option<u32>,
    pub task_days: Option<u32>,
    /// `config` until the operator sets it, then `database`.
    pub source: SettingSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingSource {
    Config,
    Database,
}

fn days_text(d: Option<u32>) -> String {
    d.unwrap_or(0).to_string()
}

fn days_of(text: &str) -> Option<u32> {
    text.parse::<u32>().ok().filter(|d| *d > 0)
}

/// The stored retention, if the operator set one (read at open, on the writer's
/// connection).
pub(crate) fn load(
    conn: &rusqlite::Connection,
) -> rusqlite::Result<Option<(Option<u32>, Option<u32>)>> {
    let get = |key: &str| -> rusqlite::Result<Option<String>> {
        match conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        }) {
            Ok(v) => Ok(Some(v)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    };
    Ok(match (get(LOG_DAYS)?, get(TASK_DAYS)?) {
        (None, None) => None,
        (log, task) => Some((
            log.as_deref().and_then(days_of),
            task.as_deref().and_then(days_of),
        )),
    })
}

impl Store {
    /// The retention in effect.
    pub fn retention(&self) -> Retention {
        *self
            .inner
            .shared
            .retention
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a new retention (`None` or 0: forever) and applies it with a pruning
    /// pass that starts at once.
    pub fn set_retention(
        &self,
        log_days: Option<u32>,
        task_days: Option<u32>,
        now_ns: UnixNanos,
    ) -> Result<Retention, StoreError> {
        let (log_days, task_days) = (log_days.filter(|d| *d > 0), task_days.filter(|d| *d > 0));
        if log_days
            .or(task_days)
            .is_some_and(|d| d > MAX_RETENTION_DAYS)
        {
            return Err(StoreError::InvalidConfig {
                detail: format!(
                    "retention may be at most {MAX_RETENTION_DAYS} days (0 keeps data forever)"
                ),
            });
        }
        let path = self.path().to_owned();
        self.write(move |tx| {
            let run = || -> rusqlite::Result<()> {
                for (key, value) in [(LOG_DAYS, days_text(log_days)), (TASK_DAYS, days_text(task_days))] {
                    tx.execute(
                        "INSERT INTO settings (key, value, set_ns) VALUES (?1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, set_ns = excluded.set_ns",
                        (key, value, now_ns),
                    )?;
                }
                Ok(())
            };
            run().map_err(|e| StoreError::query(&path, e))
        })?;
        let retention = Retention {
            log_days,
            task_days,
            source: SettingSource::Database,
        };
        *self
            .inner
            .shared
            .retention
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = retention;
        self.inner
            .shared
            .prune_soon
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake_writer()?;
        Ok(retention)
    }
}
