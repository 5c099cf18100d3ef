use proptest::prelude::*;

use super::*;

const LOGGER: &str = "@truebit/worker-runner-node";
const UUID: &str = "3f0c7a52-9a4e-4c1e-8a57-1b2f0e9d4c11";
const UUID2: &str = "9b1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f";

fn header(time: &str, level: &str, message: &str) -> String {
    format!("2025-11-24 {time} {level}: {LOGGER}:2.4.1 {message}")
}

fn metrics_line(time: &str, exit: i64) -> String {
    header(
        time,
        "debug",
        &format!(r#"Command execution stdout: {{"elapsed":"1000","wasi":{{"exitCode":{exit}}}}}"#),
    )
}

fn completion_line(time: &str, id: &str) -> String {
    header(time, "info", &format!("Execution {id} completed"))
}

/// Pushes lines with `pos = (0, index + 1)` and the given receive times, then flushes.
fn run(lines: &[(&str, Option<i64>)]) -> Vec<Entry> {
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    for (i, (line, received_ns)) in lines.iter().enumerate() {
        let pos = Pos::new(0, i as i64 + 1);
        p.push_line(
            line.as_bytes(),
            LineMeta {
                received_ns: *received_ns,
                pos,
            },
            &mut out,
        );
    }
    p.flush(&mut out);
    out
}

fn run_plain(lines: &[&str]) -> Vec<Entry> {
    run(&lines.iter().map(|l| (*l, None)).collect::<Vec<_>>())
}

fn completed_metrics(e: &Entry) -> Option<Option<&Metrics>> {
    match &e.event {
        Some(Event::ExecutionCompleted { metrics, .. }) => Some(metrics.as_deref()),
        _ => None,
    }
}

#[test]
fn header_line_becomes_a_log_entry_with_all_fields() {
    let out = run_plain(&[&header(
        "13:55:34",
        "\x1b[32minfo\x1b[39m",
        "Listening for tasks",
    )]);
    assert_eq!(
        out,
        vec![Entry {
            pos: Pos::new(0, 1),
            received_ns: None,
            node_time: Some(1_763_992_534),
            level: Some(Level::Info),
            logger: Some(LOGGER.into()),
            version: Some("2.4.1".into()),
            message: "Listening for tasks".into(),
            kind: Kind::Log,
            execution_id: None,
            event: None,
            replaces: None,
        }]
    );
}

#[test]
fn unparsed_line_is_kept_as_raw() {
    let out = run_plain(&["npm notice New major version of npm available!"]);
    assert_eq!(
        out,
        vec![Entry {
            pos: Pos::new(0, 1),
            received_ns: None,
            node_time: None,
            level: None,
            logger: None,
            version: None,
            message: "npm notice New major version of npm available!".into(),
            kind: Kind::Raw,
            execution_id: None,
            event: None,
            replaces: None,
        }]
    );
}

#[test]
fn each_line_before_the_first_entry_is_its_own_raw_entry() {
    let out = run_plain(&[
        "> start",
        "\x1b[1m> node dist/index.js\x1b[0m",
        &header("13:55:34", "info", "up"),
    ]);
    let got: Vec<_> = out.iter().map(|e| (e.kind, e.message.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Kind::Raw, "> start"),
            (Kind::Raw, "> node dist/index.js"),
            (Kind::Log, "up")
        ]
    );
}

#[test]
fn empty_line_without_pending_entry_is_skipped() {
    let out = run_plain(&["", "\x1b[0m", "2025-11-24T13:55:34.1Z ", "  "]);
    let got: Vec<_> = out
        .iter()
        .map(|e| (e.kind, e.message.as_str(), e.pos))
        .collect();
    assert_eq!(got, vec![(Kind::Raw, "  ", Pos::new(0, 4))]);
}

#[test]
fn continuation_and_blank_lines_belong_to_the_pending_entry() {
    let out = run_plain(&[
        &header("13:55:34", "error", "Error: connect ECONNREFUSED"),
        "    at TCPConnectWrap.afterConnect (node:net:1595:16)",
        "",
        "  cause: x",
        &header("13:55:35", "info", "next"),
    ]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].message,
        "Error: connect ECONNREFUSED\n    at TCPConnectWrap.afterConnect (node:net:1595:16)\n\n  cause: x"
    );
    assert_eq!(out[0].pos, Pos::new(0, 4));
    assert_eq!(out[1].pos, Pos::new(0, 5));
}

