//! Evaluates journey expressions for one contact at one instant.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value as Json};

use crate::ast::{self, BinaryOp, Expr, ExprKind, ScoreRuleKind};
use crate::settings::{FieldType, Settings};
use crate::store::Event;

/// A value during evaluation. Absent fields are `Null`, which no
/// comparison matches (`!=` and `not in` excepted).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Date(NaiveDate),
    Instant(DateTime<Utc>),
    Duration(u64),
    Clock(ast::Time),
    List(Vec<Value>),
}

/// Segments and scoring models by name.
#[derive(Default)]
pub struct Program<'a> {
    pub segments: HashMap<&'a str, &'a Expr>,
    pub scores: HashMap<&'a str, &'a ast::ScoreModel>,
}

impl<'a> Program<'a> {
    /// The segments and scoring models the analyzer found in a project.
    pub fn of(analysis: &'a crate::analyzer::Analysis) -> Program<'a> {
        Program {
            segments: analysis
                .segments
                .iter()
                .map(|(name, condition)| (name.as_str(), condition))
                .collect(),
            scores: analysis
                .scores
                .iter()
                .map(|(name, score)| (name.as_str(), score))
                .collect(),
        }
    }
}

/// Everything an expression can see.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub program: &'a Program<'a>,
    pub contact: &'a Map<String, Json>,
    /// The contact's events in time order (all of them; those after `now`
    /// are ignored).
    pub events: &'a [Event],
    /// What `event.x` reads.
    pub event: Option<&'a Event>,
    /// Inside `where`: bare names are this event's properties.
    pub filter_event: Option<&'a Event>,
    pub now: DateTime<Utc>,
    pub timezone: Tz,
    pub enrolled_at: Option<DateTime<Utc>>,
    /// Where a contact's scores keep what its events are worth, and the
    /// version of the contact's fields they were worked out for.
    pub memo: Option<(&'a ScoreMemo, usize)>,
}

/// What each event of one contact scores, per scoring model and rule: the
/// points do not change with the time a score is asked at (only their
/// decay does), so a run works them out once per contact and per version
/// of its fields, not at every moment it asks.
#[derive(Default)]
pub struct ScoreMemo {
    by_model: std::cell::RefCell<HashMap<String, (usize, std::rc::Rc<EventPoints>)>>,
}

/// Per rule of a model, in order: what can be worked out once.
type EventPoints = Vec<Worth>;

/// What one rule of a scoring model is worth for a contact, as far as it
/// does not depend on the time the score is asked at.
enum Worth {
    /// `on event`: each matching event's time and points.
    Events(Vec<(DateTime<Utc>, f64)>),
    /// `when CONDITION` over fields only: whether it holds.
    Holds(bool),
    /// Asked each time (it reads the time, tags or events).
    Asked,
}

impl<'a> Context<'a> {
    fn with_filter(self, event: &'a Event) -> Self {
        Context {
            filter_event: Some(event),
            ..self
        }
    }
}

/// An RFC 3339 instant in a field's text (`2026-03-02T10:00:00+08:00`).
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    crate::model::Timestamp::parse(text)
        .ok()
        .map(crate::model::Timestamp::utc)
}

fn from_json(value: &Json, field_type: Option<&FieldType>) -> Value {
    match (value, field_type) {
        (Json::Null, _) => Value::Null,
        (Json::Bool(value), _) => Value::Bool(*value),
        (Json::Number(number), _) => number.as_f64().map_or(Value::Null, Value::Number),
        (Json::String(text), Some(FieldType::Date)) => {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_or(Value::Null, Value::Date)
        }
        (Json::String(text), Some(FieldType::DateTime)) => {
            parse_instant(text).map_or(Value::Null, Value::Instant)
        }
        (Json::String(text), _) => Value::Text(text.clone()),
        (Json::Array(items), _) => {
            Value::List(items.iter().map(|item| from_json(item, None)).collect())
        }
        (Json::Object(_), _) => Value::Null,
    }
}

