//! The `journeyc` command line: one file per command, each with its clap
//! `Args` and a `run(args, io) -> Result<Status, Error>`. This module holds
//! the command tree, what the commands share (the project, the store,
//! `--now`, the report format) and the one place where an outcome becomes
//! an exit code: 0 done, 1 problems found, 2 usage or environment.

mod check;
mod deliver;
mod fmt;
mod graph;
mod import;
mod init;
mod now;
mod preview;
mod run;
mod status;
mod stores;
mod tasks;
mod why;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;
use crate::project::{self, Checked, ProjectError};
use crate::store::{self, Backend};

pub use now::{Now, NOW_FROM, NOW_UNTIL};

const ABOUT: &str = "Customer journeys as code: check journey files, run them over your \
contacts, and deliver the messages they plan";

const EXAMPLES: &str = "\
Examples:
  journeyc init my-journeys && cd my-journeys
  journeyc check                          # the project in the current folder
  journeyc import contacts contacts.csv
  journeyc run                            # nightly, from cron
  journeyc deliver                        # every few minutes, from cron
  journeyc why c-01";

#[derive(Parser)]
#[command(name = "journeyc", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(init::Args),
    Check(check::Args),
    Graph(graph::Args),
    Fmt(fmt::Args),
    Preview(preview::Args),
    Import(import::Args),
    Run(run::Args),
    Deliver(deliver::Args),
    Tasks(tasks::Args),
    Status(status::Args),
    Store(stores::Args),
    Why(why::Args),
}

/// Where a command writes: its report on `out`, errors and progress on
/// `err`.
pub(crate) struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// How a command ended when it could do its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Exit 0.
    Success,
    /// Exit 1: problems found (check errors, failed sends, stranded
    /// contacts).
    Problems,
}

impl Status {
    fn problems_if(failed: bool) -> Status {
        if failed {
            Status::Problems
        } else {
            Status::Success
        }
    }
}

type Outcome = Result<Status, Error>;

/// `--format` of the commands that report: for people, or one JSON value
/// (per line where a command lists several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Report {
    #[default]
    Human,
    Json,
}

/// `--project`, shared by the commands that work on one project.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ProjectArg {
    /// The project: its folder, a folder inside it, or its journeyc.yaml
    /// (default: the current folder and the folders above it).
    #[arg(long, value_name = "PATH")]
    project: Option<PathBuf>,
}

/// Runs one command line (`args` with the program name first), writing to
/// `out` and `err`; returns the exit code: 0 done, 1 problems found, 2
/// usage or environment.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` go to stdout with exit 0; usage
            // errors to stderr with exit 2.
            let code = error.exit_code();
            let rendered = error.render().to_string();
            let _ = if error.use_stderr() {
                err.write_all(rendered.as_bytes())
            } else {
                out.write_all(rendered.as_bytes())
            };
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let mut io = Io { out, err };
    let outcome = match cli.command {
        Command::Init(args) => init::run(args, &mut io),
        Command::Check(args) => check::run(args, &mut io),
        Command::Graph(args) => graph::run(args, &mut io),
        Command::Fmt(args) => fmt::run(args, &mut io),
        Command::Preview(args) => preview::run(args, &mut io),
        Command::Import(args) => import::run(args, &mut io),
        Command::Run(args) => run::run(args, &mut io),
        Command::Deliver(args) => deliver::run(args, &mut io),
        Command::Tasks(args) => tasks::run(args, &mut io),
        Command::Status(args) => status::run(args, &mut io),
        Command::Store(args) => stores::run(args, &mut io),
        Command::Why(args) => why::run(args, &mut io),
    };
    ExitCode::from(exit_code(outcome, io.err))
}

/// The one mapping from an outcome to an exit code; an error is printed
/// with its causes.
fn exit_code(outcome: Outcome, err: &mut dyn Write) -> u8 {
    match outcome {
        Ok(Status::Success) => 0,
        Ok(Status::Problems) => 1,
        // A reader that stopped early (`journeyc why c-01 | head`) is not
        // an error worth a message.
        Err(Error::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(error) => {
            let _ = writeln!(err, "error: {}", crate::error::chain(&error));
            2
        }
    }
}

/// The settings file of `--project PATH`, or of the current folder.
fn settings_path(project: Option<&Path>) -> Result<PathBuf, ProjectError> {
    match project {
        Some(path) => project::find_settings(path).ok_or_else(|| ProjectError::NoSettings {
            path: path.to_path_buf(),
        }),
        None => {
            let cwd = std::env::current_dir().map_err(|error| ProjectError::Io {
                path: PathBuf::from("."),
                error,
            })?;
            project::find_settings(&cwd).ok_or(ProjectError::NoSettings {
                path: PathBuf::from("."),
            })
        }
    }
}

/// The project of `--project`, loaded and checked; `None` (after printing
/// the errors) when `journeyc check` would fail it.
fn checked_project(project: &ProjectArg, io: &mut Io<'_>) -> Result<Option<Checked>, Error> {
    let checked = project::load(
        &settings_path(project.project.as_deref())?,
        &BTreeSet::new(),
    )?;
    if checked.report_errors(
        io.err,
        &|_| true,
        "failed: `journeyc check` finds errors; nothing was done",
    )? || checked.settings.is_none()
    {
        return Ok(None);
    }
    Ok(Some(checked))
}

/// How a command uses the store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    /// `run` and `import` create it.
    Create,
    /// The commands that read or send refuse to make an empty one.
    Existing,
    /// `run --dry-run` writes nothing: without a store it works on an
    /// empty one in memory.
    Look,
}

/// The checked project of `--project`, its store, and the timezone its
/// times print in; `None` (after printing the errors) when `journeyc
/// check` would fail the project.
fn session(project: &ProjectArg, io: &mut Io<'_>, open: Open) -> Result<Option<Session>, Error> {
    let Some(checked) = checked_project(project, io)? else {
        return Ok(None);
    };
    let store = open_store(&checked, open)?;
    let zone = settings_of(&checked)?.timezone.0;
    Ok(Some((checked, store, zone)))
}

type Session = (Checked, Box<dyn Backend>, chrono_tz::Tz);

fn open_store(checked: &Checked, open: Open) -> Result<Box<dyn Backend>, Error> {
    let settings = settings_of(checked)?;
    if !store::exists(settings) {
        let location = store::location(settings);
        match open {
            Open::Create => {}
            Open::Look => return Ok(store::in_memory()?),
            Open::Existing => {
                return Err(Error::Usage(format!(
                    "there is no store at `{}` yet; `journeyc import contacts FILE` and `journeyc run` create it",
                    location.display()
                )))
            }
        }
    }
    Ok(store::open(settings)?)
}

/// The settings of a checked project (present once it checked clean).
fn settings_of(checked: &Checked) -> Result<&crate::settings::Settings, Error> {
    checked
        .settings
        .as_ref()
        .ok_or_else(|| Error::Config("the settings are invalid; `journeyc check` says why".into()))
}

/// Writes one JSON value on a line.
fn json_line(io: &mut Io<'_>, value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(value).map_err(|error| {
        Error::Output(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    })?;
    writeln!(io.out, "{text}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_and_option_has_help_and_every_command_an_example() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for command in cli.get_subcommands() {
            let name = command.get_name();
            assert!(command.get_about().is_some(), "`{name}` has no about");
            let after = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                after.contains(&format!("journeyc {name}")),
                "`{name}` has no example"
            );
            for argument in command.get_arguments() {
                let id = argument.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(
                    argument.get_help().is_some(),
                    "`journeyc {name}`: `{id}` has no help"
                );
            }
        }
    }
}
