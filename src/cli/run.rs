//! `journeyc run`: moves every contact through the journeys at an instant
//! and queues the messages in the outbox.

use super::{Io, Now, Open, Outcome, ProjectArg, Report, Status};
use crate::error::Error;
use crate::model::Timestamp;
use crate::runner::engine::RunError;
use crate::runner::run::{run_pipelined, run_workers, Plan, RunFailure, Visited};

/// Move every contact through the journeys at an instant and queue the
/// messages in the outbox.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc run                                  # from cron: 0 * * * * or 0 2 * * *
  journeyc run --dry-run                        # what a run would do; writes nothing
  journeyc run --now '2026-11-24 02:00'         # back-fill a missed night (project timezone)
  journeyc run --journey welcome --format json
  journeyc run --workers 2                      # PostgreSQL: two connections share the night
  journeyc run --worker                         # PostgreSQL: on every machine, from the same cron minute")]
pub(crate) struct Args {
    /// The instant of the run: RFC 3339, or a local time in the project's
    /// timezone (default: the clock, to the minute).
    #[arg(long, value_name = "TIME")]
    now: Option<Now>,
    /// Compute and report everything, write nothing (not even a store or
    /// a lock file).
    #[arg(long)]
    dry_run: bool,
    /// Run only this journey; repeatable.
    #[arg(long = "journey", value_name = "NAME")]
    journeys: Vec<String>,
    /// Visit every contact, not only those with something due and those
    /// an import touched (the outcome is the same; it costs more).
    #[arg(long)]
    all_contacts: bool,
    /// Work the night with this many connections at once (a PostgreSQL
    /// store: each takes partitions of the contacts in turn).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Join the night that is open on the store, or open one: run the
    /// same command on several machines against one PostgreSQL store, and
    /// they split the night; the last to finish records it.
    #[arg(long, conflicts_with_all = ["dry_run", "journeys"])]
    worker: bool,
    #[command(flatten)]
    project: ProjectArg,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let open = if args.dry_run {
        Open::Look
    } else {
        Open::Create
    };
    let Some((checked, mut store, zone)) = super::session(&args.project, io, open)? else {
        return Ok(Status::Problems);
    };
    // Cron starts a run on the minute; a run without `--now` is that
    // minute, so nightly runs stay exactly a day apart.
    let now = match &args.now {
        Some(now) => now.resolve(zone)?,
        None => {
            let clock = Timestamp::from_utc(super::now::clock()?);
            Timestamp::from_seconds(clock.seconds() - clock.seconds().rem_euclid(60)).utc()
        }
    };
    if args.workers > 1 && store.partitions() == 1 {
        return Err(Error::Usage(format!(
            "`--workers {}`: the store `{}` is SQLite, which has one writer; workers split a night on a PostgreSQL store (`store: postgres://...`)",
            args.workers,
            store.describe()
        )));
    }
    let _lock = if args.dry_run {
        None
    } else if args.worker {
        Some(store.lock_worker()?)
    } else {
        Some(store.lock_run()?)
    };
    let total = store.contact_count()?;
    // On stderr, and drawn only when stderr is a terminal: cron logs stay clean.
    let progress_bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} contacts {per_sec} eta {eta}")
    {
        progress_bar.set_style(style);
    }
    tracing::info!(now = %Timestamp::from(now), contacts = total, dry_run = args.dry_run, "run started");
    let plan = Plan {
        journeys: &args.journeys,
        dry_run: args.dry_run,
        everyone: args.all_contacts,
        worker: args.worker,
        page: None,
    };
    let tell = |done| progress_bar.set_position(done);
    let outcome = if store.partitions() == 1 {
        // One writer: the other cores evaluate pages for it.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        run_pipelined(&checked, &mut *store, cores.clamp(1, 8), now, &plan, &tell)
    } else {
        run_workers(
            &checked,
            &mut *store,
            usize::from(args.workers),
            now,
            &plan,
            &tell,
        )
    };
    progress_bar.finish_and_clear();
    let report = match outcome {
        Ok(report) => report,
        Err(RunFailure::Stranded(problems)) => {
            for line in &problems {
                writeln!(io.err, "error: {line}")?;
            }
            writeln!(io.err, "failed: contacts resting at a step that is gone or changed are never dropped or moved silently; nothing was run")?;
            return Ok(Status::Problems);
        }
        Err(RunFailure::UnknownJourney(message)) => return Err(Error::Usage(message)),
        Err(failure @ RunFailure::OtherProject) => return Err(Error::Usage(failure.to_string())),
        Err(failure @ RunFailure::Engine(RunError::Exhausted { .. })) => {
            return Err(Error::Usage(format!(
                "{failure}; nothing of its batch of contacts was written"
            )))
        }
        Err(failure) => return Err(failure.into()),
    };
    let counts = &report.counts;
    tracing::info!(
        now = %Timestamp::from(now),
        contacts = counts.contacts,
        enrolled = counts.enrolled,
        queued = counts.queued,
        transitions = counts.transitions,
        "run finished"
    );
    if args.format == Report::Json {
        super::json_line(io, &report)?;
        return Ok(Status::Success);
    }
    let prefix = if args.dry_run {
        "dry run (nothing written)"
    } else {
        "run"
    };
    writeln!(
        io.out,
        "{prefix} at {}: {} contacts; {} enrolled, {} converted, {} exited, {} completed; {} messages queued ({} deferred by caps), {} skipped, {} suppressed, {} expired; {} transitions",
        Timestamp::from(now).in_zone(zone),
        counts.contacts,
        counts.enrolled,
        counts.converted,
        counts.exited,
        counts.completed,
        counts.queued,
        counts.deferred,
        counts.skipped,
        counts.suppressed,
        counts.expired,
        counts.transitions
    )?;
    let visited = match report.visited {
        Visited::Everyone => "every contact",
        Visited::Due => "only contacts with something due or new",
    };
    if args.worker && !report.closed {
        writeln!(
            io.out,
            "this worker did {} partitions and visited {visited}; another worker closed the night",
            report.partitions
        )?;
    } else {
        writeln!(io.out, "visited {visited}")?;
    }
    for name in &report.launched {
        let backfill = checked
            .journey(name)
            .and_then(|journey| journey.rules.backfill);
        match backfill {
            Some(backfill) => writeln!(
                io.out,
                "launched `{name}`: it enrolled contacts whose trigger came in the last {backfill} (its `backfill`), and enrols those whose trigger comes from now on"
            )?,
            None => writeln!(
                io.out,
                "launched `{name}`: it enrols contacts whose trigger comes from now on (`backfill 7d` in the journey would also take in the last 7 days')"
            )?,
        }
    }
    Ok(Status::Success)
}
