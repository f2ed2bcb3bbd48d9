//! Online jobs end to end: change-stream replication after the copy, deletes by reconciliation
//! on Cosmos DB (RU) sources, drop, rename, history loss and re-copy, cutover, and the job
//! commands while replicating. Emulator source and target, Azurite state, standalone service.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document};
use common::{ejson, Harness, HarnessOptions, LONG};
use mongo_emulator::{EmulatorOptions, Personality};
use reqwest::StatusCode;
use serde_json::{json, Value};
use vcore_migrate::queue::{StreamTask, TaskKind};
use vcore_migrate::runtime::{run_task, MessageInfo, TaskOutcome};

/// Returns harness options whose source imitates Cosmos DB for MongoDB (RU).
fn cosmos_ru() -> HarnessOptions {
    HarnessOptions {
        source: EmulatorOptions {
            personality: Personality::CosmosRu,
            ..EmulatorOptions::default()
        },
        ..HarnessOptions::default()
    }
}

fn online_request(h: &Harness, name: &str, collections: &[(&str, &str)], options: Value) -> Value {
    let mut request = h.job_request(name, collections, options);
    request["mode"] = json!("online");
    request
}

fn numbered(range: std::ops::Range<i32>) -> Vec<Document> {
    range
        .map(|i| doc! { "_id": i, "n": i, "s": format!("doc {i}") })
        .collect()
}

/// Returns the replication view of collection `index`.
fn stream(job: &Value, index: usize) -> &Value {
    &job["collections"][index]["replication"]
}

fn source_of(h: &Harness, db: &str, coll: &str) -> mongodb::Collection<Document> {
    h.source_client.database(db).collection(coll)
}

async fn start_online(
    h: &Harness,
    name: &str,
    collections: &[(&str, &str)],
    options: Value,
) -> String {
    create_replicating_job(h, &online_request(h, name, collections, options)).await
}

async fn create_replicating_job(h: &Harness, request: &Value) -> String {
    let id = h.create_job(request).await;
    let job = h
        .wait_for_state(&id, &["replicating", "failed"], LONG)
        .await;
    assert_eq!(job["state"], "replicating", "{job:#}");
    id
}

/// Waits until every collection's stream has run at least once and reports no lag.
async fn wait_streams_idle(h: &Harness, id: &str) -> Value {
    h.wait_until(id, LONG, |job| {
        job["collections"].as_array().is_some_and(|collections| {
            collections.iter().all(|c| {
                c["replication"]["lagSeconds"] == 0.0 && c["replication"]["state"] == "running"
            })
        })
    })
    .await
}

/// Requests cutover and waits until the job ends it: `completed` once the streams drained and
/// the cutover verification passed.
async fn cutover(h: &Harness, id: &str) -> Value {
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    h.wait_for_state(id, &["completed", "failed", "verificationFailed"], LONG)
        .await
}

async fn fail_point(h: &Harness, command: Document) {
    h.source_client
        .database("admin")
        .run_command(command)
        .await
        .expect("configureFailPoint");
}

/// Delays every find and getMore the service sends to the target by `millis`, or, with 0, stops
/// delaying them.
async fn slow_target_reads(h: &Harness, millis: i32) {
    let command = if millis == 0 {
        doc! { "configureFailPoint": "failCommand", "mode": "off" }
    } else {
        doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {
                "failCommands": ["find", "getMore"],
                "blockConnection": true,
                "blockTimeMS": millis,
                "appName": "vcore-migrate",
            }
        }
    };
    h.target_client
        .database("admin")
        .run_command(command)
        .await
        .expect("configureFailPoint");
}

