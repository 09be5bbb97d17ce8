//! When a message may go out: quiet hours, send windows and days, caps,
//! suppression and lateness. The runner plans every message by these
//! rules; `deliver` holds to the same rules at the moment of sending, so a
//! message planned late, or retried, still never goes out at night or over
//! a cap.
//!
//! Who each rule is for:
//!
//! | message | quiet hours, window, days | caps | suppression, lateness |
//! |---|---|---|---|
//! | marketing email and SMS | the project's and the journey's | the project's (all journeys) and the journey's (its own sends) | yes |
//! | transactional email and SMS | no | no | no |
//! | operator tasks | the journey's | the journey's `task` cap | lateness |
//! | webhooks | no | the journey's `webhook` cap | no |

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::ast::LimitKind;
use crate::journey::CompiledJourney;
use crate::model::{Channel, Timestamp};
use crate::runner::time::{self, SendRules};
use crate::settings::{OverCap, Settings};
use crate::store::Scheduled;
use crate::templates::MessageKind;

/// `N per D`: at most N sends in any window of length D.
#[derive(Debug, Clone, PartialEq)]
pub struct Cap {
    pub channel: Channel,
    pub count: u64,
    pub per: crate::ast::Duration,
    /// A journey's own cap counts only its own sends; the project's counts
    /// every journey's.
    pub journey: Option<String>,
}

impl Cap {
    fn span(&self) -> TimeDelta {
        TimeDelta::try_minutes(i64::try_from(self.per.minutes).unwrap_or(i64::MAX))
            .unwrap_or(TimeDelta::MAX)
    }

    pub fn describe(&self) -> String {
        let owner = if self.journey.is_some() {
            " (journey)"
        } else {
            ""
        };
        format!(
            "{} cap {} per {}{owner}",
            self.channel, self.count, self.per
        )
    }

    /// Whether a send at `at` keeps every window of the cap at or under
    /// its count, next to the sends already there (sorted).
    fn fits(&self, sends: &[DateTime<Utc>], at: DateTime<Utc>) -> bool {
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let span = self.span();
        // The sends with `at` among them; windows of count + 1 consecutive
        // sends that include `at` must be at least `span` wide.
        let place = sends.partition_point(|send| *send < at);
        let nth = |index: usize| match index.cmp(&place) {
            std::cmp::Ordering::Less => sends[index],
            std::cmp::Ordering::Equal => at,
            std::cmp::Ordering::Greater => sends[index - 1],
        };
        let total = sends.len() + 1;
        for start in place.saturating_sub(count)..=place {
            let end = start + count;
            if end >= total {
                break;
            }
            if nth(end) - nth(start) < span {
                return false;
            }
        }
        true
    }
}

/// The rules one message goes by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Quiet hours, window and days; none for what is exempt.
    pub rules: Option<SendRules>,
    pub caps: Vec<Cap>,
    /// Marketing: the suppression list applies.
    pub suppressible: bool,
    /// How late it may go out (marketing and tasks), if lateness applies.
    pub lateness: Option<crate::ast::Duration>,
    pub over_cap: OverCap,
}

impl Policy {
    /// The earliest send the caps look back to from `at`: the longest
    /// cap's window before it.
    pub fn cap_horizon(&self, at: Timestamp) -> Timestamp {
        let longest = self
            .caps
            .iter()
            .map(|cap| cap.per.minutes)
            .max()
            .unwrap_or(0);
        at.plus_minutes(-i64::try_from(longest).unwrap_or(i64::MAX))
    }
}

/// The rules for a message of `journey` on `channel` of `kind`.
pub fn policy(
    settings: &Settings,
    journey: &CompiledJourney,
    channel: Channel,
    kind: MessageKind,
) -> Policy {
    let marketing =
        kind == MessageKind::Marketing && matches!(channel, Channel::Email | Channel::Sms);
    let transactional =
        kind == MessageKind::Transactional && matches!(channel, Channel::Email | Channel::Sms);
    if transactional {
        return Policy::default();
    }
    let mut rules = SendRules::default();
    if marketing {
        if let Some(range) = settings.quiet_hours {
            rules.quiet.push((range.from, range.to));
        }
    }
    let timed = marketing || channel == Channel::Task;
    let mut caps = Vec::new();
    if marketing {
        if let Some(cap) = settings.cap(channel) {
            caps.push(Cap {
                channel,
                count: cap.count,
                per: cap.per,
                journey: None,
            });
        }
    }
    for limit in &journey.rules.limits {
        match &limit.kind {
            LimitKind::Quiet { from, to } if timed => rules.quiet.push((from.node, to.node)),
            LimitKind::Window { from, to } if timed => rules.window = Some((from.node, to.node)),
            LimitKind::Days { from, to } if timed => rules.days = Some((from.node, to.node)),
            LimitKind::Cap {
                channel: limited,
                count,
                per,
            } if limited.node == channel && count.node > 0 && !per.node.is_zero() => {
                caps.push(Cap {
                    channel,
                    count: count.node,
                    per: per.node,
                    journey: Some(journey.name.clone()),
                });
            }
            _ => {}
        }
    }
    Policy {
        rules: timed.then_some(rules),
        caps,
        suppressible: marketing,
        lateness: timed.then_some(settings.delivery.lateness.0),
        over_cap: settings.over_cap,
    }
}

/// The field that holds a channel's address.
pub fn address_field(channel: Channel) -> Option<&'static str> {
    match channel {
        Channel::Email => Some("email"),
        Channel::Sms => Some("phone"),
        Channel::Task | Channel::Webhook => None,
    }
}

/// Where a message lands.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub at: DateTime<Utc>,
    /// Over this cap, with `over_cap: skip`: not sent.
    pub skipped: Option<Cap>,
    /// Moved by quiet hours or deferred by caps.
    pub deferred: u64,
    pub notes: Vec<String>,
}

