//! `KilnClient` against an in-process fake of the API and of S3 (axum on a loopback port): the
//! whole flow for both methods, the transfer's retries, and API error bodies as
//! `ClientError::Api`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use chrono::Utc;
use kiln_client::{Call, ClientError, KilnClient};
use kiln_shared::domain::{ErrorCode, UploadId, UploadMethod, UploadState};
use kiln_shared::wire::{CreateUpload, ErrorBody, ErrorDetail, UploadAuthorization, UploadView};

const TOKEN: &str = "t0ken";

#[derive(Default)]
struct Fake {
    base: std::sync::OnceLock<String>,
    /// S3 attempts so far (PUT and POST).
    s3_attempts: AtomicUsize,
    /// S3 attempts answered 503 before one succeeds.
    s3_failures: AtomicUsize,
    /// GETs so far: the first answers `processing`, later ones `ready`.
    gets: AtomicUsize,
}

fn view(id: UploadId, state: UploadState) -> UploadView {
    let now = Utc::now();
    UploadView {
        id,
        state,
        filename: "a.jpg".into(),
        content_type: "image/jpeg".into(),
        byte_size: 5,
        method: UploadMethod::Put,
        attempts: 0,
        error: None,
        metadata: None,
        derivatives: Vec::new(),
        created_at: now,
        updated_at: now,
        expires_at: now,
        completed_at: None,
        ready_at: None,
        deleted_at: None,
        restorable_until: None,
        duplicate_of: None,
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0ken")
}

async fn authorize(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<CreateUpload>,
) -> Result<(StatusCode, Json<UploadAuthorization>), (StatusCode, Json<ErrorBody>)> {
    if !authorized(&headers) || body.byte_size > 5 {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(ErrorBody {
                error: ErrorDetail::new(
                    ErrorCode::UploadTooLarge,
                    "the upload is over the size limit",
                ),
            }),
        ));
    }
    let base = fake.base.get().unwrap();
    let size = body.byte_size.to_string();
    let (url, headers, fields) = match body.method {
        UploadMethod::Put => (
            format!("{base}/s3/put"),
            Some(BTreeMap::from([
                ("content-length".into(), size),
                ("content-type".into(), body.content_type.clone()),
            ])),
            None,
        ),
        UploadMethod::Post => (
            format!("{base}/s3/post"),
            None,
            Some(BTreeMap::from([("key".into(), "tmp/k".into())])),
        ),
    };
    let auth = UploadAuthorization {
        id: UploadId::new(),
        method: body.method,
        url,
        headers,
        fields,
        key: "tmp/k".into(),
        expires_at: Utc::now(),
    };
    Ok((StatusCode::CREATED, Json(auth)))
}

/// 503 for the first `s3_failures` attempts, then 200/204 if the request is as signed.
fn s3_answer(fake: &Fake, ok: bool, success: StatusCode) -> StatusCode {
    let attempt = fake.s3_attempts.fetch_add(1, Ordering::SeqCst);
    if attempt < fake.s3_failures.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if ok {
        success
    } else {
        StatusCode::FORBIDDEN
    }
}

async fn s3_put(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let lengths: Vec<_> = headers.get_all("content-length").iter().collect();
    let ok = lengths.len() == 1
        && lengths[0] == "5"
        && body.as_ref() == b"hello"
        && headers.get("content-type").unwrap() == "image/jpeg";
    s3_answer(&fake, ok, StatusCode::OK)
}

async fn s3_post(State(fake): State<Arc<Fake>>, body: Bytes) -> StatusCode {
    let body = String::from_utf8_lossy(&body);
    let key = body.find("name=\"key\"").unwrap_or(usize::MAX);
    let file = body.find("name=\"file\"; filename=\"a.jpg\"").unwrap_or(0);
    let ok = key < file && body.contains("Content-Type: image/jpeg") && body.contains("hello");
    s3_answer(&fake, ok, StatusCode::NO_CONTENT)
}

async fn complete(headers: HeaderMap, Path(id): Path<String>) -> (StatusCode, Json<UploadView>) {
    assert!(authorized(&headers));
    let id = id.parse().unwrap();
    (StatusCode::ACCEPTED, Json(view(id, UploadState::Uploaded)))
}

