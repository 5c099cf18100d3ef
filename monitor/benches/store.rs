//! Store import throughput: submit realistic batches and flush, into a SQLite file.
//!
//! `cargo bench -p truebit-monitor --bench store`. The target is >= 100 MB/s of log
//! (about 250k entries/s): "bytes" counts each entry as the line the node printed
//! (Docker timestamp, node time, level, logger, version, message).
//!
//! Two workloads, in batches of 2048 entries as the ingest path cuts them. Per task, the
//! life-cycle lines (task received with its input, slot taken, downloaded, started,
//! metrics, completed, outcome published, slot released, invoice), and between tasks
//! plain `Log` entries with 200-400 byte messages:
//!
//! - `log_heavy`: 81 plain lines per task (90 % plain), inputs of 600 bytes;
//! - `task_heavy`: 5 plain lines per task, inputs of 4 KB, the shape of `examples/genlog`
//!   (what `scripts/bench import` measures end to end): most bytes are task payloads.

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use truebit_monitor::model::{
    Entry, Event, Invoice, Kind, Level, LineItem, Metrics, Pos, TaskCreated,
};
use truebit_monitor::store::{Batch, Cursor, Store, StoreConfig};

/// Entries per measured iteration.
const ENTRIES: usize = 100_000;
/// Entries per batch, as `ingest` cuts them.
const BATCH: usize = 2048;
const LOGGER: &str = "@truebit/worker-runner-node-0x558f9c0e5f0b3a1d2e4c6b8a7f9e1d3c5b7ac5d7";
const VERSION: &str = "2.4.1";
const WORDS: &[&str] = &[
    "Semaphore",
    "TaskSubscriber",
    "processing",
    "connection",
    "heartbeat",
    "peer",
    "ok",
    "received",
    "message",
    "queue",
    "worker",
    "runner",
    "chain",
    "block",
    "0x3f9a",
    "latency",
    "ms",
    "retry",
    "subscription",
    "nats",
    "status",
    "{\"ok\":true}",
    "published",
    "ack",
];

fn message(rng: &mut StdRng) -> String {
    let len = 200 + rng.gen_range(0..201) as usize;
    let mut m = String::with_capacity(len + 16);
    while m.len() < len {
        m.push_str(WORDS[rng.gen_range(0..WORDS.len() as u64) as usize]);
        m.push(' ');
    }
    m.truncate(len);
    m
}

fn hex(rng: &mut StdRng, chars: usize) -> String {
    (0..chars)
        .map(|_| char::from_digit(rng.gen_range(0..16) as u32, 16).unwrap_or('0'))
        .collect()
}

/// The log as the store receives it: entries at increasing positions and times, with
/// execution ids unique to this `run`.
struct Workload {
    rng: StdRng,
    line: i64,
    time_ns: i64,
    run: i64,
    task: i64,
    mix: Mix,
}

#[derive(Clone, Copy, Debug)]
struct Mix {
    name: &'static str,
    plain_per_task: usize,
    input_hex: usize,
}

const MIXES: [Mix; 2] = [
    Mix {
        name: "log_heavy",
        plain_per_task: 81,
        input_hex: 600,
    },
    Mix {
        name: "task_heavy",
        plain_per_task: 5,
        input_hex: 4000,
    },
];

impl Workload {
    fn entry(&mut self, kind: Kind, level: Level, message: String, event: Option<Event>) -> Entry {
        self.line += 1;
        self.time_ns += 1_000_000 + self.rng.gen_range(0..3_000_000) as i64;
        let execution_id = match &event {
            Some(Event::TaskReceived(c)) => Some(c.execution_id.clone()),
            Some(
                Event::ExecutionStarted { execution_id }
                | Event::ExecutionCompleted { execution_id, .. },
            ) => Some(execution_id.clone()),
            _ => None,
        };
        Entry {
            pos: Pos::new(self.time_ns, 0),
            received_ns: Some(self.time_ns),
            node_time: Some(self.time_ns / 1_000_000_000),
            level: Some(level),
            logger: Some(LOGGER.to_owned()),
            version: Some(VERSION.to_owned()),
            message,
            kind,
            execution_id,
            event,
            replaces: None,
        }
    }

