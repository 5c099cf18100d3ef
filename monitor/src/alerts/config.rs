//! Alert settings: the raw layer ([`AlertSettings`], flattened into
//! [`crate::config::Settings`]: `ALERT_*` in the environment, `[alert]` in the file) and
//! the validated [`AlertConfig`].
//!
//! A channel is defined by a [`ChannelSpec`] (name, kind and the kind's fields), which
//! the settings build for each kind that has an `ALERT_*` variable set, and which the
//! API will build for channels created in the dashboard. Validation names the setting of
//! anything wrong in one line, and never repeats a value that may hold a secret (webhook
//! URLs, tokens, the SMTP URL).

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use lettre::message::Mailbox;
use reqwest::Url;
use serde::Deserialize;

use super::channel::{Channel, Kind, Smtp, SmtpSecurity, Target};
use super::engine::Heartbeat;
use super::rules::{RuleConfig, RuleSet};
use super::Rule;
use crate::http::config::parse_duration;
use crate::model::alert::human;
use crate::setting::InvalidSetting;
use secrecy::SecretString;

/// Telegram's Bot API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// Raw alert settings (every field optional).
#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AlertSettings {
    /// Alert webhook: a JSON POST to this URL for every alert (docs/ALERTS.md).
    #[arg(
        long = "alert-webhook-url",
        env = "ALERT_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub webhook_url: Option<String>,

    /// Secret for the webhook's X-Signature (HMAC-SHA256), at least 16 characters.
    #[arg(
        long = "alert-webhook-secret",
        env = "ALERT_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<String>,

    /// Telegram bot token (from @BotFather), with ALERT_TELEGRAM_CHAT_ID.
    #[arg(
        long = "alert-telegram-bot-token",
        env = "ALERT_TELEGRAM_BOT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub telegram_bot_token: Option<String>,

    /// Telegram chat to write to: a numeric chat id or @channelname.
    #[arg(
        long = "alert-telegram-chat-id",
        env = "ALERT_TELEGRAM_CHAT_ID",
        value_name = "ID",
        global = true
    )]
    pub telegram_chat_id: Option<String>,

    /// Base URL of the Telegram Bot API [default: https://api.telegram.org].
    #[arg(
        long = "alert-telegram-api-url",
        env = "ALERT_TELEGRAM_API_URL",
        value_name = "URL",
        global = true
    )]
    pub telegram_api_url: Option<String>,

    /// Discord webhook URL (channel settings, Integrations, Webhooks).
    #[arg(
        long = "alert-discord-webhook-url",
        env = "ALERT_DISCORD_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub discord_webhook_url: Option<String>,

    /// Slack incoming-webhook URL (or a Slack-compatible one: Mattermost, Rocket.Chat).
    #[arg(
        long = "alert-slack-webhook-url",
        env = "ALERT_SLACK_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub slack_webhook_url: Option<String>,

    /// ntfy topic URL, e.g. https://ntfy.sh/my-node-alerts or a self-hosted server's.
    #[arg(
        long = "alert-ntfy-url",
        env = "ALERT_NTFY_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub ntfy_url: Option<String>,

    /// ntfy access token, for a protected topic.
    #[arg(
        long = "alert-ntfy-token",
        env = "ALERT_NTFY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub ntfy_token: Option<String>,

    /// SMTP server for alert e-mail: smtps://user:pass@host[:465] (TLS) or
    /// smtp://user:pass@host[:587] (STARTTLS); with ALERT_EMAIL_TO.
    #[arg(
        long = "alert-smtp-url",
        env = "ALERT_SMTP_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub smtp_url: Option<String>,

    /// Recipients of alert e-mail, comma separated.
    #[arg(
        long = "alert-email-to",
        env = "ALERT_EMAIL_TO",
        value_name = "ADDRESSES",
        global = true
    )]
    pub email_to: Option<String>,

    /// Sender of alert e-mail; unset: truebit-monitor@ and the SMTP server's host name.
    #[arg(
        long = "alert-email-from",
        env = "ALERT_EMAIL_FROM",
        value_name = "ADDRESS",
        global = true
    )]
    pub email_from: Option<String>,

    /// One delivery attempt is given up after this long, e.g. 10s [default: 10s].
    #[arg(
        long = "alert-timeout",
        env = "ALERT_TIMEOUT",
        value_name = "DURATION",
        global = true
    )]
    pub timeout: Option<String>,

    /// Longest wait between two attempts at a failing channel, e.g. 5m [default: 5m].
    #[arg(
        long = "alert-retry-max",
        env = "ALERT_RETRY_MAX",
        value_name = "DURATION",
        global = true
    )]
    pub retry_max: Option<String>,

    /// A channel with more notifications queued than this gets one summary [default: 20].
    #[arg(
        long = "alert-summary-after",
        env = "ALERT_SUMMARY_AFTER",
        value_name = "N",
        global = true
    )]
    pub summary_after: Option<u32>,

    /// Dead-man heartbeat push URL (healthchecks.io, Uptime Kuma push, …), called every
    /// HEARTBEAT_INTERVAL while no rule fires (docs/ALERTS.md).
    #[arg(
        long = "heartbeat-url",
        env = "HEARTBEAT_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub heartbeat_url: Option<String>,

    /// Rule container_down on or off [default: true].
    #[arg(
        long = "alert-container-down-enabled",
        env = "ALERT_CONTAINER_DOWN_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub container_down_enabled: Option<bool>,

    /// container_down fires after the container is down this long [default: 60s].
    #[arg(
        long = "alert-container-down-after",
        env = "ALERT_CONTAINER_DOWN_AFTER",
        value_name = "DURATION",
        global = true
    )]
    pub container_down_after: Option<String>,

    /// Rule restart_loop on or off [default: true].
    #[arg(
        long = "alert-restart-loop-enabled",
        env = "ALERT_RESTART_LOOP_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub restart_loop_enabled: Option<bool>,

    /// restart_loop fires at this many container starts within its window [default: 3].
    #[arg(
        long = "alert-restart-loop-starts",
        env = "ALERT_RESTART_LOOP_STARTS",
        value_name = "N",
        global = true
    )]
    pub restart_loop_starts: Option<u32>,

    /// The window restart_loop counts starts over [default: 10m].
    #[arg(
        long = "alert-restart-loop-window",
        env = "ALERT_RESTART_LOOP_WINDOW",
        value_name = "DURATION",
        global = true
    )]
    pub restart_loop_window: Option<String>,

    /// Rule silence on or off [default: true].
    #[arg(
        long = "alert-silence-enabled",
        env = "ALERT_SILENCE_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub silence_enabled: Option<bool>,

    /// silence fires after no log line for this long [default: 10m].
    #[arg(
        long = "alert-silence-after",
        env = "ALERT_SILENCE_AFTER",
        value_name = "DURATION",
        global = true
    )]
    pub silence_after: Option<String>,

    /// Rule no_tasks on or off [default: false].
    #[arg(
        long = "alert-no-tasks-enabled",
        env = "ALERT_NO_TASKS_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub no_tasks_enabled: Option<bool>,

    /// no_tasks fires after no task for this long [default: 6h].
    #[arg(
        long = "alert-no-tasks-after",
        env = "ALERT_NO_TASKS_AFTER",
        value_name = "DURATION",
        global = true
    )]
    pub no_tasks_after: Option<String>,

    /// Rule failure_rate on or off [default: true].
    #[arg(
        long = "alert-failure-rate-enabled",
        env = "ALERT_FAILURE_RATE_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub failure_rate_enabled: Option<bool>,

    /// failure_rate fires when at least this share of finished tasks failed, in percent [default: 50].
    #[arg(
        long = "alert-failure-rate",
        env = "ALERT_FAILURE_RATE",
        value_name = "PERCENT",
        global = true
    )]
    pub failure_rate: Option<u32>,

    /// failure_rate needs at least this many finished tasks in its window [default: 10].
    #[arg(
        long = "alert-failure-rate-min-tasks",
        env = "ALERT_FAILURE_RATE_MIN_TASKS",
        value_name = "N",
        global = true
    )]
    pub failure_rate_min_tasks: Option<u32>,

    /// The window failure_rate counts finished tasks over [default: 1h].
    #[arg(
        long = "alert-failure-rate-window",
        env = "ALERT_FAILURE_RATE_WINDOW",
        value_name = "DURATION",
        global = true
    )]
    pub failure_rate_window: Option<String>,

    /// Rule docker_unreachable on or off [default: true].
    #[arg(
        long = "alert-docker-unreachable-enabled",
        env = "ALERT_DOCKER_UNREACHABLE_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub docker_unreachable_enabled: Option<bool>,

    /// docker_unreachable fires after the Docker API is unreachable this long [default: 2m].
    #[arg(
        long = "alert-docker-unreachable-after",
        env = "ALERT_DOCKER_UNREACHABLE_AFTER",
        value_name = "DURATION",
        global = true
    )]
    pub docker_unreachable_after: Option<String>,

    /// Rule db_write on or off [default: true].
    #[arg(
        long = "alert-db-write-enabled",
        env = "ALERT_DB_WRITE_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub db_write_enabled: Option<bool>,

    /// db_write fires after database writes fail this long [default: 1m].
    #[arg(
        long = "alert-db-write-after",
        env = "ALERT_DB_WRITE_AFTER",
        value_name = "DURATION",
        global = true
    )]
    pub db_write_after: Option<String>,

    /// Rule federation on or off; evaluated only while federation is on [default: true].
    #[arg(
        long = "alert-federation-enabled",
        env = "ALERT_FEDERATION_ENABLED",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub federation_enabled: Option<bool>,

    /// federation fires when this many reports are due and not delivered [default: 3].
    #[arg(
        long = "alert-federation-missed",
        env = "ALERT_FEDERATION_MISSED",
        value_name = "N",
        global = true
    )]
    pub federation_missed: Option<u32>,

    /// While a rule fires, repeat its notification this often (e.g. 6h); never when unset.
    #[arg(
        long = "alert-reminder",
        env = "ALERT_REMINDER",
        value_name = "DURATION",
        global = true
    )]
    pub reminder: Option<String>,

    /// Called instead of HEARTBEAT_URL while a rule fires (healthchecks.io: the /fail URL).
    #[arg(
        long = "heartbeat-fail-url",
        env = "HEARTBEAT_FAIL_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub heartbeat_fail_url: Option<String>,

    /// How often the heartbeat is called [default: 60s].
    #[arg(
        long = "heartbeat-interval",
        env = "HEARTBEAT_INTERVAL",
        value_name = "DURATION",
        global = true
    )]
    pub heartbeat_interval: Option<String>,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("AlertSettings")
            .field("webhook_url", &secret(&self.webhook_url))
            .field("webhook_secret", &secret(&self.webhook_secret))
            .field("telegram_bot_token", &secret(&self.telegram_bot_token))
            .field("telegram_chat_id", &self.telegram_chat_id)
            .field("telegram_api_url", &self.telegram_api_url)
            .field("discord_webhook_url", &secret(&self.discord_webhook_url))
            .field("slack_webhook_url", &secret(&self.slack_webhook_url))
            .field("ntfy_url", &secret(&self.ntfy_url))
            .field("ntfy_token", &secret(&self.ntfy_token))
            .field("smtp_url", &secret(&self.smtp_url))
            .field("email_to", &self.email_to)
            .field("email_from", &self.email_from)
            .field("timeout", &self.timeout)
            .field("retry_max", &self.retry_max)
            .field("summary_after", &self.summary_after)
            .field("heartbeat_url", &secret(&self.heartbeat_url))
            .field("container_down_enabled", &self.container_down_enabled)
            .field("container_down_after", &self.container_down_after)
            .field("restart_loop_enabled", &self.restart_loop_enabled)
            .field("restart_loop_starts", &self.restart_loop_starts)
            .field("restart_loop_window", &self.restart_loop_window)
            .field("silence_enabled", &self.silence_enabled)
            .field("silence_after", &self.silence_after)
            .field("no_tasks_enabled", &self.no_tasks_enabled)
            .field("no_tasks_after", &self.no_tasks_after)
            .field("failure_rate_enabled", &self.failure_rate_enabled)
            .field("failure_rate", &self.failure_rate)
            .field("failure_rate_min_tasks", &self.failure_rate_min_tasks)
            .field("failure_rate_window", &self.failure_rate_window)
            .field(
                "docker_unreachable_enabled",
                &self.docker_unreachable_enabled,
            )
            .field("docker_unreachable_after", &self.docker_unreachable_after)
            .field("db_write_enabled", &self.db_write_enabled)
            .field("db_write_after", &self.db_write_after)
            .field("federation_enabled", &self.federation_enabled)
            .field("federation_missed", &self.federation_missed)
            .field("reminder", &self.reminder)
            .field("heartbeat_fail_url", &secret(&self.heartbeat_fail_url))
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

