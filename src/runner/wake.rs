//! When a contact next needs a visit: the earliest instant after the run at
//! which anything may fall due for it if nothing new arrives (no event, no
//! import that changes it). A night visits only the contacts whose wake has
//! come and those an import touched, so the wake must never be late: where
//! it cannot be sure, it is early (an early visit finds nothing to do and
//! costs only the visit).
//!
//! What can fall due without anything new arriving is what the engine
//! looks at, after the run's `now`: the end of the wait a contact rests at;
//! an event or a stage or tag stamp dated in the future; the clock triggers
//! (daily, weekly, once, dates, holidays) of the journeys it may enter; and
//! the local midnights at which `when` conditions are asked, for a
//! condition whose answer can change with the clock (or that holds already
//! and is only waiting for its next checkpoint): the next midnight, or the
//! first at which it can hold when that is known (`days_since`).

use chrono::{DateTime, Datelike, Utc};

use super::engine::{resting_node, Engine, Enrolments, JourneyRun};
use super::eval;
use super::person::{Person, STAGE_STAMPS, TAG_STAMPS, UNTAG_STAMPS};
use super::signals::stamp_moment;
use super::time;
use crate::ast::{self, Reentry, Signal, Trigger};
use crate::journey::NodeKind;
use crate::model::Timestamp;
use crate::store::Enrolment;

const MIDNIGHT: ast::Time = ast::Time { hour: 0, minute: 0 };

/// The earliest of the instants offered after `now`.
struct Earliest {
    now: DateTime<Utc>,
    best: Option<DateTime<Utc>>,
}

impl Earliest {
    fn offer(&mut self, at: DateTime<Utc>) {
        if at > self.now && self.best.is_none_or(|best| at < best) {
            self.best = Some(at);
        }
    }
}

