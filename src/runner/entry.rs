//! When a contact enters a journey: the triggers, the re-entry rule, the
//! launch (a journey enrols from its deployment on, and what `backfill`
//! lets in enters at the launch), hand-offs from other journeys, and the
//! audience, checked at the moment the trigger fired.

use chrono::{DateTime, Datelike, Utc};

use super::engine::{Due, Engine, Enrolments, Entry, JourneyRun, Moment, RunError, Work};
use super::eval;
use super::person::{Person, STAGE_STAMPS, TAG_STAMPS};
use super::signals::stamp_moment;
use super::time;
use crate::ast::{self, Reentry, Trigger};
use crate::model::{EnrolmentState, StepId, Timestamp};
use crate::settings::HolidayDates;
use crate::store::{Enrolment, EnrolmentData};

const MIDNIGHT: ast::Time = ast::Time { hour: 0, minute: 0 };

impl Engine<'_> {
    /// The earliest trigger that would enrol the contact, if it may enter.
    pub(super) fn next_entry(
        &self,
        person: &Person,
        enrolments: &Enrolments,
        run: &JourneyRun<'_>,
        cursor: Moment,
    ) -> Option<(Moment, Due)> {
        let journey = run.journey;
        let previous = enrolments.latest(run.name());
        // The re-entry rule: whether, and from when, a contact who left
        // may come back.
        let mut lower = cursor;
        if let Some(previous) = previous {
            let ended = previous
                .ended_at
                .map_or(previous.entered_at.utc(), Timestamp::utc);
            let allowed = match &journey.rules.reentry {
                None | Some(Reentry::Never) => return None,
                Some(Reentry::Always) => ended,
                Some(Reentry::After(wait)) => time::add(person.timezone, ended, wait.node),
            };
            // Entered at or after the moment it may again (a trigger at the
            // very end of the last enrolment does not count).
            lower = lower.max(Moment::after(allowed - chrono::Duration::seconds(1)));
        }
        // At its launch a journey looks back only as far as `backfill`.
        let launch_from = run.launching.then(|| {
            journey
                .rules
                .backfill
                .map(|backfill| time::sub(person.timezone, self.now, backfill))
        });
        let scan_lower = match launch_from {
            Some(Some(from)) => lower.min(Moment::after(from)),
            Some(None) => return None,
            None => lower,
        };
        let mut best: Option<(Moment, Entry)> = None;
        let mut consider = |moment: Moment, entry: Entry| {
            if moment.at > self.now {
                return;
            }
            // A back-filled trigger enters at the launch, not in the past.
            let moment = if run.launching {
                Moment::of(self.now)
            } else {
                moment
            };
            if best.as_ref().is_none_or(|(at, _)| moment < *at) {
                best = Some((moment, entry));
            }
        };
        // Hand-offs: another journey's latest enrolment left for this one.
        for other in &enrolments.list {
            if other.state == EnrolmentState::HandedOff
                && other.data.handoff.as_deref() == Some(run.name())
                && !other.data.handoff_taken
            {
                let at = other.ended_at.map_or(cursor.at, Timestamp::utc);
                let moment = Moment::of(at).max(cursor);
                consider(
                    moment,
                    Entry {
                        reason: format!("handed over by {}", other.journey),
                        event: other.event_id.clone(),
                        handed_from: Some(other.id),
                    },
                );
            }
        }
        let created = person.created.map(Moment::after);
        let scheduled_lower = created.map_or(scan_lower, |created| scan_lower.max(created));
        for trigger in &journey.rules.triggers {
            match trigger {
                Trigger::Event { event, filter } => {
                    let context = self.context(person, None, None, self.now);
                    if let Some((id, moment)) = Self::first_event(
                        person,
                        run,
                        &event.node,
                        filter.as_ref(),
                        context,
                        |moment| moment > scan_lower && moment.at <= self.now,
                    ) {
                        consider(
                            moment,
                            Entry {
                                reason: format!("event {}", event.node),
                                event: Some(id),
                                handed_from: None,
                            },
                        );
                    }
                }
                // When the stage was entered or the tag added, whatever
                // journeys ahead of this one did since.
                Trigger::Stage(stage) => {
                    if let Some(moment) = stamp_moment(person, STAGE_STAMPS, &stage.node)
                        .filter(|moment| *moment > scan_lower)
                    {
                        consider(moment, plain(format!("stage became {}", stage.node)));
                    }
                }
                Trigger::Tag(tag) => {
                    if let Some(moment) = stamp_moment(person, TAG_STAMPS, &tag.node)
                        .filter(|moment| *moment > scan_lower)
                    {
                        consider(moment, plain(format!("tag {} added", tag.node)));
                    }
                }
                Trigger::Date { field, at } => {
                    if let Some(date) = person.date(&field.node) {
                        let clock = at.as_ref().map_or(MIDNIGHT, |at| at.node);
                        let next = time::anniversary(
                            person.timezone,
                            scheduled_lower.at + chrono::Duration::seconds(1),
                            date.month(),
                            date.day(),
                            clock,
                        );
                        consider(
                            Moment::of(next),
                            plain(format!("{} anniversary", field.node)),
                        );
                    }
                }
                Trigger::Holiday { holiday, at } => {
                    let clock = at.as_ref().map_or(MIDNIGHT, |at| at.node);
                    if let Some(next) =
                        self.settings.holidays.get(&holiday.node).and_then(|dates| {
                            next_holiday(person, dates, scheduled_lower.at, clock)
                        })
                    {
                        consider(Moment::of(next), plain(format!("holiday {}", holiday.node)));
                    }
                }
                Trigger::Daily { at } => {
                    let next = time::next_clock(person.timezone, scheduled_lower.at, at.node, None);
                    consider(Moment::of(next), plain(format!("daily at {}", at.node)));
                }
                Trigger::Weekly { weekday, at } => {
                    let next = time::next_clock(
                        person.timezone,
                        scheduled_lower.at,
                        at.node,
                        Some(ast::DayFilter::Weekday(weekday.node)),
                    );
                    consider(
                        Moment::of(next),
                        plain(format!(
                            "every {} at {}",
                            crate::ast::print::weekday_name(weekday.node),
                            at.node
                        )),
                    );
                }
                Trigger::Once { date, at } => {
                    let moment =
                        Moment::of(time::local_instant(person.timezone, date.node, at.node));
                    if moment > scheduled_lower {
                        consider(moment, plain(format!("once {} at {}", date.node, at.node)));
                    }
                }
                Trigger::When(condition) => {
                    // At a launch the condition is asked once, at the launch;
                    // never before the contact came into the store.
                    let checkpoints = if run.launching {
                        vec![Moment::of(self.now)]
                    } else {
                        Self::checkpoints(person, run, scheduled_lower, self.now, false)
                    };
                    if let Some(moment) = checkpoints.into_iter().find(|moment| {
                        eval::holds(condition, self.context(person, None, None, moment.at))
                    }) {
                        consider(
                            moment,
                            plain(format!("when {}", crate::ast::print::expr(condition))),
                        );
                    }
                }
            }
        }
        best.map(|(moment, entry)| (moment, Due::Enter(entry)))
    }

    /// Enrols the contact at `moment` if the audience holds then, and walks
    /// it to its first rest.
    pub(super) fn enter(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        enrolments: &mut Enrolments,
        run: &JourneyRun<'_>,
        moment: Moment,
        entry: Entry,
    ) -> Result<(), RunError> {
        let journey = run.journey;
        let at = moment.at;
        let trigger_event = entry
            .event
            .as_deref()
            .and_then(|id| person.events.iter().find(|event| event.id == id));
        let audience = journey.rules.audience.as_ref().is_none_or(|audience| {
            eval::holds(audience, self.context(person, trigger_event, None, at))
        });
        if let Some(source) = entry.handed_from {
            if let Some(mut from) = enrolments
                .list
                .iter()
                .find(|other| other.id == source)
                .cloned()
            {
                from.data.handoff_taken = true;
                if !audience {
                    work.record(
                        &from,
                        None,
                        None,
                        format!(
                            "hand-off to {}: not taken, the contact is not in its audience",
                            run.name()
                        ),
                        at,
                    )?;
                }
                work.batch.update_enrolment(&from)?;
                enrolments.put(from);
            }
        }
        if !audience {
            return Ok(());
        }
        let start = &journey.graph[journey.start];
        let mut enrolment = Enrolment {
            id: 0,
            contact_id: person.contact.id.clone(),
            journey: journey.name.clone(),
            version: run.version.clone(),
            state: EnrolmentState::Active,
            step: StepId::new(start.id.clone()),
            step_print: start.print.clone(),
            due_at: None,
            entered_at: Timestamp::from(at),
            ended_at: None,
            event_id: entry.event.clone(),
            data: EnrolmentData::default(),
        };
        enrolment.id = work.batch.insert_enrolment(&enrolment)?;
        work.counts.enrolled += 1;
        let reason = if run.launching {
            format!("entered: {} (backfill)", entry.reason)
        } else {
            format!("entered: {}", entry.reason)
        };
        work.record(&enrolment, None, Some(&start.id), reason, at)?;
        self.walk(
            work,
            person,
            run,
            &mut enrolment,
            journey.start,
            moment,
            super::walk::Arrival::Entering,
        )?;
        work.batch.update_enrolment(&enrolment)?;
        enrolments.put(enrolment);
        Ok(())
    }
}

fn plain(reason: String) -> Entry {
    Entry {
        reason,
        event: None,
        handed_from: None,
    }
}

/// The first day of a holiday strictly after `after`, at local `at`.
fn next_holiday(
    person: &Person,
    dates: &HolidayDates,
    after: DateTime<Utc>,
    at: ast::Time,
) -> Option<DateTime<Utc>> {
    time::next_holiday(
        person.timezone,
        after + chrono::Duration::seconds(1),
        dates,
        at,
    )
}
