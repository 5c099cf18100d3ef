//! Configuration: defaults -> TOML file (`--config`) -> environment -> command line.
//!
//! [`Settings`] is the raw layer (every field optional, the same names in the file,
//! the environment and the flags); [`Settings::validate`] turns the merged layers into
//! a typed [`Config`], and a validation error names the key. Secrets are redacted in
//! `Debug` and never logged.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use truebit_nats_auth::{AuthKeys, AuthSettings};
pub use truebit_nats_auth::{NatsAuth, SecretString};

use truebit_protocol::certificate::{KeySet, KeySetError};
use truebit_protocol::identity::PublicKey;

use crate::gate::Limits;

pub const DEFAULT_PORT: u16 = 8091;
pub const DEFAULT_DB_PATH: &str = "aggregator.db";
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_STATS_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_CONSUMER: &str = "truebit-aggregator";

/// The settings the NATS login is read from, named in errors.
const AUTH_KEYS: AuthKeys = AuthKeys {
    user: "AGGREGATOR_NATS_USER",
    password: "AGGREGATOR_NATS_PASSWORD",
    token: "AGGREGATOR_NATS_TOKEN",
    creds: "AGGREGATOR_NATS_CREDS",
};

/// The raw settings of one layer. Field names are the TOML keys; `env` names the
/// environment variable.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// NATS server URL(s), comma separated (nats://, tls://, ws://, wss://)
    #[arg(long, global = true, env = "AGGREGATOR_NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS user (with AGGREGATOR_NATS_PASSWORD)
    #[arg(long, global = true, env = "AGGREGATOR_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password
    #[arg(
        long,
        global = true,
        env = "AGGREGATOR_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub nats_password: Option<SecretString>,
    /// NATS token (instead of user and password)
    #[arg(
        long,
        global = true,
        env = "AGGREGATOR_NATS_TOKEN",
        hide_env_values = true
    )]
    pub nats_token: Option<SecretString>,
    /// NATS credentials file (instead of user and password)
    #[arg(long, global = true, env = "AGGREGATOR_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Extra root certificate(s) for the NATS server's TLS certificate (PEM)
    #[arg(long, global = true, env = "AGGREGATOR_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// SQLite database file [default: aggregator.db]
    #[arg(long = "db", global = true, env = "DB_PATH")]
    pub db_path: Option<PathBuf>,
    /// Address of the HTTP server [default: 127.0.0.1]
    #[arg(long, global = true, env = "HOST")]
    pub host: Option<IpAddr>,
    /// Port of the HTTP server [default: 8091]
    #[arg(long, global = true, env = "PORT")]
    pub port: Option<u16>,
    /// The aggregator's Ed25519 signing key (created on first start) [default: next to the database, aggregator.key]
    #[arg(long = "key", global = true, env = "KEY_PATH")]
    pub key_path: Option<PathBuf>,
    /// The noise secret of published figures (created on first start; replicas share it) [default: next to the database, aggregator.noise]
    #[arg(long = "noise-secret", global = true, env = "NOISE_SECRET_PATH")]
    pub noise_secret_path: Option<PathBuf>,
    /// Days of reports kept [default: 30]
    #[arg(long, global = true, env = "RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Anonymity threshold of published figures [default: 5]
    #[arg(long = "k", global = true, env = "K_ANONYMITY")]
    pub k_anonymity: Option<u32>,
    /// Oldest report accepted, hours after its window closed [default: 168]
    #[arg(long, global = true, env = "MAX_REPORT_AGE_HOURS")]
    pub max_report_age_hours: Option<u64>,
    /// Clock skew allowed for reports of a window that has not closed yet [default: 30]
    #[arg(long, global = true, env = "MAX_CLOCK_SKEW_SECS")]
    pub max_clock_skew_secs: Option<u64>,
    /// Reports one node may deliver per hour [default: 2100]
    #[arg(long, global = true, env = "NODE_REPORTS_PER_HOUR")]
    pub node_reports_per_hour: Option<u32>,
    /// Reports the whole network may deliver per second [default: 50000]
    #[arg(long, global = true, env = "GLOBAL_REPORTS_PER_SEC")]
    pub global_reports_per_sec: Option<u32>,
    /// New node ids accepted per hour [default: 10000]
    #[arg(long, global = true, env = "NEW_NODES_PER_HOUR")]
    pub new_nodes_per_hour: Option<u32>,
    /// Seconds between published statistics [default: 30]
    #[arg(long, global = true, env = "STATS_INTERVAL_SECS")]
    pub stats_interval_secs: Option<u64>,
    /// Name of the durable JetStream consumer [default: truebit-aggregator]
    #[arg(long, global = true, env = "AGGREGATOR_CONSUMER")]
    pub consumer: Option<String>,
    /// Seconds before JetStream redelivers an unacknowledged report [default: 30]
    #[arg(long, global = true, env = "ACK_WAIT_SECS")]
    pub ack_wait_secs: Option<u64>,
    /// MiB of reports the stream made by --create-stream keeps at most (the server's
    /// JetStream storage must have room for it) [default: 4096]
    #[arg(long, global = true, env = "STREAM_MAX_MIB")]
    pub stream_max_mib: Option<u64>,
    /// Copies of the report stream --create-stream makes: 3 on a 3-server NATS cluster,
    /// 1 on a single server [default: 1]
    #[arg(long, global = true, env = "STREAM_REPLICAS")]
    pub stream_replicas: Option<usize>,
    /// This replica's name, shown with its signature and in disagreements; also the
    /// default durable consumer name [default: truebit-aggregator]
    #[arg(long, global = true, env = "AGGREGATOR_REPLICA")]
    pub replica: Option<String>,
    /// Public keys of every replica of the hub (this one's included), comma separated:
    /// statistics are certified when AGGREGATOR_THRESHOLD of them signed the same bytes
    /// [default: this replica's key alone]
    #[arg(long, global = true, env = "AGGREGATOR_KEYS")]
    pub keys: Option<String>,
    /// How many of AGGREGATOR_KEYS must sign [default: a majority]
    #[arg(long, global = true, env = "AGGREGATOR_THRESHOLD")]
    pub threshold: Option<usize>,
}

