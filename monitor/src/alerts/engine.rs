//! The rules engine: one task that evaluates every rule (rules.rs) and writes each state
//! change through [`Alerts::step`] (state, incident and outbox rows in one transaction),
//! and the optional dead-man heartbeat.
//!
//! It wakes up on a tick (every second), when a pending rule is due to fire (or a firing
//! one to be reminded), on a change of the source's status, and on the
//! store's feed of commits when a commit carries container events or the write health
//! changes; commits with log lines only note the time of the newest line. The feed is a
//! broadcast that never waits: when this task falls behind it loses changes
//! (`Lagged`), takes the loss as "lines arrived" and reads the rest from the store at the
//! next evaluation, as it always does. Writing a change goes through the store's writer;
//! sending happens in the outbox's channel tasks, so a dead channel never slows this
//! task, and this task never slows ingest.
//!
//! The states are read from the store when the task starts: a rule that was firing stays
//! firing without a second message while its condition holds, and resolves (with a
//! message) when the monitor sees it clear, e.g. a container that was started again while
//! the monitor was down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use truebit_clock::Clock;

use super::rules::{conditions, due_ns, step, Observation, RuleSet, RuleState, RuleStatus};
use super::{Alerts, Rule};
use crate::model::UnixNanos;
use crate::source::{Connection, ContainerState, SourceStatus};
use crate::store::{Change, Store, WriteHealth};

/// How long the engine waits for a state change to be written before it goes on (the
/// write stays queued in the store's writer).
const WRITE_WAIT: Duration = Duration::from_secs(1);

/// Every rule's state, as the engine last wrote it (none until it has read them).
pub type RuleStates = Option<Vec<(Rule, RuleStatus)>>;

/// The dead-man heartbeat (docs/ALERTS.md).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// Called every `every` while no rule fires.
    pub url: SecretString,
    /// Called instead while a rule fires, if set.
    pub fail_url: Option<SecretString>,
    pub every: Duration,
}

/// What the engine needs besides the store and the channels.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The rules' settings at start (the configuration with the operator's stored
    /// changes); the API changes them through [`Shared`].
    pub rules: RuleSet,
    /// Federation is on in the configuration (the operator's stored choice wins).
    pub federation_enabled: bool,
    pub heartbeat: Option<Heartbeat>,
    /// How often the rules are evaluated without another reason.
    pub tick: Duration,
}

