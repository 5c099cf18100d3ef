//! Wire sizes: a quiet window costs under 2 KB; a busy one stays compact.

use truebit_protocol::privacy::validate_report;
use truebit_protocol::report::{Continent, Report};
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

#[test]
fn a_cover_report_is_under_2_kb_on_the_wire() {
    let mut with_location = cover_report();
    with_location.continent = Some(Continent::NorthAmerica);
    for r in [cover_report(), with_location, strict_report()] {
        let len = wire_len(&r);
        assert!(len < 2_048, "cover report is {len} bytes");
    }
    // Pin the exact figure so a schema change that grows it is noticed.
    assert_eq!(wire_len(&cover_report()), 447);
}

#[test]
fn a_1000_task_report_is_compact() {
    let len = wire_len(&report_with_tasks(1_000));
    let per_item = (len - wire_len(&report_with_tasks(0))) / 1_000;
    assert!(
        (120..=180).contains(&per_item),
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
