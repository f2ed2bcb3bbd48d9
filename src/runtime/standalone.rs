//! Standalone mode: in-process consumers for every task queue and a scheduler loop, against the
//! same storage account the Functions host would use.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::engine::{Engine, MAX_DEQUEUE_COUNT};
use super::{handle_poison, run_task, MessageInfo};
use crate::queue::{poison_queue_name, TaskKind};
use crate::storage::QueueMessage;

/// Minimum number of stream consumers in standalone mode; collections beyond this many
/// replicate in turns.
const STREAM_CONSUMERS: usize = 8;

/// Starts the consumers and the scheduler; they stop when `shutdown` turns true, between
/// messages (a task that is running finishes its current batch and checkpoint first).
pub fn spawn_workers(
    engine: Engine,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for kind in TaskKind::ALL {
        let consumers = match kind {
            TaskKind::Plan | TaskKind::Index => 1,
            TaskKind::Copy | TaskKind::Verify => engine.settings.worker_concurrency,
            // A stream task keeps its consumer for its whole time budget, one per replicating
            // collection, so streams get their own, larger pool.
            TaskKind::Stream => engine.settings.worker_concurrency.max(STREAM_CONSUMERS),
        };
        for worker in 0..consumers {
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            handles.push(tokio::spawn(async move {
                consume(engine, kind, worker, shutdown).await;
            }));
        }
    }
    let engine_for_scheduler = engine.clone();
    handles.push(tokio::spawn(async move {
        schedule(engine_for_scheduler, shutdown).await;
    }));
    handles
}

async fn consume(
    engine: Engine,
    kind: TaskKind,
    worker: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(queue = kind.as_str(), worker, "queue consumer started");
    let queue = engine.queues.client(kind).clone();
    // The message stays invisible while its task runs: the time budget plus a margin.
    let visibility = engine.settings.task_time_budget + Duration::from_secs(60);
    let mut idle = Duration::from_millis(50);
    while !*shutdown.borrow() {
        let messages = match queue.receive(1, visibility).await {
            Ok(m) => m,
            Err(e) => {
                warn!(queue = kind.as_str(), error = %e, "receiving from the queue failed; retrying");
                sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await;
                continue;
            }
        };
        let Some(message) = messages.into_iter().next() else {
            tokio::select! {
                _ = sleep_or_shutdown(idle, &mut shutdown) => {}
                _ = engine.queues.sent(kind) => {}
            }
            idle = (idle * 2).min(Duration::from_millis(500));
            continue;
        };
        idle = Duration::from_millis(50);
        handle_message(&engine, kind, &message).await;
    }
    info!(queue = kind.as_str(), worker, "queue consumer stopped");
}

async fn handle_message(engine: &Engine, kind: TaskKind, message: &QueueMessage) {
    let queue = engine.queues.client(kind);
    if message.dequeue_count > MAX_DEQUEUE_COUNT {
        move_to_poison(engine, kind, message).await;
        return;
    }
    let info = MessageInfo {
        id: message.id.clone(),
        dequeue_count: message.dequeue_count,
    };
    match run_task(engine, kind, &message.text, &info).await {
        Ok(_) => {
            if let Err(e) = queue.delete(message).await {
                warn!(queue = kind.as_str(), error = %e, "deleting a finished message failed; a redelivery will be dropped as a duplicate");
            }
        }
        Err(e) => {
            error!(queue = kind.as_str(), attempt = message.dequeue_count, error = %e, "task failed");
            if message.dequeue_count >= MAX_DEQUEUE_COUNT {
                move_to_poison(engine, kind, message).await;
            } else {
                // Make the message visible again after a short pause instead of the full
                // visibility timeout, as the Functions host does with its retry delay.
                let delay = Duration::from_secs(2u64.pow(message.dequeue_count.min(5)))
                    .min(crate::runtime::engine::MAX_REDELIVERY_DELAY);
                if let Err(e) = queue.extend(message, delay).await {
                    warn!(queue = kind.as_str(), error = %e, "could not shorten the retry delay");
                }
            }
        }
    }
}

/// Copies a message to `<queue>-poison` and removes it from its queue, as the Functions host
/// does; the scheduler's poison sweep then records the failure on the job.
async fn move_to_poison(engine: &Engine, kind: TaskKind, message: &QueueMessage) {
    let poison = engine.poison_queue(kind);
    if let Err(e) = poison.create_if_not_exists().await {
        warn!(error = %e, "creating the poison queue failed");
        return;
    }
    match poison.send(&message.text, None).await {
        Ok(()) => {
            let _ = engine.queues.client(kind).delete(message).await;
            warn!(
                queue = kind.as_str(),
                attempts = message.dequeue_count,
                "message moved to the poison queue"
            );
        }
        Err(e) => warn!(error = %e, "moving a message to the poison queue failed"),
    }
}

async fn schedule(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    info!(
        interval_s = engine.scheduler_interval().as_secs(),
        "scheduler started"
    );
    while !*shutdown.borrow() {
        if let Err(e) = engine.schedule_once().await {
            warn!(error = %e, "scheduler pass failed; the next pass retries");
        }
        sleep_or_shutdown(engine.scheduler_interval(), &mut shutdown).await;
    }
    info!("scheduler stopped");
}

async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
}

/// Name of a task kind's poison queue for this deployment.
pub fn poison_name(engine: &Engine, kind: TaskKind) -> String {
    poison_queue_name(&engine.settings.storage_prefix, kind)
}

/// Drains the poison queues and marks the work of each message failed.
pub async fn sweep_poison(engine: &Engine) {
    for kind in TaskKind::ALL {
        let poison = engine.poison_queue(kind);
        let messages = match poison.receive(32, Duration::from_secs(60)).await {
            Ok(m) => m,
            // The queue exists only once the host or a consumer moved a message there.
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => {
                warn!(queue = %poison_name(engine, kind), error = %e, "reading the poison queue failed");
                continue;
            }
        };
        for message in messages {
            handle_poison(engine, kind, &message.text).await;
            let _ = poison.delete(&message).await;
        }
    }
}
