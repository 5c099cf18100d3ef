//! Wire sizes: a quiet window costs under 2 KB; a busy one stays compact.

use truebit_protocol::bucket::{ActiveTasksBucket, TotalTasksBucket};
use truebit_protocol::privacy::validate_report;
use truebit_protocol::report::{Continent, Level, NodeState, NodeStatus, Report, WindowCounts};
use truebit_protocol::sign::MAX_REPORT_WIRE_BYTES;

use crate::support::*;

fn wire_len(report: &Report) -> usize {
    validate_report(report)
        .expect("valid")
        .sign(&node_key())
        .expect("signs")
        .to_wire()
        .len()
}

/// The smallest and largest quiet-window report on the wire: no task or invoice
/// items, zero counts, any status, continent and level; at `strict` the counts are
/// noised and shifted (`noise::strict_count`: about 20 each, below 100 but with
/// negligible odds), so any counts from 0 to 99.
pub fn quiet_report_sizes() -> (usize, usize) {
    let mut sizes = Vec::new();
    for level in Level::ALL {
        for state in NodeState::ALL {
            for active in ActiveTasksBucket::ALL {
                for total in TotalTasksBucket::ALL {
                    let continents: Vec<Option<Continent>> = match level {
                        Level::Full => std::iter::once(None)
                            .chain(Continent::ALL.iter().copied().map(Some))
                            .collect(),
                        Level::Strict => vec![None],
                    };
                    let counts: &[u64] = match level {
                        Level::Full => &[0],
                        Level::Strict => &[0, 99],
                    };
                    for continent in continents {
                        for &n in counts {
                            let mut r = cover_report();
                            r.level = *level;
                            r.continent = continent;
                            r.status = NodeStatus {
                                state: *state,
                                active: *active,
                                total: *total,
                            };
                            r.counts = WindowCounts {
                                received: n,
                                completed: n,
                                failed: n,
                            };
                            sizes.push(wire_len(&r));
                        }
                    }
                }
            }
        }
    }
    let min = sizes.iter().copied().min().expect("sizes");
    let max = sizes.iter().copied().max().expect("sizes");
    (min, max)
}

fn doc(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_quiet_report_is_as_large_as_the_documents_say() {
    let (min, max) = quiet_report_sizes();
    assert!(max < 2_048, "a quiet report of {max} bytes");
    let sentence = format!("A quiet window's report is {min}–{max} bytes on the wire");
    for name in ["FEDERATION.md", "PERFORMANCE.md"] {
        let text = doc(name).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains(&sentence), "docs/{name} must say: {sentence}");
    }
    // And a 1,000-task report, in whole KB.
    let kb = (wire_len(&report_with_tasks(1_000)) + 500) / 1_000;
    let text = doc("FEDERATION.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains(&format!("a 1,000-task one about {kb} KB")),
        "docs/FEDERATION.md must say: a 1,000-task one about {kb} KB"
    );
}

#[test]
fn a_1000_task_report_is_compact() {
    let len = wire_len(&report_with_tasks(1_000));
    let per_item = (len - wire_len(&report_with_tasks(0))) / 1_000;
    assert!(
        (80..=140).contains(&per_item),
        "{per_item} bytes per task item"
    );
    assert!(len < 200_000, "{len} bytes");
}

#[test]
fn the_largest_allowed_report_fits_the_wire_limit() {
    let len = wire_len(&report_with_tasks(
        truebit_protocol::report::MAX_TASK_ITEMS as u64,
    ));
    assert!(len <= MAX_REPORT_WIRE_BYTES, "{len}");
}

/// A proof of `days` days, every window up, signed by 2 of 3 keys: its compact size.
fn proof_len(days: u64) -> usize {
    use truebit_protocol::certificate::KeySet;
    use truebit_protocol::identity::PublicKey;
    use truebit_protocol::proof::{ReplicaProof, UptimeProof, UptimeStatement, DAY};
    use truebit_protocol::sign::SigningKey;
    let key = |i: u8| SigningKey::from_bytes(&[60 + i; 32]);
    let hub = KeySet::new(
        (1..=3)
            .map(|i| PublicKey::from(&key(i).verifying_key()))
            .collect(),
        2,
    )
    .expect("2 of 3");
    let from = 1_717_200_000;
    let node = PublicKey::from(&key(9).verifying_key()).node_id();
    let windows = (0..days * 288).map(|i| (from + i * 300, true));
    let statement = UptimeStatement::new_from_windows(node, from, from + days * DAY, windows, &hub)
        .expect("statement");
    let sigs = (1..=2)
        .map(|i| {
            ReplicaProof::sign("r", &statement, &key(i))
                .expect("signs")
                .sig
        })
        .collect();
    UptimeProof::assemble(&statement.to_canonical_bytes(), sigs, &hub)
        .expect("2 of 3")
        .to_json()
        .len()
}

#[test]
fn an_uptime_proof_is_as_large_as_the_documents_say() {
    let kb = |len: usize| format!("{:.1}", len as f64 / 1_000.0);
    let sentence = format!(
        "An uptime proof signed by 2 replicas is about {} KB for one day and {} KB for 30 days",
        kb(proof_len(1)),
        kb(proof_len(30))
    );
    let text = doc("PERFORMANCE.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains(&sentence),
        "docs/PERFORMANCE.md must say: {sentence}"
    );
}
