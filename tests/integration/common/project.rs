//! A small project written by a test: settings, one or more journeys and a
//! template for every message they name, in a temporary folder. The
//! store, the `file:` transports' folders and the run lock live there too.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value as Json;

use super::text;

/// The settings every small project starts from: contacts in Shanghai,
/// quiet hours at night, one marketing email a week at most, and `file:`
/// transports so that `deliver` writes what it sends under `out/`.
pub const SETTINGS: &str = r#"timezone: Asia/Shanghai
journeys: [journeys]
templates: templates
contact:
  first_name: string?
  plan: string?
  city: string?
  lifetime_value: number?
events:
  signed_up:
  clicked:
  purchased: { amount: number? }
  email_opened:
stages: [lead, customer, dormant]
channels:
  email:
    from: "Shop <shop@example.com>"
    unsubscribe_url: "https://example.com/unsubscribe"
    transport: { url: "file:out/email" }
  sms:
    from: "Shop"
    transport: { kind: file, url: out/sms }
  task: { fallback_assignee: "ops@example.com" }
quiet_hours: "21:00..09:00"
caps: { email: 1 per 7d }
"#;

/// The signing key `deliver` and `preview` need for unsubscribe links.
pub const SECRET: &str = "test-secret-that-is-long-enough";

pub struct Project {
    dir: tempfile::TempDir,
}

/// One outbox row as `why --format json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub journey: String,
    pub step: String,
    pub channel: String,
    pub template: String,
    pub send_at: String,
    pub status: String,
}

impl Project {
    /// A project with the default settings and these journeys (one file).
    pub fn new(journeys: &str) -> Project {
        Project::with_settings(SETTINGS, journeys)
    }

    pub fn with_settings(settings: &str, journeys: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("journeys")).expect("mkdir");
        std::fs::write(dir.path().join("journeyc.yaml"), settings).expect("write");
        super::on_test_backend(dir.path());
        let project = Project { dir };
        project.journeys(journeys);
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the journeys (a new version) and writes the templates they
    /// name that do not exist yet.
    pub fn journeys(&self, source: &str) {
        std::fs::write(self.path().join("journeys/main.journey"), source).expect("write");
        for (channel, name) in messages(source) {
            let path = self
                .path()
                .join("templates")
                .join(format!("{name}.{channel}"));
            if path.exists() {
                continue;
            }
            std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
            let body = match channel {
                "email" => format!(
                    "---\nsubject: \"{name}\"\n---\n{{% block text %}}\n{name} for {{{{ contact.first_name | default(\"you\") }}}}\n\nUnsubscribe: {{{{ unsubscribe_url }}}}\n{{% endblock %}}\n"
                ),
                _ => format!("{name} for {{{{ contact.first_name | default(\"you\") }}}}\n"),
            };
            std::fs::write(path, body).expect("write");
        }
    }

    /// Writes a file of the project (a template, a CSV to import).
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// Runs journeyc here with the unsubscribe secret set.
    pub fn journeyc(&self, args: &[&str]) -> Output {
        let mut command = std::process::Command::new(super::bin());
        command
            .args(args)
            .current_dir(self.path())
            .env("JOURNEYC_UNSUBSCRIBE_SECRET", SECRET)
            .env_remove("JOURNEYC_LOG");
        command.output().expect("journeyc runs")
    }

    /// Runs journeyc and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.journeyc(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "journeyc {}:\n{}{}",
            args.join(" "),
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    pub fn import(&self, kind: &str, file: &str, contents: &str) {
        self.write(file, contents);
        self.ok(&["import", kind, file]);
    }

    pub fn run(&self, now: &str) -> String {
        self.ok(&["run", "--now", now])
    }

    pub fn deliver(&self, now: &str) -> Output {
        self.journeyc(&["deliver", "--now", now])
    }

    /// `why CONTACT --format json`.
    pub fn why(&self, contact: &str) -> Json {
        serde_json::from_str(&self.ok(&["why", contact, "--format", "json"])).expect("JSON")
    }

    /// A contact's outbox rows, in `send_at` order.
    pub fn outbox(&self, contact: &str) -> Vec<Row> {
        let why = self.why(contact);
        why["outbox"]
            .as_array()
            .expect("outbox")
            .iter()
            .map(|row| {
                let field = |name: &str| row[name].as_str().unwrap_or_default().to_string();
                Row {
                    journey: field("journey"),
                    step: field("step"),
                    channel: field("channel"),
                    template: field("template"),
                    send_at: field("send_at"),
                    status: field("status"),
                }
            })
            .collect()
    }

    /// A contact's transitions as `time journey reason` lines.
    pub fn moves(&self, contact: &str) -> Vec<String> {
        let why = self.why(contact);
        why["transitions"]
            .as_array()
            .expect("transitions")
            .iter()
            .map(|transition| {
                format!(
                    "{} {} {}",
                    transition["at"].as_str().unwrap_or_default(),
                    transition["journey"].as_str().unwrap_or_default(),
                    transition["reason"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The files a `file:` transport wrote under `out/FOLDER`, sorted.
    pub fn delivered_files(&self, folder: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.path().join("out").join(folder)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|entry| entry.expect("entry").path())
            .filter(|path| !path.to_string_lossy().ends_with(".tmp"))
            .collect();
        files.sort();
        files
    }
}

/// The (channel, template) of every `email "…"` and `sms "…"` in a source.
fn messages(source: &str) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for (channel, keyword) in [("email", "email \""), ("sms", "sms \"")] {
        let mut rest = source;
        while let Some(start) = rest.find(keyword) {
            let after = &rest[start + keyword.len()..];
            let Some(end) = after.find('"') else { break };
            found.push((channel, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    found
}
