//! One run of the journeys over a store: a night. [`run_at`] moves every
//! contact that needs it up to an instant, in batches of [`BATCH`]
//! contacts per transaction; [`run_workers`] does the same with several
//! connections at once. The `run`, `status` and `why` commands in
//! [`crate::cli`] call them and read what they wrote.
//!
//! A night is split in the store's partitions (one in SQLite, sixteen in
//! PostgreSQL; a contact belongs to one). A worker claims a partition,
//! works it batch by batch (each batch's transaction also records how far
//! it got) and marks it done with its last batch; a worker that dies lets
//! its claim go, and the next one goes on after its last batch. When every
//! partition is done, exactly one worker closes the night: it saves each
//! journey's progress and logs the run.
//!
//! A night visits only the contacts that need it: those whose wake (when
//! something is next due for them, kept by the store) has come, and those
//! an import touched since the last night. It visits everyone when the
//! project changed since then, when it runs some journeys only, on the
//! first night, and when asked (`--all-contacts`): the outcome is the
//! same either way, only the cost differs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::engine::{Counts, Engine, JourneyRun, RunError};
use super::eval::Program;
use crate::model::Timestamp;
use crate::project::Checked;
use crate::store::{
    Backend, Contact, Join, Night, Part, Progress, RunRecord, Store, StoreError, Sweep, Visit,
};

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
    /// The whole night's counts when this process closed it (or ran it
    /// alone); this process's own otherwise.
    pub counts: Counts,
    /// Whether the night visited every contact, or only those with
    /// something due and those an import touched.
    pub visited: Visited,
    /// Partitions this process worked on.
    pub partitions: u32,
    /// Whether this process closed the night (one of its workers always
    /// does; another `--worker` may have).
    pub closed: bool,
}

/// Which contacts a night visited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Visited {
    #[default]
    Everyone,
    Due,
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
    /// A worker's project is not the one the open night runs.
    OtherProject,
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
            RunFailure::OtherProject => f.write_str(
                "the night that is open runs another version of the project (journeys, settings or templates differ); every worker of a night must run the same one",
            ),
            RunFailure::Engine(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for RunFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunFailure::Engine(error) => Some(error),
            RunFailure::Stranded(_)
            | RunFailure::UnknownJourney(_)
            | RunFailure::Invalid
            | RunFailure::OtherProject => None,
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
    /// Visit every contact, even where nothing is due.
    pub everyone: bool,
    /// Join the night that is open (`--worker`) instead of running alone.
    pub worker: bool,
    /// Contacts per page and transaction ([`BATCH`] when none).
    pub page: Option<usize>,
}

/// Hears how many contacts this process has done, after each batch.
pub type Progressed<'p> = &'p (dyn Fn(u64) + Sync);

