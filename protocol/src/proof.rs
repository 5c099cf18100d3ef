//! Uptime proofs: a certified statement of one node's availability that the node can
//! hand to anyone.
//!
//! 1. The node signs a [`ProofRequest`] with its Ed25519 key (so only the node can
//!    obtain its own statement) and publishes it on [`PROOF_REQUEST_SUBJECT`] with a
//!    reply inbox. The request names a fresh X25519 key ([`SealKey`]) for the replies.
//! 2. Every aggregator replica ([`SignedProofRequest::open`], then
//!    [`ProofRequest::check_clock`] with its own clock and retention) computes an
//!    [`UptimeStatement`] from its own store, signs it with its aggregator key
//!    ([`ReplicaProof::sign`]: `PROOF_CONTEXT || statement bytes`) and answers a
//!    [`ProofReply`]: the replica proof sealed to the request's key (a `crypto_box`
//!    sealed box: X25519, XSalsa20-Poly1305), or a refusal code. Nobody else on the
//!    NATS server can read a reply, and a replayed request only produces replies its
//!    author can open.
//! 3. The node keeps the statement bytes that at least M of the N pinned aggregator
//!    keys signed and writes an [`UptimeProof`]; anyone checks it offline against the
//!    hub's keys ([`UptimeProof::verify`]).
//!
//! A statement names nothing but the pseudonymous node id and, per 5-minute window of
//! whole UTC days, whether a report arrived and whether it said the node was `up`.
//! It is byte-identical on every replica that stored the same reports: closed days
//! only, no time of computation, no replica name.
//!
//! Wire forms (compact JSON, fields in this order):
//!
//! ```text
//! request   {"request":{"node":…,"key":…,"from":…,"to":…,"window":…,"reply":…},"sig":"<128 hex>"}
//! reply     {"replica":"a1","sealed":"<hex>"}   or   {"replica":"a1","refused":"stale"}
//! sealed    {"replica":"a1","statement":{…},"key":"<64 hex>","sig":"<128 hex>"}
//! statement {"node":…,"from":…,"to":…,"reported":"<hex>","up":"<hex>","uptime_s":…,"downtime_s":…,"keys":"<32 hex>"}
//! proof     {"statement":{…},"threshold":2,"keys":["<64 hex>",…],"sigs":[{"key":…,"sig":…},…]}
//! ```

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::certificate::{is_replica_name, KeySet, KeySetError, StatsSignature, MAX_SIGNERS};
use crate::hexbytes;
use crate::identity::{InvalidHex, NodeId, PublicKey};
use crate::window::{WindowStart, WINDOW_SECS};

pub use crate::subject::PROOF_REQUEST_SUBJECT;

/// Longest period one proof covers, in days.
pub const MAX_PROOF_DAYS: u64 = 31;

/// Seconds in a UTC day (Unix time has no leap seconds).
pub const DAY: u64 = 86_400;

/// Windows in a day.
pub const WINDOWS_PER_DAY: u64 = DAY / WINDOW_SECS;

/// Prefix of a request signature.
pub const PROOF_REQUEST_CONTEXT: &[u8] = b"truebit.proof.req.v1\n";

/// Prefix of a replica's signature over a statement.
pub const PROOF_CONTEXT: &[u8] = b"truebit.proof.v1\n";

/// How far a request's `window` may be from the replica's own clock's window.
pub const REQUEST_MAX_SKEW_SECS: u64 = 15 * 60;

/// Largest request on the wire.
pub const MAX_REQUEST_WIRE_BYTES: usize = 1_024;

/// Largest canonical statement (31 days: two bitmaps of 2,232 hex digits each).
pub const MAX_STATEMENT_BYTES: usize = 8_192;

/// Largest reply on the wire (a sealed replica proof in hex).
pub const MAX_REPLY_WIRE_BYTES: usize = 2 * (MAX_STATEMENT_BYTES + 512);

/// Largest proof file accepted (pretty-printed ones included).
pub const MAX_PROOF_JSON_BYTES: usize = 64 * 1_024;

/// Why a request, reply, statement or proof was not accepted. One line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} is malformed")]
    Malformed(&'static str),
    #[error("{0} is not in canonical form")]
    NonCanonical(&'static str),
    #[error("the request's node id is not the one of its key")]
    NotYourNode,
    #[error("the request's key is not a valid Ed25519 key")]
    BadKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("`{field}` must be a UTC midnight (a multiple of 86400), not {value}")]
    NotMidnight { field: &'static str, value: u64 },
    #[error("`window` must be a 5-minute window start, not {0}")]
    NotWindowStart(u64),
    #[error("the period is empty: `from` ({from}) must be before `to` ({to})")]
    EmptyRange { from: u64, to: u64 },
    #[error("the period is {days} days long, more than the {MAX_PROOF_DAYS} allowed")]
    RangeTooLong { days: u64 },
    #[error("the statement is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("the reply cannot be opened with this request's secret key")]
    Unseal,
    #[error("replica {replica} refused: {}", code.describe())]
    Refused { replica: String, code: RefusalCode },
    #[error("the statement was issued for another hub key set (fingerprint {statement}, expected {expected})")]
    KeySetMismatch { statement: String, expected: String },
    #[error("the proof's key set is not usable: {0}")]
    KeySet(#[from] KeySetError),
    #[error(
        "signed by {signers} of the pinned aggregator keys, fewer than the {threshold} required"
    )]
    UnderThreshold { signers: usize, threshold: usize },
}

impl ProofError {
    /// The refusal a replica answers for a request that failed
    /// [`SignedProofRequest::open`] with this error.
    pub fn refusal(&self) -> RefusalCode {
        match self {
            Self::NotYourNode => RefusalCode::NotYourNode,
            Self::BadSignature | Self::BadKey => RefusalCode::BadSignature,
            Self::RangeTooLong { .. } => RefusalCode::RangeTooLong,
            _ => RefusalCode::BadRequest,
        }
    }
}

// ---------------------------------------------------------------------------------
// Seal keys

/// An X25519 public key the replies to one request are sealed to: 64 lowercase hex
/// digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealKey([u8; 32]);

impl SealKey {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hexbytes::fmt_hex(&self.0, f)
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey({self})")
    }
}

impl FromStr for SealKey {
    type Err = InvalidHex;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hexbytes::decode(s).map(Self).ok_or(InvalidHex {
            what: "seal key",
            digits: 64,
        })
    }
}

impl Serialize for SealKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hexbytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for SealKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hexbytes::deserialize(deserializer, "an X25519 public key").map(Self)
    }
}

/// The secret half of a [`SealKey`]: made fresh for one request, kept in memory only.
/// `Debug` never prints it; the bytes are zeroed on drop.
pub struct SealSecret(crypto_box::SecretKey);

