//! `journeyc why CONTACT [JOURNEY]`: a contact's path, every recorded
//! move with its reason, and what became of each planned message.

use super::{Io, Open, Outcome, ProjectArg, Report, Status};
use crate::error::Error;
use crate::model::{localize, OutboxStatus, StepId};

/// Explain a contact's path: every recorded move with its reason, and what
/// became of each planned message.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  journeyc why c-01
  journeyc why c-01 welcome --format json")]
pub(crate) struct Args {
    /// The contact's ID, as imported.
    contact: String,
    /// Only this journey (default: all the contact entered).
    journey: Option<String>,
    #[command(flatten)]
    project: ProjectArg,
    /// How to report.
    #[arg(long, value_enum, default_value_t)]
    format: Report,
}

pub(crate) fn run(args: Args, io: &mut Io<'_>) -> Outcome {
    let Some((checked, store, zone)) = super::session(&args.project, io, Open::Existing)? else {
        return Ok(Status::Problems);
    };
    let (contact, journey) = (args.contact.as_str(), args.journey.as_deref());
    if let Some(name) = journey {
        // A journey the project no longer has may still have a history.
        let known = checked.journey(name).is_some()
            || store
                .progress()?
                .iter()
                .any(|progress| progress.journey == name);
        if !known {
            return Err(Error::Usage(format!(
                "no journey named `{name}`; {}",
                checked.journey_hint(name)
            )));
        }
    }
    if store.contact(contact)?.is_none() {
        return Err(Error::Usage(format!(
            "no contact `{contact}` in the store; `journeyc status` counts who is there"
        )));
    }
    let transitions = store.transitions_of(contact, journey)?;
    let outbox = store.outbox_of(contact)?;
    let rows = outbox
        .iter()
        .filter(|row| journey.is_none_or(|journey| row.journey == journey));
    if args.format == Report::Json {
        let transitions: Vec<_> = transitions
            .iter()
            .map(|transition| serde_json::json!({"journey": transition.journey, "from": transition.from_step.as_ref().map(StepId::as_str), "to": transition.to_step.as_ref().map(StepId::as_str), "reason": transition.reason, "at": transition.at}))
            .collect();
        let mut messages = Vec::new();
        for row in rows {
            let delivered = store.delivered(&row.key)?.unwrap_or_default();
            messages.push(serde_json::json!({"journey": row.journey, "step": row.step().as_str(), "channel": row.channel.as_str(), "template": row.template, "send_at": row.send_at, "status": row.status, "note": row.note, "attempts": delivered.attempts, "sent_at": delivered.sent_at, "provider_id": delivered.provider_id, "error": delivered.error, "held": delivered.note}));
        }
        super::json_line(
            io,
            &serde_json::json!({"contact": contact, "transitions": transitions, "outbox": messages}),
        )?;
        return Ok(Status::Success);
    }
    if transitions.is_empty() {
        writeln!(
            io.out,
            "{contact} has not entered {}",
            journey.map_or("any journey".to_string(), |journey| format!("`{journey}`"))
        )?;
    }
    for transition in &transitions {
        let place = match (&transition.from_step, &transition.to_step) {
            (Some(from), Some(to)) if from != to => format!("{from} -> {to}"),
            (_, Some(to)) => to.to_string(),
            (Some(from), None) => format!("{from} -> (left)"),
            (None, None) => String::new(),
        };
        writeln!(
            io.out,
            "{}  {}  {place}  {}",
            transition.at.in_zone(zone),
            transition.journey,
            localize(&transition.reason, zone)
        )?;
    }
    // What became of the messages once they were planned.
    for row in rows {
        let delivered = store.delivered(&row.key)?.unwrap_or_default();
        // What the plan said is in the moves above; here is what delivery
        // made of it.
        let shown = match row.status {
            OutboxStatus::Pending => delivered.note.is_some(),
            OutboxStatus::Skipped => false,
            OutboxStatus::Suppressed => delivered.error.is_some(),
            _ => true,
        };
        if !shown {
            continue;
        }
        let attempts = match delivered.attempts {
            0 | 1 => String::new(),
            count => format!(" after {count} attempts"),
        };
        let outcome = match row.status {
            OutboxStatus::Sent => format!(
                "sent{attempts} at {}{}",
                delivered
                    .sent_at
                    .map(|at| at.in_zone(zone).to_string())
                    .unwrap_or_default(),
                delivered
                    .provider_id
                    .map_or_else(String::new, |id| format!(" ({id})"))
            ),
            OutboxStatus::Failed => format!(
                "failed{attempts}: {}",
                localize(&delivered.error.unwrap_or_default(), zone)
            ),
            OutboxStatus::Sending => "being sent".to_string(),
            OutboxStatus::Pending => match &delivered.note {
                Some(note) => format!("waiting: {}", localize(note, zone)),
                None => "waiting to be sent".to_string(),
            },
            other => match row.note.as_ref().or(delivered.note.as_ref()) {
                Some(note) => format!("{other}: {}", localize(note, zone)),
                None => other.to_string(),
            },
        };
        writeln!(
            io.out,
            "{}  {}  {}  {} {}: {outcome}",
            row.send_at.in_zone(zone),
            row.journey,
            row.step(),
            row.channel,
            row.template
        )?;
    }
    Ok(Status::Success)
}
