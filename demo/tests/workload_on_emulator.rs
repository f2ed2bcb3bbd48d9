//! The online workload against the Cosmos DB (RU) emulator on 127.0.0.1: the documents its
//! bookkeeping expects must be exactly the documents the source contains afterwards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongo_emulator::{EmulatorOptions, Personality};
use mongodb::Client;
use vcore_migrate_demo::datasets::Dataset;
use vcore_migrate_demo::stack;
use vcore_migrate_demo::workload::runner::{self, WorkloadReport};
use vcore_migrate_demo::workload::{WorkloadModel, WriteKind, FIELD};

/// Writes the source throttles (error 16500) before it accepts the workload's writes again.
const INJECTED_THROTTLES: i32 = 25;

fn datasets() -> Vec<Dataset> {
    let dataset = |database: &'static str, documents: Vec<Document>| Dataset {
        database,
        collection: "items",
        origin: "test".into(),
        documents,
    };
    vec![
        dataset(
            "numbers",
            (0..300)
                .map(|n| doc! { "_id": n, "delay": n % 17, "distance": n * 3 })
                .collect(),
        ),
        dataset(
            "objects",
            (0..120)
                .map(|n| doc! { "_id": ObjectId::new(), "title": format!("movie {n}"), "year": 1990 + n })
                .collect(),
        ),
        dataset(
            "strings",
            (0..40)
                .map(|n| doc! { "_id": format!("q{n}"), "properties": { "mag": f64::from(n) / 10.0 } })
                .collect(),
        ),
    ]
}

/// Runs the workload until it has acknowledged `writes` writes, then stops it.
async fn run_workload(client: &Client, model: WorkloadModel, writes: u64) -> WorkloadReport {
    let running = runner::start(model, client, 2_000.0);
    let counter = running.write_counter();
    // Bounded, so a stuck workload fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter.load(std::sync::atomic::Ordering::Relaxed) < writes {
        assert!(
            Instant::now() < deadline,
            "the workload acknowledged only {} of {writes} writes",
            counter.load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.expect("workload task joins")
}

/// Reads every document of a collection, keyed by its `_id` in Extended JSON.
async fn documents_by_id(client: &Client, dataset: &Dataset) -> HashMap<String, Document> {
    client
        .database(dataset.database)
        .collection::<Document>(dataset.collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (id_key(d.get("_id").unwrap()), d))
        .collect()
}

fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookkeeping_matches_source() {
    let emulator = mongo_emulator::start(EmulatorOptions {
        personality: Personality::CosmosRu,
        ..EmulatorOptions::default()
    })
    .await
    .expect("emulator starts");
    let client = Client::with_uri_str(emulator.uri()).await.unwrap();
    let datasets = datasets();
    stack::seed(&client, &datasets).await.unwrap();

    // Throttle the first writes the way Cosmos DB does, so the retry path is part of the run.
    client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": INJECTED_THROTTLES },
            "data": { "failCommands": ["insert", "update", "delete"], "errorCode": 16500 },
        })
        .await
        .unwrap();

    let report = run_workload(&client, WorkloadModel::new(&datasets, 42), 1_500).await;
    assert_eq!(report.error, None);
    assert_eq!(report.unmatched, 0);
    assert_eq!(report.throttled, INJECTED_THROTTLES as u64);
    assert!(report.total() >= 1_500, "{} writes", report.total());
    let by_kind = report.by_kind();
    for kind in WriteKind::ALL {
        assert!(by_kind.get(kind) > 0, "no {} was sent", kind.label());
    }

    let collections = report.model.collections();
    for ((dataset, model), counts) in datasets.iter().zip(collections).zip(&report.counts) {
        let namespace = dataset.namespace();
        assert_eq!(model.namespace(), namespace);
        let stored = documents_by_id(&client, dataset).await;
        let expected_count = dataset.documents.len() as u64 + counts.get(WriteKind::Insert)
            - counts.get(WriteKind::Delete);
        assert_eq!(stored.len() as u64, expected_count, "{namespace}: count");
        assert_eq!(
            model.live().len(),
            stored.len(),
            "{namespace}: live documents"
        );

        for live in model.live() {
            let key = id_key(&live.id);
            let document = stored
                .get(&key)
                .unwrap_or_else(|| panic!("{namespace}: _id {key} is missing"));
            let marker = document.get_document(FIELD).ok();
            let last_write = marker.and_then(|m| m.get_i64("lastWrite").ok());
            let increments = marker
                .and_then(|m| m.get_i32("increments").ok())
                .unwrap_or(0);
            assert_eq!(
                last_write, live.last_write,
                "{namespace}: _id {key} lastWrite"
            );
            assert_eq!(
                increments, live.increments,
                "{namespace}: _id {key} increments"
            );
        }
    }
    emulator.shutdown().await;
}