    /// The nine lines of one task's life.
    fn task(&mut self, out: &mut Vec<Entry>) {
        self.task += 1;
        let exec = format!("{:08x}-7f1e-4c55-9a43-{:012x}", self.run, self.task);
        let task_id = format!("rs_{}", hex(&mut self.rng, 64));
        let input = format!(
            "{{\"args\":[{}],\"data\":\"{}\"}}",
            self.task,
            hex(&mut self.rng, self.mix.input_hex)
        );
        let created = TaskCreated {
            execution_id: exec.clone(),
            task_id: Some(task_id.clone()),
            chain_id: Some("43113".into()),
            block_number: Some(70_259_248 + self.task as u64),
            block_hash: Some(format!("0x{}", hex(&mut self.rng, 64))),
            requester: Some(format!("0x{}", hex(&mut self.rng, 40))),
            created_ms: Some(self.time_ns / 1_000_000),
            gas_limit: Some(1_099_511_627_776),
            memory_limit: Some(1024),
            call_limit: Some(65_536),
            frame_limit: Some(524_288),
            reward: Some("0".into()),
            execution_timeout_ms: Some(30_000),
            required_solutions: Some(4),
            total_solutions: Some(4),
            input: Some(input.clone()),
        };
        let metrics = Metrics {
            elapsed_ns: Some(842_133_917),
            exit_code: Some(i64::from(self.task % 10 == 0)),
            steps: Some(19_373_422),
            gas_limit: Some(60_000_000_000),
            memory_limit: Some(1024),
            memory_peak: Some(37),
            call_peak: Some(412),
            frame_peak: Some(9120),
            wasm_size: Some(1_839_201),
            wasm_hash: Some(hex(&mut self.rng, 64)),
            cached: Some(true),
            output: Some("{\"result\":42}".into()),
        };
        let item = |operation: &str, account: String| LineItem {
            operation: operation.into(),
            account: Some(account),
            steps: Some("19373422".into()),
            memory: Some("37".into()),
        };
        let invoice = Invoice {
            invoice_id: Some(self.task),
            execution_id: Some(exec.clone()),
            task_id: Some(task_id.clone()),
            task_created_ts: Some(self.time_ns / 1_000_000_000),
            step_gas_price: Some("1".into()),
            byte_gas_price: Some("1".into()),
            line_items: vec![
                item("charge", format!("0x{}", hex(&mut self.rng, 40))),
                item("pay", format!("0x{}", hex(&mut self.rng, 40))),
            ],
        };
        let info = Level::Info;
        let lines = [
            (
                Kind::TaskReceived,
                format!("Message received from task_created: {input}"),
                Some(Event::TaskReceived(Box::new(created))),
            ),
            (
                Kind::SlotTaken,
                "Semaphore TaskSubscriber processing started. Using slot 2/4".into(),
                Some(Event::SlotTaken { slot: 2, total: 4 }),
            ),
            (
                Kind::TaskDownloaded,
                format!("Task {task_id} downloaded successfully"),
                Some(Event::TaskDownloaded {
                    task_id: task_id.clone(),
                }),
            ),
            (
                Kind::ExecutionStarted,
                format!("Starting task execution executionId: {exec}"),
                Some(Event::ExecutionStarted {
                    execution_id: exec.clone(),
                }),
            ),
            (
                Kind::ExecutionMetrics,
                format!(
                    "Command execution stdout: {}",
                    "{\"elapsed\":\"842133917\",\"wasi\":{\"exitCode\":0},\"metering\":{}}"
                ),
                Some(Event::ExecutionMetrics(Box::new(metrics.clone()))),
            ),
            (
                Kind::ExecutionCompleted,
                format!("Execution {exec} completed"),
                Some(Event::ExecutionCompleted {
                    execution_id: exec.clone(),
                    metrics: Some(Box::new(metrics)),
                    stderr: None,
                }),
            ),
            (
                Kind::OutcomePublished,
                "Message published to compute_outcome".into(),
                Some(Event::OutcomePublished),
            ),
            (
                Kind::SlotReleased,
                "Semaphore TaskSubscriber processing completed. Released slot (1/4 now active)"
                    .into(),
                Some(Event::SlotReleased {
                    active: 1,
                    total: 4,
                }),
            ),
            (
                Kind::Invoice,
                format!(
                    "InvoiceSubscriber invoice received: {{\"invoiceId\":{}}}",
                    self.task
                ),
                Some(Event::Invoice(Box::new(invoice))),
            ),
        ];
        for (kind, message, event) in lines {
            let entry = self.entry(kind, info.clone(), message, event);
            out.push(entry);
        }
    }

