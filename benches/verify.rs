//! Benchmark: verifying a collection takes no longer than copying it did, on the same emulators.
//!
//! Run with `cargo bench --bench verify` while Azurite listens on 127.0.0.1:10000-10002
//! (`scripts/azurite.sh start`, or `VCM_TEST_STORAGE` naming another account).
//! `VCM_BENCH_DOCUMENTS` sets the collection size (default 1,000,000). The source is the MongoDB
//! personality and the target the vCore one, both in this process beside the service in
//! standalone mode. The copy runs with verification off, then `POST /api/jobs/{id}/verify`
//! runs a full verification of the same collection. The process exits with status 1 when the
//! verification took longer than the copy or did not pass.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bson::{doc, DateTime, Document};
use common::{Harness, HarnessOptions};
use serde_json::json;

const DATABASE: &str = "bench";
const COLLECTION: &str = "items";
const TIMEOUT: Duration = Duration::from_secs(3_600);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(run());
    std::process::exit(if passed { 0 } else { 1 });
}

async fn run() -> bool {
    let documents: u64 = std::env::var("VCM_BENCH_DOCUMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let h = Harness::start_with(HarnessOptions {
        lease_seconds: 30,
        ..HarnessOptions::default()
    })
    .await;

    let loading = Instant::now();
    load(&h, documents).await;
    eprintln!(
        "loaded {documents} documents in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    let request = h.job_request(
        "bench",
        &[(DATABASE, COLLECTION)],
        json!({ "verification": "off" }),
    );
    let copy_started = Instant::now();
    let id = h.create_job(&request).await;
    let job = h
        .wait_for_state(&id, &["completed", "failed"], TIMEOUT)
        .await;
    let copy = copy_started.elapsed();
    if job["state"] != "completed" || job["documentsCopied"] != documents {
        eprintln!("the copy did not complete: {job:#}");
        return false;
    }

    let verify_started = Instant::now();
    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    if status != 202 {
        eprintln!("POST /verify failed with {status}: {body}");
        return false;
    }
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], TIMEOUT)
        .await;
    let verify = verify_started.elapsed();
    let passed = job["state"] == "completed" && job["verification"]["state"] == "passed";
    if !passed {
        eprintln!("the verification did not pass: {job:#}");
    }

    let rate = |elapsed: Duration| documents as f64 / elapsed.as_secs_f64();
    println!(
        "| documents | copy (s) | copy (docs/s) | verify (s) | verify (docs/s) | verify / copy |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {documents} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} |",
        copy.as_secs_f64(),
        rate(copy),
        verify.as_secs_f64(),
        rate(verify),
        verify.as_secs_f64() / copy.as_secs_f64()
    );
    h.stop().await;
    passed && verify <= copy
}

/// Inserts `count` documents of about 200 bytes each (numbers, strings, a date, an array and a
/// nested document), in batches.
async fn load(h: &Harness, count: u64) {
    const BATCH: u64 = 10_000;
    let mut next = 0;
    while next < count {
        let end = (next + BATCH).min(count);
        let batch: Vec<Document> = (next..end).map(document).collect();
        h.insert_source(DATABASE, COLLECTION, batch).await;
        next = end;
    }
}

fn document(i: u64) -> Document {
    let n = i as i64;
    doc! {
        "_id": n,
        "name": format!("customer-{i:08}"),
        "email": format!("customer{i}@example.com"),
        "age": (i % 90) as i32,
        "score": (i % 1000) as f64 / 7.0,
        "created": DateTime::from_millis(1_600_000_000_000 + n * 1_000),
        "tags": ["retail", if i % 2 == 0 { "even" } else { "odd" }],
        "address": { "city": format!("city-{}", i % 500), "zip": format!("{:05}", i % 100_000) },
    }
}
