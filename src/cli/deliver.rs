//! `journeyc deliver`: sends what the outbox holds that is due.

use std::collections::BTreeMap;

use super::{Io, Now, Open, Outcome, ProjectArg, Report, Status};
use crate::deliver::{deliver_at, Counts};
use crate::model::{localize, Channel, Timestamp};

/// Retries listed in the human summary; the rest are counted.
const RETRIES_SHOWN: usize = 5;

/// Send what the outbox holds that is due: email, SMS, operator tasks,
/// webhooks.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc deliver                                   # from cron: */5 * * * *
  journeyc deliver --channel email --format json
  journeyc deliver --now '2026-11-24 09:00'          # what is due at 09:00 in the project's timezone")]
pub(crate) struct Args {
    /// Send what is due at this instant: RFC 3339, or a local time in the
    /// project's timezone (default: the clock).
    #[arg(long, value_name = "TIME")]
    now: Option<Now>,
    /// Only this channel; repeatable (default: every channel that is set
    /// up).
    #[arg(long = "channel", value_enum, value_name = "CHANNEL")]
    channels: Vec<Channel>,
    #[command(flatten)]
    project: ProjectArg,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let Some((checked, mut store, zone)) = super::session(&args.project, io, Open::Existing)?
    else {
        return Ok(Status::Problems);
    };
    let now = super::now::resolve(args.now.as_ref(), zone)?;
    let report = deliver_at(&checked, &mut *store, now, &args.channels)?;
    let failed: u64 = report.counts.values().map(|counts| counts.failed).sum();
    if args.format == Report::Json {
        let channels: BTreeMap<&str, &Counts> = report
            .counts
            .iter()
            .map(|(channel, counts)| (channel.as_str(), counts))
            .collect();
        super::json_line(
            io,
            &serde_json::json!({
                "now": Timestamp::from(now),
                "channels": channels,
                "failures": report.failures,
                "retries": report.retries,
                "seconds": (report.seconds * 1000.0).round() / 1000.0,
            }),
        )?;
        return Ok(Status::problems_if(failed > 0));
    }
    for problem in &report.failures {
        writeln!(io.out, "failed: {}", localize(problem, zone))?;
    }
    for retry in report.retries.iter().take(RETRIES_SHOWN) {
        writeln!(io.out, "to retry: {}", localize(retry, zone))?;
    }
    if report.retries.len() > RETRIES_SHOWN {
        writeln!(
            io.out,
            "to retry: ... and {} more (`journeyc why CONTACT` tells each)",
            report.retries.len() - RETRIES_SHOWN
        )?;
    }
    if report.counts.is_empty() {
        writeln!(
            io.out,
            "nothing due at {}",
            Timestamp::from(now).in_zone(zone)
        )?;
    }
    for (channel, counts) in &report.counts {
        writeln!(
            io.out,
            "{channel}: {} sent, {} to retry, {} failed, {} suppressed, {} expired, {} held, {} skipped",
            counts.sent,
            counts.retried,
            counts.failed,
            counts.suppressed,
            counts.expired,
            counts.held,
            counts.skipped
        )?;
    }
    Ok(Status::problems_if(failed > 0))
}
