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
use libheif_rs::{
    ColorSpace, DecodingOptions, HeifContext, HeifErrorSubCode, ImageHandle, ItemId, LibHeif,
    RgbChroma,
};

use super::{ImageFormat, ImagingError, color, frames, heif_ycbcr, jpeg, png_stream, webp_decode};

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
        ImageFormat::Heif | ImageFormat::Avif => decode_heif(bytes, limits, renditions)?,
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
    let pixels = match jpeg::decode(bytes, &header, scale) {
        Ok(p) => p,
        // libjpeg-turbo turns recoverable damage ("Corrupt JPEG data: premature end of data
        // segment") into an error; the file is complete (EOI checked), so decode it at full
        // scale with `image` (zune-jpeg), which recovers as browsers do.
        Err(e) if header.components == 3 || header.components == 1 => {
            tracing::debug!(error = %e, "libjpeg-turbo refused the data; decoding with zune-jpeg");
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
    let orientation = orientation_of(exif_orientation);
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
    image_limits.max_alloc = Some(limits.max_alloc());
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
    let mut image = if let Some(image) = streamed {
        image
    } else if format == ImageFormat::Webp && frame_count == 1 {
        // A still WebP: libwebp rescales while it decodes.
        let alpha = decoder.color_type().has_alpha();
        drop(decoder);
        let out = |v: u32| ((f64::from(v) * scale).ceil() as u32).clamp(1, v);
        webp_decode::decode_scaled(bytes, (w, h), alpha, (out(w), out(h)))?
    } else {
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

fn heif_error(e: libheif_rs::HeifError) -> ImagingError {
    if matches!(e.sub_code, HeifErrorSubCode::SecurityLimitExceeded) {
        ImagingError::TooLarge(format!("HEIF: {}", e.message))
    } else {
        ImagingError::Corrupt(format!("HEIF: {e}"))
    }
}

/// The embedded thumbnail (ISO/IEC 23008-12 `thmb` reference) to decode instead of the
/// primary image, when one is at least `need_w` × `need_h` and has the primary's aspect
/// ratio within 1 % (so it shows the same picture the same way up). Sizes are as displayed.
fn usable_thumbnail(primary: &ImageHandle, need_w: u32, need_h: u32) -> Option<ImageHandle> {
    let count = primary.number_of_thumbnails();
    if count == 0 {
        return None;
    }
    let mut ids: Vec<ItemId> = vec![0; count];
    let n = primary.thumbnail_ids(&mut ids);
    let aspect = f64::from(primary.width()) / f64::from(primary.height().max(1));
    ids.truncate(n);
    ids.into_iter()
        .filter_map(|id| primary.thumbnail(id).ok())
        .filter(|t| {
            let a = f64::from(t.width()) / f64::from(t.height().max(1));
            t.width() >= need_w && t.height() >= need_h && (a / aspect - 1.0).abs() < 0.01
        })
        .min_by_key(|t| u64::from(t.width()) * u64::from(t.height()))
}

fn decode_heif(
    bytes: &[u8],
    limits: &Limits,
    renditions: &[Rendition],
) -> Result<Decoded, ImagingError> {
    let mut ctx = HeifContext::new().map_err(heif_error)?;
    let mut security = ctx.security_limits();
    security.set_max_image_size_pixels(limits.max_pixels);
    security.set_max_total_memory(limits.max_alloc());
    ctx.set_security_limits(&security).map_err(heif_error)?;
    // Grid tiles on this thread: libheif's default starts a thread per tile (4 at a time), which
    // costs CPU (thread starts, a decoder per thread) that a worker running one job per core
    // pays for nothing; workers get their parallelism from `worker.concurrency`.
    ctx.set_max_decoding_threads(0);
    ctx.read_bytes(bytes).map_err(heif_error)?;
    let primary = ctx.primary_image_handle().map_err(heif_error)?;
    // Width and height of the handle are as displayed (after irot/imir), from the header.
    let (width, height) = (primary.width(), primary.height());
    limits.check(width, height)?;
    let scale = needed_scale(width, height, renditions);
    let need = |v: u32| (f64::from(v) * scale).ceil() as u32;
    let thumbnail = usable_thumbnail(&primary, need(width), need(height));
    let handle = thumbnail.as_ref().unwrap_or(&primary);
    let alpha = handle.has_alpha_channel();
    // Strict: a grid image with a missing or undecodable tile (a truncated file) is an error,
    // not a picture with grey holes.
    let options = || {
        let mut options = DecodingOptions::new().ok_or_else(|| {
            ImagingError::Render("libheif: cannot allocate decoding options".into())
        })?;
        options.set_strict_decoding(true);
        Ok::<_, ImagingError>(options)
    };
    let icc = primary.color_profile_raw().map(|p| p.data);
    let ycbcr = match handle.preferred_decoding_colorspace() {
        Ok(space @ ColorSpace::YCbCr(_))
            if !alpha
                && handle.luma_bits_per_pixel() == 8
                && handle.chroma_bits_per_pixel() == 8 =>
        {
            Some(space)
        }
        _ => None,
    };
    if let Some(space) = ycbcr {
        let decoded = LibHeif::new()
            .decode(handle, space, Some(options()?))
            .map_err(heif_error)?;
        let planes = decoded.planes();
        let matrix = heif_ycbcr::Matrix::for_nclx(decoded.color_profile_nclx().as_ref());
        if let (Some(y), Some(cb), Some(cr), Some(matrix)) =
            (&planes.y, &planes.cb, &planes.cr, matrix)
        {
            let out_w = need(width).min(y.width).max(1);
            let out_h = need(height).min(y.height).max(1);
            let image = heif_ycbcr::to_rgb((y, cb, cr), &matrix, out_w, out_h)?;
            return Ok(Decoded {
                image,
                icc,
                width,
                height,
                frame_count: 1,
            });
        }
        // Identity, YCgCo or another matrix without Kr/Kb: libheif converts (below).
    }
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let decoded = LibHeif::new()
        .decode(handle, ColorSpace::Rgb(chroma), Some(options()?))
        .map_err(heif_error)?;
    let planes = decoded.planes();
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
    let image = if alpha {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, buf).ok_or_else(too_short)?)
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, buf).ok_or_else(too_short)?)
    };
    Ok(Decoded {
        image,
        icc,
        width,
        height,
        frame_count: 1,
    })
}
