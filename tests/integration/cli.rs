//! The command line as a user meets it: full output and exit codes.

mod hostile;
mod mutations;

use crate::common::{journeyc as run_in, root, snapshot_settings, text};
use std::path::Path;
use std::process::Output;

fn journeyc(args: &[&str], dir: &Path) -> Output {
    run_in(dir, args)
}

#[test]
fn check_passes_on_the_shipped_journeys_and_examples() {
    let output = journeyc(&["check", "journeys", "examples"], root());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("ok: ") && stdout.ends_with("checked, no problems\n"),
        "{stdout}"
    );
    assert!(output.stderr.is_empty());
}

#[test]
fn check_reports_errors_for_people_with_exit_1() {
    let output = journeyc(
        &["check", "tests/fixtures/err_unknown_event.journey"],
        root(),
    );
    assert_eq!(output.status.code(), Some(1));
    snapshot_settings().bind(|| insta::assert_snapshot!("cli_check_human", text(&output.stdout)));
}

#[test]
fn check_json_prints_one_object_per_diagnostic() {
    let output = journeyc(
        &[
            "check",
            "--format",
            "json",
            "tests/fixtures/err_unknown_stage.journey",
        ],
        root(),
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(
        objects[0]["file"],
        "tests/fixtures/err_unknown_stage.journey"
    );
    assert_eq!(
        (objects[0]["line"].as_u64(), objects[0]["column"].as_u64()),
        (Some(4), Some(18))
    );
    assert_eq!(
        (
            objects[0]["end_line"].as_u64(),
            objects[0]["end_column"].as_u64()
        ),
        (Some(4), Some(26))
    );
    assert_eq!(objects[0]["code"], "E122");
    assert_eq!(objects[0]["severity"], "error");
    assert_eq!(objects[0]["message"], "unknown stage `dormat`");
    assert_eq!(objects[0]["help"], "did you mean `dormant`?");
    snapshot_settings().bind(|| insta::assert_snapshot!("cli_check_json", stdout));
}

#[test]
fn check_github_prints_annotations() {
    let output = journeyc(
        &[
            "check",
            "--format",
            "github",
            "tests/fixtures/err_cap_always_defers.journey",
        ],
        root(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "a warning alone does not fail the check"
    );
    assert_eq!(
        text(&output.stdout),
        "::warning file=tests/fixtures/err_cap_always_defers.journey,line=7,col=3,endLine=7,endColumn=23,\
         title=W134 the cap `email 1 per 7d` always defers this email::the cap `email 1 per 7d` always defers this email\
         %0Ahelp: wait at least 7d between these sends, or raise the cap\n"
    );
}

#[test]
fn deny_warnings_turns_warnings_into_failure() {
    let output = journeyc(
        &[
            "check",
            "--deny",
            "warnings",
            "tests/fixtures/err_unreachable.journey",
        ],
        root(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).ends_with("failed: 0 errors, 1 warning in 1 file\n"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn usage_and_environment_problems_exit_2() {
    let empty = tempfile::tempdir().expect("temp dir");
    let output = journeyc(&["check"], empty.path());
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: no journeyc.yaml in `.` or any folder above it; run `journeyc` inside a project or pass the path of one\n"
    );

    let output = journeyc(&["check", "no/such/file.journey"], root());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).starts_with("error: cannot read `no/such/file.journey`"),
        "{}",
        text(&output.stderr)
    );

    let output = journeyc(&["check", "--format", "xml"], root());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("invalid value 'xml'"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn check_without_paths_checks_the_project_in_the_current_folder() {
    let output = journeyc(&["check"], &root().join("journeys"));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).starts_with("ok: "));
}

#[test]
fn graph_draws_dot_mermaid_and_text() {
    let fixture = "tests/fixtures/winback.journey";
    let dot = journeyc(&["graph", "winback", "--project", fixture], root());
    assert_eq!(dot.status.code(), Some(0), "{}", text(&dot.stderr));
    let dot = text(&dot.stdout);
    assert!(
        dot.starts_with("digraph \"winback\" {\n  label=\"唤醒沉睡客户\";"),
        "{dot}"
    );
    assert!(
        dot.contains("\"vip_wait\" -> \"monthly\" [label=\"timeout\"];"),
        "{dot}"
    );

    let mermaid = journeyc(
        &[
            "graph",
            "winback",
            "--project",
            fixture,
            "--format",
            "mermaid",
        ],
        root(),
    );
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("cli_graph_mermaid", text(&mermaid.stdout)));

    let missing = journeyc(&["graph", "winbak", "--project", fixture], root());
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        text(&missing.stderr),
        "error: no journey named `winbak`; did you mean `winback`?\n"
    );
}

