//! Configuration: defaults -> TOML file -> environment -> command-line flags.
//!
//! [`Settings`] holds the raw layers (every field optional; clap reads the environment
//! and the flags, serde reads the TOML file); [`Settings::resolve`] validates them into a
//! typed [`Config`], naming the key of anything invalid.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use crate::alerts::config::{AlertConfig, AlertSettings};
use crate::federation::config::{FederationConfig, FederationSettings};
use crate::http::config::{HttpConfig, HttpSettings};
use crate::setting::InvalidSetting;
use crate::source::docker::DEFAULT_DOCKER_HOST;

/// Every setting of the monitor. Each one can be given in the TOML file (`--config`),
/// as an environment variable, or as a flag; flags win over the environment, which wins
/// over the file.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Settings {
    /// SQLite database file (created if missing; its directory must exist).
    #[arg(
        long = "db",
        visible_alias = "db-path",
        env = "DB_PATH",
        value_name = "PATH",
        global = true
    )]
    pub db_path: Option<PathBuf>,

    /// Docker Engine API endpoint: unix:///path/docker.sock, tcp://host:port or http://host:port
    /// [default: unix:///var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST", value_name = "URL", global = true)]
    pub docker_host: Option<String>,

    /// Path of the Docker socket; overrides DOCKER_HOST when set.
    #[arg(long, env = "DOCKER_SOCKET_PATH", value_name = "PATH", global = true)]
    pub docker_socket_path: Option<PathBuf>,

    /// Exact name of the node's container [default: runner-node].
    #[arg(long, env = "CONTAINER_NAME", value_name = "NAME", global = true)]
    pub container_name: Option<String>,

    /// Tail this log file instead of reading the container through Docker.
    #[arg(long, env = "LOG_FILE", value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,

    /// Days of raw log entries to keep; 0 keeps them forever [default: 30].
    #[arg(long, env = "LOG_RETENTION_DAYS", value_name = "DAYS", global = true)]
    pub log_retention_days: Option<u32>,

    /// Days of tasks and invoices to keep; 0 keeps them forever [default: 0].
    #[arg(long, env = "TASK_RETENTION_DAYS", value_name = "DAYS", global = true)]
    pub task_retention_days: Option<u32>,

    /// Offset of the node's wall clock from UTC, e.g. +02:00 [default: +00:00].
    #[arg(
        long,
        env = "NODE_UTC_OFFSET",
        value_name = "±HH:MM",
        global = true,
        allow_hyphen_values = true
    )]
    pub node_utc_offset: Option<String>,

    /// Log filter for the monitor's own output (tracing syntax) [default: info].
    #[arg(long, env = "LOG_LEVEL", value_name = "FILTER", global = true)]
    pub log_level: Option<String>,

    /// The HTTP server (`[http]` in the file; flat names in the environment).
    #[command(flatten)]
    #[serde(default)]
    pub http: HttpSettings,

    /// Opt-in federation (`[federation]` in the file; `FEDERATION_*` in the environment).
    #[command(flatten)]
    #[serde(default)]
    pub federation: FederationSettings,

    /// Alert channels and delivery (`[alert]` in the file; `ALERT_*` in the environment).
    #[command(flatten)]
    #[serde(default)]
    pub alert: AlertSettings,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub db_path: PathBuf,
    pub docker_host: String,
    pub container_name: String,
    pub log_file: Option<PathBuf>,
    pub log_retention_days: Option<u32>,
    pub task_retention_days: Option<u32>,
    pub node_utc_offset_secs: i32,
    pub log_level: String,
    pub http: HttpConfig,
    pub federation: FederationConfig,
    pub alert: AlertConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
}

impl Settings {
    /// Reads a TOML file of settings (keys as in `--print-example-config`).
    pub fn from_file(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }

    /// `self` wins over `lower` field by field.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            db_path: self.db_path.or(lower.db_path),
            docker_host: self.docker_host.or(lower.docker_host),
            docker_socket_path: self.docker_socket_path.or(lower.docker_socket_path),
            container_name: self.container_name.or(lower.container_name),
            log_file: self.log_file.or(lower.log_file),
            log_retention_days: self.log_retention_days.or(lower.log_retention_days),
            task_retention_days: self.task_retention_days.or(lower.task_retention_days),
            node_utc_offset: self.node_utc_offset.or(lower.node_utc_offset),
            log_level: self.log_level.or(lower.log_level),
            http: self.http.over(lower.http),
            federation: self.federation.over(lower.federation),
            alert: self.alert.over(lower.alert),
        }
    }

    pub fn resolve(self) -> Result<Config, ConfigError> {
        let docker_host = match (self.docker_socket_path, self.docker_host) {
            (Some(path), _) => format!("unix://{}", path.display()),
            (None, Some(host)) if !host.trim().is_empty() => host.trim().to_owned(),
            _ => DEFAULT_DOCKER_HOST.to_owned(),
        };
        let container_name = self.container_name.unwrap_or_else(|| "runner-node".into());
        if container_name.is_empty()
            || !container_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(InvalidSetting::new(
                "CONTAINER_NAME",
                format!(
                    "{container_name:?} is not a Docker container name (letters, digits, _ . -)"
                ),
            )
            .into());
        }
        let node_utc_offset_secs = match self.node_utc_offset.as_deref() {
            None => 0,
            Some(s) => parse_utc_offset(s).ok_or_else(|| {
                InvalidSetting::new(
                    "NODE_UTC_OFFSET",
                    format!("{s:?} is not an offset like +02:00, -05:30 or Z"),
                )
            })?,
        };
        let days = |v: Option<u32>, default: u32| match v.unwrap_or(default) {
            0 => None,
            d => Some(d),
        };
        Ok(Config {
            db_path: self
                .db_path
                .unwrap_or_else(|| PathBuf::from("truebit-monitor.db")),
            docker_host,
            container_name,
            log_file: self.log_file,
            log_retention_days: days(self.log_retention_days, 30),
            task_retention_days: days(self.task_retention_days, 0),
            node_utc_offset_secs,
            log_level: self.log_level.unwrap_or_else(|| "info".into()),
            http: self.http.resolve()?,
            federation: self.federation.resolve()?,
            alert: self.alert.resolve()?,
        })
    }
}

