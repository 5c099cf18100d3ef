//! One physical line: ANSI removal, transport prefixes (Docker timestamp, compose
//! prefix) and the entry header `YYYY-MM-DD HH:MM:SS LEVEL: LOGGER:VERSION MESSAGE`.
//!
//! Everything here works on bytes with cheap fixed-position checks; nothing allocates
//! except [`strip_ansi_into`], which writes into a caller-owned buffer.

use memchr::memchr;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
/// Longest compose service name we accept in a `<service>  | ` prefix.
const MAX_SERVICE_LEN: usize = 64;
/// Longest level word (`info`, `warn`, ..., `verbose`).
const MAX_LEVEL_LEN: usize = 16;

/// Whether `line` contains an escape byte (so [`strip_ansi_into`] is needed).
pub(crate) fn has_escape(line: &[u8]) -> bool {
    memchr(ESC, line).is_some()
}

/// Copies `line` into `out` (cleared first) without its ANSI escape sequences: CSI
/// (`ESC [ params final`), string controls (OSC/DCS/APC/PM/SOS up to BEL or `ESC \`) and
/// the short `ESC intermediates final` forms. A string control without terminator loses
/// only its two-byte introducer, so its text is kept.
pub(crate) fn strip_ansi_into(line: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(line.len());
    let mut rest = line;
    while let Some(at) = memchr(ESC, rest) {
        let (text, seq) = rest.split_at(at);
        out.extend_from_slice(text);
        let skip = escape_len(seq).min(seq.len());
        rest = seq.get(skip..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
}

/// Length of the escape sequence at the start of `seq` (`seq[0]` is ESC).
fn escape_len(seq: &[u8]) -> usize {
    match seq.get(1) {
        None => 1,
        Some(b'[') => {
            let mut i = 2;
            while let Some(&c) = seq.get(i) {
                match c {
                    // Parameter and intermediate bytes.
                    0x20..=0x3f => i += 1,
                    // Final byte.
                    0x40..=0x7e => return i + 1,
                    // Not part of a CSI: the sequence ends here, the byte is kept.
                    _ => return i,
                }
            }
            i
        }
        Some(b']' | b'P' | b'_' | b'^' | b'X') => {
            let mut i = 2;
            while let Some(&c) = seq.get(i) {
                if c == BEL {
                    return i + 1;
                }
                if c == ESC {
                    return if seq.get(i + 1) == Some(&b'\\') {
                        i + 2
                    } else {
                        2
                    };
                }
                i += 1;
            }
            2
        }
        Some(_) => {
            let mut i = 1;
            while let Some(0x20..=0x2f) = seq.get(i) {
                i += 1;
            }
            match seq.get(i) {
                Some(0x30..=0x7e) => i + 1,
                _ => i,
            }
        }
    }
}

/// Caches the day number of the last calendar date seen (log lines share dates).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DayCache {
    /// `y * 10_000 + m * 100 + d`; 0 means empty (month 0 never validates).
    key: u32,
    days: i64,
}

impl DayCache {
    /// Days since 1970-01-01 for a calendar date, `None` when the date does not exist.
    fn days(&mut self, year: u16, month: u8, day: u8) -> Option<i64> {
        let key = u32::from(year) * 10_000 + u32::from(month) * 100 + u32::from(day);
        if key == self.key {
            return Some(self.days);
        }
        let month = time::Month::try_from(month).ok()?;
        let date = time::Date::from_calendar_date(i32::from(year), month, day).ok()?;
        let days = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
        self.key = key;
        self.days = days;
        Some(days)
    }
}

const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

fn digit(c: u8) -> Option<u8> {
    c.is_ascii_digit().then(|| c - b'0')
}

fn two_digits(a: u8, b: u8) -> Option<u8> {
    Some(digit(a)? * 10 + digit(b)?)
}

/// Parses `YYYY-MM-DD?HH:MM:SS` (`?` = `sep`) at the start of `b` into seconds since the
/// epoch of the clock that printed it (no zone applied). Invalid dates/times are `None`.
fn parse_datetime(b: &[u8], sep: u8, cache: &mut DayCache) -> Option<i64> {
    let &[y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, s, h0, h1, b':', mi0, mi1, b':', s0, s1] =
        b.first_chunk::<19>()?
    else {
        return None;
    };
    if s != sep {
        return None;
    }
    let year = u16::from(two_digits(y0, y1)?) * 100 + u16::from(two_digits(y2, y3)?);
    let (month, day) = (two_digits(mo0, mo1)?, two_digits(d0, d1)?);
    let (hour, minute, second) = (
        two_digits(h0, h1)?,
        two_digits(mi0, mi1)?,
        two_digits(s0, s1)?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = cache.days(year, month, day)?;
    Some(days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second))
}

/// Parses an RFC 3339 timestamp at the start of `b` (`2025-11-24T13:55:34.123456789Z`,
/// 0..=9 fraction digits, `Z` or `±HH:MM`/`±HHMM`). Returns Unix nanoseconds and the
/// number of bytes used.
pub(crate) fn parse_rfc3339(b: &[u8], cache: &mut DayCache) -> Option<(i64, usize)> {
    let secs = parse_datetime(b, b'T', cache)?;
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(&c) = b.get(i) {
            let Some(d) = digit(c) else { break };
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(d);
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hh = two_digits(*b.get(i + 1)?, *b.get(i + 2)?)?;
            let mut j = i + 3;
            if b.get(j) == Some(&b':') {
                j += 1;
            }
            let mm = two_digits(*b.get(j)?, *b.get(j + 1)?)?;
            if hh > 23 || mm > 59 {
                return None;
            }
            i = j + 2;
            let off = i64::from(hh) * 3_600 + i64::from(mm) * 60;
            if sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let ns = (secs - offset_secs)
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)?;
    Some((ns, i))
}

/// A Docker `timestamps=true` prefix: RFC 3339 time then one space (or end of line).
/// Returns the time and the prefix length.
fn docker_timestamp(b: &[u8], cache: &mut DayCache) -> Option<(i64, usize)> {
    let (ns, len) = parse_rfc3339(b, cache)?;
    match b.get(len) {
        None => Some((ns, len)),
        Some(b' ') => Some((ns, len + 1)),
        Some(_) => None,
    }
}

/// A `docker compose logs` prefix `<service><spaces>| ` (or `|` at end of line).
/// Returns its length.
fn compose_prefix(b: &[u8]) -> Option<usize> {
    let name_len = b
        .iter()
        .take(MAX_SERVICE_LEN + 1)
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')))?;
    if name_len == 0 || name_len > MAX_SERVICE_LEN {
        return None;
    }
    let after = b.get(name_len..)?;
    let spaces = after.iter().position(|&c| c != b' ')?;
    if spaces == 0 || after.get(spaces) != Some(&b'|') {
        return None;
    }
    let end = name_len + spaces + 1;
    match b.get(end) {
        None => Some(end),
        Some(b' ') => Some(end + 1),
        Some(_) => None,
    }
}

/// Removes the transport prefixes of a line: at most one Docker timestamp and one compose
/// prefix, in either order. Returns the rest and the Docker time, if there was one.
pub(crate) fn strip_transport<'a>(
    mut line: &'a [u8],
    cache: &mut DayCache,
) -> (&'a [u8], Option<i64>) {
    let mut docker_ns = None;
    let mut compose_seen = false;
    for _ in 0..2 {
        let first_is_digit = line.first().is_some_and(u8::is_ascii_digit);
        if docker_ns.is_none() && first_is_digit {
            if let Some((ns, len)) = docker_timestamp(line, cache) {
                docker_ns = Some(ns);
                line = line.get(len..).unwrap_or_default();
                continue;
            }
        }
        if !compose_seen {
            if let Some(len) = compose_prefix(line) {
                compose_seen = true;
                line = line.get(len..).unwrap_or_default();
                continue;
            }
        }
        break;
    }
    (line, docker_ns)
}

