//! The store through its public API on a real SQLite file: the new-node cap, the
//! per-node rate, duplicates and retention; and the binary's `key` command.

use std::process::Command;
use std::sync::Arc;

use truebit_aggregator::gate::{Limits, Reason};
use truebit_aggregator::ingest::verify_batch;
use truebit_aggregator::store::Store;

use crate::support::*;

#[tokio::test]
async fn new_nodes_beyond_the_hourly_cap_and_a_node_beyond_its_rate_are_refused_and_counted() {
    let dir = tempdir();
    let limits = Limits {
        new_nodes_per_hour: 3,
        node_per_hour: 2,
        ..Limits::default()
    };
    let store = Store::open(&dir.path().join("a.db"), limits).expect("store");
    let now = NOON + 4 * 300;
    let reports = (1..=5)
        .map(|n| SimNode::new(n).report(NOON, 0, &[]))
        .collect();
    let verdicts = store.ingest(Arc::new(reports), now).await.expect("stored");
    assert_eq!(
        verdicts,
        vec![
            Ok(()),
            Ok(()),
            Ok(()),
            Err(Reason::NewNodes),
            Err(Reason::NewNodes)
        ]
    );
    // Node 1 sent one report this hour; a second is fine, a third is over its rate.
    let node = SimNode::new(1);
    let more = vec![
        node.report(NOON + 300, 0, &[]),
        node.report(NOON + 600, 0, &[]),
    ];
    let verdicts = store.ingest(Arc::new(more), now).await.expect("stored");
    assert_eq!(verdicts, vec![Ok(()), Err(Reason::NodeRate)]);
    let totals = store.totals().await.expect("totals");
    assert_eq!((totals.nodes, totals.reports), (3, 4));
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["a.db", "a.db-wal", "a.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .expect("database file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[tokio::test]
async fn retention_deletes_old_reports_and_nodes_not_seen_since() {
    let dir = tempdir();
    let limits = Limits {
        max_age_secs: 40 * 86_400,
        ..Limits::default()
    };
    let store = Store::open(&dir.path().join("a.db"), limits).expect("store");
    let now = NOON + 31 * 86_400;
    let old = SimNode::new(1).report(NOON, 1, &[Task::ok(1)]);
    let recent = SimNode::new(2).report(NOON + 30 * 86_400, 1, &[Task::ok(1)]);
    store
        .ingest(Arc::new(vec![old, recent]), now)
        .await
        .expect("stored");
    let deleted = store
        .retention(NOON + 86_400)
        .await
        .expect("retention runs");
    assert_eq!(deleted, 1);
    let totals = store.totals().await.expect("totals");
    assert_eq!(
        (
            totals.nodes,
            totals.reports,
            totals.task_items,
            totals.invoice_items
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn random_and_mutated_bytes_never_panic_and_are_never_accepted() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let valid = SimNode::new(1).wire(NOON, 1, &[Task::ok(1)]);
    let mut payloads = Vec::new();
    for _ in 0..300 {
        let len = rng.gen_range(0..600);
        payloads.push((0..len).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>());
        let mut m = valid.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
        }
        if m != valid {
            payloads.push(m);
        }
    }
    let (reports, rejected) = verify_batch(&payloads);
    assert!(reports.is_empty(), "a damaged report verified");
    assert_eq!(rejected.len(), payloads.len());
}

#[test]
fn the_key_command_prints_the_same_public_key_every_time() {
    let dir = tempdir();
    let key = dir.path().join("k/aggregator.key");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_truebit-aggregator"))
            .arg("key")
            .arg("--key")
            .arg(&key)
            .env_clear()
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let first = run();
    assert_eq!(first.trim().len(), 64);
    assert!(first.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(run(), first);
    // The example configuration is printed as documented.
    let out = Command::new(env!("CARGO_BIN_EXE_truebit-aggregator"))
        .arg("--print-example-config")
        .env_clear()
        .output()
        .expect("runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        truebit_aggregator::config::EXAMPLE_CONFIG
    );
}

#[tokio::test]
async fn a_version_1_database_loses_its_item_ids_and_keeps_its_rows() {
    let dir = tempdir();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("db");
        conn.execute_batch(
            "CREATE TABLE task_items (window INTEGER NOT NULL, node INTEGER NOT NULL,
                id BLOB NOT NULL, chain INTEGER, outcome TEXT NOT NULL, duration TEXT NOT NULL,
                gas TEXT NOT NULL, memory TEXT NOT NULL, cached INTEGER);
             CREATE INDEX task_items_window ON task_items(window);
             CREATE TABLE invoice_items (window INTEGER NOT NULL, node INTEGER NOT NULL,
                id BLOB NOT NULL, op TEXT NOT NULL, steps TEXT NOT NULL);
             INSERT INTO task_items VALUES (1717243200, 1, x'abcdef', 1, 'completed', '1-5s', '1M-10M', '64-256', 0);
             INSERT INTO invoice_items VALUES (1717243200, 1, x'abcdef', 'charge', '1M-10M');
             PRAGMA user_version = 1;",
        )
        .expect("a version 1 database");
    }
    let store = Store::open(&path, Limits::default()).expect("migrated");
    let totals = store.totals().await.expect("totals");
    assert_eq!((totals.task_items, totals.invoice_items), (1, 1));
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("db");
    for table in ["task_items", "invoice_items"] {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("columns");
        assert!(!columns.contains(&"id".to_owned()), "{table}: {columns:?}");
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 4, "and then the current schema");
}

#[tokio::test]
async fn a_strict_reports_counts_are_taken_back_by_the_shift_in_the_rollups() {
    let dir = tempdir();
    let store = Store::open(&dir.path().join("s.db"), Limits::default()).expect("store");
    let node = SimNode::new(1);
    let mut report = node.report(NOON, 0, &[]);
    report.level = truebit_protocol::report::Level::Strict;
    report.tasks.clear();
    report.invoices.clear();
    // What a strict monitor sent for (5, 1, 0) with noise (+2, 0, -3) and the shift.
    let shift = truebit_protocol::noise::STRICT_SHIFT;
    report.counts.received = 5 + 2 + shift;
    report.counts.completed = 1 + shift;
    report.counts.failed = shift - 3;
    let verdicts = store
        .ingest(Arc::new(vec![report]), NOON + 400)
        .await
        .expect("stored");
    assert_eq!(verdicts, vec![Ok(())]);
    let rows = store.hour_rows(NOON).await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].1, rows[0].2, rows[0].3), (7, 1, -3));
}

