//! The `journeyc` command line: the clap tree and the dispatch to the
//! library's commands. `main.rs` only sets up the allocator and logging and
//! calls [`run`]; tests and the argument fuzz target call [`run`] too.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::{self, CheckFormat, CheckOptions, FmtOptions, GraphFormat, Status};
use crate::import::ImportKind;
use crate::preview::{self, PreviewFormat, PreviewOptions};
use crate::runner::run::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "journeyc",
    version,
    about = "Customer journeys as code: check, draw and format journey files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check journeys, settings and their references; exit 1 on errors.
    Check {
        /// Files or folders; default: the project in the current folder.
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// `--deny warnings` fails the check on warnings too.
        #[arg(long, value_enum)]
        deny: Option<Deny>,
    },
    /// Draw a journey's compiled graph.
    Graph {
        journey: String,
        #[arg(long, value_enum, default_value = "dot")]
        format: Drawing,
        /// A folder inside the project, or a journey file (default: the
        /// current folder).
        #[arg(long)]
        project: Option<PathBuf>,
    },
    /// Render one message step for one contact exactly as it would be sent.
    Preview {
        journey: String,
        /// The step's ID, as `journeyc graph JOURNEY --format text` shows it.
        step: String,
        /// A contact from the store.
        #[arg(long, conflicts_with = "vars", required_unless_present = "vars")]
        contact: Option<String>,
        /// A JSON or YAML file with the contact's fields (and optionally
        /// `contact:` and `event:` sections).
        #[arg(long)]
        vars: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Rendering,
        /// A folder inside the project (default: the current folder).
        #[arg(long)]
        project: Option<PathBuf>,
        /// The sending time templates see as `now` (RFC 3339).
        #[arg(long)]
        now: Option<String>,
    },
    /// Import contacts or events from a CSV or JSON Lines file into the store.
    Import {
        #[arg(value_enum)]
        what: ImportWhat,
        file: PathBuf,
        /// A folder inside the project (default: the current folder).
        #[arg(long)]
        project: Option<PathBuf>,
        /// When the import happens (RFC 3339), for back-fills: the time of
        /// the stage and tag changes it makes.
        #[arg(long)]
        now: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Report,
    },
    /// Move every contact through the journeys at an instant and queue the
    /// messages in the outbox.
    Run {
        /// The instant of the run (RFC 3339); default: now.
        #[arg(long)]
        now: Option<String>,
        /// Compute and report everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run only these journeys.
        #[arg(long = "journey")]
        journeys: Vec<String>,
        #[arg(long)]
        project: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Report,
    },
    /// Send what the outbox holds that is due: email, SMS, operator tasks,
    /// webhooks.
    Deliver {
        /// Send what is due at this instant (RFC 3339); default: now.
        #[arg(long)]
        now: Option<String>,
        /// Only this channel (email, sms, task, webhook); repeatable.
        #[arg(long = "channel")]
        channels: Vec<String>,
        #[arg(long)]
        project: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Report,
    },
    /// Operator tasks: who should do what for whom, and when.
    Tasks {
        /// Default: now.
        #[arg(long)]
        now: Option<String>,
        /// How many days back to list (and one day ahead), 1 to 3650.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Only this assignee's tasks.
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        project: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Report,
    },
    /// Per journey: enrolled, waiting per step, due, converted, exited;
    /// and the outbox.
    Status {
        /// Count waits due at this instant (RFC 3339); default: now.
        #[arg(long)]
        now: Option<String>,
        #[arg(long)]
        project: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Report,
    },
    /// Explain a contact's path: every recorded move with its reason.
    Why {
        contact: String,
        journey: Option<String>,
        #[arg(long)]
        project: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Report,
    },
    /// Print journey files in their canonical layout.
    Fmt {
        /// Files or folders; default: the project in the current folder.
        paths: Vec<PathBuf>,
        /// List files that are not formatted and exit 1; change nothing.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Rewrite the files in place.
        #[arg(long)]
        write: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
    Github,
}

#[derive(Clone, Copy, ValueEnum)]
enum Rendering {
    Text,
    Eml,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportWhat {
    Contacts,
    Events,
}

#[derive(Clone, Copy, ValueEnum)]
enum Report {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Deny {
    Warnings,
}

#[derive(Clone, Copy, ValueEnum)]
enum Drawing {
    Dot,
    Mermaid,
    Text,
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
    let result = match cli.command {
        Command::Check {
            paths,
            format,
            deny,
        } => {
            let format = match format {
                Format::Human => CheckFormat::Human,
                Format::Json => CheckFormat::Json,
                Format::Github => CheckFormat::Github,
            };
            let options = CheckOptions {
                paths,
                format,
                deny_warnings: deny.is_some(),
            };
            commands::check(&options, out)
        }
        Command::Graph {
            journey,
            format,
            project,
        } => {
            let format = match format {
                Drawing::Dot => GraphFormat::Dot,
                Drawing::Mermaid => GraphFormat::Mermaid,
                Drawing::Text => GraphFormat::Text,
            };
            commands::graph(&journey, project.as_deref(), format, out, err)
        }
        Command::Preview {
            journey,
            step,
            contact,
            vars,
            format,
            project,
            now,
        } => {
            let format = match format {
                Rendering::Text => PreviewFormat::Text,
                Rendering::Eml => PreviewFormat::Eml,
                Rendering::Json => PreviewFormat::Json,
            };
            let options = PreviewOptions {
                journey,
                step,
                contact,
                vars,
                format,
                project,
                now,
            };
            preview::preview(&options, out, err)
        }
        Command::Run {
            now,
            dry_run,
            journeys,
            project,
            format,
        } => {
            let options = RunOptions {
                now,
                dry_run,
                journeys,
                json: matches!(format, Report::Json),
            };
            run::run(&options, project.as_deref(), out, err)
        }
        Command::Deliver {
            now,
            channels,
            project,
            format,
        } => {
            let options = crate::deliver::DeliverOptions {
                now,
                channels,
                json: matches!(format, Report::Json),
            };
            crate::deliver::deliver(&options, project.as_deref(), out, err)
        }
        Command::Tasks {
            now,
            days,
            assignee,
            project,
            format,
        } => crate::deliver::tasks(
            project.as_deref(),
            now.as_deref(),
            days,
            assignee.as_deref(),
            matches!(format, Report::Json),
            out,
            err,
        ),
        Command::Status {
            now,
            project,
            format,
        } => run::status(
            project.as_deref(),
            now.as_deref(),
            matches!(format, Report::Json),
            out,
            err,
        ),
        Command::Why {
            contact,
            journey,
            project,
            format,
        } => run::why(
            &contact,
            journey.as_deref(),
            project.as_deref(),
            matches!(format, Report::Json),
            out,
            err,
        ),
        Command::Import {
            what,
            file,
            project,
            now,
            format,
        } => {
            let kind = match what {
                ImportWhat::Contacts => ImportKind::Contacts,
                ImportWhat::Events => ImportKind::Events,
            };
            crate::import::command(
                kind,
                &file,
                project.as_deref(),
                now.as_deref(),
                matches!(format, Report::Json),
                out,
            )
        }
        Command::Fmt {
            paths,
            check,
            write,
        } => commands::fmt(
            &FmtOptions {
                paths,
                check,
                write,
            },
            out,
            err,
        ),
    };
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Problems) => ExitCode::from(1),
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            ExitCode::from(2)
        }
    }
}
