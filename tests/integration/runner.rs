//! `journeyc run` driven night by night with `--now` on real SQLite files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod findings;
mod invariants;

use crate::common::{copy_dir, decisions, journeyc, ok, snapshot_settings};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runner")
}

/// A fresh copy of the runner fixture project.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&fixture(), dir.path());
    crate::common::on_test_backend(dir.path());
    dir
}

const CONTACTS: &str = "id,first_name,lifetime_value,stage,timezone,email,phone,tags\n\
c-1,王芳,150000,dormant,Asia/Shanghai,wang@example.com,+8613800000001,\n\
c-2,李雷,5000,dormant,Asia/Shanghai,li@example.com,+8613800000002,\n\
c-3,Sam,20000,dormant,America/New_York,sam@example.com,+12125550103,\n\
c-4,张伟,8000,dormant,Asia/Shanghai,zhang@example.com,+8613800000004,\n\
c-5,Ada,1000,aware,America/New_York,ada@example.com,+12125550105,morning\n";

const EVENTS: &str = "{\"id\": \"e-1\", \"contact_id\": \"c-1\", \"name\": \"email_opened\", \"at\": \"2026-03-03T02:00:00Z\"}\n\
{\"id\": \"e-2\", \"contact_id\": \"c-1\", \"name\": \"demo_requested\", \"at\": \"2026-03-04T03:00:00Z\"}\n\
{\"id\": \"e-3\", \"contact_id\": \"c-3\", \"name\": \"unsubscribed\", \"at\": \"2026-03-04T05:00:00Z\"}\n\
{\"id\": \"e-4\", \"contact_id\": \"c-4\", \"name\": \"wechat_reply\", \"at\": \"2026-03-05T06:00:00Z\", \"properties\": {\"text\": \"请问价格多少？\"}}\n";

/// Runs the night `now`, then runs it again and asserts the second run
/// changed nothing: the same `now` twice is a no-op.
fn night_twice(dir: &Path, now: &str) {
    ok(&journeyc(dir, &["run", "--now", now]));
    let again: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        dir,
        &["run", "--now", now, "--format", "json"],
    )))
    .expect("JSON summary");
    let counts = &again["counts"];
    assert_eq!(
        (
            counts["transitions"].as_u64(),
            counts["queued"].as_u64(),
            counts["enrolled"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "running {now} twice changed something: {again}"
    );
}

/// The first run, before anything happens: the journeys are live from
/// then on (a journey never enrols on what came before its launch).
fn deploy(dir: &Path) {
    ok(&journeyc(dir, &["run", "--now", "2026-01-01T00:00:00Z"]));
}

/// Imports the population and runs every night at 02:00 Shanghai (18:00
/// UTC) from 1 to 24 March 2026, running each night twice.
fn scenario(dir: &Path) {
    deploy(dir);
    std::fs::write(dir.join("contacts.csv"), CONTACTS).expect("write");
    std::fs::write(dir.join("events.jsonl"), EVENTS).expect("write");
    ok(&journeyc(
        dir,
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-02-28T12:00:00Z",
        ],
    ));
    ok(&journeyc(dir, &["import", "events", "events.jsonl"]));
    for day in 1..=24 {
        let now = format!("2026-03-{day:02}T18:00:00Z");
        night_twice(dir, &now);
    }
}

/// Every contact's path and messages, as `why --format json` tells them.
fn story(dir: &Path) -> String {
    let mut out = String::new();
    for contact in ["c-1", "c-2", "c-3", "c-4", "c-5"] {
        let why: serde_json::Value =
            serde_json::from_str(&ok(&journeyc(dir, &["why", contact, "--format", "json"])))
                .expect("JSON");
        writeln!(out, "== {contact}").expect("write");
        for transition in why["transitions"].as_array().expect("transitions") {
            let from = transition["from"].as_str().unwrap_or("");
            let to = transition["to"].as_str().unwrap_or("(left)");
            writeln!(
                out,
                "{} {} {from} -> {to}: {}",
                transition["at"].as_str().unwrap_or(""),
                transition["journey"].as_str().unwrap_or(""),
                transition["reason"].as_str().unwrap_or("")
            )
            .expect("write");
        }
        for row in why["outbox"].as_array().expect("outbox") {
            writeln!(
                out,
                "outbox {} {} {} {} at {}",
                row["journey"].as_str().unwrap_or(""),
                row["channel"].as_str().unwrap_or(""),
                row["template"].as_str().unwrap_or(""),
                row["status"].as_str().unwrap_or(""),
                row["send_at"].as_str().unwrap_or("")
            )
            .expect("write");
        }
    }
    out
}

