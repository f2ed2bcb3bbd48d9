//! Verification runs: starting one, writing its unit rows, queueing units up to the job's
//! concurrency, and deciding the outcome once every unit finished.

use std::collections::HashSet;

use chrono::Utc;
use tracing::{info, warn};

use crate::copy::decode_document;
use crate::copy::range::{ChunkRange, TypeBracket};
use crate::jobs::{JobState, Mode, VerificationMode};
use crate::queue::VerifyTask;
use crate::runtime::engine::{Engine, EngineError};
use crate::state::{
    ChunkState, DifferenceKind, JobRecord, RunState, RunTrigger, StoreError, StreamState,
    UnitScope, VerificationRun, VerifyUnitRecord, Versioned, REMAINDER_UNIT,
};

use super::scope::uncovered_brackets;

/// Starts a new run on `job` in memory, numbered after the previous one; the caller stores the
/// job. A run never has mode `off`: asking for it runs a full comparison.
pub fn begin_run(job: &mut JobRecord, mode: VerificationMode, trigger: RunTrigger) {
    let number = job.verification.as_ref().map_or(1, |run| run.number + 1);
    let mode = match mode {
        VerificationMode::Off => VerificationMode::Full,
        other => other,
    };
    job.verification = Some(VerificationRun {
        number,
        mode,
        state: RunState::Preparing,
        trigger,
        started_at: Utc::now(),
        finished_at: None,
        units_total: 0,
        units_failed: 0,
        differences: 0,
        skipped_collections: Vec::new(),
    });
}

