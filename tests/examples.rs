//! Every journey in `journeys/` and `examples/` is checked, so the examples
//! can never rot; and every one of them is already in canonical layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use journeyc::{format, project, render};

fn project_settings(folder: &str) -> Vec<PathBuf> {
    let groups = project::group_paths(&[PathBuf::from(folder)]).expect("projects are found");
    groups.into_keys().collect()
}

fn assert_clean(folder: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd to the crate");
    let projects = project_settings(folder);
    assert!(!projects.is_empty(), "{folder} holds no project");
    for settings in projects {
        let checked = project::load(&settings, &BTreeSet::new()).expect("project loads");
        let rendered: Vec<String> = checked
            .diagnostics_for(None)
            .iter()
            .map(|diagnostic| render::human(&checked.sources, diagnostic))
            .collect();
        assert!(
            rendered.is_empty(),
            "{}:\n{}",
            settings.display(),
            rendered.join("\n")
        );
        assert!(
            !checked.analysis.journeys.is_empty(),
            "{} compiles no journey",
            settings.display()
        );
        for (id, file) in checked.sources.files() {
            if file
                .path
                .extension()
                .is_some_and(|extension| extension == "journey")
            {
                let formatted = format::format_source(id, &file.text).expect("formats");
                assert_eq!(
                    formatted,
                    file.text,
                    "{} is not in canonical layout: run `journeyc fmt --write`",
                    file.path.display()
                );
            }
        }
    }
}

#[test]
fn shipped_journeys_check_clean() {
    assert_clean("journeys");
}

#[test]
fn examples_check_clean() {
    assert_clean("examples");
}

#[test]
fn grammar_reference_lists_every_check_code() {
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("GRAMMAR.md"))
            .expect("GRAMMAR.md");
    for code in journeyc::diagnostic::Code::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            code.as_str(),
            code.severity().as_str(),
            code.summary()
        );
        assert!(reference.contains(&row), "GRAMMAR.md lacks the row: {row}");
    }
}
