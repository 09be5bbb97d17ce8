//! `journeyc.yaml`: the contact schema, event catalog, stages, channels,
//! timezone, quiet hours, caps and holiday calendar that the checks use.
//! Unknown keys are errors with their line and column: a typo in settings
//! must never be ignored. Secrets are never read from this file; settings
//! that need one name the environment variable that holds it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::ast::{Channel, Duration, Time};
use crate::diagnostic::{Code, Diagnostic};
use crate::parser::{parse_duration, parse_time};
use crate::span::{FileId, SourceMap, Span};

pub const FILE_NAME: &str = "journeyc.yaml";

/// Contact fields every project has, whatever its schema says.
pub const BUILTIN_FIELDS: &[(&str, FieldType, bool)] = &[
    ("id", FieldType::String, false),
    ("email", FieldType::String, true),
    ("phone", FieldType::String, true),
    ("timezone", FieldType::String, true),
    ("created_at", FieldType::DateTime, false),
];

/// Events every project has: what email and SMS providers export about an
/// address. Importing one puts the address on the suppression list (a soft
/// bounce excepted); journeys can exit on them like on any event.
pub const SUPPRESSION_EVENTS: &[&str] = &["unsubscribed", "bounced", "complained"];

/// The properties of the suppression events, besides any a project adds.
fn suppression_properties(event: &str) -> Vec<(&'static str, FieldSpec)> {
    let spec = |field_type: FieldType| FieldSpec {
        field_type,
        optional: true,
    };
    let mut properties = vec![
        // email (the default) or sms
        (
            "channel",
            spec(FieldType::Enum(vec!["email".into(), "sms".into()])),
        ),
        // the address or phone number; the contact's own when left out
        ("address", spec(FieldType::String)),
        ("reason", spec(FieldType::String)),
    ];
    if event == "bounced" {
        // hard (the default) suppresses; soft is recorded only
        properties.push((
            "type",
            spec(FieldType::Enum(vec!["hard".into(), "soft".into()])),
        ));
    }
    properties
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The timezone of contacts that have none of their own.
    #[serde(default = "default_timezone")]
    pub timezone: TimeZone,
    #[serde(default)]
    pub locale: Option<String>,
    /// Folders holding `.journey` files, relative to this file.
    #[serde(default = "default_journeys")]
    pub journeys: Vec<PathBuf>,
    /// The templates folder, relative to this file.
    #[serde(default = "default_templates")]
    pub templates: PathBuf,
    /// Where the runner keeps its state.
    #[serde(default)]
    pub store: Option<String>,
    /// The contact schema, besides the built-in fields.
    #[serde(default)]
    pub contact: BTreeMap<String, FieldSpec>,
    /// The event catalog: each event and its properties.
    #[serde(default)]
    pub events: BTreeMap<String, Option<BTreeMap<String, FieldSpec>>>,
    /// The tags journeys may use. Without this list tags are free text;
    /// with it, a misspelt tag is an error.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Lifecycle stages, in funnel order.
    #[serde(default)]
    pub stages: Vec<String>,
    #[serde(default)]
    pub channels: Channels,
    /// Endpoints that `webhook NAME "template"` steps post to.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookSettings>,
    /// No marketing message is sent in these local hours.
    #[serde(default)]
    pub quiet_hours: Option<TimeRange>,
    /// Frequency caps per channel, across all journeys.
    #[serde(default)]
    pub caps: BTreeMap<ChannelName, Cap>,
    /// What happens to a send over a cap.
    #[serde(default)]
    pub over_cap: OverCap,
    /// Named holidays: a fixed day every year (`"12-25"`) or a list of
    /// dates for moving feasts (Mid-Autumn, Dragon Boat).
    #[serde(default)]
    pub holidays: BTreeMap<String, HolidayDates>,
    /// Retries and leases of `journeyc deliver`.
    #[serde(default)]
    pub delivery: Delivery,

    /// The folder holding this file.
    #[serde(skip)]
    pub root: PathBuf,
    #[serde(skip)]
    pub file: FileId,
}