/// How the outbox delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// One attempt is cut after this long.
    pub timeout: Duration,
    /// Wait after a channel's first failure; doubled per failure in a row …
    pub retry_min: Duration,
    /// … up to this.
    pub retry_max: Duration,
    /// Notifications queued within this long of the oldest waiting one go out together.
    pub group_window: Duration,
    /// More queued than this (a channel that was down) go out as one summary.
    pub summary_after: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            timeout: Duration::from_secs(10),
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            group_window: Duration::from_secs(1),
            summary_after: 20,
        }
    }
}

impl Delivery {
    /// The wait after `failures` failed attempts in a row (at least 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .retry_min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.retry_max)
    }
}

/// The validated alert configuration.
#[derive(Clone, Debug, Default)]
pub struct AlertConfig {
    pub channels: Vec<Channel>,
    /// The definitions `channels` were built from (so the dashboard can change one
    /// field of a configured channel and keep the others).
    pub specs: Vec<ChannelSpec>,
    pub delivery: Delivery,
    /// The dead-man heartbeat, when HEARTBEAT_URL is set.
    pub heartbeat: Option<Heartbeat>,
    /// The rules' settings.
    pub rules: RuleSet,
}

/// One channel's definition before validation. Its `Debug` shows the name and kind only
/// (URLs and secrets may carry credentials).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ChannelSpec {
    pub name: String,
    /// `webhook`, `telegram`, `discord`, `slack`, `ntfy` or `email`.
    pub kind: String,
    /// The webhook, Discord, Slack or ntfy topic URL; Telegram's API base (optional);
    /// e-mail's SMTP URL.
    pub url: Option<String>,
    /// The webhook's signing secret, the Telegram bot token, the ntfy access token.
    pub secret: Option<String>,
    /// Telegram's chat.
    pub chat_id: Option<String>,
    /// E-mail recipients, comma separated.
    pub to: Option<String>,
    /// E-mail sender.
    pub from: Option<String>,
}

