//! Verification end to end: emulator source and target, Azurite state, standalone service.
//!
//! The online tests here change the target by hand where replication would lag; a job whose
//! source takes writes while it verifies is in `online_replication.rs`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bson::{doc, Bson, Document};
use common::{ejson, Harness, HarnessOptions, LONG};
use serde_json::{json, Value};

/// `GET /api/jobs/{id}/verification`.
async fn verification(h: &Harness, id: &str) -> Value {
    let (status, report) = h.get(&format!("/api/jobs/{id}/verification")).await;
    assert_eq!(status, 200, "{report}");
    report
}

/// Collects the `_id`s (canonical Extended JSON) a collection report gives as examples of `kind`.
fn example_ids(collection: &Value, kind: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in collection["chunks"].as_array().expect("chunks") {
        for example in chunk["examples"].as_array().expect("examples") {
            if example["kind"] == kind {
                ids.push(example["id"].as_str().expect("id").to_string());
            }
        }
    }
    ids
}

/// Canonical Extended JSON of a value, as the report writes `_id`s.
fn canonical(value: Bson) -> String {
    value.into_canonical_extjson().to_string()
}

/// Finds the collection report whose source is `namespace`.
fn collection<'a>(report: &'a Value, namespace: &str) -> &'a Value {
    report["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .find(|c| c["source"] == namespace)
        .unwrap_or_else(|| panic!("no report for {namespace}: {report:#}"))
}

fn uuid(i: u8, subtype: &str) -> Bson {
    let bytes: Vec<u8> = (0..16).map(|k| k ^ i).collect();
    let base64 = base64_of(&bytes);
    ejson(json!({ "v": { "$binary": { "base64": base64, "subType": subtype } } }))
        .get("v")
        .cloned()
        .expect("binary value")
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Delays every find and getMore the service sends to the target by `millis`.
async fn slow_target_reads(h: &Harness, millis: i32) {
    h.target_client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {
                "failCommands": ["find", "getMore"],
                "blockConnection": true,
                "blockTimeMS": millis,
                "appName": "vcore-migrate",
            }
        })
        .await
        .unwrap();
}

async fn clear_fail_points(h: &Harness) {
    h.target_client
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();
}

