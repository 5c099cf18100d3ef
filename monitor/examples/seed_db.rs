//! Builds a large database for the HTTP API benchmark (docs/PERFORMANCE.md, "HTTP API"):
//! `TASKS` tasks, each with its life-cycle entries (received, started, completed with
//! metrics, invoice) and plain log lines, up to `ENTRIES` entries in all, spread over the
//! year before now. Rows go through the store's batch API, as ingest writes them.
//!
//! `cargo run --release -p truebit-monitor --example seed_db -- DB [TASKS] [ENTRIES]`
//! (defaults: 1,000,000 tasks, 10,000,000 entries).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use truebit_monitor::model::{
    Entry, Event, Invoice, Kind, Level, LineItem, Metrics, Pos, TaskCreated,
};
use truebit_monitor::store::{Batch, Store, StoreConfig};

const LOGGER: &str = "@truebit/worker-runner-node-0x558f9c0e5f0b3a1d2e4c6b8a7f9e1d3c5b7ac5d7";
const BATCH: usize = 4096;
const CHAINS: [&str; 3] = ["43113", "43114", "1"];
const CHATTER: [&str; 6] = [
    "Semaphore TaskSubscriber heartbeat ok, 0/4 slots active",
    "nats connection healthy, rtt 3 ms",
    "InvoiceSubscriber waiting for invoices",
    "peer discovery: 12 peers known",
    "TaskSubscriber subscription renewed",
    "warn: slow block propagation from upstream node",
];

