//! A store double for the engine's unit tests: one batch's reads and writes
//! in plain vectors, so a test can drive [`Engine::contact`] and look at
//! exactly what it wrote. (The integration tests run the real SQLite
//! store; this one is for the engine's own rules.)

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value as Json};

use super::engine::{Counts, Engine, JourneyRun, RunError};
use super::eval::Program;
use crate::model::{Channel, EnrolmentState, OutboxStatus, Timestamp};
use crate::settings::Settings;
use crate::span::SourceMap;
use crate::store::{
    Assignment, Contact, ContactEdit, Enrolment, Event, OutboxRow, RunBatch, Scheduled, StoreError,
    Suppression, Transition,
};

#[derive(Default)]
pub struct Memory {
    pub contacts: Vec<Contact>,
    pub events: Vec<Event>,
    pub enrolments: Vec<Enrolment>,
    pub transitions: Vec<Transition>,
    pub assignments: Vec<Assignment>,
    pub outbox: Vec<OutboxRow>,
    pub suppressions: Vec<Suppression>,
    /// What the engine said of each contact's next visit.
    pub wakes: std::collections::HashMap<String, Option<Timestamp>>,
}

impl RunBatch for Memory {
    fn events_of(&mut self, contact_id: &str, through_seq: i64) -> Result<Vec<Event>, StoreError> {
        let mut events: Vec<Event> = self
            .events
            .iter()
            .filter(|event| event.contact_id == contact_id && event.seq <= through_seq)
            .cloned()
            .collect();
        events.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        Ok(events)
    }

    fn enrolments_of(&mut self, contact_id: &str) -> Result<Vec<Enrolment>, StoreError> {
        let mut latest: Vec<Enrolment> = Vec::new();
        for enrolment in self
            .enrolments
            .iter()
            .filter(|e| e.contact_id == contact_id)
        {
            latest.retain(|kept| kept.journey != enrolment.journey);
            latest.push(enrolment.clone());
        }
        Ok(latest)
    }

    fn insert_enrolment(&mut self, enrolment: &Enrolment) -> Result<i64, StoreError> {
        let id = i64::try_from(self.enrolments.len()).unwrap_or(0) + 1;
        self.enrolments.push(Enrolment {
            id,
            ..enrolment.clone()
        });
        Ok(id)
    }

    fn update_enrolment(&mut self, enrolment: &Enrolment) -> Result<(), StoreError> {
        if let Some(stored) = self.enrolments.iter_mut().find(|e| e.id == enrolment.id) {
            *stored = enrolment.clone();
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
        if self.outbox.iter().any(|queued| queued.key == row.key) {
            return Ok(false);
        }
        self.outbox.push(row.clone());
        Ok(true)
    }

    fn scheduled(
        &mut self,
        contact_id: &str,
        channel: Channel,
        from: Timestamp,
    ) -> Result<Vec<Scheduled>, StoreError> {
        let mut rows: Vec<Scheduled> = self
            .outbox
            .iter()
            .filter(|row| {
                row.contact_id == contact_id
                    && row.channel == channel
                    && row.kind == crate::templates::MessageKind::Marketing
                    && row.status.counts_as_send()
                    && row.send_at >= from
            })
            .map(|row| Scheduled {
                journey: row.journey.clone(),
                at: row.send_at,
            })
            .collect();
        rows.sort_by_key(|row| row.at);
        Ok(rows)
    }

    fn suppressed(
        &mut self,
        address: &str,
        channel: Channel,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let address = crate::store::normalize_address(channel, address);
        Ok(self
            .suppressions
            .iter()
            .any(|s| s.address == address && s.channel == channel && s.at <= at))
    }

    fn update_contact(&mut self, contact_id: &str, edit: ContactEdit) -> Result<(), StoreError> {
        if let Some(contact) = self.contacts.iter_mut().find(|c| c.id == contact_id) {
            edit(&mut contact.fields);
        }
        Ok(())
    }

    fn set_wake(&mut self, contact_id: &str, wake: Option<Timestamp>) -> Result<(), StoreError> {
        self.wakes.insert(contact_id.to_string(), wake);
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
        Ok(())
    }
}

/// A project compiled from a journey source and a settings text.
struct Compiled {
    _dir: tempfile::TempDir,
    settings: Settings,
    analysis: crate::analyzer::Analysis,
    templates: crate::templates::TemplateSet,
    file: crate::ast::File,
}

fn compile(settings: &str, source: &str) -> Compiled {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journeyc.yaml");
    std::fs::write(&path, settings).expect("write");
    write_templates(dir.path(), source);
    let mut sources = SourceMap::new();
    let settings = Settings::load(&path, &mut sources)
        .expect("readable")
        .expect("valid settings");
    let file_id = sources.add(dir.path().join("main.journey"), source.to_string());
    let (file, errors) = crate::parser::parse(file_id, source).expect("parses");
    assert!(errors.is_empty(), "{errors:?}");
    let analysis = crate::analyzer::analyze(&settings, &[(file_id, &file)]);
    let errors: Vec<_> = analysis
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::diagnostic::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (templates, _) = crate::templates::load(
        &settings,
        &crate::files::Boundary::of_folder(&settings.root),
        &mut sources,
    )
    .expect("templates");
    Compiled {
        _dir: dir,
        settings,
        analysis,
        templates,
        file,
    }
}

/// Writes a plain template for every `email "name"` of `source`.
fn write_templates(root: &std::path::Path, source: &str) {
    for piece in source.split("email \"").skip(1) {
        let Some(name) = piece.split('"').next() else {
            continue;
        };
        let path = root.join("templates").join(format!("{name}.email"));
        std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
        let body = format!(
            "---\nsubject: \"{name}\"\n---\n{{% block text %}}\n{name}\n\nUnsubscribe: {{{{ unsubscribe_url }}}}\n{{% endblock %}}\n"
        );
        std::fs::write(path, body).expect("write");
    }
}

const SETTINGS: &str = r#"timezone: Asia/Shanghai
templates: templates
contact:
  plan: string?
events:
  signed_up:
  purchased:
channels:
  email:
    from: "Shop <shop@example.com>"
    unsubscribe_url: "https://example.com/unsubscribe"
    transport: { url: "file:out/email" }
"#;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0)
        .single()
        .expect("a time")
}

