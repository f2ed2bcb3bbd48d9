//! Request validation: every error names the field and says how to fix it.

use std::collections::HashSet;

use super::model::{CollectionSpec, JobRequest};

/// An invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// A stable machine-readable code, such as `invalidName`.
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
        }
    }
}

const MAX_NAME_CHARS: usize = 128;
const MAX_COLLECTIONS: usize = 1_000;

/// Checks a parsed request; name uniqueness is checked by the store.
pub fn validate_request(request: &JobRequest) -> Result<(), FieldError> {
    validate_name(&request.name)?;
    check_stored_size(request)?;
    request
        .source
        .validate()
        .map_err(|e| FieldError::new("invalidSource", format!("source: {e}")))?;
    request
        .target
        .validate()
        .map_err(|e| FieldError::new("invalidTarget", format!("target: {e}")))?;

    if request.collections.is_empty() {
        return Err(FieldError::new(
            "noCollections",
            "collections is empty; list at least one {\"database\", \"collection\"} to migrate",
        ));
    }
    if request.collections.len() > MAX_COLLECTIONS {
        return Err(FieldError::new(
            "tooManyCollections",
            format!(
                "collections has {} entries; split the migration into jobs of at most {MAX_COLLECTIONS}",
                request.collections.len()
            ),
        ));
    }

    let mut sources = HashSet::new();
    let mut targets = HashSet::new();
    for (i, spec) in request.collections.iter().enumerate() {
        validate_collection(i, spec)?;
        let source = spec.source_namespace();
        let target = spec.target_namespace();
        if !sources.insert(source.clone()) {
            return Err(FieldError::new(
                "duplicateCollection",
                format!("collections[{i}]: {source} is listed more than once; list it once"),
            ));
        }
        if !targets.insert(target.clone()) {
            return Err(FieldError::new(
                "targetCollision",
                format!(
                    "collections[{i}]: target namespace {target} is already the target of another \
                     collection; set targetDatabase or targetCollection to a distinct name"
                ),
            ));
        }
        if request.source == request.target && source == target {
            return Err(FieldError::new(
                "targetIsSource",
                format!(
                    "collections[{i}]: source and target are the same server and namespace {source}; \
                     set targetDatabase or targetCollection, or use another target"
                ),
            ));
        }
    }

    let options = &request.options;
    if !(1..=10_000_000).contains(&options.chunk_documents) {
        return Err(FieldError::new(
            "invalidOption",
            format!(
                "options.chunkDocuments is {}; use a value from 1 to 10000000",
                options.chunk_documents
            ),
        ));
    }
    if !(1..=100_000).contains(&options.batch_size) {
        return Err(FieldError::new(
            "invalidOption",
            format!(
                "options.batchSize is {}; use a value from 1 to 100000",
                options.batch_size
            ),
        ));
    }
    if !(1..=256).contains(&options.max_parallel_chunks) {
        return Err(FieldError::new(
            "invalidOption",
            format!(
                "options.maxParallelChunks is {}; use a value from 1 to 256",
                options.max_parallel_chunks
            ),
        ));
    }
    if options.reconcile_interval_seconds > 7 * 24 * 3600 {
        return Err(FieldError::new(
            "invalidOption",
            format!(
                "options.reconcileIntervalSeconds is {}; use a value from 0 (no periodic \
                 reconciliation) to 604800 (one week)",
                options.reconcile_interval_seconds
            ),
        ));
    }
    Ok(())
}

/// Returns true for the zero-width and text-direction characters, which change how a name reads
/// without being seen.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

fn validate_name(name: &str) -> Result<(), FieldError> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err(FieldError::new(
            "invalidName",
            "name is empty; give the job a unique name",
        ));
    }
    if chars > MAX_NAME_CHARS {
        return Err(FieldError::new(
            "invalidName",
            format!("name has {chars} characters; use at most {MAX_NAME_CHARS}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "invalidName",
            "name contains a control character; use printable characters only",
        ));
    }
    if let Some(invisible) = name.chars().find(|&c| is_invisible_format(c)) {
        return Err(FieldError::new(
            "invalidName",
            format!(
                "name contains the invisible formatting character U+{:04X}; use visible \
                 characters only, so that two names that look the same are the same",
                u32::from(invisible)
            ),
        ));
    }
    if name.trim() != name {
        return Err(FieldError::new(
            "invalidName",
            format!("name {name:?} starts or ends with whitespace; remove it"),
        ));
    }
    Ok(())
}

