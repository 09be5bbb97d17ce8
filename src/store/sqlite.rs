//! The embedded SQLite store: one file, WAL mode, schema migrations
//! versioned in code (`PRAGMA user_version`). Times are INTEGER seconds
//! since 1970, so every comparison in SQL is a comparison of instants.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value as Json};

use super::{
    copy, Ahead, ArmStatus, Assignment, Cause, Claimed, Contact, ContactEdit, Delivered, Enrolment,
    EnrolmentData, Event, ImportSink, Join, JourneyStatus, Night, Outbox, OutboxRow, Part,
    Progress, Resting, RunBatch, RunRecord, Scheduled, Settle, Store, StoreError, Suppression,
    Sweep, Transition, Visit,
};
use crate::model::{Channel, EnrolmentState, OutboxKey, OutboxStatus, StepId, Timestamp};
use crate::templates::MessageKind;

/// Each entry moves the schema one version up; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: contacts, events, suppressions, enrolments, transitions, outbox,
    // deployed journey versions, the run log.
    "
    CREATE TABLE contacts (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        contact_id TEXT NOT NULL,
        name TEXT NOT NULL,
        at TEXT NOT NULL,
        properties TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX events_by_contact ON events (contact_id, at);
    CREATE TABLE suppressions (
        address TEXT NOT NULL,
        channel TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (address, channel)
    ) WITHOUT ROWID;
    CREATE TABLE enrolments (
        id INTEGER PRIMARY KEY,
        contact_id TEXT NOT NULL,
        journey TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        step TEXT NOT NULL,
        due_at TEXT,
        entered_at TEXT NOT NULL,
        ended_at TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX enrolments_by_contact ON enrolments (contact_id, journey);
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        enrolment_id INTEGER NOT NULL,
        contact_id TEXT NOT NULL,
        journey TEXT NOT NULL,
        from_step TEXT,
        to_step TEXT,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX transitions_by_contact ON transitions (contact_id, journey, id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        enrolment_id INTEGER NOT NULL,
        contact_id TEXT NOT NULL,
        journey TEXT NOT NULL,
        step TEXT NOT NULL,
        channel TEXT NOT NULL,
        template TEXT NOT NULL,
        kind TEXT NOT NULL,
        send_at TEXT NOT NULL,
        expires_at TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, send_at);
    CREATE TABLE journey_versions (
        journey TEXT NOT NULL,
        version TEXT NOT NULL,
        deployed_at TEXT NOT NULL,
        PRIMARY KEY (journey, version)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        now TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        summary TEXT
    );
    ",
    // 2: the cap check reads a contact's sends on a channel; without this
    // index every message scanned the whole outbox.
    "CREATE INDEX outbox_by_contact ON outbox (contact_id, channel, send_at);",
    // 3: delivery. A row is claimed (`sending`, by whom, when) before it is
    // sent and settled after; `attempt_at` is when it is next tried (its
    // `send_at` until a temporary failure pushes it back).
    "ALTER TABLE outbox ADD COLUMN attempt_at TEXT;
     UPDATE outbox SET attempt_at = send_at;
     ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
     ALTER TABLE outbox ADD COLUMN claimed_at TEXT;
     ALTER TABLE outbox ADD COLUMN sent_at TEXT;
     ALTER TABLE outbox ADD COLUMN provider_id TEXT;
     ALTER TABLE outbox ADD COLUMN error TEXT;
     DROP INDEX outbox_due;
     CREATE INDEX outbox_ready ON outbox (status, attempt_at);",
    // 4: times as INTEGER seconds (text compared as text put year 10000
    // before 2026); the order events arrived in (`seq`); each journey's
    // progress, so a partial run keeps the others' place; the arm of every
    // A/B assignment; the print of the step an enrolment rests at and the
    // event templates read, as columns of their own; when each outbox row
    // was planned and why it was held or not sent. Holdout enrolments end
    // as completed: the arm says they were the control group.
    "
    CREATE TABLE contacts_v4 (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO contacts_v4 SELECT id, data, COALESCE(unixepoch(updated_at), 0) FROM contacts;
    DROP TABLE contacts;
    ALTER TABLE contacts_v4 RENAME TO contacts;

    CREATE TABLE events_v4 (
        id TEXT PRIMARY KEY,
        contact_id TEXT NOT NULL,
        name TEXT NOT NULL,
        at INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        properties TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO events_v4
        SELECT id, contact_id, name, COALESCE(unixepoch(at), 0), ROW_NUMBER() OVER (ORDER BY at, id), properties
        FROM events;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE INDEX events_by_contact ON events (contact_id, at);
    CREATE INDEX events_by_seq ON events (seq);

    CREATE TABLE suppressions_v4 (
        address TEXT NOT NULL,
        channel TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (address, channel)
    ) WITHOUT ROWID;
    INSERT INTO suppressions_v4 SELECT address, channel, reason, COALESCE(unixepoch(at), 0) FROM suppressions;
    DROP TABLE suppressions;
    ALTER TABLE suppressions_v4 RENAME TO suppressions;

    CREATE TABLE enrolments_v4 (
        id INTEGER PRIMARY KEY,
        contact_id TEXT NOT NULL,
        journey TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        step TEXT NOT NULL,
        step_print TEXT NOT NULL DEFAULT '',
        due_at INTEGER,
        entered_at INTEGER NOT NULL,
        ended_at INTEGER,
        event_id TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    INSERT INTO enrolments_v4
        SELECT id, contact_id, journey, version,
               CASE state WHEN 'holdout' THEN 'completed' ELSE state END,
               step, '', unixepoch(due_at), COALESCE(unixepoch(entered_at), 0), unixepoch(ended_at),
               json_extract(data, '$.event'), json_remove(data, '$.event')
        FROM enrolments;
    DROP TABLE enrolments;
    ALTER TABLE enrolments_v4 RENAME TO enrolments;
    CREATE INDEX enrolments_by_contact ON enrolments (contact_id, journey);

    CREATE TABLE transitions_v4 (
        id INTEGER PRIMARY KEY,
        enrolment_id INTEGER NOT NULL,
        contact_id TEXT NOT NULL,
        journey TEXT NOT NULL,
        from_step TEXT,
        to_step TEXT,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    INSERT INTO transitions_v4
        SELECT id, enrolment_id, contact_id, journey, from_step, to_step, reason, COALESCE(unixepoch(at), 0)
        FROM transitions;
    DROP TABLE transitions;
    ALTER TABLE transitions_v4 RENAME TO transitions;
    CREATE INDEX transitions_by_contact ON transitions (contact_id, journey, id);

    CREATE TABLE outbox_v4 (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        enrolment_id INTEGER NOT NULL,
        contact_id TEXT NOT NULL,
        journey TEXT NOT NULL,
        step TEXT NOT NULL,
        channel TEXT NOT NULL,
        template TEXT NOT NULL,
        kind TEXT NOT NULL,
        send_at INTEGER NOT NULL,
        expires_at INTEGER,
        status TEXT NOT NULL,
        planned_at INTEGER NOT NULL,
        attempt_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT,
        claimed_at INTEGER,
        sent_at INTEGER,
        provider_id TEXT,
        error TEXT,
        note TEXT
    );
    INSERT INTO outbox_v4
        SELECT id, key, enrolment_id, contact_id, journey, step, channel, template, kind,
               COALESCE(unixepoch(send_at), 0), unixepoch(expires_at), status,
               COALESCE(unixepoch(created_at), unixepoch(send_at), 0),
               COALESCE(unixepoch(attempt_at), unixepoch(send_at), 0), attempts, claimed_by,
               unixepoch(claimed_at), unixepoch(sent_at), provider_id, error, NULL
        FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v4 RENAME TO outbox;
    CREATE INDEX outbox_ready ON outbox (status, attempt_at);
    CREATE INDEX outbox_by_contact ON outbox (contact_id, channel, send_at);

    CREATE TABLE journey_versions_v4 (
        journey TEXT NOT NULL,
        version TEXT NOT NULL,
        deployed_at INTEGER NOT NULL,
        PRIMARY KEY (journey, version)
    ) WITHOUT ROWID;
    INSERT INTO journey_versions_v4 SELECT journey, version, COALESCE(unixepoch(deployed_at), 0) FROM journey_versions;
    DROP TABLE journey_versions;
    ALTER TABLE journey_versions_v4 RENAME TO journey_versions;

    CREATE TABLE runs_v4 (
        id INTEGER PRIMARY KEY,
        now INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        summary TEXT
    );
    INSERT INTO runs_v4
        SELECT id, COALESCE(unixepoch(now), 0), COALESCE(unixepoch(started_at), 0), unixepoch(finished_at), summary
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v4 RENAME TO runs;

    CREATE TABLE journey_progress (
        journey TEXT PRIMARY KEY,
        deployed_at INTEGER NOT NULL,
        until INTEGER NOT NULL,
        seen_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO journey_progress
        SELECT journey, MIN(deployed_at),
               (SELECT MAX(now) FROM runs WHERE finished_at IS NOT NULL),
               (SELECT COALESCE(MAX(seq), 0) FROM events)
        FROM journey_versions
        WHERE (SELECT MAX(now) FROM runs WHERE finished_at IS NOT NULL) IS NOT NULL
        GROUP BY journey;

    CREATE TABLE assignments (
        enrolment_id INTEGER NOT NULL,
        test TEXT NOT NULL,
        arm TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (enrolment_id, test)
    ) WITHOUT ROWID;
    ",
    // 5: nights that cost what they do. Each contact keeps when something
    // is next due for it (`wake_at`) and the mark of the last import that
    // touched it; a night visits the contacts due or touched since the
    // last one. A night is split in partitions (one in SQLite), each
    // marked done in the transaction of its last batch.
    "
    ALTER TABLE contacts ADD COLUMN wake_at INTEGER;
    ALTER TABLE contacts ADD COLUMN touched INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX contacts_by_wake ON contacts (wake_at);
    CREATE INDEX contacts_by_touch ON contacts (touched);
    CREATE TABLE sweep (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        mark INTEGER NOT NULL,
        fingerprint TEXT NOT NULL
    );
    CREATE TABLE nights (
        id INTEGER PRIMARY KEY,
        now INTEGER NOT NULL,
        run_seq INTEGER NOT NULL,
        mark INTEGER NOT NULL,
        touched_after INTEGER,
        fingerprint TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        closed_at INTEGER,
        abandoned INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE night_parts (
        night INTEGER NOT NULL REFERENCES nights (id),
        part INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        after TEXT,
        counts TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (night, part)
    ) WITHOUT ROWID;
    ",
];

/// WAL with `synchronous = NORMAL`: a crash loses no committed
/// transaction's integrity, only possibly the last ones before a power cut.
/// The WAL is copied back into the database every 20,000 pages (about 80
/// MB) instead of SQLite's 1,000: a nightly run rewrites the same index
/// pages in transaction after transaction, and copying them back less often
/// took the first night over 1,000,000 contacts from 62 s to 53 s.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
    PRAGMA wal_autocheckpoint = 20000; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
}

/// A failure of SQLite, or a row whose column does not hold what it
/// should (the error names the column).
fn database(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::FromSqlConversionFailure(..) => StoreError::Corrupt(Box::new(error)),
        other => StoreError::Database(Box::new(other)),
    }
}

/// A column that does not parse as what it should hold, as a rusqlite
/// error so that row readers can use `?`.
fn column_error(
    index: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(error))
}

fn time(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(index).map(Timestamp::from_seconds)
}

fn optional_time(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<i64>>(index)
        .map(|seconds| seconds.map(Timestamp::from_seconds))
}

fn parsed<T: std::str::FromStr>(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    row.get::<_, String>(index)?
        .parse()
        .map_err(|error| column_error(index, error))
}

fn channel_of(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Channel> {
    let text: String = row.get(index)?;
    Channel::ALL
        .iter()
        .copied()
        .find(|channel| channel.as_str() == text)
        .ok_or_else(|| column_error(index, crate::model::UnknownState(text)))
}

fn kind_of(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<MessageKind> {
    match row.get::<_, String>(index)?.as_str() {
        "transactional" => Ok(MessageKind::Transactional),
        "marketing" => Ok(MessageKind::Marketing),
        other => Err(column_error(
            index,
            crate::model::UnknownState(other.to_string()),
        )),
    }
}

fn kind_text(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Marketing => "marketing",
        MessageKind::Transactional => "transactional",
    }
}

fn now_seconds() -> i64 {
    Timestamp::now().seconds()
}

impl super::Backend for SqliteStore {
    /// A lock file beside the database (`journeyc.lock`), locked by the
    /// operating system, which releases it when the process dies. A store
    /// in memory belongs to one process and needs none.
    fn lock_run(&self) -> Result<super::RunGuard, StoreError> {
        if self.path == Path::new(":memory:") {
            return Ok(super::RunGuard::new(()));
        }
        let path = self.path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| StoreError::Open {
                path: path.clone(),
                source: Box::new(error),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(super::RunGuard::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                store: self.path.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(error)) => Err(StoreError::Open {
                path,
                source: Box::new(error),
            }),
        }
    }

    fn lock_worker(&self) -> Result<super::RunGuard, StoreError> {
        self.lock_run()
    }

    fn reopen(&self) -> Result<Box<dyn super::Backend>, StoreError> {
        if self.path == Path::new(":memory:") {
            return Err(StoreError::Abandoned(
                "a store in memory cannot be opened twice",
            ));
        }
        Ok(Box::new(SqliteStore::open(&self.path)?))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source: Cause| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open(path).map_err(|error| open_error(Box::new(error)))?;
        Self::start(connection, path).map_err(|error| match error {
            StoreError::Database(source) => open_error(source),
            other => other,
        })
    }

    /// A store that lives in memory only: for simulations and tests that
    /// need many throwaway stores.
    pub fn in_memory() -> Result<Self, StoreError> {
        let connection = Connection::open_in_memory().map_err(database)?;
        Self::start(connection, Path::new(":memory:"))
    }

    fn start(connection: Connection, path: &Path) -> Result<Self, StoreError> {
        connection.execute_batch(PRAGMAS).map_err(database)?;
        let mut store = SqliteStore {
            connection,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this store is at.
    pub fn version(&self) -> Result<i64, StoreError> {
        self.connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(database)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let current = self.version()?;
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if current > supported {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                version: current,
                supported,
            });
        }
        for (index, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            let transaction = self.connection.transaction().map_err(database)?;
            transaction.execute_batch(migration).map_err(database)?;
            transaction
                .pragma_update(
                    None,
                    "user_version",
                    i64::try_from(index + 1).unwrap_or(i64::MAX),
                )
                .map_err(database)?;
            transaction.commit().map_err(database)?;
        }
        Ok(())
    }
}

fn parse_object(text: &str) -> Map<String, Json> {
    match serde_json::from_str(text) {
        Ok(Json::Object(object)) => object,
        _ => Map::new(),
    }
}

struct Sink<'t> {
    transaction: Transaction<'t>,
    now: i64,
    next_seq: i64,
    /// The mark this import gives the contacts it touches.
    mark: i64,
}

impl ImportSink for Sink<'_> {
    fn contact(&mut self, id: &str) -> Result<Option<Contact>, StoreError> {
        read_contact(&self.transaction, id)
    }

    fn put_contact(&mut self, contact: &Contact) -> Result<bool, StoreError> {
        let data = Json::Object(contact.fields.clone()).to_string();
        let existed = self
            .transaction
            .prepare_cached("SELECT 1 FROM contacts WHERE id = ?1")
            .and_then(|mut statement| statement.exists(params![contact.id]))
            .map_err(database)?;
        self.transaction
            .prepare_cached("INSERT INTO contacts (id, data, updated_at, touched) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at, touched = excluded.touched")
            .and_then(|mut statement| statement.execute(params![contact.id, data, self.now, self.mark]))
            .map_err(database)?;
        Ok(!existed)
    }

    fn put_event(&mut self, event: &Event) -> Result<bool, StoreError> {
        let properties = Json::Object(event.properties.map().clone()).to_string();
        let inserted = self
            .transaction
            .prepare_cached("INSERT INTO events (id, contact_id, name, at, seq, properties) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING")
            .and_then(|mut statement| statement.execute(params![event.id, event.contact_id, event.name, event.at.seconds(), self.next_seq, properties]))
            .map_err(database)?;
        if inserted == 1 {
            self.next_seq += 1;
            self.transaction
                .prepare_cached("UPDATE contacts SET touched = ?2 WHERE id = ?1 AND touched < ?2")
                .and_then(|mut statement| statement.execute(params![event.contact_id, self.mark]))
                .map_err(database)?;
        }
        Ok(inserted == 1)
    }

    fn suppress(&mut self, suppression: &Suppression) -> Result<bool, StoreError> {
        insert_suppression(&self.transaction, suppression)
    }
}

/// Whether the address was on the channel's suppression list at `at`.
fn is_suppressed(
    connection: &Connection,
    address: &str,
    channel: Channel,
    at: Timestamp,
) -> Result<bool, StoreError> {
    connection
        .prepare_cached(
            "SELECT 1 FROM suppressions WHERE address = ?1 AND channel = ?2 AND at <= ?3",
        )
        .and_then(|mut statement| {
            statement.exists(params![
                super::normalize_address(channel, address),
                channel.as_str(),
                at.seconds()
            ])
        })
        .map_err(database)
}

fn insert_suppression(
    connection: &Connection,
    suppression: &Suppression,
) -> Result<bool, StoreError> {
    let inserted = connection
        // An address is suppressed from its earliest unsubscribe, bounce or
        // complaint, whatever order the provider's exports arrive in.
        .prepare_cached(
            "INSERT INTO suppressions (address, channel, reason, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (address, channel) DO UPDATE SET at = excluded.at, reason = excluded.reason
             WHERE excluded.at < suppressions.at",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                suppression.address,
                suppression.channel.as_str(),
                suppression.reason,
                suppression.at.seconds()
            ])
        })
        .map_err(database)?;
    Ok(inserted == 1)
}

