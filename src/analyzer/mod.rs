//! The analyzer: resolves names against the settings, checks types, lowers
//! each journey into its DAG and runs the checks on it. Every problem found
//! is collected; nothing stops at the first one.

mod checks;
mod lower;
mod types;

use std::collections::{BTreeMap, HashMap};

use crate::ast::{
    self, Channel, ClauseKind, Expr, Item, LimitKind, Reentry, Signal, Step, StepKind, Trigger,
};
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::journey::{CompiledJourney, Rules};
use crate::settings::{FieldType, Settings};
use crate::span::{FileId, Span, Spanned};

pub use checks::implies;
use checks::CapRule;
use types::{quoted_list, zero_duration, Names, Scope, Type, TypeChecker};

/// The most repetitions a `repeat` may unroll into.
pub const MAX_REPEAT: u64 = 100;
/// The most steps one journey may have once its repeats are unrolled.
pub const MAX_STEPS: u64 = 10_000;

/// What the analyzer produces for one project.
#[derive(Debug, Default)]
pub struct Analysis {
    pub journeys: Vec<CompiledJourney>,
    pub diagnostics: Vec<Diagnostic>,
    /// Every message step, for the template checks.
    pub messages: Vec<MessageUse>,
    /// The project's segments (their conditions) and scoring models, by
    /// name: what the runner evaluates. A name defined twice keeps its
    /// first definition (the second is an error).
    pub segments: BTreeMap<String, ast::Expr>,
    pub scores: BTreeMap<String, ast::ScoreModel>,
}

/// A message step and what its template may refer to.
#[derive(Clone, Debug)]
pub struct MessageUse {
    pub journey: String,
    pub title: Option<String>,
    pub message: ast::Message,
    /// The event `event.x` reads at this step, if there is one.
    pub event: Option<String>,
}

/// Analyzes every parsed file of a project together: segments and scores
/// declared in one file are visible in all.
pub fn analyze(settings: &Settings, files: &[(FileId, &ast::File)]) -> Analysis {
    analyze_with(settings, files, &Exempt::new())
}

/// Messages exempt from frequency caps: transactional templates, named by
/// channel and template.
pub type Exempt = std::collections::HashSet<(Channel, String)>;

