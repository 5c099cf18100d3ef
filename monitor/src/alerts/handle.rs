//! The alerts as the monitor runs them: [`AlertService::start`] starts the channels'
//! delivery tasks and the rules engine with the rules' settings in effect (the
//! configuration, with the operator's stored changes winning), and [`AlertsHandle`] is
//! the control the HTTP API, the pages and /metrics use: the rules with their states,
//! the channels (never their addresses or secrets) with their delivery results, the
//! incident history, a rule's settings change, a channel's test message, and channels
//! defined, changed and deleted by the operator.
//!
//! Channels come from the configuration (`ALERT_*`, each named after its kind) and from
//! the database (defined or changed in the dashboard or the API). A stored channel wins
//! over the configuration's of the same name, also after a restart; deleting a configured
//! channel stores that it was deleted. Secrets are write-only: nothing here returns a
//! channel's URL, token, secret or addresses, only which of its settings are set.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truebit_clock::Clock;

use super::config::{AlertConfig, ChannelError, ChannelSpec};
use super::engine::{Engine, EngineConfig, RuleStates, Shared};
use super::rules::{RuleConfig, RuleSet, RuleState, RuleStatus};
use super::{AlertError, Alerts, Channel, Incident, Rule};
use crate::model::UnixNanos;
use crate::source::SourceStatus;
use crate::store::alerts::ChannelRow;
use crate::store::{Store, StoreError};

/// Longest duration a rule takes (7 days), in seconds.
const MAX_SECONDS: u64 = 7 * 86_400;

/// The running alerts.
#[derive(Debug)]
pub struct AlertService {
    alerts: Alerts,
    engine: Engine,
    handle: AlertsHandle,
}

/// What the service needs besides the store and the alert configuration.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// PUBLIC_URL, linked from every message.
    pub dashboard_url: Option<String>,
    /// Federation is on in the configuration.
    pub federation_enabled: bool,
    pub clock: Clock,
    /// How often the rules are evaluated without another reason.
    pub tick: Duration,
}

impl AlertService {
    /// Reads the operator's stored rule settings, then starts the channels and the
    /// engine on the current runtime; they stop when `shutdown` is cancelled.
    pub async fn start(
        store: Store,
        config: &AlertConfig,
        status: watch::Receiver<SourceStatus>,
        options: ServiceOptions,
        shutdown: CancellationToken,
    ) -> Result<AlertService, AlertError> {
        let stored = store.call(Store::alert_rule_settings).await?;
        let defined = channels_in_effect(&store, config).await?;
        let sources = defined
            .iter()
            .map(|d| (d.channel.name.clone(), (d.spec.clone(), d.source)))
            .collect();
        let config = &AlertConfig {
            channels: defined.into_iter().map(|d| d.channel).collect(),
            ..config.clone()
        };
        let mut rules = config.rules.clone();
        let changed: HashSet<Rule> = stored.iter().map(|(r, _)| *r).collect();
        for (rule, settings) in stored {
            rules.set(rule, settings);
        }
        let alerts = Alerts::start(store, config, options.dashboard_url, shutdown.clone())
            .map_err(|error| AlertError::Send {
                channel: "(all)".into(),
                error,
            })?;
        let engine = Engine::start(
            alerts.clone(),
            status,
            EngineConfig {
                rules,
                federation_enabled: options.federation_enabled,
                heartbeat: config.heartbeat.clone(),
                tick: options.tick,
            },
            options.clock.clone(),
            shutdown,
        );
        let handle = AlertsHandle {
            alerts: alerts.clone(),
            shared: engine.shared(),
            states: engine.states(),
            configured: Arc::new(config.rules.clone()),
            changed: Arc::new(Mutex::new(changed)),
            defined: Arc::new(tokio::sync::Mutex::new(sources)),
            heartbeat: config.heartbeat.is_some(),
            clock: options.clock,
        };
        Ok(AlertService {
            alerts,
            engine,
            handle,
        })
    }

    pub fn handle(&self) -> AlertsHandle {
        self.handle.clone()
    }

    /// Waits until the engine and the channels' tasks have stopped (after the shutdown
    /// signal).
    pub async fn stopped(self) {
        self.engine.stopped().await;
        self.alerts.stopped().await;
    }
}

