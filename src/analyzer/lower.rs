//! Lowers a journey's steps into its DAG: one node per step (repetitions of
//! a `repeat` unrolled), edges for sequence, branches and `goto`s.

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::ast::{self, Block, Step, StepKind};
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::journey::{Edge, EdgeKind, Node, NodeKind};
use crate::span::{Span, Spanned};

/// An edge that waits for the step after it to exist.
type Exit = (NodeIndex, EdgeKind);

/// A node's ID, and the positional ID (`split@1/when2/email@1`) that
/// journeyc gave the same node before IDs came from content: enrolments
/// stored under it are moved to the new one.
#[derive(Clone, Debug, Default)]
struct Id {
    id: String,
    legacy: String,
}

impl Id {
    fn new(id: impl Into<String>, legacy: impl Into<String>) -> Id {
        Id {
            id: id.into(),
            legacy: legacy.into(),
        }
    }

    /// `self` followed by the same text in both forms.
    fn then(&self, suffix: &str) -> Id {
        Id::new(
            format!("{}{suffix}", self.id),
            format!("{}{suffix}", self.legacy),
        )
    }
}

/// Label scopes: the journey is scope 0; every repetition of a `repeat`
/// opens a scope whose labels only its own steps can reach.
struct Scope {
    parent: Option<usize>,
    labels: HashMap<String, NodeIndex>,
}

struct PendingGoto {
    from: Vec<Exit>,
    target: ast::Name,
    scope: usize,
    span: Span,
}

pub struct Lowered {
    pub graph: DiGraph<Node, Edge>,
    pub start: NodeIndex,
    /// Labels reachable from the journey level (for `rescue`).
    pub labels: HashMap<String, NodeIndex>,
}

pub struct Lowerer<'d> {
    graph: DiGraph<Node, Edge>,
    scopes: Vec<Scope>,
    gotos: Vec<PendingGoto>,
    diagnostics: &'d mut Vec<Diagnostic>,
}

impl<'d> Lowerer<'d> {
    pub fn new(diagnostics: &'d mut Vec<Diagnostic>) -> Self {
        Lowerer {
            graph: DiGraph::new(),
            scopes: vec![Scope {
                parent: None,
                labels: HashMap::new(),
            }],
            gotos: Vec::new(),
            diagnostics,
        }
    }

    pub fn lower(mut self, journey: &ast::Journey) -> Lowered {
        let start = self.add(
            &Id::new("@start", "@start"),
            NodeKind::Start,
            journey.name.span,
        );
        let steps: Vec<&Step> = journey.steps().collect();
        let root = Id::default();
        let exits = self.steps(&steps, &root, &root, 0, vec![(start, EdgeKind::Next)]);
        if !exits.is_empty() {
            let end = self.add(&Id::new("@end", "@end"), NodeKind::End, journey.close);
            self.connect(exits, end, None);
        }
        self.resolve_gotos();
        let labels = std::mem::take(&mut self.scopes[0].labels);
        Lowered {
            graph: self.graph,
            start,
            labels,
        }
    }

    /// Only the start: the journey is refused (too large to draw), and
    /// the commands that need its steps stop on that error.
    pub fn lower_start(mut self, journey: &ast::Journey) -> Lowered {
        let start = self.add(
            &Id::new("@start", "@start"),
            NodeKind::Start,
            journey.name.span,
        );
        Lowered {
            graph: self.graph,
            start,
            labels: HashMap::new(),
        }
    }

    fn add(&mut self, id: &Id, kind: NodeKind, span: Span) -> NodeIndex {
        let print = fingerprint(&kind);
        self.graph.add_node(Node {
            id: id.id.clone(),
            kind,
            span,
            print,
            legacy_id: id.legacy.clone(),
        })
    }

    fn connect(&mut self, exits: Vec<Exit>, to: NodeIndex, goto: Option<Span>) {
        for (from, kind) in exits {
            self.graph.add_edge(from, to, Edge { kind, goto });
        }
    }

