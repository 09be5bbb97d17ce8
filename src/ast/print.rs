//! Expressions, signals, triggers, actions and steps printed as they are
//! written in a journey file: what `journeyc fmt` lays out, what the
//! runner's reasons (`why`) and the analyzer's messages quote, and what
//! the drawings label.

use std::fmt::Write as _;

use super::*;

pub(crate) fn simple_step(kind: &StepKind) -> String {
    match kind {
        StepKind::Message(message) => message_text(message),
        StepKind::WaitDuration(duration) => format!("wait {}", duration.node),
        StepKind::WaitClock { day, at } => match day.as_ref().map(|day| day.node) {
            Some(DayFilter::Weekday(weekday)) => {
                format!("wait until {} {}", weekday_name(weekday), at.node)
            }
            Some(DayFilter::Workday) => format!("wait until weekday {}", at.node),
            None => format!("wait until {}", at.node),
        },
        StepKind::WaitDate { offset, date, at } => {
            let mut text = String::from("wait until ");
            if let Some((duration, direction)) = offset {
                let direction = match direction {
                    Direction::Before => "before",
                    Direction::After => "after",
                };
                let _ = write!(text, "{} {direction} ", duration.node);
            }
            text.push_str(&date_ref(date));
            if let Some(at) = at {
                let _ = write!(text, " at {}", at.node);
            }
            text
        }
        StepKind::Goto(label) => format!("goto {}", label.node),
        StepKind::End => "end".to_string(),
        action => self::action(action),
    }
}

/// An action step as written: `tag "x"`, `score lead +10`.
pub fn action(kind: &StepKind) -> String {
    match kind {
        StepKind::Tag(tag) => format!("tag {}", string(&tag.node)),
        StepKind::Untag(tag) => format!("untag {}", string(&tag.node)),
        StepKind::SetField { field, value } => format!("set {} = {}", field.node, expr(value)),
        StepKind::Stage(stage) => format!("stage {}", string(&stage.node)),
        StepKind::Score { model, points } => {
            format!("score {} {}", model.node, points_text(points.node))
        }
        StepKind::Handoff(journey) => format!("handoff {}", journey.node),
        StepKind::Goto(label) => format!("goto {}", label.node),
        StepKind::End => "end".to_string(),
        other => simple_step(other),
    }
}

pub(crate) fn message_text(message: &Message) -> String {
    let mut text = match message.channel {
        Channel::Email => format!("email {}", string(&message.template.node)),
        Channel::Sms => format!("sms {}", string(&message.template.node)),
        Channel::Webhook => format!(
            "webhook {} {}",
            message
                .endpoint
                .as_ref()
                .map_or("", |endpoint| endpoint.node.as_str()),
            string(&message.template.node)
        ),
        Channel::Task => {
            let assignee = match &message.assignee {
                Some(Assignee::Field(field)) => field.node.clone(),
                Some(Assignee::Fixed(fixed)) => string(&fixed.node),
                None => String::new(),
            };
            let body = if message.task_template {
                format!("template {}", string(&message.template.node))
            } else {
                string(&message.template.node)
            };
            format!("task {assignee} {body}")
        }
    };
    if let Some(expires) = &message.expires {
        let _ = write!(text, " expires after {}", expires.node);
    }
    if let Some(due) = &message.due {
        let _ = write!(text, " due {}", due.node);
    }
    text
}

pub(crate) fn date_ref(date: &DateRef) -> String {
    match date {
        DateRef::Literal(date) => date.node.to_string(),
        DateRef::Holiday(name) => format!("holiday {}", string(&name.node)),
        DateRef::Field(field) => field.node.clone(),
    }
}

pub(crate) fn clause_text(clause: &Clause) -> String {
    match &clause.kind {
        ClauseKind::Title(title) => format!("title {}", string(&title.node)),
        ClauseKind::Description(text) => format!("description {}", string(&text.node)),
        ClauseKind::Audience(condition) => format!("audience {}", expr(condition)),
        ClauseKind::Entry(trigger) => format!("entry {}", self::trigger(trigger)),
        ClauseKind::Reentry(reentry) => match reentry {
            Reentry::Never => "reentry never".to_string(),
            Reentry::Always => "reentry always".to_string(),
            Reentry::After(duration) => format!("reentry after {}", duration.node),
        },
        ClauseKind::Goal(goal) => {
            let condition = match &goal.condition {
                Signal::When(condition) => format!("when {}", expr(condition)),
                other => signal(other).trim_start_matches("on ").to_string(),
            };
            let mut text = format!("goal {condition} within {}", goal.within.node);
            if let Some(actions) = &goal.then {
                let actions: Vec<String> = actions.iter().map(|step| action(&step.kind)).collect();
                if goal.then_braced || actions.len() != 1 {
                    let _ = write!(text, " then {{ {} }}", actions.join("  "));
                } else {
                    let _ = write!(text, " then {}", actions[0]);
                }
            }
            text
        }
        ClauseKind::Exit(exit) => format!("exit {}", signal(exit)),
        ClauseKind::Limits(limits) => {
            let limits: Vec<String> = limits.iter().map(limit).collect();
            if limits.is_empty() {
                "limits {}".to_string()
            } else {
                format!("limits {{ {} }}", limits.join("  "))
            }
        }
        ClauseKind::Rescue {
            signal: rescue,
            target,
        } => format!("rescue {} -> {}", signal(rescue), target.node),
        ClauseKind::Moved { from, to } => {
            format!("moved {} -> {}", step_ref(&from.node), step_ref(&to.node))
        }
        ClauseKind::Backfill(duration) => format!("backfill {}", duration.node),
        ClauseKind::Priority(priority) => format!("priority {}", priority.node),
    }
}

