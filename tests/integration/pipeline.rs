//! The main job end to end: real uploads through presigned PUT and POST, processed by a real
//! worker, checked in S3 and through the API.

use std::path::PathBuf;

use futures::StreamExt;
use image::GenericImageView;
use kiln_shared::domain::{ErrorCode, UploadState};
use kiln_shared::wire::UploadView;

use crate::helpers::{TestApp, good_photos, photos, sha256_hex, spawn_app};

/// Uploads `files` with `method`, 4 at a time; returns (file, upload) in input order.
async fn upload_all(app: &TestApp, files: &[PathBuf], method: &str) -> Vec<(PathBuf, UploadView)> {
    futures::stream::iter(files.iter().cloned())
        .map(|f| async move {
            let upload = app.upload_file(&f, method).await;
            (f, upload)
        })
        .buffered(4)
        .collect()
        .await
}

fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("derivative decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fixture_processes_through_put_and_post() {
    let app = spawn_app().await;
    let files = good_photos();
    assert!(files.len() >= 30, "fixtures missing: {}", files.len());
    for method in ["put", "post"] {
        for (file, upload) in upload_all(&app, &files, method).await {
            let name = file.display();
            assert_eq!(
                upload.state,
                UploadState::Ready,
                "{name} via {method}: {upload:?}"
            );
            let id = upload.id;
            let meta = upload.metadata.as_ref().unwrap();
            let (w, h) = (meta.width, meta.height);
            let derivatives = &upload.derivatives;
            assert_eq!(derivatives.len(), 2, "{name}: {upload:?}");
            for d in derivatives {
                // Fetch through the presigned GET URL, as a client would.
                let resp = app.client.get(&d.url).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{name}: derivative URL");
                let img = decode(&resp.bytes().await.unwrap());
                assert_eq!(img.dimensions(), (d.width, d.height));
                let expected = match d.name.as_str() {
                    "thumb" => {
                        let side = 256.min(w).min(h);
                        (side, side)
                    }
                    "preview" => {
                        let scale = (1280.0 / w as f64).min(1280.0 / h as f64).min(1.0);
                        (
                            (w as f64 * scale).round() as u32,
                            (h as f64 * scale).round() as u32,
                        )
                    }
                    other => panic!("unexpected rendition {other}"),
                };
                assert_eq!(img.dimensions(), expected, "{name}: {:?} size", d.name);
            }
            // The original sits at its final key with the file's hash; the temp key is gone.
            let bytes = std::fs::read(&file).unwrap();
            let row = kiln_shared::db::uploads::get(&app.db, id)
                .await
                .unwrap()
                .unwrap();
            let final_key = row.final_key.expect("final key");
            let original = app.object(&final_key).await.expect("original at final key");
            assert_eq!(
                sha256_hex(&original),
                sha256_hex(&bytes),
                "{name}: original hash"
            );
            assert_eq!(meta.sha256, sha256_hex(&bytes));
            assert!(
                app.object(&row.temp_key).await.is_none(),
                "{name}: temp key still there"
            );
        }
    }
    app.finish().await;
}

/// Mean absolute difference per channel (0–255) between two same-sized images.
fn mean_abs_diff(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

async fn preview_of(app: &TestApp, upload: &UploadView) -> image::DynamicImage {
    app.derivative_of(upload, "preview").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orientation_is_applied_once_and_correctly() {
    let app = spawn_app().await;
    let files = photos("orientation");
    let uploads = upload_all(&app, &files, "put").await;
    for shape in ["landscape", "portrait"] {
        let (_, reference) = uploads
            .iter()
            .find(|(f, _)| f.ends_with(format!("{shape}_1.jpg")))
            .unwrap();
        let reference = preview_of(&app, reference).await;
        let expected = if shape == "landscape" {
            (600, 450)
        } else {
            (450, 600)
        };
        assert_eq!(reference.dimensions(), expected);
        for (file, upload) in uploads
            .iter()
            .filter(|(f, _)| f.file_name().unwrap().to_str().unwrap().starts_with(shape))
        {
            let preview = preview_of(&app, upload).await;
            assert_eq!(preview.dimensions(), expected, "{}", file.display());
            // Each fixture carries its own number, so a correct preview differs from
            // `{shape}_1` a little; any wrong orientation differs far more.
            let diff = mean_abs_diff(&preview, &reference);
            let wrong = [reference.fliph(), reference.flipv(), reference.rotate180()]
                .iter()
                .map(|w| mean_abs_diff(&preview, w))
                .fold(f64::INFINITY, f64::min);
            eprintln!(
                "{}: {diff:.2} (closest wrong orientation {wrong:.2})",
                file.display()
            );
            assert!(
                diff < 20.0,
                "{}: mean abs diff {diff:.2} vs {shape}_1",
                file.display()
            );
            assert!(
                diff * 2.0 < wrong,
                "{}: {diff:.2} is not clearly closer than {wrong:.2}",
                file.display()
            );
        }
    }
    let heic = app
        .upload_file(
            &crate::helpers::fixtures().join("photos/heic/iphone_13_pro_max.HEIC"),
            "put",
        )
        .await;
    let preview = preview_of(&app, &heic).await;
    assert!(
        preview.height() > preview.width(),
        "HEIC preview is not portrait: {:?}",
        preview.dimensions()
    );
    assert_eq!(
        heic.metadata.as_ref().map(|m| (m.width, m.height)),
        Some((3024, 4032))
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_files_fail_cleanly_after_one_attempt() {
    let app = spawn_app().await;
    for method in ["put", "post"] {
        for (file, upload) in upload_all(&app, &photos("bad"), method).await {
            let name = file.display();
            assert_eq!(upload.state, UploadState::Failed, "{name}: {upload:?}");
            let error = upload.error.as_ref().unwrap();
            assert!(
                matches!(
                    error.code,
                    ErrorCode::CorruptImage | ErrorCode::UnsupportedFormat
                ),
                "{name}: unexpected code {}",
                error.code
            );
            assert!(!error.message.is_empty());
            assert_eq!(upload.attempts, 1, "{name}: retried");
            // Nothing is lost: the original moved from tmp/ to its final key.
            let row = kiln_shared::db::uploads::get(&app.db, upload.id)
                .await
                .unwrap()
                .unwrap();
            let kept = app
                .object(&row.final_key.expect("final key"))
                .await
                .expect("original kept");
            assert_eq!(
                sha256_hex(&kept),
                sha256_hex(&std::fs::read(&file).unwrap())
            );
        }
    }
    // The worker is still up: a good file after the bad ones is processed.
    let good = app.upload_file(&photos("cameras")[0], "put").await;
    assert_eq!(good.state, UploadState::Ready);
    let depth = app.queue.depth().await.unwrap();
    assert_eq!(
        depth.dead, 8,
        "every broken upload is one dead job: {depth:?}"
    );
    app.finish().await;
}
