//! Federation settings: the raw layer ([`FederationSettings`], flattened into
//! [`crate::config::Settings`]) and the validated [`FederationConfig`].
//!
//! The connection settings (server URLs, credentials, TLS CA, aggregator key) come from
//! the file, the environment and the flags only. `FEDERATION_ENABLED`,
//! `FEDERATION_LEVEL` and `FEDERATION_CONTINENT` are *initial defaults*: they apply until
//! the operator changes federation through the API or the dashboard for the first time;
//! from then on the choice stored in the database wins (see docs/FEDERATION.md).

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use truebit_protocol::certificate::{KeySet, KeySetError};
use truebit_protocol::identity::PublicKey;
use truebit_protocol::report::{Continent, Level};

use truebit_nats_auth::{check_server_url, redact_url, AuthKeys, AuthSettings, SecretString};

pub use truebit_nats_auth::NatsAuth;

use crate::setting::InvalidSetting;

/// The settings the NATS login is read from, named in errors.
const AUTH_KEYS: AuthKeys = AuthKeys {
    user: "FEDERATION_NATS_USER",
    password: "FEDERATION_NATS_PASSWORD",
    token: "FEDERATION_NATS_TOKEN",
    creds: "FEDERATION_NATS_CREDS",
};

/// Raw federation settings (every field optional). In the TOML file they live in a
/// `[federation]` table; in the environment they are the flat `FEDERATION_*` names.
#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FederationSettings {
    /// Federation NATS servers, comma separated: nats://, tls://, ws:// or wss:// URLs.
    /// Nothing connects to them unless federation is enabled.
    #[arg(
        long = "federation-nats-url",
        env = "FEDERATION_NATS_URL",
        value_name = "URLS",
        hide_env_values = true,
        global = true
    )]
    pub nats_url: Option<String>,

    /// NATS user name (with FEDERATION_NATS_PASSWORD).
    #[arg(
        long = "federation-nats-user",
        env = "FEDERATION_NATS_USER",
        value_name = "USER",
        global = true
    )]
    pub nats_user: Option<String>,

    /// NATS password.
    #[arg(
        long = "federation-nats-password",
        env = "FEDERATION_NATS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub nats_password: Option<String>,

    /// NATS token (instead of a user and password).
    #[arg(
        long = "federation-nats-token",
        env = "FEDERATION_NATS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub nats_token: Option<String>,

    /// NATS credentials file (JWT + NKey seed, `.creds`).
    #[arg(
        long = "federation-nats-creds",
        env = "FEDERATION_NATS_CREDS",
        value_name = "PATH",
        global = true
    )]
    pub nats_creds: Option<PathBuf>,

    /// PEM file of the CA that signed the NATS server's certificate (tls://, wss://).
    #[arg(
        long = "federation-nats-ca",
        env = "FEDERATION_NATS_CA",
        value_name = "PATH",
        global = true
    )]
    pub nats_ca: Option<PathBuf>,

    /// The aggregator's Ed25519 public key (64 hex digits): network statistics signed by
    /// any other key are rejected.
    #[arg(
        long = "federation-aggregator-key",
        env = "FEDERATION_AGGREGATOR_KEY",
        value_name = "HEX",
        global = true
    )]
    pub aggregator_key: Option<String>,

    /// A replicated hub's aggregator keys (64 hex digits each), comma separated: network
    /// statistics count only when FEDERATION_AGGREGATOR_THRESHOLD of them signed them
    /// (instead of FEDERATION_AGGREGATOR_KEY).
    #[arg(
        long = "federation-aggregator-keys",
        env = "FEDERATION_AGGREGATOR_KEYS",
        value_name = "HEX,HEX,...",
        global = true
    )]
    pub aggregator_keys: Option<String>,

    /// How many of FEDERATION_AGGREGATOR_KEYS must sign the statistics [default: a
    /// majority].
    #[arg(
        long = "federation-aggregator-threshold",
        env = "FEDERATION_AGGREGATOR_THRESHOLD",
        value_name = "N",
        global = true
    )]
    pub aggregator_threshold: Option<usize>,

    /// Initial default for federation on/off, until it is changed through the API or
    /// the dashboard [default: false].
    #[arg(
        long = "federation-enabled",
        env = "FEDERATION_ENABLED",
        value_name = "BOOL",
        global = true
    )]
    pub enabled: Option<bool>,

    /// Initial default report level: full or strict [default: full].
    #[arg(
        long = "federation-level",
        env = "FEDERATION_LEVEL",
        value_name = "LEVEL",
        global = true
    )]
    pub level: Option<String>,

    /// Initial default continent code sent with full reports (AF AN AS EU NA OC SA);
    /// empty or unset sends none.
    #[arg(
        long = "federation-continent",
        env = "FEDERATION_CONTINENT",
        value_name = "CODE",
        global = true
    )]
    pub continent: Option<String>,
}