/// A contact's marketing sends on a channel from `from` on, as `query`
/// (over contact, channel and time, selecting journey and time) finds them.
fn marketing_sends(
    connection: &Connection,
    query: &str,
    contact_id: &str,
    channel: Channel,
    from: Timestamp,
) -> Result<Vec<Scheduled>, StoreError> {
    let mut statement = connection.prepare_cached(query).map_err(database)?;
    let rows = statement
        .query_map(
            params![contact_id, channel.as_str(), from.seconds()],
            |row| {
                Ok(Scheduled {
                    journey: row.get(0)?,
                    at: time(row, 1)?,
                })
            },
        )
        .map_err(database)?;
    rows.collect::<Result<_, _>>().map_err(database)
}

fn read_events(
    connection: &Connection,
    contact_id: &str,
    through_seq: i64,
) -> Result<Vec<Event>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT id, name, at, seq, properties FROM events WHERE contact_id = ?1 AND seq <= ?2 ORDER BY at, id",
        )
        .map_err(database)?;
    let rows = statement
        .query_map(params![contact_id, through_seq], |row| {
            Ok(Event {
                id: row.get(0)?,
                contact_id: contact_id.to_string(),
                name: row.get(1)?,
                at: time(row, 2)?,
                seq: row.get(3)?,
                properties: crate::store::Properties::from_text(row.get(4)?),
            })
        })
        .map_err(database)?;
    rows.collect::<Result<_, _>>().map_err(database)
}

