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
