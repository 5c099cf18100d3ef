//! The ingest's CPU-bound step: parse + privacy re-check + signature check of a batch of
//! 1,024 cover reports, batch-verified (the aggregator's path) and one by one.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use truebit_aggregator::ingest::verify_batch;
use truebit_protocol::report::{Level, Report};
use truebit_protocol::sign::{open_report, SigningKey};
use truebit_protocol::window::WindowStart;

fn wires(n: u32) -> Vec<Vec<u8>> {
    let w = WindowStart::new(1_717_243_200).expect("aligned");
    (0..n)
        .map(|i| {
            let mut seed = [1u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let key = SigningKey::from_bytes(&seed);
            let r = Report::for_key(&key.verifying_key(), w, Level::Full);
            truebit_protocol::privacy::validate_report(&r)
                .expect("valid")
                .sign(&key)
                .expect("signs")
                .to_wire()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = wires(1_024);
    let mut g = c.benchmark_group("verify_1024_cover_reports");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.sample_size(20);
    g.bench_function("batch", |b| {
        b.iter(|| {
            let (ok, rejected) = verify_batch(&batch);
            assert_eq!((ok.len(), rejected.len()), (1_024, 0));
        })
    });
    g.bench_function("one_by_one", |b| {
        b.iter(|| {
            assert!(batch.iter().all(|w| open_report(w).is_ok()));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
