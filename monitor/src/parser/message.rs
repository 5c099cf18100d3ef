//! Classification of a finished entry's message into a [`Kind`] and [`Event`].
//!
//! Line-shaped messages (slots, download, start, completion, ...) are recognised on the
//! message's first line; JSON messages (task_created, metrics, invoice) read the whole
//! message, so pretty-printed JSON on continuation lines is complete.

use memchr::{memchr, memmem};

use crate::model::{Event, Kind};

use super::json;

/// What a message means.
#[derive(Debug, PartialEq)]
pub(crate) struct Classified {
    pub(crate) kind: Kind,
    pub(crate) execution_id: Option<String>,
    pub(crate) event: Option<Event>,
}

impl Classified {
    fn log() -> Self {
        Classified {
            kind: Kind::Log,
            execution_id: None,
            event: None,
        }
    }

    fn new(kind: Kind, event: Option<Event>) -> Self {
        Classified {
            kind,
            execution_id: None,
            event,
        }
    }
}

const TASK_CREATED: &str = "Message received from task_created";
const OUTCOME: &str = "Message published to compute_outcome";
const SLOT_TAKEN: &str = "Semaphore TaskSubscriber processing started";
const SLOT_RELEASED: &str = "Semaphore TaskSubscriber processing completed";
const STDOUT: &str = "Command execution stdout";
const STDERR: &str = "Command execution stderr";
const INVOICE: &str = "InvoiceSubscriber invoice received";
const NODE: &str = "Node with address ";

/// Classifies a header entry's message. Never fails: anything unknown is [`Kind::Log`].
pub(crate) fn classify(message: &str) -> Classified {
    let msg = message.trim_start_matches([' ', '\t']);
    let first_line = match memchr(b'\n', msg.as_bytes()) {
        Some(at) => msg.get(..at).unwrap_or(msg),
        None => msg,
    };
    match msg.as_bytes().first() {
        Some(b'M') if msg.starts_with(TASK_CREATED) => task_received(msg),
        Some(b'M') if first_line.starts_with(OUTCOME) => {
            Classified::new(Kind::OutcomePublished, Some(Event::OutcomePublished))
        }
        Some(b'S') if first_line.starts_with(SLOT_TAKEN) => Classified::new(
            Kind::SlotTaken,
            slot_numbers(first_line, "slot ").map(|(slot, total)| Event::SlotTaken { slot, total }),
        ),
        Some(b'S') if first_line.starts_with(SLOT_RELEASED) => Classified::new(
            Kind::SlotReleased,
            slot_numbers(first_line, "slot (")
                .map(|(active, total)| Event::SlotReleased { active, total }),
        ),
        Some(b'S') if first_line.starts_with("Starting") => execution_started(first_line),
        Some(b'C') if msg.starts_with(STDOUT) => execution_metrics(msg),
        Some(b'C') if msg.starts_with(STDERR) => {
            let text = after_colon(msg.get(STDERR.len()..).unwrap_or_default());
            Classified::new(
                Kind::ExecutionStderr,
                Some(Event::ExecutionStderr {
                    text: text.to_owned(),
                }),
            )
        }
        Some(b'E') => execution_completed(first_line),
        Some(b'T') => task_downloaded(first_line),
        Some(b'N') => node_registered(first_line),
        Some(b'I') if msg.starts_with(INVOICE) => invoice(msg),
        _ => Classified::log(),
    }
}

/// Text after an optional `:` and one space.
fn after_colon(s: &str) -> &str {
    let s = s.strip_prefix(':').unwrap_or(s);
    s.strip_prefix(' ').unwrap_or(s)
}

/// The JSON that follows a message prefix: from the first `{`.
fn json_part<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = msg.get(prefix.len()..)?;
    let at = memchr(b'{', rest.as_bytes())?;
    rest.get(at..)
}

fn task_received(msg: &str) -> Classified {
    match json_part(msg, TASK_CREATED).and_then(json::task_created) {
        Some(task) => Classified {
            kind: Kind::TaskReceived,
            execution_id: Some(task.execution_id.clone()),
            event: Some(Event::TaskReceived(Box::new(task))),
        },
        None => Classified {
            kind: Kind::TaskReceived,
            execution_id: salvage_execution_id(msg),
            event: None,
        },
    }
}

fn execution_metrics(msg: &str) -> Classified {
    let metrics = json_part(msg, STDOUT).and_then(json::metrics);
    Classified::new(
        Kind::ExecutionMetrics,
        metrics.map(|m| Event::ExecutionMetrics(Box::new(m))),
    )
}

fn invoice(msg: &str) -> Classified {
    match json_part(msg, INVOICE).and_then(json::invoice) {
        Some(inv) => Classified {
            kind: Kind::Invoice,
            execution_id: inv.execution_id.clone(),
            event: Some(Event::Invoice(Box::new(inv))),
        },
        None => Classified {
            kind: Kind::Invoice,
            execution_id: salvage_execution_id(msg),
            event: None,
        },
    }
}

