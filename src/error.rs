//! Why a command could not do its work. Each variant keeps the failure it
//! comes from as its [`source`](std::error::Error::source), so the edge that
//! prints it (the CLI) shows the whole chain, and the CLI maps every variant
//! to an exit code in one place ([`crate::cli`]).

use std::fmt;
use std::path::PathBuf;

use crate::compose::ComposeError;
use crate::import::ImportError;
use crate::project::ProjectError;
use crate::runner::run::RunFailure;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Error {
    /// The command line asks for something that cannot be: a journey,
    /// step or contact that does not exist, a format for the wrong kind of
    /// step. The message says what to type instead.
    Usage(String),
    /// The project's files: no settings file, an unreadable folder.
    Project(ProjectError),
    /// The settings are valid but do not allow what was asked: a channel
    /// that is due without a transport, a missing secret.
    Config(String),
    Store(StoreError),
    /// A message could not be rendered or built.
    Compose(ComposeError),
    /// A provider refused journeyc's credentials; nothing was sent.
    Transport(String),
    /// A file the command reads or writes besides its output.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Import(ImportError),
    Run(RunFailure),
    /// The report could not be written (a closed pipe, a full disk).
    Output(std::io::Error),
    /// Something journeyc itself got wrong.
    Bug(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::Config(message) | Error::Transport(message) => {
                f.write_str(message)
            }
            Error::Project(error) => error.fmt(f),
            Error::Store(error) => error.fmt(f),
            Error::Compose(error) => error.fmt(f),
            Error::Io { path, .. } => write!(f, "cannot use `{}`", path.display()),
            Error::Import(error) => error.fmt(f),
            Error::Run(error) => error.fmt(f),
            Error::Output(_) => f.write_str("cannot write the output"),
            Error::Bug(what) => write!(
                f,
                "{what}; this is a bug in journeyc, please report it with the command line"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) | Error::Config(_) | Error::Transport(_) | Error::Bug(_) => None,
            // These print their own causes' text; their sources go on.
            Error::Project(error) => error.source(),
            Error::Store(error) => error.source(),
            Error::Compose(error) => error.source(),
            Error::Import(error) => error.source(),
            Error::Run(error) => error.source(),
            Error::Io { source, .. } | Error::Output(source) => Some(source),
        }
    }
}

impl From<ProjectError> for Error {
    fn from(error: ProjectError) -> Self {
        Error::Project(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::Store(error)
    }
}

impl From<ComposeError> for Error {
    fn from(error: ComposeError) -> Self {
        Error::Compose(error)
    }
}

impl From<ImportError> for Error {
    fn from(error: ImportError) -> Self {
        Error::Import(error)
    }
}

impl From<RunFailure> for Error {
    fn from(error: RunFailure) -> Self {
        Error::Run(error)
    }
}

/// Writing a report: the only I/O a command does without a path.
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Output(error)
    }
}

/// The error and its causes on one line each, as the CLI prints them:
/// `cannot open the store `x.db`` then `caused by: ...`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let line = inner.to_string();
        if !text.contains(&line) {
            text.push_str("\n  caused by: ");
            text.push_str(&line);
        }
        cause = inner.source();
    }
    text
}
