//! Federation against a real `nats-server` (CONTRIBUTING.md, "Running the tests"): each
//! test starts its own server on a free port. Windows move with a manual [`Clock`]; the
//! network, the store and the NATS server are real.
//!
//! What they prove (docs/PRIVACY.md, issue 5):
//! - reports arrive on `truebit.report.v1`, verify, and carry exactly the allowed fields;
//! - planted secrets in every field the node prints never appear in any byte the monitor
//!   sends (raw TCP capture), and the gate blocks every planted value in every field;
//! - NATS down and the monitor restarted meanwhile: every window arrives exactly once;
//! - a publish-only NATS user works; statistics verify against the pinned key only;
//! - send delays are uniform over 0–120 s and never early;
//! - with federation off the process opens no connection; disabling closes it;
//! - settings survive restarts; ws:// and tls:// with a custom CA work.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use truebit_clock::Clock;
use truebit_monitor::federation::anonymizer::{
    anonymize, FinishedTask, InvoiceLine, Sharing, WindowData,
};
use truebit_monitor::federation::config::FederationSettings;
use truebit_monitor::federation::gate;
use truebit_monitor::federation::identity::Identity;
use truebit_monitor::federation::{
    Delivery, Federation, FederationHandle, FederationService, LinkState, ReportOutcome,
    ReportRecord, SettingsSource, SettingsUpdate,
};
use truebit_monitor::parser::ParserConfig;
use truebit_monitor::source::import::import_files;
use truebit_monitor::store::Store;
use truebit_protocol::bucket::{ExecTimeBucket, GasBucket, MemoryBucket};
use truebit_protocol::certificate::{CertifiedStats, StatsSignature};
use truebit_protocol::report::{Continent, Level, NodeState, Operation, Outcome, Report};
use truebit_protocol::sign::{open_report, SigningKey};
use truebit_protocol::stats::NetworkStats;
use truebit_protocol::window::{WindowStart, WINDOW_SECS};
use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

use crate::support::{init_tracing, open_store, tempdir};

/// 2025-11-24 13:55:00 UTC, the window of `demo::fixture`'s first lines.
const W0: u64 = 1_763_992_500;

fn ms(secs: u64) -> u64 {
    secs * 1000
}

/// The moment every report of `window` has been built: its close plus the longest delay.
fn after_send_window(window: u64) -> u64 {
    ms(window + WINDOW_SECS) + 120_001
}

/// A manual clock standing at Unix milliseconds `ms`.
fn clock_at_ms(ms: u64) -> Clock {
    let clock = Clock::manual(0);
    clock.set_ms(ms);
    clock
}

// --- a real nats-server ---------------------------------------------------------------------

/// The shared test nats-server (truebit-testkit), with what these tests add: the HTTP
/// monitoring port, a configuration file, `/connz`.
pub(crate) struct NatsServer(truebit_testkit::NatsServer);

impl std::ops::Deref for NatsServer {
    type Target = truebit_testkit::NatsServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for NatsServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl NatsServer {
    /// JetStream on, no authentication.
    pub(crate) fn start(dir: &Path) -> NatsServer {
        Self::start_with(dir, None, true)
    }

    /// `config` (nats-server syntax, `$WS_PORT` a free port) in a file; `-js` unless
    /// `jetstream` is false.
    fn start_with(dir: &Path, config: Option<&str>, jetstream: bool) -> NatsServer {
        let nats_dir = dir.join("nats");
        std::fs::create_dir_all(&nats_dir).expect("nats dir");
        let mut args: Vec<String> = vec!["-m".into(), "-1".into()];
        if jetstream {
            let js = nats_dir.join("js").display().to_string();
            args.extend(["-js".into(), "-sd".into(), js]);
        }
        if let Some(config) = config {
            let file = nats_dir.join("nats.conf");
            let config = config.replace("$WS_PORT", &free_port().to_string());
            std::fs::write(&file, config).expect("nats config");
            let check = Command::new(truebit_testkit::nats_bin())
                .args(["-c", &file.display().to_string(), "-t"])
                .output()
                .expect("nats-server -t");
            assert!(
                check.status.success(),
                "invalid nats config: {}",
                String::from_utf8_lossy(&check.stderr)
            );
            args.extend(["-c".into(), file.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        NatsServer(truebit_testkit::NatsServer::start(dir, &args))
    }

    /// Client connections the server has right now (HTTP monitoring, `/connz`).
    pub(crate) fn connections(&self) -> u64 {
        let port = self.http_port.expect("monitoring port");
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("monitoring port answers");
        write!(stream, "GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        let mut body = String::new();
        std::io::Read::read_to_string(&mut stream, &mut body).expect("response");
        let json = body.split("\r\n\r\n").nth(1).expect("body");
        let v: Value = serde_json::from_str(json).expect("connz json");
        v["num_connections"].as_u64().expect("num_connections")
    }
}

/// Starts a monitor in `dir` with `settings` and federation on, and checks that the report
/// of window W0 reaches `collector` once the window's send delay has passed.
async fn first_window_arrives(dir: &Path, settings: FederationSettings, collector: &Collector) {
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(&dir.join("monitor.db"), settings, &clock).await;
    monitor.handle.enable().await.expect("enable");
    clock.set_ms(after_send_window(W0));
    let reports = collector.wait_reports(1, Duration::from_secs(30)).await;
    assert_eq!(reports[0].window.as_secs(), W0);
    monitor.stop().await;
}

/// An admin connection to the server (the test's view, not the monitor's).
async fn admin(url: &str) -> async_nats::Client {
    async_nats::connect(url)
        .await
        .expect("test client connects")
}

async fn admin_as(url: &str, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(url)
        .await
        .expect("test client connects")
}

/// Collects every message on `subject` in the background.
struct Collector {
    messages: Arc<Mutex<Vec<async_nats::Message>>>,
}

impl Collector {
    async fn start(client: &async_nats::Client, subject: &str) -> Collector {
        let mut sub = client
            .subscribe(subject.to_owned())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                sink.lock().expect("lock").push(m);
            }
        });
        Collector { messages }
    }

    fn reports(&self) -> Vec<Report> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m.subject.as_str() == REPORT_SUBJECT)
            .map(|m| {
                open_report(&m.payload)
                    .expect("every report verifies")
                    .report()
                    .clone()
            })
            .collect()
    }

    fn subjects(&self) -> Vec<String> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m.subject.to_string())
            .collect()
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m.subject.as_str() == REPORT_SUBJECT)
            .map(|m| m.payload.to_vec())
            .collect()
    }

    async fn wait_reports(&self, n: usize, timeout: Duration) -> Vec<Report> {
        eventually(&format!("{n} reports on the subject"), timeout, || async {
            let r = self.reports();
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

/// A TCP proxy that records every byte the client sends: the monitor's raw traffic.
struct Capture {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    async fn start(target_port: u16) -> Capture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&sent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                else {
                    continue;
                };
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut up_read, mut up_write) = upstream.into_split();
                    let to_server = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
                            if up_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = up_write.shutdown().await;
                    };
                    let to_client = async move {
                        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(to_server, to_client);
                });
            }
        });
        Capture { port, sent }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn bytes(&self) -> Vec<u8> {
        self.sent.lock().expect("lock").clone()
    }
}

// --- the monitor's federation, in-process ---------------------------------------------------

struct Monitor {
    store: Store,
    service: Option<FederationService>,
    shutdown: CancellationToken,
    handle: FederationHandle,
}

