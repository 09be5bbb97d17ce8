//! A journey file: parsed, analyzed against the shipped settings, and
//! formatted. No input may panic, overflow the stack or hang.
#![no_main]

#[path = "shipped.rs"]
mod shipped;

use journeyc::span::SourceMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = journeyc::files::decode(std::path::Path::new("fuzz.journey"), bytes.to_vec())
    else {
        return;
    };
    let mut sources = SourceMap::new();
    let file = sources.add("fuzz.journey".into(), text);
    let source = &sources.get(file).text;
    if let Ok((ast, _)) = journeyc::parser::parse(file, source) {
        let _ = journeyc::analyzer::analyze(shipped::settings(), &[(file, &ast)]);
    }
    let _ = journeyc::format::format_source(file, source);
});
