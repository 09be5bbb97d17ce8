//! `journeyc import contacts|events FILE`: CSV or JSON Lines, checked
//! against the contact schema and the event catalog. Valid rows are
//! written in one transaction; each rejected row is reported with its line
//! and reason; nothing is half-written if the process dies midway.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone as _, Utc};
use serde_json::{Map, Value as Json};

use crate::diagnostic::did_you_mean;
use crate::model::Channel;
use crate::settings::{FieldSpec, FieldType, Settings, SUPPRESSION_EVENTS};
use crate::store::{normalize_address, Contact, Event, ImportSink, Store, StoreError, Suppression};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportKind {
    /// One row per contact: new ones are added, known ones updated.
    Contacts,
    /// One row per event; an event ID seen before is skipped.
    Events,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Contacts => "contacts",
            ImportKind::Events => "events",
        }
    }
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Rows that created a contact or event.
    pub created: usize,
    /// Contacts that existed and were updated.
    pub updated: usize,
    /// Events whose id was already stored (a re-import adds nothing).
    pub duplicates: usize,
    /// Addresses the unsubscribe, bounce and complaint events put on the
    /// suppression list.
    pub suppressed: usize,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug)]
pub enum ImportError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file as a whole cannot be read: its type, or its header.
    Format {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    Store(StoreError),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, error } => {
                write!(f, "cannot read `{}`: {error}", path.display())
            }
            ImportError::Format { path, line, reason } => write!(
                f,
                "{}:{line}: {reason}; nothing was imported",
                path.display()
            ),
            ImportError::Store(error) => write!(f, "{error}; nothing was imported"),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { error, .. } => Some(error),
            ImportError::Store(error) => Some(error),
            ImportError::Format { .. } => None,
        }
    }
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        ImportError::Store(error)
    }
}

/// One row as read: its line and its cells, before checking.
struct Row {
    line: usize,
    cells: Map<String, Json>,
}

impl Row {
    /// Why the row could not be read as cells (kept under the key NUL,
    /// which no column can have), if it could not.
    fn problem(&self) -> Option<&String> {
        match self.cells.get("\u{0}") {
            Some(Json::String(problem)) => Some(problem),
            _ => None,
        }
    }
}

/// Rows read one at a time, so an import of millions of contacts holds one
/// row in memory, not the file.
enum Rows {
    Csv {
        records: csv::StringRecordsIntoIter<std::fs::File>,
        headers: Vec<String>,
    },
    Lines {
        reader: std::io::BufReader<std::fs::File>,
        /// Records of the current line after the first, when old Mac line
        /// endings (CR alone) put several on one.
        pending: std::collections::VecDeque<String>,
        line: usize,
    },
}

impl Rows {
    fn open(path: &Path) -> Result<Rows, ImportError> {
        let io = |error| ImportError::Io {
            path: path.to_path_buf(),
            error,
        };
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match extension.as_str() {
            "csv" => {
                let file = std::fs::File::open(path).map_err(io)?;
                // Rows with the wrong number of cells are rejected one by
                // one (with their line), not the whole file.
                let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
                let headers: Vec<String> = reader
                    .headers()
                    .map_err(|error| ImportError::Format {
                        path: path.to_path_buf(),
                        line: 1,
                        reason: format!("cannot read the header: {error}"),
                    })?
                    .iter()
                    .map(|header| header.trim().trim_start_matches('\u{feff}').to_string())
                    .collect();
                Ok(Rows::Csv {
                    records: reader.into_records(),
                    headers,
                })
            }
            "jsonl" | "ndjson" | "json" => {
                let file = std::fs::File::open(path).map_err(io)?;
                Ok(Rows::Lines {
                    reader: std::io::BufReader::new(file),
                    pending: std::collections::VecDeque::new(),
                    line: 0,
                })
            }
            _ => Err(ImportError::Format {
                path: path.to_path_buf(),
                line: 1,
                reason: "import reads `.csv` or `.jsonl` (one JSON object per line) files"
                    .to_string(),
            }),
        }
    }

    fn headers(&self) -> Option<&[String]> {
        match self {
            Rows::Csv { headers, .. } => Some(headers),
            Rows::Lines { .. } => None,
        }
    }

