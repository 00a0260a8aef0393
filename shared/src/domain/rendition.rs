//! Renditions: named recipes (size, fit, format, quality, metadata) that each derivative is
//! rendered from, and the recipe fingerprint that tells a current derivative from a stale one.
//!
//! A derivative is **stale** when its stored `recipe_version` or `recipe_hash` differs from the
//! configured recipe's ([`Rendition::is_current`]), or when a configured rendition has no
//! derivative at all. `kiln renditions regenerate --stale-only` re-renders exactly those.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How an image is fitted into a rendition's `max_width` × `max_height` box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Scale to fill the box, then centre-crop the overflow: the output is exactly the box
    /// (CSS `object-fit: cover`). Never upscales: a smaller source gives a smaller square crop.
    Cover,
    /// Scale to fit inside the box keeping the aspect ratio (CSS `object-fit: contain`).
    /// Never upscales.
    Contain,
}

/// Encoded format of a derivative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Lossy WebP (libwebp).
    Webp,
    /// Baseline JPEG.
    Jpeg,
    /// Lossy AVIF (AV1 still image, AVIF 1.1 / ISO/IEC 23000-22), for renditions that ask for
    /// it: smaller than WebP at the same quality, but several times slower to encode. Never
    /// carries metadata (`keep_metadata` is refused for it).
    Avif,
}

impl Fit {
    /// Name as written in the configuration (`cover`, `contain`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cover => "cover",
            Self::Contain => "contain",
        }
    }
}

impl OutputFormat {
    /// File extension used in the derivative key, e.g. `webp`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Webp => "webp",
            Self::Jpeg => "jpg",
            Self::Avif => "avif",
        }
    }

    /// MIME type stored as the object's Content-Type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Webp => "image/webp",
            Self::Jpeg => "image/jpeg",
            Self::Avif => "image/avif",
        }
    }

    /// Name as stored in the database and API (`webp`, `jpeg`, `avif`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
            Self::Avif => "avif",
        }
    }
}

/// A named recipe. Each derivative stores the `version` and the [`fingerprint`] of the recipe
/// it was rendered with, so a derivative goes stale when any field that changes the output
/// changes, even if `version` was not bumped; bumping `version` forces a re-render of an
/// otherwise unchanged recipe (e.g. after an encoder upgrade).
///
/// [`fingerprint`]: Rendition::fingerprint
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Name, `[a-z0-9_-]{1,32}`; becomes the key's file stem (`{name}.{ext}`).
    pub name: String,
    /// Box width, in pixels.
    pub max_width: u32,
    /// Box height, in pixels.
    pub max_height: u32,
    /// How the image fills the box.
    pub fit: Fit,
    /// Output format.
    pub format: OutputFormat,
    /// Encoder quality, 1–100.
    pub quality: u8,
    /// Keep the original's EXIF metadata (GPS included) in the derivative. Off by default:
    /// derivatives are stripped (docs/design.md "Image pipeline").
    #[serde(default)]
    pub keep_metadata: bool,
    /// Recipe version.
    #[serde(default = "default_version")]
    pub version: u32,
}

fn default_version() -> u32 {
    1
}

impl Rendition {
    /// Kiln's defaults: `thumb` (256 px square, cover) and `preview` (1280 px, contain), both
    /// lossy WebP at quality 80.
    pub fn defaults() -> Vec<Rendition> {
        vec![
            Rendition {
                name: "thumb".into(),
                max_width: 256,
                max_height: 256,
                fit: Fit::Cover,
                format: OutputFormat::Webp,
                quality: 80,
                keep_metadata: false,
                version: 1,
            },
            Rendition {
                name: "preview".into(),
                max_width: 1280,
                max_height: 1280,
                fit: Fit::Contain,
                format: OutputFormat::Webp,
                quality: 80,
                keep_metadata: false,
                version: 1,
            },
        ]
    }