/// A hash of every source of the project (journeys, settings, templates)
/// and of this journeyc: a night visits only what is due when the last
/// one ran the same.
pub fn fingerprint(checked: &Checked) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut files: Vec<(String, &str)> = checked
        .sources
        .files()
        .map(|(_, file)| (file.path.display().to_string(), file.text.as_str()))
        .collect();
    files.sort_unstable();
    for (path, text) in files {
        hash.update(path.len().to_le_bytes());
        hash.update(path.as_bytes());
        hash.update(text.len().to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.finalize()[..16]
        .iter()
        .fold(String::new(), |mut hex, byte| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A night made ready: the engine every worker shares and what closing it
/// saves.
pub(super) struct Ready<'a> {
    pub(super) engine: Engine<'a>,
    pub(super) night: Night,
    /// Contacts per page and transaction.
    pub(super) page: usize,
    saved: Vec<Progress>,
    launched: Vec<String>,
    sweep: Option<Sweep>,
}

/// Checks what a night needs, deploys the journeys' versions and opens the
/// night (or joins the open one).
fn prepare<'a, S: Store + ?Sized>(
    checked: &'a Checked,
    program: &'a Program<'a>,
    store: &mut S,
    now: DateTime<Utc>,
    plan: &Plan<'_>,
) -> Result<Ready<'a>, RunFailure> {
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
    let fingerprint = fingerprint(checked);
    let whole = plan.journeys.is_empty();
    // The mark before the events' seq: an import that commits in between
    // is acted on tonight and visited again tomorrow, never missed.
    let mark = store.touch_mark()?;
    let sweep = store.sweep()?;
    // A project unchanged since the last whole night strands no one: that
    // night found every resting contact at a step it knows, and runs put
    // contacts only at steps they know. (The check reads every active
    // enrolment.)
    if sweep
        .as_ref()
        .is_none_or(|sweep| sweep.fingerprint != fingerprint)
    {
        let problems = stranded(checked, store)?;
        if !problems.is_empty() {
            return Err(RunFailure::Stranded(problems));
        }
    }
    let proposed_seq = store.last_event_seq()?;
    let visit = match sweep {
        Some(sweep) if whole && !plan.everyone && sweep.fingerprint == fingerprint => Visit::Due {
            touched_after: sweep.mark,
        },
        _ => Visit::Everyone,
    };
    let mut night = Night {
        id: 0,
        now: Timestamp::from(now),
        run_seq: proposed_seq,
        mark,
        visit,
        fingerprint: fingerprint.clone(),
        started_at: Timestamp::now(),
    };
    if !plan.dry_run {
        let join = if plan.worker {
            Join::Worker
        } else {
            Join::Alone
        };
        night = store.begin_night(&night, join)?;
        if night.fingerprint != fingerprint {
            return Err(RunFailure::OtherProject);
        }
    }
    let now = night.now.utc();
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
    let run_seq = night.run_seq;
    let mut journeys: Vec<JourneyRun<'_>> = checked
        .analysis
        .journeys
        .iter()
        .filter(|journey| whole || plan.journeys.contains(&journey.name))
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
        store.record_versions(&list, night.now)?;
    }
    let saved: Vec<Progress> = journeys
        .iter()
        .map(|run| Progress {
            journey: run.name().to_string(),
            deployed_at: known
                .get(run.name())
                .map_or(night.now, |known| known.deployed_at),
            until: Timestamp::from(run.after.max(now)),
            seen_seq: run_seq,
        })
        .collect();
    let engine = Engine {
        settings,
        program,
        templates,
        journeys,
        now,
        run_seq,
        max_agenda: crate::runner::engine::MAX_AGENDA,
    };
    let sweep = whole.then_some(Sweep {
        mark: night.mark,
        fingerprint,
    });
    Ok(Ready {
        engine,
        night,
        page: plan.page.unwrap_or(BATCH).max(1),
        saved,
        launched,
        sweep,
    })
}

/// Works partitions of the night until every one is done; returns what
/// this worker did and how many partitions it worked.
fn work<S: Store + ?Sized>(
    ready: &Ready<'_>,
    store: &mut S,
    commit: bool,
    progress: Progressed<'_>,
) -> Result<(Counts, u32), RunFailure> {
    let mut mine = Counts::default();
    let mut parts = 0;
    if !commit {
        // A dry run claims nothing: it reads every partition in turn.
        for index in 0..store.partitions() {
            let part = Part {
                index,
                after: None,
                counts: String::new(),
            };
            work_part(ready, store, &part, false, &mut mine, progress)?;
            parts += 1;
        }
        return Ok((mine, parts));
    }
    let parts = claimed(ready, store, &mut |store, part| {
        work_part(ready, store, part, true, &mut mine, progress)
    })?;
    Ok((mine, parts))
}

/// Claims partitions of the night until every one is done, works each with
/// `part` and lets it go; returns how many this worker worked.
fn claimed<S: Store + ?Sized>(
    ready: &Ready<'_>,
    store: &mut S,
    part: &mut dyn FnMut(&mut S, &Part) -> Result<(), RunFailure>,
) -> Result<u32, RunFailure> {
    let mut parts = 0;
    while let Some(claimed) = store.claim_part(&ready.night, true)? {
        let outcome = part(store, &claimed);
        store.release_part(claimed.index)?;
        outcome?;
        parts += 1;
    }
    Ok(parts)
}

