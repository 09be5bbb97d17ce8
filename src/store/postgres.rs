//! The PostgreSQL store: one database is the store, named by a libpq URL
//! (`postgres://journeyc@db.example.com/journeys`). It keeps what the
//! SQLite store keeps, with the same meaning; the conformance suite runs
//! both.
//!
//! Schema migrations are versioned in code (`journeyc_schema`). Times are
//! BIGINT seconds since 1970 and JSON is kept as its text, as in SQLite;
//! every text column compares in the "C" collation, so every order is
//! SQLite's (the bytes of UTF-8) whatever the database's locale. The
//! tables that grow with the contacts (contacts, enrolments, transitions,
//! the outbox) are hash-partitioned by contact.
//!
//! Writers take turns as SQLite's do: an import and a run's batch each
//! hold one transaction-level advisory lock, so an event's `seq` follows
//! the order imports commit in and neither builds on what the other is
//! changing. Deliveries do not wait on them: a claim locks only the rows
//! it takes (`FOR UPDATE SKIP LOCKED`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ::postgres::types::{FromSql, ToSql};
use ::postgres::{Client, Config, GenericClient, NoTls, Row, Statement, Transaction};
use serde_json::{Map, Value as Json};
use tokio_postgres_rustls::MakeRustlsConnect;

use ::postgres::types::Type;

use super::{
    copy, Ahead, ArmStatus, Assignment, Cause, Claimed, Contact, ContactEdit, Delivered, Enrolment,
    EnrolmentData, Event, ImportSink, Join, JourneyStatus, Night, Outbox, OutboxRow, Part,
    Progress, Resting, RunBatch, RunGuard, RunRecord, Scheduled, Settle, Store, StoreError,
    Suppression, Sweep, Transition, Visit,
};
use crate::model::{Channel, OutboxKey, OutboxStatus, StepId, Timestamp};
use crate::templates::MessageKind;

/// Each entry moves the schema one version up; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: what SQLite's store has after its fourth migration. Enrolment,
    // transition and outbox ids come from sequences, so they are unique
    // in the whole store although each table's keys include the contact
    // (a partitioned table's keys must hold its partition key).
    r#"
    CREATE TABLE contacts (
        id TEXT COLLATE "C" NOT NULL,
        data TEXT COLLATE "C" NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (id)
    ) PARTITION BY HASH (id);

    CREATE TABLE events (
        id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        contact_id TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        properties TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX events_by_contact ON events (contact_id, at);
    CREATE INDEX events_by_seq ON events (seq);

    CREATE TABLE suppressions (
        address TEXT COLLATE "C" NOT NULL,
        channel TEXT COLLATE "C" NOT NULL,
        reason TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (address, channel)
    );

    CREATE SEQUENCE enrolments_id AS BIGINT;
    CREATE TABLE enrolments (
        id BIGINT NOT NULL DEFAULT nextval('enrolments_id'),
        contact_id TEXT COLLATE "C" NOT NULL,
        journey TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        state TEXT COLLATE "C" NOT NULL,
        step TEXT COLLATE "C" NOT NULL,
        step_print TEXT COLLATE "C" NOT NULL DEFAULT '',
        due_at BIGINT,
        entered_at BIGINT NOT NULL,
        ended_at BIGINT,
        event_id TEXT COLLATE "C",
        data TEXT COLLATE "C" NOT NULL DEFAULT '{}',
        PRIMARY KEY (contact_id, id)
    ) PARTITION BY HASH (contact_id);
    ALTER SEQUENCE enrolments_id OWNED BY enrolments.id;
    CREATE INDEX enrolments_by_contact ON enrolments (contact_id, journey);

    CREATE SEQUENCE transitions_id AS BIGINT;
    CREATE TABLE transitions (
        id BIGINT NOT NULL DEFAULT nextval('transitions_id'),
        enrolment_id BIGINT NOT NULL,
        contact_id TEXT COLLATE "C" NOT NULL,
        journey TEXT COLLATE "C" NOT NULL,
        from_step TEXT COLLATE "C",
        to_step TEXT COLLATE "C",
        reason TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (contact_id, id)
    ) PARTITION BY HASH (contact_id);
    ALTER SEQUENCE transitions_id OWNED BY transitions.id;
    CREATE INDEX transitions_by_contact ON transitions (contact_id, journey, id);

    -- Delivery names a row by its id alone, so the id leads the key; a
    -- key (`ENROLMENT/STEP`) names one contact's enrolment, so it is
    -- unique per contact as it is in the whole outbox.
    CREATE SEQUENCE outbox_id AS BIGINT;
    CREATE TABLE outbox (
        id BIGINT NOT NULL DEFAULT nextval('outbox_id'),
        key TEXT COLLATE "C" NOT NULL,
        enrolment_id BIGINT NOT NULL,
        contact_id TEXT COLLATE "C" NOT NULL,
        journey TEXT COLLATE "C" NOT NULL,
        step TEXT COLLATE "C" NOT NULL,
        channel TEXT COLLATE "C" NOT NULL,
        template TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        send_at BIGINT NOT NULL,
        expires_at BIGINT,
        status TEXT COLLATE "C" NOT NULL,
        planned_at BIGINT NOT NULL,
        attempt_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT COLLATE "C",
        claimed_at BIGINT,
        sent_at BIGINT,
        provider_id TEXT COLLATE "C",
        error TEXT COLLATE "C",
        note TEXT COLLATE "C",
        PRIMARY KEY (id, contact_id),
        UNIQUE (contact_id, key)
    ) PARTITION BY HASH (contact_id);
    ALTER SEQUENCE outbox_id OWNED BY outbox.id;
    CREATE INDEX outbox_ready ON outbox (status, attempt_at);
    CREATE INDEX outbox_by_contact ON outbox (contact_id, channel, send_at);
    CREATE INDEX outbox_by_key ON outbox (key);

    DO $$
    DECLARE
        parent TEXT;
        remainder INT;
    BEGIN
        FOREACH parent IN ARRAY ARRAY['contacts', 'enrolments', 'transitions', 'outbox'] LOOP
            FOR remainder IN 0..15 LOOP
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                    parent || '_' || remainder, parent, remainder);
            END LOOP;
        END LOOP;
    END
    $$;

    CREATE TABLE journey_versions (
        journey TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        deployed_at BIGINT NOT NULL,
        PRIMARY KEY (journey, version)
    );

    CREATE TABLE runs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        now BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        summary TEXT COLLATE "C"
    );

    CREATE TABLE journey_progress (
        journey TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        deployed_at BIGINT NOT NULL,
        until BIGINT NOT NULL,
        seen_seq BIGINT NOT NULL
    );

    CREATE TABLE assignments (
        enrolment_id BIGINT NOT NULL,
        test TEXT COLLATE "C" NOT NULL,
        arm TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (enrolment_id, test)
    );
    "#,
    // 2: nights that cost what they do (SQLite's fifth migration), split
    // in the contacts' sixteen partitions.
    r#"
    ALTER TABLE contacts ADD COLUMN wake_at BIGINT;
    ALTER TABLE contacts ADD COLUMN touched BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX contacts_by_wake ON contacts (wake_at);
    CREATE INDEX contacts_by_touch ON contacts (touched);
    CREATE TABLE sweep (
        id INT PRIMARY KEY CHECK (id = 1),
        mark BIGINT NOT NULL,
        fingerprint TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE nights (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        now BIGINT NOT NULL,
        run_seq BIGINT NOT NULL,
        mark BIGINT NOT NULL,
        touched_after BIGINT,
        fingerprint TEXT COLLATE "C" NOT NULL,
        started_at BIGINT NOT NULL,
        closed_at BIGINT,
        abandoned BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE night_parts (
        night BIGINT NOT NULL REFERENCES nights (id),
        part INT NOT NULL,
        done BOOLEAN NOT NULL DEFAULT false,
        after TEXT COLLATE "C",
        counts TEXT COLLATE "C" NOT NULL DEFAULT '{}',
        PRIMARY KEY (night, part)
    );
    "#,
];

/// The partitions of the tables that grow with the contacts (`contacts_0`
/// ... `contacts_15`): a night is split in as many.
const PARTITIONS: u32 = 16;

/// `sql` with `{part}` replaced by a partition's number, made once per
/// statement and partition: prepared statements are kept by their text.
fn part_sql(sql: &'static str, part: u32) -> &'static str {
    tables_sql(sql, Some(part))
}

/// `sql` on one partition's tables (`{part}` as in [`part_sql`]), or with
/// no partition on the whole tables (`_{part}` left out); made once per
/// statement and partition.
fn tables_sql(sql: &'static str, part: Option<u32>) -> &'static str {
    type Made = std::sync::Mutex<HashMap<(&'static str, Option<u32>), &'static str>>;
    static MADE: std::sync::OnceLock<Made> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(Made::default);
    let mut made = made
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let part = part.map(|part| part.min(PARTITIONS - 1));
    made.entry((sql, part)).or_insert_with(|| {
        // A bounded set: a few statements times sixteen partitions.
        let made = match part {
            Some(part) => sql.replace("{part}", &part.to_string()),
            None => sql.replace("_{part}", ""),
        };
        Box::leak(made.into_boxed_str())
    })
}

/// A key for PostgreSQL's advisory locks, made from a name (FNV-1a of its
/// bytes): every journeyc takes the same lock for the same name.
const fn lock_key(name: &str) -> i64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    i64::from_be_bytes(hash.to_be_bytes())
}

/// Held, for the session, by the connection of the `journeyc run` at work.
const RUN_LOCK: i64 = lock_key("journeyc run");
/// Held, for one transaction, by an import or a run's batch.
const WRITE_LOCK: i64 = lock_key("journeyc write");
/// Held, for one transaction, while a night is opened or closed.
const NIGHT_LOCK: i64 = lock_key("journeyc night");
/// With a partition's number, held for the session by the worker at work
/// on that partition of the open night; PostgreSQL lets go of it when the
/// worker's connection ends, however it ends.
const PART_LOCK: i32 = 0x6a63_7074;
/// Held while the schema is checked and migrated, so that two journeycs
/// starting at once do not both migrate.
const MIGRATE_LOCK: i64 = lock_key("journeyc migrate");

/// The columns an [`Enrolment`] is read from, in [`enrolment`]'s order.
macro_rules! enrolment_columns {
    () => {
        "id, journey, version, state, step, step_print, due_at, entered_at, ended_at, event_id, data"
    };
}

/// The columns an [`OutboxRow`] is read from (outbox as `o`), in
/// [`outbox_row`]'s order; [`OUTBOX_WIDTH`] of them.
macro_rules! outbox_columns {
    () => {
        "o.key, o.contact_id, o.journey, o.channel, o.template, o.kind, o.send_at, o.expires_at, o.status, o.planned_at, o.note"
    };
}

/// The number of columns in [`outbox_columns`].
const OUTBOX_WIDTH: usize = 11;

/// Statements prepared on the connection, by their SQL: each is parsed and
/// planned once per connection, as SQLite's `prepare_cached` does.
type Prepared = HashMap<&'static str, Statement>;

pub struct PostgresStore {
    /// The store's `&self` reads need the connection mutably: a query on
    /// it is a `&mut` call. Nothing runs while a read holds it but the
    /// read itself, so it is never borrowed twice.
    client: RefCell<Client>,
    prepared: RefCell<Prepared>,
    /// How to connect again (the run lock takes a connection of its own).
    config: Config,
    /// TLS for connections over TCP.
    tls: MakeRustlsConnect,
    /// The URL without its password, for messages.
    shown: String,
}

/// A failure of PostgreSQL (or of the connection to it).
fn database(error: ::postgres::Error) -> StoreError {
    StoreError::Database(Box::new(error))
}

fn open_error(shown: &str, source: Cause) -> StoreError {
    StoreError::Open {
        path: PathBuf::from(shown),
        source,
    }
}

/// A statement of a transaction failed and PostgreSQL ended the
/// transaction there, so its other writes cannot be committed either.
#[derive(Debug)]
struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a statement of the transaction failed, so PostgreSQL rolled all of it back")
    }
}

impl std::error::Error for Aborted {}

/// What queries run on: the connection, or a transaction on it, with the
/// connection's prepared statements.
struct Db<'a, C> {
    client: &'a mut C,
    prepared: &'a mut Prepared,
    /// Set when a statement fails: PostgreSQL then refuses the rest of
    /// the transaction, and its commit would be a rollback.
    failed: &'a mut bool,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> Db<'_, C> {
    fn failure(&mut self, error: ::postgres::Error) -> StoreError {
        *self.failed = true;
        database(error)
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .prepare(sql)
            .map_err(|error| self.failure(error))?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.client
            .query(&statement, params)
            .map_err(|error| self.failure(error))
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.client
            .query_opt(&statement, params)
            .map_err(|error| self.failure(error))
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, StoreError> {
        let statement = self.statement(sql)?;
        self.client
            .query_one(&statement, params)
            .map_err(|error| self.failure(error))
    }

    /// Runs a statement; returns how many rows it wrote.
    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        self.client
            .execute(&statement, params)
            .map_err(|error| self.failure(error))
    }
}

/// One transaction on the store's connection.
struct Work<'t> {
    transaction: Transaction<'t>,
    prepared: &'t mut Prepared,
    failed: bool,
}

