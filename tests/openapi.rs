//! The OpenAPI document: valid by an independent validator, and covering every route the router
//! serves.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Harness;
use reqwest::StatusCode;
use serde_json::Value;

/// Routes of the router that are not part of the client API, with the reason.
const NOT_IN_DOCUMENT: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/",
        "the Functions host's readiness probe, which the host does not forward to clients",
    ),
    (
        "POST",
        "/{function}",
        "trigger invocations from the Functions host",
    ),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn fetch_document(harness: &Harness) -> Value {
    // The document needs no key, so a connector wizard can download it.
    let response = harness
        .http
        .get(format!("{}/api/openapi.json", harness.base_url))
        .send()
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("the document is JSON")
}

#[tokio::test]
async fn document_passes_validator() {
    let harness = Harness::start().await;
    let document = fetch_document(&harness).await;
    harness.stop().await;

    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let file = artifacts.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();

    let output = Command::new(repo_root().join("scripts/openapi-validate.sh"))
        .arg(&file)
        .output()
        .expect("scripts/openapi-validate.sh runs (it needs bash)");
    if output.status.code() == Some(2) {
        eprintln!(
            "skipped: python3 is not installed, so the document was not validated: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    assert!(
        output.status.success(),
        "openapi-spec-validator rejected {}:\n{}\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn document_covers_every_route() {
    let harness = Harness::start().await;
    let document = fetch_document(&harness).await;
    harness.stop().await;

    let documented = documented_operations(&document);
    let served = served_routes(&repo_root().join("src"));
    assert!(
        served.contains(&("POST".to_string(), "/api/jobs".to_string())),
        "the route scan found no POST /api/jobs, so it no longer reads the router: {served:?}"
    );
    let exempt: BTreeSet<(String, String)> = NOT_IN_DOCUMENT
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();

    let missing: Vec<String> = served
        .difference(&documented)
        .filter(|route| !exempt.contains(route))
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes served by the router but missing from the OpenAPI document: {missing:?}; annotate \
         each handler with #[utoipa::path(...)] and list it in ApiDoc's paths(...) in \
         src/api/openapi.rs"
    );

    let stale: Vec<String> = documented
        .difference(&served)
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        stale.is_empty(),
        "operations in the OpenAPI document that the router does not serve: {stale:?}"
    );
}

#[tokio::test]
async fn document_describes_auth_and_errors() {
    let harness = Harness::start().await;
    let document = fetch_document(&harness).await;
    harness.stop().await;

    let schemes = &document["components"]["securitySchemes"];
    let key_locations: BTreeSet<(String, String)> = schemes
        .as_object()
        .expect("securitySchemes is an object")
        .values()
        .map(|s| {
            (
                s["in"].as_str().unwrap_or_default().to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for expected in [
        ("header", "x-functions-key"),
        ("query", "code"),
        ("header", "x-api-key"),
    ] {
        assert!(
            key_locations.contains(&(expected.0.to_string(), expected.1.to_string())),
            "no security scheme for {expected:?}: {schemes:#}"
        );
    }

    let error = &document["components"]["schemas"]["Error"];
    assert_eq!(error["type"], "object", "{error:#}");
    assert!(error["properties"]["code"].is_object(), "{error:#}");
    assert!(error["properties"]["message"].is_object(), "{error:#}");

    let mut operation_ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                operation_ids.insert(id.to_string()),
                "operationId {id} is used twice"
            );
            assert!(
                operation["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} has no description"
            );
        }
    }

    let create = &document["paths"]["/api/jobs"]["post"];
    assert!(
        create["requestBody"]["content"]["application/json"]["example"].is_object(),
        "createJob has no request example: {create:#}"
    );
    assert!(
        create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/Error")),
        "createJob's 400 does not use the error schema: {create:#}"
    );
    let health = &document["paths"]["/api/health"]["get"];
    assert_eq!(
        health["security"],
        serde_json::json!([{}]),
        "the health probe must need no key"
    );
}

/// Returns `(METHOD, path)` for every operation of the document.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths is an object") {
        for method in item.as_object().expect("path item is an object").keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

/// Returns `(METHOD, path)` for every `.route("path", method(..).method(..))` call in the
/// service's source.
///
/// axum's `Router` cannot list its routes, so this reads the calls that build it. It finds
/// routes added in any file under `src/`, but it misses a prefix added with `Router::nest`.
fn served_routes(src: &Path) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in rust_files(src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find(".route(") {
            rest = &rest[start + ".route(".len()..];
            let arguments = balanced_arguments(rest);
            let Some(path) = first_string_literal(arguments) else {
                continue;
            };
            for method in ["get", "post", "put", "patch", "delete"] {
                if calls(arguments, method) {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    routes
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Returns the text up to the parenthesis that closes the call just opened.
fn balanced_arguments(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

fn first_string_literal(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    let body = trimmed.strip_prefix('"')?;
    Some(body[..body.find('"')?].to_string())
}

/// Whether `text` calls `name(` as a whole word (`get(`, `.get(`, `routing::get(`).
fn calls(text: &str, name: &str) -> bool {
    let pattern = format!("{name}(");
    text.match_indices(&pattern).any(|(i, _)| {
        text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

#[test]
fn route_scan_reads_methods() {
    let source = r#"x.route("/a/{id}", get(h::a).post(h::b)).route("/c", routing::delete(h::c)).route("/d", post(forget_it))"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.rs"), source).unwrap();
    let routes = served_routes(dir.path());
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/a/{id}"),
        ("POST", "/a/{id}"),
        ("DELETE", "/c"),
        ("POST", "/d"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(routes, expected);
}
