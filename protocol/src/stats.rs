//! Network statistics (`v: 1`), aggregator -> everyone on [`crate::STATS_SUBJECT`],
//! signed by M of the N pinned aggregator keys ([`crate::certificate::CertifiedStats`];
//! each replica's own signature is a [`crate::sign::SignedStats`]).
//!
//! Every figure and distribution cell is k-anonymous: a figure that fewer than `k`
//! distinct nodes contributed to is `null`; a cell with fewer than `k` nodes is folded
//! into `other` ([`k_anonymous_cells`]). Node ids never appear. Rates are integers in
//! basis points (10 000 = 100 %) so the encoding has no floats and two aggregators
//! that saw the same reports publish the same bytes.
//!
//! ```json
//! {"v":1,"window":1717243200,"k":5,"active_nodes":12,"nodes_24h":15,"nodes_30d":40,
//!  "tasks_24h":{"received":900,"completed":850,"failed":40},
//!  "success_rate_bp":9551,"cache_hit_rate_bp":3120,
//!  "distributions":{"duration":{"1-5s":600,"other":290},"gas":{},"memory":{},
//!    "steps":{},"chain":{"1":700,"137":190},"continent":{"EU":9,"unknown":6},
//!    "activity":{"10-50":6,"100-500":5,"other":4}},
//!  "availability":[{"hour":1717160400,"rate_bp":9333}, ...]}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::bucket::{ExecTimeBucket, GasBucket, Label, MemoryBucket, TotalTasksBucket};
use crate::report::{ChainId, Continent, V1};
use crate::window::WindowStart;

/// Default anonymity threshold.
pub const DEFAULT_K: u32 = 5;

/// Label of the cell that collects every cell below `k`.
pub const OTHER: &str = "other";

/// Label for a missing figure (a chain or continent the node did not report).
pub const UNKNOWN: &str = "unknown";

/// 100 % in basis points.
pub const BASIS_POINTS: u32 = 10_000;

/// Largest canonical statistics message, in bytes.
pub const MAX_STATS_BYTES: usize = 256 * 1024;

/// Hours in the availability series.
pub const AVAILABILITY_HOURS: usize = 24;

/// Label -> count, sorted by label (so the encoding is deterministic).
pub type Cells = BTreeMap<String, u64>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkStats {
    pub v: V1,
    /// The most recent closed window these figures include (the computation time at
    /// window granularity).
    pub window: WindowStart,
    /// The anonymity threshold these figures satisfy.
    pub k: u32,
    /// Nodes that reported in the last two windows.
    pub active_nodes: Option<u64>,
    pub nodes_24h: Option<u64>,
    pub nodes_30d: Option<u64>,
    pub tasks_24h: TaskTotals,
    /// completed / (completed + failed), basis points.
    pub success_rate_bp: Option<u32>,
    /// cached task items / task items with a known cache flag, basis points.
    pub cache_hit_rate_bp: Option<u32>,
    pub distributions: Distributions,
    /// Share of known nodes that reported, per hour, oldest first, at most 24 hours.
    pub availability: Vec<HourAvailability>,
}

/// Task counts over the last 24 hours (`null` when fewer than k nodes contributed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTotals {
    pub received: Option<u64>,
    pub completed: Option<u64>,
    pub failed: Option<u64>,
}

/// Distributions over the last 24 hours. Labels are the report's bucket labels (plus
/// `other`); `chain` uses decimal chain ids and `unknown`; `continent` the codes and
/// `unknown`; `activity` counts nodes by tasks received in 24 h, in the total-tasks
/// buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distributions {
    pub duration: Cells,
    pub gas: Cells,
    pub memory: Cells,
    pub steps: Cells,
    pub chain: Cells,
    pub continent: Cells,
    pub activity: Cells,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourAvailability {
    /// Start of the hour, Unix seconds (a multiple of 3600).
    pub hour: u64,
    /// Share of known nodes that reported in that hour, basis points.
    pub rate_bp: Option<u32>,
}

/// Why a statistics message is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("statistics are {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("statistics do not match the schema: {detail}")]
    Schema { detail: String },
    #[error("statistics bytes are not canonical")]
    NonCanonical,
    #[error("`{field}` {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
}

