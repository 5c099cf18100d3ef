//! Utility against protection of the published figures' noise (docs/PRIVACY.md).
//!
//! Simulates networks of 50, 500 and 5,000 nodes over one UTC day (per node a task rate
//! drawn around 5.6 tasks an hour, a few busy nodes, 93 % completed, task items spread
//! over the execution-time buckets), releases the day's hours and the day as the
//! aggregator does (clamp, noise from a secret, k = 5), computes the statistics, and
//! compares them with the exact figures: the relative error of the main figures. For
//! protection it runs the fake-node attack: every node but one is the attacker's (it
//! knows what they reported), and it subtracts them from the published 24-hour tasks
//! received to estimate the one real node's count. Each figure is the mean over 50 noise secrets.
//!
//! ```sh
//! cargo run -p truebit-aggregator --example privacy_table
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use truebit_aggregator::stats::{
    compute, last_released_day, period_hours, release_day, release_hour,
};
use truebit_aggregator::store::{DayInput, StatsInput};
use truebit_protocol::noise::{FigureNoise, TASKS_PER_NODE_HOUR};
use truebit_protocol::window::WindowStart;

/// 2024-06-02 00:15 UTC: the statistics of 2024-06-01 (hours 00:00 to 23:00 and the
/// day) are all released.
const WINDOW: u64 = 1_717_287_000;
const TRIALS: u8 = 50;
const DURATION_LABELS: [&str; 4] = ["500ms-1s", "1-5s", "5-10s", "10-30s"];

/// One node's day: (received, completed, failed) per hour, and items per duration label.
struct NodeDay {
    hours: Vec<(i64, i64, i64)>,
    durations: [u64; 4],
}

fn poisson(rng: &mut impl Rng, lambda: f64) -> i64 {
    // Knuth's method: fine for the small rates here.
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.gen::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn simulate(nodes: usize, rng: &mut impl Rng) -> Vec<NodeDay> {
    (0..nodes)
        .map(|_| {
            // Most nodes run around 5.6 tasks an hour (134 a day); one in ten is busy.
            let rate = if rng.gen_bool(0.1) {
                rng.gen_range(10.0..18.0)
            } else {
                rng.gen_range(2.0..9.0)
            };
            let mut durations = [0u64; 4];
            let hours = (0..24)
                .map(|_| {
                    let received = poisson(rng, rate);
                    let completed = (0..received).filter(|_| rng.gen_bool(0.93)).count() as i64;
                    for _ in 0..received {
                        durations[rng.gen_range(0..4)] += 1;
                    }
                    (received, completed, received - completed)
                })
                .collect();
            NodeDay { hours, durations }
        })
        .collect()
}

fn relative(published: Option<u64>, exact: i64) -> f64 {
    let p = published.map_or(0.0, |p| p as f64);
    (p - exact as f64).abs() / exact as f64
}

fn main() {
    let window = WindowStart::new(WINDOW).expect("a window start");
    let hours = period_hours(window);
    let day = last_released_day(window);
    println!("| nodes | tasks received, 24 h | tasks completed, 24 h | success rate (points) | nodes of the day | 1-5s cell | attacker's error on one node's 24 h tasks received: median | share of trials off by ≥ 100 |");
    println!("|---|---|---|---|---|---|---|---|");
    for nodes in [50usize, 500, 5_000] {
        let mut rng = ChaCha20Rng::seed_from_u64(nodes as u64);
        let network = simulate(nodes, &mut rng);
        let mut errors = [0.0f64; 5];
        let mut attack = Vec::new();
        for t in 0..TRIALS {
            let noise = FigureNoise::new([t; 32]);
            let mut input = StatsInput::default();
            for (i, &hour) in hours.iter().enumerate() {
                let rows: Vec<(i64, i64, i64, i64)> = network
                    .iter()
                    .enumerate()
                    .map(|(n, d)| (n as i64, d.hours[i].0, d.hours[i].1, d.hours[i].2))
                    .collect();
                input.released.extend(release_hour(hour, &rows, &noise));
                input.node_hours.extend(
                    rows.iter()
                        .map(|r| (hour, r.0, r.1 as u64, r.2 as u64, r.3 as u64)),
                );
            }
            let day_input = DayInput {
                cells: network
                    .iter()
                    .enumerate()
                    .flat_map(|(n, d)| {
                        DURATION_LABELS
                            .iter()
                            .zip(d.durations)
                            .map(move |(l, c)| (0u8, (*l).to_owned(), n as i64, c))
                    })
                    .collect(),
                nodes: network
                    .iter()
                    .enumerate()
                    .map(|(n, d)| {
                        (
                            n as i64,
                            Some("EU".to_owned()),
                            d.hours.iter().map(|h| h.0).sum(),
                        )
                    })
                    .collect(),
                nodes_30d: (0..nodes as i64).collect(),
            };
            input
                .released
                .extend(release_day(day, &day_input, 5, &noise));
            let stats = compute(&input, window, 5);
            let exact = |f: fn(&(i64, i64, i64)) -> i64| -> i64 {
                network.iter().flat_map(|d| d.hours.iter().map(f)).sum()
            };
            let (received, completed, failed) = (exact(|h| h.0), exact(|h| h.1), exact(|h| h.2));
            errors[0] += relative(stats.tasks_24h.received, received);
            errors[1] += relative(stats.tasks_24h.completed, completed);
            let exact_rate = completed as f64 / (completed + failed) as f64 * 100.0;
            let rate = stats
                .success_rate_bp
                .map_or(0.0, |bp| f64::from(bp) / 100.0);
            errors[2] += (rate - exact_rate).abs();
            errors[3] += relative(stats.nodes_24h, nodes as i64);
            let cell: u64 = network.iter().map(|d| d.durations[1]).sum();
            errors[4] += relative(
                stats.distributions.duration.get("1-5s").copied(),
                cell as i64,
            );
            // The attack: every node but node 0 is the attacker's.
            let known: i64 = network[1..]
                .iter()
                .flat_map(|d| d.hours.iter().map(|h| h.0.min(TASKS_PER_NODE_HOUR as i64)))
                .sum();
            let real: i64 = network[0].hours.iter().map(|h| h.0).sum();
            let published = stats.tasks_24h.received.unwrap_or(0) as i64;
            attack.push((published - known - real).abs());
        }
        let n = f64::from(TRIALS);
        attack.sort_unstable();
        let median = attack[attack.len() / 2];
        let protected = attack.iter().filter(|&&e| e >= 100).count();
        println!(
            "| {nodes} | {:.2} % | {:.2} % | {:.2} | {:.2} % | {:.2} % | {median} tasks | {protected} of {} |",
            errors[0] / n * 100.0,
            errors[1] / n * 100.0,
            errors[2] / n,
            errors[3] / n * 100.0,
            errors[4] / n * 100.0,
            attack.len()
        );
    }
}