/// The earliest instant at or after `at` that the rules allow and at
/// which every cap holds next to `sends` (the contact's other sends on
/// the channel). With `over_cap: skip`, a send the caps refuse where it
/// falls is skipped instead of deferred.
pub fn place(tz: Tz, at: DateTime<Utc>, policy: &Policy, sends: &[Scheduled]) -> Placement {
    let counted: Vec<Vec<DateTime<Utc>>> = policy
        .caps
        .iter()
        .map(|cap| {
            let mut times: Vec<DateTime<Utc>> = sends
                .iter()
                .filter(|send| cap.journey.as_deref().is_none_or(|own| own == send.journey))
                .map(|send| send.at.utc())
                .collect();
            times.sort_unstable();
            times
        })
        .collect();
    let mut placement = Placement {
        at,
        skipped: None,
        deferred: 0,
        notes: Vec::new(),
    };
    // Each round moves the time strictly later, to a quiet-hours boundary
    // or to where an earlier send leaves a cap's window; both are finite.
    let rounds = sends.len() * policy.caps.len() * 4 + 16;
    for _ in 0..rounds {
        if let Some(rules) = &policy.rules {
            let moved = time::allowed_send_time(tz, placement.at, rules);
            if moved > placement.at {
                placement.notes.push(format!(
                    "moved to {} by quiet hours",
                    Timestamp::from(moved)
                ));
                placement.at = moved;
            }
        }
        let over: Vec<usize> = policy
            .caps
            .iter()
            .enumerate()
            .filter(|(index, cap)| !cap.fits(&counted[*index], placement.at))
            .map(|(index, _)| index)
            .collect();
        let Some(&first) = over.first() else {
            return placement;
        };
        if policy.over_cap == OverCap::Skip {
            let cap = policy.caps[first].clone();
            placement.notes.push(format!("skipped: {}", cap.describe()));
            placement.skipped = Some(cap);
            return placement;
        }
        let next = over
            .iter()
            .flat_map(|&index| {
                let span = policy.caps[index].span();
                counted[index].iter().map(move |send| *send + span)
            })
            .filter(|candidate| *candidate > placement.at)
            .min();
        let Some(next) = next else {
            return placement;
        };
        placement.at = next;
        placement.deferred += 1;
        placement.notes.push(format!(
            "deferred to {}: {}",
            Timestamp::from(next),
            policy.caps[first].describe()
        ));
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cap(count: u64, days: u64) -> Cap {
        Cap {
            channel: Channel::Email,
            count,
            per: crate::ast::Duration::days(days),
            journey: None,
        }
    }

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_000_000 + hours * 3600, 0).unwrap()
    }

    fn policy_of(caps: Vec<Cap>) -> Policy {
        Policy {
            caps,
            ..Policy::default()
        }
    }

    fn scheduled(hours: &[i64]) -> Vec<Scheduled> {
        hours
            .iter()
            .map(|hour| Scheduled {
                journey: "other".into(),
                at: Timestamp::from(at(*hour)),
            })
            .collect()
    }

    #[test]
    fn a_send_before_one_already_planned_is_deferred_past_it() {
        // One a week; a send already planned at hour 2: one at hour 0 would
        // share its window, so it goes a week after the planned one.
        let placement = place(
            Tz::UTC,
            at(0),
            &policy_of(vec![cap(1, 7)]),
            &scheduled(&[2]),
        );
        assert_eq!(placement.at, at(2 + 7 * 24));
        // Exactly a window apart is allowed.
        let placement = place(
            Tz::UTC,
            at(7 * 24 + 2),
            &policy_of(vec![cap(1, 7)]),
            &scheduled(&[2]),
        );
        assert_eq!(placement.at, at(7 * 24 + 2));
    }

    #[test]
    fn a_gap_between_sends_is_used_when_it_is_wide_enough() {
        // Two a week, sends at days 0 and 20: day 10 fits between them.
        let placement = place(
            Tz::UTC,
            at(10 * 24),
            &policy_of(vec![cap(1, 7)]),
            &scheduled(&[0, 20 * 24]),
        );
        assert_eq!(placement.at, at(10 * 24));
        // Day 15 is too close to day 20: after it.
        let placement = place(
            Tz::UTC,
            at(15 * 24),
            &policy_of(vec![cap(1, 7)]),
            &scheduled(&[0, 20 * 24]),
        );
        assert_eq!(placement.at, at(27 * 24));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Whatever is planned already, the placement keeps every window of
        /// every cap at or under its count, and nothing earlier would.
        #[test]
        fn placements_hold_every_window(
            planned in proptest::collection::vec(0_i64..2000, 0..8),
            wanted in 0_i64..2000,
            caps in proptest::collection::vec((1_u64..4, 1_u64..10), 1..3),
        ) {
            let caps: Vec<Cap> = caps.into_iter().map(|(count, days)| cap(count, days)).collect();
            let policy = policy_of(caps.clone());
            let sends = scheduled(&planned);
            let placement = place(Tz::UTC, at(wanted), &policy, &sends);
            prop_assert!(placement.at >= at(wanted));
            let mut all: Vec<DateTime<Utc>> = planned.iter().map(|hour| at(*hour)).collect();
            all.sort_unstable();
            for cap in &caps {
                prop_assert!(cap.fits(&all, placement.at), "{placement:?} breaks {cap:?}");
            }
            // No earlier whole hour fits all caps.
            let mut hour = wanted;
            while at(hour) < placement.at {
                prop_assert!(!caps.iter().all(|cap| cap.fits(&all, at(hour))), "hour {hour} fits");
                hour += 1;
            }
        }
    }
}
