//! The demo from start to end: load, seed, migrate, report, compare.

use std::path::PathBuf;
use std::time::Duration;

use bson::RawDocumentBuf;
use vcore_migrate::jobs::model::ExistingTarget;
use vcore_migrate::jobs::{CollectionSpec, JobOptions, JobRequest, Mode};
use vcore_migrate::secrets::CredentialRef;

use crate::api::{ApiClient, JobView};
use crate::compare::{compare_collections, Comparison};
use crate::corpus;
use crate::datasets::{self, Dataset};
use crate::driver::{self, DriveOptions, DriveOutcome};
use crate::report::{self, human_bytes, CopyRow};
use crate::stack::{self, AzuritePorts, EmulatorPlan, Emulators, Service};

/// Everything the demo is configured with, apart from the emulators' plan.
pub struct DemoSettings {
    pub data_dir: PathBuf,
    pub azurite: AzuritePorts,
    pub chunk_documents: u64,
    /// Environment variable that contains the source's connection string.
    pub source_setting: String,
    /// Environment variable that contains the target's connection string.
    pub target_setting: String,
    pub pause_at: f64,
    pub pause_hold: Duration,
    pub timeout: Duration,
    pub log_file: PathBuf,
}

/// Runs the demo and returns whether every check passed: the job completed, nothing was copied
/// while it was paused, every collection is identical, and the log contains no secret.
pub async fn run(settings: DemoSettings, plan: EmulatorPlan) -> anyhow::Result<bool> {
    println!(
        "vcore-migrate end-to-end demo (logs: {})",
        settings.log_file.display()
    );
    let mut datasets = datasets::load_all(&settings.data_dir)?;
    datasets.push(Dataset {
        database: corpus::DATABASE,
        collection: corpus::COLLECTION,
        origin: "generated corpus of every BSON type".into(),
        documents: corpus::documents(),
    });

    let emulators = stack::start_emulators(&plan).await?;
    println!(
        "source: emulated Cosmos DB for MongoDB (RU) on 127.0.0.1:{}, {} RU/s",
        emulators.source.port(),
        plan.source_ru_per_second
    );
    println!(
        "target: emulated Cosmos DB for MongoDB (vCore) on 127.0.0.1:{}",
        emulators.target.port()
    );

    let api_key = uuid::Uuid::new_v4().simple().to_string();
    let storage_prefix = format!("demo{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let result = match stack::start_service(&settings.azurite, &api_key, &storage_prefix).await {
        Ok(service) => {
            println!(
                "service: standalone on {}, tables and queues prefixed {storage_prefix}",
                service.base_url
            );
            let result =
                migrate_and_check(&settings, &plan, &emulators, &service, &datasets, &api_key)
                    .await;
            service.standalone.shutdown().await;
            result
        }
        Err(error) => Err(error),
    };
    emulators.source.shutdown().await;
    emulators.target.shutdown().await;
    result
}

async fn migrate_and_check(
    settings: &DemoSettings,
    plan: &EmulatorPlan,
    emulators: &Emulators,
    service: &Service,
    datasets: &[Dataset],
    api_key: &str,
) -> anyhow::Result<bool> {
    // A bulk load would overrun the copy's budget, so the source's limit is lifted while
    // seeding, as one raises an account's throughput for an import.
    stack::set_request_units(&emulators.source_client, None).await?;
    println!("\nseeding the source:");
    let seeded = stack::seed(&emulators.source_client, datasets).await?;
    for (dataset, figures) in datasets.iter().zip(&seeded) {
        println!(
            "  {:<24} {:>8} documents {:>10}  from {}",
            figures.namespace,
            figures.documents,
            human_bytes(figures.bytes),
            dataset.origin
        );
    }
    stack::set_request_units(&emulators.source_client, Some(plan.source_ru_per_second)).await?;

    println!(
        "\nmigrating (offline job, paused once at {:.0}%):",
        settings.pause_at * 100.0
    );
    let client = ApiClient::new(&service.base_url, api_key)?;
    let request = job_request(settings, datasets);
    let options = DriveOptions {
        poll_interval: Duration::from_millis(500),
        pause_at: settings.pause_at,
        pause_hold: settings.pause_hold,
        timeout: settings.timeout,
    };
    let outcome = driver::drive(&client, &service.engine.store, &request, &options).await?;
    let pause_ok = print_outcome(&outcome);

    // The comparison reads every source document once more; it is a check, not part of the
    // migration, so it runs without the budget.
    stack::set_request_units(&emulators.source_client, None).await?;
    println!("\ncomparing every target collection with its source (raw BSON, sorted by _id):");
    let comparisons = compare_all(emulators, &outcome.job).await?;
    print!("{}", report::comparison_table(&comparisons));
    let identical = comparisons.iter().all(Comparison::is_identical);

    let log_clean = check_log(&settings.log_file, &[plan.user.1.as_str(), api_key])?;

    let passed = identical && pause_ok && log_clean;
    println!(
        "\nresult: {}",
        if passed {
            "PASSED: every collection is identical"
        } else if !identical {
            "FAILED: some collections differ"
        } else {
            "FAILED: see the messages above"
        }
    );
    Ok(passed)
}

