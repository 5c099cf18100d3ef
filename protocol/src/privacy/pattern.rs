//! Denied patterns: what no string in a report may look like.
//!
//! [`classify`] runs on every string that is not an exact schema value (a known key,
//! a label of its field, a hex id in an id field). The checks run in a fixed order and
//! the first match names the violation.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

/// What a denied string looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Pattern {
    /// `0x` followed by 40 or more hex digits: a wallet/contract address or a hash.
    #[error("a wallet address or hash (0x + 40 or more hex digits)")]
    WalletOrHash,
    /// `8-4-4-4-12` hex digits.
    #[error("a UUID")]
    Uuid,
    #[error("an e-mail address")]
    Email,
    #[error("an IPv4 address")]
    Ipv4,
    #[error("an IPv6 address")]
    Ipv6,
    /// 64 or 128 bare hex digits outside an id field (a raw key or seed, also a block
    /// hash or task id), a PEM block, a WIF or extended (xprv) key, or a long
    /// mixed-case base58/base64 blob.
    #[error("something that looks like a private key")]
    PrivateKey,
    /// Another run of 32 or more bare hex digits (container ids, unprefixed addresses,
    /// digests).
    #[error("a long hex string (32 or more hex digits)")]
    HexBlob,
    /// A date-time, time of day or Unix time (s, ms, µs, ns) that is not a window start.
    #[error("a timestamp that is not a window start")]
    Timestamp,
    /// Twelve or more lowercase words of 3–8 letters in a row (a BIP-39 style phrase).
    #[error("something that looks like a mnemonic phrase")]
    Mnemonic,
}

impl Pattern {
    pub const ALL: [Pattern; 9] = [
        Pattern::WalletOrHash,
        Pattern::Uuid,
        Pattern::Email,
        Pattern::Ipv4,
        Pattern::Ipv6,
        Pattern::PrivateKey,
        Pattern::HexBlob,
        Pattern::Timestamp,
        Pattern::Mnemonic,
    ];

    /// Stable short name for counters and logs.
    pub const fn code(self) -> &'static str {
        match self {
            Pattern::WalletOrHash => "wallet_or_hash",
            Pattern::Uuid => "uuid",
            Pattern::Email => "email",
            Pattern::Ipv4 => "ipv4",
            Pattern::Ipv6 => "ipv6",
            Pattern::PrivateKey => "private_key",
            Pattern::HexBlob => "hex_blob",
            Pattern::Timestamp => "timestamp",
            Pattern::Mnemonic => "mnemonic",
        }
    }
}

fn regex(re: &str) -> Regex {
    Regex::new(re).expect("built-in pattern compiles")
}

static WALLET: LazyLock<Regex> = LazyLock::new(|| regex(r"0[xX][0-9a-fA-F]{40}"));
static UUID: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
});
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})"));
static PEM: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)-----BEGIN [A-Z0-9 ]*-----|PRIVATE KEY"));
/// `YYYY-MM-DD`, optionally with a time, fraction and zone.
static ISO_DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(\d{4})-(\d{2})-(\d{2})(?:[t _](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(z|utc|gmt|[+-]\d{2}(?::?\d{2})?)?)?",
    )
});
/// `YYYYMMDDTHHMMSS` (ISO 8601 basic format).
static ISO_BASIC: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(\d{4})(\d{2})(\d{2})t(\d{2})(\d{2})(\d{2})?(?:[.,](\d+))?(z|[+-]\d{2}:?\d{2})?")
});
static TIME_OF_DAY: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"));

/// The first denied pattern `s` matches, if any.
pub fn classify(s: &str) -> Option<Pattern> {
    if WALLET.is_match(s) {
        return Some(Pattern::WalletOrHash);
    }
    if UUID.is_match(s) {
        return Some(Pattern::Uuid);
    }
    if s.contains('@') && EMAIL.is_match(s) {
        return Some(Pattern::Email);
    }
    if has_ipv4(s) {
        return Some(Pattern::Ipv4);
    }
    if has_ipv6(s) {
        return Some(Pattern::Ipv6);
    }
    if let Some(p) = key_or_hex(s) {
        return Some(p);
    }
    if has_timestamp(s) {
        return Some(Pattern::Timestamp);
    }
    if has_mnemonic(s) {
        return Some(Pattern::Mnemonic);
    }
    None
}

