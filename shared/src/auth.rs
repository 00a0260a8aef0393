//! Bearer-token auth: JWTs (RFC 7519) whose `sub` is the owner id and whose space-separated
//! `scope` may contain `admin`, and the [`Principal`] every credential (JWT or API key,
//! `crate::api_keys`) resolves to, with its scopes.
//!
//! [`Verifier`] checks a token with the key `auth.*` configures: an HS256 secret (RFC 7518
//! §3.2), or public keys for EdDSA/Ed25519 (RFC 8037) or RS256 (RFC 7518 §3.3) from a PEM file
//! or a JWK Set (RFC 7517). Each key accepts only its own algorithm, so a token cannot choose
//! a weaker one (RFC 8725 §3.1). It requires `exp`, `iat` and `sub`, checks `iss` and `aud`
//! when configured, and refuses a token whose lifetime `exp − iat` is over
//! `auth.max_ttl_secs`. [`Signer`] mints HS256 tokens for `kiln token` under the same rules.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::api_keys::{MissingScope, Scope, Scopes};
use crate::config::{AuthSettings, KeyError};
use crate::domain::OwnerId;

/// How far `iat` may lie in the future (clock skew between the host application and Kiln).
const IAT_SKEW_SECS: u64 = 60;

/// `aud` as RFC 7519 §4.1.3 allows it: one string or an array.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

/// JWT claims Kiln reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Subject: the owner id.
    pub sub: String,
    /// Space-separated scopes (RFC 8693 §4.2); `admin` grants the admin routes.
    #[serde(default)]
    pub scope: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Issuer, checked against `auth.issuer` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, checked against `auth.audience` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// A verified principal: who is asking, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The owner: a JWT's `sub`, or the owner an API key was created for.
    pub owner: OwnerId,
    /// What the credential allows: an API key's own scopes; for a JWT, `upload` and `read`,
    /// plus `admin` when its `scope` claim contains `admin` ([`Scopes::for_jwt`]).
    pub scopes: Scopes,
    /// The API key's prefix when the credential is an API key; `None` for a JWT.
    pub key: Option<String>,
}

impl Principal {
    /// Whether the credential carries `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether the credential carries the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.has(Scope::Admin)
    }

    /// `Ok` when the credential carries `scope`.
    ///
    /// # Errors
    /// [`MissingScope`] (403 `forbidden`, naming the scope) when it does not.
    pub fn require(&self, scope: Scope) -> Result<(), MissingScope> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(MissingScope(scope))
        }
    }
}

/// Why a token was refused, or could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad signature, malformed, wrong algorithm, wrong `iss`/`aud`, or expired.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// `sub` is not a valid owner id.
    #[error("invalid token subject: {0}")]
    Subject(#[from] crate::domain::owner_id::InvalidOwnerId),
    /// `exp − iat` is over `auth.max_ttl_secs`, or `iat` is in the future.
    #[error("token lifetime {ttl} s is over the {max} s limit, or it was issued in the future")]
    Lifetime {
        /// The token's `exp − iat`, in seconds.
        ttl: u64,
        /// `auth.max_ttl_secs`.
        max: u64,
    },
    /// The JWT header names no `kid` the JWK Set has.
    #[error("no key with this token's kid")]
    UnknownKey,
}

/// Why `auth.*` gives no usable verification or signing key. Messages name the setting.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The secret or the key files are missing, ambiguous, short or guessable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key file cannot be read or parsed.
    #[error("{setting} ({path}): {reason}")]
    File {
        /// The setting, e.g. `auth.public_key_file`.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `kiln token` cannot mint: tokens are verified with a public key.
    #[error(
        "auth.public_key_file or auth.jwks_file is set: the host application signs tokens with its private key, so Kiln cannot mint them"
    )]
    PublicKeyOnly,
    /// The requested lifetime is zero or over `auth.max_ttl_secs`.
    #[error("a token lifetime must be 1 s ..= auth.max_ttl_secs ({max} s); {ttl} s was asked")]
    Lifetime {
        /// The lifetime asked, in seconds.
        ttl: u64,
        /// `auth.max_ttl_secs`.
        max: u64,
    },
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One verification key and the one algorithm it accepts.
#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

