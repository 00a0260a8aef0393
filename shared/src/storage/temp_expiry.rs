//! The bucket lifecycle rule that expires this deployment's `{prefix}tmp/` objects: a second
//! line of defence behind the sweeper (docs/design.md "Object keys").
//!
//! S3 has one lifecycle configuration per bucket, and PutBucketLifecycleConfiguration replaces
//! all of it. So Kiln reads the configuration, adds or updates only its own rule, named by
//! [`temp_rule_id`] (which carries the key prefix, so deployments sharing a bucket through
//! `storage.key_prefix` keep one rule each), and writes the merged set back, leaving every
//! other rule as it was. Two writers racing (an operator's edit at the very moment a worker
//! starts) can still lose one update; S3 offers no conditional write for this configuration.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};
use sha2::{Digest, Sha256};

use super::{Storage, StorageError, classify};

/// The ID of Kiln's rule without a key prefix, and the ID every deployment's rule had before
/// rules carried the prefix (such a rule is still recognised as Kiln's by its filter).
pub const TEMP_RULE_ID: &str = "kiln-expire-tmp";

/// Longest lifecycle rule ID S3 accepts, in characters.
const MAX_RULE_ID: usize = 255;

/// The ID of the `tmp/` rule of the deployment with `key_prefix` (as [`crate::domain::KeyLayout`]
/// normalises it, e.g. `tenant-a/`): [`TEMP_RULE_ID`] without a prefix, else
/// `kiln-expire-tmp:{prefix without its trailing slash}`, or, past S3's 255-character limit,
/// `kiln-expire-tmp:sha256:{first 32 hex digits of the prefix's SHA-256}`.
pub fn temp_rule_id(key_prefix: &str) -> String {
    let prefix = key_prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return TEMP_RULE_ID.to_owned();
    }
    let id = format!("{TEMP_RULE_ID}:{prefix}");
    if id.chars().count() <= MAX_RULE_ID {
        id
    } else {
        let digest = hex::encode(Sha256::digest(prefix.as_bytes()));
        format!("{TEMP_RULE_ID}:sha256:{}", &digest[..32])
    }
}

/// The prefix a rule filters on (`Filter.Prefix`, or the deprecated top-level `Prefix`, which
/// rules written by older clients still carry).
#[allow(deprecated)]
fn rule_prefix(rule: &LifecycleRule) -> Option<&str> {
    rule.filter()
        .and_then(LifecycleRuleFilter::prefix)
        .or(rule.prefix())
}

/// `existing` with `ours` in place of every rule that is Kiln's for `temp_root`: one with the
/// same ID, or one with the pre-prefix ID [`TEMP_RULE_ID`] filtering on exactly `temp_root`.
/// `ours` takes the first such rule's place (or goes last); every other rule keeps its place
/// and content.
pub fn merge_temp_rule(
    existing: &[LifecycleRule],
    ours: LifecycleRule,
    temp_root: &str,
) -> Vec<LifecycleRule> {
    let id = ours.id().map(str::to_owned);
    let is_ours = |r: &LifecycleRule| {
        r.id() == id.as_deref()
            || (r.id() == Some(TEMP_RULE_ID) && rule_prefix(r) == Some(temp_root))
    };
    let mut merged = Vec::with_capacity(existing.len() + 1);
    let mut ours = Some(ours);
    for rule in existing {
        if !is_ours(rule) {
            merged.push(rule.clone());
        } else if let Some(ours) = ours.take() {
            merged.push(ours);
        }
    }
    merged.extend(ours);
    merged
}

impl Storage {
    /// The ID of this deployment's `tmp/` lifecycle rule ([`temp_rule_id`] of its key prefix).
    pub fn temp_lifecycle_rule_id(&self) -> String {
        temp_rule_id(self.layout.prefix())
    }

