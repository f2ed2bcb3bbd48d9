//! Runs one job through the HTTP API: creates it, polls it with live progress, pauses it once
//! part-way and resumes it, and waits for it to complete.

use std::time::{Duration, Instant};

use vcore_migrate::jobs::{JobRequest, JobState};
use vcore_migrate::state::Store;

use crate::api::{ApiClient, JobCommand, JobView};
use crate::progress::JobProgress;

/// When and how long to pause, and how long to wait for the job.
pub struct DriveOptions {
    pub poll_interval: Duration,
    /// Fraction of the estimated documents copied after which the job is paused once.
    pub pause_at: f64,
    /// Time the job stays paused, to show that nothing is copied meanwhile.
    pub pause_hold: Duration,
    /// Maximum time for the whole job, pauses included.
    pub timeout: Duration,
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

/// The job as it ended, and its pause.
pub struct DriveOutcome {
    pub job: JobView,
    pub pause: Option<PauseRecord>,
    /// Throttled source or target round trips per collection, in request order.
    pub throttled: Vec<u64>,
    pub elapsed: Duration,
}

/// Polls the job and draws its progress, with access to the service's chunk rows for the
/// throttling counts that the API does not report.
struct Poller<'a> {
    client: &'a ApiClient,
    store: &'a Store,
    job_id: String,
    progress: JobProgress,
    throttled: Vec<u64>,
}

impl Poller<'_> {
    async fn poll(&mut self) -> anyhow::Result<JobView> {
        let job = self.client.job(&self.job_id).await?;
        self.throttled = throttled_per_collection(self.store, &job).await;
        self.progress.update(&job, self.throttled.iter().sum());
        Ok(job)
    }
}

/// Creates the job described by `request` and runs it to completion.
pub async fn drive(
    client: &ApiClient,
    store: &Store,
    request: &JobRequest,
    options: &DriveOptions,
) -> anyhow::Result<DriveOutcome> {
    let started = Instant::now();
    let created = client.create_job(request).await?;
    tracing::info!(job_id = %created.id, name = %created.name, "demo job created");
    let mut poller = Poller {
        client,
        store,
        job_id: created.id.clone(),
        progress: JobProgress::new(&created),
        throttled: vec![0; created.collections.len()],
    };
    poller
        .progress
        .println(&format!("created job {} ({})", created.name, created.id));

    let mut pause = None;
    let job = loop {
        tokio::time::sleep(options.poll_interval).await;
        let job = poller.poll().await?;
        match job.state {
            JobState::Completed => break job,
            JobState::Failed | JobState::Cancelled | JobState::VerificationFailed => {
                poller.progress.finish();
                anyhow::bail!(
                    "job {} ended in state {}: {}",
                    job.id,
                    job.state.as_str(),
                    job.last_error.as_deref().unwrap_or("no error was recorded")
                );
            }
            // Copying starts while later collections are still being planned, so the job may
            // still report planning when the pause point is reached.
            JobState::Planning | JobState::Copying
                if pause.is_none() && past_pause_point(&job, options.pause_at) =>
            {
                pause = Some(pause_and_resume(&mut poller, &job, options).await?);
            }
            _ => {}
        }
        if started.elapsed() > options.timeout {
            poller.progress.finish();
            anyhow::bail!(
                "job {} did not complete within {} s (state {}, {:.1}%); raise --timeout-seconds \
                 or the source's request units",
                job.id,
                options.timeout.as_secs(),
                job.state.as_str(),
                job.percent
            );
        }
    };
    poller.progress.finish();
    Ok(DriveOutcome {
        job,
        pause,
        throttled: poller.throttled,
        elapsed: started.elapsed(),
    })
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