impl StatsError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "stats.too_large",
            Self::Schema { .. } => "stats.schema",
            Self::NonCanonical => "stats.non_canonical",
            Self::Invalid { .. } => "stats.invalid",
        }
    }
}

impl NetworkStats {
    /// Statistics with every figure suppressed and every distribution empty.
    pub fn empty(window: WindowStart, k: u32) -> Self {
        Self {
            v: V1,
            window,
            k,
            active_nodes: None,
            nodes_24h: None,
            nodes_30d: None,
            tasks_24h: TaskTotals::default(),
            success_rate_bp: None,
            cache_hit_rate_bp: None,
            distributions: Distributions::default(),
            availability: Vec::new(),
        }
    }

    /// Compact JSON in declaration order, maps sorted by label.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serializing statistics cannot fail")
    }

    /// Checks the rules a parser cannot: label sets, rate ranges, the hour series.
    pub fn check(&self) -> Result<(), StatsError> {
        let invalid = |field, problem| Err(StatsError::Invalid { field, problem });
        if self.k == 0 {
            return invalid("k", "must be at least 1");
        }
        for (field, rate) in [
            ("success_rate_bp", self.success_rate_bp),
            ("cache_hit_rate_bp", self.cache_hit_rate_bp),
        ] {
            if rate.is_some_and(|r| r > BASIS_POINTS) {
                return invalid(field, "is above 10000 basis points");
            }
        }
        fn cells_ok(cells: &Cells, valid: fn(&str) -> bool) -> bool {
            cells.keys().all(|l| l == OTHER || valid(l))
        }
        let d = &self.distributions;
        let label_sets = [
            (
                "distributions.duration",
                cells_ok(&d.duration, is_label::<ExecTimeBucket>),
            ),
            ("distributions.gas", cells_ok(&d.gas, is_label::<GasBucket>)),
            (
                "distributions.memory",
                cells_ok(&d.memory, is_label::<MemoryBucket>),
            ),
            (
                "distributions.steps",
                cells_ok(&d.steps, is_label::<GasBucket>),
            ),
            ("distributions.chain", cells_ok(&d.chain, is_chain_label)),
            (
                "distributions.continent",
                cells_ok(&d.continent, is_continent_label),
            ),
            (
                "distributions.activity",
                cells_ok(&d.activity, is_label::<TotalTasksBucket>),
            ),
        ];
        if let Some((field, _)) = label_sets.iter().find(|(_, ok)| !ok) {
            return invalid(field, "has a label outside its set");
        }
        if self.availability.len() > AVAILABILITY_HOURS {
            return invalid("availability", "has more than 24 hours");
        }
        if self.availability.iter().any(|h| h.hour % 3_600 != 0) {
            return invalid("availability", "has an hour that is not a multiple of 3600");
        }
        if self.availability.windows(2).any(|p| p[0].hour >= p[1].hour) {
            return invalid("availability", "is not in increasing hour order");
        }
        if self
            .availability
            .iter()
            .any(|h| h.rate_bp.is_some_and(|r| r > BASIS_POINTS))
        {
            return invalid("availability", "has a rate above 10000 basis points");
        }
        Ok(())
    }
}

fn is_label<L: Label>(s: &str) -> bool {
    L::from_label(s).is_some()
}

/// `unknown` or a canonical decimal chain id.
pub fn is_chain_label(s: &str) -> bool {
    s == UNKNOWN
        || (!s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'))
            && s.parse::<u64>().ok().and_then(ChainId::new).is_some())
}

fn is_continent_label(s: &str) -> bool {
    s == UNKNOWN || Continent::from_label(s).is_some()
}

/// The label of a report's chain field in the chain distribution.
pub fn chain_label(chain: Option<ChainId>) -> String {
    chain.map_or_else(|| UNKNOWN.to_owned(), |c| c.get().to_string())
}

/// What one cell received: a total and the distinct nodes behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution<N> {
    pub count: u64,
    pub nodes: BTreeSet<N>,
}

impl<N> Default for Contribution<N> {
    fn default() -> Self {
        Self {
            count: 0,
            nodes: BTreeSet::new(),
        }
    }
}

impl<N: Ord> Contribution<N> {
    /// Adds `count` from `node`.
    pub fn add(&mut self, node: N, count: u64) {
        self.count += count;
        self.nodes.insert(node);
    }
}

