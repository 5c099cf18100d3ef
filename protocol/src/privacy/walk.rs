//! One pass over the exact bytes: a small JSON tokenizer that checks every key and
//! value against the schema allowlist and every free string against the denied
//! patterns.
//!
//! It sees every string in the bytes, including duplicate keys that a JSON parser would
//! silently collapse and escaped forms (`\u0031.2.3.4` is checked as `1.2.3.4`). A
//! denied pattern stops the walk at once; schema violations are remembered (the first
//! one wins) and reported only if no pattern turns up, so a planted secret is reported
//! as what it is (within bounded work: strings are scanned up to 4 KiB, and after the
//! first schema violation at most 64 KiB more, counting 64 bytes per value, are
//! checked).

use std::borrow::Cow;
use std::fmt::Write as _;

use super::pattern::{classify, Pattern};
use super::schema::{ObjectSchema, Rule};
use super::PrivacyViolation;
use crate::window::{is_window_start, WINDOW_SECS};

/// Deeper nesting than the schema ever needs is malformed (and bounds the recursion).
const MAX_DEPTH: usize = 8;

/// Strings are pattern-checked up to this many bytes. Longer strings are never valid
/// in any field, so the report is rejected either way; the cap bounds the work.
const MAX_SCAN_STRING: usize = 4 * 1024;

/// Once a schema violation is known the report is rejected whatever else it holds;
/// pattern checks go on (to name a planted secret precisely) for at most this many
/// more string bytes, so a hostile report cannot buy seconds of regex work.
const SCAN_BUDGET_AFTER_VIOLATION: usize = 64 * 1024;

/// What checking one string or number costs in budget bytes beyond its length.
const SCAN_OVERHEAD_PER_VALUE: usize = 64;

/// Numbers this large (in absolute value) look like Unix times from 2000 on; only the
/// window field may hold one.
const UNIX_TIME_FLOOR: f64 = 946_684_800.0;

#[derive(Clone, Copy)]
enum Seg {
    Key(&'static str),
    UnknownKey,
    Index(usize),
}

struct Walker<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
    first_schema_violation: Option<PrivacyViolation>,
    scan_budget: usize,
}

type Walk<T> = Result<T, PrivacyViolation>;

/// Walks `text` (one JSON value) against `root`.
pub(crate) fn walk(text: &str, root: &'static ObjectSchema) -> Result<(), PrivacyViolation> {
    let mut w = Walker {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        path: Vec::with_capacity(MAX_DEPTH),
        first_schema_violation: None,
        scan_budget: SCAN_BUDGET_AFTER_VIOLATION,
    };
    w.skip_ws();
    w.value(Some(Rule::Object(root)), 0)?;
    w.skip_ws();
    if w.pos != w.bytes.len() {
        return Err(w.malformed("trailing data after the report"));
    }
    match w.first_schema_violation {
        Some(v) => Err(v),
        None => Ok(()),
    }
}

impl<'a> Walker<'a> {
    fn malformed(&self, detail: &'static str) -> PrivacyViolation {
        PrivacyViolation::Malformed {
            offset: self.pos,
            detail,
        }
    }

