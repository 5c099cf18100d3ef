//! Statistics co-signed by several aggregator replicas.
//!
//! A replicated hub runs N aggregator replicas, each with its own Ed25519 key. Each one
//! computes the statistics of a window (byte-identical on every replica that stored the
//! same reports), signs them exactly as a single aggregator does
//! ([`NetworkStats::sign`]: `STATS_CONTEXT || canonical bytes`) and sends a
//! [`StatsVote`] to the other replicas on [`STATS_SIGNATURE_SUBJECT`]. Statistics are
//! *certified* once at least M of the N pinned keys ([`KeySet`]) signed the same bytes;
//! the replicas then publish a [`CertifiedStats`] on [`crate::STATS_SUBJECT`], and a
//! monitor accepts only that ([`open_certified`]). A single aggregator is the 1-of-1
//! case: its certificate carries one signature.
//!
//! Wire forms (canonical: the exact bytes serde_json writes for the parsed value, so a
//! message has one encoding and the bytes verified are the bytes signed):
//!
//! ```text
//! {"stats":<canonical statistics bytes>,"sigs":[{"key":"<64 hex>","sig":"<128 hex>"},…]}
//! {"replica":"<name>","key":"<64 hex>","stats":<canonical statistics bytes>,"sig":"<128 hex>"}
//! ```
//!
//! Signatures are plain Ed25519 signature sets: N is small (3 to 7 replicas), a set of
//! N 64-byte signatures is a few hundred bytes, and every signer stays visible (the
//! network page shows who signed), which an aggregated signature would hide.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::PublicKey;
use crate::sign::{VerifyError, STATS_CONTEXT};
use crate::stats::{NetworkStats, StatsError, MAX_STATS_BYTES};

/// Replica signatures, replica -> replica (never read by monitors).
pub const STATS_SIGNATURE_SUBJECT: &str = "truebit.stats.sig.v1";

/// Most signatures a certificate may carry.
pub const MAX_SIGNERS: usize = 32;

/// Largest certificate or vote on the wire.
pub const MAX_CERTIFICATE_WIRE_BYTES: usize = MAX_STATS_BYTES + 256 + MAX_SIGNERS * 220;

/// One replica's signature over the statistics bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSignature {
    pub key: PublicKey,
    #[serde(with = "sig_hex")]
    pub sig: Signature,
}

mod sig_hex {
    use ed25519_dalek::Signature;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        crate::hexbytes::serialize(&sig.to_bytes(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        crate::hexbytes::deserialize::<_, 64>(d, "an Ed25519 signature")
            .map(|b| Signature::from_bytes(&b))
    }
}

fn signed_message(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + bytes.len());
    m.extend_from_slice(context);
    m.extend_from_slice(bytes);
    m
}

impl StatsSignature {
    /// Signs `bytes` (canonical statistics) with `key`.
    pub fn sign(bytes: &[u8], key: &SigningKey) -> StatsSignature {
        StatsSignature::sign_in(STATS_CONTEXT, bytes, key)
    }

    /// Whether the signature over `bytes` verifies with its key (`verify_strict`).
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        self.verifies_in(STATS_CONTEXT, bytes)
    }

    /// Signs `context || bytes` (the same signature shape for other signed kinds,
    /// e.g. [`crate::proof::PROOF_CONTEXT`]).
    pub(crate) fn sign_in(context: &[u8], bytes: &[u8], key: &SigningKey) -> StatsSignature {
        StatsSignature {
            key: PublicKey::from(&key.verifying_key()),
            sig: key.sign(&signed_message(context, bytes)),
        }
    }

    pub(crate) fn verifies_in(&self, context: &[u8], bytes: &[u8]) -> bool {
        self.key.to_verifying_key().is_ok_and(|k| {
            k.verify_strict(&signed_message(context, bytes), &self.sig)
                .is_ok()
        })
    }
}

/// The pinned aggregator keys and how many of them must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<PublicKey>,
    threshold: usize,
}

