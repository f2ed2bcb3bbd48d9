//! The cosmos-ru personality: Cosmos DB for MongoDB (RU) change streams, request-unit
//! throttling and getLastRequestStatistics.

mod common;

use std::time::Duration;

use bson::{doc, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongo_emulator::{EmulatorOptions, Personality};
use mongodb::error::ErrorKind;
use mongodb::options::FullDocumentType;
use mongodb::Client;

fn cosmos_pipeline() -> Vec<Document> {
    vec![
        doc! { "$match": { "operationType": { "$in": ["insert", "update", "replace"] } } },
        doc! { "$project": { "_id": 1, "fullDocument": 1, "ns": 1, "documentKey": 1 } },
    ]
}

async fn cosmos() -> (mongo_emulator::EmulatorHandle, Client) {
    common::start_personality(Personality::CosmosRu).await
}

#[tokio::test]
async fn reports_a_6_0_account_named_globaldb() {
    let (_emulator, client) = cosmos().await;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    assert_eq!(hello.get_i32("maxWireVersion"), Ok(17));
    assert_eq!(hello.get_str("setName"), Ok("globaldb"));
    let build = client
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await
        .unwrap();
    assert_eq!(build.get_str("version"), Ok("6.0.0"));
}

#[tokio::test]
async fn last_request_statistics_reports_charge() {
    let (_emulator, client) = cosmos().await;
    let db = client.database("ru");
    db.collection::<Document>("c")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    let stats = db
        .run_command(doc! { "getLastRequestStatistics": 1 })
        .await
        .unwrap();
    assert_eq!(stats.get_str("CommandName"), Ok("insert"));
    assert!(stats.get_f64("RequestCharge").unwrap() > 0.0);
}

#[tokio::test]
async fn skipped_documents_are_charged_as_reads() {
    let (_emulator, client) = cosmos().await;
    let db = client.database("ru");
    let padding = "x".repeat(1_500);
    let documents: Vec<Document> = (0..100)
        .map(|i| doc! { "_id": i, "padding": &padding })
        .collect();
    db.collection::<Document>("skips")
        .insert_many(documents)
        .await
        .unwrap();
    db.run_command(doc! {
        "find": "skips", "filter": {}, "sort": { "_id": 1 }, "skip": 50, "limit": 1,
        "projection": { "_id": 1 },
    })
    .await
    .unwrap();
    let stats = db
        .run_command(doc! { "getLastRequestStatistics": 1 })
        .await
        .unwrap();
    assert_eq!(stats.get_str("CommandName"), Ok("find"));
    // 51 documents of about 1.5 KB were read: the 50 skipped and the one returned.
    assert_eq!(stats.get_f64("RequestCharge"), Ok(102.0));
}

#[tokio::test]
async fn unreturned_reads_are_charged() {
    let (_emulator, client) = cosmos().await;
    let db = client.database("ru");
    let padding = "x".repeat(1_500);
    let documents: Vec<Document> = (0..100)
        .map(|i| doc! { "_id": i, "padding": &padding })
        .collect();
    let collection = db.collection::<Document>("reads");
    collection.insert_many(documents).await.unwrap();
    let last_charge = || async {
        db.run_command(doc! { "getLastRequestStatistics": 1 })
            .await
            .unwrap()
            .get_f64("RequestCharge")
            .unwrap()
    };

    // Every case reads all 100 documents of about 1.5 KB, 2 RU each.
    let nothing = doc! { "_id": { "$gte": 0 }, "padding": "no match" };
    let found = collection.find_one(nothing).await.unwrap();
    assert!(found.is_none());
    assert_eq!(last_charge().await, 200.0, "find that returns nothing");

    let counted = collection.count_documents(doc! {}).await.unwrap();
    assert_eq!(counted, 100);
    assert_eq!(last_charge().await, 200.0, "countDocuments");

    let reply = db
        .run_command(doc! { "count": "reads", "query": { "_id": { "$gte": 0 } }, "skip": 50 })
        .await
        .unwrap();
    assert_eq!(reply.get_i32("n"), Ok(50));
    assert_eq!(last_charge().await, 200.0, "count with a skip");
}

#[tokio::test]
async fn change_stream_accepts_only_the_documented_shape() {
    let (_emulator, client) = cosmos().await;
    let db = client.database("ru");
    let collection = db.collection::<Document>("c");
    collection.insert_one(doc! { "_id": 0 }).await.unwrap();

    let plain = collection.watch().await.unwrap_err();
    assert_eq!(common::error_code(&plain), Some(2));
    let ErrorKind::Command(command) = plain.kind.as_ref() else {
        panic!("expected a command error");
    };
    assert_eq!(
        command.message,
        "Change stream must be followed by a match and then a project stage"
    );
    let without_lookup = collection
        .watch()
        .pipeline(cosmos_pipeline())
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&without_lookup), Some(2));
    let database_level = db
        .watch()
        .pipeline(cosmos_pipeline())
        .full_document(FullDocumentType::UpdateLookup)
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&database_level), Some(2));
    let missing = db
        .collection::<Document>("absent")
        .watch()
        .pipeline(cosmos_pipeline())
        .full_document(FullDocumentType::UpdateLookup)
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&missing), Some(26));
}

