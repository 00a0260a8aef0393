//! `spawn_app()`: a real API and a real worker, in-process, against real Postgres, Redis and
//! S3 (Garage), each test isolated by its own database, Redis queue name and key prefix.
//! [`TestApp::finish`] fails the test if a job is left in either queue (ProcessUpload,
//! RenderRenditions) or an object under `tmp/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use kiln_shared::Settings;
use kiln_shared::db::{Db, PgPool};
use kiln_shared::domain::{OwnerId, UploadMethod, UploadState};
use kiln_shared::queue::{JobQueue, RenditionQueue};
use kiln_shared::storage::Storage;
use kiln_shared::wire::{CreateUpload, UploadAuthorization, UploadView};
use reqwest::{Client, Response, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// `tests/fixtures` inside the repository (override with `KILN_FIXTURES`).
pub fn fixtures() -> PathBuf {
    std::env::var_os("KILN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
}

/// The large benchmark images: `KILN_BENCH_CACHE`, default `~/.cache/kiln/bench-images`, the
/// cache `scripts/fetch-bench-images` fills from Debian packages (`scripts/test` runs it
/// first).
pub fn bench_images() -> PathBuf {
    std::env::var_os("KILN_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/kiln/bench-images")
        })
}

/// Every file in `fixtures()/photos/{dir}`, sorted.
pub fn photos(dir: &str) -> Vec<PathBuf> {
    let path = fixtures().join("photos").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The fixture folders whose photos are good images (they must end `ready`).
pub const GOOD_DIRS: [&str; 7] = [
    "orientation",
    "gps",
    "cameras",
    "mobile",
    "heic",
    "tiff",
    "edge",
];

/// Every good fixture photo, folder by folder.
pub fn good_photos() -> Vec<PathBuf> {
    GOOD_DIRS.iter().flat_map(|d| photos(d)).collect()
}

/// A change to a [`TestApp`]'s settings that may capture values (a key file's path).
pub type SettingsChange = Box<dyn FnOnce(&mut Settings) + Send>;

/// Options for [`spawn_app_with`].
#[derive(Default)]
pub struct TestOptions {
    /// Override of `api.upload_expiry_secs`.
    pub upload_expiry_secs: Option<u64>,
    /// Start no worker (to inspect the queue before processing).
    pub no_worker: bool,
    /// Changes to the worker's settings only (e.g. a limit to provoke failures).
    pub worker_settings: Option<fn(&mut Settings)>,
    /// Another Redis (e.g. a private server a test may FLUSHALL).
    pub redis_url: Option<String>,
    /// Changes to the settings of both the API and the worker, made last (e.g. `auth.*`).
    pub settings: Option<SettingsChange>,
}

/// A running API + worker on isolated state.
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// HTTP client (also used as the "plain HTTP client" for S3).
    pub client: Client,
    /// The settings both processes run with.
    pub settings: Settings,
    /// This test's Postgres database, for raw SQL ([`TestApp::pool`]); `None` on the standalone
    /// backend.
    pg: Option<PgPool>,
    /// This test's upload store (Postgres, or SQLite on the standalone backend).
    pub db: Db,
    /// The bucket, with this test's key prefix.
    pub storage: Storage,
    /// This test's queue.
    pub queue: JobQueue,
    /// Default owner and its token.
    pub owner: OwnerId,
    /// Bearer token for `owner`.
    pub token: String,
    db_name: String,
    /// The data directory, on the standalone backend.
    data_dir: Option<PathBuf>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    worker: Option<InProcessWorker>,
    finished: bool,
}

/// The in-process worker of a [`TestApp`].
struct InProcessWorker {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
    /// Its metrics address, once [`kiln_worker::Worker::build`] has bound it.
    metrics_addr: watch::Receiver<Option<SocketAddr>>,
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    )
}

/// Base settings from the environment (`eval "$(scripts/services)"`).
fn base_settings() -> Settings {
    let mut s = Settings::load(None).expect("settings");
    assert!(
        !s.storage.access_key_id.is_empty(),
        "S3 credentials are not set: run `eval \"$(scripts/services)\"` first"
    );
    if s.auth.jwt_secret.expose_secret().is_empty() {
        s.auth.jwt_secret = random_secret();
    }
    s
}

