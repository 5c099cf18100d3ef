//! `truebit-monitor import` as a user runs it: plain, gzipped, Docker json-file and
//! compose-prefixed logs, exact counts, and a second import that adds nothing.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use truebit_monitor::demo::fixture;

use crate::support;

fn import(db: &Path, files: &[&Path]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .arg("--db")
        .arg(db)
        .env("LOG_RETENTION_DAYS", "0")
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
