//! Ed25519 signatures over canonical bytes, and the wire envelopes.
//!
//! A signature covers `context || canonical bytes`, where the context is the subject
//! name and a newline ([`REPORT_CONTEXT`], [`STATS_CONTEXT`]): a signature made for one
//! message kind never verifies as the other. Verification uses `verify_strict` (no
//! small-order keys, no malleable signatures).
//!
//! The wire form embeds the exact signed bytes and the signature as 128 lowercase hex
//! digits, in a fixed layout that is also plain JSON:
//!
//! ```text
//! {"report":<canonical report bytes>,"sig":"<128 hex>"}
//! {"stats":<canonical statistics bytes>,"sig":"<128 hex>"}
//! ```
//!
//! Readers split the envelope by position ([`SignedReport::from_wire`]), so the bytes
//! checked, verified and stored are exactly the bytes that were signed.

pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use ed25519_dalek::Signer;

use crate::identity::PublicKey;
use crate::privacy::{validate_report_bytes, PrivacyViolation, ValidatedReport};
use crate::report::Report;
use crate::stats::{NetworkStats, StatsError, MAX_STATS_BYTES};

/// Prefix of every signed report message.
pub const REPORT_CONTEXT: &[u8] = b"truebit.report.v1\n";

/// Prefix of every signed statistics message (also of each replica's signature in a
/// [`crate::certificate::CertifiedStats`]).
pub const STATS_CONTEXT: &[u8] = b"truebit.stats.v1\n";

pub use crate::envelope::REPORT_ENVELOPE_BYTES;
use crate::envelope::{CLOSE, REPORT_OPEN, SIG_HEX, SIG_OPEN, STATS_OPEN, TAIL};

/// Largest report on the wire (envelope included).
pub const MAX_REPORT_WIRE_BYTES: usize = crate::privacy::MAX_REPORT_BYTES + REPORT_ENVELOPE_BYTES;

/// Largest statistics message on the wire (envelope included).
pub const MAX_STATS_WIRE_BYTES: usize = MAX_STATS_BYTES + STATS_OPEN.len() + TAIL;

/// Why a report could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the report's `key` is not this node's public key")]
    KeyMismatch,
    #[error("the report's `node` is not derived from its `key`")]
    NodeIdMismatch,
}

/// Why a received message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("message is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error(
        "message is not a signature envelope ({{\"report\"|\"stats\":…,\"sig\":\"<128 hex>\"}})"
    )]
    Envelope,
    #[error("report blocked by the privacy rules: {0}")]
    Privacy(#[from] PrivacyViolation),
    #[error("invalid statistics: {0}")]
    Stats(#[from] StatsError),
    #[error("the report's node id is not derived from its public key")]
    NodeIdMismatch,
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error(
        "certified by {signers} of the pinned aggregator keys, fewer than the {threshold} required"
    )]
    UnderThreshold { signers: usize, threshold: usize },
}

impl VerifyError {
    /// Stable short reason for counters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Envelope => "envelope",
            Self::Privacy(v) => v.code(),
            Self::Stats(e) => e.code(),
            Self::NodeIdMismatch => "node_id_mismatch",
            Self::BadKey => "bad_key",
            Self::BadSignature => "bad_signature",
            Self::UnderThreshold { .. } => "under_threshold",
        }
    }
}

fn message(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + bytes.len());
    m.extend_from_slice(context);
    m.extend_from_slice(bytes);
    m
}

fn envelope(open: &[u8], bytes: &[u8], signature: &Signature) -> Vec<u8> {
    let mut out = Vec::with_capacity(open.len() + bytes.len() + TAIL);
    out.extend_from_slice(open);
    out.extend_from_slice(bytes);
    out.extend_from_slice(SIG_OPEN);
    let mut hex = [0u8; SIG_HEX];
    hex::encode_to_slice(signature.to_bytes(), &mut hex).expect("128 hex digits for 64 bytes");
    out.extend_from_slice(&hex);
    out.extend_from_slice(CLOSE);
    out
}

