//! The real servers the delivery tests send to: an SMTP server (aiosmtpd,
//! `tests/servers/smtp_server.py`) and an HTTP stub of the SMS provider
//! (`tests/servers/http_stub.py`). Each one is a Python process on 127.0.0.1
//! with a port of its own (port 0) and a temporary folder of its own, so
//! tests can start as many as they like in parallel. Dropping a server kills
//! it.
//!
//! The fault rules (recipients named `bounce…`, `tempfail<N>…`, `drop<N>…`;
//! the stub's fault queue) are described at the top of each script.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// How long a server may take to print `READY`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What the test harness runs, from the crate's folder, when the Python
/// the servers need is not there yet.
pub const PYTHON_SETUP: &str =
    "python3 -m venv .venv && .venv/bin/pip install -r tests/servers/requirements.txt";

/// The Python that runs the servers: `JOURNEYC_TEST_PYTHON` if set, else the
/// crate's `.venv`, which the first test that needs it creates (once, under
/// a lock, so `cargo test` is all a fresh machine needs). Panics, saying
/// what is missing, when that fails.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(find_python) {
        Ok(python) => python.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Why `python` cannot run the servers, or `None` when it can.
fn cannot_run(python: &Path) -> Option<String> {
    match Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => None,
        // The last line of the traceback says why.
        Ok(output) => Some(
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
                .to_owned(),
        ),
        Err(error) => Some(error.to_string()),
    }
}

fn find_python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("JOURNEYC_TEST_PYTHON") {
        let python = PathBuf::from(python);
        return match cannot_run(&python) {
            None => Ok(python),
            Some(problem) => Err(format!(
                "JOURNEYC_TEST_PYTHON is {}, which cannot import aiosmtpd: {problem}",
                python.display()
            )),
        };
    }
    let root = super::root();
    let venv = root.join(".venv/bin/python");
    if cannot_run(&venv).is_none() {
        return Ok(venv);
    }
    // Another test process may be creating it: one at a time.
    let lock = File::create(root.join(".venv.lock"))
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|error| format!("cannot lock .venv.lock: {error}"))?;
    if cannot_run(&venv).is_some() {
        let output = Command::new("sh")
            .args(["-c", &format!("rm -rf .venv && {PYTHON_SETUP}")])
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run sh: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "the delivery tests run a real SMTP server and HTTP stub in Python; setting up its environment failed.\n\
                 It ran, in {}:\n\n    {PYTHON_SETUP}\n\n{}\n\
                 Install Python's venv module (Debian: apt-get install python3-venv) or set JOURNEYC_TEST_PYTHON to a Python that has aiosmtpd.",
                root.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    drop(lock);
    match cannot_run(&venv) {
        None => Ok(venv),
        Some(problem) => Err(format!(
            "{} was set up but cannot import aiosmtpd: {problem}",
            venv.display()
        )),
    }
}

fn script(name: &str) -> PathBuf {
    super::root().join("tests/servers").join(name)
}

/// A running server process. Dropping it kills the process and waits for it.
struct Process {
    name: &'static str,
    child: Child,
    stderr: PathBuf,
}

