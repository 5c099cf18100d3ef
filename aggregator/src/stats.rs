//! Network statistics: pure functions, so two aggregators with the same noise secret
//! that stored the same reports publish the same bytes.
//!
//! Every published figure is released **once per period** with calibrated noise
//! (`truebit_protocol::noise`; docs/PRIVACY.md): an hour's task counts and reporting
//! nodes ([`release_hour`]) once the hour is over and its reports are in
//! ([`RELEASE_DELAY_SECS`]), a UTC day's distributions and node counts
//! ([`release_day`]) once the day is over. Each node's contribution is clamped first
//! (tasks per node and hour, items per node, distribution and day), the noise is scaled
//! to that bound and drawn deterministically from the hub secret, the figure's name and
//! its period, and the store keeps the released value: it never changes afterwards, so
//! publishing it every 30 s, or late reports, reveal nothing more. [`compute`] only
//! adds released values up (the 24-hour totals are sums of 24 noised hours) and applies
//! k-anonymity on top: a figure fewer than `k` distinct nodes contributed to is `null`,
//! distribution cells of fewer than `k` nodes are folded into `other` before noise.

use std::collections::{BTreeMap, BTreeSet};

use truebit_protocol::bucket::TotalTasksBucket;
use truebit_protocol::noise::{
    FigureNoise, Scale, EPSILON_DISTRIBUTION, EPSILON_HOURLY, EPSILON_NODES, ITEMS_PER_NODE_DAY,
    TASKS_PER_NODE_HOUR,
};
use truebit_protocol::stats::{
    basis_points, k_anonymous_cells, k_figure, Cells, Contribution, Distributions,
    HourAvailability, NetworkStats, TaskTotals, AVAILABILITY_HOURS, UNKNOWN,
};
use truebit_protocol::window::{window_of, WindowStart};

use crate::store::{DayInput, Dim, StatsInput};

/// An hour's figures are released this long after it ends (its last window's reports
/// arrive within 2 minutes of its close, plus clock skew); a day's, as long after the day.
pub const RELEASE_DELAY_SECS: u64 = 600;

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// Marks a released hour (also when every figure of it was suppressed).
const HOUR_MARK: &str = "released.hour";

/// Marks a released day.
const DAY_MARK: &str = "released.day";

/// The latest closed window at `now` (Unix seconds).
pub fn latest_closed_window(now: u64) -> WindowStart {
    let open = window_of(now);
    open.prev().unwrap_or(open)
}

/// The latest hour whose figures are released when `window` is the latest closed one.
pub fn last_released_hour(window: WindowStart) -> u64 {
    let t = window.closes_at().saturating_sub(RELEASE_DELAY_SECS + HOUR);
    t - t % HOUR
}

/// The latest UTC day whose figures are released when `window` is the latest closed one.
pub fn last_released_day(window: WindowStart) -> u64 {
    let t = window.closes_at().saturating_sub(RELEASE_DELAY_SECS + DAY);
    t - t % DAY
}

/// First hour of the 24-hour period of statistics for `window`.
pub fn period_start_hour(window: WindowStart) -> u64 {
    last_released_hour(window).saturating_sub((AVAILABILITY_HOURS as u64 - 1) * HOUR)
}

/// The hours of the period, oldest first.
pub fn period_hours(window: WindowStart) -> Vec<u64> {
    let last = last_released_hour(window);
    (0..AVAILABILITY_HOURS as u64)
        .rev()
        .filter_map(|i| last.checked_sub(i * HOUR))
        .collect()
}

/// The noise scale of an hourly task figure (received, completed, failed).
pub fn task_scale() -> Scale {
    Scale::new(EPSILON_HOURLY, TASKS_PER_NODE_HOUR)
}

/// The noise scale of the hourly count of reporting nodes.
pub fn reporting_scale() -> Scale {
    Scale::new(EPSILON_HOURLY, 1)
}

/// The noise scale of a daily distribution cell.
pub fn item_scale() -> Scale {
    Scale::new(EPSILON_DISTRIBUTION, ITEMS_PER_NODE_DAY)
}

/// The noise scale of a daily node count.
pub fn node_scale() -> Scale {
    Scale::new(EPSILON_NODES, 1)
}

/// Whether the hour starting at `hour` was released (its marker is among `released`).
pub fn hour_is_released(released: &[(u64, String, i64)], hour: u64) -> bool {
    released
        .iter()
        .any(|(p, f, _)| *p == hour && f == HOUR_MARK)
}

