//! Wall-clock time, written once for both binaries: the injectable [`Clock`] (the system
//! clock, or a manual one tests move), the current time in Unix nanoseconds, and Unix
//! nanoseconds to and from RFC 3339 (the way Docker writes it: nine fraction digits, `Z`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Nanoseconds since the Unix epoch (UTC).
pub type UnixNanos = i64;

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_SEC: i64 = 1_000_000_000;

/// Longest single sleep of the system clock: it is re-read at least this often, so a
/// wall-clock step (NTP, suspend) delays a deadline by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The time now, from the system clock.
pub fn now_ns() -> UnixNanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The wall clock: the system's, or (tests) a manual one that only moves when told to.
/// Cheap to clone; clones of a manual clock share its time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<watch::Sender<UnixNanos>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A manual clock standing at `start_ns`.
    pub fn manual(start_ns: UnixNanos) -> Clock {
        Clock {
            manual: Some(Arc::new(watch::Sender::new(start_ns))),
        }
    }

    pub fn now_ns(&self) -> UnixNanos {
        match &self.manual {
            None => now_ns(),
            Some(now) => *now.borrow(),
        }
    }

    /// Unix milliseconds (0 before the epoch).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now_ns() / NS_PER_MS).unwrap_or(0)
    }

    /// Unix seconds (0 before the epoch).
    pub fn now_secs(&self) -> u64 {
        u64::try_from(self.now_ns() / NS_PER_SEC).unwrap_or(0)
    }

    /// Sets a manual clock (it never goes backwards: an earlier time is ignored); the
    /// system clock ignores it.
    pub fn set_ns(&self, now_ns: UnixNanos) {
        if let Some(now) = &self.manual {
            now.send_if_modified(|t| {
                let later = now_ns > *t;
                if later {
                    *t = now_ns;
                }
                later
            });
        }
    }

    /// [`Clock::set_ns`] in milliseconds.
    pub fn set_ms(&self, now_ms: u64) {
        self.set_ns(i64::try_from(now_ms).map_or(i64::MAX, |ms| ms.saturating_mul(NS_PER_MS)));
    }

    /// [`Clock::set_ns`] in seconds.
    pub fn set_secs(&self, now_secs: u64) {
        self.set_ns(i64::try_from(now_secs).map_or(i64::MAX, |s| s.saturating_mul(NS_PER_SEC)));
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.set_ns(self.now_ns().saturating_add(by));
    }

    /// Completes once `now_ms() >= at_ms`.
    pub async fn sleep_until_ms(&self, at_ms: u64) {
        match &self.manual {
            None => loop {
                let now = self.now_ms();
                if now >= at_ms {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(at_ms - now).min(MAX_SLEEP)).await;
            },
            Some(now) => {
                let at_ns =
                    i64::try_from(at_ms).map_or(i64::MAX, |ms| ms.saturating_mul(NS_PER_MS));
                let mut rx = now.subscribe();
                // The sender lives as long as `self`, so `wait_for` only ends when reached.
                let _ = rx.wait_for(|now| *now >= at_ns).await;
            }
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock(system)"),
            Some(now) => write!(f, "Clock(manual, {} ns)", *now.borrow()),
        }
    }
}

/// Parses an RFC 3339 timestamp (any fraction, any offset) into Unix nanoseconds.
pub fn parse_rfc3339_ns(s: &str) -> Option<UnixNanos> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// Unix nanoseconds as Docker writes them: `2025-11-24T13:55:34.123456789Z`.
pub fn rfc3339_ns(ns: UnixNanos) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| String::from("invalid-time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_it_reaches_their_time() {
        let clock = Clock::manual(1_000 * NS_PER_MS);
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
        let clock = Clock::manual(10 * NS_PER_MS);
        clock.set_ms(5);
        assert_eq!(clock.now_ms(), 10);
        clock.set_secs(2);
        assert_eq!(clock.now_ns(), 2 * NS_PER_SEC);
        assert_eq!(clock.now_secs(), 2);
    }

    #[test]
    fn the_system_clock_ignores_setting() {
        let clock = Clock::system();
        clock.set_ms(0);
        assert!(clock.now_secs() > 1_700_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_sleep_returns_at_once_for_a_past_deadline() {
        let clock = Clock::system();
        let before = tokio::time::Instant::now();
        clock.sleep_until_ms(clock.now_ms() - 1).await;
        assert_eq!(tokio::time::Instant::now(), before);
    }

    #[test]
    fn rfc3339_nanoseconds_round_trip() {
        let ns = parse_rfc3339_ns("2025-11-24T13:55:34.123456789Z").expect("valid");
        assert_eq!(ns, 1_763_992_534_123_456_789);
        assert_eq!(rfc3339_ns(ns), "2025-11-24T13:55:34.123456789Z");
        assert_eq!(
            rfc3339_ns(1_763_992_534_000_000_000),
            "2025-11-24T13:55:34.000000000Z"
        );
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
