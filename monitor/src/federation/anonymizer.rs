//! The anonymizer: a closed window's store events -> a protocol [`Report`].
//!
//! Pure: the store fills a [`WindowData`] (plain values, local only), this module maps it
//! field by field onto the report, and nothing else reaches the report. What it keeps:
//!
//! | report field | from | how |
//! |---|---|---|
//! | `node`, `key` | the installation's key pair | public key, node id derived from it |
//! | `window` | the window | its start, the only time on the wire |
//! | `level`, `continent` | the operator's settings | continent only at `full` |
//! | `status.state` | last container event before the window's end, else log activity in the window | `up` / `down` / `unknown` |
//! | `status.active` | the node's slots in use (node status) | bucket (`0` when the container is down) |
//! | `status.total` | tasks recorded up to the window's end | bucket |
//! | `counts` | tasks received / completed / failed in the window | exact at `full`; at `strict` each plus its own noise and a fixed shift (`truebit_protocol::noise::strict_count`) |
//! | `tasks[]` | tasks finished in the window (`full` only) | chain id, outcome, buckets, cache flag |
//! | `invoices[]` | invoice lines recorded in the window (`full` only) | operation word, steps bucket |
//!
//! Items carry no identifier (no published figure needs one) and are sorted by their
//! values, so their order says nothing about when they happened. Everything else the
//! store knows (wallets, task and execution ids, block numbers and hashes, requesters,
//! inputs, outputs, exact times, versions) is simply not read.

use truebit_protocol::bucket::{
    ActiveTasksBucket, ExecTimeBucket, GasBucket, MemoryBucket, StepsBucket, TotalTasksBucket,
};
use truebit_protocol::noise::strict_count;
use truebit_protocol::report::{
    ChainId, Continent, InvoiceItem, Level, NodeState, NodeStatus, Operation, Outcome, Report,
    TaskItem, WindowCounts, MAX_WINDOW_COUNT,
};
use truebit_protocol::window::WindowStart;

use super::identity::Identity;
use crate::model::ContainerAction;

pub use crate::store::federation::{FinishedTask, InvoiceLine, WindowData};

/// What the operator chose to share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sharing {
    pub level: Level,
    /// Sent only at the `full` level.
    pub continent: Option<Continent>,
}

/// The node state at the end of the window.
pub fn node_state(data: &WindowData) -> NodeState {
    match data.last_container_action {
        Some(ContainerAction::Started | ContainerAction::Restarted | ContainerAction::Unpaused) => {
            NodeState::Up
        }
        Some(
            ContainerAction::Created
            | ContainerAction::Died
            | ContainerAction::Oom
            | ContainerAction::Stopped
            | ContainerAction::Paused
            | ContainerAction::Destroyed,
        ) => NodeState::Down,
        None if data.active_in_window => NodeState::Up,
        None => NodeState::Unknown,
    }
}

/// Builds the window's report. Counts above the protocol's limit are capped (the
/// validator then blocks a `full` report whose items disagree, failing closed). At the
/// `strict` level the counts are noised with a generator seeded by the operating
/// system (see [`anonymize_with_noise`]).
pub fn anonymize(
    data: &WindowData,
    identity: &Identity,
    window: WindowStart,
    sharing: Sharing,
) -> Report {
    use rand::SeedableRng as _;
    anonymize_with_noise(
        data,
        identity,
        window,
        sharing,
        &mut rand::rngs::StdRng::from_entropy(),
    )
}

