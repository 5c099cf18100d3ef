//! Wiring: open the store, connect to NATS, spawn the ingest, the publisher, the
//! uptime proof server and the HTTP server; one cancellation token fans out the shutdown. Order on shutdown: stop
//! taking reports, finish the batch in hand (stored, acknowledged), stop publishing,
//! stop HTTP, close NATS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use futures_util::StreamExt as _;
use truebit_protocol::certificate::{KeySet, StatsVote};

use crate::certify::{Certifier, Outcome};
use crate::config::Config;
use crate::http::{router, AppState};
use crate::ingest::Ingest;
use crate::key::AggregatorKey;
use crate::metrics::Metrics;
use crate::nats::{Delivery, Nats};
use crate::proof::ProofServer;
use crate::publisher::{lock, Latest, Published, Publisher, SharedCertifier};
use crate::store::Store;
use crate::Clock;

/// How often an aggregator reading a core subscription asks whether the server has a
/// report stream now.
const CORE_FEED_PROBE: Duration = Duration::from_secs(10);

/// A started aggregator.
#[derive(Debug)]
pub struct Running {
    pub state: AppState,
    pub addr: SocketAddr,
    cancel: CancellationToken,
    ingest: JoinHandle<()>,
    publisher: JoinHandle<()>,
    votes: JoinHandle<()>,
    proofs: JoinHandle<()>,
    http: JoinHandle<()>,
    nats: Nats,
}

impl Running {
    /// Stops everything in order and waits for it.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.ingest.await;
        let _ = self.publisher.await;
        let _ = self.votes.await;
        let _ = self.proofs.await;
        let _ = self.http.await;
        self.nats.close().await;
    }
}

/// Starts the aggregator on `listener`.
pub async fn start(
    config: Config,
    listener: TcpListener,
    key: AggregatorKey,
    clock: Clock,
) -> anyhow::Result<Running> {
    let db_path = config.db_path.clone();
    let limits = config.limits;
    let store = tokio::task::spawn_blocking(move || Store::open(&db_path, limits))
        .await?
        .with_context(|| format!("cannot open the database {}", config.db_path.display()))?;
    let noise_path = config.noise_secret_path.clone();
    let noise = tokio::task::spawn_blocking(move || crate::key::load_or_create_noise(&noise_path))
        .await??;
    let metrics = Arc::new(Metrics::default());
    let nats = Nats::connect(&config.nats, Arc::clone(&metrics)).await?;
    let latest: Latest = Arc::new(RwLock::new(None));
    let keys = if config.keys.is_empty() {
        KeySet::single(key.public())?
    } else {
        if !config.keys.contains(&key.public()) {
            anyhow::bail!(
                "AGGREGATOR_KEYS: the list does not include this replica's own key {} (KEY_PATH {})",
                key.public(),
                config.key_path.display()
            );
        }
        KeySet::new(config.keys.clone(), config.threshold)?
    };
    let certifier: SharedCertifier = Arc::new(Mutex::new(Certifier::new(
        config.replica.clone(),
        key.public(),
        keys.clone(),
    )));
    let cancel = CancellationToken::new();
    if let Some(wire) = store.latest_stats().await? {
        if let Ok(signed) = truebit_protocol::sign::SignedStats::from_wire(&wire) {
            *latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Published {
                signed,
                hourly: Vec::new(),
            });
        }
    }

    let ingest = tokio::spawn(supervise_ingest(
        nats.clone(),
        config.clone(),
        store.clone(),
        Arc::clone(&metrics),
        clock.clone(),
        cancel.clone(),
    ));
    let votes = tokio::spawn(receive_votes(
        nats.clone(),
        Arc::clone(&certifier),
        Arc::clone(&metrics),
        cancel.clone(),
    ));
    let proofs = tokio::spawn(
        ProofServer {
            nats: nats.clone(),
            store: store.clone(),
            key: key.clone(),
            replica: config.replica.clone(),
            keys,
            retention_days: config.retention_days,
            clock: clock.clone(),
            metrics: Arc::clone(&metrics),
            max_in_flight: crate::proof::MAX_IN_FLIGHT,
            cancel: cancel.clone(),
        }
        .run(),
    );
    let publisher = Publisher {
        certifier: Arc::clone(&certifier),
        consumer: config.consumer.clone(),
        store: store.clone(),
        nats: Some(nats.clone()),
        key: key.clone(),
        noise,
        k: config.k,
        interval: config.stats_interval,
        retention_days: config.retention_days,
        clock,
        metrics: Arc::clone(&metrics),
        latest: Arc::clone(&latest),
        cancel: cancel.clone(),
    };
    let publisher = tokio::spawn(async move {
        if let Err(e) = publisher.run().await {
            tracing::error!(error = %e, "publisher stopped");
        }
    });
    let state = AppState {
        certifier,
        store,
        metrics,
        latest,
        public_key: key.public(),
        k: config.k,
    };
    let addr = listener.local_addr()?;
    let app = router(state.clone());
    let http_cancel = cancel.clone();
    let http = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(Running {
        state,
        addr,
        cancel,
        ingest,
        publisher,
        votes,
        proofs,
        http,
        nats,
    })
}