    /// `prefix` places derived IDs (`split:4f1c2a/when2/`); `repetition` is
    /// the prefix of the enclosing repetition (`monthly#3/`), the only
    /// thing that qualifies a label, since labels are unique in a journey.
    ///
    /// An unlabeled step's ID is its kind and content (`wait:3d`,
    /// `email:winback/vip`) after the prefix, so adding or removing other
    /// steps never changes it. Two identical unlabeled steps in one block
    /// would share an ID: where contacts rest or messages are keyed
    /// (waits, messages, and the blocks that hold them) that is an error
    /// asking for a label; identical actions get `~2`, `~3`.
    fn steps(
        &mut self,
        steps: &[&Step],
        prefix: &Id,
        repetition: &Id,
        scope: usize,
        mut exits: Vec<Exit>,
    ) -> Vec<Exit> {
        let mut seen: HashMap<String, (Span, usize)> = HashMap::new();
        let mut ordinals: HashMap<&'static str, usize> = HashMap::new();
        for step in steps {
            let kind = kind_name(&step.kind);
            let ordinal = ordinals.entry(kind).or_default();
            *ordinal += 1;
            let legacy = match &step.label {
                Some(label) => format!("{}{}", repetition.legacy, label.node),
                None => format!("{}{kind}@{ordinal}", prefix.legacy),
            };
            let id = match &step.label {
                Some(label) => format!("{}{}", repetition.id, label.node),
                None => {
                    let content = step_content(&step.kind);
                    let entry = seen.entry(content.clone()).or_insert((step.kind_span, 0));
                    entry.1 += 1;
                    let (first, count) = *entry;
                    if count == 1 {
                        format!("{}{content}", prefix.id)
                    } else {
                        if keeps_identity(&step.kind) {
                            self.diagnostics.push(
                                Diagnostic::new(
                                    Code::IdenticalSteps,
                                    step.kind_span,
                                    format!("this block has two steps `{content}`"),
                                )
                                .label("the same as an earlier step")
                                .related(first, "the first one")
                                .help(format!(
                                    "give one of them a label, for example `second: {}`: contacts resting at a step keep their place across edits by its label or content",
                                    source_hint(&step.kind)
                                )),
                            );
                        }
                        format!("{}{content}~{count}", prefix.id)
                    }
                }
            };
            exits = self.step(step, &Id::new(id, legacy), repetition, scope, exits);
        }
        exits
    }

    fn block(
        &mut self,
        block: &Block,
        prefix: &Id,
        repetition: &Id,
        scope: usize,
        exits: Vec<Exit>,
    ) -> Vec<Exit> {
        let steps: Vec<&Step> = block.steps.iter().collect();
        self.steps(&steps, prefix, repetition, scope, exits)
    }

    fn label(&mut self, step: &Step, scope: usize, node: NodeIndex) {
        if let Some(label) = &step.label {
            // Duplicates were reported from the syntax tree; keep the first.
            self.scopes[scope]
                .labels
                .entry(label.node.clone())
                .or_insert(node);
        }
    }

    /// Adds a node for the step, wires `exits` into it, labels it.
    fn node(
        &mut self,
        step: &Step,
        id: &Id,
        scope: usize,
        kind: NodeKind,
        exits: Vec<Exit>,
    ) -> NodeIndex {
        let node = self.add(id, kind, step.kind_span);
        self.connect(exits, node, None);
        self.label(step, scope, node);
        node
    }