fn validate_collection(i: usize, spec: &CollectionSpec) -> Result<(), FieldError> {
    let target = spec.target_namespace();
    check_database(i, "database", &spec.database)?;
    check_collection(i, "collection", &spec.collection)?;
    check_database(i, "targetDatabase", &target.database)?;
    check_collection(i, "targetCollection", &target.collection)?;
    for (field, ns) in [("source", spec.source_namespace()), ("target", target)] {
        let len = ns.database.len() + 1 + ns.collection.len();
        if len > 255 {
            return Err(FieldError::new(
                "invalidNamespace",
                format!("collections[{i}]: {field} namespace is {len} bytes; MongoDB allows 255"),
            ));
        }
    }
    if let Some(key) = &spec.target_shard_key {
        crate::indexes::shard::shard_field(key).map_err(|message| {
            FieldError::new(
                "invalidShardKey",
                format!("collections[{i}].targetShardKey: {message}"),
            )
        })?;
    }
    Ok(())
}

/// Largest job definition, in bytes of JSON, that the job's Table row accepts with room for its
/// progress fields. An entity is at most 1 MiB, and Table Storage counts a string's
/// characters as two bytes each.
const MAX_REQUEST_JSON_BYTES: usize = 400 * 1024;

/// Rejects a definition too large for the job's Table row, before anything is stored.
fn check_stored_size(request: &JobRequest) -> Result<(), FieldError> {
    let size = serde_json::to_vec(request).map_or(0, |json| json.len());
    if size > MAX_REQUEST_JSON_BYTES {
        return Err(FieldError::new(
            "requestTooLarge",
            format!(
                "the job definition is {} KiB of JSON, over the {} KiB a job can store; split \
                 the collections across several jobs, or shorten long names",
                size.div_ceil(1024),
                MAX_REQUEST_JSON_BYTES / 1024
            ),
        ));
    }
    Ok(())
}

fn check_database(i: usize, field: &str, name: &str) -> Result<(), FieldError> {
    const FORBIDDEN: &[char] = &[
        '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
    ];
    if name.is_empty() || name.len() > 63 {
        return Err(FieldError::new(
            "invalidNamespace",
            format!("collections[{i}].{field} {name:?} must be 1 to 63 bytes long"),
        ));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(FieldError::new(
            "invalidNamespace",
            format!(
                "collections[{i}].{field} {name:?} contains {c:?}, which database names cannot hold"
            ),
        ));
    }
    Ok(())
}

