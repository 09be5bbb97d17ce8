//! A `journeyc.yaml`: parsed and validated.
#![no_main]

use journeyc::settings::Settings;
use journeyc::span::SourceMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = journeyc::files::decode(std::path::Path::new("journeyc.yaml"), bytes.to_vec())
    else {
        return;
    };
    let mut sources = SourceMap::new();
    let file = sources.add("journeyc.yaml".into(), text);
    let _ = Settings::parse(file, &sources);
});
