//! An instant: whole seconds in UTC, within the years 1900 to 9999.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// An instant, to the second. Every time the runner, the store and
/// delivery handle is one of these: they compare as values (never as
/// text), are stored as seconds since 1970, and print as RFC 3339 in UTC
/// (`2026-03-02T02:00:00Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a text is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampError {
    /// Not RFC 3339 (`2026-03-02T10:00:00+08:00`).
    Format,
    /// Before 1900 or after 9999.
    OutOfRange,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimestampError::Format => {
                f.write_str("not an RFC 3339 time such as 2026-03-02T10:00:00+08:00")
            }
            TimestampError::OutOfRange => f.write_str("outside the years 1900 to 9999"),
        }
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    /// 1900-01-01T00:00:00Z.
    pub const MIN: Timestamp = Timestamp(-2_208_988_800);
    /// 9999-12-31T23:59:59Z.
    pub const MAX: Timestamp = Timestamp(253_402_300_799);

    /// The clock, to the second.
    pub fn now() -> Timestamp {
        Timestamp::from_utc(Utc::now())
    }

    /// Seconds since 1970, clamped to the supported range.
    pub fn from_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds.clamp(Self::MIN.0, Self::MAX.0))
    }

    pub fn seconds(self) -> i64 {
        self.0
    }

    /// A chrono instant, sub-seconds dropped, clamped to the range.
    pub fn from_utc(moment: DateTime<Utc>) -> Timestamp {
        Timestamp::from_seconds(moment.timestamp())
    }

    pub fn utc(self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Parses RFC 3339 with any offset; fractions of a second are dropped.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let moment =
            DateTime::parse_from_rfc3339(text.trim()).map_err(|_| TimestampError::Format)?;
        let seconds = moment.timestamp();
        if !(Self::MIN.0..=Self::MAX.0).contains(&seconds) {
            return Err(TimestampError::OutOfRange);
        }
        Ok(Timestamp(seconds))
    }

    /// This instant moved by `seconds`, saturating at the range's ends.
    #[must_use]
    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp::from_seconds(self.0.saturating_add(seconds))
    }

    #[must_use]
    pub fn plus_minutes(self, minutes: i64) -> Timestamp {
        self.plus_seconds(minutes.saturating_mul(60))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// This instant as people read it, in `zone` with its offset:
    /// `2026-11-24 09:00:00 +08:00`. Every command prints times so.
    pub fn in_zone(self, zone: chrono_tz::Tz) -> impl fmt::Display {
        self.utc()
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S %:z")
    }
}

/// `text` with every instant journeyc wrote into it (`2026-03-01T02:00:00Z`,
/// as reasons and notes are stored) shown in `zone` with its offset, as
/// [`Timestamp::in_zone`] prints it.
pub fn localize(text: &str, zone: chrono_tz::Tz) -> String {
    const WIDTH: usize = "2026-03-01T02:00:00Z".len();
    let shape = |candidate: &[u8]| {
        candidate.len() == WIDTH
            && candidate
                .iter()
                .enumerate()
                .all(|(index, byte)| match index {
                    4 | 7 => *byte == b'-',
                    10 => *byte == b'T',
                    13 | 16 => *byte == b':',
                    19 => *byte == b'Z',
                    _ => byte.is_ascii_digit(),
                })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        let candidate = &bytes[index..bytes.len().min(index + WIDTH)];
        if shape(candidate) {
            // The shape is ASCII, so the slice is on character boundaries.
            if let Ok(instant) = Timestamp::parse(&text[index..index + WIDTH]) {
                out.push_str(&instant.in_zone(zone).to_string());
                index += WIDTH;
                continue;
            }
        }
        let character = text[index..].chars().next().unwrap_or(' ');
        out.push(character);
        index += character.len_utf8();
    }
    out
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.utc().to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(moment: DateTime<Utc>) -> Timestamp {
        Timestamp::from_utc(moment)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(timestamp: Timestamp) -> DateTime<Utc> {
        timestamp.utc()
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_offsets_and_prints_utc() {
        let at = Timestamp::parse("2026-03-02T10:00:00+08:00").unwrap();
        assert_eq!(at.to_string(), "2026-03-02T02:00:00Z");
        assert_eq!(Timestamp::parse("2026-03-02T02:00:00.75Z").unwrap(), at);
    }

    #[test]
    fn refuses_what_is_not_a_time_or_out_of_range() {
        assert_eq!(Timestamp::parse("2026-03-02"), Err(TimestampError::Format));
        assert_eq!(
            Timestamp::parse("+10000-01-01T00:00:00Z"),
            Err(TimestampError::Format)
        );
        assert_eq!(
            Timestamp::parse("1899-12-31T23:59:59Z"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(Timestamp::MIN.to_string(), "1900-01-01T00:00:00Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(
            Timestamp::parse("9999-12-31T23:59:59-23:59"),
            Err(TimestampError::OutOfRange)
        );
    }

    proptest! {
        #[test]
        fn order_is_the_order_of_instants(a in Timestamp::MIN.0..=Timestamp::MAX.0, b in Timestamp::MIN.0..=Timestamp::MAX.0) {
            let (x, y) = (Timestamp::from_seconds(a), Timestamp::from_seconds(b));
            prop_assert_eq!(x.cmp(&y), x.utc().cmp(&y.utc()));
            prop_assert_eq!(Timestamp::parse(&x.to_string()), Ok(x));
        }
    }
}