impl std::fmt::Debug for ChannelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A field of [`ChannelSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Name,
    Kind,
    Url,
    Secret,
    ChatId,
    To,
    From,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Kind => "kind",
            Field::Url => "url",
            Field::Secret => "secret",
            Field::ChatId => "chat_id",
            Field::To => "to",
            Field::From => "from",
        }
    }
}

/// What is wrong with a channel definition, and in which field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("alert channel {channel:?}: invalid {}: {message}", .field.as_str())]
pub struct ChannelError {
    pub channel: String,
    pub field: Field,
    pub message: String,
}

impl ChannelSpec {
    /// Checks every field the kind needs and builds the channel.
    pub fn validate(&self) -> Result<Channel, ChannelError> {
        let fail = |field: Field, message: &str| ChannelError {
            channel: self.name.clone(),
            field,
            message: message.to_owned(),
        };
        let name = self.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(fail(
                Field::Name,
                "must be 1 to 64 letters, digits, _ - or .",
            ));
        }
        let kind = Kind::parse(self.kind.trim()).ok_or_else(|| {
            let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            fail(
                Field::Kind,
                &format!("unknown kind {:?} (one of {})", self.kind, kinds.join(", ")),
            )
        })?;
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let required = |v: &Option<String>, field: Field| {
            given(v).ok_or_else(|| {
                fail(
                    field,
                    &format!("missing: a {} channel needs it", kind.as_str()),
                )
            })
        };
        let http_url = |field: Field, s: &str| -> Result<Url, ChannelError> {
            Url::parse(s)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| fail(field, "not an http:// or https:// URL"))
        };
        let target = match kind {
            Kind::Webhook => {
                let url = http_url(Field::Url, &required(&self.url, Field::Url)?)?;
                let secret = given(&self.secret);
                if secret.as_ref().is_some_and(|s| s.chars().count() < 16) {
                    return Err(fail(Field::Secret, "must be at least 16 characters"));
                }
                Target::Webhook {
                    url,
                    secret: secret.map(SecretString::from),
                }
            }
            Kind::Telegram => {
                let token = required(&self.secret, Field::Secret)?;
                let ok_token = token.split_once(':').is_some_and(|(bot, key)| {
                    !bot.is_empty()
                        && bot.chars().all(|c| c.is_ascii_digit())
                        && !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                });
                if !ok_token {
                    return Err(fail(
                        Field::Secret,
                        "not a bot token like 123456789:AA… (from @BotFather)",
                    ));
                }
                let chat_id = required(&self.chat_id, Field::ChatId)?;
                let numeric = chat_id
                    .strip_prefix('-')
                    .unwrap_or(&chat_id)
                    .chars()
                    .all(|c| c.is_ascii_digit());
                let channel_name = chat_id.strip_prefix('@').is_some_and(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if !((numeric && chat_id != "-") || channel_name) {
                    return Err(fail(
                        Field::ChatId,
                        &format!("{chat_id:?} is not a chat id (a number) or @channelname"),
                    ));
                }
                let api = given(&self.url).unwrap_or_else(|| TELEGRAM_API.to_owned());
                Target::Telegram {
                    api: http_url(Field::Url, &api)?,
                    token: SecretString::from(token),
                    chat_id,
                }
            }
            Kind::Discord => Target::Discord {
                url: http_url(Field::Url, &required(&self.url, Field::Url)?)?,
            },
            Kind::Slack => Target::Slack {
                url: http_url(Field::Url, &required(&self.url, Field::Url)?)?,
            },
            Kind::Ntfy => {
                let url = http_url(Field::Url, &required(&self.url, Field::Url)?)?;
                if url.path().trim_matches('/').is_empty() {
                    return Err(fail(
                        Field::Url,
                        "needs the topic in its path, like https://ntfy.sh/my-node-alerts",
                    ));
                }
                Target::Ntfy {
                    url,
                    token: given(&self.secret).map(SecretString::from),
                }
            }
            Kind::Email => {
                let url = required(&self.url, Field::Url)?;
                let to = required(&self.to, Field::To)?;
                let smtp = smtp(&url, &to, given(&self.from).as_deref())
                    .map_err(|(field, message)| fail(field, &message))?;
                Target::Email(smtp)
            }
        };
        Ok(Channel {
            name: name.to_owned(),
            target,
        })
    }
}

/// `smtps://user:pass@host[:port]`, `smtp://user:pass@host[:port]` (STARTTLS) or
/// `smtp://host:port?tls=none` (this machine only).
fn smtp(url: &str, to: &str, from: Option<&str>) -> Result<Smtp, (Field, String)> {
    let bad = |m: &str| (Field::Url, m.to_owned());
    let parsed = Url::parse(url).map_err(|_| {
        bad("not an SMTP URL like smtps://user:password@mail.example.org or smtp://…:587")
    })?;
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(bad("the SMTP URL has no host")),
    };
    let plain = match parsed.query() {
        None | Some("") => false,
        Some("tls=none") => true,
        Some(_) => return Err(bad("the only option of the SMTP URL is ?tls=none")),
    };
    let security = match (parsed.scheme(), plain) {
        ("smtps", false) => SmtpSecurity::Tls,
        ("smtp", false) => SmtpSecurity::StartTls,
        ("smtp", true) => SmtpSecurity::Plain,
        ("smtps", true) => return Err(bad("smtps:// is TLS; ?tls=none goes with smtp://")),
        _ => return Err(bad("the SMTP URL must start with smtps:// or smtp://")),
    };
    if security == SmtpSecurity::Plain {
        let local = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !local {
            return Err(bad(
                "?tls=none is only for a server on this machine (localhost); use smtps:// or smtp:// (STARTTLS)",
            ));
        }
    }
    let port = parsed.port().unwrap_or(match security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Plain => 25,
    });
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("the SMTP URL's user or password is not UTF-8"))
    };
    let user = Some(decode(parsed.username())?).filter(|u| !u.is_empty());
    let password = parsed.password().map(decode).transpose()?;
    if user.is_some() != password.is_some() {
        return Err(bad(
            "the SMTP URL needs both a user and a password, or neither",
        ));
    }
    let to: Vec<Mailbox> = to
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|_| (Field::To, format!("{a:?} is not an e-mail address")))
        })
        .collect::<Result<_, _>>()?;
    if to.is_empty() {
        return Err((Field::To, "no e-mail address".into()));
    }
    let from = match from {
        Some(f) => f
            .parse::<Mailbox>()
            .map_err(|_| (Field::From, format!("{f:?} is not an e-mail address")))?,
        None => format!("truebit-monitor@{host}")
            .parse::<Mailbox>()
            .map_err(|_| {
                (
                    Field::From,
                    "missing (the SMTP host makes no address)".into(),
                )
            })?,
    };
    Ok(Smtp {
        security,
        host: host.to_owned(),
        port,
        user,
        password: password.map(SecretString::from),
        from,
        to,
    })
}

