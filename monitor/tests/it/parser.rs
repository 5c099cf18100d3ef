//! Integration tests: parser.
//!
//! Every `tests/data/parser/*.log` fixture is parsed with `parse_all` and compared with
//! its YAML snapshot in `snapshots/`. Generated logs check exact counts and restarts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use truebit_monitor::demo::{self, LogGenerator};
use truebit_monitor::model::{Entry, Event, Kind, LineMeta, Pos, TaskStatus};
use truebit_monitor::parser::{parse_all, Parser, ParserConfig};

/// Strings longer than this are shortened in snapshots (the >16 KiB payload fixture).
const SNAPSHOT_STRING_MAX: usize = 400;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/parser")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).expect("fixture exists")
}

fn shorten(s: &mut String) {
    if s.len() > SNAPSHOT_STRING_MAX {
        let mut cut = SNAPSHOT_STRING_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = s.len();
        s.truncate(cut);
        s.push_str(&format!("… ({total} bytes)"));
    }
}

/// Entries as snapshotted: long strings shortened, the rest untouched.
fn for_snapshot(mut entries: Vec<Entry>) -> Vec<Entry> {
    for e in &mut entries {
        shorten(&mut e.message);
        if let Some(Event::TaskReceived(t)) = &mut e.event {
            if let Some(input) = &mut t.input {
                shorten(input);
            }
        }
    }
    entries
}

#[test]
fn fixtures_match_their_snapshots() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures found: {names:?}");
    for name in names {
        let entries = for_snapshot(parse_all(&fixture(&name)));
        let stem = name.trim_end_matches(".log");
        insta::with_settings!({ description => format!("tests/data/parser/{name}"), omit_expression => true }, {
            insta::assert_yaml_snapshot!(format!("fixture_{stem}"), entries);
        });
    }
}

fn kinds(entries: &[Entry]) -> Vec<Kind> {
    entries.iter().map(|e| e.kind).collect()
}

#[test]
fn lifecycle_fixture_has_every_kind_in_order() {
    let entries = parse_all(&fixture("lifecycle.log"));
    assert_eq!(
        kinds(&entries),
        vec![
            Kind::Log,
            Kind::NodeRegistered,
            Kind::TaskReceived,
            Kind::SlotTaken,
            Kind::TaskDownloaded,
            Kind::ExecutionStarted,
            Kind::ExecutionMetrics,
            Kind::ExecutionCompleted,
            Kind::OutcomePublished,
            Kind::SlotReleased,
            Kind::Log,
            Kind::Invoice,
            Kind::Log,
            Kind::Log,
            Kind::Log,
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.kind == Kind::Log || e.event.is_some()));
}

#[test]
fn payload_larger_than_a_docker_frame_is_parsed_whole() {
    let entries = parse_all(&fixture("large_payload.log"));
    assert_eq!(kinds(&entries), vec![Kind::TaskReceived, Kind::SlotTaken]);
    let Some(Event::TaskReceived(task)) = &entries[0].event else {
        panic!("no task: {:?}", entries[0])
    };
    assert_eq!(task.execution_id, "3f0c7a52-9a4e-4c1e-8a57-1b2f0e9d4c11");
    let input = task.input.as_deref().unwrap_or_default();
    assert!(input.len() > 20_000, "input has {} bytes", input.len());
    assert!(input.starts_with(r#"{"function":"main","data":"QQQ"#) && input.ends_with(r#"QQQ"}"#));
    assert_eq!(entries[0].received_ns, Some(1_763_992_800_000_000_001));
}

#[test]
fn concurrent_fixture_never_guesses_metrics() {
    let entries = parse_all(&fixture("concurrent.log"));
    let attributed: Vec<(String, Option<u64>)> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::ExecutionCompleted {
                execution_id,
                metrics,
                ..
            }) => Some((execution_id.clone(), metrics.as_ref().and_then(|m| m.steps))),
            _ => None,
        })
        .collect();
    assert_eq!(
        attributed,
        vec![
            ("3f0c7a52-9a4e-4c1e-8a57-1b2f0e9d4c11".to_owned(), None),
            ("9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f".to_owned(), None),
            ("c2a4e6f8-1b3d-4f5a-9c7e-2d4f6a8b0c1e".to_owned(), None),
            ("5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9".to_owned(), Some(4)),
        ]
    );
}

/// Task counts by status `[received, executing, completed, failed]` as a store would
/// derive them from the entries.
fn task_statuses(entries: &[Entry]) -> [u64; 4] {
    let mut open = HashSet::new();
    let mut started = HashSet::new();
    let mut counts = [0u64; 4];
    for e in entries {
        match &e.event {
            Some(Event::TaskReceived(t)) => {
                open.insert(t.execution_id.clone());
            }
            Some(Event::ExecutionStarted { execution_id }) => {
                started.insert(execution_id.clone());
            }
            Some(Event::ExecutionCompleted {
                execution_id,
                metrics,
                ..
            }) => {
                assert!(
                    open.remove(execution_id),
                    "completion of an unknown task {execution_id}"
                );
                started.remove(execution_id);
                let exit = metrics
                    .as_ref()
                    .and_then(|m| m.exit_code)
                    .expect("generated completions carry metrics");
                counts[if exit == 0 { 2 } else { 3 }] += 1;
            }
            _ => {}
        }
    }
    counts[1] = started.len() as u64;
    counts[0] = open.len() as u64 - counts[1];
    counts
}

