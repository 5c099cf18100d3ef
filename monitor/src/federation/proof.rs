//! Uptime proofs, the monitor's side (docs/FEDERATION.md, "Uptime proofs").
//!
//! The operator asks the hub for a certified statement of this node's availability over
//! whole UTC days ([`ProofPeriod`]):
//!
//! 1. a fresh X25519 key pair per request (the replies are sealed to its public half,
//!    so nobody else on the NATS server can read them, nor use a replayed request);
//! 2. the request (node id, public key, period, current window, reply key), signed with
//!    the node's federation key: only this node can obtain its own statement;
//! 3. published on [`PROOF_REQUEST_SUBJECT`] with a fresh inbox subscribed first; every
//!    aggregator replica answers on its own, with a statement it computed from its own
//!    store and signed with its key, or with a refusal code;
//! 4. replies are collected for up to [`DEFAULT_PROOF_WAIT`] or until the threshold of
//!    the pinned keys signed identical statement bytes; a reply sealed wrongly, signed
//!    by a key that is not pinned, not verifying, or about another node or period does
//!    not count;
//! 5. the proof is assembled and verified against the pinned key set before it is
//!    returned, or one line says why there is none ("2 of 3 replicas refused: stale
//!    request (check this machine's clock)").
//!
//! Nothing here runs unless the operator asks (the CLI's `uptime-proof`, or the API's
//! `GET /api/federation/uptime-proof`); each request opens a connection of its own and
//! closes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use truebit_clock::Clock;
use truebit_protocol::certificate::{KeySet, StatsSignature};
use truebit_protocol::identity::NodeId;
use truebit_protocol::proof::{
    ProofError, ProofReply, ProofRequest, RefusalCode, SealSecret, UptimeProof,
    PROOF_REQUEST_SUBJECT,
};
use truebit_protocol::window::window_of;

pub use super::period::{format_day, parse_day, PeriodError, ProofPeriod, DEFAULT_PROOF_DAYS};

use super::config::FederationConfig;
use super::identity::Identity;
use super::nats::{Link, LinkState, Nats};
use crate::store::{Store, StoreError};

/// How long replies are collected when the threshold is not reached sooner.
pub const DEFAULT_PROOF_WAIT: Duration = Duration::from_secs(5);