impl AlertSettings {
    /// `self` wins over `lower` field by field.
    pub fn over(self, lower: AlertSettings) -> AlertSettings {
        AlertSettings {
            webhook_url: self.webhook_url.or(lower.webhook_url),
            webhook_secret: self.webhook_secret.or(lower.webhook_secret),
            telegram_bot_token: self.telegram_bot_token.or(lower.telegram_bot_token),
            telegram_chat_id: self.telegram_chat_id.or(lower.telegram_chat_id),
            telegram_api_url: self.telegram_api_url.or(lower.telegram_api_url),
            discord_webhook_url: self.discord_webhook_url.or(lower.discord_webhook_url),
            slack_webhook_url: self.slack_webhook_url.or(lower.slack_webhook_url),
            ntfy_url: self.ntfy_url.or(lower.ntfy_url),
            ntfy_token: self.ntfy_token.or(lower.ntfy_token),
            smtp_url: self.smtp_url.or(lower.smtp_url),
            email_to: self.email_to.or(lower.email_to),
            email_from: self.email_from.or(lower.email_from),
            timeout: self.timeout.or(lower.timeout),
            retry_max: self.retry_max.or(lower.retry_max),
            summary_after: self.summary_after.or(lower.summary_after),
            heartbeat_url: self.heartbeat_url.or(lower.heartbeat_url),
            container_down_enabled: self.container_down_enabled.or(lower.container_down_enabled),
            container_down_after: self.container_down_after.or(lower.container_down_after),
            restart_loop_enabled: self.restart_loop_enabled.or(lower.restart_loop_enabled),
            restart_loop_starts: self.restart_loop_starts.or(lower.restart_loop_starts),
            restart_loop_window: self.restart_loop_window.or(lower.restart_loop_window),
            silence_enabled: self.silence_enabled.or(lower.silence_enabled),
            silence_after: self.silence_after.or(lower.silence_after),
            no_tasks_enabled: self.no_tasks_enabled.or(lower.no_tasks_enabled),
            no_tasks_after: self.no_tasks_after.or(lower.no_tasks_after),
            failure_rate_enabled: self.failure_rate_enabled.or(lower.failure_rate_enabled),
            failure_rate: self.failure_rate.or(lower.failure_rate),
            failure_rate_min_tasks: self.failure_rate_min_tasks.or(lower.failure_rate_min_tasks),
            failure_rate_window: self.failure_rate_window.or(lower.failure_rate_window),
            docker_unreachable_enabled: self
                .docker_unreachable_enabled
                .or(lower.docker_unreachable_enabled),
            docker_unreachable_after: self
                .docker_unreachable_after
                .or(lower.docker_unreachable_after),
            db_write_enabled: self.db_write_enabled.or(lower.db_write_enabled),
            db_write_after: self.db_write_after.or(lower.db_write_after),
            federation_enabled: self.federation_enabled.or(lower.federation_enabled),
            federation_missed: self.federation_missed.or(lower.federation_missed),
            reminder: self.reminder.or(lower.reminder),
            heartbeat_fail_url: self.heartbeat_fail_url.or(lower.heartbeat_fail_url),
            heartbeat_interval: self.heartbeat_interval.or(lower.heartbeat_interval),
        }
    }

