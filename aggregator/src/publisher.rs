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
use truebit_protocol::noise::FigureNoise;

use crate::stats::{
    compute, day_is_released, hour_is_released, hourly_tasks, last_released_day,
    latest_closed_window, period_hours, period_start_hour, release_day, release_hour, HourTasks,
};
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
    /// The noise of published figures (from the hub's noise secret).
    pub noise: FigureNoise,
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
            let now = self.clock.now_secs();
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

    /// Releases the figures of every hour of the period and of the last UTC day that
    /// are due and not released yet (once: a released figure never changes).
    async fn release_due(
        &self,
        window: truebit_protocol::window::WindowStart,
    ) -> anyhow::Result<()> {
        let day = last_released_day(window);
        let released = self
            .store
            .released(day.min(period_start_hour(window)))
            .await?;
        let mut rows = Vec::new();
        for hour in period_hours(window) {
            if !hour_is_released(&released, hour) {
                let hour_rows = self.store.hour_rows(hour).await?;
                rows.extend(release_hour(hour, &hour_rows, &self.noise));
            }
        }
        if !day_is_released(&released, day) {
            let input = self.store.day_input(day).await?;
            let (k, noise) = (self.k, self.noise.clone());
            rows.extend(
                tokio::task::spawn_blocking(move || release_day(day, &input, k, &noise)).await?,
            );
        }
        if !rows.is_empty() {
            self.store.save_released(rows).await?;
        }
        Ok(())
    }

    /// Releases what is due, then computes, signs, keeps and publishes the statistics
    /// at `now`.
    pub async fn publish_once(&self, now: u64) -> anyhow::Result<SignedStats> {
        let window = latest_closed_window(now);
        self.release_due(window).await?;
        let input = self
            .store
            .stats_input(
                last_released_day(window).min(period_start_hour(window)),
                period_start_hour(window),
            )
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