/// Copies with verification off, so a test can change the target before verifying.
async fn copy_without_verification(
    h: &Harness,
    name: &str,
    collections: &[(&str, &str)],
    chunk_documents: u64,
) -> String {
    let request = h.job_request(
        name,
        collections,
        json!({ "chunkDocuments": chunk_documents, "verification": "off" }),
    );
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert!(job.get("verification").is_none(), "{job:#}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_data_verifies_clean() {
    let h = Harness::start().await;
    let mut docs = vec![
        ejson(json!({"_id": null, "v": 0})),
        ejson(json!({"_id": {"$minKey": 1}, "v": 1})),
        ejson(json!({"_id": {"$numberDouble": "NaN"}, "v": 2})),
        ejson(json!({"_id": {"$numberDecimal": "1.25"}, "v": 3})),
        ejson(json!({"_id": {"k": 1}, "v": 4})),
        ejson(json!({"_id": true, "v": 5})),
    ];
    for i in 0..150 {
        docs.push(doc! { "_id": i, "n": i, "s": format!("s{i}") });
        docs.push(doc! { "_id": format!("k{i:04}"), "d": 1.5 });
    }
    h.insert_source("mig", "clean", docs).await;

    let request = h.job_request(
        "clean",
        &[("mig", "clean")],
        json!({ "chunkDocuments": 40 }),
    );
    let id = h.create_job(&request).await;
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;

    assert_eq!(job["state"], "completed", "{job:#}");
    let summary = &job["verification"];
    assert_eq!(summary["state"], "passed", "{job:#}");
    assert_eq!(summary["mode"], "full");
    assert_eq!(summary["run"], 1);
    assert_eq!(summary["chunksFailed"], 0);
    assert_eq!(summary["differences"], 0);
    assert_eq!(summary["chunksVerified"], summary["chunksTotal"]);

    let report = verification(&h, &id).await;
    assert_eq!(report["state"], "passed");
    assert_eq!(report["trigger"], "copy");
    let clean = collection(&report, "mig.clean");
    assert_eq!(clean["state"], "passed");
    assert_eq!(clean["sourceDocuments"], 306);
    assert_eq!(clean["targetDocuments"], 306);
    let chunks = clean["chunks"].as_array().unwrap();
    assert_eq!(
        chunks.len() as u64,
        job["collections"][0]["chunksTotal"].as_u64().unwrap() + 1,
        "one unit per chunk plus the remainder: {report:#}"
    );
    for chunk in chunks {
        assert_eq!(chunk["state"], "matched", "{chunk}");
        assert_eq!(chunk["digestsMatch"], true, "{chunk}");
        assert_eq!(
            chunk["sourceDocuments"], chunk["targetDocuments"],
            "{chunk}"
        );
    }
    let remainder = chunks.last().unwrap();
    assert!(remainder["chunk"].is_null(), "{remainder}");
    assert_eq!(remainder["range"]["remainder"], true);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_kind_of_difference_is_named() {
    let h = Harness::start().await;
    let numbered = |extra: fn(i32) -> Document| -> Vec<Document> { (0..40).map(extra).collect() };
    h.insert_source(
        "diff",
        "bytes",
        numbered(|i| doc! { "_id": i, "s": format!("value-{i}") }),
    )
    .await;
    h.insert_source("diff", "types", numbered(|i| doc! { "_id": i, "n": 1i32 }))
        .await;
    h.insert_source(
        "diff",
        "order",
        numbered(|i| doc! { "_id": i, "a": 1, "b": 2 }),
    )
    .await;
    h.insert_source("diff", "missing", numbered(|i| doc! { "_id": i }))
        .await;
    h.insert_source("diff", "extra", numbered(|i| doc! { "_id": i }))
        .await;
    let uuids: Vec<Document> = (0..40)
        .map(|i| doc! { "_id": uuid(i, "04"), "i": i as i32 })
        .collect();
    h.insert_source("diff", "uuid", uuids).await;
    let names = [
        ("diff", "bytes"),
        ("diff", "types"),
        ("diff", "order"),
        ("diff", "missing"),
        ("diff", "extra"),
        ("diff", "uuid"),
    ];
    let id = copy_without_verification(&h, "differences", &names, 10).await;

    let target = |name: &str| {
        h.target_client
            .database("diff")
            .collection::<Document>(name)
    };
    // One byte of one string: 'e' becomes 'f'.
    target("bytes")
        .replace_one(doc! { "_id": 17 }, doc! { "_id": 17, "s": "valuf-17" })
        .await
        .unwrap();
    // The same value with another type.
    target("types")
        .replace_one(doc! { "_id": 5 }, doc! { "_id": 5, "n": 1i64 })
        .await
        .unwrap();
    target("types")
        .replace_one(doc! { "_id": 6 }, doc! { "_id": 6, "n": 1.0f64 })
        .await
        .unwrap();
    // The same fields in another order.
    target("order")
        .replace_one(doc! { "_id": 9 }, doc! { "_id": 9, "b": 2, "a": 1 })
        .await
        .unwrap();
    target("missing")
        .delete_one(doc! { "_id": 23 })
        .await
        .unwrap();
    // One extra document inside the planned number range, one of a type no chunk covers.
    target("extra")
        .insert_one(doc! { "_id": 1000 })
        .await
        .unwrap();
    target("extra")
        .insert_one(doc! { "_id": "stray" })
        .await
        .unwrap();
    // The same UUID bytes under the legacy subtype 3 instead of 4.
    target("uuid")
        .delete_one(doc! { "_id": uuid(7, "04") })
        .await
        .unwrap();
    target("uuid")
        .insert_one(doc! { "_id": uuid(7, "03"), "i": 7 })
        .await
        .unwrap();

    let (status, started) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["run"], 1);
    assert_eq!(started["trigger"], "request");
    let job = h
        .wait_for_state(&id, &["verificationFailed", "completed"], LONG)
        .await;
    assert_eq!(job["state"], "verificationFailed", "{job:#}");
    assert_eq!(
        job["allowedCommands"],
        json!(["resume", "cancel", "verify"])
    );
    assert!(
        job["lastError"]
            .as_str()
            .unwrap()
            .contains("verification run 1"),
        "{job:#}"
    );
    assert_eq!(job["verification"]["state"], "failed");
    assert_eq!(job["verification"]["differences"], 9, "{job:#}");

    let report = verification(&h, &id).await;
    let int = |i: i32| canonical(Bson::Int32(i));
    let cases: [(&str, &str, Vec<String>); 8] = [
        ("diff.bytes", "different", vec![int(17)]),
        ("diff.types", "different", vec![int(5), int(6)]),
        ("diff.order", "different", vec![int(9)]),
        ("diff.missing", "missing", vec![int(23)]),
        (
            "diff.extra",
            "extra",
            vec![int(1000), canonical(Bson::String("stray".into()))],
        ),
        ("diff.uuid", "missing", vec![canonical(uuid(7, "04"))]),
        ("diff.uuid", "extra", vec![canonical(uuid(7, "03"))]),
        ("diff.missing", "extra", vec![]),
    ];
    for (namespace, kind, expected) in cases {
        let report = collection(&report, namespace);
        let mut found = example_ids(report, kind);
        found.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(found, expected, "{namespace} {kind}: {report:#}");
        assert_eq!(
            report[kind],
            expected.len(),
            "{namespace} {kind}: {report:#}"
        );
        assert_eq!(report["state"], "failed", "{namespace}");
    }
    let bytes = collection(&report, "diff.bytes");
    let differing: Vec<&Value> = bytes["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "different")
        .collect();
    assert_eq!(differing.len(), 1, "{bytes:#}");
    assert_eq!(differing[0]["digestsMatch"], false);
    assert_eq!(
        differing[0]["sourceDocuments"],
        differing[0]["targetDocuments"]
    );
    let stray_unit = collection(&report, "diff.extra")["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["range"]["remainder"] == true)
        .cloned()
        .unwrap();
    assert_eq!(stray_unit["extra"], 1, "{stray_unit}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_copies_differing_chunks_again() {
    let h = Harness::start().await;
    let docs: Vec<Document> = (0..60).map(|i| doc! { "_id": i, "v": i }).collect();
    h.insert_source("fix", "items", docs).await;
    let request = h.job_request("fix", &[("fix", "items")], json!({ "chunkDocuments": 20 }));
    let id = h.create_job(&request).await;
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");

    let target = h
        .target_client
        .database("fix")
        .collection::<Document>("items");
    target.delete_one(doc! { "_id": 3 }).await.unwrap();
    target
        .replace_one(doc! { "_id": 45 }, doc! { "_id": 45, "v": "stale" })
        .await
        .unwrap();
    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["run"], 2);
    let failed = h
        .wait_for_state(&id, &["verificationFailed", "completed"], LONG)
        .await;
    assert_eq!(failed["state"], "verificationFailed", "{failed:#}");
    assert_eq!(failed["verification"]["chunksFailed"], 2, "{failed:#}");

    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["verification"]["run"], 3);
    assert_eq!(job["verification"]["state"], "passed");
    assert_eq!(job["documentsCopied"], 60);
    h.assert_identical("fix", "items").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_mode_compares_counts_only() {
    let h = Harness::start().await;
    let docs: Vec<Document> = (0..30).map(|i| doc! { "_id": i, "v": i }).collect();
    h.insert_source("cnt", "items", docs).await;
    let request = h.job_request(
        "counts",
        &[("cnt", "items")],
        json!({ "chunkDocuments": 10, "verification": "counts" }),
    );
    let id = h.create_job(&request).await;
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["verification"]["mode"], "counts");

    // A changed value keeps the counts equal, so counts mode passes.
    let target = h
        .target_client
        .database("cnt")
        .collection::<Document>("items");
    target
        .replace_one(doc! { "_id": 4 }, doc! { "_id": 4, "v": "changed" })
        .await
        .unwrap();
    let (status, _) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202);
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let report = verification(&h, &id).await;
    for chunk in collection(&report, "cnt.items")["chunks"]
        .as_array()
        .unwrap()
    {
        assert!(chunk["digestsMatch"].is_null(), "{chunk}");
    }

    // A missing document changes a count; a full run asked for explicitly names it.
    target.delete_one(doc! { "_id": 12 }).await.unwrap();
    let (status, _) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202);
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "verificationFailed", "{job:#}");
    assert_eq!(job["verification"]["differences"], 1);
    let report = verification(&h, &id).await;
    let items = collection(&report, "cnt.items");
    assert_eq!(items["sourceDocuments"], 30);
    assert_eq!(items["targetDocuments"], 29);
    assert!(
        example_ids(items, "missing").is_empty(),
        "counts mode names no _id"
    );

    let (status, body) = h
        .post(
            &format!("/api/jobs/{id}/verify"),
            Some(&json!({ "mode": "full" })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "verificationFailed", "{job:#}");
    let report = verification(&h, &id).await;
    let items = collection(&report, "cnt.items");
    assert_eq!(
        example_ids(items, "missing"),
        vec![canonical(Bson::Int32(12))]
    );
    assert_eq!(
        example_ids(items, "different"),
        vec![canonical(Bson::Int32(4))]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_verification_resumes() {
    let mut h = Harness::start_with(HarnessOptions {
        task_budget_seconds: 1,
        lease_seconds: 3,
        ..HarnessOptions::default()
    })
    .await;
    let docs: Vec<Document> = (0..6_000)
        .map(|i| doc! { "_id": i, "pad": "r".repeat(200) })
        .collect();
    h.insert_source("rs", "slow", docs).await;
    let mut request = h.job_request(
        "restart",
        &[("rs", "slow")],
        json!({ "chunkDocuments": 1500, "batchSize": 100, "verification": "off" }),
    );
    request["options"]["maxParallelChunks"] = json!(4);
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");

    // Slow every target read of the service, so units take several task runs each.
    slow_target_reads(&h, 120).await;
    let (status, _) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202);

    // Wait until a unit has read part of its target side, then kill the service.
    let engine = h.engine.clone();
    let partial = wait_for_units(&engine, &id, |units| {
        units
            .iter()
            .any(|u| u.target.documents > 0 && !u.target.done)
    })
    .await;
    h.kill_and_restart().await;

    // Each unit resumes from its checkpoint: its counts never fall back.
    let mut seen: HashMap<u32, u64> = partial
        .iter()
        .map(|u| (u.index, u.target.documents))
        .collect();
    let started = std::time::Instant::now();
    loop {
        let units = current_units(&h.engine, &id).await;
        for unit in &units {
            let before = seen.entry(unit.index).or_default();
            assert!(
                unit.target.documents >= *before,
                "unit {} fell back from {before} to {} documents",
                unit.index,
                unit.target.documents
            );
            *before = unit.target.documents;
        }
        if !units.is_empty() && units.iter().all(|u| u.is_finished()) {
            break;
        }
        assert!(
            started.elapsed() < LONG,
            "verification did not finish: {units:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clear_fail_points(&h).await;

    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let report = verification(&h, &id).await;
    let slow = collection(&report, "rs.slow");
    assert_eq!(slow["sourceDocuments"], 6_000, "{slow:#}");
    assert_eq!(slow["targetDocuments"], 6_000, "{slow:#}");
    assert_eq!(slow["chunksFailed"], 0);
    h.stop().await;
}

/// Reads the unit rows of the job's latest run.
async fn current_units(
    engine: &vcore_migrate::runtime::engine::Engine,
    id: &str,
) -> Vec<vcore_migrate::state::VerifyUnitRecord> {
    let run = engine
        .store
        .job(id)
        .await
        .unwrap()
        .and_then(|j| j.value.verification)
        .map_or(0, |r| r.number);
    engine
        .store
        .verify_units_of_job(id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.value)
        .filter(|u| u.run == run)
        .collect()
}

async fn wait_for_units(
    engine: &vcore_migrate::runtime::engine::Engine,
    id: &str,
    check: impl Fn(&[vcore_migrate::state::VerifyUnitRecord]) -> bool,
) -> Vec<vcore_migrate::state::VerifyUnitRecord> {
    let started = std::time::Instant::now();
    loop {
        let units = current_units(engine, id).await;
        if check(&units) {
            return units;
        }
        assert!(started.elapsed() < LONG, "units never matched: {units:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_source_verifies() {
    let h = Harness::start_with(HarnessOptions {
        source: mongo_emulator::EmulatorOptions {
            personality: mongo_emulator::Personality::CosmosRu,
            ru_per_second: Some(1_500),
            ..Default::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    // Load and copy with throttling off, then turn it on for the verification.
    h.source_client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 0 })
        .await
        .unwrap();
    let docs: Vec<Document> = (0..3000)
        .map(|i| doc! { "_id": i, "pad": "t".repeat(300) })
        .collect();
    h.insert_source("thr", "items", docs).await;
    let request = h.job_request(
        "throttled",
        &[("thr", "items")],
        json!({ "chunkDocuments": 500, "batchSize": 200, "verification": "off" }),
    );
    let id = copy_job(&h, &request).await;

    h.source_client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 1_500 })
        .await
        .unwrap();
    let (status, _) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202);
    let job = h
        .wait_for_state(
            &id,
            &["completed", "verificationFailed"],
            Duration::from_secs(240),
        )
        .await;
    h.source_client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 0 })
        .await
        .unwrap();
    assert_eq!(job["state"], "completed", "{job:#}");
    let report = verification(&h, &id).await;
    let items = collection(&report, "thr.items");
    let throttled: u64 = items["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["throttledRequests"].as_u64().unwrap())
        .sum();
    assert!(
        throttled > 0,
        "the RU budget should have throttled reads: {report:#}"
    );
    assert_eq!(items["sourceDocuments"], 3000);
    h.stop().await;
}

async fn copy_job(h: &Harness, request: &Value) -> String {
    let id = h.create_job(request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_route_rejections() {
    let h = Harness::start().await;
    let (status, body) = h.post("/api/jobs/unknown-job/verify", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = h.get("/api/jobs/unknown-job/verification").await;
    assert_eq!(status, 404, "{body}");

    let docs: Vec<Document> = (0..10).map(|i| doc! { "_id": i }).collect();
    h.insert_source("rej", "items", docs).await;
    let request = h.job_request(
        "rejections",
        &[("rej", "items")],
        json!({ "verification": "off" }),
    );
    let id = copy_job(&h, &request).await;
    let report = verification(&h, &id).await;
    assert_eq!(report["state"], "notStarted");
    assert_eq!(report["collections"], json!([]));

    let (status, body) = h
        .post(
            &format!("/api/jobs/{id}/verify"),
            Some(&json!({ "mode": "off" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalidBody");
    let (status, body) = h
        .post(
            &format!("/api/jobs/{id}/verify"),
            Some(&json!({ "depth": 3 })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("depth"),
        "{body}"
    );

    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202, "{body}");
    let (status, again) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    if status == 409 {
        assert_eq!(again["code"], "commandNotAllowed", "{again}");
        assert!(
            again["message"]
                .as_str()
                .unwrap()
                .contains("already running"),
            "{again}"
        );
    } else {
        // The first run already finished; a second one starts.
        assert_eq!(status, 202, "{again}");
        assert_eq!(again["run"], 2, "{again}");
    }
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");

    // A job still copying cannot verify yet.
    let big: Vec<Document> = (0..20_000)
        .map(|i| doc! { "_id": i, "pad": "p".repeat(100) })
        .collect();
    h.insert_source("rej", "big", big).await;
    let request = h.job_request(
        "early",
        &[("rej", "big")],
        json!({ "chunkDocuments": 1000, "batchSize": 50, "maxParallelChunks": 1 }),
    );
    let early = h.create_job(&request).await;
    h.wait_until(&early, LONG, |job| job["state"] == "copying")
        .await;
    let (status, body) = h.post(&format!("/api/jobs/{early}/verify"), None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["state"], "copying");
    assert!(
        body["message"].as_str().unwrap().contains("initial copy"),
        "{body}"
    );
    let (status, _) = h.post(&format!("/api/jobs/{early}/cancel"), None).await;
    assert_eq!(status, 202);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_during_verification_resumes() {
    let h = Harness::start().await;
    let docs: Vec<Document> = (0..4_000)
        .map(|i| doc! { "_id": i, "pad": "q".repeat(100) })
        .collect();
    h.insert_source("pz", "items", docs).await;
    let request = h.job_request(
        "pausing",
        &[("pz", "items")],
        json!({ "chunkDocuments": 1000, "batchSize": 100, "verification": "off" }),
    );
    let id = copy_job(&h, &request).await;
    slow_target_reads(&h, 100).await;
    let (status, _) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202);
    wait_for_units(&h.engine, &id, |units| {
        units.iter().any(|u| u.target.documents > 0)
    })
    .await;

    let (status, body) = h.post(&format!("/api/jobs/{id}/pause"), None).await;
    assert_eq!(status, 202, "{body}");
    let paused = h.wait_for_state(&id, &["paused"], LONG).await;
    assert_eq!(paused["allowedCommands"], json!(["resume", "cancel"]));
    assert_eq!(paused["verification"]["state"], "running");
    clear_fail_points(&h).await;

    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["verification"]["run"], 1);
    assert_eq!(job["verification"]["state"], "passed");
    h.stop().await;
}

/// Creates an online job and waits until its initial copy is done and it replicates.
async fn replicating_job(h: &Harness, name: &str, database: &str, count: i32) -> String {
    let docs: Vec<Document> = (0..count).map(|i| doc! { "_id": i, "v": i }).collect();
    h.insert_source(database, "items", docs).await;
    let mut request = h.job_request(
        name,
        &[(database, "items")],
        json!({ "chunkDocuments": 10 }),
    );
    request["mode"] = json!("online");
    let id = h.create_job(&request).await;
    let job = h
        .wait_for_state(&id, &["replicating", "failed"], LONG)
        .await;
    assert_eq!(job["state"], "replicating", "{job:#}");
    assert!(
        job.get("verification").is_none(),
        "an online copy does not verify by itself"
    );
    id
}

/// Polls the report until run `run` has finished.
async fn wait_for_run(h: &Harness, id: &str, run: u64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let report = verification(h, id).await;
        if report["run"] == run && ["passed", "failed"].contains(&report["state"].as_str().unwrap())
        {
            return report;
        }
        assert!(
            started.elapsed() < LONG,
            "run {run} did not finish: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_job_verifies_beside_replication() {
    let h = Harness::start().await;
    let id = replicating_job(&h, "online-verify", "onl", 40).await;

    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202, "{body}");
    let report = wait_for_run(&h, &id, 1).await;
    assert_eq!(report["state"], "passed", "{report:#}");
    let (_, job) = h.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["state"], "replicating", "{job:#}");
    assert_eq!(job["verification"]["state"], "passed");

    // A run requested just before cutover, finished or not when the streams end, is followed
    // by the cutover's own run, which reads the data after the drain.
    slow_target_reads(&h, 100).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    clear_fail_points(&h).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["verification"]["run"], 3, "{job:#}");
    assert_eq!(job["verification"]["trigger"], "cutover");
    assert_eq!(job["verification"]["state"], "passed");
    let report = verification(&h, &id).await;
    assert_eq!(report["run"], 3, "{report:#}");
    assert_eq!(report["trigger"], "cutover");
    assert_eq!(report["differences"], 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_difference_is_compared_again() {
    let h = Harness::start().await;
    let id = replicating_job(&h, "online-recheck", "rchk", 30).await;

    // The target lacks a document, as it would while replication has not applied a write yet.
    let target = h
        .target_client
        .database("rchk")
        .collection::<Document>("items");
    target.delete_one(doc! { "_id": 7 }).await.unwrap();
    let (status, body) = h.post(&format!("/api/jobs/{id}/verify"), None).await;
    assert_eq!(status, 202, "{body}");
    let units = wait_for_units(&h.engine, &id, |units| {
        units.iter().any(|u| u.attempts == 1)
    })
    .await;
    let retried: Vec<u32> = units
        .iter()
        .filter(|u| u.attempts == 1)
        .map(|u| u.index)
        .collect();
    assert_eq!(
        retried,
        vec![0],
        "only the chunk of _id 7 is compared again"
    );

    // Replication catches up before the second comparison.
    target.insert_one(doc! { "_id": 7, "v": 7 }).await.unwrap();
    let report = wait_for_run(&h, &id, 1).await;
    assert_eq!(report["state"], "passed", "{report:#}");
    assert_eq!(report["differences"], 0);
    let (_, job) = h.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["state"], "replicating", "{job:#}");
    h.stop().await;
}

/// Asserts that every collection's change stream of the job view has ended.
fn assert_streams_finished(job: &Value) {
    for collection in job["collections"].as_array().expect("collections") {
        assert_eq!(
            collection["replication"]["state"], "finished",
            "{collection:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_verifies_then_completes() {
    let h = Harness::start().await;
    let id = replicating_job(&h, "cutover-verify", "cov", 60).await;
    let source = h
        .source_client
        .database("cov")
        .collection::<Document>("items");
    source
        .insert_one(doc! { "_id": 1_000, "v": 1_000 })
        .await
        .unwrap();
    source
        .update_one(doc! { "_id": 3 }, doc! { "$set": { "v": -3 } })
        .await
        .unwrap();
    source.delete_one(doc! { "_id": 5 }).await.unwrap();

    // Slow target reads keep the verifying phase long enough to look at.
    slow_target_reads(&h, 1_500).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["verifying", "completed", "failed"], LONG)
        .await;
    assert_eq!(job["state"], "verifying", "{job:#}");
    assert_eq!(job["allowedCommands"], json!(["pause", "cancel"]));
    assert_eq!(job["verification"]["trigger"], "cutover", "{job:#}");
    assert_streams_finished(&job);
    clear_fail_points(&h).await;

    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let summary = &job["verification"];
    assert_eq!(summary["state"], "passed", "{job:#}");
    assert_eq!(summary["trigger"], "cutover");
    assert_eq!(summary["mode"], "full");
    assert_eq!(summary["run"], 1);
    assert_eq!(summary["differences"], 0);
    assert_eq!(summary["chunksFailed"], 0);
    assert_eq!(summary["chunksVerified"], summary["chunksTotal"]);
    assert!(job["finishedAt"].is_string(), "{job:#}");
    h.assert_identical("cov", "items").await;
    let report = verification(&h, &id).await;
    assert_eq!(report["trigger"], "cutover", "{report:#}");
    let items = collection(&report, "cov.items");
    assert_eq!(items["sourceDocuments"], 60, "{items:#}");
    assert_eq!(items["targetDocuments"], 60);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_without_verification_completes_directly() {
    let h = Harness::start().await;
    h.insert_source("cof", "items", (0..20).map(|i| doc! { "_id": i }).collect())
        .await;
    let mut request = h.job_request(
        "cutover-off",
        &[("cof", "items")],
        json!({ "verification": "off" }),
    );
    request["mode"] = json!("online");
    let id = h.create_job(&request).await;
    h.wait_for_state(&id, &["replicating"], LONG).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert!(job.get("verification").is_none(), "{job:#}");
    h.assert_identical("cof", "items").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn difference_after_streams_end_fails_cutover_verification() {
    let mut h = Harness::start().await;
    h.insert_source(
        "cod",
        "items",
        (0..50).map(|i| doc! { "_id": i, "v": i }).collect(),
    )
    .await;
    // One chunk read 10 documents per round trip, so the comparison of `_id` 45 comes late.
    let mut request = h.job_request(
        "cutover-diff",
        &[("cod", "items")],
        json!({ "chunkDocuments": 1_000, "batchSize": 10 }),
    );
    request["mode"] = json!("online");
    let id = h.create_job(&request).await;
    h.wait_for_state(&id, &["replicating"], LONG).await;

    // Every target round trip of the verification waits a second, so the pause lands long
    // before the comparison reaches `_id` 45. The streams apply with writes, which never wait.
    slow_target_reads(&h, 1_000).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h.wait_for_state(&id, &["verifying"], LONG).await;
    assert_streams_finished(&job);
    let (status, body) = h.post(&format!("/api/jobs/{id}/pause"), None).await;
    assert_eq!(status, 202, "{body}");
    h.wait_for_state(&id, &["paused"], LONG).await;

    // The pause survives a restart; nothing writes to the target while the job is paused.
    h.kill_and_restart().await;
    let paused = h.wait_for_state(&id, &["paused"], LONG).await;
    assert_eq!(paused["allowedCommands"], json!(["resume", "cancel"]));
    // Under load the pause can land while the run still writes its unit rows.
    let run_state = paused["verification"]["state"].as_str().unwrap_or_default();
    assert!(
        ["preparing", "running"].contains(&run_state),
        "the verification should be unfinished: {paused:#}"
    );
    assert_eq!(paused["verification"]["trigger"], "cutover");
    let target = h
        .target_client
        .database("cod")
        .collection::<Document>("items");
    target
        .update_one(
            doc! { "_id": 45 },
            doc! { "$set": { "v": "changed on the target" } },
        )
        .await
        .unwrap();
    clear_fail_points(&h).await;

    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "verificationFailed", "{job:#}");
    let id_45 = canonical(Bson::Int32(45));
    let reason = job["lastError"].as_str().expect("lastError");
    assert!(
        reason.contains(&format!("different _id {id_45}")),
        "{reason}"
    );
    assert_eq!(
        job["allowedCommands"],
        json!(["resume", "cancel", "verify"]),
        "{job:#}"
    );
    assert_eq!(job["verification"]["trigger"], "cutover");
    assert_eq!(job["verification"]["differences"], 1);
    let report = verification(&h, &id).await;
    assert_eq!(report["state"], "failed", "{report:#}");
    let items = collection(&report, "cod.items");
    assert_eq!(example_ids(items, "different"), vec![id_45]);
    assert!(example_ids(items, "missing").is_empty());

    // Resume copies the differing chunk again from the source, without starting the streams
    // again, and verifies once more.
    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, 202, "{body}");
    let state = body["state"].as_str().unwrap_or_default();
    assert!(
        ["cuttingOver", "verifying", "completed"].contains(&state),
        "{body:#}"
    );
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_streams_finished(&job);
    assert_eq!(job["verification"]["run"], 2, "{job:#}");
    assert_eq!(job["verification"]["trigger"], "cutover");
    assert_eq!(job["verification"]["state"], "passed");
    h.assert_identical("cod", "items").await;
    h.stop().await;
}