fn entry(
    t: i64,
    kind: Kind,
    level: Level,
    message: String,
    exec: Option<&str>,
    event: Option<Event>,
) -> Entry {
    Entry {
        pos: Pos::new(t, 0),
        received_ns: Some(t),
        node_time: Some(t / 1_000_000_000),
        level: Some(level),
        logger: Some(LOGGER.into()),
        version: Some("2.4.1".into()),
        message,
        kind,
        execution_id: exec.map(str::to_owned),
        event,
        replaces: None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let db = args.next().expect("usage: seed_db DB [TASKS] [ENTRIES]");
    let tasks: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("TASKS"));
    let entries: u64 = args
        .next()
        .map_or(10_000_000, |a| a.parse().expect("ENTRIES"));
    let per_task_events = 4;
    let chatter_per_task = entries.saturating_sub(tasks * per_task_events) / tasks.max(1);

    let mut config = StoreConfig::new(&db);
    config.log_retention_days = None;
    let store = Store::open(config).expect("store opens");
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let span_ns: i64 = 365 * 86_400 * 1_000_000_000;
    let step = span_ns / tasks.max(1) as i64;
    let mut t = now_ns - span_ns;
    let mut rng = StdRng::seed_from_u64(7);
    let mut batch = Vec::with_capacity(BATCH);
    let started = Instant::now();
    let mut written: u64 = 0;
    let submit = |batch: &mut Vec<Entry>, written: &mut u64| {
        *written += batch.len() as u64;
        store
            .submit(Batch {
                source: "seed".into(),
                entries: std::mem::take(batch),
                cursor: None,
                container_events: Vec::new(),
            })
            .expect("submit");
    };
    for i in 0..tasks {
        let exec = format!("{:08x}-7f1e-4c55-9a43-{:012x}", i >> 32, i);
        let chain = CHAINS[(rng.gen_range(0..10) as usize).min(2)];
        let tick = |t: &mut i64, rng: &mut StdRng| {
            *t += 1_000_000 + rng.gen_range(0..step.max(2_000_000) as u64 / 16) as i64;
            *t
        };
        let created = TaskCreated {
            execution_id: exec.clone(),
            task_id: Some(format!("rs_{i:064x}")),
            chain_id: Some(chain.into()),
            block_number: Some(70_000_000 + i),
            requester: Some(format!("0x{:040x}", rng.gen::<u64>())),
            created_ms: Some(t / 1_000_000),
            gas_limit: Some(1_099_511_627_776),
            memory_limit: Some(1024),
            reward: Some("0".into()),
            execution_timeout_ms: Some(30_000),
            input: Some(format!(
                "{{\"args\":[{i}],\"data\":\"{:016x}\"}}",
                rng.gen::<u64>()
            )),
            ..TaskCreated::default()
        };
        let t0 = tick(&mut t, &mut rng);
        batch.push(entry(
            t0,
            Kind::TaskReceived,
            Level::Info,
            format!("Message received from task_created for {exec}"),
            Some(&exec),
            Some(Event::TaskReceived(Box::new(created))),
        ));
        let t1 = tick(&mut t, &mut rng);
        batch.push(entry(
            t1,
            Kind::ExecutionStarted,
            Level::Info,
            format!("Execution {exec} started"),
            Some(&exec),
            Some(Event::ExecutionStarted {
                execution_id: exec.clone(),
            }),
        ));
        let failed = rng.gen_range(0..20) == 0;
        let elapsed_ms = 50 + rng.gen_range(0..30_000);
        let metrics = Metrics {
            elapsed_ns: Some(elapsed_ms * 1_000_000),
            exit_code: Some(i64::from(failed)),
            steps: Some(10_000 + rng.gen_range(0..2_000_000_000)),
            memory_peak: Some(16 + rng.gen_range(0..512)),
            cached: Some(rng.gen_range(0..10) < 7),
            output: Some(format!("{{\"result\":{}}}", rng.gen_range(0..1000))),
            ..Metrics::default()
        };
        for _ in 0..chatter_per_task {
            let tc = tick(&mut t, &mut rng);
            let msg = CHATTER[rng.gen_range(0..CHATTER.len() as u64) as usize];
            let level = if msg.starts_with("warn") {
                Level::Warn
            } else {
                Level::Info
            };
            batch.push(entry(tc, Kind::Log, level, msg.into(), None, None));
        }
        let t2 = tick(&mut t, &mut rng);
        batch.push(entry(
            t2,
            Kind::ExecutionCompleted,
            if failed { Level::Error } else { Level::Info },
            format!("Execution {exec} completed"),
            Some(&exec),
            Some(Event::ExecutionCompleted {
                execution_id: exec.clone(),
                metrics: Some(Box::new(metrics)),
                stderr: None,
            }),
        ));
        let item = |op: &str| LineItem {
            operation: op.into(),
            account: Some(format!("0x{:040x}", 1)),
            steps: Some("19373422".into()),
            memory: Some("37".into()),
        };
        let invoice = Invoice {
            invoice_id: Some(i as i64),
            execution_id: Some(exec.clone()),
            task_id: Some(format!("rs_{i:064x}")),
            task_created_ts: Some(t0 / 1_000_000_000),
            step_gas_price: Some("1".into()),
            byte_gas_price: Some("1".into()),
            line_items: vec![item("charge"), item("pay")],
        };
        let t3 = tick(&mut t, &mut rng);
        batch.push(entry(
            t3,
            Kind::Invoice,
            Level::Info,
            format!("InvoiceSubscriber invoice received for {exec}"),
            Some(&exec),
            Some(Event::Invoice(Box::new(invoice))),
        ));
        t = t.max(now_ns - span_ns + (i as i64 + 1) * step);
        if batch.len() >= BATCH {
            submit(&mut batch, &mut written);
        }
        if i % 100_000 == 99_999 {
            eprintln!(
                "{} tasks, {written} entries, {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    submit(&mut batch, &mut written);
    store.flush().expect("flush");
    let summary = store.summary().expect("summary");
    store.close().expect("close");
    eprintln!(
        "done in {:.0} s: {} entries, {} invoices, tasks {:?}, {} MB",
        started.elapsed().as_secs_f64(),
        summary.entries,
        summary.invoices,
        summary.tasks_by_status,
        summary.db_size_bytes / 1_000_000
    );
}