impl Settings {
    /// `self` over `lower`: a field set here wins.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            nats_url: self.nats_url.or(lower.nats_url),
            nats_user: self.nats_user.or(lower.nats_user),
            nats_password: self.nats_password.or(lower.nats_password),
            nats_token: self.nats_token.or(lower.nats_token),
            nats_creds: self.nats_creds.or(lower.nats_creds),
            nats_ca: self.nats_ca.or(lower.nats_ca),
            db_path: self.db_path.or(lower.db_path),
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            key_path: self.key_path.or(lower.key_path),
            noise_secret_path: self.noise_secret_path.or(lower.noise_secret_path),
            retention_days: self.retention_days.or(lower.retention_days),
            k_anonymity: self.k_anonymity.or(lower.k_anonymity),
            max_report_age_hours: self.max_report_age_hours.or(lower.max_report_age_hours),
            max_clock_skew_secs: self.max_clock_skew_secs.or(lower.max_clock_skew_secs),
            node_reports_per_hour: self.node_reports_per_hour.or(lower.node_reports_per_hour),
            global_reports_per_sec: self.global_reports_per_sec.or(lower.global_reports_per_sec),
            new_nodes_per_hour: self.new_nodes_per_hour.or(lower.new_nodes_per_hour),
            stats_interval_secs: self.stats_interval_secs.or(lower.stats_interval_secs),
            consumer: self.consumer.or(lower.consumer),
            ack_wait_secs: self.ack_wait_secs.or(lower.ack_wait_secs),
            stream_max_mib: self.stream_max_mib.or(lower.stream_max_mib),
            stream_replicas: self.stream_replicas.or(lower.stream_replicas),
            replica: self.replica.or(lower.replica),
            keys: self.keys.or(lower.keys),
            threshold: self.threshold.or(lower.threshold),
        }
    }

    /// Reads a TOML file of settings.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            problem: e.message().to_owned(),
        })
    }

    /// The hub key set an uptime proof is checked against (`verify-proof`):
    /// `AGGREGATOR_KEYS` with `AGGREGATOR_THRESHOLD` (default: a majority), else this
    /// aggregator's own key alone when its key file exists (1 of 1). Never creates a key.
    pub fn pinned_key_set(&self) -> Result<KeySet, ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };
        let keys = parse_keys(self.keys.as_deref())?;
        if keys.is_empty() {
            let path = self.key_path.clone().unwrap_or_else(|| {
                self.db_path
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_DB_PATH))
                    .with_file_name("aggregator.key")
            });
            if !path.exists() {
                return Err(invalid(
                    "AGGREGATOR_KEYS",
                    "no hub keys to verify against: pass --keys K1,K2,... (and --threshold M), or run where the aggregator's configuration or key is".into(),
                ));
            }
            let key = crate::key::AggregatorKey::load_or_create(&path)
                .map_err(|e| invalid("KEY_PATH", e.to_string()))?;
            return KeySet::single(key.public()).map_err(|e| invalid("KEY_PATH", e.to_string()));
        }
        let threshold = self.threshold.unwrap_or(KeySet::majority(keys.len()));
        KeySet::new(keys, threshold).map_err(|e| match e {
            KeySetError::Threshold { .. } => invalid("AGGREGATOR_THRESHOLD", e.to_string()),
            _ => invalid("AGGREGATOR_KEYS", e.to_string()),
        })
    }

    /// Validates the merged settings.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let invalid = |key: &'static str, problem: &str| ConfigError::Invalid {
            key,
            problem: problem.to_owned(),
        };
        let urls: Vec<String> = self
            .nats_url
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(invalid(
                "AGGREGATOR_NATS_URL",
                "is required (the NATS server the monitors publish to, e.g. tls://hub.example.org:4222)",
            ));
        }
        for url in &urls {
            if truebit_nats_auth::check_server_url(url).is_err() {
                return Err(invalid(
                    "AGGREGATOR_NATS_URL",
                    "must use nats://, tls://, ws:// or wss://",
                ));
            }
        }
        let auth = AuthSettings {
            user: self.nats_user,
            password: self.nats_password,
            token: self.nats_token,
            creds: self.nats_creds,
        }
        .resolve(&AUTH_KEYS)
        .map_err(|e| ConfigError::Invalid {
            key: e.key,
            problem: e.message,
        })?;
        let db_path = self
            .db_path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH));
        let key_path = self.key_path.unwrap_or_else(|| {
            db_path
                .parent()
                .unwrap_or(Path::new(""))
                .join("aggregator.key")
        });
        let noise_secret_path = self.noise_secret_path.unwrap_or_else(|| {
            db_path
                .parent()
                .unwrap_or(Path::new(""))
                .join("aggregator.noise")
        });
        let retention_days = self.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if !(1..=3_650).contains(&retention_days) {
            return Err(invalid("RETENTION_DAYS", "must be between 1 and 3650"));
        }
        let k = self
            .k_anonymity
            .unwrap_or(truebit_protocol::stats::DEFAULT_K);
        if !(2..=1_000).contains(&k) {
            return Err(invalid("K_ANONYMITY", "must be between 2 and 1000"));
        }
        let defaults = Limits::default();
        let max_age_secs = self
            .max_report_age_hours
            .map_or(defaults.max_age_secs, |h| h.saturating_mul(3_600));
        if max_age_secs == 0 || max_age_secs > u64::from(retention_days) * 86_400 {
            return Err(invalid(
                "MAX_REPORT_AGE_HOURS",
                "must be at least 1 and within RETENTION_DAYS",
            ));
        }
        let max_skew_secs = self.max_clock_skew_secs.unwrap_or(defaults.max_skew_secs);
        if max_skew_secs > 300 {
            return Err(invalid("MAX_CLOCK_SKEW_SECS", "must be at most 300"));
        }
        let positive = |v: Option<u32>, d: u32, key: &'static str| match v.unwrap_or(d) {
            0 => Err(invalid(key, "must be at least 1")),
            n => Ok(n),
        };
        let limits = Limits {
            max_age_secs,
            max_skew_secs,
            node_per_hour: positive(
                self.node_reports_per_hour,
                defaults.node_per_hour,
                "NODE_REPORTS_PER_HOUR",
            )?,
            global_per_sec: positive(
                self.global_reports_per_sec,
                defaults.global_per_sec,
                "GLOBAL_REPORTS_PER_SEC",
            )?,
            new_nodes_per_hour: positive(
                self.new_nodes_per_hour,
                defaults.new_nodes_per_hour,
                "NEW_NODES_PER_HOUR",
            )?,
        };
        let stats_interval = self
            .stats_interval_secs
            .unwrap_or(DEFAULT_STATS_INTERVAL_SECS);
        if !(1..=300).contains(&stats_interval) {
            return Err(invalid("STATS_INTERVAL_SECS", "must be between 1 and 300"));
        }
        let replica = self.replica.unwrap_or_else(|| DEFAULT_CONSUMER.to_owned());
        if !truebit_protocol::certificate::is_replica_name(&replica) {
            return Err(invalid(
                "AGGREGATOR_REPLICA",
                "must be 1 to 64 letters, digits, - and _",
            ));
        }
        let consumer = self.consumer.unwrap_or_else(|| replica.clone());
        if consumer.is_empty()
            || !consumer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "AGGREGATOR_CONSUMER",
                "must be letters, digits, - and _ only",
            ));
        }
        let ack_wait = self.ack_wait_secs.unwrap_or(30);
        if !(1..=3_600).contains(&ack_wait) {
            return Err(invalid("ACK_WAIT_SECS", "must be between 1 and 3600"));
        }
        let stream_max_mib = self.stream_max_mib.unwrap_or(DEFAULT_STREAM_MAX_MIB);
        if !(16..=1_048_576).contains(&stream_max_mib) {
            return Err(invalid(
                "STREAM_MAX_MIB",
                "must be between 16 and 1048576 (1 TiB)",
            ));
        }
        let stream_replicas = self.stream_replicas.unwrap_or(1);
        if !(1..=5).contains(&stream_replicas) {
            return Err(invalid(
                "STREAM_REPLICAS",
                "must be between 1 and 5 (3 on a 3-server cluster)",
            ));
        }
        let keys = parse_keys(self.keys.as_deref())?;
        if keys.is_empty() && self.threshold.is_some_and(|t| t != 1) {
            return Err(invalid(
                "AGGREGATOR_THRESHOLD",
                "needs AGGREGATOR_KEYS (a single aggregator signs alone: 1)",
            ));
        }
        if !keys.is_empty() {
            let threshold = self.threshold.unwrap_or(KeySet::majority(keys.len()));
            KeySet::new(keys.clone(), threshold).map_err(|e| match e {
                KeySetError::Threshold { .. } => invalid("AGGREGATOR_THRESHOLD", &e.to_string()),
                _ => invalid("AGGREGATOR_KEYS", &e.to_string()),
            })?;
        }
        let threshold = self
            .threshold
            .unwrap_or(KeySet::majority(keys.len().max(1)));
        Ok(Config {
            replica,
            keys,
            threshold,
            stream_replicas,
            nats: NatsConfig {
                urls,
                auth,
                ca_file: self.nats_ca,
            },
            db_path,
            listen: SocketAddr::new(
                self.host.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                self.port.unwrap_or(DEFAULT_PORT),
            ),
            key_path,
            noise_secret_path,
            retention_days,
            k,
            limits,
            stats_interval: Duration::from_secs(stats_interval),
            consumer,
            ack_wait: Duration::from_secs(ack_wait),
            create_stream: false,
            stream_max_bytes: stream_max_mib * 1024 * 1024,
        })
    }
}

