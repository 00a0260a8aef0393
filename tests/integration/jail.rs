//! The decoder jail (issue "Safe to expose", "Decoders in a jail") through real processes: a
//! `kiln worker` process started with `KILN_TEST_DECODER_HOOKS=1`, so its decoder children
//! honour the test-only input hooks (`kiln_worker::jail::child::hooks`).
//!
//! - A decoder child has an empty environment and cannot read its worker's environment
//!   (`/proc/{worker}/environ`, which the test itself can read), read or create a file, open
//!   a socket or start a program: the probe hook reports it from inside a real worker's child,
//!   and `kiln decode-child --probe` from a child started directly.
//! - A decoder that spins ends `decode_timeout` within the job timeout plus a few seconds, while
//!   a good photo given at the same time is processed; one that aborts ends `corrupt_image`;
//!   one that runs out of its address space ends `image_too_large`; the worker keeps running,
//!   its pool is back to full strength, and it processes a good photo afterwards. The peak
//!   resident memory of the worker and its children together, sampled every 50 ms over the
//!   run, stays under 300 MB.
//! - With `worker.jail.enabled = false` the worker decodes in process, as before the jail.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_shared::Settings;
use kiln_shared::domain::{ErrorCode, UploadState};
use kiln_shared::wire::UploadView;
use kiln_worker::jail::child::hooks;
use kiln_worker::jail::probe::ProbeReport;
use tokio::sync::watch;

use crate::helpers::{TestApp, TestOptions, fixtures, kiln_bin, kiln_command, spawn_app_with};

/// Peak resident memory allowed for the worker and its decoder children together.
const RSS_LIMIT_KIB: u64 = 300 * 1024;

/// `kiln worker` with `settings`, its children started with `--test-hooks`.
fn spawn_hooked_worker(settings: &Settings) -> tokio::process::Child {
    kiln_command("worker", settings)
        .env(kiln_worker::jail::TEST_HOOKS_ENV, "1")
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kiln worker")
}

/// Authorizes, sends and completes `bytes` as `name` (declared `image/jpeg`); returns the id.
async fn submit(app: &TestApp, name: &str, bytes: Vec<u8>) -> String {
    let auth = app.authorize(name, "image/jpeg", bytes.len(), "put").await;
    assert!(
        app.send_to_s3(&auth, bytes, "image/jpeg")
            .await
            .is_success()
    );
    let id = auth.id.to_string();
    assert!(app.complete(&id).await.status().is_success());
    id
}

/// A test-only input: the hook's prefix, then filler.
fn hook(prefix: &[u8]) -> Vec<u8> {
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    bytes
}

fn assert_failed(view: &UploadView, code: ErrorCode) {
    assert_eq!(view.state, UploadState::Failed, "{view:?}");
    let error = view.error.as_ref().expect("a failed upload has an error");
    assert_eq!(error.code, code, "{}", error.message);
}

fn good_photo() -> std::path::PathBuf {
    fixtures().join("photos/cameras/Canon_40D.jpg")
}

/// `VmRSS` of `pid`, in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The live (not zombie) processes whose parent is `pid` (from every `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
                    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
                    let state = rest.next()?;
                    let ppid = rest.next()?.parse::<u32>().ok()?;
                    Some(state != "Z" && ppid == pid)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Samples the summed RSS of `pid` and its children every 50 ms until told to stop; returns
/// the peak, in KiB.
fn sample_rss(pid: u32) -> (watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut peak = 0;
        while !*stopped.borrow() {
            let total = rss_kib(pid) + children_of(pid).into_iter().map(rss_kib).sum::<u64>();
            peak = peak.max(total);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopped.changed() => {}
            }
        }
        peak
    });
    (stop, task)
}

