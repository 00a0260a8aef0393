//! Inputs found by `scripts/fuzz` (cargo-fuzz, fuzz/fuzz_targets/), minimised with
//! `cargo fuzz tmin`, kept so each crash stays fixed. Every test runs the pipeline with the
//! fuzz target's limits and renditions and only asserts that it returns, `Ok` or `Err`,
//! without panicking. A test still marked `#[ignore]` is a crash whose fix is pending.

use kiln_shared::domain::{Fit, OutputFormat, Rendition};
use kiln_worker::imaging::{self, Limits};

/// The `pipeline` fuzz target's limits (fuzz/fuzz_targets/pipeline.rs).
const LIMITS: Limits = Limits {
    max_pixels: 4_000_000,
    max_dimension: 4096,
    max_encoded_bytes: 4 * 1024 * 1024,
    max_frames: 50,
    memory_budget_bytes: 256 * 1024 * 1024,
    accept: None,
};

/// The `pipeline` fuzz target's one rendition.
fn renditions() -> Vec<Rendition> {
    vec![Rendition {
        name: "thumb".into(),
        max_width: 64,
        max_height: 64,
        fit: Fit::Cover,
        format: OutputFormat::Webp,
        quality: 50,
        keep_metadata: false,
        version: 1,
    }]
}

/// Runs the pipeline on `bytes`; the test fails only if it panics.
fn survives(bytes: &[u8]) {
    let _ = imaging::process(bytes, &renditions(), &LIMITS);
}

/// Non-crash inputs from each path, so the file tests something before any crash is found.
#[test]
fn garbage_and_empty_inputs_are_errors() {
    assert!(imaging::process(b"", &renditions(), &LIMITS).is_err());
    assert!(imaging::process(b"\xFF\xD8\xFF", &renditions(), &LIMITS).is_err());
    assert!(imaging::process(b"GIF89a", &renditions(), &LIMITS).is_err());
    assert!(imaging::process(b"RIFF\0\0\0\0WEBPVP8 ", &renditions(), &LIMITS).is_err());
    assert!(
        imaging::process(
            b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
            &renditions(),
            &LIMITS
        )
        .is_err()
    );
    survives(b"\x89PNG\r\n\x1a\n");
}

/// xorshift64: a fixed-seed generator, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Seeds big enough (640 × 480) that the 64 px thumb takes each shrink-on-load path: PNG row
/// shrink (8-bit RGB and 16-bit RGBA), libwebp scaled decoding (lossy and lossless), JPEG DCT
/// scaling, and AVIF through libheif's Y′CbCr planes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rgb = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8])
    });
    let rgba16 = image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(640, 480, |x, y| {
        image::Rgba([(x % 256) as u8, 90, (y % 256) as u8, ((x + y) % 256) as u8])
    }))
    .into_rgba16();
    let encode = |img: image::DynamicImage, format: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    let avif = imaging::encode::encode(
        &image::DynamicImage::ImageRgb8(rgb.clone()),
        OutputFormat::Avif,
        50,
        None,
    )
    .unwrap();
    let jpeg = imaging::encode::encode(
        &image::DynamicImage::ImageRgb8(rgb.clone()),
        OutputFormat::Jpeg,
        80,
        None,
    )
    .unwrap();
    vec![
        (
            "png8",
            encode(
                image::DynamicImage::ImageRgb8(rgb.clone()),
                image::ImageFormat::Png,
            ),
        ),
        (
            "png16a",
            encode(
                image::DynamicImage::ImageRgba16(rgba16),
                image::ImageFormat::Png,
            ),
        ),
        (
            "webp-lossy",
            webp::Encoder::from_rgb(rgb.as_raw(), 640, 480)
                .encode(70.0)
                .to_vec(),
        ),
        (
            "webp-lossless",
            encode(
                image::DynamicImage::ImageRgb8(rgb),
                image::ImageFormat::WebP,
            ),
        ),
        ("jpeg", jpeg),
        ("avif", avif),
    ]
}

/// A poor man's fuzz run that CI can afford: each seed decodes, then 400 mutations of it
/// (bytes overwritten, a tail cut, a span duplicated) must each return `Ok` or a typed `Err`,
/// never panic. cargo-fuzz (`scripts/fuzz`) explores far more; this keeps the shrink-on-load
/// decoders honest on every run.
#[test]
fn mutated_images_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (name, seed) in seeds() {
        imaging::process(&seed, &renditions(), &LIMITS)
            .unwrap_or_else(|e| panic!("{name}: the unmutated seed fails: {e}"));
        for case in 0..400 {
            let mut bytes = seed.clone();
            match rng.below(3) {
                0 => {
                    for _ in 0..1 + rng.below(8) {
                        let i = rng.below(bytes.len());
                        bytes[i] = rng.next() as u8;
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len())),
                _ => {
                    let start = rng.below(bytes.len());
                    let end = (start + rng.below(256)).min(bytes.len());
                    let span = bytes[start..end].to_vec();
                    let at = rng.below(bytes.len());
                    bytes.splice(at..at, span);
                }
            }
            let outcome = std::panic::catch_unwind(|| survives(&bytes));
            assert!(outcome.is_ok(), "{name} case {case} panicked");
        }
    }
}