    /// `n` entries: one task's nine lines after every `plain_per_task` plain lines.
    fn entries(&mut self, n: usize) -> Vec<Entry> {
        let mut out = Vec::with_capacity(n + 9);
        let period = self.mix.plain_per_task + 9;
        while out.len() < n {
            if out.len() % period == self.mix.plain_per_task {
                self.task(&mut out);
            } else {
                let level = match self.rng.gen_range(0..100) {
                    0 => Level::Warn,
                    1 => Level::Error,
                    2..=20 => Level::Debug,
                    _ => Level::Info,
                };
                let message = message(&mut self.rng);
                let entry = self.entry(Kind::Log, level, message, None);
                out.push(entry);
            }
        }
        out.truncate(n);
        out
    }
}

/// What the node printed for an entry: `<docker ts> <YYYY-MM-DD HH:MM:SS> <level>: <logger>:<version> <message>\n`.
fn line_bytes(e: &Entry) -> u64 {
    let level = e.level.as_ref().map_or(0, |l| l.as_str().len() + 2);
    let logger = e.logger.as_ref().map_or(0, |l| l.len() + 1);
    let version = e.version.as_ref().map_or(0, |v| v.len() + 1);
    (31 + 20 + level + logger + version + e.message.len() + 1) as u64
}

fn batches(entries: Vec<Entry>) -> Vec<Batch> {
    let mut out = Vec::with_capacity(entries.len() / BATCH + 1);
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<Entry> = entries.by_ref().take(BATCH).collect();
        let pos = chunk.last().map(|e| e.pos).unwrap_or_default();
        out.push(Batch {
            source: "docker:runner-node".into(),
            entries: chunk,
            cursor: Some(Cursor {
                pos,
                parser_state: "{\"parser\":{\"pending\":null}}".into(),
            }),
            container_events: Vec::new(),
        });
    }
    out
}

fn bench_store(c: &mut Criterion) {
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    for mix in MIXES {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = StoreConfig::new(dir.path().join("bench.db"));
        config.log_retention_days = None;
        let store = Store::open(config).expect("open store");

        let run = AtomicI64::new(0);
        let next_time = AtomicI64::new(start_ns);
        let workload = |rng_seed: u64| {
            let r = run.fetch_add(1, Ordering::SeqCst);
            let mut w = Workload {
                rng: StdRng::seed_from_u64(rng_seed),
                line: 0,
                time_ns: next_time.load(Ordering::SeqCst),
                run: r,
                task: 0,
                mix,
            };
            let entries = w.entries(ENTRIES);
            next_time.store(w.time_ns + 1, Ordering::SeqCst);
            entries
        };
        let sample = workload(7);
        let bytes: u64 = sample.iter().map(line_bytes).sum();
        let messages: u64 = sample.iter().map(|e| e.message.len() as u64).sum();
        let events = sample.iter().filter(|e| e.event.is_some()).count();
        eprintln!(
            "store bench {}: {ENTRIES} entries per iteration, {events} with events, {:.1} MB of log lines ({} bytes per line, {} bytes per message on average)",
            mix.name,
            bytes as f64 / 1e6,
            bytes / ENTRIES as u64,
            messages / ENTRIES as u64
        );

        let import = |b: &mut criterion::Bencher<'_>| {
            b.iter_batched(
                || batches(workload(11)),
                |batches| {
                    for batch in batches {
                        store.submit(batch).expect("submit");
                    }
                    store.flush().expect("flush");
                },
                BatchSize::PerIteration,
            );
        };

        let mut group = c.benchmark_group(format!("store_{}", mix.name));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(10));
        group.throughput(Throughput::Elements(ENTRIES as u64));
        group.bench_function("import_entries", import);
        group.throughput(Throughput::BytesDecimal(bytes));
        group.bench_function("import_bytes", import);
        group.finish();

        let summary = store.summary().expect("summary");
        eprintln!(
            "store bench {}: database holds {} entries, {} tasks, {} invoices, {:.0} MB on disk",
            mix.name,
            summary.entries,
            summary.tasks_by_status.iter().map(|(_, n)| n).sum::<u64>(),
            summary.invoices,
            summary.db_size_bytes as f64 / 1e6
        );
        if mix.name == "log_heavy" {
            let mut group = c.benchmark_group("store_read");
            group.bench_function("summary", |b| {
                b.iter(|| black_box(store.summary().expect("summary")))
            });
            group.bench_function("entries_100", |b| {
                b.iter(|| black_box(store.entries(100).expect("entries")))
            });
            group.bench_function("tasks_100", |b| {
                b.iter(|| black_box(store.tasks(100).expect("tasks")))
            });
            group.finish();
        }
        store.close().expect("close");
    }
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
