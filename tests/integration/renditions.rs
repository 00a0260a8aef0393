//! Renditions as configuration: after one recipe changes, `kiln renditions regenerate
//! --stale-only` re-renders exactly that rendition of every ready upload, from the promoted
//! original, and touches nothing else (other derivatives, originals, upload rows).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_shared::Settings;
use kiln_shared::db::uploads as db;
use kiln_shared::domain::{Derivative, Upload, UploadId, UploadState};
use kiln_shared::lifecycle::regenerate::{
    self, RegenerateError, RegenerateOptions, RegenerateReport,
};
use kiln_shared::queue::{QueueDepth, RenditionQueue};
use serde_json::Value;

use crate::helpers::{TestApp, photos, spawn_app};

/// ETag and Last-Modified (Unix seconds, S3's resolution) of an object.
async fn stamp(app: &TestApp, key: &str) -> (String, i64) {
    let head = app
        .storage
        .client()
        .head_object()
        .bucket(app.storage.bucket())
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {key}: {e}"));
    (
        head.e_tag().expect("ETag").to_owned(),
        head.last_modified().expect("Last-Modified").secs(),
    )
}

/// An upload as stored: its row, its derivative rows, and each object's stamp and bytes.
struct Snapshot {
    upload: Upload,
    derivatives: BTreeMap<String, Derivative>,
    original: (String, i64),
    stamps: BTreeMap<String, (String, i64)>,
    bytes: BTreeMap<String, Vec<u8>>,
}

async fn snapshot(app: &TestApp, id: UploadId) -> Snapshot {
    let upload = db::get(&app.db, id).await.unwrap().expect("upload row");
    let original = stamp(app, upload.final_key.as_deref().expect("final key")).await;
    let mut derivatives = BTreeMap::new();
    let mut stamps = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    for d in db::derivatives(&app.db, id).await.unwrap() {
        stamps.insert(d.rendition.clone(), stamp(app, &d.object_key).await);
        bytes.insert(
            d.rendition.clone(),
            app.object(&d.object_key).await.expect("derivative object"),
        );
        derivatives.insert(d.rendition.clone(), d);
    }
    Snapshot {
        upload,
        derivatives,
        original,
        stamps,
        bytes,
    }
}

fn row(upload: &Upload) -> Value {
    serde_json::to_value(upload).unwrap()
}

async fn run(
    app: &TestApp,
    queue: &RenditionQueue,
    settings: &Settings,
    opts: RegenerateOptions,
) -> Result<RegenerateReport, RegenerateError> {
    regenerate::regenerate(&app.db, queue, &settings.worker.renditions, &opts).await
}

fn stale_only(dry_run: bool) -> RegenerateOptions {
    RegenerateOptions {
        stale_only: true,
        dry_run,
        // Small pages, so three uploads take several pages.
        page_size: 2,
        ..Default::default()
    }
}