impl<'t> Work<'t> {
    fn db(&mut self) -> Db<'_, Transaction<'t>> {
        Db {
            client: &mut self.transaction,
            prepared: &mut *self.prepared,
            failed: &mut self.failed,
        }
    }

    /// Commits, or rolls back when `commit` is false.
    fn finish(self, commit: bool) -> Result<(), StoreError> {
        if !commit {
            return self.transaction.rollback().map_err(database);
        }
        if self.failed {
            self.transaction.rollback().map_err(database)?;
            return Err(StoreError::Database(Box::new(Aborted)));
        }
        self.transaction.commit().map_err(database)
    }
}

/// A column read as `T`; a column that does not hold one is a row this
/// journeyc cannot read.
fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|error| StoreError::Corrupt(Box::new(error)))
}

fn time(row: &Row, index: usize) -> Result<Timestamp, StoreError> {
    get::<i64>(row, index).map(Timestamp::from_seconds)
}

fn optional_time(row: &Row, index: usize) -> Result<Option<Timestamp>, StoreError> {
    get::<Option<i64>>(row, index).map(|seconds| seconds.map(Timestamp::from_seconds))
}

fn count(row: &Row, index: usize) -> Result<u64, StoreError> {
    get::<i64>(row, index).map(|count| u64::try_from(count).unwrap_or(0))
}

fn parsed<T: std::str::FromStr>(row: &Row, index: usize) -> Result<T, StoreError>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    get::<&str>(row, index)?
        .parse()
        .map_err(|error| StoreError::Corrupt(Box::new(error)))
}

fn unknown(text: &str) -> StoreError {
    StoreError::Corrupt(Box::new(crate::model::UnknownState(text.to_string())))
}

fn channel_of(row: &Row, index: usize) -> Result<Channel, StoreError> {
    let text: &str = get(row, index)?;
    Channel::ALL
        .iter()
        .copied()
        .find(|channel| channel.as_str() == text)
        .ok_or_else(|| unknown(text))
}

fn kind_of(row: &Row, index: usize) -> Result<MessageKind, StoreError> {
    match get::<&str>(row, index)? {
        "transactional" => Ok(MessageKind::Transactional),
        "marketing" => Ok(MessageKind::Marketing),
        other => Err(unknown(other)),
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

fn parse_object(text: &str) -> Map<String, Json> {
    match serde_json::from_str(text) {
        Ok(Json::Object(object)) => object,
        _ => Map::new(),
    }
}

/// Where the URL's query (after `?`) starts, if it has one.
fn query_start(url: &str) -> Option<usize> {
    url.find('?')
}

/// The URL as messages show it: without a password, whether it is in the
/// user part (`user:secret@`) or the query (`password=secret`). A
/// key-value connection string (`host=... password=...`) shows as its
/// user, hosts and database only.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.parse::<Config>() {
            Ok(config) => format!(
                "PostgreSQL database `{}` of `{}`",
                config.get_dbname().unwrap_or(""),
                config.get_user().unwrap_or("")
            ),
            Err(_) => "a PostgreSQL connection string".to_string(),
        };
    };
    // As the parser reads it: the credentials end at the first `@`, the
    // password starts at their first `:`.
    let rest = match rest.split_once('@') {
        Some((credentials, after)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            format!("{user}@{after}")
        }
        None => rest.to_string(),
    };
    let (rest, query) = match query_start(&rest) {
        Some(start) => (&rest[..start], Some(&rest[start + 1..])),
        None => (rest.as_str(), None),
    };
    let mut shown = format!("{scheme}://{rest}");
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| pair.split('=').next() != Some("password"))
            .collect();
        if !kept.is_empty() {
            shown.push('?');
            shown.push_str(&kept.join("&"));
        }
    }
    shown
}

/// The URL as libpq reads it: a `host` in the query replaces the host of
/// the URL (`postgres://me@localhost/db?host=/run/postgresql` is the
/// socket in `/run/postgresql` only, not `localhost` first), and the
/// URL's port stays. The `postgres` crate would try both hosts in turn.
fn with_libpq_hosts(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some(start) = query_start(rest) else {
        return url.to_string();
    };
    let (before, query) = (&rest[..start], &rest[start + 1..]);
    let keys: Vec<&str> = query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or(""))
        .collect();
    if !keys.contains(&"host") {
        return url.to_string();
    }
    let (credentials, after) = match before.split_once('@') {
        Some((credentials, after)) => (Some(credentials), after),
        None => (None, before),
    };
    let (hosts, path) = match after.find('/') {
        Some(slash) => after.split_at(slash),
        None => (after, ""),
    };
    let ports: Vec<&str> = hosts
        .split(',')
        .filter_map(|host| {
            let port = match host.strip_prefix('[') {
                Some(bracketed) => bracketed.split_once("]:").map(|(_, port)| port),
                None => host.split_once(':').map(|(_, port)| port),
            };
            port.filter(|port| !port.is_empty())
        })
        .collect();
    let mut rewritten = format!("{scheme}://");
    if let Some(credentials) = credentials {
        rewritten.push_str(credentials);
        rewritten.push('@');
    }
    rewritten.push_str(path);
    rewritten.push('?');
    rewritten.push_str(query);
    if !ports.is_empty() && !keys.contains(&"port") {
        rewritten.push_str("&port=");
        rewritten.push_str(&ports.join(","));
    }
    rewritten
}

/// The connection that holds the run lock. Dropping it unlocks at once
/// (closing the connection would too, but the server notices a moment
/// later); if the process dies, the server frees the lock with the
/// connection.
/// `sslrootcert=PATH` taken out of a libpq URL (the `postgres` crate does
/// not know the option; journeyc reads the file itself), and the URL
/// without it.
fn split_root_cert(url: &str) -> (String, Option<PathBuf>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(PathBuf::from(path));
                false
            }
            None => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), root)
    } else {
        (format!("{base}?{}", kept.join("&")), root)
    }
}

