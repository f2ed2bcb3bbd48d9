//! The vcore personality: documented vCore limits that matter to a migration.

mod common;

use bson::{doc, Document};
use mongo_emulator::Personality;

#[tokio::test]
async fn advertises_vcore_batch_limit() {
    let (_emulator, client) = common::start_personality(Personality::VCore).await;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    assert_eq!(hello.get_i32("maxWriteBatchSize"), Ok(25_000));
    assert_eq!(hello.get_i32("maxBsonObjectSize"), Ok(16 * 1024 * 1024));
}

#[tokio::test]
async fn rejects_collation_indexes() {
    let (_emulator, client) = common::start_personality(Personality::VCore).await;
    let db = client.database("v");
    let error = db
        .run_command(doc! {
            "createIndexes": "c",
            "indexes": [ { "key": { "name": 1 }, "name": "ci", "collation": { "locale": "en", "strength": 2 } } ],
        })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&error), Some(67));
    let plain = db
        .run_command(
            doc! { "createIndexes": "c", "indexes": [ { "key": { "name": 1 }, "name": "n" } ] },
        )
        .await;
    assert!(plain.is_ok());
}

#[tokio::test]
async fn rejects_oversized_id() {
    let (_emulator, client) = common::start_personality(Personality::VCore).await;
    let collection = client.database("v").collection::<Document>("c");
    let error = collection
        .insert_one(doc! { "_id": "x".repeat(3000) })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&error), Some(2));
    collection
        .insert_one(doc! { "_id": "x".repeat(100) })
        .await
        .unwrap();
}

#[tokio::test]
async fn shard_collection_is_recorded() {
    let (_emulator, client) = common::start_personality(Personality::VCore).await;
    let admin = client.database("admin");
    admin
        .run_command(doc! { "shardCollection": "v.c", "key": { "tenant": "hashed" } })
        .await
        .unwrap();
    let recorded = admin
        .run_command(doc! { "emulatorRecordedCommands": 1 })
        .await
        .unwrap();
    let commands = recorded.get_array("commands").unwrap();
    assert_eq!(
        commands[0].as_document().unwrap(),
        &doc! { "shardCollection": "v.c", "key": { "tenant": "hashed" } }
    );
}

#[tokio::test]
async fn unique_index_over_duplicates_is_refused() {
    let (_emulator, client) = common::start_personality(Personality::VCore).await;
    let db = client.database("v");
    db.collection::<Document>("dups")
        .insert_many(vec![
            doc! { "_id": 100, "email": "dup@example.com" },
            doc! { "_id": 101, "email": "dup@example.com" },
        ])
        .await
        .unwrap();
    let error = db
        .run_command(doc! {
            "createIndexes": "dups",
            "indexes": [ { "key": { "email": 1 }, "name": "email_1", "unique": true } ],
        })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&error), Some(11000));
    // The collection keeps taking writes that the refused index would have blocked.
    db.collection::<Document>("dups")
        .insert_one(doc! { "_id": 102, "email": "dup@example.com" })
        .await
        .unwrap();
}
