//! `journeyc fmt`: prints a journey file in its canonical layout. Comments
//! are kept: a comment on a line of its own stays before the statement that
//! follows it, a comment after code stays at the end of that line. Formatting
//! twice changes nothing.

use std::fmt::Write as _;

use crate::ast::print::*;
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
