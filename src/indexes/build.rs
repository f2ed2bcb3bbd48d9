//! Building one planned index on the target, without ever replacing an index that is there.

use bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::Client;

use crate::jobs::Namespace;
use crate::mongo::{classify, describe, ErrorClass, DUPLICATE_KEY};

/// The end of a build that retrying would not change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildOutcome {
    /// The target has the index now (built here, or already there with the same
    /// specification).
    Built,
    /// An index with the same name or key and different options is on the target; it was left
    /// as it is.
    Conflict(String),
    /// The target rejected the index; for a unique index this is usually data that violates it.
    Rejected(String),
}

/// A build failure that may pass when the task runs again (network, throttling, failover).
#[derive(Debug, thiserror::Error)]
#[error("building index {index} on {namespace} failed and will be retried: {message}")]
pub struct TransientBuildError {
    pub index: String,
    pub namespace: String,
    pub message: String,
}

/// Server codes for an index that exists with other options (`IndexOptionsConflict`) or other
/// key (`IndexKeySpecsConflict`) under the same name or key.
const CONFLICT_CODES: &[i32] = &[85, 86];

/// Builds `spec` on the target collection `namespace`.
pub async fn build_index(
    target: &Client,
    namespace: &Namespace,
    spec: &Document,
) -> Result<BuildOutcome, TransientBuildError> {
    let name = spec.get_str("name").unwrap_or_default().to_string();
    let transient = |e: &mongodb::error::Error| TransientBuildError {
        index: name.clone(),
        namespace: namespace.to_string(),
        message: describe(e),
    };
    let database = target.database(&namespace.database);

    let existing = match list_target_indexes(target, namespace).await {
        Ok(list) => list,
        Err(e) if classify(&e) != ErrorClass::Permanent => return Err(transient(&e)),
        Err(e) => return Ok(BuildOutcome::Rejected(describe(&e))),
    };
    if let Some(found) = existing.iter().find(|i| i.get_str("name") == Ok(&name)) {
        if same_index(found, spec) {
            return Ok(BuildOutcome::Built);
        }
        return Ok(BuildOutcome::Conflict(format!(
            "the target already has an index named {name} with a different specification \
             ({}); it was left in place and the source's ({}) was not created; drop or rename \
             the target's index and resume the job to build it",
            Bson::Document(strip_markers(found)).into_relaxed_extjson(),
            Bson::Document(spec.clone()).into_relaxed_extjson(),
        )));
    }

    let command = doc! { "createIndexes": &namespace.collection, "indexes": [spec.clone()] };
    match database.run_command(command).await {
        Ok(_) => Ok(BuildOutcome::Built),
        Err(e) => match e.kind.as_ref() {
            ErrorKind::Command(c) if c.code == DUPLICATE_KEY => {
                Ok(BuildOutcome::Rejected(format!(
                    "the target data violates unique index {name}: {}; remove the duplicates \
                     on the target (or fix them on the source) and resume the job",
                    describe(&e)
                )))
            }
            ErrorKind::Command(c) if CONFLICT_CODES.contains(&c.code) => {
                Ok(BuildOutcome::Conflict(format!(
                    "the target already has an index that conflicts with {name}: {}; it was \
                     left in place",
                    describe(&e)
                )))
            }
            _ if classify(&e) != ErrorClass::Permanent => Err(transient(&e)),
            _ => Ok(BuildOutcome::Rejected(format!(
                "the target rejected index {name}: {}",
                describe(&e)
            ))),
        },
    }
}

/// Lists the target collection's indexes; a missing collection has none.
async fn list_target_indexes(
    target: &Client,
    namespace: &Namespace,
) -> Result<Vec<Document>, mongodb::error::Error> {
    match super::list_indexes(target, namespace).await {
        // 26 NamespaceNotFound.
        Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == 26) => {
            Ok(Vec::new())
        }
        other => other,
    }
}

/// Whether two specifications describe the same index: the same fields apart from version
/// markers, with numbers compared by value (`1` and `1.0` are the same key direction).
pub fn same_index(a: &Document, b: &Document) -> bool {
    normalize(&strip_markers(a)) == normalize(&strip_markers(b))
}

fn strip_markers(spec: &Document) -> Document {
    spec.iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "v" | "ns" | "background" | "textIndexVersion" | "2dsphereIndexVersion"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Sorts top-level fields, because option order is not meaningful, and turns numbers into
/// doubles. Nested documents keep their order: `{a: 1, b: 1}` and `{b: 1, a: 1}` are different
/// keys.
fn normalize(spec: &Document) -> Vec<(String, Bson)> {
    let mut fields: Vec<(String, Bson)> = spec
        .iter()
        .map(|(k, v)| (k.clone(), normalize_numbers(v)))
        .collect();
    fields.sort_by(|x, y| x.0.cmp(&y.0));
    fields
}

fn normalize_numbers(value: &Bson) -> Bson {
    match value {
        Bson::Int32(v) => Bson::Double(f64::from(*v)),
        Bson::Int64(v) => Bson::Double(*v as f64),
        Bson::Document(d) => Bson::Document(
            d.iter()
                .map(|(k, v)| (k.clone(), normalize_numbers(v)))
                .collect(),
        ),
        Bson::Array(items) => Bson::Array(items.iter().map(normalize_numbers).collect()),
        other => other.clone(),
    }
}
