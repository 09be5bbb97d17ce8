//! The runner: moves every contact through the journeys up to an instant
//! `now`, queueing messages in the outbox (GRAMMAR.md, "How the runner
//! reads it"). [`engine`] holds the time-ordered loop; the jobs it calls
//! are in [`entry`], [`signals`], [`walk`], [`actions`] and [`outbox`];
//! [`wake`] says when a contact next needs a visit, [`run`] splits a
//! night in partitions that workers claim, and [`pipeline`] spreads a
//! night on a store with one writer over every core.

pub(crate) mod actions;
pub mod engine;
pub(crate) mod entry;
pub(crate) mod eval;
pub(crate) mod outbox;
pub(crate) mod person;
pub(crate) mod pipeline;
pub mod run;
pub(crate) mod signals;
pub mod time;
pub(crate) mod wake;
pub(crate) mod walk;

#[cfg(test)]
mod memory;
