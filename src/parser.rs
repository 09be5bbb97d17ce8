//! pest parses a journey file; this module turns the pest pairs into the
//! [`ast`](crate::ast) at once, converting every position into a [`Span`],
//! and turns pest's errors into diagnostics that name tokens in words.

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::span::{FileId, Span, Spanned};

#[derive(pest_derive::Parser)]
#[grammar = "grammar/journey.pest"]
struct JourneyParser;

/// Deeper nesting than this is refused before pest sees it, so no input can
/// exhaust the stack of the parser or of the checks that recurse the tree.
pub const MAX_NESTING: usize = 64;

/// The most operators (`and`, `or`, `not`, `==`, `in`, ...) one
/// expression may hold, groups included: deeper trees than this could
/// exhaust the stack of the checks and the formatter that walk them.
pub const MAX_OPERATORS: usize = 256;

fn is_operator(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::op_or
            | Rule::op_and
            | Rule::op_not
            | Rule::op_eq
            | Rule::op_ne
            | Rule::op_le
            | Rule::op_ge
            | Rule::op_lt
            | Rule::op_gt
            | Rule::op_not_in
            | Rule::op_in
            | Rule::op_contains_any
            | Rule::op_contains
            | Rule::op_starts_with
            | Rule::op_ends_with
    )
}

/// Parses one file. A syntax error stops the file (other files are still
/// checked); everything after it would only produce noise. Values that
/// parse but cannot be (`25:00`, `2026-02-30`) are returned beside the
/// tree, which then holds a stand-in, so the checks still run.
pub fn parse(file: FileId, source: &str) -> Result<(File, Vec<Diagnostic>), Diagnostic> {
    check_nesting(file, source)?;
    let mut pairs = JourneyParser::parse(Rule::file, source)
        .map_err(|error| syntax_error(file, source, &error))?;
    let builder = Builder::new(file, source);
    let root = pairs.next().map(Pair::into_inner);
    let items = root
        .into_iter()
        .flatten()
        .filter(|pair| pair.as_rule() != Rule::EOI)
        .map(|pair| builder.item(pair))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((File { items }, builder.value_errors.into_inner()))
}

/// Parses one expression (used by tests and by `--vars` style tools).
pub fn parse_expr(file: FileId, source: &str) -> Result<Expr, Diagnostic> {
    check_nesting(file, source)?;
    let mut pairs = JourneyParser::parse(Rule::expr, source)
        .map_err(|error| syntax_error(file, source, &error))?;
    let builder = Builder::new(file, source);
    let pair = pairs.next().ok_or_else(|| {
        Diagnostic::new(
            Code::Syntax,
            Span::new(file, 0, 0),
            "expected an expression",
        )
    })?;
    let expr = builder.expr(pair)?;
    if expr.span.end as usize != source.trim_end().len() {
        let at = expr.span.end as usize;
        return Err(Diagnostic::new(
            Code::Syntax,
            Span::new(file, at, source.len()),
            "unexpected text after the expression",
        ));
    }
    Ok(expr)
}

fn check_nesting(file: FileId, source: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut in_comment = false;
    for (offset, character) in source.char_indices() {
        if in_comment {
            in_comment = character != '\n';
            continue;
        }
        if in_string {
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' | '\n' => in_string = false,
                _ => {}
            }
            continue;
        }
        match character {
            '"' => in_string = true,
            '#' => in_comment = true,
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::new(
                        Code::TooDeep,
                        Span::new(file, offset, offset + 1),
                        format!("nesting deeper than {MAX_NESTING} levels"),
                    )
                    .label("too deep")
                    .help("split the journey into smaller journeys joined by `handoff`"));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Every `#` comment of a file, for the formatter.
pub fn comments(file: FileId, source: &str) -> Vec<Comment> {
    let mut comments = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut line_has_code = false;
    let mut chars = source.char_indices().peekable();
    while let Some((offset, character)) = chars.next() {
        if in_string {
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' | '\n' => in_string = false,
                _ => {}
            }
            if character == '\n' {
                line_has_code = false;
            }
            continue;
        }
        match character {
            '"' => {
                in_string = true;
                line_has_code = true;
            }
            '#' => {
                let end = source[offset..]
                    .find('\n')
                    .map_or(source.len(), |length| offset + length);
                comments.push(Comment {
                    text: source[offset..end].trim_end().to_string(),
                    span: Span::new(file, offset, end),
                    trailing: line_has_code,
                });
                while chars.peek().is_some_and(|&(next, _)| next < end) {
                    chars.next();
                }
            }
            '\n' => line_has_code = false,
            c if !c.is_whitespace() && c != '\u{feff}' => line_has_code = true,
            _ => {}
        }
    }
    comments
}

