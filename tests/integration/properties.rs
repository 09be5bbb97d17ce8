//! No input, however broken, makes the checker or the formatter panic:
//! random mutations of real journeys go through the whole pipeline.

use std::path::Path;

use journeyc::analyzer::analyze;
use journeyc::diagnostic::render;
use journeyc::diagnostic::Diagnostic;
use journeyc::settings::Settings;
use journeyc::span::SourceMap;
use journeyc::{format, parser};
use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "\"",
    "\\",
    "#",
    "\n",
    " ",
    ":",
    "->",
    "..",
    "==",
    "%",
    "+5",
    "-",
    "0d",
    "30d",
    "09:00",
    "25:99",
    "2026-02-30",
    "journey",
    "segment",
    "score",
    "split",
    "when",
    "else",
    "ab",
    "variant",
    "holdout",
    "repeat",
    "wait",
    "until",
    "for event",
    "got",
    "timeout",
    "goto",
    "end",
    "email",
    "sms",
    "task",
    "webhook",
    "entry",
    "on",
    "stage",
    "tag",
    "goal",
    "within",
    "exit",
    "rescue",
    "limits",
    "and",
    "or",
    "not",
    "in",
    "contains any",
    "价格",
    "😀",
    "\u{0}",
    "\u{feff}",
    "999999999999999999999d",
    "repeat 0 every 0d {",
    "goto x x: goto x",
];

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    for folder in ["journeys", "tests/fixtures"] {
        for path in journeyc::project::journey_files(&root.join(folder)).expect("readable") {
            sources.push(std::fs::read_to_string(path).expect("readable"));
        }
    }
    sources
}

fn settings(sources: &mut SourceMap) -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("journeys/journeyc.yaml");
    Settings::load(&path, sources)
        .expect("readable")
        .expect("valid settings")
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        at: usize,
        length: usize,
    },
    Insert {
        at: usize,
        fragment: usize,
    },
    Duplicate {
        at: usize,
        length: usize,
        to: usize,
    },
    Swap {
        first: usize,
        second: usize,
        length: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(at, length)| Mutation::Delete { at, length }),
        (any::<usize>(), 0..FRAGMENTS.len())
            .prop_map(|(at, fragment)| Mutation::Insert { at, fragment }),
        (any::<usize>(), 1..80usize, any::<usize>())
            .prop_map(|(at, length, to)| Mutation::Duplicate { at, length, to }),
        (any::<usize>(), any::<usize>(), 1..30usize).prop_map(|(first, second, length)| {
            Mutation::Swap {
                first,
                second,
                length,
            }
        }),
    ]
}

/// The nearest character boundary at or before `at`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, mutation: &Mutation) {
    match *mutation {
        Mutation::Delete { at, length } => {
            let start = boundary(text, at);
            let end = boundary(text, start + length.min(text.len() - start));
            text.replace_range(start..end, "");
        }
        Mutation::Insert { at, fragment } => {
            let at = boundary(text, at);
            text.insert_str(at, FRAGMENTS[fragment]);
        }
        Mutation::Duplicate { at, length, to } => {
            let start = boundary(text, at);
            let end = boundary(text, start + length.min(text.len() - start));
            let piece = text[start..end].to_string();
            let to = boundary(text, to);
            text.insert_str(to, &piece);
        }
        Mutation::Swap {
            first,
            second,
            length,
        } => {
            let (a, b) = (boundary(text, first), boundary(text, second));
            let (a, b) = (a.min(b), a.max(b));
            let a_end = boundary(text, a + length.min(b - a));
            let b_end = boundary(text, b + length.min(text.len() - b));
            let (left, right) = (text[a..a_end].to_string(), text[b..b_end].to_string());
            text.replace_range(b..b_end, &left);
            text.replace_range(a..a_end, &right);
        }
    }
}

fn assert_spans_valid(sources: &SourceMap, diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        let text = &sources.get(diagnostic.span.file).text;
        let (start, end) = (diagnostic.span.start as usize, diagnostic.span.end as usize);
        assert!(
            start <= end && end <= text.len(),
            "span {start}..{end} outside a text of {}",
            text.len()
        );
        assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "span splits a character"
        );
        let rendered = render::human(sources, diagnostic);
        assert!(rendered.contains(diagnostic.code.as_str()));
        let _ = render::json(sources, diagnostic);
        let _ = render::github(sources, diagnostic);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_journeys_never_panic(seed in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..6)) {
        let seeds = seeds();
        let mut text = seeds[seed % seeds.len()].clone();
        for mutation in &mutations {
            apply(&mut text, mutation);
        }
        let mut sources = SourceMap::new();
        let settings = settings(&mut sources);
        let file = sources.add("mutated.journey".into(), text.clone());
        let mut diagnostics = Vec::new();
        match parser::parse(file, &text) {
            Ok((ast, value_errors)) => {
                diagnostics.extend(value_errors);
                let analysis = analyze(&settings, &[(file, &ast)]);
                diagnostics.extend(analysis.diagnostics);
                for journey in &analysis.journeys {
                    let _ = journeyc::draw::to_dot(journey);
                    let _ = journeyc::draw::to_mermaid(journey);
                }
                let formatted = format::format_source(file, &text).expect("what parses, formats");
                prop_assert_eq!(format::format_source(file, &formatted).expect("formatted text parses"), formatted);
            }
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
        assert_spans_valid(&sources, &diagnostics);
    }
}
