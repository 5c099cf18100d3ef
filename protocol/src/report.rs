//! The node window report (`v: 2`), monitor -> aggregator on [`crate::REPORT_SUBJECT`].
//!
//! Every field is always present, in this order, so an empty (cover) report and a busy
//! one have the same shape and differ only in length:
//!
//! ```json
//! {"v":2,"node":"<32 hex>","key":"<64 hex>","window":1717243200,"level":"full",
//!  "continent":null,"status":{"state":"up","active":"1","total":"10-50"},
//!  "counts":{"received":2,"completed":1,"failed":1},
//!  "tasks":[{"chain":1,"outcome":"completed","duration":"1-5s",
//!            "gas":"1M-10M","memory":"64-256","cached":true}, ...],
//!  "invoices":[{"op":"charge","steps":"1M-10M"}, ...]}
//! ```
//!
//! What is deliberately *not* here: the node software version (a rare version
//! singles a node out; nothing in PRIVACY.md needs it), wallet addresses, task ids,
//! any per-item identifier (version 1 carried a salted hash of each execution id; no
//! published figure needs one, and a validator cannot tell a salted hash from a raw
//! identifier of the same shape), block numbers or hashes, requester or worker
//! addresses, hostnames, container ids, any time but the window start.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bucket::{
    label_enum, ActiveTasksBucket, ExecTimeBucket, GasBucket, MemoryBucket, StepsBucket,
    TotalTasksBucket,
};
use crate::identity::{NodeId, PublicKey};
use crate::window::WindowStart;

/// Most task items one report may carry.
pub const MAX_TASK_ITEMS: usize = 4_096;

/// Most invoice items one report may carry.
pub const MAX_INVOICE_ITEMS: usize = 4_096;

/// Largest value of a window count. Far above any real node (a slot finishes a task
/// in well over 100 ms) and far below anything that could carry a timestamp.
pub const MAX_WINDOW_COUNT: u64 = 100_000;

/// Largest chain id on the wire. Larger numbers look like Unix times (seconds since
/// 2000-01-01 and up), which the validator refuses anywhere but the window field; a
/// node on such a chain reports its chain as `null` (unknown).
pub const MAX_CHAIN_ID: u64 = 946_684_799;

/// Protocol version marker of statistics: serializes as `1` and accepts nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V1;

impl V1 {
    pub const NUMBER: u64 = 1;
}

impl Serialize for V1 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(Self::NUMBER)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u64::deserialize(deserializer)? {
            Self::NUMBER => Ok(V1),
            _ => Err(serde::de::Error::custom(
                "unsupported protocol version (expected 1)",
            )),
        }
    }
}

/// Protocol version marker of reports: serializes as `2` and accepts nothing else.
/// Version 1 reports (with a hashed id per task and invoice item) are refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V2;

impl V2 {
    pub const NUMBER: u64 = 2;
}

impl Serialize for V2 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(Self::NUMBER)
    }
}

impl<'de> Deserialize<'de> for V2 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u64::deserialize(deserializer)? {
            Self::NUMBER => Ok(V2),
            _ => Err(serde::de::Error::custom(
                "unsupported report version (expected 2; upgrade the monitor)",
            )),
        }
    }
}

label_enum! {
    /// How much a node shares. `strict` sends node status and window counts only.
    pub enum Level ("report level") {
        Full => "full",
        Strict => "strict",
    }
}

label_enum! {
    /// Continent code, set by the operator (never looked up from an IP).
    pub enum Continent ("continent code") {
        Africa => "AF",
        Antarctica => "AN",
        Asia => "AS",
        Europe => "EU",
        NorthAmerica => "NA",
        Oceania => "OC",
        SouthAmerica => "SA",
    }
}

impl Continent {
    /// Parses a code case-insensitively (`eu`, `EU`).
    pub fn parse(code: &str) -> Option<Self> {
        Self::from_label(&code.to_ascii_uppercase())
    }
}