/// The words a user sees for a grammar rule.
pub fn rule_name(rule: Rule) -> String {
    let text = match rule {
        Rule::EOI => "end of file",
        Rule::file | Rule::item => "`journey`, `segment` or `score`",
        Rule::journey => "`journey`",
        Rule::segment => "`segment`",
        Rule::score_model => "`score`",
        Rule::score_rule | Rule::score_on_event | Rule::score_silence | Rule::score_when | Rule::score_decay => {
            "a scoring rule (`on event`, `no event within`, `when`, `decay`)"
        }
        Rule::clause
        | Rule::title
        | Rule::description
        | Rule::audience
        | Rule::entry
        | Rule::reentry
        | Rule::goal
        | Rule::exit_rule
        | Rule::limits
        | Rule::rescue
        | Rule::backfill
        | Rule::priority
        | Rule::moved => "a clause (`title`, `audience`, `entry`, `goal`, `exit`, `limits`, `rescue` ...)",
        Rule::reentry_never | Rule::reentry_always | Rule::reentry_after => "`never`, `always` or `after <duration>`",
        Rule::trigger
        | Rule::trigger_event
        | Rule::trigger_stage
        | Rule::trigger_tag
        | Rule::trigger_date
        | Rule::trigger_holiday
        | Rule::trigger_daily
        | Rule::trigger_weekly
        | Rule::trigger_once
        | Rule::trigger_when => "a trigger (`on event`, `on stage`, `on tag`, `on date`, `on holiday`, `daily`, `every`, `once`, `when`)",
        Rule::condition | Rule::condition_event | Rule::condition_stage | Rule::condition_tag | Rule::condition_when => {
            "`event`, `stage`, `tag` or `when`"
        }
        Rule::signal => "`on event`, `on stage`, `on tag` or `when`",
        Rule::goal_then => "`then`",
        Rule::limit | Rule::cap | Rule::quiet | Rule::window | Rule::send_days => {
            "a limit (`email 1 per 7d`, `quiet 21:00..09:00`, `window`, `days`)"
        }
        Rule::channel => "a channel (`email`, `sms`, `task`, `webhook`)",
        Rule::where_clause => "`where`",
        Rule::at_time => "`at`",
        Rule::block => "`{`",
        Rule::step | Rule::step_kind => "a step",
        Rule::email => "`email`",
        Rule::sms => "`sms`",
        Rule::task => "`task`",
        Rule::webhook => "`webhook`",
        Rule::assignee => "an assignee",
        Rule::task_template => "`template`",
        Rule::message_option | Rule::expires | Rule::due => "`expires after` or `due`",
        Rule::wait_duration | Rule::wait_event | Rule::wait_until => "`wait`",
        Rule::outcomes => "`{`",
        Rule::got => "`got`",
        Rule::timeout => "`timeout`",
        Rule::until_clock | Rule::until_date => "a time (`09:00`), a weekday or a date",
        Rule::any_weekday => "`weekday`",
        Rule::before => "`before`",
        Rule::after => "`after`",
        Rule::date_ref => "a date, a date field or `holiday`",
        Rule::holiday_ref => "`holiday`",
        Rule::split => "`split`",
        Rule::branch => "`when`",
        Rule::otherwise => "`else`",
        Rule::ab => "`ab`",
        Rule::variant => "`variant`",
        Rule::holdout => "`holdout`",
        Rule::repeat => "`repeat`",
        Rule::action => "an action",
        Rule::tag => "`tag`",
        Rule::untag => "`untag`",
        Rule::set_field => "`set`",
        Rule::stage => "`stage`",
        Rule::score_change => "`score`",
        Rule::handoff => "`handoff`",
        Rule::goto => "`goto`",
        Rule::end => "`end`",
        Rule::expr | Rule::operand | Rule::prefix_op | Rule::group | Rule::path | Rule::call | Rule::count => "an expression",
        Rule::op_not => "`not`",
        Rule::infix_op => "an operator",
        rule if is_operator(rule) => "an operator",
        Rule::list => "a list `[...]`",
        Rule::ident | Rule::ident_char | Rule::reserved => "a name",
        Rule::string | Rule::string_inner | Rule::escape => "a string in double quotes",
        Rule::boolean => "`true` or `false`",
        Rule::integer => "a whole number",
        Rule::number => "a number",
        Rule::delta => "points such as `+10` or `-5`",
        Rule::percent => "a percentage such as `50%`",
        Rule::duration => "a duration such as `3d`, `12h` or `2w`",
        Rule::date => "a date such as `2026-12-24`",
        Rule::time => "a time such as `09:00`",
        Rule::weekday => "a weekday such as `monday`",
        Rule::WHITESPACE | Rule::COMMENT => "a space",
        keyword => return keyword_name(keyword),
    };
    text.to_string()
}

fn keyword_name(rule: Rule) -> String {
    let debug = format!("{rule:?}");
    debug
        .strip_prefix("kw_")
        .map_or_else(|| "a token".to_string(), |keyword| format!("`{keyword}`"))
}

fn syntax_error(file: FileId, source: &str, error: &pest::error::Error<Rule>) -> Diagnostic {
    let start = match error.location {
        InputLocation::Pos(position) | InputLocation::Span((position, _)) => position,
    };
    let found_end = start + found_token_length(&source[start..]);
    let found = &source[start..found_end];
    let span = Span::new(file, start, found_end.max(start));
    let (mut expected, unexpected) = match &error.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => (
            positives
                .iter()
                .map(|rule| rule_name(*rule))
                .collect::<Vec<_>>(),
            negatives
                .iter()
                .map(|rule| rule_name(*rule))
                .collect::<Vec<_>>(),
        ),
        ErrorVariant::CustomError { message } => (Vec::new(), vec![message.clone()]),
    };
    expected.sort();
    expected.dedup();
    let found_text = if found.is_empty() {
        "the end of the file".to_string()
    } else {
        format!("`{found}`")
    };
    let message = match expected.as_slice() {
        [] if !unexpected.is_empty() => format!("unexpected {}", unexpected.join(", ")),
        [] => format!("unexpected {found_text}"),
        [only] => format!("expected {only}, found {found_text}"),
        [init @ .., last] => format!("expected {} or {last}, found {found_text}", init.join(", ")),
    };
    let help = syntax_help(found);
    Diagnostic::new(Code::Syntax, span, message)
        .label("unexpected here")
        .help_opt(help)
}