/// How long connecting to the hub may take.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Why there is no proof. Each message says what to do, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ProofFetchError {
    #[error("federation has no server configured: set FEDERATION_NATS_URL")]
    NotConfigured,
    #[error("no hub keys are pinned: set FEDERATION_AGGREGATOR_KEYS (and _THRESHOLD) or FEDERATION_AGGREGATOR_KEY to the hub's published keys")]
    NoKeys,
    #[error("federation is off: turn it on (dashboard or POST /api/federation/enable); the hub only knows the windows this node reported")]
    NotEnabled,
    #[error("this monitor has no federation identity yet: turn federation on first")]
    NoIdentity,
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error("cannot reach the federation hub: {0}")]
    Unreachable(String),
    #[error("not certified: {0}")]
    NotCertified(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The identity and pinned keys a proof needs, read from the configuration and the
/// store: federation configured, keys pinned, switched on (the stored choice, else
/// FEDERATION_ENABLED), and the identity created.
pub async fn prerequisites(
    store: &Store,
    config: &FederationConfig,
) -> Result<(Identity, KeySet), ProofFetchError> {
    if !config.is_configured() {
        return Err(ProofFetchError::NotConfigured);
    }
    let pinned = config
        .aggregator_keys
        .clone()
        .ok_or(ProofFetchError::NoKeys)?;
    let enabled = store
        .call(Store::federation_settings)
        .await?
        .map_or(config.initial.enabled, |s| s.enabled);
    if !enabled {
        return Err(ProofFetchError::NotEnabled);
    }
    let identity = store
        .call(Store::federation_identity)
        .await?
        .map(Identity::from_row)
        .ok_or(ProofFetchError::NoIdentity)?;
    Ok((identity, pinned))
}

/// What the operator asked for (the CLI's `uptime-proof`, the API's
/// `GET /api/federation/uptime-proof`): the days (`YYYY-MM-DD`, inclusive; see
/// [`ProofPeriod::parse`]), checked first, then the [`prerequisites`], then
/// [`request_uptime_proof`].
pub async fn fetch_for_operator(
    store: &Store,
    config: &FederationConfig,
    days: (Option<&str>, Option<&str>),
    clock: &Clock,
    wait: Duration,
) -> Result<(ProofPeriod, UptimeProof), ProofFetchError> {
    let period = ProofPeriod::parse(days.0, days.1, clock.now_secs())?;
    let (identity, pinned) = prerequisites(store, config).await?;
    let proof = request_uptime_proof(config, &identity, &pinned, period, clock, wait).await?;
    Ok((period, proof))
}

/// Asks the hub for this node's uptime proof over `period`: connects (on a connection
/// of its own, closed before this returns), requests, collects the replicas' replies
/// for at most `wait`, and returns the proof verified against `pinned`.
pub async fn request_uptime_proof(
    config: &FederationConfig,
    identity: &Identity,
    pinned: &KeySet,
    period: ProofPeriod,
    clock: &Clock,
    wait: Duration,
) -> Result<UptimeProof, ProofFetchError> {
    if !config.is_configured() {
        return Err(ProofFetchError::NotConfigured);
    }
    let (link_tx, link_rx) = watch::channel(Link {
        state: LinkState::Connecting,
        generation: 0,
        last_error: None,
    });
    let cancel = CancellationToken::new();
    let timer = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CONNECT_WAIT).await;
            cancel.cancel();
        })
    };
    let connected = Nats::connect(config, Arc::new(link_tx), &cancel).await;
    timer.abort();
    let nats = match connected {
        Ok(Some(nats)) => nats,
        Ok(None) => {
            let why = link_rx
                .borrow()
                .last_error
                .clone()
                .unwrap_or_else(|| "no answer".into());
            return Err(ProofFetchError::Unreachable(format!(
                "no server accepted the connection within {} s ({why})",
                CONNECT_WAIT.as_secs()
            )));
        }
        Err(error) => return Err(ProofFetchError::Unreachable(error.to_string())),
    };
    let result = fetch(&nats, identity, pinned, period, clock, wait).await;
    nats.close().await;
    // A server that refused the request (a hub whose NATS permissions predate uptime
    // proofs) says so on the connection, not in a reply.
    let server_said = link_rx
        .borrow()
        .last_error
        .as_deref()
        .and_then(|e| e.strip_prefix("server: "))
        .map(str::to_owned);
    let result = match (result, server_said) {
        (Err(ProofFetchError::NotCertified(line)), Some(said)) => Err(
            ProofFetchError::NotCertified(format!("{line}; the NATS server said: {said}")),
        ),
        (result, _) => result,
    };
    match &result {
        Ok(proof) => tracing::info!(
            from = %period.first_day(),
            to = %period.last_day(),
            signatures = proof.signatures().len(),
            uptime_s = proof.statement().uptime_s,
            "federation: uptime proof certified"
        ),
        Err(error) => tracing::warn!(
            from = %period.first_day(),
            to = %period.last_day(),
            %error,
            "federation: no uptime proof"
        ),
    }
    result
}

/// The request and the collection of its replies on an open connection.
async fn fetch(
    nats: &Nats,
    identity: &Identity,
    pinned: &KeySet,
    period: ProofPeriod,
    clock: &Clock,
    wait: Duration,
) -> Result<UptimeProof, ProofFetchError> {
    let secret = SealSecret::generate(&mut rand::rngs::OsRng);
    let request = ProofRequest {
        node: identity.node_id(),
        key: identity.public_key(),
        from: period.from(),
        to: period.to(),
        window: window_of(clock.now_secs()).as_secs(),
        reply: secret.public(),
    };
    let wire = request.sign(identity.signing_key()).to_wire();
    let mut replies = nats
        .scatter(PROOF_REQUEST_SUBJECT, wire)
        .await
        .map_err(|e| ProofFetchError::Unreachable(e.to_string()))?;
    let mut collector = Collector::new(pinned, &secret, identity.node_id(), period);
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if let Some(proof) = collector.offer(&reply) {
            return Ok(proof);
        }
        if collector.all_answered() {
            break;
        }
    }
    Err(ProofFetchError::NotCertified(collector.failure(wait)))
}

