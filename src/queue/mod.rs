//! Task messages on Azure Queue Storage.
//!
//! Messages carry ids only (job id, collection index, chunk index), never documents or `_id`
//! bounds, so they stay far below the 64 KiB queue limit whatever the data looks like.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::storage::{QueueClient, StorageAccount, StorageError};

/// The kinds of task, one queue and one Functions trigger each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Plan,
    Copy,
    /// Builds a collection's after-copy indexes.
    Index,
    /// Compares chunks of the target with the source.
    Verify,
    /// Replicates one collection's change stream.
    Stream,
}

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Plan,
        TaskKind::Copy,
        TaskKind::Index,
        TaskKind::Verify,
        TaskKind::Stream,
    ];

    /// Queue name suffix, also the Functions function name without `-task`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Plan => "plan",
            TaskKind::Copy => "copy",
            TaskKind::Index => "index",
            TaskKind::Verify => "verify",
            TaskKind::Stream => "stream",
        }
    }

    /// The function (folder under `handlers/`) that the Functions host triggers for this queue.
    pub fn function_name(self) -> &'static str {
        match self {
            TaskKind::Plan => "plan-task",
            TaskKind::Copy => "copy-task",
            TaskKind::Index => "index-task",
            TaskKind::Verify => "verify-task",
            TaskKind::Stream => "stream-task",
        }
    }

    pub fn from_function_name(name: &str) -> Option<TaskKind> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.function_name() == name)
    }
}

/// Plans the collections of a job that are not planned yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanTask {
    pub job_id: String,
}

/// Copies one chunk, from its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyTask {
    pub job_id: String,
    pub collection: u32,
    pub chunk: u32,
}

/// Builds the after-copy indexes of one collection, from the first index not built yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexTask {
    pub job_id: String,
    pub collection: u32,
}

/// Replicates one collection's change stream, from its saved position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamTask {
    pub job_id: String,
    pub collection: u32,
}

/// Compares one verification unit (a chunk's range, or a collection's remainder) of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyTask {
    pub job_id: String,
    pub collection: u32,
    /// The unit index: a copy chunk index, or the remainder's.
    pub unit: u32,
    /// The verification run the message belongs to; messages of earlier runs are dropped.
    pub run: u32,
}

/// The task queues of one deployment.
#[derive(Clone)]
pub struct TaskQueues {
    plan: QueueClient,
    copy: QueueClient,
    index: QueueClient,
    /// Wakes this process's idle consumers of a queue when this process sends to it, so a
    /// standalone service does not wait for its next poll. Other processes still poll.
    wake: Arc<HashMap<TaskKind, Notify>>,
    verify: QueueClient,
    stream: QueueClient,
}

impl TaskQueues {
    pub fn new(account: &StorageAccount, prefix: &str) -> Self {
        TaskQueues {
            plan: account.queue(&queue_name(prefix, TaskKind::Plan)),
            copy: account.queue(&queue_name(prefix, TaskKind::Copy)),
            index: account.queue(&queue_name(prefix, TaskKind::Index)),
            verify: account.queue(&queue_name(prefix, TaskKind::Verify)),
            stream: account.queue(&queue_name(prefix, TaskKind::Stream)),
            wake: Arc::new(
                TaskKind::ALL
                    .into_iter()
                    .map(|k| (k, Notify::new()))
                    .collect(),
            ),
        }
    }

    /// Wakes the idle consumers of `kind` in this process.
    pub fn wake(&self, kind: TaskKind) {
        if let Some(notify) = self.wake.get(&kind) {
            notify.notify_waiters();
        }
    }

    /// Waits until this process sends a message of `kind`.
    pub async fn sent(&self, kind: TaskKind) {
        match self.wake.get(&kind) {
            Some(notify) => notify.notified().await,
            None => std::future::pending().await,
        }
    }

    pub fn client(&self, kind: TaskKind) -> &QueueClient {
        match kind {
            TaskKind::Plan => &self.plan,
            TaskKind::Copy => &self.copy,
            TaskKind::Index => &self.index,
            TaskKind::Verify => &self.verify,
            TaskKind::Stream => &self.stream,
        }
    }

    pub async fn ensure_queues(&self) -> Result<(), StorageError> {
        self.plan.create_if_not_exists().await?;
        self.copy.create_if_not_exists().await?;
        self.index.create_if_not_exists().await?;
        self.verify.create_if_not_exists().await?;
        self.stream.create_if_not_exists().await?;
        Ok(())
    }

    pub async fn send_plan(&self, task: &PlanTask) -> Result<(), StorageError> {
        self.send(TaskKind::Plan, &to_json(task), None).await
    }

    pub async fn send_copy(
        &self,
        task: &CopyTask,
        delay: Option<Duration>,
    ) -> Result<(), StorageError> {
        self.send(TaskKind::Copy, &to_json(task), delay).await
    }

    pub async fn send_index(
        &self,
        task: &IndexTask,
        delay: Option<Duration>,
    ) -> Result<(), StorageError> {
        self.send(TaskKind::Index, &to_json(task), delay).await
    }

    /// Sends a message and wakes this process's idle consumers of its queue.
    async fn send(
        &self,
        kind: TaskKind,
        text: &str,
        delay: Option<Duration>,
    ) -> Result<(), StorageError> {
        self.client(kind).send(text, delay).await?;
        if delay.is_none() {
            self.wake(kind);
        }
        Ok(())
    }

    pub async fn send_verify(
        &self,
        task: &VerifyTask,
        delay: Option<Duration>,
    ) -> Result<(), StorageError> {
        self.send(TaskKind::Verify, &to_json(task), delay).await
    }

    pub async fn send_stream(
        &self,
        task: &StreamTask,
        delay: Option<Duration>,
    ) -> Result<(), StorageError> {
        self.send(TaskKind::Stream, &to_json(task), delay).await
    }
}

/// Returns the queue name for a task kind: `<prefix>-<kind>`.
pub fn queue_name(prefix: &str, kind: TaskKind) -> String {
    format!("{prefix}-{}", kind.as_str())
}

/// Returns the queue the Functions host moves a message to after its last failed attempt.
pub fn poison_queue_name(prefix: &str, kind: TaskKind) -> String {
    format!("{}-poison", queue_name(prefix, kind))
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_task_json_is_small_and_stable() {
        let task = CopyTask {
            job_id: "0b7c6a8e-1f2d-4c3b-9a8e-7d6c5b4a3f2e".into(),
            collection: 3,
            chunk: 1200,
        };
        let json = to_json(&task);
        assert_eq!(
            json,
            r#"{"jobId":"0b7c6a8e-1f2d-4c3b-9a8e-7d6c5b4a3f2e","collection":3,"chunk":1200}"#
        );
        assert!(json.len() < 200);
    }

    #[test]
    fn function_names_map_to_kinds() {
        for kind in TaskKind::ALL {
            assert_eq!(
                TaskKind::from_function_name(kind.function_name()),
                Some(kind)
            );
        }
        assert_eq!(queue_name("vcm", TaskKind::Copy), "vcm-copy");
        assert_eq!(poison_queue_name("vcm", TaskKind::Copy), "vcm-copy-poison");
    }
}
