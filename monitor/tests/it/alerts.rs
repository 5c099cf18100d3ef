//! Alert delivery (issue 13, the channels and the outbox), against real receivers: local
//! HTTP servers on 127.0.0.1 stand in for the webhook, Telegram, Discord, Slack and ntfy
//! (through the base-URL settings) and check the exact request each service documents;
//! a real SMTP server (aiosmtpd, which scripts/test installs) receives the e-mail. The
//! outbox is a real SQLite file. Delivery settings are shortened so that each test takes
//! about a second.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use truebit_monitor::alerts::{
    AlertConfig, AlertSettings, AlertState, Alerts, ChannelSpec, ChannelStats, Delivery,
    Notification, Rule,
};
use truebit_monitor::store::Store;

use crate::support;

// ------------------------------------------------------------------------------------------
// A receiver: records every request, answers 200 (or as told), can hang
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("ASCII header")
    }
}

#[derive(Default)]
struct Recorder {
    /// Requests answered.
    seen: Mutex<Vec<Seen>>,
    /// Requests received (answered or not).
    hits: AtomicUsize,
    /// The next this many requests are never answered.
    hang: AtomicUsize,
    /// Status of the answers (0: 200).
    status: AtomicU16,
}

async fn record(
    State(r): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    let hang = r
        .hang
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if hang {
        std::future::pending::<()>().await;
    }
    r.seen.lock().expect("lock").push(Seen {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    });
    match r.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s).expect("status"),
    }
}

struct Receiver {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("addr"), Arc::default()).await
    }

    async fn start_on(addr: SocketAddr, recorder: Arc<Recorder>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(record)
            .with_state(Arc::clone(&recorder));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            recorder,
            task,
        }
    }

    /// Stops listening: connections to the port are refused from now on.
    async fn stop(self) -> (SocketAddr, Arc<Recorder>) {
        self.task.abort();
        let _ = self.task.await;
        (self.addr, self.recorder)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.recorder.seen.lock().expect("lock").clone()
    }

    fn hits(&self) -> usize {
        self.recorder.hits.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests were answered.
    async fn wait_seen(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        support::wait_for(&format!("{n} requests at {}", self.addr), timeout, || {
            let seen = self.seen();
            if seen.len() >= n {
                Ok(seen)
            } else {
                Err(seen.len())
            }
        })
        .await
    }
}

// ------------------------------------------------------------------------------------------
// Alerts on a real store
// ------------------------------------------------------------------------------------------

const DASHBOARD: &str = "https://monitor.example.org";

/// Short delivery settings: the tests wait for a few hundred milliseconds, not minutes.
fn quick() -> Delivery {
    Delivery {
        timeout: Duration::from_millis(500),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(300),
        group_window: Duration::from_millis(200),
        summary_after: 20,
    }
}

fn config(settings: AlertSettings, delivery: Delivery) -> AlertConfig {
    let mut config = settings.resolve().expect("valid alert settings");
    config.delivery = delivery;
    config
}

fn spec(name: &str, kind: &str, url: &str) -> ChannelSpec {
    ChannelSpec {
        name: name.into(),
        kind: kind.into(),
        url: Some(url.into()),
        ..ChannelSpec::default()
    }
}

fn channels(specs: &[ChannelSpec], delivery: Delivery) -> AlertConfig {
    AlertConfig {
        channels: specs
            .iter()
            .map(|s| s.validate().expect("valid channel"))
            .collect(),
        delivery,
        ..AlertConfig::default()
    }
}

struct Running {
    alerts: Alerts,
    shutdown: CancellationToken,
}

impl Running {
    fn start(store: &Store, config: &AlertConfig) -> Running {
        support::init_tracing();
        let shutdown = CancellationToken::new();
        let alerts = Alerts::start(
            store.clone(),
            config,
            Some(DASHBOARD.into()),
            shutdown.clone(),
        )
        .expect("alerts start");
        Running { alerts, shutdown }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.alerts.stopped().await;
    }

    async fn stats(&self, channel: &str) -> ChannelStats {
        self.alerts
            .stats()
            .await
            .expect("stats")
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.channel == channel)
            .expect("the channel's stats")
    }

    /// Waits until the channel's stats satisfy `pred`: the receiver records a request
    /// before it answers, and the sender counts the delivery only once the answer is in.
    async fn wait_stats(
        &self,
        channel: &str,
        pred: impl Fn(&ChannelStats) -> bool,
    ) -> ChannelStats {
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = self.stats(channel).await;
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {channel}'s stats; last seen: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn note(rule: Rule, state: AlertState, details: &str) -> Notification {
    Notification {
        rule,
        state,
        since_ns: now_ns(),
        details: details.into(),
    }
}