#[tokio::test]
async fn change_events_use_cosmos_shape() {
    let (_emulator, client) = cosmos().await;
    let collection = client.database("ru").collection::<Document>("c");
    collection.insert_one(doc! { "_id": 0 }).await.unwrap();
    let mut stream = collection
        .watch()
        .pipeline(cosmos_pipeline())
        .full_document(FullDocumentType::UpdateLookup)
        .max_await_time(Duration::from_millis(50))
        .await
        .unwrap()
        .with_type::<RawDocumentBuf>();
    collection
        .insert_one(doc! { "_id": 1, "n": 0 })
        .await
        .unwrap();
    for _ in 0..3 {
        collection
            .update_one(doc! { "_id": 1 }, doc! { "$inc": { "n": 1 } })
            .await
            .unwrap();
    }
    collection.insert_one(doc! { "_id": 2 }).await.unwrap();
    collection.delete_one(doc! { "_id": 2 }).await.unwrap();

    let mut events = Vec::new();
    for _ in 0..20 {
        if let Some(event) = stream.next_if_any().await.unwrap() {
            events.push(event.to_document().unwrap());
        } else if !events.is_empty() {
            break;
        }
    }
    assert!(events.iter().all(|e| !e.contains_key("operationType")));
    assert!(events.iter().all(|e| !e.contains_key("updateDescription")));
    let keys: Vec<i32> = events
        .iter()
        .map(|e| {
            e.get_document("documentKey")
                .unwrap()
                .get_i32("_id")
                .unwrap()
        })
        .collect();
    assert_eq!(
        keys,
        vec![1, 2],
        "rapid updates merge into one event per document; no delete"
    );
    let first = &events[0];
    assert_eq!(
        first.get_document("fullDocument").unwrap(),
        &doc! { "_id": 1, "n": 3 }
    );
    assert_eq!(
        events[0].get_document("_id").unwrap(),
        events[1].get_document("_id").unwrap(),
        "every event of a batch carries the same resume token"
    );

    // Resuming from an event's token replays its whole batch.
    let token: mongodb::change_stream::event::ResumeToken =
        bson::from_document(doc! { "_id": events[0].get_document("_id").unwrap().clone() })
            .map(|wrapper: TokenWrapper| wrapper.id)
            .unwrap();
    let mut resumed = collection
        .watch()
        .pipeline(cosmos_pipeline())
        .full_document(FullDocumentType::UpdateLookup)
        .resume_after(token)
        .max_await_time(Duration::from_millis(50))
        .await
        .unwrap()
        .with_type::<RawDocumentBuf>();
    let mut replayed = Vec::new();
    for _ in 0..20 {
        if let Some(event) = resumed.next_if_any().await.unwrap() {
            replayed.push(event.to_document().unwrap());
        } else if !replayed.is_empty() {
            break;
        }
    }
    assert_eq!(replayed.len(), events.len(), "the batch is replayed whole");
}

