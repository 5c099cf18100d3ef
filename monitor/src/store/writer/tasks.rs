//! Task events of one transaction, merged per task and written one statement per task.

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{params, Transaction};

use super::figures::{NewTask, TaskFigures};
use super::node::NodeState;
use crate::model::{Entry, Event, Metrics, Stderr, TaskCreated, TaskStatus};

/// Unix ms of an event: the node's clock, else the entry time.
pub(super) fn event_ms(entry: &Entry, time_ns: i64) -> i64 {
    entry
        .node_time
        .map_or(time_ns / 1_000_000, |s| s.saturating_mul(1_000))
}

/// SQLite integers are signed; a figure beyond `i64::MAX` is stored as unknown.
pub(super) fn int(value: Option<u64>) -> Option<i64> {
    value.and_then(|v| i64::try_from(v).ok())
}

pub(super) fn apply_event<'a>(
    node: &mut NodeState,
    tasks: &mut TaskDeltas<'a>,
    newer: bool,
    entry: &'a Entry,
    event: &'a Event,
    at: EventTime,
) {
    match event {
        Event::NodeRegistered { address } => {
            if newer || node.address.is_none() {
                node.address = Some(address.clone());
                node.registered_ms = Some(at.ms);
                node.registered_ns = at.ns;
            }
        }
        Event::SlotTaken { slot, total } => {
            if newer || node.slots_used.is_none() {
                node.slots_used = Some(i64::from(*slot));
                node.slots_total = Some(i64::from(*total));
            }
        }
        Event::SlotReleased { active, total } => {
            if newer || node.slots_used.is_none() {
                node.slots_used = Some(i64::from(*active));
                node.slots_total = Some(i64::from(*total));
            }
        }
        Event::TaskReceived(created) => {
            let execution_id = match (created.execution_id.as_str(), entry.execution_id.as_deref())
            {
                ("", Some(id)) => id,
                ("", None) => return,
                (id, _) => id,
            };
            tasks.received(execution_id, created, at);
        }
        Event::TaskDownloaded { task_id } => tasks.downloaded(task_id, at.ms),
        Event::ExecutionStarted { execution_id } => tasks.started(execution_id, at),
        Event::ExecutionCompleted {
            execution_id,
            metrics,
            stderr,
        } => {
            tasks.completed(execution_id, metrics.as_deref(), stderr.as_deref(), at);
        }
        Event::Invoice(_)
        | Event::ExecutionMetrics(_)
        | Event::ExecutionStderr { .. }
        | Event::OutcomePublished => {}
    }
}

/// When an event happened: the node's clock in ms (else the entry time), Docker's in ns.
#[derive(Clone, Copy, Debug)]
pub(super) struct EventTime {
    pub(super) ms: i64,
    pub(super) ns: Option<i64>,
}

/// Life-cycle rank: a task only moves up, and a final one never changes.
const RECEIVED: u8 = 0;
const EXECUTING: u8 = 1;
const FINAL: u8 = 2;

/// What one transaction's events did to one task. Applied to its row in one statement at
/// the end of the transaction (a task's lines usually all fall into one transaction
/// during an import): the statement merges with the stored row by the same rules the
/// events follow one by one, so the outcome does not depend on where transactions cut.
struct TaskDelta<'a> {
    execution_id: &'a str,
    rank: u8,
    /// Every task_created seen, in order: the first figure present wins.
    created: Vec<&'a TaskCreated>,
    received: Option<EventTime>,
    downloaded_ms: Option<i64>,
    started: Option<EventTime>,
    completion: Option<Completion<'a>>,
}

#[derive(Clone)]
struct Completion<'a> {
    status: TaskStatus,
    at: EventTime,
    metrics: Option<&'a Metrics>,
    /// The failure reason: the first line of the attributed stderr, for a failed task
    /// only (a task that succeeded has none, even if its run printed on stderr).
    error: Option<String>,
}

impl<'a> TaskDelta<'a> {
    fn status(&self) -> TaskStatus {
        match (&self.completion, self.rank) {
            (Some(completion), _) => completion.status,
            (None, RECEIVED) => TaskStatus::Received,
            (None, _) => TaskStatus::Executing,
        }
    }

