//! Bucketed figures: every metric leaves the machine as one of a few fixed labels.
//!
//! The tables are below. Every bucket covers `[its lower bound, the next
//! bucket's lower bound)`: the lower bound is inclusive, so an edge value belongs to the
//! bucket above it (100 ms is `100-500ms`, 60 000 ms is `>1m`, 100 000 gas is
//! `100K-1M`, 1 000 total tasks is `>1K`). A `>X` label therefore means "X or more"
//! wherever the bucket below ends at X. The active-tasks labels name whole numbers
//! (`2-3` holds 2 and 3), so their lower bounds are 0, 1, 2, 4, 6 and `>5` is 6 or
//! more. A missing figure is `unknown`; zero is a value, never missing.
//!
//! | type | unit | lower bounds |
//! |---|---|---|
//! | [`ExecTimeBucket`] | ms | 0, 100, 500, 1 000, 5 000, 10 000, 30 000, 60 000 |
//! | [`GasBucket`] (gas used, steps computed) | units | 0, 100 000, 1 000 000, 10 000 000, 100 000 000 |
//! | [`MemoryBucket`] | as reported by the node | 0, 64, 256, 1 024 |
//! | [`ActiveTasksBucket`] | slots in use | 0, 1, 2, 4, 6 |
//! | [`TotalTasksBucket`] | tasks | 0, 1, 10, 50, 100, 500, 1 000 |

use std::fmt;

/// A closed set of wire labels (enums serialized as fixed strings).
pub trait Label: Copy + Eq + fmt::Debug + 'static {
    /// Every value, in wire order.
    const ALL: &'static [Self];
    /// What the set describes, for error messages.
    const WHAT: &'static str;
    /// The exact wire form.
    fn label(self) -> &'static str;
    /// The value whose wire form is exactly `s`.
    fn from_label(s: &str) -> Option<Self>;
}

/// A bucket table: a [`Label`] set with numeric lower bounds and an `unknown` member.
pub trait Bucket: Label {
    /// `(inclusive lower bound, bucket)`, ascending, starting at 0; `unknown` excluded.
    const EDGES: &'static [(u64, Self)];
    /// The bucket for a missing figure.
    const UNKNOWN: Self;

    /// The bucket holding `value`, or `unknown` for `None`.
    fn from_value(value: Option<u64>) -> Self {
        let Some(v) = value else { return Self::UNKNOWN };
        let mut out = Self::EDGES[0].1;
        for &(lower, bucket) in Self::EDGES {
            if v >= lower {
                out = bucket;
            } else {
                break;
            }
        }
        out
    }

    /// The bucket's inclusive lower bound; `None` for `unknown`.
    fn lower_bound(self) -> Option<u64> {
        Self::EDGES
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(lower, _)| *lower)
    }
}

/// Defines a `Copy` enum whose serde form is a fixed label per variant.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* #[doc = concat!("Wire form `", $label, "`.")] $variant, )+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The exact wire form.
            pub const fn label(self) -> &'static str {
                match self { $(Self::$variant => $label),+ }
            }

            /// The value whose wire form is exactly `s`.
            pub fn from_label(s: &str) -> Option<Self> {
                match s { $($label => Some(Self::$variant),)+ _ => None }
            }
        }

        impl $crate::bucket::Label for $name {
            const ALL: &'static [Self] = $name::ALL;
            const WHAT: &'static str = $what;
            fn label(self) -> &'static str { $name::label(self) }
            fn from_label(s: &str) -> Option<Self> { $name::from_label(s) }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.label())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.label())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                        f.write_str(concat!($what, ": one of" $(, " `", $label, "`")+))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        // The offending value is never echoed: it may be what the
                        // validator exists to keep out of logs.
                        $name::from_label(v).ok_or_else(|| {
                            E::invalid_value(::serde::de::Unexpected::Other("a string"), &self)
                        })
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use label_enum;

