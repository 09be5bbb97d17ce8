//! `journeyc store copy FROM TO`: a store moved from SQLite to PostgreSQL
//! and back holds the same rows with the same ids, and every copy goes on
//! to run the next night exactly as the original does.

use std::path::Path;

use journeyc::store::copy::{Cell, TABLES};

use crate::common::postgres::{use_store, Cluster};
use crate::common::{copy_dir, decisions, journeyc, ok, text};

const IMPORTED: &str = "2026-02-28T12:00:00Z";
const NIGHTS: [&str; 3] = [
    "2026-03-01T18:00:00Z",
    "2026-03-02T18:00:00Z",
    "2026-03-09T18:00:00Z",
];

/// The runner fixture on SQLite, deployed, with 1,000 contacts imported.
fn project() -> tempfile::TempDir {
    crate::common::runner_population(1000, IMPORTED, None)
}

/// The same project files, on another store.
fn same_project(from: &Path, store: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["journeyc.yaml", "journeys", "templates"] {
        let path = from.join(name);
        if path.is_dir() {
            copy_dir(&path, &dir.path().join(name));
        } else if path.exists() {
            std::fs::copy(&path, dir.path().join(name)).expect("copy");
        }
    }
    use_store(dir.path(), store);
    dir
}

/// Every row of the tables named, as the store hands them over, sorted.
fn rows(dir: &Path, tables: &[&str]) -> Vec<(String, Vec<Vec<Cell>>)> {
    let store = crate::common::store(dir);
    let mut dumped = Vec::new();
    store
        .dump(&mut |table, rows| {
            let mut rows: Vec<Vec<Cell>> = rows.collect::<Result<_, _>>()?;
            rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            if tables.contains(&table.name) {
                dumped.push((table.name.to_string(), rows));
            }
            Ok(())
        })
        .expect("dumps");
    dumped
}

/// `journeyc store copy FROM TO --format json` in `dir`: the rows copied
/// per table.
fn copy(dir: &Path, from: &str, to: &str) -> serde_json::Value {
    let output = journeyc(dir, &["store", "copy", from, to, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&output)).expect("JSON");
    report["tables"].clone()
}

#[test]
fn a_store_copied_to_postgres_and_back_holds_the_same_rows_and_runs_on() {
    let sqlite = project();
    for night in &NIGHTS[..2] {
        ok(&journeyc(sqlite.path(), &["run", "--now", night]));
    }
    let url = Cluster::get().database();
    let copied = copy(sqlite.path(), "journeyc.db", &url);
    assert_eq!(copied["contacts"], 1000, "{copied}");
    assert!(copied["outbox"].as_u64() > Some(0), "{copied}");
    assert_eq!(copied["runs"], 3, "{copied}");
    let postgres = same_project(sqlite.path(), &url);
    let back = same_project(sqlite.path(), "back.db");
    copy(back.path(), &url, "back.db");

    let every: Vec<&str> = TABLES.iter().map(|table| table.name).collect();
    let original = rows(sqlite.path(), &every);
    assert_eq!(original.len(), TABLES.len());
    assert!(
        rows(postgres.path(), &every) == original,
        "SQLite to PostgreSQL changed rows"
    );
    assert!(
        rows(back.path(), &every) == original,
        "and back changed rows"
    );

    // The next night on each copy decides what it decides on the
    // original; new rows get ids after the copied ones (on SQLite the very
    // same ids: PostgreSQL visits contacts by partition, so it numbers the
    // new rows in another order).
    let counted = ["enrolments", "transitions", "outbox"];
    let before = ids(sqlite.path(), &counted);
    for dir in [sqlite.path(), postgres.path(), back.path()] {
        ok(&journeyc(dir, &["run", "--now", NIGHTS[2]]));
    }
    let decided = decisions(sqlite.path());
    assert!(!decided.0.is_empty() && !decided.1.is_empty());
    assert!(
        decisions(postgres.path()) == decided,
        "PostgreSQL decided otherwise"
    );
    assert!(
        decisions(back.path()) == decided,
        "the copy back decided otherwise"
    );
    let planned = ["enrolments", "transitions", "outbox", "assignments"];
    assert!(
        rows(back.path(), &planned) == rows(sqlite.path(), &planned),
        "the copy back numbered new rows otherwise"
    );
    let after = ids(postgres.path(), &counted);
    for ((table, before), (_, after)) in before.iter().zip(&after) {
        let last = before.iter().max().copied().unwrap_or(0);
        let kept: Vec<i64> = after.iter().copied().filter(|id| *id <= last).collect();
        assert_eq!(
            &kept, before,
            "{table}: the copied ids, and no new row among them"
        );
    }
    let grown = |table: usize| after[table].1.len() > before[table].1.len();
    assert!(
        grown(1) && grown(2),
        "the night added transitions and messages"
    );
}

/// The ids of each table named, sorted.
fn ids(dir: &Path, tables: &[&str]) -> Vec<(String, Vec<i64>)> {
    rows(dir, tables)
        .into_iter()
        .map(|(table, rows)| {
            let mut ids: Vec<i64> = rows
                .iter()
                .map(|row| match row[0] {
                    Cell::Int(id) => id,
                    _ => panic!("{table}: an id is an integer"),
                })
                .collect();
            ids.sort_unstable();
            (table, ids)
        })
        .collect()
}

#[test]
fn a_copy_into_a_store_that_holds_rows_changes_nothing() {
    let sqlite = project();
    let other = project();
    let target = other.path().join("journeyc.db");
    let target = target.to_str().expect("a UTF-8 path");
    let output = journeyc(sqlite.path(), &["store", "copy", "journeyc.db", target]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    let error = text(&output.stderr);
    assert!(
        error.contains("already holds rows in `contacts`") && error.contains("empty store"),
        "{error}"
    );
    assert_eq!(
        crate::common::store(other.path())
            .contact_count()
            .expect("count"),
        1000,
        "the target keeps what it held, no more"
    );
    let output = journeyc(sqlite.path(), &["store", "copy", "missing.db", "new.db"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("no store at `missing.db`"));
    assert!(!sqlite.path().join("new.db").exists(), "nothing created");
}

#[test]
fn a_night_still_open_is_not_copied() {
    let sqlite = project();
    let died = std::process::Command::new(crate::common::bin())
        .args(["run", "--now", NIGHTS[0]])
        .current_dir(sqlite.path())
        .env("JOURNEYC_FAULT", "run.batch:1")
        .output()
        .expect("journeyc runs");
    assert!(!died.status.success(), "the fault stops the run");
    let output = journeyc(sqlite.path(), &["store", "copy", "journeyc.db", "copy.db"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("a night is still open"),
        "{}",
        text(&output.stderr)
    );
    let copied_into = same_project(sqlite.path(), "copy.db");
    assert_eq!(
        crate::common::store(copied_into.path())
            .contact_count()
            .expect("count"),
        0,
        "the failed copy wrote nothing"
    );
    // Once the run has finished the night, the store copies.
    ok(&journeyc(sqlite.path(), &["run", "--now", NIGHTS[0]]));
    let copied = copy(sqlite.path(), "journeyc.db", "copy.db");
    assert_eq!(copied["contacts"], 1000);
}

#[test]
fn a_password_on_the_command_line_is_refused_unseen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = journeyc(
        dir.path(),
        &[
            "store",
            "copy",
            "postgres://journeyc:hunter2-secret@db.internal/marketing",
            "copy.db",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(error.contains("holds a password"), "{error}");
    assert!(!error.contains("hunter2-secret"), "{error}");
    assert!(!dir.path().join("copy.db").exists());
}