/// When a stamp map (`__tagged_at`, `__untagged_at`,
/// `__stage_changed_at`) says `name` was last set.
fn stamp(contact: &Map<String, Json>, key: &str, name: &str) -> Option<DateTime<Utc>> {
    contact
        .get(key)?
        .get(name)?
        .as_str()
        .and_then(parse_instant)
}

/// Whether the contact had the tag at `at`: the tag list is how things
/// are now, and the stamps of when each tag was last added and removed
/// tell how they were before (a journey that runs behind the others, after
/// a run of only some journeys, must not see a tag from its future).
pub fn tag_at(contact: &Map<String, Json>, tag: &str, at: DateTime<Utc>) -> bool {
    let now = matches!(contact.get("tags"), Some(Json::Array(items))
        if items.iter().any(|item| item.as_str() == Some(tag)));
    let added = stamp(contact, crate::runner::person::TAG_STAMPS, tag);
    let removed = stamp(contact, crate::runner::person::UNTAG_STAMPS, tag);
    if now {
        match added {
            Some(added) if added > at => {
                // Added after `at`; it was there before only if a removal
                // before that addition came after `at`.
                removed.is_some_and(|removed| removed <= added && removed > at)
            }
            _ => true,
        }
    } else {
        match removed {
            Some(removed) if removed > at => added.is_none_or(|added| added <= at),
            _ => false,
        }
    }
}

/// The contact's stage at `at`: the stage most recently entered by then,
/// by the stamps; the stage it has now when no stamp says otherwise.
pub fn stage_at(contact: &Map<String, Json>, at: DateTime<Utc>) -> Option<String> {
    let current = contact
        .get("stage")
        .and_then(Json::as_str)
        .map(str::to_string);
    let Some(Json::Object(stamps)) = contact.get(crate::runner::person::STAGE_STAMPS) else {
        return current;
    };
    let current_since = current
        .as_deref()
        .and_then(|stage| stamps.get(stage))
        .and_then(Json::as_str)
        .and_then(parse_instant);
    if current_since.is_none_or(|since| since <= at) {
        return current;
    }
    stamps
        .iter()
        .filter_map(|(stage, since)| Some((since.as_str().and_then(parse_instant)?, stage)))
        .filter(|(since, _)| *since <= at)
        .max()
        .map(|(_, stage)| stage.clone())
}

/// Whether a condition holds (anything but `true` does not).
pub fn holds(expr: &Expr, context: Context<'_>) -> bool {
    eval(expr, context) == Value::Bool(true)
}

fn field(name: &str, context: Context<'_>) -> Value {
    if name == "enrolled_at" {
        return context.enrolled_at.map_or(Value::Null, Value::Instant);
    }
    if name == "stage" {
        return stage_at(context.contact, context.now).map_or(Value::Null, Value::Text);
    }
    let field_type = context.settings.field(name).map(|spec| spec.field_type);
    context
        .contact
        .get(name)
        .map_or(Value::Null, |value| from_json(value, field_type.as_ref()))
}

fn property(event: &Event, name: &str, settings: &Settings) -> Value {
    let field_type = settings
        .event_properties(&event.name)
        .and_then(|properties| properties.get(name).map(|spec| spec.field_type.clone()));
    event
        .properties
        .get(name)
        .map_or(Value::Null, |value| from_json(value, field_type.as_ref()))
}

/// An instant on the contact's calendar: dates are their local midnight.
fn instant(value: &Value, timezone: Tz) -> Option<DateTime<Utc>> {
    match value {
        Value::Instant(moment) => Some(*moment),
        Value::Date(date) => Some(super::time::local_instant(
            timezone,
            *date,
            ast::Time { hour: 0, minute: 0 },
        )),
        _ => None,
    }
}

