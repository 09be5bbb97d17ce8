//! `journeyc deliver`: sends what the outbox holds that is due.
//!
//! Each row is claimed before it is sent (status `sending`, by this
//! process, at `now`, in one write transaction, so two `deliver`s never
//! take the same row) and settled after (`sent` with the provider's id,
//! `pending` again with a later `attempt_at`, or `failed`). A crash between
//! the two leaves the row `sending`; once its claim is older than
//! `delivery.lease` the next `deliver` claims and sends it again: only
//! messages in flight at a crash can go out twice, and the Message-ID (or
//! the `Idempotency-Key` header) carries the row's key so that the
//! receiving side can tell.

pub mod channels;

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use crate::analyzer::MessageUse;
use crate::compose::{Composer, Fields, Rendered, Steps, TaskMail};
use crate::error::Error;
use crate::journey::CompiledJourney;
use crate::model::{Channel, Timestamp};
use crate::policy;
use crate::project::Checked;
use crate::runner::time;
use crate::settings::{OverCap, Settings};
use crate::store::{
    normalize_address, Backend, Claimed, Outbox, Scheduled, Settle, Store, Suppression,
};
use crate::templates::MessageKind;

use channels::{Attempt, EmailSender, Endpoint, Pace, Sms, SmsSender};

fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// Counts for the closing summary, per channel.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub expired: u64,
    /// Not sent yet: quiet hours, a send window or a cap hold them.
    pub held: u64,
    pub skipped: u64,
}

/// What one `deliver` did: counts per channel, every failure, and the
/// temporary ones that wait for a retry.
#[derive(Debug, Default)]
pub struct Report {
    pub counts: BTreeMap<Channel, Counts>,
    pub failures: Vec<String>,
    pub retries: Vec<String>,
    pub seconds: f64,
}

/// A row ready to render and send.
struct Job<'c> {
    claimed: Claimed,
    message_use: &'c MessageUse,
    step_id: String,
    contact: Fields,
    event: Fields,
}

/// What the project set up for sending.
struct Senders {
    email: Option<(EmailSender, Pace, usize)>,
    sms: Option<(SmsSender, Pace, usize)>,
    /// Tasks go by email, to a webhook, or both.
    task_email: bool,
    task_webhook: Option<String>,
    endpoints: BTreeMap<String, Endpoint>,
}

impl Senders {
    /// Builds the senders for the channels that have due rows; a channel
    /// with due rows and no way to send them is an error.
    fn new(composer: &Composer<'_>, wanted: &[Channel]) -> Result<Senders, String> {
        let settings = composer.settings();
        let mut senders = Senders {
            email: None,
            sms: None,
            task_email: false,
            task_webhook: None,
            endpoints: BTreeMap::new(),
        };
        let email_transport = settings
            .channels
            .email
            .as_ref()
            .and_then(|email| email.transport.as_ref());
        let task = settings.channels.task.as_ref();
        let needs_email = wanted.contains(&Channel::Email)
            || (wanted.contains(&Channel::Task) && task.is_some_and(|t| t.email));
        if needs_email {
            let email = settings.channels.email.as_ref();
            if email.is_some_and(|email| email.unsubscribe_url.is_some()) {
                composer
                    .unsubscribe_ready()
                    .map_err(|error| format!("email is due, but {error}"))?;
            }
            let transport = email_transport.ok_or(
                "email is due but `channels.email.transport` is not set in journeyc.yaml (an smtp:// URL, or file:FOLDER)",
            )?;
            senders.email = Some((
                EmailSender::new(transport, &settings.root)?,
                Pace::new(&transport.sending),
                transport.sending.connections.max(1),
            ));
        }
        if wanted.contains(&Channel::Sms) {
            let transport = settings
                .channels
                .sms
                .as_ref()
                .and_then(|sms| sms.transport.as_ref())
                .ok_or("SMS is due but `channels.sms.transport` is not set in journeyc.yaml (kind twilio, webhook or file)")?;
            senders.sms = Some((
                SmsSender::new(transport, &settings.root)?,
                Pace::new(&transport.sending),
                transport.sending.connections.max(1),
            ));
        }
        if wanted.contains(&Channel::Task) {
            senders.task_email = task.is_some_and(|task| task.email);
            senders.task_webhook = task.and_then(|task| task.webhook.clone());
        }
        let mut endpoint_names: Vec<String> = Vec::new();
        if wanted.contains(&Channel::Webhook) {
            endpoint_names.extend(settings.webhooks.keys().cloned());
        }
        endpoint_names.extend(senders.task_webhook.clone());
        for name in endpoint_names {
            let endpoint_settings = settings.webhooks.get(&name).ok_or_else(|| {
                format!("channels.task.webhook: there is no `{name}` under `webhooks:`")
            })?;
            senders
                .endpoints
                .insert(name.clone(), Endpoint::new(&name, endpoint_settings)?);
        }
        Ok(senders)
    }

