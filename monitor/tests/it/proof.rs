//! Uptime proofs end to end: a real nats-server with JetStream, aggregator replicas
//! that are the real aggregator (in-process, each with its own key, store and durable
//! consumer), reports signed with the node's key, and the monitor's request (the
//! library call, the API route and the CLI).

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use truebit_aggregator::app::{self as hub_app, Running};
use truebit_aggregator::config::{Config as HubConfig, Settings as HubSettings};
use truebit_aggregator::key::AggregatorKey;
use truebit_clock::Clock;
use truebit_monitor::federation::config::FederationSettings;
use truebit_monitor::federation::identity::Identity;
use truebit_monitor::federation::proof::{request_uptime_proof, ProofFetchError, ProofPeriod};
use truebit_protocol::certificate::KeySet;
use truebit_protocol::identity::PublicKey;
use truebit_protocol::proof::{UptimeProof, DAY};
use truebit_protocol::report::{Level, NodeState, NodeStatus, Report};
use truebit_protocol::sign::SigningKey;
use truebit_protocol::window::WindowStart;
use truebit_protocol::REPORT_SUBJECT;
use truebit_testkit::free_port;

use crate::http::{app_at, settings, Auth, KEY};
use crate::support::tempdir;

/// Polls `f` until it answers `Some`, for at most `secs`.
async fn until<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 2024-06-01T00:00:00Z: the day the reports cover.
const DAY0: u64 = 1_717_200_000;

fn replica_key(i: usize) -> AggregatorKey {
    AggregatorKey::from_signing_key(SigningKey::from_bytes(&[60 + i as u8; 32]))
}

fn replica_public(i: usize) -> PublicKey {
    replica_key(i).public()
}

/// What a monitor pins for a hub of `n` replicas, `threshold` of which must sign.
fn pinned(n: usize, threshold: usize) -> KeySet {
    KeySet::new((1..=n).map(replica_public).collect(), threshold).expect("key set")
}

const MONITOR_PASSWORD: &str = "m-secret #1";
const AGGREGATOR_PASSWORD: &str = "a-secret";

/// A hub: one nats-server with JetStream and `n` replicas on a shared clock.
struct Hub {
    nats: truebit_testkit::NatsServer,
    /// The CA of the server's TLS certificate (the shipped deploy/nats-server.conf).
    shipped_ca: Option<PathBuf>,
    /// Users `monitor` and `aggregator` log in (a configuration with permissions).
    logins: bool,
    dir: PathBuf,
    n: usize,
    threshold: usize,
    clock: Clock,
    replicas: Vec<Option<Running>>,
}

impl Hub {
    async fn start(dir: &Path, n: usize, threshold: usize, clock: &Clock) -> Hub {
        let js = dir.join("js").display().to_string();
        let nats = truebit_testkit::NatsServer::start(dir, &["-js", "-sd", &js, "-m", "-1"]);
        Hub::with_replicas(nats, None, false, dir, n, threshold, clock).await
    }

    /// One aggregator (1 of 1) on a nats-server run with `conf`, which defines the
    /// users `monitor` and `aggregator` (passwords [`MONITOR_PASSWORD`],
    /// [`AGGREGATOR_PASSWORD`]).
    async fn start_with_users(dir: &Path, conf: &str, clock: &Clock) -> Hub {
        let file = dir.join("nats.conf");
        std::fs::write(&file, conf).expect("nats config");
        let js = dir.join("js").display().to_string();
        let nats = truebit_testkit::NatsServer::start(
            dir,
            &[
                "-c",
                &file.display().to_string(),
                "-js",
                "-sd",
                &js,
                "-m",
                "-1",
            ],
        );
        Hub::with_replicas(nats, None, true, dir, 1, 1, clock).await
    }

