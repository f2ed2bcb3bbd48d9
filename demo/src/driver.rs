//! Runs one job through the HTTP API: creates it, polls it with live progress, pauses it once
//! part-way and resumes it, and waits for it to end. An online job also gets a live workload on
//! its source and a cutover ([`cutover`]).

pub mod cutover;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vcore_migrate::jobs::{JobRequest, JobState, Mode};
use vcore_migrate::state::Store;

use crate::api::{ApiClient, JobCommand, JobView};
use crate::progress::JobProgress;
use crate::workload::runner::{self, RunningWorkload, WorkloadReport};
use crate::workload::WorkloadModel;

/// When and how long to pause, and how long to wait for the job.
pub struct DriveOptions {
    pub poll_interval: Duration,
    /// Fraction of the estimated documents copied after which the job is paused once.
    pub pause_at: f64,
    /// Time the job stays paused, to show that nothing is copied meanwhile.
    pub pause_hold: Duration,
    /// Time an online job keeps replicating under the workload once cutover is possible, before
    /// the demo requests it.
    pub replicate_for: Duration,
    /// Maximum time for the whole job, pauses included.
    pub timeout: Duration,
}

/// The writes an online demo sends to the source while the job runs.
pub struct WorkloadPlan {
    pub model: WorkloadModel,
    pub client: mongodb::Client,
    pub writes_per_second: f64,
}

/// Document counts and timing of the one pause.
pub struct PauseRecord {
    /// Documents copied when `pause` was sent.
    pub requested_at: u64,
    /// Time from `pause` to the state `paused`, while running tasks stopped.
    pub time_to_pause: Duration,
    /// Documents copied when the job reached `paused`.
    pub at_paused: u64,
    /// Documents copied at the end of the hold, just before `resume`.
    pub before_resume: u64,
}

impl PauseRecord {
    /// Returns whether the job copied nothing while it was paused.
    pub fn held_still(&self) -> bool {
        self.at_paused == self.before_resume
    }
}

/// The job as it ended, and what happened on the way.
pub struct DriveOutcome {
    pub job: JobView,
    pub pause: Option<PauseRecord>,
    /// Throttled source or target round trips per collection, in request order.
    pub throttled: Vec<u64>,
    pub elapsed: Duration,
    /// The workload's writes (online jobs).
    pub workload: Option<WorkloadReport>,
    /// The cutover's figures (online jobs that reached it).
    pub cutover: Option<cutover::CutoverRecord>,
}

/// Returns whether a job in `state` ended, and if so whether it succeeded.
pub fn outcome_of(state: JobState) -> Option<bool> {
    match state {
        JobState::Completed => Some(true),
        JobState::Failed | JobState::Cancelled | JobState::VerificationFailed => Some(false),
        _ => None,
    }
}

/// Polls the job and draws its progress, with access to the service's chunk rows for the
/// throttling counts that the API does not report. It prints a line at every state change.
pub(crate) struct Poller<'a> {
    client: &'a ApiClient,
    store: &'a Store,
    job_id: String,
    progress: JobProgress,
    throttled: Vec<u64>,
    started: Instant,
    last_state: JobState,
    /// The workload's count of acknowledged writes, while it runs.
    workload_writes: Option<Arc<AtomicU64>>,
    timeout: Duration,
}

impl Poller<'_> {
    async fn poll(&mut self) -> anyhow::Result<JobView> {
        let job = self.client.job(&self.job_id).await?;
        self.throttled = throttled_per_collection(self.store, &job).await;
        let writes = self
            .workload_writes
            .as_ref()
            .map(|w| w.load(Ordering::Relaxed));
        self.progress
            .update(&job, self.throttled.iter().sum(), writes);
        if job.state != self.last_state {
            self.progress.println(&format!(
                "{:>6.1} s  state {} -> {}",
                self.started.elapsed().as_secs_f64(),
                self.last_state.as_str(),
                job.state.as_str()
            ));
            self.last_state = job.state;
        }
        Ok(job)
    }

    fn check_timeout(&self, job: &JobView) -> anyhow::Result<()> {
        if self.started.elapsed() <= self.timeout {
            return Ok(());
        }
        self.progress.finish();
        anyhow::bail!(
            "job {} did not complete within {} s (state {}, {:.1}%); raise --timeout-seconds \
             or the source's request units",
            job.id,
            self.timeout.as_secs(),
            job.state.as_str(),
            job.percent
        )
    }
}