/// The parts of an entry header line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// Node wall clock as seconds since the epoch (no zone applied yet).
    pub(crate) local_secs: i64,
    pub(crate) level: &'a str,
    pub(crate) logger: Option<&'a str>,
    pub(crate) version: Option<&'a str>,
    pub(crate) message: &'a [u8],
}

/// Parses an entry header: `YYYY-MM-DD HH:MM:SS` (an optional `.fraction` is accepted),
/// spaces, a level word, optional spaces, `:`, then a space or the end of the line. The
/// `LOGGER:VERSION` token is recognised when present; otherwise the message starts there.
pub(crate) fn parse_header<'a>(b: &'a [u8], cache: &mut DayCache) -> Option<Header<'a>> {
    if !b.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let local_secs = parse_datetime(b, b' ', cache)?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let spaces = skip_spaces(b, i);
    if spaces == i {
        return None;
    }
    i = spaces;
    let level_start = i;
    while b.get(i).is_some_and(u8::is_ascii_alphabetic) {
        i += 1;
    }
    let level_len = i - level_start;
    if level_len == 0 || level_len > MAX_LEVEL_LEN {
        return None;
    }
    let level = std::str::from_utf8(b.get(level_start..i)?).ok()?;
    i = skip_spaces(b, i);
    if b.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    match b.get(i) {
        None => {
            return Some(Header {
                local_secs,
                level,
                logger: None,
                version: None,
                message: &[],
            });
        }
        Some(b' ' | b'\t') => i += 1,
        Some(_) => return None,
    }
    let rest = b.get(skip_spaces(b, i)..).unwrap_or_default();
    let token_len = memchr(b' ', rest).unwrap_or(rest.len());
    let (token, after) = rest.split_at(token_len);
    match split_logger(token) {
        Some((logger, version)) => Some(Header {
            local_secs,
            level,
            logger: Some(logger),
            version,
            message: after.get(1..).unwrap_or_default(),
        }),
        None => Some(Header {
            local_secs,
            level,
            logger: None,
            version: None,
            message: rest,
        }),
    }
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Recognises `NAME` or `NAME:VERSION` as a logger token. `NAME` uses npm package-name
/// characters; it counts as a logger when it is scoped (`@...`) or carries a version.
fn split_logger(token: &[u8]) -> Option<(&str, Option<&str>)> {
    let (name, version) = match memchr(b':', token) {
        Some(at) => (token.get(..at)?, Some(token.get(at + 1..)?)),
        None => (token, None),
    };
    let is_name_char =
        |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'/' | b'.' | b'_' | b'-');
    if name.is_empty() || !name.iter().all(is_name_char) {
        return None;
    }
    let version = version.filter(|v| !v.is_empty());
    let version_ok = version.is_some_and(is_version);
    let scoped = name.first() == Some(&b'@');
    if !(version_ok || (scoped && version.is_none())) {
        return None;
    }
    // Only ASCII bytes were accepted above, so both conversions succeed.
    let name = std::str::from_utf8(name).ok()?;
    let version = match version {
        Some(v) => Some(std::str::from_utf8(v).ok()?),
        None => None,
    };
    Some((name, version))
}

