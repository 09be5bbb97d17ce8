//! Named points where a test can stop the process: `JOURNEYC_PAUSE=POINT`
//! with `JOURNEYC_PAUSE_DIR=DIR` makes the process write
//! `DIR/POINT.reached` when it gets there and wait until `DIR/POINT.go`
//! exists. Tests use it to make two processes meet at an exact point (an
//! import committing while a run holds a page of contacts) instead of
//! sleeping and hoping. Without the variables nothing happens.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a paused process waits for the test before it goes on anyway.
const PATIENCE: Duration = Duration::from_secs(120);

/// Stops here if a test asked to.
pub fn pause(point: &str) {
    if std::env::var("JOURNEYC_PAUSE").ok().as_deref() != Some(point) {
        return;
    }
    let Some(dir) = std::env::var_os("JOURNEYC_PAUSE_DIR").map(PathBuf::from) else {
        return;
    };
    let go = dir.join(format!("{point}.go"));
    if go.exists() {
        return;
    }
    if std::fs::write(dir.join(format!("{point}.reached")), "").is_err() {
        return;
    }
    let started = Instant::now();
    while !go.exists() && started.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(5));
    }
}
