//! `journeyc fmt`: prints a journey file in its canonical layout. Comments
//! are kept: a comment on a line of its own stays before the statement that
//! follows it, a comment after code stays at the end of that line. Formatting
//! twice changes nothing.

use std::fmt::Write as _;

use crate::ast::*;
use crate::parser;
use crate::span::FileId;

const INDENT: &str = "  ";

/// The canonical layout of `source`, or the syntax error that prevents it.
pub fn format_source(file: FileId, source: &str) -> Result<String, crate::diagnostic::Diagnostic> {
    let (ast, _) = parser::parse(file, source)?;
    let comments = parser::comments(file, source);
    let mut printer = Printer {
        source,
        comments,
        next_comment: 0,
        out: String::new(),
        depth: 0,
        last_end: 0,
    };
    for (index, item) in ast.items.iter().enumerate() {
        printer.leading(item.span().start as usize, index > 0);
        printer.item(item);
    }
    printer.leading(source.len(), !ast.items.is_empty());
    Ok(printer.out)
}

struct Printer<'a> {
    source: &'a str,
    comments: Vec<Comment>,
    next_comment: usize,
    out: String,
    depth: usize,
    last_end: usize,
}

impl Printer<'_> {
    fn line(&mut self, text: &str) {
        for _ in 0..self.depth {
            self.out.push_str(INDENT);
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Whether the source has an empty line between two offsets.
    fn blank_between(&self, from: usize, to: usize) -> bool {
        let gap = self.source.get(from..to).unwrap_or("");
        let lines: Vec<&str> = gap.split('\n').collect();
        lines.len() > 2
            && lines[1..lines.len() - 1]
                .iter()
                .any(|line| line.trim().is_empty())
    }

    fn after_open_brace(&self) -> bool {
        self.out.trim_end().ends_with('{') || self.out.is_empty()
    }

    /// Prints the comments that stand before `start`, and the blank lines
    /// the author left. Between top-level items there is always exactly one.
    fn leading(&mut self, start: usize, separate_items: bool) {
        let mut separated = false;
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.span.start as usize >= start {
                break;
            }
            let comment = comment.clone();
            self.next_comment += 1;
            if (separate_items && !separated && !self.out.is_empty())
                || (!separate_items
                    && !self.after_open_brace()
                    && self.blank_between(self.last_end, comment.span.start as usize))
            {
                self.out.push('\n');
            }
            separated = true;
            self.line(&comment.text);
            self.last_end = comment.span.end as usize;
        }
        let blank = if separate_items {
            !separated && !self.out.is_empty()
        } else {
            !self.after_open_brace() && self.blank_between(self.last_end, start)
        };
        if blank && start < self.source.len() {
            self.out.push('\n');
        }
        self.last_end = self.last_end.max(start);
    }

    /// Appends a comment that stands after code on the line where `end` is.
    fn trailing(&mut self, end: usize) {
        self.last_end = self.last_end.max(end);
        let Some(comment) = self.comments.get(self.next_comment) else {
            return;
        };
        let start = comment.span.start as usize;
        let gap_is_blank = self.source.get(end..start).is_some_and(|gap| {
            gap.chars()
                .all(|c| c == '{' || (c.is_whitespace() && c != '\n'))
        });
        if !comment.trailing || !gap_is_blank {
            return;
        }
        let text = comment.text.clone();
        self.next_comment += 1;
        if self.out.ends_with('\n') {
            self.out.pop();
        }
        let _ = writeln!(self.out, "  {text}");
        self.last_end = comment.span.end as usize;
    }

    /// A statement that fits on one line.
    fn statement(&mut self, start: usize, end: usize, text: &str) {
        self.leading(start, false);
        self.line(text);
        self.trailing(end);
    }

    /// `head {`, the body, `}`; `close` is the offset of the closing brace.
    fn braced(
        &mut self,
        start: usize,
        head: &str,
        close: usize,
        end: usize,
        body: impl FnOnce(&mut Self),
    ) {
        self.leading(start, false);
        self.line(&format!("{head} {{"));
        let open = self.source[start..close]
            .find('{')
            .map_or(start, |offset| start + offset + 1);
        self.trailing(open);
        self.depth += 1;
        body(self);
        self.leading(close, false);
        self.depth -= 1;
        self.line("}");
        self.trailing(end);
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Segment(segment) => {
                let text = format!(
                    "segment {} = {}",
                    segment.name.node,
                    expr(&segment.condition)
                );
                self.line(&text);
                self.trailing(segment.span.end as usize);
            }
            Item::Score(score) => {
                let close = score.span.end as usize - 1;
                self.line(&format!("score {} {{", score.name.node));
                self.trailing(score.name.span.end as usize);
                self.depth += 1;
                for rule in &score.rules {
                    self.statement(
                        rule.span.start as usize,
                        rule.span.end as usize,
                        &score_rule(rule),
                    );
                }
                self.leading(close, false);
                self.depth -= 1;
                self.line("}");
                self.trailing(score.span.end as usize);
            }
            Item::Journey(journey) => {
                // Clause values line up, so the header reads as a table.
                let keyword_width = journey
                    .clauses()
                    .map(|clause| clause.kind.keyword().len())
                    .max()
                    .unwrap_or(0);
                self.line(&format!("journey {} {{", journey.name.node));
                self.trailing(journey.name.span.end as usize);
                self.depth += 1;
                for member in &journey.members {
                    match member {
                        Member::Clause(clause) => {
                            let text = aligned(&clause_text(clause), keyword_width);
                            self.statement(
                                clause.span.start as usize,
                                clause.span.end as usize,
                                &text,
                            );
                        }
                        Member::Step(step) => self.step(step),
                    }
                }
                self.leading(journey.close.start as usize, false);
                self.depth -= 1;
                self.line("}");
                self.trailing(journey.span.end as usize);
            }
        }
    }

    fn block(&mut self, steps: &[Step]) {
        for step in steps {
            self.step(step);
        }
    }

    fn step(&mut self, step: &Step) {
        let label = step
            .label
            .as_ref()
            .map_or(String::new(), |label| format!("{}: ", label.node));
        let start = step.span.start as usize;
        let end = step.span.end as usize;
        let close = end - 1;
        match &step.kind {
            StepKind::WaitEvent {
                timeout,
                event,
                filter,
                got,
                on_timeout,
                has_outcomes,
            } => {
                let mut head = format!(
                    "{label}wait {} for event {}",
                    timeout.node,
                    string(&event.node)
                );
                if let Some(filter) = filter {
                    let _ = write!(head, " where {}", expr(filter));
                }
                if !has_outcomes {
                    return self.statement(start, end, &head);
                }
                self.braced(start, &head, close, end, |printer| {
                    for (keyword, block) in [("got", got), ("timeout", on_timeout)] {
                        if let Some(block) = block {
                            printer.block_statement(keyword, block);
                        }
                    }
                });
            }
            StepKind::Split {
                branches,
                otherwise,
            } => {
                self.braced(start, &format!("{label}split"), close, end, |printer| {
                    for branch in branches {
                        let head = format!("when {}", expr(&branch.condition));
                        if printer.empty_block(
                            branch.span.start as usize,
                            &head,
                            &branch.body,
                            branch.span.end as usize,
                        ) {
                            continue;
                        }
                        printer.braced(
                            branch.span.start as usize,
                            &head,
                            branch.body.span.end as usize - 1,
                            branch.span.end as usize,
                            |printer| printer.block(&branch.body.steps),
                        );
                    }
                    if let Some(block) = otherwise {
                        printer.block_statement("else", block);
                    }
                });
            }
            StepKind::Ab {
                name,
                variants,
                holdout,
            } => {
                self.braced(
                    start,
                    &format!("{label}ab {}", name.node),
                    close,
                    end,
                    |printer| {
                        for variant in variants {
                            let head = format!(
                                "variant {} {}%",
                                variant.name.node,
                                number(variant.weight.node)
                            );
                            if printer.empty_block(
                                variant.span.start as usize,
                                &head,
                                &variant.body,
                                variant.span.end as usize,
                            ) {
                                continue;
                            }
                            printer.braced(
                                variant.span.start as usize,
                                &head,
                                variant.body.span.end as usize - 1,
                                variant.span.end as usize,
                                |printer| printer.block(&variant.body.steps),
                            );
                        }
                        if let Some(holdout) = holdout {
                            let text = format!("holdout {}%", number(holdout.node));
                            printer.statement(
                                holdout.span.start as usize,
                                holdout.span.end as usize,
                                &text,
                            );
                        }
                    },
                );
            }
            StepKind::Repeat {
                count,
                every,
                body,
                times,
            } => {
                let times = if *times { " times" } else { "" };
                let head = format!("{label}repeat {}{times} every {}", count.node, every.node);
                self.braced(start, &head, close, end, |printer| {
                    printer.block(&body.steps);
                });
            }
            kind => {
                let text = format!("{label}{}", simple_step(kind));
                self.statement(start, end, &text);
            }
        }
    }

    /// `got { ... }`, `timeout { ... }`, `else { ... }`: the keyword stands
    /// just before the block.
    /// Whether a comment not yet printed starts before `offset`.
    fn comment_before(&self, offset: usize) -> bool {
        self.comments
            .get(self.next_comment)
            .is_some_and(|comment| (comment.span.start as usize) < offset)
    }

    /// An empty block prints as `head {}`, unless comments stand in it.
    fn empty_block(&mut self, start: usize, head: &str, block: &Block, end: usize) -> bool {
        self.leading(start, false);
        if !block.steps.is_empty() || self.comment_before(block.span.end as usize) {
            return false;
        }
        self.line(&format!("{head} {{}}"));
        self.trailing(end);
        true
    }

    fn block_statement(&mut self, keyword: &str, block: &Block) {
        let open = block.span.start as usize;
        let keyword_start = self.source[..open].rfind(keyword).unwrap_or(open);
        self.leading(keyword_start, false);
        if block.steps.is_empty() && !self.comment_before(block.span.end as usize) {
            self.line(&format!("{keyword} {{}}"));
            self.trailing(block.span.end as usize);
            return;
        }
        self.braced(
            keyword_start,
            keyword,
            block.span.end as usize - 1,
            block.span.end as usize,
            |printer| {
                printer.block(&block.steps);
            },
        );
    }
}