    fn step(
        &mut self,
        step: &Step,
        id: &Id,
        repetition: &Id,
        scope: usize,
        exits: Vec<Exit>,
    ) -> Vec<Exit> {
        let child = |suffix: &str| id.then(&format!("/{suffix}/"));
        match &step.kind {
            StepKind::Message(message) => {
                let node = self.node(step, id, scope, NodeKind::Message(message.clone()), exits);
                vec![(node, EdgeKind::Next)]
            }
            StepKind::WaitDuration(duration) => {
                let node = self.node(
                    step,
                    id,
                    scope,
                    NodeKind::WaitDuration(duration.node),
                    exits,
                );
                vec![(node, EdgeKind::Next)]
            }
            StepKind::WaitClock { day, at } => {
                let kind = NodeKind::WaitClock {
                    day: day.as_ref().map(|day| day.node),
                    at: at.node,
                };
                let node = self.node(step, id, scope, kind, exits);
                vec![(node, EdgeKind::Next)]
            }
            StepKind::WaitDate { offset, date, at } => {
                let kind = NodeKind::WaitDate {
                    offset: offset
                        .as_ref()
                        .map(|(duration, direction)| (duration.node, *direction)),
                    date: date.clone(),
                    at: at.as_ref().map(|at| at.node),
                };
                let node = self.node(step, id, scope, kind, exits);
                vec![(node, EdgeKind::Next)]
            }
            StepKind::WaitEvent {
                timeout,
                event,
                filter,
                got,
                on_timeout,
                ..
            } => {
                let kind = NodeKind::WaitEvent {
                    timeout: timeout.node,
                    event: event.node.clone(),
                    filter: filter.clone(),
                };
                let node = self.node(step, id, scope, kind, exits);
                let mut out = Vec::new();
                for (block, edge, name) in [
                    (got, EdgeKind::Got, "got"),
                    (on_timeout, EdgeKind::Timeout, "timeout"),
                ] {
                    let entry = vec![(node, edge)];
                    match block {
                        Some(block) => {
                            out.extend(self.block(block, &child(name), repetition, scope, entry));
                        }
                        None => out.extend(entry),
                    }
                }
                out
            }
            StepKind::Split {
                branches,
                otherwise,
            } => {
                let node = self.node(step, id, scope, NodeKind::Split, exits);
                let mut out = Vec::new();
                for (index, branch) in branches.iter().enumerate() {
                    let edge = EdgeKind::When {
                        index: index + 1,
                        condition: branch.condition.clone(),
                    };
                    out.extend(self.block(
                        &branch.body,
                        &child(&format!("when{}", index + 1)),
                        repetition,
                        scope,
                        vec![(node, edge)],
                    ));
                }
                match otherwise {
                    Some(block) => out.extend(self.block(
                        block,
                        &child("else"),
                        repetition,
                        scope,
                        vec![(node, EdgeKind::Else)],
                    )),
                    None => out.push((node, EdgeKind::Else)),
                }
                out
            }
            StepKind::Ab {
                name,
                variants,
                holdout,
            } => {
                let node = self.node(
                    step,
                    id,
                    scope,
                    NodeKind::Ab {
                        name: name.node.clone(),
                    },
                    exits,
                );
                let mut out = Vec::new();
                for variant in variants {
                    let edge = EdgeKind::Variant {
                        name: variant.name.node.clone(),
                        weight: variant.weight.node,
                    };
                    out.extend(self.block(
                        &variant.body,
                        &child(&variant.name.node),
                        repetition,
                        scope,
                        vec![(node, edge)],
                    ));
                }
                if let Some(holdout) = holdout {
                    let control = self.add(&id.then("/holdout"), NodeKind::Holdout, holdout.span);
                    self.connect(
                        vec![(
                            node,
                            EdgeKind::Holdout {
                                weight: holdout.node,
                            },
                        )],
                        control,
                        None,
                    );
                }
                out
            }
            StepKind::Repeat {
                count, every, body, ..
            } => {
                // Counts out of range were reported; draw at most the limit.
                let count = count.node.clamp(1, super::MAX_REPEAT);
                let mut out = exits;
                for count_index in 1..=count {
                    if count_index > 1 {
                        let pause = self.add(
                            &id.then(&format!("#{count_index}/every")),
                            NodeKind::WaitDuration(every.node),
                            every.span,
                        );
                        self.connect(out, pause, None);
                        out = vec![(pause, EdgeKind::Next)];
                    }
                    self.scopes.push(Scope {
                        parent: Some(scope),
                        labels: HashMap::new(),
                    });
                    let inner = self.scopes.len() - 1;
                    let first_new = self.graph.node_count();
                    let prefix = id.then(&format!("#{count_index}/"));
                    out = self.block(body, &prefix, &prefix, inner, out);
                    if count_index == 1 {
                        if let Some(first) =
                            (first_new < self.graph.node_count()).then(|| NodeIndex::new(first_new))
                        {
                            self.label(step, scope, first);
                        }
                    }
                }
                out
            }
            StepKind::Handoff(journey) => {
                self.node(
                    step,
                    id,
                    scope,
                    NodeKind::Handoff(journey.node.clone()),
                    exits,
                );
                Vec::new()
            }
            StepKind::End => {
                self.node(step, id, scope, NodeKind::End, exits);
                Vec::new()
            }
            StepKind::Goto(target) => {
                if step.label.is_some() {
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            step.span,
                            "a label cannot stand on `goto`",
                        )
                        .label("label on a jump")
                        .help(format!("label the step `{}` leads to instead", target.node)),
                    );
                }
                self.gotos.push(PendingGoto {
                    from: exits,
                    target: target.clone(),
                    scope,
                    span: step.kind_span,
                });
                Vec::new()
            }
            action => {
                let node = self.node(step, id, scope, NodeKind::Action(action.clone()), exits);
                vec![(node, EdgeKind::Next)]
            }
        }
    }

    fn lookup(&self, mut scope: usize, label: &str) -> Option<NodeIndex> {
        loop {
            if let Some(&node) = self.scopes[scope].labels.get(label) {
                return Some(node);
            }
            scope = self.scopes[scope].parent?;
        }
    }

    fn resolve_gotos(&mut self) {
        for goto in std::mem::take(&mut self.gotos) {
            if let Some(node) = self.lookup(goto.scope, &goto.target.node) {
                self.connect(goto.from, node, Some(goto.span));
                continue;
            }
            let diagnostic = self.unresolved(&goto.target, goto.scope, "goto");
            self.diagnostics.push(diagnostic);
        }
    }

    /// The error for a label that `goto` or `rescue` cannot reach.
    pub fn unresolved_in(
        labels_anywhere: &[&str],
        target: &Spanned<String>,
        inside_repeat: bool,
        what: &str,
    ) -> Diagnostic {
        if inside_repeat {
            return Diagnostic::new(Code::LabelOutOfScope, target.span, format!("`{}` is inside a `repeat`", target.node))
                .label(format!("{what} into a repeat"))
                .help("a label inside `repeat` is reachable only from the same repetition; label the `repeat` itself and jump there");
        }
        let help = did_you_mean(&target.node, labels_anywhere.iter().copied())
            .unwrap_or_else(|| format!("label a step: `{}: email \"...\"`", target.node));
        Diagnostic::new(
            Code::UnknownLabel,
            target.span,
            format!("no step is labelled `{}`", target.node),
        )
        .label("unknown label")
        .help(help)
    }

    fn unresolved(&self, target: &ast::Name, scope: usize, what: &str) -> Diagnostic {
        let mut visible = Vec::new();
        let mut anywhere = false;
        for (index, candidate_scope) in self.scopes.iter().enumerate() {
            let reachable = self.is_ancestor(index, scope);
            for label in candidate_scope.labels.keys() {
                if reachable {
                    visible.push(label.as_str());
                }
                if *label == target.node {
                    anywhere = true;
                }
            }
        }
        visible.sort_unstable();
        visible.dedup();
        Self::unresolved_in(&visible, target, anywhere, what)
    }

    fn is_ancestor(&self, candidate: usize, mut scope: usize) -> bool {
        loop {
            if candidate == scope {
                return true;
            }
            match self.scopes[scope].parent {
                Some(parent) => scope = parent,
                None => return false,
            }
        }
    }
}

