//! Bounded requests (issue 12, parts 5 and 6), against the real API, Postgres, Redis and
//! Garage: the body limit (413 with Kiln's error body), the replay id cap, the filename rule
//! (400 `invalid_filename`, nothing stored), `x-request-id` validation, the admin listener for
//! `/metrics`, `/readyz` and `/healthz`, the cached single-flight readiness probe, the admin
//! scope on replay, and owners' lists kept apart; [`lifecycle`]: the `tmp/` lifecycle rule
//! merged into the bucket's configuration instead of replacing it.

mod lifecycle;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_shared::Settings;
use kiln_shared::domain::{ErrorCode, OwnerId, UploadId};
use kiln_shared::wire::{ErrorBody, ReplayRequest, UploadPage};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{TestApp, TestOptions, kiln_command, spawn_app_with, token_for};

/// An API without a worker (these tests never process an upload).
async fn api_only() -> TestApp {
    spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await
}

/// The error body of `resp`, asserting its status.
async fn error_of(resp: reqwest::Response, status: StatusCode) -> ErrorBody {
    assert_eq!(resp.status(), status);
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an error body ({e}): {text}"))
}

/// A second API on `app`'s database, queue and bucket, with `tune` applied to its settings;
/// serves until the returned sender is dropped or fires.
async fn another_api(
    app: &TestApp,
    tune: impl FnOnce(&mut Settings),
) -> (
    kiln_api::Application,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let mut settings = app.settings.clone();
    tune(&mut settings);
    let api = kiln_api::Application::build(settings).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    (api, stop, stopped)
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_an_error_body() {
    let app = api_only().await;
    let max = app.settings.api.max_body_bytes;
    let url = format!("{}/v1/uploads", app.address);

    // Declared too large (`Content-Length`): refused before the body is read.
    let padded = json!({
        "filename": "a.jpg", "content_type": "image/jpeg", "byte_size": 10,
        "pad": "x".repeat(max),
    });
    let resp = app.create_upload_as(&app.token, &padded).await;
    let body = error_of(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body.error.code, ErrorCode::InvalidRequest);
    assert!(body.error.message.contains(&max.to_string()), "{body:?}");

    // Every route has the limit, also one that reads no body.
    let resp = app
        .client
        .post(format!("{url}/{}/complete", UploadId::new()))
        .bearer_auth(&app.token)
        .body(vec![b' '; max + 1])
        .send()
        .await
        .unwrap();
    error_of(resp, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Chunked, with no `Content-Length`: refused once the stream passes the limit.
    let (status, text) = chunked_post(&app, "/v1/uploads", max + 1).await;
    assert_eq!(status, 413, "{text}");
    let body: ErrorBody = serde_json::from_str(&text).expect("an error body");
    assert_eq!(body.error.code, ErrorCode::InvalidRequest);

    // Just under the limit, the same body is read (and refused for what it says).
    let under = json!({"filename": "a\u{0}.jpg", "content_type": "image/jpeg", "byte_size": 10,
                       "pad": "x".repeat(max - 200)});
    let resp = app.create_upload_as(&app.token, &under).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.upload_rows().await, 0);
    app.finish().await;
}

/// Sends `POST {path}` with a JSON body of `len` bytes in 8 KiB chunks
/// (`Transfer-Encoding: chunked`) over a plain TCP connection; returns the status and body.
async fn chunked_post(app: &TestApp, path: &str, len: usize) -> (u16, String) {
    let addr = app.address.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        app.token
    );
    let mut request = head.into_bytes();
    let mut body = br#"{"pad": ""#.to_vec();
    body.resize(len, b'x');
    for chunk in body.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it has read everything: ignore a broken pipe.
    let _ = conn.write_all(&request).await;
    let mut reader = tokio::io::BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {status_line:?}"));
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest).await;
    let rest = String::from_utf8_lossy(&rest);
    let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

