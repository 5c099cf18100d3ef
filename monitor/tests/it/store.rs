//! Integration tests: the store, on real SQLite files in temporary directories, through
//! the public API only.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use truebit_clock::now_ns;
use truebit_monitor::model::{
    ContainerAction, ContainerEvent, Entry, Event, Invoice, Kind, Level, LineItem, Metrics, Pos,
    TaskCreated, TaskStatus,
};
use truebit_monitor::store::{
    Batch, Change, Commit, Cursor, NewRows, NodeStatus, PruneReport, Store, StoreConfig,
    StoreError, StoredLineItem, Summary, Task, TaskChange, WriteHealth, SCHEMA_VERSION,
};

/// 2025-11-24 13:55:34 UTC, the node's clock for line 0.
const T0: i64 = 1_763_992_534;
const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;
const LOGGER: &str = "@truebit/worker-runner-node-0x558f000000000000000000000000000000c5d7";
const EXEC_A: &str = "3f0c8a52-7f1e-4c55-9a43-1b2c3d4e5f60";
const EXEC_B: &str = "9b1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5";
const TASK_ID: &str = "rs_00000000000000000000000000000000000000000000000000000000000000aa";

struct Db {
    // Keeps the directory alive.
    _dir: TempDir,
    path: PathBuf,
}

fn temp_db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("monitor.db");
    Db { _dir: dir, path }
}

/// Defaults, but no log retention: the test data is dated November 2025.
fn config(db: &Db) -> StoreConfig {
    let mut config = StoreConfig::new(&db.path);
    config.log_retention_days = None;
    config
}

fn open(db: &Db) -> Store {
    Store::open(config(db)).expect("open store")
}

/// A store whose disk is full: clamped to the size of the fresh database, no room for
/// new pages (`Store::set_max_page_count` gives it room again).
fn full_disk(db: &Db) -> Store {
    let mut config = config(db);
    config.max_page_count = Some(1);
    Store::open(config).expect("open")
}

/// An entry on line `line`, logged at `T0 + line` seconds (node clock) and received by
/// Docker 5 ns after that second.
fn entry(line: i64, kind: Kind, message: &str, event: Option<Event>) -> Entry {
    let execution_id = match &event {
        Some(Event::TaskReceived(created)) => Some(created.execution_id.clone()),
        Some(
            Event::ExecutionStarted { execution_id }
            | Event::ExecutionCompleted { execution_id, .. },
        ) => Some(execution_id.clone()),
        _ => None,
    };
    Entry {
        pos: Pos::new(0, line),
        received_ns: Some(received_ns(line)),
        node_time: Some(T0 + line),
        level: Some(Level::Info),
        logger: Some(LOGGER.to_owned()),
        version: Some("2.4.1".to_owned()),
        message: message.to_owned(),
        kind,
        execution_id,
        event,
        replaces: None,
    }
}

fn received_ns(line: i64) -> i64 {
    (T0 + line) * SECOND + 5
}

fn node_ms(line: i64) -> i64 {
    (T0 + line) * 1_000
}

fn log(line: i64, message: &str) -> Entry {
    entry(line, Kind::Log, message, None)
}

