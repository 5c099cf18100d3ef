//! Wall-clock time for the window schedule, injectable so that tests can move through
//! windows without waiting (and without faking the network, which real-NATS tests use).
//!
//! Windows are aligned to the UTC wall clock, so production uses [`SystemClock`] (Unix
//! time, re-checked after every sleep so a clock step is noticed). Tests use
//! [`ManualClock`], which only moves when told to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A future that completes when the clock reaches a time.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Unix time in milliseconds, and sleeping until a given Unix time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now_ms(&self) -> u64;
    /// Completes once `now_ms() >= at_ms`.
    fn sleep_until_ms(&self, at_ms: u64) -> Sleep<'_>;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// Longest single sleep: the clock is re-read at least this often, so a wall-clock step
/// (NTP, suspend) delays a deadline by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep_until_ms(&self, at_ms: u64) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let now = self.now_ms();
                if now >= at_ms {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(at_ms - now).min(MAX_SLEEP)).await;
            }
        })
    }
}

/// A clock that only moves when the test says so. Cheap to clone; clones share the time.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(now_ms)),
        }
    }

    /// Sets the time (it never goes backwards: an earlier time is ignored).
    pub fn set_ms(&self, now_ms: u64) {
        self.now.send_if_modified(|t| {
            let later = now_ms > *t;
            if later {
                *t = now_ms;
            }
            later
        });
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.set_ms(self.now_ms().saturating_add(by));
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({} ms)", *self.now.borrow())
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until_ms(&self, at_ms: u64) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so `wait_for` only ends when reached.
            let _ = rx.wait_for(|now| *now >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_it_reaches_their_time() {
        let clock = ManualClock::new(1_000);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until_ms(5_000).await })
        };
        tokio::task::yield_now().await;
        clock.set_ms(4_999);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(clock.now_ms(), 5_000);
    }

    #[test]
    fn manual_clock_never_goes_backwards() {
        let clock = ManualClock::new(10);
        clock.set_ms(5);
        assert_eq!(clock.now_ms(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_sleep_returns_at_once_for_a_past_deadline() {
        let clock = SystemClock;
        let before = tokio::time::Instant::now();
        clock.sleep_until_ms(clock.now_ms() - 1).await;
        assert_eq!(tokio::time::Instant::now(), before);
    }
}
