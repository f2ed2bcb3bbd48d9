//! Conformance: inserts, finds, updates and deletes. Runs on the emulator and, when
//! `MONGODB_TEST_URI` is set, on that real server too.

mod common;

use bson::{doc, oid::ObjectId, Bson, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::error::ErrorKind;

#[tokio::test]
async fn handshake_reports_replica_set_primary() {
    for target in common::targets().await {
        let hello = target
            .client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .unwrap();
        assert_eq!(
            hello.get_bool("isWritablePrimary"),
            Ok(true),
            "{}",
            target.name
        );
        assert!(hello.get_str("setName").is_ok(), "{}: setName", target.name);
        assert!(
            hello.get("logicalSessionTimeoutMinutes").is_some(),
            "{}",
            target.name
        );
        assert!(
            hello.get_i32("maxWireVersion").unwrap() >= 8,
            "{}",
            target.name
        );
        let ping = target
            .client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .unwrap();
        assert_eq!(ping.get_f64("ok"), Ok(1.0));
    }
}

#[tokio::test]
async fn raw_documents_round_trip_byte_for_byte() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("raw"));
        let collection = db.collection::<RawDocumentBuf>("c");
        let original = bson::rawdoc! {
            "_id": 1,
            "z": "last letter first",
            "big": 9_007_199_254_740_993i64,
            "decimal": "1.10".parse::<bson::Decimal128>().unwrap(),
            "nan": f64::NAN,
            "old": bson::DateTime::from_millis(-62_135_596_800_000),
            "uuid3": bson::Binary { subtype: bson::spec::BinarySubtype::UuidOld, bytes: vec![7; 16] },
            "dotted.key": 1,
            "nested": { "b": 2, "a": 1 },
        };
        collection.insert_one(original.clone()).await.unwrap();
        let found = collection
            .find_one(doc! { "_id": 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.as_bytes(), original.as_bytes(), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn id_moves_to_front_and_is_generated() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("idfront"));
        db.run_command(doc! { "insert": "c", "documents": [ { "a": 1, "_id": 5 } ] })
            .await
            .unwrap();
        let found = db
            .collection::<Document>("c")
            .find_one(doc! {})
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            found.keys().next().map(String::as_str),
            Some("_id"),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn unordered_insert_reports_each_duplicate() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("dups"));
        let collection = db.collection::<Document>("c");
        collection.insert_one(doc! { "_id": 2 }).await.unwrap();
        let error = collection
            .insert_many(vec![
                doc! { "_id": 1 },
                doc! { "_id": 2 },
                doc! { "_id": 3 },
                doc! { "_id": 1 },
            ])
            .ordered(false)
            .await
            .unwrap_err();
        let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
            panic!(
                "{}: expected an insert-many error, got {error:?}",
                target.name
            );
        };
        let errors = failure.write_errors.as_ref().unwrap();
        let indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![1, 3], "{}", target.name);
        assert!(errors.iter().all(|e| e.code == 11000), "{}", target.name);
        assert_eq!(
            collection.count_documents(doc! {}).await.unwrap(),
            3,
            "{}",
            target.name
        );

        // The driver drops keyPattern and keyValue, so read them from the raw reply.
        let reply = db
            .run_command(doc! { "insert": "c", "documents": [ { "_id": 2 } ], "ordered": false })
            .await
            .unwrap();
        let entry = reply.get_array("writeErrors").unwrap()[0]
            .as_document()
            .unwrap()
            .clone();
        assert_eq!(entry.get_i32("code"), Ok(11000), "{}", target.name);
        assert_eq!(
            entry.get_document("keyPattern"),
            Ok(&doc! { "_id": 1 }),
            "{}",
            target.name
        );
        assert_eq!(
            entry.get_document("keyValue"),
            Ok(&doc! { "_id": 2 }),
            "{}",
            target.name
        );
        assert!(
            entry
                .get_str("errmsg")
                .unwrap()
                .starts_with("E11000 duplicate key error"),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn ordered_insert_stops_at_first_error() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("ordered"));
        let collection = db.collection::<Document>("c");
        let error = collection
            .insert_many(vec![
                doc! { "_id": 1 },
                doc! { "_id": 1 },
                doc! { "_id": 2 },
            ])
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(11000), "{}", target.name);
        assert_eq!(
            collection.count_documents(doc! {}).await.unwrap(),
            1,
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn unique_index_rejects_duplicates() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("unique"));
        let collection = db.collection::<Document>("c");
        collection
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(doc! { "email": 1 })
                    .options(
                        mongodb::options::IndexOptions::builder()
                            .unique(true)
                            .build(),
                    )
                    .build(),
            )
            .await
            .unwrap();
        collection
            .insert_one(doc! { "_id": 1, "email": "a@x" })
            .await
            .unwrap();
        let error = collection
            .insert_one(doc! { "_id": 2, "email": "a@x" })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(11000), "{}", target.name);
        let error = collection
            .update_one(doc! { "_id": 1 }, doc! { "$set": { "email": "b@x" } })
            .await;
        assert!(
            error.is_ok(),
            "{}: changing the own key is allowed",
            target.name
        );
        collection
            .insert_one(doc! { "_id": 3, "email": "a@x" })
            .await
            .unwrap();
        let names: Vec<String> = collection.list_index_names().await.unwrap();
        assert!(
            names.contains(&"email_1".to_string()),
            "{}: {names:?}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn find_with_filter_sort_projection_skip_limit() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("find"));
        let collection = db.collection::<Document>("c");
        let documents: Vec<Document> = (0..20)
            .map(|i| doc! { "_id": i, "group": i % 3, "value": 100 - i, "tags": ["t", format!("n{i}")] })
            .collect();
        collection.insert_many(documents).await.unwrap();
        let found: Vec<Document> = collection
            .find(doc! { "group": { "$in": [0, 2] }, "value": { "$lte": 95 } })
            .sort(doc! { "value": 1 })
            .projection(doc! { "value": 1, "_id": 0 })
            .skip(1)
            .limit(3)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            found,
            vec![
                doc! { "value": 83 },
                doc! { "value": 85 },
                doc! { "value": 86 }
            ],
            "{}",
            target.name
        );
        let tagged = collection
            .count_documents(doc! { "tags": "n7", "$or": [ { "group": 1 }, { "value": 0 } ] })
            .await
            .unwrap();
        assert_eq!(tagged, 1, "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn updates_upserts_and_deletes() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("update"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![doc! { "_id": 1, "n": 1 }, doc! { "_id": 2, "n": 2 }])
            .await
            .unwrap();
        let result = collection
            .update_many(
                doc! {},
                doc! { "$inc": { "n": 10 }, "$push": { "log": "inc" } },
            )
            .await
            .unwrap();
        assert_eq!(
            (result.matched_count, result.modified_count),
            (2, 2),
            "{}",
            target.name
        );
        let result = collection
            .update_one(
                doc! { "_id": 3 },
                doc! { "$set": { "n": 3 }, "$setOnInsert": { "created": true } },
            )
            .upsert(true)
            .await
            .unwrap();
        assert_eq!(result.upserted_id, Some(Bson::Int32(3)), "{}", target.name);
        let created = collection
            .find_one(doc! { "_id": 3 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            created,
            doc! { "_id": 3, "n": 3, "created": true },
            "{}",
            target.name
        );
        collection
            .replace_one(doc! { "_id": 1 }, doc! { "replaced": true })
            .await
            .unwrap();
        let replaced = collection
            .find_one(doc! { "_id": 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            replaced,
            doc! { "_id": 1, "replaced": true },
            "{}",
            target.name
        );
        let unset = collection
            .update_one(doc! { "_id": 2 }, doc! { "$unset": { "log": "" } })
            .await
            .unwrap();
        assert_eq!(unset.modified_count, 1, "{}", target.name);
        let deleted = collection
            .delete_many(doc! { "n": { "$gte": 3 } })
            .await
            .unwrap();
        assert_eq!(deleted.deleted_count, 2, "{}", target.name);
        let error = collection
            .update_one(doc! { "_id": 1 }, doc! { "$set": { "_id": 9 } })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(66), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn cursor_survives_many_get_mores() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("cursor"));
        let collection = db.collection::<Document>("c");
        let documents: Vec<Document> = (0..1000).map(|i| doc! { "_id": i }).collect();
        collection.insert_many(documents).await.unwrap();
        let ids: Vec<i32> = collection
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .batch_size(7)
            .await
            .unwrap()
            .map_ok(|d| d.get_i32("_id").unwrap())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ids, (0..1000).collect::<Vec<_>>(), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn get_more_on_unknown_cursor_is_43() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("nocursor"));
        let error = db
            .run_command(doc! { "getMore": 123_456_789i64, "collection": "c" })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(43), "{}", target.name);
    }
}

