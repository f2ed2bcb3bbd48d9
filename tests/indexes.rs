//! Index plans, index builds and target shard keys, end to end on the emulators.

mod common;

use bson::{doc, Bson, Document};
use common::{Harness, HarnessOptions, LONG};
use mongo_emulator::{EmulatorOptions, Personality};
use mongodb::Client;
use serde_json::{json, Value};

async fn create_indexes(client: &Client, db: &str, coll: &str, specs: Vec<Document>) {
    client
        .database(db)
        .run_command(doc! { "createIndexes": coll, "indexes": specs })
        .await
        .expect("source indexes created");
}

/// Lists the target's index specifications.
async fn target_indexes(h: &Harness, db: &str, coll: &str) -> Vec<Document> {
    let reply = h
        .target_client
        .database(db)
        .run_command(doc! { "listIndexes": coll })
        .await
        .expect("listIndexes on the target");
    reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a first batch")
        .iter()
        .filter_map(|b| b.as_document().cloned())
        .collect()
}

fn find<'a>(specs: &'a [Document], name: &str) -> Option<&'a Document> {
    specs.iter().find(|s| s.get_str("name") == Ok(name))
}

/// Finds the view of one index in the job's first collection.
fn index_view<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["collections"][0]["indexes"]
        .as_array()
        .expect("an index list")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("index {name} is not in the plan: {job:#}"))
}

fn people() -> Vec<Document> {
    (0..40)
        .map(|i| {
            doc! {
                "_id": i,
                "a": i % 7,
                "b": i,
                "email": format!("p{i}@example.com"),
                "login": format!("user{i}"),
                "name": format!("Name {i}"),
                "score": i,
                "at": bson::DateTime::from_millis(1_700_000_000_000 + i as i64),
                "body": "some words here",
                "title": "a title",
                "loc": { "type": "Point", "coordinates": [i as f64 / 10.0, 1.0] },
                "place": { "type": "Point", "coordinates": [2.0, i as f64 / 10.0] },
                "kind": "k",
                "h": i * 3,
                "hid": i,
            }
        })
        .collect()
}