impl Monitor {
    async fn start(db: &Path, settings: FederationSettings, clock: &Clock) -> Monitor {
        Self::start_with(db, settings, clock, |f| f).await
    }

    async fn start_with(
        db: &Path,
        settings: FederationSettings,
        clock: &Clock,
        customize: impl FnOnce(Federation) -> Federation,
    ) -> Monitor {
        init_tracing();
        let store = open_store(db);
        let config = settings.resolve().expect("valid federation settings");
        let shutdown = CancellationToken::new();
        let federation = Federation::new(store.clone(), config).with_clock(clock.clone());
        let service = customize(federation).start(shutdown.clone()).await;
        let handle = service.handle();
        Monitor {
            store,
            service: Some(service),
            shutdown,
            handle,
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(service) = self.service.take() {
            service.stopped().await;
        }
        self.store
            .call(|st| st.close())
            .await
            .expect("store closes");
    }

    async fn log(&self) -> Vec<ReportRecord> {
        self.handle.reports(10_000).await.expect("report log")
    }

    /// Waits until the log has a report of `window` with `outcome`.
    async fn wait_outcome(&self, window: u64, outcome: ReportOutcome) -> ReportRecord {
        eventually(
            &format!("report of window {window} {outcome:?}"),
            Duration::from_secs(30),
            || async {
                self.log()
                    .await
                    .into_iter()
                    .find(|r| r.window == window && r.outcome == outcome)
            },
        )
        .await
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn settings(url: &str) -> FederationSettings {
    FederationSettings {
        nats_url: Some(url.to_owned()),
        ..FederationSettings::default()
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fields a report may have (PRIVACY.md via the protocol schema), by path.
fn assert_only_allowed_fields(report: &Value) {
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        keys(report),
        set(&[
            "v",
            "node",
            "key",
            "window",
            "level",
            "continent",
            "status",
            "counts",
            "tasks",
            "invoices"
        ])
    );
    assert_eq!(keys(&report["status"]), set(&["state", "active", "total"]));
    assert_eq!(
        keys(&report["counts"]),
        set(&["received", "completed", "failed"])
    );
    for t in report["tasks"].as_array().expect("tasks") {
        assert_eq!(
            keys(t),
            set(&["chain", "outcome", "duration", "gas", "memory", "cached"])
        );
    }
    for i in report["invoices"].as_array().expect("invoices") {
        assert_eq!(keys(i), set(&["op", "steps"]));
    }
}

// --- the adversarial node log ----------------------------------------------------------------

const WALLET: &str = "0x52908400098527886E0F7030069857D2E4169EE7";
const WALLET2: &str = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";
const REQUESTER: &str = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B";
const EXEC1: &str = "550e8400-e29b-41d4-a716-446655440000";
const EXEC2: &str = "6fa459ea-ee8a-3ca4-894e-db77e160355e";
const HEX64: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const HEX64B: &str = "88df016429689c079f3b2f6ad39fa052532c56795b733da78a91ebe6a713944b";
const WIF: &str = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ";
const MNEMONIC: &str =
    "abandon ability able about above absent absorb abstract absurd abuse access accident";

/// 2025-11-24 14:20:00 UTC: the window of the planted lines.
const WP: u64 = 1_763_994_000;

/// A node log with wallets, IPs, e-mails, keys, UUIDs and exact times planted in every
/// field the node prints, all in window [`WP`].
fn planted_log() -> String {
    let logger = format!("@truebit/worker-runner-node-{WALLET}:2.4.1");
    let line = |time: &str, level: &str, message: &str| {
        format!("2025-11-24 {time} {level}: {logger} {message}\n")
    };
    let input = json!({
        "email": "alice@example.com",
        "ip": "10.0.0.7",
        "ipv6": "2001:db8::8a2e:370:7334",
        "pem": "-----BEGIN PRIVATE KEY-----",
        "wif": WIF,
        "mnemonic": MNEMONIC,
        "seen": "2025-11-24T14:21:07.123456789Z",
    })
    .to_string();
    let task = |exec: &str, chain: &str, created: &str| {
        json!({
            "type": "task_created",
            "executionId": exec,
            "timestamp": created,
            "message": {
                "type": "dispatch_task",
                "taskId": format!("rs_{HEX64}"),
                "executionId": exec,
                "msgHash": HEX64B,
                "signature": {"v": 27, "r": HEX64, "s": HEX64B},
                "limits": {"gas": "1099511627776", "call": "65536", "frame": "524288", "memory": "1024"},
                "econParams": {"reward": "192.168.1.20", "requiredSolutions": 4, "totalSolutions": 4, "executionTimeout": 30000},
                "workers": {"blockNumber": 70259248, "selectionStrategy": "default", "setNodes": [WALLET, WALLET2]},
                "chainId": chain,
                "blockNumber": 70259248,
                "blockHash": format!("0x{HEX64B}"),
                "taskRequesterAddress": REQUESTER,
                "input": input,
            }
        })
        .to_string()
    };
    let metrics = |exit: i64, output: &str| {
        json!({
            "elapsed": "842133917",
            "wasi": {"exitCode": exit},
            "metering": {
                "limits": {"gas": 60000000000u64, "memory": 1024, "call": 65536, "frame": 524288},
                "peak": {"memory": 37, "call": 412, "frame": 9120},
                "last": {"steps": 19373422}
            },
            "execution": {"wasm": {"size": 1839201, "hash": HEX64}, "prepare": {"cached": true}},
            "output": output,
        })
        .to_string()
    };
    let invoice = json!({
        "invoiceId": 1763994067,
        "executionId": EXEC1,
        "taskId": format!("rs_{HEX64}"),
        "taskCreated_timeStamp": 1763994067,
        "stepGasPrice": "1",
        "byteGasPrice": "1",
        "lineItem": [
            {"operation": "charge", "account": REQUESTER, "total_steps_computed": "19373422", "peak_memory_used": "37"},
            {"operation": "refund to carol@example.net", "account": "fe80::1", "total_steps_computed": "10.1.2.3", "peak_memory_used": "2001:db8::1"}
        ],
        "accounting_signature": {"v": 28, "r": HEX64, "s": HEX64B}
    })
    .to_string();
    let mut log = String::new();
    log += &line(
        "14:20:01",
        "info",
        &format!("Node with address {WALLET} registered successfully"),
    );
    log += &line(
        "14:20:02",
        "warn",
        &format!("peer 10.0.0.7:30303 (alice@example.com) unreachable; key {WIF}"),
    );
    log += &line(
        "14:20:03",
        "error",
        "Error: connect ECONNREFUSED 2001:db8::8a2e:370:7334 at node-7.example.internal",
    );
    log += "    at /home/alice/truebit/index.js:42:7 (2025-11-24T14:20:03.999Z)\n";
    log += &format!("    {MNEMONIC}\n");
    log += &line(
        "14:21:07",
        "info",
        &format!(
            "Message received from task_created: {}",
            task(EXEC1, "43113", "2025-11-24T14:21:07.118Z")
        ),
    );
    log += &line(
        "14:21:07",
        "info",
        "Semaphore TaskSubscriber processing started. Using slot 2/4",
    );
    log += &line(
        "14:21:08",
        "info",
        &format!("Task rs_{HEX64} downloaded successfully"),
    );
    log += &line(
        "14:21:09",
        "info",
        &format!("Starting task execution executionId: {EXEC1}"),
    );
    log += &line(
        "14:21:13",
        "info",
        &format!(
            "Message received from task_created: {}",
            task(EXEC2, WALLET, "2025-11-24T14:21:13.500Z")
        ),
    );
    log += &line(
        "14:21:14",
        "debug",
        &format!(
            "Command execution stdout: {}",
            metrics(0, "bob@example.org 172.16.0.5")
        ),
    );
    log += &line("14:21:14", "info", &format!("Execution {EXEC1} completed"));
    log += &line("14:21:15", "info", "Message published to compute_outcome");
    log += &line(
        "14:21:16",
        "debug",
        &format!("Command execution stderr: panic at 10.9.8.7 for {REQUESTER}"),
    );
    log += &line(
        "14:21:17",
        "debug",
        &format!("Command execution stdout: {}", metrics(3, WIF)),
    );
    log += &line("14:21:17", "info", &format!("Execution {EXEC2} completed"));
    log += &line(
        "14:21:18",
        "info",
        "Semaphore TaskSubscriber processing completed. Released slot (1/4 now active)",
    );
    log += &line(
        "14:22:19",
        "info",
        &format!("InvoiceSubscriber invoice received: {invoice}"),
    );
    log
}

/// Strings planted in the log that must never leave the machine.
fn planted_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        WALLET,
        WALLET2,
        REQUESTER,
        EXEC1,
        EXEC2,
        HEX64,
        HEX64B,
        WIF,
        "abandon ability",
        "alice@example.com",
        "bob@example.org",
        "carol@example.net",
        "example",
        "10.0.0.7",
        "172.16.0.5",
        "192.168.1.20",
        "10.1.2.3",
        "10.9.8.7",
        "2001:db8",
        "fe80::1",
        "BEGIN PRIVATE",
        "node-7",
        "/home/alice",
        "rs_4c08",
        "70259248",
        "842133917",
        "19373422",
        "1839201",
        "1763994067",
        "1763994007",
        "1763994073",
        "14:20:0",
        "14:21:",
        "14:22:19",
        "2025-11-24",
        "2.4.1",
        "refund",
        "runner-node",
        "truebit/worker",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Case variants of the hex-shaped secrets.
    for s in [WALLET, WALLET2, REQUESTER, EXEC1, HEX64] {
        v.push(s.to_lowercase());
        v.push(s.to_uppercase());
        v.push(s.trim_start_matches("0x").to_lowercase());
    }
    v
}

/// Every identifying value the store extracted from the log (ids, addresses, hashes,
/// figures and times of six digits or more), plus long digit-bearing tokens of every
/// entry's text: none of them may appear on the wire.
async fn stored_secrets(store: &Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |s: Option<String>| {
        if let Some(s) = s {
            if s.len() >= 6 {
                out.insert(s);
            }
        }
    };
    let number = |n: Option<i64>| n.filter(|n| n.unsigned_abs() >= 100_000 && n % 300 != 0);
    let tasks = store
        .call(move |st| st.tasks(100_000))
        .await
        .expect("tasks");
    for t in &tasks {
        add(Some(t.execution_id.clone()));
        add(t.task_id.clone());
        add(t.block_hash.clone());
        add(t.requester.clone());
        add(t.wasm_hash.clone());
        add(t.reward.clone());
        for n in [
            t.block_number.map(|n| n as i64),
            t.created_ms,
            t.received_ms,
            t.received_ns,
            t.started_ms,
            t.started_ns,
            t.completed_ms,
            t.completed_ns,
            t.elapsed_ns.map(|n| n as i64),
            t.gas_used.map(|n| n as i64),
            t.wasm_size.map(|n| n as i64),
        ] {
            add(number(n).map(|n| n.to_string()));
        }
    }
    for i in store
        .call(move |st| st.invoices(100_000))
        .await
        .expect("invoices")
    {
        add(i.execution_id.clone());
        add(i.task_id.clone());
        add(number(i.task_created_ts).map(|n| n.to_string()));
        add(number(i.invoice_id).map(|n| n.to_string()));
        for item in i.line_items {
            add(item.account.clone());
            add(item.steps.clone());
            add(Some(item.operation.clone()).filter(|o| o.contains(' ')));
        }
    }
    let status = store
        .call(|st| st.node_status())
        .await
        .expect("node status");
    add(status.address.clone());
    add(status.version.clone().map(|v| format!(":{v}")));
    for e in store
        .call(move |st| st.entries(1_000_000))
        .await
        .expect("entries")
    {
        add(number(e.node_time).map(|n| n.to_string()));
        for token in e
            .message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '@' || c == '.' || c == ':'))
        {
            let token = token.trim_matches(|c| c == '.' || c == ':');
            if token.len() >= 8 && token.bytes().any(|b| b.is_ascii_digit()) {
                // Window starts are the one time the wire carries.
                let window_start = token.parse::<u64>().is_ok_and(|n| n % 300 == 0);
                if !window_start {
                    add(Some(token.to_owned()));
                }
            }
        }
    }
    out
}

/// The range docs/FEDERATION.md gives for a quiet window's report ("A quiet window's
/// report is MIN–MAX bytes on the wire"; the protocol's size test derives it).
fn documented_quiet_report_sizes() -> (usize, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/FEDERATION.md");
    let text = std::fs::read_to_string(path).expect("FEDERATION.md");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (_, rest) = text
        .split_once("A quiet window's report is ")
        .expect("the quiet report sentence");
    let range = rest.split_whitespace().next().expect("a range");
    let (min, max) = range.split_once('–').expect("MIN–MAX");
    (
        min.parse().expect("min bytes"),
        max.parse().expect("max bytes"),
    )
}

fn import(store: &Store, dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write log");
    import_files(store, &[path], ParserConfig::default(), &()).expect("import");
}

// --- the tests --------------------------------------------------------------------------------

/// Reports arrive, verify, carry exactly what PRIVACY.md allows, and nothing planted in
/// the node's log appears in any byte the monitor sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_reach_the_wire_and_reports_carry_only_allowed_fields() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let capture = Capture::start(nats.port).await;
    let observer = admin(&nats.url()).await;
    let collector = Collector::start(&observer, ">").await;

