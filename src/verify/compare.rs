//! Reading both sides of a unit: counts, digests, and the merge that names differing documents.

use std::collections::VecDeque;

use bson::{Bson, Document, RawDocumentBuf};
use mongodb::Collection;
use tokio::sync::mpsc;
use tracing::warn;

use super::digest::SetDigest;
use super::narrow::{id_of, Advance, Merge};
use super::task::{Session, Sides};
use super::VerifyError;
use crate::copy::reader::{spawn_filtered_reader, wait_or_fail, Batch, ReadError};
use crate::copy::{decode_value, encode_value};
use crate::state::{SideDigest, VerifyUnitRecord};

/// Outcome of a comparison step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Finished,
    /// The time budget ran out; the checkpoint is in the unit.
    OutOfTime,
    /// The job was paused or cancelled; the checkpoint is saved.
    Stopped,
}

/// Decision of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Checkpoint {
    Continue,
    OutOfTime,
    Stopped,
}

type Batches = mpsc::Receiver<Result<Batch, ReadError>>;

/// Counts both sides with one `count` each; used by `counts` mode.
pub(super) async fn count_sides(
    session: &mut Session<'_>,
    sides: &Sides,
) -> Result<Step, VerifyError> {
    let filter = sides.scope.filter(None);
    let (source, target) = tokio::try_join!(
        count(&sides.source, filter.clone()),
        count(&sides.target, filter)
    )?;
    session.add_throttled(source.1 + target.1);
    let unit = &mut session.unit.value;
    for (side, documents) in [(&mut unit.source, source.0), (&mut unit.target, target.0)] {
        *side = SideDigest {
            documents,
            done: true,
            ..SideDigest::default()
        };
    }
    unit.matched = Some(source.0 == target.0);
    Ok(Step::Finished)
}

/// Counts the documents `filter` selects, retrying throttled and transient failures; returns
/// the count and the throttled round trips.
async fn count(
    collection: &Collection<RawDocumentBuf>,
    filter: Option<Document>,
) -> Result<(u64, u32), VerifyError> {
    let Some(filter) = filter else {
        return Ok((0, 0));
    };
    let mut attempts = 0;
    let mut throttled = 0;
    loop {
        match collection.count_documents(filter.clone()).await {
            Ok(count) => return Ok((count, throttled)),
            Err(e) => wait_or_fail(&e, &mut attempts, &mut throttled)
                .await
                .map_err(|e| VerifyError::Verify(e.0))?,
        }
    }
}

/// Progress of one side's digest.
struct SideProgress {
    documents: u64,
    bytes: u64,
    digest: SetDigest,
    after: Option<Bson>,
    done: bool,
}

impl SideProgress {
    fn load(stored: &SideDigest) -> Result<SideProgress, VerifyError> {
        let digest = SetDigest::from_hex(&stored.digest)
            .ok_or_else(|| VerifyError::Verify("a stored digest is unreadable".into()))?;
        let after = match &stored.after {
            Some(text) => Some(decode_value(text).ok_or_else(|| {
                VerifyError::Verify("a stored verification checkpoint is unreadable".into())
            })?),
            None => None,
        };
        Ok(SideProgress {
            documents: stored.documents,
            bytes: stored.bytes,
            digest,
            after,
            done: stored.done,
        })
    }

    fn add(&mut self, batch: &Batch) {
        for document in &batch.docs {
            self.digest.add_document(document.as_bytes());
        }
        self.documents += batch.docs.len() as u64;
        self.bytes += batch.bytes;
        self.after = Some(batch.last_id.clone());
    }

    fn store(&self, stored: &mut SideDigest) {
        stored.documents = self.documents;
        stored.bytes = self.bytes;
        stored.digest = self.digest.to_hex();
        stored.after = self.after.as_ref().map(encode_value);
        stored.done = self.done;
    }
}

/// Starts reading one side of the unit after `after`.
fn reader(collection: &Collection<RawDocumentBuf>, sides: &Sides, after: Option<Bson>) -> Batches {
    let scope = sides.scope.clone();
    spawn_filtered_reader(
        collection.clone(),
        move |after| scope.filter(after),
        after,
        sides.batch_size,
    )
}

