//! Checks on the compiled graph: loops, unreachable steps, shadowed
//! branches and sends that the frequency caps will always defer.

use std::collections::{BTreeMap, HashSet, VecDeque};

use petgraph::algo::toposort;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction as Side;

use crate::ast::{self, BinaryOp, Channel, Expr, ExprKind};
use crate::diagnostic::{Code, Diagnostic};
use crate::journey::{CompiledJourney, EdgeKind, NodeKind};
use crate::span::Span;

/// Reports each loop once, as its path, at the `goto` that closes it.
/// Returns whether the graph is acyclic.
pub fn cycles(journey: &CompiledJourney, diagnostics: &mut Vec<Diagnostic>) -> bool {
    if toposort(&journey.graph, None).is_ok() {
        return true;
    }
    let mut reported_edges = HashSet::new();
    for component in petgraph::algo::tarjan_scc(&journey.graph) {
        let looping =
            component.len() > 1 || journey.graph.contains_edge(component[0], component[0]);
        if !looping {
            continue;
        }
        let members: HashSet<NodeIndex> = component.iter().copied().collect();
        // The back edge: a goto inside the component to a node created
        // earlier (lower index) than where it jumps from.
        let back = journey
            .graph
            .edge_references()
            .filter(|edge| members.contains(&edge.source()) && members.contains(&edge.target()))
            .filter(|edge| edge.target().index() <= edge.source().index())
            .min_by_key(|edge| (edge.target().index(), edge.source().index()));
        let Some(back) = back else { continue };
        if !reported_edges.insert(back.id()) {
            continue;
        }
        let path = path_within(journey, &members, back.target(), back.source());
        let mut names: Vec<&str> = path
            .iter()
            .map(|&node| journey.graph[node].id.as_str())
            .collect();
        names.push(journey.graph[back.target()].id.as_str());
        let span = back
            .weight()
            .goto
            .unwrap_or(journey.graph[back.source()].span);
        diagnostics.push(
            Diagnostic::new(Code::Cycle, span, format!("these steps loop: {}", names.join(" -> ")))
                .label(format!("jumps back to `{}`", journey.graph[back.target()].id))
                .related(journey.graph[back.target()].span, "the loop starts here")
                .help("`goto` may only jump forward; to send something several times use `repeat N every <duration> { ... }`"),
        );
    }
    false
}