/// Implements [`Bucket`] and an inherent `from_value` for a [`label_enum!`] type.
macro_rules! bucket_edges {
    ($name:ident, unit = $unit:literal, [$($lower:expr => $variant:ident),+ $(,)?]) => {
        impl Bucket for $name {
            const EDGES: &'static [(u64, Self)] = &[$(($lower, Self::$variant)),+];
            const UNKNOWN: Self = Self::Unknown;
        }

        impl $name {
            #[doc = concat!("The bucket holding `value` (in ", $unit, "), or `unknown` for `None`.")]
            pub fn from_value(value: Option<u64>) -> Self {
                <Self as Bucket>::from_value(value)
            }
        }
    };
}

label_enum! {
    /// Execution time of one task, milliseconds.
    pub enum ExecTimeBucket ("execution time bucket") {
        LessThan100Ms => "<100ms",
        From100MsTo500Ms => "100-500ms",
        From500MsTo1S => "500ms-1s",
        From1STo5S => "1-5s",
        From5STo10S => "5-10s",
        From10STo30S => "10-30s",
        From30STo1M => "30s-1m",
        AtLeast1M => ">1m",
        Unknown => "unknown",
    }
}

bucket_edges!(ExecTimeBucket, unit = "milliseconds", [
    0 => LessThan100Ms,
    100 => From100MsTo500Ms,
    500 => From500MsTo1S,
    1_000 => From1STo5S,
    5_000 => From5STo10S,
    10_000 => From10STo30S,
    30_000 => From30STo1M,
    60_000 => AtLeast1M,
]);

impl ExecTimeBucket {
    /// The bucket for a duration in nanoseconds (rounded down to whole milliseconds,
    /// so 99.9 ms is still `<100ms`).
    pub fn from_nanos(nanos: Option<u64>) -> Self {
        Self::from_value(nanos.map(|ns| ns / 1_000_000))
    }
}

label_enum! {
    /// Gas used by a task, or steps computed on an invoice line (same table).
    pub enum GasBucket ("gas/steps bucket") {
        LessThan100K => "<100K",
        From100KTo1M => "100K-1M",
        From1MTo10M => "1M-10M",
        From10MTo100M => "10M-100M",
        AtLeast100M => ">100M",
        Unknown => "unknown",
    }
}

bucket_edges!(GasBucket, unit = "gas or steps", [
    0 => LessThan100K,
    100_000 => From100KTo1M,
    1_000_000 => From1MTo10M,
    10_000_000 => From10MTo100M,
    100_000_000 => AtLeast100M,
]);

/// Steps computed share the gas table.
pub type StepsBucket = GasBucket;

label_enum! {
    /// Peak memory of a task, in the unit the node reports it.
    pub enum MemoryBucket ("memory bucket") {
        LessThan64 => "<64",
        From64To256 => "64-256",
        From256To1024 => "256-1024",
        AtLeast1024 => ">1024",
        Unknown => "unknown",
    }
}

bucket_edges!(MemoryBucket, unit = "the unit the node reports", [
    0 => LessThan64,
    64 => From64To256,
    256 => From256To1024,
    1_024 => AtLeast1024,
]);

label_enum! {
    /// Tasks running on the node (slots in use).
    pub enum ActiveTasksBucket ("active tasks bucket") {
        Zero => "0",
        One => "1",
        TwoToThree => "2-3",
        FourToFive => "4-5",
        MoreThanFive => ">5",
        Unknown => "unknown",
    }
}

bucket_edges!(ActiveTasksBucket, unit = "tasks", [
    0 => Zero,
    1 => One,
    2 => TwoToThree,
    4 => FourToFive,
    6 => MoreThanFive,
]);

label_enum! {
    /// A count of tasks: the node's total so far, or tasks per node in the network
    /// statistics.
    pub enum TotalTasksBucket ("total tasks bucket") {
        Zero => "0",
        From1To10 => "1-10",
        From10To50 => "10-50",
        From50To100 => "50-100",
        From100To500 => "100-500",
        From500To1K => "500-1K",
        AtLeast1K => ">1K",
        Unknown => "unknown",
    }
}

