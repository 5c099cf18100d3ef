//! The signed envelope's framing, `{"report":<bytes>,"sig":"<128 hex>"}` (resp.
//! `"stats"`): its pieces and the bytes it adds. Below both [`crate::sign`], which
//! writes and splits envelopes, and [`crate::privacy`], whose size limit leaves room
//! for one.

pub(crate) const REPORT_OPEN: &[u8] = br#"{"report":"#;
pub(crate) const STATS_OPEN: &[u8] = br#"{"stats":"#;
pub(crate) const SIG_OPEN: &[u8] = br#","sig":""#;
pub(crate) const CLOSE: &[u8] = br#""}"#;
pub(crate) const SIG_HEX: usize = 128;
pub(crate) const TAIL: usize = SIG_OPEN.len() + SIG_HEX + CLOSE.len();

/// Bytes a report envelope adds around the canonical report.
pub const REPORT_ENVELOPE_BYTES: usize = REPORT_OPEN.len() + TAIL;