    fn path_string(&self, extra: Option<Seg>) -> String {
        let mut out = String::new();
        for seg in self.path.iter().copied().chain(extra) {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::UnknownKey => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str("<unknown key>");
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        if out.is_empty() {
            out.push_str("(report)");
        }
        out
    }

    fn pattern(&self, pattern: Pattern, extra: Option<Seg>) -> PrivacyViolation {
        PrivacyViolation::Pattern {
            path: self.path_string(extra),
            pattern,
        }
    }

    /// Once a schema violation is known, spends `cost` of the scan budget; when it is
    /// exhausted, stops the walk with that violation.
    fn charge(&mut self, cost: usize) -> Walk<()> {
        if self.first_schema_violation.is_some() {
            if self.scan_budget < cost {
                if let Some(v) = self.first_schema_violation.take() {
                    return Err(v);
                }
            }
            self.scan_budget = self.scan_budget.saturating_sub(cost);
        }
        Ok(())
    }

    /// Checks `s` against the denied patterns (within the scan limits).
    fn scan(&mut self, s: &str, extra: Option<Seg>) -> Walk<()> {
        let mut end = s.len().min(MAX_SCAN_STRING);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let s = &s[..end];
        // Each string costs its length plus a fixed overhead (the per-call cost of the
        // checks), so many tiny strings exhaust the budget too.
        self.charge(s.len() + SCAN_OVERHEAD_PER_VALUE)?;
        match classify(s) {
            Some(p) => Err(self.pattern(p, extra)),
            None => Ok(()),
        }
    }

    /// Remembers a schema violation unless an earlier one is already remembered.
    fn schema_violation(&mut self, make: impl FnOnce(String) -> PrivacyViolation) {
        if self.first_schema_violation.is_none() {
            let path = self.path_string(None);
            self.first_schema_violation = Some(make(path));
        }
    }

    fn mismatch(&mut self, rule: Option<Rule>) {
        if let Some(rule) = rule {
            let expected = rule.expected();
            self.schema_violation(|path| PrivacyViolation::InvalidValue { path, expected });
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, detail: &'static str) -> Walk<()> {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.malformed(detail))
        }
    }

    fn value(&mut self, rule: Option<Rule>, depth: usize) -> Walk<()> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("nested too deeply"));
        }
        match self.bytes.get(self.pos) {
            Some(b'{') => match rule {
                Some(Rule::Object(schema)) => self.object(Some(schema), depth),
                other => {
                    self.mismatch(other);
                    self.object(None, depth)
                }
            },
            Some(b'[') => match rule {
                Some(Rule::Array { item, max }) => self.array(Some(item), max, depth),
                other => {
                    self.mismatch(other);
                    self.array(None, usize::MAX, depth)
                }
            },
            Some(b'"') => {
                let s = self.string()?;
                self.string_value(rule, &s)
            }
            Some(b't') => self.literal("true", rule, matches!(rule, Some(Rule::OptionalBool))),
            Some(b'f') => self.literal("false", rule, matches!(rule, Some(Rule::OptionalBool))),
            Some(b'n') => self.literal("null", rule, rule.is_some_and(|r| r.nullable())),
            Some(b'-' | b'0'..=b'9') => self.number(rule),
            Some(_) => Err(self.malformed("expected a JSON value")),
            None => Err(self.malformed("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &'static str, rule: Option<Rule>, allowed: bool) -> Walk<()> {
        if !self.bytes[self.pos..].starts_with(word.as_bytes()) {
            return Err(self.malformed("invalid literal"));
        }
        self.pos += word.len();
        if !allowed {
            self.mismatch(rule);
        }
        Ok(())
    }

    fn object(&mut self, schema: Option<&'static ObjectSchema>, depth: usize) -> Walk<()> {
        self.pos += 1; // '{'
        let mut seen: u64 = 0;
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.bytes.get(self.pos) != Some(&b'"') {
                    return Err(self.malformed("expected an object key"));
                }
                let key = self.string()?;
                let found = schema.and_then(|s| {
                    s.fields
                        .iter()
                        .enumerate()
                        .find(|(_, f)| f.key == key.as_ref())
                });
                let rule = match found {
                    Some((i, f)) => {
                        if seen & (1 << i) != 0 {
                            self.path.push(Seg::Key(f.key));
                            self.schema_violation(|path| PrivacyViolation::DuplicateField { path });
                            self.path.pop();
                        }
                        seen |= 1 << i;
                        self.path.push(Seg::Key(f.key));
                        Some(f.rule)
                    }
                    None => {
                        self.scan(&key, Some(Seg::UnknownKey))?;
                        self.path.push(Seg::UnknownKey);
                        self.schema_violation(|path| PrivacyViolation::UnknownField { path });
                        None
                    }
                };
                self.expect(b':', "expected `:` after an object key")?;
                self.skip_ws();
                self.value(rule, depth + 1)?;
                self.path.pop();
                self.skip_ws();
                match self.bytes.get(self.pos) {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.malformed("expected `,` or `}` in an object")),
                }
            }
        }
        if let Some(schema) = schema {
            for (i, f) in schema.fields.iter().enumerate() {
                if seen & (1 << i) == 0 {
                    self.path.push(Seg::Key(f.key));
                    self.schema_violation(|path| PrivacyViolation::MissingField { path });
                    self.path.pop();
                }
            }
        }
        Ok(())
    }

    fn array(&mut self, item: Option<&'static ObjectSchema>, max: usize, depth: usize) -> Walk<()> {
        self.pos += 1; // '['
        let mut len = 0usize;
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.path.push(Seg::Index(len));
            self.value(item.map(Rule::Object), depth + 1)?;
            self.path.pop();
            len += 1;
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.malformed("expected `,` or `]` in an array")),
            }
        }
        if len > max {
            self.schema_violation(|path| PrivacyViolation::TooManyItems { path, max });
        }
        Ok(())
    }

    /// Reads a string token at `pos` (which is at `"`), decoding escapes only if any.
    fn string(&mut self) -> Walk<Cow<'a, str>> {
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            match self.bytes.get(i) {
                None => {
                    self.pos = i;
                    return Err(self.malformed("unterminated string"));
                }
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(&b) if b < 0x20 => {
                    self.pos = i;
                    return Err(self.malformed("control character in a string"));
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        // `start` follows and `i` is an ASCII quote, so both are char boundaries.
        let raw = &self.text[start..i];
        if escaped {
            unescape(raw)
                .map(Cow::Owned)
                .ok_or_else(|| self.malformed("invalid escape in a string"))
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    fn string_value(&mut self, rule: Option<Rule>, s: &str) -> Walk<()> {
        if rule.is_some_and(|r| r.accepts_str(s)) {
            return Ok(());
        }
        self.scan(s, None)?;
        match rule {
            Some(Rule::Label { bucket: true, .. }) => {
                self.schema_violation(|path| PrivacyViolation::BadBucket { path })
            }
            other => self.mismatch(other),
        }
        Ok(())
    }

    fn number(&mut self, rule: Option<Rule>) -> Walk<()> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        let token = &self.text[start..self.pos];
        if !is_json_number(token) {
            return Err(self.malformed("invalid number"));
        }
        self.charge(token.len() + SCAN_OVERHEAD_PER_VALUE)?;
        let int: Option<u64> = if token.bytes().all(|b| b.is_ascii_digit()) {
            token.parse().ok()
        } else {
            None
        };
        if let Some(Rule::Window) = rule {
            return match int {
                Some(secs) if is_window_start(secs) => Ok(()),
                Some(secs) if secs % WINDOW_SECS == 0 => {
                    self.mismatch(rule);
                    Ok(())
                }
                _ => Err(self.pattern(Pattern::Timestamp, None)),
            };
        }
        let value: f64 = match int {
            Some(n) => n as f64,
            None => token.parse().unwrap_or(f64::INFINITY),
        };
        if value.abs() >= UNIX_TIME_FLOOR {
            return Err(self.pattern(Pattern::Timestamp, None));
        }
        let ok = match rule {
            None => true,
            Some(Rule::Version) => int == Some(crate::report::V2::NUMBER),
            Some(Rule::Count { max }) => int.is_some_and(|n| n <= max),
            Some(Rule::Chain) => int.is_some(), // the range is the Unix-time floor above
            Some(_) => false,
        };
        if !ok {
            self.mismatch(rule);
        }
        Ok(())
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - s
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Decodes JSON string escapes; `None` for invalid escapes or lone surrogates.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            _ => return None,
        };
        out.push(decoded);
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_number_grammar() {
        for ok in [
            "0",
            "1",
            "-1",
            "1.5",
            "1e9",
            "1E+9",
            "-0.0e-1",
            "1717243200",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "+1", "1-2", "--1", "1.2.3"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn unescape_decodes_what_json_allows_and_nothing_else() {
        assert_eq!(unescape(r"\u0031.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(unescape(r#"a\"b\\c\/d\n"#).as_deref(), Some("a\"b\\c/d\n"));
        assert_eq!(unescape(r"\ud83d\ude00").as_deref(), Some("\u{1F600}"));
        assert_eq!(unescape(r"\ud83d"), None);
        assert_eq!(unescape(r"\ude00"), None);
        assert_eq!(unescape(r"\x41"), None);
        assert_eq!(unescape(r"\u12"), None);
    }
}
