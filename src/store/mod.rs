//! The store: contacts, events, the suppression list, enrolments,
//! transitions, the outbox, deployed journey versions and the run log.
//! SQLite (`sqlite.rs`) is the default; the runner and the importer see
//! only the [`Store`] trait, so a PostgreSQL store can follow.

pub mod sqlite;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::settings::Settings;

/// A contact as stored: its id and every field it has (schema fields and
/// the built-ins `email`, `phone`, `timezone`, `stage`, `tags`,
/// `created_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub fields: Map<String, Json>,
}

/// An event as stored; `at` is RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub contact_id: String,
    pub name: String,
    pub at: String,
    pub properties: Map<String, Json>,
}

#[derive(Debug)]
pub enum StoreError {
    Open {
        path: PathBuf,
        reason: String,
    },
    /// The database was written by a newer journeyc.
    TooNew {
        path: PathBuf,
        version: i64,
        supported: i64,
    },
    Database(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, reason } => write!(f, "cannot open the store `{}`: {reason}", path.display()),
            StoreError::TooNew { path, version, supported } => write!(
                f,
                "the store `{}` has schema version {version}, but this journeyc knows up to {supported}; upgrade journeyc",
                path.display()
            ),
            StoreError::Database(reason) => write!(f, "store error: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Writes of one import, all in one transaction: the import is applied
/// whole or not at all.
pub trait ImportSink {
    fn contact(&mut self, id: &str) -> Result<Option<Contact>, StoreError>;
    /// Inserts or replaces; returns whether the contact is new.
    fn put_contact(&mut self, contact: &Contact) -> Result<bool, StoreError>;
    /// Inserts an event; returns `false` when its id is already stored.
    fn put_event(&mut self, event: &Event) -> Result<bool, StoreError>;
    /// Puts an address (normalized, see [`normalize_address`]) on the
    /// suppression list of a channel; returns `false` when it is already
    /// there.
    fn suppress(&mut self, suppression: &Suppression) -> Result<bool, StoreError>;
}

/// An address no marketing message goes to on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub address: String,
    pub channel: String,
    /// `unsubscribed`, `bounced`, `complained`, with the provider's reason
    /// after a colon when there is one.
    pub reason: String,
    /// RFC 3339 in UTC.
    pub at: String,
}

/// The form an address is compared in: email addresses trimmed and in
/// lower case; phone numbers as their digits with a leading `+` kept, so
/// `+86 138-0013-8000` and `+8613800138000` are one number.
pub fn normalize_address(channel: &str, address: &str) -> String {
    let address = address.trim();
    if channel == "sms" {
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

/// A contact's place in one journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolment {
    /// 0 until inserted.
    pub id: i64,
    pub contact_id: String,
    pub journey: String,
    /// The content hash of the journey version it entered.
    pub version: String,
    /// `active`, `completed`, `converted`, `exited`, `holdout`, `handed_off`.
    pub state: String,
    /// The node it rests at (a wait), or where it ended.
    pub step: String,
    /// When the wait it rests at is due (RFC 3339 UTC).
    pub due_at: Option<String>,
    pub entered_at: String,
    pub ended_at: Option<String>,
    /// Runner bookkeeping: what triggered it, when its wait began, whether
    /// it was rescued.
    pub data: Map<String, Json>,
}

/// One recorded move, for `journeyc why`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub enrolment_id: i64,
    pub contact_id: String,
    pub journey: String,
    pub from_step: Option<String>,
    pub to_step: Option<String>,
    pub reason: String,
    pub at: String,
}

/// A message to send, written in the same transaction as the move that
/// produced it. `key` is unique per (enrolment, step, repetition).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub key: String,
    pub enrolment_id: i64,
    pub contact_id: String,
    pub journey: String,
    pub step: String,
    pub channel: String,
    pub template: String,
    /// `marketing` or `transactional`.
    pub kind: String,
    pub send_at: String,
    pub expires_at: Option<String>,
    /// `pending`, or why it will not be sent: `skipped` (over a cap),
    /// `suppressed`, `expired`.
    pub status: String,
}

