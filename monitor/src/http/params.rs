//! Query and path parameters: each route declares its parameters once ([`ParamSpec`]);
//! the same declarations validate requests and describe the route in the OpenAPI
//! document. Unknown, repeated or invalid parameters get a 400 that names the parameter
//! and says what is allowed.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::Uri;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ApiError;
use crate::store::query::PageKey;

/// Most rows a list route returns per page; larger `limit`s are refused.
pub const MAX_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 50;

/// Latest time accepted (2200-01-01T00:00:00Z): times are kept as i64 nanoseconds.
const MAX_UNIX_SECS: i64 = 7_258_118_400;

#[derive(Clone, Copy, Debug)]
pub enum ParamKind {
    /// One of these words.
    Enum(&'static [&'static str]),
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// RFC 3339 (`2025-11-24T13:55:40Z`) or Unix seconds, 1970 to 2200.
    Time,
    /// A UTC day, `YYYY-MM-DD`, 1970 to 2199.
    Date,
    /// Free text up to `max_len` characters.
    Text { max_len: usize },
    /// An identifier: 1 to 128 of `A-Z a-z 0-9 - _ . :`.
    Id,
    /// An opaque cursor from a previous page's `next_cursor`.
    Cursor,
}

#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub description: &'static str,
}

impl ParamSpec {
    pub const fn new(name: &'static str, kind: ParamKind, description: &'static str) -> Self {
        ParamSpec {
            name,
            kind,
            description,
        }
    }

    /// What the parameter accepts, in words (for error messages).
    pub fn allowed(&self) -> String {
        match self.kind {
            ParamKind::Enum(words) => format!("one of {}", words.join(", ")),
            ParamKind::Int { min, max } => format!("an integer from {min} to {max}"),
            ParamKind::Time => {
                "an RFC 3339 time like 2025-11-24T13:55:40Z or Unix seconds, from 1970 to 2200"
                    .into()
            }
            ParamKind::Date => "a UTC day as YYYY-MM-DD, like 2025-11-24".into(),
            ParamKind::Text { max_len } => {
                format!("text of at most {max_len} characters, without NUL characters")
            }
            ParamKind::Id => {
                format!("1 to {MAX_ID_CHARS} characters of any text (percent-encoded in a URL)")
            }
            ParamKind::Cursor => "the next_cursor value of a previous page".into(),
        }
    }

    fn check(&self, value: &str) -> Result<(), ApiError> {
        let ok = match self.kind {
            ParamKind::Enum(words) => words.contains(&value),
            ParamKind::Int { min, max } => {
                value.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n))
            }
            ParamKind::Time => parse_time_ns(value).is_some(),
            ParamKind::Date => crate::federation::proof::parse_day(self.name, value).is_ok(),
            // A NUL would end the text for SQLite's LIKE: `a\0b` would match everything.
            ParamKind::Text { max_len } => {
                !value.is_empty() && !value.contains('\0') && value.chars().count() <= max_len
            }
            ParamKind::Id => is_id(value),
            ParamKind::Cursor => parse_cursor(value).is_some(),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad_parameter(
                self.name,
                format!("{} must be {}", self.name, self.allowed()),
            ))
        }
    }
}

/// Validated query parameters of one request.
#[derive(Debug)]
pub struct Params {
    values: HashMap<&'static str, String>,
}

impl Params {
    /// Parses and validates the query string of `uri` against `specs`.
    pub fn parse(uri: &Uri, specs: &[ParamSpec]) -> Result<Params, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|_| {
            ApiError::bad_parameter("query", "the query string is not valid URL encoding")
        })?;
        let mut values = HashMap::new();
        for (name, value) in pairs {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                let message = if known.is_empty() {
                    "this route takes no query parameters".to_owned()
                } else {
                    format!("unknown parameter; this route takes {}", known.join(", "))
                };
                return Err(ApiError::bad_parameter(truncate(&name), message));
            };
            spec.check(&value)?;
            if values.insert(spec.name, value).is_some() {
                return Err(ApiError::bad_parameter(
                    spec.name,
                    format!("{} is given more than once", spec.name),
                ));
            }
        }
        Ok(Params { values })
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.str(name).map(str::to_owned)
    }

    /// An `Int` parameter (validated by `parse`).
    pub fn int(&self, name: &str) -> Option<i64> {
        self.str(name).and_then(|v| v.parse().ok())
    }

    /// A `Time` parameter in Unix nanoseconds.
    pub fn time_ns(&self, name: &str) -> Option<i64> {
        self.str(name).and_then(parse_time_ns)
    }

    pub fn cursor(&self) -> Option<PageKey> {
        self.str("cursor").and_then(parse_cursor)
    }

    pub fn limit(&self) -> usize {
        usize::try_from(self.int("limit").unwrap_or(DEFAULT_PAGE)).unwrap_or(50)
    }
}