impl fmt::Debug for FederationSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederationSettings")
            .field("nats_url", &self.nats_url.as_deref().map(redact_urls))
            .field("nats_user", &self.nats_user)
            .field(
                "nats_password",
                &self.nats_password.as_ref().map(|_| REDACTED),
            )
            .field("nats_token", &self.nats_token.as_ref().map(|_| REDACTED))
            .field("nats_creds", &self.nats_creds)
            .field("nats_ca", &self.nats_ca)
            .field("aggregator_key", &self.aggregator_key)
            .field("aggregator_keys", &self.aggregator_keys)
            .field("aggregator_threshold", &self.aggregator_threshold)
            .field("enabled", &self.enabled)
            .field("level", &self.level)
            .field("continent", &self.continent)
            .finish()
    }
}

const REDACTED: &str = "[REDACTED]";

impl FederationSettings {
    /// `self` wins over `lower` field by field.
    pub fn over(self, lower: FederationSettings) -> FederationSettings {
        FederationSettings {
            nats_url: self.nats_url.or(lower.nats_url),
            nats_user: self.nats_user.or(lower.nats_user),
            nats_password: self.nats_password.or(lower.nats_password),
            nats_token: self.nats_token.or(lower.nats_token),
            nats_creds: self.nats_creds.or(lower.nats_creds),
            nats_ca: self.nats_ca.or(lower.nats_ca),
            aggregator_key: self.aggregator_key.or(lower.aggregator_key),
            aggregator_keys: self.aggregator_keys.or(lower.aggregator_keys),
            aggregator_threshold: self.aggregator_threshold.or(lower.aggregator_threshold),
            enabled: self.enabled.or(lower.enabled),
            level: self.level.or(lower.level),
            continent: self.continent.or(lower.continent),
        }
    }

    /// Validates the settings; an error names the environment variable.
    pub fn resolve(self) -> Result<FederationConfig, InvalidSetting> {
        let invalid = |key: &'static str, message: String| InvalidSetting::new(key, message);
        let servers = match self.nats_url.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|url| {
                    NatsServer::parse(url)
                        .map_err(|message| invalid("FEDERATION_NATS_URL", message))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let auth = AuthSettings {
            user: self.nats_user,
            password: self.nats_password.map(SecretString::from),
            token: self.nats_token.map(SecretString::from),
            creds: self.nats_creds,
        }
        .resolve(&AUTH_KEYS)
        .map_err(|e| invalid(e.key, e.message))?;
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let parse_key = |key: &'static str, hex: &str| -> Result<PublicKey, InvalidSetting> {
            let parsed: PublicKey = hex.trim().parse().map_err(|_| {
                invalid(
                    key,
                    "expected the aggregator's Ed25519 public key as 64 lowercase hex digits"
                        .into(),
                )
            })?;
            if parsed.to_verifying_key().is_err() {
                return Err(invalid(
                    key,
                    "this is not a valid Ed25519 public key".into(),
                ));
            }
            Ok(parsed)
        };
        let single = nonempty(self.aggregator_key)
            .map(|hex| parse_key("FEDERATION_AGGREGATOR_KEY", &hex))
            .transpose()?;
        let several = match nonempty(self.aggregator_keys) {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|hex| parse_key("FEDERATION_AGGREGATOR_KEYS", hex))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let aggregator_keys = match (single, several) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "FEDERATION_AGGREGATOR_KEYS",
                    "set FEDERATION_AGGREGATOR_KEYS or FEDERATION_AGGREGATOR_KEY, not both".into(),
                ))
            }
            (Some(key), None) => {
                if self.aggregator_threshold.is_some_and(|t| t != 1) {
                    return Err(invalid(
                        "FEDERATION_AGGREGATOR_THRESHOLD",
                        "a single FEDERATION_AGGREGATOR_KEY signs alone (1); list the replicas' keys in FEDERATION_AGGREGATOR_KEYS".into(),
                    ));
                }
                Some(
                    KeySet::single(key)
                        .map_err(|e| invalid("FEDERATION_AGGREGATOR_KEY", e.to_string()))?,
                )
            }
            (None, Some(keys)) => {
                let threshold = self
                    .aggregator_threshold
                    .unwrap_or(KeySet::majority(keys.len()));
                Some(KeySet::new(keys, threshold).map_err(|e| match e {
                    KeySetError::Threshold { .. } => {
                        invalid("FEDERATION_AGGREGATOR_THRESHOLD", e.to_string())
                    }
                    _ => invalid("FEDERATION_AGGREGATOR_KEYS", e.to_string()),
                })?)
            }
            (None, None) => None,
        };
        let level = match self.level.as_deref().map(str::trim) {
            None | Some("") => Level::Full,
            Some(s) => Level::from_label(&s.to_ascii_lowercase()).ok_or_else(|| {
                invalid(
                    "FEDERATION_LEVEL",
                    format!("{s:?} is not a report level (full or strict)"),
                )
            })?,
        };
        let continent = match self.continent.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(Continent::parse(s).ok_or_else(|| {
                invalid(
                    "FEDERATION_CONTINENT",
                    format!("{s:?} is not a continent code (AF AN AS EU NA OC SA)"),
                )
            })?),
        };
        let enabled = self.enabled.unwrap_or(false);
        if enabled && servers.is_empty() {
            return Err(invalid(
                "FEDERATION_ENABLED",
                "federation is enabled but FEDERATION_NATS_URL is not set".into(),
            ));
        }
        Ok(FederationConfig {
            servers,
            auth,
            ca_file: self.nats_ca,
            aggregator_keys,
            initial: InitialSettings {
                enabled,
                level,
                continent,
            },
        })
    }
}

