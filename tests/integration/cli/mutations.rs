//! Mutated inputs of every kind a user or a pull request hands journeyc:
//! journeys, settings, templates, CSV and JSON Lines imports, command-line
//! arguments. Whatever the bytes, every command ends within the deadline
//! with exit 0, 1 or 2, never a panic or a signal, and every problem in a
//! file is located.
//!
//! `JOURNEYC_MUTATIONS` sets the cases per kind (default 40, as CI runs
//! them); `JOURNEYC_MUTATIONS=10000` with `JOURNEYC_TEST_BIN` pointing at a
//! release build is the long campaign (BENCHMARKS.md has no figure for it:
//! it is a correctness run, recorded in the issue's closing note).

use std::path::{Path, PathBuf};
use std::process::Output;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value as Json;

use crate::common::{copy_dir, root, text};

/// Pieces that have broken journeyc before, or sit at a limit: operators,
/// brackets, keywords, huge numbers, template tags, encodings, line ends.
const TOKENS: &[&[u8]] = &[
    b"not ",
    b" and ",
    b" or ",
    b"(",
    b")",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"repeat 100 times every 1d { ",
    b"wait ",
    b"18446744073709551616",
    b"99999999999999d",
    b"25:00",
    b"2026-02-30",
    b"goto nowhere",
    b"-> ",
    b"# ",
    b"\n",
    b"\r",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xe4\xb8",
    b"\0",
    b"\x1b[31m",
    b"{%",
    b"%}",
    b"{%}",
    b"{{",
    b"}}",
    b"{{ now | date(\"%Q\") }}",
    b"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    b"{% include \"missing\" %}",
    b": ",
    b"- ",
    b"&a ",
    b"*a",
    b"!!binary ",
    b",",
    b"\"\"",
    b"when ",
    b"split { ",
    b"\xe5\xae\xa2\xe6\x88\xb7",
];

#[derive(Clone, Debug)]
enum Mutation {
    Insert { at: u16, token: usize, times: usize },
    Delete { at: u16, length: usize },
    Duplicate { at: u16, length: usize },
    Flip { at: u16, byte: u8 },
    Truncate { at: u16 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<u16>(), 0..TOKENS.len(), prop_oneof![9 => Just(1usize), 1 => 2..300usize])
            .prop_map(|(at, token, times)| Mutation::Insert { at, token, times }),
        2 => (any::<u16>(), 1..80usize).prop_map(|(at, length)| Mutation::Delete { at, length }),
        1 => (any::<u16>(), 1..200usize).prop_map(|(at, length)| Mutation::Duplicate { at, length }),
        2 => (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        1 => (any::<u16>()).prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..5)
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for mutation in mutations {
        // `at` is a fraction of the length (in 65536ths).
        let place = |at: u16, length: usize| (usize::from(at) * length) >> 16;
        match *mutation {
            Mutation::Insert { at, token, times } => {
                let at = place(at, bytes.len());
                let piece = TOKENS[token].repeat(times);
                bytes.splice(at..at, piece);
            }
            Mutation::Delete { at, length } => {
                let at = place(at, bytes.len());
                let end = (at + length).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Duplicate { at, length } => {
                let at = place(at, bytes.len());
                let end = (at + length).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(end..end, piece);
            }
            Mutation::Flip { at, byte } => {
                if !bytes.is_empty() {
                    let at = place(at, bytes.len() - 1);
                    bytes[at] = byte;
                }
            }
            Mutation::Truncate { at } => {
                let at = place(at, bytes.len());
                bytes.truncate(at);
            }
        }
    }
    bytes
}

fn cases() -> u32 {
    std::env::var("JOURNEYC_MUTATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(40)
}

/// A runner for `share` of a kind's cases (a kind with several seed files
/// splits its cases between them).
fn runner(share: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: (cases() / share).max(1),
        failure_persistence: None,
        // Shrinking re-runs processes; the case printed is small already.
        max_shrink_iters: 64,
        ..Config::default()
    })
}

/// A fresh copy of the shipped journeys project (settings, journeys,
/// templates) to mutate.
fn shipped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&root().join("journeys"), dir.path());
    dir
}

/// Checks what every command must hold, whatever its input.
fn holds(output: &Output, what: &str) -> Result<(), TestCaseError> {
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    prop_assert!(
        matches!(output.status.code(), Some(0..=2)),
        "{what}: exit {:?}\n{printed}",
        output.status
    );
    prop_assert!(!printed.contains("panicked"), "{what}: a panic\n{printed}");
    Ok(())
}

