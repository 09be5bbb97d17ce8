//! The store: contacts, events, the suppression list, enrolments,
//! transitions, the outbox, deployed journey versions, each journey's
//! progress and the run log. SQLite (`sqlite.rs`) is the default,
//! PostgreSQL (`postgres.rs`) is chosen by a `postgres://` URL; the
//! runner, delivery and the importer see only the traits here.
//!
//! Every time is a [`Timestamp`] (seconds in the database), every state an
//! enum; the store never reads the runner's bookkeeping, it keeps it.

pub mod copy;
pub mod postgres;
pub mod sqlite;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::model::{Channel, EnrolmentState, OutboxKey, OutboxStatus, StepId, Timestamp};
use crate::settings::Settings;
use crate::templates::MessageKind;

/// A contact as stored: its id and every field it has (schema fields and
/// the built-ins `email`, `phone`, `timezone`, `stage`, `tags`,
/// `created_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub fields: Map<String, Json>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub contact_id: String,
    pub name: String,
    pub at: Timestamp,
    /// The order events arrived in the store (1, 2, ...): a run acts on
    /// the events that had arrived when it started, and knows which ones
    /// came after an earlier run had passed their time.
    pub seq: i64,
    pub properties: Properties,
}

/// An event's properties. Read from the store they stay the JSON text
/// until something looks into them: a night reads every event of every
/// contact, and most are only counted or matched by name.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    text: Option<String>,
    parsed: std::sync::OnceLock<Map<String, Json>>,
}

impl Properties {
    /// Properties stored as a JSON object's text.
    pub fn from_text(text: String) -> Properties {
        Properties {
            text: Some(text),
            parsed: std::sync::OnceLock::new(),
        }
    }

