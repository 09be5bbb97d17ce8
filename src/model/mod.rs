//! The runtime's value types, shared by the runner, the store and
//! delivery: instants, step and outbox identities, and the states an
//! enrolment and an outbox row go through. Nothing here is cut out of a
//! string at the point of use: each type parses once and compares as a
//! value.

mod ids;
mod state;
mod timestamp;

pub use crate::ast::Channel;
pub use ids::{MessageKey, OutboxKey, StepId};
pub use state::{EnrolmentState, OutboxStatus, UnknownState};
pub use timestamp::{localize, Timestamp, TimestampError};