/// TLS for connections over TCP (`sslmode=prefer`, the default, or
/// `require`): rustls, verifying the server's certificate against the web's
/// roots, or against the CA in `sslrootcert` (a company CA). A connection
/// over a Unix socket uses none.
fn tls(
    root: Option<&Path>,
    shown: &str,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject as _;
    let failed = |source: Cause| StoreError::Open {
        path: PathBuf::from(shown),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certificates =
                rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|error| {
                    failed(format!("sslrootcert `{}`: {error}", path.display()).into())
                })?;
            for certificate in certificates {
                let certificate = certificate.map_err(|error| {
                    failed(format!("sslrootcert `{}`: {error}", path.display()).into())
                })?;
                roots
                    .add(certificate)
                    .map_err(|error| failed(Box::new(error)))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| failed(Box::new(error)))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A connection as the URL's `sslmode` asks: `disable` in the clear, else
/// over TLS where the server is reached over TCP (`require` refuses a
/// server without it; `prefer`, the default, takes the clear only from a
/// server that offers no TLS). The server's certificate is always checked.
fn open(config: &Config, tls: &MakeRustlsConnect) -> Result<Client, ::postgres::Error> {
    let local = config
        .get_hosts()
        .iter()
        .all(|host| matches!(host, ::postgres::config::Host::Unix(_)));
    // A Unix socket never carries TLS (and has no name to check).
    if local || config.get_ssl_mode() == ::postgres::config::SslMode::Disable {
        config.connect(NoTls)
    } else {
        config.connect(tls.clone())
    }
}

struct RunLock {
    client: Client,
    shared: bool,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Should the unlock fail, closing the connection right after
        // frees the lock all the same.
        let unlock = if self.shared {
            "SELECT pg_advisory_unlock_shared($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        let _ = self.client.execute(unlock, &[&RUN_LOCK]);
    }
}

impl PostgresStore {
    /// The run lock on a connection of its own, shared among workers or
    /// alone.
    fn run_lock(&self, shared: bool) -> Result<RunGuard, StoreError> {
        let mut client = open(&self.config, &self.tls)
            .map_err(|error| open_error(&self.shown, Box::new(error)))?;
        let sql = if shared {
            "SELECT pg_try_advisory_lock_shared($1)"
        } else {
            "SELECT pg_try_advisory_lock($1)"
        };
        let locked: bool = client
            .query_one(sql, &[&RUN_LOCK])
            .map_err(database)
            .and_then(|row| get(&row, 0))?;
        if locked {
            Ok(RunGuard::new(RunLock { client, shared }))
        } else {
            Err(StoreError::Locked {
                store: self.shown.clone(),
            })
        }
    }
}

impl super::Backend for PostgresStore {
    /// A session-level advisory lock, held by a connection of its own
    /// that the guard keeps.
    fn lock_run(&self) -> Result<RunGuard, StoreError> {
        self.run_lock(false)
    }

    /// The same lock, shared: workers of a night hold it together.
    fn lock_worker(&self) -> Result<RunGuard, StoreError> {
        self.run_lock(true)
    }

    fn reopen(&self) -> Result<Box<dyn super::Backend>, StoreError> {
        let client = open(&self.config, &self.tls)
            .map_err(|error| open_error(&self.shown, Box::new(error)))?;
        Ok(Box::new(PostgresStore {
            client: RefCell::new(client),
            prepared: RefCell::default(),
            config: self.config.clone(),
            tls: self.tls.clone(),
            shown: self.shown.clone(),
        }))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

impl PostgresStore {
    /// Connects to the database a libpq URL names, with `password` if
    /// given, and brings its schema up to date.
    pub fn connect(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let shown = without_password(url);
        let (url, root) = split_root_cert(url);
        let mut config: Config = with_libpq_hosts(&url)
            .parse()
            .map_err(|error: ::postgres::Error| open_error(&shown, Box::new(error)))?;
        if let Some(password) = password {
            config.password(password);
        }
        let tls = tls(root.as_deref(), &shown)?;
        let client = open(&config, &tls).map_err(|error| open_error(&shown, Box::new(error)))?;
        let mut store = PostgresStore {
            client: RefCell::new(client),
            prepared: RefCell::default(),
            config,
            tls,
            shown,
        };
        store.migrate().map_err(|error| match error {
            StoreError::Database(source) => open_error(&store.shown, source),
            other => other,
        })?;
        Ok(store)
    }

    /// Runs `read` on the connection, outside any transaction.
    fn read<T>(
        &self,
        read: impl FnOnce(&mut Db<'_, Client>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.borrow_mut();
        let mut prepared = self.prepared.borrow_mut();
        let mut failed = false;
        read(&mut Db {
            client: &mut *client,
            prepared: &mut prepared,
            failed: &mut failed,
        })
    }

    /// Begins a transaction.
    fn work(&mut self) -> Result<Work<'_>, StoreError> {
        let transaction = self.client.get_mut().transaction().map_err(database)?;
        Ok(Work {
            transaction,
            prepared: self.prepared.get_mut(),
            failed: false,
        })
    }

    /// Begins a transaction that writes as SQLite's writers do: one at a
    /// time.
    fn write(&mut self) -> Result<Work<'_>, StoreError> {
        let mut work = self.work()?;
        work.db()
            .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        Ok(work)
    }

    /// The schema version this store is at.
    pub fn version(&self) -> Result<i64, StoreError> {
        self.read(|db| {
            let row = db.query_one("SELECT COALESCE(MAX(version), 0) FROM journeyc_schema", &[])?;
            get::<i32>(&row, 0).map(i64::from)
        })
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        let shown = PathBuf::from(&self.shown);
        loop {
            let mut work = self.work()?;
            let current = {
                let mut db = work.db();
                db.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
                db.client
                    .batch_execute(
                        "CREATE TABLE IF NOT EXISTS journeyc_schema (version INT NOT NULL)",
                    )
                    .map_err(database)?;
                let row =
                    db.query_one("SELECT COALESCE(MAX(version), 0) FROM journeyc_schema", &[])?;
                i64::from(get::<i32>(&row, 0)?)
            };
            if current > supported {
                return Err(StoreError::TooNew {
                    path: shown,
                    version: current,
                    supported,
                });
            }
            let Some(migration) = usize::try_from(current)
                .ok()
                .and_then(|current| MIGRATIONS.get(current))
            else {
                return work.finish(true);
            };
            let next = i32::try_from(current + 1).unwrap_or(i32::MAX);
            work.transaction
                .batch_execute(migration)
                .map_err(database)?;
            let mut db = work.db();
            db.execute("DELETE FROM journeyc_schema", &[])?;
            db.execute(
                "INSERT INTO journeyc_schema (version) VALUES ($1)",
                &[&next],
            )?;
            work.finish(true)?;
        }
    }
}

fn read_contact<C: GenericClient>(
    db: &mut Db<'_, C>,
    sql: &'static str,
    id: &str,
) -> Result<Option<Contact>, StoreError> {
    let Some(row) = db.query_opt(sql, &[&id])? else {
        return Ok(None);
    };
    Ok(Some(Contact {
        id: id.to_string(),
        fields: parse_object(get(&row, 0)?),
    }))
}

const CONTACT: &str = "SELECT data FROM contacts WHERE id = $1";

fn touch_mark<C: GenericClient>(db: &mut Db<'_, C>) -> Result<i64, StoreError> {
    let row = db.query_one("SELECT COALESCE(MAX(touched), 0) FROM contacts", &[])?;
    get(&row, 0)
}

fn contact_of(row: &Row) -> Result<Contact, StoreError> {
    Ok(Contact {
        id: get(row, 0)?,
        fields: parse_object(get(row, 1)?),
    })
}

/// The columns a [`Night`] is read from, in [`night_of`]'s order.
macro_rules! night_columns {
    () => {
        "id, now, run_seq, mark, touched_after, fingerprint, started_at"
    };
}

/// Every `(table, column)` of the store's own tables (partitions and the
/// schema version aside), for [`copy::check_schema`].
fn columns(transaction: &mut Transaction<'_>) -> Result<Vec<(String, String)>, StoreError> {
    let rows = transaction
        .query(
            "SELECT c.relname::TEXT, a.attname::TEXT
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
               AND NOT c.relispartition AND c.relname <> 'journeyc_schema'
               AND a.attnum > 0 AND NOT a.attisdropped",
            &[],
        )
        .map_err(database)?;
    rows.iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect()
}

/// A row of `table` as cells (booleans as 1 and 0).
fn cells_of(table: &copy::Table, row: &Row) -> Result<Vec<copy::Cell>, StoreError> {
    let cell = |index: usize, kind: copy::Kind| -> Result<copy::Cell, StoreError> {
        Ok(match kind {
            copy::Kind::Int => {
                get::<Option<i64>>(row, index)?.map_or(copy::Cell::Null, copy::Cell::Int)
            }
            copy::Kind::Int4 => get::<Option<i32>>(row, index)?
                .map_or(copy::Cell::Null, |value| copy::Cell::Int(value.into())),
            copy::Kind::Bool => get::<Option<bool>>(row, index)?
                .map_or(copy::Cell::Null, |value| copy::Cell::Int(value.into())),
            copy::Kind::Text => {
                get::<Option<String>>(row, index)?.map_or(copy::Cell::Null, copy::Cell::Text)
            }
        })
    };
    table
        .columns
        .iter()
        .enumerate()
        .map(|(index, (_, kind))| cell(index, *kind))
        .collect()
}

/// Cells as the values of `table`'s column types.
fn typed(
    table: &copy::Table,
    row: Vec<copy::Cell>,
) -> Result<Vec<Box<dyn ToSql + Sync>>, StoreError> {
    table
        .columns
        .iter()
        .zip(row)
        .map(
            |((name, kind), cell)| -> Result<Box<dyn ToSql + Sync>, StoreError> {
                let wrong = || {
                    StoreError::CannotCopy(format!(
                        "`{}.{name}` holds {cell:?}, not a {kind:?}",
                        table.name
                    ))
                };
                Ok(match (kind, &cell) {
                    (copy::Kind::Int, copy::Cell::Null) => Box::new(None::<i64>),
                    (copy::Kind::Int4, copy::Cell::Null) => Box::new(None::<i32>),
                    (copy::Kind::Bool, copy::Cell::Null) => Box::new(None::<bool>),
                    (copy::Kind::Text, copy::Cell::Null) => Box::new(None::<String>),
                    (copy::Kind::Int, copy::Cell::Int(value)) => Box::new(*value),
                    (copy::Kind::Int4, copy::Cell::Int(value)) => {
                        Box::new(i32::try_from(*value).map_err(|_| wrong())?)
                    }
                    (copy::Kind::Bool, copy::Cell::Int(value)) => Box::new(*value != 0),
                    (copy::Kind::Text, copy::Cell::Text(text)) => Box::new(text.clone()),
                    _ => return Err(wrong()),
                })
            },
        )
        .collect()
}

fn night_of(row: &Row) -> Result<Night, StoreError> {
    Ok(Night {
        id: get(row, 0)?,
        now: time(row, 1)?,
        run_seq: get(row, 2)?,
        mark: get(row, 3)?,
        visit: match get::<Option<i64>>(row, 4)? {
            Some(touched_after) => Visit::Due { touched_after },
            None => Visit::Everyone,
        },
        fingerprint: get(row, 5)?,
        started_at: time(row, 6)?,
    })
}

fn write_progress<C: GenericClient>(
    db: &mut Db<'_, C>,
    progress: &[Progress],
) -> Result<(), StoreError> {
    for journey in progress {
        db.execute(
            "INSERT INTO journey_progress (journey, deployed_at, until, seen_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT (journey) DO UPDATE SET until = excluded.until, seen_seq = excluded.seen_seq",
            &[
                &journey.journey,
                &journey.deployed_at.seconds(),
                &journey.until.seconds(),
                &journey.seen_seq,
            ],
        )?;
    }
    Ok(())
}

fn write_run<C: GenericClient>(db: &mut Db<'_, C>, run: &RunRecord) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO runs (now, started_at, finished_at, summary) VALUES ($1, $2, $3, $4)",
        &[
            &run.now.seconds(),
            &run.started_at.seconds(),
            &now_seconds(),
            &run.summary,
        ],
    )?;
    Ok(())
}

fn night_counts<C: GenericClient>(
    db: &mut Db<'_, C>,
    night: i64,
) -> Result<Vec<String>, StoreError> {
    db.query(
        "SELECT counts FROM night_parts WHERE night = $1 ORDER BY part",
        &[&night],
    )?
    .iter()
    .map(|row| get(row, 0))
    .collect()
}

fn last_seq<C: GenericClient>(db: &mut Db<'_, C>) -> Result<i64, StoreError> {
    let row = db.query_one("SELECT COALESCE(MAX(seq), 0) FROM events", &[])?;
    get(&row, 0)
}

fn read_events<C: GenericClient>(
    db: &mut Db<'_, C>,
    contact_id: &str,
    through_seq: i64,
) -> Result<Vec<Event>, StoreError> {
    db.query(
        "SELECT id, name, at, seq, properties FROM events WHERE contact_id = $1 AND seq <= $2 ORDER BY at, id",
        &[&contact_id, &through_seq],
    )?
    .iter()
    .map(|row| {
        Ok(Event {
            id: get(row, 0)?,
            contact_id: contact_id.to_string(),
            name: get(row, 1)?,
            at: time(row, 2)?,
            seq: get(row, 3)?,
            properties: crate::store::Properties::from_text(get(row, 4)?),
        })
    })
    .collect()
}

/// Whether the address was on the channel's suppression list at `at`.
fn is_suppressed<C: GenericClient>(
    db: &mut Db<'_, C>,
    address: &str,
    channel: Channel,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let row = db.query_opt(
        "SELECT 1 FROM suppressions WHERE address = $1 AND channel = $2 AND at <= $3",
        &[
            &super::normalize_address(channel, address),
            &channel.as_str(),
            &at.seconds(),
        ],
    )?;
    Ok(row.is_some())
}

fn insert_suppression<C: GenericClient>(
    db: &mut Db<'_, C>,
    suppression: &Suppression,
) -> Result<bool, StoreError> {
    // An address is suppressed from its earliest unsubscribe, bounce or
    // complaint, whatever order the provider's exports arrive in.
    let written = db.execute(
        "INSERT INTO suppressions (address, channel, reason, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (address, channel) DO UPDATE SET at = excluded.at, reason = excluded.reason
         WHERE excluded.at < suppressions.at",
        &[
            &suppression.address,
            &suppression.channel.as_str(),
            &suppression.reason,
            &suppression.at.seconds(),
        ],
    )?;
    Ok(written == 1)
}

/// A contact's marketing sends on a channel from `from` on, as `sql`
/// (over contact, channel and time, selecting journey and time) finds them.
fn marketing_sends<C: GenericClient>(
    db: &mut Db<'_, C>,
    sql: &'static str,
    contact_id: &str,
    channel: Channel,
    from: Timestamp,
) -> Result<Vec<Scheduled>, StoreError> {
    db.query(sql, &[&contact_id, &channel.as_str(), &from.seconds()])?
        .iter()
        .map(|row| {
            Ok(Scheduled {
                journey: get(row, 0)?,
                at: time(row, 1)?,
            })
        })
        .collect()
}

/// A binary `COPY ... FROM STDIN` on the transaction, its rows of `types`.
fn copy_writer<'a>(
    transaction: &'a mut Transaction<'_>,
    sql: &str,
    types: &[Type],
) -> Result<::postgres::binary_copy::BinaryCopyInWriter<'a>, StoreError> {
    let writer = transaction.copy_in(sql).map_err(database)?;
    Ok(::postgres::binary_copy::BinaryCopyInWriter::new(
        writer, types,
    ))
}

