//! Translation of source index specifications into what Azure Cosmos DB for MongoDB (vCore)
//! accepts.
//!
//! The vCore rules applied here come from its compatibility and limits pages. vCore has no
//! collation (case-insensitive) indexes and no compound geospatial indexes. It allows at most 32
//! fields in a compound index and 64 indexes per collection by default, the `_id` index
//! included. TTL, partial, sparse, wildcard, text, 2dsphere and hashed indexes are supported.
//! A unique constraint is never weakened: a unique index the target cannot hold exactly is
//! skipped with a reason that states what is lost.

use bson::{Bson, Document};

use super::plan::{BuildPhase, PlannedIndex};
use crate::jobs::model::IndexTiming;
use crate::jobs::SourceKind;

/// vCore's default index limit per collection, the `_id` index included.
pub const MAX_INDEXES: usize = 64;
/// vCore's limit on fields in one compound index.
pub const MAX_COMPOUND_FIELDS: usize = 32;

/// Options the translation understands; anything else is dropped with a reason.
const KNOWN_OPTIONS: &[&str] = &[
    "key",
    "name",
    "unique",
    "sparse",
    "partialFilterExpression",
    "expireAfterSeconds",
    "hidden",
    "collation",
    "weights",
    "default_language",
    "language_override",
    "wildcardProjection",
    "bits",
    "min",
    "max",
];

/// Version and build markers that the target chooses for itself. Dropping them changes nothing
/// the user relies on, so the index still counts as created as is.
const MARKERS: &[&str] = &[
    "v",
    "ns",
    "background",
    "textIndexVersion",
    "2dsphereIndexVersion",
];

/// Query operators that MongoDB 6.0 accepts in `partialFilterExpression`.
// NOTE: the vCore documentation lists no set of its own, so this assumes vCore matches MongoDB.
const PARTIAL_FILTER_OPERATORS: &[&str] = &[
    "$eq", "$exists", "$gt", "$gte", "$lt", "$lte", "$type", "$and", "$or", "$in",
];

/// The plan's decision for one index, with the specification the target gets.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Create(Document),
    Translate(Document, String),
    Skip(String),
}

/// Facts about the job that change the plan.
#[derive(Clone, Debug)]
pub struct PlanContext {
    pub source_kind: SourceKind,
    pub timing: IndexTiming,
}

/// Computes the plan for the specifications `listIndexes` returned on the source, in their
/// order.
pub fn plan_indexes(specs: &[Document], context: &PlanContext) -> Vec<PlannedIndex> {
    let mut plan = Vec::with_capacity(specs.len());
    // The target's `_id` index counts against the limit.
    let mut created = 1;
    for spec in specs {
        let name = spec.get_str("name").unwrap_or("").to_string();
        let unique = matches!(spec.get("unique"), Some(Bson::Boolean(true)));
        let mut decision = decide(spec, context.source_kind);
        if context.timing == IndexTiming::Skip && !is_id_index(spec) {
            decision = Decision::Skip(skip_option_reason(unique));
        }
        if !matches!(decision, Decision::Skip(_)) {
            if created >= MAX_INDEXES {
                decision = Decision::Skip(format!(
                    "vCore allows {MAX_INDEXES} indexes per collection by default and the plan \
                     already reaches it; raise the cluster's index limit and create this index \
                     by hand{}",
                    if unique {
                        ", until then the target does not enforce this unique constraint"
                    } else {
                        ""
                    }
                ));
            } else {
                created += 1;
            }
        }
        let phase = if unique || context.timing == IndexTiming::BeforeCopy {
            BuildPhase::BeforeCopy
        } else {
            BuildPhase::AfterCopy
        };
        plan.push(PlannedIndex::new(spec, &name, decision, phase));
    }
    plan
}

fn skip_option_reason(unique: bool) -> String {
    let mut reason = "the job's indexes option is skip".to_string();
    if unique {
        reason.push_str("; the target does not enforce this unique constraint");
    }
    reason
}

