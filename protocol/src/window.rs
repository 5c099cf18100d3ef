//! Window arithmetic: 5-minute windows aligned to the UTC wall clock.
//!
//! A report covers one window `[start, start + 300 s)` and names it by its start, the
//! only timestamp on the wire. It is sent once, after the window closes, at a uniformly
//! random delay of 0–120 s, so its arrival time tells nothing finer than the window.
//! Unix time has no leap seconds, so "aligned to the wall clock" is `secs % 300 == 0`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a window in seconds.
pub const WINDOW_SECS: u64 = 300;

/// Shortest delay between a window's close and its report's send time, in milliseconds.
pub const SEND_DELAY_MIN_MS: u64 = 0;

/// Longest delay between a window's close and its report's send time, in milliseconds
/// (inclusive).
pub const SEND_DELAY_MAX_MS: u64 = 120_000;

/// The start of a window in Unix seconds: always a multiple of [`WINDOW_SECS`] and at
/// most [`WindowStart::MAX`] (so arithmetic never overflows and it fits an `i64`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowStart(u64);

impl WindowStart {
    /// The last window that starts before the year 10000 (253402300800 is 10000-01-01).
    pub const MAX: WindowStart = WindowStart(253_402_300_800 - WINDOW_SECS);

    /// The window starting at `unix_secs`, if that is a window start.
    pub const fn new(unix_secs: u64) -> Option<Self> {
        if is_window_start(unix_secs) {
            Some(Self(unix_secs))
        } else {
            None
        }
    }

    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// The Unix second at which the window closes (its exclusive end, the next start).
    pub const fn closes_at(self) -> u64 {
        self.0 + WINDOW_SECS
    }

    pub const fn next(self) -> Option<Self> {
        Self::new(self.0 + WINDOW_SECS)
    }

    pub const fn prev(self) -> Option<Self> {
        match self.0.checked_sub(WINDOW_SECS) {
            Some(s) => Some(Self(s)),
            None => None,
        }
    }

    /// Whether `unix_secs` falls inside this window.
    pub const fn contains(self, unix_secs: u64) -> bool {
        self.0 <= unix_secs && unix_secs < self.closes_at()
    }

    /// When to send this window's report, in Unix milliseconds: the close time plus
    /// [`send_delay`] of `random`.
    pub fn send_at_ms(self, random: u64) -> u64 {
        self.closes_at() * 1000 + send_delay(random).as_millis() as u64
    }

    /// Whether a report for this window is acceptable at `now_secs`: its window has
    /// closed (allowing `max_skew_secs` of clock skew) and closed at most
    /// `max_age_secs` ago.
    pub fn check_freshness(
        self,
        now_secs: u64,
        max_age_secs: u64,
        max_skew_secs: u64,
    ) -> Result<(), Freshness> {
        if self.closes_at() > now_secs.saturating_add(max_skew_secs) {
            Err(Freshness::Future)
        } else if self.closes_at().saturating_add(max_age_secs) < now_secs {
            Err(Freshness::Stale)
        } else {
            Ok(())
        }
    }
}

/// Why a window is not acceptable now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Freshness {
    #[error("the report's window has not closed yet (check the sender's clock)")]
    Future,
    #[error("the report's window closed too long ago")]
    Stale,
}

/// The window containing `unix_secs`. Saturates at [`WindowStart::MAX`].
pub const fn window_of(unix_secs: u64) -> WindowStart {
    let start = unix_secs - unix_secs % WINDOW_SECS;
    if start > WindowStart::MAX.0 {
        WindowStart::MAX
    } else {
        WindowStart(start)
    }
}

/// Whether `unix_secs` is a window start (a multiple of 300 not after [`WindowStart::MAX`]).
pub const fn is_window_start(unix_secs: u64) -> bool {
    unix_secs % WINDOW_SECS == 0 && unix_secs <= WindowStart::MAX.0
}

/// A uniformly distributed send delay in `[0, 120] s` at millisecond resolution, from
/// one uniformly random `u64` (the caller draws it; this crate needs no RNG).
///
/// Uses the high half of a 64x64-bit product (Lemire's method): the bias is below
/// 120001 / 2^64, far under anything measurable.
pub fn send_delay(random: u64) -> Duration {
    let span = SEND_DELAY_MAX_MS - SEND_DELAY_MIN_MS + 1;
    let ms = ((u128::from(random) * u128::from(span)) >> 64) as u64;
    Duration::from_millis(SEND_DELAY_MIN_MS + ms)
}

impl fmt::Display for WindowStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for WindowStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowStart({})", self.0)
    }
}

