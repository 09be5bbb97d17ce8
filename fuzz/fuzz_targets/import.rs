//! A CSV or JSON Lines import (the first byte picks which, and contacts or
//! events) into a real SQLite store: rows are imported or rejected with
//! their line, never a panic.
#![no_main]

use std::cell::RefCell;

use journeyc::import::ImportKind;
use journeyc::settings::Settings;
use journeyc::span::SourceMap;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    dir: tempfile::TempDir,
    settings: Settings,
    store: journeyc::store::sqlite::SqliteStore,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sources = SourceMap::new();
    let text = include_str!("../../journeys/journeyc.yaml").to_string();
    let file = sources.add(dir.path().join("journeyc.yaml"), text);
    let mut settings = Settings::parse(file, &sources).expect("the shipped settings parse");
    settings.root = dir.path().to_path_buf();
    settings.store = Some(dir.path().join("fuzz.db").to_string_lossy().into_owned());
    let store = journeyc::store::open(&settings).expect("a store");
    Fixture {
        dir,
        settings,
        store,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    FIXTURE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let fixture = cell.get_or_insert_with(fixture);
        let (kind, name) = match selector % 4 {
            0 => (ImportKind::Contacts, "rows.csv"),
            1 => (ImportKind::Events, "rows.csv"),
            2 => (ImportKind::Contacts, "rows.jsonl"),
            _ => (ImportKind::Events, "rows.jsonl"),
        };
        let path = fixture.dir.path().join(name);
        std::fs::write(&path, body).expect("write");
        let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).expect("a time");
        let _ = journeyc::import::import(&fixture.settings, &mut fixture.store, kind, &path, at);
    });
});
