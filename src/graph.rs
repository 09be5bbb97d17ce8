//! The compiled form of a journey: a petgraph DAG whose nodes carry stable
//! IDs (the label where one is written, a path such as
//! `split:4f1c2a/when2/email:winback/vip` otherwise), and its drawing as DOT or Mermaid.

use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction as Side;

use crate::ast::{self, Expr, Message, Signal, Trigger};
use crate::format;
use crate::span::Span;

#[derive(Clone, Debug)]
pub struct Node {
    /// The step's label, or its kind and content inside the blocks around
    /// it: stable across edits elsewhere in the journey. The runner keys
    /// state and outbox rows on it.
    pub id: String,
    pub kind: NodeKind,
    pub span: Span,
    /// A digest of what the step does; a contact resting at a step whose
    /// print changed is treated like one at a removed step.
    pub print: String,
    /// The positional ID earlier versions of journeyc gave this node
    /// (`wait@2`), for stores written by them.
    pub legacy_id: String,
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    Start,
    Message(Message),
    /// `wait 3d`, and the pause between repetitions of a `repeat`.
    WaitDuration(ast::Duration),
    WaitClock {
        day: Option<ast::DayFilter>,
        at: ast::Time,
    },
    WaitDate {
        offset: Option<(ast::Duration, ast::Direction)>,
        date: ast::DateRef,
        at: Option<ast::Time>,
    },
    WaitEvent {
        timeout: ast::Duration,
        event: String,
        filter: Option<Expr>,
    },
    Split,
    Ab {
        name: String,
    },
    /// An action step (`tag`, `set`, `stage`, `score` ...), as written.
    Action(ast::StepKind),
    /// Leaves this journey and enters another.
    Handoff(String),
    /// The control group of an A/B split: nothing more is sent.
    Holdout,
    /// `end`, or the end of the steps.
    End,
}

#[derive(Clone, Debug)]
pub struct Edge {
    pub kind: EdgeKind,
    /// The `goto` that made this edge, if one did.
    pub goto: Option<Span>,
}

#[derive(Clone, Debug)]
pub enum EdgeKind {
    Next,
    /// The n-th (from 1) branch of a split.
    When {
        index: usize,
        condition: Expr,
    },
    Else,
    Variant {
        name: String,
        weight: f64,
    },
    Holdout {
        weight: f64,
    },
    Got,
    Timeout,
}

/// Journey-level rules that act on every enrolment, outside the step graph.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub title: Option<String>,
    pub description: Option<String>,
    pub audience: Option<Expr>,
    pub triggers: Vec<Trigger>,
    pub reentry: Option<ast::Reentry>,
    pub goal: Option<ast::Goal>,
    pub exits: Vec<Signal>,
    pub limits: Vec<ast::Limit>,
    pub rescues: Vec<(Signal, NodeIndex)>,
    /// Steps a new version removed or changed, and where contacts resting
    /// there go.
    pub moved: Vec<(String, NodeIndex)>,
    /// `backfill`: how far before its launch a trigger may lie.
    pub backfill: Option<ast::Duration>,
    /// `priority`: the higher goes first among journeys acting at the same
    /// instant (then the name).
    pub priority: u64,
}

#[derive(Clone, Debug)]
pub struct CompiledJourney {
    pub name: String,
    pub span: Span,
    pub rules: Rules,
    pub graph: DiGraph<Node, Edge>,
    pub start: NodeIndex,
    /// Node by stable ID: the runner looks one up for every enrolment.
    ids: std::collections::HashMap<String, NodeIndex>,
}

impl CompiledJourney {
    pub fn new(
        name: String,
        span: Span,
        rules: Rules,
        graph: DiGraph<Node, Edge>,
        start: NodeIndex,
    ) -> Self {
        let ids = graph
            .node_indices()
            .map(|index| (graph[index].id.clone(), index))
            .collect();
        CompiledJourney {
            name,
            span,
            rules,
            graph,
            start,
            ids,
        }
    }

    pub fn node(&self, id: &str) -> Option<NodeIndex> {
        self.ids.get(id).copied()
    }

    /// The nodes in the order they were created (source order, repetitions
    /// unrolled), which is also a stable order for output.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeIndex, &Node)> {
        self.graph
            .node_indices()
            .map(move |index| (index, &self.graph[index]))
    }

    /// Outgoing edges of a node in the order they were written.
    pub fn successors(&self, node: NodeIndex) -> Vec<(&Edge, NodeIndex)> {
        let mut edges: Vec<_> = self
            .graph
            .edges_directed(node, Side::Outgoing)
            .map(|edge| (edge.id(), edge.weight(), edge.target()))
            .collect();
        edges.sort_by_key(|(id, _, _)| *id);
        edges
            .into_iter()
            .map(|(_, weight, target)| (weight, target))
            .collect()
    }
}