/// Why a key set is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("no key")]
    Empty,
    #[error("the key {0} is listed twice")]
    Duplicate(PublicKey),
    #[error("{0} is not a valid Ed25519 public key")]
    BadKey(PublicKey),
    #[error("the threshold must be between 1 and the number of keys ({keys}), not {threshold}")]
    Threshold { threshold: usize, keys: usize },
    #[error("more than {MAX_SIGNERS} keys")]
    TooMany,
}

impl KeySet {
    /// `threshold` of `keys` (distinct, valid Ed25519 keys, 1 ≤ threshold ≤ keys).
    pub fn new(keys: Vec<PublicKey>, threshold: usize) -> Result<KeySet, KeySetError> {
        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        if keys.len() > MAX_SIGNERS {
            return Err(KeySetError::TooMany);
        }
        let mut seen = BTreeSet::new();
        for k in &keys {
            if !seen.insert(*k) {
                return Err(KeySetError::Duplicate(*k));
            }
            if k.to_verifying_key().is_err() {
                return Err(KeySetError::BadKey(*k));
            }
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(KeySetError::Threshold {
                threshold,
                keys: keys.len(),
            });
        }
        Ok(KeySet { keys, threshold })
    }

    /// One key, which must sign (a single aggregator).
    pub fn single(key: PublicKey) -> Result<KeySet, KeySetError> {
        KeySet::new(vec![key], 1)
    }

    /// The default threshold for `n` keys: a strict majority.
    pub fn majority(n: usize) -> usize {
        n / 2 + 1
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }

    /// The distinct pinned keys among `signatures` whose signature over `bytes`
    /// verifies, in the key set's order. Unknown keys, repeats and bad signatures do
    /// not count.
    pub fn valid_signers(&self, bytes: &[u8], signatures: &[StatsSignature]) -> Vec<PublicKey> {
        self.valid_signers_in(STATS_CONTEXT, bytes, signatures)
    }

    pub(crate) fn valid_signers_in(
        &self,
        context: &[u8],
        bytes: &[u8],
        signatures: &[StatsSignature],
    ) -> Vec<PublicKey> {
        self.keys
            .iter()
            .filter(|k| {
                signatures
                    .iter()
                    .any(|s| s.key == **k && s.verifies_in(context, bytes))
            })
            .copied()
            .collect()
    }

    /// What ties a signed statement to this key set: hex of the first 16 bytes of
    /// SHA-256 over the keys' bytes in ascending order, then the threshold as a
    /// big-endian `u32`. The same keys in any order give the same fingerprint; another
    /// key or threshold gives another.
    pub fn fingerprint(&self) -> String {
        let mut sorted = self.keys.clone();
        sorted.sort();
        let mut hasher = Sha256::new();
        for k in &sorted {
            hasher.update(k.as_bytes());
        }
        // At most MAX_SIGNERS keys, so the threshold always fits.
        hasher.update((self.threshold as u32).to_be_bytes());
        hex::encode(&hasher.finalize()[..16])
    }
}

/// Statistics with the replicas' signatures over their canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedStats {
    stats: NetworkStats,
    bytes: Vec<u8>,
    signatures: Vec<StatsSignature>,
}

#[derive(Serialize)]
struct CertificateOut<'a> {
    stats: &'a NetworkStats,
    sigs: &'a [StatsSignature],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateIn {
    stats: NetworkStats,
    sigs: Vec<StatsSignature>,
}

fn check_stats(stats: &NetworkStats) -> Result<Vec<u8>, VerifyError> {
    stats.check()?;
    let bytes = stats.to_canonical_bytes();
    if bytes.len() > MAX_STATS_BYTES {
        return Err(StatsError::TooLarge {
            len: bytes.len(),
            max: MAX_STATS_BYTES,
        }
        .into());
    }
    Ok(bytes)
}

fn check_size(wire: &[u8]) -> Result<(), VerifyError> {
    if wire.len() > MAX_CERTIFICATE_WIRE_BYTES {
        return Err(VerifyError::TooLarge {
            len: wire.len(),
            max: MAX_CERTIFICATE_WIRE_BYTES,
        });
    }
    Ok(())
}