/// The control of the running alerts; cheap to clone.
#[derive(Clone, Debug)]
pub struct AlertsHandle {
    alerts: Alerts,
    shared: Arc<Shared>,
    states: watch::Receiver<RuleStates>,
    /// The rules' settings from the configuration.
    configured: Arc<RuleSet>,
    /// Rules whose settings the operator changed (stored; they win).
    changed: Arc<Mutex<HashSet<Rule>>>,
    /// Each channel's definition and where it comes from, by name; also serializes
    /// channel changes (store, then the running channels).
    defined: Arc<tokio::sync::Mutex<HashMap<String, (ChannelSpec, Source)>>>,
    heartbeat: bool,
    clock: Clock,
}

/// A rule with its settings and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleView {
    pub id: &'static str,
    pub title: &'static str,
    pub enabled: bool,
    pub after_seconds: u64,
    pub count: u32,
    pub window_seconds: u64,
    pub percent: u8,
    /// The settings this rule uses (besides `enabled`).
    pub settings: &'static [&'static str],
    /// `config` (the configuration's) or `database` (changed by the operator).
    pub source: &'static str,
    pub state: RuleState,
    pub since_ns: Option<UnixNanos>,
    pub fired_ns: Option<UnixNanos>,
    pub details: String,
}

/// Where a channel's definition comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `ALERT_*` settings (file, environment).
    Config,
    /// Defined or changed in the dashboard or the API (wins over the configuration).
    Database,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Database => "database",
        }
    }
}

/// A channel in effect: built, with the definition it was built from.
#[derive(Clone, Debug)]
pub struct Defined {
    pub channel: Channel,
    pub spec: ChannelSpec,
    pub source: Source,
}

/// The channels in effect: the configuration's, with the operator's stored channels
/// (and deletions) winning by name. A stored channel that no longer validates is left
/// out with a warning that names it (its row is kept, so it can be corrected).
pub async fn channels_in_effect(
    store: &Store,
    config: &AlertConfig,
) -> Result<Vec<Defined>, StoreError> {
    let rows = store.call(Store::alert_channel_rows).await?;
    let mut defined: Vec<Defined> = config
        .channels
        .iter()
        .map(|channel| Defined {
            channel: channel.clone(),
            spec: config
                .specs
                .iter()
                .find(|s| s.name == channel.name)
                .cloned()
                .unwrap_or_else(|| ChannelSpec {
                    name: channel.name.clone(),
                    kind: channel.kind().as_str().to_owned(),
                    ..ChannelSpec::default()
                }),
            source: Source::Config,
        })
        .collect();
    for row in rows {
        defined.retain(|d| d.channel.name != row.name);
        if row.deleted {
            continue;
        }
        let spec = spec_of(row);
        match spec.validate() {
            Ok(channel) => defined.push(Defined {
                channel,
                spec,
                source: Source::Database,
            }),
            Err(error) => {
                tracing::warn!(%error, "alerts: a channel stored in the database is not valid; not used until it is changed")
            }
        }
    }
    Ok(defined)
}

/// The definition a stored row holds.
fn spec_of(row: ChannelRow) -> ChannelSpec {
    ChannelSpec {
        name: row.name,
        kind: row.kind,
        url: row.url,
        secret: row.secret,
        chat_id: row.chat_id,
        to: row.to,
        from: row.from,
    }
}

/// The row that stores `spec` (fields trimmed; empty ones unset).
fn row_of(spec: &ChannelSpec) -> ChannelRow {
    let field = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    ChannelRow {
        name: spec.name.trim().to_owned(),
        kind: spec.kind.trim().to_owned(),
        url: field(&spec.url),
        secret: field(&spec.secret),
        chat_id: field(&spec.chat_id),
        to: field(&spec.to),
        from: field(&spec.from),
        deleted: false,
    }
}

/// A change of a channel's settings: an absent field stays as it is, an empty one is
/// unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelPatch {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub chat_id: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
}

impl std::fmt::Debug for ChannelPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: only which fields are given.
        f.debug_struct("ChannelPatch")
            .field("kind", &self.kind)
            .field("url", &self.url.is_some())
            .field("secret", &self.secret.is_some())
            .field("chat_id", &self.chat_id.is_some())
            .field("to", &self.to.is_some())
            .field("from", &self.from.is_some())
            .finish()
    }
}

impl ChannelPatch {
    fn apply(self, spec: &ChannelSpec) -> ChannelSpec {
        let pick = |new: Option<String>, old: &Option<String>| new.or_else(|| old.clone());
        ChannelSpec {
            name: spec.name.clone(),
            kind: self.kind.unwrap_or_else(|| spec.kind.clone()),
            url: pick(self.url, &spec.url),
            secret: pick(self.secret, &spec.secret),
            chat_id: pick(self.chat_id, &spec.chat_id),
            to: pick(self.to, &spec.to),
            from: pick(self.from, &spec.from),
        }
    }
}

