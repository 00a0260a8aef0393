//! The sweeper: Postgres is the source of truth, so losing the queue loses no upload.

use std::time::Duration;

use kiln_shared::domain::{UploadId, UploadState};

use crate::helpers::{photos, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_queue_is_lost_the_sweeper_brings_every_upload_home() {
    let mut app = spawn_app().await;
    let cameras = photos("cameras");
    // Finished before the loss: one ready, one failed.
    let ready = app.upload_file(&cameras[0], "put").await;
    let failed = app.upload_file(&photos("bad")[1], "put").await;
    assert_eq!(
        (ready.state, failed.state),
        (UploadState::Ready, UploadState::Failed)
    );
    app.stop_worker().await;

    // Uploaded (job queued), processing (a worker died mid-job), pending (abandoned and past
    // its expiry), and an orphan temp object with no row at all.
    let uploaded = app.send_file(&cameras[1], "put").await.id.to_string();
    assert_eq!(app.complete(&uploaded).await.status(), 202);
    let processing = app.send_file(&cameras[2], "put").await.id.to_string();
    assert_eq!(app.complete(&processing).await.status(), 202);
    let processing_id: UploadId = processing.parse().unwrap();
    // (It may have been held for the owner's admission window, the worker being stopped.)
    sqlx::query("UPDATE uploads SET state = 'processing', held = false, attempts = 1, updated_at = now() - interval '1 hour' WHERE id = $1")
        .bind(processing_id.0)
        .execute(app.pool())
        .await
        .unwrap();
    let abandoned = app.send_file(&cameras[3], "put").await.id.to_string();
    sqlx::query("UPDATE uploads SET expires_at = now() - interval '1 hour'")
        .execute(app.pool())
        .await
        .ok();
    let orphan = format!(
        "{}{}/{}",
        app.storage.layout().temp_root(),
        app.owner,
        UploadId::new()
    );
    app.storage
        .put(&orphan, vec![1, 2, 3].into(), "image/jpeg")
        .await
        .unwrap();

    app.wipe_queue().await; // FLUSHALL, for this test's queue
    assert_eq!(app.queue.depth().await.unwrap().pending(), 0);

    app.start_worker();
    let report = app
        .sweep(|s| {
            s.sweeper.uploaded_stale_secs = 0;
            s.sweeper.expiry_grace_secs = 0;
            s.sweeper.orphan_temp_ttl_secs = 0;
        })
        .await;
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(report.requeued_uploaded, 1, "{report:?}");
    assert_eq!(report.requeued_processing, 1, "{report:?}");
    assert!(report.temps_deleted >= 1, "{report:?}");

    for id in [&uploaded, &processing] {
        assert_eq!(app.wait_until_processed(id).await.state, UploadState::Ready);
    }
    assert_eq!(
        app.get_upload(&ready.id.to_string()).await.state,
        UploadState::Ready
    );
    assert_eq!(
        app.get_upload(&failed.id.to_string()).await.state,
        UploadState::Failed
    );
    assert_eq!(app.get_upload(&abandoned).await.state, UploadState::Expired);
    assert!(app.object(&orphan).await.is_none());

    // A second sweep finds nothing to do.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = app.sweep(|s| s.sweeper.uploaded_stale_secs = 0).await;
    assert_eq!(
        (
            again.requeued_uploaded,
            again.requeued_processing,
            again.expired
        ),
        (0, 0, 0)
    );
    app.finish().await;
}

#[tokio::test]
async fn the_bucket_gets_a_lifecycle_rule_for_tmp() {
    let app = spawn_app().await;
    app.storage.ensure_temp_lifecycle(1).await.unwrap();
    let got = app
        .storage
        .client()
        .get_bucket_lifecycle_configuration()
        .bucket(app.storage.bucket())
        .send()
        .await
        .unwrap();
    let id = app.storage.temp_lifecycle_rule_id();
    let rule = got
        .rules()
        .iter()
        .find(|r| r.id() == Some(id.as_str()))
        .expect("rule");
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(1));
    // The bucket is shared by every test run: take this test's rule out again (merged, so other
    // tests' rules stay).
    let others: Vec<_> = got
        .rules()
        .iter()
        .filter(|r| r.id() != Some(id.as_str()))
        .cloned()
        .collect();
    let s3 = app.storage.client();
    if others.is_empty() {
        s3.delete_bucket_lifecycle()
            .bucket(app.storage.bucket())
            .send()
            .await
            .unwrap();
    } else {
        let config = kiln_shared::storage::sdk::types::BucketLifecycleConfiguration::builder()
            .set_rules(Some(others))
            .build()
            .unwrap();
        s3.put_bucket_lifecycle_configuration()
            .bucket(app.storage.bucket())
            .lifecycle_configuration(config)
            .send()
            .await
            .unwrap();
    }
    app.finish().await;
}
