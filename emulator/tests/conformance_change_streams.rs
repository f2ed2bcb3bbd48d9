//! Conformance: change streams on a collection, a database and the cluster, every event type,
//! and resuming from every kind of start point.

mod common;

use std::time::Duration;

use bson::{doc, Document};
use futures::StreamExt;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::change_stream::ChangeStream;
use mongodb::options::FullDocumentType;

type Events = ChangeStream<ChangeStreamEvent<Document>>;

/// Reads the next event, polling with short awaits; fails after 50 empty batches.
async fn next_event(stream: &mut Events) -> ChangeStreamEvent<Document> {
    for _ in 0..50 {
        if let Some(event) = stream.next_if_any().await.unwrap() {
            return event;
        }
    }
    panic!("no change event arrived");
}

fn fast(options: mongodb::action::Watch<'_, Document>) -> mongodb::action::Watch<'_, Document> {
    options.max_await_time(Duration::from_millis(100))
}

#[tokio::test]
async fn collection_stream_reports_every_write() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("cs"));
        let collection = db.collection::<Document>("c");
        db.create_collection("c").await.unwrap();
        let mut stream = fast(collection.watch()).await.unwrap();
        collection
            .insert_one(doc! { "_id": 1, "a": 1 })
            .await
            .unwrap();
        collection
            .update_one(
                doc! { "_id": 1 },
                doc! { "$set": { "a": 2, "b": { "c": 1 } } },
            )
            .await
            .unwrap();
        collection
            .replace_one(doc! { "_id": 1 }, doc! { "z": true })
            .await
            .unwrap();
        collection.delete_one(doc! { "_id": 1 }).await.unwrap();

        let insert = next_event(&mut stream).await;
        assert_eq!(
            insert.operation_type,
            OperationType::Insert,
            "{}",
            target.name
        );
        assert_eq!(
            insert.full_document,
            Some(doc! { "_id": 1, "a": 1 }),
            "{}",
            target.name
        );
        assert_eq!(
            insert.document_key,
            Some(doc! { "_id": 1 }),
            "{}",
            target.name
        );
        assert!(insert.cluster_time.is_some(), "{}", target.name);
        let ns = insert.ns.as_ref().unwrap();
        assert_eq!(ns.coll.as_deref(), Some("c"), "{}", target.name);

        let update = next_event(&mut stream).await;
        assert_eq!(
            update.operation_type,
            OperationType::Update,
            "{}",
            target.name
        );
        assert_eq!(
            update.full_document, None,
            "{}: default mode has no post-image",
            target.name
        );
        let description = update.update_description.unwrap();
        assert_eq!(
            description.updated_fields,
            doc! { "a": 2, "b": { "c": 1 } },
            "{}",
            target.name
        );
        assert!(description.removed_fields.is_empty(), "{}", target.name);

        let replace = next_event(&mut stream).await;
        assert_eq!(
            replace.operation_type,
            OperationType::Replace,
            "{}",
            target.name
        );
        assert_eq!(
            replace.full_document,
            Some(doc! { "_id": 1, "z": true }),
            "{}",
            target.name
        );

        let delete = next_event(&mut stream).await;
        assert_eq!(
            delete.operation_type,
            OperationType::Delete,
            "{}",
            target.name
        );
        assert_eq!(
            delete.document_key,
            Some(doc! { "_id": 1 }),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn update_lookup_returns_current_document() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("lookup"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_one(doc! { "_id": 1, "n": 0 })
            .await
            .unwrap();
        let mut stream = fast(collection.watch())
            .full_document(FullDocumentType::UpdateLookup)
            .await
            .unwrap();
        collection
            .update_one(doc! { "_id": 1 }, doc! { "$inc": { "n": 1 } })
            .await
            .unwrap();
        let update = next_event(&mut stream).await;
        assert_eq!(
            update.full_document,
            Some(doc! { "_id": 1, "n": 1 }),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn resume_from_every_start_point() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("resume"));
        let collection = db.collection::<Document>("c");
        db.create_collection("c").await.unwrap();
        let mut stream = fast(collection.watch()).await.unwrap();
        collection.insert_one(doc! { "_id": 1 }).await.unwrap();
        let first = next_event(&mut stream).await;
        collection.insert_one(doc! { "_id": 2 }).await.unwrap();
        collection.insert_one(doc! { "_id": 3 }).await.unwrap();

        let mut resumed = fast(collection.watch())
            .resume_after(first.id.clone())
            .await
            .unwrap();
        let second = next_event(&mut resumed).await;
        assert_eq!(
            second.document_key,
            Some(doc! { "_id": 2 }),
            "{}: resumeAfter",
            target.name
        );

        let mut started = fast(collection.watch())
            .start_after(first.id.clone())
            .await
            .unwrap();
        let second = next_event(&mut started).await;
        assert_eq!(
            second.document_key,
            Some(doc! { "_id": 2 }),
            "{}: startAfter",
            target.name
        );

        let time = first.cluster_time.unwrap();
        let mut at_time = fast(collection.watch())
            .start_at_operation_time(time)
            .await
            .unwrap();
        let again = next_event(&mut at_time).await;
        assert_eq!(
            again.document_key,
            Some(doc! { "_id": 1 }),
            "{}: startAtOperationTime is inclusive",
            target.name
        );

        // A token taken from an idle batch resumes after everything seen so far.
        next_event(&mut stream).await;
        next_event(&mut stream).await;
        assert!(stream.next_if_any().await.unwrap().is_none());
        let idle_token = stream.resume_token().unwrap();
        collection.insert_one(doc! { "_id": 4 }).await.unwrap();
        let mut from_idle = fast(collection.watch())
            .resume_after(idle_token)
            .await
            .unwrap();
        let fourth = next_event(&mut from_idle).await;
        assert_eq!(
            fourth.document_key,
            Some(doc! { "_id": 4 }),
            "{}: idle token",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn drop_invalidates_and_start_after_continues() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("invalidate"));
        let collection = db.collection::<Document>("c");
        collection.insert_one(doc! { "_id": 1 }).await.unwrap();
        let mut stream = fast(collection.watch()).await.unwrap();
        collection.drop().await.unwrap();
        let dropped = next_event(&mut stream).await;
        assert_eq!(
            dropped.operation_type,
            OperationType::Drop,
            "{}",
            target.name
        );
        let invalidate = next_event(&mut stream).await;
        assert_eq!(
            invalidate.operation_type,
            OperationType::Invalidate,
            "{}",
            target.name
        );
        assert!(
            !stream.is_alive(),
            "{}: the cursor closes after invalidate",
            target.name
        );

        let error = collection
            .watch()
            .resume_after(invalidate.id.clone())
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(260), "{}", target.name);

        let mut after = fast(collection.watch())
            .start_after(invalidate.id.clone())
            .await
            .unwrap();
        collection.insert_one(doc! { "_id": 2 }).await.unwrap();
        let insert = next_event(&mut after).await;
        assert_eq!(
            insert.document_key,
            Some(doc! { "_id": 2 }),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn database_and_cluster_streams_span_collections() {
    for target in common::targets().await {
        let name = common::unique_db("dbstream");
        let db = target.client.database(&name);
        db.create_collection("a").await.unwrap();
        let mut database_stream = fast(db.watch()).await.unwrap();
        let mut cluster_stream = target
            .client
            .watch()
            .max_await_time(Duration::from_millis(100))
            .await
            .unwrap();
        db.collection::<Document>("a")
            .insert_one(doc! { "_id": 1 })
            .await
            .unwrap();
        db.collection::<Document>("b")
            .insert_one(doc! { "_id": 2 })
            .await
            .unwrap();
        let first = next_event(&mut database_stream).await;
        let second = next_event(&mut database_stream).await;
        let collections: Vec<_> = [first, second]
            .iter()
            .map(|e| e.ns.as_ref().unwrap().coll.clone().unwrap())
            .collect();
        assert_eq!(collections, vec!["a", "b"], "{}", target.name);

        let mut seen = Vec::new();
        while seen.len() < 2 {
            let event = next_event(&mut cluster_stream).await;
            let ns = event.ns.unwrap();
            if ns.db == name {
                seen.push(ns.coll.unwrap());
            }
        }
        assert_eq!(seen, vec!["a", "b"], "{}", target.name);

        target
            .client
            .database("admin")
            .run_command(
                doc! { "renameCollection": format!("{name}.a"), "to": format!("{name}.renamed") },
            )
            .await
            .unwrap();
        let rename = next_event(&mut database_stream).await;
        assert_eq!(
            rename.operation_type,
            OperationType::Rename,
            "{}",
            target.name
        );
        assert_eq!(
            rename.to.unwrap().coll.as_deref(),
            Some("renamed"),
            "{}",
            target.name
        );
        db.drop().await.unwrap();
        let mut kinds = Vec::new();
        while !kinds.contains(&OperationType::Invalidate) {
            kinds.push(next_event(&mut database_stream).await.operation_type);
        }
        assert!(
            kinds.contains(&OperationType::DropDatabase),
            "{}: {kinds:?}",
            target.name
        );
    }
}

#[tokio::test]
async fn every_batch_carries_post_batch_resume_token() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("pbrt"));
        db.create_collection("c").await.unwrap();
        let reply = db
            .run_command(
                doc! { "aggregate": "c", "pipeline": [ { "$changeStream": {} } ], "cursor": {} },
            )
            .await
            .unwrap();
        let cursor = reply.get_document("cursor").unwrap();
        assert!(
            cursor.get_document("postBatchResumeToken").is_ok(),
            "{}: first batch",
            target.name
        );
        let id = cursor.get_i64("id").unwrap();
        let more = db
            .run_command(doc! { "getMore": id, "collection": "c", "maxTimeMS": 10 })
            .await
            .unwrap();
        let cursor = more.get_document("cursor").unwrap();
        assert!(
            cursor.get_array("nextBatch").unwrap().is_empty(),
            "{}",
            target.name
        );
        assert!(
            cursor.get_document("postBatchResumeToken").is_ok(),
            "{}: empty batch",
            target.name
        );
        db.run_command(doc! { "killCursors": "c", "cursors": [id] })
            .await
            .unwrap();
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn get_more_waits_for_a_later_write() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("await"));
        let collection = db.collection::<Document>("c");
        db.create_collection("c").await.unwrap();
        let mut stream = collection
            .watch()
            .max_await_time(Duration::from_secs(5))
            .await
            .unwrap();
        let writer = collection.clone();
        let write = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.insert_one(doc! { "_id": "late" }).await.unwrap();
        });
        let event = stream.next().await.unwrap().unwrap();
        assert_eq!(
            event.document_key,
            Some(doc! { "_id": "late" }),
            "{}",
            target.name
        );
        write.await.unwrap();
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn injected_get_more_failure_is_resumed() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("csfail"));
        let collection = db.collection::<Document>("c");
        db.create_collection("c").await.unwrap();
        let mut stream = fast(collection.watch()).await.unwrap();
        collection.insert_one(doc! { "_id": 1 }).await.unwrap();
        target
            .client
            .database("admin")
            .run_command(doc! {
                "configureFailPoint": "failCommand",
                "mode": { "times": 1 },
                "data": { "failCommands": ["getMore"], "errorCode": 6 },
            })
            .await
            .unwrap();
        // The driver receives ResumableChangeStreamError, reopens the stream from its token and
        // still delivers the event.
        let event = next_event(&mut stream).await;
        assert_eq!(
            event.document_key,
            Some(doc! { "_id": 1 }),
            "{}",
            target.name
        );
        target
            .client
            .database("admin")
            .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
            .await
            .unwrap();
        db.drop().await.unwrap();
    }
}
