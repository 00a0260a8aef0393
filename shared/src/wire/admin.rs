//! Bodies of the admin routes (`/v1/admin/jobs…`): the dead-job filter and list, and the replay
//! request and report.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::Rejection;
use crate::db::uploads::FailedFilter;
use crate::domain::{ErrorCode, OwnerId, UploadId};

/// Largest `limit` of a dead-job filter.
pub const MAX_JOBS: i64 = 1000;

/// `limit` of a dead-job filter that has none.
pub const DEFAULT_JOBS: i64 = 100;

/// Most `ids` one replay request may name by default (`api.max_replay_ids` sets the limit the
/// server enforces and its document declares: [`ReplayRequest::validate`],
/// [`ReplayRequest::schema_for`]).
pub const MAX_REPLAY_IDS: usize = 1000;

/// Filters shared by listing and replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobFilter {
    /// Only this processing error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::optional_processing_code)]
    pub error_code: Option<ErrorCode>,
    /// Only failures at or after this RFC 3339 time (see [`super::RFC3339_PATTERN`]).
    #[serde(
        default,
        deserialize_with = "super::de::optional_rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = super::schema::optional_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only this owner's uploads: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    pub owner: Option<String>,
    /// At most this many (1–1000, default 100).
    #[serde(
        default,
        deserialize_with = "super::de::optional_integer",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

impl JobFilter {
    /// The database filter this one selects.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] for an `error_code` that is not a processing code, a malformed
    /// `owner`, or a `limit` outside 1–1000.
    pub fn to_filter(&self) -> Result<FailedFilter, Rejection> {
        if let Some(code) = self.error_code
            && !ErrorCode::PROCESSING.contains(&code)
        {
            return Err(Rejection::invalid(format!(
                "error_code {code} is not a processing error code"
            )));
        }
        if let Some(owner) = &self.owner {
            OwnerId::parse(owner).map_err(|e| Rejection::invalid(format!("owner: {e}")))?;
        }
        let limit = self.limit.unwrap_or(DEFAULT_JOBS);
        if !(1..=MAX_JOBS).contains(&limit) {
            return Err(Rejection::invalid("limit must be 1-1000"));
        }
        Ok(FailedFilter {
            error_code: self.error_code.map(|c| c.as_str().to_owned()),
            since: self.since,
            owner: self.owner.clone(),
            limit,
        })
    }
}

/// The job states `GET /v1/admin/jobs` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Jobs that ended in the dead set (their uploads are `failed`).
    #[default]
    Dead,
}

/// Query of `GET /v1/admin/jobs` (fields spelled out: `serde(flatten)` breaks numbers in
/// query strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Job state; only `dead` is listed.
    #[param(inline)]
    pub state: JobState,
    /// Only this processing error code.
    #[param(schema_with = super::schema::processing_code)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// Only failures at or after this RFC 3339 time (see [`super::RFC3339_PATTERN`]).
    #[param(schema_with = super::schema::since_param)]
    #[serde(
        default,
        deserialize_with = "super::de::optional_rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<DateTime<Utc>>,
    /// Only this owner's uploads: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl ListJobsQuery {
    /// The filter part of the query.
    pub fn filter(&self) -> JobFilter {
        JobFilter {
            error_code: self.error_code,
            since: self.since,
            owner: self.owner.clone(),
            limit: self.limit,
        }
    }
}

/// A page of dead jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Dead jobs, newest failure first.
    pub items: Vec<DeadJob>,
}

/// One dead job as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadJob {
    /// The failed upload.
    pub upload_id: UploadId,
    /// Its owner.
    pub owner: String,
    /// The apalis task id of its last job (derived from the upload id and job generation).
    pub job_id: Option<String>,
    /// Stable error code, e.g. `corrupt_image`.
    #[schema(schema_with = super::schema::optional_processing_code)]
    pub error_code: Option<String>,
    /// The message the upload's owner sees (the code's message plus safe facts).
    pub message: Option<String>,
    /// Internal detail of the failure (S3 operation, key, transport error), for operators.
    #[serde(default)]
    pub detail: Option<String>,
    /// Attempts made.
    pub attempts: i32,
    /// Times it was replayed before.
    pub replays: i32,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
    /// Client filename.
    pub filename: String,
}