/// [`analyze`], knowing which templates are transactional (the template
/// files say so), so the cap check leaves them out as the runner will.
pub fn analyze_with(
    settings: &Settings,
    files: &[(FileId, &ast::File)],
    exempt: &Exempt,
) -> Analysis {
    let mut diagnostics = Vec::new();
    let items: Vec<&Item> = files
        .iter()
        .flat_map(|(_, file)| file.items.iter())
        .collect();
    let mut journeys: BTreeMap<&str, &ast::Journey> = BTreeMap::new();
    let mut segments: BTreeMap<&str, &ast::Segment> = BTreeMap::new();
    let mut scores: BTreeMap<&str, &ast::ScoreModel> = BTreeMap::new();
    let mut first_seen: HashMap<(u8, &str), Span> = HashMap::new();
    for item in &items {
        let (kind, what) = match item {
            Item::Journey(_) => (0, "journey"),
            Item::Segment(_) => (1, "segment"),
            Item::Score(_) => (2, "score"),
        };
        let name = item.name();
        if let Some(first) = first_seen.get(&(kind, name.node.as_str())) {
            diagnostics.push(
                Diagnostic::new(
                    Code::DuplicateDefinition,
                    name.span,
                    format!("{what} `{}` is defined twice", name.node),
                )
                .label("second definition")
                .related(*first, "first defined here")
                .help(format!(
                    "rename one of them; {what} names are shared by the whole project"
                )),
            );
            continue;
        }
        first_seen.insert((kind, name.node.as_str()), name.span);
        match item {
            Item::Journey(journey) => {
                journeys.insert(&journey.name.node, journey);
            }
            Item::Segment(segment) => {
                segments.insert(&segment.name.node, segment);
            }
            Item::Score(score) => {
                scores.insert(&score.name.node, score);
            }
        }
    }

    let names = Names {
        settings,
        segments: segments.keys().copied().collect(),
        scores: scores.keys().copied().collect(),
    };
    let journey_names: Vec<&str> = journeys.keys().copied().collect();

    let mut segment_edges: BTreeMap<String, Vec<(String, Span)>> = BTreeMap::new();
    for segment in segments.values() {
        let mut checker = TypeChecker {
            names: &names,
            diagnostics: &mut diagnostics,
            segment_refs: Vec::new(),
        };
        checker.condition(&segment.condition, Scope::default());
        segment_edges.insert(segment.name.node.clone(), checker.segment_refs);
    }
    for (cycle, span) in checks::name_cycles(&segment_edges) {
        diagnostics.push(
            Diagnostic::new(
                Code::SegmentCycle,
                span,
                format!("these segments refer to each other: {}", cycle.join(" -> ")),
            )
            .label("refers back")
            .help("a segment cannot be defined in terms of itself"),
        );
    }
    for score in scores.values() {
        check_score(score, &names, &mut diagnostics);
    }

    let mut compiled = Vec::new();
    let mut messages = Vec::new();
    let mut handoffs: BTreeMap<String, Vec<(String, Span)>> = BTreeMap::new();
    for journey in journeys.values() {
        let mut analyzer = JourneyAnalyzer {
            names: &names,
            journey_names: &journey_names,
            diagnostics: &mut diagnostics,
            durations: Vec::new(),
            handoffs: Vec::new(),
            ab_names: HashMap::new(),
            messages: Vec::new(),
            exempt,
        };
        let result = analyzer.journey(journey);
        messages.extend(std::mem::take(&mut analyzer.messages).into_iter().map(
            |(message, event)| MessageUse {
                journey: journey.name.node.clone(),
                title: result.rules.title.clone(),
                message,
                event,
            },
        ));
        handoffs.insert(
            journey.name.node.clone(),
            std::mem::take(&mut analyzer.handoffs),
        );
        compiled.push(result);
    }
    for (cycle, span) in checks::name_cycles(&handoffs) {
        diagnostics.push(
            Diagnostic::new(
                Code::HandoffCycle,
                span,
                format!(
                    "these journeys hand contacts off in a loop: {}",
                    cycle.join(" -> ")
                ),
            )
            .label("hand-off closes the loop")
            .help("a contact would move between these journeys forever; end one of them instead"),
        );
    }
    Analysis {
        journeys: compiled,
        diagnostics,
        messages,
        segments: segments
            .iter()
            .map(|(name, segment)| ((*name).to_string(), segment.condition.clone()))
            .collect(),
        scores: scores
            .iter()
            .map(|(name, score)| ((*name).to_string(), (*score).clone()))
            .collect(),
    }
}

fn check_score(score: &ast::ScoreModel, names: &Names<'_>, diagnostics: &mut Vec<Diagnostic>) {
    let mut checker = TypeChecker {
        names,
        diagnostics,
        segment_refs: Vec::new(),
    };
    let mut decay: Option<Span> = None;
    for rule in &score.rules {
        match &rule.kind {
            ast::ScoreRuleKind::OnEvent { event, filter, .. } => {
                if checker.event(&event.node, event.span) {
                    if let Some(filter) = filter {
                        let scope = Scope {
                            event: None,
                            filter_event: Some(&event.node),
                            ..Scope::default()
                        };
                        checker.condition(filter, scope);
                    }
                }
            }
            ast::ScoreRuleKind::Silence { within, .. } => {
                if within.node.is_zero() {
                    checker.diagnostics.push(zero_duration(within.span));
                }
            }
            ast::ScoreRuleKind::When { condition, .. } => {
                checker.condition(condition, Scope::default());
            }
            ast::ScoreRuleKind::Decay { half_life } => {
                if half_life.node.is_zero() {
                    checker.diagnostics.push(zero_duration(half_life.span));
                }
                if let Some(first) = decay {
                    checker.diagnostics.push(
                        Diagnostic::new(Code::DuplicateClause, rule.span, "`decay` is given twice")
                            .label("second decay")
                            .related(first, "first given here"),
                    );
                }
                decay = Some(rule.span);
            }
        }
    }
}

