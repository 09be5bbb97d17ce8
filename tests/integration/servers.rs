//! The servers the delivery tests run against, tested on their own: raw SMTP
//! conversations and raw HTTP requests, so that a delivery test failing
//! points at journeyc and not at its test servers.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use base64::Engine as _;

use crate::common::servers::{HttpStub, SmtpServer};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A client speaking SMTP line by line.
struct Smtp {
    reader: BufReader<TcpStream>,
}

impl Smtp {
    fn connect(server: &SmtpServer) -> Smtp {
        let stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut smtp = Smtp {
            reader: BufReader::new(stream),
        };
        let (code, _) = smtp.reply().expect("greeting");
        assert_eq!(code, 220);
        smtp.command("EHLO client.example.com").expect_code(250);
        smtp
    }

    /// One reply, its lines joined by `\n`; an error when the server hung up.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end_matches("\r\n");
            assert!(line.len() >= 3, "short reply line {line:?}");
            text.push(line.to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                let code = line[..3].parse().expect("reply code");
                return Ok((code, text.join("\n")));
            }
        }
    }

    fn command(&mut self, line: &str) -> Reply {
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        Reply(self.reply().unwrap_or_else(|e| panic!("{line}: {e}")))
    }

    /// Sends DATA, then the message (dot-stuffed) and the final dot.
    fn data(&mut self, message: &str) -> io::Result<(u16, String)> {
        self.command("DATA").expect_code(354);
        let mut wire = String::new();
        for line in message.split_inclusive("\r\n") {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
        }
        wire.push_str(".\r\n");
        self.reader.get_mut().write_all(wire.as_bytes())?;
        self.reply()
    }

    /// MAIL, RCPT for each recipient (all must be accepted), DATA.
    fn send(&mut self, from: &str, to: &[&str], message: &str) -> (u16, String) {
        self.command(&format!("MAIL FROM:<{from}>"))
            .expect_code(250);
        for rcpt in to {
            self.command(&format!("RCPT TO:<{rcpt}>")).expect_code(250);
        }
        self.data(message).expect("answer to the message")
    }
}

struct Reply((u16, String));

impl Reply {
    fn expect_code(self, code: u16) -> String {
        let (got, text) = self.0;
        assert_eq!(got, code, "reply {text:?}");
        text
    }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: shop@example.com\r\nTo: li@example.com\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
    )
}

fn queue_id(reply: &str) -> &str {
    reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a queued reply: {reply:?}"))
}

#[test]
fn smtp_accepts_a_message_and_records_envelope_and_data() {
    let server = SmtpServer::start();
    assert_eq!(server.url(), format!("smtp://127.0.0.1:{}", server.port));
    let mut smtp = Smtp::connect(&server);
    let ehlo = smtp.command("EHLO client.example.com").expect_code(250);
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    assert!(ehlo.contains("SMTPUTF8"), "{ehlo}");

    // 8-bit Chinese in a header, and a body line that needs dot-stuffing.
    let first = message("你好，李雷", "您的订单已发货。\r\n.这一行以点开头\r\n");
    smtp.command("MAIL FROM:<shop@example.com> BODY=8BITMIME SMTPUTF8")
        .expect_code(250);
    smtp.command("RCPT TO:<li@example.com>").expect_code(250);
    smtp.command("RCPT TO:<Wang@Example.com>").expect_code(250);
    let (code, reply) = smtp.data(&first).expect("answer");
    assert_eq!(code, 250);
    assert_eq!(queue_id(&reply), "Q000001");

    let second = message("=?UTF-8?B?5LyY5oOg5Yi4?=", "second\r\n");
    let (code, reply) = smtp.send("news@example.com", &["zhao@example.com"], &second);
    assert_eq!((code, queue_id(&reply)), (250, "Q000002"));
    smtp.command("QUIT").expect_code(221);

    let received = server.wait_for(2, TIMEOUT);
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].mail_from, "shop@example.com");
    assert_eq!(received[0].rcpt_tos, ["li@example.com", "Wang@Example.com"]);
    assert_eq!(received[0].data, first);
    assert_eq!(received[0].queue_id, "Q000001");
    assert_eq!(received[0].message().subject(), Some("你好，李雷"));
    assert_eq!(received[1].mail_from, "news@example.com");
    assert_eq!(received[1].rcpt_tos, ["zhao@example.com"]);
    assert_eq!(received[1].message().subject(), Some("优惠券"));
    assert_eq!(received[1].queue_id, "Q000002");
    assert_eq!(
        server.rcpt_log(),
        [
            ("li@example.com".to_owned(), 250),
            ("Wang@Example.com".to_owned(), 250),
            ("zhao@example.com".to_owned(), 250),
        ]
    );
}

