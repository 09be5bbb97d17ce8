//! One run of the journeys over a store: [`run_at`] moves every contact up
//! to an instant, in batches of [`BATCH`] contacts per transaction. The
//! `run`, `status` and `why` commands in [`crate::cli`] call it and read
//! what it wrote.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::engine::{Counts, Engine, JourneyRun, RunError};
use super::eval::Program;
use crate::model::Timestamp;
use crate::project::Checked;
use crate::store::{Progress, RunRecord, Store, StoreError};

/// Contacts per transaction: a crash loses at most one batch's work, which
/// the next run redoes exactly.
pub const BATCH: usize = 1000;

/// Contacts resting at a step this version removed or changed, with no
/// `moved` rule for them: the run refuses to start rather than drop them.
fn stranded<S: Store + ?Sized>(checked: &Checked, store: &S) -> Result<Vec<String>, StoreError> {
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
            crate::ast::print::string(step),
            journey = resting.journey,
        ));
    }
    Ok(problems)
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

impl std::error::Error for RunFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunFailure::Engine(error) => Some(error),
            RunFailure::Stranded(_) | RunFailure::UnknownJourney(_) | RunFailure::Invalid => None,
        }
    }
}

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
pub fn run_at<S: Store + ?Sized>(
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
            return Err(RunFailure::UnknownJourney(format!(
                "no journey named `{name}`; {}",
                checked.journey_hint(name)
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
        .map(|journey| (journey.name.clone(), journey.version()))
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
    let program = Program::of(&checked.analysis);
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
                    Ok(()) => crate::fault::point("run.contact"),
                    Err(RunError::Store(error)) => return Err(error),
                    Err(other) => {
                        failure = Some(other);
                        return Err(StoreError::Abandoned("the run stopped"));
                    }
                }
            }
            Ok(())
        });
        if let Some(failure) = failure.take() {
            return Err(RunFailure::Engine(failure));
        }
        outcome?;
        crate::fault::point("run.batch");
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
