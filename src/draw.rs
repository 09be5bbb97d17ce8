//! Drawings of a compiled journey for people: Graphviz DOT, Mermaid, and
//! an indented text outline that lists every step's ID; and the compiled
//! journey as JSON for tools.

use std::fmt::Write as _;

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::ast::{self, print};
use crate::journey::{CompiledJourney, Edge, EdgeKind, Node, NodeKind};

/// How `journeyc graph` draws a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Drawing {
    /// Graphviz DOT.
    #[default]
    Dot,
    /// A Mermaid flowchart (GitHub renders it in Markdown).
    Mermaid,
    /// An indented outline with every step's ID.
    Text,
    /// The compiled journey as JSON: its rules, and its graph's nodes
    /// (with step IDs) and edges.
    Json,
}

/// `journey` drawn as `drawing` asks.
pub fn draw(journey: &CompiledJourney, drawing: Drawing) -> String {
    match drawing {
        Drawing::Dot => to_dot(journey),
        Drawing::Mermaid => to_mermaid(journey),
        Drawing::Text => to_text(journey),
        Drawing::Json => serde_json::to_string_pretty(journey).unwrap_or_default() + "\n",
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
                format!("wait until {} {at}", print::weekday_name(*weekday))
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
            Some(filter) => format!("wait {timeout} for {event} where {}", print::expr(filter)),
            None => format!("wait {timeout} for {event}"),
        },
        NodeKind::Split => "split".to_string(),
        NodeKind::Ab { name } => format!("A/B test {name}"),
        NodeKind::Action(action) => print::action(action),
        NodeKind::Handoff(journey) => format!("hand off to {journey}"),
        NodeKind::Holdout => "holdout (control group)".to_string(),
        NodeKind::End => "end".to_string(),
    }
}

pub fn edge_text(edge: &Edge) -> String {
    match &edge.kind {
        EdgeKind::Next => String::new(),
        EdgeKind::When { condition, .. } => print::expr(condition),
        EdgeKind::Else => "else".to_string(),
        EdgeKind::Variant { name, weight } => format!("{name} {}%", print::number(*weight)),
        EdgeKind::Holdout { weight } => format!("holdout {}%", print::number(*weight)),
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
            print::signal(signal),
            journey.graph[*target].id
        );
    }
    out
}
