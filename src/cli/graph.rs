//! `journeyc graph JOURNEY`: draws a journey's compiled graph.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Io, Outcome, Status};
use crate::draw::{self, Drawing};
use crate::error::Error;
use crate::project;

/// Draw a journey's compiled graph as DOT, Mermaid or a text outline.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc graph welcome --format mermaid
  journeyc graph welcome --format text      # every step's ID, for `preview` and `moved`
  journeyc graph welcome | dot -Tsvg > welcome.svg
  journeyc graph welcome --format json")]
pub(crate) struct Args {
    /// The journey's name, as written after `journey` in its file.
    journey: String,
    /// How to draw it.
    #[arg(long, value_enum, default_value_t)]
    format: Drawing,
    /// The project: its folder, a folder inside it, or a journey file (a
    /// file outside the project's folders is drawn too).
    #[arg(long, value_name = "PATH")]
    project: Option<PathBuf>,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let project_path = args.project.as_deref();
    let settings = super::settings_path(project_path)?;
    let extra: BTreeSet<PathBuf> = project_path
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension == "journey")
        })
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let checked = project::load(&settings, &extra)?;
    let Some(compiled) = checked.journey(&args.journey) else {
        return Err(Error::Usage(format!(
            "no journey named `{}`; {}",
            args.journey,
            checked.journey_hint(&args.journey)
        )));
    };
    let closing = format!(
        "failed: fix the errors above before drawing `{}`",
        args.journey
    );
    if checked.report_errors(
        io.err,
        &|diagnostic| diagnostic.span.file == compiled.span.file,
        &closing,
    )? {
        return Ok(Status::Problems);
    }
    io.out
        .write_all(draw::draw(compiled, args.format).as_bytes())?;
    Ok(Status::Success)
}
