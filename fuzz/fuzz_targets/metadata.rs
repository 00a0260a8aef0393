//! The header-only readers on arbitrary bytes: format sniffing, EXIF, the frame count of
//! every container format, and the JPEG marker walk. None of them decodes pixels, so this
//! target runs orders of magnitude faster than `pipeline` and goes deeper into the parsers.
#![no_main]

use kiln_worker::imaging::{ImageFormat, frames, jpeg, metadata, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sniffed = sniff::sniff(data);
    let _ = metadata::read_exif(data);
    // Every format, not only the sniffed one: the readers must survive a lying signature.
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Webp,
        ImageFormat::Tiff,
        ImageFormat::Heif,
        ImageFormat::Avif,
    ] {
        let _ = frames::count(data, format, 50);
    }
    let _ = jpeg::read_header(data);
    if let Some(format) = sniffed {
        let _ = format.as_str();
    }
});
