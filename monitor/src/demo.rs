//! A simulated runner-node: prints the console lines a real node prints (see
//! docs/LOGFORMAT.md), for demos, fixtures, tests and benchmarks.
//!
//! The simulation is event-driven: tasks arrive while one of the 4 slots is free, and
//! each one goes through task_created, slot taken, download, start, (stderr), metrics,
//! completion, outcome published, slot released and, some seconds later, its invoice.
//! Steps of concurrent tasks interleave by time. Between them the node prints plain
//! info/warn/debug lines and now and then an error with a stack trace.
//!
//! A metrics block is always printed immediately before its completion line (nothing in
//! between), so the parser attributes every block and [`Expected`] counts are exact.
//! Every 25th task (the 4th, 29th, ...) has an input larger than Docker's 16 KiB frame.
//!
//! [`LogGenerator::with_short_entries`] makes the output look like what a busy node prints
//! over a day (for benchmarks): small task inputs (none near 16 KiB) and a few short
//! progress lines for each step of a task, so most entries are a hundred-odd bytes.
//!
//! Everything is drawn from a seeded [`StdRng`]: the same seed gives the same log.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;

use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{Kind, TaskStatus};

/// Slots of the simulated node.
const SLOTS: usize = 4;
/// Start time of [`fixture`]: 2025-11-24 13:55:34 UTC.
pub const FIXTURE_START_SECS: i64 = 1_763_992_534;

/// One console line as the node printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedLine {
    /// The node's wall clock (UTC), Unix seconds; the header shows this time.
    pub node_time_secs: i64,
    /// When Docker received the line (never before `node_time_secs`), Unix nanoseconds.
    pub received_ns: i64,
    /// The line without Docker timestamp and without `\n`. May contain ANSI codes.
    pub text: String,
}

impl GeneratedLine {
    /// The line as `docker logs --timestamps` prints it (without `\n`).
    pub fn docker_text(&self) -> String {
        let mut s = truebit_clock::rfc3339_ns(self.received_ns);
        s.push(' ');
        s.push_str(&self.text);
        s
    }
}

/// Running counts of what the generator printed so far (lines handed out by
/// [`LogGenerator::next_line`]), i.e. what a parser must find in them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// The node version in the headers.
    pub version: String,
    /// Physical lines.
    pub lines: u64,
    /// Entries a parser emits for these lines (header lines plus raw lines).
    pub entries: u64,
    /// Lines outside any entry (the npm banner before the first entry).
    pub raw_entries: u64,
    /// `task_created` messages.
    pub tasks_created: u64,
    /// Tasks by current status (received = not started yet).
    pub tasks_received: u64,
    pub tasks_executing: u64,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// `tasks_received + tasks_executing`.
    pub tasks_unfinished: u64,
    pub invoices: u64,
    /// Invoices that carry a `penalty` line item.
    pub penalties: u64,
    /// Completion lines preceded by their metrics block (all of them).
    pub metrics_attributed: u64,
    by_kind: [u64; Kind::ALL.len()],
}

impl Expected {
    /// Entries of one kind.
    pub fn kind(&self, kind: Kind) -> u64 {
        Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.by_kind.get(i).copied())
            .unwrap_or(0)
    }

    /// Tasks currently in `status`.
    pub fn tasks(&self, status: TaskStatus) -> u64 {
        match status {
            TaskStatus::Received => self.tasks_received,
            TaskStatus::Executing => self.tasks_executing,
            TaskStatus::Completed => self.tasks_completed,
            TaskStatus::Failed => self.tasks_failed,
        }
    }

    fn count(&mut self, tally: Tally) {
        self.lines += 1;
        let Some(kind) = tally.kind else { return };
        self.entries += 1;
        self.raw_entries += u64::from(kind == Kind::Raw);
        if let Some(n) = Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.by_kind.get_mut(i))
        {
            *n += 1;
        }
        match tally.effect {
            Effect::None => {}
            Effect::Received => {
                self.tasks_created += 1;
                self.tasks_received += 1;
                self.tasks_unfinished += 1;
            }
            Effect::Started => {
                self.tasks_received = self.tasks_received.saturating_sub(1);
                self.tasks_executing += 1;
            }
            Effect::Finished { ok } => {
                self.tasks_executing = self.tasks_executing.saturating_sub(1);
                self.tasks_unfinished = self.tasks_unfinished.saturating_sub(1);
                self.metrics_attributed += 1;
                if ok {
                    self.tasks_completed += 1;
                } else {
                    self.tasks_failed += 1;
                }
            }
            Effect::Invoice { penalty } => {
                self.invoices += 1;
                self.penalties += u64::from(penalty);
            }
        }
    }
}

