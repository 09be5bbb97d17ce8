//! `cargo bench --bench deliver [-- --messages N --connections K --runs R]`
//! (defaults: 4,000 messages, 128 connections, 3 runs)
//!
//! How fast `journeyc deliver` hands email to an SMTP server, against the
//! most that server takes in. Starts the test SMTP server (aiosmtpd, from
//! the crate's `.venv`, see README) on loopback, then, in the same run and
//! against the same server:
//!
//! 1. the ceiling: a minimal raw SMTP client (`TCP_NODELAY`, one command at
//!    a time, no MIME work) sends N copies of a launch email as journeyc
//!    builds it over K connections; messages per second until the last
//!    `250`;
//! 2. `journeyc deliver --channel email` over an outbox of N launch emails
//!    (the delivery fixture project, N contacts imported and one night run
//!    beforehand, not timed), with `connections: K`: messages per second of
//!    the whole process (start, claims, rendering, MIME, SMTP, settling);
//! 3. the same with one connection, over fewer messages, which shows the
//!    cost per message on a single lettre connection.
//!
//! Prints medians of R runs (default 3) and the ratio of (2) to (1). It
//! asserts that every message arrived and nothing about speed.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "../tests/integration/common/servers.rs"]
#[allow(dead_code)]
mod servers;

/// The crate's folder, as `tests/common` gives it to the servers module.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

use servers::SmtpServer;

fn option(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ------------------------------------------------------------- raw client

/// Reads one SMTP reply (all its lines); returns its code.
fn reply(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).expect("read a reply");
        assert!(read > 0, "the server closed the connection");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line
                .get(..3)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
        }
    }
}

fn command(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str, expect: u16) {
    stream.write_all(line.as_bytes()).expect("write");
    let code = reply(reader);
    assert_eq!(code, expect, "{line:?}");
}

/// Sends `count` messages over one connection, one command at a time.
fn raw_connection(port: u16, count: usize, data: &[u8], offset: usize) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    assert_eq!(reply(&mut reader), 220);
    command(&mut stream, &mut reader, "EHLO bench.example\r\n", 250);
    for index in 0..count {
        command(
            &mut stream,
            &mut reader,
            "MAIL FROM:<news@qingyuan.example>\r\n",
            250,
        );
        let rcpt = format!("RCPT TO:<raw{}@example.com>\r\n", offset + index);
        command(&mut stream, &mut reader, &rcpt, 250);
        command(&mut stream, &mut reader, "DATA\r\n", 354);
        stream.write_all(data).expect("write the message");
        command(&mut stream, &mut reader, "\r\n.\r\n", 250);
    }
    command(&mut stream, &mut reader, "QUIT\r\n", 221);
}

/// The ceiling: messages per second the server takes from K raw clients.
fn raw(port: u16, messages: usize, connections: usize, data: &[u8]) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for connection in 0..connections {
            let count = messages / connections + usize::from(connection < messages % connections);
            scope.spawn(move || raw_connection(port, count, data, connection * messages));
        }
    });
    #[allow(clippy::cast_precision_loss)]
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    rate
}

/// One launch email as journeyc builds it (multipart, Chinese, one-click
/// unsubscribe), dot-stuffed for DATA.
fn launch_email() -> Vec<u8> {
    let email = journeyc::compose::mime::Email {
        kind: journeyc::templates::MessageKind::Marketing,
        from: "清源净水 <news@qingyuan.example>".into(),
        reply_to: None,
        to_name: Some("王芳".into()),
        to_address: "wang@example.com".into(),
        subject: "王芳，新品净水器上市".into(),
        preheader: Some("老客户专享试用".into()),
        text: "王芳，您好：\n\n新品净水器上市，老客户可申请免费试用一个月。\n\n退订：https://qingyuan.example/unsubscribe?t=abc\n".into(),
        html: Some("<p>王芳，您好：</p>\n<p>新品净水器上市，老客户可申请<strong>免费试用</strong>一个月。</p>\n<p><a href=\"https://qingyuan.example/unsubscribe?t=abc\">退订</a></p>\n".into()),
        unsubscribe_url: Some("https://qingyuan.example/unsubscribe?t=abc".into()),
        key: journeyc::model::OutboxKey::new(1, journeyc::model::StepId::new("email:launch/announce"))
            .message_key(),
        date: chrono::Utc::now(),
    };
    let formatted = journeyc::compose::mime::build(&email)
        .expect("the email builds")
        .formatted();
    let text = String::from_utf8(formatted).expect("ASCII MIME");
    let stuffed = text.replace("\r\n.", "\r\n..");
    stuffed.trim_end_matches("\r\n").as_bytes().to_vec()
}

