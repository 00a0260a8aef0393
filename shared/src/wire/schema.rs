//! Hand-written OpenAPI schemas for fields whose constraint derives cannot express: an error
//! code restricted to the processing codes of the taxonomy ([`ErrorCode::PROCESSING`]), and a
//! date-time bound by [`RFC3339_PATTERN`] (a constant, which `#[schema(pattern)]` cannot take).

use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type};

use super::de::RFC3339_PATTERN;
use crate::domain::ErrorCode;

const SINCE: &str = "Only failures at or after this RFC 3339 time (e.g. `2026-05-01T12:00:00Z`).";

fn since(schema_type: SchemaType) -> Object {
    ObjectBuilder::new()
        .schema_type(schema_type)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(RFC3339_PATTERN))
        .description(Some(SINCE))
        .build()
}

/// The `since` query parameter: `{"type": "string", "format": "date-time", "pattern": …}`.
pub(crate) fn since_param() -> Object {
    since(SchemaType::from(Type::String))
}

/// The `since` body field: as [`since_param`], or `null`.
pub(crate) fn optional_since() -> Object {
    since(SchemaType::from_iter([Type::String, Type::Null]))
}

const PROCESSING_CODE: &str = "Stable code an upload's processing ended with, one of Kiln's \
                               processing error codes (e.g. `corrupt_image`).";

fn processing_codes() -> impl Iterator<Item = serde_json::Value> {
    ErrorCode::PROCESSING
        .iter()
        .map(|c| serde_json::Value::from(c.as_str()))
}

/// `{"type": "string", "enum": [<processing codes>]}`.
pub(crate) fn processing_code() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(PROCESSING_CODE))
        .enum_values(Some(processing_codes()))
        .examples([ErrorCode::CorruptImage.as_str()])
        .build()
}

/// [`processing_code`] or `null` (for an `Option` field serialized as `null`).
pub(crate) fn optional_processing_code() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(PROCESSING_CODE))
        .enum_values(Some(
            processing_codes().chain(std::iter::once(serde_json::Value::Null)),
        ))
        .build()
}
