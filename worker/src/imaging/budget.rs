//! The memory budget per image (`worker.memory_budget_bytes`), estimated from the header
//! before any pixel is decoded.
//!
//! An image can be small on disk and huge decoded: a 100 MP interlaced 16-bit RGBA PNG is
//! about 1 MB of zeros and 800 MB of pixels. The pixel limit alone lets that through, so each
//! decode path first computes the peak bytes it will hold: the decoder's output buffer, plus
//! the copies the path makes (a conversion to 8-bit, a 90° rotation for EXIF orientation,
//! libheif's planes beside the interleaved output), plus the largest rendition's buffers. A
//! path that streams (PNG row by row, JPEG and WebP scaled while decoding) is charged for its
//! reduced output only. Over the budget, the image fails `image_too_large` before decoding;
//! the child's `RLIMIT_AS` backs this up for what the estimate cannot see.

use kiln_shared::domain::Rendition;

use super::{ImagingError, Limits};

/// Bytes of one 8-bit RGBA pixel of a rendition's resize and encode buffers (two copies).
const RENDITION_BYTES_PER_PIXEL: u64 = 2 * 4;

/// The largest rendition's working set, in bytes, for a `width` × `height` original.
pub fn renditions(width: u32, height: u32, renditions: &[Rendition]) -> u64 {
    renditions
        .iter()
        .map(|r| {
            let (w, h) = r.target_size(width, height);
            u64::from(w) * u64::from(h) * RENDITION_BYTES_PER_PIXEL
        })
        .max()
        .unwrap_or(0)
}

/// The shape of one decode, as the header tells it.
#[derive(Debug, Clone, Copy)]
pub struct Decode {
    /// Width the decoder produces, in pixels (after any scaling while decoding).
    pub width: u32,
    /// Height the decoder produces, in pixels.
    pub height: u32,
    /// Bytes per pixel of the decoder's output (e.g. 8 for 16-bit RGBA, 3 for 8-bit RGB).
    pub decoder_bytes_per_pixel: u64,
    /// Bytes per pixel Kiln keeps (3 for RGB, 4 with alpha; always 8-bit).
    pub kept_bytes_per_pixel: u64,
    /// Extra bytes per pixel the decoder holds beside its output (libheif's YCbCr planes).
    pub side_bytes_per_pixel: u64,
    /// Whether the orientation turns the image by 90° (a full-size copy).
    pub rotates: bool,
}

impl Decode {
    /// Peak bytes: the decoder's buffers, then the larger of the 8-bit conversion (both
    /// buffers live at once) and the rotation (two of the same size).
    pub fn peak(&self) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let decoded = pixels.saturating_mul(self.decoder_bytes_per_pixel);
        let side = pixels.saturating_mul(self.side_bytes_per_pixel);
        let kept = pixels.saturating_mul(self.kept_bytes_per_pixel);
        let converts = self.decoder_bytes_per_pixel != self.kept_bytes_per_pixel;
        let convert = if converts { decoded + kept } else { decoded };
        let rotate = if self.rotates { 2 * decoded } else { 0 };
        (decoded + side).max(convert).max(rotate)
    }
}

/// Checks `decode` plus the renditions' working set against `limits.memory_budget_bytes`.
/// `full` is the original's displayed size (renditions are cut from it).
///
/// # Errors
/// [`ImagingError::TooLarge`] naming the estimate and the budget, in MiB.
pub fn check(
    limits: &Limits,
    decode: &Decode,
    full: (u32, u32),
    wanted: &[Rendition],
) -> Result<(), ImagingError> {
    let need = decode
        .peak()
        .saturating_add(renditions(full.0, full.1, wanted));
    if need > limits.memory_budget_bytes {
        return Err(ImagingError::TooLarge(format!(
            "{}x{} needs about {} MiB to decode, over the {} MiB memory budget",
            full.0,
            full.1,
            need.div_ceil(1 << 20),
            limits.memory_budget_bytes.div_ceil(1 << 20)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from_settings(&kiln_shared::config::WorkerSettings::default())
    }

    #[test]
    fn a_100_mp_16_bit_rgba_png_is_over_the_default_budget() {
        let d = Decode {
            width: 10_000,
            height: 10_000,
            decoder_bytes_per_pixel: 8,
            kept_bytes_per_pixel: 4,
            side_bytes_per_pixel: 0,
            rotates: false,
        };
        assert_eq!(d.peak(), 1_200_000_000);
        let err = check(&limits(), &d, (10_000, 10_000), &Rendition::defaults()).unwrap_err();
        assert!(matches!(err, ImagingError::TooLarge(_)), "{err}");
    }

    #[test]
    fn a_24_mp_8_bit_rgb_tiff_fits() {
        let d = Decode {
            width: 6000,
            height: 4000,
            decoder_bytes_per_pixel: 3,
            kept_bytes_per_pixel: 3,
            side_bytes_per_pixel: 0,
            rotates: true,
        };
        assert_eq!(d.peak(), 144_000_000);
        check(&limits(), &d, (6000, 4000), &Rendition::defaults()).unwrap();
    }
}