    let db = dir.path().join("monitor.db");
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &db,
        FederationSettings {
            continent: Some("EU".into()),
            ..settings(&capture.url())
        },
        &clock,
    )
    .await;
    // A realistic log (five tasks from 13:55:34) and the planted one (14:20-14:22).
    let (demo, expected) = truebit_monitor::demo::docker_fixture(11, 5);
    import(&monitor.store, dir.path(), "demo.log", &demo);
    import(&monitor.store, dir.path(), "planted.log", &planted_log());
    let summary = monitor
        .store
        .call(|st| st.summary())
        .await
        .expect("summary");
    assert_eq!(summary.invoices, expected.invoices + 1);

    let status = monitor.handle.enable().await.expect("enable");
    assert!(status.settings.enabled);
    assert_eq!(status.next_window, Some(W0));
    let last = WP + 2 * WINDOW_SECS;
    clock.set_ms(after_send_window(last));
    let windows = ((last - W0) / WINDOW_SECS + 1) as usize;
    let reports = collector
        .wait_reports(windows, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Exactly one report per window, in order, all from this node.
    let got: Vec<u64> = reports.iter().map(|r| r.window.as_secs()).collect();
    let want: Vec<u64> = (0..windows as u64).map(|i| W0 + i * WINDOW_SECS).collect();
    assert_eq!(got, want);
    let node_id = status.node_id.clone().expect("node id");
    assert!(reports.iter().all(|r| r.node.to_string() == node_id));
    for payload in collector.payloads() {
        let wire: Value = serde_json::from_slice(&payload).expect("json");
        assert_only_allowed_fields(&wire["report"]);
    }

    // The planted window, field by field.
    let planted = reports
        .iter()
        .find(|r| r.window.as_secs() == WP)
        .expect("window of the planted lines");
    assert_eq!(planted.level, Level::Full);
    assert_eq!(planted.continent, Some(Continent::Europe));
    assert_eq!(planted.status.state, NodeState::Up);
    assert_eq!(
        (
            planted.counts.received,
            planted.counts.completed,
            planted.counts.failed
        ),
        (2, 1, 1)
    );
    let ok = planted
        .tasks
        .iter()
        .find(|t| t.outcome == Outcome::Completed)
        .expect("completed task");
    assert_eq!(ok.chain.map(|c| c.get()), Some(43_113));
    assert_eq!(ok.duration, ExecTimeBucket::From500MsTo1S);
    assert_eq!(ok.gas, GasBucket::From10MTo100M);
    assert_eq!(ok.memory, MemoryBucket::LessThan64);
    assert_eq!(ok.cached, Some(true));
    let failed = planted
        .tasks
        .iter()
        .find(|t| t.outcome == Outcome::Failed)
        .expect("failed task");
    assert_eq!(
        failed.chain, None,
        "a wallet planted as chain id is unknown"
    );
    let invoices = &planted.invoices;
    let ops: BTreeSet<Operation> = invoices.iter().map(|i| i.op).collect();
    assert_eq!(ops, BTreeSet::from([Operation::Charge, Operation::Other]));
    // The quiet window before the planted lines is a cover report under 2 KB.
    let quiet = reports
        .iter()
        .zip(collector.payloads())
        .find(|(r, _)| r.window.as_secs() == WP - WINDOW_SECS)
        .expect("quiet window");
    assert!(quiet.0.is_cover());
    let (min, max) = documented_quiet_report_sizes();
    assert!(
        (min..=max).contains(&quiet.1.len()),
        "{} bytes, documented {min}–{max}",
        quiet.1.len()
    );

    // The raw bytes the monitor sent, CONNECT included: none of the planted values, none
    // of what the store extracted, and not the installation's secrets.
    let sent = capture.bytes();
    assert!(!sent.is_empty());
    let text = String::from_utf8_lossy(&sent).into_owned();
    assert!(
        text.contains("PUB truebit.report.v1"),
        "captured the publishes"
    );
    let mut secrets: BTreeSet<String> = planted_strings().into_iter().collect();
    let from_store = stored_secrets(&monitor.store).await;
    assert!(from_store.len() > 50, "{} stored values", from_store.len());
    secrets.extend(from_store);
    let (key, salt) = read_identity_secrets(&db);
    secrets.insert(key.clone());
    secrets.insert(salt.clone());
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .collect();
    assert!(leaked.is_empty(), "leaked onto the wire: {leaked:?}");
    // The capture works: the public key is on the wire, the secret key is not.
    assert!(text.contains(status.public_key.as_deref().expect("public key")));

    // Sent reports are in the transparency log byte for byte.
    let log = monitor.log().await;
    let sent_log: BTreeSet<Vec<u8>> = log
        .iter()
        .filter(|r| r.outcome == ReportOutcome::Sent)
        .map(|r| r.bytes.clone())
        .collect();
    let on_wire: BTreeSet<Vec<u8>> = collector.payloads().into_iter().collect();
    assert_eq!(sent_log, on_wire);
    monitor.stop().await;
}