#[tokio::test]
async fn a_version_3_database_gets_the_node_window_index_and_keeps_its_reports() {
    let dir = tempdir();
    let path = dir.path().join("v3.db");
    let node = SimNode::new(1);
    let mut down = node.report(NOON + 600, 0, &[]);
    down.status.state = truebit_protocol::report::NodeState::Down;
    {
        let store = Store::open(&path, Limits::default()).expect("store");
        let reports = vec![
            node.report(NOON, 0, &[]),
            down,
            SimNode::new(2).report(NOON + 300, 0, &[]),
        ];
        let verdicts = store
            .ingest(Arc::new(reports), NOON + 3_600)
            .await
            .expect("stored");
        assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
    }
    // What version 3 had: the same tables, no index on (node, window).
    {
        let conn = rusqlite::Connection::open(&path).expect("db");
        conn.execute_batch("DROP INDEX reports_node_window; PRAGMA user_version = 3;")
            .expect("a version 3 database");
    }
    let store = Store::open(&path, Limits::default()).expect("migrated");
    let id = node.report(NOON, 0, &[]).node;
    assert_eq!(
        store
            .node_windows(id, NOON, NOON + 3_600)
            .await
            .expect("windows"),
        vec![(NOON, true), (NOON + 600, false)]
    );
    assert_eq!(
        store
            .node_windows(id, NOON + 300, NOON + 600)
            .await
            .expect("windows"),
        Vec::new(),
        "the period's end is exclusive, its start inclusive"
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("db");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 4);
    let plan: Vec<String> = conn
        .prepare("EXPLAIN QUERY PLAN SELECT window FROM reports WHERE node = 1 AND window >= 0 AND window < 99")
        .expect("prepare")
        .query_map([], |r| r.get(3))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("plan");
    assert!(
        plan.iter().any(|p| p.contains("reports_node_window")),
        "{plan:?}"
    );
}
