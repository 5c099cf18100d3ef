//! The destinations of alerts and how one message is sent to each, in the request each
//! service documents. Every channel's base URL comes from its configuration, so tests
//! and self-hosted services (a local ntfy, a Slack-compatible Mattermost) use the same
//! code. One attempt is bounded by [`Sender`]'s timeout; an error says what went wrong
//! in a few words and never carries a URL (webhook URLs and bot tokens are secrets).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use reqwest::Url;
use serde_json::json;
use sha2::Sha256;

use super::Message;
use secrecy::{ExposeSecret as _, SecretString};

/// The kinds of channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Webhook,
    Telegram,
    Discord,
    Slack,
    Ntfy,
    Email,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Webhook,
        Kind::Telegram,
        Kind::Discord,
        Kind::Slack,
        Kind::Ntfy,
        Kind::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Telegram => "telegram",
            Kind::Discord => "discord",
            Kind::Slack => "slack",
            Kind::Ntfy => "ntfy",
            Kind::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A configured destination. Its `Debug` shows the name and kind only.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    pub(crate) target: Target,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub fn kind(&self) -> Kind {
        match self.target {
            Target::Webhook { .. } => Kind::Webhook,
            Target::Telegram { .. } => Kind::Telegram,
            Target::Discord { .. } => Kind::Discord,
            Target::Slack { .. } => Kind::Slack,
            Target::Ntfy { .. } => Kind::Ntfy,
            Target::Email(_) => Kind::Email,
        }
    }

    /// The settings that have a value (`url`, `secret`, `chat_id`, `to`, `from`), to show
    /// which are set without showing them.
    pub fn fields_set(&self) -> Vec<&'static str> {
        match &self.target {
            Target::Webhook { secret, .. } | Target::Ntfy { token: secret, .. } => {
                let mut set = vec!["url"];
                if secret.is_some() {
                    set.push("secret");
                }
                set
            }
            Target::Telegram { .. } => vec!["url", "secret", "chat_id"],
            Target::Discord { .. } | Target::Slack { .. } => vec!["url"],
            Target::Email(_) => vec!["url", "to", "from"],
        }
    }
}

#[derive(Clone)]
pub(crate) enum Target {
    /// POST of the JSON body, signed when there is a secret.
    Webhook {
        url: Url,
        secret: Option<SecretString>,
    },
    /// Bot API `sendMessage` at `{api}/bot{token}/sendMessage`.
    Telegram {
        api: Url,
        token: SecretString,
        chat_id: String,
    },
    /// Discord's "execute webhook".
    Discord {
        url: Url,
    },
    /// Slack's incoming webhook (also Mattermost, Rocket.Chat, …).
    Slack {
        url: Url,
    },
    /// POST of the text to a topic URL.
    Ntfy {
        url: Url,
        token: Option<SecretString>,
    },
    Email(Smtp),
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`smtps://`, port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which must succeed (`smtp://`, port 587).
    StartTls,
    /// No TLS at all (`smtp://…?tls=none`), only to this machine.
    Plain,
}

#[derive(Clone)]
pub(crate) struct Smtp {
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

/// Why one attempt failed. Short, and never with a URL, token or address in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("cannot connect")]
    Connect,
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("the request failed")]
    Request,
    #[error("the SMTP server answered {0}")]
    SmtpStatus(String),
    #[error("SMTP TLS failed")]
    SmtpTls,
    #[error("the SMTP exchange failed")]
    Smtp,
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// Webhook signature: `sha256=` and the hex HMAC-SHA256, keyed with the channel's secret,
/// of the timestamp (decimal Unix seconds, the `X-Timestamp` header), a `.`, and the body.
pub fn webhook_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends messages; one attempt takes at most `timeout` (connecting included).
#[derive(Clone, Debug)]
pub struct Sender {
    http: reqwest::Client,
    timeout: Duration,
}

/// The longest text each service takes in one message (characters).
const TELEGRAM_MAX: usize = 4096;
const DISCORD_MAX: usize = 2000;
const SLACK_MAX: usize = 3000;
const NTFY_MAX: usize = 4000;

