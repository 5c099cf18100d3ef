//! Calibrated noise for integer counts: the two-sided geometric ("discrete Laplace")
//! mechanism, the parameters the hub and strict monitors use, and the deterministic
//! per-figure generator of the hub (docs/PRIVACY.md, "Noise on published figures").
//!
//! A count whose value one node can change by at most `sensitivity` gets noise `Z`
//! with `P(Z = z) = (1 - a) / (1 + a) * a^|z|`, `a = exp(-epsilon / sensitivity)`:
//! whatever else is known, the published value changes the odds of anything about
//! that node's contribution by at most a factor `exp(epsilon)`. The noise is an
//! integer, so published figures stay integers.
//!
//! The hub draws the noise of a figure from a ChaCha20 generator seeded with
//! HMAC-SHA256(hub secret, figure name, period): the same figure of the same period
//! always gets the same noise (publishing it again every 30 s gives nothing to average
//! away), and two hubs with the same secret and the same rows publish the same bytes.

use hmac::{Hmac, Mac};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;

/// A node's tasks (received, completed or failed) counted per hour at most.
pub const TASKS_PER_NODE_HOUR: u64 = 20;

/// ε of each hourly task figure (received, completed, failed) and of the hourly count
/// of reporting nodes.
pub const EPSILON_HOURLY: f64 = 0.2;

/// A node's items counted per distribution (duration, gas, memory, steps, chain,
/// cache flag) and UTC day at most.
pub const ITEMS_PER_NODE_DAY: u64 = 200;

/// ε of each daily distribution (all its cells together).
pub const EPSILON_DISTRIBUTION: f64 = 1.0;

/// ε of each daily node count (nodes of the day, of 30 days, by continent, by
/// activity).
pub const EPSILON_NODES: f64 = 0.25;

/// ε of each count a strict monitor noises before sending (per window).
pub const EPSILON_STRICT_WINDOW: f64 = 0.5;

/// Added by a strict monitor to each noised window count so that the noise can be
/// sent as a non-negative number; the hub subtracts it. The noise falls below `-SHIFT`
/// with probability about `a^SHIFT` (under 1e-4 at the strict ε): only then is the
/// value cut at zero.
pub const STRICT_SHIFT: u64 = 20;

/// The geometric parameter `a = exp(-epsilon / sensitivity)` as a threshold on a
/// uniform `u64` (a draw below it continues the geometric run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    threshold: u64,
}

impl Scale {
    /// Noise for a figure one node changes by at most `sensitivity`, at `epsilon`.
    pub fn new(epsilon: f64, sensitivity: u64) -> Scale {
        assert!(
            epsilon > 0.0 && sensitivity > 0,
            "epsilon and sensitivity > 0"
        );
        let a = (-epsilon / sensitivity as f64).exp();
        // a < 1, so the product is below 2^64.
        Scale {
            threshold: (a * 18_446_744_073_709_551_616.0) as u64,
        }
    }

    /// `a`, for error figures.
    pub fn a(self) -> f64 {
        self.threshold as f64 / 18_446_744_073_709_551_616.0
    }

    /// The standard deviation of the noise: `sqrt(2a) / (1 - a)`.
    pub fn std_dev(self) -> f64 {
        let a = self.a();
        (2.0 * a).sqrt() / (1.0 - a)
    }

    /// One draw of the two-sided geometric distribution: the difference of two
    /// geometric runs (each: how many uniform draws in a row fall below `a`).
    pub fn draw<R: RngCore + ?Sized>(self, rng: &mut R) -> i64 {
        let run = |rng: &mut R| {
            let mut n = 0i64;
            while rng.next_u64() < self.threshold {
                n += 1;
            }
            n
        };
        let up = run(rng);
        up - run(rng)
    }
}

/// The hub's noise: deterministic per figure and period, from a secret.
#[derive(Clone)]
pub struct FigureNoise {
    secret: [u8; 32],
}

impl std::fmt::Debug for FigureNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FigureNoise(<secret>)")
    }
}

impl FigureNoise {
    pub fn new(secret: [u8; 32]) -> FigureNoise {
        FigureNoise { secret }
    }

    /// The noise of `figure` (a name such as `tasks.received`) for the period starting
    /// at `period` (Unix seconds).
    pub fn draw(&self, figure: &str, period: u64, scale: Scale) -> i64 {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(figure.as_bytes());
        mac.update(b"\n");
        mac.update(&period.to_be_bytes());
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        scale.draw(&mut ChaCha20Rng::from_seed(seed))
    }
}

/// What a strict monitor sends for a window count `x`: `x + noise + STRICT_SHIFT`, at
/// least 0 and at most `max`.
pub fn strict_count<R: RngCore + ?Sized>(x: u64, rng: &mut R, max: u64) -> u64 {
    let scale = Scale::new(EPSILON_STRICT_WINDOW, 1);
    let noised = i128::from(x) + i128::from(scale.draw(rng)) + i128::from(STRICT_SHIFT);
    noised.clamp(0, i128::from(max)) as u64
}

/// What the hub counts for a strict report's window count `sent` (may be negative).
pub fn strict_estimate(sent: u64) -> i64 {
    i64::try_from(sent).unwrap_or(i64::MAX) - STRICT_SHIFT as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_have_the_discrete_laplace_mean_and_spread() {
        let scale = Scale::new(0.2, 20); // a = e^-0.01
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let n = 5_000;
        let draws: Vec<i64> = (0..n).map(|_| scale.draw(&mut rng)).collect();
        let mean = draws.iter().sum::<i64>() as f64 / n as f64;
        let var = draws
            .iter()
            .map(|&d| (d as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let expected = scale.std_dev();
        assert!((expected - 141.4).abs() < 1.0, "{expected}");
        assert!(
            mean.abs() < 4.0 * expected / (n as f64).sqrt(),
            "mean {mean}"
        );
        assert!(
            (var.sqrt() / expected - 1.0).abs() < 0.08,
            "sd {}",
            var.sqrt()
        );
        // Symmetric: zero is the most likely value and as many draws fall each side.
        let below = draws.iter().filter(|&&d| d < 0).count() as f64;
        let above = draws.iter().filter(|&&d| d > 0).count() as f64;
        assert!((below / above - 1.0).abs() < 0.12, "{below} / {above}");
    }

    #[test]
    fn the_same_figure_and_period_always_get_the_same_noise() {
        let noise = FigureNoise::new([7; 32]);
        let scale = Scale::new(0.2, 20);
        let a = noise.draw("tasks.received", 3_600, scale);
        assert_eq!(a, noise.draw("tasks.received", 3_600, scale));
        let others = [
            noise.draw("tasks.received", 7_200, scale),
            noise.draw("tasks.completed", 3_600, scale),
            FigureNoise::new([8; 32]).draw("tasks.received", 3_600, scale),
        ];
        assert!(others.iter().any(|&o| o != a), "{a} {others:?}");
        assert!(!format!("{noise:?}").contains('7'));
    }

    #[test]
    fn strict_counts_are_shifted_noise_and_the_hub_undoes_the_shift_on_average() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let n = 20_000;
        let sum: i64 = (0..n)
            .map(|_| strict_estimate(strict_count(3, &mut rng, 100_000)))
            .sum();
        let mean = sum as f64 / f64::from(n);
        assert!((mean - 3.0).abs() < 0.1, "{mean}");
        let sd = Scale::new(EPSILON_STRICT_WINDOW, 1).std_dev();
        assert!((sd - 2.8).abs() < 0.05, "{sd}");
        assert_eq!(strict_count(0, &mut rng, 0), 0);
    }
}
