//! Every API route and its errors, against the standalone service.

mod common;

use common::{Harness, API_KEY};
use serde_json::{json, Value};

async fn post_raw(h: &Harness, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = h
        .http
        .post(format!("{}{path}", h.base_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_error(body: &Value, code: &str, mentions: &[&str]) {
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for word in mentions {
        assert!(
            message.contains(word),
            "message {message:?} should mention {word:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_job_validation_errors() {
    let h = Harness::start().await;
    let valid = h.job_request("valid", &[("db", "c")], json!({}));

    let cases: Vec<(Value, u16, &str, Vec<&str>)> = vec![
        (
            {
                let mut r = valid.clone();
                r["mode"] = json!("sideways");
                r
            },
            400,
            "invalidBody",
            vec!["mode", "sideways"],
        ),
        (
            {
                let mut r = valid.clone();
                r["collections"] = json!([]);
                r
            },
            400,
            "noCollections",
            vec!["collections"],
        ),
        (
            {
                let mut r = valid.clone();
                r["extra"] = json!(1);
                r
            },
            400,
            "invalidBody",
            vec!["extra"],
        ),
        (
            {
                let mut r = valid.clone();
                r["collections"][0]["colour"] = json!("red");
                r
            },
            400,
            "invalidBody",
            vec!["collections[0]", "colour"],
        ),
        (
            {
                let mut r = valid.clone();
                r["options"]["speed"] = json!(9);
                r
            },
            400,
            "invalidBody",
            vec!["options", "speed"],
        ),
        (
            {
                let mut r = valid.clone();
                r["name"] = json!("");
                r
            },
            400,
            "invalidName",
            vec!["name"],
        ),
        (
            {
                let mut r = valid.clone();
                r["source"] = json!("mongodb://u:p@h/");
                r
            },
            400,
            "invalidBody",
            vec!["field source", "cannot travel in a request", "\"setting\""],
        ),
        (
            {
                let mut r = valid.clone();
                r["target"] = json!({ "uri": "mongodb://u:p@h/" });
                r
            },
            400,
            "invalidBody",
            vec!["field target", "cannot travel in a request", "secretName"],
        ),
        (
            {
                let mut r = valid.clone();
                r["source"] = json!({ "setting": "mongodb://u:p@h/" });
                r
            },
            400,
            "invalidSource",
            vec!["setting name", "value not shown"],
        ),
        (
            {
                let mut r = valid.clone();
                r["options"]["batchSize"] = json!("large");
                r
            },
            400,
            "invalidBody",
            vec!["options.batchSize", "\"large\"", "whole number"],
        ),
        (
            {
                let mut r = valid.clone();
                r["source"] = json!({ "setting": "MIGRATION_TEST_NOT_SET_ANYWHERE" });
                r
            },
            400,
            "invalidSource",
            vec!["MIGRATION_TEST_NOT_SET_ANYWHERE"],
        ),
        (
            {
                let mut r = valid.clone();
                r["target"] = json!({ "vaultUri": "https://evil.example/", "secretName": "s" });
                r
            },
            400,
            "invalidTarget",
            vec!["evil.example"],
        ),
        (
            {
                let mut r = valid.clone();
                r["collections"] = json!([
                    { "database": "db", "collection": "a", "targetCollection": "x" },
                    { "database": "db", "collection": "b", "targetCollection": "x" }
                ]);
                r
            },
            400,
            "targetCollision",
            vec!["db.x", "collections[1]"],
        ),
        (
            {
                let mut r = valid.clone();
                r["collections"][0]["database"] = json!("a/b");
                r
            },
            400,
            "invalidNamespace",
            vec!["a/b"],
        ),
        (
            {
                let mut r = valid.clone();
                r["options"]["batchSize"] = json!(0);
                r
            },
            400,
            "invalidOption",
            vec!["options.batchSize"],
        ),
    ];
    for (request, status, code, mentions) in cases {
        let (got_status, body) = h.post("/api/jobs", Some(&request)).await;
        assert_eq!(got_status.as_u16(), status, "{request} -> {body}");
        assert_error(&body, code, &mentions);
        assert!(!body.to_string().contains("u:p@"), "{body}");
    }

    let (status, body) = post_raw(&h, "/api/jobs", "{not json", Some(API_KEY)).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalidBody", &["not valid JSON", "line 1"]);
    let text = valid.to_string();
    let (status, body) = post_raw(&h, "/api/jobs", &text[..text.len() - 3], Some(API_KEY)).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalidBody", &["ends early"]);
    let (status, body) = post_raw(&h, "/api/jobs", &format!("{text} []"), Some(API_KEY)).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalidBody", &["trailing characters"]);
    let (status, body) = post_raw(&h, "/api/jobs", "", Some(API_KEY)).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalidBody", &["empty"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_repeat_passwords() {
    let h = Harness::start().await;
    let valid = h.job_request("secretive", &[("db", "c")], json!({}));
    const URI: &str = "mongodb://app:hunter2@db.example:10255/?ssl=true";
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("mode", Box::new(|r| r["mode"] = json!(URI))),
        ("options", Box::new(|r| r["options"] = json!(URI))),
        (
            "batchSize",
            Box::new(|r| r["options"]["batchSize"] = json!(URI)),
        ),
        (
            "sourceKind",
            Box::new(|r| r["options"]["sourceKind"] = json!(URI)),
        ),
        ("unknown key", Box::new(|r| r[URI] = json!(1))),
        ("collections", Box::new(|r| r["collections"] = json!(URI))),
        (
            "collection entry",
            Box::new(|r| r["collections"][0] = json!(URI)),
        ),
        (
            "targetDatabase",
            Box::new(|r| r["collections"][0]["targetDatabase"] = json!(URI)),
        ),
        ("name", Box::new(|r| r["name"] = json!(format!(" {URI}")))),
        (
            "callbackUrl",
            Box::new(|r| r["options"]["callbackUrl"] = json!("https://hook:hunter2@[::1/")),
        ),
        (
            "vaultUri",
            Box::new(|r| {
                r["target"] =
                    json!({ "vaultUri": "https://app:hunter2@evil.example/", "secretName": "s" })
            }),
        ),
        (
            "setting without scheme",
            Box::new(|r| r["source"] = json!({ "setting": "app:hunter2@127.0.0.1" })),
        ),
    ];
    for (what, edit) in edits {
        let mut request = valid.clone();
        edit(&mut request);
        let (status, body) = h.post("/api/jobs", Some(&request)).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(!body.to_string().contains("hunter2"), "{what}: {body}");
    }
    let (status, body) = post_raw(&h, "/api/jobs", &format!("{URI:?}"), Some(API_KEY)).await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_names_are_unique() {
    let h = Harness::start().await;
    h.insert_source("db", "c", vec![bson::doc! { "_id": 1 }])
        .await;
    let request = h.job_request("only-once", &[("db", "c")], json!({}));
    let first = h.create_job(&request).await;
    let (status, body) = h.post("/api/jobs", Some(&request)).await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "nameTaken", &["only-once"]);

    let (status, list) = h.get("/api/jobs").await;
    assert_eq!(status, 200);
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], first.as_str());
    for field in [
        "name",
        "mode",
        "state",
        "percent",
        "createdAt",
        "updatedAt",
        "allowedCommands",
    ] {
        assert!(
            jobs[0].get(field).is_some(),
            "list row lacks {field}: {}",
            jobs[0]
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_jobs_routes_and_commands() {
    let h = Harness::start().await;
    let (status, body) = h
        .get("/api/jobs/0b7c6a8e-1f2d-4c3b-9a8e-7d6c5b4a3f2e")
        .await;
    assert_eq!(status, 404);
    assert_error(&body, "notFound", &["0b7c6a8e"]);
    let (status, body) = h.get("/api/jobs/a'b").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = h.get("/api/nothing").await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "notFound",
        &["/api/nothing", "/verification", "/recopy"],
    );
    let response = h
        .http
        .put(format!("{}/api/jobs", h.base_url))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "methodNotAllowed", &["PUT", "/api/jobs", "openapi"]);
    let (status, body) = h
        .post("/api/jobs/some-id/collections/-1/recopy", None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalidRequest", &["-1", "openapi"]);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let (status, body) = post_raw(&h, "/api/jobs", &huge, Some(API_KEY)).await;
    assert_eq!(status, 413, "{body}");
    assert_error(&body, "bodyTooLarge", &["2 MiB"]);

    h.insert_source("db", "c", vec![bson::doc! { "_id": 1 }])
        .await;
    let request = h.job_request("commands", &[("db", "c")], json!({}));
    let id = h.create_job(&request).await;
    let (status, body) = h.post(&format!("/api/jobs/{id}/explode"), None).await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "notFound",
        &["explode", "cutover", "verify", "recopy"],
    );

    // Cutover is refused for offline jobs, whatever their state.
    let (status, body) = h.post(&format!("/api/jobs/{id}/cutover"), None).await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "commandNotAllowed", &["online"]);
    assert!(body["allowedCommands"].is_array(), "{body}");
    assert!(body["state"].is_string(), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required() {
    let h = Harness::start().await;
    let (status, body) = post_raw(&h, "/api/jobs", "{}", None).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", &["x-api-key"]);
    let (status, body) = post_raw(&h, "/api/jobs", "{}", Some("wrong")).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", &["wrong"]);
    assert!(
        !body.to_string().contains(API_KEY),
        "the key must not be echoed"
    );

    let response = h
        .http
        .get(format!("{}/api/jobs", h.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Health stays open for probes.
    let response = h
        .http
        .get(format!("{}/api/health", h.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_detail_has_progress_fields() {
    let h = Harness::start().await;
    h.insert_source(
        "db",
        "c",
        (0..10).map(|i| bson::doc! { "_id": i }).collect(),
    )
    .await;
    let request = h.job_request("detail", &[("db", "c")], json!({}));
    let id = h.create_job(&request).await;
    let job = h
        .wait_for_state(&id, &["completed", "failed"], common::LONG)
        .await;
    for field in [
        "id",
        "name",
        "mode",
        "state",
        "percent",
        "allowedCommands",
        "createdAt",
        "updatedAt",
        "collections",
    ] {
        assert!(job.get(field).is_some(), "job lacks {field}");
    }
    let collection = &job["collections"][0];
    for field in [
        "source",
        "target",
        "state",
        "documentsEstimated",
        "documentsCopied",
        "bytesCopied",
        "chunksTotal",
        "chunksCompleted",
        "documentsPerSecond",
        "lastError",
    ] {
        assert!(
            collection.get(field).is_some(),
            "collection lacks {field}: {collection}"
        );
    }
    assert_eq!(collection["documentsEstimated"], 10);
    assert_eq!(collection["documentsCopied"], 10);
    assert!(collection["bytesCopied"].as_u64().unwrap() > 0);
    // No secret or connection string in the response.
    let text = job.to_string();
    assert!(!text.contains("mongodb://"), "{text}");
    h.stop().await;
}
