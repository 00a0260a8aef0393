//! HEIF and AVIF through libheif (ISO/IEC 23008-12): security limits and the memory budget
//! from the header, the embedded thumbnail when it is large enough, 8-bit YCbCr converted by
//! [`super::heif_ycbcr`], everything else converted by libheif.

use image::DynamicImage;
use kiln_shared::domain::Rendition;
use libheif_rs::{
    ColorSpace, DecodingOptions, HeifContext, HeifErrorSubCode, ImageHandle, ItemId, LibHeif,
    RgbChroma,
};

use super::decode::{Decoded, Limits, needed_scale};
use super::{ImagingError, budget, heif_ycbcr};

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

/// Decodes a HEIF or AVIF image with libheif (under `limits`' security limits and memory
/// budget), from its embedded thumbnail when one serves every rendition, as 8-bit RGB(A) in
/// the container's orientation.
///
/// # Errors
/// As [`super::decode::decode`].
pub fn decode(
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
    let sample_bytes = if handle.luma_bits_per_pixel() > 8 {
        2
    } else {
        1
    };
    let heif = budget::Decode {
        width: handle.width(),
        height: handle.height(),
        // libheif's interleaved output, beside its decoded planes (up to 4:4:4, plus alpha).
        decoder_bytes_per_pixel: if alpha { 4 } else { 3 },
        kept_bytes_per_pixel: if alpha { 4 } else { 3 },
        side_bytes_per_pixel: sample_bytes * if alpha { 4 } else { 3 },
        rotates: false,
    };
    budget::check(limits, &heif, (width, height), renditions)?;
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
