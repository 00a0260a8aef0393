//! The asset lifecycle against the real services: delete, restore and purge (by request and by
//! the sweeper past retention), share links, the original's download, dedup by content within
//! an owner, and erasing an owner. Runs on both backends.

use std::path::Path;
use std::time::Duration;

use kiln_shared::db::Db;
use kiln_shared::domain::{OwnerId, UploadState};
use kiln_shared::wire::{ShareList, ShareState, ShareView, UploadPage, UploadView};
use reqwest::{Client, StatusCode, redirect};
use serde_json::{Value, json};

use crate::helpers::{TestApp, fixtures, send_to_s3, sha256_hex, spawn_app, token_for};

fn photo(rel: &str) -> std::path::PathBuf {
    fixtures().join("photos").join(rel)
}

/// A client that never sends a token and does not follow redirects.
fn anonymous() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Authorizes, sends and completes `path` for `token`'s owner (as `filename`), then waits until
/// it is processed.
pub async fn upload_as(app: &TestApp, token: &str, path: &Path, filename: &str) -> UploadView {
    let bytes = std::fs::read(path).unwrap();
    let ct = kiln_shared::domain::content_type::for_path(path);
    let resp = app
        .create_upload_as(
            token,
            &json!({"filename": filename, "content_type": ct, "byte_size": bytes.len(), "method": "put"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let auth: kiln_shared::wire::UploadAuthorization = resp.json().await.unwrap();
    assert!(
        send_to_s3(&app.client, &auth, bytes, ct, |_| {})
            .await
            .is_success()
    );
    let id = auth.id.to_string();
    assert_eq!(
        app.complete_as(token, &id).await.status(),
        StatusCode::ACCEPTED
    );
    wait_processed(app, token, &id).await
}

async fn get_as(app: &TestApp, token: &str, id: &str) -> UploadView {
    let resp = app
        .client
        .get(format!("{}/v1/uploads/{id}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn wait_processed(app: &TestApp, token: &str, id: &str) -> UploadView {
    for _ in 0..600 {
        let u = get_as(app, token, id).await;
        if matches!(u.state, UploadState::Ready | UploadState::Failed) {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("upload {id} was not processed within 60 s");
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&app.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn share(
    app: &TestApp,
    id: &str,
    rendition: &str,
    expires_in: u64,
    max: Option<u64>,
) -> ShareView {
    let resp = call(
        app,
        reqwest::Method::POST,
        &format!("/v1/uploads/{id}/shares"),
        Some(json!({"rendition": rendition, "expires_in": expires_in, "max_downloads": max})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

/// Opens a share link without a token: the status, and on a redirect the bytes and content
/// type behind it.
async fn open(url: &str) -> (StatusCode, Option<(Vec<u8>, String)>) {
    let c = anonymous();
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status();
    if status != StatusCode::FOUND {
        return (status, None);
    }
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    let file = c.get(&to).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK, "the redirect target answers");
    let ct = file.headers()["content-type"].to_str().unwrap().to_owned();
    (status, Some((file.bytes().await.unwrap().to_vec(), ct)))
}

async fn fetch_status(url: &str) -> StatusCode {
    anonymous().get(url).send().await.unwrap().status()
}

async fn listed_ids(app: &TestApp) -> Vec<String> {
    let page: UploadPage = call(app, reqwest::Method::GET, "/v1/uploads?limit=100", None)
        .await
        .json()
        .await
        .unwrap();
    page.items.into_iter().map(|u| u.id.to_string()).collect()
}

/// Every key in this test's bucket prefix that names `needle`.
async fn keys_naming(app: &TestApp, needle: &str) -> Vec<String> {
    let mut keys = app
        .storage
        .list(app.storage.layout().prefix())
        .await
        .unwrap();
    keys.retain(|k| k.contains(needle));
    keys
}

/// `SELECT count(*)` with one text or uuid bind, on either engine.
async fn count(db: &Db, sql: &str, bind: &str) -> i64 {
    let as_uuid = uuid::Uuid::parse_str(bind).ok();
    match db {
        Db::Postgres(p) => match as_uuid {
            Some(u) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .bind(u)
                    .fetch_one(p)
                    .await
            }
            None => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .bind(bind)
                    .fetch_one(p)
                    .await
            }
        },
        Db::Sqlite(p) => match as_uuid {
            Some(u) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .bind(u)
                    .fetch_one(p)
                    .await
            }
            None => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .bind(bind)
                    .fetch_one(p)
                    .await
            }
        },
    }
    .unwrap()
}

#[tokio::test]
async fn delete_hides_the_upload_its_urls_and_shares_and_restore_brings_all_back() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let u = upload_as(&app, &token, &photo("cameras/Canon_40D.jpg"), "canon.jpg").await;
    assert_eq!(u.state, UploadState::Ready);
    let id = u.id.to_string();
    let preview_url = u.derivative("preview").unwrap().url.clone();
    let link = share(&app, &id, "preview", 3600, None).await;
    let link_url = link.url.clone().unwrap();
    assert_eq!(fetch_status(&preview_url).await, StatusCode::OK);
    assert_eq!(open(&link_url).await.0, StatusCode::FOUND);
    let usage_before: Value = call(&app, reqwest::Method::GET, "/v1/usage", None)
        .await
        .json()
        .await
        .unwrap();

    let resp = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{id}"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let deleted: UploadView = resp.json().await.unwrap();
    assert_eq!(deleted.state, UploadState::Deleted);
    let kept = deleted.restorable_until.unwrap() - deleted.deleted_at.unwrap();
    assert_eq!(kept.num_seconds(), 7 * 24 * 3600, "the default retention");
    assert!(
        !listed_ids(&app).await.contains(&id),
        "a deleted upload is listed"
    );
    assert_eq!(
        fetch_status(&preview_url).await,
        StatusCode::NOT_FOUND,
        "the old derivative URL still works"
    );
    let (status, _) = open(&link_url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the share link still works");
    // It reads as missing until restored: no state, no URLs.
    let shown = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/uploads/{id}"),
        None,
    )
    .await;
    assert_eq!(shown.status(), StatusCode::NOT_FOUND);
    let orig = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/uploads/{id}/original"),
        None,
    )
    .await;
    assert_eq!(orig.status(), StatusCode::NOT_FOUND);
    // Deleting frees the quota; deleting again changes nothing.
    let usage: Value = call(&app, reqwest::Method::GET, "/v1/usage", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["usage"]["uploads"], 0);
    assert_eq!(usage["usage"]["bytes"], 0);
    let again = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{id}"),
        None,
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);

    let resp = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/uploads/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let restored: UploadView = resp.json().await.unwrap();
    assert_eq!(restored.state, UploadState::Ready);
    assert!(restored.deleted_at.is_none());
    assert!(listed_ids(&app).await.contains(&id));
    assert_eq!(
        fetch_status(&preview_url).await,
        StatusCode::OK,
        "the derivative URL is back"
    );
    assert_eq!(
        fetch_status(&restored.derivative("preview").unwrap().url).await,
        StatusCode::OK
    );
    assert_eq!(
        open(&link_url).await.0,
        StatusCode::FOUND,
        "the share link is back"
    );
    let usage: Value = call(&app, reqwest::Method::GET, "/v1/usage", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["usage"], usage_before["usage"]);
    // Restoring what is not deleted changes nothing.
    let twice = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/uploads/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(twice.status(), StatusCode::OK);
    let twice: UploadView = twice.json().await.unwrap();
    assert_eq!(twice.state, UploadState::Ready);
    app.finish().await;
}

#[tokio::test]
async fn purge_by_request_and_by_the_sweeper_leaves_no_object_and_no_row() {
    let app = spawn_app().await;
    let token = app.token.clone();
    // Purge at once.
    let a = upload_as(&app, &token, &photo("gps/DSCN0010.jpg"), "a.jpg").await;
    let a_id = a.id.to_string();
    share(&app, &a_id, "original", 600, Some(3)).await;
    assert!(!keys_naming(&app, &a_id).await.is_empty());
    let resp = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{a_id}?purge=true"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        keys_naming(&app, &a_id).await,
        Vec::<String>::new(),
        "objects left after purge"
    );
    for sql in [
        "SELECT count(*) FROM uploads WHERE id = $1",
        "SELECT count(*) FROM derivatives WHERE upload_id = $1",
        "SELECT count(*) FROM shares WHERE upload_id = $1",
    ] {
        assert_eq!(count(&app.db, sql, &a_id).await, 0, "{sql}");
    }
    let gone = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/uploads/{a_id}"),
        None,
    )
    .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A soft delete is purged by the sweeper once past `retention.deleted_secs`; a failed
    // upload once past `retention.failed_secs`.
    let b = upload_as(&app, &token, &photo("gps/DSCN0021.jpg"), "b.jpg").await;
    let b_id = b.id.to_string();
    let failed = upload_as(&app, &token, &photo("bad/truncated.jpg"), "bad.jpg").await;
    assert_eq!(failed.state, UploadState::Failed);
    let f_id = failed.id.to_string();
    assert!(
        !keys_naming(&app, &f_id).await.is_empty(),
        "the failed original is kept"
    );
    call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{b_id}"),
        None,
    )
    .await;
    let kept = app.sweep(|_| {}).await;
    assert_eq!(kept.purged, 0, "purged within retention");
    assert!(!keys_naming(&app, &b_id).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = app
        .sweep(|s| {
            s.retention.deleted_secs = 1;
            s.retention.failed_secs = 1;
        })
        .await;
    assert_eq!(report.purged, 2);
    for id in [&b_id, &f_id] {
        assert_eq!(keys_naming(&app, id).await, Vec::<String>::new());
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM uploads WHERE id = $1", id).await,
            0
        );
    }
    let restore = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/uploads/{b_id}/restore"),
        None,
    )
    .await;
    assert_eq!(restore.status(), StatusCode::NOT_FOUND);
    app.finish().await;
}