/// The secret key and salt (hex), read from the database file directly.
fn read_identity_secrets(db: &Path) -> (String, String) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row(
        "SELECT secret_key, salt FROM federation_identity WHERE id = 1",
        [],
        |row| {
            Ok((
                hex::encode(row.get::<_, Vec<u8>>(0)?),
                hex::encode(row.get::<_, Vec<u8>>(1)?),
            ))
        },
    )
    .expect("identity stored")
}

/// A report the anonymizer got wrong is stopped by the gate: recorded with its reason,
/// counted, never sent; a plain cover report goes instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_report_is_recorded_counted_and_replaced_by_a_cover_report() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let capture = Capture::start(nats.port).await;
    let observer = admin(&nats.url()).await;
    let collector = Collector::start(&observer, REPORT_SUBJECT).await;
    let clock = clock_at_ms(ms(WP) + 1_000);
    let monitor = Monitor::start_with(
        &dir.path().join("monitor.db"),
        settings(&capture.url()),
        &clock,
        |f| {
            f.with_report_filter(Arc::new(|bytes: Vec<u8>| {
                String::from_utf8(bytes)
                    .expect("utf8")
                    .replacen(r#""level":"full""#, r#""level":"peer 10.0.0.7""#, 1)
                    .into_bytes()
            }))
        },
    )
    .await;
    import(&monitor.store, dir.path(), "planted.log", &planted_log());
    monitor.handle.enable().await.expect("enable");
    clock.set_ms(after_send_window(WP + WINDOW_SECS));
    let reports = collector.wait_reports(2, Duration::from_secs(30)).await;
    let blocked = monitor.wait_outcome(WP, ReportOutcome::Blocked).await;
    assert_eq!(blocked.code.as_deref(), Some("pattern.ipv4"));
    assert!(blocked.reason.as_deref().expect("reason").contains("level"));
    assert!(blocked.text.contains("10.0.0.7"), "the exact blocked bytes");
    // In place of the busy window's report: an empty cover report.
    for r in &reports {
        assert!(r.is_cover(), "{r:?}");
        assert_eq!(r.status.state, NodeState::Unknown);
        assert_eq!(r.counts.received, 0);
    }
    let status = monitor.handle.status().await.expect("status");
    assert_eq!(status.blocked_total, 2);
    assert_eq!(status.sent_total, 2);
    assert_eq!(status.blocked_reasons.len(), 1);
    assert_eq!(status.blocked_reasons[0].code, "pattern.ipv4");
    assert_eq!(status.blocked_reasons[0].count, 2);
    let sent = String::from_utf8_lossy(&capture.bytes()).into_owned();
    assert!(!sent.contains("10.0.0.7"));
    monitor.stop().await;
}