/// Shortest path from `from` to `to` inside a set of nodes.
fn path_within(
    journey: &CompiledJourney,
    members: &HashSet<NodeIndex>,
    from: NodeIndex,
    to: NodeIndex,
) -> Vec<NodeIndex> {
    let mut previous: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = HashSet::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            break;
        }
        for next in journey.graph.neighbors_directed(node, Side::Outgoing) {
            if members.contains(&next) && seen.insert(next) {
                previous.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    let mut path = vec![to];
    let mut node = to;
    while let Some(&before) = previous.get(&node) {
        path.push(before);
        node = before;
        if node == from {
            break;
        }
    }
    path.reverse();
    path
}

/// Steps no contact can reach: reported once per dead stretch, at its first
/// step.
pub fn unreachable(journey: &CompiledJourney, diagnostics: &mut Vec<Diagnostic>) {
    let mut reached = HashSet::new();
    let mut queue: VecDeque<NodeIndex> = std::iter::once(journey.start)
        .chain(journey.rules.rescues.iter().map(|(_, target)| *target))
        .collect();
    while let Some(node) = queue.pop_front() {
        if reached.insert(node) {
            queue.extend(journey.graph.neighbors_directed(node, Side::Outgoing));
        }
    }
    for (index, node) in journey.nodes() {
        let synthetic = node.id.starts_with('@')
            || node.id.ends_with("/every")
            || node.id.ends_with("/holdout");
        if reached.contains(&index) || synthetic {
            continue;
        }
        let has_dead_predecessor = journey
            .graph
            .neighbors_directed(index, Side::Incoming)
            .next()
            .is_some();
        if has_dead_predecessor {
            continue;
        }
        diagnostics.push(
            Diagnostic::new(Code::Unreachable, node.span, "no contact can reach this step")
                .label("unreachable")
                .help("the step before it jumps away or ends; label this step and `goto` it, or remove it"),
        );
    }
}

/// A later split branch whose condition implies an earlier one's is never
/// taken: the earlier branch catches all its contacts first.
pub fn shadowed_branches(branches: &[ast::Branch], diagnostics: &mut Vec<Diagnostic>) {
    for (later_index, later) in branches.iter().enumerate() {
        let earlier = branches[..later_index]
            .iter()
            .find(|earlier| implies(&later.condition, &earlier.condition));
        if let Some(earlier) = earlier {
            diagnostics.push(
                Diagnostic::new(
                    Code::ShadowedBranch,
                    later.condition.span,
                    "this branch is never taken",
                )
                .label("an earlier branch always matches first")
                .related(
                    earlier.condition.span,
                    "this branch takes every contact first",
                )
                .help("put the narrower condition first"),
            );
        }
    }
}

fn strip(expr: &Expr) -> &Expr {
    match &expr.kind {
        ExprKind::Group(inner) => strip(inner),
        _ => expr,
    }
}

/// Structural equality, ignoring positions and parentheses. Literals are
/// compared exactly: `100` and `100.0` are the same number as written.
#[allow(clippy::float_cmp)]
fn same(left: &Expr, right: &Expr) -> bool {
    let (left, right) = (strip(left), strip(right));
    match (&left.kind, &right.kind) {
        (ExprKind::Bool(a), ExprKind::Bool(b)) => a == b,
        (ExprKind::Number(a, _), ExprKind::Number(b, _)) => a == b,
        (ExprKind::String(a), ExprKind::String(b)) => a == b,
        (ExprKind::Date(a), ExprKind::Date(b)) => a == b,
        (ExprKind::Time(a), ExprKind::Time(b)) => a == b,
        (ExprKind::Duration(a), ExprKind::Duration(b)) => a == b,
        (ExprKind::List(a), ExprKind::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (ExprKind::Path(a), ExprKind::Path(b)) => {
            a.iter().map(|n| &n.node).eq(b.iter().map(|n| &n.node))
        }
        (
            ExprKind::Call {
                function: f,
                args: a,
            },
            ExprKind::Call {
                function: g,
                args: b,
            },
        ) => f.node == g.node && a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b)),
        (
            ExprKind::Count {
                event: e1,
                filter: f1,
                within: w1,
            },
            ExprKind::Count {
                event: e2,
                filter: f2,
                within: w2,
            },
        ) => {
            e1.node == e2.node
                && w1.as_ref().map(|w| w.node) == w2.as_ref().map(|w| w.node)
                && match (f1, f2) {
                    (Some(a), Some(b)) => same(a, b),
                    (None, None) => true,
                    _ => false,
                }
        }
        (ExprKind::Not(a), ExprKind::Not(b)) => same(a, b),
        (
            ExprKind::Binary {
                op: o1,
                left: l1,
                right: r1,
            },
            ExprKind::Binary {
                op: o2,
                left: l2,
                right: r2,
            },
        ) => o1.node == o2.node && same(l1, l2) && same(r1, r2),
        _ => false,
    }
}

/// Whether every contact matching `a` also matches `b` (a sound, partial
/// test: `false` means "not proven").
pub fn implies(a: &Expr, b: &Expr) -> bool {
    let (a, b) = (strip(a), strip(b));
    if same(a, b) || matches!(b.kind, ExprKind::Bool(true)) {
        return true;
    }
    if let ExprKind::Binary { op, left, right } = &b.kind {
        match op.node {
            BinaryOp::Or => return implies(a, left) || implies(a, right),
            BinaryOp::And => return implies(a, left) && implies(a, right),
            _ => {}
        }
    }
    if let ExprKind::Binary { op, left, right } = &a.kind {
        match op.node {
            BinaryOp::And => return implies(left, b) || implies(right, b),
            BinaryOp::Or => return implies(left, b) && implies(right, b),
            _ => {}
        }
    }
    match (constraint(a), constraint(b)) {
        (Some((subject_a, set_a)), Some((subject_b, set_b))) if same(subject_a, subject_b) => {
            set_a.within(&set_b)
        }
        _ => false,
    }
}

/// The values a comparison of one subject with constants admits.
#[derive(Debug)]
enum ValueSet {
    Range { low: Bound, high: Bound },
    Texts(Vec<String>),
    NotText(String),
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    inclusive: bool,
}

impl ValueSet {
    // Bounds are literals from the source; equal means written equal.
    #[allow(clippy::float_cmp)]
    fn within(&self, other: &ValueSet) -> bool {
        match (self, other) {
            (ValueSet::Range { low: l1, high: h1 }, ValueSet::Range { low: l2, high: h2 }) => {
                let low_ok = l1.value > l2.value
                    || (l1.value == l2.value && (l2.inclusive || !l1.inclusive));
                let high_ok = h1.value < h2.value
                    || (h1.value == h2.value && (h2.inclusive || !h1.inclusive));
                low_ok && high_ok
            }
            (ValueSet::Texts(a), ValueSet::Texts(b)) => a.iter().all(|value| b.contains(value)),
            (ValueSet::Texts(a), ValueSet::NotText(excluded)) => !a.contains(excluded),
            (ValueSet::NotText(a), ValueSet::NotText(b)) => a == b,
            _ => false,
        }
    }
}