/// The report a probe hook left in the upload's internal error detail.
async fn probe_report(app: &TestApp, id: &str) -> ProbeReport {
    let id: kiln_shared::domain::UploadId = id.parse().unwrap();
    let row = kiln_shared::db::uploads::get(&app.db, id)
        .await
        .unwrap()
        .expect("the upload row");
    let detail = row.error_detail.expect("a failed upload has a detail");
    let json = detail
        .split_once(hooks::PROBE_DETAIL)
        .unwrap_or_else(|| panic!("no probe report in {detail:?}"))
        .1;
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn assert_confined(report: &ProbeReport) {
    for (what, attempt) in [
        ("read the worker's environment", &report.parent_environ),
        ("read a file", &report.read_file),
        ("create a file", &report.create_file),
        ("open a socket", &report.socket),
        ("start a program", &report.spawn),
    ] {
        assert!(
            !attempt.allowed,
            "a decoder child could {what}: {report:#?}"
        );
    }
    assert!(report.seccomp, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decoder_child_cannot_read_the_workers_environment_open_a_socket_or_write_a_file() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    let mut worker = spawn_hooked_worker(&app.settings);
    let worker_pid = worker.id().unwrap();

    let id = submit(&app, "probe.jpg", hook(hooks::PROBE)).await;
    let view = app.wait_until_processed(&id).await;
    assert_failed(&view, ErrorCode::UnsupportedFormat);
    let report = probe_report(&app, &id).await;
    eprintln!("probe from a worker's decoder child: {report:#?}");
    assert_eq!(report.env_vars, 0, "{report:#?}");
    assert_confined(&report);
    // The worker's environment holds its credentials, readable by any unconfined process of
    // the same user (this test): the child was stopped by its jail, not by permissions.
    let environ = std::fs::read(format!("/proc/{worker_pid}/environ")).unwrap();
    assert!(
        String::from_utf8_lossy(&environ).contains("KILN__STORAGE__"),
        "the worker's environment has its S3 settings"
    );

    app.wait_for_acks().await;
    worker.kill().await.unwrap();
    app.finish().await;
}

#[tokio::test]
async fn decode_child_probe_reports_every_attempt_blocked() {
    let out = tokio::process::Command::new(kiln_bin())
        .args(["decode-child", "--probe"])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: ProbeReport = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("kiln decode-child --probe: {report:#?}");
    assert_eq!(report.env_vars, 0);
    assert_confined(&report);
    assert!(report.all_blocked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stuck_crashing_and_exhausted_decoders_fail_alone_and_the_worker_carries_on() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    let mut settings = app.settings.clone();
    settings.worker.job_timeout_secs = 3;
    let pool_size = settings.worker.concurrency + settings.worker.renditions_concurrency;
    let mut worker = spawn_hooked_worker(&settings);
    let worker_pid = worker.id().unwrap();
    let (stop_sampling, sampler) = sample_rss(worker_pid);

    // The worker is up (and its pool started) once a first photo is processed.
    let first = app.upload_file(&good_photo(), "put").await;
    assert_eq!(first.state, UploadState::Ready, "{first:?}");

    // A decoder stuck in a loop: killed at the job timeout. A photo given at the same time
    // is processed by another child meanwhile.
    let started = Instant::now();
    let spin = submit(&app, "spin.jpg", hook(hooks::SPIN)).await;
    let beside = app.submit_file(&good_photo(), "put").await;
    let beside = app.wait_until_processed(&beside).await;
    assert_eq!(beside.state, UploadState::Ready, "{beside:?}");
    let spin = app.wait_until_processed(&spin).await;
    let took = started.elapsed();
    assert_failed(&spin, ErrorCode::DecodeTimeout);
    let limit = Duration::from_secs(settings.worker.job_timeout_secs + 4);
    assert!(
        took < limit,
        "decode_timeout after {took:?} (limit {limit:?})"
    );
    assert!(took >= Duration::from_secs(settings.worker.job_timeout_secs));

    // A decoder that aborts, and one that runs out of its address space.
    let abort = submit(&app, "abort.jpg", hook(hooks::ABORT)).await;
    assert_failed(
        &app.wait_until_processed(&abort).await,
        ErrorCode::CorruptImage,
    );
    let oom = submit(&app, "oom.jpg", hook(hooks::OOM)).await;
    assert_failed(
        &app.wait_until_processed(&oom).await,
        ErrorCode::ImageTooLarge,
    );

    // Through all of it the worker kept running; its pool is back to full strength and it
    // processes a good photo.
    let last = app.upload_file(&good_photo(), "put").await;
    assert_eq!(last.state, UploadState::Ready, "{last:?}");
    assert!(worker.try_wait().unwrap().is_none(), "the worker exited");
    let deadline = Instant::now() + Duration::from_secs(10);
    while children_of(worker_pid).len() != pool_size && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(children_of(worker_pid).len(), pool_size, "decoder children");

    let _ = stop_sampling.send(true);
    let peak = sampler.await.unwrap();
    eprintln!(
        "peak RSS of the worker and its decoder children: {} MiB",
        peak / 1024
    );
    assert!(peak > 0, "RSS was sampled");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {} MiB is over {} MiB",
        peak / 1024,
        RSS_LIMIT_KIB / 1024
    );

    app.wait_for_acks().await;
    worker.kill().await.unwrap();
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_jail_disabled_the_worker_decodes_in_process() {
    let app = spawn_app_with(TestOptions {
        worker_settings: Some(|s| s.worker.jail.enabled = false),
        ..TestOptions::default()
    })
    .await;
    let view = app.upload_file(&good_photo(), "post").await;
    assert_eq!(view.state, UploadState::Ready, "{view:?}");
    assert!(view.derivative("thumb").is_some(), "{view:?}");
    app.finish().await;
}