#[test]
fn entry_takes_received_time_of_its_first_line() {
    let out = run(&[
        (&header("13:55:34", "info", "a"), Some(10)),
        ("  more", Some(20)),
    ]);
    assert_eq!((out[0].received_ns, out[0].pos), (Some(10), Pos::new(0, 2)));
}

#[test]
fn docker_timestamp_is_the_received_time_only_when_meta_has_none() {
    let line = format!(
        "2025-11-24T13:55:34.000000042Z {}",
        header("13:55:34", "info", "a")
    );
    let out = run(&[(&line, None), (&line, Some(7))]);
    assert_eq!(out[0].received_ns, Some(1_763_992_534_000_000_042));
    assert_eq!(out[1].received_ns, Some(7));
    assert_eq!(out[1].message, "a");
}

#[test]
fn compose_prefixed_lines_are_parsed_like_plain_ones() {
    let out = run_plain(&[
        &format!("runner-node  | {}", header("13:55:34", "info", "a")),
        "runner-node  |     at x",
        &format!(
            "runner-node  | 2025-11-24T13:55:35Z {}",
            header("13:55:35", "warn", "b")
        ),
    ]);
    let got: Vec<_> = out.iter().map(|e| (e.kind, e.message.as_str())).collect();
    assert_eq!(got, vec![(Kind::Log, "a\n    at x"), (Kind::Log, "b")]);
}

#[test]
fn node_utc_offset_is_subtracted_from_node_time() {
    let mut p = Parser::new(ParserConfig {
        node_utc_offset_secs: 3600,
    });
    let mut out = Vec::new();
    p.push_line(
        header("14:55:34", "info", "a").as_bytes(),
        LineMeta::default(),
        &mut out,
    );
    p.flush(&mut out);
    assert_eq!(out[0].node_time, Some(1_763_992_534));
}

#[test]
fn carriage_return_and_invalid_utf8_are_cleaned() {
    let mut line = header("13:55:34", "info", "bytes ").into_bytes();
    line.extend_from_slice(b"\xff\xfe ok\r");
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    p.push_line(&line, LineMeta::default(), &mut out);
    p.push_line(b"\x00\x01\xc3", LineMeta::default(), &mut out);
    p.flush(&mut out);
    assert_eq!(
        out[0].message,
        "bytes \u{fffd}\u{fffd} ok\n\u{0}\u{1}\u{fffd}"
    );
}

#[test]
fn oversized_message_continues_as_entries_of_its_kind() {
    let chunk = "x".repeat(MAX_MESSAGE_BYTES / 2);
    let out = run_plain(&[&header("13:55:34", "info", "big"), &chunk, &chunk, "tail"]);
    let got: Vec<_> = out
        .iter()
        .map(|e| (e.kind, e.message.len(), e.pos))
        .collect();
    assert_eq!(
        got,
        vec![
            (Kind::Log, 3 + 1 + chunk.len(), Pos::new(0, 2)),
            (Kind::Log, chunk.len(), Pos::new(0, 3)),
            (Kind::Log, 4, Pos::new(0, 4)),
        ]
    );
}

#[test]
fn metrics_are_attributed_to_the_next_completion() {
    let out = run_plain(&[
        &metrics_line("13:55:34", 0),
        &completion_line("13:55:34", UUID),
    ]);
    assert_eq!(out[0].kind, Kind::ExecutionMetrics);
    assert_eq!(out[1].execution_id.as_deref(), Some(UUID));
    let m = completed_metrics(&out[1]).flatten().expect("attributed");
    assert_eq!((m.elapsed_ns, m.exit_code), (Some(1000), Some(0)));
}

#[test]
fn a_metrics_block_is_attributed_once() {
    let out = run_plain(&[
        &metrics_line("13:55:34", 0),
        &completion_line("13:55:34", UUID),
        &completion_line("13:55:35", UUID2),
    ]);
    assert!(completed_metrics(&out[1]).flatten().is_some());
    assert_eq!(completed_metrics(&out[2]), Some(None));
}