fn snapshot(name: &str, value: &str) {
    snapshot_settings().bind(|| insta::assert_snapshot!(name, value));
}

#[test]
fn three_weeks_of_nights_give_the_planned_paths_and_messages() {
    let dir = project();
    scenario(dir.path());
    let story = story(dir.path());
    // The rules, pinned one by one (the snapshot holds the whole story):
    // the VIP opened the email and converted; the unsubscriber exited; the
    // price question rescued c-4 into a task, then a hand-off.
    assert!(story.contains("goal: event \"demo_requested\""), "{story}");
    assert!(story.contains("exit: on event \"unsubscribed\""), "{story}");
    assert!(
        story.contains("rescue: on event \"wechat_reply\""),
        "{story}"
    );
    assert!(story.contains("handed off to morning"), "{story}");
    snapshot("runner_three_weeks", &story);

    let status: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        dir.path(),
        &[
            "status",
            "--format",
            "json",
            "--now",
            "2026-03-24T18:00:00Z",
        ],
    )))
    .expect("JSON");
    snapshot(
        "runner_three_weeks_status",
        &serde_json::to_string_pretty(&status).expect("JSON"),
    );
}

#[test]
fn identical_inputs_give_identical_results() {
    let first = project();
    let second = project();
    scenario(first.path());
    scenario(second.path());
    assert_eq!(story(first.path()), story(second.path()));
}

