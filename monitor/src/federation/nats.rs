//! The NATS connection: the only place that names async-nats.
//!
//! - Servers, credentials and TLS come from [`FederationConfig`]. Servers the cluster
//!   advertises are ignored: the monitor connects only where the operator pointed it
//!   (perhaps through a proxy).
//! - The client keeps reconnecting by itself (capped backoff). Closing sets a flag the
//!   reconnect schedule reads, so a closed connection never comes back.
//! - Delivery: if a JetStream stream covers [`REPORT_SUBJECT`] (asked once per
//!   connection), a report is published with `Nats-Msg-Id` = node-window and counts as
//!   delivered when the stream acknowledges it (a duplicate acknowledgement too);
//!   otherwise with a core publish, delivered once flushed to the server's socket.
//! - Only [`Publishable`] values can be published.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truebit_protocol::REPORT_SUBJECT;

use super::config::{FederationConfig, NatsAuth};
use super::gate::Publishable;

/// How long a connection attempt, a flush or an acknowledgement may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long asking for a JetStream stream may take (a user without JetStream
/// permissions never gets an answer).
const STREAM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest pause between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Federation is off: no connection exists.
    Off,
    Connecting,
    Connected,
    Disconnected,
}

/// How reports are delivered on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// A JetStream stream covers the report subject: publish with a message id and wait
    /// for the stream's acknowledgement.
    Jetstream,
    /// Plain NATS publish.
    Core,
}

/// What the connection reports to the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub state: LinkState,
    /// Counts connections (so a reconnect is a change even if the state looks the same).
    pub generation: u64,
    pub last_error: Option<String>,
}

/// Why a publish did not go through (a transient condition: the report stays queued).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("not connected to the federation server")]
    NotConnected,
    #[error("the federation server did not confirm the report in time")]
    TimedOut,
    #[error("publishing failed: {0}")]
    Failed(String),
}

/// Why the connection could not be set up (configuration the operator must fix).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid NATS server list: {0}")]
    Servers(String),
}

/// A live (or reconnecting) client.
#[derive(Debug)]
pub(crate) struct Nats {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    link: watch::Receiver<Link>,
    closed: Arc<AtomicBool>,
    delivery: Mutex<Option<(u64, Delivery)>>,
}

impl Nats {
    /// Connects, retrying with capped backoff until it succeeds (`Ok(Some)`) or `cancel`
    /// fires (`Ok(None)`: nothing stays behind, no connection is left open). Errors are
    /// configuration problems the operator must fix. After the first connection the
    /// client reconnects by itself.
    pub(crate) async fn connect(
        config: &FederationConfig,
        link: Arc<watch::Sender<Link>>,
        cancel: &CancellationToken,
    ) -> Result<Option<Nats>, ConnectError> {
        let servers = config
            .servers
            .iter()
            .map(|s| s.url().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectError::Servers(e.to_string()))?;
        let closed = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let options = options(config, &closed, &link, &generation).await?;
            // Dropping this future (on cancel) drops the socket: nothing connects later.
            let connecting = options.connect(servers.clone());
            let result = tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                r = connecting => r,
            };
            match result {
                Ok(client) => {
                    let mut jetstream = jetstream::new(client.clone());
                    jetstream.set_timeout(IO_TIMEOUT);
                    return Ok(Some(Nats {
                        client,
                        jetstream,
                        link: link.subscribe(),
                        closed,
                        delivery: Mutex::new(None),
                    }));
                }
                Err(error) => {
                    let message = format!("cannot connect: {error}");
                    if attempt == 1 {
                        tracing::warn!("federation: {message}; retrying");
                    }
                    link.send_modify(|l| {
                        l.state = LinkState::Connecting;
                        l.last_error = Some(message);
                    });
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(None),
                        () = tokio::time::sleep(reconnect_delay(attempt + 1)) => {}
                    }
                }
            }
        }
    }

    pub(crate) fn link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The delivery mode found on the current connection, if already asked.
    pub(crate) fn delivery(&self) -> Option<Delivery> {
        let generation = self.link.borrow().generation;
        lock(&self.delivery)
            .filter(|(g, _)| *g == generation)
            .map(|(_, d)| d)
    }

    async fn find_delivery(&self) -> Delivery {
        if let Some(d) = self.delivery() {
            return d;
        }
        let generation = self.link.borrow().generation;
        let found = tokio::time::timeout(
            STREAM_LOOKUP_TIMEOUT,
            self.jetstream.stream_by_subject(REPORT_SUBJECT),
        )
        .await;
        let delivery = match found {
            Ok(Ok(stream)) => {
                tracing::info!(stream = %stream, "federation: JetStream stream found; reports are acknowledged");
                Delivery::Jetstream
            }
            _ => {
                tracing::info!(
                    "federation: no JetStream stream for the report subject; using core publish"
                );
                Delivery::Core
            }
        };
        *lock(&self.delivery) = Some((generation, delivery));
        delivery
    }

    /// Publishes one report; `Ok` once the server has it (see the module docs).
    pub(crate) async fn publish(&self, report: &Publishable) -> Result<Delivery, PublishError> {
        if !self.is_connected() {
            return Err(PublishError::NotConnected);
        }
        let delivery = self.find_delivery().await;
        let payload: Vec<u8> = report.wire().to_vec();
        match delivery {
            Delivery::Jetstream => {
                let message = jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(report.message_id());
                let ack = self
                    .jetstream
                    .send_publish(REPORT_SUBJECT, message)
                    .await
                    .map_err(|e| PublishError::Failed(e.to_string()))?;
                match ack.await {
                    Ok(_) => Ok(Delivery::Jetstream),
                    Err(e) => {
                        use jetstream::context::PublishErrorKind as K;
                        match e.kind() {
                            K::TimedOut => Err(PublishError::TimedOut),
                            K::StreamNotFound => {
                                // The stream went away: ask again next time.
                                *lock(&self.delivery) = None;
                                Err(PublishError::Failed(e.to_string()))
                            }
                            _ => Err(PublishError::Failed(e.to_string())),
                        }
                    }
                }
            }
            Delivery::Core => {
                self.client
                    .publish(REPORT_SUBJECT, payload.into())
                    .await
                    .map_err(|e| PublishError::Failed(e.to_string()))?;
                match tokio::time::timeout(IO_TIMEOUT, self.client.flush()).await {
                    Ok(Ok(())) if self.is_connected() => Ok(Delivery::Core),
                    Ok(Ok(())) => Err(PublishError::NotConnected),
                    Ok(Err(e)) => Err(PublishError::Failed(e.to_string())),
                    Err(_) => Err(PublishError::TimedOut),
                }
            }
        }
    }

    /// Subscribes to `subject` (re-subscribed by the client after a reconnect).
    pub(crate) async fn subscribe(
        &self,
        subject: &'static str,
    ) -> Result<async_nats::Subscriber, String> {
        self.client
            .subscribe(subject)
            .await
            .map_err(|e| e.to_string())
    }

    /// Closes the connection for good: no reconnection afterwards.
    pub(crate) async fn close(self) {
        self.closed.store(true, Ordering::SeqCst);
        if self.is_connected() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.client.drain()).await;
        }
        // Dropping the last client handle ends the connection task.
    }
}

