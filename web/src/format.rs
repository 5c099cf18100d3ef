//! How figures read on a page: thousands separators, rates, durations, sizes, times.
//! Missing values are an em dash, never "0" or "NaN".

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// Shown where a figure is not known.
pub const NONE: &str = "—";

/// `1234567` -> `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// [`thousands`] of an optional figure.
pub fn opt_thousands(n: Option<i64>) -> String {
    n.map_or_else(|| NONE.to_owned(), thousands)
}

/// `0.9876` -> `98.8 %`; `None` -> em dash.
pub fn percent(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r.is_finite() => {
            let p = r * 100.0;
            if p == 100.0 || p == 0.0 {
                format!("{p:.0} %")
            } else {
                format!("{p:.1} %")
            }
        }
        _ => NONE.to_owned(),
    }
}

/// Large figures in short form: `950`, `12.3K`, `4.5M`, `1.2B`, `3.4T`.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    let (div, suffix) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "B")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "K")
    } else {
        (1.0, "")
    };
    let x = v / div;
    if suffix.is_empty() {
        if (x - x.round()).abs() < 1e-9 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}{suffix}")
    } else {
        format!("{x:.1}{suffix}")
    }
}

/// A duration in milliseconds: `850 ms`, `1.25 s`, `3 min 05 s`, `2 h 10 min`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1_000.0;
        if s < 10.0 {
            format!("{s:.2} s")
        } else {
            format!("{s:.1} s")
        }
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        let days = ms / 86_400_000;
        let hours = (ms % 86_400_000) / 3_600_000;
        let mins = (ms % 3_600_000) / 60_000;
        if days > 0 {
            format!("{days} d {hours} h")
        } else {
            format!("{hours} h {mins:02} min")
        }
    }
}

/// [`duration_ms`] of an optional figure.
pub fn opt_duration_ms(ms: Option<u64>) -> String {
    ms.map_or_else(|| NONE.to_owned(), duration_ms)
}

/// A size in bytes, binary units: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// How long ago `then_ns` was at `now_ns`: `just now`, `42 s ago`, `5 min ago`, …
pub fn age(then_ns: i64, now_ns: i64) -> String {
    let secs = (now_ns - then_ns).max(0) / 1_000_000_000;
    if secs < 2 {
        "just now".to_owned()
    } else if secs < 120 {
        format!("{secs} s ago")
    } else if secs < 7_200 {
        format!("{} min ago", secs / 60)
    } else if secs < 172_800 {
        format!("{} h ago", secs / 3_600)
    } else {
        format!("{} days ago", secs / 86_400)
    }
}

fn datetime(ns: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).ok()
}

