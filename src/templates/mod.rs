//! Message templates: loading the files under `templates/`, the `minijinja`
//! environment they render in, and their static checks (`check.rs`).
//!
//! An email template is YAML front matter (kind, subject, preheader, from,
//! `reply_to`) followed by `{% block text %}` and `{% block html %}`; each
//! part is registered as its own minijinja template so the HTML part alone
//! is auto-escaped, and every error maps back to the file's line and column.

pub mod check;
mod filters;
pub mod sms;

use std::collections::BTreeMap;
use std::path::PathBuf;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Deserialize;

use crate::ast::Channel;
use crate::diagnostic::{Code, Diagnostic};
use crate::settings::Settings;
use crate::span::{FileId, SourceMap, Span};

/// Marketing messages carry an unsubscribe link and count against caps;
/// transactional ones (receipts, tickets) do neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Marketing,
    Transactional,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailFrontMatter {
    #[serde(default)]
    kind: MessageKind,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    preheader: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtherFrontMatter {
    #[serde(default)]
    kind: MessageKind,
}

/// One renderable piece of a template file.
#[derive(Clone, Debug)]
pub struct Part {
    /// `subject`, `preheader`, `text`, `html` or `body`.
    pub name: &'static str,
    /// The text as written (a YAML value as YAML reads it).
    pub source: String,
    /// Byte offset of `source` in the template file.
    pub offset: usize,
    /// The name it is registered under in the environment.
    pub key: String,
    /// Where each byte of `source` is in the file, when that is not simply
    /// `offset` plus its index (a folded or escaped YAML value).
    pub positions: Option<Vec<usize>>,
    /// What minijinja compiles: `source` with line breaks after inline
    /// block tags kept (see [`keep_line_breaks`]).
    pub compiled: String,
    /// Where `compiled` has a byte `source` has not.
    inserted: Vec<usize>,
}

impl Part {
    pub fn new(name: &'static str, source: String, offset: usize) -> Part {
        let (compiled, inserted) = keep_line_breaks(&source);
        Part {
            name,
            source,
            offset,
            key: String::new(),
            positions: None,
            compiled,
            inserted,
        }
    }

    /// The file offset of byte `index` of `source`.
    pub fn at(&self, index: usize) -> usize {
        match &self.positions {
            Some(positions) => positions
                .get(index)
                .or(positions.last())
                .copied()
                .unwrap_or(self.offset),
            None => self.offset + index,
        }
    }

    /// The file offset of byte `index` of `compiled` (where minijinja
    /// reports an error).
    pub fn at_compiled(&self, index: usize) -> usize {
        let shift = self.inserted.iter().filter(|at| **at < index).count();
        self.at(index.saturating_sub(shift))
    }
}

/// Block tags that hold no expression: the space before their `%}` can
/// become the `+` that keeps the line break after them.
const BARE_TAGS: &[&str] = &[
    "else",
    "endif",
    "endfor",
    "endblock",
    "endset",
    "endwith",
    "endmacro",
    "endcall",
    "endfilter",
    "endautoescape",
    "break",
    "continue",
];

/// Block tags on a line of their own leave no blank line behind
/// (`trim_blocks`); a block tag that ends a line of text (`Hi{% if x %} {{
/// x }}{% endif %}`) keeps the line break after it, which `trim_blocks`
/// alone would eat. Such a tag gets minijinja's `+%}`; returns the text and
/// where a byte was inserted (a bare tag's space is replaced instead, so
/// nothing moves).
pub fn keep_line_breaks(source: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(source.len() + 8);
    let mut inserted = Vec::new();
    let mut offset = 0;
    let mut raw = false;
    for line in source.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        if body.contains("{% raw") || body.contains("{%- raw") {
            raw = true;
        }
        if raw {
            if body.contains("endraw") {
                raw = false;
            }
            out.push_str(line);
            continue;
        }
        let trimmed = body.trim_end();
        let ends_with_tag = trimmed.ends_with("%}")
            && !trimmed.ends_with("-%}")
            && !trimmed.ends_with("+%}")
            && line.len() > body.len();
        let standalone = strip_tags(body).trim().is_empty();
        // `{%}` is no tag: its `%}` starts inside the `{%`.
        let Some(tag_start) = trimmed
            .rfind("{%")
            .filter(|&at| ends_with_tag && !standalone && at + 4 <= trimmed.len())
        else {
            out.push_str(line);
            continue;
        };
        let close = trimmed.len() - 2;
        let inner = trimmed[tag_start + 2..close].trim_matches(['-', '+', ' ', '\t']);
        if BARE_TAGS.contains(&inner) && trimmed[..close].ends_with(' ') {
            out.push_str(&line[..close - 1]);
            out.push('+');
            out.push_str(&line[close..]);
        } else {
            out.push_str(&line[..close]);
            out.push('+');
            inserted.push(start + close);
            out.push_str(&line[close..]);
        }
    }
    (out, inserted)
}

