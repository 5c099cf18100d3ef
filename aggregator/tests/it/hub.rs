//! The real aggregator against the shipped deploy/nats-server.conf: TLS, the
//! `aggregator` user's permissions (stream creation, durable consumer, acknowledgements,
//! replies under `_AGGREGATOR_INBOX`, statistics), and a `monitor` user that publishes
//! acknowledged reports and reads the signed statistics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use truebit_protocol::sign::open_stats;
use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

use crate::support::*;

const MONITOR_PASSWORD: &str = "m-secret #1";
const AGGREGATOR_PASSWORD: &str = "a-secret";

fn run(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} runs (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1, with the file names the config expects.
fn certificates(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::write(
        certs.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    for step in [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-CA",
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout privkey.pem -out server.csr -subj /CN=localhost",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out fullchain.pem -days 2 -extfile ext.cnf",
    ] {
        let args: Vec<&str> = step.split_whitespace().collect();
        run("openssl", &args, &certs);
    }
    certs
}

struct Hub {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is killed and waited for by `Drop`.
#[allow(clippy::zombie_processes)]
fn start_hub(dir: &Path) -> Hub {
    let certs = certificates(dir);
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats-server.conf"),
    )
    .expect("deploy/nats-server.conf");
    let swap = |text: String, from: &str, to: &str, n: usize| {
        assert_eq!(text.matches(from).count(), n, "nats-server.conf: {from:?}");
        text.replace(from, to)
    };
    let conf = swap(
        shipped,
        "/etc/nats/certs/",
        &format!("{}/", certs.display()),
        4,
    );
    let conf = swap(
        conf,
        "store_dir: \"/data\"",
        &format!("store_dir: \"{}\"", dir.join("js").display()),
        1,
    );
    let conf = swap(
        conf,
        "  port: 8443\n",
        "  host: \"127.0.0.1\"\n  port: -1\n",
        1,
    );
    let conf_path = dir.join("nats-server.conf");
    std::fs::write(&conf_path, conf).expect("config");
    let log = dir.join("hub.log");
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf_path)
        .args(["-a", "127.0.0.1", "-p", "-1", "-l"])
        .arg(&log)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Quoted as docker-compose.federation.yml hands them over.
        .env("MONITOR_PASSWORD", format!("\"{MONITOR_PASSWORD}\""))
        .env("AGGREGATOR_PASSWORD", format!("\"{AGGREGATOR_PASSWORD}\""))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Server is ready") {
            let port = text
                .lines()
                .find_map(|l| l.split_once("Listening for client connections on "))
                .and_then(|(_, a)| a.trim().rsplit(':').next()?.parse().ok())
                .expect("client port");
            return Hub {
                child,
                port,
                ca: certs.join("ca.pem"),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server with the shipped config did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_runs_with_the_shipped_nats_config_and_its_permissions() {
    let dir = tempdir();
    let hub = start_hub(dir.path());
    let url = format!("tls://127.0.0.1:{}", hub.port);
    let clock = clock_at(NOON + 2 * 300 + 30);
    let mut cfg = config(dir.path(), &url);
    cfg.nats.auth = truebit_aggregator::config::NatsAuth::UserPassword {
        user: "aggregator".into(),
        password: truebit_aggregator::config::SecretString::from(AGGREGATOR_PASSWORD),
    };
    cfg.nats.ca_file = Some(hub.ca.clone());
    cfg.create_stream = true;
    let noise = noise_of(&cfg);
    let app = spawn_app(cfg, clock.clone()).await;
    wait_until(20, "the stream and the consumer", async || {
        app.state.metrics.snapshot().delivery == Some("jetstream")
    })
    .await;

    // A monitor (the shared `monitor` user) publishes acknowledged reports and reads
    // the statistics.
    let monitor = async_nats::ConnectOptions::with_user_and_password(
        "monitor".into(),
        MONITOR_PASSWORD.into(),
    )
    .add_root_certificates(hub.ca.clone())
    .connect(&url)
    .await
    .expect("the monitor connects over TLS");
    let mut stats = monitor.subscribe(STATS_SUBJECT).await.expect("subscribe");
    let js = async_nats::jetstream::new(monitor.clone());
    for n in 1..=5 {
        let node = SimNode::new(n);
        let ack = js
            .publish(
                REPORT_SUBJECT,
                node.wire(NOON + 300, 2, &[Task::ok(1)]).into(),
            )
            .await
            .expect("publish")
            .await
            .expect("the stream acknowledges the report");
        assert_eq!(ack.stream, "TRUEBIT_REPORTS");
    }
    wait_until(20, "5 reports stored", async || {
        app.state.metrics.accepted() == 5
    })
    .await;
    // The NOON hour is released at 13:10.
    clock.set_secs(NOON + 3_600 + 600);
    let figures = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), stats.next())
            .await
            .expect("statistics within 10 s")
            .expect("a message");
        let signed = open_stats(&msg.payload, &test_key().signing_key().verifying_key())
            .expect("signed by the pinned key");
        if signed.stats().active_nodes.is_some() {
            break signed.into_stats();
        }
    };
    let scale = truebit_aggregator::stats::reporting_scale();
    let active = 5 + noise.draw("nodes.reporting", NOON, scale);
    assert_eq!(
        figures.active_nodes,
        Some(u64::try_from(active).unwrap_or(0))
    );
    let received: i64 = (0..24)
        .map(|i| NOON - i * 3_600)
        .map(|h| {
            let scale = truebit_aggregator::stats::task_scale();
            i64::from(h == NOON) * 10 + noise.draw("tasks.received", h, scale)
        })
        .sum();
    assert_eq!(
        figures.tasks_24h.received,
        Some(u64::try_from(received).unwrap_or(0))
    );
    let s = app.state.metrics.snapshot();
    assert_eq!((s.received, s.rejected, s.stats_errors), (5, 0, 0));
    app.shutdown().await;
}
