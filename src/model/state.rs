//! The states of an enrolment and of an outbox row.

use std::fmt;
use std::str::FromStr;

/// A state name the store holds that this journeyc does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState(pub String);

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown state `{}`", self.0)
    }
}

impl std::error::Error for UnknownState {}

macro_rules! named_states {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)*
                    other => Err(UnknownState(other.to_string())),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

named_states! {
    /// Where an enrolment stands.
    EnrolmentState {
        /// In the journey: resting at a wait (or at the holdout until the
        /// goal window closes).
        Active => "active",
        /// Reached the end of the steps.
        Completed => "completed",
        /// Reached the goal.
        Converted => "converted",
        /// Left by an exit rule.
        Exited => "exited",
        /// Left for another journey (`handoff`).
        HandedOff => "handed_off",
    }
}

named_states! {
    /// What became, or will become, of an outbox row.
    OutboxStatus {
        /// Waiting for its time (and, after a temporary failure, its retry).
        Pending => "pending",
        /// Claimed by a `deliver` that is sending it.
        Sending => "sending",
        /// Accepted by the server or provider.
        Sent => "sent",
        /// Refused for good, or every attempt failed.
        Failed => "failed",
        /// Not sent: over a cap with `over_cap: skip`, or no address on
        /// that channel.
        Skipped => "skipped",
        /// Not sent: the address is on the suppression list.
        Suppressed => "suppressed",
        /// Not sent: past its `expires after`, or later than the
        /// configured lateness allows.
        Expired => "expired",
    }
}

impl EnrolmentState {
    pub fn is_active(self) -> bool {
        self == EnrolmentState::Active
    }
}

impl OutboxStatus {
    /// Whether the row is or will be a send: what caps count.
    pub fn counts_as_send(self) -> bool {
        matches!(
            self,
            OutboxStatus::Pending | OutboxStatus::Sending | OutboxStatus::Sent
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in EnrolmentState::ALL {
            assert_eq!(state.as_str().parse::<EnrolmentState>(), Ok(*state));
        }
        for status in OutboxStatus::ALL {
            assert_eq!(status.as_str().parse::<OutboxStatus>(), Ok(*status));
        }
        assert!("holdout".parse::<EnrolmentState>().is_err());
    }
}
