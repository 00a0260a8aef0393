//! Decoding within limits. Dimensions are read from the header and checked against
//! [`Limits`] before any pixel is decoded; the decoder's allocations are capped as well. The
//! result is oriented as displayed (EXIF Orientation applied once, or for HEIF/AVIF the
//! container's `irot`/`imir` transforms, which libheif applies itself) and normalised to 8-bit
//! RGB or RGBA. An RGB image with an embedded ICC profile is returned in that profile with the
//! profile beside it ([`Decoded::icc`]): converting the few pixels of each rendition after
//! resizing costs far less than converting a 12 MP decode, as `vipsthumbnail` also does. CMYK
//! is converted while decoding (it cannot be resized as RGB).

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};
use kiln_shared::domain::Rendition;

use super::{
    Accept, ImageFormat, ImagingError, budget, color, frames, heif, jpeg, png_stream, webp_decode,
};

/// Decode limits (from `worker.*` settings), plus what the upload may be ([`Accept`]).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Largest width × height, in pixels.
    pub max_pixels: u64,
    /// Largest width or height, in pixels.
    pub max_dimension: u32,
    /// Largest encoded input, in bytes.
    pub max_encoded_bytes: u64,
    /// Most frames an animated image may have.
    pub max_frames: u32,
    /// Most memory the decode and render may need, in bytes, estimated from the header
    /// ([`super::budget`]).
    pub memory_budget_bytes: u64,
    /// The declared and allowed formats, checked against the sniffed one before any decoder
    /// runs; `None` skips the check (benchmarks and pixel tests).
    pub accept: Option<Accept>,
}

impl Limits {
    /// The limits configured in `worker.*` (`max_pixels`, `max_dimension`,
    /// `max_encoded_bytes`, `max_frames`, `memory_budget_bytes`), with no [`Accept`] check.
    pub fn from_settings(worker: &kiln_shared::config::WorkerSettings) -> Self {
        Self {
            max_pixels: worker.max_pixels,
            max_dimension: worker.max_dimension,
            max_encoded_bytes: worker.max_encoded_bytes,
            max_frames: worker.max_frames,
            memory_budget_bytes: worker.memory_budget_bytes,
            accept: None,
        }
    }

    pub(crate) fn check(&self, width: u32, height: u32) -> Result<(), ImagingError> {
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
    pub(crate) fn max_alloc(&self) -> u64 {
        self.max_pixels
            .saturating_mul(8)
            .saturating_add(64 * 1024 * 1024)
    }
}

/// A decoded, oriented image, possibly reduced by shrink-on-load.
#[derive(Debug)]
pub struct Decoded {
    /// Pixels as displayed, 8-bit RGB (`ImageRgb8`) or RGBA (`ImageRgba8`), in sRGB unless
    /// [`Decoded::icc`] is set. May be smaller than [`Decoded::width`] × [`Decoded::height`]
    /// (JPEG DCT scaling, WebP scaled decoding, HEIF thumbnail), but never smaller than the
    /// largest rendition needs.
    pub image: DynamicImage,
    /// The embedded RGB ICC profile the pixels are still in, to convert to sRGB after
    /// resizing ([`color::ToSrgb`]); `None` when they are sRGB already (no profile, an sRGB
    /// profile, or a converted CMYK image). See [`Decoded::into_srgb`].
    pub icc: Option<Vec<u8>>,
    /// Full width of the original as displayed (after orientation), in pixels.
    pub width: u32,
    /// Full height of the original as displayed, in pixels.
    pub height: u32,
    /// Frames in the file: 1 for still images, the frame count of an animated GIF, WebP or
    /// APNG (whose first frame is `image`).
    pub frame_count: u32,
}

impl Decoded {
    /// The image converted to sRGB now, at its decoded size (for callers that want pixels, not
    /// renditions: tests and benchmarks).
    ///
    /// # Errors
    /// [`ImagingError::Render`] when lcms2 cannot build the transform.
    pub fn into_srgb(mut self) -> Result<Self, ImagingError> {
        if let Some(to_srgb) = self.icc.take().as_deref().and_then(color::ToSrgb::new) {
            to_srgb.apply(&mut self.image)?;
        }
        Ok(self)
    }
}

/// The fraction of the full size (0 < s ≤ 1) that still gives every rendition enough pixels:
/// the largest `target / source` ratio over `renditions`, for a `width` × `height` original.
pub fn needed_scale(width: u32, height: u32, renditions: &[Rendition]) -> f64 {
    renditions
        .iter()
        .map(|r| {
            let (tw, th) = r.target_size(width, height);
            (f64::from(tw) / f64::from(width.max(1))).max(f64::from(th) / f64::from(height.max(1)))
        })
        .fold(0.0, f64::max)
        .min(1.0)
}

/// Decodes `bytes` as `format`, at the smallest scale that serves every rendition in
/// `renditions`. `exif_orientation` (EXIF 2.32 tag 0x0112, 1–8) is applied to JPEG; the other
/// decoders read their own orientation, and libheif applies the HEIF container's.
///
/// # Errors
/// [`ImagingError::TooLarge`] when the header declares more pixels, a larger dimension or
/// more frames than the limits allow (checked before any pixel is decoded);
/// [`ImagingError::Corrupt`] for truncated or malformed data; [`ImagingError::Unsupported`]
/// for a variant of a known format the decoder does not handle.
pub fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
    renditions: &[Rendition],
    exif_orientation: Option<u16>,
) -> Result<Decoded, ImagingError> {
    let mut decoded = match format {
        ImageFormat::Heif | ImageFormat::Avif => heif::decode(bytes, limits, renditions)?,
        ImageFormat::Jpeg => decode_jpeg(bytes, limits, renditions, exif_orientation)?,
        other => decode_with_image(bytes, other, limits, renditions)?,
    };
    decoded.image = match decoded.image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => decoded.image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    Ok(decoded)
}

