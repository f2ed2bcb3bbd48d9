//! Replication lag of an online job under a steady write load, and the time a caught-up job takes
//! to cut over.
//!
//! Run with Azurite up (`scripts/azurite.sh start`):
//!
//! ```sh
//! cargo bench -p vcore-migrate --bench online_lag                       # 2000, 4000, 8000 writes/s
//! cargo bench -p vcore-migrate --bench online_lag -- 3000 6000 --seconds 20 --source cosmos-ru
//! ```
//!
//! For each source personality (`mongodb`, `cosmos-ru`) and write rate, the benchmark starts two
//! emulators and the service in this process, seeds 10,000 documents, creates an online job and
//! waits until it replicates. Writer tasks then issue single-document writes at the requested rate
//! for the given seconds: 50 % inserts, 30 % updates and 20 % deletes. Lag is measured twice:
//!
//! - end to end: one write in 500 per writer is a probe insert, and a poller records when it
//!   appears on the target;
//! - as the service reports it: `replication.lagSeconds` of `GET /api/jobs/{id}`, every 500 ms.
//!
//! After the writers stop, the job is left to catch up and is then cut over. The cutover time runs
//! from the request to `completed`, and on `cosmos-ru` it includes the final reconciliation pass.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::{Harness, HarnessOptions};
use mongo_emulator::{EmulatorOptions, Personality};
use serde_json::json;
use tokio::sync::Mutex;

const SEED_DOCUMENTS: i32 = 10_000;
const WRITERS: u64 = 64;
/// Writes per probe insert, per writer.
const PROBE_EVERY: u64 = 500;

struct Row {
    personality: Personality,
    rate: u64,
    achieved: f64,
    probes: Vec<f64>,
    reported: Vec<f64>,
    drain_seconds: f64,
    cutover_seconds: f64,
}

fn main() {
    let mut rates = Vec::new();
    let mut seconds = 30u64;
    let mut sources = vec![Personality::MongoDb, Personality::CosmosRu];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(30),
            "--source" => {
                let named = args.next().and_then(|s| s.parse().ok());
                sources = named.into_iter().collect();
            }
            "--bench" => {}
            other => {
                if let Ok(rate) = other.parse() {
                    rates.push(rate);
                }
            }
        }
    }
    if rates.is_empty() {
        rates = vec![2_000, 4_000, 8_000];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "| source | target writes/s | achieved | probes | e2e p50 s | e2e p99 s | e2e max s \
             | reported p50 s | reported p99 s | drain s | cutover s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for personality in sources {
            for rate in &rates {
                let row = measure(personality, *rate, seconds).await;
                print_row(&row);
            }
        }
    });
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn print_row(row: &Row) {
    println!(
        "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
        row.personality,
        row.rate,
        row.achieved,
        row.probes.len(),
        percentile(&row.probes, 0.5),
        percentile(&row.probes, 0.99),
        percentile(&row.probes, 1.0),
        percentile(&row.reported, 0.5),
        percentile(&row.reported, 0.99),
        row.drain_seconds,
        row.cutover_seconds,
    );
}

async fn measure(personality: Personality, rate: u64, seconds: u64) -> Row {
    let h = Harness::start_with(HarnessOptions {
        source: EmulatorOptions {
            personality,
            ..EmulatorOptions::default()
        },
        task_budget_seconds: 60,
        lease_seconds: 15,
        ..HarnessOptions::default()
    })
    .await;
    let seed: Vec<Document> = (0..SEED_DOCUMENTS)
        .map(|i| doc! { "_id": i, "n": i, "pad": "x".repeat(200) })
        .collect();
    h.insert_source("bench", "lag", seed).await;
    let mut request = h.job_request("lag", &[("bench", "lag")], json!({}));
    request["mode"] = json!("online");
    let id = h.create_job(&request).await;
    h.wait_for_state(&id, &["replicating"], Duration::from_secs(300))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let operations = Arc::new(AtomicU64::new(0));
    let probes = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    let started = Instant::now();
    for writer in 0..WRITERS {
        writers.push(tokio::spawn(write_loop(
            h.source_client.database("bench").collection("lag"),
            h.target_client.database("bench").collection("lag"),
            writer,
            rate / WRITERS,
            stop.clone(),
            operations.clone(),
            probes.clone(),
        )));
    }

    let mut reported = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, job) = h.get(&format!("/api/jobs/{id}")).await;
        if let Some(lag) = job["replication"]["lagSeconds"].as_f64() {
            reported.push(lag);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    for writer in writers {
        let _ = writer.await;
    }
    let achieved = operations.load(Ordering::SeqCst) as f64 / elapsed;

    let drain_started = Instant::now();
    h.wait_until(&id, Duration::from_secs(600), |job| {
        job["replication"]["lagSeconds"] == 0.0
    })
    .await;
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    // Probes still in flight have landed once the stream is drained.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probes = probes.lock().await.clone();

    let cutover_started = Instant::now();
    h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    let job = h
        .wait_for_state(&id, &["completed", "failed"], Duration::from_secs(600))
        .await;
    let cutover_seconds = cutover_started.elapsed().as_secs_f64();
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("bench", "lag").await;
    h.abort();

    Row {
        personality,
        rate,
        achieved,
        probes,
        reported,
        drain_seconds,
        cutover_seconds,
    }
}

/// Issues `per_second` writes per second until `stop`; one write in `PROBE_EVERY` is an insert timed
/// until it appears on the target.
async fn write_loop(
    source: mongodb::Collection<Document>,
    target: mongodb::Collection<Document>,
    writer: u64,
    per_second: u64,
    stop: Arc<AtomicBool>,
    operations: Arc<AtomicU64>,
    probes: Arc<Mutex<Vec<f64>>>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        interval.tick().await;
        let key = (10_000_000 + writer * 1_000_000 + i) as i64;
        let old = ((i * 7919 + writer * 104_729) % SEED_DOCUMENTS as u64) as i32;
        match i % 10 {
            0..=4 => {
                source
                    .insert_one(doc! { "_id": key, "w": writer as i64, "pad": "y".repeat(200) })
                    .await
                    .expect("insert");
                if i % PROBE_EVERY == 0 {
                    let written = Instant::now();
                    let (target, probes) = (target.clone(), probes.clone());
                    tokio::spawn(async move {
                        loop {
                            let found = target.find_one(doc! { "_id": key }).await.ok().flatten();
                            if found.is_some() {
                                probes.lock().await.push(written.elapsed().as_secs_f64());
                                return;
                            }
                            if written.elapsed() > Duration::from_secs(600) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    });
                }
            }
            5..=7 => {
                source
                    .update_one(doc! { "_id": old }, doc! { "$inc": { "n": 1 } })
                    .await
                    .expect("update");
            }
            _ => {
                source
                    .delete_one(doc! { "_id": old })
                    .await
                    .expect("delete");
            }
        }
        operations.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
}
