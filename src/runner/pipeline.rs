//! A night over every core on a store with one writer (SQLite): evaluator
//! threads, each with a reader connection of its own, take pages of
//! contacts in turn, read what the run needs of them at once
//! ([`Store::read_ahead`]) and run the engine against a [`Buffered`]
//! batch, which answers from the page and keeps the writes in order; the
//! writer (the calling thread) replays each page's writes into the store's
//! own batch, in page order, one transaction per page as before.
//!
//! A contact belongs to one page and nothing a page writes is read by
//! another, so the outcome is the one of a night that reads, evaluates and
//! writes each page in turn: the same rows with the same ids. What differs
//! is only when a page's rows are read, a little before its transaction
//! (as a page's contacts always were); the fields are edited as they are
//! when the page is written.
//!
//! [`Store::read_ahead`]: crate::store::Store::read_ahead

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use super::engine::{Counts, RunError};
use super::run::{add, committed, Ready, RunFailure};
use crate::model::{Channel, OutboxKey, Timestamp};
use crate::store::{
    Ahead, Assignment, Backend, Contact, ContactEdit, Enrolment, Event, OutboxRow, Part, RunBatch,
    Scheduled, StoreError, Transition, Visit,
};

/// A write the engine asked for, kept for the writer.
enum Op {
    /// With its provisional id (negative, counting down).
    Insert(Enrolment),
    Update(Enrolment),
    Record(Transition),
    Assign(Assignment),
    Queue(OutboxRow),
    Edit(String, ContactEdit),
    Wake(String, Option<Timestamp>),
}

/// A batch that answers the engine's reads from a page read ahead and
/// keeps its writes, in order, for [`replay`].
pub(crate) struct Buffered<'r> {
    ahead: Ahead,
    /// Suppressions are asked by address, which only the evaluation
    /// knows; imports, their only writers, are outside the run.
    reader: &'r dyn Backend,
    ops: Vec<Op>,
    last_provisional: i64,
}

/// A page's reads end with it: the engine reads only the contact it
/// visits, and once.
const NOT_READ_AHEAD: StoreError =
    StoreError::Abandoned("a pipelined night read a contact its page did not read ahead");

impl<'r> Buffered<'r> {
    pub(crate) fn new(ahead: Ahead, reader: &'r dyn Backend) -> Self {
        Buffered {
            ahead,
            reader,
            ops: Vec::new(),
            last_provisional: 0,
        }
    }
}

impl RunBatch for Buffered<'_> {
    fn events_of(&mut self, contact_id: &str, through_seq: i64) -> Result<Vec<Event>, StoreError> {
        if through_seq != self.ahead.through_seq {
            return Err(NOT_READ_AHEAD);
        }
        self.ahead.events.remove(contact_id).ok_or(NOT_READ_AHEAD)
    }

    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        self.ahead
            .enrolments
            .remove(contact_id)
            .ok_or(NOT_READ_AHEAD)
    }

    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError> {
        self.last_provisional -= 1;
        let id = self.last_provisional;
        self.ops.push(Op::Insert(Enrolment {
            id,
            ..enrolment.clone()
        }));
        Ok(id)
    }

    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError> {
        self.ops.push(Op::Update(enrolment.clone()));
        Ok(())
    }

    fn record(&mut self, transition: &Transition) -> Result<(), StoreError> {
        self.ops.push(Op::Record(transition.clone()));
        Ok(())
    }

    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        self.ops.push(Op::Assign(assignment.clone()));
        Ok(())
    }

    fn queue(&mut self, row: &OutboxRow) -> Result<bool, StoreError> {
        let held = self
            .ahead
            .outbox
            .get_mut(&row.contact_id)
            .ok_or(NOT_READ_AHEAD)?;
        if !held.queue(row) {
            return Ok(false);
        }
        self.ops.push(Op::Queue(row.clone()));
        Ok(true)
    }

    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: Channel,
        from: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError> {
        let held = self.ahead.outbox.get(contact_id).ok_or(NOT_READ_AHEAD)?;
        Ok(held.scheduled(channel, from))
    }

    fn suppressed(
        &mut self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.reader.is_suppressed(address, channel, at)
    }

    fn update_contact(&mut self, contact_id: &str, edit: ContactEdit) -> Result<(), StoreError> {
        self.ops.push(Op::Edit(contact_id.to_string(), edit));
        Ok(())
    }

    fn set_wake(&mut self, contact_id: &str, wake: Option<Timestamp>) -> Result<(), StoreError> {
        self.ops.push(Op::Wake(contact_id.to_string(), wake));
        Ok(())
    }

    fn part_progress(
        &mut self,
        _night: i64,
        _part: u32,
        _after: Option<&str>,
        _counts: &str,
        _done: bool,
    ) -> Result<(), StoreError> {
        Err(StoreError::Abandoned(
            "a pipelined page records its progress when it is written",
        ))
    }
}