/// The local date of the instant `expr` gives (a date or a time), the
/// date `days_since` counts from; none when it gives neither.
pub fn local_date_of(expr: &Expr, context: Context<'_>) -> Option<NaiveDate> {
    instant(&eval(expr, context), context.timezone).map(|then| local_date(then, context.timezone))
}

fn local_date(moment: DateTime<Utc>, timezone: Tz) -> NaiveDate {
    moment.with_timezone(&timezone).date_naive()
}

fn compare(left: &Value, right: &Value, timezone: Tz) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
        (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
        (Value::Duration(a), Value::Duration(b)) => Some(a.cmp(b)),
        (Value::Clock(a), Value::Clock(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
        (a, b) => Some(instant(a, timezone)?.cmp(&instant(b, timezone)?)),
    }
}

fn lower(text: &str) -> std::borrow::Cow<'_, str> {
    // Full-width ASCII (ｐｒｉｃｅ) folds to ASCII, then case is ignored.
    let fold = |c: char| match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        other => other,
    };
    // Most text needs no change (lower-case, or Chinese): no copy then.
    let unchanged = text.chars().all(|c| {
        if c.is_ascii() {
            !c.is_ascii_uppercase()
        } else {
            fold(c) == c && c.to_lowercase().eq(std::iter::once(c))
        }
    });
    if unchanged {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(fold)
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

fn contains(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::Text(text), Value::Text(part)) => lower(text).contains(lower(part).as_ref()),
        (Value::List(items), needle) => items.iter().any(|item| item == needle),
        _ => false,
    }
}

pub fn eval(expr: &Expr, context: Context<'_>) -> Value {
    match &expr.kind {
        ExprKind::Bool(value) => Value::Bool(*value),
        ExprKind::Number(value, _) => Value::Number(*value),
        ExprKind::String(text) => Value::Text(text.clone()),
        ExprKind::Date(date) => Value::Date(*date),
        ExprKind::Time(time) => Value::Clock(*time),
        ExprKind::Duration(duration) => Value::Duration(duration.minutes),
        ExprKind::List(items) => {
            Value::List(items.iter().map(|item| eval(item, context)).collect())
        }
        ExprKind::Group(inner) => eval(inner, context),
        ExprKind::Not(inner) => Value::Bool(!holds(inner, context)),
        ExprKind::Path(parts) => {
            let names: Vec<&str> = parts.iter().map(|part| part.node.as_str()).collect();
            match names.as_slice() {
                [name] => match context.filter_event {
                    Some(event) => property(event, name, context.settings),
                    None => field(name, context),
                },
                ["contact", name] => field(name, context),
                ["event", name] => context
                    .event
                    .or(context.filter_event)
                    .map_or(Value::Null, |event| property(event, name, context.settings)),
                _ => Value::Null,
            }
        }
        ExprKind::Call { function, args } => call(&function.node, args, context),
        ExprKind::Count {
            event,
            filter,
            within,
        } => {
            let since = within
                .as_ref()
                .map(|within| context.now - chrono::Duration::minutes(minutes(within.node)));
            let count = context
                .events
                .iter()
                .filter(|candidate| candidate.name == event.node)
                .map(|candidate| (candidate, candidate.at.utc()))
                .filter(|(_, at)| *at <= context.now && since.is_none_or(|since| *at > since))
                .filter(|(candidate, _)| {
                    filter
                        .as_ref()
                        .is_none_or(|filter| holds(filter, context.with_filter(candidate)))
                })
                .count();
            #[allow(clippy::cast_precision_loss)]
            Value::Number(count as f64)
        }
        ExprKind::Binary { op, left, right } => {
            if op.node == BinaryOp::And {
                return Value::Bool(holds(left, context) && holds(right, context));
            }
            if op.node == BinaryOp::Or {
                return Value::Bool(holds(left, context) || holds(right, context));
            }
            let (left, right) = (eval(left, context), eval(right, context));
            let null = left == Value::Null || right == Value::Null;
            let ordering = compare(&left, &right, context.timezone);
            Value::Bool(match op.node {
                BinaryOp::Eq => !null && ordering == Some(std::cmp::Ordering::Equal),
                BinaryOp::Ne => null || ordering != Some(std::cmp::Ordering::Equal),
                BinaryOp::Lt => !null && ordering == Some(std::cmp::Ordering::Less),
                BinaryOp::Le => {
                    !null
                        && matches!(
                            ordering,
                            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                        )
                }
                BinaryOp::Gt => !null && ordering == Some(std::cmp::Ordering::Greater),
                BinaryOp::Ge => {
                    !null
                        && matches!(
                            ordering,
                            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                        )
                }
                BinaryOp::In => !null && contains(&right, &left),
                BinaryOp::NotIn => null || !contains(&right, &left),
                BinaryOp::Contains => !null && contains(&left, &right),
                BinaryOp::ContainsAny => match &right {
                    Value::List(needles) => {
                        !null && needles.iter().any(|needle| contains(&left, needle))
                    }
                    _ => false,
                },
                BinaryOp::StartsWith => {
                    matches!((&left, &right), (Value::Text(a), Value::Text(b)) if a.starts_with(b.as_str()))
                }
                BinaryOp::EndsWith => {
                    matches!((&left, &right), (Value::Text(a), Value::Text(b)) if lower(a).ends_with(lower(b).as_ref()))
                }
                BinaryOp::And | BinaryOp::Or => false,
            })
        }
    }
}

