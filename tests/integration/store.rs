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

/// A run's batch commits whole or not at all, and a message key is queued
/// once however often it is offered.
fn batches_are_whole_and_keys_exactly_once(subject: &mut Subject) {
    let store = &mut subject.store;
    store
        .import(&mut |sink| sink.put_contact(&contact("c-1", json!({}))).map(|_| ()))
        .expect("imports");
    let mut id = 0;
    store
        .batch(true, &mut |batch| {
            id = batch.insert_enrolment(&enrolment("c-1", "launch"))?;
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

/// Two deliveries never claim the same row; a claim that was never
/// settled is taken over after its lease; settling records the outcome.
fn claims_do_not_overlap_and_stale_ones_are_taken_over(subject: &mut Subject) {
    let store = &mut subject.store;
    store
        .import(&mut |sink| sink.put_contact(&contact("c-1", json!({}))).map(|_| ()))
        .expect("imports");
    store
        .batch(true, &mut |batch| {
            let id = batch.insert_enrolment(&enrolment("c-1", "launch"))?;
            for step in ["a", "b", "c", "d"] {
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
    [sqlite_file],
    [
        imports_are_whole_and_idempotent,
        batches_are_whole_and_keys_exactly_once,
        claims_do_not_overlap_and_stale_ones_are_taken_over,
        suppressions_keep_the_earliest_time,
        progress_and_versions_are_kept,
        the_run_lock_is_exclusive
    ]
);