    /// The properties, parsed on first use (text that is not a JSON
    /// object reads as no properties).
    pub fn map(&self) -> &Map<String, Json> {
        self.parsed.get_or_init(|| match &self.text {
            Some(text) => match serde_json::from_str(text) {
                Ok(Json::Object(object)) => object,
                _ => Map::new(),
            },
            None => Map::new(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Json> {
        self.map().get(name)
    }

    pub fn into_map(self) -> Map<String, Json> {
        self.map();
        self.parsed.into_inner().unwrap_or_default()
    }
}

impl From<Map<String, Json>> for Properties {
    fn from(map: Map<String, Json>) -> Properties {
        Properties {
            text: None,
            parsed: std::sync::OnceLock::from(map),
        }
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        self.map() == other.map()
    }
}

/// The failure a backend reports, kept as the cause of a [`StoreError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub enum StoreError {
    Open {
        path: PathBuf,
        source: Cause,
    },
    /// The database was written by a newer journeyc.
    TooNew {
        path: PathBuf,
        version: i64,
        supported: i64,
    },
    /// `store:` names a kind of store this journeyc cannot open.
    Unsupported {
        url: String,
    },
    Database(Cause),
    /// A row the store holds that this journeyc cannot read.
    Corrupt(Cause),
    /// The caller ended a transaction on purpose (its own error is kept
    /// by the caller); nothing of it was written.
    Abandoned(&'static str),
    /// Another `journeyc run` holds the store's run lock.
    Locked {
        store: String,
    },
    /// `journeyc store copy` cannot copy this store, or not into that one.
    CannotCopy(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, source } => write!(f, "cannot open the store `{}`: {source}", path.display()),
            StoreError::TooNew { path, version, supported } => write!(
                f,
                "the store `{}` has schema version {version}, but this journeyc knows up to {supported}; upgrade journeyc",
                path.display()
            ),
            StoreError::Unsupported { url } => write!(
                f,
                "`store: {url}`: only SQLite stores (a file path or `sqlite:PATH`) and PostgreSQL ones (`postgres://...`) are supported so far"
            ),
            StoreError::Database(source) => write!(f, "store error: {source}"),
            StoreError::Corrupt(source) => write!(f, "the store holds a row journeyc cannot read: {source}"),
            StoreError::Abandoned(why) => write!(f, "nothing was written: {why}"),
            StoreError::Locked { store } => write!(
                f,
                "another `journeyc run` is working on `{store}`; runs on one store never overlap, so this one stops"
            ),
            StoreError::CannotCopy(reason) => write!(f, "cannot copy the store: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Open { source, .. }
            | StoreError::Database(source)
            | StoreError::Corrupt(source) => Some(source.as_ref()),
            StoreError::TooNew { .. }
            | StoreError::Unsupported { .. }
            | StoreError::Abandoned(_)
            | StoreError::Locked { .. }
            | StoreError::CannotCopy(_) => None,
        }
    }
}

/// Writes of one import, all in one transaction: the import is applied
/// whole or not at all.
pub trait ImportSink {
    /// The contacts and events (by id) that the next rows name: a store
    /// across a network looks them up at once. The default does nothing.
    fn prefetch(&mut self, contacts: &[String], events: &[String]) -> Result<(), StoreError> {
        let _ = (contacts, events);
        Ok(())
    }
    fn contact(&mut self, id: &str) -> Result<Option<Contact>, StoreError>;
    /// Inserts or replaces; returns whether the contact is new.
    fn put_contact(&mut self, contact: &Contact) -> Result<bool, StoreError>;
    /// Inserts an event (its `seq` is given by the store); returns `false`
    /// when its id is already stored.
    fn put_event(&mut self, event: &Event) -> Result<bool, StoreError>;
    /// Puts an address (normalized, see [`normalize_address`]) on the
    /// suppression list of a channel, from the earliest time any event put
    /// it there; returns `false` when it was already there from then or
    /// earlier.
    fn suppress(&mut self, suppression: &Suppression) -> Result<bool, StoreError>;
}

/// An address no marketing message goes to on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub address: String,
    pub channel: Channel,
    /// `unsubscribed`, `bounced`, `complained`, with the provider's reason
    /// after a colon when there is one.
    pub reason: String,
    pub at: Timestamp,
}

/// The form an address is compared in: email addresses trimmed and in
/// lower case; phone numbers as their digits with a leading `+` kept, so
/// `+86 138-0013-8000` and `+8613800138000` are one number.
pub fn normalize_address(channel: Channel, address: &str) -> String {
    let address = address.trim();
    if channel == Channel::Sms {
        let digits: String = address.chars().filter(char::is_ascii_digit).collect();
        if address.starts_with('+') {
            format!("+{digits}")
        } else {
            digits
        }
    } else {
        address.to_lowercase()
    }
}

/// The runner's bookkeeping for one enrolment. The store keeps it as it
/// is given and never looks inside.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EnrolmentData {
    /// When the wait the contact rests at began (event waits count their
    /// timeout from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_started: Option<Timestamp>,
    /// A rescue fired; it fires once per enrolment.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rescued: bool,
    /// Left for this journey (`handoff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
    /// The journey handed to has taken the contact in (or could not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub handoff_taken: bool,
}

/// A contact's place in one journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolment {
    /// 0 until inserted.
    pub id: i64,
    pub contact_id: String,
    pub journey: String,
    /// The content hash of the journey version it entered.
    pub version: String,
    pub state: EnrolmentState,
    /// The node it rests at (a wait), or where it ended.
    pub step: StepId,
    /// The print of that node when the contact came to rest there.
    pub step_print: String,
    /// When the wait it rests at is due.
    pub due_at: Option<Timestamp>,
    pub entered_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// The event `event.x` reads in templates: the one that enrolled the
    /// contact, or the one a wait received.
    pub event_id: Option<String>,
    pub data: EnrolmentData,
}

/// One recorded move, for `journeyc why`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub enrolment_id: i64,
    pub contact_id: String,
    pub journey: String,
    pub from_step: Option<StepId>,
    pub to_step: Option<StepId>,
    pub reason: String,
    pub at: Timestamp,
}