#[tokio::test]
async fn replay_ids_over_the_cap_are_400_naming_it_and_non_admins_get_403() {
    let app = api_only().await;
    let cap = app.settings.api.max_replay_ids;
    let admin = token_for(&app.settings, &app.owner, true);
    let replay = |token: &str, ids: usize| {
        let mut request = ReplayRequest::ids((0..ids).map(|_| UploadId::new()));
        request.dry_run = true;
        app.client
            .post(format!("{}/v1/admin/jobs/replay", app.address))
            .bearer_auth(token.to_owned())
            .json(&request)
            .send()
    };
    let body = error_of(
        replay(&admin, cap + 1).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body.error.code, ErrorCode::InvalidRequest);
    assert!(body.error.message.contains(&format!("1-{cap}")), "{body:?}");
    // At the cap it is accepted (unknown ids are skipped).
    assert_eq!(replay(&admin, cap).await.unwrap().status(), StatusCode::OK);
    // Without the admin claim: 403, whatever the body.
    for ids in [1, cap + 1] {
        let body = error_of(
            replay(&app.token, ids).await.unwrap(),
            StatusCode::FORBIDDEN,
        )
        .await;
        assert_eq!(body.error.code, ErrorCode::Forbidden);
    }
    app.finish().await;
}

#[tokio::test]
async fn control_and_bidi_filenames_are_invalid_filename_and_store_nothing() {
    let app = api_only().await;
    let long = "x".repeat(256);
    for name in [
        "a\u{0}b.jpg",
        "esc\u{1b}[31m.jpg",
        "line\nbreak.jpg",
        "del\u{7f}.jpg",
        "c1\u{85}.jpg",
        "invoice\u{202E}gpj.exe",
        "\u{202A}lre.jpg",
        "\u{2066}isolate\u{2069}.jpg",
        "mark\u{200F}.jpg",
        "alm\u{061C}.jpg",
        "",
        long.as_str(),
    ] {
        let body = json!({"filename": name, "content_type": "image/jpeg", "byte_size": 10});
        let resp = app.create_upload_as(&app.token, &body).await;
        let body = error_of(resp, StatusCode::BAD_REQUEST).await;
        assert_eq!(body.error.code, ErrorCode::InvalidFilename, "{name:?}");
        for c in name.chars().filter(|c| c.is_control() || !c.is_ascii()) {
            assert!(!body.error.message.contains(c), "{name:?} echoed: {body:?}");
        }
    }
    assert_eq!(app.upload_rows().await, 0);
    // Names in other scripts, and joiners, are fine.
    for name in ["été.jpg", "ملف.png", "写真 (1).jpg", "👩\u{200D}💻.jpg"] {
        app.authorize(name, "image/jpeg", 10, "put").await;
    }
    assert_eq!(app.upload_rows().await, 4);
    app.finish().await;
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_short_and_safe() {
    let app = api_only().await;
    let url = format!("{}/healthz", app.address);
    let id_of =
        |resp: &reqwest::Response| resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    for good in ["req-kiln-test-1", "0190f3c2.a_B:c-d", &"x".repeat(64)] {
        let resp = app
            .client
            .get(&url)
            .header("x-request-id", good)
            .send()
            .await
            .unwrap();
        assert_eq!(id_of(&resp), good);
    }
    let bad: [&[u8]; 5] = [
        &[b'x'; 65],
        b"a b",
        b"a\"b",
        b"<script>",
        "caf\u{e9}\u{202E}".as_bytes(),
    ];
    let mut fresh = Vec::new();
    for value in bad {
        let resp = app
            .client
            .get(&url)
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let id = id_of(&resp);
        assert_ne!(id.as_bytes(), value);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        fresh.push(id);
    }
    // Two ids are ambiguous: both are replaced.
    let resp = app
        .client
        .get(&url)
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get_all("x-request-id").iter().count(), 1);
    fresh.push(id_of(&resp));
    assert!(uuid::Uuid::parse_str(&fresh[fresh.len() - 1]).is_ok());
    fresh.sort();
    fresh.dedup();
    assert_eq!(fresh.len(), bad.len() + 1, "each replacement is fresh");
    app.finish().await;
}