    /// Channels that can be claimed: tasks only when they go somewhere
    /// (otherwise `journeyc tasks` is where people read them).
    fn channels(&self, wanted: &[Channel]) -> Vec<Channel> {
        Channel::ALL
            .into_iter()
            .filter(|channel| wanted.contains(channel))
            .filter(|channel| match *channel {
                Channel::Email => self.email.is_some(),
                Channel::Sms => self.sms.is_some(),
                Channel::Task => self.task_email || self.task_webhook.is_some(),
                Channel::Webhook => true,
            })
            .collect()
    }
}

/// The retry policy: exponential backoff from `delivery.backoff`, doubled
/// per attempt up to `delivery.max_backoff`, plus up to 25 % jitter taken
/// from a hash of the key and attempt (so the same inputs retry at the
/// same time, and many failures do not retry in one burst).
fn retry_at(
    settings: &Settings,
    now: DateTime<Utc>,
    key: &str,
    attempts: u32,
    wish: Option<Duration>,
) -> DateTime<Utc> {
    let delivery = &settings.delivery;
    let exponent = attempts.saturating_sub(1).min(20);
    let base = (delivery.backoff.0 * f64::from(1_u32 << exponent)).min(delivery.max_backoff.0);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes().chain(attempts.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    #[allow(clippy::cast_precision_loss)]
    let jitter = (hash % 10_000) as f64 / 10_000.0 * 0.25;
    let wait = (base * (1.0 + jitter)).max(wish.map_or(0.0, |wish| wish.as_secs_f64()));
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
    let seconds = wait.ceil() as i64;
    now + chrono::Duration::seconds(seconds)
}

/// Turns an attempt into what the outbox records.
fn settle(
    settings: &Settings,
    now: DateTime<Utc>,
    claimed: &Claimed,
    address: Option<&str>,
    progress: Option<String>,
    attempt: Attempt,
) -> Settle {
    match attempt {
        Attempt::Accepted { provider_id } => Settle::Sent { provider_id },
        Attempt::Temporary { error, retry_after } => {
            if claimed.attempts >= settings.delivery.attempts {
                Settle::Failed {
                    error: format!("gave up after {} attempts: {error}", claimed.attempts),
                    suppression: None,
                }
            } else {
                Settle::Retry {
                    at: Timestamp::from(retry_at(
                        settings,
                        now,
                        &claimed.row.key.to_string(),
                        claimed.attempts,
                        retry_after,
                    )),
                    error,
                    progress,
                }
            }
        }
        Attempt::Permanent { error, bounce } => {
            let suppression = bounce.zip(address).map(|(reason, address)| Suppression {
                address: normalize_address(claimed.row.channel, address),
                channel: claimed.row.channel,
                reason: format!("{reason}: {}", error.chars().take(200).collect::<String>()),
                at: Timestamp::from(now),
            });
            Settle::Failed { error, suppression }
        }
        // Not an attempt: the message waits for the credentials.
        Attempt::Refused { error } => Settle::Held {
            until: Timestamp::from(now),
            note: format!("not sent: {error}"),
        },
    }
}

/// Rows sent by this `deliver` so far, per contact and channel: the caps
/// count them as they go out, before they are settled.
type Dispatched = HashMap<(String, Channel), Vec<Scheduled>>;

/// Looks a claimed row up in the project and the store; settles at once
/// what will not be sent now: expired, late, suppressed, or held back by
/// quiet hours, a send window or a cap until a later time.
fn prepare<'c, S: Store + Outbox + ?Sized>(
    steps: &mut Steps<'c>,
    composer: &Composer<'c>,
    checked: &'c Checked,
    store: &S,
    claimed: Claimed,
    now: DateTime<Utc>,
    dispatched: &mut Dispatched,
) -> Result<Result<Job<'c>, Settle>, Error> {
    let settings = composer.settings();
    let row = &claimed.row;
    if row.expires_at.is_some_and(|expires| expires.utc() < now) {
        return Ok(Err(Settle::Expired {
            note: format!(
                "its `expires after` ended at {}",
                row.expires_at.map(|at| at.to_string()).unwrap_or_default()
            ),
        }));
    }
    let job = match job(steps, composer, store, claimed)? {
        Ok(job) => job,
        Err(error) => {
            return Ok(Err(Settle::Failed {
                error,
                suppression: None,
            }))
        }
    };
    let row = &job.claimed.row;
    let timezone = job
        .contact
        .get("timezone")
        .and_then(Json::as_str)
        .and_then(|zone| zone.parse().ok())
        .unwrap_or(settings.timezone.0);
    let address = policy::address_field(row.channel).and_then(|field| {
        job.contact
            .get(field)
            .and_then(Json::as_str)
            .filter(|address| !address.trim().is_empty())
    });
    if let (Some(field), None) = (policy::address_field(row.channel), address) {
        return Ok(Err(Settle::Skipped {
            note: format!("the contact has no `{field}` any more"),
        }));
    }
    if row.kind == MessageKind::Marketing {
        if let Some(address) = address {
            if store.is_suppressed(address, row.channel, Timestamp::from(now))? {
                return Ok(Err(Settle::Suppressed {
                    error: format!("{address} is on the suppression list"),
                }));
            }
        }
    }
    if let Some(journey) = checked.journey(&row.journey) {
        if let Some(outcome) = hold(
            settings,
            journey,
            store,
            &job.claimed,
            timezone,
            now,
            dispatched,
        )? {
            return Ok(Err(outcome));
        }
    }
    dispatched
        .entry((row.contact_id.clone(), row.channel))
        .or_default()
        .push(Scheduled {
            journey: row.journey.clone(),
            at: Timestamp::from(now),
        });
    Ok(Ok(job))
}