/// Creates the job described by `request` and runs it until it ends. An online job gets the
/// workload from the moment it is created, and a cutover once it has replicated for
/// [`DriveOptions::replicate_for`].
pub async fn drive(
    client: &ApiClient,
    store: &Store,
    request: &JobRequest,
    options: &DriveOptions,
    workload: Option<WorkloadPlan>,
) -> anyhow::Result<DriveOutcome> {
    let created = client.create_job(request).await?;
    tracing::info!(job_id = %created.id, name = %created.name, mode = ?created.mode, "demo job created");
    let running =
        workload.map(|plan| runner::start(plan.model, &plan.client, plan.writes_per_second));
    let mut poller = Poller {
        client,
        store,
        job_id: created.id.clone(),
        progress: JobProgress::new(&created),
        throttled: vec![0; created.collections.len()],
        started: Instant::now(),
        last_state: created.state,
        workload_writes: running.as_ref().map(RunningWorkload::write_counter),
        timeout: options.timeout,
    };
    poller
        .progress
        .println(&format!("created job {} ({})", created.name, created.id));
    if let Some(plan) = &running {
        poller.progress.println(&format!(
            "workload started: {} writes per second on the source",
            plan.writes_per_second()
        ));
    }

    let result = drive_created(&mut poller, options, running).await;
    poller.progress.finish();
    result
}

async fn drive_created(
    poller: &mut Poller<'_>,
    options: &DriveOptions,
    mut running: Option<RunningWorkload>,
) -> anyhow::Result<DriveOutcome> {
    let copied = copy_phase(poller, options).await;
    let (job, pause) = match copied {
        Ok(result) => result,
        Err(error) => {
            // The workload must not outlive the demo's attempt.
            if let Some(workload) = running.take() {
                let _ = workload.stop().await;
            }
            return Err(error);
        }
    };

    let mut workload = None;
    let mut cutover = None;
    let job = if job.mode == Mode::Online && outcome_of(job.state).is_none() {
        let tail = cutover::cut_over(poller, options, running.take()).await?;
        workload = tail.workload;
        cutover = Some(tail.record);
        tail.job
    } else {
        if let Some(running) = running.take() {
            workload = Some(running.stop().await?);
        }
        job
    };

    Ok(DriveOutcome {
        job,
        pause,
        throttled: poller.throttled.clone(),
        elapsed: poller.started.elapsed(),
        workload,
        cutover,
    })
}

/// Polls until the job ends, or, for an online job, until it has replicated with cutover
/// possible for the configured time. Pauses and resumes the job once on the way.
async fn copy_phase(
    poller: &mut Poller<'_>,
    options: &DriveOptions,
) -> anyhow::Result<(JobView, Option<PauseRecord>)> {
    let mut pause = None;
    let mut cutover_possible_since: Option<Instant> = None;
    let mut shown_blockers: Vec<String> = Vec::new();
    loop {
        tokio::time::sleep(options.poll_interval).await;
        let job = poller.poll().await?;
        if outcome_of(job.state).is_some() {
            return Ok((job, pause));
        }
        match job.state {
            // Copying starts while later collections are still being planned, so the job may
            // still report planning when the pause point is reached.
            JobState::Planning | JobState::Copying
                if pause.is_none() && past_pause_point(&job, options.pause_at) =>
            {
                pause = Some(pause_and_resume(poller, &job, options).await?);
                continue;
            }
            _ => {}
        }

        if job.mode == Mode::Online {
            if job.can_cutover {
                let since = *cutover_possible_since.get_or_insert_with(|| {
                    poller.progress.println(&format!(
                        "{:>6.1} s  cutover is possible; replicating under the workload for {} s more",
                        poller.started.elapsed().as_secs_f64(),
                        options.replicate_for.as_secs()
                    ));
                    Instant::now()
                });
                if since.elapsed() >= options.replicate_for {
                    return Ok((job, pause));
                }
            } else {
                cutover_possible_since = None;
                if job.cutover_blockers != shown_blockers {
                    poller.progress.println(&format!(
                        "{:>6.1} s  cutover not possible yet: {}",
                        poller.started.elapsed().as_secs_f64(),
                        job.cutover_blockers.join("; ")
                    ));
                    shown_blockers = job.cutover_blockers.clone();
                }
            }
        }
        poller.check_timeout(&job)?;
    }
}