/// The monitor's gate on a report of its own anonymizer: every planted value in every
/// field is blocked with the pattern it is (the validator's must-reject table).
#[test]
fn the_gate_blocks_every_planted_value_in_every_field() {
    let identity = Identity::from_bytes([7; 32], [8; 32]);
    let data = WindowData {
        active_in_window: true,
        slots_used: Some(2),
        total_tasks: 12,
        received: 3,
        finished: vec![
            FinishedTask {
                chain_id: Some("43113".into()),
                elapsed_ns: Some(842_133_917),
                gas_used: Some(19_373_422),
                memory_peak: Some(37),
                cached: Some(true),
                ..FinishedTask::default()
            },
            FinishedTask {
                failed: true,
                ..FinishedTask::default()
            },
        ],
        invoice_lines: vec![InvoiceLine {
            operation: "charge".into(),
            steps: Some(19_373_422),
        }],
        ..WindowData::default()
    };
    let window = WindowStart::new(WP).expect("aligned");
    let report = anonymize(
        &data,
        &identity,
        window,
        Sharing {
            level: Level::Full,
            continent: Some(Continent::Europe),
        },
    );
    let valid = serde_json::to_value(&report).expect("json");
    gate::check(report.to_canonical_bytes(), &identity).expect("the untouched report passes");
    let fields = [
        "/v",
        "/node",
        "/key",
        "/window",
        "/level",
        "/continent",
        "/status/state",
        "/status/active",
        "/status/total",
        "/counts/received",
        "/counts/completed",
        "/counts/failed",
        "/tasks/0/chain",
        "/tasks/0/outcome",
        "/tasks/0/duration",
        "/tasks/0/gas",
        "/tasks/0/memory",
        "/tasks/0/cached",
        "/invoices/0/op",
        "/invoices/0/steps",
    ];
    let planted = [
        (WALLET.to_owned(), "pattern.wallet_or_hash"),
        (
            format!("worker-{}", WALLET.to_lowercase()),
            "pattern.wallet_or_hash",
        ),
        (EXEC1.to_owned(), "pattern.uuid"),
        ("alice@example.com".to_owned(), "pattern.email"),
        ("10.0.0.7".to_owned(), "pattern.ipv4"),
        ("2001:db8::8a2e:370:7334".to_owned(), "pattern.ipv6"),
        (format!("rs_{HEX64}"), "pattern.private_key"),
        (HEX64.to_uppercase(), "pattern.private_key"),
        (WIF.to_owned(), "pattern.private_key"),
        (
            "-----BEGIN PRIVATE KEY-----".to_owned(),
            "pattern.private_key",
        ),
        (MNEMONIC.to_owned(), "pattern.mnemonic"),
        ("2025-11-24T14:21:07.123Z".to_owned(), "pattern.timestamp"),
        ("1763994067".to_owned(), "pattern.timestamp"),
        ("14:21:07".to_owned(), "pattern.timestamp"),
    ];
    let mut checked = 0;
    for field in fields {
        for (value, code) in &planted {
            let mut v = valid.clone();
            *v.pointer_mut(field).expect("field exists") = Value::String(value.clone());
            let blocked =
                gate::check(serde_json::to_vec(&v).expect("json"), &identity).expect_err("blocked");
            assert_eq!(blocked.code, *code, "{value} in {field}");
            assert!(
                !blocked.reason.contains(value.as_str()),
                "{}",
                blocked.reason
            );
            checked += 1;
        }
        // An exact time as a number.
        let mut v = valid.clone();
        *v.pointer_mut(field).expect("field exists") = json!(1_763_994_067_123u64);
        let blocked =
            gate::check(serde_json::to_vec(&v).expect("json"), &identity).expect_err("blocked");
        assert_eq!(blocked.code, "pattern.timestamp", "number in {field}");
    }
    assert_eq!(checked, fields.len() * planted.len());
    // A field the schema does not have, even harmless.
    let mut v = valid.clone();
    v["hostname"] = json!("node");
    let blocked =
        gate::check(serde_json::to_vec(&v).expect("json"), &identity).expect_err("blocked");
    assert_eq!(blocked.code, "unknown_field");
    // A bucket value that is not a bucket.
    let mut v = valid;
    v["tasks"][0]["gas"] = json!("12345");
    let blocked =
        gate::check(serde_json::to_vec(&v).expect("json"), &identity).expect_err("blocked");
    assert_eq!(blocked.code, "bad_bucket");
}

/// NATS is down for three windows and the monitor restarts meanwhile: once the server is
/// back, every window's report is in the stream exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_and_monitor_restart_lose_nothing_and_duplicate_nothing() {
    let dir = tempdir();
    let mut nats = NatsServer::start(dir.path());
    let js = async_nats::jetstream::new(admin(&nats.url()).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "REPORTS".into(),
        subjects: vec![REPORT_SUBJECT.into()],
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .expect("stream");
    let db = dir.path().join("monitor.db");
    let clock = clock_at_ms(ms(W0) + 5_000);
    let a = Monitor::start(&db, settings(&nats.url()), &clock).await;
    a.handle.enable().await.expect("enable");

    clock.set_ms(after_send_window(W0));
    a.wait_outcome(W0, ReportOutcome::Sent).await;
    let status = a.handle.status().await.expect("status");
    assert_eq!(status.delivery, Some(Delivery::Jetstream));

    nats.stop();
    for w in [W0 + WINDOW_SECS, W0 + 2 * WINDOW_SECS] {
        clock.set_ms(after_send_window(w));
        a.wait_outcome(w, ReportOutcome::Queued).await;
    }
    let status = a.handle.status().await.expect("status");
    assert_eq!(status.queued, 2);
    assert_ne!(status.connection, LinkState::Connected);
    a.stop().await;

    // The monitor is down while window 3 closes, then starts again.
    clock.set_ms(after_send_window(W0 + 3 * WINDOW_SECS));
    let b = Monitor::start(&db, settings(&nats.url()), &clock).await;
    let status = eventually("restarted monitor", Duration::from_secs(10), || async {
        b.handle
            .status()
            .await
            .ok()
            .filter(|s| s.connection != LinkState::Off)
    })
    .await;
    assert!(status.settings.enabled, "enabled across the restart");
    assert_eq!(status.settings.source, SettingsSource::Database);
    assert_eq!(status.queued, 2, "the outbox survived the restart");
    // Missed windows are built after the start-up grace.
    clock.advance(Duration::from_secs(61));
    b.wait_outcome(W0 + 3 * WINDOW_SECS, ReportOutcome::Queued)
        .await;

    nats.spawn();
    for i in 1..=3 {
        b.wait_outcome(W0 + i * WINDOW_SECS, ReportOutcome::Sent)
            .await;
    }
    let status = b.handle.status().await.expect("status");
    assert_eq!((status.queued, status.sent_total), (0, 4));

    let js = async_nats::jetstream::new(admin(&nats.url()).await);
    let stream = js.get_stream("REPORTS").await.expect("stream");
    let info = stream.get_info().await.expect("info");
    assert_eq!(info.state.messages, 4, "each window exactly once");
    let mut windows = Vec::new();
    for seq in 1..=4 {
        let m = stream.get_raw_message(seq).await.expect("message");
        let report = open_report(&m.payload).expect("verifies").report().clone();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .expect("message id header")
            .to_string();
        assert_eq!(id, report.message_id());
        windows.push(report.window.as_secs());
    }
    windows.sort_unstable();
    assert_eq!(
        windows,
        (0..4).map(|i| W0 + i * WINDOW_SECS).collect::<Vec<_>>()
    );
    b.stop().await;
}

const PERMISSIONS_CONFIG: &str = r#"
authorization {
  users = [
    { user: monitor, password: "monitor-pw",
      permissions: { publish: { allow: ["truebit.report.v1"] }, subscribe: { allow: ["truebit.stats.v2"] } } }
    { user: aggregator, password: "aggregator-pw" }
  ]
}
"#;