/// The row's step, contact and event, ready to render; or why there is
/// nothing to render.
fn job<'c, S: Store + Outbox + ?Sized>(
    steps: &mut Steps<'c>,
    composer: &Composer<'c>,
    store: &S,
    claimed: Claimed,
) -> Result<Result<Job<'c>, String>, Error> {
    let row = &claimed.row;
    let Some((message_use, step_id)) = steps.get(&row.journey, row.step().as_str()) else {
        return Ok(Err(format!(
            "journey `{}` has no message step `{}` any more",
            row.journey,
            row.step()
        )));
    };
    // The event that enrolled the contact (or a wait received), if it is
    // the kind this step reads; else the latest of that kind before the
    // send.
    let found = composer.stored_contact(
        store,
        &row.contact_id,
        message_use.event.as_deref(),
        claimed.event_id.as_deref(),
        row.send_at,
    )?;
    let (contact, event) = match found {
        None => {
            return Ok(Err(format!(
                "contact `{}` is no longer in the store",
                row.contact_id
            )))
        }
        Some(Err(error)) => return Ok(Err(error.to_string())),
        Some(Ok(found)) => found,
    };
    Ok(Ok(Job {
        claimed,
        message_use,
        step_id,
        contact,
        event,
    }))
}

/// When a message due at `at` becomes too late: `lateness` on the
/// contact's calendar or as elapsed time, whichever is later (a day is a
/// day even across a daylight-saving change, and never less than 24
/// hours).
fn late_after(
    timezone: chrono_tz::Tz,
    at: DateTime<Utc>,
    lateness: crate::ast::Duration,
) -> DateTime<Utc> {
    let elapsed = i64::try_from(lateness.minutes).unwrap_or(i64::MAX / 120);
    time::add(timezone, at, lateness).max(at + chrono::Duration::minutes(elapsed))
}