/// Whether a label exists only inside a repeat (so `rescue` cannot reach it).
pub fn labels_in_repeats(steps: &[Step], inside: bool, out: &mut Vec<(String, bool)>) {
    for step in steps {
        if let Some(label) = &step.label {
            out.push((label.node.clone(), inside));
        }
        for block in child_blocks(&step.kind) {
            let nested = inside || matches!(step.kind, StepKind::Repeat { .. });
            labels_in_repeats(&block.steps, nested, out);
        }
    }
}

/// How many steps `steps` become once every `repeat` is unrolled (each
/// repeat also adds its pauses), saturating instead of overflowing, so a
/// journey too large to compile is refused before it is drawn.
pub fn unrolled_size(steps: &[Step]) -> u64 {
    steps.iter().fold(0u64, |total, step| {
        let inner = child_blocks(&step.kind).iter().fold(0u64, |sum, block| {
            sum.saturating_add(unrolled_size(&block.steps))
        });
        let own = match &step.kind {
            StepKind::Repeat { count, .. } => {
                let count = count.node.clamp(1, super::MAX_REPEAT);
                inner.saturating_add(1).saturating_mul(count)
            }
            _ => inner.saturating_add(1),
        };
        total.saturating_add(own)
    })
}

/// The blocks nested directly in a step.
pub fn child_blocks(kind: &StepKind) -> Vec<&Block> {
    match kind {
        StepKind::WaitEvent {
            got, on_timeout, ..
        } => got.iter().chain(on_timeout.iter()).collect(),
        StepKind::Split {
            branches,
            otherwise,
        } => branches
            .iter()
            .map(|branch| &branch.body)
            .chain(otherwise.iter())
            .collect(),
        StepKind::Ab { variants, .. } => variants.iter().map(|variant| &variant.body).collect(),
        StepKind::Repeat { body, .. } => vec![body],
        _ => Vec::new(),
    }
}