/// The writes and reads of one batch of contacts in a run, all in one
/// transaction.
pub trait RunBatch {
    fn events_of(&mut self, contact_id: &str) -> Result<Vec<Event>, StoreError>;
    /// The contact's latest enrolment in each journey.
    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError>;
    /// Inserts and returns the new id.
    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError>;
    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError>;
    fn record(&mut self, transition: &Transition) -> Result<(), StoreError>;
    /// Queues a message; `false` when its key is already in the outbox.
    fn queue(&mut self, row: &OutboxRow) -> Result<bool, StoreError>;
    /// `send_at` of the contact's pending or sent marketing messages on a
    /// channel with `from <= send_at < to`, in order.
    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// Whether the address was on the channel's suppression list at `at`
    /// (RFC 3339): a simulated night does not see a later unsubscribe.
    fn suppressed(&mut self, address: &str, channel: &str, at: &str) -> Result<bool, StoreError>;
    fn save_contact(&mut self, contact: &Contact) -> Result<(), StoreError>;
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
    pub holdout: u64,
    pub handed_off: u64,
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
    /// Contacts in id order, `limit` at a time, after `after`.
    fn contacts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Contact>, StoreError>;
    /// Runs `work` in one transaction; commits when it succeeds and
    /// `commit` is true, rolls back otherwise (`--dry-run`).
    fn batch(
        &mut self,
        commit: bool,
        work: &mut dyn FnMut(&mut dyn RunBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Active enrolments per (journey, step).
    fn resting(&self) -> Result<Vec<(String, String, u64)>, StoreError>;
    fn record_versions(
        &mut self,
        versions: &[(String, String)],
        at: &str,
    ) -> Result<(), StoreError>;
    fn status(&self, now: &str) -> Result<Vec<JourneyStatus>, StoreError>;
    /// Outbox rows per status.
    fn outbox_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// A contact's transitions, optionally in one journey, in order.
    fn transitions_of(
        &self,
        contact_id: &str,
        journey: Option<&str>,
    ) -> Result<Vec<Transition>, StoreError>;
    fn outbox_of(&self, contact_id: &str) -> Result<Vec<OutboxRow>, StoreError>;
    /// The `now` of the latest finished run before `now`.
    fn last_run_before(&self, now: &str) -> Result<Option<String>, StoreError>;
    /// Logs a finished run.
    fn record_run(&mut self, now: &str, started_at: &str, summary: &str) -> Result<(), StoreError>;
}

/// An outbox row a `deliver` claimed: it is `sending`, and no other
/// `deliver` takes it until it is settled or its claim goes stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub row: OutboxRow,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The id of the event that enrolled the contact, if one did.
    pub trigger_event: Option<String>,
    /// What an earlier attempt already handed over (a task mailed before
    /// its webhook failed), so that a retry does not repeat it.
    pub progress: Option<String>,
}

/// How an attempt ended, as the outbox records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Accepted by the server or provider, with its id for the message.
    Sent { provider_id: Option<String> },
    /// A temporary failure: tried again from `at` (RFC 3339); `progress`
    /// is what of the message was already handed over.
    Retry {
        at: String,
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
    /// Not sent: it was due before `expires_at` and is now too late.
    Expired,
}

/// What delivery recorded about an outbox row.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Delivered {
    pub attempts: u32,
    pub sent_at: Option<String>,
    pub provider_id: Option<String>,
    pub error: Option<String>,
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
        now: &str,
        stale_before: &str,
        channels: &[&str],
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records outcomes of rows `claimer` holds, in one transaction.
    /// Returns how many were still held (a stale claim may have been taken
    /// over meanwhile).
    fn settle(
        &mut self,
        claimer: &str,
        now: &str,
        outcomes: &[(i64, Settle)],
    ) -> Result<usize, StoreError>;
    /// Whether the address was on the channel's suppression list at `at`.
    fn is_suppressed(&self, address: &str, channel: &str, at: &str) -> Result<bool, StoreError>;
    /// Rows per channel that `claim` would take: due at `now`, or claimed
    /// before `stale_before` and never settled.
    fn due_by_channel(
        &self,
        now: &str,
        stale_before: &str,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// Task rows with `from <= send_at <= to`, in order.
    fn tasks(&self, from: &str, to: &str) -> Result<Vec<(OutboxRow, Delivered)>, StoreError>;
    fn delivered(&self, key: &str) -> Result<Option<Delivered>, StoreError>;
}

/// Where the project's store lives: `store:` in the settings (a path, or
/// `sqlite:PATH`), default `journeyc.db` beside `journeyc.yaml`.
pub fn location(settings: &Settings) -> PathBuf {
    let configured = settings.store.as_deref().unwrap_or("journeyc.db");
    let path = configured.strip_prefix("sqlite:").unwrap_or(configured);
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        settings.root.join(path)
    }
}

/// Opens the project's store, creating and migrating it as needed.
pub fn open(settings: &Settings) -> Result<sqlite::SqliteStore, StoreError> {
    if let Some(other) = settings.store.as_deref().filter(|url| url.contains("://")) {
        return Err(StoreError::Open {
            path: PathBuf::from(other),
            reason: "only SQLite stores (a file path or `sqlite:PATH`) are supported so far"
                .to_string(),
        });
    }
    sqlite::SqliteStore::open(&location(settings))
}
