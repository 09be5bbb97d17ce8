//! The store conformance suite: what every backend must do, written once
//! against the [`Backend`] trait and run unchanged for each backend. A new
//! backend adds a constructor and its name to `conformance!` and passes
//! the same tests.

use journeyc::model::{Channel, EnrolmentState, OutboxKey, OutboxStatus, StepId, Timestamp};
use journeyc::store::{
    Backend, Contact, Enrolment, EnrolmentData, Event, OutboxRow, Progress, Settle, StoreError,
    Suppression, Transition,
};
use journeyc::templates::MessageKind;
use serde_json::{json, Map, Value as Json};

/// A backend under test, and what keeps it alive (its folder).
pub struct Subject {
    pub store: Box<dyn Backend>,
    /// Opens another connection to the same store (a second process).
    pub reopen: Box<dyn Fn() -> Box<dyn Backend>>,
    _keep: Option<tempfile::TempDir>,
}

fn sqlite_file() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journeyc.db");
    let open = move || -> Box<dyn Backend> {
        Box::new(journeyc::store::sqlite::SqliteStore::open(&path).expect("opens"))
    };
    Subject {
        store: open(),
        reopen: Box::new(open),
        _keep: Some(dir),
    }
}

/// A fresh database of the test cluster; reopening connects again.
fn postgres() -> Subject {
    let url = crate::common::postgres::Cluster::get().database();
    let open = move || -> Box<dyn Backend> {
        Box::new(journeyc::store::postgres::PostgresStore::connect(&url, None).expect("connects"))
    };
    Subject {
        store: open(),
        reopen: Box::new(open),
        _keep: None,
    }
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("a time")
}

fn contact(id: &str, fields: Json) -> Contact {
    let Json::Object(fields) = fields else {
        panic!("fields are an object")
    };
    Contact {
        id: id.to_string(),
        fields,
    }
}

fn event(id: &str, contact: &str, name: &str, time: &str) -> Event {
    Event {
        id: id.to_string(),
        contact_id: contact.to_string(),
        name: name.to_string(),
        at: at(time),
        seq: 0,
        properties: Map::new().into(),
    }
}

fn enrolment(contact: &str, journey: &str) -> Enrolment {
    Enrolment {
        id: 0,
        contact_id: contact.to_string(),
        journey: journey.to_string(),
        version: "v1".to_string(),
        state: EnrolmentState::Active,
        step: StepId::new("wait:1d"),
        step_print: "p1".to_string(),
        due_at: Some(at("2026-03-02T00:00:00Z")),
        entered_at: at("2026-03-01T00:00:00Z"),
        ended_at: None,
        event_id: None,
        data: EnrolmentData::default(),
    }
}

fn outbox_row(enrolment: i64, contact: &str, step: &str, send_at: &str) -> OutboxRow {
    OutboxRow {
        key: OutboxKey::new(enrolment, StepId::new(step)),
        contact_id: contact.to_string(),
        journey: "launch".to_string(),
        channel: Channel::Email,
        template: "launch/hello".to_string(),
        kind: MessageKind::Marketing,
        send_at: at(send_at),
        expires_at: None,
        status: OutboxStatus::Pending,
        planned_at: at("2026-03-01T00:00:00Z"),
        note: None,
    }
}