#[test]
fn two_waiting_metrics_blocks_are_ambiguous_and_dropped() {
    let out = run_plain(&[
        &metrics_line("13:55:34", 0),
        &metrics_line("13:55:34", 1),
        &completion_line("13:55:35", UUID),
        &metrics_line("13:55:36", 2),
        &completion_line("13:55:36", UUID2),
    ]);
    assert_eq!(completed_metrics(&out[2]), Some(None));
    let m = completed_metrics(&out[4]).flatten().expect("attributed");
    assert_eq!(m.exit_code, Some(2));
}

#[test]
fn stale_metrics_are_not_attributed() {
    // Node time only: 6 s apart.
    let out = run_plain(&[
        &metrics_line("13:55:34", 0),
        &completion_line("13:55:40", UUID),
    ]);
    assert_eq!(completed_metrics(&out[1]), Some(None));
    // Receive time wins over node time when both entries have one.
    let out = run(&[
        (&metrics_line("13:55:34", 0), Some(0)),
        (
            &completion_line("13:55:34", UUID),
            Some(METRICS_WINDOW_NS + 1),
        ),
    ]);
    assert_eq!(completed_metrics(&out[1]), Some(None));
    let out = run(&[
        (&metrics_line("13:55:30", 0), Some(0)),
        (&completion_line("13:55:40", UUID), Some(METRICS_WINDOW_NS)),
    ]);
    assert!(completed_metrics(&out[1]).flatten().is_some());
}

#[test]
fn a_metrics_block_counts_from_its_last_line() {
    // The node paused 4.5 s inside the block; the completion follows 3.5 s after its end.
    let s = 1_000_000_000;
    let out = run(&[
        (
            &header("13:55:30", "debug", "Command execution stdout: {"),
            Some(0),
        ),
        (r#"  "elapsed": "1000","#, Some(s)),
        (r#"  "wasi": { "exitCode": 3 }"#, Some(s)),
        ("}", Some(4 * s + s / 2)),
        (&completion_line("13:55:38", UUID), Some(8 * s)),
    ]);
    let m = completed_metrics(&out[1]).flatten().expect("attributed");
    assert_eq!(m.exit_code, Some(3));
}

/// What `Parser::pending` says after each line.
fn completion_after(lines: &[&str]) -> Vec<Completion> {
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let meta = LineMeta {
                received_ns: None,
                pos: Pos::new(0, i as i64 + 1),
            };
            p.push_line(line.as_bytes(), meta, &mut out);
            p.pending()
        })
        .collect()
}

#[test]
fn an_open_json_block_keeps_the_entry_open_until_it_closes() {
    use Completion::{Complete, Open};
    assert_eq!(
        completion_after(&[
            &header("13:55:34", "debug", "Command execution stdout: {"),
            r#"  "elapsed": "1000","#,
            r#"  "wasi": { "exitCode": 3 },"#,
            r#"  "note": "a } and a ] and a \" inside a string","#,
            r#"  "list": ["#,
            "    1",
            "  ]",
            "}",
        ]),
        vec![Open, Open, Open, Open, Open, Open, Open, Complete]
    );
    // A string still open across a line keeps the block open.
    assert_eq!(
        completion_after(&[
            &header(
                "13:55:34",
                "info",
                r#"InvoiceSubscriber invoice received: {"a":"x"#
            ),
            r#"y"}"#,
        ]),
        vec![Open, Complete]
    );
}

#[test]
fn a_line_ending_with_a_colon_announces_more() {
    use Completion::{Complete, Open};
    assert_eq!(
        completion_after(&[
            &header("13:55:34", "debug", "Command execution stdout:"),
            "{",
            r#"  "elapsed": "1000""#,
            "}",
        ]),
        vec![Open, Open, Open, Complete]
    );
    assert_eq!(
        completion_after(&[
            &header(
                "13:55:34",
                "debug",
                "Command execution stderr: thread 'main' panicked at src/main.rs:42:17: "
            ),
            "called `Result::unwrap()` on an `Err` value: InvalidInput",
        ]),
        vec![Open, Complete]
    );
}