/// A line without its `{% ... %}` tags and `{# ... #}` comments.
fn strip_tags(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    loop {
        let next = [rest.find("{%"), rest.find("{#")]
            .into_iter()
            .flatten()
            .min();
        let Some(open) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..open]);
        let closing = if rest[open..].starts_with("{%") {
            "%}"
        } else {
            "#}"
        };
        match rest[open..].find(closing) {
            Some(length) => rest = &rest[open + length + 2..],
            None => return out,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    pub channel: Channel,
    pub file: FileId,
    pub kind: MessageKind,
    pub from: Option<String>,
    pub reply_to: Option<String>,
    pub parts: Vec<Part>,
    /// The file and its text, so render errors at delivery name the
    /// file's own line.
    pub path: PathBuf,
    pub source: String,
}

impl Template {
    /// `path:line:column` of a render error in `part`.
    pub fn locate(&self, part: &Part, error: &minijinja::Error) -> String {
        let span = template_error(self.file, part, error).span;
        let (line, column) = crate::files::line_column(&self.source, span.start as usize);
        format!("{}:{line}:{column}", self.path.display())
    }

    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|part| part.name == name)
    }
}

/// The file extension of each channel's templates.
pub fn extension(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Task => "task",
        Channel::Webhook => "webhook",
    }
}

fn channel_of_extension(extension: &str) -> Option<Channel> {
    Channel::ALL
        .into_iter()
        .find(|channel| self::extension(*channel) == extension)
}

/// Every template of a project, compiled into one environment.
pub struct TemplateSet {
    pub dir: PathBuf,
    pub templates: BTreeMap<(Channel, String), Template>,
    /// Files that exist but could not be read as templates (reported).
    pub broken: std::collections::HashSet<(Channel, String)>,
    pub env: Environment<'static>,
}

impl TemplateSet {
    pub fn get(&self, channel: Channel, name: &str) -> Option<&Template> {
        self.templates.get(&(channel, name.to_string()))
    }

    pub fn names(&self, channel: Channel) -> impl Iterator<Item = &str> {
        self.templates
            .keys()
            .filter(move |(kind, _)| *kind == channel)
            .map(|(_, name)| name.as_str())
    }

    /// Renders one part with a context; the error names the template.
    pub fn render_part(&self, part: &Part, context: &Value) -> Result<String, minijinja::Error> {
        render_bounded(&self.env.get_template(&part.key)?, context.clone())
    }
}

/// What a template sees when it renders a step: `contact`, `event`,
/// `journey`, `step`, `now` and, when there is one, `unsubscribe_url`.
/// The link is journeyc's own (URL-safe characters only), so HTML gets it
/// unescaped.
pub fn context(
    message_use: &crate::analyzer::MessageUse,
    step_id: &str,
    contact: &impl serde::Serialize,
    event: &impl serde::Serialize,
    now: &str,
    unsubscribe_url: Option<&str>,
) -> Value {
    let base = serde_json::json!({
        "contact": contact,
        "event": event,
        "journey": {"name": message_use.journey, "title": message_use.title.clone().unwrap_or_default()},
        "step": {"id": step_id},
        "now": now,
    });
    let base = Value::from(minijinja::value::Serde(&base));
    match unsubscribe_url {
        Some(url) => {
            minijinja::context! { unsubscribe_url => Value::from_safe_string(url.to_string()), ..base }
        }
        None => base,
    }
}

