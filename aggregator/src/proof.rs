//! Uptime proofs, the replica's side: answers each request on
//! [`truebit_protocol::PROOF_REQUEST_SUBJECT`] with its own signed statement, sealed to
//! the requester (see `truebit_protocol::proof` for the protocol).
//!
//! Every replica subscribes (no queue group) and answers on its own: the requester
//! collects the replicas' signatures. At most [`MAX_IN_FLIGHT`] requests are worked on
//! at once; one more is refused `busy` at once, and so is a request that arrives while
//! the replica's consumer has not caught up with the report stream (its statement could
//! then differ from the other replicas'). Refusals are counted by code and logged
//! in one line without the node id.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use truebit_protocol::certificate::KeySet;
use truebit_protocol::proof::{
    ProofError, ProofReply, ProofRequest, RefusalCode, ReplicaProof, SignedProofRequest,
    UptimeProof, UptimeStatement, VerifiedProof, DAY,
};

use crate::key::AggregatorKey;
use crate::metrics::Metrics;
use crate::nats::{Nats, ProofMessage};
use crate::store::Store;
use crate::Clock;

/// Most requests worked on at once by one replica.
pub const MAX_IN_FLIGHT: usize = 16;

/// The proof server of one replica.
#[derive(Debug)]
pub struct ProofServer {
    pub nats: Nats,
    pub store: Store,
    pub key: AggregatorKey,
    /// This replica's name (in its replies).
    pub replica: String,
    /// The hub's key set (its fingerprint goes into every statement).
    pub keys: KeySet,
    pub retention_days: u32,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Requests worked on at once ([`MAX_IN_FLIGHT`]); more are refused `busy`.
    pub max_in_flight: usize,
    pub cancel: CancellationToken,
}

/// What one request needs, shared by the tasks answering.
#[derive(Debug)]
struct Answerer {
    store: Store,
    metrics: Arc<Metrics>,
    key: AggregatorKey,
    replica: String,
    keys: KeySet,
    retention_days: u32,
    clock: Clock,
}

impl ProofServer {
    /// Subscribes (again after a failure) and answers until cancelled.
    pub async fn run(self) {
        let answerer = Arc::new(Answerer {
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            key: self.key.clone(),
            replica: self.replica.clone(),
            keys: self.keys.clone(),
            retention_days: self.retention_days,
            clock: self.clock.clone(),
        });
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        loop {
            let requests = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = self.nats.proof_requests() => r,
            };
            let mut requests = match requests {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to uptime proof requests; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let message = tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    m = requests.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                };
                let ProofMessage { payload, reply } = message;
                let Some(reply) = reply else {
                    tracing::debug!("an uptime proof request without a reply subject");
                    continue;
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    self.refuse(reply, RefusalCode::Busy).await;
                    continue;
                };
                let nats = self.nats.clone();
                let metrics = Arc::clone(&self.metrics);
                let answerer = Arc::clone(&answerer);
                tokio::spawn(async move {
                    let _permit = permit;
                    let answer = answerer.answer(&payload).await;
                    let wire = match &answer {
                        Ok(reply) => reply.to_wire(),
                        Err(code) => ProofReply::refused(&answerer.replica, *code).to_wire(),
                    };
                    match answer {
                        Ok(_) => metrics.proof_served(),
                        Err(code) => {
                            metrics.proof_refused(code);
                            tracing::info!(code = code.as_str(), "uptime proof request refused");
                        }
                    }
                    if let Err(e) = nats.reply(reply, wire).await {
                        tracing::warn!(error = %e, "cannot answer an uptime proof request");
                    }
                });
            }
        }
    }

    async fn refuse(&self, reply: String, code: RefusalCode) {
        self.metrics.proof_refused(code);
        tracing::info!(code = code.as_str(), "uptime proof request refused");
        let wire = ProofReply::refused(&self.replica, code).to_wire();
        if let Err(e) = self.nats.reply(reply, wire).await {
            tracing::warn!(error = %e, "cannot answer an uptime proof request");
        }
    }
}

impl Answerer {
    /// The sealed statement for a request, or why not.
    async fn answer(&self, wire: &[u8]) -> Result<ProofReply, RefusalCode> {
        let request = SignedProofRequest::open(wire).map_err(|e| {
            tracing::debug!(error = %e, "an uptime proof request did not open");
            e.refusal()
        })?;
        let now = self.clock.now_secs();
        let retention_start = now.saturating_sub(u64::from(self.retention_days) * DAY);
        request.check_clock(now, retention_start)?;
        if !self.metrics.caught_up() {
            // Reports of the period may still be in the stream: a statement now could
            // differ from the other replicas'.
            tracing::debug!("uptime proof request while the consumer catches up");
            return Err(RefusalCode::Busy);
        }
        let statement = self.statement(&request).await?;
        let proof =
            ReplicaProof::sign(&self.replica, &statement, self.key.signing_key()).map_err(|e| {
                tracing::error!(error = %e, "cannot sign an uptime statement");
                RefusalCode::Internal
            })?;
        Ok(ProofReply::seal(
            &proof,
            &request.reply,
            &mut rand::rngs::OsRng,
        ))
    }

    async fn statement(&self, request: &ProofRequest) -> Result<UptimeStatement, RefusalCode> {
        let windows = self
            .store
            .node_windows(request.node, request.from, request.to)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read a node's windows for an uptime proof");
                RefusalCode::Internal
            })?;
        UptimeStatement::new_from_windows(
            request.node,
            request.from,
            request.to,
            windows,
            &self.keys,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "cannot compute an uptime statement");
            RefusalCode::Internal
        })
    }
}

/// Reads a proof file and verifies it against `pinned`: the one-paragraph summary
/// `truebit-aggregator verify-proof` prints, or why it does not verify.
pub fn verify_file(bytes: &[u8], pinned: &KeySet) -> Result<String, ProofError> {
    let proof = UptimeProof::from_json(bytes)?;
    let verified = proof.verify(pinned)?;
    Ok(summary(&verified, pinned))
}

/// One paragraph: node, period (UTC days, inclusive), uptime, who signed.
pub fn summary(verified: &VerifiedProof, pinned: &KeySet) -> String {
    let s = &verified.statement;
    let day = |secs: u64| {
        let text =
            truebit_web::format::utc(i64::try_from(secs).unwrap_or(i64::MAX) * 1_000_000_000);
        text.get(..10).unwrap_or(&text).to_owned()
    };
    let signers: Vec<String> = verified.signers.iter().map(|k| k.to_string()).collect();
    format!(
        "Uptime proof for node {node}, {first} to {last} UTC ({days} days): up {pct:.2} % of the time \
         ({up} s up, {down} s down; a report in {reported} of {windows} five-minute windows). \
         Signed by {n} of the {total} pinned hub keys (threshold {threshold}): {signers}.",
        node = s.node,
        first = day(s.from),
        last = day(s.to - DAY),
        days = (s.to - s.from) / DAY,
        pct = s.uptime_percent(),
        up = s.uptime_s,
        down = s.downtime_s,
        reported = s.windows_reported().len(),
        windows = s.windows(),
        n = verified.signers.len(),
        total = pinned.keys().len(),
        threshold = pinned.threshold(),
        signers = signers.join(", "),
    )
}