/// What keeps a due row from going out now: lateness (it is expired),
/// quiet hours, a send window or days, or a cap over the messages that
/// actually went out (it is held until it may go).
fn hold<S: Store + Outbox + ?Sized>(
    settings: &Settings,
    journey: &CompiledJourney,
    store: &S,
    claimed: &Claimed,
    timezone: chrono_tz::Tz,
    now: DateTime<Utc>,
    dispatched: &Dispatched,
) -> Result<Option<Settle>, Error> {
    let row = &claimed.row;
    let rules = policy::policy(settings, journey, row.channel, row.kind);
    if let Some(lateness) = rules.lateness {
        let send_at = row.send_at.utc();
        // The run that planned it came late (a missed night, a back-fill).
        let first_chance = send_at.max(row.planned_at.utc());
        if first_chance > late_after(timezone, send_at, lateness) {
            return Ok(Some(Settle::Expired {
                note: format!(
                    "planned at {}, more than the lateness of {lateness} after its time {}",
                    row.planned_at, row.send_at
                ),
            }));
        }
        // `deliver` did not run for longer than the lateness once the row
        // could go (its time, retries and holds included).
        let ready = claimed.attempt_at.utc().max(row.planned_at.utc());
        let release = rules.rules.as_ref().map_or(ready, |send_rules| {
            time::allowed_send_time(timezone, ready, send_rules)
        });
        if now > late_after(timezone, release, lateness) {
            return Ok(Some(Settle::Expired {
                note: format!(
                    "not sent within the lateness of {lateness} after it could go at {}",
                    Timestamp::from(release)
                ),
            }));
        }
    }
    if rules.rules.is_none() && rules.caps.is_empty() {
        return Ok(None);
    }
    let since = rules.cap_horizon(Timestamp::from(now));
    let mut sent = if rules.caps.is_empty() {
        Vec::new()
    } else {
        store.sent_since(&row.contact_id, row.channel, since)?
    };
    if let Some(going) = dispatched.get(&(row.contact_id.clone(), row.channel)) {
        sent.extend(going.iter().cloned());
    }
    let placement = policy::place(timezone, now, &rules, &sent);
    if placement.skipped.is_some() && rules.over_cap == OverCap::Skip {
        return Ok(Some(Settle::Skipped {
            note: placement.notes.join("; "),
        }));
    }
    if placement.at > now {
        return Ok(Some(Settle::Held {
            until: Timestamp::from(placement.at),
            note: format!(
                "held until {}: {}",
                Timestamp::from(placement.at),
                placement.notes.join("; ")
            ),
        }));
    }
    Ok(None)
}

/// How one job ended: the attempt, the address it went to, and what of
/// it was handed over even though the attempt as a whole failed.
struct Sent {
    attempt: Attempt,
    address: Option<String>,
    progress: Option<String>,
}

impl From<(Attempt, Option<String>)> for Sent {
    fn from((attempt, address): (Attempt, Option<String>)) -> Sent {
        Sent {
            attempt,
            address,
            progress: None,
        }
    }
}