/// Contacts and events go in as one transaction: a failed import leaves
/// nothing, a re-imported event ID adds nothing, and reads give back what
/// went in.
fn imports_are_whole_and_idempotent(subject: &mut Subject) {
    let store = &mut subject.store;
    let failed = store.import(&mut |sink| {
        sink.put_contact(&contact("c-1", json!({"first_name": "王芳"})))?;
        Err(StoreError::Abandoned("a row could not be read"))
    });
    assert!(failed.is_err());
    assert_eq!(store.contact_count().expect("count"), 0);
    store
        .import(&mut |sink| {
            assert!(sink.put_contact(&contact("c-1", json!({"first_name": "王芳"})))?);
            assert!(sink.put_contact(&contact("c-2", json!({"first_name": "Li"})))?);
            assert!(!sink.put_contact(&contact("c-2", json!({"first_name": "Lee"})))?);
            assert!(sink.put_event(&event("e-1", "c-1", "signed_up", "2026-03-01T08:00:00Z"))?);
            assert!(sink.put_event(&event("e-2", "c-1", "clicked", "2026-03-01T07:00:00Z"))?);
            Ok(())
        })
        .expect("imports");
    store
        .import(&mut |sink| {
            assert!(!sink.put_event(&event("e-1", "c-1", "signed_up", "2026-03-01T08:00:00Z"))?);
            Ok(())
        })
        .expect("imports");
    assert_eq!(store.contact_count().expect("count"), 2);
    let stored = store.contact("c-2").expect("reads").expect("stored");
    assert_eq!(stored.fields["first_name"], "Lee");
    let events = store.events_of("c-1").expect("events");
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    assert_eq!(names, ["clicked", "signed_up"], "in time order");
    assert!(store.last_event_seq().expect("seq") >= 2);
    let page = store.contacts_page(None, 1).expect("page");
    assert_eq!(page.len(), 1);
    let next = store.contacts_page(Some(&page[0].id), 10).expect("page");
    assert_eq!(
        [page[0].id.as_str(), next[0].id.as_str()],
        ["c-1", "c-2"],
        "pages in ID order"
    );
}

