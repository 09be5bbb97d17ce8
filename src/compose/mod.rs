//! From a step to a message: the one path `preview`, `deliver` and `tasks`
//! all take. [`Composer`] finds a journey's message step, builds the contact
//! and event the templates see, adds the signed unsubscribe link and renders
//! the template's parts into a [`Rendered`] message; [`mime`] turns an email
//! into the MIME message that goes out.

pub mod mime;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value as Json};

use crate::analyzer::MessageUse;
use crate::ast::{Assignee, Channel};
use crate::journey::NodeKind;
use crate::model::{MessageKey, Timestamp};
use crate::project::Checked;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::templates::{MessageKind, TemplateSet};
use crate::unsubscribe;

pub use mime::Email;

/// A contact's fields, or an event's properties, as templates see them.
pub type Fields = Map<String, Json>;

/// A stored contact and its event as templates see them, or why the
/// contact's fields do not fit the schema.
pub type Stored = Result<(Fields, Fields), ComposeError>;

/// A rendered message, before it is put on a channel.
#[derive(Debug, Clone)]
pub enum Rendered {
    Email(Email),
    Sms {
        kind: MessageKind,
        body: String,
    },
    Task {
        assignee: String,
        text: String,
        due: Option<String>,
    },
    Webhook {
        endpoint: String,
        body: String,
    },
}

/// Why a step gives no message for a contact.
#[derive(Debug)]
pub enum ComposeError {
    UnknownJourney {
        name: String,
        hint: String,
    },
    UnknownStep {
        journey: String,
        step: String,
        hint: String,
    },
    /// A field the contact schema does not have.
    UnknownField {
        field: String,
        hint: String,
    },
    ShortSecret,
    /// Marketing email without the secret that signs its unsubscribe link.
    NoUnsubscribeLink {
        variable: String,
        /// `unsubscribe_url` is missing too.
        no_url: bool,
    },
    MissingTemplate(String),
    NotConfigured(Channel),
    NoAddress(&'static str),
    Render {
        /// `welcome/day0.email:22:5`
        location: String,
        part: String,
        template: String,
        source: minijinja::Error,
    },
    Build(mime::BuildError),
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComposeError::UnknownJourney { name, hint } => {
                write!(f, "no journey named `{name}`; {hint}")
            }
            ComposeError::UnknownStep {
                journey,
                step,
                hint,
            } => write!(f, "journey `{journey}` has no message step `{step}`; {hint}"),
            ComposeError::UnknownField { field, hint } => write!(
                f,
                "the vars give `{field}`, which is not a contact field; {hint}"
            ),
            ComposeError::ShortSecret => write!(
                f,
                "the unsubscribe secret is shorter than {} bytes; set a long random value",
                unsubscribe::MIN_SECRET_LENGTH
            ),
            ComposeError::NoUnsubscribeLink {
                variable,
                no_url: true,
            } => write!(
                f,
                "a marketing email carries a signed unsubscribe link: set `unsubscribe_url` under `channels.email` in journeyc.yaml, and the secret that signs it (at least {} random bytes) in the environment variable {variable}",
                unsubscribe::MIN_SECRET_LENGTH
            ),
            ComposeError::NoUnsubscribeLink { variable, .. } => write!(
                f,
                "a marketing email carries a signed unsubscribe link: set the environment variable {variable} to the secret that signs it (at least {} random bytes, e.g. `export {variable}=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')`)",
                unsubscribe::MIN_SECRET_LENGTH
            ),
            ComposeError::MissingTemplate(name) => write!(
                f,
                "the template `{name}` does not exist; `journeyc check` lists what is missing"
            ),
            ComposeError::NotConfigured(channel) => write!(
                f,
                "the `{channel}` channel is not configured under `channels:` in journeyc.yaml"
            ),
            ComposeError::NoAddress(field) => write!(f, "the contact has no `{field}`"),
            ComposeError::Render {
                location,
                part,
                template,
                source,
            } => write!(
                f,
                "{location}: cannot render the {part} of `{template}`: {}",
                source
                    .detail()
                    .map_or_else(|| source.kind().to_string(), ToString::to_string)
            ),
            ComposeError::Build(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ComposeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ComposeError::Build(error) => Some(error),
            _ => None,
        }
    }
}

/// The name of the variable that holds the unsubscribe secret.
fn secret_variable(settings: &Settings) -> String {
    settings
        .channels
        .email
        .as_ref()
        .and_then(|email| email.unsubscribe_secret_env.clone())
        .unwrap_or_else(|| unsubscribe::DEFAULT_SECRET_ENV.to_string())
}

/// Renders the messages of one project. It reads the unsubscribe secret
/// once, when it is made, and looks each step up once.
pub struct Composer<'c> {
    checked: &'c Checked,
    settings: &'c Settings,
    set: &'c TemplateSet,
    secret: Option<Vec<u8>>,
}