#[tokio::test]
async fn operations_routes_move_to_the_admin_listener() {
    let app = api_only().await;
    let (api, stop, stopped) = another_api(&app, |s| {
        s.api.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let public = format!("http://{}", api.local_addr());
    let admin = format!("http://{}", api.admin_addr().expect("admin listener bound"));
    let server = tokio::spawn(api.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let get = |url: String| app.client.get(url).send();
    for path in ["/metrics", "/readyz", "/healthz"] {
        let resp = get(format!("{admin}{path}")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "admin {path}");
        let body = error_of(
            get(format!("{public}{path}")).await.unwrap(),
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(body.error.code, ErrorCode::RouteNotFound, "public {path}");
    }
    // The admin listener serves nothing else; the public document lists only public routes.
    for path in ["/v1/uploads", "/openapi.json"] {
        let resp = get(format!("{admin}{path}")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "admin {path}");
    }
    let doc: serde_json::Value = get(format!("{public}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/uploads"));
    for path in ["/metrics", "/readyz", "/healthz"] {
        assert!(
            !paths.contains_key(path),
            "{path} is documented on the public listener"
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    app.finish().await;
}

#[tokio::test]
async fn kiln_api_prints_its_admin_address() {
    let app = api_only().await;
    let mut settings = app.settings.clone();
    settings.api.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut api = kiln_command("api", &settings)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kiln api");
    let stdout = api.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let (mut public, mut admin) = (None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while public.is_none() || admin.is_none() {
            let line = lines.next_line().await.unwrap().expect("kiln api exited");
            if let Some(a) = line.strip_prefix(kiln_api::startup::LISTEN_ADDR_LINE) {
                public = Some(a.to_owned());
            } else if let Some(a) = line.strip_prefix(kiln_api::startup::ADMIN_ADDR_LINE) {
                admin = Some(a.to_owned());
            }
        }
    })
    .await
    .expect("kiln api printed both addresses within 30 s");
    let (public, admin) = (public.unwrap(), admin.unwrap());
    assert_ne!(public, admin);
    let ready = app
        .client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let hidden = app
        .client
        .get(format!("http://{public}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    api.kill().await.unwrap();
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readiness_requests_share_one_probe_a_second() {
    let app = api_only().await;
    let (api, stop, stopped) = another_api(&app, |_| {}).await;
    let url = format!("http://{}/readyz", api.local_addr());
    let readiness = api.state().readiness.clone();
    let server = tokio::spawn(api.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    assert_eq!(readiness.probes(), 0);
    let started = Instant::now();
    let requests = (0..64).map(|_| {
        let (client, url) = (app.client.clone(), url.clone());
        tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let elapsed = started.elapsed();
    let probes = readiness.probes();
    // One probe per started second at most (each answer is reused for 1 s), however many
    // requests came in.
    assert!(
        probes >= 1 && probes as f64 <= 1.0 + elapsed.as_secs_f64(),
        "{probes} probes for 64 requests in {elapsed:?}"
    );
    // Past the TTL, the next request probes again, once.
    tokio::time::sleep(kiln_api::routes::health::READINESS_TTL + Duration::from_millis(100)).await;
    let before = readiness.probes();
    for _ in 0..3 {
        let resp = app.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(readiness.probes(), before + 1);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    app.finish().await;
}

#[tokio::test]
async fn owners_lists_never_show_each_others_uploads() {
    let app = api_only().await;
    let bob = OwnerId::parse(&format!("bob-{}", UploadId::new())).unwrap();
    let bob_token = token_for(&app.settings, &bob, false);
    let mut alice_ids = Vec::new();
    for i in 0..3 {
        alice_ids.push(
            app.authorize(&format!("a{i}.jpg"), "image/jpeg", 10, "put")
                .await
                .id,
        );
    }
    let mut bob_ids = Vec::new();
    for i in 0..2 {
        let body =
            json!({"filename": format!("b{i}.jpg"), "content_type": "image/jpeg", "byte_size": 10});
        let resp = app.create_upload_as(&bob_token, &body).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let auth: kiln_shared::wire::UploadAuthorization = resp.json().await.unwrap();
        bob_ids.push(auth.id);
    }
    let list = |token: &str, query: String| {
        let req = app
            .client
            .get(format!("{}/v1/uploads?{query}", app.address))
            .bearer_auth(token.to_owned());
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.json::<UploadPage>().await.unwrap()
        }
    };
    // Page by page (limit 1), each owner sees exactly their own uploads.
    for (token, mine) in [(&app.token, &alice_ids), (&bob_token, &bob_ids)] {
        let mut seen = Vec::new();
        let mut cursor = None::<String>;
        loop {
            let query = match &cursor {
                Some(c) => format!("limit=1&cursor={c}"),
                None => "limit=1".to_owned(),
            };
            let page = list(token, query).await;
            seen.extend(page.items.iter().map(|u| u.id));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let mut want = mine.clone();
        want.reverse();
        assert_eq!(&seen, &want);
    }
    // Another owner's cursor only positions the page; it never reveals their uploads.
    let alice_cursor = list(&app.token, "limit=1".to_owned())
        .await
        .next_cursor
        .expect("alice has a second page");
    let page = list(&bob_token, format!("limit=100&cursor={alice_cursor}")).await;
    assert!(
        page.items.iter().all(|u| bob_ids.contains(&u.id)),
        "{page:?}"
    );
    app.finish().await;
}
