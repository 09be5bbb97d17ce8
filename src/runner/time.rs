//! Time computations for the nightly runner: when a wait fires, when a
//! scheduled entry last occurred, and when a send is allowed to leave.
//!
//! Every function is pure. Instants are UTC; all wall-clock reasoning
//! happens in the contact's own time zone, so the answers are DST-correct:
//!
//! - a wall-clock time that does not exist (inside a spring-forward gap)
//!   means the first instant after the gap, the moment the clocks jump;
//! - a wall-clock time that happens twice (inside an autumn overlap) means
//!   the earlier of the two instants, so a wait fires exactly once.
//!
//! Nothing here panics, even for dates at the far ends of the calendar:
//! arithmetic saturates instead.

use std::cmp::Ordering;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

use crate::ast::{DayFilter, Direction, Duration, Time};
use crate::settings::HolidayDates;

/// Midnight, for `wait until FIELD` without `at`.
const MIDNIGHT: Time = Time { hour: 0, minute: 0 };

/// How far back `latest_anniversary` and `latest_listed` look.
const YEAR_HORIZON_DAYS: i64 = 366;

/// The instant at which the wall clock in `tz` shows `time` on `date`.
///
/// In a DST gap (02:30 on New York's spring-forward day) this is the first
/// valid instant after the gap: the moment the clocks jump (03:00 local). In
/// an overlap (01:30 on the autumn day) it is the earlier of the two
/// instants, so a wait fires exactly once.
pub fn local_instant(tz: Tz, date: NaiveDate, time: Time) -> DateTime<Utc> {
    resolve(tz, date.and_time(clock(time)))
}

/// The first instant strictly after `after` at which the wall clock in `tz`
/// shows `at` on an allowed day: any day without a filter, the given
/// weekday, or Monday to Friday for `Workday`.
///
/// Each candidate day goes through [`local_instant`], so `at` inside a DST
/// gap fires when the clocks jump and `at` inside an overlap fires once, at
/// the earlier instant. The day filter applies to the local calendar day.
/// (At the far end of the calendar, where no later day exists, the answer
/// is `after` itself.)
pub fn next_clock(tz: Tz, after: DateTime<Utc>, at: Time, day: Option<DayFilter>) -> DateTime<Utc> {
    // Start a day early: a gap can push yesterday's time past midnight.
    let start = add_days(wall_of(tz, after).date(), -1);
    (0..=9)
        .map(|k| add_days(start, k))
        .filter(|date| day_matches(date.weekday(), day))
        .map(|date| local_instant(tz, date, at))
        .find(|instant| *instant > after)
        .unwrap_or(after)
}

/// The first instant at or after `after` at which the wall clock in `tz`
/// shows `at` on `month`/`day` (an anniversary: birthdays, yearly holidays).
///
/// A day past the end of its month falls on the month's last day: 29
/// February falls on 28 February in years that are not leap years. (At the
/// far end of the calendar the answer is `after` itself.)
pub fn anniversary(tz: Tz, after: DateTime<Utc>, month: u32, day: u32, at: Time) -> DateTime<Utc> {
    let year = wall_of(tz, after).year();
    (year - 1..=year + 2)
        .filter_map(|year| anniversary_date(year, month, day))
        .map(|date| local_instant(tz, date, at))
        .find(|instant| *instant >= after)
        .unwrap_or(after)
}

/// When `wait until [D before|after] FIELD [at T]` fires, from `after`.
///
/// The target is `date` at local `at` (midnight without one), moved by the
/// offset on the local wall clock (so `1d before ... at 18:00` is 18:00
/// local on the day before, whatever DST does in between). If that instant
/// is at or after `after`, it is the answer. If it lies in the past, the
/// date is taken as an anniversary (a birthday stored with its birth year):
/// the answer is the first later anniversary whose moved instant is at or
/// after `after`, with 29 February falling on 28 February in common years.
pub fn date_wait(
    tz: Tz,
    after: DateTime<Utc>,
    date: NaiveDate,
    offset: Option<(Duration, Direction)>,
    at: Option<Time>,
) -> DateTime<Utc> {
    let shift = offset.map_or(TimeDelta::zero(), |(duration, direction)| {
        let length = i64::try_from(duration.minutes)
            .ok()
            .and_then(TimeDelta::try_minutes)
            .unwrap_or(TimeDelta::MAX);
        match direction {
            Direction::Before => -length,
            Direction::After => length,
        }
    });
    let time = clock(at.unwrap_or(MIDNIGHT));
    let instant_on = |date: NaiveDate| resolve(tz, add_wall(date.and_time(time), shift));

    let first = instant_on(date);
    if first >= after {
        return first;
    }
    // The anniversary that matters is the one near `after`, moved back by
    // the offset; start a year before it (but after the original date).
    let target_year = add_wall(wall_of(tz, after), -shift).year();
    let from = (date.year().saturating_add(1)).max(target_year.saturating_sub(1));
    (from..=from.saturating_add(3))
        .filter_map(|year| anniversary_date(year, date.month(), date.day()))
        .map(instant_on)
        .find(|instant| *instant >= after)
        .unwrap_or(after)
}

/// The first occurrence of a holiday at or after `after`, at local `at`.
///
/// A yearly holiday (`"12-25"`) goes through [`anniversary`]; for a list of
/// dates it is the earliest listed date whose instant is at or after
/// `after` (the list need not be sorted), and `None` once the list is
/// exhausted.
pub fn next_holiday(
    tz: Tz,
    after: DateTime<Utc>,
    dates: &HolidayDates,
    at: Time,
) -> Option<DateTime<Utc>> {
    match dates {
        HolidayDates::Annual { month, day } => Some(anniversary(tz, after, *month, *day, at)),
        HolidayDates::Dates(list) => list
            .iter()
            .map(|date| local_instant(tz, *date, at))
            .filter(|instant| *instant >= after)
            .min(),
    }
}

/// The latest scheduled occurrence of `entry daily at T` (no weekday) or
/// `entry every WEEKDAY at T` that is at or before `now` and strictly after
/// `since`.
///
/// Only the latest occurrence counts: if it is not after `since` (already
/// used), the answer is `None`, never an older one. Without `since` there is
/// no lower bound, but the search looks back at most 8 days, which always
/// holds the latest occurrence.
pub fn latest_daily(
    tz: Tz,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    at: Time,
    weekday: Option<Weekday>,
) -> Option<DateTime<Utc>> {
    let today = wall_of(tz, now).date();
    let latest = (-8..=1)
        .map(|k| add_days(today, k))
        .filter(|date| weekday.is_none_or(|weekday| date.weekday() == weekday))
        .map(|date| local_instant(tz, date, at))
        .filter(|instant| *instant <= now)
        .max()?;
    after_since(latest, since)
}

