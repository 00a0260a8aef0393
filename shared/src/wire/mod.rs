//! Kiln's wire types: the JSON bodies of the HTTP API (requests, responses and the error
//! body), in one place for the API, the `kiln upload` client, the benchmark and the tests.
//! Their OpenAPI schemas (utoipa) carry the constraints the server enforces.

mod error;

pub use error::{ErrorBody, ErrorDetail};