impl Engine<'_> {
    /// When the contact next needs a visit (none: only something new can
    /// move it again). Asked when the run is done with the contact.
    pub(super) fn wake(&self, person: &Person, enrolments: &Enrolments) -> Option<DateTime<Utc>> {
        let mut earliest = Earliest {
            now: self.now,
            best: None,
        };
        // What is dated after the run: it is acted on at its own time.
        for event in &person.events {
            earliest.offer(event.at.utc());
        }
        for key in [STAGE_STAMPS, TAG_STAMPS, UNTAG_STAMPS] {
            if let Some(serde_json::Value::Object(stamps)) = person.field(key) {
                for name in stamps.keys() {
                    if let Some(moment) = stamp_moment(person, key, name) {
                        earliest.offer(moment.at);
                    }
                }
            }
        }
        let midnight = time::next_clock(person.timezone, self.now, MIDNIGHT, None);
        for run in &self.journeys {
            match enrolments.active(run.name()) {
                Some(enrolment) => {
                    self.enrolment_wake(person, enrolment, run, midnight, &mut earliest);
                }
                None => self.entry_wake(person, enrolments, run, &mut earliest),
            }
        }
        earliest.best
    }

    /// An active enrolment: its wait, and the signals asked at midnights.
    fn enrolment_wake(
        &self,
        person: &Person,
        enrolment: &Enrolment,
        run: &JourneyRun<'_>,
        midnight: DateTime<Utc>,
        earliest: &mut Earliest,
    ) {
        let journey = run.journey;
        let entered = enrolment.entered_at.utc();
        let node = resting_node(journey, enrolment);
        match node.map(|node| &journey.graph[node].kind) {
            Some(NodeKind::WaitEvent { timeout, .. }) => {
                let started = enrolment.data.wait_started.map_or(entered, Timestamp::utc);
                earliest.offer(time::add(person.timezone, started, *timeout));
            }
            Some(_) => {
                if let Some(due) = enrolment.due_at {
                    earliest.offer(due.utc());
                }
            }
            // A step that is gone: the `moved` rule acts at once, in the
            // run that finds it; without one the run does not start.
            None => {}
        }
        let in_holdout =
            node.is_some_and(|node| matches!(journey.graph[node].kind, NodeKind::Holdout));
        let event = self.event_of(person, enrolment);
        let context = self.context(person, event, Some(entered), self.now);
        let mut signals: Vec<&Signal> = journey.rules.exits.iter().collect();
        if let Some(goal) = &journey.rules.goal {
            if time::add(person.timezone, entered, goal.within.node) > self.now {
                signals.push(&goal.condition);
            }
        }
        if !enrolment.data.rescued && !in_holdout {
            signals.extend(journey.rules.rescues.iter().map(|(signal, _)| signal));
        }
        for signal in signals {
            match signal {
                Signal::When(condition) => {
                    if let Some(at) = may_hold_from(condition, context, midnight) {
                        earliest.offer(at);
                    }
                }
                // Events and stamps: offered above, by their dates.
                Signal::Event { .. } | Signal::Stage(_) | Signal::Tag(_) => {}
            }
        }
    }

    /// A journey the contact is not in: its clock triggers, from when the
    /// re-entry rule lets the contact in again.
    fn entry_wake(
        &self,
        person: &Person,
        enrolments: &Enrolments,
        run: &JourneyRun<'_>,
        earliest: &mut Earliest,
    ) {
        let journey = run.journey;
        // An audience that is false and stays so until something new
        // arrives (or a stamp comes due, which wakes the contact itself)
        // lets no trigger in before then.
        let context = self.context(person, None, None, self.now);
        if let Some(audience) = &journey.rules.audience {
            if eval::steady(audience, context.program) && !eval::holds(audience, context) {
                return;
            }
        }
        let mut from = self.now;
        if let Some(previous) = enrolments.latest(run.name()) {
            let ended = previous
                .ended_at
                .map_or(previous.entered_at.utc(), Timestamp::utc);
            let allowed = match &journey.rules.reentry {
                None | Some(Reentry::Never) => return,
                Some(Reentry::Always) => ended,
                Some(Reentry::After(wait)) => time::add(person.timezone, ended, wait.node),
            };
            from = from.max(allowed - chrono::Duration::seconds(1));
        }
        for trigger in &journey.rules.triggers {
            match trigger {
                // Events and stamps: offered by their dates.
                Trigger::Event { .. } | Trigger::Stage(_) | Trigger::Tag(_) => {}
                Trigger::Date { field, at } => {
                    if let Some(date) = person.date(&field.node) {
                        let clock = at.as_ref().map_or(MIDNIGHT, |at| at.node);
                        earliest.offer(time::anniversary(
                            person.timezone,
                            from + chrono::Duration::seconds(1),
                            date.month(),
                            date.day(),
                            clock,
                        ));
                    }
                }
                Trigger::Holiday { holiday, at } => {
                    let clock = at.as_ref().map_or(MIDNIGHT, |at| at.node);
                    if let Some(next) =
                        self.settings.holidays.get(&holiday.node).and_then(|dates| {
                            time::next_holiday(
                                person.timezone,
                                from + chrono::Duration::seconds(1),
                                dates,
                                clock,
                            )
                        })
                    {
                        earliest.offer(next);
                    }
                }
                Trigger::Daily { at } => {
                    earliest.offer(time::next_clock(person.timezone, from, at.node, None));
                }
                Trigger::Weekly { weekday, at } => earliest.offer(time::next_clock(
                    person.timezone,
                    from,
                    at.node,
                    Some(ast::DayFilter::Weekday(weekday.node)),
                )),
                Trigger::Once { date, at } => {
                    let once = time::local_instant(person.timezone, date.node, at.node);
                    if once > from {
                        earliest.offer(once);
                    }
                }
                Trigger::When(condition) => {
                    let midnight = time::next_clock(person.timezone, from, MIDNIGHT, None);
                    if let Some(at) = may_hold_from(condition, context, midnight) {
                        earliest.offer(at);
                    }
                }
            }
        }
    }
}