/// Receives from a reader that is still open; never called on a finished one.
async fn next_batch(batches: &mut Option<Batches>) -> Option<Result<Batch, ReadError>> {
    match batches {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Counts and digests both sides independently, each from its own checkpoint.
pub(super) async fn digest_sides(
    session: &mut Session<'_>,
    sides: &Sides,
) -> Result<Step, VerifyError> {
    let mut source = SideProgress::load(&session.unit.value.source)?;
    let mut target = SideProgress::load(&session.unit.value.target)?;
    let mut source_batches =
        (!source.done).then(|| reader(&sides.source, sides, source.after.clone()));
    let mut target_batches =
        (!target.done).then(|| reader(&sides.target, sides, target.after.clone()));

    loop {
        let (progress, batches, received) = tokio::select! {
            received = next_batch(&mut source_batches), if source_batches.is_some() => {
                (&mut source, &mut source_batches, received)
            }
            received = next_batch(&mut target_batches), if target_batches.is_some() => {
                (&mut target, &mut target_batches, received)
            }
            else => break,
        };
        match received {
            Some(Ok(batch)) => {
                progress.add(&batch);
                session.add_throttled(batch.throttled);
            }
            Some(Err(e)) => return Err(VerifyError::Verify(e.0)),
            None => {
                progress.done = true;
                *batches = None;
            }
        }
        source.store(&mut session.unit.value.source);
        target.store(&mut session.unit.value.target);
        match session.checkpoint().await? {
            Checkpoint::Continue => {}
            Checkpoint::OutOfTime => return Ok(Step::OutOfTime),
            Checkpoint::Stopped => return Ok(Step::Stopped),
        }
    }
    Ok(Step::Finished)
}

/// One side's documents, consumed one at a time.
struct DocumentStream {
    batches: Option<Batches>,
    buffer: VecDeque<RawDocumentBuf>,
}

impl DocumentStream {
    /// Makes sure a head document is buffered unless the side is exhausted; returns the
    /// throttled round trips of what it received.
    async fn fill(&mut self) -> Result<u32, VerifyError> {
        let mut throttled = 0;
        while self.buffer.is_empty() {
            let Some(batches) = self.batches.as_mut() else {
                break;
            };
            match batches.recv().await {
                Some(Ok(batch)) => {
                    throttled += batch.throttled;
                    self.buffer.extend(batch.docs);
                }
                Some(Err(e)) => return Err(VerifyError::Verify(e.0)),
                None => self.batches = None,
            }
        }
        Ok(throttled)
    }

    fn head(&self) -> Option<&bson::RawDocument> {
        self.buffer.front().map(|d| d.as_ref())
    }
}

/// Merges both sides by `_id` from the narrowing checkpoint and records every difference.
pub(super) async fn narrow_sides(
    session: &mut Session<'_>,
    sides: &Sides,
) -> Result<Step, VerifyError> {
    let after = match &session.unit.value.narrow_after {
        Some(text) => Some(decode_value(text).ok_or_else(|| {
            VerifyError::Verify("a stored verification checkpoint is unreadable".into())
        })?),
        None => None,
    };
    let mut source = DocumentStream {
        batches: Some(reader(&sides.source, sides, after.clone())),
        buffer: VecDeque::new(),
    };
    let mut target = DocumentStream {
        batches: Some(reader(&sides.target, sides, after)),
        buffer: VecDeque::new(),
    };
    let unit = &session.unit.value;
    let mut merge = Merge::resume(unit.differences, unit.examples.clone());
    // The last document consumed; every `_id` up to its `_id` has been merged on both sides.
    let mut last: Option<RawDocumentBuf> = None;

    loop {
        let throttled = source.fill().await? + target.fill().await?;
        session.add_throttled(throttled);
        for head in [source.head(), target.head()].into_iter().flatten() {
            if id_of(head).is_none() {
                return Err(VerifyError::Verify("a document has no _id".into()));
            }
        }
        let consumed = match merge.step(source.head(), target.head()) {
            Advance::Neither => break,
            Advance::Source => source.buffer.pop_front(),
            Advance::Target => target.buffer.pop_front(),
            Advance::Both => {
                target.buffer.pop_front();
                source.buffer.pop_front()
            }
        };
        if consumed.is_some() {
            last = consumed;
        }
        if !session.checkpoint_due() {
            continue;
        }
        if merge.is_settled() {
            record_merge(&mut session.unit.value, &merge, last.as_ref())?;
        }
        match session.checkpoint().await? {
            Checkpoint::Continue => {}
            Checkpoint::OutOfTime => {
                // Held documents are settled here, so a later run can start after `last`.
                merge.settle();
                record_merge(&mut session.unit.value, &merge, last.as_ref())?;
                return Ok(Step::OutOfTime);
            }
            Checkpoint::Stopped => return Ok(Step::Stopped),
        }
    }

    merge.settle();
    record_merge(&mut session.unit.value, &merge, last.as_ref())?;
    let differences = merge.counts().total();
    if differences == 0 {
        warn!("the digests differed but merging found no differing document; the data changed between the two reads");
    }
    session.unit.value.matched = Some(differences == 0);
    Ok(Step::Finished)
}

/// Writes the merge's counts, examples and position into the unit.
fn record_merge(
    unit: &mut VerifyUnitRecord,
    merge: &Merge,
    last: Option<&RawDocumentBuf>,
) -> Result<(), VerifyError> {
    unit.differences = merge.counts();
    unit.examples = merge.examples().to_vec();
    if let Some(document) = last {
        let id =
            id_of(document).ok_or_else(|| VerifyError::Verify("a document has no _id".into()))?;
        let id = Bson::try_from(id.to_raw_bson())
            .map_err(|e| VerifyError::Verify(format!("unreadable _id: {e}")))?;
        unit.narrow_after = Some(encode_value(&id));
    }
    Ok(())
}