/// An import larger than any buffer a backend holds (read ahead in
/// chunks, written in bulk) answers every row as a row-by-row import
/// would: an ID met again within the same import is an update of what the
/// import wrote before, an event ID met again is a duplicate, events get
/// consecutive `seq`s in the order they came, and what was looked up
/// ahead is written after the last row.
fn a_large_import_answers_row_by_row(subject: &mut Subject) {
    const CONTACTS: usize = 25_000;
    let store = &mut subject.store;
    let before = store.last_event_seq().expect("seq");
    let mut answers = (0usize, 0usize, 0usize, 0usize);
    store
        .import(&mut |sink| {
            for chunk in 0..CONTACTS / 1000 {
                let ids: Vec<String> = (chunk * 1000..(chunk + 1) * 1000)
                    .map(|index| format!("c-{index}"))
                    .collect();
                sink.prefetch(&ids, &[])?;
                for index in chunk * 1000..(chunk + 1) * 1000 {
                    // Every seventh contact comes again 3,001 rows later
                    // (read ahead in another chunk, maybe not yet written).
                    let id = format!("c-{index}");
                    if sink.put_contact(&contact(&id, json!({"n": index})))? {
                        answers.0 += 1;
                    }
                    if index >= 3001 && (index - 3001) % 7 == 0 {
                        let again = format!("c-{}", index - 3001);
                        let known = sink.contact(&again)?.expect("written before");
                        assert_eq!(known.fields["n"], json!(index - 3001));
                        if !sink
                            .put_contact(&contact(&again, json!({"n": index, "again": true})))?
                        {
                            answers.1 += 1;
                        }
                    }
                }
            }
            for index in 0..CONTACTS {
                let contact = format!("c-{}", index % 1000);
                if sink.put_event(&event(
                    &format!("e-{index}"),
                    &contact,
                    "opened",
                    "2026-03-01T08:00:00Z",
                ))? {
                    answers.2 += 1;
                }
                if index % 5 == 0
                    && !sink.put_event(&event(
                        &format!("e-{}", index / 2),
                        &contact,
                        "opened",
                        "2026-03-01T08:00:00Z",
                    ))?
                {
                    answers.3 += 1;
                }
            }
            Ok(())
        })
        .expect("imports");
    let repeats = (3001..CONTACTS)
        .filter(|index| (index - 3001) % 7 == 0)
        .count();
    let duplicates = (0..CONTACTS).filter(|index| index % 5 == 0).count();
    assert_eq!(answers, (CONTACTS, repeats, CONTACTS, duplicates));
    assert_eq!(store.contact_count().expect("count"), CONTACTS as u64);
    let again = store.contact("c-7").expect("reads").expect("stored");
    assert_eq!(
        again.fields["n"],
        json!(3008),
        "the last write of an ID counts"
    );
    let once = store.contact("c-8").expect("reads").expect("stored");
    assert_eq!(once.fields["n"], json!(8));
    let last = store.contact("c-24999").expect("reads").expect("stored");
    assert_eq!(last.fields["n"], json!(24999));
    assert_eq!(
        store.last_event_seq().expect("seq") - before,
        i64::try_from(CONTACTS).expect("small"),
        "one seq per new event, none for a duplicate"
    );
    let events = store.events_of("c-3").expect("events");
    assert_eq!(events.len(), CONTACTS / 1000);
    let mut seqs: Vec<i64> = events.iter().map(|event| event.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<i64> = (0..CONTACTS / 1000)
        .map(|round| before + 1 + i64::try_from(round * 1000 + 3).expect("small"))
        .collect();
    assert_eq!(seqs, expected, "seqs follow the order events came in");
}

/// A run's batch commits whole or not at all, and a message key is queued
/// once however often it is offered. The id a batch gets for a new
/// enrolment is the one its rows refer to it by; they are stored with the
/// enrolment's stored id.
fn batches_are_whole_and_keys_exactly_once(subject: &mut Subject) {
    let store = &mut subject.store;
    store
        .import(&mut |sink| sink.put_contact(&contact("c-1", json!({}))).map(|_| ()))
        .expect("imports");
    store
        .batch(true, &mut |batch| {
            let id = batch.insert_enrolment(&enrolment("c-1", "launch"))?;
            assert!(batch.queue(&outbox_row(
                id,
                "c-1",
                "email:launch/hello",
                "2026-03-01T01:00:00Z"
            ))?);
            assert!(!batch.queue(&outbox_row(
                id,
                "c-1",
                "email:launch/hello",
                "2026-03-01T01:00:00Z"
            ))?);
            batch.record(&Transition {
                enrolment_id: id,
                contact_id: "c-1".into(),
                journey: "launch".into(),
                from_step: None,
                to_step: Some(StepId::new("wait:1d")),
                reason: "entered: stage became lead".into(),
                at: at("2026-03-01T00:00:00Z"),
            })
        })
        .expect("commits");
    let id = store.enrolments_of("c-1").expect("enrolments")[0].id;
    assert!(id > 0, "a stored id");
    let rows = store.outbox_of("c-1").expect("outbox");
    assert_eq!(rows[0].key.enrolment, id, "the key carries the stored id");
    let moves = store.transitions_of("c-1", None).expect("moves");
    assert_eq!(moves[0].enrolment_id, id);
    // A dry run's batch, and a failed one, leave nothing.
    store
        .batch(false, &mut |batch| {
            batch
                .queue(&outbox_row(
                    id,
                    "c-1",
                    "email:launch/other",
                    "2026-03-01T01:00:00Z",
                ))
                .map(|_| ())
        })
        .expect("rolls back");
    let failed = store.batch(true, &mut |batch| {
        batch.queue(&outbox_row(
            id,
            "c-1",
            "email:launch/third",
            "2026-03-01T01:00:00Z",
        ))?;
        Err(StoreError::Abandoned("the run stopped"))
    });
    assert!(failed.is_err());
    let rows = store.outbox_of("c-1").expect("outbox");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(store.transitions_of("c-1", None).expect("moves").len(), 1);
    let enrolments = store.enrolments_of("c-1").expect("enrolments");
    assert_eq!(enrolments.len(), 1);
    assert_eq!(enrolments[0].step.as_str(), "wait:1d");
    assert_eq!(store.resting().expect("resting").len(), 1);
}

/// Contact `c-1`, enrolled once, with `count` marketing emails due at
/// 01:00 on 1 March 2026.
fn queue_emails<S: journeyc::store::Store + ?Sized>(store: &mut S, count: usize) {
    store
        .import(&mut |sink| sink.put_contact(&contact("c-1", json!({}))).map(|_| ()))
        .expect("imports");
    store
        .batch(true, &mut |batch| {
            let id = batch.insert_enrolment(&enrolment("c-1", "launch"))?;
            for step in 0..count {
                batch.queue(&outbox_row(
                    id,
                    "c-1",
                    &format!("email:{step}"),
                    "2026-03-01T01:00:00Z",
                ))?;
            }
            Ok(())
        })
        .expect("queues");
}

/// Two deliveries never claim the same row; a claim that was never
/// settled is taken over after its lease; settling records the outcome.
fn claims_do_not_overlap_and_stale_ones_are_taken_over(subject: &mut Subject) {
    let store = &mut subject.store;
    queue_emails(&mut **store, 4);
    let now = at("2026-03-01T02:00:00Z");
    let stale_before = at("2026-03-01T01:45:00Z");
    let mut other = (subject.reopen)();
    let first = store
        .claim("one", now, stale_before, &[Channel::Email], 2)
        .expect("claims");
    let second = other
        .claim("two", now, stale_before, &[Channel::Email], 10)
        .expect("claims");
    assert_eq!((first.len(), second.len()), (2, 2));
    let mut ids: Vec<i64> = first
        .iter()
        .chain(&second)
        .map(|claimed| claimed.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "no row claimed twice");
    // `one` settles its rows; `two` dies holding its claims.
    let settled = store
        .settle(
            "one",
            now,
            &first
                .iter()
                .map(|claimed| {
                    (
                        claimed.id,
                        Settle::Sent {
                            provider_id: Some("Q1".into()),
                        },
                    )
                })
                .collect::<Vec<_>>(),
        )
        .expect("settles");
    assert_eq!(settled, 2);
    assert!(
        store
            .claim("three", now, stale_before, &[Channel::Email], 10)
            .expect("claims")
            .is_empty(),
        "fresh claims are left alone"
    );
    let later = at("2026-03-01T02:30:00Z");
    let taken = store
        .claim(
            "three",
            later,
            at("2026-03-01T02:15:00Z"),
            &[Channel::Email],
            10,
        )
        .expect("claims");
    assert_eq!(taken.len(), 2, "stale claims are taken over");
    // The dead claimer's late settle no longer counts.
    assert_eq!(
        other
            .settle(
                "two",
                later,
                &[(second[0].id, Settle::Sent { provider_id: None })]
            )
            .expect("settles"),
        0
    );
    let sent = store
        .outbox_of("c-1")
        .expect("outbox")
        .iter()
        .filter(|row| row.status == OutboxStatus::Sent)
        .count();
    assert_eq!(sent, 2);
    let key = &first[0].row.key;
    let delivered = store.delivered(key).expect("reads").expect("recorded");
    assert_eq!(delivered.provider_id.as_deref(), Some("Q1"));
    assert!(store
        .due_by_channel(later, at("2026-03-01T02:15:00Z"))
        .expect("due")
        .iter()
        .all(|(_, count)| *count == 0));
}

/// An address is suppressed from the earliest time any event put it
/// there, per channel.
fn suppressions_keep_the_earliest_time(subject: &mut Subject) {
    let store = &mut subject.store;
    let suppression = |time: &str| Suppression {
        address: "li@example.cn".into(),
        channel: Channel::Email,
        reason: "unsubscribed".into(),
        at: at(time),
    };
    store
        .import(&mut |sink| {
            assert!(sink.suppress(&suppression("2026-03-05T00:00:00Z"))?);
            assert!(sink.suppress(&suppression("2026-03-02T00:00:00Z"))?);
            assert!(!sink.suppress(&suppression("2026-03-09T00:00:00Z"))?);
            Ok(())
        })
        .expect("imports");
    assert!(!store
        .is_suppressed("li@example.cn", Channel::Email, at("2026-03-01T00:00:00Z"))
        .expect("reads"));
    assert!(
        store
            .is_suppressed("LI@example.cn", Channel::Email, at("2026-03-03T00:00:00Z"))
            .expect("reads"),
        "addresses compare normalized"
    );
    assert!(!store
        .is_suppressed("li@example.cn", Channel::Sms, at("2026-03-03T00:00:00Z"))
        .expect("reads"));
    let list = store.suppressions().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].at, at("2026-03-02T00:00:00Z"));
}