impl Job<'_> {
    /// The message for this contact, as `journeyc preview` renders it; an
    /// error keeps its first line (the outbox row keeps it).
    fn render(&self, composer: &Composer<'_>, now: DateTime<Utc>) -> Result<Rendered, String> {
        composer
            .render(
                self.message_use,
                &self.step_id,
                &self.contact,
                &self.event,
                now,
                &self.claimed.row.key.message_key(),
            )
            .map_err(|error| {
                error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
    }
}

/// Renders and sends one job.
fn send(job: &Job<'_>, composer: &Composer<'_>, senders: &Senders, now: DateTime<Utc>) -> Sent {
    let settings = composer.settings();
    let rendered = match job.render(composer, now) {
        Ok(rendered) => rendered,
        Err(error) => return (Attempt::permanent(error), None).into(),
    };
    match rendered {
        Rendered::Task {
            assignee,
            text,
            due,
        } => send_task(
            job,
            composer,
            senders,
            &assignee,
            &text,
            due.as_deref(),
            now,
        ),
        rendered => send_message(job, settings, senders, rendered).into(),
    }
}

/// Sends a rendered email, SMS or webhook step.
fn send_message(
    job: &Job<'_>,
    settings: &Settings,
    senders: &Senders,
    rendered: Rendered,
) -> (Attempt, Option<String>) {
    let key = job.claimed.row.key.message_key();
    let key = &key;
    match rendered {
        Rendered::Email(email) => {
            let address = email.to_address.clone();
            (send_email(senders, &email), Some(address))
        }
        Rendered::Sms { body, .. } => {
            let Some((sender, pace, _)) = &senders.sms else {
                return (Attempt::permanent("SMS is not set up"), None);
            };
            let Some(to) = job
                .contact
                .get("phone")
                .and_then(Json::as_str)
                .filter(|to| !to.is_empty())
            else {
                return (Attempt::permanent("the contact has no `phone`"), None);
            };
            let from = settings
                .channels
                .sms
                .as_ref()
                .and_then(|sms| sms.from.clone())
                .unwrap_or_default();
            pace.wait();
            let attempt = sender.send(&Sms {
                key,
                to,
                from: &from,
                body: &body,
                contact: &job.contact,
            });
            (attempt, Some(to.to_string()))
        }
        Rendered::Task { .. } => (Attempt::permanent("a task on another channel"), None),
        Rendered::Webhook { endpoint, body } => {
            let Some(target) = senders.endpoints.get(&endpoint) else {
                return (
                    Attempt::permanent(format!("no webhook `{endpoint}` under `webhooks:`")),
                    None,
                );
            };
            target.pace.wait();
            (
                channels::post_json(&target.agent, &target.url, &target.headers, key, &body),
                None,
            )
        }
    }
}

fn send_email(senders: &Senders, email: &crate::compose::Email) -> Attempt {
    let Some((sender, pace, _)) = &senders.email else {
        return Attempt::Permanent {
            error: "email is not set up".into(),
            bounce: None,
        };
    };
    let message = match crate::compose::mime::build(email) {
        Ok(message) => message,
        Err(error) => {
            return Attempt::Permanent {
                error: error.to_string(),
                bounce: None,
            }
        }
    };
    pace.wait();
    sender.send(&message, &email.key)
}

/// A task goes to its assignee by email, and/or to the team's webhook.
/// When the mail went out but the webhook failed, the retry only posts.
fn send_task(
    job: &Job<'_>,
    composer: &Composer<'_>,
    senders: &Senders,
    assignee: &str,
    task_text: &str,
    due: Option<&str>,
    now: DateTime<Utc>,
) -> Sent {
    let mailed = job
        .claimed
        .progress
        .as_deref()
        .is_some_and(|progress| progress.starts_with("mailed:"));
    let mut progress = job.claimed.progress.clone().filter(|_| mailed);
    if senders.task_email && !mailed {
        let row = &job.claimed.row;
        let step = row.step();
        let key = row.key.message_key();
        let attempt = match composer.task_email(&TaskMail {
            assignee,
            text: task_text,
            due,
            contact_id: &row.contact_id,
            contact: &job.contact,
            journey: &row.journey,
            step: step.as_str(),
            at: row.send_at,
            key: &key,
            now,
        }) {
            Ok(email) => send_email(senders, &email),
            Err(error) => Attempt::permanent(error),
        };
        let Attempt::Accepted { provider_id } = &attempt else {
            return (attempt, None).into();
        };
        if senders.task_webhook.is_none() {
            return (attempt, None).into();
        }
        progress = Some(format!(
            "mailed:{}",
            provider_id.clone().unwrap_or_default()
        ));
    }
    Sent {
        attempt: post_task(job, senders, assignee, task_text, due),
        address: None,
        progress,
    }
}

fn post_task(
    job: &Job<'_>,
    senders: &Senders,
    assignee: &str,
    task_text: &str,
    due: Option<&str>,
) -> Attempt {
    let row = &job.claimed.row;
    let Some(name) = &senders.task_webhook else {
        return Attempt::permanent("tasks are not set up to go anywhere");
    };
    let Some(endpoint) = senders.endpoints.get(name) else {
        return Attempt::permanent(format!("no webhook `{name}` under `webhooks:`"));
    };
    let values = json!({
        "key": row.key.to_string(), "text": task_text, "assignee": assignee, "due": due,
        "journey": row.journey, "step": row.step().as_str(), "at": row.send_at,
        "contact": job.contact,
    });
    let body = match &endpoint.body {
        Some(template) => match channels::render_json(
            template,
            minijinja::Value::from(minijinja::value::Serde(&values)),
        ) {
            Ok(body) => body,
            Err(error) => return Attempt::permanent(error),
        },
        None => values.to_string(),
    };
    endpoint.pace.wait();
    channels::post_json(
        &endpoint.agent,
        &endpoint.url,
        &endpoint.headers,
        &row.key.message_key(),
        &body,
    )
}

/// Sends what the outbox of `store` holds that is due at `now` (on the
/// `only` channels, or all): the whole of `journeyc deliver`, on any store.
pub fn deliver_at(
    checked: &Checked,
    store: &mut dyn Backend,
    now: DateTime<Utc>,
    only: &[Channel],
) -> Result<Report, Error> {
    let composer = Composer::new(checked)
        .ok_or_else(|| config("the project has errors; `journeyc check` lists them"))?;
    let settings = composer.settings();
    #[allow(clippy::cast_possible_truncation)]
    let lease = chrono::Duration::milliseconds((settings.delivery.lease.0 * 1000.0) as i64);
    let stale_before = Timestamp::from(now - lease);
    let due = store.due_by_channel(Timestamp::from(now), stale_before)?;
    let wanted: Vec<Channel> = Channel::ALL
        .into_iter()
        .filter(|channel| only.is_empty() || only.contains(channel))
        .filter(|channel| due.iter().any(|(due, count)| due == channel && *count > 0))
        .collect();
    let senders = Senders::new(&composer, &wanted).map_err(Error::Config)?;
    let channels = senders.channels(&wanted);
    let claimer = format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let threads: BTreeMap<Channel, usize> = channels
        .iter()
        .map(|channel| {
            let count = match *channel {
                Channel::Email => senders.email.as_ref().map_or(1, |(_, _, n)| *n),
                Channel::Sms => senders.sms.as_ref().map_or(1, |(_, _, n)| *n),
                _ => 2,
            };
            (*channel, count)
        })
        .collect();
    let capacity = (threads.values().sum::<usize>() * 8).clamp(16, 2000);

    let mut report = Report::default();
    let mut steps = Steps::new(checked);
    let mut dispatched = Dispatched::new();
    let started = Instant::now();

    std::thread::scope(|scope| -> Result<(), Error> {
        let (results_tx, results_rx) = mpsc::channel::<(Claimed, Sent)>();
        let mut queues: BTreeMap<Channel, mpsc::Sender<Job<'_>>> = BTreeMap::new();
        for (channel, count) in &threads {
            let (jobs_tx, jobs_rx) = mpsc::channel::<Job<'_>>();
            let jobs_rx = Arc::new(Mutex::new(jobs_rx));
            for _ in 0..*count {
                let jobs_rx = Arc::clone(&jobs_rx);
                let results_tx = results_tx.clone();
                let (senders, composer) = (&senders, &composer);
                scope.spawn(move || loop {
                    let job = {
                        let receiver = jobs_rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        receiver.recv()
                    };
                    let Ok(job) = job else { break };
                    let sent = send(&job, composer, senders, now);
                    if results_tx.send((job.claimed, sent)).is_err() {
                        break;
                    }
                });
            }
            queues.insert(*channel, jobs_tx);
        }
        drop(results_tx);

        let mut in_flight = 0usize;
        let mut exhausted = channels.is_empty();
        let mut refused: Option<String> = None;
        let mut outcomes: Vec<(i64, Settle, Channel)> = Vec::new();
        let mut last_settle = Instant::now();
        loop {
            if !exhausted && in_flight < capacity / 2 {
                let limit = capacity - in_flight;
                let claimed = store.claim(
                    &claimer,
                    Timestamp::from(now),
                    stale_before,
                    &channels,
                    limit,
                )?;
                if claimed.len() < limit {
                    exhausted = true;
                }
                for claimed in claimed {
                    let channel = claimed.row.channel;
                    let id = claimed.id;
                    match prepare(
                        &mut steps,
                        &composer,
                        checked,
                        &*store,
                        claimed,
                        now,
                        &mut dispatched,
                    )? {
                        Ok(job) => {
                            let queue = queues
                                .get(&channel)
                                .ok_or_else(|| Error::Bug("no sender for a claimed channel"))?;
                            queue
                                .send(job)
                                .map_err(|_| Error::Bug("the sending threads stopped"))?;
                            in_flight += 1;
                        }
                        Err(outcome) => outcomes.push((id, outcome, channel)),
                    }
                }
            }
            if in_flight == 0 && exhausted {
                break;
            }
            if in_flight > 0 {
                if let Ok(result) = results_rx.recv_timeout(Duration::from_millis(50)) {
                    let mut next = Some(result);
                    while let Some((claimed, sent)) =
                        next.take().or_else(|| results_rx.try_recv().ok())
                    {
                        in_flight -= 1;
                        crate::fault::point("deliver.sent");
                        if let Attempt::Refused { error } = &sent.attempt {
                            exhausted = true;
                            refused
                                .get_or_insert_with(|| format!("{}: {error}", claimed.row.channel));
                        }
                        let outcome = settle(
                            settings,
                            now,
                            &claimed,
                            sent.address.as_deref(),
                            sent.progress,
                            sent.attempt,
                        );
                        outcomes.push((claimed.id, outcome, claimed.row.channel));
                    }
                }
            }
            if outcomes.len() >= 200
                || (!outcomes.is_empty() && last_settle.elapsed() > Duration::from_millis(200))
            {
                record(store, &claimer, now, &mut outcomes, &mut report)?;
                crate::fault::point("deliver.settled");
                last_settle = Instant::now();
            }
        }
        drop(queues);
        record(store, &claimer, now, &mut outcomes, &mut report)?;
        match refused {
            Some(error) => Err(Error::Transport(format!(
                "delivery stopped: the provider refused journeyc's credentials ({error}); nothing was marked failed, the messages stay queued for the next `journeyc deliver`"
            ))),
            None => Ok(()),
        }
    })?;

    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Settles the outcomes gathered so far and counts them.
fn record(
    store: &mut dyn Backend,
    claimer: &str,
    now: DateTime<Utc>,
    outcomes: &mut Vec<(i64, Settle, Channel)>,
    report: &mut Report,
) -> Result<(), Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let batch: Vec<(i64, Settle)> = outcomes
        .iter()
        .map(|(id, outcome, _)| (*id, outcome.clone()))
        .collect();
    store.settle(claimer, Timestamp::from(now), &batch)?;
    for (id, outcome, channel) in outcomes.drain(..) {
        let counts = report.counts.entry(channel).or_default();
        match outcome {
            Settle::Sent { .. } => counts.sent += 1,
            Settle::Retry { error, at, .. } => {
                counts.retried += 1;
                report
                    .retries
                    .push(format!("{channel} #{id} from {at}: {error}"));
            }
            Settle::Failed { error, .. } => {
                counts.failed += 1;
                report.failures.push(format!("{channel} #{id}: {error}"));
            }
            Settle::Suppressed { .. } => counts.suppressed += 1,
            Settle::Expired { .. } => counts.expired += 1,
            Settle::Held { .. } => counts.held += 1,
            Settle::Skipped { .. } => counts.skipped += 1,
        }
    }
    Ok(())
}

/// An operator task as `journeyc tasks` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskLine {
    pub at: Timestamp,
    pub assignee: String,
    pub contact: String,
    pub journey: String,
    pub step: String,
    pub text: String,
    pub due: Option<String>,
    pub status: crate::model::OutboxStatus,
    pub sent_at: Option<Timestamp>,
    pub error: Option<String>,
}

