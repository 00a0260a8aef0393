//! API keys beside JWTs, against the real API and database (Postgres, or SQLite with
//! `KILN_TEST_BACKEND=standalone`): each route's scope is enforced for keys and JWTs alike; a
//! revoked or expired key is refused on the next request; the database holds the secret's
//! SHA-256, never the secret; `last_used_at` is recorded (at most once a minute); and `kiln
//! keys create|list|revoke` round-trips through the built binary.

use std::process::Stdio;
use std::time::Duration;

use kiln_shared::db::Db;
use kiln_shared::domain::ErrorCode;
use kiln_shared::wire::{CreatedKey, ErrorBody, KeyList, KeyView, UploadAuthorization};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, kiln_command, sha256_hex, spawn_app, token_for};

/// A 64×48 PNG, small enough to process in milliseconds.
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An admin JWT for the app's default owner.
fn admin_jwt(app: &TestApp) -> String {
    token_for(&app.settings, &app.owner, true)
}

/// `method path` with `bearer` and an optional JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> Response {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Asserts `resp` is `status` with error `code`; returns the message.
async fn refused(resp: Response, status: StatusCode, code: ErrorCode) -> String {
    assert_eq!(resp.status(), status);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, code, "{}", body.error.message);
    body.error.message
}

/// `POST /v1/admin/keys` (as an admin JWT) for the app's owner; asserts 201.
async fn create_key(app: &TestApp, scopes: &[&str], expires_in_secs: Option<u64>) -> CreatedKey {
    let mut body = json!({"owner": app.owner.as_str(), "scopes": scopes, "name": "test key"});
    if let Some(s) = expires_in_secs {
        body["expires_in_secs"] = s.into();
    }
    let resp = call(
        app,
        Method::POST,
        "/v1/admin/keys",
        &admin_jwt(app),
        Some(body),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.json().await.unwrap()
}

/// The app's owner's keys, as `GET /v1/admin/keys?owner=` lists them.
async fn keys_of_owner(app: &TestApp) -> Vec<KeyView> {
    let path = format!("/v1/admin/keys?owner={}", app.owner);
    let resp = call(app, Method::GET, &path, &admin_jwt(app), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<KeyList>().await.unwrap().items
}

fn upload_body(bytes: &[u8]) -> Value {
    json!({"filename": "k.png", "content_type": "image/png", "byte_size": bytes.len()})
}

#[tokio::test]
async fn scopes_are_enforced_per_route() {
    let app = spawn_app().await;
    let uploader = create_key(&app, &["upload"], None).await;
    assert_eq!(uploader.api_key.owner, app.owner.as_str());
    let key = uploader.key.as_str();
    assert!(key.starts_with(&format!("kiln_{}_", uploader.api_key.prefix)));

    // `upload`: authorize, send the bytes through the presigned URL, complete.
    let bytes = png();
    let resp = app.create_upload_as(key, &upload_body(&bytes)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let auth: UploadAuthorization = resp.json().await.unwrap();
    assert!(
        app.send_to_s3(&auth, bytes.clone(), "image/png")
            .await
            .is_success()
    );
    let id = auth.id.to_string();
    assert_eq!(
        app.complete_as(key, &id).await.status(),
        StatusCode::ACCEPTED
    );

    // Not `read`: no get, no list, no original, no share links. Not `admin`: no admin route.
    for path in [
        format!("/v1/uploads/{id}"),
        "/v1/uploads".to_owned(),
        format!("/v1/uploads/{id}/original"),
        format!("/v1/uploads/{id}/shares"),
    ] {
        let resp = call(&app, Method::GET, &path, key, None).await;
        let message = refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;
        assert!(message.contains("read scope"), "{path}: {message}");
    }
    let share = json!({"rendition": "thumb", "expires_in": 60});
    let path = format!("/v1/uploads/{id}/shares");
    let resp = call(&app, Method::POST, &path, key, Some(share)).await;
    let message = refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;
    assert!(message.contains("read scope"), "{message}");
    let replay = json!({"ids": [id]});
    let resp = call(
        &app,
        Method::POST,
        "/v1/admin/jobs/replay",
        key,
        Some(replay),
    )
    .await;
    let message = refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;
    assert!(message.contains("admin scope"), "{message}");
    let resp = call(&app, Method::GET, "/v1/admin/keys", key, None).await;
    refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;

    // The upload is the key's owner's: the owner's JWT reads it, and it is processed.
    let done = app.wait_until_processed(&id).await;
    assert_eq!(done.state, kiln_shared::domain::UploadState::Ready);

    // `read`: get and list, but no authorize and no complete.
    let reader = create_key(&app, &["read"], None).await;
    let resp = call(&app, Method::GET, "/v1/uploads", &reader.key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page: Value = resp.json().await.unwrap();
    assert_eq!(page["items"][0]["id"], id.as_str());
    let resp = call(
        &app,
        Method::GET,
        &format!("/v1/uploads/{id}"),
        &reader.key,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .create_upload_as(&reader.key, &upload_body(&bytes))
        .await;
    let message = refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;
    assert!(message.contains("upload scope"), "{message}");
    let resp = app.complete_as(&reader.key, &id).await;
    refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;

    // `admin` on a key opens the admin routes; a JWT without the admin claim does not.
    let admin = create_key(&app, &["admin"], None).await;
    let resp = call(&app, Method::GET, "/v1/admin/keys", &admin.key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call(&app, Method::GET, "/v1/admin/keys", &app.token, None).await;
    let message = refused(resp, StatusCode::FORBIDDEN, ErrorCode::Forbidden).await;
    assert!(message.contains("admin scope"), "{message}");

    // A key of the right shape but a wrong secret, and a malformed one, are 401.
    let prefix = &uploader.api_key.prefix;
    let forged = format!("kiln_{prefix}_{}", "A".repeat(43));
    let malformed = format!("kiln_{prefix}_short");
    for bad in [forged.as_str(), malformed.as_str(), "kiln_"] {
        let resp = call(&app, Method::GET, "/v1/uploads", bad, None).await;
        refused(resp, StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_the_next_request() {
    let app = spawn_app().await;
    let created = create_key(&app, &["read", "upload"], None).await;
    let prefix = created.api_key.prefix.clone();
    let resp = call(&app, Method::GET, "/v1/uploads", &created.key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let admin = admin_jwt(&app);
    let path = format!("/v1/admin/keys/{prefix}");
    let resp = call(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let revoked: KeyView = resp.json().await.unwrap();
    let revoked_at = revoked.revoked_at.expect("revoked_at is set");

    let resp = call(&app, Method::GET, "/v1/uploads", &created.key, None).await;
    let message = refused(resp, StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).await;
    assert!(message.contains("revoked"), "{message}");

    // Idempotent: the first revocation's time stays. An unknown prefix is 404, a malformed 400.
    let again: KeyView = call(&app, Method::DELETE, &path, &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(revoked_at));
    let resp = call(
        &app,
        Method::DELETE,
        "/v1/admin/keys/000000000000",
        &admin,
        None,
    )
    .await;
    refused(resp, StatusCode::NOT_FOUND, ErrorCode::NotFound).await;
    let resp = call(&app, Method::DELETE, "/v1/admin/keys/XYZ", &admin, None).await;
    refused(resp, StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest).await;
    app.finish().await;
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    let created = create_key(&app, &["read"], Some(2)).await;
    let expires_at = created.api_key.expires_at.expect("expires_at is set");
    let lifetime = expires_at - created.api_key.created_at;
    assert_eq!(lifetime.num_seconds(), 2);
    let resp = call(&app, Method::GET, "/v1/uploads", &created.key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let resp = call(&app, Method::GET, "/v1/uploads", &created.key, None).await;
    let message = refused(resp, StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).await;
    assert!(message.contains("expired"), "{message}");
    app.finish().await;
}

/// Every column of the `api_keys` row with `prefix`, as text (either engine).
async fn key_row(db: &Db, prefix: &str) -> Vec<String> {
    const SQL: &str = "SELECT prefix, secret_hash, owner, scopes, COALESCE(name, ''), \
        CAST(created_at AS TEXT), COALESCE(CAST(expires_at AS TEXT), ''), \
        COALESCE(CAST(revoked_at AS TEXT), ''), COALESCE(CAST(last_used_at AS TEXT), '') \
        FROM api_keys WHERE prefix = $1";
    let row: (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ) = match db {
        Db::Postgres(p) => sqlx::query_as(SQL).bind(prefix).fetch_one(p).await,
        Db::Sqlite(p) => sqlx::query_as(SQL).bind(prefix).fetch_one(p).await,
    }
    .expect("the key's row");
    vec![
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
    ]
}

#[tokio::test]
async fn the_database_holds_the_secrets_hash_never_the_secret() {
    let app = spawn_app().await;
    let created = create_key(&app, &["upload", "read", "admin"], Some(3600)).await;
    let prefix = &created.api_key.prefix;
    let secret = created
        .key
        .strip_prefix(&format!("kiln_{prefix}_"))
        .expect("kiln_{prefix}_{secret}");
    assert_eq!(secret.len(), 43, "256 bits as unpadded base64url");

    let row = key_row(&app.db, prefix).await;
    for column in &row {
        assert!(
            !column.contains(secret),
            "a column holds the secret: {row:?}"
        );
        assert!(
            !column.contains(&created.key),
            "a column holds the key: {row:?}"
        );
    }
    assert_eq!(
        row[1],
        sha256_hex(secret.as_bytes()),
        "secret_hash is SHA-256 of the secret"
    );
    assert_eq!(row[3], "upload,read,admin");

    // Listings show neither the secret nor its hash.
    let path = format!("/v1/admin/keys?owner={}", app.owner);
    let listed = call(&app, Method::GET, &path, &admin_jwt(&app), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains(prefix.as_str()));
    assert!(
        !listed.contains(secret) && !listed.contains(&row[1]),
        "{listed}"
    );
    app.finish().await;
}

#[tokio::test]
async fn last_used_at_is_recorded_at_most_once_a_minute() {
    let app = spawn_app().await;
    let created = create_key(&app, &["read"], None).await;
    assert_eq!(created.api_key.last_used_at, None);
    let resp = call(&app, Method::GET, "/v1/uploads", &created.key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let used = keys_of_owner(&app).await;
    let first = used[0].last_used_at.expect("last_used_at is set after use");
    assert!(first >= created.api_key.created_at);

    // A second use within the minute writes nothing.
    let resp = call(&app, Method::GET, "/v1/uploads", &created.key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(keys_of_owner(&app).await[0].last_used_at, Some(first));
    app.finish().await;
}

/// Runs `kiln keys ARGS` against the app's database; returns (success, stdout, stderr).
async fn kiln_keys(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = kiln_command("keys", &app.settings)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run kiln keys");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn kiln_keys_create_list_revoke() {
    let app = spawn_app().await;
    let owner = app.owner.as_str();
    let (ok, key, err) = kiln_keys(
        &app,
        &[
            "create",
            "--owner",
            owner,
            "--scope",
            "read,upload",
            "--expires-in",
            "30d",
            "--name",
            "cli key",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("kiln_"), "{key}");
    assert!(err.contains("shown only now"), "{err}");
    let resp = call(&app, Method::GET, "/v1/uploads", &key, None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let (ok, listed, err) = kiln_keys(&app, &["list", "--owner", owner, "--json"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "{listed}");
    let view: KeyView = serde_json::from_str(lines[0]).unwrap();
    assert!(key.starts_with(&format!("kiln_{}_", view.prefix)));
    assert_eq!(view.name.as_deref(), Some("cli key"));
    assert_eq!(view.scopes.to_string(), "upload,read");
    let days = (view.expires_at.unwrap() - view.created_at).num_days();
    assert_eq!(days, 30);
    assert!(!listed.contains(&key[18..]), "the list shows the secret");
    let (ok, table, _) = kiln_keys(&app, &["list"]).await;
    assert!(
        ok && table.contains(&view.prefix) && table.contains("cli key"),
        "{table}"
    );

    let (ok, _, err) = kiln_keys(&app, &["revoke", &view.prefix]).await;
    assert!(ok, "{err}");
    let resp = call(&app, Method::GET, "/v1/uploads", &key, None).await;
    refused(resp, StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).await;

    // Refusals: an unknown prefix, an unknown scope, a bad lifetime.
    let (ok, _, err) = kiln_keys(&app, &["revoke", "000000000000"]).await;
    assert!(!ok && err.contains("no API key"), "{err}");
    let (ok, _, err) = kiln_keys(&app, &["create", "--owner", owner, "--scope", "write"]).await;
    assert!(!ok && err.contains("unknown scope"), "{err}");
    let (ok, _, _) = kiln_keys(
        &app,
        &[
            "create",
            "--owner",
            owner,
            "--scope",
            "read",
            "--expires-in",
            "soon",
        ],
    )
    .await;
    assert!(!ok);
    app.finish().await;
}
