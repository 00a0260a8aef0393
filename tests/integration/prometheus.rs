//! A real Prometheus (Debian's `prometheus` package) scrapes the fleet: the API and two worker
//! processes, with the alert rules of docker/prometheus loaded, while uploads are processed.
//! Its HTTP API must answer with the numbers the test knows, and every query of the Grafana
//! dashboard in docker/grafana must be accepted and name only metrics that exist. promtool
//! checks the config and rule files in docker/ too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, TestOptions, kiln_command, photos, reported_addr, spawn_app_with};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free loopback port for Prometheus itself (it cannot report the port it bound).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn promtool(args: &[&str]) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("promtool (scripts/deps installs the prometheus package)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_rules_in_docker() {
    promtool(&["check", "config", "docker/prometheus/prometheus.yml"]);
    promtool(&["check", "rules", "docker/prometheus/alerts.yml"]);
    promtool(&["test", "rules", "docker/prometheus/alerts_test.yml"]);
}

/// Every `expr` of every panel (rows included) of a Grafana dashboard.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_owned());
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

struct Prometheus {
    child: tokio::process::Child,
    url: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on loopback scraping `api` and `workers` every second, as the jobs
    /// `kiln-api` and `kiln-worker` (the names docker/prometheus/prometheus.yml uses), with
    /// docker/prometheus/alerts.yml loaded.
    async fn start(api: &str, workers: &[String]) -> Self {
        let dir = std::env::temp_dir().join(format!("kiln-prom-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = repo().join("docker/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n\
             - job_name: kiln-api\n  static_configs: [{{targets: [{api:?}]}}]\n\
             - job_name: kiln-worker\n  static_configs: [{{targets: {workers:?}}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus (scripts/deps installs the prometheus package)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// `GET /api/v1/{path}`; panics unless Prometheus answers `status: success`.
    async fn api(&self, client: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Value {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query).unwrap();
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The value of an instant query that returns one sample, if it returns one.
    async fn scalar(&self, client: &reqwest::Client, q: &str) -> Option<f64> {
        let data = self.api(client, "query", &[("query", q)]).await;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `q` until it equals `want` (within 20 s).
    async fn wait_for(&self, client: &reqwest::Client, q: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.scalar(client, q).await;
            if got == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{q} = {got:?}, want {want}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("{}/-/ready", self.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "prometheus did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `n` `kiln worker` processes with their metrics on port 0; returns them and the
/// metrics addresses they report.
async fn start_workers(app: &TestApp, n: usize) -> (Vec<tokio::process::Child>, Vec<String>) {
    let mut children = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..n {
        let mut s = app.settings.clone();
        s.worker.metrics_listen = "127.0.0.1:0".parse().unwrap();
        s.worker.concurrency = 1;
        let mut child = kiln_command("worker", &s)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let addr = reported_addr(&mut child, kiln_worker::startup::METRICS_ADDR_LINE).await;
        children.push(child);
        targets.push(addr.to_string());
    }
    (children, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_scrapes_the_fleet_and_runs_the_dashboard() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..TestOptions::default()
    })
    .await;
    let api = app.address.trim_start_matches("http://").to_owned();
    let (mut workers, targets) = start_workers(&app, 2).await;
    let prom = Prometheus::start(&api, &targets).await;
    let client = &app.client;
    prom.ready(client).await;
    prom.wait_for(client, r#"sum(up{job="kiln-worker"})"#, 2.0)
        .await;
    prom.wait_for(client, r#"sum(up{job="kiln-api"})"#, 1.0)
        .await;

    let good: Vec<PathBuf> = photos("cameras").into_iter().chain(photos("gps")).collect();
    let bad = photos("bad");
    let n = good.len();
    let mut ids = Vec::new();
    for f in good.iter().chain(&bad[..1]) {
        ids.push(app.submit_file(f, "put").await);
    }
    for id in &ids {
        app.wait_until_processed(id).await;
    }

    let n = n as f64;
    prom.wait_for(client, r#"sum(kiln_jobs_total{outcome="succeeded"})"#, n)
        .await;
    prom.wait_for(client, r#"sum(kiln_jobs_total{outcome="failed"})"#, 1.0)
        .await;
    prom.wait_for(client, "sum(kiln_upload_ready_latency_seconds_count)", n)
        .await;
    prom.wait_for(
        client,
        r#"sum(kiln_upload_failures_total{error_code=~"corrupt_image|unsupported_format"})"#,
        1.0,
    )
    .await;
    prom.wait_for(client, r#"sum(kiln_uploads{state="ready"})"#, n)
        .await;
    prom.wait_for(client, r#"sum(kiln_queue_jobs{state="dead"})"#, 1.0)
        .await;
    // Each worker process is its own series.
    let per_worker = prom
        .api(
            client,
            "query",
            &[("query", r#"kiln_jobs_total{outcome="succeeded"}"#)],
        )
        .await;
    assert_eq!(
        per_worker["result"].as_array().unwrap().len(),
        2,
        "{per_worker}"
    );

    // The dashboard: every query accepted, naming only metrics that exist.
    let names: BTreeSet<String> = prom
        .api(client, "label/__name__/values", &[])
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docker/grafana/dashboards/kiln.json")).unwrap(),
    )
    .expect("the dashboard is valid JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 8, "only {} queries", queries.len());
    for q in &queries {
        let q = q.replace("$__rate_interval", "1m");
        prom.api(client, "query", &[("query", q.as_str())]).await;
        for name in metric_names(&q) {
            assert!(names.contains(&name), "{q}: no metric named {name}");
        }
    }
    // The alert rules loaded and evaluate.
    let rules = prom.api(client, "rules", &[]).await;
    let loaded = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .inspect(|r| assert_ne!(r["health"], "err", "{r}"))
        .count();
    assert!(loaded >= 5, "{rules}");

    prom.stop().await;
    for w in &mut workers {
        w.kill().await.unwrap();
    }
    app.finish().await;
}

/// The `kiln_*` metric names a PromQL expression uses (identifiers starting with `kiln_`).
fn metric_names(q: &str) -> Vec<String> {
    q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("kiln_"))
        .map(str::to_owned)
        .collect()
}