struct JourneyAnalyzer<'a, 'd> {
    names: &'a Names<'a>,
    journey_names: &'a [&'a str],
    diagnostics: &'d mut Vec<Diagnostic>,
    /// Every duration written in the steps, to compare with the goal window.
    durations: Vec<Spanned<ast::Duration>>,
    /// Journeys this one hands contacts to.
    handoffs: Vec<(String, Span)>,
    ab_names: HashMap<String, Span>,
    /// Message steps with the event in scope at each.
    messages: Vec<(ast::Message, Option<String>)>,
    exempt: &'a Exempt,
}

impl JourneyAnalyzer<'_, '_> {
    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn checker(&mut self) -> TypeChecker<'_, '_> {
        TypeChecker {
            names: self.names,
            diagnostics: self.diagnostics,
            segment_refs: Vec::new(),
        }
    }

    fn settings(&self) -> &Settings {
        self.names.settings
    }

    fn journey(&mut self, journey: &ast::Journey) -> CompiledJourney {
        let mut rules = Rules::default();
        let mut once: HashMap<&'static str, Span> = HashMap::new();
        let mut rescues: Vec<(Signal, &ast::Name)> = Vec::new();
        let mut moves: Vec<(&ast::Name, &ast::Name)> = Vec::new();
        let entry_event = single_entry_event(journey);
        let scope = Scope {
            event: entry_event,
            filter_event: None,
            enrolment: true,
        };
        for clause in journey.clauses() {
            let keyword = clause.kind.keyword();
            if matches!(
                keyword,
                "title"
                    | "description"
                    | "audience"
                    | "reentry"
                    | "goal"
                    | "limits"
                    | "backfill"
                    | "priority"
            ) {
                if let Some(first) = once.get(keyword) {
                    self.report(
                        Diagnostic::new(
                            Code::DuplicateClause,
                            clause.span,
                            format!("`{keyword}` is given twice"),
                        )
                        .label(format!("second `{keyword}`"))
                        .related(*first, "first given here")
                        .help(format!("a journey has one `{keyword}`; merge the two")),
                    );
                    continue;
                }
                once.insert(keyword, clause.span);
            }
            match &clause.kind {
                ClauseKind::Title(title) => rules.title = Some(title.node.clone()),
                ClauseKind::Description(text) => rules.description = Some(text.node.clone()),
                ClauseKind::Audience(condition) => {
                    self.checker().condition(condition, Scope::default());
                    rules.audience = Some(condition.clone());
                }
                ClauseKind::Entry(trigger) => {
                    self.trigger(trigger);
                    rules.triggers.push(trigger.clone());
                }
                ClauseKind::Reentry(reentry) => {
                    if let Reentry::After(duration) = reentry {
                        if duration.node.is_zero() {
                            self.report(
                                zero_duration(duration.span)
                                    .help("write `reentry always` to let contacts back in at once"),
                            );
                        }
                    }
                    rules.reentry = Some(reentry.clone());
                }
                ClauseKind::Goal(goal) => {
                    self.signal(&goal.condition, scope);
                    if goal.within.node.is_zero() {
                        self.report(zero_duration(goal.within.span));
                    }
                    if let Some(actions) = &goal.then {
                        self.steps(actions, scope);
                    }
                    rules.goal = Some(goal.clone());
                }
                ClauseKind::Exit(signal) => {
                    self.signal(signal, scope);
                    rules.exits.push(signal.clone());
                }
                ClauseKind::Limits(limits) => {
                    self.limits(limits);
                    rules.limits.clone_from(limits);
                }
                ClauseKind::Rescue { signal, target } => {
                    self.signal(signal, scope);
                    rescues.push((signal.clone(), target));
                }
                ClauseKind::Moved { from, to } => moves.push((from, to)),
                ClauseKind::Backfill(duration) => {
                    if duration.node.is_zero() {
                        self.report(
                            zero_duration(duration.span)
                                .help("leave `backfill` out to take in only contacts whose trigger comes after the launch"),
                        );
                    }
                    rules.backfill = Some(duration.node);
                }
                ClauseKind::Priority(priority) => rules.priority = priority.node,
            }
        }
        if rules.triggers.is_empty() {
            self.report(
                Diagnostic::new(Code::MissingEntry, journey.name.span, format!("journey `{}` has no `entry`", journey.name.node))
                    .label("no contact can ever enter")
                    .help("add a trigger, for example `entry on stage \"dormant\"` or `entry on event \"signed_up\"`"),
            );
        }
        let steps: Vec<Step> = journey.steps().cloned().collect();
        if steps.is_empty() {
            self.report(
                Diagnostic::new(
                    Code::EmptyJourney,
                    journey.name.span,
                    format!("journey `{}` has no steps", journey.name.node),
                )
                .label("nothing happens to contacts")
                .help("add a message, a wait or an action after the clauses"),
            );
        }
        self.duplicate_labels(&steps);
        self.steps(&steps, scope);

        let size = lower::unrolled_size(&steps);
        if size > MAX_STEPS {
            self.report(
                Diagnostic::new(
                    Code::TooLarge,
                    journey.name.span,
                    format!(
                        "journey `{}` has {} steps once its repeats are unrolled, more than {MAX_STEPS}",
                        journey.name.node,
                        if size == u64::MAX { "too many".to_string() } else { size.to_string() }
                    ),
                )
                .label("too large to compile")
                .help("repeat fewer times, or move the repeated part into a journey of its own joined by `handoff`"),
            );
            let lowered = lower::Lowerer::new(self.diagnostics).lower_start(journey);
            return CompiledJourney::new(
                journey.name.node.clone(),
                journey.span,
                rules,
                lowered.graph,
                lowered.start,
            );
        }

        let reported_before = self.diagnostics.len();
        let lowered = lower::Lowerer::new(self.diagnostics).lower(journey);
        // A goto that leads nowhere leaves the steps after it unwired;
        // calling them unreachable would only repeat the error.
        let broken_jumps = self.diagnostics[reported_before..]
            .iter()
            .any(|diagnostic| {
                matches!(diagnostic.code, Code::UnknownLabel | Code::LabelOutOfScope)
            });
        let mut in_repeats = Vec::new();
        lower::labels_in_repeats(&steps, false, &mut in_repeats);
        for (signal, target) in rescues {
            match lowered.labels.get(&target.node) {
                Some(&node) => rules.rescues.push((signal, node)),
                None => {
                    let inside = in_repeats
                        .iter()
                        .any(|(label, inside)| *label == target.node && *inside);
                    let top: Vec<&str> = lowered.labels.keys().map(String::as_str).collect();
                    self.report(lower::Lowerer::unresolved_in(
                        &top, target, inside, "rescue",
                    ));
                }
            }
        }
        // `moved` names where contacts go from a step this version removed
        // or changed: a label, or any step's ID. Whether the old step is
        // gone is known only to the store, so `run` checks that side.
        for (from, to) in moves {
            let by_label = lowered.labels.get(&to.node).copied();
            let by_id = || {
                lowered
                    .graph
                    .node_indices()
                    .find(|&index| lowered.graph[index].id == to.node)
            };
            match by_label.or_else(by_id) {
                Some(node) => rules.moved.push((from.node.clone(), node)),
                None => {
                    let inside = in_repeats
                        .iter()
                        .any(|(label, inside)| *label == to.node && *inside);
                    let top: Vec<&str> = lowered.labels.keys().map(String::as_str).collect();
                    self.report(lower::Lowerer::unresolved_in(&top, to, inside, "moved"));
                }
            }
        }
        let compiled = CompiledJourney::new(
            journey.name.node.clone(),
            journey.span,
            rules,
            lowered.graph,
            lowered.start,
        );
        let acyclic = checks::cycles(&compiled, self.diagnostics);
        if acyclic && !broken_jumps {
            checks::unreachable(&compiled, self.diagnostics);
            let caps = self.caps(&compiled);
            checks::caps_always_defer(&compiled, &caps, self.exempt, self.diagnostics);
        }
        self.goal_window(&compiled);
        compiled
    }

