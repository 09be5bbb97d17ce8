//! `journeyc run`, `journeyc status` and `journeyc why`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::engine::{self, Counts, Engine};
use super::eval::Program;
use crate::commands::{project_settings, CommandError, Status};
use crate::graph::CompiledJourney;
use crate::project::{self, Checked};
use crate::store::{self, sqlite::SqliteStore, Store};

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

/// `--now`: an RFC 3339 instant, or the clock.
pub(crate) fn parse_now(now: Option<&str>) -> Result<DateTime<Utc>, CommandError> {
    match now {
        None => Ok(Utc::now()),
        Some(text) => crate::runner::eval::parse_instant(text).ok_or_else(|| {
            usage(format!(
                "`--now {text}` is not an RFC 3339 time such as 2026-11-23T02:00:00+08:00"
            ))
        }),
    }
}

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

/// `journeyc run [--now T] [--dry-run] [--journey NAME...]`
pub fn run(
    options: &RunOptions,
    project_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    let now = parse_now(options.now.as_deref())?;
    let Some((checked, mut store)) = load(project_path, err, Open::Create)? else {
        return Ok(Status::Problems);
    };
    let _lock = lock(&store)?;
    let settings = checked
        .settings
        .as_ref()
        .ok_or_else(|| usage("the settings are invalid"))?;
    let templates = checked
        .templates
        .as_ref()
        .ok_or_else(|| usage("the templates could not be read"))?;
    for name in &options.journeys {
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
            return Err(usage(format!("no journey named `{name}` {hint}")));
        }
    }
    let journeys: Vec<&CompiledJourney> = checked
        .analysis
        .journeys
        .iter()
        .filter(|journey| options.journeys.is_empty() || options.journeys.contains(&journey.name))
        .collect();
    // Contacts resting at a step a new version removed are never dropped.
    let mut stranded = Vec::new();
    for (journey, step, count) in store.resting().map_err(|error| usage(error.to_string()))? {
        if let Some(compiled) = checked
            .analysis
            .journeys
            .iter()
            .find(|compiled| compiled.name == journey)
        {
            let has_rule = compiled.rules.moved.iter().any(|(from, _)| *from == step);
            if compiled.node(&step).is_none() && !has_rule {
                stranded.push(format!("journey `{journey}` no longer has step `{step}`, where {count} contacts are waiting"));
            }
        }
    }
    if !stranded.is_empty() {
        for line in &stranded {
            writeln!(err, "error: {line}")?;
        }
        writeln!(err, "failed: put the steps back (same label), or say where those contacts go with `moved OLD_STEP -> NEW_STEP` in the journey; nothing was run")?;
        return Ok(Status::Problems);
    }
    let versions: HashMap<String, String> = checked
        .analysis
        .journeys
        .iter()
        .map(|journey| (journey.name.clone(), version(journey)))
        .collect();
    if !options.dry_run {
        let list: Vec<(String, String)> = versions
            .iter()
            .map(|(name, version)| (name.clone(), version.clone()))
            .collect();
        store
            .record_versions(&list, &engine::text(now))
            .map_err(|error| usage(error.to_string()))?;
    }
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
    let previous_run = store
        .last_run_before(&engine::text(now))
        .map_err(|error| usage(error.to_string()))?
        .and_then(|text| crate::runner::eval::parse_instant(&text));
    let started = Utc::now();
    let engine = Engine {
        settings,
        program: &program,
        journeys,
        templates,
        versions: &versions,
        now,
        previous_run,
    };
    let mut counts = Counts::default();
    let mut after: Option<String> = None;
    let total = store
        .contact_count()
        .map_err(|error| usage(error.to_string()))?;
    // On stderr, and drawn only when stderr is a terminal: cron logs stay clean.
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} contacts {per_sec} eta {eta}")
    {
        progress.set_style(style);
    }
    tracing::info!(now = %engine::text(now), contacts = total, dry_run = options.dry_run, "run started");
    loop {
        let page = store
            .contacts_page(after.as_deref(), BATCH)
            .map_err(|error| usage(error.to_string()))?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let mut page = Some(page);
        store
            .batch(!options.dry_run, &mut |batch| {
                for contact in page.take().unwrap_or_default() {
                    engine.contact(batch, contact, &mut counts)?;
                }
                Ok(())
            })
            .map_err(|error| usage(error.to_string()))?;
        progress.set_position(counts.contacts);
        tracing::debug!(
            contacts = counts.contacts,
            last = after.as_deref().unwrap_or(""),
            "batch committed"
        );
    }
    progress.finish_and_clear();
    tracing::info!(
        now = %engine::text(now),
        contacts = counts.contacts,
        enrolled = counts.enrolled,
        queued = counts.queued,
        transitions = counts.transitions,
        "run finished"
    );
    let summary =
        serde_json::json!({"now": engine::text(now), "dry_run": options.dry_run, "counts": counts});
    if !options.dry_run {
        store
            .record_run(
                &engine::text(now),
                &engine::text(started),
                &summary.to_string(),
            )
            .map_err(|error| usage(error.to_string()))?;
    }
    if options.json {
        let value = summary;
        writeln!(out, "{value}")?;
    } else {
        let prefix = if options.dry_run {
            "dry run (nothing written)"
        } else {
            "run"
        };
        writeln!(
            out,
            "{prefix} at {}: {} contacts; {} enrolled, {} converted, {} exited, {} completed; {} messages queued ({} deferred by caps), {} skipped, {} suppressed, {} expired; {} transitions",
            engine::text(now),
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
        .status(&engine::text(now))
        .map_err(|error| usage(error.to_string()))?;
    let outbox = store
        .outbox_counts()
        .map_err(|error| usage(error.to_string()))?;
    if json {
        let outbox: serde_json::Map<String, serde_json::Value> = outbox
            .into_iter()
            .map(|(status, count)| (status, count.into()))
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
            "{}: {} active ({} due), {} converted, {} completed, {} exited, {} holdout, {} handed off",
            journey.journey, journey.active, journey.due, journey.converted, journey.completed, journey.exited, journey.holdout, journey.handed_off
        )?;
        for (step, count) in &journey.waiting {
            writeln!(out, "  waiting at {step}: {count}")?;
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
            .map(|transition| serde_json::json!({"journey": transition.journey, "from": transition.from_step, "to": transition.to_step, "reason": transition.reason, "at": transition.at}))
            .collect();
        let mut rows = Vec::new();
        for row in outbox
            .iter()
            .filter(|row| journey.is_none_or(|journey| row.journey == journey))
        {
            let delivered = delivered(&store, &row.key)?;
            rows.push(serde_json::json!({"journey": row.journey, "step": row.step, "channel": row.channel, "template": row.template, "send_at": row.send_at, "status": row.status, "attempts": delivered.attempts, "sent_at": delivered.sent_at, "provider_id": delivered.provider_id, "error": delivered.error}));
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
            (_, Some(to)) => to.clone(),
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
        .filter(|row| !matches!(row.status.as_str(), "pending" | "skipped" | "suppressed"))
    {
        let delivered = delivered(&store, &row.key)?;
        let attempts = match delivered.attempts {
            1 => String::new(),
            count => format!(" after {count} attempts"),
        };
        let outcome = match row.status.as_str() {
            "sent" => format!(
                "sent{attempts} at {}{}",
                delivered.sent_at.unwrap_or_default(),
                delivered
                    .provider_id
                    .map_or_else(String::new, |id| format!(" ({id})"))
            ),
            "failed" => format!("failed{attempts}: {}", delivered.error.unwrap_or_default()),
            "sending" => "being sent".to_string(),
            other => other.to_string(),
        };
        writeln!(
            out,
            "{}  {}  {}  {} {}: {outcome}",
            row.send_at, row.journey, row.step, row.channel, row.template
        )?;
    }
    Ok(Status::Success)
}

fn delivered(store: &SqliteStore, key: &str) -> Result<crate::store::Delivered, CommandError> {
    use crate::store::Outbox as _;
    Ok(store
        .delivered(key)
        .map_err(|error| usage(error.to_string()))?
        .unwrap_or_default())
}
