//! The image pipeline's golden and hostile-input tests: colour (Display P3 HEIC and CMYK JPEG
//! against `vips icc_transform`), tone and alpha (16-bit and RGBA PNG), animation (GIF and
//! WebP first frame and frame count), AVIF, crafted decompression bombs (refused from the
//! header in under a second, with the worker process's peak RSS under 200 MB), and truncated
//! or garbage files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::{DynamicImage, GenericImageView, RgbImage};
use kiln_shared::domain::{Classify, ErrorCode, Fit, Rendition, UploadState};
use kiln_worker::imaging::{self, ImagingError, Limits};
use lcms2::{CIELab, CIELabExt, CIExyY, GlobalContext, Intent, PixelFormat, Profile, Transform};

use crate::helpers::{
    TestOptions, bench_images, fixtures, spawn_app, spawn_app_with, spawn_worker_process,
};

/// A rendition so large that the pipeline decodes at full size.
fn full_size() -> Vec<Rendition> {
    vec![Rendition {
        name: "full".into(),
        max_width: 100_000,
        max_height: 100_000,
        fit: Fit::Contain,
        ..Rendition::defaults()[1].clone()
    }]
}

fn limits() -> Limits {
    Limits::from_settings(&kiln_shared::config::WorkerSettings::default())
}

/// Kiln's full-size decode: sRGB, oriented, 8-bit RGB.
fn kiln_decode(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap();
    imaging::decode_original(&bytes, &full_size(), &limits())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .image
        .to_rgb8()
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/deps installs libvips-tools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `vips` with `args`, where `OUT` stands for `out` (a PNG) in `dir`; returns its pixels as
/// 8-bit RGB.
fn vips_png(dir: &Path, out: &str, args: &[&str]) -> RgbImage {
    let path = dir.join(out);
    let mut cmd = Command::new("vips");
    cmd.args(args.iter().map(|a| {
        if *a == "OUT" {
            path.as_os_str()
        } else {
            a.as_ref()
        }
    }));
    run(&mut cmd);
    image::open(&path).unwrap().to_rgb8()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-{name}-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Mean and 95th percentile of CIE ΔE*ab (CIE76) between two sRGB images, through Little CMS.
fn delta_e(a: &RgbImage, b: &RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions(), "sizes differ");
    let d50 = CIExyY {
        x: 0.3457,
        y: 0.3585,
        Y: 1.0,
    };
    let lab = Profile::new_lab4_context(GlobalContext::new(), &d50).unwrap();
    let to_lab: Transform<[u8; 3], [f64; 3]> = Transform::new(
        &Profile::new_srgb(),
        PixelFormat::RGB_8,
        &lab,
        PixelFormat::Lab_DBL,
        Intent::RelativeColorimetric,
    )
    .unwrap();
    let labs = |img: &RgbImage| {
        let px: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        let mut out = vec![[0.0f64; 3]; px.len()];
        to_lab.transform_pixels(&px, &mut out);
        out.into_iter()
            .map(|[l, a, b]| CIELab { L: l, a, b })
            .collect::<Vec<_>>()
    };
    let (la, lb) = (labs(a), labs(b));
    let mut d: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x.delta_e(y)).collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    d.sort_by(f64::total_cmp);
    (mean, d[d.len() * 95 / 100])
}

