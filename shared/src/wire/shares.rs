//! Bodies of the share-link routes (`/v1/uploads/{id}/shares…`) and of `DELETE
//! /v1/uploads/{id}`'s query.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use super::Rejection;
use crate::config::ShareSettings;
use crate::db::shares::Share;
use crate::domain::UploadId;

/// Longest rendition name a share may name, in characters.
pub const MAX_RENDITION_NAME: usize = 64;

/// Body of `POST /v1/uploads/{id}/shares`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateShare {
    /// A rendition of the upload (e.g. `preview`, `thumb`) or `original`.
    #[schema(min_length = 1, max_length = 64, example = "preview")]
    pub rendition: String,
    /// How long the link works, in seconds: 1 ..= `shares.max_expires_in_secs` (30 days by
    /// default).
    #[serde(deserialize_with = "super::de::integer")]
    #[schema(minimum = 1, example = 86_400)]
    pub expires_in: u64,
    /// After this many downloads the link answers 410; absent or `null`: no limit.
    #[serde(
        default,
        deserialize_with = "super::de::optional_integer",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 10)]
    pub max_downloads: Option<u64>,
}

impl CreateShare {
    /// This type's schema with `expires_in`'s maximum set to `settings.max_expires_in_secs`
    /// (the served document states the configured limit).
    pub fn schema_for(settings: &ShareSettings) -> RefOr<Schema> {
        let mut schema = <Self as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(body)) = &mut schema
            && let Some(RefOr::T(Schema::Object(expires_in))) =
                body.properties.get_mut("expires_in")
        {
            expires_in.maximum = Some(settings.max_expires_in_secs.into());
        }
        schema
    }

    /// Checks the request against `settings`.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] naming the field and the rule.
    pub fn validate(&self, settings: &ShareSettings) -> Result<(), Rejection> {
        // JSON Schema lengths count characters.
        let chars = self.rendition.chars().count();
        if chars == 0 || chars > MAX_RENDITION_NAME {
            return Err(Rejection::invalid("rendition: 1–64 characters"));
        }
        if self.expires_in == 0 || self.expires_in > settings.max_expires_in_secs {
            return Err(Rejection::invalid(format!(
                "expires_in: 1 ..= {} seconds (shares.max_expires_in_secs)",
                settings.max_expires_in_secs
            )));
        }
        if matches!(self.max_downloads, Some(n) if n == 0 || n > 1_000_000_000) {
            return Err(Rejection::invalid("max_downloads: 1 ..= 1000000000"));
        }
        Ok(())
    }
}

/// Where a share link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShareState {
    /// It serves its file.
    Active,
    /// Revoked by the owner (the link answers 404).
    Revoked,
    /// Past `expires_at` (410).
    Expired,
    /// Every allowed download was used (410).
    UsedUp,
}

/// A share link as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShareView {
    /// Public id (`shr_` and 24 hex digits), for revocation.
    #[schema(pattern = "^shr_[0-9a-f]{24}$")]
    pub id: String,
    /// The shared upload.
    pub upload_id: UploadId,
    /// The shared rendition, or `original`.
    pub rendition: String,
    /// The link (`{base}/s/{token}`): only in the answer to its creation, since the token is
    /// not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where it stands now.
    pub state: ShareState,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Download limit; `null`: none.
    pub max_downloads: Option<u64>,
    /// Downloads so far.
    pub downloads: u64,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl ShareView {
    /// The view of `share` at `now`, with its `url` when known.
    pub fn new(share: Share, url: Option<String>, now: DateTime<Utc>) -> Self {
        let state = if share.revoked_at.is_some() {
            ShareState::Revoked
        } else if share.expires_at <= now {
            ShareState::Expired
        } else if share.max_downloads.is_some_and(|m| share.downloads >= m) {
            ShareState::UsedUp
        } else {
            ShareState::Active
        };
        Self {
            id: share.id,
            upload_id: share.upload_id,
            rendition: share.rendition,
            url,
            state,
            expires_at: share.expires_at,
            max_downloads: share.max_downloads,
            downloads: share.downloads,
            revoked_at: share.revoked_at,
            created_at: share.created_at,
        }
    }
}

/// The share links of one upload, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShareList {
    /// The links, revoked ones included.
    pub items: Vec<ShareView>,
}

/// Query of `DELETE /v1/uploads/{id}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// `true`: purge at once (original, derivatives, share links and rows; no restore).
    /// Default `false`: soft delete, restorable for `retention.deleted_secs`.
    #[serde(default)]
    pub purge: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rendition: &str, expires_in: u64, max: Option<u64>) -> CreateShare {
        CreateShare {
            rendition: rendition.to_owned(),
            expires_in,
            max_downloads: max,
        }
    }

    #[test]
    fn validate_names_the_field_out_of_range() {
        let s = ShareSettings::default();
        assert!(req("preview", 60, Some(1)).validate(&s).is_ok());
        assert!(req(&"é".repeat(64), 60, None).validate(&s).is_ok());
        assert!(
            req("original", s.max_expires_in_secs, None)
                .validate(&s)
                .is_ok()
        );
        for (bad, field) in [
            (req("", 60, None), "rendition"),
            (req(&"x".repeat(65), 60, None), "rendition"),
            (req(&"é".repeat(65), 60, None), "rendition"),
            (req("thumb", 0, None), "expires_in"),
            (req("thumb", s.max_expires_in_secs + 1, None), "expires_in"),
            (req("thumb", 60, Some(0)), "max_downloads"),
        ] {
            let e = bad.validate(&s).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn a_share_view_reports_its_state() {
        let now = chrono::Utc::now();
        let share = Share {
            id: "shr_000000000000000000000000".into(),
            upload_id: UploadId::new(),
            owner: crate::domain::OwnerId::parse("alice").unwrap(),
            rendition: "thumb".into(),
            expires_at: now + chrono::Duration::seconds(60),
            max_downloads: Some(2),
            downloads: 1,
            revoked_at: None,
            created_at: now,
        };
        assert_eq!(
            ShareView::new(share.clone(), None, now).state,
            ShareState::Active
        );
        let used = Share {
            downloads: 2,
            ..share.clone()
        };
        assert_eq!(ShareView::new(used, None, now).state, ShareState::UsedUp);
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(
            ShareView::new(share.clone(), None, later).state,
            ShareState::Expired
        );
        let revoked = Share {
            revoked_at: Some(now),
            ..share
        };
        assert_eq!(
            ShareView::new(revoked, None, now).state,
            ShareState::Revoked
        );
    }
}
