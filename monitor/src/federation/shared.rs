//! The state the control ([`super::handle`]) and the running session
//! ([`super::session`]) share: both import it, neither imports the other for it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use truebit_clock::Clock;
use truebit_protocol::stats::NetworkStats;

use super::anonymizer::Sharing;
use super::config::FederationConfig;
use super::nats::{Delivery, Link};
use super::ReportFilter;
use crate::store::Store;

/// The newest certified network statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkStatsSnapshot {
    pub stats: NetworkStats,
    /// The pinned aggregator keys (hex) whose signatures over these figures verified.
    pub signers: Vec<String>,
    /// How many signatures the pinned key set requires.
    pub threshold: usize,
    /// When the monitor received them (Unix ms).
    pub received_ms: u64,
}

/// In-memory state of the running session.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    pub link: Option<watch::Receiver<Link>>,
    pub delivery: Option<Delivery>,
    pub last_error: Option<String>,
    pub stats_received: u64,
    pub stats_rejected: u64,
    pub last_stats_rejection: Option<String>,
}

/// State shared by the handles and the session.
pub(crate) struct Shared {
    pub store: Store,
    pub config: FederationConfig,
    pub clock: Clock,
    pub filter: Option<ReportFilter>,
    pub backfill_grace: Duration,
    pub wake: Notify,
    rng: Mutex<StdRng>,
    sharing: Mutex<Sharing>,
    runtime: Mutex<Runtime>,
    latest_stats: Mutex<Option<NetworkStatsSnapshot>>,
    pub(super) control: tokio::sync::Mutex<Control>,
}

#[derive(Debug, Default)]
pub(super) struct Control {
    pub session: Option<Session>,
    pub stopped: bool,
}

#[derive(Debug)]
pub(super) struct Session {
    pub cancel: CancellationToken,
    pub task: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(
        store: Store,
        config: FederationConfig,
        clock: Clock,
        rng: StdRng,
        filter: Option<ReportFilter>,
        backfill_grace: Duration,
    ) -> Shared {
        let initial = config.initial;
        Shared {
            store,
            config,
            clock,
            filter,
            backfill_grace,
            wake: Notify::new(),
            rng: Mutex::new(rng),
            sharing: Mutex::new(Sharing {
                level: initial.level,
                continent: initial.continent,
            }),
            runtime: Mutex::new(Runtime::default()),
            latest_stats: Mutex::new(None),
            control: tokio::sync::Mutex::new(Control::default()),
        }
    }

    pub(crate) fn rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.rng)
    }

    pub(crate) fn sharing(&self) -> Sharing {
        *lock(&self.sharing)
    }

    pub(crate) fn share(&self, sharing: Sharing) {
        *lock(&self.sharing) = sharing;
    }

    pub(crate) fn runtime(&self) -> MutexGuard<'_, Runtime> {
        lock(&self.runtime)
    }

    pub(crate) fn latest_stats(&self) -> MutexGuard<'_, Option<NetworkStatsSnapshot>> {
        lock(&self.latest_stats)
    }
}