/// The arm an A/B split gave an enrolment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub enrolment_id: i64,
    pub test: String,
    /// The variant's name, or `holdout`.
    pub arm: String,
    pub at: Timestamp,
}

/// A message to send, written in the same transaction as the move that
/// produced it. One row per key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub key: OutboxKey,
    pub contact_id: String,
    pub journey: String,
    pub channel: Channel,
    pub template: String,
    pub kind: MessageKind,
    /// When it is to go out, by the journey's timing, quiet hours and caps.
    pub send_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub status: OutboxStatus,
    /// The `now` of the run that wrote it.
    pub planned_at: Timestamp,
    /// Why it is not sent, or was held back.
    pub note: Option<String>,
}

impl OutboxRow {
    pub fn enrolment_id(&self) -> i64 {
        self.key.enrolment
    }

    pub fn step(&self) -> &StepId {
        &self.key.step
    }
}

/// A send as the store reports it for caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub journey: String,
    pub at: Timestamp,
}

/// What a run does to a contact's fields: applied to the fields as they
/// are when the batch writes them, so an import that committed meanwhile
/// keeps its own changes. Shared, so a batch that writes later can keep it.
pub type ContactEdit = std::sync::Arc<dyn Fn(&mut Map<String, Json>) + Send + Sync>;

/// What a run reads of a page of contacts, read at once ([`Store::read_ahead`]).
#[derive(Debug, Default)]
pub struct Ahead {
    /// `through_seq` of the events.
    pub through_seq: i64,
    /// Per contact, in time order.
    pub events: HashMap<String, Vec<Event>>,
    /// Per contact, the latest enrolment in each journey, by id.
    pub enrolments: HashMap<String, Vec<Enrolment>>,
    pub outbox: HashMap<String, Held>,
}

impl Ahead {
    /// An empty entry for each contact, so one with nothing stored is
    /// known to have nothing.
    pub fn new(contacts: &[&str], through_seq: i64) -> Ahead {
        let mut ahead = Ahead {
            through_seq,
            ..Ahead::default()
        };
        for id in contacts {
            ahead.events.insert((*id).to_string(), Vec::new());
            ahead.enrolments.insert((*id).to_string(), Vec::new());
            ahead.outbox.insert((*id).to_string(), Held::default());
        }
        ahead
    }

    /// Adds a stored outbox row of a contact, in the order of `send_at`,
    /// then id.
    pub fn hold(&mut self, contact_id: &str, key: String, sent: Option<(Channel, String, i64)>) {
        if let Some(held) = self.outbox.get_mut(contact_id) {
            held.keys.insert(key);
            held.marketing.extend(sent);
        }
    }
}

/// What one contact's outbox holds, as a run sees it.
#[derive(Debug, Default)]
pub struct Held {
    pub keys: HashSet<String>,
    /// Marketing rows that are or will be sent (`pending`, `sending`,
    /// `sent`): channel, journey, `send_at`, in the outbox's order (by
    /// `send_at`, then id).
    pub marketing: Vec<(Channel, String, i64)>,
}

impl Held {
    /// Records a row the run queued; `false` when its key is already
    /// there.
    pub fn queue(&mut self, row: &OutboxRow) -> bool {
        if !self.keys.insert(row.key.to_string()) {
            return false;
        }
        if row.kind == MessageKind::Marketing
            && matches!(
                row.status,
                OutboxStatus::Pending | OutboxStatus::Sending | OutboxStatus::Sent
            )
        {
            // Stored rows come by `send_at`, then id; the run's rows get
            // higher ids than any stored one.
            let at = row.send_at.seconds();
            let place = self
                .marketing
                .partition_point(|(_, _, send_at)| *send_at <= at);
            self.marketing
                .insert(place, (row.channel, row.journey.clone(), at));
        }
        true
    }

