//! Fixed-size byte arrays as lowercase hex strings (the only hex form on the wire).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Decodes exactly `2 * N` lowercase hex digits. Upper case is refused so that every
/// value has exactly one encoding (canonical bytes, stable dedup keys).
pub(crate) fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    // 64 bytes covers every array we encode (signatures); no allocation per value.
    let mut buf = [0u8; 128];
    let out = &mut buf[..bytes.len() * 2];
    hex::encode_to_slice(bytes, out).map_err(serde::ser::Error::custom)?;
    let s = std::str::from_utf8(out).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(s)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
    what: &'static str,
) -> Result<[u8; N], D::Error> {
    struct HexVisitor<const N: usize>(&'static str);

    impl<const N: usize> Visitor<'_> for HexVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{} ({} lowercase hex digits)", self.0, 2 * N)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            decode(v).ok_or_else(|| E::invalid_value(de::Unexpected::Other("a string"), &self))
        }
    }

    deserializer.deserialize_str(HexVisitor::<N>(what))
}

pub(crate) fn fmt_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}
