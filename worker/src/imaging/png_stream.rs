//! PNG shrink-on-load: the image is decoded row by row (`png`'s `Reader::next_row`) and each
//! block of `factor` × `factor` pixels is averaged into one output pixel as the rows arrive, so
//! a 5120 × 2880 PNG shrunk for a 1280 px preview never exists at full size in memory: the
//! decoder holds one row and the zlib window, the shrinker one row of sums. This is libvips'
//! approach too (box shrink by an integer factor while loading, then a Lanczos reduce to the
//! exact size, which `render` does).
//!
//! Averaging is done on premultiplied values when the image has alpha, so transparent pixels
//! do not bleed their (invisible) colour into the edges. Interlaced (Adam7) and animated PNGs
//! are not handled here; `decode` gives them to `image`'s whole-frame decoder.

use std::io::Cursor;

use image::{DynamicImage, RgbImage, RgbaImage};
use png::{BitDepth, ColorType, Transformations};

use super::ImagingError;

fn png_error(e: png::DecodingError) -> ImagingError {
    match e {
        png::DecodingError::LimitsExceeded => ImagingError::TooLarge("PNG: decoder limit".into()),
        other => ImagingError::Corrupt(format!("PNG: {other}")),
    }
}

/// Decodes the non-interlaced PNG `bytes` and shrinks it by `factor` (≥ 1) on both axes while
/// decoding: the output is ⌈width / factor⌉ × ⌈height / factor⌉ (edge blocks average the
/// pixels they have), 8-bit RGBA when the PNG has alpha (an alpha channel or `tRNS`), else RGB.
/// Grey becomes RGB; 16-bit samples are rounded to 8 bits after averaging. No colour
/// conversion and no orientation. `max_alloc` caps the decoder's buffers, in bytes.
///
/// # Errors
/// [`ImagingError::Corrupt`] for truncated or malformed data, [`ImagingError::TooLarge`] when
/// the decoder would need more than `max_alloc`, [`ImagingError::Unsupported`] for an
/// interlaced PNG.
pub fn decode_shrunk(
    bytes: &[u8],
    factor: u32,
    max_alloc: u64,
) -> Result<DynamicImage, ImagingError> {
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: usize::try_from(max_alloc).unwrap_or(usize::MAX),
        },
    );
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(png_error)?;
    if reader.info().interlaced {
        return Err(ImagingError::Unsupported(
            "interlaced PNG has no row-by-row shrink".into(),
        ));
    }
    let (width, height) = reader.info().size();
    let (color, depth) = reader.output_color_type();
    let channels = match color {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => {
            return Err(ImagingError::Render("PNG: palette not expanded".into()));
        }
    };
    let wide = depth == BitDepth::Sixteen;
    let alpha = channels % 2 == 0;
    let factor = factor.max(1);
    let mut shrinker = Shrinker::new(width, height, factor, alpha, if wide { 65535 } else { 255 });
    let mut pixel = [0u32; 4];
    while let Some(row) = reader.next_row().map_err(png_error)? {
        let data = row.data();
        for x in 0..width as usize {
            for (c, v) in pixel.iter_mut().enumerate().take(channels) {
                let i = x * channels + c;
                *v = if wide {
                    u32::from(u16::from_be_bytes([data[2 * i], data[2 * i + 1]]))
                } else {
                    u32::from(data[i])
                };
            }
            let (rgb, a) = match channels {
                1 => ([pixel[0]; 3], None),
                2 => ([pixel[0]; 3], Some(pixel[1])),
                3 => ([pixel[0], pixel[1], pixel[2]], None),
                _ => ([pixel[0], pixel[1], pixel[2]], Some(pixel[3])),
            };
            shrinker.add(x as u32, rgb, a);
        }
        shrinker.end_row();
    }
    if shrinker.rows_seen != height {
        return Err(ImagingError::Corrupt(format!(
            "PNG: {} of {height} rows",
            shrinker.rows_seen
        )));
    }
    shrinker.finish()
}

/// Sums `factor` × `factor` blocks of one output row at a time.
struct Shrinker {
    height: u32,
    factor: u32,
    alpha: bool,
    max: u64,
    out_width: u32,
    out_height: u32,
    /// Per output pixel of the current output row: premultiplied R, G, B sums, alpha sum,
    /// pixel count.
    sums: Vec<[u64; 5]>,
    rows_seen: u32,
    out: Vec<u8>,
}