/// The environment every template renders in: strict about undefined
/// names, HTML-escaping only the `html` parts, with journeyc's filters.
/// How many instructions one rendering may take: a loop a template runs
/// without end stops here with an error instead of holding up the night.
/// The shipped templates take a few hundred.
pub const FUEL: u64 = 1_000_000;

/// How much text one rendering may write (1 MiB): more is no message a
/// person reads, and the night must not run out of memory writing it.
pub const MAX_OUTPUT: usize = 1 << 20;

/// Renders with [`MAX_OUTPUT`] as the bound on what it writes (the
/// environment's fuel bounds the time).
pub fn render_bounded(
    template: &minijinja::Template<'_, '_>,
    context: Value,
) -> Result<String, minijinja::Error> {
    struct Bounded(Vec<u8>);
    impl std::io::Write for Bounded {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.0.len() + bytes.len() > MAX_OUTPUT {
                return Err(std::io::Error::other("output limit"));
            }
            self.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Bounded(Vec::new());
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.0).map_err(|_| {
            minijinja::Error::new(
                minijinja::ErrorKind::BadSerialization,
                "the output is not UTF-8",
            )
        }),
        Err(error) if error.kind() == minijinja::ErrorKind::WriteFailure => {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("the template writes more than {} KiB", MAX_OUTPUT / 1024),
            ))
        }
        Err(error) => Err(error),
    }
}

pub fn environment(settings: &Settings) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // Block tags on their own lines leave no blank lines behind.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|name| {
        if name.ends_with("#html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    filters::register(
        &mut env,
        settings.timezone.0,
        settings.locale.clone().unwrap_or_default(),
    );
    env
}

/// Loads every template file under the project's templates folder.
/// Problems in the files are returned as diagnostics; an unreadable folder
/// is an I/O error.
pub fn load(
    settings: &Settings,
    boundary: &crate::files::Boundary,
    sources: &mut SourceMap,
) -> Result<(TemplateSet, Vec<Diagnostic>), std::io::Error> {
    let dir = settings.templates_dir();
    let mut set = TemplateSet {
        dir: dir.clone(),
        templates: BTreeMap::new(),
        broken: std::collections::HashSet::new(),
        env: environment(settings),
    };
    let mut diagnostics = Vec::new();
    if !dir.is_dir() {
        return Ok((set, diagnostics));
    }
    let files = match boundary.walk(&dir, &|path, _| {
        path.extension()
            .and_then(|extension| extension.to_str())
            .and_then(channel_of_extension)
            .is_some()
    }) {
        Ok((files, problems)) => {
            diagnostics.extend(
                problems
                    .iter()
                    .map(|problem| crate::project::file_diagnostic(sources, problem)),
            );
            files
        }
        Err(crate::files::FileProblem::Io { error, .. }) => return Err(error),
        Err(problem) => {
            diagnostics.push(crate::project::file_diagnostic(sources, &problem));
            return Ok((set, diagnostics));
        }
    };
    for path in files {
        let Some(channel) = path
            .extension()
            .and_then(|extension| extension.to_str())
            .and_then(channel_of_extension)
        else {
            continue;
        };
        let relative = path.strip_prefix(&dir).unwrap_or(&path).with_extension("");
        let name = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let text = match boundary.read(&path) {
            Ok(text) => text,
            Err(crate::files::FileProblem::Io { error, .. }) => return Err(error),
            Err(problem) => {
                diagnostics.push(crate::project::file_diagnostic(sources, &problem));
                set.broken.insert((channel, name));
                continue;
            }
        };
        let file = sources.add(path.clone(), text);
        match parse_file(&name, channel, file, &sources.get(file).text) {
            Ok(mut template) => {
                template.path.clone_from(&path);
                for part in &template.parts {
                    if let Err(error) = set
                        .env
                        .add_template_owned(part.key.clone(), part.compiled.clone())
                    {
                        diagnostics.push(template_error(file, part, &error));
                    }
                }
                set.templates.insert((channel, name), template);
            }
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                set.broken.insert((channel, name));
            }
        }
    }
    Ok((set, diagnostics))
}

