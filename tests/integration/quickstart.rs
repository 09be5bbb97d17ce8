//! The README's quick start, copy-pasted: it must run on a fresh starter
//! and end with `.eml` files for the sample contacts and a `why` that
//! explains one of them.

use std::path::Path;
use std::process::Command;

use crate::common::{bin, root, text};

/// The shell lines of the README's quick start after the install step.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a sh block");
    block
        .lines()
        .map(|line| {
            line.split(" # ")
                .next()
                .unwrap_or(line)
                .trim_end()
                .to_string()
        })
        .filter(|line| !line.is_empty())
        .filter(|line| !line.starts_with("git clone") && !line.starts_with("cargo install"))
        .collect()
}

#[test]
fn the_quick_start_delivers_the_sample_contacts_mail_and_explains_it() {
    let lines = quick_start();
    assert!(
        lines.iter().any(|line| line.starts_with("journeyc init")),
        "the quick start starts a project: {lines:#?}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let bin_dir = bin().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("JOURNEYC_UNSUBSCRIBE_SECRET")
        .env_remove("JOURNEYC_LOG")
        .output()
        .expect("bash runs");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "the quick start failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let project = find_project(dir.path());
    let emails: Vec<_> = std::fs::read_dir(project.join("outbox"))
        .expect("deliver wrote outbox/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
        .collect();
    assert!(
        emails.len() >= 3,
        "at least three sample contacts get their first email: {emails:?}\n{stdout}"
    );
    let welcome = emails
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("readable"))
        .filter(|mail| mail.contains("List-Unsubscribe"))
        .count();
    assert!(welcome > 0, "marketing mail carries its unsubscribe link");
    // `why` explains a contact's path: the moves with their reasons, in
    // the project's timezone with its offset.
    assert!(stdout.contains("welcome"), "{stdout}");
    assert!(
        stdout.contains("entered") || stdout.contains("enrolled"),
        "why gives reasons: {stdout}"
    );
    assert!(
        stdout.contains(" +00:00") || stdout.contains(" +08:00"),
        "times carry their offset: {stdout}"
    );
}

/// The folder `journeyc init` wrote (the quick start names it).
fn find_project(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("readable")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.join("journeyc.yaml").exists())
        .expect("init wrote a project")
}
