//! The aggregator's Ed25519 signing key: statistics are signed with it and monitors pin
//! its public key (`FEDERATION_AGGREGATOR_KEY`). Kept in a file of 64 hex digits (mode
//! 0600), created from the operating system's CSPRNG on first use. Never logged.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use truebit_protocol::identity::PublicKey;
use truebit_protocol::sign::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the aggregator key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the aggregator key {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("the aggregator key {path} is not 64 hex digits: restore it from a backup, or move it away to create a new one (monitors must then pin the new public key)")]
    Invalid { path: String },
}

/// The signing key. `Debug` shows only the public key.
#[derive(Clone)]
pub struct AggregatorKey(SigningKey);

impl fmt::Debug for AggregatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AggregatorKey(public {})", self.public())
    }
}

impl AggregatorKey {
    pub fn from_signing_key(key: SigningKey) -> AggregatorKey {
        AggregatorKey(key)
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// The public key monitors pin: 64 hex digits.
    pub fn public(&self) -> PublicKey {
        PublicKey::from(&self.0.verifying_key())
    }

    /// Loads the key at `path`, creating it (mode 0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<AggregatorKey, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(KeyError::Invalid { path: shown })?;
                Ok(AggregatorKey(SigningKey::from_bytes(&bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let create = |source| KeyError::Create {
                    path: shown.clone(),
                    source,
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(create)?;
                }
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(create)?;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(create)?;
                writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(create)?;
                file.sync_all().map_err(create)?;
                Ok(AggregatorKey(key))
            }
            Err(source) => Err(KeyError::Read {
                path: shown,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_once_and_loaded_the_same_afterwards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/aggregator.key");
        let a = AggregatorKey::load_or_create(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = AggregatorKey::load_or_create(&path).expect("loaded");
        assert_eq!(a.public(), b.public());
        assert_eq!(a.public().to_string().len(), 64);
        assert!(!format!("{a:?}").contains(&hex::encode(a.signing_key().to_bytes())));
    }

    #[test]
    fn a_damaged_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aggregator.key");
        std::fs::write(&path, "not hex\n").expect("write");
        let err = AggregatorKey::load_or_create(&path).expect_err("invalid");
        assert!(matches!(err, KeyError::Invalid { .. }));
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "not hex\n");
    }
}