/// One partition, from where an earlier worker left it.
fn work_part<S: Store + ?Sized>(
    ready: &Ready<'_>,
    store: &mut S,
    part: &Part,
    commit: bool,
    mine: &mut Counts,
    progress: Progressed<'_>,
) -> Result<(), RunFailure> {
    let night = &ready.night;
    let mut counts: Counts = serde_json::from_str(&part.counts).unwrap_or_default();
    let mut after = part.after.clone();
    let due = match night.visit {
        Visit::Due { touched_after } => {
            Some(store.due_ids(part.index, night.now, touched_after, after.as_deref())?)
        }
        Visit::Everyone => None,
    };
    let mut chunks = due.as_deref().map(|ids| ids.chunks(ready.page));
    loop {
        let page: Vec<Contact> = match &mut chunks {
            Some(chunks) => match chunks.next() {
                Some(ids) => store.contacts_in(ids)?,
                None => break,
            },
            None => store.part_page(part.index, after.as_deref(), ready.page)?,
        };
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        crate::fault::pause("run.page-read");
        let before = counts.clone();
        let mut page = Some(page);
        let mut failure: Option<RunError> = None;
        let outcome = store.batch(commit, &mut |batch| {
            let page = page.take().unwrap_or_default();
            let ids: Vec<&str> = page.iter().map(|contact| contact.id.as_str()).collect();
            batch.prefetch(part.index, &ids, ready.engine.run_seq)?;
            for contact in page {
                match ready.engine.contact(batch, contact, &mut counts) {
                    Ok(()) => crate::fault::point("run.contact"),
                    Err(RunError::Store(error)) => return Err(error),
                    Err(other) => {
                        failure = Some(other);
                        return Err(StoreError::Abandoned("the run stopped"));
                    }
                }
            }
            if commit {
                let text = serde_json::to_string(&counts).unwrap_or_default();
                batch.part_progress(night.id, part.index, after.as_deref(), &text, false)?;
            }
            Ok(())
        });
        if let Some(failure) = failure.take() {
            return Err(RunFailure::Engine(failure));
        }
        outcome?;
        committed(
            mine,
            &counts,
            &before,
            part.index,
            after.as_deref(),
            progress,
        );
    }
    if commit {
        let text = serde_json::to_string(&counts).unwrap_or_default();
        store.batch(true, &mut |batch| {
            batch.part_progress(night.id, part.index, after.as_deref(), &text, true)
        })?;
    }
    Ok(())
}

/// After a batch's commit: adds what it did (`counts` less `before`) to
/// what this process did, and says so.
pub(super) fn committed(
    mine: &mut Counts,
    counts: &Counts,
    before: &Counts,
    part: u32,
    after: Option<&str>,
    progress: Progressed<'_>,
) {
    add(mine, counts, before);
    crate::fault::point("run.batch");
    progress(mine.contacts);
    tracing::debug!(
        part,
        contacts = counts.contacts,
        last = after.unwrap_or(""),
        "batch committed"
    );
}

/// Adds to `total` what a batch did: `now` less `before`.
pub(super) fn add(total: &mut Counts, now: &Counts, before: &Counts) {
    let fields = [
        (&mut total.contacts, now.contacts, before.contacts),
        (&mut total.enrolled, now.enrolled, before.enrolled),
        (&mut total.converted, now.converted, before.converted),
        (&mut total.exited, now.exited, before.exited),
        (&mut total.completed, now.completed, before.completed),
        (&mut total.queued, now.queued, before.queued),
        (&mut total.deferred, now.deferred, before.deferred),
        (&mut total.skipped, now.skipped, before.skipped),
        (&mut total.suppressed, now.suppressed, before.suppressed),
        (&mut total.expired, now.expired, before.expired),
        (&mut total.transitions, now.transitions, before.transitions),
    ];
    for (total, now, before) in fields {
        *total += now.saturating_sub(before);
    }
}

/// The sum of the partitions' counts.
fn total(parts: &[String]) -> Counts {
    let mut sum = Counts::default();
    for part in parts {
        let counts: Counts = serde_json::from_str(part).unwrap_or_default();
        add(&mut sum, &counts, &Counts::default());
    }
    sum
}

/// Closes the night if this process is the one to, and says what it did.
fn finish<S: Store + ?Sized>(
    ready: &Ready<'_>,
    store: &mut S,
    plan: &Plan<'_>,
    mine: Counts,
    partitions: u32,
) -> Result<RunReport, RunFailure> {
    let visited = match ready.night.visit {
        Visit::Everyone => Visited::Everyone,
        Visit::Due { .. } => Visited::Due,
    };
    let mut report = RunReport {
        now: Some(ready.night.now),
        dry_run: plan.dry_run,
        launched: ready.launched.clone(),
        counts: mine,
        visited,
        partitions,
        closed: false,
    };
    if plan.dry_run {
        return Ok(report);
    }
    let mut record = |parts: &[String]| {
        let mut whole = report.clone();
        whole.counts = total(parts);
        whole.closed = true;
        RunRecord {
            now: ready.night.now,
            started_at: ready.night.started_at,
            summary: serde_json::to_string(&whole).unwrap_or_default(),
        }
    };
    let closed = store.close_night(
        &ready.night,
        &ready.saved,
        ready.sweep.as_ref(),
        &mut record,
    )?;
    if closed {
        report.counts = total(&store.night_counts(ready.night.id)?);
        report.closed = true;
    }
    Ok(report)
}