fn minutes(duration: ast::Duration) -> i64 {
    i64::try_from(duration.minutes).unwrap_or(i64::MAX / 2)
}

fn call(function: &str, args: &[Expr], context: Context<'_>) -> Value {
    let first = args.first();
    match function {
        "has_tag" => match first.map(|arg| eval(arg, context)) {
            Some(Value::Text(tag)) => Value::Bool(tag_at(context.contact, &tag, context.now)),
            _ => Value::Bool(false),
        },
        "is_set" => Value::Bool(match first.map(|arg| eval(arg, context)) {
            None | Some(Value::Null) => false,
            Some(Value::Text(text)) => !text.trim().is_empty(),
            Some(Value::List(items)) => !items.is_empty(),
            Some(_) => true,
        }),
        "days_since" => first
            .map(|arg| eval(arg, context))
            .and_then(|value| instant(&value, context.timezone))
            .map_or(Value::Null, |then| {
                let days = (local_date(context.now, context.timezone)
                    - local_date(then, context.timezone))
                .num_days();
                #[allow(clippy::cast_precision_loss)]
                Value::Number(days as f64)
            }),
        "days_until" => match first.map(|arg| eval(arg, context)) {
            Some(Value::Date(date)) => {
                let today = local_date(context.now, context.timezone);
                let next = super::time::anniversary(
                    context.timezone,
                    context.now,
                    chrono::Datelike::month(&date),
                    chrono::Datelike::day(&date),
                    ast::Time { hour: 0, minute: 0 },
                );
                let days = (local_date(next, context.timezone) - today).num_days();
                #[allow(clippy::cast_precision_loss)]
                Value::Number(days as f64)
            }
            _ => Value::Null,
        },
        "score" => name_arg(first)
            .and_then(|name| context.program.scores.get(name))
            .map_or(Value::Null, |model| Value::Number(score(model, context))),
        "segment" => Value::Bool(
            name_arg(first)
                .and_then(|name| context.program.segments.get(name))
                .is_some_and(|condition| {
                    holds(
                        condition,
                        Context {
                            event: None,
                            filter_event: None,
                            ..context
                        },
                    )
                }),
        ),
        _ => Value::Null,
    }
}

fn name_arg(arg: Option<&Expr>) -> Option<&str> {
    match &arg?.kind {
        ExprKind::Path(parts) if parts.len() == 1 => Some(parts[0].node.as_str()),
        _ => None,
    }
}

