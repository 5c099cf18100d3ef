//! Building, validating and signing a 1,000-item report (target: under 5 ms), and the
//! aggregator's side of it (`open_report`), and what a hostile 1 MB report costs the
//! validator (bounded: well under a few ms).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use truebit_protocol::bucket::{ExecTimeBucket, GasBucket, MemoryBucket};
use truebit_protocol::privacy::{validate_report, validate_report_bytes};
use truebit_protocol::report::{ChainId, Level, Outcome, Report, TaskItem};
use truebit_protocol::sign::{open_report, SignedReport, SigningKey};
use truebit_protocol::window::window_of;

fn build(key: &SigningKey, n: u64) -> Report {
    let mut r = Report::for_key(&key.verifying_key(), window_of(1_717_243_321), Level::Full);
    for i in 0..n {
        let outcome = if i % 10 == 0 {
            Outcome::Failed
        } else {
            Outcome::Completed
        };
        r.tasks.push(TaskItem {
            chain: ChainId::new(1 + i % 3),
            outcome,
            duration: ExecTimeBucket::from_value(Some(i * 37)),
            gas: GasBucket::from_value(Some(i * 100_003)),
            memory: MemoryBucket::from_value(Some(i % 2048)),
            cached: Some(i % 3 == 0),
        });
    }
    r.counts.received = n;
    r.counts.failed = n.div_ceil(10);
    r.counts.completed = n - r.counts.failed;
    r
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    c.bench_function("build_validate_sign_1000_tasks", |b| {
        b.iter(|| {
            let r = build(&key, 1_000);
            let wire = validate_report(&r)
                .expect("valid")
                .sign(&key)
                .expect("signs")
                .to_wire();
            black_box(wire)
        })
    });
    let wire = validate_report(&build(&key, 1_000))
        .expect("valid")
        .sign(&key)
        .expect("signs")
        .to_wire();
    c.bench_function("open_report_1000_tasks", |b| {
        b.iter(|| black_box(open_report(black_box(&wire)).expect("opens")))
    });
    let cover = validate_report(&build(&key, 0))
        .expect("valid")
        .sign(&key)
        .expect("signs")
        .to_wire();
    c.bench_function("open_report_cover", |b| {
        b.iter(|| black_box(open_report(black_box(&cover)).expect("opens")))
    });
    let cover_bytes = build(&key, 0).to_canonical_bytes();
    c.bench_function("validate_cover", |b| {
        b.iter(|| black_box(validate_report_bytes(black_box(&cover_bytes)).expect("valid")))
    });
    let signed = SignedReport::from_wire(&cover).expect("parses");
    c.bench_function("verify_signature_cover", |b| {
        b.iter(|| signed.verify().expect("verifies"))
    });
}

/// Reports that break the schema early and then carry ~1 MB of strings or numbers.
fn hostile(c: &mut Criterion) {
    let mut many = String::from(r#"{"v":1,"junk":["#);
    while many.len() < 990_000 {
        many.push_str(r#""a1:b","#);
    }
    many.push_str(r#""x"]}"#);
    let mut long = String::from(r#"{"v":1,"junk":""#);
    while long.len() < 990_000 {
        long.push_str("ab1:2-3 x.y ");
    }
    long.push_str(r#""}"#);
    let mut nums = String::from(r#"{"v":1,"junk":["#);
    while nums.len() < 990_000 {
        nums.push_str("12345,");
    }
    nums.push_str("1]}");
    for (name, s) in [
        ("hostile_many_strings", many),
        ("hostile_long_string", long),
        ("hostile_numbers", nums),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| black_box(validate_report_bytes(black_box(s.as_bytes())).is_err()))
        });
    }
}

criterion_group!(benches, bench, hostile);
criterion_main!(benches);