/// Body of `POST /v1/admin/jobs/replay`: exactly one of `ids` and `filter`, and `dry_run`.
///
/// Its schema says so with `oneOf: [{required: [ids]}, {required: [filter]}]` (written by
/// hand: the derive cannot express a one-of over fields); [`ReplayRequest::validate`] is the
/// server's side of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Upload ids to replay (1 to `api.max_replay_ids`, default 1000). Absent, not `null`, when
    /// `filter` is given.
    #[serde(
        default,
        deserialize_with = "super::de::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ids: Option<Vec<UploadId>>,
    /// Replay every dead job matching this filter. Absent, not `null`, when `ids` is given.
    #[serde(
        default,
        deserialize_with = "super::de::present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub filter: Option<JobFilter>,
    /// Report what would be replayed without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

impl ReplayRequest {
    /// Replays exactly `ids`.
    pub fn ids(ids: impl IntoIterator<Item = UploadId>) -> Self {
        Self {
            ids: Some(ids.into_iter().collect()),
            ..Self::default()
        }
    }

    /// Replays every dead job matching `filter`.
    pub fn filter(filter: JobFilter) -> Self {
        Self {
            filter: Some(filter),
            ..Self::default()
        }
    }

    /// Checks the one-of and the `ids` bounds, with `max_ids` (`api.max_replay_ids`) the most
    /// ids one request may name (the filter is checked by [`JobFilter::to_filter`]).
    ///
    /// # Errors
    /// [`Rejection::Invalid`] unless exactly one of `ids` and `filter` is given, or when `ids`
    /// is empty or names more than `max_ids` uploads (the message names the cap).
    pub fn validate(&self, max_ids: usize) -> Result<(), Rejection> {
        match (&self.ids, &self.filter) {
            (Some(ids), None) if ids.is_empty() || ids.len() > max_ids => {
                Err(Rejection::invalid(format!(
                    "ids names {} uploads; it must name 1-{max_ids} (api.max_replay_ids)",
                    ids.len()
                )))
            }
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(Rejection::invalid("give exactly one of ids and filter")),
        }
    }
}

impl ReplayRequest {
    /// This body's schema with `max_ids` (`api.max_replay_ids`) as the `maxItems` of `ids`. The
    /// API serves this one (the derived [`PartialSchema::schema`] declares the default,
    /// [`MAX_REPLAY_IDS`]).
    pub fn schema_for(max_ids: usize) -> RefOr<Schema> {
        let ids = ArrayBuilder::new()
            .items(Ref::from_schema_name(UploadId::name()))
            .min_items(Some(1))
            .max_items(Some(max_ids))
            .description(Some(format!("Upload ids to replay (1–{max_ids}).")));
        let mut filter = Ref::from_schema_name(JobFilter::name());
        filter.description = "Replay every dead job matching this filter.".into();
        let dry_run = ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .default(Some(false.into()))
            .description(Some(
                "Report what would be replayed without changing anything.",
            ));
        let mut body = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Body of `POST /v1/admin/jobs/replay`: exactly one of `ids` and `filter`.",
            ))
            .property("ids", ids)
            .property("filter", filter)
            .property("dry_run", dry_run)
            .build();
        // utoipa's `Object` has no `oneOf` field; its flattened extension map serializes the
        // keyword next to `properties`, which is where JSON Schema wants it.
        body.extensions = Some(Extensions::from_iter([(
            "oneOf",
            serde_json::json!([{"required": ["ids"]}, {"required": ["filter"]}]),
        )]));
        RefOr::T(Schema::Object(body))
    }
}

impl PartialSchema for ReplayRequest {
    fn schema() -> RefOr<Schema> {
        Self::schema_for(MAX_REPLAY_IDS)
    }
}

impl ToSchema for ReplayRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((UploadId::name().into_owned(), UploadId::schema()));
        schemas.push((JobFilter::name().into_owned(), JobFilter::schema()));
        <JobFilter as ToSchema>::schemas(schemas);
    }
}