/// The columns an outbox row is written to, in [`outbox_values`]' order.
const OUTBOX_WRITTEN: &str = "key, enrolment_id, contact_id, journey, step, channel, template, kind, send_at, expires_at, status, planned_at, attempt_at, note";

/// The types of [`OUTBOX_WRITTEN`], for `COPY`.
const OUTBOX_TYPES: [Type; 14] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
];

/// A new outbox row's values for [`OUTBOX_WRITTEN`]: its first attempt is
/// at its `send_at`.
fn outbox_values(row: &OutboxRow) -> [Box<dyn ToSql + Sync + '_>; 14] {
    [
        Box::new(row.key.to_string()),
        Box::new(row.key.enrolment),
        Box::new(&row.contact_id),
        Box::new(&row.journey),
        Box::new(row.key.step.as_str()),
        Box::new(row.channel.as_str()),
        Box::new(&row.template),
        Box::new(kind_text(row.kind)),
        Box::new(row.send_at.seconds()),
        Box::new(row.expires_at.map(Timestamp::seconds)),
        Box::new(row.status.as_str()),
        Box::new(row.planned_at.seconds()),
        Box::new(row.send_at.seconds()),
        Box::new(&row.note),
    ]
}

/// The id a row refers to, a batch's provisional ones replaced by the
/// real ones.
fn resolve(real_ids: &HashMap<i64, i64>, id: i64) -> Result<i64, StoreError> {
    if id >= 0 {
        return Ok(id);
    }
    real_ids.get(&id).copied().ok_or(StoreError::Abandoned(
        "an enrolment id the batch never gave",
    ))
}

/// The types of [`enrolment_columns`], then `contact_id`, for `COPY`.
const ENROLMENT_TYPES: [Type; 12] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// One enrolment as a `COPY` row of [`ENROLMENT_TYPES`].
fn write_enrolment(
    writer: &mut ::postgres::binary_copy::BinaryCopyInWriter<'_>,
    enrolment: &Enrolment,
) -> Result<(), StoreError> {
    writer
        .write(&[
            &enrolment.id,
            &enrolment.journey,
            &enrolment.version,
            &enrolment.state.as_str(),
            &enrolment.step.as_str(),
            &enrolment.step_print,
            &enrolment.due_at.map(Timestamp::seconds),
            &enrolment.entered_at.seconds(),
            &enrolment.ended_at.map(Timestamp::seconds),
            &enrolment.event_id,
            &data_text(&enrolment.data),
            &enrolment.contact_id,
        ])
        .map_err(database)
}

/// Queues one outbox row; `false` when its key is already there.
fn queue_row<C: GenericClient>(db: &mut Db<'_, C>, row: &OutboxRow) -> Result<bool, StoreError> {
    let values = outbox_values(row);
    let values: Vec<&(dyn ToSql + Sync)> = values.iter().map(|value| &**value as _).collect();
    let inserted = db.execute(
        concat!(
            "INSERT INTO outbox (",
            "key, enrolment_id, contact_id, journey, step, channel, template, kind, send_at, expires_at, status, planned_at, attempt_at, note",
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (contact_id, key) DO NOTHING"
        ),
        &values,
    )?;
    Ok(inserted == 1)
}

fn enrolment(row: &Row, contact_id: &str) -> Result<Enrolment, StoreError> {
    enrolment_at(row, 0, contact_id)
}

/// An enrolment read from [`enrolment_columns`] starting at column `first`.
fn enrolment_at(row: &Row, first: usize, contact_id: &str) -> Result<Enrolment, StoreError> {
    Ok(Enrolment {
        id: get(row, first)?,
        contact_id: contact_id.to_string(),
        journey: get(row, first + 1)?,
        version: get(row, first + 2)?,
        state: parsed(row, first + 3)?,
        step: StepId::new(get::<String>(row, first + 4)?),
        step_print: get(row, first + 5)?,
        due_at: optional_time(row, first + 6)?,
        entered_at: time(row, first + 7)?,
        ended_at: optional_time(row, first + 8)?,
        event_id: get(row, first + 9)?,
        data: serde_json::from_str::<EnrolmentData>(get(row, first + 10)?)
            .map_err(|error| StoreError::Corrupt(Box::new(error)))?,
    })
}

fn data_text(data: &EnrolmentData) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_string())
}

fn outbox_row(row: &Row) -> Result<OutboxRow, StoreError> {
    let key: &str = get(row, 0)?;
    Ok(OutboxRow {
        key: OutboxKey::parse(key).ok_or_else(|| unknown(key))?,
        contact_id: get(row, 1)?,
        journey: get(row, 2)?,
        channel: channel_of(row, 3)?,
        template: get(row, 4)?,
        kind: kind_of(row, 5)?,
        send_at: time(row, 6)?,
        expires_at: optional_time(row, 7)?,
        status: parsed(row, 8)?,
        planned_at: time(row, 9)?,
        note: get(row, 10)?,
    })
}

fn attempts(row: &Row, index: usize) -> Result<u32, StoreError> {
    u32::try_from(get::<i32>(row, index)?).map_err(|error| StoreError::Corrupt(Box::new(error)))
}

fn delivered_at(row: &Row, first: usize) -> Result<Delivered, StoreError> {
    Ok(Delivered {
        attempts: attempts(row, first)?,
        sent_at: optional_time(row, first + 1)?,
        provider_id: get(row, first + 2)?,
        error: get(row, first + 3)?,
        note: get(row, first + 4)?,
    })
}

/// Rows an import holds before it writes them with `COPY` (when it reads
/// ahead, it writes at each chunk).
const IMPORT_FLUSH: usize = 10_000;

/// An import: rows are looked up a chunk at a time and written with
/// `COPY`, not a statement per row. The import holds the write lock
/// alone, so what it has looked up stays true until it commits.
struct Sink<'t> {
    work: Work<'t>,
    now: i64,
    next_seq: i64,
    /// The mark this import gives the contacts it touches.
    mark: i64,
    /// Contacts as stored or as this import leaves them; `None` for an id
    /// known not to be stored.
    known: HashMap<String, Option<Contact>>,
    /// Event ids known to be stored (`true`, this import's included) or
    /// known not to be (`false`).
    events_known: HashMap<String, bool>,
    /// Contacts to write, in order (an id may come twice: the last wins).
    contacts: Vec<Contact>,
    /// Events to write, with their `seq`.
    events: Vec<(Event, i64)>,
    /// Contacts given an event since the last flush.
    touched: Vec<String>,
}

impl Sink<'_> {
    fn new(work: Work<'_>, next_seq: i64, mark: i64) -> Sink<'_> {
        Sink {
            work,
            now: now_seconds(),
            next_seq,
            mark,
            known: HashMap::new(),
            events_known: HashMap::new(),
            contacts: Vec::new(),
            events: Vec::new(),
            touched: Vec::new(),
        }
    }

    /// Writes what the import holds: contacts through a staging table
    /// (upserted from it), events straight into `events`.
    fn flush(&mut self) -> Result<(), StoreError> {
        let result = self.write_held();
        if result.is_err() {
            self.work.failed = true;
        }
        result
    }

    fn write_held(&mut self) -> Result<(), StoreError> {
        use std::collections::HashSet;

        let transaction = &mut self.work.transaction;
        if !self.contacts.is_empty() {
            transaction
                .batch_execute(
                    "CREATE TEMP TABLE IF NOT EXISTS import_contacts (
                         id TEXT COLLATE \"C\" NOT NULL, data TEXT COLLATE \"C\" NOT NULL
                     ) ON COMMIT DROP;
                     TRUNCATE import_contacts",
                )
                .map_err(database)?;
            let mut written = HashSet::new();
            let mut writer = copy_writer(
                transaction,
                "COPY import_contacts (id, data) FROM STDIN (FORMAT binary)",
                &[Type::TEXT, Type::TEXT],
            )?;
            // The last write of an id is the one that counts.
            for contact in self.contacts.iter().rev() {
                if written.insert(contact.id.as_str()) {
                    let data = Json::Object(contact.fields.clone()).to_string();
                    writer.write(&[&contact.id, &data]).map_err(database)?;
                }
            }
            writer.finish().map_err(database)?;
            transaction
                .execute(
                    "INSERT INTO contacts (id, data, updated_at, touched)
                     SELECT id, data, $1, $2 FROM import_contacts
                     ON CONFLICT (id) DO UPDATE
                     SET data = excluded.data, updated_at = excluded.updated_at, touched = excluded.touched",
                    &[&self.now, &self.mark],
                )
                .map_err(database)?;
            self.contacts.clear();
        }
        if !self.events.is_empty() {
            let mut writer = copy_writer(transaction, "COPY events (id, contact_id, name, at, seq, properties) FROM STDIN (FORMAT binary)", &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                ])?;
            for (event, seq) in &self.events {
                let properties = Json::Object(event.properties.map().clone()).to_string();
                writer
                    .write(&[
                        &event.id,
                        &event.contact_id,
                        &event.name,
                        &event.at.seconds(),
                        seq,
                        &properties,
                    ])
                    .map_err(database)?;
            }
            writer.finish().map_err(database)?;
            self.events.clear();
        }
        if !self.touched.is_empty() {
            transaction
                .execute(
                    "UPDATE contacts SET touched = $2 WHERE id = ANY($1) AND touched < $2",
                    &[&self.touched, &self.mark],
                )
                .map_err(database)?;
            self.touched.clear();
        }
        Ok(())
    }

    fn held(&self) -> usize {
        self.contacts.len() + self.events.len()
    }
}

