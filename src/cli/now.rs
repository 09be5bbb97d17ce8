//! `--now`: the instant a command acts at. Every command reads it the same
//! way: an RFC 3339 instant (`2026-11-24T02:00:00+08:00`), or a local date
//! and time without an offset (`2026-11-24 09:00`, `2026-11-24T09:00:00`,
//! `2026-11-24`), read in the project's timezone; without `--now`, the
//! clock.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::Error;
use crate::model::Timestamp;

/// `--now` must lie between these: a run centuries away is a typo, and
/// its waits would run past the calendar.
pub const NOW_FROM: &str = "2000-01-01T00:00:00Z";
pub const NOW_UNTIL: &str = "2199-12-31T23:59:59Z";

/// What `--now` said, before the project's timezone is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Now {
    Instant(Timestamp),
    Local(NaiveDateTime),
}

const LOCAL_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
];

impl FromStr for Now {
    type Err = String;

    fn from_str(text: &str) -> Result<Now, String> {
        let text = text.trim();
        if let Ok(instant) = Timestamp::parse(text) {
            return Ok(Now::Instant(instant));
        }
        for format in LOCAL_FORMATS {
            if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
                return Ok(Now::Local(local));
            }
        }
        if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Now::Local(date.and_time(chrono::NaiveTime::MIN)));
        }
        Err(
            "not a time: give an RFC 3339 instant (2026-11-24T09:00:00+08:00) or a local date and time in the project's timezone (2026-11-24 09:00)"
                .to_string(),
        )
    }
}

impl Now {
    /// The instant, a local time read in `zone`.
    pub fn resolve(&self, zone: Tz) -> Result<DateTime<Utc>, Error> {
        let moment = match self {
            Now::Instant(instant) => *instant,
            Now::Local(local) => match zone.from_local_datetime(local) {
                chrono::LocalResult::Single(at) => Timestamp::from_utc(at.with_timezone(&Utc)),
                chrono::LocalResult::Ambiguous(first, second) => {
                    return Err(Error::Usage(format!(
                        "`--now {local}` happens twice in {zone} (the clocks go back): say which with an offset, {} or {}",
                        first.to_rfc3339(),
                        second.to_rfc3339()
                    )))
                }
                chrono::LocalResult::None => {
                    return Err(Error::Usage(format!(
                        "`--now {local}` does not exist in {zone} (the clocks go forward over it)"
                    )))
                }
            },
        };
        check_range(moment)
    }
}

/// The clock, to the second.
pub fn clock() -> Result<DateTime<Utc>, Error> {
    check_range(Timestamp::now())
}

fn check_range(moment: Timestamp) -> Result<DateTime<Utc>, Error> {
    let (from, until) = (
        Timestamp::parse(NOW_FROM).unwrap_or(Timestamp::MIN),
        Timestamp::parse(NOW_UNTIL).unwrap_or(Timestamp::MAX),
    );
    if moment < from || moment > until {
        return Err(Error::Usage(format!(
            "`--now {moment}` is outside the times journeyc runs at ({NOW_FROM} to {NOW_UNTIL})"
        )));
    }
    Ok(moment.utc())
}

/// `--now` if given, else the clock.
pub fn resolve(now: Option<&Now>, zone: Tz) -> Result<DateTime<Utc>, Error> {
    match now {
        Some(now) => now.resolve(zone),
        None => clock(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> String {
        let zone: Tz = "Asia/Shanghai".parse().unwrap();
        match text.parse::<Now>().map(|now| now.resolve(zone)) {
            Ok(Ok(moment)) => Timestamp::from_utc(moment).to_string(),
            Ok(Err(error)) => format!("error: {error}"),
            Err(error) => format!("invalid: {error}"),
        }
    }

    #[test]
    fn every_form_names_the_same_instant() {
        for text in [
            "2026-11-24T09:00:00+08:00",
            "2026-11-24T01:00:00Z",
            "2026-11-24 09:00",
            "2026-11-24T09:00",
            "2026-11-24 09:00:00",
        ] {
            assert_eq!(at(text), "2026-11-24T01:00:00Z", "{text}");
        }
        assert_eq!(at("2026-11-24"), "2026-11-23T16:00:00Z");
    }

    #[test]
    fn gaps_overlaps_and_far_years_are_refused() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let gap: Now = "2026-03-08 02:30".parse().unwrap();
        assert!(gap
            .resolve(zone)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let twice: Now = "2026-11-01 01:30".parse().unwrap();
        assert!(twice
            .resolve(zone)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(at("2300-01-01T00:00:00Z").starts_with("error: `--now"));
        assert!(at("tomorrow").starts_with("invalid: not a time"));
    }
}