/// The operator tasks planned from `from` to `to`, rendered as they were
/// (or will be) sent.
pub fn tasks_between(
    checked: &Checked,
    store: &dyn Backend,
    from: Timestamp,
    to: Timestamp,
    now: DateTime<Utc>,
) -> Result<Vec<TaskLine>, Error> {
    let composer = Composer::new(checked)
        .ok_or_else(|| config("the project has errors; `journeyc check` lists them"))?;
    let mut steps = Steps::new(checked);
    let mut listed = Vec::new();
    for (row, delivered) in store.tasks(from, to)? {
        let status = row.status;
        let claimed = Claimed {
            id: 0,
            attempt_at: row.send_at,
            row,
            attempts: delivered.attempts,
            event_id: None,
            progress: None,
        };
        let (assignee, text, due) = match job(&mut steps, &composer, store, claimed.clone())? {
            Ok(job) => match job.render(&composer, now) {
                Ok(Rendered::Task {
                    assignee,
                    text,
                    due,
                }) => (assignee, text, due),
                Ok(_) => continue,
                Err(error) => (String::new(), format!("(cannot render: {error})"), None),
            },
            Err(_) => (
                String::new(),
                "(its step or contact is gone)".to_string(),
                None,
            ),
        };
        let row = claimed.row;
        listed.push(TaskLine {
            at: row.send_at,
            assignee,
            step: row.step().as_str().to_string(),
            contact: row.contact_id,
            journey: row.journey,
            text,
            due,
            status,
            sent_at: delivered.sent_at,
            error: delivered.error,
        });
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut sources = crate::span::SourceMap::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journeyc.yaml");
        std::fs::write(
            &path,
            "delivery: { attempts: 4, backoff: 1m, max_backoff: 5m }\n",
        )
        .unwrap();
        Settings::load(&path, &mut sources).unwrap().unwrap()
    }

    #[test]
    fn retries_back_off_exponentially_with_bounded_jitter() {
        let settings = settings();
        let now = Timestamp::parse("2026-03-01T00:00:00Z").unwrap().utc();
        let waits: Vec<f64> = (1..=5)
            .map(|attempt| {
                let at = retry_at(&settings, now, "7/email@1", attempt, None);
                (at - now).as_seconds_f64()
            })
            .collect();
        // 1m, 2m, 4m, then capped at 5m; each plus 0-25 % jitter.
        for (wait, base) in waits.iter().zip([60.0, 120.0, 240.0, 300.0, 300.0]) {
            assert!(*wait >= base && *wait < base * 1.25, "{waits:?}");
        }
        // The same key and attempt always wait the same; another key not.
        assert_eq!(
            retry_at(&settings, now, "7/email@1", 2, None),
            retry_at(&settings, now, "7/email@1", 2, None)
        );
        assert_ne!(
            retry_at(&settings, now, "7/email@1", 2, None),
            retry_at(&settings, now, "8/email@1", 2, None)
        );
        // A provider's Retry-After longer than the backoff wins.
        let asked = retry_at(
            &settings,
            now,
            "7/email@1",
            1,
            Some(Duration::from_secs(900)),
        );
        assert_eq!((asked - now).num_seconds(), 900);
    }

    #[test]
    fn the_last_temporary_failure_fails_and_a_bounce_suppresses() {
        let settings = settings();
        let now = Timestamp::parse("2026-03-01T00:00:00Z").unwrap().utc();
        let send_at = Timestamp::from(now);
        let claimed = |attempts: u32| Claimed {
            id: 1,
            row: crate::store::OutboxRow {
                key: crate::model::OutboxKey::new(
                    7,
                    crate::model::StepId::new("email:launch/hello"),
                ),
                contact_id: "c-1".into(),
                journey: "launch".into(),
                channel: Channel::Email,
                template: "launch/hello".into(),
                kind: MessageKind::Marketing,
                send_at,
                expires_at: None,
                status: crate::model::OutboxStatus::Sending,
                planned_at: send_at,
                note: None,
            },
            attempts,
            attempt_at: send_at,
            event_id: None,
            progress: None,
        };
        let temporary = || Attempt::Temporary {
            error: "451 try later".into(),
            retry_after: None,
        };
        assert!(matches!(
            settle(&settings, now, &claimed(3), None, None, temporary()),
            Settle::Retry { .. }
        ));
        assert_eq!(
            settle(&settings, now, &claimed(4), None, None, temporary()),
            Settle::Failed {
                error: "gave up after 4 attempts: 451 try later".into(),
                suppression: None
            }
        );
        let bounced = settle(
            &settings,
            now,
            &claimed(1),
            Some(" Li@Example.com"),
            None,
            Attempt::Permanent {
                error: "550 no such user".into(),
                bounce: Some("bounced"),
            },
        );
        let Settle::Failed {
            suppression: Some(suppression),
            ..
        } = bounced
        else {
            panic!("{bounced:?}");
        };
        assert_eq!(
            (
                suppression.address.as_str(),
                suppression.channel,
                suppression.reason.as_str()
            ),
            (
                "li@example.com",
                Channel::Email,
                "bounced: 550 no such user"
            )
        );
    }

    #[test]
    fn the_pace_spaces_sends_at_the_rate() {
        let pace = Pace::new(&crate::settings::Sending {
            connections: 1,
            rate: Some(200.0),
            timeout: crate::settings::Seconds(1.0),
        });
        let started = Instant::now();
        for _ in 0..11 {
            pace.wait();
        }
        // Ten intervals of 5 ms at least (sleeping never ends early).
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }
}
