//! Job state on Azure Table Storage, with ETag concurrency.
//!
//! Five tables, all named from the storage prefix:
//! - `<prefix>jobs`: one row per job (partition `job`, row the job id);
//! - `<prefix>jobnames`: one row per job name, inserted first, so names stay unique;
//! - `<prefix>collections`: one row per collection of a job (partition the job id);
//! - `<prefix>chunks`: one row per chunk (partition `<job id>-<collection index>`);
//! - `<prefix>verify`: one row per verification unit (partitioned like chunks).
//! - `<prefix>streams`: one change-stream row per collection of an online job (partition the job
//!   id).
//!
//! Each row stores its record as JSON in `Data` beside a `SchemaVersion`, plus a few plain
//! columns for filtering. Every change is a read-modify-write with `If-Match`; a 412 surfaces as
//! [`StoreError::Conflict`] and the caller re-reads and decides again. Secret values are never
//! stored: jobs hold only credential references.

mod records;
mod streams;
mod table;
mod verify;

pub use records::{ChunkRecord, ChunkState, CollectionRecord, CollectionState, JobRecord};
pub use streams::{
    ClusterTime, CutoverMark, ReconcilePass, ReconcileReason, ReconcileRecord, StreamRecord,
    StreamState,
};
pub use table::{StoreError, Versioned};
pub use verify::{
    Difference, DifferenceCounts, DifferenceKind, RunState, RunTrigger, SideDigest, UnitPhase,
    UnitScope, VerificationRun, VerifyUnitRecord, REMAINDER_UNIT,
};

use crate::storage::{StorageAccount, TableClient};
use table::JsonTable;

/// The schema version written into every row; readers accept every version up to this one.
pub const SCHEMA_VERSION: i64 = 1;

const JOB_PARTITION: &str = "job";
const NAME_PARTITION: &str = "name";

/// Job, collection and chunk records.
#[derive(Clone)]
pub struct Store {
    jobs: JsonTable,
    names: TableClient,
    collections: JsonTable,
    chunks: JsonTable,
    verify: JsonTable,
    streams: JsonTable,
}

impl Store {
    pub fn new(account: &StorageAccount, prefix: &str) -> Self {
        Store {
            jobs: JsonTable::new(account.table(&format!("{prefix}jobs"))),
            names: account.table(&format!("{prefix}jobnames")),
            collections: JsonTable::new(account.table(&format!("{prefix}collections"))),
            chunks: JsonTable::new(account.table(&format!("{prefix}chunks"))),
            verify: JsonTable::new(account.table(&format!("{prefix}verify"))),
            streams: JsonTable::new(account.table(&format!("{prefix}streams"))),
        }
    }

