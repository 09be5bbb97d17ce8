//! `journeyc check [PATH...]`: checks journeys, settings, templates and
//! their references; exit 1 on errors (or warnings with `--deny`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::ValueEnum;

use super::{Io, Outcome, Status};
use crate::diagnostic::{render, Severity};
use crate::project;
use crate::span::FileId;

/// Check journeys, settings, templates and their references; exit 1 on
/// errors.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc check                           # the project in the current folder
  journeyc check --deny warnings           # what CI runs on a pull request
  journeyc check journeys/welcome.journey --format github")]
pub(crate) struct Args {
    /// Journey files, or folders of projects (default: the project in the
    /// current folder).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// How to report the problems.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// `--deny warnings` fails the check on warnings too.
    #[arg(long, value_enum)]
    deny: Option<Deny>,
}

/// How `check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum Format {
    /// With the source line and a caret under the problem.
    #[default]
    Human,
    /// One JSON object per problem.
    Json,
    /// GitHub Actions annotations on the pull request's lines.
    Github,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Deny {
    Warnings,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let groups = if args.paths.is_empty() {
        let settings = super::settings_path(None)?;
        std::iter::once((settings, BTreeSet::new())).collect()
    } else {
        project::group_paths(&args.paths)?
    };
    let deny_warnings = args.deny.is_some();
    let (mut errors, mut warnings, mut journeys, mut files) = (0, 0, 0, 0);
    for (settings, reported) in &groups {
        let checked = project::load(settings, reported)?;
        let filter = (!reported.is_empty()).then_some(reported);
        for diagnostic in checked.diagnostics_for(filter) {
            match diagnostic.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            let text = match args.format {
                Format::Human => render::human(&checked.sources, diagnostic),
                Format::Json => render::json(&checked.sources, diagnostic),
                Format::Github => render::github(&checked.sources, diagnostic),
            };
            writeln!(io.out, "{text}")?;
        }
        let counted: Vec<FileId> = checked
            .sources
            .files()
            .filter(|(_, file)| {
                file.path
                    .extension()
                    .is_some_and(|extension| extension == "journey")
            })
            .filter(|(_, file)| filter.is_none_or(|reported| reported.contains(&file.path)))
            .map(|(id, _)| id)
            .collect();
        files += counted.len();
        journeys += checked
            .analysis
            .journeys
            .iter()
            .filter(|journey| counted.contains(&journey.span.file))
            .count();
    }
    if args.format == Format::Human {
        let plural = |count: usize, word: &str| {
            format!("{count} {word}{}", if count == 1 { "" } else { "s" })
        };
        if errors + warnings == 0 {
            writeln!(
                io.out,
                "ok: {} in {} checked, no problems",
                plural(journeys, "journey"),
                plural(files, "file")
            )?;
        } else {
            let verdict = if errors > 0 || deny_warnings {
                "failed"
            } else {
                "ok"
            };
            let place = if files == 0 {
                String::new()
            } else {
                format!(" in {}", plural(files, "file"))
            };
            writeln!(
                io.out,
                "{verdict}: {}, {}{place}",
                plural(errors, "error"),
                plural(warnings, "warning")
            )?;
        }
    }
    Ok(Status::problems_if(
        errors > 0 || (deny_warnings && warnings > 0),
    ))
}