/// The running engine: its rule states, the rules' settings in effect, and its tasks.
#[derive(Debug)]
pub struct Engine {
    states: watch::Receiver<RuleStates>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the engine shares with the API: the rules' settings in effect (changed there)
/// and the signal to evaluate now.
#[derive(Debug)]
pub struct Shared {
    rules: Mutex<RuleSet>,
    wake: Notify,
}

impl Shared {
    /// The rules' settings in effect.
    pub fn rules(&self) -> RuleSet {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes one rule's settings; the engine evaluates with them at once.
    pub fn set_rule(&self, rule: Rule, config: super::rules::RuleConfig) {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(rule, config);
        self.wake.notify_one();
    }
}

impl Engine {
    /// Starts the engine (and the heartbeat, when configured) on the current runtime;
    /// both stop when `shutdown` is cancelled.
    pub fn start(
        alerts: Alerts,
        status: watch::Receiver<SourceStatus>,
        config: EngineConfig,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Engine {
        let (states_tx, states) = watch::channel(None);
        let shared = Arc::new(Shared {
            rules: Mutex::new(config.rules.clone()),
            wake: Notify::new(),
        });
        let feed = alerts.store().subscribe();
        let mut tasks = Vec::new();
        if let Some(heartbeat) = config.heartbeat.clone() {
            tasks.push(tokio::spawn(run_heartbeat(
                alerts.clone(),
                heartbeat,
                states.clone(),
                shutdown.clone(),
            )));
        }
        let started_ns = clock.now_ns();
        let run = Run {
            alerts,
            status,
            config,
            clock,
            shared: Arc::clone(&shared),
            states: HashMap::new(),
            loaded: false,
            memo: Memo::default(),
            started_ns,
            published: states_tx,
            figures_failed: false,
            evaluated_ns: 0,
        };
        tasks.push(tokio::spawn(run.run(feed, shutdown)));
        Engine {
            states,
            shared,
            tasks,
        }
    }

    /// The settings in effect, shared with the API.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Every rule's state as last written.
    pub fn states(&self) -> watch::Receiver<RuleStates> {
        self.states.clone()
    }

    /// Waits until the engine's tasks have stopped (after the shutdown signal).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// What the engine saw itself, since it started.
#[derive(Clone, Debug, Default)]
struct Memo {
    unreachable_since_ns: Option<UnixNanos>,
    running_since_ns: Option<UnixNanos>,
    down_since_ns: Option<UnixNanos>,
    last_line_ns: Option<UnixNanos>,
}

struct Run {
    alerts: Alerts,
    status: watch::Receiver<SourceStatus>,
    config: EngineConfig,
    clock: Clock,
    shared: Arc<Shared>,
    states: HashMap<Rule, RuleStatus>,
    loaded: bool,
    memo: Memo,
    started_ns: UnixNanos,
    published: watch::Sender<RuleStates>,
    figures_failed: bool,
    /// When the rules were last evaluated.
    evaluated_ns: UnixNanos,
}

impl Run {
    async fn run(mut self, mut feed: broadcast::Receiver<Change>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feed_open = true;
        let mut status_open = true;
        loop {
            let due = self.next_due();
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                () = sleep_until_ns(&self.clock, due.unwrap_or(0)), if due.is_some() => {}
                () = self.shared.wake.notified() => {}
                changed = self.status.changed(), if status_open => {
                    status_open = changed.is_ok();
                }
                change = feed.recv(), if feed_open => match change {
                    Ok(Change::Committed(commit)) => {
                        if !commit.entries.is_empty() {
                            self.memo.last_line_ns = Some(self.clock.now_ns());
                        }
                        if commit.container_events.is_empty() {
                            continue;
                        }
                    }
                    Ok(Change::WriteHealth(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(lost)) => {
                        tracing::debug!(lost, "alerts: behind the store's feed; reading the store");
                        self.memo.last_line_ns = Some(self.clock.now_ns());
                    }
                    Err(broadcast::error::RecvError::Closed) => feed_open = false,
                },
            }
            self.evaluate().await;
        }
    }

    /// The soonest time after the last evaluation at which a rule changes by itself (see
    /// [`due_ns`]). One that was due at an evaluation and did not change (its condition
    /// unknown, its write failed) is left to the tick.
    fn next_due(&self) -> Option<UnixNanos> {
        let rules = self.shared.rules();
        self.states
            .iter()
            .filter_map(|(rule, status)| due_ns(status, rules.get(*rule).after, rules.reminder))
            .filter(|due| *due > self.evaluated_ns)
            .min()
    }

    /// Evaluates every rule once and writes what changed.
    async fn evaluate(&mut self) {
        if !self.loaded {
            match self.alerts.store().call(Store::alert_rule_states).await {
                Ok(stored) => {
                    self.states = stored.into_iter().collect();
                    self.loaded = true;
                }
                Err(error) => {
                    tracing::warn!(%error, "alerts: cannot read the rule states; retrying");
                    return;
                }
            }
        }
        let now = self.clock.now_ns();
        self.evaluated_ns = now;
        let seen = self.observe(now).await;
        let rules = self.shared.rules();
        for (rule, condition) in conditions(&seen, &rules, now) {
            let config = rules.get(rule);
            let current = self.states.get(&rule).cloned().unwrap_or_default();
            let Some((next, change)) =
                step(rule, &current, condition, config.after, rules.reminder, now)
            else {
                continue;
            };
            if next.state != current.state {
                tracing::info!(
                    alert.rule = rule.id(),
                    from = current.state.as_str(),
                    to = next.state.as_str(),
                    details = %next.details,
                    "alert rule state changed"
                );
            }
            // The rule about the database is sent at once, straight to the channels: the
            // outbox is in the database that fails. Its state and incident are written
            // as for every rule.
            let direct = rule == Rule::DbWrite;
            if direct {
                if let Some(note) = change.notification() {
                    self.alerts.send_direct(note.clone());
                }
            }
            let alerts = self.alerts.clone();
            let state = next.clone();
            let mut write =
                tokio::spawn(async move { alerts.step(rule, state, change, now, !direct).await });
            match tokio::time::timeout(WRITE_WAIT, &mut write).await {
                Ok(Ok(Ok(()))) => {
                    self.states.insert(rule, next);
                }
                Ok(Ok(Err(error))) => {
                    // Unchanged in memory: the next evaluation tries again.
                    tracing::warn!(alert.rule = rule.id(), %error, "alerts: cannot record a rule's state");
                }
                Ok(Err(error)) => {
                    tracing::warn!(alert.rule = rule.id(), %error, "alerts: the state write failed");
                }
                Err(_) => {
                    // The writer is busy retrying a failed commit: the change waits in its
                    // queue and is written, in order, when it can be. The engine goes on
                    // (other rules, db_write itself) as if it were written.
                    tracing::warn!(alert.rule = rule.id(), "alerts: the database is not writable now; the rule's state is written when it is");
                    self.states.insert(rule, next);
                    tokio::spawn(async move {
                        if let Ok(Err(error)) = write.await {
                            tracing::warn!(alert.rule = rule.id(), %error, "alerts: cannot record a rule's state");
                        }
                    });
                }
            }
        }
        let snapshot: Vec<(Rule, RuleStatus)> = Rule::RULES
            .iter()
            .map(|r| (*r, self.states.get(r).cloned().unwrap_or_default()))
            .collect();
        self.published.send_if_modified(|old| {
            let new = Some(snapshot);
            let changed = *old != new;
            *old = new;
            changed
        });
    }

    /// What the rules look at now.
    async fn observe(&mut self, now: UnixNanos) -> Observation {
        let status = self.status.borrow_and_update().clone();
        let docker = status.kind == "docker";
        let connected = matches!(status.connection, Connection::Connected { .. });
        let memo = &mut self.memo;
        if matches!(status.connection, Connection::Unreachable { .. }) {
            memo.unreachable_since_ns.get_or_insert(now);
        } else {
            memo.unreachable_since_ns = None;
        }
        let running = if docker {
            connected && matches!(status.container, ContainerState::Running { .. })
        } else {
            connected
        };
        if running {
            memo.running_since_ns.get_or_insert(now);
            memo.down_since_ns = None;
        } else {
            memo.running_since_ns = None;
            if connected
                && matches!(
                    status.container,
                    ContainerState::Stopped { .. }
                        | ContainerState::Created { .. }
                        | ContainerState::Missing { .. }
                )
            {
                memo.down_since_ns.get_or_insert(now);
            }
        }
        let window = |d: Duration| now.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(0));
        let rules = self.shared.rules();
        let restart_since = window(rules.get(Rule::RestartLoop).window);
        let failure_since = window(rules.get(Rule::FailureRate).window);
        let figures = self
            .alerts
            .store()
            .call(move |s| s.alert_figures(now, restart_since, failure_since))
            .await;
        let figures = match figures {
            Ok(f) => {
                self.figures_failed = false;
                Some(f)
            }
            Err(error) => {
                if !self.figures_failed {
                    tracing::warn!(%error, "alerts: cannot read the store's figures");
                }
                self.figures_failed = true;
                None
            }
        };
        let write_failing = match self.alerts.store().write_health() {
            WriteHealth::Ok => None,
            WriteHealth::Failing { error, since } => Some((unix_ns(since), error)),
        };
        let last_line_ns = match (
            self.memo.last_line_ns,
            figures.as_ref().and_then(|f| f.last_entry_ns),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Observation {
            source_kind: status.kind,
            federation_enabled: figures
                .as_ref()
                .and_then(|f| f.federation_enabled)
                .unwrap_or(self.config.federation_enabled),
            connection: status.connection,
            container: status.container,
            unreachable_since_ns: self.memo.unreachable_since_ns,
            running_since_ns: self.memo.running_since_ns,
            down_since_ns: self.memo.down_since_ns,
            last_line_ns,
            write_failing,
            figures,
            started_ns: self.started_ns,
        }
    }
}

fn unix_ns(t: SystemTime) -> UnixNanos {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Whether any rule fires in `states` (`None`: not known yet).
pub fn any_firing(states: &RuleStates) -> Option<bool> {
    states
        .as_ref()
        .map(|s| s.iter().any(|(_, st)| st.state == RuleState::Firing))
}

/// Calls the heartbeat URL every `every` while no rule fires, the failure URL (if set)
/// while one does; nothing before the engine has read its states.
async fn run_heartbeat(
    alerts: Alerts,
    heartbeat: Heartbeat,
    states: watch::Receiver<RuleStates>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(heartbeat.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let url = match any_firing(&states.borrow()) {
            None => continue,
            Some(false) => Some(&heartbeat.url),
            Some(true) => heartbeat.fail_url.as_ref(),
        };
        let Some(url) = url else { continue };
        let result = tokio::select! {
            r = alerts.sender().ping(url.expose_secret()) => r,
            () = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!("alerts: heartbeat answered again");
                }
                failing = false;
            }
            Err(error) => {
                // The URL is a secret: only the error is logged.
                if !failing {
                    tracing::warn!(%error, "alerts: heartbeat call failed; trying again at the next beat");
                }
                failing = true;
            }
        }
    }
}

/// Sleeps until the clock reads `at_ns` (at once when that has passed). With a test
/// clock that does not move by itself, the tick still evaluates.
async fn sleep_until_ns(clock: &Clock, at_ns: UnixNanos) {
    let wait = at_ns.saturating_sub(clock.now_ns());
    // A millisecond late rather than a few microseconds early: the rule must be due.
    let wait = Duration::from_nanos(wait.max(0).unsigned_abs()) + Duration::from_millis(1);
    tokio::time::sleep(wait).await;
}
