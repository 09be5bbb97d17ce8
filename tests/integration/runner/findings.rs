//! One test per finding of the engine review: each failed on the commit
//! before its fix (run them against another build with
//! `JOURNEYC_TEST_BIN=path/to/journeyc cargo test --test runner findings`).
//!
//! Times are Shanghai local (UTC+8) unless a test says otherwise; every
//! project is deployed by a run before its contacts do anything, so the
//! journeys are live when the events happen.

use std::fmt::Write as _;
use std::time::Duration;

use crate::common::project::{Project, Row, SETTINGS};
use crate::common::servers::SmtpServer;
use crate::common::text;

const DEPLOYED: &str = "2026-03-01T00:00:00+08:00";
const IMPORTED: &str = "2026-03-01T00:30:00+08:00";

/// The default settings without the weekly email cap.
fn uncapped() -> String {
    SETTINGS.replace("caps: { email: 1 per 7d }\n", "")
}

/// A deployed project with one contact per line of `contacts` (CSV with a
/// header) and the given events (`contact,name,local time` lines).
fn live(settings: &str, journeys: &str, contacts: &str, events: &[(&str, &str, &str)]) -> Project {
    live_with(settings, journeys, &[], contacts, events)
}

/// [`live`], with some files of the project written before it is deployed.
fn live_with(
    settings: &str,
    journeys: &str,
    files: &[(&str, &str)],
    contacts: &str,
    events: &[(&str, &str, &str)],
) -> Project {
    let project = Project::with_settings(settings, journeys);
    for (path, contents) in files {
        project.write(path, contents);
    }
    project.run(DEPLOYED);
    project.write("contacts.csv", contacts);
    project.ok(&["import", "contacts", "contacts.csv", "--now", IMPORTED]);
    import_events(&project, "events.jsonl", events);
    project
}

fn import_events(project: &Project, file: &str, events: &[(&str, &str, &str)]) {
    let mut lines = String::new();
    for (index, (contact, name, at)) in events.iter().enumerate() {
        let _ = writeln!(
            lines,
            "{{\"id\": \"{file}-{index}\", \"contact_id\": \"{contact}\", \"name\": \"{name}\", \"at\": \"{at}\"}}"
        );
    }
    project.write(file, &lines);
    project.ok(&["import", "events", file]);
}

/// Runs at 02:00 every night from `first` to `last` (days of March 2026).
fn nightly(project: &Project, first: u32, last: u32) {
    for day in first..=last {
        project.run(&format!("2026-03-{day:02}T02:00:00+08:00"));
    }
}

fn plan(rows: &[Row]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|row| {
            (
                row.step.clone(),
                row.template.clone(),
                row.send_at.clone(),
                row.status.clone(),
            )
        })
        .collect()
}

fn templates(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|row| row.template.as_str()).collect()
}

const ONE: &str = "id,first_name,email,phone\nc-1,Ada,ada@example.com,+8613800000001\n";

/// Finding 1: messages inside `repeat` are delivered.
#[test]
fn messages_inside_repeat_are_delivered() {
    let project = live(
        SETTINGS,
        "journey r {\n  entry on event \"signed_up\"\n  repeat 2 times every 7d { email \"r/monthly\" }\n}\n",
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    for now in ["2026-03-02T10:30:00+08:00", "2026-03-09T10:30:00+08:00"] {
        project.run(now);
        let output = project.deliver(now);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    let rows = project.outbox("c-1");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|row| row.status == "sent"), "{rows:?}");
    assert_eq!(project.delivered_files("email").len(), 2);
}

/// Finding 2: a branch that only jumps is taken.
#[test]
fn a_branch_that_only_jumps_is_taken() {
    let project = live(
        &uncapped(),
        "journey w {\n  entry on event \"signed_up\"\n  split {\n    when plan == \"pro\" { goto pro_path }\n    else { email \"w/welcome\" }\n  }\n  pro_path: email \"w/pro\"\n}\n",
        "id,first_name,email,plan\npro,Pat,pat@example.com,pro\nfree,Fay,fay@example.com,free\n",
        &[
            ("pro", "signed_up", "2026-03-02T10:00:00+08:00"),
            ("free", "signed_up", "2026-03-02T10:00:00+08:00"),
        ],
    );
    project.run("2026-03-02T11:00:00+08:00");
    assert_eq!(templates(&project.outbox("pro")), ["w/pro"]);
    assert_eq!(templates(&project.outbox("free")), ["w/welcome", "w/pro"]);
    assert!(
        project
            .moves("pro")
            .iter()
            .any(|line| line.contains("split: plan == \"pro\"")),
        "{:?}",
        project.moves("pro")
    );
}