    /// Checks the name and ranges.
    ///
    /// # Errors
    /// A message naming the rendition and the broken rule.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "rendition name {:?} must be [a-z0-9_-]{{1,32}}",
                self.name
            ));
        }
        if self.max_width == 0 || self.max_height == 0 {
            return Err(format!(
                "rendition {}: max_width and max_height must be > 0",
                self.name
            ));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(format!("rendition {}: quality must be 1-100", self.name));
        }
        if self.keep_metadata && self.format == OutputFormat::Avif {
            return Err(format!(
                "rendition {}: keep_metadata is not supported for avif (its encoder writes no EXIF)",
                self.name
            ));
        }
        Ok(())
    }

    /// The recipe fingerprint stored with each derivative (`derivatives.recipe_hash`): the
    /// first 16 hex digits (64 bits) of the SHA-256 of a canonical text of every field that
    /// changes the output:
    ///
    /// ```text
    /// kiln-recipe-1;{max_width}x{max_height};fit={fit};format={format};quality={quality};keep_metadata={bool};version={version}
    /// ```
    ///
    /// `fit` and `format` are their configuration names (`cover`, `webp`). The `name` is left
    /// out: it picks the derivative's key, not its pixels. The text is built by hand, not by
    /// serde or `Hash`, so the value is stable across builds and Rust versions. A field added
    /// later joins the text only when it differs from its default, so adding a field does not
    /// make every existing derivative stale.
    pub fn fingerprint(&self) -> String {
        let canonical = format!(
            "kiln-recipe-1;{}x{};fit={};format={};quality={};keep_metadata={};version={}",
            self.max_width,
            self.max_height,
            self.fit.as_str(),
            self.format.as_str(),
            self.quality,
            self.keep_metadata,
            self.version
        );
        let digest = Sha256::digest(canonical.as_bytes());
        hex::encode(&digest[..8])
    }

    /// Whether a derivative stored with `version` and `hash` was rendered from this recipe. A
    /// missing hash (a derivative from before fingerprints were stored) is never current.
    pub fn is_current(&self, version: u32, hash: Option<&str>) -> bool {
        version == self.version && hash == Some(self.fingerprint().as_str())
    }

    /// Output size for a `src_w` × `src_h` source: (width, height) in pixels, at least 1×1.
    pub fn target_size(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        let (bw, bh) = (f64::from(self.max_width), f64::from(self.max_height));
        let (sw, sh) = (f64::from(src_w.max(1)), f64::from(src_h.max(1)));
        match self.fit {
            Fit::Contain => {
                let scale = (bw / sw).min(bh / sh).min(1.0);
                (
                    (sw * scale).round().max(1.0) as u32,
                    (sh * scale).round().max(1.0) as u32,
                )
            }
            Fit::Cover => {
                // Fill the box; with a smaller source, shrink the box (keeping its aspect
                // ratio) to what the source covers rather than upscale.
                let scale = (sw / bw).min(sh / bh).min(1.0);
                (
                    (bw * scale).round().max(1.0) as u32,
                    (bh * scale).round().max(1.0) as u32,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contain_keeps_aspect_and_never_upscales() {
        let preview = &Rendition::defaults()[1];
        assert_eq!(preview.target_size(4032, 3024), (1280, 960));
        assert_eq!(preview.target_size(3024, 4032), (960, 1280));
        assert_eq!(preview.target_size(600, 450), (600, 450));
    }

    #[test]
    fn fingerprint_is_stable_and_tracks_output_fields() {
        let preview = Rendition::defaults()[1].clone();
        // Pinned: a change here makes every stored derivative stale.
        assert_eq!(preview.fingerprint(), "304d85b628169d88");
        assert_eq!(preview.fingerprint().len(), 16);
        let renamed = Rendition {
            name: "large".into(),
            ..preview.clone()
        };
        assert_eq!(renamed.fingerprint(), preview.fingerprint());
        let changes: [fn(&mut Rendition); 7] = [
            |r| r.max_width += 1,
            |r| r.max_height += 1,
            |r| r.fit = Fit::Cover,
            |r| r.format = OutputFormat::Jpeg,
            |r| r.quality -= 1,
            |r| r.keep_metadata = true,
            |r| r.version += 1,
        ];
        for change in changes {
            let mut changed = preview.clone();
            change(&mut changed);
            assert_ne!(changed.fingerprint(), preview.fingerprint(), "{changed:?}");
        }
    }

    #[test]
    fn stale_unless_version_and_hash_match() {
        let thumb = &Rendition::defaults()[0];
        let hash = thumb.fingerprint();
        assert!(thumb.is_current(1, Some(&hash)));
        assert!(!thumb.is_current(1, None));
        assert!(!thumb.is_current(2, Some(&hash)));
        assert!(!thumb.is_current(1, Some("0000000000000000")));
    }

    #[test]
    fn keep_metadata_defaults_to_off() {
        let r: Rendition = serde_json::from_str(
            r#"{"name":"x","max_width":1,"max_height":1,"fit":"cover","format":"webp","quality":1}"#,
        )
        .unwrap();
        assert!(!r.keep_metadata);
        assert_eq!(r.version, 1);
    }

    #[test]
    fn avif_is_a_format_but_keeps_no_metadata() {
        let mut r: Rendition = serde_json::from_str(
            r#"{"name":"a","max_width":9,"max_height":9,"fit":"contain","format":"avif","quality":50}"#,
        )
        .unwrap();
        assert_eq!(
            (r.format.extension(), r.format.mime()),
            ("avif", "image/avif")
        );
        assert!(r.validate().is_ok());
        r.keep_metadata = true;
        assert!(r.validate().unwrap_err().contains("keep_metadata"));
    }

    #[test]
    fn cover_fills_the_box_or_the_short_side() {
        let thumb = &Rendition::defaults()[0];
        assert_eq!(thumb.target_size(4032, 3024), (256, 256));
        assert_eq!(thumb.target_size(100, 68), (68, 68));
    }
}