/// `AGGREGATOR_KEYS`: Ed25519 public keys, comma separated (empty: none).
fn parse_keys(list: Option<&str>) -> Result<Vec<PublicKey>, ConfigError> {
    match list.map(str::trim) {
        None | Some("") => Ok(Vec::new()),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| {
                k.parse::<PublicKey>().map_err(|_| ConfigError::Invalid {
                    key: "AGGREGATOR_KEYS",
                    problem: "expected Ed25519 public keys as 64 lowercase hex digits, comma separated (`truebit-aggregator key` prints one)".into(),
                })
            })
            .collect(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("configuration file {path}: {problem}")]
    File { path: String, problem: String },
}

#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub urls: Vec<String>,
    pub auth: NatsAuth,
    pub ca_file: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's name (`AGGREGATOR_REPLICA`).
    pub replica: String,
    /// Every replica's public key (`AGGREGATOR_KEYS`); empty: this replica's alone.
    pub keys: Vec<PublicKey>,
    /// How many of `keys` must sign (`AGGREGATOR_THRESHOLD`).
    pub threshold: usize,
    /// Copies of the stream `--create-stream` makes (`STREAM_REPLICAS`).
    pub stream_replicas: usize,
    pub nats: NatsConfig,
    pub db_path: PathBuf,
    pub listen: SocketAddr,
    pub key_path: PathBuf,
    /// The secret the noise of published figures is drawn from (docs/PRIVACY.md).
    pub noise_secret_path: PathBuf,
    pub retention_days: u32,
    pub k: u32,
    pub limits: Limits,
    pub stats_interval: Duration,
    pub consumer: String,
    pub ack_wait: Duration,
    /// Create the report stream at start (`--create-stream`).
    pub create_stream: bool,
    /// The size limit of that stream, bytes.
    pub stream_max_bytes: u64,
}

