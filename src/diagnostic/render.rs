//! Renders diagnostics once, at the end: for people (a caret under the
//! span, <file:line:column>), as JSON lines, or as GitHub Actions annotations.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr;

use crate::diagnostic::{Diagnostic, Severity};
use crate::span::{SourceMap, Span};

/// Where a span starts and ends, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

pub fn location(sources: &SourceMap, span: Span) -> Location {
    let file = sources.get(span.file);
    let start = file.line_column(span.start as usize);
    let end = file.line_column(span.end as usize);
    Location {
        file: sources.path(span.file).display().to_string(),
        line: start.line,
        column: start.column,
        end_line: end.line,
        end_column: end.column,
    }
}

/// The human form, as a compiler prints it.
pub fn human(sources: &SourceMap, diagnostic: &Diagnostic) -> String {
    let mut out = String::new();
    let at = location(sources, diagnostic.span);
    let _ = writeln!(
        out,
        "{}[{}]: {}",
        diagnostic.severity.as_str(),
        diagnostic.code.as_str(),
        diagnostic.message
    );
    let gutter = at
        .line
        .max(
            diagnostic
                .related
                .iter()
                .map(|related| location(sources, related.span).line)
                .max()
                .unwrap_or(0),
        )
        .to_string()
        .len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad}--> {}:{}:{}", at.file, at.line, at.column);
    snippet(
        &mut out,
        sources,
        diagnostic.span,
        '^',
        &diagnostic.label,
        gutter,
    );
    for related in &diagnostic.related {
        let place = location(sources, related.span);
        if place.file == at.file {
            let _ = writeln!(out, "{pad}::: line {}:{}", place.line, place.column);
        } else {
            let _ = writeln!(
                out,
                "{pad}::: {}:{}:{}",
                place.file, place.line, place.column
            );
        }
        snippet(&mut out, sources, related.span, '-', &related.label, gutter);
    }
    if let Some(help) = &diagnostic.help {
        let _ = writeln!(out, "{pad} = help: {help}");
    }
    out
}

fn snippet(
    out: &mut String,
    sources: &SourceMap,
    span: Span,
    mark: char,
    label: &str,
    gutter: usize,
) {
    let file = sources.get(span.file);
    let start = file.line_column(span.start as usize);
    let end = file.line_column(span.end as usize);
    let line_text = file.line_text(start.line).replace('\t', " ");
    let before: String = line_text.chars().take(start.column - 1).collect();
    let covered: String = if end.line == start.line {
        line_text
            .chars()
            .skip(start.column - 1)
            .take(end.column.saturating_sub(start.column))
            .collect()
    } else {
        line_text.chars().skip(start.column - 1).collect()
    };
    let width = covered.width().max(1);
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{:>gutter$} | {line_text}", start.line);
    let marks: String = std::iter::repeat_n(mark, width).collect();
    let indent = " ".repeat(before.width());
    if label.is_empty() {
        let _ = writeln!(out, "{pad} | {indent}{marks}");
    } else {
        let _ = writeln!(out, "{pad} | {indent}{marks} {label}");
    }
}

/// One JSON object per diagnostic.
pub fn json(sources: &SourceMap, diagnostic: &Diagnostic) -> String {
    let at = location(sources, diagnostic.span);
    let related: Vec<serde_json::Value> = diagnostic
        .related
        .iter()
        .map(|related| {
            let place = location(sources, related.span);
            serde_json::json!({
                "file": place.file,
                "line": place.line,
                "column": place.column,
                "end_line": place.end_line,
                "end_column": place.end_column,
                "label": related.label,
            })
        })
        .collect();
    serde_json::json!({
        "file": at.file,
        "line": at.line,
        "column": at.column,
        "end_line": at.end_line,
        "end_column": at.end_column,
        "code": diagnostic.code.as_str(),
        "severity": diagnostic.severity.as_str(),
        "message": diagnostic.message,
        "label": diagnostic.label,
        "help": diagnostic.help,
        "related": related,
    })
    .to_string()
}

/// A GitHub Actions workflow command, so the problem shows on the line in
/// the pull request.
pub fn github(sources: &SourceMap, diagnostic: &Diagnostic) -> String {
    let at = location(sources, diagnostic.span);
    let kind = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut message = diagnostic.message.clone();
    if let Some(help) = &diagnostic.help {
        let _ = write!(message, "\nhelp: {help}");
    }
    format!(
        "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}",
        escape_property(&at.file),
        at.line,
        at.column,
        at.end_line,
        at.end_column,
        escape_property(&format!(
            "{} {}",
            diagnostic.code.as_str(),
            diagnostic.message
        )),
        escape_data(&message)
    )
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Code;

    #[test]
    fn caret_sits_under_wide_characters() {
        let mut sources = SourceMap::new();
        let file = sources.add("a.journey".into(), "title \"价格\" oops\n".into());
        let start = sources.get(file).text.find("oops").unwrap();
        let diagnostic = Diagnostic::new(
            Code::Syntax,
            Span::new(file, start, start + 4),
            "unexpected `oops`",
        )
        .label("here");
        let text = human(&sources, &diagnostic);
        assert!(text.contains("--> a.journey:1:12"), "{text}");
        assert!(text.contains("\n  |              ^^^^ here\n"), "{text}");
    }

    #[test]
    fn github_escapes_commas_and_newlines() {
        let mut sources = SourceMap::new();
        let file = sources.add("a,b.journey".into(), "x\n".into());
        let diagnostic =
            Diagnostic::new(Code::Syntax, Span::new(file, 0, 1), "50% off\nnow").help("h");
        let line = github(&sources, &diagnostic);
        assert_eq!(
            line,
            "::error file=a%2Cb.journey,line=1,col=1,endLine=1,endColumn=2,title=E100 50%25 off%0Anow::50%25 off%0Anow%0Ahelp: h"
        );
    }
}