const ENROLMENT_COLUMNS: &str =
    "id, journey, version, state, step, step_print, due_at, entered_at, ended_at, event_id, data";

fn enrolment(row: &rusqlite::Row<'_>, contact_id: &str) -> rusqlite::Result<Enrolment> {
    let data: String = row.get(10)?;
    Ok(Enrolment {
        id: row.get(0)?,
        contact_id: contact_id.to_string(),
        journey: row.get(1)?,
        version: row.get(2)?,
        state: parsed(row, 3)?,
        step: StepId::new(row.get::<_, String>(4)?),
        step_print: row.get(5)?,
        due_at: optional_time(row, 6)?,
        entered_at: time(row, 7)?,
        ended_at: optional_time(row, 8)?,
        event_id: row.get(9)?,
        data: serde_json::from_str::<EnrolmentData>(&data)
            .map_err(|error| column_error(10, error))?,
    })
}

fn data_text(data: &EnrolmentData) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_string())
}

struct Batch<'t> {
    transaction: Transaction<'t>,
}

impl RunBatch for Batch<'_> {
    fn events_of(&mut self, contact_id: &str, through_seq: i64) -> Result<Vec<Event>, StoreError> {
        read_events(&self.transaction, contact_id, through_seq)
    }

    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        let mut statement = self
            .transaction
            // Only the latest enrolment per journey: older ones are history,
            // and reading them made every night slower than the last.
            .prepare_cached(&format!(
                "SELECT {ENROLMENT_COLUMNS} FROM enrolments
                 WHERE id IN (SELECT MAX(id) FROM enrolments WHERE contact_id = ?1 GROUP BY journey) ORDER BY id",
            ))
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id], |row| enrolment(row, contact_id))
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError> {
        self.transaction
            .prepare_cached("INSERT INTO enrolments (contact_id, journey, version, state, step, step_print, due_at, entered_at, ended_at, event_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")
            .and_then(|mut statement| {
                statement.execute(params![
                    enrolment.contact_id,
                    enrolment.journey,
                    enrolment.version,
                    enrolment.state.as_str(),
                    enrolment.step.as_str(),
                    enrolment.step_print,
                    enrolment.due_at.map(Timestamp::seconds),
                    enrolment.entered_at.seconds(),
                    enrolment.ended_at.map(Timestamp::seconds),
                    enrolment.event_id,
                    data_text(&enrolment.data)
                ])
            })
            .map_err(database)?;
        Ok(self.transaction.last_insert_rowid())
    }

    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE enrolments SET version = ?2, state = ?3, step = ?4, step_print = ?5, due_at = ?6, ended_at = ?7, event_id = ?8, data = ?9 WHERE id = ?1")
            .and_then(|mut statement| {
                statement.execute(params![
                    enrolment.id,
                    enrolment.version,
                    enrolment.state.as_str(),
                    enrolment.step.as_str(),
                    enrolment.step_print,
                    enrolment.due_at.map(Timestamp::seconds),
                    enrolment.ended_at.map(Timestamp::seconds),
                    enrolment.event_id,
                    data_text(&enrolment.data)
                ])
            })
            .map(|_| ())
            .map_err(database)
    }

    fn record(&mut self, transition: &Transition) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("INSERT INTO transitions (enrolment_id, contact_id, journey, from_step, to_step, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .and_then(|mut statement| {
                statement.execute(params![
                    transition.enrolment_id,
                    transition.contact_id,
                    transition.journey,
                    transition.from_step.as_ref().map(StepId::as_str),
                    transition.to_step.as_ref().map(StepId::as_str),
                    transition.reason,
                    transition.at.seconds()
                ])
            })
            .map(|_| ())
            .map_err(database)
    }

    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("INSERT INTO assignments (enrolment_id, test, arm, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
            .and_then(|mut statement| {
                statement.execute(params![
                    assignment.enrolment_id,
                    assignment.test,
                    assignment.arm,
                    assignment.at.seconds()
                ])
            })
            .map(|_| ())
            .map_err(database)
    }

    fn queue(&mut self, row: &OutboxRow) -> Result<bool, StoreError> {
        let inserted = self
            .transaction
            .prepare_cached(
                "INSERT INTO outbox (key, enrolment_id, contact_id, journey, step, channel, template, kind, send_at, expires_at, status, planned_at, attempt_at, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?9, ?13) ON CONFLICT (key) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    row.key.to_string(),
                    row.key.enrolment,
                    row.contact_id,
                    row.journey,
                    row.key.step.as_str(),
                    row.channel.as_str(),
                    row.template,
                    kind_text(row.kind),
                    row.send_at.seconds(),
                    row.expires_at.map(Timestamp::seconds),
                    row.status.as_str(),
                    row.planned_at.seconds(),
                    row.note
                ])
            })
            .map_err(database)?;
        Ok(inserted == 1)
    }

    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: Channel,
        from: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError> {
        marketing_sends(
            &self.transaction,
            "SELECT journey, send_at FROM outbox WHERE contact_id = ?1 AND channel = ?2 AND kind = 'marketing'
             AND status IN ('pending', 'sending', 'sent') AND send_at >= ?3 ORDER BY send_at, id",
            contact_id,
            channel,
            from,
        )
    }

    fn suppressed(
        &mut self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        is_suppressed(&self.transaction, address, channel, at)
    }

    fn update_contact(&mut self, contact_id: &str, edit: ContactEdit) -> Result<(), StoreError> {
        let Some(mut contact) = read_contact(&self.transaction, contact_id)? else {
            return Ok(());
        };
        edit(&mut contact.fields);
        self.transaction
            .prepare_cached("UPDATE contacts SET data = ?2, updated_at = ?3 WHERE id = ?1")
            .and_then(|mut statement| {
                statement.execute(params![
                    contact.id,
                    Json::Object(contact.fields).to_string(),
                    now_seconds()
                ])
            })
            .map(|_| ())
            .map_err(database)
    }

    fn set_wake(&mut self, contact_id: &str, wake: Option<Timestamp>) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE contacts SET wake_at = ?2 WHERE id = ?1 AND wake_at IS NOT ?2")
            .and_then(|mut statement| {
                statement.execute(params![contact_id, wake.map(Timestamp::seconds)])
            })
            .map(|_| ())
            .map_err(database)
    }

    fn part_progress(
        &mut self,
        night: i64,
        part: u32,
        after: Option<&str>,
        counts: &str,
        done: bool,
    ) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached(
                "UPDATE night_parts SET after = ?3, counts = ?4, done = ?5 WHERE night = ?1 AND part = ?2",
            )
            .and_then(|mut statement| statement.execute(params![night, part, after, counts, done]))
            .map(|_| ())
            .map_err(database)
    }
}

