//! The replicated hub, from the shipped deploy/nats/ configuration: three clustered
//! nats-servers (routes over mutual TLS, JetStream, the report stream replicated R3)
//! and three aggregator replicas with their own keys, databases and durable consumers,
//! which co-sign the statistics (2 of 3). A test client plays the monitors: it publishes
//! signed reports through the `monitor` user and reads the certified statistics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use truebit_aggregator::app::{self, Running};
use truebit_aggregator::config::{Config, NatsAuth, SecretString};
use truebit_aggregator::key::AggregatorKey;
use truebit_aggregator::Clock;
use truebit_protocol::certificate::{open_certified, KeySet};
use truebit_protocol::identity::PublicKey;
use truebit_protocol::sign::SigningKey;
use truebit_protocol::stats::NetworkStats;
use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};
use truebit_testkit::free_port;

use crate::support::*;

pub(crate) const MONITOR_PASSWORD: &str = "m-secret";
const AGGREGATOR_PASSWORD: &str = "a-secret";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn server_env() -> Vec<(String, String)> {
    vec![
        ("MONITOR_PASSWORD".into(), format!("\"{MONITOR_PASSWORD}\"")),
        (
            "AGGREGATOR_PASSWORD".into(),
            format!("\"{AGGREGATOR_PASSWORD}\""),
        ),
    ]
}

/// deploy/nats/nats-`i`.conf made runnable in `dir`: certificates from `certs`, the
/// JetStream store in `dir`, the route listener and routes on loopback ports, the
/// WebSocket listener on a free port, no HTTP monitor. Every replaced text must be
/// there: when the shipped file changes shape, this fails instead of testing something
/// else. accounts.conf is copied next to it unchanged (the conf includes it).
fn cluster_conf(i: usize, dir: &Path, certs: &Path, route_ports: &[u16; 3]) -> PathBuf {
    let shipped = std::fs::read_to_string(deploy().join(format!("nats/nats-{i}.conf")))
        .expect("deploy/nats/nats-N.conf");
    let replace = |text: String, from: &str, to: &str, count: usize| {
        assert_eq!(
            text.matches(from).count(),
            count,
            "deploy/nats/nats-{i}.conf: expected {count} × {from:?}"
        );
        text.replace(from, to)
    };
    let mut conf = replace(
        shipped,
        "/etc/nats/certs/",
        &format!("{}/", certs.display()),
        7,
    );
    conf = replace(
        conf,
        "store_dir: \"/data\"",
        &format!("store_dir: \"{}\"", dir.join("js").display()),
        1,
    );
    conf = replace(
        conf,
        "listen: \"0.0.0.0:6222\"",
        &format!("listen: \"127.0.0.1:{}\"", route_ports[i - 1]),
        1,
    );
    for j in (1..=3).filter(|j| *j != i) {
        conf = replace(
            conf,
            &format!("nats-route://nats-{j}:6222"),
            &format!("nats-route://127.0.0.1:{}", route_ports[j - 1]),
            1,
        );
    }
    conf = replace(
        conf,
        "  port: 8443\n",
        "  host: \"127.0.0.1\"\n  port: -1\n",
        1,
    );
    conf = replace(conf, "http: \"127.0.0.1:8222\"", "", 1);
    std::fs::create_dir_all(dir).expect("server dir");
    std::fs::copy(
        deploy().join("nats/accounts.conf"),
        dir.join("accounts.conf"),
    )
    .expect("accounts.conf");
    let path = dir.join(format!("nats-{i}.conf"));
    std::fs::write(&path, conf).expect("write the test config");
    path
}

/// Client certificates (a test CA, for 127.0.0.1) and the route certificates made by
/// deploy/nats/make-route-certs.sh, in one folder per server.
fn certificates(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let client = truebit_testkit::certificates(dir);
    let routes = dir.join("routes");
    let out = Command::new("bash")
        .arg(deploy().join("nats/make-route-certs.sh"))
        .arg(&routes)
        .args(["nats-1", "nats-2", "nats-3"])
        .env("DAYS", "2")
        .output()
        .expect("make-route-certs.sh runs");
    assert!(
        out.status.success(),
        "make-route-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let certs = dir.join(format!("certs-{i}"));
        std::fs::create_dir_all(&certs).expect("certs dir");
        for f in ["fullchain.pem", "privkey.pem"] {
            std::fs::copy(client.dir.join(f), certs.join(f)).expect("client cert");
        }
        for f in ["route.pem", "route-key.pem", "route-ca.pem"] {
            std::fs::copy(routes.join(format!("nats-{i}")).join(f), certs.join(f))
                .expect("route cert");
        }
        dirs.push(certs);
    }
    (client.ca, dirs)
}