/// `keyword value` with the value moved to column `width + 1`.
fn aligned(text: &str, width: usize) -> String {
    match text.split_once(' ') {
        Some((keyword, rest)) => format!("{keyword:<width$} {rest}"),
        None => text.to_string(),
    }
}

fn simple_step(kind: &StepKind) -> String {
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

fn message_text(message: &Message) -> String {
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

fn date_ref(date: &DateRef) -> String {
    match date {
        DateRef::Literal(date) => date.node.to_string(),
        DateRef::Holiday(name) => format!("holiday {}", string(&name.node)),
        DateRef::Field(field) => field.node.clone(),
    }
}

fn clause_text(clause: &Clause) -> String {
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
fn step_ref(id: &str) -> String {
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

fn limit(limit: &Limit) -> String {
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

fn event_text(prefix: &str, event: &str, filter: Option<&Expr>) -> String {
    match filter {
        Some(filter) => format!("{prefix} {} where {}", string(event), expr(filter)),
        None => format!("{prefix} {}", string(event)),
    }
}

fn score_rule(rule: &ScoreRule) -> String {
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

fn points_text(points: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn format(source: &str) -> String {
        format_source(FileId(0), source).unwrap_or_else(|error| panic!("{error:?}"))
    }

    #[test]
    fn empty_blocks_stay_short_unless_they_hold_comments() {
        let source =
            "journey a {\n  split {\n    when x {}\n    else { # nobody else\n    }\n  }\n}\n";
        let formatted = format(source);
        assert_eq!(
            formatted,
            "journey a {\n  split {\n    when x {}\n    else {  # nobody else\n    }\n  }\n}\n"
        );
        assert_eq!(format(&formatted), formatted);
    }

    #[test]
    fn lays_out_and_keeps_comments() {
        let source = "# header\njourney a{title \"A\" # the name\nentry on event \"x\"\n\n\n# before\nemail \"t\" wait 1d12h split{when x>1{goto z} else{}} z: end}\n";
        let formatted = format(source);
        assert_eq!(
            formatted,
            "# header\njourney a {\n  title \"A\"  # the name\n  entry on event \"x\"\n\n  # before\n  email \"t\"\n  wait 1d12h\n  split {\n    when x > 1 {\n      goto z\n    }\n    else {}\n  }\n  z: end\n}\n"
        );
        assert_eq!(format(&formatted), formatted);
    }

    #[test]
    fn strings_round_trip() {
        assert_eq!(string("a\"b\\c\n价格"), "\"a\\\"b\\\\c\\n价格\"");
    }
}