/// A contact's score in a model at `now`: event rules (decayed by age when
/// the model has a half-life), fit rules, the silence rule, and points
/// added by journeys (`score lead +10`, kept in the contact's `__scores`).
pub fn score(model: &ast::ScoreModel, context: Context<'_>) -> f64 {
    let decay = |at: DateTime<Utc>| decay_factor(model, context.now, at);
    let past = || {
        context
            .events
            .iter()
            .filter(|event| !event.name.starts_with("__"))
            .map(|event| (event, event.at.utc()))
            .filter(|(_, at)| *at <= context.now)
    };
    let memo = context
        .memo
        .map(|(memo, version)| memo.points(model, version, context));
    let worth = |index: usize| memo.as_ref().map_or(&Worth::Asked, |memo| &memo[index]);
    let mut total = 0.0;
    for (index, rule) in model.rules.iter().enumerate() {
        match &rule.kind {
            ScoreRuleKind::OnEvent {
                event,
                filter,
                points,
            } => {
                if let Worth::Events(scored) = worth(index) {
                    for (at, points) in scored {
                        if *at <= context.now {
                            total += points * decay(*at);
                        }
                    }
                    continue;
                }
                for (candidate, at) in past() {
                    if event_scores(candidate, &event.node, filter.as_ref(), context) {
                        total += points.node * decay(at);
                    }
                }
            }
            ScoreRuleKind::When { condition, points } => {
                let held = match worth(index) {
                    Worth::Holds(held) => *held,
                    _ => holds(condition, context),
                };
                if held {
                    total += points.node;
                }
            }
            ScoreRuleKind::Silence { within, points } => {
                let since = context.now - chrono::Duration::minutes(minutes(within.node));
                if !past().any(|(_, at)| at > since) {
                    total += points.node;
                }
            }
            ScoreRuleKind::Decay { .. } => {}
        }
    }
    for (points, at) in adjustments(model, context.contact) {
        if at <= context.now {
            total += points * decay(at);
        }
    }
    total
}

/// The most a contact's score in a model can reach from `context.now` on
/// if nothing new arrives (no event, no change of its fields): points that
/// decay only shrink, decaying negative points rise towards 0, points
/// already dated later count whole, and a rule whose answer depends on the
/// clock counts as if it held.
pub fn score_ceiling(model: &ast::ScoreModel, context: Context<'_>) -> f64 {
    let decays = model.rules.iter().any(|rule| {
        matches!(&rule.kind, ScoreRuleKind::Decay { half_life } if !half_life.node.is_zero())
    });
    // What `points` given at `at` can be worth at any time from now on.
    let most = |points: f64, at: DateTime<Utc>| {
        if at > context.now {
            points.max(0.0)
        } else if decays {
            (points * decay_factor(model, context.now, at)).max(0.0)
        } else {
            points
        }
    };
    let mut total = 0.0;
    for rule in &model.rules {
        match &rule.kind {
            ScoreRuleKind::OnEvent {
                event,
                filter,
                points,
            } => {
                for candidate in context.events.iter().filter(|candidate| {
                    !candidate.name.starts_with("__") && candidate.name == event.node
                }) {
                    let counts = match filter {
                        None => true,
                        Some(filter) if time_free(filter) => {
                            event_scores(candidate, &event.node, Some(filter), context)
                        }
                        Some(_) => true,
                    };
                    if counts {
                        total += most(points.node, candidate.at.utc());
                    }
                }
            }
            ScoreRuleKind::When { condition, points } => {
                if !time_free(condition) {
                    total += points.node.max(0.0);
                } else if holds(condition, context) {
                    total += points.node;
                }
            }
            ScoreRuleKind::Silence { points, .. } => total += points.node.max(0.0),
            ScoreRuleKind::Decay { .. } => {}
        }
    }
    for (points, at) in adjustments(model, context.contact) {
        total += most(points, at);
    }
    total
}

