//! Simulated monitors publish over a real nats-server (core subscription); the published
//! statistics are checked exactly, and every kind of bad report is rejected and counted.

use std::collections::BTreeMap;

use ed25519_dalek::Signer as _;
use futures_util::StreamExt as _;
use truebit_aggregator::stats::{item_scale, node_scale, reporting_scale, task_scale};
use truebit_protocol::certificate::open_certified;
use truebit_protocol::report::Continent;
use truebit_protocol::stats::{
    basis_points, Distributions, HourAvailability, NetworkStats, TaskTotals,
};
use truebit_protocol::window::WindowStart;
use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

use crate::support::*;

fn cells(spec: &[(&str, u64)]) -> BTreeMap<String, u64> {
    // Published cells are never below zero: a cell's noise may take it to 0.
    spec.iter().map(|(l, c)| ((*l).to_owned(), *c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_statistics_are_released_noised_signed_and_k_anonymous() {
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    // The reports arrive while their hour is open (windows NOON, +300, +600 have
    // closed); the statistics are read at 00:16 the next day, when that day is released.
    let day = NOON - 12 * 3_600;
    let cfg = config(dir.path(), &nats.url());
    let clock = clock_at(NOON + 3 * 300 + 60);
    let app = spawn_app(cfg.clone(), clock.clone()).await;
    let noise = noise_of(&cfg);
    let client = client(&nats).await;
    wait_until(10, "core delivery", async || {
        app.state.metrics.snapshot().delivery == Some("core")
    })
    .await;

    // Six monitors, three windows each. Nodes 1-5 finish two tasks on chain 1 per window;
    // node 1 also fails one on chain 137 (cached). Node 6 is idle (cover reports).
    let nodes: Vec<SimNode> = (1..=6)
        .map(|i| {
            let mut n = SimNode::new(i);
            n.continent = Some(Continent::Europe);
            n
        })
        .collect();
    for window in [NOON, NOON + 300, NOON + 600] {
        for (i, node) in nodes.iter().enumerate() {
            let wire = match i {
                0 => {
                    let mut failed = Task::ok(137);
                    failed.ok = false;
                    failed.cached = Some(true);
                    node.wire(window, 3, &[Task::ok(1), Task::ok(1), failed])
                }
                5 => node.wire(window, 0, &[]),
                _ => node.wire(window, 3, &[Task::ok(1), Task::ok(1)]),
            };
            client
                .publish(REPORT_SUBJECT, wire.into())
                .await
                .expect("publish");
        }
    }
    client.flush().await.expect("flush");
    wait_until(10, "18 reports", async || {
        app.state.metrics.accepted() == 18
    })
    .await;
    clock.set_secs(day + 86_400 + 960);

    // The second statistics message from now was computed after every report was stored
    // (the first may have been computed before).
    let mut stats_sub = client.subscribe(STATS_SUBJECT).await.expect("subscribe");
    let mut next = async || {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), stats_sub.next())
            .await
            .expect("statistics within 10 s")
            .expect("a message");
        open_certified(&msg.payload, &single_key_set())
            .expect("certified by the aggregator key")
            .0
    };
    next().await;
    let published = next().await.into_stats();

    // What each figure is: its true value (clamped: no node exceeds the clamps here)
    // plus the noise the aggregator's secret gives that figure and period.
    let hours: Vec<u64> = (0..24).map(|i| day + i * 3_600).collect();
    let hourly = |name: &str, at_noon: i64| -> i64 {
        hours
            .iter()
            .map(|&h| i64::from(h == NOON) * at_noon + noise.draw(name, h, task_scale()))
            .sum()
    };
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let daily = |name: &str, value: i64, scale| n(value + noise.draw(name, day, scale));
    let (completed, failed) = (
        n(hourly("tasks.completed", 30)),
        n(hourly("tasks.failed", 3)),
    );
    let nodes = daily("nodes.day", 6, node_scale());
    let (hits, misses) = (
        daily("dist.cached.true", 3, item_scale()),
        daily("dist.cached.false", 30, item_scale()),
    );
    let window = WindowStart::new(day + 86_400 + 600).expect("aligned");
    let mut availability: Vec<HourAvailability> = hours
        .iter()
        .map(|&hour| HourAvailability {
            hour,
            rate_bp: None,
        })
        .collect();
    availability[12].rate_bp = basis_points(
        n(6 + noise.draw("nodes.reporting", NOON, reporting_scale())),
        nodes,
    );
    let items = |name: &str, value| daily(name, value, item_scale());
    let expected = NetworkStats {
        // Nobody reported in the latest released hour (23:00).
        active_nodes: None,
        nodes_24h: Some(nodes),
        nodes_30d: Some(daily("nodes.30d", 6, node_scale())),
        tasks_24h: TaskTotals {
            received: Some(n(hourly("tasks.received", 45))),
            completed: Some(completed),
            // Only node 1 failed tasks: one contributor < k.
            failed: None,
        },
        success_rate_bp: basis_points(completed, completed + failed),
        cache_hit_rate_bp: basis_points(hits, hits + misses),
        distributions: Distributions {
            duration: cells(&[("1-5s", items("dist.duration.1-5s", 33))]),
            gas: cells(&[("1M-10M", items("dist.gas.1M-10M", 33))]),
            memory: cells(&[("64-256", items("dist.memory.64-256", 33))]),
            steps: cells(&[("1M-10M", items("dist.steps.1M-10M", 33))]),
            // Chain 137 has one node: folded into "other", which then takes chain 1
            // with it (complementary suppression), so 137's count cannot be derived.
            chain: cells(&[("other", items("dist.chain.other", 33))]),
            continent: cells(&[("EU", daily("continent.EU", 6, node_scale()))]),
            // Node 6 alone received nothing: "0" is folded the same way.
            activity: cells(&[("other", daily("activity.other", 6, node_scale()))]),
        },
        availability,
        ..NetworkStats::empty(window, 5)
    };
    assert_eq!(published, expected);
    app.shutdown().await;
}

/// A report signed correctly by its node, with bytes the privacy rules refuse.
fn signed_bytes(node: &SimNode, report_bytes: &[u8]) -> Vec<u8> {
    let mut message = b"truebit.report.v1\n".to_vec();
    message.extend_from_slice(report_bytes);
    let sig = node.key.sign(&message);
    let mut wire = b"{\"report\":".to_vec();
    wire.extend_from_slice(report_bytes);
    wire.extend_from_slice(b",\"sig\":\"");
    wire.extend_from_slice(hex::encode(sig.to_bytes()).as_bytes());
    wire.extend_from_slice(b"\"}");
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_oversized_malformed_stale_future_and_private_reports_are_rejected_and_counted(
) {
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let now = NOON + 3 * 300 + 60;
    let app = spawn_app(config(dir.path(), &nats.url()), clock_at(now)).await;
    let client = client(&nats).await;
    wait_until(10, "core delivery", async || {
        app.state.metrics.snapshot().delivery == Some("core")
    })
    .await;

    let node = SimNode::new(1);
    let good = node.wire(NOON, 0, &[]);
    let mut forged = node.wire(NOON + 300, 0, &[]);
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'a' { b'b' } else { b'a' };
    let stale = node.wire(NOON - 8 * 86_400, 0, &[]);
    let future = node.wire(NOON + 900, 0, &[]); // still open at `now`
    let private = {
        let text = String::from_utf8(node.report(NOON + 600, 0, &[]).to_canonical_bytes())
            .expect("ascii")
            .replace("\"continent\":null", "\"continent\":\"10.1.2.3\"");
        signed_bytes(&node, text.as_bytes())
    };
    let messages: Vec<Vec<u8>> = vec![
        good.clone(),
        good.clone(), // replayed
        forged,
        vec![b'{'; 1_000_100], // oversized
        b"{\"report\":{\"v\":1},\"sig\":\"00\"}".to_vec(),
        b"\xff\xfe garbage".to_vec(),
        stale,
        future,
        private,
        SimNode::new(2).wire(NOON, 0, &[]), // still served afterwards
    ];
    for m in messages {
        client
            .publish(REPORT_SUBJECT, m.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    wait_until(10, "10 messages", async || {
        app.state.metrics.received() == 10
    })
    .await;

    let s = app.state.metrics.snapshot();
    assert!(s.nats_connected);
    assert_eq!(s.slow_consumer, 0);
    assert_eq!(s.accepted, 2);
    let expected: BTreeMap<&str, u64> = [
        ("bad_signature", 1),
        ("duplicate", 1),
        ("too_large", 1),
        ("envelope", 2),
        ("stale", 1),
        ("future", 1),
        ("pattern.ipv4", 1),
    ]
    .into();
    assert_eq!(s.rejected_by_reason, expected);
    let totals = app.state.store.totals().await.expect("totals");
    assert_eq!((totals.nodes, totals.reports), (2, 2));
    app.shutdown().await;
}