/// A step's kind and content as its ID shows them: `email:winback/vip`,
/// `wait:3d`, `wait:7d-for-email_opened`, `split:4f1c2a` (a digest of its
/// conditions), `ab:subject_line`, `repeat:every-30d`, `tag:replied`.
fn step_content(kind: &StepKind) -> String {
    match kind {
        StepKind::Message(message) => message_content(message),
        StepKind::WaitDuration(duration) => format!("wait:{}", duration.node),
        StepKind::WaitClock { day, at } => {
            let day = match day.as_ref().map(|day| day.node) {
                Some(ast::DayFilter::Weekday(weekday)) => {
                    format!("{}-", crate::ast::print::weekday_name(weekday))
                }
                Some(ast::DayFilter::Workday) => "weekday-".to_string(),
                None => String::new(),
            };
            format!("wait:until-{day}{}", at.node)
        }
        StepKind::WaitDate { offset, date, at } => {
            let mut text = String::from("wait:until-");
            if let Some((duration, direction)) = offset {
                let direction = match direction {
                    ast::Direction::Before => "before",
                    ast::Direction::After => "after",
                };
                let _ = write!(text, "{}-{direction}-", duration.node);
            }
            match date {
                ast::DateRef::Literal(date) => text.push_str(&date.node.to_string()),
                ast::DateRef::Holiday(name) => {
                    let _ = write!(text, "holiday-{}", name.node);
                }
                ast::DateRef::Field(name) => text.push_str(&name.node),
            }
            if let Some(at) = at {
                let _ = write!(text, "-{}", at.node);
            }
            text
        }
        StepKind::WaitEvent {
            timeout,
            event,
            filter,
            ..
        } => {
            let mut text = format!("wait:{}-for-{}", timeout.node, event.node);
            if let Some(filter) = filter {
                let _ = write!(text, "-{}", digest(&crate::ast::print::expr(filter)));
            }
            text
        }
        StepKind::Split {
            branches,
            otherwise,
        } => {
            let mut conditions: Vec<String> = branches
                .iter()
                .map(|branch| crate::ast::print::expr(&branch.condition))
                .collect();
            if otherwise.is_some() {
                conditions.push("else".into());
            }
            format!("split:{}", digest(&conditions.join("\n")))
        }
        StepKind::Ab { name, .. } => format!("ab:{}", name.node),
        StepKind::Repeat { every, .. } => format!("repeat:every-{}", every.node),
        StepKind::Tag(tag) => format!("tag:{}", tag.node),
        StepKind::Untag(tag) => format!("untag:{}", tag.node),
        StepKind::SetField { field, .. } => format!("set:{}", field.node),
        StepKind::Stage(stage) => format!("stage:{}", stage.node),
        StepKind::Score { model, points } => {
            let sign = if points.node >= 0.0 { "+" } else { "" };
            format!(
                "score:{}{sign}{}",
                model.node,
                crate::ast::print::number(points.node)
            )
        }
        StepKind::Handoff(journey) => format!("handoff:{}", journey.node),
        StepKind::Goto(target) => format!("goto:{}", target.node),
        StepKind::End => "end".to_string(),
    }
}