fn created(execution_id: &str) -> TaskCreated {
    TaskCreated {
        execution_id: execution_id.to_owned(),
        task_id: Some(TASK_ID.to_owned()),
        chain_id: Some("43113".to_owned()),
        block_number: Some(70_259_248),
        block_hash: Some(format!("0x{}", "bb".repeat(32))),
        requester: Some(format!("0x{}", "cc".repeat(20))),
        created_ms: Some(1_763_992_534_118),
        gas_limit: Some(1_099_511_627_776),
        memory_limit: Some(1024),
        call_limit: Some(65_536),
        frame_limit: Some(524_288),
        reward: Some("0".to_owned()),
        execution_timeout_ms: Some(30_000),
        required_solutions: Some(4),
        total_solutions: Some(4),
        input: Some(r#"{"args":[1,2,3]}"#.to_owned()),
    }
}

fn metrics(exit_code: i64) -> Metrics {
    Metrics {
        elapsed_ns: Some(842_133_917),
        exit_code: Some(exit_code),
        steps: Some(19_373_422),
        gas_limit: Some(60_000_000_000),
        memory_limit: Some(1024),
        memory_peak: Some(37),
        call_peak: Some(412),
        frame_peak: Some(9120),
        wasm_size: Some(1_839_201),
        wasm_hash: Some("ab".repeat(32)),
        cached: Some(true),
        output: Some(r#"{"result":42}"#.to_owned()),
    }
}

fn received(line: i64, execution_id: &str) -> Entry {
    entry(
        line,
        Kind::TaskReceived,
        "Message received from task_created: {...}",
        Some(Event::TaskReceived(Box::new(created(execution_id)))),
    )
}

fn started(line: i64, execution_id: &str) -> Entry {
    entry(
        line,
        Kind::ExecutionStarted,
        &format!("Starting task execution executionId: {execution_id}"),
        Some(Event::ExecutionStarted {
            execution_id: execution_id.to_owned(),
        }),
    )
}

fn completed(line: i64, execution_id: &str, metrics: Option<Metrics>) -> Entry {
    entry(
        line,
        Kind::ExecutionCompleted,
        &format!("Execution {execution_id} completed"),
        Some(Event::ExecutionCompleted {
            execution_id: execution_id.to_owned(),
            metrics: metrics.map(Box::new),
            stderr: None,
        }),
    )
}

fn batch(source: &str, entries: Vec<Entry>) -> Batch {
    let cursor = entries.last().map(|e| Cursor {
        pos: e.pos,
        parser_state: format!("{{\"line\":{}}}", e.pos.minor),
    });
    Batch {
        source: source.to_owned(),
        entries,
        cursor,
        container_events: Vec::new(),
    }
}

fn submit(store: &Store, batch: Batch) {
    store.submit(batch).expect("submit");
    store.flush().expect("flush");
}

/// The task as it is after `received`, `started` and `completed(metrics(exit_code))` on
/// lines 1, 3 and 5.
fn finished_task(execution_id: &str, exit_code: i64) -> Task {
    Task {
        execution_id: execution_id.to_owned(),
        status: if exit_code == 0 {
            TaskStatus::Completed
        } else {
            TaskStatus::Failed
        },
        task_id: Some(TASK_ID.to_owned()),
        chain_id: Some("43113".to_owned()),
        block_number: Some(70_259_248),
        block_hash: Some(format!("0x{}", "bb".repeat(32))),
        requester: Some(format!("0x{}", "cc".repeat(20))),
        reward: Some("0".to_owned()),
        created_ms: Some(1_763_992_534_118),
        received_ms: Some(node_ms(1)),
        received_ns: Some(received_ns(1)),
        downloaded_ms: None,
        started_ms: Some(node_ms(3)),
        started_ns: Some(received_ns(3)),
        completed_ms: Some(node_ms(5)),
        completed_ns: Some(received_ns(5)),
        exit_code: Some(exit_code),
        elapsed_ns: Some(842_133_917),
        elapsed_ms: Some(842),
        gas_used: Some(19_373_422),
        gas_limit: Some(1_099_511_627_776),
        metered_gas_limit: Some(60_000_000_000),
        memory_peak: Some(37),
        memory_limit: Some(1024),
        metered_memory_limit: Some(1024),
        call_limit: Some(65_536),
        call_peak: Some(412),
        frame_limit: Some(524_288),
        frame_peak: Some(9120),
        execution_timeout_ms: Some(30_000),
        required_solutions: Some(4),
        total_solutions: Some(4),
        wasm_size: Some(1_839_201),
        wasm_hash: Some("ab".repeat(32)),
        cached: Some(true),
        error: None,
        input: Some(r#"{"args":[1,2,3]}"#.to_owned()),
        output: Some(r#"{"result":42}"#.to_owned()),
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn task_goes_from_received_to_executing_to_completed_with_every_figure() {
    let db = temp_db();
    let store = open(&db);

    submit(
        &store,
        batch("docker:runner-node", vec![received(1, EXEC_A)]),
    );
    let task = store.task(EXEC_A).expect("read").expect("task exists");
    assert_eq!(task.status, TaskStatus::Received);
    assert_eq!(task.received_ms, Some(node_ms(1)));
    assert_eq!(task.input.as_deref(), Some(r#"{"args":[1,2,3]}"#));

    submit(
        &store,
        batch(
            "docker:runner-node",
            vec![log(2, "Semaphore ..."), started(3, EXEC_A)],
        ),
    );
    let task = store.task(EXEC_A).expect("read").expect("task exists");
    assert_eq!(task.status, TaskStatus::Executing);
    assert_eq!(task.started_ms, Some(node_ms(3)));

    let metrics_entry = entry(
        4,
        Kind::ExecutionMetrics,
        "Command execution stdout: {...}",
        Some(Event::ExecutionMetrics(Box::new(metrics(0)))),
    );
    submit(
        &store,
        batch(
            "docker:runner-node",
            vec![metrics_entry, completed(5, EXEC_A, Some(metrics(0)))],
        ),
    );
    assert_eq!(
        store.task(EXEC_A).expect("read"),
        Some(finished_task(EXEC_A, 0))
    );

    let listed = store.tasks(10).expect("tasks");
    let expected = Task {
        input: None,
        output: None,
        ..finished_task(EXEC_A, 0)
    };
    assert_eq!(listed, vec![expected]);
}

#[test]
fn non_zero_exit_code_marks_the_task_failed() {
    let db = temp_db();
    let store = open(&db);
    submit(
        &store,
        batch(
            "docker:runner-node",
            vec![
                received(1, EXEC_A),
                started(3, EXEC_A),
                completed(5, EXEC_A, Some(metrics(3))),
            ],
        ),
    );
    assert_eq!(
        store.task(EXEC_A).expect("read"),
        Some(finished_task(EXEC_A, 3))
    );
}

#[test]
fn replayed_lines_never_rewrite_a_final_task() {
    let db = temp_db();
    let store = open(&db);
    let life = vec![
        received(1, EXEC_A),
        started(3, EXEC_A),
        completed(5, EXEC_A, Some(metrics(0))),
    ];
    submit(&store, batch("docker:runner-node", life));

    // The same lines again from another source (an import of the node's log file), and a
    // later failing completion: a final task stays as it was.
    let mut other_created = created(EXEC_A);
    other_created.chain_id = Some("1".to_owned());
    other_created.input = Some("other input".to_owned());
    let replay = vec![
        entry(
            11,
            Kind::TaskReceived,
            "Message received from task_created: {...}",
            Some(Event::TaskReceived(Box::new(other_created))),
        ),
        started(13, EXEC_A),
        completed(
            15,
            EXEC_A,
            Some(Metrics {
                output: Some("other".into()),
                ..metrics(7)
            }),
        ),
        entry(
            16,
            Kind::TaskDownloaded,
            "Task rs_... downloaded successfully",
            Some(Event::TaskDownloaded {
                task_id: TASK_ID.to_owned(),
            }),
        ),
    ];
    submit(&store, batch("file:/var/log/runner-node.log", replay));

    assert_eq!(
        store.task(EXEC_A).expect("read"),
        Some(finished_task(EXEC_A, 0))
    );
}

#[test]
fn completion_of_an_unknown_execution_creates_the_task() {
    let db = temp_db();
    let store = open(&db);
    submit(
        &store,
        batch("docker:runner-node", vec![completed(5, EXEC_A, None)]),
    );

    let task = store.task(EXEC_A).expect("read").expect("task exists");
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.completed_ms, Some(node_ms(5)));
    assert_eq!(task.completed_ns, Some(received_ns(5)));
    assert_eq!(
        (task.received_ms, task.exit_code, task.output),
        (None, None, None)
    );
}

#[test]
fn start_of_an_unknown_execution_creates_an_executing_task_that_task_created_completes() {
    let db = temp_db();
    let store = open(&db);
    submit(
        &store,
        batch("docker:runner-node", vec![started(3, EXEC_A)]),
    );
    let task = store.task(EXEC_A).expect("read").expect("task exists");
    assert_eq!(
        (task.status, task.started_ms, task.task_id),
        (TaskStatus::Executing, Some(node_ms(3)), None)
    );

    // task_created seen later (for example from an imported file) fills the gaps and does
    // not move the task back to `received`.
    submit(&store, batch("file:node.log", vec![received(1, EXEC_A)]));
    let task = store.task(EXEC_A).expect("read").expect("task exists");
    assert_eq!(task.status, TaskStatus::Executing);
    assert_eq!(task.started_ms, Some(node_ms(3)));
    assert_eq!(task.received_ms, Some(node_ms(1)));
    assert_eq!(task.task_id.as_deref(), Some(TASK_ID));
    assert_eq!(task.input.as_deref(), Some(r#"{"args":[1,2,3]}"#));
}

#[test]
fn task_downloaded_moves_received_tasks_of_that_task_id_to_executing() {
    let db = temp_db();
    let store = open(&db);
    let mut other = created(EXEC_B);
    other.task_id = Some("rs_other".to_owned());
    let other_received = entry(
        2,
        Kind::TaskReceived,
        "Message received from task_created: {...}",
        Some(Event::TaskReceived(Box::new(other))),
    );
    let downloaded = entry(
        4,
        Kind::TaskDownloaded,
        "Task rs_... downloaded successfully",
        Some(Event::TaskDownloaded {
            task_id: TASK_ID.to_owned(),
        }),
    );
    submit(
        &store,
        batch(
            "docker:runner-node",
            vec![received(1, EXEC_A), other_received, downloaded],
        ),
    );

    let a = store.task(EXEC_A).expect("read").expect("task A");
    let b = store.task(EXEC_B).expect("read").expect("task B");
    assert_eq!(
        (a.status, a.downloaded_ms),
        (TaskStatus::Executing, Some(node_ms(4)))
    );
    assert_eq!((b.status, b.downloaded_ms), (TaskStatus::Received, None));
}

#[test]
fn replaying_the_same_batch_twice_changes_nothing() {
    let db = temp_db();
    let store = open(&db);
    let lines = vec![
        log(1, "first"),
        received(2, EXEC_A),
        started(3, EXEC_A),
        entry(4, Kind::Raw, "npm notice", None),
        completed(5, EXEC_A, Some(metrics(0))),
    ];
    let mut first = batch("docker:runner-node", lines);
    first.container_events.push(ContainerEvent {
        container_id: "c0ffee".into(),
        container_name: "runner-node".into(),
        time_ns: received_ns(0),
        action: ContainerAction::Started,
        exit_code: None,
        inferred: false,
    });
    submit(&store, first.clone());
    let before = store.summary().expect("summary");
    let entries_before = store.entries(100).expect("entries");

    submit(&store, first.clone());
    submit(&store, first);

    let after = store.summary().expect("summary");
    assert_eq!(
        Summary {
            db_size_bytes: 0,
            ..after.clone()
        },
        Summary {
            db_size_bytes: 0,
            ..before
        }
    );
    assert_eq!(after.entries, 5);
    assert_eq!(after.raw_entries, 1);
    assert_eq!(after.container_events, 1);
    assert_eq!(after.tasks_in(TaskStatus::Completed), 1);
    assert_eq!(store.entries(100).expect("entries"), entries_before);
}

#[test]
fn entries_at_or_before_the_cursor_are_ignored_and_later_ones_kept() {
    let db = temp_db();
    let store = open(&db);
    submit(
        &store,
        batch("docker:runner-node", vec![log(1, "one"), log(2, "two")]),
    );
    // A reconnect re-reads line 2 and then gets line 3.
    submit(
        &store,
        batch("docker:runner-node", vec![log(2, "two"), log(3, "three")]),
    );
    // Another source has its own cursor.
    submit(&store, batch("file:node.log", vec![log(1, "one")]));

    let messages: Vec<(String, String)> = store
        .entries(10)
        .expect("entries")
        .into_iter()
        .map(|e| (e.source, e.message))
        .collect();
    let pairs = [
        ("docker:runner-node", "three"),
        ("docker:runner-node", "two"),
        ("file:node.log", "one"),
        ("docker:runner-node", "one"),
    ];
    let expected: Vec<(String, String)> = pairs
        .iter()
        .map(|(s, m)| (s.to_string(), m.to_string()))
        .collect();
    assert_eq!(messages, expected);
}

#[test]
fn entries_are_read_back_newest_first_with_every_field() {
    let db = temp_db();
    let store = open(&db);
    let mut warn = log(
        2,
        "Semaphore TaskSubscriber processing started. Using slot 2/4\n  at line",
    );
    warn.level = Some(Level::Other("notice".into()));
    let raw = Entry {
        pos: Pos::new(0, 3),
        received_ns: None,
        node_time: None,
        level: None,
        logger: None,
        version: None,
        message: "\u{fffd}binary junk".into(),
        kind: Kind::Raw,
        execution_id: None,
        event: None,
        replaces: None,
    };
    submit(
        &store,
        batch("docker:runner-node", vec![log(1, "hello"), warn, raw]),
    );

    let entries = store.entries(2).expect("entries");
    assert_eq!(entries.len(), 2);
    // The raw line has no time of its own: it takes the previous entry's.
    assert_eq!(entries[0].message, "\u{fffd}binary junk");
    assert_eq!(entries[0].time_ns, received_ns(2));
    assert_eq!(
        (
            entries[0].kind,
            entries[0].level.clone(),
            entries[0].logger.clone()
        ),
        (Kind::Raw, None, None)
    );
    let second = &entries[1];
    assert_eq!(second.source, "docker:runner-node");
    assert_eq!(second.pos, Pos::new(0, 2));
    assert_eq!(second.time_ns, received_ns(2));
    assert_eq!(second.received_ns, Some(received_ns(2)));
    assert_eq!(second.node_time, Some(T0 + 2));
    assert_eq!(second.level, Some(Level::Other("notice".into())));
    assert_eq!(second.logger.as_deref(), Some(LOGGER));
    assert_eq!(second.version.as_deref(), Some("2.4.1"));
    assert_eq!(second.kind, Kind::Log);
    assert_eq!(
        second.message,
        "Semaphore TaskSubscriber processing started. Using slot 2/4\n  at line"
    );
    assert!(entries[0].id > second.id);
}

#[test]
fn cursor_is_committed_with_its_entries_and_read_back_after_reopening() {
    let db = temp_db();
    let store = open(&db);
    assert_eq!(store.cursor("docker:runner-node").expect("cursor"), None);

    let mut b = batch("docker:runner-node", vec![log(1, "one"), log(2, "two")]);
    b.cursor = Some(Cursor {
        pos: Pos::new(received_ns(2), 1),
        parser_state: r#"{"pending":[]}"#.into(),
    });
    for e in &mut b.entries {
        e.pos = Pos::new(e.received_ns.expect("received"), 0);
    }
    store.submit(b).expect("submit");
    store.close().expect("close");

    let store = open(&db);
    let cursor = store.cursor("docker:runner-node").expect("cursor");
    assert_eq!(
        cursor,
        Some(Cursor {
            pos: Pos::new(received_ns(2), 1),
            parser_state: r#"{"pending":[]}"#.into()
        })
    );
    assert_eq!(store.summary().expect("summary").entries, 2);
    assert_eq!(store.cursor("file:other").expect("cursor"), None);
}

#[test]
fn cursor_never_moves_back() {
    let db = temp_db();
    let store = open(&db);
    submit(
        &store,
        batch("file:node.log", vec![log(1, "one"), log(2, "two")]),
    );
    submit(&store, batch("file:node.log", vec![log(1, "one")]));
    let cursor = store
        .cursor("file:node.log")
        .expect("cursor")
        .expect("a cursor");
    assert_eq!(
        cursor,
        Cursor {
            pos: Pos::new(0, 2),
            parser_state: r#"{"line":2}"#.into()
        }
    );
}

#[test]
fn reopening_applies_no_migration_twice() {
    let db = temp_db();
    let store = open(&db);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let applied = store.applied_migrations().expect("migrations");
    let versions: Vec<i64> = applied.iter().map(|m| m.version).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    submit(&store, batch("docker:runner-node", vec![log(1, "kept")]));
    store.close().expect("close");

    let store = open(&db);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(store.applied_migrations().expect("migrations"), applied);
    assert_eq!(store.summary().expect("summary").entries, 1);
}

#[test]
fn container_events_are_stored_once_and_read_by_time_range() {
    let db = temp_db();
    let store = open(&db);
    let event = |time_ns: i64, action: ContainerAction, exit_code: Option<i64>| ContainerEvent {
        container_id: "c0ffee".into(),
        container_name: "runner-node".into(),
        time_ns,
        action,
        exit_code,
        inferred: false,
    };
    let events = vec![
        event(100, ContainerAction::Started, None),
        event(200, ContainerAction::Died, Some(137)),
        event(200, ContainerAction::Oom, None),
        event(300, ContainerAction::Started, None),
    ];
    let mut first = Batch::new("docker:runner-node");
    first.container_events = events.clone();
    store.submit(first).expect("submit");
    // Inspect at reconnect reports some of them again.
    let mut again = Batch::new("docker:runner-node");
    again.container_events = vec![events[1].clone(), events[3].clone()];
    submit(&store, again);

    assert_eq!(store.summary().expect("summary").container_events, 4);
    assert_eq!(store.container_events(0, i64::MAX).expect("events"), events);
    assert_eq!(
        store.container_events(200, 300).expect("events"),
        events[1..3].to_vec()
    );
}

#[test]
fn invoices_are_stored_once_with_their_line_items() {
    let db = temp_db();
    let store = open(&db);
    let invoice = Invoice {
        invoice_id: Some(1234),
        execution_id: Some(EXEC_A.into()),
        task_id: Some(TASK_ID.into()),
        task_created_ts: Some(1_762_363_564),
        step_gas_price: Some("1".into()),
        byte_gas_price: Some("1".into()),
        line_items: vec![
            LineItem {
                operation: "charge".into(),
                account: Some("0xrequester".into()),
                steps: Some("19373422".into()),
                memory: Some("37".into()),
            },
            LineItem {
                operation: "pay".into(),
                account: Some("0xnode".into()),
                steps: Some("19373422".into()),
                memory: Some("37.5".into()),
            },
        ],
    };
    let line = |n: i64| {
        entry(
            n,
            Kind::Invoice,
            "InvoiceSubscriber invoice received: {...}",
            Some(Event::Invoice(Box::new(invoice.clone()))),
        )
    };
    submit(&store, batch("docker:runner-node", vec![line(1)]));
    // The same invoice printed again later (new position): still one invoice.
    submit(&store, batch("docker:runner-node", vec![line(2)]));

    let invoices = store.invoices(10).expect("invoices");
    assert_eq!(invoices.len(), 1);
    let stored = &invoices[0];
    assert_eq!(stored.invoice_id, Some(1234));
    assert_eq!(stored.execution_id.as_deref(), Some(EXEC_A));
    assert_eq!(stored.task_id.as_deref(), Some(TASK_ID));
    assert_eq!(stored.task_created_ts, Some(1_762_363_564));
    assert_eq!(stored.step_gas_price.as_deref(), Some("1"));
    assert_eq!(stored.byte_gas_price.as_deref(), Some("1"));
    assert_eq!(
        (stored.time_ns, stored.node_time, stored.received_ns),
        (received_ns(1), Some(T0 + 1), Some(received_ns(1)))
    );
    assert_eq!(
        stored.line_items,
        vec![
            StoredLineItem {
                operation: "charge".into(),
                account: Some("0xrequester".into()),
                steps: Some("19373422".into()),
                steps_value: Some(19_373_422),
                memory: Some("37".into()),
                memory_value: Some(37),
            },
            StoredLineItem {
                operation: "pay".into(),
                account: Some("0xnode".into()),
                steps: Some("19373422".into()),
                steps_value: Some(19_373_422),
                memory: Some("37.5".into()),
                memory_value: None,
            },
        ]
    );
    let summary = store.summary().expect("summary");
    assert_eq!(
        (
            summary.invoices,
            summary.invoice_items,
            summary.entries_of(Kind::Invoice)
        ),
        (1, 2, 2)
    );
}

#[test]
fn node_status_follows_registration_slots_version_and_log_times() {
    let db = temp_db();
    let store = open(&db);
    assert_eq!(store.node_status().expect("status"), NodeStatus::default());

    let address = format!("0x{}", "55".repeat(20));
    let mut newer = log(4, "later line");
    newer.version = Some("2.5.0-beta.3".into());
    newer.received_ns = None;
    let lines = vec![
        entry(
            1,
            Kind::NodeRegistered,
            "Node with address ... registered successfully",
            Some(Event::NodeRegistered {
                address: address.clone(),
            }),
        ),
        entry(
            2,
            Kind::SlotTaken,
            "Semaphore ... Using slot 2/4",
            Some(Event::SlotTaken { slot: 2, total: 4 }),
        ),
        entry(
            3,
            Kind::SlotReleased,
            "Semaphore ... Released slot (1/4 now active)",
            Some(Event::SlotReleased {
                active: 1,
                total: 4,
            }),
        ),
        newer,
    ];
    submit(&store, batch("docker:runner-node", lines));
    let expected = NodeStatus {
        version: Some("2.5.0-beta.3".into()),
        address: Some(address.clone()),
        registered_ms: Some(node_ms(1)),
        registered_ns: Some(received_ns(1)),
        slots_used: Some(1),
        slots_total: Some(4),
        last_received_ns: Some(received_ns(3)),
        last_node_time: Some(T0 + 4),
    };
    assert_eq!(store.node_status().expect("status"), expected);

    // An import of an older file does not roll the status back.
    let mut old = entry(
        -100,
        Kind::SlotTaken,
        "Semaphore ... Using slot 4/4",
        Some(Event::SlotTaken { slot: 4, total: 4 }),
    );
    old.version = Some("2.4.0".into());
    submit(&store, batch("file:old.log", vec![old]));
    assert_eq!(store.node_status().expect("status"), expected);

    // It is kept across a restart.
    store.close().expect("close");
    let store = open(&db);
    assert_eq!(store.node_status().expect("status"), expected);
}

#[test]
fn summary_lists_every_kind_and_every_status() {
    let db = temp_db();
    let store = open(&db);
    let summary = store.summary().expect("summary");
    assert_eq!(
        summary.entries_by_kind,
        Kind::ALL.iter().map(|k| (*k, 0)).collect::<Vec<_>>()
    );
    assert_eq!(
        summary.tasks_by_status,
        TaskStatus::ALL.iter().map(|s| (*s, 0)).collect::<Vec<_>>()
    );
    assert!(summary.db_size_bytes > 0);

    submit(
        &store,
        batch(
            "docker:runner-node",
            vec![
                log(1, "a"),
                log(2, "b"),
                received(3, EXEC_A),
                received(4, EXEC_B),
                started(5, EXEC_B),
            ],
        ),
    );
    let summary = store.summary().expect("summary");
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.entries_of(Kind::Log), 2);
    assert_eq!(summary.entries_of(Kind::TaskReceived), 2);
    assert_eq!(summary.entries_of(Kind::ExecutionStarted), 1);
    assert_eq!(
        summary.tasks_by_status,
        vec![
            (TaskStatus::Received, 1),
            (TaskStatus::Executing, 1),
            (TaskStatus::Completed, 0),
            (TaskStatus::Failed, 0)
        ]
    );
}

#[test]
fn log_retention_counts_from_when_entries_were_stored_prunes_in_chunks_and_keeps_tasks() {
    let db = temp_db();
    let mut config = config(&db);
    config.log_retention_days = Some(30);
    let store = Store::open(config).expect("open");
    // Entries dated 40 days ago (an imported old log), stored now.
    let stored = now_ns();
    let at = |line: i64, time_ns: i64, e: Entry| Entry {
        pos: Pos::new(0, line),
        received_ns: Some(time_ns),
        node_time: Some(time_ns / SECOND),
        ..e
    };
    let mut entries: Vec<Entry> = (0..12_000)
        .map(|i| at(i, stored - 40 * DAY + i, log(i, "old line")))
        .collect();
    entries.push(at(20_000, stored - 40 * DAY + 20_000, received(0, EXEC_A)));
    entries.push(at(20_001, stored - DAY, log(0, "recent line")));
    submit(&store, batch("docker:runner-node", entries));

    // Their own time is past the retention; the time they were stored is not.
    assert_eq!(
        store.prune_now(now_ns()).expect("prune"),
        PruneReport::default()
    );
    assert_eq!(
        store.prune_now(stored + 29 * DAY).expect("prune"),
        PruneReport::default()
    );
    assert_eq!(store.summary().expect("summary").entries, 12_002);

    // 30 days (and the hour they were stored in) later, they go, in chunks.
    let report = store
        .prune_now(stored + 30 * DAY + 2 * 3_600 * SECOND)
        .expect("prune");
    assert_eq!(
        report,
        PruneReport {
            entries: 12_002,
            tasks: 0,
            invoices: 0,
            container_events: 0
        }
    );
    let summary = store.summary().expect("summary");
    assert_eq!(
        (
            summary.entries,
            summary.entries_of(Kind::Log),
            summary.entries_of(Kind::TaskReceived)
        ),
        (0, 0, 0)
    );
    assert_eq!(
        store.task(EXEC_A).expect("read").map(|t| t.status),
        Some(TaskStatus::Received)
    );

    // Entries stored afterwards are counted from their own storing time.
    submit(
        &store,
        batch(
            "docker:runner-node",
            vec![at(30_000, stored - 40 * DAY, log(0, "imported later"))],
        ),
    );
    assert_eq!(
        store.prune_now(now_ns() + 29 * DAY).expect("prune"),
        PruneReport::default()
    );
    assert_eq!(store.entries(10).expect("entries").len(), 1);
}

#[test]
fn task_retention_prunes_old_tasks_invoices_and_container_events_when_set() {
    let db = temp_db();
    let mut config = config(&db);
    config.task_retention_days = Some(10);
    let store = Store::open(config).expect("open");
    let now = now_ns() + 100 * DAY;
    let at = |line: i64, time_ns: i64, e: Entry| Entry {
        pos: Pos::new(0, line),
        received_ns: Some(time_ns),
        node_time: Some(time_ns / SECOND),
        ..e
    };
    let invoice = |execution_id: &str| {
        Event::Invoice(Box::new(Invoice {
            invoice_id: Some(1),
            execution_id: Some(execution_id.into()),
            line_items: vec![LineItem {
                operation: "pay".into(),
                ..LineItem::default()
            }],
            ..Invoice::default()
        }))
    };
    let mut b = batch(
        "docker:runner-node",
        vec![
            at(1, now - 40 * DAY, received(0, EXEC_A)),
            at(2, now - 40 * DAY, completed(0, EXEC_A, Some(metrics(0)))),
            at(
                3,
                now - 40 * DAY,
                entry(0, Kind::Invoice, "invoice", Some(invoice(EXEC_A))),
            ),
            at(4, now - DAY, received(0, EXEC_B)),
            at(
                5,
                now - DAY,
                entry(0, Kind::Invoice, "invoice", Some(invoice(EXEC_B))),
            ),
        ],
    );
    let event = |time_ns| ContainerEvent {
        container_id: "c0ffee".into(),
        container_name: "runner-node".into(),
        time_ns,
        action: ContainerAction::Started,
        exit_code: None,
        inferred: false,
    };
    b.container_events = vec![event(now - 40 * DAY), event(now - DAY)];
    submit(&store, b);
    // The day figures follow the invoices in and out.
    let days = |store: &Store| -> Vec<(i64, u64, u64)> {
        store
            .earnings_by_day(now - 50 * DAY, now)
            .expect("earnings")
            .iter()
            .map(|d| {
                (
                    d.day,
                    d.invoices,
                    d.operations.iter().map(|o| o.items).sum(),
                )
            })
            .collect()
    };
    let (old_day, new_day) = ((now - 40 * DAY) / DAY, (now - DAY) / DAY);
    assert_eq!(days(&store), vec![(old_day, 1, 1), (new_day, 1, 1)]);

    let report = store.prune_now(now).expect("prune");
    assert_eq!(
        report,
        PruneReport {
            entries: 0,
            tasks: 1,
            invoices: 1,
            container_events: 1
        }
    );
    assert_eq!(days(&store), vec![(new_day, 1, 1)]);
    assert_eq!(store.task(EXEC_A).expect("read"), None);
    assert_eq!(
        store.task(EXEC_B).expect("read").map(|t| t.status),
        Some(TaskStatus::Received)
    );
    let summary = store.summary().expect("summary");
    assert_eq!(
        (
            summary.entries,
            summary.invoices,
            summary.invoice_items,
            summary.container_events
        ),
        (5, 1, 1, 1)
    );
    assert_eq!(
        store.invoices(10).expect("invoices")[0]
            .execution_id
            .as_deref(),
        Some(EXEC_B)
    );
}

#[test]
fn full_disk_keeps_the_batches_and_commits_them_once_space_returns() {
    let db = temp_db();
    let store = full_disk(&db);

    let message = "x".repeat(300);
    let first: Vec<Entry> = (1..=500).map(|i| log(i, &message)).collect();
    let second: Vec<Entry> = (501..=600).map(|i| log(i, &message)).collect();
    store
        .submit(batch("docker:runner-node", first))
        .expect("submit");
    wait_for("the writer to report failure", || {
        !store.write_health().is_ok()
    });
    store
        .submit(batch("docker:runner-node", second))
        .expect("submit while failing");

    let WriteHealth::Failing { error, .. } = store.write_health() else {
        panic!("write health should be failing");
    };
    assert!(error.starts_with("disk full while writing"), "{error}");
    assert!(error.contains("nothing is lost"), "{error}");
    assert_eq!(store.summary().expect("summary").entries, 0);
    assert_eq!(store.cursor("docker:runner-node").expect("cursor"), None);

    store.set_max_page_count(1_000_000);
    store.flush().expect("flush");

    assert_eq!(store.write_health(), WriteHealth::Ok);
    assert_eq!(store.summary().expect("summary").entries, 600);
    assert_eq!(
        store
            .cursor("docker:runner-node")
            .expect("cursor")
            .map(|c| c.pos),
        Some(Pos::new(0, 600))
    );
}

#[test]
fn a_writer_that_cannot_commit_holds_back_a_few_batches_of_text_not_a_growing_pile() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use truebit_monitor::ingest::{Handoff, Ingest, BATCH_MAX_BYTES};
    use truebit_monitor::model::LineMeta;
    use truebit_monitor::parser::ParserConfig;

    let db = temp_db();
    // The writer keeps its first transaction and retries it.
    let store = full_disk(&db);

    // 20,000 node lines of about 1 KB (20 MB), fed the way a live source feeds them.
    const LINES: i64 = 20_000;
    let pushed = Arc::new(AtomicU64::new(0));
    let feeder = {
        let store = store.clone();
        let pushed = Arc::clone(&pushed);
        std::thread::spawn(move || {
            let mut ingest =
                Ingest::resume(&store, "file:node.log", ParserConfig::default()).expect("ingest");
            let filler = "x".repeat(960);
            for n in 1..=LINES {
                let line = format!("2025-11-24 13:55:34 info: line {n:05} {filler}");
                let meta = LineMeta {
                    received_ns: None,
                    pos: Pos::new(0, n),
                };
                ingest.push(line.as_bytes(), meta);
                pushed.fetch_add(line.len() as u64 + 1, Ordering::SeqCst);
                ingest.commit_blocking(Handoff::Due).expect("submit");
            }
            ingest.commit_blocking(Handoff::Finish).expect("submit");
        })
    };
    wait_for("the writer to report failure", || {
        !store.write_health().is_ok()
    });
    // The source stops reading once the queue is full: what it took stays put.
    let mut held = pushed.load(Ordering::SeqCst);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        let now = pushed.load(Ordering::SeqCst);
        if now == held {
            break;
        }
        held = now;
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        pushed.load(Ordering::SeqCst),
        held,
        "the source waits for the writer"
    );
    // The batch being retried, the queue's four, the one waiting to be queued and the one
    // being filled: a few batches of at most BATCH_MAX_BYTES each, 20 MB offered.
    let bound = 7 * BATCH_MAX_BYTES as u64;
    assert!(
        held <= bound,
        "{held} bytes taken from the source while the writer was stuck (bound {bound})"
    );
    assert_eq!(store.summary().expect("summary").entries, 0);

    store.set_max_page_count(1_000_000);
    feeder.join().expect("feeder");
    store.flush().expect("flush");
    assert_eq!(store.write_health(), WriteHealth::Ok);
    assert_eq!(
        store.summary().expect("summary").entries,
        LINES as u64,
        "nothing lost"
    );
    assert_eq!(
        store
            .cursor("file:node.log")
            .expect("cursor")
            .map(|c| c.pos),
        Some(Pos::new(0, LINES))
    );
}

#[test]
fn closing_while_the_disk_is_full_reports_what_was_not_committed() {
    let db = temp_db();
    let store = full_disk(&db);
    let message = "x".repeat(300);
    store
        .submit(batch(
            "docker:runner-node",
            (1..=500).map(|i| log(i, &message)).collect(),
        ))
        .expect("submit");
    wait_for("the writer to report failure", || {
        !store.write_health().is_ok()
    });

    let error = store.close().expect_err("close cannot commit");
    assert!(
        matches!(error, StoreError::Uncommitted { batches: 1, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("resume from the last committed cursor"),
        "{error}"
    );
    assert!(matches!(
        store.submit(Batch::new("x")),
        Err(StoreError::Closed)
    ));
}

#[test]
fn garbage_file_is_reported_as_corrupt() {
    let db = temp_db();
    let garbage: Vec<u8> = (0..8192_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db.path, garbage).expect("write garbage");

    let error = Store::open(config(&db)).expect_err("garbage is not a database");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&db.path.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("restore it from a backup or move it away"),
        "{message}"
    );
    assert!(!message.contains('\n'));
}

#[test]
fn missing_directory_is_reported_clearly() {
    let db = temp_db();
    let path = db
        .path
        .parent()
        .expect("parent")
        .join("missing")
        .join("monitor.db");
    let error = Store::open(StoreConfig::new(&path)).expect_err("no directory");
    assert!(
        matches!(error, StoreError::MissingDirectory { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("its directory does not exist"),
        "{error}"
    );
}

#[test]
fn reads_work_while_the_writer_is_busy() {
    let db = temp_db();
    let mut config = config(&db);
    config.batch_max_entries = 5_000;
    let store = Store::open(config).expect("open");
    let message = "y".repeat(400);
    let batches = 20;
    let per_batch = 5_000_i64;
    let producer = {
        let store = store.clone();
        let message = message.clone();
        std::thread::spawn(move || {
            for b in 0..batches {
                let entries = (0..per_batch)
                    .map(|i| log(b * per_batch + i + 1, &message))
                    .collect();
                store
                    .submit(batch("docker:runner-node", entries))
                    .expect("submit");
            }
        })
    };
    let mut seen = Vec::new();
    loop {
        let entries = store.summary().expect("read during ingest").entries;
        assert_eq!(
            entries % per_batch as u64,
            0,
            "a batch is committed whole or not at all"
        );
        assert!(seen.last().is_none_or(|last| *last <= entries));
        seen.push(entries);
        if entries == (batches * per_batch) as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.join().expect("producer");
    assert!(seen.len() > 1);
}

#[test]
fn submit_after_close_fails_and_close_is_idempotent() {
    let db = temp_db();
    let store = open(&db);
    let other = store.clone();
    store
        .submit(batch("docker:runner-node", vec![log(1, "last words")]))
        .expect("submit");
    store.close().expect("close commits what was submitted");
    other.close().expect("second close");
    assert!(matches!(
        other.submit(Batch::new("x")),
        Err(StoreError::Closed)
    ));
    assert!(matches!(other.flush(), Err(StoreError::Closed)));
    // Reads still work.
    assert_eq!(other.summary().expect("summary").entries, 1);
}

#[tokio::test]
async fn async_variants_submit_flush_and_read() {
    let db = temp_db();
    let mut config = config(&db);
    config.queue_capacity = 1;
    let store = Store::open(config).expect("open");
    for i in 1..=10 {
        store
            .submit_async(batch("docker:runner-node", vec![log(i, "async")]))
            .await
            .expect("submit");
    }
    store.call(|st| st.flush()).await.expect("flush");
    assert_eq!(
        store
            .call(|st| st.summary())
            .await
            .expect("summary")
            .entries,
        10
    );
    let cursor = store
        .call(|st| st.cursor("docker:runner-node"))
        .await
        .expect("cursor");
    assert_eq!(cursor.map(|c| c.pos), Some(Pos::new(0, 10)));
    assert_eq!(
        store
            .call(move |st| st.entries(3))
            .await
            .expect("entries")
            .len(),
        3
    );
    store.call(|st| st.close()).await.expect("close");
}

#[test]
fn database_locked_by_another_process_is_reported_clearly() {
    let db = temp_db();
    // Another program holds an exclusive lock on a database that is not in WAL mode yet.
    let other = rusqlite::Connection::open(&db.path).expect("open with sqlite");
    other
        .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .expect("lock");

    let error = Store::open(config(&db)).expect_err("the database is locked");
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    assert!(
        error.to_string().contains("is locked by another process"),
        "{error}"
    );

    other.execute_batch("COMMIT").expect("unlock");
    drop(other);
    let store = open(&db);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
}

#[test]
fn a_replay_in_the_same_batch_keeps_the_first_completion() {
    let db = temp_db();
    let store = open(&db);
    let mut other_output = metrics(9);
    other_output.output = Some("other".into());
    let lines = vec![
        received(1, EXEC_A),
        started(3, EXEC_A),
        completed(5, EXEC_A, Some(metrics(0))),
        // The same execution again further down the same batch (a duplicated log).
        started(7, EXEC_A),
        completed(9, EXEC_A, Some(other_output)),
    ];
    submit(&store, batch("docker:runner-node", lines));
    assert_eq!(
        store.task(EXEC_A).expect("read"),
        Some(finished_task(EXEC_A, 0))
    );
}

#[test]
fn task_downloaded_in_a_later_batch_moves_a_stored_task_to_executing() {
    let db = temp_db();
    let store = open(&db);
    submit(
        &store,
        batch("docker:runner-node", vec![received(1, EXEC_A)]),
    );
    let downloaded = entry(
        4,
        Kind::TaskDownloaded,
        "Task rs_... downloaded successfully",
        Some(Event::TaskDownloaded {
            task_id: TASK_ID.to_owned(),
        }),
    );
    submit(&store, batch("docker:runner-node", vec![downloaded]));

    let task = store.task(EXEC_A).expect("read").expect("task");
    assert_eq!(
        (task.status, task.downloaded_ms, task.received_ms),
        (TaskStatus::Executing, Some(node_ms(4)), Some(node_ms(1)))
    );
}

#[test]
fn tasks_come_out_the_same_wherever_transactions_cut_the_log() {
    // Forty tasks, their lines interleaved as with four slots, some failing; stored once
    // in one transaction and once in batches of seven lines, each its own transaction.
    let mut lines = Vec::new();
    let mut line = 0;
    for wave in 0..10 {
        let ids: Vec<String> = (0..4)
            .map(|slot| format!("{:08x}-0000-4000-8000-{:012x}", wave, slot))
            .collect();
        for id in &ids {
            line += 1;
            lines.push(received(line, id));
        }
        for id in &ids {
            line += 1;
            lines.push(started(line, id));
        }
        for (slot, id) in ids.iter().enumerate() {
            line += 1;
            let exit = if (wave + slot) % 5 == 0 { 2 } else { 0 };
            lines.push(completed(line, id, Some(metrics(exit))));
        }
    }
    let whole = temp_db();
    let store = open(&whole);
    submit(&store, batch("docker:runner-node", lines.clone()));
    let cut = temp_db();
    let mut config = config(&cut);
    config.batch_max_entries = 1;
    let cut_store = Store::open(config).expect("open");
    for chunk in lines.chunks(7) {
        cut_store
            .submit(batch("docker:runner-node", chunk.to_vec()))
            .expect("submit");
    }
    cut_store.flush().expect("flush");

    let all = |s: &Store| s.tasks(100).expect("tasks");
    let tasks = all(&store);
    assert_eq!(tasks.len(), 40);
    assert_eq!(tasks, all(&cut_store));
    let summary = store.summary().expect("summary");
    assert_eq!(
        (
            summary.tasks_in(TaskStatus::Completed),
            summary.tasks_in(TaskStatus::Failed)
        ),
        (32, 8)
    );
    assert_eq!(
        Summary {
            db_size_bytes: 0,
            ..summary
        },
        Summary {
            db_size_bytes: 0,
            ..cut_store.summary().expect("summary")
        }
    );
}

/// The `-wal` and `-shm` files next to `db` that exist.
fn wal_files(db: &std::path::Path) -> Vec<String> {
    ["-wal", "-shm"]
        .iter()
        .map(|suffix| format!("{}{suffix}", db.display()))
        .filter(|path| std::path::Path::new(path).exists())
        .collect()
}

#[test]
fn the_last_handle_leaves_one_database_file_without_wal_or_shm() {
    let db = temp_db();
    let store = open(&db);
    let reader = store.clone();
    store
        .submit(batch(
            "docker:runner-node",
            (1..=2_000).map(|i| log(i, "line")).collect(),
        ))
        .expect("submit");
    store.close().expect("close");
    // Reads still work after close, with the log still there…
    assert_eq!(reader.summary().expect("summary").entries, 2_000);
    assert!(!wal_files(&db.path).is_empty(), "WAL mode while open");
    drop(store);
    drop(reader);
    // …and the last handle checkpointed it into the file and removed both.
    assert_eq!(wal_files(&db.path), Vec::<String>::new());
    assert_eq!(open(&db).summary().expect("reopen").entries, 2_000);
}

#[test]
fn sigterm_of_run_leaves_one_database_file_without_wal_or_shm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("monitor.db");
    let node_log = dir.path().join("node.log");
    let lines: String = (0..500)
        .map(|i| format!("2025-11-24 13:55:{:02} info: line {i}\n", i % 60))
        .collect();
    std::fs::write(&node_log, &lines).expect("node log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("run")
        .env_clear()
        .env("DB_PATH", &db)
        .env("LOG_FILE", &node_log)
        .env("LOG_RETENTION_DAYS", "0")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("TASK_DATA_PASSWORD", "wal-test-password")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the monitor starts");
    wait_for("the monitor's write-ahead log", || {
        wal_files(&db).len() == 2
    });
    // Time to read the file (what was read by SIGTERM is committed at shutdown anyway).
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the monitor did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(wal_files(&db), Vec::<String>::new());
    let store = Store::open(StoreConfig {
        log_retention_days: None,
        ..StoreConfig::new(&db)
    })
    .expect("reopen");
    assert_eq!(store.summary().expect("summary").entries, 500);
}

/// The next change on the feed, waiting up to ten seconds for it.
fn next_change(feed: &mut tokio::sync::broadcast::Receiver<Change>) -> Change {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match feed.try_recv() {
            Ok(change) => return change,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("no change on the feed: {error}"),
        }
    }
}

fn committed(change: Change) -> Commit {
    match change {
        Change::Committed(commit) => (*commit).clone(),
        other => panic!("not a commit: {other:?}"),
    }
}

#[test]
fn the_feed_tells_what_each_commit_stored_once_it_committed() {
    let db = temp_db();
    let store = open(&db);
    let source = "docker:runner-node";
    submit(&store, batch(source, vec![log(1, "one"), log(2, "two")]));
    let mut feed = store.subscribe();
    let died = ContainerEvent {
        container_id: "c0ffee".into(),
        container_name: "runner-node".into(),
        time_ns: 500,
        action: ContainerAction::Died,
        exit_code: Some(137),
        inferred: false,
    };
    let mut second = batch(
        source,
        vec![
            received(3, EXEC_A),
            started(4, EXEC_A),
            completed(5, EXEC_A, Some(metrics(1))),
        ],
    );
    second.container_events = vec![died.clone()];
    submit(&store, second);

    let commit = committed(next_change(&mut feed));
    assert_eq!(commit.entries, NewRows { after: 2, last: 5 });
    assert!(commit.invoices.is_empty());
    assert_eq!(
        commit.tasks,
        vec![TaskChange {
            execution_id: EXEC_A.into(),
            status: TaskStatus::Failed,
        }]
    );
    assert_eq!(commit.container_events, vec![died.clone()]);
    let rows = store
        .entries_after(commit.entries.after, commit.entries.count() as usize)
        .expect("entries");
    assert_eq!(
        rows.iter().map(|e| (e.id, e.pos.minor)).collect::<Vec<_>>(),
        vec![(3, 3), (4, 4), (5, 5)]
    );

    // A replay (lines at or before the cursor, an event recorded before) stores nothing new.
    let mut replay = batch(source, vec![log(2, "two"), completed(5, EXEC_A, None)]);
    replay.container_events = vec![died];
    submit(&store, replay);
    let commit = committed(next_change(&mut feed));
    assert_eq!(
        commit,
        Commit {
            entries: NewRows { after: 5, last: 5 },
            invoices: NewRows { after: 0, last: 0 },
            tasks: Vec::new(),
            container_events: Vec::new(),
            removed_entries: Vec::new(),
        }
    );
    assert!(feed.try_recv().is_err(), "one change per commit");
}

#[test]
fn a_failing_commit_reaches_the_feed_only_once_it_succeeds() {
    let db = temp_db();
    let store = full_disk(&db);
    let mut feed = store.subscribe();
    let message = "x".repeat(300);
    store
        .submit(batch(
            "docker:runner-node",
            (1..=500).map(|i| log(i, &message)).collect(),
        ))
        .expect("submit");
    match next_change(&mut feed) {
        Change::WriteHealth(WriteHealth::Failing { error, .. }) => {
            assert!(error.starts_with("disk full while writing"), "{error}");
        }
        other => panic!("not the failure: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        feed.try_recv().is_err(),
        "nothing committed, nothing published"
    );

    store.set_max_page_count(1_000_000);
    store.flush().expect("flush");
    assert_eq!(next_change(&mut feed), Change::WriteHealth(WriteHealth::Ok));
    let commit = committed(next_change(&mut feed));
    assert_eq!(
        commit.entries,
        NewRows {
            after: 0,
            last: 500
        }
    );
}

/// Stores `entries` once in one transaction and once one transaction per entry.
fn stored_whole_and_cut(entries: &[Entry]) -> [(Db, Store); 2] {
    let whole = temp_db();
    let store = open(&whole);
    submit(&store, batch("docker:runner-node", entries.to_vec()));
    let cut = temp_db();
    let mut config = config(&cut);
    config.batch_max_entries = 1;
    let cut_store = Store::open(config).expect("open");
    for e in entries {
        cut_store
            .submit(batch("docker:runner-node", vec![e.clone()]))
            .expect("submit");
    }
    cut_store.flush().expect("flush");
    [(whole, store), (cut, cut_store)]
}

#[test]
fn a_failed_task_gets_its_stderr_first_line_and_the_stderr_entry_its_execution_id() {
    // Two executions interleaved: A fails (stderr, metrics, completion), B succeeds but
    // printed on stderr too. Parsed by the real parser, stored whole and cut into one
    // transaction per entry (the stderr entry is then stored before its completion).
    let h = |t: &str, level: &str, msg: &str| {
        format!("2025-11-24 13:55:{t} {level}: @truebit/worker-runner-node:2.4.1 {msg}\n")
    };
    let metrics = |exit: i64| {
        format!(r#"Command execution stdout: {{"elapsed":"1000","wasi":{{"exitCode":{exit}}}}}"#)
    };
    let text = [
        h(
            "34",
            "info",
            &format!("Starting task execution executionId: {EXEC_A}"),
        ),
        h(
            "34",
            "info",
            &format!("Starting task execution executionId: {EXEC_B}"),
        ),
        h(
            "40",
            "debug",
            "Command execution stderr: thread 'main' panicked at src/main.rs:42:17:",
        ),
        "called `Result::unwrap()` on an `Err` value: InvalidInput\n".to_owned(),
        h("40", "debug", &metrics(101)),
        h("40", "info", &format!("Execution {EXEC_A} completed")),
        h("41", "info", "Heartbeat sent"),
        h(
            "50",
            "debug",
            "Command execution stderr: warning: flag --fast is deprecated",
        ),
        h("50", "debug", &metrics(0)),
        h("50", "info", &format!("Execution {EXEC_B} completed")),
    ]
    .concat();
    let entries = truebit_monitor::parser::parse_all(text.as_bytes());
    assert_eq!(entries.len(), 9);
    for (_db, store) in stored_whole_and_cut(&entries) {
        let a = store.task(EXEC_A).expect("read").expect("task A");
        assert_eq!(a.status, TaskStatus::Failed);
        assert_eq!(
            a.error.as_deref(),
            Some("thread 'main' panicked at src/main.rs:42:17:")
        );
        let b = store.task(EXEC_B).expect("read").expect("task B");
        assert_eq!(b.status, TaskStatus::Completed);
        assert_eq!(b.error, None, "a task that succeeded has no failure reason");
        let kinds_of = |id: &str| -> Vec<Kind> {
            store
                .task_entries(id, 100)
                .expect("entries")
                .iter()
                .map(|e| e.kind)
                .collect()
        };
        assert_eq!(
            kinds_of(EXEC_A),
            [
                Kind::ExecutionStarted,
                Kind::ExecutionStderr,
                Kind::ExecutionCompleted
            ]
        );
        assert_eq!(
            kinds_of(EXEC_B),
            [
                Kind::ExecutionStarted,
                Kind::ExecutionStderr,
                Kind::ExecutionCompleted
            ]
        );
    }
}

#[test]
fn stderr_that_no_completion_can_take_unambiguously_stays_without_execution() {
    // Both executions print stderr before either completes: two blocks waiting, no guess.
    let h = |t: &str, msg: &str| {
        format!("2025-11-24 13:55:{t} info: @truebit/worker-runner-node:2.4.1 {msg}\n")
    };
    let fail = r#"Command execution stdout: {"elapsed":"1000","wasi":{"exitCode":1}}"#;
    let text = [
        h("40", "Command execution stderr: Error: first"),
        h("40", "Command execution stderr: Error: second"),
        h("40", fail),
        h("40", &format!("Execution {EXEC_A} completed")),
        h("41", fail),
        h("41", &format!("Execution {EXEC_B} completed")),
    ]
    .concat();
    let entries = truebit_monitor::parser::parse_all(text.as_bytes());
    for (_db, store) in stored_whole_and_cut(&entries) {
        for id in [EXEC_A, EXEC_B] {
            let task = store.task(id).expect("read").expect("task");
            assert_eq!((task.status, task.error), (TaskStatus::Failed, None));
        }
        let stderr: Vec<Option<String>> = store
            .entries(100)
            .expect("entries")
            .into_iter()
            .filter(|e| e.kind == Kind::ExecutionStderr)
            .map(|e| e.execution_id)
            .collect();
        assert_eq!(stderr, [None, None]);
    }
}

#[test]
fn ground_truth_every_failed_task_of_a_generated_log_has_exactly_its_stderr_first_line() {
    // The generator prints a failing run's stderr, metrics and completion one after the
    // other, so the reason of each completion can be read off the text itself.
    let (text, expected) = truebit_monitor::demo::docker_fixture(7, 400);
    let mut truth = std::collections::HashMap::new();
    let mut waiting: Option<String> = None;
    for line in text.lines() {
        if let Some((_, first)) = line.split_once("Command execution stderr: ") {
            waiting = Some(first.trim().to_owned());
        } else if let Some((_, rest)) = line.split_once(" Execution ") {
            if let Some((id, _)) = rest.split_once(" completed") {
                if let Some(reason) = waiting.take() {
                    truth.insert(id.to_owned(), reason);
                }
            }
        }
    }
    assert!(expected.tasks_failed > 20, "{expected:?}");
    let entries = truebit_monitor::parser::parse_all(text.as_bytes());
    let db = temp_db();
    let store = open(&db);
    // Many transactions, cut wherever 97 entries end.
    for chunk in entries.chunks(97) {
        store
            .submit(batch("docker:runner-node", chunk.to_vec()))
            .expect("submit");
    }
    store.flush().expect("flush");
    let tasks = store.tasks(10_000).expect("tasks");
    let failed: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Failed)
        .collect();
    assert_eq!(failed.len() as u64, expected.tasks_failed);
    assert_eq!(
        truth.len() as u64,
        expected.tasks_failed,
        "every failure printed stderr"
    );
    for t in &tasks {
        match t.status {
            TaskStatus::Failed => assert_eq!(
                t.error.as_deref(),
                Some(truth[&t.execution_id].as_str()),
                "{}",
                t.execution_id
            ),
            _ => assert_eq!(t.error, None, "{}", t.execution_id),
        }
    }
    let reasons: std::collections::HashSet<&str> = truth.values().map(String::as_str).collect();
    assert!(reasons.len() >= 4, "several distinct reasons: {reasons:?}");
    // Every stderr entry belongs to its task.
    let stderr_entries: Vec<_> = store
        .entries(1_000_000)
        .expect("entries")
        .into_iter()
        .filter(|e| e.kind == Kind::ExecutionStderr)
        .collect();
    assert_eq!(stderr_entries.len(), truth.len());
    for e in stderr_entries {
        let id = e.execution_id.expect("attributed");
        assert!(
            e.message.contains(truth[&id].as_str()),
            "{id}: {}",
            e.message
        );
    }
    // The overview's grouping adds up.
    let groups = store
        .failure_reasons(i64::MIN, i64::MAX, 100)
        .expect("failure reasons");
    assert_eq!(
        groups.iter().map(|g| g.tasks).sum::<u64>(),
        expected.tasks_failed
    );
    assert!(groups.windows(2).all(|w| w[0].tasks >= w[1].tasks));
}

/// The versions of an entry a live source emitted before a continuation line reopened it
/// (`Entry::replaces`): whether the version replaced was stored by an earlier transaction
/// or comes in the same one, the store keeps the longest version only, counted once, as a
/// row newer than every row before it.
#[test]
fn a_longer_version_of_an_entry_replaces_the_stored_one() {
    use truebit_monitor::model::LineMeta;
    use truebit_monitor::parser::{Parser, ParserConfig};
    let header = |n: i64| {
        format!("2025-11-24 13:55:34 error: {LOGGER}:2.4.1 Command execution stderr: Error: {n}")
    };
    let meta = |n: i64| LineMeta {
        received_ns: Some(T0 * SECOND + n),
        pos: Pos::new(0, n),
    };
    // Three versions of each of two entries: line 1, then 1-2, then 1-3 (and 11...).
    let mut parser = Parser::new(ParserConfig::default());
    let mut versions = Vec::new();
    for first in [1, 11] {
        parser.push_line(header(first).as_bytes(), meta(first), &mut versions);
        parser.flush(&mut versions);
        for n in first + 1..first + 3 {
            parser.push_line(
                format!("    at line {n}").as_bytes(),
                meta(n),
                &mut versions,
            );
            parser.flush(&mut versions);
        }
    }
    assert_eq!(versions.len(), 6);
    assert_eq!(
        versions[2].replaces.map(|r| r.entry.pos),
        Some(Pos::new(0, 2))
    );
    let batch = |entries: &[Entry]| Batch {
        source: "live".into(),
        entries: entries.to_vec(),
        cursor: entries.last().map(|e| Cursor {
            pos: e.pos,
            parser_state: String::new(),
        }),
        container_events: Vec::new(),
    };
    let db = temp_db();
    let store = open(&db);
    let mut feed = store.subscribe();
    // The first entry: each version in its own transaction; the feed names the stored
    // version each one removed, for live views.
    let mut removed = Vec::new();
    for v in &versions[..3] {
        store
            .submit(batch(std::slice::from_ref(v)))
            .expect("submit");
        store.flush().expect("flush");
        removed.push(committed(next_change(&mut feed)).removed_entries.clone());
    }
    assert_eq!(removed, vec![vec![], vec![1], vec![2]]);
    // The second: all three in one transaction (nothing stored was removed).
    store.submit(batch(&versions[3..])).expect("submit");
    store.flush().expect("flush");
    assert_eq!(
        committed(next_change(&mut feed)).removed_entries,
        Vec::<i64>::new()
    );
    let stored = store.entries_after(0, 100).expect("entries");
    let got: Vec<_> = stored
        .iter()
        .map(|e| (e.id, e.message.as_str(), e.pos))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                3,
                "Command execution stderr: Error: 1\n    at line 2\n    at line 3",
                Pos::new(0, 3)
            ),
            (
                4,
                "Command execution stderr: Error: 11\n    at line 12\n    at line 13",
                Pos::new(0, 13)
            ),
        ]
    );
    let summary = store.summary().expect("summary");
    assert_eq!(summary.entries, 2);
    assert_eq!(summary.entries_of(Kind::ExecutionStderr), 2, "{summary:?}");
}
