//! Sharding the target collection on the key a job requests.
//!
//! vCore shards by a hashed key only (`shardCollection` with `{field: "hashed"}`), and data
//! should be sharded before it is loaded, so the plan task shards a collection before its copy.
//! The source's own shard key, if any, plays no part: an unsharded source can become sharded
//! and a sharded one can land unsharded.

use bson::{doc, Document};
use mongodb::Client;

use crate::jobs::Namespace;

/// The requested shard key as the job stores it: `{ "<field>": "hashed" }`.
pub type ShardKeySpec = serde_json::Map<String, serde_json::Value>;

/// Maximum length of a shard key field path, in bytes. The bound is this service's choice, far
/// above any real field path, and keeps the job's stored definition small.
const MAX_FIELD_BYTES: usize = 1024;

/// Returns the field of a valid shard key, or a message that explains the fix.
pub fn shard_field(key: &ShardKeySpec) -> Result<&str, String> {
    let mut fields = key.iter();
    let (Some((field, kind)), None) = (fields.next(), fields.next()) else {
        return Err(format!(
            "the shard key must name exactly one field, as {{\"customerId\": \"hashed\"}}, but it \
             has {}",
            key.len()
        ));
    };
    if field.is_empty() || field.starts_with('$') || field.contains('\0') {
        return Err(format!(
            "shard key field {field:?} is not a valid field path; use a field name that does not \
             start with $"
        ));
    }
    if field.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "the shard key field is {} bytes; use a field path of at most {MAX_FIELD_BYTES} bytes",
            field.len()
        ));
    }
    if kind.as_str() != Some("hashed") {
        return Err(format!(
            "shard key field {field:?} is {kind}; vCore shards by a hashed key only, so use \
             \"hashed\""
        ));
    }
    Ok(field)
}

/// Shards `namespace` on the target by a hashed `field`.
pub async fn shard_target(
    target: &Client,
    namespace: &Namespace,
    field: &str,
) -> Result<(), mongodb::error::Error> {
    let mut key = Document::new();
    key.insert(field, "hashed");
    target
        .database("admin")
        .run_command(doc! { "shardCollection": namespace.to_string(), "key": key })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(json: &str) -> ShardKeySpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hashed_single_field_accepted() {
        assert_eq!(
            shard_field(&key(r#"{"customerId":"hashed"}"#)),
            Ok("customerId")
        );
        assert_eq!(shard_field(&key(r#"{"a.b":"hashed"}"#)), Ok("a.b"));
    }

    #[test]
    fn ranged_key_rejected() {
        let error = shard_field(&key(r#"{"customerId":1}"#)).unwrap_err();
        assert!(error.contains("hashed"), "{error}");
    }

    #[test]
    fn compound_and_empty_keys_rejected() {
        assert!(shard_field(&key(r#"{"a":"hashed","b":"hashed"}"#)).is_err());
        assert!(shard_field(&key("{}")).is_err());
        assert!(shard_field(&key(r#"{"$a":"hashed"}"#)).is_err());
    }
}