/// Finding 3: a cap holds whichever journey's message comes first, in
/// whatever order the journeys are processed.
#[test]
fn caps_hold_whatever_order_the_journeys_are_processed_in() {
    let journeys = "journey a {\n  entry on event \"signed_up\"\n  email \"a/hello\"\n}\n\
                    journey b {\n  entry on event \"clicked\"\n  email \"b/hello\"\n}\n";
    for (signed_up, clicked, first) in
        [("10:00", "12:00", "a/hello"), ("12:00", "10:00", "b/hello")]
    {
        let project = live(
            SETTINGS,
            journeys,
            ONE,
            &[
                (
                    "c-1",
                    "signed_up",
                    &format!("2026-03-02T{signed_up}:00+08:00"),
                ),
                ("c-1", "clicked", &format!("2026-03-02T{clicked}:00+08:00")),
            ],
        );
        project.run("2026-03-03T02:00:00+08:00");
        let rows = project.outbox("c-1");
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].template, first, "{rows:?}");
        assert_eq!(rows[0].send_at, "2026-03-02T02:00:00Z", "{rows:?}");
        // The other waits a week after the first: 1 per 7d in every window.
        assert_eq!(rows[1].send_at, "2026-03-09T02:00:00Z", "{rows:?}");
    }
}

/// Finding 4a: a message planned late is held by `deliver` until the quiet
/// hours end, and its Date header is the time it went out.
#[test]
fn deliver_holds_a_late_message_until_the_quiet_hours_end() {
    let project = live(
        SETTINGS,
        "journey w {\n  entry on event \"signed_up\"\n  email \"w/welcome\"\n}\n",
        ONE,
        &[("c-1", "signed_up", "2026-03-02T15:00:00+08:00")],
    );
    project.run("2026-03-03T02:00:00+08:00");
    let night = project.deliver("2026-03-03T02:05:00+08:00");
    assert_eq!(night.status.code(), Some(0), "{}", text(&night.stderr));
    assert!(project.delivered_files("email").is_empty(), "sent at night");
    let morning = project.deliver("2026-03-03T09:00:00+08:00");
    assert_eq!(morning.status.code(), Some(0), "{}", text(&morning.stderr));
    let files = project.delivered_files("email");
    assert_eq!(files.len(), 1);
    let eml = std::fs::read_to_string(&files[0]).expect("eml");
    assert!(
        eml.contains("Date: Tue, 03 Mar 2026 01:00:00 +0000"),
        "{eml}"
    );
}

/// Finding 4b: a retry that falls into the quiet hours waits for morning.
#[test]
fn a_retry_in_the_quiet_hours_waits_for_morning() {
    let server = SmtpServer::start();
    let settings = SETTINGS
        .replace("file:out/email", &server.url())
        .replace("caps: { email: 1 per 7d }\n", "delivery: { backoff: 3m }\n");
    let project = live(
        &settings,
        "journey w {\n  entry on event \"signed_up\"\n  email \"w/welcome\"\n}\n",
        "id,first_name,email\nc-1,Ada,tempfail1@example.com\n",
        &[("c-1", "signed_up", "2026-03-02T20:59:00+08:00")],
    );
    project.run("2026-03-02T20:59:00+08:00");
    project.deliver("2026-03-02T20:59:00+08:00");
    assert!(server.received().is_empty());
    project.deliver("2026-03-02T21:05:00+08:00");
    project.deliver("2026-03-02T23:00:00+08:00");
    assert!(server.received().is_empty(), "retried in the quiet hours");
    project.deliver("2026-03-03T09:00:00+08:00");
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).len(), 1);
}

