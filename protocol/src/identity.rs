//! Pseudonymous identifiers: the node's public key and node id, salted task ids.
//!
//! Nothing here is derived from a wallet, hostname, IP, container id or hardware: the
//! key pair is random per installation and the node id is a hash of its public key, so
//! nobody can claim another node's id without its private key.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::hexbytes;

/// An Ed25519 public key on the wire: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as a point usable for verification; fails for byte strings that are
    /// not a valid compressed Edwards point.
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, ed25519_dalek::SignatureError> {
        VerifyingKey::from_bytes(&self.0)
    }

    /// The node id this key stands for.
    pub fn node_id(&self) -> NodeId {
        NodeId::of(self)
    }
}

impl From<&VerifyingKey> for PublicKey {
    fn from(key: &VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hexbytes::fmt_hex(&self.0, f)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = InvalidHex;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hexbytes::decode(s).map(Self).ok_or(InvalidHex {
            what: "public key",
            digits: 64,
        })
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hexbytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hexbytes::deserialize(deserializer, "an Ed25519 public key").map(Self)
    }
}

/// A node's public identity: the first 16 bytes of SHA-256(public key), as 32
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 16]);

impl NodeId {
    /// Derives the node id of a public key.
    pub fn of(key: &PublicKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hexbytes::fmt_hex(&self.0, f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = InvalidHex;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hexbytes::decode(s).map(Self).ok_or(InvalidHex {
            what: "node id",
            digits: 32,
        })
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hexbytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hexbytes::deserialize(deserializer, "a node id").map(Self)
    }
}

/// The per-installation secret for [`HashedId`]: 32 random bytes, kept in the local
/// database and never sent. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt([u8; 32]);

impl Salt {
    /// Wraps 32 bytes that the caller drew from a cryptographic RNG.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(<redacted>)")
    }
}

/// A task, invoice or execution id replaced by HMAC-SHA256(salt, id): 64 lowercase hex
/// digits. The same id under the same salt always gives the same value (so a task item
/// and its invoice join), and without the salt nobody can map it back to the id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashedId([u8; 32]);

impl HashedId {
    /// HMAC-SHA256(salt, id) over the id's UTF-8 bytes.
    pub fn derive(salt: &Salt, id: &str) -> Self {
        // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        Self(mac.finalize().into_bytes().into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for HashedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hexbytes::fmt_hex(&self.0, f)
    }
}

impl fmt::Debug for HashedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashedId({self})")
    }
}

impl FromStr for HashedId {
    type Err = InvalidHex;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hexbytes::decode(s).map(Self).ok_or(InvalidHex {
            what: "hashed id",
            digits: 64,
        })
    }
}

impl Serialize for HashedId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hexbytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for HashedId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hexbytes::deserialize(deserializer, "a hashed id").map(Self)
    }
}

/// A string that is not the expected fixed-length lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: expected exactly {digits} lowercase hex digits")]
pub struct InvalidHex {
    pub what: &'static str,
    pub digits: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_first_16_bytes_of_sha256_of_the_public_key() {
        let key = PublicKey::from_bytes([0xab; 32]);
        let digest = Sha256::digest([0xab; 32]);
        assert_eq!(key.node_id().as_bytes()[..], digest[..16]);
        assert_eq!(key.node_id().to_string().len(), 32);
        assert_eq!(key.node_id().to_string(), hex::encode(&digest[..16]));
    }

    #[test]
    fn hashed_id_matches_an_independent_hmac_sha256() {
        // Computed with Python: hmac.new(bytes(range(32)), b"rs_exec-1", hashlib.sha256).hexdigest()
        let salt = Salt::from_bytes(core::array::from_fn(|i| i as u8));
        let id = HashedId::derive(&salt, "rs_exec-1");
        assert_eq!(id.to_string(), HMAC_VECTOR);
    }

    const HMAC_VECTOR: &str = "710e2e07412c1da5b39f726a8aa3982463378ad8227b8289f4f58918a9bc8eca";

    #[test]
    fn hashed_id_depends_on_the_salt_and_the_id() {
        let a = Salt::from_bytes([1; 32]);
        let b = Salt::from_bytes([2; 32]);
        assert_eq!(HashedId::derive(&a, "x"), HashedId::derive(&a, "x"));
        assert_ne!(HashedId::derive(&a, "x"), HashedId::derive(&b, "x"));
        assert_ne!(HashedId::derive(&a, "x"), HashedId::derive(&a, "y"));
    }

    #[test]
    fn salt_debug_never_prints_the_bytes() {
        let salt = Salt::from_bytes([0x5a; 32]);
        let shown = format!("{salt:?}");
        assert_eq!(shown, "Salt(<redacted>)");
        assert!(!shown.contains("5a"));
    }

    #[test]
    fn hex_ids_parse_only_their_exact_lowercase_form() {
        let id: NodeId = "00112233445566778899aabbccddeeff".parse().expect("valid");
        assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
        assert!("00112233445566778899AABBCCDDEEFF"
            .parse::<NodeId>()
            .is_err());
        assert!("00112233445566778899aabbccddeeff00"
            .parse::<NodeId>()
            .is_err());
        assert!("0x112233445566778899aabbccddeeff"
            .parse::<NodeId>()
            .is_err());
        assert!("".parse::<HashedId>().is_err());
        assert_eq!(
            serde_json::to_string(&id).expect("serialize"),
            "\"00112233445566778899aabbccddeeff\""
        );
        let back: NodeId =
            serde_json::from_str("\"00112233445566778899aabbccddeeff\"").expect("deserialize");
        assert_eq!(back, id);
        assert!(serde_json::from_str::<NodeId>("\"00112233445566778899AABBCCDDEEFF\"").is_err());
    }
}