fn touch_mark(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .query_row(
            "SELECT COALESCE(MAX(touched), 0) FROM contacts",
            [],
            |row| row.get(0),
        )
        .map_err(database)
}

fn contact_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: row.get(0)?,
        fields: parse_object(&row.get::<_, String>(1)?),
    })
}

fn night_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Night> {
    Ok(Night {
        id: row.get(0)?,
        now: time(row, 1)?,
        run_seq: row.get(2)?,
        mark: row.get(3)?,
        visit: match row.get::<_, Option<i64>>(4)? {
            Some(touched_after) => Visit::Due { touched_after },
            None => Visit::Everyone,
        },
        fingerprint: row.get(5)?,
        started_at: time(row, 6)?,
    })
}

fn touched_after(visit: Visit) -> Option<i64> {
    match visit {
        Visit::Everyone => None,
        Visit::Due { touched_after } => Some(touched_after),
    }
}

fn write_progress(transaction: &Transaction<'_>, progress: &[Progress]) -> Result<(), StoreError> {
    for journey in progress {
        transaction
            .execute(
                "INSERT INTO journey_progress (journey, deployed_at, until, seen_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (journey) DO UPDATE SET until = excluded.until, seen_seq = excluded.seen_seq",
                params![
                    journey.journey,
                    journey.deployed_at.seconds(),
                    journey.until.seconds(),
                    journey.seen_seq
                ],
            )
            .map_err(database)?;
    }
    Ok(())
}

fn write_run(connection: &Connection, run: &RunRecord) -> Result<(), StoreError> {
    connection
        .execute(
            "INSERT INTO runs (now, started_at, finished_at, summary) VALUES (?1, ?2, ?3, ?4)",
            params![
                run.now.seconds(),
                run.started_at.seconds(),
                now_seconds(),
                run.summary
            ],
        )
        .map(|_| ())
        .map_err(database)
}

/// Every `(table, column)` of the store, for [`copy::check_schema`].
fn columns(connection: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut statement = connection
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .map_err(database)?;
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(database)?;
    rows.collect::<Result<_, _>>().map_err(database)
}

/// A row of `table` as cells.
fn cells_of(table: &copy::Table, row: &rusqlite::Row<'_>) -> Result<Vec<copy::Cell>, StoreError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(index, (_, kind))| {
            Ok(if *kind == copy::Kind::Text {
                row.get::<_, Option<String>>(index)
                    .map_err(database)?
                    .map_or(copy::Cell::Null, copy::Cell::Text)
            } else {
                row.get::<_, Option<i64>>(index)
                    .map_err(database)?
                    .map_or(copy::Cell::Null, copy::Cell::Int)
            })
        })
        .collect()
}