    /// Creates the tables if they do not exist yet.
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        self.jobs.client().create_if_not_exists().await?;
        self.names.create_if_not_exists().await?;
        self.collections.client().create_if_not_exists().await?;
        self.chunks.client().create_if_not_exists().await?;
        self.verify.client().create_if_not_exists().await?;
        self.streams.client().create_if_not_exists().await?;
        Ok(())
    }

    /// Stores a new job and its collections; fails with [`StoreError::NameTaken`] when another
    /// job has the name.
    pub async fn create_job(
        &self,
        job: &JobRecord,
        collections: &[CollectionRecord],
    ) -> Result<(), StoreError> {
        let mut name_row = crate::storage::Entity::new(NAME_PARTITION, encode_key(&job.name));
        name_row.set_str("JobId", &job.id);
        name_row.set_i64("SchemaVersion", SCHEMA_VERSION);
        match self.names.insert(&name_row).await {
            Ok(_) => {}
            Err(crate::storage::StorageError::Conflict) => {
                return Err(StoreError::NameTaken(job.name.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        let rows = async {
            for collection in collections {
                self.collections
                    .insert(
                        &job.id,
                        &collection_row_key(collection.index),
                        collection,
                        &[],
                    )
                    .await?;
            }
            self.jobs
                .insert(
                    JOB_PARTITION,
                    &job.id,
                    job,
                    &[("State", job.state.as_str())],
                )
                .await
        };
        if let Err(error) = rows.await {
            // Without its job row the name would stay taken by a job that no listing shows. Collection
            // rows already written stay behind, keyed by a job id that nothing refers to.
            if let Err(e) = self
                .names
                .delete(
                    NAME_PARTITION,
                    &name_row.row_key,
                    crate::storage::IfMatch::Any,
                )
                .await
            {
                tracing::warn!(job_id = %job.id, error = %e, "releasing the name of a job that was not created failed");
            }
            return Err(error);
        }
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<Option<Versioned<JobRecord>>, StoreError> {
        if !is_plain_key(id) {
            return Ok(None);
        }
        self.jobs.get(JOB_PARTITION, id).await
    }

    pub async fn jobs(&self) -> Result<Vec<Versioned<JobRecord>>, StoreError> {
        self.jobs.query_partition(JOB_PARTITION).await
    }

    /// Replaces a job row if no other writer changed it since it was read.
    pub async fn replace_job(&self, job: &Versioned<JobRecord>) -> Result<String, StoreError> {
        self.jobs
            .replace(
                JOB_PARTITION,
                &job.value.id,
                &job.value,
                &[("State", job.value.state.as_str())],
                &job.etag,
            )
            .await
    }

    pub async fn collections(
        &self,
        job_id: &str,
    ) -> Result<Vec<Versioned<CollectionRecord>>, StoreError> {
        self.collections.query_partition(job_id).await
    }

    pub async fn collection(
        &self,
        job_id: &str,
        index: u32,
    ) -> Result<Option<Versioned<CollectionRecord>>, StoreError> {
        self.collections
            .get(job_id, &collection_row_key(index))
            .await
    }

    pub async fn replace_collection(
        &self,
        job_id: &str,
        collection: &Versioned<CollectionRecord>,
    ) -> Result<String, StoreError> {
        self.collections
            .replace(
                job_id,
                &collection_row_key(collection.value.index),
                &collection.value,
                &[],
                &collection.etag,
            )
            .await
    }

    /// Stores new chunk rows; a row that already exists (a planning step replayed after a crash)
    /// is left as it is.
    pub async fn insert_chunks(&self, chunks: &[ChunkRecord]) -> Result<(), StoreError> {
        for chunk in chunks {
            let partition = chunk_partition(&chunk.job_id, chunk.collection);
            match self
                .chunks
                .insert(
                    &partition,
                    &chunk_row_key(chunk.index),
                    chunk,
                    &[("State", chunk.state.as_str())],
                )
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn chunk(
        &self,
        job_id: &str,
        collection: u32,
        index: u32,
    ) -> Result<Option<Versioned<ChunkRecord>>, StoreError> {
        if !is_plain_key(job_id) {
            return Ok(None);
        }
        self.chunks
            .get(&chunk_partition(job_id, collection), &chunk_row_key(index))
            .await
    }

    pub async fn chunks_of_collection(
        &self,
        job_id: &str,
        collection: u32,
    ) -> Result<Vec<Versioned<ChunkRecord>>, StoreError> {
        self.chunks
            .query_partition(&chunk_partition(job_id, collection))
            .await
    }

    /// Returns every chunk of a job, across its collections.
    pub async fn chunks_of_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<Versioned<ChunkRecord>>, StoreError> {
        // Chunk partitions are `<job id>-<n>`; '.' follows '-' in ASCII, so this range holds
        // exactly this job's partitions.
        let filter = format!("PartitionKey ge '{job_id}-' and PartitionKey lt '{job_id}.'");
        self.chunks.query(&filter).await
    }

    pub async fn replace_chunk(
        &self,
        chunk: &Versioned<ChunkRecord>,
    ) -> Result<String, StoreError> {
        let c = &chunk.value;
        self.chunks
            .replace(
                &chunk_partition(&c.job_id, c.collection),
                &chunk_row_key(c.index),
                c,
                &[("State", c.state.as_str())],
                &chunk.etag,
            )
            .await
    }
}

fn collection_row_key(index: u32) -> String {
    format!("{index:05}")
}

fn chunk_partition(job_id: &str, collection: u32) -> String {
    format!("{job_id}-{collection:05}")
}

fn chunk_row_key(index: u32) -> String {
    format!("{index:07}")
}

/// Job ids are UUIDs the service makes; anything else in a URL is not a job.
fn is_plain_key(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Encodes free text (a job name) as a Table key: characters Table keys forbid or that could be
/// confused (`/ \ # ?`, control characters, `%`) become `%XX` of their UTF-8 bytes.
pub fn encode_key(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let forbidden = matches!(c, '/' | '\\' | '#' | '?' | '%' | '\'') || c.is_control();
        if forbidden {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_removes_forbidden_characters() {
        let encoded = encode_key("a/b\\c#d?e%f'g\u{7f}h\u{85}");
        for c in ['/', '\\', '#', '?', '\'', '\u{7f}', '\u{85}'] {
            assert!(!encoded.contains(c), "{c:?} left in {encoded}");
        }
        assert_eq!(encode_key("plain name"), "plain name");
    }

    #[test]
    fn key_encoding_is_injective_for_percent() {
        assert_ne!(encode_key("%2F"), encode_key("/"));
    }

    #[test]
    fn plain_key_check() {
        assert!(is_plain_key("0b7c6a8e-1f2d-4c3b-9a8e-7d6c5b4a3f2e"));
        assert!(!is_plain_key("a'b"));
        assert!(!is_plain_key(""));
    }
}
