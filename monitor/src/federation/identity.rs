//! The installation's federation identity: a random Ed25519 key pair (the node id is
//! derived from its public key) and a 32-byte secret salt for the HMAC ids.
//!
//! Created on the first enable, kept in the local database (file mode 0600), never
//! logged (`Debug` is redacted) and never sent: only the public key and the node id go
//! on the wire.

use std::fmt;

use rand::RngCore;
use truebit_protocol::identity::{HashedId, NodeId, PublicKey, Salt};
use truebit_protocol::sign::SigningKey;

use crate::store::federation::IdentityRow;

/// The node key and the salt. Cloning copies the secrets; keep it inside the federation
/// module.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    salt: Salt,
    public: PublicKey,
}

impl Identity {
    /// A fresh identity from the operating system's CSPRNG.
    pub fn generate() -> Identity {
        let mut rng = rand::rngs::OsRng;
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut salt = [0u8; 32];
        rng.fill_bytes(&mut salt);
        Identity::from_bytes(secret, salt)
    }

    /// Rebuilds an identity from its stored bytes.
    pub fn from_bytes(secret_key: [u8; 32], salt: [u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(&secret_key);
        let public = PublicKey::from(&key.verifying_key());
        Identity {
            key,
            salt: Salt::from_bytes(salt),
            public,
        }
    }

    /// The identity as the store keeps it.
    pub(crate) fn to_row(&self) -> IdentityRow {
        IdentityRow {
            secret_key: self.key.to_bytes(),
            salt: *self.salt.as_bytes(),
        }
    }

    /// The identity the store kept.
    pub(crate) fn from_row(row: IdentityRow) -> Identity {
        Identity::from_bytes(row.secret_key, row.salt)
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn node_id(&self) -> NodeId {
        self.public.node_id()
    }

    /// HMAC-SHA256(salt, id).
    pub fn hash_id(&self, id: &str) -> HashedId {
        HashedId::derive(&self.salt, id)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id().to_string())
            .field("secret_key", &"[REDACTED]")
            .field("salt", &"[REDACTED]")
            .finish()
    }
}

/// The identity and window the federation unit tests build reports with.
#[cfg(test)]
pub(crate) mod test_fixtures {
    use truebit_protocol::window::WindowStart;

    use super::Identity;

    pub(crate) fn identity() -> Identity {
        Identity::from_bytes([1; 32], [2; 32])
    }

    pub(crate) fn window() -> WindowStart {
        WindowStart::new(1_763_992_500).expect("aligned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_node_id_and_never_the_secrets() {
        let id = Identity::from_bytes([0x11; 32], [0x22; 32]);
        let shown = format!("{id:?}");
        assert!(shown.contains(&id.node_id().to_string()), "{shown}");
        assert!(!shown.contains("1111"), "{shown}");
        assert!(!shown.contains("2222"), "{shown}");
        assert!(!shown.contains(&hex::encode(id.to_row().secret_key)));
    }

    #[test]
    fn generated_identities_are_random_and_round_trip() {
        let a = Identity::generate();
        let b = Identity::generate();
        assert_ne!(a.public_key(), b.public_key());
        assert_ne!(a.to_row().salt, b.to_row().salt);
        let again = Identity::from_row(a.to_row());
        assert_eq!(again.public_key(), a.public_key());
        assert_eq!(again.hash_id("x"), a.hash_id("x"));
        assert_ne!(a.hash_id("x"), b.hash_id("x"));
    }

    #[test]
    fn node_id_is_derived_from_the_public_key() {
        let id = Identity::from_bytes([5; 32], [6; 32]);
        assert_eq!(id.node_id(), NodeId::of(&id.public_key()));
    }
}
