//! A journey file: parsed, analyzed against the shipped settings, and
//! formatted. No input may panic, overflow the stack or hang.
#![no_main]

use std::sync::OnceLock;

use journeyc::settings::Settings;
use journeyc::span::SourceMap;
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut sources = SourceMap::new();
        let text = include_str!("../../journeys/journeyc.yaml").to_string();
        let file = sources.add("journeyc.yaml".into(), text);
        Settings::parse(file, &sources).expect("the shipped settings parse")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = journeyc::files::decode(std::path::Path::new("fuzz.journey"), bytes.to_vec())
    else {
        return;
    };
    let mut sources = SourceMap::new();
    let file = sources.add("fuzz.journey".into(), text);
    let source = &sources.get(file).text;
    if let Ok((ast, _)) = journeyc::parser::parse(file, source) {
        let _ = journeyc::analyzer::analyze(settings(), &[(file, &ast)]);
    }
    let _ = journeyc::format::format_source(file, source);
});