/// Writes a page's kept writes into the store's batch, in order; new
/// enrolments take the store's ids, and the rows that refer to them follow.
fn replay(ops: Vec<Op>, batch: &mut dyn RunBatch) -> Result<(), StoreError> {
    let mut real: HashMap<i64, i64> = HashMap::new();
    let resolve = |real: &HashMap<i64, i64>, id: i64| {
        if id < 0 {
            real.get(&id).copied().ok_or(StoreError::Abandoned(
                "a page refers to an enrolment it did not make",
            ))
        } else {
            Ok(id)
        }
    };
    for op in ops {
        match op {
            Op::Insert(enrolment) => {
                let id = batch.insert_enrolment(&enrolment)?;
                real.insert(enrolment.id, id);
            }
            Op::Update(mut enrolment) => {
                enrolment.id = resolve(&real, enrolment.id)?;
                batch.update_enrolment(&enrolment)?;
            }
            Op::Record(mut transition) => {
                transition.enrolment_id = resolve(&real, transition.enrolment_id)?;
                batch.record(&transition)?;
            }
            Op::Assign(mut assignment) => {
                assignment.enrolment_id = resolve(&real, assignment.enrolment_id)?;
                batch.assign(&assignment)?;
            }
            Op::Queue(mut row) => {
                row.key = OutboxKey::new(resolve(&real, row.key.enrolment)?, row.key.step.clone());
                if !batch.queue(&row)? {
                    return Err(StoreError::Abandoned(
                        "a message's key reached the outbox while its page was evaluated",
                    ));
                }
            }
            Op::Edit(contact_id, edit) => batch.update_contact(&contact_id, edit)?,
            Op::Wake(contact_id, wake) => batch.set_wake(&contact_id, wake)?,
        }
    }
    Ok(())
}

/// A page as an evaluator left it for the writer.
struct Evaluated {
    /// The page's last contact: where the partition stands once it is
    /// written.
    after: String,
    ops: Vec<Op>,
    /// What the page did.
    counts: Counts,
}

/// Where the evaluators are in the partition: the next page's number and
/// the contact it starts after.
struct Cursor {
    index: usize,
    after: Option<String>,
    done: bool,
}

