//! `journeyc preview`: renders one message step for one contact exactly as
//! it would be sent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::analyzer::MessageUse;
use crate::ast::{Assignee, Channel};
use crate::commands::{CommandError, Status};
use crate::graph::NodeKind;
use crate::message::{self, Email};
use crate::project::{self, Checked, ProjectError};
use crate::render;
use crate::settings::Settings;
use crate::templates::{sms, MessageKind, TemplateSet};
use crate::unsubscribe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreviewFormat {
    #[default]
    Text,
    Eml,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct PreviewOptions {
    pub journey: String,
    pub step: String,
    pub contact: Option<String>,
    pub vars: Option<PathBuf>,
    pub format: PreviewFormat,
    pub project: Option<PathBuf>,
    /// RFC 3339; default: the clock.
    pub now: Option<String>,
}

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

fn usage(message: impl Into<String>) -> CommandError {
    CommandError::Usage(message.into())
}

/// Reads `--vars`: JSON or YAML. With a `contact:` key it holds `contact`
/// and `event`; otherwise the whole file is the contact.
type Fields = Map<String, Json>;

fn read_vars(path: &Path) -> Result<(Fields, Fields), CommandError> {
    let text = crate::files::read_text(path).map_err(|problem| match problem {
        crate::files::FileProblem::Io { path, error } => {
            CommandError::from(ProjectError::Io { path, error })
        }
        problem => usage(problem.to_string()),
    })?;
    if let Some(at) = crate::files::yaml_too_deep(&text) {
        let (line, column) = crate::files::line_column(&text, at);
        return Err(usage(format!(
            "{}:{line}:{column}: nests deeper than {} levels",
            path.display(),
            crate::files::MAX_YAML_DEPTH
        )));
    }
    let value: Json = serde_yaml::from_str(&text)
        .map_err(|error| usage(format!("`{}` is not JSON or YAML: {error}", path.display())))?;
    let Json::Object(mut object) = value else {
        return Err(usage(format!(
            "`{}` must hold an object of contact fields",
            path.display()
        )));
    };
    if let Some(Json::Object(contact)) = object.remove("contact") {
        let event = match object.remove("event") {
            Some(Json::Object(event)) => event,
            Some(_) => {
                return Err(usage(
                    "`event:` in the vars file must be an object of event properties",
                ))
            }
            None => Map::new(),
        };
        if let Some(key) = object.keys().next() {
            return Err(usage(format!(
                "unknown key `{key}` in the vars file: it takes `contact:` and `event:`"
            )));
        }
        return Ok((contact, event));
    }
    Ok((object, Map::new()))
}

/// A contact from the store, and its latest event of the kind this step
/// reads as `event.` (if any).
fn contact_from_store(
    settings: &Settings,
    id: &str,
    event: Option<&str>,
) -> Result<(Fields, Fields), CommandError> {
    use crate::store::Store as _;
    // Reading a contact must not create an empty store.
    let location = crate::store::location(settings);
    if !location.exists() {
        return Err(usage(format!(
            "there is no store at `{}` yet; `journeyc import contacts FILE` creates it",
            location.display()
        )));
    }
    let store = crate::store::open(settings).map_err(|error| usage(error.to_string()))?;
    let contact = store
        .contact(id)
        .map_err(|error| usage(error.to_string()))?
        .ok_or_else(|| {
            usage(format!(
                "no contact `{id}` in the store; `journeyc import contacts` adds contacts"
            ))
        })?;
    // journeyc's own bookkeeping (`__stage_changed_at` ...) is not a field.
    let mut fields: Fields = contact
        .fields
        .into_iter()
        .filter(|(name, _)| !name.starts_with("__"))
        .collect();
    fields.insert("id".into(), Json::String(contact.id));
    let properties = match event {
        Some(name) => store
            .events_of(id)
            .map_err(|error| usage(error.to_string()))?
            .into_iter()
            .rev()
            .find(|candidate| candidate.name == name)
            .map(|candidate| candidate.properties.into_map())
            .unwrap_or_default(),
        None => Fields::new(),
    };
    Ok((fields, properties))
}

/// The contact as templates see it: every schema field present, `null`
/// where the vars leave it out; unknown keys are refused.
pub(crate) fn contact_object(
    settings: &Settings,
    mut given: Map<String, Json>,
) -> Result<Map<String, Json>, CommandError> {
    let known: Vec<&str> = settings.field_names().chain(["tags", "stage"]).collect();
    if let Some(unknown) = given.keys().find(|key| !known.contains(&key.as_str())) {
        let hint = crate::diagnostic::did_you_mean(unknown, known.iter().copied())
            .unwrap_or_else(|| "add it under `contact:` in journeyc.yaml".into());
        return Err(usage(format!(
            "the vars give `{unknown}`, which is not a contact field; {hint}"
        )));
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

fn text_of(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(text) if !text.is_empty() => Some(text.clone()),
        Json::Null | Json::String(_) => None,
        other => Some(other.to_string()),
    }
}

pub(crate) fn secret(settings: &Settings) -> Option<Vec<u8>> {
    let name = settings
        .channels
        .email
        .as_ref()
        .and_then(|email| email.unsubscribe_secret_env.clone())
        .unwrap_or_else(|| unsubscribe::DEFAULT_SECRET_ENV.to_string());
    std::env::var(name).ok().map(String::into_bytes)
}

/// Renders the step of `message_use` for a contact, as it would go out at
/// `now` with `key`.
#[allow(clippy::too_many_arguments)]
pub fn render_message(
    settings: &Settings,
    set: &TemplateSet,
    message_use: &MessageUse,
    step_id: &str,
    contact: &Map<String, Json>,
    event: &Map<String, Json>,
    now: chrono::DateTime<chrono::Utc>,
    key: &crate::model::MessageKey,
) -> Result<Rendered, CommandError> {
    let message = &message_use.message;
    let contact_id = text_of(contact.get("id")).unwrap_or_default();
    let base_url = settings
        .channels
        .email
        .as_ref()
        .and_then(|email| email.unsubscribe_url.clone());
    let unsubscribe_url = match (&base_url, secret(settings)) {
        (Some(base), Some(secret)) if secret.len() >= unsubscribe::MIN_SECRET_LENGTH => Some(
            unsubscribe::url(base, &secret, &contact_id, message.channel.as_str()),
        ),
        (Some(_), Some(_)) => {
            return Err(usage(format!(
                "the unsubscribe secret is shorter than {} bytes; set a long random value",
                unsubscribe::MIN_SECRET_LENGTH
            )))
        }
        _ => None,
    };
    let now_text = crate::model::Timestamp::from(now).to_string();
    let context = crate::templates::context(
        message_use,
        step_id,
        contact,
        event,
        &now_text,
        unsubscribe_url.as_deref(),
    );
    let failed = |part: &str, error: &minijinja::Error| {
        usage(format!(
            "cannot render the {part} of `{}`: {error:#}",
            message.template.node
        ))
    };

    if message.channel == Channel::Task && !message.task_template {
        let text = set
            .env
            .template_from_str(&crate::templates::keep_line_breaks(&message.template.node).0)
            .and_then(|template| crate::templates::render_bounded(&template, context))
            .map_err(|error| failed("task text", &error))?;
        return Ok(Rendered::Task {
            assignee: assignee(message, contact, settings),
            text,
            due: message.due.as_ref().map(|due| due.node.to_string()),
        });
    }
    let template = set
        .get(message.channel, &message.template.node)
        .ok_or_else(|| {
            usage(format!(
                "the template `{}` does not exist; run `journeyc check`",
                message.template.node
            ))
        })?;
    let mut parts: BTreeMap<&str, String> = BTreeMap::new();
    for part in &template.parts {
        let rendered = set.render_part(part, &context).map_err(|error| {
            usage(format!(
                "{}: cannot render the {} of `{}`: {}",
                template.locate(part, &error),
                part.name,
                message.template.node,
                error
                    .detail()
                    .map_or_else(|| error.kind().to_string(), ToString::to_string)
            ))
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
            let email_settings =
                settings.channels.email.as_ref().ok_or_else(|| {
                    usage("the `email` channel is not configured in journeyc.yaml")
                })?;
            if template.kind == MessageKind::Marketing && unsubscribe_url.is_none() {
                return Err(usage(
                    "a marketing email needs a signed unsubscribe link: set `unsubscribe_url` under `channels.email` and the secret in JOURNEYC_UNSUBSCRIBE_SECRET (or the variable `unsubscribe_secret_env` names)",
                ));
            }
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
                    .ok_or_else(|| usage("the contact has no `email`"))?,
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
            due: message.due.as_ref().map(|due| due.node.to_string()),
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

fn assignee(
    message: &crate::ast::Message,
    contact: &Map<String, Json>,
    settings: &Settings,
) -> String {
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

/// The header block of a formatted message, unfolded, in order.
fn headers(formatted: &str) -> Vec<(String, String)> {
    let block = formatted.split("\r\n\r\n").next().unwrap_or("");
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in block.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }
    headers
}

pub(crate) fn find_step<'c>(
    checked: &'c Checked,
    journey: &str,
    step: &str,
) -> Result<(&'c MessageUse, String), CommandError> {
    let compiled = checked
        .analysis
        .journeys
        .iter()
        .find(|compiled| compiled.name == journey)
        .ok_or_else(|| {
            let names = checked
                .analysis
                .journeys
                .iter()
                .map(|compiled| compiled.name.as_str());
            let hint = crate::diagnostic::did_you_mean(journey, names)
                .unwrap_or_else(|| "`journeyc graph` lists journeys' steps".into());
            usage(format!("no journey named `{journey}`; {hint}"))
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
        return Err(usage(format!(
            "journey `{journey}` has no message step `{step}`; {hint}"
        )));
    };
    let message_use = checked
        .analysis
        .messages
        .iter()
        .find(|candidate| {
            candidate.journey == journey && candidate.message.template.span == message.template.span
        })
        .ok_or_else(|| usage(format!("step `{step}` is not a message")))?;
    Ok((message_use, (*id).to_string()))
}

/// `journeyc preview JOURNEY STEP (--contact ID | --vars FILE)`
pub fn preview(
    options: &PreviewOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Status, CommandError> {
    let settings_path = crate::commands::project_settings(options.project.as_deref())?;
    let checked = project::load(&settings_path, &std::collections::BTreeSet::new())?;
    let (Some(settings), Some(set)) = (&checked.settings, &checked.templates) else {
        for diagnostic in checked.diagnostics_for(None) {
            writeln!(err, "{}", render::human(&checked.sources, diagnostic))?;
        }
        return Ok(Status::Problems);
    };
    let (message_use, step_id) = find_step(&checked, &options.journey, &options.step)?;
    // Problems in this journey's file or in templates stop the preview.
    let journey_file = checked
        .analysis
        .journeys
        .iter()
        .find(|journey| journey.name == options.journey)
        .map(|journey| journey.span.file);
    let blocking = |diagnostic: &crate::diagnostic::Diagnostic| {
        Some(diagnostic.span.file) == journey_file || diagnostic.code.as_str().starts_with("E2")
    };
    if checked.report_errors(
        err,
        &blocking,
        "failed: fix the errors above before previewing",
    )? {
        return Ok(Status::Problems);
    }
    let (contact, event) = match (&options.contact, &options.vars) {
        (Some(id), _) => contact_from_store(settings, id, message_use.event.as_deref())?,
        (None, Some(path)) => read_vars(path)?,
        (None, None) => {
            return Err(usage(
                "say whom to preview for: `--vars FILE` (or `--contact ID`)",
            ))
        }
    };
    let contact = contact_object(settings, contact)?;
    let now = crate::runner::run::parse_now(options.now.as_deref())?;
    let contact_id = text_of(contact.get("id")).unwrap_or_default();
    let key = crate::model::MessageKey::preview(
        &options.journey,
        &crate::model::StepId::new(step_id.clone()),
        &contact_id,
    );
    let rendered = render_message(
        settings,
        set,
        message_use,
        &step_id,
        &contact,
        &event,
        now,
        &key,
    )?;
    write_preview(&rendered, options.format, settings, out)?;
    Ok(Status::Success)
}

fn write_preview(
    rendered: &Rendered,
    format: PreviewFormat,
    settings: &Settings,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let limit = settings
        .channels
        .sms
        .as_ref()
        .map_or(1, |sms| sms.segment_limit);
    match (rendered, format) {
        (Rendered::Email(email), _) => {
            let built = message::build(email).map_err(|error| usage(error.to_string()))?;
            let formatted = String::from_utf8_lossy(&built.formatted()).into_owned();
            match format {
                PreviewFormat::Eml => out.write_all(formatted.as_bytes())?,
                PreviewFormat::Json => {
                    let headers: Map<String, Json> = headers(&formatted)
                        .into_iter()
                        .map(|(name, value)| (name, Json::String(value)))
                        .collect();
                    let value = json!({
                        "channel": "email",
                        "kind": email.kind,
                        "from": email.from,
                        "to": email.to_address,
                        "subject": message::header_safe(&email.subject),
                        "preheader": email.preheader,
                        "text": email.text,
                        "html": email.html,
                        "headers": headers,
                    });
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    )?;
                }
                PreviewFormat::Text => {
                    writeln!(out, "From:      {}", email.from)?;
                    writeln!(out, "To:        {}", email.to_address)?;
                    writeln!(out, "Subject:   {}", message::header_safe(&email.subject))?;
                    if let Some(preheader) = &email.preheader {
                        writeln!(out, "Preheader: {preheader}")?;
                    }
                    writeln!(out, "\n{}", email.text.trim_end())?;
                    if let Some(html) = &email.html {
                        writeln!(out, "\n--- html ---\n{}", html.trim_end())?;
                    }
                }
            }
        }
        (_, PreviewFormat::Eml) => {
            return Err(usage(
                "`--format eml` is for email steps; use `text` or `json`",
            ))
        }
        (Rendered::Sms { kind, body }, _) => {
            let length = sms::measure(body);
            if format == PreviewFormat::Json {
                let value = json!({
                    "channel": "sms",
                    "kind": kind,
                    "body": body,
                    "encoding": length.encoding,
                    "segments": length.segments,
                    "characters": length.characters,
                    "units": length.units,
                    "segment_limit": limit,
                });
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                )?;
            } else {
                writeln!(out, "{body}\n")?;
                writeln!(
                    out,
                    "-- {} part{} ({}, {} characters; limit {limit})",
                    length.segments,
                    if length.segments == 1 { "" } else { "s" },
                    length.encoding.as_str(),
                    length.characters
                )?;
            }
        }
        (
            Rendered::Task {
                assignee,
                text,
                due,
            },
            _,
        ) => {
            if format == PreviewFormat::Json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"channel": "task", "assignee": assignee, "text": text, "due": due})
                    )
                    .unwrap_or_default()
                )?;
            } else {
                let due = due
                    .as_ref()
                    .map_or(String::new(), |due| format!(" (due within {due})"));
                writeln!(out, "Task for {assignee}{due}:\n{text}")?;
            }
        }
        (Rendered::Webhook { endpoint, body }, _) => {
            if format == PreviewFormat::Json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"channel": "webhook", "endpoint": endpoint, "body": body})
                    )
                    .unwrap_or_default()
                )?;
            } else {
                writeln!(out, "POST to `{endpoint}`:\n{body}")?;
            }
        }
    }
    Ok(())
}
