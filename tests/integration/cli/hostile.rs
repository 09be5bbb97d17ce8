//! Hostile and broken input, one test per finding: never a crash, a hang, a
//! leak or an unlocated error. Each command runs under a deadline; one
//! that does not finish in time is killed and the test fails.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::project::{Project, SECRET};
use crate::common::servers::SmtpServer;
use crate::common::{bin, text};

/// Longer than any of these commands takes in a debug build; a hang is a
/// failure. `JOURNEYC_DEADLINE` (seconds) sets another, for a release build.
fn deadline() -> Duration {
    Duration::from_secs(
        std::env::var("JOURNEYC_DEADLINE")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(20),
    )
}

/// Runs journeyc in `dir` and fails the test if it does not finish within
/// the [`deadline`].
pub(crate) fn within(dir: &Path, args: &[&str]) -> Output {
    within_for(dir, args, deadline())
}

/// [`within`] with a deadline of its own.
fn within_for(dir: &Path, args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start journeyc");
    let started = Instant::now();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`journeyc {}` did not finish within {deadline:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn all(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// Asserts a command failed with `code`, without a panic or a signal,
/// and returns everything it printed.
fn fails(output: &Output, code: i32) -> String {
    let printed = all(output);
    assert_eq!(output.status.code(), Some(code), "{printed}");
    assert!(!printed.contains("panicked"), "{printed}");
    printed
}

const WELCOME: &str = r#"journey welcome {
  entry on event "signed_up"
  email "welcome/day0"
}
"#;

const DAY0: &str = "---\nsubject: \"Welcome\"\n---\n{% block text %}\nHello {{ contact.first_name | default(\"there\") }}\n{{ unsubscribe_url }}\n{% endblock %}\n";

fn welcome() -> Project {
    let project = Project::new(WELCOME);
    project.write("templates/welcome/day0.email", DAY0);
    project
}

/// The welcome project whose email has `front` in its front matter
/// (before the subject) and `text` as its text part, from line 5.
fn welcome_saying(front: &str, text: &str) -> Project {
    let project = welcome();
    project.write(
        "templates/welcome/day0.email",
        &format!("---\n{front}subject: \"Welcome\"\n---\n{{% block text %}}\n{text}\n{{{{ unsubscribe_url }}}}\n{{% endblock %}}\n"),
    );
    project
}

/// `preview` of the welcome email with `vars.yaml`, which must be refused
/// (exit 2); what it printed.
fn preview_refuses_the_vars(project: &Project) -> String {
    let args = [
        "preview",
        "welcome",
        "email:welcome/day0",
        "--vars",
        "vars.yaml",
    ];
    fails(&within(project.path(), &args), 2)
}

/// Deploys the journeys, imports `contacts` (CSV) and a sign-up for each
/// of `ids` at 10:00 in Shanghai, and runs an hour later: each has the
/// welcome email due at 10:00.
fn signed_up(project: &Project, contacts: &str, ids: &[&str]) {
    project.run("2026-11-22T18:00:00Z");
    project.write("contacts.csv", contacts);
    project.journeyc(&[
        "import",
        "contacts",
        "contacts.csv",
        "--now",
        "2026-11-23T01:00:00Z",
    ]);
    let mut events = String::new();
    for id in ids {
        let _ = writeln!(events, "{{\"id\": \"e-{id}\", \"contact_id\": \"{id}\", \"name\": \"signed_up\", \"at\": \"2026-11-23T02:00:00Z\"}}");
    }
    project.write("events.jsonl", &events);
    project.ok(&[
        "import",
        "events",
        "events.jsonl",
        "--now",
        "2026-11-23T02:30:00Z",
    ]);
    project.run("2026-11-23T03:00:00Z");
}

/// The welcome project with `transport` as the email channel's transport.
fn with_transport(transport: &str) -> Project {
    let settings = crate::common::project::SETTINGS.replace(
        "transport: { url: \"file:out/email\" }",
        &format!("transport: {transport}"),
    );
    let project = Project::with_settings(&settings, WELCOME);
    project.write("templates/welcome/day0.email", DAY0);
    project
}

/// When the welcome emails are delivered.
const DELIVER_AT: &str = "2026-11-23T03:05:00Z";

// 1. Long operator chains overflowed the stack (exit 134).
#[test]
fn long_operator_chains_are_a_located_error() {
    let project = welcome();
    for audience in [
        format!("{}true", "not ".repeat(10_000)),
        format!("true{}", " and true".repeat(10_000)),
    ] {
        project.write(
            "journeys/long.journey",
            &format!("journey long {{\n  audience {audience}\n  entry on event \"signed_up\"\n  email \"welcome/day0\"\n}}\n"),
        );
        let printed = fails(&within(project.path(), &["check"]), 1);
        assert!(printed.contains("error[E107]"), "{printed}");
        assert!(printed.contains("journeys/long.journey:2:12"), "{printed}");
        let printed = fails(
            &within(project.path(), &["fmt", "journeys/long.journey"]),
            1,
        );
        assert!(printed.contains("journeys/long.journey:2:12"), "{printed}");
    }
}

// 2 and 3. `{%}` and an invalid `date()` format panicked, and with them every
// command that renders templates with sample values.
#[test]
fn broken_tags_and_date_formats_are_template_errors() {
    for (body, message) in [
        ("Hi {%}", "error[E201]"),
        ("Hi {{ now | date(\"%Q\") }}", "cannot use the format"),
        ("Hi {{ now | date(\"%Y%\") }}", "cannot use the format"),
    ] {
        let project = welcome_saying("", body);
        let printed = fails(&within(project.path(), &["check"]), 1);
        assert!(
            printed.contains("error[E201]") && printed.contains(message),
            "{printed}"
        );
        assert!(
            printed.contains("templates/welcome/day0.email:"),
            "{printed}"
        );
        for command in [
            vec!["run", "--now", "2026-11-23T18:00:00Z"],
            vec!["preview", "welcome", "email:welcome/day0"],
        ] {
            let output = within(project.path(), &command);
            let printed = all(&output);
            assert!(!printed.contains("panicked"), "{command:?}: {printed}");
            assert_ne!(output.status.code(), Some(0), "{command:?}: {printed}");
        }
    }
}

// 4. `tasks --days 100000000` panicked on a time overflow.
#[test]
fn tasks_days_out_of_range_is_a_usage_error() {
    let project = welcome();
    project.run("2026-11-23T18:00:00Z");
    let printed = fails(
        &within(project.path(), &["tasks", "--days", "100000000"]),
        2,
    );
    assert!(printed.contains("--days"), "{printed}");
    let output = within(project.path(), &["tasks", "--days", "3650"]);
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));
}