/// YAML nested deeper than [`crate::files::MAX_YAML_DEPTH`], at `at`.
pub fn too_deep_yaml(file: FileId, at: usize, what: &str) -> Diagnostic {
    Diagnostic::new(
        Code::TooDeep,
        Span::new(file, at, at + 1),
        format!(
            "{what} nests deeper than {} levels",
            crate::files::MAX_YAML_DEPTH
        ),
    )
    .label("too deep")
    .help("flatten the YAML")
}

/// A minijinja error in a part, at its place in the file.
pub fn template_error(file: FileId, part: &Part, error: &minijinja::Error) -> Diagnostic {
    let (start, end) = match error.range() {
        Some(range) => (
            part.at_compiled(range.start),
            part.at_compiled(range.end.max(range.start + 1)),
        ),
        None => {
            let line_offset: usize = part
                .source
                .split_inclusive('\n')
                .take(error.line().unwrap_or(1).saturating_sub(1))
                .map(str::len)
                .sum();
            (part.at(line_offset), part.at(line_offset) + 1)
        }
    };
    let detail = error
        .detail()
        .map_or_else(|| error.kind().to_string(), ToString::to_string);
    Diagnostic::new(Code::TemplateSyntax, Span::new(file, start, end.min(part.at(part.source.len())).max(start)), format!("template error: {detail}"))
        .label(format!("in the {} of this template", part.name))
        .help("templates use minijinja (Jinja2) syntax: `{{ contact.first_name }}`, `{% if ... %}...{% endif %}`")
}

struct FrontMatter<'a> {
    yaml: &'a str,
    /// Byte offset of the YAML in the file.
    yaml_offset: usize,
    /// The rest of the file after the closing `---`.
    body: &'a str,
    body_offset: usize,
}

fn front_matter(text: &str) -> Option<FrontMatter<'_>> {
    let after_open = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let yaml_offset = text.len() - after_open.len();
    let mut offset = 0;
    for line in after_open.split_inclusive('\n') {
        if line.trim_end() == "---" {
            let body_offset = yaml_offset + offset + line.len();
            return Some(FrontMatter {
                yaml: &after_open[..offset],
                yaml_offset,
                body: &text[body_offset..],
                body_offset,
            });
        }
        offset += line.len();
    }
    None
}

fn yaml_error(
    file: FileId,
    text: &str,
    yaml_offset: usize,
    error: &serde_yaml::Error,
) -> Diagnostic {
    let start = error.location().map_or(yaml_offset, |location| {
        let lines_before: usize = text[yaml_offset..]
            .split_inclusive('\n')
            .take(location.line() - 1)
            .map(str::len)
            .sum();
        let line_start = yaml_offset + lines_before;
        let column: usize = text[line_start..]
            .chars()
            .take(location.column() - 1)
            .map(char::len_utf8)
            .sum();
        line_start + column
    });
    let end = text[start..]
        .find(['\n', ':'])
        .map_or(text.len(), |length| start + length)
        .max(start);
    let message = error.to_string();
    let message = message
        .rfind(" at line ")
        .map_or(message.as_str(), |at| &message[..at]);
    Diagnostic::new(Code::TemplateSyntax, Span::new(file, start, end), format!("front matter: {message}"))
        .label("in the front matter")
        .help("the front matter takes `kind`, `subject`, `preheader`, `from` and `reply_to` (email) or `kind` (other messages)")
}

/// Where each byte of a YAML value (as YAML reads it) stands in `raw`, the
/// text from where the value starts: the value's characters are found in
/// order, skipping what YAML drops (quotes, escapes' backslashes, block
/// indicators, indentation) and taking a folded line break for the space
/// it became. `None` when they cannot be lined up.
fn align(raw: &str, value: &str) -> Option<Vec<usize>> {
    let mut positions = Vec::with_capacity(value.len() + 1);
    let mut rest = raw.char_indices();
    let mut last = 0;
    for wanted in value.chars() {
        loop {
            let (at, found) = rest.next()?;
            if found == wanted || (wanted == ' ' && found == '\n') {
                positions.extend((0..wanted.len_utf8()).map(|byte| at + byte));
                last = at + found.len_utf8();
                break;
            }
        }
    }
    positions.push(last);
    Some(positions)
}

