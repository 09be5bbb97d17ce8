//! The compiled form of a journey: a petgraph DAG whose nodes carry stable
//! IDs (the label where one is written, a path such as
//! `split:4f1c2a/when2/email:winback/vip` otherwise), and the journey-level
//! rules around it. [`crate::draw`] draws it; the runner walks it.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction as Side;

use crate::ast::{self, Expr, Message, Signal, Trigger};
use crate::span::Span;

#[derive(Clone, Debug, serde::Serialize)]
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

#[derive(Clone, Debug, serde::Serialize)]
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

#[derive(Clone, Debug, serde::Serialize)]
pub struct Edge {
    pub kind: EdgeKind,
    /// The `goto` that made this edge, if one did.
    pub goto: Option<Span>,
}

#[derive(Clone, Debug, serde::Serialize)]
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
#[derive(Clone, Debug, Default, serde::Serialize)]
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

#[derive(Clone, Debug, serde::Serialize)]
pub struct CompiledJourney {
    pub name: String,
    pub span: Span,
    pub rules: Rules,
    pub graph: DiGraph<Node, Edge>,
    pub start: NodeIndex,
    /// Node by stable ID: the runner looks one up for every enrolment.
    #[serde(skip)]
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

    /// The content hash of this version of the journey: a digest of its
    /// canonical serialization (graph, rules, names; no spans), so edits
    /// to comments or layout are not a new version.
    pub fn version(&self) -> String {
        use sha2::Digest as _;
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = sha2::Sha256::digest(&canonical);
        digest[..8].iter().fold(String::new(), |mut hex, byte| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
            hex
        })
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
