//! The image pipeline: sniff the real format, check the header against the limits, decode
//! once at the smallest scale that serves the largest rendition (JPEG shrink-on-load, WebP
//! scaled decoding, PNG row-by-row box shrink, HEIF embedded thumbnail), auto-orient, render every rendition from that one
//! buffer, convert each to sRGB (after resizing: fewer pixels), encode, and read the metadata
//! and a ThumbHash placeholder. Pure CPU work with no
//! I/O, so the job runs it on a blocking thread ([`process`]).

pub mod accept;
pub mod budget;
pub mod color;
pub mod decode;
pub mod encode;
pub mod frames;
pub mod heif;
pub mod heif_ycbcr;
pub mod jpeg;
pub mod metadata;
pub mod placeholder;
pub mod png_stream;
pub mod render;
pub mod sniff;
pub mod webp_decode;

use kiln_shared::domain::{Classify, ErrorCode, ImageMetadata, Rendition};
use sha2::{Digest, Sha256};

pub use accept::Accept;
pub use decode::Limits;
pub use sniff::ImageFormat;

/// Why an image could not be processed. Every variant is permanent: the same bytes fail the
/// same way on every attempt. Serializable, so a decoder child can send it to the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ImagingError {
    /// The bytes are not a format Kiln decodes.
    #[error("unsupported format: {0}")]
    Unsupported(String),
    /// The format is known but the data is truncated or malformed.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// Over a configured pixel, dimension, size or memory limit (checked from the header).
    #[error("image too large: {0}")]
    TooLarge(String),
    /// The sniffed format is not the declared content type, or not an allowed one.
    #[error("content type mismatch: {0}")]
    Mismatch(String),
    /// The pipeline ran past `worker.job_timeout_secs` (set by the jail, which kills it).
    #[error("decode timed out: {0}")]
    Timeout(String),
    /// Resizing or encoding failed (a bug, not the input's fault).
    #[error("rendering failed: {0}")]
    Render(String),
}

impl Classify for ImagingError {
    /// The stable error code recorded on the failed upload (all permanent).
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unsupported(_) => ErrorCode::UnsupportedFormat,
            Self::Corrupt(_) => ErrorCode::CorruptImage,
            Self::TooLarge(_) => ErrorCode::ImageTooLarge,
            Self::Mismatch(_) => ErrorCode::ContentTypeMismatch,
            Self::Timeout(_) => ErrorCode::DecodeTimeout,
            Self::Render(_) => ErrorCode::Internal,
        }
    }
}

/// One encoded rendition.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RenderedDerivative {
    /// The recipe it was rendered from.
    pub rendition: Rendition,
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
}

/// Time spent in each CPU stage of [`process`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct StageTimings {
    /// Sniff, header checks, decode, orientation and EXIF.
    pub decode: std::time::Duration,
    /// Resizing, all renditions.
    pub render: std::time::Duration,
    /// Encoding, all renditions.
    pub encode: std::time::Duration,
}

/// Everything the pipeline produces for one original.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Processed {
    /// Metadata of the original.
    pub metadata: ImageMetadata,
    /// One entry per rendition, in the order given (rendered largest first).
    pub derivatives: Vec<RenderedDerivative>,
    /// Where the time went.
    pub timings: StageTimings,
}

fn sniff_format(bytes: &[u8]) -> Result<ImageFormat, ImagingError> {
    sniff::sniff(bytes).ok_or_else(|| {
        ImagingError::Unsupported("no known image signature in the first bytes".into())
    })
}

/// The decode step of [`process`] alone: sniff, header limits, decode at the scale
/// `renditions` need, orientation, then sRGB at the decoded size (which [`process`] does per
/// rendition instead). For tests and benchmarks that compare pixels.
///
/// # Errors
/// As [`process`].
pub fn decode_original(
    bytes: &[u8],
    renditions: &[Rendition],
    limits: &Limits,
) -> Result<decode::Decoded, ImagingError> {
    let format = sniff_format(bytes)?;
    let orientation = metadata::read_exif(bytes).and_then(|e| e.orientation);
    decode::decode(bytes, format, limits, renditions, orientation)?.into_srgb()
}

/// Runs the whole pipeline on an original's bytes.
///
/// # Errors
/// [`ImagingError`] when the format is unsupported, the data is corrupt, a limit is exceeded,
/// or rendering fails. Broken metadata in a good image is never an error: those fields are
/// left out.
pub fn process(
    bytes: &[u8],
    renditions: &[Rendition],
    limits: &Limits,
) -> Result<Processed, ImagingError> {
    if bytes.len() as u64 > limits.max_encoded_bytes {
        return Err(ImagingError::TooLarge(format!(
            "{} bytes is over the {}-byte limit",
            bytes.len(),
            limits.max_encoded_bytes
        )));
    }
    let started = std::time::Instant::now();
    let mut timings = StageTimings::default();
    let format = sniff_format(bytes)?;
    if let Some(accept) = &limits.accept {
        accept.check(format)?;
    }
    let exif = metadata::read_exif(bytes);
    let orientation = exif.as_ref().and_then(|e| e.orientation);
    let decoded = decode::decode(bytes, format, limits, renditions, orientation)?;
    let image = decoded.image;
    let to_srgb = decoded.icc.as_deref().and_then(color::ToSrgb::new);
    let full = (decoded.width, decoded.height);
    timings.decode = started.elapsed();
    tracing::debug!(
        format = format.as_str(),
        width = full.0,
        height = full.1,
        decoded_width = image.width(),
        decoded_height = image.height(),
        frames = decoded.frame_count,
        ms = timings.decode.as_millis() as u64,
        "decoded"
    );

    // Largest first, so the most expensive output is done while the buffer is hot.
    let mut order: Vec<&Rendition> = renditions.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(u64::from(r.max_width) * u64::from(r.max_height)));
    let kept_exif = if renditions.iter().any(|r| r.keep_metadata) {
        metadata::raw_exif(bytes).and_then(|tiff| encode::upright_exif(&tiff))
    } else {
        None
    };
    let mut derivatives = Vec::with_capacity(renditions.len());
    for r in order {
        let t = std::time::Instant::now();
        let mut resized = render::render(&image, r, full)?;
        if let Some(to_srgb) = &to_srgb {
            to_srgb.apply(&mut resized)?;
        }
        timings.render += t.elapsed();
        let t = std::time::Instant::now();
        let exif = if r.keep_metadata {
            kept_exif.as_deref()
        } else {
            None
        };
        let encoded = encode::encode(&resized, r.format, r.quality, exif)?;
        timings.encode += t.elapsed();
        derivatives.push(RenderedDerivative {
            rendition: r.clone(),
            width: resized.width(),
            height: resized.height(),
            bytes: encoded,
        });
    }

    // Back in the order given.
    derivatives.sort_by_key(|d| renditions.iter().position(|r| r.name == d.rendition.name));
    let t = std::time::Instant::now();
    let thumbhash = placeholder::thumbhash(&image, to_srgb.as_ref())?;
    timings.render += t.elapsed();
    let metadata = ImageMetadata {
        width: full.0,
        height: full.1,
        format: format.as_str().to_owned(),
        byte_size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        animated: decoded.frame_count > 1,
        frame_count: decoded.frame_count,
        thumbhash: Some(thumbhash),
        exif,
    };
    Ok(Processed {
        metadata,
        derivatives,
        timings,
    })
}
