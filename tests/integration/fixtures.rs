//! Fixture-driven tests: every `.journey` file in `tests/fixtures` is
//! checked against the shared `tests/fixtures/journeyc.yaml`. A fixture
//! named `err_*` lists the diagnostics it must produce in `# expect: CODE
//! LINE:COLUMN` lines, and its rendered diagnostics are snapshotted; any
//! other fixture must check clean, and its compiled graph is snapshotted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::snapshot_settings;
use journeyc::diagnostic::render;
use journeyc::diagnostic::Code;
use journeyc::{draw as graph, project};

fn settings_for(path: &Path) -> PathBuf {
    project::find_settings(path).expect("fixtures have settings")
}

fn expectations(text: &str) -> BTreeSet<(String, usize, usize)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(|expectation| {
            let (code, position) = expectation.split_once(' ').expect("`CODE LINE:COLUMN`");
            let (line, column) = position.trim().split_once(':').expect("`LINE:COLUMN`");
            (
                code.to_string(),
                line.parse().expect("line"),
                column.parse().expect("column"),
            )
        })
        .collect()
}

/// Checks one fixture; returns the codes it was expected to produce.
fn check_fixture(
    path: &Path,
    settings: &Path,
    reported: &BTreeSet<PathBuf>,
) -> (String, BTreeSet<String>) {
    let text = std::fs::read_to_string(path).expect("fixture is readable");
    let expected = expectations(&text);
    let checked = project::load(settings, reported).expect("fixture project loads");
    let filter = (!reported.is_empty()).then_some(reported);
    let diagnostics = checked.diagnostics_for(filter);
    let found: BTreeSet<(String, usize, usize)> = diagnostics
        .iter()
        .map(|diagnostic| {
            let at = render::location(&checked.sources, diagnostic.span);
            (diagnostic.code.as_str().to_string(), at.line, at.column)
        })
        .collect();
    let rendered: String = diagnostics
        .iter()
        .map(|diagnostic| render::human(&checked.sources, diagnostic) + "\n")
        .collect();
    assert_eq!(
        found,
        expected,
        "{}: diagnostics differ from `# expect:`\n{rendered}",
        path.display()
    );

    let is_error_fixture = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|folder| folder.to_string_lossy().starts_with("err_"))
        || path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("err_"));
    let snapshot = if is_error_fixture {
        assert!(
            !expected.is_empty(),
            "{}: an err_ fixture must expect diagnostics",
            path.display()
        );
        rendered
    } else {
        let mut graphs = String::new();
        for journey in &checked.analysis.journeys {
            if reported.is_empty() || checked.sources.path(journey.span.file) == path {
                graphs.push_str(&graph::to_text(journey));
            }
        }
        assert!(
            !graphs.is_empty(),
            "{}: a valid fixture must define a journey",
            path.display()
        );
        graphs
    };
    (
        snapshot,
        expected.into_iter().map(|(code, _, _)| code).collect(),
    )
}

#[test]
fn journey_fixtures() {
    snapshot_settings().bind(|| {
        insta::glob!("../fixtures", "*.journey", |path| {
            let relative = relative(path);
            let reported = BTreeSet::from([relative.clone()]);
            let (snapshot, _) = check_fixture(&relative, &settings_for(&relative), &reported);
            insta::assert_snapshot!(snapshot);
        });
    });
}

#[test]
fn settings_fixtures() {
    snapshot_settings().bind(|| {
        insta::glob!("../fixtures", "settings/*/journeyc.yaml", |path| {
            let relative = relative(path);
            let (snapshot, _) = check_fixture(&relative, &relative, &BTreeSet::new());
            insta::assert_snapshot!(snapshot);
        });
    });
}

/// Paths as a user types them, so snapshots do not depend on the checkout.
fn relative(path: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

/// `# expect: CODE [PATH:]LINE:COLUMN` where PATH is relative to the
/// project folder (default: the file holding the line).
fn project_expectations(root: &Path) -> BTreeSet<(String, String, usize, usize)> {
    let mut expected = BTreeSet::new();
    for path in project::journey_files(&root.join("journeys")).expect("journeys folder") {
        let text = std::fs::read_to_string(&path).expect("readable");
        let own = path
            .strip_prefix(root)
            .expect("inside the project")
            .display()
            .to_string();
        for expectation in text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
        {
            let (code, place) = expectation.split_once(' ').expect("`CODE PLACE`");
            let mut pieces: Vec<&str> = place.rsplitn(3, ':').collect();
            pieces.reverse();
            let (file, line, column) = match pieces.as_slice() {
                [file, line, column] => ((*file).to_string(), line, column),
                [line, column] => (own.clone(), line, column),
                _ => panic!("bad expectation `{expectation}`"),
            };
            expected.insert((
                code.to_string(),
                file,
                line.parse().expect("line"),
                column.parse().expect("column"),
            ));
        }
    }
    expected
}

/// Each folder in `tests/fixtures/projects` is a whole project (settings,
/// journeys, templates) for the checks that span files.
#[test]
fn project_fixtures() {
    snapshot_settings().bind(|| {
        insta::glob!("../fixtures", "projects/*/journeyc.yaml", |path| {
            let settings = relative(path);
            let root = settings.parent().expect("project folder").to_path_buf();
            let checked =
                project::load(&settings, &BTreeSet::new()).expect("fixture project loads");
            let diagnostics = checked.diagnostics_for(None);
            let found: BTreeSet<(String, String, usize, usize)> = diagnostics
                .iter()
                .map(|diagnostic| {
                    let at = render::location(&checked.sources, diagnostic.span);
                    let file = Path::new(&at.file)
                        .strip_prefix(&root)
                        .expect("inside the project")
                        .display()
                        .to_string();
                    (
                        diagnostic.code.as_str().to_string(),
                        file,
                        at.line,
                        at.column,
                    )
                })
                .collect();
            let rendered: String = diagnostics
                .iter()
                .map(|diagnostic| render::human(&checked.sources, diagnostic) + "\n")
                .collect();
            assert_eq!(
                found,
                project_expectations(&root),
                "{}: diagnostics differ from `# expect:`\n{rendered}",
                root.display()
            );
            insta::assert_snapshot!(rendered);
        });
    });
}

#[test]
fn every_check_code_has_a_fixture() {
    let mut covered = BTreeSet::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut pending = vec![fixtures];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixtures folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.exists() {
                // Some fixtures are not UTF-8, or are dangling symlinks,
                // on purpose.
                let text =
                    String::from_utf8_lossy(&std::fs::read(&path).expect("fixture")).into_owned();
                let codes = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("# expect: "))
                    .filter_map(|expectation| expectation.split_whitespace().next());
                covered.extend(codes.map(str::to_string));
            }
        }
    }
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|code| code.as_str())
        .filter(|code| !covered.contains(*code))
        .collect();
    assert!(
        missing.is_empty(),
        "check codes without a fixture: {missing:?}"
    );
}
