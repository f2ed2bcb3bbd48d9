//! The monitor page in headless Chromium: it lists a running job, its progress moves, and pause
//! and resume work from its buttons. Needs Debian's chromium and Node.js; the setup script
//! installs chromium and playwright-core when they are missing.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bson::{doc, Document};
use common::{Harness, HarnessOptions, API_KEY, LONG};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/browser-tools.sh` and returns the node_modules folder it installed.
fn install_browser_tools() -> String {
    let output = Command::new(repo_root().join("scripts/browser-tools.sh"))
        .output()
        .expect("scripts/browser-tools.sh runs (it needs bash)");
    assert!(
        output.status.success(),
        "installing chromium and playwright-core failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitor_page_steers_running_job() {
    let modules = tokio::task::spawn_blocking(install_browser_tools)
        .await
        .unwrap();

    // A throttled Cosmos DB (RU) source keeps the job running long enough to watch it. Planning
    // and copying each read the 12,000 documents of about 220 bytes, about 12,000 RU apiece, so
    // the job takes an estimated 80 seconds at 300 RU/s, against a few seconds of browser steps.
    let h = Harness::start_with(HarnessOptions {
        source: mongo_emulator::EmulatorOptions {
            personality: mongo_emulator::Personality::CosmosRu,
            ru_per_second: Some(300),
            ..Default::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let docs: Vec<Document> = (0..12_000)
        .map(|i| doc! { "_id": i, "pad": "m".repeat(200) })
        .collect();
    // Load with throttling off, then turn it on for the copy.
    h.source_client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 0 })
        .await
        .unwrap();
    h.insert_source("shop", "orders", docs).await;
    h.source_client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 300 })
        .await
        .unwrap();

    let request = h.job_request(
        "watched-in-browser",
        &[("shop", "orders")],
        json!({ "chunkDocuments": 500, "batchSize": 50, "maxParallelChunks": 1 }),
    );
    let id = h.create_job(&request).await;
    // Chunks copy while later ones are still planned, so the job may still read `planning`.
    h.wait_until(&id, LONG, |job| {
        ["planning", "copying"].contains(&job["state"].as_str().unwrap_or_default())
            && job["documentsCopied"].as_u64() > Some(0)
    })
    .await;

    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let _ = std::fs::remove_file(artifacts.join("monitor.png"));
    let script = repo_root().join("scripts/monitor-browser.cjs");
    let page_url = format!("{}/api/monitor", h.base_url);
    let artifacts_text = artifacts.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("VCM_MONITOR_URL", page_url)
            .env("VCM_MONITOR_KEY", API_KEY)
            .env("VCM_MONITOR_JOB", "watched-in-browser")
            .env("VCM_ARTIFACTS", artifacts_text)
            .env("PLAYWRIGHT_MODULES", modules)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let observed: Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");

    let percents = observed["percents"].as_array().unwrap();
    assert_eq!(percents.len(), 2, "{observed}");
    assert!(
        percents[1].as_f64() > percents[0].as_f64(),
        "progress did not move: {observed}"
    );
    assert_eq!(observed["states"][1], "paused", "{observed}");
    let after_resume = observed["states"][2].as_str().unwrap();
    assert!(
        ["planning", "copying", "completed"].contains(&after_resume),
        "state after resume: {after_resume}"
    );
    assert_eq!(
        observed["pauseButtonWhilePaused"], 0,
        "a paused job offered pause: {observed}"
    );

    let dialogs = observed["dialogs"].as_array().unwrap();
    assert_eq!(dialogs.len(), 2, "pause and resume each ask: {observed}");
    assert!(dialogs[0].as_str().unwrap().starts_with("Pause job"));
    assert!(dialogs[1].as_str().unwrap().starts_with("Resume job"));

    let page_text = observed["pageText"].as_str().unwrap();
    assert!(!page_text.contains(API_KEY), "the page shows the API key");
    let base = h.base_url.clone();
    for url in observed["requests"].as_array().unwrap() {
        assert!(
            url.as_str().unwrap().starts_with(&base),
            "the page requested {url}, outside the service"
        );
    }

    let screenshot = std::fs::metadata(artifacts.join("monitor.png")).expect("screenshot saved");
    assert!(
        screenshot.len() > 1000,
        "screenshot is {} bytes",
        screenshot.len()
    );

    // The API agrees that the job runs again; lift throttling so it finishes.
    h.source_client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 0 })
        .await
        .unwrap();
    let job = h
        .wait_for_state(&id, &["completed", "failed"], Duration::from_secs(180))
        .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    h.assert_identical("shop", "orders").await;
    h.stop().await;
}
