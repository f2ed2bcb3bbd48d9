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
use crate::driver::{self, DriveOptions, DriveOutcome, WorkloadPlan};
use crate::report::{self, human_bytes, CopyRow, ReplicationRow};
use crate::stack::{self, AzuritePorts, EmulatorPlan, Emulators, Service};
use crate::workload::runner::WorkloadReport;
use crate::workload::WorkloadModel;

/// Everything the demo is configured with, apart from the emulators' plan.
pub struct DemoSettings {
    pub data_dir: PathBuf,
    pub azurite: AzuritePorts,
    pub chunk_documents: u64,
    /// Environment variable that contains the source's connection string.
    pub source_setting: String,
    /// Environment variable that contains the target's connection string.
    pub target_setting: String,
    pub mode: Mode,
    pub pause_at: f64,
    pub pause_hold: Duration,
    /// Writes per second of the workload on the source (online jobs).
    pub writes_per_second: f64,
    /// Seed of the workload's choices, so a run's writes can be repeated.
    pub workload_seed: u64,
    /// Time an online job replicates under the workload once cutover is possible.
    pub replicate_for: Duration,
    pub timeout: Duration,
    pub log_file: PathBuf,
}

/// Runs the demo and returns whether every check passed: the job completed, nothing was copied
/// while it was paused, every collection is identical, the workload (online jobs) wrote what it
/// intended, and the log contains no secret.
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

    let workload = (settings.mode == Mode::Online).then(|| WorkloadPlan {
        model: WorkloadModel::new(workload_datasets(datasets), settings.workload_seed),
        client: emulators.source_client.clone(),
        writes_per_second: settings.writes_per_second,
    });
    match settings.mode {
        Mode::Online => println!(
            "\nmigrating (online job, paused once at {:.0}% of the copy; a workload of {} writes/s \
             runs on the source until {} s after cutover becomes possible, then cutover):",
            settings.pause_at * 100.0,
            settings.writes_per_second,
            settings.replicate_for.as_secs()
        ),
        Mode::Offline => println!(
            "\nmigrating (offline job, paused once at {:.0}%):",
            settings.pause_at * 100.0
        ),
    }
    let client = ApiClient::new(&service.base_url, api_key)?;
    let request = job_request(settings, datasets);
    let options = DriveOptions {
        poll_interval: Duration::from_millis(500),
        pause_at: settings.pause_at,
        pause_hold: settings.pause_hold,
        replicate_for: settings.replicate_for,
        timeout: settings.timeout,
    };
    let outcome =
        driver::drive(&client, &service.engine.store, &request, &options, workload).await?;
    let completed = outcome.job.state == vcore_migrate::jobs::JobState::Completed;
    let pause_ok = print_outcome(&outcome, settings.workload_seed);

    // The comparison reads every source document once more; it is a check, not part of the
    // migration, so it runs without the budget.
    stack::set_request_units(&emulators.source_client, None).await?;
    println!("\ncomparing every target collection with its source (raw BSON, sorted by _id):");
    let comparisons = compare_all(emulators, &outcome.job).await?;
    print!("{}", report::comparison_table(&comparisons));
    let identical = comparisons.iter().all(Comparison::is_identical);
    let workload_ok = match &outcome.workload {
        Some(report) => check_workload(report, &comparisons),
        None => true,
    };

    let log_clean = check_log(&settings.log_file, &[plan.user.1.as_str(), api_key])?;

    let passed = completed && identical && pause_ok && workload_ok && log_clean;
    println!(
        "\nresult: {}",
        if passed {
            "PASSED: the job completed and every collection is identical"
        } else if !completed {
            "FAILED: the job did not complete"
        } else if !identical {
            "FAILED: some collections differ"
        } else {
            "FAILED: see the messages above"
        }
    );
    Ok(passed)
}

/// Returns the datasets the workload writes to: the public ones, not the BSON type corpus,
/// whose documents stay as generated so the comparison checks each of them.
fn workload_datasets(datasets: &[Dataset]) -> &[Dataset] {
    let end = datasets
        .iter()
        .position(|d| d.database == corpus::DATABASE)
        .unwrap_or(datasets.len());
    &datasets[..end]
}

