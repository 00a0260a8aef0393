//! `/metrics` on the API and on a worker, in Prometheus text format, with the numbers the test
//! knows.

use kiln_shared::domain::UploadState;

use crate::helpers::{TestOptions, photos, spawn_app_with};

/// The value of the sample whose line starts with `name{` and contains every label pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes `url` every 200 ms until `done` holds for the body or 15 s pass, and returns the
/// last body (the assertions that follow say what was missing).
async fn scrape_until(client: &reqwest::Client, url: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let text = client.get(url).send().await.unwrap().text().await.unwrap();
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_worker_export_what_happened() {
    let mut app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    // Its metrics listen on port 0 (the test settings); the worker reports the port it got.
    app.start_worker();
    let metrics = app.worker_metrics_addr().await;
    let cameras = photos("cameras");
    for f in &cameras[..3] {
        assert_eq!(app.upload_file(f, "put").await.state, UploadState::Ready);
    }
    assert_eq!(
        app.upload_file(&photos("bad")[1], "put").await.state,
        UploadState::Failed
    );
    // The row turns `failed` before the attempt returns and is counted: wait for the count.
    let q = app.settings.redis.queue.clone();
    let url = format!("http://{metrics}/metrics");
    let response = app.client.get(&url).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let worker = scrape_until(&app.client, &url, |text| {
        sample(
            text,
            "kiln_jobs_total",
            &[("queue", &q), ("outcome", "failed")],
        ) == Some(1.0)
    })
    .await;
    let q = q.as_str();
    assert_eq!(
        sample(
            &worker,
            "kiln_jobs_total",
            &[("queue", q), ("outcome", "succeeded")]
        ),
        Some(3.0),
        "{worker}"
    );
    assert_eq!(
        sample(
            &worker,
            "kiln_jobs_total",
            &[("queue", q), ("outcome", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &worker,
            "kiln_job_stage_duration_seconds_count",
            &[("stage", "decode")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&worker, "kiln_upload_ready_latency_seconds_count", &[]),
        Some(3.0)
    );
    assert!(sample(&worker, "kiln_processed_bytes_total", &[]).unwrap() > 0.0);
    assert_eq!(sample(&worker, "kiln_build_info", &[]), Some(1.0));

    // The API caches its Postgres and Redis gauges for up to 5 s, and the dead job reaches
    // `{q}:dead` only when apalis acks the attempt, after the row turned `failed`: a refresh
    // can fall in between, so wait for a scrape that has both.
    let api = scrape_until(&app.client, &format!("{}/metrics", app.address), |text| {
        sample(text, "kiln_queue_jobs", &[("queue", q), ("state", "dead")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&api, "kiln_uploads", &[("state", "ready")]),
        Some(3.0),
        "{api}"
    );
    assert_eq!(
        sample(&api, "kiln_uploads", &[("state", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&api, "kiln_queue_jobs", &[("queue", q), ("state", "dead")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &api,
            "kiln_http_requests_total",
            &[
                ("route", "/v1/uploads"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        Some(4.0)
    );
    assert!(
        sample(
            &api,
            "kiln_http_requests_total",
            &[("route", "/v1/uploads/{id}/complete"), ("status", "202")]
        )
        .is_some()
    );
    app.finish().await;
}
