//! Encoding derivatives: lossy WebP through libwebp (the `webp` crate; `image` only writes
//! lossless WebP), or baseline JPEG through `image`'s encoder. Derivatives carry no EXIF or GPS.
//! JPEG has no alpha, so a transparent image is flattened onto white first.

use image::DynamicImage;
use kiln_shared::domain::OutputFormat;

use super::ImagingError;

/// Encodes an 8-bit RGB or RGBA image at `quality` (1–100). WebP keeps alpha; JPEG drops it.
///
/// # Errors
/// [`ImagingError::Render`] when the encoder fails.
pub fn encode(
    image: &DynamicImage,
    format: OutputFormat,
    quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    match format {
        OutputFormat::Webp => {
            let encoder = webp::Encoder::from_image(image)
                .map_err(|e| ImagingError::Render(format!("webp: {e}")))?;
            let out = encoder
                .encode_simple(false, f32::from(quality))
                .map_err(|e| ImagingError::Render(format!("webp: {e:?}")))?;
            Ok(out.to_vec())
        }
        OutputFormat::Jpeg => {
            let rgb = match image {
                DynamicImage::ImageRgba8(rgba) => flatten_on_white(rgba),
                other => other.to_rgb8(),
            };
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                .encode_image(&rgb)
                .map_err(|e| ImagingError::Render(format!("jpeg: {e}")))?;
            Ok(out)
        }
    }
}

/// Composites straight (non-premultiplied) RGBA onto an opaque white background.
fn flatten_on_white(rgba: &image::RgbaImage) -> image::RgbImage {
    let mut out = image::RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}
