//! Workers that split a night on one PostgreSQL store: `journeyc run
//! --worker` from several processes, `--workers N` in one, and a worker
//! killed in the middle of a partition. Each night must decide exactly
//! what one `journeyc run` alone decides on a store of its own: no outbox
//! row twice, none lost, and exactly one process closes the night.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::postgres::Cluster;
use crate::common::{copy_dir, decisions, journeyc, ok};

const IMPORTED: &str = "2026-02-28T12:00:00Z";
const NIGHT: &str = "2026-03-01T18:00:00Z";

/// The runner fixture on a new PostgreSQL database, deployed, with 3,000
/// contacts imported: the night after is the first that enrols them.
fn project() -> tempfile::TempDir {
    crate::common::runner_population(3000, IMPORTED, Some(&Cluster::get().database()))
}

/// What one `journeyc run` alone decides for the night.
fn alone() -> (Vec<String>, Vec<String>, Vec<String>) {
    let dir = project();
    ok(&journeyc(dir.path(), &["run", "--now", NIGHT]));
    decisions(dir.path())
}

/// A `journeyc run --worker` started in the background, reporting JSON.
fn worker(dir: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(crate::common::bin());
    command
        .args(["run", "--worker", "--now", NIGHT, "--format", "json"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("journeyc starts")
}

/// A worker's JSON report, once it has ended well.
fn report(child: Child) -> serde_json::Value {
    let output = child.wait_with_output().expect("the worker ends");
    serde_json::from_str(&ok(&output)).expect("a JSON report")
}

/// Waits for a paused worker to reach its pause point.
fn reached(pauses: &Path) {
    let marker = pauses.join("run.page-read.reached");
    for _ in 0..1200 {
        if marker.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the paused worker never read its first page");
}

fn go(pauses: &Path) {
    std::fs::write(pauses.join("run.page-read.go"), "").expect("write");
}

fn pause_env(pauses: &Path) -> [(&'static str, String); 2] {
    [
        ("JOURNEYC_PAUSE", "run.page-read".to_string()),
        ("JOURNEYC_PAUSE_DIR", pauses.display().to_string()),
    ]
}

fn as_refs<'e>(env: &'e [(&'static str, String)]) -> Vec<(&'static str, &'e str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// The first worker holds a partition and waits at its first page while
/// the second works every other one; then both finish, and one of them
/// closes the night.
#[test]
fn two_workers_share_a_night_exactly_once() {
    let expected = alone();
    let dir = project();
    let pauses = tempfile::tempdir().expect("temp dir");
    let env = pause_env(pauses.path());
    let first = worker(dir.path(), &as_refs(&env));
    reached(pauses.path());
    let second = worker(dir.path(), &[]);
    // The second can finish only the partitions the first does not hold;
    // the first goes on once it is let go.
    go(pauses.path());
    let reports = [report(first), report(second)];
    let closed: Vec<bool> = reports
        .iter()
        .map(|report| report["closed"].as_bool().expect("closed"))
        .collect();
    assert_eq!(
        closed.iter().filter(|closed| **closed).count(),
        1,
        "{reports:?}"
    );
    let partitions: u64 = reports
        .iter()
        .map(|report| report["partitions"].as_u64().expect("partitions"))
        .sum();
    assert_eq!(partitions, 16, "every partition worked once: {reports:?}");
    assert!(
        reports
            .iter()
            .all(|report| report["partitions"].as_u64() >= Some(1)),
        "both workers took part: {reports:?}"
    );
    let whole = reports
        .iter()
        .find(|report| report["closed"] == true)
        .expect("the closer");
    assert_eq!(whole["counts"]["contacts"], 3000, "{whole}");
    assert_eq!(decisions(dir.path()), expected);
    // The night is closed: running it again changes nothing.
    let again: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        dir.path(),
        &["run", "--now", NIGHT, "--format", "json"],
    )))
    .expect("JSON");
    assert_eq!(again["counts"]["queued"], 0, "{again}");
    assert_eq!(decisions(dir.path()), expected);
}

/// A worker dies in the middle of a partition while another works the
/// rest: the other takes the dead one's partition over, the night
/// completes, and nothing is lost or written twice.
#[test]
fn a_killed_worker_leaves_its_partition_to_another() {
    let expected = alone();
    let dir = project();
    let pauses = tempfile::tempdir().expect("temp dir");
    let mut env = pause_env(pauses.path()).to_vec();
    env.push(("JOURNEYC_FAULT", "run.contact:100".to_string()));
    let doomed = worker(dir.path(), &as_refs(&env));
    reached(pauses.path());
    let survivor = worker(dir.path(), &[]);
    go(pauses.path());
    let output = doomed.wait_with_output().expect("the worker ends");
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("fault injected"),
        "the first worker dies mid-partition: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let survived = report(survivor);
    assert_eq!(survived["closed"], true, "{survived}");
    assert_eq!(survived["partitions"], 16, "{survived}");
    assert_eq!(survived["counts"]["contacts"], 3000, "{survived}");
    assert_eq!(decisions(dir.path()), expected);
}

/// `--workers 2` in one process: the same night, with two connections.
#[test]
fn workers_in_one_process_decide_what_one_run_does() {
    let expected = alone();
    let dir = project();
    let report: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        dir.path(),
        &["run", "--workers", "2", "--now", NIGHT, "--format", "json"],
    )))
    .expect("JSON");
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(report["partitions"], 16, "{report}");
    assert_eq!(report["counts"]["contacts"], 3000, "{report}");
    assert_eq!(decisions(dir.path()), expected);
}

/// A SQLite store has one writer: `--workers` says so and does nothing.
#[test]
fn workers_need_a_postgresql_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runner"),
        dir.path(),
    );
    let output = journeyc(dir.path(), &["run", "--workers", "2"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SQLite") && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
}
