//! Schemathesis against the API: `scripts/schemathesis` (every phase and check, 50 examples per
//! operation, an admin token; `scripts/deps` installs it) runs on this test's own API, database
//! and queue. It must find no failure, and its stateful phase must follow the document's links
//! from `create_upload` to `complete_upload` and `get_upload`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::helpers::{TestOptions, spawn_app_with, token_for};

/// What the stateful phase did through links, from its NDJSON report: for every case that a
/// link produced (`transition.id` such as `POST /v1/uploads -> [201] complete_upload -> POST
/// /v1/uploads/{id}/complete`), the link and the status the API answered.
fn links_followed(ndjson: &str) -> BTreeSet<(String, u64)> {
    let mut followed = BTreeSet::new();
    for event in ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let scenario = &event["ScenarioFinished"];
        if scenario["phase"] != "stateful" {
            continue;
        }
        let recorder = &scenario["recorder"];
        for (id, case) in recorder["cases"].as_object().into_iter().flatten() {
            let (Some(link), true) = (
                case["transition"]["id"].as_str(),
                case["is_transition_applied"] == true,
            ) else {
                continue;
            };
            if let Some(status) = recorder["interactions"][id]["response"]["status_code"].as_u64() {
                followed.insert((link.to_owned(), status));
            }
        }
    }
    followed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_failure_and_its_stateful_phase_reaches_complete() {
    // No worker: nothing schemathesis does can put bytes in S3, so nothing is ever enqueued.
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    let admin = token_for(&app.settings, &app.owner, true);
    let dir = std::env::temp_dir().join(format!(
        "kiln-schemathesis-{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("events.ndjson");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/schemathesis");
    let started = Instant::now();
    let out = tokio::process::Command::new(script)
        .env("KILN_API", &app.address)
        .env("KILN_TOKEN", &admin)
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .args(["--generation-database", "none"])
        .current_dir(&dir)
        .output()
        .await
        .expect("run scripts/schemathesis (scripts/deps installs schemathesis)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis took {:.0?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis found failures ({}); its output is above",
        out.status
    );

    // The declared links took real ids from `create_upload`: `complete_upload` answered 409
    // `object_missing` for a pending upload (404 would mean a made-up id), `get_upload` 200.
    let followed = links_followed(&std::fs::read_to_string(&report).unwrap());
    for (link, status) in [
        (
            "POST /v1/uploads -> [201] complete_upload -> POST /v1/uploads/{id}/complete",
            409,
        ),
        (
            "POST /v1/uploads -> [201] get_upload -> GET /v1/uploads/{id}",
            200,
        ),
    ] {
        assert!(
            followed.contains(&(link.to_owned(), status)),
            "the stateful phase never followed {link} to a {status}; it followed {followed:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    app.finish().await;
}