/// `ns` in `format`, if it is a representable time.
fn formatted(ns: i64, format: &[BorrowedFormatItem<'_>]) -> Option<String> {
    datetime(ns)?.format(format).ok()
}

/// `2026-11-21 10:05:03` (UTC), for display.
pub fn utc(ns: i64) -> String {
    formatted(
        ns,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap_or_else(|| NONE.to_owned())
}

/// `2026-11-21T10:05:03Z`, for `<time datetime>` (scripts show it in local time).
pub fn iso(ns: i64) -> String {
    formatted(
        ns,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
    )
    .unwrap_or_default()
}

/// `10:00` (UTC hour of day), for chart axes.
pub fn hour_label(ns: i64) -> String {
    datetime(ns).map_or_else(String::new, |t| format!("{:02}:00", t.hour()))
}

/// `Nov 21` (UTC day), for chart axes.
pub fn day_label(ns: i64) -> String {
    datetime(ns).map_or_else(String::new, |t| {
        let m = t.month().to_string();
        format!("{} {}", &m[..3.min(m.len())], t.day())
    })
}

/// An error and its causes in one line, `outer: cause: root`. A cause the text already
/// ends with (an error that shows its source in its own message) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

/// The first characters of a long id, for tables (the full id stays in links and titles).
/// The escaper of every HTML template (`askama.toml`): askama's HTML escaping, and each
/// Unicode direction control (embeddings, overrides, isolates, marks) replaced by U+FFFD,
/// so that text from the node (a log line, a chain id) cannot reverse a cell or reorder
/// the page around it. Templates show node text in elements the CSS isolates
/// (`unicode-bidi: plaintext`), so right-to-left text itself still reads correctly.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeHtml;

/// Whether `c` changes the direction of the text around it.
pub fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl askama::filters::Escaper for NodeHtml {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, string: &str) -> std::fmt::Result {
        let mut rest = string;
        while let Some(at) = rest.find(is_direction_control) {
            askama::filters::Html.write_escaped_str(&mut dest, &rest[..at])?;
            dest.write_char('\u{fffd}')?;
            let width = rest[at..].chars().next().map_or(1, char::len_utf8);
            rest = &rest[at + width..];
        }
        askama::filters::Html.write_escaped_str(dest, rest)
    }
}

/// `s` cut to `max` characters, with `…` when something was left out (the full value goes
/// in a `title` or the detail page).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let head: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

pub fn short_id(id: &str) -> String {
    if id.chars().count() <= 12 {
        id.to_owned()
    } else {
        let head: String = id.chars().take(8).collect();
        format!("{head}…")
    }
}

/// A wallet address with the middle left out: `0x1234…abcd`.
pub fn short_address(a: &str) -> String {
    let n = a.chars().count();
    if n <= 14 {
        a.to_owned()
    } else {
        let head: String = a.chars().take(6).collect();
        let tail: String = a.chars().skip(n - 4).collect();
        format!("{head}…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-12_345), "-12,345");
    }

    #[test]
    fn rates_show_one_decimal_and_unknown_is_a_dash() {
        assert_eq!(percent(Some(0.9876)), "98.8 %");
        assert_eq!(percent(Some(1.0)), "100 %");
        assert_eq!(percent(None), NONE);
        assert_eq!(percent(Some(f64::NAN)), NONE);
    }

    #[derive(Debug)]
    struct Failure(&'static str, Option<Box<Failure>>);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_chain_shows_each_cause_once() {
        let root = Failure("permission denied", None);
        let shows_its_cause = Failure(
            "cannot read x.toml: permission denied",
            Some(Box::new(root)),
        );
        let outer = Failure("configuration", Some(Box::new(shows_its_cause)));
        assert_eq!(
            error_chain(&outer),
            "configuration: cannot read x.toml: permission denied"
        );
        let quiet = Failure("cannot connect", Some(Box::new(Failure("refused", None))));
        assert_eq!(error_chain(&quiet), "cannot connect: refused");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(1_250), "1.25 s");
        assert_eq!(duration_ms(42_000), "42.0 s");
        assert_eq!(duration_ms(185_000), "3 min 05 s");
        assert_eq!(duration_ms(7_800_000), "2 h 10 min");
        assert_eq!(duration_ms(90_000_000), "1 d 1 h");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_536), "1.5 KiB");
        assert_eq!(bytes(20 * 1024 * 1024), "20.0 MiB");
    }

    #[test]
    fn compact_figures_keep_three_significant_digits() {
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(12_345.0), "12.3K");
        assert_eq!(compact(4_500_000.0), "4.5M");
        assert_eq!(compact(250_000_000.0), "250M");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(12_266_629_224_967.0), "12.3T");
    }

    #[test]
    fn ages_and_times_read_naturally() {
        let s = 1_000_000_000;
        assert_eq!(age(0, s), "just now");
        assert_eq!(age(0, 42 * s), "42 s ago");
        assert_eq!(age(0, 300 * s), "5 min ago");
        assert_eq!(age(0, 3 * 86_400 * s), "3 days ago");
        let t = 1_763_719_503 * s; // 2025-11-21 10:05:03 UTC
        assert_eq!(utc(t), "2025-11-21 10:05:03");
        assert_eq!(iso(t), "2025-11-21T10:05:03Z");
        assert_eq!(hour_label(t), "10:00");
        assert_eq!(day_label(t), "Nov 21");
    }

    #[test]
    fn long_ids_and_addresses_are_shortened() {
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(
            short_id("0b5e5cf1-2a3b-4c5d-8e9f-0123456789ab"),
            "0b5e5cf1…"
        );
        assert_eq!(
            short_address("0x1234567890abcdef1234567890abcdef12345678"),
            "0x1234…5678"
        );
    }
}
