//! Static checks of templates inside `journeyc check`: every message step
//! has its template, every variable exists in the schema or the event
//! catalog, optional fields have fallbacks, marketing email can be
//! unsubscribed from, SMS fit their parts, links have targets.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use minijinja::{ErrorKind, Value};

use super::{sms, MessageKind, Part, Template, TemplateSet};
use crate::analyzer::MessageUse;
use crate::ast::Channel;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::settings::{FieldSpec, FieldType, Settings};
use crate::span::{FileId, SourceMap, Span};

/// Roots a template may name besides `contact` and `event`.
const OTHER_ROOTS: &[&str] = &["journey", "step", "unsubscribe_url", "now"];

pub fn check(
    settings: &Settings,
    set: &TemplateSet,
    uses: &[MessageUse],
    sources: &SourceMap,
) -> Vec<Diagnostic> {
    let mut checker = Checker {
        settings,
        set,
        sources,
        diagnostics: Vec::new(),
        reported: HashSet::new(),
    };
    for template in set.templates.values() {
        checker.template(template);
    }
    for message_use in uses {
        checker.message_use(message_use, sources);
    }
    checker.diagnostics
}

struct Checker<'a> {
    settings: &'a Settings,
    set: &'a TemplateSet,
    sources: &'a SourceMap,
    diagnostics: Vec<Diagnostic>,
    /// (file, offset, code) already reported: a template used by several
    /// steps is reported once.
    reported: HashSet<(FileId, u32, Code)>,
}