fn constant(expr: &Expr) -> Option<f64> {
    match &strip(expr).kind {
        ExprKind::Number(value, _) => Some(*value),
        #[allow(clippy::cast_precision_loss)]
        ExprKind::Date(date) => Some(f64::from(date.num_days_from_ce())),
        _ => None,
    }
}

use chrono::Datelike as _;

fn constraint(expr: &Expr) -> Option<(&Expr, ValueSet)> {
    let ExprKind::Binary { op, left, right } = &strip(expr).kind else {
        return None;
    };
    let unbounded_low = Bound {
        value: f64::NEG_INFINITY,
        inclusive: false,
    };
    let unbounded_high = Bound {
        value: f64::INFINITY,
        inclusive: false,
    };
    let range = |operator: BinaryOp, value: f64| {
        let at = |inclusive| Bound { value, inclusive };
        match operator {
            BinaryOp::Gt => Some(ValueSet::Range {
                low: at(false),
                high: unbounded_high,
            }),
            BinaryOp::Ge => Some(ValueSet::Range {
                low: at(true),
                high: unbounded_high,
            }),
            BinaryOp::Lt => Some(ValueSet::Range {
                low: unbounded_low,
                high: at(false),
            }),
            BinaryOp::Le => Some(ValueSet::Range {
                low: unbounded_low,
                high: at(true),
            }),
            BinaryOp::Eq => Some(ValueSet::Range {
                low: at(true),
                high: at(true),
            }),
            _ => None,
        }
    };
    let flip = |operator: BinaryOp| match operator {
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        other => other,
    };
    if let Some(value) = constant(right) {
        return range(op.node, value).map(|set| (left.as_ref(), set));
    }
    if let Some(value) = constant(left) {
        return range(flip(op.node), value).map(|set| (right.as_ref(), set));
    }
    let text = |expr: &Expr| match &strip(expr).kind {
        ExprKind::String(text) => Some(text.clone()),
        _ => None,
    };
    match (op.node, &strip(right).kind) {
        (BinaryOp::Eq, _) => text(right).map(|value| (left.as_ref(), ValueSet::Texts(vec![value]))),
        (BinaryOp::Ne, _) => text(right).map(|value| (left.as_ref(), ValueSet::NotText(value))),
        (BinaryOp::In, ExprKind::List(items)) => {
            let values: Option<Vec<String>> = items.iter().map(text).collect();
            values.map(|values| (left.as_ref(), ValueSet::Texts(values)))
        }
        _ => None,
    }
}

/// A cap: at most `count` sends on `channel` per `per`.
#[derive(Clone, Copy, Debug)]
pub struct CapRule {
    pub channel: Channel,
    pub count: u64,
    pub per: ast::Duration,
    pub span: Option<Span>,
}

/// The longest a contact can rest in a node before leaving it along
/// `edge`, in minutes; `None` when there is no bound (a wait for a date).
fn longest_stay(kind: &NodeKind, edge: &EdgeKind) -> Option<u64> {
    const DAY: u64 = 24 * 60;
    match kind {
        NodeKind::WaitDuration(duration) => Some(duration.minutes),
        NodeKind::WaitClock { day, .. } => Some(match day {
            Some(ast::DayFilter::Weekday(_)) => 7 * DAY,
            Some(ast::DayFilter::Workday) => 3 * DAY,
            None => DAY,
        }),
        NodeKind::WaitDate { .. } => None,
        NodeKind::WaitEvent { timeout, .. } => match edge {
            EdgeKind::Got | EdgeKind::Timeout => Some(timeout.minutes),
            _ => Some(0),
        },
        _ => Some(0),
    }
}

