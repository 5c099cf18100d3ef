//! The HTTP API and page, in-process (tower `oneshot`), over a real store fed directly.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt as _;
use truebit_aggregator::gate::Limits;
use truebit_aggregator::http::{router, AppState};
use truebit_aggregator::metrics::Metrics;
use truebit_aggregator::publisher::Publisher;
use truebit_aggregator::store::Store;
use truebit_protocol::report::Report;

use truebit_aggregator::stats::{node_scale, reporting_scale, task_scale};
use truebit_protocol::stats::basis_points;

use crate::support::*;

/// 2024-06-02 00:00 UTC, the day after NOON's.
const NEXT_DAY: u64 = NOON + 12 * 3_600;

fn publisher(store: &Store, now: u64) -> Publisher {
    Publisher {
        store: store.clone(),
        nats: None,
        key: test_key(),
        noise: test_noise(),
        k: 5,
        interval: std::time::Duration::from_secs(30),
        retention_days: 30,
        clock: clock_at(now),
        metrics: Arc::new(Metrics::default()),
        latest: Arc::new(RwLock::new(None)),
        certifier: single_certifier(),
        consumer: "test".into(),
        cancel: Default::default(),
    }
}

fn reports(nodes: std::ops::RangeInclusive<u32>, windows: &[u64]) -> Vec<Report> {
    let mut out = Vec::new();
    for &w in windows {
        for n in nodes.clone() {
            let node = SimNode::new(n);
            let tasks = if n % 2 == 0 {
                vec![Task::ok(1)]
            } else {
                vec![Task::ok(1), Task::ok(137)]
            };
            out.push(node.report(w, tasks.len() as u64, &tasks));
        }
    }
    out
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

#[tokio::test]
async fn the_api_serves_the_latest_statistics_history_availability_and_metrics() {
    let dir = tempdir();
    let store = Store::open(&dir.path().join("a.db"), Limits::default()).expect("store");
    // 00:15:10 the next day: that day (and so the NOON hour) is released.
    let now = NEXT_DAY + 900 + 10;
    let window = NEXT_DAY + 600;
    let p = publisher(&store, now);
    let state = AppState {
        store: store.clone(),
        metrics: Arc::clone(&p.metrics),
        latest: Arc::clone(&p.latest),
        certifier: Arc::clone(&p.certifier),
        public_key: test_key().public(),
        k: 5,
    };
    let app = router(state);

    let (status, body) = get(&app, "/api/stats").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No statistics have been published yet"));

    let batch = reports(1..=8, &[NOON, NOON + 300]);
    let verdicts = store
        .ingest(Arc::new(batch.clone()), now)
        .await
        .expect("stored");
    assert!(verdicts.iter().all(Result::is_ok));
    p.metrics.record_batch(&verdicts);
    p.publish_once(now).await.expect("published");

    let (status, body) = get(&app, "/api/stats").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["key"], test_key().public().to_string());
    assert_eq!(v["stats"]["window"], window);
    // 24 tasks received in the NOON hour; every hour of the day carries its noise.
    let noise = test_noise();
    let day = NEXT_DAY - 86_400;
    let received: i64 = (0..24)
        .map(|i| day + i * 3_600)
        .map(|h| {
            let true_count = if h == NOON { 24 } else { 0 };
            true_count + noise.draw("tasks.received", h, task_scale())
        })
        .sum();
    assert_eq!(v["stats"]["tasks_24h"]["received"], received.max(0));
    let nodes = 8 + noise.draw("nodes.day", day, node_scale());
    assert_eq!(v["stats"]["nodes_24h"], nodes);
    // Active: nodes reporting in the latest released hour (23:00): none, so fewer than k.
    assert_eq!(v["stats"]["active_nodes"], serde_json::Value::Null);
    assert_eq!(v["sig"].as_str().map(str::len), Some(128));

    let (status, body) = get(&app, &format!("/api/stats/history?from={NOON}&to={window}")).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    let (_, body) = get(&app, "/api/stats/history").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["items"][0]["window"], window,
        "default: the last 24 hours"
    );
    let (_, body) = get(&app, &format!("/api/stats/history?to={}", window - 300)).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0));
    let (status, _) = get(&app, "/api/stats/history?from=9&to=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&app, "/api/stats/history?from=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = get(&app, "/api/availability").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["availability"].as_array().map(Vec::len), Some(24));
    let reporting = 8 + noise.draw("nodes.reporting", NOON, reporting_scale());
    assert_eq!(v["availability"][12]["hour"], NOON);
    assert_eq!(
        v["availability"][12]["rate_bp"],
        basis_points(reporting.max(0) as u64, nodes as u64).expect("a rate")
    );
    assert_eq!(v["availability"][13]["rate_bp"], serde_json::Value::Null);

    let (status, body) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("truebit_aggregator_reports_accepted_total 16\n"),
        "{body}"
    );
    assert!(body.contains("truebit_aggregator_stats_published_total 1\n"));

    let (status, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    let shown = |n: i64| truebit_web::format::opt_thousands(Some(n));
    assert!(
        page.contains(&format!("data-figure=\"nodes_24h\">{}<", shown(nodes))),
        "{page}"
    );
    assert!(page.contains(&format!(
        "data-figure=\"received_24h\">{}<",
        shown(received.max(0))
    )));
    assert!(page.contains("<svg"), "server-rendered charts");
    assert!(!page.contains("<script"), "no script on the public page");
    let css = truebit_web::asset::url("app.css");
    assert!(page.contains(&css));
    let (status, body) = get(&app, &css).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains('{'), "the stylesheet");

    // No NATS connection in this test: alive, but degraded.
    let (status, body) = get(&app, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["nats"], "disconnected");
    assert_eq!(v["stats"], true);

    // No node id anywhere, page or API.
    for uri in [
        "/",
        "/api/stats",
        "/api/availability",
        "/api/ingest",
        "/metrics",
    ] {
        let (_, body) = get(&app, uri).await;
        for r in &batch {
            assert!(!body.contains(&r.node.to_string()), "{uri} shows a node id");
            assert!(!body.contains(&r.key.to_string()), "{uri} shows a node key");
        }
    }
}