/// How much of the text at an error to show: a word, a string up to its
/// end of line, or a run of punctuation.
fn found_token_length(rest: &str) -> usize {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let Some(first) = rest.chars().next() else {
        return 0;
    };
    let end = if is_word(first) {
        rest.find(|c: char| !is_word(c))
    } else if first == '"' {
        rest[1..]
            .find(['"', '\n'])
            .map(|offset| offset + 1 + usize::from(rest[1 + offset..].starts_with('"')))
    } else {
        rest.find(|c: char| c.is_whitespace() || is_word(c) || c == '"')
    };
    end.unwrap_or(rest.len()).max(first.len_utf8())
}

fn syntax_help(found: &str) -> Option<String> {
    let keywords = [
        "journey",
        "segment",
        "score",
        "title",
        "description",
        "audience",
        "entry",
        "reentry",
        "goal",
        "exit",
        "limits",
        "rescue",
        "email",
        "sms",
        "task",
        "webhook",
        "wait",
        "split",
        "ab",
        "repeat",
        "tag",
        "untag",
        "set",
        "stage",
        "handoff",
        "goto",
        "end",
        "when",
        "else",
        "variant",
        "holdout",
        "got",
        "timeout",
    ];
    let word: String = found
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if word.is_empty() || keywords.contains(&word.as_str()) {
        return None;
    }
    crate::diagnostic::did_you_mean(&word, keywords)
}

struct Builder<'s> {
    file: FileId,
    source: &'s str,
    /// Byte ranges of comments, in order, for trimming spans.
    comments: Vec<(usize, usize)>,
    value_errors: std::cell::RefCell<Vec<Diagnostic>>,
}

type Built<T> = Result<T, Diagnostic>;