fn night_counts(connection: &Connection, night: i64) -> Result<Vec<String>, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT counts FROM night_parts WHERE night = ?1 ORDER BY part")
        .map_err(database)?;
    let rows = statement
        .query_map(params![night], |row| row.get(0))
        .map_err(database)?;
    rows.collect::<Result<_, _>>().map_err(database)
}

fn read_contact(connection: &Connection, id: &str) -> Result<Option<Contact>, StoreError> {
    connection
        .prepare_cached("SELECT data FROM contacts WHERE id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row(params![id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(database)
        .map(|data| {
            data.map(|data| Contact {
                id: id.to_string(),
                fields: parse_object(&data),
            })
        })
}

fn last_seq(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
            row.get(0)
        })
        .map_err(database)
}

impl Store for SqliteStore {
    fn import(
        &mut self,
        work: &mut dyn FnMut(&mut dyn ImportSink) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // IMMEDIATE: an import and a run's batch take turns writing; neither
        // builds on a snapshot the other has already changed.
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let next_seq = last_seq(&transaction)? + 1;
        let mark = touch_mark(&transaction)? + 1;
        let mut sink = Sink {
            transaction,
            now: now_seconds(),
            next_seq,
            mark,
        };
        work(&mut sink)?;
        sink.transaction.commit().map_err(database)
    }

    fn contact(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        read_contact(&self.connection, id)
    }

    fn contact_count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM contacts", [], |row| row.get(0))
            .map_err(database)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn events_of(&self, contact_id: &str) -> Result<Vec<Event>, StoreError> {
        read_events(&self.connection, contact_id, i64::MAX)
    }

    fn last_event_seq(&self) -> Result<i64, StoreError> {
        last_seq(&self.connection)
    }

    fn contacts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Contact>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT id, data FROM contacts WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(database)?;
        let rows = statement
            .query_map(
                params![
                    after.unwrap_or(""),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |row| {
                    Ok(Contact {
                        id: row.get(0)?,
                        fields: parse_object(&row.get::<_, String>(1)?),
                    })
                },
            )
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn batch(
        &mut self,
        commit: bool,
        work: &mut dyn FnMut(&mut dyn RunBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let mut batch = Batch { transaction };
        work(&mut batch)?;
        if commit {
            batch.transaction.commit().map_err(database)
        } else {
            batch.transaction.rollback().map_err(database)
        }
    }

    fn resting(&self) -> Result<Vec<Resting>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT journey, step, step_print, COUNT(*) FROM enrolments WHERE state = 'active' GROUP BY journey, step, step_print ORDER BY journey, step")
            .map_err(database)?;
        let rows = statement
            .query_map([], |row| {
                Ok(Resting {
                    journey: row.get(0)?,
                    step: StepId::new(row.get::<_, String>(1)?),
                    print: row.get(2)?,
                    count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn record_versions(
        &mut self,
        versions: &[(String, String)],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(database)?;
        for (journey, version) in versions {
            transaction
                .execute(
                    "INSERT INTO journey_versions (journey, version, deployed_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![journey, version, at.seconds()],
                )
                .map_err(database)?;
        }
        transaction.commit().map_err(database)
    }

    fn progress(&self) -> Result<Vec<Progress>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT journey, deployed_at, until, seen_seq FROM journey_progress ORDER BY journey")
            .map_err(database)?;
        let rows = statement
            .query_map([], |row| {
                Ok(Progress {
                    journey: row.get(0)?,
                    deployed_at: time(row, 1)?,
                    until: time(row, 2)?,
                    seen_seq: row.get(3)?,
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn save_progress(&mut self, progress: &[Progress]) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(database)?;
        write_progress(&transaction, progress)?;
        transaction.commit().map_err(database)
    }

    fn status(&self, now: Timestamp) -> Result<Vec<JourneyStatus>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT journey, state, step, SUM(CASE WHEN due_at IS NOT NULL AND due_at <= ?1 THEN 1 ELSE 0 END), COUNT(*) FROM enrolments GROUP BY journey, state, step ORDER BY journey, state, step")
            .map_err(database)?;
        let steps = statement
            .query_map(params![now.seconds()], |row| {
                Ok(super::StepCount {
                    journey: row.get(0)?,
                    state: parsed::<EnrolmentState>(row, 1)?,
                    step: row.get(2)?,
                    due: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    count: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                })
            })
            .map_err(database)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(database)?;
        let mut statement = self
            .connection
            .prepare(
                "SELECT e.journey, a.test, a.arm, COUNT(*),
                        SUM(CASE WHEN e.state = 'converted' THEN 1 ELSE 0 END),
                        SUM(CASE WHEN e.state = 'active' THEN 1 ELSE 0 END)
                 FROM assignments a JOIN enrolments e ON e.id = a.enrolment_id
                 GROUP BY e.journey, a.test, a.arm ORDER BY e.journey, a.test, a.arm",
            )
            .map_err(database)?;
        let arms = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    ArmStatus {
                        test: row.get(1)?,
                        arm: row.get(2)?,
                        entered: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                        converted: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                        active: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
                    },
                ))
            })
            .map_err(database)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(database)?;
        Ok(super::journey_status(steps, arms))
    }

    fn outbox_counts(&self) -> Result<Vec<(OutboxStatus, u64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
            .map_err(database)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    parsed::<OutboxStatus>(row, 0)?,
                    u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn transitions_of(
        &self,
        contact_id: &str,
        journey: Option<&str>,
    ) -> Result<Vec<Transition>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT enrolment_id, journey, from_step, to_step, reason, at FROM transitions
                 WHERE contact_id = ?1 AND (?2 IS NULL OR journey = ?2) ORDER BY id",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id, journey], |row| {
                Ok(Transition {
                    enrolment_id: row.get(0)?,
                    contact_id: contact_id.to_string(),
                    journey: row.get(1)?,
                    from_step: row.get::<_, Option<String>>(2)?.map(StepId::new),
                    to_step: row.get::<_, Option<String>>(3)?.map(StepId::new),
                    reason: row.get(4)?,
                    at: time(row, 5)?,
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn record_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        write_run(&self.connection, run)
    }

    fn touch_mark(&self) -> Result<i64, StoreError> {
        touch_mark(&self.connection)
    }

    fn sweep(&self) -> Result<Option<Sweep>, StoreError> {
        self.connection
            .query_row("SELECT mark, fingerprint FROM sweep", [], |row| {
                Ok(Sweep {
                    mark: row.get(0)?,
                    fingerprint: row.get(1)?,
                })
            })
            .optional()
            .map_err(database)
    }

    /// One: SQLite has one writer, so one process works a night.
    fn partitions(&self) -> u32 {
        1
    }

    fn due_ids(
        &self,
        _part: u32,
        now: Timestamp,
        touched_after: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                // Without the indexes named, SQLite walks every contact
                // by id (0.86 s at 1,000,000 contacts, against 6 ms).
                "SELECT id FROM contacts INDEXED BY contacts_by_wake WHERE wake_at <= ?1 AND id > ?3
                 UNION SELECT id FROM contacts INDEXED BY contacts_by_touch WHERE touched > ?2 AND id > ?3
                 ORDER BY id",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(
                params![now.seconds(), touched_after, after.unwrap_or("")],
                |row| row.get(0),
            )
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn part_page(
        &self,
        _part: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Contact>, StoreError> {
        self.contacts_page(after, limit)
    }

    fn contacts_in(&self, ids: &[String]) -> Result<Vec<Contact>, StoreError> {
        let list = Json::Array(ids.iter().cloned().map(Json::String).collect()).to_string();
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT id, data FROM contacts WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![list], contact_row)
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn read_ahead(&self, contacts: &[&str], through_seq: i64) -> Result<Ahead, StoreError> {
        let mut ahead = Ahead::new(contacts, through_seq);
        let list = Json::Array(
            contacts
                .iter()
                .map(|id| Json::String((*id).to_string()))
                .collect(),
        )
        .to_string();
        // One snapshot for the three reads.
        let transaction = self.connection.unchecked_transaction().map_err(database)?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "SELECT contact_id, id, name, at, seq, properties FROM events
                     WHERE contact_id IN (SELECT value FROM json_each(?1)) AND seq <= ?2
                     ORDER BY contact_id, at, id",
                )
                .map_err(database)?;
            let mut rows = statement
                .query(params![list, through_seq])
                .map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                let event = Event {
                    contact_id: row.get(0).map_err(database)?,
                    id: row.get(1).map_err(database)?,
                    name: row.get(2).map_err(database)?,
                    at: time(row, 3).map_err(database)?,
                    seq: row.get(4).map_err(database)?,
                    properties: crate::store::Properties::from_text(row.get(5).map_err(database)?),
                };
                if let Some(events) = ahead.events.get_mut(&event.contact_id) {
                    events.push(event);
                }
            }
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {ENROLMENT_COLUMNS}, contact_id FROM enrolments WHERE id IN
                     (SELECT MAX(id) FROM enrolments WHERE contact_id IN (SELECT value FROM json_each(?1))
                      GROUP BY contact_id, journey)
                     ORDER BY contact_id, id",
                ))
                .map_err(database)?;
            let mut rows = statement.query(params![list]).map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                let contact_id: String = row.get(11).map_err(database)?;
                let enrolment = enrolment(row, &contact_id).map_err(database)?;
                if let Some(enrolments) = ahead.enrolments.get_mut(&contact_id) {
                    enrolments.push(enrolment);
                }
            }
            let mut statement = transaction
                .prepare_cached(
                    "SELECT contact_id, key, channel, journey, send_at,
                            kind = 'marketing' AND status IN ('pending', 'sending', 'sent')
                     FROM outbox WHERE contact_id IN (SELECT value FROM json_each(?1))
                     ORDER BY contact_id, send_at, id",
                )
                .map_err(database)?;
            let mut rows = statement.query(params![list]).map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                let contact_id: String = row.get(0).map_err(database)?;
                let sent = if row.get::<_, bool>(5).map_err(database)? {
                    Some((
                        channel_of(row, 2).map_err(database)?,
                        row.get(3).map_err(database)?,
                        row.get(4).map_err(database)?,
                    ))
                } else {
                    None
                };
                ahead.hold(&contact_id, row.get(1).map_err(database)?, sent);
            }
        }
        transaction.commit().map_err(database)?;
        Ok(ahead)
    }