    /// The next row; a line that is not JSON becomes a row whose only cell
    /// (under the key `\0`) says why, so it is rejected with its line.
    fn next(&mut self, path: &Path) -> Option<Result<Row, ImportError>> {
        match self {
            Rows::Csv { records, headers } => {
                let problem =
                    |reason: String| Map::from_iter([("\u{0}".to_string(), Json::String(reason))]);
                let record = match records.next()? {
                    Ok(record) => record,
                    Err(error) => {
                        let line = error
                            .position()
                            .map_or(0, |position| usize::try_from(position.line()).unwrap_or(0));
                        // A row that is not UTF-8 is rejected; the rows
                        // after it are still read.
                        if let csv::ErrorKind::Utf8 { err, .. } = error.kind() {
                            let reason = format!("cell {} is not UTF-8 text", err.field() + 1);
                            return Some(Ok(Row {
                                line,
                                cells: problem(reason),
                            }));
                        }
                        return Some(Err(ImportError::Format {
                            path: path.to_path_buf(),
                            line,
                            reason: format!("not valid CSV: {error}"),
                        }));
                    }
                };
                let line = record
                    .position()
                    .map_or(0, |position| usize::try_from(position.line()).unwrap_or(0));
                if record.len() != headers.len() {
                    let reason = format!(
                        "the row has {} cells, the header has {}",
                        record.len(),
                        headers.len()
                    );
                    return Some(Ok(Row {
                        line,
                        cells: problem(reason),
                    }));
                }
                let cells = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(header, cell)| {
                        let value = if cell.trim().is_empty() {
                            Json::Null
                        } else {
                            Json::String(cell.to_string())
                        };
                        (header.clone(), value)
                    })
                    .collect();
                Some(Ok(Row { line, cells }))
            }
            Rows::Lines {
                reader,
                pending,
                line,
            } => loop {
                let problem =
                    |reason: String| Map::from_iter([("\u{0}".to_string(), Json::String(reason))]);
                let text = match pending.pop_front() {
                    Some(text) => text,
                    None => {
                        let mut bytes = Vec::new();
                        match std::io::BufRead::read_until(reader, b'\n', &mut bytes) {
                            Ok(0) => return None,
                            Ok(_) => {}
                            Err(error) => {
                                return Some(Err(ImportError::Io {
                                    path: path.to_path_buf(),
                                    error,
                                }))
                            }
                        }
                        *line += 1;
                        let text = match String::from_utf8(bytes) {
                            Ok(text) => text,
                            Err(error) => {
                                let column = error.utf8_error().valid_up_to() + 1;
                                return Some(Ok(Row {
                                    line: *line,
                                    cells: problem(format!("not UTF-8 text from byte {column}")),
                                }));
                            }
                        };
                        let text = if *line == 1 {
                            text.trim_start_matches('\u{feff}').to_string()
                        } else {
                            text
                        };
                        // A JSON string holds no raw CR, so a CR alone
                        // ends a record (old Mac line endings).
                        let mut records = text
                            .trim_end_matches(['\n', '\r'])
                            .split('\r')
                            .map(str::to_string);
                        let first = records.next().unwrap_or_default();
                        pending.extend(records);
                        first
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                let cells = match serde_json::from_str::<Json>(&text) {
                    Ok(Json::Object(cells)) => cells,
                    Ok(_) => problem("not an object".to_string()),
                    Err(error) => problem(format!("not JSON: {error}")),
                };
                return Some(Ok(Row { line: *line, cells }));
            },
        }
    }
}

/// Converts one cell to the field's type: CSV cells arrive as text,
/// JSON Lines cells as JSON.
fn typed(value: &Json, spec: &FieldSpec, settings: &Settings, name: &str) -> Result<Json, String> {
    if value.is_null() {
        return if spec.optional {
            Ok(Json::Null)
        } else {
            Err(format!("`{name}` is required"))
        };
    }
    let text = value.as_str();
    let shown = || text.map_or_else(|| value.to_string(), ToString::to_string);
    match &spec.field_type {
        FieldType::String => Ok(Json::String(
            text.map_or_else(|| value.to_string(), ToString::to_string),
        )),
        FieldType::Number => match value {
            Json::Number(_) => Ok(value.clone()),
            // `250000` stays an integer (templates print it as written);
            // `2.5` is a decimal.
            _ => text
                .map(|text| text.trim().replace(',', ""))
                .and_then(|text| {
                    text.parse::<i64>().map(Json::from).ok().or_else(|| {
                        text.parse::<f64>()
                            .ok()
                            .filter(|number| number.is_finite())
                            .map(crate::runner::actions::number_json)
                    })
                })
                .ok_or_else(|| format!("`{name}`: `{}` is not a number", shown())),
        },
        FieldType::Bool => match value {
            Json::Bool(_) => Ok(value.clone()),
            _ => match text.map(|text| text.trim().to_ascii_lowercase()).as_deref() {
                Some("true" | "yes" | "1" | "y") => Ok(Json::Bool(true)),
                Some("false" | "no" | "0" | "n") => Ok(Json::Bool(false)),
                _ => Err(format!("`{name}`: `{}` is not true or false", shown())),
            },
        },
        FieldType::Date => text
            .and_then(|text| NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok())
            .map(|date| Json::String(date.to_string()))
            .ok_or_else(|| format!("`{name}`: `{}` is not a date such as 2026-09-25", shown())),
        FieldType::DateTime => text
            .and_then(|text| datetime(text, settings))
            .map(|moment| Json::String(moment.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
            .ok_or_else(|| {
                format!(
                    "`{name}`: `{}` is not a time such as 2026-09-25T10:00:00+08:00",
                    shown()
                )
            }),
        FieldType::Enum(values) => {
            let given = shown();
            if values.contains(&given) {
                Ok(Json::String(given))
            } else {
                let hint = did_you_mean(&given, values.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("one of {}", values.join(", ")));
                Err(format!("`{name}`: `{given}` is not allowed; {hint}"))
            }
        }
        FieldType::List => match value {
            Json::Array(items) if items.iter().all(Json::is_string) => Ok(value.clone()),
            Json::String(text) => Ok(Json::Array(
                text.split(';')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Json::String(item.to_string()))
                    .collect(),
            )),
            _ => Err(format!("`{name}` must be a list of text (in CSV: `a;b;c`)")),
        },
    }
}

/// RFC 3339, or `2026-09-25 10:00[:00]` in the project's timezone.
fn datetime(text: &str, settings: &Settings) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Some(moment.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .ok()?;
    settings
        .timezone
        .0
        .from_local_datetime(&local)
        .earliest()
        .map(|moment| moment.with_timezone(&Utc))
}

fn contact_spec(settings: &Settings, name: &str) -> Option<FieldSpec> {
    match name {
        "stage" => Some(FieldSpec {
            field_type: FieldType::Enum(settings.stages.clone()),
            optional: true,
        }),
        "tags" => Some(FieldSpec {
            field_type: FieldType::List,
            optional: true,
        }),
        "id" => None,
        other => settings.field(other),
    }
}

/// Checks one contact row and merges it over the stored contact.
fn contact_row(
    settings: &Settings,
    cells: &Map<String, Json>,
    existing: Option<Contact>,
    at: DateTime<Utc>,
) -> Result<Contact, String> {
    let id = match cells.get("id") {
        Some(Json::String(id)) if !id.trim().is_empty() => id.trim().to_string(),
        Some(Json::Number(id)) => id.to_string(),
        _ => return Err("`id` is required".to_string()),
    };
    let mut fields = existing.map(|contact| contact.fields).unwrap_or_default();
    let is_new = fields.is_empty();
    let old_stage = fields.get("stage").cloned();
    let old_tags = fields.get("tags").cloned();
    let mut problems = Vec::new();
    let mut invalid: Vec<&str> = Vec::new();
    for (name, value) in cells {
        if name == "id" {
            continue;
        }
        if name.starts_with("__") {
            problems.push(format!(
                "`{name}`: names starting with `__` are kept by journeyc"
            ));
            continue;
        }
        let Some(spec) = contact_spec(settings, name) else {
            let names: Vec<&str> = settings.field_names().chain(["stage", "tags"]).collect();
            let hint = did_you_mean(name, names.iter().copied())
                .unwrap_or_else(|| "add it under `contact:` in journeyc.yaml".to_string());
            problems.push(format!("`{name}` is not a contact field; {hint}"));
            continue;
        };
        match typed(value, &spec, settings, name) {
            Ok(Json::Null) if name == "tags" => {
                fields.insert(name.clone(), Json::Array(Vec::new()));
            }
            Ok(value) => {
                fields.insert(name.clone(), value);
            }
            Err(problem) => {
                problems.push(problem);
                invalid.push(name.as_str());
            }
        }
    }
    if let Some(Json::String(zone)) = fields.get("timezone") {
        if zone.parse::<chrono_tz::Tz>().is_err() {
            problems.push(format!(
                "`timezone`: `{zone}` is not an IANA timezone such as Asia/Shanghai"
            ));
        }
    }
    if let Some(Json::String(address)) = fields.get("email") {
        let plausible = address
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
            && !address.contains(char::is_whitespace);
        if !plausible {
            problems.push(format!("`email`: `{address}` is not an email address"));
        }
    }
    if let (Some(allowed), Some(Json::Array(tags))) = (&settings.tags, fields.get("tags")) {
        for tag in tags.iter().filter_map(Json::as_str) {
            if !allowed.iter().any(|known| known == tag) {
                let hint = did_you_mean(tag, allowed.iter().map(String::as_str))
                    .unwrap_or_else(|| "add it to `tags:` in journeyc.yaml".to_string());
                problems.push(format!("`tags`: `{tag}` is not in the tag list; {hint}"));
            }
        }
    }
    if is_new && !fields.contains_key("tags") {
        fields.insert("tags".into(), Json::Array(Vec::new()));
    }
    if is_new && !fields.contains_key("created_at") {
        fields.insert(
            "created_at".into(),
            Json::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
    }
    for (name, spec) in &settings.contact {
        if !spec.optional
            && !invalid.contains(&name.as_str())
            && fields.get(name).is_none_or(Json::is_null)
        {
            problems.push(format!("`{name}` is required"));
        }
    }
    // Stage and tag changes are entry triggers: remember when they happened.
    let stamp = |fields: &mut Map<String, Json>, key: &str, name: &str| {
        let map = fields
            .entry(key.to_string())
            .or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(map) = map {
            map.insert(
                name.to_string(),
                Json::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
        }
    };
    if let Some(Json::String(stage)) = fields.get("stage").cloned() {
        if old_stage.as_ref().and_then(Json::as_str) != Some(stage.as_str()) {
            stamp(&mut fields, "__stage_changed_at", &stage);
        }
    }
    if let Some(Json::Array(tags)) = fields.get("tags").cloned() {
        let before: Vec<Json> = match old_tags {
            Some(Json::Array(items)) => items,
            _ => Vec::new(),
        };
        for tag in tags
            .iter()
            .filter(|tag| !before.contains(tag))
            .filter_map(Json::as_str)
        {
            stamp(&mut fields, "__tagged_at", tag);
        }
    }
    if problems.is_empty() {
        Ok(Contact { id, fields })
    } else {
        problems.sort();
        problems.dedup();
        Err(problems.join("; "))
    }
}

/// Checks one event row.
fn event_row(settings: &Settings, cells: &Map<String, Json>) -> Result<Event, String> {
    let text = |name: &str| match cells.get(name) {
        Some(Json::String(text)) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Some(Json::Number(number)) => Some(number.to_string()),
        _ => None,
    };
    let id =
        text("id").ok_or("`id` is required (it keeps a re-import from adding the event twice)")?;
    let name = text("name")
        .or_else(|| text("event"))
        .ok_or("`name` is required")?;
    // A provider's unsubscribe, bounce or complaint names an address; the
    // contact is optional for those.
    let contact_id = match text("contact_id") {
        Some(id) => id,
        None if SUPPRESSION_EVENTS.contains(&name.as_str()) && text("address").is_some() => {
            String::new()
        }
        None if SUPPRESSION_EVENTS.contains(&name.as_str()) => {
            return Err(format!("`{name}` needs `contact_id` or `address`"))
        }
        None => return Err("`contact_id` is required".to_string()),
    };
    let at = text("at").ok_or("`at` is required")?;
    let at = datetime(&at, settings)
        .ok_or_else(|| format!("`at`: `{at}` is not a time such as 2026-09-25T10:00:00+08:00"))?;
    let Some(catalog) = settings.event_properties(&name) else {
        let hint = did_you_mean(&name, settings.events.keys().map(String::as_str))
            .unwrap_or_else(|| "add it under `events:` in journeyc.yaml".to_string());
        return Err(format!("unknown event `{name}`; {hint}"));
    };
    let mut given: BTreeMap<String, Json> = BTreeMap::new();
    match cells.get("properties") {
        Some(Json::Object(properties)) => given.extend(properties.clone()),
        Some(Json::Null) | None => {}
        Some(_) => return Err("`properties` must be an object".to_string()),
    }
    // A flat column is a property of the rows that fill it: one CSV can
    // hold events of several kinds, each leaving the others' columns empty.
    for (key, value) in cells {
        if !value.is_null()
            && !["id", "contact_id", "name", "event", "at", "properties"].contains(&key.as_str())
        {
            given.insert(key.clone(), value.clone());
        }
    }
    let mut properties = Map::new();
    let mut problems = Vec::new();
    for (key, value) in &given {
        let Some(spec) = catalog.get(key) else {
            let hint = did_you_mean(key, catalog.keys().map(String::as_str)).unwrap_or_else(|| {
                format!("add it to the properties of `{name}` in journeyc.yaml")
            });
            problems.push(format!("`{key}` is not a property of `{name}`; {hint}"));
            continue;
        };
        match typed(value, spec, settings, key) {
            Ok(value) => {
                properties.insert(key.clone(), value);
            }
            Err(problem) => problems.push(problem),
        }
    }
    for (key, spec) in &catalog {
        if !spec.optional
            && properties.get(key).is_none_or(Json::is_null)
            && !given.contains_key(key)
        {
            problems.push(format!("`{key}` is required for `{name}`"));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Event {
        id,
        contact_id,
        name,
        at: crate::model::Timestamp::from(at),
        seq: 0,
        properties: properties.into(),
    })
}

/// What an unsubscribe, bounce or complaint puts on the suppression list:
/// the address given, else the contact's own on that channel. A soft bounce
/// puts nothing there.
fn suppression(event: &Event, contact: Option<&Contact>) -> Option<Suppression> {
    if !SUPPRESSION_EVENTS.contains(&event.name.as_str()) {
        return None;
    }
    let property = |name: &str| event.properties.get(name).and_then(Json::as_str);
    if event.name == "bounced" && property("type") == Some("soft") {
        return None;
    }
    let channel = if property("channel") == Some("sms") {
        Channel::Sms
    } else {
        Channel::Email
    };
    let field = if channel == Channel::Sms {
        "phone"
    } else {
        "email"
    };
    // A contact without an address on that channel has nothing to
    // suppress; its event is still recorded (journeys exit on it).
    let address = property("address")
        .or_else(|| contact.and_then(|contact| contact.fields.get(field)?.as_str()))
        .filter(|address| !address.trim().is_empty())?;
    let reason = match property("reason") {
        Some(reason) if !reason.trim().is_empty() => format!("{}: {}", event.name, reason.trim()),
        _ => event.name.clone(),
    };
    Some(Suppression {
        address: normalize_address(channel, address),
        channel,
        reason,
        at: event.at,
    })
}

/// Rows read ahead and checked together: a store across a network looks
/// their contacts and events up in one round trip, not one per row.
const CHUNK: usize = 1000;

/// Tells the store which contacts and events the rows of `chunk` name, so
/// it can look them up at once; returns the rows of an events file read
/// as events (in order, one per readable row).
fn prefetch(
    sink: &mut dyn ImportSink,
    kind: ImportKind,
    settings: &Settings,
    chunk: &[Result<Row, ImportError>],
) -> Result<Vec<Result<Event, String>>, StoreError> {
    let mut contacts = Vec::new();
    let mut event_ids = Vec::new();
    let mut events = Vec::new();
    for row in chunk.iter().flatten().filter(|row| row.problem().is_none()) {
        match kind {
            ImportKind::Contacts => contacts.extend(contact_id(&row.cells)),
            ImportKind::Events => {
                let event = event_row(settings, &row.cells);
                if let Ok(event) = &event {
                    if !event.contact_id.is_empty() {
                        contacts.push(event.contact_id.clone());
                    }
                    event_ids.push(event.id.clone());
                }
                events.push(event);
            }
        }
    }
    sink.prefetch(&contacts, &event_ids)?;
    Ok(events)
}

/// The contact a row of a contacts file names, if it names one. A JSON
/// number is an ID too (`{"id": 42}` is `42`): the stored contact it names
/// is updated, not replaced.
fn contact_id(cells: &Map<String, Json>) -> Option<String> {
    match cells.get("id") {
        Some(Json::String(id)) if !id.trim().is_empty() => Some(id.trim().to_string()),
        Some(Json::Number(id)) => Some(id.to_string()),
        _ => None,
    }
}

/// Imports a file into the store.
/// `at` is when the import happens: the time of stage and tag changes it
/// makes (the clock, or `--now` for back-fills and tests).
pub fn import(
    settings: &Settings,
    store: &mut dyn Store,
    kind: ImportKind,
    path: &Path,
    at: DateTime<Utc>,
) -> Result<ImportReport, ImportError> {
    let mut rows = Rows::open(path)?;
    if kind == ImportKind::Contacts {
        if let Some(headers) = rows.headers() {
            // A misspelt column would reject every row: say it once.
            let unknown = headers
                .iter()
                .find(|name| *name != "id" && contact_spec(settings, name).is_none());
            if let Some(name) = unknown {
                let names: Vec<&str> = settings.field_names().chain(["stage", "tags"]).collect();
                let hint = did_you_mean(name, names.iter().copied())
                    .unwrap_or_else(|| "add it under `contact:` in journeyc.yaml".to_string());
                return Err(ImportError::Format {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: format!("column `{name}` is not a contact field; {hint}"),
                });
            }
        }
    }
    let mut report = ImportReport::default();
    let mut failure: Option<ImportError> = None;
    let result = store.import(&mut |sink| {
        report = ImportReport::default();
        let mut chunk: Vec<Result<Row, ImportError>> = Vec::with_capacity(CHUNK);
        loop {
            chunk.clear();
            chunk.extend(std::iter::from_fn(|| rows.next(path)).take(CHUNK));
            if chunk.is_empty() {
                break;
            }
            let mut events = prefetch(sink, kind, settings, &chunk)?.into_iter();
            for row in chunk.drain(..) {
                let row = match row {
                    Ok(row) => row,
                    Err(error) => {
                        // Abandon the transaction: a file that stops being
                        // readable midway imports nothing.
                        failure = Some(error);
                        return Err(StoreError::Abandoned(
                            "the file could not be read to the end",
                        ));
                    }
                };
                if let Some(problem) = row.problem() {
                    report.rejected.push(Rejected {
                        line: row.line,
                        reason: problem.clone(),
                    });
                    continue;
                }
                match kind {
                    ImportKind::Contacts => {
                        let existing = match contact_id(&row.cells) {
                            Some(id) => sink.contact(&id)?,
                            None => None,
                        };
                        match contact_row(settings, &row.cells, existing, at) {
                            Ok(contact) => {
                                let created = sink.put_contact(&contact)?;
                                crate::fault::point("import.row");
                                if created {
                                    report.created += 1;
                                } else {
                                    report.updated += 1;
                                }
                            }
                            Err(reason) => report.rejected.push(Rejected {
                                line: row.line,
                                reason,
                            }),
                        }
                    }
                    ImportKind::Events => match events
                        .next()
                        .unwrap_or_else(|| Err("the row was not read ahead".to_string()))
                    {
                        Ok(event) => {
                            let contact = if event.contact_id.is_empty() {
                                None
                            } else {
                                let contact = sink.contact(&event.contact_id)?;
                                if contact.is_none() {
                                    report.rejected.push(Rejected {
                                        line: row.line,
                                        reason: format!(
                                            "no contact `{}`; import contacts first",
                                            event.contact_id
                                        ),
                                    });
                                    continue;
                                }
                                contact
                            };
                            let suppression = suppression(&event, contact.as_ref());
                            let newly_suppressed = match &suppression {
                                Some(suppression) => sink.suppress(suppression)?,
                                None => false,
                            };
                            if newly_suppressed {
                                report.suppressed += 1;
                            }
                            let created = contact.is_some() && sink.put_event(&event)?;
                            crate::fault::point("import.row");
                            if created {
                                report.created += 1;
                            } else if contact.is_some() || !newly_suppressed {
                                report.duplicates += 1;
                            }
                        }
                        Err(reason) => report.rejected.push(Rejected {
                            line: row.line,
                            reason,
                        }),
                    },
                }
            }
        }
        Ok(())
    });
    if let Some(error) = failure {
        return Err(error);
    }
    result?;
    Ok(report)
}

/// Text from a file as it may reach a terminal or a log: control
/// characters (CR, LF, ESC, ...) written as escapes, never raw.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() {
                character.escape_default().to_string()
            } else {
                character.to_string()
            }
        })
        .collect()
}