label_enum! {
    /// Whether the node container was running, as last seen in the window.
    pub enum NodeState ("node state") {
        Up => "up",
        Down => "down",
        Unknown => "unknown",
    }
}

label_enum! {
    /// How a task ended.
    pub enum Outcome ("task outcome") {
        Completed => "completed",
        Failed => "failed",
    }
}

label_enum! {
    /// Invoice line operation. Anything the node prints besides the three known
    /// operations is `other`, so no free text reaches the wire.
    pub enum Operation ("invoice operation") {
        Charge => "charge",
        Pay => "pay",
        Penalty => "penalty",
        Other => "other",
    }
}

impl Operation {
    /// Maps the node's operation word (case-insensitive); unknown words are `other`.
    pub fn from_node(word: &str) -> Self {
        match word.trim().to_ascii_lowercase().as_str() {
            "charge" => Self::Charge,
            "pay" => Self::Pay,
            "penalty" => Self::Penalty,
            _ => Self::Other,
        }
    }
}

/// An EVM chain id (a JSON number), at most [`MAX_CHAIN_ID`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ChainId(u64);

impl ChainId {
    pub const fn new(id: u64) -> Option<Self> {
        if id <= MAX_CHAIN_ID {
            Some(Self(id))
        } else {
            None
        }
    }

    /// Parses a chain id as a node prints it: decimal (`137`) or `0x` hex (`0x89`).
    /// Anything else, or a value above [`MAX_CHAIN_ID`], is `None` (send unknown).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let id = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) if !hex.is_empty() && hex.len() <= 16 => u64::from_str_radix(hex, 16).ok()?,
            Some(_) => return None,
            None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok()?,
            None => return None,
        };
        Self::new(id)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = u64::deserialize(deserializer)?;
        ChainId::new(id).ok_or_else(|| serde::de::Error::custom("chain id out of range"))
    }
}

/// Node status: bucketed, so a node's exact load and history never leave the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    pub state: NodeState,
    /// Slots in use at the end of the window.
    pub active: ActiveTasksBucket,
    /// Tasks the monitor has recorded for this node so far.
    pub total: TotalTasksBucket,
}

impl NodeStatus {
    pub const UNKNOWN: NodeStatus = NodeStatus {
        state: NodeState::Unknown,
        active: ActiveTasksBucket::Unknown,
        total: TotalTasksBucket::Unknown,
    };
}

/// Tasks received, completed and failed during the window. Exact counts (at most
/// [`MAX_WINDOW_COUNT`]): they tell the aggregator what the number of task items
/// already tells it (PRIVACY.md's threat model), and network totals need them. In a
/// `full` report `completed` and `failed` equal the task items with that outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowCounts {
    pub received: u64,
    pub completed: u64,
    pub failed: u64,
}

/// One task that finished (completed or failed) during the window. No identifier:
/// items are sorted by their values, so their order says nothing about time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskItem {
    /// `null` when unknown.
    pub chain: Option<ChainId>,
    pub outcome: Outcome,
    pub duration: ExecTimeBucket,
    pub gas: GasBucket,
    pub memory: MemoryBucket,
    /// Whether the node ran the task from its cache; `null` when unknown.
    pub cached: Option<bool>,
}

/// One invoice line recorded during the window (no identifier, sorted by value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceItem {
    pub op: Operation,
    pub steps: StepsBucket,
}

/// A node's report for one window. Build it, then hand its canonical bytes to
/// [`crate::privacy::validate_report_bytes`]; only a validated report can be signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub v: V2,
    /// Derived from `key` ([`NodeId::of`]); verification rejects a mismatch.
    pub node: NodeId,
    pub key: PublicKey,
    pub window: WindowStart,
    pub level: Level,
    /// `null` unless the operator enabled location (always `null` at `strict`).
    pub continent: Option<Continent>,
    pub status: NodeStatus,
    pub counts: WindowCounts,
    /// Empty at `strict`.
    pub tasks: Vec<TaskItem>,
    /// Empty at `strict`.
    pub invoices: Vec<InvoiceItem>,
}

