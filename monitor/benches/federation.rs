//! Federation report building on the monitor: a closed window's data -> anonymized
//! report -> privacy validator on the exact bytes -> Ed25519 signature -> wire bytes.
//! Targets (issue 5): a 1,000-task report in under 5 ms; a quiet window under 2 KB.
//!
//! `cargo bench -p truebit-monitor --bench federation`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use truebit_monitor::federation::anonymizer::{
    anonymize, FinishedTask, InvoiceLine, Sharing, WindowData,
};
use truebit_monitor::federation::gate;
use truebit_monitor::federation::identity::Identity;
use truebit_monitor::model::ContainerAction;
use truebit_protocol::report::{Continent, Level};
use truebit_protocol::window::WindowStart;

fn window_data(tasks: u64, invoice_lines_per_task: u64) -> WindowData {
    let finished = (0..tasks)
        .map(|i| FinishedTask {
            failed: i % 10 == 0,
            chain_id: Some(["1", "137", "43113"][(i % 3) as usize].to_owned()),
            elapsed_ns: Some(i * 37_000_000),
            elapsed_ms: Some(i * 37),
            gas_used: Some(i * 100_003),
            memory_peak: Some(i % 2048),
            cached: Some(i % 3 == 0),
        })
        .collect::<Vec<_>>();
    let invoice_lines = finished
        .iter()
        .flat_map(|t| {
            (0..invoice_lines_per_task).map(move |k| InvoiceLine {
                operation: ["charge", "pay"][(k % 2) as usize].to_owned(),
                steps: t.gas_used.map(|g| g as i64),
            })
        })
        .collect();
    WindowData {
        last_container_action: Some(ContainerAction::Started),
        active_in_window: true,
        slots_used: Some(4),
        total_tasks: 12_345,
        received: tasks,
        finished,
        invoice_lines,
    }
}

const SHARING: Sharing = Sharing {
    level: Level::Full,
    continent: Some(Continent::Europe),
};

/// Everything the scheduler does after reading the store.
fn build(data: &WindowData, identity: &Identity, window: WindowStart) -> Vec<u8> {
    let bytes = anonymize(data, identity, window, SHARING).to_canonical_bytes();
    gate::check(bytes, identity)
        .expect("passes the gate")
        .wire()
        .to_vec()
}

fn bench(c: &mut Criterion) {
    let identity = Identity::from_bytes([7; 32], [9; 32]);
    let window = WindowStart::new(1_763_992_500).expect("aligned");
    let busy = window_data(1_000, 0);
    let billed = window_data(1_000, 2);
    let quiet = WindowData {
        last_container_action: Some(ContainerAction::Started),
        slots_used: Some(0),
        total_tasks: 12_345,
        ..WindowData::default()
    };
    for (name, data) in [
        ("1000 tasks", &busy),
        ("1000 tasks + 2000 invoice lines", &billed),
        ("quiet", &quiet),
    ] {
        println!(
            "wire size, {name}: {} bytes",
            build(data, &identity, window).len()
        );
    }
    assert!(build(&quiet, &identity, window).len() <= 2_048);
    c.bench_function("federation_build_validate_sign_1000_tasks", |b| {
        b.iter(|| black_box(build(black_box(&busy), &identity, window)))
    });
    c.bench_function(
        "federation_build_validate_sign_1000_tasks_2000_invoice_lines",
        |b| b.iter(|| black_box(build(black_box(&billed), &identity, window))),
    );
    c.bench_function("federation_build_validate_sign_quiet_window", |b| {
        b.iter(|| black_box(build(black_box(&quiet), &identity, window)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