#[test]
fn each_shipped_cluster_conf_passes_nats_server_t() {
    let dir = tempdir();
    let (_, certs) = certificates(dir.path());
    let ports = [free_port(), free_port(), free_port()];
    for i in 1..=3 {
        let conf = cluster_conf(
            i,
            &dir.path().join(format!("hub-{i}")),
            &certs[i - 1],
            &ports,
        );
        let out = Command::new(truebit_testkit::nats_bin())
            .args(["-c", &conf.display().to_string(), "-t"])
            .env_clear()
            .envs(server_env())
            .output()
            .expect("nats-server -t runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "nats-{i}.conf: {text}");
        assert!(text.contains("is valid"), "nats-{i}.conf: {text}");
    }
}

/// Three clustered servers from the shipped confs.
pub(crate) struct Cluster {
    pub(crate) servers: Vec<NatsServer>,
    pub(crate) ca: PathBuf,
}

impl Cluster {
    pub(crate) fn start(dir: &Path) -> Cluster {
        let (ca, certs) = certificates(dir);
        let ports = [free_port(), free_port(), free_port()];
        let servers = (1..=3)
            .map(|i| {
                let sdir = dir.join(format!("hub-{i}"));
                let conf = cluster_conf(i, &sdir, &certs[i - 1], &ports);
                NatsServer::start_with_env(
                    &sdir,
                    &["-c", &conf.display().to_string()],
                    &server_env(),
                )
            })
            .collect();
        Cluster { servers, ca }
    }

    /// Every server's client URL (what monitors and aggregators list).
    pub(crate) fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("tls://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client logged in as `user`, connected to the listed servers.
    pub(crate) async fn client(&self, user: &str, password: &str) -> async_nats::Client {
        let urls: Vec<String> = self.urls().split(',').map(str::to_owned).collect();
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .add_root_certificates(self.ca.clone())
            .retry_on_initial_connect()
            .connect(urls.as_slice())
            .await
            .expect("the client connects")
    }
}

pub(crate) fn replica_key(i: usize) -> AggregatorKey {
    AggregatorKey::from_signing_key(SigningKey::from_bytes(&[60 + i as u8; 32]))
}

pub(crate) fn pinned() -> KeySet {
    KeySet::new((1..=3).map(|i| replica_key(i).public()).collect(), 2).expect("2 of 3")
}

pub(crate) fn replica_config(dir: &Path, cluster: &Cluster, i: usize) -> Config {
    let mut c = config(&dir.join(format!("r{i}")), &cluster.urls());
    c.nats.auth = NatsAuth::UserPassword {
        user: "aggregator".into(),
        password: SecretString::from(AGGREGATOR_PASSWORD),
    };
    c.nats.ca_file = Some(cluster.ca.clone());
    c.create_stream = true;
    c.stream_replicas = 3;
    c.replica = format!("r{i}");
    c.consumer = format!("r{i}");
    c.keys = (1..=3).map(|i| replica_key(i).public()).collect();
    c.threshold = 2;
    // One noise secret for the hub: replicas must draw the same noise.
    c.noise_secret_path = dir.join("hub.noise");
    c
}

pub(crate) async fn start_replica(config: Config, i: usize, clock: &Clock) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    app::start(config, listener, replica_key(i), clock.clone())
        .await
        .expect("the replica starts")
}

/// Reads certified statistics until one for `window` is signed by exactly `signers`
/// (replica numbers); returns its figures.
async fn certified(
    sub: &mut async_nats::Subscriber,
    window: u64,
    signers: &[usize],
) -> NetworkStats {
    let want: Vec<PublicKey> = signers.iter().map(|i| replica_key(*i).public()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeMap::new();
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!("no certificate for {window} by {signers:?} within 60 s; seen: {seen:?}")
            })
            .expect("a message");
        let (certificate, by) =
            open_certified(&msg.payload, &pinned()).expect("every published message is certified");
        let names: Vec<usize> = by
            .iter()
            .map(|k| {
                (1..=3)
                    .find(|i| replica_key(*i).public() == *k)
                    .unwrap_or(0)
            })
            .collect();
        *seen
            .entry((certificate.stats().window.as_secs(), names))
            .or_insert(0) += 1;
        if certificate.stats().window.as_secs() == window && by == want {
            return certificate.into_stats();
        }
    }
}