/// Where a YAML key's value starts in the front matter, for mapping errors
/// in `subject` and `preheader` back to the file.
fn value_offset(text: &str, yaml_offset: usize, yaml: &str, key: &str) -> usize {
    let mut offset = 0;
    for line in yaml.split_inclusive('\n') {
        if let Some(rest) = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            let value = rest.trim_start();
            let quote = usize::from(value.starts_with('"') || value.starts_with('\''));
            let start = yaml_offset + offset + key.len() + 1 + (rest.len() - value.len()) + quote;
            return start.min(text.len());
        }
        offset += line.len();
    }
    yaml_offset
}

/// Reads one template file's text (front matter and parts) as the
/// template `name` of `channel`; the parts are not compiled yet.
pub fn parse_file(
    name: &str,
    channel: Channel,
    file: FileId,
    text: &str,
) -> Result<Template, Diagnostic> {
    let key = |part: &str| format!("{name}.{}#{part}", extension(channel));
    let mut template = Template {
        name: name.to_string(),
        channel,
        file,
        kind: MessageKind::Marketing,
        from: None,
        reply_to: None,
        parts: Vec::new(),
        path: PathBuf::new(),
        source: text.to_string(),
    };
    let front = front_matter(text);
    if let Some(front) = &front {
        if let Some(at) = crate::files::yaml_too_deep(front.yaml) {
            let at = front.yaml_offset + at;
            return Err(too_deep_yaml(file, at, "the front matter"));
        }
    }
    if channel != Channel::Email {
        let (body, body_offset) = match &front {
            Some(front) => {
                let meta: OtherFrontMatter = if front.yaml.trim().is_empty() {
                    OtherFrontMatter::default()
                } else {
                    serde_yaml::from_str(front.yaml)
                        .map_err(|error| yaml_error(file, text, front.yaml_offset, &error))?
                };
                template.kind = meta.kind;
                (front.body, front.body_offset)
            }
            None => (text, 0),
        };
        template.parts.push(Part {
            key: key("body"),
            ..Part::new("body", body.to_string(), body_offset)
        });
        return Ok(template);
    }
    let Some(front) = front else {
        return Err(Diagnostic::new(Code::TemplateSyntax, Span::new(file, 0, text.find('\n').unwrap_or(text.len())), "an email template starts with front matter")
            .label("no `---` on the first line")
            .help("begin with `---`, then `subject: \"...\"` and any other settings, then `---`, then `{% block text %}...{% endblock %}`"));
    };
    let meta: EmailFrontMatter = if front.yaml.trim().is_empty() {
        EmailFrontMatter::default()
    } else {
        serde_yaml::from_str(front.yaml)
            .map_err(|error| yaml_error(file, text, front.yaml_offset, &error))?
    };
    template.kind = meta.kind;
    template.from = meta.from;
    template.reply_to = meta.reply_to;
    for (part, value) in [("subject", meta.subject), ("preheader", meta.preheader)] {
        if let Some(value) = value {
            let offset = value_offset(text, front.yaml_offset, front.yaml, part);
            let yaml_end = (front.yaml_offset + front.yaml.len()).min(text.len());
            let positions = align(&text[offset.min(yaml_end)..yaml_end], &value)
                .map(|positions| positions.into_iter().map(|at| offset + at).collect());
            template.parts.push(Part {
                key: key(part),
                positions,
                ..Part::new(part, value, offset)
            });
        }
    }
    for block in blocks(file, front.body, front.body_offset)? {
        template.parts.push(Part {
            key: key(block.name),
            ..block
        });
    }
    if template.part("text").is_none() {
        let at = front.body_offset.min(text.len());
        return Err(Diagnostic::new(
            Code::TemplateSyntax,
            Span::new(file, at, at),
            "an email template needs a text part",
        )
        .label("no `{% block text %}`")
        .help(
            "add `{% block text %}...{% endblock %}`: the plain-text version every email carries",
        ));
    }
    Ok(template)
}