// 5. Nested repeats multiplied without a bound (60 s and 1.3 GB for three,
// an allocation abort for four).
#[test]
fn nested_repeats_beyond_the_step_limit_are_refused() {
    let project = welcome();
    let mut body = "email \"welcome/day0\"".to_string();
    for _ in 0..4 {
        body = format!("repeat 100 times every 1d {{ {body} }}");
    }
    project.write(
        "journeys/nested.journey",
        &format!("journey nested {{\n  entry on event \"signed_up\"\n  {body}\n}}\n"),
    );
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(printed.contains("error[E107]"), "{printed}");
    assert!(printed.contains("journeys/nested.journey:1:9"), "{printed}");
}

// 6. The caps-always-defer check was quadratic in the steps of a journey.
#[test]
fn the_cap_check_over_a_long_journey_finishes() {
    let project = welcome();
    let steps = "  wait 1d\n  email \"welcome/day0\"\n".repeat(4_900);
    project.write(
        "journeys/long.journey",
        &format!("journey long {{\n  entry on event \"signed_up\"\n{steps}}}\n"),
    );
    let output = within(project.path(), &["check", "--format", "json"]);
    let printed = all(&output);
    assert!(!printed.contains("panicked"), "{printed}");
    // A week's cap of one email defers every daily email after the first.
    assert!(printed.contains("W134"), "{printed}");

    // The finding's 80,000 pairs (32 s before in a release build, ten times
    // that in a debug one) are over the step limit. Reading 2 MB of journey
    // takes a debug build about 10 s, hence the longer deadline.
    let steps = "  wait 1d\n  email \"welcome/day0\"\n".repeat(80_000);
    project.write(
        "journeys/long.journey",
        &format!("journey long {{\n  entry on event \"signed_up\"\n{steps}}}\n"),
    );
    let printed = fails(
        &within_for(project.path(), &["check"], Duration::from_secs(90)),
        1,
    );
    assert!(printed.contains("error[E107]"), "{printed}");
}