impl<'c> Composer<'c> {
    /// `None` when the project has errors in its settings or templates.
    pub fn new(checked: &'c Checked) -> Option<Composer<'c>> {
        let (Some(settings), Some(set)) = (&checked.settings, &checked.templates) else {
            return None;
        };
        // An empty variable is an unset one.
        let secret = std::env::var(secret_variable(settings))
            .ok()
            .filter(|secret| !secret.is_empty())
            .map(String::into_bytes);
        Some(Composer {
            checked,
            settings,
            set,
            secret,
        })
    }

    pub fn settings(&self) -> &'c Settings {
        self.settings
    }

    /// Whether marketing email can carry its unsubscribe link; the error
    /// says what to set.
    pub fn unsubscribe_ready(&self) -> Result<(), ComposeError> {
        let configured = self
            .settings
            .channels
            .email
            .as_ref()
            .is_some_and(|email| email.unsubscribe_url.is_some());
        match &self.secret {
            Some(secret) if secret.len() < unsubscribe::MIN_SECRET_LENGTH => {
                Err(ComposeError::ShortSecret)
            }
            Some(_) if configured => Ok(()),
            _ => Err(ComposeError::NoUnsubscribeLink {
                variable: secret_variable(self.settings),
                no_url: !configured,
            }),
        }
    }

    /// The message step `step` (its ID, or the template of exactly one of
    /// its message steps) of `journey`, with its step ID.
    pub fn find_step(
        &self,
        journey: &str,
        step: &str,
    ) -> Result<(&'c MessageUse, String), ComposeError> {
        find_step(self.checked, journey, step)
    }

    /// The contact as templates see it: every schema field present,
    /// `null` where `given` leaves it out; unknown keys are refused.
    pub fn contact(&self, mut given: Fields) -> Result<Fields, ComposeError> {
        let settings = self.settings;
        let known: Vec<&str> = settings.field_names().chain(["tags", "stage"]).collect();
        if let Some(unknown) = given.keys().find(|key| !known.contains(&key.as_str())) {
            let hint = crate::diagnostic::did_you_mean(unknown, known.iter().copied())
                .unwrap_or_else(|| "add it under `contact:` in journeyc.yaml".into());
            return Err(ComposeError::UnknownField {
                field: unknown.clone(),
                hint,
            });
        }
        for name in known {
            given.entry(name.to_string()).or_insert(Json::Null);
        }
        if given.get("id").is_none_or(Json::is_null) {
            given.insert("id".into(), "preview".into());
        }
        if given.get("tags").is_none_or(Json::is_null) {
            given.insert("tags".into(), json!([]));
        }
        Ok(given)
    }

    /// A contact from the store, as templates see it, and the event of the
    /// kind `event` names: the one with `event_id` if it is of that kind,
    /// else the latest of that kind at or before `before`. `None` when
    /// the store has no such contact.
    pub fn stored_contact<S: Store + ?Sized>(
        &self,
        store: &S,
        id: &str,
        event: Option<&str>,
        event_id: Option<&str>,
        before: Timestamp,
    ) -> Result<Option<Stored>, StoreError> {
        let Some(contact) = store.contact(id)? else {
            return Ok(None);
        };
        let properties = match event {
            Some(name) => {
                let events = store.events_of(id)?;
                events
                    .iter()
                    .find(|event| Some(event.id.as_str()) == event_id && event.name == *name)
                    .or_else(|| {
                        events
                            .iter()
                            .rev()
                            .find(|event| event.name == *name && event.at <= before)
                    })
                    .map(|event| event.properties.map().clone())
                    .unwrap_or_default()
            }
            None => Fields::new(),
        };
        // journeyc's own bookkeeping (`__stage_changed_at` ...) is not a field.
        let mut fields: Fields = contact
            .fields
            .into_iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .collect();
        fields.insert("id".into(), Json::String(contact.id));
        Ok(Some(
            self.contact(fields).map(|fields| (fields, properties)),
        ))
    }