fn rules_and_states(body: &Value) -> Vec<(String, String)> {
    body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().expect("rule").to_owned(),
                a["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------
// Channels
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_http_channel_sends_the_request_its_service_documents() {
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let rx = Receiver::start().await;
    let secret = "0123456789abcdef-webhook";
    let token = "123456789:AAbc-DEF_ghi";
    let settings = AlertSettings {
        webhook_url: Some(rx.url("/hook")),
        webhook_secret: Some(secret.into()),
        telegram_bot_token: Some(token.into()),
        telegram_chat_id: Some("-100123".into()),
        telegram_api_url: Some(rx.url("/tg")),
        discord_webhook_url: Some(rx.url("/discord/api/webhooks/1/discord-token")),
        slack_webhook_url: Some(rx.url("/slack/services/T0/B0/slack-token")),
        ntfy_url: Some(rx.url("/node-alerts")),
        ntfy_token: Some("tk_ntfy".into()),
        ..AlertSettings::default()
    };
    let running = Running::start(&store, &config(settings, quick()));
    let n = note(
        Rule::ContainerDown,
        AlertState::Firing,
        "exited with code 137 (OOM-killed)",
    );
    let since = n.since_ns;
    running.alerts.notify(n).await.expect("notify");
    let seen = rx.wait_seen(5, WAIT).await;
    let by_path = |prefix: &str| -> &Seen {
        let matching: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with(prefix)).collect();
        assert_eq!(matching.len(), 1, "one request to {prefix}: {seen:?}");
        matching[0]
    };
    let text = format!(
        "[truebit-monitor] FIRING: Node container not running\n\n\
         Since {} UTC. exited with code 137 (OOM-killed)\n\
         Check `docker ps -a` and the container's last log lines.\n\n\
         Dashboard: {DASHBOARD}",
        truebit_web::format::utc(since)
    );

    // Webhook: JSON, signed over "timestamp.body".
    let hook = by_path("/hook");
    assert_eq!((&hook.method, hook.path.as_str()), (&Method::POST, "/hook"));
    assert_eq!(hook.header("content-type"), "application/json");
    let body = hook.json();
    assert_eq!(body["rule"], "container_down");
    assert_eq!(body["state"], "firing");
    assert_eq!(body["since"], truebit_web::format::iso(since).as_str());
    assert_eq!(body["message"], text.as_str());
    assert_eq!(body["dashboard_url"], DASHBOARD);
    assert_eq!(
        body["alerts"][0]["details"],
        "exited with code 137 (OOM-killed)"
    );
    let timestamp: u64 = hook.header("x-timestamp").parse().expect("timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(timestamp) < 60, "{timestamp} vs {now}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&hook.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hook.header("x-signature"), expected);
    // A different secret does not verify.
    let mut wrong = <Hmac<Sha256> as Mac>::new_from_slice(b"another secret!!").expect("key");
    wrong.update(format!("{timestamp}.").as_bytes());
    wrong.update(&hook.body);
    assert_ne!(
        hook.header("x-signature"),
        format!("sha256={}", hex::encode(wrong.finalize().into_bytes()))
    );

    // Telegram: POST {api}/bot{token}/sendMessage with chat_id and text.
    let tg = by_path("/tg/");
    assert_eq!(tg.method, Method::POST);
    assert_eq!(tg.path, format!("/tg/bot{token}/sendMessage"));
    assert_eq!(tg.header("content-type"), "application/json");
    let body = tg.json();
    assert_eq!(body["chat_id"], "-100123");
    assert_eq!(body["text"], text.as_str());
    assert_eq!(body["disable_web_page_preview"], true);

    // Discord: the webhook's `content`, with mentions switched off.
    let discord = by_path("/discord/");
    assert_eq!(discord.path, "/discord/api/webhooks/1/discord-token");
    let body = discord.json();
    assert_eq!(body["content"], text.as_str());
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));

    // Slack-compatible: `text`.
    let slack = by_path("/slack/");
    assert_eq!(slack.json(), serde_json::json!({ "text": text }));

    // ntfy: the text as the body, the rest in headers.
    let ntfy = by_path("/node-alerts");
    assert_eq!(ntfy.method, Method::POST);
    assert_eq!(std::str::from_utf8(&ntfy.body).expect("utf-8"), text);
    assert_eq!(
        ntfy.header("title"),
        "[truebit-monitor] FIRING: Node container not running"
    );
    assert_eq!(ntfy.header("priority"), "high");
    assert_eq!(ntfy.header("tags"), "warning");
    assert_eq!(ntfy.header("click"), DASHBOARD);
    assert_eq!(ntfy.header("authorization"), "Bearer tk_ntfy");

    // No secret travels in a message body.
    for s in &seen {
        let body = String::from_utf8_lossy(&s.body);
        for secret in [secret, token, "discord-token", "slack-token", "tk_ntfy"] {
            assert!(!body.contains(secret), "{secret} in a body to {}", s.path);
        }
    }
    // The receivers answered; each channel's task records that right after.
    for channel in ["webhook", "telegram", "discord", "slack", "ntfy"] {
        let stats = support::wait_for(&format!("{channel}'s result"), WAIT, || {
            let stats = stats_now(&running, channel);
            let figures = (
                stats.queued,
                stats.messages_total,
                stats.delivered_total,
                stats.failures_total,
            );
            if figures == (0, 1, 1, 0) {
                Ok(stats)
            } else {
                Err(stats)
            }
        })
        .await;
        assert!(stats.last_success_ns.is_some());
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_within_the_window_go_out_as_one_message() {
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let rx = Receiver::start().await;
    let mut delivery = quick();
    delivery.group_window = Duration::from_millis(600);
    let running = Running::start(
        &store,
        &channels(&[spec("hook", "webhook", &rx.url("/"))], delivery),
    );
    running
        .alerts
        .notify(note(Rule::ContainerDown, AlertState::Firing, "exit code 1"))
        .await
        .expect("notify");
    tokio::time::sleep(Duration::from_millis(100)).await;
    running
        .alerts
        .notify(note(Rule::DockerUnreachable, AlertState::Firing, ""))
        .await
        .expect("notify");
    let seen = rx.wait_seen(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.seen().len(), 1, "one message for both");
    let body = seen[0].json();
    assert_eq!(
        rules_and_states(&body),
        vec![
            ("container_down".into(), "firing".into()),
            ("docker_unreachable".into(), "firing".into())
        ]
    );
    assert_eq!(
        body["subject"],
        "[truebit-monitor] 2 alerts: 2 firing, 0 resolved"
    );
    assert_eq!(body["queued"], 2);
    running.stop().await;
}

/// aiosmtpd from PyPI: scripts/test installs it and names its directory in
/// TRUEBIT_TEST_AIOSMTPD (for PYTHONPATH); without it the test fails and says so.
fn aiosmtpd(port: u16) -> Child {
    let path = std::env::var("TRUEBIT_TEST_AIOSMTPD").unwrap_or_default();
    let found = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .env("PYTHONPATH", &path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "aiosmtpd (a real SMTP server for the e-mail test) is not installed: run scripts/test, \
         or `python3 -m pip install --target DIR aiosmtpd==1.4.6` and set TRUEBIT_TEST_AIOSMTPD=DIR"
    );
    Command::new("python3")
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ])
        .env("PYTHONPATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs")
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_a_real_smtp_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = KillOnDrop(aiosmtpd(port));
    let stdout = server.0.stdout.take().expect("stdout");
    let printed = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&printed);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let mut s = sink.lock().expect("lock");
            s.push_str(&line);
            s.push('\n');
        }
    });
    support::wait_for("aiosmtpd to listen", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).map(drop)
    })
    .await;

    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let settings = AlertSettings {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}?tls=none")),
        email_to: Some("operator@example.org, second@example.org".into()),
        email_from: Some("Node monitor <monitor@example.org>".into()),
        ..AlertSettings::default()
    };
    let mut delivery = quick();
    delivery.timeout = Duration::from_secs(5);
    let running = Running::start(&store, &config(settings, delivery));
    running
        .alerts
        .notify(note(Rule::DbWrite, AlertState::Firing, "disk full"))
        .await
        .expect("notify");
    let mail = support::wait_for("the e-mail at the SMTP server", WAIT, || {
        let s = printed.lock().expect("lock").clone();
        if s.contains("END MESSAGE") {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await;
    for expected in [
        "Subject: [truebit-monitor] FIRING: Database writes failing",
        "From: \"Node monitor\" <monitor@example.org>",
        "To: operator@example.org, second@example.org",
        "Content-Type: text/plain; charset=utf-8",
        "disk full",
        "Check free disk space and the database file's permissions.",
        "Dashboard: https://monitor.example.org",
    ] {
        assert!(mail.contains(expected), "{expected:?} not in:\n{mail}");
    }
    let stats = running
        .wait_stats("email", |s| s.delivered_total > 0 || s.failures_total > 0)
        .await;
    assert_eq!((stats.queued, stats.delivered_total), (0, 1), "{stats:?}");

    // The test action, on the same server.
    running
        .alerts
        .send_test("email")
        .await
        .expect("test message");
    support::wait_for("the test e-mail", WAIT, || {
        let s = printed.lock().expect("lock").clone();
        if s.contains("Subject: [truebit-monitor] Test message") {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    running.stop().await;
}

// ------------------------------------------------------------------------------------------
// The outbox
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_was_down_gets_everything_once_in_order_even_across_a_restart() {
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let store = support::open_store(&db);
    let (addr, recorder) = Receiver::start().await.stop().await;
    let url = format!("http://{addr}/hook");
    let config = channels(&[spec("hook", "webhook", &url)], quick());
    let running = Running::start(&store, &config);
    for (rule, state) in [
        (Rule::ContainerDown, AlertState::Firing),
        (Rule::Silence, AlertState::Firing),
        (Rule::ContainerDown, AlertState::Resolved),
    ] {
        running
            .alerts
            .notify(note(rule, state, ""))
            .await
            .expect("notify");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut failures = 0;
    for _ in 0..100 {
        let stats = running.stats("hook").await;
        failures = stats.failures_total;
        if failures >= 3 {
            assert_eq!(stats.queued, 3);
            assert_eq!(stats.last_error.as_deref(), Some("cannot connect"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures >= 3, "the channel was retried: {failures}");
    // The monitor stops and starts again while the receiver is still down.
    running.stop().await;
    store.close().expect("close");
    drop(store);
    let store = support::open_store(&db);
    let running = Running::start(&store, &config);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rx = Receiver::start_on(addr, recorder).await;
    let seen = rx.wait_seen(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.seen().len(), 1, "delivered once");
    let body = seen[0].json();
    assert_eq!(
        rules_and_states(&body),
        vec![
            ("container_down".into(), "firing".into()),
            ("silence".into(), "firing".into()),
            ("container_down".into(), "resolved".into()),
        ]
    );
    let stats = running.stats("hook").await;
    assert_eq!(
        (stats.queued, stats.messages_total, stats.delivered_total),
        (0, 1, 3),
        "{stats:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_n_queued_go_out_as_one_summary() {
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let (addr, recorder) = Receiver::start().await.stop().await;
    let mut delivery = quick();
    delivery.summary_after = 3;
    let running = Running::start(
        &store,
        &channels(
            &[spec("hook", "webhook", &format!("http://{addr}/"))],
            delivery,
        ),
    );
    for state in [
        AlertState::Firing,
        AlertState::Resolved,
        AlertState::Firing,
        AlertState::Resolved,
        AlertState::Firing,
    ] {
        running
            .alerts
            .notify(note(Rule::RestartLoop, state, ""))
            .await
            .expect("notify");
    }
    running
        .alerts
        .notify(note(
            Rule::FailureRate,
            AlertState::Firing,
            "7 of 10 failed",
        ))
        .await
        .expect("notify");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rx = Receiver::start_on(addr, recorder).await;
    let seen = rx.wait_seen(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.seen().len(), 1);
    let body = seen[0].json();
    assert_eq!(body["queued"], 6);
    assert_eq!(
        body["subject"],
        "[truebit-monitor] 6 alerts while this channel was unreachable: 2 firing now"
    );
    assert_eq!(
        rules_and_states(&body),
        vec![
            ("restart_loop".into(), "firing".into()),
            ("failure_rate".into(), "firing".into()),
        ]
    );
    assert_eq!(running.stats("hook").await.delivered_total, 6);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_is_cut_by_the_timeout_and_retried() {
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let rx = Receiver::start().await;
    rx.recorder.hang.store(1, Ordering::SeqCst);
    // A timeout long enough that the answered attempt is not cut too on a busy machine.
    let mut delivery = quick();
    delivery.timeout = Duration::from_millis(1500);
    let running = Running::start(
        &store,
        &channels(&[spec("hook", "webhook", &rx.url("/"))], delivery),
    );
    running
        .alerts
        .notify(note(Rule::NoTasks, AlertState::Firing, ""))
        .await
        .expect("notify");
    let seen = rx.wait_seen(1, WAIT).await;
    assert_eq!(
        rx.hits(),
        2,
        "the first attempt hung, the second was answered"
    );
    assert_eq!(
        rules_and_states(&seen[0].json()),
        vec![("no_tasks".into(), "firing".into())]
    );
    let stats = running
        .wait_stats("hook", |s| s.delivered_total > 0 || s.failures_total > 1)
        .await;
    assert_eq!(
        (stats.failures_total, stats.delivered_total, stats.queued),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.last_error.as_deref(), Some("no answer within 1.5 s"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_holds_up_neither_the_others_nor_the_caller() {
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let good = Receiver::start().await;
    let hanging = Receiver::start().await;
    hanging.recorder.hang.store(usize::MAX, Ordering::SeqCst);
    let failing = Receiver::start().await;
    failing.recorder.status.store(500, Ordering::SeqCst);
    let (closed, _) = Receiver::start().await.stop().await;
    let mut delivery = quick();
    delivery.timeout = Duration::from_secs(5);
    let running = Running::start(
        &store,
        &channels(
            &[
                spec("hanging", "webhook", &hanging.url("/")),
                spec("failing", "slack", &failing.url("/")),
                spec("closed", "discord", &format!("http://{closed}/")),
                spec("good", "ntfy", &good.url("/topic")),
            ],
            delivery,
        ),
    );
    let started = Instant::now();
    running
        .alerts
        .notify(note(
            Rule::Federation,
            AlertState::Firing,
            "3 windows not delivered",
        ))
        .await
        .expect("notify");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "notify waits for no channel: {:?}",
        started.elapsed()
    );
    good.wait_seen(1, WAIT).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the good channel did not wait for the hanging one's 5 s timeout: {:?}",
        started.elapsed()
    );
    support::wait_for(
        "the hanging receiver's one request",
        WAIT,
        || match hanging.hits() {
            1 => Ok(()),
            n => Err(n),
        },
    )
    .await;
    support::wait_for("the failing channels' errors", WAIT, || {
        let failing = stats_now(&running, "failing");
        let closed = stats_now(&running, "closed");
        match (failing.last_error.as_deref(), closed.last_error.as_deref()) {
            (Some("the receiver answered HTTP 500"), Some("cannot connect")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let stats = running.alerts.stats().await.expect("stats");
    let queued: Vec<(String, u64)> = stats
        .iter()
        .map(|(_, s)| (s.channel.clone(), s.queued))
        .collect();
    assert_eq!(
        queued,
        vec![
            ("hanging".into(), 1),
            ("failing".into(), 1),
            ("closed".into(), 1),
            ("good".into(), 0)
        ]
    );
    running.stop().await;
}

/// A channel's stats from sync code (inside `wait_for`).
fn stats_now(running: &Running, channel: &str) -> ChannelStats {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(running.stats(channel))
    })
}

// ------------------------------------------------------------------------------------------
// Configuration and the command line
// ------------------------------------------------------------------------------------------

/// Runs the monitor's command line once, on a database of its own.
fn monitor(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = support::tempdir();
    Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DB_PATH", dir.path().join("cli.db"))
        .envs(env.iter().copied())
        .output()
        .expect("the monitor binary runs")
}

#[test]
fn bad_configuration_is_one_line_naming_the_setting() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("ALERT_TELEGRAM_BOT_TOKEN", "123:abc")],
            "truebit-monitor: invalid ALERT_TELEGRAM_CHAT_ID: missing: a telegram channel needs it\n",
        ),
        (
            &[("ALERT_WEBHOOK_URL", "hooks.example.org/secret-path")],
            "truebit-monitor: invalid ALERT_WEBHOOK_URL: not an http:// or https:// URL\n",
        ),
        (
            &[("ALERT_RETRY_MAX", "10 minutes")],
            "truebit-monitor: invalid ALERT_RETRY_MAX: \"10 minutes\" is not a duration from 1s to 24h like 90s, 10m or 6h\n",
        ),
        (
            &[("ALERT_SMTP_URL", "smtps://mail.example.org"), ("ALERT_EMAIL_TO", "not an address")],
            "truebit-monitor: invalid ALERT_EMAIL_TO: \"not an address\" is not an e-mail address\n",
        ),
        (
            &[("ALERT_NTFY_URL", "https://ntfy.sh/")],
            "truebit-monitor: invalid ALERT_NTFY_URL: needs the topic in its path, like https://ntfy.sh/my-node-alerts\n",
        ),
    ];
    for (env, expected) in cases {
        let out = monitor(&["alert", "test", "webhook"], env);
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    }
    // A channel defined by kind (as the API will): the unknown kind is named.
    let err = ChannelSpec {
        name: "ops".into(),
        kind: "pagerduty".into(),
        ..ChannelSpec::default()
    }
    .validate()
    .expect_err("unknown kind");
    assert_eq!(
        err.to_string(),
        "alert channel \"ops\": invalid kind: unknown kind \"pagerduty\" \
         (one of webhook, telegram, discord, slack, ntfy, email)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_on_the_command_line_reaches_the_channel_or_says_why_not() {
    let rx = Receiver::start().await;
    let url = rx.url("/cli");
    let env = [
        ("ALERT_WEBHOOK_URL", url.as_str()),
        ("PUBLIC_URL", DASHBOARD),
    ];
    let out = tokio::task::block_in_place(|| monitor(&["alert", "test", "webhook"], &env));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "test message sent to webhook (webhook)\n"
    );
    let seen = rx.wait_seen(1, WAIT).await;
    let body = seen[0].json();
    assert_eq!(
        (body["rule"].as_str(), body["state"].as_str()),
        (Some("test"), Some("firing"))
    );
    assert_eq!(body["subject"], "[truebit-monitor] Test message");
    assert_eq!(body["dashboard_url"], DASHBOARD);

    // A channel that is not configured, and one that refuses.
    rx.recorder.status.store(401, Ordering::SeqCst);
    let url = rx.url("/cli");
    let out = tokio::task::block_in_place(|| {
        (
            monitor(
                &["alert", "test", "telegram"],
                &[("ALERT_WEBHOOK_URL", url.as_str())],
            ),
            monitor(
                &["alert", "test", "webhook"],
                &[("ALERT_WEBHOOK_URL", url.as_str())],
            ),
        )
    });
    assert_eq!(out.0.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.0.stderr),
        "truebit-monitor: no alert channel \"telegram\" (configured: webhook)\n"
    );
    assert_eq!(out.1.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.1.stderr),
        "truebit-monitor: alert channel \"webhook\": the receiver answered HTTP 401\n"
    );
}

// ------------------------------------------------------------------------------------------
// The rules, end to end: the monitor binary, a real dockerd or a followed file, a webhook
// ------------------------------------------------------------------------------------------

/// The monitor binary as a process, with `env` on top of a database and a free port.
struct Monitor(Child);

impl Monitor {
    fn start(db: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Monitor {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DB_PATH", db)
            .env("PORT", "0")
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the monitor binary starts");
        Monitor(child)
    }

    fn kill9(mut self) {
        self.0.kill().expect("SIGKILL");
        let _ = self.0.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One value from the monitor's database, read with the sqlite3 command-line tool while
/// the monitor runs (WAL: readers never block it).
fn sql(db: &std::path::Path, query: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(query)
        .output()
        .expect("sqlite3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn wait_sql(db: &std::path::Path, query: &str, want: &str, timeout: Duration) {
    support::wait_for(&format!("{query} = {want}"), timeout, || {
        let got = sql(db, query);
        if got == want {
            Ok(())
        } else {
            Err(got)
        }
    })
    .await;
}

/// The rules and states of each webhook request, and the first alert's details.
fn hook_log(seen: &[Seen]) -> Vec<(String, String, String)> {
    seen.iter()
        .flat_map(|s| {
            let body = s.json();
            body["alerts"]
                .as_array()
                .expect("alerts")
                .iter()
                .map(|a| {
                    (
                        a["rule"].as_str().expect("rule").to_owned(),
                        a["state"].as_str().expect("state").to_owned(),
                        a["details"].as_str().expect("details").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The rule's duration and the most the firing may take after it (evaluation each
/// second, the 2 s grouping window, and margin for a busy machine).
const DOWN_AFTER: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_down_fires_once_resolves_once_and_a_restart_neither_repeats_nor_forgets_it() {
    let docker = support::docker();
    let name = support::unique_name("alerts-down");
    docker.remove(&name);
    docker.run(
        &name,
        &[],
        "i=0; while true; do i=$((i+1)); echo \"line $i\"; sleep 0.5; done",
    );
    let hook = Receiver::start().await;
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let log = dir.path().join("monitor.log");
    let url = hook.url("/hook");
    let after = format!("{}s", DOWN_AFTER.as_secs());
    let env = [
        ("DOCKER_HOST", docker.host.as_str()),
        ("CONTAINER_NAME", name.as_str()),
        ("ALERT_WEBHOOK_URL", url.as_str()),
        ("ALERT_CONTAINER_DOWN_AFTER", after.as_str()),
        // Only container_down: the test starts the container several times and stops it.
        ("ALERT_RESTART_LOOP_ENABLED", "false"),
        ("ALERT_SILENCE_ENABLED", "false"),
    ];
    let monitor = Monitor::start(&db, &log, &env);
    support::wait_for(
        "entries from the container",
        Duration::from_secs(30),
        || {
            let n: i64 = sql(&db, "SELECT count(*) FROM entries")
                .parse()
                .unwrap_or(0);
            if n > 0 {
                Ok(())
            } else {
                Err(n)
            }
        },
    )
    .await;

    // Stopped: one firing, within the rule's duration and the slack.
    docker.cli(&["kill", &name]);
    let killed = Instant::now();
    let seen = hook.wait_seen(1, DOWN_AFTER + SLACK).await;
    assert!(killed.elapsed() >= DOWN_AFTER, "fired before its duration");
    let down = (
        "container_down".to_owned(),
        "firing".to_owned(),
        format!("container {name} stopped with exit code 137"),
    );
    assert_eq!(hook_log(&seen), vec![down.clone()]);

    // SIGKILL while firing (once the webhook's rows left the outbox), and a restart: the
    // container is still down, and nothing is sent again.
    wait_sql(&db, "SELECT count(*) FROM alert_outbox", "0", WAIT).await;
    monitor.kill9();
    let monitor = Monitor::start(&db, &log, &env);
    tokio::time::sleep(DOWN_AFTER + SLACK).await;
    assert_eq!(
        hook_log(&hook.seen()),
        vec![down.clone()],
        "sent again after a restart"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT state FROM alert_rules WHERE rule = 'container_down'"
        ),
        "firing"
    );

    // Started: one resolved.
    docker.cli(&["start", &name]);
    let seen = hook.wait_seen(2, SLACK).await;
    let resolved = (
        "container_down".to_owned(),
        "resolved".to_owned(),
        down.2.clone(),
    );
    assert_eq!(hook_log(&seen), vec![down.clone(), resolved.clone()]);

    // Down again; then it is started while the monitor is down: "resolved" on start.
    docker.cli(&["kill", &name]);
    hook.wait_seen(3, DOWN_AFTER + SLACK).await;
    wait_sql(&db, "SELECT count(*) FROM alert_outbox", "0", WAIT).await;
    monitor.kill9();
    docker.cli(&["start", &name]);
    let monitor = Monitor::start(&db, &log, &env);
    let seen = hook.wait_seen(4, Duration::from_secs(15)).await;
    assert_eq!(
        hook_log(&seen),
        vec![down.clone(), resolved.clone(), down, resolved]
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.seen().len(), 4, "more than one message per change");

    // The incident history: two incidents, both resolved, both told to the webhook.
    wait_sql(&db, "SELECT count(*) FROM alert_outbox", "0", WAIT).await;
    assert_eq!(
        sql(
            &db,
            "SELECT count(*), count(resolved_ns), group_concat(channels_told), sum(delivery_failures)
             FROM alert_incidents WHERE rule = 'container_down'"
        ),
        "2|2|webhook,webhook|0"
    );
    drop(monitor);
    docker.remove(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_on_a_followed_file_fires_when_lines_stop_and_resolves_when_one_comes() {
    use std::io::Write as _;
    let hook = Receiver::start().await;
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let file = dir.path().join("node.log");
    let mut out = std::fs::File::create(&file).expect("log file");
    let url = hook.url("/hook");
    let file_arg = file.display().to_string();
    let _monitor = Monitor::start(
        &db,
        &dir.path().join("monitor.log"),
        &[
            ("LOG_FILE", file_arg.as_str()),
            ("ALERT_WEBHOOK_URL", url.as_str()),
            ("ALERT_SILENCE_AFTER", "2s"),
        ],
    );
    // A line every half second for 4 s: never silent for 2 s.
    for i in 0..8 {
        writeln!(out, "node line {i}").expect("write");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_sql(&db, "SELECT count(*) FROM entries", "8", WAIT).await;
    assert_eq!(hook.seen().len(), 0, "silence fired while lines came");
    // Then nothing: one firing, within 2 s and the slack of the last line.
    let last = Instant::now();
    let seen = hook.wait_seen(1, Duration::from_secs(2) + SLACK).await;
    assert!(last.elapsed() >= Duration::from_millis(1500), "fired early");
    let silent = (
        "silence".to_owned(),
        "firing".to_owned(),
        "no log line for 2s".to_owned(),
    );
    assert_eq!(hook_log(&seen), vec![silent.clone()]);
    // One line: resolved.
    writeln!(out, "node line 8").expect("write");
    let seen = hook.wait_seen(2, SLACK).await;
    // (Two seconds later, with no further line, it fires again: on a slow machine that
    // can share the resolved one's message.)
    assert_eq!(
        hook_log(&seen)[..2],
        [
            silent,
            (
                "silence".to_owned(),
                "resolved".to_owned(),
                "no log line for 2s".to_owned()
            )
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_rate_fires_on_the_share_of_failed_tasks_of_a_followed_file() {
    use std::io::Write as _;
    use truebit_monitor::demo::LogGenerator;
    // Tasks of the last half hour, as Docker's json-file records (with receive times).
    let start = now_ns() / 1_000_000_000 - 1800;
    let mut generator = LogGenerator::new(7, start)
        .with_banner(false)
        .with_task_limit(20);
    let mut text = String::new();
    while !generator.is_done() {
        let line = generator.next_line();
        let record = serde_json::json!({
            "log": format!("{}\n", line.text),
            "stream": "stdout",
            "time": truebit_clock::rfc3339_ns(line.received_ns),
        });
        text.push_str(&record.to_string());
        text.push('\n');
    }
    let expected = generator.expected();
    let (failed, finished) = (
        expected.tasks_failed,
        expected.tasks_completed + expected.tasks_failed,
    );
    assert!(failed > 0 && finished >= 10, "{expected:?}");
    let percent = failed * 100 / finished;

    let hook = Receiver::start().await;
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let file = dir.path().join("node.log");
    let mut out = std::fs::File::create(&file).expect("log file");
    out.write_all(text.as_bytes()).expect("write");
    let url = hook.url("/hook");
    let (file_arg, rate, min) = (
        file.display().to_string(),
        percent.to_string(),
        finished.to_string(),
    );
    let _monitor = Monitor::start(
        &db,
        &dir.path().join("monitor.log"),
        &[
            ("LOG_FILE", file_arg.as_str()),
            ("ALERT_WEBHOOK_URL", url.as_str()),
            ("ALERT_SILENCE_ENABLED", "false"),
            ("ALERT_FAILURE_RATE", rate.as_str()),
            ("ALERT_FAILURE_RATE_MIN_TASKS", min.as_str()),
        ],
    );
    let seen = hook.wait_seen(1, Duration::from_secs(30)).await;
    assert_eq!(
        hook_log(&seen),
        vec![(
            "failure_rate".to_owned(),
            "firing".to_owned(),
            format!("{failed} of {finished} tasks failed in the last 1h ({percent} %); reasons: see Recent failures on the dashboard"),
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_beats_while_nothing_fires_and_calls_the_fail_url_while_a_rule_fires() {
    use std::io::Write as _;
    let beat = Receiver::start().await;
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let file = dir.path().join("node.log");
    let mut out = std::fs::File::create(&file).expect("log file");
    writeln!(out, "node line 0").expect("write");
    let (ok, fail) = (beat.url("/ping/ok"), beat.url("/ping/fail"));
    let file_arg = file.display().to_string();
    // No channel: the rules are evaluated all the same.
    let _monitor = Monitor::start(
        &db,
        &dir.path().join("monitor.log"),
        &[
            ("LOG_FILE", file_arg.as_str()),
            ("HEARTBEAT_URL", ok.as_str()),
            ("HEARTBEAT_FAIL_URL", fail.as_str()),
            ("HEARTBEAT_INTERVAL", "1s"),
            ("ALERT_SILENCE_AFTER", "3s"),
        ],
    );
    let paths = |b: &Receiver| -> Vec<String> { b.seen().iter().map(|s| s.path.clone()).collect() };
    // Beats while nothing fires; then silence fires (no line for 3 s): the fail URL.
    let firing = support::wait_for("a call of the fail URL", Duration::from_secs(20), || {
        let p = paths(&beat);
        if p.iter().any(|p| p == "/ping/fail") {
            Ok(p)
        } else {
            Err(p)
        }
    })
    .await;
    let first_fail = firing.iter().position(|p| p == "/ping/fail").expect("fail");
    assert!(first_fail >= 1, "no beat before the rule fired: {firing:?}");
    assert!(
        firing[..first_fail].iter().all(|p| p == "/ping/ok"),
        "{firing:?}"
    );
    assert_eq!(
        sql(&db, "SELECT state FROM alert_rules WHERE rule = 'silence'"),
        "firing"
    );
    assert!(beat.seen().iter().all(|s| s.method == Method::GET));
    // A line: silence resolves, the beats come back.
    writeln!(out, "node line 1").expect("write");
    let calls = beat.seen().len();
    let after = support::wait_for("beats again", Duration::from_secs(10), || {
        let p = paths(&beat);
        if p.len() > calls && p.last().map(String::as_str) == Some("/ping/ok") {
            Ok(p)
        } else {
            Err(p)
        }
    })
    .await;
    // The beat after the fail calls says silence resolved (it fires again 3 s later).
    let last_fail = after.iter().rposition(|p| p == "/ping/fail").expect("fail");
    assert!(
        after[last_fail + 1..].iter().any(|p| p == "/ping/ok"),
        "{after:?}"
    );
}

/// A port free a moment ago on 127.0.0.1 (for a monitor binary's HTTP server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

const API_KEY: &str = "alerts-test-key-0123456789abcdef";

/// One call of the monitor's HTTP API with the admin key; the status and the body.
async fn api(port: u16, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(API_KEY);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the monitor answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn api_json(port: u16, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let (status, text) = api(port, method, path, body).await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

fn rule<'a>(overview: &'a Value, id: &str) -> &'a Value {
    overview["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["id"] == id)
        .expect("the rule")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_rules_and_channels_changes_a_rule_for_good_and_tests_a_channel() {
    let hook = Receiver::start().await;
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let log = dir.path().join("monitor.log");
    let file = dir.path().join("node.log");
    std::fs::write(&file, "").expect("log file");
    let (url, file_arg, port) = (hook.url("/hook"), file.display().to_string(), free_port());
    let port_arg = port.to_string();
    let env = [
        ("LOG_FILE", file_arg.as_str()),
        ("ALERT_WEBHOOK_URL", url.as_str()),
        ("ALERT_SILENCE_AFTER", "2s"),
        ("API_KEY", API_KEY),
        ("HOST", "127.0.0.1"),
        ("PORT", port_arg.as_str()),
    ];
    let monitor = Monitor::start(&db, &log, &env);
    // No line at all: silence fires after 2 s.
    hook.wait_seen(1, Duration::from_secs(20)).await;
    let overview = support::wait_for("silence firing in the API", WAIT, || {
        let got = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(api(
                port,
                reqwest::Method::GET,
                "/api/alerts",
                None,
            ))
        });
        let v: Value = serde_json::from_str(&got.1).unwrap_or(Value::Null);
        if v["rules"].is_array() && rule(&v, "silence")["state"] == "firing" {
            Ok(v)
        } else {
            Err(got)
        }
    })
    .await;
    let silence = rule(&overview, "silence");
    assert_eq!(
        (
            &silence["enabled"],
            &silence["after_seconds"],
            &silence["source"],
            &silence["details"]
        ),
        (
            &json!(true),
            &json!(2),
            &json!("config"),
            &json!("no log line for 2s")
        )
    );
    assert_eq!(rule(&overview, "no_tasks")["enabled"], false);
    assert_eq!(overview["firing"], 1);
    assert_eq!(overview["channels"][0]["name"], "webhook");
    assert_eq!(overview["channels"][0]["kind"], "webhook");
    assert!(
        !overview.to_string().contains(&url),
        "the channel's URL is shown"
    );

    // Turned off: stored, and silence resolves at once.
    let changed = api_json(
        port,
        reqwest::Method::PUT,
        "/api/alerts/rules/silence",
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(
        (&changed["enabled"], &changed["source"]),
        (&json!(false), &json!("database"))
    );
    let seen = hook.wait_seen(2, SLACK).await;
    assert_eq!(
        hook_log(&seen)[1],
        (
            "silence".to_owned(),
            "resolved".to_owned(),
            "no log line for 2s".to_owned()
        )
    );
    // A field the rule does not use, and an unknown rule, are refused.
    let (status, text) = api(
        port,
        reqwest::Method::PUT,
        "/api/alerts/rules/silence",
        Some(json!({ "percent": 5 })),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("silence takes enabled, after_seconds"),
        "{text}"
    );
    let (status, _) = api(
        port,
        reqwest::Method::PUT,
        "/api/alerts/rules/nope",
        Some(json!({ "enabled": true })),
    )
    .await;
    assert_eq!(status, 400);

    // After a restart the stored setting wins over ALERT_SILENCE_AFTER's rule being on.
    wait_sql(&db, "SELECT count(*) FROM alert_outbox", "0", WAIT).await;
    monitor.kill9();
    let _monitor = Monitor::start(&db, &log, &env);
    let overview = evaluated_overview(port).await;
    let silence = rule(&overview, "silence");
    assert_eq!(
        (&silence["enabled"], &silence["source"], &silence["state"]),
        (&json!(false), &json!("database"), &json!("ok"))
    );

    // The incident history.
    let incidents = api_json(port, reqwest::Method::GET, "/api/alerts/incidents", None).await;
    let items = incidents["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{incidents}");
    assert_eq!(
        (
            &items[0]["rule"],
            &items[0]["channels_told"],
            &items[0]["delivery_failures"]
        ),
        (&json!("silence"), &json!(["webhook"]), &json!(0))
    );
    assert!(items[0]["resolved_ns"].as_i64() > items[0]["fired_ns"].as_i64());

    // The test message: sent now; an unconfigured channel is 404.
    let result = api_json(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels/webhook/test",
        None,
    )
    .await;
    assert_eq!(
        result,
        json!({ "channel": "webhook", "kind": "webhook", "sent": true, "error": null })
    );
    let seen = hook.wait_seen(3, WAIT).await;
    assert_eq!(hook_log(&seen)[2].0, "test");
    let (status, _) = api(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels/telegram/test",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // /metrics.
    let (status, metrics) = api(port, reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);
    for line in [
        "truebit_alert_firing{rule=\"silence\"} 0",
        "truebit_alert_firing{rule=\"container_down\"} 0",
        "truebit_alert_messages_total{channel=\"webhook\"} 3",
        "truebit_alert_delivery_failures_total{channel=\"webhook\"} 0",
        "truebit_alert_notifications_queued{channel=\"webhook\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }
}

/// Whether `seen`'s X-Signature is the HMAC of its timestamp and body under `secret`.
fn signed_with(seen: &Seen, secret: &str) -> bool {
    let timestamp = seen.header("x-timestamp");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&seen.body);
    seen.header("x-signature") == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn channel<'a>(overview: &'a Value, name: &str) -> Option<&'a Value> {
    overview["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["name"] == name)
}

/// GET /api/alerts once the engine has read its states (after a start).
async fn evaluated_overview(port: u16) -> Value {
    support::wait_for("the API after a start", Duration::from_secs(20), || {
        let got = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                reqwest::Client::new()
                    .get(format!("http://127.0.0.1:{port}/api/alerts"))
                    .bearer_auth(API_KEY)
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            })
        });
        match got {
            Some(v) if v["evaluated"] == true => Ok(v),
            other => Err(other),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_defined_changed_and_deleted_through_the_api_for_good_and_never_shown() {
    let (config_hook, ops_hook, moved_hook) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let log = dir.path().join("monitor.log");
    let file = dir.path().join("node.log");
    std::fs::write(&file, "").expect("log file");
    let (config_url, file_arg, port) = (
        config_hook.url("/config"),
        file.display().to_string(),
        free_port(),
    );
    let port_arg = port.to_string();
    let env = [
        ("LOG_FILE", file_arg.as_str()),
        ("ALERT_WEBHOOK_URL", config_url.as_str()),
        ("ALERT_SILENCE_ENABLED", "false"),
        ("API_KEY", API_KEY),
        ("HOST", "127.0.0.1"),
        ("PORT", port_arg.as_str()),
    ];
    let monitor = Monitor::start(&db, &log, &env);
    let overview = evaluated_overview(port).await;
    assert_eq!(
        channel(&overview, "webhook").map(|c| (&c["source"], &c["set"])),
        Some((&json!("config"), &json!(["url"])))
    );

    // Defined: 201, in effect at once, shown by name, kind and which settings are set.
    let (ops_url, secret) = (ops_hook.url("/ops"), "ops-signing-secret-0123456789");
    let (status, text) = api(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels",
        Some(json!({ "name": "ops", "kind": "webhook", "url": ops_url, "secret": secret })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        (
            &created["name"],
            &created["kind"],
            &created["source"],
            &created["set"],
            &created["delivered_total"]
        ),
        (
            &json!("ops"),
            &json!("webhook"),
            &json!("database"),
            &json!(["url", "secret"]),
            &json!(0)
        )
    );
    // Refused, naming what is wrong: the name in use, an unknown kind, a missing chat id,
    // a bad URL, an unknown field.
    for (body, want_status, want) in [
        (
            json!({ "name": "ops", "kind": "ntfy", "url": "http://127.0.0.1:9/t" }),
            409,
            "exists already",
        ),
        (
            json!({ "name": "x", "kind": "pager", "url": "http://127.0.0.1:9/" }),
            400,
            "invalid kind",
        ),
        (
            json!({ "name": "tg", "kind": "telegram", "secret": "123456:abcDEF" }),
            400,
            "invalid chat_id: missing",
        ),
        (
            json!({ "name": "d", "kind": "discord", "url": "ftp://example.org/x" }),
            400,
            "invalid url: not an http:// or https:// URL",
        ),
        (
            json!({ "name": "w", "kind": "webhook", "url": "http://127.0.0.1:9/", "token": "t" }),
            400,
            "unknown field",
        ),
    ] {
        let (status, text) = api(
            port,
            reqwest::Method::POST,
            "/api/alerts/channels",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, want_status, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }

    // A rule's notification reaches both channels; the new one is signed with its secret.
    let resolved_or_fired = |seen: &[Seen]| {
        hook_log(seen)
            .into_iter()
            .map(|(r, s, _)| (r, s))
            .collect::<Vec<_>>()
    };
    let test = api_json(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels/ops/test",
        None,
    )
    .await;
    assert_eq!(test["sent"], true, "{test}");
    let seen = ops_hook.wait_seen(1, WAIT).await;
    assert_eq!(
        resolved_or_fired(&seen),
        vec![("test".to_owned(), "firing".to_owned())]
    );
    assert!(signed_with(&seen[0], secret));

    // Changed: a new URL, the secret kept without being sent again.
    let moved_url = moved_hook.url("/moved");
    let changed = api_json(
        port,
        reqwest::Method::PUT,
        "/api/alerts/channels/ops",
        Some(json!({ "url": moved_url })),
    )
    .await;
    assert_eq!(changed["set"], json!(["url", "secret"]));
    api_json(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels/ops/test",
        None,
    )
    .await;
    let seen = moved_hook.wait_seen(1, WAIT).await;
    assert!(signed_with(&seen[0], secret));
    assert_eq!(ops_hook.seen().len(), 1, "the old URL was called again");
    // The secret unset: no signature any more.
    let changed = api_json(
        port,
        reqwest::Method::PUT,
        "/api/alerts/channels/ops",
        Some(json!({ "secret": "" })),
    )
    .await;
    assert_eq!(changed["set"], json!(["url"]));
    // A configured channel changed here: stored, it wins from now on.
    let changed = api_json(
        port,
        reqwest::Method::PUT,
        "/api/alerts/channels/webhook",
        Some(json!({ "url": ops_url })),
    )
    .await;
    assert_eq!(changed["source"], "database");
    let (status, _) = api(
        port,
        reqwest::Method::PUT,
        "/api/alerts/channels/nope",
        Some(json!({ "url": ops_url })),
    )
    .await;
    assert_eq!(status, 404);

    // Nothing shows a URL or the secret: not the API, not the page's data, not the log.
    let overview = api_json(port, reqwest::Method::GET, "/api/alerts", None).await;
    let shown = overview.to_string();
    for hidden in [
        ops_url.as_str(),
        moved_url.as_str(),
        config_url.as_str(),
        secret,
    ] {
        assert!(!shown.contains(hidden), "{hidden} in {shown}");
    }

    // Deleted: gone at once; the answer is the channel as it was.
    let deleted = api_json(
        port,
        reqwest::Method::DELETE,
        "/api/alerts/channels/ops",
        None,
    )
    .await;
    assert_eq!(
        (&deleted["name"], &deleted["delivered_total"]),
        (&json!("ops"), &json!(2))
    );
    let (status, _) = api(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels/ops/test",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // After a restart: the configured channel keeps the stored URL, "ops" stays deleted.
    monitor.kill9();
    let monitor = Monitor::start(&db, &log, &env);
    let overview = evaluated_overview(port).await;
    let names: Vec<&str> = overview["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["webhook"]);
    api_json(
        port,
        reqwest::Method::POST,
        "/api/alerts/channels/webhook/test",
        None,
    )
    .await;
    ops_hook.wait_seen(2, WAIT).await;
    assert!(config_hook.seen().is_empty(), "the configured URL was used");

    // A configured channel deleted stays deleted after a restart, ALERT_WEBHOOK_URL or not.
    api_json(
        port,
        reqwest::Method::DELETE,
        "/api/alerts/channels/webhook",
        None,
    )
    .await;
    monitor.kill9();
    let _monitor = Monitor::start(&db, &log, &env);
    let overview = evaluated_overview(port).await;
    assert_eq!(overview["channels"], json!([]));
    let logged = std::fs::read_to_string(&log).expect("monitor log");
    for hidden in [ops_url.as_str(), moved_url.as_str(), secret] {
        assert!(!logged.contains(hidden), "{hidden} in the monitor's log");
    }
    assert!(logged.contains("alert channel stored"), "{logged}");
}

// ------------------------------------------------------------------------------------------
// The Alerts page and the banner (in-process, as the pages tests)
// ------------------------------------------------------------------------------------------

/// The in-process test app (alerts running, a webhook channel that cannot be reached)
/// with an operator session: the app, its cookie and CSRF token.
async fn logged_in_app() -> (crate::http::TestApp, String, String) {
    let app = crate::http::app_at(
        crate::http::settings(),
        0,
        truebit_monitor::federation::FederationConfig::default(),
        1_800_000_000 * 1_000_000_000,
    )
    .await;
    let (cookie, csrf) = app.login().await;
    (app, cookie, csrf)
}

async fn html(app: &crate::http::TestApp, cookie: &str, uri: &str) -> String {
    let r = app
        .call(
            axum::http::Method::GET,
            uri,
            crate::http::Auth::Cookie(cookie),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{uri}");
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_page_shows_rules_channels_and_incidents_and_every_page_a_firing_banner() {
    use truebit_monitor::source::{Connection, ContainerState, SourceStatus};
    let (app, cookie, csrf) = logged_in_app().await;
    let page = html(&app, &cookie, "/alerts").await;
    assert!(
        page.contains(r#"<tr data-rule="container_down">"#),
        "{page}"
    );
    assert!(page.contains(r#"<tr data-channel="webhook">"#), "{page}");
    assert!(page.contains("No rule has fired yet."));
    assert!(
        !page.contains("127.0.0.1:9"),
        "the channel's URL is on the page"
    );
    assert!(!page.contains("Alert firing"));

    // The node container stops: pending, then (the clock moved past 60 s) firing.
    let _ = app.status.send(SourceStatus {
        kind: "docker",
        connection: Connection::Connected {
            version: "27.0".into(),
        },
        container: ContainerState::Stopped {
            id: "c1".into(),
            name: "runner-node".into(),
            exit_code: Some(137),
        },
        last_error: None,
    });
    let pending = |v: &Value| rule(v, "container_down")["state"].clone();
    support::wait_for("container_down pending", WAIT, || {
        let v = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(app.get_json("/api/alerts"))
        });
        if pending(&v) == "pending" {
            Ok(())
        } else {
            Err(v)
        }
    })
    .await;
    app.clock.advance(Duration::from_secs(61));
    support::wait_for("container_down firing", WAIT, || {
        let v = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(app.get_json("/api/alerts"))
        });
        if pending(&v) == "firing" {
            Ok(())
        } else {
            Err(v)
        }
    })
    .await;
    let banner = "Alert firing: Node container not running: container runner-node stopped with exit code 137 (see Alerts).";
    for uri in ["/", "/tasks", "/alerts"] {
        assert!(html(&app, &cookie, uri).await.contains(banner), "{uri}");
    }
    let page = html(&app, &cookie, "/alerts").await;
    assert!(
        page.contains(r#"<span class="badge bad" data-state>firing</span>"#),
        "{page}"
    );
    assert!(
        page.contains("<td><code>container_down</code></td>"),
        "{page}"
    );

    // The test button: the channel cannot be reached; the page says so and why.
    let r = crate::pages::post_form(
        &app,
        "/alerts/test",
        &cookie,
        &[("csrf_token", csrf.as_str()), ("channel", "webhook")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/alerts?m=failed");
    let page = html(&app, &cookie, "/alerts?m=failed").await;
    assert!(
        page.contains("The channel did not take the test message"),
        "{page}"
    );
    assert!(
        page.contains(r#"<span class="muted">cannot connect</span>"#),
        "{page}"
    );
}

/// The form under a rule on the Alerts page changes it for good: stored, in effect at once,
/// shown with its new settings; a value that does not read is refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_is_changed_from_the_alerts_page() {
    let (app, cookie, csrf) = logged_in_app().await;
    let page = html(&app, &cookie, "/alerts").await;
    assert!(page.contains(r#"data-rule-form="silence""#), "{page}");
    assert!(
        page.contains(r#"<input name="after" value="10m""#),
        "{page}"
    );
    let post = async |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(fields);
        crate::pages::post_form(&app, "/alerts/rules/silence", &cookie, &all).await
    };
    let r = post(&[("enabled", "true"), ("after", "15m")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/alerts?m=rule");
    let v = app.get_json("/api/alerts").await;
    assert_eq!(rule(&v, "silence")["after_seconds"], 900);
    assert_eq!(rule(&v, "silence")["source"], "database");
    let page = html(&app, &cookie, "/alerts?m=rule").await;
    assert!(page.contains("Rule saved"), "{page}");
    assert!(
        page.contains(r#"<input name="after" value="15m""#),
        "{page}"
    );

    let r = post(&[("after", "soon")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("is not a duration"), "{text}");
    assert_eq!(
        rule(&app.get_json("/api/alerts").await, "silence")["after_seconds"],
        900,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_is_added_changed_and_deleted_from_the_alerts_page() {
    let (app, cookie, csrf) = logged_in_app().await;
    let post = async |path: &str, fields: &[(&str, &str)]| {
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(fields);
        crate::pages::post_form(&app, path, &cookie, &all).await
    };
    let token = "123456789:AAsecret-bot-token_xyz";
    let r = post(
        "/alerts/channels",
        &[
            ("name", "phone"),
            ("kind", "telegram"),
            ("url", ""),
            ("secret", token),
            ("chat_id", "-100123"),
            ("to", ""),
            ("from", ""),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["location"], "/alerts?m=channel-added");
    let page = html(&app, &cookie, "/alerts?m=channel-added").await;
    assert!(page.contains("Channel added"), "{page}");
    assert!(page.contains(r#"data-channel-form="phone""#), "{page}");
    assert!(page.contains("set: url, secret, chat_id"), "{page}");
    assert!(!page.contains(token), "the token is shown");
    assert!(!page.contains("-100123"), "the chat id is shown");

    // A change with the other fields left empty keeps them; a bad value is a 400
    // naming it, and changes nothing.
    let r = post(
        "/alerts/channels/phone",
        &[("chat_id", "@node_alerts"), ("secret", "")],
    )
    .await;
    assert_eq!(r.headers["location"], "/alerts?m=channel-saved");
    let r = post("/alerts/channels/phone", &[("chat_id", "not a chat")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("invalid chat_id"), "{text}");
    let v = app.get_json("/api/alerts").await;
    let phone = channel(&v, "phone").expect("the channel");
    assert_eq!(
        (&phone["kind"], &phone["source"], &phone["set"]),
        (
            &json!("telegram"),
            &json!("database"),
            &json!(["url", "secret", "chat_id"])
        )
    );
    // A second channel of the same name is refused.
    let r = post(
        "/alerts/channels",
        &[
            ("name", "phone"),
            ("kind", "ntfy"),
            ("url", "http://127.0.0.1:9/t"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let r = post("/alerts/channels/phone/delete", &[]).await;
    assert_eq!(r.headers["location"], "/alerts?m=channel-deleted");
    let v = app.get_json("/api/alerts").await;
    assert!(channel(&v, "phone").is_none(), "{v}");
    let r = post("/alerts/channels/phone/delete", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------------------------------------
// The engine behind the store's feed
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_engine_that_fell_behind_the_feed_reads_the_store_and_goes_on() {
    use truebit_monitor::alerts::handle::ServiceOptions;
    use truebit_monitor::alerts::AlertService;
    use truebit_monitor::model::{ContainerAction, ContainerEvent};
    use truebit_monitor::source::{Connection, ContainerState, SourceStatus};
    use truebit_monitor::store::feed::FEED_CAPACITY;
    use truebit_monitor::store::Batch;

    const S: i64 = 1_000_000_000;
    let now = 1_800_000_000 * S;
    let dir = support::tempdir();
    let store = support::open_store(&dir.path().join("m.db"));
    let (_status_tx, status) = tokio::sync::watch::channel(SourceStatus {
        kind: "docker",
        connection: Connection::Connected {
            version: "27.0".into(),
        },
        container: ContainerState::Running {
            id: "c1".into(),
            name: "runner-node".into(),
        },
        last_error: None,
    });
    let service = AlertService::start(
        store.clone(),
        &AlertSettings::default().resolve().expect("valid"),
        status,
        ServiceOptions {
            dashboard_url: None,
            federation_enabled: false,
            clock: truebit_clock::Clock::manual(now),
            tick: Duration::from_millis(50),
        },
        CancellationToken::new(),
    )
    .await
    .expect("alerts start");
    // More commits than the feed holds, before the engine's task first runs (this
    // runtime has one thread and the test does not yield): its receiver lags.
    let starts = FEED_CAPACITY + 100;
    for i in 0..starts {
        let mut batch = Batch::new("docker:runner-node");
        batch.container_events.push(ContainerEvent {
            container_id: "c1".into(),
            container_name: "runner-node".into(),
            time_ns: now - 500 * S + i as i64 * (S / 4),
            action: ContainerAction::Started,
            exit_code: None,
            inferred: false,
        });
        store.submit(batch).expect("submit");
        store.flush().expect("commit");
    }
    let handle = service.handle();
    let details = support::wait_for("restart_loop firing", WAIT, || {
        let rule = handle
            .rules()
            .into_iter()
            .find(|r| r.id == "restart_loop")
            .expect("rule");
        match rule.state {
            truebit_monitor::alerts::rules::RuleState::Firing => Ok(rule.details),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(details, format!("{starts} starts in the last 10m"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_write_goes_straight_to_the_channels_while_the_database_cannot_be_written() {
    use truebit_monitor::alerts::handle::ServiceOptions;
    use truebit_monitor::alerts::AlertService;
    use truebit_monitor::model::{Entry, Kind, Pos};
    use truebit_monitor::source::{Connection, ContainerState, SourceStatus};
    use truebit_monitor::store::{Batch, StoreConfig};

    let hook = Receiver::start().await;
    let dir = support::tempdir();
    let mut config = StoreConfig::new(dir.path().join("m.db"));
    // Clamped to the fresh database's size: no room for new pages.
    config.max_page_count = Some(1);
    let store = Store::open(config).expect("open");
    let (_status_tx, status) = tokio::sync::watch::channel(SourceStatus {
        kind: "docker",
        connection: Connection::Connected {
            version: "27.0".into(),
        },
        container: ContainerState::Running {
            id: "c1".into(),
            name: "runner-node".into(),
        },
        last_error: None,
    });
    let url = hook.url("/hook");
    let settings = AlertSettings {
        webhook_url: Some(url),
        db_write_after: Some("1s".into()),
        silence_enabled: Some(false),
        ..AlertSettings::default()
    };
    let service = AlertService::start(
        store.clone(),
        &settings.resolve().expect("valid"),
        status,
        ServiceOptions {
            dashboard_url: None,
            federation_enabled: false,
            clock: truebit_clock::Clock::system(),
            tick: Duration::from_millis(100),
        },
        CancellationToken::new(),
    )
    .await
    .expect("alerts start");
    let mut batch = Batch::new("docker:runner-node");
    batch.entries = (1..=500)
        .map(|i| Entry {
            pos: Pos::new(0, i),
            received_ns: Some(now_ns()),
            node_time: None,
            level: None,
            logger: None,
            version: None,
            message: "x".repeat(300),
            kind: Kind::Log,
            execution_id: None,
            event: None,
            replaces: None,
        })
        .collect();
    store.submit(batch).expect("submit");
    let failing = Instant::now();
    let seen = hook.wait_seen(1, Duration::from_secs(1) + SLACK).await;
    assert!(failing.elapsed() >= Duration::from_secs(1), "fired early");
    let firing = (
        "db_write".to_owned(),
        "firing".to_owned(),
        "commits to the database fail".to_owned(),
    );
    assert_eq!(hook_log(&seen), vec![firing.clone()]);
    // Space again: the kept batch and the rule's state are written; resolved.
    store.set_max_page_count(1_000_000);
    let seen = hook.wait_seen(2, SLACK).await;
    assert_eq!(
        hook_log(&seen),
        vec![
            firing,
            (
                "db_write".to_owned(),
                "resolved".to_owned(),
                "commits to the database fail".to_owned()
            )
        ]
    );
    store.flush().expect("flush");
    assert_eq!(store.summary().expect("summary").entries, 500);
    // Its incident is in the history; nothing of it waits in the outbox.
    let incidents = service.handle().incidents(10).await.expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].rule, Rule::DbWrite);
    assert!(incidents[0].resolved_ns.is_some());
    assert_eq!(stats_of(&service, "webhook").await.queued, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.seen().len(), 2, "sent more than once");
}

async fn stats_of(service: &truebit_monitor::alerts::AlertService, channel: &str) -> ChannelStats {
    let view = service
        .handle()
        .channels()
        .await
        .expect("channels")
        .into_iter()
        .find(|c| c.name == channel)
        .expect("channel");
    ChannelStats {
        channel: view.name,
        queued: view.queued,
        ..ChannelStats::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loop_fires_once_while_docker_keeps_restarting_the_container_and_resolves_after_its_window(
) {
    let docker = support::docker();
    let name = support::unique_name("alerts-loop");
    docker.remove(&name);
    let hook = Receiver::start().await;
    let dir = support::tempdir();
    let db = dir.path().join("m.db");
    let url = hook.url("/hook");
    let _monitor = Monitor::start(
        &db,
        &dir.path().join("monitor.log"),
        &[
            ("DOCKER_HOST", docker.host.as_str()),
            ("CONTAINER_NAME", name.as_str()),
            ("ALERT_WEBHOOK_URL", url.as_str()),
            ("ALERT_RESTART_LOOP_STARTS", "3"),
            ("ALERT_RESTART_LOOP_WINDOW", "15s"),
            ("ALERT_CONTAINER_DOWN_ENABLED", "false"),
            ("ALERT_SILENCE_ENABLED", "false"),
        ],
    );
    // Exits after a moment; Docker starts it again (100 ms, 200 ms, 400 ms, … later).
    docker.cli(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--restart",
        "always",
        support::IMAGE,
        "sh",
        "-c",
        "echo starting; sleep 0.3; exit 3",
    ]);
    let seen = hook.wait_seen(1, Duration::from_secs(30)).await;
    let log = hook_log(&seen);
    assert_eq!(
        (log[0].0.as_str(), log[0].1.as_str()),
        ("restart_loop", "firing")
    );
    let starts: u32 = log[0]
        .2
        .strip_suffix(" starts in the last 15s")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("details: {:?}", log[0].2));
    assert!(starts >= 3, "{starts}");
    // No more restarts: once the window has passed the starts, resolved; once.
    docker.cli(&["update", "--restart", "no", &name]);
    let seen = hook
        .wait_seen(2, Duration::from_secs(15) + Duration::from_secs(15))
        .await;
    let log = hook_log(&seen);
    assert_eq!(
        log.iter()
            .map(|(r, s, _)| (r.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        vec![("restart_loop", "firing"), ("restart_loop", "resolved")]
    );
    docker.remove(&name);
}
