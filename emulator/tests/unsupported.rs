//! Features the emulator does not implement fail with a real MongoDB error instead of
//! pretending to succeed.

mod common;

use bson::{doc, Document};

#[tokio::test]
async fn transactions_fail_with_illegal_operation() {
    let (_emulator, client) = common::start_default().await;
    let collection = client.database("tx").collection::<Document>("c");
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let error = collection
        .insert_one(doc! { "_id": 1 })
        .session(&mut session)
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&error), Some(20));
    assert_eq!(
        collection.count_documents(doc! {}).await.unwrap(),
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn unsupported_features_report_errors() {
    let (_emulator, client) = common::start_default().await;
    let db = client.database("unsupported");
    let collection = db.collection::<Document>("c");
    collection
        .insert_one(doc! { "_id": 1, "list": [1] })
        .await
        .unwrap();

    let explain = db
        .run_command(doc! { "aggregate": "c", "pipeline": [], "explain": true })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&explain), Some(115));
    let positional = collection
        .update_one(doc! { "list": 1 }, doc! { "$set": { "list.$": 2 } })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&positional), Some(115));
    let unknown_modifier = collection
        .update_one(doc! { "_id": 1 }, doc! { "$bogus": { "a": 1 } })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&unknown_modifier), Some(9));
    let tailable = db
        .run_command(doc! { "find": "c", "tailable": true })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&tailable), Some(2));
}