/// Versions, progress and runs are kept.
fn progress_and_versions_are_kept(subject: &mut Subject) {
    let store = &mut subject.store;
    store
        .record_versions(
            &[("launch".into(), "abc".into())],
            at("2026-03-01T00:00:00Z"),
        )
        .expect("records");
    store
        .save_progress(&[Progress {
            journey: "launch".into(),
            deployed_at: at("2026-03-01T00:00:00Z"),
            until: at("2026-03-02T00:00:00Z"),
            seen_seq: 7,
        }])
        .expect("saves");
    let reopened = (subject.reopen)();
    for store in [&*subject.store, &*reopened] {
        let progress = store.progress().expect("reads");
        assert_eq!(progress.len(), 1);
        assert_eq!(progress[0].until, at("2026-03-02T00:00:00Z"));
        assert_eq!(progress[0].seen_seq, 7);
    }
}

/// Runs on one store never overlap: while one holds the run lock, a
/// second is refused, and it is free again once the first lets go.
fn the_run_lock_is_exclusive(subject: &mut Subject) {
    let guard = subject.store.lock_run().expect("the first lock");
    let other = (subject.reopen)();
    assert!(matches!(other.lock_run(), Err(StoreError::Locked { .. })));
    drop(guard);
    other.lock_run().expect("free again");
}

