//! What runs while federation is on: the window scheduler, the publisher (outbox ->
//! NATS) and the network statistics subscription. All three stop when the session's
//! token is cancelled (disable or shutdown); the connection is then closed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truebit_protocol::certificate::{open_certified, KeySet};
use truebit_protocol::report::Report;
use truebit_protocol::window::{self, window_of, WindowStart, WINDOW_SECS};
use truebit_protocol::STATS_SUBJECT;

use super::anonymizer::anonymize;
use super::gate;
use super::identity::Identity;
use super::nats::{Link, LinkState, Nats, PublishError};
use super::shared::{NetworkStatsSnapshot, Shared};
use crate::store::federation::LOG_RETENTION_MS;
use crate::store::Store;

/// Windows that closed before the session started (the monitor was stopped) are built
/// this long after the start, so the source can catch up with the log first.
pub(crate) const BACKFILL_GRACE: Duration = Duration::from_secs(60);

/// Pause after a store error before the loop tries again.
const STORE_RETRY: Duration = Duration::from_secs(10);

/// How long shutdown waits for each loop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Reports published per outbox read.
const OUTBOX_BATCH: usize = 16;

/// The send delay of a window's report: uniform over 0–120 s (protocol
/// [`window::send_delay`]) from one draw of `rng`.
pub fn draw_send_delay<R: RngCore + ?Sized>(rng: &mut R) -> Duration {
    window::send_delay(rng.next_u64())
}

/// The generator the scheduler draws send delays from: a CSPRNG seeded by the
/// operating system, so the delays cannot be predicted from earlier ones.
pub fn timing_rng() -> StdRng {
    StdRng::from_entropy()
}

/// Retry pause after the `failures`-th failed publish in a row: 1 s doubling to 60 s.
pub(crate) fn retry_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(60))
}