impl Checker<'_> {
    fn report(&mut self, diagnostic: Diagnostic) {
        if self
            .reported
            .insert((diagnostic.span.file, diagnostic.span.start, diagnostic.code))
        {
            self.diagnostics.push(diagnostic);
        }
    }

    /// Checks that hold for the template whoever uses it.
    fn template(&mut self, template: &Template) {
        for (key, value) in [("from", &template.from), ("reply_to", &template.reply_to)] {
            let Some(value) = value else { continue };
            if let Err(reason) = crate::compose::mime::check_mailbox(value) {
                let text = &self.sources.get(template.file).text;
                let start = text
                    .match_indices(&format!("{key}:"))
                    .find(|(at, _)| *at == 0 || text[..*at].ends_with('\n'))
                    .map_or(0, |(at, _)| at);
                let end = text[start..]
                    .find('\n')
                    .map_or(text.len(), |length| start + length);
                self.report(
                    Diagnostic::new(
                        Code::TemplateSyntax,
                        Span::new(template.file, start, end),
                        format!("`{key}: {value}` is not an email address: {reason}"),
                    )
                    .label("in the front matter")
                    .help("write `Name <address@example.com>` or `address@example.com`"),
                );
            }
        }
        if template.channel == Channel::Email {
            let subject = template
                .part("subject")
                .filter(|part| !part.source.trim().is_empty());
            if subject.is_none() {
                self.report(
                    Diagnostic::new(
                        Code::MissingSubject,
                        Span::new(template.file, 0, 3),
                        "this email has no subject",
                    )
                    .label("no `subject:` in the front matter")
                    .help("add `subject: \"...\"` between the `---` lines"),
                );
            }
            if template.kind == MessageKind::Marketing {
                for part in template
                    .parts
                    .iter()
                    .filter(|part| matches!(part.name, "text" | "html"))
                {
                    // A part that does not compile was reported already.
                    let Some(variables) = self.variables(part) else {
                        continue;
                    };
                    if !variables
                        .iter()
                        .any(|variable| variable == "unsubscribe_url")
                    {
                        let help = if part.name == "html" {
                            "add `<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>`, or set `kind: transactional` for receipts and tickets"
                        } else {
                            "add a line with `{{ unsubscribe_url }}`, or set `kind: transactional` for receipts and tickets"
                        };
                        self.report(
                            Diagnostic::new(
                                Code::MissingUnsubscribe,
                                Span::new(
                                    template.file,
                                    part.at(0),
                                    part.at(first_line_length(&part.source)),
                                ),
                                format!(
                                    "marketing email without an unsubscribe link in its {} part",
                                    part.name
                                ),
                            )
                            .label("no `unsubscribe_url` in this part")
                            .help(help),
                        );
                    }
                }
            }
            if let Some(html) = template.part("html") {
                for at in empty_hrefs(&html.source) {
                    let start = html.at(at);
                    self.report(
                        Diagnostic::new(Code::EmptyHref, Span::new(template.file, start, start + 4), "a link with an empty `href`")
                            .label("goes nowhere")
                            .help("give the link its address, for example `href=\"{{ unsubscribe_url }}\"`"),
                    );
                }
            }
        }
        for part in &template.parts {
            self.optional_fields(template.file, part);
        }
    }

    fn message_use(&mut self, message_use: &MessageUse, sources: &SourceMap) {
        let message = &message_use.message;
        let inline_task = message.channel == Channel::Task && !message.task_template;
        if inline_task {
            let span = message.template.span;
            let quoted = sources.slice(span);
            let part = Part::new(
                "text",
                message.template.node.clone(),
                span.start as usize + usize::from(quoted.starts_with('"')),
            );
            if let Err(error) = self.set.env.template_from_str(&part.compiled) {
                self.report(super::template_error(span.file, &part, &error));
                return;
            }
            self.variables_in(span.file, &part, message_use);
            self.optional_fields(span.file, &part);
            return;
        }
        if self
            .set
            .broken
            .contains(&(message.channel, message.template.node.clone()))
        {
            return;
        }
        let Some(template) = self.set.get(message.channel, &message.template.node) else {
            let extension = super::extension(message.channel);
            let path = self
                .set
                .dir
                .join(format!("{}.{extension}", message.template.node));
            let help = did_you_mean(&message.template.node, self.set.names(message.channel))
                .unwrap_or_else(|| format!("create `{}`", path.display()));
            self.report(
                Diagnostic::new(
                    Code::MissingTemplate,
                    message.template.span,
                    format!(
                        "no {} template `{}`",
                        message.channel, message.template.node
                    ),
                )
                .label(format!("`{}` does not exist", path.display()))
                .help(help),
            );
            return;
        };
        for part in &template.parts {
            self.variables_in(template.file, part, message_use);
        }
        let sample = sample_context(self.settings, message_use);
        if template.channel == Channel::Sms {
            self.sms_length(template, &sample);
        }
        self.sample_render(template, &sample);
    }

    /// The variables a part reads; `None` when it did not compile.
    fn variables(&self, part: &Part) -> Option<Vec<String>> {
        let compiled = self.set.env.get_template(&part.key).ok()?;
        let mut names: Vec<String> = compiled.undeclared_variables(true).into_iter().collect();
        names.sort();
        Some(names)
    }

    /// Every variable of a part must exist where the message is sent.
    fn variables_in(&mut self, file: FileId, part: &Part, message_use: &MessageUse) {
        let names = if part.key.is_empty() {
            self.set
                .env
                .template_from_str(&part.compiled)
                .map(|compiled| {
                    let mut names: Vec<String> =
                        compiled.undeclared_variables(true).into_iter().collect();
                    names.sort();
                    names
                })
                .unwrap_or_default()
        } else {
            self.variables(part).unwrap_or_default()
        };
        for name in names {
            if let Some(problem) = self.unknown_variable(&name, message_use) {
                let found = find_name(&part.source, &name);
                let at = found.map_or(part.at(0), |offset| part.at(offset));
                let end = found.map_or(at + name.len(), |offset| part.at(offset + name.len()));
                self.report(
                    Diagnostic::new(
                        Code::UnknownVariable,
                        Span::new(file, at, end.max(at)),
                        problem.0,
                    )
                    .label(format!("in the {} of this template", part.name))
                    .help(problem.1),
                );
            }
        }
    }

    /// What is wrong with a variable name, as (message, help).
    fn unknown_variable(&self, name: &str, message_use: &MessageUse) -> Option<(String, String)> {
        let mut parts = name.split('.');
        let root = parts.next().unwrap_or("");
        let attribute = parts.next();
        match (root, attribute) {
            ("contact", None) => None,
            ("contact", Some(field)) => {
                if self.settings.field(field).is_some() || field == "stage" || field == "tags" {
                    return None;
                }
                let help = did_you_mean(field, self.settings.field_names()).map_or_else(
                    || format!("add `{field}` under `contact:` in journeyc.yaml"),
                    |hint| hint.replace("did you mean `", "did you mean `contact."),
                );
                Some((format!("unknown contact field `{field}`"), help))
            }
            ("event", attribute) => {
                let Some(event) = &message_use.event else {
                    return Some((
                        format!("`{name}`: no event is known where journey `{}` sends this", message_use.journey),
                        "`event.` works in journeys entered `on event` and in the `got` branch of a wait for an event".to_string(),
                    ));
                };
                let properties = self.settings.event_properties(event).unwrap_or_default();
                match attribute {
                    None => None,
                    Some(property) if properties.contains_key(property) => None,
                    Some(property) => {
                        let help = did_you_mean(property, properties.keys().map(String::as_str)).map_or_else(|| format!("add `{property}` to the properties of `{event}` in journeyc.yaml"), |hint| hint.replace("did you mean `", "did you mean `event."));
                        Some((
                            format!("event `{event}` has no property `{property}`"),
                            help,
                        ))
                    }
                }
            }
            ("journey", None | Some("name" | "title")) | ("step", None | Some("id")) => None,
            ("journey" | "step", Some(other)) => Some((
                format!("unknown variable `{name}`"),
                format!(
                    "`{root}` has {}; not `{other}`",
                    if root == "journey" {
                        "`name` and `title`"
                    } else {
                        "`id`"
                    }
                ),
            )),
            (root, _) if OTHER_ROOTS.contains(&root) => None,
            // The environment's own functions: `range`, `dict`, `namespace`.
            (root, _) if self.set.env.globals().any(|(name, _)| name == root) => None,
            (root, _) => {
                let help = if self.settings.field(root).is_some() {
                    format!("did you mean `contact.{root}`?")
                } else {
                    "templates see `contact`, `event`, `journey`, `step`, `unsubscribe_url` and `now`".to_string()
                };
                Some((format!("unknown variable `{name}`"), help))
            }
        }
    }

    /// An optional field must have a fallback: `| default(...)`, or an
    /// enclosing `{% if %}` that tests it.
    fn optional_fields(&mut self, file: FileId, part: &Part) {
        let optional: Vec<&str> = self
            .settings
            .contact
            .iter()
            .filter(|(_, spec)| spec.optional)
            .map(|(name, _)| name.as_str())
            .chain(
                crate::settings::BUILTIN_FIELDS
                    .iter()
                    .filter(|(_, _, optional)| *optional)
                    .map(|(name, _, _)| *name),
            )
            .collect();
        for (offset, field) in unguarded_optional_uses(&part.source, &optional) {
            let start = part.at(offset);
            let length = "contact.".len() + field.len();
            self.report(
                Diagnostic::new(Code::OptionalWithoutFallback, Span::new(file, start, start + length), format!("`contact.{field}` may be empty"))
                    .label("optional field without a fallback")
                    .help(format!(
                        "write `{{{{ contact.{field} | default(\"...\") }}}}`, or put it inside `{{% if contact.{field} %}}...{{% endif %}}`"
                    )),
            );
        }
    }

    fn sms_length(&mut self, template: &Template, context: &Value) {
        let Some(body) = template.part("body") else {
            return;
        };
        let limit = self
            .settings
            .channels
            .sms
            .as_ref()
            .map_or(1, |sms| sms.segment_limit) as usize;

        let Ok(text) = self.set.render_part(body, context) else {
            return;
        };
        let length = sms::measure(text.trim());
        if length.segments > limit {
            let start = body.at(body.source.len() - body.source.trim_start().len());
            self.report(
                Diagnostic::new(
                    Code::SmsTooLong,
                    Span::new(template.file, start, start + first_line_length(body.source.trim_start())),
                    format!(
                        "this SMS takes {} parts ({} {} characters with sample values); the limit is {limit}",
                        length.segments,
                        length.characters,
                        length.encoding.as_str()
                    ),
                )
                .label("too long")
                .help(match length.encoding {
                    sms::Encoding::Ucs2 => "UCS-2 text (Chinese, emoji) fits 70 characters in one part and 67 per part when split: shorten it, or raise `segment_limit`",
                    sms::Encoding::Gsm7 => "GSM-7 text fits 160 characters in one part and 153 per part when split: shorten it, or raise `segment_limit`",
                }),
            );
        }
    }

    /// Renders every part with sample values: a filter used on the wrong
    /// kind of value fails here rather than on the night of sending.
    fn sample_render(&mut self, template: &Template, context: &Value) {
        for part in &template.parts {
            // A part that does not compile was reported already.
            if self.set.env.get_template(&part.key).is_err() {
                continue;
            }
            if let Err(error) = self.set.render_part(part, context) {
                // Whatever fails for the sample contact fails when sent;
                // only a missing value is the variable checks' business
                // (a sample cannot hold every optional field).
                let relevant = error.kind() != ErrorKind::UndefinedError;
                if relevant {
                    let mut diagnostic = super::template_error(template.file, part, &error);
                    diagnostic.message =
                        format!("{} (rendering with sample values)", diagnostic.message);
                    self.report(diagnostic);
                }
            }
        }
    }
}

