//! A real PostgreSQL server for the tests: one cluster per test process,
//! made with `initdb` in a temporary folder and started on a Unix socket
//! inside it (no port, no password, nothing outside the folder), stopped
//! and removed when the test process ends, however it ends: a shell keeps
//! the server and waits on a pipe from the test process, and when that
//! pipe closes it stops the server (fast shutdown) and removes the folder.
//! Each test takes a database of its own.
//!
//! The server binaries are Debian's `postgresql-15` (`/usr/lib/postgresql/
//! 15/bin`, or `JOURNEYC_TEST_PG_BIN`). PostgreSQL refuses to run as root;
//! as root the cluster runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The running cluster.
pub struct Cluster {
    dir: PathBuf,
    /// The loopback port of a cluster that takes TLS connections only.
    tls_port: Option<u16>,
    socket: PathBuf,
    /// The keeper shell; its stdin closes when this process ends.
    _server: Mutex<Child>,
    databases: AtomicUsize,
}

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("JOURNEYC_TEST_PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    );
    dir.join(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// `program args...`, as the `postgres` user when the tests run as root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Cluster {
    /// The cluster of this test process, started on first use.
    pub fn get() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| Cluster::start(false))
    }

    /// A second cluster that takes TCP connections on loopback over TLS
    /// only (`hostssl`), with a certificate from a CA made for this run:
    /// [`Cluster::ca_file`] is what a client must trust.
    pub fn tls() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| Cluster::start(true))
    }

    /// The PEM of the CA that signed a TLS cluster's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn start(tls: bool) -> Cluster {
        assert!(
            bin("initdb").exists(),
            "the PostgreSQL tests need the server binaries (Debian: apt-get install postgresql-15), or JOURNEYC_TEST_PG_BIN naming their folder; {} is missing",
            bin("initdb").display()
        );
        let dir = std::env::temp_dir().join(format!(
            "journeyc-pg{}-{}",
            if tls { "-tls" } else { "" },
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster folder");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown the cluster folder to postgres");
        }
        let data = dir.join("data");
        let output = as_server_user(&bin("initdb"))
            .args([
                "--auth=trust",
                "--username=journeyc",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-D",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut postgres = as_server_user(&bin("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
                // Sized like a server that holds a store of a million
                // contacts (the bench); memory is taken as it is used.
                "-c",
                "shared_buffers=2GB",
                "-c",
                "max_wal_size=8GB",
                "-c",
                "checkpoint_timeout=30min",
                "-c",
                "full_page_writes=off",
            ]);
        let tls_port = tls.then(|| Cluster::serve_tls(&dir, &data, &mut postgres));
        if !tls {
            postgres.args(["-c", "listen_addresses="]);
        }
        let program: Vec<String> = std::iter::once(postgres.get_program())
            .chain(postgres.get_args())
            .map(|part| format!("'{}'", part.to_string_lossy().replace('\'', "'\\''")))
            .collect();
        let keeper = format!(
            "{} 2>'{log}' & read _; kill -INT $(head -1 '{pid}') 2>/dev/null; wait; rm -rf '{dir}'",
            program.join(" "),
            log = dir.join("server.log").display(),
            pid = data.join("postmaster.pid").display(),
            dir = dir.display(),
        );
        let server = Command::new("sh")
            .args(["-c", &keeper])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let port = tls_port.unwrap_or(5432);
        let cluster = Cluster {
            socket: dir.join(format!(".s.PGSQL.{port}")),
            tls_port,
            dir,
            _server: Mutex::new(server),
            databases: AtomicUsize::new(0),
        };
        let started = Instant::now();
        while !cluster.socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket file appears a moment before connections are taken.
        while cluster.psql("postgres", "SELECT 1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL does not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster
    }

    /// Certificates from a CA made for this run (by the test servers'
    /// Python, which already makes the SMTP server's), TLS on, and TCP on a
    /// free loopback port for TLS connections only; returns the port.
    fn serve_tls(dir: &Path, data: &Path, postgres: &mut Command) -> u16 {
        let python = super::servers::python();
        let output = Command::new(python)
            .args([
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); import smtp_server; smtp_server.tls_context(sys.argv[2])",
            ])
            .arg(super::root().join("tests/servers"))
            .arg(dir)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "making the test CA failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The server reads its key only when it is private to its user.
        let key = dir.join("server.key");
        let status = Command::new("chmod")
            .arg("600")
            .arg(&key)
            .status()
            .expect("chmod");
        assert!(status.success());
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&key)
                .arg(dir.join("server.pem"))
                .status()
                .expect("chown runs");
            assert!(status.success());
        }
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        postgres
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c"])
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("server.pem").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()));
        port
    }

    /// Runs one statement in `database` with psql.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(bin("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .arg("-p")
            .arg(self.tls_port.unwrap_or(5432).to_string())
            .args(["-U", "journeyc", "-d", database, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// A `pg_dump` of the database `url` names (a URL from
    /// [`Cluster::database`]).
    pub fn dump(&self, url: &str) -> Vec<u8> {
        let database = url
            .split('/')
            .nth(3)
            .and_then(|rest| rest.split('?').next())
            .expect("a database name");
        let output = Command::new(bin("pg_dump"))
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.tls_port.unwrap_or(5432).to_string())
            .args(["-U", "journeyc", "-d", database])
            .stdin(Stdio::null())
            .output()
            .expect("pg_dump runs");
        assert!(
            output.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// A new, empty database; returns the `store:` URL that names it.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        self.url(&name)
    }

    /// The URL of `database`: on this cluster's socket, or for a TLS
    /// cluster over TCP with `sslmode=require` and the run's CA.
    pub fn url(&self, database: &str) -> String {
        match self.tls_port {
            Some(port) => format!(
                "postgres://journeyc@127.0.0.1:{port}/{database}?sslmode=require&sslrootcert={}",
                self.ca_file().display()
            ),
            None => format!(
                "postgres://journeyc@localhost/{database}?host={}",
                self.dir.display()
            ),
        }
    }
}

/// Points the project in `dir` at the store `url`: its `store:` line
/// replaced (or added) in `journeyc.yaml`.
pub fn use_store(dir: &Path, url: &str) {
    let path = dir.join("journeyc.yaml");
    let settings = std::fs::read_to_string(&path).expect("settings");
    let kept: Vec<&str> = settings
        .lines()
        .filter(|line| !line.starts_with("store:"))
        .collect();
    std::fs::write(&path, format!("{}\nstore: \"{url}\"\n", kept.join("\n"))).expect("write");
}