fn message_content(message: &ast::Message) -> String {
    match message.channel {
        ast::Channel::Task => {
            let assignee = match &message.assignee {
                Some(ast::Assignee::Field(name)) => name.node.clone(),
                Some(ast::Assignee::Fixed(address)) => address.node.clone(),
                None => String::new(),
            };
            let what = if message.task_template {
                message.template.node.clone()
            } else {
                digest(&message.template.node)
            };
            format!("task:{assignee}:{what}")
        }
        ast::Channel::Webhook => format!(
            "webhook:{}:{}",
            message
                .endpoint
                .as_ref()
                .map_or("", |endpoint| endpoint.node.as_str()),
            message.template.node
        ),
        channel => format!("{channel}:{}", message.template.node),
    }
}

/// Steps whose ID must stay unique without a label: contacts rest at
/// waits, outbox rows are keyed by messages, and splits, A/B tests and
/// repeats hold such steps in their blocks.
fn keeps_identity(kind: &StepKind) -> bool {
    matches!(
        kind,
        StepKind::Message(_)
            | StepKind::WaitDuration(_)
            | StepKind::WaitClock { .. }
            | StepKind::WaitDate { .. }
            | StepKind::WaitEvent { .. }
            | StepKind::Split { .. }
            | StepKind::Ab { .. }
            | StepKind::Repeat { .. }
    )
}

/// How a step starts in the source, for the label suggestion.
fn source_hint(kind: &StepKind) -> String {
    match kind {
        StepKind::Message(message) if message.channel == ast::Channel::Task => "task ...".into(),
        StepKind::Message(message) => format!("{} \"{}\"", message.channel, message.template.node),
        StepKind::WaitDuration(duration) => format!("wait {}", duration.node),
        StepKind::WaitClock { .. } | StepKind::WaitDate { .. } => "wait until ...".into(),
        StepKind::WaitEvent { timeout, event, .. } => {
            format!("wait {} for event \"{}\" ...", timeout.node, event.node)
        }
        StepKind::Split { .. } => "split { ... }".into(),
        StepKind::Ab { name, .. } => format!("ab {} {{ ... }}", name.node),
        StepKind::Repeat { .. } => "repeat ...".into(),
        _ => "...".into(),
    }
}

/// The kind as journeyc named positional IDs (`email@1`, `wait@2`).
fn kind_name(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::Message(message) => message.channel.as_str(),
        StepKind::WaitDuration(_)
        | StepKind::WaitClock { .. }
        | StepKind::WaitDate { .. }
        | StepKind::WaitEvent { .. } => "wait",
        StepKind::Split { .. } => "split",
        StepKind::Ab { .. } => "ab",
        StepKind::Repeat { .. } => "repeat",
        StepKind::Tag(_) => "tag",
        StepKind::Untag(_) => "untag",
        StepKind::SetField { .. } => "set",
        StepKind::Stage(_) => "stage",
        StepKind::Score { .. } => "score",
        StepKind::Handoff(_) => "handoff",
        StepKind::Goto(_) => "goto",
        StepKind::End => "end",
    }
}

/// Six hex digits of a SHA-256: enough to tell a journey's steps apart,
/// short enough to read in `why`.
fn digest(text: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(text.as_bytes());
    hash.iter().take(3).fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// What a resting contact's step means: a digest of the node's own kind
/// and content. A contact resting at a step whose print changed between
/// versions (a labeled wait given another duration) is treated like one
/// at a removed step.
fn fingerprint(kind: &NodeKind) -> String {
    let content = match kind {
        NodeKind::WaitDuration(duration) => format!("wait {duration}"),
        NodeKind::WaitClock { day, at } => format!("wait until {day:?} {at}"),
        NodeKind::WaitDate { offset, date, at } => {
            let date = match date {
                ast::DateRef::Literal(date) => date.node.to_string(),
                ast::DateRef::Holiday(name) => format!("holiday {}", name.node),
                ast::DateRef::Field(name) => name.node.clone(),
            };
            let offset = offset.map(|(duration, direction)| format!("{duration} {direction:?}"));
            format!("wait until {offset:?} {date} {at:?}")
        }
        NodeKind::WaitEvent {
            timeout,
            event,
            filter,
        } => format!(
            "wait {timeout} for {event} {}",
            filter
                .as_ref()
                .map(crate::ast::print::expr)
                .unwrap_or_default()
        ),
        NodeKind::Holdout => "holdout".into(),
        NodeKind::Start => "start".into(),
        NodeKind::End => "end".into(),
        _ => String::new(),
    };
    digest(&content)
}
