//! `journeyc fmt` on every journey file in the repository: formatting is
//! idempotent, keeps every comment and changes nothing a journey means.

use std::path::{Path, PathBuf};

use journeyc::format::format_source;
use journeyc::parser;
use journeyc::span::FileId;

fn all_journey_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for folder in ["journeys", "examples", "tests/fixtures"] {
        files.extend(
            journeyc::project::journey_files(&root.join(folder)).expect("folder is readable"),
        );
    }
    assert!(
        files.len() > 20,
        "expected the fixtures and journeys, found {}",
        files.len()
    );
    files
}

/// The syntax tree with every position blanked, so two layouts of the same
/// journey compare equal.
fn shape(source: &str) -> String {
    let (file, _) = parser::parse(FileId(0), source).expect("parses");
    let debug = format!("{file:?}");
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug.as_str();
    while let Some(start) = rest.find("Span {") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |offset| start + offset + 1);
        out.push_str("Span");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn comment_texts(source: &str) -> Vec<String> {
    parser::comments(FileId(0), source)
        .into_iter()
        .map(|comment| comment.text)
        .collect()
}

#[test]
fn formatting_is_idempotent_and_keeps_meaning_and_comments() {
    for path in all_journey_files() {
        let source = std::fs::read_to_string(&path).expect("readable");
        let Ok(once) = format_source(FileId(0), &source) else {
            continue; // fixtures with syntax errors
        };
        let twice = format_source(FileId(0), &once).expect("formatted text parses");
        assert_eq!(
            twice,
            once,
            "{}: formatting twice changed the text",
            path.display()
        );
        assert_eq!(
            shape(&once),
            shape(&source),
            "{}: formatting changed the journey",
            path.display()
        );
        assert_eq!(
            comment_texts(&once),
            comment_texts(&source),
            "{}: formatting lost or moved comments out of order",
            path.display()
        );
    }
}

#[test]
fn a_compressed_journey_expands_to_the_same_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winback.journey");
    let source = std::fs::read_to_string(path).expect("readable");
    // Everything on as few lines as the grammar allows (comments dropped).
    let without_comments: String = source
        .lines()
        .map(|line| match line.find(" #") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ if line.trim_start().starts_with('#') => "",
            _ => line,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let formatted = format_source(FileId(0), &without_comments).expect("formats");
    assert_eq!(shape(&formatted), shape(&without_comments));
    assert_eq!(
        format_source(FileId(0), &formatted).expect("formats"),
        formatted
    );
}