/// Finding 5a: one catch-up run gives what nightly runs give (exit and
/// goal are checked at the moment each step falls due).
#[test]
fn a_catch_up_run_gives_what_nightly_runs_give() {
    let journeys = "journey n {\n  entry on event \"signed_up\"\n  goal event \"purchased\" within 30d\n  wait 1d\n  email \"n/d1\"\n  wait 3d\n  email \"n/d4\"\n  wait 7d\n  email \"n/d11\"\n}\n";
    let events = [
        ("c-1", "signed_up", "2026-03-02T10:00:00+08:00"),
        ("c-1", "purchased", "2026-03-07T10:00:00+08:00"),
    ];
    let daily = live(&uncapped(), journeys, ONE, &events);
    nightly(&daily, 2, 20);
    let once = live(&uncapped(), journeys, ONE, &events);
    once.run("2026-03-20T02:00:00+08:00");
    assert_eq!(templates(&daily.outbox("c-1")), ["n/d1", "n/d4"]);
    assert_eq!(plan(&daily.outbox("c-1")), plan(&once.outbox("c-1")));
    assert_eq!(daily.moves("c-1"), once.moves("c-1"));
}

/// Finding 5b: journeys are processed in time order: an earlier hand-off
/// wins over a later click, however often cron runs.
#[test]
fn an_earlier_hand_off_wins_over_a_later_entry() {
    let journeys =
        "journey nurture {\n  entry on event \"clicked\"\n  email \"nurture/hello\"\n}\n\
                    journey zeta {\n  entry on event \"signed_up\"\n  handoff nurture\n}\n";
    let events = [
        ("c-1", "signed_up", "2026-03-02T10:00:00+08:00"),
        ("c-1", "clicked", "2026-03-02T20:00:00+08:00"),
    ];
    let nightly_runs = live(&uncapped(), journeys, ONE, &events);
    nightly(&nightly_runs, 3, 3);
    let six_hourly = live(&uncapped(), journeys, ONE, &events);
    for hour in ["06", "12", "18"] {
        six_hourly.run(&format!("2026-03-02T{hour}:00:00+08:00"));
    }
    six_hourly.run("2026-03-03T00:00:00+08:00");
    for project in [&nightly_runs, &six_hourly] {
        let rows = project.outbox("c-1");
        assert_eq!(plan(&rows).len(), 1, "{rows:?}");
        assert_eq!(rows[0].send_at, "2026-03-02T02:00:00Z", "{rows:?}");
    }
}

/// Finding 5c: suppression is judged at the message's own time; `deliver`
/// then stops what an unsubscribe made too late to send.
#[test]
fn suppression_is_judged_at_the_message_time() {
    let journeys = "journey s {\n  entry on event \"signed_up\"\n  wait 2d\n  email \"s/d2\"\n}\n";
    let events = [("c-1", "signed_up", "2026-03-02T10:00:00+08:00")];
    let unsubscribe = "{\"id\": \"u-1\", \"contact_id\": \"c-1\", \"name\": \"unsubscribed\", \"at\": \"2026-03-05T10:00:00+08:00\"}\n";
    let daily = live(&uncapped(), journeys, ONE, &events);
    nightly(&daily, 2, 5);
    daily.write("unsubscribe.jsonl", unsubscribe);
    daily.ok(&["import", "events", "unsubscribe.jsonl"]);
    nightly(&daily, 6, 6);
    let once = live(&uncapped(), journeys, ONE, &events);
    once.write("unsubscribe.jsonl", unsubscribe);
    once.ok(&["import", "events", "unsubscribe.jsonl"]);
    once.run("2026-03-06T02:00:00+08:00");
    assert_eq!(plan(&daily.outbox("c-1")), plan(&once.outbox("c-1")));
    once.deliver("2026-03-06T09:00:00+08:00");
    assert!(once.delivered_files("email").is_empty());
    assert_eq!(once.outbox("c-1")[0].status, "suppressed");
}

/// Finding 5d: `count()` reads the events up to the moment the step fell
/// due, not up to the run.
#[test]
fn conditions_are_evaluated_when_the_step_falls_due() {
    let journeys = "journey c {\n  entry on event \"signed_up\"\n  wait 2d\n  split {\n    when count(event \"clicked\") > 0 { email \"c/clicked\" }\n    else { email \"c/quiet\" }\n  }\n}\n";
    let events = [
        ("c-1", "signed_up", "2026-03-02T10:00:00+08:00"),
        ("c-1", "clicked", "2026-03-05T10:00:00+08:00"),
    ];
    let daily = live(&uncapped(), journeys, ONE, &events);
    nightly(&daily, 2, 6);
    let once = live(&uncapped(), journeys, ONE, &events);
    once.run("2026-03-06T02:00:00+08:00");
    assert_eq!(templates(&daily.outbox("c-1")), ["c/quiet"]);
    assert_eq!(plan(&daily.outbox("c-1")), plan(&once.outbox("c-1")));
}

