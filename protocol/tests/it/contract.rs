//! PRIVACY.md, line by line, for the parts the protocol owns. Lines proven elsewhere
//! name their tests here.
//!
//! | PRIVACY.md | proof |
//! |---|---|
//! | window: 5 min, wall-clock aligned, UTC | `window::tests::*` (unit), `windows_are_five_minutes_aligned_to_utc` |
//! | timestamps: only the window start | `must_reject::numbers_that_look_like_times_*`, `planted_secrets_*` (Timestamp rows), `the_only_time_on_the_wire_is_the_window_start` |
//! | send time: uniform 0–120 s after close | `window::tests::send_delay_*` (chi-square) |
//! | empty windows: cover report, same shape | `cover_and_busy_reports_differ_only_in_length_of_items` |
//! | identifiers: none unless a published figure needs one (none does) | `no_item_carries_an_identifier`, `must_reject::fields_outside_the_allowlist_*` |
//! | node identity: derived from the public key | `identity::tests::node_id_*`, `signing::a_node_id_not_derived_*` |
//! | signatures: unsigned, mis-signed, replayed, stale/future rejected | `signing::*`, `replays_share_a_message_id`, `window::tests::freshness_*` |
//! | metrics bucketed (table) | `bucket::tests::*` (every edge), `must_reject::bucket_fields_*` |
//! | chain data: chainId only | `only_chain_id_is_carried_about_the_chain`, `must_reject::fields_outside_the_allowlist_*` |
//! | location: continent code only, off by default | `location_is_off_by_default_and_a_continent_code_only` |
//! | validator: schema allowlist, patterns, buckets | `must_reject::*`, `must_accept::*` |
//! | aggregator: k-anonymous figures and cells | `stats::tests::*` (unit, incl. randomized) |
//! | aggregator: node ids never published | `statistics_cannot_carry_node_ids` |

use serde_json::Value;
use truebit_protocol::identity::PublicKey;
use truebit_protocol::privacy::validate_report;
use truebit_protocol::report::{Continent, Level, Report};
use truebit_protocol::sign::SignedStats;
use truebit_protocol::window::{window_of, WINDOW_SECS};

use crate::support::*;

fn wire(report: &Report) -> String {
    let wire = validate_report(report)
        .expect("valid")
        .sign(&node_key())
        .expect("signs")
        .to_wire();
    String::from_utf8(wire).expect("ascii")
}

