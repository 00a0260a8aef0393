//! Bodies of the API-key admin routes (`/v1/admin/keys…`): the create request and its
//! once-only answer with the key, a key's metadata as listed (never its secret or hash), and
//! the list query and path. The rules they check are [`crate::api_keys::NewKey::new`]'s.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Rejection;
use crate::api_keys::{NewKey, Scope, Scopes};
use crate::domain::OwnerId;

/// Body of `POST /v1/admin/keys`: whose key, what it may do, for how long, and a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateKey {
    /// The owner the key acts as: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$", example = "alice")]
    pub owner: String,
    /// What the key may do: distinct scopes, at least one.
    #[schema(value_type = BTreeSet<Scope>, min_items = 1, example = json!(["upload", "read"]))]
    pub scopes: Scopes,
    /// Lifetime in seconds, 1–315360000 (10 years); absent or `null`: the key never expires.
    #[serde(
        default,
        deserialize_with = "super::de::optional_integer",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 1, maximum = 315_360_000, example = 2_592_000)]
    pub expires_in_secs: Option<u64>,
    /// A label for people: 1–64 characters, none of them a control or bidirectional formatting
    /// character (the filename rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]+$",
        example = "ci uploader"
    )]
    pub name: Option<String>,
}

impl CreateKey {
    /// The checked request.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] for a malformed owner, a lifetime out of range or a bad name (the
    /// message names the field and the rule).
    pub fn to_new_key(&self) -> Result<NewKey, Rejection> {
        let owner =
            OwnerId::parse(&self.owner).map_err(|e| Rejection::invalid(format!("owner: {e}")))?;
        NewKey::new(
            owner,
            self.scopes,
            self.name.clone(),
            self.expires_in_secs.map(std::time::Duration::from_secs),
        )
        .map_err(|e| Rejection::invalid(e.to_string()))
    }
}

/// An API key as operators see it: its public prefix and metadata, never the secret or its
/// hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// The key's public id: 12 lowercase hex digits, the `{prefix}` of `kiln_{prefix}_{secret}`.
    #[schema(pattern = "^[0-9a-f]{12}$", example = "3f9a0c1d2e4b")]
    pub prefix: String,
    /// The owner it acts as.
    pub owner: String,
    /// What it may do.
    #[schema(value_type = BTreeSet<Scope>, min_items = 1)]
    pub scopes: Scopes,
    /// Its label, if it was given one.
    pub name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; `null`: it was not.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (kept to within a minute); `null`: never.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Answer of `POST /v1/admin/keys` (201): the whole key, shown this once, and its metadata.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key, `kiln_{prefix}_{secret}`, to send as `Authorization: Bearer …`. Kiln stores
    /// only the secret's SHA-256 and cannot show it again.
    #[schema(example = "kiln_3f9a0c1d2e4b_q6Qy0m3uRzv2J8YV4kqWq9kXyq0C1Z1nLr8mFQ0aB3E")]
    pub key: String,
    /// The key's metadata, as listed later.
    pub api_key: KeyView,
}

impl fmt::Debug for CreatedKey {
    /// Redacts the key, so a logged value never carries it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"[redacted]")
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// Answer of `GET /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The keys, revoked and expired ones included, oldest first.
    pub items: Vec<KeyView>,
}

/// Query of `GET /v1/admin/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// Only this owner's keys: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ListKeysQuery {
    /// The owner filter.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] for a malformed owner.
    pub fn owner(&self) -> Result<Option<OwnerId>, Rejection> {
        self.owner
            .as_deref()
            .map(OwnerId::parse)
            .transpose()
            .map_err(|e| Rejection::invalid(format!("owner: {e}")))
    }
}

/// Path of `DELETE /v1/admin/keys/{prefix}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key's prefix: 12 lowercase hex digits.
    #[param(pattern = "^[0-9a-f]{12}$", example = "3f9a0c1d2e4b")]
    pub prefix: String,
}

impl KeyPath {
    /// The prefix, checked.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] unless it is 12 lowercase hex digits.
    pub fn prefix(&self) -> Result<&str, Rejection> {
        if crate::api_keys::valid_prefix(&self.prefix) {
            Ok(&self.prefix)
        } else {
            Err(Rejection::invalid("prefix must be 12 lowercase hex digits"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_key_body_is_checked() {
        let body: CreateKey = serde_json::from_str(
            r#"{"owner": "alice", "scopes": ["upload"], "expires_in_secs": 60.0}"#,
        )
        .unwrap();
        let key = body.to_new_key().unwrap();
        assert_eq!(key.scopes(), Scopes::NONE.with(Scope::Upload));
        for bad in [
            r#"{"owner": ".x", "scopes": ["upload"]}"#,
            r#"{"owner": "a", "scopes": ["upload"], "expires_in_secs": 0}"#,
            r#"{"owner": "a", "scopes": ["upload"], "expires_in_secs": 315360001}"#,
            r#"{"owner": "a", "scopes": ["upload"], "name": ""}"#,
            r#"{"owner": "a", "scopes": ["upload"], "name": "a\u202eb"}"#,
        ] {
            let body: CreateKey = serde_json::from_str(bad).unwrap();
            assert!(body.to_new_key().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<CreateKey>(r#"{"owner": "a", "scopes": []}"#).is_err());
    }

    #[test]
    fn schema_declares_the_rules_the_server_checks() {
        use utoipa::PartialSchema as _;
        let schema = serde_json::to_value(CreateKey::schema()).unwrap();
        let props = &schema["properties"];
        assert_eq!(props["name"]["pattern"], crate::wire::FILENAME_PATTERN);
        assert_eq!(props["name"]["maxLength"], crate::api_keys::MAX_NAME_CHARS);
        assert_eq!(
            props["expires_in_secs"]["maximum"],
            crate::api_keys::MAX_LIFETIME.as_secs()
        );
        assert_eq!(props["scopes"]["minItems"], 1);
        assert_eq!(props["scopes"]["uniqueItems"], true);
        assert_eq!(schema["required"], serde_json::json!(["owner", "scopes"]));
    }

    #[test]
    fn created_key_debug_hides_the_key() {
        let view = KeyView {
            prefix: "0123456789ab".into(),
            owner: "alice".into(),
            scopes: Scopes::USER,
            name: None,
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        let created = CreatedKey {
            key: "kiln_0123456789ab_secret".into(),
            api_key: view,
        };
        assert!(!format!("{created:?}").contains("secret"));
    }
}
