//! Helpers the integration tests share.
#![allow(dead_code)]

pub mod postgres;
pub mod project;
pub mod servers;
pub mod test;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate's own folder.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `journeyc` binary the tests run: `JOURNEYC_TEST_BIN` when set (to
/// run the same tests against another build, such as the commit before a
/// fix), else the one cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("JOURNEYC_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_journeyc")),
        PathBuf::from,
    )
}

/// Runs the built `journeyc` in `dir`.
pub fn journeyc(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("journeyc runs")
}

/// Asserts that a run exited 0 (showing its output if not); returns its
/// stdout.
pub fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text(&output.stdout)
}

/// Output as text; journeyc writes UTF-8.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Snapshots live in the top-level `snapshots/` folder, named without the
/// test module.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// Copies a folder tree (a project) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let path = entry.expect("entry").path();
        let target: PathBuf = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// The store of the project in `dir`, opened through the library as the
/// commands open it: tests read what journeyc wrote through the store's
/// own interface, never through its table layout.
pub fn store(dir: &Path) -> Box<dyn journeyc::store::Backend> {
    let mut sources = journeyc::span::SourceMap::new();
    match journeyc::settings::Settings::load(&dir.join("journeyc.yaml"), &mut sources) {
        Ok(Ok(mut settings)) => {
            settings.root = dir.to_path_buf();
            journeyc::store::open(&settings).expect("the store opens")
        }
        // A test that broke the settings on purpose still reads the store
        // at its default place.
        _ => Box::new(
            journeyc::store::sqlite::SqliteStore::open(&dir.join("journeyc.db"))
                .expect("the store opens"),
        ),
    }
}

/// Every contact of a store, in ID order.
pub fn contacts<S: journeyc::store::Store + ?Sized>(store: &S) -> Vec<journeyc::store::Contact> {
    let mut all = Vec::new();
    loop {
        let after = all
            .last()
            .map(|contact: &journeyc::store::Contact| contact.id.clone());
        let page = store.contacts_page(after.as_deref(), 1000).expect("a page");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// `count` dormant contacts in Shanghai (`p-00000` ...) as a contacts CSV
/// The runner fixture in a new folder, on the store `store` names (its
/// own SQLite file when none), deployed by a run on 1 January 2026, with
/// `contacts` dormant contacts imported at `imported`.
pub fn runner_population(
    contacts: usize,
    imported: &str,
    store: Option<&str>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runner"),
        dir.path(),
    );
    if let Some(store) = store {
        postgres::use_store(dir.path(), store);
    }
    ok(&journeyc(
        dir.path(),
        &["run", "--now", "2026-01-01T00:00:00Z"],
    ));
    std::fs::write(dir.path().join("contacts.csv"), dormant_contacts(contacts)).expect("write");
    ok(&journeyc(
        dir.path(),
        &["import", "contacts", "contacts.csv", "--now", imported],
    ));
    dir
}

/// for the runner fixture: enough for several batches of a night.
pub fn dormant_contacts(count: usize) -> String {
    use std::fmt::Write as _;
    let mut csv = String::from("id,first_name,lifetime_value,stage,timezone,email\n");
    for index in 0..count {
        writeln!(
            csv,
            "p-{index:05},客户{index},{},dormant,Asia/Shanghai,p{index}@example.com",
            index * 100
        )
        .expect("write");
    }
    csv
}

/// Everything the runner decided in the project's store: outbox rows,
/// transitions and enrolments of every contact, each as a sorted list of
/// lines (ids left out, so two stores that decided the same compare equal).
pub fn decisions(dir: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let store = crate::common::store(dir);
    let (mut outbox, mut transitions, mut enrolments) = (Vec::new(), Vec::new(), Vec::new());
    for contact in crate::common::contacts(&*store) {
        let id = &contact.id;
        for row in store.outbox_of(id).expect("outbox") {
            outbox.push(format!(
                "{id} {} {} {} {}",
                row.step(),
                row.template,
                row.send_at,
                row.status
            ));
        }
        for transition in store.transitions_of(id, None).expect("transitions") {
            transitions.push(format!(
                "{id} {} {:?} {:?} {} {}",
                transition.journey,
                transition.from_step,
                transition.to_step,
                transition.reason,
                transition.at
            ));
        }
        for enrolment in store.enrolments_of(id).expect("enrolments") {
            enrolments.push(format!(
                "{id} {} {:?} {} {:?} {} {:?} {:?}",
                enrolment.journey,
                enrolment.state,
                enrolment.step,
                enrolment.due_at,
                enrolment.entered_at,
                enrolment.ended_at,
                enrolment.event_id
            ));
        }
    }
    outbox.sort();
    transitions.sort();
    enrolments.sort();
    (outbox, transitions, enrolments)
}

/// Points the project in `dir` at the backend the tests run on:
/// `JOURNEYC_TEST_STORE=postgres` gives it a fresh database on the test
/// cluster (so the same scenarios run on PostgreSQL), anything else keeps
/// its SQLite file.
pub fn on_test_backend(dir: &Path) {
    if std::env::var("JOURNEYC_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    postgres::use_store(dir, &postgres::Cluster::get().database());
}

/// Everything the project's store holds, as bytes: the SQLite file, or a
/// `pg_dump` of the PostgreSQL database (for tests that look for what must
/// never be stored, such as a secret).
pub fn store_dump(dir: &Path) -> Vec<u8> {
    let settings = std::fs::read_to_string(dir.join("journeyc.yaml")).expect("settings");
    let url = settings
        .lines()
        .find_map(|line| line.strip_prefix("store: "))
        .map(|value| value.trim().trim_matches('"'))
        .filter(|value| value.starts_with("postgres://"));
    match url {
        Some(url) => postgres::Cluster::get().dump(url),
        None => std::fs::read(dir.join("journeyc.db")).expect("the store file"),
    }
}
