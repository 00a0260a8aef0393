//! Fair scheduling against a real `kiln worker` process: one owner's backlog of 200 large
//! photos does not hold back another owner's upload by more than a small bound.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kiln_shared::domain::{OwnerId, UploadState};
use kiln_shared::wire::{UploadAuthorization, UploadView};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, TestOptions, spawn_app_with, spawn_worker_process, token_for};

/// A 15.2-megapixel (4500 × 3375) JPEG with photo-like detail, and a way to make each copy's
/// bytes distinct (a JPEG comment segment after SOI) so no copy is a duplicate of another.
struct Photo(Vec<u8>);

impl Photo {
    fn new() -> Self {
        let (w, h) = (4500u32, 3375u32);
        let mut state = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..(w / 4 + 1) * (h / 4 + 1))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state & 0x3f) as u8
            })
            .collect();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let n = noise[((y / 4) * (w / 4 + 1) + x / 4) as usize];
            image::Rgb([
                ((x * 191 / w) as u8).wrapping_add(n),
                ((y * 191 / h) as u8).wrapping_add(n / 2),
                (((x + y) * 127 / (w + h)) as u8).wrapping_add(n),
            ])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&img)
            .unwrap();
        Self(out)
    }

    fn copy(&self, tag: &str) -> Vec<u8> {
        let comment = tag.as_bytes();
        let len = u16::try_from(comment.len() + 2).unwrap().to_be_bytes();
        let mut out = Vec::with_capacity(self.0.len() + comment.len() + 4);
        out.extend_from_slice(&self.0[..2]);
        out.extend_from_slice(&[0xff, 0xfe, len[0], len[1]]);
        out.extend_from_slice(comment);
        out.extend_from_slice(&self.0[2..]);
        out
    }
}

async fn send(app: &TestApp, token: &str, bytes: Vec<u8>) -> UploadAuthorization {
    let body = json!({"filename": "big.jpg", "content_type": "image/jpeg",
        "byte_size": bytes.len(), "method": "put"});
    let resp = app.create_upload_as(token, &body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let auth: UploadAuthorization = resp.json().await.unwrap();
    assert!(
        app.send_to_s3(&auth, bytes, "image/jpeg")
            .await
            .is_success()
    );
    auth
}

async fn ready_time(app: &TestApp, token: &str, id: &str) -> Duration {
    let started = Instant::now();
    let resp = app.complete_as(token, id).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    loop {
        let view: UploadView = app
            .client
            .get(format!("{}/v1/uploads/{id}", app.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match view.state {
            UploadState::Ready => return started.elapsed(),
            UploadState::Failed => panic!("upload {id} failed: {:?}", view.error),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{id} never ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ready_count(app: &TestApp, owner: &OwnerId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM uploads WHERE owner = $1 AND state = 'ready'")
        .bind(owner.as_str())
        .fetch_one(app.pool())
        .await
        .unwrap()
}

// A timing test: it compares two latencies on the same worker, so it runs alone (by
// scripts/test, after the parallel suite), never beside other tests competing for the CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "timing; run alone by scripts/test"]
async fn a_backlog_of_200_does_not_hold_back_another_owner() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let mut worker = spawn_worker_process(&app.settings);
    let photo = Photo::new();
    let (a, b) = (
        OwnerId::parse("owner-a").unwrap(),
        OwnerId::parse("owner-b").unwrap(),
    );
    let (token_a, token_b) = (
        token_for(&app.settings, &a, false),
        token_for(&app.settings, &b, false),
    );

    // B's time on an idle worker: the median of three, after a warm-up.
    let mut idle = Vec::new();
    for i in 0..4 {
        let auth = send(&app, &token_b, photo.copy(&format!("idle-{i}"))).await;
        let took = ready_time(&app, &token_b, &auth.id.to_string()).await;
        if i > 0 {
            idle.push(took);
        }
    }
    idle.sort();
    let idle = idle[1];

    // A sends 200 photos, then completes them all at once.
    let auths: Vec<UploadAuthorization> = futures::stream::iter(0..200)
        .map(|i| send(&app, &token_a, photo.copy(&format!("a-{i}"))))
        .buffer_unordered(8)
        .collect()
        .await;
    let completes = auths.iter().map(|auth| {
        let id = auth.id.to_string();
        let token = token_a.clone();
        let app = &app;
        async move { app.complete_as(&token, &id).await.status() }
    });
    let statuses = futures::future::join_all(completes).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));

    // Then B uploads one.
    let auth = send(&app, &token_b, photo.copy("b")).await;
    let took = ready_time(&app, &token_b, &auth.id.to_string()).await;
    let a_ready = ready_count(&app, &a).await;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads WHERE held")
        .fetch_one(app.pool())
        .await
        .unwrap();
    eprintln!(
        "fairness: B idle {:.0} ms, B behind A's backlog {:.0} ms ({:.2}x); A ready {a_ready}/200, {held} held",
        idle.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() / idle.as_secs_f64()
    );
    assert!(a_ready < 200, "A's backlog had drained before B was ready");
    assert!(
        took <= idle * 3,
        "B took {took:?} behind A's backlog, over 3x its idle {idle:?}"
    );

    // A's backlog drains completely.
    let deadline = Instant::now() + Duration::from_secs(600);
    while ready_count(&app, &a).await < 200 {
        assert!(Instant::now() < deadline, "A's backlog did not drain");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    app.wait_for_acks().await; // the last row is ready before its job is acked
    let _ = worker.kill().await;
    app.finish().await;
}