#[test]
fn smtp_bounces_every_time() {
    let server = SmtpServer::start();
    for _ in 0..2 {
        let mut smtp = Smtp::connect(&server);
        smtp.command("MAIL FROM:<shop@example.com>")
            .expect_code(250);
        let reply = smtp
            .command("RCPT TO:<bounce.zhang@example.com>")
            .expect_code(550);
        assert_eq!(
            reply,
            "550 5.1.1 <bounce.zhang@example.com>: Recipient address rejected: User unknown"
        );
        smtp.command("RCPT TO:<BOUNCE-2@example.com>")
            .expect_code(550);
        // No recipient was accepted, so there is nothing to send to.
        smtp.command("DATA").expect_code(503);
        smtp.command("QUIT").expect_code(221);
    }
    assert!(server.received().is_empty());
    let codes: Vec<u16> = server
        .rcpt_log()
        .into_iter()
        .map(|(_, code)| code)
        .collect();
    assert_eq!(codes, [550, 550, 550, 550]);
}

#[test]
fn smtp_tempfails_n_times_per_address_then_accepts() {
    let server = SmtpServer::start();
    let li = "tempfail2.li@example.com";
    // Each attempt on a new connection: the count is per address, not per
    // session.
    for attempt in 1..=2 {
        let mut smtp = Smtp::connect(&server);
        smtp.command("MAIL FROM:<shop@example.com>")
            .expect_code(250);
        let reply = smtp.command(&format!("RCPT TO:<{li}>")).expect_code(451);
        assert_eq!(reply, "451 4.7.1 Try again later");
        // Another address has its own count; the local part is matched
        // without regard to case.
        smtp.command("RCPT TO:<TempFail1.Wang@example.com>")
            .expect_code(if attempt == 1 { 451 } else { 250 });
    }
    let mut smtp = Smtp::connect(&server);
    let (code, _) = smtp.send("shop@example.com", &[li], &message("hi", "third try\r\n"));
    assert_eq!(code, 250);

    let received = server.wait_for(1, TIMEOUT);
    assert_eq!(received[0].rcpt_tos, [li]);
    let li_codes: Vec<u16> = server
        .rcpt_log()
        .into_iter()
        .filter(|(rcpt, _)| rcpt == li)
        .map(|(_, code)| code)
        .collect();
    assert_eq!(li_codes, [451, 451, 250]);
    let wang_codes: Vec<u16> = server
        .rcpt_log()
        .into_iter()
        .filter(|(rcpt, _)| rcpt != li)
        .map(|(_, code)| code)
        .collect();
    assert_eq!(wang_codes, [451, 250]);
}

#[test]
fn smtp_drops_the_connection_after_the_message_then_accepts() {
    let server = SmtpServer::start();
    let to = "drop1.zhao@example.com";
    let text = message("订单", "body\r\n");

    let mut smtp = Smtp::connect(&server);
    smtp.command("MAIL FROM:<shop@example.com>")
        .expect_code(250);
    smtp.command(&format!("RCPT TO:<{to}>")).expect_code(250);
    let answer = smtp.data(&text);
    assert!(
        answer.is_err(),
        "expected a dropped connection, got {answer:?}"
    );
    assert!(server.received().is_empty());

    let mut smtp = Smtp::connect(&server);
    let (code, reply) = smtp.send("shop@example.com", &[to], &text);
    assert_eq!(code, 250);
    // The dropped message took no queue id.
    assert_eq!(queue_id(&reply), "Q000001");
    let received = server.wait_for(1, TIMEOUT);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].data, text);
    assert_eq!(
        server.rcpt_log(),
        [(to.to_owned(), 250), (to.to_owned(), 250)]
    );
}

