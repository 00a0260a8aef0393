//! Declared type enforcement: the sniffed format must be the one the client declared at
//! authorize, and one the operator allows (`api.allowed_content_types`), before any decoder
//! runs. So removing `image/heic` from the allowed list keeps libheif away from a HEIC file
//! declared as `image/jpeg`.
//!
//! MIME types follow IANA's registrations: `image/jpeg`, `image/png`, `image/gif`,
//! `image/webp` (RFC 9649), `image/tiff` (RFC 3302), `image/heic`/`image/heif` (ISO/IEC
//! 23008-12 Annex C) and `image/avif` (AV1 Image File Format). AVIF is a HEIF profile, so a
//! file declared `image/heif` may be AVIF; `image/heic` must be HEVC-coded HEIF.

use super::{ImageFormat, ImagingError};

/// A set of [`ImageFormat`]s as a bit mask (Copy, so [`super::Limits`] stays Copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct FormatSet(u8);

impl FormatSet {
    fn bit(f: ImageFormat) -> u8 {
        1 << (f as u8)
    }

    /// Adds `f`.
    pub fn insert(&mut self, f: ImageFormat) {
        self.0 |= Self::bit(f);
    }

    /// Whether `f` is in the set.
    pub fn contains(self, f: ImageFormat) -> bool {
        self.0 & Self::bit(f) != 0
    }

    /// The formats a declared MIME type (case-insensitive, parameters ignored) stands for;
    /// empty for a type Kiln does not decode.
    pub fn for_mime(mime: &str) -> Self {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let mut set = Self::default();
        match essence.as_str() {
            "image/jpeg" => set.insert(ImageFormat::Jpeg),
            "image/png" => set.insert(ImageFormat::Png),
            "image/gif" => set.insert(ImageFormat::Gif),
            "image/webp" => set.insert(ImageFormat::Webp),
            "image/tiff" => set.insert(ImageFormat::Tiff),
            "image/heic" => set.insert(ImageFormat::Heif),
            "image/heif" => {
                set.insert(ImageFormat::Heif);
                set.insert(ImageFormat::Avif);
            }
            "image/avif" => set.insert(ImageFormat::Avif),
            _ => {}
        }
        set
    }
}

/// What one upload may contain: the formats its declared content type stands for, within the
/// formats the allowed content types stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accept {
    declared: FormatSet,
    allowed: FormatSet,
}

impl Accept {
    /// For an upload declared as `declared`, with `allowed` the operator's
    /// `api.allowed_content_types`.
    pub fn new(declared: &str, allowed: &[String]) -> Self {
        let allowed = allowed.iter().fold(FormatSet::default(), |acc, m| {
            FormatSet(acc.0 | FormatSet::for_mime(m).0)
        });
        Self {
            declared: FormatSet::for_mime(declared),
            allowed,
        }
    }

    /// Checks a sniffed format.
    ///
    /// # Errors
    /// [`ImagingError::Mismatch`] (`content_type_mismatch`) when `format` is not the declared
    /// type or not allowed; the message names both, never the bytes.
    pub fn check(&self, format: ImageFormat) -> Result<(), ImagingError> {
        if !self.allowed.contains(format) {
            return Err(ImagingError::Mismatch(format!(
                "the file is {}, which is not an allowed content type",
                format.as_str()
            )));
        }
        if !self.declared.contains(format) {
            return Err(ImagingError::Mismatch(format!(
                "the file is {} but was declared as another type",
                format.as_str()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn declared_must_match_and_be_allowed() {
        let all = allowed(&["image/jpeg", "image/heic"]);
        let a = Accept::new("image/jpeg", &all);
        assert!(a.check(ImageFormat::Jpeg).is_ok());
        assert!(matches!(
            a.check(ImageFormat::Heif),
            Err(ImagingError::Mismatch(_))
        ));
        let heif = Accept::new("image/HEIF; foo=bar", &all);
        assert!(heif.check(ImageFormat::Heif).is_ok());
        // AVIF is not allowed here even though image/heif stands for it.
        assert!(matches!(
            heif.check(ImageFormat::Avif),
            Err(ImagingError::Mismatch(_))
        ));
        let jpeg_only = Accept::new("image/heic", &allowed(&["image/jpeg"]));
        assert!(matches!(
            jpeg_only.check(ImageFormat::Heif),
            Err(ImagingError::Mismatch(_))
        ));
    }
}
