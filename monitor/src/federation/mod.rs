//! Opt-in federation: anonymous, privacy-checked window reports to the federation hub
//! over NATS, and the hub's signed network statistics back. The contract is
//! PRIVACY.md; the wire format is `truebit-protocol`. Off by default: while it is off
//! the monitor opens no connection to any federation server.
//!
//! ```text
//!  store ──(closed window)──▶ anonymizer ──Report──▶ gate (validate exact bytes, sign)
//!    ▲                                                  │ Publishable / Blocked
//!    │                                                  ▼
//!    └──────── outbox + transparency log (SQLite) ◀── scheduler (0–120 s after close)
//!                       │
//!                       ▼ publisher (only Publishable) ──NATS──▶ truebit.report.v1
//!   latest stats ◀── verify (pinned aggregator key) ◀── truebit.stats.v2
//! ```
//!
//! - [`identity`]: the per-installation Ed25519 key and HMAC salt (created on the first
//!   enable, kept in the database, file mode 0600, never logged or sent).
//! - [`anonymizer`]: window events -> protocol report (pure).
//! - [`gate`]: the protocol's privacy validator on the exact bytes, then the signature;
//!   [`gate::Publishable`] has no other constructor.
//! - `session`: the scheduler (one report per window at a uniformly random 0–120 s
//!   delay after it closes, cover reports for empty windows), the publisher (outbox
//!   -> NATS, JetStream with message ids when a stream covers the subject) and the
//!   statistics subscription.
//! - `nats`: the only module that names async-nats.
//! - [`FederationHandle`]: enable/disable/settings/status/reports/statistics for the
//!   HTTP API and the dashboard, and the node's uptime proof ([`proof`]: a signed
//!   request to the hub, the replicas' sealed replies, M of N pinned signatures).
//!
//! # Wiring
//!
//! ```no_run
//! # async fn demo(store: truebit_monitor::store::Store, config: truebit_monitor::config::Config) {
//! use tokio_util::sync::CancellationToken;
//! use truebit_monitor::federation::Federation;
//!
//! let shutdown = CancellationToken::new();
//! let federation = Federation::new(store, config.federation.clone())
//!     .start(shutdown.clone())
//!     .await;
//! let handle = federation.handle(); // clone into the HTTP state
//! let status = handle.status().await;
//! // ... on shutdown, before closing the store:
//! shutdown.cancel();
//! federation.stopped().await;
//! # }
//! ```

pub mod anonymizer;
pub mod config;
pub mod gate;
mod handle;
pub mod identity;
mod nats;
mod period;
pub mod proof;
mod session;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use truebit_clock::Clock;

pub use config::{FederationConfig, FederationSettings};
pub use handle::{
    FederationError, FederationHandle, FederationSettingsView, FederationStatus, SettingsSource,
    SettingsUpdate,
};
pub use nats::{Delivery, LinkState};
pub use session::{draw_send_delay, timing_rng};
pub use shared::NetworkStatsSnapshot;

pub use crate::store::federation::{ReasonCount, ReportOutcome, ReportRecord};

/// A function applied to a report's bytes between the anonymizer and the gate. Test
/// seam only: it proves the gate really stands between the two.
pub type ReportFilter = Arc<dyn Fn(Vec<u8>) -> Vec<u8> + Send + Sync>;

/// Builds the federation service.
pub struct Federation {
    store: crate::store::Store,
    config: FederationConfig,
    clock: Clock,
    rng: StdRng,
    filter: Option<ReportFilter>,
    backfill_grace: Duration,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Federation {
    pub fn new(store: crate::store::Store, config: FederationConfig) -> Federation {
        Federation {
            store,
            config,
            clock: Clock::system(),
            rng: timing_rng(),
            filter: None,
            backfill_grace: session::BACKFILL_GRACE,
        }
    }

    /// Uses `clock` for windows, send times and the log (tests: [`Clock::manual`]).
    pub fn with_clock(mut self, clock: Clock) -> Federation {
        self.clock = clock;
        self
    }

    /// Test seam: rewrites each report's bytes before the gate.
    #[doc(hidden)]
    pub fn with_report_filter(mut self, filter: ReportFilter) -> Federation {
        self.filter = Some(filter);
        self
    }

    /// Starts the service: if federation is on (stored setting, else FEDERATION_ENABLED)
    /// it starts connecting and reporting before this returns; either way the handle
    /// controls it. It stops when `shutdown` is cancelled. A start-up failure (database
    /// error) is logged; the handle then reports it.
    pub async fn start(self, shutdown: CancellationToken) -> FederationService {
        let shared = Arc::new(shared::Shared::new(
            self.store,
            self.config,
            self.clock,
            self.rng,
            self.filter,
            self.backfill_grace,
        ));
        let handle = FederationHandle {
            shared: Arc::clone(&shared),
        };
        if let Err(error) = shared.start().await {
            tracing::error!(%error, "federation cannot start");
            shared.runtime().last_error = Some(error.to_string());
        }
        let task = tokio::spawn(async move {
            shutdown.cancelled().await;
            shared.shutdown().await;
        });
        FederationService { handle, task }
    }
}

/// The running federation service.
#[derive(Debug)]
pub struct FederationService {
    handle: FederationHandle,
    task: JoinHandle<()>,
}

impl FederationService {
    pub fn handle(&self) -> FederationHandle {
        self.handle.clone()
    }

    /// Waits until the service has stopped (after its shutdown token was cancelled):
    /// the connection is closed and nothing more is written to the store.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "federation task ended badly");
        }
    }
}