// 7. Template loops hung every command that loads the project.
#[test]
fn runaway_templates_stop_with_a_located_error() {
    for body in [
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ \"x\" * 100000 }}{% endfor %}",
    ] {
        let project = welcome_saying("", body);
        let printed = fails(&within(project.path(), &["check"]), 1);
        assert!(printed.contains("error[E201]"), "{printed}");
        assert!(
            printed.contains("templates/welcome/day0.email:5:"),
            "{printed}"
        );
    }
}

// 8 and 10. Directory walks followed symlinks: loops walked exponentially,
// `templates/root -> /` walked the machine, and a link to /etc/passwd had
// its first line printed by `check`.
#[test]
fn symlinks_out_of_the_project_are_refused_and_never_read() {
    let project = welcome();
    let templates = project.path().join("templates");
    std::os::unix::fs::symlink(".", templates.join("a")).expect("link");
    std::os::unix::fs::symlink(".", templates.join("b")).expect("link");
    std::os::unix::fs::symlink("/", templates.join("root")).expect("link");
    std::os::unix::fs::symlink("/etc/passwd", templates.join("welcome/notes.email")).expect("link");
    std::os::unix::fs::symlink("nowhere.email", templates.join("welcome/gone.email"))
        .expect("link");
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(!printed.contains("root:x:"), "{printed}");
    for (path, problem) in [
        (
            "templates/welcome/notes.email:1:1",
            "leads outside the project",
        ),
        ("templates/root:1:1", "leads outside the project"),
        ("templates/welcome/gone.email:1:1", "does not exist"),
    ] {
        assert!(
            printed.contains(&format!(
                "error[E108]: `{}",
                path.split(':').next().unwrap_or(path)
            )) && printed.contains(path)
                && printed.contains(problem),
            "{path}: {printed}"
        );
    }
    assert!(printed.contains("templates/a"), "{printed}");

    let outside = Project::with_settings(
        &crate::common::project::SETTINGS.replace("journeys: [journeys]", "journeys: [\"/\"]"),
        WELCOME,
    );
    outside.write("templates/welcome/day0.email", DAY0);
    let printed = fails(&within(outside.path(), &["check"]), 1);
    assert!(
        printed.contains("error[E108]: `/` leads outside"),
        "{printed}"
    );
}

// 9. Deeply nested YAML took quadratic time (12 s for 128 KB).
#[test]
fn deeply_nested_yaml_is_refused_at_once() {
    let deep = format!("{}1{}", "[".repeat(65_536), "]".repeat(65_536));
    let project = welcome();
    let settings = crate::common::project::SETTINGS.replace(
        "stages: [lead, customer, dormant]",
        &format!("stages: {deep}"),
    );
    project.write("journeyc.yaml", &settings);
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(
        printed.contains("error[E106]") && printed.contains("journeyc.yaml:"),
        "{printed}"
    );

    let project = welcome();
    project.write(
        "templates/welcome/day0.email",
        &format!("---\nsubject: {deep}\n---\n{{% block text %}}x{{{{ unsubscribe_url }}}}{{% endblock %}}\n"),
    );
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(
        printed.contains("error[E106]") && printed.contains("templates/welcome/day0.email:2:"),
        "{printed}"
    );

    let project = welcome();
    project.write("vars.yaml", &format!("first_name: {deep}\n"));
    let printed = preview_refuses_the_vars(&project);
    assert!(printed.contains("vars.yaml:1:"), "{printed}");
}

