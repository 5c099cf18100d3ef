//! The aggregator's secrets: its Ed25519 signing key (statistics are signed with it and
//! monitors pin its public key, `FEDERATION_AGGREGATOR_KEY`) and the noise secret the
//! published figures' noise is drawn from. Each is a file of 64 hex digits (mode 0600),
//! created from the operating system's CSPRNG on first use. Never logged.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use truebit_protocol::identity::PublicKey;
use truebit_protocol::noise::FigureNoise;
use truebit_protocol::sign::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot create the {what} {path}: {source}")]
    Create {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the {what} {path} is not 64 hex digits: restore it from a backup, or move it away to create a new one (a new key must be pinned again by monitors; a new noise secret changes the noise of figures not yet released)")]
    Invalid { path: String, what: &'static str },
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
        let bytes = load_or_create_hex32(path, "aggregator key")?;
        Ok(AggregatorKey(SigningKey::from_bytes(&bytes)))
    }
}

/// The hub's noise secret (docs/PRIVACY.md): 32 random bytes in a file of 64 hex digits
/// (mode 0600), created on first use like the key. Replicas that must publish the same
/// bytes share the file. Never logged.
pub fn load_or_create_noise(path: &Path) -> Result<FigureNoise, KeyError> {
    load_or_create_hex32(path, "noise secret").map(FigureNoise::new)
}

fn load_or_create_hex32(path: &Path, what: &'static str) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyError::Invalid { path: shown, what }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let create = |source| KeyError::Create {
                path: shown.clone(),
                what,
                source,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(create)?;
            }
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(create)?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(create)?;
            writeln!(file, "{}", hex::encode(bytes)).map_err(create)?;
            file.sync_all().map_err(create)?;
            Ok(bytes)
        }
        Err(source) => Err(KeyError::Read {
            path: shown,
            what,
            source,
        }),
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
    fn a_noise_secret_is_created_private_once_and_gives_the_same_noise_afterwards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aggregator.noise");
        let scale = truebit_protocol::noise::Scale::new(0.2, 20);
        let a = load_or_create_noise(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_noise(&path).expect("loaded");
        let draws = |n: &FigureNoise| (0..8).map(|h| n.draw("x", h, scale)).collect::<Vec<_>>();
        assert_eq!(draws(&a), draws(&b));
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(!format!("{a:?}").contains(text.trim()));
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
