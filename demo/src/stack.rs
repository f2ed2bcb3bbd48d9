//! The parts the demo runs in its own process: the two emulators, the seeded source, and the
//! service in standalone mode.

use std::collections::HashMap;
use std::time::Instant;

use bson::{doc, RawDocumentBuf};
use mongo_emulator::{EmulatorHandle, EmulatorOptions, Personality};
use mongodb::Client;
use tokio::net::TcpListener;
use vcore_migrate::config::{self, Settings};
use vcore_migrate::runtime::engine::Engine;
use vcore_migrate::runtime::serve::{build_engine, Standalone};

use crate::datasets::Dataset;

/// Azurite's well-known development account key. Azurite's documentation publishes it and every
/// Azurite instance accepts it, so it is not a secret.
const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Documents per `insert` while seeding the source.
const SEED_BATCH: usize = 10_000;

/// The source and target emulators.
pub struct Emulators {
    pub source: EmulatorHandle,
    pub target: EmulatorHandle,
    pub source_client: Client,
    pub target_client: Client,
}

/// Ports, user and request-unit budget of the emulators. The ports are chosen before the runtime
/// starts, because
/// the job's setting references must name the connection strings in the process environment
/// before any other thread runs.
pub struct EmulatorPlan {
    pub source_port: u16,
    pub target_port: u16,
    /// User name and password for SCRAM-SHA-256 on both emulators, so the connection strings
    /// carry a secret that must never show up in the service's logs.
    pub user: (String, String),
    pub source_ru_per_second: u64,
}

impl EmulatorPlan {
    /// Returns the connection string of an emulator on `port` with this plan's user.
    pub fn uri(&self, port: u16) -> String {
        format!(
            "mongodb://{}:{}@127.0.0.1:{port}/?directConnection=true&authSource=admin",
            self.user.0, self.user.1
        )
    }
}

/// Starts the Cosmos DB (RU) source with its request-unit budget and the vCore target.
pub async fn start_emulators(plan: &EmulatorPlan) -> anyhow::Result<Emulators> {
    let source = mongo_emulator::start(EmulatorOptions {
        personality: Personality::CosmosRu,
        port: plan.source_port,
        user: Some(plan.user.clone()),
        ru_per_second: Some(plan.source_ru_per_second),
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "starting the source emulator on port {} failed: {e}",
            plan.source_port
        )
    })?;
    let target = mongo_emulator::start(EmulatorOptions {
        personality: Personality::VCore,
        port: plan.target_port,
        user: Some(plan.user.clone()),
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "starting the target emulator on port {} failed: {e}",
            plan.target_port
        )
    })?;

    let source_client = Client::with_uri_str(plan.uri(plan.source_port)).await?;
    let target_client = Client::with_uri_str(plan.uri(plan.target_port)).await?;
    Ok(Emulators {
        source,
        target,
        source_client,
        target_client,
    })
}

/// Sets the source's request-unit budget per second; `None` removes the limit.
pub async fn set_request_units(client: &Client, per_second: Option<u64>) -> anyhow::Result<()> {
    // The emulator reads 0 as no limit.
    let value = per_second.map_or(0, |n| n as i64);
    client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": value })
        .await
        .map_err(|e| anyhow::anyhow!("setting the source's request units failed: {e}"))?;
    Ok(())
}

/// Figures of one seeded collection.
pub struct Seeded {
    pub namespace: String,
    pub documents: u64,
    pub bytes: u64,
}

/// Inserts every dataset into the source as raw BSON, in batches.
pub async fn seed(client: &Client, datasets: &[Dataset]) -> anyhow::Result<Vec<Seeded>> {
    let mut seeded = Vec::with_capacity(datasets.len());
    for dataset in datasets {
        let started = Instant::now();
        let collection = client
            .database(dataset.database)
            .collection::<RawDocumentBuf>(dataset.collection);
        let mut bytes = 0u64;
        for batch in dataset.documents.chunks(SEED_BATCH) {
            let raw: Vec<RawDocumentBuf> = batch
                .iter()
                .map(RawDocumentBuf::from_document)
                .collect::<Result<_, _>>()?;
            bytes += raw.iter().map(|d| d.as_bytes().len() as u64).sum::<u64>();
            collection.insert_many(raw).await.map_err(|e| {
                anyhow::anyhow!("seeding {} on the source failed: {e}", dataset.namespace())
            })?;
        }
        // A server that silently drops or merges documents would make the later comparison
        // agree on the wrong data, so the count is checked against what was sent.
        let stored = collection.count_documents(doc! {}).await?;
        if stored != dataset.documents.len() as u64 {
            anyhow::bail!(
                "the source contains {stored} documents in {} after {} were inserted",
                dataset.namespace(),
                dataset.documents.len()
            );
        }
        tracing::info!(
            namespace = %dataset.namespace(),
            documents = dataset.documents.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "source collection seeded"
        );
        seeded.push(Seeded {
            namespace: dataset.namespace(),
            documents: dataset.documents.len() as u64,
            bytes,
        });
    }
    Ok(seeded)
}

/// Azurite's queue and table ports.
pub struct AzuritePorts {
    pub queue: u16,
    pub table: u16,
}

/// The running service and what the demo needs to talk to it.
pub struct Service {
    pub standalone: Standalone,
    /// A handle on the service's state, for the throttle counts the API does not report.
    pub engine: Engine,
    pub base_url: String,
}

/// Starts the service in standalone mode in this process, against Azurite, with `api_key`
/// and a table and queue prefix unique to this run.
pub async fn start_service(
    azurite: &AzuritePorts,
    api_key: &str,
    storage_prefix: &str,
) -> anyhow::Result<Service> {
    let connection_string = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_ACCOUNT_KEY};\
         QueueEndpoint=http://127.0.0.1:{}/devstoreaccount1;\
         TableEndpoint=http://127.0.0.1:{}/devstoreaccount1",
        azurite.queue, azurite.table
    );
    let values: HashMap<&str, String> = HashMap::from([
        (config::STORAGE_CONNECTION, connection_string),
        (config::STORAGE_PREFIX, storage_prefix.to_string()),
        (config::API_KEY, api_key.to_string()),
        // Short task budgets and a fast scheduler make continuations and pause visible within
        // the demo's few minutes; production defaults are longer.
        (config::TASK_TIME_BUDGET, "20".to_string()),
        (config::SCHEDULER_INTERVAL, "1".to_string()),
    ]);
    let settings = Settings::from_lookup(|name| values.get(name).cloned())?;

    let engine = build_engine(settings).await.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}; is Azurite running on queue port {} and table port {}? scripts/demo.sh starts it",
            azurite.queue,
            azurite.table
        )
    })?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let standalone = Standalone::start(engine.clone(), listener).await?;
    let base_url = format!("http://{}", standalone.address);
    Ok(Service {
        standalone,
        engine,
        base_url,
    })
}
