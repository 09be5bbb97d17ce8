//! journeyc: customer journeys as code, compiled, checked, run and
//! delivered.
//!
//! The pipeline, one module per stage:
//!
//! - **Compile.** [`project`] finds a project's files ([`files`] reads them
//!   inside its boundary) and its [`settings`]; [`parser`] (pest, the
//!   grammar in `grammar/`) turns each journey file into an [`ast`];
//!   [`analyzer`] lowers every journey to a [`journey::CompiledJourney`] (a
//!   petgraph DAG with stable step IDs and journey-level rules) and checks
//!   it together with the [`templates`]. Problems are
//!   [`diagnostic::Diagnostic`]s, rendered once at the end for people, JSON
//!   or GitHub. [`format`] lays journey files out canonically and [`draw`]
//!   draws compiled journeys.
//! - **Run.** [`import`] brings contacts and events into the [`store`];
//!   [`runner::run::run_at`] moves every contact through the journeys up to
//!   an instant and writes what it did: enrolments, transitions with their
//!   reasons, and an outbox of planned messages (exactly once per key).
//! - **Deliver.** [`deliver::deliver_at`] claims due outbox rows, holds what
//!   quiet hours, send windows and caps forbid, renders each message
//!   through [`compose`] (the one path from a step to a message, which
//!   `preview` and `tasks` take too) and sends it by SMTP, an SMS provider
//!   or a webhook, settling every row with what happened.
//!
//! [`cli`] is the command line over all of it; every command returns an
//! [`error::Error`] or a status, mapped to an exit code in one place.

pub mod analyzer;
pub mod ast;
pub mod cli;
pub mod compose;
pub mod deliver;
pub mod diagnostic;
pub mod draw;
pub mod error;
pub(crate) mod fault;
pub mod files;
pub mod format;
pub mod import;
pub mod journey;
pub mod model;
pub mod parser;
pub mod policy;
pub mod project;
pub mod runner;
pub mod settings;
pub mod span;
pub mod store;
pub mod templates;
pub mod unsubscribe;