/// Sends of one contact after importing it at `imported` (tagged
/// `morning`) and running at each of `nights`.
fn morning_sends(timezone: &str, imported: &str, nights: &[&str]) -> Vec<String> {
    let dir = project();
    let csv = format!(
        "id,first_name,lifetime_value,stage,timezone,tags\nc-9,Ny,1,aware,{timezone},morning\n"
    );
    deploy(dir.path());
    std::fs::write(dir.path().join("contacts.csv"), csv).expect("write");
    ok(&journeyc(
        dir.path(),
        &["import", "contacts", "contacts.csv", "--now", imported],
    ));
    for now in nights {
        ok(&journeyc(dir.path(), &["run", "--now", now]));
        ok(&journeyc(dir.path(), &["run", "--now", now]));
    }
    let why: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        dir.path(),
        &["why", "c-9", "--format", "json"],
    )))
    .expect("JSON");
    why["outbox"]
        .as_array()
        .expect("outbox")
        .iter()
        .map(|row| {
            format!(
                "{} {}",
                row["template"].as_str().unwrap_or(""),
                row["send_at"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn the_spring_gap_in_new_york() {
    // Imported Saturday 7 March 2026, 07:00 EST. 02:30 on 8 March does not
    // exist (clocks jump to 03:00 EDT = 07:00 UTC); 01:30 on 9 March is EDT;
    // 09:00 is 13:00 UTC from now on. Each wait fires exactly once.
    let sends = morning_sends(
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &[
            "2026-03-08T18:00:00Z",
            "2026-03-09T18:00:00Z",
            "2026-03-10T18:00:00Z",
        ],
    );
    assert_eq!(
        sends,
        [
            "morning/first 2026-03-08T07:00:00Z",
            "morning/second 2026-03-09T05:30:00Z",
            "morning/third 2026-03-09T13:00:00Z"
        ]
    );
}

#[test]
fn the_autumn_overlap_in_new_york() {
    // Imported 31 October 2026, 02:00 EDT. 01:30 on 1 November happens
    // twice (EDT, then EST): the wait fires once, at the first; 09:00 that
    // day is EST, 14:00 UTC.
    let sends = morning_sends(
        "America/New_York",
        "2026-10-31T06:00:00Z",
        &[
            "2026-10-31T18:00:00Z",
            "2026-11-01T18:00:00Z",
            "2026-11-02T18:00:00Z",
        ],
    );
    assert_eq!(
        sends,
        [
            "morning/first 2026-10-31T06:30:00Z",
            "morning/second 2026-11-01T05:30:00Z",
            "morning/third 2026-11-01T14:00:00Z"
        ]
    );
}

#[test]
fn shanghai_has_no_daylight_saving() {
    let sends = morning_sends(
        "Asia/Shanghai",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T18:00:00Z", "2026-03-09T18:00:00Z"],
    );
    // 20:00 in Shanghai: 02:30 next day is 18:30 UTC, 01:30 the day after
    // is 17:30 UTC, then 09:00 is 01:00 UTC.
    assert_eq!(
        sends,
        [
            "morning/first 2026-03-07T18:30:00Z",
            "morning/second 2026-03-08T17:30:00Z",
            "morning/third 2026-03-09T01:00:00Z"
        ]
    );
}

#[test]
fn dry_run_writes_nothing() {
    let dir = project();
    deploy(dir.path());
    std::fs::write(dir.path().join("contacts.csv"), CONTACTS).expect("write");
    ok(&journeyc(
        dir.path(),
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-02-28T12:00:00Z",
        ],
    ));
    let summary: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        dir.path(),
        &[
            "run",
            "--dry-run",
            "--now",
            "2026-03-01T18:00:00Z",
            "--format",
            "json",
        ],
    )))
    .expect("JSON");
    assert!(
        summary["counts"]["queued"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
    let status = ok(&journeyc(
        dir.path(),
        &["status", "--now", "2026-03-01T18:00:00Z"],
    ));
    assert_eq!(status, "at 2026-03-02 02:00:00 +08:00\noutbox: empty\n");
}

#[test]
fn a_second_run_on_the_same_store_stops_at_once() {
    let dir = project();
    std::fs::write(dir.path().join("contacts.csv"), CONTACTS).expect("write");
    ok(&journeyc(
        dir.path(),
        &["import", "contacts", "contacts.csv"],
    ));
    // The test takes the store's run lock as another run would, through
    // the backend (a lock file for SQLite, an advisory lock for
    // PostgreSQL).
    let store = crate::common::store(dir.path());
    let lock = store.lock_run().expect("the test holds the lock");
    let output = journeyc(dir.path(), &["run", "--now", "2026-03-01T18:00:00Z"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("another `journeyc run` is working on"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(lock);
    ok(&journeyc(
        dir.path(),
        &["run", "--now", "2026-03-01T18:00:00Z"],
    ));
}

#[test]
fn contacts_at_a_removed_step_stop_the_run() {
    let dir = project();
    deploy(dir.path());
    std::fs::write(dir.path().join("contacts.csv"), CONTACTS).expect("write");
    ok(&journeyc(
        dir.path(),
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-02-28T12:00:00Z",
        ],
    ));
    ok(&journeyc(
        dir.path(),
        &["run", "--now", "2026-03-01T18:00:00Z"],
    ));
    let path = dir.path().join("journeys/nurture.journey");
    let source = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, source.replace("opened: wait 5d", "wait 5d")).expect("write");
    let output = journeyc(dir.path(), &["run", "--now", "2026-03-02T18:00:00Z"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "journey `nurture` no longer has the step `opened`, where 3 contacts are waiting"
        ),
        "{stderr}"
    );
}

/// Aborted at chosen points (after the first and second committed batch
/// of contacts, in the middle of a batch), a run redone gives exactly what
/// one clean run gives: no duplicate and no lost message or move.
#[test]
fn a_killed_run_loses_and_duplicates_nothing() {
    let csv = crate::common::dormant_contacts(3000);
    let clean = project();
    let killed = project();
    for dir in [clean.path(), killed.path()] {
        deploy(dir);
        std::fs::write(dir.join("contacts.csv"), &csv).expect("write");
        ok(&journeyc(
            dir,
            &[
                "import",
                "contacts",
                "contacts.csv",
                "--now",
                "2026-02-28T12:00:00Z",
            ],
        ));
    }
    let now = "2026-03-01T18:00:00Z";
    ok(&journeyc(clean.path(), &["run", "--now", now]));
    // Each run goes on after the last batch an earlier one committed:
    // the first dies after contacts 1-1000, the second in the middle of
    // 1001-2000, the third after committing them, the fourth in the middle
    // of the last batch.
    for fault in [
        "run.batch:1",
        "run.contact:700",
        "run.batch:1",
        "run.contact:999",
    ] {
        let output = Command::new(crate::common::bin())
            .args(["run", "--now", now])
            .current_dir(killed.path())
            .env("JOURNEYC_FAULT", fault)
            .output()
            .expect("journeyc runs");
        assert!(
            !output.status.success()
                && String::from_utf8_lossy(&output.stderr).contains("fault injected"),
            "{fault} stops the run"
        );
    }
    let last: serde_json::Value = serde_json::from_str(&ok(&journeyc(
        killed.path(),
        &["run", "--now", now, "--format", "json"],
    )))
    .expect("JSON");
    // The night's counts add up what each run committed: every contact
    // once.
    assert_eq!(last["counts"]["contacts"], 3000, "{last}");
    let (clean_outbox, clean_transitions, clean_enrolments) = decisions(clean.path());
    let (outbox, transitions, enrolments) = decisions(killed.path());
    assert!(
        clean_outbox.len() >= 5000,
        "{} messages",
        clean_outbox.len()
    );
    assert_eq!(outbox, clean_outbox);
    assert_eq!(transitions, clean_transitions);
    assert_eq!(enrolments, clean_enrolments);
}

/// The starter project a new user copies, over two weeks of nights.
#[test]
fn the_starter_project_over_two_weeks() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter"),
        dir.path(),
    );
    deploy(dir.path());
    std::fs::write(
        dir.path().join("contacts.csv"),
        "id,first_name,email,plan,stage,timezone,last_seen_at\n\
         c-1,Ada,ada@example.com,free,trial,Europe/London,2026-11-01T09:00:00Z\n\
         c-2,Bo,bo@example.com,pro,customer,Asia/Shanghai,2026-09-01T09:00:00Z\n\
         c-3,Cy,cy@example.com,team,customer,America/New_York,2026-11-01T09:00:00Z\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("events.jsonl"),
        "{\"id\": \"e-1\", \"contact_id\": \"c-1\", \"name\": \"signed_up\", \"at\": \"2026-11-02T08:00:00Z\"}\n\
         {\"id\": \"e-2\", \"contact_id\": \"c-1\", \"name\": \"project_created\", \"at\": \"2026-11-03T10:00:00Z\"}\n\
         {\"id\": \"e-3\", \"contact_id\": \"c-1\", \"name\": \"upgraded\", \"at\": \"2026-11-09T10:00:00Z\", \"properties\": {\"plan\": \"pro\"}}\n",
    )
    .expect("write");
    ok(&journeyc(
        dir.path(),
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-11-01T12:00:00Z",
        ],
    ));
    ok(&journeyc(dir.path(), &["import", "events", "events.jsonl"]));
    for day in 2..=15 {
        let now = format!("2026-11-{day:02}T02:00:00Z");
        night_twice(dir.path(), &now);
    }
    let mut story = ok(&journeyc(
        dir.path(),
        &["status", "--now", "2026-11-15T02:00:00Z"],
    ));
    for contact in ["c-1", "c-2", "c-3"] {
        writeln!(story, "\n== {contact}").expect("write to a string");
        story.push_str(&ok(&journeyc(dir.path(), &["why", contact])));
    }
    snapshot("runner_starter_two_weeks", &story);
}