/// A fresh HS256 secret for one test app: 64 hex digits of 32 random bytes.
pub fn random_secret() -> secrecy::SecretString {
    let bytes: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    secrecy::SecretString::from(hex::encode(bytes))
}

/// Spawns an API and a worker with default test options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

/// Whether the tests run on the standalone backend (`KILN_TEST_BACKEND=standalone`: SQLite,
/// apalis-sqlite and the embedded S3 endpoint) instead of the fleet's Postgres, Redis and S3.
pub fn standalone_backend() -> bool {
    std::env::var("KILN_TEST_BACKEND").as_deref() == Ok("standalone")
}

/// Spawns an API (port 0) and, unless disabled, a worker, on a fresh database, queue and key
/// prefix: on the fleet's services, or with [`standalone_backend`] on a fresh standalone data
/// directory served by an in-process embedded S3 endpoint.
pub async fn spawn_app_with(opts: TestOptions) -> TestApp {
    let standalone = standalone_backend();
    let mut settings = if standalone {
        Settings::load(None).expect("settings")
    } else {
        base_settings()
    };
    settings.telemetry.filter = "warn".into();
    kiln_shared::telemetry::init(&settings.telemetry);

    let db_name = unique("kiln_test_");
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let data_dir = if standalone {
        let dir = std::env::temp_dir().join(&db_name);
        let data = kiln_shared::config::standalone::DataDir::new(&dir);
        let secrets = data.secrets_or_create().expect("standalone secrets");
        let s3 = kiln_shared::storage::embedded::EmbeddedS3::bind(
            "127.0.0.1:0".parse().unwrap(),
            &data.objects(),
            &secrets.s3_access_key_id,
            secrets.s3_secret_access_key.expose_secret(),
            settings.api.max_upload_bytes,
        )
        .await
        .expect("embedded S3");
        let url = format!("http://{}", s3.local_addr());
        tasks.push(tokio::spawn(s3.run_until_stopped(rx.clone())));
        settings = data.apply(settings, &secrets, &url);
        Some(dir)
    } else {
        let admin = sqlx::PgPool::connect(&with_database(&settings.database.url, "postgres"))
            .await
            .expect("connect to postgres");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        settings.database.url = with_database(&settings.database.url, &db_name);
        None
    };
    settings.database.max_connections = 5;
    settings.redis.queue = unique("kiln-test-");
    settings.redis.poll_interval_ms = 100;
    settings.redis.heartbeat_secs = 2;
    settings.redis.missed_heartbeats = 5;
    settings.storage.key_prefix = unique("test-") + "/";
    settings.api.listen = "127.0.0.1:0".parse().unwrap();
    settings.worker.concurrency = 2;
    settings.worker.metrics_listen = "127.0.0.1:0".parse().unwrap();
    settings.worker.shutdown_timeout_secs = 5;
    // Tests run the sweeper explicitly (`TestApp::sweep`) so its timing is deterministic; its
    // bucket-wide lifecycle rule is not set from parallel tests.
    settings.sweeper.enabled = false;
    settings.sweeper.lifecycle_rule = false;
    // Rate limits are off in tests (batches of hundreds of uploads, many bad tokens); a test of
    // the limits turns them on through `TestOptions::settings`, which is applied after this.
    settings.rate_limits.authorize_per_second = 0;
    settings.rate_limits.complete_per_second = 0;
    settings.rate_limits.auth_failures_per_minute = 0;
    if let Some(url) = opts.redis_url {
        settings.redis.url = url;
    }
    if let Some(e) = opts.upload_expiry_secs {
        settings.api.upload_expiry_secs = e;
    }
    if let Some(change) = opts.settings {
        change(&mut settings);
    }
    settings.validate().expect("test settings are valid");

    let db = kiln_shared::db::connect(&settings.database).unwrap();
    kiln_shared::db::migrate(&db)
        .await
        .expect("migrate test database");
    if standalone {
        let conn = kiln_shared::queue::connect(&settings.redis, &db, &settings.database.url)
            .await
            .unwrap();
        kiln_shared::queue::migrate(&conn)
            .await
            .expect("migrate the queue");
    }
    let pg = db.as_postgres().cloned();

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = kiln_api::Application::build(settings.clone())
        .await
        .expect("build api");
    let address = format!("http://127.0.0.1:{}", app.port());
    let storage = app.state().storage.clone();
    let queue = app.state().lifecycle.queue().clone();
    tasks.push(tokio::spawn({
        let fut = stopped(rx.clone());
        async move { app.run_until_stopped(fut).await.expect("api failed") }
    }));
    let owner = OwnerId::parse(&unique("owner-")).unwrap();
    // With a public key configured Kiln cannot mint: the test signs its own tokens.
    let token = if settings.auth.uses_public_key() {
        String::new()
    } else {
        token_for(&settings, &owner, false)
    };
    let mut app = TestApp {
        address,
        client: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        settings,
        pg,
        db,
        storage,
        queue,
        owner,
        token,
        db_name,
        data_dir,
        stop,
        tasks,
        worker: None,
        finished: false,
    };
    if !opts.no_worker {
        let mut worker_settings = app.settings.clone();
        if let Some(f) = opts.worker_settings {
            f(&mut worker_settings);
        }
        app.start_worker_with(worker_settings);
    }
    app
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database url has a path");
    format!("{base}/{db}")
}