/// Default size limit of the stream `--create-stream` makes (4 GiB: a week of a large
/// network's reports).
pub const DEFAULT_STREAM_MAX_MIB: u64 = 4096;

/// A commented example configuration file (`--print-example-config`).
pub const EXAMPLE_CONFIG: &str = r#"# truebit-aggregator configuration (TOML). Every key is optional here; the
# environment variable in brackets overrides it, and a command-line flag overrides both.

# NATS server(s) the monitors publish to, comma separated [AGGREGATOR_NATS_URL] (required)
nats_url = "tls://hub.example.org:4222"
# Log in as the aggregator user of deploy/nats-server.conf [AGGREGATOR_NATS_USER]
nats_user = "aggregator"
# Better in the environment than here [AGGREGATOR_NATS_PASSWORD]
# nats_password = "..."
# Or a token [AGGREGATOR_NATS_TOKEN] or a credentials file [AGGREGATOR_NATS_CREDS]
# nats_creds = "/etc/truebit-aggregator/aggregator.creds"
# Extra CA for the server certificate (PEM) [AGGREGATOR_NATS_CA]
# nats_ca = "/etc/truebit-aggregator/hub-ca.pem"

# SQLite database [DB_PATH]
db_path = "aggregator.db"
# The aggregator's Ed25519 key, created on first start (default: aggregator.key next
# to the database) [KEY_PATH]
# key_path = "aggregator.key"
# The secret the noise of published figures is drawn from (32 random bytes, created on
# first start; default: aggregator.noise next to the database). Replicas that must
# publish identical statistics share this file. Never logged [NOISE_SECRET_PATH]
# noise_secret_path = "aggregator.noise"

