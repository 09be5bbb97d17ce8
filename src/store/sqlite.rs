//! The embedded SQLite store: one file, WAL mode, schema migrations
//! versioned in code (`PRAGMA user_version`).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value as Json};

use super::{
    Claimed, Contact, Delivered, Enrolment, Event, ImportSink, JourneyStatus, Outbox, OutboxRow,
    RunBatch, Settle, Store, StoreError, Suppression, Transition,
};

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

fn database(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let connection = Connection::open(path).map_err(|error| open_error(error.to_string()))?;
        connection
            .execute_batch(PRAGMAS)
            .map_err(|error| open_error(error.to_string()))?;
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
    now: String,
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
            .prepare_cached("INSERT INTO contacts (id, data, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at")
            .and_then(|mut statement| statement.execute(params![contact.id, data, self.now]))
            .map_err(database)?;
        Ok(!existed)
    }

    fn put_event(&mut self, event: &Event) -> Result<bool, StoreError> {
        let properties = Json::Object(event.properties.clone()).to_string();
        let inserted = self
            .transaction
            .prepare_cached("INSERT INTO events (id, contact_id, name, at, properties) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING")
            .and_then(|mut statement| statement.execute(params![event.id, event.contact_id, event.name, event.at, properties]))
            .map_err(database)?;
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
    channel: &str,
    at: &str,
) -> Result<bool, StoreError> {
    connection
        .prepare_cached(
            "SELECT 1 FROM suppressions WHERE address = ?1 AND channel = ?2 AND at <= ?3",
        )
        .and_then(|mut statement| {
            statement.exists(params![
                super::normalize_address(channel, address),
                channel,
                at
            ])
        })
        .map_err(database)
}

fn insert_suppression(
    connection: &Connection,
    suppression: &Suppression,
) -> Result<bool, StoreError> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO suppressions (address, channel, reason, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                suppression.address,
                suppression.channel,
                suppression.reason,
                suppression.at
            ])
        })
        .map_err(database)?;
    Ok(inserted == 1)
}

fn read_events(connection: &Connection, contact_id: &str) -> Result<Vec<Event>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT id, name, at, properties FROM events WHERE contact_id = ?1 ORDER BY at, id",
        )
        .map_err(database)?;
    let rows = statement
        .query_map(params![contact_id], |row| {
            Ok(Event {
                id: row.get(0)?,
                contact_id: contact_id.to_string(),
                name: row.get(1)?,
                at: row.get(2)?,
                properties: parse_object(&row.get::<_, String>(3)?),
            })
        })
        .map_err(database)?;
    rows.collect::<Result<_, _>>().map_err(database)
}

struct Batch<'t> {
    transaction: Transaction<'t>,
}