fn is_id_index(spec: &Document) -> bool {
    spec.get_str("name") == Ok("_id_")
        || spec
            .get_document("key")
            .is_ok_and(|k| k.len() == 1 && k.contains_key("_id"))
}

/// Decides one index, ignoring the job-level options.
pub fn decide(spec: &Document, source_kind: SourceKind) -> Decision {
    if is_id_index(spec) {
        return Decision::Skip(
            "the target creates the _id index of every collection itself".into(),
        );
    }
    let Ok(key) = spec.get_document("key") else {
        return Decision::Skip("the source specification has no key document".into());
    };
    let unique = matches!(spec.get("unique"), Some(Bson::Boolean(true)));
    let lost = if unique {
        " The target does not enforce this unique constraint."
    } else {
        ""
    };

    if source_kind == SourceKind::CosmosRu && is_ts_ttl(key, spec) {
        return Decision::Skip(
            "Cosmos DB (RU) expires these documents by its internal last-modified time _ts, which \
             vCore documents do not carry, so this TTL index would never expire anything. \
             Documents do not expire on the target; add a date field and a TTL index on it \
             to keep expiry."
                .into(),
        );
    }
    if key.values().any(|v| v.as_str() == Some("geoHaystack")) {
        return Decision::Skip(format!(
            "geoHaystack indexes were removed in MongoDB 5.0 and vCore does not offer them; \
             use a 2d index instead.{lost}"
        ));
    }
    if key.len() > MAX_COMPOUND_FIELDS {
        return Decision::Skip(format!(
            "the key has {} fields and vCore allows at most {MAX_COMPOUND_FIELDS} in a compound \
             index.{lost}",
            key.len()
        ));
    }

    let mut target = Document::new();
    let mut notes: Vec<String> = Vec::new();

    let key = match translate_key(key, spec) {
        KeyTranslation::Same(key) => key,
        KeyTranslation::Changed(key, note) => {
            notes.push(note);
            key
        }
        KeyTranslation::Impossible(reason) => return Decision::Skip(format!("{reason}{lost}")),
    };
    target.insert("key", key);
    target.insert("name", spec.get_str("name").unwrap_or_default());

    let mut dropped: Vec<&str> = Vec::new();
    for (field, value) in spec {
        match field.as_str() {
            "key" | "name" => {}
            "collation" => {
                if let Some(skip) = collation(value, unique, &mut notes) {
                    return Decision::Skip(skip);
                }
            }
            "hidden" => {
                if value.as_bool() == Some(true) {
                    notes.push(
                        "the index is hidden on the source, and vCore does not document hidden \
                         indexes, so it is created visible and the query planner may use it; \
                         hide it again with collMod if that matters"
                            .into(),
                    );
                }
            }
            "partialFilterExpression" => {
                if let Some(operator) = value.as_document().and_then(unsupported_operator) {
                    if unique {
                        return Decision::Skip(format!(
                            "the partial filter uses {operator}, which partial indexes do not \
                             accept on the target, and a unique index without its filter would \
                             reject documents the source accepts.{lost}"
                        ));
                    }
                    notes.push(format!(
                        "the partial filter uses {operator}, which partial indexes do not accept \
                         on the target, so the index covers every document; it is larger, and \
                         serves the same queries"
                    ));
                } else {
                    target.insert(field, value.clone());
                }
            }
            other if KNOWN_OPTIONS.contains(&other) => {
                target.insert(field, value.clone());
            }
            other if MARKERS.contains(&other) => {}
            other => dropped.push(other),
        }
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "options the target is not known to accept were left out: {}",
            dropped.join(", ")
        ));
    }

    if notes.is_empty() {
        Decision::Create(target)
    } else {
        Decision::Translate(target, notes.join("; "))
    }
}

/// Returns whether the index is a TTL index on the `_ts` system property of Cosmos DB (RU).
fn is_ts_ttl(key: &Document, spec: &Document) -> bool {
    key.len() == 1 && key.contains_key("_ts") && spec.contains_key("expireAfterSeconds")
}

