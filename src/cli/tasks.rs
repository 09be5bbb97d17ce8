//! `journeyc tasks`: the operator tasks around an instant, whom they are
//! for, and whether they went out.

use super::{Io, Now, Open, Outcome, ProjectArg, Report, Status};
use crate::deliver::tasks_between;
use crate::model::Timestamp;

/// Operator tasks: who should do what for whom, and when.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc tasks
  journeyc tasks --assignee li@qingyuan.example --days 1
  journeyc tasks --format json")]
pub(crate) struct Args {
    /// List around this instant: RFC 3339, or a local time in the
    /// project's timezone (default: the clock).
    #[arg(long, value_name = "TIME")]
    now: Option<Now>,
    /// How many days back to list (and one day ahead), 1 to 3650.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Only this assignee's tasks (an email address or a name, as the
    /// journey assigns them).
    #[arg(long, value_name = "WHO")]
    assignee: Option<String>,
    #[command(flatten)]
    project: ProjectArg,
    /// How to report: people read a list; `json` is one task per line.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let Some((checked, store, zone)) = super::session(&args.project, io, Open::Existing)? else {
        return Ok(Status::Problems);
    };
    let now = super::now::resolve(args.now.as_ref(), zone)?;
    let from = Timestamp::from(now).plus_seconds(-86_400 * i64::from(args.days));
    let to = Timestamp::from(now).plus_seconds(86_400);
    let listed: Vec<_> = tasks_between(&checked, &*store, from, to, now)?
        .into_iter()
        .filter(|task| {
            args.assignee
                .as_ref()
                .is_none_or(|wanted| *wanted == task.assignee)
        })
        .collect();
    if args.format == Report::Json {
        for task in &listed {
            super::json_line(io, task)?;
        }
        return Ok(Status::Success);
    }
    if listed.is_empty() {
        writeln!(
            io.out,
            "no tasks from {} to {}",
            from.in_zone(zone),
            to.in_zone(zone)
        )?;
    }
    for task in &listed {
        let due = task
            .due
            .as_ref()
            .map_or_else(String::new, |due| format!(", due within {due}"));
        writeln!(
            io.out,
            "{}  {}  {} ({} {}){due}  [{}]\n    {}",
            task.at.in_zone(zone),
            task.assignee,
            task.contact,
            task.journey,
            task.step,
            task.status,
            task.text.replace('\n', "\n    ")
        )?;
    }
    Ok(Status::Success)
}
