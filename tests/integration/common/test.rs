//! One run of `journeyc`, described and checked in one expression:
//!
//! ```ignore
//! Test::new()
//!     .starter()
//!     .args(["why", "c-01", "nosuch"])
//!     .status(2)
//!     .stderr_contains("no journey named `nosuch`")
//!     .run();
//! ```
//!
//! A test starts from an empty temporary folder, a copy of the starter
//! project, or a folder it already has; writes files; sets arguments,
//! environment and stdin; and states the exit code and what stdout and
//! stderr must hold. `run` runs the built binary in that folder, checks
//! every expectation (showing the whole output when one fails) and returns
//! the output for further checks. Every run has the unsubscribe secret set
//! and the clock of the machine unless `--now` is given.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::project::SECRET;
use super::{bin, copy_dir, root, text};

/// Where a test runs: a folder it owns, or one it borrows.
enum Folder {
    Owned(tempfile::TempDir),
    Borrowed(PathBuf),
}

pub struct Test {
    folder: Folder,
    /// Runs happen here: the folder, or a folder inside it.
    cwd: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    status: i32,
    stdout: Vec<String>,
    stdout_exact: Option<String>,
    stderr: Vec<String>,
    stderr_exact: Option<String>,
}

impl Test {
    /// An empty temporary folder.
    pub fn new() -> Test {
        let dir = tempfile::tempdir().expect("temp dir");
        let cwd = dir.path().to_path_buf();
        Test::at(Folder::Owned(dir), cwd)
    }

    /// Runs in `folder`, which the test keeps (for several runs on one
    /// store).
    pub fn in_folder(folder: &Path) -> Test {
        Test::at(Folder::Borrowed(folder.to_path_buf()), folder.to_path_buf())
    }

    fn at(folder: Folder, cwd: PathBuf) -> Test {
        Test {
            folder,
            cwd,
            args: Vec::new(),
            env: vec![("JOURNEYC_UNSUBSCRIBE_SECRET".into(), SECRET.into())],
            stdin: None,
            status: 0,
            stdout: Vec::new(),
            stdout_exact: None,
            stderr: Vec::new(),
            stderr_exact: None,
        }
    }

    pub fn path(&self) -> &Path {
        match &self.folder {
            Folder::Owned(dir) => dir.path(),
            Folder::Borrowed(path) => path,
        }
    }

    /// Copies `examples/starter/` into the folder.
    #[must_use]
    pub fn starter(self) -> Test {
        copy_dir(&root().join("examples/starter"), self.path());
        self
    }

    /// Writes a file (folders made as needed).
    #[must_use]
    pub fn file(self, relative: &str, contents: &str) -> Test {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
        self
    }

    /// Runs from this folder inside the test's folder.
    #[must_use]
    pub fn current_dir(mut self, relative: &str) -> Test {
        self.cwd = self.path().join(relative);
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Test {
        self.env.retain(|(known, _)| known != name);
        self.env.push((name.into(), value.into()));
        self
    }

    #[must_use]
    pub fn stdin(mut self, input: &str) -> Test {
        self.stdin = Some(input.into());
        self
    }

    /// The exit code the run must end with (default 0).
    #[must_use]
    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    #[must_use]
    pub fn stdout(mut self, exact: &str) -> Test {
        self.stdout_exact = Some(exact.into());
        self
    }

    #[must_use]
    pub fn stdout_contains(mut self, part: &str) -> Test {
        self.stdout.push(part.into());
        self
    }

    #[must_use]
    pub fn stderr(mut self, exact: &str) -> Test {
        self.stderr_exact = Some(exact.into());
        self
    }

    #[must_use]
    pub fn stderr_contains(mut self, part: &str) -> Test {
        self.stderr.push(part.into());
        self
    }

    /// Runs `journeyc` and checks every expectation; the folder lives on
    /// in the returned [`Done`].
    pub fn run(self) -> Done {
        let mut command = Command::new(bin());
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .env_remove("JOURNEYC_LOG")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("journeyc starts");
        if let Some(input) = &self.stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        let output = child.wait_with_output().expect("journeyc ends");
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        let shown = format!(
            "journeyc {}\n--- exit {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            self.args.join(" "),
            output.status.code()
        );
        assert_eq!(output.status.code(), Some(self.status), "{shown}");
        if let Some(exact) = &self.stdout_exact {
            assert_eq!(&stdout, exact, "{shown}");
        }
        if let Some(exact) = &self.stderr_exact {
            assert_eq!(&stderr, exact, "{shown}");
        }
        for part in &self.stdout {
            assert!(stdout.contains(part), "stdout lacks {part:?}\n{shown}");
        }
        for part in &self.stderr {
            assert!(stderr.contains(part), "stderr lacks {part:?}\n{shown}");
        }
        Done {
            _folder: self.folder,
            output,
        }
    }
}

/// A finished run: its output, and the folder (kept until this is dropped).
pub struct Done {
    _folder: Folder,
    pub output: Output,
}

impl Done {
    pub fn stdout(&self) -> String {
        text(&self.output.stdout)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout()).expect("stdout is one JSON value")
    }
}
