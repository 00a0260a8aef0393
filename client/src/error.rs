//! The client's one error type, [`ClientError`]: what the API refused (its
//! [`ErrorBody`](kiln_shared::wire::ErrorBody), parsed), what S3 refused, transport failures, and
//! the wait that ran out; and [`Call`], which request failed.

use std::fmt;
use std::time::Duration;

use kiln_shared::domain::{ErrorCode, UploadId, UploadState};
use kiln_shared::wire::ErrorBody;
use reqwest::StatusCode;

/// Longest excerpt of an unparseable response body kept in an error, in characters.
const BODY_EXCERPT_CHARS: usize = 300;

/// Which request of the upload flow failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `POST /v1/uploads` (shown as `authorize`).
    Authorize,
    /// The bytes to S3, through the presigned PUT URL or POST policy (shown as `transfer`).
    Transfer,
    /// `POST /v1/uploads/{id}/complete` (shown as `complete`).
    Complete,
    /// `GET /v1/uploads/{id}` (shown as `status`).
    Get,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Authorize => "authorize",
            Self::Transfer => "transfer",
            Self::Complete => "complete",
            Self::Get => "status",
        })
    }
}

/// Everything a [`KilnClient`](crate::KilnClient) call can fail with. Its `Display` is one line
/// naming the [`Call`]; [`ClientError::report`] adds the underlying causes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request with its error body
    /// (`{"error": {"code": "…", "message": "…"}}`): `code` is the stable taxonomy code to match
    /// on, `status` the HTTP status (4xx or 5xx), `message` the text written for people.
    #[error("{call}: HTTP {status}: {code}: {message}")]
    Api {
        /// The request that was refused.
        call: Call,
        /// HTTP status of the response.
        status: StatusCode,
        /// The error body's `code`.
        code: ErrorCode,
        /// The error body's `message`.
        message: String,
    },
    /// The API answered a non-2xx status whose body is not an error body (e.g. a proxy's page,
    /// or a code this client does not know); `body` is its first 300 characters.
    #[error("{call}: HTTP {status}: {body}")]
    Status {
        /// The request that failed.
        call: Call,
        /// HTTP status of the response.
        status: StatusCode,
        /// The start of the response body (lossy UTF-8).
        body: String,
    },
    /// A 2xx response whose body is not the expected wire type.
    #[error("{call}: unexpected response body")]
    Decode {
        /// The request whose response did not parse.
        call: Call,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The request did not get a response (connection, TLS, timeout) or its body could not be
    /// read.
    #[error("{call} failed")]
    Transport {
        /// The request that failed.
        call: Call,
        /// reqwest's error, with its causes.
        #[source]
        source: reqwest::Error,
    },
    /// S3 refused the bytes: a status other than 200, 201 or 204; `body` is the first 300
    /// characters of its answer (S3's XML error).
    #[error("S3 answered HTTP {status}: {body}")]
    Storage {
        /// HTTP status of S3's answer.
        status: StatusCode,
        /// The start of S3's response body (lossy UTF-8).
        body: String,
    },
    /// The request could not be built: the HTTP client did not start (TLS backend), or the
    /// content type is not a valid MIME type for the POST form's `file` part.
    #[error("could not build the request")]
    Build(#[source] reqwest::Error),
    /// [`KilnClient::wait_until_final`](crate::KilnClient::wait_until_final) gave up: the upload
    /// was still in `state` after `waited`.
    #[error("upload {id} still {} after {} s", state.as_str(), waited.as_secs())]
    Timeout {
        /// The upload waited for.
        id: UploadId,
        /// Its state at the last poll.
        state: UploadState,
        /// How long the client waited.
        waited: Duration,
    },
}

impl ClientError {
    /// The error for a non-2xx API response with `body`: [`ClientError::Api`] when the body is
    /// an [`ErrorBody`], else [`ClientError::Status`] with an excerpt.
    pub(crate) fn from_response(call: Call, status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => Self::Api {
                call,
                status,
                code: error.code,
                message: error.message,
            },
            Err(_) => Self::Status {
                call,
                status,
                body: excerpt(body),
            },
        }
    }

    /// The API's error code, for [`ClientError::Api`]; `None` for every other variant.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether sending the bytes again may succeed: S3 answered 5xx or 429, or the transfer got
    /// no answer. Only the S3 transfer is retried ([`KilnClient::send`](crate::KilnClient::send)).
    pub fn is_retryable_transfer(&self) -> bool {
        match self {
            Self::Storage { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Self::Transport { .. } => true,
            _ => false,
        }
    }

    /// This error and each of its causes, joined with `": "` (what `anyhow`'s `{:#}` prints),
    /// e.g. `transfer failed: error sending request for url (…): … Connection refused`.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cause = e.source();
        }
        out
    }
}

/// The first [`BODY_EXCERPT_CHARS`] characters of `body`, lossy UTF-8.
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(BODY_EXCERPT_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_becomes_an_api_error_with_its_code() {
        let body = br#"{"error":{"code":"upload_too_large","message":"too big"}}"#;
        let e = ClientError::from_response(Call::Authorize, StatusCode::PAYLOAD_TOO_LARGE, body);
        assert!(matches!(
            &e,
            ClientError::Api { call: Call::Authorize, status, code: ErrorCode::UploadTooLarge, message }
                if *status == StatusCode::PAYLOAD_TOO_LARGE && message == "too big"
        ));
        assert_eq!(e.code(), Some(ErrorCode::UploadTooLarge));
        assert_eq!(
            e.to_string(),
            "authorize: HTTP 413 Payload Too Large: upload_too_large: too big"
        );
    }

    #[test]
    fn any_other_body_is_kept_as_an_excerpt() {
        let body = "x".repeat(1000);
        let e = ClientError::from_response(Call::Get, StatusCode::BAD_GATEWAY, body.as_bytes());
        assert!(
            matches!(&e, ClientError::Status { call: Call::Get, body, .. } if body.len() == 300)
        );
        assert_eq!(e.code(), None);
    }

    #[test]
    fn only_server_errors_throttling_and_transport_are_retried() {
        let storage = |status| ClientError::Storage {
            status,
            body: String::new(),
        };
        assert!(storage(StatusCode::SERVICE_UNAVAILABLE).is_retryable_transfer());
        assert!(storage(StatusCode::TOO_MANY_REQUESTS).is_retryable_transfer());
        assert!(!storage(StatusCode::FORBIDDEN).is_retryable_transfer());
        let api = ClientError::from_response(Call::Complete, StatusCode::SERVICE_UNAVAILABLE, b"");
        assert!(!api.is_retryable_transfer());
    }
}