/// `+02:00`, `-0530`, `Z`, `UTC` -> seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// A commented example of the TOML config file.
pub const EXAMPLE_CONFIG: &str = r#"# truebit-monitor configuration (TOML). Every key is optional; environment
# variables (in brackets; also as TBM_NAME, which wins) and command-line flags
# override what is set here. The systemd unit sets DOCKER_HOST: edit it there.

# SQLite database file [DB_PATH]
db_path = "/var/lib/truebit-monitor/monitor.db"

# Docker Engine API endpoint [DOCKER_HOST]; DOCKER_SOCKET_PATH overrides it.
docker_host = "unix:///var/run/docker.sock"
# docker_socket_path = "/var/run/docker.sock"

# Exact name of the node container [CONTAINER_NAME]
container_name = "runner-node"

# Tail a log file instead of Docker [LOG_FILE]
# log_file = "/var/log/truebit/runner-node.log"

# Days of raw log entries to keep, 0 = forever [LOG_RETENTION_DAYS]
log_retention_days = 30

# Days of tasks and invoices to keep, 0 = forever [TASK_RETENTION_DAYS]
task_retention_days = 0

# The node's wall clock offset from UTC [NODE_UTC_OFFSET]
node_utc_offset = "+00:00"

# Filter for the monitor's own log output [LOG_LEVEL]
log_level = "info"

# Opt-in federation (docs/FEDERATION.md). Off by default: while it is off the monitor
# opens no connection to these servers.
[federation]
# Servers, comma separated: nats://, tls://, ws://, wss:// [FEDERATION_NATS_URL]
# nats_url = "tls://federation.example.org:4222"
# One of: user + password [FEDERATION_NATS_USER, FEDERATION_NATS_PASSWORD],
# token [FEDERATION_NATS_TOKEN], credentials file [FEDERATION_NATS_CREDS]
# nats_creds = "/etc/truebit-monitor/federation.creds"
# CA of the server's TLS certificate, PEM [FEDERATION_NATS_CA]
# nats_ca = "/etc/truebit-monitor/federation-ca.pem"
# The aggregator's Ed25519 public key, 64 hex digits [FEDERATION_AGGREGATOR_KEY]
# aggregator_key = "..."
# Or, for a replicated hub, its replicas' keys, comma separated, and how many must
# sign the statistics [FEDERATION_AGGREGATOR_KEYS, FEDERATION_AGGREGATOR_THRESHOLD]
# aggregator_keys = "...,...,..."
# aggregator_threshold = 2
# Initial defaults, until changed in the dashboard or the API (the stored choice then
# wins) [FEDERATION_ENABLED, FEDERATION_LEVEL, FEDERATION_CONTINENT]
enabled = false
level = "full"
# continent = "EU"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_complete() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.docker_host, "unix:///var/run/docker.sock");
        assert_eq!(c.container_name, "runner-node");
        assert_eq!(c.log_retention_days, Some(30));
        assert_eq!(c.task_retention_days, None);
        assert_eq!(c.node_utc_offset_secs, 0);
    }

    #[test]
    fn socket_path_overrides_docker_host() {
        let s = Settings {
            docker_host: Some("tcp://127.0.0.1:2375".into()),
            docker_socket_path: Some("/tmp/d.sock".into()),
            ..Default::default()
        };
        assert_eq!(
            s.resolve().expect("valid").docker_host,
            "unix:///tmp/d.sock"
        );
    }

    #[test]
    fn flags_win_over_file() {
        let file = Settings {
            container_name: Some("from-file".into()),
            log_retention_days: Some(7),
            ..Default::default()
        };
        let cli = Settings {
            container_name: Some("from-cli".into()),
            ..Default::default()
        };
        let c = cli.over(file).resolve().expect("valid");
        assert_eq!(c.container_name, "from-cli");
        assert_eq!(c.log_retention_days, Some(7));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let err = Settings {
            node_utc_offset: Some("2 hours".into()),
            ..Default::default()
        }
        .resolve()
        .expect_err("bad");
        assert!(
            err.to_string().starts_with("invalid NODE_UTC_OFFSET"),
            "{err}"
        );
        let err = Settings {
            container_name: Some("a b".into()),
            ..Default::default()
        }
        .resolve()
        .expect_err("bad");
        assert!(
            err.to_string().starts_with("invalid CONTAINER_NAME"),
            "{err}"
        );
    }

    #[test]
    fn utc_offsets_parse() {
        assert_eq!(parse_utc_offset("+02:00"), Some(7200));
        assert_eq!(parse_utc_offset("-0530"), Some(-19800));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        assert_eq!(parse_utc_offset("+25:00"), None);
        assert_eq!(parse_utc_offset("0200"), None);
    }

    #[test]
    fn example_config_parses_and_resolves() {
        let s: Settings = toml::from_str(EXAMPLE_CONFIG).expect("example parses");
        let c = s.resolve().expect("example is valid");
        assert_eq!(
            c.db_path,
            PathBuf::from("/var/lib/truebit-monitor/monitor.db")
        );
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let err = toml::from_str::<Settings>("nope = 1").expect_err("unknown key");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