    fn begin_night(&mut self, proposed: &Night, join: Join) -> Result<Night, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let open = transaction
            .query_row(
                "SELECT id, now, run_seq, mark, touched_after, fingerprint, started_at FROM nights
                 WHERE closed_at IS NULL AND abandoned = 0 ORDER BY id DESC LIMIT 1",
                [],
                night_of,
            )
            .optional()
            .map_err(database)?;
        if let Some(open) = open {
            let same = open.now == proposed.now && open.fingerprint == proposed.fingerprint;
            if join == Join::Worker || same {
                transaction.commit().map_err(database)?;
                return Ok(open);
            }
            transaction
                .execute(
                    "UPDATE nights SET abandoned = 1 WHERE id = ?1",
                    params![open.id],
                )
                .map_err(database)?;
        }
        transaction
            .execute(
                "INSERT INTO nights (now, run_seq, mark, touched_after, fingerprint, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    proposed.now.seconds(),
                    proposed.run_seq,
                    proposed.mark,
                    touched_after(proposed.visit),
                    proposed.fingerprint,
                    proposed.started_at.seconds()
                ],
            )
            .map_err(database)?;
        let id = transaction.last_insert_rowid();
        transaction
            .execute(
                "INSERT INTO night_parts (night, part) VALUES (?1, 0)",
                params![id],
            )
            .map_err(database)?;
        transaction.commit().map_err(database)?;
        Ok(Night {
            id,
            ..proposed.clone()
        })
    }

    /// The one partition, while it is not done: the run lock keeps every
    /// other process away.
    fn claim_part(&mut self, night: &Night, _wait: bool) -> Result<Option<Part>, StoreError> {
        self.connection
            .query_row(
                "SELECT part, after, counts FROM night_parts WHERE night = ?1 AND done = 0 ORDER BY part LIMIT 1",
                params![night.id],
                |row| {
                    Ok(Part {
                        index: row.get(0)?,
                        after: row.get(1)?,
                        counts: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(database)
    }

    fn release_part(&mut self, _part: u32) -> Result<(), StoreError> {
        Ok(())
    }

    fn close_night(
        &mut self,
        night: &Night,
        progress: &[Progress],
        sweep: Option<&Sweep>,
        record: &mut dyn FnMut(&[String]) -> RunRecord,
    ) -> Result<bool, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let open: bool = transaction
            .query_row(
                "SELECT closed_at IS NULL AND abandoned = 0
                        AND NOT EXISTS (SELECT 1 FROM night_parts WHERE night = ?1 AND done = 0)
                 FROM nights WHERE id = ?1",
                params![night.id],
                |row| row.get(0),
            )
            .optional()
            .map_err(database)?
            .unwrap_or(false);
        if !open {
            return Ok(false);
        }
        let counts = night_counts(&transaction, night.id)?;
        write_progress(&transaction, progress)?;
        match sweep {
            Some(sweep) => transaction.execute(
                "INSERT INTO sweep (id, mark, fingerprint) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET mark = excluded.mark, fingerprint = excluded.fingerprint",
                params![sweep.mark, sweep.fingerprint],
            ),
            None => transaction.execute("DELETE FROM sweep", []),
        }
        .map_err(database)?;
        write_run(&transaction, &record(&counts))?;
        transaction
            .execute(
                "UPDATE nights SET closed_at = ?2 WHERE id = ?1",
                params![night.id, now_seconds()],
            )
            .map_err(database)?;
        transaction.commit().map_err(database)?;
        Ok(true)
    }

    fn night_counts(&self, night: i64) -> Result<Vec<String>, StoreError> {
        night_counts(&self.connection, night)
    }

    fn dump(&self, each: copy::Dumped<'_>) -> Result<(), StoreError> {
        // Deferred: the snapshot is taken at the first read and kept to
        // the last table.
        let transaction = self.connection.unchecked_transaction().map_err(database)?;
        copy::check_schema(&self.path.display().to_string(), columns(&transaction)?)?;
        for table in copy::TABLES {
            let sql = format!("SELECT {} FROM {}", table.column_list(), table.name);
            let mut statement = transaction.prepare(&sql).map_err(database)?;
            let mut rows = statement.query([]).map_err(database)?;
            let mut cells = std::iter::from_fn(|| match rows.next() {
                Ok(Some(row)) => Some(cells_of(table, row)),
                Ok(None) => None,
                Err(error) => Some(Err(database(error))),
            });
            each(table, &mut cells)?;
        }
        Ok(())
    }

    fn restore(&mut self, from: &dyn Store) -> Result<copy::Copied, StoreError> {
        let shown = self.path.display().to_string();
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        copy::check_schema(&shown, columns(&transaction)?)?;
        for table in copy::TABLES {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", table.name);
            let held: bool = transaction
                .query_row(&sql, [], |row| row.get(0))
                .map_err(database)?;
            if held {
                return Err(copy::not_empty(&shown, table.name));
            }
        }
        let mut copied = copy::Copied::new();
        from.dump(&mut |table, rows| {
            let values: Vec<String> = (1..=table.columns.len()).map(|n| format!("?{n}")).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                table.name,
                table.column_list(),
                values.join(", ")
            );
            let mut statement = transaction.prepare(&sql).map_err(database)?;
            let mut count = 0;
            for row in copy::checked(table, rows) {
                let values = row?.into_iter().map(|cell| match cell {
                    copy::Cell::Null => rusqlite::types::Value::Null,
                    copy::Cell::Int(value) => rusqlite::types::Value::Integer(value),
                    copy::Cell::Text(text) => rusqlite::types::Value::Text(text),
                });
                statement
                    .execute(rusqlite::params_from_iter(values))
                    .map_err(database)?;
                count += 1;
            }
            copied.push((table.name, count));
            Ok(())
        })?;
        transaction.commit().map_err(database)?;
        Ok(copied)
    }

    fn enrolments_of(&self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "SELECT {ENROLMENT_COLUMNS} FROM enrolments WHERE contact_id = ?1 ORDER BY id"
            ))
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id], |row| enrolment(row, contact_id))
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn outbox_of(&self, contact_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.contact_id = ?1 ORDER BY o.send_at, o.id"
            ))
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id], outbox_row)
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }
}

