//! When a stream task reconciles, and how much per round trip.
//!
//! Reconciliation runs inside the stream task, between round trips, so that it never overlaps
//! the application of change events to the same collection (see `reconcile` for why that order
//! matters). Each round trip gets a bounded slice of reconciliation work, so replication lag stays
//! bounded while a pass runs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::errors::ReplicationError;
use super::reconcile::step;
use super::stream_task::StreamRun;
use crate::jobs::{JobState, SourceKind};
use crate::mongo::{classify, describe, ErrorClass};
use crate::state::{ReconcilePass, ReconcileReason};

/// Maximum reconciliation time per round trip.
const SLICE: Duration = Duration::from_secs(1);
/// Target `_id`s compared per step.
const PAGE_SIZE: u32 = 1_000;

/// Starts a pass when one is due and runs the current pass for up to one slice.
pub(super) async fn run(run: &mut StreamRun<'_>) -> Result<(), ReplicationError> {
    let now = Utc::now();
    if let Some(reason) = due_reason(run, now) {
        run.stream.value.reconcile.pass = Some(ReconcilePass {
            reason,
            started_at: now,
            bracket: 0,
            after: None,
            ids_checked: 0,
            deletes: 0,
        });
        info!(reason = ?reason, "reconciliation pass started");
    }
    let Some(mut pass) = run.stream.value.reconcile.pass.clone() else {
        return Ok(());
    };

    let slice_end = (Instant::now() + SLICE).min(run.deadline);
    loop {
        match step(&run.source_ids, &run.target_ids, &mut pass, PAGE_SIZE).await {
            Ok(outcome) => {
                if outcome.deleted > 0 {
                    info!(
                        deleted = outcome.deleted,
                        "reconciliation deleted target documents the source no longer has"
                    );
                }
                if outcome.finished {
                    finish_pass(run, pass);
                    return Ok(());
                }
            }
            Err(error) => match classify(&error) {
                ErrorClass::Throttled(delay) => {
                    run.stream.value.throttled += 1;
                    let left = slice_end.saturating_duration_since(Instant::now());
                    tokio::time::sleep(delay.min(left)).await;
                    break;
                }
                ErrorClass::Transient => {
                    warn!(error = %describe(&error), "reconciliation step failed; the next round trip retries it");
                    break;
                }
                ErrorClass::Permanent => {
                    return Err(ReplicationError::Failed(format!(
                        "reconciling {} failed: {}",
                        run.namespace,
                        describe(&error)
                    )))
                }
            },
        }
        if Instant::now() >= slice_end {
            break;
        }
    }
    run.stream.value.reconcile.pass = Some(pass);
    Ok(())
}

/// Returns the reason a new pass must start now, if one must.
fn due_reason(run: &StreamRun<'_>, now: DateTime<Utc>) -> Option<ReconcileReason> {
    let stream = &run.stream.value;
    let current = stream.reconcile.pass.as_ref();
    if run.job.state == JobState::CuttingOver {
        let mark = run.job.cutover.as_ref()?;
        if !super::cutover::needs_final_pass(stream, run.kind)
            || super::cutover::final_pass_done(stream, mark)
        {
            return None;
        }
        // Only a pass that started after the cutover point finds every delete made before it.
        let current_counts = current.is_some_and(|p| {
            p.reason == ReconcileReason::Cutover && p.started_at >= mark.requested_at
        });
        return (!current_counts).then_some(ReconcileReason::Cutover);
    }
    if current.is_some() || run.job.state != JobState::Replicating {
        return None;
    }
    if stream.reconcile.requested {
        return Some(ReconcileReason::Recopy);
    }
    let interval = run.job.request.options.reconcile_interval_seconds;
    if run.kind != SourceKind::CosmosRu || interval == 0 {
        return None;
    }
    let since = stream.reconcile.last_finished_at.or(stream.started_at)?;
    let elapsed = (now - since).num_seconds();
    (elapsed >= interval as i64).then_some(ReconcileReason::Periodic)
}

fn finish_pass(run: &mut StreamRun<'_>, pass: ReconcilePass) {
    let record = &mut run.stream.value.reconcile;
    record.pass = None;
    record.requested = false;
    record.passes_completed += 1;
    record.deletes_found += pass.deletes;
    record.last_started_at = Some(pass.started_at);
    record.last_finished_at = Some(Utc::now());
    record.last_reason = Some(pass.reason);
    info!(
        reason = ?pass.reason,
        ids_checked = pass.ids_checked,
        deleted = pass.deletes,
        "reconciliation pass finished"
    );
}
