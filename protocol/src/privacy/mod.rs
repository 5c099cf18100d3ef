//! The privacy validator: the last gate before signing (monitor) and the first check
//! after receiving (aggregator). It fails closed.
//!
//! [`validate_report_bytes`] works on the exact bytes that are signed and sent, in this
//! order (the first failing step names the [`PrivacyViolation`]):
//!
//! 1. size: at most [`MAX_REPORT_BYTES`];
//! 2. one pass over the bytes: valid UTF-8 JSON; every key and string value
//!    (escapes decoded) that is not an exact schema value is checked against the denied
//!    [`Pattern`]s (wallet/hash, UUID, e-mail, IPv4, IPv6, key material, long hex,
//!    timestamp that is not a window start, mnemonic); every number outside the
//!    `window` field that is large enough to be a Unix time is a timestamp; the
//!    `window` field must be a window start. Against the schema allowlist: no unknown,
//!    duplicate or missing field, bucket fields hold one of their buckets, labels and
//!    ids have their exact form, counts and item lists stay within their limits. A
//!    denied pattern anywhere wins over a schema violation anywhere;
//! 3. strict typed parse ([`Report`], `deny_unknown_fields`) as a second check;
//! 4. level rules: a `strict` report has no task items, no invoice items and no
//!    continent; in a `full` report the completed/failed counts equal the task items
//!    with that outcome;
//! 5. canonical form: the bytes are exactly [`Report::to_canonical_bytes`] of the
//!    parsed value (no whitespace, no escapes, schema field order), so there is one
//!    encoding per report and nothing can hide in formatting.
//!
//! Violations never echo the offending value: they name the field path and the kind
//! of problem, so they can be logged and counted safely.

pub mod pattern;
pub(crate) mod schema;
mod walk;

pub use pattern::Pattern;

use crate::report::{Level, Outcome, Report};

/// Largest canonical report, in bytes. With the signature envelope a report stays
/// under 1 000 000 bytes, below NATS's default 1 MiB payload limit.
pub const MAX_REPORT_BYTES: usize = 1_000_000 - crate::envelope::REPORT_ENVELOPE_BYTES;

/// Why a report was blocked (monitor) or rejected (aggregator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyViolation {
    #[error("report is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("report is not valid JSON (byte {offset}: {detail})")]
    Malformed { offset: usize, detail: &'static str },
    #[error("`{path}` holds {pattern}")]
    Pattern { path: String, pattern: Pattern },
    #[error("`{path}` is not a report field (the schema is an allowlist)")]
    UnknownField { path: String },
    #[error("`{path}` appears more than once")]
    DuplicateField { path: String },
    #[error("`{path}` is missing")]
    MissingField { path: String },
    #[error("`{path}` is not one of its buckets")]
    BadBucket { path: String },
    #[error("`{path}` is not {expected}")]
    InvalidValue {
        path: String,
        expected: &'static str,
    },
    #[error("`{path}` has more than {max} items")]
    TooManyItems { path: String, max: usize },
    #[error("report does not match the schema: {detail}")]
    Schema { detail: String },
    #[error("a strict-level report may not carry `{field}`")]
    StrictLevel { field: &'static str },
    #[error("window counts disagree with the task items (completed/failed must equal the items with that outcome)")]
    CountsMismatch,
    #[error("report bytes are not canonical (compact JSON, schema field order, no escapes)")]
    NonCanonical,
    #[error("the report's version is not 2 (a monitor older than this hub: upgrade it)")]
    UnsupportedVersion,
}

impl PrivacyViolation {
    /// Stable short reason for counters (`pattern.ipv4`, `unknown_field`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed { .. } => "malformed",
            Self::Pattern { pattern, .. } => match pattern {
                Pattern::WalletOrHash => "pattern.wallet_or_hash",
                Pattern::Uuid => "pattern.uuid",
                Pattern::Email => "pattern.email",
                Pattern::Ipv4 => "pattern.ipv4",
                Pattern::Ipv6 => "pattern.ipv6",
                Pattern::PrivateKey => "pattern.private_key",
                Pattern::HexBlob => "pattern.hex_blob",
                Pattern::Timestamp => "pattern.timestamp",
                Pattern::Mnemonic => "pattern.mnemonic",
            },
            Self::UnknownField { .. } => "unknown_field",
            Self::DuplicateField { .. } => "duplicate_field",
            Self::MissingField { .. } => "missing_field",
            Self::BadBucket { .. } => "bad_bucket",
            Self::InvalidValue { .. } => "invalid_value",
            Self::TooManyItems { .. } => "too_many_items",
            Self::Schema { .. } => "schema",
            Self::StrictLevel { .. } => "strict_level",
            Self::CountsMismatch => "counts_mismatch",
            Self::NonCanonical => "non_canonical",
            Self::UnsupportedVersion => "version",
        }
    }
}

/// A report whose exact bytes passed every privacy rule. Only
/// [`validate_report_bytes`] (and [`validate_report`]) construct it; only it can be
/// signed ([`ValidatedReport::sign`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedReport {
    report: Report,
    bytes: Vec<u8>,
}

impl ValidatedReport {
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The exact bytes that were checked (and will be signed and sent).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_parts(self) -> (Report, Vec<u8>) {
        (self.report, self.bytes)
    }
}

/// Checks the exact bytes of a report against every rule (see the module docs).
pub fn validate_report_bytes(bytes: &[u8]) -> Result<ValidatedReport, PrivacyViolation> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(PrivacyViolation::TooLarge {
            len: bytes.len(),
            max: MAX_REPORT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| PrivacyViolation::Malformed {
        offset: e.valid_up_to(),
        detail: "invalid UTF-8",
    })?;
    walk::walk(text, &schema::REPORT).map_err(|violation| {
        // Another version (1 carried a hashed id per item) is named as such, so a hub
        // counts the monitors that need an upgrade.
        #[derive(serde::Deserialize)]
        struct Version {
            v: u64,
        }
        match serde_json::from_str::<Version>(text) {
            Ok(Version { v }) if v != crate::report::V2::NUMBER && v < 100 => {
                PrivacyViolation::UnsupportedVersion
            }
            _ => violation,
        }
    })?;
    let report: Report = serde_json::from_str(text).map_err(|e| PrivacyViolation::Schema {
        detail: e.to_string(),
    })?;
    check_level(&report)?;
    if report.to_canonical_bytes() != bytes {
        return Err(PrivacyViolation::NonCanonical);
    }
    Ok(ValidatedReport {
        report,
        bytes: bytes.to_vec(),
    })
}

/// Serializes `report` canonically and validates those bytes.
pub fn validate_report(report: &Report) -> Result<ValidatedReport, PrivacyViolation> {
    validate_report_bytes(&report.to_canonical_bytes())
}

fn check_level(report: &Report) -> Result<(), PrivacyViolation> {
    match report.level {
        Level::Strict => {
            if !report.tasks.is_empty() {
                return Err(PrivacyViolation::StrictLevel { field: "tasks" });
            }
            if !report.invoices.is_empty() {
                return Err(PrivacyViolation::StrictLevel { field: "invoices" });
            }
            if report.continent.is_some() {
                return Err(PrivacyViolation::StrictLevel { field: "continent" });
            }
        }
        Level::Full => {
            let completed = report
                .tasks
                .iter()
                .filter(|t| t.outcome == Outcome::Completed)
                .count();
            let failed = report.tasks.len() - completed;
            if report.counts.completed != completed as u64 || report.counts.failed != failed as u64
            {
                return Err(PrivacyViolation::CountsMismatch);
            }
        }
    }
    Ok(())
}
