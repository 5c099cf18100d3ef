//! Parser throughput over a realistic runner-node log (see `demo::LogGenerator`).
//!
//! `cargo bench -p truebit-monitor --bench parser`; the target is >= 400 MB/s on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use truebit_monitor::demo::LogGenerator;
use truebit_monitor::model::{Entry, LineMeta, Pos};
use truebit_monitor::parser::{Parser, ParserConfig};

/// Lines in the benchmark log (about 40 MB).
const LINES: usize = 150_000;

fn docker_log() -> Vec<u8> {
    let mut log = Vec::new();
    let mut g = LogGenerator::new(42, 1_763_992_534);
    g.write_docker_log(&mut log, LINES).expect("write to Vec");
    log
}

/// Feeds every line like a file source does, draining the output in batches.
fn parse(log: &[u8]) -> usize {
    let mut parser = Parser::new(ParserConfig::default());
    let mut out: Vec<Entry> = Vec::with_capacity(1024);
    let mut entries = 0;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', log) {
        let meta = LineMeta {
            received_ns: None,
            pos: Pos::new(0, nl as i64 + 1),
        };
        parser.push_line(&log[start..nl], meta, &mut out);
        start = nl + 1;
        if out.len() >= 512 {
            entries += out.len();
            out.clear();
        }
    }
    parser.flush(&mut out);
    entries + out.len()
}

fn bench_parser(c: &mut Criterion) {
    let log = docker_log();
    let mut group = c.benchmark_group("parser");
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.sample_size(20);
    group.bench_function("docker_log", |b| b.iter(|| parse(black_box(&log))));

    // The same log as the Docker API source sees it: no timestamp prefix, no colours.
    let mut plain = Vec::new();
    let mut g = LogGenerator::new(42, 1_763_992_534).with_colour(false);
    for _ in 0..LINES {
        plain.extend_from_slice(g.next_line().text.as_bytes());
        plain.push(b'\n');
    }
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("plain_log", |b| b.iter(|| parse(black_box(&plain))));
    group.finish();
}

criterion_group!(benches, bench_parser);
criterion_main!(benches);