/// Writes inserts, updates, replaces and deletes to `db.coll` until stopped; counts operations.
struct Workload {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Workload {
    /// Starts writing over `_id`s below `existing`, and inserts new `_id`s from 1,000,000.
    fn start(h: &Harness, db: &str, coll: &str, existing: i32) -> Workload {
        let collection = h.source_client.database(db).collection::<Document>(coll);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (stop_flag, counter) = (stop.clone(), done.clone());
        let handle = tokio::spawn(async move {
            let mut i: i32 = 0;
            while !stop_flag.load(Ordering::SeqCst) {
                let old = (i * 37) % existing;
                let result = match i % 4 {
                    0 => collection
                        .insert_one(doc! { "_id": 1_000_000 + i, "n": i, "new": true })
                        .await
                        .map(|_| ()),
                    1 => collection
                        .update_one(
                            doc! { "_id": old },
                            doc! { "$inc": { "n": 1 }, "$set": { "u": i } },
                        )
                        .await
                        .map(|_| ()),
                    2 => collection
                        .replace_one(doc! { "_id": old }, doc! { "_id": old, "replaced": i })
                        .await
                        .map(|_| ()),
                    _ => collection
                        .delete_one(doc! { "_id": (old + 11) % existing })
                        .await
                        .map(|_| ()),
                };
                result.expect("workload write");
                counter.fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Workload { stop, done, handle }
    }

    fn operations(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.expect("workload task");
        self.done.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Replication and cutover

async fn writes_during_copy(h: Harness) {
    h.insert_source("mig", "live", numbered(0..6_000)).await;
    let request = online_request(
        &h,
        "live",
        &[("mig", "live")],
        json!({ "chunkDocuments": 500, "batchSize": 100, "maxParallelChunks": 2 }),
    );
    let id = h.create_job(&request).await;
    let workload = Workload::start(&h, "mig", "live", 6_000);
    let job = h
        .wait_for_state(&id, &["replicating", "failed"], LONG)
        .await;
    assert_eq!(job["state"], "replicating", "{job:#}");
    let during_copy = workload.operations();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = workload.finish().await;
    assert!(during_copy > 0, "no write happened during the copy");
    assert!(total > during_copy, "no write happened during replication");

    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("mig", "live").await;
    assert_eq!(stream(&job, 0)["state"], "finished");
    assert_eq!(job["replication"]["lagSeconds"], 0.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_during_copy_are_not_lost() {
    writes_during_copy(Harness::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cosmos_ru_writes_during_copy_are_not_lost() {
    // RU streams carry no deletes: the workload's deletes reach the target by the final
    // reconciliation that cutover runs.
    writes_during_copy(Harness::start_with(cosmos_ru()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_during_writes_ends_clean() {
    let h = Harness::start().await;
    h.insert_source("mig", "busy", numbered(0..400)).await;
    let id = start_online(
        &h,
        "busy",
        &[("mig", "busy")],
        json!({ "chunkDocuments": 100, "batchSize": 50 }),
    )
    .await;
    wait_streams_idle(&h, &id).await;

    // Slow target reads stretch each first comparison over the writes, which replication
    // applies a little later, so the comparisons see differences.
    slow_target_reads(&h, 200).await;
    let workload = Workload::start(&h, "mig", "busy", 400);
    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    let started = std::time::Instant::now();
    loop {
        let units = h.engine.store.verify_units_of_job(&id).await.unwrap();
        if units.iter().any(|u| u.value.attempts > 0) {
            break;
        }
        assert!(
            started.elapsed() < LONG,
            "no unit differed during the writes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let operations = workload.finish().await;
    slow_target_reads(&h, 0).await;
    assert!(operations > 0, "no write happened during the verification");

    // Replication catches up before the units are compared again, so the run ends clean.
    let job = h
        .wait_until(&id, LONG, |job| {
            ["passed", "failed"].contains(&job["verification"]["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(job["verification"]["state"], "passed", "{job:#}");
    assert_eq!(job["verification"]["differences"], 0);
    assert_eq!(job["verification"]["trigger"], "request");
    assert_eq!(job["state"], "replicating", "{job:#}");

    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["verification"]["trigger"], "cutover", "{job:#}");
    assert_eq!(job["verification"]["state"], "passed");
    h.assert_identical("mig", "busy").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_keeps_target_in_step() {
    let h = Harness::start().await;
    h.insert_source("mig", "step", numbered(0..100)).await;
    let id = start_online(&h, "step", &[("mig", "step")], json!({})).await;

    let source = source_of(&h, "mig", "step");
    source
        .insert_one(doc! { "_id": 500, "fresh": true })
        .await
        .unwrap();
    source
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "s": "changed" } })
        .await
        .unwrap();
    source.delete_one(doc! { "_id": 2 }).await.unwrap();
    source
        .replace_one(doc! { "_id": 3 }, doc! { "_id": 3, "whole": "new" })
        .await
        .unwrap();
    h.wait_identical("mig", "step", LONG).await;

    let job = wait_streams_idle(&h, &id).await;
    let view = stream(&job, 0);
    assert_eq!(view["eventsApplied"], 4, "{view:#}");
    assert_eq!(view["deletes"], 1, "{view:#}");
    assert!(view["lastEventTime"].is_string(), "{view:#}");
    assert_eq!(job["canCutover"], true, "{job:#}");
    assert!(job.get("cutoverBlockers").is_none(), "{job:#}");
    assert_eq!(job["replication"]["eventsApplied"], 4);
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_stream_resumes_exactly() {
    let mut h = Harness::start().await;
    h.insert_source("mig", "crash", numbered(0..2_000)).await;
    h.insert_source("mig", "counter", vec![doc! { "_id": "c", "n": 0 }])
        .await;
    let request = online_request(
        &h,
        "crash",
        &[("mig", "crash"), ("mig", "counter")],
        json!({ "batchSize": 50 }),
    );
    let id = create_replicating_job(&h, &request).await;

    let workload = Workload::start(&h, "mig", "crash", 2_000);
    let counter = source_of(&h, "mig", "counter");
    for _ in 0..200 {
        counter
            .update_one(doc! { "_id": "c" }, doc! { "$inc": { "n": 1 } })
            .await
            .unwrap();
    }
    h.wait_until(&id, LONG, |job| {
        stream(job, 0)["eventsApplied"].as_u64().unwrap_or(0) > 100
    })
    .await;
    h.kill_and_restart().await;
    for _ in 0..200 {
        counter
            .update_one(doc! { "_id": "c" }, doc! { "$inc": { "n": 1 } })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    workload.finish().await;

    h.wait_identical("mig", "crash", LONG).await;
    h.wait_identical("mig", "counter", LONG).await;
    let target_counter = h
        .target_client
        .database("mig")
        .collection::<Document>("counter")
        .find_one(doc! { "_id": "c" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(target_counter.get_i32("n").unwrap(), 400);
    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("mig", "crash").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_stream_messages_are_dropped() {
    // A long budget keeps one task running for the whole test, so every duplicate meets it.
    let h = Harness::start_with(HarnessOptions {
        task_budget_seconds: 300,
        ..HarnessOptions::default()
    })
    .await;
    h.insert_source("mig", "dups", numbered(0..10)).await;
    let id = start_online(&h, "dups", &[("mig", "dups")], json!({})).await;
    h.wait_until(&id, LONG, |job| stream(job, 0)["state"] == "running")
        .await;

    let task = StreamTask {
        job_id: id.clone(),
        collection: 0,
    };
    let body = serde_json::to_string(&task).unwrap();
    let message = MessageInfo {
        id: "a-duplicate-message".into(),
        dequeue_count: 1,
    };
    let outcome = run_task(&h.engine, TaskKind::Stream, &body, &message)
        .await
        .expect("duplicate handled");
    assert!(
        matches!(&outcome, TaskOutcome::Dropped(reason) if reason.contains("held by another task")),
        "{outcome:?}"
    );
    for _ in 0..3 {
        h.engine.queues.send_stream(&task, None).await.unwrap();
    }

    let source = source_of(&h, "mig", "dups");
    for i in 100..300 {
        source.insert_one(doc! { "_id": i }).await.unwrap();
    }
    h.wait_identical("mig", "dups", LONG).await;
    let job = wait_streams_idle(&h, &id).await;
    // Each insert applied once: a second task on the same stream would have applied them again.
    assert_eq!(stream(&job, 0)["eventsApplied"], 200, "{job:#}");
    assert!(stream(&job, 0)["lastError"].is_null(), "{job:#}");
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_completes_and_writes_stop() {
    let h = Harness::start().await;
    h.insert_source("mig", "final", numbered(0..50)).await;
    let id = start_online(&h, "final", &[("mig", "final")], json!({})).await;
    let source = source_of(&h, "mig", "final");
    source.insert_one(doc! { "_id": 99 }).await.unwrap();

    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("mig", "final").await;
    assert!(job["finishedAt"].is_string());
    assert_eq!(job["canCutover"], false);

    // After completion no task writes to the target.
    source.insert_one(doc! { "_id": 100 }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.target_count("mig", "final").await, 51);
    let (status, _) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_refused_offline_and_during_copy() {
    let h = Harness::start_with(HarnessOptions {
        workers: 1,
        ..HarnessOptions::default()
    })
    .await;
    h.insert_source("mig", "slow", numbered(0..20_000)).await;

    let offline = h.job_request("offline", &[("mig", "slow")], json!({}));
    let offline_id = h.create_job(&offline).await;
    let (status, body) = h
        .post(&format!("/api/jobs/{offline_id}/cutover"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert_eq!(body["code"], "commandNotAllowed");
    assert!(
        body["message"].as_str().unwrap().contains("online"),
        "{body:#}"
    );
    let (status, _) = h
        .post(
            &format!("/api/jobs/{offline_id}/collections/0/recopy"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    h.post(&format!("/api/jobs/{offline_id}/cancel"), None)
        .await;

    let request = online_request(
        &h,
        "copying",
        &[("mig", "slow")],
        json!({ "chunkDocuments": 1_000, "batchSize": 10, "maxParallelChunks": 1 }),
    );
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["copying"], LONG).await;
    assert_eq!(job["canCutover"], false);
    let blockers = job["cutoverBlockers"].as_array().expect("blockers listed");
    assert!(
        blockers[0].as_str().unwrap().contains("initial copy"),
        "{blockers:?}"
    );
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert!(
        body["message"].as_str().unwrap().contains("initial copy"),
        "{body:#}"
    );
    let (status, body) = h.post(&format!("/api/jobs/{id}/recopy"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    h.post(&format!("/api/jobs/{id}/cancel"), None).await;
    h.wait_for_state(&id, &["cancelled"], LONG).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_resume_cancel_while_replicating() {
    let mut h = Harness::start().await;
    h.insert_source("mig", "ctl", numbered(0..20)).await;
    let id = start_online(&h, "ctl", &[("mig", "ctl")], json!({})).await;
    let source = source_of(&h, "mig", "ctl");

    let (status, _) = h.post(&format!("/api/jobs/{id}/pause"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.wait_for_state(&id, &["paused"], LONG).await;
    source.insert_one(doc! { "_id": 1_000 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(h.target_count("mig", "ctl").await, 20, "a paused job wrote");

    // Pause survives a restart, and resume replays what was written meanwhile.
    h.kill_and_restart().await;
    let job = h.wait_for_state(&id, &["paused"], LONG).await;
    assert_eq!(job["state"], "paused");
    let (status, _) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.wait_for_state(&id, &["replicating"], LONG).await;
    h.wait_identical("mig", "ctl", LONG).await;

    let (status, _) = h.post(&format!("/api/jobs/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = h.wait_for_state(&id, &["cancelled"], LONG).await;
    assert_eq!(job["state"], "cancelled");
    source.insert_one(doc! { "_id": 1_001 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        h.target_count("mig", "ctl").await,
        21,
        "a cancelled job wrote"
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Cosmos DB (RU) sources

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cosmos_ru_deletes_reach_target_by_reconciliation() {
    let h = Harness::start_with(cosmos_ru()).await;
    h.insert_source("mig", "ru", numbered(0..3_000)).await;
    let request = online_request(
        &h,
        "ru-deletes",
        &[("mig", "ru")],
        json!({ "reconcileIntervalSeconds": 1 }),
    );
    let id = create_replicating_job(&h, &request).await;
    let job = h.get(&format!("/api/jobs/{id}")).await.1;
    assert_eq!(job["sourceKind"], "cosmosRu");

    let source = source_of(&h, "mig", "ru");
    source
        .delete_many(doc! { "_id": { "$gte": 1_000, "$lt": 1_250 } })
        .await
        .unwrap();
    source.insert_one(doc! { "_id": "after" }).await.unwrap();
    h.wait_identical("mig", "ru", LONG).await;

    let job = h
        .wait_until(&id, LONG, |job| {
            stream(job, 0)["reconciliation"]["deletesFound"].as_u64() >= Some(250)
        })
        .await;
    assert_eq!(job["state"], "replicating");
    assert_eq!(stream(&job, 0)["reconciliation"]["deletesFound"], 250);
    assert_eq!(job["replication"]["deletesFoundByReconciliation"], 250);
    assert!(stream(&job, 0)["reconciliation"]["passesCompleted"].as_u64() >= Some(1));
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cosmos_ru_coalesced_updates_missing_deletes() {
    let h = Harness::start_with(cosmos_ru()).await;
    let tasks = vec![
        doc! { "_id": "t1", "state": "open" },
        doc! { "_id": "t2", "state": "open" },
        doc! { "_id": "t3", "state": "open" },
    ];
    h.insert_source("shop", "tasks", tasks).await;
    let id = start_online(&h, "c02", &[("shop", "tasks")], json!({})).await;

    let source = source_of(&h, "shop", "tasks");
    source
        .update_one(
            doc! { "_id": "t1" },
            doc! { "$set": { "state": "claimed" } },
        )
        .await
        .unwrap();
    source
        .update_one(doc! { "_id": "t1" }, doc! { "$set": { "state": "done" } })
        .await
        .unwrap();
    source.delete_one(doc! { "_id": "t2" }).await.unwrap();
    source
        .insert_one(doc! { "_id": "t4", "state": "open" })
        .await
        .unwrap();
    source.delete_one(doc! { "_id": "t4" }).await.unwrap();

    // The stream brings the last state of t1; without delete events t2 stays on the target.
    h.wait_until(&id, LONG, |job| {
        stream(job, 0)["eventsApplied"].as_u64() >= Some(1) && stream(job, 0)["lagSeconds"] == 0.0
    })
    .await;
    let t1 = h
        .target_client
        .database("shop")
        .collection::<Document>("tasks")
        .find_one(doc! { "_id": "t1" })
        .await
        .unwrap();
    assert_eq!(t1, Some(doc! { "_id": "t1", "state": "done" }));

    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let target: Vec<Document> = common::read_all(&h.target_client, "shop", "tasks")
        .await
        .into_iter()
        .map(|raw| raw.to_document().unwrap())
        .collect();
    assert_eq!(
        target,
        vec![
            doc! { "_id": "t1", "state": "done" },
            doc! { "_id": "t3", "state": "open" },
        ]
    );
    let deletes = job["replication"]["deletesFoundByReconciliation"]
        .as_u64()
        .unwrap();
    assert!(deletes >= 1, "{job:#}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cosmos_ru_accepts_only_its_pipeline() {
    let h = Harness::start_with(cosmos_ru()).await;
    h.insert_source(
        "app",
        "orders",
        vec![ejson(
            json!({"_id": 1, "status": "new", "total": {"$numberDouble": "10.5"}}),
        )],
    )
    .await;
    h.insert_source(
        "app",
        "customers",
        vec![doc! { "_id": "c1", "name": "n1", "tier": 1 }],
    )
    .await;

    // The source enforces the rule: a default stream and a database-level stream both fail, so
    // the job below can only replicate with the exact accepted pipeline.
    let orders = source_of(&h, "app", "orders");
    let plain = orders.watch().await;
    let error = plain.expect_err("a plain change stream is rejected");
    assert!(
        error.to_string().contains("match and then a project"),
        "{error}"
    );
    assert!(h.source_client.database("app").watch().await.is_err());

    let request = online_request(
        &h,
        "c03",
        &[("app", "orders"), ("app", "customers")],
        json!({}),
    );
    let id = create_replicating_job(&h, &request).await;
    orders
        .insert_one(ejson(
            json!({"_id": 2, "status": "new", "total": {"$numberDouble": "3.0"}}),
        ))
        .await
        .unwrap();
    orders
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "status": "paid" } })
        .await
        .unwrap();
    let customers = source_of(&h, "app", "customers");
    customers
        .replace_one(doc! { "_id": "c1" }, doc! { "_id": "c1", "name": "n1b" })
        .await
        .unwrap();
    customers
        .insert_one(doc! { "_id": "c2", "name": "n2", "tier": 2 })
        .await
        .unwrap();

    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("app", "orders").await;
    h.assert_identical("app", "customers").await;
    let c1 = h
        .target_client
        .database("app")
        .collection::<Document>("customers")
        .find_one(doc! { "_id": "c1" })
        .await
        .unwrap();
    assert_eq!(
        c1,
        Some(doc! { "_id": "c1", "name": "n1b" }),
        "the replace dropped tier"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_pipeline_fails_job_once() {
    let h = Harness::start_with(cosmos_ru()).await;
    h.insert_source("app", "shape", numbered(0..5)).await;
    let id = start_online(&h, "shape", &[("app", "shape")], json!({})).await;
    h.post(&format!("/api/jobs/{id}/pause"), None).await;
    h.wait_for_state(&id, &["paused"], LONG).await;

    fail_point(
        &h,
        doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": { "failCommands": ["aggregate"], "errorCode": 2,
                      "errmsg": "Change stream must be followed by a match and then a project stage" },
        },
    )
    .await;
    h.post(&format!("/api/jobs/{id}/resume"), None).await;
    let job = h.wait_for_state(&id, &["failed"], LONG).await;
    let error = job["lastError"].as_str().unwrap();
    assert!(error.contains("configuration problem"), "{error}");
    assert!(error.contains("app.shape"), "{error}");
    // The job stays failed: nothing retries the rejected stream behind the user's back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = h.get(&format!("/api/jobs/{id}")).await.1;
    assert_eq!(job["state"], "failed");

    fail_point(
        &h,
        doc! { "configureFailPoint": "failCommand", "mode": "off" },
    )
    .await;
    h.post(&format!("/api/jobs/{id}/resume"), None).await;
    h.wait_for_state(&id, &["replicating"], LONG).await;
    source_of(&h, "app", "shape")
        .insert_one(doc! { "_id": 77 })
        .await
        .unwrap();
    h.wait_identical("app", "shape", LONG).await;
    h.abort();
}

// ---------------------------------------------------------------------------------------------
// Drop, rename, history loss

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_collection_stops_its_replication() {
    let h = Harness::start().await;
    h.insert_source("mig", "gone", numbered(0..10)).await;
    h.insert_source("mig", "kept", numbered(0..10)).await;
    let request = online_request(&h, "drop", &[("mig", "gone"), ("mig", "kept")], json!({}));
    let id = create_replicating_job(&h, &request).await;
    wait_streams_idle(&h, &id).await;

    source_of(&h, "mig", "gone").drop().await.unwrap();
    let job = h
        .wait_until(&id, LONG, |job| stream(job, 0)["state"] == "stopped")
        .await;
    let error = stream(&job, 0)["lastError"].as_str().unwrap();
    assert!(error.contains("mig.gone was dropped"), "{error}");
    assert!(error.contains("recopy"), "{error}");
    let round_trips = stream(&job, 0)["roundTrips"].clone();

    // The other collection replicates on, and the stopped stream never runs again.
    source_of(&h, "mig", "kept")
        .insert_one(doc! { "_id": 50 })
        .await
        .unwrap();
    h.wait_identical("mig", "kept", LONG).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = h.get(&format!("/api/jobs/{id}")).await.1;
    assert_eq!(stream(&job, 0)["state"], "stopped");
    assert_eq!(stream(&job, 0)["roundTrips"], round_trips);
    assert_eq!(job["canCutover"], true, "{job:#}");
    assert_eq!(h.target_count("mig", "gone").await, 10);

    // The cutover verification has no source to compare the dropped collection with.
    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["verification"]["collectionsSkipped"], 1, "{job:#}");
    let (_, report) = h.get(&format!("/api/jobs/{id}/verification")).await;
    assert_eq!(report["collections"][0]["state"], "skipped", "{report:#}");
    assert_eq!(report["collections"][1]["state"], "passed", "{report:#}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renamed_collection_stops_its_replication() {
    let h = Harness::start().await;
    h.insert_source("mig", "old_name", numbered(0..10)).await;
    let request = online_request(&h, "rename", &[("mig", "old_name")], json!({}));
    let id = create_replicating_job(&h, &request).await;
    wait_streams_idle(&h, &id).await;

    h.source_client
        .database("admin")
        .run_command(doc! { "renameCollection": "mig.old_name", "to": "mig.new_name" })
        .await
        .unwrap();
    let job = h
        .wait_until(&id, LONG, |job| stream(job, 0)["state"] == "stopped")
        .await;
    let error = stream(&job, 0)["lastError"].as_str().unwrap();
    assert!(error.contains("renamed to mig.new_name"), "{error}");
    assert_eq!(job["state"], "replicating");
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_loss_fails_collection_clearly() {
    let h = Harness::start_with(HarnessOptions {
        source: EmulatorOptions {
            history_size: 200,
            ..EmulatorOptions::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    h.insert_source("mig", "quiet", numbered(0..5)).await;
    h.insert_source("mig", "noisy", numbered(0..5)).await;
    let request = online_request(&h, "lost", &[("mig", "quiet"), ("mig", "noisy")], json!({}));
    let id = create_replicating_job(&h, &request).await;
    wait_streams_idle(&h, &id).await;

    // While paused, more writes than the source keeps in its history.
    h.post(&format!("/api/jobs/{id}/pause"), None).await;
    h.wait_for_state(&id, &["paused"], LONG).await;
    h.insert_source("mig", "noisy", numbered(100..700)).await;
    h.post(&format!("/api/jobs/{id}/resume"), None).await;

    let job = h
        .wait_until(&id, LONG, |job| {
            stream(job, 0)["state"] == "failed" && stream(job, 1)["state"] == "failed"
        })
        .await;
    for index in 0..2 {
        let error = stream(&job, index)["lastError"].as_str().unwrap();
        assert!(
            error.contains("no longer in the source's history"),
            "{error}"
        );
        assert!(error.contains("code 286"), "{error}");
        assert!(
            error.contains(&format!("/api/jobs/{id}/collections/{index}/recopy")),
            "{error}"
        );
    }
    // The job itself keeps running, cutover is blocked with the reason, and nothing loops.
    assert_eq!(job["state"], "replicating");
    assert_eq!(job["canCutover"], false);
    let blockers = job["cutoverBlockers"].to_string();
    assert!(blockers.contains("recopy"), "{blockers}");
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert!(
        body["message"].as_str().unwrap().contains("history"),
        "{body:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = h.get(&format!("/api/jobs/{id}")).await.1;
    assert_eq!(
        stream(&later, 0)["roundTrips"],
        stream(&job, 0)["roundTrips"]
    );
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recopy_recovers_one_collection() {
    let h = Harness::start().await;
    h.insert_source("mig", "lost", numbered(0..200)).await;
    h.insert_source("mig", "healthy", numbered(0..10)).await;
    let request = online_request(
        &h,
        "recopy",
        &[("mig", "lost"), ("mig", "healthy")],
        json!({}),
    );
    let id = create_replicating_job(&h, &request).await;
    wait_streams_idle(&h, &id).await;

    // History loss on one namespace only: its stream fails when it is next opened.
    h.post(&format!("/api/jobs/{id}/pause"), None).await;
    h.wait_for_state(&id, &["paused"], LONG).await;
    fail_point(
        &h,
        doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": { "failCommands": ["aggregate"], "namespace": "mig.lost", "errorCode": 286,
                      "errorLabels": ["NonResumableChangeStreamError"] },
        },
    )
    .await;
    h.post(&format!("/api/jobs/{id}/resume"), None).await;
    h.wait_until(&id, LONG, |job| stream(job, 0)["state"] == "failed")
        .await;

    // The healthy collection keeps replicating while the other one is failed.
    let healthy = source_of(&h, "mig", "healthy");
    healthy.insert_one(doc! { "_id": 500 }).await.unwrap();
    h.wait_identical("mig", "healthy", LONG).await;

    // Changes in the gap, a delete among them, are recovered by the re-copy.
    let lost = source_of(&h, "mig", "lost");
    lost.insert_one(doc! { "_id": 900 }).await.unwrap();
    lost.delete_one(doc! { "_id": 5 }).await.unwrap();
    lost.update_one(doc! { "_id": 6 }, doc! { "$set": { "s": "gap" } })
        .await
        .unwrap();
    fail_point(
        &h,
        doc! { "configureFailPoint": "failCommand", "mode": "off" },
    )
    .await;

    let (status, body) = h
        .post(&format!("/api/jobs/{id}/collections/1/recopy"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a healthy collection was re-copied: {body:#}"
    );
    let (status, body) = h
        .post(&format!("/api/jobs/{id}/collections/7/recopy"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    let (status, body) = h
        .post(&format!("/api/jobs/{id}/collections/0/recopy"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");

    h.wait_until(&id, LONG, |job| {
        job["state"] == "replicating" && stream(job, 0)["state"] == "running"
    })
    .await;
    lost.insert_one(doc! { "_id": 901 }).await.unwrap();
    h.wait_identical("mig", "lost", LONG).await;
    let job = h
        .wait_until(&id, LONG, |job| {
            stream(job, 0)["reconciliation"]["passesCompleted"].as_u64() >= Some(1)
        })
        .await;
    assert!(stream(&job, 0)["lastError"].is_null(), "{job:#}");
    assert_eq!(job["canCutover"], true, "{job:#}");

    let job = cutover(&h, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("mig", "lost").await;
    h.assert_identical("mig", "healthy").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiet_collection_keeps_resume_position() {
    // The source keeps 300 change events; the noisy collection writes five times that while the
    // quiet one gets no write. Saving the position of empty batches keeps the quiet stream
    // inside the history, so a pause and resume afterwards does not lose it.
    let h = Harness::start_with(HarnessOptions {
        source: EmulatorOptions {
            history_size: 300,
            ..EmulatorOptions::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    h.insert_source("mig", "quiet", vec![doc! { "_id": 1, "x": 1 }])
        .await;
    h.insert_source("mig", "noisy", vec![doc! { "_id": 1, "x": 1 }])
        .await;
    let request = online_request(&h, "c05", &[("mig", "quiet"), ("mig", "noisy")], json!({}));
    let id = create_replicating_job(&h, &request).await;
    wait_streams_idle(&h, &id).await;

    let mut written = 0u64;
    for round in 0..15 {
        let docs: Vec<Document> = (0..100)
            .map(|i| doc! { "_id": 1_000 + round * 100 + i, "x": i })
            .collect();
        h.insert_source("mig", "noisy", docs).await;
        written += 100;
        h.wait_until(&id, LONG, |job| {
            stream(job, 1)["eventsApplied"].as_u64() >= Some(written)
        })
        .await;
    }
    // Two more idle round trips of the quiet stream after the last noisy write.
    let quiet_trips = h.get(&format!("/api/jobs/{id}")).await.1["collections"][0]["replication"]
        ["roundTrips"]
        .as_u64()
        .unwrap();
    h.wait_until(&id, LONG, |job| {
        stream(job, 0)["roundTrips"].as_u64() >= Some(quiet_trips + 2)
    })
    .await;

    h.post(&format!("/api/jobs/{id}/pause"), None).await;
    h.wait_for_state(&id, &["paused"], LONG).await;
    h.post(&format!("/api/jobs/{id}/resume"), None).await;
    h.wait_for_state(&id, &["replicating"], LONG).await;
    h.insert_source("mig", "quiet", vec![doc! { "_id": 2, "x": 2 }])
        .await;
    let job = h
        .wait_until(&id, LONG, |job| {
            stream(job, 0)["eventsApplied"].as_u64() >= Some(1)
                || stream(job, 0)["state"] == "failed"
        })
        .await;
    assert!(stream(&job, 0)["lastError"].is_null(), "{job:#}");
    assert_eq!(stream(&job, 0)["state"], "running", "{job:#}");
    assert_eq!(job["state"], "replicating");
    h.wait_identical("mig", "quiet", LONG).await;
    h.wait_identical("mig", "noisy", LONG).await;
    h.abort();
}