/// Why a channel change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChannelChangeError {
    #[error("no alert channel {0:?}")]
    Unknown(String),
    #[error("an alert channel {0:?} exists already; change it instead")]
    Exists(String),
    #[error(transparent)]
    Invalid(#[from] ChannelError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A channel (its kind and name: never its address or secret) and its delivery results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelView {
    pub name: String,
    pub kind: &'static str,
    /// `config` (ALERT_* settings) or `database` (defined or changed here).
    pub source: &'static str,
    /// Which of `url`, `secret`, `chat_id`, `to`, `from` have a value (never the values).
    pub set: Vec<&'static str>,
    pub queued: u64,
    pub messages_total: u64,
    pub delivered_total: u64,
    pub failures_total: u64,
    pub dropped_total: u64,
    pub last_success_ns: Option<UnixNanos>,
    pub last_failure_ns: Option<UnixNanos>,
    pub last_error: Option<String>,
}

/// `GET /api/alerts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertsView {
    pub rules: Vec<RuleView>,
    pub channels: Vec<ChannelView>,
    /// Rules firing now.
    pub firing: u32,
    /// Whether the engine has read the stored states (false right after a start).
    pub evaluated: bool,
    pub reminder_seconds: Option<u64>,
    /// Whether HEARTBEAT_URL is set.
    pub heartbeat: bool,
}

/// The answer of a channel's test message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub channel: String,
    pub kind: &'static str,
    pub sent: bool,
    /// Why the channel did not take it (never an address or a secret).
    pub error: Option<String>,
}

/// A change of one rule's settings; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleUpdate {
    pub enabled: Option<bool>,
    pub after_seconds: Option<u64>,
    pub count: Option<u64>,
    pub window_seconds: Option<u64>,
    pub percent: Option<u64>,
}

/// Why a rule update was refused, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("no alert rule {0:?}")]
    UnknownRule(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The settings `rule` uses besides `enabled`.
pub fn rule_settings(rule: Rule) -> &'static [&'static str] {
    match rule {
        Rule::ContainerDown
        | Rule::Silence
        | Rule::NoTasks
        | Rule::DockerUnreachable
        | Rule::DbWrite => &["after_seconds"],
        Rule::RestartLoop => &["count", "window_seconds"],
        Rule::FailureRate => &["percent", "count", "window_seconds"],
        Rule::Federation => &["count"],
        Rule::Test => &[],
    }
}

/// The range of `count` for `rule`.
fn count_range(rule: Rule) -> (u64, u64) {
    match rule {
        Rule::RestartLoop => (2, 1000),
        Rule::FailureRate => (1, 100_000),
        _ => (1, 1000),
    }
}

/// `config` with `update` applied, or the first field that is wrong.
pub fn apply(
    rule: Rule,
    config: RuleConfig,
    update: RuleUpdate,
) -> Result<RuleConfig, UpdateError> {
    let uses = rule_settings(rule);
    let check = |field: &'static str, value: Option<u64>, min: u64, max: u64| {
        let Some(v) = value else { return Ok(None) };
        if !uses.contains(&field) {
            return Err(UpdateError::Invalid {
                field,
                message: format!(
                    "{} takes enabled{}{}",
                    rule.id(),
                    if uses.is_empty() { "" } else { ", " },
                    uses.join(", ")
                ),
            });
        }
        if (min..=max).contains(&v) {
            Ok(Some(v))
        } else {
            Err(UpdateError::Invalid {
                field,
                message: format!("{v} is not from {min} to {max}"),
            })
        }
    };
    let (cmin, cmax) = count_range(rule);
    let after = check("after_seconds", update.after_seconds, 1, MAX_SECONDS)?;
    let count = check("count", update.count, cmin, cmax)?;
    let window = check("window_seconds", update.window_seconds, 1, MAX_SECONDS)?;
    let percent = check("percent", update.percent, 1, 100)?;
    Ok(RuleConfig {
        enabled: update.enabled.unwrap_or(config.enabled),
        after: after.map_or(config.after, Duration::from_secs),
        count: count.map_or(config.count, |c| u32::try_from(c).unwrap_or(u32::MAX)),
        window: window.map_or(config.window, Duration::from_secs),
        percent: percent.map_or(config.percent, |p| u8::try_from(p).unwrap_or(100)),
    })
}