    fn caps(&self, journey: &CompiledJourney) -> Vec<CapRule> {
        let mut caps: Vec<CapRule> = Channel::ALL
            .iter()
            .filter_map(|&channel| {
                self.settings().cap(channel).map(|cap| CapRule {
                    channel,
                    count: cap.count,
                    per: cap.per,
                    span: None,
                })
            })
            .collect();
        for limit in &journey.rules.limits {
            if let LimitKind::Cap {
                channel,
                count,
                per,
            } = &limit.kind
            {
                if count.node > 0 && !per.node.is_zero() {
                    caps.push(CapRule {
                        channel: channel.node,
                        count: count.node,
                        per: per.node,
                        span: Some(limit.span),
                    });
                }
            }
        }
        caps
    }

    fn goal_window(&mut self, journey: &CompiledJourney) {
        let Some(goal) = &journey.rules.goal else {
            return;
        };
        for duration in std::mem::take(&mut self.durations) {
            if duration.node > goal.within.node {
                self.report(
                    Diagnostic::new(
                        Code::BeyondGoalWindow,
                        duration.span,
                        format!("`{}` is longer than the goal window of {}", duration.node, goal.within.node),
                    )
                    .label("outlasts the goal")
                    .related(goal.within.span, "the goal window")
                    .help("contacts still here after the window can no longer convert; shorten the wait or widen the goal window"),
                );
            }
        }
    }

