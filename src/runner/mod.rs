//! The runner: moves every contact through the journeys up to an instant
//! `now`, queueing messages in the outbox (GRAMMAR.md, "How the runner
//! reads it"). [`engine`] holds the time-ordered loop; the jobs it calls
//! are in [`entry`], [`signals`], [`walk`], [`actions`] and [`outbox`].

pub mod actions;
pub mod engine;
pub mod entry;
pub mod eval;
pub mod outbox;
pub mod person;
pub mod run;
pub mod signals;
pub mod time;
pub mod walk;

#[cfg(test)]
mod memory;