// ---------------------------------------------------------------- deliver

/// The delivery fixture project with `count` contacts planned for one
/// night: `count` launch emails due.
fn prepare(
    root: &Path,
    count: usize,
    connections: usize,
    server: &SmtpServer,
) -> Vec<(&'static str, String)> {
    let _ = std::fs::remove_dir_all(root);
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deliver"),
        root,
    );
    let settings = root.join("journeyc.yaml");
    let text = std::fs::read_to_string(&settings).expect("read settings");
    let text = text.replace("connections: 4,", &format!("connections: {connections},"));
    std::fs::write(&settings, text).expect("write settings");
    let mut csv = String::from("id,first_name,stage,email\n");
    for index in 0..count {
        let _ = writeln!(
            csv,
            "b-{index:07},客户{index},lead,person{index}@example.com"
        );
    }
    std::fs::write(root.join("contacts.csv"), csv).expect("write contacts");
    let env = vec![
        ("JOURNEYC_TEST_SMTP_URL", server.url()),
        (
            "JOURNEYC_UNSUBSCRIBE_SECRET",
            "a-long-random-unsubscribe-secret".to_string(),
        ),
    ];
    // Deployed first: a journey enrols the contacts whose trigger comes
    // after its launch, here the stage their import gives them.
    journeyc(root, &env, &["run", "--now", "2026-02-28T00:00:00Z"]);
    journeyc(
        root,
        &env,
        &[
            "import",
            "contacts",
            "contacts.csv",
            "--now",
            "2026-03-01T00:00:00Z",
        ],
    );
    journeyc(root, &env, &["run", "--now", "2026-03-01T02:00:00Z"]);
    env
}

fn journeyc(root: &Path, env: &[(&str, String)], args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_journeyc"))
        .args(args)
        .current_dir(root)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .expect("journeyc runs");
    assert!(
        output.status.success(),
        "journeyc {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Messages per second of one `journeyc deliver --channel email`.
fn deliver(root: &Path, env: &[(&str, String)], messages: usize) -> f64 {
    let started = Instant::now();
    let summary = journeyc(
        root,
        env,
        &[
            "deliver",
            "--now",
            "2026-03-01T02:05:00Z",
            "--channel",
            "email",
            "--format",
            "json",
        ],
    );
    let elapsed = started.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("JSON summary");
    assert_eq!(
        summary["channels"]["email"]["sent"].as_u64(),
        Some(messages as u64),
        "{summary}"
    );
    #[allow(clippy::cast_precision_loss)]
    let rate = messages as f64 / elapsed;
    rate
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let messages = option(&args, "--messages", 4000).max(1);
    let connections = option(&args, "--connections", 128).max(1);
    let runs = option(&args, "--runs", 3).max(1);
    let single = (messages / 20).clamp(20, 200);
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-deliver");
    let data = launch_email();
    println!(
        "{messages} messages of {} bytes, {connections} connections, {runs} runs, to aiosmtpd on 127.0.0.1",
        data.len()
    );

    let (mut ceiling, mut pooled, mut one) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // A fresh server per run: its intake does not depend on how much
        // it already holds.
        let server = SmtpServer::start();
        ceiling.push(raw(server.port, messages, connections, &data));
        let env = prepare(&root, messages, connections, &server);
        pooled.push(deliver(&root, &env, messages));
        let env = prepare(&root, single, 1, &server);
        one.push(deliver(&root, &env, single));
        let expected = messages * 2 + single;
        let received = server.received().len();
        assert_eq!(received, expected, "run {run}: every message arrived once");
        println!(
            "run {}: raw {:.0}/s, deliver ({connections} connections) {:.0}/s, deliver (1 connection) {:.1}/s",
            run + 1,
            ceiling[run],
            pooled[run],
            one[run]
        );
    }
    let (ceiling, pooled, one) = (median(ceiling), median(pooled), median(one));
    println!();
    println!("median messages/s   raw client  {ceiling:.0}");
    println!(
        "                    deliver, {connections} connections  {pooled:.0}  (ratio {:.2})",
        pooled / ceiling
    );
    println!(
        "                    deliver, 1 connection  {one:.1}  ({:.1} ms per message)",
        1000.0 / one
    );
}