/// What a queued line counts as.
#[derive(Clone, Copy, Debug)]
struct Tally {
    /// `None` for a continuation line.
    kind: Option<Kind>,
    effect: Effect,
}

#[derive(Clone, Copy, Debug)]
enum Effect {
    None,
    Received,
    Started,
    Finished { ok: bool },
    Invoice { penalty: bool },
}

#[derive(Debug)]
struct SimTask {
    execution_id: String,
    task_id: String,
    requester: String,
    created_secs: i64,
    /// When its execution started (the node's clock), for a consistent `elapsed`.
    started_secs: i64,
    set_nodes: Vec<String>,
    stage: Stage,
    due: i64,
    exit_code: i64,
    steps: u64,
    peak_memory: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Download,
    Start,
    Finish,
    Outcome,
}

#[derive(Debug)]
struct DueInvoice {
    due: i64,
    task: SimTask,
}

/// The simulated node. See the module documentation.
#[derive(Debug)]
pub struct LogGenerator {
    rng: StdRng,
    now: i64,
    /// Nanoseconds into the current second of the last Docker receive time.
    sub_ns: i64,
    wallet: String,
    logger: String,
    version: &'static str,
    colour: bool,
    banner: bool,
    queue: VecDeque<(GeneratedLine, Tally)>,
    started: bool,
    active: Vec<SimTask>,
    invoices: Vec<DueInvoice>,
    next_arrival: i64,
    next_chatter: i64,
    task_limit: Option<u64>,
    /// Short inputs and progress lines (see `with_short_entries`).
    short: bool,
    created: u64,
    invoice_seq: i64,
    block_number: u64,
    expected: Expected,
}

impl LogGenerator {
    pub fn new(seed: u64, start_unix_secs: i64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let wallet = address(&mut rng);
        let logger = if rng.gen_bool(0.5) {
            format!("@truebit/worker-runner-node-{wallet}")
        } else {
            "@truebit/worker-runner-node".to_owned()
        };
        let version = ["2.4.0", "2.4.1", "2.5.0-beta.3"][rng.gen_range(0..3)];
        let block_number = rng.gen_range(70_000_000..71_000_000);
        LogGenerator {
            rng,
            now: start_unix_secs,
            sub_ns: 0,
            wallet,
            logger,
            version,
            colour: true,
            banner: true,
            queue: VecDeque::new(),
            started: false,
            active: Vec::new(),
            invoices: Vec::new(),
            next_arrival: start_unix_secs + 2,
            next_chatter: start_unix_secs + 1,
            task_limit: None,
            short: false,
            created: 0,
            invoice_seq: 1_000,
            block_number,
            expected: Expected {
                version: version.to_owned(),
                ..Expected::default()
            },
        }
    }

    /// Whether levels are wrapped in ANSI colour codes (default: yes).
    pub fn with_colour(mut self, colour: bool) -> Self {
        self.colour = colour;
        self
    }

    /// Whether the log starts with npm's two banner lines (raw lines before the first
    /// entry; default: yes).
    pub fn with_banner(mut self, banner: bool) -> Self {
        self.banner = banner;
        self
    }

    /// Node-like sizes (default: no): task inputs of 64–512 bytes instead of 200 bytes to
    /// 40 KiB, and 1–3 short progress lines (plain `log` entries) at every step of a task,
    /// as a running node prints them. Counts in [`Expected`] stay exact.
    pub fn with_short_entries(mut self, short: bool) -> Self {
        self.short = short;
        self
    }

    /// Stops creating tasks after `tasks` of them (the log then only has chatter).
    pub fn with_task_limit(mut self, tasks: u64) -> Self {
        self.task_limit = Some(tasks);
        self
    }

    /// The operator wallet the node registers with.
    pub fn wallet(&self) -> &str {
        &self.wallet
    }

    /// Counts for the lines handed out so far.
    pub fn expected(&self) -> Expected {
        self.expected.clone()
    }

    /// True once the task limit is reached and every task is invoiced and printed.
    pub fn is_done(&self) -> bool {
        self.task_limit.is_some_and(|limit| self.created >= limit)
            && self.active.is_empty()
            && self.invoices.is_empty()
            && self.queue.is_empty()
    }