impl CertifiedStats {
    /// Statistics and signatures collected for them (each signature should be over
    /// `stats`' canonical bytes; [`CertifiedStats::verify`] counts only those that are).
    pub fn new(
        stats: NetworkStats,
        mut signatures: Vec<StatsSignature>,
    ) -> Result<CertifiedStats, VerifyError> {
        let bytes = check_stats(&stats)?;
        signatures.sort_by_key(|s| s.key);
        signatures.dedup_by_key(|s| s.key);
        signatures.truncate(MAX_SIGNERS);
        Ok(CertifiedStats {
            stats,
            bytes,
            signatures,
        })
    }

    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }

    pub fn stats_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signatures(&self) -> &[StatsSignature] {
        &self.signatures
    }

    pub fn into_stats(self) -> NetworkStats {
        self.stats
    }

    /// The bytes published on [`crate::STATS_SUBJECT`].
    pub fn to_wire(&self) -> Vec<u8> {
        serde_json::to_vec(&CertificateOut {
            stats: &self.stats,
            sigs: &self.signatures,
        })
        .expect("a certificate serializes")
    }

    /// Parses a wire message: size, strict schema, canonical form, the statistics'
    /// checks. Does **not** check the signatures: [`CertifiedStats::verify`] does.
    pub fn from_wire(wire: &[u8]) -> Result<CertifiedStats, VerifyError> {
        check_size(wire)?;
        let parsed: CertificateIn =
            serde_json::from_slice(wire).map_err(|_| VerifyError::Envelope)?;
        if parsed.sigs.len() > MAX_SIGNERS {
            return Err(VerifyError::Envelope);
        }
        let bytes = check_stats(&parsed.stats)?;
        let certificate = CertifiedStats {
            stats: parsed.stats,
            bytes,
            signatures: parsed.sigs,
        };
        if certificate.to_wire() != wire {
            return Err(StatsError::NonCanonical.into());
        }
        Ok(certificate)
    }

    /// The pinned keys that signed these exact bytes, when they are at least the key
    /// set's threshold; else [`VerifyError::UnderThreshold`].
    pub fn verify(&self, pinned: &KeySet) -> Result<Vec<PublicKey>, VerifyError> {
        let signers = pinned.valid_signers(&self.bytes, &self.signatures);
        if signers.len() < pinned.threshold() {
            return Err(VerifyError::UnderThreshold {
                signers: signers.len(),
                threshold: pinned.threshold(),
            });
        }
        Ok(signers)
    }
}

/// Parses a certificate and checks it against the pinned key set: the statistics and
/// the pinned keys that signed them.
///
/// A single aggregator's signed envelope of earlier versions,
/// `{"stats":…,"sig":"<128 hex>"}` ([`crate::sign::SignedStats`]), is the same
/// signature without its key: it is accepted as a certificate of the pinned key that
/// verifies it, so it passes a threshold of 1 (a monitor pinning
/// `FEDERATION_AGGREGATOR_KEY`) and nothing higher.
pub fn open_certified(
    wire: &[u8],
    pinned: &KeySet,
) -> Result<(CertifiedStats, Vec<PublicKey>), VerifyError> {
    let certificate = match CertifiedStats::from_wire(wire) {
        Ok(c) => c,
        Err(VerifyError::Envelope) if wire.ends_with(b"\"}") => {
            let single = crate::sign::SignedStats::from_wire(wire)?;
            let signatures: Vec<StatsSignature> = pinned
                .keys()
                .iter()
                .map(|key| StatsSignature {
                    key: *key,
                    sig: *single.signature(),
                })
                .filter(|s| s.verifies(single.stats_bytes()))
                .collect();
            CertifiedStats::new(single.into_stats(), signatures)?
        }
        Err(e) => return Err(e),
    };
    let signers = certificate.verify(pinned)?;
    Ok((certificate, signers))
}

/// One replica's signed statistics, sent to the other replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsVote {
    replica: String,
    stats: NetworkStats,
    bytes: Vec<u8>,
    signature: StatsSignature,
}

#[derive(Serialize)]
struct VoteOut<'a> {
    replica: &'a str,
    key: PublicKey,
    stats: &'a NetworkStats,
    #[serde(with = "sig_hex")]
    sig: Signature,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteIn {
    replica: String,
    key: PublicKey,
    stats: NetworkStats,
    #[serde(with = "sig_hex")]
    sig: Signature,
}