async fn stored(r: &Running) -> (u64, u64) {
    let totals = r.state.store.totals().await.expect("totals");
    let (received, _, _) = r.state.store.count_sums().await.expect("sums");
    (totals.reports, received)
}

/// Publishes each report through JetStream and waits for the stream's acknowledgement,
/// as a monitor does: again after a failure (a server just died, the stream is electing
/// a leader), with a message id, so the stream keeps one copy.
pub(crate) async fn publish(js: &async_nats::jetstream::Context, wires: Vec<Vec<u8>>) {
    for wire in wires {
        let id = message_id(&wire);
        let mut attempts = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let sent = async {
                js.publish_with_headers(REPORT_SUBJECT, headers, wire.clone().into())
                    .await?
                    .await
            };
            match tokio::time::timeout(Duration::from_secs(10), sent).await {
                Ok(Ok(_)) => break,
                _ if attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => panic!("the replicated stream did not take a report: {other:?}"),
            }
        }
    }
}

/// A stable id of a message: 32 hex digits of its signature.
fn message_id(wire: &[u8]) -> String {
    String::from_utf8_lossy(&wire[wire.len() - 36..wire.len() - 4]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicated_hub_stays_certified_two_of_three_loses_nothing_and_names_a_tampered_replica(
) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("truebit_aggregator=debug")
        .with_test_writer()
        .try_init();
    let dir = tempdir();
    let mut cluster = Cluster::start(dir.path());
    // 13:05: the NOON hour is not released before 13:10.
    let clock = clock_at(NOON + 3_600 + 300);
    let mut replicas: Vec<Option<Running>> = Vec::new();
    for i in 1..=3 {
        let r = start_replica(replica_config(dir.path(), &cluster, i), i, &clock).await;
        replicas.push(Some(r));
    }
    let r =
        |replicas: &Vec<Option<Running>>, i: usize| -> Arc<truebit_aggregator::metrics::Metrics> {
            Arc::clone(&replicas[i - 1].as_ref().expect("running").state.metrics)
        };
    for i in 1..=3 {
        let m = r(&replicas, i);
        wait_until(
            30,
            "every replica reads the replicated stream",
            async || m.snapshot().delivery == Some("jetstream"),
        )
        .await;
    }
    let monitor = cluster.client("monitor", MONITOR_PASSWORD).await;
    let mut stats = monitor.subscribe(STATS_SUBJECT).await.expect("subscribe");
    monitor.flush().await.expect("flush");
    let js = async_nats::jetstream::new(monitor.clone());
    let noise = noise_of(&replica_config(dir.path(), &cluster, 1));
    let scale = truebit_aggregator::stats::reporting_scale();

    // Phase 1: 6 nodes report the NOON hour (2 windows each, 3 tasks received each).
    let mut wires = Vec::new();
    for n in 1..=6 {
        for w in [NOON, NOON + 300] {
            wires.push(SimNode::new(n).wire(w, 3, &[Task::ok(1)]));
        }
    }
    publish(&js, wires).await;
    for i in 1..=3 {
        let store = replicas[i - 1]
            .as_ref()
            .expect("running")
            .state
            .store
            .clone();
        wait_until(30, "12 reports stored by every replica", async || {
            store.totals().await.map(|t| t.reports).unwrap_or(0) == 12
        })
        .await;
    }
    clock.set_secs(NOON + 3_600 + 600 + 30);
    let figures = certified(&mut stats, NOON + 3_600 + 300, &[1, 2, 3]).await;
    let active = |n: i64, hour: u64| {
        Some(u64::try_from(n + noise.draw("nodes.reporting", hour, scale)).unwrap_or(0))
    };
    assert_eq!(figures.active_nodes, active(6, NOON));

    // Phase 2: one nats-server and one replica die; 7 nodes report the 13:00 hour.
    cluster.servers[1].stop();
    replicas[2].take().expect("running").shutdown().await;
    clock.set_secs(NOON + 2 * 3_600 + 300);
    let mut wires = Vec::new();
    for n in 1..=7 {
        for w in [NOON + 3_600, NOON + 3_600 + 1_800] {
            wires.push(SimNode::new(n).wire(w, 2, &[Task::ok(1)]));
        }
    }
    publish(&js, wires).await;
    for i in 1..=2 {
        let store = replicas[i - 1]
            .as_ref()
            .expect("running")
            .state
            .store
            .clone();
        wait_until(30, "26 reports stored by the live replicas", async || {
            store.totals().await.map(|t| t.reports).unwrap_or(0) == 26
        })
        .await;
    }
    clock.set_secs(NOON + 2 * 3_600 + 600 + 30);
    let window = NOON + 2 * 3_600 + 300;
    let figures = certified(&mut stats, window, &[1, 2]).await;
    assert_eq!(figures.active_nodes, active(7, NOON + 3_600));
    for i in 1..=2 {
        let live = replicas[i - 1].as_ref().expect("running");
        // The hand count: 12 + 14 reports, 12 × 3 + 14 × 2 tasks received.
        assert_eq!(stored(live).await, (26, 64), "replica {i}");
        // The certificate a monitor saw was gathered by one replica; the other learns
        // of it when the votes reach it.
        wait_until(
            30,
            "each live replica sees the window certified",
            async || {
                let c = live.state.metrics.certification();
                c.window == Some(window) && c.certified
            },
        )
        .await;
        let c = live.state.metrics.certification();
        let silent: Vec<&str> = c.silent.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(silent, ["r3"], "replica {i} says who is missing");
    }

    // Phase 3: both come back; the replica catches up from its durable consumer before
    // it signs, and its signature joins: 3 of 3 over the same bytes.
    cluster.servers[1].spawn();
    let back = start_replica(replica_config(dir.path(), &cluster, 3), 3, &clock).await;
    let store = back.state.store.clone();
    wait_until(60, "the returning replica catches up", async || {
        store.totals().await.map(|t| t.reports).unwrap_or(0) == 26
    })
    .await;
    replicas[2] = Some(back);
    let caught_up = certified(&mut stats, window, &[1, 2, 3]).await;
    assert_eq!(
        caught_up, figures,
        "the same figures, now signed by all three"
    );
    for i in 1..=3 {
        let s = replicas[i - 1].as_ref().expect("running");
        assert_eq!(
            stored(s).await,
            (26, 64),
            "replica {i}: nothing lost or counted twice"
        );
        let rejected = s.state.metrics.snapshot().rejected_by_reason;
        assert!(
            rejected.keys().all(|r| *r == "duplicate"),
            "replica {i}: {rejected:?}"
        );
    }

    // Phase 4: 60 nodes report the 14:00 hour through the stream, and replica 3's
    // store also gets a report the stream never carried (tampered): its count of the
    // hour's reporting nodes is one more (the same noise on every replica, and with
    // 60 nodes no noise draw takes a count to zero), its signature is not counted,
    // and the others name it.
    clock.set_secs(NOON + 3 * 3_600 + 300);
    let wires = (1..=60)
        .map(|n| SimNode::new(n).wire(NOON + 2 * 3_600, 1, &[Task::ok(1)]))
        .collect();
    publish(&js, wires).await;
    for i in 1..=3 {
        let store = replicas[i - 1]
            .as_ref()
            .expect("running")
            .state
            .store
            .clone();
        wait_until(30, "86 reports stored by every replica", async || {
            store.totals().await.map(|t| t.reports).unwrap_or(0) == 86
        })
        .await;
    }
    let forged = SimNode::new(99).report(NOON + 2 * 3_600, 40, &[]);
    let verdicts = replicas[2]
        .as_ref()
        .expect("running")
        .state
        .store
        .ingest(Arc::new(vec![forged]), clock.now_secs())
        .await
        .expect("stored");
    assert!(verdicts.iter().all(Result::is_ok));
    clock.set_secs(NOON + 3 * 3_600 + 600 + 30);
    let window = NOON + 3 * 3_600 + 300;
    certified(&mut stats, window, &[1, 2]).await;
    let latest = |i: usize| {
        replicas[i - 1]
            .as_ref()
            .expect("running")
            .state
            .latest
            .read()
            .expect("lock")
            .as_ref()
            .map(|p| p.signed.stats().clone())
    };
    let r3_latest = replicas[2].as_ref().expect("running").state.latest.clone();
    wait_until(30, "replica 3 computed the window", async || {
        r3_latest
            .read()
            .expect("lock")
            .as_ref()
            .is_some_and(|p| p.signed.stats().window.as_secs() == window)
    })
    .await;
    let hour = NOON + 2 * 3_600;
    assert_eq!(latest(1).expect("r1").active_nodes, active(60, hour));
    assert_eq!(latest(2).expect("r2").active_nodes, active(60, hour));
    assert_eq!(latest(3).expect("r3").active_nodes, active(61, hour));
    assert_ne!(active(60, hour), active(61, hour));
    let m1 = r(&replicas, 1);
    wait_until(30, "replica 1 names replica 3", async || {
        m1.certification()
            .disagreeing
            .iter()
            .any(|d| d.name == "r3")
    })
    .await;
    let text = m1.render(0);
    assert!(
        text.contains(&format!(
            "truebit_aggregator_replica_disagrees{{replica=\"r3\",key=\"{}\"}} 1",
            replica_key(3).public()
        )),
        "{text}"
    );
    let m3 = r(&replicas, 3);
    wait_until(30, "replica 3 knows it is the odd one", async || {
        let c = m3.certification();
        c.window == Some(window) && !c.certified && c.disagreeing.iter().any(|d| d.name == "r3")
    })
    .await;
    // The page of replica 1 says so too.
    let page = reqwest_page(replicas[0].as_ref().expect("running").addr).await;
    assert!(page.contains("id=\"disagreeing\""), "{page}");
    assert!(page.contains("r3 ("), "{page}");

    for r in replicas.into_iter().flatten() {
        r.shutdown().await;
    }
}

/// GET / of a replica's HTTP server (plain HTTP/1.1 over a TCP socket).
async fn reqwest_page(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Window close -> certified statistics at a monitor, with 3 replicas (2 of 3) on the
/// shipped cluster, 20 nodes' reports stored. A measurement, not a test: run it with
/// `cargo test -p truebit-aggregator --test it cluster::measure -- --ignored --nocapture`
/// and record the figures in docs/PERFORMANCE.md. The clock is the test's: it jumps to
/// each window's close + 250 ms (when a replica's publisher wakes for a new window), and
/// the time is measured from the jump to the certificate's arrival at the monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement that prints figures (docs/PERFORMANCE.md)"]
async fn measure_window_close_to_certified_statistics() {
    let dir = tempdir();
    let cluster = Cluster::start(dir.path());
    let clock = clock_at(NOON + 3_600 + 30);
    let mut replicas = Vec::new();
    for i in 1..=3 {
        let mut c = replica_config(dir.path(), &cluster, i);
        c.stats_interval = Duration::from_secs(30);
        replicas.push(start_replica(c, i, &clock).await);
    }
    let monitor = cluster.client("monitor", MONITOR_PASSWORD).await;
    let mut stats = monitor.subscribe(STATS_SUBJECT).await.expect("subscribe");
    monitor.flush().await.expect("flush");
    let js = async_nats::jetstream::new(monitor.clone());
    let mut wires = Vec::new();
    for n in 1..=20 {
        for w in (0..12).map(|i| NOON + i * 300) {
            wires.push(SimNode::new(n).wire(w, 3, &[Task::ok(1)]));
        }
    }
    publish(&js, wires).await;
    for r in &replicas {
        let store = r.state.store.clone();
        wait_until(60, "240 reports stored", async || {
            store.totals().await.map(|t| t.reports).unwrap_or(0) == 240
        })
        .await;
    }
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let before = loadavg();
    let (mut first, mut all) = (Vec::new(), Vec::new());
    for i in 1..=60u64 {
        let close = NOON + 3_600 + i * 300;
        let started = std::time::Instant::now();
        clock.set_ms(close * 1_000 + 250);
        let mut got_first = None;
        loop {
            let Ok(msg) = tokio::time::timeout(Duration::from_secs(30), stats.next()).await else {
                for r in &replicas {
                    eprintln!(
                        "{:?}\n{}",
                        r.state.metrics.certification(),
                        r.state.metrics.render(0)
                    );
                }
                panic!(
                    "no certificate within 30 s of the close of window {}",
                    close - 300
                );
            };
            let msg = msg.expect("a message");
            let (c, by) = open_certified(&msg.payload, &pinned()).expect("certified");
            if c.stats().window.as_secs() != close - 300 {
                continue;
            }
            let ms = started.elapsed().as_secs_f64() * 1e3 + 250.0;
            got_first.get_or_insert(ms);
            if by.len() == 3 {
                all.push(ms);
                break;
            }
        }
        first.push(got_first.expect("a first certificate"));
    }
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "window close -> certified at the monitor, 3 replicas, {} windows: \
         2 of 3: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; 3 of 3: p50 {:.0} ms, p99 {:.0} ms",
        first.len(),
        p(&mut first, 0.5),
        p(&mut first, 0.99),
        p(&mut first, 1.0),
        p(&mut all, 0.5),
        p(&mut all, 0.99),
    );
    println!(
        "load average before: {before}load average after: {}",
        loadavg()
    );
    for r in replicas {
        r.shutdown().await;
    }
}

/// Publishes `wires` to the report stream with their message ids, keeping at most 1,000
/// acknowledgements in flight.
async fn publish_fast(js: &async_nats::jetstream::Context, wires: &[Vec<u8>]) {
    let mut acks = Vec::new();
    for wire in wires {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id(wire).as_str());
        acks.push(
            js.publish_with_headers(REPORT_SUBJECT, headers, wire.clone().into())
                .await
                .expect("publish"),
        );
        if acks.len() >= 1_000 {
            for ack in acks.drain(..) {
                ack.await.expect("stored by the stream");
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored by the stream");
    }
}

/// A replica's ingest rate against the single aggregator's: the same reports wait in the
/// stream (R1 on one server for the single aggregator; R3 on the cluster), then the
/// single aggregator, or the three replicas at once, drain them into their stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement that prints figures (docs/PERFORMANCE.md)"]
async fn measure_replica_ingest_rate_against_a_single_aggregator() {
    const NODES: u32 = 200;
    const WINDOWS: u64 = 20;
    let total = u64::from(NODES) * WINDOWS;
    let wires: Vec<Vec<u8>> = (0..WINDOWS)
        .flat_map(|w| {
            (1..=NODES).map(move |n| SimNode::new(n).wire(NOON + w * 300, 3, &[Task::ok(1)]))
        })
        .collect();
    let now = NOON + (WINDOWS + 1) * 300;
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let before = loadavg();

    // The single aggregator on one server.
    let dir = tempdir();
    let nats = NatsServer::jetstream(dir.path());
    let mut cfg = config(dir.path(), &nats.url());
    cfg.create_stream = true;
    let first = spawn_app(cfg.clone(), clock_at(now)).await;
    wait_until(10, "jetstream delivery", async || {
        first.state.metrics.snapshot().delivery == Some("jetstream")
    })
    .await;
    first.shutdown().await;
    publish_fast(&async_nats::jetstream::new(client(&nats).await), &wires).await;
    let started = std::time::Instant::now();
    let single = spawn_app(cfg, clock_at(now)).await;
    let store = single.state.store.clone();
    wait_until(
        600,
        "the single aggregator stored every report",
        async || store.totals().await.map(|t| t.reports).unwrap_or(0) == total,
    )
    .await;
    let single_secs = started.elapsed().as_secs_f64();
    single.shutdown().await;

    // Three replicas on the cluster, R3.
    let cdir = tempdir();
    let cluster = Cluster::start(cdir.path());
    let clock = clock_at(now);
    let mut replicas = Vec::new();
    for i in 1..=3 {
        replicas.push(start_replica(replica_config(cdir.path(), &cluster, i), i, &clock).await);
    }
    for r in &replicas {
        wait_until(30, "jetstream delivery", async || {
            r.state.metrics.snapshot().delivery == Some("jetstream")
        })
        .await;
    }
    for r in replicas.drain(..) {
        r.shutdown().await;
    }
    let monitor = cluster.client("monitor", MONITOR_PASSWORD).await;
    publish_fast(&async_nats::jetstream::new(monitor), &wires).await;
    // One replica alone (the same work as the single aggregator, over the replicated
    // stream and TLS), then the other two at once (two processes' work on this machine).
    let timed = async |these: &[&Running]| {
        let started = std::time::Instant::now();
        for r in these {
            let store = r.state.store.clone();
            wait_until(600, "a replica stored every report", async || {
                store.totals().await.map(|t| t.reports).unwrap_or(0) == total
            })
            .await;
        }
        started.elapsed().as_secs_f64()
    };
    let one = start_replica(replica_config(cdir.path(), &cluster, 1), 1, &clock).await;
    let alone = timed(&[&one]).await;
    let two = start_replica(replica_config(cdir.path(), &cluster, 2), 2, &clock).await;
    let three = start_replica(replica_config(cdir.path(), &cluster, 3), 3, &clock).await;
    let pair = timed(&[&two, &three]).await;
    replicas.extend([one, two, three]);
    println!(
        "{total} reports: the single aggregator (R1, one server, plain TCP) {:.2} s = {:.0} reports/s; \
         one replica alone (R3 on the cluster, TLS) {:.2} s = {:.0} reports/s = {:.2}x the single; \
         two replicas at once on this machine {:.2} s",
        single_secs,
        total as f64 / single_secs,
        alone,
        total as f64 / alone,
        single_secs / alone,
        pair,
    );
    println!(
        "load average before: {before}load average after: {}",
        loadavg()
    );
    for r in replicas {
        r.shutdown().await;
    }
}

/// Every setting deploy/docker-compose.hub.yml hands the aggregator replicas is one the
/// binary reads (`run --help` names its environment variables).
#[test]
fn the_hub_compose_file_sets_only_settings_the_aggregator_knows() {
    let compose =
        std::fs::read_to_string(deploy().join("docker-compose.hub.yml")).expect("compose file");
    let block = compose
        .split("x-aggregator-env: &aggregator-env\n")
        .nth(1)
        .expect("the replicas' shared environment")
        .split("\n\n")
        .next()
        .expect("its block");
    let mut keys: Vec<&str> = block
        .lines()
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .collect();
    assert!(compose.matches("AGGREGATOR_REPLICA: aggregator-").count() == 3);
    keys.push("AGGREGATOR_REPLICA");
    assert!(keys.len() >= 10, "{keys:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_truebit-aggregator"))
        .args(["run", "--help"])
        .output()
        .expect("truebit-aggregator run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for key in keys {
        assert!(
            help.contains(&format!("[env: {key}")),
            "{key} is not a setting:\n{help}"
        );
    }
    assert!(compose.contains("command: [\"run\", \"--create-stream\"]"));
}

/// GET `path` of a process's HTTP server; `None` while it does not answer.
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// The value of an unlabelled counter in a /metrics text.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Stored reports and the sum of their received counts, read from a replica's database
/// file (another process may be writing it: WAL readers do not block it).
fn stored_in(db: &Path) -> (u64, u64) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the replica's database");
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(received), 0) FROM reports",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .expect("count")
}

