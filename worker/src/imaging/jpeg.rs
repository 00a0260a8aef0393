//! JPEG: the header read without decoding (ITU T.81 marker segments), and the decode itself
//! through libjpeg-turbo (`turbojpeg`) with DCT scaling ("shrink-on-load": 1/8 … 8/8), so a
//! 12 MP photo destined for a 1280 px preview is decoded at 1/2 and never at full size.
//!
//! The header walk gives the frame size from SOFn before any pixel is decoded, the ICC profile
//! from APP2 `ICC_PROFILE` chunks (ICC.1:2022 annex B.4), the Adobe APP14 marker that says the
//! CMYK samples are stored inverted, and whether an EOI marker follows the first scan: a file
//! cut short in its scan data is refused rather than decoded with a grey tail.

use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

use super::ImagingError;

/// Most scans a progressive JPEG may have. Each scan is a pass over the whole coefficient
/// buffer, so a file with thousands of tiny scans is a CPU bomb; real encoders write about 10.
const MAX_SCANS: u32 = 500;

/// What the marker segments before the first scan say.
#[derive(Debug, Clone, Default)]
pub struct JpegHeader {
    /// Frame width from SOFn, in pixels, as stored (before EXIF orientation).
    pub width: u32,
    /// Frame height from SOFn, in pixels, as stored.
    pub height: u32,
    /// Colour components: 1 (grey), 3 (YCbCr/RGB) or 4 (CMYK/YCCK).
    pub components: u8,
    /// The ICC profile, reassembled from its APP2 chunks in sequence order.
    pub icc: Option<Vec<u8>>,
    /// An Adobe APP14 segment is present: 4-component samples are stored inverted.
    pub adobe: bool,
}

fn corrupt<T>(m: &str) -> Result<T, ImagingError> {
    Err(ImagingError::Corrupt(format!("JPEG: {m}")))
}

/// Walks the marker segments from SOI to the first SOS (ITU T.81 B.1.1) and checks that an
/// EOI (`FF D9`) follows it. The EOI search starts after SOS because an EXIF thumbnail in APP1
/// carries its own EOI.
///
/// # Errors
/// [`ImagingError::Corrupt`] for a broken segment structure, a missing frame header, a frame
/// height of 0 (DNL-defined heights are not supported), or scan data without EOI.
pub fn read_header(bytes: &[u8]) -> Result<JpegHeader, ImagingError> {
    let mut header = JpegHeader::default();
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut saw_frame = false;
    let mut pos = 2; // after SOI
    let sos = loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let marker = match (bytes.get(pos), bytes.get(pos + 1)) {
            (Some(0xFF), Some(m)) => *m,
            (None, _) | (_, None) => return corrupt("truncated before the first scan"),
            _ => return corrupt("bad marker in the headers"),
        };
        match marker {
            0xDA => break pos,
            0xD9 => return corrupt("EOI before any scan"),
            0x01 | 0xD0..=0xD7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let Some(l) = bytes.get(pos + 2..pos + 4) else {
            return corrupt("truncated in the headers");
        };
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        if len < 2 {
            return corrupt("segment length under 2");
        }
        let Some(body) = bytes.get(pos + 4..pos + 2 + len) else {
            return corrupt("segment runs past the end of the file");
        };
        match marker {
            // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if body.len() < 6 {
                    return corrupt("short frame header");
                }
                header.height = u32::from(u16::from_be_bytes([body[1], body[2]]));
                header.width = u32::from(u16::from_be_bytes([body[3], body[4]]));
                header.components = body[5];
                saw_frame = true;
            }
            0xE2 if body.starts_with(b"ICC_PROFILE\0") && body.len() >= 14 => {
                icc_chunks.push((body[12], &body[14..]));
            }
            0xEE if body.starts_with(b"Adobe") => header.adobe = true,
            _ => {}
        }
        pos += 2 + len;
    };
    if !saw_frame {
        return corrupt("no frame header (SOFn) before the first scan");
    }
    if header.height == 0 || header.width == 0 {
        return corrupt("frame of zero width or height");
    }
    if !bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return corrupt("truncated scan data (no EOI marker)");
    }
    if !icc_chunks.is_empty() {
        icc_chunks.sort_by_key(|(seq, _)| *seq);
        header.icc = Some(
            icc_chunks
                .iter()
                .flat_map(|(_, d)| d.iter().copied())
                .collect(),
        );
    }
    Ok(header)
}

