//! Standalone `kiln serve` (SQLite, apalis-sqlite, the embedded S3 endpoint) as a real child
//! process, with nothing else running: the sample photos through `kiln upload --data-dir`, the
//! embedded S3 endpoint's refusals, idempotent complete, `kill -9` in the middle of a batch,
//! and replay through `kiln jobs replay --data-dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_client::KilnClient;
use kiln_shared::Settings;
use kiln_shared::config::standalone::DataDir;
use kiln_shared::domain::{ErrorCode, OwnerId, UploadId, UploadMethod, UploadState};
use kiln_shared::storage::Storage;
use kiln_shared::wire::{UploadAuthorization, UploadView};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::helpers::{GOOD_DIRS, distinct_jpeg, kiln_bin, photos, send_to_s3};

/// A running `kiln serve` on its own data directory.
struct Serve {
    dir: PathBuf,
    child: Child,
    client: KilnClient,
    http: reqwest::Client,
}

/// The environment every `kiln` child of these tests gets: nothing but `PATH`, quiet logs,
/// free ports, and short heartbeats and sweeps so recovery after `kill -9` takes seconds.
fn env(cmd: &mut Command, extra: &[(&str, &str)]) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KILN__TELEMETRY__FILTER", "error")
        .env("KILN__API__LISTEN", "127.0.0.1:0")
        .env("KILN__WORKER__METRICS_LISTEN", "127.0.0.1:0")
        .env("KILN__REDIS__HEARTBEAT_SECS", "1")
        .env("KILN__REDIS__MISSED_HEARTBEATS", "3")
        .env("KILN__WORKER__SHUTDOWN_TIMEOUT_SECS", "1")
        .env("KILN__SWEEPER__INTERVAL_SECS", "1")
        .env("KILN__SWEEPER__UPLOADED_STALE_SECS", "2");
    for (k, v) in extra {
        cmd.env(k, v);
    }
}

impl Serve {
    /// A fresh data directory.
    fn new_dir() -> PathBuf {
        std::env::temp_dir().join(format!("kiln-standalone-{}", ulid::Ulid::generate()))
    }

