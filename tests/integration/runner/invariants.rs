//! The runner's promises, held over generated journeys, populations and
//! cadences (GRAMMAR.md, "What the runner promises"):
//!
//! - the result is a function of what the contacts did, not of when cron
//!   ran: every hour, every night, once a week, once at the end, or runs of
//!   only some journeys now and then give the same outbox and the same
//!   enrolments;
//! - an event imported after a run passed its time acts as if it happened
//!   just after that run;
//! - caps hold in every window, and quiet hours, windows and days at the
//!   planned time, whatever order journeys or contacts are processed in;
//! - `deliver`, run at any instants, sends nothing at night or over a cap,
//!   retries included.
//!
//! Each generated case is a small project (journeys using every step
//! kind, a few contacts in three timezones, their events over two weeks
//! across New York's spring change). A failing case prints the journeys,
//! settings, contacts and events, shrunk to a small one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use chrono::{DateTime, Duration, TimeZone, Utc};
use journeyc::model::{Channel, OutboxStatus, Timestamp};
use journeyc::project::{self, Checked};
use journeyc::runner::run::{run_at, run_pipelined, Plan};
use journeyc::store::sqlite::SqliteStore;
use journeyc::store::{Outbox, Store};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// Monday 2 March 2026, 00:00 UTC: the journeys are deployed then.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0)
        .single()
        .expect("a time")
}

const DAYS: i64 = 12;
const TIMEZONES: [&str; 3] = ["Asia/Shanghai", "America/New_York", "Europe/London"];
const EVENTS: [&str; 5] = [
    "signed_up",
    "clicked",
    "purchased",
    "replied",
    "unsubscribed",
];
const TAGS: [&str; 3] = ["vip", "warm", "stop"];
const STAGES: [&str; 3] = ["lead", "customer", "dormant"];

// ------------------------------------------------------------- the cases

#[derive(Clone, Debug)]
enum Cond {
    Pro,
    Tagged(u8),
    Clicked,
    Points,
    Stage(u8),
    Score(u8),
    Since(u8),
}

impl Cond {
    fn text(&self) -> String {
        match self {
            Cond::Pro => "plan == \"pro\"".into(),
            Cond::Tagged(tag) => format!("has_tag(\"{}\")", TAGS[usize::from(*tag) % 3]),
            Cond::Clicked => "count(event \"clicked\") > 0".into(),
            Cond::Points => "points >= 5".into(),
            Cond::Stage(stage) => format!("stage == \"{}\"", STAGES[usize::from(*stage) % 3]),
            Cond::Score(at_least) => format!("score(interest) >= {}", at_least % 6 + 1),
            Cond::Since(days) => format!("days_since(created_at) > {}", days % 12),
        }
    }
}

#[derive(Clone, Debug)]
enum Wait {
    Days(u8),
    Hours(u8),
    Clock(u8),
    Weekday(u8),
    Birthday,
}

#[derive(Clone, Debug)]
enum Step {
    Email(u8, Option<u8>),
    Receipt,
    Sms(u8),
    Task,
    Webhook,
    Wait(Wait),
    WaitEvent {
        days: u8,
        event: u8,
        got: Vec<Step>,
        timeout: Vec<Step>,
    },
    Split {
        branches: Vec<(Cond, Vec<Step>)>,
        otherwise: Option<Vec<Step>>,
    },
    Ab {
        weight: u8,
        holdout: bool,
        first: Vec<Step>,
        second: Vec<Step>,
    },
    Repeat {
        count: u8,
        days: u8,
        body: Vec<Step>,
    },
    Tag(u8),
    Untag(u8),
    Stage(u8),
    Score,
    Handoff,
    End,
}

#[derive(Clone, Debug)]
enum Entry {
    Event(u8),
    Clicked,
    Stage(u8),
    Tag(u8),
    Daily(u8),
    Weekly(u8),
    Once(u8),
    Birthday,
    Holiday,
    When(Cond),
}

#[derive(Clone, Debug)]
struct JourneySpec {
    entry: Entry,
    second_entry: Option<Entry>,
    reentry: Option<u8>,
    audience: Option<Cond>,
    goal: Option<(u8, u8, bool)>,
    exits: Vec<u8>,
    rescue: Option<u8>,
    cap: Option<(u8, u8)>,
    quiet: bool,
    window: bool,
    weekdays: bool,
    priority: u8,
    steps: Vec<Step>,
}

#[derive(Clone, Debug)]
struct ContactSpec {
    timezone: u8,
    pro: Option<bool>,
    points: Option<u8>,
    birthday: Option<(u8, u8)>,
    tags: Vec<u8>,
    stage: Option<u8>,
    email: bool,
    phone: bool,
}

#[derive(Clone, Debug)]
struct EventSpec {
    contact: u8,
    name: u8,
    minutes: u32,
}

#[derive(Clone)]
struct Case {
    quiet: u8,
    email_cap: u8,
    sms_cap: bool,
    skip: bool,
    journeys: Vec<JourneySpec>,
    contacts: Vec<ContactSpec>,
    events: Vec<EventSpec>,
}

/// Writes a block of steps, labelling a step whose content an earlier one
/// in the block has (E137 asks for it), so every block compiles.
struct Writer {
    out: String,
    labels: usize,
    journey: usize,
    journeys: usize,
}

impl Writer {
    fn block(&mut self, steps: &[Step], depth: usize) {
        let mut seen = BTreeSet::new();
        for step in steps {
            // What the step's ID is made of (see `journeyc graph`): the
            // count of a repeat and `expires after` are not part of it.
            let key = match step {
                Step::Repeat { days, .. } => format!("repeat every {}", days % 3 + 1),
                Step::Email(template, _) => format!("email {}", template % 4),
                other => self.line(other),
            };
            let indent = "  ".repeat(depth);
            if seen.insert(key) {
                let _ = write!(self.out, "{indent}");
            } else {
                self.labels += 1;
                let _ = write!(self.out, "{indent}l{}: ", self.labels);
            }
            self.step(step, depth);
        }
    }

