//! The checks on a verified report that need the aggregator's state: window sanity
//! (not in the future, not too old), per-node and global rate limits, and a cap on new
//! node ids per hour. They run in the store's writer thread, next to the duplicate check,
//! with the time the ingest clock gave the batch.

use std::collections::HashMap;

use truebit_protocol::window::{Freshness, WindowStart};

/// Why a report was not stored. [`Reason::code`] is the label in /metrics and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The message itself: size, envelope, schema, privacy rules, node id, key,
    /// signature ([`truebit_protocol::sign::VerifyError::code`]).
    Verify(&'static str),
    /// The window has not closed yet.
    Future,
    /// The window closed longer ago than the configured maximum age.
    Stale,
    /// A report of this node for this window is already stored.
    Duplicate,
    /// The node sent more than its hourly allowance.
    NodeRate,
    /// The whole network sent more than the per-second allowance.
    GlobalRate,
    /// Too many new node ids this hour.
    NewNodes,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Verify(code) => code,
            Reason::Future => "future",
            Reason::Stale => "stale",
            Reason::Duplicate => "duplicate",
            Reason::NodeRate => "rate_node",
            Reason::GlobalRate => "rate_global",
            Reason::NewNodes => "new_nodes_cap",
        }
    }
}

/// The configured limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Reports whose window closed longer ago are `stale`.
    pub max_age_secs: u64,
    /// Allowed clock skew of senders for the `future` check.
    pub max_skew_secs: u64,
    /// Reports one node may deliver per clock hour (one per window is 12; catching up
    /// after an outage needs more).
    pub node_per_hour: u32,
    /// Reports the whole network may deliver per second.
    pub global_per_sec: u32,
    /// Node ids never seen before that are accepted per clock hour.
    pub new_nodes_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_age_secs: 7 * 86_400,
            max_skew_secs: 30,
            node_per_hour: 2_100,
            global_per_sec: 50_000,
            new_nodes_per_hour: 10_000,
        }
    }
}

/// Fixed-interval counters (per clock hour, per second): cheap and deterministic.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    hour: u64,
    per_node: HashMap<i64, u32>,
    new_nodes: u32,
    second: u64,
    global: u32,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            hour: 0,
            per_node: HashMap::new(),
            new_nodes: 0,
            second: 0,
            global: 0,
        }
    }

    fn roll(&mut self, now: u64) {
        let hour = now / 3_600;
        if hour != self.hour {
            self.hour = hour;
            self.per_node.clear();
            self.new_nodes = 0;
        }
        if now != self.second {
            self.second = now;
            self.global = 0;
        }
    }

    /// Window sanity and the global rate, for any report.
    pub fn admit(&mut self, window: u64, now: u64) -> Result<(), Reason> {
        self.roll(now);
        let window = WindowStart::new(window).ok_or(Reason::Verify("window"))?;
        match window.check_freshness(now, self.limits.max_age_secs, self.limits.max_skew_secs) {
            Err(Freshness::Future) => return Err(Reason::Future),
            Err(Freshness::Stale) => return Err(Reason::Stale),
            Ok(()) => {}
        }
        if self.global >= self.limits.global_per_sec {
            return Err(Reason::GlobalRate);
        }
        self.global += 1;
        Ok(())
    }

    /// The hourly allowance of a known node.
    pub fn node(&mut self, idx: i64, now: u64) -> Result<(), Reason> {
        self.roll(now);
        let count = self.per_node.entry(idx).or_default();
        if *count >= self.limits.node_per_hour {
            return Err(Reason::NodeRate);
        }
        *count += 1;
        Ok(())
    }

    /// The hourly cap on new node ids.
    pub fn new_node(&mut self, now: u64) -> Result<(), Reason> {
        self.roll(now);
        if self.new_nodes >= self.limits.new_nodes_per_hour {
            return Err(Reason::NewNodes);
        }
        self.new_nodes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 1_717_243_200;

    fn gate(limits: Limits) -> Gate {
        Gate::new(limits)
    }

    #[test]
    fn open_windows_are_future_and_old_ones_stale() {
        let mut g = gate(Limits {
            max_age_secs: 3_600,
            max_skew_secs: 0,
            ..Limits::default()
        });
        assert_eq!(g.admit(NOON, NOON + 299), Err(Reason::Future));
        assert_eq!(g.admit(NOON, NOON + 300), Ok(()));
        assert_eq!(g.admit(NOON, NOON + 300 + 3_600), Ok(()));
        assert_eq!(g.admit(NOON, NOON + 300 + 3_601), Err(Reason::Stale));
    }

    #[test]
    fn the_global_rate_resets_every_second() {
        let mut g = gate(Limits {
            global_per_sec: 2,
            ..Limits::default()
        });
        let now = NOON + 400;
        assert_eq!(g.admit(NOON, now), Ok(()));
        assert_eq!(g.admit(NOON, now), Ok(()));
        assert_eq!(g.admit(NOON, now), Err(Reason::GlobalRate));
        assert_eq!(g.admit(NOON, now + 1), Ok(()));
    }

    #[test]
    fn a_node_is_limited_per_hour_and_new_nodes_are_capped() {
        let mut g = gate(Limits {
            node_per_hour: 2,
            new_nodes_per_hour: 1,
            ..Limits::default()
        });
        let now = NOON + 400;
        assert_eq!(g.node(7, now), Ok(()));
        assert_eq!(g.node(7, now), Ok(()));
        assert_eq!(g.node(7, now), Err(Reason::NodeRate));
        assert_eq!(g.node(8, now), Ok(()));
        assert_eq!(g.new_node(now), Ok(()));
        assert_eq!(g.new_node(now), Err(Reason::NewNodes));
        // The next clock hour starts afresh.
        let later = (now / 3_600 + 1) * 3_600;
        assert_eq!(g.node(7, later), Ok(()));
        assert_eq!(g.new_node(later), Ok(()));
    }

    #[test]
    fn reason_codes_are_stable_labels() {
        assert_eq!(Reason::Verify("bad_signature").code(), "bad_signature");
        assert_eq!(Reason::Future.code(), "future");
        assert_eq!(Reason::Stale.code(), "stale");
        assert_eq!(Reason::Duplicate.code(), "duplicate");
        assert_eq!(Reason::NodeRate.code(), "rate_node");
        assert_eq!(Reason::GlobalRate.code(), "rate_global");
        assert_eq!(Reason::NewNodes.code(), "new_nodes_cap");
    }
}
