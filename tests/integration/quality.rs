//! Output quality against the peer: Kiln's 1280 px previews of the benchmark images must look
//! like `vipsthumbnail`'s at the same size (DSSIM ≤ 0.01). Runs Kiln's pipeline in-process and
//! `vipsthumbnail` as a process; needs no services.
//!
//! What is compared is what ships: Kiln's configured `preview` rendition (1280 px contain, lossy
//! WebP q80) against `vipsthumbnail` making the same size in the same format and quality, both
//! decoded back to RGBA. Both sides encode with libwebp at the same quality, so the codec is
//! common to both; what differs is decoding, orientation, colour handling and resampling.
//! The two independent q80 quantisations add their noise to the score, so the bound is, if
//! anything, stricter than a lossless comparison of the resized pixels would be.

use std::path::{Path, PathBuf};
use std::process::Command;

use dssim_core::Dssim;
use kiln_shared::domain::Rendition;
use kiln_worker::imaging::{self, Limits};
use rgb::FromSlice;

use crate::helpers;

/// Largest DSSIM allowed between Kiln's preview and vipsthumbnail's (0 = identical).
const MAX_DSSIM: f64 = 0.01;

fn bench_images() -> Vec<PathBuf> {
    let dir = helpers::bench_images();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `vipsthumbnail` like `kiln bench images` does for a contain rendition and returns the
/// encoded output.
fn vipsthumbnail(file: &Path, r: &Rendition, out_dir: &Path) -> Vec<u8> {
    let out = out_dir.join(format!(
        "{}.{}",
        file.file_stem().unwrap().to_string_lossy(),
        r.format.extension()
    ));
    let status = Command::new("vipsthumbnail")
        .arg(file)
        .arg("--size")
        .arg(format!("{}x{}>", r.max_width, r.max_height))
        .arg("-o")
        .arg(format!("{}[Q={},strip]", out.display(), r.quality))
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "vipsthumbnail could not be run ({e}): scripts/deps installs it \
                 (Debian package libvips-tools)"
            )
        });
    assert!(
        status.success(),
        "vipsthumbnail failed on {}: {status}",
        file.display()
    );
    std::fs::read(&out).unwrap_or_else(|e| panic!("cannot read {}: {e}", out.display()))
}

fn dssim_image(
    dssim: &Dssim,
    encoded: &[u8],
    what: &str,
) -> (dssim_core::DssimImage<f32>, (u32, u32)) {
    let rgba = image::load_from_memory(encoded)
        .unwrap_or_else(|e| panic!("{what} does not decode: {e}"))
        .to_rgba8();
    let (w, h) = rgba.dimensions();
    let img = dssim
        .create_image_rgba(rgba.as_raw().as_rgba(), w as usize, h as usize)
        .unwrap_or_else(|| panic!("dssim rejected {what}"));
    (img, (w, h))
}

#[test]
fn previews_match_vipsthumbnail() {
    let preview = Rendition::defaults()
        .into_iter()
        .find(|r| r.name == "preview")
        .expect("a preview rendition in Rendition::defaults()");
    let limits = Limits::from_settings(&kiln_shared::Settings::default().worker);
    let files = bench_images();
    assert!(files.len() >= 5, "bench fixtures missing: {files:?}");
    let out_dir = std::env::temp_dir().join(format!("kiln-quality-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let dssim = Dssim::new();

    let mut scores = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(file).unwrap();
        let processed = imaging::process(&bytes, std::slice::from_ref(&preview), &limits)
            .unwrap_or_else(|e| panic!("Kiln failed on {name}: {e}"));
        let kiln = &processed.derivatives[0];
        let vips = vipsthumbnail(file, &preview, &out_dir);

        let (kiln_img, kiln_size) = dssim_image(&dssim, &kiln.bytes, &format!("Kiln's {name}"));
        let (vips_img, vips_size) = dssim_image(&dssim, &vips, &format!("vips' {name}"));
        assert_eq!(
            kiln_size, vips_size,
            "{name}: Kiln's preview and vipsthumbnail's differ in size"
        );
        let (score, _) = dssim.compare(&vips_img, kiln_img);
        let score = f64::from(score);
        println!(
            "{name}: {}x{} DSSIM {score:.5} (Kiln {} B, vips {} B)",
            kiln_size.0,
            kiln_size.1,
            kiln.bytes.len(),
            vips.len()
        );
        scores.push((name, score));
    }
    let _ = std::fs::remove_dir_all(&out_dir);

    let over: Vec<_> = scores.iter().filter(|(_, s)| *s > MAX_DSSIM).collect();
    assert!(
        over.is_empty(),
        "previews differ from vipsthumbnail's by more than DSSIM {MAX_DSSIM}: {over:?} (all: {scores:?})"
    );
}
