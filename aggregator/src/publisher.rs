//! Every interval, and right after each window closes: compute the statistics of the
//! latest closed window from the store, sign them with this replica's key, keep them
//! (history), send the signature to the other replicas (`truebit.stats.sig.v1`) and,
//! once a threshold of the pinned replica keys signed the same bytes ([`Certifier`]),
//! publish the certified statistics on `truebit.stats.v2`. Also applies the retention
//! once an hour.
//!
//! Replicas must compute from the same reports. So a replica computes (and releases
//! figures, which are then frozen) only when its durable consumer has caught up with
//! the report stream ([`Nats::caught_up`]: every report the stream held when the
//! check began is stored): a replica that was down, or is behind, signs nothing
//! until then. The figures
//! of a window come from hours that ended at least [`crate::stats::RELEASE_DELAY_SECS`]
//! before it closed (the settle delay: a report reaches the stream within 2 minutes of
//! its window's close).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use truebit_protocol::sign::SignedStats;

use crate::certify::{Certifier, Outcome};
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
    /// The co-signing state, shared with the vote subscriber and the HTTP handlers.
    pub certifier: SharedCertifier,
    /// The durable consumer whose progress gates the computation.
    pub consumer: String,
    pub cancel: CancellationToken,
}

/// The certifier, shared (locked only for short sections, never across an `.await`).
pub type SharedCertifier = Arc<Mutex<Certifier>>;

/// Locks the certifier (a poisoned lock still holds valid state).
pub fn lock(c: &SharedCertifier) -> std::sync::MutexGuard<'_, Certifier> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut last_retention_hour = None;
        let mut first = true;
        // When the window that was open at the last computation closes (+250 ms): its
        // statistics are computed as soon as it closes, also when the clock passed that
        // point during the computation.
        let mut next_close_ms = 0;
        loop {
            let interval = if first { Duration::ZERO } else { self.interval };
            first = false;
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
                _ = self.clock.sleep_until_ms(next_close_ms) => {}
            }
            let now_ms = self.clock.now_ms();
            next_close_ms = now_ms - now_ms % 300_000 + 300_000 + 250;
            let now = now_ms / 1_000;
            if self.caught_up().await {
                if let Err(e) = self.publish_once(now).await {
                    self.metrics.stats_error();
                    tracing::warn!(error = %e, "cannot publish statistics");
                }
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

    /// Whether this replica has stored every report of the stream (see the module
    /// documentation); without NATS, or with a core subscription, always.
    async fn caught_up(&self) -> bool {
        let Some(nats) = &self.nats else {
            return true;
        };
        let within = self.interval.min(Duration::from_secs(10));
        let caught_up = match nats.caught_up(&self.consumer, within).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the consumer's progress");
                false
            }
        };
        self.metrics.set_caught_up(caught_up);
        if !caught_up {
            tracing::info!("catching up with the report stream: no statistics signed yet");
        }
        caught_up
    }

    /// Releases what is due, then computes, signs, keeps and publishes the statistics
    /// at `now`: this replica's signature to the others, the certified statistics when
    /// a threshold signed them.
    pub async fn publish_once(&self, now: u64) -> anyhow::Result<SignedStats> {
        let signed = self.compute_once(now).await?;
        let vote = truebit_protocol::certificate::StatsVote::sign(
            lock(&self.certifier).replica(),
            signed.stats().clone(),
            self.key.signing_key(),
        )?;
        let (certificate, peers) = {
            let mut c = lock(&self.certifier);
            let certificate = match c.own(vote.clone()) {
                Outcome::Certified(certificate) => Some(*certificate),
                Outcome::Unchanged => c.certificate(),
            };
            (certificate, c.has_peers())
        };
        self.metrics
            .set_certification(&lock(&self.certifier).status());
        if let Some(nats) = &self.nats {
            if peers {
                nats.publish_vote(vote.to_wire()).await?;
            }
            if let Some(certificate) = certificate {
                nats.publish_stats(certificate.to_wire()).await?;
                self.metrics.stats_certified();
            }
        }
        self.metrics
            .stats_published(signed.stats().window.as_secs());
        Ok(signed)
    }

    /// Computes, signs and keeps this replica's statistics at `now`.
    async fn compute_once(&self, now: u64) -> anyhow::Result<SignedStats> {
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
        self.store.save_stats(window.as_secs(), wire).await?;
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Published {
            signed: signed.clone(),
            hourly,
        });
        Ok(signed)
    }
}