    /// Renders the step of `message_use` for a contact, as it would go out
    /// at `now` with `key`.
    pub fn render(
        &self,
        message_use: &MessageUse,
        step_id: &str,
        contact: &Fields,
        event: &Fields,
        now: DateTime<Utc>,
        key: &MessageKey,
    ) -> Result<Rendered, ComposeError> {
        let (settings, set) = (self.settings, self.set);
        let message = &message_use.message;
        let contact_id = text_of(contact.get("id")).unwrap_or_default();
        let base_url = settings
            .channels
            .email
            .as_ref()
            .and_then(|email| email.unsubscribe_url.clone());
        let unsubscribe_url = match (&base_url, &self.secret) {
            (Some(base), Some(secret)) if secret.len() >= unsubscribe::MIN_SECRET_LENGTH => Some(
                unsubscribe::url(base, secret, &contact_id, message.channel.as_str()),
            ),
            (Some(_), Some(_)) => return Err(ComposeError::ShortSecret),
            _ => None,
        };
        let now_text = Timestamp::from(now).to_string();
        let context = crate::templates::context(
            message_use,
            step_id,
            contact,
            event,
            &now_text,
            unsubscribe_url.as_deref(),
        );
        let task_due = || message.due.as_ref().map(|due| due.node.to_string());

        if message.channel == Channel::Task && !message.task_template {
            let text = set
                .env
                .template_from_str(&crate::templates::keep_line_breaks(&message.template.node).0)
                .and_then(|template| crate::templates::render_bounded(&template, context))
                .map_err(|source| ComposeError::Render {
                    location: message_use.journey.clone(),
                    part: "task text".into(),
                    template: message.template.node.clone(),
                    source,
                })?;
            return Ok(Rendered::Task {
                assignee: assignee(message, contact, settings),
                text,
                due: task_due(),
            });
        }
        let template = set
            .get(message.channel, &message.template.node)
            .ok_or_else(|| ComposeError::MissingTemplate(message.template.node.clone()))?;
        if message.channel == Channel::Email {
            if settings.channels.email.is_none() {
                return Err(ComposeError::NotConfigured(Channel::Email));
            }
            // Said before rendering: a template that shows the link would
            // otherwise fail on an undefined `unsubscribe_url`.
            if template.kind == MessageKind::Marketing && unsubscribe_url.is_none() {
                self.unsubscribe_ready()?;
            }
        }
        let mut parts: BTreeMap<&str, String> = BTreeMap::new();
        for part in &template.parts {
            let rendered =
                set.render_part(part, &context)
                    .map_err(|source| ComposeError::Render {
                        location: template.locate(part, &source),
                        part: part.name.to_string(),
                        template: message.template.node.clone(),
                        source,
                    })?;
            parts.insert(part.name, rendered);
        }
        let body = || {
            parts
                .get("body")
                .map(|body| body.trim().to_string())
                .unwrap_or_default()
        };
        Ok(match message.channel {
            Channel::Email => {
                let email_settings = settings
                    .channels
                    .email
                    .as_ref()
                    .ok_or(ComposeError::NotConfigured(Channel::Email))?;
                let name_field = email_settings.name_field.clone().or_else(|| {
                    ["name", "full_name", "first_name"]
                        .into_iter()
                        .find(|field| settings.field(field).is_some())
                        .map(str::to_string)
                });
                Rendered::Email(Email {
                    kind: template.kind,
                    from: template
                        .from
                        .clone()
                        .unwrap_or_else(|| email_settings.from.clone()),
                    reply_to: template
                        .reply_to
                        .clone()
                        .or_else(|| email_settings.reply_to.clone()),
                    to_name: name_field.and_then(|field| text_of(contact.get(&field))),
                    to_address: text_of(contact.get("email"))
                        .ok_or(ComposeError::NoAddress("email"))?,
                    subject: parts.get("subject").cloned().unwrap_or_default(),
                    preheader: parts.get("preheader").cloned(),
                    text: parts
                        .get("text")
                        .map(|text| text.trim().to_string() + "\n")
                        .unwrap_or_default(),
                    html: parts.get("html").map(|html| html.trim().to_string() + "\n"),
                    unsubscribe_url,
                    key: key.clone(),
                    date: now,
                })
            }
            Channel::Sms => Rendered::Sms {
                kind: template.kind,
                body: body(),
            },
            Channel::Task => Rendered::Task {
                assignee: assignee(message, contact, settings),
                text: body(),
                due: task_due(),
            },
            Channel::Webhook => Rendered::Webhook {
                endpoint: message
                    .endpoint
                    .as_ref()
                    .map(|endpoint| endpoint.node.clone())
                    .unwrap_or_default(),
                body: body(),
            },
        })
    }

