//! The validator's must-reject table: for every rule, reports that break it, and the
//! exact reason they are blocked with.

use serde_json::{json, Value};
use truebit_protocol::privacy::{
    validate_report_bytes, Pattern, PrivacyViolation, MAX_REPORT_BYTES,
};
use truebit_protocol::report::{Continent, MAX_TASK_ITEMS};

use crate::support::*;

const HEX64: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// Things a node log can contain that must never leave the machine, with the pattern
/// each is reported as.
fn planted() -> Vec<(String, Pattern)> {
    use Pattern::*;
    vec![
        (
            "0x52908400098527886E0F7030069857D2E4169EE7".into(),
            WalletOrHash,
        ),
        (
            "@truebit/worker-runner-node-0x52908400098527886e0f7030069857d2e4169ee7".into(),
            WalletOrHash,
        ),
        (
            "0x88df016429689c079f3b2f6ad39fa052532c56795b733da78a91ebe6a713944b".into(),
            WalletOrHash,
        ),
        ("550e8400-e29b-41d4-a716-446655440000".into(), Uuid),
        ("alice@example.com".into(), Email),
        ("192.168.1.20".into(), Ipv4),
        ("tcp://10.0.0.7:4222".into(), Ipv4),
        ("2001:db8::8a2e:370:7334".into(), Ipv6),
        ("fe80::1".into(), Ipv6),
        (format!("rs_{HEX64}"), PrivateKey),
        (HEX64.to_uppercase(), PrivateKey),
        ("-----BEGIN EC PRIVATE KEY-----".into(), PrivateKey),
        (
            "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ".into(),
            PrivateKey,
        ),
        ("d41d8cd98f00b204e9800998ecf8427e0".into(), HexBlob),
        (
            "abandon ability able about above absent absorb abstract absurd abuse access accident"
                .into(),
            Mnemonic,
        ),
        ("2024-06-01T12:31:07Z".into(), Timestamp),
        ("2024-06-01T12:05:00.250Z".into(), Timestamp),
        ("1717243265".into(), Timestamp),
        ("1717243265123".into(), Timestamp),
        ("12:31:07".into(), Timestamp),
    ]
}

/// Every field of the report that holds a value, as (JSON pointer, reported path).
const FIELDS: &[(&str, &str)] = &[
    ("/v", "v"),
    ("/node", "node"),
    ("/key", "key"),
    ("/window", "window"),
    ("/level", "level"),
    ("/continent", "continent"),
    ("/status/state", "status.state"),
    ("/status/active", "status.active"),
    ("/status/total", "status.total"),
    ("/counts/received", "counts.received"),
    ("/counts/completed", "counts.completed"),
    ("/counts/failed", "counts.failed"),
    ("/tasks/0/chain", "tasks[0].chain"),
    ("/tasks/2/chain", "tasks[2].chain"),
    ("/tasks/0/outcome", "tasks[0].outcome"),
    ("/tasks/0/duration", "tasks[0].duration"),
    ("/tasks/0/gas", "tasks[0].gas"),
    ("/tasks/0/memory", "tasks[0].memory"),
    ("/tasks/0/cached", "tasks[0].cached"),
    ("/tasks/2/cached", "tasks[2].cached"),
    ("/invoices/1/op", "invoices[1].op"),
    ("/invoices/1/steps", "invoices[1].steps"),
];

fn full_value() -> Value {
    serde_json::to_value(full_report()).expect("to value")
}

fn with(pointer: &str, value: Value) -> Vec<u8> {
    let mut v = full_value();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} exists")) = value;
    serde_json::to_vec(&v).expect("serialize")
}

fn with_extra(object: &str, key: &str, value: Value) -> Vec<u8> {
    let mut v = full_value();
    v.pointer_mut(object)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{object} is an object"))
        .insert(key.to_owned(), value);
    serde_json::to_vec(&v).expect("serialize")
}

fn canonical() -> String {
    String::from_utf8(full_report().to_canonical_bytes()).expect("ascii")
}

fn edit(from: &str, to: &str) -> Vec<u8> {
    let text = canonical();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1).into_bytes()
}

fn rejected(bytes: &[u8]) -> PrivacyViolation {
    validate_report_bytes(bytes).expect_err("must be rejected")
}

