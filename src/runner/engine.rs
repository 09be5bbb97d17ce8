//! Moves one contact through the journeys up to `now`, in time order.
//!
//! A contact's story is a function of what the contact did, never of when
//! cron ran: the engine takes every journey's next due thing for the
//! contact (an exit, the goal, a rescue, a wait that is over, a trigger),
//! acts on the earliest, and goes on until nothing is due by `now`. Each
//! thing is judged at its own instant: conditions see the events up to
//! it, caps see the messages planned before it. So one run at the end of
//! a month does what thirty nightly runs do, and a journey later in the
//! alphabet never goes first because of its name.
//!
//! The jobs: [`entry`](super::entry) (when a contact enters),
//! [`signals`](super::signals) (exit, goal, rescue),
//! [`walk`](super::walk) (the steps), [`actions`](super::actions) (tags,
//! fields, stages, scores) and [`outbox`](super::outbox) (when a message
//! goes out, if at all).

use std::fmt;

use chrono::{DateTime, Utc};

use super::eval::{Context, Program};
use super::person::Person;
use crate::journey::{CompiledJourney, NodeKind};
use crate::model::{EnrolmentState, StepId, Timestamp};
use crate::settings::Settings;
use crate::store::{Contact, Enrolment, Event, RunBatch, StoreError, Transition};
use crate::templates::TemplateSet;

/// How many things one contact may have due in one run: a guard against a
/// bug, far above what years of catch-up need.
pub const MAX_AGENDA: usize = 200_000;

/// The tick of a stage or tag stamp stored by an earlier run or an
/// import: after what the world did at that instant, before what this run
/// does.
pub const STAMP_TICK: u64 = u64::MAX / 2;

/// A point in a run's order of events: an instant, and a tick that orders
/// what happens at the same instant. What the world did (events,
/// schedules, waits running out) is at tick 0; what the run did in reply
/// gets the tick of the step that did it, so its consequences come after
/// it, and a journey never reacts to a change before the change was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment {
    pub at: DateTime<Utc>,
    pub tick: u64,
}

impl Moment {
    pub fn of(at: DateTime<Utc>) -> Moment {
        Moment { at, tick: 0 }
    }

    /// After everything at `at`: where an earlier run left off.
    pub fn after(at: DateTime<Utc>) -> Moment {
        Moment { at, tick: u64::MAX }
    }
}

/// Counts for the run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counts {
    pub contacts: u64,
    pub enrolled: u64,
    pub converted: u64,
    pub exited: u64,
    pub completed: u64,
    pub queued: u64,
    pub deferred: u64,
    pub skipped: u64,
    pub suppressed: u64,
    pub expired: u64,
    pub transitions: u64,
}

/// One journey as this run sees it.
pub struct JourneyRun<'a> {
    pub journey: &'a CompiledJourney,
    /// The content hash of the version running now.
    pub version: String,
    /// Earlier runs did everything up to this instant.
    pub after: DateTime<Utc>,
    /// Earlier runs saw every event that had arrived by this `seq`; one
    /// that arrived later but happened before `after` is acted on as if it
    /// happened just after it.
    pub seen_seq: i64,
    /// This run deploys the journey: nothing before `now` enters it, but
    /// what `backfill` lets in, and that enters at `now`.
    pub launching: bool,
}

impl JourneyRun<'_> {
    pub fn name(&self) -> &str {
        &self.journey.name
    }

    /// When this journey acts on an event: its own time if an earlier run
    /// has not passed it; just after the previous run if it arrived after
    /// that run passed its time; never again if an earlier run saw it.
    pub fn event_moment(&self, event: &Event) -> Option<Moment> {
        let at = event.at.utc();
        // At its launch, what came before is there for `backfill` to see.
        if at > self.after || self.launching {
            Some(Moment::of(at))
        } else if event.seq > self.seen_seq {
            Some(Moment::of(self.after + chrono::Duration::seconds(1)))
        } else {
            None
        }
    }
}