/// Sends that the cap will defer on every route from an earlier send: the
/// `count` sends before it on the same channel all fall within `per`, even
/// along the slowest path.
pub fn caps_always_defer(
    journey: &CompiledJourney,
    caps: &[CapRule],
    exempt: &super::Exempt,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let Ok(order) = toposort(&journey.graph, None) else {
        return;
    };
    let position: BTreeMap<NodeIndex, usize> = order
        .iter()
        .enumerate()
        .map(|(rank, &node)| (node, rank))
        .collect();
    let mut reported = HashSet::new();
    for cap in caps {
        // Transactional messages are exempt from caps and do not count.
        let sends_on = |node: NodeIndex| {
            matches!(&journey.graph[node].kind, NodeKind::Message(message)
                if message.channel == cap.channel
                    && !exempt.contains(&(message.channel, message.template.node.clone())))
        };
        let window = usize::try_from(cap.count).unwrap_or(usize::MAX).min(64);
        for &first in order.iter().filter(|&&node| sends_on(node)) {
            // longest[node][k]: the slowest arrival at `node` having sent k
            // more times on the channel since `first` (k <= window).
            // Only the nodes reached with at most `window` sends since
            // `first` are visited, in topological order (a heap of their
            // ranks): the check costs what the window holds per send, not
            // the whole journey.
            let mut longest: BTreeMap<NodeIndex, Vec<Option<u64>>> = BTreeMap::new();
            let mut initial = vec![None; window + 1];
            initial[0] = Some(0);
            longest.insert(first, initial);
            let mut frontier = std::collections::BinaryHeap::new();
            frontier.push(std::cmp::Reverse(position[&first]));
            while let Some(std::cmp::Reverse(rank)) = frontier.pop() {
                let node = order[rank];
                let Some(arrivals) = longest.get(&node).cloned() else {
                    continue;
                };
                for edge in journey.graph.edges_directed(node, Side::Outgoing) {
                    let next = edge.target();
                    let stay = longest_stay(&journey.graph[node].kind, &edge.weight().kind);
                    let sends = usize::from(sends_on(next));
                    for (count, arrival) in arrivals.iter().enumerate() {
                        let Some(arrival) = arrival else { continue };
                        let count_after = count + sends;
                        if count_after > window {
                            continue;
                        }
                        // An unbounded wait means the cap can always be met.
                        let Some(stay) = stay else { continue };
                        let at = arrival.saturating_add(stay);
                        if sends == 1
                            && count_after == window
                            && at < cap.per.minutes
                            && reported.insert(next)
                        {
                            let channel = cap.channel;
                            let cap_text = format!("{channel} {} per {}", cap.count, cap.per);
                            let mut diagnostic = Diagnostic::new(
                                Code::CapAlwaysDefers,
                                journey.graph[next].span,
                                format!("the cap `{cap_text}` always defers this {channel}"),
                            )
                            .label(format!(
                                "at most {} after an earlier {channel}",
                                ast::Duration::from_length(at)
                            ))
                            .related(journey.graph[first].span, format!("the earlier {channel}"))
                            .help(format!(
                                "wait at least {} between these sends, or raise the cap",
                                cap.per
                            ));
                            if let Some(span) = cap.span {
                                diagnostic = diagnostic.related(span, "the cap");
                            }
                            diagnostics.push(diagnostic);
                        }
                        let slots = longest.entry(next).or_insert_with(|| {
                            frontier.push(std::cmp::Reverse(position[&next]));
                            vec![None; window + 1]
                        });
                        if slots[count_after].is_none_or(|known| known < at) {
                            slots[count_after] = Some(at);
                        }
                    }
                }
            }
        }
    }
}

/// Finds loops in a directed graph of names (hand-offs, segments) and
/// returns each once as its path, starting from its smallest name.
pub fn name_cycles(edges: &BTreeMap<String, Vec<(String, Span)>>) -> Vec<(Vec<String>, Span)> {
    let mut cycles = Vec::new();
    let mut seen_sets: HashSet<Vec<String>> = HashSet::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start` through names
        // greater than it, so each loop is found from its smallest member.
        let mut stack: Vec<(String, Vec<String>, Option<Span>)> =
            vec![(start.clone(), vec![start.clone()], None)];
        while let Some((node, path, first_span)) = stack.pop() {
            for (next, span) in edges.get(&node).into_iter().flatten() {
                let span = first_span.unwrap_or(*span);
                if next == start {
                    let mut members = path.clone();
                    members.sort();
                    if seen_sets.insert(members) {
                        let mut full = path.clone();
                        full.push(start.clone());
                        cycles.push((full, span));
                    }
                } else if next > start && !path.contains(next) && path.len() < 64 {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer, Some(span)));
                }
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_expr;
    use crate::span::FileId;

    fn implies_text(a: &str, b: &str) -> bool {
        let a = parse_expr(FileId(0), a).unwrap();
        let b = parse_expr(FileId(0), b).unwrap();
        implies(&a, &b)
    }

    #[test]
    fn implication_on_ranges_sets_and_logic() {
        assert!(implies_text("x >= 100", "x >= 50"));
        assert!(!implies_text("x >= 50", "x >= 100"));
        assert!(implies_text("x > 5", "x >= 5"));
        assert!(!implies_text("x >= 5", "x > 5"));
        assert!(implies_text("100 <= x", "x > 99"));
        assert!(implies_text(
            "r == \"price\"",
            "r in [\"price\", \"brand\"]"
        ));
        assert!(!implies_text(
            "r in [\"price\", \"x\"]",
            "r in [\"price\", \"brand\"]"
        ));
        assert!(implies_text("a and b", "b"));
        assert!(!implies_text("a or b", "b"));
        assert!(implies_text("(has_tag(\"v\"))", "has_tag(\"v\") or c"));
        assert!(implies_text("d >= 2026-01-02", "d > 2026-01-01"));
    }
}
