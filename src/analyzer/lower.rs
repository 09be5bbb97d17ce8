//! Lowers a journey's steps into its DAG: one node per step (repetitions of
//! a `repeat` unrolled), edges for sequence, branches and `goto`s.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::ast::{self, Block, Step, StepKind};
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::graph::{Edge, EdgeKind, Node, NodeKind};
use crate::span::{Span, Spanned};

/// An edge that waits for the step after it to exist.
type Exit = (NodeIndex, EdgeKind);

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
        let start = self.add("@start", NodeKind::Start, journey.name.span);
        let steps: Vec<&Step> = journey.steps().collect();
        let exits = self.steps(&steps, "", "", 0, vec![(start, EdgeKind::Next)]);
        if !exits.is_empty() {
            let end = self.add("@end", NodeKind::End, journey.close);
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

    fn add(&mut self, id: &str, kind: NodeKind, span: Span) -> NodeIndex {
        self.graph.add_node(Node {
            id: id.to_string(),
            kind,
            span,
        })
    }

    fn connect(&mut self, exits: Vec<Exit>, to: NodeIndex, goto: Option<Span>) {
        for (from, kind) in exits {
            self.graph.add_edge(from, to, Edge { kind, goto });
        }
    }

    /// `prefix` places derived IDs (`split@1/when2/`); `repetition` is the
    /// prefix of the enclosing repetition (`monthly#3/`), the only thing
    /// that qualifies a label, since labels are unique in a journey.
    fn steps(
        &mut self,
        steps: &[&Step],
        prefix: &str,
        repetition: &str,
        scope: usize,
        mut exits: Vec<Exit>,
    ) -> Vec<Exit> {
        let mut ordinals: HashMap<&'static str, usize> = HashMap::new();
        for step in steps {
            let kind = kind_name(&step.kind);
            let ordinal = ordinals.entry(kind).or_default();
            *ordinal += 1;
            let id = match &step.label {
                Some(label) => format!("{repetition}{}", label.node),
                None => format!("{prefix}{kind}@{ordinal}"),
            };
            exits = self.step(step, &id, repetition, scope, exits);
        }
        exits
    }

    fn block(
        &mut self,
        block: &Block,
        prefix: &str,
        repetition: &str,
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
        id: &str,
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
        id: &str,
        repetition: &str,
        scope: usize,
        exits: Vec<Exit>,
    ) -> Vec<Exit> {
        let child = |suffix: &str| format!("{id}/{suffix}/");
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
                    let control =
                        self.add(&format!("{id}/holdout"), NodeKind::Holdout, holdout.span);
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
                            &format!("{id}#{count_index}/every"),
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
                    let prefix = format!("{id}#{count_index}/");
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