/// Splits `open <bytes> ,"sig":"<hex>"}` into the inner bytes and the signature.
fn split_envelope<'a>(wire: &'a [u8], open: &[u8]) -> Result<(&'a [u8], Signature), VerifyError> {
    if wire.len() < open.len() + TAIL || !wire.starts_with(open) || !wire.ends_with(CLOSE) {
        return Err(VerifyError::Envelope);
    }
    let tail_start = wire.len() - TAIL;
    let (inner, tail) = (&wire[open.len()..tail_start], &wire[tail_start..]);
    if !tail.starts_with(SIG_OPEN) {
        return Err(VerifyError::Envelope);
    }
    let hex_digits = std::str::from_utf8(&tail[SIG_OPEN.len()..SIG_OPEN.len() + SIG_HEX])
        .map_err(|_| VerifyError::Envelope)?;
    let sig: [u8; 64] = crate::hexbytes::decode(hex_digits).ok_or(VerifyError::Envelope)?;
    Ok((inner, Signature::from_bytes(&sig)))
}

impl ValidatedReport {
    /// Signs the validated bytes with the node key. The key must be the report's own
    /// (`key` field, and `node` derived from it).
    pub fn sign(self, key: &SigningKey) -> Result<SignedReport, SignError> {
        let public = PublicKey::from(&key.verifying_key());
        if self.report().key != public {
            return Err(SignError::KeyMismatch);
        }
        if self.report().node != public.node_id() {
            return Err(SignError::NodeIdMismatch);
        }
        let (report, bytes) = self.into_parts();
        let signature = key.sign(&message(REPORT_CONTEXT, &bytes));
        Ok(SignedReport {
            report,
            bytes,
            signature,
        })
    }
}

/// A report with its exact canonical bytes and their signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReport {
    report: Report,
    bytes: Vec<u8>,
    signature: Signature,
}

impl SignedReport {
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The signed canonical report bytes.
    pub fn report_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    pub fn into_report(self) -> Report {
        self.report
    }

    /// The bytes published on [`crate::REPORT_SUBJECT`].
    pub fn to_wire(&self) -> Vec<u8> {
        envelope(REPORT_OPEN, &self.bytes, &self.signature)
    }

    /// Parses a wire message: size, envelope, and every privacy rule on the embedded
    /// bytes. Does **not** check the signature: call [`SignedReport::verify`], or use
    /// [`open_report`] which does both.
    pub fn from_wire(wire: &[u8]) -> Result<Self, VerifyError> {
        if wire.len() > MAX_REPORT_WIRE_BYTES {
            return Err(VerifyError::TooLarge {
                len: wire.len(),
                max: MAX_REPORT_WIRE_BYTES,
            });
        }
        let (inner, signature) = split_envelope(wire, REPORT_OPEN)?;
        let (report, bytes) = validate_report_bytes(inner)?.into_parts();
        Ok(Self {
            report,
            bytes,
            signature,
        })
    }

    /// The exact message the signature covers: [`REPORT_CONTEXT`] followed by the
    /// report bytes (for batch verification, where [`SignedReport::verify`] one by one
    /// is too slow).
    pub fn signed_message(&self) -> Vec<u8> {
        message(REPORT_CONTEXT, &self.bytes)
    }