impl<'s> Builder<'s> {
    fn new(file: FileId, source: &'s str) -> Self {
        let comments = comments(file, source)
            .iter()
            .map(|comment| (comment.span.start as usize, comment.span.end as usize))
            .collect();
        Builder {
            file,
            source,
            comments,
            value_errors: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// A rule that ends in an optional part also swallows the spaces and
    /// comments after it; the span stops at the last character of code.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let span = pair.as_span();
        let start = span.start();
        let mut end = span.end();
        while end > start {
            let before = self.source[..end].chars().next_back().unwrap_or(' ');
            if before.is_whitespace() || before == '\u{feff}' {
                end -= before.len_utf8();
                continue;
            }
            let inside_comment = self
                .comments
                .partition_point(|&(comment_start, _)| comment_start < end)
                .checked_sub(1)
                .map(|index| self.comments[index])
                .filter(|&(comment_start, comment_end)| comment_start < end && end <= comment_end);
            match inside_comment {
                Some((comment_start, _)) => end = comment_start.max(start),
                None => break,
            }
        }
        Span::new(self.file, start, end)
    }

    fn name(&self, pair: &Pair<'_, Rule>) -> Name {
        Spanned::new(pair.as_str().to_string(), self.span(pair))
    }

    /// A label, or a step ID in quotes.
    fn step_ref(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<String>> {
        if pair.as_rule() == Rule::string {
            self.string(pair)
        } else {
            Ok(self.name(pair))
        }
    }

    fn invalid(&self, pair: &Pair<'_, Rule>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Code::InvalidValue, self.span(pair), message)
    }

    fn item(&self, pair: Pair<'_, Rule>) -> Built<Item> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = significant(pair.into_inner());
        match rule {
            Rule::journey => {
                let name = self.name(&next(&mut inner));
                let mut members = Vec::new();
                for member in inner {
                    if member.as_rule() == Rule::step {
                        members.push(Member::Step(self.step(member)?));
                    } else {
                        members.push(Member::Clause(self.clause(member)?));
                    }
                }
                let close = Span::new(self.file, span.end as usize - 1, span.end as usize);
                Ok(Item::Journey(Journey {
                    name,
                    members,
                    span,
                    close,
                }))
            }
            Rule::segment => {
                let name = self.name(&next(&mut inner));
                let condition = self.expr(next(&mut inner))?;
                Ok(Item::Segment(Segment {
                    name,
                    condition,
                    span,
                }))
            }
            _ => {
                let name = self.name(&next(&mut inner));
                let rules = inner
                    .map(|rule| self.score_rule(rule))
                    .collect::<Built<_>>()?;
                Ok(Item::Score(ScoreModel { name, rules, span }))
            }
        }
    }

    fn score_rule(&self, pair: Pair<'_, Rule>) -> Built<ScoreRule> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = significant(pair.into_inner());
        let kind = match rule {
            Rule::score_on_event => {
                let event = self.string(&next(&mut inner))?;
                let mut filter = None;
                let mut points = None;
                for part in inner {
                    match part.as_rule() {
                        Rule::where_clause => filter = Some(self.where_clause(part)?),
                        _ => points = Some(self.delta(&part)?),
                    }
                }
                ScoreRuleKind::OnEvent {
                    event,
                    filter,
                    points: points.unwrap_or_else(|| Spanned::new(0.0, span)),
                }
            }
            Rule::score_silence => ScoreRuleKind::Silence {
                within: self.duration(&next(&mut inner))?,
                points: self.delta(&next(&mut inner))?,
            },
            Rule::score_when => ScoreRuleKind::When {
                condition: self.expr(next(&mut inner))?,
                points: self.delta(&next(&mut inner))?,
            },
            _ => ScoreRuleKind::Decay {
                half_life: self.duration(&next(&mut inner))?,
            },
        };
        Ok(ScoreRule { kind, span })
    }

    fn clause(&self, pair: Pair<'_, Rule>) -> Built<Clause> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = significant(pair.into_inner());
        let kind = match rule {
            Rule::title => ClauseKind::Title(self.string(&next(&mut inner))?),
            Rule::description => ClauseKind::Description(self.string(&next(&mut inner))?),
            Rule::audience => ClauseKind::Audience(self.expr(next(&mut inner))?),
            Rule::entry => ClauseKind::Entry(self.trigger(next(&mut inner))?),
            Rule::reentry => {
                let choice = next(&mut inner);
                ClauseKind::Reentry(match choice.as_rule() {
                    Rule::reentry_never => Reentry::Never,
                    Rule::reentry_always => Reentry::Always,
                    _ => {
                        Reentry::After(self.duration(&next(&mut significant(choice.into_inner())))?)
                    }
                })
            }
            Rule::goal => {
                let condition = self.signal(next(&mut inner))?;
                let within = self.duration(&next(&mut inner))?;
                let mut then = None;
                let mut then_braced = false;
                if let Some(then_pair) = inner.next() {
                    then_braced = then_pair
                        .as_str()
                        .trim_start_matches("then")
                        .trim_start()
                        .starts_with('{');
                    let actions = significant(then_pair.into_inner())
                        .map(|action| self.action(action))
                        .collect::<Built<Vec<_>>>()?;
                    then = Some(actions);
                }
                ClauseKind::Goal(Goal {
                    condition,
                    within,
                    then,
                    then_braced,
                })
            }
            Rule::exit_rule => ClauseKind::Exit(self.signal(next(&mut inner))?),
            Rule::limits => {
                ClauseKind::Limits(inner.map(|limit| self.limit(limit)).collect::<Built<_>>()?)
            }
            Rule::moved => ClauseKind::Moved {
                from: self.step_ref(&next(&mut inner))?,
                to: self.step_ref(&next(&mut inner))?,
            },
            Rule::backfill => ClauseKind::Backfill(self.duration(&next(&mut inner))?),
            Rule::priority => ClauseKind::Priority(self.integer(&next(&mut inner))?),
            _ => {
                let signal = self.signal(next(&mut inner))?;
                let target = self.name(&next(&mut inner));
                ClauseKind::Rescue { signal, target }
            }
        };
        Ok(Clause { kind, span })
    }

    fn trigger(&self, pair: Pair<'_, Rule>) -> Built<Trigger> {
        let rule = pair.as_rule();
        let mut inner = significant(pair.into_inner());
        Ok(match rule {
            Rule::trigger_event => {
                let event = self.string(&next(&mut inner))?;
                let filter = inner
                    .next()
                    .map(|part| self.where_clause(part))
                    .transpose()?;
                Trigger::Event { event, filter }
            }
            Rule::trigger_stage => Trigger::Stage(self.string(&next(&mut inner))?),
            Rule::trigger_tag => Trigger::Tag(self.string(&next(&mut inner))?),
            Rule::trigger_date => Trigger::Date {
                field: self.name(&next(&mut inner)),
                at: inner.next().map(|at| self.at_time(at)).transpose()?,
            },
            Rule::trigger_holiday => Trigger::Holiday {
                holiday: self.string(&next(&mut inner))?,
                at: inner.next().map(|at| self.at_time(at)).transpose()?,
            },
            Rule::trigger_daily => Trigger::Daily {
                at: self.at_time(next(&mut inner))?,
            },
            Rule::trigger_weekly => Trigger::Weekly {
                weekday: self.weekday(&next(&mut inner)),
                at: self.at_time(next(&mut inner))?,
            },
            Rule::trigger_once => Trigger::Once {
                date: self.date(&next(&mut inner))?,
                at: self.at_time(next(&mut inner))?,
            },
            _ => Trigger::When(self.expr(next(&mut inner))?),
        })
    }

    fn signal(&self, pair: Pair<'_, Rule>) -> Built<Signal> {
        let rule = pair.as_rule();
        let mut inner = significant(pair.into_inner());
        Ok(match rule {
            Rule::condition_event => {
                let event = self.string(&next(&mut inner))?;
                let filter = inner
                    .next()
                    .map(|part| self.where_clause(part))
                    .transpose()?;
                Signal::Event { event, filter }
            }
            Rule::condition_stage => Signal::Stage(self.string(&next(&mut inner))?),
            Rule::condition_tag => Signal::Tag(self.string(&next(&mut inner))?),
            _ => Signal::When(self.expr(next(&mut inner))?),
        })
    }

    fn limit(&self, pair: Pair<'_, Rule>) -> Built<Limit> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = significant(pair.into_inner());
        let kind = match rule {
            Rule::cap => {
                let channel_pair = next(&mut inner);
                LimitKind::Cap {
                    channel: Spanned::new(
                        channel_of(channel_pair.as_str()),
                        self.span(&channel_pair),
                    ),
                    count: self.integer(&next(&mut inner))?,
                    per: self.duration(&next(&mut inner))?,
                }
            }
            Rule::quiet => LimitKind::Quiet {
                from: self.time(&next(&mut inner))?,
                to: self.time(&next(&mut inner))?,
            },
            Rule::window => LimitKind::Window {
                from: self.time(&next(&mut inner))?,
                to: self.time(&next(&mut inner))?,
            },
            _ => LimitKind::Days {
                from: self.weekday(&next(&mut inner)),
                to: self.weekday(&next(&mut inner)),
            },
        };
        Ok(Limit { kind, span })
    }

    fn block(&self, pair: Pair<'_, Rule>) -> Built<Block> {
        let span = self.span(&pair);
        let steps = significant(pair.into_inner())
            .map(|step| self.step(step))
            .collect::<Built<_>>()?;
        Ok(Block { steps, span })
    }

    fn step(&self, pair: Pair<'_, Rule>) -> Built<Step> {
        let span = self.span(&pair);
        let mut inner = significant(pair.into_inner());
        let mut first = next(&mut inner);
        let mut label = None;
        if first.as_rule() == Rule::ident {
            label = Some(self.name(&first));
            first = next(&mut inner);
        }
        let kind_span = self.span(&first);
        let kind = self.step_kind(first)?;
        Ok(Step {
            label,
            kind,
            span,
            kind_span,
        })
    }

    fn action(&self, pair: Pair<'_, Rule>) -> Built<Step> {
        let span = self.span(&pair);
        Ok(Step {
            label: None,
            kind: self.step_kind(pair)?,
            span,
            kind_span: span,
        })
    }

    fn step_kind(&self, pair: Pair<'_, Rule>) -> Built<StepKind> {
        let rule = pair.as_rule();
        let span = self.span(&pair);
        let mut inner = significant(pair.into_inner());
        Ok(match rule {
            Rule::email | Rule::sms => {
                let channel = if rule == Rule::email {
                    Channel::Email
                } else {
                    Channel::Sms
                };
                let template = self.string(&next(&mut inner))?;
                let mut message = Message {
                    channel,
                    template,
                    task_template: false,
                    assignee: None,
                    endpoint: None,
                    expires: None,
                    due: None,
                };
                self.message_options(&mut message, inner)?;
                StepKind::Message(message)
            }
            Rule::task => {
                let who = next(&mut inner);
                let assignee = if who.as_rule() == Rule::ident {
                    Assignee::Field(self.name(&who))
                } else {
                    Assignee::Fixed(self.string(&who)?)
                };
                let text = next(&mut inner);
                let (template, task_template) = if text.as_rule() == Rule::task_template {
                    (
                        self.string(&next(&mut significant(text.into_inner())))?,
                        true,
                    )
                } else {
                    (self.string(&text)?, false)
                };
                let mut message = Message {
                    channel: Channel::Task,
                    template,
                    task_template,
                    assignee: Some(assignee),
                    endpoint: None,
                    expires: None,
                    due: None,
                };
                self.message_options(&mut message, inner)?;
                StepKind::Message(message)
            }
            Rule::webhook => {
                let endpoint = self.name(&next(&mut inner));
                let template = self.string(&next(&mut inner))?;
                let mut message = Message {
                    channel: Channel::Webhook,
                    template,
                    task_template: true,
                    assignee: None,
                    endpoint: Some(endpoint),
                    expires: None,
                    due: None,
                };
                self.message_options(&mut message, inner)?;
                StepKind::Message(message)
            }
            Rule::wait_duration => StepKind::WaitDuration(self.duration(&next(&mut inner))?),
            Rule::wait_event => {
                let timeout = self.duration(&next(&mut inner))?;
                let event = self.string(&next(&mut inner))?;
                let mut filter = None;
                let mut got = None;
                let mut on_timeout = None;
                let mut has_outcomes = false;
                for part in inner {
                    match part.as_rule() {
                        Rule::where_clause => filter = Some(self.where_clause(part)?),
                        _ => {
                            has_outcomes = true;
                            for outcome in significant(part.into_inner()) {
                                let is_got = outcome.as_rule() == Rule::got;
                                let block =
                                    self.block(next(&mut significant(outcome.into_inner())))?;
                                if is_got {
                                    got = Some(block);
                                } else {
                                    on_timeout = Some(block);
                                }
                            }
                        }
                    }
                }
                StepKind::WaitEvent {
                    timeout,
                    event,
                    filter,
                    got,
                    on_timeout,
                    has_outcomes,
                }
            }
            Rule::wait_until => {
                let until = next(&mut inner);
                let until_rule = until.as_rule();
                let parts: Vec<_> = significant(until.into_inner()).collect();
                if until_rule == Rule::until_clock {
                    let mut day = None;
                    let mut at = None;
                    for part in parts {
                        match part.as_rule() {
                            Rule::weekday => {
                                let weekday = self.weekday(&part);
                                day = Some(Spanned::new(
                                    DayFilter::Weekday(weekday.node),
                                    weekday.span,
                                ));
                            }
                            Rule::any_weekday => {
                                day = Some(Spanned::new(DayFilter::Workday, self.span(&part)));
                            }
                            _ => at = Some(self.time(&part)?),
                        }
                    }
                    StepKind::WaitClock {
                        day,
                        at: at.unwrap_or_else(|| Spanned::new(Time { hour: 0, minute: 0 }, span)),
                    }
                } else {
                    let mut offset_duration = None;
                    let mut direction = Direction::Before;
                    let mut date = None;
                    let mut at = None;
                    for part in parts {
                        match part.as_rule() {
                            Rule::duration => offset_duration = Some(self.duration(&part)?),
                            Rule::before => direction = Direction::Before,
                            Rule::after => direction = Direction::After,
                            Rule::date => date = Some(DateRef::Literal(self.date(&part)?)),
                            Rule::holiday_ref => {
                                date = Some(DateRef::Holiday(
                                    self.string(&next(&mut significant(part.into_inner())))?,
                                ));
                            }
                            Rule::ident => date = Some(DateRef::Field(self.name(&part))),
                            _ => at = Some(self.at_time(part)?),
                        }
                    }
                    StepKind::WaitDate {
                        offset: offset_duration.map(|duration| (duration, direction)),
                        date: date
                            .unwrap_or_else(|| DateRef::Field(Spanned::new(String::new(), span))),
                        at,
                    }
                }
            }
            Rule::split => {
                let mut branches = Vec::new();
                let mut otherwise = None;
                for part in inner {
                    if part.as_rule() == Rule::branch {
                        let branch_span = self.span(&part);
                        let mut parts = significant(part.into_inner());
                        let condition = self.expr(next(&mut parts))?;
                        let body = self.block(next(&mut parts))?;
                        branches.push(Branch {
                            condition,
                            body,
                            span: branch_span,
                        });
                    } else {
                        otherwise = Some(self.block(next(&mut significant(part.into_inner())))?);
                    }
                }
                StepKind::Split {
                    branches,
                    otherwise,
                }
            }
            Rule::ab => {
                let name = self.name(&next(&mut inner));
                let mut variants = Vec::new();
                let mut holdout = None;
                for part in inner {
                    if part.as_rule() == Rule::variant {
                        let variant_span = self.span(&part);
                        let mut parts = significant(part.into_inner());
                        let name = self.name(&next(&mut parts));
                        let weight = self.percent(&next(&mut parts))?;
                        let body = self.block(next(&mut parts))?;
                        variants.push(Variant {
                            name,
                            weight,
                            body,
                            span: variant_span,
                        });
                    } else {
                        holdout = Some(self.percent(&next(&mut significant(part.into_inner())))?);
                    }
                }
                StepKind::Ab {
                    name,
                    variants,
                    holdout,
                }
            }
            Rule::repeat => {
                let count = self.integer(&next(&mut inner))?;
                let mut times = false;
                let mut every = None;
                let mut body = None;
                for part in inner {
                    match part.as_rule() {
                        Rule::kw_times => times = true,
                        Rule::duration => every = Some(self.duration(&part)?),
                        _ => body = Some(self.block(part)?),
                    }
                }
                StepKind::Repeat {
                    count,
                    every: every.unwrap_or_else(|| Spanned::new(Duration::from_minutes(0), span)),
                    body: body.unwrap_or(Block {
                        steps: Vec::new(),
                        span,
                    }),
                    times,
                }
            }
            Rule::tag => StepKind::Tag(self.string(&next(&mut inner))?),
            Rule::untag => StepKind::Untag(self.string(&next(&mut inner))?),
            Rule::set_field => StepKind::SetField {
                field: self.name(&next(&mut inner)),
                value: self.expr(next(&mut inner))?,
            },
            Rule::stage => StepKind::Stage(self.string(&next(&mut inner))?),
            Rule::score_change => StepKind::Score {
                model: self.name(&next(&mut inner)),
                points: self.delta(&next(&mut inner))?,
            },
            Rule::handoff => StepKind::Handoff(self.name(&next(&mut inner))),
            Rule::goto => StepKind::Goto(self.name(&next(&mut inner))),
            _ => StepKind::End,
        })
    }

    fn message_options<'i>(
        &self,
        message: &mut Message,
        options: impl Iterator<Item = Pair<'i, Rule>>,
    ) -> Built<()> {
        for option in options {
            let is_expires = option.as_rule() == Rule::expires;
            let duration = significant(option.into_inner())
                .find(|part| part.as_rule() == Rule::duration)
                .map(|part| self.duration(&part))
                .transpose()?;
            if is_expires {
                message.expires = duration;
            } else {
                message.due = duration;
            }
        }
        Ok(())
    }

    fn where_clause(&self, pair: Pair<'_, Rule>) -> Built<Expr> {
        self.expr(next(&mut significant(pair.into_inner())))
    }

    fn at_time(&self, pair: Pair<'_, Rule>) -> Built<Spanned<Time>> {
        self.time(&next(&mut significant(pair.into_inner())))
    }

    fn string(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<String>> {
        let raw = pair.as_str();
        let body = raw
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(raw);
        let mut text = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(character) = chars.next() {
            if character != '\\' {
                text.push(character);
                continue;
            }
            match chars.next() {
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                    let decoded = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                    match decoded {
                        Some(decoded) => text.push(decoded),
                        None => {
                            return Err(
                                self.invalid(pair, format!("`\\u{{{hex}}}` is not a character"))
                            )
                        }
                    }
                }
                Some(other) => text.push(other),
                None => {}
            }
        }
        Ok(Spanned::new(text, self.span(pair)))
    }

    // A value out of range is reported beside the tree (with a stand-in
    // in it), so the rest of the file is still checked.
    #[allow(clippy::unnecessary_wraps)]
    fn integer(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<u64>> {
        let value = pair.as_str().parse().unwrap_or_else(|_| {
            self.value_errors.borrow_mut().push(
                self.invalid(pair, format!("`{}` is too large", pair.as_str()))
                    .label("too large")
                    .help(format!("numbers go up to {}", u64::MAX)),
            );
            1
        });
        Ok(Spanned::new(value, self.span(pair)))
    }

    fn delta(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<f64>> {
        let text = pair.as_str().trim_start_matches('+');
        text.parse()
            .map(|value| Spanned::new(value, self.span(pair)))
            .map_err(|_| self.invalid(pair, format!("`{}` is not a number", pair.as_str())))
    }

    fn percent(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<f64>> {
        let text = pair.as_str().trim_end_matches('%');
        text.parse()
            .map(|value| Spanned::new(value, self.span(pair)))
            .map_err(|_| self.invalid(pair, format!("`{}` is not a percentage", pair.as_str())))
    }

    #[allow(clippy::unnecessary_wraps)]
    fn duration(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<Duration>> {
        let duration = parse_duration(pair.as_str()).unwrap_or_else(|| {
            self.value_errors.borrow_mut().push(
                self.invalid(pair, format!("`{}` is too long a duration", pair.as_str()))
                    .label("too long"),
            );
            Duration::days(1)
        });
        Ok(Spanned::new(duration, self.span(pair)))
    }

    // Same shape as the other value readers, so call sites read alike.
    #[allow(clippy::unnecessary_wraps)]
    fn time(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<Time>> {
        let time = parse_time(pair.as_str()).unwrap_or_else(|| {
            self.value_errors.borrow_mut().push(
                self.invalid(pair, format!("`{}` is not a time of day", pair.as_str()))
                    .label("not a time")
                    .help("write hours 00-23 and minutes 00-59, such as `09:00` or `21:30`"),
            );
            Time { hour: 0, minute: 0 }
        });
        Ok(Spanned::new(time, self.span(pair)))
    }

    #[allow(clippy::unnecessary_wraps)]
    fn date(&self, pair: &Pair<'_, Rule>) -> Built<Spanned<chrono::NaiveDate>> {
        let date =
            chrono::NaiveDate::parse_from_str(pair.as_str(), "%Y-%m-%d").unwrap_or_else(|_| {
                self.value_errors.borrow_mut().push(
                    self.invalid(
                        pair,
                        format!("`{}` is not a date in the calendar", pair.as_str()),
                    )
                    .label("no such date")
                    .help("write year-month-day, such as `2026-12-24`"),
                );
                chrono::NaiveDate::MIN
            });
        Ok(Spanned::new(date, self.span(pair)))
    }

    fn weekday(&self, pair: &Pair<'_, Rule>) -> Spanned<chrono::Weekday> {
        let weekday = pair.as_str().parse().unwrap_or(chrono::Weekday::Mon);
        Spanned::new(weekday, self.span(pair))
    }

    fn expr(&self, pair: Pair<'_, Rule>) -> Built<Expr> {
        let operators = pair
            .clone()
            .into_inner()
            .flatten()
            .filter(|inner| is_operator(inner.as_rule()))
            .count();
        if operators > MAX_OPERATORS {
            return Err(Diagnostic::new(
                Code::TooLarge,
                self.span(&pair),
                format!("an expression with {operators} operators, more than {MAX_OPERATORS}"),
            )
            .label("too long")
            .help("name parts of it as segments (`segment name = ...`) and combine those"));
        }
        let pratt = PrattParser::new()
            .op(Op::infix(Rule::op_or, Assoc::Left))
            .op(Op::infix(Rule::op_and, Assoc::Left))
            .op(Op::prefix(Rule::op_not))
            .op(Op::infix(Rule::op_eq, Assoc::Left)
                | Op::infix(Rule::op_ne, Assoc::Left)
                | Op::infix(Rule::op_lt, Assoc::Left)
                | Op::infix(Rule::op_le, Assoc::Left)
                | Op::infix(Rule::op_gt, Assoc::Left)
                | Op::infix(Rule::op_ge, Assoc::Left)
                | Op::infix(Rule::op_in, Assoc::Left)
                | Op::infix(Rule::op_not_in, Assoc::Left)
                | Op::infix(Rule::op_contains, Assoc::Left)
                | Op::infix(Rule::op_contains_any, Assoc::Left)
                | Op::infix(Rule::op_starts_with, Assoc::Left)
                | Op::infix(Rule::op_ends_with, Assoc::Left));
        pratt
            .map_primary(|primary| self.operand(primary))
            .map_prefix(|op, operand| {
                let operand = operand?;
                let span = self.span(&op).to(operand.span);
                Ok(Expr {
                    kind: ExprKind::Not(Box::new(operand)),
                    span,
                })
            })
            .map_infix(|left, op, right| {
                let (left, right) = (left?, right?);
                let operator = match op.as_rule() {
                    Rule::op_or => BinaryOp::Or,
                    Rule::op_and => BinaryOp::And,
                    Rule::op_eq => BinaryOp::Eq,
                    Rule::op_ne => BinaryOp::Ne,
                    Rule::op_lt => BinaryOp::Lt,
                    Rule::op_le => BinaryOp::Le,
                    Rule::op_gt => BinaryOp::Gt,
                    Rule::op_ge => BinaryOp::Ge,
                    Rule::op_in => BinaryOp::In,
                    Rule::op_not_in => BinaryOp::NotIn,
                    Rule::op_contains => BinaryOp::Contains,
                    Rule::op_contains_any => BinaryOp::ContainsAny,
                    Rule::op_starts_with => BinaryOp::StartsWith,
                    _ => BinaryOp::EndsWith,
                };
                let span = left.span.to(right.span);
                Ok(Expr {
                    kind: ExprKind::Binary {
                        op: Spanned::new(operator, self.span(&op)),
                        left: Box::new(left),
                        right: Box::new(right),
                    },
                    span,
                })
            })
            .parse(significant(pair.into_inner()))
    }

    fn operand(&self, pair: Pair<'_, Rule>) -> Built<Expr> {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::group => ExprKind::Group(Box::new(
                self.expr(next(&mut significant(pair.into_inner())))?,
            )),
            Rule::list => ExprKind::List(
                significant(pair.into_inner())
                    .map(|item| self.expr(item))
                    .collect::<Built<_>>()?,
            ),
            Rule::date => ExprKind::Date(self.date(&pair)?.node),
            Rule::time => ExprKind::Time(self.time(&pair)?.node),
            Rule::duration => ExprKind::Duration(self.duration(&pair)?.node),
            Rule::number => {
                let text = pair.as_str();
                let value = text
                    .replace('_', "")
                    .parse()
                    .map_err(|_| self.invalid(&pair, format!("`{text}` is not a number")))?;
                ExprKind::Number(value, text.to_string())
            }
            Rule::string => ExprKind::String(self.string(&pair)?.node),
            Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
            Rule::count => {
                let mut inner = significant(pair.into_inner());
                let event = self.string(&next(&mut inner))?;
                let mut filter = None;
                let mut within = None;
                for part in inner {
                    match part.as_rule() {
                        Rule::where_clause => filter = Some(Box::new(self.where_clause(part)?)),
                        _ => within = Some(self.duration(&part)?),
                    }
                }
                ExprKind::Count {
                    event,
                    filter,
                    within,
                }
            }
            Rule::call => {
                let mut inner = significant(pair.into_inner());
                let function = self.name(&next(&mut inner));
                let args = inner.map(|arg| self.expr(arg)).collect::<Built<_>>()?;
                ExprKind::Call { function, args }
            }
            _ => ExprKind::Path(
                significant(pair.into_inner())
                    .map(|part| self.name(&part))
                    .collect(),
            ),
        };
        Ok(Expr { kind, span })
    }
}

/// Keyword tokens carry no information the rule does not already give,
/// except `times` (kept by the formatter).
fn significant(pairs: Pairs<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pairs.filter(|pair| !is_keyword(pair.as_rule()))
}

/// The keyword rules come last in the grammar (see the test below).
fn is_keyword(rule: Rule) -> bool {
    rule > Rule::weekday && rule != Rule::kw_times
}

/// The grammar guarantees the child exists; an absent one means the grammar
/// and this builder disagree, which the parser tests catch.
fn next<'i>(pairs: &mut impl Iterator<Item = Pair<'i, Rule>>) -> Pair<'i, Rule> {
    pairs.next().expect("grammar guarantees this child")
}

fn channel_of(text: &str) -> Channel {
    match text {
        "sms" => Channel::Sms,
        "task" => Channel::Task,
        "webhook" => Channel::Webhook,
        _ => Channel::Email,
    }
}

/// `30d`, `1d12h`, `2w`, `90m` (minutes).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut minutes: u64 = 0;
    let mut days: u64 = 0;
    let mut number: u64 = 0;
    let mut seen_digit = false;
    for character in text.chars() {
        if let Some(digit) = character.to_digit(10) {
            number = number.checked_mul(10)?.checked_add(u64::from(digit))?;
            seen_digit = true;
            continue;
        }
        let (unit, calendar_days): (u64, u64) = match character {
            'w' => (7 * 24 * 60, 7),
            'd' => (24 * 60, 1),
            'h' => (60, 0),
            'm' => (1, 0),
            _ => return None,
        };
        if !seen_digit {
            return None;
        }
        minutes = minutes.checked_add(number.checked_mul(unit)?)?;
        days = days.checked_add(number.checked_mul(calendar_days)?)?;
        number = 0;
        seen_digit = false;
    }
    // Ten thousand years is more than any journey needs and keeps date
    // arithmetic far from overflow.
    let in_weeks =
        text.ends_with('w') && text.chars().filter(char::is_ascii_alphabetic).count() == 1;
    (!seen_digit && minutes <= 10_000 * 366 * 24 * 60).then_some(Duration {
        minutes,
        days,
        in_weeks,
    })
}

/// `09:00`
pub fn parse_time(text: &str) -> Option<Time> {
    let (hour, minute) = text.split_once(':')?;
    let (hour, minute) = (hour.parse().ok()?, minute.parse().ok()?);
    (hour < 24 && minute < 60 && text.len() <= 5).then_some(Time { hour, minute })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_rules_are_exactly_those_after_weekday() {
        let all = [
            Rule::weekday,
            Rule::kw_ab,
            Rule::kw_within,
            Rule::kw_window,
            Rule::kw_times,
            Rule::ident,
            Rule::string,
        ];
        for rule in all {
            let named_keyword = format!("{rule:?}").starts_with("kw_") && rule != Rule::kw_times;
            assert_eq!(is_keyword(rule), named_keyword, "{rule:?}");
        }
    }
}
