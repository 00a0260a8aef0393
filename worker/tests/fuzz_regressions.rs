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
