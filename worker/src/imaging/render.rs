//! Rendering one rendition from the decoded image with fast_image_resize (Lanczos3
//! convolution; premultiplied alpha for RGBA). `cover` centre-crops the source to the box's
//! aspect ratio; `contain` keeps the whole image.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use kiln_shared::domain::Rendition;

use super::ImagingError;

/// Resizes `image` (8-bit RGB or RGBA) to `rendition`'s target size for an original of
/// `full` = (width, height) as displayed. `image` may be a reduced decode of that original
/// (shrink-on-load): the output size depends only on `full`, never on how it was decoded.
///
/// # Errors
/// [`ImagingError::Render`] when the image is not 8-bit RGB/RGBA or the resizer fails.
pub fn render(
    image: &DynamicImage,
    rendition: &Rendition,
    full: (u32, u32),
) -> Result<DynamicImage, ImagingError> {
    let (w, h) = (image.width(), image.height());
    let (tw, th) = rendition.target_size(full.0, full.1);
    if (tw, th) == (w, h) {
        return Ok(image.clone());
    }
    let (pixel_type, raw) = match image {
        DynamicImage::ImageRgb8(b) => (PixelType::U8x3, b.as_raw().as_slice()),
        DynamicImage::ImageRgba8(b) => (PixelType::U8x4, b.as_raw().as_slice()),
        other => {
            return Err(ImagingError::Render(format!(
                "unexpected pixel type {:?}",
                other.color()
            )));
        }
    };
    let src =
        ImageRef::new(w, h, raw, pixel_type).map_err(|e| ImagingError::Render(e.to_string()))?;
    let mut dst = Image::new(tw, th, pixel_type);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .fit_into_destination(Some((0.5, 0.5)));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| ImagingError::Render(e.to_string()))?;
    let buf = dst.into_vec();
    let bad = || ImagingError::Render("resized buffer has the wrong size".into());
    Ok(match pixel_type {
        PixelType::U8x4 => {
            DynamicImage::ImageRgba8(image::RgbaImage::from_raw(tw, th, buf).ok_or_else(bad)?)
        }
        _ => DynamicImage::ImageRgb8(image::RgbImage::from_raw(tw, th, buf).ok_or_else(bad)?),
    })
}