/// The `{% block text %}` and `{% block html %}` of an email body.
fn blocks(file: FileId, body: &str, body_offset: usize) -> Result<Vec<Part>, Diagnostic> {
    let mut parts = Vec::new();
    let mut rest_start = 0;
    let mut open: Option<(&'static str, usize)> = None;
    let mut search = 0;
    while let Some(found) = body[search..].find("{%") {
        let tag_start = search + found;
        // `{%}` is no tag: its `%}` starts inside the `{%`.
        let Some(tag_length) = body[tag_start + 2..].find("%}") else {
            break;
        };
        let tag_end = tag_start + 2 + tag_length + 2;
        let inner = body[tag_start + 2..tag_end - 2]
            .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let words: Vec<&str> = inner.split_whitespace().collect();
        match (words.as_slice(), open) {
            (["block", name], None) => {
                let name = match *name {
                    "text" => "text",
                    "html" => "html",
                    other => {
                        return Err(Diagnostic::new(
                            Code::TemplateSyntax,
                            Span::new(file, body_offset + tag_start, body_offset + tag_end),
                            format!("unknown block `{other}`"),
                        )
                        .label("not `text` or `html`")
                        .help(
                            "an email has `{% block text %}` and optionally `{% block html %}`",
                        ));
                    }
                };
                outside_blocks(file, body, body_offset, rest_start, tag_start)?;
                if parts.iter().any(|part: &Part| part.name == name) {
                    return Err(Diagnostic::new(
                        Code::TemplateSyntax,
                        Span::new(file, body_offset + tag_start, body_offset + tag_end),
                        format!("block `{name}` appears twice"),
                    )
                    .label("second block"));
                }
                open = Some((name, tag_end));
            }
            (["endblock"] | ["endblock", _], Some((name, content_start))) => {
                let mut source = &body[content_start..tag_start];
                let mut offset = content_start;
                if let Some(stripped) = source
                    .strip_prefix('\n')
                    .or_else(|| source.strip_prefix("\r\n"))
                {
                    offset += source.len() - stripped.len();
                    source = stripped;
                }
                parts.push(Part::new(name, source.to_string(), body_offset + offset));
                open = None;
                rest_start = tag_end;
            }
            _ => {}
        }
        search = tag_end;
    }
    if let Some((name, start)) = open {
        return Err(Diagnostic::new(
            Code::TemplateSyntax,
            Span::new(file, body_offset + start, body_offset + start),
            format!("block `{name}` is never closed"),
        )
        .label("missing `{% endblock %}`"));
    }
    outside_blocks(file, body, body_offset, rest_start, body.len())?;
    Ok(parts)
}

/// Text with its `{# ... #}` comments removed.
fn without_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{#") {
        out.push_str(&rest[..start]);
        match rest[start..].find("#}") {
            Some(end) => rest = &rest[start + end + 2..],
            None => return out + &rest[start..],
        }
    }
    out + rest
}

/// Nothing but space and comments may stand between the blocks: each block renders on
/// its own, so a `{% set %}` there would reach neither.
fn outside_blocks(
    file: FileId,
    body: &str,
    body_offset: usize,
    from: usize,
    to: usize,
) -> Result<(), Diagnostic> {
    let outside = &body[from..to];
    if without_comments(outside).trim().is_empty() {
        return Ok(());
    }
    let at = from + (outside.len() - outside.trim_start().len());
    let is_tag = outside.trim_start().starts_with("{%");
    let end = body[at..to].find('\n').map_or(to, |length| at + length);
    let help = if is_tag {
        "each block renders on its own: put the `{% set %}` (or macro) inside every block that uses it"
    } else {
        "move it into a block; text outside them is never sent"
    };
    Err(Diagnostic::new(
        Code::TemplateSyntax,
        Span::new(file, body_offset + at, body_offset + end),
        "outside `{% block text %}` and `{% block html %}`",
    )
    .label("stands between the blocks")
    .help(help))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the template fuzz target: a line ending in `{%}` made the
    /// line-break keeper slice backwards.
    #[test]
    fn a_line_ending_in_a_bare_percent_tag_is_left_alone() {
        let (kept, inserted) = keep_line_breaks("Hi }}{%}\nthere\n");
        assert_eq!(kept, "Hi }}{%}\nthere\n");
        assert!(inserted.is_empty());
    }
}
