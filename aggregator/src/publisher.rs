//! Every interval: compute the statistics of the latest closed window from the store,
//! sign them with the aggregator key, keep them (history) and publish them on
//! `truebit.stats.v1`. Also applies the retention once an hour.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use truebit_protocol::sign::SignedStats;

use crate::key::AggregatorKey;
use crate::metrics::Metrics;
use crate::nats::Nats;
use crate::stats::{compute, hourly_tasks, latest_closed_window, period_start_hour, HourTasks};
use crate::store::Store;
use crate::Clock;

/// The newest signed statistics (and, for the page, tasks per hour), shared with the
/// HTTP handlers.
pub type Latest = Arc<RwLock<Option<Published>>>;

#[derive(Clone, Debug)]
pub struct Published {
    pub signed: SignedStats,
    /// Empty until the first computation after a start.
    pub hourly: Vec<HourTasks>,
}

#[derive(Debug)]
pub struct Publisher {
    pub store: Store,
    pub nats: Option<Nats>,
    pub key: AggregatorKey,
    pub k: u32,
    pub interval: Duration,
    pub retention_days: u32,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub latest: Latest,
    pub cancel: CancellationToken,
}

impl Publisher {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention_hour = None;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let now = self.clock.now();
            if let Err(e) = self.publish_once(now).await {
                self.metrics.stats_error();
                tracing::warn!(error = %e, "cannot publish statistics");
            }
            let hour = now / 3_600;
            if last_retention_hour != Some(hour) {
                last_retention_hour = Some(hour);
                let cutoff = now.saturating_sub(u64::from(self.retention_days) * 86_400);
                match self.store.retention(cutoff - cutoff % 300).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(reports = n, "retention: old reports deleted"),
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
            }
        }
    }

    /// Computes, signs, keeps and publishes the statistics at `now`.
    pub async fn publish_once(&self, now: u64) -> anyhow::Result<SignedStats> {
        let window = latest_closed_window(now);
        let input = self
            .store
            .stats_input(window.as_secs(), period_start_hour(window))
            .await?;
        let k = self.k;
        let (stats, hourly) = tokio::task::spawn_blocking(move || {
            (compute(&input, window, k), hourly_tasks(&input, window, k))
        })
        .await?;
        let signed = stats.sign(self.key.signing_key())?;
        let wire = signed.to_wire();
        self.store
            .save_stats(window.as_secs(), wire.clone())
            .await?;
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Published {
            signed: signed.clone(),
            hourly,
        });
        if let Some(nats) = &self.nats {
            nats.publish_stats(wire).await?;
        }
        self.metrics.stats_published(window.as_secs());
        Ok(signed)
    }
}
