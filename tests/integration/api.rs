//! API contract: auth, request validation, presigned PUT and POST policy enforcement by the
//! real S3 server, complete's idempotency, ownership, pagination and health.

use std::time::Duration;

use kiln_shared::domain::{ErrorCode, OwnerId, UploadState};
use kiln_shared::wire::{Dependency, ErrorBody, Health, UploadPage, UploadView};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestOptions, random_secret, spawn_app, spawn_app_with, token_for};

fn jpeg_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    v.resize(n, 0x42);
    v
}

async fn error_code(resp: reqwest::Response) -> ErrorCode {
    let body = resp.text().await.unwrap();
    let body: ErrorBody =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not an error body ({e}): {body}"));
    body.error.code
}

#[tokio::test]
async fn missing_bad_or_expired_tokens_get_401() {
    let app = spawn_app().await;
    let body = json!({"filename": "a.jpg", "content_type": "image/jpeg", "byte_size": 10});
    let resp = app
        .client
        .post(format!("{}/v1/uploads", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, ErrorCode::Unauthorized);

    let mut other = app.settings.clone();
    other.auth.jwt_secret = random_secret();
    let forged = token_for(&other, &app.owner, false);
    for token in [forged.as_str(), "not-a-jwt"] {
        let resp = app.create_upload_as(token, &body).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "token {token}");
    }
    let expired = kiln_shared::auth::Signer::from_settings(&app.settings.auth)
        .unwrap()
        .mint(&app.owner, false, Duration::from_secs(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        app.create_upload_as(&expired, &body).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.upload_rows().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn oversized_or_unsupported_uploads_are_refused_before_signing() {
    let app = spawn_app().await;
    let too_big = app.settings.api.max_upload_bytes + 1;
    let resp = app
        .create_upload_as(
            &app.token,
            &json!({"filename": "a.jpg", "content_type": "image/jpeg", "byte_size": too_big}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(resp).await, ErrorCode::UploadTooLarge);
    let resp = app
        .create_upload_as(&app.token, &json!({"filename": "a.exe", "content_type": "application/x-msdownload", "byte_size": 10}))
        .await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(resp).await, ErrorCode::UnsupportedContentType);
    assert_eq!(app.upload_rows().await, 0);
    app.finish().await;
}

#[tokio::test]
async fn a_put_with_another_body_length_is_rejected_and_nothing_is_stored() {
    let app = spawn_app().await;
    let auth = app.authorize("a.jpg", "image/jpeg", 1000, "put").await;
    assert_eq!(auth.headers.as_ref().unwrap()["content-length"], "1000");
    for n in [1010, 990] {
        let status = app.send_to_s3(&auth, jpeg_bytes(n), "image/jpeg").await;
        assert!(status.is_client_error(), "S3 accepted {n} bytes: {status}");
    }
    assert!(app.object(&auth.key).await.is_none());
    app.finish().await;
}

#[tokio::test]
async fn a_put_after_expiry_is_rejected_and_nothing_is_stored() {
    let app = spawn_app_with(TestOptions {
        upload_expiry_secs: Some(1),
        ..Default::default()
    })
    .await;
    let auth = app.authorize("a.jpg", "image/jpeg", 100, "put").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = app.send_to_s3(&auth, jpeg_bytes(100), "image/jpeg").await;
    assert!(status.is_client_error(), "expired URL accepted: {status}");
    assert!(app.object(&auth.key).await.is_none());
    app.finish().await;
}

#[tokio::test]
async fn a_post_with_a_larger_file_or_another_key_is_rejected_and_nothing_is_stored() {
    let app = spawn_app().await;
    let auth = app.authorize("a.jpg", "image/jpeg", 1000, "post").await;
    let key = auth.key.clone();
    let status = app.send_to_s3(&auth, jpeg_bytes(1001), "image/jpeg").await;
    assert!(status.is_client_error(), "larger POST accepted: {status}");
    assert!(app.object(&key).await.is_none());

    let other_key = format!("{key}-other");
    let status = app
        .send_to_s3_with(&auth, jpeg_bytes(1000), "image/jpeg", |f| {
            f.insert("key".into(), other_key.clone());
        })
        .await;
    assert!(
        status.is_client_error(),
        "POST to another key accepted: {status}"
    );
    assert!(app.object(&other_key).await.is_none());
    assert!(app.object(&key).await.is_none());

    // The untampered form with the declared size is accepted.
    assert!(
        app.send_to_s3(&auth, jpeg_bytes(1000), "image/jpeg")
            .await
            .is_success()
    );
    assert!(app.object(&key).await.is_some());
    app.storage.delete(&key).await.unwrap();
    app.finish().await;
}

/// A POST upload whose file is full of `\r` bytes: every frame the server reads ends in what may
/// be the start of the multipart boundary. s3s 0.14.1 alone refused such a file with 400
/// (`BoundaryBufferTooLarge`) whenever the next frame was over 64 KiB; the embedded endpoint
/// re-cuts POST bodies so it does not.
#[tokio::test]
async fn a_post_of_carriage_returns_is_stored_whole() {
    let app = spawn_app().await;
    let mut bytes = jpeg_bytes(4);
    bytes.resize(2 * 1024 * 1024, b'\r');
    let auth = app
        .authorize("cr.jpg", "image/jpeg", bytes.len(), "post")
        .await;
    let status = app.send_to_s3(&auth, bytes.clone(), "image/jpeg").await;
    assert!(status.is_success(), "S3 refused the POST: {status}");
    let stored = app.object(&auth.key).await.expect("the object is stored");
    assert_eq!(stored.len(), bytes.len());
    assert!(stored == bytes, "the stored object differs from the file");
    app.storage.delete(&auth.key).await.unwrap();
    app.finish().await;
}

#[tokio::test]
async fn another_owners_upload_is_404() {
    let app = spawn_app().await;
    let auth = app.authorize("a.jpg", "image/jpeg", 100, "put").await;
    let id = &auth.id.to_string();
    let mallory = token_for(&app.settings, &OwnerId::parse("mallory").unwrap(), false);
    let resp = app.complete_as(&mallory, id).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, ErrorCode::NotFound);
    let resp = app
        .client
        .get(format!("{}/v1/uploads/{id}", app.address))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    app.finish().await;
}

#[tokio::test]
async fn complete_before_upload_is_409_and_a_short_object_is_422() {
    let app = spawn_app().await;
    let auth = app.authorize("a.jpg", "image/jpeg", 1000, "post").await;
    let id = &auth.id.to_string();
    let resp = app.complete(id).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(resp).await, ErrorCode::ObjectMissing);

    // The POST policy allows 1..=declared bytes; complete catches the short one.
    assert!(
        app.send_to_s3(&auth, jpeg_bytes(500), "image/jpeg")
            .await
            .is_success()
    );
    let resp = app.complete(id).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(resp).await, ErrorCode::SizeMismatch);
    assert!(
        app.object(&auth.key).await.is_none(),
        "mismatched object kept"
    );
    assert_eq!(app.get_upload(id).await.state, UploadState::Pending);
    app.finish().await;
}

