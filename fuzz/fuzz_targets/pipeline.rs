//! The whole pipeline (`kiln_worker::imaging::process`: sniff → header limits → decode →
//! render → encode → metadata) on arbitrary bytes, with limits small enough that every input
//! is cheap. A panic, abort or sanitizer report is a finding; an `Err` is the expected answer
//! to garbage.
#![no_main]

use kiln_shared::domain::{Fit, OutputFormat, Rendition};
use kiln_worker::imaging::{self, Limits};
use libfuzzer_sys::fuzz_target;

/// Same values as worker/tests/fuzz_regressions.rs, so a crash file replays there unchanged.
const LIMITS: Limits = Limits {
    max_pixels: 4_000_000,
    max_dimension: 4096,
    max_encoded_bytes: 4 * 1024 * 1024,
    max_frames: 50,
    memory_budget_bytes: 256 * 1024 * 1024,
    accept: None,
};

fuzz_target!(|data: &[u8]| {
    let renditions = [Rendition {
        name: "thumb".into(),
        max_width: 64,
        max_height: 64,
        fit: Fit::Cover,
        format: OutputFormat::Webp,
        quality: 50,
        keep_metadata: false,
        version: 1,
    }];
    let _ = imaging::process(data, &renditions, &LIMITS);
});