    /// The marketing sends on a channel from `from` on, in order.
    pub fn scheduled(&self, channel: Channel, from: Timestamp) -> Vec<Scheduled> {
        self.marketing
            .iter()
            .filter(|(sent_on, _, at)| *sent_on == channel && *at >= from.seconds())
            .map(|(_, journey, at)| Scheduled {
                journey: journey.clone(),
                at: Timestamp::from_seconds(*at),
            })
            .collect()
    }
}

/// The writes and reads of one batch of contacts in a run, all in one
/// transaction.
pub trait RunBatch {
    /// The contacts the batch is about to visit, in order, all of the
    /// store's partition `part`: a store across a network reads their
    /// events (those that had arrived by `through_seq`) and latest
    /// enrolments at once. The default does nothing.
    fn prefetch(
        &mut self,
        part: u32,
        contacts: &[&str],
        through_seq: i64,
    ) -> Result<(), StoreError> {
        let _ = (part, contacts, through_seq);
        Ok(())
    }
    /// A contact's events that had arrived by `through_seq`, in time order.
    fn events_of(&mut self, contact_id: &str, through_seq: i64) -> Result<Vec<Event>, StoreError>;
    /// The contact's latest enrolment in each journey.
    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError>;
    /// Inserts, and returns the id that the batch's rows (outbox keys,
    /// transitions, assignments, updates) refer to the enrolment by. A
    /// store may write the enrolment when the batch ends and give it its
    /// stored id then, rewriting those rows to match: the id is the
    /// batch's, not to be kept past it.
    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError>;
    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError>;
    fn record(&mut self, transition: &Transition) -> Result<(), StoreError>;
    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError>;
    /// Queues a message; `false` when its key is already in the outbox.
    fn queue(&mut self, row: &OutboxRow) -> Result<bool, StoreError>;
    /// The contact's marketing messages on a channel that are or will be
    /// sent (`pending`, `sending`, `sent`) with `send_at >= from`, in order.
    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: Channel,
        from: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError>;
    /// Whether the address was on the channel's suppression list at `at`.
    fn suppressed(
        &mut self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Reads the contact as it is now, inside this transaction, and stores
    /// what `edit` makes of its fields: a run writes back only the changes
    /// it made, so an import that committed meanwhile keeps its own.
    fn update_contact(&mut self, contact_id: &str, edit: ContactEdit) -> Result<(), StoreError>;
    /// Records when something is next due for the contact if nothing new
    /// arrives (none: nothing ever is).
    fn set_wake(&mut self, contact_id: &str, wake: Option<Timestamp>) -> Result<(), StoreError>;
    /// Records, with the batch, how far a worker got in a partition of a
    /// night and what it did there; `done` when the partition is finished.
    fn part_progress(
        &mut self,
        night: i64,
        part: u32,
        after: Option<&str>,
        counts: &str,
        done: bool,
    ) -> Result<(), StoreError>;
}

/// How far a journey has been run: everything up to `until` is done, and
/// so is every event that had arrived by `seen_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub journey: String,
    /// The first run that knew the journey.
    pub deployed_at: Timestamp,
    pub until: Timestamp,
    pub seen_seq: i64,
}

/// Active enrolments resting at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Resting {
    pub journey: String,
    pub step: StepId,
    pub print: String,
    pub count: u64,
}

/// Contacts and conversions of one arm of one A/B split.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ArmStatus {
    pub test: String,
    pub arm: String,
    pub entered: u64,
    pub converted: u64,
    /// Still in the journey (a holdout until its goal window closes).
    pub active: u64,
}

/// Counts for `journeyc status`, per journey and step.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JourneyStatus {
    pub journey: String,
    pub active: u64,
    /// Active enrolments resting at each step.
    pub waiting: Vec<(String, u64)>,
    /// Active enrolments whose wait is due at the instant asked about.
    pub due: u64,
    pub converted: u64,
    pub completed: u64,
    pub exited: u64,
    pub handed_off: u64,
    /// Per A/B arm, the holdout included.
    pub arms: Vec<ArmStatus>,
}