    fn created<T>(&self, figure: impl Fn(&'a TaskCreated) -> Option<T>) -> Option<T> {
        self.created.iter().find_map(|c| figure(c))
    }

    fn metric<T>(&self, figure: impl Fn(&'a Metrics) -> Option<T>) -> Option<T> {
        self.completion
            .as_ref()
            .and_then(|c| c.metrics)
            .and_then(figure)
    }
}

/// The task changes of one transaction, in the order tasks were first seen.
#[derive(Default)]
pub(super) struct TaskDeltas<'a> {
    deltas: Vec<TaskDelta<'a>>,
    by_execution: HashMap<&'a str, usize>,
    by_task_id: HashMap<&'a str, Vec<usize>>,
    /// `TaskDownloaded` lines, applied to the tasks stored before this transaction.
    downloads: Vec<(&'a str, i64)>,
}

impl<'a> TaskDeltas<'a> {
    fn delta(&mut self, execution_id: &'a str) -> (usize, &mut TaskDelta<'a>) {
        let index = *self.by_execution.entry(execution_id).or_insert_with(|| {
            self.deltas.push(TaskDelta {
                execution_id,
                rank: RECEIVED,
                created: Vec::new(),
                received: None,
                downloaded_ms: None,
                started: None,
                completion: None,
            });
            self.deltas.len() - 1
        });
        (index, &mut self.deltas[index])
    }

    fn received(&mut self, execution_id: &'a str, created: &'a TaskCreated, at: EventTime) {
        let (index, delta) = self.delta(execution_id);
        delta.created.push(created);
        delta.received = delta.received.or(Some(at));
        if let Some(task_id) = created.task_id.as_deref() {
            let tasks = self.by_task_id.entry(task_id).or_default();
            if !tasks.contains(&index) {
                tasks.push(index);
            }
        }
    }

    fn downloaded(&mut self, task_id: &'a str, ms: i64) {
        self.downloads.push((task_id, ms));
        for &index in self.by_task_id.get(task_id).into_iter().flatten() {
            let delta = &mut self.deltas[index];
            if delta.rank < FINAL {
                delta.rank = EXECUTING;
                delta.downloaded_ms = delta.downloaded_ms.or(Some(ms));
            }
        }
    }

    fn started(&mut self, execution_id: &'a str, at: EventTime) {
        let (_, delta) = self.delta(execution_id);
        if delta.rank < FINAL {
            delta.rank = EXECUTING;
            delta.started = delta.started.or(Some(at));
        }
    }

    fn completed(
        &mut self,
        execution_id: &'a str,
        metrics: Option<&'a Metrics>,
        stderr: Option<&'a Stderr>,
        at: EventTime,
    ) {
        let (_, delta) = self.delta(execution_id);
        if delta.rank < FINAL {
            delta.rank = FINAL;
            let status = match metrics.and_then(|m| m.exit_code) {
                Some(code) if code != 0 => TaskStatus::Failed,
                _ => TaskStatus::Completed,
            };
            let error = stderr
                .filter(|_| status == TaskStatus::Failed)
                .and_then(Stderr::reason);
            delta.completion = Some(Completion {
                status,
                at,
                metrics,
                error,
            });
        }
    }

    /// Writes the changes: downloads of tasks stored earlier first (they happened before
    /// anything this transaction adds), then one insert or merge per task.
    /// The figures of the rows it inserts go to `figures` (those of updated rows are moved
    /// by the update trigger).
    pub(super) fn flush(
        &self,
        tx: &Transaction<'_>,
        figures: &mut TaskFigures,
    ) -> rusqlite::Result<HashMap<&'a str, i64>> {
        if !self.downloads.is_empty() {
            // Usually no stored task is waiting for the download (its task_created is in
            // this transaction): a probe of the open tasks' index (schema version 15)
            // instead of an update, which sets up a temporary table for its row ids.
            let mut open = tx.prepare_cached(
                "SELECT 1 FROM tasks WHERE task_id = ?1 AND status IN ('received', 'executing')",
            )?;
            let mut download = tx.prepare_cached(
                "UPDATE tasks SET status = CASE status WHEN 'received' THEN 'executing' ELSE status END,
                   downloaded_ms = COALESCE(downloaded_ms, ?2)
                 WHERE task_id = ?1 AND status IN ('received', 'executing')",
            )?;
            for (task_id, ms) in &self.downloads {
                if open.exists([task_id])? {
                    download.execute((task_id, ms))?;
                }
            }
        }
        let mut ids = HashMap::with_capacity(self.deltas.len());
        if self.deltas.is_empty() {
            return Ok(ids);
        }
        // A stored task is merged by an update, a new one inserted: one upsert statement
        // would do both, but SQLite then copies every page it changes into a statement
        // journal (its update half may abort halfway), for every new task.
        let mut stored = tx.prepare_cached("SELECT 1 FROM tasks WHERE execution_id = ?1")?;
        let mut merge = tx.prepare_cached(&MERGE_TASK)?;
        let mut insert = tx.prepare_cached(&INSERT_TASK)?;
        let mut data = tx.prepare_cached(
            "INSERT INTO task_data (task_id, input, output) VALUES (?1, ?2, ?3)
             ON CONFLICT (task_id) DO UPDATE SET input = COALESCE(input, excluded.input),
               output = COALESCE(excluded.output, output)",
        )?;
        for d in &self.deltas {
            let status = d.status();
            let completed = d.completion.as_ref().map(|c| c.at);
            let values = params![
                d.execution_id,
                status.as_str(),
                d.created(|c| c.task_id.as_deref()),
                d.created(|c| c.chain_id.as_deref()),
                int(d.created(|c| c.block_number)),
                d.created(|c| c.block_hash.as_deref()),
                d.created(|c| c.requester.as_deref()),
                d.created(|c| c.reward.as_deref()),
                d.created(|c| c.created_ms),
                d.received.map(|at| at.ms),
                d.received.and_then(|at| at.ns),
                int(d.created(|c| c.gas_limit)),
                int(d.created(|c| c.memory_limit)),
                int(d.created(|c| c.call_limit)),
                int(d.created(|c| c.frame_limit)),
                int(d.created(|c| c.execution_timeout_ms)),
                int(d.created(|c| c.required_solutions)),
                int(d.created(|c| c.total_solutions)),
                d.downloaded_ms,
                d.started.map(|at| at.ms),
                d.started.and_then(|at| at.ns),
                completed.map(|at| at.ms),
                completed.and_then(|at| at.ns),
                d.metric(|m| m.exit_code),
                int(d.metric(|m| m.elapsed_ns)),
                int(d.metric(|m| m.elapsed_ns.map(|ns| ns / 1_000_000))),
                int(d.metric(|m| m.steps)),
                int(d.metric(|m| m.gas_limit)),
                int(d.metric(|m| m.memory_peak)),
                int(d.metric(|m| m.memory_limit)),
                int(d.metric(|m| m.call_peak)),
                int(d.metric(|m| m.frame_peak)),
                int(d.metric(|m| m.wasm_size)),
                d.metric(|m| m.wasm_hash.as_deref()),
                d.metric(|m| m.cached),
                d.completion.as_ref().and_then(|c| c.error.as_deref()),
            ];
            // The row as it is now: merged, or as inserted.
            let (id, stored_status, stored_completed_ms): (i64, String, Option<i64>) =
                if stored.exists([d.execution_id])? {
                    merge.query_row(values, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                } else {
                    insert.execute(values)?;
                    figures.add(&NewTask {
                        time_ms: d.received.or(d.started).or(completed).map(|at| at.ms),
                        status,
                        elapsed_ms: int(d.metric(|m| m.elapsed_ns.map(|ns| ns / 1_000_000))),
                        gas_used: int(d.metric(|m| m.steps)),
                        cached: d.metric(|m| m.cached),
                    });
                    (
                        tx.last_insert_rowid(),
                        status.as_str().to_owned(),
                        completed.map(|at| at.ms),
                    )
                };
            ids.insert(d.execution_id, id);
            let input = d.created(|c| c.input.as_deref());
            // The output belongs to the completion only if this completion is the one
            // the row now carries (a task already final keeps its own).
            let output = d.metric(|m| m.output.as_deref()).filter(|_| {
                stored_status == status.as_str() && stored_completed_ms == completed.map(|at| at.ms)
            });
            if input.is_some() || output.is_some() {
                data.execute(params![id, input, output])?;
            }
        }
        Ok(ids)
    }
}

/// Inserts a new task: the upsert without its conflict clause.
static INSERT_TASK: LazyLock<String> = LazyLock::new(|| {
    let end = UPSERT_TASK
        .find("\n ON CONFLICT")
        .expect("the upsert's conflict clause");
    UPSERT_TASK[..end].to_owned()
});

/// Merges a task's changes into its stored row: the upsert's update, with each
/// `excluded.column` the parameter that column takes in the insert; returns what the row
/// holds after it.
static MERGE_TASK: LazyLock<String> = LazyLock::new(|| {
    let columns_start = UPSERT_TASK.find('(').expect("column list") + 1;
    let columns_end = UPSERT_TASK
        .find(")\n VALUES")
        .expect("end of the column list");
    let columns: Vec<&str> = UPSERT_TASK[columns_start..columns_end]
        .split(',')
        .map(str::trim)
        .collect();
    let set_start = UPSERT_TASK
        .find("DO UPDATE SET")
        .expect("the upsert's update")
        + "DO UPDATE SET".len();
    let set_end = UPSERT_TASK
        .find("\n RETURNING")
        .expect("the upsert's returning clause");
    let mut set = String::new();
    let mut rest = &UPSERT_TASK[set_start..set_end];
    while let Some(at) = rest.find("excluded.") {
        set.push_str(&rest[..at]);
        rest = &rest[at + "excluded.".len()..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let index = columns
            .iter()
            .position(|c| *c == &rest[..name_len])
            .expect("an inserted column");
        set.push_str(&format!("?{}", index + 1));
        rest = &rest[name_len..];
    }
    set.push_str(rest);
    format!("UPDATE tasks SET{set} WHERE execution_id = ?1 RETURNING id, status, completed_ms")
});

/// A task's changes as one upsert (the text `INSERT_TASK` and `MERGE_TASK` are cut from).
/// Its update merges them into the stored row; `status` on the right-hand side is the
/// stored one: a final task only takes task_created figures it lacks; otherwise the status moves
/// up, first times are kept, and a completion brings its figures.
const UPSERT_TASK: &str = "INSERT INTO tasks (execution_id, status, task_id, chain_id, block_number,
   block_hash, requester, reward, created_ms, received_ms, received_ns, gas_limit, memory_limit,
   call_limit, frame_limit, execution_timeout_ms, required_solutions, total_solutions,
   downloaded_ms, started_ms, started_ns, completed_ms, completed_ns, exit_code, elapsed_ns,
   elapsed_ms, gas_used, metered_gas_limit, memory_peak, metered_memory_limit, call_peak,
   frame_peak, wasm_size, wasm_hash, cached, error)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
   ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36)
 ON CONFLICT (execution_id) DO UPDATE SET
   task_id = COALESCE(task_id, excluded.task_id),
   chain_id = COALESCE(chain_id, excluded.chain_id),
   block_number = COALESCE(block_number, excluded.block_number),
   block_hash = COALESCE(block_hash, excluded.block_hash),
   requester = COALESCE(requester, excluded.requester),
   reward = COALESCE(reward, excluded.reward),
   created_ms = COALESCE(created_ms, excluded.created_ms),
   received_ms = COALESCE(received_ms, excluded.received_ms),
   received_ns = COALESCE(received_ns, excluded.received_ns),
   gas_limit = COALESCE(gas_limit, excluded.gas_limit),
   memory_limit = COALESCE(memory_limit, excluded.memory_limit),
   call_limit = COALESCE(call_limit, excluded.call_limit),
   frame_limit = COALESCE(frame_limit, excluded.frame_limit),
   execution_timeout_ms = COALESCE(execution_timeout_ms, excluded.execution_timeout_ms),
   required_solutions = COALESCE(required_solutions, excluded.required_solutions),
   total_solutions = COALESCE(total_solutions, excluded.total_solutions),
   status = CASE
     WHEN status IN ('completed', 'failed') THEN status
     WHEN excluded.status IN ('completed', 'failed', 'executing') THEN excluded.status
     ELSE status END,
   downloaded_ms = IIF(status IN ('completed', 'failed'), downloaded_ms, COALESCE(downloaded_ms, excluded.downloaded_ms)),
   started_ms = IIF(status IN ('completed', 'failed'), started_ms, COALESCE(started_ms, excluded.started_ms)),
   started_ns = IIF(status IN ('completed', 'failed'), started_ns, COALESCE(started_ns, excluded.started_ns)),
   completed_ms = IIF(status IN ('completed', 'failed'), completed_ms, COALESCE(excluded.completed_ms, completed_ms)),
   completed_ns = IIF(status IN ('completed', 'failed'), completed_ns, COALESCE(excluded.completed_ns, completed_ns)),
   exit_code = IIF(status IN ('completed', 'failed'), exit_code, COALESCE(excluded.exit_code, exit_code)),
   elapsed_ns = IIF(status IN ('completed', 'failed'), elapsed_ns, COALESCE(excluded.elapsed_ns, elapsed_ns)),
   elapsed_ms = IIF(status IN ('completed', 'failed'), elapsed_ms, COALESCE(excluded.elapsed_ms, elapsed_ms)),
   gas_used = IIF(status IN ('completed', 'failed'), gas_used, COALESCE(excluded.gas_used, gas_used)),
   metered_gas_limit = IIF(status IN ('completed', 'failed'), metered_gas_limit, COALESCE(excluded.metered_gas_limit, metered_gas_limit)),
   memory_peak = IIF(status IN ('completed', 'failed'), memory_peak, COALESCE(excluded.memory_peak, memory_peak)),
   metered_memory_limit = IIF(status IN ('completed', 'failed'), metered_memory_limit, COALESCE(excluded.metered_memory_limit, metered_memory_limit)),
   call_peak = IIF(status IN ('completed', 'failed'), call_peak, COALESCE(excluded.call_peak, call_peak)),
   frame_peak = IIF(status IN ('completed', 'failed'), frame_peak, COALESCE(excluded.frame_peak, frame_peak)),
   wasm_size = IIF(status IN ('completed', 'failed'), wasm_size, COALESCE(excluded.wasm_size, wasm_size)),
   wasm_hash = IIF(status IN ('completed', 'failed'), wasm_hash, COALESCE(excluded.wasm_hash, wasm_hash)),
   cached = IIF(status IN ('completed', 'failed'), cached, COALESCE(excluded.cached, cached)),
   error = IIF(status IN ('completed', 'failed'), error, COALESCE(excluded.error, error))
 RETURNING id, status, completed_ms
";