impl ImportSink for Sink<'_> {
    fn prefetch(&mut self, contacts: &[String], events: &[String]) -> Result<(), StoreError> {
        // One chunk at a time: what the last one wrote goes to the
        // database, and only the next one's rows are held, so memory stays
        // flat however long the file.
        self.flush()?;
        self.known.clear();
        self.events_known.clear();
        let contacts: Vec<&String> = contacts
            .iter()
            .filter(|id| !self.known.contains_key(id.as_str()))
            .collect();
        if !contacts.is_empty() {
            let rows = self.work.db().query(
                "SELECT id, data FROM contacts WHERE id = ANY($1)",
                &[&contacts],
            )?;
            for id in contacts {
                self.known.insert(id.clone(), None);
            }
            for row in rows {
                let id: String = get(&row, 0)?;
                let fields = parse_object(get(&row, 1)?);
                self.known.insert(id.clone(), Some(Contact { id, fields }));
            }
        }
        let events: Vec<&String> = events
            .iter()
            .filter(|id| !self.events_known.contains_key(id.as_str()))
            .collect();
        if !events.is_empty() {
            let rows = self
                .work
                .db()
                .query("SELECT id FROM events WHERE id = ANY($1)", &[&events])?;
            for id in events {
                self.events_known.insert(id.clone(), false);
            }
            for row in rows {
                self.events_known.insert(get(&row, 0)?, true);
            }
        }
        Ok(())
    }

    fn contact(&mut self, id: &str) -> Result<Option<Contact>, StoreError> {
        if let Some(known) = self.known.get(id) {
            return Ok(known.clone());
        }
        let contact = read_contact(&mut self.work.db(), CONTACT, id)?;
        self.known.insert(id.to_string(), contact.clone());
        Ok(contact)
    }

    fn put_contact(&mut self, contact: &Contact) -> Result<bool, StoreError> {
        let existed = self.contact(&contact.id)?.is_some();
        self.known.insert(contact.id.clone(), Some(contact.clone()));
        self.contacts.push(contact.clone());
        if self.held() >= IMPORT_FLUSH {
            self.flush()?;
        }
        Ok(!existed)
    }

    fn put_event(&mut self, event: &Event) -> Result<bool, StoreError> {
        let stored = match self.events_known.get(&event.id) {
            Some(stored) => *stored,
            None => self
                .work
                .db()
                .query_opt("SELECT 1 FROM events WHERE id = $1", &[&event.id])?
                .is_some(),
        };
        self.events_known.insert(event.id.clone(), true);
        if stored {
            return Ok(false);
        }
        // The import holds the write lock: the next `seq` is ours alone,
        // and no `seq` is skipped when an event is already stored.
        self.events.push((event.clone(), self.next_seq));
        self.next_seq += 1;
        self.touched.push(event.contact_id.clone());
        if self.held() >= IMPORT_FLUSH {
            self.flush()?;
        }
        Ok(true)
    }

    fn suppress(&mut self, suppression: &Suppression) -> Result<bool, StoreError> {
        insert_suppression(&mut self.work.db(), suppression)
    }
}

/// A page's events, latest enrolments and outbox, in three queries.
/// With `part`, the contacts are all of that partition, and the
/// partitioned tables are read in it alone: a list of ids given as a
/// parameter is otherwise looked up in all sixteen.
fn read_ahead<C: GenericClient>(
    db: &mut Db<'_, C>,
    part: Option<u32>,
    contacts: &[&str],
    through_seq: i64,
) -> Result<Ahead, StoreError> {
    let mut ahead = Ahead::new(contacts, through_seq);
    let rows = db.query(
        "SELECT contact_id, id, name, at, seq, properties FROM events
         WHERE contact_id = ANY($1) AND seq <= $2 ORDER BY contact_id, at, id",
        &[&contacts, &through_seq],
    )?;
    for row in &rows {
        let contact_id: String = get(row, 0)?;
        let event = Event {
            id: get(row, 1)?,
            name: get(row, 2)?,
            at: time(row, 3)?,
            seq: get(row, 4)?,
            properties: crate::store::Properties::from_text(get(row, 5)?),
            contact_id,
        };
        if let Some(events) = ahead.events.get_mut(&event.contact_id) {
            events.push(event);
        }
    }
    let rows = db.query(
        tables_sql(
            concat!(
                "SELECT contact_id, ",
                enrolment_columns!(),
                " FROM enrolments_{part} WHERE contact_id = ANY($1) AND id IN
                 (SELECT MAX(id) FROM enrolments_{part} WHERE contact_id = ANY($1) GROUP BY contact_id, journey)
                 ORDER BY contact_id, id"
            ),
            part,
        ),
        &[&contacts],
    )?;
    for row in &rows {
        let contact_id: String = get(row, 0)?;
        let enrolment = enrolment_at(row, 1, &contact_id)?;
        if let Some(enrolments) = ahead.enrolments.get_mut(&contact_id) {
            enrolments.push(enrolment);
        }
    }
    let rows = db.query(
        tables_sql(
            "SELECT contact_id, key, channel, journey, send_at,
                    kind = 'marketing' AND status IN ('pending', 'sending', 'sent')
             FROM outbox_{part} WHERE contact_id = ANY($1) ORDER BY contact_id, send_at, id",
            part,
        ),
        &[&contacts],
    )?;
    for row in &rows {
        let contact_id: String = get(row, 0)?;
        let sent = if get::<bool>(row, 5)? {
            Some((channel_of(row, 2)?, get(row, 3)?, get(row, 4)?))
        } else {
            None
        };
        ahead.hold(&contact_id, get(row, 1)?, sent);
    }
    Ok(ahead)
}

/// A run's batch: the page's events and enrolments read at once, the
/// rows nothing reads back within the batch (transitions, assignments,
/// wakes) held and written in bulk before it commits.
struct Batch<'t> {
    work: Work<'t>,
    /// The prefetched contacts' events and enrolments, taken by the first
    /// read (later reads, after the batch wrote, go to the database), and
    /// what their outbox holds (with what the batch queued for them).
    ahead: Ahead,
    transitions: Vec<Transition>,
    assignments: Vec<Assignment>,
    /// The last wake set per contact.
    wakes: HashMap<String, Option<i64>>,
    /// Edits of contacts' fields, in order: applied to the fields as they
    /// are when the batch writes.
    edits: Vec<(String, ContactEdit)>,
    /// The partition of the prefetched contacts.
    part: Option<u32>,
    /// Rows queued by the batch, written at its end.
    queued: Vec<OutboxRow>,
    /// Enrolments the batch inserted (with ids taken from the sequence)
    /// and, by id, those it updated that were there before.
    inserted: Vec<Enrolment>,
    inserted_at: HashMap<i64, usize>,
    updated: HashMap<i64, Enrolment>,
    /// The last provisional id given (they count down from -1), and the
    /// real id of each once written.
    last_provisional: i64,
    real_ids: HashMap<i64, i64>,
    /// Per normalized address and channel: since when it is suppressed.
    suppressions: HashMap<(String, Channel), Option<i64>>,
}

impl<'t> Batch<'t> {
    fn new(work: Work<'t>) -> Self {
        Batch {
            work,
            ahead: Ahead {
                through_seq: -1,
                ..Ahead::default()
            },
            transitions: Vec::new(),
            assignments: Vec::new(),
            wakes: HashMap::new(),
            edits: Vec::new(),
            part: None,
            queued: Vec::new(),
            inserted: Vec::new(),
            inserted_at: HashMap::new(),
            updated: HashMap::new(),
            last_provisional: 0,
            real_ids: HashMap::new(),
            suppressions: HashMap::new(),
        }
    }

    /// The id a batch's new enrolment has until the batch writes it: the
    /// sequence gives the real ones then, in the order the enrolments
    /// were made, with no gaps.
    fn provisional_id(&mut self) -> i64 {
        self.last_provisional -= 1;
        self.last_provisional
    }

    /// Writes what the batch holds; a failure marks the transaction
    /// failed, so it cannot commit.
    fn flush(&mut self) -> Result<(), StoreError> {
        let result = self.write_held();
        if result.is_err() {
            self.work.failed = true;
        }
        result
    }

    fn write_held(&mut self) -> Result<(), StoreError> {
        self.inserted_at.clear();
        if !self.inserted.is_empty() {
            let count = i64::try_from(self.inserted.len()).unwrap_or(i64::MAX);
            let rows = self.work.db().query(
                "SELECT nextval('enrolments_id') FROM generate_series(1, $1::BIGINT) ORDER BY 1",
                &[&count],
            )?;
            for (enrolment, row) in self.inserted.iter_mut().zip(&rows) {
                let real: i64 = get(row, 0)?;
                self.real_ids.insert(enrolment.id, real);
                enrolment.id = real;
            }
        }
        let real = &self.real_ids;
        for transition in &mut self.transitions {
            transition.enrolment_id = resolve(real, transition.enrolment_id)?;
        }
        for assignment in &mut self.assignments {
            assignment.enrolment_id = resolve(real, assignment.enrolment_id)?;
        }
        for row in &mut self.queued {
            row.key = OutboxKey::new(resolve(real, row.key.enrolment)?, row.key.step.clone());
        }
        let updated: Vec<Enrolment> = self
            .updated
            .drain()
            .map(|(_, mut enrolment)| {
                enrolment.id = resolve(real, enrolment.id)?;
                Ok(enrolment)
            })
            .collect::<Result<_, StoreError>>()?;
        let transaction = &mut self.work.transaction;
        if !self.inserted.is_empty() {
            let mut writer = copy_writer(
                transaction,
                concat!(
                    "COPY enrolments (",
                    enrolment_columns!(),
                    ", contact_id) FROM STDIN (FORMAT binary)"
                ),
                &ENROLMENT_TYPES,
            )?;
            for enrolment in self.inserted.drain(..) {
                write_enrolment(&mut writer, &enrolment)?;
            }
            writer.finish().map_err(database)?;
        }
        if !updated.is_empty() {
            transaction
                .batch_execute(
                    "CREATE TEMP TABLE IF NOT EXISTS batch_enrolments (LIKE enrolments) ON COMMIT DELETE ROWS;
                     TRUNCATE batch_enrolments",
                )
                .map_err(database)?;
            let mut writer = copy_writer(
                transaction,
                concat!(
                    "COPY batch_enrolments (",
                    enrolment_columns!(),
                    ", contact_id) FROM STDIN (FORMAT binary)"
                ),
                &ENROLMENT_TYPES,
            )?;
            for enrolment in &updated {
                write_enrolment(&mut writer, enrolment)?;
            }
            writer.finish().map_err(database)?;
            transaction
                .execute(
                    "UPDATE enrolments SET version = b.version, state = b.state, step = b.step,
                         step_print = b.step_print, due_at = b.due_at, ended_at = b.ended_at,
                         event_id = b.event_id, data = b.data
                     FROM batch_enrolments b
                     WHERE enrolments.contact_id = b.contact_id AND enrolments.id = b.id",
                    &[],
                )
                .map_err(database)?;
        }
        if !self.queued.is_empty() {
            let sql = format!("COPY outbox ({OUTBOX_WRITTEN}) FROM STDIN (FORMAT binary)");
            let mut writer = copy_writer(transaction, &sql, &OUTBOX_TYPES)?;
            for row in self.queued.drain(..) {
                let values = outbox_values(&row);
                let values: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|value| &**value as _).collect();
                writer.write(&values).map_err(database)?;
            }
            writer.finish().map_err(database)?;
        }
        if !self.transitions.is_empty() {
            let mut writer = copy_writer(transaction, "COPY transitions (enrolment_id, contact_id, journey, from_step, to_step, reason, at) FROM STDIN (FORMAT binary)", &[
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                ])?;
            for transition in self.transitions.drain(..) {
                writer
                    .write(&[
                        &transition.enrolment_id,
                        &transition.contact_id,
                        &transition.journey,
                        &transition.from_step.as_ref().map(StepId::as_str),
                        &transition.to_step.as_ref().map(StepId::as_str),
                        &transition.reason,
                        &transition.at.seconds(),
                    ])
                    .map_err(database)?;
            }
            writer.finish().map_err(database)?;
        }
        if !self.assignments.is_empty() {
            let assignments = std::mem::take(&mut self.assignments);
            let enrolments: Vec<i64> = assignments.iter().map(|a| a.enrolment_id).collect();
            let tests: Vec<&str> = assignments.iter().map(|a| a.test.as_str()).collect();
            let arms: Vec<&str> = assignments.iter().map(|a| a.arm.as_str()).collect();
            let times: Vec<i64> = assignments.iter().map(|a| a.at.seconds()).collect();
            transaction
                .execute(
                    "INSERT INTO assignments (enrolment_id, test, arm, at)
                     SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
                     ON CONFLICT DO NOTHING",
                    &[&enrolments, &tests, &arms, &times],
                )
                .map_err(database)?;
        }
        if !self.edits.is_empty() {
            // The edited contacts read and locked at once, edited in the
            // order the batch made the edits, and written back at once.
            let edits = std::mem::take(&mut self.edits);
            let ids: Vec<&str> = edits.iter().map(|(id, _)| id.as_str()).collect();
            let rows = transaction
                .query(
                    tables_sql(
                        "SELECT id, data FROM contacts_{part} WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                        self.part,
                    ),
                    &[&ids],
                )
                .map_err(database)?;
            let mut fields: HashMap<String, Map<String, Json>> = HashMap::new();
            for row in &rows {
                let contact = contact_of(row)?;
                fields.insert(contact.id, contact.fields);
            }
            for (id, edit) in &edits {
                if let Some(fields) = fields.get_mut(id) {
                    edit(fields);
                }
            }
            let (ids, texts): (Vec<String>, Vec<String>) = fields
                .into_iter()
                .map(|(id, fields)| (id, Json::Object(fields).to_string()))
                .unzip();
            transaction
                .execute(
                    tables_sql(
                        "UPDATE contacts_{part} AS contacts SET data = edited.data, updated_at = $3
                         FROM unnest($1::TEXT[], $2::TEXT[]) AS edited (id, data)
                         WHERE contacts.id = edited.id",
                        self.part,
                    ),
                    &[&ids, &texts, &now_seconds()],
                )
                .map_err(database)?;
        }
        if !self.wakes.is_empty() {
            let (ids, wakes): (Vec<String>, Vec<Option<i64>>) = self.wakes.drain().unzip();
            transaction
                .execute(
                    tables_sql(
                        "UPDATE contacts_{part} AS contacts SET wake_at = wake.at
                         FROM unnest($1::TEXT[], $2::BIGINT[]) AS wake (id, at)
                         WHERE contacts.id = wake.id AND contacts.wake_at IS DISTINCT FROM wake.at",
                        self.part,
                    ),
                    &[&ids, &wakes],
                )
                .map_err(database)?;
        }
        Ok(())
    }
}

