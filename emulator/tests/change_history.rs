//! Bounded change history: resuming from before the oldest kept entry fails with 286 and the
//! NonResumableChangeStreamError label.

mod common;

use std::time::Duration;

use bson::{doc, Document};
use mongo_emulator::EmulatorOptions;
use mongodb::error::ErrorKind;

#[tokio::test]
async fn resuming_before_history_fails_with_286() {
    let (_emulator, client) = common::start(EmulatorOptions {
        history_size: 5,
        ..EmulatorOptions::default()
    })
    .await;
    let collection = client.database("history").collection::<Document>("c");
    collection.insert_one(doc! { "_id": 0 }).await.unwrap();
    let mut stream = collection
        .watch()
        .max_await_time(Duration::from_millis(50))
        .await
        .unwrap();
    collection.insert_one(doc! { "_id": 1 }).await.unwrap();
    let first = loop {
        if let Some(event) = stream.next_if_any().await.unwrap() {
            break event;
        }
    };
    let time = first.cluster_time.unwrap();
    collection
        .insert_many((2..20).map(|i| doc! { "_id": i }))
        .await
        .unwrap();

    let error = collection
        .watch()
        .resume_after(first.id.clone())
        .await
        .unwrap_err();
    let ErrorKind::Command(command) = error.kind.as_ref() else {
        panic!("expected a command error, got {error:?}");
    };
    assert_eq!(command.code, 286);
    assert_eq!(command.code_name, "ChangeStreamHistoryLost");
    assert!(error.contains_label("NonResumableChangeStreamError"));

    let error = collection
        .watch()
        .start_at_operation_time(time)
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&error), Some(286));

    // The open stream fell behind the kept history too; its next getMore reports the loss.
    let error = stream.next_if_any().await.unwrap_err();
    assert_eq!(common::error_code(&error), Some(286));
}
