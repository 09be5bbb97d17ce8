//! `journeyc preview` end to end: what it prints is exactly what would be
//! sent, and the email parses as MIME.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::snapshot_settings;

const SECRET: &str = "a-preview-test-secret-0123456789";

fn project() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preview"
    ))
}

fn preview(step: &str, format: &str, vars: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars_path = dir.path().join("vars.yaml");
    std::fs::write(&vars_path, vars).expect("write vars");
    Command::new(env!("CARGO_BIN_EXE_journeyc"))
        .args([
            "preview",
            "launch",
            step,
            "--format",
            format,
            "--now",
            "2026-11-23T09:00:00+08:00",
            "--vars",
        ])
        .arg(&vars_path)
        .arg("--project")
        .arg(project())
        .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
        .output()
        .expect("journeyc runs")
}

const ZHANG: &str = "contact:\n  id: c-42\n  first_name: 张三\n  email: zhang@example.com\n  owner: li.si@qingyuan.example\n  birthday: \"1990-03-15\"\nevent:\n  amount: 1280\n  category: C7 净水器\n";

fn stdout(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

fn json(step: &str) -> serde_json::Value {
    serde_json::from_str(&stdout(&preview(step, "json", ZHANG))).expect("JSON output")
}

#[test]
fn sms_segments_on_the_edges() {
    let cases = [
        ("gsm_160", "gsm7", 1, 160),
        ("gsm_161", "gsm7", 2, 161),
        ("gsm_306", "gsm7", 2, 306),
        ("gsm_307", "gsm7", 3, 307),
        ("extension", "gsm7", 1, 157),
        ("extension_over", "gsm7", 2, 158),
        ("emoji", "ucs2", 1, 69),
        ("zh_70", "ucs2", 1, 70),
        ("zh_71", "ucs2", 2, 71),
        ("zh_134", "ucs2", 2, 134),
    ];
    for (step, encoding, segments, characters) in cases {
        let value = json(step);
        assert_eq!(value["encoding"], encoding, "{step}");
        assert_eq!(value["segments"], segments, "{step}");
        assert_eq!(value["characters"], characters, "{step}");
    }
    // `€`, `[` and `]` come from the extension table and count twice:
    // 157 characters are 160 septets (one part), 158 are 161 (two).
    assert_eq!(json("extension")["units"], 160);
    assert_eq!(json("extension_over")["units"], 161);
    // The emoji lies outside the Basic Multilingual Plane: two UCS-2 units,
    // so 69 characters fill the 70 units of one part exactly.
    assert_eq!(json("emoji")["units"], 70);
}

/// Python's `email` package is the independent judge of the MIME.
#[test]
fn eml_is_valid_mime_with_both_parts_and_one_click_unsubscribe() {
    let eml = stdout(&preview("announce", "eml", ZHANG));
    let script = r#"
import email, email.policy, sys
message = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
assert not message.defects, message.defects
assert message.get_content_type() == "multipart/alternative", message.get_content_type()
types = [part.get_content_type() for part in message.iter_parts()]
assert types == ["text/plain", "text/html"], types
print(message["Subject"])
print(message["To"])
print(message["List-Unsubscribe"])
print(message["List-Unsubscribe-Post"])
print(message["Message-ID"])
print(message.get_body(("plain",)).get_content().splitlines()[0])
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(eml.as_bytes())
        .expect("write eml");
    let output = python.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<String> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines[0], "张三，C7 净水器今天发布");
    assert_eq!(lines[1], "张三 <zhang@example.com>");
    assert!(
        lines[2].starts_with("<https://qingyuan.example/unsubscribe?token="),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "List-Unsubscribe=One-Click");
    assert_eq!(lines[4], "<preview/launch/announce/c-42@qingyuan.example>");
    assert_eq!(lines[5], "张三，您好：");
}