enum KeyTranslation {
    Same(Document),
    Changed(Document, String),
    Impossible(String),
}

fn translate_key(key: &Document, spec: &Document) -> KeyTranslation {
    // MongoDB lists a text index by its internal key `{_fts: "text", _ftsx: 1}`; the fields and
    // their weights are in `weights`. Rebuild the declared form.
    if key.get_str("_fts") == Ok("text") {
        let Ok(weights) = spec.get_document("weights") else {
            return KeyTranslation::Impossible(
                "the text index lists no weights, so its fields are unknown.".into(),
            );
        };
        let mut rebuilt = Document::new();
        for (field, value) in key {
            match field.as_str() {
                "_fts" => {
                    for text_field in weights.keys() {
                        rebuilt.insert(text_field, "text");
                    }
                }
                "_ftsx" => {}
                _ => {
                    rebuilt.insert(field, value.clone());
                }
            }
        }
        return KeyTranslation::Same(rebuilt);
    }

    let geo: Vec<&String> = key
        .iter()
        .filter(|(_, v)| v.as_str() == Some("2dsphere") || v.as_str() == Some("2d"))
        .map(|(k, _)| k)
        .collect();
    if !geo.is_empty() && key.len() > 1 {
        if geo.len() > 1 || matches!(spec.get("unique"), Some(Bson::Boolean(true))) {
            return KeyTranslation::Impossible(
                "vCore does not support compound geospatial indexes.".into(),
            );
        }
        let field = geo[0].clone();
        let kind = key.get(&field).cloned().unwrap_or(Bson::Null);
        let mut single = Document::new();
        single.insert(&field, kind);
        return KeyTranslation::Changed(
            single,
            format!(
                "vCore does not support compound geospatial indexes, so only {field} is indexed; \
                 queries that filter on the other key fields scan the geospatial matches"
            ),
        );
    }
    KeyTranslation::Same(key.clone())
}

/// Handles a collation: `None` keeps going (with a note when it is dropped), `Some` skips.
fn collation(value: &Bson, unique: bool, notes: &mut Vec<String>) -> Option<String> {
    let collation = value.as_document();
    let locale = collation
        .and_then(|c| c.get_str("locale").ok())
        .unwrap_or("");
    if locale == "simple" {
        // The simple collation is binary comparison, which is what the target does anyway.
        return None;
    }
    let strength = collation
        .and_then(|c| c.get("strength"))
        .and_then(as_i64)
        .unwrap_or(3);
    let describe = format!("collation locale {locale:?} strength {strength}");
    if unique {
        return Some(format!(
            "vCore does not support collation, and without its {describe} this unique index \
             would accept values the source rejects as equal (differing only in case or \
             accents). The target does not enforce this unique constraint; enforce it in the \
             application, or store a normalized copy of the field and index that."
        ));
    }
    notes.push(format!(
        "vCore does not support collation, so the index compares values as binary instead of \
         by {describe}; queries that ask for this collation cannot use it"
    ));
    None
}

