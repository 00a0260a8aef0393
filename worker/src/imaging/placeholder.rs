//! Placeholders: a ThumbHash (<https://evanw.github.io/thumbhash/>, the `thumbhash` crate) of
//! every image, stored in its metadata so a client can paint a blurred preview, with the right
//! colours, alpha and aspect ratio, before any derivative has loaded.

use base64::Engine as _;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use super::ImagingError;
use super::color::ToSrgb;

/// ThumbHash's input limit: at most 100 × 100 pixels.
const MAX_SIDE: f64 = 100.0;

/// The ThumbHash of an 8-bit RGB or RGBA image, as standard base64 (about 30 characters).
/// The image is first reduced to fit 100 × 100 (box filter: the hash keeps only a few DCT
/// coefficients, so a finer filter would change nothing), then converted to sRGB with
/// `to_srgb` when the pixels are still in an embedded profile.
///
/// # Errors
/// [`ImagingError::Render`] when the image is not 8-bit RGB/RGBA or the resizer fails.
pub fn thumbhash(image: &DynamicImage, to_srgb: Option<&ToSrgb>) -> Result<String, ImagingError> {
    let (pixel_type, raw) = match image {
        DynamicImage::ImageRgba8(b) => (PixelType::U8x4, b.as_raw()),
        DynamicImage::ImageRgb8(b) => (PixelType::U8x3, b.as_raw()),
        other => {
            return Err(ImagingError::Render(format!(
                "unexpected pixel type {:?}",
                other.color()
            )));
        }
    };
    let (w, h) = (image.width(), image.height());
    let scale = (MAX_SIDE / f64::from(w.max(h))).min(1.0);
    let tw = ((f64::from(w) * scale).round() as u32).max(1);
    let th = ((f64::from(h) * scale).round() as u32).max(1);
    let render = |e: fast_image_resize::ImageBufferError| ImagingError::Render(e.to_string());
    let src = ImageRef::new(w, h, raw, pixel_type).map_err(render)?;
    let mut dst = Image::new(tw, th, pixel_type);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(fast_image_resize::FilterType::Box)),
        )
        .map_err(|e| ImagingError::Render(e.to_string()))?;
    let small = dst.into_vec();
    let short = || ImagingError::Render("reduced image has the wrong size".into());
    let mut small = if pixel_type == PixelType::U8x4 {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(tw, th, small).ok_or_else(short)?)
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(tw, th, small).ok_or_else(short)?)
    };
    if let Some(to_srgb) = to_srgb {
        to_srgb.apply(&mut small)?;
    }
    let rgba = small.to_rgba8();
    let hash = ::thumbhash::rgba_to_thumb_hash(tw as usize, th as usize, rgba.as_raw());
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
        let hash = thumbhash(&img, None).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&hash)
            .unwrap();
        let (r, g, b, a) = ::thumbhash::thumb_hash_to_average_rgba(&bytes).unwrap();
        assert!(r > 0.7 && g < 0.1 && b < 0.1 && a > 0.99, "{r} {g} {b} {a}");
        let aspect = ::thumbhash::thumb_hash_to_approximate_aspect_ratio(&bytes).unwrap();
        assert!((aspect - 4.0 / 3.0).abs() < 0.1, "{aspect}");
    }
}