#[tokio::test]
async fn two_aggregators_that_stored_the_same_reports_publish_the_same_figures() {
    let dir = tempdir();
    let now = NEXT_DAY + 900 + 10;
    let all = reports(1..=12, &[NOON, NOON + 300, NOON + 600]);
    let a = Store::open(&dir.path().join("a.db"), Limits::default()).expect("a");
    let b = Store::open(&dir.path().join("b.db"), Limits::default()).expect("b");
    a.ingest(Arc::new(all.clone()), now)
        .await
        .expect("a stores");
    // b gets them in reverse order, in small batches, with a replay.
    let mut reversed = all.clone();
    reversed.reverse();
    for chunk in reversed.chunks(5) {
        b.ingest(Arc::new(chunk.to_vec()), now)
            .await
            .expect("b stores");
    }
    let replay = b
        .ingest(Arc::new(all[..3].to_vec()), now)
        .await
        .expect("replay");
    assert!(replay.iter().all(Result::is_err));
    let sa = publisher(&a, now).publish_once(now).await.expect("a");
    let sb = publisher(&b, now).publish_once(now).await.expect("b");
    assert_eq!(sa.stats_bytes(), sb.stats_bytes());
    let day = NEXT_DAY - 86_400;
    let nodes = 12 + test_noise().draw("nodes.day", day, node_scale());
    assert_eq!(sa.stats().nodes_24h, Some(nodes as u64));
    // Published again later (30 s on, and after a late report of a released hour): the
    // released figures are the same.
    let late = reports(13..=13, &[NOON + 900]);
    assert!(a.ingest(Arc::new(late), now + 30).await.expect("late")[0].is_ok());
    let again = publisher(&a, now + 30)
        .publish_once(now + 30)
        .await
        .expect("again");
    assert_eq!(again.stats().tasks_24h, sa.stats().tasks_24h);
    assert_eq!(again.stats().nodes_24h, sa.stats().nodes_24h);
    assert_eq!(again.stats().distributions, sa.stats().distributions);
}