impl Process {
    /// Starts `script` with `args` and waits for its `READY <port>` line;
    /// its stderr goes to `dir/stderr.log`.
    fn start(name: &'static str, script: &Path, args: &[&str], dir: &Path) -> (Process, u16) {
        let stderr = dir.join("stderr.log");
        let stderr_file = File::create(&stderr).expect("create the server's stderr log");
        let python = python();
        let mut child = Command::new(&python)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("could not start the {name} ({}): {error}", python.display())
            });
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = Process {
            name,
            child,
            stderr,
        };
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            // Keep reading so the server never blocks on a full pipe.
            lines.for_each(drop);
        });
        let line = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(error))) => process.fail(&format!("its stdout failed: {error}")),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = process.child.wait().expect("wait for the server");
                process.fail(&format!("it exited ({status}) before printing READY"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => process.fail(&format!(
                "it printed nothing within {}s",
                START_TIMEOUT.as_secs()
            )),
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| {
                process.fail(&format!("it printed {line:?} instead of READY <port>"))
            });
        (process, port)
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "the {} did not start: {what}\nits stderr:\n{}",
            self.name,
            self.stderr()
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to 10 s for the process to exit.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed: {sent}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the {} did not exit within 10 s of SIGTERM\nits stderr:\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete lines of a JSONL file the server appends to; none if the
/// file does not exist yet. A last line still being written is left out.
fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => panic!("read {}: {error}", path.display()),
    };
    let Some(complete) = text.rfind('\n') else {
        return Vec::new();
    };
    text[..complete]
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}: bad line {line:?}: {error}", path.display()))
        })
        .collect()
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as sent after DATA: headers and body, CRLF line ends,
    /// dot-stuffing undone.
    pub data: String,
    /// The id the server answered with: `Q000001`, `Q000002`, …
    pub queue_id: String,
    /// The user the session logged in as (servers started with a login).
    #[serde(default)]
    pub login: Option<String>,
}

impl Received {
    /// The message parsed (MIME, encoded words, transfer encodings).
    pub fn message(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(self.data.as_bytes())
            .unwrap_or_else(|| panic!("not a parsable message: {:?}", self.data))
    }
}

#[derive(Deserialize)]
struct RcptRecord {
    rcpt: String,
    code: u16,
}

