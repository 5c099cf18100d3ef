//! `truebit-monitor import` as a user runs it: plain, gzipped, Docker json-file and
//! compose-prefixed logs, exact counts, and a second import that adds nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use truebit_monitor::demo::fixture;

use crate::support;

fn import(db: &Path, files: &[&Path]) -> serde_json::Value {
    import_with(db, files, &[("LOG_RETENTION_DAYS", "0")])
}

fn import_with(db: &Path, files: &[&Path], env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("--db")
        .arg(db)
        .env_remove("LOG_RETENTION_DAYS")
        .env_remove("TASK_RETENTION_DAYS")
        .envs(env.iter().copied())
        .arg("import")
        .arg("--json")
        .args(files)
        .output()
        .expect("run import");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A finished import leaves the database alone, its write-ahead log checkpointed.
    for suffix in ["-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        assert!(!Path::new(&path).exists(), "{path} remains after import");
    }
    serde_json::from_slice(&out.stdout).expect("import --json prints JSON")
}

/// Docker's json-file format, with long lines split into 16 KiB partial records.
fn to_json_file(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let time = format!("2025-11-24T13:{:02}:{:02}.{:09}Z", (i / 60) % 60, i % 60, i);
        let mut rest = line;
        while rest.len() > 16 * 1024 {
            let mut cut = 16 * 1024;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let rec = serde_json::json!({"log": &rest[..cut], "stream": "stdout", "time": time});
            out.push_str(&rec.to_string());
            out.push('\n');
            rest = &rest[cut..];
        }
        let rec = serde_json::json!({"log": format!("{rest}\n"), "stream": "stdout", "time": time});
        out.push_str(&rec.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn every_log_format_imports_with_exact_counts_and_only_once() {
    let dir = support::tempdir();
    let (plain, e1) = fixture(201, 30);
    let (gz_text, e2) = fixture(202, 30);
    let (json_text, e3) = fixture(203, 30);
    let (compose_text, e4) = fixture(204, 30);
    let plain_path = support::write(&dir.path().join("node.log"), &plain);
    let gz_path = dir.path().join("node-2025-11-23.log.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).expect("gz"),
        flate2::Compression::fast(),
    );
    gz.write_all(gz_text.as_bytes()).expect("gzip");
    gz.finish().expect("gzip finish");
    assert!(
        json_text.lines().any(|l| l.len() > 16 * 1024),
        "the fixture has a line longer than 16 KiB"
    );
    let json_path = support::write(
        &dir.path().join("container-json.log"),
        &to_json_file(&json_text),
    );
    let compose: String = compose_text
        .lines()
        .map(|l| format!("runner-node  | {l}\n"))
        .collect();
    let compose_path = support::write(&dir.path().join("compose.log"), &compose);

    let db = dir.path().join("m.db");
    let files = [
        plain_path.as_path(),
        gz_path.as_path(),
        json_path.as_path(),
        compose_path.as_path(),
    ];
    let first = import(&db, &files);
    let parts = [&e1, &e2, &e3, &e4];
    let want =
        |f: fn(&truebit_monitor::demo::Expected) -> u64| parts.iter().map(|e| f(e)).sum::<u64>();
    let imported = &first["imported"];
    assert_eq!(imported["files"], 4);
    assert_eq!(imported["entries"], want(|e| e.entries), "{first:#}");
    assert_eq!(
        imported["raw_entries"],
        want(|e| e.raw_entries),
        "{first:#}"
    );
    assert_eq!(imported["invoices"], want(|e| e.invoices), "{first:#}");
    let db_tasks = &first["database"]["tasks_by_status"];
    assert_eq!(
        db_tasks["completed"],
        want(|e| e.tasks_completed),
        "{first:#}"
    );
    assert_eq!(db_tasks["failed"], want(|e| e.tasks_failed), "{first:#}");
    assert_eq!(first["database"]["invoices"], want(|e| e.invoices));

    // The same files again (the plain one renamed): nothing new.
    let renamed = dir.path().join("copy-of-node.log");
    std::fs::copy(&plain_path, &renamed).expect("copy");
    let files2 = [
        renamed.as_path(),
        gz_path.as_path(),
        json_path.as_path(),
        compose_path.as_path(),
    ];
    let second = import(&db, &files2);
    assert_eq!(second["imported"]["entries"], 0, "{second:#}");
    assert_eq!(
        second["imported"]["skipped_lines"], second["imported"]["lines"],
        "{second:#}"
    );
    assert_eq!(
        second["database"],
        first["database"].clone().tap_size(&second["database"])
    );
}

trait TapSize {
    fn tap_size(self, other: &serde_json::Value) -> serde_json::Value;
}

impl TapSize for serde_json::Value {
    /// The database summary with the file size taken from `other` (the size may differ
    /// after a second open; everything else must not).
    fn tap_size(mut self, other: &serde_json::Value) -> serde_json::Value {
        self["db_size_bytes"] = other["db_size_bytes"].clone();
        self
    }
}

#[test]
fn a_missing_file_is_a_one_line_error() {
    let dir = support::tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("--db")
        .arg(dir.path().join("m.db"))
        .args(["import", "/nonexistent/node.log"])
        .output()
        .expect("run import");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot read /nonexistent/node.log"), "{err}");
}

/// What a spawned `truebit-monitor import` did: exit code (`None`: killed at the
/// deadline), stdout, stderr, and its peak resident memory (VmHWM) in KiB.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_kib: u64,
}

/// Runs `truebit-monitor --db DB import ARGS…`, sampling its peak memory every 10 ms
/// (VmHWM only grows, so the last sample before it exits is its peak), and kills it after
/// `deadline`.
fn run_import(
    db: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    deadline: std::time::Duration,
) -> Run {
    run_import_as(None, db, args, env, deadline)
}

/// [`run_import`] as the user `uid` (with its group `uid`) when given.
fn run_import_as(
    uid: Option<u32>,
    db: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    deadline: std::time::Duration,
) -> Run {
    use std::os::unix::process::CommandExt as _;
    use std::process::Stdio;
    let out_dir = support::tempdir();
    let (out_path, err_path) = (
        out_dir.path().join("import.out"),
        out_dir.path().join("import.err"),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"));
    command
        .arg("--db")
        .arg(db)
        .arg("import")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let mut child = command.spawn().expect("run import");
    let status = format!("/proc/{}/status", child.id());
    let started = std::time::Instant::now();
    let mut peak_kib = 0;
    let code = loop {
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Run {
        code,
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
        peak_kib,
    }
}

/// Writes a (big) file through a buffer.
fn write_file(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    write(&mut f).expect("write");
    f.flush().expect("flush");
}

/// Imports `path` into `m.db` next to it with `--json` (no log retention: the test lines
/// are dated 2025) within `deadline`; asserts that it succeeded with its peak memory under
/// [`IMPORT_PEAK_MIB`] (`what` names the input in the message) and returns its JSON
/// summary and the database.
fn import_in_bounded_memory(
    path: &Path,
    deadline: std::time::Duration,
    what: &str,
) -> (serde_json::Value, PathBuf) {
    let db = path.with_file_name("m.db");
    let run = run_import(
        &db,
        &["--json".as_ref(), path.as_os_str()],
        &[("LOG_RETENTION_DAYS", "0")],
        deadline,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.peak_kib < IMPORT_PEAK_MIB * 1024,
        "import of {what} peaked at {} MiB",
        run.peak_kib / 1024
    );
    (serde_json::from_str(&run.stdout).expect("JSON"), db)
}

/// The bound on an import's peak memory these tests hold it to (the unoptimized binary).
const IMPORT_PEAK_MIB: u64 = 128;

#[test]
fn a_200_mb_line_is_cut_at_the_line_bound_and_memory_stays_bounded() {
    use truebit_monitor::source::decode::{truncation_mark, MAX_LINE_BYTES};
    let dir = support::tempdir();
    let path = dir.path().join("long-line.log");
    let long = 200 * 1024 * 1024;
    write_file(&path, |f| {
        f.write_all(b"2025-11-24 13:55:34 info: before\n")?;
        f.write_all(b"2025-11-24 13:55:35 info: ")?;
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..long / chunk.len() {
            f.write_all(&chunk)?;
        }
        f.write_all(b"\n2025-11-24 13:55:36 info: after\n")
    });
    let (summary, db) =
        import_in_bounded_memory(&path, std::time::Duration::from_secs(300), "a 200 MiB line");
    assert_eq!(summary["imported"]["entries"], 3, "{summary:#}");
    assert_eq!(summary["imported"]["lines"], 3, "{summary:#}");

    let store = support::open_store(&db);
    let entries = store.entries(10).expect("entries");
    let messages: Vec<&str> = entries.iter().rev().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0], "before");
    assert_eq!(messages[2], "after");
    // The long line keeps its first MiB (the header included) and says what it left out.
    let header = "2025-11-24 13:55:35 info: ".len();
    let mark = truncation_mark((header + long - MAX_LINE_BYTES) as u64);
    let cut = messages[1];
    assert_eq!(cut.len(), MAX_LINE_BYTES - header + mark.len());
    assert!(cut.ends_with(&mark), "{}", &cut[cut.len() - 60..]);
    assert!(cut[..cut.len() - mark.len()].bytes().all(|b| b == b'x'));
}

#[test]
fn a_gzip_bomb_imports_in_bounded_memory() {
    use truebit_monitor::source::decode::{truncation_mark, MAX_LINE_BYTES};
    // 1 GiB of zeros without a newline: one gzip member of 64 MiB written 16 times
    // (a multi-member file decodes as their concatenation), about 1 MB on disk.
    let dir = support::tempdir();
    let path = dir.path().join("bomb.log.gz");
    let member = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..64 {
            gz.write_all(&zeros).expect("gzip");
        }
        gz.finish().expect("gzip finish")
    };
    let members = 16;
    let mut file = std::fs::File::create(&path).expect("create");
    for _ in 0..members {
        file.write_all(&member).expect("write");
    }
    drop(file);
    let expanded = members * 64 * 1024 * 1024;
    assert!(std::fs::metadata(&path).expect("size").len() < 2 * 1024 * 1024);

    let (summary, db) = import_in_bounded_memory(
        &path,
        std::time::Duration::from_secs(600),
        "a 1 GiB gzip bomb",
    );
    assert_eq!(summary["imported"]["bytes"], expanded, "{summary:#}");
    assert_eq!(summary["imported"]["entries"], 1, "{summary:#}");
    let store = support::open_store(&db);
    let entries = store.entries(2).expect("entries");
    assert_eq!(entries.len(), 1);
    let mark = truncation_mark((expanded - MAX_LINE_BYTES) as u64);
    assert!(entries[0].message.ends_with(&mark));
}