impl Shrinker {
    fn new(width: u32, height: u32, factor: u32, alpha: bool, max: u64) -> Self {
        let out_width = width.div_ceil(factor);
        let out_height = height.div_ceil(factor);
        let channels = if alpha { 4 } else { 3 };
        Self {
            height,
            factor,
            alpha,
            max,
            out_width,
            out_height,
            sums: vec![[0; 5]; out_width as usize],
            rows_seen: 0,
            out: Vec::with_capacity(out_width as usize * out_height as usize * channels),
        }
    }

    fn add(&mut self, x: u32, rgb: [u32; 3], alpha: Option<u32>) {
        let s = &mut self.sums[(x / self.factor) as usize];
        let a = u64::from(alpha.unwrap_or(self.max as u32));
        for c in 0..3 {
            s[c] += u64::from(rgb[c]) * a;
        }
        s[3] += a;
        s[4] += 1;
    }

    fn end_row(&mut self) {
        self.rows_seen += 1;
        if self.rows_seen.is_multiple_of(self.factor) || self.rows_seen == self.height {
            self.emit();
        }
    }

    /// Appends the current output row as 8-bit and clears the sums.
    fn emit(&mut self) {
        let max = self.max;
        let to8 = |v: u64, scale: u64| ((v * 255 * 2 + scale) / (scale * 2)).min(255) as u8;
        for s in &mut self.sums {
            let [r, g, b, a, n] = *s;
            // Colour = Σ(c·a) / Σa (opaque pixels have a = max); alpha = Σa / n.
            for v in [r, g, b] {
                self.out.push(if a == 0 { 0 } else { to8(v, a * max) });
            }
            if self.alpha {
                self.out.push(to8(a, max * n.max(1)));
            }
            *s = [0; 5];
        }
    }

    fn finish(self) -> Result<DynamicImage, ImagingError> {
        let short = || ImagingError::Render("PNG shrink: wrong output size".into());
        Ok(if self.alpha {
            DynamicImage::ImageRgba8(
                RgbaImage::from_raw(self.out_width, self.out_height, self.out).ok_or_else(short)?,
            )
        } else {
            DynamicImage::ImageRgb8(
                RgbImage::from_raw(self.out_width, self.out_height, self.out).ok_or_else(short)?,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_png(
        width: u32,
        height: u32,
        color: ColorType,
        depth: BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(data).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn averages_blocks_and_keeps_partial_edges() {
        // 5 × 3 RGB: columns alternate 0 and 200 in red, so a 2 × 2 block averages to 100.
        let data: Vec<u8> = (0..3)
            .flat_map(|_| (0..5).flat_map(|x| [if x % 2 == 0 { 0 } else { 200 }, 50, 255]))
            .collect();
        let png = encode_png(5, 3, ColorType::Rgb, BitDepth::Eight, &data);
        let img = decode_shrunk(&png, 2, 1 << 30).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (3, 2));
        assert_eq!(img.get_pixel(0, 0).0, [100, 50, 255]);
        // The last column is a lone red-0 column.
        assert_eq!(img.get_pixel(2, 1).0, [0, 50, 255]);
    }

    #[test]
    fn alpha_is_premultiplied_and_16_bit_is_rounded() {
        // 2 × 1 RGBA16: an opaque white pixel beside a transparent black one.
        let px = |v: u16, a: u16| {
            [
                v.to_be_bytes(),
                v.to_be_bytes(),
                v.to_be_bytes(),
                a.to_be_bytes(),
            ]
            .concat()
        };
        let data = [px(65535, 65535), px(0, 0)].concat();
        let png = encode_png(2, 1, ColorType::Rgba, BitDepth::Sixteen, &data);
        let img = decode_shrunk(&png, 2, 1 << 30).unwrap().to_rgba8();
        // White at half coverage, not grey.
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255, 128]);
    }

    #[test]
    fn truncated_data_is_corrupt() {
        let data = vec![77u8; 64 * 64 * 3];
        let png = encode_png(64, 64, ColorType::Rgb, BitDepth::Eight, &data);
        let err = decode_shrunk(&png[..png.len() / 2], 4, 1 << 30).unwrap_err();
        assert!(matches!(err, ImagingError::Corrupt(_)), "{err:?}");
    }
}