#[test]
fn graph_refuses_a_journey_with_errors() {
    let output = journeyc(
        &[
            "graph",
            "jumps",
            "--project",
            "tests/fixtures/err_unknown_label.journey",
        ],
        root(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("error[E110]: no step is labelled `montly`"));
    assert!(output.stdout.is_empty());
}

#[test]
fn fmt_prints_checks_and_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("messy.journey");
    std::fs::write(
        &file,
        "journey messy{entry on stage \"aware\"   # why\nemail \"a\" wait 2d}\n",
    )
    .expect("write");
    let expected =
        "journey messy {\n  entry on stage \"aware\"  # why\n  email \"a\"\n  wait 2d\n}\n";

    let printed = journeyc(&["fmt", "messy.journey"], dir.path());
    assert_eq!(printed.status.code(), Some(0));
    assert_eq!(text(&printed.stdout), expected);

    let checked = journeyc(&["fmt", "--check", "messy.journey"], dir.path());
    assert_eq!(checked.status.code(), Some(1));
    assert_eq!(text(&checked.stdout), "messy.journey\n");

    let written = journeyc(&["fmt", "--write", "messy.journey"], dir.path());
    assert_eq!(written.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), expected);
    assert_eq!(
        journeyc(&["fmt", "--check", "messy.journey"], dir.path())
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn fmt_reports_syntax_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.journey"),
        "journey bad {\n  emial \"x\"\n}\n",
    )
    .expect("write");
    let output = journeyc(&["fmt", "bad.journey"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("--> bad.journey:2:3"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_bare_file_name_finds_the_settings_beside_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("journeyc.yaml"),
        "journeys: [\".\"]\nstages: [aware]\nchannels: { email: { from: \"a@b.example\" } }\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("empty.journey"), "").expect("write");
    std::fs::write(
        dir.path().join("hello.journey"),
        "journey hello {\n  entry on stage \"aware\"\n  email \"hello\"\n}\n",
    )
    .expect("write");
    let output = journeyc(&["check", "empty.journey"], dir.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        "ok: 0 journeys in 1 file checked, no problems\n"
    );
}

mod first_hour {
    //! What a new user meets in the first hour, as the findings of the
    //! codebase review listed it.

    use crate::common::test::Test;

    /// The starter with its sample data imported and one night run.
    fn imported(dir: &std::path::Path) {
        Test::in_folder(dir).starter().args(["check"]).run();
        for (what, file, said) in [
            (
                "contacts",
                "data/contacts.csv",
                "contacts: 8 new, 0 updated\n",
            ),
            (
                "events",
                "data/events.jsonl",
                "events: 9 new, 1 address suppressed\n",
            ),
        ] {
            Test::in_folder(dir)
                .args(["import", what, file, "--now", "2026-12-01 08:00"])
                .stdout_contains(said)
                .run();
        }
    }

    #[test]
    fn init_writes_a_project_that_checks_clean_and_refuses_a_full_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        Test::in_folder(dir.path())
            .args(["init", "mine"])
            .stdout_contains("wrote a starter project to mine")
            .run();
        Test::in_folder(&dir.path().join("mine"))
            .args(["check", "--deny", "warnings"])
            .stdout_contains("ok: 2 journeys")
            .run();
        Test::in_folder(dir.path())
            .args(["init", "mine"])
            .status(2)
            .stderr_contains("`mine` is not empty")
            .run();
    }

    #[test]
    fn a_dry_run_creates_neither_store_nor_lock() {
        let done = Test::new()
            .starter()
            .args(["run", "--dry-run", "--now", "2026-12-01 09:00"])
            .stdout_contains("dry run (nothing written) at 2026-12-01 09:00:00 +00:00: 0 contacts")
            .run();
        let _ = done;
        let dir = tempfile::tempdir().expect("temp dir");
        Test::in_folder(dir.path())
            .starter()
            .args(["run", "--dry-run"])
            .run();
        for written in ["journeyc.db", "journeyc.lock"] {
            assert!(
                !dir.path().join(written).exists(),
                "a dry run wrote {written}"
            );
        }
    }

    #[test]
    fn why_refuses_a_journey_that_does_not_exist() {
        let dir = tempfile::tempdir().expect("temp dir");
        imported(dir.path());
        Test::in_folder(dir.path())
            .args(["why", "c-01", "welcom"])
            .status(2)
            .stderr_contains("no journey named `welcom`; did you mean `welcome`?")
            .run();
        Test::in_folder(dir.path())
            .args(["why", "c-99"])
            .status(2)
            .stderr_contains("no contact `c-99` in the store")
            .run();
    }

    /// `--now` reads the same forms in every command, and every command
    /// prints times in the project's timezone with the offset.
    #[test]
    fn every_command_reads_now_alike_and_shows_the_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        imported(dir.path());
        for now in [
            "2026-12-01 09:00",
            "2026-12-01T09:00:00Z",
            "2026-12-01T17:00:00+08:00",
        ] {
            Test::in_folder(dir.path())
                .args(["status", "--now", now])
                .stdout_contains("at 2026-12-01 09:00:00 +00:00\n")
                .run();
        }
        Test::in_folder(dir.path())
            .args(["run", "--now", "2026-12-01 09:00"])
            .stdout_contains("run at 2026-12-01 09:00:00 +00:00:")
            .run();
        let why = Test::in_folder(dir.path())
            .args(["why", "c-01"])
            .run()
            .stdout();
        assert!(
            why.starts_with("2026-12-01 09:00:00 +00:00  welcome"),
            "{why}"
        );
        assert!(
            !why.contains(":00Z"),
            "every time in the project's zone: {why}"
        );
        Test::in_folder(dir.path())
            .args(["deliver", "--now", "tomorrow"])
            .status(2)
            .stderr_contains("not a time: give an RFC 3339 instant")
            .run();
    }

    /// Without the secret, a preview of a marketing email says what to
    /// set instead of failing on the template's `unsubscribe_url`.
    #[test]
    fn a_preview_without_the_secret_says_which_variable_to_set() {
        Test::new()
            .starter()
            .file(
                "li.yaml",
                "first_name: 李娜\nemail: li.na@example.cn\nplan: free\n",
            )
            .env("JOURNEYC_UNSUBSCRIBE_SECRET", "")
            .args(["preview", "welcome", "welcome/day0", "--vars", "li.yaml"])
            .status(2)
            .stderr_contains("set the environment variable JOURNEYC_UNSUBSCRIBE_SECRET")
            .run();
    }

    /// A contact imported again with a numeric ID in JSON Lines is
    /// updated, not replaced: the fields the row leaves out stay.
    #[test]
    fn a_numeric_id_updates_the_contact_it_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        Test::in_folder(dir.path())
            .starter()
            .file("a.jsonl", "{\"id\": 42, \"first_name\": \"王伟\", \"email\": \"w@example.cn\", \"plan\": \"pro\", \"company\": \"清源\"}\n")
            .file("b.jsonl", "{\"id\": 42, \"first_name\": \"王伟\"}\n")
            .args(["import", "contacts", "a.jsonl"])
            .run();
        Test::in_folder(dir.path())
            .args(["import", "contacts", "b.jsonl"])
            .stdout_contains("0 new, 1 updated")
            .run();
        Test::in_folder(dir.path())
            .args([
                "preview",
                "welcome",
                "welcome/day0",
                "--contact",
                "42",
                "--format",
                "json",
            ])
            .stdout_contains("\"to\": \"w@example.cn\"")
            .run();
    }

    /// `graph` and `fmt` speak JSON too, like every command that reports.
    #[test]
    fn graph_and_fmt_report_in_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let graph = Test::in_folder(dir.path())
            .starter()
            .args(["graph", "welcome", "--format", "json"])
            .run()
            .json();
        assert_eq!(graph["name"], "welcome");
        let ids: Vec<&str> = graph["graph"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|node| node["id"].as_str())
            .collect();
        assert!(ids.contains(&"first_project"), "{ids:?}");
        let path = dir.path().join("journeys/welcome.journey");
        let source = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, source.replace("  title    ", "  title ")).expect("write");
        let listed = Test::in_folder(dir.path())
            .args(["fmt", "--check", "--format", "json"])
            .status(1)
            .run()
            .stdout();
        assert!(
            listed.contains("welcome.journey\",\"formatted\":false"),
            "{listed}"
        );
        assert!(
            listed.contains("winback.journey\",\"formatted\":true"),
            "{listed}"
        );
    }

    /// One CSV of events can hold several kinds: a column is a property of
    /// the rows that fill it.
    #[test]
    fn a_csv_of_events_mixes_kinds() {
        let dir = tempfile::tempdir().expect("temp dir");
        Test::in_folder(dir.path())
            .starter()
            .file(
                "c.csv",
                "id,first_name,email,plan\nc-1,Li,li@example.cn,free\n",
            )
            .file(
                "e.csv",
                "id,name,contact_id,at,plan\n\
                 e-1,signed_up,c-1,2026-12-01T08:00:00Z,\n\
                 e-2,upgraded,c-1,2026-12-02T08:00:00Z,pro\n\
                 e-3,upgraded,c-1,2026-12-03T08:00:00Z,\n",
            )
            .args(["import", "contacts", "c.csv"])
            .run();
        Test::in_folder(dir.path())
            .args(["import", "events", "e.csv"])
            .status(1)
            .stdout_contains("e.csv:4: ")
            .stdout_contains("events: 2 new; 1 row rejected")
            .run();
    }
}