#[test]
fn one_line_entries_look_complete_and_new_headers_finish_open_ones() {
    use Completion::{Complete, Nothing, Open};
    assert_eq!(
        completion_after(&[
            "junk before the first entry",
            &header("13:55:34", "info", "Listening for tasks"),
            &header(
                "13:55:34",
                "warn",
                r#"quotes outside a block are text: "abc"#
            ),
            &metrics_line("13:55:34", 0),
            &header("13:55:35", "debug", "Command execution stdout: {"),
            &completion_line("13:55:35", UUID),
        ]),
        vec![Nothing, Complete, Complete, Complete, Open, Complete]
    );
}

#[test]
fn a_stale_block_does_not_make_a_fresh_one_ambiguous() {
    let out = run_plain(&[
        &metrics_line("13:55:00", 5),
        &metrics_line("13:55:34", 0),
        &completion_line("13:55:35", UUID),
    ]);
    assert_eq!(
        completed_metrics(&out[2])
            .flatten()
            .and_then(|m| m.exit_code),
        Some(0)
    );
}

#[test]
fn unusable_metrics_are_not_waiting_for_a_completion() {
    let out = run_plain(&[
        &header("13:55:34", "debug", "Command execution stdout: not json"),
        &completion_line("13:55:34", UUID),
    ]);
    assert_eq!(
        (out[0].kind, &out[0].event),
        (Kind::ExecutionMetrics, &None)
    );
    assert_eq!(completed_metrics(&out[1]), Some(None));
}

#[test]
fn state_restores_a_waiting_metrics_block_after_restart() {
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    p.push_line(
        metrics_line("13:55:34", 3).as_bytes(),
        LineMeta::default(),
        &mut out,
    );
    assert!(p.state().pending_metrics.is_empty(), "not emitted yet");
    p.flush(&mut out);
    let saved = serde_json::to_string(&p.state()).expect("serialize");
    let state: ParserState = serde_json::from_str(&saved).expect("deserialize");
    assert_eq!(state.pending_metrics.len(), 1);
    assert_eq!(state.pending_metrics[0].node_time, Some(1_763_992_534));

    let mut resumed = Parser::new(ParserConfig::default());
    resumed.restore(state);
    let mut out = Vec::new();
    resumed.push_line(
        completion_line("13:55:35", UUID).as_bytes(),
        LineMeta::default(),
        &mut out,
    );
    resumed.flush(&mut out);
    assert_eq!(
        completed_metrics(&out[0])
            .flatten()
            .and_then(|m| m.exit_code),
        Some(3)
    );
    assert_eq!(
        resumed.state(),
        ParserState {
            last_kind: Some(Kind::ExecutionCompleted),
            ..ParserState::default()
        }
    );
}

#[test]
fn parse_all_positions_are_byte_offsets_after_each_line() {
    let text = format!(
        "junk\n{}\n  cont\n{}",
        header("13:55:34", "info", "a"),
        header("13:55:35", "info", "b")
    );
    let out = parse_all(text.as_bytes());
    let got: Vec<_> = out.iter().map(|e| e.pos.minor).collect();
    let second_start = text.rfind('\n').expect("newline") as i64 + 1;
    assert_eq!(got, vec![5, second_start, text.len() as i64]);
}

#[test]
fn trailing_newline_does_not_add_a_line() {
    assert_eq!(parse_all(b"a\nb\n").len(), 2);
    assert_eq!(parse_all(b"").len(), 0);
}

/// Whether the parser would see nothing in `line` once transport and escapes are gone.
fn is_clean_empty(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut buf = Vec::new();
    line::strip_ansi_into(line, &mut buf);
    line::strip_transport(&buf, &mut DayCache::default())
        .0
        .is_empty()
}

/// Feeds lines one by one and checks that every line is represented exactly once: the
/// messages' line count equals the input line count minus the skipped empty lines.
fn check_no_line_is_lost(lines: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, line) in lines.iter().enumerate() {
        if !p.has_pending() && is_clean_empty(line) {
            skipped += 1;
        }
        p.push_line(
            line,
            LineMeta {
                received_ns: None,
                pos: Pos::new(0, i as i64),
            },
            &mut out,
        );
    }
    p.flush(&mut out);
    let represented: usize = out.iter().map(|e| e.message.split('\n').count()).sum();
    prop_assert_eq!(represented, lines.len() - skipped);
    prop_assert!(
        out.windows(2).all(|w| w[0].pos <= w[1].pos),
        "entries in order"
    );
    Ok(())
}

