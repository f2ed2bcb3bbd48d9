//! Test harness: two MongoDB emulators, Azurite (started by `scripts/test.sh`), and the service
//! in standalone mode, all on 127.0.0.1.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongo_emulator::{EmulatorHandle, EmulatorOptions, Personality};
use mongodb::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use vcore_migrate::config::Settings;
use vcore_migrate::runtime::engine::Engine;
use vcore_migrate::runtime::serve::{build_engine, Standalone};

pub const API_KEY: &str = "test-api-key";

/// Azurite's development account with explicit 127.0.0.1 endpoints, unless `VCM_TEST_STORAGE`
/// names another storage account.
pub fn storage_connection_string() -> String {
    std::env::var("VCM_TEST_STORAGE").unwrap_or_else(|_| {
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
         AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
         BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\
         QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;\
         TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
            .to_string()
    })
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// Changes an engine after it is built and before the service starts, for example to read Key
/// Vault secrets from a local stand-in.
pub type EngineHook = std::sync::Arc<dyn Fn(&mut Engine) + Send + Sync>;

/// Settings overrides for one harness.
#[derive(Clone)]
pub struct HarnessOptions {
    pub source: EmulatorOptions,
    pub target: EmulatorOptions,
    pub task_budget_seconds: u64,
    pub lease_seconds: u64,
    pub workers: usize,
    /// More settings, added after the harness's own (so they can replace them).
    pub settings: Vec<(String, String)>,
    pub engine_hook: Option<EngineHook>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            source: EmulatorOptions::default(),
            target: EmulatorOptions {
                personality: Personality::VCore,
                ..EmulatorOptions::default()
            },
            task_budget_seconds: 30,
            lease_seconds: 5,
            workers: 4,
            settings: Vec::new(),
            engine_hook: None,
        }
    }
}

