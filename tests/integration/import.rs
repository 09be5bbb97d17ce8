//! `journeyc import` against a real store: SQLite files, or PostgreSQL
//! with `JOURNEYC_TEST_STORE=postgres`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{journeyc, text};

/// A fresh project folder with the import fixture's settings.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/journeyc.yaml");
    std::fs::copy(settings, dir.path().join("journeyc.yaml")).expect("copy settings");
    crate::common::on_test_backend(dir.path());
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn contacts_are_checked_row_by_row_and_upserted() {
    let dir = project();
    let csv = "id,first_name,email,plan,timezone,tags\n\
               c-1,Ada,ada@example.com,pro,Europe/London,\n\
               c-2,Bo,bo@example.com,gold,Asia/Shanghai,\n\
               c-3,张三,zhang@example.cn,free,Asia/Shanghai,beta;vip\n";
    write(dir.path(), "contacts.csv", csv);
    let output = journeyc(dir.path(), &["import", "contacts", "contacts.csv"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a rejected row makes the exit code 1"
    );
    assert_eq!(
        text(&output.stdout),
        "contacts.csv:3: `plan`: `gold` is not allowed; one of free, pro, team\n\
         contacts.csv: contacts: 2 new, 0 updated; 1 row rejected (listed above)\n"
    );
    let store = crate::common::store(dir.path());
    assert_eq!(store.contact_count().expect("count"), 2);
    let zhang = store.contact("c-3").expect("read").expect("imported");
    assert_eq!(zhang.fields["tags"], serde_json::json!(["beta", "vip"]));

    // JSON Lines update: only the given fields change.
    write(
        dir.path(),
        "update.jsonl",
        "{\"id\": \"c-1\", \"plan\": \"team\", \"company\": \"Acme\"}\n",
    );
    let output = journeyc(dir.path(), &["import", "contacts", "update.jsonl"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(
        text(&output.stdout),
        "update.jsonl: contacts: 0 new, 1 updated\n"
    );
    let ada = store.contact("c-1").expect("read").expect("exists");
    assert_eq!(
        (
            ada.fields["plan"].as_str(),
            ada.fields["first_name"].as_str(),
            ada.fields["company"].as_str()
        ),
        (Some("team"), Some("Ada"), Some("Acme"))
    );
}

#[test]
fn events_are_imported_once() {
    let dir = project();
    write(
        dir.path(),
        "contacts.jsonl",
        "{\"id\": \"c-1\", \"first_name\": \"Ada\", \"plan\": \"pro\"}\n",
    );
    assert_eq!(
        journeyc(dir.path(), &["import", "contacts", "contacts.jsonl"])
            .status
            .code(),
        Some(0)
    );
    let events = "{\"id\": \"e-1\", \"contact_id\": \"c-1\", \"name\": \"signed_up\", \"at\": \"2026-11-01T09:00:00+08:00\"}\n\
                  {\"id\": \"e-2\", \"contact_id\": \"c-1\", \"name\": \"upgraded\", \"at\": \"2026-11-02 10:00\", \"properties\": {\"plan\": \"pro\"}}\n\
                  {\"id\": \"e-3\", \"contact_id\": \"c-9\", \"name\": \"signed_up\", \"at\": \"2026-11-01T09:00:00Z\"}\n\
                  {\"id\": \"e-4\", \"contact_id\": \"c-1\", \"name\": \"upgrded\", \"at\": \"2026-11-02T10:00:00Z\"}\n";
    write(dir.path(), "events.jsonl", events);
    let first = journeyc(
        dir.path(),
        &["import", "events", "events.jsonl", "--format", "json"],
    );
    assert_eq!(first.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).expect("JSON report");
    assert_eq!(report["created"], 2);
    assert_eq!(
        report["rejected"][0],
        serde_json::json!({"line": 3, "reason": "no contact `c-9`; import contacts first"})
    );
    assert_eq!(report["rejected"][1]["line"], 4);
    assert_eq!(
        report["rejected"][1]["reason"],
        "unknown event `upgrded`; did you mean `upgraded`?"
    );

    let again = journeyc(
        dir.path(),
        &["import", "events", "events.jsonl", "--format", "json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON report");
    assert_eq!(
        (report["created"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(2))
    );

    let stored = crate::common::store(dir.path())
        .events_of("c-1")
        .expect("events");
    let times: Vec<String> = stored.iter().map(|event| event.at.to_string()).collect();
    // Local times are read in the project's timezone and stored in UTC.
    assert_eq!(times, ["2026-11-01T01:00:00Z", "2026-11-02T10:00:00Z"]);
}

#[test]
fn a_misspelt_column_imports_nothing() {
    let dir = project();
    write(
        dir.path(),
        "contacts.csv",
        "id,frist_name,plan\nc-1,Ada,pro\n",
    );
    let output = journeyc(dir.path(), &["import", "contacts", "contacts.csv"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: contacts.csv:1: column `frist_name` is not a contact field; did you mean `first_name`?; nothing was imported\n"
    );
    assert_eq!(
        crate::common::store(dir.path())
            .contact_count()
            .expect("count"),
        0
    );
}

/// The import is one transaction: aborted at any row, the store holds
/// none of it; the same import then runs whole.
#[test]
fn a_killed_import_leaves_nothing_half_written() {
    let dir = project();
    let rows = 3000;
    let mut csv = String::from("id,first_name,email,plan\n");
    for index in 0..rows {
        writeln!(csv, "c-{index},Name {index},n{index}@example.com,pro")
            .expect("write to a string");
    }
    write(dir.path(), "big.csv", &csv);
    for row in [1, 1200, rows] {
        let output = Command::new(crate::common::bin())
            .args(["import", "contacts", "big.csv"])
            .current_dir(dir.path())
            .env("JOURNEYC_FAULT", format!("import.row:{row}"))
            .output()
            .expect("journeyc runs");
        assert!(
            !output.status.success()
                && text(&output.stderr).contains("fault injected at import.row"),
            "the fault at row {row} stops the import: {}",
            text(&output.stderr)
        );
        let count = crate::common::store(dir.path())
            .contact_count()
            .expect("count");
        assert_eq!(
            count, 0,
            "aborted after row {row}: {count} contacts, a partial import"
        );
    }
    let output = journeyc(dir.path(), &["import", "contacts", "big.csv"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        crate::common::store(dir.path())
            .contact_count()
            .expect("count"),
        rows
    );
}

/// The suppression list, as the store gives it.
fn suppressions(dir: &Path) -> Vec<String> {
    crate::common::store(dir)
        .suppressions()
        .expect("suppressions")
        .into_iter()
        .map(|suppression| {
            format!(
                "{} {} {} {}",
                suppression.address,
                suppression.channel.as_str(),
                suppression.reason,
                suppression.at
            )
        })
        .collect()
}

#[test]
fn provider_unsubscribes_bounces_and_complaints_fill_the_suppression_list() {
    let dir = project();
    write(
        dir.path(),
        "contacts.csv",
        "id,first_name,email,phone,plan\n\
         c-1,Ada,ada@example.com,+44 7700 900123,pro\n\
         c-2,Bo,bo@example.com,,free\n",
    );
    let output = journeyc(dir.path(), &["import", "contacts", "contacts.csv"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    // What an email and an SMS provider export: some rows name an address
    // only, some a contact; one cannot tell where to go.
    write(
        dir.path(),
        "provider.jsonl",
        concat!(
            r#"{"id": "p-1", "name": "bounced", "at": "2026-05-01T10:00:00Z", "address": " Carol@Example.COM ", "reason": "550 5.1.1 user unknown"}"#,
            "\n",
            r#"{"id": "p-2", "name": "unsubscribed", "at": "2026-05-01T11:00:00Z", "contact_id": "c-1", "channel": "sms"}"#,
            "\n",
            r#"{"id": "p-3", "name": "bounced", "at": "2026-05-01T12:00:00Z", "contact_id": "c-2", "type": "soft", "reason": "mailbox full"}"#,
            "\n",
            r#"{"id": "p-4", "name": "complained", "at": "2026-05-01T13:00:00Z", "contact_id": "c-2"}"#,
            "\n",
            r#"{"id": "p-5", "name": "unsubscribed", "at": "2026-05-01T14:00:00Z", "contact_id": "c-2", "channel": "sms"}"#,
            "\n",
            r#"{"id": "p-6", "name": "unsubscribed", "at": "2026-05-01T15:00:00Z"}"#,
            "\n",
            r#"{"id": "p-7", "name": "bounced", "at": "2026-05-01T16:00:00Z", "address": "x@example.com", "type": "permanent"}"#,
            "\n",
        ),
    );
    let output = journeyc(
        dir.path(),
        &["import", "events", "provider.jsonl", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(1), "rejected rows make it 1");
    let report: serde_json::Value = serde_json::from_str(&text(&output.stdout)).expect("JSON");
    assert_eq!(
        report,
        serde_json::json!({
            "file": "provider.jsonl",
            "kind": "events",
            // p-2 to p-5 are the contacts' events (Bo has no phone: p-5
            // suppresses nothing); p-1 is an address only
            "created": 4,
            "updated": 0,
            "duplicates": 0,
            // p-1, p-2 and p-4; the soft bounce is recorded only
            "suppressed": 3,
            "rejected": [
                {"line": 6, "reason": "`unsubscribed` needs `contact_id` or `address`"},
                {"line": 7, "reason": "`type`: `permanent` is not allowed; one of hard, soft"},
            ],
        })
    );
    assert_eq!(
        suppressions(dir.path()),
        [
            "bo@example.com email complained 2026-05-01T13:00:00Z",
            "carol@example.com email bounced: 550 5.1.1 user unknown 2026-05-01T10:00:00Z",
            "+447700900123 sms unsubscribed 2026-05-01T11:00:00Z",
        ]
    );

    // A re-import adds nothing: not the events, not the addresses.
    let output = journeyc(
        dir.path(),
        &["import", "events", "provider.jsonl", "--format", "json"],
    );
    let report: serde_json::Value = serde_json::from_str(&text(&output.stdout)).expect("JSON");
    assert_eq!(
        (
            &report["created"],
            &report["suppressed"],
            &report["duplicates"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(5)
        )
    );
    assert_eq!(suppressions(dir.path()).len(), 3);
}
