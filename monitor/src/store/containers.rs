//! What the monitor last saw of each container through inspect: Docker's `RestartCount`
//! at a given start. The Docker source compares it with the next inspect to find the
//! restarts its events did not show (Docker's event buffer holds a few hundred events
//! and forgets them on a daemon restart).

use super::{Store, StoreError};
use crate::model::RestartObservation;

pub(crate) const MIGRATION: &str = "
CREATE TABLE container_observations (
    container_id   TEXT PRIMARY KEY NOT NULL,
    restart_count  INTEGER NOT NULL,
    started_ns     INTEGER NOT NULL
) STRICT;
";

impl Store {
    /// The last observation stored for a container, if any.
    pub fn restart_observation(
        &self,
        container_id: &str,
    ) -> Result<Option<RestartObservation>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT restart_count, started_ns FROM container_observations
                 WHERE container_id = ?1",
            )?;
            let mut rows = stmt.query_map([container_id], |row| {
                Ok(RestartObservation {
                    restart_count: row.get(0)?,
                    started_ns: row.get(1)?,
                })
            })?;
            rows.next().transpose()
        })
    }

    /// Replaces a container's observation.
    pub fn observe_restarts(
        &self,
        container_id: &str,
        observation: RestartObservation,
    ) -> Result<(), StoreError> {
        let path = self.path().to_owned();
        let id = container_id.to_owned();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO container_observations (container_id, restart_count, started_ns)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (container_id) DO UPDATE
                 SET restart_count = excluded.restart_count, started_ns = excluded.started_ns",
                (id, observation.restart_count, observation.started_ns),
            )
            .map(drop)
            .map_err(|e| StoreError::query(&path, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[test]
    fn an_observation_is_kept_per_container_and_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m.db");
        let store = Store::open(StoreConfig::new(&path)).expect("open");
        assert_eq!(store.restart_observation("abc").expect("read"), None);
        let first = RestartObservation {
            restart_count: 3,
            started_ns: 1_000,
        };
        store.observe_restarts("abc", first).expect("write");
        let second = RestartObservation {
            restart_count: 7,
            started_ns: 9_000,
        };
        store.observe_restarts("def", second).expect("write");
        assert_eq!(store.restart_observation("abc").expect("read"), Some(first));
        store.observe_restarts("abc", second).expect("write");
        assert_eq!(
            store.restart_observation("abc").expect("read"),
            Some(second)
        );
        store.close().expect("close");
        let again = Store::open(StoreConfig::new(&path)).expect("reopen");
        assert_eq!(
            again.restart_observation("abc").expect("read"),
            Some(second)
        );
        assert_eq!(
            again.restart_observation("def").expect("read"),
            Some(second)
        );
    }
}