/// The effective user id of the tests (from /proc: no libc call).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("Uid line")
}

#[test]
fn importing_into_a_database_it_cannot_write_is_a_one_line_error() {
    use std::os::unix::fs::PermissionsExt as _;
    // Root writes anything: then the import runs as nobody (65534), which is who the
    // permissions below keep out.
    let uid = (euid() == 0).then_some(65534);
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let dir = support::tempdir();
    set_mode(dir.path(), 0o755);
    let (text, _) = fixture(205, 5);
    let log = support::write(&dir.path().join("node.log"), &text);
    set_mode(&log, 0o644);

    // A read-only file, and a writable file in a read-only folder (no room for its
    // write-ahead log): each is one line naming the database, at once.
    let file_case = dir.path().join("ro-file");
    let folder_case = dir.path().join("ro-folder");
    for (folder, file_mode, folder_mode) in
        [(&file_case, 0o444, 0o755), (&folder_case, 0o666, 0o555)]
    {
        std::fs::create_dir(folder).expect("mkdir");
        let db = folder.join("m.db");
        let first = import(&db, &[log.as_path()]);
        assert!(first["imported"]["entries"].as_u64() > Some(0));
        for stale in ["m.db-wal", "m.db-shm"] {
            let _ = std::fs::remove_file(folder.join(stale));
        }
        set_mode(&db, file_mode);
        set_mode(folder, folder_mode);
        let run = run_import_as(
            uid,
            &db,
            &[log.as_os_str()],
            &[],
            std::time::Duration::from_secs(30),
        );
        set_mode(folder, 0o755);
        assert_eq!(run.code, Some(1), "{}: {}", db.display(), run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("cannot write database {}", db.display()))
                && run.stderr.contains("read-only"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn imported_old_history_survives_retention_counted_from_when_it_was_stored() {
    // The fixture's lines are dated November 2025, older than the default 30 days of log
    // retention; stored today, they are kept 30 days from today.
    let dir = support::tempdir();
    let (text, expected) = fixture(206, 30);
    let log = support::write(&dir.path().join("old-node.log"), &text);
    let db = dir.path().join("m.db");
    let first = import_with(&db, &[log.as_path()], &[]);
    assert_eq!(first["imported"]["entries"], expected.entries, "{first:#}");
    assert_eq!(first["database"]["entries"], expected.entries, "{first:#}");
    assert_eq!(first["retention"]["log_days"], 30, "{first:#}");
    assert_eq!(first["retention"]["task_days"], serde_json::Value::Null);
    let in_30_days = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let until = first["retention"]["log_entries_kept_until"]
        .as_str()
        .expect("a date");
    assert!(
        [in_30_days, in_30_days - time::Duration::days(1)]
            .iter()
            .any(|t| until == format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())),
        "{until}"
    );

    // Another command opens the database (and prunes at open), then the same import
    // again: nothing was deleted, nothing is added.
    let out = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("--db")
        .arg(&db)
        .env_remove("LOG_RETENTION_DAYS")
        .args(["api-key", "list"])
        .output()
        .expect("api-key list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = import_with(&db, &[log.as_path()], &[]);
    assert_eq!(second["imported"]["entries"], 0, "{second:#}");
    assert_eq!(
        second["database"]["entries"], expected.entries,
        "{second:#}"
    );

    // The summary says it in words too.
    let out = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("--db")
        .arg(&db)
        .env_remove("LOG_RETENTION_DAYS")
        .env_remove("TASK_RETENTION_DAYS")
        .arg("import")
        .arg(&log)
        .output()
        .expect("import");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "log entries are kept 30 days from when they were stored: these until {until} (UTC)"
        )),
        "{text}"
    );
    assert!(
        text.contains("tasks, invoices and container events are kept forever"),
        "{text}"
    );
}

#[test]
fn big_entries_import_in_bounded_memory() {
    // 2,100 entries of 100 KiB each (a pretty-printed JSON blob per line): the batches
    // waiting for the writer are bounded by their bytes, not only by their entry count.
    let dir = support::tempdir();
    let path = dir.path().join("big-entries.log");
    let count = 2_100;
    write_file(&path, |f| {
        let blob = format!("{{\"output\":\"{}\"}}", "7".repeat(100 * 1024));
        for i in 0..count {
            let (m, s) = ((i / 60) % 60, i % 60);
            writeln!(f, "2025-11-24 13:{m:02}:{s:02} info: result {blob}")?;
        }
        Ok(())
    });
    let (summary, _) = import_in_bounded_memory(
        &path,
        std::time::Duration::from_secs(600),
        &format!("{count} entries of 100 KiB"),
    );
    assert_eq!(summary["imported"]["entries"], count, "{summary:#}");
}