// 11. `smtp://` with a username and password sent AUTH PLAIN in clear text.
#[test]
fn a_password_never_crosses_the_network_unencrypted_unasked() {
    let project = with_transport(
        "{ url_env: SMTP_URL, username_env: SMTP_USER, password_env: SMTP_PASSWORD }",
    );
    signed_up(
        &project,
        "id,email,first_name\nc1,c1@example.com,Li\n",
        &["c1"],
    );
    let deliver = |url: &str| {
        Command::new(bin())
            .args(["deliver", "--now", DELIVER_AT])
            .current_dir(project.path())
            .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
            .env("SMTP_URL", url)
            .env("SMTP_USER", "shop")
            .env("SMTP_PASSWORD", "planted-password-1")
            .output()
            .expect("deliver")
    };
    let output = deliver("smtp://mail.example.com:25");
    let printed = fails(&output, 2);
    assert!(printed.contains("clear text"), "{printed}");
    assert!(!printed.contains("planted-password-1"), "{printed}");

    // On loopback, and where the user says so, it is allowed (the latter
    // with a warning); the server here is on loopback.
    let server = SmtpServer::start_with_auth("shop", "planted-password-1");
    let output = deliver(&server.url());
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));
    assert_eq!(server.received().len(), 1);
}

// 12. An SMTP URL with credentials was echoed, password included.
#[test]
fn credentials_in_urls_are_never_echoed() {
    let project = with_transport(
        "{ url: \"smtp://shop:planted-password-2@mail.example.com:587?tls=required\" }",
    );
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(
        printed.contains("error[E101]") && printed.contains("password"),
        "{printed}"
    );
    assert!(!printed.contains("planted-password-2"), "{printed}");

    let project = with_transport("{ url_env: SMTP_URL }");
    signed_up(
        &project,
        "id,email,first_name\nc1,c1@example.com,Li\n",
        &["c1"],
    );
    for url in [
        "smtp://shop:planted-password-3@127.0.0.1:1?tls=required",
        "ftp://shop:planted-password-3@127.0.0.1:1",
    ] {
        let output = Command::new(bin())
            .args(["deliver", "--now", DELIVER_AT, "--format", "json"])
            .current_dir(project.path())
            .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
            .env("SMTP_URL", url)
            .env("JOURNEYC_LOG", "trace")
            .output()
            .expect("deliver");
        let printed = all(&output);
        assert!(!printed.contains("planted-password-3"), "{printed}");
        let why = project.journeyc(&["why", "c1", "--format", "json"]);
        assert!(!all(&why).contains("planted-password-3"), "{}", all(&why));
    }
}

// 13. `import` echoed raw CR/LF/ESC to the terminal; a 2,000-character name
// made a 2,026-character `To:` line.
#[test]
fn imported_text_is_escaped_when_shown_and_headers_stay_short() {
    let hostile = "\"x\u{1b}[31m\r\nred\"";
    let long_name = "N".repeat(2_000);
    let project = welcome();
    project.write(
        "hostile.csv",
        &format!("id,email,first_name,lifetime_value\nc2,c2@example.com,Wu,{hostile}\n"),
    );
    let printed = fails(
        &within(project.path(), &["import", "contacts", "hostile.csv"]),
        1,
    );
    assert!(
        !printed.contains('\u{1b}') && !printed.contains('\r'),
        "{printed:?}"
    );
    assert!(printed.contains("\\u{1b}"), "{printed:?}");

    let project = welcome();

    signed_up(
        &project,
        &format!("id,email,first_name\nc1,c1@example.com,{long_name}\n"),
        &["c1"],
    );
    let output = project.deliver(DELIVER_AT);
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));
    let files = project.delivered_files("email");
    assert_eq!(files.len(), 1);
    let message = std::fs::read_to_string(&files[0]).expect("eml");
    let longest = message.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 998, "a header line of {longest} characters");
}