/// A real SMTP server (aiosmtpd) on 127.0.0.1.
///
/// Recipients decide what it does: a local part starting with `bounce` gets
/// 550 at RCPT; `tempfail<N>` gets 451 at RCPT for its first N attempts;
/// `drop<N>` loses the connection after the message content for its first N
/// messages. Everything else is accepted with `250 2.0.0 Ok: queued as Q…`.
pub struct SmtpServer {
    pub port: u16,
    // Declared before `dir`: the server dies before its folder is removed.
    process: Process,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::start_tls("none")
    }

    /// A server speaking TLS: `"starttls"` (offered, and required before
    /// MAIL) or `"implicit"` (from the first byte, as smtps://), with a
    /// certificate for 127.0.0.1 from a CA made for this run (see
    /// [`SmtpServer::ca_file`]).
    pub fn start_tls(tls: &str) -> SmtpServer {
        SmtpServer::spawn(tls, None)
    }

    /// A plain server that offers AUTH PLAIN and LOGIN and takes mail only
    /// after a login with exactly `user` and `password`.
    pub fn start_with_auth(user: &str, password: &str) -> SmtpServer {
        SmtpServer::spawn("none", Some(&format!("{user}:{password}")))
    }

    fn spawn(tls: &str, auth: Option<&str>) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir
            .path()
            .to_str()
            .expect("UTF-8 temporary path")
            .to_owned();
        let mut args = vec!["--port", "0", "--dir", &path, "--tls", tls];
        if let Some(auth) = auth {
            args.extend(["--auth", auth]);
        }
        let (process, port) =
            Process::start("SMTP server", &script("smtp_server.py"), &args, dir.path());
        SmtpServer { port, process, dir }
    }

    /// The PEM of the CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The folder with `received.jsonl`, `rcpt.jsonl` and `stderr.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The messages accepted so far, in the order they were accepted.
    pub fn received(&self) -> Vec<Received> {
        read_jsonl(&self.dir.path().join("received.jsonl"))
    }

    /// Every RCPT so far with the code it got (250, 451 or 550), in order.
    pub fn rcpt_log(&self) -> Vec<(String, u16)> {
        read_jsonl::<RcptRecord>(&self.dir.path().join("rcpt.jsonl"))
            .into_iter()
            .map(|record| (record.rcpt, record.code))
            .collect()
    }

    /// Waits until at least `count` messages were accepted and returns all
    /// of them; panics with what did arrive after `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server accepted {} of {count} messages within {timeout:?}\n\
                 accepted: {received:#?}\nRCPT log: {:?}\nits stderr:\n{}",
                received.len(),
                self.rcpt_log(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Stops the server with SIGTERM and returns how it exited.
    pub fn terminate(mut self) -> ExitStatus {
        self.process.terminate()
    }
}

/// An HTTP stub of the SMS provider on 127.0.0.1: Twilio's
/// `POST /2010-04-01/Accounts/<sid>/Messages.json` answers 201, any other
/// path 200, unless a fault is queued.
pub struct HttpStub {
    pub port: u16,
    process: Process,
    dir: tempfile::TempDir,
}

impl HttpStub {
    /// A stub that takes any credentials.
    pub fn start() -> HttpStub {
        HttpStub::launch(None)
    }

    /// A stub whose Twilio path answers 401 unless HTTP Basic auth is
    /// `user:pass`.
    pub fn start_with_auth(user: &str, pass: &str) -> HttpStub {
        HttpStub::launch(Some(format!("{user}:{pass}")))
    }

    fn launch(auth: Option<String>) -> HttpStub {
        let dir = tempfile::tempdir().expect("temporary folder");
        let log = dir.path().join("requests.jsonl");
        let log = log.to_str().expect("UTF-8 temporary path").to_owned();
        let mut args = vec!["--port", "0", "--log", &log];
        if let Some(auth) = &auth {
            args.extend(["--auth", auth]);
        }
        let (process, port) =
            Process::start("HTTP stub", &script("http_stub.py"), &args, dir.path());
        HttpStub { port, process, dir }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next requests, any path, each take the next of these faults in
    /// order: `"429"`, `"500"`, `"400"`, `"drop"`, `"slow"`. Appends to the
    /// faults already queued.
    pub fn queue_faults(&self, faults: &[&str]) {
        self.control("POST", "/_faults", &serde_json::json!({ "queue": faults }));
    }

    /// A request whose body contains `substring` (as sent, or with form
    /// encoding undone) takes the next of these faults, before the queue.
    pub fn match_faults(&self, substring: &str, faults: &[&str]) {
        self.control(
            "POST",
            "/_faults",
            &serde_json::json!({ "match": { substring: faults } }),
        );
    }

    /// Clears all faults and restarts the ids at 1; the log stays.
    pub fn reset(&self) {
        self.control("POST", "/_reset", &serde_json::json!({}));
    }

    /// Every request so far (control calls aside), in order: `method`,
    /// `path`, `headers` (lowercased names), `body` and `outcome` (`"201"`,
    /// `"200"`, `"401"`, `"400"`, `"429"`, `"500"`, `"slow"` or `"drop"`).
    /// A request is logged before it is answered.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.dir.path().join("requests.jsonl"))
    }

    /// What the stub wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Stops the stub with SIGTERM and returns how it exited.
    pub fn terminate(mut self) -> ExitStatus {
        self.process.terminate()
    }

    /// One control call over a fresh connection; panics unless it gets 200.
    fn control(&self, method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let fail = |what: String| -> ! {
            panic!(
                "{method} {path} to the HTTP stub: {what}\nits stderr:\n{}",
                self.stderr()
            )
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|error| fail(format!("connect: {error}")));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\
             Connection: close\r\n\r\n{body}",
            port = self.port,
            length = body.len(),
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|error| fail(format!("send: {error}")));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|error| fail(format!("read the answer: {error}")));
        let (head, answer) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| fail(format!("no complete answer: {response:?}")));
        let status = head.split(' ').nth(1).unwrap_or_default();
        if status != "200" {
            fail(format!("answered {status}: {answer}"));
        }
        serde_json::from_str(answer).unwrap_or_else(|error| fail(format!("{error}: {answer:?}")))
    }
}
