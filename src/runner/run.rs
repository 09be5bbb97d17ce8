//! `journeyc run`, `journeyc status` and `journeyc why`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::engine::{Counts, Engine, JourneyRun, RunError};
use super::eval::Program;
use crate::commands::{project_settings, CommandError, Status};
use crate::graph::CompiledJourney;
use crate::model::{OutboxStatus, StepId, Timestamp};
use crate::project::{self, Checked};
use crate::store::{self, sqlite::SqliteStore, Progress, RunRecord, Store, StoreError};

/// Contacts per transaction: a crash loses at most one batch's work, which
/// the next run redoes exactly.
const BATCH: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub now: Option<String>,
    pub dry_run: bool,
    pub journeys: Vec<String>,
    pub json: bool,
}

fn usage(message: impl Into<String>) -> CommandError {
    CommandError::Usage(message.into())
}

/// `--now`: an RFC 3339 instant, or the clock (to the second).
/// `--now` must lie between [`NOW_FROM`] and [`NOW_UNTIL`]: a run
/// centuries away is a typo, and its waits would run past the calendar.
pub(crate) fn parse_now(now: Option<&str>) -> Result<DateTime<Utc>, CommandError> {
    let moment = match now {
        None => Timestamp::now(),
        Some(text) => {
            Timestamp::parse(text).map_err(|error| usage(format!("`--now {text}` is {error}")))?
        }
    };
    let (from, until) = (
        Timestamp::parse(NOW_FROM).unwrap_or(Timestamp::MIN),
        Timestamp::parse(NOW_UNTIL).unwrap_or(Timestamp::MAX),
    );
    if moment < from || moment > until {
        return Err(usage(format!(
            "`--now {}` is outside the times journeyc runs at ({NOW_FROM} to {NOW_UNTIL})",
            now.unwrap_or("(the clock)")
        )));
    }
    Ok(moment.utc())
}

pub const NOW_FROM: &str = "2000-01-01T00:00:00Z";
pub const NOW_UNTIL: &str = "2199-12-31T23:59:59Z";

