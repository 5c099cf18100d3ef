//! Settings of the HTTP server: raw layers ([`HttpSettings`], flattened into
//! [`crate::config::Settings`], so the environment names stay flat and the TOML file has
//! an `[http]` section) validated into [`HttpConfig`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use serde::Deserialize;

use crate::setting::InvalidSetting;

#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct HttpSettings {
    /// Address the HTTP server binds to; 0.0.0.0 exposes it to the network [default: 127.0.0.1].
    #[arg(long, env = "HOST", value_name = "ADDR", global = true)]
    pub host: Option<String>,

    /// HTTP port [default: 8090].
    #[arg(long, env = "PORT", value_name = "PORT", global = true)]
    pub port: Option<u16>,

    /// API key with full access (`Authorization: Bearer <key>`), at least 16 characters.
    #[arg(
        long,
        env = "API_KEY",
        value_name = "KEY",
        global = true,
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// Operator password for the dashboard and task input/output; when unset one is
    /// generated on first start and printed once.
    #[arg(
        long,
        env = "TASK_DATA_PASSWORD",
        value_name = "PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub task_data_password: Option<String>,

    /// Origins allowed to call the API from a browser (CORS), comma-separated
    /// (e.g. https://dash.example.org) [default: none].
    #[arg(long, env = "ALLOWED_ORIGINS", value_name = "ORIGINS", global = true)]
    pub allowed_origins: Option<String>,

    /// Reverse proxies whose X-Forwarded-For is trusted, comma-separated IPs or CIDRs
    /// [default: none].
    #[arg(long, env = "TRUSTED_PROXIES", value_name = "CIDRS", global = true)]
    pub trusted_proxies: Option<String>,

    /// Live streams open at once [default: 64].
    #[arg(long, env = "WS_MAX_CONNECTIONS", value_name = "N", global = true)]
    pub ws_max_connections: Option<u32>,

    /// Live streams open at once per client IP [default: 8].
    #[arg(long, env = "WS_MAX_PER_IP", value_name = "N", global = true)]
    pub ws_max_per_ip: Option<u32>,

    /// HTTP connections open at once; at the cap the one waiting longest for a request
    /// makes room [default: 512].
    #[arg(
        long = "http-max-connections",
        env = "HTTP_MAX_CONNECTIONS",
        value_name = "N",
        global = true
    )]
    pub max_connections: Option<u32>,

    /// A connection that has not sent a request's headers this long after it opened or
    /// after its previous answer is closed, e.g. 30s, 2m [default: 30s].
    #[arg(
        long = "http-header-timeout",
        env = "HTTP_HEADER_TIMEOUT",
        value_name = "DURATION",
        global = true
    )]
    pub header_timeout: Option<String>,

    /// Serve /metrics without authentication on this separate address (e.g. 127.0.0.1:9464);
    /// on the main port /metrics always needs a key.
    #[arg(long, env = "METRICS_BIND", value_name = "ADDR:PORT", global = true)]
    pub metrics_bind: Option<String>,

    /// Lifetime of a login session, e.g. 30m, 12h, 7d [default: 12h].
    #[arg(long, env = "SESSION_TTL", value_name = "DURATION", global = true)]
    pub session_ttl: Option<String>,

    /// The URL operators use to reach the monitor; https:// turns on Secure cookies and HSTS.
    #[arg(long, env = "PUBLIC_URL", value_name = "URL", global = true)]
    pub public_url: Option<String>,

    /// Force the Secure cookie flag (true/false) [default: true when PUBLIC_URL is https].
    #[arg(long, env = "COOKIE_SECURE", value_name = "BOOL", global = true)]
    pub cookie_secure: Option<bool>,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field(
                "task_data_password",
                &self.task_data_password.as_ref().map(|_| "[REDACTED]"),
            )
            .field("allowed_origins", &self.allowed_origins)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("ws_max_connections", &self.ws_max_connections)
            .field("ws_max_per_ip", &self.ws_max_per_ip)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("metrics_bind", &self.metrics_bind)
            .field("session_ttl", &self.session_ttl)
            .field("public_url", &self.public_url)
            .field("cookie_secure", &self.cookie_secure)
            .finish()
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`); a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The validated HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub host: IpAddr,
    pub port: u16,
    pub api_key: Option<SecretString>,
    pub task_data_password: Option<SecretString>,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub ws_max_connections: u32,
    pub ws_max_per_ip: u32,
    /// Connections served at once (each is a file descriptor).
    pub max_connections: u32,
    /// Time a connection has to send a request's headers, from its opening or its
    /// previous answer (keep-alive idle time included).
    pub header_timeout: Duration,
    pub metrics_bind: Option<SocketAddr>,
    pub session_ttl: Duration,
    pub public_url: Option<String>,
    /// Secure cookies and HSTS.
    pub https: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpSettings::default()
            .resolve()
            .expect("the default HTTP settings are valid")
    }
}

impl HttpConfig {
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

fn invalid(key: &'static str, message: String) -> InvalidSetting {
    InvalidSetting::new(key, message)
}

impl HttpSettings {
    /// `self` wins over `lower` field by field.
    pub fn over(self, lower: HttpSettings) -> HttpSettings {
        HttpSettings {
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            api_key: self.api_key.or(lower.api_key),
            task_data_password: self.task_data_password.or(lower.task_data_password),
            allowed_origins: self.allowed_origins.or(lower.allowed_origins),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            ws_max_connections: self.ws_max_connections.or(lower.ws_max_connections),
            ws_max_per_ip: self.ws_max_per_ip.or(lower.ws_max_per_ip),
            max_connections: self.max_connections.or(lower.max_connections),
            header_timeout: self.header_timeout.or(lower.header_timeout),
            metrics_bind: self.metrics_bind.or(lower.metrics_bind),
            session_ttl: self.session_ttl.or(lower.session_ttl),
            public_url: self.public_url.or(lower.public_url),
            cookie_secure: self.cookie_secure.or(lower.cookie_secure),
        }
    }

    pub fn resolve(self) -> Result<HttpConfig, InvalidSetting> {
        let host = match self.host.as_deref().map(str::trim) {
            None | Some("") => IpAddr::from([127, 0, 0, 1]),
            Some("localhost") => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h.trim_matches(['[', ']']).parse().map_err(|_| {
                invalid(
                    "HOST",
                    format!("{h:?} is not an IP address (use 127.0.0.1, ::1 or 0.0.0.0)"),
                )
            })?,
        };
        let api_key = match self.api_key {
            Some(k) if k.trim().is_empty() => None,
            Some(k) if k.chars().count() < 16 || k.chars().any(char::is_whitespace) => {
                return Err(invalid(
                    "API_KEY",
                    "must be at least 16 characters without spaces (e.g. `openssl rand -hex 32`)"
                        .into(),
                ))
            }
            k => k.map(SecretString::from),
        };
        let task_data_password = match self.task_data_password {
            Some(p) if p.is_empty() => None,
            Some(p) if p.chars().count() < super::auth::MIN_PASSWORD_CHARS => {
                return Err(invalid(
                    "TASK_DATA_PASSWORD",
                    format!(
                        "must be at least {} characters",
                        super::auth::MIN_PASSWORD_CHARS
                    ),
                ))
            }
            p => p.map(SecretString::from),
        };
        let allowed_origins = list(self.allowed_origins.as_deref())
            .map(|o| {
                let o = o.trim_end_matches('/');
                let ok = (o.starts_with("http://") || o.starts_with("https://"))
                    && !o["https://".len().min(o.len())..].contains('/');
                if ok {
                    Ok(o.to_owned())
                } else {
                    Err(invalid(
                        "ALLOWED_ORIGINS",
                        format!("{o:?} is not an origin like https://dash.example.org"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trusted_proxies = list(self.trusted_proxies.as_deref())
            .map(|p| {
                IpNet::parse(p).ok_or_else(|| {
                    invalid(
                        "TRUSTED_PROXIES",
                        format!("{p:?} is not an IP address or CIDR like 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ws_max_connections = self.ws_max_connections.unwrap_or(64);
        if ws_max_connections == 0 {
            return Err(invalid("WS_MAX_CONNECTIONS", "must be at least 1".into()));
        }
        let ws_max_per_ip = self.ws_max_per_ip.unwrap_or(8);
        if ws_max_per_ip == 0 {
            return Err(invalid("WS_MAX_PER_IP", "must be at least 1".into()));
        }
        let max_connections = self.max_connections.unwrap_or(512);
        if max_connections == 0 {
            return Err(invalid("HTTP_MAX_CONNECTIONS", "must be at least 1".into()));
        }
        let header_timeout = match self.header_timeout.as_deref() {
            None => Duration::from_secs(30),
            Some(s) => parse_duration(s)
                .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(600))
                .ok_or_else(|| {
                    invalid(
                        "HTTP_HEADER_TIMEOUT",
                        format!("{s:?} is not a duration from 1s to 10m like 30s or 2m"),
                    )
                })?,
        };
        let metrics_bind = match self.metrics_bind.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "METRICS_BIND",
                    format!("{a:?} is not an address:port like 127.0.0.1:9464"),
                )
            })?),
        };
        let session_ttl = match self.session_ttl.as_deref() {
            None => Duration::from_secs(12 * 3600),
            Some(s) => parse_duration(s)
                .filter(|d| {
                    *d >= Duration::from_secs(60) && *d <= Duration::from_secs(366 * 86_400)
                })
                .ok_or_else(|| {
                    invalid(
                        "SESSION_TTL",
                        format!("{s:?} is not a duration from 1m to 366d like 30m, 12h or 7d"),
                    )
                })?,
        };
        let public_url = self
            .public_url
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        if let Some(u) = &public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(
                    "PUBLIC_URL",
                    format!("{u:?} must start with http:// or https://"),
                ));
            }
        }
        let https = self.cookie_secure.unwrap_or_else(|| {
            public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        });
        Ok(HttpConfig {
            host,
            port: self.port.unwrap_or(8090),
            api_key,
            task_data_password,
            allowed_origins,
            trusted_proxies,
            ws_max_connections,
            ws_max_per_ip,
            max_connections,
            header_timeout,
            metrics_bind,
            session_ttl,
            public_url,
            https,
        })
    }
}

fn list(s: Option<&str>) -> impl Iterator<Item = &str> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// `90s`, `30m`, `12h`, `7d`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The `[http]` section of the example config file.
pub const EXAMPLE_SECTION: &str = r#"
[http]
# Address and port of the HTTP API [HOST, PORT]. Keep 127.0.0.1 unless a reverse proxy
# or the operator needs it elsewhere: 0.0.0.0 exposes the monitor to the network.
host = "127.0.0.1"
port = 8090

# API key with full access for scripts [API_KEY]; named keys: `truebit-monitor api-key create`.
# api_key = "use `openssl rand -hex 32`"

# Operator password [TASK_DATA_PASSWORD]; unset: generated on first start and printed once
# (`truebit-monitor password reset` sets a new one).
# task_data_password = "..."

# Browser origins allowed to call the API (CORS), comma-separated [ALLOWED_ORIGINS]
# allowed_origins = "https://dash.example.org"

# Proxies whose X-Forwarded-For is believed, comma-separated IPs/CIDRs [TRUSTED_PROXIES]
# trusted_proxies = "127.0.0.1, 10.0.0.0/8"

# Live stream limits [WS_MAX_CONNECTIONS, WS_MAX_PER_IP]
ws_max_connections = 64
ws_max_per_ip = 8

# Connections served at once, and the time a connection has to send a request's
# headers (also the keep-alive idle time) [HTTP_MAX_CONNECTIONS, HTTP_HEADER_TIMEOUT]
max_connections = 512
header_timeout = "30s"

# Serve /metrics without a key on a separate address [METRICS_BIND]
# metrics_bind = "127.0.0.1:9464"

# Login session lifetime [SESSION_TTL]
session_ttl = "12h"

# How operators reach the monitor; https:// turns on Secure cookies and HSTS [PUBLIC_URL]
# public_url = "https://monitor.example.org"
# cookie_secure = true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_loopback_on_8090_without_secrets() {
        let c = HttpSettings::default().resolve().expect("valid");
        assert_eq!(c.bind_addr(), "127.0.0.1:8090".parse().expect("addr"));
        assert!(c.api_key.is_none());
        assert_eq!(c.session_ttl, Duration::from_secs(12 * 3600));
        assert!(!c.https);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = HttpSettings {
            api_key: Some("0123456789abcdef-secret".into()),
            task_data_password: Some("hunter2hunter2".into()),
            ..Default::default()
        };
        let c = s.clone().resolve().expect("valid");
        for text in [format!("{s:?}"), format!("{c:?}")] {
            assert!(
                !text.contains("secret") && !text.contains("hunter2"),
                "{text}"
            );
            assert!(text.contains("[REDACTED]"), "{text}");
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: [(HttpSettings, &str); 6] = [
            (
                HttpSettings {
                    host: Some("example.org".into()),
                    ..Default::default()
                },
                "HOST",
            ),
            (
                HttpSettings {
                    api_key: Some("short".into()),
                    ..Default::default()
                },
                "API_KEY",
            ),
            (
                HttpSettings {
                    trusted_proxies: Some("10.0.0.0/99".into()),
                    ..Default::default()
                },
                "TRUSTED_PROXIES",
            ),
            (
                HttpSettings {
                    allowed_origins: Some("dash.example.org".into()),
                    ..Default::default()
                },
                "ALLOWED_ORIGINS",
            ),
            (
                HttpSettings {
                    session_ttl: Some("forever".into()),
                    ..Default::default()
                },
                "SESSION_TTL",
            ),
            (
                HttpSettings {
                    ws_max_per_ip: Some(0),
                    ..Default::default()
                },
                "WS_MAX_PER_IP",
            ),
        ];
        for (settings, key) in cases {
            let err = settings.resolve().expect_err(key);
            assert!(
                err.to_string().starts_with(&format!("invalid {key}")),
                "{err}"
            );
        }
    }

    #[test]
    fn cidrs_match_addresses_inside_them() {
        let net = IpNet::parse("10.1.0.0/16").expect("cidr");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        let one = IpNet::parse("127.0.0.1").expect("ip");
        assert!(one.contains("::ffff:127.0.0.1".parse().expect("mapped")));
        assert!(IpNet::parse("0.0.0.0/0")
            .expect("all")
            .contains("8.8.8.8".parse().expect("ip")));
        assert!(IpNet::parse("::1/129").is_none());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1w"), None);
    }

    #[test]
    fn the_example_file_with_its_http_section_resolves() {
        let text = format!("{}{EXAMPLE_SECTION}", crate::config::EXAMPLE_CONFIG);
        let settings: crate::config::Settings = toml::from_str(&text).expect("example parses");
        let c = settings.resolve().expect("example is valid");
        assert_eq!(c.http.port, 8090);
        assert_eq!(c.http.ws_max_per_ip, 8);
    }

    #[test]
    fn https_public_url_turns_on_secure_cookies() {
        let c = HttpSettings {
            public_url: Some("https://monitor.example.org/".into()),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        assert!(c.https);
        assert_eq!(c.public_url.as_deref(), Some("https://monitor.example.org"));
    }
}