#[derive(serde::Deserialize)]
struct TokenWrapper {
    #[serde(rename = "_id")]
    id: mongodb::change_stream::event::ResumeToken,
}

#[tokio::test]
async fn request_unit_budget_throttles_with_retry_after() {
    let (_emulator, client) = common::start(EmulatorOptions {
        personality: Personality::CosmosRu,
        ru_per_second: Some(100),
        ..EmulatorOptions::default()
    })
    .await;
    let db = client.database("ru");
    let collection = db.collection::<Document>("c");
    let documents: Vec<Document> = (0..100).map(|i| doc! { "_id": i }).collect();
    let error = collection
        .insert_many(documents)
        .ordered(false)
        .await
        .unwrap_err();
    let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
        panic!("expected per-document write errors, got {error:?}");
    };
    let errors = failure.write_errors.as_ref().unwrap();
    assert!(errors.iter().all(|e| e.code == 16500));
    assert!(errors[0].message.contains("RetryAfterMs="));
    let committed = 100 - errors.len();
    assert!(
        committed > 0,
        "the documents before the budget ran out were committed"
    );

    db.run_command(doc! { "emulatorSetRuPerSecond": 0 })
        .await
        .unwrap();
    let count = collection.count_documents(doc! {}).await.unwrap();
    assert_eq!(count as usize, committed);

    // With one request unit per second, a burst of reads must be throttled. The budget window
    // may roll over once during the burst, so several reads are tried.
    db.run_command(doc! { "emulatorSetRuPerSecond": 1 })
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        if let Err(error) = collection.find_one(doc! {}).await {
            codes.push(common::error_code(&error));
        }
    }
    assert!(!codes.is_empty(), "no read was throttled");
    assert!(codes.iter().all(|c| *c == Some(16500)), "{codes:?}");
}

/// A read larger than the whole budget must still get through while small writes use part of
/// every window, as an application's writes do during a migration's planning read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_read_beside_steady_writes() {
    let (_emulator, client) = common::start(EmulatorOptions {
        personality: Personality::CosmosRu,
        ..EmulatorOptions::default()
    })
    .await;
    let collection = client.database("ru").collection::<Document>("big");
    let documents: Vec<Document> = (0..3_000).map(|i| doc! { "_id": i }).collect();
    collection.insert_many(documents).await.unwrap();
    // Reading every document costs 3,000 units, three times the budget.
    client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 1_000 })
        .await
        .unwrap();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = {
        let collection = client.database("ru").collection::<Document>("small");
        tokio::spawn(async move {
            let mut writes = 0u64;
            while !*stopped.borrow() && writes < 100_000 {
                // Throttled writes are expected once the window is spent; they only keep
                // the load steady.
                let _ = collection
                    .update_one(doc! { "_id": 1 }, doc! { "$inc": { "n": 1 } })
                    .upsert(true)
                    .await;
                writes += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let mut read = None;
    let mut throttled = Vec::new();
    for _ in 0..20 {
        match collection.find(doc! {}).await {
            Ok(cursor) => {
                read = Some(cursor.try_collect::<Vec<Document>>().await.unwrap());
                break;
            }
            Err(error) => {
                throttled.push(common::error_code(&error));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    stop.send(true).unwrap();
    writer.await.unwrap();

    assert!(
        throttled.iter().all(|code| *code == Some(16500)),
        "{throttled:?}"
    );
    let read = read.unwrap_or_else(|| panic!("20 reads were throttled: {throttled:?}"));
    assert_eq!(read.len(), 3_000);
}
