//! Format sniffing from magic bytes. The extension and the client's Content-Type are never
//! trusted.
//!
//! Signatures: JPEG `FF D8 FF` (ITU T.81), PNG `89 50 4E 47 0D 0A 1A 0A` (RFC 2083), GIF
//! `GIF87a`/`GIF89a`, WebP `RIFF....WEBP` (RFC 9649), TIFF `II*\0` / `MM\0*` (TIFF 6.0),
//! HEIF/AVIF: an ISO-BMFF `ftyp` box whose major or compatible brands name a HEIF or AVIF
//! brand (ISO/IEC 23008-12, AV1 Image File Format).

/// A format Kiln decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ImageFormat {
    /// JPEG/JFIF/EXIF.
    Jpeg,
    /// PNG.
    Png,
    /// GIF (first frame is rendered).
    Gif,
    /// WebP (lossy, lossless, animated).
    Webp,
    /// TIFF.
    Tiff,
    /// HEIF/HEIC (HEVC-coded).
    Heif,
    /// AVIF (AV1-coded HEIF).
    Avif,
}

impl ImageFormat {
    /// Name stored in metadata, e.g. `jpeg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Tiff => "tiff",
            Self::Heif => "heif",
            Self::Avif => "avif",
        }
    }
}

const HEIF_BRANDS: [&[u8; 4]; 8] = [
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
];
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// The format of `bytes`, or `None` when no known signature matches.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some(ImageFormat::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ImageFormat::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageFormat::Gif),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(ImageFormat::Webp),
        [b'I', b'I', 0x2A, 0x00, ..] | [b'M', b'M', 0x00, 0x2A, ..] => Some(ImageFormat::Tiff),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => sniff_ftyp(bytes),
        _ => None,
    }
}

/// Reads the `ftyp` box: major brand at 8..12, compatible brands from 16 to the box end. AVIF
/// wins when its brand is present (AVIF files also carry `mif1`).
fn sniff_ftyp(bytes: &[u8]) -> Option<ImageFormat> {
    let size = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let end = size.clamp(16, 4096).min(bytes.len());
    let brands: Vec<&[u8]> = std::iter::once(bytes.get(8..12)?)
        .chain(bytes.get(16..end).unwrap_or(&[]).chunks_exact(4))
        .collect();
    let has = |set: &[&[u8; 4]]| brands.iter().any(|b| set.iter().any(|s| &s[..] == *b));
    if has(&AVIF_BRANDS) {
        Some(ImageFormat::Avif)
    } else if has(&HEIF_BRANDS) {
        Some(ImageFormat::Heif)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_signatures_not_names() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(sniff(b"GIF89a\x01\x00"), Some(ImageFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(sniff(b"MM\0*\0\0\0\x08"), Some(ImageFormat::Tiff));
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"),
            Some(ImageFormat::Heif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"),
            Some(ImageFormat::Avif)
        );
        assert_eq!(sniff(b"\0\0\0\x14ftypisom\0\0\0\0mp41"), None);
        assert_eq!(sniff(b"hello, world"), None);
        assert_eq!(sniff(b""), None);
    }
}