/// Waits until the renditions queue has nothing waiting or running and `done` finished tasks.
async fn wait_until_rendered(queue: &RenditionQueue, done: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let depth = queue.depth().await.unwrap();
        if depth.pending() == 0 && depth.done == done {
            assert_eq!(depth.dead, 0, "{depth:?}");
            return;
        }
        assert!(Instant::now() < deadline, "re-renders stuck: {depth:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(n, c)| (n.to_owned(), c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_one_recipe_re_renders_exactly_that_rendition_of_every_ready_upload() {
    let mut app = spawn_app().await;
    let mut ids = Vec::new();
    for f in &photos("cameras")[..3] {
        let u = app.upload_file(f, "put").await;
        assert_eq!(u.state, UploadState::Ready, "{}: {u:?}", f.display());
        ids.push(u.id);
    }
    // A failed upload is never regenerated.
    let bad = app.upload_file(&photos("bad")[1], "put").await;
    assert_eq!(bad.state, UploadState::Failed);
    let bad_id: UploadId = bad.id;
    let bad_before = db::get(&app.db, bad_id).await.unwrap().unwrap();

    let mut before = Vec::new();
    for &id in &ids {
        let s = snapshot(&app, id).await;
        for r in &app.settings.worker.renditions {
            let d = &s.derivatives[&r.name];
            assert_eq!(d.recipe_version, r.version);
            assert_eq!(d.recipe_hash.as_deref(), Some(r.fingerprint().as_str()));
        }
        before.push(s);
    }
    let queue = app.renditions_queue().await;

    // Under the recipes that rendered them, nothing is stale.
    let report = run(&app, &queue, &app.settings, stale_only(false))
        .await
        .unwrap();
    assert_eq!(report.ready_uploads, 3, "{report:?}");
    assert_eq!(report.uploads, 0, "{report:?}");
    assert_eq!(report.derivatives, counts(&[("preview", 0), ("thumb", 0)]));
    assert_eq!(report.enqueued, 0);

    // Lower the preview's quality, and roll the worker onto the new recipes.
    let mut changed = app.settings.clone();
    let preview = changed
        .worker
        .renditions
        .iter_mut()
        .find(|r| r.name == "preview")
        .unwrap();
    preview.quality = 50;
    let new_hash = preview.fingerprint();
    app.stop_worker().await;
    // S3's Last-Modified has whole seconds: any object rewritten from here on shows a later one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // A dry run counts exactly the previews and queues nothing.
    let dry = run(&app, &queue, &changed, stale_only(true)).await.unwrap();
    assert_eq!(
        (
            dry.ready_uploads,
            dry.uploads,
            dry.enqueued,
            dry.already_queued
        ),
        (3, 3, 0, 0),
        "{dry:?}"
    );
    assert_eq!(dry.derivatives, counts(&[("preview", 3), ("thumb", 0)]));
    assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
    let all_thumbs = run(
        &app,
        &queue,
        &changed,
        RegenerateOptions {
            rendition: Some("thumb".into()),
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all_thumbs.derivatives, counts(&[("thumb", 3)]));
    assert!(matches!(
        run(
            &app,
            &queue,
            &changed,
            RegenerateOptions {
                rendition: Some("poster".into()),
                dry_run: true,
                ..Default::default()
            }
        )
        .await,
        Err(RegenerateError::UnknownRendition(_))
    ));
    assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());

    // Run twice before any worker catches up: one job per upload.
    let first = run(&app, &queue, &changed, stale_only(false))
        .await
        .unwrap();
    assert_eq!((first.uploads, first.enqueued), (3, 3), "{first:?}");
    assert_eq!(first.derivatives, counts(&[("preview", 3), ("thumb", 0)]));
    let second = run(&app, &queue, &changed, stale_only(false))
        .await
        .unwrap();
    assert_eq!(
        (second.uploads, second.enqueued, second.already_queued),
        (3, 0, 3),
        "{second:?}"
    );
    assert_eq!(queue.depth().await.unwrap().pending(), 3);

    app.start_worker_with(changed.clone());
    wait_until_rendered(&queue, 3).await;

    for (id, old) in ids.iter().zip(&before) {
        let new = snapshot(&app, *id).await;
        // The upload row (state, metadata, updated_at, …) and the original are untouched.
        assert_eq!(
            row(&new.upload),
            row(&old.upload),
            "{id}: upload row changed"
        );
        assert_eq!(new.original, old.original, "{id}: original rewritten");
        // The thumb is untouched: same row, same object (ETag and Last-Modified).
        assert_eq!(new.derivatives["thumb"], old.derivatives["thumb"], "{id}");
        assert_eq!(
            new.stamps["thumb"], old.stamps["thumb"],
            "{id}: thumb rewritten"
        );
        // The preview was re-rendered with the new recipe, at the same key and size.
        let (p_old, p_new) = (&old.derivatives["preview"], &new.derivatives["preview"]);
        assert_eq!(
            p_new.recipe_hash.as_deref(),
            Some(new_hash.as_str()),
            "{id}"
        );
        assert_ne!(p_old.recipe_hash, p_new.recipe_hash);
        assert_eq!(p_new.recipe_version, p_old.recipe_version);
        assert_eq!(p_new.object_key, p_old.object_key);
        assert_eq!((p_new.width, p_new.height), (p_old.width, p_old.height));
        assert_ne!(
            new.stamps["preview"].0, old.stamps["preview"].0,
            "{id}: same ETag"
        );
        assert!(new.stamps["preview"].1 > old.stamps["preview"].1, "{id}");
        assert_ne!(new.bytes["preview"], old.bytes["preview"], "{id}");
        assert_eq!(p_new.byte_size, new.bytes["preview"].len() as u64);
        assert!(
            p_new.byte_size < p_old.byte_size,
            "{id}: quality 50 should be smaller than 80 ({} vs {})",
            p_new.byte_size,
            p_old.byte_size
        );
        let img = image::load_from_memory(&new.bytes["preview"]).expect("preview decodes");
        assert_eq!((img.width(), img.height()), (p_new.width, p_new.height));
    }
    let bad_after = db::get(&app.db, bad_id).await.unwrap().unwrap();
    assert_eq!(row(&bad_after), row(&bad_before));
    assert!(db::derivatives(&app.db, bad_id).await.unwrap().is_empty());

    // Nothing is stale any more.
    let again = run(&app, &queue, &changed, stale_only(false))
        .await
        .unwrap();
    assert_eq!(
        (again.ready_uploads, again.uploads, again.enqueued),
        (3, 0, 0),
        "{again:?}"
    );
    assert_eq!(again.derivatives, counts(&[("preview", 0), ("thumb", 0)]));
    app.finish().await;
}
