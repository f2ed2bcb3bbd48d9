//! The Functions custom-handler contract: queue and timer invocations posted as the host does.

mod common;

use std::time::Duration;

use bson::doc;
use common::Harness;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use vcore_migrate::api::{router, Mount};

/// Starts the `serve` router on 127.0.0.1 for the harness's engine; returns its base URL.
async fn start_handler(h: &Harness) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(h.engine.clone(), Mount::FunctionsHost);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{address}")
}

async fn invoke(base: &str, function: &str, envelope: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/{function}"))
        .json(envelope)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_probe_and_health() {
    let h = Harness::start().await;
    let base = start_handler(&h).await;
    let response = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let response = reqwest::get(format!("{base}/api/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_job_message_is_dropped() {
    let h = Harness::start().await;
    let base = start_handler(&h).await;
    let envelope = json!({
        "Data": { "msg": "{\"jobId\":\"0b7c6a8e-1f2d-4c3b-9a8e-7d6c5b4a3f2e\",\"collection\":0,\"chunk\":0}" },
        "Metadata": { "Id": "m-1", "DequeueCount": 1, "sys": { "MethodName": "copy-task" } }
    });
    let (status, body) = invoke(&base, "copy-task", &envelope).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["Outputs"].is_object());
    assert!(
        body["Logs"][0].as_str().unwrap().contains("dropped"),
        "{body}"
    );
    assert!(body.get("ReturnValue").is_some());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_fails_invocation() {
    let h = Harness::start().await;
    let base = start_handler(&h).await;
    let envelope = json!({ "Data": { "msg": "{\"jobId\": 5}" }, "Metadata": { "Id": "x", "DequeueCount": 1 } });
    let (status, body) = invoke(&base, "copy-task", &envelope).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["Logs"][0]
            .as_str()
            .unwrap()
            .contains("not a valid copy task"),
        "{body}"
    );
    let (status, _) = invoke(&base, "no-such-function", &envelope).await;
    assert_eq!(status, 404);
    h.stop().await;
}

/// Runs a whole job through envelopes only: the plan and copy messages are taken off the
/// queues and posted to the handler as the Functions host would, alternating plain and
/// double-encoded values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_through_envelopes() {
    let mut h = Harness::start().await;
    // Only the handler may consume messages here: stop the standalone consumers.
    if let Some(service) = h.service.take() {
        service.shutdown().await;
    }
    let base = start_handler(&h).await;
    h.base_url = base.clone();
    h.insert_source("mig", "env", (0..500).map(|i| doc! { "_id": i }).collect())
        .await;

    let request = h.job_request(
        "envelopes",
        &[("mig", "env")],
        json!({ "chunkDocuments": 100 }),
    );
    // The API is on the handler too (request forwarding).
    let response = reqwest::Client::new()
        .post(format!("{base}/api/jobs"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();

    let mut double = false;
    for _ in 0..200 {
        let mut delivered = 0;
        for kind in vcore_migrate::queue::TaskKind::ALL {
            let queue = h.engine.queues.client(kind);
            for message in queue.receive(8, Duration::from_secs(60)).await.unwrap() {
                double = !double;
                let text = if double {
                    Value::String(serde_json::to_string(&message.text).unwrap())
                } else {
                    Value::String(message.text.clone())
                };
                let count = if double {
                    json!(format!("\"{}\"", message.dequeue_count))
                } else {
                    json!(message.dequeue_count)
                };
                let envelope = json!({
                    "Data": { "msg": text },
                    "Metadata": { "Id": message.id, "DequeueCount": count }
                });
                let (status, body) = invoke(&base, kind.function_name(), &envelope).await;
                assert_eq!(status, 200, "{body}");
                queue.delete(&message).await.unwrap();
                delivered += 1;
            }
        }
        let (_, scheduler) = invoke(
            &base,
            "scheduler",
            &json!({ "Data": { "timer": { "IsPastDue": false } }, "Metadata": {} }),
        )
        .await;
        assert!(scheduler["Logs"].is_array());
        let (_, job) = h.get(&format!("/api/jobs/{id}")).await;
        if job["state"] == "completed" {
            h.assert_identical("mig", "env").await;
            return;
        }
        if delivered == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("the job did not complete through envelopes");
}