/// A figure that fewer than `k` distinct nodes contributed to is suppressed.
pub fn k_figure(value: u64, distinct_nodes: usize, k: usize) -> Option<u64> {
    (distinct_nodes >= k).then_some(value)
}

/// `part / whole` in basis points, rounded half up; `None` when `whole` is 0.
pub fn basis_points(part: u64, whole: u64) -> Option<u32> {
    if whole == 0 {
        return None;
    }
    let bp =
        (u128::from(part) * u128::from(BASIS_POINTS) + u128::from(whole) / 2) / u128::from(whole);
    Some(bp.min(u128::from(BASIS_POINTS)) as u32)
}

/// Makes a distribution k-anonymous.
///
/// Cells with at least `k` distinct nodes are kept. The rest (and any input `other`)
/// are merged into `other`, whose nodes are the union of theirs. If `other` then has
/// fewer than `k` nodes, the smallest kept cells (fewest nodes, then smallest count,
/// then label) are folded into it one by one until it has `k` (complementary
/// suppression: a lone small `other` could otherwise be computed back from the
/// published totals). If even everything together has fewer than `k` nodes, the
/// distribution is empty. So every published cell, `other` included, has at least `k`
/// distinct nodes behind it, and a non-empty result sums to the input total.
pub fn k_anonymous_cells<N: Ord + Clone>(
    cells: BTreeMap<String, Contribution<N>>,
    k: usize,
) -> Cells {
    let mut kept: Vec<(String, Contribution<N>)> = Vec::new();
    let mut other = Contribution::default();
    let mut folded_any = false;
    for (label, c) in cells {
        if label != OTHER && c.nodes.len() >= k {
            kept.push((label, c));
        } else {
            folded_any = true;
            other.count += c.count;
            other.nodes.extend(c.nodes);
        }
    }
    if folded_any {
        kept.sort_by(|(la, a), (lb, b)| {
            (a.nodes.len(), a.count, la).cmp(&(b.nodes.len(), b.count, lb))
        });
        kept.reverse(); // smallest last, so pop() takes it
        while other.nodes.len() < k {
            let Some((_, c)) = kept.pop() else { break };
            other.count += c.count;
            other.nodes.extend(c.nodes);
        }
    }
    let mut out: Cells = kept.into_iter().map(|(l, c)| (l, c.count)).collect();
    if folded_any && other.nodes.len() >= k {
        out.insert(OTHER.to_owned(), other.count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(spec: &[(&str, u64, &[u32])]) -> BTreeMap<String, Contribution<u32>> {
        spec.iter()
            .map(|(l, count, nodes)| {
                (
                    l.to_string(),
                    Contribution {
                        count: *count,
                        nodes: nodes.iter().copied().collect(),
                    },
                )
            })
            .collect()
    }

    fn out(spec: &[(&str, u64)]) -> Cells {
        spec.iter().map(|(l, c)| (l.to_string(), *c)).collect()
    }

    #[test]
    fn cells_with_k_nodes_are_kept_and_small_ones_fold_into_other() {
        let input = cells(&[
            ("1-5s", 100, &[1, 2, 3, 4, 5]),
            ("5-10s", 7, &[1, 2, 3]),
            (">1m", 2, &[6, 7]),
        ]);
        // other = {1,2,3,6,7}: 5 nodes, enough.
        assert_eq!(
            k_anonymous_cells(input, 5),
            out(&[("1-5s", 100), ("other", 9)])
        );
    }

    #[test]
    fn a_small_other_takes_the_smallest_kept_cell_with_it() {
        let input = cells(&[
            ("a", 50, &[1, 2, 3, 4, 5, 6]),
            ("b", 40, &[1, 2, 3, 4, 5]),
            ("c", 1, &[9]),
        ]);
        // other = {9} < 5: fold "b" (5 nodes < 6) -> other = {1..5, 9}.
        assert_eq!(
            k_anonymous_cells(input, 5),
            out(&[("a", 50), ("other", 41)])
        );
    }

    #[test]
    fn fewer_than_k_nodes_in_total_publishes_nothing() {
        let input = cells(&[("a", 5, &[1, 2]), ("b", 5, &[3])]);
        assert!(k_anonymous_cells(input, 5).is_empty());
    }

    #[test]
    fn k_anonymity_holds_for_random_distributions() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..2_000 {
            let k = rng.gen_range(1..=6);
            let mut input: BTreeMap<String, Contribution<u32>> = BTreeMap::new();
            for _ in 0..rng.gen_range(0..12) {
                let label = format!("l{}", rng.gen_range(0..8));
                let cell = input.entry(label).or_default();
                for _ in 0..rng.gen_range(1..4) {
                    cell.add(rng.gen_range(0..15), rng.gen_range(1..10));
                }
            }
            let total: u64 = input.values().map(|c| c.count).sum();
            let nodes_of = |label: &str, input: &BTreeMap<String, Contribution<u32>>| {
                input.get(label).map_or(0, |c| c.nodes.len())
            };
            let result = k_anonymous_cells(input.clone(), k);
            for (label, count) in &result {
                if label == OTHER {
                    // Every node behind "other" is one of the folded cells' nodes.
                    let kept: BTreeSet<&String> = result.keys().filter(|l| *l != OTHER).collect();
                    let nodes: BTreeSet<u32> = input
                        .iter()
                        .filter(|(l, _)| !kept.contains(l))
                        .flat_map(|(_, c)| c.nodes.iter().copied())
                        .collect();
                    assert!(
                        nodes.len() >= k,
                        "other has {} nodes < k = {k}",
                        nodes.len()
                    );
                } else {
                    assert!(nodes_of(label, &input) >= k);
                    assert_eq!(input[label].count, *count);
                }
            }
            if !result.is_empty() {
                assert_eq!(result.values().sum::<u64>(), total);
            }
        }
    }

    #[test]
    fn figures_below_k_are_suppressed() {
        assert_eq!(k_figure(17, 4, 5), None);
        assert_eq!(k_figure(17, 5, 5), Some(17));
    }

    #[test]
    fn basis_points_round_half_up_and_stay_in_range() {
        assert_eq!(basis_points(0, 0), None);
        assert_eq!(basis_points(1, 3), Some(3_333));
        assert_eq!(basis_points(2, 3), Some(6_667));
        assert_eq!(basis_points(5, 5), Some(10_000));
        assert_eq!(basis_points(u64::MAX, u64::MAX), Some(10_000));
    }

    #[test]
    fn chain_labels_are_canonical_decimal_ids_or_unknown() {
        assert!(is_chain_label("1"));
        assert!(is_chain_label("0"));
        assert!(is_chain_label("unknown"));
        assert!(!is_chain_label("01"));
        assert!(!is_chain_label("0x1"));
        assert!(!is_chain_label("946684800"));
        assert!(!is_chain_label(""));
        assert_eq!(chain_label(ChainId::new(137)), "137");
        assert_eq!(chain_label(None), "unknown");
    }

    #[test]
    fn check_rejects_labels_outside_their_sets_and_bad_series() {
        let w = WindowStart::new(1_717_243_200).expect("aligned");
        let mut s = NetworkStats::empty(w, 5);
        assert_eq!(s.check(), Ok(()));
        s.distributions.gas.insert("1.2.3.4".into(), 9);
        assert!(matches!(
            s.check(),
            Err(StatsError::Invalid {
                field: "distributions.gas",
                ..
            })
        ));
        let mut s = NetworkStats::empty(w, 5);
        s.distributions.continent.insert("EU".into(), 9);
        s.distributions.continent.insert(OTHER.into(), 9);
        s.distributions.chain.insert("137".into(), 9);
        assert_eq!(s.check(), Ok(()));
        s.success_rate_bp = Some(10_001);
        assert!(s.check().is_err());
        let mut s = NetworkStats::empty(w, 5);
        s.availability = vec![
            HourAvailability {
                hour: 7_200,
                rate_bp: Some(1),
            },
            HourAvailability {
                hour: 3_600,
                rate_bp: Some(1),
            },
        ];
        assert!(s.check().is_err());
        s.availability = vec![HourAvailability {
            hour: 3_601,
            rate_bp: None,
        }];
        assert!(s.check().is_err());
        assert!(NetworkStats::empty(w, 0).check().is_err());
    }
}
