//! Step and outbox identities, and their encodings into the places a
//! receiver sees them: the `Message-ID` header, the `Idempotency-Key`
//! header, file names. Every encoding is injective, so two different keys
//! never look the same to the receiving side.

use std::fmt;
use std::fmt::Write as _;

/// A step's identity in its journey: its label, or a path made of the
/// kind and content of the step and of the blocks around it
/// (`wait:3d`, `split:4f1c2a/when1/email:winback/vip`, `monthly#2/email:winback/monthly`).
/// An edit elsewhere in the journey never changes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId(String);

impl StepId {
    pub fn new(id: impl Into<String>) -> StepId {
        StepId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for StepId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StepId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The key of an outbox row: one enrolment, one message step (a
/// repetition of a `repeat` is a step of its own). The runner writes a row
/// at most once per key, and the key travels with the message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxKey {
    pub enrolment: i64,
    pub step: StepId,
}

impl OutboxKey {
    pub fn new(enrolment: i64, step: StepId) -> OutboxKey {
        OutboxKey { enrolment, step }
    }

    /// The form the store keeps: `ENROLMENT/STEP`.
    pub fn parse(text: &str) -> Option<OutboxKey> {
        let (enrolment, step) = text.split_once('/')?;
        Some(OutboxKey {
            enrolment: enrolment.parse().ok()?,
            step: StepId::new(step),
        })
    }

    pub fn message_key(&self) -> MessageKey {
        MessageKey(self.to_string())
    }
}

impl fmt::Display for OutboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.enrolment, self.step)
    }
}

/// What a message carries to say which send it is: an outbox row's key,
/// or for `journeyc preview` a key of its own. Its encodings are
/// injective: every byte outside a small safe set becomes `=XX`
/// (uppercase hex), and `=` itself is always escaped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageKey(String);

/// Bytes kept as they are in `Message-ID` and `Idempotency-Key`: RFC 5322
/// `atext` without `=` (the escape) and without `.` (so the result is
/// one dot-atom whatever the key holds).
const HEADER_SAFE: &[u8] = b"!#$%&'*+-/?^_`{|}~";
/// Bytes kept as they are in a file name.
const FILE_SAFE: &[u8] = b"-_";

fn encode(text: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || safe.contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "={byte:02X}");
        }
    }
    out
}

impl MessageKey {
    /// The key of a preview of `step` for `contact`.
    pub fn preview(journey: &str, step: &StepId, contact: &str) -> MessageKey {
        MessageKey(format!("preview/{journey}/{step}/{contact}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The left side of a `Message-ID`: a dot-atom (RFC 5322).
    pub fn message_id_left(&self) -> String {
        encode(&self.0, HEADER_SAFE)
    }

    /// The `Idempotency-Key` header's value: visible ASCII.
    pub fn header_value(&self) -> String {
        encode(&self.0, HEADER_SAFE)
    }

    /// A file name stem: letters, digits, `-`, `_` and `=XX`, so no path,
    /// hidden file or name that differs only in case of escapes.
    pub fn file_stem(&self) -> String {
        encode(&self.0, FILE_SAFE)
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(encoded: &str) -> Vec<u8> {
        let bytes = encoded.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'=' {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                index += 3;
            } else {
                out.push(bytes[index]);
                index += 1;
            }
        }
        out
    }

    #[test]
    fn keys_that_looked_alike_stay_apart() {
        let ids = ["c+1", "c/1", "c-1", "客户-001", "会员-001", "c."];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let key = MessageKey::preview("w", &StepId::new("email:w/welcome"), id);
            assert!(seen.insert(key.message_id_left()), "{id}");
            assert!(!key.message_id_left().contains('.'));
        }
        assert_eq!(
            OutboxKey::new(12, StepId::new("monthly#2/email:a/b")).to_string(),
            "12/monthly#2/email:a/b"
        );
        assert_eq!(
            OutboxKey::parse("12/monthly#2/email:a/b"),
            Some(OutboxKey::new(12, StepId::new("monthly#2/email:a/b")))
        );
    }

    proptest! {
        #[test]
        fn encodings_are_injective_and_safe(text in "\\PC{0,40}") {
            let key = MessageKey(text.clone());
            for (encoded, safe) in [(key.message_id_left(), HEADER_SAFE), (key.file_stem(), FILE_SAFE)] {
                prop_assert_eq!(decode(&encoded), text.as_bytes().to_vec());
                prop_assert!(encoded.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'=' || safe.contains(&byte)));
            }
        }
    }
}