    /// The channel of each kind that has a variable set, named after its kind.
    pub fn channel_specs(&self) -> Vec<ChannelSpec> {
        let spec = |kind: Kind| ChannelSpec {
            name: kind.as_str().to_owned(),
            kind: kind.as_str().to_owned(),
            ..ChannelSpec::default()
        };
        let mut specs = Vec::new();
        for kind in Kind::ALL {
            let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
            let s = match kind {
                Kind::Webhook => ChannelSpec {
                    url: self.webhook_url.clone(),
                    secret: self.webhook_secret.clone(),
                    ..spec(kind)
                },
                Kind::Telegram => ChannelSpec {
                    url: self.telegram_api_url.clone(),
                    secret: self.telegram_bot_token.clone(),
                    chat_id: self.telegram_chat_id.clone(),
                    ..spec(kind)
                },
                Kind::Discord => ChannelSpec {
                    url: self.discord_webhook_url.clone(),
                    ..spec(kind)
                },
                Kind::Slack => ChannelSpec {
                    url: self.slack_webhook_url.clone(),
                    ..spec(kind)
                },
                Kind::Ntfy => ChannelSpec {
                    url: self.ntfy_url.clone(),
                    secret: self.ntfy_token.clone(),
                    ..spec(kind)
                },
                Kind::Email => ChannelSpec {
                    url: self.smtp_url.clone(),
                    to: self.email_to.clone(),
                    from: self.email_from.clone(),
                    ..spec(kind)
                },
            };
            if [&s.url, &s.secret, &s.chat_id, &s.to, &s.from]
                .into_iter()
                .any(set)
            {
                specs.push(s);
            }
        }
        specs
    }