/// Client options: credentials, TLS, and the callbacks that report the link state and
/// park the reconnect loop once closed.
async fn options(
    config: &FederationConfig,
    closed: &Arc<AtomicBool>,
    link: &Arc<watch::Sender<Link>>,
    generation: &Arc<AtomicU64>,
) -> Result<async_nats::ConnectOptions, ConnectError> {
    let mut options = match &config.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(
                user.clone(),
                password.expose().to_owned(),
            )
        }
        NatsAuth::Token(token) => async_nats::ConnectOptions::with_token(token.expose().to_owned()),
        NatsAuth::CredentialsFile(path) => {
            async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|source| ConnectError::Credentials {
                    path: path.display().to_string(),
                    source,
                })?
        }
    };
    if let Some(ca) = &config.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    let reconnect_closed = Arc::clone(closed);
    let events = Arc::clone(link);
    let generation = Arc::clone(generation);
    Ok(options
        .ignore_discovered_servers()
        .no_echo()
        .connection_timeout(IO_TIMEOUT)
        .request_timeout(Some(IO_TIMEOUT))
        .reconnect_delay_callback(move |attempts| {
            if reconnect_closed.load(Ordering::SeqCst) {
                // Closed: park the client's reconnect loop for good.
                return Duration::from_secs(365 * 24 * 3600);
            }
            reconnect_delay(attempts)
        })
        .event_callback(move |event| {
            let events = Arc::clone(&events);
            let generation = Arc::clone(&generation);
            async move { on_event(&events, &generation, event) }
        }))
}

fn on_event(link: &watch::Sender<Link>, generation: &AtomicU64, event: async_nats::Event) {
    use async_nats::Event as E;
    match event {
        E::Connected => {
            let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
            tracing::info!("federation: connected to the NATS server");
            link.send_modify(|l| {
                l.state = LinkState::Connected;
                l.generation = g;
                l.last_error = None;
            });
        }
        E::Disconnected => {
            tracing::warn!("federation: disconnected from the NATS server; reconnecting");
            link.send_modify(|l| l.state = LinkState::Disconnected);
        }
        E::ServerError(e) => {
            let message = format!("server: {e}");
            tracing::warn!("federation: NATS {message}");
            link.send_modify(|l| l.last_error = Some(message));
        }
        E::ClientError(e) => {
            let message = format!("client: {e}");
            tracing::debug!("federation: NATS {message}");
            link.send_modify(|l| l.last_error = Some(message));
        }
        E::LameDuckMode | E::Draining | E::Closed | E::SlowConsumer(_) => {}
    }
}

/// Whether `url` is a server address the client accepts (scheme and host).
pub(crate) fn check_server_url(url: &str) -> Result<(), String> {
    let addr: async_nats::ServerAddr = url.parse().map_err(|_| "unreadable".to_owned())?;
    if addr.host().is_empty() {
        return Err("no host".into());
    }
    Ok(())
}

/// 0 ms, then 200 ms doubling up to [`MAX_RECONNECT_DELAY`].
pub(crate) fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    Duration::from_millis(200u64.saturating_mul(1 << exp)).min(MAX_RECONNECT_DELAY)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_backs_off_to_a_cap() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(200));
        assert_eq!(reconnect_delay(3), Duration::from_millis(400));
        assert_eq!(reconnect_delay(7), Duration::from_millis(6_400));
        assert_eq!(reconnect_delay(8), MAX_RECONNECT_DELAY);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }
}