/// Builds the offline job over every dataset. The movies are renamed on the target to show
/// renaming; the rest keep their names.
fn job_request(settings: &DemoSettings, datasets: &[Dataset]) -> JobRequest {
    let collections = datasets
        .iter()
        .map(|dataset| CollectionSpec {
            database: dataset.database.to_string(),
            collection: dataset.collection.to_string(),
            target_database: (dataset.collection == "movies").then(|| "media".to_string()),
            target_collection: None,
            target_shard_key: None,
        })
        .collect();
    JobRequest {
        name: format!("demo-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S")),
        mode: Mode::Offline,
        source: CredentialRef::Setting {
            setting: settings.source_setting.clone(),
        },
        target: CredentialRef::Setting {
            setting: settings.target_setting.clone(),
        },
        collections,
        options: JobOptions {
            chunk_documents: settings.chunk_documents,
            // The target starts empty; anything there would be a leftover worth stopping for.
            existing_target: ExistingTarget::Fail,
            ..JobOptions::default()
        },
    }
}

/// Prints the copy table and the pause summary, and returns whether the pause held.
fn print_outcome(outcome: &DriveOutcome) -> bool {
    let job = &outcome.job;
    println!(
        "\njob {} completed in {:.1} s: {} documents, {}",
        job.name,
        outcome.elapsed.as_secs_f64(),
        job.documents_copied,
        human_bytes(job.bytes_copied)
    );
    let rows: Vec<CopyRow> = job
        .collections
        .iter()
        .enumerate()
        .map(|(index, collection)| CopyRow {
            source: collection.source.clone(),
            target: collection.target.clone(),
            documents: collection.documents_copied,
            bytes: collection.bytes_copied,
            duration: match (collection.started_at, collection.finished_at) {
                (Some(start), Some(end)) => (end - start).to_std().ok(),
                _ => None,
            },
            throttled: outcome.throttled.get(index).copied().unwrap_or(0),
        })
        .collect();
    print!("{}", report::copy_table(&rows));
    if let Some(verification) = &job.verification {
        println!(
            "service verification ({}): {}, {} of {} chunks verified, {} failed, {} differing documents",
            verification.mode,
            verification.state,
            verification.chunks_verified,
            verification.chunks_total,
            verification.chunks_failed,
            verification.differences
        );
    }

    match &outcome.pause {
        Some(pause) => {
            println!(
                "pause: requested at {} documents, paused after {:.1} s at {} documents, {} when resumed{}",
                pause.requested_at,
                pause.time_to_pause.as_secs_f64(),
                pause.at_paused,
                pause.before_resume,
                if pause.held_still() { " (nothing copied while paused)" } else { " (COPIED WHILE PAUSED)" }
            );
            pause.held_still()
        }
        None => {
            println!("pause: not exercised, because the job completed before the pause point");
            true
        }
    }
}

/// Compares each collection of the job on the target with its source.
async fn compare_all(emulators: &Emulators, job: &JobView) -> anyhow::Result<Vec<Comparison>> {
    let mut comparisons = Vec::with_capacity(job.collections.len());
    for collection in &job.collections {
        let (source_db, source_name) = split_namespace(&collection.source)?;
        let (target_db, target_name) = split_namespace(&collection.target)?;
        let source = emulators
            .source_client
            .database(source_db)
            .collection::<RawDocumentBuf>(source_name);
        let target = emulators
            .target_client
            .database(target_db)
            .collection::<RawDocumentBuf>(target_name);
        let comparison = compare_collections(&source, &target)
            .await
            .map_err(|e| anyhow::anyhow!("comparing {} failed: {e}", collection.target))?;
        tracing::info!(
            source = %collection.source,
            target = %collection.target,
            identical = comparison.is_identical(),
            differing = comparison.differing_documents,
            "collection compared"
        );
        comparisons.push(comparison);
    }
    Ok(comparisons)
}

/// Splits `database.collection` at the first dot, because database names cannot contain one.
fn split_namespace(namespace: &str) -> anyhow::Result<(&str, &str)> {
    namespace
        .split_once('.')
        .ok_or_else(|| anyhow::anyhow!("namespace {namespace:?} has no database part"))
}

/// Checks that no secret of this run appears in the log file, and prints the result.
fn check_log(path: &PathBuf, secrets: &[&str]) -> anyhow::Result<bool> {
    let log = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the log file {} failed: {e}", path.display()))?;
    let leaked = secrets
        .iter()
        .filter(|secret| log.contains(**secret))
        .count();
    if leaked == 0 {
        println!(
            "log check: {} lines in {}, no password or API key among them",
            log.lines().count(),
            path.display()
        );
        Ok(true)
    } else {
        println!(
            "log check: FAILED: {leaked} secret(s) of this run appear in {}",
            path.display()
        );
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_splits_at_first_dot() {
        assert_eq!(
            split_namespace("geo.quakes.2018").unwrap(),
            ("geo", "quakes.2018")
        );
        assert!(split_namespace("nodot").is_err());
    }
}