/// The latest anniversary of `month`/`day` at local `at` that is at or
/// before `now` and strictly after `since` (birthdays, yearly holidays).
///
/// As for [`anniversary`], 29 February falls on 28 February in common
/// years. Only the latest occurrence counts, and it always lies within the
/// last year, which is as far back as the search looks.
pub fn latest_anniversary(
    tz: Tz,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    month: u32,
    day: u32,
    at: Time,
) -> Option<DateTime<Utc>> {
    let year = wall_of(tz, now).year();
    let latest = (year - 1..=year + 1)
        .filter_map(|year| anniversary_date(year, month, day))
        .map(|date| local_instant(tz, date, at))
        .filter(|instant| *instant <= now)
        .max()?;
    after_since(latest, since)
}

/// The latest listed holiday date at local `at` that is at or before `now`
/// and strictly after `since`.
///
/// Only the latest occurrence counts. Like a yearly holiday, the search
/// looks back at most one year (366 days): a date listed for a year long
/// past never enrols anyone, even on the first run (`since` = `None`).
pub fn latest_listed(
    tz: Tz,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    dates: &[NaiveDate],
    at: Time,
) -> Option<DateTime<Utc>> {
    let horizon = now
        .checked_sub_signed(TimeDelta::days(YEAR_HORIZON_DAYS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = dates
        .iter()
        .map(|date| local_instant(tz, *date, at))
        .filter(|instant| *instant <= now && *instant >= horizon)
        .max()?;
    after_since(latest, since)
}

/// `at` moved by a duration: its days and weeks on the wall clock of `tz`
/// (`1d` is the same local time the next day, 23 or 25 hours across a DST
/// change; a time that does not exist that day means the moment the clocks
/// jump), then its hours and minutes as elapsed time.
pub fn add(tz: Tz, at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    let days = i64::try_from(duration.days).unwrap_or(i64::MAX);
    let elapsed =
        TimeDelta::try_minutes(i64::try_from(duration.elapsed_minutes()).unwrap_or(i64::MAX))
            .unwrap_or(TimeDelta::MAX);
    let moved = if days == 0 {
        at
    } else {
        let wall = wall_of(tz, at);
        resolve(tz, add_days(wall.date(), days).and_time(wall.time()))
    };
    moved
        .checked_add_signed(elapsed)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at` moved back by a duration, the inverse of [`add`]: days on the wall
/// clock, hours and minutes as elapsed time.
pub fn sub(tz: Tz, at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    let days = i64::try_from(duration.days).unwrap_or(i64::MAX);
    let elapsed =
        TimeDelta::try_minutes(i64::try_from(duration.elapsed_minutes()).unwrap_or(i64::MAX))
            .unwrap_or(TimeDelta::MAX);
    let moved = at
        .checked_sub_signed(elapsed)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if days == 0 {
        return moved;
    }
    let wall = wall_of(tz, moved);
    resolve(tz, add_days(wall.date(), -days).and_time(wall.time()))
}

/// The local midnights of `tz` in `(after, until]`, in order (a midnight
/// that does not exist is the moment the clocks jump).
pub fn midnights(tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut found = Vec::new();
    if until <= after {
        return found;
    }
    let mut date = wall_of(tz, after).date();
    loop {
        let midnight = local_instant(tz, date, MIDNIGHT);
        if midnight > until {
            break;
        }
        if midnight > after {
            found.push(midnight);
        }
        let next = add_days(date, 1);
        if next == date {
            break;
        }
        date = next;
    }
    found
}

/// When a message may be sent, in the contact's local time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendRules {
    /// Quiet hours `from..to`: no sending from `from` up to, not including,
    /// `to`. Wraps midnight when `from` is later than `to` (`21:00..09:00`).
    /// The project's and a journey's own add up: a send must be outside
    /// all of them.
    pub quiet: Vec<(Time, Time)>,
    /// Send window `from..to`: sending only from `from` up to, not
    /// including, `to`; wraps midnight like quiet hours.
    pub window: Option<(Time, Time)>,
    /// Allowed days `from..to`, both included, wrapping across the end of
    /// the week (`saturday..sunday`, `friday..monday`).
    pub days: Option<(Weekday, Weekday)>,
}

/// The earliest instant at or after `at` at which a send is allowed: local
/// time outside the quiet hours, inside the send window if any, on an
/// allowed day if any.
///
/// Ranges of times include their start and exclude their end (with quiet
/// hours `21:00..09:00`, 09:00 is allowed again) and wrap midnight when the
/// start is later than the end; a range whose ends are equal is empty (no
/// quiet hours; a window that never opens). A send that must move lands on
/// the exact boundary: 21:30 with quiet hours `21:00..09:00` becomes 09:00
/// the next local day. Boundaries that fall in a DST gap move to the moment
/// the clocks jump; both instants of an overlap are considered.
///
/// The search covers 8 days of boundaries; if the rules leave no allowed
/// time at all (a window equal to the quiet hours), the answer is `at`
/// unchanged.
pub fn allowed_send_time(tz: Tz, at: DateTime<Utc>, rules: &SendRules) -> DateTime<Utc> {
    if send_allowed(tz, at, rules) {
        return at;
    }
    // An allowed stretch starts at the end of the quiet hours, the start of
    // the window, the start of a day, or a DST transition.
    let mut starts = vec![MIDNIGHT];
    starts.extend(rules.quiet.iter().map(|&(_, to)| to));
    starts.extend(rules.window.map(|(from, _)| from));

    let first_day = add_days(wall_of(tz, at).date(), -1);
    let mut candidates: Vec<DateTime<Utc>> = (0..=9)
        .map(|k| add_days(first_day, k))
        .flat_map(|date| starts.iter().map(move |time| date.and_time(clock(*time))))
        .flat_map(|wall| instants_of(tz, wall))
        .collect();
    let end = at
        .checked_add_signed(TimeDelta::days(9))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    candidates.extend(transitions(tz, at, end));
    candidates.retain(|candidate| *candidate >= at);
    candidates.sort_unstable();
    candidates.dedup();
    candidates
        .into_iter()
        .find(|candidate| send_allowed(tz, *candidate, rules))
        .unwrap_or(at)
}

/// Whether the rules allow a send at `instant`.
fn send_allowed(tz: Tz, instant: DateTime<Utc>, rules: &SendRules) -> bool {
    let wall = wall_of(tz, instant);
    let time = wall.time();
    !rules
        .quiet
        .iter()
        .any(|&(from, to)| in_time_range(time, from, to))
        && rules
            .window
            .is_none_or(|(from, to)| in_time_range(time, from, to))
        && rules
            .days
            .is_none_or(|(from, to)| in_day_range(wall.weekday(), from, to))
}

/// `from <= time < to`, wrapping midnight when `from > to`; empty when the
/// ends are equal.
fn in_time_range(time: NaiveTime, from: Time, to: Time) -> bool {
    let (from, to) = (clock(from), clock(to));
    match from.cmp(&to) {
        Ordering::Less => from <= time && time < to,
        Ordering::Greater => time >= from || time < to,
        Ordering::Equal => false,
    }
}

/// `from..=to` in week order, wrapping across the end of the week.
fn in_day_range(day: Weekday, from: Weekday, to: Weekday) -> bool {
    let distance =
        |a: Weekday, b: Weekday| (b.num_days_from_monday() + 7 - a.num_days_from_monday()) % 7;
    distance(from, day) <= distance(from, to)
}

fn day_matches(day: Weekday, filter: Option<DayFilter>) -> bool {
    match filter {
        None => true,
        Some(DayFilter::Weekday(weekday)) => day == weekday,
        Some(DayFilter::Workday) => !matches!(day, Weekday::Sat | Weekday::Sun),
    }
}

/// `latest` if it is strictly after `since`.
fn after_since(latest: DateTime<Utc>, since: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    since.is_none_or(|since| latest > since).then_some(latest)
}

/// A `Time` as a time of day. The parser only accepts 00:00 to 23:59; out
/// of range parts are clamped rather than trusted.
fn clock(time: Time) -> NaiveTime {
    NaiveTime::from_hms_opt(time.hour.min(23), time.minute.min(59), 0).unwrap_or(NaiveTime::MIN)
}

/// `month`/`day` in `year`, a day past the end of the month falling on the
/// last day (29 February -> 28 February in common years). `None` only for
/// years outside the calendar.
fn anniversary_date(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    let month = month.clamp(1, 12);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let last = match month {
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 31,
    };
    NaiveDate::from_ymd_opt(year, month, day.clamp(1, last))
}

/// The wall-clock time in `tz` at `instant` (saturating at the ends of the
/// calendar, where chrono's own conversion would panic).
fn wall_of(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    let utc = instant.naive_utc();
    let offset = tz.offset_from_utc_datetime(&utc).fix().local_minus_utc();
    utc.checked_add_signed(TimeDelta::seconds(i64::from(offset)))
        .unwrap_or(if offset > 0 {
            NaiveDateTime::MAX
        } else {
            NaiveDateTime::MIN
        })
}

fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    TimeDelta::try_days(days)
        .and_then(|delta| date.checked_add_signed(delta))
        .unwrap_or(if days > 0 {
            NaiveDate::MAX
        } else {
            NaiveDate::MIN
        })
}

fn add_wall(wall: NaiveDateTime, delta: TimeDelta) -> NaiveDateTime {
    wall.checked_add_signed(delta)
        .unwrap_or(if delta > TimeDelta::zero() {
            NaiveDateTime::MAX
        } else {
            NaiveDateTime::MIN
        })
}

/// The instant of a wall-clock time: the earlier one in an overlap, the end
/// of the gap in a gap.
fn resolve(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => end_of_gap(tz, wall),
    }
}

/// Every instant of a wall-clock time: both in an overlap, the end of the
/// gap in a gap.
fn instants_of(tz: Tz, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(instant) => vec![instant.with_timezone(&Utc)],
        LocalResult::Ambiguous(first, second) => {
            vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
        }
        LocalResult::None => vec![end_of_gap(tz, wall)],
    }
}

/// For a wall-clock time that does not exist, the first instant whose wall
/// clock is at or past it: the moment the clocks jump over the gap.
fn end_of_gap(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    // No offset in tzdb exceeds 16 hours either way, so the instant whose
    // wall clock reaches `wall` lies within 16 hours of `wall` read as UTC.
    let span = TimeDelta::hours(16);
    let as_utc = wall.and_utc();
    let low = as_utc
        .checked_sub_signed(span)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let high = as_utc
        .checked_add_signed(span)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    first_instant(low, high, |instant| wall_of(tz, instant) >= wall)
}

/// The instants in `[from, to]` at which the UTC offset of `tz` changes
/// (assuming at most one change in 6 hours, as in every real zone).
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |instant: DateTime<Utc>| tz.offset_from_utc_datetime(&instant.naive_utc()).fix();
    let step = TimeDelta::hours(6);
    let mut found = Vec::new();
    let mut low = from;
    while low < to {
        let Some(high) = low.checked_add_signed(step) else {
            break;
        };
        let before = offset(low);
        if offset(high) != before {
            found.push(first_instant(low, high, |instant| {
                offset(instant) != before
            }));
        }
        low = high;
    }
    found
}

/// Binary search, to the second, for the first instant after `low` at which
/// `holds` is true, given that it is false at `low` and true at `high`.
fn first_instant(
    low: DateTime<Utc>,
    high: DateTime<Utc>,
    holds: impl Fn(DateTime<Utc>) -> bool,
) -> DateTime<Utc> {
    let mut best = high;
    let (mut low, mut high) = (low.timestamp(), high.timestamp());
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        match DateTime::from_timestamp(middle, 0) {
            Some(instant) if holds(instant) => {
                high = middle;
                best = instant;
            }
            _ => low = middle,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Shanghai;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|error| panic!("{text}: {error}"))
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn t(hour: u32, minute: u32) -> Time {
        Time { hour, minute }
    }

    fn days(count: u64) -> Duration {
        Duration::from_minutes(count * 24 * 60)
    }

    // --- local_instant -------------------------------------------------

    #[test]
    fn plain_local_times_use_the_offset_of_the_day() {
        assert_eq!(
            local_instant(New_York, date("2026-01-15"), t(9, 0)),
            utc("2026-01-15T14:00:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-07-15"), t(9, 0)),
            utc("2026-07-15T13:00:00Z")
        );
        assert_eq!(
            local_instant(Shanghai, date("2026-07-15"), t(9, 0)),
            utc("2026-07-15T01:00:00Z")
        );
        assert_eq!(
            local_instant(Tz::UTC, date("2026-07-15"), t(23, 59)),
            utc("2026-07-15T23:59:00Z")
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_is_the_moment_the_clocks_jump() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        assert_eq!(
            local_instant(New_York, date("2026-03-08"), t(2, 30)),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-03-08"), t(2, 0)),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-03-08"), t(2, 59)),
            utc("2026-03-08T07:00:00Z")
        );
        // Either side of the gap is untouched.
        assert_eq!(
            local_instant(New_York, date("2026-03-08"), t(1, 59)),
            utc("2026-03-08T06:59:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-03-08"), t(3, 0)),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-03-08"), t(3, 30)),
            utc("2026-03-08T07:30:00Z")
        );
    }

    #[test]
    fn a_time_in_the_autumn_overlap_is_the_earlier_instant() {
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens at
        // 05:30 UTC (EDT) and 06:30 UTC (EST).
        assert_eq!(
            local_instant(New_York, date("2026-11-01"), t(1, 30)),
            utc("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-11-01"), t(1, 0)),
            utc("2026-11-01T05:00:00Z")
        );
        assert_eq!(
            local_instant(New_York, date("2026-11-01"), t(2, 0)),
            utc("2026-11-01T07:00:00Z")
        );
    }

    #[test]
    fn a_whole_missing_day_resolves_to_the_next_one() {
        // Samoa skipped 2011-12-30 entirely (UTC-10 -> UTC+14).
        let apia = chrono_tz::Pacific::Apia;
        assert_eq!(
            local_instant(apia, date("2011-12-30"), t(9, 0)),
            utc("2011-12-30T10:00:00Z")
        );
        assert_eq!(
            wall_of(apia, utc("2011-12-30T10:00:00Z")),
            date("2011-12-31").and_time(NaiveTime::MIN)
        );
    }

    // --- next_clock ----------------------------------------------------

    /// The successive instants of `next_clock`, starting from `from`.
    fn successive(
        tz: Tz,
        from: &str,
        at: Time,
        day: Option<DayFilter>,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut after = utc(from);
        let mut out = Vec::new();
        for _ in 0..count {
            after = next_clock(tz, after, at, day);
            out.push(after);
        }
        out
    }

    #[test]
    fn next_clock_fires_once_a_day_across_spring_forward() {
        assert_eq!(
            successive(New_York, "2026-03-06T12:00:00Z", t(9, 0), None, 4),
            [
                utc("2026-03-06T14:00:00Z"), // EST
                utc("2026-03-07T14:00:00Z"),
                utc("2026-03-08T13:00:00Z"), // EDT from this day on
                utc("2026-03-09T13:00:00Z"),
            ]
        );
        // A time inside the gap still fires once that day, when the clocks jump.
        assert_eq!(
            successive(New_York, "2026-03-07T12:00:00Z", t(2, 30), None, 3),
            [
                utc("2026-03-08T07:00:00Z"),
                utc("2026-03-09T06:30:00Z"),
                utc("2026-03-10T06:30:00Z"),
            ]
        );
    }

    #[test]
    fn next_clock_fires_once_a_day_across_fall_back() {
        assert_eq!(
            successive(New_York, "2026-10-31T12:00:00Z", t(9, 0), None, 3),
            [
                utc("2026-10-31T13:00:00Z"), // EDT
                utc("2026-11-01T14:00:00Z"), // EST from this day on
                utc("2026-11-02T14:00:00Z"),
            ]
        );
        // 01:30 happens twice on 2026-11-01: the wait fires at the first one
        // only, even when woken between the two.
        assert_eq!(
            successive(New_York, "2026-10-31T12:00:00Z", t(1, 30), None, 3),
            [
                utc("2026-11-01T05:30:00Z"),
                utc("2026-11-02T06:30:00Z"),
                utc("2026-11-03T06:30:00Z"),
            ]
        );
        assert_eq!(
            next_clock(New_York, utc("2026-11-01T06:00:00Z"), t(1, 30), None),
            utc("2026-11-02T06:30:00Z")
        );
    }

    #[test]
    fn next_clock_is_strictly_after() {
        assert_eq!(
            next_clock(Shanghai, utc("2026-05-01T00:00:00Z"), t(9, 0), None),
            utc("2026-05-01T01:00:00Z")
        );
        assert_eq!(
            next_clock(Shanghai, utc("2026-05-01T01:00:00Z"), t(9, 0), None),
            utc("2026-05-02T01:00:00Z")
        );
        // Local late evening in Shanghai is the previous UTC day.
        assert_eq!(
            next_clock(Shanghai, utc("2026-04-30T17:00:00Z"), t(0, 30), None),
            utc("2026-05-01T16:30:00Z")
        );
    }

    #[test]
    fn next_clock_with_day_filters() {
        // Friday 2026-03-06 19:00 EST.
        let friday_evening = "2026-03-07T00:00:00Z";
        assert_eq!(
            successive(
                New_York,
                friday_evening,
                t(9, 0),
                Some(DayFilter::Workday),
                2
            ),
            [utc("2026-03-09T13:00:00Z"), utc("2026-03-10T13:00:00Z")]
        );
        assert_eq!(
            successive(
                New_York,
                friday_evening,
                t(9, 0),
                Some(DayFilter::Weekday(Weekday::Wed)),
                2
            ),
            [utc("2026-03-11T13:00:00Z"), utc("2026-03-18T13:00:00Z")]
        );
        // Friday morning, before 09:00: that same Friday.
        assert_eq!(
            next_clock(
                New_York,
                utc("2026-03-06T12:00:00Z"),
                t(9, 0),
                Some(DayFilter::Workday)
            ),
            utc("2026-03-06T14:00:00Z")
        );
        // The weekday is the local one: Monday 07:00 in Shanghai is Sunday in UTC.
        assert_eq!(
            next_clock(
                Shanghai,
                utc("2026-03-07T00:00:00Z"),
                t(7, 0),
                Some(DayFilter::Weekday(Weekday::Mon))
            ),
            utc("2026-03-08T23:00:00Z")
        );
    }

    // --- anniversary ---------------------------------------------------

    #[test]
    fn anniversary_of_29_february() {
        assert_eq!(
            anniversary(Shanghai, utc("2027-01-01T00:00:00Z"), 2, 29, t(9, 0)),
            utc("2027-02-28T01:00:00Z")
        );
        assert_eq!(
            anniversary(Shanghai, utc("2028-01-01T00:00:00Z"), 2, 29, t(9, 0)),
            utc("2028-02-29T01:00:00Z")
        );
        // Just past it in 2027: next year's, which is the real day.
        assert_eq!(
            anniversary(Shanghai, utc("2027-02-28T01:00:01Z"), 2, 29, t(9, 0)),
            utc("2028-02-29T01:00:00Z")
        );
    }

    #[test]
    fn anniversary_is_at_or_after() {
        let christmas = utc("2026-12-25T14:00:00Z"); // 09:00 EST
        assert_eq!(anniversary(New_York, christmas, 12, 25, t(9, 0)), christmas);
        assert_eq!(
            anniversary(New_York, utc("2026-12-25T14:00:01Z"), 12, 25, t(9, 0)),
            utc("2027-12-25T14:00:00Z")
        );
        // New Year's Day in Shanghai, seen from the UTC evening before.
        assert_eq!(
            anniversary(Shanghai, utc("2026-12-31T15:00:00Z"), 1, 1, t(0, 0)),
            utc("2026-12-31T16:00:00Z")
        );
    }

    // --- date_wait -----------------------------------------------------

    #[test]
    fn date_wait_on_a_future_date() {
        let after = utc("2026-03-01T00:00:00Z");
        assert_eq!(
            date_wait(New_York, after, date("2026-09-01"), None, None),
            utc("2026-09-01T04:00:00Z")
        );
        assert_eq!(
            date_wait(New_York, after, date("2026-09-01"), None, Some(t(10, 0))),
            utc("2026-09-01T14:00:00Z")
        );
        // 1d before at 18:00: 18:00 local the day before.
        assert_eq!(
            date_wait(
                New_York,
                after,
                date("2026-09-01"),
                Some((days(1), Direction::Before)),
                Some(t(18, 0))
            ),
            utc("2026-08-31T22:00:00Z")
        );
        // 2d after, no time: midnight two days later.
        assert_eq!(
            date_wait(
                Shanghai,
                after,
                date("2026-09-01"),
                Some((days(2), Direction::After)),
                None
            ),
            utc("2026-09-02T16:00:00Z")
        );
        // An offset in hours moves the wall clock: 3h before 09:00 is 06:00.
        assert_eq!(
            date_wait(
                Shanghai,
                after,
                date("2026-09-01"),
                Some((Duration::from_minutes(180), Direction::Before)),
                Some(t(9, 0))
            ),
            utc("2026-08-31T22:00:00Z")
        );
    }

    #[test]
    fn date_wait_offset_is_on_the_wall_clock_across_dst() {
        // 1d before 2026-03-09 09:00 EDT is 2026-03-08 09:00 EDT, which is
        // 23 hours earlier, not 24.
        assert_eq!(
            date_wait(
                New_York,
                utc("2026-01-01T00:00:00Z"),
                date("2026-03-09"),
                Some((days(1), Direction::Before)),
                Some(t(9, 0))
            ),
            utc("2026-03-08T13:00:00Z")
        );
    }

    #[test]
    fn date_wait_on_a_past_birth_date_is_the_next_birthday() {
        let birth = date("1990-06-15");
        assert_eq!(
            date_wait(
                Shanghai,
                utc("2026-03-01T00:00:00Z"),
                birth,
                None,
                Some(t(9, 0))
            ),
            utc("2026-06-15T01:00:00Z")
        );
        // This year's has passed: next year's.
        assert_eq!(
            date_wait(
                Shanghai,
                utc("2026-07-01T00:00:00Z"),
                birth,
                None,
                Some(t(9, 0))
            ),
            utc("2027-06-15T01:00:00Z")
        );
        // The birthday instant itself still counts.
        assert_eq!(
            date_wait(
                Shanghai,
                utc("2026-06-15T01:00:00Z"),
                birth,
                None,
                Some(t(9, 0))
            ),
            utc("2026-06-15T01:00:00Z")
        );
        // 1d before at 18:00: the eve of the birthday.
        assert_eq!(
            date_wait(
                Shanghai,
                utc("2026-03-01T00:00:00Z"),
                birth,
                Some((days(1), Direction::Before)),
                Some(t(18, 0))
            ),
            utc("2026-06-14T10:00:00Z")
        );
        // Past this year's eve, but before the birthday: next year's eve.
        assert_eq!(
            date_wait(
                Shanghai,
                utc("2026-06-14T12:00:00Z"),
                birth,
                Some((days(1), Direction::Before)),
                Some(t(18, 0))
            ),
            utc("2027-06-14T10:00:00Z")
        );
    }

    #[test]
    fn date_wait_offsets_can_cross_the_year() {
        // Eve of a 1 January birthday, seen on the evening of 31 December
        // after 18:00: the eve of the birthday after next.
        let birth = date("1990-01-01");
        let eve = Some((days(1), Direction::Before));
        assert_eq!(
            date_wait(
                Tz::UTC,
                utc("2026-12-31T17:00:00Z"),
                birth,
                eve,
                Some(t(18, 0))
            ),
            utc("2026-12-31T18:00:00Z")
        );
        assert_eq!(
            date_wait(
                Tz::UTC,
                utc("2026-12-31T19:00:00Z"),
                birth,
                eve,
                Some(t(18, 0))
            ),
            utc("2027-12-31T18:00:00Z")
        );
        // 30 days after a 20 December date, from early January.
        assert_eq!(
            date_wait(
                Tz::UTC,
                utc("2027-01-05T00:00:00Z"),
                date("2000-12-20"),
                Some((days(30), Direction::After)),
                None
            ),
            utc("2027-01-19T00:00:00Z")
        );
    }

    #[test]
    fn date_wait_on_29_february_births() {
        let birth = date("2004-02-29");
        assert_eq!(
            date_wait(Tz::UTC, utc("2027-01-01T00:00:00Z"), birth, None, None),
            utc("2027-02-28T00:00:00Z")
        );
        assert_eq!(
            date_wait(Tz::UTC, utc("2028-01-01T00:00:00Z"), birth, None, None),
            utc("2028-02-29T00:00:00Z")
        );
    }

    // --- holidays ------------------------------------------------------

    #[test]
    fn next_holiday_annual() {
        let christmas = HolidayDates::Annual { month: 12, day: 25 };
        assert_eq!(
            next_holiday(Shanghai, utc("2026-06-01T00:00:00Z"), &christmas, t(9, 0)),
            Some(utc("2026-12-25T01:00:00Z"))
        );
        assert_eq!(
            next_holiday(Shanghai, utc("2026-12-26T00:00:00Z"), &christmas, t(9, 0)),
            Some(utc("2027-12-25T01:00:00Z"))
        );
    }

    #[test]
    fn next_holiday_listed() {
        let mid_autumn = HolidayDates::Dates(vec![date("2026-09-25"), date("2027-09-15")]);
        assert_eq!(
            next_holiday(Shanghai, utc("2026-06-01T00:00:00Z"), &mid_autumn, t(9, 0)),
            Some(utc("2026-09-25T01:00:00Z"))
        );
        assert_eq!(
            next_holiday(Shanghai, utc("2026-09-25T01:00:00Z"), &mid_autumn, t(9, 0)),
            Some(utc("2026-09-25T01:00:00Z"))
        );
        assert_eq!(
            next_holiday(Shanghai, utc("2026-09-25T01:00:01Z"), &mid_autumn, t(9, 0)),
            Some(utc("2027-09-15T01:00:00Z"))
        );
        assert_eq!(
            next_holiday(Shanghai, utc("2027-09-16T00:00:00Z"), &mid_autumn, t(9, 0)),
            None
        );
        // An unsorted list still gives the earliest coming date.
        let unsorted = HolidayDates::Dates(vec![date("2027-09-15"), date("2026-09-25")]);
        assert_eq!(
            next_holiday(Shanghai, utc("2026-06-01T00:00:00Z"), &unsorted, t(9, 0)),
            Some(utc("2026-09-25T01:00:00Z"))
        );
        assert_eq!(
            next_holiday(
                Shanghai,
                utc("2026-06-01T00:00:00Z"),
                &HolidayDates::Dates(Vec::new()),
                t(9, 0)
            ),
            None
        );
    }

    // --- latest occurrences ---------------------------------------------

    #[test]
    fn latest_daily_occurrence() {
        let nine = t(9, 0);
        // 2026-05-10 10:00 in Shanghai.
        let now = utc("2026-05-10T02:00:00Z");
        let today = utc("2026-05-10T01:00:00Z");
        assert_eq!(latest_daily(Shanghai, None, now, nine, None), Some(today));
        // Exactly at the occurrence counts.
        assert_eq!(latest_daily(Shanghai, None, today, nine, None), Some(today));
        // Before today's: yesterday's.
        assert_eq!(
            latest_daily(Shanghai, None, utc("2026-05-10T00:00:00Z"), nine, None),
            Some(utc("2026-05-09T01:00:00Z"))
        );
        // Already used: nothing, and never an older occurrence.
        assert_eq!(latest_daily(Shanghai, Some(today), now, nine, None), None);
        assert_eq!(
            latest_daily(Shanghai, Some(utc("2026-05-10T00:59:59Z")), now, nine, None),
            Some(today)
        );
        // A last run long ago still yields only the latest one.
        assert_eq!(
            latest_daily(Shanghai, Some(utc("2026-01-01T00:00:00Z")), now, nine, None),
            Some(today)
        );
    }

    #[test]
    fn latest_weekly_occurrence() {
        // 2026-05-10 is a Sunday; the latest Monday 09:00 was 2026-05-04.
        let now = utc("2026-05-10T02:00:00Z");
        let monday = utc("2026-05-04T01:00:00Z");
        assert_eq!(
            latest_daily(Shanghai, None, now, t(9, 0), Some(Weekday::Mon)),
            Some(monday)
        );
        assert_eq!(
            latest_daily(Shanghai, Some(monday), now, t(9, 0), Some(Weekday::Mon)),
            None
        );
        // On Monday itself, before and after 09:00.
        assert_eq!(
            latest_daily(
                Shanghai,
                None,
                utc("2026-05-11T00:59:00Z"),
                t(9, 0),
                Some(Weekday::Mon)
            ),
            Some(monday)
        );
        assert_eq!(
            latest_daily(
                Shanghai,
                None,
                utc("2026-05-11T01:00:00Z"),
                t(9, 0),
                Some(Weekday::Mon)
            ),
            Some(utc("2026-05-11T01:00:00Z"))
        );
    }

    #[test]
    fn latest_daily_across_dst() {
        // The 09:00 of the spring-forward day is 13:00 UTC.
        assert_eq!(
            latest_daily(New_York, None, utc("2026-03-08T20:00:00Z"), t(9, 0), None),
            Some(utc("2026-03-08T13:00:00Z"))
        );
        assert_eq!(
            latest_daily(New_York, None, utc("2026-03-08T13:30:00Z"), t(9, 0), None),
            Some(utc("2026-03-08T13:00:00Z"))
        );
        assert_eq!(
            latest_daily(New_York, None, utc("2026-03-08T12:30:00Z"), t(9, 0), None),
            Some(utc("2026-03-07T14:00:00Z"))
        );
    }

    #[test]
    fn latest_anniversary_occurrence() {
        let now = utc("2026-05-10T02:00:00Z");
        // Birthday on 05-10 at 09:00 Shanghai: today.
        assert_eq!(
            latest_anniversary(Shanghai, None, now, 5, 10, t(9, 0)),
            Some(utc("2026-05-10T01:00:00Z"))
        );
        // Birthday later in the year: last year's.
        assert_eq!(
            latest_anniversary(Shanghai, None, now, 12, 25, t(9, 0)),
            Some(utc("2025-12-25T01:00:00Z"))
        );
        // Already used.
        assert_eq!(
            latest_anniversary(
                Shanghai,
                Some(utc("2026-01-01T00:00:00Z")),
                now,
                12,
                25,
                t(9, 0)
            ),
            None
        );
        // 29 February in a common year.
        assert_eq!(
            latest_anniversary(Tz::UTC, None, utc("2027-03-01T00:00:00Z"), 2, 29, t(0, 0)),
            Some(utc("2027-02-28T00:00:00Z"))
        );
    }

    #[test]
    fn latest_listed_occurrence() {
        let dates = [date("2025-10-06"), date("2026-09-25"), date("2027-09-15")];
        let at = t(9, 0);
        assert_eq!(
            latest_listed(Shanghai, None, utc("2026-10-01T00:00:00Z"), &dates, at),
            Some(utc("2026-09-25T01:00:00Z"))
        );
        assert_eq!(
            latest_listed(Shanghai, None, utc("2026-06-01T00:00:00Z"), &dates, at),
            Some(utc("2025-10-06T01:00:00Z"))
        );
        assert_eq!(
            latest_listed(
                Shanghai,
                Some(utc("2026-09-25T01:00:00Z")),
                utc("2026-10-01T00:00:00Z"),
                &dates,
                at
            ),
            None
        );
        // More than a year ago: too old to count.
        assert_eq!(
            latest_listed(Shanghai, None, utc("2028-10-01T00:00:00Z"), &dates, at),
            None
        );
        assert_eq!(
            latest_listed(Shanghai, None, utc("2020-10-01T00:00:00Z"), &dates, at),
            None
        );
    }

    // --- allowed_send_time ----------------------------------------------

    fn quiet(from: Time, to: Time) -> SendRules {
        SendRules {
            quiet: vec![(from, to)],
            ..SendRules::default()
        }
    }

    #[test]
    fn quiet_hours_that_wrap_midnight() {
        let rules = quiet(t(21, 0), t(9, 0));
        let send = |at: &str| allowed_send_time(Tz::UTC, utc(at), &rules);
        assert_eq!(send("2026-05-10T21:30:00Z"), utc("2026-05-11T09:00:00Z"));
        assert_eq!(send("2026-05-10T21:00:00Z"), utc("2026-05-11T09:00:00Z"));
        assert_eq!(send("2026-05-10T03:00:00Z"), utc("2026-05-10T09:00:00Z"));
        assert_eq!(send("2026-05-10T08:59:00Z"), utc("2026-05-10T09:00:00Z"));
        assert_eq!(send("2026-05-10T08:59:59Z"), utc("2026-05-10T09:00:00Z"));
        assert_eq!(send("2026-05-10T09:00:00Z"), utc("2026-05-10T09:00:00Z"));
        assert_eq!(send("2026-05-10T12:00:00Z"), utc("2026-05-10T12:00:00Z"));
        assert_eq!(send("2026-05-10T20:59:00Z"), utc("2026-05-10T20:59:00Z"));
    }

    #[test]
    fn quiet_hours_are_local() {
        let rules = quiet(t(21, 0), t(9, 0));
        // 21:30 in Shanghai is 13:30 UTC; 09:00 next day is 01:00 UTC.
        assert_eq!(
            allowed_send_time(Shanghai, utc("2026-05-10T13:30:00Z"), &rules),
            utc("2026-05-11T01:00:00Z")
        );
        // 21:30 EST on the eve of spring-forward: 09:00 EDT next day.
        assert_eq!(
            allowed_send_time(New_York, utc("2026-03-08T02:30:00Z"), &rules),
            utc("2026-03-08T13:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_within_a_day() {
        let rules = quiet(t(12, 0), t(14, 0));
        let send = |at: &str| allowed_send_time(Tz::UTC, utc(at), &rules);
        assert_eq!(send("2026-05-10T11:59:00Z"), utc("2026-05-10T11:59:00Z"));
        assert_eq!(send("2026-05-10T12:00:00Z"), utc("2026-05-10T14:00:00Z"));
        assert_eq!(send("2026-05-10T13:30:00Z"), utc("2026-05-10T14:00:00Z"));
        assert_eq!(send("2026-05-10T14:00:00Z"), utc("2026-05-10T14:00:00Z"));
        assert_eq!(send("2026-05-10T23:00:00Z"), utc("2026-05-10T23:00:00Z"));
    }

    #[test]
    fn send_window() {
        let rules = SendRules {
            window: Some((t(10, 0), t(18, 0))),
            ..SendRules::default()
        };
        let send = |at: &str| allowed_send_time(Tz::UTC, utc(at), &rules);
        assert_eq!(send("2026-05-10T08:00:00Z"), utc("2026-05-10T10:00:00Z"));
        assert_eq!(send("2026-05-10T10:00:00Z"), utc("2026-05-10T10:00:00Z"));
        assert_eq!(send("2026-05-10T17:59:00Z"), utc("2026-05-10T17:59:00Z"));
        assert_eq!(send("2026-05-10T18:00:00Z"), utc("2026-05-11T10:00:00Z"));
        assert_eq!(send("2026-05-10T23:30:00Z"), utc("2026-05-11T10:00:00Z"));

        // A window that wraps midnight.
        let night = SendRules {
            window: Some((t(22, 0), t(2, 0))),
            ..SendRules::default()
        };
        assert_eq!(
            allowed_send_time(Tz::UTC, utc("2026-05-10T01:00:00Z"), &night),
            utc("2026-05-10T01:00:00Z")
        );
        assert_eq!(
            allowed_send_time(Tz::UTC, utc("2026-05-10T02:00:00Z"), &night),
            utc("2026-05-10T22:00:00Z")
        );
    }

    #[test]
    fn window_and_quiet_hours_together() {
        // Window 08:00..20:00 and quiet 21:00..09:00: 09:00..20:00 remains.
        let rules = SendRules {
            quiet: vec![(t(21, 0), t(9, 0))],
            window: Some((t(8, 0), t(20, 0))),
            days: None,
        };
        let send = |at: &str| allowed_send_time(Tz::UTC, utc(at), &rules);
        assert_eq!(send("2026-05-10T08:30:00Z"), utc("2026-05-10T09:00:00Z"));
        assert_eq!(send("2026-05-10T20:30:00Z"), utc("2026-05-11T09:00:00Z"));
        assert_eq!(send("2026-05-10T15:00:00Z"), utc("2026-05-10T15:00:00Z"));
    }

    #[test]
    fn send_days() {
        // 2026-05-09 is a Saturday.
        let weekdays = SendRules {
            days: Some((Weekday::Mon, Weekday::Fri)),
            ..SendRules::default()
        };
        let send = |at: &str, rules: &SendRules| allowed_send_time(Tz::UTC, utc(at), rules);
        assert_eq!(
            send("2026-05-09T12:00:00Z", &weekdays),
            utc("2026-05-11T00:00:00Z")
        );
        assert_eq!(
            send("2026-05-08T23:59:00Z", &weekdays),
            utc("2026-05-08T23:59:00Z")
        );

        let with_window = SendRules {
            window: Some((t(10, 0), t(18, 0))),
            ..weekdays
        };
        assert_eq!(
            send("2026-05-09T12:00:00Z", &with_window),
            utc("2026-05-11T10:00:00Z")
        );
        // Friday after the window closes: Monday's window.
        assert_eq!(
            send("2026-05-08T19:00:00Z", &with_window),
            utc("2026-05-11T10:00:00Z")
        );

        let with_quiet = SendRules {
            quiet: vec![(t(21, 0), t(9, 0))],
            ..weekdays
        };
        assert_eq!(
            send("2026-05-09T12:00:00Z", &with_quiet),
            utc("2026-05-11T09:00:00Z")
        );
        assert_eq!(
            send("2026-05-08T22:00:00Z", &with_quiet),
            utc("2026-05-11T09:00:00Z")
        );

        // A range that wraps the end of the week.
        let weekend = SendRules {
            days: Some((Weekday::Sat, Weekday::Sun)),
            ..SendRules::default()
        };
        assert_eq!(
            send("2026-05-09T12:00:00Z", &weekend),
            utc("2026-05-09T12:00:00Z")
        );
        assert_eq!(
            send("2026-05-11T12:00:00Z", &weekend),
            utc("2026-05-16T00:00:00Z")
        );
        let long_weekend = SendRules {
            days: Some((Weekday::Fri, Weekday::Mon)),
            ..SendRules::default()
        };
        assert_eq!(
            send("2026-05-11T12:00:00Z", &long_weekend),
            utc("2026-05-11T12:00:00Z")
        );
        assert_eq!(
            send("2026-05-12T12:00:00Z", &long_weekend),
            utc("2026-05-15T00:00:00Z")
        );
        // One day only.
        let mondays = SendRules {
            days: Some((Weekday::Mon, Weekday::Mon)),
            ..SendRules::default()
        };
        assert_eq!(
            send("2026-05-12T12:00:00Z", &mondays),
            utc("2026-05-18T00:00:00Z")
        );
    }

    #[test]
    fn impossible_rules_leave_the_time_unchanged() {
        let at = utc("2026-05-10T22:00:00Z");
        let clash = SendRules {
            quiet: vec![(t(21, 0), t(9, 0))],
            window: Some((t(21, 0), t(9, 0))),
            days: None,
        };
        assert_eq!(allowed_send_time(Tz::UTC, at, &clash), at);
        assert_eq!(allowed_send_time(New_York, at, &clash), at);
        let closed = SendRules {
            window: Some((t(10, 0), t(10, 0))),
            ..SendRules::default()
        };
        assert_eq!(allowed_send_time(Shanghai, at, &closed), at);
        // Equal quiet ends mean no quiet hours at all.
        assert_eq!(
            allowed_send_time(Tz::UTC, at, &quiet(t(10, 0), t(10, 0))),
            at
        );
    }

    #[test]
    fn send_boundaries_in_dst_transitions() {
        // Quiet hours end at 02:30, which does not exist on 2026-03-08:
        // sending resumes when the clocks jump to 03:00 EDT.
        let rules = quiet(t(0, 0), t(2, 30));
        assert_eq!(
            allowed_send_time(New_York, utc("2026-03-08T06:00:00Z"), &rules),
            utc("2026-03-08T07:00:00Z")
        );
        // Window 00:00..01:30; at 01:45 EDT on 2026-11-01 the clocks fall
        // back to 01:00 EST, inside the window again.
        let window = SendRules {
            window: Some((t(0, 0), t(1, 30))),
            ..SendRules::default()
        };
        assert_eq!(
            allowed_send_time(New_York, utc("2026-11-01T05:45:00Z"), &window),
            utc("2026-11-01T06:00:00Z")
        );
        // Quiet 22:00..01:30; at 01:10 EST (the second pass) sending waits
        // for 01:30 EST, not the next night.
        let night = quiet(t(22, 0), t(1, 30));
        assert_eq!(
            allowed_send_time(New_York, utc("2026-11-01T06:10:00Z"), &night),
            utc("2026-11-01T06:30:00Z")
        );
    }

    // --- robustness ------------------------------------------------------

    #[test]
    fn extreme_inputs_do_not_panic() {
        let huge = Some((Duration::from_minutes(u64::MAX), Direction::After));
        let tiny = Some((Duration::from_minutes(u64::MAX), Direction::Before));
        let now = utc("2026-05-10T00:00:00Z");
        for tz in [
            Tz::UTC,
            New_York,
            Shanghai,
            chrono_tz::Pacific::Kiritimati,
            chrono_tz::Etc::GMTPlus12,
        ] {
            let _ = date_wait(tz, now, date("1990-01-01"), huge, Some(t(9, 0)));
            let _ = date_wait(tz, now, date("1990-01-01"), tiny, Some(t(9, 0)));
            let _ = date_wait(tz, now, NaiveDate::MAX, None, None);
            let _ = date_wait(tz, now, NaiveDate::MIN, None, None);
            for instant in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
                let _ = next_clock(tz, instant, t(9, 0), Some(DayFilter::Workday));
                let _ = anniversary(tz, instant, 2, 29, t(9, 0));
                let _ = date_wait(tz, instant, date("1990-01-01"), None, None);
                let _ = latest_daily(tz, None, instant, t(9, 0), None);
                let _ = latest_anniversary(tz, None, instant, 2, 29, t(9, 0));
                let _ = latest_listed(
                    tz,
                    None,
                    instant,
                    &[NaiveDate::MAX, NaiveDate::MIN],
                    t(9, 0),
                );
                let _ = allowed_send_time(tz, instant, &quiet(t(21, 0), t(9, 0)));
            }
            // Out-of-range parts are clamped, not trusted.
            let _ = local_instant(tz, date("2026-05-10"), t(99, 99));
            let _ = anniversary(tz, now, 13, 40, t(9, 0));
        }
        assert_eq!(
            anniversary(Tz::UTC, now, 4, 31, t(0, 0)),
            utc("2027-04-30T00:00:00Z")
        );
    }

    // --- properties --------------------------------------------------------

    const ZONES: [Tz; 6] = [
        Tz::UTC,
        New_York,
        Shanghai,
        chrono_tz::Europe::London,
        chrono_tz::Australia::Lord_Howe, // 30-minute DST shift
        chrono_tz::America::Santiago,    // DST changes at midnight
    ];

    fn instant_in_range() -> impl Strategy<Value = DateTime<Utc>> {
        // 2000-01-01 to 2040-01-01, minute resolution.
        (946_684_800_i64 / 60..2_208_988_800_i64 / 60)
            .prop_map(|minute| DateTime::from_timestamp(minute * 60, 0).unwrap_or_default())
    }

    fn time_of_day() -> impl Strategy<Value = Time> {
        (0_u32..24, 0_u32..60).prop_map(|(hour, minute)| Time { hour, minute })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn local_instant_shows_the_time_unless_in_a_gap(
            zone in 0..ZONES.len(), instant in instant_in_range(), time in time_of_day()
        ) {
            let tz = ZONES[zone];
            let day = wall_of(tz, instant).date();
            let wall = day.and_time(clock(time));
            let resolved = local_instant(tz, day, time);
            match tz.from_local_datetime(&wall) {
                LocalResult::None => {
                    // The end of the gap: just before it, the clock was earlier.
                    prop_assert!(wall_of(tz, resolved) > wall);
                    prop_assert!(wall_of(tz, resolved - TimeDelta::seconds(1)) < wall);
                }
                _ => prop_assert_eq!(wall_of(tz, resolved), wall),
            }
        }

        #[test]
        fn next_clock_is_the_first_one_after(
            zone in 0..ZONES.len(), after in instant_in_range(), time in time_of_day(), filter in 0_usize..3
        ) {
            let tz = ZONES[zone];
            let day = [None, Some(DayFilter::Workday), Some(DayFilter::Weekday(Weekday::Thu))][filter];
            let next = next_clock(tz, after, time, day);
            prop_assert!(next > after);
            prop_assert!(next - after <= TimeDelta::days(8));
            // Asking again from just before it gives it again; from it, a later one.
            prop_assert_eq!(next_clock(tz, next - TimeDelta::seconds(1), time, day), next);
            prop_assert!(next_clock(tz, next, time, day) > next);
        }

        #[test]
        fn allowed_send_time_is_the_earliest_allowed(
            zone in 0..ZONES.len(),
            at in instant_in_range(),
            quiet in proptest::option::of((time_of_day(), time_of_day())),
            window in proptest::option::of((time_of_day(), time_of_day())),
            days in proptest::option::of((0_u8..7, 0_u8..7)),
        ) {
            let tz = ZONES[zone];
            let weekday = |n: u8| Weekday::try_from(n).unwrap_or(Weekday::Mon);
            let rules = SendRules { quiet: quiet.into_iter().collect(), window, days: days.map(|(a, b)| (weekday(a), weekday(b))) };
            let send = allowed_send_time(tz, at, &rules);
            prop_assert!(send >= at);
            if send != at {
                prop_assert!(send_allowed(tz, send, &rules));
                // No allowed minute in between (checked every 5 minutes).
                let mut probe = at;
                while probe < send {
                    prop_assert!(!send_allowed(tz, probe, &rules), "{} allowed before {}", probe, send);
                    probe += TimeDelta::minutes(5);
                }
            } else if !send_allowed(tz, at, &rules) {
                // Nothing allowed at all: no allowed probe in the next week.
                let mut probe = at;
                while probe < at + TimeDelta::days(7) {
                    prop_assert!(!send_allowed(tz, probe, &rules), "{} allowed, but {} kept", probe, at);
                    probe += TimeDelta::minutes(15);
                }
            }
        }
    }
}