/// Maximal runs of bytes satisfying `pred`, as `(start, end)`.
fn runs<'a>(
    s: &'a str,
    pred: impl Fn(u8) -> bool + 'a,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && !pred(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        while i < b.len() && pred(b[i]) {
            i += 1;
        }
        Some((start, i))
    })
}

fn has_ipv4(s: &str) -> bool {
    let b = s.as_bytes();
    IPV4.captures_iter(s).any(|c| {
        let m = c.get(0).expect("group 0 always matches");
        let before_ok = m.start() == 0 || !b[m.start() - 1].is_ascii_digit();
        let after_ok = m.end() == b.len() || !b[m.end()].is_ascii_digit();
        let octets_ok = (1..=4).all(|g| c[g].parse::<u16>().map(|o| o <= 255).unwrap_or(false));
        before_ok && after_ok && octets_ok
    })
}

fn has_ipv6(s: &str) -> bool {
    if s.bytes().filter(|&b| b == b':').count() < 2 {
        return false;
    }
    runs(s, |b| b.is_ascii_hexdigit() || b == b':' || b == b'.').any(|(start, end)| {
        let run = &s[start..end];
        if run.bytes().filter(|&b| b == b':').count() < 2 {
            return false;
        }
        let trimmed = run.trim_end_matches(['.', ':']);
        run.parse::<Ipv6Addr>().is_ok() || trimmed.parse::<Ipv6Addr>().is_ok()
    })
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn key_or_hex(s: &str) -> Option<Pattern> {
    if PEM.is_match(s) {
        return Some(Pattern::PrivateKey);
    }
    let mut hex_blob = false;
    for (start, end) in runs(s, |b| b.is_ascii_hexdigit()) {
        match end - start {
            64 | 128 => return Some(Pattern::PrivateKey),
            n if n >= 32 => hex_blob = true,
            _ => {}
        }
    }
    for (start, end) in runs(s, |b| BASE58.contains(&b)) {
        let run = &s[start..end];
        let wif = matches!(run.len(), 51 | 52)
            && matches!(run.as_bytes()[0], b'5' | b'K' | b'L' | b'9' | b'c');
        let extended = run.len() >= 100 && matches!(&run[1..4], "prv");
        if wif || extended {
            return Some(Pattern::PrivateKey);
        }
    }
    for (start, end) in runs(s, |b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        let run = &s.as_bytes()[start..end];
        // Mixed case, digits and many non-hex letters: base58/base64, not hex with a
        // stray `x`.
        if run.len() >= 40
            && run.iter().any(u8::is_ascii_digit)
            && run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
            && run
                .iter()
                .filter(|b| b.is_ascii_alphabetic() && !b.is_ascii_hexdigit())
                .count()
                >= 8
        {
            return Some(Pattern::PrivateKey);
        }
    }
    hex_blob.then_some(Pattern::HexBlob)
}

/// Unix seconds of a proleptic Gregorian UTC date-time (Howard Hinnant's algorithm).
fn unix_secs(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3_600 + mm * 60 + ss
}

fn num(c: &regex::Captures<'_>, i: usize) -> Option<i64> {
    c.get(i).and_then(|m| m.as_str().parse().ok())
}

fn zero_fraction(c: &regex::Captures<'_>, i: usize) -> bool {
    c.get(i)
        .is_none_or(|m| m.as_str().bytes().all(|b| b == b'0'))
}

/// Offset of a zone designator in seconds east of UTC (`Z`, `UTC`, `+02:00`, `-0530`).
fn zone_offset(zone: Option<&str>) -> Option<i64> {
    let Some(z) = zone else { return Some(0) };
    let z = z.to_ascii_lowercase();
    if matches!(z.as_str(), "z" | "utc" | "gmt") {
        return Some(0);
    }
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let digits: String = z.chars().filter(char::is_ascii_digit).collect();
    let hours: i64 = digits.get(..2)?.parse().ok()?;
    let minutes: i64 = digits.get(2..4).map_or(Some(0), |m| m.parse().ok())?;
    Some(sign * (hours * 3_600 + minutes * 60))
}

/// Whether a captured date-time denotes a window start. Out-of-range fields count as
/// "not a window start": the string is shaped like a timestamp, which is enough.
fn date_time_is_window_start(c: &regex::Captures<'_>) -> bool {
    let (Some(y), Some(mo), Some(d)) = (num(c, 1), num(c, 2), num(c, 3)) else {
        return false;
    };
    let hh = num(c, 4).unwrap_or(0);
    let mi = num(c, 5).unwrap_or(0);
    let ss = num(c, 6).unwrap_or(0);
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..=23).contains(&hh)
        && (0..=59).contains(&mi)
        && (0..=59).contains(&ss);
    let Some(offset) = zone_offset(c.get(8).map(|m| m.as_str())) else {
        return false;
    };
    valid && zero_fraction(c, 7) && (unix_secs(y, mo, d, hh, mi, ss) - offset).rem_euclid(300) == 0
}

