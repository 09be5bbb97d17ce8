//! An email template: front matter and parts read, each part compiled and
//! rendered with a sample contact, within journeyc's fuel and output bound.
#![no_main]

#[path = "shipped.rs"]
mod shipped;

use journeyc::ast::Channel;
use journeyc::span::SourceMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = journeyc::files::decode(std::path::Path::new("fuzz.email"), bytes.to_vec())
    else {
        return;
    };
    let mut sources = SourceMap::new();
    let file = sources.add("fuzz.email".into(), text);
    let channel = if bytes.first().is_some_and(|byte| byte % 2 == 0) {
        Channel::Email
    } else {
        Channel::Sms
    };
    let Ok(template) =
        journeyc::templates::parse_file("fuzz", channel, file, &sources.get(file).text)
    else {
        return;
    };
    let mut env = journeyc::templates::environment(shipped::settings());
    let context = minijinja_context();
    for part in &template.parts {
        if env
            .add_template_owned(part.key.clone(), part.compiled.clone())
            .is_ok()
        {
            if let Ok(compiled) = env.get_template(&part.key) {
                let _ = journeyc::templates::render_bounded(&compiled, context.clone());
            }
        }
    }
});

fn minijinja_context() -> minijinja::Value {
    minijinja::context! {
        contact => minijinja::context! { first_name => "王芳", timezone => "Asia/Shanghai" },
        now => "2026-11-23T10:00:00Z",
    }
}