/// Returns one source index of every kind the plan covers.
fn every_index_kind() -> Vec<Document> {
    vec![
        doc! { "key": { "a": 1 }, "name": "a_1" },
        doc! { "key": { "a": 1, "b": -1 }, "name": "a_1_b_-1" },
        doc! { "key": { "email": 1 }, "name": "email_1", "unique": true },
        doc! { "key": { "nick": 1 }, "name": "nick_1", "sparse": true },
        doc! {
            "key": { "score": 1 }, "name": "score_partial",
            "partialFilterExpression": { "score": { "$gt": 5_i64 }, "kind": { "$exists": true } },
        },
        doc! { "key": { "at": 1 }, "name": "at_ttl", "expireAfterSeconds": 86_400_i64 },
        doc! {
            "key": { "body": "text", "title": "text" }, "name": "body_text",
            "weights": { "body": 1, "title": 5 }, "default_language": "english",
        },
        doc! { "key": { "loc": "2dsphere" }, "name": "loc_2dsphere" },
        doc! { "key": { "place": "2dsphere", "kind": 1 }, "name": "place_kind" },
        doc! { "key": { "h": "hashed" }, "name": "h_hashed" },
        doc! { "key": { "$**": 1 }, "name": "wildcard", "wildcardProjection": { "body": 0 } },
        doc! {
            "key": { "name": 1 }, "name": "name_ci",
            "collation": { "locale": "en", "strength": 2 },
        },
        doc! {
            "key": { "login": 1 }, "name": "login_ci", "unique": true,
            "collation": { "locale": "en", "strength": 2 },
        },
        doc! { "key": { "hid": 1 }, "name": "hid_1", "hidden": true },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_index_kind_follows_plan() {
    let h = Harness::start().await;
    create_indexes(&h.source_client, "mig", "people", every_index_kind()).await;
    h.insert_source("mig", "people", people()).await;

    let request = h.job_request("kinds", &[("mig", "people")], json!({}));
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("mig", "people").await;

    let expected = [
        ("_id_", "skip", "never", "skipped"),
        ("a_1", "create", "afterCopy", "built"),
        ("a_1_b_-1", "create", "afterCopy", "built"),
        ("email_1", "create", "beforeCopy", "built"),
        ("nick_1", "create", "afterCopy", "built"),
        ("score_partial", "create", "afterCopy", "built"),
        ("at_ttl", "create", "afterCopy", "built"),
        ("body_text", "create", "afterCopy", "built"),
        ("loc_2dsphere", "create", "afterCopy", "built"),
        ("place_kind", "translate", "afterCopy", "built"),
        ("h_hashed", "create", "afterCopy", "built"),
        ("wildcard", "create", "afterCopy", "built"),
        ("name_ci", "translate", "afterCopy", "built"),
        ("login_ci", "skip", "never", "skipped"),
        ("hid_1", "translate", "afterCopy", "built"),
    ];
    for (name, action, phase, state) in expected {
        let view = index_view(&job, name);
        assert_eq!(view["action"], action, "{name}: {view:#}");
        assert_eq!(view["phase"], phase, "{name}: {view:#}");
        assert_eq!(view["state"], state, "{name}: {view:#}");
        if action != "create" {
            let reason = view["reason"].as_str().unwrap_or_default();
            assert!(!reason.is_empty(), "{name} has no reason: {view:#}");
        }
    }
    let login = index_view(&job, "login_ci");
    assert!(
        login["reason"]
            .as_str()
            .unwrap()
            .contains("does not enforce this unique constraint"),
        "{login:#}"
    );

    let builds = &job["collections"][0]["indexBuilds"];
    assert_eq!(builds["planned"], 13, "{builds:#}");
    assert_eq!(builds["built"], 13, "{builds:#}");
    assert_eq!(builds["pending"], 0, "{builds:#}");
    assert_eq!(builds["skipped"], 2, "{builds:#}");

    let target = target_indexes(&h, "mig", "people").await;
    assert!(find(&target, "login_ci").is_none(), "{target:?}");
    let name_ci = find(&target, "name_ci").expect("name_ci on the target");
    assert!(!name_ci.contains_key("collation"), "{name_ci}");
    let place = find(&target, "place_kind").expect("place_kind on the target");
    assert_eq!(
        place.get_document("key").unwrap(),
        &doc! { "place": "2dsphere" }
    );
    let email = find(&target, "email_1").expect("email_1 on the target");
    assert_eq!(email.get("unique"), Some(&Bson::Boolean(true)));
    let sparse = find(&target, "nick_1").expect("nick_1 on the target");
    assert_eq!(sparse.get("sparse"), Some(&Bson::Boolean(true)));
    let text = find(&target, "body_text").expect("body_text on the target");
    assert_eq!(
        text.get_document("weights").unwrap(),
        &doc! { "body": 1, "title": 5 }
    );
    let wildcard = find(&target, "wildcard").expect("wildcard on the target");
    assert_eq!(
        wildcard.get_document("wildcardProjection").unwrap(),
        &doc! { "body": 0 }
    );
    assert!(find(&target, "h_hashed").is_some());
    assert!(find(&target, "a_1_b_-1").is_some());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ttl_and_partial_options_exact() {
    let h = Harness::start().await;
    let specs = vec![
        doc! { "key": { "at": 1 }, "name": "at_ttl64", "expireAfterSeconds": 86_400_i64 },
        doc! { "key": { "b": 1 }, "name": "b_ttl32", "expireAfterSeconds": 60 },
        doc! {
            "key": { "score": 1 }, "name": "score_partial", "unique": true,
            "partialFilterExpression": {
                "score": { "$gte": 1.5 }, "kind": { "$type": "string" },
                "$or": [{ "a": { "$lt": 3 } }, { "a": { "$in": [5, 6] } }],
            },
        },
    ];
    create_indexes(&h.source_client, "mig", "exact", specs.clone()).await;
    h.insert_source("mig", "exact", people()).await;

    let request = h.job_request("exact", &[("mig", "exact")], json!({}));
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");

    let target = target_indexes(&h, "mig", "exact").await;
    for spec in &specs {
        let name = spec.get_str("name").unwrap();
        let built = find(&target, name).unwrap_or_else(|| panic!("{name} missing: {target:?}"));
        for option in ["expireAfterSeconds", "partialFilterExpression", "unique"] {
            // Bson equality compares types too: Int64 stays Int64, 1.5 stays a double.
            assert_eq!(built.get(option), spec.get(option), "{name}.{option}");
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_violation_fails_collection() {
    let h = Harness::start().await;
    create_indexes(
        &h.source_client,
        "mig",
        "users",
        vec![doc! { "key": { "email": 1 }, "name": "email_1", "unique": true }],
    )
    .await;
    h.insert_source(
        "mig",
        "users",
        vec![doc! { "_id": 1, "email": "a@example.com" }],
    )
    .await;
    // The target already has two documents that share an email.
    h.target_client
        .database("mig")
        .collection::<Document>("users")
        .insert_many(vec![
            doc! { "_id": 100, "email": "dup@example.com" },
            doc! { "_id": 101, "email": "dup@example.com" },
        ])
        .await
        .expect("target documents inserted");

    let request = h.job_request("violation", &[("mig", "users")], json!({}));
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;

    assert_eq!(job["state"], "failed", "{job:#}");
    let collection = &job["collections"][0];
    assert_eq!(collection["state"], "failed", "{job:#}");
    let error = collection["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("violates unique index email_1"),
        "unclear error: {error}"
    );
    let view = index_view(&job, "email_1");
    assert_eq!(view["state"], "failed", "{view:#}");
    let target = target_indexes(&h, "mig", "users").await;
    assert!(find(&target, "email_1").is_none(), "{target:?}");

    // Removing the stray target documents and resuming builds the index and copies the
    // collection. Removing only one of them would leave a document the source does not have,
    // which the verification after the copy reports.
    h.target_client
        .database("mig")
        .collection::<Document>("users")
        .delete_many(doc! { "_id": { "$in": [100, 101] } })
        .await
        .expect("stray target documents removed");
    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(index_view(&job, "email_1")["state"], "built");
    let target = target_indexes(&h, "mig", "users").await;
    assert!(find(&target, "email_1").is_some(), "{target:?}");
    assert_eq!(h.target_count("mig", "users").await, 1);
    assert_eq!(job["verification"]["state"], "passed", "{job:#}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_index_conflict_reported() {
    let h = Harness::start().await;
    create_indexes(
        &h.source_client,
        "mig",
        "orders",
        vec![doc! { "key": { "a": 1 }, "name": "a_1" }],
    )
    .await;
    h.insert_source("mig", "orders", people()).await;
    create_indexes(
        &h.target_client,
        "mig",
        "orders",
        vec![doc! { "key": { "a": -1 }, "name": "a_1" }],
    )
    .await;

    let request = h.job_request("conflict", &[("mig", "orders")], json!({}));
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");

    let view = index_view(&job, "a_1");
    assert_eq!(view["state"], "conflict", "{view:#}");
    let error = view["error"].as_str().unwrap_or_default();
    assert!(error.contains("different specification"), "{error}");
    assert_eq!(job["collections"][0]["indexBuilds"]["conflicts"], 1);
    let target = target_indexes(&h, "mig", "orders").await;
    let kept = find(&target, "a_1").expect("the target's own a_1");
    assert_eq!(kept.get_document("key").unwrap(), &doc! { "a": -1 });
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shard_key_option_shards_target() {
    let h = Harness::start().await;
    h.insert_source("mig", "orders", people()).await;

    let mut request = h.job_request("sharded", &[("mig", "orders")], json!({}));
    request["collections"][0]["targetCollection"] = json!("orders_by_customer");
    request["collections"][0]["targetShardKey"] = json!({ "customerId": "hashed" });
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["collections"][0]["targetSharded"], true, "{job:#}");

    let recorded = h
        .target_client
        .database("admin")
        .run_command(doc! { "emulatorRecordedCommands": 1 })
        .await
        .expect("recorded commands");
    let commands = recorded.get_array("commands").expect("a command list");
    assert_eq!(commands.len(), 1, "{commands:?}");
    let command = commands[0].as_document().expect("a command document");
    assert_eq!(
        command.get_str("shardCollection"),
        Ok("mig.orders_by_customer")
    );
    assert_eq!(
        command.get_document("key").unwrap(),
        &doc! { "customerId": "hashed" }
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranged_shard_key_rejected() {
    let h = Harness::start().await;
    let mut request = h.job_request("ranged", &[("mig", "orders")], json!({}));
    request["collections"][0]["targetShardKey"] = json!({ "customerId": 1 });
    let (status, body) = h.post("/api/jobs", Some(&request)).await;

    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalidShardKey", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("hashed"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ru_ts_ttl_skipped_with_reason() {
    let h = Harness::start_with(HarnessOptions {
        source: EmulatorOptions {
            personality: Personality::CosmosRu,
            ..EmulatorOptions::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    // Cosmos DB (RU) creates unique indexes on empty collections only.
    create_indexes(
        &h.source_client,
        "mig",
        "events",
        vec![
            doc! { "key": { "_ts": 1 }, "name": "_ts_1", "expireAfterSeconds": 3600 },
            doc! { "key": { "code": 1 }, "name": "code_1", "unique": true },
        ],
    )
    .await;
    let docs = (0..20).map(|i| doc! { "_id": i, "code": i }).collect();
    h.insert_source("mig", "events", docs).await;

    let request = h.job_request("ru", &[("mig", "events")], json!({}));
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["sourceKind"], "cosmosRu", "{job:#}");

    let ts = index_view(&job, "_ts_1");
    assert_eq!(ts["action"], "skip", "{ts:#}");
    assert!(ts["reason"].as_str().unwrap().contains("_ts"), "{ts:#}");
    assert_eq!(index_view(&job, "code_1")["state"], "built");
    let target = target_indexes(&h, "mig", "events").await;
    assert!(find(&target, "_ts_1").is_none(), "{target:?}");
    assert!(find(&target, "code_1").is_some(), "{target:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_options_set_phases() {
    let h = Harness::start().await;
    let specs = vec![
        doc! { "key": { "a": 1 }, "name": "a_1" },
        doc! { "key": { "email": 1 }, "name": "email_1", "unique": true },
    ];
    create_indexes(&h.source_client, "mig", "early", specs.clone()).await;
    create_indexes(&h.source_client, "mig", "none", specs).await;
    h.insert_source("mig", "early", people()).await;
    h.insert_source("mig", "none", people()).await;

    let early = h.job_request(
        "early",
        &[("mig", "early")],
        json!({ "indexes": "beforeCopy" }),
    );
    let none = h.job_request("none", &[("mig", "none")], json!({ "indexes": "skip" }));
    let early_id = h.create_job(&early).await;
    let none_id = h.create_job(&none).await;
    let early_job = h
        .wait_for_state(&early_id, &["completed", "failed"], LONG)
        .await;
    let none_job = h
        .wait_for_state(&none_id, &["completed", "failed"], LONG)
        .await;

    assert_eq!(early_job["state"], "completed", "{early_job:#}");
    assert_eq!(index_view(&early_job, "a_1")["phase"], "beforeCopy");
    assert_eq!(index_view(&early_job, "a_1")["state"], "built");
    assert_eq!(none_job["state"], "completed", "{none_job:#}");
    for name in ["a_1", "email_1"] {
        let view = index_view(&none_job, name);
        assert_eq!(view["action"], "skip", "{view:#}");
    }
    let target = target_indexes(&h, "mig", "none").await;
    assert_eq!(target.len(), 1, "only _id_ expected: {target:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_builds_visible_while_pending() {
    // A target that fails every createIndexes for a while keeps the after-copy build pending,
    // so the job shows it before completing.
    let h = Harness::start().await;
    create_indexes(
        &h.source_client,
        "mig",
        "slow",
        vec![doc! { "key": { "a": 1 }, "name": "a_1" }],
    )
    .await;
    h.insert_source("mig", "slow", people()).await;
    h.target_client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": 2 },
            "data": { "failCommands": ["createIndexes"], "errorCode": 91 },
        })
        .await
        .expect("fail point set");

    let request = h.job_request("slow", &[("mig", "slow")], json!({}));
    let id = h.create_job(&request).await;
    let pending = h
        .wait_until(&id, LONG, |job| {
            job["collections"][0]["indexBuilds"]["pending"] == 1
                && job["collections"][0]["documentsCopied"] == 40
        })
        .await;
    assert_ne!(pending["state"], "completed", "{pending:#}");
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(index_view(&job, "a_1")["state"], "built");
    assert_eq!(job["collections"][0]["indexBuilds"]["built"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_violation_during_copy_fails() {
    let h = Harness::start().await;
    create_indexes(
        &h.source_client,
        "mig",
        "accounts",
        vec![doc! { "key": { "email": 1 }, "name": "email_1", "unique": true }],
    )
    .await;
    h.insert_source(
        "mig",
        "accounts",
        vec![doc! { "_id": 1, "email": "taken@example.com" }],
    )
    .await;
    // One target document is enough for the index build to pass, but it takes the email of a
    // source document with another `_id`.
    h.target_client
        .database("mig")
        .collection::<Document>("accounts")
        .insert_one(doc! { "_id": 100, "email": "taken@example.com" })
        .await
        .expect("target document inserted");

    let request = h.job_request("copy-violation", &[("mig", "accounts")], json!({}));
    let id = h.create_job(&request).await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;

    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(index_view(&job, "email_1")["state"], "built", "{job:#}");
    let collection = &job["collections"][0];
    assert_eq!(collection["chunksFailed"], 1, "{job:#}");
    let error = collection["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("email_1"),
        "error does not name the index: {error}"
    );
    assert!(
        error.contains("11000"),
        "error does not give the code: {error}"
    );
    h.stop().await;
}