/// The replies to one request so far.
struct Collector<'a> {
    pinned: &'a KeySet,
    secret: &'a SealSecret,
    node: NodeId,
    period: ProofPeriod,
    /// Statement bytes -> the valid signatures of distinct pinned keys over them.
    statements: BTreeMap<Vec<u8>, Vec<StatsSignature>>,
    /// Replicas that answered (by name), whatever they answered.
    answered: BTreeSet<String>,
    refused: BTreeMap<String, RefusalCode>,
    /// Why replies did not count, with how many.
    ignored: BTreeMap<&'static str, usize>,
}

impl<'a> Collector<'a> {
    fn new(
        pinned: &'a KeySet,
        secret: &'a SealSecret,
        node: NodeId,
        period: ProofPeriod,
    ) -> Collector<'a> {
        Collector {
            pinned,
            secret,
            node,
            period,
            statements: BTreeMap::new(),
            answered: BTreeSet::new(),
            refused: BTreeMap::new(),
            ignored: BTreeMap::new(),
        }
    }

    fn ignore(&mut self, why: &'static str) -> Option<UptimeProof> {
        tracing::debug!(
            reason = why,
            "federation: an uptime proof reply does not count"
        );
        *self.ignored.entry(why).or_default() += 1;
        None
    }

    /// Takes one reply; returns the proof once the pinned threshold signed identical
    /// statement bytes (and the assembled proof verifies).
    fn offer(&mut self, wire: &[u8]) -> Option<UptimeProof> {
        match ProofReply::from_wire(wire) {
            Ok(reply) => self.answered.insert(reply.replica().to_owned()),
            Err(_) => return self.ignore("unreadable reply"),
        };
        // Opening checks the seal, the form and the signature with the key it names.
        let proof = match ProofReply::open(wire, self.secret) {
            Ok(proof) => proof,
            Err(ProofError::Refused { replica, code }) => {
                self.refused.insert(replica, code);
                return None;
            }
            Err(ProofError::Unseal) => return self.ignore("not sealed to this request"),
            Err(_) => return self.ignore("not a valid signed statement"),
        };
        if !self.pinned.contains(&proof.sig.key) {
            return self.ignore("signed by a key that is not pinned");
        }
        let Ok(statement) = proof.uptime_statement() else {
            return self.ignore("not a valid signed statement");
        };
        if statement.node != self.node
            || statement.from != self.period.from()
            || statement.to != self.period.to()
        {
            return self.ignore("a statement of another node or period");
        }
        if statement.keys != self.pinned.fingerprint() {
            return self.ignore("issued for another hub key set");
        }
        let signatures = self.statements.entry(proof.statement.clone()).or_default();
        if signatures.iter().any(|s| s.key == proof.sig.key) {
            return None;
        }
        signatures.push(proof.sig);
        if signatures.len() < self.pinned.threshold() {
            return None;
        }
        let signatures = signatures.clone();
        match UptimeProof::assemble(&proof.statement, signatures, self.pinned)
            .and_then(|p| p.verify(self.pinned).map(|_| p))
        {
            Ok(proof) => Some(proof),
            Err(error) => {
                tracing::warn!(%error, "federation: an uptime proof with enough signatures does not verify");
                None
            }
        }
    }

    /// Every pinned replica answered (nothing more to wait for).
    fn all_answered(&self) -> bool {
        self.answered.len() >= self.pinned.keys().len()
    }

    /// Why no proof came out of the replies, in one line.
    fn failure(&self, wait: Duration) -> String {
        let replicas = self.pinned.keys().len();
        let needed = self.pinned.threshold();
        let mut parts = Vec::new();
        if !self.refused.is_empty() {
            let mut by_code: BTreeMap<&'static str, usize> = BTreeMap::new();
            for code in self.refused.values() {
                *by_code.entry(code.describe()).or_default() += 1;
            }
            let reasons = if by_code.len() == 1 {
                by_code.keys().map(|t| (*t).to_owned()).collect::<Vec<_>>()
            } else {
                by_code.iter().map(|(t, n)| format!("{n} {t}")).collect()
            };
            parts.push(format!(
                "{} of {replicas} replicas refused: {}",
                self.refused.len(),
                reasons.join(", ")
            ));
        }
        let best = self.statements.values().map(Vec::len).max().unwrap_or(0);
        if self.statements.len() > 1 {
            parts.push(format!(
                "the replicas that answered disagree ({} different statements, at most {best} signature(s) on one, {needed} needed)",
                self.statements.len()
            ));
        } else if best > 0 {
            parts.push(format!("{best} of the {needed} signatures needed arrived"));
        }
        let ignored: usize = self.ignored.values().sum();
        if ignored > 0 {
            let why: Vec<String> = self
                .ignored
                .iter()
                .map(|(w, n)| format!("{n} {w}"))
                .collect();
            parts.push(format!(
                "{ignored} reply(ies) did not count: {}",
                why.join(", ")
            ));
        }
        let silent = replicas.saturating_sub(self.answered.len());
        if self.answered.is_empty() {
            parts.push(format!(
                "no aggregator replica answered within {} s (is the hub running a version that serves uptime proofs?)",
                wait.as_secs()
            ));
        } else if silent > 0 {
            parts.push(format!(
                "{silent} of {replicas} did not answer within {} s",
                wait.as_secs()
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng as _;
    use truebit_protocol::identity::PublicKey;
    use truebit_protocol::proof::{ReplicaProof, UptimeStatement, DAY};
    use truebit_protocol::sign::SigningKey;

    use super::*;
    use crate::federation::identity::test_fixtures::identity;

    /// 2025-11-01T00:00:00Z.
    const FROM: u64 = 1_761_955_200;

    fn replica_key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[60 + i; 32])
    }

    fn hub() -> KeySet {
        let keys = (1..=3)
            .map(|i| PublicKey::from(&replica_key(i).verifying_key()))
            .collect();
        KeySet::new(keys, 2).expect("2 of 3")
    }

    fn period() -> ProofPeriod {
        ProofPeriod::new(FROM, FROM + DAY, FROM + 2 * DAY).expect("one closed day")
    }

    fn statement(windows: &[(u64, bool)]) -> UptimeStatement {
        UptimeStatement::new_from_windows(
            identity().node_id(),
            FROM,
            FROM + DAY,
            windows.iter().copied(),
            &hub(),
        )
        .expect("statement")
    }

    /// Replica `i`'s reply with `statement`, signed with `key`, sealed to `to`.
    fn sealed(i: u8, statement: &UptimeStatement, key: &SigningKey, to: &SealSecret) -> Vec<u8> {
        let proof = ReplicaProof::sign(&format!("a{i}"), statement, key).expect("signs");
        ProofReply::seal(
            &proof,
            &to.public(),
            &mut StdRng::seed_from_u64(u64::from(i)),
        )
        .to_wire()
    }

    fn refused(i: u8, code: RefusalCode) -> Vec<u8> {
        ProofReply::refused(&format!("a{i}"), code).to_wire()
    }

    const UP: &[(u64, bool)] = &[(FROM, true), (FROM + 300, true), (FROM + 600, false)];

    #[test]
    fn two_identical_statements_of_pinned_keys_make_a_verified_proof() {
        let (pinned, secret) = (hub(), SealSecret::generate(&mut rand::rngs::OsRng));
        let mut c = Collector::new(&pinned, &secret, identity().node_id(), period());
        let s = statement(UP);
        assert!(c.offer(&sealed(1, &s, &replica_key(1), &secret)).is_none());
        // The same key again does not count twice.
        assert!(c.offer(&sealed(1, &s, &replica_key(1), &secret)).is_none());
        let proof = c
            .offer(&sealed(2, &s, &replica_key(2), &secret))
            .expect("2 of 3");
        let verified = proof.verify(&pinned).expect("verifies");
        assert_eq!(verified.statement, s);
        assert_eq!(
            verified.statement.windows_reported(),
            vec![FROM, FROM + 300, FROM + 600]
        );
        assert_eq!(verified.statement.uptime_s, 600);
        assert_eq!(verified.signers, pinned.keys()[..2].to_vec());
    }

    #[test]
    fn a_different_statement_a_stranger_and_another_seal_do_not_count() {
        let (pinned, secret) = (hub(), SealSecret::generate(&mut rand::rngs::OsRng));
        let other_secret = SealSecret::generate(&mut rand::rngs::OsRng);
        let mut c = Collector::new(&pinned, &secret, identity().node_id(), period());
        let s = statement(UP);
        let tampered = statement(&[(FROM, true)]);
        assert!(c.offer(&sealed(1, &s, &replica_key(1), &secret)).is_none());
        assert!(c
            .offer(&sealed(3, &tampered, &replica_key(3), &secret))
            .is_none());
        assert!(c.offer(&sealed(4, &s, &replica_key(9), &secret)).is_none());
        assert!(c
            .offer(&sealed(2, &s, &replica_key(2), &other_secret))
            .is_none());
        assert!(c.offer(b"{\"replica\":\"a5\"}").is_none());
        let line = c.failure(Duration::from_secs(5));
        assert_eq!(
            line,
            "the replicas that answered disagree (2 different statements, at most 1 signature(s) on one, 2 needed); \
             3 reply(ies) did not count: 1 not sealed to this request, 1 signed by a key that is not pinned, 1 unreadable reply"
        );
        // Replica 2's statement sealed to this request completes the proof.
        let proof = c
            .offer(&sealed(2, &s, &replica_key(2), &secret))
            .expect("certified by 1 and 2");
        assert_eq!(proof.statement(), &s);
    }

    #[test]
    fn refusals_are_summed_up_in_one_line() {
        let (pinned, secret) = (hub(), SealSecret::generate(&mut rand::rngs::OsRng));
        let mut c = Collector::new(&pinned, &secret, identity().node_id(), period());
        assert!(c.offer(&refused(1, RefusalCode::Stale)).is_none());
        assert!(!c.all_answered());
        assert!(c.offer(&refused(2, RefusalCode::Stale)).is_none());
        assert_eq!(
            c.failure(Duration::from_secs(5)),
            "2 of 3 replicas refused: stale request (check this machine's clock); 1 of 3 did not answer within 5 s"
        );
        assert!(c.offer(&refused(3, RefusalCode::Busy)).is_none());
        assert!(c.all_answered());
        assert_eq!(
            c.failure(Duration::from_secs(5)),
            "3 of 3 replicas refused: 2 stale request (check this machine's clock), 1 the hub is busy (try again in a minute)"
        );
        let silent = Collector::new(&pinned, &secret, identity().node_id(), period());
        assert!(silent
            .failure(Duration::from_secs(5))
            .starts_with("no aggregator replica answered within 5 s"));
    }

    #[test]
    fn a_statement_of_another_period_does_not_count() {
        let (pinned, secret) = (hub(), SealSecret::generate(&mut rand::rngs::OsRng));
        let next_day = ProofPeriod::new(FROM + DAY, FROM + 2 * DAY, FROM + 3 * DAY).expect("day");
        let mut c = Collector::new(&pinned, &secret, identity().node_id(), next_day);
        let s = statement(UP);
        assert!(c.offer(&sealed(1, &s, &replica_key(1), &secret)).is_none());
        assert!(c.offer(&sealed(2, &s, &replica_key(2), &secret)).is_none());
        assert_eq!(
            c.ignored.get("a statement of another node or period"),
            Some(&2)
        );
    }
}