impl Sender {
    pub fn new(timeout: Duration) -> Result<Sender, SendError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("truebit-monitor/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the body (and a signature) somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            // Alerts are rare: a fresh connection each time, never one the receiver
            // closed while it idled.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| SendError::Build(e.without_url().to_string()))?;
        Ok(Sender { http, timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One attempt at delivering `message` to `channel`.
    pub async fn send(&self, channel: &Channel, message: &Message) -> Result<(), SendError> {
        let attempt = async {
            match &channel.target {
                Target::Email(smtp) => self.send_email(smtp, message).await,
                target => self.send_http(target, message).await,
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }

    async fn send_http(&self, target: &Target, message: &Message) -> Result<(), SendError> {
        let request = match target {
            Target::Webhook { url, secret } => {
                let body = serde_json::to_vec(&message.webhook_body())
                    .map_err(|e| SendError::Build(e.to_string()))?;
                let mut request = self
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(secret) = secret {
                    let timestamp = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    request = request.header("X-Timestamp", timestamp).header(
                        "X-Signature",
                        webhook_signature(secret.expose_secret().as_bytes(), timestamp, &body),
                    );
                }
                request.body(body)
            }
            Target::Telegram {
                api,
                token,
                chat_id,
            } => {
                let url = format!(
                    "{}/bot{}/sendMessage",
                    api.as_str().trim_end_matches('/'),
                    token.expose_secret()
                );
                self.post_json(
                    url,
                    &json!({
                        "chat_id": chat_id,
                        "text": message.text_within(TELEGRAM_MAX),
                        "disable_web_page_preview": true,
                    }),
                )
            }
            Target::Discord { url } => self.post_json(
                url.clone(),
                &json!({
                    "content": message.text_within(DISCORD_MAX),
                    // Nothing in a message pings anyone.
                    "allowed_mentions": { "parse": [] },
                }),
            ),
            Target::Slack { url } => self.post_json(
                url.clone(),
                &json!({
                    "text": message.text_within(SLACK_MAX),
                }),
            ),
            Target::Ntfy { url, token } => {
                let firing = message.any_firing();
                let mut request = self
                    .http
                    .post(url.clone())
                    .header("Title", &message.subject)
                    .header("Priority", if firing { "high" } else { "default" })
                    .header(
                        "Tags",
                        if firing {
                            "warning"
                        } else {
                            "white_check_mark"
                        },
                    )
                    .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8");
                if let Some(url) = &message.dashboard_url {
                    request = request.header("Click", url);
                }
                if let Some(token) = token {
                    request = request.bearer_auth(token.expose_secret());
                }
                request.body(message.text_within(NTFY_MAX))
            }
            Target::Email(_) => unreachable!("e-mail is sent over SMTP"),
        };
        self.answer(request).await
    }

    /// Sends `request`; any 2xx answer is a success.
    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<(), SendError> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect
            } else if e.is_timeout() {
                SendError::Timeout(self.timeout)
            } else {
                SendError::Request
            }
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }

    /// One `GET` of `url` (the dead-man heartbeat), cut after the timeout.
    pub async fn ping(&self, url: &str) -> Result<(), SendError> {
        let request = self.http.get(url).timeout(self.timeout);
        tokio::time::timeout(self.timeout, self.answer(request))
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }

    fn post_json(
        &self,
        url: impl reqwest::IntoUrl,
        body: &serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }

    async fn send_email(&self, smtp: &Smtp, message: &Message) -> Result<(), SendError> {
        let mut email = lettre::Message::builder()
            .from(smtp.from.clone())
            .subject(&message.subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &smtp.to {
            email = email.to(to.clone());
        }
        let email = email
            .body(message.text.clone())
            .map_err(|e| SendError::Build(e.to_string()))?;
        let builder = match smtp.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            }
            SmtpSecurity::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &smtp.host,
            )),
        }
        .map_err(|_| SendError::SmtpTls)?;
        let mut builder = builder.port(smtp.port).timeout(Some(self.timeout));
        if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let transport = builder.build();
        transport.send(email).await.map(drop).map_err(|e| {
            if e.is_timeout() {
                SendError::Timeout(self.timeout)
            } else if e.is_tls() {
                SendError::SmtpTls
            } else if let Some(code) = e.status() {
                SendError::SmtpStatus(code.to_string())
            } else {
                SendError::Smtp
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check: a fixed key and input give a fixed MAC.
        let sig = webhook_signature(b"key", 1_700_000_000, b"{}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"key").expect("key");
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(sig, webhook_signature(b"key", 1_700_000_001, b"{}"));
    }

    #[test]
    fn errors_never_show_a_url() {
        for e in [
            SendError::Timeout(Duration::from_millis(1500)),
            SendError::Connect,
            SendError::Status(503),
        ] {
            assert!(!e.to_string().contains("http"), "{e}");
        }
        assert_eq!(
            SendError::Timeout(Duration::from_millis(1500)).to_string(),
            "no answer within 1.5 s"
        );
    }
}
