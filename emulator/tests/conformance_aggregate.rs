//! Conformance: aggregation stages and expressions.

mod common;

use bson::{doc, Bson, Document};
use futures::TryStreamExt;

async fn run(collection: &mongodb::Collection<Document>, pipeline: Vec<Document>) -> Vec<Document> {
    collection
        .aggregate(pipeline)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn seeded(
    target: &common::Target,
    prefix: &str,
) -> (mongodb::Database, mongodb::Collection<Document>) {
    let db = target.client.database(&common::unique_db(prefix));
    let collection = db.collection::<Document>("sales");
    collection
        .insert_many(vec![
            doc! { "_id": 1, "item": "a", "qty": 2, "price": 10.0 },
            doc! { "_id": 2, "item": "b", "qty": 1, "price": 20.0 },
            doc! { "_id": 3, "item": "a", "qty": 5, "price": 10.0 },
            doc! { "_id": 4, "item": "c", "qty": 3, "price": 5.0 },
        ])
        .await
        .unwrap();
    (db, collection)
}

#[tokio::test]
async fn match_group_sort_project() {
    for target in common::targets().await {
        let (db, collection) = seeded(&target, "agg").await;
        let result = run(
            &collection,
            vec![
                doc! { "$match": { "qty": { "$gte": 2 } } },
                doc! { "$group": {
                    "_id": "$item",
                    "total": { "$sum": { "$multiply": ["$qty", "$price"] } },
                    "count": { "$sum": 1 },
                    "maxQty": { "$max": "$qty" },
                    "avgQty": { "$avg": "$qty" },
                    "ids": { "$push": "$_id" },
                } },
                doc! { "$sort": { "total": -1 } },
                doc! { "$project": { "total": 1, "count": 1, "maxQty": 1, "avgQty": 1, "ids": 1 } },
            ],
        )
        .await;
        assert_eq!(
            result,
            vec![
                doc! { "_id": "a", "total": 70.0, "count": 2, "maxQty": 5, "avgQty": 3.5, "ids": [1, 3] },
                doc! { "_id": "c", "total": 15.0, "count": 1, "maxQty": 3, "avgQty": 3.0, "ids": [4] },
            ],
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn count_skip_limit() {
    for target in common::targets().await {
        let (db, collection) = seeded(&target, "aggcount").await;
        let result = run(
            &collection,
            vec![
                doc! { "$sort": { "_id": 1 } },
                doc! { "$skip": 1 },
                doc! { "$limit": 2 },
                doc! { "$count": "n" },
            ],
        )
        .await;
        assert_eq!(result, vec![doc! { "n": 2 }], "{}", target.name);
        let empty = run(
            &collection,
            vec![doc! { "$match": { "qty": 99 } }, doc! { "$count": "n" }],
        )
        .await;
        assert!(
            empty.is_empty(),
            "{}: $count of nothing returns no document",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn group_null_id_totals_everything() {
    for target in common::targets().await {
        let (db, collection) = seeded(&target, "aggnull").await;
        let result = run(
            &collection,
            vec![doc! { "$group": { "_id": Bson::Null, "qty": { "$sum": "$qty" }, "first": { "$first": "$item" } } }],
        )
        .await;
        assert_eq!(
            result,
            vec![doc! { "_id": Bson::Null, "qty": 11, "first": "a" }],
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn bucket_auto_splits_evenly() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("bucket"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many((0..10).map(|i| doc! { "_id": i, "v": i }))
            .await
            .unwrap();
        let result = run(
            &collection,
            vec![doc! { "$bucketAuto": { "groupBy": "$v", "buckets": 2 } }],
        )
        .await;
        assert_eq!(
            result,
            vec![
                doc! { "_id": { "min": 0, "max": 5 }, "count": 5 },
                doc! { "_id": { "min": 5, "max": 9 }, "count": 5 },
            ],
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn sample_returns_distinct_documents() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("sample"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many((0..50).map(|i| doc! { "_id": i }))
            .await
            .unwrap();
        let result = run(&collection, vec![doc! { "$sample": { "size": 10 } }]).await;
        let mut ids: Vec<i32> = result.iter().map(|d| d.get_i32("_id").unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn unknown_stage_is_40324_and_unknown_operator_168() {
    for target in common::targets().await {
        let (db, collection) = seeded(&target, "aggerr").await;
        let error = collection
            .aggregate(vec![doc! { "$noSuchStage": {} }])
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(40324), "{}", target.name);
        let error = collection
            .aggregate(vec![doc! { "$project": { "x": { "$noSuchOperator": 1 } } }])
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(168), "{}", target.name);
        db.drop().await.unwrap();
    }
}