/// A user that may only publish reports and read statistics is enough; statistics
/// count only when certified by the threshold (2) of the pinned replica keys (3):
/// certificates signed by other keys, by one pinned key only, or for other figures than
/// the ones signed, are rejected, and the accepted one names its signers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_user_works_and_only_statistics_certified_by_the_pinned_replicas_are_believed(
) {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), Some(PERMISSIONS_CONFIG), true);
    let aggregator = admin_as(&nats.url(), "aggregator", "aggregator-pw").await;
    let collector = Collector::start(&aggregator, REPORT_SUBJECT).await;
    let replica = |seed: u8| SigningKey::from_bytes(&[seed; 32]);
    let hex_of = |seed: u8| hex::encode(replica(seed).verifying_key().to_bytes());
    let pinned = format!("{},{},{}", hex_of(0xa1), hex_of(0xa2), hex_of(0xa3));
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        FederationSettings {
            nats_user: Some("monitor".into()),
            nats_password: Some("monitor-pw".into()),
            aggregator_keys: Some(pinned),
            ..settings(&nats.url())
        },
        &clock,
    )
    .await;
    monitor.handle.enable().await.expect("enable");
    clock.set_ms(after_send_window(W0 + WINDOW_SECS));
    let reports = collector.wait_reports(2, Duration::from_secs(30)).await;
    assert_eq!(reports[0].window.as_secs(), W0);
    let status = monitor.handle.status().await.expect("status");
    assert_eq!(status.delivery, Some(Delivery::Core), "no JetStream rights");
    assert_eq!(status.sent_total, 2);
    assert_eq!(status.connection, LinkState::Connected);

    // Statistics: certificates signed by two unpinned keys, by one pinned key, for
    // figures other than the signed ones, then a genuine 2 of 3, then garbage.
    let stats = |k: u32| NetworkStats::empty(WindowStart::new(W0).expect("aligned"), k);
    let certify = |figures: NetworkStats, signed: &NetworkStats, seeds: &[u8]| {
        let bytes = signed.to_canonical_bytes();
        let sigs = seeds
            .iter()
            .map(|s| StatsSignature::sign(&bytes, &replica(*s)))
            .collect();
        CertifiedStats::new(figures, sigs)
            .expect("a certificate")
            .to_wire()
    };
    let unpinned = certify(stats(3), &stats(3), &[0x11, 0x12]);
    let under_threshold = certify(stats(4), &stats(4), &[0xa1]);
    let other_figures = certify(stats(6), &stats(5), &[0xa1, 0xa2]);
    let genuine = certify(stats(5), &stats(5), &[0xa3, 0xa1]);
    for wire in [
        unpinned,
        under_threshold,
        other_figures,
        genuine,
        b"{\"stats\":{}}".to_vec(),
    ] {
        aggregator
            .publish(STATS_SUBJECT, wire.into())
            .await
            .expect("publish");
    }
    aggregator.flush().await.expect("flush");
    let latest = eventually("verified statistics", Duration::from_secs(10), || async {
        let s = monitor.handle.status().await.ok()?;
        (s.stats_received + s.stats_rejected >= 5).then_some(())?;
        monitor.handle.network_stats().await
    })
    .await;
    assert_eq!(latest.stats.k, 5, "the genuine statistics, not the forged");
    assert_eq!(latest.signers, vec![hex_of(0xa1), hex_of(0xa3)]);
    assert_eq!(latest.threshold, 2);
    let status = monitor.handle.status().await.expect("status");
    assert_eq!((status.stats_received, status.stats_rejected), (1, 4));
    assert_eq!(status.last_stats_rejection.as_deref(), Some("envelope"));
    monitor.stop().await;
}

/// Several servers in FEDERATION_NATS_URL (a clustered hub): when the one the monitor
/// is connected to stops, the monitor connects to another listed server and its next
/// report arrives there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_fails_over_to_another_listed_server() {
    let dir = tempdir();
    let mut a = NatsServer::start_with(&dir.path().join("a"), None, false);
    let mut b = NatsServer::start_with(&dir.path().join("b"), None, false);
    let (observe_a, observe_b) = (admin(&a.url()).await, admin(&b.url()).await);
    let on_a = Collector::start(&observe_a, REPORT_SUBJECT).await;
    let on_b = Collector::start(&observe_b, REPORT_SUBJECT).await;
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        settings(&format!("{}, {}", a.url(), b.url())),
        &clock,
    )
    .await;
    monitor.handle.enable().await.expect("enable");
    clock.set_ms(after_send_window(W0));
    let went_to_a = eventually(
        "the first report on one of the servers",
        Duration::from_secs(30),
        || async {
            let (n_a, n_b) = (on_a.reports().len(), on_b.reports().len());
            (n_a + n_b >= 1).then_some(n_a >= 1)
        },
    )
    .await;
    // The server that took it stops; the other must get the next window's report.
    let survivor = if went_to_a {
        a.stop();
        &on_b
    } else {
        b.stop();
        &on_a
    };
    clock.set_ms(after_send_window(W0 + WINDOW_SECS));
    let reports = survivor.wait_reports(1, Duration::from_secs(60)).await;
    assert!(
        reports
            .iter()
            .any(|r| r.window.as_secs() == W0 + WINDOW_SECS),
        "{:?}",
        reports
            .iter()
            .map(|r| r.window.as_secs())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        monitor.handle.status().await.expect("status").connection,
        LinkState::Connected
    );
    monitor.stop().await;
}

/// The drawn delays of 200 windows are spread uniformly over 0–120 s, and no report is
/// built before its window closed plus its delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delays_spread_uniformly_over_the_window_delay() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        settings(&nats.url()),
        &clock,
    )
    .await;
    monitor.handle.enable().await.expect("enable");
    let n = 200u64;
    for i in 0..n {
        // Step through the window's delay range in 30 s steps, as time passes.
        let w = W0 + i * WINDOW_SECS;
        for step in 0..=4 {
            clock.set_ms(ms(w + WINDOW_SECS) + step * 30_000);
        }
        clock.set_ms(after_send_window(w));
        monitor.wait_outcome(w, ReportOutcome::Sent).await;
    }
    let log = monitor.log().await;
    let mut delays = Vec::new();
    for r in log.iter().filter(|r| r.outcome == ReportOutcome::Sent) {
        let delay = r.delay_ms.expect("delay recorded");
        assert!(delay <= 120_000, "{delay}");
        let earliest = ms(r.window + WINDOW_SECS) + delay;
        assert!(
            r.created_ms >= earliest,
            "window {} built at {} before its send time {earliest}",
            r.window,
            r.created_ms
        );
        delays.push(delay);
    }
    assert_eq!(delays.len() as u64, n);
    let mut bins = [0u32; 4];
    for d in &delays {
        bins[((d * 4) / 120_001) as usize] += 1;
    }
    let expected = n as f64 / 4.0;
    let chi2: f64 = bins
        .iter()
        .map(|&b| (f64::from(b) - expected).powi(2) / expected)
        .sum();
    // 3 degrees of freedom: p = 0.001 at 16.27.
    assert!(chi2 < 16.27, "chi2 {chi2}, bins {bins:?}");
    let distinct: BTreeSet<u64> = delays.iter().copied().collect();
    assert!(distinct.len() > 190, "delays repeat: {}", distinct.len());
    monitor.stop().await;
}