#[tokio::test]
async fn share_links_serve_without_a_token_until_expiry_use_or_revocation() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let u = upload_as(
        &app,
        &token,
        &photo("orientation/landscape_6.jpg"),
        "land.jpg",
    )
    .await;
    let id = u.id.to_string();
    let preview = app
        .client
        .get(&u.derivative("preview").unwrap().url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let timed = share(&app, &id, "preview", 2, None).await;
    assert_eq!(timed.state, ShareState::Active);
    let (status, file) = open(timed.url.as_ref().unwrap()).await;
    assert_eq!(status, StatusCode::FOUND);
    let (bytes, ct) = file.unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        sha256_hex(&preview),
        "the link serves the preview"
    );
    assert!(ct.starts_with("image/"), "content type {ct}");

    let counted = share(&app, &id, "preview", 3600, Some(2)).await;
    let url = counted.url.clone().unwrap();
    assert_eq!(open(&url).await.0, StatusCode::FOUND);
    assert_eq!(open(&url).await.0, StatusCode::FOUND);
    let resp = anonymous().get(&url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::GONE,
        "a third download of a 2-download link"
    );
    assert_eq!(error_code(resp).await, "share_expired");

    let revoked = share(&app, &id, "original", 3600, None).await;
    let r = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{id}/shares/{}", revoked.id),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let resp = anonymous()
        .get(revoked.url.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "share_not_found");
    let unknown = format!("{}/s/{}", app.address, "A".repeat(43));
    assert_eq!(fetch_status(&unknown).await, StatusCode::NOT_FOUND);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let resp = anonymous()
        .get(timed.url.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GONE, "a link past expires_in");

    let list: ShareList = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/uploads/{id}/shares"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let states: Vec<ShareState> = list.items.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [ShareState::Expired, ShareState::UsedUp, ShareState::Revoked]
    );
    assert!(
        list.items.iter().all(|s| s.url.is_none()),
        "a listed share shows its token"
    );
    // No share of a rendition the upload lacks, nor of another owner's upload.
    let bad = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/uploads/{id}/shares"),
        Some(json!({"rendition": "poster", "expires_in": 60})),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::CONFLICT);
    app.finish().await;
}

