//! deploy/nats-server.conf in a real nats-server: the monitor and aggregator users held
//! to their subjects, TLS, WebSocket, passwords, limits.

use truebit_testkit::NatsServer;

use super::compose::Compose;
use super::*;

/// `$NAME` references outside quoted strings and comments: what the server takes from
/// its environment.
pub(super) fn nats_conf_variables(conf: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in conf.lines() {
        let mut quoted = false;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '"' => quoted = !quoted,
                '#' if !quoted => break,
                '$' if !quoted => {
                    let name: String = chars[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                        .collect();
                    i += name.len();
                    names.insert(name);
                }
                _ => {}
            }
            i += 1;
        }
    }
    names
}

/// The value of a top-level `key: value` line, unquoted.
pub(super) fn nats_conf_top(conf: &str, key: &str) -> String {
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("nats-server.conf has no top-level {key}"))
}

/// The first `key: "value"` anywhere.
pub(super) fn nats_conf_quoted(conf: &str, key: &str) -> String {
    conf.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("nats-server.conf has no {key}"))
}

/// `key: N` inside the top-level `block { … }`.
pub(super) fn nats_conf_number(conf: &str, block: &str, key: &str) -> u16 {
    conf.lines()
        .skip_while(|l| !l.starts_with(&format!("{block} {{")))
        .take_while(|l| *l != "}")
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("nats-server.conf has no {block}.{key}"))
}

/// With a space and a `#`: the quoting of docker-compose.federation.yml must carry it.
const MONITOR_PASSWORD: &str = "monitor test #password";
const AGGREGATOR_PASSWORD: &str = "aggregator-test-password";
const STREAM: &str = "TRUEBIT_REPORTS";
/// The aggregator's own reply prefix (nats-server.conf lets only it read there).
const AGGREGATOR_INBOX: &str = "_AGGREGATOR_INBOX";

/// A test CA and a server certificate for localhost / 127.0.0.1 (openssl, as an
/// operator would); the folder has the file names nats-server.conf expects.
fn test_certificates(dir: &Path) -> PathBuf {
    truebit_testkit::certificates(dir).dir
}

/// A nats-server running deploy/nats-server.conf, stopped (by its pid) on drop.
struct Hub {
    _server: NatsServer,
    _dir: tempfile::TempDir,
    ca: PathBuf,
    client: u16,
    websocket: u16,
    http: u16,
}

/// The environment docker-compose.federation.yml gives nats-server for these passwords.
fn nats_env(monitor_password: &str, aggregator_password: &str) -> BTreeMap<String, String> {
    let compose = Compose::load(
        "deploy/docker-compose.federation.yml",
        &[
            ("MONITOR_PASSWORD", monitor_password),
            ("AGGREGATOR_PASSWORD", aggregator_password),
            ("HUB_DOMAIN", "hub.example.org"),
        ],
    );
    compose.environment(compose.service("nats"))
}

impl Hub {
    fn start() -> Hub {
        Hub::start_with_monitor_password(MONITOR_PASSWORD)
    }

    /// `monitor_password` is what MONITOR_PASSWORD holds: a password or a bcrypt hash.
    fn start_with_monitor_password(monitor_password: &str) -> Hub {
        let dir = support::tempdir();
        let certs = truebit_testkit::certificates(dir.path());
        let conf = truebit_testkit::shipped_nats_conf(
            &read("deploy/nats-server.conf"),
            dir.path(),
            &certs.dir,
        );
        let env: Vec<(String, String)> = nats_env(monitor_password, AGGREGATOR_PASSWORD)
            .into_iter()
            .collect();
        let server = NatsServer::start_with_env(
            dir.path(),
            &["-c", &conf.display().to_string(), "-m", "-1"],
            &env,
        );
        Hub {
            client: server.port,
            websocket: server.websocket_port.expect("a websocket listener"),
            http: server.http_port.expect("the monitoring port"),
            ca: certs.ca,
            _server: server,
            _dir: dir,
        }
    }

    fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.client)
    }

    fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}", self.websocket)
    }

    /// GET on the monitoring port, as JSON.
    fn monitoring(&self, path: &str) -> serde_json::Value {
        let body = http_get(self.http, path).1;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

/// Up to `max` messages from the aggregator's durable consumer on `stream` (2 s).
async fn aggregator_fetch(
    stream: &async_nats::jetstream::stream::Stream,
    max: usize,
) -> async_nats::jetstream::consumer::pull::Batch {
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer("aggregator")
        .await
        .expect("the consumer");
    consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch")
}

/// A NATS client and the events the server sent it (permission violations arrive there).
struct NatsClient {
    client: async_nats::Client,
    events: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn nats_connect(
    url: &str,
    user: &str,
    password: &str,
    ca: &Path,
) -> Result<NatsClient, async_nats::ConnectError> {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .add_root_certificates(ca.to_owned())
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event.to_string());
                }
            });
    if user == "aggregator" {
        // Its replies (among them the reports a pull consumer hands out) must not go to
        // _INBOX.>, which every monitor may read (docs/FEDERATION.md).
        options = options.custom_inbox_prefix(AGGREGATOR_INBOX);
    }
    let client = options.connect(url).await?;
    Ok(NatsClient { client, events })
}

impl NatsClient {
    async fn open(url: &str, user: &str, password: &str, ca: &Path) -> NatsClient {
        nats_connect(url, user, password, ca)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect to {url}: {e}"))
    }

    /// Waits for the server's "Permissions Violation for {kind} to \"{subject}\"".
    async fn expect_violation(&mut self, kind: &str, subject: &str) {
        let wanted = format!("permissions violation for {kind} to \"{subject}\"").to_lowercase();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if event.to_lowercase().contains(&wanted) => return,
                Ok(Some(_other)) => continue,
                Ok(None) | Err(_) => {
                    panic!("the server did not refuse {kind} to {subject:?} (expected {wanted:?})")
                }
            }
        }
    }

    async fn publish_denied(&mut self, subject: &str) {
        self.client
            .publish(subject.to_owned(), "not allowed".into())
            .await
            .expect("publish is sent");
        self.client.flush().await.expect("flush");
        self.expect_violation("publish", subject).await;
    }
}

/// The hub with the report stream and the aggregator's consumer, as the aggregator's
/// `--create-stream` will set them up.
async fn hub_with_stream(hub: &Hub) -> (NatsClient, async_nats::jetstream::stream::Stream) {
    use async_nats::jetstream;
    let aggregator =
        NatsClient::open(&hub.tls_url(), "aggregator", AGGREGATOR_PASSWORD, &hub.ca).await;
    let js = jetstream::new(aggregator.client.clone());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![truebit_protocol::REPORT_SUBJECT.into()],
            storage: jetstream::stream::StorageType::File,
            max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(2 * 3600),
            ..Default::default()
        })
        .await
        .expect("the aggregator creates the report stream");
    stream
        .get_or_create_consumer(
            "aggregator",
            jetstream::consumer::pull::Config {
                durable_name: Some("aggregator".into()),
                ..Default::default()
            },
        )
        .await
        .expect("the aggregator creates its consumer");
    (aggregator, stream)
}

/// Waits until the server has processed everything `client` sent so far (a flush only
/// empties the client's buffer): a JetStream API request, answered by the server, that
/// both users may make.
async fn round_trip(client: &async_nats::Client) {
    let js = async_nats::jetstream::new(client.clone());
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        js.stream_by_subject(truebit_protocol::REPORT_SUBJECT),
    )
    .await;
    assert!(
        answered.is_ok(),
        "the server did not answer a stream lookup"
    );
}

async fn jetstream_publish(
    client: &async_nats::Client,
    id: &str,
    payload: Vec<u8>,
) -> async_nats::jetstream::publish::PublishAck {
    let js = async_nats::jetstream::new(client.clone());
    let message = async_nats::jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .message_id(id);
    js.send_publish(truebit_protocol::REPORT_SUBJECT, message)
        .await
        .expect("the report is sent")
        .await
        .expect("the stream acknowledges the report")
}