fn first_line_length(text: &str) -> usize {
    text.find('\n').unwrap_or(text.len()).max(1).min(text.len())
}

/// Offsets of `href` attributes whose value is empty.
fn empty_hrefs(html: &str) -> Vec<usize> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(position) = lower[search..].find("href") {
        let at = search + position;
        search = at + 4;
        let rest = lower[search..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let empty = ["\"", "'"].iter().any(|quote| {
            rest.strip_prefix(quote).is_some_and(|value| {
                value
                    .split(quote)
                    .next()
                    .is_some_and(|inside| inside.trim().is_empty())
            })
        });
        if empty {
            found.push(at);
        }
    }
    found
}

/// The first place `name` stands as a whole name inside a tag.
fn find_name(source: &str, name: &str) -> Option<usize> {
    let is_name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let mut search = 0;
    while let Some(position) = source[search..].find(name) {
        let at = search + position;
        let before = source[..at].chars().next_back();
        let after = source[at + name.len()..].chars().next();
        if !before.is_some_and(is_name_char)
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            return Some(at);
        }
        search = at + name.len();
    }
    None
}

/// Tags of a template: (offset of the tag's content, content, is a
/// statement `{% %}`).
fn tags(source: &str) -> Vec<(usize, &str, bool)> {
    let mut tags = Vec::new();
    let mut search = 0;
    while let Some(position) = source[search..].find('{') {
        let at = search + position;
        let (close, statement) = match source[at + 1..].chars().next() {
            Some('{') => ("}}", false),
            Some('%') => ("%}", true),
            Some('#') => ("#}", false),
            _ => {
                search = at + 1;
                continue;
            }
        };
        let Some(length) = source[at + 2..].find(close) else {
            break;
        };
        let content = &source[at + 2..at + 2 + length];
        if !source[at + 1..].starts_with('#') {
            tags.push((at + 2, content, statement));
        }
        search = at + 2 + length + 2;
    }
    tags
}

