//! Network statistics from the store's figures: a pure function, so two aggregators
//! that stored the same reports publish the same bytes.
//!
//! Periods: *active* is the last two closed windows; *24 h* is the 24 UTC hours ending
//! with the hour of the latest closed window (the current hour so far included);
//! *30 days* is the 8,640 windows up to it. Every figure and cell goes through the
//! protocol's k-anonymity rules ([`k_figure`], [`k_anonymous_cells`]): a figure fewer
//! than `k` distinct nodes contributed to (a non-zero value) is `null`, and distribution
//! cells with fewer than `k` nodes are folded into `other`.

use std::collections::{BTreeMap, BTreeSet};

use truebit_protocol::bucket::TotalTasksBucket;
use truebit_protocol::stats::{
    basis_points, k_anonymous_cells, k_figure, Contribution, Distributions, HourAvailability,
    NetworkStats, TaskTotals, AVAILABILITY_HOURS, UNKNOWN,
};
use truebit_protocol::window::{window_of, WindowStart};

use crate::store::{Dim, StatsInput};

/// The latest closed window at `now` (Unix seconds).
pub fn latest_closed_window(now: u64) -> WindowStart {
    let open = window_of(now);
    open.prev().unwrap_or(open)
}

/// First hour of the 24-hour period of statistics for `window`.
pub fn period_start_hour(window: WindowStart) -> u64 {
    let hour = window.as_secs() - window.as_secs() % 3_600;
    hour.saturating_sub((AVAILABILITY_HOURS as u64 - 1) * 3_600)
}

/// Computes the statistics for `window` with threshold `k`.
pub fn compute(input: &StatsInput, window: WindowStart, k: u32) -> NetworkStats {
    let kk = k as usize;
    let mut stats = NetworkStats::empty(window, k);
    let start = period_start_hour(window);
    let nodes_24h = input.period_nodes.len() as u64;
    stats.active_nodes = k_figure(input.active_nodes, input.active_nodes as usize, kk);
    stats.nodes_24h = k_figure(nodes_24h, nodes_24h as usize, kk);
    stats.nodes_30d = k_figure(input.nodes_30d, input.nodes_30d as usize, kk);

    // Per node over the period: received, completed, failed.
    let mut per_node: BTreeMap<i64, (u64, u64, u64)> = BTreeMap::new();
    let mut per_hour: BTreeMap<u64, u64> = BTreeMap::new();
    for &(hour, node, received, completed, failed) in &input.node_hours {
        if hour < start {
            continue;
        }
        let e = per_node.entry(node).or_default();
        e.0 += received;
        e.1 += completed;
        e.2 += failed;
        *per_hour.entry(hour).or_default() += 1;
    }
    let total = |f: fn(&(u64, u64, u64)) -> u64| -> Option<u64> {
        let contributors = per_node.values().filter(|v| f(v) > 0).count();
        k_figure(per_node.values().map(f).sum(), contributors, kk)
    };
    stats.tasks_24h = TaskTotals {
        received: total(|v| v.0),
        completed: total(|v| v.1),
        failed: total(|v| v.2),
    };
    let finished_nodes = per_node.values().filter(|v| v.1 + v.2 > 0).count();
    if finished_nodes >= kk {
        let completed: u64 = per_node.values().map(|v| v.1).sum();
        let failed: u64 = per_node.values().map(|v| v.2).sum();
        stats.success_rate_bp = basis_points(completed, completed + failed);
    }

    // Distributions of task and invoice items.
    let mut dims: BTreeMap<Dim, BTreeMap<String, Contribution<i64>>> = BTreeMap::new();
    for (dim, label, node, count) in &input.cells {
        if let Some(dim) = Dim::from_u8(*dim) {
            dims.entry(dim)
                .or_default()
                .entry(label.clone())
                .or_default()
                .add(*node, *count);
        }
    }
    let mut take = |dim: Dim| dims.remove(&dim).unwrap_or_default();
    let cached = take(Dim::Cached);
    let hits = cached.get("true").cloned().unwrap_or_default();
    let misses = cached.get("false").cloned().unwrap_or_default();
    let cache_nodes: BTreeSet<i64> = hits.nodes.union(&misses.nodes).copied().collect();
    if cache_nodes.len() >= kk {
        stats.cache_hit_rate_bp = basis_points(hits.count, hits.count + misses.count);
    }
    let mut d = Distributions {
        duration: k_anonymous_cells(take(Dim::Duration), kk),
        gas: k_anonymous_cells(take(Dim::Gas), kk),
        memory: k_anonymous_cells(take(Dim::Memory), kk),
        steps: k_anonymous_cells(take(Dim::Steps), kk),
        chain: k_anonymous_cells(take(Dim::Chain), kk),
        ..Distributions::default()
    };

    // Nodes by continent and by activity (tasks received in the period).
    let mut continents: BTreeMap<String, Contribution<i64>> = BTreeMap::new();
    let mut activity: BTreeMap<String, Contribution<i64>> = BTreeMap::new();
    for (node, _, continent) in &input.period_nodes {
        let label = continent.clone().unwrap_or_else(|| UNKNOWN.to_owned());
        continents.entry(label).or_default().add(*node, 1);
        let received = per_node.get(node).map_or(0, |v| v.0);
        let bucket = TotalTasksBucket::from_value(Some(received)).label();
        activity.entry(bucket.to_owned()).or_default().add(*node, 1);
    }
    d.continent = k_anonymous_cells(continents, kk);
    d.activity = k_anonymous_cells(activity, kk);
    stats.distributions = d;

    // Availability: nodes that reported in the hour / nodes of the period known by then.
    let mut firsts: Vec<u64> = input.period_nodes.iter().map(|n| n.1).collect();
    firsts.sort_unstable();
    let last_hour = window.as_secs() - window.as_secs() % 3_600;
    let mut hour = start;
    while hour <= last_hour {
        let reporting = per_hour.get(&hour).copied().unwrap_or(0);
        let known = firsts.partition_point(|&f| f < hour + 3_600) as u64;
        let rate_bp = if reporting as usize >= kk {
            basis_points(reporting, known)
        } else {
            None
        };
        stats.availability.push(HourAvailability { hour, rate_bp });
        hour += 3_600;
    }
    stats
}

