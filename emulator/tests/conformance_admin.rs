//! Conformance: databases, collections, indexes, statistics and command errors.

mod common;

use bson::{doc, Document};
use futures::TryStreamExt;

#[tokio::test]
async fn list_collections_filters_by_name_and_name_only() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("listcoll"));
        db.create_collection("alpha").await.unwrap();
        db.create_collection("beta").await.unwrap();
        let names = db.list_collection_names().await.unwrap();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["alpha", "beta"], "{}", target.name);
        let filtered: Vec<_> = db
            .list_collections()
            .filter(doc! { "name": "beta" })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(filtered.len(), 1, "{}", target.name);
        assert_eq!(filtered[0].name, "beta");
        let reply = db
            .run_command(
                doc! { "listCollections": 1, "nameOnly": true, "filter": { "name": "alpha" } },
            )
            .await
            .unwrap();
        let batch = reply
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap();
        let entry = batch[0].as_document().unwrap();
        assert_eq!(entry.get_str("name"), Ok("alpha"), "{}", target.name);
        assert!(
            entry.get("options").is_none(),
            "{}: nameOnly omits options",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn create_drop_and_list_databases() {
    for target in common::targets().await {
        let name = common::unique_db("dbs");
        let db = target.client.database(&name);
        db.collection::<Document>("c")
            .insert_one(doc! { "x": 1 })
            .await
            .unwrap();
        let names = target.client.list_database_names().await.unwrap();
        assert!(names.contains(&name), "{}: {names:?}", target.name);
        let error = db.run_command(doc! { "create": "c" }).await;
        assert!(error.is_ok() || common::error_code(&error.unwrap_err()) == Some(48));
        let error = db
            .run_command(doc! { "create": "c", "capped": true, "size": 4096 })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(48), "{}", target.name);
        db.drop().await.unwrap();
        let names = target.client.list_database_names().await.unwrap();
        assert!(!names.contains(&name), "{}", target.name);
    }
}

