//! The rule a client filename (`POST /v1/uploads`, `filename`) must follow: 1–255 characters,
//! none of them a control character or a bidirectional formatting character.
//!
//! Filenames are shown to people (listings, logs, `Content-Disposition` of a download), so
//! characters that hide or reorder text are refused: a NUL (which Postgres cannot store in
//! `text` either), the C0 and C1 controls and DEL (terminal escapes, log-line injection), and
//! the bidirectional embeddings, overrides, isolates and marks of Unicode Standard Annex #9
//! (`invoice\u{202E}gpj.exe` shows as `invoiceexe.jpg`: "Trojan Source", CVE-2021-42574).

use super::Rejection;

/// Longest `filename`, in characters (Unicode scalar values, which JSON Schema's `maxLength`
/// counts; at most 1020 bytes in UTF-8).
pub const MAX_FILENAME_CHARS: usize = 255;

/// The JSON Schema `pattern` of `filename` (ECMA-262 syntax): no character that
/// [`forbidden_in_filename`] refuses. `#[schema(pattern)]` takes only a literal, so the
/// attribute spells this out and a unit test checks that both agree.
pub const FILENAME_PATTERN: &str =
    r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]+$";

/// Whether `c` may not appear in a filename: a control character (general category `Cc`:
/// U+0000–U+001F, U+007F–U+009F), or a bidirectional formatting character of UAX #9: U+061C
/// ARABIC LETTER MARK, U+200E/U+200F (LRM, RLM), U+202A–U+202E (LRE, RLE, PDF, LRO, RLO) and
/// U+2066–U+2069 (LRI, RLI, FSI, PDI).
pub fn forbidden_in_filename(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Checks `name` against the rule (see the module docs).
///
/// # Errors
/// [`Rejection::InvalidFilename`] (400 `invalid_filename`) when `name` is empty, longer than
/// [`MAX_FILENAME_CHARS`] characters, or holds a character [`forbidden_in_filename`] refuses;
/// the message names the first such character by its code point, never echoing it.
pub fn check_filename(name: &str) -> Result<(), Rejection> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(Rejection::InvalidFilename(
            "filename must not be empty".into(),
        ));
    }
    if chars > MAX_FILENAME_CHARS {
        return Err(Rejection::InvalidFilename(format!(
            "filename has {chars} characters, over the {MAX_FILENAME_CHARS}-character limit"
        )));
    }
    if let Some((at, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| forbidden_in_filename(*c))
    {
        return Err(Rejection::InvalidFilename(format!(
            "filename character {at} is U+{:04X}, a control or bidirectional formatting \
             character",
            u32::from(c)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_formatting_characters_are_refused() {
        for ok in [
            "IMG_0001.jpg",
            "été 2024.heic",
            "ملف.png",
            "写真 (1).jpg",
            "a\u{200D}b",
        ] {
            assert_eq!(check_filename(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_filename(&"é".repeat(MAX_FILENAME_CHARS)), Ok(()));
        let forbidden = (0..=0x1F)
            .chain(0x7F..=0x9F)
            .chain([0x061C, 0x200E, 0x200F])
            .chain(0x202A..=0x202E)
            .chain(0x2066..=0x2069)
            .map(|u| char::from_u32(u).unwrap());
        for c in forbidden {
            let name = format!("a{c}b.jpg");
            assert!(
                matches!(check_filename(&name), Err(Rejection::InvalidFilename(m)) if m.contains(&format!("U+{:04X}", u32::from(c)))),
                "{name:?}"
            );
            assert!(forbidden_in_filename(c));
        }
        for neighbour in [
            '\u{061B}', '\u{200D}', '\u{2029}', '\u{202F}', '\u{2065}', '\u{206A}',
        ] {
            assert!(!forbidden_in_filename(neighbour), "{neighbour:?}");
        }
        for bad in [String::new(), "x".repeat(MAX_FILENAME_CHARS + 1)] {
            assert!(matches!(
                check_filename(&bad),
                Err(Rejection::InvalidFilename(_))
            ));
        }
    }

    #[test]
    fn the_pattern_names_the_same_ranges() {
        // Each `\uXXXX` of the pattern, as a number: the ranges `forbidden_in_filename` covers.
        let escapes: Vec<u32> = FILENAME_PATTERN
            .split("\\u")
            .skip(1)
            .map(|s| u32::from_str_radix(&s[..4], 16).unwrap())
            .collect();
        assert_eq!(
            escapes,
            [
                0x0, 0x1F, 0x7F, 0x9F, 0x061C, 0x200E, 0x200F, 0x202A, 0x202E, 0x2066, 0x2069
            ]
        );
    }
}
