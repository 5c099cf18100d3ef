//! Failed logins and bad API keys, counted per client IP; and who the client is
//! (`X-Forwarded-For` only from `TRUSTED_PROXIES`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::http::HeaderMap;

use super::config::{canonical, IpNet};
use crate::model::UnixNanos;

/// Failures allowed per IP within [`WINDOW_NS`]; the next attempt is refused until the
/// window that began with the first failure is over.
pub const MAX_FAILURES: u32 = 10;
pub const WINDOW_NS: i64 = 15 * 60 * 1_000_000_000;
/// Addresses tracked at most; beyond, the stalest is forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Default)]
pub struct FailureLimiter {
    by_ip: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    window_start: UnixNanos,
}

/// One attempt taken with [`FailureLimiter::reserve`]: it counts as a failure unless it is
/// given back with [`FailureLimiter::succeeded`].
#[derive(Debug)]
#[must_use = "a successful attempt must be given back with FailureLimiter::succeeded"]
pub struct Reservation {
    ip: IpAddr,
    window_start: UnixNanos,
}

impl FailureLimiter {
    /// Takes an attempt for `ip`, counted as a failure at once (check and count are one
    /// step, so concurrent attempts cannot all pass the check before any failure is
    /// recorded); `Err(seconds to wait)` while `ip` has used up its failures.
    pub fn reserve(&self, ip: IpAddr, now: UnixNanos) -> Result<Reservation, u64> {
        let mut map = lock(&self.by_ip);
        if let Some(f) = map.get(&ip) {
            if f.count >= MAX_FAILURES && now - f.window_start < WINDOW_NS {
                let left = WINDOW_NS - (now - f.window_start);
                return Err(u64::try_from((left + 999_999_999) / 1_000_000_000)
                    .unwrap_or(1)
                    .max(1));
            }
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, f| now - f.window_start < WINDOW_NS);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, f)| f.window_start)
                    .map(|(ip, _)| *ip)
                {
                    map.remove(&oldest);
                }
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            window_start: now,
        });
        if now - f.window_start >= WINDOW_NS {
            *f = Failures {
                count: 0,
                window_start: now,
            };
        }
        f.count = f.count.saturating_add(1);
        Ok(Reservation {
            ip,
            window_start: f.window_start,
        })
    }

    /// Gives back an attempt that succeeded (in the window it was taken in).
    pub fn succeeded(&self, r: Reservation) {
        let mut map = lock(&self.by_ip);
        if let Some(f) = map.get_mut(&r.ip) {
            if f.window_start == r.window_start {
                f.count = f.count.saturating_sub(1);
                if f.count == 0 {
                    map.remove(&r.ip);
                }
            }
        }
    }

    /// Whether `ip` is blocked now (without taking an attempt).
    pub fn blocked(&self, ip: IpAddr, now: UnixNanos) -> bool {
        lock(&self.by_ip)
            .get(&ip)
            .is_some_and(|f| f.count >= MAX_FAILURES && now - f.window_start < WINDOW_NS)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` address that is not itself a trusted proxy.
pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let Some(peer) = peer else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    let mut ip = canonical(peer.ip());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(ip) {
        return ip;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        let Ok(addr) = hop.parse::<IpAddr>() else {
            break;
        };
        ip = canonical(addr);
        if !is_trusted(ip) {
            break;
        }
    }
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_ip_is_blocked_after_its_failures_until_the_window_ends() {
        let limiter = FailureLimiter::default();
        let t0 = 1_000 * 1_000_000_000;
        for _ in 0..MAX_FAILURES {
            let _failed = limiter.reserve(ip("10.0.0.1"), t0).expect("allowed");
        }
        assert_eq!(limiter.reserve(ip("10.0.0.1"), t0).map(|_| ()), Err(900));
        assert!(limiter.blocked(ip("10.0.0.1"), t0));
        assert!(
            limiter.reserve(ip("10.0.0.2"), t0).is_ok(),
            "other IPs are not affected"
        );
        assert_eq!(
            limiter
                .reserve(ip("10.0.0.1"), t0 + WINDOW_NS - 1)
                .map(|_| ()),
            Err(1)
        );
        assert!(limiter.reserve(ip("10.0.0.1"), t0 + WINDOW_NS).is_ok());
    }

    #[test]
    fn attempts_are_taken_before_they_are_judged_and_successes_are_given_back() {
        let limiter = FailureLimiter::default();
        let t0 = 1_000 * 1_000_000_000;
        // Ten attempts in flight at once use up the address's failures: the eleventh is
        // refused before any of them is judged.
        let held: Vec<Reservation> = (0..MAX_FAILURES)
            .map(|_| limiter.reserve(ip("10.0.0.1"), t0).expect("allowed"))
            .collect();
        assert!(limiter.reserve(ip("10.0.0.1"), t0).is_err());
        // A success gives its attempt back.
        for r in held {
            limiter.succeeded(r);
        }
        assert!(!limiter.blocked(ip("10.0.0.1"), t0));
        assert!(limiter.reserve(ip("10.0.0.1"), t0).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9".parse().expect("hv"),
        );
        let proxy: SocketAddr = "10.0.0.5:443".parse().expect("addr");
        let trusted = [IpNet::parse("10.0.0.0/8").expect("net")];
        assert_eq!(
            client_ip(Some(proxy), &headers, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(Some(proxy), &headers, &[]), ip("10.0.0.5"));
        let direct: SocketAddr = "198.51.100.7:5000".parse().expect("addr");
        assert_eq!(
            client_ip(Some(direct), &headers, &trusted),
            ip("198.51.100.7")
        );
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.9".parse().expect("hv"));
        assert_eq!(
            client_ip(Some(proxy), &headers, &trusted),
            ip("6.6.6.6"),
            "proxy chains are walked"
        );
    }
}
