//! Moves one contact through the journeys at `now`. The order per contact
//! and journey is the contract of DESIGN.md: exit rules, goal, rescue,
//! resume a due wait, advance, enrol. Everything a contact does between
//! waits happens in the same run, timed at the moment it became due, so a
//! missed night is caught up step by step.

use std::collections::HashMap;

use chrono::{DateTime, Duration as Span, Utc};
use chrono_tz::Tz;
use petgraph::graph::NodeIndex;
use serde_json::{Map, Value as Json};

use super::eval::{self, parse_instant, Context, Program};
use super::time::{self, SendRules};
use crate::ast::{self, Channel, LimitKind, Reentry, Signal, StepKind, Trigger};
use crate::graph::{CompiledJourney, EdgeKind, NodeKind};
use crate::settings::{OverCap, Settings};
use crate::store::{Contact, Enrolment, Event, OutboxRow, RunBatch, StoreError, Transition};
use crate::templates::{MessageKind, TemplateSet};

/// How many times one run goes round the journeys for one contact.
const MAX_PASSES: usize = 8;
/// How many journeys one hand-off chain may cross in one run.
const MAX_HANDOFFS: usize = 8;
/// How many steps one enrolment may take in one run (a DAG bounds it; this
/// is a guard against a bug, not a limit users meet).
const MAX_STEPS: usize = 100_000;

pub fn text(moment: DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn minutes(duration: ast::Duration) -> Span {
    Span::minutes(i64::try_from(duration.minutes).unwrap_or(i64::MAX / 4))
}

/// Counts for the run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
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

/// What the runner knows for the whole run.
pub struct Engine<'a> {
    pub settings: &'a Settings,
    pub program: &'a Program<'a>,
    pub journeys: Vec<&'a CompiledJourney>,
    pub templates: &'a TemplateSet,
    pub versions: &'a HashMap<String, String>,
    pub now: DateTime<Utc>,
    /// The `now` of the previous run: scheduled occurrences before it were
    /// that run's to act on.
    pub previous_run: Option<DateTime<Utc>>,
}

struct Work<'b> {
    batch: &'b mut dyn RunBatch,
    counts: &'b mut Counts,
}

impl Work<'_> {
    fn record(
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
            from_step: from.map(str::to_string),
            to_step: to.map(str::to_string),
            reason,
            at: text(at),
        })
    }
}

/// The contact as the runner changes it.
struct Person {
    contact: Contact,
    events: Vec<Event>,
    timezone: Tz,
    changed: bool,
    /// Changed during the current pass over the journeys.
    dirty: bool,
}

