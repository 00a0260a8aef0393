//! Colour management with Little CMS 2 (`lcms2`): pixels described by an embedded ICC profile
//! (ICC.1:2022) are converted to sRGB (IEC 61966-2-1), so a Display P3 phone photo or an
//! Adobe RGB camera file keeps its look in derivatives that browsers show as sRGB. CMYK JPEGs
//! go through their profile too.
//!
//! The intent is relative colorimetric without black-point compensation, the defaults of
//! `vips icc_transform`, which the golden tests use as the reference. Alpha is copied
//! unchanged. A profile that lcms2 cannot parse is ignored (logged): broken metadata never
//! fails an image.

use image::DynamicImage;
use lcms2::{
    ColorSpaceSignature, Flags, InfoType, Intent, Locale, PixelFormat, Profile, Transform,
};

use super::ImagingError;

/// Whether the profile is sRGB itself, by its description (`sRGB IEC61966-2.1`, `sRGB`, …):
/// converting sRGB to sRGB is skipped, it would only cost time.
fn is_srgb(profile: &Profile) -> bool {
    profile
        .info(InfoType::Description, Locale::none())
        .is_some_and(|d| d.trim_start().starts_with("sRGB"))
}

fn parse(icc: &[u8]) -> Option<Profile> {
    match Profile::new_icc(icc) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::debug!(error = %e, "unreadable ICC profile ignored");
            None
        }
    }
}

/// A conversion from an embedded RGB profile to sRGB, parsed once and applied to each
/// rendition after resizing.
pub struct ToSrgb {
    profile: Profile,
}

impl ToSrgb {
    /// The conversion from the ICC profile `icc`, or `None` when there is nothing to do: an
    /// sRGB profile, a profile that is not RGB (grey), or one lcms2 cannot parse (ignored).
    pub fn new(icc: &[u8]) -> Option<Self> {
        let profile = parse(icc)?;
        (profile.color_space() == ColorSpaceSignature::RgbData && !is_srgb(&profile))
            .then_some(Self { profile })
    }

    /// Converts an 8-bit RGB or RGBA image to sRGB in place (alpha copied); other pixel
    /// types are left alone.
    ///
    /// # Errors
    /// [`ImagingError::Render`] when lcms2 cannot build the transform for the parsed profile.
    pub fn apply(&self, image: &mut DynamicImage) -> Result<(), ImagingError> {
        let (format, pixels) = match image {
            DynamicImage::ImageRgb8(b) => (PixelFormat::RGB_8, &mut **b),
            DynamicImage::ImageRgba8(b) => (PixelFormat::RGBA_8, &mut **b),
            _ => return Ok(()),
        };
        let transform: Transform<u8, u8> = Transform::new_flags(
            &self.profile,
            format,
            &Profile::new_srgb(),
            format,
            Intent::RelativeColorimetric,
            Flags::COPY_ALPHA,
        )
        .map_err(|e| ImagingError::Render(format!("ICC transform: {e}")))?;
        transform.transform_in_place(pixels);
        Ok(())
    }
}

/// Converts interleaved 8-bit CMYK (`width × height × 4` bytes) to sRGB. With `inverted`
/// (an Adobe APP14 marker), 255 means no ink. Without a usable CMYK profile the conversion is
/// the naive `R = (1 − C)(1 − K)`, which is what browsers do for untagged CMYK.
///
/// # Errors
/// [`ImagingError::Render`] when lcms2 cannot build the transform for a profile it parsed.
pub fn cmyk_to_srgb(
    cmyk: &[u8],
    width: u32,
    height: u32,
    icc: Option<&[u8]>,
    inverted: bool,
) -> Result<image::RgbImage, ImagingError> {
    let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
    let profile = icc
        .and_then(parse)
        .filter(|p| p.color_space() == ColorSpaceSignature::CmykData);
    if let Some(profile) = profile {
        let in_format = if inverted {
            PixelFormat::CMYK_8_REV
        } else {
            PixelFormat::CMYK_8
        };
        let transform: Transform<u8, u8> = Transform::new(
            &profile,
            in_format,
            &Profile::new_srgb(),
            PixelFormat::RGB_8,
            Intent::RelativeColorimetric,
        )
        .map_err(|e| ImagingError::Render(format!("ICC transform: {e}")))?;
        transform.transform_pixels(cmyk, &mut rgb);
    } else {
        for (src, dst) in cmyk.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
            let ink = |v: u8| if inverted { 255 - v } else { v };
            let k = 255 - u16::from(ink(src[3]));
            for c in 0..3 {
                dst[c] = ((255 - u16::from(ink(src[c]))) * k / 255) as u8;
            }
        }
    }
    image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| ImagingError::Render("CMYK buffer has the wrong size".into()))
}