    /// Starts `kiln serve --data-dir dir` with `extra` env, and waits for its three listeners.
    async fn start(dir: &Path, s3_listen: &str, extra: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(kiln_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .arg("--s3-listen")
            .arg(s3_listen)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        env(&mut cmd, extra);
        let mut child = cmd.spawn().expect("spawn kiln serve");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut api = None;
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(a) = line.strip_prefix(kiln_api::startup::LISTEN_ADDR_LINE) {
                    api = Some(a.trim().parse::<SocketAddr>().unwrap());
                }
                if line.starts_with(kiln_worker::startup::METRICS_ADDR_LINE) {
                    return;
                }
            }
            panic!("kiln serve exited before it was ready");
        })
        .await
        .expect("kiln serve ready within 60 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let api = format!("http://{}", api.expect("KILN_API_ADDR line"));
        let secrets = DataDir::new(dir).secrets().unwrap();
        let auth = kiln_shared::config::AuthSettings {
            jwt_secret: secrets.jwt_secret.clone(),
            ..Default::default()
        };
        let token = kiln_shared::auth::Signer::from_settings(&auth)
            .unwrap()
            .mint(
                &OwnerId::parse("standalone-test").unwrap(),
                false,
                Duration::from_secs(3600),
            )
            .unwrap();
        Self {
            dir: dir.to_owned(),
            child,
            client: KilnClient::new(&api, &token).unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// The embedded bucket, as the worker sees it (for listing what is stored).
    fn storage(&self) -> Storage {
        let data = DataDir::new(&self.dir);
        let endpoints = data.endpoints().unwrap();
        let settings = data.apply(Settings::default(), &data.secrets().unwrap(), &endpoints.s3);
        Storage::new(&settings.storage)
    }

    /// Authorizes an upload of `len` bytes of a JPEG named `name`.
    async fn authorize(&self, method: UploadMethod, len: usize) -> UploadAuthorization {
        let body = kiln_client::describe(Path::new("photo.jpg"), len as u64, method);
        self.client.authorize(&body).await.expect("authorize")
    }

    /// Authorizes, sends and completes `bytes` as a JPEG, without waiting for processing.
    async fn submit(&self, bytes: &[u8]) -> UploadId {
        let auth = self.authorize(UploadMethod::Put, bytes.len()).await;
        let status = send_to_s3(&self.http, &auth, bytes.to_vec(), "image/jpeg", |_| {}).await;
        assert!(status.is_success(), "S3 refused a good PUT: {status}");
        self.client.complete(auth.id).await.expect("complete");
        auth.id
    }

    async fn wait(&self, id: UploadId) -> UploadView {
        self.client
            .wait_until_final(id, Duration::from_secs(120), Duration::from_millis(100))
            .await
            .expect("final within 120 s")
    }

    /// `kiln {args} --data-dir {dir}` beside the running instance; its stdout, or its stderr
    /// as the error when it exits non-zero.
    async fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(kiln_bin());
        cmd.args(args).arg("--data-dir").arg(&self.dir);
        env(&mut cmd, &[]);
        let out = cmd.output().await.expect("run kiln");
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`Serve::try_cli`], which must succeed.
    async fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .await
            .unwrap_or_else(|e| panic!("kiln {args:?} failed: {e}"))
    }

    /// Stops the process, keeping the data directory.
    async fn halt(mut self) -> PathBuf {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        self.dir.clone()
    }

    async fn stop(self) {
        let dir = self.halt().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_processes_the_sample_photos_like_the_fleet() {
    let dir = Serve::new_dir();
    let serve = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let mut files: Vec<PathBuf> = GOOD_DIRS.iter().flat_map(|d| photos(d)).collect();
    let good = files.len();
    files.extend(photos("bad"));
    let mut args = vec!["upload".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = serve.cli(&args).await;
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), files.len(), "{out}");
    for r in &results {
        let file = r["file"].as_str().unwrap();
        if file.contains("/bad/") {
            assert_eq!(r["state"], "failed", "{r}");
            let code = ErrorCode::parse(r["error"]["code"].as_str().unwrap()).unwrap();
            assert!(
                matches!(code, ErrorCode::CorruptImage | ErrorCode::UnsupportedFormat),
                "{file}: {code}"
            );
            assert_eq!(r["attempts"], 1, "{r}");
        } else {
            assert_eq!(r["state"], "ready", "{r}");
            assert!(!r["derivatives"].as_array().unwrap().is_empty(), "{r}");
        }
    }
    assert_eq!(
        results.iter().filter(|r| r["state"] == "ready").count(),
        good
    );
    // A derivative URL is a presigned GET on the embedded endpoint.
    let ready = results.iter().find(|r| r["state"] == "ready").unwrap();
    let url = ready["derivatives"][0]["url"].as_str().unwrap();
    let got = serve.http.get(url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert!(!got.bytes().await.unwrap().is_empty());
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_s3_refuses_what_the_presigned_url_or_policy_forbids() {
    let dir = Serve::new_dir();
    let serve = Serve::start(
        &dir,
        "127.0.0.1:0",
        &[("KILN__API__UPLOAD_EXPIRY_SECS", "2")],
    )
    .await;
    let body = vec![7u8; 1000];
    let put = serve.authorize(UploadMethod::Put, body.len()).await;
    for len in [1001, 999] {
        let status = send_to_s3(&serve.http, &put, vec![7u8; len], "image/jpeg", |_| {}).await;
        assert!(status.is_client_error(), "PUT of {len} bytes: {status}");
    }
    let post = serve.authorize(UploadMethod::Post, body.len()).await;
    let status = send_to_s3(&serve.http, &post, vec![7u8; 1001], "image/jpeg", |_| {}).await;
    assert!(
        status.is_client_error(),
        "POST over the declared size: {status}"
    );
    let status = send_to_s3(&serve.http, &post, body.clone(), "image/jpeg", |f| {
        f.insert("key".into(), "tmp/someone-else".into());
    })
    .await;
    assert!(status.is_client_error(), "POST to another key: {status}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = send_to_s3(&serve.http, &put, body.clone(), "image/jpeg", |_| {}).await;
    assert!(status.is_client_error(), "PUT after expiry: {status}");
    let stored = serve.storage().list("").await.unwrap();
    assert!(stored.is_empty(), "refused requests stored {stored:?}");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_twice_enqueues_one_job() {
    let dir = Serve::new_dir();
    let serve = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let photo = std::fs::read(&photos("cameras")[0]).unwrap();
    let id = serve.submit(&photo).await;
    serve.client.complete(id).await.expect("second complete");
    assert_eq!(serve.wait(id).await.state, UploadState::Ready);
    let queue =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("kiln-queue.db").display()))
            .await
            .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM Jobs")
        .fetch_one(&queue)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "two completes queued {jobs} jobs");
    queue.close().await;
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_then_restart_loses_nothing() {
    let dir = Serve::new_dir();
    let s3 = free_port();
    let serve = Serve::start(&dir, &s3, &[]).await;
    let photo = std::fs::read(&photos("orientation")[0]).unwrap();
    let mut ids = Vec::new();
    // Distinct bytes per upload, so dedup skips none of them and each has its own files.
    for i in 0..100 {
        ids.push(
            serve
                .submit(&distinct_jpeg(&photo, &format!("copy-{i:03}")))
                .await,
        );
    }
    // Kill it while the batch is still being processed.
    loop {
        let done = futures::future::join_all(ids.iter().map(|&id| serve.client.get(id))).await;
        let ready = done
            .iter()
            .filter(|u| u.as_ref().is_ok_and(|u| u.state == UploadState::Ready))
            .count();
        if ready >= 5 {
            assert!(ready < 100, "the batch finished before the kill");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut serve = serve;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = serve.child.wait().await;
    drop(serve);
    let serve = Serve::start(&dir, &s3, &[]).await;
    let renditions = Settings::default().worker.renditions.len();
    for &id in &ids {
        let u = serve.wait(id).await;
        assert_eq!(u.state, UploadState::Ready, "{u:?}");
        assert_eq!(u.derivatives.len(), renditions, "{u:?}");
    }
    let temps = serve.storage().list("tmp/").await.unwrap();
    assert!(temps.is_empty(), "left under tmp/: {temps:?}");
    let finals = serve.storage().list("").await.unwrap();
    assert_eq!(
        finals.len(),
        ids.len() * (1 + renditions),
        "one original and one set of derivatives per upload"
    );
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_is_replayed_by_kiln_jobs_replay() {
    let dir = Serve::new_dir();
    let serve = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let bad = std::fs::read(crate::helpers::fixtures().join("photos/bad/truncated.jpg")).unwrap();
    let id = serve.submit(&bad).await;
    assert_eq!(serve.wait(id).await.state, UploadState::Failed);
    let failed = serve.cli(&["jobs", "failed", "--json"]).await;
    assert!(failed.contains(&id.to_string()), "{failed}");
    serve.cli(&["jobs", "replay", &id.to_string()]).await;
    // The replay runs the job again: it fails the same way, once more, and counts the replay.
    let job: Value = loop {
        // Not a dead job (an error) while the replayed job runs.
        let shown = serve.try_cli(&["jobs", "show", &id.to_string()]).await;
        let job: Value = shown.map_or(Value::Null, |s| serde_json::from_str(&s).unwrap());
        if job["replays"] == 1 {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["error_code"], "corrupt_image", "{job}");
    let u = serve.wait(id).await;
    assert_eq!(u.state, UploadState::Failed);
    assert_eq!(u.attempts, 1);
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_copies_a_standalone_instance_into_a_fleet_once() {
    let dir = Serve::new_dir();
    let serve = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let good = std::fs::read(&photos("cameras")[0]).unwrap();
    let bad = std::fs::read(crate::helpers::fixtures().join("photos/bad/truncated.jpg")).unwrap();
    let ids = [serve.submit(&good).await, serve.submit(&bad).await];
    let mut before = Vec::new();
    for id in ids {
        before.push(serve.wait(id).await);
    }
    let dir = serve.halt().await;

    let fleet = crate::helpers::spawn_app_with(crate::helpers::TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let transfer = || async {
        let mut cmd = Command::new(kiln_bin());
        cmd.arg("transfer").arg("--from").arg(&dir).env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(fleet.settings.to_env())
            .env("KILN__TELEMETRY__FILTER", "error");
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = transfer().await;
    assert_eq!(first["uploads_copied"], 2, "{first}");
    let renditions = before[0].derivatives.len() as u64;
    assert_eq!(first["derivatives_copied"], renditions, "{first}");
    // Two originals at their final keys and the good one's derivatives.
    assert_eq!(first["objects_copied"], 2 + renditions, "{first}");

    let owner = OwnerId::parse("standalone-test").unwrap();
    let client = KilnClient::new(
        &fleet.address,
        &crate::helpers::token_for(&fleet.settings, &owner, false),
    )
    .unwrap();
    let mut keys = Vec::new();
    for old in &before {
        let new = client
            .get(old.id)
            .await
            .expect("the fleet serves the upload");
        let same = |u: &UploadView| {
            serde_json::json!([u.state, u.attempts, u.error, u.metadata, u.created_at])
        };
        assert_eq!(same(&new), same(old));
        assert_eq!(new.derivatives.len(), old.derivatives.len());
        for d in &new.derivatives {
            let got = fleet.client.get(&d.url).send().await.unwrap();
            assert_eq!(got.status(), StatusCode::OK, "{}", d.url);
            assert_eq!(got.bytes().await.unwrap().len() as u64, d.bytes);
        }
        let row = kiln_shared::db::uploads::get(&fleet.db, old.id)
            .await
            .unwrap()
            .unwrap();
        keys.extend(row.final_key);
        let rows = kiln_shared::db::uploads::derivatives(&fleet.db, old.id)
            .await
            .unwrap();
        keys.extend(rows.into_iter().map(|d| d.object_key));
    }

    let second = transfer().await;
    for field in ["uploads_copied", "derivatives_copied", "objects_copied"] {
        assert_eq!(second[field], 0, "a second run copied: {second}");
    }
    // The standalone keys have no test prefix: remove them from the shared bucket.
    for key in keys {
        fleet.storage.delete(&key).await.unwrap();
    }
    fleet.finish().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A free local port, as `127.0.0.1:PORT` (bound and released; the restart test needs the same
/// S3 address twice).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
