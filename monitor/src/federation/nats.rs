//! The NATS connection: the only place that names async-nats.
//!
//! - Servers, credentials and TLS come from [`FederationConfig`]. Servers the cluster
//!   advertises are ignored: the monitor connects only where the operator pointed it
//!   (perhaps through a proxy).
//! - The client keeps reconnecting by itself (capped backoff). Closing sets a flag the
//!   reconnect schedule reads, so a closed connection never comes back.
//! - The client's connection task runs on a small runtime of its own ([`IoRuntime`], one
//!   thread). A client that lost its server keeps the dead socket while it tries to
//!   reconnect and reads no command meanwhile; closing therefore ends that runtime,
//!   which drops the task and every socket it holds: when [`Nats::close`] returns, the
//!   connection is closed, whatever state it was in.
//! - Delivery: if a JetStream stream covers [`REPORT_SUBJECT`] (asked once per
//!   connection), a report is published with `Nats-Msg-Id` = node-window and counts as
//!   delivered when the stream acknowledges it (a duplicate acknowledgement too);
//!   otherwise with a core publish, delivered once flushed to the server's socket.
//! - Replies (the stream lookup's answer, acknowledgements) come back on a fresh random
//!   inbox per request (`_INBOX.<32 random hex digits>`), subscribed just for that
//!   request: every monitor may read `_INBOX.>`, and a stable inbox would let another
//!   monitor count this one's acknowledgements across reconnects and days.
//! - Only [`Publishable`] values can be published as reports; [`Nats::scatter`] sends
//!   the operator's uptime proof request (`super::proof`), whose replies every replica
//!   sends to a fresh inbox.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truebit_protocol::REPORT_SUBJECT;

use super::config::FederationConfig;
use super::gate::Publishable;

/// How long a connection attempt, a flush or an acknowledgement may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long asking for a JetStream stream may take (a user without JetStream
/// permissions never gets an answer).
const STREAM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The JetStream API call that finds the stream covering a subject.
const STREAM_NAMES: &str = "$JS.API.STREAM.NAMES";

/// The answer to [`STREAM_NAMES`] (only what is read).
#[derive(serde::Deserialize)]
struct StreamNames {
    streams: Option<Vec<String>>,
}

/// A JetStream publish acknowledgement, or its error.
#[derive(serde::Deserialize)]
struct PubAck {
    stream: Option<String>,
    error: Option<ApiError>,
}

#[derive(serde::Deserialize)]
struct ApiError {
    err_code: Option<u64>,
    description: Option<String>,
}

/// A reply subject nobody else can predict or tie to earlier ones: `_INBOX.` and 128
/// random bits from the operating system's CSPRNG.
pub(crate) fn fresh_inbox() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("_INBOX.{}", hex::encode(bytes))
}

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
    #[error(transparent)]
    Credentials(#[from] truebit_nats_auth::CredentialsError),
    #[error("invalid NATS server list: {0}")]
    Servers(String),
    #[error("cannot start the NATS connection thread: {0}")]
    Runtime(std::io::Error),
}

