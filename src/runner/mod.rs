//! The nightly runner: moves every contact through every journey at an
//! instant `now`, queueing messages in the outbox (DESIGN.md, "Runner
//! semantics").

pub mod engine;
pub mod eval;
pub mod run;
pub mod time;
