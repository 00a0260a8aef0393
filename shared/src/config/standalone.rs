//! The standalone data directory (`kiln serve --data-dir`, default `./kiln-data`): where the
//! embedded upload store, queue, objects and secrets live, and the settings that point every
//! role at them ([`DataDir::apply`]).
//!
//! Layout: `kiln.db` (SQLite upload store, `migrations/sqlite`), `kiln-queue.db` (apalis-sqlite
//! queue), `objects/` (the embedded S3 endpoint's root; one folder per bucket), `secrets.toml`
//! (generated on first start, mode 0600) and `endpoints.toml` (the addresses the running
//! `kiln serve` bound, for `kiln token`, `kiln upload` and `kiln jobs` run beside it).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::Settings;

/// The bucket the embedded S3 endpoint serves.
pub const BUCKET: &str = "kiln";

/// Errors from reading or creating the data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A file or folder could not be created, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `secrets.toml` or `endpoints.toml` does not parse, or a secret is too short.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `secrets.toml` is readable by other users (its mode allows group or other access).
    #[error("{path}: secrets must be private (mode 0600), found {mode:o}")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The secrets a standalone instance generates for itself on first start: the HS256 token key
/// (32 random bytes, hex) and the embedded S3 endpoint's access key pair (SigV4 credentials).
#[derive(Clone, Deserialize)]
pub struct Secrets {
    /// HS256 signing key for API tokens (`auth.jwt_secret`), 64 hex digits.
    pub jwt_secret: SecretString,
    /// S3 access key id (`GK` + 24 hex digits).
    pub s3_access_key_id: String,
    /// S3 secret access key, 64 hex digits.
    pub s3_secret_access_key: SecretString,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("s3_access_key_id", &self.s3_access_key_id)
            .finish_non_exhaustive()
    }
}

/// The addresses a running `kiln serve` bound, as written to `endpoints.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Endpoints {
    /// The API's base URL, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// The embedded S3 endpoint's URL, e.g. `http://127.0.0.1:9000`.
    pub s3: String,
}

