//! The TrueBit federation aggregator: verified ingest of node window reports from NATS,
//! SQLite storage, k-anonymous network statistics signed with the aggregator's key,
//! and a read-only HTTP API and public network page. See ARCHITECTURE.md.
//!
//! Data path: [`nats`] (feed) -> [`ingest`] (verify) -> [`store`] (with [`gate`]) ->
//! [`stats`] -> [`publisher`] (sign, publish) and [`http`].

use std::sync::Arc;

pub mod app;
pub mod config;
pub mod gate;
pub mod http;
pub mod ingest;
pub mod key;
pub mod metrics;
pub mod nats;
pub mod publisher;
pub mod stats;
pub mod store;

/// Wall-clock time in Unix seconds; injected so tests control it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    pub fn new(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// The system clock.
    pub fn system() -> Clock {
        Clock::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }

    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
