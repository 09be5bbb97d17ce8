//! What several fuzz targets share: the shipped project's settings.

use std::sync::OnceLock;

use journeyc::settings::Settings;
use journeyc::span::SourceMap;

/// `journeys/journeyc.yaml`, parsed once.
pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut sources = SourceMap::new();
        let text = include_str!("../../journeys/journeyc.yaml").to_string();
        let file = sources.add("journeyc.yaml".into(), text);
        Settings::parse(file, &sources).expect("the shipped settings parse")
    })
}