/// A label as it is; any other step ID quoted.
pub(crate) fn step_ref(id: &str) -> String {
    let is_label = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_label {
        id.to_string()
    } else {
        string(id)
    }
}

pub(crate) fn limit(limit: &Limit) -> String {
    match &limit.kind {
        LimitKind::Cap {
            channel,
            count,
            per,
        } => format!("{} {} per {}", channel.node, count.node, per.node),
        LimitKind::Quiet { from, to } => format!("quiet {}..{}", from.node, to.node),
        LimitKind::Window { from, to } => format!("window {}..{}", from.node, to.node),
        LimitKind::Days { from, to } => format!(
            "days {}..{}",
            weekday_name(from.node),
            weekday_name(to.node)
        ),
    }
}

pub fn trigger(trigger: &Trigger) -> String {
    let at = |time: &Option<crate::span::Spanned<Time>>| {
        time.as_ref()
            .map_or(String::new(), |time| format!(" at {}", time.node))
    };
    match trigger {
        Trigger::Event { event, filter } => event_text("on event", &event.node, filter.as_ref()),
        Trigger::Stage(stage) => format!("on stage {}", string(&stage.node)),
        Trigger::Tag(tag) => format!("on tag {}", string(&tag.node)),
        Trigger::Date { field, at: time } => format!("on date {}{}", field.node, at(time)),
        Trigger::Holiday { holiday, at: time } => {
            format!("on holiday {}{}", string(&holiday.node), at(time))
        }
        Trigger::Daily { at } => format!("daily at {}", at.node),
        Trigger::Weekly { weekday, at } => {
            format!("every {} at {}", weekday_name(weekday.node), at.node)
        }
        Trigger::Once { date, at } => format!("once {} at {}", date.node, at.node),
        Trigger::When(condition) => format!("when {}", expr(condition)),
    }
}

pub fn signal(signal: &Signal) -> String {
    match signal {
        Signal::Event { event, filter } => event_text("on event", &event.node, filter.as_ref()),
        Signal::Stage(stage) => format!("on stage {}", string(&stage.node)),
        Signal::Tag(tag) => format!("on tag {}", string(&tag.node)),
        Signal::When(condition) => format!("when {}", expr(condition)),
    }
}

pub(crate) fn event_text(prefix: &str, event: &str, filter: Option<&Expr>) -> String {
    match filter {
        Some(filter) => format!("{prefix} {} where {}", string(event), expr(filter)),
        None => format!("{prefix} {}", string(event)),
    }
}

pub(crate) fn score_rule(rule: &ScoreRule) -> String {
    match &rule.kind {
        ScoreRuleKind::OnEvent {
            event,
            filter,
            points,
        } => {
            format!(
                "{} {}",
                event_text("on event", &event.node, filter.as_ref()),
                points_text(points.node)
            )
        }
        ScoreRuleKind::Silence { within, points } => format!(
            "no event within {} {}",
            within.node,
            points_text(points.node)
        ),
        ScoreRuleKind::When { condition, points } => {
            format!("when {} {}", expr(condition), points_text(points.node))
        }
        ScoreRuleKind::Decay { half_life } => format!("decay half_life {}", half_life.node),
    }
}

pub(crate) fn points_text(points: f64) -> String {
    if points < 0.0 {
        number(points)
    } else {
        format!("+{}", number(points))
    }
}

/// A number without a trailing `.0`.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        value.to_string()
    }
}

pub fn weekday_name(weekday: chrono::Weekday) -> &'static str {
    match weekday {
        chrono::Weekday::Mon => "monday",
        chrono::Weekday::Tue => "tuesday",
        chrono::Weekday::Wed => "wednesday",
        chrono::Weekday::Thu => "thursday",
        chrono::Weekday::Fri => "friday",
        chrono::Weekday::Sat => "saturday",
        chrono::Weekday::Sun => "sunday",
    }
}

/// A string literal with the escapes the grammar accepts.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An expression as written, parentheses kept.
pub fn expr(expression: &Expr) -> String {
    match &expression.kind {
        ExprKind::Bool(value) => value.to_string(),
        ExprKind::Number(_, text) => text.clone(),
        ExprKind::String(text) => string(text),
        ExprKind::Date(date) => date.to_string(),
        ExprKind::Time(time) => time.to_string(),
        ExprKind::Duration(duration) => duration.to_string(),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Path(parts) => parts
            .iter()
            .map(|part| part.node.as_str())
            .collect::<Vec<_>>()
            .join("."),
        ExprKind::Call { function, args } => {
            format!(
                "{}({})",
                function.node,
                args.iter().map(expr).collect::<Vec<_>>().join(", ")
            )
        }
        ExprKind::Count {
            event,
            filter,
            within,
        } => {
            let mut text = format!("count(event {}", string(&event.node));
            if let Some(filter) = filter {
                let _ = write!(text, " where {}", expr(filter));
            }
            if let Some(within) = within {
                let _ = write!(text, " within {}", within.node);
            }
            text.push(')');
            text
        }
        ExprKind::Not(inner) => format!("not {}", expr(inner)),
        ExprKind::Binary { op, left, right } => {
            format!("{} {} {}", expr(left), op.node.as_str(), expr(right))
        }
        ExprKind::Group(inner) => format!("({})", expr(inner)),
    }
}
