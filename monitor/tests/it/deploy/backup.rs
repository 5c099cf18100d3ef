//! The restore recipe of docs/OPERATIONS.md, run as written (its shell script, with the
//! volume and backup folders replaced by temporary ones) over a database whose `-wal`
//! was left behind by a killed writer; and its page-size conversion, as written, on a
//! database with the 4 KiB pages of the builds before 16 KiB.

use super::*;

/// The uid:gid of this process (from /proc: no libc call).
fn owner() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let id = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|ids| ids.split_whitespace().next())
            .expect("id line")
            .to_owned()
    };
    format!("{}:{}", id("Uid:"), id("Gid:"))
}

/// The script of the `sh -c '…'` restore example in docs/OPERATIONS.md.
fn restore_script() -> String {
    let doc = read("docs/OPERATIONS.md");
    let from = doc
        .find("To restore:")
        .expect("OPERATIONS.md explains the restore");
    let rest = &doc[from..];
    let start = rest
        .find("sh -c '")
        .expect("the restore example runs sh -c")
        + 7;
    let len = rest[start..].find('\'').expect("the script ends");
    rest[start..start + len].to_owned()
}

fn sqlite(sqlite3: &Path, db: &Path, sql: &str) -> Output {
    Command::new(sqlite3)
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 runs")
}

fn entries(sqlite3: &Path, db: &Path) -> String {
    let out = sqlite(sqlite3, db, "SELECT count(*) FROM entries");
    format!("{}{}", stdout(&out).trim(), stderr(&out).trim())
}

fn import(db: &Path, log: &Path) {
    let db = db.display().to_string();
    let log = log.display().to_string();
    let out = monitor(
        &["import", &log],
        &[("DB_PATH", &db), ("LOG_RETENTION_DAYS", "0")],
    );
    assert!(out.status.success(), "import: {}", stderr(&out));
}

/// Leaves a `-wal` holding a committed change (every entry deleted) that was never
/// checkpointed: the writer is killed while it has the database open.
fn leave_stale_wal(sqlite3: &Path, db: &Path) {
    let mut writer = Command::new(sqlite3)
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sqlite3 runs");
    let mut input = writer.stdin.take().expect("stdin");
    input
        .write_all(b"PRAGMA wal_autocheckpoint=0;\nDELETE FROM entries;\n.print committed\n")
        .expect("statements");
    input.flush().expect("flush");
    let answers = BufReader::new(writer.stdout.take().expect("stdout"));
    let mut lines = answers.lines().map(|l| l.expect("sqlite3 answers"));
    assert!(lines.any(|l| l == "committed"), "sqlite3 committed");
    writer.kill().expect("SIGKILL");
    let _ = writer.wait();
    drop(input);
}

