//! Queueing a message: the send time by the policy (quiet hours, windows,
//! caps next to the contact's other planned sends), then what stops it
//! (no address on that channel, the suppression list as it stood when the
//! step came, `expires after`).

use chrono::{DateTime, Utc};

use super::engine::{Engine, JourneyRun, RunError, Work};
use super::person::Person;
use super::time;
use crate::ast::{self, Channel};
use crate::model::{OutboxKey, OutboxStatus, StepId, Timestamp};
use crate::policy::{self, Placement};
use crate::store::{Enrolment, OutboxRow};
use crate::templates::MessageKind;

impl Engine<'_> {
    /// Queues the message of step `step` at `at`; returns what became of
    /// it, for `why`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue(
        &self,
        work: &mut Work<'_>,
        person: &Person,
        run: &JourneyRun<'_>,
        enrolment: &Enrolment,
        step: &str,
        message: &ast::Message,
        at: DateTime<Utc>,
    ) -> Result<String, RunError> {
        let channel = message.channel;
        let inline = channel == Channel::Task && !message.task_template;
        let kind = if inline {
            MessageKind::Transactional
        } else {
            self.templates
                .get(channel, &message.template.node)
                .map_or(MessageKind::Marketing, |template| template.kind)
        };
        let rules = policy::policy(self.settings, run.journey, channel, kind);
        let address = policy::address_field(channel).map(|field| (field, person.text(field)));
        let mut status = OutboxStatus::Pending;
        let mut notes: Vec<String> = Vec::new();
        let mut send_at = at;
        match address {
            Some((field, None)) => {
                status = OutboxStatus::Skipped;
                notes.push(match field {
                    "phone" => "skipped: the contact has no phone number".to_string(),
                    _ => "skipped: the contact has no email address".to_string(),
                });
            }
            _ => {
                let sends = if rules.caps.is_empty() {
                    Vec::new()
                } else {
                    let from = rules.cap_horizon(Timestamp::from(at));
                    work.batch.scheduled(&person.contact.id, channel, from)?
                };
                let Placement {
                    at: placed,
                    skipped,
                    deferred,
                    notes: placed_notes,
                } = policy::place(person.timezone, at, &rules, &sends);
                send_at = placed;
                work.counts.deferred += deferred;
                notes.extend(placed_notes);
                if skipped.is_some() {
                    status = OutboxStatus::Skipped;
                }
            }
        }
        // Suppressed by the time the step came: what a run at that moment
        // knew. A later unsubscribe stops the message when `deliver` comes
        // to send it.
        if status == OutboxStatus::Pending && rules.suppressible {
            if let Some((_, Some(address))) = address {
                if work
                    .batch
                    .suppressed(address, channel, Timestamp::from(at))?
                {
                    status = OutboxStatus::Suppressed;
                    notes.push(format!("suppressed: {address} is on the suppression list"));
                }
            }
        }
        let expires_at = message
            .expires
            .as_ref()
            .map(|expires| time::add(person.timezone, at, expires.node));
        if status == OutboxStatus::Pending && expires_at.is_some_and(|expires| send_at > expires) {
            status = OutboxStatus::Expired;
            notes.push("expired before it could be sent".into());
        }
        let row = OutboxRow {
            key: OutboxKey::new(enrolment.id, StepId::new(step)),
            contact_id: person.contact.id.clone(),
            journey: run.name().to_string(),
            channel,
            template: if inline {
                "(inline)".to_string()
            } else {
                message.template.node.clone()
            },
            kind,
            send_at: Timestamp::from(send_at),
            expires_at: expires_at.map(Timestamp::from),
            status,
            planned_at: Timestamp::from(self.now),
            note: (status != OutboxStatus::Pending).then(|| notes.join("; ")),
        };
        if work.batch.queue(&row)? {
            match status {
                OutboxStatus::Pending => work.counts.queued += 1,
                OutboxStatus::Skipped => work.counts.skipped += 1,
                OutboxStatus::Suppressed => work.counts.suppressed += 1,
                _ => work.counts.expired += 1,
            }
        }
        let what = if inline {
            format!("{channel}")
        } else {
            format!("{channel} {}", message.template.node)
        };
        let mut note = format!("{what}: {status} for {}", Timestamp::from(send_at));
        for extra in notes {
            note.push_str("; ");
            note.push_str(&extra);
        }
        Ok(note)
    }
}