impl RunBatch for Batch<'_> {
    fn events_of(&mut self, contact_id: &str) -> Result<Vec<Event>, StoreError> {
        read_events(&self.transaction, contact_id)
    }

    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        let mut statement = self
            .transaction
            // Only the latest enrolment per journey: older ones are history,
            // and reading them made every night slower than the last.
            .prepare_cached(
                "SELECT id, journey, version, state, step, due_at, entered_at, ended_at, data FROM enrolments
                 WHERE id IN (SELECT MAX(id) FROM enrolments WHERE contact_id = ?1 GROUP BY journey) ORDER BY id",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id], |row| {
                Ok(Enrolment {
                    id: row.get(0)?,
                    contact_id: contact_id.to_string(),
                    journey: row.get(1)?,
                    version: row.get(2)?,
                    state: row.get(3)?,
                    step: row.get(4)?,
                    due_at: row.get(5)?,
                    entered_at: row.get(6)?,
                    ended_at: row.get(7)?,
                    data: parse_object(&row.get::<_, String>(8)?),
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError> {
        self.transaction
            .prepare_cached("INSERT INTO enrolments (contact_id, journey, version, state, step, due_at, entered_at, ended_at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .and_then(|mut statement| {
                statement.execute(params![
                    enrolment.contact_id,
                    enrolment.journey,
                    enrolment.version,
                    enrolment.state,
                    enrolment.step,
                    enrolment.due_at,
                    enrolment.entered_at,
                    enrolment.ended_at,
                    Json::Object(enrolment.data.clone()).to_string()
                ])
            })
            .map_err(database)?;
        Ok(self.transaction.last_insert_rowid())
    }

    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE enrolments SET version = ?2, state = ?3, step = ?4, due_at = ?5, ended_at = ?6, data = ?7 WHERE id = ?1")
            .and_then(|mut statement| {
                statement.execute(params![
                    enrolment.id,
                    enrolment.version,
                    enrolment.state,
                    enrolment.step,
                    enrolment.due_at,
                    enrolment.ended_at,
                    Json::Object(enrolment.data.clone()).to_string()
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
                    transition.from_step,
                    transition.to_step,
                    transition.reason,
                    transition.at
                ])
            })
            .map(|_| ())
            .map_err(database)
    }

    fn queue(&mut self, row: &OutboxRow) -> Result<bool, StoreError> {
        let inserted = self
            .transaction
            .prepare_cached(
                "INSERT INTO outbox (key, enrolment_id, contact_id, journey, step, channel, template, kind, send_at, expires_at, status, created_at, attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?9) ON CONFLICT (key) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    row.key,
                    row.enrolment_id,
                    row.contact_id,
                    row.journey,
                    row.step,
                    row.channel,
                    row.template,
                    row.kind,
                    row.send_at,
                    row.expires_at,
                    row.status,
                    row.send_at
                ])
            })
            .map_err(database)?;
        Ok(inserted == 1)
    }

    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .transaction
            .prepare_cached(
                "SELECT send_at FROM outbox WHERE contact_id = ?1 AND channel = ?2 AND kind = 'marketing'
                 AND status IN ('pending', 'sending', 'sent') AND send_at >= ?3 AND send_at < ?4 ORDER BY send_at",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id, channel, from, to], |row| row.get(0))
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn suppressed(&mut self, address: &str, channel: &str, at: &str) -> Result<bool, StoreError> {
        is_suppressed(&self.transaction, address, channel, at)
    }

    fn save_contact(&mut self, contact: &Contact) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE contacts SET data = ?2, updated_at = ?3 WHERE id = ?1")
            .and_then(|mut statement| {
                statement.execute(params![
                    contact.id,
                    Json::Object(contact.fields.clone()).to_string(),
                    now_text()
                ])
            })
            .map(|_| ())
            .map_err(database)
    }
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

