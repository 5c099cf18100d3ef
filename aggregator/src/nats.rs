//! The only module that names async-nats: the connection, the report feed (a JetStream
//! durable pull consumer when a stream covers the report subject, else a core
//! subscription) and the statistics publisher.
//!
//! Replies to the aggregator travel under its own inbox prefix, `_AGGREGATOR_INBOX`:
//! monitors may read `_INBOX.>`, and a pull consumer hands reports out as replies.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use futures_util::{Stream, StreamExt};
use truebit_protocol::certificate::STATS_SIGNATURE_SUBJECT;
use truebit_protocol::{PROOF_REQUEST_SUBJECT, REPORT_SUBJECT, STATS_SUBJECT};

use crate::config::NatsConfig;
use crate::metrics::Metrics;

/// The aggregator's reply subject prefix (deploy/nats-server.conf lets only it read there).
pub const INBOX_PREFIX: &str = "_AGGREGATOR_INBOX";

/// The stream `--create-stream` creates.
pub const STREAM_NAME: &str = "TRUEBIT_REPORTS";

/// How long the stream lookup may take: a server without JetStream may never answer
/// (a client subscribed to `>` swallows the request).
pub const STREAM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Most messages handed to the pipeline at once.
pub const MAX_BATCH: usize = 2_048;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(transparent)]
    Credentials(#[from] truebit_nats_auth::CredentialsError),
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("NATS: {0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> NatsError {
    NatsError::Other(e.to_string())
}

fn js_err(e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream(e.to_string())
}

/// A connected client (cheap to clone).
#[derive(Clone, Debug)]
pub struct Nats {
    client: async_nats::Client,
}

impl Nats {
    /// Connects (retrying in the background if the server is not up yet). Connection
    /// changes and slow-consumer drops (a core subscription that fell behind) are
    /// counted in `metrics`.
    pub async fn connect(config: &NatsConfig, metrics: Arc<Metrics>) -> Result<Nats, NatsError> {
        let options =
            truebit_nats_auth::connect_options(&config.auth, config.ca_file.as_deref()).await?;
        let options = options
            .custom_inbox_prefix(INBOX_PREFIX)
            .name("truebit-aggregator")
            .ignore_discovered_servers()
            .no_echo()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(10))
            .request_timeout(Some(Duration::from_secs(10)))
            .subscription_capacity(65_536)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((250u64 << attempts.min(6)).min(10_000))
            })
            .event_callback(move |event| {
                let metrics = Arc::clone(&metrics);
                async move {
                    match event {
                        async_nats::Event::Connected => metrics.set_connected(true),
                        async_nats::Event::Disconnected => {
                            metrics.set_connected(false);
                            tracing::warn!("NATS connection lost; reconnecting");
                        }
                        async_nats::Event::SlowConsumer(_) => metrics.slow_consumer(),
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            });
        let client =
            options
                .connect(config.urls.as_slice())
                .await
                .map_err(|e| NatsError::Connect {
                    url: config.urls.join(","),
                    detail: e.to_string(),
                })?;
        Ok(Nats { client })
    }

    /// Creates the report stream if it does not exist (`--create-stream`), keeping at
    /// most `max_bytes` of reports, in `replicas` copies (3 on a 3-server cluster: the
    /// stream and every consumer on it survive the loss of one server).
    pub async fn create_stream(&self, max_bytes: u64, replicas: usize) -> Result<(), NatsError> {
        let js = jetstream::new(self.client.clone());
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM_NAME.into(),
            num_replicas: replicas,
            subjects: vec![REPORT_SUBJECT.into()],
            storage: jetstream::stream::StorageType::File,
            max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(2 * 3_600),
            max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
            max_message_size: 1024 * 1024,
            discard: jetstream::stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            let text = e.to_string();
            // JetStream error 10047: insufficient storage resources available.
            if text.contains("insufficient") || text.contains("10047") {
                js_err(format!(
                    "cannot create the report stream {STREAM_NAME}: the NATS server's JetStream \
                     storage has no room for {} MiB; free disk space on the server or lower \
                     STREAM_MAX_MIB ({text})",
                    max_bytes / (1024 * 1024)
                ))
            } else {
                js_err(e)
            }
        })?;
        Ok(())
    }

    /// The report feed: a durable pull consumer `consumer` on the stream covering the
    /// report subject if there is one, else a core subscription. The server is asked
    /// once: a server without JetStream (no answer to the stream lookup, `no responders`,
    /// or JetStream not enabled for the account) and one with JetStream but no stream
    /// both give the core subscription; only a connection that is down is an error (the
    /// caller retries).
    ///
    /// With `require_stream` (the aggregator was told to create the stream, so the server
    /// has JetStream), a lookup that fails or gets no answer is an error and the caller
    /// retries: a cluster electing the stream's leader can leave a lookup unanswered, and
    /// a core subscription taken then would miss every report stored while it ran.
    pub async fn reports(
        &self,
        consumer: &str,
        ack_wait: Duration,
        require_stream: bool,
    ) -> Result<Feed, NatsError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(NatsError::Other(
                "not connected to the NATS server yet".into(),
            ));
        }
        let context = jetstream::new(self.client.clone());
        let lookup = tokio::time::timeout(
            STREAM_LOOKUP_TIMEOUT,
            context.stream_by_subject(REPORT_SUBJECT),
        )
        .await;
        let stream_name = match lookup {
            Ok(Ok(name)) => name,
            Ok(Err(e)) if require_stream => {
                return Err(js_err(format!(
                    "the report stream was created but its lookup failed: {}",
                    truebit_web::format::error_chain(&e)
                )));
            }
            Err(_) if require_stream => {
                return Err(js_err(format!(
                    "the report stream was created but its lookup got no answer in {} s",
                    STREAM_LOOKUP_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                use jetstream::context::GetStreamByNameErrorKind as K;
                let why = match e.kind() {
                    K::NotFound => "JetStream has no stream on the report subject".to_owned(),
                    _ if self.client.connection_state()
                        != async_nats::connection::State::Connected =>
                    {
                        return Err(js_err(e));
                    }
                    _ => format!(
                        "no JetStream on the server ({})",
                        truebit_web::format::error_chain(&e)
                    ),
                };
                return self.core_feed(why).await;
            }
            Err(_) => {
                if self.client.connection_state() != async_nats::connection::State::Connected {
                    return Err(NatsError::Other(
                        "connection lost during the stream lookup".into(),
                    ));
                }
                return self
                    .core_feed(format!(
                        "no JetStream on the server (the stream lookup got no answer in {} s)",
                        STREAM_LOOKUP_TIMEOUT.as_secs()
                    ))
                    .await;
            }
        };
        let mode = format!("JetStream stream {stream_name}, durable consumer {consumer}");
        let stream = context.get_stream(&stream_name).await.map_err(js_err)?;
        let consumer = stream
            .get_or_create_consumer::<pull::Config>(
                consumer,
                pull::Config {
                    durable_name: Some(consumer.to_owned()),
                    // Explicit: with ack-all, a restarted aggregator's first acknowledgement
                    // would also cover reports the stopped one received but never stored.
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(js_err)?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(MAX_BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(js_err)?;
        let inner = messages.ready_chunks(MAX_BATCH).map(|items| {
            let mut payloads = Vec::with_capacity(items.len());
            let mut acks = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Ok(message) => {
                        payloads.push(message.payload.to_vec());
                        acks.push(Ack(message));
                    }
                    Err(e) => tracing::warn!(error = %e, "JetStream consumer"),
                }
            }
            Incoming { payloads, acks }
        });
        Ok(Feed {
            delivery: Delivery::JetStream,
            mode,
            inner: Box::pin(inner),
        })
    }

    /// Whether the server now answers the stream lookup for the report subject: a core
    /// feed asks this from time to time and is replaced by the stream once it is there.
    pub async fn has_report_stream(&self) -> bool {
        let context = jetstream::new(self.client.clone());
        matches!(
            tokio::time::timeout(
                STREAM_LOOKUP_TIMEOUT,
                context.stream_by_subject(REPORT_SUBJECT),
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// A plain subscription to the report subject (at most once).
    async fn core_feed(&self, why: String) -> Result<Feed, NatsError> {
        let sub = self.client.subscribe(REPORT_SUBJECT).await.map_err(other)?;
        let inner = sub.ready_chunks(MAX_BATCH).map(|messages| Incoming {
            payloads: messages.into_iter().map(|m| m.payload.to_vec()).collect(),
            acks: Vec::new(),
        });
        Ok(Feed {
            delivery: Delivery::Core,
            mode: format!(
                "core subscription: {why}; reports sent while the aggregator is down are lost"
            ),
            inner: Box::pin(inner),
        })
    }

    /// Publishes certified statistics and waits until the server has them.
    pub async fn publish_stats(&self, wire: Vec<u8>) -> Result<(), NatsError> {
        self.client
            .publish(STATS_SUBJECT, wire.into())
            .await
            .map_err(other)?;
        self.client.flush().await.map_err(other)
    }

    /// Whether the durable consumer `consumer` has stored every report the stream held
    /// at the time of the call: the stream's last sequence is read once, then the
    /// consumer's acknowledgement floor (every report up to it handed out, stored and
    /// acknowledged) must reach it within `within`. Reports published after the call
    /// do not hold it back, so a busy stream does not either. With no stream on the
    /// report subject (a core subscription) there is nothing to catch up with: `true`.
    pub async fn caught_up(&self, consumer: &str, within: Duration) -> Result<bool, NatsError> {
        let context = jetstream::new(self.client.clone());
        let lookup = tokio::time::timeout(
            STREAM_LOOKUP_TIMEOUT,
            context.stream_by_subject(REPORT_SUBJECT),
        )
        .await
        .map_err(|_| js_err("the stream lookup got no answer"))?;
        let name = match lookup {
            Ok(name) => name,
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamByNameErrorKind::NotFound
                ) =>
            {
                return Ok(true)
            }
            Err(e) => return Err(js_err(e)),
        };
        let mut stream = context.get_stream(&name).await.map_err(js_err)?;
        let last = stream.info().await.map_err(js_err)?.state.last_sequence;
        let mut consumer: jetstream::consumer::Consumer<pull::Config> =
            stream.get_consumer(consumer).await.map_err(js_err)?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let info = consumer.info().await.map_err(js_err)?;
            if info.ack_floor.stream_sequence >= last {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(
                    stream.last = last,
                    consumer.ack_floor = info.ack_floor.stream_sequence,
                    consumer.pending = info.num_pending,
                    consumer.ack_pending = info.num_ack_pending,
                    "the consumer is behind the stream"
                );
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes this replica's signed statistics to the other replicas.
    pub async fn publish_vote(&self, wire: Vec<u8>) -> Result<(), NatsError> {
        self.client
            .publish(STATS_SIGNATURE_SUBJECT, wire.into())
            .await
            .map_err(other)?;
        self.client.flush().await.map_err(other)
    }

    /// The other replicas' signed statistics (this connection's own are not echoed).
    pub async fn votes(&self) -> Result<impl Stream<Item = Vec<u8>> + Send + Unpin, NatsError> {
        let sub = self
            .client
            .subscribe(STATS_SIGNATURE_SUBJECT)
            .await
            .map_err(other)?;
        Ok(sub.map(|m| m.payload.to_vec()))
    }

    /// Uptime proof requests: a plain subscription (not a queue group: every replica
    /// answers with its own signature). Each item is the request bytes and the subject
    /// to answer on.
    pub async fn proof_requests(
        &self,
    ) -> Result<impl Stream<Item = ProofMessage> + Send + Unpin, NatsError> {
        let sub = self
            .client
            .subscribe(PROOF_REQUEST_SUBJECT)
            .await
            .map_err(other)?;
        Ok(sub.map(|m| ProofMessage {
            payload: m.payload.to_vec(),
            reply: m.reply.map(|r| r.to_string()),
        }))
    }

    /// Answers a request on its reply subject.
    pub async fn reply(&self, subject: String, wire: Vec<u8>) -> Result<(), NatsError> {
        self.client
            .publish(subject, wire.into())
            .await
            .map_err(other)?;
        self.client.flush().await.map_err(other)
    }

    /// Flushes and closes the connection.
    pub async fn close(self) {
        let _ = self.client.flush().await;
        let _ = self.client.drain().await;
    }
}

/// One uptime proof request as received.
#[derive(Debug)]
pub struct ProofMessage {
    pub payload: Vec<u8>,
    /// The requester's inbox; `None` when it sent none (nothing to answer).
    pub reply: Option<String>,
}

/// How reports arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// A durable pull consumer: acknowledged after the store commit (at least once).
    JetStream,
    /// A plain subscription (at most once).
    Core,
}

/// Messages that arrived together, and (JetStream) their acknowledgements.
#[derive(Debug)]
pub struct Incoming {
    pub payloads: Vec<Vec<u8>>,
    pub acks: Vec<Ack>,
}

/// Acknowledges one JetStream message.
pub struct Ack(jetstream::Message);

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

impl Ack {
    /// Acknowledges (a report acknowledged but lost on the way is delivered again after
    /// the ack wait, and then dropped as a duplicate).
    pub async fn ack(&self) -> Result<(), NatsError> {
        self.0.ack().await.map_err(js_err)
    }
}

/// The report feed.
pub struct Feed {
    delivery: Delivery,
    mode: String,
    inner: Pin<Box<dyn Stream<Item = Incoming> + Send>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl Feed {
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// One sentence for the log: which mode, and why.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// The next batch; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.inner.next().await
    }
}
