//! Preflight checks through `POST /api/jobs/validate` and the gate in `POST /api/jobs`, against
//! the emulator, a server that never answers, and a server too old for the driver.

mod common;

use bson::{doc, Document};
use common::{Harness, HarnessOptions};
use mongo_emulator::EmulatorOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Stores `value` in a new environment variable and returns a setting reference to it.
fn setting_with(value: &str) -> Value {
    let name = format!(
        "MIGRATION_TEST_PREFLIGHT_{}",
        uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase()
    );
    std::env::set_var(&name, value);
    json!({ "setting": name })
}

/// The check called `name` in a report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("the report has checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn status_of(report: &Value, name: &str) -> String {
    check(report, name)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn message_of(report: &Value, name: &str) -> String {
    check(report, name)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn validate(h: &Harness, request: &Value) -> Value {
    let (status, report) = h.post("/api/jobs/validate", Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_every_check() {
    let h = Harness::start().await;
    h.insert_source(
        "mig",
        "a",
        (0..3).map(|i| doc! { "_id": i, "v": "x" }).collect(),
    )
    .await;
    h.target_client
        .database("mig")
        .collection::<Document>("a")
        .insert_one(doc! { "_id": 100 })
        .await
        .unwrap();
    let request = h.job_request("report", &[("mig", "a")], json!({}));

    let report = validate(&h, &request).await;

    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "source.secret",
            "source.connectionString",
            "source.reachable",
            "source.authentication",
            "source.serverVersion",
            "target.secret",
            "target.connectionString",
            "target.reachable",
            "target.authentication",
            "target.serverVersion",
            "source.collections",
            "target.namespaces",
            "source.estimate",
        ]
    );
    assert_eq!(report["ok"], true, "{report:#}");
    for name in &names {
        let expected = if *name == "target.namespaces" {
            "warning"
        } else {
            "passed"
        };
        assert_eq!(status_of(&report, name), expected, "{name}: {report:#}");
        assert!(
            !message_of(&report, name).is_empty(),
            "{name} has no message"
        );
    }
    assert!(message_of(&report, "target.namespaces").contains("mig.a (1 documents)"));
    assert!(message_of(&report, "source.serverVersion").contains("wire version 21"));
    assert_eq!(report["estimate"]["totalDocuments"], 3, "{report:#}");
    assert_eq!(report["estimate"]["collections"][0]["namespace"], "mig.a");
    assert!(report["estimate"]["totalBytes"].as_u64().unwrap() > 0);
    assert!(!report.to_string().contains("mongodb://"), "{report}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_target_fail_rejects_job() {
    let h = Harness::start().await;
    h.insert_source("mig", "b", vec![doc! { "_id": 1 }]).await;
    h.target_client
        .database("mig")
        .collection::<Document>("b")
        .insert_one(doc! { "_id": 2 })
        .await
        .unwrap();
    let request = h.job_request(
        "occupied",
        &[("mig", "b")],
        json!({ "existingTarget": "fail" }),
    );

    let report = validate(&h, &request).await;
    let (status, body) = h.post("/api/jobs", Some(&request)).await;

    assert_eq!(report["ok"], false);
    assert_eq!(status_of(&report, "target.namespaces"), "failed");
    assert!(message_of(&report, "target.namespaces").contains("existingTarget"));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "preflightFailed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("target.namespaces:"),
        "{body}"
    );
    assert!(body["checks"].is_array(), "{body}");
    let (_, list) = h.get("/api/jobs").await;
    assert_eq!(list["jobs"], json!([]), "no job was created");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_source_collection_rejected() {
    let h = Harness::start().await;
    h.insert_source("mig", "present", vec![doc! { "_id": 1 }])
        .await;
    let request = h.job_request(
        "missing",
        &[("mig", "present"), ("mig", "absent"), ("other", "gone")],
        json!({}),
    );

    let report = validate(&h, &request).await;
    let (status, body) = h.post("/api/jobs", Some(&request)).await;

    assert_eq!(status_of(&report, "source.collections"), "failed");
    let message = message_of(&report, "source.collections");
    assert!(message.contains("mig.absent"), "{message}");
    assert!(message.contains("other.gone"), "{message}");
    assert!(!message.contains("mig.present"), "{message}");
    assert_eq!(status_of(&report, "source.estimate"), "skipped");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "preflightFailed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_authentication() {
    let h = Harness::start_with(HarnessOptions {
        source: EmulatorOptions {
            user: Some(("miguser".into(), "right-Pass1".into())),
            ..EmulatorOptions::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    h.insert_source("mig", "c", vec![doc! { "_id": 1 }]).await;
    let port = h.source.port();
    let mut request = h.job_request("wrong", &[("mig", "c")], json!({}));
    request["source"] = setting_with(&format!(
        "mongodb://miguser:wrong-Pass9@127.0.0.1:{port}/?directConnection=true&authSource=admin"
    ));

    let report = validate(&h, &request).await;
    let (status, body) = h.post("/api/jobs", Some(&request)).await;

    assert_eq!(status_of(&report, "source.reachable"), "passed");
    assert_eq!(status_of(&report, "source.authentication"), "failed");
    let message = message_of(&report, "source.authentication");
    assert!(message.contains("rejected the credentials"), "{message}");
    assert!(message.contains("percent-encode"), "{message}");
    assert_eq!(status_of(&report, "source.collections"), "skipped");
    assert_eq!(status_of(&report, "target.authentication"), "passed");
    assert!(!report.to_string().contains("wrong-Pass9"), "{report}");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body.to_string().contains("wrong-Pass9"), "{body}");
    h.stop().await;
}

/// Accepts connections and never answers, as a firewall that drops packets looks to a client.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_names_firewall_and_ip() {
    let h = Harness::start_with(HarnessOptions {
        settings: vec![
            ("VCM_PREFLIGHT_TIMEOUT_SECONDS".into(), "1".into()),
            ("VCM_OUTBOUND_IP".into(), "203.0.113.7".into()),
        ],
        ..HarnessOptions::default()
    })
    .await;
    let (port, server) = silent_server().await;
    let mut request = h.job_request("silent", &[("mig", "c")], json!({}));
    request["source"] = setting_with(&format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true"
    ));

    let report = validate(&h, &request).await;
    let (status, body) = h.post("/api/jobs", Some(&request)).await;

    assert_eq!(status_of(&report, "source.connectionString"), "passed");
    assert_eq!(status_of(&report, "source.reachable"), "failed");
    let message = message_of(&report, "source.reachable");
    assert!(message.contains("firewall"), "{message}");
    assert!(message.contains("203.0.113.7"), "{message}");
    assert!(message.contains("VCM_OUTBOUND_IP"), "{message}");
    assert!(message.contains("within 1 s"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    for name in [
        "source.authentication",
        "source.serverVersion",
        "source.collections",
    ] {
        assert_eq!(status_of(&report, name), "skipped", "{name}");
    }
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "preflightFailed");
    server.abort();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_names_host_and_port() {
    let h = Harness::start_with(HarnessOptions {
        settings: vec![("VCM_PREFLIGHT_TIMEOUT_SECONDS".into(), "2".into())],
        ..HarnessOptions::default()
    })
    .await;
    // A port that was free a moment ago: nothing listens on it once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut request = h.job_request("refused", &[("mig", "c")], json!({}));
    request["source"] = setting_with(&format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true"
    ));

    let report = validate(&h, &request).await;

    assert_eq!(status_of(&report, "source.reachable"), "failed");
    let message = message_of(&report, "source.reachable");
    assert!(message.contains("refused the connection"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("host name and port"), "{message}");
    assert!(!message.contains("firewall"), "{message}");
    assert!(!message.contains("Topology"), "{message}");
    h.stop().await;
}

/// Answers every OP_MSG with a hello reply that reports `max_wire_version`.
async fn old_server(max_wire_version: i32) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_hello(socket, max_wire_version));
        }
    });
    (port, task)
}