/// Semver-like: starts with a digit, contains a dot, only `[0-9A-Za-z.+-]`.
fn is_version(v: &[u8]) -> bool {
    v.first().is_some_and(u8::is_ascii_digit)
        && v.contains(&b'.')
        && v.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> String {
        let mut out = Vec::new();
        strip_ansi_into(s.as_bytes(), &mut out);
        String::from_utf8(out).expect("utf8")
    }

    fn header(s: &str) -> Option<Header<'_>> {
        parse_header(s.as_bytes(), &mut DayCache::default())
    }

    #[test]
    fn colour_codes_around_the_level_are_removed() {
        assert_eq!(
            strip("\x1b[90m2025-11-24 13:55:34\x1b[39m \x1b[32minfo\x1b[39m: x"),
            "2025-11-24 13:55:34 info: x"
        );
    }

    #[test]
    fn osc_and_short_escape_sequences_are_removed() {
        assert_eq!(
            strip("a\x1b]0;title\x07b\x1b]8;;http://x\x1b\\c\x1b(Bd\x1b=e"),
            "abcde"
        );
    }

    #[test]
    fn unterminated_escape_sequences_keep_the_following_text() {
        assert_eq!(strip("a\x1b[12"), "a");
        assert_eq!(strip("a\x1b[1\u{e9}"), "a\u{e9}");
        assert_eq!(strip("a\x1b]no terminator"), "ano terminator");
        assert_eq!(strip("end\x1b"), "end");
    }

    #[test]
    fn docker_timestamp_with_nanoseconds_is_parsed() {
        let (ns, len) = docker_timestamp(
            b"2025-11-24T13:55:34.123456789Z rest",
            &mut DayCache::default(),
        )
        .expect("timestamp");
        assert_eq!(ns, 1_763_992_534_123_456_789);
        assert_eq!(len, 31);
    }

    #[test]
    fn docker_timestamp_accepts_short_fractions_and_offsets() {
        let mut c = DayCache::default();
        assert_eq!(
            parse_rfc3339(b"2025-11-24T13:55:34.5Z", &mut c),
            Some((1_763_992_534_500_000_000, 22))
        );
        assert_eq!(
            parse_rfc3339(b"2025-11-24T14:55:34+01:00", &mut c),
            Some((1_763_992_534_000_000_000, 25))
        );
        assert_eq!(
            parse_rfc3339(b"2025-11-24T12:55:34-0100", &mut c),
            Some((1_763_992_534_000_000_000, 24))
        );
        assert_eq!(parse_rfc3339(b"2025-11-24T13:55:34", &mut c), None);
        assert_eq!(parse_rfc3339(b"2025-02-30T13:55:34Z", &mut c), None);
    }

    #[test]
    fn compose_prefix_is_recognised_before_and_after_the_docker_timestamp() {
        let mut c = DayCache::default();
        let (rest, ns) = strip_transport(b"runner-node  | 2025-11-24T13:55:34Z hello", &mut c);
        assert_eq!((rest, ns), (&b"hello"[..], Some(1_763_992_534_000_000_000)));
        let (rest, ns) = strip_transport(b"2025-11-24T13:55:34Z runner-node  | hello", &mut c);
        assert_eq!((rest, ns), (&b"hello"[..], Some(1_763_992_534_000_000_000)));
        let (rest, ns) = strip_transport(b"runner-node  |", &mut c);
        assert_eq!((rest, ns), (&b""[..], None));
    }

    #[test]
    fn text_that_only_resembles_a_compose_prefix_is_kept() {
        let mut c = DayCache::default();
        for line in ["a|b", "    at x | y", "word |x", "Error: a | b"] {
            assert_eq!(strip_transport(line.as_bytes(), &mut c).0, line.as_bytes());
        }
    }

    #[test]
    fn header_with_wallet_logger_and_prerelease_version_is_split() {
        let h = header(
            "2025-11-24 13:55:34 info: @truebit/worker-runner-node-0x558f4b6bd6e2a6e1b5a0c1c2d3e4f5a6b7c8c5d7:2.5.0-beta.3 Hello world",
        )
        .expect("header");
        assert_eq!(h.local_secs, 1_763_992_534);
        assert_eq!(h.level, "info");
        assert_eq!(
            h.logger,
            Some("@truebit/worker-runner-node-0x558f4b6bd6e2a6e1b5a0c1c2d3e4f5a6b7c8c5d7")
        );
        assert_eq!(h.version, Some("2.5.0-beta.3"));
        assert_eq!(h.message, b"Hello world");
    }

    #[test]
    fn header_tolerates_space_before_the_level_colon() {
        let h = header("2025-11-24 13:55:34 warn : @truebit/worker-runner-node:2.4.0 x")
            .expect("header");
        assert_eq!(
            (h.level, h.version, h.message),
            ("warn", Some("2.4.0"), &b"x"[..])
        );
    }

    #[test]
    fn header_without_logger_keeps_the_whole_message() {
        let h = header("2025-11-24 13:55:34 error: Something: went wrong").expect("header");
        assert_eq!(
            (h.logger, h.version, h.message),
            (None, None, &b"Something: went wrong"[..])
        );
        let h = header("2025-11-24 13:55:34 info: @truebit/worker-runner-node no version")
            .expect("header");
        assert_eq!(
            (h.logger, h.version, h.message),
            (
                Some("@truebit/worker-runner-node"),
                None,
                &b"no version"[..]
            )
        );
    }

    #[test]
    fn lines_without_a_valid_timestamp_and_level_are_not_headers() {
        for line in [
            "2025-13-24 13:55:34 info: x",
            "2025-02-29 13:55:34 info: x",
            "2025-11-24 24:00:00 info: x",
            "2025-11-24 13:55:34 info x",
            "2025-11-24 13:55:34info: x",
            "2025-11-24 13:55:34 : x",
            "2025-11-24 13:55:34 info:x",
            "2025-11-24",
            "    at foo (bar.js:1:2)",
        ] {
            assert_eq!(header(line), None, "{line}");
        }
    }

    #[test]
    fn leap_day_is_a_valid_date() {
        assert_eq!(
            header("2024-02-29 00:00:00 info: x").map(|h| h.local_secs),
            Some(1_709_164_800)
        );
    }
}
