//! The BSON type corpus and the comparison against real emulators on 127.0.0.1.

use bson::{doc, Bson, Document, RawDocumentBuf};
use mongo_emulator::{EmulatorOptions, Personality};
use mongodb::{Client, Collection};
use vcore_migrate_demo::compare::{compare_collections, render_id};
use vcore_migrate_demo::corpus;

async fn emulator_client(personality: Personality) -> (mongo_emulator::EmulatorHandle, Client) {
    let emulator = mongo_emulator::start(EmulatorOptions {
        personality,
        ..EmulatorOptions::default()
    })
    .await
    .expect("emulator starts");
    let client = Client::with_uri_str(emulator.uri())
        .await
        .expect("client connects");
    (emulator, client)
}

fn raw_corpus() -> Vec<RawDocumentBuf> {
    corpus::documents()
        .iter()
        .map(|d| RawDocumentBuf::from_document(d).expect("corpus encodes"))
        .collect()
}

/// Inserts each corpus document on its own, so a rejected one is named.
async fn insert_each(collection: &Collection<RawDocumentBuf>, documents: &[RawDocumentBuf]) {
    for document in documents {
        if let Err(error) = collection.insert_one(document.clone()).await {
            panic!("inserting _id {} failed: {error}", render_id(document));
        }
    }
}

async fn corpus_round_trips(personality: Personality) {
    let (_emulator, client) = emulator_client(personality).await;
    let collection = client
        .database("fidelity")
        .collection::<RawDocumentBuf>("bsonTypes");
    let documents = raw_corpus();
    insert_each(&collection, &documents).await;

    for document in &documents {
        let id = Bson::try_from(document.get("_id").unwrap().unwrap().to_raw_bson()).unwrap();
        let stored = collection
            .find_one(doc! { "_id": id })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("_id {} not found", render_id(document)));
        assert_eq!(
            stored.as_bytes(),
            document.as_bytes(),
            "_id {} changed on the way through the server",
            render_id(document)
        );
    }
    let count = collection.count_documents(doc! {}).await.unwrap();
    assert_eq!(count, documents.len() as u64);
}

#[tokio::test]
async fn corpus_round_trips_on_vcore() {
    corpus_round_trips(Personality::VCore).await;
}

#[tokio::test]
async fn corpus_round_trips_on_mongodb() {
    corpus_round_trips(Personality::MongoDb).await;
}

#[tokio::test]
async fn comparison_finds_identical_copy() {
    let (_source_server, source_client) = emulator_client(Personality::MongoDb).await;
    let (_target_server, target_client) = emulator_client(Personality::VCore).await;
    let source = source_client
        .database("s")
        .collection::<RawDocumentBuf>("c");
    let target = target_client
        .database("t")
        .collection::<RawDocumentBuf>("c");
    let documents = raw_corpus();
    insert_each(&source, &documents).await;
    // Insert in reverse order, so pairing relies on the servers' _id order, not insertion order.
    let reversed: Vec<RawDocumentBuf> = documents.iter().rev().cloned().collect();
    insert_each(&target, &reversed).await;

    let comparison = compare_collections(&source, &target).await.unwrap();
    assert!(
        comparison.is_identical(),
        "{:?}",
        comparison.first_difference
    );
    assert_eq!(comparison.identical_documents, documents.len() as u64);
    assert_eq!(comparison.source_documents, documents.len() as u64);
    assert_eq!(comparison.target_documents, documents.len() as u64);
}

#[tokio::test]
async fn comparison_finds_changed_type() {
    let (_source_server, source_client) = emulator_client(Personality::MongoDb).await;
    let (_target_server, target_client) = emulator_client(Personality::VCore).await;
    let source = source_client.database("s").collection::<Document>("c");
    let target = target_client.database("t").collection::<Document>("c");
    let raw_source = source_client
        .database("s")
        .collection::<RawDocumentBuf>("c");
    let raw_target = target_client
        .database("t")
        .collection::<RawDocumentBuf>("c");
    for id in 0..5 {
        source
            .insert_one(doc! { "_id": id, "n": 9_007_199_254_740_993_i64 })
            .await
            .unwrap();
    }
    for id in 0..5 {
        // Document 3 loses precision, as a copy through a double would.
        let value = if id == 3 {
            Bson::Double(9_007_199_254_740_992.0)
        } else {
            Bson::Int64(9_007_199_254_740_993)
        };
        target
            .insert_one(doc! { "_id": id, "n": value })
            .await
            .unwrap();
    }

    let comparison = compare_collections(&raw_source, &raw_target).await.unwrap();
    assert!(!comparison.is_identical());
    assert_eq!(comparison.identical_documents, 4);
    assert_eq!(comparison.differing_documents, 1);
    let difference = comparison.first_difference.unwrap();
    assert!(
        difference.contains("_id {\"$numberInt\":\"3\"}"),
        "{difference}"
    );
    assert!(difference.contains("$numberDouble"), "{difference}");
}

#[tokio::test]
async fn comparison_finds_missing_document() {
    let (_source_server, source_client) = emulator_client(Personality::MongoDb).await;
    let (_target_server, target_client) = emulator_client(Personality::VCore).await;
    let source = source_client
        .database("s")
        .collection::<RawDocumentBuf>("c");
    let target = target_client
        .database("t")
        .collection::<RawDocumentBuf>("c");
    let documents = raw_corpus();
    insert_each(&source, &documents).await;
    insert_each(&target, &documents[..documents.len() - 1]).await;

    let comparison = compare_collections(&source, &target).await.unwrap();
    assert!(!comparison.is_identical());
    assert_eq!(comparison.source_documents, documents.len() as u64);
    assert_eq!(comparison.target_documents, documents.len() as u64 - 1);
    assert!(comparison.first_difference.is_some());
}
