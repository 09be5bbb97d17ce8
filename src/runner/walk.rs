//! The steps: from a node, at a moment, until the contact rests at a wait
//! or leaves the journey. Everything between two waits happens at the same
//! moment: the one at which the first of them ended.

use chrono::{DateTime, Utc};
use petgraph::graph::NodeIndex;

use super::engine::{bucket, Due, Engine, JourneyRun, Moment, Resume, RunError, Work};
use super::eval;
use super::person::Person;
use super::time;
use crate::ast;
use crate::journey::{EdgeKind, NodeKind};
use crate::model::{EnrolmentState, StepId, Timestamp};
use crate::store::{Assignment, Enrolment};

/// How many steps one walk may take: a journey is a DAG, so this is a
/// guard against a bug, not a limit users meet.
const MAX_STEPS: usize = 100_000;

/// How the walk arrives at its first node.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// The node is entered now: a message is queued, a wait starts.
    Entering,
    /// The contact rests at the node and its wait is over this way.
    Resuming(Resume),
}

impl Engine<'_> {
    /// Acts on what is due for an enrolment that is in the journey.
    pub(super) fn advance(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        run: &JourneyRun<'_>,
        enrolment: &mut Enrolment,
        moment: Moment,
        due: Due,
    ) -> Result<(), RunError> {
        let journey = run.journey;
        let at = moment.at;
        match due {
            Due::Exit(index) => {
                let signal = &journey.rules.exits[index];
                self.finish(
                    work,
                    enrolment,
                    EnrolmentState::Exited,
                    format!("exit: {}", crate::ast::print::signal(signal)),
                    at,
                )?;
            }
            Due::Goal => {
                let Some(goal) = &journey.rules.goal else {
                    return Ok(());
                };
                if let Some(actions) = &goal.then {
                    for action in actions {
                        self.apply(person, &action.kind, moment);
                    }
                }
                let reason = format!(
                    "goal: {}",
                    crate::ast::print::signal(&goal.condition).trim_start_matches("on ")
                );
                self.finish(work, enrolment, EnrolmentState::Converted, reason, at)?;
            }
            Due::Rescue(index) => {
                let (signal, target) = &journey.rules.rescues[index];
                enrolment.data.rescued = true;
                enrolment.data.wait_started = None;
                let from = enrolment.step.to_string();
                work.record(
                    enrolment,
                    Some(&from),
                    Some(&journey.graph[*target].id),
                    format!("rescue: {}", crate::ast::print::signal(signal)),
                    at,
                )?;
                self.walk(
                    work,
                    person,
                    run,
                    enrolment,
                    *target,
                    moment,
                    Arrival::Entering,
                )?;
            }
            Due::Moved => {
                let from = enrolment.step.to_string();
                let Some(&(_, target)) = journey.rules.moved.iter().find(|(old, _)| *old == from)
                else {
                    return Ok(());
                };
                enrolment.data.wait_started = None;
                work.record(
                    enrolment,
                    Some(&from),
                    Some(&journey.graph[target].id),
                    format!("moved: step {from} was removed or changed"),
                    at,
                )?;
                self.walk(
                    work,
                    person,
                    run,
                    enrolment,
                    target,
                    moment,
                    Arrival::Entering,
                )?;
            }
            Due::Resume(resume) => {
                let Some(node) = super::engine::resting_node(journey, enrolment) else {
                    return Ok(());
                };
                self.walk(
                    work,
                    person,
                    run,
                    enrolment,
                    node,
                    moment,
                    Arrival::Resuming(resume),
                )?;
            }
            Due::Enter(_) => {}
        }
        Ok(())
    }

    /// Walks from `node`, at `moment`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn walk(
        &self,
        work: &mut Work<'_>,
        person: &mut Person,
        run: &JourneyRun<'_>,
        enrolment: &mut Enrolment,
        mut node: NodeIndex,
        moment: Moment,
        mut arrival: Arrival,
    ) -> Result<(), RunError> {
        let journey = run.journey;
        let at = moment.at;
        let entered = enrolment.entered_at.utc();
        for _ in 0..MAX_STEPS {
            let current = &journey.graph[node];
            let successors = journey.successors(node);
            let next_of = |wanted: &dyn Fn(&EdgeKind) -> bool| {
                successors
                    .iter()
                    .find(|(edge, _)| wanted(&edge.kind))
                    .map(|(_, target)| *target)
            };
            let any = |_: &EdgeKind| true;
            let resuming = match &arrival {
                Arrival::Resuming(resume) => Some(resume.clone()),
                Arrival::Entering => None,
            };
            let follow: Option<(NodeIndex, String)> = match &current.kind {
                NodeKind::Start => next_of(&any).map(|next| (next, "started".to_string())),
                NodeKind::Message(message) => {
                    let note =
                        self.queue(work, person, run, enrolment, &current.id, message, at)?;
                    next_of(&any).map(|next| (next, note))
                }
                NodeKind::WaitDuration(_)
                | NodeKind::WaitClock { .. }
                | NodeKind::WaitDate { .. } => {
                    if resuming.is_some() {
                        let due = enrolment.due_at.map_or(at, Timestamp::utc);
                        next_of(&any)
                            .map(|next| (next, format!("waited until {}", Timestamp::from(due))))
                    } else {
                        let due = self.due(person, &current.kind, at, entered);
                        if due > at {
                            Self::rest(work, enrolment, current, due, at)?;
                            return Ok(());
                        }
                        next_of(&any).map(|next| (next, "nothing to wait for".to_string()))
                    }
                }
                NodeKind::WaitEvent { timeout, event, .. } => match resuming {
                    Some(Resume::Got(id)) => {
                        enrolment.event_id = Some(id);
                        next_of(&|kind| matches!(kind, EdgeKind::Got))
                            .map(|next| (next, format!("got: event {event}")))
                    }
                    Some(_) => next_of(&|kind| matches!(kind, EdgeKind::Timeout))
                        .map(|next| (next, format!("timeout: no {event} within {timeout}"))),
                    None => {
                        let deadline = time::add(person.timezone, at, *timeout);
                        Self::rest(work, enrolment, current, deadline, at)?;
                        return Ok(());
                    }
                },
                NodeKind::Split => {
                    let event = self.event_of(person, enrolment);
                    let context = self.context(person, event, Some(entered), at);
                    // Branches in the order they were written, `else` last,
                    // whatever order their edges were made in (a branch that
                    // only jumps gets its edge once the jump is resolved).
                    let mut branches: Vec<(usize, &EdgeKind, NodeIndex)> = successors
                        .iter()
                        .filter_map(|(edge, target)| match &edge.kind {
                            EdgeKind::When { index, .. } => Some((*index, &edge.kind, *target)),
                            EdgeKind::Else => Some((usize::MAX, &edge.kind, *target)),
                            _ => None,
                        })
                        .collect();
                    branches.sort_by_key(|(index, _, _)| *index);
                    branches
                        .into_iter()
                        .find(|(_, kind, _)| match kind {
                            EdgeKind::When { condition, .. } => eval::holds(condition, context),
                            _ => true,
                        })
                        .map(|(_, kind, target)| {
                            let reason = match kind {
                                EdgeKind::When { condition, .. } => format!(
                                    "split: {}{}",
                                    crate::ast::print::expr(condition),
                                    eval::explain(condition, context)
                                ),
                                _ => "split: else".to_string(),
                            };
                            (target, reason)
                        })
                }
                NodeKind::Ab { name } => {
                    let chosen = Self::arm(&person.contact.id, &journey.name, name, &successors);
                    if let Some((target, arm)) = &chosen {
                        work.batch.assign(&Assignment {
                            enrolment_id: enrolment.id,
                            test: name.clone(),
                            arm: arm.clone(),
                            at: Timestamp::from(at),
                        })?;
                        Some((*target, format!("A/B {name}: {arm}")))
                    } else {
                        None
                    }
                }
                NodeKind::Action(action) => {
                    let note = self.apply(person, action, moment);
                    next_of(&any).map(|next| (next, note))
                }
                NodeKind::Holdout => {
                    if resuming.is_some() {
                        self.finish(
                            work,
                            enrolment,
                            EnrolmentState::Completed,
                            "holdout: the goal window closed".into(),
                            at,
                        )?;
                        return Ok(());
                    }
                    // The control group gets nothing more, but stays until
                    // the goal window closes, so its conversions count.
                    match &journey.rules.goal {
                        Some(goal) => {
                            let close = time::add(person.timezone, entered, goal.within.node);
                            if close > at {
                                Self::rest(work, enrolment, current, close, at)?;
                                return Ok(());
                            }
                            self.finish(
                                work,
                                enrolment,
                                EnrolmentState::Completed,
                                "holdout: the goal window closed".into(),
                                at,
                            )?;
                        }
                        None => self.finish(
                            work,
                            enrolment,
                            EnrolmentState::Completed,
                            "holdout: control group (no goal to measure)".into(),
                            at,
                        )?,
                    }
                    return Ok(());
                }
                NodeKind::End => {
                    self.finish(
                        work,
                        enrolment,
                        EnrolmentState::Completed,
                        "completed".into(),
                        at,
                    )?;
                    return Ok(());
                }
                NodeKind::Handoff(target) => {
                    enrolment.data.handoff = Some(target.clone());
                    self.finish(
                        work,
                        enrolment,
                        EnrolmentState::HandedOff,
                        format!("handed off to {target}"),
                        at,
                    )?;
                    return Ok(());
                }
            };
            let Some((next, reason)) = follow else {
                self.finish(
                    work,
                    enrolment,
                    EnrolmentState::Completed,
                    "completed".into(),
                    at,
                )?;
                return Ok(());
            };
            let from = current.id.clone();
            let leaving_start = matches!(current.kind, NodeKind::Start);
            enrolment.step = StepId::new(journey.graph[next].id.clone());
            enrolment.step_print.clone_from(&journey.graph[next].print);
            enrolment.due_at = None;
            enrolment.data.wait_started = None;
            // Leaving the start says nothing the entry did not: not recorded.
            if !leaving_start {
                let to = enrolment.step.to_string();
                work.record(enrolment, Some(&from), Some(&to), reason, at)?;
            }
            node = next;
            arrival = Arrival::Entering;
        }
        Err(RunError::Exhausted {
            contact: enrolment.contact_id.clone(),
            journey: journey.name.clone(),
            step: enrolment.step.to_string(),
            what: "the walk took more steps than the journey has",
        })
    }

    /// The contact comes to rest at a wait (or the holdout) until `due`.
    fn rest(
        work: &mut Work<'_>,
        enrolment: &mut Enrolment,
        node: &crate::journey::Node,
        due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(), RunError> {
        enrolment.step = StepId::new(node.id.clone());
        enrolment.step_print.clone_from(&node.print);
        enrolment.due_at = Some(Timestamp::from(due));
        enrolment.data.wait_started = Some(Timestamp::from(at));
        work.record(
            enrolment,
            Some(&node.id),
            Some(&node.id),
            format!("waiting until {}", Timestamp::from(due)),
            at,
        )?;
        Ok(())
    }

    /// The arm of an A/B split for a contact: its stable bucket against
    /// the weights in the order written.
    fn arm(
        contact: &str,
        journey: &str,
        test: &str,
        successors: &[(&crate::journey::Edge, NodeIndex)],
    ) -> Option<(NodeIndex, String)> {
        let bucket = bucket(contact, journey, test);
        let mut upper = 0.0;
        let mut last = None;
        for (edge, target) in successors {
            let (label, weight) = match &edge.kind {
                EdgeKind::Variant { name, weight } => (name.clone(), *weight),
                EdgeKind::Holdout { weight } => ("holdout".to_string(), *weight),
                _ => continue,
            };
            upper += weight * 100.0;
            #[allow(clippy::cast_precision_loss)]
            if (bucket as f64) < upper {
                return Some((*target, label));
            }
            last = Some((*target, label));
        }
        last
    }

    /// When a wait entered at `at` is due. Days count on the contact's
    /// calendar. A date field that is empty waits no longer; one in the
    /// recent past (under 300 days, such as an event that already happened)
    /// is due at once; an older one (a birth date) means its next
    /// anniversary.
    pub(super) fn due(
        &self,
        person: &Person,
        kind: &NodeKind,
        at: DateTime<Utc>,
        entered: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let zone = person.timezone;
        match kind {
            NodeKind::WaitDuration(duration) => time::add(zone, at, *duration),
            NodeKind::WaitClock { day, at: clock } => time::next_clock(zone, at, *clock, *day),
            NodeKind::WaitDate {
                offset,
                date,
                at: clock,
            } => {
                let date = match date {
                    ast::DateRef::Literal(date) => date.node,
                    ast::DateRef::Holiday(name) => {
                        let clock_time = clock.unwrap_or(ast::Time { hour: 0, minute: 0 });
                        return self
                            .settings
                            .holidays
                            .get(&name.node)
                            .and_then(|dates| time::next_holiday(zone, at, dates, clock_time))
                            .unwrap_or(at);
                    }
                    ast::DateRef::Field(field) if field.node == "enrolled_at" => {
                        entered.with_timezone(&zone).date_naive()
                    }
                    ast::DateRef::Field(field) => {
                        let value = person.text(&field.node).and_then(|text| {
                            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                                .ok()
                                .or_else(|| {
                                    Timestamp::parse(text).ok().map(|moment| {
                                        moment.utc().with_timezone(&zone).date_naive()
                                    })
                                })
                        });
                        match value {
                            Some(date) => date,
                            None => return at,
                        }
                    }
                };
                let exact = exact_date_instant(zone, date, *offset, *clock);
                let recurring = matches!(date_kind(kind), Some(true))
                    && (at.with_timezone(&zone).date_naive() - date).num_days() > 300;
                if exact >= at {
                    exact
                } else if recurring {
                    time::date_wait(zone, at, date, *offset, *clock)
                } else {
                    at
                }
            }
            _ => at,
        }
    }
}

/// Whether a date wait reads a contact field (other than `enrolled_at`):
/// only those recur yearly.
fn date_kind(kind: &NodeKind) -> Option<bool> {
    match kind {
        NodeKind::WaitDate {
            date: ast::DateRef::Field(field),
            ..
        } => Some(field.node != "enrolled_at"),
        NodeKind::WaitDate { .. } => Some(false),
        _ => None,
    }
}

/// The instant of `date` shifted by `offset`, at `at` (or midnight), on
/// the wall clock of `zone`.
fn exact_date_instant(
    zone: chrono_tz::Tz,
    date: chrono::NaiveDate,
    offset: Option<(ast::Duration, ast::Direction)>,
    at: Option<ast::Time>,
) -> DateTime<Utc> {
    let clock = at.unwrap_or(ast::Time { hour: 0, minute: 0 });
    let local = time::local_instant(zone, date, clock);
    match offset {
        Some((duration, ast::Direction::Before)) => time::sub(zone, local, duration),
        Some((duration, ast::Direction::After)) => time::add(zone, local, duration),
        None => local,
    }
}