impl AlertsHandle {
    /// The rules with their settings and states (as the engine last wrote them).
    pub fn rules(&self) -> Vec<RuleView> {
        let rules = self.shared.rules();
        let states = self.states.borrow().clone().unwrap_or_default();
        let changed = self
            .changed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Rule::RULES
            .iter()
            .map(|&rule| {
                let c = rules.get(rule);
                let status = states
                    .iter()
                    .find(|(r, _)| *r == rule)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(RuleStatus::default);
                RuleView {
                    id: rule.id(),
                    title: rule.title(),
                    enabled: c.enabled,
                    after_seconds: c.after.as_secs(),
                    count: c.count,
                    window_seconds: c.window.as_secs(),
                    percent: c.percent,
                    settings: rule_settings(rule),
                    source: if changed.contains(&rule) {
                        "database"
                    } else {
                        "config"
                    },
                    state: status.state,
                    since_ns: status.since_ns,
                    fired_ns: status.fired_ns,
                    details: status.details,
                }
            })
            .collect()
    }

    /// Whether the engine has read the stored states.
    pub fn evaluated(&self) -> bool {
        self.states.borrow().is_some()
    }

    /// The channels in effect with their delivery results.
    pub async fn channels(&self) -> Result<Vec<ChannelView>, StoreError> {
        let stats = self.alerts.stats().await?;
        let defined = self.defined.lock().await;
        Ok(stats
            .into_iter()
            .map(|(c, s)| ChannelView {
                kind: c.kind().as_str(),
                source: defined
                    .get(&c.name)
                    .map_or(Source::Config, |(_, source)| *source)
                    .as_str(),
                set: c.fields_set(),
                name: c.name,
                queued: s.queued,
                messages_total: s.messages_total,
                delivered_total: s.delivered_total,
                failures_total: s.failures_total,
                dropped_total: s.dropped_total,
                last_success_ns: s.last_success_ns,
                last_failure_ns: s.last_failure_ns,
                last_error: s.last_error,
            })
            .collect())
    }

    /// Everything `GET /api/alerts` shows.
    pub async fn overview(&self) -> Result<AlertsView, StoreError> {
        let rules = self.rules();
        let firing = rules
            .iter()
            .filter(|r| r.state == RuleState::Firing)
            .count();
        Ok(AlertsView {
            firing: u32::try_from(firing).unwrap_or(u32::MAX),
            rules,
            channels: self.channels().await?,
            evaluated: self.evaluated(),
            reminder_seconds: self.shared.rules().reminder.map(|d| d.as_secs()),
            heartbeat: self.heartbeat,
        })
    }

    /// The newest incidents first, at most `limit`.
    pub async fn incidents(&self, limit: u32) -> Result<Vec<Incident>, StoreError> {
        self.alerts.incidents(limit).await
    }