    fn trigger(&mut self, trigger: &Trigger) {
        match trigger {
            Trigger::Event { event, filter } => self.event_filter(event, filter.as_ref()),
            Trigger::Stage(stage) => self.stage(stage),
            Trigger::Tag(tag) => self.checker().tag(tag),
            Trigger::Daily { .. } | Trigger::Weekly { .. } | Trigger::Once { .. } => {}
            Trigger::Date { field, .. } => self.date_field(field, Scope::default()),
            Trigger::Holiday { holiday, .. } => self.holiday(holiday),
            Trigger::When(condition) => self.checker().condition(condition, Scope::default()),
        }
    }

    fn signal(&mut self, signal: &Signal, scope: Scope<'_>) {
        match signal {
            Signal::Event { event, filter } => self.event_filter(event, filter.as_ref()),
            Signal::Stage(stage) => self.stage(stage),
            Signal::Tag(tag) => self.checker().tag(tag),
            Signal::When(condition) => self.checker().condition(condition, scope),
        }
    }

    fn event_filter(&mut self, event: &ast::Name, filter: Option<&Expr>) {
        let known = self.checker().event(&event.node, event.span);
        if let (true, Some(filter)) = (known, filter) {
            let scope = Scope {
                event: None,
                filter_event: Some(&event.node),
                ..Scope::default()
            };
            self.checker().condition(filter, scope);
        }
    }

    fn stage(&mut self, stage: &Spanned<String>) {
        let stages = &self.settings().stages;
        if stages.contains(&stage.node) {
            return;
        }
        let help = did_you_mean(&stage.node, stages.iter().map(String::as_str))
            .unwrap_or_else(|| format!("add `{}` to `stages:` in journeyc.yaml", stage.node));
        self.report(
            Diagnostic::new(
                Code::UnknownStage,
                stage.span,
                format!("unknown stage `{}`", stage.node),
            )
            .label("not in the stage list")
            .help(help),
        );
    }

    fn holiday(&mut self, holiday: &Spanned<String>) {
        let holidays = &self.settings().holidays;
        if holidays.contains_key(&holiday.node) {
            return;
        }
        let help =
            did_you_mean(&holiday.node, holidays.keys().map(String::as_str)).unwrap_or_else(|| {
                format!("add `{}` under `holidays:` in journeyc.yaml", holiday.node)
            });
        self.report(
            Diagnostic::new(
                Code::UnknownHoliday,
                holiday.span,
                format!("unknown holiday `{}`", holiday.node),
            )
            .label("not in the holiday calendar")
            .help(help),
        );
    }

    /// A field used as a date: it must exist and hold a date.
    fn date_field(&mut self, field: &ast::Name, scope: Scope<'_>) {
        let expr = Expr {
            kind: ast::ExprKind::Path(vec![field.clone()]),
            span: field.span,
        };
        let found = self.checker().check(&expr, scope);
        if !matches!(found, Type::Date | Type::DateTime | Type::Unknown) {
            self.report(
                Diagnostic::new(
                    Code::TypeMismatch,
                    field.span,
                    format!("`{}` is {found}, not a date", field.node),
                )
                .label("not a date field")
                .help("use a field of type `date` or `datetime`"),
            );
        }
    }