/// How `journeyc deliver` retries and how long a claim holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Attempts per message before a temporary failure becomes final.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The wait before the first retry; it doubles with each attempt (with
    /// up to 25 % jitter), up to `max_backoff`.
    #[serde(default = "default_backoff")]
    pub backoff: Seconds,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Seconds,
    /// A message claimed this long ago by a `deliver` that never finished
    /// (it crashed) is claimed again and re-sent.
    #[serde(default = "default_lease")]
    pub lease: Seconds,
    /// How late a marketing message or task may go out: one that a run
    /// planned, or a `deliver` could send, more than this after its time
    /// is expired instead of sent in a burst. Days count on the contact's
    /// calendar.
    #[serde(default = "default_lateness")]
    pub lateness: Lateness,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            lease: default_lease(),
            lateness: default_lateness(),
        }
    }
}

/// `lateness: 1d`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lateness(pub Duration);

impl<'de> Deserialize<'de> for Lateness {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(text.trim())
            .filter(|duration| !duration.is_zero())
            .map(Lateness)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "`{text}` is not a lateness: write a duration such as `1d` or `12h`"
                ))
            })
    }
}

fn default_lateness() -> Lateness {
    Lateness(Duration::days(1))
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff() -> Seconds {
    Seconds(60.0)
}

fn default_max_backoff() -> Seconds {
    Seconds(3600.0)
}

fn default_lease() -> Seconds {
    Seconds(900.0)
}

fn default_timezone() -> TimeZone {
    TimeZone(chrono_tz::Tz::UTC)
}

fn default_journeys() -> Vec<PathBuf> {
    vec![PathBuf::from("journeys")]
}

fn default_templates() -> PathBuf {
    PathBuf::from("templates")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    pub email: Option<EmailChannel>,
    pub sms: Option<SmsChannel>,
    pub task: Option<TaskChannel>,
}

impl Channels {
    pub fn configured(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.sms.is_some(),
            Channel::Task => self.task.is_some(),
            Channel::Webhook => true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// `Name <address>` the mail comes from.
    pub from: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The page that handles one-click unsubscribes; each email links to it
    /// with the contact's signed token.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// The environment variable holding the key that signs unsubscribe
    /// tokens (default `JOURNEYC_UNSUBSCRIBE_SECRET`).
    #[serde(default)]
    pub unsubscribe_secret_env: Option<String>,
    /// The contact field with the recipient's display name (default: the
    /// first of `name`, `full_name`, `first_name` in the schema).
    #[serde(default)]
    pub name_field: Option<String>,
    /// Where `journeyc deliver` hands the mail: an SMTP server or a folder.
    #[serde(default)]
    pub transport: Option<EmailTransport>,
}

/// `smtp://host:port` (plain; `?tls=required` for STARTTLS, `?tls=opportunistic`
/// to use it when offered), `smtps://host:port` (TLS from the start), or
/// `file:FOLDER` (one .eml per message, named by its key, for dry runs and
/// local development). Credentials come from the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTransport {
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL, instead of `url`.
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// A PEM file of certificate authorities to trust besides the public
    /// ones, for a relay with a company CA (relative to this file).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(flatten)]
    pub sending: Sending,
}

/// How fast and how wide a channel sends.
#[derive(Debug, Clone, Deserialize)]
pub struct Sending {
    /// Connections (and sending threads) used at once.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// At most this many messages per second on the channel.
    #[serde(default)]
    pub rate: Option<f64>,
    /// How long one attempt may take before it counts as a temporary failure.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
}

impl Default for Sending {
    fn default() -> Self {
        Sending {
            connections: default_connections(),
            rate: None,
            timeout: default_timeout(),
        }
    }
}

fn default_connections() -> usize {
    4
}

fn default_timeout() -> Seconds {
    Seconds(30.0)
}

/// A span of time in seconds, written `500ms`, `30s`, `5m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub f64);

impl Seconds {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.0.max(0.0))
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration such as 30s, 5m or 1h"))?;
        let factor = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("`{text}` is not a duration such as 30s, 5m or 1h")),
        };
        Ok(Seconds(number * factor))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsChannel {
    /// The sender number or name shown to the contact.
    #[serde(default)]
    pub from: Option<String>,
    /// The most parts one SMS may be split into.
    #[serde(default = "default_segment_limit")]
    pub segment_limit: u32,
    /// Where `journeyc deliver` sends SMS.
    #[serde(default)]
    pub transport: Option<SmsTransport>,
}