/// `check --format json` prints one located diagnostic per line.
fn located(output: &Output, what: &str) -> Result<(), TestCaseError> {
    for line in text(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
    {
        let diagnostic: Json = serde_json::from_str(line)
            .map_err(|error| TestCaseError::fail(format!("{what}: not JSON ({error}): {line}")))?;
        prop_assert!(
            diagnostic["file"]
                .as_str()
                .is_some_and(|file| !file.is_empty())
                && diagnostic["line"].as_u64().is_some_and(|line| line >= 1)
                && diagnostic["column"]
                    .as_u64()
                    .is_some_and(|column| column >= 1),
            "{what}: a diagnostic without a place: {line}"
        );
    }
    Ok(())
}

fn mutate_and_check(relative: &str, share: u32) {
    let original = std::fs::read(root().join("journeys").join(relative)).expect("seed");
    runner(share)
        .run(&mutations(), |mutations| {
            let project = shipped();
            let path = project.path().join(relative);
            std::fs::write(&path, apply(&original, &mutations)).expect("write");
            let output = super::hostile::within(project.path(), &["check", "--format", "json"]);
            holds(&output, relative)?;
            prop_assert_ne!(output.status.code(), Some(2), "check reads its own project");
            located(&output, relative)
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn mutated_journeys_are_checked_or_located() {
    for journey in [
        "dormant_winback.journey",
        "sop_day123.journey",
        "lead_scoring.journey",
    ] {
        mutate_and_check(journey, 3);
    }
}

#[test]
fn mutated_settings_are_checked_or_located() {
    mutate_and_check("journeyc.yaml", 1);
}

#[test]
fn mutated_templates_are_checked_or_located() {
    let templates = root().join("journeys/templates");
    let mut found: Vec<PathBuf> = Vec::new();
    let mut pending = vec![templates.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("templates") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    // An email, an SMS and a task template of the shipped journeys.
    for extension in ["email", "sms", "task"] {
        if let Some(path) = found
            .iter()
            .find(|path| path.extension().is_some_and(|found| found == extension))
        {
            let relative = path.strip_prefix(root().join("journeys")).expect("inside");
            mutate_and_check(&relative.to_string_lossy(), 3);
        }
    }
}

fn mutate_and_import(kind: &str, seed: &Path, name: &str) {
    let original = std::fs::read(seed).expect("seed");
    // The first rows only: enough for every column, quick to import.
    let original: Vec<u8> = original
        .split_inclusive(|byte| *byte == b'\n')
        .take(20)
        .flatten()
        .copied()
        .collect();
    runner(1)
        .run(&mutations(), |mutations| {
            let project = shipped();
            std::fs::write(project.path().join(name), apply(&original, &mutations)).expect("write");
            let output = super::hostile::within(
                project.path(),
                &["import", kind, name, "--now", "2026-11-23T12:00:00Z"],
            );
            holds(&output, name)?;
            // Every rejected row is named by its line.
            for line in text(&output.stdout).lines() {
                if !line.starts_with(&format!("{name}: ")) {
                    let place = line.strip_prefix(&format!("{name}:")).and_then(|rest| {
                        rest.split(':')
                            .next()
                            .and_then(|line| line.parse::<usize>().ok())
                    });
                    prop_assert!(place.is_some(), "a row problem without its line: {line}");
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn mutated_imports_are_imported_or_located() {
    let population = root().join("tests/fixtures/population");
    mutate_and_import("contacts", &population.join("contacts.csv"), "contacts.csv");
    mutate_and_import("events", &population.join("events.jsonl"), "events.jsonl");
}

/// Words the command line is made of, right and wrong.
const WORDS: &[&str] = &[
    "check",
    "fmt",
    "graph",
    "run",
    "deliver",
    "status",
    "why",
    "tasks",
    "import",
    "preview",
    "contacts",
    "events",
    "--format",
    "json",
    "text",
    "dot",
    "mermaid",
    "--now",
    "2026-11-23T18:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "+10000-01-01T00:00:00Z",
    "yesterday",
    "--days",
    "0",
    "100000000",
    "-1",
    "--journey",
    "dormant_winback",
    "nope",
    "--dry-run",
    "--check",
    "--write",
    "--deny",
    "warnings",
    "--vars",
    "/etc/passwd",
    "..",
    "/",
    "",
    "journeys",
    "contacts.csv",
    "c-1",
    "\u{1b}[31m",
    "客户",
    "--project",
    ".",
    "--channel",
    "email",
    "sms",
    "--limit",
    "--help",
    "-h",
    "--version",
];

#[test]
fn mutated_arguments_end_with_a_status() {
    let words = proptest::collection::vec(0..WORDS.len(), 0..7);
    runner(1)
        .run(&words, |indices| {
            let project = shipped();
            let args: Vec<&str> = indices.iter().map(|&index| WORDS[index]).collect();
            let output = super::hostile::within(project.path(), &args);
            holds(&output, &args.join(" "))
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}