    fn line(&self, step: &Step) -> String {
        match step {
            Step::Email(template, expires) => format!(
                "email \"m/e{}\"{}",
                template % 4,
                expires.map_or(String::new(), |hours| format!(
                    " expires after {}h",
                    hours % 48 + 1
                ))
            ),
            Step::Receipt => "email \"m/receipt\"".into(),
            Step::Sms(template) => format!("sms \"m/s{}\"", template % 2),
            Step::Task => "task \"ops@example.com\" \"call {{ contact.id }}\" due 1d".into(),
            Step::Webhook => "webhook crm \"m/hook\"".into(),
            Step::Wait(Wait::Days(days)) => format!("wait {}d", days % 4 + 1),
            Step::Wait(Wait::Hours(hours)) => format!("wait {}h", hours % 30 + 1),
            Step::Wait(Wait::Clock(hour)) => format!("wait until {:02}:30", hour % 24),
            Step::Wait(Wait::Weekday(hour)) => format!("wait until weekday {:02}:00", hour % 24),
            Step::Wait(Wait::Birthday) => "wait until birthday at 09:00".into(),
            Step::WaitEvent { days, event, .. } => format!(
                "wait {}d for event \"{}\"",
                days % 3 + 1,
                EVENTS[usize::from(*event) % 4]
            ),
            Step::Split { .. } => "split".into(),
            Step::Ab { .. } => "ab".into(),
            Step::Repeat { count, days, .. } => {
                format!("repeat {} times every {}d", count % 2 + 2, days % 3 + 1)
            }
            Step::Tag(tag) => format!("tag \"{}\"", TAGS[usize::from(*tag) % 3]),
            Step::Untag(tag) => format!("untag \"{}\"", TAGS[usize::from(*tag) % 3]),
            Step::Stage(stage) => format!("stage \"{}\"", STAGES[usize::from(*stage) % 3]),
            Step::Score => "score interest +3".into(),
            Step::Handoff => {
                if self.journey + 1 < self.journeys {
                    format!("handoff j{}", self.journey + 1)
                } else {
                    "tag \"warm\"".into()
                }
            }
            Step::End => "end".into(),
        }
    }

    fn step(&mut self, step: &Step, depth: usize) {
        let indent = "  ".repeat(depth);
        let inner = "  ".repeat(depth + 1);
        match step {
            Step::WaitEvent { got, timeout, .. } => {
                let head = self.line(step);
                let _ = writeln!(self.out, "{head} {{");
                let _ = writeln!(self.out, "{inner}got {{");
                self.block(got, depth + 2);
                let _ = writeln!(self.out, "{inner}}}");
                let _ = writeln!(self.out, "{inner}timeout {{");
                self.block(timeout, depth + 2);
                let _ = writeln!(self.out, "{inner}}}");
                let _ = writeln!(self.out, "{indent}}}");
            }
            Step::Split {
                branches,
                otherwise,
            } => {
                let _ = writeln!(self.out, "split {{");
                for (condition, body) in branches {
                    let _ = writeln!(self.out, "{inner}when {} {{", condition.text());
                    self.block(body, depth + 2);
                    let _ = writeln!(self.out, "{inner}}}");
                }
                if let Some(body) = otherwise {
                    let _ = writeln!(self.out, "{inner}else {{");
                    self.block(body, depth + 2);
                    let _ = writeln!(self.out, "{inner}}}");
                }
                let _ = writeln!(self.out, "{indent}}}");
            }
            Step::Ab {
                weight,
                holdout,
                first,
                second,
            } => {
                let a = u32::from(weight % 9 + 1) * 10;
                let rest = 100 - a;
                let _ = writeln!(self.out, "ab t{} {{", self.labels);
                self.labels += 1;
                let _ = writeln!(self.out, "{inner}variant a {a}% {{");
                self.block(first, depth + 2);
                let _ = writeln!(self.out, "{inner}}}");
                if *holdout {
                    let _ = writeln!(self.out, "{inner}holdout {rest}%");
                } else {
                    let _ = writeln!(self.out, "{inner}variant b {rest}% {{");
                    self.block(second, depth + 2);
                    let _ = writeln!(self.out, "{inner}}}");
                }
                let _ = writeln!(self.out, "{indent}}}");
            }
            Step::Repeat { body, .. } => {
                let head = self.line(step);
                let _ = writeln!(self.out, "{head} {{");
                self.block(body, depth + 1);
                let _ = writeln!(self.out, "{indent}}}");
            }
            other => {
                let line = self.line(other);
                let _ = writeln!(self.out, "{line}");
            }
        }
    }
}

fn entry_text(entry: &Entry) -> String {
    match entry {
        Entry::Event(event) => format!("on event \"{}\"", EVENTS[usize::from(*event) % 4]),
        Entry::Clicked => "on event \"clicked\" where page starts_with \"/p\"".into(),
        Entry::Stage(stage) => format!("on stage \"{}\"", STAGES[usize::from(*stage) % 3]),
        Entry::Tag(tag) => format!("on tag \"{}\"", TAGS[usize::from(*tag) % 2]),
        Entry::Daily(hour) => format!("daily at {:02}:00", hour % 24),
        Entry::Weekly(day) => format!(
            "every {} at 10:00",
            ["monday", "wednesday", "saturday"][usize::from(*day) % 3]
        ),
        Entry::Once(day) => format!("once 2026-03-{:02} at 11:00", day % 10 + 3),
        Entry::Birthday => "on date birthday at 09:00".into(),
        Entry::Holiday => "on holiday \"fest\" at 10:00".into(),
        Entry::When(condition) => format!("when {}", condition.text()),
    }
}