    /// The next console line (the generator never runs out).
    pub fn next_line(&mut self) -> GeneratedLine {
        loop {
            if let Some((line, tally)) = self.queue.pop_front() {
                self.expected.count(tally);
                return line;
            }
            self.step();
        }
    }

    /// Writes `n_lines` lines with Docker timestamps, each ending with `\n`.
    pub fn write_docker_log<W: io::Write>(&mut self, w: &mut W, n_lines: usize) -> io::Result<()> {
        for _ in 0..n_lines {
            let line = self.next_line();
            writeln!(w, "{}", line.docker_text())?;
        }
        Ok(())
    }

    /// Lines until the task limit is reached and everything is printed.
    fn finite(mut self, docker_timestamps: bool) -> (String, Expected) {
        let mut text = String::new();
        while !self.is_done() {
            let line = self.next_line();
            if docker_timestamps {
                text.push_str(&line.docker_text());
            } else {
                text.push_str(&line.text);
            }
            text.push('\n');
        }
        (text, self.expected())
    }

    // ---- simulation ----------------------------------------------------------------

    /// Advances to the next event and queues its lines.
    fn step(&mut self) {
        if !self.started {
            self.started = true;
            self.startup();
            return;
        }
        let can_create = self.task_limit.is_none_or(|limit| self.created < limit);
        let arrival = (can_create && self.active.len() < SLOTS).then_some(self.next_arrival);
        let task = self
            .active
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.due)
            .map(|(i, t)| (i, t.due));
        let invoice = self
            .invoices
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.due)
            .map(|(i, t)| (i, t.due));
        let mut best = self.next_chatter;
        for due in [arrival, task.map(|t| t.1), invoice.map(|t| t.1)]
            .into_iter()
            .flatten()
        {
            best = best.min(due);
        }
        self.advance_to(best);
        if let Some((i, _)) = task.filter(|t| t.1 == best) {
            self.task_step(i);
        } else if let Some((i, _)) = invoice.filter(|t| t.1 == best) {
            let due = self.invoices.swap_remove(i);
            self.invoice(due.task);
        } else if arrival == Some(best) {
            self.arrival();
        } else {
            self.chatter();
        }
    }

    fn advance_to(&mut self, secs: i64) {
        if secs > self.now {
            self.now = secs;
            self.sub_ns = self.rng.gen_range(1_000_000..200_000_000);
        }
    }

    fn startup(&mut self) {
        if self.banner {
            let banner = format!("> @truebit/worker-runner-node@{} start", self.version);
            self.raw(banner);
            self.raw("> node dist/index.js".to_owned());
        }
        self.log(
            "info",
            format!("Starting worker-runner-node {}", self.version),
            Effect::None,
        );
        self.log(
            "info",
            "Connecting to message broker amqp://rabbitmq:5672".to_owned(),
            Effect::None,
        );
        self.log(
            "info",
            "Connected to message broker".to_owned(),
            Effect::None,
        );
        let line = format!("Node with address {} registered successfully", self.wallet);
        self.entry("info", Kind::NodeRegistered, line, Effect::None);
        self.log(
            "info",
            format!("Semaphore TaskSubscriber initialised with {SLOTS} slots"),
            Effect::None,
        );
    }

    fn arrival(&mut self) {
        self.created += 1;
        self.block_number += self.rng.gen_range(1..20);
        let n_nodes = self.rng.gen_range(4..=8);
        let mut set_nodes: Vec<String> = (0..n_nodes - 1).map(|_| address(&mut self.rng)).collect();
        let at = self.rng.gen_range(0..n_nodes);
        set_nodes.insert(at, self.wallet.clone());
        let task = SimTask {
            execution_id: uuid_v4(&mut self.rng),
            task_id: format!("rs_{}", hex(&mut self.rng, 32)),
            requester: address(&mut self.rng),
            created_secs: self.now,
            started_secs: self.now,
            set_nodes,
            stage: Stage::Download,
            due: self.now + self.rng.gen_range(0..=1),
            exit_code: 0,
            steps: 0,
            peak_memory: 0,
        };
        let json = self.task_created_json(&task);
        self.entry(
            "info",
            Kind::TaskReceived,
            format!("Message received from task_created: {json}"),
            Effect::Received,
        );
        let slot = self.active.len() + 1;
        let line =
            format!("Semaphore TaskSubscriber processing started. Using slot {slot}/{SLOTS}");
        self.entry("info", Kind::SlotTaken, line, Effect::None);
        self.active.push(task);
        let gap: f64 = self.rng.gen_range(0.0f64..1.0);
        // Bursty arrivals: mostly a few seconds apart, sometimes a minute.
        self.next_arrival = self.now + (-(1.0 - gap).ln() * 8.0) as i64;
    }

    fn task_step(&mut self, i: usize) {
        let Some(stage) = self.active.get(i).map(|t| t.stage) else {
            return;
        };
        match stage {
            Stage::Download => {
                self.progress(i, Stage::Download);
                let line = self
                    .active
                    .get(i)
                    .map(|t| format!("Task {} downloaded successfully", t.task_id));
                self.entry(
                    "info",
                    Kind::TaskDownloaded,
                    line.unwrap_or_default(),
                    Effect::None,
                );
                self.set_stage(i, Stage::Start, 0..=1);
            }
            Stage::Start => {
                self.progress(i, Stage::Start);
                let id = self.execution_id(i);
                self.entry(
                    "info",
                    Kind::ExecutionStarted,
                    format!("Starting task execution executionId: {id}"),
                    Effect::Started,
                );
                let run_secs = (self.rng.gen_range(0.0f64..1.0).powi(3) * 25.0) as i64 + 1;
                let now = self.now;
                if let Some(t) = self.active.get_mut(i) {
                    t.started_secs = now;
                }
                self.set_stage(i, Stage::Finish, run_secs..=run_secs);
            }
            Stage::Finish => self.finish(i),
            Stage::Outcome => {
                self.progress(i, Stage::Outcome);
                self.entry(
                    "info",
                    Kind::OutcomePublished,
                    "Message published to compute_outcome".to_owned(),
                    Effect::None,
                );
                let task = self.active.swap_remove(i);
                let line = format!(
                    "Semaphore TaskSubscriber processing completed. Released slot ({}/{SLOTS} now active)",
                    self.active.len()
                );
                self.entry("info", Kind::SlotReleased, line, Effect::None);
                let due = self.now + self.rng.gen_range(3..=40);
                self.invoices.push(DueInvoice { due, task });
            }
        }
    }

    /// The execution id of active task `i` (empty if there is none).
    fn execution_id(&self, i: usize) -> String {
        self.active
            .get(i)
            .map(|t| t.execution_id.clone())
            .unwrap_or_default()
    }

    /// With `with_short_entries`: one to three short progress lines about task `i`.
    fn progress(&mut self, i: usize, stage: Stage) {
        if !self.short {
            return;
        }
        let Some(t) = self.active.get(i) else {
            return;
        };
        let (task_id, execution_id) = (t.task_id.clone(), t.execution_id.clone());
        let short_id = execution_id.get(..8).unwrap_or_default().to_owned();
        let n = self.rng.gen_range(1..=3);
        for k in 0..n {
            let (level, message) = match (stage, k) {
                (Stage::Download, 0) => ("debug", format!("Validating task {task_id}")),
                (Stage::Download, 1) => ("debug", format!("Task signature verified ({short_id})")),
                (Stage::Download, _) => ("info", format!("Downloading task {task_id}")),
                (Stage::Start, 0) => ("info", format!("Preparing execution {execution_id}")),
                (Stage::Start, 1) => (
                    "debug",
                    format!("Wasm module loaded in {}ms", self.rng.gen_range(1..400)),
                ),
                (Stage::Start, _) => ("debug", format!("Workers selected for {short_id}: 4")),
                (Stage::Finish, 0) => ("debug", format!("Collecting output of {short_id}")),
                (Stage::Finish, 1) => ("debug", "Sandbox released".to_owned()),
                (Stage::Finish, _) => ("info", format!("Solution hash computed for {short_id}")),
                (Stage::Outcome, 0) => ("info", format!("Publishing outcome of {short_id}")),
                (Stage::Outcome, 1) => ("debug", "Outcome signed".to_owned()),
                (Stage::Outcome, _) => (
                    "debug",
                    format!("Broker acknowledged in {}ms", self.rng.gen_range(1..50)),
                ),
            };
            self.log(level, message, Effect::None);
        }
    }

    fn set_stage(&mut self, i: usize, stage: Stage, delay: std::ops::RangeInclusive<i64>) {
        let due = self.now + self.rng.gen_range(delay);
        if let Some(t) = self.active.get_mut(i) {
            t.stage = stage;
            t.due = due;
        }
    }

    fn finish(&mut self, i: usize) {
        self.progress(i, Stage::Finish);
        let ok = self.rng.gen_bool(0.9);
        let exit_code = if ok {
            0
        } else {
            [1, 2, 101, 134, 137][self.rng.gen_range(0..5)]
        };
        let steps = self.rng.gen_range(100_000..5_000_000_000u64);
        let peak_memory = self.rng.gen_range(1..=1024u64);
        if !ok {
            // What the program printed, by exit code (no draw: the rest of the log is
            // the same as before stderr had several reasons).
            let (first, more) = stderr_of(exit_code);
            self.entry(
                "debug",
                Kind::ExecutionStderr,
                format!("Command execution stderr: {first}"),
                Effect::None,
            );
            for line in more {
                self.continuation((*line).to_owned());
            }
        }
        // The run took what the start and completion lines say, less a fraction of the
        // last second (the node's clock prints whole seconds).
        let run_ns = self
            .active
            .get(i)
            .map_or(1, |t| (self.now - t.started_secs).max(1))
            .saturating_mul(1_000_000_000);
        let elapsed_ns = run_ns
            .saturating_sub(self.rng.gen_range(0..900_000_000))
            .max(1_000_000);
        let metrics = self.metrics_json(exit_code, steps, peak_memory, elapsed_ns);
        if self.rng.gen_bool(0.3) {
            let pretty = pretty_json(&metrics);
            let mut lines = pretty.lines();
            let first = lines.next().unwrap_or_default();
            self.entry(
                "debug",
                Kind::ExecutionMetrics,
                format!("Command execution stdout: {first}"),
                Effect::None,
            );
            for l in lines {
                self.continuation(l.to_owned());
            }
        } else {
            self.entry(
                "debug",
                Kind::ExecutionMetrics,
                format!("Command execution stdout: {metrics}"),
                Effect::None,
            );
        }
        let id = self.execution_id(i);
        self.entry(
            "info",
            Kind::ExecutionCompleted,
            format!("Execution {id} completed"),
            Effect::Finished { ok },
        );
        if let Some(t) = self.active.get_mut(i) {
            t.exit_code = exit_code;
            t.steps = steps;
            t.peak_memory = peak_memory;
        }
        self.set_stage(i, Stage::Outcome, 0..=1);
    }

    fn invoice(&mut self, task: SimTask) {
        self.log(
            "info",
            format!("Semaphore InvoiceSubscriber processing started. Using slot 1/{SLOTS}"),
            Effect::None,
        );
        let penalty = self.rng.gen_bool(0.05);
        self.invoice_seq += 1;
        let item = |operation: &str, account: &str| {
            Obj::new()
                .str("operation", operation)
                .str("account", account)
                .str("total_steps_computed", &task.steps.to_string())
                .str("peak_memory_used", &task.peak_memory.to_string())
                .done()
        };
        let mut items = vec![item("charge", &task.requester), item("pay", &self.wallet)];
        if penalty {
            let other = task
                .set_nodes
                .iter()
                .find(|a| **a != self.wallet)
                .cloned()
                .unwrap_or_default();
            items.push(item("penalty", &other));
        }
        let json = Obj::new()
            .num("invoiceId", self.invoice_seq)
            .str("executionId", &task.execution_id)
            .str("taskId", &task.task_id)
            .num("taskCreated_timeStamp", task.created_secs)
            .str("stepGasPrice", "1")
            .str("byteGasPrice", "1")
            .raw("lineItem", &format!("[{}]", items.join(",")))
            .raw("accounting_signature", &self.signature())
            .done();
        self.entry(
            "info",
            Kind::Invoice,
            format!("InvoiceSubscriber invoice received: {json}"),
            Effect::Invoice { penalty },
        );
        self.log(
            "info",
            format!("InvoiceSubscriber invoice {} stored", self.invoice_seq),
            Effect::None,
        );
        self.log(
            "info",
            format!("Semaphore InvoiceSubscriber processing completed. Released slot (0/{SLOTS} now active)"),
            Effect::None,
        );
    }

    fn chatter(&mut self) {
        let roll = self.rng.gen_range(0..100);
        if roll < 55 {
            let msg = match self.rng.gen_range(0..4) {
                0 => "Heartbeat sent".to_owned(),
                1 => format!(
                    "Polling for new tasks on chain 43113 at block {}",
                    self.block_number
                ),
                2 => format!("Active slots: {}/{SLOTS}", self.active.len()),
                _ => "Message broker connection healthy".to_owned(),
            };
            self.log("info", msg, Effect::None);
        } else if roll < 80 {
            let ms = self.rng.gen_range(50..900);
            self.log(
                "debug",
                format!("RPC eth_blockNumber answered in {ms}ms"),
                Effect::None,
            );
        } else if roll < 96 {
            let ms = self.rng.gen_range(2_000..9_000);
            self.log(
                "warn",
                format!("RPC request took {ms}ms, above the 2000ms threshold"),
                Effect::None,
            );
        } else {
            self.log(
                "error",
                "Error: connect ECONNREFUSED 10.0.0.5:8545".to_owned(),
                Effect::None,
            );
            for frame in [
                "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1607:16)",
                "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
                "    at async JsonRpcProvider.send (/app/node_modules/ethers/lib/providers/json-rpc-provider.js:612:20)",
            ] {
                self.continuation(frame.to_owned());
            }
        }
        self.next_chatter = self.now + self.rng.gen_range(1..=6);
    }

    // ---- payloads ------------------------------------------------------------------

    fn task_created_json(&mut self, t: &SimTask) -> String {
        // `created` already counts this task: the 4th, 29th, 54th, ... are large.
        let input_len = if self.short {
            self.rng.gen_range(64..=512)
        } else if self.created % 25 == 4 {
            self.rng.gen_range(16_500..40_000)
        } else {
            self.rng.gen_range(200..4_000)
        };
        let data: String = (&mut self.rng)
            .sample_iter(Alphanumeric)
            .take(input_len)
            .map(char::from)
            .collect();
        let arg = self.rng.gen_range(1..1000).to_string();
        let input = Obj::new()
            .str("function", "main")
            .raw("args", &format!("[{},\"--verbose\"]", json_str(&arg)))
            .str("data", &data)
            .done();
        let millis = self.rng.gen_range(0..1000);
        let timestamp = format!(
            "{}.{millis:03}Z",
            truebit_clock::rfc3339_ns(self.now * 1_000_000_000)
                .get(..19)
                .unwrap_or_default()
        );
        let set_nodes: Vec<String> = t.set_nodes.iter().map(|a| json_str(a)).collect();
        let message = Obj::new()
            .str("type", "dispatch_task")
            .str("taskId", &t.task_id)
            .str("executionId", &t.execution_id)
            .str("msgHash", &hex(&mut self.rng, 32))
            .raw("signature", &self.signature())
            .raw(
                "limits",
                &Obj::new()
                    .str("gas", "1099511627776")
                    .str("call", "65536")
                    .str("frame", "524288")
                    .str("memory", "1024")
                    .done(),
            )
            .raw(
                "econParams",
                &Obj::new()
                    .str("reward", "0")
                    .num("requiredSolutions", 4)
                    .num("totalSolutions", 4)
                    .num("executionTimeout", 30000)
                    .done(),
            )
            .raw(
                "workers",
                &Obj::new()
                    .num("blockNumber", self.block_number)
                    .str("selectionStrategy", "default")
                    .raw("setNodes", &format!("[{}]", set_nodes.join(",")))
                    .done(),
            )
            .str("chainId", "43113")
            .num("blockNumber", self.block_number)
            .str("blockHash", &format!("0x{}", hex(&mut self.rng, 32)))
            .str("taskRequesterAddress", &t.requester)
            .str("input", &input)
            .done();
        Obj::new()
            .str("type", "task_created")
            .str("executionId", &t.execution_id)
            .str("timestamp", &timestamp)
            .raw("message", &message)
            .done()
    }

    fn metrics_json(
        &mut self,
        exit_code: i64,
        steps: u64,
        peak_memory: u64,
        elapsed_ns: i64,
    ) -> String {
        let limits = Obj::new()
            .num("gas", 60_000_000_000u64)
            .num("memory", 1024)
            .num("call", 65536)
            .num("frame", 524_288)
            .done();
        let peak = Obj::new()
            .num("memory", peak_memory)
            .num("call", self.rng.gen_range(10..5000))
            .num("frame", self.rng.gen_range(100..100_000))
            .done();
        let wasm = Obj::new()
            .num("size", self.rng.gen_range(10_000..5_000_000))
            .str("hash", &hex(&mut self.rng, 32))
            .done();
        let prepare = Obj::new()
            .raw(
                "cached",
                if self.rng.gen_bool(0.7) {
                    "true"
                } else {
                    "false"
                },
            )
            .done();
        Obj::new()
            .str("elapsed", &elapsed_ns.to_string())
            .raw("wasi", &Obj::new().num("exitCode", exit_code).done())
            .raw(
                "metering",
                &Obj::new()
                    .raw("limits", &limits)
                    .raw("peak", &peak)
                    .raw("last", &Obj::new().num("steps", steps).done())
                    .done(),
            )
            .raw(
                "execution",
                &Obj::new()
                    .raw("wasm", &wasm)
                    .raw("prepare", &prepare)
                    .done(),
            )
            .done()
    }

    fn signature(&mut self) -> String {
        Obj::new()
            .num("v", self.rng.gen_range(27..=28))
            .str("r", &format!("0x{}", hex(&mut self.rng, 32)))
            .str("s", &format!("0x{}", hex(&mut self.rng, 32)))
            .done()
    }

    // ---- line output ---------------------------------------------------------------

    fn log(&mut self, level: &str, message: String, effect: Effect) {
        self.entry(level, Kind::Log, message, effect);
    }

    fn entry(&mut self, level: &str, kind: Kind, message: String, effect: Effect) {
        let level = if self.colour {
            let code = match level {
                "error" => 31,
                "warn" => 33,
                "debug" => 34,
                _ => 32,
            };
            format!("\x1b[{code}m{level}\x1b[39m")
        } else {
            level.to_owned()
        };
        let date = truebit_clock::rfc3339_ns(self.now * 1_000_000_000);
        let (day, time) = (
            date.get(..10).unwrap_or_default(),
            date.get(11..19).unwrap_or_default(),
        );
        let text = format!(
            "{day} {time} {level}: {}:{} {message}",
            self.logger, self.version
        );
        self.push(
            text,
            Tally {
                kind: Some(kind),
                effect,
            },
        );
    }

    fn continuation(&mut self, text: String) {
        self.push(
            text,
            Tally {
                kind: None,
                effect: Effect::None,
            },
        );
    }

    fn raw(&mut self, text: String) {
        self.push(
            text,
            Tally {
                kind: Some(Kind::Raw),
                effect: Effect::None,
            },
        );
    }

    fn push(&mut self, text: String, tally: Tally) {
        self.sub_ns = (self.sub_ns + self.rng.gen_range(20_000..2_000_000)).min(999_999_999);
        let line = GeneratedLine {
            node_time_secs: self.now,
            received_ns: self.now * 1_000_000_000 + self.sub_ns,
            text,
        };
        self.queue.push_back((line, tally));
    }
}