    pub fn resolve(self) -> Result<AlertConfig, InvalidSetting> {
        let invalid = |key: &'static str, message: String| InvalidSetting::new(key, message);
        let mut channels = Vec::new();
        let specs = self.channel_specs();
        for spec in &specs {
            let kind = Kind::parse(&spec.kind).unwrap_or(Kind::Webhook);
            channels.push(
                spec.validate()
                    .map_err(|e| invalid(env_name(kind, e.field), e.message))?,
            );
        }
        let duration = |key: &'static str,
                        value: Option<&str>,
                        default: u64,
                        max: u64,
                        like: &str| {
            match value {
                None => Ok(Duration::from_secs(default)),
                Some(s) => parse_duration(s)
                    .filter(|d| *d >= Duration::from_secs(1) && d.as_secs() <= max)
                    .ok_or_else(|| {
                        invalid(
                            key,
                            format!(
                                "{s:?} is not a duration from 1s to {} like {like}",
                                human(max)
                            ),
                        )
                    }),
            }
        };
        let timeout = duration(
            "ALERT_TIMEOUT",
            self.timeout.as_deref(),
            10,
            300,
            "10s or 1m",
        )?;
        let retry_max = duration(
            "ALERT_RETRY_MAX",
            self.retry_max.as_deref(),
            300,
            86_400,
            "90s, 10m or 6h",
        )?;
        let summary_after = self.summary_after.unwrap_or(20);
        if !(1..=1000).contains(&summary_after) {
            return Err(invalid(
                "ALERT_SUMMARY_AFTER",
                format!("{summary_after} is not from 1 to 1000"),
            ));
        }
        let url = |key: &'static str, value: Option<&str>| match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(u) => {
                let ok = Url::parse(u)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if ok {
                    Ok(Some(SecretString::from(u)))
                } else {
                    Err(invalid(key, "not an http:// or https:// URL".into()))
                }
            }
        };
        let heartbeat_url = url("HEARTBEAT_URL", self.heartbeat_url.as_deref())?;
        let heartbeat_fail_url = url("HEARTBEAT_FAIL_URL", self.heartbeat_fail_url.as_deref())?;
        let every = duration(
            "HEARTBEAT_INTERVAL",
            self.heartbeat_interval.as_deref(),
            60,
            3600,
            "30s or 5m",
        )?;
        let heartbeat = match (heartbeat_url, heartbeat_fail_url) {
            (Some(url), fail_url) => Some(Heartbeat {
                url,
                fail_url,
                every,
            }),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid(
                    "HEARTBEAT_FAIL_URL",
                    "needs HEARTBEAT_URL too (the URL called while no rule fires)".into(),
                ))
            }
        };
        let rules = self.rules(&invalid)?;
        let defaults = Delivery::default();
        Ok(AlertConfig {
            channels,
            specs,
            delivery: Delivery {
                timeout,
                retry_min: defaults.retry_min.min(retry_max),
                retry_max,
                summary_after: summary_after as usize,
                ..defaults
            },
            heartbeat,
            rules,
        })
    }

    /// The rules' settings: the defaults, with what is set here.
    fn rules(
        &self,
        invalid: &dyn Fn(&'static str, String) -> InvalidSetting,
    ) -> Result<RuleSet, InvalidSetting> {
        const WEEK: u64 = 7 * 86_400;
        let duration = |key: &'static str, value: &Option<String>, default: Duration| match value
            .as_deref()
            .map(str::trim)
        {
            None => Ok(default),
            Some(s) => parse_duration(s)
                .filter(|d| *d >= Duration::from_secs(1) && d.as_secs() <= WEEK)
                .ok_or_else(|| {
                    invalid(
                        key,
                        format!("{s:?} is not a duration from 1s to 7d like 90s, 10m or 6h"),
                    )
                }),
        };
        let count =
            |key: &'static str, value: Option<u32>, default: u32, min: u32, max: u32| match value {
                None => Ok(default),
                Some(n) if (min..=max).contains(&n) => Ok(n),
                Some(n) => Err(invalid(key, format!("{n} is not from {min} to {max}"))),
            };
        let mut set = RuleSet::default();
        let mut rule = |rule: Rule,
                        enabled: Option<bool>,
                        edit: &dyn Fn(RuleConfig) -> Result<RuleConfig, InvalidSetting>|
         -> Result<(), InvalidSetting> {
            let mut config = edit(RuleConfig::default_for(rule))?;
            config.enabled = enabled.unwrap_or(config.enabled);
            set.set(rule, config);
            Ok(())
        };
        rule(Rule::ContainerDown, self.container_down_enabled, &|c| {
            Ok(RuleConfig {
                after: duration(
                    "ALERT_CONTAINER_DOWN_AFTER",
                    &self.container_down_after,
                    c.after,
                )?,
                ..c
            })
        })?;
        rule(Rule::RestartLoop, self.restart_loop_enabled, &|c| {
            Ok(RuleConfig {
                count: count(
                    "ALERT_RESTART_LOOP_STARTS",
                    self.restart_loop_starts,
                    c.count,
                    2,
                    1000,
                )?,
                window: duration(
                    "ALERT_RESTART_LOOP_WINDOW",
                    &self.restart_loop_window,
                    c.window,
                )?,
                ..c
            })
        })?;
        rule(Rule::Silence, self.silence_enabled, &|c| {
            Ok(RuleConfig {
                after: duration("ALERT_SILENCE_AFTER", &self.silence_after, c.after)?,
                ..c
            })
        })?;
        rule(Rule::NoTasks, self.no_tasks_enabled, &|c| {
            Ok(RuleConfig {
                after: duration("ALERT_NO_TASKS_AFTER", &self.no_tasks_after, c.after)?,
                ..c
            })
        })?;
        rule(Rule::FailureRate, self.failure_rate_enabled, &|c| {
            let percent = count(
                "ALERT_FAILURE_RATE",
                self.failure_rate,
                c.percent.into(),
                1,
                100,
            )?;
            Ok(RuleConfig {
                percent: u8::try_from(percent).unwrap_or(100),
                count: count(
                    "ALERT_FAILURE_RATE_MIN_TASKS",
                    self.failure_rate_min_tasks,
                    c.count,
                    1,
                    100_000,
                )?,
                window: duration(
                    "ALERT_FAILURE_RATE_WINDOW",
                    &self.failure_rate_window,
                    c.window,
                )?,
                ..c
            })
        })?;
        rule(
            Rule::DockerUnreachable,
            self.docker_unreachable_enabled,
            &|c| {
                Ok(RuleConfig {
                    after: duration(
                        "ALERT_DOCKER_UNREACHABLE_AFTER",
                        &self.docker_unreachable_after,
                        c.after,
                    )?,
                    ..c
                })
            },
        )?;
        rule(Rule::DbWrite, self.db_write_enabled, &|c| {
            Ok(RuleConfig {
                after: duration("ALERT_DB_WRITE_AFTER", &self.db_write_after, c.after)?,
                ..c
            })
        })?;
        rule(Rule::Federation, self.federation_enabled, &|c| {
            Ok(RuleConfig {
                count: count(
                    "ALERT_FEDERATION_MISSED",
                    self.federation_missed,
                    c.count,
                    1,
                    1000,
                )?,
                ..c
            })
        })?;
        set.reminder = match &self.reminder {
            None => None,
            Some(_) => Some(duration("ALERT_REMINDER", &self.reminder, Duration::ZERO)?),
        };
        Ok(set)
    }
}

/// The variable that sets `field` of the `kind` channel built from the environment.
fn env_name(kind: Kind, field: Field) -> &'static str {
    match (kind, field) {
        (Kind::Webhook, Field::Secret) => "ALERT_WEBHOOK_SECRET",
        (Kind::Webhook, _) => "ALERT_WEBHOOK_URL",
        (Kind::Telegram, Field::Secret) => "ALERT_TELEGRAM_BOT_TOKEN",
        (Kind::Telegram, Field::ChatId) => "ALERT_TELEGRAM_CHAT_ID",
        (Kind::Telegram, _) => "ALERT_TELEGRAM_API_URL",
        (Kind::Discord, _) => "ALERT_DISCORD_WEBHOOK_URL",
        (Kind::Slack, _) => "ALERT_SLACK_WEBHOOK_URL",
        (Kind::Ntfy, Field::Secret) => "ALERT_NTFY_TOKEN",
        (Kind::Ntfy, _) => "ALERT_NTFY_URL",
        (Kind::Email, Field::To) => "ALERT_EMAIL_TO",
        (Kind::Email, Field::From) => "ALERT_EMAIL_FROM",
        (Kind::Email, _) => "ALERT_SMTP_URL",
    }
}