impl SealSecret {
    /// A fresh key pair from a cryptographic RNG.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> SealSecret {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        SealSecret(crypto_box::SecretKey::from(bytes))
    }

    /// The public key to put in the request's `reply`.
    pub fn public(&self) -> SealKey {
        SealKey(self.0.public_key().to_bytes())
    }
}

impl fmt::Debug for SealSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealSecret(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------
// Requests

/// What a node asks for: its statement for the whole UTC days `[from, to)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofRequest {
    /// Must be `key.node_id()`.
    pub node: NodeId,
    /// The node's Ed25519 public key (the federation identity).
    pub key: PublicKey,
    /// First day covered: a UTC midnight.
    pub from: u64,
    /// Exclusive end: a UTC midnight, `from < to`, at most [`MAX_PROOF_DAYS`] days later.
    pub to: u64,
    /// The window the request was made in: freshness, checked by each replica against
    /// its own clock.
    pub window: u64,
    /// Where the replies are sealed to.
    pub reply: SealKey,
}

const REQUEST_OPEN: &[u8] = br#"{"request":"#;
const SIG_OPEN: &[u8] = br#","sig":""#;
const CLOSE: &[u8] = br#""}"#;
const SIG_HEX: usize = 128;

impl ProofRequest {
    /// A request for `[from, to)` by the holder of `key`, made in `window`.
    pub fn new(key: &SigningKey, from: u64, to: u64, window: u64, reply: SealKey) -> Self {
        let public = PublicKey::from(&key.verifying_key());
        ProofRequest {
            node: public.node_id(),
            key: public,
            from,
            to,
            window,
            reply,
        }
    }

    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a proof request serializes")
    }

    /// Signs `PROOF_REQUEST_CONTEXT || canonical bytes`.
    pub fn sign(&self, key: &SigningKey) -> SignedProofRequest {
        let bytes = self.to_canonical_bytes();
        let signature = key.sign(&with_context(PROOF_REQUEST_CONTEXT, &bytes));
        SignedProofRequest {
            request: self.clone(),
            bytes,
            signature,
        }
    }

    /// The rules that need no clock: midnights, a non-empty period of at most
    /// [`MAX_PROOF_DAYS`], a window start, the node id of the key.
    pub fn check(&self) -> Result<(), ProofError> {
        check_period(self.from, self.to)?;
        if WindowStart::new(self.window).is_none() {
            return Err(ProofError::NotWindowStart(self.window));
        }
        if self.node != self.key.node_id() {
            return Err(ProofError::NotYourNode);
        }
        Ok(())
    }

    /// The rules a replica checks with its own clock (`now`, Unix seconds) and the
    /// oldest report it keeps (`retention_start`, Unix seconds): the request was made
    /// within [`REQUEST_MAX_SKEW_SECS`] of now, covers only closed days, and none
    /// before the first whole day the replica still has.
    pub fn check_clock(&self, now: u64, retention_start: u64) -> Result<(), RefusalCode> {
        let current = now - now % WINDOW_SECS;
        if self.window.abs_diff(current) > REQUEST_MAX_SKEW_SECS {
            return Err(RefusalCode::Stale);
        }
        if self.to > now - now % DAY {
            return Err(RefusalCode::NotYetClosed);
        }
        if self.from < retention_start.div_ceil(DAY).saturating_mul(DAY) {
            return Err(RefusalCode::BeforeRetention);
        }
        Ok(())
    }
}

fn check_period(from: u64, to: u64) -> Result<(), ProofError> {
    for (field, value) in [("from", from), ("to", to)] {
        if value % DAY != 0 || WindowStart::new(value).is_none() {
            return Err(ProofError::NotMidnight { field, value });
        }
    }
    if from >= to {
        return Err(ProofError::EmptyRange { from, to });
    }
    let days = (to - from) / DAY;
    if days > MAX_PROOF_DAYS {
        return Err(ProofError::RangeTooLong { days });
    }
    Ok(())
}

fn with_context(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + bytes.len());
    m.extend_from_slice(context);
    m.extend_from_slice(bytes);
    m
}

/// A request with its exact canonical bytes and the node's signature over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedProofRequest {
    request: ProofRequest,
    bytes: Vec<u8>,
    signature: Signature,
}

impl SignedProofRequest {
    pub fn request(&self) -> &ProofRequest {
        &self.request
    }

    /// `{"request":<canonical bytes>,"sig":"<128 hex>"}`, published on
    /// [`PROOF_REQUEST_SUBJECT`].
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_OPEN.len() + self.bytes.len() + 140);
        out.extend_from_slice(REQUEST_OPEN);
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(SIG_OPEN);
        out.extend_from_slice(hex::encode(self.signature.to_bytes()).as_bytes());
        out.extend_from_slice(CLOSE);
        out
    }

    /// Everything in the message itself: size, envelope, canonical form, the node id
    /// of the key, the signature, the period and window rules. Not the clock rules:
    /// the replica checks those with [`ProofRequest::check_clock`].
    pub fn open(wire: &[u8]) -> Result<ProofRequest, ProofError> {
        if wire.len() > MAX_REQUEST_WIRE_BYTES {
            return Err(ProofError::TooLarge {
                what: "the request",
                len: wire.len(),
                max: MAX_REQUEST_WIRE_BYTES,
            });
        }
        let tail = SIG_OPEN.len() + SIG_HEX + CLOSE.len();
        if wire.len() < REQUEST_OPEN.len() + tail
            || !wire.starts_with(REQUEST_OPEN)
            || !wire.ends_with(CLOSE)
            || !wire[wire.len() - tail..].starts_with(SIG_OPEN)
        {
            return Err(ProofError::Malformed("the request envelope"));
        }
        let inner = &wire[REQUEST_OPEN.len()..wire.len() - tail];
        let sig_hex = &wire[wire.len() - tail + SIG_OPEN.len()..wire.len() - CLOSE.len()];
        let sig: [u8; 64] = std::str::from_utf8(sig_hex)
            .ok()
            .and_then(hexbytes::decode)
            .ok_or(ProofError::Malformed("the request signature"))?;
        let request: ProofRequest =
            serde_json::from_slice(inner).map_err(|_| ProofError::Malformed("the request"))?;
        if request.to_canonical_bytes() != inner {
            return Err(ProofError::NonCanonical("the request"));
        }
        if request.node != request.key.node_id() {
            return Err(ProofError::NotYourNode);
        }
        let key = request
            .key
            .to_verifying_key()
            .map_err(|_| ProofError::BadKey)?;
        key.verify_strict(
            &with_context(PROOF_REQUEST_CONTEXT, inner),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| ProofError::BadSignature)?;
        request.check()?;
        Ok(request)
    }
}

