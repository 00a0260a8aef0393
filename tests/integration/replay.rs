//! Dead jobs: listing with filters, dry runs, idempotent replay that ends `ready` once the
//! cause is fixed — through the admin API, as an operator would.

use kiln_shared::Settings;
use kiln_shared::domain::{ErrorCode, UploadId, UploadState};
use kiln_shared::wire::{JobFilter, JobList, ReplayReport, ReplayRequest};
use reqwest::StatusCode;

use crate::helpers::{TestApp, TestOptions, photos, spawn_app_with, token_for};

fn tiny_pixel_limit(s: &mut Settings) {
    s.worker.max_pixels = 1_000;
}

async fn admin_get(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/v1/admin/jobs?{query}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn admin_replay(app: &TestApp, token: &str, body: ReplayRequest) -> ReplayReport {
    let resp = app
        .client
        .post(format!("{}/v1/admin/jobs/replay", app.address))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

fn ids(list: &[UploadId]) -> Vec<UploadId> {
    let mut v = list.to_vec();
    v.sort();
    v
}

/// A filter on one error code.
fn code_filter(code: ErrorCode) -> JobFilter {
    JobFilter {
        error_code: Some(code),
        ..JobFilter::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_jobs_are_filtered_dry_run_and_replayed_once_after_the_fix() {
    // The worker starts misconfigured: every real photo is over its pixel limit.
    let mut app = spawn_app_with(TestOptions {
        worker_settings: Some(tiny_pixel_limit),
        ..Default::default()
    })
    .await;
    let admin = token_for(&app.settings, &app.owner, true);
    let cameras = photos("cameras");
    let mut too_large = Vec::new();
    for f in &cameras[..2] {
        let u = app.upload_file(f, "put").await;
        assert_eq!(
            (u.state, u.error.as_ref().map(|e| e.code)),
            (UploadState::Failed, Some(ErrorCode::ImageTooLarge))
        );
        too_large.push(u.id);
    }
    too_large.sort();
    let bad = app.upload_file(&photos("bad")[1], "put").await; // not_an_image.jpg
    assert_eq!(
        bad.error.as_ref().map(|e| e.code),
        Some(ErrorCode::UnsupportedFormat)
    );

    // Only admins see dead jobs; the filter selects exactly the matching ones.
    assert_eq!(
        admin_get(&app, &app.token, "state=dead").await.status(),
        StatusCode::FORBIDDEN
    );
    let all: JobList = admin_get(&app, &admin, "state=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    let filtered: JobList = admin_get(
        &app,
        &admin,
        "state=dead&error_code=image_too_large&limit=10",
    )
    .await
    .json()
    .await
    .unwrap();
    let mut got: Vec<UploadId> = filtered.items.iter().map(|j| j.upload_id).collect();
    got.sort();
    assert_eq!(got, too_large);
    for j in &filtered.items {
        assert_eq!(j.attempts, 1);
        assert!(j.job_id.is_some() && j.message.is_some());
    }
    let other_owner: JobList = admin_get(&app, &admin, "state=dead&owner=nobody")
        .await
        .json()
        .await
        .unwrap();
    assert!(other_owner.items.is_empty());

    // A dry run reports the matches and changes nothing.
    let depth_before = app.queue.depth().await.unwrap();
    let dry = admin_replay(
        &app,
        &admin,
        ReplayRequest {
            dry_run: true,
            ..ReplayRequest::filter(code_filter(ErrorCode::ImageTooLarge))
        },
    )
    .await;
    assert_eq!(ids(&dry.replayed), too_large);
    assert_eq!(app.queue.depth().await.unwrap(), depth_before);
    for id in &too_large {
        assert_eq!(
            app.get_upload(&id.to_string()).await.state,
            UploadState::Failed
        );
    }

    // Fix the cause, then replay: twice for the same id enqueues once.
    app.stop_worker().await;
    app.start_worker();
    let first = admin_replay(&app, &admin, ReplayRequest::ids([too_large[0]])).await;
    let second = admin_replay(&app, &admin, ReplayRequest::ids([too_large[0]])).await;
    assert_eq!(ids(&first.replayed), vec![too_large[0]]);
    assert_eq!(ids(&second.skipped), vec![too_large[0]]);
    let rest = admin_replay(
        &app,
        &admin,
        ReplayRequest::filter(code_filter(ErrorCode::ImageTooLarge)),
    )
    .await;
    assert_eq!(ids(&rest.replayed), vec![too_large[1]]);
    for id in &too_large {
        let u = app.wait_until_processed(&id.to_string()).await;
        assert_eq!(u.state, UploadState::Ready, "{u:?}");
        assert_eq!(u.attempts, 1);
        assert!(u.error.is_none());
    }
    // The unsupported file is still dead; the replayed ones left the dead set.
    let depth = app.queue.depth().await.unwrap();
    assert_eq!(depth.dead, 1, "{depth:?}");
    let left: JobList = admin_get(&app, &admin, "state=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(left.items.len(), 1);
    app.finish().await;
}