/// The first `"executionId":"<id>"` of a payload that did not parse (e.g. cut short).
fn salvage_execution_id(msg: &str) -> Option<String> {
    const KEY: &str = "\"executionId\"";
    let at = memmem::find(msg.as_bytes(), KEY.as_bytes())?;
    let rest = msg.get(at + KEY.len()..)?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = memchr(b'"', rest.as_bytes())?;
    let id = rest.get(..end)?;
    let plain = !id.is_empty() && id.len() <= 128 && !id.contains('\\');
    plain.then(|| json::normalize_id(id.to_owned()))
}

/// `N/M` right after `marker` (e.g. `Using slot 2/4`, `Released slot (1/4 now active)`).
fn slot_numbers(line: &str, marker: &str) -> Option<(u32, u32)> {
    let at = memmem::find(line.as_bytes(), marker.as_bytes())?;
    let rest = line.get(at + marker.len()..)?;
    let (n, rest) = leading_number(rest)?;
    let (m, _) = leading_number(rest.strip_prefix('/')?)?;
    Some((n, m))
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = s.split_at_checked(len)?;
    Some((digits.parse().ok()?, rest))
}

/// `Starting ... execution ... <uuid>`: wording is inferred, so any first line starting
/// with `Starting` that mentions an execution and carries a UUID counts.
fn execution_started(line: &str) -> Classified {
    let mentions_execution = memmem::find(line.as_bytes(), b"xecution").is_some();
    match find_uuid(line).filter(|_| mentions_execution) {
        Some(id) => {
            let id = json::normalize_id(id.to_owned());
            Classified {
                kind: Kind::ExecutionStarted,
                execution_id: Some(id.clone()),
                event: Some(Event::ExecutionStarted { execution_id: id }),
            }
        }
        None => Classified::log(),
    }
}

/// `Execution <id> completed` (anything may follow).
fn execution_completed(line: &str) -> Classified {
    match token_between(line, "Execution ", " completed") {
        Some(id) => {
            let id = json::normalize_id(id.to_owned());
            Classified {
                kind: Kind::ExecutionCompleted,
                execution_id: Some(id.clone()),
                event: Some(Event::ExecutionCompleted {
                    execution_id: id,
                    metrics: None,
                    stderr: None,
                }),
            }
        }
        None => Classified::log(),
    }
}

/// `Task <task id> downloaded successfully`.
fn task_downloaded(line: &str) -> Classified {
    match token_between(line, "Task ", " downloaded") {
        Some(task_id) => Classified::new(
            Kind::TaskDownloaded,
            Some(Event::TaskDownloaded {
                task_id: task_id.to_owned(),
            }),
        ),
        None => Classified::log(),
    }
}

/// `Node with address 0x<40 hex> registered successfully`. A malformed address keeps
/// the kind without an event.
fn node_registered(line: &str) -> Classified {
    match token_between(line, NODE, " registered") {
        Some(address) => {
            let event = is_address(address).then(|| Event::NodeRegistered {
                address: address.to_owned(),
            });
            Classified::new(Kind::NodeRegistered, event)
        }
        None => Classified::log(),
    }
}

/// The single word between `prefix` and `suffix`: `<prefix><word><suffix>...`.
fn token_between<'a>(line: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?;
    let end = memchr(b' ', rest.as_bytes())?;
    let (token, after) = rest.split_at_checked(end)?;
    (!token.is_empty() && token.len() <= 128 && after.starts_with(suffix)).then_some(token)
}

fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s.bytes().skip(2).all(|c| c.is_ascii_hexdigit())
}