fn contact(id: &str) -> Contact {
    let mut fields = Map::new();
    fields.insert("email".into(), Json::String(format!("{id}@example.com")));
    fields.insert(
        "created_at".into(),
        Json::String("2026-03-01T00:00:00Z".into()),
    );
    Contact {
        id: id.into(),
        fields,
    }
}

fn event(id: &str, contact: &str, name: &str, when: DateTime<Utc>, seq: i64) -> Event {
    Event {
        id: id.into(),
        contact_id: contact.into(),
        name: name.into(),
        at: Timestamp::from(when),
        seq,
        properties: Map::new().into(),
    }
}

/// Runs one contact of `memory` through `project` from `after` to `now`.
fn run(
    project: &Compiled,
    memory: &mut Memory,
    contact_id: &str,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
    max_agenda: usize,
) -> Result<Counts, RunError> {
    let program = Program::default();
    let engine = Engine {
        settings: &project.settings,
        program: &program,
        templates: &project.templates,
        journeys: project
            .analysis
            .journeys
            .iter()
            .map(|journey| JourneyRun {
                journey,
                version: "v1".into(),
                after,
                seen_seq: 0,
                launching: false,
            })
            .collect(),
        now,
        run_seq: i64::MAX,
        max_agenda,
    };
    let contact = memory
        .contacts
        .iter()
        .find(|c| c.id == contact_id)
        .cloned()
        .expect("the contact");
    let mut counts = Counts::default();
    engine.contact(memory, contact, &mut counts)?;
    let _ = &project.file;
    Ok(counts)
}

#[test]
fn a_holdout_rests_until_the_goal_window_closes_and_its_conversion_counts() {
    let holdout = (0..500)
        .map(|n| format!("h{n}"))
        .find(|id| super::engine::bucket(id, "t", "offer") >= 5000)
        .expect("a contact in the holdout");
    let project = compile(
        SETTINGS,
        "journey t {\n  entry on event \"signed_up\"\n  goal event \"purchased\" within 10d\n  ab offer {\n    variant a 50% { email \"t/a\" }\n    holdout 50%\n  }\n}\n",
    );
    let mut memory = Memory {
        contacts: vec![contact(&holdout)],
        events: vec![event("e1", &holdout, "signed_up", at(2, 1), 1)],
        ..Memory::default()
    };
    run(&project, &mut memory, &holdout, at(1, 0), at(3, 0), 1000).expect("runs");
    let enrolment = &memory.enrolments[0];
    assert_eq!(enrolment.state, EnrolmentState::Active);
    assert_eq!(enrolment.step.as_str(), "ab:offer/holdout");
    assert_eq!(enrolment.due_at, Some(Timestamp::from(at(12, 1))));
    // Nothing is due before the window closes: that is the next visit.
    assert_eq!(
        memory.wakes.get(&holdout),
        Some(&Some(Timestamp::from(at(12, 1))))
    );
    assert_eq!(memory.assignments[0].arm, "holdout");
    assert!(memory.outbox.is_empty());
    // The purchase comes; the control group converts like anyone.
    memory
        .events
        .push(event("e2", &holdout, "purchased", at(5, 1), 2));
    run(&project, &mut memory, &holdout, at(3, 0), at(6, 0), 1000).expect("runs");
    assert_eq!(memory.enrolments[0].state, EnrolmentState::Converted);
    // Converted, with no way back in: only something new moves it again.
    assert_eq!(memory.wakes.get(&holdout), Some(&None));
}

