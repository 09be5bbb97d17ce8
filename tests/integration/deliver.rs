//! `journeyc deliver` against a real SMTP server (aiosmtpd) and an HTTP
//! stub of the SMS provider on loopback, both started by the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::servers::{HttpStub, SmtpServer};
use crate::common::{copy_dir, ok};

const SECRET: &str = "a-long-random-unsubscribe-secret";

/// A fresh copy of the delivery fixture project.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deliver"),
        dir.path(),
    );
    crate::common::on_test_backend(dir.path());
    dir
}

/// The servers one test delivers to, and the environment that points the
/// project at them.
struct Servers {
    smtp: SmtpServer,
    http: HttpStub,
}

impl Servers {
    fn start() -> Servers {
        Servers {
            smtp: SmtpServer::start(),
            http: HttpStub::start_with_auth("AC-test", "token-test"),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let base = self.http.base_url();
        vec![
            ("JOURNEYC_TEST_SMTP_URL", self.smtp.url()),
            ("JOURNEYC_TEST_SMS_URL", base.clone()),
            ("JOURNEYC_TEST_SMS_SID", "AC-test".into()),
            ("JOURNEYC_TEST_SMS_TOKEN", "token-test".into()),
            ("JOURNEYC_TEST_CRM_URL", format!("{base}/crm")),
            ("JOURNEYC_TEST_TEAM_URL", format!("{base}/team")),
            ("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET.into()),
        ]
    }
}

fn command(dir: &Path, servers: &Servers, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_journeyc"));
    command.args(args).current_dir(dir).envs(servers.env());
    command
}

fn run(dir: &Path, servers: &Servers, args: &[&str]) -> Output {
    command(dir, servers, args).output().expect("journeyc runs")
}

/// `deliver --format json` at `now`; returns the summary.
fn deliver(dir: &Path, servers: &Servers, now: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["deliver", "--now", now, "--format", "json"];
    args.extend(extra);
    let output = run(dir, servers, &args);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "deliver at {now}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON summary")
}

/// Deploys the journeys (a run before anything happens, so they are live
/// when the contacts arrive), then imports the contacts.
fn import_contacts(dir: &Path, servers: &Servers, csv: &str) {
    ok(&run(
        dir,
        servers,
        &["run", "--now", "2026-02-28T00:00:00Z"],
    ));
    std::fs::write(dir.join("contacts.csv"), csv).expect("write");
    ok(&run(
        dir,
        servers,
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-03-01T00:00:00Z",
        ],
    ));
}

/// One outbox row as stored, with what delivery recorded.
#[derive(Debug, Clone)]
struct Row {
    key: String,
    contact: String,
    channel: String,
    template: String,
    status: String,
    attempts: u32,
    provider_id: Option<String>,
}

fn outbox(dir: &Path) -> Vec<Row> {
    let store = crate::common::store(dir);
    let mut rows = Vec::new();
    for contact in crate::common::contacts(&*store) {
        for row in store.outbox_of(&contact.id).expect("outbox") {
            let delivered = store
                .delivered(&row.key)
                .expect("delivered")
                .unwrap_or_default();
            rows.push(Row {
                key: row.key.to_string(),
                contact: row.contact_id,
                channel: row.channel.as_str().to_string(),
                template: row.template,
                status: row.status.to_string(),
                attempts: delivered.attempts,
                provider_id: delivered.provider_id,
            });
        }
    }
    rows
}

fn suppressions(dir: &Path) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = crate::common::store(dir)
        .suppressions()
        .expect("suppressions")
        .into_iter()
        .map(|suppression| {
            (
                suppression.address,
                suppression.channel.as_str().to_string(),
            )
        })
        .collect();
    list.sort();
    list
}

/// The Message-ID journeyc derives from an outbox key.
/// The Message-ID journeyc gives the row with `key`.
fn message_id(key: &str, domain: &str) -> String {
    let key = journeyc::model::OutboxKey::parse(key).expect("an outbox key");
    format!("{}@{domain}", key.message_key().message_id_left())
}

