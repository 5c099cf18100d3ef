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

impl FailureLimiter {
    /// `Err(seconds to wait)` while `ip` has used up its failures.
    pub fn check(&self, ip: IpAddr, now: UnixNanos) -> Result<(), u64> {
        let map = lock(&self.by_ip);
        match map.get(&ip) {
            Some(f) if f.count >= MAX_FAILURES && now - f.window_start < WINDOW_NS => {
                let left = WINDOW_NS - (now - f.window_start);
                Err(u64::try_from((left + 999_999_999) / 1_000_000_000)
                    .unwrap_or(1)
                    .max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, ip: IpAddr, now: UnixNanos) {
        let mut map = lock(&self.by_ip);
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
            assert_eq!(limiter.check(ip("10.0.0.1"), t0), Ok(()));
            limiter.record_failure(ip("10.0.0.1"), t0);
        }
        assert_eq!(limiter.check(ip("10.0.0.1"), t0), Err(900));
        assert_eq!(
            limiter.check(ip("10.0.0.2"), t0),
            Ok(()),
            "other IPs are not affected"
        );
        assert_eq!(limiter.check(ip("10.0.0.1"), t0 + WINDOW_NS - 1), Err(1));
        assert_eq!(limiter.check(ip("10.0.0.1"), t0 + WINDOW_NS), Ok(()));
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