    /// The email that carries a task to its assignee: the task, then the
    /// contact, journey, step and time it is for (in the project's zone).
    pub fn task_email(&self, task: &TaskMail<'_>) -> Result<Email, String> {
        let Some(email_settings) = self.settings.channels.email.as_ref() else {
            return Err("tasks go by email, but `channels.email` is not set".to_string());
        };
        if !task.assignee.contains('@') {
            return Err(format!(
                "the task's assignee `{}` is not an email address",
                task.assignee
            ));
        }
        let contact_line = ["first_name", "name", "email", "phone"]
            .iter()
            .filter_map(|field| task.contact.get(*field).and_then(Json::as_str))
            .filter(|value| !value.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let due = task
            .due
            .map_or_else(String::new, |due| format!(" (due within {due})"));
        let first_line = task.text.lines().next().unwrap_or_default();
        let body = format!(
            "{}\n\nContact: {} ({contact_line})\nJourney: {}, step {}\nWhen: {}{due}\n",
            task.text,
            task.contact_id,
            task.journey,
            task.step,
            task.at.in_zone(self.settings.timezone.0),
        );
        Ok(Email {
            kind: MessageKind::Transactional,
            from: email_settings.from.clone(),
            reply_to: email_settings.reply_to.clone(),
            to_name: None,
            to_address: task.assignee.to_string(),
            subject: first_line.chars().take(80).collect(),
            preheader: None,
            text: body,
            html: None,
            unsubscribe_url: None,
            key: task.key.clone(),
            date: task.now,
        })
    }
}

/// The message steps of a project by (journey, step), looked up once
/// each: a delivery goes through many rows of few steps.
pub struct Steps<'c> {
    checked: &'c Checked,
    found: HashMap<(String, String), Option<(&'c MessageUse, String)>>,
}

impl<'c> Steps<'c> {
    pub fn new(checked: &'c Checked) -> Steps<'c> {
        Steps {
            checked,
            found: HashMap::new(),
        }
    }

    /// A stored row's step, by its ID (a repetition of a `repeat` is a
    /// step of its own, `monthly#2/email:...`), or by the positional ID a
    /// row written by an earlier journeyc carries.
    pub fn get(&mut self, journey: &str, step: &str) -> Option<(&'c MessageUse, String)> {
        let checked = self.checked;
        self.found
            .entry((journey.to_string(), step.to_string()))
            .or_insert_with(|| {
                find_step(checked, journey, step).ok().or_else(|| {
                    let compiled = checked.journey(journey)?;
                    let (_, node) = compiled.nodes().find(|(_, node)| node.legacy_id == step)?;
                    find_step(checked, journey, &node.id).ok()
                })
            })
            .clone()
    }
}

/// What a task's email is made of.
pub struct TaskMail<'t> {
    pub assignee: &'t str,
    pub text: &'t str,
    pub due: Option<&'t str>,
    pub contact_id: &'t str,
    pub contact: &'t Fields,
    pub journey: &'t str,
    pub step: &'t str,
    pub at: Timestamp,
    pub key: &'t MessageKey,
    pub now: DateTime<Utc>,
}

fn text_of(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(text) if !text.is_empty() => Some(text.clone()),
        Json::Null | Json::String(_) => None,
        other => Some(other.to_string()),
    }
}

fn assignee(message: &crate::ast::Message, contact: &Fields, settings: &Settings) -> String {
    let fallback = settings
        .channels
        .task
        .as_ref()
        .and_then(|task| task.fallback_assignee.clone());
    match &message.assignee {
        Some(Assignee::Fixed(fixed)) => fixed.node.clone(),
        Some(Assignee::Field(field)) => text_of(contact.get(&field.node))
            .or(fallback)
            .unwrap_or_else(|| format!("(no {})", field.node)),
        None => fallback.unwrap_or_default(),
    }
}

fn find_step<'c>(
    checked: &'c Checked,
    journey: &str,
    step: &str,
) -> Result<(&'c MessageUse, String), ComposeError> {
    let compiled = checked
        .journey(journey)
        .ok_or_else(|| ComposeError::UnknownJourney {
            name: journey.to_string(),
            hint: checked.journey_hint(journey),
        })?;
    let messages: Vec<(&str, &crate::ast::Message)> = compiled
        .nodes()
        .filter_map(|(_, node)| match &node.kind {
            NodeKind::Message(message) => Some((node.id.as_str(), message)),
            _ => None,
        })
        .collect();
    // The step's ID, or the template of exactly one of its message steps.
    let by_template: Vec<&(&str, &crate::ast::Message)> = messages
        .iter()
        .filter(|(_, message)| message.template.node == step)
        .collect();
    let found = messages
        .iter()
        .find(|(id, _)| *id == step)
        .or_else(|| (by_template.len() == 1).then(|| by_template[0]));
    let unknown = |hint: String| ComposeError::UnknownStep {
        journey: journey.to_string(),
        step: step.to_string(),
        hint,
    };
    let Some((id, message)) = found else {
        let hint = crate::diagnostic::did_you_mean(step, messages.iter().map(|(id, _)| *id))
            .unwrap_or_else(|| {
                format!(
                    "its message steps are: {}",
                    messages
                        .iter()
                        .map(|(id, _)| *id)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        return Err(unknown(hint));
    };
    let message_use = checked
        .analysis
        .messages
        .iter()
        .find(|candidate| {
            candidate.journey == journey && candidate.message.template.span == message.template.span
        })
        .ok_or_else(|| unknown("it is not a message step".to_string()))?;
    Ok((message_use, (*id).to_string()))
}
