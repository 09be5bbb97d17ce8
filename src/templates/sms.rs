//! SMS length as phones and carriers count it (GSM 03.38 / 3GPP TS 23.038).

/// The GSM 7-bit default alphabet (basic table).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Characters of the extension table: each is sent as escape + character,
/// so it counts twice.
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

/// How a text travels as SMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SmsLength {
    pub encoding: Encoding,
    /// Characters as the user sees them.
    pub characters: usize,
    /// Units on the wire: septets for GSM-7 (extension characters count
    /// two), 16-bit code units for UCS-2 (emoji outside the BMP count two).
    pub units: usize,
    /// Parts the text is split into.
    pub segments: usize,
}

/// Counts a text the way the network will split it.
pub fn measure(text: &str) -> SmsLength {
    let characters = text.chars().count();
    let gsm_units: Option<usize> = text
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (encoding, units, single, part) = match gsm_units {
        Some(units) => (Encoding::Gsm7, units, 160, 153),
        None => (Encoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    let segments = if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        units.div_ceil(part)
    };
    SmsLength {
        encoding,
        characters,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(text: &str) -> (Encoding, usize) {
        let length = measure(text);
        (length.encoding, length.segments)
    }

    #[test]
    fn gsm7_limits() {
        assert_eq!(segments(&"a".repeat(160)), (Encoding::Gsm7, 1));
        assert_eq!(segments(&"a".repeat(161)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&"a".repeat(306)), (Encoding::Gsm7, 2));
        assert_eq!(segments(&"a".repeat(307)), (Encoding::Gsm7, 3));
    }

    #[test]
    fn extension_characters_count_twice() {
        let length = measure(&format!("{}€", "a".repeat(158)));
        assert_eq!(
            (length.characters, length.units, length.segments),
            (159, 160, 1)
        );
        assert_eq!(
            segments(&format!("{}{{", "a".repeat(159))),
            (Encoding::Gsm7, 2)
        );
    }

    #[test]
    fn ucs2_limits_and_astral_characters() {
        assert_eq!(segments(&"价".repeat(70)), (Encoding::Ucs2, 1));
        assert_eq!(segments(&"价".repeat(71)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"价".repeat(134)), (Encoding::Ucs2, 2));
        assert_eq!(segments(&"价".repeat(135)), (Encoding::Ucs2, 3));
        let emoji = measure(&format!("{}😀", "a".repeat(68)));
        assert_eq!(
            (
                emoji.encoding,
                emoji.characters,
                emoji.units,
                emoji.segments
            ),
            (Encoding::Ucs2, 69, 70, 1)
        );
        assert_eq!(
            segments(&format!("{}😀", "a".repeat(69))),
            (Encoding::Ucs2, 2)
        );
    }

    #[test]
    fn empty_text_has_no_parts() {
        assert_eq!(measure("").segments, 0);
    }
}