/// The content hash of a journey: its compiled graph and rules, so edits
/// to comments or layout are not a new version.
pub fn version(journey: &CompiledJourney) -> String {
    let mut canonical = crate::graph::to_text(journey);
    let rules = &journey.rules;
    for trigger in &rules.triggers {
        canonical.push_str(&crate::format::trigger(trigger));
    }
    if let Some(expression) = &rules.audience {
        canonical.push_str(&crate::format::expr(expression));
    }
    if let Some(goal) = &rules.goal {
        canonical.push_str(&crate::format::signal(&goal.condition));
        canonical.push_str(&goal.within.node.to_string());
    }
    for exit in &rules.exits {
        canonical.push_str(&crate::format::signal(exit));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Whether a command may create the store: only `run` (and `import`)
/// start one; the commands that read or send refuse to make an empty one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    Create,
    Existing,
}

pub(crate) fn load(
    project_path: Option<&Path>,
    err: &mut dyn Write,
    open: Open,
) -> Result<Option<(Checked, SqliteStore)>, CommandError> {
    let settings_path = project_settings(project_path)?;
    let checked = project::load(&settings_path, &BTreeSet::new())?;
    if checked.report_errors(
        err,
        &|_| true,
        "failed: `journeyc check` finds errors; nothing was run",
    )? {
        return Ok(None);
    }
    let settings = checked
        .settings
        .as_ref()
        .ok_or_else(|| usage("the settings are invalid"))?;
    let location = store::location(settings);
    if open == Open::Existing && !location.exists() {
        return Err(usage(format!(
            "there is no store at `{}` yet; `journeyc import contacts FILE` and `journeyc run` create it",
            location.display()
        )));
    }
    let store = store::open(settings).map_err(|error| usage(error.to_string()))?;
    Ok(Some((checked, store)))
}

/// Holds the store's run lock while it lives; the OS releases it if the
/// process dies.
struct RunLock {
    _file: std::fs::File,
}

fn lock(store: &SqliteStore) -> Result<RunLock, CommandError> {
    let path = store.path().with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| {
            usage(format!(
                "cannot create the run lock `{}`: {error}",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(usage(format!(
            "another `journeyc run` is working on `{}`; runs on one store never overlap, so this one stops",
            store.path().display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => Err(usage(format!("cannot lock `{}`: {error}", path.display()))),
    }
}

/// Contacts resting at a step this version removed or changed, with no
/// `moved` rule for them: the run refuses to start rather than drop them.
fn stranded(checked: &Checked, store: &impl Store) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    for resting in store.resting()? {
        let Some(compiled) = checked
            .analysis
            .journeys
            .iter()
            .find(|compiled| compiled.name == resting.journey)
        else {
            continue;
        };
        let step = resting.step.as_str();
        if compiled.rules.moved.iter().any(|(from, _)| from == step) {
            continue;
        }
        let found = compiled.node(step).map(|index| &compiled.graph[index]);
        let what = match found {
            // A store written before steps had prints: its IDs were
            // positions, which the run translates once.
            _ if resting.print.is_empty()
                && (found.is_some()
                    || compiled.nodes().any(|(_, node)| node.legacy_id == step)) =>
            {
                continue
            }
            Some(node) if node.print == resting.print => continue,
            Some(_) => "changed the step",
            None => "no longer has the step",
        };
        let contacts = match resting.count {
            1 => "1 contact is".to_string(),
            count => format!("{count} contacts are"),
        };
        problems.push(format!(
            "journey `{journey}` {what} `{step}`, where {contacts} waiting; say where they go with a rule in the journey, STEP being a label or a quoted step ID (`journeyc graph {journey} --format text` lists them):\n    moved {} -> STEP",
            crate::format::string(step),
            journey = resting.journey,
        ));
    }
    Ok(problems)
}

/// The segments and scoring models of the project, by name.
fn program(checked: &Checked) -> Program<'_> {
    let mut program = Program::default();
    for (_, file) in &checked.files {
        for item in &file.items {
            match item {
                crate::ast::Item::Segment(segment) => {
                    program
                        .segments
                        .insert(segment.name.node.as_str(), &segment.condition);
                }
                crate::ast::Item::Score(score) => {
                    program.scores.insert(score.name.node.as_str(), score);
                }
                crate::ast::Item::Journey(_) => {}
            }
        }
    }
    program
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    pub now: Option<Timestamp>,
    pub dry_run: bool,
    /// Journeys this run deployed.
    pub launched: Vec<String>,
    pub counts: Counts,
}

/// Why a run did not start, or stopped.
#[derive(Debug)]
pub enum RunFailure {
    /// Contacts rest at steps that are gone or changed, without a `moved`
    /// rule: one line each.
    Stranded(Vec<String>),
    /// A journey named for the run does not exist (with a suggestion).
    UnknownJourney(String),
    /// The project has errors.
    Invalid,
    Engine(RunError),
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Stranded(lines) => f.write_str(&lines.join("\n")),
            RunFailure::UnknownJourney(message) => f.write_str(message),
            RunFailure::Invalid => {
                f.write_str("the project has errors; `journeyc check` lists them")
            }
            RunFailure::Engine(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for RunFailure {}

impl From<StoreError> for RunFailure {
    fn from(error: StoreError) -> Self {
        RunFailure::Engine(RunError::Store(error))
    }
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Plan<'o> {
    /// Only these journeys (all when empty).
    pub journeys: &'o [String],
    pub dry_run: bool,
}

/// Moves every contact of `store` through the project's journeys up to
/// `now`: the whole run, as `journeyc run` does it, on any store.
/// `progress` hears how many contacts are done after each batch.
pub fn run_at<S: Store>(
    checked: &Checked,
    store: &mut S,
    now: DateTime<Utc>,
    plan: &Plan<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<RunReport, RunFailure> {
    let (Some(settings), Some(templates)) = (checked.settings.as_ref(), checked.templates.as_ref())
    else {
        return Err(RunFailure::Invalid);
    };
    for name in plan.journeys {
        if !checked
            .analysis
            .journeys
            .iter()
            .any(|journey| journey.name == *name)
        {
            let names = checked
                .analysis
                .journeys
                .iter()
                .map(|journey| journey.name.as_str());
            let hint = crate::diagnostic::did_you_mean(name, names).unwrap_or_default();
            return Err(RunFailure::UnknownJourney(format!(
                "no journey named `{name}` {hint}"
            )));
        }
    }
    let problems = stranded(checked, store)?;
    if !problems.is_empty() {
        return Err(RunFailure::Stranded(problems));
    }
    let versions: HashMap<String, String> = checked
        .analysis
        .journeys
        .iter()
        .map(|journey| (journey.name.clone(), version(journey)))
        .collect();
    let known: HashMap<String, Progress> = store
        .progress()?
        .into_iter()
        .map(|progress| (progress.journey.clone(), progress))
        .collect();
    let run_seq = store.last_event_seq()?;
    let mut journeys: Vec<JourneyRun<'_>> = checked
        .analysis
        .journeys
        .iter()
        .filter(|journey| plan.journeys.is_empty() || plan.journeys.contains(&journey.name))
        .map(|journey| {
            let known = known.get(&journey.name);
            JourneyRun {
                journey,
                version: versions.get(&journey.name).cloned().unwrap_or_default(),
                after: known.map_or(now, |known| known.until.utc()),
                seen_seq: known.map_or(run_seq, |known| known.seen_seq),
                launching: known.is_none(),
            }
        })
        .collect();
    journeys.sort_by(|a, b| {
        b.journey
            .rules
            .priority
            .cmp(&a.journey.rules.priority)
            .then_with(|| a.name().cmp(b.name()))
    });
    let launched: Vec<String> = journeys
        .iter()
        .filter(|run| run.launching)
        .map(|run| run.name().to_string())
        .collect();
    if !plan.dry_run {
        let list: Vec<(String, String)> = versions
            .iter()
            .map(|(name, version)| (name.clone(), version.clone()))
            .collect();
        store.record_versions(&list, Timestamp::from(now))?;
    }
    let program = program(checked);
    let started = Timestamp::now();
    let saved: Vec<Progress> = journeys
        .iter()
        .map(|run| Progress {
            journey: run.name().to_string(),
            deployed_at: known
                .get(run.name())
                .map_or(Timestamp::from(now), |known| known.deployed_at),
            until: Timestamp::from(run.after.max(now)),
            seen_seq: run_seq,
        })
        .collect();
    let engine = Engine {
        settings,
        program: &program,
        templates,
        journeys,
        now,
        run_seq,
        max_agenda: crate::runner::engine::MAX_AGENDA,
    };
    let mut counts = Counts::default();
    let mut after: Option<String> = None;
    let mut failure: Option<RunError> = None;
    loop {
        let page = store.contacts_page(after.as_deref(), BATCH)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        crate::fault::pause("run.page-read");
        let mut page = Some(page);
        let outcome = store.batch(!plan.dry_run, &mut |batch| {
            for contact in page.take().unwrap_or_default() {
                match engine.contact(batch, contact, &mut counts) {
                    Ok(()) => {}
                    Err(RunError::Store(error)) => return Err(error),
                    Err(other) => {
                        failure = Some(other);
                        return Err(StoreError::Database("the run stopped".into()));
                    }
                }
            }
            Ok(())
        });
        if let Some(failure) = failure.take() {
            return Err(RunFailure::Engine(failure));
        }
        outcome?;
        progress(counts.contacts);
        tracing::debug!(
            contacts = counts.contacts,
            last = after.as_deref().unwrap_or(""),
            "batch committed"
        );
    }
    let report = RunReport {
        now: Some(Timestamp::from(now)),
        dry_run: plan.dry_run,
        launched,
        counts,
    };
    if !plan.dry_run {
        store.save_progress(&saved)?;
        store.record_run(&RunRecord {
            now: Timestamp::from(now),
            started_at: started,
            summary: serde_json::to_string(&report).unwrap_or_default(),
        })?;
    }
    Ok(report)
}

/// `journeyc run [--now T] [--dry-run] [--journey NAME...]`
pub fn run(
    options: &RunOptions,
    project_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    // Cron starts a run on the minute; a run without `--now` is that
    // minute, so nightly runs stay exactly a day apart.
    let now = match options.now.as_deref() {
        Some(text) => parse_now(Some(text))?,
        None => {
            let clock = Timestamp::now();
            Timestamp::from_seconds(clock.seconds() - clock.seconds().rem_euclid(60)).utc()
        }
    };
    let Some((checked, mut store)) = load(project_path, err, Open::Create)? else {
        return Ok(Status::Problems);
    };
    let _lock = lock(&store)?;
    let total = store
        .contact_count()
        .map_err(|error| usage(error.to_string()))?;
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
    tracing::info!(now = %Timestamp::from(now), contacts = total, dry_run = options.dry_run, "run started");
    let plan = Plan {
        journeys: &options.journeys,
        dry_run: options.dry_run,
    };
    let report = match run_at(&checked, &mut store, now, &plan, &mut |done| {
        progress_bar.set_position(done);
    }) {
        Ok(report) => report,
        Err(RunFailure::Stranded(problems)) => {
            progress_bar.finish_and_clear();
            for line in &problems {
                writeln!(err, "error: {line}")?;
            }
            writeln!(err, "failed: contacts resting at a step that is gone or changed are never dropped or moved silently; nothing was run")?;
            return Ok(Status::Problems);
        }
        Err(failure) => {
            progress_bar.finish_and_clear();
            return Err(usage(match failure {
                RunFailure::Engine(RunError::Exhausted { .. }) => {
                    format!("{failure}; nothing of its batch of contacts was written")
                }
                other => other.to_string(),
            }));
        }
    };
    progress_bar.finish_and_clear();
    let counts = &report.counts;
    tracing::info!(
        now = %Timestamp::from(now),
        contacts = counts.contacts,
        enrolled = counts.enrolled,
        queued = counts.queued,
        transitions = counts.transitions,
        "run finished"
    );
    if options.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).unwrap_or_default()
        )?;
        return Ok(Status::Success);
    }
    let prefix = if options.dry_run {
        "dry run (nothing written)"
    } else {
        "run"
    };
    writeln!(
        out,
        "{prefix} at {}: {} contacts; {} enrolled, {} converted, {} exited, {} completed; {} messages queued ({} deferred by caps), {} skipped, {} suppressed, {} expired; {} transitions",
        Timestamp::from(now),
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
    for name in &report.launched {
        writeln!(
            out,
            "launched `{name}`: it enrols contacts whose trigger comes from now on (`backfill 7d` in the journey would also take in the last 7 days')"
        )?;
    }
    Ok(Status::Success)
}

/// `journeyc status`
pub fn status(
    project_path: Option<&Path>,
    now: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    let now = parse_now(now)?;
    let Some((_, store)) = load(project_path, err, Open::Existing)? else {
        return Ok(Status::Problems);
    };
    let journeys = store
        .status(Timestamp::from(now))
        .map_err(|error| usage(error.to_string()))?;
    let outbox = store
        .outbox_counts()
        .map_err(|error| usage(error.to_string()))?;
    if json {
        let outbox: serde_json::Map<String, serde_json::Value> = outbox
            .into_iter()
            .map(|(status, count)| (status.to_string(), count.into()))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({"journeys": journeys, "outbox": outbox})
        )?;
        return Ok(Status::Success);
    }
    for journey in &journeys {
        writeln!(
            out,
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
            writeln!(out, "  waiting at {step}: {count}")?;
        }
        for arm in &journey.arms {
            writeln!(
                out,
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
        out,
        "outbox: {}",
        if outbox.is_empty() {
            "empty".to_string()
        } else {
            outbox.join(", ")
        }
    )?;
    Ok(Status::Success)
}

/// `journeyc why CONTACT [JOURNEY]`
pub fn why(
    contact: &str,
    journey: Option<&str>,
    project_path: Option<&Path>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    let Some((_, store)) = load(project_path, err, Open::Existing)? else {
        return Ok(Status::Problems);
    };
    if store
        .contact(contact)
        .map_err(|error| usage(error.to_string()))?
        .is_none()
    {
        return Err(usage(format!("no contact `{contact}` in the store")));
    }
    let transitions = store
        .transitions_of(contact, journey)
        .map_err(|error| usage(error.to_string()))?;
    let outbox = store
        .outbox_of(contact)
        .map_err(|error| usage(error.to_string()))?;
    if json {
        let transitions: Vec<_> = transitions
            .iter()
            .map(|transition| serde_json::json!({"journey": transition.journey, "from": transition.from_step.as_ref().map(StepId::as_str), "to": transition.to_step.as_ref().map(StepId::as_str), "reason": transition.reason, "at": transition.at}))
            .collect();
        let mut rows = Vec::new();
        for row in outbox
            .iter()
            .filter(|row| journey.is_none_or(|journey| row.journey == journey))
        {
            let delivered = delivered(&store, &row.key)?;
            rows.push(serde_json::json!({"journey": row.journey, "step": row.step().as_str(), "channel": row.channel.as_str(), "template": row.template, "send_at": row.send_at, "status": row.status, "note": row.note, "attempts": delivered.attempts, "sent_at": delivered.sent_at, "provider_id": delivered.provider_id, "error": delivered.error, "held": delivered.note}));
        }
        let outbox = rows;
        writeln!(
            out,
            "{}",
            serde_json::json!({"contact": contact, "transitions": transitions, "outbox": outbox})
        )?;
        return Ok(Status::Success);
    }
    if transitions.is_empty() {
        writeln!(
            out,
            "{contact} has not entered {}",
            journey.map_or("any journey".to_string(), |journey| format!("`{journey}`"))
        )?;
    }
    for transition in &transitions {
        let place = match (&transition.from_step, &transition.to_step) {
            (Some(from), Some(to)) if from != to => format!("{from} -> {to}"),
            (_, Some(to)) => to.to_string(),
            (Some(from), None) => format!("{from} -> (left)"),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "{}  {}  {place}  {}",
            transition.at, transition.journey, transition.reason
        )?;
    }
    // What became of the messages once they were planned.
    for row in outbox
        .iter()
        .filter(|row| journey.is_none_or(|journey| row.journey == journey))
    {
        let delivered = delivered(&store, &row.key)?;
        // What the plan said is in the moves above; here is what delivery
        // made of it.
        let shown = match row.status {
            OutboxStatus::Pending => delivered.note.is_some(),
            OutboxStatus::Skipped => false,
            OutboxStatus::Suppressed => delivered.error.is_some(),
            _ => true,
        };
        if !shown {
            continue;
        }
        let attempts = match delivered.attempts {
            0 | 1 => String::new(),
            count => format!(" after {count} attempts"),
        };
        let outcome = match row.status {
            OutboxStatus::Sent => format!(
                "sent{attempts} at {}{}",
                delivered
                    .sent_at
                    .map(|at| at.to_string())
                    .unwrap_or_default(),
                delivered
                    .provider_id
                    .map_or_else(String::new, |id| format!(" ({id})"))
            ),
            OutboxStatus::Failed => {
                format!("failed{attempts}: {}", delivered.error.unwrap_or_default())
            }
            OutboxStatus::Sending => "being sent".to_string(),
            OutboxStatus::Pending => match &delivered.note {
                Some(note) => format!("waiting: {note}"),
                None => "waiting to be sent".to_string(),
            },
            other => match row.note.as_ref().or(delivered.note.as_ref()) {
                Some(note) => format!("{other}: {note}"),
                None => other.to_string(),
            },
        };
        writeln!(
            out,
            "{}  {}  {}  {} {}: {outcome}",
            row.send_at,
            row.journey,
            row.step(),
            row.channel,
            row.template
        )?;
    }
    Ok(Status::Success)
}

fn delivered(
    store: &SqliteStore,
    key: &crate::model::OutboxKey,
) -> Result<crate::store::Delivered, CommandError> {
    use crate::store::Outbox as _;
    Ok(store
        .delivered(key)
        .map_err(|error| usage(error.to_string()))?
        .unwrap_or_default())
}
