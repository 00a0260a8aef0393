//! The one typed settings tree for every role (API, worker, client, CLI).
//!
//! Layers, later wins: built-in defaults ([`Settings::default`]), then an optional TOML file,
//! then environment variables `KILN__SECTION__KEY` (double underscore between levels, e.g.
//! `KILN__API__LISTEN=127.0.0.1:8080`). `kiln.example.toml` at the repository root documents
//! every key with its env var; [`Settings::to_env`] writes settings back as such variables.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

mod api;
mod assets;
mod auth;
mod env;
pub mod standalone;
mod tenancy;
mod worker;

pub use api::ApiSettings;
pub use assets::{RetentionSettings, ShareSettings};
pub use auth::{AuthSettings, KeyError, check_secret as auth_check_secret};
pub use tenancy::{QuotaSettings, RateLimitSettings, SchedulingSettings};
pub use worker::{JailSettings, WorkerSettings};

/// Serialises a secret in clear. Settings are serialised only to seed figment's defaults layer
/// and for [`Settings::to_env`]; `Debug` still redacts secrets, so logging them leaks nothing.
pub(crate) fn expose_secret<S: serde::Serializer>(
    secret: &SecretString,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_str(secret.expose_secret())
}

/// Prefix of every environment variable [`Settings::load`] reads.
const ENV_PREFIX: &str = "KILN__";
/// Separator between the levels of a key in an environment variable's name.
const ENV_SPLIT: &str = "__";

/// Every setting Kiln reads, grouped by concern.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    /// PostgreSQL connection.
    pub database: DatabaseSettings,
    /// Redis connection and the apalis queue.
    pub redis: RedisSettings,
    /// S3 endpoint, bucket and credentials.
    pub storage: StorageSettings,
    /// HTTP API and upload authorization.
    pub api: ApiSettings,
    /// Worker concurrency, retries, limits and renditions.
    pub worker: WorkerSettings,
    /// JWT signing.
    pub auth: AuthSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
    /// The periodic sweeper (`SweepUploads`).
    pub sweeper: SweeperSettings,
    /// Default per-owner quotas.
    pub quotas: QuotaSettings,
    /// Per-owner request rates.
    pub rate_limits: RateLimitSettings,
    /// The fair scheduler.
    pub scheduling: SchedulingSettings,
    /// How long deleted and failed uploads are kept.
    pub retention: RetentionSettings,
    /// Share links.
    pub shares: ShareSettings,
}

/// Errors from [`Settings::load`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The values parse but break a rule (named in the message).
    #[error("invalid configuration: {0}")]
    Rule(String),
}

impl Settings {
    /// Loads defaults, then `file` if given (it must exist), then `KILN__…` env vars.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the file is missing or malformed or a value has the wrong
    /// type; [`ConfigError::Rule`] when [`Settings::validate`] rejects the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Rule(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let settings: Settings = figment
            .merge(Env::prefixed(ENV_PREFIX).split(ENV_SPLIT))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The `KILN__SECTION__KEY=value` pairs that reproduce these settings through the env layer
    /// of [`Settings::load`]: every key, so a child process given them loads settings equal to
    /// these whatever its defaults, config file or other `KILN__` env.
    ///
    /// Values use the syntax figment's env provider parses: numbers and booleans as they are;
    /// strings bare when figment reads them back unchanged, else double-quoted with escapes
    /// (`"true"`, `"8080"`, strings with `,`, brackets or edge spaces); lists as `[…]`, with
    /// structs as `{key=value,…}` and strings quoted, e.g.
    /// `KILN__API__ALLOWED_CONTENT_TYPES=["image/jpeg","image/png"]` (it replaces the default
    /// list; it is not appended to). A `None` option is left out.
    ///
    /// **Secrets are exposed**: `storage.secret_access_key` and `auth.jwt_secret` are in clear,
    /// since the child needs them. Put the pairs in a child's environment; never log them.
    pub fn to_env(&self) -> Vec<(String, String)> {
        env::pairs(self)
    }

