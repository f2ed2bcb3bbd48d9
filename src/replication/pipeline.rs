//! The change-stream pipeline for each source kind.
//!
//! Cosmos DB for MongoDB (RU) accepts a change stream only on one collection, only with
//! `fullDocument: "updateLookup"`, and only with exactly a `$match` on `operationType` in
//! insert/update/replace followed by a `$project` of `_id`, `fullDocument`, `ns` and
//! `documentKey`. Any other shape fails with BadValue ("Change stream must be followed by a match
//! and then a project stage", Azure Cosmos DB for MongoDB change-stream documentation). Other
//! sources get the plain stream, which also reports deletes, drops and renames.

use bson::{doc, Document};

use super::position::Position;
use crate::jobs::SourceKind;

/// Builds the aggregation pipeline that opens a collection's change stream at `position` (or at the
/// server's current point when `None`).
pub fn pipeline(kind: SourceKind, position: Option<&Position>) -> Vec<Document> {
    let mut spec = doc! { "fullDocument": "updateLookup" };
    if let Some(position) = position {
        let (name, value) = position.stage_option();
        spec.insert(name, value);
    }
    let mut stages = vec![doc! { "$changeStream": spec }];
    if kind == SourceKind::CosmosRu {
        stages.extend(cosmos_ru_stages());
    }
    stages
}

/// Returns the only stages Cosmos DB (RU) accepts after `$changeStream`.
fn cosmos_ru_stages() -> [Document; 2] {
    [
        doc! { "$match": { "operationType": { "$in": ["insert", "update", "replace"] } } },
        doc! { "$project": { "_id": 1, "fullDocument": 1, "ns": 1, "documentKey": 1 } },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Timestamp;

    #[test]
    fn cosmos_ru_pipeline_is_the_accepted_shape() {
        let stages = pipeline(SourceKind::CosmosRu, None);
        assert_eq!(
            stages,
            vec![
                doc! { "$changeStream": { "fullDocument": "updateLookup" } },
                doc! { "$match": { "operationType": { "$in": ["insert", "update", "replace"] } } },
                doc! { "$project": { "_id": 1, "fullDocument": 1, "ns": 1, "documentKey": 1 } },
            ]
        );
    }

    #[test]
    fn mongodb_pipeline_has_no_filter() {
        let token = doc! { "_data": "82" };
        let stages = pipeline(
            SourceKind::MongoDb,
            Some(&Position::ResumeAfter(token.clone().into())),
        );
        assert_eq!(
            stages,
            vec![
                doc! { "$changeStream": { "fullDocument": "updateLookup", "resumeAfter": token } }
            ]
        );
    }

    #[test]
    fn operation_time_start_goes_into_the_stage() {
        let time = Timestamp {
            time: 5,
            increment: 1,
        };
        let stages = pipeline(SourceKind::CosmosRu, Some(&Position::StartAt(time)));
        let spec = stages[0].get_document("$changeStream").unwrap();
        assert_eq!(spec.get_timestamp("startAtOperationTime").unwrap(), time);
        assert_eq!(stages.len(), 3);
    }
}