#[test]
fn generated_fixtures_parse_to_the_expected_counts() {
    let (plain, expected) = demo::fixture(11, 300);
    check_counts(&parse_all(plain.as_bytes()), &expected);
    assert_eq!(expected.raw_entries, 0);
    let (docker, expected) = demo::docker_fixture(12, 100);
    check_counts(&parse_all(docker.as_bytes()), &expected);
    assert_eq!(expected.raw_entries, 2);
}

fn check_counts(entries: &[Entry], expected: &demo::Expected) {
    assert_eq!(entries.len() as u64, expected.entries);
    for kind in Kind::ALL {
        let n = entries.iter().filter(|e| e.kind == kind).count() as u64;
        assert_eq!(n, expected.kind(kind), "{kind:?}");
    }
    // Every recognised line carries its data.
    assert!(entries
        .iter()
        .all(|e| matches!(e.kind, Kind::Log | Kind::Raw) || e.event.is_some()));
    assert_eq!(
        task_statuses(entries),
        [
            expected.tasks(TaskStatus::Received),
            expected.tasks(TaskStatus::Executing),
            expected.tasks(TaskStatus::Completed),
            expected.tasks(TaskStatus::Failed),
        ]
    );
    assert_eq!(expected.tasks_unfinished, 0);
    assert_eq!(expected.metrics_attributed, expected.tasks_created);
    assert_eq!(
        entries.iter().filter(|e| e.kind == Kind::Raw).count() as u64,
        expected.raw_entries
    );
    let versions: HashSet<_> = entries
        .iter()
        .filter_map(|e| e.version.as_deref())
        .collect();
    assert_eq!(versions, HashSet::from([expected.version.as_str()]));
    assert!(expected.tasks_failed > 0 && expected.tasks_completed > expected.tasks_failed * 4);
    let invoices: Vec<_> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Invoice(i)) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(invoices.len() as u64, expected.invoices);
    let penalties = invoices
        .iter()
        .filter(|i| i.line_items.iter().any(|l| l.operation == "penalty"))
        .count();
    assert_eq!(penalties as u64, expected.penalties);
    assert!(invoices
        .iter()
        .all(|i| i.line_items.len() >= 2 && i.execution_id.is_some()));
}

#[test]
fn an_unbounded_generator_stream_matches_its_running_counts() {
    let mut g = LogGenerator::new(99, 1_763_992_534).with_colour(false);
    let mut log = Vec::new();
    g.write_docker_log(&mut log, 20_000).expect("write");
    let expected = g.expected();
    let entries = parse_all(&log);
    assert_eq!(expected.lines, 20_000);
    // The last entry may be cut short by the line budget, but it is still one entry.
    assert_eq!(entries.len() as u64, expected.entries);
    let completions = entries
        .iter()
        .filter(|e| e.kind == Kind::ExecutionCompleted)
        .count() as u64;
    assert_eq!(
        completions,
        expected.tasks_completed + expected.tasks_failed
    );
}

/// Parses `lines`, restarting the parser after `restart_after` lines like a source does:
/// the new parser resumes after the last emitted entry, with the state saved with it.
fn parse_with_restart(lines: &[&[u8]], restart_after: usize) -> Vec<Entry> {
    let meta = |i: usize| LineMeta {
        received_ns: None,
        pos: Pos::new(0, i as i64 + 1),
    };
    let mut first = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    let mut saved = first.state();
    for (i, line) in lines.iter().enumerate().take(restart_after) {
        let before = out.len();
        first.push_line(line, meta(i), &mut out);
        if out.len() > before {
            saved = first.state();
        }
    }
    // Crash: the pending entry is lost; resume after the last committed entry.
    let cursor = out.last().map_or(0, |e| e.pos.minor as usize);
    let json = serde_json::to_string(&saved).expect("state serializes");
    let mut second = Parser::new(ParserConfig::default());
    second.restore(serde_json::from_str(&json).expect("state deserializes"));
    for (i, line) in lines.iter().enumerate().skip(cursor) {
        second.push_line(line, meta(i), &mut out);
    }
    second.flush(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_restart_anywhere_gives_the_same_entries(seed in 0u64..1000, at in 0usize..2_000) {
        let (text, _) = demo::docker_fixture(seed, 25);
        let lines: Vec<&[u8]> = text.as_bytes().split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        let once = parse_with_restart(&lines, lines.len());
        let restarted = parse_with_restart(&lines, at % (lines.len() + 1));
        prop_assert_eq!(once, restarted);
    }

    #[test]
    fn corrupted_generated_logs_never_lose_a_line(
        seed in 0u64..1000,
        cuts in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..6)), 0..20),
    ) {
        let (text, _) = demo::docker_fixture(seed, 3);
        let mut bytes = text.into_bytes();
        for (at, noise) in cuts {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, noise);
        }
        let entries = parse_all(&bytes);
        let lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
        let represented: usize = entries.iter().map(|e| e.message.split('\n').count()).sum();
        // Lines that cannot be empty once stripped (no escape, no timestamp, no compose
        // prefix, more than a `\r`) are never skipped.
        let must_keep = lines
            .iter()
            .filter(|l| {
                !l.is_empty()
                    && **l != b"\r"
                    && !l.contains(&0x1b)
                    && !l.contains(&b'|')
                    && !l.first().is_some_and(u8::is_ascii_digit)
            })
            .count();
        prop_assert!(represented <= lines.len(), "represented {} of {} lines", represented, lines.len());
        prop_assert!(represented >= must_keep, "represented {} < {}", represented, must_keep);
    }
}