/// Checks that the workload ran without error, that every update, replace and delete found its
/// document, and that each source collection contains as many documents as the workload's
/// bookkeeping expects. Prints the result.
fn check_workload(report: &WorkloadReport, comparisons: &[Comparison]) -> bool {
    let mut problems = Vec::new();
    if let Some(error) = &report.error {
        problems.push(format!("it stopped early: {error}"));
    }
    if report.unmatched > 0 {
        problems.push(format!(
            "{} updates, replaces or deletes matched no document",
            report.unmatched
        ));
    }
    for model in report.model.collections() {
        let namespace = model.namespace();
        let found = comparisons
            .iter()
            .find(|c| c.source_namespace == namespace)
            .map(|c| c.source_documents);
        let expected = model.live().len() as u64;
        if found != Some(expected) {
            problems.push(format!(
                "{namespace} holds {} documents on the source, the workload expects {expected}",
                found.map_or("no".to_string(), |n| n.to_string())
            ));
        }
    }
    if problems.is_empty() {
        println!(
            "workload check: every write found its document, and each source collection contains \
             the documents the workload expects"
        );
        true
    } else {
        println!("workload check: FAILED: {}", problems.join("; "));
        false
    }
}

/// Builds the job over every dataset. The movies are renamed on the target to show
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
        mode: settings.mode,
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

/// Prints the copy table, the workload and replication figures of an online job, the
/// service's verification and the pause summary, and returns whether the pause held.
fn print_outcome(outcome: &DriveOutcome, workload_seed: u64) -> bool {
    let job = &outcome.job;
    println!(
        "\njob {} {} after {:.1} s: {} documents copied, {}",
        job.name,
        job.state.as_str(),
        outcome.elapsed.as_secs_f64(),
        job.documents_copied,
        human_bytes(job.bytes_copied)
    );
    if let Some(error) = &job.last_error {
        println!("last error: {error}");
    }
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

    if let Some(workload) = &outcome.workload {
        print_workload(workload, workload_seed);
    }
    if job.mode == Mode::Online {
        print_replication(outcome);
    }
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
            println!("pause: not exercised, because the job ended before the pause point");
            true
        }
    }
}

fn print_workload(workload: &WorkloadReport, seed: u64) {
    let seconds = workload.elapsed.as_secs_f64();
    println!(
        "\nworkload on the source (seed {seed}): {} writes in {seconds:.1} s, {:.0} writes/s \
         ({} requested), {} throttled and sent again",
        workload.total(),
        if seconds > 0.0 {
            workload.total() as f64 / seconds
        } else {
            0.0
        },
        workload.writes_per_second_requested,
        workload.throttled
    );
    let namespaces: Vec<String> = workload
        .model
        .collections()
        .iter()
        .map(|c| c.namespace())
        .collect();
    print!("{}", report::workload_table(&namespaces, &workload.counts));
}

fn print_replication(outcome: &DriveOutcome) {
    let rows: Vec<ReplicationRow> = outcome
        .job
        .collections
        .iter()
        .filter_map(|collection| {
            let stream = collection.replication.as_ref()?;
            Some(ReplicationRow {
                source: collection.source.clone(),
                target: collection.target.clone(),
                state: stream.state.clone(),
                events_applied: stream.events_applied,
                upserts: stream.upserts,
                deletes: stream.deletes,
                reconciled_deletes: stream.reconciliation.deletes_found,
                reconcile_passes: stream.reconciliation.passes_completed,
            })
        })
        .collect();
    println!("\nreplication (change streams, and deletes found by reconciliation):");
    print!("{}", report::replication_table(&rows));
    match &outcome.cutover {
        Some(cutover) => {
            println!(
                "cutover: requested with lag {} and {} events applied; left cuttingOver after {}, \
                 ended after {:.1} s",
                cutover
                    .lag_at_request
                    .map_or("unknown".to_string(), |s| format!("{s:.1} s")),
                cutover.events_at_request,
                cutover
                    .drained_in
                    .map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
                cutover.ended_in.as_secs_f64()
            );
            if let Some(verification) = cutover.extra_verification {
                println!(
                    "the cutover ran no verification, so the demo requested one; it took {:.1} s",
                    verification.as_secs_f64()
                );
            }
        }
        None => println!("cutover: not reached"),
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