/// The points journeys added to a model (`score lead +10`, kept in the
/// contact's `__scores`), with when they were added.
fn adjustments<'c>(
    model: &'c ast::ScoreModel,
    contact: &'c Map<String, Json>,
) -> impl Iterator<Item = (f64, DateTime<Utc>)> + 'c {
    let list = match contact.get("__scores") {
        Some(Json::Array(list)) => list.as_slice(),
        _ => &[],
    };
    list.iter().filter_map(move |adjustment| {
        let same_model =
            adjustment.get("model").and_then(Json::as_str) == Some(model.name.node.as_str());
        let points = adjustment
            .get("points")
            .and_then(Json::as_f64)
            .unwrap_or(0.0);
        let at = adjustment
            .get("at")
            .and_then(Json::as_str)
            .and_then(parse_instant)?;
        same_model.then_some((points, at))
    })
}

/// The decay factor of points given at `at`, at `now`.
fn decay_factor(model: &ast::ScoreModel, now: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    let half_life = model.rules.iter().find_map(|rule| match &rule.kind {
        ScoreRuleKind::Decay { half_life } if !half_life.node.is_zero() => {
            Some(half_life.node.minutes)
        }
        _ => None,
    });
    #[allow(clippy::cast_precision_loss)]
    half_life.map_or(1.0, |half_life| {
        let age = (now - at).num_minutes().max(0) as f64;
        0.5_f64.powf(age / half_life as f64)
    })
}

/// Whether `candidate` is an event a rule `on event NAME [where FILTER]`
/// counts.
fn event_scores(
    candidate: &Event,
    name: &str,
    filter: Option<&Expr>,
    context: Context<'_>,
) -> bool {
    candidate.name == name
        && filter.is_none_or(|filter| holds(filter, context.with_filter(candidate)))
}

/// An expression whose value does not depend on the time it is asked at,
/// given the contact's fields and the event it looks at: it calls no
/// function (`has_tag` reads tag history, `days_since` the clock), counts
/// no events, and reads neither the stage (which has a history) nor what
/// differs from journey to journey.
pub(crate) fn time_free(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Call { .. } | ExprKind::Count { .. } => false,
        // The stage is read as it was at the time asked; `enrolled_at` and
        // `event.` differ from journey to journey.
        ExprKind::Path(names) => {
            names.first().is_none_or(|name| name.node != "event")
                && !names
                    .iter()
                    .any(|name| name.node == "stage" || name.node == "enrolled_at")
        }
        ExprKind::List(items) => items.iter().all(time_free),
        ExprKind::Not(inner) | ExprKind::Group(inner) => time_free(inner),
        ExprKind::Binary { left, right, .. } => time_free(left) && time_free(right),
        _ => true,
    }
}

/// An expression whose value stays what it is now until something new
/// arrives (an event, an import) or a stamp dated later comes due: besides
/// fields, it may read the stage and tags (their history changes only at
/// their stamps) and segments made of the same, but no clock (`days_since`,
/// counts within windows, scores that decay) and nothing that differs from
/// journey to journey. A condition that is steady and false needs no visit
/// until one of those comes.
pub(crate) fn steady(expr: &Expr, program: &Program<'_>) -> bool {
    steady_within(expr, program, 0)
}

/// Segments nest; the analyzer refuses cycles, the depth bounds them anyway.
fn steady_within(expr: &Expr, program: &Program<'_>, depth: usize) -> bool {
    let steady = |inner: &Expr| steady_within(inner, program, depth);
    match &expr.kind {
        ExprKind::Call { function, args } => match function.node.as_str() {
            "has_tag" | "is_set" => args.iter().all(steady),
            "segment" => {
                depth < 16
                    && name_arg(args.first())
                        .and_then(|name| program.segments.get(name))
                        .is_some_and(|condition| steady_within(condition, program, depth + 1))
            }
            _ => false,
        },
        ExprKind::Count { .. } => false,
        ExprKind::Path(names) => {
            names.first().is_none_or(|name| name.node != "event")
                && !names.iter().any(|name| name.node == "enrolled_at")
        }
        ExprKind::List(items) => items.iter().all(steady),
        ExprKind::Not(inner) | ExprKind::Group(inner) => steady(inner),
        ExprKind::Binary { left, right, .. } => steady(left) && steady(right),
        _ => true,
    }
}