#[test]
fn the_unsubscribe_link_is_signed_for_this_contact_only() {
    let value = json("announce");
    let link = value["headers"]["List-Unsubscribe"]
        .as_str()
        .expect("header")
        .trim_matches(['<', '>'])
        .to_string();
    let token = link.split("token=").nth(1).expect("token parameter");
    let verified = journeyc::unsubscribe::verify(SECRET.as_bytes(), token).expect("valid token");
    assert_eq!(
        (verified.contact.as_str(), verified.channel.as_str()),
        ("c-42", "email")
    );
    let (_, rest) = token.split_once('.').expect("three parts");
    let forged = format!("Yy00Mw.{rest}"); // "c-43"
    assert_eq!(
        journeyc::unsubscribe::verify(SECRET.as_bytes(), &forged),
        Err(journeyc::unsubscribe::TokenError::Tampered)
    );
}

#[test]
fn contact_data_cannot_inject_headers() {
    let vars = "contact:\n  id: c-1\n  first_name: \"Eve\\r\\nBcc: victim@example.com\"\n  email: eve@example.com\nevent:\n  amount: 1\n  category: \"x\\nBcc: victim@example.com\"\n";
    for step in ["announce", "receipt"] {
        let eml = stdout(&preview(step, "eml", vars));
        let headers = eml.split("\r\n\r\n").next().expect("header block");
        assert!(
            !headers
                .lines()
                .any(|line| line.to_ascii_lowercase().starts_with("bcc:")),
            "{step}: {headers}"
        );
    }
}

#[test]
fn transactional_mail_has_no_unsubscribe_headers() {
    let value = json("receipt");
    assert_eq!(value["kind"], "transactional");
    assert!(value["headers"].get("List-Unsubscribe").is_none());
    assert_eq!(value["subject"], "订单确认：C7 净水器");
}

#[test]
fn empty_optional_fields_use_their_fallback() {
    let text = stdout(&preview("announce", "text", ZHANG));
    assert!(text.contains("贵单位去年选了清源"), "{text}");
    assert!(!text.to_lowercase().contains("none"), "{text}");
}

#[test]
fn tasks_and_webhooks_render_too() {
    let task = json("call");
    assert_eq!(task["assignee"], "li.si@qingyuan.example");
    assert_eq!(task["text"], "给 张三 回电：买了 C7 净水器");
    let hook = json("notify");
    let body: serde_json::Value =
        serde_json::from_str(hook["body"].as_str().expect("body")).expect("the body is JSON");
    assert_eq!(
        body,
        serde_json::json!({"contact": "c-42", "category": "C7 净水器", "amount": 1280})
    );
}

#[test]
fn text_preview_snapshot() {
    snapshot_settings().bind(|| {
        insta::assert_snapshot!(
            "preview_email_text",
            stdout(&preview("announce", "text", ZHANG))
        );
    });
}

#[test]
fn bad_requests_explain_themselves() {
    let unknown = preview("anounce", "text", ZHANG);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("did you mean `announce`?"));

    let field = preview("announce", "text", "contact:\n  frist_name: x\n");
    assert_eq!(field.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&field.stderr)
        .contains("`frist_name`, which is not a contact field; did you mean `first_name`?"));

    let eml_for_sms = preview("zh_70", "eml", ZHANG);
    assert_eq!(eml_for_sms.status.code(), Some(2));

    let missing = Command::new(env!("CARGO_BIN_EXE_journeyc"))
        .args([
            "preview",
            "launch",
            "announce",
            "--contact",
            "nobody",
            "--project",
        ])
        .arg(project())
        .output()
        .expect("journeyc runs");
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("there is no store at"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(
        !project().join("journeyc.db").exists(),
        "preview created a store"
    );
}

