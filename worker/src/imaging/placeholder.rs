//! Placeholders: a ThumbHash (<https://evanw.github.io/thumbhash/>, the `thumbhash` crate) of
//! every image, stored in its metadata so a client can paint a blurred preview, with the right
//! colours, alpha and aspect ratio, before any derivative has loaded.

use base64::Engine as _;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use super::ImagingError;

/// ThumbHash's input limit: at most 100 × 100 pixels.
const MAX_SIDE: f64 = 100.0;

/// The ThumbHash of an 8-bit RGB or RGBA image, as standard base64 (about 30 characters).
/// The image is first reduced to fit 100 × 100 (box filter: the hash keeps only a few DCT
/// coefficients, so a finer filter would change nothing).
///
/// # Errors
/// [`ImagingError::Render`] when the image is not 8-bit RGB/RGBA or the resizer fails.
pub fn thumbhash(image: &DynamicImage) -> Result<String, ImagingError> {
    let rgba = match image {
        DynamicImage::ImageRgba8(b) => std::borrow::Cow::Borrowed(b),
        DynamicImage::ImageRgb8(_) => std::borrow::Cow::Owned(image.to_rgba8()),
        other => {
            return Err(ImagingError::Render(format!(
                "unexpected pixel type {:?}",
                other.color()
            )));
        }
    };
    let (w, h) = (rgba.width(), rgba.height());
    let scale = (MAX_SIDE / f64::from(w.max(h))).min(1.0);
    let tw = ((f64::from(w) * scale).round() as u32).max(1);
    let th = ((f64::from(h) * scale).round() as u32).max(1);
    let src = ImageRef::new(w, h, rgba.as_raw(), PixelType::U8x4)
        .map_err(|e| ImagingError::Render(e.to_string()))?;
    let mut dst = Image::new(tw, th, PixelType::U8x4);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(fast_image_resize::FilterType::Box)),
        )
        .map_err(|e| ImagingError::Render(e.to_string()))?;
    let hash = ::thumbhash::rgba_to_thumb_hash(tw as usize, th as usize, dst.buffer());
    Ok(base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_red_image_hashes_to_red() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            640,
            480,
            image::Rgb([200, 0, 0]),
        ));
        let hash = thumbhash(&img).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&hash)
            .unwrap();
        let (r, g, b, a) = ::thumbhash::thumb_hash_to_average_rgba(&bytes).unwrap();
        assert!(r > 0.7 && g < 0.1 && b < 0.1 && a > 0.99, "{r} {g} {b} {a}");
        let aspect = ::thumbhash::thumb_hash_to_approximate_aspect_ratio(&bytes).unwrap();
        assert!((aspect - 4.0 / 3.0).abs() < 0.1, "{aspect}");
    }
}
