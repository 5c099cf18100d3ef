//! Every message type: serialize -> exact golden bytes; parse golden -> equal value.

use truebit_protocol::privacy::validate_report_bytes;
use truebit_protocol::report::Report;
use truebit_protocol::sign::{open_report, open_stats, SignedStats};
use truebit_protocol::stats::NetworkStats;

use crate::support::*;

fn report_round_trip(name: &str, report: &Report) {
    let bytes = report.to_canonical_bytes();
    assert_golden(name, &bytes);
    let parsed = validate_report_bytes(&read_golden(name)).expect("golden report validates");
    assert_eq!(parsed.report(), report);
    assert_eq!(parsed.bytes(), &bytes[..]);
    // serde alone agrees too.
    assert_eq!(
        &serde_json::from_slice::<Report>(&bytes).expect("parses"),
        report
    );
}

#[test]
fn full_report_matches_its_golden_bytes() {
    report_round_trip("report_full.json", &full_report());
}

#[test]
fn strict_report_matches_its_golden_bytes() {
    report_round_trip("report_strict.json", &strict_report());
}

#[test]
fn cover_report_matches_its_golden_bytes() {
    report_round_trip("report_cover.json", &cover_report());
}

#[test]
fn golden_full_report_has_exactly_the_documented_shape() {
    let value: serde_json::Value =
        serde_json::from_slice(&read_golden("report_full.json")).expect("json");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&value),
        [
            "continent",
            "counts",
            "invoices",
            "key",
            "level",
            "node",
            "status",
            "tasks",
            "v",
            "window"
        ]
    );
    assert_eq!(keys(&value["status"]), ["active", "state", "total"]);
    assert_eq!(keys(&value["counts"]), ["completed", "failed", "received"]);
    assert_eq!(
        keys(&value["tasks"][0]),
        ["cached", "chain", "duration", "gas", "memory", "outcome"]
    );
    assert_eq!(keys(&value["invoices"][0]), ["op", "steps"]);
    assert_eq!(value["window"], WINDOW);
    assert_eq!(value["v"], 2);
    assert_eq!(value["tasks"][0]["duration"], "1-5s");
    assert_eq!(value["tasks"][1]["duration"], ">1m");
    assert_eq!(value["tasks"][1]["gas"], ">100M");
    assert_eq!(value["tasks"][1]["memory"], ">1024");
    assert_eq!(value["tasks"][2]["duration"], "unknown");
    assert_eq!(value["tasks"][2]["chain"], serde_json::Value::Null);
    assert_eq!(value["status"]["active"], "2-3");
    assert_eq!(value["status"]["total"], "10-50");
}

#[test]
fn signed_report_wire_matches_its_golden_bytes() {
    let wire = truebit_protocol::privacy::validate_report(&full_report())
        .expect("valid")
        .sign(&node_key())
        .expect("signs")
        .to_wire();
    assert_golden("signed_report_full.json", &wire);
    let opened = open_report(&read_golden("signed_report_full.json")).expect("golden opens");
    assert_eq!(opened.report(), &full_report());
    // The envelope is plain JSON too.
    let value: serde_json::Value = serde_json::from_slice(&wire).expect("json");
    assert_eq!(value.as_object().map(|o| o.len()), Some(2));
    assert_eq!(value["sig"].as_str().map(str::len), Some(128));
}

#[test]
fn stats_match_their_golden_bytes() {
    let stats = sample_stats();
    let bytes = stats.to_canonical_bytes();
    assert_golden("stats.json", &bytes);
    let parsed: NetworkStats = serde_json::from_slice(&read_golden("stats.json")).expect("parses");
    assert_eq!(parsed, stats);
    assert_eq!(parsed.check(), Ok(()));
}

#[test]
fn signed_stats_wire_matches_its_golden_bytes() {
    let wire = sample_stats()
        .sign(&aggregator_key())
        .expect("signs")
        .to_wire();
    assert_golden("signed_stats.json", &wire);
    let golden = read_golden("signed_stats.json");
    let opened = open_stats(&golden, &aggregator_key().verifying_key()).expect("golden opens");
    assert_eq!(opened.stats(), &sample_stats());
    assert_eq!(
        SignedStats::from_wire(&golden).expect("parses").stats(),
        &sample_stats()
    );
}
