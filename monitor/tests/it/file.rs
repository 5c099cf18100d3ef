//! The file source on real files: appends, rotation, truncation, and a monitor restart
//! in between, with exact counts.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use truebit_monitor::config::Settings;
use truebit_monitor::demo::{fixture, Expected};
use truebit_monitor::model::TaskStatus;
use truebit_monitor::store::Summary;

use crate::support::{self, InProcess};

fn counts(s: &Summary) -> (u64, u64, u64, u64) {
    let st = |k: TaskStatus| s.tasks_in(k);
    (
        st(TaskStatus::Completed),
        st(TaskStatus::Failed),
        s.invoices,
        s.entries,
    )
}

fn sum(parts: &[&Expected]) -> (u64, u64, u64, u64) {
    parts.iter().fold((0, 0, 0, 0), |c, e| {
        (
            c.0 + e.tasks_completed,
            c.1 + e.tasks_failed,
            c.2 + e.invoices,
            c.3 + e.entries,
        )
    })
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn monitor(log: &Path, db: &Path) -> InProcess {
    let config = Settings {
        db_path: Some(db.to_owned()),
        log_file: Some(log.to_owned()),
        log_retention_days: Some(0),
        ..Default::default()
    }
    .resolve()
    .expect("config");
    InProcess::start(config)
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailed_file_survives_rotation_truncation_and_restart() {
    let dir = support::tempdir();
    let log = dir.path().join("node.log");
    let db = dir.path().join("m.db");
    let parts: Vec<(String, Expected)> = (0..5).map(|i| fixture(100 + i, 15)).collect();

    append(&log, &parts[0].0);
    let m = monitor(&log, &db);
    let want = sum(&[&parts[0].1]);
    support::wait_summary(&m.store, "the first part", WAIT, |s| counts(s) == want).await;

    append(&log, &parts[1].0);
    let want = sum(&[&parts[0].1, &parts[1].1]);
    support::wait_summary(&m.store, "appended lines", WAIT, |s| counts(s) == want).await;

    // Rotation: the file is renamed and a new one takes its place.
    std::fs::rename(&log, dir.path().join("node.log.1")).expect("rotate");
    append(&log, &parts[2].0);
    let want = sum(&[&parts[0].1, &parts[1].1, &parts[2].1]);
    support::wait_summary(&m.store, "the rotated file", WAIT, |s| counts(s) == want).await;

    // Truncation in place (copytruncate), noticed before new lines arrive.
    std::fs::File::create(&log).expect("truncate");
    tokio::time::sleep(Duration::from_millis(400)).await;
    append(&log, &parts[3].0);
    let want = sum(&[&parts[0].1, &parts[1].1, &parts[2].1, &parts[3].1]);
    support::wait_summary(&m.store, "the truncated file", WAIT, |s| counts(s) == want).await;
    m.stop().await;

    // A restart resumes at the exact byte: nothing read twice.
    append(&log, &parts[4].0);
    let m = monitor(&log, &db);
    let all: Vec<&Expected> = parts.iter().map(|p| &p.1).collect();
    let want = sum(&all);
    support::wait_summary(&m.store, "lines appended while stopped", WAIT, |s| {
        counts(s) == want
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&m.store.summary().expect("summary")), want);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_longer_than_the_bound_is_cut_and_marked_while_it_is_written() {
    use truebit_monitor::source::decode::{truncation_mark, MAX_LINE_BYTES};
    let dir = support::tempdir();
    let log = dir.path().join("node.log");
    let db = dir.path().join("m.db");
    append(&log, "2025-11-24 13:55:34 info: before\n");
    let m = monitor(&log, &db);
    support::wait_summary(&m.store, "the first line", WAIT, |s| s.entries == 1).await;

    // 3 MiB written in pieces, without a newline for a while, then its end and a line.
    let header = "2025-11-24 13:55:35 info: ";
    append(&log, header);
    let piece = "z".repeat(256 * 1024);
    for _ in 0..12 {
        append(&log, &piece);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    append(&log, "\n2025-11-24 13:55:36 info: after\n");
    support::wait_summary(&m.store, "the long line and the next", WAIT, |s| {
        s.entries == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let entries = m.store.entries(10).expect("entries");
    let messages: Vec<&str> = entries.iter().rev().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 3);
    assert_eq!((messages[0], messages[2]), ("before", "after"));
    let mark = truncation_mark((header.len() + 12 * piece.len() - MAX_LINE_BYTES) as u64);
    let cut = messages[1];
    assert_eq!(cut.len(), MAX_LINE_BYTES - header.len() + mark.len());
    assert!(cut.ends_with(&mark), "{}", &cut[cut.len() - 60..]);
    m.stop().await;
}