#[test]
fn smtp_takes_large_messages_and_parallel_connections() {
    let server = SmtpServer::start();
    let line = format!("{}\r\n", "0123456789".repeat(7));
    let large = message("big", &line.repeat(5 * 1024 * 1024 / line.len()));
    let mut smtp = Smtp::connect(&server);
    let (code, reply) = smtp.send("shop@example.com", &["li@example.com"], &large);
    assert_eq!(code, 250, "{reply}");

    let threads: Vec<_> = (0..16)
        .map(|client| {
            let port = server.port;
            thread::spawn(move || {
                let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                let mut smtp = Smtp {
                    reader: BufReader::new(stream),
                };
                assert_eq!(smtp.reply().expect("greeting").0, 220);
                smtp.command("EHLO parallel").expect_code(250);
                for n in 0..5 {
                    let to = format!("user{client}.{n}@example.com");
                    let text = message(&format!("{client}/{n}"), "x\r\n");
                    assert_eq!(smtp.send("shop@example.com", &[&to], &text).0, 250);
                }
                smtp.command("QUIT").expect_code(221);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    let received = server.wait_for(81, TIMEOUT);
    assert_eq!(received.len(), 81);
    assert_eq!(received[0].data, large);
    let mut ids: Vec<&str> = received.iter().map(|r| r.queue_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 81, "queue ids repeat");
}

#[test]
fn servers_exit_cleanly_on_sigterm() {
    let server = SmtpServer::start();
    let _idle = Smtp::connect(&server);
    let status = server.terminate();
    assert!(status.success(), "SMTP server: {status}");
    let stub = HttpStub::start();
    let status = stub.terminate();
    assert!(status.success(), "HTTP stub: {status}");
}

/// An HTTP answer.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// A keep-alive HTTP/1.1 connection.
struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    fn connect(stub: &HttpStub, read_timeout: Duration) -> Http {
        let stream = TcpStream::connect(("127.0.0.1", stub.port)).expect("connect");
        stream
            .set_read_timeout(Some(read_timeout))
            .expect("timeout");
        Http {
            reader: BufReader::new(stream),
        }
    }

    fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> io::Result<Response> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            write!(request, "{name}: {value}\r\n").expect("write to a String");
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.reader.get_mut().write_all(request.as_bytes())?;

        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = response
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .expect("a length");
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        response.body = String::from_utf8(body).expect("UTF-8 body");
        Ok(response)
    }
}

const TWILIO: &str = "/2010-04-01/Accounts/AC0123/Messages.json";
const FORM: &str = "application/x-www-form-urlencoded";

fn basic(user: &str, pass: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {encoded}")
}

fn outcomes(stub: &HttpStub) -> Vec<String> {
    stub.requests()
        .iter()
        .map(|r| r["outcome"].as_str().expect("outcome").to_owned())
        .collect()
}

#[test]
fn stub_answers_twilio_posts_with_basic_auth_and_logs_them() {
    let stub = HttpStub::start_with_auth("AC0123", "secret");
    assert_eq!(stub.base_url(), format!("http://127.0.0.1:{}", stub.port));
    let auth = basic("AC0123", "secret");
    let body = "To=%2B8613800000001&From=%2B15005550006&Body=%E4%BD%A0%E5%A5%BD";
    let mut http = Http::connect(&stub, TIMEOUT);
    let response = http
        .post(
            TWILIO,
            &[("Authorization", &auth), ("Content-Type", FORM)],
            body,
        )
        .expect("answer");
    assert_eq!(response.status, 201, "{response:?}");
    let json = response.json();
    assert_eq!(json["sid"], "SM00000000000000000000000000000001");
    assert_eq!(json["status"], "queued");
    assert_eq!(json["to"], "+8613800000001");
    assert_eq!(json["body"], "你好");

    // Same connection: keep-alive works and the counter moves on.
    let response = http
        .post(
            TWILIO,
            &[("Authorization", &auth), ("Content-Type", FORM)],
            "To=%2B1&Body=x",
        )
        .expect("answer");
    assert_eq!(response.json()["sid"], "SM00000000000000000000000000000002");

    let response = http.post("/webhook", &[], "{}").expect("answer");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        serde_json::json!({"ok": true, "id": "wh-3"})
    );

    let requests = stub.requests();
    assert_eq!(requests.len(), 3);
    let first = &requests[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], TWILIO);
    assert_eq!(first["headers"]["authorization"], auth.as_str());
    assert_eq!(first["headers"]["content-type"], FORM);
    assert_eq!(first["body"], body);
    assert_eq!(first["outcome"], "201");
    assert_eq!(outcomes(&stub), ["201", "201", "200"]);
}

#[test]
fn stub_refuses_wrong_or_missing_credentials() {
    let stub = HttpStub::start_with_auth("AC0123", "secret");
    let mut http = Http::connect(&stub, TIMEOUT);
    let wrong = basic("AC0123", "guess");
    let response = http
        .post(
            TWILIO,
            &[("Authorization", &wrong), ("Content-Type", FORM)],
            "To=%2B1",
        )
        .expect("answer");
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["code"], 20003);
    let response = http
        .post(TWILIO, &[("Content-Type", FORM)], "To=%2B1")
        .expect("answer");
    assert_eq!(response.status, 401);
    assert_eq!(outcomes(&stub), ["401", "401"]);
}