fn check_collection(i: usize, field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(
            "invalidNamespace",
            format!("collections[{i}].{field} is empty; name the collection"),
        ));
    }
    if name.contains('$') || name.contains('\0') {
        return Err(FieldError::new(
            "invalidNamespace",
            format!("collections[{i}].{field} {name:?} contains '$' or a NUL character"),
        ));
    }
    if name.starts_with("system.") {
        return Err(FieldError::new(
            "invalidNamespace",
            format!(
                "collections[{i}].{field} {name:?} is a system collection, which is not migrated"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::{JobOptions, Mode};
    use crate::secrets::CredentialRef;

    fn request() -> JobRequest {
        JobRequest {
            name: "move-orders".into(),
            mode: Mode::Offline,
            source: CredentialRef::Setting {
                setting: "SOURCE".into(),
            },
            target: CredentialRef::Setting {
                setting: "TARGET".into(),
            },
            collections: vec![CollectionSpec {
                database: "shop".into(),
                collection: "orders".into(),
                target_database: None,
                target_collection: None,
                target_shard_key: None,
            }],
            options: JobOptions::default(),
        }
    }

    #[test]
    fn valid_request_passes() {
        assert_eq!(validate_request(&request()), Ok(()));
    }

    #[test]
    fn empty_collections_rejected() {
        let mut r = request();
        r.collections.clear();
        assert_eq!(validate_request(&r).unwrap_err().code, "noCollections");
    }

    #[test]
    fn target_collision_rejected() {
        let mut r = request();
        r.collections.push(CollectionSpec {
            database: "shop".into(),
            collection: "orders_old".into(),
            target_database: None,
            target_collection: Some("orders".into()),
            target_shard_key: None,
        });
        let err = validate_request(&r).unwrap_err();
        assert_eq!(err.code, "targetCollision");
        assert!(err.message.contains("collections[1]"));
        assert!(err.message.contains("shop.orders"));
    }

    #[test]
    fn same_server_same_namespace_rejected() {
        let mut r = request();
        r.target = r.source.clone();
        assert_eq!(validate_request(&r).unwrap_err().code, "targetIsSource");
    }

    #[test]
    fn bad_names_rejected() {
        for name in ["", " padded", "tab\there", &"x".repeat(129)] {
            let mut r = request();
            r.name = name.to_string();
            assert_eq!(
                validate_request(&r).unwrap_err().code,
                "invalidName",
                "{name:?}"
            );
        }
    }

    #[test]
    fn bad_namespaces_rejected() {
        for (db, coll) in [
            ("a/b", "c"),
            ("a.b", "c"),
            ("", "c"),
            ("a", ""),
            ("a", "system.x"),
        ] {
            let mut r = request();
            r.collections[0].database = db.into();
            r.collections[0].collection = coll.into();
            assert_eq!(
                validate_request(&r).unwrap_err().code,
                "invalidNamespace",
                "{db}.{coll}"
            );
        }
    }

    #[test]
    fn option_ranges_checked() {
        let mut r = request();
        r.options.batch_size = 0;
        let err = validate_request(&r).unwrap_err();
        assert!(err.message.contains("options.batchSize"));
    }

    #[test]
    fn shard_key_checked() {
        let mut r = request();
        r.collections[0].target_shard_key =
            Some(serde_json::from_str(r#"{"customerId":"hashed"}"#).unwrap());
        assert_eq!(validate_request(&r), Ok(()));
        r.collections[0].target_shard_key =
            Some(serde_json::from_str(r#"{"customerId":1}"#).unwrap());
        let err = validate_request(&r).unwrap_err();
        assert_eq!(err.code, "invalidShardKey");
        assert!(err.message.contains("collections[0].targetShardKey"));
        let long = format!(r#"{{"{}":"hashed"}}"#, "f".repeat(2000));
        r.collections[0].target_shard_key = Some(serde_json::from_str(&long).unwrap());
        let err = validate_request(&r).unwrap_err();
        assert_eq!(err.code, "invalidShardKey");
        assert!(err.message.contains("2000 bytes"), "{}", err.message);
    }

    #[test]
    fn invisible_name_characters_rejected() {
        for name in ["a\u{200B}b", "job\u{202E}cba", "\u{FEFF}job"] {
            let mut r = request();
            r.name = name.into();
            let err = validate_request(&r).unwrap_err();
            assert_eq!(err.code, "invalidName", "{name:?}");
            assert!(err.message.contains("invisible"), "{}", err.message);
        }
        let mut r = request();
        r.name = "café migration".into();
        assert_eq!(validate_request(&r), Ok(()));
    }

    #[test]
    fn oversized_definition_rejected() {
        let mut r = request();
        let spec = r.collections[0].clone();
        r.collections = (0..1000)
            .map(|i| {
                let mut spec = spec.clone();
                spec.collection = format!("{}{i}", "c".repeat(180));
                spec.target_database = Some("d".repeat(63));
                spec.target_collection = Some(format!("{}{i}", "t".repeat(180)));
                spec
            })
            .collect();
        let err = validate_request(&r).unwrap_err();
        assert_eq!(err.code, "requestTooLarge");
        assert!(err.message.contains("several jobs"), "{}", err.message);
    }

    #[test]
    fn unknown_field_rejected_by_parser() {
        let json = r#"{"name":"a","mode":"offline","source":{"setting":"S"},"target":{"setting":"T"},
                       "collections":[{"database":"d","collection":"c","extra":1}]}"#;
        let err = serde_json::from_str::<JobRequest>(json).unwrap_err();
        assert!(err.to_string().contains("extra"));
    }
}