#[test]
fn the_documented_restore_is_safe_next_to_a_stale_wal() {
    let sqlite3 = find_program("sqlite3", "TRUEBIT_TEST_SQLITE3");
    let dir = support::tempdir();
    let (data, backup) = (dir.path().join("data"), dir.path().join("backup"));
    for d in [&data, &backup] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let db = data.join("monitor.db");
    let (first, _) = truebit_monitor::demo::fixture(301, 10);
    let (second, _) = truebit_monitor::demo::fixture(302, 10);
    import(&db, &support::write(&dir.path().join("a.log"), &first));
    let copy = backup.join("monitor-2025-01-31.db");
    let out = sqlite(&sqlite3, &db, &format!(".backup '{}'", copy.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    let backed_up = entries(&sqlite3, &copy);
    import(&db, &support::write(&dir.path().join("b.log"), &second));
    assert_ne!(entries(&sqlite3, &db), backed_up, "the database moved on");

    leave_stale_wal(&sqlite3, &db);
    let wal = data.join("monitor.db-wal");
    assert!(
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
        "a stale -wal with frames"
    );

    // What the stale log does to a plain copy put in its place: the restore is lost.
    let control = dir.path().join("control");
    std::fs::create_dir(&control).expect("mkdir");
    for name in ["monitor.db-wal", "monitor.db-shm"] {
        std::fs::copy(data.join(name), control.join(name)).expect("copy");
    }
    std::fs::copy(&copy, control.join("monitor.db")).expect("copy");
    assert_ne!(entries(&sqlite3, &control.join("monitor.db")), backed_up);

    // The recipe, as documented.
    let script = restore_script()
        .replace("/data/", &format!("{}/", data.display()))
        .replace("/backup/", &format!("{}/", backup.display()))
        .replace("10001:10001", &owner());
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    let out = sqlite(&sqlite3, &db, "PRAGMA integrity_check");
    assert_eq!(stdout(&out).trim(), "ok");
    assert_eq!(entries(&sqlite3, &db), backed_up);
    let path = db.display().to_string();
    let out = monitor(
        &["api-key", "list"],
        &[("DB_PATH", &path), ("LOG_RETENTION_DAYS", "0")],
    );
    assert!(
        out.status.success(),
        "the monitor opens it: {}",
        stderr(&out)
    );
    assert_eq!(entries(&sqlite3, &db), backed_up);
}

/// The SQL of the first `sqlite3 "$DB" '…'` line after `marker` in docs/OPERATIONS.md.
fn documented_sql(marker: &str) -> String {
    let doc = read("docs/OPERATIONS.md");
    let from = doc
        .find(marker)
        .unwrap_or_else(|| panic!("OPERATIONS.md says {marker:?}"));
    let rest = &doc[from..];
    let start = rest
        .find("sqlite3 \"$DB\" '")
        .expect("a sqlite3 command follows")
        + "sqlite3 \"$DB\" '".len();
    let len = rest[start..].find('\'').expect("the SQL ends");
    rest[start..start + len].to_owned()
}

#[test]
fn the_documented_page_size_conversion_keeps_everything_and_the_monitor_opens_it() {
    let sqlite3 = find_program("sqlite3", "TRUEBIT_TEST_SQLITE3");
    let dir = support::tempdir();
    let db = dir.path().join("monitor.db");
    let (log, _) = truebit_monitor::demo::fixture(303, 20);
    import(&db, &support::write(&dir.path().join("a.log"), &log));
    let page_size = |db: &Path| {
        stdout(&sqlite(&sqlite3, db, "PRAGMA page_size"))
            .trim()
            .to_owned()
    };
    assert_eq!(page_size(&db), "16384", "a new database");
    // A database from before 16 KiB pages.
    let out = sqlite(
        &sqlite3,
        &db,
        "PRAGMA journal_mode=DELETE; PRAGMA page_size=4096; VACUUM; PRAGMA journal_mode=WAL;",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(page_size(&db), "4096");
    let before = entries(&sqlite3, &db);
    assert_ne!(before, "0");
    let tasks = |db: &Path| {
        stdout(&sqlite(
            &sqlite3,
            db,
            "SELECT count(*), sum(status = 'failed') FROM tasks",
        ))
        .trim()
        .to_owned()
    };
    let tasks_before = tasks(&db);

    let sql = documented_sql("To convert one");
    assert!(
        sql.contains("page_size=16384") && sql.contains("VACUUM"),
        "{sql}"
    );
    let out = sqlite(&sqlite3, &db, &sql);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    assert_eq!(page_size(&db), "16384");
    let out = sqlite(&sqlite3, &db, "PRAGMA integrity_check");
    assert_eq!(stdout(&out).trim(), "ok");
    assert_eq!(entries(&sqlite3, &db), before);
    assert_eq!(tasks(&db), tasks_before);
    assert!(
        !dir.path().join("monitor.db-journal").exists(),
        "no rollback journal left"
    );
    let path = db.display().to_string();
    let out = monitor(
        &["api-key", "list"],
        &[("DB_PATH", &path), ("LOG_RETENTION_DAYS", "0")],
    );
    assert!(
        out.status.success(),
        "the monitor opens it: {}",
        stderr(&out)
    );
    assert_eq!(page_size(&db), "16384", "and keeps its pages");
    assert_eq!(entries(&sqlite3, &db), before);
}