    /// One aggregator (1 of 1) behind the shipped deploy/nats-server.conf.
    async fn start_shipped(dir: &Path, clock: &Clock) -> Hub {
        let certs = truebit_testkit::certificates(dir);
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats-server.conf"),
        )
        .expect("deploy/nats-server.conf");
        let conf = truebit_testkit::shipped_nats_conf(&shipped, dir, &certs.dir);
        let nats = truebit_testkit::NatsServer::start_with_env(
            dir,
            &["-c", &conf.display().to_string(), "-m", "-1"],
            // Quoted as docker-compose.federation.yml hands them over.
            &[
                ("MONITOR_PASSWORD".into(), format!("\"{MONITOR_PASSWORD}\"")),
                (
                    "AGGREGATOR_PASSWORD".into(),
                    format!("\"{AGGREGATOR_PASSWORD}\""),
                ),
            ],
        );
        Hub::with_replicas(nats, Some(certs.ca), true, dir, 1, 1, clock).await
    }

    /// The URL monitors connect to.
    fn url(&self) -> String {
        match self.shipped_ca {
            Some(_) => format!("tls://127.0.0.1:{}", self.nats.port),
            None => self.nats.url(),
        }
    }

    async fn with_replicas(
        nats: truebit_testkit::NatsServer,
        shipped_ca: Option<PathBuf>,
        logins: bool,
        dir: &Path,
        n: usize,
        threshold: usize,
        clock: &Clock,
    ) -> Hub {
        crate::support::init_tracing();
        let mut hub = Hub {
            nats,
            shipped_ca,
            logins,
            dir: dir.to_owned(),
            n,
            threshold,
            clock: clock.clone(),
            replicas: (0..n).map(|_| None).collect(),
        };
        for i in 1..=n {
            hub.start_replica(i).await;
        }
        for i in 1..=n {
            let r = hub.replica(i);
            until("the replica's consumer", 20, || async {
                (r.state.metrics.snapshot().delivery == Some("jetstream")).then_some(())
            })
            .await;
        }
        hub
    }

    /// Connections subscribed to the proof request subject (the nats-server's /connz).
    async fn proof_subscribers(&self) -> usize {
        let port = self.nats.http_port.expect("monitoring port");
        let text = reqwest::get(format!("http://127.0.0.1:{port}/connz?subs=1"))
            .await
            .expect("connz")
            .text()
            .await
            .expect("connz text");
        let connz: serde_json::Value = serde_json::from_str(&text).expect("connz JSON");
        connz["connections"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| {
                        c["subscriptions_list"].as_array().is_some_and(|s| {
                            s.iter()
                                .any(|s| s == truebit_protocol::PROOF_REQUEST_SUBJECT)
                        })
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits until exactly the running replicas listen for proof requests, each caught
    /// up with the report stream (one that is not answers `busy`).
    async fn listening(&self) {
        let running = self.replicas.iter().flatten().count();
        until(
            "the running replicas to listen for proof requests",
            20,
            || async { (self.proof_subscribers().await == running).then_some(()) },
        )
        .await;
        for r in self.replicas.iter().flatten() {
            until("the replica to catch up with the stream", 20, || async {
                r.state.metrics.caught_up().then_some(())
            })
            .await;
        }
    }

    fn config(&self, i: usize) -> HubConfig {
        let mut c = HubSettings {
            nats_url: Some(self.url()),
            db_path: Some(self.db(i)),
            stats_interval_secs: Some(1),
            ack_wait_secs: Some(1),
            stream_max_mib: Some(64),
            ..HubSettings::default()
        }
        .validate()
        .expect("replica config");
        c.listen = "127.0.0.1:0".parse().expect("addr");
        c.create_stream = true;
        c.stream_replicas = 1;
        c.replica = format!("r{i}");
        c.consumer = format!("r{i}");
        c.keys = (1..=self.n).map(replica_public).collect();
        c.threshold = self.threshold;
        c.noise_secret_path = self.dir.join("hub.noise");
        // Room for a 31-day proof ending on day 0.
        c.retention_days = 40;
        if self.logins {
            c.nats.auth = truebit_aggregator::config::NatsAuth::UserPassword {
                user: "aggregator".into(),
                password: truebit_aggregator::config::SecretString::from(AGGREGATOR_PASSWORD),
            };
        }
        c.nats.ca_file = self.shipped_ca.clone();
        c
    }

    /// A client as a monitor connects (the `monitor` user when there are users).
    async fn monitor_client(&self) -> async_nats::Client {
        let mut options = async_nats::ConnectOptions::new();
        if self.logins {
            options = async_nats::ConnectOptions::with_user_and_password(
                "monitor".into(),
                MONITOR_PASSWORD.into(),
            );
        }
        if let Some(ca) = &self.shipped_ca {
            options = options.add_root_certificates(ca.clone());
        }
        options
            .connect(self.url())
            .await
            .expect("the test's monitor client connects")
    }

    fn db(&self, i: usize) -> PathBuf {
        self.dir.join(format!("r{i}/aggregator.db"))
    }

    async fn start_replica(&mut self, i: usize) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = hub_app::start(self.config(i), listener, replica_key(i), self.clock.clone())
            .await
            .expect("the replica starts");
        self.replicas[i - 1] = Some(running);
    }

    async fn stop_replica(&mut self, i: usize) {
        if let Some(r) = self.replicas[i - 1].take() {
            r.shutdown().await;
        }
    }

    fn replica(&self, i: usize) -> &Running {
        self.replicas[i - 1].as_ref().expect("running")
    }

    /// Publishes `node`'s reports of `windows` (start, state) through JetStream and
    /// waits until every running replica stored them.
    async fn report(&self, node: &SigningKey, windows: &[(u64, NodeState)]) {
        let js = async_nats::jetstream::new(self.monitor_client().await);
        for (window, state) in windows {
            let w = WindowStart::new(*window).expect("a window start");
            let mut report = Report::for_key(&node.verifying_key(), w, Level::Strict);
            report.status = NodeStatus {
                state: *state,
                ..NodeStatus::UNKNOWN
            };
            let wire = truebit_protocol::privacy::validate_report(&report)
                .expect("a valid report")
                .sign(node)
                .expect("signs")
                .to_wire();
            js.publish(REPORT_SUBJECT, wire.into())
                .await
                .expect("publish")
                .await
                .expect("the stream acknowledges the report");
        }
        for r in self.replicas.iter().flatten() {
            until("the replica to store every report", 20, || async {
                let stored = r.state.store.totals().await.expect("totals").reports;
                (stored == windows.len() as u64).then_some(())
            })
            .await;
        }
    }

    async fn shutdown(mut self) {
        for i in 1..=self.n {
            self.stop_replica(i).await;
        }
    }
}

/// The node's federation key (the monitor's identity) and its signing half.
fn node() -> (Identity, SigningKey) {
    (
        Identity::from_bytes([21; 32], [22; 32]),
        SigningKey::from_bytes(&[21; 32]),
    )
}

/// The reports of day 0: up at 00:00 and 00:05, down at 01:00, up at 02:00.
fn day0_windows() -> Vec<(u64, NodeState)> {
    vec![
        (DAY0, NodeState::Up),
        (DAY0 + 300, NodeState::Up),
        (DAY0 + 3_600, NodeState::Down),
        (DAY0 + 7_200, NodeState::Up),
    ]
}

/// A clock at 00:10 of the day after day 0 (the day is closed, its reports recent).
fn next_morning() -> Clock {
    let clock = Clock::manual(0);
    clock.set_secs(DAY0 + DAY + 600);
    clock
}

fn monitor_config(
    url: &str,
    n: usize,
    threshold: usize,
) -> truebit_monitor::federation::FederationConfig {
    FederationSettings {
        nats_url: Some(url.to_owned()),
        aggregator_keys: Some(
            (1..=n)
                .map(|i| replica_public(i).to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        aggregator_threshold: Some(threshold),
        ..FederationSettings::default()
    }
    .resolve()
    .expect("monitor federation config")
}

/// The statement of day 0 is exactly the reported windows.
fn assert_day0(proof: &UptimeProof) {
    let s = proof.statement();
    assert_eq!(s.node, node().0.node_id());
    assert_eq!((s.from, s.to), (DAY0, DAY0 + DAY));
    assert_eq!(
        s.windows_reported(),
        vec![DAY0, DAY0 + 300, DAY0 + 3_600, DAY0 + 7_200]
    );
    assert_eq!(s.windows_up(), vec![DAY0, DAY0 + 300, DAY0 + 7_200]);
    assert_eq!(s.uptime_s, 900);
    assert_eq!(s.downtime_s, DAY - 900);
}

fn signers(proof: &UptimeProof, pinned: &KeySet) -> Vec<PublicKey> {
    proof.verify(pinned).expect("the proof verifies").signers
}

/// Three replicas: certified 2-of-3 with all up and with one stopped; a replica whose
/// store lost a report signs another statement, which never counts (with the good
/// replica that could have joined it stopped, there is no proof and the line says the
/// replicas disagree); a stale request is refused by all, in one clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_replicas_certify_a_proof_and_a_replica_with_another_statement_never_counts() {
    let dir = tempdir();
    let clock = next_morning();
    let mut hub = Hub::start(dir.path(), 3, 2, &clock).await;
    let (identity, key) = node();
    hub.report(&key, &day0_windows()).await;
    hub.listening().await;
    let config = monitor_config(&hub.url(), 3, 2);
    let keys = pinned(3, 2);
    let period = ProofPeriod::new(DAY0, DAY0 + DAY, clock.now_secs()).expect("closed day");
    let wait = Duration::from_secs(5);
    let ask = |clock: Clock| {
        let (config, keys, identity) = (config.clone(), keys.clone(), identity.clone());
        async move { request_uptime_proof(&config, &identity, &keys, period, &clock, wait).await }
    };

    // All three up.
    let proof = ask(clock.clone()).await.expect("certified");
    assert_day0(&proof);
    assert_eq!(signers(&proof, &keys).len(), 2);
    // As a file: parsed back, it verifies against the pinned keys alone.
    let file = UptimeProof::from_json(&proof.to_json_pretty()).expect("parses");
    assert_eq!(
        file.verify(&keys).expect("verifies").statement,
        *proof.statement()
    );

    // Replica 3 stopped: still certified, by 1 and 2.
    hub.stop_replica(3).await;
    hub.listening().await;
    let proof = ask(clock.clone()).await.expect("certified 2 of 3");
    assert_day0(&proof);
    assert_eq!(
        signers(&proof, &keys),
        vec![replica_public(1), replica_public(2)]
    );

    // Replica 3 back with a store that lost the 01:00 report; replica 1 stopped.
    {
        let db = rusqlite::Connection::open(hub.db(3)).expect("open replica 3's store");
        let deleted = db
            .execute("DELETE FROM reports WHERE window = ?1", [DAY0 + 3_600])
            .expect("delete");
        assert_eq!(deleted, 1);
    }
    hub.start_replica(3).await;
    hub.stop_replica(1).await;
    hub.listening().await;
    let error = ask(clock.clone()).await.expect_err("2 and 3 disagree");
    let line = error.to_string();
    assert!(matches!(error, ProofFetchError::NotCertified(_)), "{line}");
    assert!(
        line.contains("the replicas that answered disagree (2 different statements, at most 1 signature(s) on one, 2 needed)"),
        "{line}"
    );
    assert!(line.contains("1 of 3 did not answer within 5 s"), "{line}");
    assert!(!line.contains('\n'), "{line}");

    // Replica 1 back: 1 and 2 certify; replica 3's signature is never in the proof.
    hub.start_replica(1).await;
    hub.listening().await;
    for _ in 0..3 {
        let proof = ask(clock.clone()).await.expect("certified by 1 and 2");
        assert_day0(&proof);
        assert_eq!(
            signers(&proof, &keys),
            vec![replica_public(1), replica_public(2)]
        );
        assert!(proof
            .signatures()
            .iter()
            .all(|s| s.key != replica_public(3)));
    }

    // A request made 20 minutes behind the hub's clock: every replica refuses it.
    let behind = Clock::manual(0);
    behind.set_secs(clock.now_secs() - 1_200);
    let error = ask(behind).await.expect_err("stale");
    assert_eq!(
        error.to_string(),
        "not certified: 3 of 3 replicas refused: stale request (check this machine's clock)"
    );
    hub.shutdown().await;
}

/// A single aggregator (FEDERATION_AGGREGATOR_KEY, 1 of 1) behind the shipped
/// deploy/nats-server.conf (TLS; the monitor and aggregator users' permissions): the API
/// answers the proof as a download for the admin, 403 for a read key, 400 for a bad or
/// open day; the CLI prints the same statement; without a hub the CLI says so in one
/// line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_cli_fetch_a_proof_a_single_aggregator_signed() {
    let dir = tempdir();
    // Real time: the CLI runs with the system clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let yesterday = now - now % DAY - DAY;
    let clock = Clock::manual(0);
    clock.set_secs(now);
    let hub = Hub::start_shipped(&dir.path().join("hub"), &clock).await;
    let ca = hub.shipped_ca.clone().expect("the test CA");
    let federation = FederationSettings {
        nats_url: Some(hub.url()),
        nats_user: Some("monitor".into()),
        nats_password: Some(MONITOR_PASSWORD.into()),
        nats_ca: Some(ca.clone()),
        aggregator_key: Some(replica_public(1).to_string()),
        ..FederationSettings::default()
    }
    .resolve()
    .expect("monitor federation config");
    let app = app_at(
        settings(),
        0,
        federation,
        i64::try_from(now).expect("now") * 1_000_000_000,
    )
    .await;

    // Off: the route says what to do.
    let r = app
        .call(
            Method::GET,
            "/api/federation/uptime-proof",
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["message"]
        .as_str()
        .expect("message")
        .starts_with("federation is off"));

    // On: the identity exists; the node's reports of yesterday reach the hub.
    let r = app
        .post_json("/api/federation/enable", Auth::Bearer(KEY), json!({}), &[])
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let db = app.store.path().to_owned();
    let key = SigningKey::from_bytes(&identity_secret(&db));
    let node = truebit_protocol::identity::PublicKey::from(&key.verifying_key()).node_id();
    let windows = vec![
        (yesterday + 600, NodeState::Up),
        (yesterday + 900, NodeState::Unknown),
        (yesterday + DAY - 300, NodeState::Up),
    ];
    hub.report(&key, &windows).await;
    hub.listening().await;
    // The federation page offers the form, the last 29 days by default.
    let (cookie, _) = app.login().await;
    let html = app
        .call(Method::GET, "/federation", Auth::Cookie(&cookie))
        .await;
    let html = String::from_utf8_lossy(&html.body);
    let first = truebit_monitor::federation::proof::format_day(yesterday - 28 * DAY);
    let last = truebit_monitor::federation::proof::format_day(yesterday);
    assert!(
        html.contains(r#"action="/api/federation/uptime-proof""#),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"name="from" value="{first}" max="{last}""#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"name="to" value="{last}" max="{last}""#)),
        "{html}"
    );
    let day = truebit_monitor::federation::proof::format_day(yesterday);

    let r = app
        .call(
            Method::GET,
            &format!("/api/federation/uptime-proof?from={day}&to={day}"),
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("attachment; filename=\"uptime-proof-{day}-{day}.json\"").as_str())
    );
    let proof = UptimeProof::from_json(&r.body).expect("a proof");
    let single = KeySet::single(replica_public(1)).expect("1 of 1");
    assert_eq!(signers(&proof, &single), vec![replica_public(1)]);
    let s = proof.statement();
    assert_eq!(s.node, node);
    assert_eq!(
        s.windows_reported(),
        vec![yesterday + 600, yesterday + 900, yesterday + DAY - 300]
    );
    assert_eq!(s.windows_up(), vec![yesterday + 600, yesterday + DAY - 300]);
    assert_eq!(s.uptime_s, 600);

    // A read key may not ask; bad and open days are 400 naming the parameter.
    let created = app
        .post_json("/api/keys", Auth::Bearer(KEY), json!({ "name": "ro" }), &[])
        .await
        .json();
    let read = created["key"].as_str().expect("key").to_owned();
    let r = app
        .call(
            Method::GET,
            "/api/federation/uptime-proof",
            Auth::Bearer(&read),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (query, parameter) in [
        ("from=2024-13-01", "from"),
        ("from=yesterday", "from"),
        (&*format!("from={day}&to=2200-01-01"), "to"),
        (
            &*format!(
                "to={}",
                truebit_monitor::federation::proof::format_day(yesterday + DAY)
            ),
            "to",
        ),
        ("from=2024-01-01&to=2024-03-01", "to"),
    ] {
        let r = app
            .call(
                Method::GET,
                &format!("/api/federation/uptime-proof?{query}"),
                Auth::Bearer(KEY),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        let v = r.json();
        assert_eq!(
            (v["error"].as_str(), v["parameter"].as_str()),
            (Some("bad_parameter"), Some(parameter)),
            "{query}: {v}"
        );
    }

    // The CLI, a process of its own on the same database, prints the same statement.
    let out = cli(
        &db,
        &[
            ("FEDERATION_NATS_URL", &hub.url()),
            ("FEDERATION_NATS_USER", "monitor"),
            ("FEDERATION_NATS_PASSWORD", MONITOR_PASSWORD),
            ("FEDERATION_NATS_CA", &ca.display().to_string()),
            ("FEDERATION_AGGREGATOR_KEY", &replica_public(1).to_string()),
        ],
        &["--from", &day, "--to", &day],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = UptimeProof::from_json(&out.stdout).expect("the CLI prints a proof");
    assert_eq!(printed.statement(), proof.statement());
    assert_eq!(signers(&printed, &single), vec![replica_public(1)]);

    // Without a server the CLI fails in one line.
    let out = cli(&db, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "truebit-monitor: federation has no server configured: set FEDERATION_NATS_URL\n"
    );
    // With the hub unreachable, also one line.
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let out = cli(
        &db,
        &[
            ("FEDERATION_NATS_URL", &dead),
            ("FEDERATION_AGGREGATOR_KEY", &replica_public(1).to_string()),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("truebit-monitor: cannot reach the federation hub: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    hub.shutdown().await;
}

/// A hub whose NATS permissions predate uptime proofs (the `monitor` user may not
/// publish requests): no replica ever hears the request, and the one line says what the
/// server said instead of only "no answer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_does_not_let_monitors_ask_is_named_in_the_line() {
    let dir = tempdir();
    let clock = next_morning();
    let conf = format!(
        "authorization {{\n  users = [\n    {{ user: monitor, password: \"{MONITOR_PASSWORD}\",\n      permissions: {{ publish: {{ allow: [\"truebit.report.v1\", \"$JS.API.STREAM.NAMES\"] }}, subscribe: {{ allow: [\"truebit.stats.v2\", \"_INBOX.>\"] }} }} }}\n    {{ user: aggregator, password: \"{AGGREGATOR_PASSWORD}\" }}\n  ]\n}}\n"
    );
    let hub = Hub::start_with_users(dir.path(), &conf, &clock).await;
    let (identity, key) = node();
    hub.report(&key, &day0_windows()).await;
    hub.listening().await;
    let config = FederationSettings {
        nats_url: Some(hub.url()),
        nats_user: Some("monitor".into()),
        nats_password: Some(MONITOR_PASSWORD.into()),
        aggregator_key: Some(replica_public(1).to_string()),
        ..FederationSettings::default()
    }
    .resolve()
    .expect("monitor federation config");
    let keys = KeySet::single(replica_public(1)).expect("1 of 1");
    let period = ProofPeriod::new(DAY0, DAY0 + DAY, clock.now_secs()).expect("closed day");
    let error = request_uptime_proof(
        &config,
        &identity,
        &keys,
        period,
        &clock,
        Duration::from_secs(2),
    )
    .await
    .expect_err("the server drops the request");
    let line = error.to_string();
    assert!(
        line.starts_with("not certified: no aggregator replica answered within 2 s"),
        "{line}"
    );
    assert!(line.contains("; the NATS server said: "), "{line}");
    assert!(line.contains("Permissions Violation"), "{line}");
    assert!(line.contains("truebit.proof.req.v1"), "{line}");
    // The replica never heard it.
    assert_eq!(hub.replica(1).state.metrics.proofs_served(), 0);
    hub.shutdown().await;
}

/// The node's secret key, read from the monitor's database file.
fn identity_secret(db: &Path) -> [u8; 32] {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let secret: Vec<u8> = conn
        .query_row(
            "SELECT secret_key FROM federation_identity WHERE id = 1",
            [],
            |row| row.get(0),
        )
        .expect("identity stored");
    secret.try_into().expect("32 bytes")
}

/// `truebit-monitor uptime-proof ARGS` on `db`, with only these federation settings.
fn cli(db: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_truebit-monitor"));
    command.arg("uptime-proof").args(args).env("DB_PATH", db);
    for (name, _) in std::env::vars() {
        if name.starts_with("FEDERATION_") || name.starts_with("TBM_") || name == "CONTAINER_NAME" {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run truebit-monitor")
}

/// How long a certified proof takes, request to verified proof, with 3 replicas (2 of
/// 3) on loopback: the node reported every window of one day. A measurement, not a
/// test: run it with `cargo test -p truebit-monitor --test it proof::measure --
/// --ignored --nocapture` and record the figures in docs/PERFORMANCE.md. Each request
/// opens and closes its own connection, as the CLI and the API do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement that prints figures (docs/PERFORMANCE.md)"]
async fn measure_uptime_proof_round_trip() {
    let dir = tempdir();
    let clock = next_morning();
    let hub = Hub::start(dir.path(), 3, 2, &clock).await;
    let (identity, key) = node();
    let windows: Vec<(u64, NodeState)> =
        (0..288).map(|i| (DAY0 + i * 300, NodeState::Up)).collect();
    hub.report(&key, &windows).await;
    hub.listening().await;
    let config = monitor_config(&hub.url(), 3, 2);
    let keys = pinned(3, 2);
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for days in [1, 31] {
        let period = ProofPeriod::new(DAY0 + DAY - days * DAY, DAY0 + DAY, clock.now_secs())
            .expect("closed days");
        let before = loadavg();
        let mut took = Vec::new();
        let mut size = 0;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let proof = request_uptime_proof(
                &config,
                &identity,
                &keys,
                period,
                &clock,
                Duration::from_secs(5),
            )
            .await
            .expect("certified");
            took.push(started.elapsed());
            assert_eq!(proof.statement().uptime_s, 288 * 300);
            size = proof.to_json_pretty().len();
        }
        took.sort();
        println!(
            "{days} day(s): request to verified proof p50 {:?}, max {:?} over {} requests; proof file {size} bytes (pretty); load average before {}, after {}",
            took[took.len() / 2],
            took[took.len() - 1],
            took.len(),
            before.trim(),
            loadavg().trim()
        );
    }
    hub.shutdown().await;
}