impl Case {
    fn settings(&self) -> String {
        let quiet = [
            "",
            "quiet_hours: \"21:00..09:00\"\n",
            "quiet_hours: \"22:00..08:30\"\n",
        ][usize::from(self.quiet) % 3];
        let email_cap = ["", "1 per 2d", "2 per 5d"][usize::from(self.email_cap) % 3];
        let mut caps = Vec::new();
        if !email_cap.is_empty() {
            caps.push(format!("email: {email_cap}"));
        }
        if self.sms_cap {
            caps.push("sms: 1 per 3d".to_string());
        }
        let caps = if caps.is_empty() {
            String::new()
        } else {
            format!("caps: {{ {} }}\n", caps.join(", "))
        };
        let over_cap = if self.skip { "over_cap: skip\n" } else { "" };
        format!(
            "timezone: Asia/Shanghai
journeys: [journeys]
templates: templates
contact:
  first_name: string?
  plan: {{ type: enum, values: [free, pro], optional: true }}
  points: number?
  birthday: date?
events:
  signed_up:
  clicked: {{ page: string }}
  purchased:
  replied:
stages: [lead, customer, dormant]
channels:
  email:
    from: \"Shop <shop@example.com>\"
    unsubscribe_url: \"https://example.com/u\"
    transport: {{ url: \"file:out/email\" }}
  sms:
    from: \"Shop\"
    transport: {{ kind: file, url: out/sms }}
  task: {{ fallback_assignee: \"ops@example.com\" }}
webhooks:
  crm: {{ url_env: JOURNEYC_TEST_NO_SUCH_URL }}
holidays:
  fest: [2026-03-06, 2026-03-11]
delivery: {{ backoff: 5m, lateness: 30d }}
{quiet}{caps}{over_cap}"
        )
    }

    fn journeys_source(&self) -> String {
        let mut writer = Writer {
            out: String::new(),
            labels: 0,
            journey: 0,
            journeys: self.journeys.len(),
        };
        let _ = writeln!(
            writer.out,
            "score interest {{\n  on event \"clicked\" +2\n  on event \"replied\" -3\n  when plan == \"pro\" +1\n  decay half_life 7d\n}}\n"
        );
        for (index, journey) in self.journeys.iter().enumerate() {
            writer.journey = index;
            let _ = writeln!(writer.out, "journey j{index} {{");
            let _ = writeln!(writer.out, "  entry {}", entry_text(&journey.entry));
            if let Some(second) = &journey.second_entry {
                let _ = writeln!(writer.out, "  entry {}", entry_text(second));
            }
            match journey.reentry {
                Some(days) if days % 3 == 0 => {
                    let _ = writeln!(writer.out, "  reentry always");
                }
                Some(days) => {
                    let _ = writeln!(writer.out, "  reentry after {}d", days % 3 + 1);
                }
                None => {}
            }
            if let Some(audience) = &journey.audience {
                let _ = writeln!(writer.out, "  audience {}", audience.text());
            }
            if let Some((condition, days, then)) = journey.goal {
                let condition = if condition % 2 == 0 {
                    "event \"purchased\"".to_string()
                } else {
                    "when has_tag(\"warm\")".to_string()
                };
                let then = if then { " then stage \"customer\"" } else { "" };
                let _ = writeln!(
                    writer.out,
                    "  goal {condition} within {}d{then}",
                    days % 10 + 5
                );
            }
            for exit in &journey.exits {
                let signal = match exit % 4 {
                    0 => "on event \"unsubscribed\"",
                    1 => "on tag \"stop\"",
                    2 => "when points >= 9",
                    _ => "when days_since(created_at) > 5 and has_tag(\"warm\")",
                };
                let _ = writeln!(writer.out, "  exit {signal}");
            }
            if let Some(signal) = journey.rescue {
                let signal = match signal % 3 {
                    0 => "on event \"replied\"".to_string(),
                    1 => "on stage \"dormant\"".to_string(),
                    _ => format!("when days_since(created_at) > {}", signal % 9),
                };
                let _ = writeln!(writer.out, "  rescue {signal} -> rescue_point");
            }
            let mut limits = Vec::new();
            if let Some((count, days)) = journey.cap {
                limits.push(format!("email {} per {}d", count % 2 + 1, days % 4 + 1));
            }
            if journey.quiet {
                limits.push("quiet 12:00..13:30".into());
            }
            if journey.window {
                limits.push("window 08:00..20:00".into());
            }
            if journey.weekdays {
                limits.push("days monday..friday".into());
            }
            if !limits.is_empty() {
                let _ = writeln!(writer.out, "  limits {{ {} }}", limits.join("  "));
            }
            if journey.priority > 0 {
                let _ = writeln!(writer.out, "  priority {}", journey.priority);
            }
            writer.block(&journey.steps, 1);
            if journey.rescue.is_some() {
                let _ = writeln!(writer.out, "  end\n  rescue_point: email \"m/rescue\"");
            }
            let _ = writeln!(writer.out, "}}\n");
        }
        writer.out
    }

    fn contacts_csv(&self) -> String {
        let mut csv =
            String::from("id,first_name,plan,points,birthday,tags,stage,timezone,email,phone\n");
        for (index, contact) in self.contacts.iter().enumerate() {
            let plan = match contact.pro {
                Some(true) => "pro",
                Some(false) => "free",
                None => "",
            };
            let points = contact
                .points
                .map(|points| (points % 12).to_string())
                .unwrap_or_default();
            let birthday = contact
                .birthday
                .map(|(month, day)| format!("1990-{:02}-{:02}", month % 2 + 3, day % 28 + 1))
                .unwrap_or_default();
            let tags: Vec<&str> = contact
                .tags
                .iter()
                .map(|tag| TAGS[usize::from(*tag) % 3])
                .collect();
            let stage = contact
                .stage
                .map_or("", |stage| STAGES[usize::from(stage) % 3]);
            let email = if contact.email {
                format!("c{index}@example.com")
            } else {
                String::new()
            };
            let phone = if contact.phone {
                format!("+861380000000{index}")
            } else {
                String::new()
            };
            let _ = writeln!(
                csv,
                "c{index},N{index},{plan},{points},{birthday},{},{stage},{},{email},{phone}",
                tags.join(";"),
                TIMEZONES[usize::from(contact.timezone) % 3]
            );
        }
        csv
    }

    /// Events as JSON Lines; `moved` gives some a time of their own.
    fn events_jsonl(&self, events: &[(usize, DateTime<Utc>)]) -> String {
        let mut lines = String::new();
        for (index, at) in events {
            let event = &self.events[*index];
            let name = EVENTS[usize::from(event.name) % 5];
            let contact = usize::from(event.contact) % self.contacts.len();
            let properties = if name == "clicked" {
                format!(", \"page\": \"/p{}\"", event.minutes % 2)
            } else {
                String::new()
            };
            let _ = writeln!(
                lines,
                "{{\"id\": \"e{index}\", \"contact_id\": \"c{contact}\", \"name\": \"{name}\", \"at\": \"{}\"{properties}}}",
                Timestamp::from(*at)
            );
        }
        lines
    }

    fn event_time(&self, index: usize) -> DateTime<Utc> {
        let minutes = i64::from(self.events[index].minutes) % (DAYS * 24 * 60 - 60) + 30;
        start() + Duration::minutes(minutes)
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events: Vec<(usize, DateTime<Utc>)> = (0..self.events.len())
            .map(|index| (index, self.event_time(index)))
            .collect();
        write!(
            f,
            "\n--- journeyc.yaml\n{}--- journeys\n{}--- contacts.csv\n{}--- events.jsonl\n{}",
            self.settings(),
            self.journeys_source(),
            self.contacts_csv(),
            self.events_jsonl(&events)
        )
    }
}

// ------------------------------------------------------------ strategies

fn condition() -> impl Strategy<Value = Cond> {
    prop_oneof![
        Just(Cond::Pro),
        any::<u8>().prop_map(Cond::Tagged),
        Just(Cond::Clicked),
        Just(Cond::Points),
        any::<u8>().prop_map(Cond::Stage),
        any::<u8>().prop_map(Cond::Score),
        any::<u8>().prop_map(Cond::Since),
    ]
}

fn leaf() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<u8>(), proptest::option::weighted(0.2, any::<u8>())).prop_map(|(t, e)| Step::Email(t, e)),
        1 => Just(Step::Receipt),
        2 => any::<u8>().prop_map(Step::Sms),
        1 => Just(Step::Task),
        1 => Just(Step::Webhook),
        2 => any::<u8>().prop_map(|d| Step::Wait(Wait::Days(d))),
        2 => any::<u8>().prop_map(|h| Step::Wait(Wait::Hours(h))),
        1 => any::<u8>().prop_map(|h| Step::Wait(Wait::Clock(h))),
        1 => any::<u8>().prop_map(|h| Step::Wait(Wait::Weekday(h))),
        1 => Just(Step::Wait(Wait::Birthday)),
        1 => any::<u8>().prop_map(Step::Tag),
        1 => any::<u8>().prop_map(Step::Untag),
        1 => any::<u8>().prop_map(Step::Stage),
        1 => Just(Step::Score),
        1 => Just(Step::Handoff),
        1 => Just(Step::End),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = leaf().prop_recursive(2, 12, 3, |inner| {
        let block = || proptest::collection::vec(inner.clone(), 0..3);
        prop_oneof![
            (any::<u8>(), any::<u8>(), block(), block()).prop_map(|(days, event, got, timeout)| {
                Step::WaitEvent {
                    days,
                    event,
                    got,
                    timeout,
                }
            }),
            (
                proptest::collection::vec((condition(), block()), 1..3),
                proptest::option::of(block())
            )
                .prop_map(|(branches, otherwise)| Step::Split {
                    branches,
                    otherwise
                }),
            (any::<u8>(), any::<bool>(), block(), block()).prop_map(
                |(weight, holdout, first, second)| Step::Ab {
                    weight,
                    holdout,
                    first,
                    second
                }
            ),
            (
                any::<u8>(),
                any::<u8>(),
                proptest::collection::vec(leaf(), 1..3)
            )
                .prop_map(|(count, days, body)| Step::Repeat { count, days, body }),
        ]
    });
    proptest::collection::vec(step, 1..6)
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => any::<u8>().prop_map(Entry::Event),
        1 => Just(Entry::Clicked),
        1 => any::<u8>().prop_map(Entry::Stage),
        1 => any::<u8>().prop_map(Entry::Tag),
        1 => any::<u8>().prop_map(Entry::Daily),
        1 => any::<u8>().prop_map(Entry::Weekly),
        1 => any::<u8>().prop_map(Entry::Once),
        1 => Just(Entry::Birthday),
        1 => Just(Entry::Holiday),
        1 => condition().prop_map(Entry::When),
    ]
}

fn journey() -> impl Strategy<Value = JourneySpec> {
    (
        (
            entry(),
            proptest::option::weighted(0.2, entry()),
            proptest::option::of(any::<u8>()),
            proptest::option::weighted(0.3, condition()),
            proptest::option::weighted(0.4, (any::<u8>(), any::<u8>(), any::<bool>())),
            proptest::collection::vec(any::<u8>(), 0..2),
            proptest::option::weighted(0.3, any::<u8>()),
        ),
        (
            proptest::option::weighted(0.3, (any::<u8>(), any::<u8>())),
            proptest::bool::weighted(0.2),
            proptest::bool::weighted(0.2),
            proptest::bool::weighted(0.15),
            0_u8..3,
            steps(),
        ),
    )
        .prop_map(
            |(
                (entry, second_entry, reentry, audience, goal, exits, rescue),
                (cap, quiet, window, weekdays, priority, steps),
            )| JourneySpec {
                entry,
                second_entry,
                reentry,
                audience,
                goal,
                exits,
                rescue,
                cap,
                quiet,
                window,
                weekdays,
                priority,
                steps,
            },
        )
}

fn contact() -> impl Strategy<Value = ContactSpec> {
    (
        any::<u8>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of((any::<u8>(), any::<u8>())),
        proptest::collection::vec(any::<u8>(), 0..2),
        proptest::option::of(any::<u8>()),
        proptest::bool::weighted(0.85),
        proptest::bool::weighted(0.7),
    )
        .prop_map(
            |(timezone, pro, points, birthday, tags, stage, email, phone)| ContactSpec {
                timezone,
                pro,
                points,
                birthday,
                tags,
                stage,
                email,
                phone,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
        proptest::bool::weighted(0.2),
        proptest::collection::vec(journey(), 1..4),
        proptest::collection::vec(contact(), 1..5),
        proptest::collection::vec(
            (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(contact, name, minutes)| {
                EventSpec {
                    contact,
                    name,
                    minutes,
                }
            }),
            0..10,
        ),
    )
        .prop_map(
            |(quiet, email_cap, sms_cap, skip, journeys, contacts, events)| Case {
                quiet,
                email_cap,
                sms_cap,
                skip,
                journeys,
                contacts,
                events,
            },
        )
}

// --------------------------------------------------------------- running

/// A case written to disk and compiled; it must check clean.
struct Loaded {
    dir: tempfile::TempDir,
    checked: Checked,
}

fn load(case: &Case) -> Result<Loaded, TestCaseError> {
    let dir = tempfile::tempdir().map_err(|error| TestCaseError::fail(error.to_string()))?;
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("journeyc.yaml", &case.settings());
    write("journeys/main.journey", &case.journeys_source());
    let email = |name: &str, kind: &str| {
        format!("---\nkind: {kind}\nsubject: \"{name}\"\n---\n{{% block text %}}\n{name} {{{{ contact.id }}}}\n{{{{ unsubscribe_url }}}}\n{{% endblock %}}\n")
    };
    for template in ["e0", "e1", "e2", "e3", "rescue"] {
        write(
            &format!("templates/m/{template}.email"),
            &email(template, "marketing"),
        );
    }
    write(
        "templates/m/receipt.email",
        &email("receipt", "transactional"),
    );
    write("templates/m/s0.sms", "s0 {{ contact.id }}\n");
    write("templates/m/s1.sms", "s1 {{ contact.id }}\n");
    write(
        "templates/m/hook.webhook",
        "{\"id\": {{ contact.id | tojson }}}\n",
    );
    let checked = project::load(&dir.path().join("journeyc.yaml"), &BTreeSet::new())
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    let errors: Vec<String> = checked
        .analysis
        .diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.severity == journeyc::diagnostic::Severity::Error)
        .map(|diagnostic| format!("{} {}", diagnostic.code.as_str(), diagnostic.message))
        .collect();
    prop_assert!(
        errors.is_empty(),
        "the generated project has errors: {errors:?}"
    );
    Ok(Loaded { dir, checked })
}

/// A fresh in-memory store holding the case's contacts, the journeys
/// deployed before anything happens, and the events imported up front
/// except `late` ones (imported by [`Cadence::run`] when their run comes).
fn fresh(loaded: &Loaded, case: &Case, events: &[(usize, DateTime<Utc>)]) -> SqliteStore {
    fresh_in(
        SqliteStore::in_memory().expect("a store"),
        loaded,
        case,
        events,
    )
}

/// [`fresh`] in a file of the case's folder, which a pipelined night opens
/// again for its evaluators.
fn fresh_file(loaded: &Loaded, case: &Case, events: &[(usize, DateTime<Utc>)]) -> SqliteStore {
    let path = loaded.dir.path().join("journeyc.db");
    let _ = std::fs::remove_file(&path);
    fresh_in(
        SqliteStore::open(&path).expect("a store"),
        loaded,
        case,
        events,
    )
}

fn fresh_in(
    mut store: SqliteStore,
    loaded: &Loaded,
    case: &Case,
    events: &[(usize, DateTime<Utc>)],
) -> SqliteStore {
    let settings = loaded.checked.settings.as_ref().expect("settings");
    run_at(
        &loaded.checked,
        &mut store,
        start(),
        &Plan::default(),
        &|_| {},
    )
    .expect("deploys");
    let contacts = loaded.dir.path().join("contacts.csv");
    std::fs::write(&contacts, case.contacts_csv()).expect("write");
    journeyc::import::import(
        settings,
        &mut store,
        journeyc::import::ImportKind::Contacts,
        &contacts,
        start() + Duration::minutes(1),
    )
    .expect("contacts import");
    import_events(loaded, case, &mut store, events);
    store
}

fn import_events(
    loaded: &Loaded,
    case: &Case,
    store: &mut SqliteStore,
    events: &[(usize, DateTime<Utc>)],
) {
    if events.is_empty() {
        return;
    }
    let settings = loaded.checked.settings.as_ref().expect("settings");
    let path = loaded.dir.path().join("events.jsonl");
    std::fs::write(&path, case.events_jsonl(events)).expect("write");
    let report = journeyc::import::import(
        settings,
        store,
        journeyc::import::ImportKind::Events,
        &path,
        start(),
    )
    .expect("events import");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
}

/// When runs happen, and which journeys each one moves (all when empty).
#[derive(Clone, Debug)]
struct Cadence {
    runs: Vec<(DateTime<Utc>, Vec<String>)>,
    /// Every run visits every contact (`--all-contacts`), not only those
    /// with something due or new.
    everyone: bool,
    /// Runs spread over this many evaluator threads, pages of this many
    /// contacts (a store in a file; none: one thread, pages of 1,000).
    pipelined: Option<(usize, usize)>,
}

fn end() -> DateTime<Utc> {
    start() + Duration::days(DAYS)
}

impl Cadence {
    fn every(step: Duration) -> Cadence {
        let mut runs = Vec::new();
        let mut at = start() + step;
        while at < end() {
            runs.push((at, Vec::new()));
            at += step;
        }
        runs.push((end(), Vec::new()));
        Cadence {
            runs,
            everyone: false,
            pipelined: None,
        }
    }