fn past_pause_point(job: &JobView, pause_at: f64) -> bool {
    // Until every collection has an estimate, the fraction would be of a partial total.
    let all_estimated = job
        .collections
        .iter()
        .all(|c| c.planned || c.documents_estimated > 0);
    all_estimated
        && job.documents_estimated > 0
        && job.documents_copied as f64 >= pause_at * job.documents_estimated as f64
}

/// Pauses the job, waits for `paused`, keeps it paused for the hold time, and resumes it.
async fn pause_and_resume(
    poller: &mut Poller<'_>,
    job: &JobView,
    options: &DriveOptions,
) -> anyhow::Result<PauseRecord> {
    let requested_at = job.documents_copied;
    poller.progress.println(&format!(
        "pausing at {:.1}% ({} documents copied)",
        job.percent, requested_at
    ));
    let sent = Instant::now();
    poller.client.command(&job.id, JobCommand::Pause).await?;

    let paused = loop {
        tokio::time::sleep(options.poll_interval).await;
        let current = poller.poll().await?;
        if current.state == JobState::Paused {
            break current;
        }
        if current.state != JobState::Pausing {
            anyhow::bail!(
                "after pause the job went to {} instead of pausing or paused",
                current.state.as_str()
            );
        }
        if sent.elapsed() > options.timeout {
            anyhow::bail!(
                "the job did not reach paused within {} s",
                options.timeout.as_secs()
            );
        }
    };
    let time_to_pause = sent.elapsed();
    poller.progress.println(&format!(
        "paused after {:.1} s with {} documents copied; holding for {} s",
        time_to_pause.as_secs_f64(),
        paused.documents_copied,
        options.pause_hold.as_secs()
    ));

    let hold_until = Instant::now() + options.pause_hold;
    let mut held = paused.clone();
    while Instant::now() < hold_until {
        tokio::time::sleep(options.poll_interval).await;
        held = poller.poll().await?;
    }
    let record = PauseRecord {
        requested_at,
        time_to_pause,
        at_paused: paused.documents_copied,
        before_resume: held.documents_copied,
    };
    if !record.held_still() {
        poller.progress.println(&format!(
            "WARNING: {} documents were copied while the job was paused",
            record.before_resume - record.at_paused
        ));
    }

    poller.client.command(&job.id, JobCommand::Resume).await?;
    poller.progress.println("resumed");
    tracing::info!(job_id = %job.id, at_paused = record.at_paused, "demo job resumed");
    Ok(record)
}

/// Sums the chunk rows' throttle counters per collection. A failed read keeps the display
/// going with zeros, because the counts are informational.
async fn throttled_per_collection(store: &Store, job: &JobView) -> Vec<u64> {
    let mut totals = vec![0; job.collections.len()];
    match store.chunks_of_job(&job.id).await {
        Ok(chunks) => {
            for chunk in chunks {
                if let Some(total) = totals.get_mut(chunk.value.collection as usize) {
                    *total += chunk.value.throttled;
                }
            }
        }
        Err(error) => {
            tracing::warn!(job_id = %job.id, error = %error, "reading chunk rows for throttle counts failed");
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_accepts_only_completed() {
        assert_eq!(outcome_of(JobState::Completed), Some(true));
        for failed in [
            JobState::VerificationFailed,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            assert_eq!(outcome_of(failed), Some(false), "{}", failed.as_str());
        }
        // A cutover may pass through verifying before it completes.
        for running in [
            JobState::Replicating,
            JobState::CuttingOver,
            JobState::Verifying,
            JobState::Paused,
        ] {
            assert_eq!(outcome_of(running), None, "{}", running.as_str());
        }
    }
}
