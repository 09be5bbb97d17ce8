//! One expression, as `audience`, `when` and segments hold them.
#![no_main]

use journeyc::span::SourceMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut sources = SourceMap::new();
    let file = sources.add("fuzz".into(), text.to_string());
    let _ = journeyc::parser::parse_expr(file, &sources.get(file).text);
});