enum Keys {
    /// One key for every token (HS256 secret or a PEM public key).
    Single(Key),
    /// A JWK Set: the token's `kid` picks the key.
    Set(HashMap<String, Key>),
}

/// Verifies bearer tokens under `auth.*`; built once at API start.
pub struct Verifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    max_ttl_secs: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .finish_non_exhaustive()
    }
}

fn file_error(setting: &'static str, path: &std::path::Path, reason: String) -> AuthConfigError {
    AuthConfigError::File {
        setting,
        path: path.display().to_string(),
        reason,
    }
}

/// A PEM public key: Ed25519 (`EdDSA`) or RSA (`RS256`), told apart by its ASN.1 type.
fn pem_key(path: &std::path::Path) -> Result<Key, AuthConfigError> {
    let setting = "auth.public_key_file";
    let pem = std::fs::read(path).map_err(|e| file_error(setting, path, e.to_string()))?;
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok(Key {
            key,
            algorithm: Algorithm::EdDSA,
        });
    }
    DecodingKey::from_rsa_pem(&pem)
        .map(|key| Key {
            key,
            algorithm: Algorithm::RS256,
        })
        .map_err(|_| {
            file_error(
                setting,
                path,
                "not a PEM Ed25519 or RSA public key (-----BEGIN PUBLIC KEY-----)".into(),
            )
        })
}

/// A JWK Set's `OKP`/`Ed25519` and `RSA` keys by `kid`; symmetric or other keys are refused.
fn jwks_keys(path: &std::path::Path) -> Result<HashMap<String, Key>, AuthConfigError> {
    let setting = "auth.jwks_file";
    let text = std::fs::read(path).map_err(|e| file_error(setting, path, e.to_string()))?;
    let set: JwkSet =
        serde_json::from_slice(&text).map_err(|e| file_error(setting, path, e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| file_error(setting, path, "every key needs a \"kid\"".into()))?;
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            _ => {
                return Err(file_error(
                    setting,
                    path,
                    format!("key {kid}: only OKP (Ed25519) and RSA public keys are accepted"),
                ));
            }
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| file_error(setting, path, format!("key {kid}: {e}")))?;
        keys.insert(kid, Key { key, algorithm });
    }
    if keys.is_empty() {
        return Err(file_error(setting, path, "the set has no keys".into()));
    }
    Ok(keys)
}

impl Verifier {
    /// The verifier `auth` configures.
    ///
    /// # Errors
    /// [`AuthConfigError::Key`] when no key, two keys, or a short or published secret is
    /// configured ([`AuthSettings::check_key`]); [`AuthConfigError::File`] when a key file
    /// cannot be read or holds no usable public key.
    pub fn from_settings(auth: &AuthSettings) -> Result<Self, AuthConfigError> {
        auth.check_key()?;
        let keys = if let Some(path) = &auth.public_key_file {
            Keys::Single(pem_key(path)?)
        } else if let Some(path) = &auth.jwks_file {
            Keys::Set(jwks_keys(path)?)
        } else {
            Keys::Single(Key {
                key: DecodingKey::from_secret(auth.jwt_secret.expose_secret().as_bytes()),
                algorithm: Algorithm::HS256,
            })
        };
        Ok(Self {
            keys,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            max_ttl_secs: auth.max_ttl_secs,
        })
    }

