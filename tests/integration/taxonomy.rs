//! The one error taxonomy: every layer's error maps to one stable code and its transience
//! (a table test with the four cases that used to be misclassified), and clients never see
//! internal detail (a real S3 outage read back through `GET /v1/uploads/{id}`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use kiln_api::error::ApiError;
use kiln_shared::db::DbError;
use kiln_shared::domain::{Classify, ErrorCode, UploadState};
use kiln_shared::lifecycle::{Failure, LifecycleError};
use kiln_shared::queue::QueueError;
use kiln_shared::storage::StorageError;
use kiln_worker::imaging::ImagingError;

use crate::faults::FaultProxy;
use crate::helpers::{TestOptions, photos, spawn_app_with};

fn row(e: &(impl Classify + std::fmt::Display)) -> (ErrorCode, bool) {
    (e.code(), e.is_transient())
}

#[test]
fn every_layer_error_maps_to_one_code_and_transience() {
    use ErrorCode as C;
    let storage_cases = [
        // Fixed: a permanent S3 refusal is `storage_rejected`, not `storage_unavailable`.
        (
            StorageError::Rejected("PutObject k: HTTP 403".into()),
            C::StorageRejected,
            false,
        ),
        (
            StorageError::Unavailable("GetObject k: HTTP 503".into()),
            C::StorageUnavailable,
            true,
        ),
        // Fixed: an object over `worker.max_encoded_bytes` is `image_too_large`.
        (
            StorageError::TooLarge {
                key: "k".into(),
                size: 10,
                limit: 5,
            },
            C::ImageTooLarge,
            false,
        ),
        // Fixed: a client-side presign or request-building fault is `internal` (500), not 503.
        (
            StorageError::Presign("expiry over 7 days".into()),
            C::Internal,
            false,
        ),
        (
            StorageError::Client("bad header".into()),
            C::Internal,
            false,
        ),
    ];
    for (e, code, transient) in storage_cases {
        assert_eq!(row(&e), (code, transient), "{e}");
        assert_eq!(row(&Failure::from_error(&e)), (code, transient), "{e}");
        assert_eq!(row(&LifecycleError::Storage(e)), (code, transient));
    }
    let db_cases = [
        // Fixed: a corrupt row (a bug or a newer schema) is permanent, not retried.
        (
            DbError::CorruptRow("unknown state".into()),
            C::Internal,
            false,
        ),
        (
            DbError::Sqlx(sqlx::Error::PoolTimedOut),
            C::DatabaseUnavailable,
            true,
        ),
        (DbError::Sqlx(sqlx::Error::RowNotFound), C::Internal, false),
        (
            DbError::Sqlx(sqlx::Error::Io(std::io::Error::other("reset"))),
            C::DatabaseUnavailable,
            true,
        ),
    ];
    for (e, code, transient) in db_cases {
        assert_eq!(row(&e), (code, transient), "{e}");
        assert_eq!(row(&LifecycleError::Db(e)), (code, transient));
    }
    let q = QueueError::Apalis("push failed".into());
    assert_eq!(row(&q), (C::QueueUnavailable, true));
    for (e, code) in [
        (
            ImagingError::Unsupported("text".into()),
            C::UnsupportedFormat,
        ),
        (ImagingError::Corrupt("eof".into()), C::CorruptImage),
        (ImagingError::TooLarge("200 MP".into()), C::ImageTooLarge),
        (ImagingError::Render("lcms2".into()), C::Internal),
    ] {
        assert_eq!(row(&e), (code, false), "{e}");
    }
    for (e, code) in [
        (LifecycleError::NotFound, C::NotFound),
        (LifecycleError::ObjectMissing, C::ObjectMissing),
        (
            LifecycleError::SizeMismatch {
                declared: 2,
                actual: 1,
            },
            C::SizeMismatch,
        ),
    ] {
        assert_eq!(row(&e), (code, false), "{e}");
    }
    let exhausted = Failure::new(C::StorageUnavailable, "GetObject: timeout").exhausted(4);
    assert_eq!(row(&exhausted), (C::RetriesExhausted, false));
}

