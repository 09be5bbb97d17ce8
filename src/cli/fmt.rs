//! `journeyc fmt [PATH...]`: prints journey files in their canonical
//! layout, or checks or rewrites them.

use std::path::PathBuf;

use super::{Io, Outcome, Report, Status};
use crate::diagnostic::render;
use crate::error::Error;
use crate::project;

/// Print journey files in their canonical layout.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc fmt --check          # CI: list the files that are not formatted
  journeyc fmt --write          # reformat the project's journeys in place
  journeyc fmt journeys/welcome.journey
  journeyc fmt --check --format json")]
pub(crate) struct Args {
    /// Journey files or folders (default: the project in the current
    /// folder).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// List files that are not formatted and exit 1; change nothing.
    #[arg(long, conflicts_with = "write")]
    check: bool,
    /// Rewrite the files in place.
    #[arg(long)]
    write: bool,
    /// How to report: `json` gives one object per file (`file`,
    /// `formatted`: whether it already was, and `text` when printing).
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let mut files = Vec::new();
    if args.paths.is_empty() {
        let settings = super::settings_path(None)?;
        for set in project::group_paths(&[settings])?.into_values() {
            files.extend(set);
        }
    } else {
        for path in &args.paths {
            if path.is_dir() {
                files.extend(project::journey_files(path)?);
            } else {
                files.push(path.clone());
            }
        }
    }
    let mut status = Status::Success;
    let mut sources = crate::span::SourceMap::new();
    for path in files {
        let text = match crate::files::read_text(&path) {
            Ok(text) => text,
            Err(crate::files::FileProblem::Io { path, error }) => {
                return Err(Error::Io {
                    path,
                    source: error,
                })
            }
            Err(problem) => {
                writeln!(io.err, "error: {problem}")?;
                status = Status::Problems;
                continue;
            }
        };
        let file = sources.add(path.clone(), text);
        let source = &sources.get(file).text;
        let formatted = match crate::format::format_source(file, source) {
            Ok(formatted) => formatted,
            Err(diagnostic) => {
                writeln!(io.err, "{}", render::human(&sources, &diagnostic))?;
                status = Status::Problems;
                continue;
            }
        };
        let unchanged = formatted == *source;
        if args.check && !unchanged {
            status = Status::Problems;
        }
        if args.write && !unchanged {
            std::fs::write(&path, &formatted).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        match args.format {
            Report::Json => {
                let text = (!args.check && !args.write).then_some(&formatted);
                super::json_line(
                    io,
                    &serde_json::json!({"file": path.display().to_string(), "formatted": unchanged, "text": text}),
                )?;
            }
            Report::Human if args.check => {
                if !unchanged {
                    writeln!(io.out, "{}", path.display())?;
                }
            }
            Report::Human if args.write => {
                if !unchanged {
                    writeln!(io.err, "formatted {}", path.display())?;
                }
            }
            Report::Human => io.out.write_all(formatted.as_bytes())?,
        }
    }
    if args.check && status == Status::Problems && args.format == Report::Human {
        writeln!(
            io.err,
            "these files are not formatted; run `journeyc fmt --write`"
        )?;
    }
    Ok(status)
}
