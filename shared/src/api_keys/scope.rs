//! Scopes: what a credential may do. Every route needs one: `upload` (authorize, complete,
//! delete and restore uploads), `read` (read and list them, download originals, manage share
//! links) or `admin` (every `/v1/admin/…` route). An API key
//! carries the set it was created with; a JWT without `admin` in its `scope` claim gets
//! `upload` and `read`, one with `admin` gets all three ([`Scopes::for_jwt`]).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Classify, ErrorCode};

/// One permission a route can require.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Authorize uploads (`POST /v1/uploads`) and complete them (`POST /v1/uploads/{id}/complete`).
    Upload,
    /// Read one upload (`GET /v1/uploads/{id}`) and list them (`GET /v1/uploads`).
    Read,
    /// Every `/v1/admin/…` route: dead jobs, replay, API keys.
    Admin,
}

impl Scope {
    /// Every scope, in canonical order.
    pub const ALL: [Scope; 3] = [Scope::Upload, Scope::Read, Scope::Admin];

    /// The wire form: `upload`, `read` or `admin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Upload => 1,
            Self::Read => 2,
            Self::Admin => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a [`Scope`] or a [`Scopes`] list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A word that names no scope.
    #[error("unknown scope {0:?}: the scopes are upload, read and admin")]
    Unknown(String),
    /// The list names no scope at all.
    #[error("name at least one scope (upload, read, admin)")]
    Empty,
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, ScopeError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ScopeError::Unknown(s.to_owned()))
    }
}

/// A set of [`Scope`]s (a small bit set; `Copy`).
///
/// Its text form ([`fmt::Display`], [`FromStr`], the `api_keys.scopes` column and the
/// `--scope` flag of `kiln keys create`) is the scopes in canonical order joined by commas,
/// e.g. `upload,read`; parsing also accepts whitespace between them (the JWT `scope` claim's
/// separator, RFC 8693 §4.2) and repeated names. On the wire it is a JSON array of distinct
/// scopes with at least one element; an empty array or a repeated scope is refused, as the
/// schema's `minItems` and `uniqueItems` say.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope.
    pub const NONE: Scopes = Scopes(0);
    /// `upload`, `read` and `admin`.
    pub const ALL: Scopes = Scopes(1 | 2 | 4);
    /// `upload` and `read`: what a JWT without the `admin` claim grants.
    pub const USER: Scopes = Scopes(1 | 2);

    /// The scopes a JWT grants: [`Scopes::ALL`] when its space-separated `scope` claim contains
    /// `admin`, else [`Scopes::USER`] (other words in the claim are ignored).
    pub fn for_jwt(scope_claim: &str) -> Self {
        if scope_claim.split_whitespace().any(|s| s == "admin") {
            Self::ALL
        } else {
            Self::USER
        }
    }

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The set with `scope` added.
    #[must_use]
    pub const fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in canonical order (`upload`, `read`, `admin`).
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl FromStr for Scopes {
    type Err = ScopeError;

    /// Parses scope names separated by commas or whitespace; repeats are merged.
    ///
    /// # Errors
    /// [`ScopeError::Unknown`] for a word that is not a scope; [`ScopeError::Empty`] when no
    /// scope is named.
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        let scopes = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(Scope::from_str)
            .collect::<Result<Scopes, _>>()?;
        if scopes.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(scopes)
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for s in self.iter() {
            seq.serialize_element(&s)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ScopesVisitor)
    }
}

struct ScopesVisitor;

impl<'de> Visitor<'de> for ScopesVisitor {
    type Value = Scopes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-empty array of distinct scopes (upload, read, admin)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scopes, A::Error> {
        let mut scopes = Scopes::NONE;
        while let Some(s) = seq.next_element::<Scope>()? {
            if scopes.contains(s) {
                return Err(de::Error::custom(format_args!("scope {s} is listed twice")));
            }
            scopes = scopes.with(s);
        }
        if scopes.is_empty() {
            return Err(de::Error::custom(ScopeError::Empty));
        }
        Ok(scopes)
    }
}

/// 403 `forbidden`: the credential is valid but lacks the scope the route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this route needs the {0} scope, which the token does not carry")]
pub struct MissingScope(pub Scope);

impl Classify for MissingScope {
    fn code(&self) -> ErrorCode {
        ErrorCode::Forbidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_in_canonical_order() {
        let s: Scopes = "admin, upload upload".parse().unwrap();
        assert_eq!(s, Scopes::NONE.with(Scope::Upload).with(Scope::Admin));
        assert_eq!(s.to_string(), "upload,admin");
        assert_eq!(
            Scopes::ALL.to_string().parse::<Scopes>().unwrap(),
            Scopes::ALL
        );
        assert_eq!("".parse::<Scopes>(), Err(ScopeError::Empty));
        assert!(matches!(
            "upload,write".parse::<Scopes>(),
            Err(ScopeError::Unknown(w)) if w == "write"
        ));
    }

    #[test]
    fn wire_form_is_a_non_empty_array_of_distinct_scopes() {
        let s: Scopes = serde_json::from_str(r#"["read","upload"]"#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["upload","read"]"#);
        for bad in [r#"[]"#, r#"["read","read"]"#, r#"["write"]"#, r#""read""#] {
            assert!(serde_json::from_str::<Scopes>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwt_scopes() {
        assert_eq!(Scopes::for_jwt(""), Scopes::USER);
        assert_eq!(Scopes::for_jwt("openid admin"), Scopes::ALL);
        assert_eq!(Scopes::for_jwt("administrator"), Scopes::USER);
        assert!(!Scopes::USER.contains(Scope::Admin));
    }
}
