//! The real aggregator against the shipped deploy/nats-server.conf: TLS, the
//! `aggregator` user's permissions (stream creation, durable consumer, acknowledgements,
//! replies under `_AGGREGATOR_INBOX`, statistics), and a `monitor` user that publishes
//! acknowledged reports and reads the signed statistics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use truebit_protocol::certificate::open_certified;
use truebit_protocol::{REPORT_SUBJECT, STATS_SUBJECT};

use crate::support::*;

pub(crate) const MONITOR_PASSWORD: &str = "m-secret #1";
pub(crate) const AGGREGATOR_PASSWORD: &str = "a-secret";

/// A nats-server running deploy/nats-server.conf with a test CA's certificate.
pub(crate) struct Hub {
    pub(crate) server: NatsServer,
    pub(crate) ca: PathBuf,
}

pub(crate) fn start_hub(dir: &Path) -> Hub {
    let certs = truebit_testkit::certificates(dir);
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats-server.conf"),
    )
    .expect("deploy/nats-server.conf");
    let conf = truebit_testkit::shipped_nats_conf(&shipped, dir, &certs.dir);
    let server = NatsServer::start_with_env(
        dir,
        &["-c", &conf.display().to_string()],
        // Quoted as docker-compose.federation.yml hands them over.
        &[
            ("MONITOR_PASSWORD".into(), format!("\"{MONITOR_PASSWORD}\"")),
            (
                "AGGREGATOR_PASSWORD".into(),
                format!("\"{AGGREGATOR_PASSWORD}\""),
            ),
        ],
    );
    Hub {
        server,
        ca: certs.ca,
    }
}

impl Hub {
    pub(crate) fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.server.port)
    }

    /// An aggregator's configuration for this hub: the `aggregator` user over TLS, and
    /// the stream created by the aggregator.
    pub(crate) fn aggregator_config(&self, dir: &Path) -> truebit_aggregator::config::Config {
        let mut cfg = config(dir, &self.url());
        cfg.nats.auth = truebit_aggregator::config::NatsAuth::UserPassword {
            user: "aggregator".into(),
            password: truebit_aggregator::config::SecretString::from(AGGREGATOR_PASSWORD),
        };
        cfg.nats.ca_file = Some(self.ca.clone());
        cfg.create_stream = true;
        cfg
    }

    /// A monitor's connection: the shared `monitor` user over TLS.
    pub(crate) async fn monitor(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(
            "monitor".into(),
            MONITOR_PASSWORD.into(),
        )
        .add_root_certificates(self.ca.clone())
        .connect(&self.url())
        .await
        .expect("the monitor connects over TLS")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_runs_with_the_shipped_nats_config_and_its_permissions() {
    let dir = tempdir();
    let hub = start_hub(dir.path());
    let clock = clock_at(NOON + 2 * 300 + 30);
    let cfg = hub.aggregator_config(dir.path());
    let noise = noise_of(&cfg);
    let app = spawn_app(cfg, clock.clone()).await;
    wait_until(20, "the stream and the consumer", async || {
        app.state.metrics.snapshot().delivery == Some("jetstream")
    })
    .await;

    // A monitor (the shared `monitor` user) publishes acknowledged reports and reads
    // the statistics.
    let monitor = hub.monitor().await;
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
        let (certified, _) =
            open_certified(&msg.payload, &single_key_set()).expect("certified by the pinned key");
        if certified.stats().active_nodes.is_some() {
            break certified.into_stats();
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