impl Person {
    fn tags(&self) -> Vec<String> {
        match self.contact.fields.get("tags") {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn has_tag(&self, tag: &str) -> bool {
        matches!(self.contact.fields.get("tags"), Some(Json::Array(items))
            if items.iter().any(|item| item.as_str() == Some(tag)))
    }

    fn stamp(&mut self, key: &str, name: &str, at: DateTime<Utc>) {
        let map = self
            .contact
            .fields
            .entry(key.to_string())
            .or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(map) = map {
            map.insert(name.to_string(), Json::String(text(at)));
        }
    }

    fn stamped(&self, key: &str, name: &str) -> Option<DateTime<Utc>> {
        self.contact
            .fields
            .get(key)?
            .get(name)?
            .as_str()
            .and_then(parse_instant)
    }
}

/// The first event named `name` whose time `within` accepts and that
/// matches `filter` (bare names in it are the event's properties).
fn first_event<'e>(
    events: &'e [Event],
    name: &str,
    filter: Option<&ast::Expr>,
    context: Context<'e>,
    within: &dyn Fn(DateTime<Utc>) -> bool,
) -> Option<(&'e Event, DateTime<Utc>)> {
    events
        .iter()
        .filter(|candidate| candidate.name == name)
        .filter_map(|candidate| parse_instant(&candidate.at).map(|at| (candidate, at)))
        .filter(|(_, at)| within(*at))
        .find(|(candidate, _)| {
            filter.is_none_or(|filter| {
                eval::holds(
                    filter,
                    Context {
                        filter_event: Some(candidate),
                        ..context
                    },
                )
            })
        })
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
    fn context<'c>(
        &'c self,
        person: &'c Person,
        event: Option<&'c Event>,
        enrolled_at: Option<DateTime<Utc>>,
    ) -> Context<'c> {
        Context {
            settings: self.settings,
            program: self.program,
            contact: &person.contact.fields,
            events: &person.events,
            event,
            filter_event: None,
            now: self.now,
            timezone: person.timezone,
            enrolled_at,
        }
    }

    /// Runs one contact through every journey.
    pub fn contact(
        &self,
        batch: &mut dyn RunBatch,
        contact: Contact,
        counts: &mut Counts,
    ) -> Result<(), StoreError> {
        let events = batch.events_of(&contact.id)?;
        let mut enrolments = batch.enrolments_of(&contact.id)?;
        let timezone = contact
            .fields
            .get("timezone")
            .and_then(Json::as_str)
            .and_then(|zone| zone.parse().ok())
            .unwrap_or(self.settings.timezone.0);
        let mut person = Person {
            contact,
            events,
            timezone,
            changed: false,
            dirty: false,
        };
        counts.contacts += 1;
        let mut work = Work { batch, counts };
        // A journey later in the list can change what an earlier one sees
        // (a stage or tag it enters on): go round again until nothing
        // changes, so that one run leaves nothing for a second run at the
        // same `now` to do.
        for _ in 0..MAX_PASSES {
            person.dirty = false;
            for journey in &self.journeys {
                self.journey(&mut work, &mut person, &mut enrolments, journey, None, 0)?;
            }
            if !person.dirty {
                break;
            }
        }
        if person.changed {
            work.batch.save_contact(&person.contact)?;
        }
        Ok(())
    }

    /// One journey for one contact. `handed_at` is set when another journey
    /// hands the contact over at that moment.
    fn journey(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        enrolments: &mut Vec<Enrolment>,
        journey: &CompiledJourney,
        handed_at: Option<DateTime<Utc>>,
        depth: usize,
    ) -> Result<(), StoreError> {
        let active = enrolments
            .iter()
            .position(|enrolment| enrolment.journey == journey.name && enrolment.state == "active");
        let index = match active {
            Some(index) => index,
            None => {
                let Some((at, reason, trigger_event)) =
                    self.trigger(person, enrolments, journey, handed_at)
                else {
                    return Ok(());
                };
                let mut data = Map::new();
                if let Some(event) = &trigger_event {
                    data.insert("event".into(), Json::String(event.clone()));
                }
                let mut enrolment = Enrolment {
                    id: 0,
                    contact_id: person.contact.id.clone(),
                    journey: journey.name.clone(),
                    version: self
                        .versions
                        .get(&journey.name)
                        .cloned()
                        .unwrap_or_default(),
                    state: "active".into(),
                    step: journey.graph[journey.start].id.clone(),
                    due_at: Some(text(at)),
                    entered_at: text(at),
                    ended_at: None,
                    data,
                };
                enrolment.id = work.batch.insert_enrolment(&enrolment)?;
                work.counts.enrolled += 1;
                work.record(
                    &enrolment,
                    None,
                    Some(&enrolment.step),
                    format!("entered: {reason}"),
                    at,
                )?;
                enrolments.push(enrolment);
                enrolments.len() - 1
            }
        };
        let mut enrolment = enrolments[index].clone();
        let handoff = self.advance(work, person, journey, &mut enrolment)?;
        if enrolment != enrolments[index] {
            work.batch.update_enrolment(&enrolment)?;
        }
        enrolments[index] = enrolment;
        if let Some((target, at)) = handoff {
            if depth < MAX_HANDOFFS {
                if let Some(next) = self
                    .journeys
                    .iter()
                    .find(|candidate| candidate.name == target)
                {
                    self.journey(work, person, enrolments, next, Some(at), depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// When and why the contact enters, if it does now.
    fn trigger(
        &self,
        person: &Person,
        enrolments: &[Enrolment],
        journey: &CompiledJourney,
        handed_at: Option<DateTime<Utc>>,
    ) -> Option<(DateTime<Utc>, String, Option<String>)> {
        // The audience is checked last, once a trigger fired: most contacts
        // match no trigger of most journeys on a given night, and looking
        // at a stage, a tag or the latest events costs less than evaluating
        // an audience (a score, a count).
        let previous: Vec<&Enrolment> = enrolments
            .iter()
            .filter(|enrolment| enrolment.journey == journey.name)
            .collect();
        let since = previous
            .iter()
            .filter_map(|enrolment| parse_instant(&enrolment.entered_at))
            .max();
        let last_end = previous
            .iter()
            .filter_map(|enrolment| enrolment.ended_at.as_deref().and_then(parse_instant))
            .max();
        let allowed_after = match (&journey.rules.reentry, previous.is_empty()) {
            (_, true) => None,
            (None | Some(Reentry::Never), false) => return None,
            (Some(Reentry::Always), false) => last_end,
            (Some(Reentry::After(wait)), false) => last_end.map(|end| end + minutes(wait.node)),
        };
        let lower = since.max(allowed_after.map(|at| at - Span::seconds(1)));
        let fresh = |at: DateTime<Utc>| at <= self.now && lower.is_none_or(|lower| at > lower);
        // Schedules, dates and holidays look back only to the previous run,
        // and never to before the contact existed: a first run must not
        // greet a new contact for last Christmas.
        let created = person
            .contact
            .fields
            .get("created_at")
            .and_then(Json::as_str)
            .and_then(parse_instant);
        // The first run of a store has no previous run: it looks back one
        // day (today's birthdays), not a year.
        let previous_run = self.previous_run.unwrap_or(self.now - Span::days(1));
        let lower_scheduled = lower.max(Some(previous_run)).max(created);
        let fresh_scheduled =
            |at: DateTime<Utc>| at <= self.now && lower_scheduled.is_none_or(|lower| at > lower);
        let mut candidates: Vec<(DateTime<Utc>, String, Option<String>)> = Vec::new();
        if let Some(at) = handed_at {
            candidates.push((at, "handed over".into(), None));
        }
        for trigger in &journey.rules.triggers {
            match trigger {
                Trigger::Event { event, filter } => {
                    let context = self.context(person, None, None);
                    let found = first_event(
                        &person.events,
                        &event.node,
                        filter.as_ref(),
                        context,
                        &fresh,
                    );
                    if let Some((found, at)) = found {
                        candidates.push((
                            at,
                            format!("event {}", event.node),
                            Some(found.id.clone()),
                        ));
                    }
                }
                Trigger::Stage(stage) => {
                    let on_stage = person.contact.fields.get("stage").and_then(Json::as_str)
                        == Some(stage.node.as_str());
                    if let (true, Some(at)) =
                        (on_stage, person.stamped("__stage_changed_at", &stage.node))
                    {
                        if fresh(at) {
                            candidates.push((at, format!("stage became {}", stage.node), None));
                        }
                    }
                }
                Trigger::Tag(tag) => {
                    if person.has_tag(&tag.node) {
                        if let Some(at) = person
                            .stamped("__tagged_at", &tag.node)
                            .filter(|at| fresh(*at))
                        {
                            candidates.push((at, format!("tag {} added", tag.node), None));
                        }
                    }
                }
                Trigger::Date { field, at } => {
                    let date = person
                        .contact
                        .fields
                        .get(&field.node)
                        .and_then(Json::as_str)
                        .and_then(|text| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok());
                    if let Some(date) = date {
                        let clock = at
                            .as_ref()
                            .map_or(ast::Time { hour: 0, minute: 0 }, |at| at.node);
                        if let Some(moment) = time::latest_anniversary(
                            person.timezone,
                            lower_scheduled,
                            self.now,
                            chrono::Datelike::month(&date),
                            chrono::Datelike::day(&date),
                            clock,
                        ) {
                            candidates.push((moment, format!("{} anniversary", field.node), None));
                        }
                    }
                }
                Trigger::Holiday { holiday, at } => {
                    let clock = at
                        .as_ref()
                        .map_or(ast::Time { hour: 0, minute: 0 }, |at| at.node);
                    let moment = match self.settings.holidays.get(&holiday.node) {
                        Some(crate::settings::HolidayDates::Annual { month, day }) => {
                            time::latest_anniversary(
                                person.timezone,
                                lower_scheduled,
                                self.now,
                                *month,
                                *day,
                                clock,
                            )
                        }
                        Some(crate::settings::HolidayDates::Dates(dates)) => time::latest_listed(
                            person.timezone,
                            lower_scheduled,
                            self.now,
                            dates,
                            clock,
                        ),
                        None => None,
                    };
                    if let Some(moment) = moment {
                        candidates.push((moment, format!("holiday {}", holiday.node), None));
                    }
                }
                Trigger::Daily { at } => {
                    if let Some(moment) = time::latest_daily(
                        person.timezone,
                        lower_scheduled,
                        self.now,
                        at.node,
                        None,
                    ) {
                        candidates.push((moment, format!("daily at {}", at.node), None));
                    }
                }
                Trigger::Weekly { weekday, at } => {
                    if let Some(moment) = time::latest_daily(
                        person.timezone,
                        lower_scheduled,
                        self.now,
                        at.node,
                        Some(weekday.node),
                    ) {
                        candidates.push((
                            moment,
                            format!(
                                "every {} at {}",
                                crate::format::weekday_name(weekday.node),
                                at.node
                            ),
                            None,
                        ));
                    }
                }
                Trigger::Once { date, at } => {
                    let moment = time::local_instant(person.timezone, date.node, at.node);
                    if fresh_scheduled(moment) {
                        candidates.push((
                            moment,
                            format!("once {} at {}", date.node, at.node),
                            None,
                        ));
                    }
                }
                Trigger::When(condition) => {
                    if fresh(self.now) && eval::holds(condition, self.context(person, None, None)) {
                        candidates.push((
                            self.now,
                            format!("when {}", crate::format::expr(condition)),
                            None,
                        ));
                    }
                }
            }
        }
        candidates.sort_by_key(|(at, _, _)| *at);
        let (at, reason, event) = candidates.into_iter().next()?;
        let trigger_event = event
            .as_ref()
            .and_then(|id| person.events.iter().find(|candidate| candidate.id == *id));
        let audience_holds = journey.rules.audience.as_ref().is_none_or(|audience| {
            eval::holds(audience, self.context(person, trigger_event, None))
        });
        audience_holds.then_some((at, reason, event))
    }

    /// When a signal fired in `(after, now]`, if it did.
    fn fired(
        &self,
        person: &Person,
        signal: &Signal,
        after: DateTime<Utc>,
        enrolled_at: DateTime<Utc>,
        event: Option<&Event>,
    ) -> Option<DateTime<Utc>> {
        match signal {
            Signal::Event {
                event: name,
                filter,
            } => {
                let context = self.context(person, event, Some(enrolled_at));
                first_event(
                    &person.events,
                    &name.node,
                    filter.as_ref(),
                    context,
                    &|at| at > after && at <= self.now,
                )
                .map(|(_, at)| at)
            }
            Signal::Stage(stage) => {
                let on_stage = person.contact.fields.get("stage").and_then(Json::as_str)
                    == Some(stage.node.as_str());
                on_stage.then(|| {
                    person
                        .stamped("__stage_changed_at", &stage.node)
                        .unwrap_or(self.now)
                        .max(after)
                        .min(self.now)
                })
            }
            Signal::Tag(tag) => person.has_tag(&tag.node).then(|| {
                person
                    .stamped("__tagged_at", &tag.node)
                    .unwrap_or(self.now)
                    .max(after)
                    .min(self.now)
            }),
            Signal::When(condition) => {
                eval::holds(condition, self.context(person, event, Some(enrolled_at)))
                    .then_some(self.now)
            }
        }
    }

    /// The journey-level rules, then the steps, until the contact rests at
    /// a wait or leaves. Returns a hand-off to make.
    fn advance(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        journey: &CompiledJourney,
        enrolment: &mut Enrolment,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let Some(entered) = parse_instant(&enrolment.entered_at) else {
            return Ok(None);
        };
        let trigger_event = enrolment
            .data
            .get("event")
            .and_then(Json::as_str)
            .and_then(|id| person.events.iter().find(|event| event.id == id))
            .cloned();
        // Exit rules, goal, rescue: in this order, before any step.
        for signal in &journey.rules.exits {
            if let Some(at) = self.fired(person, signal, entered, entered, trigger_event.as_ref()) {
                return self.finish(
                    work,
                    enrolment,
                    "exited",
                    format!("exit: {}", crate::format::signal(signal)),
                    at.max(entered),
                );
            }
        }
        if let Some(goal) = &journey.rules.goal {
            let deadline = entered + minutes(goal.within.node);
            if let Some(at) = self
                .fired(
                    person,
                    &goal.condition,
                    entered,
                    entered,
                    trigger_event.as_ref(),
                )
                .filter(|at| *at <= deadline)
            {
                if let Some(actions) = &goal.then {
                    for action in actions {
                        self.act(person, &action.kind, at);
                    }
                }
                work.counts.converted += 1;
                let reason = format!(
                    "goal: {}",
                    crate::format::signal(&goal.condition).trim_start_matches("on ")
                );
                return self.finish(work, enrolment, "converted", reason, at.max(entered));
            }
        }
        let node_of = |id: &str| journey.node(id);
        let Some(mut node) = node_of(&enrolment.step) else {
            // A step this version removed: the journey's `moved` rule says
            // where the contact goes (the run refuses to start without one).
            let Some(&(_, target)) = journey
                .rules
                .moved
                .iter()
                .find(|(from, _)| *from == enrolment.step)
            else {
                return Ok(None);
            };
            let from = enrolment.step.clone();
            enrolment.data.remove("wait_started");
            work.record(
                enrolment,
                Some(&from),
                Some(&journey.graph[target].id),
                format!("moved: step {from} was removed"),
                self.now,
            )?;
            return self.walk(
                work,
                person,
                journey,
                enrolment,
                target,
                self.now,
                trigger_event.as_ref(),
                true,
            );
        };
        let mut clock = enrolment
            .due_at
            .as_deref()
            .and_then(parse_instant)
            .unwrap_or(entered);
        let rescued = enrolment
            .data
            .get("rescued")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        // A rescue moves the contact to its target, which it then enters.
        let mut entering = false;
        let rescue =
            journey
                .rules
                .rescues
                .iter()
                .filter(|_| !rescued)
                .find_map(|(signal, target)| {
                    self.fired(person, signal, entered, entered, trigger_event.as_ref())
                        .map(|at| (signal, *target, at))
                });
        if let Some((signal, target, at)) = rescue {
            enrolment.data.insert("rescued".into(), Json::Bool(true));
            enrolment.data.remove("wait_started");
            let from = journey.graph[node].id.clone();
            node = target;
            clock = at.max(entered);
            entering = true;
            work.record(
                enrolment,
                Some(&from),
                Some(&journey.graph[node].id),
                format!("rescue: {}", crate::format::signal(signal)),
                clock,
            )?;
        }
        self.walk(
            work,
            person,
            journey,
            enrolment,
            node,
            clock,
            trigger_event.as_ref(),
            entering,
        )
    }

    fn finish(
        &self,
        work: &mut Work<'_>,
        enrolment: &mut Enrolment,
        state: &str,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let at = at.min(self.now);
        work.record(enrolment, Some(&enrolment.step.clone()), None, reason, at)?;
        enrolment.state = state.into();
        enrolment.due_at = None;
        enrolment.ended_at = Some(text(at));
        match state {
            "exited" => work.counts.exited += 1,
            "completed" => work.counts.completed += 1,
            _ => {}
        }
        Ok(None)
    }

    /// Walks from `node` (reached at `clock`); `entering` says the node is
    /// entered now rather than resumed from a wait.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        journey: &CompiledJourney,
        enrolment: &mut Enrolment,
        mut node: NodeIndex,
        mut clock: DateTime<Utc>,
        event: Option<&Event>,
        mut entering: bool,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let entered = parse_instant(&enrolment.entered_at).unwrap_or(clock);
        for _ in 0..MAX_STEPS {
            let current = &journey.graph[node];
            let successors = journey.successors(node);
            let next_of = |wanted: &dyn Fn(&EdgeKind) -> bool| {
                successors
                    .iter()
                    .find(|(edge, _)| wanted(&edge.kind))
                    .map(|(_, target)| *target)
            };
            let follow: Option<(NodeIndex, String)> = match &current.kind {
                NodeKind::Start => next_of(&|_| true).map(|next| (next, "started".to_string())),
                NodeKind::Message(message) => {
                    if entering {
                        let note = self.queue(
                            work,
                            person,
                            journey,
                            enrolment,
                            &current.id,
                            message,
                            clock,
                        )?;
                        next_of(&|_| true).map(|next| (next, note))
                    } else {
                        next_of(&|_| true).map(|next| (next, "sent".to_string()))
                    }
                }
                NodeKind::WaitDuration(_)
                | NodeKind::WaitClock { .. }
                | NodeKind::WaitDate { .. } => {
                    let due = if entering {
                        let due = self.due(person, &current.kind, clock, entered);
                        enrolment
                            .data
                            .insert("wait_started".into(), Json::String(text(clock)));
                        due
                    } else {
                        enrolment
                            .due_at
                            .as_deref()
                            .and_then(parse_instant)
                            .unwrap_or(clock)
                    };
                    if due > self.now {
                        return self.rest(work, enrolment, &current.id, due, entering, clock);
                    }
                    clock = due.max(clock);
                    next_of(&|_| true).map(|next| (next, format!("waited until {}", text(due))))
                }
                NodeKind::WaitEvent {
                    timeout,
                    event: name,
                    filter,
                } => {
                    let started = if entering {
                        enrolment
                            .data
                            .insert("wait_started".into(), Json::String(text(clock)));
                        clock
                    } else {
                        enrolment
                            .data
                            .get("wait_started")
                            .and_then(Json::as_str)
                            .and_then(parse_instant)
                            .unwrap_or(clock)
                    };
                    let deadline = started + minutes(*timeout);
                    let context = self.context(person, event, Some(entered));
                    let got = first_event(&person.events, name, filter.as_ref(), context, &|at| {
                        at > started && at <= deadline && at <= self.now
                    })
                    .map(|(candidate, at)| (candidate.id.clone(), at));
                    if let Some((id, at)) = got {
                        clock = at;
                        enrolment.data.insert("event".into(), Json::String(id));
                        next_of(&|kind| matches!(kind, EdgeKind::Got))
                            .map(|next| (next, format!("got: event {name}")))
                    } else if deadline <= self.now {
                        clock = deadline.max(clock);
                        next_of(&|kind| matches!(kind, EdgeKind::Timeout))
                            .map(|next| (next, format!("timeout: no {name} within {timeout}")))
                    } else {
                        return self.rest(work, enrolment, &current.id, deadline, entering, clock);
                    }
                }
                NodeKind::Split => {
                    let context = self.context(person, event, Some(entered));
                    let chosen = successors.iter().find(|(edge, _)| match &edge.kind {
                        EdgeKind::When { condition, .. } => eval::holds(condition, context),
                        EdgeKind::Else => true,
                        _ => false,
                    });
                    chosen.map(|(edge, target)| {
                        let reason = match &edge.kind {
                            EdgeKind::When { condition, .. } => {
                                format!(
                                    "split: {}{}",
                                    crate::format::expr(condition),
                                    eval::explain(condition, context)
                                )
                            }
                            _ => "split: else".to_string(),
                        };
                        (*target, reason)
                    })
                }
                NodeKind::Ab { name } => {
                    let bucket = bucket(&person.contact.id, &journey.name, name);
                    let mut upper = 0.0;
                    let mut chosen = None;
                    for (edge, target) in &successors {
                        let (label, weight) = match &edge.kind {
                            EdgeKind::Variant { name, weight } => (name.clone(), *weight),
                            EdgeKind::Holdout { weight } => ("holdout".to_string(), *weight),
                            _ => continue,
                        };
                        upper += weight * 100.0;
                        #[allow(clippy::cast_precision_loss)]
                        if (bucket as f64) < upper && chosen.is_none() {
                            chosen = Some((*target, format!("A/B {name}: {label}")));
                        }
                    }
                    chosen.or_else(|| {
                        successors
                            .last()
                            .map(|(_, target)| (*target, format!("A/B {name}")))
                    })
                }
                NodeKind::Action(action) => {
                    let note = self.act(person, action, clock);
                    next_of(&|_| true).map(|next| (next, note))
                }
                NodeKind::Holdout => {
                    return self.finish(
                        work,
                        enrolment,
                        "holdout",
                        "holdout: control group".into(),
                        clock,
                    )
                }
                NodeKind::End => {
                    return self.finish(work, enrolment, "completed", "completed".into(), clock)
                }
                NodeKind::Handoff(target) => {
                    self.finish(
                        work,
                        enrolment,
                        "handed_off",
                        format!("handed off to {target}"),
                        clock,
                    )?;
                    return Ok(Some((target.clone(), clock)));
                }
            };
            let Some((next, reason)) = follow else {
                return self.finish(work, enrolment, "completed", "completed".into(), clock);
            };
            let from = current.id.clone();
            let leaving_start = matches!(current.kind, NodeKind::Start);
            enrolment.step.clone_from(&journey.graph[next].id);
            enrolment.due_at = None;
            // Leaving the start says nothing the entry did not: not recorded.
            if !leaving_start {
                work.record(
                    enrolment,
                    Some(&from),
                    Some(&enrolment.step.clone()),
                    reason,
                    clock,
                )?;
            }
            node = next;
            entering = true;
        }
        Ok(None)
    }

    #[allow(clippy::unused_self)]
    fn rest(
        &self,
        work: &mut Work<'_>,
        enrolment: &mut Enrolment,
        step: &str,
        due: DateTime<Utc>,
        entering: bool,
        clock: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        enrolment.step = step.to_string();
        enrolment.due_at = Some(text(due));
        if entering {
            work.record(
                enrolment,
                Some(step),
                Some(step),
                format!("waiting until {}", text(due)),
                clock,
            )?;
        }
        Ok(None)
    }

    /// When a wait entered at `clock` is due. A date field that is empty
    /// waits no longer; one in the recent past (under 300 days, such as an
    /// event that already happened) is due at once; an older one (a birth
    /// date) means its next anniversary.
    fn due(
        &self,
        person: &Person,
        kind: &NodeKind,
        clock: DateTime<Utc>,
        entered: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let zone = person.timezone;
        match kind {
            NodeKind::WaitDuration(duration) => clock + minutes(*duration),
            NodeKind::WaitClock { day, at } => time::next_clock(zone, clock, *at, *day),
            NodeKind::WaitDate { offset, date, at } => {
                let date = match date {
                    ast::DateRef::Literal(date) => date.node,
                    ast::DateRef::Holiday(name) => {
                        let clock_time = at.unwrap_or(ast::Time { hour: 0, minute: 0 });
                        return self
                            .settings
                            .holidays
                            .get(&name.node)
                            .and_then(|dates| time::next_holiday(zone, clock, dates, clock_time))
                            .unwrap_or(clock);
                    }
                    ast::DateRef::Field(field) if field.node == "enrolled_at" => {
                        entered.with_timezone(&zone).date_naive()
                    }
                    ast::DateRef::Field(field) => {
                        let value = person
                            .contact
                            .fields
                            .get(&field.node)
                            .and_then(Json::as_str)
                            .and_then(|text| {
                                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                                    .ok()
                                    .or_else(|| {
                                        parse_instant(text)
                                            .map(|moment| moment.with_timezone(&zone).date_naive())
                                    })
                            });
                        match value {
                            Some(date) => date,
                            None => return clock,
                        }
                    }
                };
                let exact = exact_date_instant(zone, date, *offset, *at);
                let recurring = matches!(kind, NodeKind::WaitDate { date: ast::DateRef::Field(field), .. } if field.node != "enrolled_at")
                    && (clock.with_timezone(&zone).date_naive() - date).num_days() > 300;
                if exact >= clock {
                    exact
                } else if recurring {
                    time::date_wait(zone, clock, date, *offset, *at)
                } else {
                    clock
                }
            }
            _ => clock,
        }
    }

    /// Applies an action to the contact; returns what happened, for `why`.
    fn act(&self, person: &mut Person, action: &StepKind, at: DateTime<Utc>) -> String {
        if !matches!(
            action,
            StepKind::Goto(_) | StepKind::End | StepKind::Handoff(_)
        ) {
            person.changed = true;
            person.dirty = true;
        }
        match action {
            StepKind::Tag(tag) => {
                let mut tags = person.tags();
                if !tags.contains(&tag.node) {
                    tags.push(tag.node.clone());
                    person.stamp("__tagged_at", &tag.node, at);
                }
                person.contact.fields.insert(
                    "tags".into(),
                    Json::Array(tags.into_iter().map(Json::String).collect()),
                );
                format!("tag {}", tag.node)
            }
            StepKind::Untag(tag) => {
                let tags: Vec<Json> = person
                    .tags()
                    .into_iter()
                    .filter(|existing| *existing != tag.node)
                    .map(Json::String)
                    .collect();
                person
                    .contact
                    .fields
                    .insert("tags".into(), Json::Array(tags));
                format!("untag {}", tag.node)
            }
            StepKind::SetField { field, value } => {
                let value = eval::eval(value, self.context(person, None, None));
                let json = match value {
                    eval::Value::Bool(value) => Json::Bool(value),
                    eval::Value::Number(number) => {
                        serde_json::Number::from_f64(number).map_or(Json::Null, Json::Number)
                    }
                    eval::Value::Text(text) => Json::String(text),
                    eval::Value::Date(date) => Json::String(date.to_string()),
                    eval::Value::Instant(moment) => Json::String(text(moment)),
                    _ => Json::Null,
                };
                person.contact.fields.insert(field.node.clone(), json);
                format!("set {}", field.node)
            }
            StepKind::Stage(stage) => {
                person
                    .contact
                    .fields
                    .insert("stage".into(), Json::String(stage.node.clone()));
                person.stamp("__stage_changed_at", &stage.node, at);
                format!("stage {}", stage.node)
            }
            StepKind::Score { model, points } => {
                let entry =
                    serde_json::json!({"model": model.node, "points": points.node, "at": text(at)});
                match person.contact.fields.get_mut("__scores") {
                    Some(Json::Array(items)) => items.push(entry),
                    _ => {
                        person
                            .contact
                            .fields
                            .insert("__scores".into(), Json::Array(vec![entry]));
                    }
                }
                format!(
                    "score {} {}",
                    model.node,
                    crate::format::number(points.node)
                )
            }
            other => crate::format::action(other),
        }
    }

    /// Queues a message at `clock`: quiet hours and send windows move it,
    /// caps defer or skip it, suppression and expiry stop it.
    #[allow(clippy::too_many_arguments)]
    fn queue(
        &self,
        work: &mut Work<'_>,
        person: &Person,
        journey: &CompiledJourney,
        enrolment: &Enrolment,
        step: &str,
        message: &ast::Message,
        clock: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let channel = message.channel;
        let inline = channel == Channel::Task && !message.task_template;
        let kind = if inline {
            MessageKind::Transactional
        } else {
            self.templates
                .get(channel, &message.template.node)
                .map_or(MessageKind::Marketing, |template| template.kind)
        };
        let marketing = kind == MessageKind::Marketing;
        let mut send_at = clock;
        let mut notes = Vec::new();
        let mut status = "pending";
        let quiet = marketing && matches!(channel, Channel::Email | Channel::Sms);
        let rules = self.send_rules(journey);
        let caps = if marketing {
            self.caps(journey, channel)
        } else {
            Vec::new()
        };
        // Quiet hours and caps both move a send later; moving for one can
        // break the other, so repeat until the time satisfies both.
        'settle: for _ in 0..64 {
            if quiet {
                let moved = time::allowed_send_time(person.timezone, send_at, &rules);
                if moved > send_at {
                    notes.push(format!("moved to {} by quiet hours", text(moved)));
                    send_at = moved;
                }
            }
            for &(count, per, source) in &caps {
                // "N per D": at most N sends in any window of length D, so a
                // send exactly D after another is allowed.
                let from = text(send_at - minutes(per) + Span::seconds(1));
                let scheduled = work.batch.scheduled(
                    &person.contact.id,
                    channel.as_str(),
                    &from,
                    &text(send_at + Span::seconds(1)),
                )?;
                if (scheduled.len() as u64) < count {
                    continue;
                }
                if self.settings.over_cap == OverCap::Skip {
                    status = "skipped";
                    notes.push(format!("skipped: {channel} cap {count} per {per}{source}"));
                    break 'settle;
                }
                let oldest = scheduled
                    .first()
                    .and_then(|at| parse_instant(at))
                    .unwrap_or(send_at);
                send_at = (oldest + minutes(per)).max(send_at + Span::seconds(1));
                notes.push(format!(
                    "deferred to {}: {channel} cap {count} per {per}{source}",
                    text(send_at)
                ));
                work.counts.deferred += 1;
                continue 'settle;
            }
            break;
        }
        if marketing {
            let address_field = match channel {
                Channel::Email => Some("email"),
                Channel::Sms => Some("phone"),
                _ => None,
            };
            if let Some(address) = address_field
                .and_then(|field| person.contact.fields.get(field))
                .and_then(Json::as_str)
            {
                if status == "pending"
                    && work
                        .batch
                        .suppressed(address, channel.as_str(), &text(self.now))?
                {
                    status = "suppressed";
                    notes.push(format!("suppressed: {address} is on the suppression list"));
                }
            }
        }
        let expires_at = message
            .expires
            .as_ref()
            .map(|expires| clock + minutes(expires.node));
        if status == "pending" && expires_at.is_some_and(|expires| send_at > expires) {
            status = "expired";
            notes.push("expired before it could be sent".into());
        }
        let row = OutboxRow {
            key: format!("{}/{}", enrolment.id, step),
            enrolment_id: enrolment.id,
            contact_id: person.contact.id.clone(),
            journey: journey.name.clone(),
            step: step.to_string(),
            channel: channel.as_str().to_string(),
            template: if inline {
                "(inline)".to_string()
            } else {
                message.template.node.clone()
            },
            kind: match kind {
                MessageKind::Marketing => "marketing".into(),
                MessageKind::Transactional => "transactional".into(),
            },
            send_at: text(send_at),
            expires_at: expires_at.map(text),
            status: status.into(),
        };
        if work.batch.queue(&row)? {
            match status {
                "pending" => work.counts.queued += 1,
                "skipped" => work.counts.skipped += 1,
                "suppressed" => work.counts.suppressed += 1,
                _ => work.counts.expired += 1,
            }
        }
        let what = if inline {
            format!("{channel}")
        } else {
            format!("{channel} {}", message.template.node)
        };
        let mut note = format!("{what}: {status} for {}", text(send_at));
        for extra in notes {
            note.push_str("; ");
            note.push_str(&extra);
        }
        Ok(note)
    }

    fn send_rules(&self, journey: &CompiledJourney) -> SendRules {
        let mut rules = SendRules {
            quiet: self
                .settings
                .quiet_hours
                .map(|range| (range.from, range.to)),
            window: None,
            days: None,
        };
        for limit in &journey.rules.limits {
            match &limit.kind {
                LimitKind::Quiet { from, to } => rules.quiet = Some((from.node, to.node)),
                LimitKind::Window { from, to } => rules.window = Some((from.node, to.node)),
                LimitKind::Days { from, to } => rules.days = Some((from.node, to.node)),
                LimitKind::Cap { .. } => {}
            }
        }
        rules
    }

    /// The caps on a channel: the project's and the journey's.
    fn caps(
        &self,
        journey: &CompiledJourney,
        channel: Channel,
    ) -> Vec<(u64, ast::Duration, &'static str)> {
        let mut caps: Vec<(u64, ast::Duration, &'static str)> = self
            .settings
            .cap(channel)
            .map(|cap| (cap.count, cap.per, ""))
            .into_iter()
            .collect();
        for limit in &journey.rules.limits {
            if let LimitKind::Cap {
                channel: limited,
                count,
                per,
            } = &limit.kind
            {
                if limited.node == channel && count.node > 0 {
                    caps.push((count.node, per.node, " (journey)"));
                }
            }
        }
        caps
    }
}

/// The instant of `date` shifted by `offset`, at `at` (or midnight).
fn exact_date_instant(
    zone: Tz,
    date: chrono::NaiveDate,
    offset: Option<(ast::Duration, ast::Direction)>,
    at: Option<ast::Time>,
) -> DateTime<Utc> {
    let clock = at.unwrap_or(ast::Time { hour: 0, minute: 0 });
    let local = date
        .and_hms_opt(clock.hour, clock.minute, 0)
        .unwrap_or_default();
    let shifted = match offset {
        Some((duration, ast::Direction::Before)) => local - minutes(duration),
        Some((duration, ast::Direction::After)) => local + minutes(duration),
        None => local,
    };
    let time = ast::Time {
        hour: chrono::Timelike::hour(&shifted),
        minute: chrono::Timelike::minute(&shifted),
    };
    time::local_instant(zone, shifted.date(), time)
}