/// Runs one session until `cancel`. `started_ms`: when federation was switched on (or
/// the monitor started with it on); windows closed before it are back-filled.
pub(crate) async fn run(
    shared: Arc<Shared>,
    identity: Identity,
    started_ms: u64,
    cancel: CancellationToken,
) {
    let scheduler = tokio::spawn(schedule(
        Arc::clone(&shared),
        identity.clone(),
        started_ms,
        cancel.clone(),
    ));
    let (link_tx, link_rx) = watch::channel(Link {
        state: LinkState::Connecting,
        generation: 0,
        last_error: None,
    });
    shared.runtime().link = Some(link_rx);
    let link_tx = Arc::new(link_tx);
    let nats = loop {
        match Nats::connect(&shared.config, Arc::clone(&link_tx), &cancel).await {
            Ok(Some(nats)) => break Some(Arc::new(nats)),
            Ok(None) => break None,
            Err(error) => {
                tracing::error!(%error, "federation: cannot connect; retrying in 30 s");
                link_tx.send_modify(|l| l.last_error = Some(error.to_string()));
                tokio::select! {
                    () = cancel.cancelled() => break None,
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        }
    };
    if let Some(nats) = nats {
        let publisher = tokio::spawn(publish(
            Arc::clone(&shared),
            Arc::clone(&nats),
            identity.clone(),
            cancel.clone(),
        ));
        let stats = shared.config.aggregator_keys.clone().map(|key| {
            tokio::spawn(subscribe_stats(
                Arc::clone(&shared),
                Arc::clone(&nats),
                key,
                cancel.clone(),
            ))
        });
        cancel.cancelled().await;
        finish(publisher, "publisher").await;
        if let Some(stats) = stats {
            finish(stats, "statistics").await;
        }
        match Arc::try_unwrap(nats) {
            Ok(nats) => nats.close().await,
            Err(_) => tracing::warn!("federation: connection still in use at close"),
        }
        tracing::info!("federation: connection closed");
    }
    {
        let mut runtime = shared.runtime();
        runtime.link = None;
        runtime.delivery = None;
    }
    finish(scheduler, "scheduler").await;
}

/// Waits for a cancelled loop; one stuck in a store call (the database is failing) is
/// abandoned after a few seconds, so shutdown never hangs on it. Its pending write, if
/// any, is a whole transaction: it commits later or not at all.
async fn finish(task: tokio::task::JoinHandle<()>, what: &str) {
    let abort = task.abort_handle();
    if tokio::time::timeout(SHUTDOWN_WAIT, task).await.is_err() {
        tracing::warn!("federation: the {what} did not stop within {SHUTDOWN_WAIT:?}; abandoned");
        abort.abort();
    }
}

/// The first window whose report may still be built: its close lies within the last
/// 7 days.
fn oldest_reportable(now_ms: u64) -> u64 {
    let cutoff = now_ms.saturating_sub(LOG_RETENTION_MS) / 1000;
    window_of(cutoff).as_secs()
}

/// Builds and queues one report per window, at the window's random send time.
async fn schedule(
    shared: Arc<Shared>,
    identity: Identity,
    started_ms: u64,
    cancel: CancellationToken,
) {
    let store = shared.store.clone();
    while !cancel.is_cancelled() {
        let now_ms = shared.clock.now_ms();
        if let Err(error) = store.call(move |s| s.federation_prune(now_ms)).await {
            tracing::warn!(%error, "federation: cannot prune the outbox");
        }
        let state = match store.call(Store::federation_state).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "federation: cannot read the schedule");
                pause(&cancel, STORE_RETRY).await;
                continue;
            }
        };
        let Some(next) = state.next_window else {
            // Enabled without a schedule (a fresh start): begin with the current window.
            let start = window_of(now_ms / 1000).as_secs();
            if let Err(error) = store
                .call(move |s| s.federation_schedule(true, Some(start)))
                .await
            {
                tracing::warn!(%error, "federation: cannot start the schedule");
                pause(&cancel, STORE_RETRY).await;
            }
            continue;
        };
        let oldest = oldest_reportable(now_ms);
        let Some(window) = WindowStart::new(next).filter(|_| next >= oldest) else {
            let to = oldest.max(window_of(next).as_secs() + WINDOW_SECS);
            tracing::info!(
                from = next,
                to,
                "federation: skipping windows older than 7 days"
            );
            if let Err(error) = store.call(move |s| s.federation_skip_to(next, to)).await {
                tracing::warn!(%error, "federation: cannot skip old windows");
                pause(&cancel, STORE_RETRY).await;
            }
            continue;
        };
        let delay = {
            let mut rng = shared.rng();
            draw_send_delay(&mut *rng)
        };
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let close_ms = window.closes_at() * 1000;
        let mut send_at_ms = close_ms + delay_ms;
        if close_ms <= started_ms {
            let grace_ms = u64::try_from(shared.backfill_grace.as_millis()).unwrap_or(0);
            send_at_ms = send_at_ms.max(started_ms + grace_ms);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.clock.sleep_until_ms(send_at_ms) => {}
        }
        // Everything the source handed over so far is committed before reading (unless
        // the database is failing: then it is read as it is).
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tokio::time::timeout(STORE_RETRY, store.call(|st| st.flush())) => {}
        }
        let data = match store.call(move |s| s.federation_window_data(window)).await {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, window = %window, "federation: cannot read a window");
                pause(&cancel, STORE_RETRY).await;
                continue;
            }
        };
        let sharing = shared.sharing();
        let mut bytes = anonymize(&data, &identity, window, sharing).to_canonical_bytes();
        if let Some(filter) = &shared.filter {
            bytes = filter(bytes);
        }
        let (publishable, blocked) = match gate::check(bytes, &identity) {
            Ok(p) => (p, None),
            Err(blocked) => {
                tracing::warn!(
                    window = window.as_secs(),
                    reason = %blocked.reason,
                    "federation: the privacy validator blocked this window's report; a cover report goes instead"
                );
                let cover = Report::new(identity.public_key(), window, sharing.level);
                match gate::check(cover.to_canonical_bytes(), &identity) {
                    Ok(p) => (p, Some(blocked)),
                    Err(also) => {
                        tracing::error!(reason = %also.reason, "federation: even the cover report was blocked; skipping the window");
                        let _ = store
                            .call(move |s| s.federation_skip_to(next, next + WINDOW_SECS))
                            .await;
                        continue;
                    }
                }
            }
        };
        let queued = publishable.queued(blocked, delay_ms, send_at_ms, shared.clock.now_ms());
        match store.call(move |s| s.federation_queue(queued)).await {
            Ok(_) => shared.wake.notify_one(),
            Err(error) => {
                tracing::warn!(%error, window = %window, "federation: cannot queue a window's report");
                pause(&cancel, STORE_RETRY).await;
            }
        }
    }
}