#[tokio::test]
async fn rename_collection_moves_documents() {
    for target in common::targets().await {
        let name = common::unique_db("rename");
        let db = target.client.database(&name);
        db.collection::<Document>("old")
            .insert_one(doc! { "_id": 1 })
            .await
            .unwrap();
        target
            .client
            .database("admin")
            .run_command(
                doc! { "renameCollection": format!("{name}.old"), "to": format!("{name}.new") },
            )
            .await
            .unwrap();
        let count = db
            .collection::<Document>("new")
            .count_documents(doc! {})
            .await
            .unwrap();
        assert_eq!(count, 1, "{}", target.name);
        let error = target
            .client
            .database("admin")
            .run_command(
                doc! { "renameCollection": format!("{name}.old"), "to": format!("{name}.x") },
            )
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(26), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn index_lifecycle() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("indexes"));
        let reply = db
            .run_command(doc! {
                "createIndexes": "c",
                "indexes": [ { "key": { "a": 1, "b": -1 }, "name": "ab" } ],
            })
            .await
            .unwrap();
        assert_eq!(
            reply.get_bool("createdCollectionAutomatically"),
            Ok(true),
            "{}",
            target.name
        );
        assert_eq!(reply.get_i32("numIndexesAfter"), Ok(2), "{}", target.name);
        let again = db
            .run_command(doc! { "createIndexes": "c", "indexes": [ { "key": { "a": 1, "b": -1 }, "name": "ab" } ] })
            .await
            .unwrap();
        assert_eq!(again.get_i32("numIndexesAfter"), Ok(2), "{}", target.name);
        let conflict = db
            .run_command(
                doc! { "createIndexes": "c", "indexes": [ { "key": { "z": 1 }, "name": "ab" } ] },
            )
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&conflict), Some(86), "{}", target.name);
        let listed: Vec<_> = db
            .collection::<Document>("c")
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "{}", target.name);
        assert_eq!(listed[1].keys, doc! { "a": 1, "b": -1 }, "{}", target.name);
        db.run_command(doc! { "dropIndexes": "c", "index": "ab" })
            .await
            .unwrap();
        let missing = db
            .run_command(doc! { "dropIndexes": "c", "index": "ab" })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&missing), Some(27), "{}", target.name);
        let id_index = db
            .run_command(doc! { "dropIndexes": "c", "index": "_id_" })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&id_index), Some(72), "{}", target.name);
        let no_collection = db
            .run_command(doc! { "listIndexes": "missing" })
            .await
            .unwrap_err();
        assert_eq!(
            common::error_code(&no_collection),
            Some(26),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn stats_report_counts_and_sizes() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("stats"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many((0..10).map(|i| doc! { "_id": i, "pad": "x".repeat(100) }))
            .await
            .unwrap();
        let stats = db.run_command(doc! { "collStats": "c" }).await.unwrap();
        assert_eq!(
            stats
                .get("count")
                .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from))),
            Some(10),
            "{}",
            target.name
        );
        let size = stats.get("size").unwrap();
        let size = size
            .as_i64()
            .or(size.as_i32().map(i64::from))
            .or(size.as_f64().map(|f| f as i64))
            .unwrap();
        assert!(size >= 10 * 100, "{}: size {size}", target.name);
        let db_stats = db.run_command(doc! { "dbStats": 1 }).await.unwrap();
        let objects = db_stats.get("objects").unwrap();
        let objects = objects
            .as_i64()
            .or(objects.as_i32().map(i64::from))
            .unwrap();
        assert_eq!(objects, 10, "{}", target.name);
        let counted = db
            .run_command(doc! { "count": "c", "query": { "_id": { "$lt": 4 } } })
            .await
            .unwrap();
        assert_eq!(counted.get_i32("n"), Ok(4), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn kill_cursors_reports_killed_ids() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("kill"));
        db.collection::<Document>("c")
            .insert_many((0..10).map(|i| doc! { "_id": i }))
            .await
            .unwrap();
        let reply = db
            .run_command(doc! { "find": "c", "batchSize": 2 })
            .await
            .unwrap();
        let id = reply.get_document("cursor").unwrap().get_i64("id").unwrap();
        assert_ne!(id, 0, "{}", target.name);
        let killed = db
            .run_command(doc! { "killCursors": "c", "cursors": [id] })
            .await
            .unwrap();
        assert_eq!(
            killed.get_array("cursorsKilled").unwrap().len(),
            1,
            "{}",
            target.name
        );
        let error = db
            .run_command(doc! { "getMore": id, "collection": "c" })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(43), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn unknown_command_is_59() {
    for target in common::targets().await {
        let error = target
            .client
            .database("admin")
            .run_command(doc! { "noSuchCommandAnywhere": 1 })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(59), "{}", target.name);
        let error = target
            .client
            .database("admin")
            .run_command(doc! { "getLastRequestStatistics": 1 })
            .await
            .unwrap_err();
        assert_eq!(
            common::error_code(&error),
            Some(59),
            "{}: only Cosmos DB RU has it",
            target.name
        );
    }
}

#[tokio::test]
async fn bad_hint_is_rejected() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("hint"));
        let collection = db.collection::<Document>("c");
        collection.insert_one(doc! { "_id": 1 }).await.unwrap();
        let ok: Vec<Document> = collection
            .find(doc! { "_id": { "$gte": 0 } })
            .hint(mongodb::options::Hint::Keys(doc! { "_id": 1 }))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ok.len(), 1, "{}", target.name);
        let error = collection
            .find(doc! {})
            .hint(mongodb::options::Hint::Name("nope".into()))
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(2), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn unique_index_over_duplicates_is_refused() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("uniquedup"));
        db.collection::<Document>("c")
            .insert_many(vec![
                doc! { "_id": 1, "email": "dup@example.com" },
                doc! { "_id": 2, "email": "dup@example.com" },
            ])
            .await
            .unwrap();
        let error = db
            .run_command(doc! {
                "createIndexes": "c",
                "indexes": [ { "key": { "email": 1 }, "name": "email_1", "unique": true } ],
            })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(11000), "{}", target.name);
        let listed: Vec<_> = db
            .collection::<Document>("c")
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "only _id_ remains on {}", target.name);
        db.drop().await.unwrap();
    }
}