// ---------------------------------------------------------------------------------
// Statements

/// What a replica certifies about one node over whole UTC days `[from, to)`.
///
/// Bitmaps are lowercase hex, one bit per window, bit `i` (most significant bit first
/// within each byte) for the window starting at `from + 300 * i`: `reported` when a
/// report for that window was stored, `up` when that report said the node was `up`.
/// A window without a report, or whose report was not `up`, counts as down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UptimeStatement {
    pub node: NodeId,
    pub from: u64,
    pub to: u64,
    pub reported: String,
    pub up: String,
    /// `300 * popcount(up)`.
    pub uptime_s: u64,
    /// `(to - from) - uptime_s`.
    pub downtime_s: u64,
    /// The issuing key set's [`KeySet::fingerprint`].
    pub keys: String,
}

impl UptimeStatement {
    /// The statement for `node` over `[from, to)` from the windows a store holds
    /// (`(window start, report said up)`; windows outside the period or not aligned
    /// are ignored, a repeated window counts once, `up` if any of its reports was).
    pub fn new_from_windows(
        node: NodeId,
        from: u64,
        to: u64,
        windows: impl IntoIterator<Item = (u64, bool)>,
        key_set: &KeySet,
    ) -> Result<UptimeStatement, ProofError> {
        check_period(from, to)?;
        let bits = ((to - from) / WINDOW_SECS) as usize;
        let mut reported = vec![0u8; bits / 8];
        let mut up = vec![0u8; bits / 8];
        for (window, is_up) in windows {
            if window < from || window >= to || window % WINDOW_SECS != 0 {
                continue;
            }
            let i = ((window - from) / WINDOW_SECS) as usize;
            let mask = 0x80 >> (i % 8);
            reported[i / 8] |= mask;
            if is_up {
                up[i / 8] |= mask;
            }
        }
        let up_windows: u64 = up.iter().map(|b| u64::from(b.count_ones())).sum();
        let uptime_s = up_windows * WINDOW_SECS;
        Ok(UptimeStatement {
            node,
            from,
            to,
            reported: hex::encode(reported),
            up: hex::encode(up),
            uptime_s,
            downtime_s: (to - from) - uptime_s,
            keys: key_set.fingerprint(),
        })
    }

    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement serializes")
    }

    /// Parses canonical statement bytes (the exact bytes a replica signs) and checks
    /// the statement.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<UptimeStatement, ProofError> {
        if bytes.len() > MAX_STATEMENT_BYTES {
            return Err(ProofError::TooLarge {
                what: "the statement",
                len: bytes.len(),
                max: MAX_STATEMENT_BYTES,
            });
        }
        let statement: UptimeStatement =
            serde_json::from_slice(bytes).map_err(|_| ProofError::Malformed("the statement"))?;
        statement.check()?;
        if statement.to_canonical_bytes() != bytes {
            return Err(ProofError::NonCanonical("the statement"));
        }
        Ok(statement)
    }

    /// The statement's own consistency: period rules, bitmap sizes and form, `up`
    /// only where `reported`, and the uptime and downtime they imply.
    pub fn check(&self) -> Result<(), ProofError> {
        check_period(self.from, self.to)?;
        let digits = self.windows() as usize / 4;
        for (bitmap, what) in [
            (&self.reported, "`reported` is not the period's bitmap"),
            (&self.up, "`up` is not the period's bitmap"),
        ] {
            if bitmap.len() != digits || !hexbytes::is_lower_hex(bitmap) {
                return Err(ProofError::Inconsistent(what));
            }
        }
        if self.keys.len() != 32 || !hexbytes::is_lower_hex(&self.keys) {
            return Err(ProofError::Inconsistent(
                "`keys` is not a key set fingerprint",
            ));
        }
        let reported =
            hex::decode(&self.reported).map_err(|_| ProofError::Malformed("`reported`"))?;
        let up = hex::decode(&self.up).map_err(|_| ProofError::Malformed("`up`"))?;
        if reported.iter().zip(&up).any(|(r, u)| u & !r != 0) {
            return Err(ProofError::Inconsistent("a window is up without a report"));
        }
        let up_windows: u64 = up.iter().map(|b| u64::from(b.count_ones())).sum();
        if self.uptime_s != up_windows * WINDOW_SECS {
            return Err(ProofError::Inconsistent("`uptime_s` does not match `up`"));
        }
        if self.downtime_s != (self.to - self.from) - self.uptime_s {
            return Err(ProofError::Inconsistent(
                "`downtime_s` is not the period minus `uptime_s`",
            ));
        }
        Ok(())
    }

    /// Number of windows in the period.
    pub fn windows(&self) -> u64 {
        self.to.saturating_sub(self.from) / WINDOW_SECS
    }

    fn bit(bitmap: &str, from: u64, to: u64, window: u64) -> bool {
        if window < from || window >= to || window % WINDOW_SECS != 0 {
            return false;
        }
        let i = ((window - from) / WINDOW_SECS) as usize;
        bitmap
            .get(i / 4..i / 4 + 1)
            .and_then(|d| u8::from_str_radix(d, 16).ok())
            .is_some_and(|nibble| nibble & (0x8 >> (i % 4)) != 0)
    }

    /// Whether a report for the window starting at `window` was stored.
    pub fn is_reported(&self, window: u64) -> bool {
        Self::bit(&self.reported, self.from, self.to, window)
    }

    /// Whether the window's report said the node was `up`.
    pub fn is_up(&self, window: u64) -> bool {
        Self::bit(&self.up, self.from, self.to, window)
    }

    /// The starts of the windows with a report, ascending.
    pub fn windows_reported(&self) -> Vec<u64> {
        (0..self.windows())
            .map(|i| self.from + i * WINDOW_SECS)
            .filter(|w| self.is_reported(*w))
            .collect()
    }

    /// The starts of the windows whose report said `up`, ascending.
    pub fn windows_up(&self) -> Vec<u64> {
        (0..self.windows())
            .map(|i| self.from + i * WINDOW_SECS)
            .filter(|w| self.is_up(*w))
            .collect()
    }

    /// Uptime as a share of the period, in percent.
    pub fn uptime_percent(&self) -> f64 {
        let period = self.to.saturating_sub(self.from);
        if period == 0 {
            return 0.0;
        }
        self.uptime_s as f64 * 100.0 / period as f64
    }
}

// ---------------------------------------------------------------------------------
// Replica proofs and replies

