//! What is due for a contact inside a journey: an exit rule, the goal, a
//! rescue, or the end of the wait it rests at; and when a signal fires.

use chrono::{DateTime, Utc};

use super::engine::{resting_node, Due, Engine, JourneyRun, Moment, Resume};
use super::eval;
use super::person::{Person, STAGE_STAMPS, TAG_STAMPS};
use super::time;
use crate::ast::{self, Signal};
use crate::journey::NodeKind;
use crate::model::Timestamp;
use crate::store::{Enrolment, Event};

impl Engine<'_> {
    /// The earliest of: an exit rule firing, the goal reached within its
    /// window, a rescue (once per enrolment), the wait running out. At the
    /// same moment they count in that order.
    pub(super) fn next_for_enrolment(
        &self,
        person: &Person,
        enrolment: &Enrolment,
        run: &JourneyRun<'_>,
        cursor: Moment,
    ) -> Option<(Moment, Due)> {
        let journey = run.journey;
        let entered = enrolment.entered_at.utc();
        let rested = enrolment.data.wait_started.map(Timestamp::utc);
        // Nothing before the contact came to rest where it is was left
        // undone: after a crash between batches, a run starting from the
        // last finished one never replays a moment this contact is past.
        let lower = match rested {
            Some(rested) if rested > cursor.at => Moment::after(rested),
            _ => cursor,
        };
        // Entered by this run just now: a condition that holds at once fires
        // at once. (An enrolment from an earlier run was judged then.)
        let fresh = entered > run.after
            && lower.at == entered
            && rested.is_none_or(|rested| rested == entered);
        let event = self.event_of(person, enrolment);
        let mut best: Option<(Moment, Due)> = None;
        let mut consider = |moment: Moment, due: Due| {
            if moment.at <= self.now && best.as_ref().is_none_or(|(at, _)| moment < *at) {
                best = Some((moment, due));
            }
        };
        let window = Window {
            lower,
            until: self.now,
            fresh,
            entered,
            event,
        };
        for (index, signal) in journey.rules.exits.iter().enumerate() {
            if let Some(moment) = self.fires(person, run, signal, &window) {
                consider(moment, Due::Exit(index));
            }
        }
        if let Some(goal) = &journey.rules.goal {
            let deadline = time::add(person.timezone, entered, goal.within.node);
            let until = Window {
                until: deadline.min(self.now),
                ..window.clone()
            };
            if let Some(moment) = self.fires(person, run, &goal.condition, &until) {
                consider(moment, Due::Goal);
            }
        }
        // The control group receives nothing from the journey, rescue
        // messages included, or the uplift it measures would be wrong.
        let in_holdout = resting_node(journey, enrolment)
            .is_some_and(|node| matches!(journey.graph[node].kind, NodeKind::Holdout));
        if !enrolment.data.rescued && !in_holdout {
            for (index, (signal, _)) in journey.rules.rescues.iter().enumerate() {
                if let Some(moment) = self.fires(person, run, signal, &window) {
                    consider(moment, Due::Rescue(index));
                }
            }
        }
        match resting_node(journey, enrolment) {
            Some(node) => match &journey.graph[node].kind {
                NodeKind::WaitEvent {
                    timeout,
                    event: name,
                    filter,
                } => {
                    let started = rested.unwrap_or(entered);
                    let deadline = time::add(person.timezone, started, *timeout);
                    let context = self.context(person, event, Some(entered), started);
                    let got =
                        Self::first_event(person, run, name, filter.as_ref(), context, |moment| {
                            moment > lower && moment.at > started && moment.at <= deadline
                        });
                    match got {
                        Some((id, moment)) => consider(moment, Due::Resume(Resume::Got(id))),
                        None => consider(
                            Moment::of(deadline).max(lower),
                            Due::Resume(Resume::Timeout),
                        ),
                    }
                }
                _ => {
                    let due = enrolment.due_at.map_or(lower.at, Timestamp::utc);
                    consider(Moment::of(due).max(lower), Due::Resume(Resume::Over));
                }
            },
            None => {
                let ruled = journey
                    .rules
                    .moved
                    .iter()
                    .any(|(from, _)| *from == enrolment.step.as_str());
                if ruled {
                    consider(lower, Due::Moved);
                }
            }
        }
        best
    }

    /// The first moment in the window at which the signal fires.
    fn fires(
        &self,
        person: &Person,
        run: &JourneyRun<'_>,
        signal: &Signal,
        window: &Window<'_>,
    ) -> Option<Moment> {
        match signal {
            Signal::Event {
                event: name,
                filter,
            } => {
                let context =
                    self.context(person, window.event, Some(window.entered), window.until);
                Self::first_event(
                    person,
                    run,
                    &name.node,
                    filter.as_ref(),
                    context,
                    |moment| moment > window.lower && moment.at <= window.until,
                )
                .map(|(_, moment)| moment)
            }
            // A stage or tag fires when it was set; one that already held
            // at the start of the window fires at once.
            Signal::Stage(stage) => {
                let held = eval::stage_at(&person.contact.fields, window.lower.at).as_deref()
                    == Some(stage.node.as_str());
                let set = stamp_moment(person, STAGE_STAMPS, &stage.node)
                    .filter(|moment| *moment > window.lower);
                held.then_some(window.lower)
                    .or(set)
                    .filter(|moment| moment.at <= window.until)
            }
            Signal::Tag(tag) => {
                let held = eval::tag_at(&person.contact.fields, &tag.node, window.lower.at);
                let set = stamp_moment(person, TAG_STAMPS, &tag.node)
                    .filter(|moment| *moment > window.lower);
                held.then_some(window.lower)
                    .or(set)
                    .filter(|moment| moment.at <= window.until)
            }
            Signal::When(condition) => {
                Self::checkpoints(person, run, window.lower, window.until, window.fresh)
                    .into_iter()
                    .find(|moment| {
                        eval::holds(
                            condition,
                            self.context(person, window.event, Some(window.entered), moment.at),
                        )
                    })
            }
        }
    }

    /// The first event named `name` that `accept` takes (by the moment the
    /// journey acts on it) and that matches `filter` (bare names in it are
    /// the event's properties), by that moment.
    pub(super) fn first_event(
        person: &Person,
        run: &JourneyRun<'_>,
        name: &str,
        filter: Option<&ast::Expr>,
        context: eval::Context<'_>,
        accept: impl Fn(Moment) -> bool,
    ) -> Option<(String, Moment)> {
        person
            .events
            .iter()
            .filter(|candidate| candidate.name == name)
            .filter_map(|candidate| {
                run.event_moment(candidate)
                    .map(|moment| (candidate, moment))
            })
            .filter(|(_, moment)| accept(*moment))
            .filter(|(candidate, _)| {
                filter.is_none_or(|filter| {
                    eval::holds(
                        filter,
                        eval::Context {
                            filter_event: Some(candidate),
                            now: candidate.at.utc(),
                            ..context
                        },
                    )
                })
            })
            .min_by_key(|(_, moment)| *moment)
            .map(|(candidate, moment)| (candidate.id.clone(), moment))
    }

    /// When conditions (`when ...`) are checked: at every event the journey
    /// acts on, every change a run made to the contact, every stage or tag
    /// set, and every local midnight, in `(lower, until]`; and at `lower`
    /// itself when the contact has just entered. Never before the last
    /// thing this run did for the contact, which the working copy already
    /// shows.
    pub(super) fn checkpoints(
        person: &Person,
        run: &JourneyRun<'_>,
        lower: Moment,
        until: DateTime<Utc>,
        fresh: bool,
    ) -> Vec<Moment> {
        let mut moments: Vec<Moment> = Vec::new();
        if fresh {
            moments.push(lower);
        }
        moments.extend(
            person
                .events
                .iter()
                .filter_map(|event| run.event_moment(event)),
        );
        moments.extend(person.change_moments());
        for key in [STAGE_STAMPS, TAG_STAMPS] {
            if let Some(serde_json::Value::Object(stamps)) = person.field(key) {
                moments.extend(
                    stamps
                        .keys()
                        .filter_map(|name| stamp_moment(person, key, name)),
                );
            }
        }
        moments.extend(
            time::midnights(person.timezone, lower.at.max(run.after), until)
                .into_iter()
                .map(Moment::of),
        );
        // Before the last thing the run did, the contact may have been
        // different from the working copy: those moments were judged then.
        let floor = person.clock;
        moments.retain(|moment| {
            (*moment > lower || (fresh && *moment == lower))
                && floor.is_none_or(|floor| *moment >= floor)
                && moment.at <= until
        });
        moments.sort_unstable();
        moments.dedup();
        moments
    }
}

/// The span a signal is looked for in.
#[derive(Clone)]
struct Window<'e> {
    /// Strictly after this (state signals that already hold fire at it).
    lower: Moment,
    until: DateTime<Utc>,
    /// The contact entered at `lower`: a condition that holds then fires.
    fresh: bool,
    entered: DateTime<Utc>,
    event: Option<&'e Event>,
}

/// When a stage or tag was set: the moment of this run's change that set
/// it, or the stamp's instant, after what the world did at that instant
/// (a stamp is a consequence: of a journey's step, or of an import).
pub(super) fn stamp_moment(person: &Person, key: &'static str, name: &str) -> Option<Moment> {
    person.stamp_moment(key, name).or_else(|| {
        person.stamped(key, name).map(|at| Moment {
            at,
            tick: super::engine::STAMP_TICK,
        })
    })
}