/// Finding 6a: a run of one journey does not use up another's schedule.
#[test]
fn a_partial_run_keeps_the_other_journeys_schedule() {
    let project = live(
        &uncapped(),
        "journey sched {\n  entry once 2026-03-05 at 10:00\n  email \"sched/hello\"\n}\n\
         journey other {\n  entry on event \"signed_up\"\n  email \"other/hi\"\n}\n",
        ONE,
        &[],
    );
    project.ok(&[
        "run",
        "--now",
        "2026-03-06T02:00:00+08:00",
        "--journey",
        "other",
    ]);
    project.run("2026-03-07T02:00:00+08:00");
    let rows = project.outbox("c-1");
    assert_eq!(templates(&rows), ["sched/hello"], "{rows:?}");
    assert_eq!(rows[0].send_at, "2026-03-05T02:00:00Z");
}

/// Finding 6b: a hand-off to a journey left out of a partial run waits for
/// it; a long chain of hand-offs is followed to its end.
#[test]
fn hand_offs_wait_for_their_target() {
    let project = live(
        &uncapped(),
        "journey a {\n  entry on event \"signed_up\"\n  handoff b\n}\n\
         journey b {\n  entry on event \"clicked\"\n  email \"b/hi\"\n}\n",
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.ok(&[
        "run",
        "--now",
        "2026-03-03T02:00:00+08:00",
        "--journey",
        "a",
    ]);
    assert!(project.outbox("c-1").is_empty());
    project.run("2026-03-04T02:00:00+08:00");
    let rows = project.outbox("c-1");
    assert_eq!(templates(&rows), ["b/hi"], "{rows:?}");
    assert_eq!(rows[0].send_at, "2026-03-02T02:00:00Z");

    let mut chain = String::new();
    for index in 0..10 {
        let entry = if index == 0 { "signed_up" } else { "clicked" };
        let step = if index == 9 {
            "email \"chain/end\"".to_string()
        } else {
            format!("handoff j{}", index + 1)
        };
        let _ = write!(
            chain,
            "journey j{index} {{\n  entry on event \"{entry}\"\n  {step}\n}}\n"
        );
    }
    let long = live(
        &uncapped(),
        &chain,
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    long.run("2026-03-03T02:00:00+08:00");
    assert_eq!(templates(&long.outbox("c-1")), ["chain/end"]);
}

/// Finding 7: holdout contacts stay in the journey until the goal window
/// closes, so their conversions count.
#[test]
fn holdout_contacts_are_still_measured() {
    let holdout = (0..1000)
        .map(|index| format!("h-{index}"))
        .find(|id| journeyc::runner::engine::bucket(id, "t", "offer") >= 5000)
        .expect("some contact falls in the holdout");
    let project = live(
        &uncapped(),
        "journey t {\n  entry on event \"signed_up\"\n  goal event \"purchased\" within 14d\n  ab offer {\n    variant a 50% { email \"t/a\" }\n    holdout 50%\n  }\n}\n",
        &format!("id,first_name,email\n{holdout},Hal,hal@example.com\n"),
        &[
            (&holdout, "signed_up", "2026-03-02T10:00:00+08:00"),
            (&holdout, "purchased", "2026-03-05T10:00:00+08:00"),
        ],
    );
    nightly(&project, 2, 8);
    assert!(project.outbox(&holdout).is_empty());
    let moves = project.moves(&holdout);
    assert!(
        moves
            .iter()
            .any(|line| line.contains("goal: event \"purchased\"")),
        "{moves:?}"
    );
    let status: serde_json::Value = serde_json::from_str(&project.ok(&[
        "status",
        "--format",
        "json",
        "--now",
        "2026-03-08T02:00:00+08:00",
    ]))
    .expect("JSON");
    let arms = &status["journeys"][0]["arms"];
    assert_eq!(arms[0]["test"], "offer", "{status}");
    let holdout_arm = arms
        .as_array()
        .expect("arms")
        .iter()
        .find(|arm| arm["arm"] == "holdout")
        .expect("a holdout arm");
    assert_eq!(
        (&holdout_arm["entered"], &holdout_arm["converted"]),
        (&1.into(), &1.into()),
        "{status}"
    );
}

/// Finding 8: editing a journey never moves contacts silently, and the
/// `moved` rule `run` suggests is valid.
#[test]
fn an_edit_never_moves_resting_contacts_silently() {
    let journeys = "journey s {\n  entry on event \"signed_up\"\n  wait 3d\n  email \"s/first\"\n  wait 10d\n  email \"s/second\"\n}\n";
    let project = live(
        &uncapped(),
        journeys,
        "id,first_name,email\nearly,Eve,eve@example.com\nlate,Lou,lou@example.com\n",
        &[
            ("early", "signed_up", "2026-03-01T10:00:00+08:00"),
            ("late", "signed_up", "2026-03-05T10:00:00+08:00"),
        ],
    );
    project.run("2026-03-06T02:00:00+08:00");
    // `early` rests at the 10-day wait, `late` at the 3-day one. The edit
    // removes the 3-day wait and the first email.
    project.journeys(
        "journey s {\n  entry on event \"signed_up\"\n  wait 10d\n  email \"s/second\"\n}\n",
    );
    let refused = project.journeyc(&["run", "--now", "2026-03-07T02:00:00+08:00"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("1 contact"), "{stderr}");
    assert!(
        !stderr.contains("10d"),
        "the 10-day wait did not change: {stderr}"
    );
    // The suggested rule, to the step ID `graph --format text` prints for
    // where the contacts continue.
    let suggestion = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("moved "))
        .expect("a suggested `moved` rule");
    let from = suggestion.split(" -> ").next().expect("old step");
    let graph = project.ok(&["graph", "s", "--format", "text"]);
    let to = graph
        .lines()
        .find_map(|line| line.trim().strip_suffix(": wait 10d"))
        .expect("the 10-day wait in the graph");
    project.journeys(&format!(
        "journey s {{\n  entry on event \"signed_up\"\n  moved {from} -> \"{to}\"\n  wait 10d\n  email \"s/second\"\n}}\n"
    ));
    project.ok(&["check"]);
    project.run("2026-03-07T02:00:00+08:00");
    assert!(
        project
            .moves("late")
            .iter()
            .any(|line| line.contains("moved")),
        "{:?}",
        project.moves("late")
    );
    assert_eq!(templates(&project.outbox("early")), ["s/first"]);
}

/// Finding 9: a new journey enrols from its launch; older triggers enter
/// only with `backfill`, and at the launch, not in the past. Messages a
/// late night planned too late are expired, not sent in a burst.
#[test]
fn a_new_journey_does_not_replay_the_past() {
    let journeys = |backfill: &str| {
        format!("journey l {{\n  entry on event \"signed_up\"\n{backfill}  wait 1d\n  email \"l/d1\"\n  wait 2d\n  email \"l/d3\"\n}}\n")
    };
    let events = "{\"id\": \"e-1\", \"contact_id\": \"c-1\", \"name\": \"signed_up\", \"at\": \"2026-03-02T10:00:00+08:00\"}\n";
    for (backfill, expected) in [("", 0), ("  backfill 7d\n", 1)] {
        let project = Project::with_settings(&uncapped(), &journeys(backfill));
        project.write("contacts.csv", ONE);
        project.ok(&["import", "contacts", "contacts.csv", "--now", IMPORTED]);
        project.write("events.jsonl", events);
        project.ok(&["import", "events", "events.jsonl"]);
        // Launched five days after the sign-up.
        project.run("2026-03-07T02:00:00+08:00");
        let rows = project.outbox("c-1");
        assert!(rows.is_empty(), "{rows:?}");
        project.run("2026-03-08T03:00:00+08:00");
        let rows = project.outbox("c-1");
        assert_eq!(rows.len(), expected, "{rows:?}");
        if expected == 1 {
            // A day after the launch (02:00), not after the sign-up, and
            // out of the quiet hours: 09:00 on 8 March.
            assert_eq!(rows[0].send_at, "2026-03-08T01:00:00Z", "{rows:?}");
        }
    }

    // Deployed, then no run for a week: the catch-up plans the past, and
    // `deliver` expires what is more than a day late instead of sending it.
    let project = live(
        &uncapped(),
        &journeys(""),
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.run("2026-03-10T02:00:00+08:00");
    let output = project.deliver("2026-03-10T09:00:00+08:00");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(project.delivered_files("email").is_empty());
    let rows = project.outbox("c-1");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|row| row.status == "expired"), "{rows:?}");
}

/// Finding 10: a journey's quiet hours add to the project's.
#[test]
fn journey_quiet_hours_add_to_the_project_ones() {
    let project = live(
        &uncapped(),
        "journey q {\n  entry on event \"signed_up\"\n  limits { quiet 12:00..14:00 }\n  email \"q/hello\"\n}\n",
        "id,first_name,email\nnight,Nia,nia@example.com\nnoon,Noa,noa@example.com\n",
        &[
            ("night", "signed_up", "2026-03-02T22:00:00+08:00"),
            ("noon", "signed_up", "2026-03-02T13:00:00+08:00"),
        ],
    );
    project.run("2026-03-03T02:00:00+08:00");
    assert_eq!(project.outbox("night")[0].send_at, "2026-03-03T01:00:00Z");
    assert_eq!(project.outbox("noon")[0].send_at, "2026-03-02T06:00:00Z");
}

/// Finding 11: `wait 1d` is the same local time the next day, across DST;
/// `wait 24h` is 24 hours.
#[test]
fn a_day_is_a_calendar_day_across_daylight_saving() {
    let project = live(
        &uncapped(),
        "journey d {\n  entry on event \"signed_up\"\n  wait 1d\n  email \"d/day\"\n}\n\
         journey h {\n  entry on event \"signed_up\"\n  wait 24h\n  email \"h/hours\"\n}\n",
        "id,first_name,email,timezone\nny,Ned,ned@example.com,America/New_York\n",
        &[("ny", "signed_up", "2026-03-07T10:00:00-05:00")],
    );
    project.run("2026-03-09T02:00:00+08:00");
    let rows = project.outbox("ny");
    let at = |template: &str| {
        rows.iter()
            .find(|row| row.template == template)
            .map(|row| row.send_at.clone())
            .unwrap_or_default()
    };
    assert_eq!(at("d/day"), "2026-03-08T14:00:00Z", "{rows:?}");
    assert_eq!(at("h/hours"), "2026-03-08T15:00:00Z", "{rows:?}");
}

/// Finding 12: an import that commits while a run holds a page of contacts
/// keeps its changes, and the run keeps its own.
#[test]
fn an_import_during_a_run_is_not_lost() {
    let project = live(
        &uncapped(),
        "journey w {\n  entry on event \"signed_up\"\n  tag \"welcomed\"\n  email \"w/fields\"\n}\n",
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.write(
        "templates/w/fields.email",
        "---\nsubject: \"Hi\"\n---\n{% block text %}\ncity={{ contact.city | default('-') }} tags={{ contact.tags | join(',') }}\n{{ unsubscribe_url }}\n{% endblock %}\n",
    );
    let pauses = tempfile::tempdir().expect("temp dir");
    let mut run = std::process::Command::new(crate::common::bin())
        .args(["run", "--now", "2026-03-03T02:00:00+08:00"])
        .current_dir(project.path())
        .env("JOURNEYC_PAUSE", "run.page-read")
        .env("JOURNEYC_PAUSE_DIR", pauses.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run starts");
    let reached = pauses.path().join("run.page-read.reached");
    let started = std::time::Instant::now();
    while !reached.exists() {
        if let Ok(Some(status)) = run.try_wait() {
            panic!("the run ended ({status}) without pausing after reading its page");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never paused"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    project.write(
        "city.csv",
        "id,first_name,email,city\nc-1,Ada,ada@example.com,杭州\n",
    );
    project.ok(&[
        "import",
        "contacts",
        "city.csv",
        "--now",
        "2026-03-03T01:00:00+08:00",
    ]);
    std::fs::write(pauses.path().join("run.page-read.go"), "").expect("write");
    assert!(run.wait().expect("run ends").success());
    let step = project.outbox("c-1")[0].step.clone();
    let email = project.ok(&["preview", "w", &step, "--contact", "c-1"]);
    assert!(email.contains("city=杭州 tags=welcomed"), "{email}");
}

/// Finding 13: Message-IDs and file names never collide, and are valid.
#[test]
fn message_ids_are_distinct_and_valid() {
    let ids = ["c+1", "c/1", "c-1", "客户-001", "会员-001", "c."];
    let mut contacts = String::from("id,first_name,email\n");
    let mut events = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let _ = writeln!(contacts, "{id},N{index},n{index}@example.com");
        events.push((*id, "signed_up", "2026-03-02T10:00:00+08:00"));
    }
    let project = live(
        &uncapped(),
        "journey w {\n  entry on event \"signed_up\"\n  email \"w/welcome\"\n}\n",
        &contacts,
        &events,
    );
    project.run("2026-03-02T10:30:00+08:00");
    let output = project.deliver("2026-03-02T10:30:00+08:00");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let files = project.delivered_files("email");
    assert_eq!(files.len(), ids.len(), "{files:?}");
    let mut message_ids = Vec::new();
    for file in &files {
        let eml = std::fs::read_to_string(file).expect("eml");
        let id = eml
            .lines()
            .find_map(|line| line.strip_prefix("Message-ID: "))
            .expect("a Message-ID")
            .to_string();
        assert!(valid_message_id(&id), "{id}");
        message_ids.push(id);
    }
    // `preview` builds the same headers for a contact of the store.
    let step = project.outbox(ids[0])[0].step.clone();
    for id in ids {
        let eml = project.ok(&["preview", "w", &step, "--contact", id, "--format", "eml"]);
        let message_id = eml
            .lines()
            .find_map(|line| line.strip_prefix("Message-ID: "))
            .expect("a Message-ID")
            .to_string();
        assert!(valid_message_id(&message_id), "{message_id}");
        message_ids.push(message_id);
    }
    message_ids.sort();
    message_ids.dedup();
    assert_eq!(message_ids.len(), 2 * ids.len(), "{message_ids:?}");
}

/// RFC 5322 `msg-id` with a dot-atom on both sides.
fn valid_message_id(id: &str) -> bool {
    let Some(inner) = id.strip_prefix('<').and_then(|id| id.strip_suffix('>')) else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = |part: &str| {
        !part.is_empty()
            && part
                .split('.')
                .all(|atom| !atom.is_empty() && atom.chars().all(atext))
    };
    matches!(inner.split_once('@'), Some((left, right)) if dot_atom(left) && dot_atom(right))
}

/// Finding 14: an SMS to a contact without a phone is skipped when it is
/// planned, with the reason; `deliver` has nothing to fail.
#[test]
fn an_sms_to_a_contact_without_a_phone_is_skipped() {
    let project = live(
        &uncapped(),
        "journey s {\n  entry on event \"signed_up\"\n  sms \"s/hi\"\n}\n",
        "id,first_name,email\nc-1,Ada,ada@example.com\n",
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.run("2026-03-02T10:30:00+08:00");
    let rows = project.outbox("c-1");
    assert_eq!(rows[0].status, "skipped", "{rows:?}");
    assert!(
        project
            .moves("c-1")
            .iter()
            .any(|line| line.contains("no phone")),
        "{:?}",
        project.moves("c-1")
    );
    let output = project.deliver("2026-03-02T10:30:00+08:00");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// Finding 15: numbers from CSV render as they were written, the same as
/// from `--vars`.
#[test]
fn csv_integers_stay_integers() {
    let project = live(
        &uncapped(),
        "journey v {\n  entry on event \"signed_up\"\n  email \"v/value\"\n}\n",
        "id,first_name,email,lifetime_value\nc-1,Ada,ada@example.com,250000\n",
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.write(
        "templates/v/value.email",
        "---\nsubject: \"Your value\"\n---\n{% block text %}\nValue: {{ contact.lifetime_value | default(0) }}\n\n{{ unsubscribe_url }}\n{% endblock %}\n",
    );
    project.run("2026-03-02T10:30:00+08:00");
    let step = project.outbox("c-1")[0].step.clone();
    let from_store = project.ok(&["preview", "v", &step, "--contact", "c-1"]);
    assert!(from_store.contains("Value: 250000\n"), "{from_store}");
    project.write(
        "ada.yaml",
        "contact: { id: c-1, first_name: Ada, email: ada@example.com, lifetime_value: 250000 }\n",
    );
    let from_vars = project.ok(&["preview", "v", &step, "--vars", "ada.yaml"]);
    assert!(from_vars.contains("Value: 250000\n"), "{from_vars}");
    project.deliver("2026-03-02T10:30:00+08:00");
    let eml = std::fs::read_to_string(&project.delivered_files("email")[0]).expect("eml");
    assert!(eml.contains("Value: 250000"), "{eml}");
}

/// Finding 16a: an optional field inside `{% if not field %}` is unguarded.
#[test]
fn a_negated_guard_does_not_guard() {
    let project = Project::with_settings(
        &uncapped(),
        "journey g {\n  entry on event \"signed_up\"\n  email \"g/city\"\n}\n",
    );
    project.write(
        "templates/g/city.email",
        "---\nsubject: \"Hi\"\n---\n{% block text %}\n{% if not contact.city %}City: {{ contact.city }}{% endif %}\n{{ unsubscribe_url }}\n{% endblock %}\n",
    );
    let output = project.journeyc(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("E203"), "{stdout}");
    assert!(stdout.contains("g/city.email:5:"), "{stdout}");
}

/// Finding 16b: E202 points at the variable in folded and escaped subjects.
#[test]
fn unknown_variables_in_subjects_are_located() {
    let project = Project::with_settings(
        &uncapped(),
        "journey g {\n  entry on event \"signed_up\"\n  email \"g/folded\"\n  email \"g/quoted\"\n}\n",
    );
    project.write(
        "templates/g/folded.email",
        "---\nsubject: >-\n  Hello\n  {{ contact.nickname }}\n---\n{% block text %}\n{{ unsubscribe_url }}\n{% endblock %}\n",
    );
    project.write(
        "templates/g/quoted.email",
        "---\nsubject: \"Say \\\"hi\\\" {{ contact.nickname }}\"\n---\n{% block text %}\n{{ unsubscribe_url }}\n{% endblock %}\n",
    );
    let output = project.journeyc(&["check", "--format", "json"]);
    let stdout = text(&output.stdout);
    let located: Vec<(String, u64, u64)> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|diagnostic| diagnostic["code"] == "E202")
        .map(|diagnostic| {
            (
                diagnostic["file"].as_str().unwrap_or_default().to_string(),
                diagnostic["line"].as_u64().unwrap_or_default(),
                diagnostic["column"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        located.contains(&("templates/g/folded.email".into(), 4, 6)),
        "{stdout}"
    );
    assert!(
        located.contains(&("templates/g/quoted.email".into(), 2, 25)),
        "{stdout}"
    );
}

/// Finding 16c: the Date header is the time of sending, also in preview.
#[test]
fn the_date_header_is_the_time_of_sending() {
    let project = live(
        &uncapped(),
        "journey g {\n  entry on event \"signed_up\"\n  email \"g/hello\"\n}\n",
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.run("2026-03-02T10:30:00+08:00");
    let step = project.outbox("c-1")[0].step.clone();
    let eml = project.ok(&[
        "preview",
        "g",
        &step,
        "--contact",
        "c-1",
        "--format",
        "eml",
        "--now",
        "2026-03-02T10:00:00+08:00",
    ]);
    assert!(
        eml.contains("Date: Mon, 02 Mar 2026 02:00:00 +0000"),
        "{eml}"
    );
    project.deliver("2026-03-02T10:45:00+08:00");
    let eml = std::fs::read_to_string(&project.delivered_files("email")[0]).expect("eml");
    assert!(
        eml.contains("Date: Mon, 02 Mar 2026 02:45:00 +0000"),
        "{eml}"
    );
}

/// Finding 16d: a line break after `{% endif %}` stays.
#[test]
fn a_line_break_after_a_block_tag_stays() {
    let project = live_with(
        &uncapped(),
        "journey g {\n  entry on event \"signed_up\"\n  task \"ops@example.com\" template \"g/call\"\n}\n",
        &[(
            "templates/g/call.task",
            "Call{% if contact.first_name %} {{ contact.first_name }}{% endif %}\nabout the offer\n",
        )],
        ONE,
        &[("c-1", "signed_up", "2026-03-02T10:00:00+08:00")],
    );
    project.run("2026-03-02T10:30:00+08:00");
    let step = project.outbox("c-1")[0].step.clone();
    let task = project.ok(&["preview", "g", &step, "--contact", "c-1"]);
    assert!(task.contains("Call Ada\nabout the offer"), "{task}");
}
