//! API keys: long-lived bearer credentials beside JWTs, each bound to one owner and a set of
//! [`Scope`]s, created and revoked by operators (`kiln keys`, `/v1/admin/keys`).
//!
//! **Format.** `kiln_{prefix}_{secret}`: `prefix` is 12 lowercase hex digits (48 random bits),
//! the key's public id in lists, logs and `DELETE /v1/admin/keys/{prefix}`; `secret` is 32
//! bytes from the OS random source as unpadded base64url (43 characters, 256 bits). The whole
//! key is shown once, when it is created.
//!
//! **Storage.** The `api_keys` row keeps the prefix, the lowercase hex SHA-256 of the secret's
//! text, the owner, the scopes ([`Scopes`]' text form), an optional name and the times. A
//! 256-bit random secret cannot be guessed or brute-forced from its hash, so a fast unsalted
//! hash suffices (a password hash such as Argon2 is for low-entropy secrets); the hash is
//! compared in constant time ([`subtle`]).
//!
//! **Verification** ([`verify`]) reads the row on every request, so a revocation or an expiry
//! takes effect on the next request (no cache). `last_used_at` is written at most once a
//! minute per key ([`TOUCH_INTERVAL`]), by a conditional UPDATE, so use does not cost a write
//! per request.
//!
//! The table's statements are in `api_keys/store.rs` (both engines, through `crate::db`'s
//! `with_pool!`).

mod scope;
mod store;

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

pub use self::scope::{MissingScope, Scope, ScopeError, Scopes};
pub use self::store::{create, list, revoke, verify};
use crate::db::DbError;
use crate::domain::{Classify, ErrorCode, OwnerId};
pub use crate::wire::{CreatedKey, KeyView};

/// What every API key starts with (a JWT starts with `eyJ`, so the two never collide).
pub const KEY_TAG: &str = "kiln_";

/// Length of a key's prefix, in lowercase hex digits (6 random bytes).
pub const PREFIX_CHARS: usize = 12;

/// Random bytes in a key's secret.
pub const SECRET_BYTES: usize = 32;

/// Length of a key's secret as written: [`SECRET_BYTES`] in unpadded base64url.
pub const SECRET_CHARS: usize = 43;

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Longest key lifetime: 10 years (315,360,000 s).
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// `last_used_at` is rewritten only when it is older than this.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a key was refused, or could not be created, listed or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// 401: the bearer starts with `kiln_` but is not `kiln_{12 hex}_{43 base64url}`.
    #[error("malformed API key: expected kiln_<12 hex digits>_<43-character secret>")]
    Malformed,
    /// 401: no key has this prefix, or the secret is not its secret (one message for both).
    #[error("invalid API key")]
    Unknown,
    /// 401: the key was revoked.
    #[error("API key {prefix} was revoked at {at}")]
    Revoked {
        /// The key's prefix.
        prefix: String,
        /// When it was revoked.
        at: DateTime<Utc>,
    },
    /// 401: the key's lifetime is over.
    #[error("API key {prefix} expired at {at}")]
    Expired {
        /// The key's prefix.
        prefix: String,
        /// When it expired.
        at: DateTime<Utc>,
    },
    /// 400: a field of a new key breaks its rule (the message names the field).
    #[error("{0}")]
    Invalid(String),
    /// 404: no key has this prefix (revocation).
    #[error("no API key has the prefix {0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for KeyError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed | Self::Unknown | Self::Revoked { .. } | Self::Expired { .. } => {
                ErrorCode::Unauthorized
            }
            Self::Invalid(_) => ErrorCode::InvalidRequest,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Db(e) => e.code(),
        }
    }
}

/// A checked request for a new key (build it with [`NewKey::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    owner: OwnerId,
    scopes: Scopes,
    name: Option<String>,
    lifetime: Option<Duration>,
}

impl NewKey {
    /// A key for `owner` with `scopes`, an optional `name` and an optional `lifetime` (none:
    /// it never expires).
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when `scopes` is empty, `lifetime` is under 1 s or over
    /// [`MAX_LIFETIME`], or `name` is empty, over [`MAX_NAME_CHARS`] characters, or holds a
    /// control or bidirectional formatting character
    /// ([`crate::wire::forbidden_in_filename`]).
    pub fn new(
        owner: OwnerId,
        scopes: Scopes,
        name: Option<String>,
        lifetime: Option<Duration>,
    ) -> Result<Self, KeyError> {
        if scopes.is_empty() {
            return Err(KeyError::Invalid(
                "scopes: name at least one of upload, read, admin".into(),
            ));
        }
        if let Some(t) = lifetime
            && (t < Duration::from_secs(1) || t > MAX_LIFETIME)
        {
            return Err(KeyError::Invalid(format!(
                "expires_in_secs must be 1-{} (10 years); {} s was asked",
                MAX_LIFETIME.as_secs(),
                t.as_secs()
            )));
        }
        if let Some(name) = &name {
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_NAME_CHARS {
                return Err(KeyError::Invalid(format!(
                    "name must be 1-{MAX_NAME_CHARS} characters; it has {chars}"
                )));
            }
            if let Some(c) = name
                .chars()
                .find(|c| crate::wire::forbidden_in_filename(*c))
            {
                return Err(KeyError::Invalid(format!(
                    "name holds U+{:04X}, a control or bidirectional formatting character",
                    u32::from(c)
                )));
            }
        }
        Ok(Self {
            owner,
            scopes,
            name,
            lifetime,
        })
    }

