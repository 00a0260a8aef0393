//! Chaos: 300 uploads through three worker processes while workers are SIGKILLed and
//! restarted, Redis loses everything once (FLUSHALL on a private Redis server), and S3 answers
//! 503 or resets connections for a fraction of the workers' requests. Afterwards nothing is
//! lost, nothing is duplicated, no temp object or job is left, and Postgres and S3 agree.
//!
//! Ignored by plain `cargo test` (it takes a few minutes); `scripts/chaos` runs it, and
//! `scripts/test` runs that.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::faults::FaultProxy;
use crate::helpers::{TestOptions, photos, spawn_app_with, spawn_worker_process};

const UPLOADS: usize = 300;
const WORKERS: usize = 3;

struct PrivateRedis {
    child: std::process::Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes long; run by scripts/chaos"]
async fn chaos_loses_nothing_and_duplicates_nothing() {
    let redis = PrivateRedis::start();
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        redis_url: Some(redis.url.clone()),
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(&app.settings.storage.endpoint).await;
    proxy.faults.p503_permille.store(100, Ordering::Relaxed);
    proxy.faults.reset_permille.store(50, Ordering::Relaxed);
    proxy.faults.max_life_ms.store(3_000, Ordering::Relaxed);

    let mut ws = app.settings.clone();
    ws.storage.endpoint = proxy.endpoint.clone();
    ws.redis.heartbeat_secs = 1;
    ws.redis.missed_heartbeats = 3;
    ws.worker.shutdown_timeout_secs = 2;
    ws.worker.max_attempts = 10;
    ws.worker.retry_base_delay_ms = 200;
    ws.worker.retry_max_delay_ms = 2_000;
    ws.sweeper.enabled = true;
    ws.sweeper.interval_secs = 2;
    ws.sweeper.uploaded_stale_secs = 5;
    ws.sweeper.processing_timeout_secs = 60;
    ws.validate().unwrap();
    let mut workers: Vec<_> = (0..WORKERS).map(|_| spawn_worker_process(&ws)).collect();

    let good: Vec<PathBuf> = ["cameras", "gps", "orientation", "edge"]
        .iter()
        .flat_map(|d| photos(d))
        .collect();
    let bad = photos("bad");
    let files: Vec<(PathBuf, bool)> = (0..UPLOADS)
        .map(|i| {
            if i % 10 == 9 {
                (bad[i / 10 % bad.len()].clone(), false)
            } else {
                (good[i % good.len()].clone(), true)
            }
        })
        .collect();
    let expect_good: HashMap<PathBuf, bool> = files.iter().cloned().collect();

    // Submit in the background while the chaos runs.
    let started = Instant::now();
    let app_ref = &app;
    let submitting = futures::stream::iter(files.iter().map(|(f, _)| f.clone()))
        .map(|f| async move { (app_ref.submit_file(&f, "put").await, f) })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    let (mut kills, mut flushes) = (0, 0);
    let chaos = async {
        let mut tick = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tick += 1;
            let i = fastrand::usize(0..WORKERS);
            let _ = workers[i].kill().await;
            kills += 1;
            workers[i] = spawn_worker_process(&ws);
            if tick == 3 {
                let client = redis::Client::open(redis.url.as_str()).unwrap();
                let mut c = client.get_multiplexed_async_connection().await.unwrap();
                let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
                flushes += 1;
            }
            if tick >= 10 {
                break;
            }
        }
    };
    let (submitted, ()) = tokio::join!(submitting, chaos);
    let ids: Vec<(String, PathBuf)> = submitted;
    // Let the fleet settle with faults still on, then check.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM uploads WHERE state NOT IN ('ready', 'failed')",
        )
        .fetch_one(app.pool())
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} uploads never finished");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();
    proxy.faults.p503_permille.store(0, Ordering::Relaxed);
    proxy.faults.reset_permille.store(0, Ordering::Relaxed);
    proxy.faults.max_life_ms.store(0, Ordering::Relaxed);

    // Every good upload is ready with exactly its derivatives; every bad one failed with a code.
    let mut lost = 0;
    let mut retries = 0i64;
    let mut reexecuted = 0;
    for (id, file) in &ids {
        let u = kiln_shared::db::uploads::get(&app.db, id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let want_ready = expect_good[file];
        let ok = if want_ready {
            u.state == kiln_shared::domain::UploadState::Ready
        } else {
            u.state == kiln_shared::domain::UploadState::Failed
                && matches!(
                    u.error_code.map(|c| c.as_str()),
                    Some("corrupt_image" | "unsupported_format")
                )
        };
        if !ok {
            lost += 1;
            eprintln!(
                "LOST {id} {}: {:?} {:?} {:?}",
                file.display(),
                u.state,
                u.error_code,
                u.error_message
            );
        }
        retries += i64::from(u.attempts.max(1) - 1);
        if u.attempts > 1 {
            reexecuted += 1;
        }
    }
    let derivative_rows: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT upload_id, count(*) FROM derivatives GROUP BY upload_id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    let duplicated = derivative_rows.iter().filter(|(_, n)| *n != 2).count();

    // Postgres and S3 agree, both ways.
    let prefix = app.storage.layout().prefix().to_owned();
    let objects: BTreeSet<String> = app
        .storage
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let keys: Vec<(Option<String>,)> = sqlx::query_as("SELECT final_key FROM uploads")
        .fetch_all(app.pool())
        .await
        .unwrap();
    expected.extend(keys.into_iter().filter_map(|(k,)| k));
    let dkeys: Vec<(String,)> = sqlx::query_as("SELECT object_key FROM derivatives")
        .fetch_all(app.pool())
        .await
        .unwrap();
    expected.extend(dkeys.into_iter().map(|(k,)| k));
    let temps: Vec<&String> = objects
        .iter()
        .filter(|k| k.starts_with(&app.storage.layout().temp_root()))
        .collect();
    let missing: Vec<&String> = expected.difference(&objects).collect();
    let stray: Vec<&String> = objects
        .difference(&expected)
        .filter(|k| !k.starts_with(&app.storage.layout().temp_root()))
        .collect();

    let injected = proxy.faults.injected_503.load(Ordering::Relaxed)
        + proxy.faults.injected_resets.load(Ordering::Relaxed);
    println!(
        "\n| uploads | kills | redis flushes | faults injected | retries | re-executed uploads | duplicated rows/derivatives | temps left | lost | time |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {kills} | {flushes} | {injected} | {retries} | {reexecuted} | {duplicated} | {} | {lost} | {:.0} s |\n",
        ids.len(),
        temps.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(ids.len(), UPLOADS);
    assert_eq!(lost, 0, "lost uploads");
    assert_eq!(duplicated, 0, "duplicated derivatives");
    assert!(temps.is_empty(), "temp objects left: {temps:?}");
    assert!(missing.is_empty(), "rows without objects: {missing:?}");
    assert!(stray.is_empty(), "objects without rows: {stray:?}");
    assert!(kills >= 5 && flushes == 1 && injected > 0);

    for w in &mut workers {
        let _ = w.kill().await;
    }
    app.finish().await;
}