impl Serialize for WindowStart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for WindowStart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = u64::deserialize(deserializer)?;
        WindowStart::new(secs).ok_or_else(|| {
            serde::de::Error::custom("window start is not a multiple of 300 s (or too far ahead)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-06-01T12:00:00Z
    const NOON: u64 = 1_717_243_200;

    #[test]
    fn window_of_rounds_down_to_the_five_minute_mark() {
        assert_eq!(window_of(NOON).as_secs(), NOON);
        assert_eq!(window_of(NOON + 1).as_secs(), NOON);
        assert_eq!(window_of(NOON + 299).as_secs(), NOON);
        assert_eq!(window_of(NOON + 300).as_secs(), NOON + 300);
        assert_eq!(window_of(NOON - 1).as_secs(), NOON - 300);
        assert_eq!(window_of(0).as_secs(), 0);
    }

    #[test]
    fn window_of_saturates_far_in_the_future() {
        assert_eq!(window_of(u64::MAX), WindowStart::MAX);
        assert!(is_window_start(WindowStart::MAX.as_secs()));
        assert_eq!(WindowStart::MAX.closes_at(), 253_402_300_800);
        assert_eq!(WindowStart::MAX.next(), None);
    }

    #[test]
    fn only_multiples_of_300_are_window_starts() {
        assert!(is_window_start(NOON));
        assert!(is_window_start(NOON + 300));
        assert!(!is_window_start(NOON + 1));
        assert!(!is_window_start(NOON + 60));
        assert!(!is_window_start(NOON + 299));
        assert!(WindowStart::new(NOON + 150).is_none());
        assert_eq!(WindowStart::new(NOON).map(WindowStart::as_secs), Some(NOON));
    }

    #[test]
    fn next_prev_and_close_step_by_one_window() {
        let w = window_of(NOON);
        assert_eq!(w.closes_at(), NOON + 300);
        assert_eq!(w.next().map(WindowStart::as_secs), Some(NOON + 300));
        assert_eq!(w.prev().map(WindowStart::as_secs), Some(NOON - 300));
        assert_eq!(window_of(0).prev(), None);
        assert!(w.contains(NOON));
        assert!(w.contains(NOON + 299));
        assert!(!w.contains(NOON + 300));
        assert!(!w.contains(NOON - 1));
    }

    #[test]
    fn send_delay_covers_zero_to_120_seconds_inclusive() {
        assert_eq!(send_delay(0), Duration::ZERO);
        assert_eq!(
            send_delay(u64::MAX),
            Duration::from_millis(SEND_DELAY_MAX_MS)
        );
        assert_eq!(send_delay(u64::MAX / 2).as_millis(), 60_000);
        let w = window_of(NOON);
        assert_eq!(w.send_at_ms(0), (NOON + 300) * 1000);
        assert_eq!(w.send_at_ms(u64::MAX), (NOON + 300 + 120) * 1000);
    }

    #[test]
    fn send_delay_is_uniform_over_the_range() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut bins = [0u32; 12]; // 10 s each
        let n = 120_000;
        for _ in 0..n {
            let ms = send_delay(rng.next_u64()).as_millis() as u64;
            assert!(ms <= SEND_DELAY_MAX_MS);
            bins[(ms / 10_001) as usize] += 1;
        }
        let expected = f64::from(n) / 12.0;
        let chi2: f64 = bins
            .iter()
            .map(|&b| (f64::from(b) - expected).powi(2) / expected)
            .sum();
        // 11 degrees of freedom: p = 0.001 at 31.3.
        assert!(chi2 < 31.3, "chi2 = {chi2}, bins = {bins:?}");
    }

    #[test]
    fn freshness_rejects_open_windows_and_old_ones() {
        let w = window_of(NOON);
        // Window still open.
        assert_eq!(
            w.check_freshness(NOON + 10, 3600, 0),
            Err(Freshness::Future)
        );
        // Open, but within the allowed skew.
        assert_eq!(w.check_freshness(NOON + 290, 3600, 30), Ok(()));
        assert_eq!(w.check_freshness(NOON + 300, 3600, 0), Ok(()));
        assert_eq!(w.check_freshness(NOON + 300 + 3600, 3600, 0), Ok(()));
        assert_eq!(
            w.check_freshness(NOON + 300 + 3601, 3600, 0),
            Err(Freshness::Stale)
        );
    }

    #[test]
    fn window_start_serializes_as_a_bare_number_and_refuses_unaligned_values() {
        let w = window_of(NOON);
        assert_eq!(serde_json::to_string(&w).expect("serialize"), "1717243200");
        assert_eq!(
            serde_json::from_str::<WindowStart>("1717243200").expect("parse"),
            w
        );
        assert!(serde_json::from_str::<WindowStart>("1717243201").is_err());
        assert!(serde_json::from_str::<WindowStart>("\"1717243200\"").is_err());
        assert!(serde_json::from_str::<WindowStart>("-300").is_err());
    }
}
