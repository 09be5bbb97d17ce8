//! Actions on the contact: tags, fields, stages and score points. Each is
//! made on the run's working copy at once and written back to the stored
//! contact when the contact is done.

use serde_json::Value as Json;

use super::engine::{Engine, Moment};
use super::eval;
use super::person::{Edit, Person, STAGE_STAMPS, TAG_STAMPS, UNTAG_STAMPS};
use crate::ast::StepKind;
use crate::model::Timestamp;

impl Engine<'_> {
    /// Applies an action at `moment`; returns what happened, for `why`.
    pub(super) fn apply(&self, person: &mut Person, action: &StepKind, moment: Moment) -> String {
        let at = Timestamp::from(moment.at);
        match action {
            StepKind::Tag(tag) => {
                if !person.has_tag(&tag.node) {
                    person.edit(Edit::AddTag(tag.node.clone()), moment);
                    person.edit(
                        Edit::Stamp {
                            key: TAG_STAMPS,
                            name: tag.node.clone(),
                            at,
                        },
                        moment,
                    );
                }
                format!("tag {}", tag.node)
            }
            StepKind::Untag(tag) => {
                if person.has_tag(&tag.node) {
                    person.edit(Edit::RemoveTag(tag.node.clone()), moment);
                    person.edit(
                        Edit::Stamp {
                            key: UNTAG_STAMPS,
                            name: tag.node.clone(),
                            at,
                        },
                        moment,
                    );
                }
                format!("untag {}", tag.node)
            }
            StepKind::SetField { field, value } => {
                let value = eval::eval(value, self.context(person, None, None, moment.at));
                let json = match value {
                    eval::Value::Bool(value) => Json::Bool(value),
                    eval::Value::Number(number) => number_json(number),
                    eval::Value::Text(text) => Json::String(text),
                    eval::Value::Date(date) => Json::String(date.to_string()),
                    eval::Value::Instant(instant) => {
                        Json::String(Timestamp::from(instant).to_string())
                    }
                    _ => Json::Null,
                };
                person.edit(Edit::Set(field.node.clone(), json), moment);
                format!("set {}", field.node)
            }
            // Already at the stage: nothing changes, and its stamp keeps
            // the time it was entered (moving it would rewrite the history
            // that conditions asked about earlier read).
            StepKind::Stage(stage)
                if eval::stage_at(&person.contact.fields, at.utc()).as_deref()
                    == Some(stage.node.as_str()) =>
            {
                format!("stage {}", stage.node)
            }
            StepKind::Stage(stage) => {
                person.edit(
                    Edit::Set("stage".into(), Json::String(stage.node.clone())),
                    moment,
                );
                person.edit(
                    Edit::Stamp {
                        key: STAGE_STAMPS,
                        name: stage.node.clone(),
                        at,
                    },
                    moment,
                );
                format!("stage {}", stage.node)
            }
            StepKind::Score { model, points } => {
                let entry = serde_json::json!({"model": model.node, "points": points.node, "at": at.to_string()});
                person.edit(Edit::AddScore(entry), moment);
                format!(
                    "score {} {}",
                    model.node,
                    crate::ast::print::number(points.node)
                )
            }
            other => crate::ast::print::action(other),
        }
    }
}

/// A number as JSON: whole numbers as integers, so `250000` stays
/// `250000` in templates.
pub fn number_json(number: f64) -> Json {
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    if number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0 {
        return Json::from(number as i64);
    }
    serde_json::Number::from_f64(number).map_or(Json::Null, Json::Number)
}