fn realistic_line() -> impl Strategy<Value = Vec<u8>> {
    let samples = vec![
        header(
            "13:55:34",
            "\x1b[32minfo\x1b[39m",
            "Semaphore TaskSubscriber processing started. Using slot 2/4",
        ),
        metrics_line("13:55:34", 0),
        completion_line("13:55:35", UUID),
        header(
            "13:55:34",
            "info",
            &format!("Message received from task_created: {{\"executionId\":\"{UUID}\""),
        ),
        header(
            "13:55:34",
            "info",
            r#"InvoiceSubscriber invoice received: {"invoiceId":1,"lineItem":[{}]}"#,
        ),
        header(
            "13:55:34",
            "info",
            "Node with address 0x558f4b6bd6e2a6e1b5a0c1c2d3e4f5a6b7c8c5d7 registered",
        ),
        format!(
            "2025-11-24T13:55:34.1Z runner-node  | {}",
            header("13:55:34", "warn", "x")
        ),
        "  \"elapsed\": 5,".to_owned(),
        "}".to_owned(),
        "    at Object.<anonymous> (/app/index.js:1:1)".to_owned(),
        String::new(),
        "2025-11-24T13:55:34.123Z ".to_owned(),
    ];
    (
        prop::sample::select(samples),
        any::<usize>(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(line, cut, noise)| {
            // Keep the sample, or cut it anywhere and splice random bytes in.
            let mut bytes = line.into_bytes();
            if !noise.is_empty() {
                let at = cut % (bytes.len() + 1);
                bytes.splice(at..at, noise);
            }
            bytes.retain(|&c| c != b'\n');
            bytes
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic_and_lose_no_line(text in prop::collection::vec(any::<u8>(), 0..2048)) {
        let lines: Vec<Vec<u8>> = text.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
        check_no_line_is_lost(&lines)?;
        let _ = parse_all(&text);
    }

    #[test]
    fn random_log_lines_never_panic_and_lose_no_line(lines in prop::collection::vec(realistic_line(), 0..64)) {
        check_no_line_is_lost(&lines)?;
    }

    #[test]
    fn header_like_noise_never_panics(
        prefix in "[0-9 :T.Z+-]{0,40}",
        level in "[a-z ]{0,6}:?",
        rest in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut line = format!("2025-11-24 13:55:34{prefix}{level} ").into_bytes();
        line.extend_from_slice(&rest);
        line.retain(|&c| c != b'\n');
        check_no_line_is_lost(&[line.clone(), line])?;
    }
}

fn stderr_line(time: &str, first: &str) -> String {
    header(time, "debug", &format!("Command execution stderr: {first}"))
}

fn completed_stderr(e: &Entry) -> Option<Option<&Stderr>> {
    match &e.event {
        Some(Event::ExecutionCompleted { stderr, .. }) => Some(stderr.as_deref()),
        _ => None,
    }
}

#[test]
fn a_completion_takes_the_stderr_block_before_it_with_where_its_entry_is() {
    let out = run(&[
        (
            &stderr_line("13:55:34", "thread 'main' panicked at src/main.rs:42:17:"),
            Some(100),
        ),
        (
            "called `Result::unwrap()` on an `Err` value: InvalidInput",
            Some(200),
        ),
        (&metrics_line("13:55:34", 101), Some(300)),
        (&completion_line("13:55:35", UUID), Some(400)),
    ]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].kind, Kind::ExecutionStderr);
    assert_eq!(out[0].execution_id, None, "emitted before its completion");
    let stderr = completed_stderr(&out[2]).flatten().expect("attributed");
    assert_eq!(
        stderr,
        &Stderr {
            text: "thread 'main' panicked at src/main.rs:42:17:\ncalled `Result::unwrap()` on an `Err` value: InvalidInput".into(),
            // The entry's position (its last line) and its stored time (its first line's).
            entry: EntryRef {
                pos: Pos::new(0, 2),
                time_ns: 100
            },
        }
    );
    assert_eq!(
        stderr.reason().as_deref(),
        Some("thread 'main' panicked at src/main.rs:42:17:")
    );
    assert_eq!(
        completed_metrics(&out[2])
            .flatten()
            .and_then(|m| m.exit_code),
        Some(101)
    );
}

#[test]
fn stderr_after_the_metrics_block_is_taken_too_and_without_receive_times_node_time_counts() {
    let out = run_plain(&[
        &metrics_line("13:55:34", 1),
        &stderr_line("13:55:34", "Error: bad input"),
        &completion_line("13:55:35", UUID),
    ]);
    let stderr = completed_stderr(&out[2]).flatten().expect("attributed");
    assert_eq!(stderr.text, "Error: bad input");
    assert_eq!(
        stderr.entry,
        EntryRef {
            pos: Pos::new(0, 2),
            time_ns: 1_763_992_534 * 1_000_000_000
        }
    );
}

#[test]
fn two_stderr_blocks_waiting_are_ambiguous_and_neither_is_attributed() {
    // Two executions fail at once; their stderr blocks interleave before either
    // completion: no guess, and the second completion finds nothing left either.
    let out = run_plain(&[
        &stderr_line("13:55:34", "Error: first"),
        &stderr_line("13:55:34", "Error: second"),
        &metrics_line("13:55:34", 1),
        &completion_line("13:55:34", UUID),
        &metrics_line("13:55:35", 1),
        &completion_line("13:55:35", UUID2),
    ]);
    assert_eq!(completed_stderr(&out[3]), Some(None));
    assert_eq!(completed_stderr(&out[5]), Some(None));
    // The metrics blocks were each alone: attributed as before.
    assert!(completed_metrics(&out[3]).flatten().is_some());
    assert!(completed_metrics(&out[5]).flatten().is_some());
}

#[test]
fn stderr_without_a_completion_in_the_window_is_never_attributed() {
    let out = run(&[
        (&stderr_line("13:55:00", "Error: long ago"), Some(0)),
        (&metrics_line("13:55:34", 1), Some(34 * SECOND_NS)),
        (&completion_line("13:55:34", UUID), Some(34 * SECOND_NS + 1)),
    ]);
    assert_eq!(completed_stderr(&out[2]), Some(None));
    // And a stderr block with no completion after it at all stays unattributed.
    let out = run_plain(&[&stderr_line("13:55:34", "Error: orphan")]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].execution_id, None);
}

const SECOND_NS: i64 = 1_000_000_000;

#[test]
fn a_waiting_stderr_block_survives_a_restart_and_an_old_state_reads_as_none_waiting() {
    let mut first = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    let meta = |n: i64| LineMeta {
        received_ns: None,
        pos: Pos::new(0, n),
    };
    first.push_line(
        stderr_line("13:55:34", "Error: x").as_bytes(),
        meta(1),
        &mut out,
    );
    first.flush(&mut out);
    let saved = serde_json::to_string(&first.state()).expect("serializes");
    let mut second = Parser::new(ParserConfig::default());
    second.restore(serde_json::from_str(&saved).expect("deserializes"));
    second.push_line(
        completion_line("13:55:35", UUID).as_bytes(),
        meta(2),
        &mut out,
    );
    second.flush(&mut out);
    assert_eq!(
        completed_stderr(&out[1]).flatten().map(|s| s.text.as_str()),
        Some("Error: x")
    );
    let old: ParserState =
        serde_json::from_str(r#"{"pending_metrics":[]}"#).expect("a state saved before");
    assert!(old.pending_stderr.is_empty());
}

#[test]
fn a_continuation_after_a_restart_keeps_the_kind_of_the_entry_before() {
    let task = header(
        "13:55:34",
        "info",
        &format!(
            r#"Message received from task_created: {{"type":"task_created","executionId":"{UUID}","message":{{"executionId":"{UUID}"}}}}"#
        ),
    );
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    let meta = |n: i64| LineMeta {
        received_ns: None,
        pos: Pos::new(0, n),
    };
    p.push_line(b"> npm banner", meta(1), &mut out);
    p.push_line(task.as_bytes(), meta(2), &mut out);
    // A live source handed the entry over when the node paused, then the monitor
    // restarted: the continuation lines cannot join it, and keep its kind (saved with
    // the cursor).
    p.flush(&mut out);
    let saved = serde_json::to_string(&p.state()).expect("serializes");
    let mut second = Parser::new(ParserConfig::default());
    second.restore(serde_json::from_str(&saved).expect("deserializes"));
    second.push_line(b"  SECRET-INPUT tail", meta(3), &mut out);
    second.push_line(b"  more", meta(4), &mut out);
    second.push_line(
        header("13:55:35", "info", "next").as_bytes(),
        meta(5),
        &mut out,
    );
    second.flush(&mut out);
    let mut third = Parser::new(ParserConfig::default());
    third.restore(second.state());
    third.push_line(b"  of a log line", meta(6), &mut out);
    let got: Vec<_> = out
        .iter()
        .map(|e| {
            (
                e.kind,
                e.message.as_str(),
                e.event.is_some(),
                e.execution_id.is_some(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Kind::Raw, "> npm banner", false, false),
            (
                Kind::TaskReceived,
                &task[task.find("Message").unwrap_or(0)..],
                true,
                true
            ),
            (Kind::TaskReceived, "  SECRET-INPUT tail", false, false),
            (Kind::TaskReceived, "  more", false, false),
            (Kind::Log, "next", false, false),
            (Kind::Log, "  of a log line", false, false),
        ]
    );
    assert!(out.iter().all(|e| e.replaces.is_none()));
    let old: ParserState =
        serde_json::from_str(r#"{"pending_metrics":[]}"#).expect("a state saved before");
    assert_eq!(old.last_kind, None);
}

#[test]
fn a_continuation_after_a_flush_reopens_the_entry_and_replaces_the_version_emitted() {
    let mut p = Parser::new(ParserConfig::default());
    let mut out = Vec::new();
    let meta = |n: i64| LineMeta {
        received_ns: Some(n * SECOND_NS / 10),
        pos: Pos::new(0, n),
    };
    p.push_line(
        stderr_line("13:55:34", "Error: boom").as_bytes(),
        meta(1),
        &mut out,
    );
    // The node pauses: a live source flushes; the stderr block waits for its completion.
    p.flush(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(p.state().pending_stderr.len(), 1);
    p.push_line(b"    at main (task.js:1:1)", meta(2), &mut out);
    assert!(p.has_pending(), "reopened");
    assert_eq!(out.len(), 1, "nothing emitted by the continuation");
    // Paused again, reopened again.
    p.flush(&mut out);
    p.push_line(b"    at run (task.js:2:2)", meta(3), &mut out);
    p.push_line(
        completion_line("13:55:35", UUID).as_bytes(),
        meta(4),
        &mut out,
    );
    p.flush(&mut out);
    let got: Vec<_> = out
        .iter()
        .map(|e| (e.kind, e.message.as_str(), e.pos, e.replaces))
        .collect();
    let first = EntryRef {
        pos: Pos::new(0, 1),
        time_ns: SECOND_NS / 10,
    };
    let stderr = |n| Replaced {
        entry: EntryRef {
            pos: Pos::new(0, n),
            ..first
        },
        kind: Kind::ExecutionStderr,
    };
    assert_eq!(
        got,
        vec![
            (Kind::ExecutionStderr, "Command execution stderr: Error: boom", Pos::new(0, 1), None),
            (
                Kind::ExecutionStderr,
                "Command execution stderr: Error: boom\n    at main (task.js:1:1)",
                Pos::new(0, 2),
                Some(stderr(1))
            ),
            (
                Kind::ExecutionStderr,
                "Command execution stderr: Error: boom\n    at main (task.js:1:1)\n    at run (task.js:2:2)",
                Pos::new(0, 3),
                Some(stderr(2))
            ),
            (
                Kind::ExecutionCompleted,
                &format!("Execution {UUID} completed"),
                Pos::new(0, 4),
                None
            ),
        ]
    );
    // The completion takes the whole block, once, where the last version is stored.
    let taken = completed_stderr(&out[3]).flatten().expect("attributed");
    assert_eq!(
        taken.text,
        "Error: boom\n    at main (task.js:1:1)\n    at run (task.js:2:2)"
    );
    assert_eq!(taken.entry.pos, Pos::new(0, 3));
    assert!(p.state().pending_stderr.is_empty());
    // A header ends it: a continuation after the completion's flush reopens the
    // completion, not the stderr block.
    p.push_line(b"  trailing", meta(5), &mut out);
    p.flush(&mut out);
    assert_eq!(
        (out[4].kind, out[4].replaces.map(|r| r.entry.pos)),
        (Kind::ExecutionCompleted, Some(Pos::new(0, 4)))
    );
}