/// [`anonymize`] with the generator of the strict level's local noise: each window count
/// leaves the machine as `count + noise + STRICT_SHIFT` (two-sided geometric noise at
/// ε = `EPSILON_STRICT_WINDOW` per count and window), so not even the hub sees the exact
/// figures; the hub subtracts the shift, and the noise averages out in its sums.
pub fn anonymize_with_noise(
    data: &WindowData,
    identity: &Identity,
    window: WindowStart,
    sharing: Sharing,
    rng: &mut dyn rand::RngCore,
) -> Report {
    let mut report = Report::new(identity.public_key(), window, sharing.level);
    let state = node_state(data);
    report.status = NodeStatus {
        state,
        active: match state {
            NodeState::Down => ActiveTasksBucket::Zero,
            _ => ActiveTasksBucket::from_value(data.slots_used.map(u64::from)),
        },
        total: TotalTasksBucket::from_value(Some(data.total_tasks)),
    };
    let failed = data.finished.iter().filter(|t| t.failed).count() as u64;
    let completed = data.finished.len() as u64 - failed;
    report.counts = WindowCounts {
        received: data.received.min(MAX_WINDOW_COUNT),
        completed: completed.min(MAX_WINDOW_COUNT),
        failed: failed.min(MAX_WINDOW_COUNT),
    };
    if sharing.level == Level::Strict {
        let mut noised = |x: u64| strict_count(x, rng, MAX_WINDOW_COUNT);
        report.counts = WindowCounts {
            received: noised(report.counts.received),
            completed: noised(report.counts.completed),
            failed: noised(report.counts.failed),
        };
        return report;
    }
    report.continent = sharing.continent;
    report.tasks = data
        .finished
        .iter()
        .map(|t| TaskItem {
            chain: t.chain_id.as_deref().and_then(ChainId::parse),
            outcome: if t.failed {
                Outcome::Failed
            } else {
                Outcome::Completed
            },
            duration: match (t.elapsed_ns, t.elapsed_ms) {
                (Some(ns), _) => ExecTimeBucket::from_nanos(Some(ns)),
                (None, ms) => ExecTimeBucket::from_value(ms),
            },
            gas: GasBucket::from_value(t.gas_used),
            memory: MemoryBucket::from_value(t.memory_peak),
            cached: t.cached,
        })
        .collect();
    report.tasks.sort_unstable();
    report.invoices = data
        .invoice_lines
        .iter()
        .map(|line| InvoiceItem {
            op: Operation::from_node(&line.operation),
            steps: StepsBucket::from_value(line.steps.and_then(|s| u64::try_from(s).ok())),
        })
        .collect();
    report.invoices.sort_unstable();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::identity::test_fixtures::{identity, window};
    use truebit_protocol::privacy::validate_report;

    const FULL: Sharing = Sharing {
        level: Level::Full,
        continent: Some(Continent::Europe),
    };

    fn busy() -> WindowData {
        WindowData {
            last_container_action: Some(ContainerAction::Started),
            active_in_window: true,
            slots_used: Some(3),
            total_tasks: 42,
            received: 4,
            finished: vec![
                FinishedTask {
                    failed: false,
                    chain_id: Some("43113".into()),
                    elapsed_ns: Some(842_133_917),
                    elapsed_ms: Some(842),
                    gas_used: Some(19_373_422),
                    memory_peak: Some(37),
                    cached: Some(true),
                },
                FinishedTask {
                    failed: true,
                    chain_id: Some("0x52908400098527886E0F7030069857D2E4169EE7".into()),
                    elapsed_ns: None,
                    elapsed_ms: Some(61_000),
                    gas_used: None,
                    memory_peak: Some(4096),
                    cached: None,
                },
            ],
            invoice_lines: vec![
                InvoiceLine {
                    operation: "charge".into(),
                    steps: Some(19_373_422),
                },
                InvoiceLine {
                    operation: "refund to 10.0.0.1".into(),
                    steps: Some(-5),
                },
                InvoiceLine {
                    operation: "pay".into(),
                    steps: None,
                },
            ],
        }
    }

    #[test]
    fn busy_window_maps_every_figure_to_its_bucket() {
        let id = identity();
        let r = anonymize(&busy(), &id, window(), FULL);
        assert_eq!(r.status.state, NodeState::Up);
        assert_eq!(r.status.active, ActiveTasksBucket::TwoToThree);
        assert_eq!(r.status.total, TotalTasksBucket::From10To50);
        assert_eq!(
            r.counts,
            WindowCounts {
                received: 4,
                completed: 1,
                failed: 1
            }
        );
        assert_eq!(r.continent, Some(Continent::Europe));
        let ok = r
            .tasks
            .iter()
            .find(|t| t.outcome == Outcome::Completed)
            .expect("completed item");
        assert_eq!(ok.chain.map(ChainId::get), Some(43_113));
        assert_eq!(ok.duration, ExecTimeBucket::From500MsTo1S);
        assert_eq!(ok.gas, GasBucket::From10MTo100M);
        assert_eq!(ok.memory, MemoryBucket::LessThan64);
        assert_eq!(ok.cached, Some(true));
        let bad = r
            .tasks
            .iter()
            .find(|t| t.outcome == Outcome::Failed)
            .expect("failed item");
        assert_eq!(
            bad.chain, None,
            "a wallet-shaped chain id is sent as unknown"
        );
        assert_eq!(bad.duration, ExecTimeBucket::AtLeast1M);
        assert_eq!(bad.gas, GasBucket::Unknown);
        assert_eq!(bad.memory, MemoryBucket::AtLeast1024);
        assert_eq!(bad.cached, None);
        // Every invoice line is an item, without any id.
        assert_eq!(r.invoices.len(), 3);
        let charge = r
            .invoices
            .iter()
            .find(|i| i.op == Operation::Charge)
            .expect("charge");
        assert_eq!(charge.steps, GasBucket::From10MTo100M);
        let other = r
            .invoices
            .iter()
            .find(|i| i.op == Operation::Other)
            .expect("other");
        assert_eq!(other.steps, GasBucket::Unknown);
        validate_report(&r).expect("the anonymizer's output passes the validator");
    }

    #[test]
    fn items_are_ordered_by_value_not_by_time() {
        let mut data = busy();
        // Finished in this order: slow ones first, then fast ones.
        data.finished = (0..50)
            .map(|i| FinishedTask {
                elapsed_ms: Some(if i < 25 { 90_000 } else { 50 }),
                ..FinishedTask::default()
            })
            .collect();
        let r = anonymize(&data, &identity(), window(), FULL);
        let mut sorted = r.tasks.clone();
        sorted.sort_unstable();
        assert_eq!(r.tasks, sorted);
        assert_eq!(r.tasks[0].duration, ExecTimeBucket::LessThan100Ms);
        assert_eq!(r.tasks[49].duration, ExecTimeBucket::AtLeast1M);
    }

    #[test]
    fn strict_level_sends_status_and_noised_counts_only() {
        use rand::SeedableRng as _;
        let strict = Sharing {
            level: Level::Strict,
            continent: Some(Continent::Europe),
        };
        let seeded = || rand::rngs::StdRng::seed_from_u64(9);
        let r = anonymize_with_noise(&busy(), &identity(), window(), strict, &mut seeded());
        assert_eq!(r.level, Level::Strict);
        assert!(r.tasks.is_empty());
        assert!(r.invoices.is_empty());
        assert_eq!(r.continent, None, "no continent at strict");
        // Exactly what the protocol's strict noise gives with the same draws.
        let mut rng = seeded();
        assert_eq!(
            r.counts.received,
            strict_count(4, &mut rng, MAX_WINDOW_COUNT)
        );
        assert_eq!(
            r.counts.completed,
            strict_count(1, &mut rng, MAX_WINDOW_COUNT)
        );
        assert_eq!(r.counts.failed, strict_count(1, &mut rng, MAX_WINDOW_COUNT));
        validate_report(&r).expect("valid");
        // Over many windows the hub's estimate (minus the shift) averages the true count,
        // while single windows differ from it.
        let mut rng = seeded();
        let sent: Vec<i64> = (0..4_000)
            .map(|_| {
                let r = anonymize_with_noise(&busy(), &identity(), window(), strict, &mut rng);
                truebit_protocol::noise::strict_estimate(r.counts.received)
            })
            .collect();
        let mean = sent.iter().sum::<i64>() as f64 / sent.len() as f64;
        assert!((mean - 4.0).abs() < 0.2, "{mean}");
        let exact = sent.iter().filter(|&&s| s == 4).count();
        assert!(exact < sent.len() / 2, "{exact} of {} exact", sent.len());
    }

    #[test]
    fn empty_window_gives_a_cover_report_with_the_same_shape() {
        let data = WindowData {
            last_container_action: Some(ContainerAction::Started),
            total_tasks: 7,
            slots_used: Some(0),
            ..WindowData::default()
        };
        let r = anonymize(&data, &identity(), window(), FULL);
        assert!(r.is_cover());
        assert_eq!(r.counts, WindowCounts::default());
        assert_eq!(r.status.state, NodeState::Up);
        assert_eq!(r.status.active, ActiveTasksBucket::Zero);
        assert_eq!(r.status.total, TotalTasksBucket::From1To10);
        validate_report(&r).expect("valid");
    }

    #[test]
    fn node_state_follows_the_container_then_the_log_activity() {
        let mut d = WindowData::default();
        assert_eq!(node_state(&d), NodeState::Unknown);
        d.active_in_window = true;
        assert_eq!(node_state(&d), NodeState::Up);
        for (action, state) in [
            (ContainerAction::Started, NodeState::Up),
            (ContainerAction::Restarted, NodeState::Up),
            (ContainerAction::Unpaused, NodeState::Up),
            (ContainerAction::Died, NodeState::Down),
            (ContainerAction::Oom, NodeState::Down),
            (ContainerAction::Stopped, NodeState::Down),
            (ContainerAction::Paused, NodeState::Down),
            (ContainerAction::Destroyed, NodeState::Down),
            (ContainerAction::Created, NodeState::Down),
        ] {
            d.last_container_action = Some(action);
            assert_eq!(node_state(&d), state, "{action:?}");
        }
    }

    #[test]
    fn a_down_node_has_no_active_slots_and_missing_figures_are_unknown() {
        let data = WindowData {
            last_container_action: Some(ContainerAction::Died),
            slots_used: Some(4),
            ..WindowData::default()
        };
        let r = anonymize(&data, &identity(), window(), FULL);
        assert_eq!(r.status.state, NodeState::Down);
        assert_eq!(r.status.active, ActiveTasksBucket::Zero);
        let data = WindowData {
            active_in_window: true,
            slots_used: None,
            ..WindowData::default()
        };
        let r = anonymize(&data, &identity(), window(), FULL);
        assert_eq!(r.status.active, ActiveTasksBucket::Unknown);
        assert_eq!(r.status.total, TotalTasksBucket::Zero);
    }

    #[test]
    fn nothing_but_hashes_and_labels_comes_from_local_strings() {
        let r = anonymize(&busy(), &identity(), window(), FULL);
        let text = String::from_utf8(r.to_canonical_bytes()).expect("utf8");
        for planted in [
            "550e8400",
            "alice",
            "example.com",
            "52908400098527886",
            "10.0.0.1",
            "refund",
            "842133917",
            "19373422",
        ] {
            assert!(!text.contains(planted), "{planted} leaked: {text}");
        }
    }
}
