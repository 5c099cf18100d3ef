//! The report feed on every kind of server: without JetStream, with JetStream but no
//! stream, with a stream, and on a server where something swallows the JetStream API
//! (a client subscribed to `>`): reports are received in each, the log names the mode,
//! and `/health` is `degraded` while no feed is being read.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use truebit_protocol::REPORT_SUBJECT;

use crate::support::*;

/// `/health` of a running aggregator, over real HTTP.
async fn health(addr: std::net::SocketAddr) -> serde_json::Value {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("response");
    let body = text.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).expect("json")
}

/// Publishes two reports of closed windows and waits until both are stored.
async fn two_reports_are_stored(nats: &NatsServer, app: &truebit_aggregator::app::Running) {
    let client = client(nats).await;
    for (seed, window) in [(1, NOON), (2, NOON + 300)] {
        let wire = SimNode::new(seed).wire(window, 1, &[Task::ok(1)]);
        client
            .publish(REPORT_SUBJECT, wire.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    wait_until(10, "two reports stored", async || {
        app.state.metrics.accepted() == 2
    })
    .await;
    assert_eq!(app.state.store.totals().await.expect("totals").reports, 2);
}

/// Starts the aggregator on `nats`, checks that it reads reports by a core
/// subscription and that two published reports are stored.
async fn core_feed_stores_reports(
    dir: &Path,
    nats: &NatsServer,
) -> truebit_aggregator::app::Running {
    let app = spawn_app(config(dir, &nats.url()), clock_at(NOON + 900)).await;
    wait_until(10, "the core feed", async || {
        app.state.metrics.snapshot().consuming
    })
    .await;
    assert_eq!(app.state.metrics.snapshot().delivery, Some("core"));
    two_reports_are_stored(nats, &app).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_jetstream_is_read_by_a_core_subscription() {
    let dir = tempdir();
    let nats = NatsServer::start(dir.path(), &[]);
    let app = core_feed_stores_reports(dir.path(), &nats).await;
    let h = health(app.addr).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["feed"], "core", "{h}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_swallows_the_jetstream_api_is_read_by_a_core_subscription() {
    let dir = tempdir();
    let nats = NatsServer::start(dir.path(), &[]);
    // Someone reads everything: the stream lookup is delivered to it and never answered.
    let spy = client(&nats).await;
    let mut everything = spy.subscribe(">").await.expect("subscribe >");
    spy.flush().await.expect("flush");
    let app = spawn_app(config(dir.path(), &nats.url()), clock_at(NOON + 900)).await;
    // While the lookup waits for an answer, the feed is not read: degraded.
    wait_until(5, "connected", async || {
        app.state.metrics.snapshot().nats_connected
    })
    .await;
    let h = health(app.addr).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["feed"], "none", "{h}");
    let lookup = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = everything.next().await {
            if m.subject.starts_with("$JS.API.") {
                return m.subject.to_string();
            }
        }
        String::new()
    })
    .await
    .expect("the spy sees the stream lookup");
    assert_eq!(lookup, "$JS.API.STREAM.NAMES");
    wait_until(15, "the core feed after the lookup timed out", async || {
        app.state.metrics.snapshot().consuming
    })
    .await;
    assert_eq!(app.state.metrics.snapshot().delivery, Some("core"));
    two_reports_are_stored(&nats, &app).await;
    assert_eq!(health(app.addr).await["status"], "ok");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_without_a_stream_is_core_and_with_one_is_jetstream() {
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let app = core_feed_stores_reports(dir.path(), &nats).await;
    app.shutdown().await;

    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let mut cfg = config(dir.path(), &nats.url());
    cfg.create_stream = true;
    let app = spawn_app(cfg, clock_at(NOON + 900)).await;
    wait_until(10, "the JetStream feed", async || {
        app.state.metrics.snapshot().consuming
    })
    .await;
    assert_eq!(app.state.metrics.snapshot().delivery, Some("jetstream"));
    two_reports_are_stored(&nats, &app).await;
    let h = health(app.addr).await;
    assert_eq!(
        (h["status"].as_str(), h["feed"].as_str()),
        (Some("ok"), Some("jetstream"))
    );
    app.shutdown().await;
}

/// A core feed is a fallback: when a stream on the report subject appears later (an
/// operator created it, JetStream came back), the aggregator moves to a durable consumer,
/// which also delivers the reports stored while the core feed ran; each is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_feed_moves_to_the_stream_once_there_is_one() {
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let app = core_feed_stores_reports(dir.path(), &nats).await;

    let js = async_nats::jetstream::new(client(&nats).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: truebit_aggregator::nats::STREAM_NAME.into(),
        subjects: vec![REPORT_SUBJECT.into()],
        ..Default::default()
    })
    .await
    .expect("create the stream");
    // Stored in the stream while the aggregator may still read the core feed.
    let wire = SimNode::new(3).wire(NOON + 600, 1, &[Task::ok(1)]);
    js.publish(REPORT_SUBJECT, wire.into())
        .await
        .expect("publish")
        .await
        .expect("the stream stores it");
    wait_until(30, "the JetStream feed replaces the core one", async || {
        let m = app.state.metrics.snapshot();
        m.consuming && m.delivery == Some("jetstream")
    })
    .await;
    let wire = SimNode::new(4).wire(NOON + 600, 1, &[Task::ok(1)]);
    js.publish(REPORT_SUBJECT, wire.into())
        .await
        .expect("publish")
        .await
        .expect("the stream stores it");
    wait_until(10, "four reports stored", async || {
        app.state.store.totals().await.expect("totals").reports == 4
    })
    .await;
    assert_eq!(app.state.metrics.accepted(), 4);
    let h = health(app.addr).await;
    assert_eq!(h["feed"], "jetstream", "{h}");
    app.shutdown().await;
}