    /// Makes the bucket's lifecycle configuration hold this deployment's rule expiring objects
    /// under `{prefix}tmp/` after `days` days, with every other rule left as it was: reads the
    /// configuration (GetBucketLifecycleConfiguration; none yet is an empty one), merges
    /// ([`merge_temp_rule`]) and writes it back (PutBucketLifecycleConfiguration) unless it
    /// already holds exactly that rule. Idempotent.
    ///
    /// # Errors
    /// [`StorageError`] when S3 refuses (e.g. no permission) or is down, or when the rule cannot
    /// be built ([`StorageError::Client`]).
    pub async fn ensure_temp_lifecycle(&self, days: i32) -> Result<(), StorageError> {
        let temp_root = self.layout.temp_root();
        let ours = LifecycleRule::builder()
            .id(self.temp_lifecycle_rule_id())
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(&temp_root).build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build()
            .map_err(|e| StorageError::Client(e.to_string()))?;
        let (existing, min_size) = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => (
                out.rules.unwrap_or_default(),
                out.transition_default_minimum_object_size,
            ),
            Err(SdkError::ServiceError(e))
                if e.err().code() == Some("NoSuchLifecycleConfiguration") =>
            {
                (Vec::new(), None)
            }
            Err(e) => return Err(classify("GetBucketLifecycleConfiguration", &self.bucket, e)),
        };
        let merged = merge_temp_rule(&existing, ours, &temp_root);
        if merged == existing {
            return Ok(());
        }
        let config = BucketLifecycleConfiguration::builder()
            .set_rules(Some(merged))
            .build()
            .map_err(|e| StorageError::Client(e.to_string()))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(config)
            .set_transition_default_minimum_object_size(min_size)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("PutBucketLifecycleConfiguration", &temp_root, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, prefix: &str, days: i32) -> LifecycleRule {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build()
            .unwrap()
    }

    #[test]
    fn rule_ids_carry_the_key_prefix() {
        assert_eq!(temp_rule_id(""), "kiln-expire-tmp");
        assert_eq!(temp_rule_id("tenant-a/"), "kiln-expire-tmp:tenant-a");
        assert_eq!(temp_rule_id("a/b/"), "kiln-expire-tmp:a/b");
        assert_ne!(temp_rule_id("a/"), temp_rule_id("b/"));
        let long = format!("{}/", "p".repeat(300));
        let id = temp_rule_id(&long);
        assert!(id.starts_with("kiln-expire-tmp:sha256:") && id.len() <= MAX_RULE_ID);
        assert_ne!(id, temp_rule_id(&format!("{}/", "q".repeat(300))));
    }

    #[test]
    fn only_kilns_own_rule_is_added_or_replaced() {
        let operator = rule("logs-30d", "logs/", 30);
        let other_deployment = rule("kiln-expire-tmp:b", "b/tmp/", 1);
        let ours = rule("kiln-expire-tmp:a", "a/tmp/", 1);

        let added = merge_temp_rule(
            &[operator.clone(), other_deployment.clone()],
            ours.clone(),
            "a/tmp/",
        );
        assert_eq!(
            added,
            [operator.clone(), other_deployment.clone(), ours.clone()]
        );
        // Again: nothing changes (so nothing is written).
        assert_eq!(merge_temp_rule(&added, ours.clone(), "a/tmp/"), added);

        // An updated rule takes the old one's place.
        let updated = rule("kiln-expire-tmp:a", "a/tmp/", 2);
        assert_eq!(
            merge_temp_rule(&added, updated.clone(), "a/tmp/"),
            [operator.clone(), other_deployment.clone(), updated]
        );

        // The pre-prefix ID is Kiln's only when it filters on this deployment's tmp/.
        let legacy_ours = rule(TEMP_RULE_ID, "a/tmp/", 1);
        let legacy_theirs = rule(TEMP_RULE_ID, "b/tmp/", 1);
        assert_eq!(
            merge_temp_rule(
                &[legacy_ours, operator.clone(), legacy_theirs.clone()],
                ours.clone(),
                "a/tmp/"
            ),
            [ours.clone(), operator.clone(), legacy_theirs]
        );
        assert_eq!(merge_temp_rule(&[], ours.clone(), "a/tmp/"), [ours]);
    }
}