#[tokio::test]
async fn the_original_downloads_with_its_filename_and_sniffed_type() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let path = photo("heic/iphone_13_pro_max.HEIC");
    let u = upload_as(&app, &token, &path, "Été à Paris.HEIC").await;
    assert_eq!(u.state, UploadState::Ready);
    assert_eq!(u.content_type, "image/heic", "declared");
    let resp = anonymous()
        .get(format!("{}/v1/uploads/{}/original", app.address, u.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let to = resp.headers()["location"].to_str().unwrap().to_owned();
    let file = anonymous().get(&to).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(
        file.headers()["content-type"],
        "image/heif",
        "the sniffed type"
    );
    let cd = file.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cd.starts_with("attachment; "), "{cd}");
    assert!(
        cd.contains("filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20Paris.HEIC"),
        "{cd}"
    );
    let bytes = file.bytes().await.unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        sha256_hex(&std::fs::read(&path).unwrap())
    );
    let other = token_for(
        &app.settings,
        &OwnerId::parse("someone-else").unwrap(),
        false,
    );
    let resp = app
        .client
        .get(format!("{}/v1/uploads/{}/original", app.address, u.id))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    app.finish().await;
}

/// `kiln_{name}` from the worker's `/metrics` text (0 when absent).
async fn worker_metric(app: &TestApp, name: &str) -> f64 {
    let addr = app.worker_metrics_addr().await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_same_photo_twice_is_stored_once_and_not_decoded_again() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let path = photo("cameras/Nikon_D70.jpg");
    let decode = "kiln_job_stage_duration_seconds_count{stage=\"decode\"}";
    let first = upload_as(&app, &token, &path, "first.jpg").await;
    assert_eq!(first.state, UploadState::Ready);
    assert!(first.duplicate_of.is_none());
    let decodes = worker_metric(&app, decode).await;
    assert_eq!(decodes, 1.0);

    let second = upload_as(&app, &token, &path, "second.jpg").await;
    assert_eq!(second.state, UploadState::Ready);
    assert_eq!(second.duplicate_of, Some(first.id));
    assert_eq!(second.filename, "second.jpg");
    assert_ne!(second.id, first.id);
    assert_eq!(
        worker_metric(&app, decode).await,
        decodes,
        "the duplicate was decoded"
    );
    // The counter moves just after the commit the API already shows.
    let mut dups = 0.0;
    for _ in 0..50 {
        dups = worker_metric(&app, "kiln_duplicates_total").await;
        if dups >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dups, 1.0);
    assert_eq!(second.metadata, first.metadata);
    let originals = app
        .storage
        .list(&format!(
            "{}originals/{}/",
            app.storage.layout().prefix(),
            app.owner
        ))
        .await
        .unwrap();
    assert_eq!(
        originals.len(),
        1,
        "one original in the bucket: {originals:?}"
    );

    // Purging the first leaves the second whole.
    let resp = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{}?purge=true", first.id),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let second = get_as(&app, &token, &second.id.to_string()).await;
    assert_eq!(second.state, UploadState::Ready);
    for d in &second.derivatives {
        assert_eq!(
            fetch_status(&d.url).await,
            StatusCode::OK,
            "{} of the duplicate",
            d.name
        );
    }
    let orig = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/uploads/{}/original", second.id),
        None,
    )
    .await;
    assert_eq!(orig.status(), StatusCode::OK, "followed to the original");
    assert_eq!(
        sha256_hex(&orig.bytes().await.unwrap()),
        sha256_hex(&std::fs::read(&path).unwrap())
    );

    // Another owner's copy is processed on its own.
    let other = token_for(
        &app.settings,
        &OwnerId::parse("dedup-other").unwrap(),
        false,
    );
    let theirs = upload_as(&app, &other, &path, "theirs.jpg").await;
    assert_eq!(theirs.state, UploadState::Ready);
    assert!(theirs.duplicate_of.is_none());
    assert_eq!(worker_metric(&app, decode).await, decodes + 1.0);

    // Purging the survivor now removes the shared objects too.
    let resp = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/uploads/{}?purge=true", second.id),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        keys_naming(&app, &first.id.to_string()).await,
        Vec::<String>::new()
    );
    app.finish().await;
}

