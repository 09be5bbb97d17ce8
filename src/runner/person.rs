//! The contact as one run changes it: a working copy the journeys read,
//! and the list of changes that the run writes back onto the contact as it
//! is then in the store (an import may have changed it meanwhile).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value as Json};

use super::engine::Moment;
use crate::model::Timestamp;
use crate::store::{Contact, Event};

/// Where the runner keeps, in a contact's fields, when each stage and tag
/// was set: entries `on stage` and `on tag` and the signals read them.
pub const STAGE_STAMPS: &str = "__stage_changed_at";
pub const TAG_STAMPS: &str = "__tagged_at";
/// When each tag was last removed, so that a journey behind the others
/// can tell a tag it had then.
pub const UNTAG_STAMPS: &str = "__untagged_at";
/// Points journeys gave (`score lead +10`).
pub const SCORE_CHANGES: &str = "__scores";

/// One change a journey made to the contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    AddTag(String),
    RemoveTag(String),
    Set(String, Json),
    /// `key` is one of the stamp maps; `name` the stage or tag.
    Stamp {
        key: &'static str,
        name: String,
        at: Timestamp,
    },
    AddScore(Json),
}

impl Edit {
    /// Applies the change to a contact's fields.
    pub fn apply(&self, fields: &mut Map<String, Json>) {
        match self {
            Edit::AddTag(tag) => {
                let mut tags = tags_of(fields);
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
                fields.insert(
                    "tags".into(),
                    Json::Array(tags.into_iter().map(Json::String).collect()),
                );
            }
            Edit::RemoveTag(tag) => {
                let tags: Vec<Json> = tags_of(fields)
                    .into_iter()
                    .filter(|existing| existing != tag)
                    .map(Json::String)
                    .collect();
                fields.insert("tags".into(), Json::Array(tags));
            }
            Edit::Set(field, value) => {
                fields.insert(field.clone(), value.clone());
            }
            Edit::Stamp { key, name, at } => {
                let map = fields
                    .entry((*key).to_string())
                    .or_insert_with(|| Json::Object(Map::new()));
                if !map.is_object() {
                    *map = Json::Object(Map::new());
                }
                if let Json::Object(map) = map {
                    map.insert(name.clone(), Json::String(at.to_string()));
                }
            }
            Edit::AddScore(entry) => match fields.get_mut(SCORE_CHANGES) {
                Some(Json::Array(items)) => items.push(entry.clone()),
                _ => {
                    fields.insert(SCORE_CHANGES.into(), Json::Array(vec![entry.clone()]));
                }
            },
        }
    }
}

fn tags_of(fields: &Map<String, Json>) -> Vec<String> {
    match fields.get("tags") {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The contact during one run.
pub struct Person {
    pub contact: Contact,
    /// The events that had arrived when the run started, in time order.
    pub events: Vec<Event>,
    pub timezone: Tz,
    /// When the contact came into the store (`created_at`).
    pub created: Option<DateTime<Utc>>,
    /// Changes made in this run, in order, with the moment of each.
    pub edits: Vec<Edit>,
    pub changed: Vec<Moment>,
    /// The moment of the last thing the run did for this contact. The
    /// working copy is the contact as it is from then on: a condition
    /// read from it holds at that moment or later, never before.
    pub clock: Option<Moment>,
    /// What the contact's events score, worked out once.
    pub scores: super::eval::ScoreMemo,
}

impl Person {
    pub fn new(contact: Contact, events: Vec<Event>, default_timezone: Tz) -> Person {
        let timezone = contact
            .fields
            .get("timezone")
            .and_then(Json::as_str)
            .and_then(|zone| zone.parse().ok())
            .unwrap_or(default_timezone);
        let created = contact
            .fields
            .get("created_at")
            .and_then(Json::as_str)
            .and_then(|text| Timestamp::parse(text).ok())
            .map(Timestamp::utc);
        Person {
            contact,
            events,
            timezone,
            created,
            edits: Vec::new(),
            changed: Vec::new(),
            clock: None,
            scores: super::eval::ScoreMemo::default(),
        }
    }

    pub fn field(&self, name: &str) -> Option<&Json> {
        self.contact.fields.get(name)
    }

    /// A field's text, when it has some (blank is none).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.field(name)
            .and_then(Json::as_str)
            .filter(|text| !text.trim().is_empty())
    }

    /// A date field (`YYYY-MM-DD`), if it holds one.
    pub fn date(&self, name: &str) -> Option<chrono::NaiveDate> {
        self.text(name)
            .and_then(|text| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        matches!(self.field("tags"), Some(Json::Array(items))
            if items.iter().any(|item| item.as_str() == Some(tag)))
    }

    pub fn on_stage(&self, stage: &str) -> bool {
        self.text("stage") == Some(stage)
    }

    /// When a stage or tag was last set, from the stamps.
    pub fn stamped(&self, key: &str, name: &str) -> Option<DateTime<Utc>> {
        self.field(key)?
            .get(name)?
            .as_str()
            .and_then(|text| Timestamp::parse(text).ok())
            .map(Timestamp::utc)
    }

    /// Makes a change at `moment`: to the working copy now, to the store
    /// when the contact is written back.
    pub fn edit(&mut self, edit: Edit, moment: Moment) {
        edit.apply(&mut self.contact.fields);
        self.edits.push(edit);
        self.changed.push(moment);
    }

    /// The moments this run changed the contact at.
    pub fn change_moments(&self) -> impl Iterator<Item = Moment> + '_ {
        self.changed.iter().copied()
    }

    /// The moment of this run's latest stamp of a stage or tag.
    pub fn stamp_moment(&self, key: &str, name: &str) -> Option<Moment> {
        self.edits
            .iter()
            .zip(&self.changed)
            .rev()
            .find(|(edit, _)| matches!(edit, Edit::Stamp { key: stamped, name: stamped_name, .. } if *stamped == key && stamped_name == name))
            .map(|(_, moment)| *moment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_onto_a_contact_changed_meanwhile() {
        let mut person = Person::new(
            Contact {
                id: "c-1".into(),
                fields: Map::new(),
            },
            Vec::new(),
            chrono_tz::Asia::Shanghai,
        );
        let at = Timestamp::parse("2026-03-02T10:00:00+08:00").unwrap();
        person.edit(Edit::AddTag("welcomed".into()), Moment::of(at.utc()));
        person.edit(
            Edit::Stamp {
                key: TAG_STAMPS,
                name: "welcomed".into(),
                at,
            },
            Moment::of(at.utc()),
        );
        // Meanwhile an import set the city and a tag of its own.
        let mut stored: Map<String, Json> =
            serde_json::from_str(r#"{"city": "杭州", "tags": ["vip"]}"#).unwrap();
        for edit in &person.edits {
            edit.apply(&mut stored);
        }
        assert_eq!(stored["city"], "杭州");
        assert_eq!(stored["tags"], serde_json::json!(["vip", "welcomed"]));
        assert_eq!(stored[TAG_STAMPS]["welcomed"], "2026-03-02T02:00:00Z");
        assert!(person.has_tag("welcomed"));
    }
}