/// A finished run, as the run log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub now: Timestamp,
    pub started_at: Timestamp,
    pub summary: String,
}

/// Which contacts a night visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Every contact: the first night, the night after anything in the
    /// project changed, a run of some journeys only, or when asked.
    Everyone,
    /// Contacts with something due by the night's `now` (their wake), and
    /// those an import touched after this mark.
    Due { touched_after: i64 },
}

/// What a whole night leaves for the next one: the import mark it saw,
/// and the project it ran (a hash of every source). The next night visits
/// only what is due if its project is the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub mark: i64,
    pub fingerprint: String,
}

/// A run as the store keeps it while its partitions are worked on: what
/// every worker of it must agree on.
#[derive(Debug, Clone, PartialEq)]
pub struct Night {
    /// 0 until the store gives it one.
    pub id: i64,
    pub now: Timestamp,
    /// Events that arrived after the night opened (`seq` above this) wait
    /// for the next one.
    pub run_seq: i64,
    /// The import mark when the night opened.
    pub mark: i64,
    pub visit: Visit,
    pub fingerprint: String,
    pub started_at: Timestamp,
}

/// How a run takes a night.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// `journeyc run --worker`: join the open night, whatever its `now`,
    /// or open this one.
    Worker,
    /// `journeyc run`, alone on the store: go on with the open night if it
    /// is this one (same `now`, same project) after a crash; otherwise
    /// give it up (what it wrote stands, the engine redoes nothing twice)
    /// and open this one.
    Alone,
}

/// A partition of a night that a worker holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub index: u32,
    /// The last contact done in it, when an earlier worker got that far.
    pub after: Option<String>,
    /// What was done in it so far, as the runner wrote it.
    pub counts: String,
}