bucket_edges!(TotalTasksBucket, unit = "tasks", [
    0 => Zero,
    1 => From1To10,
    10 => From10To50,
    50 => From50To100,
    100 => From100To500,
    500 => From500To1K,
    1_000 => AtLeast1K,
]);

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks every edge of a table: `lower - 1` is in the bucket below, `lower` and
    /// the next lower bound minus one are in the bucket itself.
    fn assert_edges<B: Bucket>(expected_lowers: &[u64]) {
        let lowers: Vec<u64> = B::EDGES.iter().map(|(l, _)| *l).collect();
        assert_eq!(lowers, expected_lowers, "{}", B::WHAT);
        assert_eq!(
            B::EDGES.len() + 1,
            B::ALL.len(),
            "every bucket but unknown has an edge"
        );
        for (i, &(lower, bucket)) in B::EDGES.iter().enumerate() {
            assert_eq!(B::from_value(Some(lower)), bucket, "{} at {lower}", B::WHAT);
            assert_eq!(bucket.lower_bound(), Some(lower));
            if i > 0 {
                let below = B::EDGES[i - 1].1;
                assert_eq!(
                    B::from_value(Some(lower - 1)),
                    below,
                    "{} at {}",
                    B::WHAT,
                    lower - 1
                );
            }
            if let Some(&(next, _)) = B::EDGES.get(i + 1) {
                assert_eq!(B::from_value(Some(next - 1)), bucket);
            }
        }
        let top = B::EDGES[B::EDGES.len() - 1].1;
        assert_eq!(B::from_value(Some(u64::MAX)), top);
        assert_eq!(B::from_value(None), B::UNKNOWN);
        assert_eq!(B::UNKNOWN.label(), "unknown");
        assert_eq!(B::UNKNOWN.lower_bound(), None);
    }

    fn label_of<B: Bucket>(v: u64) -> &'static str {
        B::from_value(Some(v)).label()
    }

    #[test]
    fn execution_time_edges_are_lower_bound_inclusive() {
        assert_edges::<ExecTimeBucket>(&[0, 100, 500, 1_000, 5_000, 10_000, 30_000, 60_000]);
        let cases = [
            (0, "<100ms"),
            (99, "<100ms"),
            (100, "100-500ms"),
            (499, "100-500ms"),
            (500, "500ms-1s"),
            (999, "500ms-1s"),
            (1_000, "1-5s"),
            (4_999, "1-5s"),
            (5_000, "5-10s"),
            (9_999, "5-10s"),
            (10_000, "10-30s"),
            (29_999, "10-30s"),
            (30_000, "30s-1m"),
            (59_999, "30s-1m"),
            (60_000, ">1m"),
            (3_600_000, ">1m"),
        ];
        for (v, label) in cases {
            assert_eq!(label_of::<ExecTimeBucket>(v), label, "{v} ms");
        }
    }

    #[test]
    fn execution_time_from_nanos_rounds_down() {
        assert_eq!(
            ExecTimeBucket::from_nanos(Some(99_999_999)).label(),
            "<100ms"
        );
        assert_eq!(
            ExecTimeBucket::from_nanos(Some(100_000_000)).label(),
            "100-500ms"
        );
        assert_eq!(
            ExecTimeBucket::from_nanos(Some(59_999_999_999)).label(),
            "30s-1m"
        );
        assert_eq!(
            ExecTimeBucket::from_nanos(Some(60_000_000_000)).label(),
            ">1m"
        );
        assert_eq!(ExecTimeBucket::from_nanos(None).label(), "unknown");
    }

    #[test]
    fn gas_and_steps_edges_are_lower_bound_inclusive() {
        assert_edges::<GasBucket>(&[0, 100_000, 1_000_000, 10_000_000, 100_000_000]);
        let cases = [
            (0, "<100K"),
            (99_999, "<100K"),
            (100_000, "100K-1M"),
            (999_999, "100K-1M"),
            (1_000_000, "1M-10M"),
            (9_999_999, "1M-10M"),
            (10_000_000, "10M-100M"),
            (99_999_999, "10M-100M"),
            (100_000_000, ">100M"),
        ];
        for (v, label) in cases {
            assert_eq!(label_of::<GasBucket>(v), label, "{v}");
            assert_eq!(label_of::<StepsBucket>(v), label, "{v}");
        }
    }

    #[test]
    fn memory_edges_are_lower_bound_inclusive() {
        assert_edges::<MemoryBucket>(&[0, 64, 256, 1_024]);
        let cases = [
            (0, "<64"),
            (63, "<64"),
            (64, "64-256"),
            (255, "64-256"),
            (256, "256-1024"),
            (1_023, "256-1024"),
            (1_024, ">1024"),
        ];
        for (v, label) in cases {
            assert_eq!(label_of::<MemoryBucket>(v), label, "{v}");
        }
    }

    #[test]
    fn active_tasks_buckets_hold_whole_numbers() {
        assert_edges::<ActiveTasksBucket>(&[0, 1, 2, 4, 6]);
        let cases = [
            (0, "0"),
            (1, "1"),
            (2, "2-3"),
            (3, "2-3"),
            (4, "4-5"),
            (5, "4-5"),
            (6, ">5"),
        ];
        for (v, label) in cases {
            assert_eq!(label_of::<ActiveTasksBucket>(v), label, "{v}");
        }
    }

    #[test]
    fn total_tasks_edges_are_lower_bound_inclusive() {
        assert_edges::<TotalTasksBucket>(&[0, 1, 10, 50, 100, 500, 1_000]);
        let cases = [
            (0, "0"),
            (1, "1-10"),
            (9, "1-10"),
            (10, "10-50"),
            (49, "10-50"),
            (50, "50-100"),
            (99, "50-100"),
            (100, "100-500"),
            (499, "100-500"),
            (500, "500-1K"),
            (999, "500-1K"),
            (1_000, ">1K"),
        ];
        for (v, label) in cases {
            assert_eq!(label_of::<TotalTasksBucket>(v), label, "{v}");
        }
    }

    #[test]
    fn zero_is_a_value_and_missing_is_unknown() {
        assert_eq!(
            ExecTimeBucket::from_value(Some(0)),
            ExecTimeBucket::LessThan100Ms
        );
        assert_eq!(ExecTimeBucket::from_value(None), ExecTimeBucket::Unknown);
        assert_eq!(GasBucket::from_value(Some(0)), GasBucket::LessThan100K);
        assert_eq!(MemoryBucket::from_value(Some(0)), MemoryBucket::LessThan64);
        assert_eq!(
            ActiveTasksBucket::from_value(Some(0)),
            ActiveTasksBucket::Zero
        );
        assert_eq!(
            ActiveTasksBucket::from_value(None),
            ActiveTasksBucket::Unknown
        );
        assert_eq!(
            TotalTasksBucket::from_value(Some(0)),
            TotalTasksBucket::Zero
        );
        assert_eq!(
            TotalTasksBucket::from_value(None),
            TotalTasksBucket::Unknown
        );
    }

    fn assert_serde_is_the_label<B: Label + serde::Serialize + serde::de::DeserializeOwned>() {
        for &b in B::ALL {
            let json = serde_json::to_string(&b).expect("serialize");
            assert_eq!(json, format!("\"{}\"", b.label()));
            assert_eq!(serde_json::from_str::<B>(&json).expect("parse"), b);
            assert_eq!(B::from_label(b.label()), Some(b));
        }
        assert!(serde_json::from_str::<B>("\"bogus\"").is_err());
        assert!(serde_json::from_str::<B>("\"UNKNOWN\"").is_err());
        assert!(serde_json::from_str::<B>("3").is_err());
    }

    #[test]
    fn every_bucket_serializes_as_its_exact_label() {
        assert_serde_is_the_label::<ExecTimeBucket>();
        assert_serde_is_the_label::<GasBucket>();
        assert_serde_is_the_label::<MemoryBucket>();
        assert_serde_is_the_label::<ActiveTasksBucket>();
        assert_serde_is_the_label::<TotalTasksBucket>();
        let labels: Vec<&str> = ExecTimeBucket::ALL.iter().map(|b| b.label()).collect();
        assert_eq!(
            labels,
            [
                "<100ms",
                "100-500ms",
                "500ms-1s",
                "1-5s",
                "5-10s",
                "10-30s",
                "30s-1m",
                ">1m",
                "unknown"
            ]
        );
    }

    #[test]
    fn a_rejected_label_is_not_echoed_in_the_error() {
        let err = serde_json::from_str::<GasBucket>("\"10.0.0.1\"").expect_err("rejected");
        assert!(!err.to_string().contains("10.0.0.1"), "{err}");
    }
}