/// An SMS provider: Twilio's API (or one that speaks it), any HTTP API
/// that takes a JSON body (a template), or a folder for dry runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsTransport {
    pub kind: SmsTransportKind,
    /// `twilio`: the API's base URL (default `https://api.twilio.com`);
    /// `webhook`: the URL posted to; `file`: the folder written to.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// `twilio`: the variables holding the account SID and auth token.
    #[serde(default)]
    pub account_sid_env: Option<String>,
    #[serde(default)]
    pub auth_token_env: Option<String>,
    /// `webhook`: the JSON body, a template over `to`, `from`, `body`,
    /// `key` and `contact`.
    #[serde(default)]
    pub body: Option<String>,
    /// `webhook`: headers, each value read from the named variable
    /// (`Authorization: SMS_API_AUTH`).
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    #[serde(flatten)]
    pub sending: Sending,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmsTransportKind {
    Twilio,
    Webhook,
    File,
}

fn default_segment_limit() -> u32 {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskChannel {
    /// Who gets a task when the contact has no owner.
    #[serde(default)]
    pub fallback_assignee: Option<String>,
    /// `journeyc deliver` mails each task to its assignee (an address),
    /// through the email channel's transport.
    #[serde(default)]
    pub email: bool,
    /// ... and/or posts it to this entry of `webhooks:` (a team chat robot).
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The environment variable holding the URL (it often embeds a token).
    pub url_env: String,
    /// For tasks posted here: the JSON body, a template over `text`,
    /// `assignee`, `due`, `key`, `journey`, `step` and `contact` (default:
    /// those as one JSON object).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    #[serde(flatten, default)]
    pub sending: Sending,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OverCap {
    #[default]
    Defer,
    Skip,
}

/// A channel name as a settings key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelName {
    Email,
    Sms,
    Task,
    Webhook,
}

impl ChannelName {
    pub fn channel(self) -> Channel {
        match self {
            ChannelName::Email => Channel::Email,
            ChannelName::Sms => Channel::Sms,
            ChannelName::Task => Channel::Task,
            ChannelName::Webhook => Channel::Webhook,
        }
    }
}

/// The type of a contact field or event property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Number,
    Bool,
    Date,
    DateTime,
    /// A string from a fixed list of values.
    Enum(Vec<String>),
    /// A list of strings.
    List,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Enum(_) => "enum",
            FieldType::List => "list",
        })
    }
}