/// One replica's signed statement (what a sealed reply holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaProof {
    /// The replica's name (1 to 64 of `[A-Za-z0-9_-]`).
    pub replica: String,
    /// The canonical statement bytes the signature covers.
    pub statement: Vec<u8>,
    /// The replica's aggregator key and its signature over
    /// `PROOF_CONTEXT || statement`.
    pub sig: StatsSignature,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaProofIn {
    replica: String,
    statement: UptimeStatement,
    key: PublicKey,
    sig: String,
}

impl ReplicaProof {
    /// Signs `statement` as replica `replica` with the aggregator key.
    pub fn sign(
        replica: &str,
        statement: &UptimeStatement,
        key: &SigningKey,
    ) -> Result<ReplicaProof, ProofError> {
        if !is_replica_name(replica) {
            return Err(ProofError::Malformed("the replica name"));
        }
        statement.check()?;
        let bytes = statement.to_canonical_bytes();
        Ok(ReplicaProof {
            replica: replica.to_owned(),
            sig: StatsSignature::sign_in(PROOF_CONTEXT, &bytes, key),
            statement: bytes,
        })
    }

    /// Whether the signature over the statement verifies with the key it names
    /// (whether that key is pinned is the caller's question).
    pub fn verifies(&self) -> bool {
        self.sig.verifies_in(PROOF_CONTEXT, &self.statement)
    }

    /// The parsed statement.
    pub fn uptime_statement(&self) -> Result<UptimeStatement, ProofError> {
        UptimeStatement::from_canonical_bytes(&self.statement)
    }

    /// `{"replica":…,"statement":{…},"key":…,"sig":…}` (the plaintext of a sealed reply).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.statement.len() + 256);
        out.extend_from_slice(b"{\"replica\":");
        serde_json::to_writer(&mut out, &self.replica).expect("a string serializes");
        out.extend_from_slice(b",\"statement\":");
        out.extend_from_slice(&self.statement);
        out.extend_from_slice(b",\"key\":\"");
        out.extend_from_slice(self.sig.key.to_string().as_bytes());
        out.extend_from_slice(b"\",\"sig\":\"");
        out.extend_from_slice(hex::encode(self.sig.sig.to_bytes()).as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }

    /// Parses and verifies a replica proof: schema, canonical form, statement checks,
    /// and the signature with the key it names.
    pub fn from_wire(wire: &[u8]) -> Result<ReplicaProof, ProofError> {
        if wire.len() > MAX_REPLY_WIRE_BYTES / 2 {
            return Err(ProofError::TooLarge {
                what: "the replica proof",
                len: wire.len(),
                max: MAX_REPLY_WIRE_BYTES / 2,
            });
        }
        let parsed: ReplicaProofIn =
            serde_json::from_slice(wire).map_err(|_| ProofError::Malformed("the replica proof"))?;
        if !is_replica_name(&parsed.replica) {
            return Err(ProofError::Malformed("the replica name"));
        }
        let sig: [u8; 64] = hexbytes::decode(&parsed.sig)
            .ok_or(ProofError::Malformed("the replica's signature"))?;
        parsed.statement.check()?;
        let statement = parsed.statement.to_canonical_bytes();
        let proof = ReplicaProof {
            replica: parsed.replica,
            statement,
            sig: StatsSignature {
                key: parsed.key,
                sig: Signature::from_bytes(&sig),
            },
        };
        if proof.to_wire() != wire {
            return Err(ProofError::NonCanonical("the replica proof"));
        }
        if !proof.verifies() {
            return Err(ProofError::BadSignature);
        }
        Ok(proof)
    }
}