/// A store's first run catches up one day, not a year: contacts who have
/// long existed get no greeting for last Christmas or a birthday in June.
#[test]
fn a_first_run_greets_nobody_for_past_holidays() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("journeys"),
        dir.path(),
    );
    let _ = std::fs::remove_file(dir.path().join("journeyc.db"));
    std::fs::write(
        dir.path().join("contacts.csv"),
        "id,first_name,customer_type,lifetime_value,deals_won,orders_count,stage,created_at,birthday\n\
         old,林,b2c,900,0,1,customer,2020-01-01T00:00:00Z,1985-06-15\n",
    )
    .expect("write");
    ok(&journeyc(
        dir.path(),
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-09-20T00:00:00Z",
        ],
    ));
    ok(&journeyc(
        dir.path(),
        &["run", "--now", "2026-09-20T18:00:00Z"],
    ));
    assert_eq!(
        ok(&journeyc(dir.path(), &["why", "old"])),
        "old has not entered any journey\n"
    );
    // Mid-Autumn falls on 25 September 2026: that one is tonight's.
    ok(&journeyc(
        dir.path(),
        &["run", "--now", "2026-09-25T18:00:00Z"],
    ));
    let why = ok(&journeyc(dir.path(), &["why", "old"]));
    assert!(
        why.starts_with(
            "2026-09-25 09:30:00 +08:00  mid_autumn_greeting  @start  entered: holiday mid_autumn"
        ),
        "{why}"
    );
    assert!(
        !why.contains("birthday") && !why.contains("dragon_boat") && !why.contains("year_end"),
        "{why}"
    );
}