/// The `[alert]` section of the example config file.
pub const EXAMPLE_SECTION: &str = r#"
# Alerts (docs/ALERTS.md). No channel is set by default: nothing is sent anywhere until
# one is. Each channel below is used when its settings are present.
[alert]
# Webhook: a JSON POST per alert; the secret signs it (X-Signature)
# [ALERT_WEBHOOK_URL, ALERT_WEBHOOK_SECRET]
# webhook_url = "https://hooks.example.org/truebit"
# webhook_secret = "use `openssl rand -hex 32`"
# Telegram [ALERT_TELEGRAM_BOT_TOKEN, ALERT_TELEGRAM_CHAT_ID, ALERT_TELEGRAM_API_URL]
# telegram_bot_token = "123456789:AA..."
# telegram_chat_id = "123456789"
# telegram_api_url = "https://api.telegram.org"
# Discord and Slack-compatible webhooks [ALERT_DISCORD_WEBHOOK_URL, ALERT_SLACK_WEBHOOK_URL]
# discord_webhook_url = "https://discord.com/api/webhooks/..."
# slack_webhook_url = "https://hooks.slack.com/services/..."
# ntfy topic [ALERT_NTFY_URL, ALERT_NTFY_TOKEN]
# ntfy_url = "https://ntfy.sh/my-node-alerts"
# E-mail: smtps:// (TLS) or smtp:// (STARTTLS) [ALERT_SMTP_URL, ALERT_EMAIL_TO, ALERT_EMAIL_FROM]
# smtp_url = "smtps://alerts%40example.org:password@mail.example.org"
# email_to = "operator@example.org"
# Delivery: one attempt's limit, the longest wait between retries, and how many queued
# notifications a channel gets one by one before a summary
# [ALERT_TIMEOUT, ALERT_RETRY_MAX, ALERT_SUMMARY_AFTER]
timeout = "10s"
retry_max = "5m"
summary_after = 20
# Dead-man heartbeat: called every interval while no rule fires; the fail URL instead
# while one does [HEARTBEAT_URL, HEARTBEAT_FAIL_URL, HEARTBEAT_INTERVAL]
# heartbeat_url = "https://hc-ping.com/your-check-uuid"
# heartbeat_fail_url = "https://hc-ping.com/your-check-uuid/fail"
heartbeat_interval = "60s"
# The rules, each on or off with its thresholds (docs/ALERTS.md)
# [ALERT_<RULE>_ENABLED, ALERT_CONTAINER_DOWN_AFTER, ALERT_RESTART_LOOP_STARTS,
#  ALERT_RESTART_LOOP_WINDOW, ALERT_SILENCE_AFTER, ALERT_NO_TASKS_AFTER, ALERT_FAILURE_RATE,
#  ALERT_FAILURE_RATE_MIN_TASKS, ALERT_FAILURE_RATE_WINDOW, ALERT_DOCKER_UNREACHABLE_AFTER,
#  ALERT_DB_WRITE_AFTER, ALERT_FEDERATION_MISSED, ALERT_REMINDER]
container_down_enabled = true
container_down_after = "60s"
restart_loop_enabled = true
restart_loop_starts = 3
restart_loop_window = "10m"
silence_enabled = true
silence_after = "10m"
no_tasks_enabled = false
no_tasks_after = "6h"
failure_rate_enabled = true
failure_rate = 50
failure_rate_min_tasks = 10
failure_rate_window = "1h"
docker_unreachable_enabled = true
docker_unreachable_after = "2m"
db_write_enabled = true
db_write_after = "1m"
federation_enabled = true
federation_missed = 3
# Repeat a firing rule's notification this often (off when unset)
# reminder = "6h"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn resolve(s: AlertSettings) -> Result<AlertConfig, String> {
        s.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn rule_settings_override_the_defaults_and_bad_ones_name_the_variable() {
        let c = resolve(AlertSettings {
            container_down_after: Some("90s".into()),
            silence_after: Some("10m".into()),
            no_tasks_enabled: Some(true),
            no_tasks_after: Some("6h".into()),
            failure_rate: Some(40),
            restart_loop_enabled: Some(false),
            reminder: Some("6h".into()),
            ..AlertSettings::default()
        })
        .expect("valid");
        let r = &c.rules;
        assert_eq!(r.get(Rule::ContainerDown).after, Duration::from_secs(90));
        assert_eq!(r.get(Rule::Silence).after, Duration::from_secs(600));
        assert!(r.get(Rule::NoTasks).enabled);
        assert_eq!(r.get(Rule::NoTasks).after, Duration::from_secs(6 * 3600));
        assert_eq!(r.get(Rule::FailureRate).percent, 40);
        assert_eq!(r.get(Rule::FailureRate).count, 10);
        assert!(!r.get(Rule::RestartLoop).enabled);
        assert_eq!(r.reminder, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(
            resolve(AlertSettings::default()).expect("valid").rules,
            RuleSet::default()
        );
        for (settings, line) in [
            (
                AlertSettings {
                    silence_after: Some("soon".into()),
                    ..AlertSettings::default()
                },
                "invalid ALERT_SILENCE_AFTER: \"soon\" is not a duration from 1s to 7d like 90s, 10m or 6h",
            ),
            (
                AlertSettings {
                    failure_rate: Some(150),
                    ..AlertSettings::default()
                },
                "invalid ALERT_FAILURE_RATE: 150 is not from 1 to 100",
            ),
            (
                AlertSettings {
                    heartbeat_fail_url: Some("https://hc-ping.com/x/fail".into()),
                    ..AlertSettings::default()
                },
                "invalid HEARTBEAT_FAIL_URL: needs HEARTBEAT_URL too (the URL called while no rule fires)",
            ),
        ] {
            assert_eq!(resolve(settings).err().as_deref(), Some(line));
        }
    }

    #[test]
    fn no_setting_means_no_channel() {
        let c = resolve(AlertSettings::default()).expect("valid");
        assert!(c.channels.is_empty());
        assert_eq!(c.delivery, Delivery::default());
    }

    #[test]
    fn every_kind_is_built_from_its_variables() {
        let c = resolve(AlertSettings {
            webhook_url: Some("https://hooks.example.org/x".into()),
            telegram_bot_token: Some("123:abc-DEF_1".into()),
            telegram_chat_id: Some("-100200".into()),
            discord_webhook_url: Some("https://discord.example/api/webhooks/1/t".into()),
            slack_webhook_url: Some("https://hooks.slack.example/services/T".into()),
            ntfy_url: Some("http://127.0.0.1:8080/alerts".into()),
            smtp_url: Some("smtp://u%40x.org:p%3Ass@mail.example.org".into()),
            email_to: Some("a@example.org, b@example.org".into()),
            ..AlertSettings::default()
        })
        .expect("valid");
        let kinds: Vec<(String, Kind)> = c
            .channels
            .iter()
            .map(|c| (c.name.clone(), c.kind()))
            .collect();
        assert_eq!(
            kinds,
            Kind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), *k))
                .collect::<Vec<_>>()
        );
        let Target::Email(smtp) = &c.channels[5].target else {
            panic!("e-mail")
        };
        assert_eq!(smtp.security, SmtpSecurity::StartTls);
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.user.as_deref(), Some("u@x.org"));
        assert_eq!(
            smtp.password.as_ref().map(|s| s.expose_secret()),
            Some("p:ss")
        );
        assert_eq!(smtp.to.len(), 2);
        assert_eq!(
            smtp.from.email.to_string(),
            "truebit-monitor@mail.example.org"
        );
        let Target::Telegram { api, .. } = &c.channels[1].target else {
            panic!("telegram")
        };
        assert_eq!(api.as_str(), "https://api.telegram.org/");
    }

    #[test]
    fn bad_settings_name_the_variable_in_one_line() {
        let cases: Vec<(AlertSettings, &str)> = vec![
            (
                AlertSettings {
                    telegram_bot_token: Some("123:abc".into()),
                    ..Default::default()
                },
                "invalid ALERT_TELEGRAM_CHAT_ID: missing",
            ),
            (
                AlertSettings {
                    telegram_chat_id: Some("42".into()),
                    ..Default::default()
                },
                "invalid ALERT_TELEGRAM_BOT_TOKEN: missing",
            ),
            (
                AlertSettings {
                    discord_webhook_url: Some("discord.com/api/webhooks/1/secret".into()),
                    ..Default::default()
                },
                "invalid ALERT_DISCORD_WEBHOOK_URL: not an http:// or https:// URL",
            ),
            (
                AlertSettings {
                    smtp_url: Some("smtp://mail.example.org:25?tls=none".into()),
                    email_to: Some("a@example.org".into()),
                    ..Default::default()
                },
                "invalid ALERT_SMTP_URL: ?tls=none is only for a server on this machine",
            ),
            (
                AlertSettings {
                    smtp_url: Some("smtps://mail.example.org".into()),
                    ..Default::default()
                },
                "invalid ALERT_EMAIL_TO: missing",
            ),
            (
                AlertSettings {
                    timeout: Some("90x".into()),
                    ..Default::default()
                },
                "invalid ALERT_TIMEOUT: \"90x\" is not a duration from 1s to 5m",
            ),
            (
                AlertSettings {
                    retry_max: Some("2d".into()),
                    ..Default::default()
                },
                "invalid ALERT_RETRY_MAX: \"2d\" is not a duration from 1s to 24h",
            ),
            (
                AlertSettings {
                    heartbeat_url: Some("ftp://x".into()),
                    ..Default::default()
                },
                "invalid HEARTBEAT_URL: not an http:// or https:// URL",
            ),
        ];
        for (settings, expected) in cases {
            let err = resolve(settings).expect_err(expected);
            assert!(
                err.starts_with(expected),
                "{err:?} should start with {expected:?}"
            );
            assert!(!err.contains('\n'), "{err:?}");
        }
    }

    #[test]
    fn errors_never_repeat_a_secret_url_or_token() {
        let err = resolve(AlertSettings {
            slack_webhook_url: Some("hooks.slack.com/services/T0/B0/SECRETPART".into()),
            ..Default::default()
        })
        .expect_err("bad");
        assert!(!err.contains("SECRETPART"), "{err}");
        let err = resolve(AlertSettings {
            telegram_bot_token: Some("not a token SECRETPART".into()),
            telegram_chat_id: Some("1".into()),
            ..Default::default()
        })
        .expect_err("bad");
        assert!(!err.contains("SECRETPART"), "{err}");
        assert!(err.starts_with("invalid ALERT_TELEGRAM_BOT_TOKEN"), "{err}");
        let debug = format!(
            "{:?}",
            AlertSettings {
                smtp_url: Some("smtps://u:SECRETPART@h".into()),
                ..Default::default()
            }
        );
        assert!(!debug.contains("SECRETPART"), "{debug}");
    }

    #[test]
    fn a_channel_spec_names_its_field() {
        let spec = ChannelSpec {
            name: "ops".into(),
            kind: "pager".into(),
            ..Default::default()
        };
        let err = spec.validate().expect_err("unknown kind");
        assert_eq!(err.field, Field::Kind);
        assert_eq!(
            err.to_string(),
            "alert channel \"ops\": invalid kind: unknown kind \"pager\" \
             (one of webhook, telegram, discord, slack, ntfy, email)"
        );
        let err = ChannelSpec {
            name: "ops".into(),
            kind: "ntfy".into(),
            url: Some("https://ntfy.sh/".into()),
            ..Default::default()
        }
        .validate()
        .expect_err("no topic");
        assert_eq!(err.field, Field::Url);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let d = Delivery {
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            ..Delivery::default()
        };
        let waits: Vec<u64> = (1..=6).map(|f| d.backoff(f).as_secs()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(d.backoff(u32::MAX), Duration::from_secs(60));
    }
}