pub trait Store {
    /// Runs `work` in one transaction, committed only if it returns `Ok`.
    fn import(
        &mut self,
        work: &mut dyn FnMut(&mut dyn ImportSink) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    fn contact(&self, id: &str) -> Result<Option<Contact>, StoreError>;
    fn contact_count(&self) -> Result<u64, StoreError>;
    /// A contact's events in time order.
    fn events_of(&self, contact_id: &str) -> Result<Vec<Event>, StoreError>;
    /// The `seq` of the latest event to arrive (0 for none).
    fn last_event_seq(&self) -> Result<i64, StoreError>;
    /// Contacts in id order, `limit` at a time, after `after`.
    fn contacts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Contact>, StoreError>;
    /// Runs `work` in one write transaction; commits when it succeeds and
    /// `commit` is true, rolls back otherwise (`--dry-run`).
    fn batch(
        &mut self,
        commit: bool,
        work: &mut dyn FnMut(&mut dyn RunBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Active enrolments per (journey, step, print).
    fn resting(&self) -> Result<Vec<Resting>, StoreError>;
    fn record_versions(
        &mut self,
        versions: &[(String, String)],
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Every journey's progress.
    fn progress(&self) -> Result<Vec<Progress>, StoreError>;
    /// Records progress, in one transaction.
    fn save_progress(&mut self, progress: &[Progress]) -> Result<(), StoreError>;
    fn status(&self, now: Timestamp) -> Result<Vec<JourneyStatus>, StoreError>;
    /// Outbox rows per status.
    fn outbox_counts(&self) -> Result<Vec<(OutboxStatus, u64)>, StoreError>;
    /// A contact's transitions, optionally in one journey, in order.
    fn transitions_of(
        &self,
        contact_id: &str,
        journey: Option<&str>,
    ) -> Result<Vec<Transition>, StoreError>;
    fn outbox_of(&self, contact_id: &str) -> Result<Vec<OutboxRow>, StoreError>;
    /// Every enrolment of a contact, in the order they were made.
    fn enrolments_of(&self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError>;
    /// Logs a finished run.
    fn record_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// The highest mark an import has given a contact (0 for none). An
    /// import gives every contact it writes, and every contact it adds
    /// an event for, the next mark.
    fn touch_mark(&self) -> Result<i64, StoreError>;
    /// What the last whole night left (none before the first one, or
    /// after a run of some journeys only).
    fn sweep(&self) -> Result<Option<Sweep>, StoreError>;
    /// How many partitions a night is split in: every contact belongs to
    /// exactly one.
    fn partitions(&self) -> u32;
    /// Ids of the contacts in partition `part` that a night at `now` must
    /// visit (wake at or before `now`, or touched after `touched_after`),
    /// after `after`, in id order.
    fn due_ids(
        &self,
        part: u32,
        now: Timestamp,
        touched_after: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
    /// Contacts of partition `part` in id order, `limit` at a time, after
    /// `after`.
    fn part_page(
        &self,
        part: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Contact>, StoreError>;
    /// These contacts (ids in order), in id order; missing ones are left
    /// out.
    fn contacts_in(&self, ids: &[String]) -> Result<Vec<Contact>, StoreError>;
    /// What a run reads of these contacts, read at once: their events
    /// that had arrived by `through_seq`, their latest enrolment in each
    /// journey and what their outbox holds.
    fn read_ahead(&self, contacts: &[&str], through_seq: i64) -> Result<Ahead, StoreError>;
    /// Opens a night, or joins the open one, as `join` says, in one
    /// transaction that no other opener shares; returns the night that is
    /// open now.
    fn begin_night(&mut self, proposed: &Night, join: Join) -> Result<Night, StoreError>;
    /// Takes a partition of the night that is not done and that no other
    /// worker holds. When every such partition is held, waits for one to
    /// be let go (its worker finished it, or died) if `wait`. `None` once
    /// every partition is done.
    fn claim_part(&mut self, night: &Night, wait: bool) -> Result<Option<Part>, StoreError>;
    /// Lets go of a claimed partition.
    fn release_part(&mut self, part: u32) -> Result<(), StoreError>;
    /// Closes the night if every partition is done and no one closed it
    /// yet: saves `progress`, sets or clears the sweep, and logs the run
    /// that `record` makes of the partitions' counts, in one transaction.
    /// Returns whether this call closed it: exactly one does.
    fn close_night(
        &mut self,
        night: &Night,
        progress: &[Progress],
        sweep: Option<&Sweep>,
        record: &mut dyn FnMut(&[String]) -> RunRecord,
    ) -> Result<bool, StoreError>;
    /// The counts each partition of a night wrote.
    fn night_counts(&self, night: i64) -> Result<Vec<String>, StoreError>;

    /// Hands every table of [`copy::TABLES`] to `each`, in that order,
    /// with all its rows, read from one snapshot of the store.
    fn dump(&self, each: copy::Dumped<'_>) -> Result<(), StoreError>;
    /// Fills this store, which must hold nothing, with everything `from`
    /// holds, ids included, in one transaction; counters go on after the
    /// copied ids.
    fn restore(&mut self, from: &dyn Store) -> Result<copy::Copied, StoreError>;
}

/// An outbox row a `deliver` claimed: it is `sending`, and no other
/// `deliver` takes it until it is settled or its claim goes stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub row: OutboxRow,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// When this row is next due (its `send_at` until a retry or a hold
    /// moves it).
    pub attempt_at: Timestamp,
    /// The event `event.x` reads, if there is one.
    pub event_id: Option<String>,
    /// What an earlier attempt already handed over (a task mailed before
    /// its webhook failed), so that a retry does not repeat it.
    pub progress: Option<String>,
}

/// How an attempt ended, as the outbox records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Accepted by the server or provider, with its id for the message.
    Sent { provider_id: Option<String> },
    /// A temporary failure: tried again from `at`; `progress` is what of
    /// the message was already handed over.
    Retry {
        at: Timestamp,
        error: String,
        progress: Option<String>,
    },
    /// A permanent failure, or the last attempt failed; a hard bounce also
    /// suppresses the address.
    Failed {
        error: String,
        suppression: Option<Suppression>,
    },
    /// Not sent: the address was suppressed after the row was planned.
    Suppressed { error: String },
    /// Not sent: past its `expires after`, or later than the lateness
    /// allows.
    Expired { note: String },
    /// Not sent yet, and not an attempt: quiet hours, a send window or a
    /// cap hold it until `until`.
    Held { until: Timestamp, note: String },
    /// Not sent: over a cap with `over_cap: skip`, or no address any more.
    Skipped { note: String },
}

/// What delivery recorded about an outbox row.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Delivered {
    pub attempts: u32,
    pub sent_at: Option<Timestamp>,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub note: Option<String>,
}

/// The outbox as `journeyc deliver` and `journeyc tasks` use it.
pub trait Outbox {
    /// Claims, in one write transaction, up to `limit` rows of `channels`
    /// that are due at `now` (`pending` with `attempt_at <= now`) or whose
    /// claim was made before `stale_before` by a `deliver` that never
    /// settled it.
    fn claim(
        &mut self,
        claimer: &str,
        now: Timestamp,
        stale_before: Timestamp,
        channels: &[Channel],
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records outcomes of rows `claimer` holds, in one transaction.
    /// Returns how many were still held (a stale claim may have been taken
    /// over meanwhile).
    fn settle(
        &mut self,
        claimer: &str,
        now: Timestamp,
        outcomes: &[(i64, Settle)],
    ) -> Result<usize, StoreError>;
    /// Whether the address was on the channel's suppression list at `at`.
    fn is_suppressed(
        &self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The whole suppression list, by channel and address.
    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError>;
    /// When the contact's marketing messages on a channel actually went
    /// out, from `since` on, in order.
    fn sent_since(
        &self,
        contact_id: &str,
        channel: Channel,
        since: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError>;
    /// Rows per channel that `claim` would take: due at `now`, or claimed
    /// before `stale_before` and never settled.
    fn due_by_channel(
        &self,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> Result<Vec<(Channel, u64)>, StoreError>;
    /// Task rows with `from <= send_at <= to`, in order.
    fn tasks(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(OutboxRow, Delivered)>, StoreError>;
    fn delivered(&self, key: &OutboxKey) -> Result<Option<Delivered>, StoreError>;
}

/// Where the project's store lives: `store:` in the settings (a path, or
/// `sqlite:PATH`), default `journeyc.db` beside `journeyc.yaml`.
pub fn location(settings: &Settings) -> PathBuf {
    file_of(name(settings), &settings.root)
}

/// `store:` in the settings, or the default `journeyc.db`.
fn name(settings: &Settings) -> &str {
    settings.store.as_deref().unwrap_or("journeyc.db")
}

/// The SQLite file a store name (a path, or `sqlite:PATH`) names, a
/// relative path read from `root`.
fn file_of(store: &str, root: &Path) -> PathBuf {
    let path = Path::new(store.strip_prefix("sqlite:").unwrap_or(store));
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// Enrolments of one journey in one state at one step: how many, and how
/// many of them are due.
pub struct StepCount {
    pub journey: String,
    pub state: EnrolmentState,
    pub step: String,
    pub due: u64,
    pub count: u64,
}

/// `journeyc status` per journey, from the enrolments counted per
/// (journey, state, step) and the A/B arms per journey: the same sums for
/// every backend, whatever its queries.
pub(crate) fn journey_status(
    steps: impl IntoIterator<Item = StepCount>,
    arms: impl IntoIterator<Item = (String, ArmStatus)>,
) -> Vec<JourneyStatus> {
    let mut by_journey: std::collections::BTreeMap<String, JourneyStatus> =
        std::collections::BTreeMap::new();
    for step in steps {
        let entry = by_journey
            .entry(step.journey.clone())
            .or_insert_with(|| JourneyStatus {
                journey: step.journey,
                ..JourneyStatus::default()
            });
        match step.state {
            EnrolmentState::Active => {
                entry.active += step.count;
                entry.due += step.due;
                entry.waiting.push((step.step, step.count));
            }
            EnrolmentState::Converted => entry.converted += step.count,
            EnrolmentState::Completed => entry.completed += step.count,
            EnrolmentState::Exited => entry.exited += step.count,
            EnrolmentState::HandedOff => entry.handed_off += step.count,
        }
    }
    for (journey, arm) in arms {
        if let Some(entry) = by_journey.get_mut(&journey) {
            entry.arms.push(arm);
        }
    }
    by_journey.into_values().collect()
}

/// The store every command works on: the records ([`Store`]), the outbox
/// ([`Outbox`]) and the run lock. `journeyc.yaml`'s `store:` says which
/// backend holds it; the commands see only this trait.
pub trait Backend: Store + Outbox + Send {
    /// Takes the store's run lock: runs on one store never overlap. The
    /// lock is held until the guard is dropped, or the process dies.
    fn lock_run(&self) -> Result<RunGuard, StoreError>;
    /// Takes the run lock for `journeyc run --worker`: shared with other
    /// workers of the night, never with a run alone. A store that one
    /// process works at a time gives the run lock itself.
    fn lock_worker(&self) -> Result<RunGuard, StoreError>;
    /// Another connection to the same store, for a worker thread.
    fn reopen(&self) -> Result<Box<dyn Backend>, StoreError>;
    /// Where the store is, for messages (a path; never a credential).
    fn describe(&self) -> String;
}

/// A held run lock; dropping it releases the lock.
pub struct RunGuard {
    _held: Box<dyn Send>,
}

impl RunGuard {
    pub fn new(held: impl Send + 'static) -> RunGuard {
        RunGuard {
            _held: Box::new(held),
        }
    }
}

/// Whether the project's store exists yet (the commands that only read or
/// send refuse to create an empty one). A PostgreSQL store is its
/// database, which exists before journeyc first connects.
pub fn exists(settings: &Settings) -> bool {
    named_exists(name(settings), &settings.root)
}

/// The environment variable a PostgreSQL store's password is read from,
/// so that `journeyc.yaml` need not hold it.
pub const PASSWORD_VARIABLE: &str = "JOURNEYC_STORE_PASSWORD";

/// Opens the project's store, creating and migrating it as needed.
pub fn open(settings: &Settings) -> Result<Box<dyn Backend>, StoreError> {
    open_named(name(settings), &settings.root, PASSWORD_VARIABLE)
}

/// Opens a store named as `store:` names one (a SQLite path read from
/// `root`, `sqlite:PATH`, or `postgres://USER@HOST/DB` with the password
/// in the environment variable `password_variable`), creating and
/// migrating it as needed.
pub fn open_named(
    store: &str,
    root: &Path,
    password_variable: &str,
) -> Result<Box<dyn Backend>, StoreError> {
    if is_postgres(store) {
        let password = std::env::var(password_variable)
            .ok()
            .filter(|password| !password.is_empty());
        return Ok(Box::new(postgres::PostgresStore::connect(
            store,
            password.as_deref(),
        )?));
    }
    if store.contains("://") {
        return Err(StoreError::Unsupported {
            url: store.to_string(),
        });
    }
    Ok(Box::new(sqlite::SqliteStore::open(&file_of(store, root))?))
}

/// Whether a store named so exists: a SQLite file that is there, or any
/// PostgreSQL database (which exists before journeyc first connects).
pub fn named_exists(store: &str, root: &Path) -> bool {
    is_postgres(store) || file_of(store, root).exists()
}

fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// An empty store in memory: what `run --dry-run` works on without a
/// store, and simulations' throwaway stores.
pub fn in_memory() -> Result<Box<dyn Backend>, StoreError> {
    Ok(Box::new(sqlite::SqliteStore::in_memory()?))
}