    /// The scopes the key will carry.
    pub fn scopes(&self) -> Scopes {
        self.scopes
    }
}

/// A key as presented in `Authorization: Bearer kiln_…`, split into its parts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    /// The public prefix.
    pub prefix: &'a str,
    secret: &'a str,
}

impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Whether a bearer token is meant as an API key (starts with [`KEY_TAG`]) rather than a JWT.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(KEY_TAG)
}

/// Whether `s` has the shape of a prefix: [`PREFIX_CHARS`] lowercase hex digits.
pub fn valid_prefix(s: &str) -> bool {
    s.len() == PREFIX_CHARS && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits `kiln_{prefix}_{secret}`; `None` unless both parts have their exact shape.
pub fn parse(token: &str) -> Option<PresentedKey<'_>> {
    let (prefix, secret) = token.strip_prefix(KEY_TAG)?.split_once('_')?;
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (valid_prefix(prefix) && secret.len() == SECRET_CHARS && secret.bytes().all(base64url))
        .then_some(PresentedKey { prefix, secret })
}

/// The stored form of a secret: lowercase hex SHA-256 (FIPS 180-4) of its text.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored` (hex), compared in constant time.
fn secret_matches(secret: &str, stored: &str) -> bool {
    let Ok(stored) = hex::decode(stored) else {
        return false;
    };
    bool::from(Sha256::digest(secret.as_bytes()).as_slice().ct_eq(&stored))
}

/// A fresh prefix and secret from the OS random source.
fn generate() -> (String, String) {
    let mut prefix = [0u8; PREFIX_CHARS / 2];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut prefix).expect("the OS random source is available");
    getrandom::fill(&mut secret).expect("the OS random source is available");
    (
        hex::encode(prefix),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash() {
        let (prefix, secret) = generate();
        let token = format!("{KEY_TAG}{prefix}_{secret}");
        assert!(is_api_key(&token));
        let key = parse(&token).unwrap();
        assert_eq!(key.prefix, prefix);
        assert_eq!(key.secret, secret);
        let stored = hash_secret(&secret);
        assert_eq!(stored.len(), 64);
        assert!(secret_matches(&secret, &stored));
        let mut wrong = secret.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!secret_matches(&wrong, &stored));
        assert!(!secret_matches(&secret, "not hex"));
        assert!(!format!("{key:?}").contains(&secret));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let secret = "a".repeat(SECRET_CHARS);
        for bad in [
            format!("kiln_0123456789a_{secret}"),
            format!("kiln_0123456789AB_{secret}"),
            format!("kiln_0123456789ab_{secret}a"),
            format!("kiln_0123456789ab_{}", "a=".repeat(SECRET_CHARS / 2 + 1)),
            format!("kiln-0123456789ab_{secret}"),
            "kiln_".into(),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
        assert!(parse(&format!("kiln_0123456789ab_{secret}")).is_some());
        // The secret's alphabet includes `_`: only the first one separates.
        assert!(parse(&format!("kiln_0123456789ab__{}", &secret[1..])).is_some());
    }

    #[test]
    fn new_key_rules() {
        let owner = OwnerId::parse("alice").unwrap();
        let ok = |name: Option<&str>, t: Option<u64>| {
            NewKey::new(
                owner.clone(),
                Scopes::USER,
                name.map(str::to_owned),
                t.map(Duration::from_secs),
            )
            .is_ok()
        };
        assert!(ok(Some("ci"), Some(1)));
        assert!(ok(None, Some(MAX_LIFETIME.as_secs())));
        assert!(!ok(None, Some(0)));
        assert!(!ok(None, Some(MAX_LIFETIME.as_secs() + 1)));
        assert!(!ok(Some(""), None));
        assert!(!ok(Some(&"x".repeat(MAX_NAME_CHARS + 1)), None));
        assert!(!ok(Some("a\nb"), None));
        assert!(NewKey::new(owner, Scopes::NONE, None, None).is_err());
    }
}