/// A one-thread runtime that owns the client's connection task (and its socket).
/// [`IoRuntime::shut_down`] drops the runtime and returns once every task (and socket)
/// of it is gone.
#[derive(Debug)]
pub(crate) struct IoRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl IoRuntime {
    fn start() -> std::io::Result<IoRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("federation-nats".into())
            .spawn(move || {
                // Tasks of a current-thread runtime run while it blocks on something.
                let _ = runtime.block_on(stopped);
                drop(runtime);
                let _ = finished.send(());
            })?;
        Ok(IoRuntime {
            handle,
            stop: Some(stop),
            done: Some(done),
        })
    }

    /// Ends the runtime: its tasks are dropped, their sockets closed.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            if tokio::time::timeout(IO_TIMEOUT, done).await.is_err() {
                tracing::warn!("federation: the NATS connection task did not stop in time");
            }
        }
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A live (or reconnecting) client.
#[derive(Debug)]
pub(crate) struct Nats {
    client: async_nats::Client,
    io: IoRuntime,
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
        let mut io = IoRuntime::start().map_err(ConnectError::Runtime)?;
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let options = options(config, &closed, &link, &generation).await?;
            // The connection task is spawned on the I/O runtime; ending that runtime (on
            // cancel) drops the attempt and its socket: nothing connects later.
            let connecting = io.handle.spawn(options.connect(servers.clone()));
            let result = tokio::select! {
                () = cancel.cancelled() => {
                    closed.store(true, Ordering::SeqCst);
                    io.shut_down().await;
                    return Ok(None);
                }
                r = connecting => match r {
                    Ok(r) => r,
                    Err(e) => return Err(ConnectError::Runtime(std::io::Error::other(e.to_string()))),
                },
            };
            match result {
                Ok(client) => {
                    return Ok(Some(Nats {
                        client,
                        io,
                        link: link.subscribe(),
                        closed,
                        delivery: Mutex::new(None),
                    }));
                }
                Err(error) => {
                    let message = format!("cannot connect: {error}");
                    if attempt == 1 {
                        tracing::warn!(%error, "federation: cannot connect; retrying");
                    }
                    link.send_modify(|l| {
                        l.state = LinkState::Connecting;
                        l.last_error = Some(message);
                    });
                    tokio::select! {
                        () = cancel.cancelled() => {
                            io.shut_down().await;
                            return Ok(None);
                        }
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
        let lookup = serde_json::json!({ "subject": REPORT_SUBJECT }).to_string();
        let found = self
            .request(
                STREAM_NAMES,
                None,
                lookup.into_bytes(),
                STREAM_LOOKUP_TIMEOUT,
            )
            .await
            .ok()
            .and_then(|reply| serde_json::from_slice::<StreamNames>(&reply.payload).ok())
            .and_then(|names| names.streams.and_then(|s| s.into_iter().next()));
        let delivery = match found {
            Some(stream) => {
                tracing::info!(stream = %stream, "federation: JetStream stream found; reports are acknowledged");
                Delivery::Jetstream
            }
            None => {
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
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", report.message_id());
                let reply = self
                    .request(REPORT_SUBJECT, Some(headers), payload, IO_TIMEOUT)
                    .await;
                let reply = match reply {
                    Ok(reply) => reply,
                    Err(e) => {
                        use async_nats::RequestErrorKind as K;
                        return Err(match e.kind() {
                            K::TimedOut => PublishError::TimedOut,
                            K::NoResponders => {
                                // The stream went away: ask again next time.
                                *lock(&self.delivery) = None;
                                PublishError::Failed("no JetStream stream answered".into())
                            }
                            K::Other => PublishError::Failed(e.to_string()),
                        });
                    }
                };
                match serde_json::from_slice::<PubAck>(&reply.payload) {
                    Ok(PubAck {
                        stream: Some(_),
                        error: None,
                    }) => Ok(Delivery::Jetstream),
                    Ok(PubAck {
                        error: Some(error), ..
                    }) => {
                        // 10060: the stream is not there any more; ask again next time.
                        if error.err_code == Some(10_060) {
                            *lock(&self.delivery) = None;
                        }
                        Err(PublishError::Failed(format!(
                            "the stream refused the report: {}",
                            error.description.unwrap_or_default()
                        )))
                    }
                    _ => Err(PublishError::Failed(
                        "unreadable acknowledgement from the stream".into(),
                    )),
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

    /// A request whose reply comes back on a fresh random inbox, subscribed for this
    /// request only (unsubscribed when it returns).
    async fn request(
        &self,
        subject: &'static str,
        headers: Option<async_nats::HeaderMap>,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<async_nats::Message, async_nats::RequestError> {
        let mut request = async_nats::Request::new()
            .payload(payload.into())
            .inbox(fresh_inbox())
            .timeout(Some(timeout));
        if let Some(headers) = headers {
            request = request.headers(headers);
        }
        self.client.send_request(subject, request).await
    }

    /// Publishes `payload` on `subject` with a fresh random inbox as its reply subject,
    /// subscribed before the publish, and returns the replies' payloads as they come
    /// (any number of responders: every aggregator replica answers on its own). The
    /// inbox is unsubscribed when the returned stream is dropped.
    pub(crate) async fn scatter(
        &self,
        subject: &'static str,
        payload: Vec<u8>,
    ) -> Result<impl futures_util::Stream<Item = Vec<u8>> + Unpin, PublishError> {
        use futures_util::StreamExt as _;
        if !self.is_connected() {
            return Err(PublishError::NotConnected);
        }
        let inbox = fresh_inbox();
        let replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| PublishError::Failed(e.to_string()))?;
        self.client
            .publish_with_reply(subject, inbox, payload.into())
            .await
            .map_err(|e| PublishError::Failed(e.to_string()))?;
        match tokio::time::timeout(IO_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(PublishError::Failed(e.to_string())),
            Err(_) => return Err(PublishError::TimedOut),
        }
        Ok(replies.map(|message| message.payload.to_vec()))
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

    /// Closes the connection for good: no reconnection afterwards. A live connection
    /// is drained first (at most 2 s); then the connection task and its socket are
    /// ended, also when the server no longer answers or the client is reconnecting.
    pub(crate) async fn close(mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if self.is_connected() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.client.drain()).await;
        }
        self.io.shut_down().await;
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
    let options =
        truebit_nats_auth::connect_options(&config.auth, config.ca_file.as_deref()).await?;
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
            tracing::warn!(error = %e, "federation: the NATS server reported an error");
            link.send_modify(|l| l.last_error = Some(message));
        }
        E::ClientError(e) => {
            let message = format!("client: {e}");
            tracing::debug!(error = %e, "federation: NATS client error");
            link.send_modify(|l| l.last_error = Some(message));
        }
        E::LameDuckMode | E::Draining | E::Closed | E::SlowConsumer(_) => {}
    }
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
    fn every_inbox_is_new() {
        let a = fresh_inbox();
        let b = fresh_inbox();
        assert_ne!(a, b);
        assert_eq!(a.len(), "_INBOX.".len() + 32);
        assert!(a.starts_with("_INBOX."));
    }

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
