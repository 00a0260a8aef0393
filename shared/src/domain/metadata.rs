//! Image metadata recorded for every ready upload: displayed size, format, EXIF fields and
//! content hash. Serialised as the upload's `metadata` JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Metadata of one processed original. Optional fields are absent (not null) when the file
/// lacks the tag or the tag could not be parsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageMetadata {
    /// Width as displayed (after orientation), in pixels.
    pub width: u32,
    /// Height as displayed (after orientation), in pixels.
    pub height: u32,
    /// Sniffed container format: `jpeg`, `png`, `gif`, `webp`, `tiff`, `heif`, `avif`.
    pub format: String,
    /// Size of the original, in bytes.
    pub byte_size: u64,
    /// SHA-256 of the original, lowercase hex (64 chars).
    pub sha256: String,
    /// Whether the file holds more than one frame (GIF, WebP, APNG).
    #[serde(default)]
    pub animated: bool,
    /// Frames in the file: 1 for a still image.
    #[serde(default = "one")]
    pub frame_count: u32,
    /// ThumbHash placeholder (<https://evanw.github.io/thumbhash/>): about 25 bytes, standard
    /// base64, that a client decodes to a blurred preview with the image's colours and aspect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
    /// EXIF fields, when the file has EXIF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exif: Option<ExifSummary>,
}

fn one() -> u32 {
    1
}

/// The EXIF 2.32 fields Kiln keeps (tag numbers in brackets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExifSummary {
    /// Make (0x010F).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    /// Model (0x0110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// LensModel (0xA434).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens_model: Option<String>,
    /// DateTimeOriginal (0x9003) as ISO 8601 local time `YYYY-MM-DDTHH:MM:SS`, with the offset
    /// from OffsetTimeOriginal (0x9011) appended when present (`+02:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time_original: Option<String>,
    /// Orientation (0x0112), 1–8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u16>,
    /// ExposureTime (0x829A), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_time: Option<f64>,
    /// FNumber (0x829D), the f-stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_number: Option<f64>,
    /// PhotographicSensitivity / ISOSpeedRatings (0x8827).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso: Option<u32>,
    /// FocalLength (0x920A), in millimetres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focal_length: Option<f64>,
    /// GPSLatitude (GPS 0x0002) with GPSLatitudeRef (0x0001), in signed decimal degrees
    /// (north positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps_latitude: Option<f64>,
    /// GPSLongitude (GPS 0x0004) with GPSLongitudeRef (0x0003), in signed decimal degrees
    /// (east positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps_longitude: Option<f64>,
}
