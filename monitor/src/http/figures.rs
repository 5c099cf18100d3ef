//! Figures the JSON API and the dashboard pages both show, computed once: task counts by
//! status, what the node earned, the container's uptime, the distributions' bucket labels.

use serde::Serialize;
use truebit_protocol::bucket::{ExecTimeBucket, GasBucket};

use crate::model::{ContainerEvent, TaskStatus, UnixNanos};
use crate::store::query::{AccountTotals, EarningsDay, TaskStats};

const NS_PER_SEC: i64 = 1_000_000_000;
pub(crate) const NS_PER_HOUR: i64 = 3_600 * NS_PER_SEC;
pub(crate) const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;

/// The labels of a protocol bucket enum's values but the last (`unknown`), in order.
macro_rules! known_labels {
    ($bucket:ty) => {{
        const N: usize = <$bucket>::ALL.len() - 1;
        let mut labels = [""; N];
        let mut i = 0;
        while i < N {
            labels[i] = <$bucket>::ALL[i].label();
            i += 1;
        }
        labels
    }};
}

/// Labels of the execution-time and gas buckets: those of the federation protocol.
pub const ELAPSED_BUCKETS: [&str; ExecTimeBucket::ALL.len() - 1] = known_labels!(ExecTimeBucket);
pub const GAS_BUCKETS: [&str; GasBucket::ALL.len() - 1] = known_labels!(GasBucket);