    fn limits(&mut self, limits: &[ast::Limit]) {
        for limit in limits {
            match &limit.kind {
                LimitKind::Cap { count, per, .. } => {
                    if count.node == 0 {
                        self.report(
                            Diagnostic::new(
                                Code::InvalidValue,
                                count.span,
                                "a cap of zero sends nothing",
                            )
                            .label("zero")
                            .help("remove the message steps instead, or allow at least 1"),
                        );
                    }
                    if per.node.is_zero() {
                        self.report(zero_duration(per.span));
                    }
                }
                LimitKind::Quiet { from, to } | LimitKind::Window { from, to } => {
                    if from.node == to.node {
                        self.report(
                            Diagnostic::new(
                                Code::InvalidValue,
                                from.span.to(to.span),
                                "a time range that starts where it ends",
                            )
                            .label("empty range")
                            .help("write the start and end, such as `21:00..09:00`"),
                        );
                    }
                }
                LimitKind::Days { .. } => {}
            }
        }
    }

    fn duplicate_labels(&mut self, steps: &[Step]) {
        let mut all = Vec::new();
        collect_labels(steps, &mut all);
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for label in &all {
            if let Some(first) = seen.get(label.node.as_str()) {
                self.report(
                    Diagnostic::new(
                        Code::DuplicateLabel,
                        label.span,
                        format!("label `{}` is used twice", label.node),
                    )
                    .label("second use")
                    .related(*first, "first used here")
                    .help("labels name one step each; rename one"),
                );
            } else {
                seen.insert(&label.node, label.span);
            }
        }
    }

    fn steps(&mut self, steps: &[Step], scope: Scope<'_>) {
        for step in steps {
            self.step(step, scope);
        }
    }