/// What a settled row becomes: status, attempt_at, sent_at, provider_id,
/// error, note, and whether the claim counted as an attempt.
type Outcome<'a> = (
    OutboxStatus,
    Option<Timestamp>,
    Option<Timestamp>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    bool,
);

const OUTBOX_COLUMNS: &str = "o.key, o.contact_id, o.journey, o.channel, o.template, o.kind, o.send_at, o.expires_at, o.status, o.planned_at, o.note";
/// The number of columns in [`OUTBOX_COLUMNS`].
const OUTBOX_WIDTH: usize = 11;

fn outbox_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    let key: String = row.get(0)?;
    Ok(OutboxRow {
        key: OutboxKey::parse(&key)
            .ok_or_else(|| column_error(0, crate::model::UnknownState(key.clone())))?,
        contact_id: row.get(1)?,
        journey: row.get(2)?,
        channel: channel_of(row, 3)?,
        template: row.get(4)?,
        kind: kind_of(row, 5)?,
        send_at: time(row, 6)?,
        expires_at: optional_time(row, 7)?,
        status: parsed(row, 8)?,
        planned_at: time(row, 9)?,
        note: row.get(10)?,
    })
}

fn delivered_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Delivered> {
    Ok(Delivered {
        attempts: row.get(first)?,
        sent_at: optional_time(row, first + 1)?,
        provider_id: row.get(first + 2)?,
        error: row.get(first + 3)?,
        note: row.get(first + 4)?,
    })
}