impl RunBatch for Batch<'_> {
    fn prefetch(
        &mut self,
        part: u32,
        contacts: &[&str],
        through_seq: i64,
    ) -> Result<(), StoreError> {
        self.ahead = read_ahead(&mut self.work.db(), Some(part), contacts, through_seq)?;
        self.part = Some(part);
        Ok(())
    }

    fn events_of(&mut self, contact_id: &str, through_seq: i64) -> Result<Vec<Event>, StoreError> {
        if through_seq == self.ahead.through_seq {
            if let Some(events) = self.ahead.events.remove(contact_id) {
                return Ok(events);
            }
        }
        read_events(&mut self.work.db(), contact_id, through_seq)
    }

    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        if let Some(enrolments) = self.ahead.enrolments.remove(contact_id) {
            return Ok(enrolments);
        }
        // What the batch holds must be in the database for it to answer.
        self.flush()?;
        // Only the latest enrolment per journey: older ones are history,
        // and reading them made every night slower than the last.
        self.work
            .db()
            .query(
                concat!(
                    "SELECT ",
                    enrolment_columns!(),
                    " FROM enrolments WHERE contact_id = $1 AND id IN
                     (SELECT MAX(id) FROM enrolments WHERE contact_id = $1 GROUP BY journey) ORDER BY id"
                ),
                &[&contact_id],
            )?
            .iter()
            .map(|row| enrolment(row, contact_id))
            .collect()
    }

    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError> {
        let id = self.provisional_id();
        self.inserted_at.insert(id, self.inserted.len());
        self.inserted.push(Enrolment {
            id,
            ..enrolment.clone()
        });
        Ok(id)
    }

    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError> {
        match self.inserted_at.get(&enrolment.id) {
            Some(index) => self.inserted[*index] = enrolment.clone(),
            None => {
                self.updated.insert(enrolment.id, enrolment.clone());
            }
        }
        Ok(())
    }

    fn record(&mut self, transition: &Transition) -> Result<(), StoreError> {
        self.transitions.push(transition.clone());
        Ok(())
    }

    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        self.assignments.push(assignment.clone());
        Ok(())
    }

    fn queue(&mut self, row: &OutboxRow) -> Result<bool, StoreError> {
        let Some(held) = self.ahead.outbox.get_mut(&row.contact_id) else {
            // A contact the batch did not prefetch: straight to the
            // database, after what the batch holds.
            self.flush()?;
            let row = OutboxRow {
                key: OutboxKey::new(
                    resolve(&self.real_ids, row.key.enrolment)?,
                    row.key.step.clone(),
                ),
                ..row.clone()
            };
            return queue_row(&mut self.work.db(), &row);
        };
        if !held.queue(row) {
            return Ok(false);
        }
        self.queued.push(row.clone());
        Ok(true)
    }

    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: Channel,
        from: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError> {
        if let Some(held) = self.ahead.outbox.get(contact_id) {
            return Ok(held.scheduled(channel, from));
        }
        self.flush()?;
        marketing_sends(
            &mut self.work.db(),
            "SELECT journey, send_at FROM outbox WHERE contact_id = $1 AND channel = $2 AND kind = 'marketing'
             AND status IN ('pending', 'sending', 'sent') AND send_at >= $3 ORDER BY send_at, id",
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
        // Imports, the only writers of suppressions, wait for the batch.
        let address = super::normalize_address(channel, address);
        let since = match self.suppressions.get(&(address.clone(), channel)) {
            Some(since) => *since,
            None => {
                let since = self
                    .work
                    .db()
                    .query_opt(
                        "SELECT at FROM suppressions WHERE address = $1 AND channel = $2",
                        &[&address, &channel.as_str()],
                    )?
                    .map(|row| get::<i64>(&row, 0))
                    .transpose()?;
                self.suppressions.insert((address, channel), since);
                since
            }
        };
        Ok(since.is_some_and(|since| since <= at.seconds()))
    }

    fn update_contact(&mut self, contact_id: &str, edit: ContactEdit) -> Result<(), StoreError> {
        self.edits.push((contact_id.to_string(), edit));
        Ok(())
    }

    fn set_wake(&mut self, contact_id: &str, wake: Option<Timestamp>) -> Result<(), StoreError> {
        self.wakes
            .insert(contact_id.to_string(), wake.map(Timestamp::seconds));
        Ok(())
    }

    fn part_progress(
        &mut self,
        night: i64,
        part: u32,
        after: Option<&str>,
        counts: &str,
        done: bool,
    ) -> Result<(), StoreError> {
        let part = i32::try_from(part).unwrap_or(i32::MAX);
        self.work.db().execute(
            "UPDATE night_parts SET after = $3, counts = $4, done = $5 WHERE night = $1 AND part = $2",
            &[&night, &part, &after, &counts, &done],
        )?;
        Ok(())
    }
}

impl Store for PostgresStore {
    fn import(
        &mut self,
        work: &mut dyn FnMut(&mut dyn ImportSink) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.write()?;
        let next_seq = last_seq(&mut transaction.db())? + 1;
        let mark = touch_mark(&mut transaction.db())? + 1;
        let mut sink = Sink::new(transaction, next_seq, mark);
        work(&mut sink)?;
        sink.flush()?;
        sink.work.finish(true)
    }

    fn contact(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        self.read(|db| read_contact(db, CONTACT, id))
    }

    fn contact_count(&self) -> Result<u64, StoreError> {
        self.read(|db| count(&db.query_one("SELECT COUNT(*) FROM contacts", &[])?, 0))
    }

    fn events_of(&self, contact_id: &str) -> Result<Vec<Event>, StoreError> {
        self.read(|db| read_events(db, contact_id, i64::MAX))
    }

    fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.read(last_seq)
    }

    fn contacts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Contact>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|db| {
            db.query(
                "SELECT id, data FROM contacts WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after.unwrap_or(""), &limit],
            )?
            .iter()
            .map(|row| {
                Ok(Contact {
                    id: get(row, 0)?,
                    fields: parse_object(get(row, 1)?),
                })
            })
            .collect()
        })
    }

    /// Batches of workers on other partitions go on at the same time:
    /// they share the write lock, which only an import takes alone.
    fn batch(
        &mut self,
        commit: bool,
        work: &mut dyn FnMut(&mut dyn RunBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.work()?;
        transaction
            .db()
            .execute("SELECT pg_advisory_xact_lock_shared($1)", &[&WRITE_LOCK])?;
        let mut batch = Batch::new(transaction);
        work(&mut batch)?;
        batch.flush()?;
        batch.work.finish(commit)
    }

    fn resting(&self) -> Result<Vec<Resting>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT journey, step, step_print, COUNT(*) FROM enrolments WHERE state = 'active'
                 GROUP BY journey, step, step_print ORDER BY journey, step, step_print",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(Resting {
                    journey: get(row, 0)?,
                    step: StepId::new(get::<String>(row, 1)?),
                    print: get(row, 2)?,
                    count: count(row, 3)?,
                })
            })
            .collect()
        })
    }

    fn record_versions(
        &mut self,
        versions: &[(String, String)],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut work = self.work()?;
        for (journey, version) in versions {
            work.db().execute(
                "INSERT INTO journey_versions (journey, version, deployed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[journey, version, &at.seconds()],
            )?;
        }
        work.finish(true)
    }

    fn progress(&self) -> Result<Vec<Progress>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT journey, deployed_at, until, seen_seq FROM journey_progress ORDER BY journey",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(Progress {
                    journey: get(row, 0)?,
                    deployed_at: time(row, 1)?,
                    until: time(row, 2)?,
                    seen_seq: get(row, 3)?,
                })
            })
            .collect()
        })
    }

    fn save_progress(&mut self, progress: &[Progress]) -> Result<(), StoreError> {
        let mut work = self.work()?;
        write_progress(&mut work.db(), progress)?;
        work.finish(true)
    }

    fn status(&self, now: Timestamp) -> Result<Vec<JourneyStatus>, StoreError> {
        let (states, arms) = self.read(|db| {
            let states = db.query(
                "SELECT journey, state, step, SUM(CASE WHEN due_at IS NOT NULL AND due_at <= $1 THEN 1 ELSE 0 END), COUNT(*)
                 FROM enrolments GROUP BY journey, state, step ORDER BY journey, state, step",
                &[&now.seconds()],
            )?;
            let arms = db.query(
                "SELECT e.journey, a.test, a.arm, COUNT(*),
                        SUM(CASE WHEN e.state = 'converted' THEN 1 ELSE 0 END),
                        SUM(CASE WHEN e.state = 'active' THEN 1 ELSE 0 END)
                 FROM assignments a JOIN enrolments e ON e.id = a.enrolment_id
                 GROUP BY e.journey, a.test, a.arm ORDER BY e.journey, a.test, a.arm",
                &[],
            )?;
            Ok((states, arms))
        })?;
        let steps = states
            .iter()
            .map(|row| {
                Ok(super::StepCount {
                    journey: get(row, 0)?,
                    state: parsed(row, 1)?,
                    step: get(row, 2)?,
                    due: count(row, 3)?,
                    count: count(row, 4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let arms = arms
            .iter()
            .map(|row| {
                Ok((
                    get(row, 0)?,
                    ArmStatus {
                        test: get(row, 1)?,
                        arm: get(row, 2)?,
                        entered: count(row, 3)?,
                        converted: count(row, 4)?,
                        active: count(row, 5)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(super::journey_status(steps, arms))
    }

    fn outbox_counts(&self) -> Result<Vec<(OutboxStatus, u64)>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status",
                &[],
            )?
            .iter()
            .map(|row| Ok((parsed(row, 0)?, count(row, 1)?)))
            .collect()
        })
    }

    fn transitions_of(
        &self,
        contact_id: &str,
        journey: Option<&str>,
    ) -> Result<Vec<Transition>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT enrolment_id, journey, from_step, to_step, reason, at FROM transitions
                 WHERE contact_id = $1 AND ($2::text IS NULL OR journey = $2) ORDER BY id",
                &[&contact_id, &journey],
            )?
            .iter()
            .map(|row| {
                Ok(Transition {
                    enrolment_id: get(row, 0)?,
                    contact_id: contact_id.to_string(),
                    journey: get(row, 1)?,
                    from_step: get::<Option<String>>(row, 2)?.map(StepId::new),
                    to_step: get::<Option<String>>(row, 3)?.map(StepId::new),
                    reason: get(row, 4)?,
                    at: time(row, 5)?,
                })
            })
            .collect()
        })
    }

    fn outbox_of(&self, contact_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|db| {
            db.query(
                concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox o WHERE o.contact_id = $1 ORDER BY o.send_at, o.id"
                ),
                &[&contact_id],
            )?
            .iter()
            .map(outbox_row)
            .collect()
        })
    }

    fn enrolments_of(&self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        self.read(|db| {
            db.query(
                concat!(
                    "SELECT ",
                    enrolment_columns!(),
                    " FROM enrolments WHERE contact_id = $1 ORDER BY id"
                ),
                &[&contact_id],
            )?
            .iter()
            .map(|row| enrolment(row, contact_id))
            .collect()
        })
    }

    fn record_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.read(|db| write_run(db, run))
    }

    fn touch_mark(&self) -> Result<i64, StoreError> {
        self.read(touch_mark)
    }

    fn sweep(&self) -> Result<Option<Sweep>, StoreError> {
        self.read(|db| {
            db.query_opt("SELECT mark, fingerprint FROM sweep", &[])?
                .map(|row| {
                    Ok(Sweep {
                        mark: get(&row, 0)?,
                        fingerprint: get(&row, 1)?,
                    })
                })
                .transpose()
        })
    }

    fn partitions(&self) -> u32 {
        PARTITIONS
    }

    fn due_ids(
        &self,
        part: u32,
        now: Timestamp,
        touched_after: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = part_sql(
            "SELECT id FROM contacts_{part} WHERE wake_at <= $1 AND id > $3
             UNION SELECT id FROM contacts_{part} WHERE touched > $2 AND id > $3
             ORDER BY id",
            part,
        );
        self.read(|db| {
            db.query(sql, &[&now.seconds(), &touched_after, &after.unwrap_or("")])?
                .iter()
                .map(|row| get(row, 0))
                .collect()
        })
    }

    fn part_page(
        &self,
        part: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Contact>, StoreError> {
        let sql = part_sql(
            "SELECT id, data FROM contacts_{part} WHERE id > $1 ORDER BY id LIMIT $2",
            part,
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|db| {
            db.query(sql, &[&after.unwrap_or(""), &limit])?
                .iter()
                .map(contact_of)
                .collect()
        })
    }

    fn contacts_in(&self, ids: &[String]) -> Result<Vec<Contact>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.read(|db| {
            db.query(
                "SELECT id, data FROM contacts WHERE id = ANY($1) ORDER BY id",
                &[&ids],
            )?
            .iter()
            .map(contact_of)
            .collect()
        })
    }

    fn read_ahead(&self, contacts: &[&str], through_seq: i64) -> Result<Ahead, StoreError> {
        self.read(|db| read_ahead(db, None, contacts, through_seq))
    }

    fn begin_night(&mut self, proposed: &Night, join: Join) -> Result<Night, StoreError> {
        let mut work = self.work()?;
        let mut db = work.db();
        db.execute("SELECT pg_advisory_xact_lock($1)", &[&NIGHT_LOCK])?;
        let open = db
            .query_opt(
                concat!(
                    "SELECT ",
                    night_columns!(),
                    " FROM nights WHERE closed_at IS NULL AND NOT abandoned ORDER BY id DESC LIMIT 1"
                ),
                &[],
            )?
            .map(|row| night_of(&row))
            .transpose()?;
        if let Some(open) = open {
            let same = open.now == proposed.now && open.fingerprint == proposed.fingerprint;
            if join == Join::Worker || same {
                work.finish(true)?;
                return Ok(open);
            }
            db.execute(
                "UPDATE nights SET abandoned = true WHERE id = $1",
                &[&open.id],
            )?;
        }
        let touched_after = match proposed.visit {
            Visit::Everyone => None,
            Visit::Due { touched_after } => Some(touched_after),
        };
        let row = db.query_one(
            "INSERT INTO nights (now, run_seq, mark, touched_after, fingerprint, started_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &proposed.now.seconds(),
                &proposed.run_seq,
                &proposed.mark,
                &touched_after,
                &proposed.fingerprint,
                &proposed.started_at.seconds(),
            ],
        )?;
        let id: i64 = get(&row, 0)?;
        let parts = i32::try_from(PARTITIONS).unwrap_or(i32::MAX);
        db.execute(
            "INSERT INTO night_parts (night, part) SELECT $1, generate_series(0, $2 - 1)",
            &[&id, &parts],
        )?;
        work.finish(true)?;
        Ok(Night {
            id,
            ..proposed.clone()
        })
    }

    /// A partition is held by a session advisory lock on this store's
    /// connection: a worker that dies lets go of it with its connection,
    /// and the partition is taken again from where its last batch left it.
    fn claim_part(&mut self, night: &Night, wait: bool) -> Result<Option<Part>, StoreError> {
        loop {
            let open: Vec<i32> = self.read(|db| {
                db.query(
                    "SELECT part FROM night_parts WHERE night = $1 AND NOT done ORDER BY part",
                    &[&night.id],
                )?
                .iter()
                .map(|row| get(row, 0))
                .collect()
            })?;
            let Some(&first) = open.first() else {
                return Ok(None);
            };
            for &part in &open {
                let taken: bool = self.read(|db| {
                    get(
                        &db.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&PART_LOCK, &part])?,
                        0,
                    )
                })?;
                if taken {
                    if let Some(claimed) = self.still_open(night, part)? {
                        return Ok(Some(claimed));
                    }
                }
            }
            if !wait {
                return Ok(None);
            }
            // Every open partition is held: wait for the first to be let
            // go, done by its worker or left by one that died.
            self.read(|db| {
                db.query_one("SELECT pg_advisory_lock($1, $2)", &[&PART_LOCK, &first])
                    .map(|_| ())
            })?;
            if let Some(claimed) = self.still_open(night, first)? {
                return Ok(Some(claimed));
            }
        }
    }

    fn release_part(&mut self, part: u32) -> Result<(), StoreError> {
        let part = i32::try_from(part).unwrap_or(i32::MAX);
        self.read(|db| {
            db.query_one("SELECT pg_advisory_unlock($1, $2)", &[&PART_LOCK, &part])
                .map(|_| ())
        })
    }

    fn close_night(
        &mut self,
        night: &Night,
        progress: &[Progress],
        sweep: Option<&Sweep>,
        record: &mut dyn FnMut(&[String]) -> RunRecord,
    ) -> Result<bool, StoreError> {
        let mut work = self.work()?;
        let mut db = work.db();
        db.execute("SELECT pg_advisory_xact_lock($1)", &[&NIGHT_LOCK])?;
        let open = db
            .query_opt(
                "SELECT 1 FROM nights WHERE id = $1 AND closed_at IS NULL AND NOT abandoned
                 AND NOT EXISTS (SELECT 1 FROM night_parts WHERE night = $1 AND NOT done)",
                &[&night.id],
            )?
            .is_some();
        if !open {
            work.finish(false)?;
            return Ok(false);
        }
        let counts = night_counts(&mut db, night.id)?;
        write_progress(&mut db, progress)?;
        match sweep {
            Some(sweep) => db.execute(
                "INSERT INTO sweep (id, mark, fingerprint) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET mark = excluded.mark, fingerprint = excluded.fingerprint",
                &[&sweep.mark, &sweep.fingerprint],
            )?,
            None => db.execute("DELETE FROM sweep", &[])?,
        };
        write_run(&mut db, &record(&counts))?;
        db.execute(
            "UPDATE nights SET closed_at = $2 WHERE id = $1",
            &[&night.id, &now_seconds()],
        )?;
        work.finish(true)?;
        Ok(true)
    }

    fn night_counts(&self, night: i64) -> Result<Vec<String>, StoreError> {
        self.read(|db| night_counts(db, night))
    }

    fn dump(&self, each: copy::Dumped<'_>) -> Result<(), StoreError> {
        use ::postgres::fallible_iterator::FallibleIterator as _;

        let mut client = self.client.borrow_mut();
        let mut transaction = client
            .build_transaction()
            .isolation_level(::postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(database)?;
        copy::check_schema(&self.shown, columns(&mut transaction)?)?;
        for table in copy::TABLES {
            let sql = format!("SELECT {} FROM {}", table.column_list(), table.name);
            let mut rows = transaction
                .query_raw(sql.as_str(), Vec::<&(dyn ToSql + Sync)>::new())
                .map_err(database)?;
            let mut cells = std::iter::from_fn(|| match rows.next() {
                Ok(Some(row)) => Some(cells_of(table, &row)),
                Ok(None) => None,
                Err(error) => Some(Err(database(error))),
            });
            each(table, &mut cells)?;
        }
        transaction.commit().map_err(database)
    }

    fn restore(&mut self, from: &dyn Store) -> Result<copy::Copied, StoreError> {
        let shown = self.shown.clone();
        // Alone, as an import writes: nothing else writes while the copy
        // fills the store.
        let mut work = self.work()?;
        work.db()
            .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        copy::check_schema(&shown, columns(&mut work.transaction)?)?;
        for table in copy::TABLES {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", table.name);
            let held: bool = work
                .transaction
                .query_one(sql.as_str(), &[])
                .map_err(database)?
                .get(0);
            if held {
                return Err(copy::not_empty(&shown, table.name));
            }
        }
        let mut copied = copy::Copied::new();
        from.dump(&mut |table, rows| {
            let types: Vec<Type> = table
                .columns
                .iter()
                .map(|(_, kind)| match kind {
                    copy::Kind::Int => Type::INT8,
                    copy::Kind::Int4 => Type::INT4,
                    copy::Kind::Bool => Type::BOOL,
                    copy::Kind::Text => Type::TEXT,
                })
                .collect();
            let sql = format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                table.name,
                table.column_list()
            );
            let mut writer = copy_writer(&mut work.transaction, sql.as_str(), &types)?;
            let mut count = 0;
            for row in copy::checked(table, rows) {
                let values = typed(table, row?)?;
                let values: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|value| &**value as _).collect();
                writer.write(&values).map_err(database)?;
                count += 1;
            }
            writer.finish().map_err(database)?;
            if table.counted {
                // The next id is past every copied one.
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {0}",
                    table.name
                );
                work.transaction
                    .execute(sql.as_str(), &[])
                    .map_err(database)?;
            }
            copied.push((table.name, count));
            Ok(())
        })?;
        work.finish(true)?;
        Ok(copied)
    }
}

