//! `journeyc import contacts|events FILE`: imports and reports; problems
//! in rows make the exit code 1, but the valid rows are imported.

use std::path::PathBuf;

use super::{Io, Now, Outcome, Report, Status};
use crate::import::{import, printable, ImportKind};
use crate::settings::Settings;

/// Import contacts or events from a CSV or JSON Lines file into the store.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc import contacts contacts.csv
  journeyc import events events.jsonl
  journeyc import events backlog.csv --now 2026-11-20T02:00:00+08:00

The columns and keys each file takes are in GRAMMAR.md, \"Import files\".")]
pub(crate) struct Args {
    /// What the file holds.
    #[arg(value_enum)]
    what: ImportKind,
    /// A `.csv` file with a header row, or a `.jsonl` file (one JSON object
    /// per line).
    file: PathBuf,
    #[command(flatten)]
    project: super::ProjectArg,
    /// When the import happens, for back-fills: the time of the stage and
    /// tag changes it makes (RFC 3339, or a local time in the project's
    /// timezone; default: the clock).
    #[arg(long, value_name = "TIME")]
    now: Option<Now>,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let settings_path = super::settings_path(args.project.project.as_deref())?;
    let mut sources = crate::span::SourceMap::new();
    let settings = match Settings::load(&settings_path, &mut sources) {
        Ok(Ok(settings)) => settings,
        Ok(Err(diagnostic)) => {
            writeln!(
                io.err,
                "{}",
                crate::diagnostic::render::human(&sources, &diagnostic)
            )?;
            return Ok(Status::Problems);
        }
        Err(error) => {
            return Err(crate::error::Error::Io {
                path: settings_path,
                source: error,
            })
        }
    };
    let at = super::now::resolve(args.now.as_ref(), settings.timezone.0)?;
    let mut store = crate::store::open(&settings)?;
    let file = &args.file;
    let report = import(&settings, &mut *store, args.what, file, at)?;
    let what = args.what.as_str();
    if args.format == Report::Json {
        super::json_line(
            io,
            &serde_json::json!({
                "file": file.display().to_string(),
                "kind": what,
                "created": report.created,
                "updated": report.updated,
                "duplicates": report.duplicates,
                "suppressed": report.suppressed,
                "rejected": report.rejected,
            }),
        )?;
    } else {
        for rejected in &report.rejected {
            writeln!(
                io.out,
                "{}:{}: {}",
                file.display(),
                rejected.line,
                printable(&rejected.reason)
            )?;
        }
        let mut parts = vec![format!("{} new", report.created)];
        if args.what == ImportKind::Contacts {
            parts.push(format!("{} updated", report.updated));
        } else if report.duplicates > 0 {
            parts.push(format!("{} already imported", report.duplicates));
        }
        if report.suppressed > 0 {
            let noun = if report.suppressed == 1 {
                "address"
            } else {
                "addresses"
            };
            parts.push(format!("{} {noun} suppressed", report.suppressed));
        }
        let rejected = match report.rejected.len() {
            0 => String::new(),
            1 => "; 1 row rejected (listed above)".to_string(),
            count => format!("; {count} rows rejected (listed above)"),
        };
        writeln!(
            io.out,
            "{}: {what}: {}{rejected}",
            file.display(),
            parts.join(", ")
        )?;
    }
    Ok(Status::problems_if(!report.rejected.is_empty()))
}
