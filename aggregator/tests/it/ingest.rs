//! Simulated monitors publish over a real nats-server (core subscription); the published
//! statistics are checked exactly, and every kind of bad report is rejected and counted.

use std::collections::BTreeMap;

use ed25519_dalek::Signer as _;
use futures_util::StreamExt as _;
use truebit_protocol::report::Continent;
use truebit_protocol::sign::open_stats;
use truebit_protocol::stats::{
    Distributions, HourAvailability, NetworkStats, TaskTotals, AVAILABILITY_HOURS,
};
use truebit_protocol::window::WindowStart;
use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

use crate::support::*;

fn cells(spec: &[(&str, u64)]) -> BTreeMap<String, u64> {
    spec.iter().map(|(l, c)| ((*l).to_owned(), *c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_statistics_are_exact_signed_and_k_anonymous() {
    let dir = tempdir();
    let nats = NatsServer::start(dir.path());
    let now = NOON + 3 * 300 + 60; // windows NOON, +300, +600 have closed
    let app = spawn_app(config(dir.path(), &nats.url()), fixed_clock(now)).await;
    let client = nats.client().await;
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

    // The second statistics message from now was computed after every report was stored
    // (the first may have been computed before).
    let mut stats_sub = client.subscribe(STATS_SUBJECT).await.expect("subscribe");
    let mut next = async || {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), stats_sub.next())
            .await
            .expect("statistics within 10 s")
            .expect("a message");
        open_stats(&msg.payload, &test_key().signing_key().verifying_key())
            .expect("signed by the aggregator key")
    };
    next().await;
    let published = next().await.into_stats();

    let window = WindowStart::new(NOON + 600).expect("aligned");
    let mut availability: Vec<HourAvailability> = (0..AVAILABILITY_HOURS as u64)
        .map(|i| HourAvailability {
            hour: NOON - (23 - i) * 3_600,
            rate_bp: None,
        })
        .collect();
    availability[23].rate_bp = Some(10_000);
    let expected = NetworkStats {
        active_nodes: Some(6),
        nodes_24h: Some(6),
        nodes_30d: Some(6),
        tasks_24h: TaskTotals {
            received: Some(45),
            completed: Some(30),
            // Only node 1 failed tasks: one contributor < k.
            failed: None,
        },
        // 30 / 33, and 3 cached of 33 with a known flag.
        success_rate_bp: Some(9_091),
        cache_hit_rate_bp: Some(909),
        distributions: Distributions {
            duration: cells(&[("1-5s", 33)]),
            gas: cells(&[("1M-10M", 33)]),
            memory: cells(&[("64-256", 33)]),
            steps: cells(&[("1M-10M", 33)]),
            // Chain 137 has one node: folded into "other", which then takes chain 1
            // with it (complementary suppression), so 137's count cannot be derived.
            chain: cells(&[("other", 33)]),
            continent: cells(&[("EU", 6)]),
            // Node 6 alone received nothing: "0" is folded the same way.
            activity: cells(&[("other", 6)]),
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
    let nats = NatsServer::start(dir.path());
    let now = NOON + 3 * 300 + 60;
    let app = spawn_app(config(dir.path(), &nats.url()), fixed_clock(now)).await;
    let client = nats.client().await;
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