/// What a replay did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Uploads moved back to `uploaded` with a fresh job (or that would be).
    pub replayed: Vec<UploadId>,
    /// Ids that were not failed (already replayed, unknown, or never failed).
    pub skipped: Vec<UploadId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_needs_exactly_one_of_ids_and_filter() {
        let id = UploadId::new();
        let max = MAX_REPLAY_IDS;
        assert_eq!(ReplayRequest::ids([id]).validate(max), Ok(()));
        assert_eq!(
            ReplayRequest::filter(JobFilter::default()).validate(max),
            Ok(())
        );
        let both = ReplayRequest {
            filter: Some(JobFilter::default()),
            ..ReplayRequest::ids([id])
        };
        for bad in [
            ReplayRequest::default(),
            both,
            ReplayRequest::ids([]),
            ReplayRequest::ids(std::iter::repeat_n(id, MAX_REPLAY_IDS + 1)),
        ] {
            assert!(bad.validate(max).is_err(), "{bad:?}");
        }
        assert_eq!(
            ReplayRequest::ids(std::iter::repeat_n(id, MAX_REPLAY_IDS)).validate(max),
            Ok(())
        );
        let over = ReplayRequest::ids([id, id, id]).validate(2).unwrap_err();
        assert!(over.to_string().contains("1-2"), "{over}");
        assert_eq!(
            crate::config::ApiSettings::default().max_replay_ids,
            MAX_REPLAY_IDS,
            "the derived schema declares the default cap"
        );
    }

    #[test]
    fn replay_refuses_null_for_ids_and_filter() {
        let parse = |s: &str| serde_json::from_str::<ReplayRequest>(s);
        assert!(parse(r#"{"ids": null, "filter": {}}"#).is_err());
        assert!(parse(r#"{"filter": [null, null]}"#).is_err());
        assert!(
            parse(r#"{"ids": ["019a3c4e-7b2d-7c1e-9f3a-5b6c7d8e9f00"], "filter": null}"#).is_err()
        );
        let filter_only = parse(r#"{"filter": {"limit": 5}, "dry_run": true}"#).unwrap();
        assert_eq!(filter_only.ids, None);
        assert!(filter_only.dry_run);
        let request = ReplayRequest::ids([UploadId::new()]);
        let json = serde_json::to_string(&request).unwrap();
        assert!(!json.contains("filter"), "{json}");
        assert_eq!(parse(&json).unwrap(), request);
    }

    #[test]
    fn replay_schema_is_a_one_of_over_ids_and_filter() {
        let schema = serde_json::to_value(ReplayRequest::schema()).unwrap();
        assert_eq!(
            schema["oneOf"],
            serde_json::json!([{"required": ["ids"]}, {"required": ["filter"]}])
        );
        assert_eq!(schema["properties"]["ids"]["minItems"], 1);
        assert_eq!(schema["properties"]["ids"]["maxItems"], MAX_REPLAY_IDS);
        let configured = serde_json::to_value(ReplayRequest::schema_for(7)).unwrap();
        assert_eq!(configured["properties"]["ids"]["maxItems"], 7);
        assert_eq!(
            schema["properties"]["filter"]["$ref"],
            "#/components/schemas/JobFilter"
        );
    }

    #[test]
    fn filters_are_checked_as_their_schema_says() {
        let ok = JobFilter {
            error_code: Some(ErrorCode::CorruptImage),
            owner: Some("alice_1.x".into()),
            limit: Some(MAX_JOBS),
            ..JobFilter::default()
        };
        let f = ok.to_filter().unwrap();
        assert_eq!(f.error_code.as_deref(), Some("corrupt_image"));
        assert_eq!(f.limit, MAX_JOBS);
        assert_eq!(
            JobFilter::default().to_filter().unwrap().limit,
            DEFAULT_JOBS
        );
        for bad in [
            JobFilter {
                error_code: Some(ErrorCode::Unauthorized),
                ..JobFilter::default()
            },
            JobFilter {
                owner: Some(".hidden".into()),
                ..JobFilter::default()
            },
            JobFilter {
                owner: Some(String::new()),
                ..JobFilter::default()
            },
            JobFilter {
                limit: Some(0),
                ..JobFilter::default()
            },
            JobFilter {
                limit: Some(MAX_JOBS + 1),
                ..JobFilter::default()
            },
        ] {
            assert!(bad.to_filter().is_err(), "{bad:?}");
        }
        // The `pattern` literal spells out `OwnerId::parse`'s rule; check its edges.
        let schema = serde_json::to_value(JobFilter::schema()).unwrap();
        assert_eq!(
            schema["properties"]["owner"]["pattern"],
            "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
        );
        assert!(
            OwnerId::parse(&"a".repeat(64)).is_ok() && OwnerId::parse(&"a".repeat(65)).is_err()
        );
        assert!(OwnerId::parse("-a.b_c").is_ok() && OwnerId::parse(".a").is_err());
    }
}