    /// Checks cross-field rules that types cannot express.
    ///
    /// # Errors
    /// [`ConfigError::Rule`] naming the first broken rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rule = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Rule(msg.to_owned()))
            }
        };
        rule(
            self.api.max_upload_bytes > 0,
            "api.max_upload_bytes must be > 0",
        )?;
        rule(
            self.api.upload_expiry_secs > 0 && self.api.upload_expiry_secs <= 7 * 24 * 3600,
            "api.upload_expiry_secs must be within 1 s ..= 7 days (SigV4 presign limit)",
        )?;
        rule(
            self.worker.concurrency > 0 && self.worker.renditions_concurrency > 0,
            "worker.concurrency and worker.renditions_concurrency must be > 0",
        )?;
        rule(
            self.redis.heartbeat_secs > 0 && self.redis.missed_heartbeats >= 2,
            "redis.heartbeat_secs must be > 0 and redis.missed_heartbeats >= 2",
        )?;
        rule(
            self.shares.redirect_url_secs > 0 && self.shares.redirect_url_secs <= 7 * 24 * 3600,
            "shares.redirect_url_secs must be within 1 s ..= 7 days (SigV4 presign limit)",
        )?;
        rule(
            self.retention.purge_batch > 0,
            "retention.purge_batch must be > 0",
        )?;
        rule(
            self.shares.max_expires_in_secs > 0
                && self.shares.max_expires_in_secs <= 10 * 365 * 24 * 3600,
            "shares.max_expires_in_secs must be within 1 s ..= 10 years",
        )?;
        rule(
            self.scheduling.max_waiting_per_owner > 0,
            "scheduling.max_waiting_per_owner must be > 0",
        )?;
        rule(
            self.worker.max_attempts > 0,
            "worker.max_attempts must be > 0",
        )?;
        rule(
            self.redis.orphan_timeout() > Duration::from_secs(self.worker.shutdown_timeout_secs),
            "the orphan timeout (redis.heartbeat_secs × redis.missed_heartbeats) must be longer than worker.shutdown_timeout_secs",
        )?;
        rule(
            !self.worker.renditions.is_empty(),
            "worker.renditions must name at least one rendition",
        )?;
        let mut names = std::collections::HashSet::new();
        for r in &self.worker.renditions {
            r.validate().map_err(ConfigError::Rule)?;
            rule(
                names.insert(r.name.as_str()),
                "worker.renditions names must be unique",
            )?;
        }
        rule(
            self.worker.retry_base_delay_ms > 0
                && self.worker.retry_base_delay_ms <= self.worker.retry_max_delay_ms,
            "worker.retry_base_delay_ms must be > 0 and <= worker.retry_max_delay_ms",
        )?;
        rule(
            self.auth.max_ttl_secs > 0 && self.auth.token_ttl_secs <= self.auth.max_ttl_secs,
            "auth.max_ttl_secs must be > 0 and auth.token_ttl_secs <= auth.max_ttl_secs",
        )?;
        rule(
            self.worker.job_timeout_secs > 0 && self.worker.memory_budget_bytes > 0,
            "worker.job_timeout_secs and worker.memory_budget_bytes must be > 0",
        )?;
        rule(
            self.api.max_body_bytes > 0 && self.api.max_replay_ids > 0,
            "api.max_body_bytes and api.max_replay_ids must be > 0",
        )?;
        Ok(())
    }
}

/// PostgreSQL settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/kiln` (`KILN__DATABASE__URL`).
    pub url: String,
    /// Pool size per process.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/kiln".into(),
            max_connections: 10,
        }
    }
}

/// Redis and apalis queue settings (see `docs/dependencies.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// Connection URL (`KILN__REDIS__URL`).
    pub url: String,
    /// apalis namespace of the ProcessUpload queue; every key starts with it. The
    /// RenderRenditions queue lives under it, at [`RedisSettings::renditions_queue`].
    pub queue: String,
    /// How often an idle worker polls for new jobs, in milliseconds.
    pub poll_interval_ms: u64,
    /// Worker heartbeat period, in seconds.
    pub heartbeat_secs: u64,
    /// Missed heartbeats before a worker's jobs count as orphans and are re-enqueued.
    pub missed_heartbeats: u32,
    /// Redis response timeout, in milliseconds (apalis-redis#76: the 500 ms default is fatal
    /// under load).
    pub response_timeout_ms: u64,
}

impl RedisSettings {
    /// apalis namespace of the RenderRenditions queue: `{queue}:renditions`. Derived rather
    /// than set, so whatever isolates or removes a deployment's (or a test's) ProcessUpload
    /// queue keys (`{queue}*`) covers it too.
    pub fn renditions_queue(&self) -> String {
        format!("{}:renditions", self.queue)
    }