/// `first_name: string`, `birthday: date?` (optional), or
/// `lost_reason: { type: enum, values: [price, features], optional: true }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub field_type: FieldType,
    pub optional: bool,
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(rename = "type")]
            field_type: String,
            #[serde(default)]
            optional: bool,
            #[serde(default)]
            values: Option<Vec<String>>,
        }

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = FieldSpec;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a type (string, number, bool, date, datetime, list, enum) or { type, optional, values }")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<FieldSpec, E> {
                let (name, optional) = match text.strip_suffix('?') {
                    Some(name) => (name, true),
                    None => (text, false),
                };
                if name == "enum" {
                    return Err(E::custom(
                        "an enum needs its values: `{ type: enum, values: [a, b] }`",
                    ));
                }
                Ok(FieldSpec {
                    field_type: simple_type(name).map_err(E::custom)?,
                    optional,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let field_type = match (long.field_type.as_str(), long.values) {
                    ("enum", Some(values)) if !values.is_empty() => FieldType::Enum(values),
                    ("enum", _) => {
                        return Err(de::Error::custom(
                            "an enum needs a non-empty list of `values`",
                        ))
                    }
                    (name, None) => simple_type(name).map_err(de::Error::custom)?,
                    (_, Some(_)) => {
                        return Err(de::Error::custom("only `type: enum` takes `values`"))
                    }
                };
                Ok(FieldSpec {
                    field_type,
                    optional: long.optional,
                })
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

fn simple_type(name: &str) -> Result<FieldType, String> {
    Ok(match name {
        "string" => FieldType::String,
        "number" => FieldType::Number,
        "bool" => FieldType::Bool,
        "date" => FieldType::Date,
        "datetime" => FieldType::DateTime,
        "list" => FieldType::List,
        other => {
            let names = [
                "string", "number", "bool", "date", "datetime", "list", "enum",
            ];
            let hint = crate::diagnostic::did_you_mean(other, names)
                .map_or(String::new(), |hint| format!("; {hint}"));
            return Err(format!(
                "unknown type `{other}`: use one of {}{hint}",
                names.join(", ")
            ));
        }
    })
}

/// An IANA timezone name such as `Asia/Shanghai`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map(TimeZone).map_err(|_| {
            de::Error::custom(format!(
                "unknown timezone `{name}`: use an IANA name such as `Asia/Shanghai` or `America/New_York`"
            ))
        })
    }
}

/// `2 per 7d`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub count: u64,
    pub per: Duration,
}

impl<'de> Deserialize<'de> for Cap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text.split_once(" per ").and_then(|(count, per)| {
            Some(Cap {
                count: count.trim().parse().ok()?,
                per: parse_duration(per.trim()).filter(|per| !per.is_zero())?,
            })
        });
        parsed.ok_or_else(|| {
            de::Error::custom(format!("`{text}` is not a cap: write it like `2 per 7d`"))
        })
    }
}

/// `21:00..09:00`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Time,
    pub to: Time,
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text.split_once("..").and_then(|(from, to)| {
            Some(TimeRange {
                from: parse_time(from.trim())?,
                to: parse_time(to.trim())?,
            })
        });
        parsed.ok_or_else(|| {
            de::Error::custom(format!(
                "`{text}` is not a time range: write it like `21:00..09:00`"
            ))
        })
    }
}

/// When a holiday falls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolidayDates {
    /// The same month and day every year (`"12-25"`).
    Annual { month: u32, day: u32 },
    /// Dates looked up in a calendar, for feasts that move.
    Dates(Vec<chrono::NaiveDate>),
}

impl<'de> Deserialize<'de> for HolidayDates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let parse_date = |text: &str| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                de::Error::custom(format!(
                    "`{text}` is not a date: write it like `2026-09-25`"
                ))
            })
        };
        match Raw::deserialize(deserializer)? {
            Raw::One(text) => {
                if let Some((month, day)) = text.split_once('-').filter(|_| text.len() <= 5) {
                    let month: u32 = month
                        .parse()
                        .map_err(|_| de::Error::custom(format!("`{text}` is not a month-day")))?;
                    let day: u32 = day
                        .parse()
                        .map_err(|_| de::Error::custom(format!("`{text}` is not a month-day")))?;
                    // 2024 is a leap year, so 02-29 is accepted.
                    if chrono::NaiveDate::from_ymd_opt(2024, month, day).is_none() {
                        return Err(de::Error::custom(format!(
                            "`{text}` is not a day of the year"
                        )));
                    }
                    Ok(HolidayDates::Annual { month, day })
                } else {
                    Ok(HolidayDates::Dates(vec![parse_date(&text)?]))
                }
            }
            Raw::Many(list) => list
                .iter()
                .map(|text| parse_date(text))
                .collect::<Result<_, _>>()
                .map(HolidayDates::Dates),
        }
    }
}

