//! Building the email that goes out: multipart/alternative with the text
//! and HTML parts, UTF-8 headers, a Message-ID derived from the send's
//! idempotency key, and RFC 8058 one-click unsubscribe headers on marketing
//! mail. Contact data never creates a header: line breaks and other control
//! characters in header values become spaces.

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::templates::MessageKind;

/// Everything a rendered email needs.
#[derive(Debug, Clone)]
pub struct Email {
    pub kind: MessageKind,
    pub from: String,
    pub reply_to: Option<String>,
    pub to_name: Option<String>,
    pub to_address: String,
    pub subject: String,
    pub preheader: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub unsubscribe_url: Option<String>,
    /// Unique per (enrolment, step, repetition): the same key is the same
    /// message, which is what lets a provider drop a duplicate.
    pub key: crate::model::MessageKey,
    /// The `Date` header: when it is sent (or, in a preview, would be).
    pub date: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
pub enum BuildError {
    Address {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// Marketing mail must carry an unsubscribe link.
    NoUnsubscribe,
    Lettre(lettre::error::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Address { what, value, reason } => write!(f, "the {what} address `{value}` is not valid: {reason}"),
            BuildError::NoUnsubscribe => f.write_str("a marketing email needs an unsubscribe link: set `unsubscribe_url` under `channels.email`"),
            BuildError::Lettre(error) => write!(f, "cannot build the email: {error}"),
        }
    }
}

impl std::error::Error for BuildError {}

#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(text: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(text.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

/// A header value with every control character (CR and LF first among
/// them) replaced by a space, and runs of spaces collapsed.
pub fn header_safe(value: &str) -> String {
    let replaced: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `value` is a mailbox (`Name <address>` or an address) that a
/// message can carry; the reason when not.
pub fn check_mailbox(value: &str) -> Result<(), String> {
    header_safe(value)
        .parse::<Mailbox>()
        .map(|_| ())
        .map_err(|error| error.to_string())
}

fn mailbox(what: &'static str, value: &str) -> Result<Mailbox, BuildError> {
    header_safe(value)
        .parse()
        .map_err(|error: lettre::address::AddressError| BuildError::Address {
            what,
            value: value.to_string(),
            reason: error.to_string(),
        })
}

/// The `Message-ID` for a message key, at the sender's domain: the key
/// encoded so that different keys never give the same id (see
/// [`MessageKey::message_id_left`](crate::model::MessageKey::message_id_left)).
pub fn message_id(key: &crate::model::MessageKey, from: &Mailbox) -> String {
    format!("<{}@{}>", key.message_id_left(), from.email.domain())
}

/// The preheader as the hidden first line of the HTML: what inboxes show
/// after the subject.
fn with_preheader(html: &str, preheader: &str) -> String {
    let escaped = preheader
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<div style=\"display:none;max-height:0;overflow:hidden;mso-hide:all\">{escaped}</div>\n{html}")
}

/// A display name longer than this is cut: header lines must stay within
/// RFC 5322's 998 characters, address and encoding included.
const MAX_NAME: usize = 200;

pub fn build(email: &Email) -> Result<Message, BuildError> {
    let from = mailbox("sender", &email.from)?;
    let address = header_safe(&email.to_address);
    let to = match email
        .to_name
        .as_deref()
        .map(|name| header_safe(name).chars().take(MAX_NAME).collect::<String>())
        .filter(|name| !name.is_empty())
    {
        Some(name) => Mailbox::new(
            Some(name),
            address
                .parse()
                .map_err(|error: lettre::address::AddressError| BuildError::Address {
                    what: "recipient",
                    value: email.to_address.clone(),
                    reason: error.to_string(),
                })?,
        ),
        None => mailbox("recipient", &address)?,
    };
    let mut builder = Message::builder()
        .message_id(Some(message_id(&email.key, &from)))
        .date(std::time::SystemTime::from(email.date))
        .from(from)
        .to(to)
        .subject(header_safe(&email.subject));
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(mailbox("reply-to", reply_to)?);
    }
    if email.kind == MessageKind::Marketing {
        let url = email
            .unsubscribe_url
            .as_deref()
            .ok_or(BuildError::NoUnsubscribe)?;
        builder = builder
            .header(ListUnsubscribe(header_safe(url)))
            .header(ListUnsubscribePost);
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(email.text.clone());
    let message = match &email.html {
        Some(html) => {
            let html = match email
                .preheader
                .as_deref()
                .filter(|preheader| !preheader.is_empty())
            {
                Some(preheader) => with_preheader(html, preheader),
                None => html.clone(),
            };
            let html = SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html);
            builder.multipart(MultiPart::alternative().singlepart(text).singlepart(html))
        }
        None => builder.singlepart(text),
    };
    message.map_err(BuildError::Lettre)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            kind: MessageKind::Marketing,
            from: "清源净水 <news@qingyuan.example>".into(),
            reply_to: None,
            to_name: Some("张三".into()),
            to_address: "zhang@example.com".into(),
            subject: "张三，新品发布".into(),
            preheader: Some("老客户专享".into()),
            text: "您好".into(),
            html: Some("<p>您好</p>".into()),
            unsubscribe_url: Some("https://u.example/u?token=abc".into()),
            key: crate::model::OutboxKey::new(
                12,
                crate::model::StepId::new("vip_wait#2/email:winback/vip"),
            )
            .message_key(),
            date: crate::model::Timestamp::parse("2026-03-02T10:00:00+08:00")
                .unwrap()
                .utc(),
        }
    }

    #[test]
    fn headers_of_a_marketing_email() {
        let formatted = String::from_utf8(build(&email()).unwrap().formatted()).unwrap();
        assert!(
            formatted
                .contains("Message-ID: <12/vip_wait#2/email=3Awinback/vip@qingyuan.example>\r\n"),
            "{formatted}"
        );
        assert!(
            formatted.contains("List-Unsubscribe: <https://u.example/u?token=abc>\r\n"),
            "{formatted}"
        );
        assert!(
            formatted.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
            "{formatted}"
        );
        assert!(
            formatted.contains("Content-Type: multipart/alternative;"),
            "{formatted}"
        );
        assert!(formatted.contains("Subject: =?utf-8?"), "{formatted}");
        assert!(
            formatted.contains("Date: Mon, 02 Mar 2026 02:00:00 +0000\r\n"),
            "{formatted}"
        );
    }

    #[test]
    fn contact_data_cannot_add_headers() {
        let mut injected = email();
        injected.to_name = Some("Eve\r\nBcc: victim@example.com".into());
        injected.subject = "Hello\nBcc: victim@example.com".into();
        let formatted = String::from_utf8(build(&injected).unwrap().formatted()).unwrap();
        let header_block = formatted.split("\r\n\r\n").next().unwrap();
        assert!(
            !header_block
                .lines()
                .any(|line| line.to_ascii_lowercase().starts_with("bcc:")),
            "{header_block}"
        );
        assert_eq!(header_safe("a\r\nb\u{0}c\td"), "a b c d");
    }

    #[test]
    fn marketing_mail_without_a_link_is_refused() {
        let mut missing = email();
        missing.unsubscribe_url = None;
        assert!(matches!(build(&missing), Err(BuildError::NoUnsubscribe)));
        missing.kind = MessageKind::Transactional;
        let formatted = String::from_utf8(build(&missing).unwrap().formatted()).unwrap();
        assert!(!formatted.contains("List-Unsubscribe"));
    }
}
