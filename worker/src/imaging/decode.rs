//! Decoding within limits. Dimensions are read from the header and checked against
//! [`Limits`] before any pixel is decoded; the decoder's allocations are capped as well. The
//! result is oriented as displayed (EXIF Orientation applied once, or for HEIF/AVIF the
//! container's `irot`/`imir` transforms, which libheif applies itself) and normalised to 8-bit
//! RGB or RGBA.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};
use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

use super::{ImageFormat, ImagingError};

/// Decode limits (from `worker.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest width × height, in pixels.
    pub max_pixels: u64,
    /// Largest width or height, in pixels.
    pub max_dimension: u32,
    /// Largest encoded input, in bytes.
    pub max_encoded_bytes: u64,
    /// Most frames an animated image may have.
    pub max_frames: u32,
}

impl Limits {
    /// The limits configured in `worker.*` (`max_pixels`, `max_dimension`,
    /// `max_encoded_bytes`, `max_frames`).
    pub fn from_settings(worker: &kiln_shared::config::WorkerSettings) -> Self {
        Self {
            max_pixels: worker.max_pixels,
            max_dimension: worker.max_dimension,
            max_encoded_bytes: worker.max_encoded_bytes,
            max_frames: worker.max_frames,
        }
    }

    fn check(&self, width: u32, height: u32) -> Result<(), ImagingError> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_dimension || height > self.max_dimension {
            return Err(ImagingError::TooLarge(format!(
                "{width}x{height} exceeds the {} px dimension limit",
                self.max_dimension
            )));
        }
        if pixels > self.max_pixels {
            return Err(ImagingError::TooLarge(format!(
                "{width}x{height} = {pixels} px exceeds the {} px limit",
                self.max_pixels
            )));
        }
        if width == 0 || height == 0 {
            return Err(ImagingError::Corrupt(format!(
                "empty image {width}x{height}"
            )));
        }
        Ok(())
    }

    /// Bytes a decoder may allocate: the pixel limit at 16-bit RGBA (8 bytes per pixel), plus
    /// slack for decoder state.
    fn max_alloc(&self) -> u64 {
        self.max_pixels
            .saturating_mul(8)
            .saturating_add(64 * 1024 * 1024)
    }
}

/// A decoded, oriented image.
#[derive(Debug)]
pub struct Decoded {
    /// Pixels as displayed, 8-bit RGB (`ImageRgb8`) or RGBA (`ImageRgba8`).
    pub image: DynamicImage,
    /// Frames in the file (1 for still images; GIF/WebP animation is issue-3 work and counts 1).
    pub frame_count: u32,
}

/// Decodes `bytes` as `format`.
///
/// # Errors
/// [`ImagingError::TooLarge`] when the header declares more than the limits allow;
/// [`ImagingError::Corrupt`] for truncated or malformed data; [`ImagingError::Unsupported`]
/// for a variant of a known format the decoder does not handle.
pub fn decode(bytes: &[u8], format: ImageFormat, limits: &Limits) -> Result<Decoded, ImagingError> {
    let image = match format {
        ImageFormat::Heif | ImageFormat::Avif => decode_heif(bytes, limits)?,
        other => decode_with_image(bytes, other, limits)?,
    };
    let image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    Ok(Decoded {
        image,
        frame_count: 1,
    })
}

fn image_error(e: image::ImageError) -> ImagingError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => ImagingError::TooLarge(l.to_string()),
        E::Unsupported(u) => ImagingError::Unsupported(u.to_string()),
        other => ImagingError::Corrupt(other.to_string()),
    }
}

fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let fmt = match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Heif | ImageFormat::Avif => unreachable!("HEIF goes through libheif"),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_dimension);
    image_limits.max_image_height = Some(limits.max_dimension);
    image_limits.max_alloc = Some(limits.max_alloc());
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    limits.check(w, h)?;
    // Unreadable EXIF means "no orientation", never a failure.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Refuses a JPEG whose scan data is cut short. zune-jpeg (behind `image`) fills a truncated
/// scan with grey and reports success, so check the structure first: walk the marker segments
/// from SOI (ITU T.81 B.1.1) to the first SOS, then require an EOI (`FF D9`) after it. The
/// search starts after SOS because an EXIF thumbnail in APP1 carries its own EOI.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), ImagingError> {
    let corrupt = |m: &str| Err(ImagingError::Corrupt(format!("JPEG: {m}")));
    let mut pos = 2; // after SOI
    let sos = loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(0xFF), Some(0xDA)) => break pos,
            (Some(0xFF), Some(0xD9)) => return corrupt("EOI before any scan"),
            (Some(0xFF), Some(0x01 | 0xD0..=0xD7)) => pos += 2,
            (Some(0xFF), Some(_)) => {
                let len = match bytes.get(pos + 2..pos + 4) {
                    Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
                    None => return corrupt("truncated in the headers"),
                };
                if len < 2 {
                    return corrupt("segment length under 2");
                }
                pos += 2 + len;
            }
            (None, _) | (_, None) => return corrupt("truncated before the first scan"),
            _ => return corrupt("bad marker in the headers"),
        }
    };
    if bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        corrupt("truncated scan data (no EOI marker)")
    }
}

fn heif_error(e: libheif_rs::HeifError) -> ImagingError {
    ImagingError::Corrupt(format!("HEIF: {e}"))
}

fn decode_heif(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, ImagingError> {
    let mut ctx = HeifContext::new().map_err(heif_error)?;
    let mut security = ctx.security_limits();
    security.set_max_image_size_pixels(limits.max_pixels);
    security.set_max_total_memory(limits.max_alloc());
    ctx.set_security_limits(&security).map_err(heif_error)?;
    ctx.read_bytes(bytes).map_err(heif_error)?;
    let handle = ctx.primary_image_handle().map_err(heif_error)?;
    // Width and height of the handle are as displayed (after irot/imir), from the header.
    limits.check(handle.width(), handle.height())?;
    let alpha = handle.has_alpha_channel();
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(heif_error)?;
    let planes = image.planes();
    let plane = planes.interleaved.ok_or_else(|| {
        ImagingError::Corrupt("HEIF decoder returned no interleaved plane".into())
    })?;
    let channels = if alpha { 4 } else { 3 };
    let (w, h) = (plane.width, plane.height);
    let row = w as usize * channels;
    let mut buf = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * plane.stride;
        let line = plane
            .data
            .get(start..start + row)
            .ok_or_else(|| ImagingError::Corrupt("HEIF plane shorter than its size".into()))?;
        buf.extend_from_slice(line);
    }
    let too_short = || ImagingError::Corrupt("HEIF plane buffer too short".into());
    Ok(if alpha {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, buf).ok_or_else(too_short)?)
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, buf).ok_or_else(too_short)?)
    })
}
