//! [`Failure`]: one failed step, classified by the taxonomy, with what the client may see kept
//! apart from what only operators and logs may see.

use std::fmt;

use crate::domain::{Classify, ErrorCode};

/// A failed step: its stable code (which decides transience), optional safe facts for the
/// client (sizes, limits, attempt counts), and the internal detail (S3 operation and key, SQL
/// error, decoder message) that only the logs and operators see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code.
    pub code: ErrorCode,
    /// Safe facts appended to the code's client message, e.g. `"declared 10 bytes, stored 9"`.
    pub facts: Option<String>,
    /// Internal detail, for logs and operators only.
    pub detail: String,
}

impl Failure {
    /// A failure with `code` and internal `detail`, and no client facts.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            facts: None,
            detail: detail.into(),
        }
    }

    /// Adds safe facts for the client's message.
    pub fn with_facts(mut self, facts: impl Into<String>) -> Self {
        self.facts = Some(facts.into());
        self
    }

    /// Classifies any taxonomy error: its code, and its `Display` as the internal detail.
    pub fn from_error(e: &(impl Classify + fmt::Display)) -> Self {
        Self::new(e.code(), e.to_string())
    }

    /// Whether a later attempt may succeed (the code's row of the taxonomy).
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }

    /// The message clients see: the code's fixed message, plus the safe facts in parentheses.
    pub fn client_message(&self) -> String {
        client_message(self.code, self.facts.as_deref())
    }

    /// What `retries_exhausted` records after `attempts` attempts whose last one failed with
    /// `self`: the last code is a safe fact, its detail stays internal.
    pub fn exhausted(self, attempts: u32) -> Self {
        Self {
            code: ErrorCode::RetriesExhausted,
            facts: Some(format!("{attempts} attempts; last: {}", self.code)),
            detail: format!("{attempts} attempts; last: {}: {}", self.code, self.detail),
        }
    }
}

/// The client message of `code` with optional safe `facts`.
pub fn client_message(code: ErrorCode, facts: Option<&str>) -> String {
    match facts {
        Some(f) => format!("{} ({f})", code.client_message()),
        None => code.client_message().to_owned(),
    }
}

impl Classify for Failure {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_keeps_the_last_code_as_a_fact_and_the_detail_internal() {
        let f =
            Failure::new(ErrorCode::StorageUnavailable, "GetObject tmp/a/b: timeout").exhausted(3);
        assert_eq!(f.code, ErrorCode::RetriesExhausted);
        assert!(!f.is_transient());
        assert!(
            f.client_message()
                .contains("3 attempts; last: storage_unavailable")
        );
        assert!(!f.client_message().contains("GetObject"));
        assert!(f.detail.contains("GetObject"));
    }
}
