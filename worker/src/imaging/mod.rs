//! The image pipeline: sniff the real format, decode within limits, auto-orient, render each
//! rendition, encode it, and read the metadata. Pure CPU work with no I/O, so the job runs it
//! on a blocking thread ([`process`]).

pub mod decode;
pub mod encode;
pub mod metadata;
pub mod render;
pub mod sniff;

use kiln_shared::domain::{ErrorCode, ImageMetadata, Rendition};
use sha2::{Digest, Sha256};

pub use decode::Limits;
pub use sniff::ImageFormat;

/// Why an image could not be processed. Every variant is permanent: the same bytes fail the
/// same way on every attempt.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The bytes are not a format Kiln decodes.
    #[error("unsupported format: {0}")]
    Unsupported(String),
    /// The format is known but the data is truncated or malformed.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// Over a configured pixel, dimension or size limit (checked from the header).
    #[error("image too large: {0}")]
    TooLarge(String),
    /// Resizing or encoding failed (a bug, not the input's fault).
    #[error("rendering failed: {0}")]
    Render(String),
}

impl ImagingError {
    /// The stable error code recorded on the failed upload.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unsupported(_) => ErrorCode::UnsupportedFormat,
            Self::Corrupt(_) => ErrorCode::CorruptImage,
            Self::TooLarge(_) => ErrorCode::ImageTooLarge,
            Self::Render(_) => ErrorCode::Internal,
        }
    }
}

/// One encoded rendition.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    /// Sniff, header checks, decode, orientation and EXIF.
    pub decode: std::time::Duration,
    /// Resizing, all renditions.
    pub render: std::time::Duration,
    /// Encoding, all renditions.
    pub encode: std::time::Duration,
}

/// Everything the pipeline produces for one original.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Metadata of the original.
    pub metadata: ImageMetadata,
    /// One entry per rendition, in the order given.
    pub derivatives: Vec<RenderedDerivative>,
    /// Where the time went.
    pub timings: StageTimings,
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
    let format = sniff::sniff(bytes).ok_or_else(|| {
        ImagingError::Unsupported("no known image signature in the first bytes".into())
    })?;
    let decoded = decode::decode(bytes, format, limits)?;
    let exif = metadata::read_exif(bytes);
    let image = decoded.image;
    timings.decode = started.elapsed();

    let mut derivatives = Vec::with_capacity(renditions.len());
    for r in renditions {
        let t = std::time::Instant::now();
        let resized = render::render(&image, r)?;
        timings.render += t.elapsed();
        let t = std::time::Instant::now();
        let encoded = encode::encode(&resized, r.format, r.quality)?;
        timings.encode += t.elapsed();
        derivatives.push(RenderedDerivative {
            rendition: r.clone(),
            width: resized.width(),
            height: resized.height(),
            bytes: encoded,
        });
    }

    let metadata = ImageMetadata {
        width: image.width(),
        height: image.height(),
        format: format.as_str().to_owned(),
        byte_size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        animated: decoded.frame_count > 1,
        exif,
    };
    Ok(Processed {
        metadata,
        derivatives,
        timings,
    })
}