fn pattern(path: &str, pattern: Pattern) -> PrivacyViolation {
    PrivacyViolation::Pattern {
        path: path.to_owned(),
        pattern,
    }
}

#[test]
fn planted_secrets_are_rejected_in_every_field() {
    let mut checked = 0;
    for (pointer, path) in FIELDS {
        for (value, expected) in planted() {
            let bytes = with(pointer, Value::String(value.clone()));
            assert_eq!(
                rejected(&bytes),
                pattern(path, expected),
                "{value} in {path}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, FIELDS.len() * planted().len());
}

#[test]
fn planted_secrets_are_rejected_in_unknown_fields_and_keys() {
    for (value, expected) in planted() {
        for object in ["", "/status", "/counts", "/tasks/1", "/invoices/0"] {
            let bytes = with_extra(object, "note", Value::String(value.clone()));
            let path = match object {
                "" => "<unknown key>".to_owned(),
                o => format!(
                    "{}.<unknown key>",
                    o.trim_start_matches('/')
                        .replace("/0", "[0]")
                        .replace("/1", "[1]")
                ),
            };
            assert_eq!(
                rejected(&bytes),
                pattern(&path, expected),
                "{value} under {object}"
            );
            // As a key, too.
            let bytes = with_extra(object, &value, json!(1));
            assert_eq!(
                rejected(&bytes),
                pattern(&path, expected),
                "key {value} under {object}"
            );
        }
    }
}

#[test]
fn planted_secrets_are_found_inside_wrong_shapes() {
    let ip = || json!("10.0.0.1");
    let cases = [
        (
            with("/continent", json!({"where": ip()})),
            "continent.<unknown key>",
        ),
        (with("/tasks", json!([ip()])), "tasks[0]"),
        (with("/status/state", json!([ip()])), "status.state[0]"),
        (
            with("/tasks/0/gas", json!({"a": {"b": [ip()]}})),
            "tasks[0].gas.<unknown key>.<unknown key>[0]",
        ),
    ];
    for (bytes, path) in cases {
        assert_eq!(rejected(&bytes), pattern(path, Pattern::Ipv4), "{path}");
    }
}

#[test]
fn numbers_that_look_like_times_are_rejected_outside_the_window_field() {
    use Pattern::Timestamp;
    for (pointer, path) in FIELDS {
        for n in [
            json!(1_717_243_265u64),
            json!(1_717_243_200_000u64),
            json!(1_717_243_265.5),
            json!(-1_717_243_265i64),
        ] {
            if *pointer == "/window" {
                continue;
            }
            assert_eq!(
                rejected(&with(pointer, n.clone())),
                pattern(path, Timestamp),
                "{n} in {path}"
            );
        }
    }
    // The window field itself: only window starts.
    for n in [
        json!(WINDOW + 1),
        json!(WINDOW + 60),
        json!(1_717_243_265_123u64),
        json!(1.5),
        json!(-300),
    ] {
        assert_eq!(
            rejected(&with("/window", n.clone())),
            pattern("window", Timestamp),
            "{n}"
        );
    }
    assert_eq!(
        rejected(&with("/window", json!("1717243200"))),
        PrivacyViolation::InvalidValue {
            path: "window".into(),
            expected: "a window start (a multiple of 300 s)",
        }
    );
}

#[test]
fn bare_hex_is_allowed_only_in_id_fields() {
    // Lowercase 64 hex is the form of a public key; anywhere else it is key material.
    for (pointer, path) in [
        ("/level", "level"),
        ("/status/total", "status.total"),
        ("/tasks/0/gas", "tasks[0].gas"),
    ] {
        assert_eq!(
            rejected(&with(pointer, json!(HEX64))),
            pattern(path, Pattern::PrivateKey)
        );
    }
    // A 32-hex value is a node id in `node` and a hex blob elsewhere.
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    assert_eq!(
        rejected(&with("/tasks/0/duration", json!(md5))),
        pattern("tasks[0].duration", Pattern::HexBlob)
    );
    assert_eq!(
        rejected(&with("/level", json!(md5))),
        pattern("level", Pattern::HexBlob)
    );
}

#[test]
fn escaped_and_duplicated_plants_are_seen() {
    // `\u0031` is "1": the escaped form is checked decoded.
    let bytes = edit(r#""level":"full""#, r#""level":"\u0031\u0030.0.0.1""#);
    assert_eq!(rejected(&bytes), pattern("level", Pattern::Ipv4));
    // A JSON parser keeps only the last duplicate; the walker sees both.
    let bytes = edit(
        r#""level":"full""#,
        r#""level":"alice@example.com","level":"full""#,
    );
    assert_eq!(rejected(&bytes), pattern("level", Pattern::Email));
    let bytes = edit(r#""level":"full""#, r#""level":"full","level":"full""#);
    assert_eq!(
        rejected(&bytes),
        PrivacyViolation::DuplicateField {
            path: "level".into()
        }
    );
}

#[test]
fn a_version_1_report_is_refused_as_such() {
    // Version 1: the same report with a hashed id per item.
    let mut v = full_value();
    v["v"] = json!(1);
    for item in v["tasks"].as_array_mut().expect("tasks") {
        item.as_object_mut()
            .expect("item")
            .insert("id".into(), json!(HEX64));
    }
    let bytes = serde_json::to_vec(&v).expect("json");
    assert_eq!(rejected(&bytes), PrivacyViolation::UnsupportedVersion);
    assert_eq!(rejected(&bytes).code(), "version");
    assert_eq!(
        rejected(&edit(r#"{"v":2,"#, r#"{"v":3,"#)),
        PrivacyViolation::UnsupportedVersion
    );
}

#[test]
fn fields_outside_the_allowlist_are_rejected() {
    let cases = [
        (with_extra("", "hostname", json!("runner")), "<unknown key>"),
        (with_extra("", "version", json!("1.4.2")), "<unknown key>"),
        (
            with_extra("/status", "slots", json!(4)),
            "status.<unknown key>",
        ),
        (
            with_extra("/tasks/0", "block", json!(19_000_000)),
            "tasks[0].<unknown key>",
        ),
        (
            with_extra("/invoices/0", "reward", json!("12")),
            "invoices[0].<unknown key>",
        ),
        (
            with_extra("/counts", "stderr", json!(null)),
            "counts.<unknown key>",
        ),
        // Version 1 carried a hashed id per item; version 2 carries none, and a
        // 64-hex-digit value there could as well be a raw identifier.
        (
            with_extra("/tasks/0", "id", json!("exec-1")),
            "tasks[0].<unknown key>",
        ),
        (
            with_extra("/invoices/0", "id", json!("exec-1")),
            "invoices[0].<unknown key>",
        ),
    ];
    // A version 1 item id (64 hex digits, a salted hash or a raw identifier of the
    // same shape) is refused too.
    assert_eq!(
        rejected(&with_extra("/tasks/0", "id", json!(HEX64))),
        pattern("tasks[0].<unknown key>", Pattern::PrivateKey)
    );
    for (bytes, path) in cases {
        assert_eq!(
            rejected(&bytes),
            PrivacyViolation::UnknownField { path: path.into() },
            "{path}"
        );
    }
}

#[test]
fn missing_fields_are_rejected() {
    for (object, key, path) in [
        ("", "continent", "continent"),
        ("", "counts", "counts"),
        ("", "invoices", "invoices"),
        ("/status", "total", "status.total"),
        ("/tasks/1", "cached", "tasks[1].cached"),
        ("/invoices/0", "steps", "invoices[0].steps"),
    ] {
        let mut v = full_value();
        v.pointer_mut(object)
            .and_then(Value::as_object_mut)
            .expect("object")
            .remove(key);
        let bytes = serde_json::to_vec(&v).expect("serialize");
        assert_eq!(
            rejected(&bytes),
            PrivacyViolation::MissingField { path: path.into() },
            "{path}"
        );
    }
}

#[test]
fn bucket_fields_hold_only_their_buckets() {
    for (pointer, path, value) in [
        ("/tasks/0/duration", "tasks[0].duration", "fast"),
        ("/tasks/0/duration", "tasks[0].duration", "<100K"),
        ("/tasks/0/duration", "tasks[0].duration", "1234"),
        ("/tasks/0/gas", "tasks[0].gas", "100k-1m"),
        ("/tasks/0/gas", "tasks[0].gas", ""),
        ("/tasks/0/memory", "tasks[0].memory", "64MB"),
        ("/tasks/0/memory", "tasks[0].memory", "<100ms"),
        ("/status/active", "status.active", "3"),
        ("/status/active", "status.active", "1-10"),
        ("/status/total", "status.total", "1K"),
        ("/status/total", "status.total", "Unknown"),
        ("/invoices/1/steps", "invoices[1].steps", "unknown "),
    ] {
        assert_eq!(
            rejected(&with(pointer, json!(value))),
            PrivacyViolation::BadBucket { path: path.into() },
            "{value} in {path}"
        );
    }
}

#[test]
fn other_values_must_have_their_exact_form() {
    let cases = [
        ("/v", json!("2"), "v"),
        ("/v", json!("1"), "v"),
        ("/level", json!("verbose"), "level"),
        ("/continent", json!("Europe"), "continent"),
        ("/continent", json!("eu"), "continent"),
        ("/status/state", json!("running"), "status.state"),
        ("/tasks/0/outcome", json!("ok"), "tasks[0].outcome"),
        ("/invoices/0/op", json!("refund"), "invoices[0].op"),
        ("/node", json!("node-1"), "node"),
        ("/node", json!("0011"), "node"),
        ("/key", json!(1), "key"),
        ("/tasks/0/chain", json!(-1), "tasks[0].chain"),
        ("/tasks/0/chain", json!("1"), "tasks[0].chain"),
        ("/tasks/0/chain", json!(1.5), "tasks[0].chain"),
        ("/tasks/0/cached", json!("yes"), "tasks[0].cached"),
        ("/tasks/0/cached", json!(1), "tasks[0].cached"),
        ("/counts/received", json!(100_001), "counts.received"),
        ("/counts/failed", json!(-1), "counts.failed"),
        ("/counts/failed", json!(null), "counts.failed"),
        ("/status", json!("up"), "status"),
        ("/tasks", json!({}), "tasks"),
        ("/window", json!(253_402_300_800u64), "window"),
    ];
    for (pointer, value, path) in cases {
        let err = rejected(&with(pointer, value.clone()));
        assert!(
            matches!(&err, PrivacyViolation::InvalidValue { path: p, .. } if p == path),
            "{value} in {path}: {err:?}"
        );
    }
}

#[test]
fn item_lists_have_a_cap() {
    let mut r = report_with_tasks(MAX_TASK_ITEMS as u64 + 1);
    r.counts.received = 0;
    assert_eq!(
        rejected(&r.to_canonical_bytes()),
        PrivacyViolation::TooManyItems {
            path: "tasks".into(),
            max: MAX_TASK_ITEMS
        }
    );
}

#[test]
fn oversized_reports_are_rejected_before_parsing() {
    let bytes = vec![b'x'; MAX_REPORT_BYTES + 1];
    assert_eq!(
        rejected(&bytes),
        PrivacyViolation::TooLarge {
            len: MAX_REPORT_BYTES + 1,
            max: MAX_REPORT_BYTES
        }
    );
}

#[test]
fn malformed_input_is_rejected() {
    let text = canonical();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        text.as_bytes()[..text.len() - 1].to_vec(),
        format!("{text}{text}").into_bytes(),
        format!("{text} x").into_bytes(),
        text.replacen("\"full\"", "\"fu\u{1}ll\"", 1).into_bytes(),
        text.replacen("\"full\"", r#""\x41""#, 1).into_bytes(),
        text.replacen("\"full\"", r#""\ud800""#, 1).into_bytes(),
        text.replacen("\"v\":2", "\"v\":02", 1).into_bytes(),
        text.replacen("true", "tru", 1).into_bytes(),
        {
            let mut b = text.clone().into_bytes();
            b[20] = 0xff;
            b
        },
        "[".repeat(100).into_bytes(),
    ];
    for bytes in cases {
        let err = rejected(&bytes);
        assert!(
            matches!(
                err,
                PrivacyViolation::Malformed { .. } | PrivacyViolation::InvalidValue { .. }
            ),
            "{}: {err:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(matches!(
        rejected(b"[]"),
        PrivacyViolation::InvalidValue { .. }
    ));
    assert!(matches!(
        rejected(b"{\"v\":2"),
        PrivacyViolation::Malformed { .. }
    ));
}

#[test]
fn strict_reports_carry_no_items_and_no_location() {
    let mut r = strict_report();
    r.tasks = full_report().tasks;
    assert_eq!(
        rejected(&r.to_canonical_bytes()),
        PrivacyViolation::StrictLevel { field: "tasks" }
    );
    let mut r = strict_report();
    r.invoices = full_report().invoices;
    assert_eq!(
        rejected(&r.to_canonical_bytes()),
        PrivacyViolation::StrictLevel { field: "invoices" }
    );
    let mut r = strict_report();
    r.continent = Some(Continent::Asia);
    assert_eq!(
        rejected(&r.to_canonical_bytes()),
        PrivacyViolation::StrictLevel { field: "continent" }
    );
}

#[test]
fn full_reports_counts_agree_with_their_items() {
    let mut r = full_report();
    r.counts.completed += 1;
    assert_eq!(
        rejected(&r.to_canonical_bytes()),
        PrivacyViolation::CountsMismatch
    );
    let mut r = full_report();
    r.counts.failed = 0;
    assert_eq!(
        rejected(&r.to_canonical_bytes()),
        PrivacyViolation::CountsMismatch
    );
}

#[test]
fn only_the_canonical_encoding_is_accepted() {
    let cases = [
        edit(r#""v":2,"#, r#""v":2, "#),
        edit(r#""level":"full""#, r#""level":"f\u0075ll""#),
        edit(r#""level":"full""#, r#""level":"full" "#),
        // Same fields, other order.
        serde_json::to_vec(&full_value()).expect("sorted keys"),
        format!("{}\n", canonical()).into_bytes(),
    ];
    for bytes in cases {
        assert_eq!(
            rejected(&bytes),
            PrivacyViolation::NonCanonical,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn violations_never_echo_the_offending_value() {
    for (value, _) in planted() {
        for (pointer, _) in FIELDS {
            let err = rejected(&with(pointer, Value::String(value.clone())));
            assert!(!err.to_string().contains(&value), "{err}");
        }
        let err = rejected(&with_extra("", &value, json!(1)));
        assert!(!err.to_string().contains(&value), "{err}");
    }
}

#[test]
fn every_violation_has_a_stable_code() {
    let samples = [
        rejected(&with("/level", json!("alice@example.com"))),
        rejected(&with_extra("", "x", json!(1))),
        rejected(b"{"),
    ];
    let codes: Vec<&str> = samples.iter().map(PrivacyViolation::code).collect();
    assert_eq!(codes, ["pattern.email", "unknown_field", "malformed"]);
}

#[test]
fn scanning_is_bounded_but_rejection_is_not() {
    // A planted value inside the first 4 KiB of a long string is named.
    let long = format!("{} 10.0.0.1 {}", "x ".repeat(1_000), "y ".repeat(5_000));
    assert_eq!(
        rejected(&with("/level", json!(long))),
        pattern("level", Pattern::Ipv4)
    );
    // Past 4 KiB it is not scanned, but the string is invalid in any field anyway.
    let long = format!("{}10.0.0.1", "x ".repeat(3_000));
    assert!(matches!(
        rejected(&with("/level", json!(long))),
        PrivacyViolation::InvalidValue { .. }
    ));
    // After a schema violation, at most 64 KiB more string bytes are pattern-checked:
    // the report is still rejected, with the schema violation as its reason.
    let junk: Vec<Value> = (0..20_000).map(|i| json!(format!("junk{i}"))).collect();
    let mut v = full_value();
    v.as_object_mut()
        .expect("object")
        .insert("aaa".into(), Value::Array(junk));
    v.as_object_mut()
        .expect("object")
        .insert("zzz".into(), json!("10.0.0.1"));
    let bytes = serde_json::to_vec(&v).expect("serialize");
    assert_eq!(
        rejected(&bytes),
        PrivacyViolation::UnknownField {
            path: "<unknown key>".into()
        }
    );
}
