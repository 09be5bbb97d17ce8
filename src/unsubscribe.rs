//! Signed one-click unsubscribe links. The token names the contact and the
//! channel and carries an HMAC-SHA256 over both, keyed with a secret from
//! the environment, so nobody can unsubscribe someone else by editing it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable holding the secret, unless the settings name
/// another.
pub const DEFAULT_SECRET_ENV: &str = "JOURNEYC_UNSUBSCRIBE_SECRET";

/// Secrets shorter than this are refused: a guessable key makes every
/// token forgeable.
pub const MIN_SECRET_LENGTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three parts, or not base64.
    Malformed,
    /// The signature does not match: edited, or signed with another key.
    Tampered,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "the unsubscribe token is malformed",
            TokenError::Tampered => "the unsubscribe token's signature does not match",
        })
    }
}

impl std::error::Error for TokenError {}

/// Who a verified token unsubscribes, from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub contact: String,
    pub channel: String,
}

fn signature(secret: &[u8], payload: &str) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `contact.channel.signature`, each part base64url without padding.
pub fn token(secret: &[u8], contact: &str, channel: &str) -> String {
    let payload = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(contact),
        URL_SAFE_NO_PAD.encode(channel)
    );
    let signed = URL_SAFE_NO_PAD.encode(signature(secret, &payload));
    format!("{payload}.{signed}")
}

/// Checks a token in constant time and says whom it unsubscribes.
pub fn verify(secret: &[u8], token: &str) -> Result<Unsubscribe, TokenError> {
    let mut parts = token.split('.');
    let (Some(contact), Some(channel), Some(signed), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signed = URL_SAFE_NO_PAD
        .decode(signed)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(format!("{contact}.{channel}").as_bytes());
    mac.verify_slice(&signed)
        .map_err(|_| TokenError::Tampered)?;
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(TokenError::Malformed)
    };
    Ok(Unsubscribe {
        contact: decode(contact)?,
        channel: decode(channel)?,
    })
}

/// The link for a contact: `base` with the token as the `token` parameter.
pub fn url(base: &str, secret: &[u8], contact: &str, channel: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}token={}", token(secret, contact, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of some length";

    #[test]
    fn a_token_verifies_to_its_contact() {
        let token = token(SECRET, "c-张三-42", "email");
        assert_eq!(
            verify(SECRET, &token),
            Ok(Unsubscribe {
                contact: "c-张三-42".into(),
                channel: "email".into()
            })
        );
    }

    #[test]
    fn tampered_tokens_are_rejected() {
        let token = token(SECRET, "c-1", "email");
        let (_, rest) = token.split_once('.').unwrap();
        let someone_else = format!("{}.{rest}", URL_SAFE_NO_PAD.encode("c-2"));
        assert_eq!(verify(SECRET, &someone_else), Err(TokenError::Tampered));
        assert_eq!(
            verify(b"another secret entirely", &token),
            Err(TokenError::Tampered)
        );
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(verify(SECRET, &String::from_utf8(flipped).unwrap()).is_err());
        assert_eq!(verify(SECRET, "not-a-token"), Err(TokenError::Malformed));
        assert_eq!(verify(SECRET, "a.b.!!!"), Err(TokenError::Malformed));
    }

    #[test]
    fn url_appends_the_token() {
        assert!(url("https://x.example/u", SECRET, "c", "email")
            .starts_with("https://x.example/u?token="));
        assert!(url("https://x.example/u?lang=zh", SECRET, "c", "email")
            .starts_with("https://x.example/u?lang=zh&token="));
    }
}
