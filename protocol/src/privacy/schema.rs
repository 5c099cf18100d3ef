//! The report schema as an allowlist: every object's keys and what each value may be.
//!
//! The walker ([`super::walk`]) checks the exact bytes against these tables; serde's
//! `deny_unknown_fields` types are the second, independent check.

use crate::bucket::{
    ActiveTasksBucket, ExecTimeBucket, GasBucket, Label, MemoryBucket, StepsBucket,
    TotalTasksBucket,
};
use crate::report::{
    Continent, Level, NodeState, Operation, Outcome, MAX_CHAIN_ID, MAX_INVOICE_ITEMS,
    MAX_TASK_ITEMS, MAX_WINDOW_COUNT,
};

/// What a field's value may be.
#[derive(Clone, Copy)]
pub(crate) enum Rule {
    /// The number 1.
    Version,
    /// A window start (the only time field): an integer multiple of 300.
    Window,
    /// Exactly this many lowercase hex digits (ids that are allowed to be hex).
    Hex {
        digits: usize,
        what: &'static str,
    },
    /// One label of a closed set; `bucket` makes a miss a bucket violation.
    Label {
        valid: fn(&str) -> bool,
        what: &'static str,
        nullable: bool,
        bucket: bool,
    },
    /// An integer in `0..=max`.
    Count {
        max: u64,
    },
    /// A chain id (integer in `0..=MAX_CHAIN_ID`) or null.
    Chain,
    /// `true`, `false` or null.
    OptionalBool,
    Object(&'static ObjectSchema),
    Array {
        item: &'static ObjectSchema,
        max: usize,
    },
}

impl Rule {
    /// Whether `s` is exactly an allowed value (checked before any pattern).
    pub(crate) fn accepts_str(&self, s: &str) -> bool {
        match *self {
            Rule::Hex { digits, .. } => s.len() == digits && crate::hexbytes::is_lower_hex(s),
            Rule::Label { valid, .. } => valid(s),
            _ => false,
        }
    }

    pub(crate) fn nullable(&self) -> bool {
        match *self {
            Rule::Label { nullable, .. } => nullable,
            Rule::Chain | Rule::OptionalBool => true,
            _ => false,
        }
    }

    /// What the value should have been, for messages.
    pub(crate) fn expected(&self) -> &'static str {
        match *self {
            Rule::Version => "the report version 2",
            Rule::Window => "a window start (a multiple of 300 s)",
            Rule::Hex { what, .. } => what,
            Rule::Label { what, .. } => what,
            Rule::Count { .. } => "a count from 0 to 100000",
            Rule::Chain => "a chain id (integer up to 946684799) or null",
            Rule::OptionalBool => "true, false or null",
            Rule::Object(_) => "an object",
            Rule::Array { .. } => "an array of objects",
        }
    }
}

pub(crate) struct Field {
    pub key: &'static str,
    pub rule: Rule,
}

pub(crate) struct ObjectSchema {
    pub fields: &'static [Field],
}

fn is<L: Label>(s: &str) -> bool {
    L::from_label(s).is_some()
}

const fn label<L: Label>(what: &'static str) -> Rule {
    Rule::Label {
        valid: is::<L>,
        what,
        nullable: false,
        bucket: false,
    }
}

const fn bucket<L: Label>(what: &'static str) -> Rule {
    Rule::Label {
        valid: is::<L>,
        what,
        nullable: false,
        bucket: true,
    }
}

const fn field(key: &'static str, rule: Rule) -> Field {
    Field { key, rule }
}

const COUNT: Rule = Rule::Count {
    max: MAX_WINDOW_COUNT,
};

pub(crate) static STATUS: ObjectSchema = ObjectSchema {
    fields: &[
        field(
            "state",
            label::<NodeState>("a node state (up, down, unknown)"),
        ),
        field(
            "active",
            bucket::<ActiveTasksBucket>("an active tasks bucket"),
        ),
        field("total", bucket::<TotalTasksBucket>("a total tasks bucket")),
    ],
};

pub(crate) static COUNTS: ObjectSchema = ObjectSchema {
    fields: &[
        field("received", COUNT),
        field("completed", COUNT),
        field("failed", COUNT),
    ],
};

pub(crate) static TASK: ObjectSchema = ObjectSchema {
    fields: &[
        field("chain", Rule::Chain),
        field(
            "outcome",
            label::<Outcome>("an outcome (completed, failed)"),
        ),
        field(
            "duration",
            bucket::<ExecTimeBucket>("an execution time bucket"),
        ),
        field("gas", bucket::<GasBucket>("a gas bucket")),
        field("memory", bucket::<MemoryBucket>("a memory bucket")),
        field("cached", Rule::OptionalBool),
    ],
};

pub(crate) static INVOICE: ObjectSchema = ObjectSchema {
    fields: &[
        field(
            "op",
            label::<Operation>("an invoice operation (charge, pay, penalty, other)"),
        ),
        field("steps", bucket::<StepsBucket>("a steps bucket")),
    ],
};

/// The whole report, in canonical field order.
pub(crate) static REPORT: ObjectSchema = ObjectSchema {
    fields: &[
        field("v", Rule::Version),
        field(
            "node",
            Rule::Hex {
                digits: 32,
                what: "a node id (32 lowercase hex digits)",
            },
        ),
        field(
            "key",
            Rule::Hex {
                digits: 64,
                what: "a public key (64 lowercase hex digits)",
            },
        ),
        field("window", Rule::Window),
        field("level", label::<Level>("a level (full, strict)")),
        field(
            "continent",
            Rule::Label {
                valid: is::<Continent>,
                what: "a continent code (AF AN AS EU NA OC SA) or null",
                nullable: true,
                bucket: false,
            },
        ),
        field("status", Rule::Object(&STATUS)),
        field("counts", Rule::Object(&COUNTS)),
        field(
            "tasks",
            Rule::Array {
                item: &TASK,
                max: MAX_TASK_ITEMS,
            },
        ),
        field(
            "invoices",
            Rule::Array {
                item: &INVOICE,
                max: MAX_INVOICE_ITEMS,
            },
        ),
    ],
};

const _: () = assert!(
    MAX_CHAIN_ID < 946_684_800,
    "chain ids must stay below Unix-time range"
);
// `Rule::expected` spells these values out.
const _: () = assert!(MAX_CHAIN_ID == 946_684_799 && MAX_WINDOW_COUNT == 100_000);

/// Every key and label that can appear in a valid report (for tests).
#[cfg(test)]
pub(crate) fn all_constant_strings() -> Vec<&'static str> {
    fn labels<L: Label>() -> impl Iterator<Item = &'static str> {
        L::ALL.iter().map(|l| l.label())
    }
    let mut out: Vec<&'static str> = Vec::new();
    for schema in [&REPORT, &STATUS, &COUNTS, &TASK, &INVOICE] {
        out.extend(schema.fields.iter().map(|f| f.key));
    }
    out.extend(labels::<ExecTimeBucket>());
    out.extend(labels::<GasBucket>());
    out.extend(labels::<MemoryBucket>());
    out.extend(labels::<ActiveTasksBucket>());
    out.extend(labels::<TotalTasksBucket>());
    out.extend(labels::<Level>());
    out.extend(labels::<Continent>());
    out.extend(labels::<NodeState>());
    out.extend(labels::<Outcome>());
    out.extend(labels::<Operation>());
    out
}
