//! Sends the workload's writes to the source through the driver, one at a time at a fixed rate,
//! until it is stopped.
//!
//! Writes go one after another, so the writes to one document reach the source in the order the
//! model decided them. A throttled write (Cosmos DB 16500) changed nothing on the source, so it
//! is sent again after the server's `RetryAfterMs` hint. Any other error stops the workload,
//! because the model could no longer tell what the source holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use mongodb::{Client, Collection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{KindCounts, WorkloadModel, Write, WriteKind};

/// Maximum time one write is retried while the source throttles it.
const MAX_THROTTLED_TIME: Duration = Duration::from_secs(60);

/// Summary of a stopped workload: its writes and the state they left on the source.
pub struct WorkloadReport {
    /// The state the source must now be in.
    pub model: WorkloadModel,
    /// Acknowledged writes per collection, in the model's collection order.
    pub counts: Vec<KindCounts>,
    /// Attempts the source throttled and that were sent again.
    pub throttled: u64,
    /// Updates, replaces and deletes that matched no document, although the model expected one.
    pub unmatched: u64,
    pub writes_per_second_requested: f64,
    pub elapsed: Duration,
    /// The error that stopped the workload early, if one did.
    pub error: Option<String>,
}

impl WorkloadReport {
    /// Writes of every kind and collection.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(KindCounts::total).sum()
    }

    /// Writes of every collection by kind.
    pub fn by_kind(&self) -> KindCounts {
        let mut sum = KindCounts::default();
        for counts in &self.counts {
            for (total, count) in sum.0.iter_mut().zip(counts.0) {
                *total += count;
            }
        }
        sum
    }
}

/// A workload that is sending writes.
pub struct RunningWorkload {
    stop: watch::Sender<bool>,
    task: JoinHandle<WorkloadReport>,
    writes: Arc<AtomicU64>,
    writes_per_second: f64,
}

impl RunningWorkload {
    /// Returns the counter of writes acknowledged so far, for progress displays.
    pub fn write_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.writes)
    }

    pub fn writes_per_second(&self) -> f64 {
        self.writes_per_second
    }

    /// Stops the workload after the write in flight and returns what it did.
    pub async fn stop(self) -> anyhow::Result<WorkloadReport> {
        // The task also stops when the sender is gone, so a failed send changes nothing.
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("the workload task failed: {e}"))
    }
}

/// Starts sending `model`'s writes to the source behind `client`, `writes_per_second` of them
/// per second at most.
pub fn start(model: WorkloadModel, client: &Client, writes_per_second: f64) -> RunningWorkload {
    let collections = model
        .collections()
        .iter()
        .map(|c| {
            client
                .database(&c.database)
                .collection::<Document>(&c.collection)
        })
        .collect();
    let (stop, stopped) = watch::channel(false);
    let writes = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(run(
        model,
        collections,
        writes_per_second,
        stopped,
        Arc::clone(&writes),
    ));
    RunningWorkload {
        stop,
        task,
        writes,
        writes_per_second,
    }
}

async fn run(
    mut model: WorkloadModel,
    collections: Vec<Collection<Document>>,
    writes_per_second: f64,
    mut stopped: watch::Receiver<bool>,
    writes: Arc<AtomicU64>,
) -> WorkloadReport {
    let started = Instant::now();
    let mut counts = vec![KindCounts::default(); collections.len()];
    let mut throttled = 0;
    let mut unmatched = 0;
    let mut failure = None;
    tracing::info!(writes_per_second, "workload started");

    // After a throttled write the missed ticks are skipped rather than sent in a burst, so the
    // rate never goes above the one requested.
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / writes_per_second));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            _ = ticker.tick() => {}
        }
        let write = model.next_write();
        match send(&collections[write.collection], &write, &mut throttled).await {
            Ok(matched) => {
                counts[write.collection].add(write.kind);
                if !matched {
                    unmatched += 1;
                    tracing::warn!(
                        sequence = write.sequence,
                        kind = write.kind.label(),
                        id = %write.id,
                        "workload write matched no document"
                    );
                }
                writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                let error = format!(
                    "write {} ({} of _id {} in {}) failed: {}",
                    write.sequence,
                    write.kind.label(),
                    write.id,
                    collections[write.collection].namespace(),
                    vcore_migrate::mongo::describe(&error)
                );
                tracing::error!(error = %error, "workload stopped");
                failure = Some(error);
                break;
            }
        }
    }

    let report = WorkloadReport {
        model,
        counts,
        throttled,
        unmatched,
        writes_per_second_requested: writes_per_second,
        elapsed: started.elapsed(),
        error: failure,
    };
    tracing::info!(
        writes = report.total(),
        throttled = report.throttled,
        unmatched = report.unmatched,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "workload stopped"
    );
    report
}

/// Sends one write, again after each throttle, and returns whether it matched a document (always
/// true for an insert).
async fn send(
    collection: &Collection<Document>,
    write: &Write,
    throttled: &mut u64,
) -> mongodb::error::Result<bool> {
    let first_attempt = Instant::now();
    loop {
        match send_once(collection, write).await {
            Err(error) => match vcore_migrate::mongo::throttle_delay(&error) {
                Some(delay) if first_attempt.elapsed() < MAX_THROTTLED_TIME => {
                    *throttled += 1;
                    tokio::time::sleep(delay.max(Duration::from_millis(1))).await;
                }
                _ => return Err(error),
            },
            result => return result,
        }
    }
}

async fn send_once(
    collection: &Collection<Document>,
    write: &Write,
) -> mongodb::error::Result<bool> {
    let filter = doc! { "_id": write.id.clone() };
    let body = || write.body.clone().unwrap_or_default();
    match write.kind {
        WriteKind::Insert => {
            collection.insert_one(body()).await?;
            Ok(true)
        }
        WriteKind::Set | WriteKind::Increment => {
            let result = collection.update_one(filter, body()).await?;
            Ok(result.matched_count == 1)
        }
        WriteKind::Replace => {
            let result = collection.replace_one(filter, body()).await?;
            Ok(result.matched_count == 1)
        }
        WriteKind::Delete => {
            let result = collection.delete_one(filter).await?;
            Ok(result.deleted_count == 1)
        }
    }
}
