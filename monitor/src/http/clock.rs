//! Wall-clock time for sessions and rate limits, injectable so that tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::model::UnixNanos;

#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that only moves when told to (tests).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(start_ns: UnixNanos) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start_ns)))
    }

    pub fn now_ns(&self) -> UnixNanos {
        match self {
            Clock::System => crate::store::now_ns(),
            Clock::Manual(now) => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(now) = self {
            let ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
            now.fetch_add(ns, Ordering::SeqCst);
        }
    }
}
