//! Encoding derivatives: lossy WebP through libwebp (the `webp` crate; `image` only writes
//! lossless WebP), baseline JPEG (4:2:0) through libjpeg-turbo (`turbojpeg`), or lossy AVIF
//! through `image`'s `ravif` (rav1e) encoder at speed [`AVIF_SPEED`], for renditions that ask
//! for it. JPEG has no alpha, so a transparent image is flattened onto white first.
//!
//! Derivatives carry no EXIF or GPS unless their recipe sets `keep_metadata`. Then the
//! original's EXIF (a TIFF structure, EXIF 2.32 §4.5) goes into the JPEG's APP1 segment or the
//! WebP's `EXIF` chunk (with a `VP8X` header, WebP container specification), with its
//! Orientation (0x0112) set to 1, because the pixels are already upright.

use image::{DynamicImage, ImageEncoder};
use kiln_shared::domain::OutputFormat;

use super::ImagingError;

/// rav1e speed for AVIF derivatives (0 slowest … 10 fastest): 8 keeps a 1280 px preview
/// around a second of CPU; lower speeds shrink files a few percent for several times the time.
pub const AVIF_SPEED: u8 = 8;

/// Encodes an 8-bit RGB or RGBA image at `quality` (1–100), with `exif` (a TIFF-structured
/// EXIF block, see [`upright_exif`]) embedded when given (WebP and JPEG; AVIF carries none,
/// which rendition validation enforces). WebP and AVIF keep alpha; JPEG drops it.
///
/// # Errors
/// [`ImagingError::Render`] when the encoder fails.
pub fn encode(
    image: &DynamicImage,
    format: OutputFormat,
    quality: u8,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>, ImagingError> {
    match format {
        OutputFormat::Webp => {
            let encoder = webp::Encoder::from_image(image)
                .map_err(|e| ImagingError::Render(format!("webp: {e}")))?;
            let out = encoder
                .encode_simple(false, f32::from(quality))
                .map_err(|e| ImagingError::Render(format!("webp: {e:?}")))?;
            Ok(match exif {
                Some(exif) => webp_with_exif(&out, image.width(), image.height(), exif)?,
                None => out.to_vec(),
            })
        }
        OutputFormat::Avif => {
            let mut out = Vec::new();
            let encoder = image::codecs::avif::AvifEncoder::new_with_speed_quality(
                &mut out, AVIF_SPEED, quality,
            );
            encoder
                .write_image(
                    image.as_bytes(),
                    image.width(),
                    image.height(),
                    image.color().into(),
                )
                .map_err(|e| ImagingError::Render(format!("avif: {e}")))?;
            Ok(out)
        }
        OutputFormat::Jpeg => {
            let rgb = match image {
                DynamicImage::ImageRgba8(rgba) => flatten_on_white(rgba),
                other => other.to_rgb8(),
            };
            let jpeg_error = |e: turbojpeg::Error| ImagingError::Render(format!("jpeg: {e}"));
            let mut compressor = turbojpeg::Compressor::new().map_err(jpeg_error)?;
            compressor
                .set_quality(i32::from(quality))
                .map_err(jpeg_error)?;
            compressor
                .set_subsamp(turbojpeg::Subsamp::Sub2x2)
                .map_err(jpeg_error)?;
            let out = compressor
                .compress_to_vec(turbojpeg::Image {
                    pixels: rgb.as_raw().as_slice(),
                    width: rgb.width() as usize,
                    pitch: rgb.width() as usize * 3,
                    height: rgb.height() as usize,
                    format: turbojpeg::PixelFormat::RGB,
                })
                .map_err(jpeg_error)?;
            match exif {
                Some(exif) => jpeg_with_exif(&out, exif),
                None => Ok(out),
            }
        }
    }
}

/// `jpeg` with an `APP1` Exif segment (`FF E1`, length, `Exif\0\0`, then the TIFF-structured
/// block: Exif 2.32 §4.5.4 and 4.7.2) inserted right after SOI, where readers look for it.
///
/// # Errors
/// [`ImagingError::Render`] when `jpeg` does not start with SOI or the block does not fit one
/// segment (64 KiB).
fn jpeg_with_exif(jpeg: &[u8], tiff: &[u8]) -> Result<Vec<u8>, ImagingError> {
    let length = u16::try_from(2 + 6 + tiff.len())
        .map_err(|_| ImagingError::Render("EXIF block too large for one APP1 segment".into()))?;
    let body = jpeg
        .strip_prefix(&[0xFF, 0xD8])
        .ok_or_else(|| ImagingError::Render("encoder output has no SOI".into()))?;
    let mut out = Vec::with_capacity(jpeg.len() + tiff.len() + 10);
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(body);
    Ok(out)
}

/// A copy of the EXIF block `tiff` (TIFF header + IFD0…) with IFD0's Orientation (0x0112)
/// set to 1 (top-left), or `None` when it is not a readable TIFF structure.
pub fn upright_exif(tiff: &[u8]) -> Option<Vec<u8>> {
    let mut out = tiff.to_vec();
    let le = match out.get(..4)? {
        [b'I', b'I', 42, 0] => true,
        [b'M', b'M', 0, 42] => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], i: usize| -> Option<u16> {
        let v = [*b.get(i)?, *b.get(i + 1)?];
        Some(if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        })
    };
    let ifd0 = {
        let v: [u8; 4] = out.get(4..8)?.try_into().ok()?;
        (if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }) as usize
    };
    let count = usize::from(u16_at(&out, ifd0)?);
    for n in 0..count {
        let entry = ifd0 + 2 + n * 12;
        if u16_at(&out, entry)? == 0x0112 && u16_at(&out, entry + 2)? == 3 {
            let one = if le {
                1u16.to_le_bytes()
            } else {
                1u16.to_be_bytes()
            };
            out.get_mut(entry + 8..entry + 10)?.copy_from_slice(&one);
        }
    }
    Some(out)
}