/// The validated federation configuration.
#[derive(Clone, Debug, Default)]
pub struct FederationConfig {
    /// Servers to connect to (empty: federation cannot be enabled).
    pub servers: Vec<NatsServer>,
    pub auth: NatsAuth,
    /// Extra root certificate(s) for TLS (PEM).
    pub ca_file: Option<PathBuf>,
    /// The pinned aggregator keys and threshold (one key, 1 of 1, for a single
    /// aggregator); without them, network statistics are not subscribed.
    pub aggregator_keys: Option<KeySet>,
    /// Defaults until the operator changes the settings (stored in the database).
    pub initial: InitialSettings,
}

impl FederationConfig {
    /// Whether a server is configured, i.e. federation can be enabled.
    pub fn is_configured(&self) -> bool {
        !self.servers.is_empty()
    }
}

/// Federation on/off, level and continent before the operator first changes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitialSettings {
    pub enabled: bool,
    pub level: Level,
    pub continent: Option<Continent>,
}

impl Default for InitialSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            level: Level::Full,
            continent: None,
        }
    }
}

/// One NATS server URL. `Debug` and `Display` never show credentials embedded in it.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsServer {
    url: String,
}

impl NatsServer {
    /// Parses a `nats://`, `tls://`, `ws://` or `wss://` URL (`host:port` means `nats://`).
    pub fn parse(url: &str) -> Result<NatsServer, String> {
        check_server_url(url).map_err(|problem| {
            format!(
                "{:?} is not a NATS server URL ({problem}; use nats://, tls://, ws:// or wss://)",
                redact_url(url)
            )
        })?;
        Ok(NatsServer {
            url: url.to_owned(),
        })
    }

    /// The URL as given to the client (may carry credentials: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL without user information, for logs and the API.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsServer({})", self.redacted())
    }
}