impl Store for SqliteStore {
    fn import(
        &mut self,
        work: &mut dyn FnMut(&mut dyn ImportSink) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(database)?;
        let mut sink = Sink {
            transaction,
            now: now_text(),
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
        read_events(&self.connection, contact_id)
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
        let transaction = self.connection.transaction().map_err(database)?;
        let mut batch = Batch { transaction };
        work(&mut batch)?;
        if commit {
            batch.transaction.commit().map_err(database)
        } else {
            batch.transaction.rollback().map_err(database)
        }
    }

    fn resting(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT journey, step, COUNT(*) FROM enrolments WHERE state = 'active' GROUP BY journey, step ORDER BY journey, step")
            .map_err(database)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                ))
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn record_versions(
        &mut self,
        versions: &[(String, String)],
        at: &str,
    ) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(database)?;
        for (journey, version) in versions {
            transaction
                .execute(
                    "INSERT INTO journey_versions (journey, version, deployed_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![journey, version, at],
                )
                .map_err(database)?;
        }
        transaction.commit().map_err(database)
    }

    fn status(&self, now: &str) -> Result<Vec<JourneyStatus>, StoreError> {
        let mut by_journey: std::collections::BTreeMap<String, JourneyStatus> =
            std::collections::BTreeMap::new();
        let mut statement = self
            .connection
            .prepare("SELECT journey, state, step, SUM(CASE WHEN due_at IS NOT NULL AND due_at <= ?1 THEN 1 ELSE 0 END), COUNT(*) FROM enrolments GROUP BY journey, state, step ORDER BY journey, state, step")
            .map_err(database)?;
        let rows = statement
            .query_map(params![now], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                ))
            })
            .map_err(database)?;
        for row in rows {
            let (journey, state, step, due, count) = row.map_err(database)?;
            let entry = by_journey
                .entry(journey.clone())
                .or_insert_with(|| JourneyStatus {
                    journey,
                    ..JourneyStatus::default()
                });
            match state.as_str() {
                "active" => {
                    entry.active += count;
                    entry.due += due;
                    entry.waiting.push((step, count));
                }
                "converted" => entry.converted += count,
                "completed" => entry.completed += count,
                "exited" => entry.exited += count,
                "holdout" => entry.holdout += count,
                _ => entry.handed_off += count,
            }
        }
        Ok(by_journey.into_values().collect())
    }

    fn outbox_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
            .map_err(database)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
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
                    from_step: row.get(2)?,
                    to_step: row.get(3)?,
                    reason: row.get(4)?,
                    at: row.get(5)?,
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn last_run_before(&self, now: &str) -> Result<Option<String>, StoreError> {
        self.connection
            .query_row(
                "SELECT MAX(now) FROM runs WHERE finished_at IS NOT NULL AND now < ?1",
                params![now],
                |row| row.get(0),
            )
            .map_err(database)
    }

    fn record_run(&mut self, now: &str, started_at: &str, summary: &str) -> Result<(), StoreError> {
        self.connection
            .execute(
                "INSERT INTO runs (now, started_at, finished_at, summary) VALUES (?1, ?2, ?3, ?4)",
                params![now, started_at, now_text(), summary],
            )
            .map(|_| ())
            .map_err(database)
    }

    fn outbox_of(&self, contact_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT key, enrolment_id, journey, step, channel, template, kind, send_at, expires_at, status FROM outbox
                 WHERE contact_id = ?1 ORDER BY send_at, id",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![contact_id], |row| {
                Ok(OutboxRow {
                    key: row.get(0)?,
                    enrolment_id: row.get(1)?,
                    contact_id: contact_id.to_string(),
                    journey: row.get(2)?,
                    step: row.get(3)?,
                    channel: row.get(4)?,
                    template: row.get(5)?,
                    kind: row.get(6)?,
                    send_at: row.get(7)?,
                    expires_at: row.get(8)?,
                    status: row.get(9)?,
                })
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }
}

const OUTBOX_COLUMNS: &str = "o.key, o.enrolment_id, o.contact_id, o.journey, o.step, o.channel, o.template, o.kind, o.send_at, o.expires_at, o.status";

fn outbox_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        key: row.get(0)?,
        enrolment_id: row.get(1)?,
        contact_id: row.get(2)?,
        journey: row.get(3)?,
        step: row.get(4)?,
        channel: row.get(5)?,
        template: row.get(6)?,
        kind: row.get(7)?,
        send_at: row.get(8)?,
        expires_at: row.get(9)?,
        status: row.get(10)?,
    })
}

fn delivered_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Delivered> {
    Ok(Delivered {
        attempts: row.get(first)?,
        sent_at: row.get(first + 1)?,
        provider_id: row.get(first + 2)?,
        error: row.get(first + 3)?,
    })
}