#[test]
fn nats_config_is_valid_and_takes_its_passwords_from_the_environment() {
    let dir = support::tempdir();
    let certs = test_certificates(dir.path());
    // Only the certificate paths differ from the shipped file.
    let conf = read("deploy/nats-server.conf")
        .replace("/etc/nats/certs/", &format!("{}/", certs.display()));
    let path = dir.path().join("shipped.conf");
    std::fs::write(&path, conf).expect("write");
    let check = |env: &BTreeMap<String, String>| {
        let out = Command::new(find_program("nats-server", "TRUEBIT_TEST_NATS_SERVER"))
            .arg("-c")
            .arg(&path)
            .arg("-t")
            .env_clear()
            .envs(env)
            .output()
            .expect("nats-server -t runs");
        (
            out.status.success(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    };
    let mut env = nats_env(MONITOR_PASSWORD, AGGREGATOR_PASSWORD);
    let (ok, said) = check(&env);
    assert!(ok && said.contains("is valid"), "{said}");
    // Unquoted, a password is parsed as configuration: why the compose file quotes it.
    env.insert("MONITOR_PASSWORD".into(), "12e4abcd".into());
    let (ok, _) = check(&env);
    assert!(
        !ok,
        "an unquoted password is parsed (docs/FEDERATION.md says so)"
    );
    env.remove("MONITOR_PASSWORD");
    let (ok, said) = check(&env);
    assert!(
        !ok && said.contains("MONITOR_PASSWORD"),
        "without MONITOR_PASSWORD the server must refuse to start: {said}"
    );
    assert!(
        !read("deploy/nats-server.conf").contains("password: \""),
        "no password is written into the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_monitor_user_publishes_acknowledged_reports_and_reads_stats() {
    use futures_util::StreamExt as _;
    use truebit_protocol::sign::MAX_REPORT_WIRE_BYTES;
    use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

    let hub = Hub::start();
    let (aggregator, mut stream) = hub_with_stream(&hub).await;
    let monitor = NatsClient::open(&hub.tls_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;

    // What the monitor does once per connection: find the stream by subject.
    let js = async_nats::jetstream::new(monitor.client.clone());
    let found = js
        .stream_by_subject(REPORT_SUBJECT)
        .await
        .expect("the monitor may look the stream up");
    assert_eq!(found, STREAM);

    // Acknowledged publishes, de-duplicated by message id, up to the largest report.
    let ack = jetstream_publish(&monitor.client, "node-a:1", b"report one".to_vec()).await;
    assert_eq!((ack.stream.as_str(), ack.duplicate), (STREAM, false));
    let again = jetstream_publish(&monitor.client, "node-a:1", b"report one".to_vec()).await;
    assert!(again.duplicate, "the same node-window is stored once");
    assert!(
        monitor.client.server_info().max_payload >= MAX_REPORT_WIRE_BYTES + 1024,
        "max_payload must fit the largest signed report and its header"
    );
    let largest = vec![b'r'; MAX_REPORT_WIRE_BYTES];
    let ack = jetstream_publish(&monitor.client, "node-a:2", largest).await;
    assert!(!ack.duplicate);

    // The same over WebSocket (wss), as a monitor behind an HTTPS-only firewall.
    let ws = NatsClient::open(&hub.wss_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;
    let ack = jetstream_publish(&ws.client, "node-b:1", b"report over wss".to_vec()).await;
    assert_eq!(ack.stream, STREAM);

    // The aggregator reads them from its consumer.
    let mut batch = aggregator_fetch(&stream, 10).await;
    let mut sizes = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.expect("a report");
        sizes.push(message.payload.len());
        message.ack().await.expect("ack");
    }
    assert_eq!(sizes, [10, MAX_REPORT_WIRE_BYTES, 15]);
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 3);

    // Statistics: the aggregator publishes, every monitor reads.
    let mut stats = monitor
        .client
        .subscribe(STATS_SUBJECT)
        .await
        .expect("subscribe to stats");
    let mut ws_stats = ws.client.subscribe(STATS_SUBJECT).await.expect("subscribe");
    round_trip(&monitor.client).await;
    round_trip(&ws.client).await;
    aggregator
        .client
        .publish(STATS_SUBJECT, "stats 1".into())
        .await
        .expect("the aggregator publishes stats");
    aggregator.client.flush().await.expect("flush");
    for sub in [&mut stats, &mut ws_stats] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("stats arrive")
            .expect("a message");
        assert_eq!(&got.payload[..], b"stats 1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_monitor_user_cannot_read_reports_or_publish_stats() {
    use futures_util::StreamExt as _;
    use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

    let hub = Hub::start();
    let (mut aggregator, mut stream) = hub_with_stream(&hub).await;
    let mut spy = NatsClient::open(&hub.tls_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;
    let honest = NatsClient::open(&hub.tls_url(), "monitor", MONITOR_PASSWORD, &hub.ca).await;

    // Subscribing to reports (directly or with a wildcard) is refused …
    let mut spied = spy
        .client
        .subscribe(REPORT_SUBJECT)
        .await
        .expect("the request is sent");
    spy.client.flush().await.expect("flush");
    spy.expect_violation("subscription", REPORT_SUBJECT).await;
    let _wildcard = spy.client.subscribe(">").await.expect("sent");
    spy.client.flush().await.expect("flush");
    spy.expect_violation("subscription", ">").await;
    // Replies: every monitor may read _INBOX.> (its own acknowledgements arrive there),
    // so the aggregator's replies go to a prefix only it may read.
    let mut inboxes = spy.client.subscribe("_INBOX.>").await.expect("allowed");
    let _theirs = spy
        .client
        .subscribe(format!("{AGGREGATOR_INBOX}.>"))
        .await
        .expect("sent");
    spy.client.flush().await.expect("flush");
    spy.expect_violation("subscription", &format!("{AGGREGATOR_INBOX}.>"))
        .await;
    // … and nothing arrives there, while the aggregator does get the report.
    let mut tap = aggregator
        .client
        .subscribe(REPORT_SUBJECT)
        .await
        .expect("the aggregator may subscribe to reports");
    round_trip(&aggregator.client).await;
    jetstream_publish(&honest.client, "node-h:1", b"honest report".to_vec()).await;
    let got = tokio::time::timeout(Duration::from_secs(5), tap.next())
        .await
        .expect("the aggregator gets the report")
        .expect("a message");
    assert_eq!(&got.payload[..], b"honest report");
    let leaked = tokio::time::timeout(Duration::from_millis(500), spied.next()).await;
    assert!(
        !matches!(leaked, Ok(Some(_))),
        "a monitor received another node's report"
    );
    // The aggregator pulls it from its consumer; the spy's _INBOX.> sees at most the
    // honest monitor's acknowledgement, never the report.
    let mut batch = aggregator_fetch(&stream, 1).await;
    let pulled = batch.next().await.expect("a report").expect("a report");
    assert_eq!(&pulled.payload[..], b"honest report");
    pulled.ack().await.expect("ack");
    while let Ok(Some(seen)) =
        tokio::time::timeout(Duration::from_millis(500), inboxes.next()).await
    {
        assert!(
            !seen.payload.windows(6).any(|w| w == b"honest"),
            "a monitor read the aggregator's replies on {}: {:?}",
            seen.subject,
            seen.payload
        );
    }

    // Forged statistics are refused and reach no one: the first message an honest
    // monitor sees is the aggregator's.
    let mut honest_stats = honest.client.subscribe(STATS_SUBJECT).await.expect("sub");
    round_trip(&honest.client).await;
    spy.publish_denied(STATS_SUBJECT).await;
    aggregator
        .client
        .publish(STATS_SUBJECT, "real stats".into())
        .await
        .expect("publish");
    aggregator.client.flush().await.expect("flush");
    let first = tokio::time::timeout(Duration::from_secs(5), honest_stats.next())
        .await
        .expect("stats arrive")
        .expect("a message");
    assert_eq!(&first.payload[..], b"real stats");

    // No way into the stream through JetStream's API either, nor into other clients'
    // replies, nor onto other subjects.
    for subject in [
        format!("$JS.API.CONSUMER.CREATE.{STREAM}"),
        format!("$JS.API.CONSUMER.CREATE.{STREAM}.spy"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.spy"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.aggregator"),
        format!("$JS.API.CONSUMER.DELETE.{STREAM}.aggregator"),
        format!("$JS.API.STREAM.INFO.{STREAM}"),
        format!("$JS.API.STREAM.MSG.GET.{STREAM}"),
        format!("$JS.API.DIRECT.GET.{STREAM}"),
        format!("$JS.API.STREAM.PURGE.{STREAM}"),
        format!("$JS.API.STREAM.DELETE.{STREAM}"),
        format!("$JS.API.STREAM.UPDATE.{STREAM}"),
        "$JS.API.STREAM.CREATE.SPY".to_owned(),
        "$JS.API.STREAM.LIST".to_owned(),
        format!("$JS.ACK.{STREAM}.aggregator.1.1.1.1.0"),
        "_INBOX.someone-else".to_owned(),
        "truebit.report.v2".to_owned(),
    ] {
        spy.publish_denied(&subject).await;
    }
    let info = stream.info().await.expect("the stream is still there");
    assert_eq!(info.state.messages, 1, "the spy changed nothing");
    assert_eq!(
        info.state.consumer_count, 1,
        "only the aggregator's consumer"
    );

    // The aggregator cannot forge reports.
    aggregator.publish_denied(REPORT_SUBJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_passwords_may_be_bcrypt_hashes() {
    // bcrypt("bcrypt-test-password", cost 10), as docs/FEDERATION.md suggests to store it.
    let hash = "$2b$10$et9MD5uYFI8JFRsQnWYwo.6oxaNXjQjgtrwVD/0r.QlrWoqfTriRa";
    let hub = Hub::start_with_monitor_password(hash);
    let ok = nats_connect(&hub.tls_url(), "monitor", "bcrypt-test-password", &hub.ca).await;
    assert!(
        ok.is_ok(),
        "the password of the hash is accepted: {:?}",
        ok.err()
    );
    let hash_itself = nats_connect(&hub.tls_url(), "monitor", hash, &hub.ca).await;
    assert!(hash_itself.is_err(), "the hash is not a password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_connections_need_tls_the_right_password_and_the_right_listener() {
    use truebit_protocol::sign::MAX_REPORT_WIRE_BYTES;

    let hub = Hub::start();
    // Plain text: the server announces that TLS is required.
    let mut plain = BufReader::new(TcpStream::connect(("127.0.0.1", hub.client)).expect("tcp"));
    let mut info = String::new();
    plain.read_line(&mut info).expect("INFO");
    let info: serde_json::Value =
        serde_json::from_str(info.trim().strip_prefix("INFO ").expect("INFO line")).expect("json");
    assert_eq!(info["tls_required"], true);

    let refused = nats_connect(&hub.tls_url(), "monitor", "wrong-password", &hub.ca).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "a wrong password must be refused: {:?}",
        refused.err()
    );
    // The aggregator's user is for the TLS listener only.
    let ws = nats_connect(&hub.wss_url(), "aggregator", AGGREGATOR_PASSWORD, &hub.ca).await;
    assert!(
        ws.is_err(),
        "the aggregator user must not log in over WebSocket"
    );

    // Limits, as the server applied them.
    let varz = hub.monitoring("/varz");
    let number = |key: &str| varz[key].as_u64().unwrap_or_else(|| panic!("/varz {key}"));
    assert!(number("max_payload") >= (MAX_REPORT_WIRE_BYTES + 1024) as u64);
    assert!(
        number("max_payload") <= 2 * 1024 * 1024,
        "keep max_payload small"
    );
    assert!((1..=100_000).contains(&number("max_connections")));
    assert!((2..=1_000).contains(&number("max_subscriptions")));
    let js = &varz["jetstream"]["config"];
    assert!(js["max_storage"].as_u64().is_some_and(|n| n > 0));
    assert!(js["max_memory"].as_u64().is_some_and(|n| n > 0));
}
