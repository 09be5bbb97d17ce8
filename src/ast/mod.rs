//! The syntax tree of journey files, as written, with a span on every node.
//! `parser.rs` builds it, `format.rs` prints it back, `analyzer` checks and
//! lowers it.

use crate::span::{Span, Spanned};

pub mod print;

pub type Name = Spanned<String>;

/// One `.journey` file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Item {
    Journey(Journey),
    Segment(Segment),
    Score(ScoreModel),
}

impl Item {
    pub fn name(&self) -> &Name {
        match self {
            Item::Journey(journey) => &journey.name,
            Item::Segment(segment) => &segment.name,
            Item::Score(score) => &score.name,
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Item::Journey(journey) => journey.span,
            Item::Segment(segment) => segment.span,
            Item::Score(score) => score.span,
        }
    }
}

/// `segment NAME = EXPR`: a reusable audience condition.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Segment {
    pub name: Name,
    pub condition: Expr,
    pub span: Span,
}

/// `score NAME { ... }`: a scoring model shared by all journeys.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScoreModel {
    pub name: Name,
    pub rules: Vec<ScoreRule>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum ScoreRuleKind {
    /// `on event "x" [where ...] +10`
    OnEvent {
        event: Name,
        filter: Option<Expr>,
        points: Spanned<f64>,
    },
    /// `no event within 30d -30`
    Silence {
        within: Spanned<Duration>,
        points: Spanned<f64>,
    },
    /// `when EXPR +20` (fit scoring on contact fields)
    When {
        condition: Expr,
        points: Spanned<f64>,
    },
    /// `decay half_life 30d`
    Decay { half_life: Spanned<Duration> },
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScoreRule {
    pub kind: ScoreRuleKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Journey {
    pub name: Name,
    /// Clauses and steps in the order they were written.
    pub members: Vec<Member>,
    pub span: Span,
    /// Where the closing brace is, so comments before it stay inside.
    pub close: Span,
}

impl Journey {
    pub fn clauses(&self) -> impl Iterator<Item = &Clause> {
        self.members.iter().filter_map(|member| match member {
            Member::Clause(clause) => Some(clause),
            Member::Step(_) => None,
        })
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.members.iter().filter_map(|member| match member {
            Member::Step(step) => Some(step),
            Member::Clause(_) => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Member {
    Clause(Clause),
    Step(Step),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Clause {
    pub kind: ClauseKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum ClauseKind {
    Title(Spanned<String>),
    Description(Spanned<String>),
    Audience(Expr),
    Entry(Trigger),
    Reentry(Reentry),
    Goal(Goal),
    Exit(Signal),
    Limits(Vec<Limit>),
    Rescue {
        signal: Signal,
        target: Name,
    },
    /// `moved "old step ID" -> label`: where contacts resting at a step
    /// that a new version removed or changed go. Either side is a label or
    /// a quoted step ID.
    Moved {
        from: Spanned<String>,
        to: Spanned<String>,
    },
    /// `backfill 7d`: at its launch, the journey also takes in contacts
    /// whose trigger happened up to this long before.
    Backfill(Spanned<Duration>),
    /// `priority 10`: when journeys compete for a contact's cap at the same
    /// instant, the higher priority goes first (default 0).
    Priority(Spanned<u64>),
}

impl ClauseKind {
    /// The keyword that starts the clause.
    pub fn keyword(&self) -> &'static str {
        match self {
            ClauseKind::Title(_) => "title",
            ClauseKind::Description(_) => "description",
            ClauseKind::Audience(_) => "audience",
            ClauseKind::Entry(_) => "entry",
            ClauseKind::Reentry(_) => "reentry",
            ClauseKind::Goal(_) => "goal",
            ClauseKind::Exit(_) => "exit",
            ClauseKind::Limits(_) => "limits",
            ClauseKind::Rescue { .. } => "rescue",
            ClauseKind::Moved { .. } => "moved",
            ClauseKind::Backfill(_) => "backfill",
            ClauseKind::Priority(_) => "priority",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Trigger {
    /// `on event "x" [where ...]`
    Event { event: Name, filter: Option<Expr> },
    /// `on stage "x"`: the contact entered that stage.
    Stage(Name),
    /// `on tag "x"`: the tag was added.
    Tag(Name),
    /// `on date birthday [at 09:00]`: every year on a date field.
    Date {
        field: Name,
        at: Option<Spanned<Time>>,
    },
    /// `on holiday "mid_autumn" [at 09:00]`
    Holiday {
        holiday: Name,
        at: Option<Spanned<Time>>,
    },
    /// `daily at 09:00`
    Daily { at: Spanned<Time> },
    /// `every monday at 09:00`
    Weekly {
        weekday: Spanned<chrono::Weekday>,
        at: Spanned<Time>,
    },
    /// `once 2026-12-01 at 09:00`
    Once {
        date: Spanned<chrono::NaiveDate>,
        at: Spanned<Time>,
    },
    /// `when EXPR`: the condition became true.
    When(Expr),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Reentry {
    Never,
    Always,
    After(Spanned<Duration>),
}

/// What a goal, exit or rescue listens for.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Signal {
    Event { event: Name, filter: Option<Expr> },
    Stage(Name),
    Tag(Name),
    When(Expr),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Goal {
    pub condition: Signal,
    pub within: Spanned<Duration>,
    /// Actions to run on conversion; `None` when there is no `then`.
    pub then: Option<Vec<Step>>,
    /// Whether `then` used braces (kept by the formatter).
    pub then_braced: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum LimitKind {
    /// `email 1 per 30d`
    Cap {
        channel: Spanned<Channel>,
        count: Spanned<u64>,
        per: Spanned<Duration>,
    },
    /// `quiet 21:00..09:00`
    Quiet {
        from: Spanned<Time>,
        to: Spanned<Time>,
    },
    /// `window 09:00..18:00`
    Window {
        from: Spanned<Time>,
        to: Spanned<Time>,
    },
    /// `days monday..friday`
    Days {
        from: Spanned<chrono::Weekday>,
        to: Spanned<chrono::Weekday>,
    },
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Task,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Email,
        Channel::Sms,
        Channel::Task,
        Channel::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Task => "task",
            Channel::Webhook => "webhook",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A duration as written (`30d`, `1d12h`, `2w`, `36h`). Days and weeks
/// are calendar days in the contact's timezone (`1d` is the same clock
/// time the next day, 23 or 25 hours across a DST change); hours and
/// minutes are elapsed time. `minutes` is the whole length with a day
/// counted as 24 hours, which is what comparisons and checks use.
/// Equality and order look at that length only.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Duration {
    pub minutes: u64,
    /// How many of the minutes were written as days or weeks.
    pub days: u64,
    /// Written in whole weeks (`2w`), and printed so again.
    pub in_weeks: bool,
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.minutes == other.minutes
    }
}

impl Eq for Duration {}

impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Duration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.minutes.cmp(&other.minutes)
    }
}

impl std::hash::Hash for Duration {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.minutes.hash(state);
    }
}

impl Duration {
    pub const DAY: u64 = 24 * 60;
    pub const WEEK: u64 = 7 * 24 * 60;

    /// Elapsed minutes (no calendar days).
    pub fn from_minutes(minutes: u64) -> Self {
        Duration {
            minutes,
            days: 0,
            in_weeks: false,
        }
    }

    /// A length in minutes, shown in whole days where it has them (for
    /// messages about sums of durations: `2d`, not `48h`).
    pub fn from_length(minutes: u64) -> Self {
        Duration {
            minutes,
            days: minutes / Self::DAY,
            in_weeks: false,
        }
    }

    /// Calendar days.
    pub fn days(days: u64) -> Self {
        Duration {
            minutes: days.saturating_mul(Self::DAY),
            days,
            in_weeks: false,
        }
    }

    pub fn is_zero(self) -> bool {
        self.minutes == 0
    }

    /// The part after the calendar days, in minutes (`1d12h`: 720).
    pub fn elapsed_minutes(self) -> u64 {
        self.minutes - self.days.saturating_mul(Self::DAY).min(self.minutes)
    }
}

impl std::fmt::Display for Duration {
    /// The canonical spelling: days, then hours and minutes as written
    /// (`1d12h` stays `1d12h`, `36h` stays `36h`: they differ across a DST
    /// change); weeks only where the author wrote whole weeks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.minutes == 0 {
            return f.write_str("0d");
        }
        if self.in_weeks && self.days.is_multiple_of(7) && self.elapsed_minutes() == 0 {
            return write!(f, "{}w", self.days / 7);
        }
        if self.days > 0 {
            write!(f, "{}d", self.days)?;
        }
        let rest = self.elapsed_minutes();
        let (hours, minutes) = (rest / 60, rest % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        Ok(())
    }
}

/// A wall-clock time of day, `HH:MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Time {
    pub hour: u32,
    pub minute: u32,
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Step {
    pub label: Option<Name>,
    pub kind: StepKind,
    /// The whole step, label included.
    pub span: Span,
    /// The step without its label: where diagnostics about it point.
    pub kind_span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Message {
    pub channel: Channel,
    /// Template name (`"winback/vip"`); for a task written inline, its text.
    pub template: Spanned<String>,
    /// `task owner template "tasks/call"` rather than inline text.
    pub task_template: bool,
    /// Who gets a task: a contact field (`owner`) or a fixed address.
    pub assignee: Option<Assignee>,
    /// The configured endpoint of a webhook.
    pub endpoint: Option<Name>,
    pub expires: Option<Spanned<Duration>>,
    pub due: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Assignee {
    Field(Name),
    Fixed(Spanned<String>),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum StepKind {
    Message(Message),
    /// `wait 3d`
    WaitDuration(Spanned<Duration>),
    /// `wait until [monday|weekday] 09:00`
    WaitClock {
        day: Option<Spanned<DayFilter>>,
        at: Spanned<Time>,
    },
    /// `wait until [3d before] birthday [at 09:00]`
    WaitDate {
        offset: Option<(Spanned<Duration>, Direction)>,
        date: DateRef,
        at: Option<Spanned<Time>>,
    },
    /// `wait 7d for event "x" [where ...] { got {...} timeout {...} }`
    WaitEvent {
        timeout: Spanned<Duration>,
        event: Name,
        filter: Option<Expr>,
        got: Option<Block>,
        on_timeout: Option<Block>,
        /// Whether the outcome braces were written at all.
        has_outcomes: bool,
    },
    Split {
        branches: Vec<Branch>,
        otherwise: Option<Block>,
    },
    Ab {
        name: Name,
        variants: Vec<Variant>,
        holdout: Option<Spanned<f64>>,
    },
    Repeat {
        count: Spanned<u64>,
        every: Spanned<Duration>,
        body: Block,
        /// Whether `times` was written (kept by the formatter).
        times: bool,
    },
    Tag(Spanned<String>),
    Untag(Spanned<String>),
    SetField {
        field: Name,
        value: Expr,
    },
    Stage(Spanned<String>),
    Score {
        model: Name,
        points: Spanned<f64>,
    },
    Handoff(Name),
    Goto(Name),
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DayFilter {
    Weekday(chrono::Weekday),
    /// Any of Monday to Friday.
    Workday,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    Before,
    After,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum DateRef {
    Literal(Spanned<chrono::NaiveDate>),
    Holiday(Name),
    Field(Name),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Block {
    pub steps: Vec<Step>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Branch {
    pub condition: Expr,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Variant {
    pub name: Name,
    pub weight: Spanned<f64>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Contains,
    ContainsAny,
    StartsWith,
    EndsWith,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::NotIn => "not in",
            BinaryOp::Contains => "contains",
            BinaryOp::ContainsAny => "contains any",
            BinaryOp::StartsWith => "starts_with",
            BinaryOp::EndsWith => "ends_with",
        }
    }

    /// Binding strength: `or` < `and` < `not` < comparisons.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            _ => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum ExprKind {
    Bool(bool),
    /// The number and the text it was written as (`100_000`).
    Number(f64, String),
    String(String),
    Date(chrono::NaiveDate),
    Time(Time),
    Duration(Duration),
    List(Vec<Expr>),
    /// `lifetime_value`, `event.page`, `contact.first_name`
    Path(Vec<Name>),
    Call {
        function: Name,
        args: Vec<Expr>,
    },
    /// `count(event "x" [where ...] [within 30d])`
    Count {
        event: Name,
        filter: Option<Box<Expr>>,
        within: Option<Spanned<Duration>>,
    },
    Not(Box<Expr>),
    Binary {
        op: Spanned<BinaryOp>,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// Parentheses as written.
    Group(Box<Expr>),
}

/// A `#` comment, found by `parser::comments`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comment {
    pub text: String,
    pub span: Span,
    /// Whether code stands before it on the same line.
    pub trailing: bool,
}