impl Outbox for SqliteStore {
    fn claim(
        &mut self,
        claimer: &str,
        now: &str,
        stale_before: &str,
        channels: &[&str],
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
                .map(|channel| rusqlite::types::Value::from((*channel).to_string()))
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
            let mut values: Vec<rusqlite::types::Value> = vec![cutoff.to_string().into()];
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
                    "SELECT {OUTBOX_COLUMNS}, o.attempts, e.data, o.provider_id FROM outbox o
                     LEFT JOIN enrolments e ON e.id = o.enrolment_id WHERE o.id = ?1"
                ))
                .map_err(database)?;
            for id in ids {
                update
                    .execute(params![id, claimer, now])
                    .map_err(database)?;
                let (row, attempts, data, progress) = read
                    .query_row(params![id], |row| {
                        Ok((
                            outbox_row(row)?,
                            row.get::<_, u32>(11)?,
                            row.get::<_, Option<String>>(12)?,
                            row.get::<_, Option<String>>(13)?,
                        ))
                    })
                    .map_err(database)?;
                let trigger_event = data
                    .and_then(|data| serde_json::from_str::<Json>(&data).ok())
                    .and_then(|data| data.get("event")?.as_str().map(str::to_string));
                claimed.push(Claimed {
                    id,
                    row,
                    attempts,
                    trigger_event,
                    progress,
                });
            }
        }
        transaction.commit().map_err(database)?;
        Ok(claimed)
    }

    fn settle(
        &mut self,
        claimer: &str,
        now: &str,
        outcomes: &[(i64, Settle)],
    ) -> Result<usize, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(database)?;
        let mut held = 0;
        for (id, outcome) in outcomes {
            let (status, attempt_at, sent_at, provider_id, error) = match outcome {
                Settle::Sent { provider_id } => {
                    ("sent", None, Some(now), provider_id.as_deref(), None)
                }
                Settle::Retry {
                    at,
                    error,
                    progress,
                } => (
                    "pending",
                    Some(at.as_str()),
                    None,
                    progress.as_deref(),
                    Some(error.as_str()),
                ),
                Settle::Failed { error, .. } => ("failed", None, None, None, Some(error.as_str())),
                Settle::Suppressed { error } => {
                    ("suppressed", None, None, None, Some(error.as_str()))
                }
                Settle::Expired => ("expired", None, None, None, None),
            };
            let changed = transaction
                .prepare_cached(
                    "UPDATE outbox SET status = ?3, attempt_at = COALESCE(?4, attempt_at), sent_at = ?5,
                       provider_id = ?6, error = ?7, claimed_by = NULL
                     WHERE id = ?1 AND claimed_by = ?2 AND status = 'sending'",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        id,
                        claimer,
                        status,
                        attempt_at,
                        sent_at,
                        provider_id,
                        error
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

    fn is_suppressed(&self, address: &str, channel: &str, at: &str) -> Result<bool, StoreError> {
        is_suppressed(&self.connection, address, channel, at)
    }

    fn due_by_channel(
        &self,
        now: &str,
        stale_before: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT channel, COUNT(*) FROM outbox
                 WHERE (status = 'pending' AND attempt_at <= ?1) OR (status = 'sending' AND claimed_at <= ?2)
                 GROUP BY channel ORDER BY channel",
            )
            .map_err(database)?;
        let rows = statement
            .query_map(params![now, stale_before], |row| {
                Ok((
                    row.get(0)?,
                    u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn tasks(&self, from: &str, to: &str) -> Result<Vec<(OutboxRow, Delivered)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS}, o.attempts, o.sent_at, o.provider_id, o.error FROM outbox o
                 WHERE o.channel = 'task' AND o.send_at >= ?1 AND o.send_at <= ?2 ORDER BY o.send_at, o.id"
            ))
            .map_err(database)?;
        let rows = statement
            .query_map(params![from, to], |row| {
                Ok((outbox_row(row)?, delivered_at(row, 11)?))
            })
            .map_err(database)?;
        rows.collect::<Result<_, _>>().map_err(database)
    }

    fn delivered(&self, key: &str) -> Result<Option<Delivered>, StoreError> {
        self.connection
            .prepare_cached(
                "SELECT attempts, sent_at, provider_id, error FROM outbox WHERE key = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![key], |row| delivered_at(row, 0))
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
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("j.db")).unwrap();
        let contact = Contact {
            id: "c-1".into(),
            fields: Map::new(),
        };
        let result = store.import(&mut |sink| {
            sink.put_contact(&contact)?;
            Err(StoreError::Database("interrupted".into()))
        });
        assert!(result.is_err());
        assert_eq!(store.contact_count().unwrap(), 0);
        store
            .import(&mut |sink| sink.put_contact(&contact).map(|_| ()))
            .unwrap();
        assert_eq!(store.contact_count().unwrap(), 1);
    }
}