/// Moves every contact of `store` that needs it through the project's
/// journeys up to `now`: the whole night, as `journeyc run` does it alone
/// (or, with `plan.worker`, as one worker among others), on any store.
pub fn run_at<S: Store + ?Sized>(
    checked: &Checked,
    store: &mut S,
    now: DateTime<Utc>,
    plan: &Plan<'_>,
    progress: Progressed<'_>,
) -> Result<RunReport, RunFailure> {
    let program = Program::of(&checked.analysis);
    let ready = prepare(checked, &program, store, now, plan)?;
    let (mine, partitions) = work(&ready, store, !plan.dry_run, progress)?;
    finish(&ready, store, plan, mine, partitions)
}

/// The night on a store with one writer (SQLite) over every core:
/// `evaluators` threads, each with a connection of its own, read and
/// evaluate pages of contacts while this one writes them
/// ([`super::pipeline`]). The outcome is the one of [`run_at`]; a dry run,
/// and a store that cannot be opened twice (in memory), run in one thread.
pub fn run_pipelined(
    checked: &Checked,
    store: &mut dyn Backend,
    evaluators: usize,
    now: DateTime<Utc>,
    plan: &Plan<'_>,
    progress: Progressed<'_>,
) -> Result<RunReport, RunFailure> {
    if plan.dry_run || evaluators == 0 {
        return run_at(checked, store, now, plan, progress);
    }
    let mut readers = Vec::new();
    for _ in 0..evaluators {
        match store.reopen() {
            Ok(reader) => readers.push(reader),
            Err(error) => {
                tracing::debug!(%error, "the store cannot be opened again; one thread runs the night");
                return run_at(checked, store, now, plan, progress);
            }
        }
    }
    let program = Program::of(&checked.analysis);
    let ready = prepare(checked, &program, store, now, plan)?;
    let mut mine = Counts::default();
    let parts = claimed(&ready, store, &mut |store, part| {
        super::pipeline::work_part(&ready, store, &mut readers, part, &mut mine, progress)
    })?;
    finish(&ready, store, plan, mine, parts)
}

/// The same night with `workers` connections to the store at once, each in
/// a thread of its own: the first is `store`, the others are opened from
/// it. A store that one process works at a time refuses more than one.
pub fn run_workers(
    checked: &Checked,
    store: &mut dyn Backend,
    workers: usize,
    now: DateTime<Utc>,
    plan: &Plan<'_>,
    progress: Progressed<'_>,
) -> Result<RunReport, RunFailure> {
    if workers <= 1 || plan.dry_run {
        return run_at(checked, store, now, plan, progress);
    }
    let mut others: Vec<Box<dyn Backend>> = Vec::new();
    for _ in 1..workers {
        others.push(store.reopen()?);
    }
    let program = Program::of(&checked.analysis);
    let ready = prepare(checked, &program, store, now, plan)?;
    let done = AtomicU64::new(0);
    let ready = &ready;
    let done = &done;
    let results: Vec<Result<(Counts, u32), RunFailure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter_mut()
            .map(|other| {
                scope.spawn(move || {
                    let seen = AtomicU64::new(0);
                    let tell = |contacts: u64| told(done, &seen, contacts, progress);
                    work(ready, &mut **other, true, &tell)
                })
            })
            .collect();
        let seen = AtomicU64::new(0);
        let tell = |contacts: u64| told(done, &seen, contacts, progress);
        let mut results = vec![work(ready, store, true, &tell)];
        for handle in handles {
            results.push(handle.join().unwrap_or_else(|_| {
                Err(RunFailure::Engine(RunError::Store(StoreError::Abandoned(
                    "a worker thread stopped",
                ))))
            }));
        }
        results
    });
    let mut mine = Counts::default();
    let mut partitions = 0;
    for result in results {
        let (counts, parts) = result?;
        add(&mut mine, &counts, &Counts::default());
        partitions += parts;
    }
    finish(ready, store, plan, mine, partitions)
}

/// One worker thread's count of contacts done, added to the process's.
fn told(done: &AtomicU64, seen: &AtomicU64, contacts: u64, progress: Progressed<'_>) {
    let step = contacts.saturating_sub(seen.swap(contacts, Ordering::Relaxed));
    let sum = done.fetch_add(step, Ordering::Relaxed) + step;
    progress(sum);
}
