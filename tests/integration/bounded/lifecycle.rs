//! The `tmp/` lifecycle rule a worker puts on the bucket at start (issue 12, part 6): merged
//! into the bucket's lifecycle configuration, never replacing the operator's rules or another
//! deployment's, against Garage.

use kiln_shared::storage::sdk::error::ProvideErrorMetadata as _;
use kiln_shared::storage::sdk::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};

use super::api_only;

/// An operator's own rule: expire `logs/` after 30 days.
fn operators_rule(id: &str) -> LifecycleRule {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .expiration(LifecycleExpiration::builder().days(30).build())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_lifecycle_rule_is_merged_never_replacing_the_operators() {
    let app = api_only().await;
    // A bucket of its own, so no other test's lifecycle rules come and go meanwhile.
    let mut settings = app.settings.storage.clone();
    settings.bucket = format!(
        "kiln-lc-{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let storage = kiln_shared::storage::Storage::new(&settings);
    let s3 = storage.client();
    let bucket = storage.bucket();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let rules = || async {
        match s3
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.rules().to_vec(),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(e) => panic!("GetBucketLifecycleConfiguration: {e:?}"),
        }
    };
    let count =
        |rules: &[LifecycleRule], id: &str| rules.iter().filter(|r| r.id() == Some(id)).count();

    // The operator's own rule.
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(operators_rule("logs-30d"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // What a worker does at start (`sweeper.lifecycle_rule`), twice.
    let ours = storage.temp_lifecycle_rule_id();
    assert!(
        ours.contains(&settings.key_prefix.trim_end_matches('/').to_owned()),
        "{ours}"
    );
    for _ in 0..2 {
        storage.ensure_temp_lifecycle(1).await.unwrap();
        let after = rules().await;
        assert_eq!(after.len(), 2, "{after:#?}");
        assert_eq!(after[0], operators_rule("logs-30d"), "kept as it was");
        let kiln = &after[1];
        assert_eq!(kiln.id(), Some(ours.as_str()));
        let filter_prefix = kiln.filter().and_then(|f| f.prefix());
        assert_eq!(filter_prefix, Some(storage.layout().temp_root().as_str()));
        assert_eq!(kiln.expiration().and_then(|e| e.days()), Some(1));
    }

    // Another deployment sharing the bucket (another key prefix) adds its own rule; a changed
    // expiry updates ours in place.
    let mut other = settings.clone();
    other.key_prefix = format!("{}other/", settings.key_prefix);
    let other = kiln_shared::storage::Storage::new(&other);
    other.ensure_temp_lifecycle(2).await.unwrap();
    storage.ensure_temp_lifecycle(3).await.unwrap();
    let after = rules().await;
    assert_eq!(after.len(), 3, "{after:#?}");
    for id in ["logs-30d", &ours, &other.temp_lifecycle_rule_id()] {
        assert_eq!(count(&after, id), 1, "{id}: {after:#?}");
    }
    assert_eq!(after[1].expiration().and_then(|e| e.days()), Some(3));

    // No configuration at all is an empty one.
    s3.delete_bucket_lifecycle()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert!(rules().await.is_empty());
    storage.ensure_temp_lifecycle(1).await.unwrap();
    assert_eq!(count(&rules().await, &ours), 1);

    s3.delete_bucket_lifecycle()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket(bucket).send().await.unwrap();
    app.finish().await;
}
