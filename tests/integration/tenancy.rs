//! Quotas and usage: concurrent authorizations against a pending quota, usage falling again
//! when uploads expire or fail, overrides through the admin route and `kiln owners`.

use std::time::Duration;

use futures::future::join_all;
use kiln_shared::domain::OwnerId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestOptions, kiln_command, photos, spawn_app, spawn_app_with, token_for,
};

fn upload_body(size: u64) -> Value {
    json!({"filename": "a.jpg", "content_type": "image/jpeg", "byte_size": size, "method": "put"})
}

async fn usage(app: &TestApp, token: &str) -> Value {
    let resp = app
        .client
        .get(format!("{}/v1/usage", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn concurrent_authorizations_never_pass_the_pending_quota_and_expiry_frees_it() {
    let app = spawn_app_with(TestOptions {
        upload_expiry_secs: Some(1),
        no_worker: true,
        settings: Some(Box::new(|s| s.quotas.max_pending = 10)),
        ..Default::default()
    })
    .await;

    let body = upload_body(1000);
    let calls = (0..50).map(|_| app.create_upload_as(&app.token, &body));
    let mut created = 0;
    for resp in join_all(calls).await {
        match resp.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => {
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                let quota = &body["error"]["quota"];
                assert_eq!(quota["limit"], "pending", "{body}");
                assert_eq!(quota["max"], 10);
                assert_eq!(quota["used"], 10);
                assert_eq!(quota["requested"], 1);
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(
        created, 10,
        "exactly the quota's worth of authorizations pass"
    );
    let u = usage(&app, &app.token).await;
    assert_eq!(u["usage"]["pending"], 10, "{u}");
    assert_eq!(u["usage"]["uploads"], 10, "{u}");
    assert_eq!(u["usage"]["bytes"], 10_000, "{u}");
    assert_eq!(u["limits"]["max_pending"], 10, "{u}");

    // Expiry frees the quota again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = app.sweep(|s| s.sweeper.expiry_grace_secs = 0).await;
    assert_eq!(report.expired, 10);
    let u = usage(&app, &app.token).await;
    assert_eq!(u["usage"]["pending"], 0, "{u}");
    assert_eq!(u["usage"]["bytes"], 0, "{u}");
    let resp = app.create_upload_as(&app.token, &upload_body(1000)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    app.finish().await;
}

#[tokio::test]
async fn bytes_quota_counts_live_uploads_and_a_failure_frees_it() {
    let corrupt = photos("bad")
        .into_iter()
        .find(|p| p.file_name().unwrap() == "truncated.jpg")
        .expect("fixture bad/truncated.jpg");
    let size = std::fs::metadata(&corrupt).unwrap().len();
    let app = spawn_app_with(TestOptions {
        settings: Some(Box::new(move |s| s.quotas.max_bytes = size + 10)),
        ..Default::default()
    })
    .await;

    let id = app.submit_file(&corrupt, "put").await;
    let resp = app.create_upload_as(&app.token, &upload_body(11)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["quota"]["limit"], "bytes", "{body}");
    assert_eq!(body["error"]["quota"]["used"], size);

    // The corrupt upload fails; its bytes no longer count.
    let done = app.wait_until_processed(&id).await;
    assert_eq!(done.state, kiln_shared::domain::UploadState::Failed);
    let u = usage(&app, &app.token).await;
    assert_eq!(u["usage"]["bytes"], 0, "{u}");
    assert_eq!(u["usage"]["uploads"], 0, "{u}");
    let resp = app.create_upload_as(&app.token, &upload_body(11)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    app.finish().await;
}

#[tokio::test]
async fn overrides_through_the_admin_route_and_kiln_owners() {
    let app = spawn_app().await;
    let admin = token_for(&app.settings, &OwnerId::parse("ops").unwrap(), true);
    let url = format!("{}/v1/admin/owners/{}/quota", app.address, app.owner);

    // Not an admin: 403.
    let resp = app
        .client
        .put(&url)
        .bearer_auth(&app.token)
        .json(&json!({"max_uploads": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let resp = app
        .client
        .put(&url)
        .bearer_auth(&admin)
        .json(&json!({"max_uploads": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["limits"]["max_uploads"], 1, "{view}");
    assert_eq!(view["overrides"]["max_uploads"], 1, "{view}");
    assert_eq!(
        view["limits"]["max_pending"],
        app.settings.quotas.max_pending
    );

    let resp = app.create_upload_as(&app.token, &upload_body(5)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = app.create_upload_as(&app.token, &upload_body(5)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["quota"]["limit"], "uploads", "{body}");

    // `kiln owners set-quota` raises it again; the next authorization passes.
    let out = kiln_command("owners", &app.settings)
        .args(["set-quota", app.owner.as_str(), "--max-uploads", "5"])
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["limits"]["max_uploads"], 5, "{shown}");
    assert_eq!(shown["usage"]["uploads"], 1, "{shown}");
    let resp = app.create_upload_as(&app.token, &upload_body(5)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Quota refusals are counted on /metrics, without an owner label by default.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kiln_quota_refusals_total{limit=\"uploads\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kiln_uploads_held 0"), "{metrics}");
    app.finish().await;
}
