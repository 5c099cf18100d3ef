//! JetStream: `--create-stream`, the durable pull consumer, and a restart in the middle
//! of the stream that loses nothing and counts nothing twice.

use async_nats::jetstream;
use truebit_protocol::REPORT_SUBJECT;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_loses_and_double_counts_nothing() {
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let windows = 20u64;
    let node_count = 150u32;
    let now = NOON + (windows + 1) * 300;
    let mut cfg = config(dir.path(), &nats.url());
    cfg.create_stream = true;

    // The first start creates the stream and the durable consumer.
    let first = spawn_app(cfg.clone(), clock_at(now)).await;
    wait_until(10, "jetstream delivery", async || {
        first.state.metrics.snapshot().delivery == Some("jetstream")
    })
    .await;
    first.shutdown().await;

    // 3,000 reports wait in the stream (acknowledged by it, de-duplicated by id).
    let js = jetstream::new(client(&nats).await);
    let mut acks = Vec::new();
    let mut expected_received = 0;
    for w in 0..windows {
        for n in 1..=node_count {
            let node = SimNode::new(n);
            let received = u64::from(n % 4);
            expected_received += received;
            let report = node.report(NOON + w * 300, received, &[]);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", report.message_id().as_str());
            let ack = js
                .publish_with_headers(REPORT_SUBJECT, headers, node.sign(&report).into())
                .await
                .expect("publish");
            acks.push(ack);
            if acks.len() >= 1_000 {
                // The client bounds acknowledgements in flight: collect them as we go.
                for ack in acks.drain(..) {
                    ack.await.expect("stored by the stream");
                }
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored by the stream");
    }
    let total = u64::from(node_count) * windows;

    // Stop the second start as soon as it has stored something.
    let second = spawn_app(cfg.clone(), clock_at(now)).await;
    wait_until(20, "some reports", async || {
        second.state.metrics.accepted() > 0
    })
    .await;
    second.shutdown().await;
    let second_accepted = second_accepted(&dir).await;
    assert!(
        second_accepted < total,
        "the restart must happen mid-stream (stored {second_accepted} of {total})"
    );

    let third = spawn_app(cfg, clock_at(now)).await;
    wait_until(60, "every report stored", async || {
        third.state.store.totals().await.expect("totals").reports == total
    })
    .await;
    // Let redeliveries of anything unacknowledged arrive (ack wait: 1 s).
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let totals = third.state.store.totals().await.expect("totals");
    assert_eq!(totals.reports, total);
    assert_eq!(totals.nodes, u64::from(node_count));
    assert_eq!(
        third.state.store.count_sums().await.expect("sums"),
        (expected_received, 0, 0)
    );
    let s = third.state.metrics.snapshot();
    // Whatever the third start saw again was stored already: dropped as a duplicate.
    assert!(
        s.rejected_by_reason.keys().all(|r| *r == "duplicate"),
        "{:?}",
        s.rejected_by_reason
    );
    assert_eq!(s.accepted + second_accepted, total);
    third.shutdown().await;
}

/// Reports in the database after the second start (it is stopped: read the file).
async fn second_accepted(dir: &tempfile::TempDir) -> u64 {
    let store = truebit_aggregator::store::Store::open(
        &dir.path().join("agg/aggregator.db"),
        truebit_aggregator::gate::Limits::default(),
    )
    .expect("open");
    store.totals().await.expect("totals").reports
}

#[tokio::test]
async fn a_stream_the_server_has_no_room_for_is_a_clear_error() {
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let cfg = config(dir.path(), &nats.url());
    let metrics = std::sync::Arc::new(truebit_aggregator::metrics::Metrics::default());
    let client = truebit_aggregator::nats::Nats::connect(&cfg.nats, metrics)
        .await
        .expect("connect");
    // 1 TiB: more than this machine's JetStream storage can reserve.
    let err = client
        .create_stream(1 << 40, 1)
        .await
        .expect_err("no room for 1 TiB")
        .to_string();
    assert!(err.contains("no room for 1048576 MiB"), "{err}");
    assert!(err.contains("STREAM_MAX_MIB"), "{err}");
    // A size it can hold works, and again (it exists).
    client.create_stream(64 << 20, 1).await.expect("64 MiB");
    client
        .create_stream(64 << 20, 1)
        .await
        .expect("already there");
}