/// What a marketer reads on a node: the kind of step and its template or
/// condition.
pub fn node_text(node: &Node) -> String {
    match &node.kind {
        NodeKind::Start => "start".to_string(),
        NodeKind::Message(message) => match message.channel {
            ast::Channel::Task if !message.task_template => {
                format!("task: {}", shorten(&message.template.node, 60))
            }
            channel => format!("{channel} {}", message.template.node),
        },
        NodeKind::WaitDuration(duration) => format!("wait {duration}"),
        NodeKind::WaitClock { day, at } => match day {
            Some(ast::DayFilter::Weekday(weekday)) => {
                format!("wait until {} {at}", format::weekday_name(*weekday))
            }
            Some(ast::DayFilter::Workday) => format!("wait until weekday {at}"),
            None => format!("wait until {at}"),
        },
        NodeKind::WaitDate { offset, date, at } => {
            let mut text = String::from("wait until ");
            if let Some((duration, direction)) = offset {
                let direction = match direction {
                    ast::Direction::Before => "before",
                    ast::Direction::After => "after",
                };
                let _ = write!(text, "{duration} {direction} ");
            }
            match date {
                ast::DateRef::Literal(date) => text.push_str(&date.node.to_string()),
                ast::DateRef::Holiday(name) => {
                    let _ = write!(text, "holiday \"{}\"", name.node);
                }
                ast::DateRef::Field(field) => text.push_str(&field.node),
            }
            if let Some(at) = at {
                let _ = write!(text, " at {at}");
            }
            text
        }
        NodeKind::WaitEvent {
            timeout,
            event,
            filter,
        } => match filter {
            Some(filter) => format!("wait {timeout} for {event} where {}", format::expr(filter)),
            None => format!("wait {timeout} for {event}"),
        },
        NodeKind::Split => "split".to_string(),
        NodeKind::Ab { name } => format!("A/B test {name}"),
        NodeKind::Action(action) => format::action(action),
        NodeKind::Handoff(journey) => format!("hand off to {journey}"),
        NodeKind::Holdout => "holdout (control group)".to_string(),
        NodeKind::End => "end".to_string(),
    }
}

pub fn edge_text(edge: &Edge) -> String {
    match &edge.kind {
        EdgeKind::Next => String::new(),
        EdgeKind::When { condition, .. } => format::expr(condition),
        EdgeKind::Else => "else".to_string(),
        EdgeKind::Variant { name, weight } => format!("{name} {}%", format::number(*weight)),
        EdgeKind::Holdout { weight } => format!("holdout {}%", format::number(*weight)),
        EdgeKind::Got => "got".to_string(),
        EdgeKind::Timeout => "timeout".to_string(),
    }
}

fn shorten(text: &str, limit: usize) -> String {
    let single_line = text.replace('\n', " ");
    if single_line.chars().count() <= limit {
        return single_line;
    }
    let mut short: String = single_line.chars().take(limit - 1).collect();
    short.push('…');
    short
}

fn is_wait(kind: &NodeKind) -> bool {
    matches!(
        kind,
        NodeKind::WaitDuration(_)
            | NodeKind::WaitClock { .. }
            | NodeKind::WaitDate { .. }
            | NodeKind::WaitEvent { .. }
    )
}

/// Graphviz DOT.
pub fn to_dot(journey: &CompiledJourney) -> String {
    let quote = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", quote(&journey.name));
    if let Some(title) = &journey.rules.title {
        let _ = writeln!(out, "  label=\"{}\";\n  labelloc=t;", quote(title));
    }
    out.push_str("  rankdir=TB;\n  node [fontname=\"Helvetica\", shape=box, style=rounded];\n");
    for (_, node) in journey.nodes() {
        let shape = match node.kind {
            NodeKind::Start | NodeKind::End | NodeKind::Holdout | NodeKind::Handoff(_) => {
                ", shape=oval"
            }
            NodeKind::Split | NodeKind::Ab { .. } => ", shape=diamond",
            ref kind if is_wait(kind) => ", shape=box, style=\"rounded,dashed\"",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n({})\"{shape}];",
            quote(&node.id),
            quote(&node_text(node)),
            quote(&node.id)
        );
    }
    for edge in journey.graph.edge_references() {
        let from = &journey.graph[edge.source()].id;
        let to = &journey.graph[edge.target()].id;
        let label = edge_text(edge.weight());
        if label.is_empty() {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", quote(from), quote(to));
        } else {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\"];",
                quote(from),
                quote(to),
                quote(&label)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart, for Markdown renderers such as GitHub's.
pub fn to_mermaid(journey: &CompiledJourney) -> String {
    let quote = |text: &str| text.replace('"', "#quot;");
    let key = |index: NodeIndex| format!("n{}", index.index());
    let mut out = String::from("flowchart TD\n");
    for (index, node) in journey.nodes() {
        let text = quote(&node_text(node));
        let shape = match node.kind {
            NodeKind::Start | NodeKind::End | NodeKind::Holdout | NodeKind::Handoff(_) => {
                format!("([\"{text}\"])")
            }
            NodeKind::Split | NodeKind::Ab { .. } => format!("{{\"{text}\"}}"),
            ref kind if is_wait(kind) => format!("[/\"{text}\"/]"),
            _ => format!("[\"{text}\"]"),
        };
        let _ = writeln!(out, "    {}{shape}", key(index));
    }
    for edge in journey.graph.edge_references() {
        let label = edge_text(edge.weight());
        if label.is_empty() {
            let _ = writeln!(out, "    {} --> {}", key(edge.source()), key(edge.target()));
        } else {
            let _ = writeln!(
                out,
                "    {} -->|\"{}\"| {}",
                key(edge.source()),
                quote(&label),
                key(edge.target())
            );
        }
    }
    out
}

/// A plain listing of nodes and edges, one per line, for snapshots and for
/// reviewing a journey in a terminal.
pub fn to_text(journey: &CompiledJourney) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "journey {}", journey.name);
    for (index, node) in journey.nodes() {
        let _ = writeln!(out, "  {}: {}", node.id, node_text(node));
        for (edge, target) in journey.successors(index) {
            let label = edge_text(edge);
            let target = &journey.graph[target].id;
            if label.is_empty() {
                let _ = writeln!(out, "    -> {target}");
            } else {
                let _ = writeln!(out, "    -> {target} [{label}]");
            }
        }
    }
    for (signal, target) in &journey.rules.rescues {
        let _ = writeln!(
            out,
            "  rescue {} -> {}",
            format::signal(signal),
            journey.graph[*target].id
        );
    }
    out
}