async fn answer_hello(mut socket: TcpStream, max_wire_version: i32) {
    const OP_MSG: i32 = 2013;
    let mut next_id: i32 = 1;
    loop {
        let mut header = [0u8; 16];
        if socket.read_exact(&mut header).await.is_err() {
            return;
        }
        let length = i32::from_le_bytes(header[0..4].try_into().unwrap());
        let request_id = i32::from_le_bytes(header[4..8].try_into().unwrap());
        let mut rest = vec![0u8; (length as usize).saturating_sub(16)];
        if socket.read_exact(&mut rest).await.is_err() {
            return;
        }
        let reply = doc! {
            "ismaster": true,
            "isWritablePrimary": true,
            "helloOk": true,
            "maxBsonObjectSize": 16_777_216,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": bson::DateTime::now(),
            "minWireVersion": 0,
            "maxWireVersion": max_wire_version,
            "ok": 1.0,
        };
        let body = bson::to_vec(&reply).unwrap();
        let mut message = Vec::new();
        message.extend_from_slice(&((16 + 4 + 1 + body.len()) as i32).to_le_bytes());
        message.extend_from_slice(&next_id.to_le_bytes());
        message.extend_from_slice(&request_id.to_le_bytes());
        message.extend_from_slice(&OP_MSG.to_le_bytes());
        message.extend_from_slice(&0u32.to_le_bytes());
        message.push(0);
        message.extend_from_slice(&body);
        next_id += 1;
        if socket.write_all(&message).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_server_told_to_upgrade() {
    let h = Harness::start().await;
    let (port, server) = old_server(7).await;
    let mut request = h.job_request("old", &[("mig", "c")], json!({}));
    request["source"] = setting_with(&format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true"
    ));

    let report = validate(&h, &request).await;

    assert_eq!(
        status_of(&report, "source.reachable"),
        "passed",
        "{report:#}"
    );
    assert_eq!(
        status_of(&report, "source.serverVersion"),
        "failed",
        "{report:#}"
    );
    let message = message_of(&report, "source.serverVersion");
    assert!(message.contains("wire version 7"), "{message}");
    assert!(message.contains("MongoDB 4.0"), "{message}");
    assert!(message.contains("4.2 or later"), "{message}");
    assert!(message.contains("Cosmos DB"), "{message}");
    assert_eq!(status_of(&report, "source.authentication"), "skipped");
    server.abort();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_rejects_malformed_request() {
    let h = Harness::start().await;
    let mut request = h.job_request("bad", &[("mig", "c")], json!({}));
    request["source"] = json!({ "vaultUri": "https://169.254.169.254/", "secretName": "s" });

    let (status, body) = h.post("/api/jobs/validate", Some(&request)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalidSource");
    assert!(
        body["message"].as_str().unwrap().contains("IP address"),
        "{body}"
    );
    h.stop().await;
}