// 14. `--now` had no sanity bound; times past 9999 were compared as text.
#[test]
fn now_out_of_range_is_a_usage_error() {
    let project = welcome();
    for now in [
        "9999-12-31T23:59:59-23:59",
        "2300-01-01T00:00:00Z",
        "1969-12-31T00:00:00Z",
    ] {
        for command in ["run", "deliver", "tasks"] {
            let printed = fails(&within(project.path(), &[command, "--now", now]), 2);
            assert!(printed.contains("--now"), "{command} {now}: {printed}");
        }
    }
}

// 15. Invalid UTF-8 gave no line; a BOM broke email templates and the first
// JSONL row; CR-only line endings broke templates and JSONL.
#[test]
fn encodings_and_line_endings_are_read_alike_or_located() {
    let project = welcome();
    project.write(
        "templates/welcome/day0.email",
        &format!("\u{feff}{}", DAY0.replace('\n', "\r")),
    );
    let output = within(project.path(), &["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));

    std::fs::write(
        project.path().join("journeys/latin1.journey"),
        b"journey latin1 {\n  title \"caf\xe9\"\n  entry on event \"signed_up\"\n}\n",
    )
    .expect("write");
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(
        printed.contains("error[E109]") && printed.contains("journeys/latin1.journey:2:13"),
        "{printed}"
    );
    std::fs::remove_file(project.path().join("journeys/latin1.journey")).expect("remove");

    project.write(
        "contacts.csv",
        "\u{feff}id,email\rc1,c1@example.com\rc2,c2@example.com\r",
    );
    let output = within(
        project.path(),
        &["import", "contacts", "contacts.csv", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));
    assert!(
        text(&output.stdout).contains("\"created\":2"),
        "{}",
        all(&output)
    );
    let events = "\u{feff}{\"id\": \"e-1\", \"contact_id\": \"c1\", \"name\": \"signed_up\", \"at\": \"2026-11-23T02:00:00Z\"}\r{\"id\": \"e-2\", \"contact_id\": \"c2\", \"name\": \"signed_up\", \"at\": \"2026-11-23T02:00:00Z\"}\r";
    project.write("events.jsonl", events);
    let output = within(
        project.path(),
        &["import", "events", "events.jsonl", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));
    assert!(
        text(&output.stdout).contains("\"created\":2"),
        "{}",
        all(&output)
    );

    std::fs::write(
        project.path().join("bad.jsonl"),
        b"{\"id\": \"e-3\", \"contact_id\": \"c1\", \"name\": \"signed_up\", \"at\": \"2026-11-23T03:00:00Z\"}\n{\"contact_id\": \"c\xff\"}\n",
    )
    .expect("write");
    let printed = fails(
        &within(project.path(), &["import", "events", "bad.jsonl"]),
        1,
    );
    assert!(
        printed.contains("bad.jsonl:2:") && printed.contains("UTF-8"),
        "{printed}"
    );
    assert!(printed.contains("1 new"), "{printed}");

    std::fs::write(
        project.path().join("vars.yaml"),
        b"first_name: \"caf\xe9\"\n",
    )
    .expect("write");
    let printed = preview_refuses_the_vars(&project);
    assert!(printed.contains("vars.yaml:1:17"), "{printed}");
}

// 16. `check` passed what `preview` and `deliver` then refused, and render
// errors named a line counted from the block, not the file.
#[test]
fn what_check_passes_renders() {
    for (front, body, found) in [
        (
            "from: \"not an address\"\n",
            "x",
            "templates/welcome/day0.email:2:1",
        ),
        (
            "reply_to: \"a@b@c\"\n",
            "x",
            "templates/welcome/day0.email:2:1",
        ),
        (
            "",
            "{% include \"welcome/missing.email\" %}",
            "templates/welcome/day0.email:6:",
        ),
        ("", "{{ 1 // 0 }}", "templates/welcome/day0.email:6:"),
        ("", "{{ 2 ** 1000 }}", "templates/welcome/day0.email:6:"),
    ] {
        let project = welcome_saying(front, &format!("Hello\n{body}"));
        let printed = fails(&within(project.path(), &["check"]), 1);
        assert!(
            printed.contains("error[E201]") && printed.contains(found),
            "{body}: {printed}"
        );
    }
    let settings = crate::common::project::SETTINGS.replace(
        "from: \"Shop <shop@example.com>\"",
        "from: \"Shop <shop at example.com>\"",
    );
    let project = Project::with_settings(&settings, WELCOME);
    project.write("templates/welcome/day0.email", DAY0);
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(
        printed.contains("error[E101]") && printed.contains("journeyc.yaml:"),
        "{printed}"
    );
}

// 17. One short CSV row aborted the import; SMTP 535 failed every due message
// for good; one value error hid every other diagnostic in its file.
#[test]
fn one_bad_part_does_not_take_the_rest_down() {
    let project = welcome();
    project.write(
        "contacts.csv",
        "id,email,first_name\nc1,c1@example.com,Li\nc2,c2@example.com\nc3,c3@example.com,Wu\n",
    );
    let printed = fails(
        &within(project.path(), &["import", "contacts", "contacts.csv"]),
        1,
    );
    assert!(
        printed.contains("contacts.csv:3:") && printed.contains("2 cells"),
        "{printed}"
    );
    assert!(printed.contains("2 new"), "{printed}");

    project.write(
        "journeys/two.journey",
        "journey two {\n  entry on event \"signed_up\"\n  repeat 18446744073709551616 times every 1d { email \"welcome/day0\" }\n  email \"welcome/nope\"\n}\n",
    );
    let printed = fails(&within(project.path(), &["check"]), 1);
    assert!(
        printed.contains("journeys/two.journey:3:10") && printed.contains("error[E200]"),
        "{printed}"
    );
    std::fs::remove_file(project.path().join("journeys/two.journey")).expect("remove");

    let settings = crate::common::project::SETTINGS.replace(
        "transport: { url: \"file:out/email\" }",
        "transport: { url_env: SMTP_URL, username_env: SMTP_USER, password_env: SMTP_PASSWORD }",
    );
    project.write("journeyc.yaml", &settings);
    signed_up(
        &project,
        "id,email,first_name\nc1,c1@example.com,Li\nc3,c3@example.com,Wu\n",
        &["c1", "c3"],
    );
    let server = SmtpServer::start_with_auth("shop", "right");
    let deliver = |password: &str| {
        Command::new(bin())
            .args(["deliver", "--now", DELIVER_AT, "--format", "json"])
            .current_dir(project.path())
            .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
            .env("SMTP_URL", server.url())
            .env("SMTP_USER", "shop")
            .env("SMTP_PASSWORD", password)
            .output()
            .expect("deliver")
    };
    let statuses = || -> Vec<String> {
        ["c1", "c3"]
            .iter()
            .flat_map(|contact| project.outbox(contact))
            .map(|row| row.status)
            .collect()
    };
    let before = statuses();
    assert_eq!(before.len(), 2, "{before:?}");
    let printed = fails(&deliver("wrong"), 2);
    assert!(
        printed.contains("refused") && printed.contains("535"),
        "{printed}"
    );
    assert_eq!(statuses(), before, "nothing is marked failed");
    let output = deliver("right");
    assert_eq!(output.status.code(), Some(0), "{}", all(&output));
    assert_eq!(server.received().len(), 2);
}
