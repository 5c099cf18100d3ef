//! Aggregator benchmarks against the real thing (docs/PERFORMANCE.md, "Aggregator").
//!
//! ```text
//! cargo run --release -p truebit-aggregator --example aggregator_bench -- ingest [REPORTS] [NODES]
//! cargo run --release -p truebit-aggregator --example aggregator_bench -- stats [NODES]
//! ```
//!
//! `ingest`: starts a private nats-server (JetStream), fills the report stream with
//! REPORTS signed reports (cover reports, and one task in four reports) of NODES
//! simulated monitors, then starts the aggregator in this process and measures how long
//! it takes to drain the stream end to end (NATS -> verify -> SQLite, acknowledged), and
//! the process CPU time that took.
//!
//! `stats`: fills a database with a network of NODES nodes (every window of the last
//! 24 hours, and one report per node per day for the 29 days before) and times the
//! statistics computation (read the rollups, compute, k-anonymity, sign).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use truebit_aggregator::config::Settings;
use truebit_aggregator::gate::Limits;
use truebit_aggregator::key::AggregatorKey;
use truebit_aggregator::metrics::Metrics;
use truebit_aggregator::publisher::Publisher;
use truebit_aggregator::store::Store;
use truebit_aggregator::{app, Clock};
use truebit_protocol::bucket::{ExecTimeBucket, GasBucket, MemoryBucket, StepsBucket};
use truebit_protocol::report::{ChainId, InvoiceItem, Level, Operation, Outcome, Report, TaskItem};
use truebit_protocol::sign::SigningKey;
use truebit_protocol::window::WindowStart;

const DAY: u64 = 86_400;