    fn step(&mut self, step: &Step, scope: Scope<'_>) {
        match &step.kind {
            StepKind::Message(message) => {
                self.message(message);
                self.messages
                    .push((message.clone(), scope.event.map(str::to_string)));
            }
            StepKind::WaitDuration(duration) => self.duration(duration),
            StepKind::WaitClock { .. } | StepKind::Goto(_) | StepKind::End => {}
            StepKind::WaitDate { offset, date, .. } => {
                if let Some((duration, _)) = offset {
                    self.duration(duration);
                }
                match date {
                    ast::DateRef::Field(field) => self.date_field(field, scope),
                    ast::DateRef::Holiday(holiday) => self.holiday(holiday),
                    ast::DateRef::Literal(_) => {}
                }
            }
            StepKind::WaitEvent {
                timeout,
                event,
                filter,
                got,
                on_timeout,
                ..
            } => {
                self.duration(timeout);
                self.event_filter(event, filter.as_ref());
                if let Some(got) = got {
                    let got_scope = Scope {
                        event: Some(&event.node),
                        filter_event: None,
                        enrolment: true,
                    };
                    self.steps(&got.steps, got_scope);
                }
                if let Some(on_timeout) = on_timeout {
                    self.steps(&on_timeout.steps, scope);
                }
            }
            StepKind::Split {
                branches,
                otherwise,
            } => {
                for branch in branches {
                    self.checker().condition(&branch.condition, scope);
                    self.steps(&branch.body.steps, scope);
                }
                checks::shadowed_branches(branches, self.diagnostics);
                match otherwise {
                    Some(block) => self.steps(&block.steps, scope),
                    None => {
                        let keyword = Span {
                            end: step.kind_span.start + 5,
                            ..step.kind_span
                        };
                        self.report(
                            Diagnostic::new(Code::FallThrough, keyword, "contacts matching no branch fall through this split")
                                .label("no `else`")
                                .help("add `else { ... }` (it may be empty: `else {}`) to say what happens to everyone else"),
                        );
                    }
                }
            }
            StepKind::Ab {
                name,
                variants,
                holdout,
            } => {
                if let Some(first) = self.ab_names.insert(name.node.clone(), name.span) {
                    self.report(
                        Diagnostic::new(
                            Code::InvalidValue,
                            name.span,
                            format!("A/B test `{}` is named twice", name.node),
                        )
                        .label("second use")
                        .related(first, "first used here")
                        .help("the name keys each contact's assignment; give every test its own"),
                    );
                }
                let mut seen: HashMap<&str, Span> = HashMap::new();
                let mut total = 0.0;
                for variant in variants {
                    total += variant.weight.node;
                    if let Some(first) = seen.insert(&variant.name.node, variant.name.span) {
                        self.report(
                            Diagnostic::new(
                                Code::InvalidValue,
                                variant.name.span,
                                format!("variant `{}` is named twice", variant.name.node),
                            )
                            .label("second use")
                            .related(first, "first used here"),
                        );
                    }
                    if variant.weight.node <= 0.0 {
                        self.report(
                            Diagnostic::new(
                                Code::AbWeights,
                                variant.weight.span,
                                "a variant needs a share above 0%",
                            )
                            .label("no contact would get it"),
                        );
                    }
                    self.steps(&variant.body.steps, scope);
                }
                total += holdout.as_ref().map_or(0.0, |holdout| holdout.node);
                if (total - 100.0).abs() > 1e-9 {
                    let holdout_text = if holdout.is_some() {
                        " and the holdout"
                    } else {
                        ""
                    };
                    self.report(
                        Diagnostic::new(
                            Code::AbWeights,
                            name.span,
                            format!(
                                "the variants{holdout_text} of `{}` add up to {}%, not 100%",
                                name.node,
                                crate::ast::print::number(total)
                            ),
                        )
                        .label(format!("{}%", crate::ast::print::number(total)))
                        .help("make the shares add up to 100%"),
                    );
                }
            }
            StepKind::Repeat {
                count, every, body, ..
            } => {
                if count.node == 0 || count.node > MAX_REPEAT {
                    self.report(
                        Diagnostic::new(Code::RepeatCount, count.span, format!("`repeat {}` is out of range", count.node))
                            .label(format!("must be 1 to {MAX_REPEAT}"))
                            .help("repeat between 1 and 100 times; a repeat is unrolled when the journey is compiled"),
                    );
                }
                if count.node > 1 {
                    self.duration(every);
                }
                self.steps(&body.steps, scope);
            }
            StepKind::Tag(tag) | StepKind::Untag(tag) => self.checker().tag(tag),
            StepKind::SetField { field, value } => self.set_field(field, value, scope),
            StepKind::Stage(stage) => self.stage(stage),
            StepKind::Score { model, .. } => {
                if !self.names.scores.contains(&model.node.as_str()) {
                    let help = did_you_mean(&model.node, self.names.scores.iter().copied())
                        .unwrap_or_else(|| {
                            format!("declare it with `score {} {{ ... }}`", model.node)
                        });
                    self.report(
                        Diagnostic::new(
                            Code::UnknownScore,
                            model.span,
                            format!("unknown scoring model `{}`", model.node),
                        )
                        .label("no such scoring model")
                        .help(help),
                    );
                }
            }
            StepKind::Handoff(journey) => {
                if self.journey_names.contains(&journey.node.as_str()) {
                    self.handoffs.push((journey.node.clone(), step.kind_span));
                } else {
                    let help = did_you_mean(&journey.node, self.journey_names.iter().copied())
                        .unwrap_or_else(|| "hand off to a journey of this project".to_string());
                    self.report(
                        Diagnostic::new(
                            Code::UnknownJourney,
                            journey.span,
                            format!("unknown journey `{}`", journey.node),
                        )
                        .label("no such journey")
                        .help(help),
                    );
                }
            }
        }
    }

    fn duration(&mut self, duration: &Spanned<ast::Duration>) {
        if duration.node.is_zero() {
            self.report(zero_duration(duration.span));
        } else {
            self.durations.push(duration.clone());
        }
    }