async fn pause(cancel: &CancellationToken, d: Duration) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// Sends the outbox, oldest first, whenever connected; a report leaves the outbox only
/// once the server has it.
async fn publish(
    shared: Arc<Shared>,
    nats: Arc<Nats>,
    identity: Identity,
    cancel: CancellationToken,
) {
    let store = shared.store.clone();
    let mut link = nats.link();
    let mut failures = 0u32;
    loop {
        while !nats.is_connected() {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = link.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let rows = match store.call(|s| s.federation_outbox(OUTBOX_BATCH)).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "federation: cannot read the outbox");
                pause(&cancel, STORE_RETRY).await;
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
        };
        if rows.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = shared.wake.notified() => {}
                _ = link.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            continue;
        }
        for row in rows {
            let report = match gate::reopen(&row.wire, &identity.public_key()) {
                Ok(report) => report,
                Err(blocked) => {
                    tracing::error!(window = row.window, reason = %blocked.reason, "federation: a queued report no longer passes the validator; it is not sent");
                    let _ = store
                        .call(move |s| s.federation_unqueue_blocked(&row, blocked.into()))
                        .await;
                    continue;
                }
            };
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = nats.publish(&report) => r,
            };
            match result {
                Ok(delivery) => {
                    failures = 0;
                    let sent_ms = shared.clock.now_ms();
                    tracing::debug!(
                        window = row.window,
                        ?delivery,
                        "federation: report delivered"
                    );
                    {
                        let mut runtime = shared.runtime();
                        runtime.delivery = Some(delivery);
                        runtime.last_error = None;
                    }
                    if let Err(error) = store.call(move |s| s.federation_sent(&row, sent_ms)).await
                    {
                        // Sent but still queued: it goes again (the stream de-duplicates).
                        tracing::warn!(%error, "federation: cannot mark a report as sent");
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let window = row.window;
                    let _ = store.call(move |s| s.federation_attempted(window)).await;
                    if !matches!(error, PublishError::NotConnected) {
                        tracing::warn!(%error, window, "federation: cannot publish a report; will retry");
                    }
                    shared.runtime().last_error = Some(error.to_string());
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(retry_delay(failures)) => {}
                        _ = link.changed() => {}
                    }
                    break;
                }
            }
        }
    }
}

/// Keeps the newest network statistics certified by the pinned aggregator keys (at
/// least their threshold signed the same bytes).
async fn subscribe_stats(
    shared: Arc<Shared>,
    nats: Arc<Nats>,
    pinned: KeySet,
    cancel: CancellationToken,
) {
    let mut subscriber = loop {
        match nats.subscribe(STATS_SUBJECT).await {
            Ok(s) => break s,
            Err(error) => {
                tracing::warn!(%error, "federation: cannot subscribe to network statistics");
                pause(&cancel, Duration::from_secs(5)).await;
                if cancel.is_cancelled() {
                    return;
                }
            }
        }
    };
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return,
            m = subscriber.next() => m,
        };
        let Some(message) = message else { return };
        match open_certified(&message.payload, &pinned) {
            Ok((signed, signers)) => {
                let received_ms = shared.clock.now_ms();
                let mut latest = shared.latest_stats();
                let newer = latest
                    .as_ref()
                    .is_none_or(|l| signed.stats().window >= l.stats.window);
                if newer {
                    *latest = Some(NetworkStatsSnapshot {
                        stats: signed.into_stats(),
                        signers: signers.iter().map(ToString::to_string).collect(),
                        threshold: pinned.threshold(),
                        received_ms,
                    });
                }
                drop(latest);
                shared.runtime().stats_received += 1;
            }
            Err(error) => {
                tracing::debug!(
                    reason = error.code(),
                    "federation: network statistics rejected"
                );
                let mut runtime = shared.runtime();
                runtime.stats_rejected += 1;
                runtime.last_stats_rejection = Some(error.code().to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_delays_are_uniform_over_0_to_120_seconds() {
        let mut rng = timing_rng();
        let n = 120_000u32;
        let mut bins = [0u32; 12];
        let (mut min, mut max) = (u128::MAX, 0u128);
        for _ in 0..n {
            let ms = draw_send_delay(&mut rng).as_millis();
            assert!(ms <= 120_000, "{ms}");
            min = min.min(ms);
            max = max.max(ms);
            bins[usize::try_from((ms * 12 / 120_001).min(11)).expect("small")] += 1;
        }
        let expected = f64::from(n) / 12.0;
        let chi2: f64 = bins
            .iter()
            .map(|&b| (f64::from(b) - expected).powi(2) / expected)
            .sum();
        // 11 degrees of freedom; p = 0.001 at 31.26.
        assert!(chi2 < 31.26, "chi2 {chi2}, bins {bins:?}");
        assert!(min < 1_000 && max > 119_000, "range {min}..{max}");
    }

    #[test]
    fn two_generators_do_not_draw_the_same_delays() {
        let (mut a, mut b) = (timing_rng(), timing_rng());
        let xs: Vec<_> = (0..8).map(|_| draw_send_delay(&mut a)).collect();
        let ys: Vec<_> = (0..8).map(|_| draw_send_delay(&mut b)).collect();
        assert_ne!(xs, ys);
    }

    #[test]
    fn retry_delay_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0).as_secs(), 1);
    }

    #[test]
    fn only_windows_of_the_last_seven_days_are_reportable() {
        let now_ms = 1_763_992_534_000;
        let oldest = oldest_reportable(now_ms);
        assert_eq!(oldest % 300, 0);
        let age = now_ms / 1000 - oldest;
        assert!((7 * 86_400..7 * 86_400 + 300).contains(&age), "{age}");
    }
}
