//! `[auth]`: how the API verifies bearer tokens and how `kiln token` mints them.
//!
//! Two modes. **Shared secret** (HS256, RFC 7518 §3.2): `jwt_secret` both signs and verifies;
//! it must be at least 32 bytes and not a known or trivially guessable string. **Public key**
//! (EdDSA/Ed25519, RFC 8037, or RS256, RFC 7518 §3.3): `public_key_file` (PEM) or `jwks_file`
//! (RFC 7517 JWK Set); the host application signs and Kiln only verifies, so `kiln token`
//! cannot mint. `issuer`, `audience` and `max_ttl_secs` apply in both modes.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Smallest accepted HS256 secret, in bytes (the HMAC-SHA256 output size; RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Signing keys that were ever published (earlier versions' built-in default). A token signed
/// with one of them must never verify.
const PUBLISHED_SECRETS: &[&str] = &["dev-secret-change-me"];

/// Token settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HMAC secret for HS256 tokens (`KILN__AUTH__JWT_SECRET`): at least 32 bytes, e.g.
    /// `openssl rand -hex 32`. No default: `kiln api` refuses to start without it unless a
    /// public key is configured. Workers never need it.
    #[serde(serialize_with = "super::expose_secret")]
    pub jwt_secret: SecretString,
    /// PEM file with the public key that verifies tokens (`-----BEGIN PUBLIC KEY-----`, an
    /// Ed25519 key for `EdDSA` or an RSA key for `RS256`). Replaces `jwt_secret`.
    pub public_key_file: Option<PathBuf>,
    /// JWK Set file (RFC 7517) with `OKP`/`Ed25519` or `RSA` keys; a token's `kid` picks the
    /// key. Replaces `jwt_secret`.
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry exactly this `iss` (RFC 7519 §4.1.1).
    pub issuer: Option<String>,
    /// When set, tokens must list this in `aud` (RFC 7519 §4.1.3); `kiln token` writes it.
    pub audience: Option<String>,
    /// Longest token lifetime, `exp − iat`, in seconds: enforced when minting and verifying.
    pub max_ttl_secs: u64,
    /// Lifetime of tokens minted by `kiln token` without `--ttl`, in seconds.
    pub token_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from(String::new()),
            public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            max_ttl_secs: 24 * 3600,
            token_ttl_secs: 3600,
        }
    }
}

/// Why the configured signing key is refused. Each message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither a secret nor a public key is configured.
    #[error(
        "auth.jwt_secret (KILN__AUTH__JWT_SECRET) is not set: give it at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`), or set auth.public_key_file or auth.jwks_file"
    )]
    Missing,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "auth.jwt_secret (KILN__AUTH__JWT_SECRET) is {0} bytes; it must be at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
    )]
    Short(usize),
    /// The secret is a published default or has too few distinct bytes to be random.
    #[error(
        "auth.jwt_secret (KILN__AUTH__JWT_SECRET) is a published or guessable value; generate a random one (e.g. `openssl rand -hex 32`)"
    )]
    Guessable,
    /// Both a public key and a secret, or both key files, are set.
    #[error("set only one of auth.jwt_secret, auth.public_key_file and auth.jwks_file")]
    Ambiguous,
}

impl AuthSettings {
    /// Whether tokens are verified with a public key (so Kiln cannot mint them).
    pub fn uses_public_key(&self) -> bool {
        self.public_key_file.is_some() || self.jwks_file.is_some()
    }

    /// Checks that exactly one verification key is configured and, for HS256, that the secret
    /// is at least [`MIN_SECRET_BYTES`] long, is no published default and has at least 10
    /// distinct byte values (a cheap guard against `aaaa…` or `1234…` padding; hex of 32
    /// random bytes has about 16).
    ///
    /// # Errors
    /// The [`KeyError`] naming the setting to fix.
    pub fn check_key(&self) -> Result<(), KeyError> {
        let secret = self.jwt_secret.expose_secret();
        let files =
            usize::from(self.public_key_file.is_some()) + usize::from(self.jwks_file.is_some());
        if files > 1 || (files == 1 && !secret.is_empty()) {
            return Err(KeyError::Ambiguous);
        }
        if files == 1 {
            return Ok(());
        }
        check_secret(secret)
    }
}

/// The HS256 part of [`AuthSettings::check_key`].
///
/// # Errors
/// [`KeyError::Missing`], [`KeyError::Short`] or [`KeyError::Guessable`].
pub fn check_secret(secret: &str) -> Result<(), KeyError> {
    if secret.is_empty() {
        return Err(KeyError::Missing);
    }
    if PUBLISHED_SECRETS.contains(&secret) {
        return Err(KeyError::Guessable);
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::Short(secret.len()));
    }
    let distinct = secret
        .bytes()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < 10 {
        return Err(KeyError::Guessable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked() {
        assert_eq!(check_secret(""), Err(KeyError::Missing));
        assert_eq!(
            check_secret("dev-secret-change-me"),
            Err(KeyError::Guessable)
        );
        assert_eq!(check_secret("0123456789abcdef"), Err(KeyError::Short(16)));
        assert_eq!(check_secret(&"ab".repeat(20)), Err(KeyError::Guessable));
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(check_secret(hex), Ok(()));
    }

    #[test]
    fn one_key_only() {
        let mut a = AuthSettings::default();
        assert_eq!(a.check_key(), Err(KeyError::Missing));
        a.jwks_file = Some("keys.json".into());
        assert_eq!(a.check_key(), Ok(()));
        a.public_key_file = Some("key.pem".into());
        assert_eq!(a.check_key(), Err(KeyError::Ambiguous));
    }
}