/// The first `8-4-4-4-12` hex UUID in `s` that is not part of a longer word.
fn find_uuid(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    for dash in memchr::memchr_iter(b'-', b) {
        let Some(start) = dash.checked_sub(8) else {
            continue;
        };
        let Some(candidate) = b.get(start..start + 36) else {
            break;
        };
        let bounded = |c: Option<&u8>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-');
        let before = start.checked_sub(1).and_then(|i| b.get(i));
        if is_uuid(candidate) && bounded(before) && bounded(b.get(start + 36)) {
            return s.get(start..start + 36);
        }
    }
    None
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Metrics;

    const UUID: &str = "3f0c7a52-9a4e-4c1e-8a57-1b2f0e9d4c11";

    #[test]
    fn slot_lines_give_their_numbers() {
        let c = classify("Semaphore TaskSubscriber processing started. Using slot 2/4");
        assert_eq!(
            c,
            Classified::new(
                Kind::SlotTaken,
                Some(Event::SlotTaken { slot: 2, total: 4 })
            )
        );
        let c = classify(
            "Semaphore TaskSubscriber processing completed. Released slot (1/4 now active)",
        );
        assert_eq!(
            c,
            Classified::new(
                Kind::SlotReleased,
                Some(Event::SlotReleased {
                    active: 1,
                    total: 4
                })
            )
        );
    }

    #[test]
    fn invoice_subscriber_semaphore_lines_are_plain_logs() {
        assert_eq!(
            classify("Semaphore InvoiceSubscriber processing started. Using slot 1/4"),
            Classified::log()
        );
        assert_eq!(
            classify("InvoiceSubscriber processing invoice"),
            Classified::log()
        );
    }

    #[test]
    fn start_line_variants_with_a_uuid_are_recognised() {
        for line in [
            format!("Starting task execution executionId: {UUID}"),
            format!("Starting execution {UUID}"),
            format!(
                "Starting task execution (executionId={})",
                UUID.to_uppercase()
            ),
        ] {
            let c = classify(&line);
            assert_eq!(c.kind, Kind::ExecutionStarted, "{line}");
            assert_eq!(c.execution_id.as_deref(), Some(UUID));
        }
        assert_eq!(classify("Starting task execution").kind, Kind::Log);
        assert_eq!(classify(&format!("Starting server {UUID}")).kind, Kind::Log);
    }

    #[test]
    fn completion_line_names_its_execution() {
        let c = classify(&format!("Execution {UUID} completed"));
        assert_eq!(c.execution_id.as_deref(), Some(UUID));
        assert_eq!(
            c.event,
            Some(Event::ExecutionCompleted {
                execution_id: UUID.into(),
                metrics: None,
                stderr: None
            })
        );
        assert_eq!(classify("Execution failed badly").kind, Kind::Log);
    }

    #[test]
    fn registration_with_a_malformed_address_keeps_the_kind_without_event() {
        let ok = classify(
            "Node with address 0x558f4b6bd6e2a6e1b5a0c1c2d3e4f5a6b7c8c5d7 registered successfully",
        );
        assert_eq!(
            ok.event,
            Some(Event::NodeRegistered {
                address: "0x558f4b6bd6e2a6e1b5a0c1c2d3e4f5a6b7c8c5d7".into()
            })
        );
        let bad = classify("Node with address 0x12 registered successfully");
        assert_eq!(bad, Classified::new(Kind::NodeRegistered, None));
    }

    #[test]
    fn download_line_gives_the_task_id() {
        let c = classify("Task rs_abc downloaded successfully");
        assert_eq!(
            c.event,
            Some(Event::TaskDownloaded {
                task_id: "rs_abc".into()
            })
        );
    }

    #[test]
    fn stderr_keeps_all_its_lines() {
        let c = classify("Command execution stderr: panic\n  at main");
        assert_eq!(
            c.event,
            Some(Event::ExecutionStderr {
                text: "panic\n  at main".into()
            })
        );
    }

    #[test]
    fn pretty_printed_metrics_are_read_from_continuation_lines() {
        let c = classify(
            "Command execution stdout: {\n  \"elapsed\": 5,\n  \"wasi\": { \"exitCode\": 3 }\n}",
        );
        assert_eq!(
            c.event,
            Some(Event::ExecutionMetrics(Box::new(Metrics {
                elapsed_ns: Some(5),
                exit_code: Some(3),
                ..Metrics::default()
            })))
        );
    }

    #[test]
    fn unusable_json_still_names_its_execution() {
        let c = classify(&format!(
            r#"Message received from task_created: {{"executionId": "{}","message":"#,
            UUID.to_uppercase()
        ));
        assert_eq!(
            c,
            Classified {
                kind: Kind::TaskReceived,
                execution_id: Some(UUID.into()),
                event: None
            }
        );
        let c = classify(r#"InvoiceSubscriber invoice received: {"invoiceId":1,"executionId":"ab"#);
        assert_eq!(c, Classified::new(Kind::Invoice, None));
    }

    #[test]
    fn unusable_json_keeps_the_kind_without_event() {
        assert_eq!(
            classify("Message received from task_created: {oops"),
            Classified::new(Kind::TaskReceived, None)
        );
        assert_eq!(
            classify("Command execution stdout: hello"),
            Classified::new(Kind::ExecutionMetrics, None)
        );
        assert_eq!(
            classify("InvoiceSubscriber invoice received: []"),
            Classified::new(Kind::Invoice, None)
        );
    }

    #[test]
    fn uuid_inside_a_longer_word_is_not_found() {
        assert_eq!(find_uuid(&format!("x{UUID}")), None);
        assert_eq!(find_uuid(&format!("{UUID}0")), None);
        assert_eq!(find_uuid(&format!("id={UUID}.")), Some(UUID));
    }
}
