//! Checks on the collections a job names: the source collections exist, the target namespaces
//! are empty or the job says how to treat existing documents, and the size estimate.

use std::collections::{BTreeMap, BTreeSet};

use bson::{doc, Bson, Document};
use mongodb::Client;

use super::{Check, CheckStatus, CollectionEstimate, Estimate};
use crate::jobs::model::ExistingTarget;
use crate::jobs::JobRequest;
use crate::mongo::describe;

pub struct SourceCollections {
    pub check: Check,
    pub estimate: Option<Estimate>,
}

/// Lists the source databases once each and reports the collections that are missing; when all
/// exist, estimates each from its statistics.
pub async fn check_source(client: Option<&Client>, request: &JobRequest) -> SourceCollections {
    const NAME: &str = "source.collections";
    let Some(client) = client else {
        return SourceCollections {
            check: Check::new(
                NAME,
                CheckStatus::Skipped,
                "skipped because the source failed its checks",
            ),
            estimate: None,
        };
    };
    let wanted: Vec<_> = request
        .collections
        .iter()
        .map(|c| c.source_namespace())
        .collect();
    let existing = match list_collections(client, wanted.iter().map(|n| n.database.as_str())).await
    {
        Ok(existing) => existing,
        Err(message) => {
            return SourceCollections {
                check: Check::new(NAME, CheckStatus::Failed, message),
                estimate: None,
            }
        }
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|n| {
            !existing
                .get(&n.database)
                .is_some_and(|names| names.contains(&n.collection))
        })
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return SourceCollections {
            check: Check::new(
                NAME,
                CheckStatus::Failed,
                format!(
                    "source collections not found: {}; check the database and collection names, \
                     which are case-sensitive",
                    missing.join(", ")
                ),
            ),
            estimate: None,
        };
    }

    let mut estimate = Estimate::default();
    for namespace in &wanted {
        let (documents, bytes) =
            collection_size(client, &namespace.database, &namespace.collection).await;
        estimate.total_documents += documents;
        estimate.total_bytes += bytes;
        estimate.collections.push(CollectionEstimate {
            namespace: namespace.to_string(),
            documents,
            bytes,
        });
    }
    SourceCollections {
        check: Check::new(
            NAME,
            CheckStatus::Passed,
            format!("all {} source collections exist", wanted.len()),
        ),
        estimate: Some(estimate),
    }
}

/// Reports target namespaces that already hold documents: a failure under
/// `existingTarget: fail`, a warning under `merge`.
pub async fn check_target(client: Option<&Client>, request: &JobRequest) -> Check {
    const NAME: &str = "target.namespaces";
    let Some(client) = client else {
        return Check::new(
            NAME,
            CheckStatus::Skipped,
            "skipped because the target failed its checks",
        );
    };
    let targets: Vec<_> = request
        .collections
        .iter()
        .map(|c| c.target_namespace())
        .collect();
    let existing = match list_collections(client, targets.iter().map(|n| n.database.as_str())).await
    {
        Ok(existing) => existing,
        Err(message) => return Check::new(NAME, CheckStatus::Failed, message),
    };

    let mut occupied = Vec::new();
    for namespace in &targets {
        if !existing
            .get(&namespace.database)
            .is_some_and(|names| names.contains(&namespace.collection))
        {
            continue;
        }
        let count = client
            .database(&namespace.database)
            .collection::<Document>(&namespace.collection)
            .estimated_document_count()
            .await;
        match count {
            Ok(0) => {}
            Ok(n) => occupied.push(format!("{namespace} ({n} documents)")),
            Err(e) => {
                return Check::new(
                    NAME,
                    CheckStatus::Failed,
                    format!(
                        "counting documents in target {namespace} failed: {}",
                        describe(&e)
                    ),
                )
            }
        }
    }
    if occupied.is_empty() {
        return Check::new(
            NAME,
            CheckStatus::Passed,
            format!("all {} target namespaces are empty", targets.len()),
        );
    }
    match request.options.existing_target {
        ExistingTarget::Fail => Check::new(
            NAME,
            CheckStatus::Failed,
            format!(
                "target namespaces already hold documents: {}; options.existingTarget is fail, so \
                 empty them, choose other target names, or set existingTarget to merge",
                occupied.join(", ")
            ),
        ),
        ExistingTarget::Merge => Check::new(
            NAME,
            CheckStatus::Warning,
            format!(
                "target namespaces already hold documents: {}; options.existingTarget is merge, so \
                 the job copies into them and existing documents with the same _id are \
                 overwritten with the source's version",
                occupied.join(", ")
            ),
        ),
    }
}

/// Reports the estimate as a check, so the report reads as one list.
pub fn estimate_check(estimate: Option<&Estimate>) -> Check {
    const NAME: &str = "source.estimate";
    match estimate {
        Some(estimate) => Check::new(
            NAME,
            CheckStatus::Passed,
            format!(
                "about {} documents and {} in {} collections (estimates from collection statistics)",
                estimate.total_documents,
                human_bytes(estimate.total_bytes),
                estimate.collections.len()
            ),
        ),
        None => Check::new(NAME, CheckStatus::Skipped, "skipped because the source collections could not be read"),
    }
}

/// Collection names per database, each database listed once.
async fn list_collections<'a>(
    client: &Client,
    databases: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut result = BTreeMap::new();
    let databases: BTreeSet<&str> = databases.collect();
    for database in databases {
        let names = client
            .database(database)
            .list_collection_names()
            .await
            .map_err(|e| {
                format!(
                    "listing the collections of database {database} failed: {}",
                    describe(&e)
                )
            })?;
        result.insert(database.to_string(), names.into_iter().collect());
    }
    Ok(result)
}

/// Documents and bytes from `collStats`, or the estimated count alone where the server lacks it.
async fn collection_size(client: &Client, database: &str, collection: &str) -> (u64, u64) {
    let db = client.database(database);
    match db.run_command(doc! { "collStats": collection }).await {
        Ok(stats) => (number(&stats, "count"), number(&stats, "size")),
        Err(_) => {
            let count = db
                .collection::<Document>(collection)
                .estimated_document_count()
                .await
                .unwrap_or(0);
            (count, 0)
        }
    }
}

fn number(document: &Document, key: &str) -> u64 {
    match document.get(key) {
        Some(Bson::Int32(v)) => (*v).max(0) as u64,
        Some(Bson::Int64(v)) => (*v).max(0) as u64,
        Some(Bson::Double(v)) if *v > 0.0 => *v as u64,
        _ => 0,
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_readable() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn statistics_numbers_of_any_type_read() {
        let stats = doc! { "count": 3_i32, "size": 4_i64, "avg": 2.5, "neg": -1_i32 };
        assert_eq!(number(&stats, "count"), 3);
        assert_eq!(number(&stats, "size"), 4);
        assert_eq!(number(&stats, "avg"), 2);
        assert_eq!(number(&stats, "neg"), 0);
        assert_eq!(number(&stats, "missing"), 0);
    }
}