/// `--contact` renders a contact from the store, with its latest event of
/// the kind the step reads.
#[test]
fn preview_a_contact_from_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in [
        "journeyc.yaml",
        "journeys/launch.journey",
        "templates/launch/announce.email",
        "templates/launch/receipt.email",
        "templates/launch/hook.webhook",
    ] {
        let target = dir.path().join(entry);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(project().join(entry), target).expect("copy");
    }
    let edge = dir.path().join("templates/edge");
    std::fs::create_dir_all(&edge).expect("mkdir");
    for entry in std::fs::read_dir(project().join("templates/edge")).expect("edge") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, edge.join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(
        dir.path().join("contacts.csv"),
        "id,first_name,email,company\nc-7,李雷,li@example.com,远东酒店\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("events.jsonl"),
        "{\"id\": \"o-1\", \"contact_id\": \"c-7\", \"name\": \"order_placed\", \"at\": \"2026-11-01T10:00:00Z\", \"properties\": {\"amount\": 999, \"category\": \"滤芯\"}}\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_journeyc"))
            .args(args)
            .current_dir(dir.path())
            .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
            .output()
            .expect("runs")
    };
    assert_eq!(
        run(&["import", "contacts", "contacts.csv"]).status.code(),
        Some(0)
    );
    assert_eq!(
        run(&["import", "events", "events.jsonl"]).status.code(),
        Some(0)
    );
    let nobody = run(&["preview", "launch", "call", "--contact", "nobody"]);
    assert_eq!(nobody.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("no contact `nobody` in the store"),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
    let output = run(&[
        "preview",
        "launch",
        "call",
        "--contact",
        "c-7",
        "--format",
        "json",
    ]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(value["text"], "给 李雷 回电：买了 滤芯");
}

/// The whole email, with the two things that change per run (the Date
/// header and the random MIME boundary) replaced.
#[test]
fn eml_snapshot() {
    let eml = stdout(&preview("announce", "eml", ZHANG));
    let boundary = eml
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a multipart boundary")
        .to_string();
    let normalised: String = eml
        .replace(&boundary, "BOUNDARY")
        .split("\r\n")
        .map(|line| {
            if line.starts_with("Date: ") {
                "Date: DATE"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    snapshot_settings().bind(|| insta::assert_snapshot!("preview_email_eml", normalised));
}

/// `receipt` follows `announce` at once under a cap of one email a week:
/// fine, because receipts are transactional and exempt. Made marketing,
/// the same journey draws W134.
#[test]
fn transactional_templates_are_exempt_from_the_cap_check() {
    let check = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_journeyc"))
            .args(["check", "--format", "json"])
            .arg(dir)
            .output()
            .expect("journeyc runs")
    };
    let clean = check(project());
    assert_eq!(clean.status.code(), Some(0));
    assert!(
        clean.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    let copy = tempfile::tempdir().expect("temp dir");
    for entry in ["journeyc.yaml", "journeys/launch.journey"] {
        let target = copy.path().join(entry);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(project().join(entry), target).expect("copy");
    }
    let templates = copy.path().join("templates");
    std::fs::create_dir_all(templates.join("launch")).expect("mkdir");
    std::fs::create_dir_all(templates.join("edge")).expect("mkdir");
    for entry in std::fs::read_dir(project().join("templates/edge")).expect("edge templates") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            templates.join("edge").join(path.file_name().expect("name")),
        )
        .expect("copy");
    }
    for name in ["announce.email", "hook.webhook"] {
        std::fs::copy(
            project().join("templates/launch").join(name),
            templates.join("launch").join(name),
        )
        .expect("copy");
    }
    let receipt =
        std::fs::read_to_string(project().join("templates/launch/receipt.email")).expect("receipt");
    let marketing = receipt
        .replace("kind: transactional\n", "")
        .replace("{% endblock %}", "{{ unsubscribe_url }}\n{% endblock %}");
    std::fs::write(templates.join("launch/receipt.email"), marketing).expect("write");
    let capped = check(copy.path());
    let stdout = String::from_utf8_lossy(&capped.stdout);
    assert!(stdout.contains("\"code\":\"W134\""), "{stdout}");
}