    /// Changes `rule`'s settings: stored (they win over the configuration from now on,
    /// also after a restart) and in effect at once.
    pub async fn update_rule(&self, id: &str, update: RuleUpdate) -> Result<RuleView, UpdateError> {
        let rule = Rule::from_id(id)
            .filter(|r| *r != Rule::Test)
            .ok_or_else(|| UpdateError::UnknownRule(id.chars().take(64).collect()))?;
        let config = apply(rule, self.shared.rules().get(rule), update)?;
        let now = self.clock.now_ns();
        self.alerts
            .store()
            .call(move |s| s.alert_set_rule(rule, config, now))
            .await?;
        self.changed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rule);
        self.shared.set_rule(rule, config);
        tracing::info!(
            alert.rule = rule.id(),
            enabled = config.enabled,
            "alert rule settings changed"
        );
        self.rules()
            .into_iter()
            .find(|r| r.id == rule.id())
            .ok_or_else(|| UpdateError::UnknownRule(id.to_owned()))
    }

    /// One channel in effect with its delivery results.
    async fn channel(&self, name: &str) -> Result<ChannelView, ChannelChangeError> {
        self.channels()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ChannelChangeError::Unknown(name.to_owned()))
    }

    /// Defines a new channel: validated, stored (it wins over the configuration from now
    /// on) and in effect at once. A name in use is refused.
    pub async fn create_channel(
        &self,
        spec: ChannelSpec,
    ) -> Result<ChannelView, ChannelChangeError> {
        self.put(spec_of(row_of(&spec)), true).await
    }

    /// Changes a channel's settings (absent fields stay, empty ones are unset): stored
    /// and in effect at once; what was queued for it goes out through the new settings.
    pub async fn update_channel(
        &self,
        name: &str,
        patch: ChannelPatch,
    ) -> Result<ChannelView, ChannelChangeError> {
        let current = {
            let defined = self.defined.lock().await;
            defined
                .get(name)
                .map(|(spec, _)| spec.clone())
                .ok_or_else(|| ChannelChangeError::Unknown(name.chars().take(64).collect()))?
        };
        self.put(spec_of(row_of(&patch.apply(&current))), false)
            .await
    }

    async fn put(&self, spec: ChannelSpec, new: bool) -> Result<ChannelView, ChannelChangeError> {
        let mut defined = self.defined.lock().await;
        if new && defined.contains_key(spec.name.as_str()) {
            return Err(ChannelChangeError::Exists(spec.name));
        }
        let channel = spec.validate()?;
        let row = row_of(&spec);
        let now = self.clock.now_ns();
        self.alerts
            .store()
            .call(move |s| s.alert_put_channel(row, now))
            .await?;
        let name = channel.name.clone();
        let kind = channel.kind().as_str();
        self.alerts.put_channel(channel);
        defined.insert(name.clone(), (spec, Source::Database));
        drop(defined);
        tracing::info!(alert.channel = %name, alert.kind = kind, "alert channel stored");
        self.channel(&name).await
    }

    /// Deletes a channel: what was queued for it and its delivery results go with it; a
    /// channel of the configuration stays deleted (stored) until it is defined again.
    pub async fn delete_channel(&self, name: &str) -> Result<ChannelView, ChannelChangeError> {
        let last = self.channel(name).await?;
        let mut defined = self.defined.lock().await;
        let Some((spec, _)) = defined.get(name) else {
            return Err(ChannelChangeError::Unknown(name.chars().take(64).collect()));
        };
        let row = ChannelRow {
            name: name.to_owned(),
            kind: spec.kind.clone(),
            deleted: true,
            ..ChannelRow::default()
        };
        let now = self.clock.now_ns();
        self.alerts
            .store()
            .call(move |s| s.alert_put_channel(row, now))
            .await?;
        self.alerts.remove_channel(name);
        defined.remove(name);
        tracing::info!(alert.channel = %name, "alert channel deleted");
        Ok(last)
    }

    /// Sends a test message to the channel called `name` now and says whether it took
    /// it; an unknown name is an error.
    pub async fn test_channel(&self, name: &str) -> Result<TestResult, AlertError> {
        let kind = super::outbox::find(self.alerts.channels().iter(), name)?
            .kind()
            .as_str();
        let (sent, error) = match self.alerts.send_test(name).await {
            Ok(()) => (true, None),
            Err(AlertError::Send { error, .. }) => (false, Some(error.to_string())),
            Err(other) => return Err(other),
        };
        Ok(TestResult {
            channel: name.to_owned(),
            kind,
            sent,
            error,
        })
    }

    /// Whether each rule fires now, for /metrics.
    pub fn firing(&self) -> Vec<(Rule, bool)> {
        self.rules()
            .iter()
            .filter_map(|r| Rule::from_id(r.id).map(|rule| (rule, r.state == RuleState::Firing)))
            .collect()
    }

    /// The configuration's settings of `rule` (what a stored change replaced).
    pub fn configured(&self, rule: Rule) -> RuleConfig {
        self.configured.get(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_changes_only_the_fields_the_rule_uses_within_their_range() {
        let base = RuleConfig::default_for(Rule::FailureRate);
        let changed = apply(
            Rule::FailureRate,
            base,
            RuleUpdate {
                percent: Some(30),
                count: Some(20),
                ..RuleUpdate::default()
            },
        )
        .expect("valid");
        assert_eq!((changed.percent, changed.count), (30, 20));
        assert_eq!(changed.window, base.window);
        let refused = |rule: Rule, update: RuleUpdate| {
            apply(rule, RuleConfig::default_for(rule), update)
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            refused(
                Rule::Silence,
                RuleUpdate {
                    percent: Some(5),
                    ..RuleUpdate::default()
                }
            )
            .as_deref(),
            Some("percent: silence takes enabled, after_seconds")
        );
        assert_eq!(
            refused(
                Rule::RestartLoop,
                RuleUpdate {
                    count: Some(1),
                    ..RuleUpdate::default()
                }
            )
            .as_deref(),
            Some("count: 1 is not from 2 to 1000")
        );
        assert_eq!(
            refused(
                Rule::ContainerDown,
                RuleUpdate {
                    after_seconds: Some(0),
                    ..RuleUpdate::default()
                }
            )
            .as_deref(),
            Some("after_seconds: 0 is not from 1 to 604800")
        );
    }
}
