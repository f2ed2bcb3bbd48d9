//! Running tasks: the engine, the Azure Functions invocation contract, and the standalone
//! consumers and scheduler loop. Both ways of running call the same task functions.

pub mod engine;
pub mod functions;
pub mod serve;
pub mod standalone;

use tracing::warn;

use crate::copy::plan_task::run_plan_task;
use crate::copy::task::{run_copy_task, CopyError};
use crate::indexes::task::run_index_task;
use crate::queue::{CopyTask, IndexTask, PlanTask, StreamTask, TaskKind, VerifyTask};
use crate::replication::stream_task::run_stream_task;
use crate::replication::ReplicationError;
use crate::verify::{run_verify_task, VerifyError};
use engine::Engine;

/// The queue message a task runs for.
#[derive(Clone, Debug)]
pub struct MessageInfo {
    /// The queue message id; a redelivery of the same message keeps it, a duplicate does not.
    pub id: String,
    /// How many times the queue has delivered this message, this time included.
    pub dequeue_count: u32,
}

/// The outcome of a task run that ended without error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    Completed,
    /// Work remains; a continuation message was sent.
    Continued,
    /// The job was paused or cancelled; the work waits at its checkpoint.
    Stopped,
    /// The message had nothing to do (duplicate, finished work, unknown job). The reason names
    /// which.
    Dropped(String),
}

impl TaskOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskOutcome::Completed => "completed",
            TaskOutcome::Continued => "continued",
            TaskOutcome::Stopped => "stopped",
            TaskOutcome::Dropped(_) => "dropped",
        }
    }

    /// Describes the outcome in one line for logs, with the reason for a dropped message.
    pub fn describe(&self) -> String {
        match self {
            TaskOutcome::Dropped(reason) => format!("dropped: {reason}"),
            other => other.as_str().to_string(),
        }
    }
}

/// A task message that failed; the queue delivers it again.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the message is not a valid {kind} task: {reason}")]
    BadMessage { kind: &'static str, reason: String },
    #[error(transparent)]
    Task(#[from] CopyError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
}

/// Parses a task message body and runs it.
pub async fn run_task(
    engine: &Engine,
    kind: TaskKind,
    body: &str,
    message: &MessageInfo,
) -> Result<TaskOutcome, TaskError> {
    let bad = |e: serde_json::Error| TaskError::BadMessage {
        kind: kind.as_str(),
        reason: e.to_string(),
    };
    match kind {
        TaskKind::Plan => {
            let task: PlanTask = serde_json::from_str(body).map_err(bad)?;
            Ok(run_plan_task(engine, &task, message).await?)
        }
        TaskKind::Copy => {
            let task: CopyTask = serde_json::from_str(body).map_err(bad)?;
            Ok(run_copy_task(engine, &task, message).await?)
        }
        TaskKind::Index => {
            let task: IndexTask = serde_json::from_str(body).map_err(bad)?;
            Ok(run_index_task(engine, &task, message).await?)
        }
        TaskKind::Verify => {
            let task: VerifyTask = serde_json::from_str(body).map_err(bad)?;
            Ok(run_verify_task(engine, &task, message).await?)
        }
        TaskKind::Stream => {
            let task: StreamTask = serde_json::from_str(body).map_err(bad)?;
            Ok(run_stream_task(engine, &task, message).await?)
        }
    }
}

/// Handles a message that the queue gave up on: marks its work failed with the reason.
pub async fn handle_poison(engine: &Engine, kind: TaskKind, body: &str) {
    match kind {
        TaskKind::Copy => {
            let Ok(task) = serde_json::from_str::<CopyTask>(body) else {
                warn!(body_len = body.len(), "unreadable poison message dropped");
                return;
            };
            let reason = "the copy task failed on every delivery and its message was moved to the \
                          poison queue; see earlier errors, then resume the job to retry";
            if let Err(e) = crate::copy::task::mark_chunk_failed(engine, &task, reason, true).await
            {
                warn!(error = %e, job_id = %task.job_id, "could not mark the chunk failed");
            }
        }
        TaskKind::Verify => {
            let Ok(task) = serde_json::from_str::<VerifyTask>(body) else {
                warn!(body_len = body.len(), "unreadable poison message dropped");
                return;
            };
            let reason = "the verify task failed on every delivery and its message was moved to \
                          the poison queue; see earlier errors, then verify the job again";
            if let Err(e) = crate::verify::task::mark_unit_failed(engine, &task, reason, true).await
            {
                warn!(error = %e, job_id = %task.job_id, "could not mark the unit failed");
            }
        }
        TaskKind::Plan => {
            let Ok(task) = serde_json::from_str::<PlanTask>(body) else {
                warn!(body_len = body.len(), "unreadable poison message dropped");
                return;
            };
            if let Err(e) = engine::fail_job(
                engine,
                &task.job_id,
                "planning failed on every delivery and its message was moved to the poison queue; \
                 see the logs, then resume the job to retry",
            )
            .await
            {
                warn!(error = %e, job_id = %task.job_id, "could not mark the job failed");
            }
        }
        TaskKind::Index => {
            let Ok(task) = serde_json::from_str::<IndexTask>(body) else {
                warn!(body_len = body.len(), "unreadable poison message dropped");
                return;
            };
            let reason = "building the collection's indexes failed on every delivery and its \
                          message was moved to the poison queue; see earlier errors";
            crate::indexes::task::mark_failed(engine, &task, reason).await;
        }
        TaskKind::Stream => {
            let Ok(task) = serde_json::from_str::<StreamTask>(body) else {
                warn!(body_len = body.len(), "unreadable poison message dropped");
                return;
            };
            if let Err(e) = crate::replication::stream_lease::handle_poison(engine, &task).await {
                warn!(error = %e, job_id = %task.job_id, "could not mark the job failed");
            }
        }
    }
}