/// Penalty line items by whose they are: the node's own (its address, from its
/// registration line), and those charged to other accounts. The API's `penalties` object
/// and the Invoices page's cards.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Penalties {
    /// The node's address, when it has printed it (`null`: whose is unknown, and every
    /// penalty counts as `others`).
    pub node_address: Option<String>,
    pub own: ItemTotals,
    pub others: ItemTotals,
    /// Per account, the largest value first.
    pub by_account: Vec<AccountPenalty>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct ItemTotals {
    pub items: u64,
    /// Gas units.
    pub value: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct AccountPenalty {
    pub account: Option<String>,
    /// The node's own address.
    pub own: bool,
    pub items: u64,
    /// Gas units.
    pub value: f64,
}

impl Penalties {
    /// Sorts `accounts` (penalty items per account) into the node's own and the others'
    /// (addresses compared without regard to case: checksummed or not, the same).
    pub fn of(accounts: Vec<AccountTotals>, node_address: Option<String>) -> Penalties {
        let mut p = Penalties {
            node_address,
            ..Penalties::default()
        };
        for a in accounts {
            let own = match (&p.node_address, &a.account) {
                (Some(node), Some(account)) => node.eq_ignore_ascii_case(account),
                _ => false,
            };
            let totals = if own { &mut p.own } else { &mut p.others };
            totals.items += a.items;
            totals.value += a.value;
            p.by_account.push(AccountPenalty {
                account: a.account,
                own,
                items: a.items,
                value: a.value,
            });
        }
        p
    }
}

/// Tasks by status; the API's `tasks` object and the dashboard's figures.
#[derive(Default, Serialize)]
pub(crate) struct Counts {
    pub total: i64,
    pub received: i64,
    pub executing: i64,
    pub completed: i64,
    pub failed: i64,
}

impl Counts {
    /// The counts of a range's per-status totals.
    pub(crate) fn of(stats: &TaskStats) -> Counts {
        let mut counts = Counts::default();
        for r in &stats.totals {
            counts.add(r.status, r.tasks);
        }
        counts
    }

    pub(crate) fn add(&mut self, status: Option<TaskStatus>, n: i64) {
        self.total += n;
        match status {
            Some(TaskStatus::Received) => self.received += n,
            Some(TaskStatus::Executing) => self.executing += n,
            Some(TaskStatus::Completed) => self.completed += n,
            Some(TaskStatus::Failed) => self.failed += n,
            None => {}
        }
    }

    pub(crate) fn success_rate(&self) -> Option<f64> {
        let done = self.completed + self.failed;
        (done > 0).then(|| self.completed as f64 / done as f64)
    }
}

/// What the node earned on a day: the value of its `pay` line items.
pub(crate) fn earned(day: &EarningsDay) -> f64 {
    day.operations
        .iter()
        .filter(|o| o.operation == "pay")
        .map(|o| o.value)
        .sum()
}

// ---- uptime ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownInterval {
    pub start_ns: UnixNanos,
    pub end_ns: UnixNanos,
    /// The event that took the container down (`died`, `stopped`, …).
    pub cause: Option<&'static str>,
    /// Still down at the end of the range.
    pub ongoing: bool,
    /// Its start or end was inferred from the container's inspected state, not seen as
    /// a Docker event (the monitor or the daemon was down then).
    pub inferred: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Uptime {
    pub from_ns: UnixNanos,
    pub to_ns: UnixNanos,
    pub downtime_seconds: f64,
    pub uptime_seconds: f64,
    /// Time before the first recorded event, when the state is not known.
    pub unknown_seconds: f64,
    /// The part of `downtime_seconds` in intervals marked `inferred`.
    pub inferred_downtime_seconds: f64,
    pub down_intervals: Vec<DownInterval>,
}

/// Downtime in `[from, to)` from the last event before the range and the events in it
/// (oldest first).
pub fn compute_uptime(
    before: Option<&ContainerEvent>,
    events: &[ContainerEvent],
    from: UnixNanos,
    to: UnixNanos,
) -> Uptime {
    // None: unknown; Some(true): up; Some(false): down since `down_since`.
    let mut state = before.and_then(|e| e.action.up_after());
    let mut cause = before
        .filter(|e| e.action.up_after() == Some(false))
        .map(|e| e.action.as_str());
    // Whether the event that started the current state was inferred.
    let mut since_inferred = before.is_some_and(|e| e.inferred);
    let mut since = from;
    let (mut down, mut up, mut unknown, mut inferred_down) = (0_i64, 0_i64, 0_i64, 0_i64);
    let mut intervals = Vec::new();
    let mut close = |state: Option<bool>,
                     start: i64,
                     end: i64,
                     cause: Option<&'static str>,
                     ongoing: bool,
                     inferred: bool| {
        if end <= start {
            return;
        }
        match state {
            None => unknown += end - start,
            Some(true) => up += end - start,
            Some(false) => {
                down += end - start;
                if inferred {
                    inferred_down += end - start;
                }
                intervals.push(DownInterval {
                    start_ns: start,
                    end_ns: end,
                    cause,
                    ongoing,
                    inferred,
                });
            }
        }
    };
    for e in events
        .iter()
        .filter(|e| e.time_ns >= from && e.time_ns < to)
    {
        let Some(next) = e.action.up_after() else {
            continue;
        };
        if Some(next) == state {
            continue;
        }
        close(
            state,
            since,
            e.time_ns,
            cause,
            false,
            since_inferred || e.inferred,
        );
        state = Some(next);
        since = e.time_ns;
        since_inferred = e.inferred;
        cause = (!next).then(|| e.action.as_str());
    }
    close(state, since, to, cause, true, since_inferred);
    let secs = |ns: i64| ns as f64 / 1e9;
    Uptime {
        from_ns: from,
        to_ns: to,
        downtime_seconds: secs(down),
        uptime_seconds: secs(up),
        unknown_seconds: secs(unknown),
        inferred_downtime_seconds: secs(inferred_down),
        down_intervals: intervals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_are_the_nodes_own_when_charged_to_its_address_in_any_case() {
        let item = |account: Option<&str>, items: u64, value: f64| AccountTotals {
            account: account.map(str::to_owned),
            items,
            value,
        };
        let accounts = || {
            vec![
                item(Some("0xAbC0000000000000000000000000000000000001"), 2, 30.0),
                item(Some("0x00000000000000000000000000000000000000ff"), 1, 20.0),
                item(None, 1, 5.0),
            ]
        };
        let p = Penalties::of(
            accounts(),
            Some("0xabc0000000000000000000000000000000000001".into()),
        );
        assert_eq!((p.own.items, p.own.value), (2, 30.0));
        assert_eq!((p.others.items, p.others.value), (2, 25.0));
        let own: Vec<bool> = p.by_account.iter().map(|a| a.own).collect();
        assert_eq!(own, [true, false, false]);
        // Without the node's address nothing is its own.
        let unknown = Penalties::of(accounts(), None);
        assert_eq!((unknown.own.items, unknown.others.items), (0, 4));
    }
    use crate::model::ContainerAction;

    fn ev(t: i64, action: ContainerAction) -> ContainerEvent {
        ContainerEvent {
            container_id: "c".into(),
            container_name: "runner-node".into(),
            time_ns: t,
            action,
            exit_code: None,
            inferred: false,
        }
    }

    #[test]
    fn downtime_is_the_time_between_a_death_and_the_next_start() {
        let before = ev(0, ContainerAction::Started);
        let events = [
            ev(100, ContainerAction::Died),
            ev(150, ContainerAction::Oom),
            ev(400, ContainerAction::Started),
            ev(900, ContainerAction::Stopped),
        ];
        let u = compute_uptime(Some(&before), &events, 50, 1_000);
        assert_eq!(
            u.down_intervals,
            vec![
                DownInterval {
                    start_ns: 100,
                    end_ns: 400,
                    cause: Some("died"),
                    ongoing: false,
                    inferred: false,
                },
                DownInterval {
                    start_ns: 900,
                    end_ns: 1_000,
                    cause: Some("stopped"),
                    ongoing: true,
                    inferred: false,
                },
            ]
        );
        assert_eq!(u.downtime_seconds, 400e-9);
        assert_eq!(u.uptime_seconds, 550e-9);
        assert_eq!(u.unknown_seconds, 0.0);
    }

    #[test]
    fn a_gap_with_an_inferred_end_is_inferred_downtime() {
        let inferred = |t, action| ContainerEvent {
            inferred: true,
            ..ev(t, action)
        };
        let events = [
            ev(0, ContainerAction::Started),
            // Seen: died at 100; the start at 300 was inferred.
            ev(100, ContainerAction::Died),
            inferred(300, ContainerAction::Started),
            // Both ends inferred, then an inferred stop still going on.
            inferred(500, ContainerAction::Died),
            inferred(600, ContainerAction::Started),
            ev(700, ContainerAction::Died),
            ev(800, ContainerAction::Started),
            inferred(900, ContainerAction::Died),
        ];
        let u = compute_uptime(None, &events, 0, 1_000);
        let got: Vec<(i64, i64, bool)> = u
            .down_intervals
            .iter()
            .map(|d| (d.start_ns, d.end_ns, d.inferred))
            .collect();
        assert_eq!(
            got,
            vec![
                (100, 300, true),
                (500, 600, true),
                (700, 800, false),
                (900, 1_000, true)
            ]
        );
        assert_eq!(u.downtime_seconds, 500e-9);
        assert_eq!(u.inferred_downtime_seconds, 400e-9);
    }

    #[test]
    fn time_before_the_first_event_is_unknown_not_down() {
        let u = compute_uptime(None, &[ev(300, ContainerAction::Started)], 0, 1_000);
        assert_eq!(u.unknown_seconds, 300e-9);
        assert_eq!(u.uptime_seconds, 700e-9);
        assert!(u.down_intervals.is_empty());
    }

    #[test]
    fn a_container_down_before_the_range_is_down_from_its_start() {
        let u = compute_uptime(Some(&ev(0, ContainerAction::Died)), &[], 500, 1_000);
        assert_eq!(u.down_intervals.len(), 1);
        assert_eq!(u.down_intervals[0].start_ns, 500);
        assert_eq!(u.downtime_seconds, 500e-9);
    }
}
