//! Delivery through the SQLite outbox: [`Alerts::notify`] queues a notification for
//! every channel (one transaction, through the store's writer), and each channel's own
//! task sends what waits for it.
//!
//! A channel's task, in a loop: read its queued rows, oldest first; when the oldest has
//! waited less than the group window, wait for the rest of the window (so notifications
//! of a few seconds go out as one message); send them as one message, or as one summary
//! when more than `summary_after` are queued (a channel that was unreachable for a
//! while); on success delete them, on failure keep them, record the error and wait the
//! backoff (doubling, capped) before the next attempt. An attempt is cut after the
//! timeout. Only this task waits for its channel: other channels, the store's writer and
//! ingest never do. Delivery is at least once: if the monitor stops between a channel
//! accepting a message and the rows leaving the outbox, the message is sent again.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::channel::{Channel, SendError, Sender};
use super::config::{AlertConfig, Delivery};
use super::rules::RuleStatus;
use super::{AlertState, Message, Notification, Rule};
use crate::model::UnixNanos;
use crate::store::alerts::{Incident, Step};
use crate::store::{now_ns, Store, StoreError};

pub use crate::store::alerts::ChannelStats;

/// What a caller of the alert actions is told.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("no alert channel {name:?} (configured: {configured})")]
    UnknownChannel { name: String, configured: String },
    #[error("alert channel {channel:?}: {error}")]
    Send { channel: String, error: SendError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handle to the alert delivery: cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("channels", &self.inner.lanes().len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    /// The channels in effect, in the order they were defined; changed by
    /// [`Alerts::put_channel`] and [`Alerts::remove_channel`].
    lanes: RwLock<Vec<Arc<Lane>>>,
    sender: Sender,
    delivery: Delivery,
    dashboard_url: Option<String>,
    shutdown: CancellationToken,
}

impl Inner {
    fn lanes(&self) -> Vec<Arc<Lane>> {
        self.lanes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn wake_all(&self) {
        for lane in self.lanes() {
            lane.wake.notify_one();
        }
    }
}

/// A channel, the signal that something was queued for it, and the stop of its task
/// (when the channel is changed or deleted, or the monitor stops).
struct Lane {
    channel: Channel,
    wake: Notify,
    stop: CancellationToken,
}

impl Alerts {
    /// Starts one delivery task per configured channel on the current tokio runtime;
    /// they stop when `shutdown` is cancelled. `dashboard_url` (PUBLIC_URL) is linked
    /// from every message.
    pub fn start(
        store: Store,
        config: &AlertConfig,
        dashboard_url: Option<String>,
        shutdown: CancellationToken,
    ) -> Result<Alerts, SendError> {
        let inner = Arc::new(Inner {
            store,
            lanes: RwLock::new(Vec::new()),
            sender: Sender::new(config.delivery.timeout)?,
            delivery: config.delivery,
            dashboard_url,
            shutdown,
        });
        let alerts = Alerts {
            inner,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        for channel in &config.channels {
            alerts.put_channel(channel.clone());
        }
        Ok(alerts)
    }

    /// The channels in effect.
    pub fn channels(&self) -> Vec<Channel> {
        self.inner
            .lanes()
            .iter()
            .map(|l| l.channel.clone())
            .collect()
    }

    /// Puts `channel` in effect: a new one starts its delivery task; one that replaces the
    /// channel of its name stops the old task (an attempt in flight is cut off) and
    /// starts anew with what is queued for that name.
    pub fn put_channel(&self, channel: Channel) {
        let lane = Arc::new(Lane {
            channel,
            wake: Notify::new(),
            stop: self.inner.shutdown.child_token(),
        });
        {
            let mut lanes = self
                .inner
                .lanes
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match lanes
                .iter_mut()
                .find(|l| l.channel.name == lane.channel.name)
            {
                Some(old) => {
                    old.stop.cancel();
                    *old = Arc::clone(&lane);
                }
                None => lanes.push(Arc::clone(&lane)),
            }
        }
        let task = tokio::spawn(run_lane(Arc::clone(&self.inner), lane));
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Stops the channel called `name` and takes it out of effect; whether there was one.
    pub fn remove_channel(&self, name: &str) -> bool {
        let mut lanes = self
            .inner
            .lanes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = lanes.len();
        lanes.retain(|l| {
            let keep = l.channel.name != name;
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        lanes.len() != before
    }

    /// Queues `notification` for every channel and wakes their tasks. Returns once it is
    /// committed; sending happens in the channels' own tasks.
    pub async fn notify(&self, notification: Notification) -> Result<(), StoreError> {
        let names: Vec<String> = self.channels().into_iter().map(|c| c.name).collect();
        if names.is_empty() {
            return Ok(());
        }
        self.inner
            .store
            .call(move |s| s.alert_enqueue(names, notification, now_ns()))
            .await?;
        self.inner.wake_all();
        Ok(())
    }

    /// Writes a rule's state change and queues what it sends for every channel (none
    /// when `outbox` is false), in one transaction, then wakes the channels' tasks (see
    /// [`Store::alert_step`]).
    pub(crate) async fn step(
        &self,
        rule: Rule,
        status: RuleStatus,
        step: Step,
        now_ns: UnixNanos,
        outbox: bool,
    ) -> Result<(), StoreError> {
        let names: Vec<String> = if outbox {
            self.channels().into_iter().map(|c| c.name).collect()
        } else {
            Vec::new()
        };
        let sends = !matches!(step, Step::Quiet);
        self.inner
            .store
            .call(move |s| s.alert_step(rule, status, step, names, now_ns))
            .await?;
        if sends {
            self.inner.wake_all();
        }
        Ok(())
    }

    /// The newest incidents first, at most `limit`.
    pub async fn incidents(&self, limit: u32) -> Result<Vec<Incident>, StoreError> {
        self.inner
            .store
            .call(move |s| s.alert_incidents(limit))
            .await
    }

    /// Sends `notification` to every channel now, one attempt each, not through the
    /// outbox (which is in the database): for the rule about the database failing.
    /// Returns at once; each channel's attempt runs in a task of its own.
    pub(crate) fn send_direct(&self, notification: Notification) {
        for lane in self.inner.lanes() {
            let inner = Arc::clone(&self.inner);
            let notification = notification.clone();
            tokio::spawn(async move {
                let channel = &lane.channel;
                let message = Message::group(&[notification], inner.dashboard_url.as_deref());
                match inner.sender.send(channel, &message).await {
                    Ok(()) => {
                        tracing::info!(alert.channel = %channel.name, "alert delivered directly")
                    }
                    Err(error) => {
                        tracing::warn!(alert.channel = %channel.name, %error, "direct alert delivery failed")
                    }
                }
            });
        }
    }

    /// The HTTP client the channels use (the heartbeat's too).
    pub(crate) fn sender(&self) -> &Sender {
        &self.inner.sender
    }

    /// The store the alerts live in.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Sends a test message to `channel` now (not through the outbox), records the result
    /// with the channel's delivery results, and says whether it was accepted.
    pub async fn send_test(&self, channel: &str) -> Result<(), AlertError> {
        let channels = self.channels();
        let channel = find(channels.iter(), channel)?;
        let result = send_test(
            &self.inner.sender,
            channel,
            self.inner.dashboard_url.as_deref(),
        )
        .await;
        let name = channel.name.clone();
        let now = now_ns();
        let outcome = match &result {
            Ok(()) => Ok(1),
            Err(AlertError::Send { error, .. }) => Err(error.to_string()),
            Err(_) => return result,
        };
        self.inner
            .store
            .call(move |s| s.alert_attempted(name, None, outcome, now))
            .await?;
        result
    }

    /// Every channel in effect with its delivery results (zeros for one that never sent).
    pub async fn stats(&self) -> Result<Vec<(Channel, ChannelStats)>, StoreError> {
        let stored = self.inner.store.call(|s| s.alert_channel_stats()).await?;
        Ok(self
            .channels()
            .into_iter()
            .map(|c| {
                let stats = stored
                    .iter()
                    .find(|s| s.channel == c.name)
                    .cloned()
                    .unwrap_or_else(|| ChannelStats {
                        channel: c.name.clone(),
                        ..ChannelStats::default()
                    });
                (c, stats)
            })
            .collect())
    }

    /// Waits until every channel's task has stopped (after the shutdown signal).
    pub async fn stopped(&self) {
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The channel called `name`, or an error listing the configured ones.
pub fn find<'a>(
    channels: impl Iterator<Item = &'a Channel>,
    name: &str,
) -> Result<&'a Channel, AlertError> {
    let channels: Vec<&Channel> = channels.collect();
    if let Some(found) = channels.iter().find(|c| c.name == name) {
        return Ok(found);
    }
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    Err(AlertError::UnknownChannel {
        name: name.to_owned(),
        configured: if names.is_empty() {
            "none; see docs/ALERTS.md".to_owned()
        } else {
            names.join(", ")
        },
    })
}

/// One test message to `channel`, now.
pub async fn send_test(
    sender: &Sender,
    channel: &Channel,
    dashboard_url: Option<&str>,
) -> Result<(), AlertError> {
    let message = Message::group(
        &[Notification {
            rule: Rule::Test,
            state: AlertState::Firing,
            since_ns: now_ns(),
            details: "Alerts sent to this channel reach you.".into(),
        }],
        dashboard_url,
    );
    sender
        .send(channel, &message)
        .await
        .map_err(|error| AlertError::Send {
            channel: channel.name.clone(),
            error,
        })
}

/// Sleeps `wait`; `false` when shutdown came first.
async fn pause(shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}

/// One channel's delivery loop (see the module's documentation), until the lane is
/// stopped.
async fn run_lane(inner: Arc<Inner>, lane: Arc<Lane>) {
    let shutdown = lane.stop.clone();
    let name = lane.channel.name.clone();
    let delivery = inner.delivery;
    let mut failures: u32 = 0;
    loop {
        let pending = {
            let name = name.clone();
            inner.store.call(move |s| s.alert_pending(&name)).await
        };
        let rows = match pending {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(alert.channel = %name, %error, "cannot read the alert outbox; retrying");
                if !pause(&shutdown, delivery.retry_min).await {
                    return;
                }
                continue;
            }
        };
        let Some(oldest) = rows.first() else {
            tokio::select! {
                () = lane.wake.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        };
        // Group: wait until the oldest has waited the whole window (only before the
        // first attempt; a retry goes at once with everything queued by then).
        let window_ns = i64::try_from(delivery.group_window.as_nanos()).unwrap_or(i64::MAX);
        let wait_ns = oldest.created_ns.saturating_add(window_ns) - now_ns();
        if oldest.attempts == 0 && wait_ns > 0 {
            if !pause(&shutdown, Duration::from_nanos(wait_ns.unsigned_abs())).await {
                return;
            }
            continue;
        }
        let notes: Vec<Notification> = rows.iter().map(|r| r.notification.clone()).collect();
        let dashboard = inner.dashboard_url.as_deref();
        let message = if notes.len() > delivery.summary_after {
            Message::summary(&notes, dashboard)
        } else {
            Message::group(&notes, dashboard)
        };
        let up_to = rows.last().map(|r| r.id);
        let result = tokio::select! {
            r = inner.sender.send(&lane.channel, &message) => r,
            () = shutdown.cancelled() => return,
        };
        let outcome = match result {
            Ok(()) => {
                failures = 0;
                let delivered = notes.len() as u64;
                tracing::info!(alert.channel = %name, notifications = delivered, summary = (message.alerts.len() < notes.len()), "alert delivered");
                Ok(delivered)
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(alert.channel = %name, %error, "alert delivery failed; retrying with backoff");
                } else {
                    tracing::debug!(alert.channel = %name, %error, failures, "alert delivery failed again");
                }
                Err(error.to_string())
            }
        };
        let recorded = {
            let (name, now) = (name.clone(), now_ns());
            inner
                .store
                .call(move |s| s.alert_attempted(name, up_to, outcome, now))
                .await
        };
        if failures > 0 && !pause(&shutdown, delivery.backoff(failures)).await {
            return;
        }
        if let Err(error) = recorded {
            tracing::warn!(alert.channel = %name, %error, "cannot record an alert delivery");
            if !pause(&shutdown, delivery.retry_min).await {
                return;
            }
        }
    }
}