    /// heartbeat × missed heartbeats: how long a silent worker keeps its jobs.
    pub fn orphan_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs * u64::from(self.missed_heartbeats))
    }

    /// How long a claim on a `processing` upload holds before another delivery may take it
    /// over: the orphan timeout less one heartbeat. apalis re-delivers an orphan at least one
    /// orphan timeout after the dead worker's last heartbeat, and that worker claimed the upload
    /// at most one heartbeat after it, so a re-delivered job always finds the lease expired.
    pub fn claim_lease(&self) -> Duration {
        self.orphan_timeout()
            .saturating_sub(Duration::from_secs(self.heartbeat_secs))
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            queue: "kiln:process_upload".into(),
            poll_interval_ms: 200,
            heartbeat_secs: 5,
            missed_heartbeats: 6,
            response_timeout_ms: 5_000,
        }
    }
}

/// S3 settings. Works with AWS and any S3-compatible server (Garage in development).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    /// Endpoint URL, e.g. `http://127.0.0.1:3900`; empty means AWS's regional endpoint.
    pub endpoint: String,
    /// Signing region; must equal the server's region (Garage: `s3_region`).
    pub region: String,
    /// Bucket holding temp objects, originals and derivatives.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    #[serde(serialize_with = "expose_secret")]
    pub secret_access_key: SecretString,
    /// Path-style addressing (`{endpoint}/{bucket}/{key}`); required by Garage and MinIO.
    pub force_path_style: bool,
    /// Prefix before every object key (e.g. `tenant-a/`), so deployments or tests can share a
    /// bucket. Empty by default.
    pub key_prefix: String,
    /// Lifetime of presigned GET URLs for derivatives, in seconds.
    pub download_url_expiry_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "us-east-1".into(),
            bucket: "kiln".into(),
            access_key_id: String::new(),
            secret_access_key: SecretString::from(String::new()),
            force_path_style: true,
            key_prefix: String::new(),
            download_url_expiry_secs: 300,
        }
    }
}

/// Sweeper settings. Every worker process runs the sweeper; a Redis lock lets one run at a time
/// across the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SweeperSettings {
    /// Run it at all.
    pub enabled: bool,
    /// Seconds between runs (fleet-wide).
    pub interval_secs: u64,
    /// `uploaded` rows older than this with no live job are re-enqueued, in seconds.
    pub uploaded_stale_secs: u64,
    /// `processing` rows older than this are re-enqueued even if their job looks live, in
    /// seconds (rows past the orphan timeout with no live job are re-enqueued sooner).
    pub processing_timeout_secs: u64,
    /// `pending` rows this long past `expires_at` become `expired`, in seconds.
    pub expiry_grace_secs: u64,
    /// Temp objects with no row are deleted once this old, in seconds.
    pub orphan_temp_ttl_secs: u64,
    /// Put a lifecycle rule on the bucket that expires `tmp/` after a day.
    pub lifecycle_rule: bool,
}

impl Default for SweeperSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 30,
            uploaded_stale_secs: 30,
            processing_timeout_secs: 900,
            expiry_grace_secs: 60,
            orphan_temp_ttl_secs: 24 * 3600,
            lifecycle_rule: true,
        }
    }
}

/// Log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `text` for development, `json` for production.
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,aws_config=warn,aws_smithy_runtime=warn,sqlx=warn".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rendition::Rendition;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn orphan_timeout_must_exceed_shutdown_timeout() {
        let mut s = Settings::default();
        s.redis.heartbeat_secs = 2;
        s.redis.missed_heartbeats = 3;
        s.worker.shutdown_timeout_secs = 6;
        assert!(matches!(s.validate(), Err(ConfigError::Rule(_))));
    }

    #[test]
    fn example_file_documents_valid_settings() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln.example.toml");
        let from_file: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file_exact(&path))
            .extract()
            .expect("kiln.example.toml parses");
        from_file.validate().unwrap();
        assert_eq!(from_file.worker.renditions, Rendition::defaults());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
    fn env_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "kiln.toml",
                "[api]\nlisten = \"127.0.0.1:9000\"\nmax_upload_bytes = 5\n",
            )?;
            jail.set_env("KILN__API__LISTEN", "127.0.0.1:9100");
            let s = Settings::load(Some(Path::new("kiln.toml"))).expect("load");
            assert_eq!(s.api.listen.port(), 9100);
            assert_eq!(s.api.max_upload_bytes, 5);
            Ok(())
        });
    }
}
