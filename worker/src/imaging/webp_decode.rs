//! Still WebP decoding through libwebp (`libwebp-sys`, the library the `webp` encoder crate
//! already builds), scaled while decoding: `WebPDecoderOptions::use_scaling` makes libwebp's
//! area-averaging rescaler emit each row at the output size as it is decoded (libwebp
//! `src/webp/decode.h`, "Advanced decoding parametrization"). A lossy 16 MP WebP shrunk to a
//! 1280 px preview never exists at full size in memory, and the YUV→RGB conversion runs on the
//! small image. Animated WebP (ANIM/ANMF) is not handled here: libwebp's still decoder refuses
//! it, and `decode` takes the first frame through `image-webp` instead.

use std::mem::MaybeUninit;

use image::{DynamicImage, RgbImage, RgbaImage};
use libwebp_sys::{
    VP8StatusCode, WEBP_CSP_MODE, WebPDecode, WebPDecoderConfig, WebPFreeDecBuffer,
    WebPInitDecoderConfig,
};

use super::ImagingError;

/// Decodes the still WebP `bytes` (whose bitstream is `width` × `height`, alpha if `alpha`) to
/// `out_width` × `out_height` 8-bit RGB, or RGBA when `alpha`, in the file's colour space (no
/// ICC conversion), not oriented. `out_*` must be between 1 and the full size; at the full size
/// libwebp does not rescale.
///
/// # Errors
/// [`ImagingError::Corrupt`] when libwebp reports a bitstream error or truncated data;
/// [`ImagingError::Unsupported`] for a feature libwebp does not decode (e.g. an animation);
/// [`ImagingError::Render`] for an invalid size (a bug).
pub fn decode_scaled(
    bytes: &[u8],
    (width, height): (u32, u32),
    alpha: bool,
    (out_width, out_height): (u32, u32),
) -> Result<DynamicImage, ImagingError> {
    if out_width == 0 || out_height == 0 || out_width > width || out_height > height {
        return Err(ImagingError::Render(format!(
            "WebP: cannot scale {width}x{height} to {out_width}x{out_height}"
        )));
    }
    let channels = if alpha { 4 } else { 3 };
    let stride = out_width as usize * channels;
    let mut pixels = vec![0u8; stride * out_height as usize];
    let int = |v: u32| i32::try_from(v).map_err(|_| ImagingError::Render("WebP: size".into()));
    // The workspace denies unsafe code; this is its one use: no safe binding exposes
    // `WebPDecoderConfig` (the `webp` crate decodes at full size only).
    // SAFETY: `config` is initialised by WebPInitDecoderConfig before use. The output buffer
    // is ours (`is_external_memory`), `pixels` outlives the call, and its size and stride are
    // exactly what libwebp writes for `out_width` × `out_height` in the chosen mode.
    #[allow(unsafe_code)]
    let status = unsafe {
        let mut config = MaybeUninit::<WebPDecoderConfig>::zeroed();
        if !WebPInitDecoderConfig(config.as_mut_ptr()) {
            return Err(ImagingError::Render(
                "libwebp: decoder ABI version mismatch".into(),
            ));
        }
        let mut config = config.assume_init();
        if out_width != width || out_height != height {
            config.options.use_scaling = 1;
            config.options.scaled_width = int(out_width)?;
            config.options.scaled_height = int(out_height)?;
        }
        config.output.colorspace = if alpha {
            WEBP_CSP_MODE::MODE_RGBA
        } else {
            WEBP_CSP_MODE::MODE_RGB
        };
        config.output.is_external_memory = 1;
        config.output.u.RGBA.rgba = pixels.as_mut_ptr();
        config.output.u.RGBA.stride = int(stride as u32)?;
        config.output.u.RGBA.size = pixels.len();
        let status = WebPDecode(bytes.as_ptr(), bytes.len(), &mut config);
        WebPFreeDecBuffer(&mut config.output);
        status
    };
    match status {
        VP8StatusCode::VP8_STATUS_OK => {}
        VP8StatusCode::VP8_STATUS_UNSUPPORTED_FEATURE => {
            return Err(ImagingError::Unsupported(
                "WebP: a feature libwebp does not decode".into(),
            ));
        }
        VP8StatusCode::VP8_STATUS_BITSTREAM_ERROR | VP8StatusCode::VP8_STATUS_NOT_ENOUGH_DATA => {
            return Err(ImagingError::Corrupt(format!(
                "WebP: truncated or malformed ({status:?})"
            )));
        }
        other => return Err(ImagingError::Render(format!("libwebp: {other:?}"))),
    }
    let short = || ImagingError::Render("WebP: output buffer has the wrong size".into());
    Ok(if alpha {
        DynamicImage::ImageRgba8(
            RgbaImage::from_raw(out_width, out_height, pixels).ok_or_else(short)?,
        )
    } else {
        DynamicImage::ImageRgb8(
            RgbImage::from_raw(out_width, out_height, pixels).ok_or_else(short)?,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, _| {
            image::Rgb([(x * 255 / width) as u8, 90, 200])
        });
        webp::Encoder::from_rgb(img.as_raw(), width, height)
            .encode(90.0)
            .to_vec()
    }

    #[test]
    fn scales_while_decoding_and_keeps_the_picture() {
        let bytes = lossy(400, 200);
        let full = decode_scaled(&bytes, (400, 200), false, (400, 200)).unwrap();
        let half = decode_scaled(&bytes, (400, 200), false, (100, 50)).unwrap();
        assert_eq!((half.width(), half.height()), (100, 50));
        let (f, h) = (full.to_rgb8(), half.to_rgb8());
        // The gradient runs left to right: same colour at the same relative position.
        for x in [10u32, 50, 90] {
            let a = f.get_pixel(x * 4 + 2, 100)[0];
            let b = h.get_pixel(x, 25)[0];
            assert!(a.abs_diff(b) <= 6, "x={x}: full {a}, scaled {b}");
        }
    }

    #[test]
    fn truncated_data_is_corrupt_and_bad_sizes_are_refused() {
        let bytes = lossy(64, 64);
        let err = decode_scaled(&bytes[..bytes.len() / 2], (64, 64), false, (32, 32)).unwrap_err();
        assert!(matches!(err, ImagingError::Corrupt(_)), "{err:?}");
        assert!(decode_scaled(&bytes, (64, 64), false, (128, 32)).is_err());
        assert!(decode_scaled(&bytes, (64, 64), false, (0, 32)).is_err());
    }
}