#[test]
fn stub_queued_faults_come_in_order_and_are_logged() {
    let stub = HttpStub::start();
    stub.queue_faults(&["429", "500"]);
    stub.queue_faults(&["drop", "slow", "400"]);
    let form = [("Content-Type", FORM)];

    let mut http = Http::connect(&stub, TIMEOUT);
    let response = http.post(TWILIO, &form, "To=%2B1").expect("answer");
    assert_eq!(response.status, 429);
    assert_eq!(response.header("Retry-After"), Some("1"));
    assert_eq!(
        response.json(),
        serde_json::json!({"code": 20429, "message": "Too Many Requests"})
    );
    let response = http.post(TWILIO, &form, "To=%2B1").expect("answer");
    assert_eq!(response.status, 500);
    response.json();

    let dropped = http.post(TWILIO, &form, "To=%2B1");
    assert!(
        dropped.is_err(),
        "expected a dropped connection, got {dropped:?}"
    );

    let mut http = Http::connect(&stub, Duration::from_secs(1));
    let slow = http
        .post(TWILIO, &form, "To=%2B1")
        .expect_err("the slow answer comes after the timeout");
    assert!(
        matches!(
            slow.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{slow:?}"
    );

    let mut http = Http::connect(&stub, TIMEOUT);
    let response = http.post(TWILIO, &form, "To=%2B1").expect("answer");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["code"], 21211);
    let response = http.post(TWILIO, &form, "To=%2B1").expect("answer");
    assert_eq!(response.status, 201);

    assert_eq!(
        outcomes(&stub),
        ["429", "500", "drop", "slow", "400", "201"]
    );
}

#[test]
fn stub_match_faults_go_by_body_and_before_the_queue() {
    let stub = HttpStub::start();
    stub.queue_faults(&["429"]);
    stub.match_faults("+8613800000002", &["500", "400"]);
    let form = [("Content-Type", FORM)];
    let mut http = Http::connect(&stub, TIMEOUT);
    let mut send = |to: &str| {
        http.post(TWILIO, &form, &format!("To={to}&Body=hi"))
            .expect("answer")
            .status
    };
    // Form-encoded in the body, still matched.
    assert_eq!(send("%2B8613800000002"), 500);
    assert_eq!(send("%2B8613800000001"), 429);
    assert_eq!(send("+8613800000002"), 400);
    assert_eq!(send("%2B8613800000002"), 201);
    assert_eq!(send("%2B8613800000001"), 201);
    assert_eq!(outcomes(&stub), ["500", "429", "400", "201", "201"]);
}

#[test]
fn stub_reset_clears_faults_and_the_counter() {
    let stub = HttpStub::start();
    let mut http = Http::connect(&stub, TIMEOUT);
    assert_eq!(
        http.post("/a", &[], "").expect("answer").json()["id"],
        "wh-1"
    );
    stub.queue_faults(&["500"]);
    stub.match_faults("x", &["400"]);
    stub.reset();
    let response = http.post("/a", &[], "x").expect("answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["id"], "wh-1");
    assert_eq!(outcomes(&stub), ["200", "200"]);
}

#[test]
#[should_panic(expected = "unknown faults")]
fn stub_refuses_unknown_faults() {
    HttpStub::start().queue_faults(&["503"]);
}

/// The test PostgreSQL: a cluster per process that takes statements, and a
/// TLS cluster that refuses connections without TLS.
#[test]
fn the_test_postgres_clusters_answer_and_the_tls_one_only_over_tls() {
    use crate::common::postgres::Cluster;
    let cluster = Cluster::get();
    let url = cluster.database();
    let database = url
        .split('/')
        .nth(3)
        .and_then(|rest| rest.split('?').next())
        .expect("a database name");
    assert_eq!(
        cluster
            .psql(database, "SELECT current_database()")
            .expect("answers")
            .trim(),
        database
    );
    let tls = Cluster::tls();
    let url = tls.database();
    let port = url
        .split(':')
        .nth(2)
        .and_then(|rest| rest.split('/').next())
        .expect("a port");
    let psql = |mode: &str| {
        std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .args(["-X", "-t", "-A", "-c", "SHOW ssl"])
            .arg(format!(
                "host=127.0.0.1 port={port} user=journeyc dbname=postgres sslmode={mode}"
            ))
            .output()
            .expect("psql runs")
    };
    let plain = psql("disable");
    assert!(!plain.status.success(), "a plain connection is refused");
    let secure = psql("require");
    assert!(
        secure.status.success(),
        "{}",
        String::from_utf8_lossy(&secure.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&secure.stdout).trim(), "on");
    assert!(tls.ca_file().exists());
}