/// Unix times from 2000-01-01 up to 2100-01-01, in seconds.
const PLAUSIBLE_UNIX_SECS: std::ops::Range<u64> = 946_684_800..4_102_444_800;

fn has_timestamp(s: &str) -> bool {
    if !s.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    if ISO_DATE_TIME
        .captures_iter(s)
        .any(|c| !date_time_is_window_start(&c))
    {
        return true;
    }
    if ISO_BASIC
        .captures_iter(s)
        .any(|c| !date_time_is_window_start(&c))
    {
        return true;
    }
    let time_of_day_off_window = TIME_OF_DAY.captures_iter(s).any(|c| {
        let mi = num(&c, 2).unwrap_or(0);
        let ss = num(&c, 3).unwrap_or(0);
        mi % 5 != 0 || ss != 0 || !zero_fraction(&c, 4)
    });
    if time_of_day_off_window {
        return true;
    }
    // Unix time in s, ms, µs or ns: the first ten digits are the seconds.
    runs(s, |b| b.is_ascii_digit()).any(|(start, end)| {
        let run = &s[start..end];
        let (secs, rest) = match run.len() {
            9 => (run, ""),
            10..=19 => run.split_at(10),
            _ => return false,
        };
        let Ok(secs) = secs.parse::<u64>() else {
            return false;
        };
        PLAUSIBLE_UNIX_SECS.contains(&secs) && !(secs % 300 == 0 && rest.bytes().all(|b| b == b'0'))
    })
}

