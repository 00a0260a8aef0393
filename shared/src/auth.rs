//! Bearer-token auth: HS256 JWTs (RFC 7519) whose `sub` is the owner id and whose
//! space-separated `scope` may contain `admin`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::OwnerId;

/// JWT claims Kiln reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Subject: the owner id.
    pub sub: String,
    /// Space-separated scopes (RFC 8693 style); `admin` grants the admin routes.
    #[serde(default)]
    pub scope: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

/// A verified principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Owner id from `sub`.
    pub owner: OwnerId,
    /// Whether `scope` contains `admin`.
    pub admin: bool,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad signature, malformed, wrong algorithm or expired.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// `sub` is not a valid owner id.
    #[error("invalid token subject: {0}")]
    Subject(#[from] crate::domain::owner_id::InvalidOwnerId),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints an HS256 token for `owner`, valid for `ttl`, with scope `admin` when `admin`.
///
/// # Errors
/// [`AuthError::Invalid`] if encoding fails (it does not for HS256 with any secret).
pub fn mint(
    secret: &SecretString,
    owner: &OwnerId,
    admin: bool,
    ttl: Duration,
) -> Result<String, AuthError> {
    let iat = now_secs();
    let claims = Claims {
        sub: owner.to_string(),
        scope: if admin { "admin".into() } else { String::new() },
        exp: iat + ttl.as_secs(),
        iat,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}

/// Verifies an HS256 token (signature, `exp` with no leeway) and returns its principal.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad, malformed or expired token; [`AuthError::Subject`] when
/// `sub` is not a valid [`OwnerId`].
pub fn verify(secret: &SecretString, token: &str) -> Result<Principal, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.expose_secret().as_bytes()),
        &validation,
    )?;
    Ok(Principal {
        owner: OwnerId::parse(&data.claims.sub)?,
        admin: data.claims.scope.split_whitespace().any(|s| s == "admin"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let secret = SecretString::from("s3cret".to_owned());
        let owner = OwnerId::parse("alice").unwrap();
        let token = mint(&secret, &owner, true, Duration::from_secs(60)).unwrap();
        let p = verify(&secret, &token).unwrap();
        assert_eq!(p, Principal { owner, admin: true });
        let other = SecretString::from("other".to_owned());
        assert!(verify(&other, &token).is_err());
    }
}