/// Why the runner stopped working on a contact.
#[derive(Debug)]
pub enum RunError {
    Store(StoreError),
    /// A guard against a bug ran out; the contact's work is not finished
    /// and nothing of this batch is written.
    Exhausted {
        contact: String,
        journey: String,
        step: String,
        what: &'static str,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Store(error) => write!(f, "{error}"),
            RunError::Exhausted {
                contact,
                journey,
                step,
                what,
            } => write!(
                f,
                "contact `{contact}` in journey `{journey}` at step `{step}`: {what}; this is a bug in journeyc, please report it with the journey"
            ),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Store(error) => Some(error),
            RunError::Exhausted { .. } => None,
        }
    }
}

impl From<StoreError> for RunError {
    fn from(error: StoreError) -> Self {
        RunError::Store(error)
    }
}

/// The hand-offs among a contact's enrolments, made and taken: what one
/// journey's next step can read of another's enrolments.
fn handoffs(enrolments: &Enrolments) -> (usize, usize) {
    enrolments
        .list
        .iter()
        .filter(|enrolment| enrolment.state == EnrolmentState::HandedOff)
        .fold((0, 0), |(made, taken), enrolment| {
            (made + 1, taken + usize::from(enrolment.data.handoff_taken))
        })
}

/// What the run knows for every contact.
pub struct Engine<'a> {
    pub settings: &'a Settings,
    pub program: &'a Program<'a>,
    pub templates: &'a TemplateSet,
    /// The journeys this run moves, highest priority first, then by name:
    /// at the same instant they act in this order.
    pub journeys: Vec<JourneyRun<'a>>,
    pub now: DateTime<Utc>,
    /// Events that arrived after the run started (`seq` above this) wait
    /// for the next run.
    pub run_seq: i64,
    /// How many things may fall due for one contact in one run before the
    /// runner calls it a bug (`MAX_AGENDA` outside tests).
    pub max_agenda: usize,
}

/// What is due for one journey of the contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    Exit(usize),
    Goal,
    Rescue(usize),
    /// The wait the contact rests at is over.
    Resume(Resume),
    /// The step the contact rests at was removed or changed: the journey's
    /// `moved` rule says where it goes.
    Moved,
    /// A trigger fired; the audience is checked when it is acted on.
    Enter(Entry),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// A timed wait (or the holdout's goal window) ran out.
    Over,
    /// The event a wait waited for came: its id.
    Got(String),
    /// An event wait timed out.
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub reason: String,
    /// The event that triggered it, if one did.
    pub event: Option<String>,
    /// The enrolment (of another journey) that handed the contact over.
    pub handed_from: Option<i64>,
}

/// The store batch and the counts, as the jobs change them.
pub struct Work<'b> {
    pub batch: &'b mut dyn RunBatch,
    pub counts: &'b mut Counts,
    /// Ticks handed out so far for this contact.
    pub ticks: u64,
}

impl Work<'_> {
    pub fn record(
        &mut self,
        enrolment: &Enrolment,
        from: Option<&str>,
        to: Option<&str>,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.counts.transitions += 1;
        self.batch.record(&Transition {
            enrolment_id: enrolment.id,
            contact_id: enrolment.contact_id.clone(),
            journey: enrolment.journey.clone(),
            from_step: from.map(StepId::new),
            to_step: to.map(StepId::new),
            reason,
            at: Timestamp::from(at),
        })
    }
}

/// The contact's enrolments as the run changes them: the latest in every
/// journey (those this run does not move included, for hand-offs).
pub struct Enrolments {
    pub list: Vec<Enrolment>,
}

impl Enrolments {
    pub fn latest(&self, journey: &str) -> Option<&Enrolment> {
        self.list
            .iter()
            .find(|enrolment| enrolment.journey == journey)
    }

    pub fn latest_mut(&mut self, journey: &str) -> Option<&mut Enrolment> {
        self.list
            .iter_mut()
            .find(|enrolment| enrolment.journey == journey)
    }

    pub fn active(&self, journey: &str) -> Option<&Enrolment> {
        self.latest(journey)
            .filter(|enrolment| enrolment.state.is_active())
    }

    /// Replaces the latest enrolment of its journey.
    pub fn put(&mut self, enrolment: Enrolment) {
        match self.latest_mut(&enrolment.journey) {
            Some(slot) => *slot = enrolment,
            None => self.list.push(enrolment),
        }
    }
}

