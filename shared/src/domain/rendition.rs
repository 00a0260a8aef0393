//! Renditions: named recipes (size, fit, format, quality) that each derivative is rendered from.

use serde::{Deserialize, Serialize};

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
}

impl OutputFormat {
    /// File extension used in the derivative key, e.g. `webp`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Webp => "webp",
            Self::Jpeg => "jpg",
        }
    }

    /// MIME type stored as the object's Content-Type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Webp => "image/webp",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// Name as stored in the database and API (`webp`, `jpeg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
        }
    }
}

/// A named recipe. Changing any field should bump `version`, which is stored with each
/// derivative so stale ones can be found.
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
                version: 1,
            },
            Rendition {
                name: "preview".into(),
                max_width: 1280,
                max_height: 1280,
                fit: Fit::Contain,
                format: OutputFormat::Webp,
                quality: 80,
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
        Ok(())
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
    fn cover_fills_the_box_or_the_short_side() {
        let thumb = &Rendition::defaults()[0];
        assert_eq!(thumb.target_size(4032, 3024), (256, 256));
        assert_eq!(thumb.target_size(100, 68), (68, 68));
    }
}
