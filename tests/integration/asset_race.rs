//! A delete or purge racing a worker mid-job. The worker is a `kiln worker` process with the
//! test hook on (`KILN_TEST_HOLD_DIR`, `kiln_worker::jobs::test_hook`), which holds a marked
//! upload's job after it wrote its derivatives and promoted the original, just before the
//! commit. Fleet backend (Postgres, Redis, Garage).

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{TestApp, TestOptions, fixtures, kiln_command, spawn_app_with};

/// Sends a photo and marks its upload for the hook, then completes it; returns its id once the
/// worker holds the job.
async fn held_upload(app: &TestApp, hold: &Path, name: &str) -> String {
    let path = fixtures().join("photos/cameras").join(name);
    let auth = app.send_file(&path, "put").await;
    let id = auth.id.to_string();
    std::fs::write(hold.join(format!("{id}.hold")), b"").unwrap();
    assert_eq!(app.complete(&id).await.status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hold.join(format!("{id}.held")).exists() {
        assert!(
            Instant::now() < deadline,
            "the worker never reached the hook"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    id
}

fn release(hold: &Path, id: &str) {
    std::fs::write(hold.join(format!("{id}.release")), b"").unwrap();
}

/// Every key of this test's bucket prefix that names `id`.
async fn keys_of(app: &TestApp, id: &str) -> Vec<String> {
    let mut keys = app
        .storage
        .list(app.storage.layout().prefix())
        .await
        .unwrap();
    keys.retain(|k| k.contains(id));
    keys
}

async fn row_state(app: &TestApp, id: &str) -> Option<(String, bool)> {
    sqlx::query_as("SELECT state, deleted_at IS NOT NULL FROM uploads WHERE id = $1")
        .bind(uuid::Uuid::parse_str(id).unwrap())
        .fetch_optional(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_delete_racing_a_worker_ends_deleted_and_leaves_nothing_after_purge() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let hold = std::env::temp_dir().join(format!("kiln-hold-{}", app.settings.redis.queue));
    std::fs::create_dir_all(&hold).unwrap();
    let mut worker = kiln_command("worker", &app.settings)
        .env("KILN_TEST_HOLD_DIR", &hold)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();

    // Soft delete while the job is held: the worker commits, the upload stays deleted, and
    // its files are out of reach; the purge then removes every object.
    let id = held_upload(&app, &hold, "Canon_40D.jpg").await;
    assert!(
        keys_of(&app, &id)
            .await
            .iter()
            .any(|k| k.contains("/derivatives/")),
        "the held job has written its derivatives"
    );
    let resp = app
        .client
        .delete(format!("{}/v1/uploads/{id}", app.address))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    release(&hold, &id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while row_state(&app, &id).await != Some(("ready".into(), true)) {
        assert!(
            Instant::now() < deadline,
            "the job did not finish: {:?}",
            row_state(&app, &id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_for_acks().await;
    let shown = app
        .client
        .get(format!("{}/v1/uploads/{id}", app.address))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shown.status(),
        StatusCode::NOT_FOUND,
        "the worker resurrected the upload"
    );
    let visible: Vec<String> = keys_of(&app, &id)
        .await
        .into_iter()
        .filter(|k| !k.contains("/trash/"))
        .collect();
    assert_eq!(
        visible,
        Vec::<String>::new(),
        "files of a deleted upload in reach"
    );
    let resp = app
        .client
        .delete(format!("{}/v1/uploads/{id}?purge=true", app.address))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        keys_of(&app, &id).await,
        Vec::<String>::new(),
        "objects left after purge"
    );

    // Purge while the job is held: the worker finds no row at its commit and deletes what it
    // wrote.
    let id = held_upload(&app, &hold, "Nikon_D70.jpg").await;
    let resp = app
        .client
        .delete(format!("{}/v1/uploads/{id}?purge=true", app.address))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    release(&hold, &id);
    app.wait_for_acks().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !keys_of(&app, &id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "objects left: {:?}",
            keys_of(&app, &id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(row_state(&app, &id).await, None);
    worker.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&hold);
    app.finish().await;
}