/// Receives the other replicas' signed statistics; publishes the certificate when one
/// completes the threshold (without waiting for this replica's next interval).
async fn receive_votes(
    nats: Nats,
    certifier: SharedCertifier,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    if !lock(&certifier).has_peers() {
        return;
    }
    loop {
        let votes = tokio::select! {
            _ = cancel.cancelled() => return,
            v = nats.votes() => v,
        };
        let mut votes = match votes {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the replicas' signatures; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let wire = tokio::select! {
                _ = cancel.cancelled() => return,
                w = votes.next() => match w {
                    Some(w) => w,
                    None => break,
                },
            };
            let vote = match StatsVote::open(&wire) {
                Ok(v) => v,
                Err(e) => {
                    metrics.vote_rejected();
                    tracing::warn!(
                        reason = e.code(),
                        "a replica's signature message was rejected"
                    );
                    continue;
                }
            };
            tracing::debug!(
                replica = vote.replica(),
                window = vote.stats().window.as_secs(),
                "a replica's signature"
            );
            let (outcome, status) = {
                let mut c = lock(&certifier);
                let outcome = c.peer(vote);
                (outcome, c.status())
            };
            metrics.set_certification(&status);
            if let Outcome::Certified(certificate) = outcome {
                match nats.publish_stats(certificate.to_wire()).await {
                    Ok(()) => metrics.stats_certified(),
                    Err(e) => tracing::warn!(error = %e, "cannot publish certified statistics"),
                }
            }
        }
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    key: AggregatorKey,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = start(config, listener, key, clock).await?;
    tracing::info!(addr = %running.addr, "HTTP server listening");
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Opens the report feed (creating the stream first with `--create-stream`) and runs
/// the ingest; retries with capped backoff while NATS is unreachable.
async fn supervise_ingest(
    nats: Nats,
    config: Config,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Clock,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    while !cancel.is_cancelled() {
        let opened = async {
            if config.create_stream {
                nats.create_stream(config.stream_max_bytes, config.stream_replicas)
                    .await?;
            }
            nats.reports(&config.consumer, config.ack_wait, config.create_stream)
                .await
        };
        let feed = tokio::select! {
            _ = cancel.cancelled() => return,
            feed = opened => feed,
        };
        match feed {
            Ok(feed) => {
                backoff = Duration::from_millis(250);
                let delivery = match feed.delivery() {
                    Delivery::JetStream => "jetstream",
                    Delivery::Core => "core",
                };
                metrics.set_delivery(delivery);
                tracing::info!(delivery, "receiving reports by {}", feed.mode());
                metrics.set_consuming(true);
                let feed_cancel = cancel.child_token();
                let core = matches!(feed.delivery(), Delivery::Core);
                let ingest = Ingest {
                    feed,
                    store: store.clone(),
                    metrics: Arc::clone(&metrics),
                    clock: clock.clone(),
                    cancel: feed_cancel.clone(),
                };
                let ingest = ingest.run();
                tokio::pin!(ingest);
                // A core feed is a fallback, not a choice: once the server has a stream on
                // the report subject (JetStream came up, an operator created it), the
                // durable consumer replaces it and delivers what the core feed missed.
                let mut switched = false;
                let result = loop {
                    tokio::select! {
                        result = &mut ingest => break result,
                        _ = tokio::time::sleep(CORE_FEED_PROBE), if core && !switched => {
                            if nats.has_report_stream().await {
                                tracing::info!("a JetStream stream on the report subject is there now; switching to it");
                                switched = true;
                                feed_cancel.cancel();
                            }
                        }
                    }
                };
                metrics.set_consuming(false);
                match result {
                    Err(e) => tracing::error!(error = %e, "ingest stopped"),
                    Ok(()) if switched => continue,
                    Ok(()) if !cancel.is_cancelled() => {
                        tracing::warn!("the report feed ended; opening it again");
                    }
                    Ok(()) => {}
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the report feed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