/// Object keys at every level, with array items collapsed to one shape.
fn shape(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(format!("{prefix}.{k}"));
                shape(v, &format!("{prefix}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                shape(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn top_shape(report: &Report) -> Vec<String> {
    let v: Value = serde_json::from_str(&wire(report)).expect("json");
    let mut out = Vec::new();
    shape(&v, "", &mut out);
    out.retain(|p| !p.contains("[]"));
    out
}

#[test]
fn windows_are_five_minutes_aligned_to_utc() {
    assert_eq!(WINDOW_SECS, 300);
    // 2024-06-01T12:07:31Z is in the 12:05 window.
    assert_eq!(window_of(1_717_243_651).as_secs(), 1_717_243_500);
    assert_eq!(window_of(1_717_243_651).closes_at(), 1_717_243_800);
}

#[test]
fn cover_and_busy_reports_differ_only_in_length_of_items() {
    assert_eq!(top_shape(&cover_report()), top_shape(&full_report()));
    assert_eq!(top_shape(&cover_report()), top_shape(&strict_report()));
    // Same fields, same order: only the item arrays (and bucket labels) differ.
    let cover = wire(&cover_report());
    let busy = wire(&full_report());
    const TOP: [&str; 11] = [
        "v",
        "node",
        "key",
        "window",
        "level",
        "continent",
        "status",
        "counts",
        "tasks",
        "invoices",
        "sig",
    ];
    let keys = |s: &str| -> Vec<String> {
        s.split('"')
            .skip(1)
            .step_by(2)
            .filter(|t| TOP.contains(t))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(keys(&cover), TOP.map(String::from));
    assert_eq!(keys(&busy)[..8], keys(&cover)[..8]);
}

#[test]
fn the_only_time_on_the_wire_is_the_window_start() {
    let v: Value = serde_json::from_str(&wire(&full_report())).expect("json");
    let mut numbers = Vec::new();
    fn walk(v: &Value, key: &str, out: &mut Vec<(String, u64)>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| walk(v, k, out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, key, out)),
            Value::Number(n) => out.push((key.to_owned(), n.as_u64().expect("unsigned integer"))),
            _ => {}
        }
    }
    walk(&v, "", &mut numbers);
    for (key, n) in numbers {
        if key == "window" {
            assert_eq!(n % 300, 0);
        } else {
            assert!(n < 946_684_800, "{key} = {n} could be a time");
        }
    }
}

#[test]
fn no_item_carries_an_identifier() {
    let wire = wire(&full_report());
    let value: Value = serde_json::from_str(&wire).expect("json");
    for item in value["report"]["tasks"]
        .as_array()
        .into_iter()
        .chain(value["report"]["invoices"].as_array())
        .flatten()
    {
        assert!(item.get("id").is_none(), "an item id: {item}");
    }
    // The only hex strings are the node id, its public key and the signature.
    let hex_strings = wire
        .split('"')
        .filter(|s| s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .count();
    assert_eq!(hex_strings, 3, "{wire}");
    // The node's private key is not on the wire either (only the public key).
    assert!(!wire.contains(&hex::encode(node_key().to_bytes())));
    assert!(wire.contains(&PublicKey::from(&node_key().verifying_key()).to_string()));
}

#[test]
fn replays_share_a_message_id() {
    let a = full_report();
    let b = cover_report(); // same node, same window, other content
    assert_eq!(a.message_id(), b.message_id());
    let mut later = cover_report();
    later.window = window().next().expect("next");
    assert_ne!(a.message_id(), later.message_id());
    let other = Report::for_key(&other_key().verifying_key(), window(), Level::Full);
    assert_ne!(a.message_id(), other.message_id());
}

#[test]
fn only_chain_id_is_carried_about_the_chain() {
    let v: Value = serde_json::from_str(&wire(&full_report())).expect("json");
    let task = v["report"]["tasks"][0].as_object().expect("task");
    let keys: Vec<&str> = task.keys().map(String::as_str).collect();
    for forbidden in [
        "block",
        "blockNumber",
        "blockHash",
        "taskId",
        "requester",
        "worker",
        "address",
    ] {
        assert!(!keys.contains(&forbidden));
    }
    assert_eq!(task["chain"], 1);
}

#[test]
fn location_is_off_by_default_and_a_continent_code_only() {
    let r = Report::for_key(&node_key().verifying_key(), window(), Level::Full);
    assert_eq!(r.continent, None);
    assert!(wire(&r).contains(r#""continent":null"#));
    let mut r = full_report();
    r.continent = Some(Continent::Oceania);
    assert!(wire(&r).contains(r#""continent":"OC""#));
}

#[test]
fn statistics_cannot_carry_node_ids() {
    let node_id = PublicKey::from(&node_key().verifying_key())
        .node_id()
        .to_string();
    for field in ["chain", "continent", "activity", "duration"] {
        let mut stats = sample_stats();
        let d = &mut stats.distributions;
        let cells = match field {
            "chain" => &mut d.chain,
            "continent" => &mut d.continent,
            "activity" => &mut d.activity,
            _ => &mut d.duration,
        };
        cells.insert(node_id.clone(), 5);
        assert!(
            stats.sign(&aggregator_key()).is_err(),
            "node id accepted in {field}"
        );
    }
    let wire = sample_stats()
        .sign(&aggregator_key())
        .expect("signs")
        .to_wire();
    let parsed = SignedStats::from_wire(&wire).expect("parses");
    assert!(!String::from_utf8_lossy(parsed.stats_bytes()).contains(&node_id));
}