/// With federation off, the monitor process opens no connection at all, though a
/// server is configured; with it on, the same setup connects (so the check can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_federation_off_the_process_opens_no_connection() {
    let dir = tempdir();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!(
        "nats://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let log_file = dir.path().join("node.log");
    std::fs::write(&log_file, truebit_monitor::demo::fixture(3, 3).0).expect("log");

    let run = |enabled: bool, db: &Path| {
        Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DB_PATH", db)
            .env("LOG_FILE", &log_file)
            .env("FEDERATION_NATS_URL", &url)
            .env("FEDERATION_ENABLED", enabled.to_string())
            .env("LOG_LEVEL", "info")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("monitor starts")
    };
    let accepted = |within: Duration| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if listener.accept().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };

    let db = dir.path().join("off.db");
    let mut off = run(false, &db);
    // It runs (the log is ingested), and in all that time nothing connects.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !db.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!accepted(Duration::from_secs(4)), "a connection while off");
    let pid = off.id();
    let remote = connected_sockets(pid);
    assert!(remote.is_empty(), "outbound sockets while off: {remote:?}");
    assert!(off.try_wait().expect("status").is_none(), "still running");
    stop_process(&mut off);
    let conn = rusqlite::Connection::open(&db).expect("db");
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM federation_identity", [], |r| r.get(0))
        .expect("count");
    assert_eq!(keys, 0, "no federation identity is created while off");
    drop(conn);

    // Control: the same monitor with federation on connects to the same socket, and the
    // database holding its key is private.
    let db = dir.path().join("on.db");
    let mut on = run(true, &db);
    let connected = accepted(Duration::from_secs(20));
    stop_process(&mut on);
    assert!(connected, "with federation on, the monitor connects");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the database with the federation key is private"
    );
}

fn stop_process(child: &mut Child) {
    truebit_testkit::terminate(child, Duration::from_secs(20));
}

/// TCP sockets of process `pid` that are not listening (i.e. connections), from
/// /proc/<pid>/fd and /proc/net/tcp{,6}.
fn connected_sockets(pid: u32) -> Vec<String> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.display().to_string();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) && cols[3] != "0A" {
                out.push(format!(
                    "{table} {} -> {} state {}",
                    cols[1], cols[2], cols[3]
                ));
            }
        }
    }
    out
}

/// Enabling connects; disabling closes the connection (the server's own count drops to
/// zero) and the outbox is not sent later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_connects_and_disabling_closes_the_connection() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        settings(&nats.url()),
        &clock,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nats.connections(), 0, "off by default");
    let status = monitor.handle.status().await.expect("status");
    assert!(!status.settings.enabled);
    assert_eq!(status.settings.source, SettingsSource::Config);
    assert_eq!(status.connection, LinkState::Off);
    assert_eq!(status.node_id, None, "no identity before the first enable");

    monitor.handle.enable().await.expect("enable");
    eventually("connected", Duration::from_secs(10), || async {
        (nats.connections() == 1).then_some(())
    })
    .await;
    let status = monitor.handle.disable().await.expect("disable");
    assert_eq!(status.connection, LinkState::Off);
    eventually("connection closed", Duration::from_secs(10), || async {
        (nats.connections() == 0).then_some(())
    })
    .await;
    // Time passes while off: no report is built, no connection is made.
    clock.set_ms(after_send_window(W0 + 3 * WINDOW_SECS));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nats.connections(), 0);
    assert!(monitor.log().await.is_empty());
    let status = monitor.handle.status().await.expect("status");
    assert_eq!(status.next_window, None);
    assert!(status.node_id.is_some(), "the identity is kept");
    monitor.stop().await;
}

/// TCP connections of this (test) process to `port`, from its own descriptors.
fn connections_to(port: u16) -> Vec<String> {
    let hex_port = format!(":{port:04X}");
    connected_sockets(std::process::id())
        .into_iter()
        .filter(|s| {
            s.split(" -> ").nth(1).is_some_and(|remote| {
                remote
                    .split_whitespace()
                    .next()
                    .is_some_and(|r| r.ends_with(&hex_port))
            })
        })
        .collect()
}

/// Disabling while the server no longer answers (a dead connection: the process is
/// stopped, or gone) closes the socket before `disable` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_on_a_dead_connection_closes_the_socket_before_returning() {
    let dir = tempdir();
    let mut nats = NatsServer::start_with(dir.path(), None, false);
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        settings(&nats.url()),
        &clock,
    )
    .await;
    let port = nats.port;

    // Unresponsive: the server process is stopped, its socket stays open.
    monitor.handle.enable().await.expect("enable");
    eventually("connected", Duration::from_secs(10), || async {
        (connections_to(port).len() == 1).then_some(())
    })
    .await;
    nats.signal("STOP");
    monitor.handle.disable().await.expect("disable");
    let left = connections_to(port);
    nats.signal("CONT");
    assert!(left.is_empty(), "sockets after disable: {left:?}");

    // Gone: the server exits, the client is reconnecting.
    monitor.handle.enable().await.expect("enable again");
    eventually("connected again", Duration::from_secs(10), || async {
        (connections_to(port).len() == 1).then_some(())
    })
    .await;
    nats.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.handle.disable().await.expect("disable");
    let left = connections_to(port);
    assert!(left.is_empty(), "sockets after disable: {left:?}");
    monitor.stop().await;
}