#[test]
fn a_rescue_reaches_the_variants_but_never_the_holdout() {
    let in_arm = |wanted: bool| {
        (0..500)
            .map(|n| format!("c{n}"))
            .find(|id| (super::engine::bucket(id, "t", "offer") >= 5000) == wanted)
            .expect("a contact")
    };
    let (holdout, variant) = (in_arm(true), in_arm(false));
    let project = compile(
        SETTINGS,
        "journey t {\n  entry on event \"signed_up\"\n  goal event \"purchased\" within 10d\n  rescue on event \"signed_up\" -> saved\n  ab offer {\n    variant a 50% {\n      wait 5d\n    }\n    holdout 50%\n  }\n  end\n  saved: email \"t/rescue\"\n}\n",
    );
    for id in [&holdout, &variant] {
        let mut memory = Memory {
            contacts: vec![contact(id)],
            events: vec![event("e1", id, "signed_up", at(2, 1), 1)],
            ..Memory::default()
        };
        run(&project, &mut memory, id, at(1, 0), at(3, 0), 1000).expect("runs");
        // A rescue rule that fires: the variant's contact gets the
        // rescue letter; the control group gets nothing.
        memory
            .events
            .push(event("e2", id, "signed_up", at(4, 1), 2));
        run(&project, &mut memory, id, at(3, 0), at(5, 0), 1000).expect("runs");
        let rescued = memory.outbox.iter().any(|row| row.template == "t/rescue");
        assert_eq!(rescued, *id == variant, "{id}: {:?}", memory.outbox);
    }
}

#[test]
fn a_cap_defers_a_send_placed_before_one_already_planned() {
    let project = compile(
        &format!("{SETTINGS}caps: {{ email: 1 per 7d }}\n"),
        "journey a {\n  entry on event \"signed_up\"\n  email \"a/hi\"\n}\njourney b {\n  entry on event \"purchased\"\n  email \"b/hi\"\n}\n",
    );
    let mut memory = Memory {
        contacts: vec![contact("c-1")],
        // `b`'s purchase is later, but `a` is processed first by name.
        events: vec![
            event("e1", "c-1", "signed_up", at(2, 4), 1),
            event("e2", "c-1", "purchased", at(2, 2), 2),
        ],
        ..Memory::default()
    };
    run(&project, &mut memory, "c-1", at(1, 0), at(3, 0), 1000).expect("runs");
    let mut times: Vec<(String, Timestamp, OutboxStatus)> = memory
        .outbox
        .iter()
        .map(|row| (row.journey.clone(), row.send_at, row.status))
        .collect();
    times.sort_by_key(|(_, at, _)| *at);
    assert_eq!(
        times,
        [
            (
                "b".to_string(),
                Timestamp::from(at(2, 2)),
                OutboxStatus::Pending
            ),
            (
                "a".to_string(),
                Timestamp::from(at(9, 2)),
                OutboxStatus::Pending
            ),
        ]
    );
}

#[test]
fn a_runaway_agenda_is_an_error_naming_journey_step_and_contact() {
    let project = compile(
        SETTINGS,
        "journey daily_tag {\n  entry daily at 09:00\n  reentry always\n  tag \"seen\"\n}\n",
    );
    let mut memory = Memory {
        contacts: vec![contact("c-1")],
        ..Memory::default()
    };
    // Thirty daily entries, and a guard of ten.
    let error = run(&project, &mut memory, "c-1", at(1, 0), at(31, 0), 10).expect_err("stops");
    let message = error.to_string();
    assert!(message.contains("contact `c-1`"), "{message}");
    assert!(message.contains("journey `daily_tag`"), "{message}");
    assert!(message.contains("step `@end`"), "{message}");
}

#[test]
fn a_late_event_acts_just_after_the_previous_run() {
    let project = compile(
        SETTINGS,
        "journey w {\n  entry on event \"signed_up\"\n  email \"w/hi\"\n}\n",
    );
    let mut memory = Memory {
        contacts: vec![contact("c-1")],
        events: vec![event("e1", "c-1", "signed_up", at(2, 1), 7)],
        ..Memory::default()
    };
    // The previous run went to 3 March and had seen events up to seq 5.
    let program = Program::default();
    let engine = Engine {
        settings: &project.settings,
        program: &program,
        templates: &project.templates,
        journeys: vec![JourneyRun {
            journey: &project.analysis.journeys[0],
            version: "v1".into(),
            after: at(3, 0),
            seen_seq: 5,
            launching: false,
        }],
        now: at(4, 0),
        run_seq: 7,
        max_agenda: 1000,
    };
    let mut counts = Counts::default();
    engine
        .contact(&mut memory, contact("c-1"), &mut counts)
        .expect("runs");
    assert_eq!(
        memory.enrolments[0].entered_at,
        Timestamp::from(at(3, 0)).plus_seconds(1)
    );
}