    /// Verifies `token` (signature with the key's own algorithm, `exp` with no leeway,
    /// `iss`/`aud` when configured, the lifetime) and returns its principal.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for a bad, malformed, expired or misaddressed token;
    /// [`AuthError::UnknownKey`] for a `kid` the JWK Set lacks; [`AuthError::Lifetime`] for a
    /// lifetime over `auth.max_ttl_secs`; [`AuthError::Subject`] when `sub` is not a valid
    /// [`OwnerId`].
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::Set(set) => {
                let header = jsonwebtoken::decode_header(token)?;
                header
                    .kid
                    .as_deref()
                    .and_then(|kid| set.get(kid))
                    .ok_or(AuthError::UnknownKey)?
            }
        };
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)?.claims;
        let ttl = claims.exp.saturating_sub(claims.iat);
        if ttl > self.max_ttl_secs || claims.iat > now_secs() + IAT_SKEW_SECS {
            return Err(AuthError::Lifetime {
                ttl,
                max: self.max_ttl_secs,
            });
        }
        Ok(Principal {
            owner: OwnerId::parse(&claims.sub)?,
            scopes: Scopes::for_jwt(&claims.scope),
            key: None,
        })
    }
}

/// Mints HS256 tokens with `auth.jwt_secret` (for `kiln token` and standalone's `kiln
/// upload`), writing `iss` and `aud` when configured.
pub struct Signer {
    secret: SecretString,
    issuer: Option<String>,
    audience: Option<String>,
    max_ttl_secs: u64,
}

impl Signer {
    /// The signer `auth` configures.
    ///
    /// # Errors
    /// [`AuthConfigError::PublicKeyOnly`] when tokens are verified with a public key;
    /// [`AuthConfigError::Key`] when the secret is missing, short or published.
    pub fn from_settings(auth: &AuthSettings) -> Result<Self, AuthConfigError> {
        if auth.uses_public_key() {
            return Err(AuthConfigError::PublicKeyOnly);
        }
        auth.check_key()?;
        Ok(Self {
            secret: auth.jwt_secret.clone(),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            max_ttl_secs: auth.max_ttl_secs,
        })
    }

    /// A token for `owner`, valid for `ttl` (whole seconds), with scope `admin` when `admin`.
    ///
    /// # Errors
    /// [`AuthConfigError::Lifetime`] when `ttl` is under 1 s or over `auth.max_ttl_secs`.
    pub fn mint(
        &self,
        owner: &OwnerId,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, AuthConfigError> {
        let secs = ttl.as_secs();
        if secs == 0 || secs > self.max_ttl_secs {
            return Err(AuthConfigError::Lifetime {
                ttl: secs,
                max: self.max_ttl_secs,
            });
        }
        let iat = now_secs();
        let claims = Claims {
            sub: owner.to_string(),
            scope: if admin { "admin".into() } else { String::new() },
            exp: iat + secs,
            iat,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.secret.expose_secret().as_bytes()),
        )
        .map_err(|e| AuthConfigError::File {
            setting: "auth.jwt_secret",
            path: String::new(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings {
            jwt_secret: SecretString::from(secret.to_owned()),
            ..AuthSettings::default()
        }
    }

    const SECRET: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn round_trip_and_tamper() {
        let auth = settings(SECRET);
        let owner = OwnerId::parse("alice").unwrap();
        let token = Signer::from_settings(&auth)
            .unwrap()
            .mint(&owner, true, Duration::from_secs(60))
            .unwrap();
        let p = Verifier::from_settings(&auth)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(
            p,
            Principal {
                owner,
                scopes: Scopes::ALL,
                key: None
            }
        );
        assert!(p.is_admin());
        let other = settings(&SECRET.replace('9', "8"));
        assert!(
            Verifier::from_settings(&other)
                .unwrap()
                .verify(&token)
                .is_err()
        );
    }

    #[test]
    fn lifetime_is_capped_on_mint() {
        let auth = settings(SECRET);
        let signer = Signer::from_settings(&auth).unwrap();
        let owner = OwnerId::parse("alice").unwrap();
        assert!(matches!(
            signer.mint(&owner, false, Duration::from_secs(u64::MAX)),
            Err(AuthConfigError::Lifetime { .. })
        ));
        assert!(signer.mint(&owner, false, Duration::ZERO).is_err());
    }
}