impl Outbox for SqliteStore {
    fn claim(
        &mut self,
        claimer: &str,
        now: Timestamp,
        stale_before: Timestamp,
        channels: &[Channel],
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        if channels.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // IMMEDIATE takes the write lock first: two `deliver`s claiming at
        // once are serialized, so no row is claimed twice.
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let placeholders = vec!["?"; channels.len()].join(", ");
        let channel_values = || {
            channels
                .iter()
                .map(|channel| rusqlite::types::Value::from(channel.as_str().to_string()))
        };
        let limit_value = i64::try_from(limit).unwrap_or(i64::MAX);
        // Two reads, each walking the index (status, attempt_at) or
        // (status, claimed_at) in order and stopping at the limit: a big
        // outbox is never sorted whole. Stale claims first: they are the
        // oldest work.
        let mut ids: Vec<i64> = Vec::new();
        for (query, cutoff) in [
            (
                format!(
                    "SELECT id FROM outbox WHERE status = 'sending' AND claimed_at <= ? AND channel IN ({placeholders}) ORDER BY claimed_at LIMIT ?"
                ),
                stale_before,
            ),
            (
                format!(
                    "SELECT id FROM outbox WHERE status = 'pending' AND attempt_at <= ? AND channel IN ({placeholders}) ORDER BY attempt_at LIMIT ?"
                ),
                now,
            ),
        ] {
            let remaining = limit_value - i64::try_from(ids.len()).unwrap_or(0);
            if remaining <= 0 {
                break;
            }
            let mut values: Vec<rusqlite::types::Value> = vec![cutoff.seconds().into()];
            values.extend(channel_values());
            values.push(remaining.into());
            let mut statement = transaction.prepare_cached(&query).map_err(database)?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(values), |row| row.get(0))
                .map_err(database)?;
            for id in rows {
                ids.push(id.map_err(database)?);
            }
        }
        let mut claimed = Vec::with_capacity(ids.len());
        {
            let mut update = transaction
                .prepare_cached(
                    "UPDATE outbox SET status = 'sending', claimed_by = ?2, claimed_at = ?3, attempts = attempts + 1 WHERE id = ?1",
                )
                .map_err(database)?;
            let mut read = transaction
                .prepare_cached(&format!(
                    "SELECT {OUTBOX_COLUMNS}, o.attempts, o.attempt_at, e.event_id, o.provider_id FROM outbox o
                     LEFT JOIN enrolments e ON e.id = o.enrolment_id WHERE o.id = ?1"
                ))
                .map_err(database)?;
            for id in ids {
                update
                    .execute(params![id, claimer, now.seconds()])
                    .map_err(database)?;
                let found = read
                    .query_row(params![id], |row| {
                        Ok(Claimed {
                            id,
                            row: outbox_row(row)?,
                            attempts: row.get(OUTBOX_WIDTH)?,
                            attempt_at: time(row, OUTBOX_WIDTH + 1)?,
                            event_id: row.get(OUTBOX_WIDTH + 2)?,
                            progress: row.get(OUTBOX_WIDTH + 3)?,
                        })
                    })
                    .map_err(database)?;
                claimed.push(found);
            }
        }
        transaction.commit().map_err(database)?;
        Ok(claimed)
    }

    fn settle(
        &mut self,
        claimer: &str,
        now: Timestamp,
        outcomes: &[(i64, Settle)],
    ) -> Result<usize, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let mut held = 0;
        for (id, outcome) in outcomes {
            let (status, attempt_at, sent_at, provider_id, error, note, attempt): Outcome<'_> =
                match outcome {
                    Settle::Sent { provider_id } => (
                        OutboxStatus::Sent,
                        None,
                        Some(now),
                        provider_id.as_deref(),
                        None,
                        None,
                        true,
                    ),
                    Settle::Retry {
                        at,
                        error,
                        progress,
                    } => (
                        OutboxStatus::Pending,
                        Some(*at),
                        None,
                        progress.as_deref(),
                        Some(error.as_str()),
                        None,
                        true,
                    ),
                    Settle::Failed { error, .. } => (
                        OutboxStatus::Failed,
                        None,
                        None,
                        None,
                        Some(error.as_str()),
                        None,
                        true,
                    ),
                    Settle::Suppressed { error } => (
                        OutboxStatus::Suppressed,
                        None,
                        None,
                        None,
                        Some(error.as_str()),
                        None,
                        false,
                    ),
                    Settle::Expired { note } => (
                        OutboxStatus::Expired,
                        None,
                        None,
                        None,
                        None,
                        Some(note.as_str()),
                        false,
                    ),
                    Settle::Skipped { note } => (
                        OutboxStatus::Skipped,
                        None,
                        None,
                        None,
                        None,
                        Some(note.as_str()),
                        false,
                    ),
                    Settle::Held { until, note } => (
                        OutboxStatus::Pending,
                        Some(*until),
                        None,
                        None,
                        None,
                        Some(note.as_str()),
                        false,
                    ),
                };
            let changed = transaction
                .prepare_cached(
                    "UPDATE outbox SET status = ?3, attempt_at = COALESCE(?4, attempt_at), sent_at = ?5,
                       provider_id = COALESCE(?6, provider_id), error = COALESCE(?7, error), note = COALESCE(?8, note),
                       attempts = attempts - ?9, claimed_by = NULL
                     WHERE id = ?1 AND claimed_by = ?2 AND status = 'sending'",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        id,
                        claimer,
                        status.as_str(),
                        attempt_at.map(Timestamp::seconds),
                        sent_at.map(Timestamp::seconds),
                        provider_id,
                        error,
                        note,
                        i64::from(!attempt)
                    ])
                })
                .map_err(database)?;
            if changed == 0 {
                continue;
            }
            held += 1;
            if let Settle::Failed {
                suppression: Some(suppression),
                ..
            } = outcome
            {
                insert_suppression(&transaction, suppression)?;
            }
        }
        transaction.commit().map_err(database)?;
        Ok(held)
    }

    fn is_suppressed(
        &self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        is_suppressed(&self.connection, address, channel, at)
    }

    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT address, channel, reason, at FROM suppressions ORDER BY channel, address",
            )
            .map_err(database)?;
        let rows = statement
            .query_map([], |row| {
                Ok(Suppression {
                    address: row.get(0)?,
                    channel: channel_of(row, 1)?,
                    reason: row.get(2)?,
                    at: time(row, 3)?,
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn sent_since(
        &self,
        contact_id: &str,
        channel: Channel,
        since: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError> {
        marketing_sends(
            &self.connection,
            "SELECT journey, sent_at FROM outbox WHERE contact_id = ?1 AND channel = ?2 AND kind = 'marketing'
             AND status = 'sent' AND sent_at >= ?3 ORDER BY sent_at",
            contact_id,
            channel,
            since,
        )
    }

    fn due_by_channel(
        &self,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> Result<Vec<(Channel, u64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT channel, COUNT(*) FROM outbox
                 WHERE (status = 'pending' AND attempt_at <= ?1) OR (status = 'sending' AND claimed_at <= ?2)
                 GROUP BY channel ORDER BY channel",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![now.seconds(), stale_before.seconds()], |row| {
                Ok((
                    channel_of(row, 0)?,
                    u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn tasks(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(OutboxRow, Delivered)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS}, o.attempts, o.sent_at, o.provider_id, o.error, o.note FROM outbox o
                 WHERE o.channel = 'task' AND o.send_at >= ?1 AND o.send_at <= ?2 ORDER BY o.send_at, o.id"
            ))
            .map_err(database)?;
        let rows = statement
            .query_map(params![from.seconds(), to.seconds()], |row| {
                Ok((outbox_row(row)?, delivered_at(row, OUTBOX_WIDTH)?))
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn delivered(&self, key: &OutboxKey) -> Result<Option<Delivered>, StoreError> {
        self.connection
            .prepare_cached(
                "SELECT attempts, sent_at, provider_id, error, note FROM outbox WHERE key = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![key.to_string()], |row| delivered_at(row, 0))
                    .optional()
            })
            .map_err(database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.version().unwrap(),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
        drop(store);
        assert_eq!(
            SqliteStore::open(&path).unwrap().version().unwrap(),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { version: 99, .. })
        ));
    }

    #[test]
    fn a_failed_import_writes_nothing() {
        let mut store = SqliteStore::in_memory().unwrap();
        let contact = Contact {
            id: "c-1".into(),
            fields: Map::new(),
        };
        let result = store.import(&mut |sink| {
            sink.put_contact(&contact)?;
            Err(StoreError::Abandoned("interrupted"))
        });
        assert!(result.is_err());
        assert_eq!(store.contact_count().unwrap(), 0);
        store
            .import(&mut |sink| sink.put_contact(&contact).map(|_| ()))
            .unwrap();
        assert_eq!(store.contact_count().unwrap(), 1);
    }

    /// A store written by the previous schema (text times) reads the same
    /// instants after the upgrade, in time order, year 10000 included.
    #[test]
    fn version_3_stores_move_to_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        {
            let mut connection = Connection::open(&path).unwrap();
            let transaction = connection.transaction().unwrap();
            for migration in &MIGRATIONS[..3] {
                transaction.execute_batch(migration).unwrap();
            }
            transaction.pragma_update(None, "user_version", 3).unwrap();
            transaction
                .execute_batch(
                    "INSERT INTO events VALUES ('e-2', 'c-1', 'clicked', '2026-03-02T02:00:00Z', '{}');
                     INSERT INTO events VALUES ('e-1', 'c-1', 'signed_up', '2026-03-01T02:00:00Z', '{}');
                     INSERT INTO enrolments (contact_id, journey, version, state, step, due_at, entered_at, data)
                         VALUES ('c-1', 'w', 'v1', 'holdout', 'ab@1/holdout', NULL, '2026-03-01T02:00:00Z', '{\"event\": \"e-1\", \"rescued\": true}');
                     INSERT INTO runs (now, started_at, finished_at) VALUES ('2026-03-02T18:00:00Z', '2026-03-02T18:00:01Z', '2026-03-02T18:00:09Z');
                     INSERT INTO journey_versions VALUES ('w', 'v1', '2026-03-01T00:00:00Z');",
                )
                .unwrap();
            transaction.commit().unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let events = store.events_of("c-1").unwrap();
        assert_eq!(
            events
                .iter()
                .map(|event| (event.id.as_str(), event.seq))
                .collect::<Vec<_>>(),
            [("e-1", 1), ("e-2", 2)]
        );
        assert_eq!(events[0].at.to_string(), "2026-03-01T02:00:00Z");
        let progress = store.progress().unwrap();
        assert_eq!(progress.len(), 1);
        assert_eq!(progress[0].until.to_string(), "2026-03-02T18:00:00Z");
        assert_eq!(progress[0].seen_seq, 2);
        let mut enrolments = Vec::new();
        store
            .batch(false, &mut |batch| {
                enrolments = batch.enrolments_of("c-1")?;
                Ok(())
            })
            .unwrap();
        assert_eq!(enrolments[0].state, EnrolmentState::Completed);
        assert_eq!(enrolments[0].event_id.as_deref(), Some("e-1"));
        assert!(enrolments[0].data.rescued);
    }
}