fn as_i64(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

/// Finds the first operator of a partial filter that is outside the accepted set.
fn unsupported_operator(filter: &Document) -> Option<String> {
    for (field, value) in filter {
        if field.starts_with('$') {
            if !PARTIAL_FILTER_OPERATORS.contains(&field.as_str()) {
                return Some(field.clone());
            }
            if let Bson::Array(items) = value {
                for item in items {
                    if let Some(found) = item.as_document().and_then(unsupported_operator) {
                        return Some(found);
                    }
                }
            }
            continue;
        }
        let Some(condition) = value.as_document() else {
            continue;
        };
        for (operator, argument) in condition {
            if !operator.starts_with('$') {
                // An embedded document compared by equality.
                break;
            }
            if !PARTIAL_FILTER_OPERATORS.contains(&operator.as_str()) {
                return Some(operator.clone());
            }
            let exists = match argument {
                Bson::Boolean(value) => *value,
                other => as_i64(other).is_some_and(|n| n != 0),
            };
            if operator == "$exists" && !exists {
                return Some("$exists: false".into());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;
    use crate::indexes::plan::{BuildState, IndexAction};

    fn context(timing: IndexTiming) -> PlanContext {
        PlanContext {
            source_kind: SourceKind::MongoDb,
            timing,
        }
    }

    #[test]
    fn plain_indexes_created_as_is() {
        let specs = [
            doc! { "v": 2, "key": { "a": 1 }, "name": "a_1" },
            doc! { "v": 2, "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1", "sparse": true },
            doc! { "v": 2, "key": { "h": "hashed" }, "name": "h_hashed" },
            doc! { "v": 2, "key": { "$**": 1 }, "name": "all", "wildcardProjection": { "x": 0 } },
            doc! { "v": 2, "key": { "at": 1 }, "name": "ttl", "expireAfterSeconds": 3600_i64 },
        ];
        for spec in &specs {
            let decision = decide(spec, SourceKind::MongoDb);
            let Decision::Create(target) = decision else {
                panic!("{spec}: {decision:?}");
            };
            assert_eq!(target.get("key"), spec.get("key"));
            assert!(!target.contains_key("v"), "{target}");
        }
    }

    #[test]
    fn ttl_keeps_exact_type() {
        let spec = doc! { "key": { "at": 1 }, "name": "ttl", "expireAfterSeconds": 3600_i64 };
        let Decision::Create(target) = decide(&spec, SourceKind::MongoDb) else {
            panic!("not created");
        };
        assert_eq!(target.get("expireAfterSeconds"), Some(&Bson::Int64(3600)));
    }

    #[test]
    fn id_index_skipped() {
        let spec = doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" };
        assert!(matches!(
            decide(&spec, SourceKind::MongoDb),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn collation_unique_skipped() {
        let spec = doc! {
            "key": { "email": 1 }, "name": "email_ci", "unique": true,
            "collation": { "locale": "en", "strength": 2 },
        };
        let Decision::Skip(reason) = decide(&spec, SourceKind::MongoDb) else {
            panic!("not skipped");
        };
        assert!(
            reason.contains("does not enforce this unique constraint"),
            "{reason}"
        );
    }

    #[test]
    fn collation_plain_translated() {
        let spec = doc! {
            "key": { "name": 1 }, "name": "name_ci",
            "collation": { "locale": "fr", "strength": 1 },
        };
        let Decision::Translate(target, reason) = decide(&spec, SourceKind::MongoDb) else {
            panic!("not translated");
        };
        assert!(!target.contains_key("collation"));
        assert!(reason.contains("collation"), "{reason}");
    }

    #[test]
    fn ru_ts_ttl_skipped() {
        let spec = doc! { "key": { "_ts": 1 }, "name": "_ts_1", "expireAfterSeconds": 60 };
        let Decision::Skip(reason) = decide(&spec, SourceKind::CosmosRu) else {
            panic!("not skipped");
        };
        assert!(reason.contains("_ts"), "{reason}");
        // On MongoDB `_ts` is an ordinary field.
        assert!(matches!(
            decide(&spec, SourceKind::MongoDb),
            Decision::Create(_)
        ));
    }

    #[test]
    fn text_key_rebuilt_from_weights() {
        let spec = doc! {
            "v": 2, "key": { "_fts": "text", "_ftsx": 1 }, "name": "body_text",
            "weights": { "body": 1, "title": 3 }, "default_language": "english",
            "language_override": "language", "textIndexVersion": 3,
        };
        let Decision::Create(target) = decide(&spec, SourceKind::MongoDb) else {
            panic!("not created");
        };
        assert_eq!(
            target.get_document("key").unwrap(),
            &doc! { "body": "text", "title": "text" }
        );
        assert!(!target.contains_key("textIndexVersion"));
        assert_eq!(
            target.get_document("weights").unwrap(),
            spec.get_document("weights").unwrap()
        );
    }

    #[test]
    fn compound_geo_translated_or_skipped() {
        let spec = doc! { "key": { "loc": "2dsphere", "kind": 1 }, "name": "geo" };
        let Decision::Translate(target, _) = decide(&spec, SourceKind::MongoDb) else {
            panic!("not translated");
        };
        assert_eq!(
            target.get_document("key").unwrap(),
            &doc! { "loc": "2dsphere" }
        );
        let single = doc! { "key": { "loc": "2dsphere" }, "name": "geo1" };
        assert!(matches!(
            decide(&single, SourceKind::MongoDb),
            Decision::Create(_)
        ));
    }

    #[test]
    fn partial_filter_operators_checked() {
        let accepted = doc! {
            "key": { "a": 1 }, "name": "p", "unique": true,
            "partialFilterExpression": { "a": { "$exists": true }, "b": { "$gt": 5 } },
        };
        let Decision::Create(target) = decide(&accepted, SourceKind::MongoDb) else {
            panic!("not created");
        };
        assert_eq!(
            target.get("partialFilterExpression"),
            accepted.get("partialFilterExpression")
        );
        let unique = doc! {
            "key": { "a": 1 }, "name": "p", "unique": true,
            "partialFilterExpression": { "a": { "$ne": null } },
        };
        let Decision::Skip(reason) = decide(&unique, SourceKind::MongoDb) else {
            panic!("not skipped");
        };
        assert!(reason.contains("$ne"), "{reason}");
        let plain = doc! {
            "key": { "a": 1 }, "name": "p",
            "partialFilterExpression": { "$or": [{ "a": { "$regex": "^x" } }] },
        };
        let Decision::Translate(target, _) = decide(&plain, SourceKind::MongoDb) else {
            panic!("not translated");
        };
        assert!(!target.contains_key("partialFilterExpression"));
    }

    #[test]
    fn hidden_and_unknown_options_translated() {
        let spec = doc! { "key": { "a": 1 }, "name": "a", "hidden": true, "storageEngine": {} };
        let Decision::Translate(target, reason) = decide(&spec, SourceKind::MongoDb) else {
            panic!("not translated");
        };
        assert!(!target.contains_key("hidden"));
        assert!(reason.contains("hidden"), "{reason}");
        assert!(reason.contains("storageEngine"), "{reason}");
    }

    #[test]
    fn unique_built_before_copy() {
        let specs = [
            doc! { "key": { "_id": 1 }, "name": "_id_" },
            doc! { "key": { "u": 1 }, "name": "u_1", "unique": true },
            doc! { "key": { "a": 1 }, "name": "a_1" },
        ];
        let plan = plan_indexes(&specs, &context(IndexTiming::AfterCopy));
        let phases: Vec<BuildPhase> = plan.iter().map(|i| i.phase).collect();
        assert_eq!(
            phases,
            [
                BuildPhase::Never,
                BuildPhase::BeforeCopy,
                BuildPhase::AfterCopy
            ]
        );
        let early = plan_indexes(&specs, &context(IndexTiming::BeforeCopy));
        assert_eq!(early[2].phase, BuildPhase::BeforeCopy);
    }

    #[test]
    fn skip_option_skips_all() {
        let specs = [doc! { "key": { "u": 1 }, "name": "u_1", "unique": true }];
        let plan = plan_indexes(&specs, &context(IndexTiming::Skip));
        assert_eq!(plan[0].action, IndexAction::Skip);
        assert_eq!(plan[0].state, BuildState::Skipped);
        assert!(plan[0].reason.as_deref().unwrap().contains("unique"));
    }

    #[test]
    fn index_limit_skips_the_rest() {
        let specs: Vec<Document> = (0..70)
            .map(|i| doc! { "key": { format!("f{i}"): 1 }, "name": format!("f{i}_1") })
            .collect();
        let plan = plan_indexes(&specs, &context(IndexTiming::AfterCopy));
        let created = plan
            .iter()
            .filter(|i| i.action != IndexAction::Skip)
            .count();
        assert_eq!(created, MAX_INDEXES - 1);
        assert!(plan[69].reason.as_deref().unwrap().contains("64"));
    }
}
