//! Fixed keys, salt and sample messages (deterministic, so golden bytes are stable).

use std::path::PathBuf;

use truebit_protocol::bucket::{
    ActiveTasksBucket, ExecTimeBucket, GasBucket, MemoryBucket, TotalTasksBucket,
};
use truebit_protocol::report::{
    ChainId, Continent, InvoiceItem, Level, NodeState, NodeStatus, Operation, Outcome, Report,
    TaskItem, WindowCounts,
};
use truebit_protocol::sign::SigningKey;
use truebit_protocol::stats::{HourAvailability, NetworkStats, TaskTotals};
use truebit_protocol::window::WindowStart;

/// 2024-06-01T12:00:00Z.
pub const WINDOW: u64 = 1_717_243_200;

pub fn window() -> WindowStart {
    WindowStart::new(WINDOW).expect("aligned")
}

/// The node key of every fixture: seed 0x00, 0x01, ..., 0x1f.
pub fn node_key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|i| i as u8))
}

/// Another node's key.
pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[0x99; 32])
}

/// The aggregator key of every fixture.
pub fn aggregator_key() -> SigningKey {
    SigningKey::from_bytes(&[0xa5; 32])
}

/// A busy full-level report: three tasks, two invoice lines, a continent.
pub fn full_report() -> Report {
    let mut r = Report::for_key(&node_key().verifying_key(), window(), Level::Full);
    r.continent = Some(Continent::Europe);
    r.status = NodeStatus {
        state: NodeState::Up,
        active: ActiveTasksBucket::from_value(Some(2)),
        total: TotalTasksBucket::from_value(Some(42)),
    };
    r.counts = WindowCounts {
        received: 4,
        completed: 2,
        failed: 1,
    };
    r.tasks = vec![
        TaskItem {
            chain: ChainId::new(1),
            outcome: Outcome::Completed,
            duration: ExecTimeBucket::from_value(Some(1_234)),
            gas: GasBucket::from_value(Some(2_500_000)),
            memory: MemoryBucket::from_value(Some(128)),
            cached: Some(true),
        },
        TaskItem {
            chain: ChainId::new(137),
            outcome: Outcome::Completed,
            duration: ExecTimeBucket::from_value(Some(60_000)),
            gas: GasBucket::from_value(Some(100_000_000)),
            memory: MemoryBucket::from_value(Some(1_024)),
            cached: Some(false),
        },
        TaskItem {
            chain: None,
            outcome: Outcome::Failed,
            duration: ExecTimeBucket::from_value(None),
            gas: GasBucket::from_value(None),
            memory: MemoryBucket::from_value(None),
            cached: None,
        },
    ];
    r.invoices = vec![
        InvoiceItem {
            op: Operation::Charge,
            steps: GasBucket::from_value(Some(2_500_000)),
        },
        InvoiceItem {
            op: Operation::Pay,
            steps: GasBucket::from_value(None),
        },
    ];
    r
}

/// A strict-level report: status and counts only.
pub fn strict_report() -> Report {
    let mut r = Report::for_key(&node_key().verifying_key(), window(), Level::Strict);
    r.status = NodeStatus {
        state: NodeState::Up,
        active: ActiveTasksBucket::from_value(Some(1)),
        total: TotalTasksBucket::from_value(Some(1_000)),
    };
    r.counts = WindowCounts {
        received: 3,
        completed: 2,
        failed: 1,
    };
    r
}

/// An empty window: the cover report.
pub fn cover_report() -> Report {
    let mut r = Report::for_key(&node_key().verifying_key(), window(), Level::Full);
    r.status = NodeStatus {
        state: NodeState::Down,
        active: ActiveTasksBucket::Zero,
        total: TotalTasksBucket::Zero,
    };
    r
}

/// A report with `n` task items (and matching counts).
pub fn report_with_tasks(n: u64) -> Report {
    let mut r = full_report();
    r.invoices.clear();
    r.tasks = (0..n)
        .map(|i| TaskItem {
            chain: ChainId::new(1 + i % 3),
            outcome: if i % 10 == 0 {
                Outcome::Failed
            } else {
                Outcome::Completed
            },
            duration: ExecTimeBucket::from_value(Some(i * 37)),
            gas: GasBucket::from_value(Some(i * 100_003)),
            memory: MemoryBucket::from_value(Some(i % 2_048)),
            cached: Some(i % 3 == 0),
        })
        .collect();
    let failed = r
        .tasks
        .iter()
        .filter(|t| t.outcome == Outcome::Failed)
        .count() as u64;
    r.counts = WindowCounts {
        received: n,
        completed: n - failed,
        failed,
    };
    r
}

pub fn sample_stats() -> NetworkStats {
    let mut s = NetworkStats::empty(window(), 5);
    s.active_nodes = Some(12);
    s.nodes_24h = Some(15);
    s.nodes_30d = Some(40);
    s.tasks_24h = TaskTotals {
        received: Some(900),
        completed: Some(850),
        failed: Some(40),
    };
    s.success_rate_bp = Some(9_551);
    s.cache_hit_rate_bp = None;
    let d = &mut s.distributions;
    d.duration = [("1-5s", 600), ("<100ms", 200), ("other", 90)]
        .map(|(l, c)| (l.to_owned(), c))
        .into();
    d.gas = [("1M-10M", 700), ("other", 190)]
        .map(|(l, c)| (l.to_owned(), c))
        .into();
    d.chain = [("1", 700), ("137", 190)]
        .map(|(l, c)| (l.to_owned(), c))
        .into();
    d.continent = [("EU", 9), ("unknown", 6)]
        .map(|(l, c)| (l.to_owned(), c))
        .into();
    d.activity = [("10-50", 6), ("100-500", 5), ("other", 4)]
        .map(|(l, c)| (l.to_owned(), c))
        .into();
    s.availability = (0..3u64)
        .map(|h| HourAvailability {
            hour: WINDOW - 3 * 3_600 + h * 3_600,
            rate_bp: Some(9_000 + h as u32),
        })
        .chain([HourAvailability {
            hour: WINDOW,
            rate_bp: None,
        }])
        .collect();
    s
}

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Compares `bytes` with `tests/data/<name>` (ignoring one trailing newline in the
/// file). `UPDATE_GOLDEN=1 cargo test -p truebit-protocol` rewrites the files.
pub fn assert_golden(name: &str, bytes: &[u8]) {
    let path = data_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut content = bytes.to_vec();
        content.push(b'\n');
        std::fs::write(&path, content).expect("write golden file");
    }
    let golden = read_golden(name);
    assert!(
        golden == bytes,
        "{name} differs from the golden file.\n  golden: {}\n  actual: {}\n(run with UPDATE_GOLDEN=1 after an intended change)",
        String::from_utf8_lossy(&golden),
        String::from_utf8_lossy(bytes),
    );
}

pub fn read_golden(name: &str) -> Vec<u8> {
    let mut golden = std::fs::read(data_path(name))
        .unwrap_or_else(|e| panic!("read {name}: {e} (run with UPDATE_GOLDEN=1 to create it)"));
    if golden.last() == Some(&b'\n') {
        golden.pop();
    }
    golden
}
