//! Worker processes under signals and failures: graceful SIGTERM, SIGKILL recovery through
//! apalis' orphan re-enqueue, and the retry policy's attempts and growing gaps.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kiln_shared::Settings;
use kiln_shared::domain::{ErrorCode, UploadState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::faults::FaultProxy;
use crate::helpers::{TestApp, TestOptions, photos, spawn_app_with, spawn_worker_process};

async fn state_of(app: &TestApp, id: &str) -> (String, i32) {
    let u = kiln_shared::db::uploads::get(&app.db, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    (u.state.as_str().to_owned(), u.attempts)
}

async fn wait_for_state(app: &TestApp, id: &str, state: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while state_of(app, id).await.0 != state {
        assert!(Instant::now() < deadline, "{id} never reached {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast_orphans(s: &Settings) -> Settings {
    let mut s = s.clone();
    s.redis.heartbeat_secs = 1;
    s.redis.missed_heartbeats = 3;
    s.worker.shutdown_timeout_secs = 2;
    s.validate().unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_sigtermed_mid_job_finishes_it_and_exits_0() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(&app.settings.storage.endpoint).await;
    proxy.faults.delay_ms.store(1500, Ordering::Relaxed);
    let mut settings = app.settings.clone();
    settings.storage.endpoint = proxy.endpoint.clone();
    settings.worker.shutdown_timeout_secs = 8; // must stay under the 10 s orphan timeout
    let mut worker = spawn_worker_process(&settings);
    let id = app.submit_file(&photos("cameras")[0], "put").await;
    wait_for_state(&app, &id, "processing", Duration::from_secs(20)).await;

    kill(Pid::from_raw(worker.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert!(status.success(), "worker exited with {status}");
    assert_eq!(state_of(&app, &id).await, ("ready".to_owned(), 1));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_sigkilled_mid_job_has_its_job_finished_by_another() {
    let mut app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(&app.settings.storage.endpoint).await;
    proxy.faults.delay_ms.store(3000, Ordering::Relaxed);
    let fast = fast_orphans(&app.settings);
    let mut slow = fast.clone();
    slow.storage.endpoint = proxy.endpoint.clone();
    let mut victim = spawn_worker_process(&slow);
    let id = app.submit_file(&photos("cameras")[1], "put").await;
    wait_for_state(&app, &id, "processing", Duration::from_secs(20)).await;

    victim.kill().await.unwrap(); // SIGKILL
    let killed_at = Instant::now();
    app.start_worker_with(fast.clone());
    let done = app.wait_until_processed(&id).await;
    let took = killed_at.elapsed();
    assert_eq!(done.state, UploadState::Ready);
    assert!(
        took <= fast.redis.orphan_timeout() + Duration::from_secs(10),
        "took {took:?}"
    );
    // Claimed twice, committed once: exactly one set of derivatives.
    assert_eq!(done.attempts, 2);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM derivatives")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(n, 2);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_failures_retry_with_growing_gaps_then_fail_and_permanent_ones_do_not_retry() {
    let mut app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(&app.settings.storage.endpoint).await;
    proxy.faults.p503_permille.store(1000, Ordering::Relaxed); // S3 answers 503 to the worker
    let mut settings = app.settings.clone();
    settings.storage.endpoint = proxy.endpoint.clone();
    settings.worker.max_attempts = 4;
    settings.worker.retry_base_delay_ms = 1000;
    settings.worker.retry_max_delay_ms = 8000;
    app.start_worker_with(settings.clone());

    let id = app.submit_file(&photos("cameras")[0], "put").await;
    let mut seen: Vec<(i32, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (state, attempts) = state_of(&app, &id).await;
        if seen.last().map(|(a, _)| *a) != Some(attempts) && attempts > 0 {
            seen.push((attempts, Instant::now()));
        }
        if state == "failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {state} after {attempts} attempts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upload = app.get_upload(&id).await;
    assert_eq!(
        upload.error.as_ref().map(|e| e.code),
        Some(ErrorCode::RetriesExhausted),
        "{upload:?}"
    );
    assert_eq!(upload.attempts, 4);
    assert_eq!(
        seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let gaps: Vec<f64> = seen
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).as_secs_f64())
        .collect();
    eprintln!("gaps between attempts: {gaps:.2?}");
    // Ceilings 1, 2, 4 s; each delay is in [c/2, c], scheduled in whole seconds.
    for (gap, ceiling) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap <= ceiling + 2.0,
            "gap {gap:.2} s over ceiling {ceiling} s"
        );
    }
    assert!(gaps[2] > gaps[0], "gaps do not grow: {gaps:?}");
    assert!(proxy.faults.injected_503.load(Ordering::Relaxed) > 0);

    // A permanent failure (not an image) is attempted exactly once, with S3 healthy again.
    proxy.faults.p503_permille.store(0, Ordering::Relaxed);
    let bad = app.upload_file(&photos("bad")[1], "put").await;
    assert_eq!((bad.state, bad.attempts), (UploadState::Failed, 1));
    // The exhausted upload's original could not be moved while S3 failed; the sweeper does it.
    app.sweep(|_| {}).await;
    app.finish().await;
}