impl Report {
    /// An empty (cover) report of `key`'s node for `window`: unknown status, zero
    /// counts, no items, no continent.
    pub fn new(key: PublicKey, window: WindowStart, level: Level) -> Self {
        Self {
            v: V2,
            node: NodeId::of(&key),
            key,
            window,
            level,
            continent: None,
            status: NodeStatus::UNKNOWN,
            counts: WindowCounts::default(),
            tasks: Vec::new(),
            invoices: Vec::new(),
        }
    }

    /// Same as [`Report::new`] from a verifying key.
    pub fn for_key(key: &VerifyingKey, window: WindowStart, level: Level) -> Self {
        Self::new(PublicKey::from(key), window, level)
    }

    /// The canonical encoding: compact JSON (no whitespace), fields in declaration
    /// order, integers in decimal, every string ASCII. It is what gets validated,
    /// signed and sent.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serializing a report cannot fail")
    }

    /// The de-duplication key of a report, also its JetStream message id:
    /// `<node id>-<window start>`.
    pub fn message_id(&self) -> String {
        format!("{}-{}", self.node, self.window)
    }

    /// Whether this report has no task or invoice items.
    pub fn is_cover(&self) -> bool {
        self.tasks.is_empty() && self.invoices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_parses_decimal_and_hex_and_refuses_timestamp_sized_values() {
        assert_eq!(ChainId::parse("1").map(ChainId::get), Some(1));
        assert_eq!(ChainId::parse("0x89").map(ChainId::get), Some(137));
        assert_eq!(ChainId::parse(" 43114 ").map(ChainId::get), Some(43_114));
        assert_eq!(
            ChainId::parse("946684799").map(ChainId::get),
            Some(MAX_CHAIN_ID)
        );
        assert_eq!(ChainId::parse("946684800"), None);
        assert_eq!(ChainId::parse("1717243265"), None);
        assert_eq!(ChainId::parse("0x"), None);
        assert_eq!(ChainId::parse("-1"), None);
        assert_eq!(ChainId::parse("mainnet"), None);
        assert_eq!(ChainId::parse(""), None);
        assert!(serde_json::from_str::<ChainId>("946684800").is_err());
        assert_eq!(serde_json::to_string(&ChainId(137)).expect("ser"), "137");
    }

    #[test]
    fn unknown_invoice_operations_become_other() {
        assert_eq!(Operation::from_node("charge"), Operation::Charge);
        assert_eq!(Operation::from_node("PAY"), Operation::Pay);
        assert_eq!(Operation::from_node("penalty"), Operation::Penalty);
        assert_eq!(Operation::from_node("refund to 0xabc"), Operation::Other);
    }

    #[test]
    fn continent_codes_are_the_seven_of_privacy_md() {
        let codes: Vec<&str> = Continent::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(codes, ["AF", "AN", "AS", "EU", "NA", "OC", "SA"]);
        assert_eq!(Continent::parse("eu"), Some(Continent::Europe));
        assert_eq!(Continent::parse("DE"), None);
    }

    #[test]
    fn version_marker_is_one_and_only_one() {
        assert_eq!(serde_json::to_string(&V1).expect("ser"), "1");
        assert!(serde_json::from_str::<V1>("1").is_ok());
        assert!(serde_json::from_str::<V1>("2").is_err());
    }

    #[test]
    fn new_report_is_an_empty_cover_report_with_a_derived_node_id() {
        let key = PublicKey::from_bytes([9; 32]);
        let w = WindowStart::new(1_717_243_200).expect("aligned");
        let r = Report::new(key, w, Level::Full);
        assert!(r.is_cover());
        assert_eq!(r.node, NodeId::of(&key));
        assert_eq!(r.message_id(), format!("{}-1717243200", NodeId::of(&key)));
        assert_eq!(
            r.counts,
            WindowCounts {
                received: 0,
                completed: 0,
                failed: 0
            }
        );
    }
}
