//! The `journeyc` command line: sets up the allocator and the logs, then
//! hands the arguments to [`journeyc::cli::run`].

use std::process::ExitCode;

// The nightly run allocates and frees many small values per contact
// (fields, events, steps); mimalloc spends less time on them than glibc's
// allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Structured logs for cron on stderr: JOURNEYC_LOG=info (or debug,
    // or per module); warnings only by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("JOURNEYC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // Not locked for the whole command: threads of a night (evaluators,
    // workers) write their log lines and faults to stderr too.
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    journeyc::cli::run(std::env::args_os(), &mut out, &mut err)
}