/// Rewrites libwebp's simple-format output (`RIFF` + `VP8 `/`VP8L`, or `VP8X` + `ALPH` + `VP8 `
/// when there is alpha) as an extended file with an `EXIF` chunk.
fn webp_with_exif(
    webp: &[u8],
    width: u32,
    height: u32,
    exif: &[u8],
) -> Result<Vec<u8>, ImagingError> {
    let bad = || ImagingError::Render("webp: unexpected container from libwebp".into());
    if webp.get(..4) != Some(b"RIFF") || webp.get(8..12) != Some(b"WEBP") {
        return Err(bad());
    }
    let mut chunks = webp[12..].to_vec();
    const EXIF_FLAG: u8 = 0x08;
    if chunks.get(..4) == Some(b"VP8X") {
        *chunks.get_mut(8).ok_or_else(bad)? |= EXIF_FLAG;
    } else {
        // VP8X: flags (1 byte) + 3 reserved, then canvas width-1 and height-1 (24-bit LE).
        let mut vp8x = b"VP8X".to_vec();
        vp8x.extend_from_slice(&10u32.to_le_bytes());
        vp8x.extend_from_slice(&[EXIF_FLAG, 0, 0, 0]);
        vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&chunks);
        chunks = vp8x;
    }
    chunks.extend_from_slice(b"EXIF");
    chunks.extend_from_slice(&u32::try_from(exif.len()).map_err(|_| bad())?.to_le_bytes());
    chunks.extend_from_slice(exif);
    if exif.len() % 2 == 1 {
        chunks.push(0); // chunks are padded to an even size
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(
        &u32::try_from(chunks.len() + 4)
            .map_err(|_| bad())?
            .to_le_bytes(),
    );
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&chunks);
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A big-endian TIFF with IFD0 = { Orientation = 6 }.
    fn exif_rotated() -> Vec<u8> {
        let mut t = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
        t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
        t
    }

    #[test]
    fn kept_exif_is_upright_and_readable_in_webp_and_jpeg() {
        let exif = upright_exif(&exif_rotated()).unwrap();
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            40,
            30,
            image::Rgb([9, 99, 199]),
        ));
        for format in [OutputFormat::Webp, OutputFormat::Jpeg] {
            let out = encode(&img, format, 80, Some(&exif)).unwrap();
            let read = exif::Reader::new()
                .read_from_container(&mut std::io::Cursor::new(&out))
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let o = read
                .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .unwrap();
            assert_eq!(o.value.get_uint(0), Some(1), "{format:?}");
            let decoded = image::load_from_memory(&out).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (40, 30), "{format:?}");
        }
        let plain = encode(&img, OutputFormat::Webp, 80, None).unwrap();
        let avif = encode(&img, OutputFormat::Avif, 60, None).unwrap();
        assert_eq!(&avif[4..12], b"ftypavif", "an AVIF file");
        let ctx = libheif_rs::HeifContext::read_from_bytes(&avif).unwrap();
        let primary = ctx.primary_image_handle().unwrap();
        assert_eq!(
            (primary.width(), primary.height()),
            (40, 30),
            "libheif reads it back"
        );
        assert!(
            exif::Reader::new()
                .read_from_container(&mut std::io::Cursor::new(&plain))
                .is_err()
        );
    }
}
