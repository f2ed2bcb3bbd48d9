//! Shared helpers for the integration tests: start an emulator, connect the official driver,
//! and optionally add a real server named by `MONGODB_TEST_URI` for the conformance suite.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use mongo_emulator::{EmulatorHandle, EmulatorOptions, Personality};
use mongodb::Client;

/// A server to run a conformance check against.
pub struct Target {
    pub name: String,
    pub client: Client,
    /// Keeps the emulator running for as long as the target is used.
    pub emulator: Option<EmulatorHandle>,
}

impl Target {
    pub fn is_emulator(&self) -> bool {
        self.emulator.is_some()
    }
}

/// Starts an emulator with `options` and connects a client to it.
pub async fn start(options: EmulatorOptions) -> (EmulatorHandle, Client) {
    let emulator = mongo_emulator::start(options)
        .await
        .expect("emulator starts on 127.0.0.1");
    let client = Client::with_uri_str(emulator.uri())
        .await
        .expect("driver parses the emulator URI");
    (emulator, client)
}

/// Starts a default (MongoDB personality) emulator.
pub async fn start_default() -> (EmulatorHandle, Client) {
    start(EmulatorOptions::default()).await
}

pub async fn start_personality(personality: Personality) -> (EmulatorHandle, Client) {
    start(EmulatorOptions {
        personality,
        ..EmulatorOptions::default()
    })
    .await
}

/// Returns the emulator, plus the real server named by `MONGODB_TEST_URI` when it is set.
/// Without it, prints why the real-server run is skipped.
pub async fn targets() -> Vec<Target> {
    let (emulator, client) = start_default().await;
    let mut targets = vec![Target {
        name: "emulator".to_string(),
        client,
        emulator: Some(emulator),
    }];
    match std::env::var("MONGODB_TEST_URI") {
        Ok(uri) if !uri.is_empty() => {
            let client = Client::with_uri_str(&uri)
                .await
                .expect("MONGODB_TEST_URI is a valid connection string");
            targets.push(Target {
                name: "real server".to_string(),
                client,
                emulator: None,
            });
        }
        _ => eprintln!(
            "conformance: real-server run skipped because MONGODB_TEST_URI is not set; \
             checking the emulator only"
        ),
    }
    targets
}

/// Returns a database name unique within this test process, so runs against a shared real
/// server do not collide.
pub fn unique_db(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serialises tests that configure the server-wide `failCommand` fail point, which a shared
/// real server would otherwise see from several tests at once.
pub async fn fail_point_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Extracts the server error code of a driver error, whatever its kind.
pub fn error_code(error: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code),
        _ => None,
    }
}