/// Whether the UTC day starting at `day` was released.
pub fn day_is_released(released: &[(u64, String, i64)], day: u64) -> bool {
    released.iter().any(|(p, f, _)| *p == day && f == DAY_MARK)
}

/// One hour's released figures from its rollups (node, received, completed, failed):
/// each node's count clamped to ±[`TASKS_PER_NODE_HOUR`] (negative only from strict
/// nodes' noise), summed, noised; and the reporting nodes, noised.
pub fn release_hour(
    hour: u64,
    rows: &[(i64, i64, i64, i64)],
    noise: &FigureNoise,
) -> Vec<(u64, String, i64)> {
    let c = TASKS_PER_NODE_HOUR as i64;
    let sum = |f: fn(&(i64, i64, i64, i64)) -> i64| -> i64 {
        rows.iter().map(|r| f(r).clamp(-c, c)).sum()
    };
    let tasks = task_scale();
    let mut out = vec![(hour, HOUR_MARK.to_owned(), 0)];
    for (name, value) in [
        ("tasks.received", sum(|r| r.1)),
        ("tasks.completed", sum(|r| r.2)),
        ("tasks.failed", sum(|r| r.3)),
    ] {
        out.push((hour, name.to_owned(), value + noise.draw(name, hour, tasks)));
    }
    let reporting = rows.len() as i64 + noise.draw("nodes.reporting", hour, reporting_scale());
    out.push((hour, "nodes.reporting".to_owned(), reporting));
    out
}

fn dim_name(dim: Dim) -> &'static str {
    match dim {
        Dim::Duration => "duration",
        Dim::Gas => "gas",
        Dim::Memory => "memory",
        Dim::Steps => "steps",
        Dim::Chain => "chain",
        Dim::Cached => "cached",
    }
}

/// Noises k-anonymous cells: `<prefix>.<label>` per cell.
fn noised_cells(
    out: &mut Vec<(u64, String, i64)>,
    day: u64,
    prefix: &str,
    cells: Cells,
    scale: Scale,
    noise: &FigureNoise,
) {
    for (label, count) in cells {
        let name = format!("{prefix}.{label}");
        let value = i64::try_from(count).unwrap_or(i64::MAX) + noise.draw(&name, day, scale);
        out.push((day, name, value));
    }
}

/// One UTC day's released figures: per distribution, each node's items clamped to
/// [`ITEMS_PER_NODE_DAY`], made k-anonymous, every cell noised; the day's nodes, the 30
/// days' nodes, and the day's nodes by continent and by activity (tasks received that
/// day, in the total-tasks buckets), each node counted once, k-anonymous, noised.
pub fn release_day(
    day: u64,
    input: &DayInput,
    k: u32,
    noise: &FigureNoise,
) -> Vec<(u64, String, i64)> {
    let kk = k as usize;
    let mut out = vec![(day, DAY_MARK.to_owned(), 0)];
    // (dim, node) -> label -> count
    let mut per_node: BTreeMap<(u8, i64), BTreeMap<&str, u64>> = BTreeMap::new();
    for (dim, label, node, count) in &input.cells {
        *per_node
            .entry((*dim, *node))
            .or_default()
            .entry(label.as_str())
            .or_default() += count;
    }
    for dim in Dim::ALL {
        let mut cells: BTreeMap<String, Contribution<i64>> = BTreeMap::new();
        for ((d, node), labels) in &per_node {
            if *d != dim as u8 {
                continue;
            }
            // At most ITEMS_PER_NODE_DAY items of one node, taken in label order.
            let mut left = ITEMS_PER_NODE_DAY;
            for (label, count) in labels {
                let take = (*count).min(left);
                left -= take;
                if take > 0 {
                    cells
                        .entry((*label).to_owned())
                        .or_default()
                        .add(*node, take);
                }
            }
        }
        let name = dim_name(dim);
        let cells = if dim == Dim::Cached {
            // Two cells for one rate: both, when k nodes are behind them together.
            let nodes: BTreeSet<i64> = cells
                .values()
                .flat_map(|c| c.nodes.iter().copied())
                .collect();
            if nodes.len() >= kk {
                cells.into_iter().map(|(l, c)| (l, c.count)).collect()
            } else {
                Cells::new()
            }
        } else {
            k_anonymous_cells(cells, kk)
        };
        noised_cells(
            &mut out,
            day,
            &format!("dist.{name}"),
            cells,
            item_scale(),
            noise,
        );
    }
    let scale = node_scale();
    for (name, count) in [
        ("nodes.day", input.nodes.len()),
        ("nodes.30d", input.nodes_30d.len()),
    ] {
        if let Some(count) = k_figure(count as u64, count, kk) {
            out.push((
                day,
                name.to_owned(),
                count as i64 + noise.draw(name, day, scale),
            ));
        }
    }
    let mut continents: BTreeMap<String, Contribution<i64>> = BTreeMap::new();
    let mut activity: BTreeMap<String, Contribution<i64>> = BTreeMap::new();
    for (node, continent, received) in &input.nodes {
        let label = continent.clone().unwrap_or_else(|| UNKNOWN.to_owned());
        continents.entry(label).or_default().add(*node, 1);
        let received = u64::try_from(*received).unwrap_or(0);
        let bucket = TotalTasksBucket::from_value(Some(received)).label();
        activity.entry(bucket.to_owned()).or_default().add(*node, 1);
    }
    noised_cells(
        &mut out,
        day,
        "continent",
        k_anonymous_cells(continents, kk),
        scale,
        noise,
    );
    noised_cells(
        &mut out,
        day,
        "activity",
        k_anonymous_cells(activity, kk),
        scale,
        noise,
    );
    out
}