#[tokio::test]
async fn erasing_an_owner_leaves_nothing_of_theirs_and_a_second_run_removes_nothing() {
    let app = spawn_app().await;
    let owner = OwnerId::parse("erase-me").unwrap();
    let token = token_for(&app.settings, &owner, false);
    let admin = token_for(&app.settings, &app.owner, true);
    let ready = upload_as(&app, &token, &photo("mobile/jolla.jpg"), "r.jpg").await;
    let failed = upload_as(&app, &token, &photo("bad/not_an_image.jpg"), "f.jpg").await;
    assert_eq!(failed.state, UploadState::Failed);
    let deleted = upload_as(&app, &token, &photo("orientation/landscape_2.jpg"), "d.jpg").await;
    let shared = upload_as(&app, &token, &photo("orientation/landscape_3.jpg"), "s.jpg").await;
    let r = app
        .client
        .post(format!("{}/v1/uploads/{}/shares", app.address, shared.id))
        .bearer_auth(&token)
        .json(&json!({"rendition": "thumb", "expires_in": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .client
        .delete(format!("{}/v1/uploads/{}", app.address, deleted.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A pending upload whose bytes are already under tmp/.
    let bytes = std::fs::read(photo("orientation/landscape_4.jpg")).unwrap();
    let resp = app
        .create_upload_as(
            &token,
            &json!({"filename": "p.jpg", "content_type": "image/jpeg", "byte_size": bytes.len(), "method": "put"}),
        )
        .await;
    let pending: kiln_shared::wire::UploadAuthorization = resp.json().await.unwrap();
    assert!(
        send_to_s3(&app.client, &pending, bytes, "image/jpeg", |_| {})
            .await
            .is_success()
    );
    let key = app
        .client
        .post(format!("{}/v1/admin/keys", app.address))
        .bearer_auth(&admin)
        .json(&json!({"owner": "erase-me", "scopes": ["upload", "read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), StatusCode::CREATED);
    let q = app
        .client
        .put(format!("{}/v1/admin/owners/erase-me/quota", app.address))
        .bearer_auth(&admin)
        .json(&json!({"max_uploads": 50}))
        .send()
        .await
        .unwrap();
    assert!(q.status().is_success());
    // Another owner's upload, untouched by the erase.
    let keep = upload_as(
        &app,
        &app.token,
        &photo("orientation/landscape_5.jpg"),
        "keep.jpg",
    )
    .await;
    app.wait_for_acks().await;
    let ids: Vec<String> = [&ready, &failed, &deleted, &shared]
        .iter()
        .map(|u| u.id.to_string())
        .chain([pending.id.to_string()])
        .collect();
    assert!(
        queue_mentions(&app, &ids).await > 0,
        "the finished tasks name the uploads"
    );

    let out = crate::helpers::kiln_command("owners", &app.settings)
        .args(["erase", "erase-me"])
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "kiln owners erase failed");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["uploads"], 5, "{report}");
    assert_eq!(report["api_keys"], 1, "{report}");
    assert_eq!(report["shares"], 1, "{report}");
    assert!(report["objects"].as_u64().unwrap() >= 10, "{report}");
    assert!(report["tasks"].as_u64().unwrap() >= 4, "{report}");

    for (sql, bind) in [
        ("SELECT count(*) FROM uploads WHERE owner = $1", "erase-me"),
        ("SELECT count(*) FROM shares WHERE owner = $1", "erase-me"),
        ("SELECT count(*) FROM api_keys WHERE owner = $1", "erase-me"),
        ("SELECT count(*) FROM owners WHERE owner = $1", "erase-me"),
        (
            "SELECT count(*) FROM owner_usage WHERE owner = $1",
            "erase-me",
        ),
    ] {
        assert_eq!(count(&app.db, sql, bind).await, 0, "{sql}");
    }
    assert_eq!(
        keys_naming(&app, "/erase-me/").await,
        Vec::<String>::new(),
        "objects left"
    );
    assert_eq!(queue_mentions(&app, &ids).await, 0, "queue entries left");

    // The other owner is whole; a second run (the admin route) removes nothing.
    let kept = get_as(&app, &app.token, &keep.id.to_string()).await;
    assert_eq!(kept.state, UploadState::Ready);
    assert_eq!(
        fetch_status(&kept.derivative("thumb").unwrap().url).await,
        StatusCode::OK
    );
    let again = app
        .client
        .delete(format!("{}/v1/admin/owners/erase-me", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again,
        json!({"api_keys": 0, "shares": 0, "uploads": 0, "objects": 0, "tasks": 0, "owner_rows": 0})
    );
    app.finish().await;
}

/// How many entries of this test's queues (Redis keys and values, or apalis-sqlite rows)
/// name one of `ids` or one of their first five ProcessUpload task ids.
async fn queue_mentions(app: &TestApp, uploads: &[String]) -> usize {
    let mut ids: Vec<String> = uploads.to_vec();
    for u in uploads {
        let id = kiln_shared::domain::UploadId(uuid::Uuid::parse_str(u).unwrap());
        for g in 1..=5 {
            ids.push(kiln_shared::queue::task_id::process_upload(id, g).to_string());
        }
    }
    match &app.queue {
        kiln_shared::queue::Queue::Sqlite(q) => {
            let mut n = 0;
            for id in ids {
                let c: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM Jobs WHERE instr(CAST(job AS TEXT), ?1) > 0 OR id = ?1",
                )
                .bind(id)
                .fetch_one(q.pool())
                .await
                .unwrap();
                n += c as usize;
            }
            n
        }
        kiln_shared::queue::Queue::Redis(_) => {
            let mut conn = app.queue.redis_connection().unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", app.settings.redis.queue))
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut dump = String::new();
            for key in keys {
                let kind: String = redis::cmd("TYPE")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let values: Vec<String> = match kind.as_str() {
                    "hash" => redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .unwrap(),
                    "set" => redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .unwrap(),
                    "list" => redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                        .unwrap(),
                    "zset" => redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                        .unwrap(),
                    "string" => vec![
                        redis::cmd("GET")
                            .arg(&key)
                            .query_async(&mut conn)
                            .await
                            .unwrap(),
                    ],
                    _ => Vec::new(),
                };
                dump.push_str(&key);
                dump.push('\n');
                for v in values {
                    dump.push_str(&v);
                    dump.push('\n');
                }
            }
            ids.iter().map(|id| dump.matches(id.as_str()).count()).sum()
        }
    }
}
