//! The TrueBit federation wire format, shared by the monitor (which publishes) and the
//! aggregator (which verifies and publishes statistics). No runtime, no I/O: types,
//! encodings, signatures and the privacy rules of docs/PRIVACY.md.
//!
//! # Messages
//!
//! | subject | message | signed by |
//! |---|---|---|
//! | [`REPORT_SUBJECT`] `truebit.report.v1` | [`report::Report`] in a [`sign::SignedReport`] envelope | the node's Ed25519 key |
//! | [`STATS_SUBJECT`] `truebit.stats.v2` | [`stats::NetworkStats`] in a [`certificate::CertifiedStats`] | M of the N pinned aggregator replicas' Ed25519 keys (1 of 1 for a single aggregator) |
//! | [`certificate::STATS_SIGNATURE_SUBJECT`] `truebit.stats.sig.v1` | a [`certificate::StatsVote`] (replica to replica) | that replica's key |
//! | [`PROOF_REQUEST_SUBJECT`] `truebit.proof.req.v1` | a [`proof::SignedProofRequest`] (node to every replica; each answers a sealed [`proof::ProofReply`] on the reply inbox) | the node's Ed25519 key (the request); the replica's key (the statement inside the reply) |
//!
//! A node sends exactly one report per 5-minute UTC window ([`window`]), after the
//! window closes, at a uniformly random delay of 0–120 s ([`window::send_delay`]). A
//! window without activity still gets an empty *cover* report of the same shape.
//!
//! # Encoding
//!
//! Canonical bytes are compact JSON produced by `serde_json` from the types here:
//! fields in declaration order, no whitespace, integers in decimal, no floats, maps
//! sorted by key, and every string ASCII from a fixed label set or fixed-length
//! lowercase hex. Serializing the same value always gives the same bytes, and the
//! validator accepts only those bytes ([`privacy::PrivacyViolation::NonCanonical`]).
//! Signatures cover `"<subject>\n" || canonical bytes`; the wire form is
//! `{"report":<canonical bytes>,"sig":"<128 hex>"}` (resp. `"stats"`), split by
//! position on receipt so the bytes verified are exactly the bytes signed.
//!
//! # What a report carries (and nothing else)
//!
//! - `node`: hex of the first 16 bytes of SHA-256(public key); `key`: the Ed25519
//!   public key (hex). A random key pair per installation: no wallet, hostname, IP,
//!   container id or hardware fingerprint.
//! - `window`: the window start, the only time on the wire.
//! - `level`: `full`, or `strict` (node status and window counts only, the counts
//!   noised by the node, [`noise::strict_count`]).
//! - `continent`: `null`, or a code the operator set (AF AN AS EU NA OC SA).
//! - `status`: node state (`up`/`down`/`unknown`), active tasks and total tasks, both
//!   bucketed ([`bucket`]). No software version: a rare version would single out a node.
//! - `counts`: tasks received, completed and failed in the window.
//! - `tasks`: per finished task, chain id, outcome, execution time, gas and memory
//!   buckets, cache flag. No identifier: no published figure needs one.
//! - `invoices`: per invoice line, operation and steps bucket.
//!
//! # Privacy rules
//!
//! [`privacy::validate_report_bytes`] is the fail-closed gate both sides run on the
//! exact bytes: size cap, schema allowlist, bucket membership, denied patterns (wallet
//! or hash, UUID, e-mail, IPv4/IPv6, key material, long hex, mnemonic, any timestamp
//! that is not a window start), level rules and canonical form. Only its
//! [`privacy::ValidatedReport`] can be signed. The aggregator calls
//! [`sign::open_report`], which adds the envelope, node-id and signature checks; it
//! publishes statistics made k-anonymous with [`stats::k_anonymous_cells`] and
//! [`stats::k_figure`], each figure noised once per period ([`noise`]).
//!
//! # Example
//!
//! ```
//! use truebit_protocol::{privacy, report::{Level, Report}, sign::{self, SigningKey}, window};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let report = Report::for_key(&key.verifying_key(), window::window_of(1_717_243_321), Level::Full);
//! let validated = privacy::validate_report(&report)?; // the last gate: fails closed
//! let wire = validated.sign(&key)?.to_wire(); // publish on REPORT_SUBJECT
//! assert!(wire.len() < 2048); // a quiet window costs well under 2 KB
//!
//! let received = sign::open_report(&wire)?; // aggregator: privacy + node id + signature
//! assert_eq!(received.report(), &report);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bucket;
pub mod certificate;
mod envelope;
mod hexbytes;
pub mod identity;
pub mod noise;
pub mod privacy;
pub mod proof;
pub mod report;
pub mod sign;
pub mod stats;
pub mod subject;
pub mod window;

pub use subject::{PROOF_REQUEST_SUBJECT, REPORT_SUBJECT, STATS_SUBJECT};