/// Uses of optional `contact.x` fields with neither a `default` filter nor
/// an enclosing `if` (or `elif`, or the `else` of a negated test) that
/// makes sure they are set.
fn unguarded_optional_uses<'f>(source: &str, optional: &[&'f str]) -> Vec<(usize, &'f str)> {
    let mut found = Vec::new();
    let mut frames: Vec<IfFrame> = Vec::new();
    for (offset, content, statement) in tags(source) {
        let words: Vec<&str> = content
            .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
            .splitn(2, char::is_whitespace)
            .collect();
        let keyword = words.first().copied().unwrap_or("");
        let condition = words.get(1).copied().unwrap_or("");
        if statement {
            match keyword {
                "if" => {
                    frames.push(IfFrame {
                        earlier_false: BTreeSet::new(),
                        current: set_when(condition, true),
                        current_false: set_when(condition, false),
                    });
                    continue;
                }
                "elif" => {
                    if let Some(frame) = frames.last_mut() {
                        let previous = std::mem::take(&mut frame.current_false);
                        frame.earlier_false.extend(previous);
                        frame.current = set_when(condition, true);
                        frame.current_false = set_when(condition, false);
                    }
                    continue;
                }
                "else" => {
                    if let Some(frame) = frames.last_mut() {
                        let previous = std::mem::take(&mut frame.current_false);
                        frame.earlier_false.extend(previous);
                        frame.current.clear();
                    }
                    continue;
                }
                "endif" => {
                    frames.pop();
                    continue;
                }
                _ => {}
            }
        }
        for field in optional {
            let name = format!("contact.{field}");
            let mut search = 0;
            while let Some(position) = find_name(&content[search..], &name) {
                let at = search + position;
                search = at + name.len();
                let guarded_by_if = frames.iter().any(|frame| {
                    frame.current.contains(&name) || frame.earlier_false.contains(&name)
                });
                let after = content[search..].trim_start();
                let has_default =
                    after
                        .strip_prefix('|')
                        .map(str::trim_start)
                        .is_some_and(|filter| {
                            filter.starts_with("default")
                                || filter.starts_with("d(")
                                || filter.starts_with("d ")
                        })
                        || after.starts_with("or ")
                        || after.starts_with("is defined")
                        || after.starts_with("is none")
                        || after.starts_with("is not none");
                if !guarded_by_if && !has_default {
                    found.push((offset + at, *field));
                }
            }
        }
    }
    found
}

