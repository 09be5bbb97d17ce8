//! Every journey in `journeys/` and `examples/` is checked, so the examples
//! can never rot; and every one of them is already in canonical layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use journeyc::diagnostic::render;
use journeyc::{format, project};

fn project_settings(folder: &str) -> Vec<PathBuf> {
    let groups = project::group_paths(&[PathBuf::from(folder)]).expect("projects are found");
    groups.into_keys().collect()
}

fn assert_clean(folder: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd to the crate");
    let projects = project_settings(folder);
    assert!(!projects.is_empty(), "{folder} holds no project");
    for settings in projects {
        let checked = project::load(&settings, &BTreeSet::new()).expect("project loads");
        let rendered: Vec<String> = checked
            .diagnostics_for(None)
            .iter()
            .map(|diagnostic| render::human(&checked.sources, diagnostic))
            .collect();
        assert!(
            rendered.is_empty(),
            "{}:\n{}",
            settings.display(),
            rendered.join("\n")
        );
        assert!(
            !checked.analysis.journeys.is_empty(),
            "{} compiles no journey",
            settings.display()
        );
        for (id, file) in checked.sources.files() {
            if file
                .path
                .extension()
                .is_some_and(|extension| extension == "journey")
            {
                let formatted = format::format_source(id, &file.text).expect("formats");
                assert_eq!(
                    formatted,
                    file.text,
                    "{} is not in canonical layout: run `journeyc fmt --write`",
                    file.path.display()
                );
            }
        }
    }
}

#[test]
fn shipped_journeys_check_clean() {
    assert_clean("journeys");
}

#[test]
fn examples_check_clean() {
    assert_clean("examples");
}

#[test]
fn grammar_reference_lists_every_check_code() {
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("GRAMMAR.md"))
            .expect("GRAMMAR.md");
    for code in journeyc::diagnostic::Code::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            code.as_str(),
            code.severity().as_str(),
            code.summary()
        );
        assert!(reference.contains(&row), "GRAMMAR.md lacks the row: {row}");
    }
}

/// Every message step of the shipped projects renders for a sample
/// contact: what `check` approves can really be sent.
#[test]
fn every_message_step_renders() {
    use journeyc::compose::{Composer, Rendered};
    use journeyc::templates::{check::sample_context, sms, MessageKind};

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd to the crate");
    std::env::set_var(
        "JOURNEYC_UNSUBSCRIBE_SECRET",
        "a-sample-secret-for-rendering-tests",
    );
    let mut rendered_count = 0;
    for folder in ["journeys", "examples"] {
        for settings_path in project_settings(folder) {
            let checked = project::load(&settings_path, &BTreeSet::new()).expect("project loads");
            let settings = checked.settings.as_ref().expect("valid settings");
            let composer = Composer::new(&checked).expect("a valid project");
            let limit = settings
                .channels
                .sms
                .as_ref()
                .map_or(1, |sms| sms.segment_limit) as usize;
            for message_use in &checked.analysis.messages {
                let sample = sample_context(settings, message_use);
                let json: serde_json::Value =
                    serde_json::to_value(&sample).expect("sample as JSON");
                let contact = json["contact"].as_object().expect("contact").clone();
                let event = json["event"].as_object().expect("event").clone();
                let rendered = composer
                    .render(
                        message_use,
                        "sample",
                        &contact,
                        &event,
                        journeyc::model::Timestamp::parse("2026-09-25T10:00:00+08:00")
                            .expect("a time")
                            .utc(),
                        &journeyc::model::MessageKey::preview(
                            &message_use.journey,
                            &journeyc::model::StepId::new("sample"),
                            "c-1",
                        ),
                    )
                    .unwrap_or_else(|error| {
                        panic!(
                            "{} `{}`: {error}",
                            message_use.journey, message_use.message.template.node
                        )
                    });
                match rendered {
                    Rendered::Email(email) => {
                        assert!(!email.subject.trim().is_empty());
                        if email.kind == MessageKind::Marketing {
                            let link = email
                                .unsubscribe_url
                                .as_deref()
                                .expect("marketing email has a link");
                            assert!(
                                email.text.contains(link),
                                "{}: no link in the text",
                                message_use.message.template.node
                            );
                        }
                        journeyc::compose::mime::build(&email).expect("builds as MIME");
                    }
                    Rendered::Sms { body, .. } => {
                        let length = sms::measure(&body);
                        assert!(
                            length.segments <= limit,
                            "{}: {} parts",
                            message_use.message.template.node,
                            length.segments
                        );
                        assert!(!body.to_lowercase().contains("none"), "{body}");
                    }
                    Rendered::Task { text, .. } => assert!(!text.trim().is_empty()),
                    Rendered::Webhook { body, .. } => {
                        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|error| {
                            panic!("webhook body is not JSON: {error}\n{body}")
                        });
                    }
                }
                rendered_count += 1;
            }
        }
    }
    assert!(
        rendered_count > 60,
        "only {rendered_count} message steps rendered"
    );
}