/// Why a replica did not answer with a statement; kebab-case on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalCode {
    /// Not a proof request (size, envelope, form, period or window rules).
    BadRequest,
    /// The signature does not verify with the request's key.
    BadSignature,
    /// The request's node id is not the one of its key.
    NotYourNode,
    /// The request's window is more than 15 minutes from the replica's clock.
    Stale,
    /// More than [`MAX_PROOF_DAYS`] days.
    RangeTooLong,
    /// The period starts before the replica's retention.
    BeforeRetention,
    /// The period ends after the last closed UTC day.
    NotYetClosed,
    /// Too many requests in flight on that replica.
    Busy,
    /// The replica failed to compute the statement.
    Internal,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 9] = [
        RefusalCode::BadRequest,
        RefusalCode::BadSignature,
        RefusalCode::NotYourNode,
        RefusalCode::Stale,
        RefusalCode::RangeTooLong,
        RefusalCode::BeforeRetention,
        RefusalCode::NotYetClosed,
        RefusalCode::Busy,
        RefusalCode::Internal,
    ];

    /// The wire form (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::BadSignature => "bad-signature",
            Self::NotYourNode => "not-your-node",
            Self::Stale => "stale",
            Self::RangeTooLong => "range-too-long",
            Self::BeforeRetention => "before-retention",
            Self::NotYetClosed => "not-yet-closed",
            Self::Busy => "busy",
            Self::Internal => "internal",
        }
    }

    /// What it means for the requester, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BadRequest => "malformed request (update this monitor)",
            Self::BadSignature => "the request's signature does not verify",
            Self::NotYourNode => "the request's node id is not its key's",
            Self::Stale => "stale request (check this machine's clock)",
            Self::RangeTooLong => "the period is longer than 31 days",
            Self::BeforeRetention => "the period starts before the hub's retention",
            Self::NotYetClosed => "the period includes a UTC day that has not ended",
            Self::Busy => "the hub is busy (try again in a minute)",
            Self::Internal => "the hub failed to compute the statement",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replica's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofReply {
    /// A [`ReplicaProof`]'s wire bytes sealed to the request's [`SealKey`].
    Sealed {
        replica: String,
        ciphertext: Vec<u8>,
    },
    /// No statement, and why.
    Refused { replica: String, code: RefusalCode },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedWire {
    replica: String,
    sealed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefusedWire {
    replica: String,
    refused: RefusalCode,
}

impl ProofReply {
    /// Seals `proof` to `to` (a `crypto_box` sealed box: an ephemeral X25519 key,
    /// XSalsa20-Poly1305; only the holder of the request's [`SealSecret`] opens it).
    pub fn seal(
        proof: &ReplicaProof,
        to: &SealKey,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> ProofReply {
        let key = crypto_box::PublicKey::from_bytes(*to.as_bytes());
        let ciphertext = key
            .seal(rng, &proof.to_wire())
            .expect("sealing a buffer in memory does not fail");
        ProofReply::Sealed {
            replica: proof.replica.clone(),
            ciphertext,
        }
    }

    pub fn refused(replica: &str, code: RefusalCode) -> ProofReply {
        ProofReply::Refused {
            replica: replica.to_owned(),
            code,
        }
    }

    pub fn replica(&self) -> &str {
        match self {
            Self::Sealed { replica, .. } | Self::Refused { replica, .. } => replica,
        }
    }

    /// `{"replica":"a1","sealed":"<hex>"}` or `{"replica":"a1","refused":"<code>"}`.
    pub fn to_wire(&self) -> Vec<u8> {
        match self {
            Self::Sealed {
                replica,
                ciphertext,
            } => serde_json::to_vec(&SealedWire {
                replica: replica.clone(),
                sealed: hex::encode(ciphertext),
            }),
            Self::Refused { replica, code } => serde_json::to_vec(&RefusedWire {
                replica: replica.clone(),
                refused: *code,
            }),
        }
        .expect("a reply serializes")
    }

    pub fn from_wire(wire: &[u8]) -> Result<ProofReply, ProofError> {
        if wire.len() > MAX_REPLY_WIRE_BYTES {
            return Err(ProofError::TooLarge {
                what: "the reply",
                len: wire.len(),
                max: MAX_REPLY_WIRE_BYTES,
            });
        }
        let malformed = ProofError::Malformed("the reply");
        let reply = if let Ok(s) = serde_json::from_slice::<SealedWire>(wire) {
            if !hexbytes::is_lower_hex(&s.sealed) {
                return Err(malformed);
            }
            let ciphertext = hex::decode(&s.sealed).map_err(|_| malformed.clone())?;
            ProofReply::Sealed {
                replica: s.replica,
                ciphertext,
            }
        } else if let Ok(r) = serde_json::from_slice::<RefusedWire>(wire) {
            ProofReply::Refused {
                replica: r.replica,
                code: r.refused,
            }
        } else {
            return Err(malformed);
        };
        if !is_replica_name(reply.replica()) {
            return Err(malformed);
        }
        Ok(reply)
    }

    /// Parses a reply and opens it with the request's secret: the replica proof (its
    /// signature verified with the key it names), or [`ProofError::Refused`].
    pub fn open(wire: &[u8], secret: &SealSecret) -> Result<ReplicaProof, ProofError> {
        match ProofReply::from_wire(wire)? {
            ProofReply::Refused { replica, code } => Err(ProofError::Refused { replica, code }),
            ProofReply::Sealed {
                replica,
                ciphertext,
            } => {
                let plain = secret
                    .0
                    .unseal(&ciphertext)
                    .map_err(|_| ProofError::Unseal)?;
                let proof = ReplicaProof::from_wire(&plain)?;
                if proof.replica != replica {
                    return Err(ProofError::Malformed("the reply (two replica names)"));
                }
                Ok(proof)
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Proofs

/// The artefact a node operator gets and may publish: a statement, the hub's key set,
/// and the signatures of at least its threshold of those keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UptimeProof {
    statement: UptimeStatement,
    bytes: Vec<u8>,
    threshold: usize,
    keys: Vec<PublicKey>,
    sigs: Vec<StatsSignature>,
}

#[derive(Serialize)]
struct ProofOut<'a> {
    statement: &'a UptimeStatement,
    threshold: usize,
    keys: &'a [PublicKey],
    sigs: &'a [StatsSignature],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofIn {
    statement: UptimeStatement,
    threshold: usize,
    keys: Vec<PublicKey>,
    sigs: Vec<StatsSignature>,
}

/// A proof that verified: the statement and the pinned keys that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    pub statement: UptimeStatement,
    pub signers: Vec<PublicKey>,
}

impl UptimeProof {
    /// Keeps the valid signatures by `pinned` keys over `statement_bytes` (one per key,
    /// in the key set's order); fails below the threshold, or when the statement was
    /// made for another key set.
    pub fn assemble(
        statement_bytes: &[u8],
        sigs: Vec<StatsSignature>,
        pinned: &KeySet,
    ) -> Result<UptimeProof, ProofError> {
        let statement = UptimeStatement::from_canonical_bytes(statement_bytes)?;
        let expected = pinned.fingerprint();
        if statement.keys != expected {
            return Err(ProofError::KeySetMismatch {
                statement: statement.keys,
                expected,
            });
        }
        let signers = pinned.valid_signers_in(PROOF_CONTEXT, statement_bytes, &sigs);
        if signers.len() < pinned.threshold() {
            return Err(ProofError::UnderThreshold {
                signers: signers.len(),
                threshold: pinned.threshold(),
            });
        }
        let kept = signers
            .iter()
            .filter_map(|k| {
                sigs.iter()
                    .find(|s| s.key == *k && s.verifies_in(PROOF_CONTEXT, statement_bytes))
                    .copied()
            })
            .collect();
        Ok(UptimeProof {
            statement,
            bytes: statement_bytes.to_vec(),
            threshold: pinned.threshold(),
            keys: pinned.keys().to_vec(),
            sigs: kept,
        })
    }

    pub fn statement(&self) -> &UptimeStatement {
        &self.statement
    }

    /// The canonical statement bytes the signatures cover.
    pub fn statement_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The hub key set the proof names.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn signatures(&self) -> &[StatsSignature] {
        &self.sigs
    }

    /// The key set the proof names (checked: distinct valid keys, a possible
    /// threshold). Whether to trust it is the verifier's decision: pin the hub's keys.
    pub fn key_set(&self) -> Result<KeySet, ProofError> {
        Ok(KeySet::new(self.keys.clone(), self.threshold)?)
    }

    /// Compact JSON: `{"statement":{…},"threshold":M,"keys":[…],"sigs":[…]}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.out()).expect("a proof serializes")
    }

    /// The same, indented for people.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.out()).expect("a proof serializes")
    }

    fn out(&self) -> ProofOut<'_> {
        ProofOut {
            statement: &self.statement,
            threshold: self.threshold,
            keys: &self.keys,
            sigs: &self.sigs,
        }
    }

    /// Parses a proof file (compact or pretty JSON) and checks its statement. Does
    /// **not** check the signatures: [`UptimeProof::verify`] does.
    pub fn from_json(bytes: &[u8]) -> Result<UptimeProof, ProofError> {
        if bytes.len() > MAX_PROOF_JSON_BYTES {
            return Err(ProofError::TooLarge {
                what: "the proof",
                len: bytes.len(),
                max: MAX_PROOF_JSON_BYTES,
            });
        }
        let parsed: ProofIn =
            serde_json::from_slice(bytes).map_err(|_| ProofError::Malformed("the proof"))?;
        if parsed.keys.len() > MAX_SIGNERS || parsed.sigs.len() > MAX_SIGNERS {
            return Err(ProofError::Malformed(
                "the proof (too many keys or signatures)",
            ));
        }
        parsed.statement.check()?;
        let statement_bytes = parsed.statement.to_canonical_bytes();
        if statement_bytes.len() > MAX_STATEMENT_BYTES {
            return Err(ProofError::TooLarge {
                what: "the statement",
                len: statement_bytes.len(),
                max: MAX_STATEMENT_BYTES,
            });
        }
        Ok(UptimeProof {
            statement: parsed.statement,
            bytes: statement_bytes,
            threshold: parsed.threshold,
            keys: parsed.keys,
            sigs: parsed.sigs,
        })
    }

    /// Checks the proof against the hub keys the verifier pinned: the statement is
    /// consistent, was issued for this key set (its `keys` fingerprint is the pinned
    /// set's and the set the proof names), and at least the pinned threshold of
    /// distinct pinned keys signed its canonical bytes.
    pub fn verify(&self, pinned: &KeySet) -> Result<VerifiedProof, ProofError> {
        self.statement.check()?;
        let expected = pinned.fingerprint();
        if self.statement.keys != expected {
            return Err(ProofError::KeySetMismatch {
                statement: self.statement.keys.clone(),
                expected,
            });
        }
        let named = self.key_set()?.fingerprint();
        if named != expected {
            return Err(ProofError::KeySetMismatch {
                statement: named,
                expected,
            });
        }
        let signers = pinned.valid_signers_in(PROOF_CONTEXT, &self.bytes, &self.sigs);
        if signers.len() < pinned.threshold() {
            return Err(ProofError::UnderThreshold {
                signers: signers.len(),
                threshold: pinned.threshold(),
            });
        }
        Ok(VerifiedProof {
            statement: self.statement.clone(),
            signers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const FROM: u64 = 1_717_200_000; // 2024-06-01T00:00:00Z

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public(seed: u8) -> PublicKey {
        PublicKey::from(&key(seed).verifying_key())
    }

    fn hub(threshold: usize) -> KeySet {
        KeySet::new(vec![public(1), public(2), public(3)], threshold).expect("key set")
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    fn statement(windows: &[(u64, bool)]) -> UptimeStatement {
        UptimeStatement::new_from_windows(
            public(9).node_id(),
            FROM,
            FROM + 2 * DAY,
            windows.iter().copied(),
            &hub(2),
        )
        .expect("statement")
    }

    fn proof(st: &UptimeStatement, signers: &[u8], pinned: &KeySet) -> UptimeProof {
        let bytes = st.to_canonical_bytes();
        let sigs = signers
            .iter()
            .map(|s| StatsSignature::sign_in(PROOF_CONTEXT, &bytes, &key(*s)))
            .collect();
        UptimeProof::assemble(&bytes, sigs, pinned).expect("assembles")
    }

    #[test]
    fn a_statement_has_exactly_the_bits_of_the_windows_given() {
        let windows = [
            (FROM, true),
            (FROM + 300, false),
            (FROM + 7 * 300, true),
            (FROM + DAY, true),
            (FROM + 2 * DAY - 300, true),
            (FROM + 2 * DAY, true), // after the period: ignored
            (FROM - 300, true),     // before: ignored
            (FROM + 301, true),     // not a window start: ignored
        ];
        let st = statement(&windows);
        assert_eq!(st.reported.len(), 2 * 288 / 4);
        assert!(st.reported.starts_with("c1"), "{}", st.reported);
        assert!(st.up.starts_with("81"), "{}", st.up);
        assert!(st.reported.ends_with("01"), "{}", st.reported);
        assert_eq!(
            st.windows_reported(),
            vec![
                FROM,
                FROM + 300,
                FROM + 7 * 300,
                FROM + DAY,
                FROM + 2 * DAY - 300
            ]
        );
        assert_eq!(
            st.windows_up(),
            vec![FROM, FROM + 7 * 300, FROM + DAY, FROM + 2 * DAY - 300]
        );
        assert!(st.is_reported(FROM + 300) && !st.is_up(FROM + 300));
        assert!(!st.is_reported(FROM + 600));
        assert_eq!(st.uptime_s, 4 * 300);
        assert_eq!(st.downtime_s, 2 * DAY - 1_200);
        assert_eq!(st.keys, hub(2).fingerprint());
        st.check().expect("consistent");
        // Canonical: fields in order, compact.
        let text = String::from_utf8(st.to_canonical_bytes()).expect("ascii");
        assert!(
            text.starts_with(&format!(
                "{{\"node\":\"{}\",\"from\":{FROM},\"to\":",
                public(9).node_id()
            )),
            "{text}"
        );
        assert!(
            text.contains(",\"uptime_s\":1200,\"downtime_s\":171600,\"keys\":\""),
            "{text}"
        );
        assert_eq!(
            UptimeStatement::from_canonical_bytes(text.as_bytes()).expect("parses"),
            st
        );
    }

    #[test]
    fn a_statement_is_the_same_whatever_the_order_of_the_windows() {
        let a = statement(&[(FROM, true), (FROM + 600, false), (FROM + 600, false)]);
        let b = statement(&[(FROM + 600, false), (FROM, true)]);
        assert_eq!(a.to_canonical_bytes(), b.to_canonical_bytes());
    }

    #[test]
    fn the_fingerprint_depends_on_keys_and_threshold_not_their_order() {
        let reordered = KeySet::new(vec![public(3), public(1), public(2)], 2).expect("set");
        assert_eq!(reordered.fingerprint(), hub(2).fingerprint());
        assert_ne!(hub(3).fingerprint(), hub(2).fingerprint());
        let other = KeySet::new(vec![public(1), public(2), public(4)], 2).expect("set");
        assert_ne!(other.fingerprint(), hub(2).fingerprint());
        // Independent computation: SHA-256(sorted keys || threshold u32 BE)[..16].
        use sha2::{Digest, Sha256};
        let mut keys = vec![public(1), public(2), public(3)];
        keys.sort();
        let mut h = Sha256::new();
        for k in &keys {
            h.update(k.as_bytes());
        }
        h.update([0, 0, 0, 2]);
        assert_eq!(hub(2).fingerprint(), hex::encode(&h.finalize()[..16]));
    }

    #[test]
    fn inconsistent_statements_are_refused() {
        let good = statement(&[(FROM, true), (FROM + 300, false)]);
        let mut more_uptime = good.clone();
        more_uptime.uptime_s += 300;
        more_uptime.downtime_s -= 300;
        assert!(matches!(
            more_uptime.check(),
            Err(ProofError::Inconsistent(_))
        ));
        let mut up_unreported = good.clone();
        up_unreported.up.replace_range(0..2, "a0"); // the third window: no report
        up_unreported.uptime_s += 300;
        up_unreported.downtime_s -= 300;
        assert_eq!(
            up_unreported.check(),
            Err(ProofError::Inconsistent("a window is up without a report"))
        );
        let mut short = good.clone();
        short.reported.pop();
        assert!(matches!(short.check(), Err(ProofError::Inconsistent(_))));
        let mut upper = good.clone();
        upper.reported.replace_range(0..1, "C");
        assert!(matches!(upper.check(), Err(ProofError::Inconsistent(_))));
        let mut long = good;
        long.to = FROM + 32 * DAY;
        assert_eq!(long.check(), Err(ProofError::RangeTooLong { days: 32 }));
    }

    #[test]
    fn a_signed_request_opens_and_its_rules_hold() {
        let secret = SealSecret::generate(&mut rng());
        let request =
            ProofRequest::new(&key(9), FROM, FROM + DAY, FROM + DAY + 600, secret.public());
        let wire = request.sign(&key(9)).to_wire();
        let text = String::from_utf8(wire.clone()).expect("ascii");
        assert!(text.starts_with("{\"request\":{\"node\":\""), "{text}");
        assert!(
            text.contains(&format!("\"reply\":\"{}\"}},\"sig\":\"", secret.public())),
            "{text}"
        );
        assert_eq!(SignedProofRequest::open(&wire), Ok(request.clone()));

        // Signed by another node's key: the signature does not verify.
        let forged = request.sign(&key(8)).to_wire();
        assert_eq!(
            SignedProofRequest::open(&forged),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            ProofError::BadSignature.refusal(),
            RefusalCode::BadSignature
        );
        // Another node's id with one's own key.
        let mut theirs = request.clone();
        theirs.node = public(8).node_id();
        let wire = theirs.sign(&key(9)).to_wire();
        assert_eq!(
            SignedProofRequest::open(&wire),
            Err(ProofError::NotYourNode)
        );
        assert_eq!(ProofError::NotYourNode.refusal(), RefusalCode::NotYourNode);
        // Range rules.
        for (from, to, err) in [
            (
                FROM + 1,
                FROM + DAY,
                ProofError::NotMidnight {
                    field: "from",
                    value: FROM + 1,
                },
            ),
            (
                FROM,
                FROM,
                ProofError::EmptyRange {
                    from: FROM,
                    to: FROM,
                },
            ),
            (FROM, FROM + 32 * DAY, ProofError::RangeTooLong { days: 32 }),
        ] {
            let mut r = request.clone();
            (r.from, r.to) = (from, to);
            assert_eq!(
                SignedProofRequest::open(&r.sign(&key(9)).to_wire()),
                Err(err)
            );
        }
        let mut r = request.clone();
        r.to = FROM + MAX_PROOF_DAYS * DAY;
        assert!(SignedProofRequest::open(&r.sign(&key(9)).to_wire()).is_ok());
        r.window += 1;
        assert_eq!(
            SignedProofRequest::open(&r.sign(&key(9)).to_wire()),
            Err(ProofError::NotWindowStart(r.window))
        );
        // A changed byte after signing; non-canonical spacing; oversize.
        let changed = text.replacen(
            &format!("\"to\":{}", FROM + DAY),
            &format!("\"to\":{}", FROM + 2 * DAY),
            1,
        );
        assert_eq!(
            SignedProofRequest::open(changed.as_bytes()),
            Err(ProofError::BadSignature)
        );
        let spaced = text.replacen("\"from\":", "\"from\": ", 1);
        assert_eq!(
            SignedProofRequest::open(spaced.as_bytes()),
            Err(ProofError::NonCanonical("the request"))
        );
        assert!(matches!(
            SignedProofRequest::open(&vec![b' '; MAX_REQUEST_WIRE_BYTES + 1]),
            Err(ProofError::TooLarge { .. })
        ));
        assert_eq!(
            SignedProofRequest::open(b"{\"request\":1}"),
            Err(ProofError::Malformed("the request envelope"))
        );
    }

    #[test]
    fn a_replica_checks_freshness_closed_days_and_retention_with_its_clock() {
        let now = FROM + 3 * DAY + 3_725; // 01:02:05 on the fourth day
        let window = now - now % 300;
        let secret = SealSecret::generate(&mut rng());
        let r = ProofRequest::new(&key(9), FROM, FROM + 3 * DAY, window, secret.public());
        assert_eq!(r.check_clock(now, FROM - 10), Ok(()));
        // 15 minutes either way is fine, a window more is stale.
        let mut skew = r.clone();
        skew.window = window - 900;
        assert_eq!(skew.check_clock(now, 0), Ok(()));
        skew.window = window - 1_200;
        assert_eq!(skew.check_clock(now, 0), Err(RefusalCode::Stale));
        skew.window = window + 1_200;
        assert_eq!(skew.check_clock(now, 0), Err(RefusalCode::Stale));
        // Today has not ended.
        let mut today = r.clone();
        today.to = FROM + 4 * DAY;
        assert_eq!(today.check_clock(now, 0), Err(RefusalCode::NotYetClosed));
        // Retention starting mid-day: that day is not whole any more.
        assert_eq!(
            r.check_clock(now, FROM + 10),
            Err(RefusalCode::BeforeRetention)
        );
        assert_eq!(r.check_clock(now, FROM), Ok(()));
    }

    #[test]
    fn a_sealed_reply_opens_only_with_the_requests_secret() {
        let mut rng = rng();
        let secret = SealSecret::generate(&mut rng);
        let other = SealSecret::generate(&mut rng);
        let st = statement(&[(FROM, true)]);
        let replica = ReplicaProof::sign("a1", &st, &key(1)).expect("signs");
        assert!(replica.verifies());
        let wire = ProofReply::seal(&replica, &secret.public(), &mut rng).to_wire();
        let text = String::from_utf8(wire.clone()).expect("ascii");
        assert!(
            text.starts_with("{\"replica\":\"a1\",\"sealed\":\""),
            "{text}"
        );
        // The statement is not readable on the wire.
        assert!(!text.contains(&public(9).node_id().to_string()));

        let opened = ProofReply::open(&wire, &secret).expect("opens");
        assert_eq!(opened, replica);
        assert_eq!(opened.uptime_statement().expect("statement"), st);
        assert_eq!(ProofReply::open(&wire, &other), Err(ProofError::Unseal));

        let refused = ProofReply::refused("a2", RefusalCode::NotYetClosed).to_wire();
        assert_eq!(
            refused,
            b"{\"replica\":\"a2\",\"refused\":\"not-yet-closed\"}"
        );
        assert_eq!(
            ProofReply::open(&refused, &secret),
            Err(ProofError::Refused {
                replica: "a2".into(),
                code: RefusalCode::NotYetClosed
            })
        );
        assert_eq!(
            ProofError::Refused {
                replica: "a2".into(),
                code: RefusalCode::Stale
            }
            .to_string(),
            "replica a2 refused: stale request (check this machine's clock)"
        );
        for code in RefusalCode::ALL {
            let wire = ProofReply::refused("r", code).to_wire();
            assert_eq!(
                ProofReply::from_wire(&wire),
                Ok(ProofReply::refused("r", code))
            );
            assert!(String::from_utf8(wire)
                .expect("ascii")
                .contains(code.as_str()));
        }
        assert!(ProofReply::from_wire(b"{\"replica\":\"a b\",\"refused\":\"busy\"}").is_err());
    }

    #[test]
    fn a_replica_proof_with_a_changed_statement_does_not_open() {
        let st = statement(&[(FROM, true)]);
        let replica = ReplicaProof::sign("a1", &st, &key(1)).expect("signs");
        let text = String::from_utf8(replica.to_wire()).expect("ascii");
        assert_eq!(ReplicaProof::from_wire(text.as_bytes()), Ok(replica));
        let more = text.replacen("\"up\":\"8", "\"up\":\"0", 1).replacen(
            &format!("\"uptime_s\":300,\"downtime_s\":{}", 2 * DAY - 300),
            &format!("\"uptime_s\":0,\"downtime_s\":{}", 2 * DAY),
            1,
        );
        assert_ne!(more, text);
        assert_eq!(
            ReplicaProof::from_wire(more.as_bytes()),
            Err(ProofError::BadSignature)
        );
    }

    #[test]
    fn a_proof_of_two_of_three_verifies_and_round_trips_compact_and_pretty() {
        let st = statement(&[(FROM, true), (FROM + 300, false), (FROM + DAY, true)]);
        let p = proof(&st, &[3, 1], &hub(2));
        let verified = p.verify(&hub(2)).expect("verifies");
        assert_eq!(verified.signers, vec![public(1), public(3)]);
        assert_eq!(verified.statement, st);
        let json = p.to_json();
        let text = String::from_utf8(json.clone()).expect("ascii");
        assert!(text.starts_with("{\"statement\":{\"node\":"), "{text}");
        assert!(text.contains("},\"threshold\":2,\"keys\":[\""), "{text}");
        assert_eq!(UptimeProof::from_json(&json).expect("parses"), p);
        let pretty = UptimeProof::from_json(&p.to_json_pretty()).expect("parses pretty");
        assert_eq!(pretty.verify(&hub(2)).expect("verifies").signers.len(), 2);
        // A single aggregator: 1 of 1.
        let single = KeySet::single(public(1)).expect("1 of 1");
        let st1 = UptimeStatement::new_from_windows(
            public(9).node_id(),
            FROM,
            FROM + DAY,
            [(FROM, true)],
            &single,
        )
        .expect("statement");
        assert_eq!(
            proof(&st1, &[1], &single)
                .verify(&single)
                .expect("1 of 1")
                .signers,
            vec![public(1)]
        );
    }

    #[test]
    fn tampered_and_under_threshold_proofs_fail_verification() {
        let st = statement(&[(FROM, true), (FROM + 300, true)]);
        let p = proof(&st, &[1, 2], &hub(2));
        let text = String::from_utf8(p.to_json()).expect("ascii");

        // One bit flipped (with the figures adjusted so the statement stays consistent).
        let flipped = text.replacen("\"up\":\"c", "\"up\":\"8", 1).replacen(
            &format!("\"uptime_s\":600,\"downtime_s\":{}", 2 * DAY - 600),
            &format!("\"uptime_s\":300,\"downtime_s\":{}", 2 * DAY - 300),
            1,
        );
        assert_ne!(flipped, text);
        let flipped = UptimeProof::from_json(flipped.as_bytes()).expect("parses");
        assert_eq!(
            flipped.verify(&hub(2)),
            Err(ProofError::UnderThreshold {
                signers: 0,
                threshold: 2
            })
        );
        // A bit flipped without adjusting: inconsistent.
        let raw_flip = text.replacen("\"up\":\"c", "\"up\":\"8", 1);
        assert!(matches!(
            UptimeProof::from_json(raw_flip.as_bytes()),
            Err(ProofError::Inconsistent(_))
        ));
        // A signature swapped for another key's: that key's signature no longer verifies.
        let sig1 = hex::encode(p.signatures()[0].sig.to_bytes());
        let sig2 = hex::encode(p.signatures()[1].sig.to_bytes());
        let swapped = text
            .replacen(&sig1, "X", 1)
            .replacen(&sig2, &sig1, 1)
            .replacen("X", &sig2, 1);
        assert_ne!(swapped, text);
        assert_eq!(
            UptimeProof::from_json(swapped.as_bytes())
                .expect("parses")
                .verify(&hub(2)),
            Err(ProofError::UnderThreshold {
                signers: 0,
                threshold: 2
            })
        );
        // A key set changed: pinned by the verifier, or in the proof.
        let other = KeySet::new(vec![public(1), public(2), public(4)], 2).expect("set");
        assert!(matches!(
            p.verify(&other),
            Err(ProofError::KeySetMismatch { .. })
        ));
        assert!(matches!(
            p.verify(&hub(1)),
            Err(ProofError::KeySetMismatch { .. })
        ));
        let renamed = text.replacen(&public(3).to_string(), &public(4).to_string(), 1);
        assert_ne!(renamed, text);
        assert!(matches!(
            UptimeProof::from_json(renamed.as_bytes())
                .expect("parses")
                .verify(&hub(2)),
            Err(ProofError::KeySetMismatch { .. })
        ));
        // Under threshold: one signature of the two required, and a repeat of it.
        let bytes = st.to_canonical_bytes();
        let one = StatsSignature::sign_in(PROOF_CONTEXT, &bytes, &key(1));
        assert_eq!(
            UptimeProof::assemble(&bytes, vec![one, one], &hub(2)),
            Err(ProofError::UnderThreshold {
                signers: 1,
                threshold: 2
            })
        );
        let sig_of = |k| {
            format!(
                "{{\"key\":\"{}\",\"sig\":\"{}\"}}",
                public(k),
                hex::encode(one.sig.to_bytes())
            )
        };
        let dup = text.replacen("\"sigs\":[", &format!("\"sigs\":[{},", sig_of(1)), 1);
        let dup = UptimeProof::from_json(dup.as_bytes()).expect("parses");
        assert_eq!(dup.verify(&hub(2)).expect("still 2").signers.len(), 2);
        // A statistics signature (another context) does not count for a proof.
        let stats_sig = StatsSignature::sign(&bytes, &key(3));
        assert_eq!(
            UptimeProof::assemble(&bytes, vec![one, stats_sig], &hub(2)),
            Err(ProofError::UnderThreshold {
                signers: 1,
                threshold: 2
            })
        );
    }
}
