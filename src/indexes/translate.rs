//! Translation of source index specifications into what Azure Cosmos DB for MongoDB (vCore)
//! accepts.
//!
//! The vCore rules applied here come from its compatibility and limits pages: no collation
//! (case-insensitive) indexes, no compound geospatial indexes, at most 32 fields in a compound
//! index, 64 indexes per collection by default (the `_id` index included), hashed sharding
//! only. TTL, partial, sparse, wildcard, text, 2dsphere and hashed indexes are supported. A
//! unique constraint is never weakened: a unique index the target cannot hold exactly is
//! skipped with a reason that says what is lost.

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

/// Version and build markers the target chooses for itself; dropping them changes nothing the
/// user relies on, so the index still counts as created as is.
const MARKERS: &[&str] = &[
    "v",
    "ns",
    "background",
    "textIndexVersion",
    "2dsphereIndexVersion",
];

/// Query operators MongoDB accepts in `partialFilterExpression`; the reference lists no other
/// set for vCore.
// NOTE: vCore's own list is not documented; this assumes it matches MongoDB 6.0.
const PARTIAL_FILTER_OPERATORS: &[&str] = &[
    "$eq", "$exists", "$gt", "$gte", "$lt", "$lte", "$type", "$and", "$or", "$in",
];

/// What the target gets for one index.
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
        return Decision::Skip("the target creates the _id index of every collection itself".into());
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

/// A TTL index on the `_ts` system property of Cosmos DB (RU).
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

/// The first operator of a partial filter that is outside the accepted set.
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
            if operator == "$exists" && !matches!(argument, Bson::Boolean(true)) {
                return Some("$exists: false".into());
            }
        }
    }
    None
}