/// One `{% if %}` being read: what its branches know to be set.
struct IfFrame {
    /// Set because an earlier branch's condition was false.
    earlier_false: BTreeSet<String>,
    /// Set because the current branch's condition is true.
    current: BTreeSet<String>,
    /// Set if the current branch's condition is false (for what follows).
    current_false: BTreeSet<String>,
}

/// The `contact.x` names a condition proves set (truthy) when it is
/// `truth`: `contact.x`, `contact.x is defined`, `not contact.x` when
/// false, `a and b` when true, `a or b` when false, and so on. Anything it
/// cannot read proves nothing.
fn set_when(condition: &str, truth: bool) -> BTreeSet<String> {
    let condition = condition.trim();
    let condition = strip_parens(condition);
    if let Some(parts) = split_top(condition, " or ") {
        let sets = parts.iter().map(|part| set_when(part, truth));
        return if truth {
            intersect(sets)
        } else {
            sets.flatten().collect()
        };
    }
    if let Some(parts) = split_top(condition, " and ") {
        let sets = parts.iter().map(|part| set_when(part, truth));
        return if truth {
            sets.flatten().collect()
        } else {
            intersect(sets)
        };
    }
    if let Some(inner) = condition.strip_prefix("not ") {
        return set_when(inner, !truth);
    }
    let (path, positive) = if let Some(path) = condition
        .strip_suffix(" is defined")
        .or_else(|| condition.strip_suffix(" is not none"))
        .or_else(|| condition.strip_suffix(" is not undefined"))
    {
        (path.trim(), true)
    } else if let Some(path) = condition
        .strip_suffix(" is undefined")
        .or_else(|| condition.strip_suffix(" is none"))
        .or_else(|| condition.strip_suffix(" is not defined"))
    {
        (path.trim(), false)
    } else {
        (condition, true)
    };
    let is_path = path.starts_with("contact.")
        && path["contact.".len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_path && positive == truth {
        BTreeSet::from([path.to_string()])
    } else {
        BTreeSet::new()
    }
}

fn intersect(mut sets: impl Iterator<Item = BTreeSet<String>>) -> BTreeSet<String> {
    let Some(first) = sets.next() else {
        return BTreeSet::new();
    };
    sets.fold(first, |known, next| {
        known.intersection(&next).cloned().collect()
    })
}

/// `(x)` without its outer parentheses, when they enclose all of it.
fn strip_parens(text: &str) -> &str {
    let mut text = text.trim();
    while text.starts_with('(') && text.ends_with(')') {
        let inner = &text[1..text.len() - 1];
        if split_depth_ok(inner) {
            text = inner.trim();
        } else {
            break;
        }
    }
    text
}

/// Whether parentheses balance without going below zero.
fn split_depth_ok(text: &str) -> bool {
    let mut depth = 0_i32;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// `text` split on `separator` outside parentheses and quotes; `None` when
/// it does not occur there.
fn split_top<'t>(text: &'t str, separator: &str) -> Option<Vec<&'t str>> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut index = 0;
    let bytes = text.as_bytes();
    while index < text.len() {
        let c = char::from(bytes[index]);
        match quote {
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '(' => depth += 1,
            None if c == ')' => depth -= 1,
            // Compared as bytes: `index` may be inside a character (the
            // separators are ASCII, so a match never is).
            None if depth == 0 && bytes[index..].starts_with(separator.as_bytes()) => {
                parts.push(&text[start..index]);
                index += separator.len();
                start = index;
                continue;
            }
            None => {}
        }
        index += 1;
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// Values a template is rendered with when checking it: every field and
/// property filled, names as long as typical ones.
pub fn sample_context(settings: &Settings, message_use: &MessageUse) -> Value {
    let chinese = settings
        .locale
        .as_deref()
        .is_some_and(|locale| locale.to_ascii_lowercase().starts_with("zh"));
    let sample = |name: &str, spec: &FieldSpec| -> serde_json::Value {
        match &spec.field_type {
            FieldType::String if name.contains("email") => "zhang.xiaoming@example.com".into(),
            FieldType::String if name.contains("phone") => "+8613800138000".into(),
            FieldType::String if name == "timezone" => settings.timezone.0.name().into(),
            FieldType::String if chinese => "张小明".into(),
            FieldType::String => "Alexandra".into(),
            FieldType::Number => serde_json::json!(12_800),
            FieldType::Bool => true.into(),
            FieldType::Date => "2026-09-25".into(),
            FieldType::DateTime => "2026-09-25T10:00:00+08:00".into(),
            FieldType::Enum(values) => values.first().cloned().unwrap_or_default().into(),
            FieldType::List => serde_json::json!([if chinese { "样例" } else { "sample" }]),
        }
    };
    let mut contact: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for name in settings.field_names() {
        if let Some(spec) = settings.field(name) {
            contact.insert(name.to_string(), sample(name, &spec));
        }
    }
    contact.insert("id".into(), "c-000123".into());
    contact.insert("tags".into(), serde_json::json!([]));
    let event: BTreeMap<String, serde_json::Value> = message_use
        .event
        .as_ref()
        .and_then(|event| settings.event_properties(event))
        .unwrap_or_default()
        .iter()
        .map(|(name, spec)| (name.clone(), sample(name, spec)))
        .collect();
    super::context(
        message_use,
        "step",
        &contact,
        &event,
        "2026-09-25T10:00:00+08:00",
        Some("https://example.com/unsubscribe?token=Yy0wMDAxMjM.ZW1haWw.XHqZ5c7a0e3f9b1d2a4c6e8f0a1b3c5d7e9fAbCdEfG"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the mutated-templates campaign: a condition with Chinese
    /// text before `and` made the splitter slice inside a character.
    #[test]
    fn conditions_with_chinese_text_are_split_on_characters() {
        assert_eq!(
            split_top("展！ and contact.city", " and "),
            Some(vec!["展！", "contact.city"])
        );
        let source = "{% if 展 and contact.city %}{{ contact.city }}{% endif %}";
        assert!(unguarded_optional_uses(source, &["city"]).is_empty());
    }

    #[test]
    fn finds_unguarded_optional_fields() {
        let source = "Hi {{ contact.company }}! {{ contact.company | default(\"you\") }}\n{% if contact.company %}{{ contact.company }}{% else %}{{ contact.company }}{% endif %}";
        let found = unguarded_optional_uses(source, &["company"]);
        let offsets: Vec<usize> = found.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, vec![6, source.rfind("contact.company").unwrap()]);
    }

    #[test]
    fn a_negated_test_guards_only_its_else() {
        let source = "{% if not contact.city %}City: {{ contact.city }}{% else %}{{ contact.city }}{% endif %}";
        let found = unguarded_optional_uses(source, &["city"]);
        assert_eq!(
            found,
            vec![(source.find("contact.city }}").unwrap(), "city")]
        );
        // Both sides of `and` are set; `or` proves neither.
        let both = "{% if contact.city and contact.company %}{{ contact.city }}{{ contact.company }}{% endif %}";
        assert!(unguarded_optional_uses(both, &["city", "company"]).is_empty());
        let either = "{% if contact.city or contact.company %}{{ contact.city }}{% endif %}";
        assert_eq!(unguarded_optional_uses(either, &["city"]).len(), 1);
        let elif = "{% if not contact.city %}-{% elif contact.company %}{{ contact.city }}{{ contact.company }}{% endif %}";
        assert!(unguarded_optional_uses(elif, &["city", "company"]).is_empty());
    }

    #[test]
    fn finds_empty_links() {
        assert_eq!(
            empty_hrefs("<a href=\"\">x</a> <a HREF = ' '>y</a> <a href=\"{{ u }}\">z</a>"),
            vec![3, 20]
        );
    }
}