/// Validates one path parameter.
pub fn path_param(spec: &ParamSpec, value: &str) -> Result<(), ApiError> {
    spec.check(value)
}

fn truncate(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Longest id accepted in a path or a parameter.
pub const MAX_ID_CHARS: usize = 4096;

/// An execution or task id: whatever the node printed, so any text (URLs carry it
/// percent-encoded); only its length is bounded.
pub fn is_id(s: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&s.chars().count())
}

/// RFC 3339 or Unix seconds -> Unix nanoseconds, 1970 to 2200.
pub fn parse_time_ns(s: &str) -> Option<i64> {
    let secs_ns = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().ok()?;
        (secs <= MAX_UNIX_SECS).then_some(secs.checked_mul(1_000_000_000)?)?
    } else {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ns = t.unix_timestamp_nanos();
        if ns < 0 || ns > i128::from(MAX_UNIX_SECS) * 1_000_000_000 {
            return None;
        }
        i64::try_from(ns).ok()?
    };
    Some(secs_ns)
}

/// Cursors are `<time>.<id>`: opaque to clients, stable across releases of one API version.
pub fn format_cursor(key: PageKey) -> String {
    format!("{}.{}", key.time, key.id)
}

pub fn parse_cursor(s: &str) -> Option<PageKey> {
    let (time, id) = s.split_once('.')?;
    let valid = |p: &str| {
        let digits = p.strip_prefix('-').unwrap_or(p);
        !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if !valid(time) || !valid(id) {
        return None;
    }
    Some(PageKey {
        time: time.parse().ok()?,
        id: id.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec::new("limit", ParamKind::Int { min: 1, max: 500 }, ""),
        ParamSpec::new("status", ParamKind::Enum(&["completed", "failed"]), ""),
        ParamSpec::new("from", ParamKind::Time, ""),
        ParamSpec::new("cursor", ParamKind::Cursor, ""),
    ];

    fn parse(q: &str) -> Result<Params, ApiError> {
        Params::parse(&format!("/x?{q}").parse().expect("uri"), SPECS)
    }

    fn rejected_param(q: &str) -> String {
        match parse(q) {
            Err(ApiError::BadParameter { name, .. }) => name,
            other => panic!("{q}: expected a bad parameter, got {other:?}"),
        }
    }

    #[test]
    fn valid_parameters_are_typed() {
        let p = parse("limit=20&status=failed&from=2025-11-24T13:55:40Z&cursor=5.7").expect("ok");
        assert_eq!(p.limit(), 20);
        assert_eq!(p.str("status"), Some("failed"));
        assert_eq!(p.time_ns("from"), Some(1_763_992_540_000_000_000));
        assert_eq!(p.cursor(), Some(PageKey { time: 5, id: 7 }));
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(rejected_param("limit=0"), "limit");
        assert_eq!(rejected_param("limit=501"), "limit");
        assert_eq!(rejected_param("limit=ten"), "limit");
        assert_eq!(rejected_param("status=done"), "status");
        assert_eq!(rejected_param("from=yesterday"), "from");
        assert_eq!(rejected_param("from=99999999999"), "from");
        assert_eq!(rejected_param("cursor=abc"), "cursor");
        assert_eq!(rejected_param("stauts=failed"), "stauts");
        assert_eq!(rejected_param("limit=1&limit=2"), "limit");
    }

    #[test]
    fn unix_seconds_and_rfc3339_mean_the_same_time() {
        assert_eq!(
            parse_time_ns("1763992540"),
            parse_time_ns("2025-11-24T14:55:40+01:00")
        );
        assert_eq!(parse_time_ns("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn cursors_round_trip() {
        let k = PageKey {
            time: 1_763_992_540_000,
            id: 42,
        };
        assert_eq!(parse_cursor(&format_cursor(k)), Some(k));
        assert_eq!(parse_cursor("1.2.3"), None);
        assert_eq!(parse_cursor("99999999999999999999.1"), None);
    }
}
