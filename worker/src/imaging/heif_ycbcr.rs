//! HEIF/AVIF shrink-on-load in Y′CbCr: the codec's 8-bit 4:2:0 planes are resized straight to
//! the size the renditions need (fast_image_resize, Lanczos3; the half-size chroma planes are
//! upsampled and reduced in the same pass), and only those few pixels are converted to RGB.
//! libheif's own path would first upsample the chroma of the full image, convert all of it to
//! RGB and hand over a full-size buffer for us to copy: for a 12 MP iPhone photo that is two
//! 36 MB buffers and three full-image passes this path does not need. Resizing commutes with
//! the Y′CbCr → R′G′B′ matrix (both are linear on the same gamma-encoded values), so the
//! result matches resizing the converted image, up to rounding and clipping.
//!
//! The matrix and range follow libheif 1.23 (`nclx.cc`, `color-conversion/yuv2rgb.cc`): the
//! decoded image's nclx `matrix_coefficients` (ITU-T H.273 table 4) give Kr and Kb, unspecified
//! means BT.601, no nclx means BT.601 full range; limited range scales Y′ by 255/219 after
//! subtracting 16 and chroma by 255/224 (libheif's 1.1689 and 1.1429).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};
use libheif_rs::{ColorProfileNCLX, MatrixCoefficients, Plane};

use super::ImagingError;

/// The Y, Cb and Cr planes of a decoded image, borrowed from libheif.
pub type YCbCrPlanes<'a> = (
    &'a Plane<&'a [u8]>,
    &'a Plane<&'a [u8]>,
    &'a Plane<&'a [u8]>,
);

/// R′G′B′ from Y′CbCr: `R = Y + r_cr·Cr`, `G = Y + g_cb·Cb + g_cr·Cr`, `B = Y + b_cb·Cb`,
/// with Cb and Cr centred on 0, plus the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matrix {
    r_cr: f32,
    g_cb: f32,
    g_cr: f32,
    b_cb: f32,
    full_range: bool,
}

impl Matrix {
    /// The matrix for an nclx profile (`None`: no profile, BT.601 full range), or `None` when
    /// the coefficients are not a plain Kr/Kb matrix (identity/GBR, YCgCo, chromaticity-derived,
    /// ICtCp, …): those take libheif's RGB path.
    pub fn for_nclx(nclx: Option<&ColorProfileNCLX>) -> Option<Self> {
        let (coefficients, full_range) = match nclx {
            Some(n) => (n.matrix_coefficients(), n.full_range_flag() != 0),
            None => (MatrixCoefficients::Unspecified, true),
        };
        use MatrixCoefficients as M;
        let (kr, kb) = match coefficients {
            M::ITU_R_BT_709_5 => (0.2126, 0.0722),
            M::US_FCC_T47 => (0.30, 0.11),
            M::ITU_R_BT_470_6_System_B_G | M::ITU_R_BT_601_6 | M::Unspecified => (0.299, 0.114),
            M::SMPTE_240M => (0.212, 0.087),
            M::ITU_R_BT_2020_2_NonConstantLuminance => (0.2627, 0.0593),
            _ => return None,
        };
        let (kr, kb): (f32, f32) = (kr, kb);
        Some(Self {
            r_cr: 2.0 * (1.0 - kr),
            g_cb: 2.0 * kb * (1.0 - kb) / (kb + kr - 1.0),
            g_cr: 2.0 * kr * (1.0 - kr) / (kb + kr - 1.0),
            b_cb: 2.0 * (1.0 - kb),
            full_range,
        })
    }

    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (mut y, mut cb, mut cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
        if !self.full_range {
            y = (y - 16.0) * 1.1689;
            cb *= 1.1429;
            cr *= 1.1429;
        }
        let clip = |v: f32| (v + 0.5).clamp(0.0, 255.0) as u8;
        [
            clip(y + self.r_cr * cr),
            clip(y + self.g_cb * cb + self.g_cr * cr),
            clip(y + self.b_cb * cb),
        ]
    }
}

/// Resizes one 8-bit plane (rows `stride` bytes apart) to `width` × `height`.
fn resize_plane(plane: &Plane<&[u8]>, width: u32, height: u32) -> Result<Vec<u8>, ImagingError> {
    let render = |e: String| ImagingError::Render(format!("Y′CbCr resize: {e}"));
    let rows = plane
        .data
        .get(..plane.stride * plane.height as usize)
        .ok_or_else(|| ImagingError::Corrupt("HEIF plane shorter than its size".into()))?;
    // fast_image_resize reads past a crop box, so padded rows are compacted first (libheif
    // pads rows to its alignment; a 4032 px luma row usually needs no padding).
    let w = plane.width as usize;
    let compact: std::borrow::Cow<'_, [u8]> = if plane.stride == w {
        rows.into()
    } else {
        rows.chunks(plane.stride)
            .flat_map(|row| &row[..w])
            .copied()
            .collect::<Vec<u8>>()
            .into()
    };
    let src = ImageRef::new(plane.width, plane.height, &compact, PixelType::U8)
        .map_err(|e| render(e.to_string()))?;
    let mut dst = Image::new(width, height, PixelType::U8);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| render(e.to_string()))?;
    Ok(dst.into_vec())
}

/// `width` × `height` sRGB-encoded RGB from the Y, Cb and Cr planes of a decoded 8-bit image
/// (any chroma subsampling), converted with `matrix`.
///
/// # Errors
/// [`ImagingError::Corrupt`] when a plane is shorter than its declared size;
/// [`ImagingError::Render`] when the resizer fails.
pub fn to_rgb(
    (y, cb, cr): YCbCrPlanes<'_>,
    matrix: &Matrix,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImagingError> {
    let (y, cb, cr) = (
        resize_plane(y, width, height)?,
        resize_plane(cb, width, height)?,
        resize_plane(cr, width, height)?,
    );
    let mut rgb = Vec::with_capacity(y.len() * 3);
    for ((&y, &cb), &cr) in y.iter().zip(&cb).zip(&cr) {
        rgb.extend_from_slice(&matrix.rgb(y, cb, cr));
    }
    RgbImage::from_raw(width, height, rgb)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| ImagingError::Render("Y′CbCr: wrong output size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_full_range_matches_the_textbook_values() {
        let m = Matrix::for_nclx(None).unwrap();
        assert_eq!(m.rgb(128, 128, 128), [128, 128, 128]);
        // Pure red in BT.601 full range: Y 76, Cb 85, Cr 255.
        let [r, g, b] = m.rgb(76, 85, 255);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }

    #[test]
    fn resizing_a_strided_plane_ignores_the_padding() {
        // 4 × 2 plane of 100 in rows 8 bytes apart; the padding is 255.
        let data: Vec<u8> = (0..2)
            .flat_map(|_| [100, 100, 100, 100, 255, 255, 255, 255])
            .collect();
        let plane = Plane {
            data: data.as_slice(),
            width: 4,
            height: 2,
            stride: 8,
            bits_per_pixel: 8,
            storage_bits_per_pixel: 8,
        };
        assert_eq!(resize_plane(&plane, 2, 1).unwrap(), vec![100, 100]);
    }
}