fn image_error(e: image::ImageError) -> ImagingError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => ImagingError::TooLarge(l.to_string()),
        E::Unsupported(u) => ImagingError::Unsupported(u.to_string()),
        other => ImagingError::Corrupt(other.to_string()),
    }
}

fn orientation_of(exif: Option<u16>) -> Orientation {
    exif.and_then(|o| u8::try_from(o).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn decode_jpeg(
    bytes: &[u8],
    limits: &Limits,
    renditions: &[Rendition],
    exif_orientation: Option<u16>,
) -> Result<Decoded, ImagingError> {
    let header = jpeg::read_header(bytes)?;
    limits.check(header.width, header.height)?;
    if !matches!(header.components, 1 | 3 | 4) {
        return Err(ImagingError::Unsupported(format!(
            "JPEG with {} components",
            header.components
        )));
    }
    // The scale is the same on both axes, so the stored size serves as well as the displayed.
    let scale = jpeg::scale_for(needed_scale(header.width, header.height, renditions));
    let orientation = orientation_of(exif_orientation);
    let scaled = |v: u32| (u64::from(v) * scale.num() as u64).div_ceil(scale.denom() as u64) as u32;
    let full = (header.width, header.height);
    let cmyk = header.components == 4;
    let turbo = budget::Decode {
        width: scaled(header.width),
        height: scaled(header.height),
        decoder_bytes_per_pixel: if cmyk { 4 } else { 3 },
        kept_bytes_per_pixel: 3,
        side_bytes_per_pixel: 0,
        rotates: swaps_axes(orientation),
    };
    budget::check(limits, &turbo, full, renditions)?;
    let pixels = match jpeg::decode(bytes, &header, scale) {
        Ok(p) => p,
        // libjpeg-turbo turns recoverable damage ("Corrupt JPEG data: premature end of data
        // segment") into an error; the file is complete (EOI checked), so decode it at full
        // scale with `image` (zune-jpeg), which recovers as browsers do.
        Err(e) if header.components == 3 || header.components == 1 => {
            tracing::debug!(error = %e, "libjpeg-turbo refused the data; decoding with zune-jpeg");
            let whole = budget::Decode {
                width: header.width,
                height: header.height,
                // zune-jpeg's output, then `to_rgb8`'s copy of it.
                decoder_bytes_per_pixel: 6,
                ..turbo
            };
            budget::check(limits, &whole, full, renditions)?;
            let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
                .map_err(image_error)?
                .to_rgb8();
            jpeg::JpegPixels::Rgb {
                width: image.width(),
                height: image.height(),
                data: image.into_raw(),
            }
        }
        Err(e) => return Err(e),
    };
    let icc = match &pixels {
        jpeg::JpegPixels::Rgb { .. } => header.icc.clone(),
        jpeg::JpegPixels::Cmyk { .. } => None,
    };
    let mut image = match pixels {
        jpeg::JpegPixels::Rgb {
            width,
            height,
            data,
        } => {
            let buf = image::RgbImage::from_raw(width, height, data)
                .ok_or_else(|| ImagingError::Corrupt("JPEG: short pixel buffer".into()))?;
            DynamicImage::ImageRgb8(buf)
        }
        jpeg::JpegPixels::Cmyk {
            width,
            height,
            data,
        } => DynamicImage::ImageRgb8(color::cmyk_to_srgb(
            &data,
            width,
            height,
            header.icc.as_deref(),
            header.adobe,
        )?),
    };
    image.apply_orientation(orientation);
    let (width, height) = if swaps_axes(orientation) {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    Ok(Decoded {
        image,
        icc,
        width,
        height,
        frame_count: 1,
    })
}

fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
    renditions: &[Rendition],
) -> Result<Decoded, ImagingError> {
    let fmt = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Jpeg | ImageFormat::Heif | ImageFormat::Avif => {
            unreachable!("JPEG goes through libjpeg-turbo, HEIF and AVIF through libheif")
        }
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_dimension);
    image_limits.max_image_height = Some(limits.max_dimension);
    image_limits.max_alloc = Some(limits.max_alloc().min(limits.memory_budget_bytes));
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    limits.check(w, h)?;
    let frame_count = frames::count(bytes, format, limits.max_frames)?;
    if frame_count > limits.max_frames {
        return Err(ImagingError::TooLarge(format!(
            "more than {} frames",
            limits.max_frames
        )));
    }
    // Unreadable EXIF or ICC means "none", never a failure.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let (width, height) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    // Shrink-on-load to twice what the largest rendition needs (the Lanczos reduce in
    // `render` does the rest, as in libvips). The scale is the same on both axes, so the
    // displayed size serves as well as the stored one.
    let scale = (2.0 * needed_scale(width, height, renditions)).min(1.0);
    let shrink_png = if format == ImageFormat::Png && frame_count == 1 {
        let need = |v: u32| ((f64::from(v) * scale).ceil() as u32).max(1);
        Some((w / need(w)).min(h / need(h))).filter(|&f| f >= 2)
    } else {
        None
    };
    let streamed = match shrink_png {
        // Interlaced PNGs come back Unsupported here and take the whole-frame path below.
        Some(factor) => match png_stream::decode_shrunk(bytes, factor, limits.max_alloc()) {
            Err(ImagingError::Unsupported(_)) => None,
            other => Some(other?),
        },
        None => None,
    };
    let color = decoder.color_type();
    let whole = budget::Decode {
        width: w,
        height: h,
        decoder_bytes_per_pixel: u64::from(color.bytes_per_pixel()),
        kept_bytes_per_pixel: if color.has_alpha() { 4 } else { 3 },
        side_bytes_per_pixel: 0,
        rotates: swaps_axes(orientation),
    };
    let mut image = if let Some(image) = streamed {
        image
    } else if format == ImageFormat::Webp && frame_count == 1 {
        // A still WebP: libwebp rescales while it decodes.
        let alpha = color.has_alpha();
        drop(decoder);
        let out = |v: u32| ((f64::from(v) * scale).ceil() as u32).clamp(1, v);
        let scaled = budget::Decode {
            width: out(w),
            height: out(h),
            decoder_bytes_per_pixel: whole.kept_bytes_per_pixel,
            ..whole
        };
        budget::check(limits, &scaled, (width, height), renditions)?;
        webp_decode::decode_scaled(bytes, (w, h), alpha, (out(w), out(h)))?
    } else {
        // The whole frame at once: interlaced or unshrunk PNG, TIFF, GIF, animated WebP.
        budget::check(limits, &whole, (width, height), renditions)?;
        DynamicImage::from_decoder(decoder).map_err(image_error)?
    };
    image.apply_orientation(orientation);
    Ok(Decoded {
        image,
        icc,
        width,
        height,
        frame_count,
    })
}
