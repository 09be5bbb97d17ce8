//! Exact positions of syntax errors: offset, line, column and width.

use journeyc::diagnostic::Code;
use journeyc::parser::parse;
use journeyc::span::{FileId, SourceFile};

/// Asserts that `source` fails to parse at `line:column` over `width`
/// characters, with a message containing `message`.
macro_rules! error {
    ($source:expr, $line:expr, $column:expr, $width:expr, $message:expr) => {{
        let source: &str = $source;
        let error = parse(FileId(0), source).expect_err("must not parse");
        let file = SourceFile::new("t.journey".into(), source.to_string());
        let at = file.line_column(error.span.start as usize);
        assert_eq!(error.code, Code::Syntax);
        assert_eq!((at.line, at.column), ($line, $column), "{}", error.message);
        assert_eq!(
            source[error.span.range()].chars().count(),
            $width,
            "{}",
            error.message
        );
        assert!(error.message.contains($message), "{}", error.message);
    }};
}

#[test]
fn unclosed_journey() {
    error!(
        "journey a {\n  entry on stage \"x\"\n  email \"t\"\n",
        4, 1, 0, "found the end of the file"
    );
}

#[test]
fn missing_duration_unit() {
    error!(
        "journey a {\n  wait 3 days\n}",
        2, 8, 1, "a duration such as `3d`"
    );
}

#[test]
fn unterminated_string() {
    error!("journey a {\n  email \"winback\n}", 2, 9, 8, "expected");
}

#[test]
fn keyword_typo_names_the_alternatives() {
    error!(
        "journey a {\n  entry on stgae \"x\"\n}",
        2, 12, 5, "`stage`"
    );
}

#[test]
fn reserved_word_as_label() {
    error!("journey a {\n  and: email \"x\"\n}", 2, 3, 3, "expected");
}

#[test]
fn chinese_text_before_the_error_counts_as_characters() {
    error!(
        "journey a {\n  title \"价格提醒\" ???\n}",
        2, 16, 3, "found `???`"
    );
}

#[test]
fn spans_stop_at_the_last_character_of_code() {
    let source = "journey a {\n  entry on event \"x\"   # why\n\n  email \"t\"\n}\n";
    let (file, _) = parse(FileId(0), source).expect("parses");
    let journeyc::ast::Item::Journey(journey) = &file.items[0] else {
        panic!("a journey")
    };
    let clause = journey.clauses().next().expect("a clause");
    assert_eq!(&source[clause.span.range()], "entry on event \"x\"");
}