fn node_key(n: u32) -> SigningKey {
    let mut bytes = [3u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    SigningKey::from_bytes(&bytes)
}

fn report(key: &SigningKey, n: u32, window: u64, busy: bool) -> Report {
    let w = WindowStart::new(window).expect("aligned");
    let mut r = Report::for_key(&key.verifying_key(), w, Level::Full);
    if busy {
        r.tasks.push(TaskItem {
            chain: ChainId::new(u64::from(1 + n % 3)),
            outcome: if n % 10 == 0 {
                Outcome::Failed
            } else {
                Outcome::Completed
            },
            duration: ExecTimeBucket::ALL[(n % 8) as usize],
            gas: GasBucket::ALL[(n % 5) as usize],
            memory: MemoryBucket::ALL[(n % 4) as usize],
            cached: Some(n % 3 == 0),
        });
        r.invoices.push(InvoiceItem {
            op: Operation::Charge,
            steps: StepsBucket::ALL[(n % 5) as usize],
        });
        r.counts.received = 1;
        r.counts.completed = u64::from(n % 10 != 0);
        r.counts.failed = u64::from(n % 10 == 0);
    }
    r
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (index 11, 12 after ')').
    (ticks(11) + ticks(12)) / 100.0
}

async fn ingest(total: u32, nodes: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nats = truebit_testkit::NatsServer::jetstream(dir.path());
    let url = nats.url();
    let windows = total.div_ceil(nodes);
    let now = 1_717_243_200 + u64::from(windows + 1) * 300;
    let mut config = Settings {
        nats_url: Some(url.clone()),
        db_path: Some(dir.path().join("aggregator.db")),
        new_nodes_per_hour: Some(u32::MAX),
        global_reports_per_sec: Some(u32::MAX),
        stats_interval_secs: Some(300),
        ..Settings::default()
    }
    .validate()?;
    config.create_stream = true;
    let clock = Clock::manual(i64::try_from(now)? * 1_000_000_000);
    let key = AggregatorKey::from_signing_key(SigningKey::from_bytes(&[42; 32]));

    // Create the stream, then fill it while no aggregator runs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let first = app::start(config.clone(), listener, key.clone(), clock.clone()).await?;
    while first.state.metrics.snapshot().delivery.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.shutdown().await;
    let t = Instant::now();
    let keys: Vec<SigningKey> = (0..nodes).map(node_key).collect();
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client);
    let mut acks = Vec::new();
    let mut bytes = 0usize;
    for i in 0..total {
        let n = i % nodes;
        let w = 1_717_243_200 + u64::from(i / nodes) * 300;
        let r = report(&keys[n as usize], n, w, i % 4 == 0);
        let wire = truebit_protocol::privacy::validate_report(&r)?
            .sign(&keys[n as usize])?
            .to_wire();
        bytes += wire.len();
        acks.push(
            js.publish(truebit_protocol::REPORT_SUBJECT, wire.into())
                .await?,
        );
        if acks.len() >= 1_000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    println!(
        "stream filled: {total} reports ({:.0} bytes average) from {nodes} nodes in {:.1} s",
        bytes as f64 / f64::from(total),
        t.elapsed().as_secs_f64()
    );

    let cpu0 = cpu_secs();
    let t = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = app::start(config, listener, key, clock).await?;
    while running.state.metrics.received() < u64::from(total) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let s = running.state.metrics.snapshot();
    let totals = running.state.store.totals().await?;
    println!(
        "drained: {} accepted, {} rejected, {} reports and {} task items stored, {} batches",
        s.accepted, s.rejected, totals.reports, totals.task_items, s.batches
    );
    println!(
        "end to end (JetStream -> verify -> SQLite, acknowledged): {:.2} s wall, {:.0} reports/s; \
         process CPU {:.2} s = {:.1} µs/report, {:.0} reports per CPU-second",
        wall,
        f64::from(total) / wall,
        cpu,
        cpu * 1e6 / f64::from(total),
        f64::from(total) / cpu
    );
    running.shutdown().await;
    nats.stop();
    Ok(())
}

async fn stats(nodes: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = Limits {
        max_age_secs: 31 * DAY,
        node_per_hour: u32::MAX,
        global_per_sec: u32::MAX,
        new_nodes_per_hour: u32::MAX,
        ..Limits::default()
    };
    let store = Store::open(&dir.path().join("aggregator.db"), limits)?;
    let now = 1_717_243_200 + 30 * DAY + 60;
    let keys: Vec<SigningKey> = (0..nodes).map(node_key).collect();
    let t = Instant::now();
    let mut stored = 0u64;
    let last = now - now % 300 - 300;
    // 29 days before the statistics' 24 hours: one report per node per day.
    for day in (1..30).rev() {
        let w = last - day * DAY;
        let batch: Vec<Report> = (0..nodes)
            .map(|n| report(&keys[n as usize], n, w, n % 4 == 0))
            .collect();
        stored += batch.len() as u64;
        store.ingest(Arc::new(batch), now).await?;
    }
    // The last 24 hours: every node, every window; a task in one report of four.
    for i in (0..288u64).rev() {
        let w = last - i * 300;
        let batch: Vec<Report> = (0..nodes)
            .map(|n| report(&keys[n as usize], n, w, (u64::from(n) + i) % 4 == 0))
            .collect();
        stored += batch.len() as u64;
        store.ingest(Arc::new(batch), now).await?;
    }
    println!(
        "stored {stored} reports of {nodes} nodes in {:.1} s ({} MB database)",
        t.elapsed().as_secs_f64(),
        store.size_bytes() / 1_000_000
    );
    let key = AggregatorKey::from_signing_key(SigningKey::from_bytes(&[42; 32]));
    let p = Publisher {
        certifier: Arc::new(std::sync::Mutex::new(
            truebit_aggregator::certify::Certifier::new(
                "bench".into(),
                key.public(),
                truebit_protocol::certificate::KeySet::single(key.public())?,
            ),
        )),
        consumer: "bench".into(),
        store: store.clone(),
        nats: None,
        key,
        noise: truebit_protocol::noise::FigureNoise::new([9; 32]),
        k: 5,
        interval: Duration::from_secs(30),
        retention_days: 30,
        clock: Clock::manual(i64::try_from(now)? * 1_000_000_000),
        metrics: Arc::new(Metrics::default()),
        latest: Arc::new(RwLock::new(None)),
        cancel: Default::default(),
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let signed = p.publish_once(now).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        // The noise of a node count is a few nodes at most.
        let published = signed.stats().nodes_30d.expect("published");
        assert!(published.abs_diff(u64::from(nodes)) < 100, "{published}");
    }
    times.sort_by(f64::total_cmp);
    println!(
        "statistics (release the due hours and day once, read rollups, compute, k-anonymity, sign, keep): median {:.0} ms, max {:.0} ms over 5 runs",
        times[2], times[4]
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: u32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("ingest") => ingest(num(2, 200_000), num(3, 20_000)).await,
        Some("stats") => stats(num(2, 10_000)).await,
        _ => {
            eprintln!("usage: aggregator_bench ingest [REPORTS] [NODES] | stats [NODES]");
            std::process::exit(2)
        }
    }
}