    /// Every night at 02:00 in Shanghai.
    fn nightly() -> Cadence {
        let mut runs = Vec::new();
        let mut at = start() + Duration::hours(18);
        while at < end() {
            runs.push((at, Vec::new()));
            at += Duration::days(1);
        }
        runs.push((end(), Vec::new()));
        Cadence {
            runs,
            everyone: false,
            pipelined: None,
        }
    }

    fn once() -> Cadence {
        Cadence {
            runs: vec![(end(), Vec::new())],
            everyone: false,
            pipelined: None,
        }
    }

    /// Runs the cadence on `store`. `late` events (index, when it happened,
    /// when it reaches journeyc) are imported before the first run at or
    /// after they reach it, as a nightly import before the run would.
    fn run(
        &self,
        loaded: &Loaded,
        case: &Case,
        store: &mut SqliteStore,
        late: &[(usize, DateTime<Utc>, DateTime<Utc>)],
    ) -> Result<(), TestCaseError> {
        let mut pending: Vec<&(usize, DateTime<Utc>, DateTime<Utc>)> = late.iter().collect();
        for (at, journeys) in &self.runs {
            let arrived: Vec<(usize, DateTime<Utc>)> = pending
                .iter()
                .filter(|(_, _, imported)| imported <= at)
                .map(|(index, happened, _)| (*index, *happened))
                .collect();
            pending.retain(|(_, _, imported)| imported > at);
            import_events(loaded, case, store, &arrived);
            let plan = Plan {
                journeys,
                everyone: self.everyone,
                page: self.pipelined.map(|(_, page)| page),
                ..Plan::default()
            };
            match self.pipelined {
                Some((evaluators, _)) => {
                    run_pipelined(&loaded.checked, store, evaluators, *at, &plan, &|_| {})
                }
                None => run_at(&loaded.checked, store, *at, &plan, &|_| {}),
            }
            .map_err(|error| TestCaseError::fail(format!("run at {at}: {error}")))?;
        }
        Ok(())
    }
}

/// Everything the runner decided, keyed so that two stores that decided
/// the same compare equal (enrolments by contact, journey and entry time,
/// not by their ids).
fn outcome(store: &SqliteStore, case: &Case) -> BTreeMap<String, Vec<String>> {
    let mut outcome = BTreeMap::new();
    for index in 0..case.contacts.len() {
        let id = format!("c{index}");
        let enrolments = store.enrolments_of(&id).expect("enrolments");
        let entered: BTreeMap<i64, String> = enrolments
            .iter()
            .map(|enrolment| {
                (
                    enrolment.id,
                    format!("{}@{}", enrolment.journey, enrolment.entered_at),
                )
            })
            .collect();
        let mut lines: Vec<String> = enrolments
            .iter()
            .map(|enrolment| {
                format!(
                    "enrolment {}@{} {} at {} due {:?} ended {:?}",
                    enrolment.journey,
                    enrolment.entered_at,
                    enrolment.state,
                    enrolment.step,
                    enrolment.due_at.map(|at| at.to_string()),
                    enrolment.ended_at.map(|at| at.to_string())
                )
            })
            .collect();
        for row in store.outbox_of(&id).expect("outbox") {
            lines.push(format!(
                "message {} {} {} {} {} {}",
                entered
                    .get(&row.enrolment_id())
                    .cloned()
                    .unwrap_or_default(),
                row.step(),
                row.channel,
                row.template,
                row.send_at,
                row.status
            ));
        }
        let contact = store.contact(&id).expect("contact").expect("exists");
        let mut fields = contact.fields;
        fields.remove("created_at");
        lines.push(format!("fields {}", serde_json::Value::Object(fields)));
        lines.sort();
        outcome.insert(id, lines);
    }
    outcome
}

/// The rules a planned row goes by, found from its journey and template.
fn policy_of(
    loaded: &Loaded,
    journey: &str,
    channel: Channel,
    kind: journeyc::templates::MessageKind,
) -> journeyc::policy::Policy {
    let settings = loaded.checked.settings.as_ref().expect("settings");
    let compiled = loaded
        .checked
        .analysis
        .journeys
        .iter()
        .find(|compiled| compiled.name == journey)
        .expect("the journey");
    journeyc::policy::policy(settings, compiled, channel, kind)
}

fn timezone_of(case: &Case, contact: &str) -> chrono_tz::Tz {
    let index: usize = contact[1..].parse().expect("c<n>");
    TIMEZONES[usize::from(case.contacts[index].timezone) % 3]
        .parse()
        .expect("a timezone")
}

/// Caps hold in every window, and every marketing send is at an allowed
/// local time: for the planned times (`sent` false) or the actual ones.
fn check_schedule(
    loaded: &Loaded,
    case: &Case,
    store: &SqliteStore,
    sent: bool,
) -> Result<(), TestCaseError> {
    for index in 0..case.contacts.len() {
        let id = format!("c{index}");
        let tz = timezone_of(case, &id);
        let rows = store.outbox_of(&id).expect("outbox");
        let mut times: BTreeMap<Channel, Vec<(String, DateTime<Utc>)>> = BTreeMap::new();
        for row in &rows {
            let when = if sent {
                if row.status != OutboxStatus::Sent {
                    continue;
                }
                store
                    .delivered(&row.key)
                    .expect("delivered")
                    .and_then(|delivered| delivered.sent_at)
                    .expect("a sent row has its time")
            } else {
                if !row.status.counts_as_send() {
                    continue;
                }
                row.send_at
            };
            let policy = policy_of(loaded, &row.journey, row.channel, row.kind);
            if let Some(rules) = &policy.rules {
                let at = when.utc();
                prop_assert_eq!(
                    journeyc::runner::time::allowed_send_time(tz, at, rules),
                    at,
                    "{} {} {} at {} is outside its allowed hours",
                    id,
                    row.journey,
                    row.template,
                    when
                );
            }
            if row.kind == journeyc::templates::MessageKind::Marketing {
                times
                    .entry(row.channel)
                    .or_default()
                    .push((row.journey.clone(), when.utc()));
            }
        }
        for (channel, sends) in &times {
            for journey in case_journeys(case) {
                let policy = policy_of(
                    loaded,
                    &journey,
                    *channel,
                    journeyc::templates::MessageKind::Marketing,
                );
                for cap in &policy.caps {
                    let mut counted: Vec<DateTime<Utc>> = sends
                        .iter()
                        .filter(|(owner, _)| cap.journey.as_deref().is_none_or(|own| own == owner))
                        .map(|(_, at)| *at)
                        .collect();
                    counted.sort_unstable();
                    let count = usize::try_from(cap.count).expect("small");
                    let span = Duration::minutes(i64::try_from(cap.per.minutes).expect("small"));
                    for window in counted.windows(count + 1) {
                        prop_assert!(
                            window[count] - window[0] >= span,
                            "{id}: {} sends within {}: {window:?}",
                            count + 1,
                            cap.describe()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether one journey can change what another reads: tags, stages,
/// hand-offs, and the project's caps, which count every journey's sends.
fn interacts(case: &Case) -> bool {
    fn acts(steps: &[Step]) -> bool {
        steps.iter().any(|step| match step {
            Step::Tag(_) | Step::Untag(_) | Step::Stage(_) | Step::Handoff => true,
            Step::WaitEvent { got, timeout, .. } => acts(got) || acts(timeout),
            Step::Split {
                branches,
                otherwise,
            } => {
                branches.iter().any(|(_, body)| acts(body))
                    || otherwise.as_deref().is_some_and(acts)
            }
            Step::Ab { first, second, .. } => acts(first) || acts(second),
            Step::Repeat { body, .. } => acts(body),
            _ => false,
        })
    }
    let capped = !case.email_cap.is_multiple_of(3) || case.sms_cap;
    case.journeys.len() > 1
        && (capped
            || case.journeys.iter().any(|journey| {
                acts(&journey.steps) || journey.goal.is_some_and(|(_, _, then)| then)
            }))
}

fn case_journeys(case: &Case) -> Vec<String> {
    (0..case.journeys.len())
        .map(|index| format!("j{index}"))
        .collect()
}

fn all_events(case: &Case) -> Vec<(usize, DateTime<Utc>)> {
    (0..case.events.len())
        .map(|index| (index, case.event_time(index)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Hourly, nightly, weekly, once, and random partial runs give the
    /// same outbox and enrolments; the plan keeps every cap and every
    /// quiet hour, window and day.
    #[test]
    fn the_outcome_does_not_depend_on_when_cron_runs(
        case in case(),
        partial in proptest::collection::vec((0_i64..(DAYS * 24), any::<u8>()), 0..5),
    ) {
        let loaded = load(&case)?;
        let events = all_events(&case);
        let mut reference = fresh(&loaded, &case, &events);
        Cadence::every(Duration::hours(1)).run(&loaded, &case, &mut reference, &[])?;
        let expected = outcome(&reference, &case);
        check_schedule(&loaded, &case, &reference, false)?;

        // A partial run moves the first few journeys: a journey that hands
        // contacts over (always to a later one here) is never behind the
        // journey it hands them to. (A hand-off into a journey that already
        // ran further enters just after where that journey got to.)
        let mut runs: Vec<(DateTime<Utc>, Vec<String>)> = partial
            .iter()
            .map(|(hours, count)| {
                let journeys: Vec<String> = case_journeys(&case)
                    .into_iter()
                    .take(usize::from(*count) % case.journeys.len() + 1)
                    .collect();
                (start() + Duration::hours(*hours) + Duration::minutes(7), journeys)
            })
            .collect();
        runs.sort_by_key(|(at, _)| *at);
        runs.push((end(), Vec::new()));
        let cadences = [
            ("nightly", Cadence::nightly()),
            ("weekly", Cadence::every(Duration::days(7))),
            ("once at the end", Cadence::once()),
            (
                "some journeys at a time",
                Cadence {
                    runs,
                    everyone: false,
                    pipelined: None,
                },
            ),
        ];
        for (name, cadence) in cadences {
            let mut store = fresh(&loaded, &case, &events);
            cadence.run(&loaded, &case, &mut store, &[])?;
            // Journeys run apart act on the contact as the others left it:
            // only journeys that change nothing another one reads must come
            // out the same whatever subsets run when.
            if name == "some journeys at a time" && interacts(&case) {
                continue;
            }
            let got = outcome(&store, &case);
            prop_assert_eq!(&got, &expected, "runs {} ({:?}) differ from hourly runs", name, cadence);
        }
    }

    /// An event imported after a run passed its time acts as if it had
    /// happened one second after that run.
    #[test]
    fn a_late_event_acts_just_after_the_run_that_missed_it(
        case in case(),
        lateness in proptest::collection::vec(0_i64..72, 0..10),
    ) {
        prop_assume!(!case.events.is_empty());
        let loaded = load(&case)?;
        let nightly = Cadence::nightly();
        let runs: Vec<DateTime<Utc>> = nightly.runs.iter().map(|(at, _)| *at).collect();
        // Each event reaches journeyc some hours after it happened (by the
        // last run at the latest) and is imported before the next run.
        let mut late = Vec::new();
        let mut moved = Vec::new();
        for index in 0..case.events.len() {
            let happened = case.event_time(index);
            let reaches = (happened + Duration::hours(lateness.get(index).copied().unwrap_or(0))).min(end());
            let imported_before = runs.iter().copied().find(|at| *at >= reaches).unwrap_or(end());
            // The last run that passed its time without it, if one did.
            let missed = runs
                .iter()
                .copied()
                .rfind(|at| *at >= happened && *at < imported_before);
            let acts = missed.map_or(happened, |run| run + Duration::seconds(1));
            late.push((index, happened, reaches));
            moved.push((index, acts));
        }
        // Conditions count events at their own time; the generated ones
        // count clicks and score clicks and replies, so only one of those
        // imported late could tell the two apart, which is the rule's
        // documented edge.
        prop_assume!(late.iter().zip(&moved).all(|((index, happened, _), (_, acts))| {
            !matches!(EVENTS[usize::from(case.events[*index].name) % 5], "clicked" | "replied")
                || happened == acts
        }));
        let mut on_time = fresh(&loaded, &case, &moved);
        nightly.run(&loaded, &case, &mut on_time, &[])?;
        let mut imported_late = fresh(&loaded, &case, &[]);
        nightly.run(&loaded, &case, &mut imported_late, &late)?;
        prop_assert_eq!(outcome(&imported_late, &case), outcome(&on_time, &case));
    }

    /// `deliver`, run at any instants, sends marketing email and SMS only
    /// at allowed local times and within every cap, counting what actually
    /// went out, retries and late plans included.
    #[test]
    fn deliver_keeps_quiet_hours_and_caps_when_it_sends(
        case in case(),
        delivers in proptest::collection::vec(0_i64..(DAYS * 24 * 60), 1..12),
        every_hours in 1_i64..72,
    ) {
        std::env::set_var("JOURNEYC_UNSUBSCRIBE_SECRET", "a-secret-for-the-invariant-tests");
        let loaded = load(&case)?;
        let events = all_events(&case);
        let mut store = fresh(&loaded, &case, &events);
        let mut moments: Vec<(DateTime<Utc>, bool)> = Cadence::every(Duration::hours(every_hours))
            .runs
            .into_iter()
            .map(|(at, _)| (at, true))
            .chain(delivers.iter().map(|minutes| (start() + Duration::minutes(*minutes), false)))
            .collect();
        moments.sort();
        for (at, is_run) in moments {
            if is_run {
                run_at(&loaded.checked, &mut store, at, &Plan::default(), &|_| {})
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
            } else {
                journeyc::deliver::deliver_at(&loaded.checked, &mut store, at, &[Channel::Email, Channel::Sms])
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
            }
        }
        check_schedule(&loaded, &case, &store, true)?;
    }
}

proptest! {
    // Each case runs its cadence twice, hourly half of the time: fewer
    // cases than above keep CI's minutes, with every step kind still in.
    #![proptest_config(ProptestConfig { cases: 150, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// A night that visits only the contacts with something due, and those
    /// an import touched, decides exactly what a night that visits every
    /// contact does: hourly and nightly, with events imported late.
    #[test]
    fn visiting_only_what_is_due_is_visiting_everyone(
        case in case(),
        lateness in proptest::collection::vec(0_i64..72, 0..10),
        hourly in any::<bool>(),
    ) {
        let loaded = load(&case)?;
        let cadence = if hourly { Cadence::every(Duration::hours(1)) } else { Cadence::nightly() };
        let late: Vec<(usize, DateTime<Utc>, DateTime<Utc>)> = (0..case.events.len())
            .map(|index| {
                let happened = case.event_time(index);
                let hours = lateness.get(index).copied().unwrap_or(0);
                (index, happened, (happened + Duration::hours(hours)).min(end()))
            })
            .collect();
        let mut due_only = fresh(&loaded, &case, &[]);
        cadence.run(&loaded, &case, &mut due_only, &late)?;
        let everyone = Cadence { everyone: true, ..cadence };
        let mut visited_all = fresh(&loaded, &case, &[]);
        everyone.run(&loaded, &case, &mut visited_all, &late)?;
        prop_assert_eq!(outcome(&due_only, &case), outcome(&visited_all, &case));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, max_shrink_iters: 1000, ..ProptestConfig::default() })]

    /// A night spread over evaluator threads, which read and evaluate
    /// pages while one thread writes them, decides exactly what a night in
    /// one thread does: with pages of one or two contacts, so that pages
    /// are evaluated out of order, hourly and nightly.
    #[test]
    fn a_night_over_every_core_is_a_night_in_one_thread(
        case in case(),
        page in 1_usize..3,
        hourly in any::<bool>(),
    ) {
        let loaded = load(&case)?;
        let cadence = if hourly { Cadence::every(Duration::hours(6)) } else { Cadence::nightly() };
        let events = all_events(&case);
        let mut one_thread = fresh(&loaded, &case, &events);
        cadence.run(&loaded, &case, &mut one_thread, &[])?;
        let pipelined = Cadence { pipelined: Some((2, page)), ..cadence };
        let mut spread = fresh_file(&loaded, &case, &events);
        pipelined.run(&loaded, &case, &mut spread, &[])?;
        prop_assert_eq!(outcome(&spread, &case), outcome(&one_thread, &case));
        // The same rows under the same ids, in the same order.
        for index in 0..case.contacts.len() {
            let id = format!("c{index}");
            prop_assert_eq!(spread.enrolments_of(&id).expect("enrolments"), one_thread.enrolments_of(&id).expect("enrolments"));
            prop_assert_eq!(spread.outbox_of(&id).expect("outbox"), one_thread.outbox_of(&id).expect("outbox"));
        }
    }
}

#[test]
fn generated_projects_use_every_step_kind() {
    // The generator is only worth its cases if it writes what journeys
    // can say; a few fixed draws from it must cover every kind of step.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut source = String::new();
    for _ in 0..200 {
        let case = case().new_tree(&mut runner).expect("a case").current();
        source.push_str(&case.journeys_source());
        source.push_str(&case.settings());
    }
    for needle in [
        "email \"",
        "sms \"",
        "task \"",
        "webhook crm",
        "wait 1d",
        "h\n",
        "wait until ",
        "weekday",
        "birthday at",
        "for event",
        "got {",
        "timeout {",
        "split {",
        "else {",
        "ab t",
        "holdout",
        "repeat ",
        "tag \"",
        "untag",
        "stage \"",
        "score interest",
        "handoff j",
        "end",
        "goal ",
        "exit ",
        "rescue ",
        "limits",
        "quiet ",
        "window ",
        "days monday",
        "expires after",
        "caps:",
        "over_cap: skip",
        "reentry",
        "audience",
        "priority",
        "daily at",
        "every ",
        "once 2026",
        "on date birthday",
        "on holiday",
        "entry when",
        "m/receipt",
    ] {
        assert!(
            source.contains(needle),
            "no generated journey has `{needle}`"
        );
    }
}