/// Whether `name` is a replica name: 1 to 64 ASCII letters, digits, `-` and `_`.
pub fn is_replica_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl StatsVote {
    /// Signs `stats` as replica `replica` with `key`.
    pub fn sign(
        replica: &str,
        stats: NetworkStats,
        key: &SigningKey,
    ) -> Result<StatsVote, VerifyError> {
        if !is_replica_name(replica) {
            return Err(VerifyError::Envelope);
        }
        let bytes = check_stats(&stats)?;
        let signature = StatsSignature::sign(&bytes, key);
        Ok(StatsVote {
            replica: replica.to_owned(),
            stats,
            bytes,
            signature,
        })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }

    pub fn stats_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature(&self) -> &StatsSignature {
        &self.signature
    }

    /// The bytes published on [`STATS_SIGNATURE_SUBJECT`].
    pub fn to_wire(&self) -> Vec<u8> {
        serde_json::to_vec(&VoteOut {
            replica: &self.replica,
            key: self.signature.key,
            stats: &self.stats,
            sig: self.signature.sig,
        })
        .expect("a vote serializes")
    }

    /// Parses and verifies a vote: schema, canonical form, replica name, and the
    /// signature with the key it names (whether that key is pinned is the caller's).
    pub fn open(wire: &[u8]) -> Result<StatsVote, VerifyError> {
        check_size(wire)?;
        let parsed: VoteIn = serde_json::from_slice(wire).map_err(|_| VerifyError::Envelope)?;
        if !is_replica_name(&parsed.replica) {
            return Err(VerifyError::Envelope);
        }
        let bytes = check_stats(&parsed.stats)?;
        let vote = StatsVote {
            replica: parsed.replica,
            stats: parsed.stats,
            bytes,
            signature: StatsSignature {
                key: parsed.key,
                sig: parsed.sig,
            },
        };
        if vote.to_wire() != wire {
            return Err(StatsError::NonCanonical.into());
        }
        if !vote.signature.verifies(&vote.bytes) {
            return Err(VerifyError::BadSignature);
        }
        Ok(vote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowStart;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public(seed: u8) -> PublicKey {
        PublicKey::from(&key(seed).verifying_key())
    }

    fn stats(active: Option<u64>) -> NetworkStats {
        let mut s = NetworkStats::empty(WindowStart::new(1_717_243_200).expect("aligned"), 5);
        s.active_nodes = active;
        s
    }

    fn pinned(threshold: usize) -> KeySet {
        KeySet::new(vec![public(1), public(2), public(3)], threshold).expect("key set")
    }

    fn certificate(stats: NetworkStats, signers: &[u8]) -> CertifiedStats {
        let bytes = stats.to_canonical_bytes();
        let sigs = signers
            .iter()
            .map(|s| StatsSignature::sign(&bytes, &key(*s)))
            .collect();
        CertifiedStats::new(stats, sigs).expect("certificate")
    }

    #[test]
    fn two_of_three_pinned_signatures_certify_and_name_the_signers() {
        let wire = certificate(stats(Some(9)), &[3, 1]).to_wire();
        let (opened, signers) = open_certified(&wire, &pinned(2)).expect("certified");
        assert_eq!(opened.stats().active_nodes, Some(9));
        assert_eq!(signers, vec![public(1), public(3)]);
        // The wire form is the documented one.
        let text = String::from_utf8(wire).expect("ascii");
        assert!(text.starts_with("{\"stats\":{"), "{text}");
        assert!(text.contains("},\"sigs\":[{\"key\":\""), "{text}");
    }

    #[test]
    fn under_threshold_unknown_repeated_and_forged_signatures_do_not_certify() {
        // One pinned signer of three, threshold 2.
        let one = certificate(stats(Some(9)), &[1]).to_wire();
        assert_eq!(
            open_certified(&one, &pinned(2)).map(|_| ()),
            Err(VerifyError::UnderThreshold {
                signers: 1,
                threshold: 2
            })
        );
        // Two signatures, but one from a key nobody pinned.
        let stranger = certificate(stats(Some(9)), &[1, 7]).to_wire();
        assert!(matches!(
            open_certified(&stranger, &pinned(2)),
            Err(VerifyError::UnderThreshold { signers: 1, .. })
        ));
        // Two signatures over other figures, the figures then changed (forged).
        let honest = certificate(stats(Some(9)), &[1, 2]);
        let forged =
            CertifiedStats::new(stats(Some(90)), honest.signatures().to_vec()).expect("shape");
        assert!(matches!(
            open_certified(&forged.to_wire(), &pinned(2)),
            Err(VerifyError::UnderThreshold { signers: 0, .. })
        ));
        // The same key twice counts once.
        let sig = honest.signatures()[0];
        let twice = format!(
            "{{\"stats\":{},\"sigs\":[{},{}]}}",
            String::from_utf8(honest.stats_bytes().to_vec()).expect("ascii"),
            serde_json::to_string(&sig).expect("json"),
            serde_json::to_string(&sig).expect("json"),
        );
        assert!(matches!(
            open_certified(twice.as_bytes(), &pinned(2)),
            Err(VerifyError::UnderThreshold { signers: 1, .. })
        ));
    }

    #[test]
    fn a_single_aggregators_envelope_certifies_one_of_one_only() {
        let wire = stats(Some(9)).sign(&key(1)).expect("signs").to_wire();
        let (opened, signers) =
            open_certified(&wire, &KeySet::single(public(1)).expect("1 of 1")).expect("1 of 1");
        assert_eq!(
            (opened.stats().active_nodes, signers),
            (Some(9), vec![public(1)])
        );
        assert!(matches!(
            open_certified(&wire, &pinned(2)),
            Err(VerifyError::UnderThreshold { signers: 1, .. })
        ));
        assert!(matches!(
            open_certified(&wire, &KeySet::single(public(2)).expect("1 of 1")),
            Err(VerifyError::UnderThreshold { signers: 0, .. })
        ));
    }

    #[test]
    fn a_non_canonical_certificate_is_refused() {
        let wire = certificate(stats(Some(9)), &[1, 2]).to_wire();
        let mut spaced = b"{ ".to_vec();
        spaced.extend_from_slice(&wire[1..]);
        assert_eq!(
            CertifiedStats::from_wire(&spaced).map(|_| ()),
            Err(VerifyError::Stats(StatsError::NonCanonical))
        );
        assert_eq!(
            CertifiedStats::from_wire(b"{\"stats\":1}").map(|_| ()),
            Err(VerifyError::Envelope)
        );
    }

    #[test]
    fn a_vote_round_trips_and_a_changed_figure_breaks_its_signature() {
        let vote = StatsVote::sign("aggregator-2", stats(Some(9)), &key(2)).expect("vote");
        let wire = vote.to_wire();
        let opened = StatsVote::open(&wire).expect("opens");
        assert_eq!(opened.replica(), "aggregator-2");
        assert_eq!(opened.signature().key, public(2));
        let text = String::from_utf8(wire).expect("ascii");
        let changed = text.replacen("\"active_nodes\":9", "\"active_nodes\":8", 1);
        assert_ne!(changed, text);
        assert_eq!(
            StatsVote::open(changed.as_bytes()).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        assert!(StatsVote::sign("a b", stats(None), &key(2)).is_err());
    }

    #[test]
    fn key_sets_refuse_duplicates_and_impossible_thresholds() {
        assert_eq!(
            KeySet::new(vec![public(1), public(1)], 1),
            Err(KeySetError::Duplicate(public(1)))
        );
        assert_eq!(
            KeySet::new(vec![public(1), public(2)], 3),
            Err(KeySetError::Threshold {
                threshold: 3,
                keys: 2
            })
        );
        assert_eq!(KeySet::new(Vec::new(), 1), Err(KeySetError::Empty));
        assert_eq!(KeySet::majority(3), 2);
        assert_eq!(KeySet::majority(4), 3);
        assert_eq!(KeySet::single(public(1)).expect("1 of 1").threshold(), 1);
    }
}