/// A token for `owner` signed with the app's secret.
pub fn token_for(settings: &Settings, owner: &OwnerId, admin: bool) -> String {
    kiln_shared::auth::Signer::from_settings(&settings.auth)
        .expect("the test app has a signing key")
        .mint(owner, admin, Duration::from_secs(3600))
        .unwrap()
}

/// A copy of the JPEG `bytes` with a comment segment (`FF FE`, `tag`) right after SOI: the same
/// image, other bytes, so per-owner dedup processes each copy on its own.
pub fn distinct_jpeg(bytes: &[u8], tag: &str) -> Vec<u8> {
    assert!(bytes.starts_with(&[0xff, 0xd8]), "not a JPEG");
    let len = u16::try_from(tag.len() + 2).unwrap().to_be_bytes();
    let mut out = Vec::with_capacity(bytes.len() + tag.len() + 4);
    out.extend_from_slice(&bytes[..2]);
    out.extend_from_slice(&[0xff, 0xfe, len[0], len[1]]);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&bytes[2..]);
    out
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The `kiln` binary: `KILN_BIN` when set (for a target directory shared by several
/// checkouts, where `target/debug/kiln` is whichever built last), else the one next to this
/// test binary (`target/debug/kiln`; `cargo build` makes it).
pub fn kiln_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KILN_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("kiln");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build` first",
        bin.display()
    );
    bin
}

/// Starts `kiln worker` as its own process with `settings`.
pub fn spawn_worker_process(settings: &Settings) -> tokio::process::Child {
    kiln_command("worker", settings)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn kiln worker")
}

/// `kiln {role}` with `settings` as its only configuration (a clean environment but `PATH`
/// and [`Settings::to_env`], logging at `error` unless the caller sets
/// `KILN__TELEMETRY__FILTER`), stdout discarded, killed on drop. A worker gets no token
/// signing key (it never verifies a token). The caller chooses stderr
/// and spawns it; to learn the port a child bound for port 0, set stdout to piped and call
/// [`reported_addr`].
pub fn kiln_command(role: &str, settings: &Settings) -> tokio::process::Command {
    let mut settings = settings.clone();
    settings.telemetry.filter = "error".into();
    if role == "worker" {
        settings.auth.jwt_secret = secrecy::SecretString::from(String::new());
    }
    let mut cmd = tokio::process::Command::new(kiln_bin());
    cmd.arg(role)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(settings.to_env())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The address a `kiln` child reports on its stdout (which must be piped) in the line starting
/// with `prefix`: [`kiln_worker::startup::METRICS_ADDR_LINE`] for `kiln worker`,
/// [`kiln_api::startup::LISTEN_ADDR_LINE`] for `kiln api`. Waits up to 30 s; what the child
/// prints afterwards is read and dropped, so it never blocks on a full pipe.
pub async fn reported_addr(child: &mut tokio::process::Child, prefix: &str) -> SocketAddr {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read the child's stdout") {
            if let Some(addr) = line.strip_prefix(prefix) {
                return addr.trim().parse().expect("a socket address");
            }
        }
        panic!("the child closed stdout without printing {prefix}…");
    })
    .await
    .unwrap_or_else(|_| panic!("the child did not print {prefix}… within 30 s"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}

impl TestApp {
    /// This test's Postgres database, for raw SQL.
    ///
    /// # Panics
    /// On the standalone backend (such tests are fleet-only).
    pub fn pool(&self) -> &PgPool {
        self.pg
            .as_ref()
            .expect("raw SQL needs the fleet backend (Postgres)")
    }

    /// Starts a worker with the app's settings (for tests spawned with `no_worker`).
    pub fn start_worker(&mut self) {
        self.start_worker_with(self.settings.clone());
    }

    /// Starts a worker with `settings`, replacing the running one (stopped gracefully first).
    /// With `worker.metrics_listen` on port 0 (the test default), [`Self::worker_metrics_addr`]
    /// says where its `/metrics` is.
    pub fn start_worker_with(&mut self, settings: Settings) {
        assert!(self.worker.is_none(), "stop the running worker first");
        let (stop, mut rx) = watch::channel(false);
        let fut = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let (addr_tx, metrics_addr) = watch::channel(None);
        let handle = tokio::spawn(async move {
            let worker = kiln_worker::Worker::build(settings)
                .await
                .expect("build worker");
            let _ = addr_tx.send(Some(worker.metrics_addr()));
            worker.run_until_stopped(fut).await.expect("worker failed")
        });
        self.worker = Some(InProcessWorker {
            stop,
            handle,
            metrics_addr,
        });
    }

    /// The address of the running in-process worker's `/metrics`, as bound (waits for the
    /// worker to bind it).
    pub async fn worker_metrics_addr(&self) -> SocketAddr {
        let worker = self.worker.as_ref().expect("no worker is running");
        let mut rx = worker.metrics_addr.clone();
        let addr = rx
            .wait_for(Option::is_some)
            .await
            .expect("the worker failed to start");
        addr.expect("set once bound")
    }

    /// Stops the running worker gracefully (in-flight jobs finish) and waits for it.
    pub async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            let _ = worker.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(15), worker.handle).await;
        }
    }

    /// Runs one sweep now, with the app's settings and `tune` applied to them.
    pub async fn sweep(
        &self,
        tune: impl FnOnce(&mut Settings),
    ) -> kiln_worker::jobs::sweep::SweepReport {
        let mut settings = self.settings.clone();
        tune(&mut settings);
        let settings = std::sync::Arc::new(settings);
        let lifecycle = kiln_shared::lifecycle::Lifecycle::connect(
            settings.clone(),
            self.db.clone(),
            self.storage.clone(),
        )
        .await
        .expect("connect the lifecycle");
        let ctx = kiln_worker::jobs::runtime::JobContext {
            settings,
            lifecycle,
            metrics: std::sync::Arc::new(kiln_shared::metrics::Metrics::new()),
        };
        kiln_worker::jobs::sweep::SweepUploads::run(&ctx)
            .await
            .expect("sweep")
    }

    /// Deletes every Redis key of this test's queue: what FLUSHALL does to it, without touching
    /// the queues of tests running in parallel.
    pub async fn wipe_queue(&self) {
        self.delete_queue_keys().await.expect("wipe the test queue");
    }

    async fn delete_queue_keys(&self) -> redis::RedisResult<()> {
        let mut conn = self
            .queue
            .redis_connection()
            .expect("the fleet's Redis queue");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.settings.redis.queue))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// `POST /v1/uploads` with `body` and `token`.
    pub async fn create_upload_as(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}/v1/uploads", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Authorizes an upload of `bytes` for the default owner; asserts 201.
    pub async fn authorize(
        &self,
        filename: &str,
        content_type: &str,
        size: usize,
        method: &str,
    ) -> UploadAuthorization {
        let body = CreateUpload {
            filename: filename.to_owned(),
            content_type: content_type.to_owned(),
            byte_size: size as u64,
            method: UploadMethod::try_from(method.to_owned()).unwrap(),
        };
        let resp = self
            .create_upload_as(&self.token, &serde_json::to_value(&body).unwrap())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "authorize failed");
        resp.json().await.unwrap()
    }

    /// Sends `bytes` to S3 as `auth` says (PUT with its headers, or the POST form), like any
    /// plain HTTP client. Returns the S3 status.
    pub async fn send_to_s3(
        &self,
        auth: &UploadAuthorization,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> StatusCode {
        self.send_to_s3_with(auth, bytes, content_type, |_| {})
            .await
    }

    /// Like [`Self::send_to_s3`], letting the caller tamper with the POST form fields.
    pub async fn send_to_s3_with(
        &self,
        auth: &UploadAuthorization,
        bytes: Vec<u8>,
        content_type: &str,
        tamper: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> StatusCode {
        send_to_s3(&self.client, auth, bytes, content_type, tamper).await
    }

    /// `POST /v1/uploads/{id}/complete` with `token`.
    pub async fn complete_as(&self, token: &str, id: &str) -> Response {
        self.client
            .post(format!("{}/v1/uploads/{id}/complete", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Rows in this test's upload store, in any state.
    pub async fn upload_rows(&self) -> i64 {
        kiln_shared::db::uploads::count_by_state(&self.db)
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    /// `POST /v1/uploads/{id}/complete` for the default owner.
    pub async fn complete(&self, id: &str) -> Response {
        self.complete_as(&self.token, id).await
    }

    /// `GET /v1/uploads/{id}` for the default owner; asserts 200.
    pub async fn get_upload(&self, id: &str) -> UploadView {
        let resp = self
            .client
            .get(format!("{}/v1/uploads/{id}", self.address))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// Polls until the upload is `ready` or `failed` (60 s at most).
    pub async fn wait_until_processed(&self, id: &str) -> UploadView {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let upload = self.get_upload(id).await;
            if matches!(upload.state, UploadState::Ready | UploadState::Failed) {
                return upload;
            }
            assert!(
                Instant::now() < deadline,
                "upload {id} stuck in {:?}",
                upload.state
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Authorizes `path` for the default owner and sends it to S3 with `method` (`put` or
    /// `post`), like any plain HTTP client; asserts S3 accepted it. Returns the authorization.
    pub async fn send_file(&self, path: &Path, method: &str) -> UploadAuthorization {
        let bytes = std::fs::read(path).unwrap();
        let ct = kiln_shared::domain::content_type::for_path(path);
        let name = path.file_name().unwrap().to_str().unwrap();
        let auth = self.authorize(name, ct, bytes.len(), method).await;
        let status = self.send_to_s3(&auth, bytes, ct).await;
        assert!(
            status.is_success(),
            "S3 refused {} via {method}: {status}",
            path.display()
        );
        auth
    }

    /// [`Self::send_file`], then complete (asserting 202). Returns the upload id.
    pub async fn submit_file(&self, path: &Path, method: &str) -> String {
        let id = self.send_file(path, method).await.id.to_string();
        let resp = self.complete(&id).await;
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "complete {}",
            path.display()
        );
        id
    }

    /// The whole client path for one file: authorize, send, complete, wait. Returns the upload.
    pub async fn upload_file(&self, path: &Path, method: &str) -> UploadView {
        let id = self.submit_file(path, method).await;
        self.wait_until_processed(&id).await
    }

    /// Downloads the derivative `name` of a processed `upload` (as returned by
    /// [`Self::get_upload`]) through its presigned GET URL, and decodes it.
    pub async fn derivative_of(&self, upload: &UploadView, name: &str) -> image::DynamicImage {
        let d = upload
            .derivative(name)
            .unwrap_or_else(|| panic!("no {name} derivative: {upload:?}"));
        let bytes = self
            .client
            .get(&d.url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        image::load_from_memory(&bytes).expect("derivative decodes")
    }

    /// Downloads an object by key (through the storage client).
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.storage
            .get(key, u64::MAX)
            .await
            .unwrap()
            .map(|o| o.bytes.to_vec())
    }

    /// Keys under this test's `tmp/`.
    pub async fn temp_objects(&self) -> Vec<String> {
        self.storage
            .list(&self.storage.layout().temp_root())
            .await
            .unwrap()
    }

    /// Waits (up to 30 s) until the ProcessUpload queue has nothing waiting or in flight. A row
    /// turns `ready` or `failed` before its attempt is acked, so a test that kills a worker
    /// process right after reading the row calls this first; otherwise the last job can stay
    /// in flight with no other worker to recover it.
    pub async fn wait_for_acks(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.queue.depth().await.unwrap().pending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The RenderRenditions queue of this test (`{queue}:renditions`).
    pub async fn renditions_queue(&self) -> RenditionQueue {
        let conn = kiln_shared::queue::connect(
            &self.settings.redis,
            &self.db,
            &self.settings.database.url,
        )
        .await
        .expect("connect to the renditions queue");
        RenditionQueue::on(&conn, &self.settings.redis)
    }

    /// Asserts no leftovers (no queued, scheduled or in-flight job in either queue; no object
    /// under `tmp/`), then stops the API and worker and drops the database.
    pub async fn finish(mut self) {
        let renditions = self.renditions_queue().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let depth = self.queue.depth().await.unwrap();
            let renditions_depth = renditions.depth().await.unwrap();
            if depth.pending() == 0 && renditions_depth.pending() == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "jobs left in the queues: {depth:?}, renditions: {renditions_depth:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let temps = self.temp_objects().await;
        assert!(temps.is_empty(), "objects left under tmp/: {temps:?}");
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        self.finished = true;
        self.stop_worker().await;
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        if let Some(pool) = &self.pg {
            pool.close().await;
        }
        let admin = sqlx::PgPool::connect(&with_database(&self.settings.database.url, "postgres"))
            .await
            .unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.db_name
        )))
        .execute(&admin)
        .await;
        // Remove this test's objects and queue keys so repeated runs do not accumulate state.
        for key in self
            .storage
            .list(self.storage.layout().prefix())
            .await
            .unwrap_or_default()
        {
            let _ = self.storage.delete(&key).await;
        }
        let _ = self.delete_queue_keys().await;
        let mut conn = self
            .queue
            .redis_connection()
            .expect("the fleet's Redis queue");
        let _: Result<(), _> = redis::cmd("ZREM")
            .arg("core:apalis:queues:list")
            .arg(format!("{}:workers", self.settings.redis.queue))
            .arg(format!(
                "{}:workers",
                self.settings.redis.renditions_queue()
            ))
            .query_async(&mut conn)
            .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("a TestApp must end with `app.finish().await` (it checks for leftovers)");
        }
    }
}

/// Sends `bytes` to S3 as `auth` says, over plain HTTP with `client` (a presigned PUT with the
/// signed headers but `content-length`, which reqwest sets from the body; or a POST policy form
/// whose fields `tamper` may change first). Returns S3's status.
pub async fn send_to_s3(
    client: &Client,
    auth: &UploadAuthorization,
    bytes: Vec<u8>,
    content_type: &str,
    tamper: impl FnOnce(&mut BTreeMap<String, String>),
) -> StatusCode {
    let url = auth.url.as_str();
    let resp = if auth.method == UploadMethod::Post {
        let mut fields = auth.fields.clone().unwrap();
        tamper(&mut fields);
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k, v);
        }
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("f")
            .mime_str(content_type)
            .unwrap();
        client
            .post(url)
            .multipart(form.part("file", part))
            .send()
            .await
            .unwrap()
    } else {
        let mut req = client.put(url);
        for (k, v) in auth.headers.as_ref().unwrap() {
            if k != "content-length" {
                req = req.header(k, v);
            }
        }
        req.body(bytes).send().await.unwrap()
    };
    resp.status()
}