# HTTP server: the statistics API and the public network page [HOST] [PORT]
host = "127.0.0.1"
port = 8091

# Days of reports kept [RETENTION_DAYS]
retention_days = 30
# Figures and cells fewer than k nodes contributed to are suppressed [K_ANONYMITY]
k_anonymity = 5
# Seconds between published statistics [STATS_INTERVAL_SECS]
stats_interval_secs = 30

# Reports are refused when their window closed more than this many hours ago
# [MAX_REPORT_AGE_HOURS], or has not closed yet beyond this skew [MAX_CLOCK_SKEW_SECS]
max_report_age_hours = 168
max_clock_skew_secs = 30
# Rate limits [NODE_REPORTS_PER_HOUR] [GLOBAL_REPORTS_PER_SEC] [NEW_NODES_PER_HOUR]
node_reports_per_hour = 2100
global_reports_per_sec = 50000
new_nodes_per_hour = 10000

# JetStream: the durable consumer's name [AGGREGATOR_CONSUMER] and the seconds before
# an unacknowledged report is delivered again [ACK_WAIT_SECS]
consumer = "truebit-aggregator"
ack_wait_secs = 30
# MiB the stream made by --create-stream keeps at most; the NATS server's JetStream
# storage must have room for it [STREAM_MAX_MIB]
stream_max_mib = 4096
# Copies of that stream: 3 on a 3-server NATS cluster (deploy/nats/) [STREAM_REPLICAS]
stream_replicas = 1

