use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secrets::CredentialRef;

/// The way a job moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Copy a snapshot of each collection, then complete.
    Offline,
    /// Copy, then replicate the change stream until cutover.
    Online,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Offline => "offline",
            Mode::Online => "online",
        }
    }
}

/// What kind of server the source is, which decides how its change stream is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    /// Detect from the server when the job starts.
    #[default]
    Auto,
    MongoDb,
    CosmosRu,
}

/// `POST /api/jobs` body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRequest {
    /// A unique name, 1 to 128 printable characters.
    pub name: String,
    pub mode: Mode,
    pub source: CredentialRef,
    pub target: CredentialRef,
    pub collections: Vec<CollectionSpec>,
    #[serde(default)]
    pub options: JobOptions,
}

/// One collection to migrate, optionally renamed on the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectionSpec {
    pub database: String,
    pub collection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_collection: Option<String>,
    /// Shards the target collection on this key before the copy, as `{"customerId": "hashed"}`
    /// (vCore shards by a hashed key only). Unset leaves the target unsharded, whatever the
    /// source's shard key is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub target_shard_key: Option<crate::indexes::shard::ShardKeySpec>,
}

impl CollectionSpec {
    pub fn source_namespace(&self) -> Namespace {
        Namespace::new(&self.database, &self.collection)
    }

    pub fn target_namespace(&self) -> Namespace {
        Namespace::new(
            self.target_database.as_deref().unwrap_or(&self.database),
            self.target_collection
                .as_deref()
                .unwrap_or(&self.collection),
        )
    }
}

/// A database and collection name pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Namespace {
    pub database: String,
    pub collection: String,
}

impl Namespace {
    pub fn new(database: &str, collection: &str) -> Self {
        Namespace {
            database: database.to_string(),
            collection: collection.to_string(),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.collection)
    }
}

/// Tuning and behaviour options; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobOptions {
    /// Documents per chunk when planning (default 50,000).
    #[serde(default = "default_chunk_documents")]
    pub chunk_documents: u64,
    /// Documents per read and write batch (default 1,000).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Most chunks copied at once; throttling lowers the live value, clean chunks raise it back
    /// (default 4).
    #[serde(default = "default_max_parallel_chunks")]
    pub max_parallel_chunks: u32,
    /// Source server kind; `auto` detects it.
    #[serde(default)]
    pub source_kind: SourceKind,
    /// What to do when a target collection already contains documents.
    #[serde(default)]
    pub existing_target: ExistingTarget,
    /// When the target's indexes are built; unique indexes are always built before the copy.
    #[serde(default)]
    pub indexes: IndexTiming,
    /// HTTPS URL that receives every job event as a signed CloudEvent (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The check of the target against the source at the end of an offline job's copy and as the
    /// last step of an online job's cutover (default `full`).
    #[serde(default)]
    pub verification: VerificationMode,
    /// Seconds between reconciliation passes while an online job replicates from a Cosmos DB (RU)
    /// source, whose change streams carry no deletes; 0 disables them (cutover still runs one).
    /// Default 600.
    #[serde(default = "default_reconcile_interval_seconds")]
    pub reconcile_interval_seconds: u64,
}

/// When non-unique indexes are built on the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum IndexTiming {
    /// After each collection's copy, which loads data faster.
    #[default]
    AfterCopy,
    /// Before the copy, together with the unique indexes.
    BeforeCopy,
    /// Create no index at all, unique ones included; the plan still lists them.
    Skip,
}

/// How much of each chunk verification compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum VerificationMode {
    /// Compare each chunk's document count and a digest of every document's BSON bytes on both
    /// sides, and list the `_id`s that differ.
    #[default]
    Full,
    /// Compare each chunk's document count only.
    Counts,
    /// Do not verify at the end of the copy or of cutover; `POST /api/jobs/{id}/verify` still
    /// runs a full one.
    Off,
}

impl VerificationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationMode::Full => "full",
            VerificationMode::Counts => "counts",
            VerificationMode::Off => "off",
        }
    }
}

/// Policy for target collections that already hold documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ExistingTarget {
    /// Copy anyway. A target document whose `_id` the source also has is replaced by the
    /// source's version. Target documents the source does not have stay; verification reports
    /// them as extra.
    #[default]
    Merge,
    /// Fail the collection if its target contains any document.
    Fail,
}

fn default_chunk_documents() -> u64 {
    50_000
}

fn default_batch_size() -> u32 {
    1_000
}

fn default_max_parallel_chunks() -> u32 {
    4
}

fn default_reconcile_interval_seconds() -> u64 {
    600
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            chunk_documents: default_chunk_documents(),
            batch_size: default_batch_size(),
            max_parallel_chunks: default_max_parallel_chunks(),
            source_kind: SourceKind::Auto,
            existing_target: ExistingTarget::Merge,
            indexes: IndexTiming::AfterCopy,
            callback_url: None,
            verification: VerificationMode::Full,
            reconcile_interval_seconds: default_reconcile_interval_seconds(),
        }
    }
}
