//! Metadata against the reference: `exiftool -j -n -G` on the same files. EXIF-group values
//! (and exiftool's Composite GPS, which applies the N/S/E/W refs) are compared after parsing.

use std::path::PathBuf;
use std::process::Command;

use kiln_shared::domain::UploadState;
use serde_json::Value;

use crate::helpers::{good_photos, spawn_app};

fn exiftool(files: &[PathBuf], grouped: bool) -> Vec<Value> {
    let out = Command::new("exiftool")
        .args(["-j", "-n"])
        .args(grouped.then_some("-G"))
        .args(files)
        .output()
        .expect("exiftool is installed (Debian libimage-exiftool-perl)");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("exiftool JSON")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol.max(b.abs() * 1e-6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_matches_exiftool() {
    let app = spawn_app().await;
    let files = good_photos();
    let reference = exiftool(&files, true);
    let plain = exiftool(&files, false);
    assert_eq!(reference.len(), files.len());
    let mut compared = 0;
    for ((file, want), plain) in files.iter().zip(&reference).zip(&plain) {
        let name = file.display();
        let upload = app.upload_file(file, "put").await;
        assert_eq!(upload.state, UploadState::Ready, "{name}");
        let meta = upload
            .metadata
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no metadata"));
        let exif = meta.exif.clone().unwrap_or_default();

        for (tag, ours) in [("EXIF:Make", &exif.make), ("EXIF:Model", &exif.model)] {
            if let Some(w) = want[tag].as_str().map(str::trim).filter(|s| !s.is_empty()) {
                assert_eq!(ours.as_deref(), Some(w), "{name}: {tag}");
                compared += 1;
            }
        }
        if let Some(w) = want["EXIF:DateTimeOriginal"]
            .as_str()
            .filter(|s| s.trim().len() >= 19)
        {
            let ours = exif
                .date_time_original
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: no date"));
            let normalised = ours.replacen('-', ":", 2).replacen('T', " ", 1);
            assert_eq!(&normalised[..19], &w[..19], "{name}: DateTimeOriginal");
            compared += 1;
        }
        for (tag, ours, value) in [
            ("Composite:GPSLatitude", "gps_latitude", exif.gps_latitude),
            (
                "Composite:GPSLongitude",
                "gps_longitude",
                exif.gps_longitude,
            ),
        ] {
            if let Some(w) = want[tag].as_f64() {
                let got = value.unwrap_or_else(|| panic!("{name}: no {ours}"));
                assert!((got - w).abs() <= 1e-6, "{name}: {tag} {got} vs {w}");
                compared += 1;
            }
        }
        for (tag, ours, value) in [
            (
                "EXIF:Orientation",
                "orientation",
                exif.orientation.map(f64::from),
            ),
            ("EXIF:ISO", "iso", exif.iso.map(f64::from)),
            ("EXIF:ExposureTime", "exposure_time", exif.exposure_time),
            ("EXIF:FNumber", "f_number", exif.f_number),
            ("EXIF:FocalLength", "focal_length", exif.focal_length),
        ] {
            if let Some(w) = want[tag].as_f64() {
                let got = value.unwrap_or_else(|| panic!("{name}: no {ours} ({tag}={w})"));
                assert!(close(got, w, 1e-9), "{name}: {tag} {got} vs {w}");
                compared += 1;
            }
        }
        // Displayed size: exiftool's ImageWidth x ImageHeight, swapped for 90/270° orientations.
        let (w, h) = (plain["ImageWidth"].as_u64(), plain["ImageHeight"].as_u64());
        let (w, h) = (w.expect("ImageWidth"), h.expect("ImageHeight"));
        let turned = matches!(want["EXIF:Orientation"].as_u64(), Some(5..=8));
        let expected = if turned { (h, w) } else { (w, h) };
        assert_eq!(
            (u64::from(meta.width), u64::from(meta.height)),
            expected,
            "{name}: size"
        );
        assert_eq!(meta.byte_size, std::fs::metadata(file).unwrap().len());
    }
    assert!(compared > 100, "too few tags compared: {compared}");
    app.finish().await;
}
