//! Named points where a test can stop the process, instead of sleeping and
//! hoping to kill it at the right moment.
//!
//! - `JOURNEYC_FAULT=POINT:N` aborts the process (as `kill -9` would: no
//!   destructor runs, no transaction commits) the N-th time it reaches
//!   POINT. Crash tests use it to die after exactly the N-th committed
//!   batch, in the middle of a transaction, or with messages in flight.
//! - `JOURNEYC_PAUSE=POINT` with `JOURNEYC_PAUSE_DIR=DIR` makes the process
//!   write `DIR/POINT.reached` when it gets there and wait until
//!   `DIR/POINT.go` exists, so that two processes meet at an exact point
//!   (an import committing while a run holds a page of contacts).
//!
//! Without the variables nothing happens. The points:
//!
//! | point | reached |
//! |---|---|
//! | `import.row` | after each row is written, before the import commits |
//! | `run.contact` | after each contact is evaluated, before its batch commits |
//! | `run.batch` | after each batch of contacts is committed |
//! | `run.page-read` | (pause) after a page of contacts is read |
//! | `deliver.sent` | after each message is handed over, before it is settled |
//! | `deliver.settled` | after each batch of outcomes is written |

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a paused process waits for the test before it goes on anyway.
const PATIENCE: Duration = Duration::from_secs(120);

/// The point and count `JOURNEYC_FAULT` names, read once.
fn planned() -> Option<&'static (String, u64)> {
    static PLANNED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    PLANNED
        .get_or_init(|| {
            let text = std::env::var("JOURNEYC_FAULT").ok()?;
            let (point, count) = text.rsplit_once(':').unwrap_or((&text, "1"));
            Some((point.to_string(), count.parse().ok()?))
        })
        .as_ref()
}

/// Aborts here if a test asked for a fault at this point and this is the
/// time.
pub fn point(name: &str) {
    static REACHED: AtomicU64 = AtomicU64::new(0);
    let Some((planned, count)) = planned() else {
        return;
    };
    if planned != name {
        return;
    }
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *count {
        eprintln!("journeyc: fault injected at {name} #{count}");
        std::process::abort();
    }
}

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
