//! Test support: a real nats-server per test (truebit-testkit), simulated monitors built on the protocol
//! crate, and `spawn_app()` starting the aggregator in-process with an injected clock.

use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use truebit_aggregator::app::{self, Running};
use truebit_aggregator::config::{Config, Settings};
use truebit_aggregator::key::AggregatorKey;
use truebit_aggregator::Clock;
use truebit_protocol::bucket::{ExecTimeBucket, GasBucket, MemoryBucket, StepsBucket};
use truebit_protocol::report::{
    ChainId, Continent, InvoiceItem, Level, NodeState, NodeStatus, Operation, Outcome, Report,
    TaskItem,
};
use truebit_protocol::sign::SigningKey;
use truebit_protocol::window::WindowStart;

/// 2024-06-01T12:00:00Z, a window start.
pub const NOON: u64 = 1_717_243_200;

pub use truebit_testkit::NatsServer;

/// A client of the test's own on `nats`.
pub async fn client(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url())
        .await
        .expect("test client connects")
}

/// One simulated monitor: a node key, reports signed the monitor's way.
pub struct SimNode {
    pub key: SigningKey,
    pub continent: Option<Continent>,
}

/// One finished task of a simulated report.
#[derive(Clone, Copy, Debug)]
pub struct Task {
    pub chain: Option<u64>,
    pub ok: bool,
    pub duration: ExecTimeBucket,
    pub gas: GasBucket,
    pub memory: MemoryBucket,
    pub cached: Option<bool>,
}

impl Task {
    pub fn ok(chain: u64) -> Task {
        Task {
            chain: Some(chain),
            ok: true,
            duration: ExecTimeBucket::From1STo5S,
            gas: GasBucket::From1MTo10M,
            memory: MemoryBucket::From64To256,
            cached: Some(false),
        }
    }
}

impl SimNode {
    pub fn new(seed: u32) -> SimNode {
        let mut bytes = [7u8; 32];
        bytes[..4].copy_from_slice(&seed.to_le_bytes());
        SimNode {
            key: SigningKey::from_bytes(&bytes),
            continent: None,
        }
    }

    pub fn report(&self, window: u64, received: u64, tasks: &[Task]) -> Report {
        let w = WindowStart::new(window).expect("a window start");
        let mut r = Report::for_key(&self.key.verifying_key(), w, Level::Full);
        r.continent = self.continent;
        r.status = NodeStatus {
            state: NodeState::Up,
            ..NodeStatus::UNKNOWN
        };
        let mut items: Vec<TaskItem> = tasks
            .iter()
            .map(|t| TaskItem {
                chain: t.chain.and_then(ChainId::new),
                outcome: if t.ok {
                    Outcome::Completed
                } else {
                    Outcome::Failed
                },
                duration: t.duration,
                gas: t.gas,
                memory: t.memory,
                cached: t.cached,
            })
            .collect();
        items.sort();
        r.counts.received = received;
        r.counts.completed = tasks.iter().filter(|t| t.ok).count() as u64;
        r.counts.failed = tasks.iter().filter(|t| !t.ok).count() as u64;
        r.invoices = items
            .iter()
            .map(|_| InvoiceItem {
                op: Operation::Charge,
                steps: StepsBucket::From1MTo10M,
            })
            .collect();
        r.tasks = items;
        r
    }

    pub fn sign(&self, report: &Report) -> Vec<u8> {
        truebit_protocol::privacy::validate_report(report)
            .expect("a valid report")
            .sign(&self.key)
            .expect("signs")
            .to_wire()
    }

    pub fn wire(&self, window: u64, received: u64, tasks: &[Task]) -> Vec<u8> {
        self.sign(&self.report(window, received, tasks))
    }
}

/// What a test may change in the aggregator's configuration.
pub fn config(dir: &Path, nats_url: &str) -> Config {
    let mut c = Settings {
        nats_url: Some(nats_url.to_owned()),
        db_path: Some(dir.join("agg/aggregator.db")),
        stats_interval_secs: Some(1),
        ack_wait_secs: Some(1),
        // Small, so that the tests do not depend on the machine's free disk space.
        stream_max_mib: Some(64),
        ..Settings::default()
    }
    .validate()
    .expect("test config");
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c
}

/// A clock standing at Unix second `now`; it moves when the test sets it
/// ([`Clock::set_secs`]: clones share the time).
pub fn clock_at(now: u64) -> Clock {
    let clock = Clock::manual(0);
    clock.set_secs(now);
    clock
}

/// The co-signing state of a single aggregator with [`test_key`] (1 of 1).
pub fn single_certifier() -> truebit_aggregator::publisher::SharedCertifier {
    let key = test_key().public();
    std::sync::Arc::new(std::sync::Mutex::new(
        truebit_aggregator::certify::Certifier::new(
            "test".into(),
            key,
            truebit_protocol::certificate::KeySet::single(key).expect("1 of 1"),
        ),
    ))
}

/// [`test_key`] alone, 1 of 1: what a monitor pins for a single aggregator.
pub fn single_key_set() -> truebit_protocol::certificate::KeySet {
    truebit_protocol::certificate::KeySet::single(test_key().public()).expect("1 of 1")
}

pub fn test_key() -> AggregatorKey {
    AggregatorKey::from_signing_key(SigningKey::from_bytes(&[42; 32]))
}

/// A fixed noise secret (the tests compute the noise a figure gets with it).
pub fn test_noise() -> truebit_protocol::noise::FigureNoise {
    truebit_protocol::noise::FigureNoise::new([43; 32])
}

/// The noise of the aggregator started with `config` (its secret file, created at start).
pub fn noise_of(config: &Config) -> truebit_protocol::noise::FigureNoise {
    truebit_aggregator::key::load_or_create_noise(&config.noise_secret_path).expect("noise secret")
}

/// Starts the aggregator in-process (HTTP on 127.0.0.1:0).
pub async fn spawn_app(config: Config, clock: Clock) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    app::start(config, listener, test_key(), clock)
        .await
        .expect("the aggregator starts")
}

/// Polls `f` until it is true, for at most `secs`.
pub async fn wait_until(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}