impl PostgresStore {
    /// The partition this connection just locked, if it is still not done
    /// (its worker may have finished it meanwhile); else it is let go.
    fn still_open(&mut self, night: &Night, part: i32) -> Result<Option<Part>, StoreError> {
        let row = self.read(|db| {
            db.query_opt(
                "SELECT after, counts FROM night_parts WHERE night = $1 AND part = $2 AND NOT done",
                &[&night.id, &part],
            )
        })?;
        let index = u32::try_from(part).unwrap_or(0);
        match row {
            Some(row) => Ok(Some(Part {
                index,
                after: get(&row, 0)?,
                counts: get(&row, 1)?,
            })),
            None => {
                self.release_part(index)?;
                Ok(None)
            }
        }
    }
}

/// What a settled row becomes.
struct Outcome<'a> {
    status: OutboxStatus,
    attempt_at: Option<Timestamp>,
    sent_at: Option<Timestamp>,
    provider_id: Option<&'a str>,
    error: Option<&'a str>,
    note: Option<&'a str>,
    /// Whether the claim counted as an attempt.
    attempt: bool,
}

impl<'a> Outcome<'a> {
    fn of(settle: &'a Settle, now: Timestamp) -> Outcome<'a> {
        let nothing = Outcome {
            status: OutboxStatus::Pending,
            attempt_at: None,
            sent_at: None,
            provider_id: None,
            error: None,
            note: None,
            attempt: false,
        };
        match settle {
            Settle::Sent { provider_id } => Outcome {
                status: OutboxStatus::Sent,
                sent_at: Some(now),
                provider_id: provider_id.as_deref(),
                attempt: true,
                ..nothing
            },
            Settle::Retry {
                at,
                error,
                progress,
            } => Outcome {
                status: OutboxStatus::Pending,
                attempt_at: Some(*at),
                provider_id: progress.as_deref(),
                error: Some(error.as_str()),
                attempt: true,
                ..nothing
            },
            Settle::Failed { error, .. } => Outcome {
                status: OutboxStatus::Failed,
                error: Some(error.as_str()),
                attempt: true,
                ..nothing
            },
            Settle::Suppressed { error } => Outcome {
                status: OutboxStatus::Suppressed,
                error: Some(error.as_str()),
                ..nothing
            },
            Settle::Expired { note } => Outcome {
                status: OutboxStatus::Expired,
                note: Some(note.as_str()),
                ..nothing
            },
            Settle::Skipped { note } => Outcome {
                status: OutboxStatus::Skipped,
                note: Some(note.as_str()),
                ..nothing
            },
            Settle::Held { until, note } => Outcome {
                status: OutboxStatus::Pending,
                attempt_at: Some(*until),
                note: Some(note.as_str()),
                ..nothing
            },
        }
    }
}

impl Outbox for PostgresStore {
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
        let channels: Vec<&str> = channels.iter().map(|channel| channel.as_str()).collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut work = self.work()?;
        let mut db = work.db();
        // Stale claims first: they are the oldest work. A row another
        // `deliver` is claiming right now is locked, and skipped: no row
        // is claimed twice, and nobody waits.
        let mut ids: Vec<i64> = Vec::new();
        let mut contacts: Vec<String> = Vec::new();
        for (sql, cutoff) in [
            (
                "SELECT id, contact_id FROM outbox WHERE status = 'sending' AND claimed_at <= $1 AND channel = ANY($2)
                 ORDER BY claimed_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
                stale_before,
            ),
            (
                "SELECT id, contact_id FROM outbox WHERE status = 'pending' AND attempt_at <= $1 AND channel = ANY($2)
                 ORDER BY attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
                now,
            ),
        ] {
            let remaining = limit - i64::try_from(ids.len()).unwrap_or(i64::MAX);
            if remaining <= 0 {
                break;
            }
            for row in db.query(sql, &[&cutoff.seconds(), &channels, &remaining])? {
                ids.push(get(&row, 0)?);
                contacts.push(get(&row, 1)?);
            }
        }
        if ids.is_empty() {
            work.finish(true)?;
            return Ok(Vec::new());
        }
        db.execute(
            "UPDATE outbox o SET status = 'sending', claimed_by = $3, claimed_at = $4, attempts = o.attempts + 1
             FROM unnest($1::bigint[], $2::text[]) AS picked (id, contact_id)
             WHERE o.id = picked.id AND o.contact_id = picked.contact_id",
            &[&ids, &contacts, &claimer, &now.seconds()],
        )?;
        let rows = db.query(
            concat!(
                "SELECT ",
                outbox_columns!(),
                ", o.attempts, o.attempt_at, e.event_id, o.provider_id, o.id
                 FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS picked (id, contact_id, position)
                 JOIN outbox o ON o.id = picked.id AND o.contact_id = picked.contact_id
                 LEFT JOIN enrolments e ON e.contact_id = o.contact_id AND e.id = o.enrolment_id
                 ORDER BY picked.position"
            ),
            &[&ids, &contacts],
        )?;
        let claimed = rows
            .iter()
            .map(|row| {
                Ok(Claimed {
                    row: outbox_row(row)?,
                    attempts: attempts(row, OUTBOX_WIDTH)?,
                    attempt_at: time(row, OUTBOX_WIDTH + 1)?,
                    event_id: get(row, OUTBOX_WIDTH + 2)?,
                    progress: get(row, OUTBOX_WIDTH + 3)?,
                    id: get(row, OUTBOX_WIDTH + 4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        work.finish(true)?;
        Ok(claimed)
    }

    fn settle(
        &mut self,
        claimer: &str,
        now: Timestamp,
        outcomes: &[(i64, Settle)],
    ) -> Result<usize, StoreError> {
        let mut work = self.work()?;
        let mut db = work.db();
        let mut held = 0;
        for (id, settle) in outcomes {
            let outcome = Outcome::of(settle, now);
            // Only while the claim is still ours: a stale claim may have
            // been taken over meanwhile.
            let changed = db.execute(
                "UPDATE outbox SET status = $3, attempt_at = COALESCE($4, attempt_at), sent_at = $5,
                   provider_id = COALESCE($6, provider_id), error = COALESCE($7, error), note = COALESCE($8, note),
                   attempts = attempts - $9, claimed_by = NULL
                 WHERE id = $1 AND claimed_by = $2 AND status = 'sending'",
                &[
                    id,
                    &claimer,
                    &outcome.status.as_str(),
                    &outcome.attempt_at.map(Timestamp::seconds),
                    &outcome.sent_at.map(Timestamp::seconds),
                    &outcome.provider_id,
                    &outcome.error,
                    &outcome.note,
                    &i32::from(!outcome.attempt),
                ],
            )?;
            if changed == 0 {
                continue;
            }
            held += 1;
            if let Settle::Failed {
                suppression: Some(suppression),
                ..
            } = settle
            {
                insert_suppression(&mut db, suppression)?;
            }
        }
        work.finish(true)?;
        Ok(held)
    }

    fn is_suppressed(
        &self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.read(|db| is_suppressed(db, address, channel, at))
    }

    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT address, channel, reason, at FROM suppressions ORDER BY channel, address",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(Suppression {
                    address: get(row, 0)?,
                    channel: channel_of(row, 1)?,
                    reason: get(row, 2)?,
                    at: time(row, 3)?,
                })
            })
            .collect()
        })
    }

    fn sent_since(
        &self,
        contact_id: &str,
        channel: Channel,
        since: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError> {
        self.read(|db| {
            marketing_sends(
                db,
                "SELECT journey, sent_at FROM outbox WHERE contact_id = $1 AND channel = $2 AND kind = 'marketing'
                 AND status = 'sent' AND sent_at >= $3 ORDER BY sent_at, id",
                contact_id,
                channel,
                since,
            )
        })
    }

    fn due_by_channel(
        &self,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> Result<Vec<(Channel, u64)>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT channel, COUNT(*) FROM outbox
                 WHERE (status = 'pending' AND attempt_at <= $1) OR (status = 'sending' AND claimed_at <= $2)
                 GROUP BY channel ORDER BY channel",
                &[&now.seconds(), &stale_before.seconds()],
            )?
            .iter()
            .map(|row| Ok((channel_of(row, 0)?, count(row, 1)?)))
            .collect()
        })
    }

    fn tasks(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(OutboxRow, Delivered)>, StoreError> {
        self.read(|db| {
            db.query(
                concat!(
                    "SELECT ",
                    outbox_columns!(),
                    ", o.attempts, o.sent_at, o.provider_id, o.error, o.note FROM outbox o
                     WHERE o.channel = 'task' AND o.send_at >= $1 AND o.send_at <= $2 ORDER BY o.send_at, o.id"
                ),
                &[&from.seconds(), &to.seconds()],
            )?
            .iter()
            .map(|row| Ok((outbox_row(row)?, delivered_at(row, OUTBOX_WIDTH)?)))
            .collect()
        })
    }

    fn delivered(&self, key: &OutboxKey) -> Result<Option<Delivered>, StoreError> {
        self.read(|db| {
            db.query_opt(
                "SELECT attempts, sent_at, provider_id, error, note FROM outbox WHERE key = $1",
                &[&key.to_string()],
            )?
            .map(|row| delivered_at(&row, 0))
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            without_password("postgres://journeyc:s3cr:et@db.example.com:5433/journeys?sslmode=require&password=x&application_name=j"),
            "postgres://journeyc@db.example.com:5433/journeys?sslmode=require&application_name=j"
        );
        assert_eq!(
            without_password("postgresql://journeyc@localhost/t1?host=/tmp/dir"),
            "postgresql://journeyc@localhost/t1?host=/tmp/dir"
        );
        assert_eq!(
            without_password("postgres://db/journeys?password=secret"),
            "postgres://db/journeys"
        );
        let shown = without_password("host=/tmp dbname=journeys user=me password='a secret'");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_host_in_the_query_replaces_the_url_host() {
        assert_eq!(
            with_libpq_hosts("postgres://journeyc@localhost/t1?host=/tmp/dir"),
            "postgres://journeyc@/t1?host=/tmp/dir"
        );
        assert_eq!(
            with_libpq_hosts("postgres://me:pw@localhost:5433/t1?host=/run/postgresql"),
            "postgres://me:pw@/t1?host=/run/postgresql&port=5433"
        );
        for unchanged in [
            "postgres://me@db.example.com/t1",
            "postgres://me@db.example.com/t1?sslmode=disable",
            "host=/tmp dbname=t1",
        ] {
            assert_eq!(with_libpq_hosts(unchanged), unchanged);
        }
        let config: Config = with_libpq_hosts("postgres://journeyc@localhost/t1?host=/tmp/dir")
            .parse()
            .unwrap();
        assert_eq!(
            config.get_hosts(),
            [::postgres::config::Host::Unix(PathBuf::from("/tmp/dir"))]
        );
        assert_eq!(config.get_dbname(), Some("t1"));
        assert_eq!(config.get_user(), Some("journeyc"));
    }

    #[test]
    fn lock_keys_differ() {
        assert_ne!(RUN_LOCK, WRITE_LOCK);
        assert_ne!(RUN_LOCK, MIGRATE_LOCK);
        assert_ne!(WRITE_LOCK, MIGRATE_LOCK);
    }
}
