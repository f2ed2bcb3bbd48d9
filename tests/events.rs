//! Job events: CloudEvents on the events queue for every transition, and signed callbacks with
//! retries, address rules and failures recorded on the job.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bson::{doc, Document};
use common::{Harness, HarnessOptions, LONG};
use serde_json::{json, Value};

const SIGNING_KEY: &str = "test-signing-key";

fn events_queue_name() -> String {
    format!("ev{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn documents(count: i32) -> Vec<Document> {
    (0..count).map(|i| doc! { "_id": i, "v": i }).collect()
}

async fn harness_with(settings: &[(&str, &str)]) -> Harness {
    Harness::start_with(HarnessOptions {
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..HarnessOptions::default()
    })
    .await
}

/// Receives and deletes events from `queue` until `done` accepts everything received so far.
async fn collect_events(h: &Harness, queue: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let client = h.engine.account.queue(queue);
    let started = Instant::now();
    let mut events = Vec::new();
    loop {
        for message in client.receive(32, Duration::from_secs(30)).await.unwrap() {
            let event: Value = serde_json::from_str(&message.text)
                .unwrap_or_else(|e| panic!("event is not JSON ({e}): {}", message.text));
            events.push(event);
            client.delete(&message).await.unwrap();
        }
        if done(&events) {
            return events;
        }
        if started.elapsed() > LONG {
            panic!("events incomplete after {LONG:?}: {events:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_changes(events: &[Value]) -> Vec<&Value> {
    let mut changes: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "com.vcoremigrate.job.stateChanged")
        .collect();
    changes.sort_by_key(|e| e["time"].as_str().unwrap_or_default().to_string());
    changes
}

fn has_state_change(events: &[Value], to: &str) -> bool {
    state_changes(events)
        .iter()
        .any(|e| e["data"]["state"] == to)
}

/// Checks the CloudEvents attributes of every event and that state changes chain up.
fn assert_well_formed(events: &[Value], job_id: &str, prefix: &str) {
    for event in events {
        assert_eq!(event["specversion"], "1.0", "{event:#}");
        assert_eq!(event["subject"], job_id, "{event:#}");
        assert_eq!(event["data"]["jobId"], job_id, "{event:#}");
        assert_eq!(event["source"], format!("/vcore-migrate/{prefix}"));
        assert_eq!(event["datacontenttype"], "application/json");
        assert!(event["id"].as_str().is_some_and(|id| id.len() == 36));
        let time = event["time"].as_str().expect("time");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }
    let ids: std::collections::HashSet<&str> =
        events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids repeat");

    let changes = state_changes(events);
    for pair in changes.windows(2) {
        assert_eq!(
            pair[0]["data"]["state"], pair[1]["data"]["previousState"],
            "state changes do not chain: {changes:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_job_events_reach_queue() {
    let queue = events_queue_name();
    let h = harness_with(&[("VCM_EVENTS_QUEUE", &queue)]).await;
    h.insert_source("shop", "orders", documents(500)).await;
    let request = h.job_request(
        "evented",
        &[("shop", "orders")],
        json!({ "chunkDocuments": 100 }),
    );
    let id = h.create_job(&request).await;
    h.wait_for_state(&id, &["completed"], LONG).await;

    let events = collect_events(&h, &queue, |e| has_state_change(e, "completed")).await;
    assert_well_formed(&events, &id, &h.prefix);

    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "com.vcoremigrate.job.created")
        .collect();
    assert_eq!(created.len(), 1, "{events:#?}");
    assert_eq!(created[0]["data"]["state"], "queued");
    assert_eq!(created[0]["data"]["name"], "evented");
    assert_eq!(created[0]["data"]["mode"], "offline");

    let changes = state_changes(&events);
    assert_eq!(changes.first().unwrap()["data"]["previousState"], "queued");
    assert_eq!(changes.first().unwrap()["data"]["state"], "planning");
    assert_eq!(changes.last().unwrap()["data"]["state"], "completed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_job_events_reach_queue() {
    let queue = events_queue_name();
    let h = harness_with(&[("VCM_EVENTS_QUEUE", &queue)]).await;
    h.insert_source("shop", "live", documents(300)).await;
    let mut request = h.job_request("evented-online", &[("shop", "live")], json!({}));
    request["mode"] = json!("online");
    let id = h.create_job(&request).await;
    h.wait_for_state(&id, &["replicating"], LONG).await;

    let (status, body) = h.post(&format!("/api/jobs/{id}/pause"), None).await;
    assert_eq!(status, 202, "{body}");
    h.wait_for_state(&id, &["paused"], LONG).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, 202, "{body}");
    h.wait_for_state(&id, &["replicating"], LONG).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 202, "{body}");

    let events = collect_events(&h, &queue, |e| has_state_change(e, "cuttingOver")).await;
    assert_well_formed(&events, &id, &h.prefix);
    let transitions: Vec<(String, String)> = state_changes(&events)
        .iter()
        .map(|e| {
            (
                e["data"]["previousState"].as_str().unwrap().to_string(),
                e["data"]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        ("queued", "planning"),
        ("replicating", "pausing"),
        ("pausing", "paused"),
        ("paused", "replicating"),
        ("replicating", "cuttingOver"),
    ] {
        assert!(
            transitions.contains(&(expected.0.to_string(), expected.1.to_string())),
            "no event for {expected:?}: {transitions:?}"
        );
    }
    assert!(
        transitions.iter().any(|(_, to)| to == "replicating"),
        "no event for reaching replication: {transitions:?}"
    );
    h.stop().await;
}

fn of_type<'a>(events: &'a [Value], suffix: &str) -> Vec<&'a Value> {
    let name = format!("com.vcoremigrate.job.{suffix}");
    events.iter().filter(|e| e["type"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_ready_is_published_once() {
    let queue = events_queue_name();
    let mut h = harness_with(&[("VCM_EVENTS_QUEUE", &queue)]).await;
    h.insert_source("shop", "ready", documents(200)).await;
    let mut request = h.job_request("ready-once", &[("shop", "ready")], json!({}));
    request["mode"] = json!("online");
    let id = h.create_job(&request).await;
    let job = h
        .wait_until(&id, LONG, |job| job["cutoverReadyAt"].is_string())
        .await;
    assert_eq!(job["state"], "replicating", "{job:#}");
    assert_eq!(job["canCutover"], true, "{job:#}");
    let ready_at = job["cutoverReadyAt"].clone();
    let mut events = collect_events(&h, &queue, |e| !of_type(e, "cutoverReady").is_empty()).await;

    // Scheduler passes, a pause, a restart and a resume find the job able to cut over again,
    // and none of them publishes the event a second time.
    let (status, body) = h.post(&format!("/api/jobs/{id}/pause"), None).await;
    assert_eq!(status, 202, "{body}");
    h.wait_for_state(&id, &["paused"], LONG).await;
    // The pause's event is delivered before the process is killed, which would lose it.
    events.extend(collect_events(&h, &queue, |e| has_state_change(e, "paused")).await);
    h.kill_and_restart().await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/resume"), None).await;
    assert_eq!(status, 202, "{body}");
    h.wait_for_state(&id, &["replicating"], LONG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 202, "{body}");
    let job = h
        .wait_for_state(&id, &["completed", "failed", "verificationFailed"], LONG)
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["cutoverReadyAt"], ready_at);
    events.extend(collect_events(&h, &queue, |e| has_state_change(e, "completed")).await);
    assert_well_formed(&events, &id, &h.prefix);

    let ready = of_type(&events, "cutoverReady");
    assert_eq!(ready.len(), 1, "{ready:#?}");
    assert_eq!(ready[0]["data"]["state"], "replicating");
    assert_eq!(ready[0]["data"]["details"]["collections"], 1);
    let verified = of_type(&events, "verificationCompleted");
    assert_eq!(verified.len(), 1, "{verified:#?}");
    let details = &verified[0]["data"]["details"];
    assert_eq!(details["trigger"], "cutover", "{details:#}");
    assert_eq!(details["passed"], true);
    assert_eq!(details["differences"], 0);
    assert!(
        has_state_change(&events, "verifying"),
        "no event for the cutover verification: {events:#?}"
    );
    h.stop().await;
}

/// A callback receiver on 127.0.0.1 that responds with HTTP 500 to the first `failures` requests.
#[derive(Clone, Default)]
struct Receiver {
    /// Every request with the status of its response.
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes, StatusCode)>>>,
    failures: usize,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut requests = receiver.requests.lock().unwrap();
    let status = if requests.len() < receiver.failures {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    requests.push((headers, body, status));
    status
}

async fn start_receiver(failures: usize) -> (Receiver, String) {
    let receiver = Receiver {
        failures,
        ..Receiver::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?token=abc", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_is_signed_and_retried() {
    let h = harness_with(&[
        ("VCM_CALLBACK_SIGNING_KEY", SIGNING_KEY),
        ("VCM_CALLBACK_ALLOW_LOOPBACK", "true"),
    ])
    .await;
    let (receiver, url) = start_receiver(2).await;
    h.insert_source("shop", "hooked", documents(200)).await;
    let request = h.job_request(
        "hooked",
        &[("shop", "hooked")],
        json!({ "callbackUrl": url }),
    );
    let id = h.create_job(&request).await;
    h.wait_for_state(&id, &["completed"], LONG).await;

    // Wait for the completed event and for every failed delivery's retry.
    let started = Instant::now();
    let (bodies, outcomes) = loop {
        let requests = receiver.requests.lock().unwrap().clone();
        let bodies: Vec<Value> = requests
            .iter()
            .map(|(_, body, _)| serde_json::from_slice(body).unwrap())
            .collect();
        let outcomes: Vec<(String, StatusCode)> = bodies
            .iter()
            .zip(&requests)
            .map(|(event, (_, _, status))| (event["id"].as_str().unwrap().to_string(), *status))
            .collect();
        let retried = outcomes.iter().all(|(id, status)| {
            *status == StatusCode::NO_CONTENT
                || outcomes
                    .iter()
                    .any(|(other, s)| other == id && *s == StatusCode::NO_CONTENT)
        });
        if has_state_change(&bodies, "completed") && retried {
            break (bodies, outcomes);
        }
        assert!(
            started.elapsed() < LONG,
            "callbacks incomplete or not retried: {outcomes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    for (headers, body, _) in receiver.requests.lock().unwrap().iter() {
        let expected = vcore_migrate::events::signature(SIGNING_KEY.as_bytes(), body);
        assert_eq!(
            headers
                .get(vcore_migrate::events::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some(expected.as_str()),
            "signature header does not match the body"
        );
        assert_eq!(
            headers["content-type"],
            "application/cloudevents+json; charset=utf-8"
        );
    }

    // The first two requests got HTTP 500, and the loop above saw each of their events
    // delivered on a retry.
    let failed = outcomes
        .iter()
        .filter(|(_, status)| *status == StatusCode::INTERNAL_SERVER_ERROR)
        .count();
    assert_eq!(failed, 2, "{outcomes:?}");

    let unique: std::collections::HashMap<&str, &Value> = bodies
        .iter()
        .map(|b| (b["id"].as_str().unwrap(), b))
        .collect();
    let unique: Vec<Value> = unique.into_values().cloned().collect();
    assert_well_formed(&unique, &id, &h.prefix);

    let (_, job) = h.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["eventDeliveryFailures"], 0, "{job:#}");
    assert_eq!(job["eventDeliveryError"], Value::Null, "{job:#}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_callback_is_recorded_on_job() {
    let h = harness_with(&[
        ("VCM_CALLBACK_SIGNING_KEY", SIGNING_KEY),
        ("VCM_CALLBACK_ALLOW_LOOPBACK", "true"),
    ])
    .await;
    let (receiver, url) = start_receiver(usize::MAX).await;
    h.insert_source("shop", "down", documents(50)).await;
    let request = h.job_request(
        "hook-down",
        &[("shop", "down")],
        json!({ "callbackUrl": url }),
    );
    let id = h.create_job(&request).await;

    // The migration is not held back by the failing receiver.
    h.wait_for_state(&id, &["completed"], LONG).await;
    let job = h
        .wait_until(&id, LONG, |job| {
            job["eventDeliveryFailures"].as_u64() >= Some(1)
        })
        .await;
    let error = job["eventDeliveryError"].as_str().expect("error recorded");
    assert!(error.contains("callback"), "{error}");
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("after 4 attempt(s)"), "{error}");
    assert!(
        !error.contains("token=abc"),
        "the error shows the callback URL's query: {error}"
    );

    let requests = receiver.requests.lock().unwrap().clone();
    let first: Value = serde_json::from_slice(&requests[0].1).unwrap();
    let attempts = requests
        .iter()
        .filter(|(_, body, _)| serde_json::from_slice::<Value>(body).unwrap()["id"] == first["id"])
        .count();
    assert_eq!(attempts, 4, "one event is tried a bounded number of times");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_address_rules_apply_at_creation() {
    let h = harness_with(&[("VCM_CALLBACK_SIGNING_KEY", SIGNING_KEY)]).await;
    let cases = [
        ("http://hooks.example.com/x", "https only"),
        ("https://127.0.0.1:9/x", "loopback"),
        ("https://localhost:9/x", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://10.0.0.5/x", "private"),
        ("https://192.168.1.10/x", "private"),
        ("https://[fd00:ec2::254]/x", "private"),
        ("https://[::ffff:169.254.169.254]/x", "metadata"),
        (
            "https://user:pw@hooks.example.com/x",
            "user name or password",
        ),
    ];
    for (i, (url, reason)) in cases.iter().enumerate() {
        let request = h.job_request(
            &format!("bad-hook-{i}"),
            &[("shop", "orders")],
            json!({ "callbackUrl": url }),
        );
        let (status, body) = h.post("/api/jobs", Some(&request)).await;
        assert_eq!(status, 400, "{url} was accepted: {body}");
        assert_eq!(body["code"], "invalidCallbackUrl", "{url}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(reason), "{url}: {message}");
    }
    let (_, list) = h.get("/api/jobs").await;
    assert_eq!(list["jobs"], json!([]), "a rejected job was stored");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_needs_signing_key() {
    let h = harness_with(&[("VCM_CALLBACK_ALLOW_LOOPBACK", "true")]).await;
    let request = h.job_request(
        "unsigned",
        &[("shop", "orders")],
        json!({ "callbackUrl": "http://127.0.0.1:9/hook" }),
    );
    let (status, body) = h.post("/api/jobs", Some(&request)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalidCallbackUrl");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("VCM_CALLBACK_SIGNING_KEY"),
        "{body}"
    );
    h.stop().await;
}