impl Settings {
    /// Reads and validates `path`, adding it to `sources` so errors can
    /// point into it.
    pub fn load(
        path: &Path,
        sources: &mut SourceMap,
    ) -> Result<Result<Settings, Diagnostic>, std::io::Error> {
        let text = match crate::files::Boundary::of_settings(path).read(path) {
            Ok(text) => text,
            Err(crate::files::FileProblem::Io { error, .. }) => return Err(error),
            Err(problem) => return Ok(Err(crate::project::file_diagnostic(sources, &problem))),
        };
        let file = sources.add(path.to_path_buf(), text);
        Ok(Settings::parse(file, sources).map(|mut settings| {
            settings.root = path.parent().map(Path::to_path_buf).unwrap_or_default();
            settings
        }))
    }

    /// Parses settings already in `sources`.
    pub fn parse(file: FileId, sources: &SourceMap) -> Result<Settings, Diagnostic> {
        let source = sources.get(file);
        let text = if source.text.trim().is_empty() {
            "{}"
        } else {
            source.text.as_str()
        };
        if let Some(at) = crate::files::yaml_too_deep(text) {
            return Err(crate::templates::too_deep_yaml(file, at, "journeyc.yaml"));
        }
        // A key written twice in one mapping: serde would report the
        // first key of the block, or keep the last value silently; the
        // YAML tree says which key, at its second place.
        let tree = serde_yaml::from_str::<serde_yaml::Value>(text).err();
        let parsed = match tree {
            Some(error) if error.to_string().contains("duplicate") => Err(error),
            _ => serde_yaml::from_str::<Settings>(text),
        };
        let mut settings: Settings = parsed.map_err(|error| {
            let twice = duplicate_key(text, &error.to_string());
            let (start, end) = match error.location() {
                _ if twice.is_some() => twice.unwrap_or_default(),
                Some(location) => {
                    let start = source.offset(location.line(), location.column());
                    let end = source.text[start..]
                        .find([':', '\n', ',', '}'])
                        .map_or(source.text.len(), |length| start + length);
                    (start, end.max(start))
                }
                None => (0, 0),
            };
            let message = error.to_string();
            let message = message
                .rfind(" at line ")
                .map_or(message.as_str(), |at| &message[..at]);
            let (message, help) = explain_unknown_key(message);
            Diagnostic::new(Code::Settings, Span::new(file, start, end), message)
                .label("in journeyc.yaml")
                .help(help)
        })?;
        settings.file = file;
        settings.validate(sources)?;
        settings.add_suppression_events(sources)?;
        Ok(settings)
    }