/// Acknowledgements and the stream lookup's answer come back on a fresh random inbox
/// each time, also across a reconnect: someone reading `_INBOX.>` cannot tie them
/// together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_comes_back_on_a_fresh_inbox() {
    let dir = tempdir();
    let mut nats = NatsServer::start(dir.path());
    let js = async_nats::jetstream::new(admin(&nats.url()).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "REPORTS".into(),
        subjects: vec![REPORT_SUBJECT.into()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let spy = admin(&nats.url()).await;
    let inboxes = Collector::start(&spy, "_INBOX.>").await;
    let clock = clock_at_ms(ms(W0) + 5_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        settings(&nats.url()),
        &clock,
    )
    .await;
    monitor.handle.enable().await.expect("enable");
    clock.set_ms(after_send_window(W0));
    monitor.wait_outcome(W0, ReportOutcome::Sent).await;
    clock.set_ms(after_send_window(W0 + WINDOW_SECS));
    monitor
        .wait_outcome(W0 + WINDOW_SECS, ReportOutcome::Sent)
        .await;
    // A reconnect in between (the stream is kept on disk).
    nats.stop();
    nats.spawn();
    eventually("reconnected", Duration::from_secs(20), || async {
        let s = monitor.handle.status().await.ok()?;
        let spy_back = spy.connection_state() == async_nats::connection::State::Connected;
        (s.connection == LinkState::Connected && spy_back).then_some(())
    })
    .await;
    clock.set_ms(after_send_window(W0 + 2 * WINDOW_SECS));
    monitor
        .wait_outcome(W0 + 2 * WINDOW_SECS, ReportOutcome::Sent)
        .await;
    let subjects = eventually(
        "the spy saw the replies",
        Duration::from_secs(10),
        || async {
            let subjects = inboxes.subjects();
            (subjects.len() >= 4).then_some(subjects)
        },
    )
    .await;
    // Two lookups (one per connection) and three acknowledgements, each on its own inbox.
    let tokens: BTreeSet<String> = subjects
        .iter()
        .map(|s| s.split('.').nth(1).expect("a second token").to_owned())
        .collect();
    assert_eq!(
        tokens.len(),
        subjects.len(),
        "an inbox used twice: {subjects:?}"
    );
    assert!(
        subjects.iter().all(|s| s.split('.').count() == 2),
        "{subjects:?}"
    );
    monitor.stop().await;
}

/// Settings changed through the handle are stored and win over the configuration's
/// defaults after a restart; strict reports carry status and counts only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_survive_restarts_and_strict_sends_counts_only() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let observer = admin(&nats.url()).await;
    let collector = Collector::start(&observer, REPORT_SUBJECT).await;
    let db = dir.path().join("monitor.db");
    let clock = clock_at_ms(ms(WP) + 1_000);
    let a = Monitor::start(&db, settings(&nats.url()), &clock).await;
    import(&a.store, dir.path(), "planted.log", &planted_log());
    let view = a
        .handle
        .put_settings(SettingsUpdate {
            enabled: Some(true),
            level: Some(Level::Strict),
            continent: Some(Some(Continent::Oceania)),
        })
        .await
        .expect("put");
    assert_eq!(view.source, SettingsSource::Database);
    a.stop().await;

    // The configuration says off and full: the stored choice wins.
    let b = Monitor::start(
        &db,
        FederationSettings {
            enabled: Some(false),
            level: Some("full".into()),
            ..settings(&nats.url())
        },
        &clock,
    )
    .await;
    let view = eventually("settings", Duration::from_secs(10), || async {
        b.handle.settings().await.ok()
    })
    .await;
    assert_eq!(
        (view.enabled, view.level, view.continent),
        (true, Level::Strict, Some(Continent::Oceania))
    );
    clock.set_ms(after_send_window(WP + WINDOW_SECS));
    let reports = collector.wait_reports(2, Duration::from_secs(30)).await;
    let busy = &reports[0];
    assert_eq!(busy.window.as_secs(), WP);
    assert_eq!(busy.level, Level::Strict);
    assert!(busy.tasks.is_empty() && busy.invoices.is_empty());
    assert_eq!(busy.continent, None, "no continent at strict");
    // The counts (2, 1, 1) left with the strict level's local noise and shift: never
    // the raw figures (their sum would be 4), and the hub's estimates stay near them.
    let c = busy.counts;
    assert!(c.received + c.completed + c.failed >= 30, "{c:?}");
    for (sent, exact) in [(c.received, 2), (c.completed, 1), (c.failed, 1)] {
        let estimate = truebit_protocol::noise::strict_estimate(sent);
        assert!((estimate - exact).abs() <= 40, "{c:?}");
    }
    // Back to full with the continent.
    b.handle
        .put_settings(SettingsUpdate {
            level: Some(Level::Full),
            ..SettingsUpdate::default()
        })
        .await
        .expect("put");
    clock.set_ms(after_send_window(WP + 2 * WINDOW_SECS));
    let reports = collector.wait_reports(3, Duration::from_secs(30)).await;
    assert_eq!(reports[2].level, Level::Full);
    assert_eq!(reports[2].continent, Some(Continent::Oceania));
    b.stop().await;
}

/// FEDERATION_ENABLED is an initial default: a fresh database follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_default_applies_until_the_operator_decides() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let observer = admin(&nats.url()).await;
    let collector = Collector::start(&observer, REPORT_SUBJECT).await;
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        FederationSettings {
            enabled: Some(true),
            level: Some("strict".into()),
            ..settings(&nats.url())
        },
        &clock,
    )
    .await;
    clock.set_ms(after_send_window(W0));
    let reports = collector.wait_reports(1, Duration::from_secs(30)).await;
    assert_eq!(reports[0].level, Level::Strict);
    let view = monitor.handle.settings().await.expect("settings");
    assert_eq!(view.source, SettingsSource::Config);
    assert!(view.enabled);
    monitor.stop().await;
}

const WEBSOCKET_CONFIG: &str = r#"
websocket {
  listen: "127.0.0.1:$WS_PORT"
  no_tls: true
}
"#;

/// ws:// servers work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_over_websocket() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), Some(WEBSOCKET_CONFIG), false);
    let observer = admin(&nats.url()).await;
    let collector = Collector::start(&observer, REPORT_SUBJECT).await;
    let ws = format!(
        "ws://127.0.0.1:{}",
        nats.websocket_port.expect("websocket port")
    );
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(&dir.path().join("monitor.db"), settings(&ws), &clock).await;
    monitor.handle.enable().await.expect("enable");
    clock.set_ms(after_send_window(W0));
    let reports = collector.wait_reports(1, Duration::from_secs(30)).await;
    assert_eq!(reports[0].window.as_secs(), W0);
    monitor.stop().await;
}

/// tls:// with a CA of the operator's (FEDERATION_NATS_CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_over_tls_with_a_custom_ca() {
    let dir = tempdir();
    let pki = truebit_testkit::certificates(dir.path());
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        pki.cert.display(),
        pki.key.display()
    );
    let nats = NatsServer::start_with(dir.path(), Some(&config), false);
    let observer = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .connect(format!("tls://127.0.0.1:{}", nats.port))
        .await
        .expect("test client connects over TLS");
    let collector = Collector::start(&observer, REPORT_SUBJECT).await;
    first_window_arrives(
        dir.path(),
        FederationSettings {
            nats_ca: Some(pki.ca.clone()),
            ..settings(&format!("tls://127.0.0.1:{}", nats.port))
        },
        &collector,
    )
    .await;
}

/// wss:// with a custom CA and token authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_over_secure_websocket_with_a_token() {
    let dir = tempdir();
    let pki = truebit_testkit::certificates(dir.path());
    let config = format!(
        "authorization {{ token: \"t0ken-for-tests\" }}\n\
         websocket {{\n  listen: \"127.0.0.1:$WS_PORT\"\n  tls {{\n    cert_file: \"{}\"\n    key_file: \"{}\"\n  }}\n}}\n",
        pki.cert.display(),
        pki.key.display()
    );
    let nats = NatsServer::start_with(dir.path(), Some(&config), false);
    let observer = async_nats::ConnectOptions::with_token("t0ken-for-tests".into())
        .connect(nats.url())
        .await
        .expect("test client connects");
    let collector = Collector::start(&observer, REPORT_SUBJECT).await;
    let wss = format!(
        "wss://127.0.0.1:{}",
        nats.websocket_port.expect("websocket port")
    );
    first_window_arrives(
        dir.path(),
        FederationSettings {
            nats_token: Some("t0ken-for-tests".into()),
            nats_ca: Some(pki.ca.clone()),
            ..settings(&wss)
        },
        &collector,
    )
    .await;
}

/// A credentials file that cannot be read is reported in the status (and retried), not
/// a crash; nothing is lost meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_credentials_file_is_reported_and_reports_wait() {
    let dir = tempdir();
    let nats = NatsServer::start_with(dir.path(), None, false);
    let clock = clock_at_ms(ms(W0) + 1_000);
    let monitor = Monitor::start(
        &dir.path().join("monitor.db"),
        FederationSettings {
            nats_creds: Some(dir.path().join("missing.creds")),
            ..settings(&nats.url())
        },
        &clock,
    )
    .await;
    monitor.handle.enable().await.expect("enable");
    let status = eventually(
        "the error in the status",
        Duration::from_secs(10),
        || async {
            monitor
                .handle
                .status()
                .await
                .ok()
                .filter(|s| s.last_error.is_some())
        },
    )
    .await;
    let error = status.last_error.expect("error");
    assert!(error.contains("credentials file"), "{error}");
    assert!(error.contains("missing.creds"), "{error}");
    assert_eq!(status.connection, LinkState::Connecting);
    clock.set_ms(after_send_window(W0));
    monitor.wait_outcome(W0, ReportOutcome::Queued).await;
    assert_eq!(nats.connections(), 0);
    monitor.stop().await;
}