/// Works one partition with the evaluators' reader connections and the
/// writer `store`, from where an earlier worker left it. Fails like
/// [`super::run`]'s sequential partition: at the first page that does.
pub(super) fn work_part(
    ready: &Ready<'_>,
    store: &mut dyn Backend,
    readers: &mut [Box<dyn Backend>],
    part: &Part,
    mine: &mut Counts,
    progress: super::run::Progressed<'_>,
) -> Result<(), RunFailure> {
    let night = &ready.night;
    let mut counts: Counts = serde_json::from_str(&part.counts).unwrap_or_default();
    let due = match night.visit {
        Visit::Due { touched_after } => {
            Some(store.due_ids(part.index, night.now, touched_after, part.after.as_deref())?)
        }
        Visit::Everyone => None,
    };
    let cursor = Mutex::new(Cursor {
        index: 0,
        after: part.after.clone(),
        done: false,
    });
    let stop = AtomicBool::new(false);
    let (sender, pages) =
        mpsc::sync_channel::<(usize, Result<Evaluated, RunFailure>)>(readers.len() * 2);
    let mut after = part.after.clone();
    let outcome: Result<(), RunFailure> = std::thread::scope(|scope| {
        for reader in readers.iter_mut() {
            let sender = sender.clone();
            let (cursor, stop, due) = (&cursor, &stop, due.as_deref());
            scope.spawn(move || evaluate(ready, &**reader, part.index, due, cursor, stop, &sender));
        }
        drop(sender);
        let mut waiting: BTreeMap<usize, Result<Evaluated, RunFailure>> = BTreeMap::new();
        let mut next = 0;
        let mut outcome = Ok(());
        'pages: for (index, page) in &pages {
            waiting.insert(index, page);
            while let Some(page) = waiting.remove(&next) {
                next += 1;
                let page = match page {
                    Ok(page) => page,
                    Err(failure) => {
                        outcome = Err(failure);
                        break 'pages;
                    }
                };
                let before = counts.clone();
                add(&mut counts, &page.counts, &Counts::default());
                let text = serde_json::to_string(&counts).unwrap_or_default();
                let mut ops = Some(page.ops);
                let written = store.batch(true, &mut |batch| {
                    replay(ops.take().unwrap_or_default(), batch)?;
                    batch.part_progress(night.id, part.index, Some(&page.after), &text, false)
                });
                if let Err(error) = written {
                    outcome = Err(RunFailure::from(error));
                    break 'pages;
                }
                after = Some(page.after);
                committed(
                    mine,
                    &counts,
                    &before,
                    part.index,
                    after.as_deref(),
                    progress,
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        drop(pages);
        outcome
    });
    outcome?;
    let text = serde_json::to_string(&counts).unwrap_or_default();
    store.batch(true, &mut |batch| {
        batch.part_progress(night.id, part.index, after.as_deref(), &text, true)
    })?;
    Ok(())
}

/// An evaluator: takes the next page, reads it and what it holds, runs its
/// contacts and hands the page to the writer, until the partition is done
/// or the writer stops.
fn evaluate(
    ready: &Ready<'_>,
    reader: &dyn Backend,
    part: u32,
    due: Option<&[String]>,
    cursor: &Mutex<Cursor>,
    stop: &AtomicBool,
    writer: &mpsc::SyncSender<(usize, Result<Evaluated, RunFailure>)>,
) {
    while !stop.load(Ordering::Relaxed) {
        let (index, page) = {
            let Ok(mut cursor) = cursor.lock() else {
                return;
            };
            if cursor.done {
                return;
            }
            let page = match due {
                Some(ids) => match ids.chunks(ready.page).nth(cursor.index) {
                    Some(ids) => reader.contacts_in(ids),
                    None => Ok(Vec::new()),
                },
                None => reader.part_page(part, cursor.after.as_deref(), ready.page),
            };
            let index = cursor.index;
            cursor.index += 1;
            match &page {
                Ok(page) if !page.is_empty() => {
                    cursor.after = page.last().map(|contact| contact.id.clone());
                }
                _ => cursor.done = true,
            }
            (index, page)
        };
        let page = match page {
            Ok(page) if page.is_empty() => return,
            Ok(page) => page,
            Err(error) => {
                let _ = writer.send((index, Err(RunFailure::from(error))));
                return;
            }
        };
        crate::fault::pause("run.page-read");
        let evaluated = evaluate_page(ready, reader, page);
        let failed = evaluated.is_err();
        if writer.send((index, evaluated)).is_err() || failed {
            return;
        }
    }
}

/// One page through the engine, against a batch that keeps its writes.
fn evaluate_page(
    ready: &Ready<'_>,
    reader: &dyn Backend,
    page: Vec<Contact>,
) -> Result<Evaluated, RunFailure> {
    let engine = &ready.engine;
    let after = page
        .last()
        .map(|contact| contact.id.clone())
        .unwrap_or_default();
    let ids: Vec<&str> = page.iter().map(|contact| contact.id.as_str()).collect();
    let ahead = reader.read_ahead(&ids, engine.run_seq)?;
    let mut batch = Buffered::new(ahead, reader);
    let mut counts = Counts::default();
    for contact in page {
        match engine.contact(&mut batch, contact, &mut counts) {
            Ok(()) => crate::fault::point("run.contact"),
            Err(RunError::Store(error)) => return Err(RunFailure::from(error)),
            Err(other) => return Err(RunFailure::Engine(other)),
        }
    }
    Ok(Evaluated {
        after,
        ops: batch.ops,
        counts,
    })
}