/// The smallest DCT scale `n/8` (n = 1…8) at which a `width` × `height` frame is still at
/// least `min_scale` times its full size in both directions. `min_scale` ≥ 1 gives 8/8.
pub fn scale_for(min_scale: f64) -> ScalingFactor {
    let n = (1..=8usize)
        .find(|n| *n as f64 / 8.0 >= min_scale)
        .unwrap_or(8);
    ScalingFactor::new(n, 8)
}

/// Pixels from [`decode`], as stored (EXIF orientation not yet applied).
#[derive(Debug)]
pub enum JpegPixels {
    /// Interleaved 8-bit RGB (grey and YCbCr files are converted by libjpeg-turbo).
    Rgb {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
        /// `width × height × 3` bytes.
        data: Vec<u8>,
    },
    /// Interleaved 8-bit CMYK as stored (inverted when the header has an Adobe marker).
    Cmyk {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
        /// `width × height × 4` bytes.
        data: Vec<u8>,
    },
}

fn tj_error(e: turbojpeg::Error) -> ImagingError {
    ImagingError::Corrupt(format!("JPEG: {e}"))
}

/// Decodes a JPEG whose header was checked by [`read_header`] and the caller's limits, at
/// `scale` (from [`scale_for`]).
///
/// # Errors
/// [`ImagingError::Corrupt`] when libjpeg-turbo cannot decode the data or the file has more
/// than 500 scans.
pub fn decode(
    bytes: &[u8],
    header: &JpegHeader,
    scale: ScalingFactor,
) -> Result<JpegPixels, ImagingError> {
    let mut d = Decompressor::new().map_err(tj_error)?;
    d.set_scan_limit(MAX_SCANS).map_err(tj_error)?;
    let tj_header = d.read_header(bytes).map_err(tj_error)?;
    d.set_scaling_factor(scale).map_err(tj_error)?;
    let scaled = tj_header.scaled(scale);
    let format = if header.components == 4 {
        PixelFormat::CMYK
    } else {
        PixelFormat::RGB
    };
    let pitch = scaled.width * format.size();
    let mut data = vec![0u8; pitch * scaled.height];
    d.decompress(
        bytes,
        Image {
            pixels: data.as_mut_slice(),
            width: scaled.width,
            pitch,
            height: scaled.height,
            format,
        },
    )
    .map_err(tj_error)?;
    let (width, height) = (dim(scaled.width)?, dim(scaled.height)?);
    Ok(if header.components == 4 {
        JpegPixels::Cmyk {
            width,
            height,
            data,
        }
    } else {
        JpegPixels::Rgb {
            width,
            height,
            data,
        }
    })
}

fn dim(v: usize) -> Result<u32, ImagingError> {
    u32::try_from(v).map_err(|_| ImagingError::Corrupt("JPEG: dimension overflow".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_the_smallest_eighth_that_still_covers() {
        assert_eq!(scale_for(0.01), ScalingFactor::new(1, 8));
        assert_eq!(scale_for(0.125), ScalingFactor::new(1, 8));
        assert_eq!(scale_for(0.13), ScalingFactor::new(2, 8));
        assert_eq!(scale_for(0.5), ScalingFactor::new(4, 8));
        assert_eq!(scale_for(1.0), ScalingFactor::new(8, 8));
        assert_eq!(scale_for(3.0), ScalingFactor::new(8, 8));
    }

    #[test]
    fn header_reads_a_huge_sof_without_decoding() {
        // SOI, SOF0 declaring 65000 x 65000 x 3, SOS, one byte of scan, EOI.
        let mut f = vec![
            0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 8, 0xFD, 0xE8, 0xFD, 0xE8, 3,
        ];
        f.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        f.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x00, 0xFF, 0xD9]);
        let h = read_header(&f).unwrap();
        assert_eq!((h.width, h.height, h.components), (65000, 65000, 3));
    }
}