pub struct Harness {
    pub source: EmulatorHandle,
    pub target: EmulatorHandle,
    pub source_client: Client,
    pub target_client: Client,
    pub service: Option<Standalone>,
    pub engine: Engine,
    pub base_url: String,
    pub http: reqwest::Client,
    /// Names of the settings that hold the emulators' connection strings.
    pub source_setting: String,
    pub target_setting: String,
    pub prefix: String,
    settings: HashMap<String, String>,
    engine_hook: Option<EngineHook>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(HarnessOptions::default()).await
    }

    pub async fn start_with(options: HarnessOptions) -> Harness {
        let source = mongo_emulator::start(options.source.clone())
            .await
            .expect("source emulator starts");
        let target = mongo_emulator::start(options.target.clone())
            .await
            .expect("target emulator starts");
        let suffix = unique_suffix();
        let prefix = format!("t{suffix}");
        let source_setting = format!("MIGRATION_TEST_SOURCE_{}", suffix.to_uppercase());
        let target_setting = format!("MIGRATION_TEST_TARGET_{}", suffix.to_uppercase());
        std::env::set_var(&source_setting, source.uri());
        std::env::set_var(&target_setting, target.uri());

        let mut settings = HashMap::new();
        settings.insert(
            "AzureWebJobsStorage".to_string(),
            storage_connection_string(),
        );
        settings.insert("VCM_STORAGE_PREFIX".to_string(), prefix.clone());
        settings.insert("VCM_API_KEY".to_string(), API_KEY.to_string());
        settings.insert(
            "VCM_TASK_TIME_BUDGET_SECONDS".to_string(),
            options.task_budget_seconds.to_string(),
        );
        settings.insert(
            "VCM_LEASE_SECONDS".to_string(),
            options.lease_seconds.to_string(),
        );
        settings.insert(
            "VCM_SCHEDULER_INTERVAL_SECONDS".to_string(),
            "1".to_string(),
        );
        settings.insert(
            "VCM_WORKER_CONCURRENCY".to_string(),
            options.workers.to_string(),
        );
        for (name, value) in &options.settings {
            settings.insert(name.clone(), value.clone());
        }

        let source_client = Client::with_uri_str(source.uri()).await.unwrap();
        let target_client = Client::with_uri_str(target.uri()).await.unwrap();
        let (service, engine) = start_service(&settings, options.engine_hook.as_ref()).await;
        let base_url = format!("http://{}", service.address);
        Harness {
            source,
            target,
            source_client,
            target_client,
            service: Some(service),
            engine,
            base_url,
            http: reqwest::Client::new(),
            source_setting,
            target_setting,
            prefix,
            settings,
            engine_hook: options.engine_hook,
        }
    }

    /// Stops the service at once, as a killed process would, and starts a new one on the same
    /// storage; the API address changes.
    pub async fn kill_and_restart(&mut self) {
        if let Some(service) = self.service.take() {
            service.abort();
        }
        let (service, engine) = start_service(&self.settings, self.engine_hook.as_ref()).await;
        self.base_url = format!("http://{}", service.address);
        self.engine = engine;
        self.service = Some(service);
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.shutdown().await;
        }
    }

    /// Stops the service at once without waiting for running tasks (a stream task runs for its
    /// whole time budget, which a graceful stop would wait for).
    pub fn abort(mut self) {
        if let Some(service) = self.service.take() {
            service.abort();
        }
    }

    /// Polls until the target collection equals the source byte for byte; panics with the last
    /// difference after `timeout`.
    pub async fn wait_identical(&self, db: &str, coll: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            let source = read_all(&self.source_client, db, coll).await;
            let target = read_all(&self.target_client, db, coll).await;
            let same = source.len() == target.len()
                && source
                    .iter()
                    .zip(&target)
                    .all(|(s, t)| s.as_bytes() == t.as_bytes());
            if same {
                return;
            }
            if started.elapsed() > timeout {
                self.assert_identical(db, coll).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn job_request(&self, name: &str, collections: &[(&str, &str)], options: Value) -> Value {
        let collections: Vec<Value> = collections
            .iter()
            .map(|(db, coll)| json!({ "database": db, "collection": coll }))
            .collect();
        json!({
            "name": name,
            "mode": "offline",
            "source": { "setting": self.source_setting },
            "target": { "setting": self.target_setting },
            "collections": collections,
            "options": options,
        })
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("x-api-key", API_KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request reaches the service");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .header("x-api-key", API_KEY)
            .send()
            .await
            .expect("request reaches the service");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a job and returns its id.
    pub async fn create_job(&self, request: &Value) -> String {
        let (status, body) = self.post("/api/jobs", Some(request)).await;
        assert_eq!(status, StatusCode::CREATED, "job creation failed: {body}");
        body["id"].as_str().expect("job id").to_string()
    }

    /// Polls the job until its state is one of `states`; panics with the last view after
    /// `timeout`.
    pub async fn wait_for_state(&self, id: &str, states: &[&str], timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let (status, job) = self.get(&format!("/api/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if states.iter().any(|s| job["state"] == *s) {
                return job;
            }
            if started.elapsed() > timeout {
                panic!("job did not reach {states:?} within {timeout:?}: {job:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until `check` accepts the job view.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let (_, job) = self.get(&format!("/api/jobs/{id}")).await;
            if check(&job) {
                return job;
            }
            if started.elapsed() > timeout {
                panic!("condition not met within {timeout:?}: {job:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn insert_source(&self, db: &str, coll: &str, docs: Vec<Document>) {
        if docs.is_empty() {
            return;
        }
        self.source_client
            .database(db)
            .collection::<Document>(coll)
            .insert_many(docs)
            .await
            .expect("source insert");
    }

    pub async fn insert_source_raw(&self, db: &str, coll: &str, docs: Vec<RawDocumentBuf>) {
        self.source_client
            .database(db)
            .collection::<RawDocumentBuf>(coll)
            .insert_many(docs)
            .await
            .expect("source insert");
    }

    /// Asserts that the target collection holds exactly the source's documents, byte for byte.
    pub async fn assert_identical(&self, db: &str, coll: &str) {
        self.assert_identical_to(db, coll, db, coll).await;
    }

    pub async fn assert_identical_to(
        &self,
        db: &str,
        coll: &str,
        target_db: &str,
        target_coll: &str,
    ) {
        let source = read_all(&self.source_client, db, coll).await;
        let target = read_all(&self.target_client, target_db, target_coll).await;
        if source.len() != target.len() {
            let target_bytes: std::collections::HashSet<&[u8]> =
                target.iter().map(|d| d.as_bytes()).collect();
            let missing: Vec<String> = source
                .iter()
                .filter(|d| !target_bytes.contains(d.as_bytes()))
                .take(10)
                .map(|d| format!("{:?}", d.get("_id")))
                .collect();
            panic!(
                "{db}.{coll}: source has {} documents, target {target_db}.{target_coll} has {}; \
                 missing or different on the target: {missing:?}",
                source.len(),
                target.len()
            );
        }
        for (i, (s, t)) in source.iter().zip(&target).enumerate() {
            assert_eq!(
                s.as_bytes(),
                t.as_bytes(),
                "{db}.{coll}: document {i} differs\nsource: {s:?}\ntarget: {t:?}"
            );
        }
    }

    pub async fn target_count(&self, db: &str, coll: &str) -> u64 {
        self.target_client
            .database(db)
            .collection::<Document>(coll)
            .count_documents(doc! {})
            .await
            .unwrap()
    }
}

/// Every document of a collection in `_id` order, as raw bytes.
pub async fn read_all(client: &Client, db: &str, coll: &str) -> Vec<RawDocumentBuf> {
    client
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor")
}

async fn start_service(
    settings: &HashMap<String, String>,
    hook: Option<&EngineHook>,
) -> (Standalone, Engine) {
    let settings =
        Settings::from_lookup(|name| settings.get(name).cloned()).expect("valid settings");
    let mut engine = match build_engine(settings).await {
        Ok(engine) => engine,
        Err(e) => panic!(
            "the service could not reach Table and Queue storage ({e}); start Azurite with \
             `scripts/azurite.sh start` or run the tests through `scripts/test.sh`"
        ),
    };
    if let Some(hook) = hook {
        hook(&mut engine);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = Standalone::start(engine.clone(), listener)
        .await
        .expect("service starts");
    (service, engine)
}

/// Parses canonical Extended JSON into a BSON document, keeping every type exactly.
pub fn ejson(value: Value) -> Document {
    match bson::Bson::try_from(value).expect("valid Extended JSON") {
        bson::Bson::Document(d) => d,
        other => panic!("expected a document, got {other:?}"),
    }
}

pub const LONG: Duration = Duration::from_secs(120);
