//! NATS login, written once for the monitor and the aggregator: the four ways to log in
//! (none, user and password, token, credentials file) validated from raw settings into
//! [`NatsAuth`], the client options they make ([`connect_options`]), and server URLs
//! without the credentials they may carry ([`redact_url`]).
//!
//! Secrets are [`SecretString`]s: `Debug` never shows them.

use std::path::{Path, PathBuf};

pub use secrecy::{ExposeSecret, SecretString};

/// How a client logs in to NATS.
#[derive(Clone, Debug, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: SecretString,
    },
    Token(SecretString),
    CredentialsFile(PathBuf),
}

/// The names a binary reads the login settings under, for its error messages.
#[derive(Clone, Copy, Debug)]
pub struct AuthKeys {
    pub user: &'static str,
    pub password: &'static str,
    pub token: &'static str,
    pub creds: &'static str,
}

/// A login setting that is missing or in conflict; `key` names the setting to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AuthError {
    pub key: &'static str,
    pub message: String,
}

/// The raw login settings of one binary (every field optional).
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub token: Option<SecretString>,
    pub creds: Option<PathBuf>,
}

impl AuthSettings {
    /// Validates the settings: at most one way to log in, a user with a password. An
    /// empty or blank value counts as not set (an `.env` line `NATS_TOKEN=` sets nothing).
    pub fn resolve(self, keys: &AuthKeys) -> Result<NatsAuth, AuthError> {
        let user = self.user.filter(|s| !s.trim().is_empty());
        let secret = |s: Option<SecretString>| s.filter(|s| !s.expose_secret().trim().is_empty());
        let creds = self.creds.filter(|p| !p.as_os_str().is_empty());
        let error = |key: &'static str, message: String| Err(AuthError { key, message });
        match (user, secret(self.password), secret(self.token), creds) {
            (None, None, None, None) => Ok(NatsAuth::None),
            (Some(user), Some(password), None, None) => {
                Ok(NatsAuth::UserPassword { user, password })
            }
            (None, None, Some(token), None) => Ok(NatsAuth::Token(token)),
            (None, None, None, Some(path)) => Ok(NatsAuth::CredentialsFile(path)),
            (Some(_), None, _, _) => {
                error(keys.password, format!("is required with {}", keys.user))
            }
            (None, Some(_), _, _) => {
                error(keys.user, format!("is required with {}", keys.password))
            }
            _ => error(
                keys.token,
                format!(
                    "set only one of: a user and password, a token, a credentials file ({})",
                    keys.creds
                ),
            ),
        }
    }
}

/// The credentials file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the NATS credentials file {path}: {source}")]
pub struct CredentialsError {
    pub path: String,
    pub source: std::io::Error,
}

/// Client options that log in as `auth` and also trust the CA certificates in
/// `ca_file` (PEM) for tls:// and wss:// servers. The caller adds its own behaviour
/// (name, timeouts, callbacks).
pub async fn connect_options(
    auth: &NatsAuth,
    ca_file: Option<&Path>,
) -> Result<async_nats::ConnectOptions, CredentialsError> {
    let options = match auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(
                user.clone(),
                password.expose_secret().to_owned(),
            )
        }
        NatsAuth::Token(token) => {
            async_nats::ConnectOptions::with_token(token.expose_secret().to_owned())
        }
        NatsAuth::CredentialsFile(path) => {
            async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|source| CredentialsError {
                    path: path.display().to_string(),
                    source,
                })?
        }
    };
    Ok(match ca_file {
        Some(ca) => options.add_root_certificates(ca.to_owned()),
        None => options,
    })
}

/// Whether `url` is a server address the client accepts: nats://, tls://, ws:// or
/// wss:// (a bare `host:port` means nats://) with a host.
pub fn check_server_url(url: &str) -> Result<(), String> {
    let addr: async_nats::ServerAddr = url.parse().map_err(|_| "unreadable".to_owned())?;
    if addr.host().is_empty() {
        return Err("no host".into());
    }
    Ok(())
}

/// `scheme://user:pass@host` -> `scheme://host`: a server URL fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(s) => format!("{s}://{rest}"),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: AuthKeys = AuthKeys {
        user: "X_USER",
        password: "X_PASSWORD",
        token: "X_TOKEN",
        creds: "X_CREDS",
    };

    fn secret(s: &str) -> Option<SecretString> {
        Some(SecretString::from(s))
    }

    #[test]
    fn empty_values_count_as_unset() {
        let auth = AuthSettings {
            user: Some(String::new()),
            password: secret(" "),
            token: secret(""),
            creds: Some(PathBuf::new()),
        }
        .resolve(&KEYS)
        .expect("nothing set");
        assert!(matches!(auth, NatsAuth::None));
        let auth = AuthSettings {
            user: Some(String::new()),
            token: secret("t"),
            ..AuthSettings::default()
        }
        .resolve(&KEYS)
        .expect("a token");
        assert!(matches!(auth, NatsAuth::Token(t) if t.expose_secret() == "t"));
    }

    #[test]
    fn one_way_to_log_in_and_a_user_with_a_password() {
        let auth = AuthSettings {
            user: Some("u".into()),
            password: secret("p"),
            ..AuthSettings::default()
        }
        .resolve(&KEYS)
        .expect("user and password");
        assert!(
            matches!(auth, NatsAuth::UserPassword { user, password } if user == "u" && password.expose_secret() == "p")
        );
        let err = AuthSettings {
            user: Some("u".into()),
            ..AuthSettings::default()
        }
        .resolve(&KEYS)
        .expect_err("no password");
        assert_eq!(err.to_string(), "X_PASSWORD: is required with X_USER");
        let err = AuthSettings {
            password: secret("p"),
            ..AuthSettings::default()
        }
        .resolve(&KEYS)
        .expect_err("no user");
        assert_eq!(err.key, "X_USER");
        let err = AuthSettings {
            token: secret("t"),
            creds: Some("/x.creds".into()),
            ..AuthSettings::default()
        }
        .resolve(&KEYS)
        .expect_err("two ways");
        assert_eq!(err.key, "X_TOKEN");
        assert!(err.message.contains("only one"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let auth = NatsAuth::UserPassword {
            user: "alice".into(),
            password: SecretString::from("hunter2"),
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }

    #[tokio::test]
    async fn a_missing_credentials_file_is_named() {
        let auth = NatsAuth::CredentialsFile("/nonexistent/missing.creds".into());
        let err = connect_options(&auth, None).await.expect_err("missing");
        assert!(err.to_string().contains("missing.creds"), "{err}");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("nats://alice:pw@x.example:4222"),
            "nats://x.example:4222"
        );
        assert_eq!(redact_url("a:b@x.example:4222/p@q"), "x.example:4222/p@q");
        assert!(check_server_url("tls://x.example:4443").is_ok());
        assert!(check_server_url("http://x.example").is_err());
    }
}
