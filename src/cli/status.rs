//! `journeyc status`: per journey, who is where; and the outbox.

use super::{Io, Now, Open, Outcome, ProjectArg, Report, Status};
use crate::model::Timestamp;

/// Per journey: enrolled, waiting per step, due, converted, exited; and
/// the outbox.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc status
  journeyc status --now '2026-12-01 09:00' --format json")]
pub(crate) struct Args {
    /// Count the waits due at this instant: RFC 3339, or a local time in
    /// the project's timezone (default: the clock).
    #[arg(long, value_name = "TIME")]
    now: Option<Now>,
    #[command(flatten)]
    project: ProjectArg,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let Some((_, store, zone)) = super::session(&args.project, io, Open::Existing)? else {
        return Ok(Status::Problems);
    };
    let now = super::now::resolve(args.now.as_ref(), zone)?;
    let journeys = store.status(Timestamp::from(now))?;
    let outbox = store.outbox_counts()?;
    if args.format == Report::Json {
        let outbox: serde_json::Map<String, serde_json::Value> = outbox
            .into_iter()
            .map(|(status, count)| (status.to_string(), count.into()))
            .collect();
        super::json_line(
            io,
            &serde_json::json!({"now": Timestamp::from(now), "journeys": journeys, "outbox": outbox}),
        )?;
        return Ok(Status::Success);
    }
    writeln!(io.out, "at {}", Timestamp::from(now).in_zone(zone))?;
    for journey in &journeys {
        writeln!(
            io.out,
            "{}: {} active ({} due), {} converted, {} completed, {} exited, {} handed off",
            journey.journey,
            journey.active,
            journey.due,
            journey.converted,
            journey.completed,
            journey.exited,
            journey.handed_off
        )?;
        for (step, count) in &journey.waiting {
            writeln!(io.out, "  waiting at {step}: {count}")?;
        }
        for arm in &journey.arms {
            writeln!(
                io.out,
                "  A/B {} {}: {} entered, {} converted, {} still in",
                arm.test, arm.arm, arm.entered, arm.converted, arm.active
            )?;
        }
    }
    let outbox: Vec<String> = outbox
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    writeln!(
        io.out,
        "outbox: {}",
        if outbox.is_empty() {
            "empty".to_string()
        } else {
            outbox.join(", ")
        }
    )?;
    Ok(Status::Success)
}