impl fmt::Display for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(|u| redact_url(u.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FederationSettings {
        FederationSettings {
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_leave_federation_off_and_unconfigured() {
        let c = FederationSettings::default().resolve().expect("valid");
        assert!(!c.is_configured());
        assert!(!c.initial.enabled);
        assert_eq!(c.initial.level, Level::Full);
        assert_eq!(c.initial.continent, None);
        assert_eq!(c.aggregator_keys, None);
    }

    #[test]
    fn url_list_accepts_the_four_schemes() {
        let c = FederationSettings {
            nats_url: Some(
                "nats://a.example:4222, tls://b.example:4443,ws://c.example:8080,wss://d.example"
                    .into(),
            ),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        let shown: Vec<String> = c.servers.iter().map(NatsServer::redacted).collect();
        assert_eq!(
            shown,
            [
                "nats://a.example:4222",
                "tls://b.example:4443",
                "ws://c.example:8080",
                "wss://d.example"
            ]
        );
    }

    #[test]
    fn other_schemes_are_refused_naming_the_key() {
        let err = FederationSettings {
            nats_url: Some("http://x.example:4222".into()),
            ..Default::default()
        }
        .resolve()
        .expect_err("bad scheme");
        assert!(
            err.to_string().starts_with("invalid FEDERATION_NATS_URL"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = FederationSettings {
            nats_url: Some("nats://alice:hunter2@x.example:4222".into()),
            nats_user: Some("alice".into()),
            nats_password: Some("hunter2".into()),
            nats_token: Some("tok-secret".into()),
            ..Default::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("tok-secret"), "{shown}");
        assert!(shown.contains("x.example"), "{shown}");

        let c = FederationSettings {
            nats_url: Some("nats://alice:hunter2@x.example:4222".into()),
            nats_user: Some("alice".into()),
            nats_password: Some("hunter2".into()),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(c.servers[0].to_string(), "nats://x.example:4222");
    }

    #[test]
    fn auth_methods_are_exclusive_and_complete() {
        let c = FederationSettings {
            nats_user: Some("u".into()),
            nats_password: Some("p".into()),
            ..settings()
        }
        .resolve()
        .expect("valid");
        assert!(matches!(c.auth, NatsAuth::UserPassword { .. }));
        let c = FederationSettings {
            nats_token: Some("t".into()),
            ..settings()
        }
        .resolve()
        .expect("valid");
        assert!(matches!(c.auth, NatsAuth::Token(_)));
        let err = FederationSettings {
            nats_user: Some("u".into()),
            ..settings()
        }
        .resolve()
        .expect_err("no password");
        assert!(
            err.to_string().contains("FEDERATION_NATS_PASSWORD"),
            "{err}"
        );
        let err = FederationSettings {
            nats_token: Some("t".into()),
            nats_creds: Some("/x.creds".into()),
            ..settings()
        }
        .resolve()
        .expect_err("two methods");
        assert!(err.to_string().contains("only one"), "{err}");
    }

    #[test]
    fn aggregator_key_must_be_a_valid_public_key() {
        let key = truebit_protocol::sign::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let hex = PublicKey::from(&key).to_string();
        let c = FederationSettings {
            aggregator_key: Some(hex),
            ..settings()
        }
        .resolve()
        .expect("valid");
        assert_eq!(
            c.aggregator_keys,
            Some(KeySet::single(PublicKey::from(&key)).expect("1 of 1"))
        );
        let err = FederationSettings {
            aggregator_key: Some("abcd".into()),
            ..settings()
        }
        .resolve()
        .expect_err("short");
        assert!(
            err.to_string()
                .starts_with("invalid FEDERATION_AGGREGATOR_KEY"),
            "{err}"
        );
    }

    #[test]
    fn a_replicated_hub_pins_its_keys_and_threshold() {
        let key = |seed: u8| {
            PublicKey::from(
                &truebit_protocol::sign::SigningKey::from_bytes(&[seed; 32]).verifying_key(),
            )
        };
        let list = format!("{},{}, {}", key(1), key(2), key(3));
        let c = FederationSettings {
            aggregator_keys: Some(list.clone()),
            ..settings()
        }
        .resolve()
        .expect("valid");
        let keys = c.aggregator_keys.expect("pinned");
        assert_eq!(keys.keys(), &[key(1), key(2), key(3)]);
        assert_eq!(keys.threshold(), 2, "a majority by default");
        let err = |s: FederationSettings| s.resolve().expect_err("invalid").to_string();
        let e = err(FederationSettings {
            aggregator_keys: Some(list.clone()),
            aggregator_threshold: Some(4),
            ..settings()
        });
        assert!(
            e.starts_with("invalid FEDERATION_AGGREGATOR_THRESHOLD"),
            "{e}"
        );
        let e = err(FederationSettings {
            aggregator_keys: Some(list),
            aggregator_key: Some(key(1).to_string()),
            ..settings()
        });
        assert!(e.contains("not both"), "{e}");
        let e = err(FederationSettings {
            aggregator_keys: Some(format!("{},{}", key(1), key(1))),
            ..settings()
        });
        assert!(e.starts_with("invalid FEDERATION_AGGREGATOR_KEYS"), "{e}");
    }

    #[test]
    fn level_and_continent_defaults_parse() {
        let c = FederationSettings {
            level: Some("STRICT".into()),
            continent: Some("eu".into()),
            ..settings()
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.initial.level, Level::Strict);
        assert_eq!(c.initial.continent, Some(Continent::Europe));
        let err = FederationSettings {
            continent: Some("DE".into()),
            ..settings()
        }
        .resolve()
        .expect_err("country");
        assert!(err.to_string().contains("FEDERATION_CONTINENT"), "{err}");
    }

    #[test]
    fn enabling_without_a_server_is_an_error() {
        let err = FederationSettings {
            enabled: Some(true),
            ..Default::default()
        }
        .resolve()
        .expect_err("no url");
        assert!(err.to_string().contains("FEDERATION_NATS_URL"), "{err}");
    }
}