/// How many times the SMTP server accepted each Message-ID.
fn received_ids(smtp: &SmtpServer) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for received in smtp.received() {
        let id = received
            .message()
            .message_id()
            .expect("every message has a Message-ID")
            .to_string();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// 王芳 (`c-1`, with the email, phone and owner given as CSV cells)
/// imported and planned for the first night.
fn plan_wang(dir: &Path, servers: &Servers, cells: &str) {
    import_contacts(
        dir,
        servers,
        &format!("id,first_name,stage,email,phone,owner\nc-1,王芳,lead,{cells}\n"),
    );
    ok(&run(
        dir,
        servers,
        &["run", "--now", "2026-03-01T02:00:00Z"],
    ));
}

const CONTACTS: &str = "id,first_name,stage,email,phone,owner\n\
c-1,王芳,lead,wang@example.com,+8613800000001,li@qingyuan.example\n\
c-2,赵强,lead,bounce.zhao@example.com,+8613800000002,\n\
c-3,孙丽,lead,tempfail2.sun@example.com,+8613800000003,li@qingyuan.example\n\
c-4,周杰,lead,drop1.zhou@example.com,+8613800000004,\n\
c-5,吴敏,lead,wu@example.com,+8613800000005,li@qingyuan.example\n";

#[test]
fn nights_and_deliveries_send_exactly_the_plan_with_faults() {
    let dir = project();
    let dir = dir.path();
    let servers = Servers::start();
    import_contacts(dir, &servers, CONTACTS);
    ok(&run(
        dir,
        &servers,
        &["run", "--now", "2026-03-01T02:00:00Z"],
    ));

    // The SMS provider limits and stumbles on the first three requests; the
    // number of 吴敏 is not a valid one; the CRM is slow once.
    servers.http.queue_faults(&["429", "500", "drop"]);
    servers.http.match_faults("8613800000005", &["400"]);
    servers.http.match_faults("\"contact\": \"c-1\"", &["slow"]);

    // Day 1: deliveries every few minutes, then more after the backoff.
    let first = deliver(dir, &servers, "2026-03-01T02:05:00Z", &[]);
    assert!(
        first["channels"]["email"]["retried"].as_u64() >= Some(2),
        "{first}"
    );
    for now in [
        "2026-03-01T02:20:00Z",
        "2026-03-01T02:50:00Z",
        "2026-03-01T04:00:00Z",
    ] {
        deliver(dir, &servers, now, &[]);
    }
    // Night 2 plans the follow-ups (none to the bounced address); they go
    // out the next morning.
    ok(&run(
        dir,
        &servers,
        &["run", "--now", "2026-03-02T02:00:00Z"],
    ));
    deliver(dir, &servers, "2026-03-02T02:05:00Z", &[]);
    // Nothing is left to do, and a late delivery sends nothing again.
    let late = deliver(dir, &servers, "2026-03-05T00:00:00Z", &[]);
    assert_eq!(late["channels"], serde_json::json!({}), "{late}");

    let rows = outbox(dir);
    let status_of = |contact: &str, template: &str| -> (String, u32) {
        let row = rows
            .iter()
            .find(|row| row.contact == contact && row.template == template)
            .unwrap_or_else(|| panic!("no {template} for {contact}: {rows:#?}"));
        (row.status.clone(), row.attempts)
    };
    // What became of each fault.
    assert_eq!(
        status_of("c-2", "launch/hello"),
        ("failed".into(), 1),
        "hard bounce"
    );
    assert_eq!(
        status_of("c-2", "launch/follow_up").0,
        "suppressed",
        "no marketing email goes to a bounced address"
    );
    assert_eq!(
        status_of("c-3", "launch/hello"),
        ("sent".into(), 3),
        "451 twice, then 250"
    );
    assert_eq!(
        status_of("c-4", "launch/hello"),
        ("sent".into(), 2),
        "a dropped connection is retried"
    );
    assert_eq!(
        status_of("c-5", "launch/code"),
        ("failed".into(), 1),
        "HTTP 400"
    );
    assert_eq!(
        suppressions(dir),
        [
            ("+8613800000005".to_string(), "sms".to_string()),
            ("bounce.zhao@example.com".to_string(), "email".to_string()),
        ]
    );
    for row in &rows {
        let expected = match (
            row.contact.as_str(),
            row.channel.as_str(),
            row.template.as_str(),
        ) {
            ("c-2", "email", "launch/hello") | ("c-5", "sms", _) => "failed",
            ("c-2", "email", "launch/follow_up") => "suppressed",
            _ => "sent",
        };
        assert_eq!(row.status, expected, "{row:?}");
        if row.status == "sent" {
            assert!(
                row.provider_id.is_some(),
                "the provider's id is kept: {row:?}"
            );
        }
    }

    // `why` tells what became of each message.
    let why = ok(&run(dir, &servers, &["why", "c-2"]));
    assert!(
        why.contains("launch  email:launch/hello  email launch/hello: failed: permanent error (550): 5.1.1 <bounce.zhao@example.com>: Recipient address rejected: User unknown"),
        "{why}"
    );
    let why = ok(&run(dir, &servers, &["why", "c-3"]));
    assert!(
        why.contains("email launch/hello: sent after 3 attempts at 2026-03-01 10:50:00 +08:00 (Q"),
        "{why}"
    );

    // Email: the SMTP server got each sent email and task mail exactly
    // once, under the Message-ID that carries its key, and nothing else.
    let sent_mail: BTreeMap<String, usize> = rows
        .iter()
        .filter(|row| row.status == "sent" && matches!(row.channel.as_str(), "email" | "task"))
        .map(|row| (message_id(&row.key, "qingyuan.example"), 1))
        .collect();
    assert_eq!(received_ids(&servers.smtp), sent_mail);
    let task_mails: Vec<_> = servers
        .smtp
        .received()
        .into_iter()
        .filter(|received| {
            received
                .rcpt_tos
                .iter()
                .any(|to| to.contains("qingyuan.example"))
        })
        .collect();
    let mut task_recipients: Vec<String> = task_mails
        .iter()
        .flat_map(|mail| mail.rcpt_tos.clone())
        .collect();
    task_recipients.sort();
    assert_eq!(
        task_recipients,
        [
            "li@qingyuan.example",
            "li@qingyuan.example",
            "li@qingyuan.example",
            "ops@qingyuan.example",
            "ops@qingyuan.example",
        ],
        "tasks go to the owner, else the fallback assignee"
    );

    // A marketing email as the server got it: MIME, Chinese headers,
    // one-click unsubscribe.
    let wang = servers
        .smtp
        .received()
        .into_iter()
        .find(|received| {
            received.rcpt_tos == ["wang@example.com"]
                && received.data.contains("List-Unsubscribe-Post")
        })
        .expect("王芳's launch email");
    let message = wang.message();
    let subject = message.subject().expect("subject").to_string();
    assert!(
        subject == "王芳，新品净水器上市" || subject == "王芳，试用名额还有一些",
        "{subject}"
    );
    assert_eq!(wang.mail_from, "news@qingyuan.example");
    assert!(message
        .header_raw("List-Unsubscribe")
        .is_some_and(|value| value.contains("https://qingyuan.example/unsubscribe")));
    assert!(message
        .body_text(0)
        .is_some_and(|text| text.contains("王芳，您好")));

    // HTTP: every sent SMS, webhook and task post was accepted exactly
    // once, with the row's key as its Idempotency-Key; the faults before
    // were retried.
    let requests = servers.http.requests();
    let accepted = |path: &dyn Fn(&str) -> bool, success: &str| -> BTreeMap<String, usize> {
        requests
            .iter()
            .filter(|request| request["path"].as_str().is_some_and(path))
            .filter(|request| request["outcome"] == success)
            .fold(BTreeMap::new(), |mut keys, request| {
                let key = request["headers"]["idempotency-key"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                *keys.entry(key).or_insert(0) += 1;
                keys
            })
    };
    let sent_on = |channel: &str| -> BTreeMap<String, usize> {
        rows.iter()
            .filter(|row| row.channel == channel && row.status == "sent")
            .map(|row| {
                let key = journeyc::model::OutboxKey::parse(&row.key).expect("a key");
                (key.message_key().header_value(), 1)
            })
            .collect()
    };
    assert_eq!(
        accepted(&|path| path.ends_with("/Messages.json"), "201"),
        sent_on("sms")
    );
    assert_eq!(accepted(&|path| path == "/crm", "200"), sent_on("webhook"));
    assert_eq!(accepted(&|path| path == "/team", "200"), sent_on("task"));
    assert_eq!(sent_on("sms").len(), 4);
    assert_eq!(sent_on("webhook").len(), 5);
    assert_eq!(sent_on("task").len(), 5);
    let mut faults: Vec<&str> = requests
        .iter()
        .map(|request| request["outcome"].as_str().unwrap_or(""))
        .filter(|outcome| !matches!(*outcome, "200" | "201"))
        .collect();
    faults.sort_unstable();
    assert_eq!(
        faults,
        ["400", "429", "500", "drop", "slow"],
        "every fault happened once"
    );
    let body = requests
        .iter()
        .find(|request| {
            request["outcome"] == "201"
                && request["body"]
                    .as_str()
                    .is_some_and(|body| body.contains("8613800000001"))
        })
        .and_then(|request| request["body"].as_str())
        .expect("王芳's SMS");
    assert!(body.contains("From=%2B8610690000"), "{body}");
    assert!(
        body.contains("QYC-1"),
        "the code is made from the contact's id: {body}"
    );

    // The team robot got the task in its own JSON.
    let posts = |path: &str| -> Vec<&serde_json::Value> {
        requests
            .iter()
            .filter(|request| request["path"] == path && request["outcome"] == "200")
            .collect()
    };
    let team: serde_json::Value =
        serde_json::from_str(posts("/team")[0]["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(team["msgtype"], "text");
    assert!(
        team["text"]["content"]
            .as_str()
            .is_some_and(|content| content.contains("打电话")),
        "{team}"
    );
    assert!(requests
        .iter()
        .any(|request| request["path"] == "/crm" && request["outcome"] == "slow"));
}

/// Many emails to one contact each, for the crash and concurrency tests.
fn crowd(count: usize) -> String {
    let mut csv = String::from("id,first_name,stage,email,phone,owner\n");
    for index in 0..count {
        writeln!(
            csv,
            "p-{index:04},客户{index},lead,person{index}@example.com,,"
        )
        .expect("write");
    }
    csv
}

fn with_rate(dir: &Path, rate: u32) {
    let path: PathBuf = dir.join("journeyc.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let text = text.replace("connections: 4,", &format!("connections: 4, rate: {rate},"));
    std::fs::write(&path, text).expect("write");
}

#[test]
fn a_killed_deliver_resends_only_what_was_in_flight() {
    let dir = project();
    let dir = dir.path();
    with_rate(dir, 60);
    let servers = Servers::start();
    import_contacts(dir, &servers, &crowd(300));
    ok(&run(
        dir,
        &servers,
        &["run", "--now", "2026-03-01T02:00:00Z"],
    ));

    // The deliver dies right after it has written its second batch of
    // outcomes, with the messages it has sent since still unsettled.
    let aborted = command(
        dir,
        &servers,
        &[
            "deliver",
            "--now",
            "2026-03-01T02:05:00Z",
            "--channel",
            "email",
        ],
    )
    .env("JOURNEYC_FAULT", "deliver.settled:2")
    .output()
    .expect("deliver runs");
    assert!(
        !aborted.status.success()
            && String::from_utf8_lossy(&aborted.stderr)
                .contains("fault injected at deliver.settled #2"),
        "{}",
        String::from_utf8_lossy(&aborted.stderr)
    );

    let after_kill = outbox(dir);
    let in_flight: BTreeSet<String> = after_kill
        .iter()
        .filter(|row| row.status == "sending")
        .map(|row| message_id(&row.key, "qingyuan.example"))
        .collect();
    let sent_before: BTreeSet<String> = after_kill
        .iter()
        .filter(|row| row.status == "sent")
        .map(|row| message_id(&row.key, "qingyuan.example"))
        .collect();
    assert!(!sent_before.is_empty() && after_kill.iter().any(|row| row.status == "pending"));

    // Right away, a new deliver leaves the claimed rows alone (their claim
    // is fresh) and sends the rest.
    deliver(
        dir,
        &servers,
        "2026-03-01T02:06:00Z",
        &["--channel", "email"],
    );
    // After the lease, the rows the killed process held are sent again.
    deliver(
        dir,
        &servers,
        "2026-03-01T02:30:00Z",
        &["--channel", "email"],
    );

    let rows = outbox(dir);
    assert!(
        rows.iter()
            .filter(|row| row.channel == "email")
            .all(|row| row.status == "sent"),
        "every email went out: {:?}",
        rows.iter()
            .filter(|row| row.channel == "email" && row.status != "sent")
            .collect::<Vec<_>>()
    );
    let received = received_ids(&servers.smtp);
    let expected: BTreeSet<String> = rows
        .iter()
        .filter(|row| row.channel == "email")
        .map(|row| message_id(&row.key, "qingyuan.example"))
        .collect();
    assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (id, count) in &received {
        assert!(
            *count == 1 || (*count == 2 && in_flight.contains(id)),
            "{id} arrived {count} times; only messages in flight at the kill may arrive twice"
        );
        if sent_before.contains(id) {
            assert_eq!(*count, 1, "{id} was marked sent before the kill");
        }
    }
}

#[test]
fn two_concurrent_delivers_never_share_a_row() {
    let dir = project();
    let dir = dir.path();
    let servers = Servers::start();
    import_contacts(dir, &servers, &crowd(400));
    ok(&run(
        dir,
        &servers,
        &["run", "--now", "2026-03-01T02:00:00Z"],
    ));

    let spawn = || {
        command(
            dir,
            &servers,
            &[
                "deliver",
                "--now",
                "2026-03-01T02:05:00Z",
                "--channel",
                "email",
                "--format",
                "json",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("deliver starts")
    };
    let (first, second) = (spawn(), spawn());
    let sent: Vec<u64> = [first, second]
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("finished");
            let summary: serde_json::Value = serde_json::from_str(&ok(&output)).expect("JSON");
            summary["channels"]["email"]["sent"].as_u64().unwrap_or(0)
        })
        .collect();
    assert_eq!(sent.iter().sum::<u64>(), 400, "{sent:?}");
    assert!(
        sent.iter().all(|sent| *sent > 0),
        "both worked at once: {sent:?}"
    );
    let received = received_ids(&servers.smtp);
    assert_eq!(received.len(), 400);
    assert!(
        received.values().all(|count| *count == 1),
        "a row was sent twice"
    );
    assert!(outbox(dir)
        .iter()
        .filter(|row| row.channel == "email")
        .all(|row| row.status == "sent"));
}

/// Replaces a line of the copied settings.
fn edit_settings(dir: &Path, from: &str, to: &str) {
    let path = dir.join("journeyc.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "the settings have no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn file_transports_write_what_is_due_and_tasks_are_listed() {
    let dir = project();
    let dir = dir.path();
    edit_settings(
        dir,
        "transport: { url_env: JOURNEYC_TEST_SMTP_URL, connections: 4, timeout: 5s }",
        "transport: { url: \"file:out/mail\" }",
    );
    edit_settings(
        dir,
        "kind: twilio\n      url_env: JOURNEYC_TEST_SMS_URL",
        "kind: file\n      url: out/sms",
    );
    edit_settings(
        dir,
        "  task: { fallback_assignee: \"ops@qingyuan.example\", email: true, webhook: team }",
        "  task: { fallback_assignee: \"ops@qingyuan.example\" }",
    );
    let servers = Servers::start();
    plan_wang(
        dir,
        &servers,
        "wang@example.com,+8613800000001,li@qingyuan.example",
    );
    let summary = deliver(
        dir,
        &servers,
        "2026-03-01T02:05:00Z",
        &["--channel", "email", "--channel", "sms"],
    );
    assert_eq!(summary["channels"]["email"]["sent"], 1, "{summary}");
    assert_eq!(summary["channels"]["sms"]["sent"], 1, "{summary}");

    let mail = std::fs::read_to_string(dir.join("out/mail/1=2Femail=3Alaunch=2Fhello.eml"))
        .expect("the .eml, named by its key");
    let message = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .expect("MIME");
    assert_eq!(message.subject(), Some("王芳，新品净水器上市"));
    assert_eq!(
        message.message_id(),
        Some("1/email=3Alaunch/hello@qingyuan.example")
    );
    let sms: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/sms/1=2Fsms=3Alaunch=2Fcode.json"))
            .expect("the SMS file"),
    )
    .expect("JSON");
    assert_eq!(sms["to"], "+8613800000001");
    assert_eq!(sms["body"], "王芳，您的试用申请码是 QYC-1。");

    // The task goes nowhere by itself: `journeyc tasks` is where it is read.
    let tasks = ok(&run(
        dir,
        &servers,
        &["tasks", "--now", "2026-03-01T03:00:00Z"],
    ));
    assert_eq!(
        tasks,
        "2026-03-01 08:00:00 +08:00  li@qingyuan.example  c-1 (launch task:owner:234300), due within 1d  [pending]\n    给 王芳 打电话：介绍新品试用\n"
    );
    let mine = ok(&run(
        dir,
        &servers,
        &[
            "tasks",
            "--now",
            "2026-03-01T03:00:00Z",
            "--assignee",
            "ops@qingyuan.example",
        ],
    ));
    assert_eq!(
        mine,
        "no tasks from 2026-02-22 11:00:00 +08:00 to 2026-03-02 11:00:00 +08:00\n"
    );
}

#[test]
fn a_json_webhook_carries_sms_to_other_providers() {
    let dir = project();
    let dir = dir.path();
    edit_settings(
        dir,
        "      kind: twilio\n      url_env: JOURNEYC_TEST_SMS_URL\n",
        "      kind: webhook\n      url_env: JOURNEYC_TEST_SMS_HOOK\n      \
         body: '{\"phone\": {{ to | tojson }}, \"sign\": {{ from | tojson }}, \"text\": {{ body | tojson }}, \"outId\": {{ key | tojson }}}'\n      \
         headers_env: { Authorization: JOURNEYC_TEST_SMS_AUTH }\n",
    );
    let servers = Servers::start();
    plan_wang(dir, &servers, "wang@example.com,+8613800000001,");
    servers.http.queue_faults(&["500"]);
    let mut env_command = command(
        dir,
        &servers,
        &[
            "deliver",
            "--now",
            "2026-03-01T02:05:00Z",
            "--channel",
            "sms",
            "--format",
            "json",
        ],
    );
    env_command
        .env(
            "JOURNEYC_TEST_SMS_HOOK",
            format!("{}/sms/send", servers.http.base_url()),
        )
        .env("JOURNEYC_TEST_SMS_AUTH", "Bearer sms-token");
    let first: serde_json::Value =
        serde_json::from_str(&ok(&env_command.output().expect("runs"))).expect("JSON");
    assert_eq!(first["channels"]["sms"]["retried"], 1, "{first}");
    // Before the backoff is over nothing is tried again; after it, it is.
    let again = |now: &str| -> serde_json::Value {
        let mut command = command(
            dir,
            &servers,
            &[
                "deliver",
                "--now",
                now,
                "--channel",
                "sms",
                "--format",
                "json",
            ],
        );
        command
            .env(
                "JOURNEYC_TEST_SMS_HOOK",
                format!("{}/sms/send", servers.http.base_url()),
            )
            .env("JOURNEYC_TEST_SMS_AUTH", "Bearer sms-token");
        serde_json::from_str(&ok(&command.output().expect("runs"))).expect("JSON")
    };
    assert_eq!(
        again("2026-03-01T02:10:00Z")["channels"],
        serde_json::json!({})
    );
    assert_eq!(again("2026-03-01T02:20:00Z")["channels"]["sms"]["sent"], 1);

    let requests = servers.http.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request["path"], "/sms/send");
        assert_eq!(request["headers"]["authorization"], "Bearer sms-token");
        assert_eq!(request["headers"]["content-type"], "application/json");
        assert_eq!(request["headers"]["idempotency-key"], "1/sms=3Alaunch/code");
        let body: serde_json::Value =
            serde_json::from_str(request["body"].as_str().expect("body")).expect("a JSON body");
        assert_eq!(
            body,
            serde_json::json!({
                "phone": "+8613800000001",
                "sign": "+8610690000",
                "text": "王芳，您的试用申请码是 QYC-1。",
                "outId": "1/sms:launch/code",
            })
        );
    }
    let sent = outbox(dir)
        .into_iter()
        .find(|row| row.channel == "sms")
        .expect("the SMS row");
    assert_eq!((sent.status.as_str(), sent.attempts), ("sent", 2));
    assert_eq!(
        sent.provider_id.as_deref(),
        Some("wh-1"),
        "the provider's id from its answer"
    );
}

#[test]
fn what_cannot_be_sent_is_said_before_anything_is_claimed() {
    let dir = project();
    let dir = dir.path();
    let servers = Servers::start();
    plan_wang(dir, &servers, "wang@example.com,+8613800000001,");
    // The SMTP URL's variable is not set.
    let output = command(dir, &servers, &["deliver", "--now", "2026-03-01T02:05:00Z"])
        .env_remove("JOURNEYC_TEST_SMTP_URL")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: channels.email.transport: the environment variable `JOURNEYC_TEST_SMTP_URL` is not set\n"
    );
    // Without the unsubscribe secret no marketing email can be built:
    // nothing is tried (and so nothing fails for good).
    let output = command(dir, &servers, &["deliver", "--now", "2026-03-01T02:05:00Z"])
        .env_remove("JOURNEYC_UNSUBSCRIBE_SECRET")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: email is due, but a marketing email carries a signed unsubscribe link: set the environment variable JOURNEYC_UNSUBSCRIBE_SECRET to the secret that signs it (at least 16 random bytes, e.g. `export JOURNEYC_UNSUBSCRIBE_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')`)\n"
    );
    // A misspelt transport setting is a settings error.
    edit_settings(
        dir,
        "      kind: twilio\n",
        "      kind: twilio\n      bogus: 1\n",
    );
    let output = run(dir, &servers, &["deliver", "--now", "2026-03-01T02:05:00Z"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a settings error is a check error"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown setting `bogus`"));
    let output = run(dir, &servers, &["deliver", "--channel", "fax"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("[possible values: email, sms, task, webhook]"));
    assert!(
        outbox(dir)
            .iter()
            .all(|row| row.status == "pending" && row.attempts == 0),
        "nothing was claimed"
    );
}

#[test]
fn a_late_message_expires_and_temporary_failures_end() {
    let dir = project();
    let dir = dir.path();
    std::fs::write(
        dir.join("journeys/launch.journey"),
        "journey launch {\n  entry on stage \"lead\"\n  sms \"launch/code\" expires after 1h\n  email \"launch/hello\"\n}\n",
    )
    .expect("write");
    let servers = Servers::start();
    plan_wang(dir, &servers, "tempfail9.wang@example.com,+8613800000001,");
    // Three hours late: the code is useless now and is not sent; the
    // email keeps failing (451) and is given up after three attempts.
    let mut failed = 0;
    for now in [
        "2026-03-01T05:00:00Z",
        "2026-03-01T06:00:00Z",
        "2026-03-01T08:00:00Z",
        "2026-03-02T00:00:00Z",
    ] {
        let summary = deliver(dir, &servers, now, &[]);
        failed += summary["channels"]["email"]["failed"].as_u64().unwrap_or(0);
    }
    assert_eq!(failed, 1);
    let rows = outbox(dir);
    let status = |channel: &str| {
        rows.iter()
            .find(|row| row.channel == channel)
            .map(|row| (row.status.clone(), row.attempts))
            .expect("row")
    };
    // Expired when it was claimed: never attempted.
    assert_eq!(status("sms"), ("expired".to_string(), 0));
    assert_eq!(status("email"), ("failed".to_string(), 3));
    assert!(
        servers.http.requests().is_empty(),
        "the expired SMS never left"
    );
    assert_eq!(
        servers
            .smtp
            .rcpt_log()
            .iter()
            .filter(|(_, code)| *code == 451)
            .count(),
        3
    );
}

/// Email to a relay that speaks TLS, STARTTLS or from the first byte, with
/// a certificate from a company CA the project names in `ca_file`.
fn deliver_over_tls(mode: &str, url: impl Fn(u16) -> String) {
    let dir = project();
    let dir = dir.path();
    let smtp = SmtpServer::start_tls(mode);
    let servers = Servers {
        smtp,
        http: HttpStub::start(),
    };
    std::fs::copy(servers.smtp.ca_file(), dir.join("company-ca.pem")).expect("copy the CA");
    edit_settings(
        dir,
        "transport: { url_env: JOURNEYC_TEST_SMTP_URL, connections: 4, timeout: 5s }",
        "transport: { url_env: JOURNEYC_TEST_SMTP_URL, connections: 4, timeout: 5s, ca_file: company-ca.pem }",
    );
    plan_wang(dir, &servers, "wang@example.com,,");
    let output = command(
        dir,
        &servers,
        &[
            "deliver",
            "--now",
            "2026-03-01T02:05:00Z",
            "--channel",
            "email",
            "--format",
            "json",
        ],
    )
    .env("JOURNEYC_TEST_SMTP_URL", url(servers.smtp.port))
    .output()
    .expect("runs");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(summary["channels"]["email"]["sent"], 1, "{mode}: {summary}");
    let received = servers.smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(received[0].rcpt_tos, ["wang@example.com"]);
    assert_eq!(
        received[0].message().subject(),
        Some("王芳，新品净水器上市")
    );
}

#[test]
fn email_goes_over_starttls_and_smtps_with_a_company_ca() {
    deliver_over_tls("starttls", |port| {
        format!("smtp://127.0.0.1:{port}?tls=required")
    });
    deliver_over_tls("implicit", |port| format!("smtps://127.0.0.1:{port}"));
}

/// Without the company CA the relay's certificate is not trusted: the
/// attempt fails (to be retried once the settings are fixed) and nothing
/// goes out in clear.
#[test]
fn an_untrusted_certificate_sends_nothing() {
    let dir = project();
    let dir = dir.path();
    let servers = Servers {
        smtp: SmtpServer::start_tls("starttls"),
        http: HttpStub::start(),
    };
    plan_wang(dir, &servers, "wang@example.com,,");
    let output = command(
        dir,
        &servers,
        &[
            "deliver",
            "--now",
            "2026-03-01T02:05:00Z",
            "--channel",
            "email",
            "--format",
            "json",
        ],
    )
    .env(
        "JOURNEYC_TEST_SMTP_URL",
        format!("smtp://127.0.0.1:{}?tls=required", servers.smtp.port),
    )
    .output()
    .expect("runs");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(summary["channels"]["email"]["retried"], 1, "{summary}");
    assert!(servers.smtp.received().is_empty());
    let row = outbox(dir)
        .into_iter()
        .find(|row| row.channel == "email")
        .expect("row");
    assert_eq!(row.status, "pending");
}

/// A whole scenario (import, nights, delivery over SMTP with a login,
/// Twilio and webhooks, every reporting command) with trace logs on and
/// secrets planted in every credential: none of them appears in any output,
/// log line, written file or the store.
#[test]
fn a_full_scenario_with_trace_logs_leaks_no_secret() {
    let dir = project();
    let dir = dir.path();
    edit_settings(
        dir,
        "transport: { url_env: JOURNEYC_TEST_SMTP_URL, connections: 4, timeout: 5s }",
        "transport: { url_env: JOURNEYC_TEST_SMTP_URL, username_env: JOURNEYC_TEST_SMTP_USER, password_env: JOURNEYC_TEST_SMTP_PASSWORD, connections: 4, timeout: 5s }",
    );
    edit_settings(
        dir,
        "crm: { url_env: JOURNEYC_TEST_CRM_URL, timeout: 2s }",
        "crm: { url_env: JOURNEYC_TEST_CRM_URL, headers_env: { Authorization: JOURNEYC_TEST_CRM_TOKEN }, timeout: 2s }",
    );
    let secrets = [
        "planted-smtp-password-81",
        "planted-twilio-token-82",
        "Bearer planted-crm-token-83",
        "planted-unsubscribe-secret-84-long-enough",
    ];
    let smtp = SmtpServer::start_with_auth("news", secrets[0]);
    let http = HttpStub::start_with_auth("AC-test", secrets[1]);
    let base = http.base_url();
    let env = [
        ("JOURNEYC_TEST_SMTP_URL", smtp.url()),
        ("JOURNEYC_TEST_SMTP_USER", "news".to_string()),
        ("JOURNEYC_TEST_SMTP_PASSWORD", secrets[0].to_string()),
        ("JOURNEYC_TEST_SMS_URL", base.clone()),
        ("JOURNEYC_TEST_SMS_SID", "AC-test".into()),
        ("JOURNEYC_TEST_SMS_TOKEN", secrets[1].to_string()),
        ("JOURNEYC_TEST_CRM_URL", format!("{base}/crm")),
        ("JOURNEYC_TEST_CRM_TOKEN", secrets[2].to_string()),
        ("JOURNEYC_TEST_TEAM_URL", format!("{base}/team")),
        ("JOURNEYC_UNSUBSCRIBE_SECRET", secrets[3].to_string()),
        ("JOURNEYC_LOG", "trace".to_string()),
    ];
    let mut printed = String::new();
    let mut step = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_journeyc"))
            .args(args)
            .current_dir(dir)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .output()
            .expect("journeyc runs");
        let both = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{args:?}: {both}"
        );
        printed.push_str(&both);
    };
    step(&["run", "--now", "2026-02-28T00:00:00Z"]);
    std::fs::write(dir.join("contacts.csv"), CONTACTS).expect("write");
    step(&[
        "import",
        "contacts",
        "contacts.csv",
        "--now",
        "2026-03-01T00:00:00Z",
    ]);
    step(&["check"]);
    for now in ["2026-03-01T02:00:00Z", "2026-03-02T02:00:00Z"] {
        step(&["run", "--now", now]);
        step(&["deliver", "--now", &now.replace("T02:00", "T02:05")]);
    }
    step(&["status", "--format", "json"]);
    step(&["why", "c-1", "--format", "json"]);
    step(&["tasks", "--now", "2026-03-02T03:00:00Z"]);
    step(&["graph", "launch"]);
    // Something really went out, with the login and the token.
    assert!(!smtp.received().is_empty(), "{printed}");
    assert!(!http.requests().is_empty(), "{printed}");
    assert!(
        printed.contains("TRACE") || printed.contains("DEBUG"),
        "trace logs are on"
    );

    let mut written = vec![crate::common::store_dump(dir)];
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                written.push(std::fs::read(&path).expect("file"));
            }
        }
    }
    let basic = base64_of(&format!("AC-test:{}", secrets[1]));
    for secret in secrets
        .iter()
        .map(|secret| secret.trim_start_matches("Bearer "))
        .chain([basic.as_str()])
    {
        assert!(!printed.contains(secret), "`{secret}` in the output");
        for bytes in &written {
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "`{secret}` in a file the scenario wrote"
            );
        }
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