#[test]
fn display_p3_heic_comes_out_in_srgb_like_vips() {
    let heic = fixtures().join("photos/heic/iphone_13_pro_max.HEIC");
    let dir = temp_dir("p3");
    let src = heic.to_str().unwrap();
    let reference = vips_png(&dir, "ref.png", &["icc_transform", src, "OUT", "srgb"]);
    let untransformed = vips_png(&dir, "raw.png", &["copy", src, "OUT"]);
    let kiln = kiln_decode(&heic);
    assert_eq!(kiln.dimensions(), (3024, 4032), "upright, rotated once");
    let (mean, p95) = delta_e(&kiln, &reference);
    let (raw_mean, _) = delta_e(&untransformed, &reference);
    println!("P3 HEIC: ΔE mean {mean:.2}, p95 {p95:.2}; without conversion {raw_mean:.2}");
    assert!(mean < 1.0 && p95 < 2.5, "ΔE mean {mean:.2}, p95 {p95:.2}");
    assert!(
        raw_mean > 3.0 * mean,
        "the profile should matter: unconverted ΔE {raw_mean:.2}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cmyk_jpeg_comes_out_in_srgb_like_vips() {
    let dir = temp_dir("cmyk");
    let cmyk = dir.join("cmyk.jpg");
    let src = fixtures().join("photos/mobile/jolla.jpg");
    // libvips' built-in CMYK profile, embedded in the output.
    run(Command::new("vips")
        .args(["icc_export", src.to_str().unwrap()])
        .arg(&cmyk)
        .args(["--output-profile", "cmyk"]));
    let reference = vips_png(
        &dir,
        "ref.png",
        &["icc_transform", cmyk.to_str().unwrap(), "OUT", "srgb"],
    );
    let kiln = kiln_decode(&cmyk);
    let (mean, p95) = delta_e(&kiln, &reference);
    println!("CMYK JPEG: ΔE mean {mean:.2}, p95 {p95:.2}");
    assert!(mean < 1.5 && p95 < 3.0, "ΔE mean {mean:.2}, p95 {p95:.2}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sixteen_bit_png_keeps_its_tone() {
    let img = image::ImageBuffer::from_fn(512, 256, |x, y| {
        image::Rgb([(x * 128) as u16, (y * 256) as u16, 65535 - (x * 128) as u16])
    });
    let dir = temp_dir("png16");
    let path = dir.join("gradient16.png");
    DynamicImage::ImageRgb16(img.clone()).save(&path).unwrap();
    let kiln = kiln_decode(&path);
    let worst = img
        .pixels()
        .zip(kiln.pixels())
        .flat_map(|(a, b)| (0..3).map(move |c| (f64::from(a[c]) / 257.0 - f64::from(b[c])).abs()))
        .fold(0.0, f64::max);
    assert!(worst <= 1.0, "16→8-bit error up to {worst}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes the generated inputs of the end-to-end test into `dir`.
fn make_inputs(dir: &Path) -> Vec<PathBuf> {
    // Alpha: transparent, half and opaque thirds.
    let alpha = image::RgbaImage::from_fn(420, 300, |x, _| {
        image::Rgba([20, 60, 200, [0, 128, 255][(x / 140) as usize]])
    });
    alpha.save(dir.join("alpha.png")).unwrap();
    // 16-bit grey-blue gradient.
    let deep = image::ImageBuffer::from_fn(300, 200, |x, _| {
        image::Rgb([x as u16 * 200, 30_000u16, 50_000u16])
    });
    DynamicImage::ImageRgb16(deep)
        .save(dir.join("deep16.png"))
        .unwrap();
    // Animation: red, green, blue frames.
    let colours = [[230u8, 20, 20, 255], [20, 230, 20, 255], [20, 20, 230, 255]];
    let frames: Vec<DynamicImage> = colours
        .iter()
        .map(|c| DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(64, 48, image::Rgba(*c))))
        .collect();
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        enc.encode_frames(frames.iter().map(|f| image::Frame::new(f.to_rgba8())))
            .unwrap();
    }
    std::fs::write(dir.join("anim.gif"), gif).unwrap();
    let config = webp::WebPConfig::new().unwrap();
    let mut enc = webp::AnimEncoder::new(64, 48, &config);
    for (i, f) in frames.iter().enumerate() {
        enc.add_frame(webp::AnimFrame::from_image(f, i as i32 * 100).unwrap());
    }
    std::fs::write(dir.join("anim.webp"), &*enc.encode()).unwrap();
    // AVIF, written by libvips through libheif's AV1 encoder.
    let src = fixtures().join("photos/mobile/jolla.jpg");
    run(Command::new("vips")
        .arg("copy")
        .arg(format!("{}[shrink=4]", src.display()))
        .arg(dir.join("photo.avif")));
    let cmyk = dir.join("cmyk.jpg");
    run(Command::new("vips")
        .args(["icc_export", src.to_str().unwrap()])
        .arg(&cmyk)
        .args(["--output-profile", "cmyk"]));
    [
        "alpha.png",
        "deep16.png",
        "anim.gif",
        "anim.webp",
        "photo.avif",
        "cmyk.jpg",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

fn pixel_near(p: image::Rgba<u8>, want: [u8; 3], tolerance: u8) -> bool {
    (0..3).all(|c| p[c].abs_diff(want[c]) <= tolerance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alpha_animation_avif_and_cmyk_process_end_to_end() {
    let app = spawn_app().await;
    let dir = temp_dir("formats");
    let files = make_inputs(&dir);
    let mut uploads = std::collections::HashMap::new();
    for f in &files {
        let upload = app.upload_file(f, "put").await;
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(upload.state, UploadState::Ready, "{name}: {upload:?}");
        uploads.insert(name, upload);
    }

    // Alpha survives into the WebP preview.
    let preview = app.derivative_of(&uploads["alpha.png"], "preview").await;
    assert_eq!(preview.dimensions(), (420, 300));
    assert!(
        preview.color().has_alpha(),
        "preview lost its alpha channel"
    );
    let a = |x| preview.get_pixel(x, 150)[3];
    assert_eq!((a(70), a(350)), (0, 255));
    assert!(a(210).abs_diff(128) <= 3, "half alpha became {}", a(210));

    let deep = app.derivative_of(&uploads["deep16.png"], "preview").await;
    assert!(
        pixel_near(deep.get_pixel(150, 100), [117, 117, 194], 6),
        "{:?}",
        deep.get_pixel(150, 100)
    );

    // The first frame, and the frame count.
    for name in ["anim.gif", "anim.webp"] {
        let meta = uploads[name].metadata.as_ref().unwrap();
        assert!(meta.animated, "{name}: {meta:?}");
        assert_eq!(meta.frame_count, 3, "{name}: {meta:?}");
        let preview = app.derivative_of(&uploads[name], "preview").await;
        let p = preview.get_pixel(32, 24);
        assert!(
            pixel_near(p, [230, 20, 20], 12),
            "{name}: first frame is red, got {p:?}"
        );
    }

    let avif = &uploads["photo.avif"];
    let avif_meta = avif.metadata.as_ref().unwrap();
    assert_eq!(avif_meta.format, "avif", "{avif:?}");
    let (w, h) = (u64::from(avif_meta.width), u64::from(avif_meta.height));
    assert!(w > 0 && h > 0);
    let preview = app.derivative_of(avif, "preview").await;
    assert_eq!(u64::from(preview.width()), w.min(1280));

    for (name, u) in &uploads {
        let hash = u
            .metadata
            .as_ref()
            .and_then(|m| m.thumbhash.as_deref())
            .unwrap_or_default();
        assert!((20..60).contains(&hash.len()), "{name}: thumbhash {hash:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
    app.finish().await;
}

/// Crafted decompression bombs: name and bytes.
fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    // PNG: a real 1×1 PNG whose IHDR declares 50,000 × 50,000 (CRC fixed up).
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(RgbImage::new(1, 1))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());

    // GIF: a 50,000 × 50,000 logical screen around one 1×1 frame.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&50_000u16.to_le_bytes());
    gif.extend_from_slice(&50_000u16.to_le_bytes());
    gif.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    let frame = [0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0];
    gif.extend_from_slice(&frame);
    gif.push(0x3B);

    // GIF: 10,000 frames of 1×1.
    let mut frames = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    for _ in 0..10_000 {
        frames.extend_from_slice(&[0x21, 0xF9, 4, 0, 2, 0, 0, 0]);
        frames.extend_from_slice(&frame);
    }
    frames.push(0x3B);

    // JPEG: a real photo whose SOF declares 65,000 × 65,000.
    let mut jpeg = std::fs::read(fixtures().join("photos/cameras/Canon_40D.jpg")).unwrap();
    let sof = find_sof(&jpeg);
    jpeg[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());

    // HEIF: the iPhone HEIC with every `ispe` (image spatial extents) at 60,000 × 60,000.
    let mut heif = std::fs::read(fixtures().join("photos/heic/iphone_13_pro_max.HEIC")).unwrap();
    let at: Vec<usize> = heif
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"ispe")
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty());
    for i in at {
        heif[i + 8..i + 12].copy_from_slice(&60_000u32.to_be_bytes());
        heif[i + 12..i + 16].copy_from_slice(&60_000u32.to_be_bytes());
    }
    vec![
        ("bomb.png", png),
        ("bomb.gif", gif),
        ("frames.gif", frames),
        ("bomb.jpg", jpeg),
        ("bomb.heic", heif),
    ]
}

/// Offset of the first SOFn marker (`FF Cn`) in a JPEG, walking its segments.
fn find_sof(jpeg: &[u8]) -> usize {
    let mut pos = 2;
    loop {
        let marker = jpeg[pos + 1];
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return pos;
        }
        pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
    }
}

#[test]
fn bombs_are_refused_from_the_header_in_under_a_second() {
    for (name, bytes) in bombs() {
        let started = Instant::now();
        let err = imaging::process(&bytes, &Rendition::defaults(), &limits())
            .err()
            .unwrap_or_else(|| panic!("{name} was processed"));
        let took = started.elapsed();
        println!("{name}: {err} in {took:?}");
        assert_eq!(err.code(), ErrorCode::ImageTooLarge, "{name}: {err}");
        assert!(took < Duration::from_secs(1), "{name} took {took:?}");
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_process_fails_bombs_as_image_too_large_within_200_mb() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    let mut worker = spawn_worker_process(&app.settings);
    let dir = temp_dir("bombs");
    let mut ids = Vec::new();
    for (name, bytes) in bombs() {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        ids.push((name, app.submit_file(&path, "put").await));
    }
    for (name, id) in ids {
        let upload = app.wait_until_processed(&id).await;
        assert_eq!(upload.state, UploadState::Failed, "{name}: {upload:?}");
        assert_eq!(
            upload.error.as_ref().map(|e| e.code),
            Some(ErrorCode::ImageTooLarge),
            "{name}: {upload:?}"
        );
        assert_eq!(upload.attempts, 1, "{name}: {upload:?}");
    }
    let rss = peak_rss_kib(worker.id().unwrap());
    println!("worker peak RSS {} MiB", rss / 1024);
    assert!(rss < 200 * 1024, "worker peak RSS {} MiB", rss / 1024);
    // A row turns `failed` before its attempt is acked: let the worker ack the last one.
    app.wait_for_acks().await;
    worker.kill().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    app.finish().await;
}

#[test]
fn truncated_and_garbage_files_are_corrupt_images() {
    let dir = temp_dir("broken");
    let avif = dir.join("x.avif");
    run(Command::new("vips")
        .arg("copy")
        .arg(format!(
            "{}[shrink=8]",
            fixtures().join("photos/mobile/jolla.jpg").display()
        ))
        .arg(&avif));
    let mut webp = Vec::new();
    DynamicImage::ImageRgb8(RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([x as u8, y as u8, 7])
    }))
    .write_to(
        &mut std::io::Cursor::new(&mut webp),
        image::ImageFormat::WebP,
    )
    .unwrap();
    let mut gif = Vec::new();
    DynamicImage::ImageRgb8(RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([x as u8, y as u8, 7])
    }))
    .write_to(&mut std::io::Cursor::new(&mut gif), image::ImageFormat::Gif)
    .unwrap();
    let originals: Vec<(String, Vec<u8>)> = vec![
        (
            "jpeg".into(),
            std::fs::read(fixtures().join("photos/mobile/jolla.jpg")).unwrap(),
        ),
        (
            "png".into(),
            std::fs::read(bench_images().join("altai-5120x2880.png")).unwrap(),
        ),
        ("gif".into(), gif),
        ("webp".into(), webp),
        (
            "tiff".into(),
            std::fs::read(fixtures().join("photos/tiff/BSG1.tiff")).unwrap(),
        ),
        (
            "heic".into(),
            std::fs::read(fixtures().join("photos/heic/iphone_13_pro_max.HEIC")).unwrap(),
        ),
        ("avif".into(), std::fs::read(&avif).unwrap()),
    ];
    for (name, bytes) in originals {
        let truncated = &bytes[..bytes.len() * 3 / 10];
        let mut garbage = bytes[..64.min(bytes.len())].to_vec();
        garbage.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        for (kind, input) in [("truncated", truncated.to_vec()), ("garbage", garbage)] {
            match imaging::process(&input, &Rendition::defaults(), &limits()) {
                Err(e @ ImagingError::Corrupt(_)) => println!("{name} {kind}: {e}"),
                other => panic!(
                    "{name} {kind}: expected corrupt_image, got {:?}",
                    other.map(|p| p.metadata)
                ),
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
