//! Hostile files through a real `kiln worker` process: decompression bombs that are about
//! 1 MB on disk and about 1 GB decoded (a 100 MP interlaced 16-bit RGBA PNG, a 100 MP
//! deflate-compressed 16-bit RGB TIFF) fail `image_too_large` from the memory budget before
//! any pixel is decoded, and quickly; a HEIC declared as `image/jpeg` fails
//! `content_type_mismatch` before libheif runs; the worker keeps running and then processes
//! a good photo.

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use kiln_shared::domain::{ErrorCode, UploadState};
use kiln_shared::wire::UploadView;

use crate::helpers::{TestApp, TestOptions, photos, spawn_app_with, spawn_worker_process};

const SIDE: u32 = 10_000;

/// zlib (RFC 1950) of `len` zero bytes, streamed in 1 MiB chunks.
fn zlib_zeros(len: u64, mut row: impl FnMut(&mut ZlibEncoder<Vec<u8>>, u64) -> u64) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    let mut done = 0;
    while done < len {
        done += row(&mut z, len - done);
    }
    z.finish().unwrap()
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A `SIDE`² Adam7-interlaced 16-bit RGBA PNG (RFC 2083) of black pixels: every scanline of
/// the seven passes is filter byte 0 and zeros.
fn interlaced_png_bomb() -> Vec<u8> {
    // (x0, y0, dx, dy) of the Adam7 passes (RFC 2083 §2.6).
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let raw: u64 = PASSES
        .iter()
        .map(|&(x0, y0, dx, dy)| {
            let w = u64::from((SIDE - x0).div_ceil(dx));
            let h = u64::from((SIDE - y0).div_ceil(dy));
            h * (1 + w * 8)
        })
        .sum();
    let zeros = vec![0u8; 1 << 20];
    let idat = zlib_zeros(raw, |z, left| {
        let n = left.min(zeros.len() as u64);
        z.write_all(&zeros[..n as usize]).unwrap();
        n
    });
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&SIDE.to_be_bytes());
    ihdr.extend_from_slice(&SIDE.to_be_bytes());
    ihdr.extend_from_slice(&[16, 6, 0, 0, 1]); // 16-bit, RGBA, deflate, filter 0, Adam7
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &idat);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

/// A `SIDE`² 16-bit RGB TIFF 6.0 (little-endian) with Adobe Deflate (8) strips of 100 rows.
fn deflate_tiff_bomb() -> Vec<u8> {
    const ROWS: u32 = 100;
    let strip_len = u64::from(SIDE) * u64::from(ROWS) * 6;
    let zeros = vec![0u8; 1 << 20];
    let strip = zlib_zeros(strip_len, |z, left| {
        let n = left.min(zeros.len() as u64);
        z.write_all(&zeros[..n as usize]).unwrap();
        n
    });
    let strips = SIDE / ROWS;
    let mut out = b"II*\0".to_vec();
    // Layout: header, strips (all the same bytes), then the offset and count arrays, the
    // BitsPerSample array, then the IFD.
    let data_start = 8u32;
    let offsets_at = data_start + strips * strip.len() as u32;
    let counts_at = offsets_at + 4 * strips;
    let bits_at = counts_at + 4 * strips;
    let ifd_at = bits_at + 6;
    out.extend_from_slice(&ifd_at.to_le_bytes());
    for _ in 0..strips {
        out.extend_from_slice(&strip);
    }
    for i in 0..strips {
        out.extend_from_slice(&(data_start + i * strip.len() as u32).to_le_bytes());
    }
    for _ in 0..strips {
        out.extend_from_slice(&(strip.len() as u32).to_le_bytes());
    }
    for _ in 0..3 {
        out.extend_from_slice(&16u16.to_le_bytes());
    }
    // (tag, type, count, value): type 3 SHORT, 4 LONG; values inline or an offset.
    let entries: [(u16, u16, u32, u32); 10] = [
        (256, 4, 1, SIDE),            // ImageWidth
        (257, 4, 1, SIDE),            // ImageLength
        (258, 3, 3, bits_at),         // BitsPerSample 16,16,16
        (259, 3, 1, 8),               // Compression: Adobe Deflate
        (262, 3, 1, 2),               // PhotometricInterpretation: RGB
        (273, 4, strips, offsets_at), // StripOffsets
        (277, 3, 1, 3),               // SamplesPerPixel
        (278, 4, 1, ROWS),            // RowsPerStrip
        (279, 4, strips, counts_at),  // StripByteCounts
        (284, 3, 1, 1),               // PlanarConfiguration: chunky
    ];
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// Uploads `bytes` declared as `content_type` and waits (at most 60 s) for the end state.
async fn upload(app: &TestApp, name: &str, content_type: &str, bytes: Vec<u8>) -> UploadView {
    let auth = app.authorize(name, content_type, bytes.len(), "put").await;
    assert!(
        app.send_to_s3(&auth, bytes, content_type)
            .await
            .is_success()
    );
    assert!(
        app.complete(&auth.id.to_string())
            .await
            .status()
            .is_success()
    );
    app.wait_until_processed(&auth.id.to_string()).await
}

fn assert_failed(view: &UploadView, code: ErrorCode) {
    assert_eq!(view.state, UploadState::Failed, "{view:?}");
    let error = view.error.as_ref().expect("a failed upload has an error");
    assert_eq!(error.code, code, "{}", error.message);
}

#[tokio::test]
async fn decompression_bombs_and_disguised_files_fail_fast_and_the_worker_carries_on() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let mut worker = spawn_worker_process(&app.settings);

    let png = interlaced_png_bomb();
    let tiff = deflate_tiff_bomb();
    for (name, ct, bytes) in [
        ("bomb.png", "image/png", png),
        ("bomb.tif", "image/tiff", tiff),
    ] {
        assert!(bytes.len() < 2 << 20, "{name} is {} bytes", bytes.len());
        let started = Instant::now();
        let view = upload(&app, name, ct, bytes).await;
        assert_failed(&view, ErrorCode::ImageTooLarge);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
        assert_eq!(view.attempts, 1, "{name}: permanent, one attempt");
    }

    let heic = std::fs::read(&photos("heic")[0]).unwrap();
    let view = upload(&app, "disguised.jpg", "image/jpeg", heic).await;
    assert_failed(&view, ErrorCode::ContentTypeMismatch);

    assert!(worker.try_wait().unwrap().is_none(), "the worker exited");
    let good = std::fs::read(&photos("cameras")[0]).unwrap();
    let view = upload(&app, "good.jpg", "image/jpeg", good).await;
    assert_eq!(view.state, UploadState::Ready, "{view:?}");
    // Stop it as an operator would (SIGTERM: in-flight acks finish), then check no leftovers.
    let pid = nix::unistd::Pid::from_raw(worker.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("the worker stops within 30 s")
        .unwrap();
    app.finish().await;
}
