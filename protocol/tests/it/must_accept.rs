//! What the validator must let through: every valid value of every field.

use rand::{Rng, SeedableRng};
use truebit_protocol::bucket::{
    ActiveTasksBucket, ExecTimeBucket, GasBucket, MemoryBucket, TotalTasksBucket,
};
use truebit_protocol::privacy::{validate_report, validate_report_bytes};
use truebit_protocol::report::{
    ChainId, Continent, InvoiceItem, Level, NodeState, NodeStatus, Operation, Outcome, Report,
    TaskItem, WindowCounts, MAX_CHAIN_ID, MAX_TASK_ITEMS, MAX_WINDOW_COUNT,
};
use truebit_protocol::sign::open_report;
use truebit_protocol::window::{window_of, WindowStart};

use crate::support::*;

fn accepted(report: &Report) {
    let v = validate_report(report).unwrap_or_else(|e| panic!("rejected: {e}\n{report:?}"));
    assert_eq!(v.report(), report);
    assert_eq!(v.bytes(), &report.to_canonical_bytes()[..]);
}

#[test]
fn the_fixture_reports_are_accepted() {
    accepted(&full_report());
    accepted(&strict_report());
    accepted(&cover_report());
    accepted(&Report::for_key(
        &node_key().verifying_key(),
        window(),
        Level::Strict,
    ));
}

#[test]
fn every_bucket_label_is_accepted_in_its_field() {
    let mut r = full_report();
    let n = ExecTimeBucket::ALL.len();
    r.tasks = (0..n)
        .map(|i| TaskItem {
            chain: ChainId::new(i as u64),
            outcome: Outcome::Completed,
            duration: ExecTimeBucket::ALL[i],
            gas: GasBucket::ALL[i % GasBucket::ALL.len()],
            memory: MemoryBucket::ALL[i % MemoryBucket::ALL.len()],
            cached: [Some(true), Some(false), None][i % 3],
        })
        .collect();
    r.invoices = (0..n)
        .map(|i| InvoiceItem {
            op: Operation::ALL[i % Operation::ALL.len()],
            steps: GasBucket::ALL[i % GasBucket::ALL.len()],
        })
        .collect();
    r.counts = WindowCounts {
        received: 0,
        completed: n as u64,
        failed: 0,
    };
    accepted(&r);
    for (i, &active) in ActiveTasksBucket::ALL.iter().enumerate() {
        for &state in NodeState::ALL {
            r.status = NodeStatus {
                state,
                active,
                total: TotalTasksBucket::ALL[i],
            };
            accepted(&r);
        }
    }
    for &total in TotalTasksBucket::ALL {
        r.status.total = total;
        accepted(&r);
    }
    for &continent in Continent::ALL {
        r.continent = Some(continent);
        accepted(&r);
    }
}

#[test]
fn limits_are_inclusive() {
    let mut r = report_with_tasks(MAX_TASK_ITEMS as u64);
    r.tasks[0].chain = ChainId::new(MAX_CHAIN_ID);
    r.counts.received = MAX_WINDOW_COUNT;
    accepted(&r);
    let mut r = strict_report();
    r.counts = WindowCounts {
        received: MAX_WINDOW_COUNT,
        completed: MAX_WINDOW_COUNT,
        failed: 0,
    };
    accepted(&r);
}

#[test]
fn any_window_start_is_accepted_by_the_validator() {
    // Freshness is the aggregator's call (WindowStart::check_freshness), not a privacy rule.
    for w in [0, 300, WINDOW, WindowStart::MAX.as_secs()] {
        let mut r = cover_report();
        r.window = WindowStart::new(w).expect("aligned");
        accepted(&r);
    }
}

#[test]
fn randomly_built_reports_are_always_accepted_and_round_trip() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let key = node_key();
    for _ in 0..300 {
        let level = if rng.gen_bool(0.2) {
            Level::Strict
        } else {
            Level::Full
        };
        let mut r = Report::for_key(
            &key.verifying_key(),
            window_of(rng.gen_range(0..4_102_444_800)),
            level,
        );
        r.status = NodeStatus {
            state: NodeState::ALL[rng.gen_range(0..NodeState::ALL.len())],
            active: ActiveTasksBucket::from_value(rng.gen_bool(0.9).then(|| rng.gen_range(0..10))),
            total: TotalTasksBucket::from_value(rng.gen_bool(0.9).then(|| rng.gen_range(0..5_000))),
        };
        let maybe = |rng: &mut rand::rngs::StdRng, max: u64| {
            rng.gen_bool(0.8).then(|| rng.gen_range(0..max))
        };
        if level == Level::Full {
            r.continent = rng
                .gen_bool(0.5)
                .then(|| Continent::ALL[rng.gen_range(0..7)]);
            for _ in 0..rng.gen_range(0..20) {
                r.tasks.push(TaskItem {
                    chain: maybe(&mut rng, MAX_CHAIN_ID + 1).and_then(ChainId::new),
                    outcome: if rng.gen_bool(0.9) {
                        Outcome::Completed
                    } else {
                        Outcome::Failed
                    },
                    duration: ExecTimeBucket::from_value(maybe(&mut rng, 200_000)),
                    gas: GasBucket::from_value(maybe(&mut rng, 1 << 40)),
                    memory: MemoryBucket::from_value(maybe(&mut rng, 4_096)),
                    cached: rng.gen_bool(0.8).then(|| rng.gen()),
                });
            }
            for _ in 0..rng.gen_range(0..5) {
                r.invoices.push(InvoiceItem {
                    op: Operation::ALL[rng.gen_range(0..4)],
                    steps: GasBucket::from_value(maybe(&mut rng, 1 << 40)),
                });
            }
        }
        let failed = r
            .tasks
            .iter()
            .filter(|t| t.outcome == Outcome::Failed)
            .count() as u64;
        r.counts = if level == Level::Full {
            WindowCounts {
                received: rng.gen_range(0..50),
                completed: r.tasks.len() as u64 - failed,
                failed,
            }
        } else {
            WindowCounts {
                received: rng.gen_range(0..50),
                completed: rng.gen_range(0..50),
                failed: rng.gen_range(0..50),
            }
        };
        accepted(&r);
        let wire = validate_report(&r)
            .expect("valid")
            .sign(&key)
            .expect("signs")
            .to_wire();
        assert_eq!(open_report(&wire).expect("opens").report(), &r);
        assert!(validate_report_bytes(&r.to_canonical_bytes()).is_ok());
    }
}