/// One module per backend, one test per conformance function.
macro_rules! conformance {
    ([$($backend:ident),*], $tests:tt) => {
        $( conformance!(@one $backend, $tests); )*
    };
    (@one $backend:ident, [$($test:ident),*]) => {
        mod $backend {
            $(
                #[test]
                fn $test() {
                    super::$test(&mut super::$backend());
                }
            )*
        }
    };
}

conformance!(
    [sqlite_file, postgres],
    [
        imports_are_whole_and_idempotent,
        a_large_import_answers_row_by_row,
        batches_are_whole_and_keys_exactly_once,
        claims_do_not_overlap_and_stale_ones_are_taken_over,
        suppressions_keep_the_earliest_time,
        progress_and_versions_are_kept,
        the_run_lock_is_exclusive
    ]
);

/// The database name in a URL of the test cluster.
fn database_of(url: &str) -> &str {
    let path = url.split_once("@localhost/").expect("a cluster URL").1;
    path.split_once('?').map_or(path, |(name, _)| name)
}

/// A PostgreSQL store is migrated once, and one written by a newer
/// journeyc is refused.
#[test]
fn postgres_migrates_once_and_refuses_newer_stores() {
    use journeyc::store::postgres::PostgresStore;
    let cluster = crate::common::postgres::Cluster::get();
    let url = cluster.database();
    let version = PostgresStore::connect(&url, None)
        .expect("connects")
        .version()
        .expect("a version");
    assert!(version >= 1);
    assert_eq!(
        PostgresStore::connect(&url, None)
            .expect("connects again")
            .version()
            .expect("a version"),
        version
    );
    cluster
        .psql(database_of(&url), "UPDATE journeyc_schema SET version = 99")
        .expect("updates");
    assert!(matches!(
        PostgresStore::connect(&url, None),
        Err(StoreError::TooNew { version: 99, .. })
    ));
}