impl ScoreMemo {
    /// The points of every event of the contact for each rule of `model`,
    /// worked out once per version of the contact's fields.
    fn points(
        &self,
        model: &ast::ScoreModel,
        version: usize,
        context: Context<'_>,
    ) -> std::rc::Rc<EventPoints> {
        if let Some((seen, points)) = self.by_model.borrow().get(&model.name.node) {
            if *seen == version {
                return points.clone();
            }
        }
        let points: EventPoints = model
            .rules
            .iter()
            .map(|rule| match &rule.kind {
                ScoreRuleKind::OnEvent {
                    event,
                    filter,
                    points,
                } if filter.as_ref().is_none_or(time_free) => Worth::Events(
                    context
                        .events
                        .iter()
                        .filter(|candidate| !candidate.name.starts_with("__"))
                        .filter(|candidate| {
                            event_scores(candidate, &event.node, filter.as_ref(), context)
                        })
                        .map(|candidate| (candidate.at.utc(), points.node))
                        .collect(),
                ),
                ScoreRuleKind::When { condition, .. } if time_free(condition) => {
                    Worth::Holds(holds(condition, context))
                }
                _ => Worth::Asked,
            })
            .collect();
        let points = std::rc::Rc::new(points);
        self.by_model
            .borrow_mut()
            .insert(model.name.node.clone(), (version, points.clone()));
        points
    }
}

/// The values a condition read, for `journeyc why`: ` (lifetime_value =
/// 120000, stage = dormant)`; empty when it read no field.
pub fn explain(expr: &Expr, context: Context<'_>) -> String {
    let mut names: Vec<(String, &Expr)> = Vec::new();
    collect_paths(expr, &mut names);
    names.sort_by(|a, b| a.0.cmp(&b.0));
    names.dedup_by(|a, b| a.0 == b.0);
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = names
        .iter()
        .map(|(name, path)| {
            let value = match eval(path, context) {
                Value::Null => "empty".to_string(),
                Value::Bool(value) => value.to_string(),
                Value::Number(number) => crate::ast::print::number(number),
                Value::Text(text) => text,
                Value::Date(date) => date.to_string(),
                Value::Instant(moment) => moment.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                Value::Duration(minutes) => ast::Duration::from_length(minutes).to_string(),
                Value::Clock(time) => time.to_string(),
                Value::List(items) => format!("{} items", items.len()),
            };
            format!("{name} = {value}")
        })
        .collect();
    format!(" ({})", shown.join(", "))
}

fn collect_paths<'e>(expr: &'e Expr, out: &mut Vec<(String, &'e Expr)>) {
    match &expr.kind {
        ExprKind::Path(parts) => out.push((
            parts
                .iter()
                .map(|part| part.node.as_str())
                .collect::<Vec<_>>()
                .join("."),
            expr,
        )),
        ExprKind::Group(inner) | ExprKind::Not(inner) => collect_paths(inner, out),
        ExprKind::Binary { left, right, .. } => {
            collect_paths(left, out);
            collect_paths(right, out);
        }
        ExprKind::List(items) => items.iter().for_each(|item| collect_paths(item, out)),
        ExprKind::Call { function, args }
            if matches!(
                function.node.as_str(),
                "days_since" | "days_until" | "is_set"
            ) =>
        {
            for arg in args {
                collect_paths(arg, out);
            }
        }
        _ => {}
    }
}
