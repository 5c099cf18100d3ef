//! The period an uptime proof covers: whole UTC days, given as `YYYY-MM-DD` (both
//! inclusive) by the operator, as midnights (the end exclusive) on the wire.

use time::macros::format_description;
use time::Date;
use truebit_protocol::proof::{DAY, MAX_PROOF_DAYS};

/// Days a proof covers when the operator names none: the last 29 whole days, all that a
/// hub with the default 30-day retention still holds whole (its 30th day back is partly
/// deleted, and a replica refuses a day it no longer holds in full).
pub const DEFAULT_PROOF_DAYS: u64 = 29;

/// Whole UTC days: `from` the first day's midnight, `to` the midnight after the last
/// day (Unix seconds). Always at least one day, at most [`MAX_PROOF_DAYS`], and closed
/// (`to` is at most today's midnight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofPeriod {
    from: u64,
    to: u64,
}

/// Why the days asked for cannot be proved. `parameter` names the setting at fault
/// (`from` or `to`), for the API's error shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{parameter} must be a UTC day as YYYY-MM-DD, like 2025-11-24, not {value:?}")]
    BadDate {
        parameter: &'static str,
        value: String,
    },
    #[error("the last day ({to}) is before the first ({from})")]
    Reversed { from: String, to: String },
    #[error("at most {MAX_PROOF_DAYS} days per proof, not {days}: ask for several periods")]
    TooLong { days: u64 },
    #[error("{to} has not ended yet (UTC): a proof covers whole days up to yesterday")]
    NotClosed { to: String },
}

impl PeriodError {
    /// The parameter the error is about.
    pub fn parameter(&self) -> &'static str {
        match self {
            PeriodError::BadDate { parameter, .. } => parameter,
            PeriodError::Reversed { .. }
            | PeriodError::TooLong { .. }
            | PeriodError::NotClosed { .. } => "to",
        }
    }
}

/// `YYYY-MM-DD` -> the day's midnight (Unix seconds), days of 1970 to 2199.
pub fn parse_day(parameter: &'static str, value: &str) -> Result<u64, PeriodError> {
    let bad = || PeriodError::BadDate {
        parameter,
        value: value.chars().take(40).collect(),
    };
    let date = Date::parse(value.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| bad())?;
    if !(1970..2200).contains(&date.year()) {
        return Err(bad());
    }
    let secs = date.midnight().assume_utc().unix_timestamp();
    u64::try_from(secs).map_err(|_| bad())
}

/// The midnight (Unix seconds) as `YYYY-MM-DD`.
pub fn format_day(midnight: u64) -> String {
    let secs = i64::try_from(midnight).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_else(|| midnight.to_string())
}