#[tokio::test]
async fn object_ids_sort_in_creation_order() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("oid"));
        let collection = db.collection::<Document>("c");
        let ids: Vec<ObjectId> = (0..5).map(|_| ObjectId::new()).collect();
        for id in ids.iter().rev() {
            collection.insert_one(doc! { "_id": id }).await.unwrap();
        }
        let found: Vec<ObjectId> = collection
            .find(doc! { "_id": { "$gt": ids[1] } })
            .sort(doc! { "_id": 1 })
            .await
            .unwrap()
            .map_ok(|d| d.get_object_id("_id").unwrap())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(found, ids[2..].to_vec(), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn update_without_upsert_creates_nothing() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("noupsert"));
        let result = db
            .collection::<Document>("absent")
            .update_one(doc! { "_id": 1 }, doc! { "$set": { "a": 1 } })
            .await
            .unwrap();
        assert_eq!(result.matched_count, 0, "{}", target.name);
        let names = db.list_collection_names().await.unwrap();
        assert!(names.is_empty(), "{}: {names:?}", target.name);
        let empty = db
            .run_command(doc! { "insert": "c", "documents": [] })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&empty), Some(16), "{}", target.name);
    }
}

#[tokio::test]
async fn projected_cursor_spans_many_batches() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("projbatches"));
        let collection = db.collection::<Document>("c");
        let documents: Vec<Document> = (0..2_500)
            .map(|i| doc! { "_id": i, "payload": "x".repeat(200), "n": i * 2 })
            .collect();
        collection.insert_many(documents).await.unwrap();

        let found: Vec<Document> = collection
            .find(doc! {})
            .projection(doc! { "n": 1 })
            .sort(doc! { "_id": 1 })
            .batch_size(300)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let expected: Vec<Document> = (0..2_500).map(|i| doc! { "_id": i, "n": i * 2 }).collect();
        assert_eq!(found, expected, "{}", target.name);
        db.drop().await.unwrap();
    }
}