#[test]
fn suppressed_addresses_get_no_marketing_message_on_that_channel() {
    let dir = project();
    deploy(dir.path());
    std::fs::write(dir.path().join("contacts.csv"), CONTACTS).expect("write");
    ok(&journeyc(
        dir.path(),
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-02-28T12:00:00Z",
        ],
    ));
    // Before they were imported (and entered): 王芳's address bounced hard
    // (written as the provider wrote it); Ada unsubscribed from email;
    // 张伟's mailbox was full once (soft).
    std::fs::write(
        dir.path().join("provider.jsonl"),
        concat!(
            r#"{"id": "p-1", "name": "bounced", "at": "2026-02-28T11:00:00Z", "address": "WANG@example.com"}"#,
            "\n",
            r#"{"id": "p-2", "name": "unsubscribed", "at": "2026-02-28T11:00:00Z", "address": "ada@example.com"}"#,
            "\n",
            r#"{"id": "p-3", "name": "bounced", "at": "2026-02-28T11:00:00Z", "contact_id": "c-4", "type": "soft"}"#,
            "\n",
        ),
    )
    .expect("write");
    ok(&journeyc(
        dir.path(),
        &["import", "events", "provider.jsonl"],
    ));
    for day in 1..=9 {
        night_twice(dir.path(), &format!("2026-03-{day:02}T18:00:00Z"));
    }
    let rows = |contact: &str| -> Vec<(String, String, String)> {
        let why: serde_json::Value = serde_json::from_str(&ok(&journeyc(
            dir.path(),
            &["why", contact, "--format", "json"],
        )))
        .expect("JSON");
        why["outbox"]
            .as_array()
            .expect("outbox")
            .iter()
            .map(|row| {
                let field = |name: &str| row[name].as_str().unwrap_or("").to_string();
                (field("channel"), field("template"), field("status"))
            })
            .collect()
    };
    let wang = rows("c-1");
    assert_eq!(
        wang.iter()
            .filter(|(_, _, status)| status == "suppressed")
            .count(),
        3,
        "王芳's three nurture emails: {wang:?}"
    );
    for (channel, template, status) in &wang {
        let expected = if channel == "email" {
            "suppressed"
        } else {
            "pending"
        };
        assert_eq!(status, expected, "王芳's {channel} {template}");
    }
    assert!(
        wang.iter().any(|(channel, _, _)| channel == "sms"),
        "the SMS nudge still goes to 王芳's phone: {wang:?}"
    );
    // Ada's morning emails are transactional: an unsubscribe does not stop
    // them.
    let ada = rows("c-5");
    assert!(!ada.is_empty());
    assert!(
        ada.iter().all(|(_, _, status)| status == "pending"),
        "{ada:?}"
    );
    // A soft bounce suppresses nothing.
    let zhang = rows("c-4");
    assert!(!zhang.is_empty());
    assert!(
        zhang.iter().all(|(_, _, status)| status == "pending"),
        "{zhang:?}"
    );
}
