//! Frame counts of animated images, read from the container without decoding any frame, so
//! a 10,000-frame GIF is refused in microseconds.
//!
//! - GIF: the block structure of GIF89a (W3C/CompuServe 1990, sections 18–27): image
//!   descriptors are counted and their LZW data sub-blocks skipped.
//! - WebP: `image-webp` reads the RIFF chunk list (ANMF chunks, WebP container spec).
//! - PNG: the `acTL` chunk's `num_frames` (APNG spec), or 1.

use std::io::Cursor;

use super::{ImageFormat, ImagingError};

/// Frames in the file: 1 for a still image. `stop_after` caps the GIF walk, so a crafted file
/// cannot make the count itself expensive; the result is then `stop_after + 1`.
///
/// # Errors
/// [`ImagingError::Corrupt`] when the WebP chunk list cannot be read. A GIF or PNG whose
/// structure breaks off is counted up to the break; the decoder reports the damage.
pub fn count(bytes: &[u8], format: ImageFormat, stop_after: u32) -> Result<u32, ImagingError> {
    match format {
        ImageFormat::Gif => Ok(gif_frames(bytes, stop_after)),
        ImageFormat::Webp => {
            let d = image_webp::WebPDecoder::new(Cursor::new(bytes))
                .map_err(|e| ImagingError::Corrupt(format!("WebP: {e}")))?;
            Ok(if d.is_animated() {
                d.num_frames().max(1)
            } else {
                1
            })
        }
        ImageFormat::Png => Ok(apng_frames(bytes).unwrap_or(1).max(1)),
        _ => Ok(1),
    }
}

fn gif_frames(b: &[u8], stop_after: u32) -> u32 {
    // Header (6) + logical screen descriptor (7), then the global colour table if flagged.
    let Some(&packed) = b.get(10) else { return 0 };
    let mut pos = 13;
    if packed & 0x80 != 0 {
        pos += 3 << ((packed & 0x07) + 1);
    }
    let mut frames = 0u32;
    // Skips data sub-blocks (length byte, then that many bytes) up to the 0 terminator.
    let skip_sub_blocks = |mut p: usize| -> Option<usize> {
        loop {
            let len = usize::from(*b.get(p)?);
            p += 1;
            if len == 0 {
                return Some(p);
            }
            p += len;
        }
    };
    loop {
        match b.get(pos) {
            Some(0x2C) => {
                frames += 1;
                if frames > stop_after {
                    return frames;
                }
                // Image descriptor: separator + 8 bytes of geometry + packed field.
                let Some(&packed) = b.get(pos + 9) else {
                    return frames;
                };
                pos += 10;
                if packed & 0x80 != 0 {
                    pos += 3 << ((packed & 0x07) + 1);
                }
                pos += 1; // LZW minimum code size
                match skip_sub_blocks(pos) {
                    Some(p) => pos = p,
                    None => return frames,
                }
            }
            Some(0x21) => match skip_sub_blocks(pos + 2) {
                Some(p) => pos = p,
                None => return frames,
            },
            _ => return frames, // trailer (0x3B), or damage
        }
    }
}

fn apng_frames(b: &[u8]) -> Option<u32> {
    let mut pos = 8; // after the signature
    loop {
        let len = u32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let kind = b.get(pos + 4..pos + 8)?;
        match kind {
            b"acTL" => {
                let data = b.get(pos + 8..pos + 12)?;
                return Some(u32::from_be_bytes(data.try_into().ok()?));
            }
            b"IDAT" | b"IEND" => return None,
            _ => pos = pos.checked_add(12 + len)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GIF with `n` 1×1 frames, each behind a graphic control extension.
    fn gif(n: usize) -> Vec<u8> {
        let mut g = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
        for _ in 0..n {
            g.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]);
            g.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0]);
        }
        g.push(0x3B);
        g
    }

    #[test]
    fn gif_frames_are_counted_without_decoding() {
        assert_eq!(count(&gif(1), ImageFormat::Gif, 100).unwrap(), 1);
        assert_eq!(count(&gif(7), ImageFormat::Gif, 100).unwrap(), 7);
        assert_eq!(count(&gif(10_000), ImageFormat::Gif, 1000).unwrap(), 1001);
    }

    #[test]
    fn a_png_without_actl_is_one_frame() {
        let mut png = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(count(&png, ImageFormat::Png, 10).unwrap(), 1);
    }
}