# A replicated hub (docs/FEDERATION.md, "A replicated hub"): this replica's name (also
# the default consumer name) [AGGREGATOR_REPLICA], every replica's public key, this
# one's included [AGGREGATOR_KEYS], and how many must sign the same statistics before
# they are published as certified [AGGREGATOR_THRESHOLD, default: a majority].
# replica = "aggregator-1"
# keys = "<key of aggregator-1>,<key of aggregator-2>,<key of aggregator-3>"
# threshold = 2
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_fill_what_no_layer_sets() {
        let c = base().validate().expect("valid");
        assert_eq!(c.listen, "127.0.0.1:8091".parse().expect("addr"));
        assert_eq!(c.db_path, PathBuf::from("aggregator.db"));
        assert_eq!(c.key_path, PathBuf::from("aggregator.key"));
        assert_eq!(c.noise_secret_path, PathBuf::from("aggregator.noise"));
        assert_eq!(c.retention_days, 30);
        assert_eq!(c.k, 5);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.stats_interval, Duration::from_secs(30));
        assert!(matches!(c.nats.auth, NatsAuth::None));
        assert_eq!(c.replica, "truebit-aggregator");
        assert_eq!(c.consumer, "truebit-aggregator");
        assert_eq!((c.keys.len(), c.threshold, c.stream_replicas), (0, 1, 1));
    }

    #[test]
    fn replica_keys_and_threshold_are_checked_and_the_threshold_defaults_to_a_majority() {
        let key = |seed: u8| {
            PublicKey::from(
                &truebit_protocol::sign::SigningKey::from_bytes(&[seed; 32]).verifying_key(),
            )
        };
        let keys = format!("{}, {},{}", key(1), key(2), key(3));
        let c = Settings {
            replica: Some("aggregator-2".into()),
            keys: Some(keys.clone()),
            stream_replicas: Some(3),
            ..base()
        }
        .validate()
        .expect("valid");
        assert_eq!(c.keys, vec![key(1), key(2), key(3)]);
        assert_eq!(c.threshold, 2);
        assert_eq!(c.consumer, "aggregator-2");
        assert_eq!(c.stream_replicas, 3);
        let err = |s: Settings| s.validate().expect_err("invalid").to_string();
        let e = err(Settings {
            keys: Some(keys.clone()),
            threshold: Some(4),
            ..base()
        });
        assert!(e.starts_with("AGGREGATOR_THRESHOLD:"), "{e}");
        let e = err(Settings {
            keys: Some(format!("{},{}", key(1), key(1))),
            ..base()
        });
        assert!(
            e.starts_with("AGGREGATOR_KEYS:") && e.contains("twice"),
            "{e}"
        );
        let e = err(Settings {
            keys: Some("abc".into()),
            ..base()
        });
        assert!(e.starts_with("AGGREGATOR_KEYS:"), "{e}");
        let e = err(Settings {
            replica: Some("a b".into()),
            ..base()
        });
        assert!(e.starts_with("AGGREGATOR_REPLICA:"), "{e}");
        let e = err(Settings {
            stream_replicas: Some(0),
            ..base()
        });
        assert!(e.starts_with("STREAM_REPLICAS:"), "{e}");
    }

    #[test]
    fn a_higher_layer_wins_field_by_field() {
        let file = Settings {
            port: Some(1),
            retention_days: Some(9),
            ..base()
        };
        let env = Settings {
            port: Some(2),
            ..Settings::default()
        };
        let c = env.over(file).validate().expect("valid");
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.retention_days, 9);
    }

    #[test]
    fn validation_errors_name_the_key() {
        let err = Settings::default().validate().expect_err("no url");
        assert!(err.to_string().starts_with("AGGREGATOR_NATS_URL:"), "{err}");
        let err = Settings {
            k_anonymity: Some(1),
            ..base()
        }
        .validate()
        .expect_err("k = 1");
        assert!(err.to_string().starts_with("K_ANONYMITY:"), "{err}");
        let err = Settings {
            nats_user: Some("aggregator".into()),
            ..base()
        }
        .validate()
        .expect_err("user without password");
        assert!(err.to_string().starts_with("AGGREGATOR_NATS_PASSWORD:"));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Settings {
            nats_user: Some("aggregator".into()),
            nats_password: Some(SecretString::from("hunter2-secret")),
            ..base()
        }
        .validate()
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let s: Settings = toml::from_str(EXAMPLE_CONFIG).expect("example parses");
        let s = Settings {
            nats_password: Some(SecretString::from("x")),
            ..s
        };
        let c = s.validate().expect("example validates");
        assert_eq!(c.nats.urls, vec!["tls://hub.example.org:4222".to_owned()]);
        assert!(toml::from_str::<Settings>("nats_urll = \"x\"").is_err());
    }
}