/// Released values by (period, figure).
type Released = BTreeMap<(u64, String), i64>;

fn released_map(input: &StatsInput) -> Released {
    input
        .released
        .iter()
        .map(|(p, f, v)| ((*p, f.clone()), *v))
        .collect()
}

/// A published count: never below zero.
fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The cells of a released daily distribution (`<prefix>.<label>`), at least 0 each.
fn released_cells(released: &Released, day: u64, prefix: &str) -> Cells {
    let prefix = format!("{prefix}.");
    released
        .range((day, String::new())..(day + 1, String::new()))
        .filter_map(|((_, f), v)| f.strip_prefix(&prefix).map(|l| (l.to_owned(), count(*v))))
        .collect()
}

/// Computes the statistics for `window` with threshold `k` from the released figures
/// (and, for the k-anonymity of the hourly sums, the rollups' nodes).
pub fn compute(input: &StatsInput, window: WindowStart, k: u32) -> NetworkStats {
    let kk = k as usize;
    let released = released_map(input);
    let mut stats = NetworkStats::empty(window, k);
    let hours = period_hours(window);
    let first = hours.first().copied().unwrap_or(0);
    let day = last_released_day(window);

    // Nodes behind the period's task figures (a non-zero clamped value), from the rollups.
    let mut contributors: [BTreeSet<i64>; 3] = Default::default();
    let mut reporting: BTreeMap<u64, usize> = BTreeMap::new();
    for &(hour, node, received, completed, failed) in &input.node_hours {
        if hour < first || !hours.contains(&hour) {
            continue;
        }
        for (set, v) in contributors.iter_mut().zip([received, completed, failed]) {
            if v > 0 {
                set.insert(node);
            }
        }
        *reporting.entry(hour).or_default() += 1;
    }
    let sum = |name: &str| -> Option<i64> {
        let values: Vec<i64> = hours
            .iter()
            .filter_map(|h| released.get(&(*h, name.to_owned())).copied())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    let total = |name: &str, nodes: &BTreeSet<i64>| {
        sum(name).and_then(|v| k_figure(count(v), nodes.len(), kk))
    };
    stats.tasks_24h = TaskTotals {
        received: total("tasks.received", &contributors[0]),
        completed: total("tasks.completed", &contributors[1]),
        failed: total("tasks.failed", &contributors[2]),
    };
    let finished: BTreeSet<i64> = contributors[1].union(&contributors[2]).copied().collect();
    if finished.len() >= kk {
        let (c, f) = (
            count(sum("tasks.completed").unwrap_or(0)),
            count(sum("tasks.failed").unwrap_or(0)),
        );
        stats.success_rate_bp = basis_points(c, c + f);
    }
    if let Some(&last) = hours.last() {
        let raw = reporting.get(&last).copied().unwrap_or(0);
        stats.active_nodes = released
            .get(&(last, "nodes.reporting".to_owned()))
            .and_then(|v| k_figure(count(*v), raw, kk));
    }

    // Daily figures: the last released UTC day.
    let node_figure = |name: &str| released.get(&(day, name.to_owned())).map(|v| count(*v));
    stats.nodes_24h = node_figure("nodes.day");
    stats.nodes_30d = node_figure("nodes.30d");
    let cached = released_cells(&released, day, "dist.cached");
    if let (Some(hits), Some(misses)) = (cached.get("true"), cached.get("false")) {
        stats.cache_hit_rate_bp = basis_points(*hits, hits + misses);
    }
    stats.distributions = Distributions {
        duration: released_cells(&released, day, "dist.duration"),
        gas: released_cells(&released, day, "dist.gas"),
        memory: released_cells(&released, day, "dist.memory"),
        steps: released_cells(&released, day, "dist.steps"),
        chain: released_cells(&released, day, "dist.chain"),
        continent: released_cells(&released, day, "continent"),
        activity: released_cells(&released, day, "activity"),
    };

    // Availability: reporting nodes of the hour (noised) / the day's nodes (noised).
    for &hour in &hours {
        let raw = reporting.get(&hour).copied().unwrap_or(0);
        let rate_bp = match (
            released.get(&(hour, "nodes.reporting".to_owned())),
            stats.nodes_24h,
        ) {
            (Some(r), Some(known)) if raw >= kk => basis_points(count(*r), known),
            _ => None,
        };
        stats.availability.push(HourAvailability { hour, rate_bp });
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

/// Completed and failed tasks per hour of the period (released, noised), each figure
/// k-anonymous.
pub fn hourly_tasks(input: &StatsInput, window: WindowStart, k: u32) -> Vec<HourTasks> {
    let kk = k as usize;
    let released = released_map(input);
    // hour -> (completing nodes, failing nodes)
    let mut nodes: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for &(hour, _, _, completed, failed) in &input.node_hours {
        let e = nodes.entry(hour).or_default();
        e.0 += usize::from(completed > 0);
        e.1 += usize::from(failed > 0);
    }
    period_hours(window)
        .into_iter()
        .map(|hour| {
            let (cn, fnodes) = nodes.get(&hour).copied().unwrap_or_default();
            let figure = |name: &str, n: usize| {
                released
                    .get(&(hour, name.to_owned()))
                    .and_then(|v| k_figure(count(*v), n, kk))
            };
            HourTasks {
                hour,
                completed: figure("tasks.completed", cn),
                failed: figure("tasks.failed", fnodes),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 1_717_243_200; // 12:00 UTC

    fn w(secs: u64) -> WindowStart {
        WindowStart::new(secs).expect("aligned")
    }

    fn noise(seed: u8) -> FigureNoise {
        FigureNoise::new([seed; 32])
    }

    /// `n` nodes, each with `received` (and as many completed) tasks in every hour of
    /// `hours`, released with `noise`.
    fn input(n: i64, received: u64, hours: &[u64], noise: &FigureNoise) -> StatsInput {
        let mut inp = StatsInput::default();
        for &hour in hours {
            let rows: Vec<(i64, i64, i64, i64)> = (0..n)
                .map(|i| (i, received as i64, received as i64, 0))
                .collect();
            inp.released.extend(release_hour(hour, &rows, noise));
            inp.node_hours
                .extend((0..n).map(|i| (hour, i, received, received, 0)));
        }
        inp
    }

    #[test]
    fn an_hour_is_released_after_it_ends_and_its_reports_are_in() {
        // 13:05's window closes 13:10: the 12:00 hour (ended 13:00) is out since 13:10.
        assert_eq!(last_released_hour(w(NOON + 3_600 + 300)), NOON);
        assert_eq!(last_released_hour(w(NOON + 3_600)), NOON - 3_600);
        assert_eq!(period_hours(w(NOON + 3_600 + 300)).len(), 24);
        assert_eq!(period_start_hour(w(NOON + 3_600 + 300)), NOON - 23 * 3_600);
        let day = NOON - NOON % 86_400;
        assert_eq!(last_released_day(w(day + 86_400 + 300)), day);
        assert_eq!(last_released_day(w(day + 86_400)), day - 86_400);
    }

    #[test]
    fn each_node_counts_at_most_the_clamp_per_hour_and_the_noise_is_the_figures_own() {
        let n = noise(1);
        let rows = [(1, 5, 4, 1), (2, 500, 480, 20), (3, -3, -3, 0)];
        let released = release_hour(NOON, &rows, &n);
        let get = |name: &str| {
            released
                .iter()
                .find(|(_, f, _)| f == name)
                .map(|r| r.2)
                .expect("released")
        };
        let c = TASKS_PER_NODE_HOUR as i64;
        assert_eq!(
            get("tasks.received"),
            5 + c - 3 + n.draw("tasks.received", NOON, task_scale())
        );
        assert_eq!(
            get("tasks.completed"),
            4 + c - 3 + n.draw("tasks.completed", NOON, task_scale())
        );
        assert_eq!(
            get("nodes.reporting"),
            3 + n.draw("nodes.reporting", NOON, reporting_scale())
        );
        assert!(hour_is_released(&released, NOON));
        assert!(!day_is_released(&released, NOON));
        // Released again from the same rows: the same values.
        assert_eq!(release_hour(NOON, &rows, &n), released);
    }

    #[test]
    fn the_24_hour_totals_are_sums_of_the_released_hours() {
        let n = noise(2);
        let window = w(NOON + 3_600 + 300);
        let hours = period_hours(window);
        let inp = input(6, 3, &hours, &n);
        let stats = compute(&inp, window, 5);
        let expected: i64 = hours
            .iter()
            .map(|&h| 18 + n.draw("tasks.received", h, task_scale()))
            .sum();
        assert_eq!(stats.tasks_24h.received, Some(count(expected)));
        let last = *hours.last().expect("hours");
        assert_eq!(
            stats.active_nodes,
            Some(count(
                6 + n.draw("nodes.reporting", last, reporting_scale())
            ))
        );
        // Not published at all: nothing of a day has been released.
        assert_eq!(stats.nodes_24h, None);
        assert_eq!(stats.check(), Ok(()));
        let hourly = hourly_tasks(&inp, window, 5);
        assert_eq!(hourly.len(), 24);
        assert_eq!(
            hourly[23].completed,
            Some(count(18 + n.draw("tasks.completed", last, task_scale())))
        );
        assert_eq!(hourly[23].failed, None, "nobody failed");
    }

    #[test]
    fn figures_of_fewer_than_k_nodes_are_suppressed() {
        let n = noise(3);
        let window = w(NOON + 3_600 + 300);
        let stats = compute(&input(4, 3, &period_hours(window), &n), window, 5);
        assert_eq!(stats.tasks_24h, TaskTotals::default());
        assert_eq!(stats.active_nodes, None);
        assert_eq!(stats.success_rate_bp, None);
        let day = DayInput {
            cells: (0..4).map(|i| (0, "1-5s".to_owned(), i, 3)).collect(),
            nodes: (0..4).map(|i| (i, Some("EU".to_owned()), 3)).collect(),
            nodes_30d: (0..4).collect(),
        };
        let released = release_day(NOON - NOON % 86_400, &day, 5, &n);
        assert!(
            released.iter().all(|(_, f, _)| f == DAY_MARK),
            "{released:?}"
        );
    }

    #[test]
    fn a_day_releases_clamped_k_anonymous_noised_distributions_and_node_counts() {
        let n = noise(4);
        let day = NOON - NOON % 86_400;
        // Six nodes with 10 1-5s items each; five of them with 10 >1m items, node 0 with
        // 1,000 (it counts 200 in all: 10 1-5s, then 190 >1m); node 1 has one item on a
        // rare chain.
        let mut cells: Vec<(u8, String, i64, u64)> =
            (0..6).map(|i| (0, "1-5s".to_owned(), i, 10)).collect();
        cells.push((0, ">1m".to_owned(), 0, 1_000));
        cells.extend((1..5).map(|i| (0, ">1m".to_owned(), i, 10)));
        cells.extend((0..6).map(|i| (4, "1".to_owned(), i, 10)));
        cells.push((4, "137".to_owned(), 1, 1));
        let input = DayInput {
            cells,
            nodes: (0..6).map(|i| (i, Some("EU".to_owned()), 10)).collect(),
            nodes_30d: (0..9).collect(),
        };
        let released = release_day(day, &input, 5, &n);
        let get = |name: &str| released.iter().find(|(_, f, _)| f == name).map(|r| r.2);
        let items = item_scale();
        assert_eq!(
            get("dist.duration.1-5s"),
            Some(60 + n.draw("dist.duration.1-5s", day, items))
        );
        assert_eq!(
            get("dist.duration.>1m"),
            Some(190 + 40 + n.draw("dist.duration.>1m", day, items))
        );
        assert_eq!(get("dist.duration.other"), None);
        // "137" has one node: "other" takes the smallest kept cell with it.
        assert_eq!(get("dist.chain.137"), None);
        let other = get("dist.chain.other").expect("other");
        assert_eq!(other, 61 + n.draw("dist.chain.other", day, items));
        assert_eq!(
            get("nodes.day"),
            Some(6 + n.draw("nodes.day", day, node_scale()))
        );
        assert_eq!(
            get("nodes.30d"),
            Some(9 + n.draw("nodes.30d", day, node_scale()))
        );
        assert_eq!(
            get("continent.EU"),
            Some(6 + n.draw("continent.EU", day, node_scale()))
        );
        assert!(day_is_released(&released, day));
        // Published as released (never below zero), the next day.
        let window = w(day + 86_400 + 900);
        let stats = compute(
            &StatsInput {
                node_hours: Vec::new(),
                released: released.clone(),
            },
            window,
            5,
        );
        assert_eq!(stats.nodes_24h, get("nodes.day").map(count));
        assert_eq!(
            stats.distributions.duration.get("1-5s").copied(),
            get("dist.duration.1-5s").map(count)
        );
        assert_eq!(stats.check(), Ok(()));
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let n = noise(5);
        let window = w(NOON + 3_600 + 300);
        let a = compute(&input(7, 2, &period_hours(window), &n), window, 5);
        let mut shuffled = input(7, 2, &period_hours(window), &n);
        shuffled.node_hours.reverse();
        shuffled.released.reverse();
        let b = compute(&shuffled, window, 5);
        assert_eq!(a.to_canonical_bytes(), b.to_canonical_bytes());
    }

    /// The attacker's error on the real node's 24-hour tasks received, in tasks, when it
    /// runs `fakes` nodes whose reports it chose and subtracts them from the published
    /// total. One trial per noise secret.
    pub(crate) fn sybil_error(secret: [u8; 32], fakes: i64, real_per_hour: &[i64; 24]) -> i64 {
        let n = FigureNoise::new(secret);
        let window = w(NOON + 3_600 + 300);
        let hours = period_hours(window);
        let mut inp = StatsInput::default();
        let mut known = 0i64;
        for (i, &hour) in hours.iter().enumerate() {
            let mut rows = vec![(0i64, real_per_hour[i], real_per_hour[i], 0i64)];
            for f in 1..=fakes {
                let sent = 1 + (f + i as i64) % 4; // the attacker's own choice
                rows.push((f, sent, sent, 0));
                known += sent.min(TASKS_PER_NODE_HOUR as i64);
            }
            inp.released.extend(release_hour(hour, &rows, &n));
            inp.node_hours
                .extend(rows.iter().map(|r| (hour, r.0, r.1 as u64, r.2 as u64, 0)));
        }
        let published = compute(&inp, window, 5)
            .tasks_24h
            .received
            .expect("five or more nodes: published") as i64;
        let real: i64 = real_per_hour.iter().sum();
        (published - known - real).abs()
    }

    /// docs/PRIVACY.md: with one real node and 4 to 50 fake ones, the attacker's estimate
    /// of the real node's 24-hour count is off by at least 100 tasks in at least 80 % of
    /// trials (the expected share is 88 %).
    #[test]
    fn fake_nodes_cannot_read_one_real_nodes_24_hour_count() {
        // 134 tasks in the day, as in the review's attack.
        let real: [i64; 24] = [
            5, 6, 4, 7, 5, 6, 5, 8, 6, 4, 5, 6, 7, 5, 6, 5, 4, 6, 7, 5, 6, 5, 4, 7,
        ];
        assert_eq!(real.iter().sum::<i64>(), 134);
        let mut trials = 0;
        let mut protected = 0;
        for fakes in [4i64, 10, 25, 50] {
            for t in 0u8..60 {
                let mut secret = [0u8; 32];
                secret[0] = t;
                secret[1] = fakes as u8;
                trials += 1;
                if sybil_error(secret, fakes, &real) >= 100 {
                    protected += 1;
                }
            }
        }
        let share = f64::from(protected) / f64::from(trials);
        assert!(
            share >= 0.8,
            "only {protected} of {trials} trials kept the error >= 100"
        );
    }
}