/// An aggregator replica as its own `truebit-aggregator run` process.
struct ReplicaProcess {
    child: std::process::Child,
    port: u16,
    db: PathBuf,
}

impl ReplicaProcess {
    fn spawn(dir: &Path, cluster: &Cluster, i: usize, keys: &str) -> ReplicaProcess {
        let port = free_port();
        let db = dir.join(format!("p{i}/aggregator.db"));
        std::fs::create_dir_all(db.parent().expect("dir")).expect("dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("p{i}.log")))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_truebit-aggregator"))
            .arg("run")
            .env_clear()
            .env("AGGREGATOR_NATS_URL", cluster.urls())
            .env("AGGREGATOR_NATS_USER", "aggregator")
            .env("AGGREGATOR_NATS_PASSWORD", AGGREGATOR_PASSWORD)
            .env("AGGREGATOR_NATS_CA", &cluster.ca)
            .env("DB_PATH", &db)
            .env("KEY_PATH", dir.join(format!("p{i}.key")))
            .env("NOISE_SECRET_PATH", dir.join("hub.noise"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("CREATE_STREAM", "true")
            .env("STREAM_REPLICAS", "3")
            .env("STREAM_MAX_MIB", "64")
            .env("ACK_WAIT_SECS", "1")
            .env("AGGREGATOR_REPLICA", format!("p{i}"))
            .env("AGGREGATOR_CONSUMER", format!("p{i}"))
            .env("AGGREGATOR_KEYS", keys)
            .env("AGGREGATOR_THRESHOLD", "2")
            .env("RUST_LOG", "truebit_aggregator=info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the aggregator binary starts");
        ReplicaProcess { child, port, db }
    }

    async fn metrics(&self) -> Option<String> {
        http_get(self.port, "/metrics").await
    }

    async fn reads_the_stream(&self) -> bool {
        http_get(self.port, "/health")
            .await
            .is_some_and(|h| h.contains("\"feed\":\"jetstream\""))
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The replicas as separate processes, and a crash rather than a shutdown: replica 3
/// and one nats-server are killed with SIGKILL while the replicas are draining 4,000
/// reports from the R3 stream. The other two store every report; the killed replica,
/// started again on its database and durable consumer, catches up; every store then
/// holds exactly the hand count (nothing lost, nothing counted twice: what it had
/// stored before the crash but not acknowledged comes again and is a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_and_a_server_killed_mid_ingest_lose_and_double_count_nothing() {
    const NODES: u32 = 200;
    const WINDOWS: u64 = 20;
    let total = u64::from(NODES) * WINDOWS;
    let dir = tempdir();
    let mut cluster = Cluster::start(dir.path());
    let keys: Vec<String> = (1..=3)
        .map(|i| {
            let out = Command::new(env!("CARGO_BIN_EXE_truebit-aggregator"))
                .args([
                    "--key",
                    &dir.path().join(format!("p{i}.key")).display().to_string(),
                    "key",
                ])
                .output()
                .expect("truebit-aggregator key");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    let keys = keys.join(",");
    let mut replicas: Vec<ReplicaProcess> = (1..=3)
        .map(|i| ReplicaProcess::spawn(dir.path(), &cluster, i, &keys))
        .collect();
    for r in &replicas {
        wait_until(
            60,
            "every replica reads the replicated stream",
            async || r.reads_the_stream().await,
        )
        .await;
    }

    // Real time: the replicas run on the system clock. The 20 windows before now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let last_closed = now / 300 * 300 - 300;
    let wires: Vec<Vec<u8>> = (0..WINDOWS)
        .flat_map(|w| {
            (1..=NODES).map(move |n| SimNode::new(n).wire(last_closed - w * 300, 3, &[Task::ok(1)]))
        })
        .collect();
    let monitor = cluster.client("monitor", MONITOR_PASSWORD).await;
    let js = async_nats::jetstream::new(monitor);
    publish_fast(&js, &wires).await;

    // Mid-ingest: replica 3 has accepted some of the reports, not all.
    let victim = &replicas[2];
    let mut at_kill = 0;
    wait_until(120, "replica 3 is part-way through", async || {
        at_kill = match victim.metrics().await {
            Some(text) => counter(&text, "truebit_aggregator_reports_accepted_total").unwrap_or(0),
            None => 0,
        };
        at_kill >= 200
    })
    .await;
    replicas[2].child.kill().expect("SIGKILL replica 3");
    replicas[2].child.wait().expect("reaped");
    cluster.servers[1].kill();
    let (stored_at_kill, _) = stored_in(&replicas[2].db);
    assert!(
        stored_at_kill < total,
        "the kill must land mid-ingest: {stored_at_kill} of {total} stored (accepted {at_kill})"
    );

    // The two live replicas store every report.
    for r in &replicas[..2] {
        wait_until(300, "the live replicas store every report", async || {
            stored_in(&r.db).0 == total
        })
        .await;
    }

    // Both come back: the replica on its own database and consumer.
    cluster.servers[1].spawn();
    let db = replicas[2].db.clone();
    replicas[2] = ReplicaProcess::spawn(dir.path(), &cluster, 3, &keys);
    assert_eq!(replicas[2].db, db);
    let deadline = Instant::now() + Duration::from_secs(300);
    while stored_in(&db).0 != total {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(dir.path().join("p3.log")).unwrap_or_default();
            let health = http_get(replicas[2].port, "/health").await;
            panic!(
                "the killed replica did not catch up: {} of {total} stored; /health: {health:?}; its log:\n{}",
                stored_in(&db).0,
                log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The hand count: 4,000 reports, 3 tasks received in each.
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(stored_in(&r.db), (total, 3 * total), "replica {}", i + 1);
    }
    let text = replicas[2].metrics().await.expect("metrics");
    let accepted = counter(&text, "truebit_aggregator_reports_accepted_total").expect("accepted");
    assert_eq!(
        accepted,
        total - stored_at_kill,
        "after the restart, replica 3 accepts only what it had not stored: {text}"
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("truebit_aggregator_reports_rejected_total{"))
    {
        assert!(
            line.contains("reason=\"duplicate\""),
            "only duplicates are rejected: {line}"
        );
    }
}
