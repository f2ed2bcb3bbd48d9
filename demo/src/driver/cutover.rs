//! The end of an online job: stop the workload, request cutover, follow the drain until the job
//! ends, and make sure the service verified the target.

use std::time::{Duration, Instant};

use vcore_migrate::jobs::JobState;

use super::{outcome_of, DriveOptions, Poller};
use crate::api::{JobCommand, JobView};
use crate::progress::replication_line;
use crate::workload::runner::{RunningWorkload, WorkloadReport};

/// Time between status lines while the cutover drains.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// Figures of the cutover.
pub struct CutoverRecord {
    /// Largest replication lag of any collection just before the request.
    pub lag_at_request: Option<f64>,
    /// Change events applied just before the request.
    pub events_at_request: u64,
    /// Time from the request until the job left `cuttingOver`.
    pub drained_in: Option<Duration>,
    /// Time from the request until the job ended.
    pub ended_in: Duration,
    /// Time of the verification the demo requested because the cutover ran none itself.
    pub extra_verification: Option<Duration>,
}

/// The job after its cutover, with the workload's report.
pub(super) struct CutoverOutcome {
    pub job: JobView,
    pub workload: Option<WorkloadReport>,
    pub record: CutoverRecord,
}

/// Stops the workload, requests cutover and waits for the job to end.
pub(super) async fn cut_over(
    poller: &mut Poller<'_>,
    options: &DriveOptions,
    running: Option<RunningWorkload>,
) -> anyhow::Result<CutoverOutcome> {
    // Cutover assumes the application stopped writing, so the workload stops first.
    let workload = match running {
        Some(running) => Some(running.stop().await?),
        None => None,
    };
    poller.workload_writes = None;
    if let Some(report) = &workload {
        poller.progress.println(&format!(
            "{:>6.1} s  workload stopped after {} writes in {:.1} s",
            poller.started.elapsed().as_secs_f64(),
            report.total(),
            report.elapsed.as_secs_f64()
        ));
        if let Some(error) = &report.error {
            poller
                .progress
                .println(&format!("WARNING: the workload stopped early: {error}"));
        }
    }

    let before = poller.poll().await?;
    let lag_at_request = before.replication.as_ref().and_then(|r| r.lag_seconds);
    let events_at_request = before.replication.as_ref().map_or(0, |r| r.events_applied);
    poller.progress.println(&format!(
        "{:>6.1} s  requesting cutover: {}",
        poller.started.elapsed().as_secs_f64(),
        replication_line(&before)
    ));
    let requested = Instant::now();
    poller
        .client
        .command(&before.id, JobCommand::Cutover)
        .await?;
    tracing::info!(job_id = %before.id, lag_seconds = ?lag_at_request, events_at_request, "cutover requested");

    let mut drained_in = None;
    let mut last_status = Instant::now();
    let job = loop {
        tokio::time::sleep(options.poll_interval).await;
        let job = poller.poll().await?;
        if drained_in.is_none() && job.state != JobState::CuttingOver {
            drained_in = Some(requested.elapsed());
        }
        if outcome_of(job.state).is_some() {
            break job;
        }
        if last_status.elapsed() >= STATUS_INTERVAL {
            last_status = Instant::now();
            poller.progress.println(&format!(
                "{:>6.1} s  {}: {}",
                poller.started.elapsed().as_secs_f64(),
                job.state.as_str(),
                replication_line(&job)
            ));
        }
        poller.check_timeout(&job)?;
    };
    let ended_in = requested.elapsed();
    poller.progress.println(&format!(
        "{:>6.1} s  cutover ended in {:.1} s: {}",
        poller.started.elapsed().as_secs_f64(),
        ended_in.as_secs_f64(),
        replication_line(&job)
    ));

    let (job, extra_verification) = if job.state == JobState::Completed {
        ensure_verified(poller, options, job).await?
    } else {
        (job, None)
    };
    Ok(CutoverOutcome {
        job,
        workload,
        record: CutoverRecord {
            lag_at_request,
            events_at_request,
            drained_in,
            ended_in,
            extra_verification,
        },
    })
}

/// Returns the completed job with a verification of the target after its cutover. When the
/// cutover did not verify, a verification is requested and awaited, and its time returned.
async fn ensure_verified(
    poller: &mut Poller<'_>,
    options: &DriveOptions,
    job: JobView,
) -> anyhow::Result<(JobView, Option<Duration>)> {
    let report = poller.client.verification(&job.id).await?;
    if report.trigger.as_deref() == Some("cutover") {
        return Ok((job, None));
    }
    poller.progress.println(&format!(
        "{:>6.1} s  the cutover ran no verification (latest run: {}); requesting one",
        poller.started.elapsed().as_secs_f64(),
        report.trigger.as_deref().unwrap_or("none")
    ));
    let requested = Instant::now();
    poller.client.verify(&job.id).await?;
    loop {
        tokio::time::sleep(options.poll_interval).await;
        let job = poller.poll().await?;
        if outcome_of(job.state).is_some() {
            return Ok((job, Some(requested.elapsed())));
        }
        poller.check_timeout(&job)?;
    }
}