impl ProofPeriod {
    /// The days from `from` to `to` (both `YYYY-MM-DD`, inclusive), checked against
    /// `now` (Unix seconds). Without `to`: up to yesterday; without `from`: the
    /// [`DEFAULT_PROOF_DAYS`] days up to `to`.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: u64) -> Result<Self, PeriodError> {
        let today = now - now % DAY;
        let end = match to.filter(|s| !s.trim().is_empty()) {
            Some(day) => parse_day("to", day)? + DAY,
            None => today,
        };
        let start = match from.filter(|s| !s.trim().is_empty()) {
            Some(day) => parse_day("from", day)?,
            None => end.saturating_sub(DEFAULT_PROOF_DAYS * DAY),
        };
        ProofPeriod::new(start, end, now)
    }

    /// `from` and `to` as midnights (`to` exclusive), checked against `now`.
    pub fn new(from: u64, to: u64, now: u64) -> Result<Self, PeriodError> {
        let today = now - now % DAY;
        if to <= from {
            return Err(PeriodError::Reversed {
                from: format_day(from),
                to: format_day(to.saturating_sub(DAY)),
            });
        }
        let days = (to - from).div_ceil(DAY);
        if days > MAX_PROOF_DAYS {
            return Err(PeriodError::TooLong { days });
        }
        if to > today {
            return Err(PeriodError::NotClosed {
                to: format_day(to.saturating_sub(DAY)),
            });
        }
        Ok(ProofPeriod { from, to })
    }

    /// The first day's midnight (Unix seconds).
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The midnight after the last day (Unix seconds).
    pub fn to(&self) -> u64 {
        self.to
    }

    pub fn days(&self) -> u64 {
        (self.to - self.from) / DAY
    }

    /// The first day, `YYYY-MM-DD`.
    pub fn first_day(&self) -> String {
        format_day(self.from)
    }

    /// The last day (inclusive), `YYYY-MM-DD`.
    pub fn last_day(&self) -> String {
        format_day(self.to - DAY)
    }

    /// `uptime-proof-FIRST-LAST.json`.
    pub fn file_name(&self) -> String {
        format!("uptime-proof-{}-{}.json", self.first_day(), self.last_day())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-24T13:55:40Z.
    const NOW: u64 = 1_763_992_540;
    /// 2025-11-24T00:00:00Z.
    const TODAY: u64 = 1_763_942_400;

    /// The default period must be one a hub with the default retention answers: its 30th
    /// day back is partly deleted, so a 30-day default was refused `before-retention`.
    #[test]
    fn the_default_period_is_one_a_hub_with_the_default_retention_proves() {
        use truebit_protocol::proof::{ProofRequest, RefusalCode, SealSecret};
        use truebit_protocol::sign::SigningKey;
        let key = SigningKey::from_bytes(&[9; 32]);
        let reply = SealSecret::generate(&mut rand::rngs::OsRng).public();
        let retention = u64::from(truebit_aggregator::config::DEFAULT_RETENTION_DAYS) * DAY;
        // Any time of the day, as the hub computes it (aggregator::proof).
        for now in [TODAY + 1, NOW, TODAY + DAY - 301] {
            let p = ProofPeriod::parse(None, None, now).expect("default");
            let request = ProofRequest::new(&key, p.from(), p.to(), now - now % 300, reply);
            assert_eq!(
                request.check_clock(now, now - retention),
                Ok(()),
                "at {now}"
            );
            let longer = ProofRequest::new(&key, p.from() - DAY, p.to(), now - now % 300, reply);
            assert_eq!(
                longer.check_clock(now, now - retention),
                Err(RefusalCode::BeforeRetention),
                "one day more is no longer whole on the hub"
            );
        }
    }

    #[test]
    fn without_days_the_last_twenty_nine_whole_days_are_proved() {
        let p = ProofPeriod::parse(None, None, NOW).expect("default");
        assert_eq!(p.to(), TODAY);
        assert_eq!(p.from(), TODAY - 29 * DAY);
        assert_eq!(p.days(), 29);
        assert_eq!(p.first_day(), "2025-10-26");
        assert_eq!(p.last_day(), "2025-11-23");
        assert_eq!(p.file_name(), "uptime-proof-2025-10-26-2025-11-23.json");
    }

    #[test]
    fn named_days_are_inclusive() {
        let p = ProofPeriod::parse(Some("2025-11-01"), Some("2025-11-01"), NOW).expect("one day");
        assert_eq!(p.days(), 1);
        assert_eq!(p.from(), parse_day("from", "2025-11-01").expect("day"));
        assert_eq!(p.to(), p.from() + DAY);
        let p = ProofPeriod::parse(Some("2025-10-24"), Some("2025-11-23"), NOW).expect("31 days");
        assert_eq!(p.days(), 31);
        let p = ProofPeriod::parse(None, Some("2025-11-10"), NOW).expect("to only");
        assert_eq!(p.first_day(), "2025-10-13");
        assert_eq!(p.last_day(), "2025-11-10");
    }

    #[test]
    fn bad_days_and_ranges_name_what_is_wrong() {
        let e = ProofPeriod::parse(Some("24.11.2025"), None, NOW).expect_err("format");
        assert_eq!(e.parameter(), "from");
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        let e = ProofPeriod::parse(None, Some("2025-02-30"), NOW).expect_err("no such day");
        assert_eq!(e.parameter(), "to");
        let e = ProofPeriod::parse(Some("2025-11-10"), Some("2025-11-09"), NOW).expect_err("rev");
        assert!(matches!(e, PeriodError::Reversed { .. }), "{e}");
        let e = ProofPeriod::parse(Some("2025-10-23"), Some("2025-11-23"), NOW).expect_err("32");
        assert_eq!(e, PeriodError::TooLong { days: 32 });
        let e = ProofPeriod::parse(Some("2025-11-20"), Some("2025-11-24"), NOW).expect_err("today");
        assert_eq!(
            e,
            PeriodError::NotClosed {
                to: "2025-11-24".into()
            }
        );
        assert!(ProofPeriod::parse(Some("1969-12-31"), None, NOW).is_err());
    }
}