/// Stable A/B bucket in 0..10000 for (contact, journey, test): FNV-1a, so
/// re-runs and re-deployments never reshuffle contacts.
pub fn bucket(contact: &str, journey: &str, test: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in contact
        .bytes()
        .chain([0])
        .chain(journey.bytes())
        .chain([0])
        .chain(test.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 10_000
}

impl Engine<'_> {
    /// What expressions see for this contact at `at`.
    pub fn context<'c>(
        &'c self,
        person: &'c Person,
        event: Option<&'c Event>,
        enrolled_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Context<'c> {
        Context {
            settings: self.settings,
            program: self.program,
            contact: &person.contact.fields,
            events: &person.events,
            event,
            filter_event: None,
            now: at,
            timezone: person.timezone,
            enrolled_at,
            memo: Some((&person.scores, person.edits.len())),
        }
    }

    /// Runs one contact through the journeys up to `now`.
    pub fn contact(
        &self,
        batch: &mut dyn RunBatch,
        contact: Contact,
        counts: &mut Counts,
    ) -> Result<(), RunError> {
        let events = batch.events_of(&contact.id, self.run_seq)?;
        let mut enrolments = Enrolments {
            list: batch.enrolments_of(&contact.id)?,
        };
        let mut person = Person::new(contact, events, self.settings.timezone.0);
        counts.contacts += 1;
        // The run's own ticks come after what the world did at an instant
        // (tick 0) and after the stamps of earlier runs and imports.
        let mut work = Work {
            batch,
            counts,
            ticks: STAMP_TICK,
        };
        self.adopt_legacy_steps(&mut work, &mut enrolments)?;
        let mut cursors: Vec<Moment> = self
            .journeys
            .iter()
            .map(|run| Moment::after(run.after))
            .collect();
        let mut last_journey: Option<usize> = None;
        // What is next for each journey, kept while nothing it reads has
        // changed: an act changes its own journey; an edit of the contact
        // or a hand-off may change any. (The clock only moves forward, and
        // a kept moment at or after it is what a fresh look would find.)
        let mut upcoming: Vec<Option<Option<(Moment, Due)>>> = vec![None; self.journeys.len()];
        let mut seen = (person.edits.len(), handoffs(&enrolments));
        for _ in 0..self.max_agenda {
            let mut next: Option<(Moment, usize, Due)> = None;
            for (index, run) in self.journeys.iter().enumerate() {
                let kept = match &upcoming[index] {
                    Some(Some((moment, _))) => person.clock.is_none_or(|clock| *moment >= clock),
                    Some(None) => true,
                    None => false,
                };
                if !kept {
                    upcoming[index] =
                        Some(self.next_due(&person, &enrolments, run, cursors[index]));
                }
                let Some(Some((moment, due))) = &upcoming[index] else {
                    continue;
                };
                if moment.at <= self.now && next.as_ref().is_none_or(|(best, _, _)| *moment < *best)
                {
                    next = Some((*moment, index, due.clone()));
                }
            }
            let Some((moment, index, due)) = next else {
                let wake = self.wake(&person, &enrolments);
                work.batch
                    .set_wake(&person.contact.id, wake.map(Timestamp::from))?;
                if !person.edits.is_empty() {
                    let edits = std::mem::take(&mut person.edits);
                    work.batch.update_contact(
                        &person.contact.id,
                        std::sync::Arc::new(move |fields| {
                            for edit in &edits {
                                edit.apply(fields);
                            }
                        }),
                    )?;
                }
                return Ok(());
            };
            work.ticks += 1;
            let tick = Moment {
                at: moment.at,
                tick: work.ticks,
            };
            self.act(
                &mut work,
                &mut person,
                &mut enrolments,
                &self.journeys[index],
                tick,
                due,
            )?;
            // Past what was acted on, whatever its tick: nothing is done twice.
            cursors[index] = tick.max(moment);
            person.clock = Some(tick.max(moment));
            last_journey = Some(index);
            upcoming[index] = None;
            let now_seen = (person.edits.len(), handoffs(&enrolments));
            if now_seen != seen {
                seen = now_seen;
                upcoming.fill(None);
            }
        }
        // Name where the contact was last moved: that is where it loops.
        let journey = last_journey
            .map(|index| self.journeys[index].journey.name.clone())
            .unwrap_or_default();
        let step = enrolments
            .list
            .iter()
            .rev()
            .find(|enrolment| enrolment.journey == journey)
            .map(|enrolment| enrolment.step.to_string())
            .unwrap_or_default();
        Err(RunError::Exhausted {
            contact: person.contact.id.clone(),
            journey,
            step,
            what: "more things fell due in one run than any journey can make",
        })
    }

    /// Enrolments stored by a journeyc that named steps by position
    /// (`wait@2`) get the step's present ID, once.
    fn adopt_legacy_steps(
        &self,
        work: &mut Work<'_>,
        enrolments: &mut Enrolments,
    ) -> Result<(), StoreError> {
        for enrolment in &mut enrolments.list {
            if !enrolment.state.is_active() || !enrolment.step_print.is_empty() {
                continue;
            }
            let Some(run) = self
                .journeys
                .iter()
                .find(|run| run.name() == enrolment.journey)
            else {
                continue;
            };
            let journey = run.journey;
            let found = journey.node(enrolment.step.as_str()).or_else(|| {
                journey
                    .nodes()
                    .find(|(_, node)| node.legacy_id == enrolment.step.as_str())
                    .map(|(index, _)| index)
            });
            if let Some(index) = found {
                enrolment.step = StepId::new(journey.graph[index].id.clone());
                enrolment.step_print.clone_from(&journey.graph[index].print);
                work.batch.update_enrolment(enrolment)?;
            }
        }
        Ok(())
    }

    /// The earliest thing due for one journey of the contact, after the
    /// journey's cursor.
    fn next_due(
        &self,
        person: &Person,
        enrolments: &Enrolments,
        run: &JourneyRun<'_>,
        cursor: Moment,
    ) -> Option<(Moment, Due)> {
        match enrolments.active(run.name()) {
            Some(enrolment) => self.next_for_enrolment(person, enrolment, run, cursor),
            None => self.next_entry(person, enrolments, run, cursor),
        }
    }

    /// Acts on what is due, at `moment`.
    fn act(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        enrolments: &mut Enrolments,
        run: &JourneyRun<'_>,
        moment: Moment,
        due: Due,
    ) -> Result<(), RunError> {
        if let Due::Enter(entry) = due {
            return self.enter(work, person, enrolments, run, moment, entry);
        }
        let Some(mut enrolment) = enrolments.active(run.name()).cloned() else {
            return Ok(());
        };
        self.advance(work, person, run, &mut enrolment, moment, due)?;
        work.batch.update_enrolment(&enrolment)?;
        enrolments.put(enrolment);
        Ok(())
    }

    /// Ends an enrolment at `at` in `state`.
    pub fn finish(
        &self,
        work: &mut Work<'_>,
        enrolment: &mut Enrolment,
        state: EnrolmentState,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let from = enrolment.step.to_string();
        work.record(enrolment, Some(&from), None, reason, at)?;
        enrolment.state = state;
        enrolment.due_at = None;
        enrolment.ended_at = Some(Timestamp::from(at));
        match state {
            EnrolmentState::Exited => work.counts.exited += 1,
            EnrolmentState::Completed => work.counts.completed += 1,
            EnrolmentState::Converted => work.counts.converted += 1,
            EnrolmentState::Active | EnrolmentState::HandedOff => {}
        }
        Ok(())
    }

    /// The event an enrolment's templates and conditions read as `event.`.
    pub fn event_of<'p>(&self, person: &'p Person, enrolment: &Enrolment) -> Option<&'p Event> {
        let id = enrolment.event_id.as_deref()?;
        person.events.iter().find(|event| event.id == id)
    }
}

/// Where a resting enrolment stands: the node, if this version still has
/// it with the same meaning.
pub fn resting_node(
    journey: &CompiledJourney,
    enrolment: &Enrolment,
) -> Option<petgraph::graph::NodeIndex> {
    let index = journey.node(enrolment.step.as_str())?;
    let node = &journey.graph[index];
    let same = enrolment.step_print.is_empty() || enrolment.step_print == node.print;
    let rests = matches!(
        node.kind,
        NodeKind::WaitDuration(_)
            | NodeKind::WaitClock { .. }
            | NodeKind::WaitDate { .. }
            | NodeKind::WaitEvent { .. }
            | NodeKind::Holdout
    );
    (same && rests).then_some(index)
}