/// Tasks finished in one hour of the period (the page's chart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HourTasks {
    pub hour: u64,
    /// `None` when fewer than k nodes completed tasks in the hour.
    pub completed: Option<u64>,
    /// `None` when fewer than k nodes failed tasks in the hour.
    pub failed: Option<u64>,
}

/// Completed and failed tasks per hour of the period, each figure k-anonymous.
pub fn hourly_tasks(input: &StatsInput, window: WindowStart, k: u32) -> Vec<HourTasks> {
    let kk = k as usize;
    let start = period_start_hour(window);
    let last_hour = window.as_secs() - window.as_secs() % 3_600;
    // hour -> (completed, completing nodes, failed, failing nodes)
    let mut hours: BTreeMap<u64, (u64, usize, u64, usize)> = BTreeMap::new();
    for &(hour, _, _, completed, failed) in &input.node_hours {
        let e = hours.entry(hour).or_default();
        e.0 += completed;
        e.1 += usize::from(completed > 0);
        e.2 += failed;
        e.3 += usize::from(failed > 0);
    }
    let mut out = Vec::new();
    let mut hour = start;
    while hour <= last_hour {
        let (c, cn, f, fnodes) = hours.get(&hour).copied().unwrap_or_default();
        out.push(HourTasks {
            hour,
            completed: k_figure(c, cn, kk),
            failed: k_figure(f, fnodes, kk),
        });
        hour += 3_600;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 1_717_243_200; // 12:00 UTC

    fn w(secs: u64) -> WindowStart {
        WindowStart::new(secs).expect("aligned")
    }

    /// `n` nodes that each reported in `hours` with the given counts and cells.
    fn input(n: i64, received: u64, cells: &[(u8, &str, u64)]) -> StatsInput {
        let hour = NOON;
        StatsInput {
            active_nodes: n as u64,
            nodes_30d: n as u64,
            period_nodes: (0..n)
                .map(|i| (i, NOON - 3_600, Some("EU".into())))
                .collect(),
            node_hours: (0..n).map(|i| (hour, i, received, received, 0)).collect(),
            cells: (0..n)
                .flat_map(|i| {
                    cells
                        .iter()
                        .map(move |(d, l, c)| (*d, (*l).to_owned(), i, *c))
                })
                .collect(),
        }
    }

    #[test]
    fn figures_of_fewer_than_k_nodes_are_suppressed() {
        let stats = compute(&input(4, 3, &[(0, "1-5s", 3)]), w(NOON + 300), 5);
        assert_eq!(stats.active_nodes, None);
        assert_eq!(stats.nodes_24h, None);
        assert_eq!(stats.nodes_30d, None);
        assert_eq!(stats.tasks_24h, TaskTotals::default());
        assert_eq!(stats.success_rate_bp, None);
        assert!(stats.distributions.duration.is_empty());
        assert!(stats.distributions.continent.is_empty());
        assert!(stats.availability.iter().all(|h| h.rate_bp.is_none()));
    }

    #[test]
    fn figures_of_k_nodes_are_published_exactly() {
        let stats = compute(
            &input(5, 3, &[(0, "1-5s", 3), (5, "true", 1), (5, "false", 2)]),
            w(NOON + 300),
            5,
        );
        assert_eq!(stats.active_nodes, Some(5));
        assert_eq!(stats.nodes_24h, Some(5));
        assert_eq!(stats.tasks_24h.received, Some(15));
        assert_eq!(stats.tasks_24h.completed, Some(15));
        assert_eq!(
            stats.tasks_24h.failed, None,
            "nobody failed: no contributor"
        );
        assert_eq!(stats.success_rate_bp, Some(10_000));
        assert_eq!(stats.cache_hit_rate_bp, Some(3_333));
        assert_eq!(stats.distributions.duration.get("1-5s"), Some(&15));
        assert_eq!(stats.distributions.continent.get("EU"), Some(&5));
        assert_eq!(stats.distributions.activity.get("1-10"), Some(&5));
        // 24 hours, the last one is NOON's.
        assert_eq!(stats.availability.len(), 24);
        assert_eq!(stats.availability[23].hour, NOON);
        assert_eq!(stats.availability[23].rate_bp, Some(10_000));
        assert_eq!(stats.availability[0].hour, NOON - 23 * 3_600);
        assert_eq!(stats.availability[0].rate_bp, None);
        assert_eq!(stats.check(), Ok(()));
    }

    #[test]
    fn a_cell_of_fewer_than_k_nodes_is_folded_into_other() {
        let mut inp = input(6, 1, &[(4, "1", 10)]);
        // One node also ran tasks on chain 137: its cell must not appear.
        inp.cells.push((4, "137".into(), 0, 2));
        let stats = compute(&inp, w(NOON + 300), 5);
        // "137" has one node; other = {0} < 5 takes the smallest kept cell ("1", 6 nodes).
        assert_eq!(stats.distributions.chain.get("137"), None);
        assert_eq!(stats.distributions.chain.get("1"), None);
        assert_eq!(stats.distributions.chain.get("other"), Some(&62));
    }

    #[test]
    fn hourly_tasks_are_suppressed_below_k_nodes() {
        let inp = input(5, 2, &[]);
        let hours = hourly_tasks(&inp, w(NOON + 300), 5);
        assert_eq!(hours.len(), 24);
        assert_eq!(
            hours[23],
            HourTasks {
                hour: NOON,
                completed: Some(10),
                failed: None,
            }
        );
        let few = hourly_tasks(&input(4, 2, &[]), w(NOON + 300), 5);
        assert_eq!(few[23].completed, None);
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let a = compute(&input(7, 2, &[(1, "1M-10M", 1)]), w(NOON + 300), 5);
        let mut shuffled = input(7, 2, &[(1, "1M-10M", 1)]);
        shuffled.node_hours.reverse();
        shuffled.cells.reverse();
        shuffled.period_nodes.reverse();
        let b = compute(&shuffled, w(NOON + 300), 5);
        assert_eq!(a.to_canonical_bytes(), b.to_canonical_bytes());
    }

    #[test]
    fn no_published_figure_or_cell_has_fewer_than_k_nodes_behind_it() {
        use rand::{Rng, SeedableRng};
        use std::collections::{BTreeMap as Map, BTreeSet as Set};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let labels = ["1-5s", "5-10s", ">1m", "unknown"];
        for _ in 0..500 {
            let k = rng.gen_range(2..=6u32);
            let n = rng.gen_range(0..14i64);
            let mut inp = StatsInput {
                active_nodes: rng.gen_range(0..=n as u64),
                nodes_30d: n as u64,
                ..StatsInput::default()
            };
            for node in 0..n {
                let continent = ["EU", "NA", "AS"][rng.gen_range(0..3)];
                inp.period_nodes
                    .push((node, NOON - 7_200, Some(continent.into())));
                for hour in [NOON - 3_600, NOON] {
                    if rng.gen_bool(0.7) {
                        let r = rng.gen_range(0..3);
                        let c = rng.gen_range(0..=r);
                        inp.node_hours.push((hour, node, r, c, r - c));
                    }
                }
                for _ in 0..rng.gen_range(0..4) {
                    let label = labels[rng.gen_range(0..labels.len())];
                    inp.cells.push((0, label.into(), node, rng.gen_range(1..5)));
                }
            }
            let stats = compute(&inp, w(NOON + 300), k);
            let kk = k as usize;
            type NodeHour = (u64, i64, u64, u64, u64);
            let nodes_with = |f: &dyn Fn(&NodeHour) -> bool| {
                inp.node_hours
                    .iter()
                    .filter(|r| f(r))
                    .map(|r| r.1)
                    .collect::<Set<_>>()
                    .len()
            };
            if stats.tasks_24h.received.is_some() {
                assert!(nodes_with(&|r| r.2 > 0) >= kk);
            }
            if stats.tasks_24h.failed.is_some() {
                assert!(nodes_with(&|r| r.4 > 0) >= kk);
            }
            if stats.active_nodes.is_some() {
                assert!(inp.active_nodes as usize >= kk);
            }
            for h in &stats.availability {
                if h.rate_bp.is_some() {
                    assert!(nodes_with(&|r| r.0 == h.hour) >= kk);
                }
            }
            let mut by_label: Map<&str, Set<i64>> = Map::new();
            for (_, label, node, _) in &inp.cells {
                by_label.entry(label.as_str()).or_default().insert(*node);
            }
            for label in stats.distributions.duration.keys() {
                if label != "other" {
                    assert!(by_label[label.as_str()].len() >= kk, "{label} below k");
                }
            }
            // Node-count distributions: every cell, `other` included, counts >= k nodes.
            for cells in [
                &stats.distributions.continent,
                &stats.distributions.activity,
            ] {
                assert!(cells.values().all(|&c| c >= u64::from(k)), "{cells:?}");
            }
        }
    }

    #[test]
    fn the_latest_closed_window_is_the_one_before_the_open_one() {
        assert_eq!(latest_closed_window(NOON + 301).as_secs(), NOON);
        assert_eq!(latest_closed_window(NOON + 300).as_secs(), NOON);
        assert_eq!(latest_closed_window(NOON + 299).as_secs(), NOON - 300);
        assert_eq!(period_start_hour(w(NOON + 300)), NOON - 23 * 3_600);
    }
}