#[tokio::test]
async fn complete_twice_enqueues_one_job() {
    let mut app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let auth = app
        .send_file(&crate::helpers::photos("cameras")[0], "put")
        .await;
    let id = &auth.id.to_string();
    let (a, b) = tokio::join!(app.complete(id), app.complete(id));
    assert_eq!(
        (a.status(), b.status()),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    let again = app.complete(id).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let body: UploadView = again.json().await.unwrap();
    assert_eq!(body.state, UploadState::Uploaded);
    let depth = app.queue.depth().await.unwrap();
    assert_eq!(depth.pending(), 1, "{depth:?}");

    app.start_worker();
    assert_eq!(app.wait_until_processed(id).await.state, UploadState::Ready);
    let depth = app.queue.depth().await.unwrap();
    assert_eq!((depth.done, depth.dead), (1, 0), "{depth:?}");
    app.finish().await;
}

#[tokio::test]
async fn list_pages_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let auth = app
            .authorize(&format!("{i}.jpg"), "image/jpeg", 10, "put")
            .await;
        ids.push(auth.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for expected_len in [2, 2, 1] {
        let mut url = format!("{}/v1/uploads?limit=2", app.address);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: UploadPage = app
            .client
            .get(url)
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page.items.len(), expected_len);
        seen.extend(page.items.iter().map(|u| u.id));
        cursor = page.next_cursor;
    }
    assert!(cursor.is_none());
    assert_eq!(seen, ids);
    app.finish().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let ok = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ok.headers().contains_key("x-request-id"));
    app.finish().await;
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let app = spawn_app().await;
    let mut settings = app.settings.clone();
    // Nothing listens on port 9 (discard) on loopback: S3 is down for this API instance.
    settings.storage.endpoint = "http://127.0.0.1:9".into();
    let broken = kiln_api::Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}/readyz", broken.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(broken.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let resp = app.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Health = resp.json().await.unwrap();
    assert_eq!(body.failed, [Dependency::S3]);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    app.finish().await;
}