    /// Checks that the node id is derived from the public key and that the signature
    /// over the exact bytes verifies with that key.
    pub fn verify(&self) -> Result<(), VerifyError> {
        if self.report.node != self.report.key.node_id() {
            return Err(VerifyError::NodeIdMismatch);
        }
        let key = self
            .report
            .key
            .to_verifying_key()
            .map_err(|_| VerifyError::BadKey)?;
        key.verify_strict(&message(REPORT_CONTEXT, &self.bytes), &self.signature)
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// Everything the aggregator checks that is in the message itself: size, envelope,
/// privacy rules, node id, signature. (Window freshness and duplicates need its state:
/// see [`crate::window::WindowStart::check_freshness`] and [`Report::message_id`].)
pub fn open_report(wire: &[u8]) -> Result<SignedReport, VerifyError> {
    let signed = SignedReport::from_wire(wire)?;
    signed.verify()?;
    Ok(signed)
}

/// Checks the signatures of many reports at once (Ed25519 batch verification, about
/// twice as fast per report as one by one), with the same node-id and key checks as
/// [`SignedReport::verify`]. Returns one result per report, in order. When the batch
/// fails, the reports are checked one by one with `verify_strict`, so a forged report
/// never takes valid ones with it.
///
/// Keys of small order are refused before the batch (as `verify_strict` does). The
/// batch equation can accept a signature that `verify_strict` refuses only when the
/// key's owner crafted it on purpose (a non-canonical `R`): that is not a forgery,
/// since nobody but the node can sign for its key.
pub fn verify_reports(reports: &[SignedReport]) -> Vec<Result<(), VerifyError>> {
    let mut results: Vec<Result<(), VerifyError>> = Vec::with_capacity(reports.len());
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut signatures: Vec<Signature> = Vec::new();
    let mut keys: Vec<VerifyingKey> = Vec::new();
    let mut batched: Vec<usize> = Vec::new();
    for (i, signed) in reports.iter().enumerate() {
        let report = signed.report();
        if report.node != report.key.node_id() {
            results.push(Err(VerifyError::NodeIdMismatch));
            continue;
        }
        match report.key.to_verifying_key() {
            Ok(key) if !key.is_weak() => {
                messages.push(signed.signed_message());
                signatures.push(signed.signature);
                keys.push(key);
                batched.push(i);
                results.push(Ok(()));
            }
            _ => results.push(Err(VerifyError::BadKey)),
        }
    }
    if batched.is_empty() {
        return results;
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    if ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_err() {
        for (&i, (message, (signature, key))) in batched
            .iter()
            .zip(messages.iter().zip(signatures.iter().zip(keys.iter())))
        {
            results[i] = key
                .verify_strict(message, signature)
                .map_err(|_| VerifyError::BadSignature);
        }
    }
    results
}

impl NetworkStats {
    /// Checks and signs the statistics with the aggregator key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedStats, StatsError> {
        self.check()?;
        let bytes = self.to_canonical_bytes();
        if bytes.len() > MAX_STATS_BYTES {
            return Err(StatsError::TooLarge {
                len: bytes.len(),
                max: MAX_STATS_BYTES,
            });
        }
        let signature = key.sign(&message(STATS_CONTEXT, &bytes));
        Ok(SignedStats {
            stats: self,
            bytes,
            signature,
        })
    }
}

/// Network statistics with their exact canonical bytes and the aggregator's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedStats {
    stats: NetworkStats,
    bytes: Vec<u8>,
    signature: Signature,
}

impl SignedStats {
    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }

    pub fn stats_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    pub fn into_stats(self) -> NetworkStats {
        self.stats
    }

    /// The envelope the aggregator keeps in its history (what it publishes is a
    /// [`crate::certificate::CertifiedStats`] of these bytes).
    pub fn to_wire(&self) -> Vec<u8> {
        envelope(STATS_OPEN, &self.bytes, &self.signature)
    }

    /// Parses a wire message: size, envelope, strict schema, canonical form and
    /// [`NetworkStats::check`]. Does **not** check the signature.
    pub fn from_wire(wire: &[u8]) -> Result<Self, VerifyError> {
        if wire.len() > MAX_STATS_WIRE_BYTES {
            return Err(VerifyError::TooLarge {
                len: wire.len(),
                max: MAX_STATS_WIRE_BYTES,
            });
        }
        let (inner, signature) = split_envelope(wire, STATS_OPEN)?;
        let stats: NetworkStats =
            serde_json::from_slice(inner).map_err(|e| StatsError::Schema {
                detail: e.to_string(),
            })?;
        if stats.to_canonical_bytes() != inner {
            return Err(StatsError::NonCanonical.into());
        }
        stats.check()?;
        Ok(Self {
            stats,
            bytes: inner.to_vec(),
            signature,
        })
    }

