//! A small HTTP client for the service's job API, as any outside client would use it.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use vcore_migrate::jobs::{JobRequest, JobState, Mode};

/// `GET /api/jobs/{id}`, with the fields the demo reads. Unknown fields are ignored, so the
/// service may add more.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub state: JobState,
    pub percent: f64,
    /// Chunks copied at once, which the service lowers while the source throttles.
    pub concurrency: u32,
    pub last_error: Option<String>,
    pub documents_copied: u64,
    pub documents_estimated: u64,
    pub bytes_copied: u64,
    pub documents_per_second: f64,
    pub collections: Vec<CollectionView>,
    /// The service's own check of the copy, absent until it starts.
    #[serde(default)]
    pub verification: Option<VerificationView>,
    /// Whether `POST /api/jobs/{id}/cutover` would be accepted now.
    #[serde(default)]
    pub can_cutover: bool,
    /// Reasons cutover would be rejected now; empty when it would be accepted.
    #[serde(default)]
    pub cutover_blockers: Vec<String>,
    /// Change-stream progress over all collections (online jobs).
    #[serde(default)]
    pub replication: Option<ReplicationView>,
}

/// A job's replication over all its collections.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationView {
    pub events_applied: u64,
    /// The largest lag of any collection whose lag is known.
    pub lag_seconds: Option<f64>,
    pub deletes_found_by_reconciliation: u64,
    pub streams_running: u32,
    pub streams_failed: u32,
}

/// One collection's change stream.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    /// `pending`, `waiting`, `queued`, `running`, `finished`, `stopped` or `failed`.
    pub state: String,
    pub events_applied: u64,
    pub upserts: u64,
    pub deletes: u64,
    pub lag_seconds: Option<f64>,
    pub reconciliation: ReconcileView,
    pub last_error: Option<String>,
}

/// Reconciliation of one collection: target documents deleted because the source no longer
/// has them.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileView {
    pub running: bool,
    /// `periodic`, `recopy` or `cutover`, for the running pass.
    pub reason: Option<String>,
    /// Progress of the running pass.
    pub percent: Option<f64>,
    pub passes_completed: u32,
    pub deletes_found: u64,
}

/// `GET /api/jobs/{id}/verification`, with the fields the demo reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationReport {
    /// `notStarted`, or the latest run's state.
    pub state: String,
    /// The event that started the latest run: `copy`, `request` or `cutover`.
    pub trigger: Option<String>,
}

/// The service's verification of a job: per-chunk document counts and digests of the documents'
/// BSON bytes on both sides.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationView {
    /// `preparing`, `running`, `passed` or `failed`.
    pub state: String,
    pub mode: String,
    pub chunks_total: u32,
    pub chunks_verified: u32,
    pub chunks_failed: u32,
    pub differences: u64,
}

/// One collection of a [`JobView`].
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionView {
    pub source: String,
    pub target: String,
    pub state: String,
    pub documents_estimated: u64,
    pub documents_copied: u64,
    pub bytes_copied: u64,
    pub chunks_total: u32,
    pub chunks_completed: u32,
    pub chunks_failed: u32,
    pub planned: bool,
    pub percent: f64,
    pub documents_per_second: f64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The collection's change stream (online jobs, once its start point is saved).
    #[serde(default)]
    pub replication: Option<StreamView>,
}

/// The service's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// A job command sent as `POST /api/jobs/{id}/{command}`.
#[derive(Clone, Copy, Debug)]
pub enum JobCommand {
    Pause,
    Resume,
    Cutover,
}

impl JobCommand {
    fn path(self) -> &'static str {
        match self {
            JobCommand::Pause => "pause",
            JobCommand::Resume => "resume",
            JobCommand::Cutover => "cutover",
        }
    }
}

/// Client for one service instance, sending the API key on every request.
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
}

impl ApiClient {
    /// Builds a client for the service at `base_url` (such as `http://127.0.0.1:8080`).
    pub fn new(base_url: &str, api_key: &str) -> anyhow::Result<Self> {
        let mut key = HeaderValue::from_str(api_key)?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(ApiClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Creates a job with `POST /api/jobs`.
    pub async fn create_job(&self, request: &JobRequest) -> anyhow::Result<JobView> {
        let body = serde_json::to_vec(request)?;
        self.send(Method::POST, "/api/jobs", Some(body), StatusCode::CREATED)
            .await
    }

    /// Reads a job with `GET /api/jobs/{id}`.
    pub async fn job(&self, id: &str) -> anyhow::Result<JobView> {
        self.send(
            Method::GET,
            &format!("/api/jobs/{id}"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Sends a command with `POST /api/jobs/{id}/{command}`.
    pub async fn command(&self, id: &str, command: JobCommand) -> anyhow::Result<JobView> {
        let path = format!("/api/jobs/{id}/{}", command.path());
        self.send(Method::POST, &path, None, StatusCode::ACCEPTED)
            .await
    }

    /// Starts a verification run with `POST /api/jobs/{id}/verify`, in the job's verification
    /// mode.
    pub async fn verify(&self, id: &str) -> anyhow::Result<VerificationReport> {
        let path = format!("/api/jobs/{id}/verify");
        self.send(Method::POST, &path, None, StatusCode::ACCEPTED)
            .await
    }

    /// Reads the latest verification run with `GET /api/jobs/{id}/verification`.
    pub async fn verification(&self, id: &str) -> anyhow::Result<VerificationReport> {
        let path = format!("/api/jobs/{id}/verification");
        self.send(Method::GET, &path, None, StatusCode::OK).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        expected: StatusCode,
    ) -> anyhow::Result<T> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{method} {path} failed: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status != expected {
            let detail = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(error) => format!("{}: {}", error.code, error.message),
                Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
            };
            anyhow::bail!("{method} {path} returned {status}, expected {expected}: {detail}");
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("{method} {path} returned a body the demo cannot read: {e}")
        })
    }
}