    fn message(&mut self, message: &ast::Message) {
        if let Some(expires) = &message.expires {
            self.duration(expires);
        }
        if let Some(due) = &message.due {
            if due.node.is_zero() {
                self.report(zero_duration(due.span));
            }
        }
        let channel = message.channel;
        if !self.settings().channels.configured(channel) {
            self.report(
                Diagnostic::new(
                    Code::UnknownChannel,
                    message.template.span,
                    format!("the `{channel}` channel is not configured"),
                )
                .label(format!("{channel} has nowhere to go"))
                .help(format!(
                    "add `{channel}:` under `channels:` in journeyc.yaml"
                )),
            );
        }
        if let Some(endpoint) = &message.endpoint {
            let webhooks = &self.settings().webhooks;
            if !webhooks.contains_key(&endpoint.node) {
                let help = did_you_mean(&endpoint.node, webhooks.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        format!(
                            "add `{}: {{ url_env: ... }}` under `webhooks:` in journeyc.yaml",
                            endpoint.node
                        )
                    });
                self.report(
                    Diagnostic::new(
                        Code::UnknownChannel,
                        endpoint.span,
                        format!("unknown webhook `{}`", endpoint.node),
                    )
                    .label("not under `webhooks:`")
                    .help(help),
                );
            }
        }
        if let Some(ast::Assignee::Field(field)) = &message.assignee {
            let expr = Expr {
                kind: ast::ExprKind::Path(vec![field.clone()]),
                span: field.span,
            };
            let found = self.checker().check(&expr, Scope::default());
            if !matches!(found, Type::String | Type::Enum(_) | Type::Unknown) {
                self.report(
                    Diagnostic::new(Code::TypeMismatch, field.span, format!("`{}` is {found}, not a person", field.node))
                        .label("not an assignee")
                        .help("name a text field holding the owner's address, or write the address in quotes"),
                );
            }
        }
        if message.template.node.trim().is_empty() {
            self.report(
                Diagnostic::new(
                    Code::InvalidValue,
                    message.template.span,
                    "the message names no template",
                )
                .label("empty")
                .help("write the template's name, such as `\"winback/monthly\"`"),
            );
        }
    }

    fn set_field(&mut self, field: &ast::Name, value: &Expr, scope: Scope<'_>) {
        let settings = self.settings();
        let builtin = crate::settings::BUILTIN_FIELDS
            .iter()
            .any(|(name, _, _)| *name == field.node);
        if field.node == "stage" || builtin && matches!(field.node.as_str(), "id" | "created_at") {
            let help = if field.node == "stage" {
                "use the action `stage \"name\"`".to_string()
            } else {
                format!("`{}` is kept by journeyc", field.node)
            };
            self.report(
                Diagnostic::new(
                    Code::InvalidValue,
                    field.span,
                    format!("`{}` cannot be set", field.node),
                )
                .label("read-only here")
                .help(help),
            );
            return;
        }
        let Some(spec) = settings.field(&field.node) else {
            let expr = Expr {
                kind: ast::ExprKind::Path(vec![field.clone()]),
                span: field.span,
            };
            self.checker().check(&expr, Scope::default());
            self.checker().check(value, scope);
            return;
        };
        let expected = Type::of_field(&spec.field_type);
        let found = self.checker().check(value, scope);
        let fits = match (&expected, &found) {
            (_, Type::Unknown) => true,
            (Type::String | Type::Enum(_), Type::String | Type::Enum(_)) => true,
            (Type::Date | Type::DateTime, Type::Date | Type::DateTime) => true,
            (left, right) => left == right,
        };
        if !fits {
            self.report(
                Diagnostic::new(
                    Code::TypeMismatch,
                    value.span,
                    format!("`{}` holds {expected}, not {found}", field.node),
                )
                .label(format!("this is {found}")),
            );
        }
        if let (FieldType::Enum(values), ast::ExprKind::String(text)) =
            (&spec.field_type, &value.kind)
        {
            if !values.contains(text) {
                let help = did_you_mean(text, values.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("the values are {}", quoted_list(values)));
                self.report(
                    Diagnostic::new(
                        Code::InvalidValue,
                        value.span,
                        format!("unknown value `{text}` for `{}`", field.node),
                    )
                    .label("not one of the values")
                    .help(help),
                );
            }
        }
    }
}

fn collect_labels<'a>(steps: &'a [Step], out: &mut Vec<&'a ast::Name>) {
    for step in steps {
        if let Some(label) = &step.label {
            out.push(label);
        }
        for block in lower::child_blocks(&step.kind) {
            collect_labels(&block.steps, out);
        }
    }
}

/// The event whose properties `event.x` reads: defined when every entry
/// trigger is the same event.
fn single_entry_event(journey: &ast::Journey) -> Option<&str> {
    let mut event = None;
    for clause in journey.clauses() {
        if let ClauseKind::Entry(trigger) = &clause.kind {
            match trigger {
                Trigger::Event { event: name, .. }
                    if event.is_none_or(|seen| seen == name.node.as_str()) =>
                {
                    event = Some(name.node.as_str());
                }
                _ => return None,
            }
        }
    }
    event
}