/// The first checkpoint, a local midnight from `midnight` on, at which a
/// `when` condition may hold if nothing new arrives (none: it stays false
/// until something does). A condition that holds already is asked again
/// at `midnight`, the next checkpoint; one the clock can change, at
/// `midnight` too, unless it is known when it can first hold:
/// `days_since(FIELD) > n` holds from the local midnight `n + 1` days after
/// the field's date, and an `and` cannot hold before both sides can.
fn may_hold_from(
    condition: &ast::Expr,
    context: eval::Context<'_>,
    midnight: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    use ast::{BinaryOp, ExprKind};
    if stays_false(condition, context) {
        return None;
    }
    let ExprKind::Binary { op, left, right } = &condition.kind else {
        return match &condition.kind {
            ExprKind::Group(inner) => may_hold_from(inner, context, midnight),
            _ => Some(midnight),
        };
    };
    match op.node {
        BinaryOp::And => Some(
            may_hold_from(left, context, midnight)?.max(may_hold_from(right, context, midnight)?),
        ),
        BinaryOp::Or => match (
            may_hold_from(left, context, midnight),
            may_hold_from(right, context, midnight),
        ) {
            (Some(left), Some(right)) => Some(left.min(right)),
            (left, right) => left.or(right),
        },
        BinaryOp::Gt | BinaryOp::Ge => {
            let (ExprKind::Call { function, args }, ExprKind::Number(bound, _)) =
                (&left.kind, &right.kind)
            else {
                return Some(midnight);
            };
            let [since] = args.as_slice() else {
                return Some(midnight);
            };
            if function.node != "days_since"
                || !eval::time_free(since)
                || eval::holds(condition, context)
            {
                return Some(midnight);
            }
            // No date: `days_since` gives nothing, which is never more.
            let date = eval::local_date_of(since, context)?;
            // Whole days: more than 90.5 is 91 or more.
            #[allow(clippy::cast_possible_truncation)]
            let days = if op.node == BinaryOp::Gt {
                bound.floor() as i64 + 1
            } else {
                bound.ceil() as i64
            };
            let first = date.checked_add_signed(chrono::Duration::days(days))?;
            Some(time::local_instant(context.timezone, first, MIDNIGHT).max(midnight))
        }
        _ => Some(midnight),
    }
}

/// Whether a condition is false and stays so while nothing new arrives:
/// one that reads only fields, stages and tags (a stamp dated later wakes
/// the contact at its own time), a count of events that is already too low,
/// a score compared with a number the score can no longer reach (its
/// points decay, and nothing new adds any), or a combination of them.
fn stays_false(condition: &ast::Expr, context: eval::Context<'_>) -> bool {
    use ast::{BinaryOp, ExprKind};
    if eval::steady(condition, context.program) {
        return !eval::holds(condition, context);
    }
    match &condition.kind {
        ExprKind::Group(inner) => stays_false(inner, context),
        ExprKind::Binary { op, left, right } => match op.node {
            BinaryOp::And => stays_false(left, context) || stays_false(right, context),
            BinaryOp::Or => stays_false(left, context) && stays_false(right, context),
            // A count of events, within a window or not, only goes down as
            // time passes (an event dated later wakes the contact at its
            // own time).
            BinaryOp::Ge | BinaryOp::Gt
                if matches!(
                    (&left.kind, &right.kind),
                    (ExprKind::Count { filter, .. }, ExprKind::Number(..))
                        if filter.as_deref().is_none_or(eval::time_free)
                ) =>
            {
                !eval::holds(condition, context)
            }
            BinaryOp::Ge | BinaryOp::Gt => {
                let (ExprKind::Call { function, args }, ExprKind::Number(bound, _)) =
                    (&left.kind, &right.kind)
                else {
                    return false;
                };
                let model = match args.as_slice() {
                    [only] if function.node == "score" => match &only.kind {
                        ExprKind::Path(parts) if parts.len() == 1 => {
                            context.program.scores.get(parts[0].node.as_str())
                        }
                        _ => None,
                    },
                    _ => None,
                };
                let Some(model) = model else { return false };
                let ceiling = eval::score_ceiling(model, context);
                if op.node == BinaryOp::Ge {
                    ceiling < *bound
                } else {
                    ceiling <= *bound
                }
            }
            _ => false,
        },
        _ => false,
    }
}