/// A password in the URL is never shown, in the store's name or in an
/// error.
#[test]
fn postgres_never_shows_the_password() {
    use journeyc::store::postgres::PostgresStore;
    let url = crate::common::postgres::Cluster::get().database().replacen(
        "journeyc@",
        "journeyc:s3cret@",
        1,
    );
    // The test cluster trusts its socket, so any password connects.
    let store = PostgresStore::connect(&url, None).expect("connects");
    assert!(!store.describe().contains("s3cret"), "{}", store.describe());
    let missing = url.replacen("localhost/t", "localhost/missing_t", 1);
    let error = PostgresStore::connect(&missing, Some("other-s3cret"))
        .err()
        .expect("no such database");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

/// PostgreSQL ends a transaction at its first failed statement, so a batch
/// whose work went on after one and returned `Ok` is not reported as
/// committed: none of it was written.
#[test]
fn postgres_reports_a_batch_it_could_not_commit() {
    let mut subject = postgres();
    let store = &mut subject.store;
    let result = store.batch(true, &mut |batch| {
        batch.insert_enrolment(&enrolment("c-1", "launch"))?;
        // Text with a NUL byte is refused by PostgreSQL.
        let refused = batch.enrolments_of("c-\u{0}");
        assert!(refused.is_err());
        Ok(())
    });
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert!(store.enrolments_of("c-1").expect("reads").is_empty());
}

/// Deliveries claiming at the same moment on their own connections take
/// every due row exactly once between them.
#[test]
fn postgres_concurrent_claims_take_each_row_once() {
    use journeyc::store::postgres::PostgresStore;
    use journeyc::store::Outbox;
    let url = crate::common::postgres::Cluster::get().database();
    let mut store = PostgresStore::connect(&url, None).expect("connects");
    queue_emails(&mut store, 200);
    let now = at("2026-03-01T02:00:00Z");
    let mut ids: Vec<i64> = std::thread::scope(|scope| {
        let claimers: Vec<_> = (0..4)
            .map(|claimer| {
                let url = &url;
                scope.spawn(move || {
                    let mut store = PostgresStore::connect(url, None).expect("connects");
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store
                            .claim(
                                &format!("d-{claimer}"),
                                now,
                                Timestamp::MIN,
                                &[Channel::Email],
                                7,
                            )
                            .expect("claims");
                        if claimed.is_empty() {
                            return mine;
                        }
                        mine.extend(claimed.iter().map(|claimed| claimed.id));
                    }
                })
            })
            .collect();
        claimers
            .into_iter()
            .flat_map(|claimer| claimer.join().expect("claimer"))
            .collect()
    });
    assert_eq!(ids.len(), 200);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "no row claimed twice");
}

/// Over TCP the store speaks TLS and checks the server's certificate: the
/// test cluster takes TLS connections only, signed by a CA made for this
/// run. With that CA (`sslrootcert`) the store opens; without it the
/// certificate is not trusted; in the clear the server refuses.
#[test]
fn postgres_over_tcp_uses_tls_and_checks_the_certificate() {
    use journeyc::store::postgres::PostgresStore;
    use journeyc::store::Store as _;
    let cluster = crate::common::postgres::Cluster::tls();
    let url = cluster.database();
    let store = PostgresStore::connect(&url, None).expect("connects over TLS with the run's CA");
    assert_eq!(store.contact_count().expect("reads"), 0);
    let guard = store.lock_run().expect("the lock's connection is TLS too");
    drop(guard);
    let without_ca = url
        .split("&sslrootcert=")
        .next()
        .expect("a URL")
        .to_string();
    let refused = PostgresStore::connect(&without_ca, None)
        .err()
        .expect("a certificate from an unknown CA is refused");
    assert!(
        journeyc::error::chain(&refused).contains("certificate"),
        "{}",
        journeyc::error::chain(&refused)
    );
    let clear = without_ca.replace("sslmode=require", "sslmode=disable");
    assert!(
        PostgresStore::connect(&clear, None).is_err(),
        "the server takes no connection in the clear"
    );
}