/// A finite log as the node prints it (coloured, no Docker timestamps, no npm banner):
/// `tasks` tasks, all finished and invoiced, and the counts a parser must find in it.
/// Fixtures can be concatenated: each one starts with a header line.
pub fn fixture(seed: u64, tasks: usize) -> (String, Expected) {
    let tasks = u64::try_from(tasks).unwrap_or(u64::MAX);
    LogGenerator::new(seed, FIXTURE_START_SECS)
        .with_banner(false)
        .with_task_limit(tasks)
        .finite(false)
}

/// Like [`fixture`], as `docker logs --timestamps` prints it, npm banner included.
pub fn docker_fixture(seed: u64, tasks: usize) -> (String, Expected) {
    let tasks = u64::try_from(tasks).unwrap_or(u64::MAX);
    LogGenerator::new(seed, FIXTURE_START_SECS)
        .with_task_limit(tasks)
        .finite(true)
}

/// A JSON object written in insertion order, as the node's JavaScript prints it.
struct Obj(String);

impl Obj {
    fn new() -> Self {
        Obj(String::from("{"))
    }

    /// A field whose value is already JSON text.
    fn raw(mut self, key: &str, json: &str) -> Self {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&json_str(key));
        self.0.push(':');
        self.0.push_str(json);
        self
    }

    fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, &json_str(value))
    }

    fn num(self, key: &str, value: impl std::fmt::Display) -> Self {
        self.raw(key, &value.to_string())
    }

    fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The stderr of a failing execution with this exit code: its first line (after
/// `Command execution stderr: `) and the continuation lines. The failure reason the
/// monitor shows is the first line.
pub fn stderr_of(exit_code: i64) -> (&'static str, &'static [&'static str]) {
    match exit_code {
        1 => (
            "Error: invalid task input: field `args` must be an array of numbers",
            &["    at parseInput (task.js:12:11)"],
        ),
        2 => ("usage: task.wasm <input.json>: missing input file", &[]),
        134 => (
            "memory allocation of 268435456 bytes failed",
            &["Aborted (core dumped)"],
        ),
        137 => ("wasm trap: out of gas: metered step limit reached", &[]),
        _ => (
            "thread 'main' panicked at src/main.rs:42:17:",
            &[
                "called `Result::unwrap()` on an `Err` value: InvalidInput",
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            ],
        ),
    }
}

/// Re-indents compact JSON like `JSON.stringify(value, null, 2)` (no empty containers).
fn pretty_json(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    for c in compact.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

fn hex(rng: &mut StdRng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(s, "{:02x}", rng.gen::<u8>());
    }
    s
}

fn address(rng: &mut StdRng) -> String {
    format!("0x{}", hex(rng, 20))
}

fn uuid_v4(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_log() {
        assert_eq!(fixture(7, 5), fixture(7, 5));
        assert_ne!(fixture(7, 5).0, fixture(8, 5).0);
    }

    #[test]
    fn fixture_finishes_every_task() {
        let (text, e) = fixture(1, 20);
        assert_eq!(e.tasks_created, 20);
        assert_eq!(e.tasks_completed + e.tasks_failed, 20);
        assert_eq!(
            (e.tasks_received, e.tasks_executing, e.tasks_unfinished),
            (0, 0, 0)
        );
        assert_eq!(e.invoices, 20);
        assert_eq!(e.kind(Kind::ExecutionCompleted), 20);
        assert_eq!(e.kind(Kind::NodeRegistered), 1);
        assert_eq!((e.kind(Kind::Raw), e.raw_entries), (0, 0));
        assert_eq!(e.lines, text.lines().count() as u64);
        assert!(text.starts_with("2025-11-24 13:55:34 "), "{}", &text[..40]);
        assert!(text.contains(&format!(":{} ", e.version)));
    }

    #[test]
    fn docker_fixture_starts_with_the_npm_banner() {
        let (text, e) = docker_fixture(1, 3);
        assert!(text.starts_with("2025-11-24T13:55:34."), "{}", &text[..40]);
        assert!(text.lines().next().is_some_and(|l| l.ends_with(" start")));
        assert_eq!(e.raw_entries, 2);
    }

    #[test]
    fn every_fixture_with_four_tasks_has_a_payload_over_16_kib() {
        for seed in 0..5 {
            let (text, _) = fixture(seed, 4);
            assert_eq!(
                text.lines().filter(|l| l.len() > 16 * 1024).count(),
                1,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn docker_text_has_an_rfc3339_nanosecond_prefix() {
        let line = GeneratedLine {
            node_time_secs: 0,
            received_ns: FIXTURE_START_SECS * 1_000_000_000 + 42,
            text: "x".into(),
        };
        assert_eq!(line.docker_text(), "2025-11-24T13:55:34.000000042Z x");
    }

    #[test]
    fn pretty_json_indents_like_javascript() {
        assert_eq!(
            pretty_json(r#"{"a":"x,{\\\"","b":{"c":[1,2]}}"#),
            "{\n  \"a\": \"x,{\\\\\\\"\",\n  \"b\": {\n    \"c\": [\n      1,\n      2\n    ]\n  }\n}"
        );
    }

    #[test]
    fn payloads_are_valid_json_in_node_key_order() {
        let mut g = LogGenerator::new(5, FIXTURE_START_SECS);
        let task = r#""type":"task_created","executionId""#;
        let (mut tasks, mut invoices) = (0, 0);
        for _ in 0..2_000 {
            let line = g.next_line().text;
            for (marker, count) in [
                ("task_created: ", &mut tasks),
                ("invoice received: ", &mut invoices),
            ] {
                if let Some(at) = line.find(marker) {
                    let json = &line[at + marker.len()..];
                    assert!(
                        serde_json::from_str::<serde_json::Value>(json).is_ok(),
                        "{json}"
                    );
                    *count += 1;
                }
            }
            if line.contains("task_created: ") {
                assert!(line.contains(task), "{line}");
            }
        }
        assert!(tasks > 10 && invoices > 10, "{tasks} {invoices}");
    }

    #[test]
    fn never_more_than_four_slots_are_taken() {
        let mut g = LogGenerator::new(3, FIXTURE_START_SECS).with_colour(false);
        for _ in 0..5_000 {
            let line = g.next_line();
            if let Some(at) = line.text.find("Using slot ") {
                let slot: u32 = line.text[at + 11..]
                    .split('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(99);
                assert!((1..=4).contains(&slot), "{}", line.text);
            }
        }
    }
}
