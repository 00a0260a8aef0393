//! Structured logs of real `kiln` processes in production format (JSON lines): every line a
//! job writes carries `upload_id`, `job_id` and `attempt`, and the API accepts or makes a
//! request id, returns it in `x-request-id`, and logs it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_shared::domain::UploadState;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::helpers::{TestOptions, fixtures, kiln_command, reported_addr, spawn_app_with};

/// Stops `child` and returns its stderr, one parsed JSON object per line. Panics on a line
/// that is not JSON: production logs must be machine-readable throughout.
async fn json_lines(mut child: tokio::process::Child) -> Vec<Value> {
    child.start_kill().unwrap();
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    child.wait().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_job_line_names_its_upload_job_and_attempt() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    let worker = kiln_command("worker", &app.settings)
        .env("KILN__TELEMETRY__FORMAT", "json")
        .env("KILN__TELEMETRY__FILTER", "info,kiln_worker=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The decoder's thread logs "decoded" at debug, inside the job's span.
    let upload = app
        .upload_file(&fixtures().join("photos/edge/no_exif.jpg"), "put")
        .await;
    assert_eq!(upload.state, UploadState::Ready, "{upload:?}");
    let id = upload.id.to_string();
    let id = id.as_str();
    // The row turns ready before the attempt is acked: let the worker ack it before the kill.
    app.wait_for_acks().await;
    let lines = json_lines(worker).await;

    let job_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            let target = l["target"].as_str().unwrap_or_default();
            target.starts_with("kiln_worker::jobs::process_upload")
                || target.starts_with("kiln_worker::imaging")
                || l.to_string().contains(id)
        })
        .collect();
    assert!(
        job_lines.iter().any(|l| l["message"] == "job done"),
        "no `job done` line in {lines:#?}"
    );
    assert!(
        job_lines.iter().any(|l| l["target"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kiln_worker::imaging")),
        "no line from the decoder thread in {lines:#?}"
    );
    for l in &job_lines {
        let span = &l["span"];
        assert_eq!(span["upload_id"], id, "{l}");
        assert!(
            span["job_id"].as_str().is_some_and(|j| !j.is_empty()),
            "{l}"
        );
        assert!(span["attempt"].as_u64().is_some(), "{l}");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_carry_a_request_id_that_is_returned_and_logged() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    // `api.listen` is port 0 (the test settings); the API reports the port it got.
    let mut api = kiln_command("api", &app.settings)
        .env("KILN__TELEMETRY__FORMAT", "json")
        .env("KILN__TELEMETRY__FILTER", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = reported_addr(&mut api, kiln_api::startup::LISTEN_ADDR_LINE).await;
    let url = format!("http://{address}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.client.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "kiln api did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let given = app
        .client
        .get(&url)
        .header("x-request-id", "req-kiln-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-kiln-test-1");
    let made = app.client.get(&url).send().await.unwrap();
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made_id).is_ok(), "{made_id}");

    let lines = json_lines(api).await;
    for rid in ["req-kiln-test-1", made_id.as_str()] {
        let line = lines
            .iter()
            .find(|l| l["span"]["request_id"] == rid)
            .unwrap_or_else(|| panic!("request {rid} not logged in {lines:#?}"));
        assert_eq!(line["span"]["uri"], "/healthz", "{line}");
        assert!(line["status"].as_u64() == Some(200), "{line}");
    }
    app.finish().await;
}