#[test]
fn api_statuses_come_from_the_table_and_internal_detail_stays_out_of_bodies() {
    let cases = [
        (
            ApiError::from(StorageError::Presign("expiry".into())),
            500,
            "internal",
        ),
        (
            ApiError::from(StorageError::Rejected("HeadObject tmp/x: 403".into())),
            502,
            "storage_rejected",
        ),
        (
            ApiError::from(StorageError::Unavailable("HeadObject tmp/x".into())),
            503,
            "storage_unavailable",
        ),
        (
            ApiError::from(DbError::CorruptRow("state".into())),
            500,
            "internal",
        ),
        (
            ApiError::from(DbError::Sqlx(sqlx::Error::PoolTimedOut)),
            503,
            "database_unavailable",
        ),
        (
            ApiError::from(LifecycleError::ObjectMissing),
            409,
            "object_missing",
        ),
        (ApiError::NotFound, 404, "not_found"),
    ];
    for (e, status, code) in cases {
        assert_eq!(
            e.status_and_code(),
            (StatusCode::from_u16(status).unwrap(), code)
        );
        assert_eq!(e.code().http_status(), status);
        let message = e.client_message();
        for leak in ["tmp/", "HeadObject", "expiry", "state", "PoolTimedOut"] {
            assert!(
                !message.contains(leak),
                "{code}: {message:?} leaks {leak:?}"
            );
        }
        assert_eq!(e.into_response().status().as_u16(), status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_upload_shows_its_code_and_no_s3_key_host_or_operation() {
    let mut app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(&app.settings.storage.endpoint).await;
    proxy.faults.p503_permille.store(1000, Ordering::Relaxed); // S3 answers 503 to the worker
    let mut settings = app.settings.clone();
    settings.storage.endpoint = proxy.endpoint.clone();
    settings.worker.max_attempts = 2;
    settings.worker.retry_base_delay_ms = 200;
    settings.worker.retry_max_delay_ms = 400;
    app.start_worker_with(settings);

    let id = app.submit_file(&photos("cameras")[0], "put").await;
    let upload = app.wait_until_processed(&id).await;
    assert_eq!(upload.state, UploadState::Failed, "{upload:?}");
    let error = upload.error.expect("a failed upload has an error");
    assert_eq!(error.code, ErrorCode::RetriesExhausted);
    let message = error.message.as_str();
    let host = proxy.endpoint.trim_start_matches("http://");
    for leak in [
        "tmp/",
        app.settings.storage.key_prefix.as_str(),
        host,
        "127.0.0.1",
        "GetObject",
        "HeadObject",
        "CopyObject",
        "PutObject",
        "HTTP 503",
        "SlowDown",
    ] {
        assert!(!message.contains(leak), "{message:?} leaks {leak:?}");
    }
    assert!(message.contains("storage_unavailable"), "{message:?}");
    // The detail is kept for operators.
    let row = kiln_shared::db::uploads::get(&app.db, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(row.error_detail.unwrap().contains("GetObject"));
    // The worker acks after its best-effort move of the original (which the outage refuses);
    // only then does the sweeper move it, so the two never race.
    app.wait_for_acks().await;
    proxy.faults.p503_permille.store(0, Ordering::Relaxed);
    app.sweep(|_| {}).await; // moves the original the outage kept under tmp/
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_the_worker_cannot_read_fails_once_as_internal_instead_of_retrying() {
    let mut app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let id = app.submit_file(&photos("cameras")[0], "put").await;
    // A value this build does not know, as a newer schema would write it.
    sqlx::query("UPDATE uploads SET error_code = 'from_a_newer_kiln' WHERE id = $1::uuid")
        .bind(&id)
        .execute(app.pool())
        .await
        .unwrap();
    app.start_worker();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (state, code, attempts): (String, Option<String>, i32) = loop {
        let r: (String, Option<String>, i32) =
            sqlx::query_as("SELECT state, error_code, attempts FROM uploads WHERE id = $1::uuid")
                .bind(&id)
                .fetch_one(app.pool())
                .await
                .unwrap();
        if r.0 == "failed" {
            break r;
        }
        assert!(Instant::now() < deadline, "still {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (state.as_str(), code.as_deref(), attempts),
        ("failed", Some("internal"), 1)
    );
    let upload = app.get_upload(&id).await;
    assert_eq!(
        upload.error.map(|e| e.code),
        Some(ErrorCode::Internal),
        "the API reads the row back"
    );
    app.sweep(|_| {}).await;
    app.finish().await;
}
