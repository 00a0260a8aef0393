//! `OwnerId`: the authenticated principal (JWT `sub`) that owns uploads and key prefixes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Owner of uploads: 1–64 chars of `[A-Za-z0-9_.-]`, not starting with `.`.
///
/// It becomes an object-key segment (`tmp/{owner}/…`), so anything that could escape the
/// segment (`/`, `..`, control characters) is refused rather than escaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OwnerId(String);

/// Why a string is not an [`OwnerId`].
#[derive(Debug, thiserror::Error)]
#[error("owner id must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'")]
pub struct InvalidOwnerId;

impl OwnerId {
    /// Validates `s`.
    ///
    /// # Errors
    /// [`InvalidOwnerId`] when `s` is empty, longer than 64 bytes, starts with `.`, or has any
    /// other character than ASCII letters, digits, `_`, `.` and `-`.
    pub fn parse(s: &str) -> Result<Self, InvalidOwnerId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidOwnerId)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OwnerId {
    type Error = InvalidOwnerId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl std::str::FromStr for OwnerId {
    type Err = InvalidOwnerId;
    fn from_str(s: &str) -> Result<Self, InvalidOwnerId> {
        Self::parse(s)
    }
}

impl From<OwnerId> for String {
    fn from(o: OwnerId) -> String {
        o.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_anything_that_could_escape_a_key_segment() {
        for bad in ["", "a/b", "..", ".hidden", "a b", "é", &"x".repeat(65)] {
            assert!(OwnerId::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["alice", "user-1", "a.b_c", "0"] {
            assert!(OwnerId::parse(good).is_ok(), "{good:?} refused");
        }
    }
}
