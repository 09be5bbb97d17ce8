//! `journeyc preview JOURNEY STEP`: renders one message step for one
//! contact exactly as `deliver` would send it.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde_json::{json, Map, Value as Json};

use super::{Io, Now, Outcome, ProjectArg, Status};
use crate::compose::{mime, ComposeError, Composer, Fields, Rendered};
use crate::error::Error;
use crate::model::{MessageKey, StepId, Timestamp};
use crate::settings::Settings;
use crate::templates::sms;

/// Render one message step for one contact exactly as it would be sent.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc preview welcome day0 --contact c-01
  journeyc preview welcome welcome/day0 --vars li.yaml --format eml > day0.eml
  journeyc preview winback last_call --contact c-03 --now '2026-12-01 10:00'")]
pub(crate) struct Args {
    /// The journey's name.
    journey: String,
    /// The message step: its ID (`journeyc graph JOURNEY --format text`
    /// lists them) or the template of exactly one of its message steps.
    step: String,
    /// A contact from the store, by its ID.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "vars",
        required_unless_present = "vars"
    )]
    contact: Option<String>,
    /// A JSON or YAML file with the contact's fields (and optionally
    /// `contact:` and `event:` sections).
    #[arg(long, value_name = "FILE")]
    vars: Option<PathBuf>,
    /// How to show the message.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    project: ProjectArg,
    /// The sending time templates see as `now`: RFC 3339, or a local time
    /// in the project's timezone (default: the clock).
    #[arg(long, value_name = "TIME")]
    now: Option<Now>,
}

/// How `preview` shows a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum Format {
    /// Headers and parts, for reading.
    #[default]
    Text,
    /// The MIME message exactly as sent (email steps only).
    Eml,
    /// One JSON object.
    Json,
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// Reads `--vars`: JSON or YAML. With a `contact:` key it holds `contact`
/// and `event`; otherwise the whole file is the contact.
fn read_vars(path: &Path) -> Result<(Fields, Fields), Error> {
    let text = crate::files::read_text(path).map_err(|problem| match problem {
        crate::files::FileProblem::Io { path, error } => Error::Io {
            path,
            source: error,
        },
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

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let settings_path = super::settings_path(args.project.project.as_deref())?;
    let checked = crate::project::load(&settings_path, &std::collections::BTreeSet::new())?;
    let Some(composer) = Composer::new(&checked) else {
        for diagnostic in checked.diagnostics_for(None) {
            writeln!(
                io.err,
                "{}",
                crate::diagnostic::render::human(&checked.sources, diagnostic)
            )?;
        }
        return Ok(Status::Problems);
    };
    let settings = composer.settings();
    let (message_use, step_id) = composer.find_step(&args.journey, &args.step)?;
    // Problems in this journey's file or in templates stop the preview.
    let journey_file = checked
        .journey(&args.journey)
        .map(|journey| journey.span.file);
    let blocking = |diagnostic: &crate::diagnostic::Diagnostic| {
        Some(diagnostic.span.file) == journey_file || diagnostic.code.as_str().starts_with("E2")
    };
    if checked.report_errors(
        io.err,
        &blocking,
        "failed: fix the errors above before previewing",
    )? {
        return Ok(Status::Problems);
    }
    let now = super::now::resolve(args.now.as_ref(), settings.timezone.0)?;
    let (contact, event) = match (&args.contact, &args.vars) {
        (Some(id), _) => {
            let store = super::open_store(&checked, super::Open::Existing)?;
            composer
                .stored_contact(
                    &*store,
                    id,
                    message_use.event.as_deref(),
                    None,
                    Timestamp::from(now),
                )?
                .ok_or_else(|| {
                    usage(format!(
                        "no contact `{id}` in the store; `journeyc import contacts FILE` adds contacts"
                    ))
                })??
        }
        (None, Some(path)) => {
            let (contact, event) = read_vars(path)?;
            (composer.contact(contact)?, event)
        }
        (None, None) => {
            return Err(usage(
                "say whom to preview for: `--vars FILE` (or `--contact ID`)",
            ))
        }
    };
    let contact_id = contact
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let key = MessageKey::preview(&args.journey, &StepId::new(step_id.clone()), &contact_id);
    let rendered = composer.render(message_use, &step_id, &contact, &event, now, &key)?;
    write_preview(&rendered, args.format, settings, io.out)?;
    Ok(Status::Success)
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

fn write_preview(
    rendered: &Rendered,
    format: Format,
    settings: &Settings,
    out: &mut dyn std::io::Write,
) -> Result<(), Error> {
    let limit = settings
        .channels
        .sms
        .as_ref()
        .map_or(1, |sms| sms.segment_limit);
    match (rendered, format) {
        (Rendered::Email(email), _) => {
            let built = mime::build(email).map_err(ComposeError::Build)?;
            let formatted = String::from_utf8_lossy(&built.formatted()).into_owned();
            match format {
                Format::Eml => out.write_all(formatted.as_bytes())?,
                Format::Json => {
                    let headers: Map<String, Json> = headers(&formatted)
                        .into_iter()
                        .map(|(name, value)| (name, Json::String(value)))
                        .collect();
                    let value = json!({
                        "channel": "email",
                        "kind": email.kind,
                        "from": email.from,
                        "to": email.to_address,
                        "subject": mime::header_safe(&email.subject),
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
                Format::Text => {
                    writeln!(out, "From:      {}", email.from)?;
                    match &email.to_name {
                        Some(name) => writeln!(out, "To:        {name} <{}>", email.to_address)?,
                        None => writeln!(out, "To:        {}", email.to_address)?,
                    }
                    writeln!(out, "Subject:   {}", mime::header_safe(&email.subject))?;
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
        (_, Format::Eml) => {
            return Err(usage(
                "`--format eml` is for email steps; use `text` or `json`",
            ))
        }
        (Rendered::Sms { kind, body }, _) => {
            let length = sms::measure(body);
            if format == Format::Json {
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
            if format == Format::Json {
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
            if format == Format::Json {
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