/// Moves the job's current run as far as its units allow: writes unit rows while preparing,
/// queues waiting units, and finishes the run (and a `verifying` job) once every unit is done.
/// Safe to call from any task, request or scheduler pass at any time.
pub async fn advance_verification(engine: &Engine, job_id: &str) -> Result<(), EngineError> {
    loop {
        let Some(mut job) = engine.store.job(job_id).await? else {
            return Ok(());
        };
        let Some(run) = job.value.verification.clone() else {
            return Ok(());
        };
        if run.state.is_finished() || !verifying_state(job.value.state) {
            return Ok(());
        }
        let units: Vec<Versioned<VerifyUnitRecord>> = engine
            .store
            .verify_units_of_job(job_id)
            .await?
            .into_iter()
            .filter(|u| u.value.run == run.number)
            .collect();

        if run.state == RunState::Preparing || (units.len() as u32) < run.units_total {
            let (total, skipped) = prepare_units(engine, &job.value, &run, &units).await?;
            if let Some(current) = job.value.verification.as_mut() {
                current.state = RunState::Running;
                current.units_total = total;
                current.skipped_collections = skipped;
            }
            match engine.store.replace_job(&job).await {
                Ok(_) => {
                    info!(
                        job_id,
                        run = run.number,
                        units = total,
                        "verification units written"
                    );
                    continue;
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }

        if !units.iter().all(|u| u.value.is_finished()) {
            return enqueue_waiting(engine, &job.value, &units).await;
        }
        let before = job.value.state;
        finish_run(&mut job.value, &units);
        match engine.store.replace_job(&job).await {
            Ok(_) => {
                log_outcome(&job.value);
                engine.events.state_changed(&job.value, before);
                let details = job.value.verification.as_ref().map(|run| {
                    serde_json::json!({
                        "run": run.number,
                        "trigger": run.trigger,
                        "mode": run.mode,
                        "passed": run.state == RunState::Passed,
                        "chunksTotal": run.units_total,
                        "chunksFailed": run.units_failed,
                        "differences": run.differences,
                        "collectionsSkipped": run.skipped_collections.len(),
                    })
                });
                engine.events.publish(
                    crate::events::EventType::VerificationCompleted,
                    &job.value,
                    None,
                    details,
                );
                return Ok(());
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Job states in which a run's units are compared.
fn verifying_state(state: JobState) -> bool {
    matches!(
        state,
        JobState::Verifying | JobState::Replicating | JobState::CuttingOver
    )
}

/// Writes the rows of every unit the run needs and lacks; returns the number of units and the
/// indexes of the collections the run skips.
///
/// Each collection gets one unit per copy chunk, plus a remainder unit for the `_id` type
/// brackets no chunk covers, so documents outside every planned range (extra on the target, or
/// added to the source after planning) are found too. A collection whose planning never
/// finished is compared as one remainder unit over every bracket. A collection of an online job
/// whose replication stopped (its source collection was dropped or renamed) has no source to
/// compare with and is skipped.
async fn prepare_units(
    engine: &Engine,
    job: &JobRecord,
    run: &VerificationRun,
    existing: &[Versioned<VerifyUnitRecord>],
) -> Result<(u32, Vec<u32>), EngineError> {
    let collections = engine.store.collections(&job.id).await?;
    let chunks = engine.store.chunks_of_job(&job.id).await?;
    let skipped: Vec<u32> = match job.mode {
        Mode::Online => engine
            .store
            .streams(&job.id)
            .await?
            .iter()
            .filter(|s| s.value.state == StreamState::Stopped)
            .map(|s| s.value.collection)
            .collect(),
        Mode::Offline => Vec::new(),
    };
    let present: HashSet<(u32, u32)> = existing
        .iter()
        .map(|u| (u.value.collection, u.value.index))
        .collect();

    let mut expected = Vec::new();
    for collection in &collections {
        let index = collection.value.index;
        if skipped.contains(&index) {
            continue;
        }
        let mut covered = Vec::new();
        if collection.value.planned {
            let mut own: Vec<_> = chunks
                .iter()
                .filter(|c| c.value.collection == index)
                .collect();
            own.sort_by_key(|c| c.value.index);
            for chunk in own {
                if let Some(range) =
                    decode_document(&chunk.value.range).and_then(|d| ChunkRange::from_document(&d))
                {
                    covered.push(range.bracket);
                }
                let scope = UnitScope::Chunk {
                    range: chunk.value.range.clone(),
                };
                expected.push(VerifyUnitRecord::new(
                    &job.id,
                    index,
                    chunk.value.index,
                    run,
                    scope,
                ));
            }
        }
        let brackets: Vec<TypeBracket> = uncovered_brackets(&covered);
        if !brackets.is_empty() {
            let scope = UnitScope::Remainder { brackets };
            expected.push(VerifyUnitRecord::new(
                &job.id,
                index,
                REMAINDER_UNIT,
                run,
                scope,
            ));
        }
    }
    let total = expected.len() as u32;
    let missing: Vec<VerifyUnitRecord> = expected
        .into_iter()
        .filter(|u| !present.contains(&(u.collection, u.index)))
        .collect();
    engine.store.upsert_verify_units(&missing).await?;
    Ok((total, skipped))
}

/// Queues waiting units, keeping at most the job's concurrency queued or running.
async fn enqueue_waiting(
    engine: &Engine,
    job: &JobRecord,
    units: &[Versioned<VerifyUnitRecord>],
) -> Result<(), EngineError> {
    let in_flight = units
        .iter()
        .filter(|u| matches!(u.value.state, ChunkState::Queued | ChunkState::Running))
        .count();
    let limit = job.concurrency.max(1) as usize;
    let mut slots = limit.saturating_sub(in_flight);
    let mut waiting: Vec<&Versioned<VerifyUnitRecord>> = units
        .iter()
        .filter(|u| u.value.state == ChunkState::Waiting)
        .collect();
    waiting.sort_by_key(|u| (u.value.collection, u.value.index));
    for unit in waiting {
        if slots == 0 {
            break;
        }
        let mut claimed = unit.clone();
        claimed.value.state = ChunkState::Queued;
        claimed.value.owner = None;
        claimed.value.lease_until = Some(Utc::now() + engine.lease());
        match engine.store.replace_verify_unit(&claimed).await {
            Ok(_) => {}
            // Another instance changed the unit first; it decides for this one.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        let task = VerifyTask {
            job_id: job.id.clone(),
            collection: unit.value.collection,
            unit: unit.value.index,
            run: unit.value.run,
        };
        engine.queues.send_verify(&task, None).await?;
        slots -= 1;
    }
    Ok(())
}

/// Counts the documents a unit reports as differing: the merge's count in `full` mode, the gap
/// between the two counts in `counts` mode.
pub fn unit_differences(unit: &VerifyUnitRecord) -> u64 {
    match unit.mode {
        VerificationMode::Counts => unit.source.documents.abs_diff(unit.target.documents),
        _ => unit.differences.total(),
    }
}

/// Records the run's outcome on the job and, for a `verifying` job, its next state.
///
/// A failed run leaves the job `verificationFailed`, and `resume` copies the differing chunks
/// again. An offline job resumes to `copying`. An online job resumes to `cuttingOver`, because
/// its change streams ended at cutover: it copies those chunks without starting the streams
/// again, then verifies once more.
fn finish_run(job: &mut JobRecord, units: &[Versioned<VerifyUnitRecord>]) {
    let now = Utc::now();
    let failed: Vec<&VerifyUnitRecord> = units
        .iter()
        .map(|u| &u.value)
        .filter(|u| u.has_failed())
        .collect();
    let unreadable = failed
        .iter()
        .filter(|u| u.state == ChunkState::Failed)
        .count();
    let differences: u64 = units.iter().map(|u| unit_differences(&u.value)).sum();
    let Some(run) = job.verification.as_mut() else {
        return;
    };
    run.state = if failed.is_empty() {
        RunState::Passed
    } else {
        RunState::Failed
    };
    run.finished_at = Some(now);
    run.units_failed = failed.len() as u32;
    run.differences = differences;
    let passed = run.state == RunState::Passed;
    let number = run.number;

    if job.state != JobState::Verifying {
        return;
    }
    job.updated_at = now;
    if passed {
        job.state = JobState::Completed;
        job.finished_at = Some(now);
        job.last_error = None;
        return;
    }
    job.state = JobState::VerificationFailed;
    job.resume_to = Some(match job.mode {
        Mode::Offline => JobState::Copying,
        Mode::Online => JobState::CuttingOver,
    });
    let recopy = match job.mode {
        Mode::Offline => "resume the job to copy the affected chunks again",
        Mode::Online => {
            "resume the job to copy the affected chunks again from the source (the change \
             streams stay ended)"
        }
    };
    job.last_error = Some(format!(
        "verification run {number} found {differences} differing document(s) in {} unit(s) \
         and could not read {unreadable} unit(s){}; see GET /api/jobs/{}/verification, then \
         {recopy}, or verify again",
        failed.len() - unreadable,
        first_examples(&failed),
        job.id
    ));
}

/// Names the first few differing `_id`s of the failed units, for the job's `lastError`.
fn first_examples(failed: &[&VerifyUnitRecord]) -> String {
    const SHOWN: usize = 3;
    let examples: Vec<String> = failed
        .iter()
        .flat_map(|u| u.examples.iter())
        .take(SHOWN)
        .map(|d| {
            let kind = match d.kind {
                DifferenceKind::Missing => "missing",
                DifferenceKind::Extra => "extra",
                DifferenceKind::Different => "different",
            };
            format!("{kind} _id {}", d.id)
        })
        .collect();
    if examples.is_empty() {
        return String::new();
    }
    format!(" (first: {})", examples.join(", "))
}

fn log_outcome(job: &JobRecord) {
    let Some(run) = job.verification.as_ref() else {
        return;
    };
    if run.state == RunState::Passed {
        info!(job_id = %job.id, run = run.number, units = run.units_total, "verification passed");
    } else {
        warn!(
            job_id = %job.id,
            run = run.number,
            units_failed = run.units_failed,
            differences = run.differences,
            "verification failed"
        );
    }
}

/// Runs one scheduler pass over a job's run: units whose lease expired wait to be queued again,
/// then the run advances.
pub async fn schedule_verification(engine: &Engine, job: &JobRecord) -> Result<(), EngineError> {
    let Some(run) = job.verification.as_ref() else {
        return Ok(());
    };
    if run.state.is_finished() {
        return Ok(());
    }
    let now = Utc::now();
    for unit in engine.store.verify_units_of_job(&job.id).await? {
        let expired = unit.value.run == run.number
            && matches!(unit.value.state, ChunkState::Queued | ChunkState::Running)
            && unit.value.lease_until.is_none_or(|t| t < now);
        if !expired {
            continue;
        }
        warn!(
            job_id = %job.id,
            collection = unit.value.collection,
            unit = unit.value.index,
            state = unit.value.state.as_str(),
            "verification unit lease expired; its task was lost, so the unit waits to be queued again"
        );
        let mut released = unit.clone();
        released.value.state = ChunkState::Waiting;
        released.value.owner = None;
        released.value.lease_until = None;
        match engine.store.replace_verify_unit(&released).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    advance_verification(engine, &job.id).await
}

/// Units of the job's current run that a task is comparing now.
pub async fn running_units(engine: &Engine, job: &JobRecord) -> Result<usize, EngineError> {
    let Some(run) = job.verification.as_ref().filter(|r| !r.state.is_finished()) else {
        return Ok(0);
    };
    Ok(engine
        .store
        .verify_units_of_job(&job.id)
        .await?
        .iter()
        .filter(|u| u.value.run == run.number && u.value.state == ChunkState::Running)
        .count())
}

/// Sends the copy chunks whose units found differences in the latest run back to be copied
/// from their start; returns how many. The copy writer replaces target documents whose bytes
/// differ and inserts missing ones.
///
/// NOTE: extra target documents are reported but never deleted, as the service never deletes
/// target data; remainder units have no chunk to copy again.
pub async fn requeue_affected_chunks(engine: &Engine, job_id: &str) -> Result<u32, EngineError> {
    let Some(job) = engine.store.job(job_id).await? else {
        return Ok(0);
    };
    let Some(run) = job.value.verification.as_ref() else {
        return Ok(0);
    };
    let affected: Vec<(u32, u32)> = engine
        .store
        .verify_units_of_job(job_id)
        .await?
        .into_iter()
        .map(|u| u.value)
        .filter(|u| u.run == run.number && u.matched == Some(false) && u.index != REMAINDER_UNIT)
        .map(|u| (u.collection, u.index))
        .collect();
    let mut requeued = 0;
    for (collection, index) in affected {
        loop {
            let Some(mut chunk) = engine.store.chunk(job_id, collection, index).await? else {
                break;
            };
            chunk.value.state = ChunkState::Waiting;
            chunk.value.checkpoint = None;
            chunk.value.documents_copied = 0;
            chunk.value.bytes_copied = 0;
            chunk.value.owner = None;
            chunk.value.lease_until = None;
            chunk.value.last_error = None;
            chunk.value.finished_at = None;
            match engine.store.replace_chunk(&chunk).await {
                Ok(_) => {
                    requeued += 1;
                    break;
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    if requeued > 0 {
        info!(
            job_id,
            chunks = requeued,
            "chunks that differed are copied again"
        );
    }
    Ok(requeued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobOptions, JobRequest, Mode};
    use crate::state::{DifferenceCounts, SideDigest};

    fn job(state: JobState) -> JobRecord {
        let request: JobRequest = serde_json::from_value(serde_json::json!({
            "name": "n",
            "mode": "offline",
            "source": { "setting": "S" },
            "target": { "setting": "T" },
            "collections": [{ "database": "d", "collection": "c" }]
        }))
        .unwrap();
        assert_eq!(request.options, JobOptions::default());
        let now = Utc::now();
        JobRecord {
            id: "job".into(),
            name: "n".into(),
            mode: Mode::Offline,
            state,
            resume_to: None,
            request,
            created_at: now,
            updated_at: now,
            finished_at: None,
            concurrency: 4,
            source_kind: None,
            last_error: None,
            initial_copy_done: true,
            plan_lease_until: None,
            plan_owner: None,
            verification: None,
            event_delivery_error: None,
            event_delivery_failures: 0,
            cutover: None,
            cutover_ready_at: None,
        }
    }

    fn unit(
        run: &VerificationRun,
        index: u32,
        source: u64,
        target: u64,
        diff: u64,
    ) -> Versioned<VerifyUnitRecord> {
        let mut value = VerifyUnitRecord::new(
            "job",
            0,
            index,
            run,
            UnitScope::Remainder { brackets: vec![] },
        );
        value.state = ChunkState::Done;
        value.source = SideDigest {
            documents: source,
            ..SideDigest::default()
        };
        value.target = SideDigest {
            documents: target,
            ..SideDigest::default()
        };
        value.differences = DifferenceCounts {
            missing: diff,
            extra: 0,
            different: 0,
        };
        value.matched = Some(diff == 0 && source == target);
        Versioned {
            value,
            etag: String::new(),
        }
    }

    #[test]
    fn runs_are_numbered_and_never_off() {
        let mut record = job(JobState::Copying);
        begin_run(&mut record, VerificationMode::Off, RunTrigger::Copy);
        let first = record.verification.clone().unwrap();
        assert_eq!((first.number, first.mode), (1, VerificationMode::Full));
        begin_run(&mut record, VerificationMode::Counts, RunTrigger::Request);
        let second = record.verification.clone().unwrap();
        assert_eq!((second.number, second.mode), (2, VerificationMode::Counts));
        assert_eq!(second.state, RunState::Preparing);
    }

    #[test]
    fn clean_run_completes_verifying_job() {
        let mut record = job(JobState::Verifying);
        begin_run(&mut record, VerificationMode::Full, RunTrigger::Copy);
        let run = record.verification.clone().unwrap();
        finish_run(
            &mut record,
            &[unit(&run, 0, 5, 5, 0), unit(&run, 1, 3, 3, 0)],
        );
        assert_eq!(record.state, JobState::Completed);
        let run = record.verification.as_ref().unwrap();
        assert_eq!(run.state, RunState::Passed);
        assert!(record.finished_at.is_some());
    }

    #[test]
    fn differences_fail_verifying_job() {
        let mut record = job(JobState::Verifying);
        begin_run(&mut record, VerificationMode::Full, RunTrigger::Copy);
        let run = record.verification.clone().unwrap();
        finish_run(
            &mut record,
            &[unit(&run, 0, 5, 4, 1), unit(&run, 1, 3, 3, 0)],
        );
        assert_eq!(record.state, JobState::VerificationFailed);
        assert_eq!(record.resume_to, Some(JobState::Copying));
        let run = record.verification.as_ref().unwrap();
        assert_eq!((run.units_failed, run.differences), (1, 1));
        let reason = record.last_error.clone().unwrap();
        assert!(reason.contains("1 differing document"), "{reason}");
    }

    #[test]
    fn failed_cutover_run_names_ids() {
        let mut record = job(JobState::Verifying);
        record.mode = Mode::Online;
        begin_run(&mut record, VerificationMode::Full, RunTrigger::Cutover);
        let run = record.verification.clone().unwrap();
        let mut differing = unit(&run, 0, 5, 5, 0);
        differing.value.matched = Some(false);
        differing.value.differences.different = 1;
        differing.value.examples = vec![crate::state::Difference {
            kind: DifferenceKind::Different,
            id: "{\"$numberInt\":\"7\"}".into(),
            id_truncated: false,
        }];
        finish_run(&mut record, &[differing, unit(&run, 1, 3, 3, 0)]);
        assert_eq!(record.state, JobState::VerificationFailed);
        assert_eq!(record.resume_to, Some(JobState::CuttingOver));
        let reason = record.last_error.clone().unwrap();
        assert!(
            reason.contains("different _id {\"$numberInt\":\"7\"}"),
            "{reason}"
        );
        assert!(reason.contains("streams stay ended"), "{reason}");
    }

    #[test]
    fn run_beside_replication_keeps_job_state() {
        let mut record = job(JobState::Replicating);
        begin_run(&mut record, VerificationMode::Full, RunTrigger::Request);
        let run = record.verification.clone().unwrap();
        finish_run(&mut record, &[unit(&run, 0, 2, 1, 1)]);
        assert_eq!(record.state, JobState::Replicating);
        assert_eq!(record.verification.unwrap().state, RunState::Failed);
    }

    #[test]
    fn counts_mode_reports_count_gap() {
        let mut record = job(JobState::Verifying);
        begin_run(&mut record, VerificationMode::Counts, RunTrigger::Copy);
        let run = record.verification.clone().unwrap();
        let gap = unit(&run, 0, 10, 7, 0);
        assert_eq!(unit_differences(&gap.value), 3);
    }
}
