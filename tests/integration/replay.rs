//! Dead jobs: listing with filters, dry runs, idempotent replay that ends `ready` once the
//! cause is fixed — through the admin API, as an operator would.

use kiln_shared::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};

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

async fn admin_replay(app: &TestApp, token: &str, body: Value) -> Value {
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

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
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
            (u["state"].as_str(), u["error"]["code"].as_str()),
            (Some("failed"), Some("image_too_large"))
        );
        too_large.push(u["id"].as_str().unwrap().to_owned());
    }
    too_large.sort();
    let bad = app.upload_file(&photos("bad")[1], "put").await; // not_an_image.jpg
    assert_eq!(bad["error"]["code"], "unsupported_format");

    // Only admins see dead jobs; the filter selects exactly the matching ones.
    assert_eq!(
        admin_get(&app, &app.token, "state=dead").await.status(),
        StatusCode::FORBIDDEN
    );
    let all: Value = admin_get(&app, &admin, "state=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let filtered: Value = admin_get(
        &app,
        &admin,
        "state=dead&error_code=image_too_large&limit=10",
    )
    .await
    .json()
    .await
    .unwrap();
    let mut got: Vec<String> = filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["upload_id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, too_large);
    for j in filtered["items"].as_array().unwrap() {
        assert_eq!(j["attempts"], 1);
        assert!(j["job_id"].is_string() && j["message"].is_string());
    }
    let other_owner: Value = admin_get(&app, &admin, "state=dead&owner=nobody")
        .await
        .json()
        .await
        .unwrap();
    assert!(other_owner["items"].as_array().unwrap().is_empty());

    // A dry run reports the matches and changes nothing.
    let depth_before = app.queue.depth().await.unwrap();
    let dry = admin_replay(
        &app,
        &admin,
        json!({"filter": {"error_code": "image_too_large"}, "dry_run": true}),
    )
    .await;
    assert_eq!(ids(&dry["replayed"]), too_large);
    assert_eq!(app.queue.depth().await.unwrap(), depth_before);
    for id in &too_large {
        assert_eq!(app.get_upload(id).await["state"], "failed");
    }

    // Fix the cause, then replay: twice for the same id enqueues once.
    app.stop_worker().await;
    app.start_worker();
    let first = admin_replay(&app, &admin, json!({"ids": [too_large[0]]})).await;
    let second = admin_replay(&app, &admin, json!({"ids": [too_large[0]]})).await;
    assert_eq!(ids(&first["replayed"]), vec![too_large[0].clone()]);
    assert_eq!(ids(&second["skipped"]), vec![too_large[0].clone()]);
    let rest = admin_replay(
        &app,
        &admin,
        json!({"filter": {"error_code": "image_too_large"}}),
    )
    .await;
    assert_eq!(ids(&rest["replayed"]), vec![too_large[1].clone()]);
    for id in &too_large {
        let u = app.wait_until_processed(id).await;
        assert_eq!(u["state"], "ready", "{u}");
        assert_eq!(u["attempts"], 1);
        assert!(u["error"].is_null());
    }
    // The unsupported file is still dead; the replayed ones left the dead set.
    let depth = app.queue.depth().await.unwrap();
    assert_eq!(depth.dead, 1, "{depth:?}");
    let left: Value = admin_get(&app, &admin, "state=dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    app.finish().await;
}