/// A standalone data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `kiln.db`: the SQLite upload store.
    pub fn database(&self) -> PathBuf {
        self.root.join("kiln.db")
    }

    /// `objects/`: the embedded S3 endpoint's root (bucket [`BUCKET`] is `objects/kiln/`).
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// `secrets.toml`.
    pub fn secrets_file(&self) -> PathBuf {
        self.root.join("secrets.toml")
    }

    /// `endpoints.toml`.
    pub fn endpoints_file(&self) -> PathBuf {
        self.root.join("endpoints.toml")
    }

    /// Creates the directory (mode 0700) and `objects/kiln/` if missing.
    ///
    /// # Errors
    /// [`DataDirError::Io`] when a folder cannot be created.
    pub fn create(&self) -> Result<(), DataDirError> {
        let bucket = self.objects().join(BUCKET);
        fs::create_dir_all(&bucket).map_err(io(&bucket))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(io(&self.root))
    }

    /// Reads `secrets.toml`, generating it first (32 random bytes per secret from the OS, mode
    /// 0600, written to a temporary file and renamed into place) when it does not exist.
    ///
    /// # Errors
    /// [`DataDirError`] when the file cannot be written or read, does not parse, holds a key
    /// shorter than 32 bytes, or is readable by group or others.
    pub fn secrets_or_create(&self) -> Result<Secrets, DataDirError> {
        let path = self.secrets_file();
        if !path.exists() {
            self.create()?;
            let text = format!(
                "# Generated by the first `kiln serve` in this folder. Keep it private.\n\
                 jwt_secret = \"{}\"\ns3_access_key_id = \"GK{}\"\ns3_secret_access_key = \"{}\"\n",
                random_hex(32),
                random_hex(12),
                random_hex(32)
            );
            let tmp = self
                .root
                .join(format!(".secrets.{}.tmp", std::process::id()));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io(&tmp))?;
            fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        self.secrets()
    }

    /// Reads `secrets.toml` (see [`DataDir::secrets_or_create`]).
    ///
    /// # Errors
    /// As [`DataDir::secrets_or_create`], and [`DataDirError::Io`] when the file is missing.
    pub fn secrets(&self) -> Result<Secrets, DataDirError> {
        let path = self.secrets_file();
        let mode = fs::metadata(&path).map_err(io(&path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DataDirError::Exposed { path, mode });
        }
        let secrets: Secrets = read_toml(&path)?;
        if secrets.jwt_secret.expose_secret().len() < 64
            || secrets.s3_secret_access_key.expose_secret().len() < 64
        {
            return Err(DataDirError::Invalid {
                path,
                message: "every secret must be at least 32 bytes (64 hex digits)".into(),
            });
        }
        Ok(secrets)
    }

    /// Records the addresses `kiln serve` bound in `endpoints.toml` (replaced atomically).
    ///
    /// # Errors
    /// [`DataDirError::Io`] when the file cannot be written.
    pub fn write_endpoints(&self, endpoints: &Endpoints) -> Result<(), DataDirError> {
        let path = self.endpoints_file();
        let tmp = self
            .root
            .join(format!(".endpoints.{}.tmp", std::process::id()));
        let text = format!("api = {:?}\ns3 = {:?}\n", endpoints.api, endpoints.s3);
        fs::write(&tmp, text).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Reads `endpoints.toml`, which exists once a `kiln serve` has started here.
    ///
    /// # Errors
    /// [`DataDirError`] when it is missing or does not parse.
    pub fn endpoints(&self) -> Result<Endpoints, DataDirError> {
        read_toml(&self.endpoints_file())
    }

    /// `settings` pointed at this data directory: the SQLite upload store (and so the
    /// apalis-sqlite queue beside it), the embedded S3 endpoint at `s3_endpoint` with the
    /// generated credentials and bucket [`BUCKET`], the generated token key, and no bucket
    /// lifecycle rule (the endpoint has none). Everything else (limits, renditions, listen
    /// addresses) is kept.
    pub fn apply(&self, mut settings: Settings, secrets: &Secrets, s3_endpoint: &str) -> Settings {
        settings.database.url = format!("sqlite://{}", self.database().display());
        settings.storage.endpoint = s3_endpoint.to_owned();
        settings.storage.bucket = BUCKET.to_owned();
        settings.storage.region = "us-east-1".to_owned();
        settings.storage.force_path_style = true;
        settings.storage.access_key_id = secrets.s3_access_key_id.clone();
        settings.storage.secret_access_key = secrets.s3_secret_access_key.clone();
        settings.auth.jwt_secret = secrets.jwt_secret.clone();
        // The embedded endpoint has no bucket lifecycle rules (501); the sweeper deletes
        // expired temporary objects itself.
        settings.sweeper.lifecycle_rule = false;
        settings
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataDirError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    use figment::providers::Format as _;
    figment::Figment::from(figment::providers::Toml::string(&text))
        .extract()
        .map_err(|e| DataDirError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// `n` random bytes from the OS (getrandom), as lowercase hex.
/// `n` random bytes from the OS (`getrandom`), as `2n` lowercase hex digits.
///
/// # Panics
/// If the OS has no random source (Linux `getrandom(2)` always has one).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_generated_once_private_and_long() {
        let dir = std::env::temp_dir().join(format!("kiln-datadir-{}", ulid::Ulid::generate()));
        let data = DataDir::new(&dir);
        let first = data.secrets_or_create().unwrap();
        let again = data.secrets_or_create().unwrap();
        assert_eq!(
            first.jwt_secret.expose_secret(),
            again.jwt_secret.expose_secret()
        );
        assert_eq!(first.jwt_secret.expose_secret().len(), 64);
        assert!(first.s3_access_key_id.starts_with("GK"));
        let mode = fs::metadata(data.secrets_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::set_permissions(data.secrets_file(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(data.secrets(), Err(DataDirError::Exposed { .. })));
        fs::remove_dir_all(dir).unwrap();
    }
}
