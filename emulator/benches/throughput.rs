//! Measures the emulator's insert and read rates over loopback with the official driver.
//!
//! Run with: `cargo bench -p mongo-emulator --bench throughput` (optionally followed by
//! `-- DOCUMENTS`, default 200000). Documents are about 1 KB; inserts go in unordered batches of
//! 1,000 `RawDocumentBuf`s, reads use a raw cursor with batches of 1,000.

use std::time::Instant;

use bson::{doc, rawdoc, RawDocumentBuf};
use futures::TryStreamExt;
use mongo_emulator::EmulatorOptions;
use mongodb::Client;

const BATCH: usize = 1_000;

fn document(i: i64) -> RawDocumentBuf {
    rawdoc! {
        "_id": i,
        "name": format!("document-{i:08}"),
        "n": i,
        "payload": "x".repeat(960),
    }
}

fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(total));
}

async fn run(total: usize) {
    let emulator = mongo_emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    let client = Client::with_uri_str(emulator.uri()).await.expect("client");
    let collection = client
        .database("bench")
        .collection::<RawDocumentBuf>("docs");
    collection.drop().await.expect("drop");

    let batches: Vec<Vec<RawDocumentBuf>> = (0..total as i64)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|ids| ids.iter().map(|i| document(*i)).collect())
        .collect();
    let size = batches[0][0].as_bytes().len();

    let started = Instant::now();
    for batch in batches {
        collection
            .insert_many(batch)
            .ordered(false)
            .await
            .expect("insert batch");
    }
    let insert_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut cursor = collection
        .find(doc! { "_id": { "$gte": 0i64 } })
        .sort(doc! { "_id": 1 })
        .batch_size(BATCH as u32)
        .await
        .expect("find");
    let mut read = 0usize;
    while cursor.try_next().await.expect("read").is_some() {
        read += 1;
    }
    let read_seconds = started.elapsed().as_secs_f64();
    assert_eq!(read, total, "every inserted document is read back");

    println!("documents: {total}, document size: {size} bytes, batch: {BATCH}");
    println!(
        "inserts: {:.0} documents/s ({insert_seconds:.2} s)",
        total as f64 / insert_seconds
    );
    println!(
        "reads:   {:.0} documents/s ({read_seconds:.2} s)",
        total as f64 / read_seconds
    );
    emulator.shutdown().await;
}