fn has_mnemonic(s: &str) -> bool {
    let mut run = 0;
    for word in s.split_whitespace() {
        if (3..=8).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()) {
            run += 1;
            if run >= 12 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_class(cases: &[(&str, Option<Pattern>)]) {
        for (s, expected) in cases {
            assert_eq!(classify(s), *expected, "{s:?}");
        }
    }

    #[test]
    fn wallet_addresses_and_prefixed_hashes_are_denied() {
        use Pattern::WalletOrHash as W;
        assert_class(&[
            ("0x52908400098527886E0F7030069857D2E4169EE7", Some(W)),
            ("worker-0x52908400098527886e0f7030069857d2e4169ee7", Some(W)),
            (
                "0x88df016429689c079f3b2f6ad39fa052532c56795b733da78a91ebe6a713944b",
                Some(W),
            ),
            ("0X52908400098527886E0F7030069857D2E4169EE7", Some(W)),
            // 39 hex digits: too short for an address (and short of the blob rule too).
            (
                "0x52908400098527886E0F7030069857D2E4169EE",
                Some(Pattern::HexBlob),
            ),
            ("0x1f", None),
        ]);
    }

    #[test]
    fn uuids_emails_and_ip_addresses_are_denied() {
        assert_class(&[
            ("550e8400-e29b-41d4-a716-446655440000", Some(Pattern::Uuid)),
            (
                "container 550E8400-E29B-41D4-A716-446655440000 up",
                Some(Pattern::Uuid),
            ),
            ("alice@example.com", Some(Pattern::Email)),
            (
                "mailto:bob.smith+node@mail.example.co.uk",
                Some(Pattern::Email),
            ),
            ("192.168.1.20", Some(Pattern::Ipv4)),
            ("peer 10.0.0.1:30303", Some(Pattern::Ipv4)),
            ("255.255.255.255", Some(Pattern::Ipv4)),
            ("256.1.1.1", None),
            ("1.2.3", None),
            ("2001:db8::8a2e:370:7334", Some(Pattern::Ipv6)),
            ("[fe80::1]:8080", Some(Pattern::Ipv6)),
            ("::1", Some(Pattern::Ipv6)),
            ("::ffff:192.0.2.128", Some(Pattern::Ipv4)),
            (
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                Some(Pattern::Ipv6),
            ),
            ("ab:cd", None),
        ]);
    }

    #[test]
    fn key_material_is_denied() {
        let hex64 = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
        assert_class(&[
            (hex64, Some(Pattern::PrivateKey)),
            (&format!("rs_{hex64}"), Some(Pattern::PrivateKey)),
            (&format!("{hex64}{hex64}"), Some(Pattern::PrivateKey)),
            ("-----BEGIN PRIVATE KEY-----", Some(Pattern::PrivateKey)),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", Some(Pattern::PrivateKey)),
            ("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ", Some(Pattern::PrivateKey)),
            ("KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn", Some(Pattern::PrivateKey)),
            (
                "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
                Some(Pattern::PrivateKey),
            ),
            ("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC", Some(Pattern::PrivateKey)),
            ("d41d8cd98f00b204e9800998ecf8427e", Some(Pattern::HexBlob)),
            ("52908400098527886e0f7030069857d2e4169ee7", Some(Pattern::HexBlob)),
            ("deadbeef", None),
        ]);
    }

    #[test]
    fn timestamps_are_denied_unless_they_are_window_starts() {
        use Pattern::Timestamp as T;
        assert_class(&[
            ("2024-06-01T12:31:07Z", Some(T)),
            ("2024-06-01T12:31:07.123456789Z", Some(T)),
            ("2024-06-01 12:31:07", Some(T)),
            ("2024-06-01T12:05:00.001Z", Some(T)),
            ("2024-06-01T12:05:00+02:30", None),
            ("2024-06-01T12:05:00+02:31", Some(T)),
            ("2024-06-01T12:05:00Z", None),
            ("2024-06-01T12:05:00.000Z", None),
            ("2024-06-01T12:05Z", None),
            ("2024-06-01", None),
            ("20240601T123107Z", Some(T)),
            ("20240601T120500Z", None),
            ("Sat, 01 Jun 2024 12:31:07 GMT", Some(T)),
            ("at 12:31", Some(T)),
            ("12:30:00", None),
            ("1717243265", Some(T)),
            ("1717243200", None),
            ("1717243265123", Some(T)),
            ("1717243200000", None),
            ("1717243200001", Some(T)),
            ("1717243265.5", Some(T)),
            ("1717243265123456789", Some(T)),
            ("999999999", Some(T)),
            ("123456789", None),
            ("2024-13-45T99:99:99Z", Some(T)),
        ]);
    }

    #[test]
    fn mnemonic_phrases_are_denied() {
        let twelve =
            "abandon ability able about above absent absorb abstract absurd abuse access accident";
        assert_eq!(classify(twelve), Some(Pattern::Mnemonic));
        let eleven = "abandon ability able about above absent absorb abstract absurd abuse access";
        assert_eq!(classify(eleven), None);
        assert_eq!(
            classify(&format!("{twelve} zoo zoo")),
            Some(Pattern::Mnemonic)
        );
        assert_eq!(
            classify("Abandon ability able about above absent absorb abstract absurd abuse access"),
            None
        );
    }

    #[test]
    fn every_wire_label_and_key_is_clean() {
        for s in crate::privacy::schema::all_constant_strings() {
            assert_eq!(classify(s), None, "{s:?}");
        }
    }

    #[test]
    fn unix_secs_matches_known_dates() {
        assert_eq!(unix_secs(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_secs(2000, 1, 1, 0, 0, 0), 946_684_800);
        assert_eq!(unix_secs(2024, 6, 1, 12, 0, 0), 1_717_243_200);
        assert_eq!(unix_secs(2024, 2, 29, 0, 0, 0), 1_709_164_800);
        assert_eq!(unix_secs(2100, 1, 1, 0, 0, 0), 4_102_444_800);
    }
}