    /// Checks that serde cannot express: names that clash or repeat.
    fn validate(&self, sources: &SourceMap) -> Result<(), Diagnostic> {
        let source = sources.get(self.file);
        let at_key = |key: &str, message: String| {
            let start = find_key(&source.text, key).unwrap_or(0);
            Diagnostic::new(
                Code::Settings,
                Span::new(self.file, start, start + key.len()),
                message,
            )
            .label("in journeyc.yaml")
        };
        for (name, _, _) in BUILTIN_FIELDS {
            if self.contact.contains_key(*name) {
                return Err(
                    at_key(name, format!("`{name}` is a built-in contact field"))
                        .help("remove it from `contact:`; every contact has it"),
                );
            }
        }
        for name in ["stage", "tags"] {
            if self.contact.contains_key(name) {
                return Err(at_key(name, format!("`{name}` is kept by journeyc itself"))
                    .help(format!("remove `{name}` from `contact:`")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for stage in &self.stages {
            if !seen.insert(stage) {
                return Err(at_key(stage, format!("stage `{stage}` is listed twice")));
            }
        }
        if let Some(email) = &self.channels.email {
            for (key, value) in [
                ("from", Some(&email.from)),
                ("reply_to", email.reply_to.as_ref()),
            ] {
                let Some(value) = value else { continue };
                if let Err(reason) = crate::compose::mime::check_mailbox(value) {
                    return Err(at_key(
                        key,
                        format!("`{key}: {value}` is not an email address: {reason}"),
                    )
                    .help("write `Name <address@example.com>` or `address@example.com`"));
                }
            }
            if let Some(url) = email
                .transport
                .as_ref()
                .and_then(|transport| transport.url.as_ref())
            {
                if url_holds_password(url) {
                    return Err(at_key("url", "the transport URL holds a password, in the repository".to_string())
                        .help("remove it; name environment variables with `username_env` and `password_env`, or give the whole URL in `url_env`"));
                }
            }
        }
        if let Some(store) = self.store.as_deref() {
            if let Some((scheme, _)) = store.split_once("://") {
                if !matches!(scheme, "postgres" | "postgresql") {
                    return Err(at_key(
                        "store",
                        format!("`store: {store}`: journeyc keeps its store in SQLite (a file path, or `sqlite:PATH`) or PostgreSQL (`postgres://...`), not `{scheme}://`"),
                    ));
                }
                if url_holds_password(store) {
                    return Err(at_key("store", "the store URL holds a password, in the repository".to_string())
                        .help("remove it; journeyc reads the store's password from the environment variable JOURNEYC_STORE_PASSWORD"));
                }
            }
        }
        if let Some(sms) = &self.channels.sms {
            if sms.segment_limit == 0 {
                return Err(at_key(
                    "segment_limit",
                    "`segment_limit` must be at least 1".to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Adds the suppression events to the catalog, merging their built-in
    /// properties into a project's own declaration of them.
    fn add_suppression_events(&mut self, sources: &SourceMap) -> Result<(), Diagnostic> {
        for event in SUPPRESSION_EVENTS {
            let declared = self
                .events
                .entry((*event).to_string())
                .or_insert(None)
                .get_or_insert_with(BTreeMap::new);
            for (name, spec) in suppression_properties(event) {
                if declared.insert(name.to_string(), spec).is_some() {
                    let source = sources.get(self.file);
                    let start = find_key(&source.text, event).unwrap_or(0);
                    return Err(Diagnostic::new(
                        Code::Settings,
                        Span::new(self.file, start, start + event.len()),
                        format!("`{name}` is a built-in property of the event `{event}`"),
                    )
                    .label("in journeyc.yaml")
                    .help(format!(
                        "remove `{name}` from `{event}`; every `{event}` event has channel, address and reason"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The type of a contact field, built-in or from the schema.
    pub fn field(&self, name: &str) -> Option<FieldSpec> {
        if let Some(&(_, ref field_type, optional)) =
            BUILTIN_FIELDS.iter().find(|(field, _, _)| *field == name)
        {
            return Some(FieldSpec {
                field_type: field_type.clone(),
                optional,
            });
        }
        if name == "stage" {
            return Some(FieldSpec {
                field_type: FieldType::Enum(self.stages.clone()),
                optional: false,
            });
        }
        self.contact.get(name).cloned()
    }

    /// Every contact field name, for suggestions.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        BUILTIN_FIELDS
            .iter()
            .map(|(name, _, _)| *name)
            .chain(std::iter::once("stage"))
            .chain(self.contact.keys().map(String::as_str))
    }

    pub fn event_properties(&self, event: &str) -> Option<BTreeMap<String, FieldSpec>> {
        self.events
            .get(event)
            .map(|properties| properties.clone().unwrap_or_default())
    }

    /// The journey folders as paths.
    pub fn journey_dirs(&self) -> Vec<PathBuf> {
        self.journeys
            .iter()
            .map(|dir| self.root.join(dir))
            .collect()
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.root.join(&self.templates)
    }

    /// The cap on a channel, if any.
    pub fn cap(&self, channel: Channel) -> Option<Cap> {
        self.caps
            .iter()
            .find(|(name, _)| name.channel() == channel)
            .map(|(_, cap)| *cap)
    }
}

/// serde says "unknown field `x`, expected one of `a`, `b`"; a user wants
/// "unknown setting `x`" and the closest valid key.
fn explain_unknown_key(message: &str) -> (String, String) {
    let Some((prefix, rest)) = message.split_once("unknown field `") else {
        return (
            message.to_string(),
            "see the settings reference in GRAMMAR.md".to_string(),
        );
    };
    let name = rest.split('`').next().unwrap_or("");
    let expected: Vec<&str> = rest
        .split_once("expected one of ")
        .or_else(|| rest.split_once("expected "))
        .map(|(_, list)| {
            list.split(", ")
                .map(|item| item.trim_matches('`'))
                .collect()
        })
        .unwrap_or_default();
    let help =
        crate::diagnostic::did_you_mean(name, expected.iter().copied()).unwrap_or_else(|| {
            if rest.contains("there are no fields") {
                "this key takes no settings".to_string()
            } else if expected.is_empty() {
                "see the settings reference in GRAMMAR.md".to_string()
            } else {
                format!("the keys here are {}", expected.join(", "))
            }
        });
    (format!("{prefix}unknown setting `{name}`"), help)
}

/// Byte offset of `key:` in YAML text (first occurrence), for pointing at
/// a setting that serde accepted but the checks refuse.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - trimmed.len();
        let bare = trimmed.trim_start_matches(['"', '\'']);
        let quote = trimmed.len() - bare.len();
        if bare.starts_with(key)
            && bare[key.len()..]
                .trim_start_matches(['"', '\''])
                .trim_end()
                .is_empty_or_colon()
        {
            return Some(offset + indent + quote);
        }
        offset += line.len();
    }
    None
}

trait EmptyOrColon {
    fn is_empty_or_colon(&self) -> bool;
}

impl EmptyOrColon for str {
    fn is_empty_or_colon(&self) -> bool {
        self.is_empty() || self.starts_with(':') || self.starts_with(',')
    }
}

/// Where the key a "duplicate entry with key" error names is written the
/// second time in one block: the second of two lines with the key at the
/// same indentation and nothing less indented between them.
fn duplicate_key(text: &str, message: &str) -> Option<(usize, usize)> {
    let key = message
        .split("duplicate entry with key ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .trim_matches('"');
    let mut seen: Vec<(usize, usize)> = Vec::new(); // (indent, offset)
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_start_matches([' ', '-']);
        let indent = line.len() - content.len();
        if content.trim().is_empty() || content.starts_with('#') {
            continue;
        }
        seen.retain(|(known, _)| *known <= indent);
        let written = content
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if written == key && content.contains(':') {
            if seen.iter().any(|(known, _)| *known == indent) {
                let at = start + indent;
                return Some((at, at + content.find(':').unwrap_or(key.len())));
            }
            seen.push((indent, start));
        }
    }
    None
}

/// Whether a URL (`scheme://user:password@host/...`) holds a password.
pub fn url_holds_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, (Diagnostic, SourceMap)> {
        let mut sources = SourceMap::new();
        let file = sources.add("journeyc.yaml".into(), text.to_string());
        Settings::parse(file, &sources).map_err(|diagnostic| (diagnostic, sources))
    }

    /// A store is SQLite or PostgreSQL, and its URL holds no password.
    #[test]
    fn the_store_is_sqlite_or_postgres_without_a_password() {
        for good in [
            "journeyc.db",
            "sqlite:state/j.db",
            "postgres://journeyc@db.internal/journeys?sslmode=require",
        ] {
            parse(&format!("store: \"{good}\"\n"))
                .unwrap_or_else(|(diagnostic, _)| panic!("{good}: {diagnostic:?}"));
        }
        for (bad, said) in [
            ("mysql://db/journeys", "not `mysql://`"),
            (
                "postgres://journeyc:hunter2@db/journeys",
                "holds a password",
            ),
        ] {
            let (diagnostic, _) = parse(&format!("store: \"{bad}\"\n")).expect_err(bad);
            assert!(
                diagnostic.message.contains(said),
                "{bad}: {}",
                diagnostic.message
            );
        }
    }

    /// A key written twice is reported where it is written the second
    /// time, top level or nested, and never silently overrides the first.
    #[test]
    fn a_duplicate_key_is_reported_at_its_second_place() {
        for (text, line) in [
            ("timezone: Asia/Shanghai\nlocale: zh-CN\ntimezone: Europe/London\n", 3),
            ("timezone: Asia/Shanghai\ncontact:\n  first_name: string\n  city: string?\n  first_name: number\n", 5),
        ] {
            let (diagnostic, sources) = parse(text).expect_err("a duplicate key is an error");
            let location = crate::diagnostic::render::location(&sources, diagnostic.span);
            assert!(diagnostic.message.contains("duplicate"), "{}", diagnostic.message);
            assert_eq!(location.line, line, "{text}: {}", diagnostic.message);
        }
    }

    #[test]
    fn reads_a_full_schema() {
        let settings = parse(
            "timezone: Asia/Shanghai\ncontact:\n  first_name: string\n  birthday: date?\n  lost_reason: { type: enum, values: [price, brand], optional: true }\nevents:\n  email_opened:\n  page_viewed: { page: string }\nstages: [aware, dormant]\ncaps:\n  email: 2 per 7d\nholidays:\n  christmas: \"12-25\"\n  mid_autumn: [2026-09-25, 2027-09-15]\n",
        )
        .unwrap_or_else(|(diagnostic, _)| panic!("{diagnostic:?}"));
        assert_eq!(settings.timezone.0, chrono_tz::Asia::Shanghai);
        assert!(settings.field("birthday").unwrap().optional);
        assert_eq!(
            settings.field("lost_reason").unwrap().field_type,
            FieldType::Enum(vec!["price".into(), "brand".into()])
        );
        assert_eq!(
            settings.cap(Channel::Email),
            Some(Cap {
                count: 2,
                per: Duration::days(7)
            })
        );
        assert_eq!(
            settings.holidays["christmas"],
            HolidayDates::Annual { month: 12, day: 25 }
        );
        assert!(settings
            .event_properties("email_opened")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unknown_key_points_at_its_line_and_column() {
        let (diagnostic, sources) =
            parse("timezone: UTC\nstages: [a]\ntiemzone: UTC\n").unwrap_err();
        let position = sources
            .get(diagnostic.span.file)
            .line_column(diagnostic.span.start as usize);
        assert_eq!((position.line, position.column), (3, 1));
        assert_eq!(diagnostic.message, "unknown setting `tiemzone`");
        assert_eq!(diagnostic.help.as_deref(), Some("did you mean `timezone`?"));
    }

    #[test]
    fn bad_type_and_timezone_are_reported() {
        let (diagnostic, _) = parse("contact:\n  age: nunber\n").unwrap_err();
        assert!(
            diagnostic.message.contains("did you mean `number`?"),
            "{}",
            diagnostic.message
        );
        let (diagnostic, sources) = parse("timezone: Asia/Shanghia\n").unwrap_err();
        assert!(
            diagnostic.message.contains("unknown timezone"),
            "{}",
            diagnostic.message
        );
        assert_eq!(
            sources
                .get(diagnostic.span.file)
                .line_column(diagnostic.span.start as usize)
                .line,
            1
        );
    }

    #[test]
    fn builtin_fields_cannot_be_redeclared() {
        let (diagnostic, sources) = parse("contact:\n  email: string\n").unwrap_err();
        assert_eq!(sources.slice(diagnostic.span), "email");
    }
}
