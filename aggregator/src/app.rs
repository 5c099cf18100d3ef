//! Wiring: open the store, connect to NATS, spawn the ingest, the publisher and the
//! HTTP server; one cancellation token fans out the shutdown. Order on shutdown: stop
//! taking reports, finish the batch in hand (stored, acknowledged), stop publishing,
//! stop HTTP, close NATS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{router, AppState};
use crate::ingest::Ingest;
use crate::key::AggregatorKey;
use crate::metrics::Metrics;
use crate::nats::{Delivery, Nats};
use crate::publisher::{Latest, Published, Publisher};
use crate::store::Store;
use crate::Clock;

/// A started aggregator.
#[derive(Debug)]
pub struct Running {
    pub state: AppState,
    pub addr: SocketAddr,
    cancel: CancellationToken,
    ingest: JoinHandle<()>,
    publisher: JoinHandle<()>,
    http: JoinHandle<()>,
    nats: Nats,
}

impl Running {
    /// Stops everything in order and waits for it.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.ingest.await;
        let _ = self.publisher.await;
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
    let publisher = Publisher {
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
        http,
        nats,
    })
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
                nats.create_stream(config.stream_max_bytes).await?;
            }
            nats.reports(&config.consumer, config.ack_wait).await
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
                let ingest = Ingest {
                    feed,
                    store: store.clone(),
                    metrics: Arc::clone(&metrics),
                    clock: clock.clone(),
                    cancel: cancel.clone(),
                };
                let result = ingest.run().await;
                metrics.set_consuming(false);
                match result {
                    Err(e) => tracing::error!(error = %e, "ingest stopped"),
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
