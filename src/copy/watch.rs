//! A background reader of the job row that signals a running task when its job stops.
//!
//! Copy and plan tasks loop over source reads and target writes. Reading the job row between
//! every two round trips would cost a Table Storage call each, and would miss a pause that
//! arrives while a round trip waits out throttling. The watcher reads the row on its own
//! schedule instead, and a task either checks [`JobWatcher::stop_requested`] at a boundary or
//! races a wait against [`JobWatcher::stopped`].

use std::time::Duration;

use tracing::{warn, Instrument};

use crate::jobs::JobState;
use crate::runtime::engine::Engine;

/// How often a watcher reads the job row.
const JOB_STATE_INTERVAL: Duration = Duration::from_millis(250);

/// Watches one job's state while a task runs; dropping it ends the watch.
pub(crate) struct JobWatcher {
    stop: tokio::sync::watch::Receiver<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl JobWatcher {
    /// Starts watching `job_id`. The watcher signals a stop once `runs` rejects the job's state,
    /// or once the job is gone.
    pub(crate) fn start(engine: &Engine, job_id: &str, runs: fn(JobState) -> bool) -> JobWatcher {
        let (flag, stop) = tokio::sync::watch::channel(false);
        let engine = engine.clone();
        let job_id = job_id.to_string();
        let handle = tokio::spawn(
            async move {
                let mut failing = false;
                loop {
                    tokio::time::sleep(JOB_STATE_INTERVAL).await;
                    match engine.store.job(&job_id).await {
                        Ok(Some(job)) if runs(job.value.state) => failing = false,
                        Ok(_) => {
                            flag.send_replace(true);
                            return;
                        }
                        // The task goes on, because the next read may succeed. If the store is
                        // gone for good, the task's own checkpoint saves fail. One warning per
                        // run of failures keeps the log readable.
                        Err(e) if !failing => {
                            failing = true;
                            warn!(error = %e, "reading the job state failed; retrying");
                        }
                        Err(_) => {}
                    }
                }
            }
            .in_current_span(),
        );
        JobWatcher { stop, handle }
    }

    /// Returns true once the job has left the states the task runs in.
    pub(crate) fn stop_requested(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes once the job has left the states the task runs in.
    pub(crate) async fn stopped(&self) {
        let mut stop = self.stop.clone();
        // An error means the watcher ended without a stop, so this never completes.
        if stop.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for JobWatcher {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
