//! Rate limits (`[rate_limits]`): per owner on authorize and complete, per client IP on failed
//! authentications. Past a limit the API answers 429 `rate_limited` with `Retry-After` and the
//! `RateLimit-Policy` / `RateLimit` fields, counts it in `kiln_rate_limited_total{policy}`,
//! and lets the next call through once the wait is over.

use std::time::Duration;

use kiln_shared::domain::{ErrorCode, OwnerId};
use kiln_shared::wire::{ErrorBody, UploadAuthorization};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestOptions, spawn_app_with, token_for};

/// An API (no worker) whose `[rate_limits]` are `change`d from the defaults.
async fn app_with(
    change: impl FnOnce(&mut kiln_shared::config::RateLimitSettings) + Send + 'static,
) -> TestApp {
    spawn_app_with(TestOptions {
        no_worker: true,
        settings: Some(Box::new(move |s| change(&mut s.rate_limits))),
        ..TestOptions::default()
    })
    .await
}

fn upload_body() -> Value {
    json!({"filename": "a.jpg", "content_type": "image/jpeg", "byte_size": 10})
}

fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header on the {}", resp.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts `resp` is the 429 of `policy` advertising `q` per `w` seconds; returns its
/// `Retry-After` in seconds.
async fn assert_rate_limited(resp: Response, policy: &str, q: u32, w: u64) -> u64 {
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(
        header(&resp, "ratelimit-policy"),
        format!("\"{policy}\";q={q};w={w}")
    );
    assert_eq!(
        header(&resp, "ratelimit"),
        format!("\"{policy}\";r=0;t={retry_after}")
    );
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, ErrorCode::RateLimited);
    assert_eq!(body.error.retry_after_secs, Some(retry_after));
    assert!(
        body.error.message.contains(policy),
        "{}",
        body.error.message
    );
    retry_after
}

/// The value of the series `kiln_rate_limited_total{policy="…"}` on the API's `/metrics` (0
/// when absent); asserts it has no label but `policy`.
async fn rate_limited_total(app: &TestApp, policy: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("kiln_rate_limited_total{{policy=\"{policy}\"}} ");
    for line in text
        .lines()
        .filter(|l| l.starts_with("kiln_rate_limited_total{"))
    {
        assert!(
            line.starts_with("kiln_rate_limited_total{policy=\"") && !line.contains(','),
            "a series with labels other than policy: {line}"
        );
    }
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn authorize_past_the_burst_is_429_until_retry_after_passes() {
    let app = app_with(|r| {
        r.authorize_per_second = 1;
        r.burst = 3;
    })
    .await;
    for n in 0..3 {
        let resp = app.create_upload_as(&app.token, &upload_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "authorization {n}");
    }
    let resp = app.create_upload_as(&app.token, &upload_body()).await;
    // q = burst, w = burst / rate seconds.
    let retry_after = assert_rate_limited(resp, "authorize", 3, 3).await;
    assert_eq!(app.upload_rows().await, 3, "the 429 stored nothing");
    assert_eq!(rate_limited_total(&app, "authorize").await, 1);
    assert_eq!(rate_limited_total(&app, "complete").await, 0);

    // The next window passes.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let resp = app.create_upload_as(&app.token, &upload_body()).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "after Retry-After");
    app.finish().await;
}

#[tokio::test]
async fn each_owner_has_its_own_allowance() {
    let app = app_with(|r| {
        r.authorize_per_second = 1;
        r.burst = 2;
    })
    .await;
    for _ in 0..2 {
        let resp = app.create_upload_as(&app.token, &upload_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = app.create_upload_as(&app.token, &upload_body()).await;
    assert_rate_limited(resp, "authorize", 2, 2).await;

    let other = OwnerId::parse(&format!("{}-other", app.owner)).unwrap();
    let other_token = token_for(&app.settings, &other, false);
    for n in 0..2 {
        let resp = app.create_upload_as(&other_token, &upload_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "other owner's call {n}");
    }
    let resp = app.create_upload_as(&other_token, &upload_body()).await;
    assert_rate_limited(resp, "authorize", 2, 2).await;
    assert_eq!(rate_limited_total(&app, "authorize").await, 2);
    app.finish().await;
}

#[tokio::test]
async fn complete_is_limited_apart_from_authorize() {
    let app = app_with(|r| {
        r.authorize_per_second = 1;
        r.complete_per_second = 1;
        r.burst = 2;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = app.create_upload_as(&app.token, &upload_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        ids.push(
            resp.json::<UploadAuthorization>()
                .await
                .unwrap()
                .id
                .to_string(),
        );
    }
    let resp = app.create_upload_as(&app.token, &upload_body()).await;
    assert_rate_limited(resp, "authorize", 2, 2).await;

    // Authorize is exhausted; complete still has its own burst. Nothing was sent to S3, so
    // each counted complete answers 409 object_missing.
    for id in &ids {
        let resp = app.complete(id).await;
        assert_eq!(resp.status(), StatusCode::CONFLICT, "complete {id}");
    }
    let resp = app.complete(&ids[0]).await;
    assert_rate_limited(resp, "complete", 2, 2).await;
    assert_eq!(rate_limited_total(&app, "complete").await, 1);
    assert_eq!(rate_limited_total(&app, "authorize").await, 1);
    app.finish().await;
}

#[tokio::test]
async fn repeated_bad_tokens_from_one_ip_end_in_429() {
    // 3 failures at once, then one every 10 s: the window is 30 s.
    let app = app_with(|r| {
        r.auth_failures_per_minute = 6;
        r.auth_failures_burst = 3;
    })
    .await;
    for n in 0..3 {
        let resp = app.create_upload_as("not-a-token", &upload_body()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "bad token {n}");
    }
    // The failure over the limit is answered 429 instead of 401 …
    let resp = app.create_upload_as("not-a-token", &upload_body()).await;
    assert_rate_limited(resp, "auth_failures", 3, 30).await;
    // … and so is every request of this IP until it conforms again, without a token,
    let resp = app
        .client
        .get(format!("{}/v1/uploads", app.address))
        .send()
        .await
        .unwrap();
    assert_rate_limited(resp, "auth_failures", 3, 30).await;
    // or with a good one: the handler does not run.
    let resp = app.create_upload_as(&app.token, &upload_body()).await;
    assert_rate_limited(resp, "auth_failures", 3, 30).await;
    assert_eq!(app.upload_rows().await, 0);

    // Health and metrics are never held back; the 429s are counted with no owner label.
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(rate_limited_total(&app, "auth_failures").await, 3);
    app.finish().await;
}