    /// The exact message the signature covers: [`STATS_CONTEXT`] followed by the bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        message(STATS_CONTEXT, &self.bytes)
    }

    /// Checks the signature against the aggregator key the monitor pinned.
    pub fn verify(&self, aggregator: &VerifyingKey) -> Result<(), VerifyError> {
        aggregator
            .verify_strict(&message(STATS_CONTEXT, &self.bytes), &self.signature)
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// Parses and verifies a statistics message against the pinned aggregator key.
pub fn open_stats(wire: &[u8], aggregator: &VerifyingKey) -> Result<SignedStats, VerifyError> {
    let signed = SignedStats::from_wire(wire)?;
    signed.verify(aggregator)?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Level;
    use crate::window::WindowStart;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn window() -> WindowStart {
        WindowStart::new(1_717_243_200).expect("aligned")
    }

    fn signed(seed: u8) -> SignedReport {
        let r = Report::for_key(&key(seed).verifying_key(), window(), Level::Full);
        crate::privacy::validate_report(&r)
            .expect("valid")
            .sign(&key(seed))
            .expect("signs")
    }

    #[test]
    fn batch_verification_accepts_good_reports_and_singles_out_forged_ones() {
        let mut reports: Vec<SignedReport> = (1..=8).map(signed).collect();
        assert!(verify_reports(&reports).iter().all(Result::is_ok));

        // Report 3 carries report 4's signature: only report 3 fails.
        reports[3].signature = reports[4].signature;
        // Report 6 claims another node id.
        reports[6].report.node = PublicKey::from(&key(99).verifying_key()).node_id();
        let results = verify_reports(&reports);
        let expected: Vec<Result<(), VerifyError>> = (0..8)
            .map(|i| match i {
                3 => Err(VerifyError::BadSignature),
                6 => Err(VerifyError::NodeIdMismatch),
                _ => Ok(()),
            })
            .collect();
        assert_eq!(results, expected);
        // The same verdicts as one by one.
        let single: Vec<Result<(), VerifyError>> =
            reports.iter().map(SignedReport::verify).collect();
        assert_eq!(results, single);
        assert!(verify_reports(&[]).is_empty());
    }

    #[test]
    fn envelope_overhead_is_what_the_size_limit_assumes() {
        assert_eq!(REPORT_ENVELOPE_BYTES, 148);
        let r = Report::for_key(&key(1).verifying_key(), window(), Level::Full);
        let signed = crate::privacy::validate_report(&r)
            .expect("valid")
            .sign(&key(1))
            .expect("signs");
        assert_eq!(
            signed.to_wire().len(),
            signed.report_bytes().len() + REPORT_ENVELOPE_BYTES
        );
        assert_eq!(MAX_REPORT_WIRE_BYTES, 1_000_000);
    }

    #[test]
    fn signing_refuses_another_nodes_report() {
        let r = Report::for_key(&key(1).verifying_key(), window(), Level::Full);
        let v = crate::privacy::validate_report(&r).expect("valid");
        assert_eq!(
            v.sign(&key(2)).expect_err("wrong key"),
            SignError::KeyMismatch
        );

        let mut r = Report::for_key(&key(1).verifying_key(), window(), Level::Full);
        r.node = PublicKey::from(&key(3).verifying_key()).node_id();
        let v = crate::privacy::validate_report(&r).expect("valid");
        assert_eq!(
            v.sign(&key(1)).expect_err("wrong node id"),
            SignError::NodeIdMismatch
        );
    }

    #[test]
    fn verify_rejects_a_node_id_that_is_not_derived_from_the_key() {
        let k = key(1);
        let mut report = Report::for_key(&k.verifying_key(), window(), Level::Full);
        report.node = PublicKey::from(&key(3).verifying_key()).node_id();
        let bytes = report.to_canonical_bytes();
        // Correctly signed by the key in the report, but claiming another node's id.
        let signature = k.sign(&message(REPORT_CONTEXT, &bytes));
        let forged = SignedReport {
            report,
            bytes,
            signature,
        };
        assert_eq!(forged.verify(), Err(VerifyError::NodeIdMismatch));
        assert_eq!(
            open_report(&forged.to_wire()).map(|_| ()),
            Err(VerifyError::NodeIdMismatch)
        );
    }

    #[test]
    fn a_stats_signature_does_not_verify_as_a_report_signature() {
        let k = key(1);
        let report = Report::for_key(&k.verifying_key(), window(), Level::Full);
        let bytes = report.to_canonical_bytes();
        let signature = k.sign(&message(STATS_CONTEXT, &bytes));
        let crossed = SignedReport {
            report,
            bytes,
            signature,
        };
        assert_eq!(crossed.verify(), Err(VerifyError::BadSignature));
    }
}