async fn status(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Json<UploadView> {
    let state = if fake.gets.fetch_add(1, Ordering::SeqCst) == 0 {
        UploadState::Processing
    } else {
        UploadState::Ready
    };
    Json(view(id.parse().unwrap(), state))
}

/// Starts the fake; returns it and a client of it.
async fn start(s3_failures: usize) -> (Arc<Fake>, KilnClient) {
    let fake = Arc::new(Fake::default());
    fake.s3_failures.store(s3_failures, Ordering::SeqCst);
    let app = Router::new()
        .route("/v1/uploads", post(authorize))
        .route("/v1/uploads/{id}/complete", post(complete))
        .route("/v1/uploads/{id}", get(status))
        .route("/s3/put", put(s3_put))
        .route("/s3/post", post(s3_post))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    fake.base.set(base.clone()).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = KilnClient::new(&format!("{base}/"), TOKEN).unwrap();
    (fake, client)
}

fn create(method: UploadMethod, byte_size: u64) -> CreateUpload {
    kiln_client::describe(std::path::Path::new("dir/a.jpg"), byte_size, method)
}

/// A streamed body (no length of its own), as `kiln upload`'s progress body is.
fn streamed() -> reqwest::Body {
    let chunks = [
        Ok::<_, std::io::Error>(Bytes::from_static(b"hel")),
        Ok(Bytes::from_static(b"lo")),
    ];
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

async fn whole_flow(method: UploadMethod, s3_failures: usize) -> (Arc<Fake>, Vec<Duration>) {
    let (fake, client) = start(s3_failures).await;
    let upload = create(method, 5);
    let auth = client.authorize(&upload).await.unwrap();
    assert_eq!(auth.method, method);
    let mut waits = Vec::new();
    client
        .send(&auth, &upload, streamed, |e, after| {
            assert!(matches!(e, ClientError::Storage { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE));
            waits.push(after);
        })
        .await
        .unwrap();
    let completed = client.complete(auth.id).await.unwrap();
    assert_eq!(
        (completed.id, completed.state),
        (auth.id, UploadState::Uploaded)
    );
    let done = client
        .wait_until_final(auth.id, Duration::from_secs(5), Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(done.state, UploadState::Ready);
    (fake, waits)
}

#[tokio::test]
async fn put_and_post_go_through_the_whole_flow() {
    for method in [UploadMethod::Put, UploadMethod::Post] {
        let (fake, waits) = whole_flow(method, 0).await;
        assert_eq!(fake.s3_attempts.load(Ordering::SeqCst), 1, "{method:?}");
        assert!(waits.is_empty());
    }
}

#[tokio::test]
async fn a_503_from_s3_is_retried_with_doubling_waits() {
    let (fake, waits) = whole_flow(UploadMethod::Put, 2).await;
    assert_eq!(fake.s3_attempts.load(Ordering::SeqCst), 3);
    // backon computes the delays in floating point: 400.000006 ms.
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [200, 400]);
}

#[tokio::test]
async fn s3_gives_up_after_four_retries() {
    let (fake, client) = start(usize::MAX).await;
    let upload = create(UploadMethod::Put, 5);
    let auth = client.authorize(&upload).await.unwrap();
    let body = || reqwest::Body::from(Bytes::from_static(b"hello"));
    let e = client
        .send(&auth, &upload, body, |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Storage { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(fake.s3_attempts.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_api_error_body_is_a_typed_error() {
    let (_fake, client) = start(0).await;
    let e = client
        .authorize(&create(UploadMethod::Put, 6))
        .await
        .unwrap_err();
    match &e {
        ClientError::Api {
            call,
            status,
            code,
            message,
        } => {
            assert_eq!(*call, Call::Authorize);
            assert_eq!(*status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(*code, ErrorCode::UploadTooLarge);
            assert_eq!(message, "the upload is over the size limit");
        }
        other => panic!("{other:?}"),
    }
    let unreachable = KilnClient::new("http://127.0.0.1:9", TOKEN).unwrap();
    let e = unreachable.get(UploadId::new()).await.unwrap_err();
    assert!(matches!(
        e,
        ClientError::Transport {
            call: Call::Get,
            ..
        }
    ));
    assert!(e.report().starts_with("status failed: "), "{}", e.report());
}
